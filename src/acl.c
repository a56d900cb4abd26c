/* acl.c - principals, roles and key grants (include/km/acl.h).
 *
 * Records (sealed, in the meta table):
 *   "principal/" || pid[16]           -> TLV { name, roles, created }
 *   "grant/" || key id[16] || gid[16] -> BE32 permissions
 *   "owner/" || key id[16]            -> pid[16] (absent: the vault owner)
 * gid is a principal id, or for a role 15 bytes 0xff then the role bit. */
#include "core.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"

enum { P_NAME = 1, P_ROLES = 2, P_CREATED = 3 };

#define ROLES_ALL (KM_ROLE_ADMIN | KM_ROLE_CUSTODIAN | KM_ROLE_USER | KM_ROLE_AUDITOR)
static const char pfx_principal[] = "principal/";
static const char pfx_grant[] = "grant/";
static const char pfx_owner[] = "owner/";

static size_t rkey(uint8_t *out, const char *pfx, const uint8_t *a, const uint8_t *b)
{
    size_t n = strlen(pfx);
    memcpy(out, pfx, n);
    if (a != NULL) {
        memcpy(out + n, a, 16);
        n += 16;
    }
    if (b != NULL) {
        memcpy(out + n, b, 16);
        n += 16;
    }
    return n;
}

static void role_gid(uint32_t role, uint8_t gid[16])
{
    memset(gid, 0xff, 15);
    gid[15] = (uint8_t)role;
}

static const char *role_name(uint32_t r)
{
    return r == KM_ROLE_ADMIN ? "admin" : r == KM_ROLE_CUSTODIAN ? "custodian"
         : r == KM_ROLE_USER ? "user" : r == KM_ROLE_AUDITOR ? "auditor" : "?";
}

/* ------------------------------------------------------------- principals */

typedef struct pfind {
    const char *name;     /* find by name, or */
    const uint8_t *pid;   /* by id */
    int found;
    uint8_t id[16];
    uint32_t roles;
    int64_t created;
    char pname[72];
    km_principal_fn fn;   /* or list */
    void *arg;
} pfind;

static int principal_rec(const uint8_t *key, size_t key_len, const uint8_t *val, size_t len,
                         void *arg)
{
    pfind *f = arg;
    const uint8_t *nm;
    size_t nl, pl = sizeof pfx_principal - 1;
    uint32_t roles;
    uint64_t created = 0;
    char name[72];

    if (key_len != pl + 16 || km__tlv_check(val, len) != KM_OK
        || !km__tlv_find(val, len, P_NAME, &nm, &nl) || nl == 0 || nl > 64
        || km__tlv_get_u32(val, len, P_ROLES, &roles) != KM_OK)
        return km__err(KM_E_CORRUPT, "a principal record is malformed");
    (void)km__tlv_get_u64(val, len, P_CREATED, &created);
    memcpy(name, nm, nl);
    name[nl] = '\0';
    if (f->fn != NULL)
        return f->fn(name, roles, (int64_t)created, f->arg);
    if ((f->name != NULL && strcmp(f->name, name) == 0)
        || (f->pid != NULL && km_ct_equal(f->pid, key + pl, 16))) {
        f->found = 1;
        memcpy(f->id, key + pl, 16);
        f->roles = roles;
        f->created = (int64_t)created;
        snprintf(f->pname, sizeof f->pname, "%s", name);
        return 1;
    }
    return 0;
}

static int principal_find(struct km_ctx *ctx, km__txn *t, pfind *f)
{
    return km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)pfx_principal,
                        sizeof pfx_principal - 1, principal_rec, f);
}

int km__acl_load(struct km_ctx *ctx)
{
    km__txn *t = NULL;
    pfind f;
    int rc;

    if (!ctx->is_principal) {
        ctx->roles = ROLES_ALL;
        return KM_OK;
    }
    memset(&f, 0, sizeof f);
    f.pid = ctx->principal_id;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = principal_find(ctx, t, &f);
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (!f.found)
        return km__err(KM_E_AUTH, "principal '%s' has been removed", ctx->principal_name);
    ctx->roles = f.roles;
    return KM_OK;
}

static int valid_name(const char *n)
{
    size_t i, len = n ? strlen(n) : 0;
    if (len == 0 || len > 64 || strncmp(n, "role:", 5) == 0 || strcmp(n, "owner") == 0)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)n[i] <= 0x20 || (unsigned char)n[i] >= 0x7f)
            return 0;
    return 1;
}

