/* cmd_access.c - kmctl: the audit log, principals and grants, dual-control
 * requests, Shamir share keyslots. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kmctl.h"
#include "kmctl_json.h"

static int emit(json_t *root)
{
    int rc;
    if (root == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "out of memory building the JSON output");
    rc = json_dumpf(root, stdout, JSON_COMPACT) == 0 && fputc('\n', stdout) != EOF
             ? KMCTL_EXIT_OK
             : kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    json_decref(root);
    return rc;
}

static int hex_decode(const char *s, uint8_t *out, size_t n)
{
    size_t i;
    if (strlen(s) != 2 * n)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* ------------------------------------------------------------ audit */

/* A head file: "SEQ HEX" on one line (what `kmctl audit head` prints). */
static int read_anchor(const char *path, km_audit_head *h)
{
    struct kmctl_buf b = { NULL, 0, 0 };
    char hex[65], line[128];
    unsigned long long seq;
    int rc;

    if ((rc = kmctl_read_file(path, 127, &b)) != KMCTL_EXIT_OK)
        return rc;
    memcpy(line, b.p, b.len);
    line[b.len] = '\0';
    kmctl_buf_free(&b);
    if (sscanf(line, "%llu %64s", &seq, hex) != 2 || hex_decode(hex, h->hash, 32) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "'%s' is not an audit head (SEQ HEX, from "
                                             "'kmctl audit head')", path);
    h->seq = seq;
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_audit_verify(struct kmctl *k, const struct kmctl_args *a)
{
    km_audit_head anchor;
    uint64_t n = 0, bad = 0;
    int rc;

    if (a->val[OPT_ANCHOR] != NULL && (rc = read_anchor(a->val[OPT_ANCHOR], &anchor)) != 0)
        return rc;
    rc = km_audit_verify(k->ctx, a->val[OPT_ANCHOR] ? &anchor : NULL, &n, &bad);
    if (a->val[OPT_JSON] != NULL) {
        json_t *root = json_pack("{s:b, s:I, s:I, s:s}", "whole", rc == KM_OK, "entries",
                                 (json_int_t)n, "first_bad", (json_int_t)bad, "message",
                                 rc == KM_OK ? "" : km_error_last()->message);
        int erc = emit(root);
        if (rc != KM_OK)
            return kmctl_exit_code(rc);
        return erc;
    }
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "the audit log is not whole");
    if (printf("audit: %llu entries, chain and MACs whole%s\n", (unsigned long long)n,
               a->val[OPT_ANCHOR] ? ", anchor found" : "") < 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    return KMCTL_EXIT_OK;
}

struct show {
    int json;
    json_t *arr;
    int failed;
};

static int show_one(const km_audit_entry *e, void *arg)
{
    struct show *s = arg;
    char line[2048];
    size_t len = 0;

    if (km_audit_entry_json(e, line, sizeof line, &len) != KM_OK) {
        s->failed = 1;
        return -1;
    }
    if (s->json) {
        json_t *obj = json_loads(line, 0, NULL);
        if (obj == NULL || json_array_append_new(s->arr, obj) != 0) {
            s->failed = 1;
            return -1;
        }
        return 0;
    }
    if (puts(line) < 0) {
        s->failed = 1;
        return -1;
    }
    return 0;
}

int kmctl_cmd_audit_show(struct kmctl *k, const struct kmctl_args *a)
{
    struct show s = { a->val[OPT_JSON] != NULL, NULL, 0 };
    int rc;

    if (s.json && (s.arr = json_array()) == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "out of memory");
    rc = km_audit_foreach(k->ctx, a->val[OPT_FROM] ? a->num[OPT_FROM] : 1, show_one, &s);
    if (s.failed) {
        json_decref(s.arr);
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    }
    if (rc != KM_OK) {
        json_decref(s.arr);
        return kmctl_lib_error(rc, "reading the audit log");
    }
    return s.json ? emit(json_pack("{s:o}", "entries", s.arr)) : KMCTL_EXIT_OK;
}

int kmctl_cmd_audit_head(struct kmctl *k, const struct kmctl_args *a)
{
    km_audit_head h;
    char hex[65];
    int rc = km_audit_head_get(k->ctx, &h);

    if (rc != KM_OK)
        return kmctl_lib_error(rc, "reading the audit head");
    kmctl_hex(h.hash, 32, hex);
    if (a->val[OPT_JSON] != NULL)
        return emit(json_pack("{s:I, s:s}", "seq", (json_int_t)h.seq, "hash", hex));
    if (printf("%llu %s\n", (unsigned long long)h.seq, hex) < 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_audit_level(struct kmctl *k, const struct kmctl_args *a)
{
    const char *l = a->pos[0];
    km_audit_level lv;
    int rc;

    if (strcmp(l, "none") == 0)
        lv = KM_AUDIT_DATA_NONE;
    else if (strcmp(l, "counters") == 0)
        lv = KM_AUDIT_DATA_COUNTERS;
    else if (strcmp(l, "every") == 0)
        lv = KM_AUDIT_DATA_EVERY;
    else
        return kmctl_error(KMCTL_EXIT_USAGE, "audit level: '%s' is not none, counters or every",
                           l);
    if ((rc = km_audit_set_level(k->ctx, lv)) != KM_OK)
        return kmctl_lib_error(rc, "setting the audit level");
    return KMCTL_EXIT_OK;
}

struct alerts_out {
    int json;
    json_t *arr;
    unsigned n;
    int failed;
};

static int alert_one(const km_audit_entry *e, const char *why, void *arg)
{
    struct alerts_out *o = arg;
    char line[2048];
    size_t len = 0;

    o->n++;
    if (km_audit_entry_json(e, line, sizeof line, &len) != KM_OK) {
        o->failed = 1;
        return -1;
    }
    if (o->json) {
        json_t *obj = json_loads(line, 0, NULL);
        if (obj == NULL || json_object_set_new(obj, "alert", json_string(why)) != 0
            || json_array_append_new(o->arr, obj) != 0) {
            json_decref(obj);
            o->failed = 1;
            return -1;
        }
        return 0;
    }
    if (printf("%s\t%s\n", why, line) < 0) {
        o->failed = 1;
        return -1;
    }
    return 0;
}

int kmctl_cmd_audit_alerts(struct kmctl *k, const struct kmctl_args *a)
{
    struct alerts_out o = { a->val[OPT_JSON] != NULL, NULL, 0, 0 };
    int rc;

    if (o.json && (o.arr = json_array()) == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "out of memory");
    rc = km_audit_alerts(k->ctx, a->val[OPT_FROM] ? a->num[OPT_FROM] : 1, alert_one, &o);
    if (o.failed || rc != KM_OK) {
        json_decref(o.arr);
        return o.failed ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed")
                        : kmctl_lib_error(rc, "reading the audit log");
    }
    if (o.json)
        return emit(json_pack("{s:o}", "alerts", o.arr));
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ principals */

static int parse_roles(const char *s, uint32_t *roles)
{
    char buf[128], *tok, *save = NULL;
    *roles = 0;
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "admin") == 0)
            *roles |= KM_ROLE_ADMIN;
        else if (strcmp(tok, "custodian") == 0)
            *roles |= KM_ROLE_CUSTODIAN;
        else if (strcmp(tok, "user") == 0)
            *roles |= KM_ROLE_USER;
        else if (strcmp(tok, "auditor") == 0)
            *roles |= KM_ROLE_AUDITOR;
        else
            return -1;
    }
    return *roles ? 0 : -1;
}

static void roles_text(uint32_t r, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s%s", r & KM_ROLE_ADMIN ? "admin," : "",
             r & KM_ROLE_CUSTODIAN ? "custodian," : "", r & KM_ROLE_USER ? "user," : "",
             r & KM_ROLE_AUDITOR ? "auditor," : "");
    if (out[0] != '\0')
        out[strlen(out) - 1] = '\0';
}

