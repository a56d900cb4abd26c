/* acl.c - the access-control API (include/km/acl.h): principals, roles and
 * key grants. The records are laid out in access.c (the core's check before
 * dispatch); the decisions are the rules' (rules_acl.c). */
#include "core.h"
#include "vault_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"


/* ------------------------------------------------------------- principals */

int km_principal_add(km_ctx *ctx, const char *name, uint32_t roles, const uint8_t *passphrase,
                     size_t passphrase_len, uint32_t kdf_cost)
{
    KM__REMOTE(ctx, KM__KC_PRINCIPAL_ADD, name, roles, passphrase, passphrase_len, kdf_cost);
    km__txn *t = NULL;
    km__pfind f;
    uint8_t pid[16], k[64], rec[128];
    km__tlv_w w;
    char d[120];
    int rc;

    if (ctx == NULL || !km__rules_principal_name_ok(name))
        return km__err(KM_E_INVALID, "km_principal_add: the name must be 1 to 64 printable "
                                     "bytes without spaces, not 'owner', 'shares', 'backend:...' or 'role:...' "
                                     "(in any case)");
    if (roles == 0 || (roles & ~KM__ROLES_ALL) != 0)
        return km__err(KM_E_INVALID, "km_principal_add: roles must be KM_ROLE_* bits");
    if ((rc = km__pass_args("km_principal_add", passphrase, passphrase_len, &kdf_cost)) != KM_OK)
        return rc;
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_PRINCIPAL_ADD, NULL)) != KM_OK)
        return rc;
    if ((rc = km__random(pid, sizeof pid)) != KM_OK)
        return rc;
    km__tlv_init(&w, rec, sizeof rec);
    km__tlv_put_str(&w, KM__P_NAME, name);
    km__tlv_put_u32(&w, KM__P_ROLES, roles);
    km__tlv_put_u64(&w, KM__P_CREATED, (uint64_t)km__now(ctx));
    if ((rc = km__tlv_end(&w)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "%s roles 0x%x", name, roles);
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK) {
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    memset(&f, 0, sizeof f);
    f.name = name;
    rc = km__principal_find(ctx, t, &f);
    if (rc == KM_OK && f.found)
        rc = km__err(KM_E_EXISTS, "a principal named '%s' exists", name);
    if (rc == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, k, km__acl_rkey(k, KM__PFX_PRINCIPAL, pid, NULL), rec,
                         w.len, KM__PUT_NOOVERWRITE);
    if (rc == KM_OK)
        rc = km__slot_add_principal(t, ctx->master, passphrase, passphrase_len, kdf_cost, name,
                                    pid);
    if (rc == KM_OK) {
        /* the approval names the principal and its roles */
        char pp[160];
        size_t pl = km__rules_principal_params(pp, sizeof pp, 1, name, roles);
        rc = km__quorum_consume(ctx, t, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)pp, pl);
    }
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_PRINCIPAL_ADD, NULL, 0, d);
        t = NULL;
    }
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

typedef struct gcollect {
    const uint8_t *gid;      /* grants to this grantee */
    uint8_t (*keys)[64];
    size_t n, cap;
    size_t key_len;
} gcollect;

static int collect_keys(const uint8_t *key, size_t key_len, const uint8_t *val, size_t len,
                        void *arg)
{
    gcollect *g = arg;
    (void)val;
    (void)len;
    if (key_len > 64)
        return km__err(KM_E_CORRUPT, "a grant record key is malformed");
    if (g->gid != NULL && (key_len < 16 || !km_ct_equal(key + key_len - 16, g->gid, 16)))
        return 0;
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 16;
        void *nk = realloc(g->keys, nc * sizeof *g->keys);
        if (nk == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        g->keys = nk;
        g->cap = nc;
    }
    memset(g->keys[g->n], 0, 64);
    memcpy(g->keys[g->n], key, key_len);
    g->n++;
    g->key_len = key_len;
    return 0;
}

typedef struct owned {
    const uint8_t *pid;
    uint8_t (*kids)[16];
    size_t n, cap;
} owned;

static int collect_owned(const uint8_t *key, size_t key_len, const uint8_t *val, size_t len,
                         void *arg)
{
    owned *o = arg;
    size_t pl = sizeof KM__PFX_OWNER - 1;
    if (key_len != pl + 16 || len != 16)
        return km__err(KM_E_CORRUPT, "an owner record is malformed");
    if (!km_ct_equal(val, o->pid, 16))
        return 0;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 16;
        void *nk = realloc(o->kids, nc * sizeof *o->kids);
        if (nk == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        o->kids = nk;
        o->cap = nc;
    }
    memcpy(o->kids[o->n++], key + pl, 16);
    return 0;
}

/* km_principal_remove's work inside the write transaction t: the approved
 * request consumed, the principal's keyslots, record and grants removed,
 * its keys given to the owner (and revoked with `revoke_owned`); the audit
 * detail in d. */
