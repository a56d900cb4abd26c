/* envelope.c - envelope encryption (include/km/envelope.h): data keys
 * generated and wrapped under a key-encryption key, their unwrapping, and the
 * rewrapping of ciphertexts and wrapped data keys under a key's primary
 * version. The sealing and opening are crypto.c's (crypto_int.h). */
#include "core.h"
#include "crypto_int.h"

#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------- envelope encryption */

size_t km_datakey_wrapped_len(void) { return KM_DATAKEY_WRAPPED_LEN; }

/* A data key's length: an AES key (16, 24, 32 bytes) or an HMAC / AES-SIV key (48, 64). */
static int key_len_ok(size_t n)
{
    return n == 16 || n == 24 || n == 32 || n == 48 || n == 64;
}

static int datakey_len_ok(size_t wrapped_len)
{
    return wrapped_len > KM_CIPHERTEXT_OVERHEAD && key_len_ok(wrapped_len - KM_CIPHERTEXT_OVERHEAD);
}

/* The vault policy allows protecting with `type` now (data keys and pairs are
 * keys of that type, outside the vault). */
static int policy_allows(km__kobj *k, km_key_type type)
{
    const km__policy *p = km__policy_acquire(k->ctx);
    int rc = km__policy_check_protect(p, type, km__now(k->ctx));
    km__policy_release(k->ctx);
    return rc;
}

/* Generates `len` random key bytes and seals them under kek (magic K D). */
static int datakey_make(km_key *kek, size_t len, const uint8_t *aad, size_t aad_len,
                        km_secret **plain, uint8_t *wrapped, size_t wrapped_cap,
                        size_t *wrapped_len)
{
    km_secret *dk = NULL;
    int rc;

    if (wrapped_cap < len + KM_CIPHERTEXT_OVERHEAD) {
        *wrapped_len = len + KM_CIPHERTEXT_OVERHEAD;
        return km__err(KM_E_BUFFER, "km_datakey_generate: wrapped needs %zu bytes", *wrapped_len);
    }
    if ((rc = km_secret_new(&dk, len)) != KM_OK)
        return rc;
    if ((rc = km__random_priv(km_secret_data(dk), len)) != KM_OK) {
        km_secret_free(dk);
        return rc;
    }
    rc = km__data_seal(kek, KM__DK_MAGIC1, km_secret_data(dk), len, aad, aad_len, wrapped,
                       wrapped_cap, wrapped_len);
    if (rc == KM_OK && plain != NULL)
        *plain = dk;
    else
        km_secret_free(dk);
    return rc;
}