int km_principal_add(km_ctx *ctx, const char *name, uint32_t roles, const uint8_t *passphrase,
                     size_t passphrase_len, uint32_t kdf_cost)
{
    km__txn *t = NULL;
    pfind f;
    uint8_t pid[16], k[64], rec[128];
    km__tlv_w w;
    char d[120];
    int rc;

    if (ctx == NULL || !valid_name(name))
        return km__err(KM_E_INVALID, "km_principal_add: the name must be 1 to 64 printable "
                                     "bytes without spaces, not 'owner' or 'role:...'");
    if (roles == 0 || (roles & ~ROLES_ALL) != 0)
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
    km__tlv_put_str(&w, P_NAME, name);
    km__tlv_put_u32(&w, P_ROLES, roles);
    km__tlv_put_u64(&w, P_CREATED, (uint64_t)km__now(ctx));
    if ((rc = km__tlv_end(&w)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "%s roles 0x%x", name, roles);
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK) {
        pthread_mutex_unlock(&ctx->mu);
        return rc;
    }
    memset(&f, 0, sizeof f);
    f.name = name;
    rc = principal_find(ctx, t, &f);
    if (rc == KM_OK && f.found)
        rc = km__err(KM_E_EXISTS, "a principal named '%s' exists", name);
    if (rc == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, k, rkey(k, pfx_principal, pid, NULL), rec,
                         w.len, KM__PUT_NOOVERWRITE);
    if (rc == KM_OK)
        rc = km__slot_add_principal(t, ctx->master, passphrase, passphrase_len, kdf_cost, name,
                                    pid);
    if (rc == KM_OK) {
        char pp[80];
        int pl = snprintf(pp, sizeof pp, "add:%s", name);
        rc = km__quorum_consume(ctx, t, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)pp,
                                (size_t)pl);
    }
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_PRINCIPAL_ADD, NULL, 0, KM_OK, d);
    if (rc == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
    }
    km__txn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
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
    size_t pl = sizeof pfx_owner - 1;
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

int km_principal_remove(km_ctx *ctx, const char *name, int revoke_owned)
{
    km__txn *t = NULL;
    pfind f;
    gcollect g;
    owned o;
    uint8_t k[64];
    char d[160];
    size_t i;
    int rc;

    if (ctx == NULL || name == NULL)
        return km__err(KM_E_INVALID, "km_principal_remove: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_PRINCIPAL_REMOVE, NULL)) != KM_OK)
        return rc;
    if (ctx->is_principal && strcmp(ctx->principal_name, name) == 0)
        return km__err(KM_E_STATE, "km_principal_remove: a principal cannot remove itself");
    memset(&g, 0, sizeof g);
    memset(&o, 0, sizeof o);
    pthread_mutex_lock(&ctx->mu);
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        goto out;
    memset(&f, 0, sizeof f);
    f.name = name;
    if ((rc = principal_find(ctx, t, &f)) != KM_OK)
        goto out;
    if (!f.found) {
        rc = km__err(KM_E_NOTFOUND, "no principal named '%s'", name);
        goto out;
    }
    {
        char pp[80];
        int pl = snprintf(pp, sizeof pp, "remove:%s", name);
        rc = km__quorum_consume(ctx, t, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)pp,
                                (size_t)pl);
        if (rc != KM_OK)
            goto out;
    }
    /* its keyslots, its record, its grants, its keys' ownership */
    rc = km__slot_remove_principal(t, f.id);
    if (rc == KM_E_NOTFOUND)
        rc = KM_OK;
    if (rc != KM_OK)
        goto out;
    if ((rc = km__rec_del(t, KM__T_META, k, rkey(k, pfx_principal, f.id, NULL))) != KM_OK)
        goto out;
    g.gid = f.id;
    rc = km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)pfx_grant,
                      sizeof pfx_grant - 1, collect_keys, &g);
    for (i = 0; rc == KM_OK && i < g.n; i++)
        rc = km__rec_del(t, KM__T_META, g.keys[i], g.key_len);
    if (rc != KM_OK)
        goto out;
    o.pid = f.id;
    rc = km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)pfx_owner,
                      sizeof pfx_owner - 1, collect_owned, &o);
    for (i = 0; rc == KM_OK && i < o.n; i++)
        rc = km__rec_del(t, KM__T_META, k, rkey(k, pfx_owner, o.kids[i], NULL));
    if (rc != KM_OK)
        goto out;
    snprintf(d, sizeof d, "%s: %zu grant(s) removed, %zu owned key(s) to the owner%s", name, g.n,
             o.n, revoke_owned && o.n ? ", to be revoked" : "");
    if ((rc = km__audit_append(ctx, t, KM__OP_PRINCIPAL_REMOVE, NULL, 0, KM_OK, d)) != KM_OK)
        goto out;
    rc = km__txn_commit(t);
    t = NULL;
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
out:
    km__txn_abort(t);
    pthread_mutex_unlock(&ctx->mu);
    if (rc == KM_OK && revoke_owned) {
        /* every live version of the keys it owned: deactivated now */
        for (i = 0; rc == KM_OK && i < o.n; i++)
            rc = km__key_revoke_all(ctx, o.kids[i], "owner offboarded");
    }
    free(g.keys);
    free(o.kids);
    return rc;
}

