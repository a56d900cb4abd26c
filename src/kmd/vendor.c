/*
 * vendor.c - kmd's side of the libkm call, the vendor operation
 * KM_KMD_OP_CALL (include/km/sys/server.h, docs/KMD.md): libkm's client mode
 * (src/api/remote.c) sends one public function of libkm with its arguments;
 * kmd runs it on the connection's delegated context, so as the connection's
 * principal with libkm's own checks (grants, roles, policy, dual control,
 * audit naming the principal and the peer), and answers libkm's return
 * code, its error detail and the outputs. The function's signature is the
 * table of the primitives' codec (kmip_ttlv.h, km__kcall_format), which the
 * client encodes by: a request that does not match it is an Invalid Message.
 * Only functions of that table are served: none administers the vault file
 * itself (keyslots, rekey, backup, compaction), none names a principal to
 * act as (the context is the connection's), none reaches kmd's own
 * configuration (audit sinks). Keys are named by their id and opened in the
 * delegated context at each call, so nothing is cached between requests.
 */
#include "kmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km/sys/backend.h>
#include <km/sys/server.h>

#include "kmip_ttlv.h"

/* The most output kmd buffers for one call, all its outputs together (a
 * bigger capacity is served as what is left: the caller then gets
 * KM_E_BUFFER with the size). */
#define OUT_MAX (4u << 20)
/* Records of one listing (the audit ones: the client asks again). */
#define LIST_MAX 200000

enum { R_INVALID = 0x04, R_GENERAL = 0x100 };  /* Invalid Message, General Failure */

typedef struct vcall {
    km_ctx *ctx;
    const km__ttlv_tree *t;
    km__ttlv_enc *e;
    const char *f;
    size_t n;
    km__kcall_arg a[KM__KC_MAX_ARGS];
    km_key *key[KM__KC_MAX_ARGS];         /* k: opened by id */
    char *str[KM__KC_MAX_ARGS];           /* s: NUL-terminated copies */
    uint8_t *buf[KM__KC_MAX_ARGS];        /* B, C, R: output buffers */
    size_t cap[KM__KC_MAX_ARGS], len[KM__KC_MAX_ARGS];
    uint64_t num[KM__KC_MAX_ARGS];        /* U, L, Z */
    uint32_t u32[KM__KC_MAX_ARGS];
    size_t zz[KM__KC_MAX_ARGS];
    void *ptr[KM__KC_MAX_ARGS];           /* S, K, I, F, M results */
    uint8_t id[16];                       /* X */
    km_audit_head head_out, head_in;      /* H, h */
    km_request_status status;             /* W */
    km_key_options opt;                   /* O */
    km_key_settings set;                  /* T */
    km_key_filter flt;                    /* Q */
    char *sstr[4];                        /* strings of O, T, Q */
    size_t records;                       /* of the listing */
    int cut;                              /* the listing stopped at LIST_MAX */
} vcall;

/* ------------------------------------------------------------ arguments */

static int is_null(const vcall *c, size_t i)
{
    return c->a[i].null;
}