static int principal_remove_in(km_ctx *ctx, km__txn *t, const char *name, int revoke_owned,
                               char *d, size_t dcap)
{
    km__slot_unsealer check;
    km__pfind f;
    gcollect g;
    owned o;
    uint8_t k[64];
    size_t i, nrev = 0;
    int rc;

    memset(&g, 0, sizeof g);
    memset(&o, 0, sizeof o);
    memset(&f, 0, sizeof f);
    f.name = name;
    if ((rc = km__principal_find(ctx, t, &f)) != KM_OK)
        goto out;
    if (!f.found) {
        rc = km__err(KM_E_NOTFOUND, "no principal named '%s'", name);
        goto out;
    }
    {
        char pp[160];
        size_t pl = km__rules_principal_params(pp, sizeof pp, 0, name, 0);
        rc = km__quorum_consume(ctx, t, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)pp, pl);
        if (rc != KM_OK)
            goto out;
    }
    /* its keyslots, its record, its grants, its keys' ownership */
    km__ctx_slot_check(ctx, &check);
    rc = km__slot_remove_principal(t, f.id, &check, ctx->master);
    if (rc == KM_E_NOTFOUND)
        rc = KM_OK;
    if (rc != KM_OK)
        goto out;
    if ((rc = km__rec_del(t, KM__T_META, k, km__acl_rkey(k, KM__PFX_PRINCIPAL, f.id, NULL))) != KM_OK)
        goto out;
    g.gid = f.id;
    rc = km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)KM__PFX_GRANT,
                      sizeof KM__PFX_GRANT - 1, collect_keys, &g);
    for (i = 0; rc == KM_OK && i < g.n; i++)
        rc = km__rec_del(t, KM__T_META, g.keys[i], g.key_len);
    if (rc != KM_OK)
        goto out;
    o.pid = f.id;
    rc = km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)KM__PFX_OWNER,
                      sizeof KM__PFX_OWNER - 1, collect_owned, &o);
    for (i = 0; rc == KM_OK && i < o.n; i++)
        rc = km__rec_del(t, KM__T_META, k, km__acl_rkey(k, KM__PFX_OWNER, o.kids[i], NULL));
    if (rc != KM_OK)
        goto out;
    /* every live version of the keys it owned: revoked in this same
     * transaction, so a crash leaves all of the removal or none of it */
    for (i = 0; rc == KM_OK && revoke_owned && i < o.n; i++)
        rc = km__key_revoke_all_in(ctx, t, o.kids[i], &nrev);
    if (rc != KM_OK)
        goto out;
    snprintf(d, dcap, "%s: %zu grant(s) removed, %zu owned key(s) to the owner, %zu live "
                      "version(s) revoked", name, g.n, o.n, nrev);
out:
    free(g.keys);
    free(o.kids);
    return rc;
}

/* A removal with rotation: principal_remove_in as the first part of the
 * master-key change's transaction (km__ctx_rekey). */
typedef struct premove {
    km_ctx *ctx;
    const char *name;
    int revoke_owned;
    char d[160];
} premove;

static int principal_remove_pre(void *arg, km__txn *t, const km__sealer *s)
{
    premove *p = arg;
    (void)s;
    return principal_remove_in(p->ctx, t, p->name, p->revoke_owned, p->d, sizeof p->d);
}

int km_principal_remove(km_ctx *ctx, const char *name, int flags)
{
    KM__REMOTE(ctx, KM__KC_PRINCIPAL_REMOVE, name, flags);
    km__txn *t = NULL;
    char d[160];
    int rc;

    if (ctx == NULL || name == NULL)
        return km__err(KM_E_INVALID, "km_principal_remove: bad arguments");
    if (flags & ~(KM_PRINCIPAL_REVOKE_KEYS | KM_PRINCIPAL_ROTATE_MASTER))
        return km__err(KM_E_INVALID, "km_principal_remove: unknown flags 0x%x", (unsigned)flags);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_PRINCIPAL_REMOVE, NULL)) != KM_OK)
        return rc;
    if (ctx->is_principal && strcmp(ctx->principal_name, name) == 0)
        return km__err(KM_E_STATE, "km_principal_remove: a principal cannot remove itself");
    if (flags & KM_PRINCIPAL_ROTATE_MASTER) {
        premove p;

        if (ctx->delegated)
            return km__err(KM_E_UNSUPPORTED, "km_principal_remove: a rotation not through a "
                                             "delegated context (the server's own does it)");
        memset(&p, 0, sizeof p);
        p.ctx = ctx;
        p.name = name;
        p.revoke_owned = (flags & KM_PRINCIPAL_REVOKE_KEYS) != 0;
        return km__ctx_rekey(ctx, NULL, 0, 0, KM__OP_PRINCIPAL_REMOVE, principal_remove_pre, &p,
                             p.d);
    }
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        goto out;
    rc = principal_remove_in(ctx, t, name, (flags & KM_PRINCIPAL_REVOKE_KEYS) != 0, d, sizeof d);
    if (rc != KM_OK)
        goto out;
    rc = km__wtxn_commit(ctx, t, KM__OP_PRINCIPAL_REMOVE, NULL, 0, d);
    t = NULL;