int km_principal_list(km_ctx *ctx, km_principal_fn fn, void *arg)
{
    km__txn *t = NULL;
    pfind f;
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
    rc = principal_find(ctx, t, &f);
    km__txn_abort(t);
    return rc;
}

int km_whoami(km_ctx *ctx, char *name, size_t cap, uint32_t *roles)
{
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

/* The permissions of the context's principal on key `kid` (read now). */
static int perms_read(struct km_ctx *ctx, const uint8_t kid[16], uint32_t *perms)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint8_t k[64], gid[16];
    uint32_t r;
    int rc;

    *perms = 0;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, k, rkey(k, pfx_owner, kid, NULL), &rec);
    if (rc == KM_OK && km_secret_len(rec) == 16
        && km_ct_equal(km_secret_data(rec), ctx->principal_id, 16))
        *perms = KM_PERM_ALL;
    km_secret_free(rec);
    rec = NULL;
    if (rc == KM_E_NOTFOUND)
        rc = KM_OK;
    /* its own grant, and its roles' */
    for (r = 0; rc == KM_OK && r <= 4; r++) {
        if (r == 0)
            memcpy(gid, ctx->principal_id, 16);
        else if (ctx->roles & (1u << (r - 1)))
            role_gid(1u << (r - 1), gid);
        else
            continue;
        rc = km__rec_get(t, ctx->sealer, KM__T_META, k, rkey(k, pfx_grant, kid, gid), &rec);
        if (rc == KM_OK && km_secret_len(rec) == 4)
            *perms |= km__be32_get(km_secret_data(rec));
        else if (rc == KM_OK)
            rc = km__err(KM_E_CORRUPT, "a grant record is malformed");
        km_secret_free(rec);
        rec = NULL;
        if (rc == KM_E_NOTFOUND)
            rc = KM_OK;
    }
    km__txn_abort(t);
    /* an auditor-only principal never gets key material or crypto operations */
    if ((ctx->roles & ~KM_ROLE_AUDITOR) == 0)
        *perms = 0;
    return rc;
}

static uint32_t op_perm(int op)
{
    switch (op) {
    case KM__OP_ENCRYPT: case KM__OP_DATAKEY: return KM_PERM_ENCRYPT;
    case KM__OP_DECRYPT: case KM__OP_REWRAP: return KM_PERM_DECRYPT;
    case KM__OP_SIGN: return KM_PERM_SIGN;
    case KM__OP_VERIFY: return KM_PERM_VERIFY;
    case KM__OP_MAC: return KM_PERM_MAC;
    case KM__OP_DERIVE: case KM__OP_AGREE: return KM_PERM_DERIVE;
    case KM__OP_EXPORT: return KM_PERM_EXPORT;
    default: return 0;
    }
}

static const char *perm_name(uint32_t p)
{
    return p == KM_PERM_ENCRYPT ? "encrypt" : p == KM_PERM_DECRYPT ? "decrypt"
         : p == KM_PERM_SIGN ? "sign" : p == KM_PERM_VERIFY ? "verify"
         : p == KM_PERM_MAC ? "mac" : p == KM_PERM_DERIVE ? "derive"
         : p == KM_PERM_EXPORT ? "export" : "?";
}

/* The role an operation on the vault needs (0: any principal). */
static uint32_t op_role(int op)
{
    switch (op) {
    case KM__OP_READ: case KM__OP_PUBLIC: return 0;
    case KM__OP_AUDIT_READ: return KM_ROLE_AUDITOR | KM_ROLE_ADMIN;
    case KM__OP_APPROVE: return KM_ROLE_CUSTODIAN;
    default: return KM_ROLE_ADMIN;
    }
}