int kmctl_cmd_principal_add(struct kmctl *k, const struct kmctl_args *a)
{
    km_secret *cred = NULL;
    size_t len = 0;
    uint32_t roles;
    int rc;

    if (parse_roles(a->val[OPT_ROLE], &roles) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "--role: a comma-separated list of admin, "
                                             "custodian, user, auditor");
    if ((rc = kmctl_passphrase(a->val[OPT_CREDENTIAL_FILE], &cred, &len)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_principal_add(k->ctx, a->pos[0], roles, km_secret_data(cred), len, 0);
    km_secret_free(cred);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "adding principal '%s'", a->pos[0]);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_principal_remove(struct kmctl *k, const struct kmctl_args *a)
{
    int flags = (a->val[OPT_REVOKE_KEYS] != NULL ? KM_PRINCIPAL_REVOKE_KEYS : 0)
                | (a->val[OPT_ROTATE_MASTER] != NULL ? KM_PRINCIPAL_ROTATE_MASTER : 0);
    int rc = km_principal_remove(k->ctx, a->pos[0], flags);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "removing principal '%s'", a->pos[0]);
    return KMCTL_EXIT_OK;
}

struct plist {
    int json;
    json_t *arr;
    int failed;
};

static int list_principal(const char *name, uint32_t roles, int64_t created, void *arg)
{
    struct plist *p = arg;
    char r[64], when[32];
    roles_text(roles, r, sizeof r);
    kmctl_time(created, when);
    if (p->json) {
        if (json_array_append_new(p->arr, json_pack("{s:s, s:s, s:s}", "name", name, "roles", r,
                                                    "created", when)) != 0)
            p->failed = 1;
    } else if (printf("%s\t%s\t%s\n", name, r, when) < 0) {
        p->failed = 1;
    }
    return p->failed ? -1 : 0;
}

int kmctl_cmd_principal_list(struct kmctl *k, const struct kmctl_args *a)
{
    struct plist p = { a->val[OPT_JSON] != NULL, NULL, 0 };
    int rc;
    if (p.json && (p.arr = json_array()) == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "out of memory");
    rc = km_principal_list(k->ctx, list_principal, &p);
    if (p.failed || rc != KM_OK) {
        json_decref(p.arr);
        return p.failed ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed")
                        : kmctl_lib_error(rc, "listing principals");
    }
    return p.json ? emit(json_pack("{s:o}", "principals", p.arr)) : KMCTL_EXIT_OK;
}

int kmctl_cmd_whoami(struct kmctl *k, const struct kmctl_args *a)
{
    char name[128], r[64];
    uint32_t roles = 0;
    int rc = km_whoami(k->ctx, name, sizeof name, &roles);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "whoami");
    roles_text(roles, r, sizeof r);
    if (a->val[OPT_JSON] != NULL)
        return emit(json_pack("{s:s, s:s}", "principal", name, "roles", r));
    if (printf("%s\t%s\n", name, r) < 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    return KMCTL_EXIT_OK;
}

static const struct {
    const char *name;
    uint32_t bit;
} perm_names[] = {
    { "encrypt", KM_PERM_ENCRYPT }, { "decrypt", KM_PERM_DECRYPT }, { "sign", KM_PERM_SIGN },
    { "verify", KM_PERM_VERIFY },   { "mac", KM_PERM_MAC },         { "derive", KM_PERM_DERIVE },
    { "export", KM_PERM_EXPORT },   { "all", KM_PERM_ALL },         { "none", 0 },
    { "agree-raw", KM_PERM_AGREE_RAW },
};

int kmctl_cmd_key_grant(struct kmctl *k, const struct kmctl_args *a)
{
    char buf[256], *tok, *save = NULL;
    uint32_t perms = 0;
    km_key *key = NULL;
    size_t i;
    int rc;

    if (strlen(a->val[OPT_PERMS]) >= sizeof buf)
        return kmctl_error(KMCTL_EXIT_USAGE, "--perms is too long");
    strcpy(buf, a->val[OPT_PERMS]);
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        for (i = 0; i < sizeof perm_names / sizeof perm_names[0]; i++)
            if (strcmp(tok, perm_names[i].name) == 0)
                break;
        if (i == sizeof perm_names / sizeof perm_names[0])
            return kmctl_error(KMCTL_EXIT_USAGE, "--perms: unknown permission '%s' (encrypt, "
                                                 "decrypt, sign, verify, mac, derive, export, "
                                                 "all, none, agree-raw)", tok);
        perms |= perm_names[i].bit;
    }
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_key_grant(key, a->pos[1], perms);
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "granting on key '%s' to '%s'", a->pos[0], a->pos[1]);
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ requests */