static char *text_dup(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* The nth field of an option Structure. */
static const km__ttlv_item *field(const vcall *c, int st, int n)
{
    int k;
    for (k = c->t->items[st].first; k >= 0 && n > 0; k = c->t->items[k].next)
        n--;
    return k >= 0 ? &c->t->items[k] : NULL;
}

static int64_t be64s(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

static int f_long(const vcall *c, int st, int n, int64_t *v)
{
    const km__ttlv_item *it = field(c, st, n);
    if (it == NULL || it->type != KM__TTLV_LONG)
        return -1;
    *v = be64s(it->val);
    return 0;
}

/* A text field (or false: NULL), copied into c->sstr. */
static int f_text(vcall *c, int st, int n, const char **out)
{
    const km__ttlv_item *it = field(c, st, n);
    size_t j;
    *out = NULL;
    if (it == NULL || (it->type != KM__TTLV_TEXT && it->type != KM__TTLV_BOOL))
        return -1;
    if (it->type == KM__TTLV_BOOL)
        return 0;
    for (j = 0; j < 4 && c->sstr[j] != NULL; j++)
        ;
    if (j == 4 || (c->sstr[j] = text_dup(it->val, it->len)) == NULL)
        return -1;
    *out = c->sstr[j];
    return 0;
}

/* O, T, Q, h: the struct from its fields. -1 when they do not match. */
static int get_struct(vcall *c, char ch, int st)
{
    int64_t v[13];
    int i, ok = 0;
    if (ch == 'O') {
        const km__ttlv_item *kid = field(c, st, 10);
        km_key_options o = KM_KEY_OPTIONS_INIT;
        for (i = 0; i < 13; i++)
            if (i != 3 && i != 9 && i != 10 && f_long(c, st, i, &v[i]) != 0)
                ok = -1;
        if (ok != 0 || f_text(c, st, 3, &o.protection) != 0 || f_text(c, st, 9, &o.policy) != 0
            || kid == NULL || (kid->type == KM__TTLV_BYTES ? kid->len != 16
                                                           : kid->type != KM__TTLV_BOOL))
            return -1;
        if (v[0] < 1 || v[0] > KM_KEY_OPTIONS_VERSION)
            return -1;
        o.version = (uint32_t)v[0];
        o.usage = (uint32_t)v[1];
        o.flags = (uint32_t)v[2];
        o.activate_at = v[4];
        o.rotate_days = (uint32_t)v[5];
        o.protect_days = (uint32_t)v[6];
        o.process_days = (uint32_t)v[7];
        o.destroy_grace_days = (uint32_t)v[8];
        o.key_id = kid->type == KM__TTLV_BYTES ? kid->val : NULL;
        o.import_version = (uint32_t)v[11];
        o.rsa_oaep_digest = (uint32_t)v[12];
        c->opt = o;
        return 0;
    }
    if (ch == 'T') {
        km_key_settings s = KM_KEY_SETTINGS_INIT;
        for (i = 0; i < 9; i++)
            if (i != 5 && f_long(c, st, i, &v[i]) != 0)
                ok = -1;
        if (ok != 0 || f_text(c, st, 5, &s.policy) != 0)
            return -1;
        s.version = (uint32_t)v[0];
        s.fields = (uint32_t)v[1];
        s.rotate_days = (uint32_t)v[2];
        s.usage = (uint32_t)v[3];
        s.exportable = (int)v[4];
        s.deletion_protection = (int)v[6];
        s.min_process_version = (uint32_t)v[7];
        s.min_protect_version = (uint32_t)v[8];
        c->set = s;
        return 0;
    }
    if (ch == 'Q') {
        km_key_filter q = KM_KEY_FILTER_INIT;
        if (f_long(c, st, 0, &v[0]) != 0 || f_long(c, st, 1, &v[1]) != 0
            || f_long(c, st, 3, &v[3]) != 0 || f_text(c, st, 2, &q.protection) != 0
            || f_text(c, st, 4, &q.tag) != 0)
            return -1;
        q.version = (uint32_t)v[0];
        q.type = (km_key_type)v[1];
        q.state = (km_key_state)v[3];
        c->flt = q;
        return 0;
    } else {
        const km__ttlv_item *h = field(c, st, 1);
        if (f_long(c, st, 0, &v[0]) != 0 || h == NULL || h->type != KM__TTLV_BYTES
            || h->len != sizeof c->head_in.hash)
            return -1;
        c->head_in.seq = (uint64_t)v[0];
        memcpy(c->head_in.hash, h->val, h->len);
        return 0;
    }
}

/* Makes every argument usable: keys opened, strings terminated, output
 * storage allocated. KM_OK; a libkm error (a key that does not open: the
 * call's result); KM_E_CORRUPT for a request that does not match. */
static int prepare(vcall *c)
{
    size_t i, budget = OUT_MAX;
    int rc;
    for (i = 0; i < c->n; i++) {
        const km__kcall_arg *a = &c->a[i];
        char ch = c->f[i];
        if (a->null)
            continue;
        switch (ch) {
        case 'k':
            if ((rc = km_key_open_id(&c->key[i], c->ctx, a->p)) != KM_OK)
                return rc;
            break;
        case 's':
            if (memchr(a->p, 0, a->len) != NULL || (c->str[i] = text_dup(a->p, a->len)) == NULL)
                return KM_E_CORRUPT;
            break;
        case 'O': case 'T': case 'Q': case 'h':
            if (get_struct(c, ch, a->st) != 0)
                return KM_E_CORRUPT;
            break;
        case 'B': case 'C': case 'R':
            /* one budget for all the call's outputs: a client cannot make
             * kmd hold more than OUT_MAX for it */
            c->cap[i] = a->n > (int64_t)budget ? budget : (size_t)a->n;
            if (ch == 'R' && (size_t)a->n > budget)
                return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                        "km_random: at most %u bytes through kmd", OUT_MAX);
            budget -= c->cap[i];
            if ((c->buf[i] = calloc(1, c->cap[i] + 1)) == NULL)
                return KM_E_NOMEM;
            break;
        default:
            break;
        }
    }
    return KM_OK;
}

/* --------------------------------------------------------- the listings */

#define OUTT KM_KMD_TAG_OUT

static void put_str(km__ttlv_enc *e, const char *s)
{
    if (s == NULL)
        km__ttlv_put_bool(e, OUTT, 0);
    else
        km__ttlv_put_text(e, OUTT, s, strlen(s));
}

static int more(vcall *c)
{
    if (c->records >= LIST_MAX) {
        c->cut = 1;
        return 0;
    }
    c->records++;
    return 1;
}

static int on_key(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    vcall *c = arg;
    if (!more(c))
        return 1;
    km__ttlv_begin(c->e, OUTT);
    put_str(c->e, name);
    km__ttlv_put_bytes(c->e, OUTT, id, 16);
    km__ttlv_put_long(c->e, OUTT, type);
    km__ttlv_end(c->e);
    return 0;
}

static int on_principal(const char *name, uint32_t roles, int64_t created, void *arg)
{
    vcall *c = arg;
    if (!more(c))
        return 1;
    km__ttlv_begin(c->e, OUTT);
    put_str(c->e, name);
    km__ttlv_put_long(c->e, OUTT, roles);
    km__ttlv_put_long(c->e, OUTT, created);
    km__ttlv_end(c->e);
    return 0;
}

static int on_grant(const char *grantee, uint32_t perms, void *arg)
{
    vcall *c = arg;
    if (!more(c))
        return 1;
    km__ttlv_begin(c->e, OUTT);
    put_str(c->e, grantee);
    km__ttlv_put_long(c->e, OUTT, perms);
    km__ttlv_end(c->e);
    return 0;
}

static void put_entry(vcall *c, const km_audit_entry *en, const char *why)
{
    km__ttlv_begin(c->e, OUTT);
    km__ttlv_put_long(c->e, OUTT, (int64_t)en->seq);
    km__ttlv_put_long(c->e, OUTT, en->time);
    put_str(c->e, en->principal);
    put_str(c->e, en->op);
    km__ttlv_put_long(c->e, OUTT, en->has_key);
    km__ttlv_put_bytes(c->e, OUTT, en->key_id, 16);
    km__ttlv_put_long(c->e, OUTT, en->version);
    km__ttlv_put_long(c->e, OUTT, en->result);
    put_str(c->e, en->detail);
    km__ttlv_put_bytes(c->e, OUTT, en->hash, 32);
    if (why != NULL)
        put_str(c->e, why);
    km__ttlv_end(c->e);
}

static int on_entry(const km_audit_entry *en, void *arg)
{
    vcall *c = arg;
    if (c->records >= KM__KC_LIST_MAX) {
        c->cut = 1;
        return 1;
    }
    c->records++;
    put_entry(c, en, NULL);
    return 0;
}

static int on_alert(const km_audit_entry *en, const char *why, void *arg)
{
    vcall *c = arg;
    if (c->records >= KM__KC_LIST_MAX) {
        c->cut = 1;
        return 1;
    }
    c->records++;
    put_entry(c, en, why != NULL ? why : "");
    return 0;
}

/* ------------------------------------------------------------ the call */

#define K(i) c->key[i]
#define S(i) c->str[i]
#define P(i) (is_null(c, i) ? NULL : c->a[i].p)
#define L(i) c->a[i].len
#define U(i) ((uint32_t)c->a[i].n)
#define OB(i) c->buf[i], c->cap[i], &c->len[i]
#define OP(i, type) (is_null(c, i) ? NULL : (type)&c->ptr[i])
#define OPT(i) (is_null(c, i) ? NULL : &c->opt)

static int run(vcall *c, uint32_t fn)
{
    km_ctx *x = c->ctx;
    switch (fn) {
    case KM__KC_HELLO:
        km_vault_id(x, c->id);
        return km_whoami(x, (char *)c->buf[1], c->cap[1], &c->u32[2]);
    case KM__KC_KEY_OPEN: return km_key_open(OP(0, km_key **), x, S(1));
    case KM__KC_KEY_OPEN_ID: return km_key_open_id(OP(0, km_key **), x, P(1));
    case KM__KC_KEY_CREATE:
        return km_key_create(OP(0, km_key **), x, S(1), (km_key_type)U(2), OPT(3));
    case KM__KC_KEY_IMPORT:
        return km_key_import(OP(0, km_key **), x, S(1), (km_key_type)U(2),
                             (km_material_format)U(3), P(4), L(4), U(5), OPT(6));
    case KM__KC_KEY_LIST: return km_key_list(x, on_key, c);
    case KM__KC_KEY_ROTATE: return km_key_rotate(K(0), &c->u32[1]);
    case KM__KC_KEY_PUBLIC_EXPORT:
        return km_key_public_export(K(0), U(1), (km_material_format)U(2), OB(3));
    case KM__KC_KEY_INFO: return km_key_info(OP(0, km_keyinfo **), K(1));
    case KM__KC_KEY_LIST_FILTERED:
        return km_key_list_filtered(x, is_null(c, 0) ? NULL : &c->flt, on_key, c);
    case KM__KC_ENCRYPT: return km_encrypt(K(0), P(1), L(1), P(2), L(2), OB(3));
    case KM__KC_DECRYPT: return km_decrypt(x, U(0), P(1), L(1), P(2), L(2), OB(3));
    case KM__KC_DECRYPT_KEY: return km_decrypt_key(K(0), U(1), P(2), L(2), P(3), L(3), OB(4));
    case KM__KC_SIGN: return km_sign(K(0), U(1), P(2), L(2), OB(3));
    case KM__KC_SIGN_DIGEST:
        return km_sign_digest(K(0), U(1), U(2), S(3), P(4), L(4), OB(5));
    case KM__KC_VERIFY: return km_verify(K(0), U(1), U(2), P(3), L(3), P(4), L(4));
    case KM__KC_MAC: return km_mac(K(0), U(1), P(2), L(2), OB(3));
    case KM__KC_MAC_VERIFY: return km_mac_verify(K(0), U(1), U(2), P(3), L(3), P(4), L(4));
    case KM__KC_RANDOM: return km_random(x, S(0), c->buf[1], c->cap[1]);
    case KM__KC_RSA_DECRYPT: return km_rsa_decrypt(K(0), U(1), P(2), L(2), OP(3, km_secret **));
    case KM__KC_RSA_OAEP_DECRYPT:
        return km_rsa_oaep_decrypt(K(0), U(1), P(2), L(2), P(3), L(3), OB(4));
    case KM__KC_RSA_OAEP_ENCRYPT:
        return km_rsa_oaep_encrypt(K(0), U(1), P(2), L(2), P(3), L(3), OB(4));
    case KM__KC_DATAKEY_GENERATE:
        return km_datakey_generate(K(0), P(1), L(1), OP(2, km_secret **), OB(3));
    case KM__KC_DATAKEY_DECRYPT:
        return km_datakey_decrypt(x, P(0), L(0), P(1), L(1), OP(2, km_secret **));
    case KM__KC_DATAKEY_GENERATE_TYPE:
        return km_datakey_generate_type(K(0), (km_key_type)U(1), P(2), L(2),
                                        OP(3, km_secret **), OB(4));
    case KM__KC_DATAKEY_PAIR_GENERATE:
        return km_datakey_pair_generate(K(0), (km_key_type)U(1), P(2), L(2),
                                        OP(3, km_secret **), OB(4), OB(5));
    case KM__KC_DATAKEY_PAIR_DECRYPT:
        return km_datakey_pair_decrypt(x, P(0), L(0), P(1), L(1), OP(2, km_secret **));
    case KM__KC_REWRAP: return km_rewrap(x, P(0), L(0), P(1), L(1), OB(2));
    case KM__KC_REWRAP_TO:
        return km_rewrap_to(x, P(0), L(0), P(1), L(1), K(2), P(3), L(3), OB(4));
    case KM__KC_REWRAP_EX:
        return km_rewrap_ex(x, U(0), P(1), L(1), P(2), L(2), K(3), P(4), L(4), OB(5));
    case KM__KC_DERIVE:
        return km_derive(K(0), P(1), L(1), P(2), L(2), (size_t)c->a[3].n, OP(4, km_secret **));
    case KM__KC_AGREE:
        return km_agree(K(0), P(1), L(1), P(2), L(2), (size_t)c->a[3].n, OP(4, km_secret **));
    case KM__KC_AGREE_RAW: return km_agree_raw(K(0), P(1), L(1), OP(2, km_secret **));
    case KM__KC_ACTIVATE: return km_key_activate(K(0), U(1));
    case KM__KC_SUSPEND: return km_key_suspend(K(0), U(1));
    case KM__KC_RESUME: return km_key_resume(K(0), U(1));
    case KM__KC_REVOKE: return km_key_revoke(K(0), U(1), (km_revoke_reason)U(2), c->a[3].n);
    case KM__KC_SCHEDULE_DESTROY: return km_key_schedule_destroy(K(0), U(1), U(2));
    case KM__KC_CANCEL_DESTROY: return km_key_cancel_destroy(K(0), U(1));
    case KM__KC_MAINTAIN: return km_maintain(x, OP(0, km_maintain_report **));
    case KM__KC_KEY_RENAME: return km_key_rename(K(0), S(1));
    case KM__KC_ALIAS_ADD: return km_key_alias_add(K(0), S(1), U(2));
    case KM__KC_ALIAS_REMOVE: return km_key_alias_remove(x, S(0));
    case KM__KC_SET_DESCRIPTION: return km_key_set_description(K(0), S(1));
    case KM__KC_SET_TAG: return km_key_set_tag(K(0), S(1), S(2));
    case KM__KC_KEY_SET: return km_key_set(K(0), is_null(c, 1) ? NULL : &c->set);
    case KM__KC_KEY_TRIM: return km_key_trim(K(0), U(1), &c->u32[2]);
    case KM__KC_KEY_PURGE: return km_key_purge(K(0));
    case KM__KC_WHOAMI: return km_whoami(x, (char *)c->buf[0], c->cap[0], &c->u32[1]);
    case KM__KC_KEY_GRANT: return km_key_grant(K(0), S(1), U(2));
    case KM__KC_KEY_PERMS: return km_key_perms(K(0), &c->u32[1]);
    case KM__KC_KEY_GRANTS: return km_key_grants(K(0), on_grant, c);
    case KM__KC_PRINCIPAL_ADD:
        return km_principal_add(x, S(0), U(1), P(2), L(2), U(3));
    case KM__KC_PRINCIPAL_REMOVE: return km_principal_remove(x, S(0), (int)c->a[1].n);
    case KM__KC_PRINCIPAL_LIST: return km_principal_list(x, on_principal, c);
    case KM__KC_POLICY_SET: return km_policy_set(x, (const char *)P(0), L(0));
    case KM__KC_POLICY_GET: return km_policy_get(x, (char *)c->buf[0], c->cap[0], &c->len[0]);
    case KM__KC_POLICY_REPORT: return km_policy_report(x, OP(0, km_policy_findings **));
    case KM__KC_REQUEST_CREATE:
        return km_request_create(x, (km_request_op)U(0), S(1), P(2), L(2), U(3), c->id);
    case KM__KC_REQUEST_APPROVE: return km_request_approve(x, P(0));
    case KM__KC_REQUEST_INFO: return km_request_info(x, P(0), &c->status);
    case KM__KC_REQUEST_DESCRIBE:
        return km_request_describe(x, P(0), (char *)c->buf[1], c->cap[1], &c->len[1]);
    case KM__KC_AUDIT_SET_LEVEL: return km_audit_set_level(x, (km_audit_level)U(0));
    case KM__KC_AUDIT_GET_LEVEL: {
        km_audit_level l = KM_AUDIT_DATA_NONE;
        int rc = km_audit_get_level(x, &l);
        c->u32[0] = (uint32_t)l;
        return rc;
    }
    case KM__KC_AUDIT_FLUSH: return km_audit_flush(x);
    case KM__KC_AUDIT_HEAD_GET: return km_audit_head_get(x, &c->head_out);
    case KM__KC_AUDIT_VERIFY:
        return km_audit_verify(x, is_null(c, 0) ? NULL : &c->head_in, &c->num[1], &c->num[2]);
    case KM__KC_AUDIT_FOREACH: return km_audit_foreach(x, (uint64_t)c->a[0].n, on_entry, c);
    case KM__KC_AUDIT_ALERTS: return km_audit_alerts(x, (uint64_t)c->a[0].n, on_alert, c);
    case KM__KC_KEY_EXPORT_WRAPPED:
        return km_key_export_wrapped(K(0), U(1), (km_wrap_format)U(2), K(3), P(4), L(4), OB(5));
    case KM__KC_KEY_IMPORT_WRAPPED:
        return km_key_import_wrapped(OP(0, km_key **), x, S(1), (km_key_type)U(2),
                                     (km_wrap_format)U(3), P(4), L(4), OPT(5));
    case KM__KC_VAULT_WRAPPING_KEY:
        return km_vault_wrapping_key(x, (km_material_format)U(0), OB(1));
    case KM__KC_KEY_BACKUP: return km_key_backup(K(0), P(1), L(1), P(2), L(2), OB(3));
    case KM__KC_KEY_RESTORE:
        return km_key_restore(x, P(0), L(0), P(1), L(1), S(2), OP(3, km_key **));
    default:
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "function %u is not served by kmd", fn);
    }
}

