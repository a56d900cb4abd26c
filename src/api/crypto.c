/* crypto.c - the data path of include/km/crypto.h: encrypt, decrypt, sign,
 * MAC, verify, RSA decryption, the text encoding; checks in the core, then
 * dispatch to the backend. The envelope functions (km/envelope.h) are
 * envelope.c, over the sealing and opening shared through crypto_int.h. */
#include "core.h"
#include "crypto_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


size_t km_ciphertext_overhead(void) { return KM_CIPHERTEXT_OVERHEAD; }
size_t km_signature_max(void) { return KM_SIGNATURE_MAX; }
size_t km_mac_max(void) { return KM_MAC_MAX; }

/* A data-path call into the audit log (a no-op unless the level is "every").
 * A queue that cannot be written fails the call: fail closed. */
#define AUDIT_DATA(k, op, v, rc)                                                              \
    do {                                                                                  \
        if (atomic_load_explicit(&(k)->ctx->audit.level, memory_order_relaxed)              \
            == KM_AUDIT_DATA_EVERY) {                                                     \
            int arc_ = km__audit_data((k)->ctx, (op), (k)->id, (v) ? (v)->version : 0, (rc)); \
            if ((rc) == KM_OK && arc_ != KM_OK)                                           \
                (rc) = arc_;                                                              \
        }                                                                                 \
    } while (0)

/* A use of a COMPROMISED version is always audited (docs/LIFECYCLE.md), whatever the
 * data-path level, in its own transaction; if it cannot be, the call fails. */
static int audit_compromised(km__kobj *k, const km__ver *v, const char *what)
{
    char d[120];
    snprintf(d, sizeof d, "%s with compromised version %u of '%.64s'", what, v->version,
             k->name ? k->name : "");
    return km__audit_event(k->ctx, KM__OP_COMPROMISED_USE, k->id, v->version, KM_OK, d);
}

/* What a type does, from the key-type table (keytype.h). */
/* AES-GCM (a random nonce) or AES-SIV (deterministic: a zero nonce field). */
static int is_aead(km_key_type t)
{
    km__family f = km__type_family(t);
    return f == KM__FAM_AES_GCM || f == KM__FAM_AES_SIV;
}

static int is_ecdsa(km_key_type t)
{
    return km__type_family(t) == KM__FAM_ECDSA;
}

static int is_rsa(km_key_type t)
{
    return km__type_family(t) == KM__FAM_RSA;
}

static int is_signing(km_key_type t)
{
    km__family f = km__type_family(t);
    return f == KM__FAM_ECDSA || f == KM__FAM_EDDSA || f == KM__FAM_RSA;
}

static int is_mac(km_key_type t)
{
    return km__type_mac_len(t) != 0; /* HMAC, AES-CMAC */
}

/* Two buffers overlap (crypto_int.h). */
int km__buf_overlaps(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return a != NULL && b != NULL && alen > 0 && blen > 0 && a < b + blen && b < a + alen;
}

/* Checks the usage mask, then the operation's presence in the backend. */
static int check_usage(const km__kobj *k, uint32_t bit, const char *what)
{
    if (!(k->usage & bit))
        return km__err(KM_E_USAGE, "key '%s' (%s) may not %s", k->name,
                       km_key_type_name(k->type), what);
    return KM_OK;
}

/* Finds a version for processing: `version` 0 means the primary (or newest). */
static int find_version(km__kobj *k, uint32_t version, km__ver **out)
{
    if (version == 0)
        version = k->primary ? k->primary : k->nvers;
    if (version == 0 || version > k->nvers)
        return km__err(KM_E_NOTFOUND, "key '%s' has no version %u", k->name, version);
    *out = k->vers[version - 1];
    return KM_OK;
}

/* ---------------------------------------------------------- encrypt */

/* The argument checks of one sealing (fn: the name in messages). */
static inline __attribute__((always_inline)) int
seal_args(const char *fn, const uint8_t *pt, size_t pt_len, const uint8_t *aad,
          size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (out_len == NULL)
        return km__err(KM_E_INVALID, "%s: out_len is NULL", fn);
    *out_len = 0;
    if (out == NULL)
        return km__err(KM_E_INVALID, "%s: out is NULL", fn);
    if (pt == NULL && pt_len > 0)
        return km__err(KM_E_INVALID, "%s: pt is NULL", fn);
    if (aad == NULL && aad_len > 0)
        return km__err(KM_E_INVALID, "%s: aad is NULL", fn);
    if (pt_len > KM_PLAINTEXT_MAX)
        return km__err(KM_E_INVALID, "%s: pt_len exceeds KM_PLAINTEXT_MAX", fn);
    if (aad_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "%s: aad_len exceeds KM_AAD_MAX", fn);
    if (out_cap < pt_len + KM_CIPHERTEXT_OVERHEAD) {
        *out_len = pt_len + KM_CIPHERTEXT_OVERHEAD;
        return km__err(KM_E_BUFFER, "%s: out needs %zu bytes", fn, *out_len);
    }
    if (km__buf_overlaps(pt, pt_len, out, pt_len + KM_CIPHERTEXT_OVERHEAD))
        return km__err(KM_E_INVALID, "%s: out overlaps pt", fn);
    return KM_OK;
}