/* The params of a rekey or keyslot request, as the library words them
 * (km/quorum.h, KM_REQ_PRINCIPAL_CHANGE): "rekey"; keyslot-add --target
 * passphrase | shares:M-of-N | a backend's name; keyslot-remove --target
 * passphrases. *len 0 for another operation. */
static int slot_change_params(const char *op, const char *target, char *out, size_t cap,
                              size_t *len)
{
    int n = 0;

    *len = 0;
    if (strcmp(op, "rekey") == 0)
        n = snprintf(out, cap, "rekey");
    else if (strcmp(op, "keyslot-remove") == 0 && strcmp(target, "passphrases") == 0)
        n = snprintf(out, cap, "keyslot-remove:passphrases");
    else if (strcmp(op, "keyslot-remove") == 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "request create keyslot-remove: --target passphrases");
    else if (strcmp(op, "keyslot-add") == 0
             && (strcmp(target, "passphrase") == 0 || strncmp(target, "shares:", 7) == 0))
        n = snprintf(out, cap, "keyslot-add:%s", target);
    else if (strcmp(op, "keyslot-add") == 0)
        n = snprintf(out, cap, "keyslot-add:backend:%s", target);
    else
        return KMCTL_EXIT_OK;
    if (n < 0 || (size_t)n >= cap)
        return kmctl_error(KMCTL_EXIT_USAGE, "request create %s: --target is too long", op);
    *len = (size_t)n;
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_request_create(struct kmctl *k, const struct kmctl_args *a)
{
    static const struct {
        const char *name;
        km_request_op op;
    } ops[] = { { "destroy", KM_REQ_DESTROY },
                { "export", KM_REQ_EXPORT },
                { "import-raw", KM_REQ_IMPORT_RAW },
                { "policy-change", KM_REQ_POLICY_CHANGE },
                { "principal-add", KM_REQ_PRINCIPAL_CHANGE },
                { "principal-remove", KM_REQ_PRINCIPAL_CHANGE },
                { "rekey", KM_REQ_PRINCIPAL_CHANGE },
                { "keyslot-add", KM_REQ_PRINCIPAL_CHANGE },
                { "keyslot-remove", KM_REQ_PRINCIPAL_CHANGE },
                { "key-set", KM_REQ_POLICY_CHANGE } };
    struct kmctl_buf pf = { NULL, 0, 0 };
    uint8_t id[16], params[200];
    const uint8_t *pp = NULL;
    size_t i, plen = 0;
    const char *key = NULL;
    int rc;

    for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(a->pos[0], ops[i].name) == 0)
            break;
    if (i == sizeof ops / sizeof ops[0])
        return kmctl_error(KMCTL_EXIT_USAGE, "request create: unknown operation '%s' (destroy, "
                                             "export, import-raw, policy-change, principal-add, "
                                             "principal-remove, rekey, keyslot-add, "
                                             "keyslot-remove, key-set)", a->pos[0]);
    if (a->val[OPT_TARGET] == NULL && strcmp(ops[i].name, "rekey") != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "request create %s: --target names the key, the "
                                             "principal, or the file", a->pos[0]);
    if (strcmp(ops[i].name, "key-set") == 0) {
        key = a->val[OPT_TARGET];
        if ((rc = kmctl_key_set_request_params(a, &pf, &pp, &plen)) != KMCTL_EXIT_OK)
            return rc;
    } else switch (ops[i].op) {
    case KM_REQ_DESTROY:
        if (a->val[OPT_VERSION] == NULL)
            return kmctl_error(KMCTL_EXIT_USAGE, "request create destroy: --version N");
        key = a->val[OPT_TARGET];
        params[0] = (uint8_t)(a->num[OPT_VERSION] >> 24);
        params[1] = (uint8_t)(a->num[OPT_VERSION] >> 16);
        params[2] = (uint8_t)(a->num[OPT_VERSION] >> 8);
        params[3] = (uint8_t)a->num[OPT_VERSION];
        {
            uint64_t g = a->val[OPT_GRACE] ? a->num[OPT_GRACE] : KMCTL_DESTROY_GRACE_DEFAULT;
            params[4] = (uint8_t)(g >> 24);
            params[5] = (uint8_t)(g >> 16);
            params[6] = (uint8_t)(g >> 8);
            params[7] = (uint8_t)g;
        }
        pp = params;
        plen = 8;
        break;
    case KM_REQ_EXPORT:
        key = a->val[OPT_TARGET];
        if (a->val[OPT_WRAP_WITH] == NULL)
            return kmctl_error(KMCTL_EXIT_USAGE, "request create export: --wrap-with PUBKEY.pem");
        if ((rc = kmctl_read_file(a->val[OPT_WRAP_WITH], 1 << 16, &pf)) != KMCTL_EXIT_OK)
            return rc;
        pp = pf.p;
        plen = pf.len;
        break;
    case KM_REQ_IMPORT_RAW:
    case KM_REQ_POLICY_CHANGE:
        if ((rc = kmctl_read_file(a->val[OPT_TARGET], 1 << 20, &pf)) != KMCTL_EXIT_OK)
            return rc;
        pp = pf.p;
        plen = pf.len;
        break;
    default:
        if ((rc = slot_change_params(ops[i].name, a->val[OPT_TARGET], (char *)params,
                                     sizeof params, &plen)) != KMCTL_EXIT_OK)
            return rc;
        if (plen != 0) {
            pp = params;
            break;
        }
        /* an addition names the roles: the approval is bound to them */
        if (strcmp(ops[i].name, "principal-add") == 0 && a->val[OPT_ROLE] == NULL)
            return kmctl_error(KMCTL_EXIT_USAGE, "request create principal-add: --role ROLES (the "
                                                 "roles the principal will get)");
        if (strcmp(ops[i].name, "principal-add") == 0)
            plen = (size_t)snprintf((char *)params, sizeof params, "add:%s:%s",
                                    a->val[OPT_TARGET], a->val[OPT_ROLE]);
        else
            plen = (size_t)snprintf((char *)params, sizeof params, "remove:%s",
                                    a->val[OPT_TARGET]);
        if (plen >= sizeof params)
            return kmctl_error(KMCTL_EXIT_USAGE, "principal name or roles too long");
        pp = params;
        break;
    }
    rc = km_request_create(k->ctx, ops[i].op, key, pp, plen,
                           a->val[OPT_TTL] ? (uint32_t)a->num[OPT_TTL] : 0, id);
    kmctl_buf_free(&pf);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "creating the request");
    return kmctl_print_id(a, NULL, id); /* the id, or --json {"id": HEX} */
}

