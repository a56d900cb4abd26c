/**
 * @file km/envelope.h
 * @brief Envelope encryption: data keys wrapped under a key-encryption key
 * (KEK) of the vault, and re-wrapping under a KEK's newest version.
 *
 * A data key (DEK) is 32 random bytes (an AES-256 key) for the application
 * to encrypt bulk data with, outside libkm; only its wrapped form is stored
 * next to the data. The wrapped form is a libkm ciphertext (docs/FORMATS.md)
 * with the magic `K` `D`, so it names the KEK and its version, and a wrapped
 * data key can never be mistaken for (or decrypted as) ordinary data.
 */
#ifndef KM_ENVELOPE_H
#define KM_ENVELOPE_H

#include "common.h"
#include "key.h"
#include "secret.h"
#include "crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of a data key. */
#define KM_DATAKEY_LEN 32
/** Bytes of a wrapped data key (a 36-byte header, the key, a 16-byte tag). */
#define KM_DATAKEY_WRAPPED_LEN 84

/** Returns KM_DATAKEY_WRAPPED_LEN (the function twin, for FFI). Never fails. */
KM_EXTERN size_t km_datakey_wrapped_len(void);

/**
 * Generates a data key and wraps it under the KEK's primary version.
 *
 * @param[in]  kek      an AES-GCM key with KM_USAGE_ENCRYPT.
 * @param[in]  aad      bound to the wrapped key (needed again to unwrap); may be NULL when aad_len is 0.
 * @param[out] plain    the data key in secure memory (free with km_secret_free()),
 *                      or NULL to get only the wrapped form (as AWS's
 *                      GenerateDataKeyWithoutPlaintext).
 * @param[out] wrapped  at least KM_DATAKEY_WRAPPED_LEN bytes.
 * @return KM_OK; KM_E_INVALID; KM_E_BUFFER; and the errors of km_encrypt()
 *         (KM_E_USAGE, KM_E_STATE, KM_E_POLICY, KM_E_LIMIT, ...).
 * Thread-safe.
 * kmctl: datakey (which calls km_datakey_generate_type()).
 */
KM_EXTERN int km_datakey_generate(km_key *kek, const uint8_t *aad, size_t aad_len,
                                  km_secret **plain, uint8_t *wrapped, size_t wrapped_cap,
                                  size_t *wrapped_len);

/**
 * Unwraps a data key made by km_datakey_generate() or
 * km_datakey_generate_type() in this vault (KM_DATAKEY_WRAPPED_LEN bytes, or
 * KM_CIPHERTEXT_OVERHEAD + 16, 24, 48 or 64).
 *
 * @param[out] out  the data key in secure memory; free with km_secret_free().
 * @return KM_OK; KM_E_INVALID (not a wrapped data key, wrong length);
 *         KM_E_NOTFOUND (no such KEK or version); KM_E_STATE; KM_E_USAGE;
 *         KM_E_INTEGRITY (altered, or wrong aad); KM_E_UNSUPPORTED (future format).
 * kmctl: datakey decrypt.
 */
KM_EXTERN int km_datakey_decrypt(km_ctx *ctx, const uint8_t *wrapped, size_t wrapped_len,
                                 const uint8_t *aad, size_t aad_len, km_secret **out) KM_WUR;

/**
 * Re-encrypts a ciphertext or a wrapped data key under the newest (primary)
 * version of its own key, without handing the plaintext to the caller.
 *
 * The output has the input's length and kind. Use it after a rotation so
 * that old versions can be retired.
 * @param[in]  aad  the aad the input was made with; the output keeps it.
 * @param[out] out  at least in_len bytes; must not overlap `in`.
 * @return KM_OK; the errors of km_decrypt() for the input (KM_E_INTEGRITY,
 *         KM_E_STATE, ...) and of km_encrypt() for the output; KM_E_BUFFER.
 * On error `out` is zeroed.
 * kmctl: rewrap (which calls km_rewrap_ex()).
 */