/* The key-level checks of a sealing: access, type, backend. */
static inline __attribute__((always_inline)) int
seal_key_checks(km__kobj *k, uint8_t magic1)
{
    int rc;
    if (k->ctx->is_principal
        && (rc = km__acl_check(k->ctx, magic1 == KM__CT_MAGIC1 ? KM__OP_ENCRYPT : KM__OP_DATAKEY,
                               k)) != KM_OK)
        return rc;
    if (!is_aead(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) does not encrypt data", k->name,
                       km_key_type_name(k->type));
    if (k->be->ops.aead_seal == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot encrypt", k->be->ops.name);
    return KM_OK;
}

/* One sealing under version v (loaded as obj), k->lock held: the count, the
 * nonce (none for AES-SIV), the header, the backend. Inlined into its one
 * caller: a call layer of ten arguments is ~30 instructions of a 64-byte
 * message's ~3,300. */
static inline __attribute__((always_inline)) int
seal_one(km__kobj *k, km__ver *v, void *obj, uint8_t magic1, const uint8_t *pt, size_t pt_len,
         const uint8_t *aad, size_t aad_len, uint8_t *out, size_t *out_len)
{
    km__ct_header h;
    int rc;

    if ((rc = km__ver_count(k, v, pt_len, k->usage_limit)) != KM_OK)
        return rc;
    if (km__type_family(k->type) == KM__FAM_AES_SIV)
        memset(h.nonce, 0, sizeof h.nonce); /* deterministic: no nonce (docs/FORMATS.md) */
    else if ((rc = km__nonce12(h.nonce)) != KM_OK)
        return rc;
    h.magic1 = magic1;
    h.alg = (uint8_t)k->type;
    memcpy(h.key_id, k->id, 16);
    h.version = v->version;
    km__ct_header_write(out, &h);
    rc = k->be->ops.aead_seal(obj, h.nonce, out, KM_CIPHERTEXT_HEADER, aad, aad_len, pt, pt_len,
                              out + KM_CIPHERTEXT_HEADER, out + KM_CIPHERTEXT_HEADER + pt_len);
    if (rc == KM_OK)
        *out_len = pt_len + KM_CIPHERTEXT_OVERHEAD;
    return rc;
}

/* Seals under the primary version (crypto_int.h). */
int km__data_seal(km_key *key, uint8_t magic1, const uint8_t *pt, size_t pt_len,
                  const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    unsigned lk;
    int rc;

    if (out_len != NULL)
        *out_len = 0;
    if (key == NULL && out_len != NULL)
        return km__err(KM_E_INVALID, "km_encrypt: key is NULL");
    if ((rc = seal_args("km_encrypt", pt, pt_len, aad, aad_len, out, out_cap, out_len)) != KM_OK)
        return rc;
    if ((rc = km__key_use(key, &k)) != KM_OK || (rc = seal_key_checks(k, magic1)) != KM_OK)
        return rc;

    lk = km__kobj_dp_rdlock(k);
    if ((rc = km__key_protect_check(k, KM_USAGE_ENCRYPT, "encrypt", 0, &v)) == KM_OK
        && (rc = km__ver_obj(k, v, &obj)) == KM_OK)
        rc = seal_one(k, v, obj, magic1, pt, pt_len, aad, aad_len, out, out_len);
    km__kobj_dp_unlock(k, lk);
    AUDIT_DATA(k, magic1 == KM__CT_MAGIC1 ? KM__OP_ENCRYPT : KM__OP_DATAKEY, v, rc);
    if (rc != KM_OK)
        km_memzero(out, pt_len + KM_CIPHERTEXT_OVERHEAD);
    return rc;
}

int km_encrypt(km_key *key, const uint8_t *pt, size_t pt_len, const uint8_t *aad,
               size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_ENCRYPT, key, pt, pt_len, aad, aad_len, out, out_cap, out_len);
    return km__data_seal(key, KM__CT_MAGIC1, pt, pt_len, aad, aad_len, out, out_cap, out_len);
}

/* ---------------------------------------------------------- decrypt */

/* Opens with the header's version of k (crypto_int.h). */
int km__data_open(km__kobj *k, const km__ct_header *h, uint32_t flags, const uint8_t *ct,
                  size_t ct_len, const uint8_t *aad, size_t aad_len, uint8_t *out)
{
    size_t n = ct_len - KM_CIPHERTEXT_OVERHEAD;
    km__ver *v = NULL;
    void *obj = NULL;
    unsigned lk;
    int rc, compromised = 0;

    if (!km__type_is_valid(h->alg))
        return km__err(KM_E_UNSUPPORTED, "ciphertext: unknown algorithm id %u", (unsigned)h->alg);
    if (h->alg != (uint8_t)k->type)
        return km__err(KM_E_INTEGRITY, "ciphertext header names another algorithm than its key");
    if (!is_aead(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) does not decrypt data", k->name,
                       km_key_type_name(k->type));
    if (k->be->ops.aead_open == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot decrypt", k->be->ops.name);
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, KM__OP_DECRYPT, k)) != KM_OK)
        return rc;
    lk = km__kobj_dp_rdlock(k);
    if ((rc = check_usage(k, KM_USAGE_DECRYPT, "decrypt")) != KM_OK)
        goto out;
    if (h->version > k->nvers) {
        /* Perhaps rotated by another process since we last looked. */
        km__kobj_dp_unlock(k, lk);
        if ((rc = km__kobj_refresh(k, 1)) != KM_OK)
            return rc;
        lk = km__kobj_dp_rdlock(k);
    }
    if (h->version > k->nvers) {
        rc = km__err(KM_E_NOTFOUND, "key '%s' has no version %u", k->name, h->version);
        goto out;
    }
    v = k->vers[h->version - 1];
    if ((rc = km__may_process(v, flags, km__now(k->ctx))) != KM_OK
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK)
        goto out;
    rc = k->be->ops.aead_open(obj, h->nonce, ct, KM_CIPHERTEXT_HEADER, aad, aad_len,
                              ct + KM_CIPHERTEXT_HEADER, n, ct + KM_CIPHERTEXT_HEADER + n, out);
    if (rc == KM_E_INTEGRITY)
        rc = km__err_over(KM_E_INTEGRITY, "ciphertext failed authentication (altered data, "
                                          "header or aad)");
out:
    compromised = v != NULL && v->state == KM_STATE_COMPROMISED;   /* read under the lock */
    km__kobj_dp_unlock(k, lk);
    AUDIT_DATA(k, KM__OP_DECRYPT, v, rc);
    if (rc == KM_OK && compromised)
        rc = audit_compromised(k, v, "decrypt");
    return rc;
}

