/* derive.c - key derivation and agreement (include/km/derive.h): km_derive
 * (HKDF from a derivation key), km_agree (ECDH/X25519 with a peer's public
 * key, then HKDF). */
#include "core.h"


/* ------------------------------------------------- derivation, agreement */

/* Checks and loads the primary of a key for a derive or agree use. On
 * success the key's read lock is held: the caller unlocks. */
static int derive_use(km_key *key, uint32_t usage, const char *what, km__kobj **kout, void **obj)
{
    km__kobj *k;
    km__ver *v;
    int rc;
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, usage == KM_USAGE_DERIVE
                                                                ? KM__OP_DERIVE : KM__OP_AGREE,
                                                    k)) != KM_OK)
        return rc;
    pthread_rwlock_rdlock(&k->lock);
    if ((rc = km__key_protect_check(k, usage, what, 0, &v)) == KM_OK)
        rc = km__ver_obj(k, v, obj);
    if (rc != KM_OK) {
        pthread_rwlock_unlock(&k->lock);
        return rc;
    }
    *kout = k;
    return KM_OK;
}

int km_derive(km_key *key, const uint8_t *salt, size_t salt_len, const uint8_t *info,
              size_t info_len, size_t out_len, km_secret **out)
{
    KM__REMOTE_KEY(key, KM__KC_DERIVE, key, salt, salt_len, info, info_len, out_len, out);
    km__kobj *k;
    void *obj;
    uint32_t ver;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_derive: out is NULL");
    *out = NULL;
    if (key == NULL || (salt == NULL && salt_len > 0) || (info == NULL && info_len > 0))
        return km__err(KM_E_INVALID, "km_derive: %s is NULL",
                       key == NULL ? "key" : salt == NULL && salt_len > 0 ? "salt" : "info");
    if (out_len == 0 || out_len > KM_DERIVE_MAX || salt_len > 4096 || info_len > 4096)
        return km__err(KM_E_INVALID, "km_derive: out_len must be 1 to %d, salt and info at most 4096 bytes",
                       KM_DERIVE_MAX);
    if ((rc = derive_use(key, KM_USAGE_DERIVE, "derive keys", &k, &obj)) != KM_OK)
        return rc;
    ver = k->primary;
    rc = k->be->ops.derive == NULL
             ? km__err(KM_E_UNSUPPORTED, "backend '%s' cannot derive", k->be->ops.name)
             : k->be->ops.derive(obj, salt, salt_len, info, info_len, out_len, out);
    pthread_rwlock_unlock(&k->lock);
    if (atomic_load_explicit(&k->ctx->audit.level, memory_order_relaxed) == KM_AUDIT_DATA_EVERY) {
        int arc = km__audit_data(k->ctx, KM__OP_DERIVE, k->id, ver, rc);
        if (rc == KM_OK && arc != KM_OK) {
            km_secret_free(*out);
            *out = NULL;
            rc = arc;
        }
    }
    if (rc == KM_OK && (*out == NULL || km_secret_len(*out) != out_len)) {
        km_secret_free(*out);
        *out = NULL;
        rc = km__err(KM_E_BACKEND, "backend returned a derived secret of the wrong length");
    }
    return rc;
}

int km_agree(km_key *key, const uint8_t *peer, size_t peer_len, const uint8_t *info,
             size_t info_len, size_t out_len, km_secret **out)
{
    KM__REMOTE_KEY(key, KM__KC_AGREE, key, peer, peer_len, info, info_len, out_len, out);
    km_secret *z = NULL, *s = NULL;
    km__kobj *k;
    void *obj;
    uint32_t ver;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_agree: out is NULL");
    *out = NULL;
    if (key == NULL || peer == NULL || peer_len == 0 || peer_len > 4096
        || (info == NULL && info_len > 0) || info_len > 4096)
        return km__err(KM_E_INVALID, "km_agree: key, a peer key (up to 4 KiB) and info (up to 4 KiB) are needed");
    if (out_len == 0 || out_len > KM_DERIVE_MAX)
        return km__err(KM_E_INVALID, "km_agree: out_len must be 1 to %d", KM_DERIVE_MAX);
    if ((rc = derive_use(key, KM_USAGE_AGREE, "agree keys", &k, &obj)) != KM_OK)
        return rc;
    ver = k->primary;
    rc = k->be->ops.agree == NULL
             ? km__err(KM_E_UNSUPPORTED, "backend '%s' cannot agree keys", k->be->ops.name)
             : k->be->ops.agree(obj, peer, peer_len, &z);
    pthread_rwlock_unlock(&k->lock);
    if (atomic_load_explicit(&k->ctx->audit.level, memory_order_relaxed) == KM_AUDIT_DATA_EVERY) {
        int arc = km__audit_data(k->ctx, KM__OP_AGREE, k->id, ver, rc);
        if (rc == KM_OK && arc != KM_OK)
            rc = arc;
    }
    if (rc == KM_OK && (z == NULL || km_secret_len(z) == 0))
        rc = km__err(KM_E_BACKEND, "backend returned no shared secret");
    if (rc == KM_OK && (rc = km_secret_new(&s, out_len)) == KM_OK)
        rc = km__hkdf_sha256(km_secret_data(z), km_secret_len(z), NULL, 0,
                             info != NULL ? info : (const uint8_t *)"", info_len,
                             km_secret_data(s), out_len);
    km_secret_free(z);
    if (rc != KM_OK) {
        km_secret_free(s);
        return rc;
    }
    *out = s;
    return KM_OK;
}