out:
    km__wtxn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    return rc;
}

int km_principal_list(km_ctx *ctx, km_principal_fn fn, void *arg)
{
    KM__REMOTE(ctx, KM__KC_PRINCIPAL_LIST, fn, arg);
    km__txn *t = NULL;
    km__pfind f;
    int rc;

    if (ctx == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_principal_list: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    memset(&f, 0, sizeof f);
    f.fn = fn;
    f.arg = arg;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__principal_find(ctx, t, &f);
    km__txn_abort(t);
    return rc;
}

int km_whoami(km_ctx *ctx, char *name, size_t cap, uint32_t *roles)
{
    KM__REMOTE(ctx, KM__KC_WHOAMI, name, cap, roles);
    size_t n;
    if (ctx == NULL || name == NULL)
        return km__err(KM_E_INVALID, "km_whoami: bad arguments");
    n = strlen(ctx->principal_name);
    if (n + 1 > cap)
        return km__err(KM_E_BUFFER, "km_whoami: the name needs %zu bytes", n + 1);
    memcpy(name, ctx->principal_name, n + 1);
    if (roles != NULL)
        *roles = ctx->roles;
    return KM_OK;
}

/* ----------------------------------------------------------------- grants */

int km_key_grant(km_key *key, const char *grantee, uint32_t perms)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_GRANT, key, grantee, perms);
    km__kobj *k = NULL;
    struct km_ctx *ctx;
    km__txn *t = NULL;
    km__pfind f;
    uint8_t gid[16], rk[64], pb[4];
    char d[160];
    uint32_t role = 0;
    int rc;

    if (key == NULL || grantee == NULL || (perms & ~(KM_PERM_ALL | KM_PERM_AGREE_RAW)) != 0)
        return km__err(KM_E_INVALID, "km_key_grant: bad arguments");
    if (strncmp(grantee, "role:", 5) == 0) {
        const char *r = grantee + 5;
        role = km__rules_role_from_name(r);
        if (role == 0)
            return km__err(KM_E_INVALID, "km_key_grant: unknown role '%s'", r);
    }
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    ctx = k->ctx;
    if (k->session)
        return km__err(KM_E_INVALID, "km_key_grant: a session key takes no grants");
    if ((rc = km__acl_check(ctx, KM__OP_KEY_GRANT, k)) != KM_OK)
        goto done;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        goto done;
    if (role != 0) {
        km__acl_role_gid(role, gid);
    } else {
        memset(&f, 0, sizeof f);
        f.name = grantee;
        if ((rc = km__principal_find(ctx, t, &f)) != KM_OK)
            goto done;
        if (!f.found) {
            rc = km__err(KM_E_NOTFOUND, "no principal named '%s'", grantee);
            goto done;
        }
        memcpy(gid, f.id, 16);
    }
    km__acl_rkey(rk, KM__PFX_GRANT, k->id, gid);
    if (perms == 0) {
        rc = km__rec_del(t, KM__T_META, rk, sizeof KM__PFX_GRANT - 1 + 32);
        if (rc == KM_E_NOTFOUND)
            rc = KM_OK;
    } else {
        km__be32_put(pb, perms);
        rc = km__rec_put(t, ctx->sealer, KM__T_META, rk, sizeof KM__PFX_GRANT - 1 + 32, pb, 4, 0);
    }
    snprintf(d, sizeof d, "%s perms 0x%x", grantee, perms);
    if (rc == KM_OK) {
        rc = km__wtxn_commit(ctx, t, KM__OP_KEY_GRANT, k->id, 0, d);
        t = NULL;
    }
done:
    km__wtxn_abort(t);
    return rc;
}

int km_key_perms(km_key *key, uint32_t *perms)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_PERMS, key, perms);
    km__kobj *k = NULL;
    int rc;

    if (key == NULL || perms == NULL)
        return km__err(KM_E_INVALID, "km_key_perms: bad arguments");
    *perms = 0;
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (!k->ctx->is_principal || k->session)
        *perms = KM_PERM_ALL | KM_PERM_AGREE_RAW;
    else
        rc = km__acl_perms_read(k->ctx, k->id, perms);
    return rc;
}

int km_key_grants(km_key *key, km_grant_fn fn, void *arg)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_GRANTS, key, fn, arg);
    km__kobj *k;
    int rc;

    if (key == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_key_grants: %s is NULL", key == NULL ? "key" : "fn");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->session)
        return KM_OK;
    if ((rc = km__acl_check(k->ctx, KM__OP_READ, k)) != KM_OK)
        return rc;
    return km__key_grants(k->ctx, k->id, fn, arg);
}