/* The argument checks of a decryption (crypto_int.h). */
int km__data_args(const char *fn, const uint8_t *ct, size_t ct_len, const uint8_t *aad,
                  size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len,
                  uint32_t flags)
{
    if (out_len == NULL)
        return km__err(KM_E_INVALID, "%s: out_len is NULL", fn);
    *out_len = 0;
    if (ct == NULL)
        return km__err(KM_E_INVALID, "%s: ct is NULL", fn);
    if (aad == NULL && aad_len > 0)
        return km__err(KM_E_INVALID, "%s: aad is NULL", fn);
    if (aad_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "%s: aad_len exceeds KM_AAD_MAX", fn);
    if (flags & ~KM_DECRYPT_ALLOW_COMPROMISED)
        return km__err(KM_E_INVALID, "%s: flags has unknown bits", fn);
    if (ct_len < KM_CIPHERTEXT_OVERHEAD)
        return km__err(KM_E_INVALID, "%s: ciphertext shorter than %d bytes", fn,
                       KM_CIPHERTEXT_OVERHEAD);
    if (ct_len - KM_CIPHERTEXT_OVERHEAD > KM_PLAINTEXT_MAX)
        return km__err(KM_E_INVALID, "%s: ciphertext too long", fn);
    if (out == NULL && ct_len > KM_CIPHERTEXT_OVERHEAD)
        return km__err(KM_E_INVALID, "%s: out is NULL", fn);
    if (out_cap < ct_len - KM_CIPHERTEXT_OVERHEAD) {
        *out_len = ct_len - KM_CIPHERTEXT_OVERHEAD;
        return km__err(KM_E_BUFFER, "%s: out needs %zu bytes", fn, *out_len);
    }
    if (km__buf_overlaps(ct, ct_len, out, ct_len - KM_CIPHERTEXT_OVERHEAD))
        return km__err(KM_E_INVALID, "%s: out overlaps ct", fn);
    return KM_OK;
}

static void zero_out(uint8_t *out, size_t out_cap, size_t ct_len)
{
    if (out != NULL)
        km_memzero(out, out_cap < ct_len ? out_cap : ct_len);
}

int km_decrypt(km_ctx *ctx, uint32_t flags, const uint8_t *ct, size_t ct_len,
               const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_cap,
               size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_DECRYPT, flags, ct, ct_len, aad, aad_len, out, out_cap, out_len);
    km__ct_header h;
    km__kobj *k = NULL;
    int rc;

    rc = km__data_args("km_decrypt", ct, ct_len, aad, aad_len, out, out_cap, out_len, flags);
    if (rc == KM_OK && ctx == NULL)
        rc = km__err(KM_E_INVALID, "km_decrypt: ctx is NULL");
    if (rc == KM_OK)
        rc = km__ctx_check(ctx);
    if (rc == KM_OK)
        rc = km__ct_header_parse(ct, ct_len, &h);
    if (rc == KM_OK && h.magic1 != KM__CT_MAGIC1)
        rc = km__err(KM_E_INVALID, "km_decrypt: this is a wrapped data key or private key; use "
                     "km_datakey_decrypt or km_datakey_pair_decrypt");
    if (rc == KM_OK && (k = km__cache_peek(ctx, h.key_id)) != NULL) {
        /* hot path: the cached object, kept alive by the cache read lock */
        km_key tmp = { k, ctx->fork_gen };
        km__kobj *kk;
        rc = km__key_use(&tmp, &kk);
        if (rc == KM_OK)
            rc = km__data_open(k, &h, flags, ct, ct_len, aad, aad_len, out);
        km__cache_unlock(ctx);
    } else if (rc == KM_OK) {
        rc = km__kobj_get(ctx, h.key_id, &k);
        if (rc == KM_E_NOTFOUND)
            rc = km__err(KM_E_NOTFOUND, "the ciphertext's key is not in this vault");
        if (rc == KM_OK) {
            km_key tmp = { k, ctx->fork_gen };
            km__kobj *kk;
            rc = km__key_use(&tmp, &kk);
            if (rc == KM_OK)
                rc = km__data_open(k, &h, flags, ct, ct_len, aad, aad_len, out);
            km__kobj_unref(k);
        }
    }
    if (rc == KM_OK)
        *out_len = ct_len - KM_CIPHERTEXT_OVERHEAD;
    else if (rc != KM_E_BUFFER)
        zero_out(out, out_cap, ct_len);
    return rc;
}

int km_decrypt_key(km_key *key, uint32_t flags, const uint8_t *ct, size_t ct_len,
                   const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_cap,
                   size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_DECRYPT_KEY, key, flags, ct, ct_len, aad, aad_len, out, out_cap, out_len);
    km__ct_header h;
    km__kobj *k;
    int rc;

    rc = km__data_args("km_decrypt_key", ct, ct_len, aad, aad_len, out, out_cap, out_len, flags);
    if (rc == KM_OK && key == NULL)
        rc = km__err(KM_E_INVALID, "km_decrypt_key: key is NULL");
    if (rc == KM_OK)
        rc = km__ct_header_parse(ct, ct_len, &h);
    if (rc == KM_OK && h.magic1 != KM__CT_MAGIC1)
        rc = km__err(KM_E_INVALID, "km_decrypt_key: this is a wrapped data key or private key; "
                     "use km_datakey_decrypt or km_datakey_pair_decrypt");
    if (rc == KM_OK)
        rc = km__key_use(key, &k);
    if (rc == KM_OK && !km_ct_equal(h.key_id, k->id, 16))
        rc = km__err(KM_E_INTEGRITY, "the ciphertext belongs to another key");
    if (rc == KM_OK)
        rc = km__data_open(k, &h, flags, ct, ct_len, aad, aad_len, out);
    if (rc == KM_OK)
        *out_len = ct_len - KM_CIPHERTEXT_OVERHEAD;
    else if (rc != KM_E_BUFFER)
        zero_out(out, out_cap, ct_len);
    return rc;
}

/* ------------------------------------------------------- sign / MAC */