int kmctl_cmd_request_approve(struct kmctl *k, const struct kmctl_args *a)
{
    uint8_t id[16];
    int rc;
    if (hex_decode(a->pos[0], id, 16) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "'%s' is not a request id (32 hex digits)",
                           a->pos[0]);
    if ((rc = km_request_approve(k->ctx, id)) != KM_OK)
        return kmctl_lib_error(rc, "approving request %s", a->pos[0]);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_request_show(struct kmctl *k, const struct kmctl_args *a)
{
    static const char *const names[] = { "?", "destroy", "export", "import-raw",
                                         "policy-change", "principal-change" };
    km_request_status st;
    uint8_t id[16];
    char c[32], e[32], *text = NULL;
    size_t tn = 0;
    int rc;

    if (hex_decode(a->pos[0], id, 16) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "'%s' is not a request id (32 hex digits)",
                           a->pos[0]);
    if ((rc = km_request_info(k->ctx, id, &st)) != KM_OK)
        return kmctl_lib_error(rc, "reading request %s", a->pos[0]);
    /* every parameter, as libkm wrote it down when the request was made */
    rc = km_request_describe(k->ctx, id, NULL, 0, &tn);
    if (rc == KM_E_BUFFER && (text = malloc(tn)) != NULL)
        rc = km_request_describe(k->ctx, id, text, tn, &tn);
    if (rc != KM_OK) {
        free(text);
        return kmctl_lib_error(text == NULL && rc == KM_E_BUFFER ? KM_E_NOMEM : rc,
                               "reading request %s", a->pos[0]);
    }
    kmctl_time(st.created, c);
    kmctl_time(st.expires, e);
    if (a->val[OPT_JSON] != NULL) {
        rc = emit(json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:b, s:s}", "op",
                            names[st.op <= 5 ? st.op : 0], "key", st.key_name, "requester",
                            st.requester, "approvals", (int)st.approvals, "needed",
                            (int)st.needed, "created", c, "expires", e, "consumed",
                            st.consumed, "params", text));
        free(text);
        return rc;
    }
    rc = printf("op\t%s\nkey\t%s\nrequester\t%s\napprovals\t%u of %u\ncreated\t%s\n"
                "expires\t%s\nconsumed\t%s\nparams\t%s\n",
                names[st.op <= 5 ? st.op : 0], st.key_name, st.requester, st.approvals,
                st.needed, c, e, st.consumed ? "yes" : "no", text);
    free(text);
    if (rc < 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ share keyslots */

int kmctl_cmd_keyslot_add_shares(struct kmctl *k, const struct kmctl_args *a)
{
    km_secret *sh[KM_SHARES_MAX];
    unsigned m = (unsigned)a->num[OPT_M], n = (unsigned)a->num[OPT_N], i;
    const char *dir = a->val[OPT_OUT_DIR];
    char path[4200];
    int rc, fd;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kmctl_error(KMCTL_EXIT_USAGE, "cannot create '%s': %s", dir, strerror(errno));
    for (i = 1; i <= n; i++) {   /* refuse before making anything: never overwrite a share */
        snprintf(path, sizeof path, "%s/share-%u.txt", dir, i);
        if (access(path, F_OK) == 0)
            return kmctl_error(KMCTL_EXIT_EXISTS, "'%s' exists; use an empty directory", path);
    }
    if ((rc = km_vault_add_shares(k->ctx, m, n, sh)) != KM_OK)
        return kmctl_lib_error(rc, "adding a %u-of-%u share keyslot", m, n);
    rc = KMCTL_EXIT_OK;
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/share-%u.txt", dir, i + 1);
        fd = rc == KMCTL_EXIT_OK ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        if (rc == KMCTL_EXIT_OK
            && (fd < 0
                || write(fd, km_secret_data(sh[i]), km_secret_len(sh[i]))
                       != (ssize_t)km_secret_len(sh[i])
                || write(fd, "\n", 1) != 1 || fsync(fd) != 0))
            rc = kmctl_error(KMCTL_EXIT_OTHER, "writing '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        km_secret_free(sh[i]);
    }
    if (rc == KMCTL_EXIT_OK)
        fprintf(stderr, "kmctl: %u shares written to %s/share-1.txt .. share-%u.txt; give one "
                        "to each custodian, then delete them here\n", n, dir, n);
    return rc;
}

int kmctl_cmd_keyslot_remove_passphrases(struct kmctl *k, const struct kmctl_args *a)
{
    int rc;
    (void)a;
    if ((rc = km_vault_remove_passphrases(k->ctx)) != KM_OK)
        return kmctl_lib_error(rc, "removing the owner passphrase keyslots");
    return KMCTL_EXIT_OK;
}