/* ------------------------------------------------------------ outputs */

/* A key handle's fourth field: its primary version (0 when unknown), the
 * managed object client mode's standard Encrypt, Sign and MAC name
 * (src/api/remote.c; a client of an older kmd reads none: unknown). */
static void put_primary(km__ttlv_enc *e, km_key *k)
{
    km_keyinfo *ki = NULL;
    uint32_t primary = 0;
    if (km_key_info(&ki, k) == KM_OK)
        primary = km_keyinfo_primary(ki);
    km_keyinfo_free(ki);
    km__ttlv_put_long(e, OUTT, primary);
}

static void put_keyinfo(km__ttlv_enc *e, const km_keyinfo *in)
{
    uint32_t r = 0, p = 0, pr = 0, g = 0, mp = 0, mt = 0, i;
    km_keyinfo_periods(in, &r, &p, &pr, &g);
    km_keyinfo_window(in, &mp, &mt);
    km__ttlv_begin(e, OUTT);
    put_str(e, km_keyinfo_name(in));
    km__ttlv_put_bytes(e, OUTT, km_keyinfo_id(in), 16);
    km__ttlv_put_long(e, OUTT, km_keyinfo_type(in));
    km__ttlv_put_long(e, OUTT, km_keyinfo_usage(in));
    km__ttlv_put_long(e, OUTT, km_keyinfo_flags(in));
    put_str(e, km_keyinfo_protection(in));
    km__ttlv_put_long(e, OUTT, km_keyinfo_created(in));
    km__ttlv_put_long(e, OUTT, km_keyinfo_primary(in));
    km__ttlv_put_long(e, OUTT, r);
    km__ttlv_put_long(e, OUTT, p);
    km__ttlv_put_long(e, OUTT, pr);
    km__ttlv_put_long(e, OUTT, g);
    km__ttlv_put_long(e, OUTT, mp);
    km__ttlv_put_long(e, OUTT, mt);
    put_str(e, km_keyinfo_policy(in));
    put_str(e, km_keyinfo_owner(in));
    put_str(e, km_keyinfo_description(in));
    km__ttlv_begin(e, OUTT);
    for (i = 0; i < km_keyinfo_alias_count(in); i++)
        put_str(e, km_keyinfo_alias(in, i));
    km__ttlv_end(e);
    km__ttlv_begin(e, OUTT);
    for (i = 0; i < km_keyinfo_tag_count(in); i++) {
        const char *tk = NULL, *tv = NULL;
        (void)km_keyinfo_tag(in, i, &tk, &tv);
        put_str(e, tk != NULL ? tk : "");
        put_str(e, tv != NULL ? tv : "");
    }
    km__ttlv_end(e);
    km__ttlv_begin(e, OUTT);
    for (i = 0; i < km_keyinfo_version_count(in); i++) {
        km_version_info v;
        memset(&v, 0, sizeof v);
        (void)km_keyinfo_version(in, i, &v, sizeof v);
        km__ttlv_begin(e, OUTT);
        km__ttlv_put_long(e, OUTT, v.version);
        km__ttlv_put_long(e, OUTT, v.state);
        km__ttlv_put_long(e, OUTT, v.created);
        km__ttlv_put_long(e, OUTT, v.activated);
        km__ttlv_put_long(e, OUTT, v.protect_stop);
        km__ttlv_put_long(e, OUTT, v.process_stop);
        km__ttlv_put_long(e, OUTT, v.destroy_after);
        km__ttlv_put_long(e, OUTT, (int64_t)v.invocations);
        km__ttlv_put_long(e, OUTT, (int64_t)v.bytes);
        km__ttlv_put_long(e, OUTT, v.revoke_reason);
        km__ttlv_put_long(e, OUTT, v.compromise_date);
        km__ttlv_put_long(e, OUTT, v.deactivated);
        km__ttlv_put_long(e, OUTT, v.destroyed);
        km__ttlv_end(e);
    }
    km__ttlv_end(e);
    km__ttlv_end(e);
}