/* Shared by km_sign and km_mac: protect with the primary, optionally tagged. */
static int protect_tagged(km_key *key, int mac, uint32_t flags, const uint8_t *msg,
                          size_t msg_len, uint8_t *sig, size_t sig_cap, size_t *sig_len)
{
    const char *fn = mac ? "km_mac" : "km_sign";
    size_t hdr = (flags & KM_SIG_RAW) ? 0 : KM_TAG_HEADER, n = 0;
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    unsigned lk;
    int rc;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "%s: %s is NULL", fn, mac ? "tag_len" : "sig_len");
    *sig_len = 0;
    if (key == NULL || sig == NULL)
        return km__err(KM_E_INVALID, "%s: %s is NULL", fn, key == NULL ? "key" : mac ? "tag" : "sig");
    if (msg == NULL && msg_len > 0)
        return km__err(KM_E_INVALID, "%s: msg is NULL", fn);
    if (msg_len > KM_PLAINTEXT_MAX)
        return km__err(KM_E_INVALID, "%s: msg_len exceeds KM_PLAINTEXT_MAX", fn);
    if (flags & ~(KM_SIG_RAW | (mac ? 0 : KM_SIG_P1363 | KM_SIG_PKCS1)))
        return km__err(KM_E_INVALID, "%s: flags has unknown bits", fn);
    if (sig_cap <= hdr)
        return km__err(KM_E_BUFFER, "%s: output buffer too small", fn);
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal
        && (rc = km__acl_check(k->ctx, mac ? KM__OP_MAC : KM__OP_SIGN, k)) != KM_OK)
        return rc;
    if (mac ? !is_mac(k->type) : !is_signing(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) does not %s", k->name,
                       km_key_type_name(k->type), mac ? "compute MACs" : "sign");
    if ((flags & KM_SIG_P1363) && !is_ecdsa(k->type))
        return km__err(KM_E_INVALID, "%s: KM_SIG_P1363 applies to ECDSA keys only", fn);
    if ((flags & KM_SIG_PKCS1) && !is_rsa(k->type))
        return km__err(KM_E_INVALID, "%s: KM_SIG_PKCS1 applies to RSA keys only", fn);
    if ((mac ? (void *)k->be->ops.mac : (void *)k->be->ops.sign) == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot %s", k->be->ops.name,
                       mac ? "compute MACs" : "sign");

    lk = km__kobj_dp_rdlock(k);
    if ((rc = km__key_protect_check(k, mac ? KM_USAGE_MAC : KM_USAGE_SIGN,
                                    mac ? "compute MACs" : "sign", 0, &v)) != KM_OK
        || ((flags & KM_SIG_PKCS1)
            && (rc = km__policy_op_allowed(k->ops_forbidden, KM__POLICY_OP_RSA_PKCS1V15_SIGN))
                   != KM_OK)
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK)
        goto out;
    if (mac)
        rc = k->be->ops.mac(obj, msg, msg_len, sig + hdr, sig_cap - hdr, &n);
    else
        rc = k->be->ops.sign(obj, flags & (KM_SIG_P1363 | KM_SIG_PKCS1), msg, msg_len, sig + hdr,
                             sig_cap - hdr, &n);
    if (rc == KM_E_BUFFER) {
        *sig_len = n + hdr;
        goto out;
    }
    if (rc == KM_OK && (n == 0 || n > sig_cap - hdr))
        rc = km__err(KM_E_BACKEND, "backend '%s' returned a bad %s length", k->be->ops.name,
                     mac ? "MAC" : "signature");
    if (rc == KM_OK)
        rc = km__ver_count(k, v, msg_len, k->usage_limit);
    if (rc != KM_OK)
        goto out;
    if (hdr)
        km__tag_header_write(sig, mac ? KM__MAC_MAGIC1 : KM__SIG_MAGIC1, (uint8_t)k->type, k->id,
                             v->version);
    *sig_len = hdr + n;
out:
    km__kobj_dp_unlock(k, lk);
    if (rc != KM_E_BUFFER)
        AUDIT_DATA(k, mac ? KM__OP_MAC : KM__OP_SIGN, v, rc);
    if (rc != KM_OK && rc != KM_E_BUFFER)
        km_memzero(sig, sig_cap);
    return rc;
}

int km_sign(km_key *key, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
            size_t sig_cap, size_t *sig_len)
{
    KM__REMOTE_KEY(key, KM__KC_SIGN, key, flags, msg, msg_len, sig, sig_cap, sig_len);
    return protect_tagged(key, 0, flags, msg, msg_len, sig, sig_cap, sig_len);
}

int km_mac(km_key *key, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *tag,
           size_t tag_cap, size_t *tag_len)
{
    KM__REMOTE_KEY(key, KM__KC_MAC, key, flags, msg, msg_len, tag, tag_cap, tag_len);
    return protect_tagged(key, 1, flags, msg, msg_len, tag, tag_cap, tag_len);
}

/* "SHA256", "SHA2-256", "sha-256", ... -> the backend flag and the digest length. */
static uint32_t digest_flag(const char *name, size_t *len)
{
    static const struct { const char *names[3]; uint32_t flag; size_t len; } t[] = {
        { { "SHA256", "SHA2-256", "SHA-256" }, KM_BACKEND_SIG_SHA256, 32 },
        { { "SHA384", "SHA2-384", "SHA-384" }, KM_BACKEND_SIG_SHA384, 48 },
        { { "SHA512", "SHA2-512", "SHA-512" }, KM_BACKEND_SIG_SHA512, 64 },
    };
    size_t i, j;

    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        for (j = 0; j < 3; j++)
            if (strcasecmp(name, t[i].names[j]) == 0) {
                *len = t[i].len;
                return t[i].flag;
            }
    return 0;
}

