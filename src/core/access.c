/* access.c - the access check the core makes before dispatch: the opening
 * principal's roles, its permissions on a key (owner and grant records,
 * cached per key object), refusals into the audit log. The decision is the
 * rules' (rules_acl.c); the administration API is acl.c.
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

size_t km__acl_rkey(uint8_t *out, const char *pfx, const uint8_t *a, const uint8_t *b)
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

void km__acl_role_gid(uint32_t role, uint8_t gid[16])
{
    memset(gid, 0xff, 15);
    gid[15] = (uint8_t)role;
}

/* ------------------------------------------------------------- principals */

static int principal_rec(const uint8_t *key, size_t key_len, const uint8_t *val, size_t len,
                         void *arg)
{
    km__pfind *f = arg;
    const uint8_t *nm;
    size_t nl, pl = sizeof KM__PFX_PRINCIPAL - 1;
    uint32_t roles;
    uint64_t created = 0;
    char name[72];

    if (key_len != pl + 16 || km__tlv_check(val, len) != KM_OK
        || !km__tlv_find(val, len, KM__P_NAME, &nm, &nl) || nl == 0 || nl > 64
        || km__tlv_get_u32(val, len, KM__P_ROLES, &roles) != KM_OK)
        return km__err(KM_E_CORRUPT, "a principal record is malformed");
    (void)km__tlv_get_u64(val, len, KM__P_CREATED, &created);
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

int km__principal_find(struct km_ctx *ctx, km__txn *t, km__pfind *f)
{
    return km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)KM__PFX_PRINCIPAL,
                        sizeof KM__PFX_PRINCIPAL - 1, principal_rec, f);
}

int km__acl_load(struct km_ctx *ctx)
{
    km__txn *t = NULL;
    km__pfind f;
    int rc;

    if (!ctx->is_principal) {
        ctx->roles = KM__ROLES_ALL;
        return KM_OK;
    }
    memset(&f, 0, sizeof f);
    f.pid = ctx->principal_id;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__principal_find(ctx, t, &f);
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (!f.found)
        return km__err(KM_E_AUTH, "principal '%s' has been removed", ctx->principal_name);
    /* the (authenticated) keyslot that opened names this principal id; its
     * sealed record must carry the name it was opened under */
    if (strcmp(f.pname, ctx->principal_name) != 0)
        return km__err(KM_E_CORRUPT, "the keyslot of principal '%s' names another principal",
                       ctx->principal_name);
    ctx->roles = f.roles;
    return KM_OK;
}

/* ----------------------------------------------------------------- checks */

int km__acl_perms_read(struct km_ctx *ctx, const uint8_t kid[16], uint32_t *perms)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint8_t k[64], gid[16];
    uint32_t r, granted = 0;
    int rc, owns = 0;

    *perms = 0;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, k, km__acl_rkey(k, KM__PFX_OWNER, kid, NULL), &rec);
    if (rc == KM_OK && km_secret_len(rec) == 16
        && km_ct_equal(km_secret_data(rec), ctx->principal_id, 16))
        owns = 1;
    km_secret_free(rec);
    rec = NULL;
    if (rc == KM_E_NOTFOUND)
        rc = KM_OK;
    /* its own grant, and its roles' */
    for (r = 0; rc == KM_OK && r <= 4; r++) {
        if (r == 0)
            memcpy(gid, ctx->principal_id, 16);
        else if (ctx->roles & (1u << (r - 1)))
            km__acl_role_gid(1u << (r - 1), gid);
        else
            continue;
        rc = km__rec_get(t, ctx->sealer, KM__T_META, k, km__acl_rkey(k, KM__PFX_GRANT, kid, gid), &rec);
        if (rc == KM_OK && km_secret_len(rec) == 4)
            granted |= km__be32_get(km_secret_data(rec));
        else if (rc == KM_OK)
            rc = km__err(KM_E_CORRUPT, "a grant record is malformed");
        km_secret_free(rec);
        rec = NULL;
        if (rc == KM_E_NOTFOUND)
            rc = KM_OK;
    }
    km__txn_abort(t);
    *perms = km__rules_effective_perms(ctx->roles, owns, granted);
    return rc;
}

int km__acl_check(struct km_ctx *ctx, int op, const km__kobj *k)
{
    km__subject s;
    uint32_t have = 0;
    char d[200];
    int rc;

    if (!ctx->is_principal)
        return KM_OK;   /* the owner: every right */
    /* the principal's roles, re-read after any write of this process and at
     * least every refresh_ms (a removal or role change by another process):
     * rights are never those of the moment the vault was opened */
    {
        unsigned gen = km__wtxn_gen() + 1u;
        int64_t now = km__mono_ms();
        if (atomic_load(&ctx->roles_gen) != gen
            || now - atomic_load(&ctx->roles_ms) >= (int64_t)ctx->refresh_ms) {
            if ((rc = km__acl_load(ctx)) != KM_OK) {
                if (rc != KM_E_AUTH)
                    return rc;
                snprintf(d, sizeof d, "principal '%s' has been removed", ctx->principal_name);
                (void)km__audit_event(ctx, KM__OP_DENIED, k ? k->id : NULL, 0, KM_E_DENIED, d);
                return km__err(KM_E_DENIED, "%s", d);
            }
            atomic_store(&ctx->roles_ms, now);
            atomic_store(&ctx->roles_gen, gen);
        }
    }
    if (km__rules_op_perm(op) != 0) {
        if (k == NULL)
            return km__err(KM_E_INTERNAL, "access check of %s without a key", km__op_name(op));
        if (k->session)
            return KM_OK;   /* an ephemeral key belongs to whoever made it */
        {
            /* cached per key object: re-read after any write of this process,
             * and at least every refresh_ms (another process's grant change) */
            km__kobj *kc = (km__kobj *)(uintptr_t)k;
            unsigned gen = km__wtxn_gen() + 1u;
            int64_t now = km__mono_ms();
            if (atomic_load(&kc->acl_gen) == gen
                && now - atomic_load(&kc->acl_ms) < (int64_t)ctx->refresh_ms) {
                have = atomic_load(&kc->acl_perms);
            } else {
                if ((rc = km__acl_perms_read(ctx, k->id, &have)) != KM_OK)
                    return rc;
                atomic_store(&kc->acl_perms, have);
                atomic_store(&kc->acl_ms, now);
                atomic_store(&kc->acl_gen, gen);
            }
        }
    }
    s.is_principal = ctx->is_principal;
    s.name = ctx->principal_name;
    s.roles = ctx->roles;
    if (km__rules_acl_decide(&s, op, k != NULL ? k->name : NULL, have, d, sizeof d) == KM_OK)
        return KM_OK;
    (void)km__audit_event(ctx, KM__OP_DENIED, k ? k->id : NULL, 0, KM_E_DENIED, d);
    return km__err(KM_E_DENIED, "%s", d);
}

/* Records the creating principal as the owner of a new key (in t). */
int km__acl_set_owner(struct km_ctx *ctx, km__txn *t, const uint8_t kid[16])
{
    uint8_t k[64];
    if (!ctx->is_principal)
        return KM_OK;
    return km__rec_put(t, ctx->sealer, KM__T_META, k, km__acl_rkey(k, KM__PFX_OWNER, kid, NULL),
                       ctx->principal_id, 16, 0);
}