/* Every output of the format, in order (listings were written during the
 * call); what a failed call did not produce is sent empty. */
static void outputs(vcall *c, int rc)
{
    km__ttlv_enc *e = c->e;
    size_t i;
    for (i = 0; i < c->n; i++) {
        char ch = c->f[i];
        void *pv = c->ptr[i];
        switch (ch) {
        case 'B':
            km__ttlv_begin(e, OUTT);
            km__ttlv_put_long(e, OUTT, (int64_t)c->len[i]);
            if (rc == KM_OK && c->buf[i] != NULL && c->len[i] <= c->cap[i])
                km__ttlv_put_bytes(e, OUTT, c->buf[i], c->len[i]);
            km__ttlv_end(e);
            break;
        case 'C':
            put_str(e, c->buf[i] != NULL ? (const char *)c->buf[i] : "");
            break;
        case 'R':
            km__ttlv_put_bytes(e, OUTT, c->buf[i] != NULL ? c->buf[i] : (const uint8_t *)"",
                               c->buf[i] != NULL ? c->cap[i] : 0);
            break;
        case 'U': km__ttlv_put_long(e, OUTT, c->u32[i]); break;
        case 'L': km__ttlv_put_long(e, OUTT, (int64_t)c->num[i]); break;
        case 'Z': km__ttlv_put_long(e, OUTT, (int64_t)c->zz[i]); break;
        case 'X': km__ttlv_put_bytes(e, OUTT, c->id, 16); break;
        case 'S':
            if (pv != NULL)
                km__ttlv_put_bytes(e, OUTT, km_secret_data(pv), km_secret_len(pv));
            else
                km__ttlv_put_bool(e, OUTT, 0);
            break;
        case 'K':
            km__ttlv_begin(e, OUTT);
            if (pv != NULL) {
                km__ttlv_put_bytes(e, OUTT, km_key_id(pv), 16);
                put_str(e, km_key_name(pv));
                km__ttlv_put_long(e, OUTT, km_key_get_type(pv));
                put_primary(e, pv);
            }
            km__ttlv_end(e);
            break;
        case 'H':
            km__ttlv_begin(e, OUTT);
            km__ttlv_put_long(e, OUTT, (int64_t)c->head_out.seq);
            km__ttlv_put_bytes(e, OUTT, c->head_out.hash, sizeof c->head_out.hash);
            km__ttlv_end(e);
            break;
        case 'W':
            km__ttlv_begin(e, OUTT);
            km__ttlv_put_long(e, OUTT, c->status.op);
            put_str(e, c->status.key_name);
            put_str(e, c->status.requester);
            km__ttlv_put_long(e, OUTT, c->status.approvals);
            km__ttlv_put_long(e, OUTT, c->status.needed);
            km__ttlv_put_long(e, OUTT, c->status.created);
            km__ttlv_put_long(e, OUTT, c->status.expires);
            km__ttlv_put_long(e, OUTT, c->status.consumed);
            km__ttlv_end(e);
            break;
        case 'M': {
            size_t j;
            km__ttlv_begin(e, OUTT);
            for (j = 0; pv != NULL && j < km_maintain_report_count(pv); j++) {
                const char *name = NULL, *act = NULL;
                uint32_t ver = 0;
                if (km_maintain_report_get(pv, j, &name, &ver, &act) != KM_OK)
                    continue;
                km__ttlv_begin(e, OUTT);
                put_str(e, name != NULL ? name : "");
                km__ttlv_put_long(e, OUTT, ver);
                put_str(e, act != NULL ? act : "");
                km__ttlv_end(e);
            }
            km__ttlv_end(e);
            break;
        }
        case 'F': {
            size_t j;
            km__ttlv_begin(e, OUTT);
            for (j = 0; pv != NULL && j < km_policy_findings_count(pv); j++) {
                const char *name = NULL, *why = NULL;
                if (km_policy_findings_get(pv, j, &name, &why) != KM_OK)
                    continue;
                km__ttlv_begin(e, OUTT);
                put_str(e, name != NULL ? name : "");
                put_str(e, why != NULL ? why : "");
                km__ttlv_end(e);
            }
            km__ttlv_end(e);
            break;
        }
        case 'I':
            if (pv != NULL)
                put_keyinfo(e, pv);
            else {
                km__ttlv_begin(e, OUTT);
                km__ttlv_end(e);
            }
            break;
        default:
            break;   /* inputs; listings were written during the call */
        }
    }
}