int km_sign_digest(km_key *key, uint32_t version, uint32_t flags, const char *digest,
                   const uint8_t *dgst, size_t dgst_len, uint8_t *sig, size_t sig_cap,
                   size_t *sig_len)
{
    KM__REMOTE_KEY(key, KM__KC_SIGN_DIGEST, key, version, flags, digest, dgst, dgst_len, sig, sig_cap, sig_len);
    size_t want = 0, n = 0;
    uint32_t dflag;
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    int rc;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "km_sign_digest: sig_len is NULL");
    *sig_len = 0;
    if (key == NULL || digest == NULL || dgst == NULL || sig == NULL)
        return km__err(KM_E_INVALID, "km_sign_digest: %s is NULL",
                       key == NULL ? "key" : digest == NULL ? "digest" : dgst == NULL ? "dgst" : "sig");
    if ((dflag = digest_flag(digest, &want)) == 0)
        return km__err(KM_E_UNSUPPORTED, "km_sign_digest: digest '%.32s' is not SHA-256, SHA-384 "
                       "or SHA-512", digest);
    if (dgst_len != want)
        return km__err(KM_E_INVALID, "km_sign_digest: a %s digest is %zu bytes, not %zu", digest,
                       want, dgst_len);
    if (flags & ~(KM_SIG_P1363 | KM_SIG_PKCS1))
        return km__err(KM_E_INVALID, "km_sign_digest: flags has unknown bits");
    if (sig_cap == 0)
        return km__err(KM_E_BUFFER, "km_sign_digest: output buffer too small");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, KM__OP_SIGN, k)) != KM_OK)
        return rc;
    if (!is_signing(k->type) || km__type_family(k->type) == KM__FAM_EDDSA)
        return km__err(KM_E_USAGE, "key '%s' (%s) does not sign digests", k->name,
                       km_key_type_name(k->type));
    if ((flags & KM_SIG_P1363) && !is_ecdsa(k->type))
        return km__err(KM_E_INVALID, "km_sign_digest: KM_SIG_P1363 applies to ECDSA keys only");
    if ((flags & KM_SIG_PKCS1) && !is_rsa(k->type))
        return km__err(KM_E_INVALID, "km_sign_digest: KM_SIG_PKCS1 applies to RSA keys only");
    if (k->be->ops.sign == NULL || !(k->be->ops.caps & KM_BACKEND_CAP_SIGN_DIGEST))
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot sign digests", k->be->ops.name);

    pthread_rwlock_rdlock(&k->lock);
    if ((rc = km__key_protect_check(k, KM_USAGE_SIGN, "sign", version, &v)) != KM_OK
        || ((flags & KM_SIG_PKCS1)
            && (rc = km__policy_op_allowed(k->ops_forbidden, KM__POLICY_OP_RSA_PKCS1V15_SIGN))
                   != KM_OK)
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK)
        goto out;
    rc = k->be->ops.sign(obj, flags | dflag, dgst, dgst_len, sig, sig_cap, &n);
    if (rc == KM_E_BUFFER) {
        *sig_len = n;
        goto out;
    }
    if (rc == KM_OK && (n == 0 || n > sig_cap))
        rc = km__err(KM_E_BACKEND, "backend '%s' returned a bad signature length",
                     k->be->ops.name);
    if (rc == KM_OK)
        rc = km__ver_count(k, v, dgst_len, k->usage_limit);
    if (rc == KM_OK)
        *sig_len = n;
out:
    pthread_rwlock_unlock(&k->lock);
    if (rc != KM_E_BUFFER)
        AUDIT_DATA(k, KM__OP_SIGN, v, rc);
    if (rc != KM_OK && rc != KM_E_BUFFER) {
        km_memzero(sig, sig_cap);
        *sig_len = 0;
    }
    return rc;
}

/* The key's RSA-OAEP digest: its OpenSSL name and the backend flag. */
static const char *oaep_md(const km__kobj *k, uint32_t *flag)
{
    if (k->oaep_digest == 384) {
        *flag = KM_BACKEND_SIG_SHA384;
        return "SHA384";
    }
    if (k->oaep_digest == 512) {
        *flag = KM_BACKEND_SIG_SHA512;
        return "SHA512";
    }
    *flag = KM_BACKEND_SIG_SHA256;
    return "SHA256";
}

/* RSA-OAEP decryption with the key's digest and `label` into out (shared by
 * km_rsa_decrypt and km_rsa_oaep_decrypt); out_cap >= KM_SIGNATURE_MAX. */
static int rsa_open(const char *fn, km_key *key, uint32_t version, const uint8_t *label,
                    size_t label_len, const uint8_t *in, size_t in_len, uint8_t *out,
                    size_t out_cap, size_t *out_len)
{
    km__kobj *k;
    km__ver *v = NULL;
    km_secret *sec = NULL;
    void *obj = NULL;
    uint32_t dflag = 0;
    int rc, compromised = 0;

    *out_len = 0;
    if (key == NULL || (in == NULL && in_len > 0))
        return km__err(KM_E_INVALID, "%s: %s is NULL", fn, key == NULL ? "key" : "in");
    if (in_len == 0)
        return km__err(KM_E_INTEGRITY, "%s: an empty ciphertext", fn);
    if (label == NULL && label_len > 0)
        return km__err(KM_E_INVALID, "%s: label is NULL", fn);
    if (label_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "%s: label_len exceeds KM_AAD_MAX", fn);
    if (in_len > KM_SIGNATURE_MAX)
        return km__err(KM_E_INTEGRITY, "%s: input longer than any RSA modulus", fn);
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, KM__OP_DECRYPT, k)) != KM_OK)
        return rc;
    if (!is_rsa(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) is not an RSA key", k->name,
                       km_key_type_name(k->type));
    pthread_rwlock_rdlock(&k->lock);
    if (version > k->nvers) {
        pthread_rwlock_unlock(&k->lock);
        if ((rc = km__kobj_refresh(k, 1)) != KM_OK)
            return rc;
        pthread_rwlock_rdlock(&k->lock);
    }
    (void)oaep_md(k, &dflag);
    if (k->be->ops.rsa_decrypt == NULL
        && (k->be->ops.unwrap == NULL || dflag != KM_BACKEND_SIG_SHA256 || label_len > 0)) {
        rc = km__err(KM_E_UNSUPPORTED, "backend '%s' cannot decrypt RSA-OAEP%s", k->be->ops.name,
                     k->be->ops.unwrap != NULL ? " with a label or another digest than SHA-256"
                                               : "");
        goto out;
    }
    if ((rc = check_usage(k, KM_USAGE_UNWRAP, "unwrap (RSA-OAEP decrypt)")) != KM_OK
        || (rc = find_version(k, version, &v)) != KM_OK
        || (rc = km__may_process(v, 0, km__now(k->ctx))) != KM_OK
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK)
        goto out;
    if (k->be->ops.rsa_decrypt != NULL) {
        rc = k->be->ops.rsa_decrypt(obj, dflag, label, label_len, in, in_len, out, out_cap,
                                    out_len);
        if (rc == KM_OK && *out_len > out_cap)
            rc = km__err(KM_E_BACKEND, "backend '%s' returned a bad length", k->be->ops.name);
    } else {
        rc = k->be->ops.unwrap(obj, in, in_len, &sec);
        if (rc == KM_OK && km_secret_len(sec) > out_cap)
            rc = km__err(KM_E_BACKEND, "backend '%s' returned a bad length", k->be->ops.name);
        if (rc == KM_OK) {
            memcpy(out, km_secret_data(sec), km_secret_len(sec));
            *out_len = km_secret_len(sec);
        }
        km_secret_free(sec);
    }
out:
    compromised = v != NULL && v->state == KM_STATE_COMPROMISED;   /* read under the lock */
    pthread_rwlock_unlock(&k->lock);
    AUDIT_DATA(k, KM__OP_DECRYPT, v, rc);
    if (rc == KM_OK && compromised)
        rc = audit_compromised(k, v, "RSA decryption");
    if (rc != KM_OK) {
        km_memzero(out, out_cap);
        *out_len = 0;
    }
    return rc;
}

