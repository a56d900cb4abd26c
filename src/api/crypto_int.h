/*
 * crypto_int.h - the data path shared inside the API layer: defined in
 * crypto.c (km_encrypt, km_decrypt, ...), used by envelope.c (km_datakey_*,
 * km_rewrap) too. Nothing outside src/api/ includes it.
 */
#ifndef KM_API_CRYPTO_INT_H
#define KM_API_CRYPTO_INT_H

#include "core.h"

/* Seals pt under the primary version of key into out: header with magic
 * `magic1` (KM__CT_MAGIC1 for data, KM__DK_MAGIC1 for a wrapped data key),
 * then ciphertext and tag (pt_len + KM_CIPHERTEXT_OVERHEAD bytes); usage,
 * access, lifecycle and usage-limit checks first, audited as the data-path
 * level says. On error out is zeroed.
 * Returns KM_OK; KM_E_INVALID (an argument, out overlapping pt); KM_E_BUFFER
 * (*out_len says the size); KM_E_USAGE; KM_E_DENIED; KM_E_STATE; KM_E_LIMIT;
 * and the backend's and the store's errors. */
int km__data_seal(km_key *key, uint8_t magic1, const uint8_t *pt, size_t pt_len,
                  const uint8_t *aad, size_t aad_len, uint8_t *out, size_t out_cap,
                  size_t *out_len);

/* Opens ct (a parsed header h, ct_len >= KM_CIPHERTEXT_OVERHEAD) with version
 * h->version of k, refreshing k once if that version is newer than it knows,
 * into out (ct_len - KM_CIPHERTEXT_OVERHEAD bytes). The caller has checked the
 * handle (km__key_use). flags: KM_DECRYPT_ALLOW_COMPROMISED.
 * Returns KM_OK; KM_E_UNSUPPORTED (unknown algorithm, backend without
 * aead_open); KM_E_INTEGRITY (another algorithm than the key's, failed
 * authentication); KM_E_USAGE; KM_E_DENIED; KM_E_NOTFOUND (no such version);
 * KM_E_STATE; and the backend's errors. */
int km__data_open(km__kobj *k, const km__ct_header *h, uint32_t flags, const uint8_t *ct,
                  size_t ct_len, const uint8_t *aad, size_t aad_len, uint8_t *out);

/* The argument checks of a decryption by function fn (its name in the
 * messages); sets *out_len to 0, or to the size needed on KM_E_BUFFER.
 * Returns KM_OK; KM_E_INVALID; KM_E_BUFFER. */
int km__data_args(const char *fn, const uint8_t *ct, size_t ct_len, const uint8_t *aad,
                  size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len,
                  uint32_t flags);

/* 1 when the non-empty buffers [a, a+alen) and [b, b+blen) overlap. */
int km__buf_overlaps(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* distribute.c: the material of a wrapped blob (KM_WRAP_KWP under a KEK of
 * the vault, KM_WRAP_RSA_OAEP_KWP to its import wrapping key), for
 * key_backup.c. Errors as km_key_import_wrapped's. */
int km__unwrap_blob(km_ctx *ctx, km_wrap_format format, const uint8_t *blob, size_t len,
                    km_secret **material);

/* An item of a batch done: its result rc and, for a failure, the message of
 * the thread's last error in its detail. Returns rc. */
int km__batch_done(km_batch_item *it, int rc);
/* km_batch's items one by one through the public functions (km_encrypt for
 * KM_BATCH_ENCRYPT); the first failure's code, KM_OK when none failed.
 * Client mode's km_batch (remote.c) and the local one but encrypt use it. */
int km__batch_each(km_key *key, km_batch_op op, uint32_t flags, km_batch_item *items,
                   size_t count);

#endif