int km__acl_check(struct km_ctx *ctx, int op, const km__kobj *k)
{
    uint32_t need = op_perm(op), have = 0, role;
    char d[200];
    int rc;

    if (!ctx->is_principal)
        return KM_OK;   /* the owner: every right */
    if (need == 0) {
        role = op_role(op);
        if (role == 0 || (ctx->roles & role) != 0)
            return KM_OK;
        snprintf(d, sizeof d, "principal '%s' lacks the %s role for %s", ctx->principal_name,
                 role == (KM_ROLE_AUDITOR | KM_ROLE_ADMIN) ? "auditor or admin"
                                                           : role_name(role),
                 km__op_name(op));
    } else {
        if (k == NULL)
            return km__err(KM_E_INTERNAL, "access check of %s without a key", km__op_name(op));
        if (k->session)
            return KM_OK;   /* an ephemeral key belongs to whoever made it */
        {
            /* cached per key object: re-read after any write of this process,
             * and at least every refresh_ms (another process's grant change) */
            km__kobj *kc = (km__kobj *)(uintptr_t)k;
            unsigned gen = atomic_load(&km__write_gen) + 1u;
            int64_t now = km__mono_ms();
            if (atomic_load(&kc->acl_gen) == gen
                && now - atomic_load(&kc->acl_ms) < (int64_t)ctx->refresh_ms) {
                have = atomic_load(&kc->acl_perms);
            } else {
                if ((rc = perms_read(ctx, k->id, &have)) != KM_OK)
                    return rc;
                atomic_store(&kc->acl_perms, have);
                atomic_store(&kc->acl_ms, now);
                atomic_store(&kc->acl_gen, gen);
            }
        }
        if ((have & need) == need)
            return KM_OK;
        snprintf(d, sizeof d, "principal '%s' lacks the %s permission on key '%s'",
                 ctx->principal_name, perm_name(need), k->name ? k->name : "?");
    }
    (void)km__audit_event(ctx, KM__OP_DENIED, k ? k->id : NULL, 0, KM_E_DENIED, d);
    return km__err(KM_E_DENIED, "%s", d);
}

/* Records the creating principal as the owner of a new key (in t). */
int km__acl_set_owner(struct km_ctx *ctx, km__txn *t, const uint8_t kid[16])
{
    uint8_t k[64];
    if (!ctx->is_principal)
        return KM_OK;
    return km__rec_put(t, ctx->sealer, KM__T_META, k, rkey(k, pfx_owner, kid, NULL),
                       ctx->principal_id, 16, 0);
}

int km_key_grant(km_key *key, const char *grantee, uint32_t perms)
{
    km__kobj *k = NULL;
    struct km_ctx *ctx;
    km__txn *t = NULL;
    pfind f;
    uint8_t gid[16], rk[64], pb[4];
    char d[160];
    uint32_t role = 0;
    int rc;

    if (key == NULL || grantee == NULL || (perms & ~KM_PERM_ALL) != 0)
        return km__err(KM_E_INVALID, "km_key_grant: bad arguments");
    if (strncmp(grantee, "role:", 5) == 0) {
        const char *r = grantee + 5;
        role = strcmp(r, "admin") == 0 ? KM_ROLE_ADMIN : strcmp(r, "custodian") == 0
             ? KM_ROLE_CUSTODIAN : strcmp(r, "user") == 0 ? KM_ROLE_USER
             : strcmp(r, "auditor") == 0 ? KM_ROLE_AUDITOR : 0;
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
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        goto done;
    if (role != 0) {
        role_gid(role, gid);
    } else {
        memset(&f, 0, sizeof f);
        f.name = grantee;
        if ((rc = principal_find(ctx, t, &f)) != KM_OK)
            goto done;
        if (!f.found) {
            rc = km__err(KM_E_NOTFOUND, "no principal named '%s'", grantee);
            goto done;
        }
        memcpy(gid, f.id, 16);
    }
    rkey(rk, pfx_grant, k->id, gid);
    if (perms == 0) {
        rc = km__rec_del(t, KM__T_META, rk, sizeof pfx_grant - 1 + 32);
        if (rc == KM_E_NOTFOUND)
            rc = KM_OK;
    } else {
        km__be32_put(pb, perms);
        rc = km__rec_put(t, ctx->sealer, KM__T_META, rk, sizeof pfx_grant - 1 + 32, pb, 4, 0);
    }
    snprintf(d, sizeof d, "%s perms 0x%x", grantee, perms);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_KEY_GRANT, k->id, 0, KM_OK, d);
    if (rc == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
        if (rc == KM_OK)
            atomic_fetch_add(&km__write_gen, 1);
    }
done:
    km__txn_abort(t);
    return rc;
}

int km_key_perms(km_key *key, uint32_t *perms)
{
    km__kobj *k = NULL;
    int rc;

    if (key == NULL || perms == NULL)
        return km__err(KM_E_INVALID, "km_key_perms: bad arguments");
    *perms = 0;
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (!k->ctx->is_principal || k->session)
        *perms = KM_PERM_ALL;
    else
        rc = perms_read(k->ctx, k->id, perms);
    return rc;
}