int km_rsa_decrypt(km_key *key, uint32_t version, const uint8_t *in, size_t in_len,
                   km_secret **out)
{
    KM__REMOTE_KEY(key, KM__KC_RSA_DECRYPT, key, version, in, in_len, out);
    uint8_t *buf;
    size_t n = 0;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_rsa_decrypt: out is NULL");
    *out = NULL;
    if ((buf = km__salloc(KM_SIGNATURE_MAX)) == NULL)
        return km__err(KM_E_NOMEM, "km_rsa_decrypt: no secure memory");
    rc = rsa_open("km_rsa_decrypt", key, version, NULL, 0, in, in_len, buf, KM_SIGNATURE_MAX, &n);
    if (rc == KM_OK && n == 0)
        rc = km__err(KM_E_INTEGRITY, "km_rsa_decrypt: the plaintext is empty (a km_secret "
                     "cannot be; km_rsa_oaep_decrypt returns it)");
    if (rc == KM_OK)
        rc = km_secret_from(out, buf, n);
    km__sfree(buf, KM_SIGNATURE_MAX);
    return rc;
}

int km_rsa_oaep_decrypt(km_key *key, uint32_t version, const uint8_t *label, size_t label_len,
                        const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                        size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_RSA_OAEP_DECRYPT, key, version, label, label_len, in, in_len, out, out_cap, out_len);
    uint8_t *buf;
    size_t n = 0;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_rsa_oaep_decrypt: out_len is NULL");
    *out_len = 0;
    if (out == NULL && out_cap > 0)
        return km__err(KM_E_INVALID, "km_rsa_oaep_decrypt: out is NULL");
    if ((buf = km__salloc(KM_SIGNATURE_MAX)) == NULL)
        return km__err(KM_E_NOMEM, "km_rsa_oaep_decrypt: no secure memory");
    rc = rsa_open("km_rsa_oaep_decrypt", key, version, label, label_len, in, in_len, buf,
                  KM_SIGNATURE_MAX, &n);
    if (rc == KM_OK && n > out_cap) {
        *out_len = n;
        rc = km__err(KM_E_BUFFER, "km_rsa_oaep_decrypt: out needs %zu bytes", n);
    } else if (rc == KM_OK) {
        if (n > 0)
            memcpy(out, buf, n);
        *out_len = n;
    }
    km__sfree(buf, KM_SIGNATURE_MAX);
    if (rc != KM_OK && rc != KM_E_BUFFER && out != NULL)
        km_memzero(out, out_cap);
    return rc;
}

int km_rsa_oaep_encrypt(km_key *key, uint32_t version, const uint8_t *label, size_t label_len,
                        const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                        size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_RSA_OAEP_ENCRYPT, key, version, label, label_len, in, in_len, out, out_cap, out_len);
    km__kobj *k;
    km__ver *v = NULL;
    km__pkey *pub = NULL;
    void *obj = NULL;
    uint8_t spki[2048]; /* an RSA-4096 SPKI is 550 bytes */
    size_t spki_len = 0;
    uint32_t dflag = 0;
    const char *md;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_rsa_oaep_encrypt: out_len is NULL");
    *out_len = 0;
    if (key == NULL || (in == NULL && in_len > 0) || (label == NULL && label_len > 0))
        return km__err(KM_E_INVALID, "km_rsa_oaep_encrypt: %s is NULL",
                       key == NULL ? "key" : in == NULL && in_len > 0 ? "in" : "label");
    if (label_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "km_rsa_oaep_encrypt: label_len exceeds KM_AAD_MAX");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, KM__OP_ENCRYPT, k)) != KM_OK)
        return rc;
    if (!is_rsa(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) is not an RSA key", k->name,
                       km_key_type_name(k->type));
    if (k->be->ops.public_key == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' gives no public key", k->be->ops.name);
    pthread_rwlock_rdlock(&k->lock);
    md = oaep_md(k, &dflag);
    /* encrypting to a key that may wrap, or decrypt what is encrypted to it */
    if ((rc = km__key_protect_check(k, (k->usage & KM_USAGE_WRAP) ? KM_USAGE_WRAP
                                                                  : KM_USAGE_UNWRAP,
                                    "encrypt to (RSA-OAEP)", version, &v))
            != KM_OK
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK
        || (rc = k->be->ops.public_key(obj, spki, sizeof spki, &spki_len)) != KM_OK)
        goto out;
    pthread_rwlock_unlock(&k->lock);
    if ((rc = km__pkey_from_spki(&pub, spki, spki_len)) == KM_OK)
        rc = km__pkey_rsa_oaep_encrypt(pub, md, label, label_len, in, in_len, out, out_cap,
                                       out_len);
    km__pkey_free(pub);
    AUDIT_DATA(k, KM__OP_ENCRYPT, v, rc);
    return rc;
out:
    pthread_rwlock_unlock(&k->lock);
    AUDIT_DATA(k, KM__OP_ENCRYPT, v, rc);
    return rc;
}