KM_EXTERN int km_rewrap(km_ctx *ctx, const uint8_t *in, size_t in_len, const uint8_t *aad,
                        size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * Rewraps many ciphertexts or wrapped data keys in one call (as km_rewrap()
 * each), for a migration after a rotation.
 *
 * @param[in]  count    the number of items (at most 1,000,000).
 * @param[in]  aad      per item; NULL = no aad for any item (aad_len may then be NULL).
 * @param[out] out      per item, a buffer of out_cap[i] bytes (>= in_len[i]).
 * @param[out] out_len  per item, the bytes written.
 * @param[out] results  per item, its km_error_code (KM_OK or why it failed).
 * @return KM_OK when every item was rewrapped; otherwise the first item's
 *         error (the others are still attempted); KM_E_INVALID for NULL arrays.
 * results[] holds only codes: km_rewrap_batch_ex() keeps each item's detail.
 */
KM_EXTERN int km_rewrap_batch(km_ctx *ctx, size_t count, const uint8_t *const *in,
                              const size_t *in_len, const uint8_t *const *aad,
                              const size_t *aad_len, uint8_t *const *out, const size_t *out_cap,
                              size_t *out_len, int *results);

/** Longest data key of km_datakey_generate_type() (an HMAC-SHA-512 key). */
#define KM_DATAKEY_MAX 64

/**
 * As km_datakey_generate(), for a data key of the size of a symmetric key
 * `type`: aes-128-gcm, aes-192-gcm, aes-256-gcm (16, 24, 32 bytes; also
 * aes-*-cmac), hmac-sha256, hmac-sha384, hmac-sha512 (32, 48, 64 bytes: HMAC
 * keys as long as the digest), aes-128/192/256-siv (32, 48, 64). The wrapped
 * form is a `K` `D` ciphertext of the key, KM_CIPHERTEXT_OVERHEAD + its
 * length; it records the length, not the type (the caller knows what it asked
 * for). km_datakey_decrypt() unwraps every one.
 * @return as km_datakey_generate(); KM_E_INVALID for a type that is not
 *         symmetric (or aes-256-kwp); KM_E_POLICY when the vault policy
 *         refuses `type`.
 * kmctl: datakey.
 */
KM_EXTERN int km_datakey_generate_type(km_key *kek, km_key_type type, const uint8_t *aad,
                                       size_t aad_len, km_secret **plain, uint8_t *wrapped,
                                       size_t wrapped_cap, size_t *wrapped_len);

/** Room enough for any wrapped private key of km_datakey_pair_generate() (RSA-4096). */
#define KM_DATAKEY_PAIR_WRAPPED_MAX 4096
/** Room enough for any public key of km_datakey_pair_generate() (RSA-4096 SPKI DER). */
#define KM_DATAKEY_PAIR_PUBLIC_MAX 1024

/**
 * Generates a data key pair (AWS KMS GenerateDataKeyPair): an asymmetric key
 * of `type` (ec-p256, ec-p384, ec-p521, rsa-2048, rsa-3072, rsa-4096,
 * ed25519, x25519) made in software, its private key (PKCS#8 DER) wrapped
 * under the KEK's primary version with `aad`, its public key in the clear
 * (SubjectPublicKeyInfo DER). The wrapped form is a ciphertext with the magic
 * `K` `P` (docs/FORMATS.md): never decrypted by km_decrypt() or
 * km_datakey_decrypt(), only by km_datakey_pair_decrypt().
 *
 * @param[out] private_pkcs8  the private key in secure memory (the caller frees
 *                            it with km_secret_free()), or NULL to get only the
 *                            wrapped form (GenerateDataKeyPairWithoutPlaintext).
 * @param[out] wrapped        the caller's buffer: KM_DATAKEY_PAIR_WRAPPED_MAX
 *                            bytes are enough; zeroed on error.
 * @param[out] public_spki    the caller's buffer: KM_DATAKEY_PAIR_PUBLIC_MAX
 *                            bytes are enough.
 * @return KM_OK; KM_E_INVALID (a NULL kek, wrapped, public_spki, wrapped_len or
 *         public_len; a type that is not a key pair type); KM_E_POLICY (the
 *         vault or KEK policy refuses the type); KM_E_BUFFER (*wrapped_len or
 *         *public_len: the size needed); KM_E_CRYPTO (generation failed); and
 *         the errors of km_encrypt() for the KEK (KM_E_USAGE, KM_E_STATE,
 *         KM_E_DENIED, KM_E_FORK, ...). Audited as the KEK's data key use.
 * Thread-safe. kmctl: datakey-pair NAME --type TYPE --public-out FILE.
 */
KM_EXTERN int km_datakey_pair_generate(km_key *kek, km_key_type type, const uint8_t *aad,
                                       size_t aad_len, km_secret **private_pkcs8,
                                       uint8_t *wrapped, size_t wrapped_cap, size_t *wrapped_len,
                                       uint8_t *public_spki, size_t public_cap,
                                       size_t *public_len);

/**
 * Unwraps the private key of a data key pair (PKCS#8 DER, secure memory).
 * @param[out] private_pkcs8  set to the private key (free with
 *                            km_secret_free()), or NULL on error.
 * @return KM_OK; KM_E_INVALID (NULL ctx, wrapped or private_pkcs8, a bad aad,
 *         a length out of range, not a `K` `P` wrapped private key: a
 *         ciphertext or a wrapped data key); the errors of km_datakey_decrypt()
 *         (KM_E_NOTFOUND, KM_E_STATE, KM_E_USAGE, KM_E_DENIED, KM_E_INTEGRITY,
 *         KM_E_UNSUPPORTED, KM_E_FORK); KM_E_NOMEM.
 * Thread-safe. kmctl: datakey decrypt (it recognises the kind).
 */
KM_EXTERN int km_datakey_pair_decrypt(km_ctx *ctx, const uint8_t *wrapped, size_t wrapped_len,
                                      const uint8_t *aad, size_t aad_len,
                                      km_secret **private_pkcs8) KM_WUR;

/**
 * As km_rewrap(), to another key and/or another aad (AWS KMS ReEncrypt): the
 * input is opened with its own key and `aad`, and sealed again under `to`'s
 * primary version (NULL: the input's own key) with `new_aad` (NULL: the same
 * aad; non-NULL with new_aad_len 0: no aad). The kind (ciphertext, wrapped
 * data key, wrapped private key) and length stay. Opened by the principal's
 * grant on the source key (decrypt), sealed by its grant on `to` (encrypt,
 * datakey): both are checked; `to` must be of a type that encrypts.
 * @return as km_rewrap(); KM_E_USAGE (`to` does not encrypt); KM_E_DENIED.
 * kmctl: rewrap --to NAME [--new-aad TEXT] (which calls km_rewrap_ex()).
 */
KM_EXTERN int km_rewrap_to(km_ctx *ctx, const uint8_t *in, size_t in_len, const uint8_t *aad,
                           size_t aad_len, km_key *to, const uint8_t *new_aad, size_t new_aad_len,
                           uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * As km_rewrap_to() (to = NULL and new_aad = NULL: as km_rewrap()), with
 * decryption flags for the input: KM_DECRYPT_ALLOW_COMPROMISED rewraps data
 * under a COMPROMISED version to the primary version (recovery without
 * handing out the plaintext), audited as km_decrypt() with that flag.
 * @param[in] flags  0 or KM_DECRYPT_ALLOW_COMPROMISED.
 * @param[out] out   the caller's buffer, at least in_len bytes, not overlapping
 *                   `in`; zeroed on error.
 * @return as km_rewrap_to(): KM_OK; KM_E_INVALID (NULL arguments, unknown flag
 *         bits, a bad new_aad, out overlapping in, `to` from another vault
 *         handle, a malformed input); KM_E_BUFFER (*out_len = in_len); the
 *         errors of km_decrypt() for the input (KM_E_NOTFOUND, KM_E_STATE: a
 *         compromised version without the flag, KM_E_INTEGRITY,
 *         KM_E_UNSUPPORTED) and of km_encrypt() for the output (KM_E_USAGE,
 *         KM_E_STATE, KM_E_POLICY); KM_E_DENIED (either grant missing);
 *         KM_E_FORK; KM_E_NOMEM.
 * Thread-safe. kmctl: rewrap [--to NAME] [--new-aad TEXT] [--allow-compromised].
 */
KM_EXTERN int km_rewrap_ex(km_ctx *ctx, uint32_t flags, const uint8_t *in, size_t in_len,
                           const uint8_t *aad, size_t aad_len, km_key *to,
                           const uint8_t *new_aad, size_t new_aad_len, uint8_t *out,
                           size_t out_cap, size_t *out_len) KM_WUR;

/**
 * As km_rewrap_batch(), with per item its own error detail: each item's in,
 * in_len, aad, aad_len, out, out_cap are read (sig is ignored); out_len,
 * result and detail (why it failed, km_error_last()'s message) are written.
 * Each item is rewrapped as km_rewrap_ex() with `flags`; the others are still
 * attempted after a failure.
 * @param[in] flags  0 or KM_DECRYPT_ALLOW_COMPROMISED.
 * @param[in,out] items  the caller's array and buffers (libkm keeps no pointer
 *                   into them); NULL only when count is 0.
 * @return KM_OK when every item was rewrapped (also for count 0); otherwise the
 *         first failed item's code (each item's as km_rewrap_ex() returns it);
 *         KM_E_INVALID (NULL ctx or items, unknown flags, more than
 *         KM_BATCH_MAX items: then no item is touched). Progress is reported
 *         to the vault's progress callback every 256 items.
 * Thread-safe (two threads must not share one items array). kmctl: rewrap --batch
 * (JSON lines; with --to or a line's new aad each item goes through km_rewrap_ex()).
 */
KM_EXTERN int km_rewrap_batch_ex(km_ctx *ctx, uint32_t flags, km_batch_item *items,
                                 size_t count);

#ifdef __cplusplus
}
#endif
#endif /* KM_ENVELOPE_H */