int km_datakey_generate(km_key *kek, const uint8_t *aad, size_t aad_len, km_secret **plain,
                        uint8_t *wrapped, size_t wrapped_cap, size_t *wrapped_len)
{
    KM__REMOTE_KEY(kek, KM__KC_DATAKEY_GENERATE, kek, aad, aad_len, plain, wrapped, wrapped_cap, wrapped_len);
    if (plain != NULL)
        *plain = NULL;
    if (wrapped_len == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate: wrapped_len is NULL");
    *wrapped_len = 0;
    if (kek == NULL || wrapped == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate: %s is NULL", kek == NULL ? "kek" : "wrapped");
    return datakey_make(kek, KM_DATAKEY_LEN, aad, aad_len, plain, wrapped, wrapped_cap,
                        wrapped_len);
}

int km_datakey_generate_type(km_key *kek, km_key_type type, const uint8_t *aad, size_t aad_len,
                             km_secret **plain, uint8_t *wrapped, size_t wrapped_cap,
                             size_t *wrapped_len)
{
    KM__REMOTE_KEY(kek, KM__KC_DATAKEY_GENERATE_TYPE, kek, type, aad, aad_len, plain, wrapped, wrapped_cap, wrapped_len);
    km__kobj *k;
    size_t len = km__type_key_len(type);
    int rc;

    if (plain != NULL)
        *plain = NULL;
    if (wrapped_len == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate_type: wrapped_len is NULL");
    *wrapped_len = 0;
    if (kek == NULL || wrapped == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate_type: %s is NULL",
                       kek == NULL ? "kek" : "wrapped");
    if (!key_len_ok(len) || km__type_family(type) == KM__FAM_AES_KWP)
        return km__err(KM_E_INVALID, "km_datakey_generate_type: %s is not a data key type "
                       "(aes-*-gcm, hmac-*, aes-*-siv, aes-*-cmac)",
                       km__type_name(type) ? km__type_name(type) : "this");
    if ((rc = km__key_use(kek, &k)) != KM_OK || (rc = policy_allows(k, type)) != KM_OK)
        return rc;
    return datakey_make(kek, len, aad, aad_len, plain, wrapped, wrapped_cap, wrapped_len);
}

/* The types of data key pairs. */
static int pair_type_ok(km_key_type type)
{
    km__family f = km__type_family(type);
    return f == KM__FAM_ECDSA || f == KM__FAM_RSA || f == KM__FAM_EDDSA || f == KM__FAM_X25519;
}

int km_datakey_pair_generate(km_key *kek, km_key_type type, const uint8_t *aad, size_t aad_len,
                             km_secret **private_pkcs8, uint8_t *wrapped, size_t wrapped_cap,
                             size_t *wrapped_len, uint8_t *public_spki, size_t public_cap,
                             size_t *public_len)
{
    KM__REMOTE_KEY(kek, KM__KC_DATAKEY_PAIR_GENERATE, kek, type, aad, aad_len, private_pkcs8, wrapped, wrapped_cap, wrapped_len, public_spki, public_cap, public_len);
    static const uint8_t no_id[16];
    const km_backend_ops *sw = &km__software_backend;
    km_backend_keyspec spec;
    km_secret *ref = NULL, *priv = NULL;
    void *obj = NULL;
    km__kobj *k;
    size_t n;
    int rc;

    if (private_pkcs8 != NULL)
        *private_pkcs8 = NULL;
    if (wrapped_len == NULL || public_len == NULL)
        return km__err(KM_E_INVALID, "km_datakey_pair_generate: wrapped_len or public_len is NULL");
    *wrapped_len = *public_len = 0;
    if (kek == NULL || wrapped == NULL || public_spki == NULL)
        return km__err(KM_E_INVALID, "km_datakey_pair_generate: %s is NULL", kek == NULL ? "kek"
                       : wrapped == NULL ? "wrapped" : "public_spki");
    if (!pair_type_ok(type))
        return km__err(KM_E_INVALID, "km_datakey_pair_generate: %s is not a key pair type "
                       "(ec-p*, rsa-*, ed25519, x25519)",
                       km__type_name(type) ? km__type_name(type) : "this");
    if ((rc = km__key_use(kek, &k)) != KM_OK || (rc = policy_allows(k, type)) != KM_OK)
        return rc;
    memset(&spec, 0, sizeof spec);
    spec.version = 1;
    spec.type = type;
    spec.usage = km__type_usage(type);
    spec.key_id = no_id;
    spec.key_version = 1;
    /* the software backend makes it (its OpenSSL calls, in locked pages) */
    if ((rc = sw->generate(NULL, &spec, &ref)) != KM_OK
        || (rc = sw->load(NULL, &spec, km_secret_data(ref), km_secret_len(ref), &obj)) != KM_OK)
        goto out;
    rc = sw->public_key(obj, public_spki, public_cap, public_len);
    if (rc != KM_OK)
        goto out;
    n = km_secret_len(ref) - 1; /* the reference: a format byte, then the PKCS#8 DER */
    if (wrapped_cap < n + KM_CIPHERTEXT_OVERHEAD) {
        *wrapped_len = n + KM_CIPHERTEXT_OVERHEAD;
        rc = km__err(KM_E_BUFFER, "km_datakey_pair_generate: wrapped needs %zu bytes",
                     *wrapped_len);
        goto out;
    }
    rc = km__data_seal(kek, KM__DKP_MAGIC1, km_secret_data(ref) + 1, n, aad, aad_len, wrapped,
                       wrapped_cap, wrapped_len);
    if (rc == KM_OK && private_pkcs8 != NULL
        && (rc = km_secret_from(&priv, km_secret_data(ref) + 1, n)) == KM_OK)
        *private_pkcs8 = priv;
out:
    if (obj != NULL)
        sw->unload(NULL, obj);
    km_secret_free(ref);
    if (rc != KM_OK) {
        if (rc != KM_E_BUFFER)
            *public_len = 0;
        km_memzero(wrapped, wrapped_cap);
    }
    return rc;
}

/* Finds the key of a parsed header, uses it, and opens into `out`. */
static int open_by_header(km_ctx *ctx, const km__ct_header *h, uint32_t flags, const uint8_t *ct,
                          size_t ct_len, const uint8_t *aad, size_t aad_len, uint8_t *out,
                          km__kobj **kout)
{
    km__kobj *k = NULL, *kk;
    km_key tmp;
    int rc = km__kobj_get(ctx, h->key_id, &k);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "the ciphertext's key is not in this vault");
    if (rc != KM_OK)
        return rc;
    tmp.k = k;
    tmp.fork_gen = ctx->fork_gen;
    rc = km__key_use(&tmp, &kk);
    if (rc == KM_OK)
        rc = km__data_open(k, h, flags, ct, ct_len, aad, aad_len, out);
    if (rc == KM_OK && kout != NULL)
        *kout = k; /* the caller's reference */
    else
        km__kobj_unref(k);
    return rc;
}

int km_datakey_decrypt(km_ctx *ctx, const uint8_t *wrapped, size_t wrapped_len,
                       const uint8_t *aad, size_t aad_len, km_secret **out)
{
    KM__REMOTE(ctx, KM__KC_DATAKEY_DECRYPT, wrapped, wrapped_len, aad, aad_len, out);
    km__ct_header h;
    km_secret *dk = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: out is NULL");
    *out = NULL;
    if (ctx == NULL || wrapped == NULL)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: %s is NULL", ctx == NULL ? "ctx" : "wrapped");
    if (aad == NULL && aad_len > 0)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: aad is NULL");
    if (aad_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: aad_len exceeds KM_AAD_MAX");
    if (!datakey_len_ok(wrapped_len))
        return km__err(KM_E_INVALID, "km_datakey_decrypt: a wrapped data key is %d bytes "
                       "(or %d + 16, 24, 48, 64), not %zu", KM_DATAKEY_WRAPPED_LEN,
                       KM_CIPHERTEXT_OVERHEAD, wrapped_len);
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__ct_header_parse(wrapped, wrapped_len, &h)) != KM_OK)
        return rc;
    if (h.magic1 != KM__DK_MAGIC1)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: not a wrapped data key (a ciphertext "
                       "or a wrapped private key?)");
    if ((rc = km_secret_new(&dk, wrapped_len - KM_CIPHERTEXT_OVERHEAD)) != KM_OK)
        return rc;
    rc = open_by_header(ctx, &h, 0, wrapped, wrapped_len, aad, aad_len, km_secret_data(dk), NULL);
    if (rc != KM_OK) {
        km_secret_free(dk);
        return rc;
    }
    *out = dk;
    return KM_OK;
}

int km_datakey_pair_decrypt(km_ctx *ctx, const uint8_t *wrapped, size_t wrapped_len,
                            const uint8_t *aad, size_t aad_len, km_secret **private_pkcs8)
{
    KM__REMOTE(ctx, KM__KC_DATAKEY_PAIR_DECRYPT, wrapped, wrapped_len, aad, aad_len, private_pkcs8);
    km__ct_header h;
    km_secret *pk = NULL;
    int rc;

    if (private_pkcs8 == NULL)
        return km__err(KM_E_INVALID, "km_datakey_pair_decrypt: private_pkcs8 is NULL");
    *private_pkcs8 = NULL;
    if (ctx == NULL || wrapped == NULL)
        return km__err(KM_E_INVALID, "km_datakey_pair_decrypt: %s is NULL",
                       ctx == NULL ? "ctx" : "wrapped");
    if ((aad == NULL && aad_len > 0) || aad_len > KM_AAD_MAX)
        return km__err(KM_E_INVALID, "km_datakey_pair_decrypt: bad aad");
    if (wrapped_len <= KM_CIPHERTEXT_OVERHEAD || wrapped_len > KM_DATAKEY_PAIR_WRAPPED_MAX)
        return km__err(KM_E_INVALID, "km_datakey_pair_decrypt: not a wrapped private key "
                       "(length)");
    if ((rc = km__ctx_check(ctx)) != KM_OK
        || (rc = km__ct_header_parse(wrapped, wrapped_len, &h)) != KM_OK)
        return rc;
    if (h.magic1 != KM__DKP_MAGIC1)
        return km__err(KM_E_INVALID, "km_datakey_pair_decrypt: not a wrapped private key");
    if ((rc = km_secret_new(&pk, wrapped_len - KM_CIPHERTEXT_OVERHEAD)) != KM_OK)
        return rc;
    rc = open_by_header(ctx, &h, 0, wrapped, wrapped_len, aad, aad_len, km_secret_data(pk), NULL);
    if (rc != KM_OK) {
        km_secret_free(pk);
        return rc;
    }
    *private_pkcs8 = pk;
    return KM_OK;
}

/* km_rewrap and km_rewrap_to: open with the input's key, seal under `to` (NULL:
 * the same key) with new_aad (when new_aad_set). */
static int rewrap(const char *fn, km_ctx *ctx, uint32_t flags, const uint8_t *in, size_t in_len,
                  const uint8_t *aad, size_t aad_len, km_key *to, int new_aad_set,
                  const uint8_t *new_aad, size_t new_aad_len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    km__ct_header h;
    km__kobj *k = NULL;
    uint8_t *plain = NULL;
    size_t n;
    int rc, secret;

    rc = km__data_args(fn, in, in_len, aad, aad_len, out, out_cap, out_len, flags);
    if (rc == KM_E_BUFFER || (rc == KM_OK && out_cap < in_len)) {
        *out_len = in_len;
        return km__err(KM_E_BUFFER, "%s: out needs %zu bytes", fn, in_len);
    }
    if (rc == KM_OK && ctx == NULL)
        rc = km__err(KM_E_INVALID, "%s: ctx is NULL", fn);
    if (rc == KM_OK && new_aad_set
        && ((new_aad == NULL && new_aad_len > 0) || new_aad_len > KM_AAD_MAX))
        rc = km__err(KM_E_INVALID, "%s: bad new_aad", fn);
    if (rc == KM_OK && km__buf_overlaps(in, in_len, out, in_len))
        rc = km__err(KM_E_INVALID, "%s: out overlaps in", fn);
    if (rc == KM_OK)
        rc = km__ctx_check(ctx);
    if (rc == KM_OK && to != NULL) {
        km__kobj *tk;
        if ((rc = km__key_use(to, &tk)) == KM_OK && tk->ctx != ctx)
            rc = km__err(KM_E_INVALID, "%s: the target key belongs to another vault handle", fn);
    }
    if (rc == KM_OK)
        rc = km__ct_header_parse(in, in_len, &h);
    if (rc != KM_OK) {
        /* the documented promise: on error `out` is zeroed */
        if (out != NULL && !km__buf_overlaps(in, in_len, out, out_cap))
            km_memzero(out, out_cap < in_len ? out_cap : in_len);
        return rc;
    }
    n = in_len - KM_CIPHERTEXT_OVERHEAD;
    /* the plaintext never leaves libkm: it lives in a buffer wiped below
     * (secure memory for a data key or a private key) */
    secret = h.magic1 == KM__DK_MAGIC1 || h.magic1 == KM__DKP_MAGIC1;
    plain = secret ? km__salloc(n ? n : 1) : malloc(n ? n : 1);
    if (plain == NULL) {
        km_memzero(out, out_cap < in_len ? out_cap : in_len);
        return km__err(KM_E_NOMEM, "%s: out of memory", fn);
    }
    rc = open_by_header(ctx, &h, flags, in, in_len, aad, aad_len, plain, &k);
    if (rc == KM_OK) {
        km_key tmp = { k, ctx->fork_gen };
        if (new_aad_set) {
            aad = new_aad;
            aad_len = new_aad_len;
        }
        rc = km__data_seal(to != NULL ? to : &tmp, h.magic1, plain, n, aad, aad_len, out, out_cap,
                           out_len);
        km__kobj_unref(k);
    }
    if (secret) {
        km__sfree(plain, n ? n : 1);
    } else {
        km_memzero(plain, n);
        free(plain);
    }
    if (rc != KM_OK)
        km_memzero(out, out_cap < in_len ? out_cap : in_len);
    return rc;
}

int km_rewrap(km_ctx *ctx, const uint8_t *in, size_t in_len, const uint8_t *aad, size_t aad_len,
              uint8_t *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_REWRAP, in, in_len, aad, aad_len, out, out_cap, out_len);
    return rewrap("km_rewrap", ctx, 0, in, in_len, aad, aad_len, NULL, 0, NULL, 0, out, out_cap,
                  out_len);
}

