/* envelope.c - envelope encryption (include/km/envelope.h): data keys
 * generated and wrapped under a key-encryption key, their unwrapping, and the
 * rewrapping of ciphertexts and wrapped data keys under a key's primary
 * version. The sealing and opening are crypto.c's (crypto_int.h). */
#include "core.h"
#include "crypto_int.h"

#include <stdlib.h>

/* -------------------------------------------------- envelope encryption */

size_t km_datakey_wrapped_len(void) { return KM_DATAKEY_WRAPPED_LEN; }

int km_datakey_generate(km_key *kek, const uint8_t *aad, size_t aad_len, km_secret **plain,
                        uint8_t *wrapped, size_t wrapped_cap, size_t *wrapped_len)
{
    km_secret *dk = NULL;
    int rc;

    if (plain != NULL)
        *plain = NULL;
    if (wrapped_len == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate: wrapped_len is NULL");
    *wrapped_len = 0;
    if (kek == NULL || wrapped == NULL)
        return km__err(KM_E_INVALID, "km_datakey_generate: %s is NULL", kek == NULL ? "kek" : "wrapped");
    if (wrapped_cap < KM_DATAKEY_WRAPPED_LEN) {
        *wrapped_len = KM_DATAKEY_WRAPPED_LEN;
        return km__err(KM_E_BUFFER, "km_datakey_generate: wrapped needs %d bytes",
                       KM_DATAKEY_WRAPPED_LEN);
    }
    if ((rc = km_secret_new(&dk, KM_DATAKEY_LEN)) != KM_OK)
        return rc;
    if ((rc = km__random_priv(km_secret_data(dk), KM_DATAKEY_LEN)) != KM_OK) {
        km_secret_free(dk);
        return rc;
    }
    rc = km__data_seal(kek, KM__DK_MAGIC1, km_secret_data(dk), KM_DATAKEY_LEN, aad, aad_len, wrapped,
                   wrapped_cap, wrapped_len);
    if (rc == KM_OK && plain != NULL)
        *plain = dk;
    else
        km_secret_free(dk);
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
    if (wrapped_len != KM_DATAKEY_WRAPPED_LEN)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: a wrapped data key is %d bytes",
                       KM_DATAKEY_WRAPPED_LEN);
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__ct_header_parse(wrapped, wrapped_len, &h)) != KM_OK)
        return rc;
    if (h.magic1 != KM__DK_MAGIC1)
        return km__err(KM_E_INVALID, "km_datakey_decrypt: not a wrapped data key (a ciphertext?)");
    if ((rc = km_secret_new(&dk, KM_DATAKEY_LEN)) != KM_OK)
        return rc;
    rc = open_by_header(ctx, &h, 0, wrapped, wrapped_len, aad, aad_len, km_secret_data(dk), NULL);
    if (rc != KM_OK) {
        km_secret_free(dk);
        return rc;
    }
    *out = dk;
    return KM_OK;
}

int km_rewrap(km_ctx *ctx, const uint8_t *in, size_t in_len, const uint8_t *aad, size_t aad_len,
              uint8_t *out, size_t out_cap, size_t *out_len)
{
    km__ct_header h;
    km__kobj *k = NULL;
    uint8_t *plain = NULL;
    size_t n;
    int rc;

    rc = km__data_args("km_rewrap", in, in_len, aad, aad_len, out, out_cap, out_len, 0);
    if (rc == KM_E_BUFFER || (rc == KM_OK && out_cap < in_len)) {
        *out_len = in_len;
        return km__err(KM_E_BUFFER, "km_rewrap: out needs %zu bytes", in_len);
    }
    if (rc == KM_OK && ctx == NULL)
        rc = km__err(KM_E_INVALID, "km_rewrap: ctx is NULL");
    if (rc == KM_OK && km__buf_overlaps(in, in_len, out, in_len))
        rc = km__err(KM_E_INVALID, "km_rewrap: out overlaps in");
    if (rc == KM_OK)
        rc = km__ctx_check(ctx);
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
     * (secure memory for a data key) */
    plain = h.magic1 == KM__DK_MAGIC1 ? km__salloc(n ? n : 1) : malloc(n ? n : 1);
    if (plain == NULL) {
        km_memzero(out, out_cap < in_len ? out_cap : in_len);
        return km__err(KM_E_NOMEM, "km_rewrap: out of memory");
    }
    rc = open_by_header(ctx, &h, 0, in, in_len, aad, aad_len, plain, &k);
    if (rc == KM_OK) {
        km_key tmp = { k, ctx->fork_gen };
        rc = km__data_seal(&tmp, h.magic1, plain, n, aad, aad_len, out, out_cap, out_len);
        km__kobj_unref(k);
    }
    if (h.magic1 == KM__DK_MAGIC1) {
        km__sfree(plain, n ? n : 1);
    } else {
        km_memzero(plain, n);
        free(plain);
    }
    if (rc != KM_OK)
        km_memzero(out, out_cap < in_len ? out_cap : in_len);
    return rc;
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