/* Shared by km_verify and km_mac_verify. */
static int process_tagged(km_key *key, int mac, uint32_t version, uint32_t flags,
                          const uint8_t *msg, size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    const char *fn = mac ? "km_mac_verify" : "km_verify";
    uint8_t full[128];
    size_t full_len = 0;
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    int rc, compromised = 0;

    if (key == NULL || sig == NULL)
        return km__err(KM_E_INVALID, "%s: %s is NULL", fn, key == NULL ? "key" : mac ? "tag" : "sig");
    if (msg == NULL && msg_len > 0)
        return km__err(KM_E_INVALID, "%s: msg is NULL", fn);
    if (msg_len > KM_PLAINTEXT_MAX)
        return km__err(KM_E_INVALID, "%s: msg_len exceeds KM_PLAINTEXT_MAX", fn);
    if (flags & ~(KM_SIG_RAW | (mac ? 0 : KM_SIG_P1363 | KM_SIG_PKCS1)))
        return km__err(KM_E_INVALID, "%s: flags has unknown bits", fn);
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->ctx->is_principal && (rc = km__acl_check(k->ctx, KM__OP_VERIFY, k)) != KM_OK)
        return rc;
    if (mac ? !is_mac(k->type) : !is_signing(k->type))
        return km__err(KM_E_USAGE, "key '%s' (%s) does not %s", k->name,
                       km_key_type_name(k->type), mac ? "verify MACs" : "verify signatures");
    if ((mac ? (void *)k->be->ops.mac : (void *)k->be->ops.verify) == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot verify", k->be->ops.name);
    if (!(flags & KM_SIG_RAW)) {
        uint8_t alg, id[16];
        uint32_t hv;
        if ((rc = km__tag_header_parse(sig, sig_len, mac ? KM__MAC_MAGIC1 : KM__SIG_MAGIC1, &alg,
                                       id, &hv)) != KM_OK)
            return rc;
        if (memcmp(id, k->id, 16) != 0)
            return km__err(KM_E_INVALID, "%s: the %s belongs to another key", fn,
                           mac ? "MAC" : "signature");
        if (alg != (uint8_t)k->type)
            return km__err(KM_E_INVALID, "%s: the header names another algorithm than the key's", fn);
        if (version != 0 && version != hv)
            return km__err(KM_E_INVALID, "%s: the header names version %u, not %u", fn, hv, version);
        version = hv;
        sig += KM_TAG_HEADER;
        sig_len -= KM_TAG_HEADER;
    }
    if (sig_len == 0)
        return km__err(KM_E_VERIFY, "%s: empty %s", fn, mac ? "MAC" : "signature");

    pthread_rwlock_rdlock(&k->lock);
    if (version > k->nvers) {
        pthread_rwlock_unlock(&k->lock);
        if ((rc = km__kobj_refresh(k, 1)) != KM_OK)
            return rc;
        pthread_rwlock_rdlock(&k->lock);
    }
    if ((rc = check_usage(k, mac ? KM_USAGE_MAC_VERIFY : KM_USAGE_VERIFY,
                          mac ? "verify MACs" : "verify signatures")) != KM_OK
        || (rc = find_version(k, version, &v)) != KM_OK
        || (rc = km__may_process(v, 0, km__now(k->ctx))) != KM_OK
        || (rc = km__ver_obj(k, v, &obj)) != KM_OK)
        goto out;
    if (!mac) {
        rc = k->be->ops.verify(obj, flags & (KM_SIG_P1363 | KM_SIG_PKCS1), msg, msg_len, sig,
                               sig_len);
        if (rc == KM_E_VERIFY)
            rc = km__err_over(KM_E_VERIFY, "signature does not verify");
        goto out;
    }
    rc = k->be->ops.mac(obj, msg, msg_len, full, sizeof full, &full_len);
    if (rc != KM_OK)
        goto out;
    /* Tagged MACs are full length; raw ones may be truncated to >= 16 bytes. */
    if (sig_len > full_len || sig_len < 16 || (!(flags & KM_SIG_RAW) && sig_len != full_len)
        || !km_ct_equal(full, sig, sig_len))
        rc = km__err(KM_E_VERIFY, "MAC does not verify");
out:
    compromised = v != NULL && v->state == KM_STATE_COMPROMISED;   /* read under the lock */
    pthread_rwlock_unlock(&k->lock);
    AUDIT_DATA(k, KM__OP_VERIFY, v, rc);
    if ((rc == KM_OK || rc == KM_E_VERIFY) && compromised) {
        int arc = audit_compromised(k, v, mac ? "MAC verification" : "signature verification");
        if (arc != KM_OK)
            rc = arc;
    }
    km_memzero(full, sizeof full);
    return rc;
}

int km_verify(km_key *key, uint32_t version, uint32_t flags, const uint8_t *msg,
              size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    KM__REMOTE_KEY(key, KM__KC_VERIFY, key, version, flags, msg, msg_len, sig, sig_len);
    return process_tagged(key, 0, version, flags, msg, msg_len, sig, sig_len);
}

int km_mac_verify(km_key *key, uint32_t version, uint32_t flags, const uint8_t *msg,
                  size_t msg_len, const uint8_t *tag, size_t tag_len)
{
    KM__REMOTE_KEY(key, KM__KC_MAC_VERIFY, key, version, flags, msg, msg_len, tag, tag_len);
    return process_tagged(key, 1, version, flags, msg, msg_len, tag, tag_len);
}

/* ----------------------------------------------------------- random */