static void release(vcall *c)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        char ch = c->f[i];
        km_key_free(c->key[i]);
        free(c->str[i]);
        if (c->buf[i] != NULL) {
            km_memzero(c->buf[i], c->cap[i]);
            free(c->buf[i]);
        }
        if (c->ptr[i] == NULL)
            continue;
        if (ch == 'S')
            km_secret_free(c->ptr[i]);
        else if (ch == 'K')
            km_key_free(c->ptr[i]);
        else if (ch == 'I')
            km_keyinfo_free(c->ptr[i]);
        else if (ch == 'F')
            km_policy_findings_free(c->ptr[i]);
        else if (ch == 'M')
            km_maintain_report_free(c->ptr[i]);
    }
    for (i = 0; i < 4; i++)
        free(c->sstr[i]);
}

int kmd_vendor_call(km_ctx *ctx, const km__ttlv_tree *t, int pl, km__ttlv_enc *e,
                    uint32_t *reason, char *msg, size_t cap)
{
    vcall *c = calloc(1, sizeof *c);
    const char *why = NULL;
    uint32_t fn = 0;
    size_t i;
    int rc, listing = -1;

    if (c == NULL) {
        *reason = R_GENERAL;
        snprintf(msg, cap, "kmd is out of memory");
        return -1;
    }
    c->ctx = ctx;
    c->t = t;
    c->e = e;
    rc = km__kcall_decode(t, pl, &fn, c->a, &c->n, &why);
    if (rc == KM_E_CORRUPT) {
        *reason = R_INVALID;
        snprintf(msg, cap, "libkm call %u: %s (docs/KMD.md, the vendor operations)", fn, why);
        free(c);
        return -1;
    }
    c->f = rc == KM_OK ? km__kcall_format(fn) : "";
    km_error_clear();
    if (rc == KM_OK && (rc = prepare(c)) == KM_E_CORRUPT) {
        *reason = R_INVALID;
        snprintf(msg, cap, "libkm call %s: an argument does not match its signature",
                 km__kcall_name(fn));
        release(c);
        free(c);
        return -1;
    }
    if (rc == KM_E_UNSUPPORTED)
        (void)km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                               "function %u is not served by kmd", fn);
    for (i = 0; i < c->n; i++)
        if (strchr("NPGAE", c->f[i]) != NULL)
            listing = (int)i;
    if (listing >= 0)
        km__ttlv_begin(e, OUTT);   /* the records go here during the call */
    if (rc == KM_OK)
        rc = run(c, fn);
    if (listing >= 0)
        km__ttlv_end(e);
    if (c->cut && rc < 0)
        rc = KM_OK;   /* the listing stopped itself at its limit */
    km__ttlv_put_int(e, KM_KMD_TAG_RC, rc);
    if (rc != KM_OK) {
        const char *m = km_error_last()->message;
        if (m == NULL || m[0] == '\0')
            m = km_strerror(rc);
        km__ttlv_put_text(e, KM_KMD_TAG_MESSAGE, m, strlen(m));
    }
    outputs(c, rc);
    release(c);
    free(c);
    return 0;
}
