/* derive.c - key derivation and agreement (include/km/derive.h): km_derive
 * (HKDF from a derivation key), km_agree (ECDH/X25519/FFDHE with a peer's
 * public key, then HKDF), km_agree_raw (the shared secret itself, under its
 * own usage, grant and policy rule; every call audited). */
#include "core.h"

#include <stdio.h>
#include <string.h>


/* ------------------------------------------------- derivation, agreement */

/* Checks and loads the primary of a key for a derive or agree use (op: the
 * access-control and audit operation). *kout is set once the key is loaded,
 * also when a later check refuses (for the caller's audit entry); on success
 * the key's read lock is held: the caller unlocks. */
static int derive_use(km_key *key, uint32_t usage, int op, const char *what, km__kobj **kout,
                      void **obj)
{
    km__kobj *k;
    km__ver *v;
    int rc;
    *kout = NULL;
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    *kout = k;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, op, k)) != KM_OK)
        return rc;
    pthread_rwlock_rdlock(&k->lock);
    if ((rc = km__key_protect_check(k, usage, what, 0, &v)) == KM_OK
        && (usage != KM_USAGE_AGREE_RAW
            || (rc = km__policy_op_allowed(k->ops_forbidden, KM__POLICY_OP_AGREE_RAW)) == KM_OK))
        rc = km__ver_obj(k, v, obj);
    if (rc != KM_OK) {
        pthread_rwlock_unlock(&k->lock);
        return rc;
    }
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
    if ((rc = derive_use(key, KM_USAGE_DERIVE, KM__OP_DERIVE, "derive keys", &k, &obj)) != KM_OK)
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

/* The shared secret with a peer (the backend's agreement with the key's
 * primary version). *kp is the key once loaded (NULL when it did not), *ver
 * the version used. */
static int agree_z(km_key *key, uint32_t usage, int op, const uint8_t *peer, size_t peer_len,
                   km__kobj **kp, uint32_t *ver, km_secret **z)
{
    km__kobj *k;
    void *obj;
    int rc;

    *ver = 0;
    *z = NULL;
    if ((rc = derive_use(key, usage, op, usage == KM_USAGE_AGREE ? "agree keys"
                                         : "give out a raw shared secret (usage agree-raw)",
                         kp, &obj)) != KM_OK)
        return rc;
    k = *kp;
    *ver = k->primary;
    rc = k->be->ops.agree == NULL
             ? km__err(KM_E_UNSUPPORTED, "backend '%s' cannot agree keys", k->be->ops.name)
             : k->be->ops.agree(obj, peer, peer_len, z);
    pthread_rwlock_unlock(&k->lock);
    if (rc == KM_OK && (*z == NULL || km_secret_len(*z) == 0))
        rc = km__err(KM_E_BACKEND, "backend returned no shared secret");
    if (rc != KM_OK) {
        km_secret_free(*z);
        *z = NULL;
    }
    return rc;
}

int km_agree(km_key *key, const uint8_t *peer, size_t peer_len, const uint8_t *info,
             size_t info_len, size_t out_len, km_secret **out)
{
    KM__REMOTE_KEY(key, KM__KC_AGREE, key, peer, peer_len, info, info_len, out_len, out);
    km_secret *z = NULL, *s = NULL;
    km__kobj *k;
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
    /* refused before the backend ran (ver 0): not a data-path entry, as before */
    if ((rc = agree_z(key, KM_USAGE_AGREE, KM__OP_AGREE, peer, peer_len, &k, &ver, &z)) != KM_OK
        && ver == 0)
        return rc;
    if (atomic_load_explicit(&k->ctx->audit.level, memory_order_relaxed) == KM_AUDIT_DATA_EVERY) {
        int arc = km__audit_data(k->ctx, KM__OP_AGREE, k->id, ver, rc);
        if (rc == KM_OK && arc != KM_OK)
            rc = arc;
    }
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

/* FFDHE: Z as long as the prime (SP 800-56A rev. 3 section 5.7.1.1; RFC 7919
 * and TLS 1.3 pad it too), OpenSSL's DH derive drops leading zero bytes. */
static int pad_ffdhe(km__kobj *k, km_secret **z)
{
    const km__keytype *kt = km__keytype_get((int)k->type);
    size_t want = kt != NULL ? (kt->bits + 7) / 8 : 0, have = km_secret_len(*z);
    km_secret *p = NULL;
    int rc;

    if (kt == NULL || kt->family != KM__FAM_FFDHE || have >= want)
        return KM_OK;
    if ((rc = km_secret_new(&p, want)) != KM_OK)
        return rc;
    memset(km_secret_data(p), 0, want - have);
    memcpy(km_secret_data(p) + (want - have), km_secret_data(*z), have);
    km_secret_free(*z);
    *z = p;
    return KM_OK;
}

int km_agree_raw(km_key *key, const uint8_t *peer, size_t peer_len, km_secret **out)
{
    KM__REMOTE_KEY(key, KM__KC_AGREE_RAW, key, peer, peer_len, out);
    km_secret *z = NULL;
    km__kobj *k = NULL;
    uint8_t fp[32];
    char d[96];
    uint32_t ver;
    int rc, arc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_agree_raw: out is NULL");
    *out = NULL;
    if (key == NULL || peer == NULL || peer_len == 0 || peer_len > 4096)
        return km__err(KM_E_INVALID, "km_agree_raw: key and a peer key (up to 4 KiB) are needed");
    rc = agree_z(key, KM_USAGE_AGREE_RAW, KM__OP_AGREE_RAW, peer, peer_len, &k, &ver, &z);
    if (k == NULL)
        return rc;
    if (rc == KM_OK)
        rc = pad_ffdhe(k, &z);
    if (rc == KM_OK && km_secret_len(z) > KM_AGREE_RAW_MAX)
        rc = km__err(KM_E_BACKEND, "backend returned a shared secret longer than KM_AGREE_RAW_MAX");
    /* every call, whatever the audit level: a secret leaves libkm (the peer
     * named by the first bytes of its key's SHA-256) */
    if (km__digest("SHA256", peer, peer_len, fp, sizeof fp, &(size_t){ 0 }) != KM_OK)
        memset(fp, 0, sizeof fp);
    snprintf(d, sizeof d, "raw shared secret, %zu bytes, peer sha256 %02x%02x%02x%02x%02x%02x%02x%02x",
             rc == KM_OK ? km_secret_len(z) : (size_t)0, fp[0], fp[1], fp[2], fp[3], fp[4],
             fp[5], fp[6], fp[7]);
    if (rc == KM_OK || rc != KM_E_DENIED) {
        km_error saved = *km_error_last();
        arc = km__audit_event(k->ctx, KM__OP_AGREE_RAW, k->id, ver, rc, d);
        if (rc == KM_OK && arc != KM_OK)
            rc = arc;
        else if (rc != KM_OK)
            km__err_native(saved.code, saved.native_kind, saved.native, "%s", saved.message);
    }
    if (rc != KM_OK) {
        km_secret_free(z);
        return rc;
    }
    *out = z;
    return KM_OK;
}