int km_random(km_ctx *ctx, const char *protection, uint8_t *out, size_t len)
{
    KM__REMOTE(ctx, KM__KC_RANDOM, protection, out, len);
    km__backend_inst *b = NULL;
    int rc;

    if (ctx == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_random: %s is NULL", ctx == NULL ? "ctx" : "out");
    if (len == 0 || len > KM_RANDOM_MAX)
        return km__err(KM_E_INVALID, "km_random: len must be 1 to %u bytes, not %zu",
                       (unsigned)KM_RANDOM_MAX, len);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        goto out;
    if (protection == NULL || strcmp(protection, "software") == 0) {
        rc = km__random(out, len);
        goto out;
    }
    if ((rc = km__backend_get(ctx, protection, &b)) != KM_OK)
        goto out;
    if (b->ops.random == NULL) {
        rc = km__err(KM_E_UNSUPPORTED, "backend '%s' has no random generator", b->ops.name);
        goto out;
    }
    rc = b->ops.random(b->state, out, len);
    if (rc > 0)
        rc = km__err(KM_E_BACKEND, "backend '%s' random generator failed", b->ops.name);
out:
    if (rc != KM_OK)
        km_memzero(out, len);
    return rc;
}

/* ------------------------------------------------------------ batch */

/* An item's outcome (crypto_int.h). */
int km__batch_done(km_batch_item *it, int rc)
{
    it->result = rc;
    it->detail[0] = '\0';
    if (rc != KM_OK)
        snprintf(it->detail, sizeof it->detail, "%s", km_error_last()->message);
    return rc;
}

/* Encryption of many items under one hold of the key: access, type, state and
 * the version's object are checked and fetched once; each item gets its own
 * nonce, count and audit entry. */
static int batch_encrypt(km_key *key, km_batch_item *items, size_t count)
{
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    size_t i;
    int rc, first = KM_OK;

    rc = km__key_use(key, &k);
    if (rc == KM_OK)
        rc = seal_key_checks(k, KM__CT_MAGIC1);
    if (rc == KM_OK) {
        pthread_rwlock_rdlock(&k->lock);
        if ((rc = km__key_protect_check(k, KM_USAGE_ENCRYPT, "encrypt", 0, &v)) == KM_OK
            && (rc = km__ver_obj(k, v, &obj)) == KM_OK) {
            for (i = 0; i < count; i++) {
                km_batch_item *it = &items[i];
                int r = seal_args("km_batch encrypt", it->in, it->in_len, it->aad, it->aad_len,
                                  it->out, it->out_cap, &it->out_len);
                if (r == KM_OK)
                    r = seal_one(k, v, obj, KM__CT_MAGIC1, it->in, it->in_len, it->aad,
                                 it->aad_len, it->out, &it->out_len);
                if (r != KM_OK && r != KM_E_BUFFER && it->out != NULL)
                    km_memzero(it->out, it->out_cap < it->in_len + KM_CIPHERTEXT_OVERHEAD
                                        ? it->out_cap : it->in_len + KM_CIPHERTEXT_OVERHEAD);
                if (km__batch_done(it, r) != KM_OK && first == KM_OK)
                    first = r;
            }
        }
        pthread_rwlock_unlock(&k->lock);
    }
    if (rc != KM_OK) { /* the key refused: every item, with the same detail */
        for (i = 0; i < count; i++) {
            items[i].out_len = 0;
            km__batch_done(&items[i], rc);
        }
        return rc;
    }
    for (i = 0; i < count; i++) {
        int r = items[i].result;
        AUDIT_DATA(k, KM__OP_ENCRYPT, v, r);
        if (r != items[i].result) { /* the audit entry could not be queued: fail closed */
            km_memzero(items[i].out, items[i].out_len);
            items[i].out_len = 0;
            km__batch_done(&items[i], r);
            if (first == KM_OK)
                first = r;
        }
    }
    return first;
}

int km__batch_each(km_key *key, km_batch_op op, uint32_t flags, km_batch_item *items,
                   size_t count)
{
    size_t i;
    int first = KM_OK;

    for (i = 0; i < count; i++) {
        km_batch_item *it = &items[i];
        int r;
        it->out_len = 0;
        switch (op) {
        case KM_BATCH_ENCRYPT:
            r = km_encrypt(key, it->in, it->in_len, it->aad, it->aad_len, it->out, it->out_cap,
                           &it->out_len);
            break;
        case KM_BATCH_DECRYPT:
            r = km_decrypt_key(key, flags, it->in, it->in_len, it->aad, it->aad_len, it->out,
                               it->out_cap, &it->out_len);
            break;
        case KM_BATCH_SIGN:
            r = km_sign(key, flags, it->in, it->in_len, it->out, it->out_cap, &it->out_len);
            break;
        case KM_BATCH_MAC:
            r = km_mac(key, flags, it->in, it->in_len, it->out, it->out_cap, &it->out_len);
            break;
        case KM_BATCH_VERIFY:
            r = km_verify(key, 0, flags, it->in, it->in_len, it->sig, it->sig_len);
            break;
        default:
            r = km_mac_verify(key, 0, flags, it->in, it->in_len, it->sig, it->sig_len);
            break;
        }
        if (km__batch_done(it, r) != KM_OK && first == KM_OK)
            first = r;
    }
    return first;
}

int km_batch(km_key *key, km_batch_op op, uint32_t flags, km_batch_item *items, size_t count)
{
    if (key == NULL || (items == NULL && count > 0))
        return km__err(KM_E_INVALID, "km_batch: %s is NULL", key == NULL ? "key" : "items");
    if (count > KM_BATCH_MAX)
        return km__err(KM_E_INVALID, "km_batch: count exceeds KM_BATCH_MAX");
    if (op < KM_BATCH_ENCRYPT || op > KM_BATCH_MAC_VERIFY)
        return km__err(KM_E_INVALID, "km_batch: unknown operation %d", (int)op);
    if (op == KM_BATCH_ENCRYPT && flags != 0)
        return km__err(KM_E_INVALID, "km_batch: encrypt takes no flags");
    /* client mode: each item one call through kmd */
    KM__REMOTE_KEY(key, KM__KC_BATCH, key, op, flags, items, count);
    if (op == KM_BATCH_ENCRYPT)
        return batch_encrypt(key, items, count);
    return km__batch_each(key, op, flags, items, count);
}

/* ------------------------------------------------------------- text */

int km_text_encode(const uint8_t *bin, size_t bin_len, char *out, size_t out_cap,
                   size_t *out_len)
{
    size_t need;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_text_encode: out_len is NULL");
    *out_len = 0;
    if (bin == NULL || bin_len == 0)
        return km__err(KM_E_INVALID, "km_text_encode: bin is NULL or empty");
    if (bin_len > ((size_t)KM_PLAINTEXT_MAX + 4096))
        return km__err(KM_E_INVALID, "km_text_encode: bin_len too large");
    need = 4 + km__b64url_encoded_len(bin_len) + 1;
    if (out == NULL || out_cap < need) {
        *out_len = need;
        return km__err(KM_E_BUFFER, "km_text_encode: out needs %zu bytes", need);
    }
    memcpy(out, "km1:", 4);
    km__b64url_encode(bin, bin_len, out + 4);
    *out_len = need - 1;
    return KM_OK;
}

int km_text_decode(const char *text, size_t text_len, uint8_t *out, size_t out_cap,
                   size_t *out_len)
{
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_text_decode: out_len is NULL");
    *out_len = 0;
    if (text == NULL)
        return km__err(KM_E_INVALID, "km_text_decode: text is NULL");
    while (text_len > 0 && (text[text_len - 1] == '\n' || text[text_len - 1] == '\r'
                            || text[text_len - 1] == ' ' || text[text_len - 1] == '\t'))
        text_len--;
    if (text_len < 4 || memcmp(text, "km1:", 4) != 0)
        return km__err(KM_E_INVALID, "km_text_decode: text does not start with km1:");
    if (out == NULL && text_len > 4) {
        *out_len = (text_len - 4) / 4 * 3 + 3;
        return km__err(KM_E_BUFFER, "km_text_decode: out is NULL");
    }
    rc = km__b64url_decode(text + 4, text_len - 4, out, out_cap, out_len);
    return rc;
}