int km_rewrap_to(km_ctx *ctx, const uint8_t *in, size_t in_len, const uint8_t *aad,
                 size_t aad_len, km_key *to, const uint8_t *new_aad, size_t new_aad_len,
                 uint8_t *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_REWRAP_TO, in, in_len, aad, aad_len, to, new_aad, new_aad_len, out, out_cap, out_len);
    return rewrap("km_rewrap_to", ctx, 0, in, in_len, aad, aad_len, to, new_aad != NULL, new_aad,
                  new_aad_len, out, out_cap, out_len);
}

int km_rewrap_ex(km_ctx *ctx, uint32_t flags, const uint8_t *in, size_t in_len,
                 const uint8_t *aad, size_t aad_len, km_key *to, const uint8_t *new_aad,
                 size_t new_aad_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_REWRAP_EX, flags, in, in_len, aad, aad_len, to, new_aad, new_aad_len, out, out_cap, out_len);
    return rewrap("km_rewrap_ex", ctx, flags, in, in_len, aad, aad_len, to, new_aad != NULL,
                  new_aad, new_aad_len, out, out_cap, out_len);
}

int km_rewrap_batch(km_ctx *ctx, size_t count, const uint8_t *const *in, const size_t *in_len,
                    const uint8_t *const *aad, const size_t *aad_len, uint8_t *const *out,
                    const size_t *out_cap, size_t *out_len, int *results)
{
    size_t i;
    int first = KM_OK;

    if (ctx == NULL || in == NULL || in_len == NULL || out == NULL || out_cap == NULL
        || out_len == NULL || results == NULL || (aad != NULL && aad_len == NULL))
        return km__err(KM_E_INVALID, "km_rewrap_batch: an array argument is NULL");
    if (count > 1000000)
        return km__err(KM_E_INVALID, "km_rewrap_batch: count exceeds 1,000,000");
    for (i = 0; i < count; i++) {
        if ((i & 255) == 0)
            km__progress(ctx, "rewrap", i, count);
        results[i] = km_rewrap(ctx, in[i], in_len[i], aad ? aad[i] : NULL, aad ? aad_len[i] : 0,
                               out[i], out_cap[i], &out_len[i]);
        if (results[i] != KM_OK && first == KM_OK)
            first = results[i];
    }
    km__progress(ctx, "rewrap", count, count);
    return first == KM_OK ? KM_OK : km__err(first, "km_rewrap_batch: an item failed (see results)");
}

int km_rewrap_batch_ex(km_ctx *ctx, uint32_t flags, km_batch_item *items, size_t count)
{
    KM__REMOTE(ctx, KM__KC_REWRAP_BATCH_EX, flags, items, count);
    size_t i;
    int first = KM_OK;

    if (ctx == NULL || (items == NULL && count > 0))
        return km__err(KM_E_INVALID, "km_rewrap_batch_ex: %s is NULL",
                       ctx == NULL ? "ctx" : "items");
    if (count > KM_BATCH_MAX)
        return km__err(KM_E_INVALID, "km_rewrap_batch_ex: count exceeds KM_BATCH_MAX");
    if (flags & ~KM_DECRYPT_ALLOW_COMPROMISED)
        return km__err(KM_E_INVALID, "km_rewrap_batch_ex: flags has unknown bits");
    for (i = 0; i < count; i++) {
        km_batch_item *it = &items[i];
        if ((i & 255) == 0)
            km__progress(ctx, "rewrap", i, count);
        if (km__batch_done(it, rewrap("km_rewrap_batch_ex", ctx, flags, it->in, it->in_len,
                                      it->aad, it->aad_len, NULL, 0, NULL, 0, it->out,
                                      it->out_cap, &it->out_len)) != KM_OK
            && first == KM_OK)
            first = it->result;
    }
    km__progress(ctx, "rewrap", count, count);
    return first == KM_OK ? KM_OK
                          : km__err(first, "km_rewrap_batch_ex: an item failed (see its detail)");
}
