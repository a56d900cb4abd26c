/**
 * @file km/crypto.h
 * @brief Using keys: encrypt, decrypt, sign, verify, MAC; the km1: text form.
 *
 * Every operation checks the version's state, the key's usage mask and the
 * vault's rules before any key material is touched. Callers never pass
 * nonces: libkm draws a fresh random 96-bit nonce for every encryption.
 */
#ifndef KM_CRYPTO_H
#define KM_CRYPTO_H

#include "common.h"
#include "key.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of the ciphertext header (magic, format, algorithm, key id, version, nonce). */
#define KM_CIPHERTEXT_HEADER 36
/** Bytes a ciphertext adds to its plaintext: the header and the 16-byte GCM tag. */
#define KM_CIPHERTEXT_OVERHEAD 52
/** Bytes of the header of a tagged signature or MAC (magic, format, algorithm, key id, version). */
#define KM_TAG_HEADER 24
/** Largest signature km_sign() writes, header included (RSA-4096). */
#define KM_SIGNATURE_MAX 1024
/** Largest MAC km_mac() writes, header included (HMAC-SHA-512). */
#define KM_MAC_MAX 88
/** Largest plaintext of one km_encrypt() call (64 GiB - 1 would be GCM's; libkm allows 1 GiB). */
#define KM_PLAINTEXT_MAX (1u << 30)
/** Largest caller aad. */
#define KM_AAD_MAX (1u << 20)

/* Function twins of the size constants, for FFI (bindings/python/km/_ffi.py). */
/** Returns KM_CIPHERTEXT_OVERHEAD. Never fails; thread-safe. */
KM_EXTERN size_t km_ciphertext_overhead(void);
/** Returns KM_SIGNATURE_MAX. Never fails; thread-safe. */
KM_EXTERN size_t km_signature_max(void);
/** Returns KM_MAC_MAX. Never fails; thread-safe. */
KM_EXTERN size_t km_mac_max(void);

/** km_sign() / km_verify() / km_mac() flags. */
#define KM_SIG_RAW   0x1u /**< no libkm header: the bare signature or MAC, for other tools */
#define KM_SIG_P1363 0x2u /**< ECDSA as r||s (IEEE P1363) instead of DER */
#define KM_SIG_PKCS1 0x4u /**< RSA PKCS#1 v1.5 padding instead of PSS: km_sign_digest(), and
                               km_sign()/km_verify() over whole messages (the key's digest) */

/** km_decrypt() flags. */
#define KM_DECRYPT_ALLOW_COMPROMISED 0x1u /**< process data under a COMPROMISED version (audited) */

/**
 * Encrypts with the key's primary version (AES-GCM, ciphertext format v1).
 *
 * @param[in]  key      an AES-GCM key with KM_USAGE_ENCRYPT.
 * @param[in]  pt       plaintext; may be NULL when pt_len is 0.
 * @param[in]  aad      associated data bound to the ciphertext; may be NULL when aad_len is 0.
 * @param[out] out      at least pt_len + KM_CIPHERTEXT_OVERHEAD bytes; must not overlap pt.
 * @param[out] out_len  bytes written, or needed when KM_E_BUFFER is returned.
 * @return KM_OK; KM_E_INVALID (NULL, too long, overlap); KM_E_BUFFER;
 *         KM_E_USAGE (type or usage mask); KM_E_STATE (no version may protect);
 *         KM_E_LIMIT (the version's invocation limit); KM_E_FORK; KM_E_BACKEND.
 * On error nothing is left in `out`. Thread-safe, also on one shared handle.
 * kmctl: encrypt.
 */
KM_EXTERN int km_encrypt(km_key *key, const uint8_t *pt, size_t pt_len,
                         const uint8_t *aad, size_t aad_len,
                         uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * Decrypts a ciphertext made by km_encrypt() in this vault.
 *
 * The key and version come from the authenticated header; the key is found
 * by id, never by trying keys; the algorithm comes from the key's metadata
 * and must match the header.
 *
 * @param[in]  flags    0 or KM_DECRYPT_ALLOW_COMPROMISED.
 * @param[out] out      at least ct_len - KM_CIPHERTEXT_OVERHEAD bytes.
 * @return KM_OK; KM_E_INVALID (NULL, shorter than the overhead, not a libkm
 *         ciphertext); KM_E_UNSUPPORTED (a future format version or unknown algorithm);
 *         KM_E_NOTFOUND (no such key or version); KM_E_STATE (the version may not
 *         process); KM_E_USAGE; KM_E_INTEGRITY (altered data, header or aad); KM_E_BUFFER.
 * On any error the first min(out_cap, ct_len) bytes of `out` are zero.
 * kmctl: decrypt.
 */
KM_EXTERN int km_decrypt(km_ctx *ctx, uint32_t flags, const uint8_t *ct, size_t ct_len,
                         const uint8_t *aad, size_t aad_len,
                         uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * As km_decrypt(), with the key given: a ciphertext of another key is
 * refused with KM_E_INTEGRITY before any decryption. The only way to decrypt
 * with a session key (km_session_key_create()).
 * @return as km_decrypt() (KM_E_INVALID for a NULL key).
 */
KM_EXTERN int km_decrypt_key(km_key *key, uint32_t flags, const uint8_t *ct, size_t ct_len,
                             const uint8_t *aad, size_t aad_len,
                             uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * Signs a message with the primary version.
 *
 * ECDSA hashes with SHA-256 (P-256), SHA-384 (P-384) or SHA-512 (P-521);
 * RSA uses PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt; Ed25519 is pure EdDSA.
 * By default the signature carries a 24-byte header naming key, version and
 * algorithm (docs/FORMATS.md); KM_SIG_RAW gives the bare signature.
 *
 * @param[in]  flags    KM_SIG_RAW, KM_SIG_P1363.
 * @param[out] sig      at least KM_SIGNATURE_MAX bytes is always enough.
 * @return KM_OK; KM_E_INVALID; KM_E_USAGE; KM_E_STATE; KM_E_BUFFER; KM_E_FORK; KM_E_BACKEND.
 * kmctl: sign.
 */
KM_EXTERN int km_sign(km_key *key, uint32_t flags, const uint8_t *msg, size_t msg_len,
                      uint8_t *sig, size_t sig_cap, size_t *sig_len);

/**
 * Signs a digest the caller computed (pre-hashed signing, as TLS, X.509 and
 * the OpenSSL provider need), with the primary version. The signature is
 * always raw (no libkm header); verify it with km_verify() only if it was made
 * as km_sign() would (same digest, PSS), or with any standard verifier.
 *
 * ECDSA signs the digest as given (TLS 1.2 may pair any of the digests with
 * any curve); RSA uses PSS with MGF1 of the same digest and a salt as long as
 * the digest (what TLS 1.3 and RFC 8446 rsa_pss_rsae_* require), or PKCS#1
 * v1.5 with KM_SIG_PKCS1. Ed25519 signs messages only: use km_sign().
 *
 * @param[in]  version  0 = the primary; otherwise the version the caller
 *                      expects (the one its certificate names): KM_E_STATE if
 *                      it is not the primary, so that no other version signs.
 * @param[in]  flags    KM_SIG_P1363 (ECDSA only), KM_SIG_PKCS1 (RSA only).
 * @param[in]  digest   "SHA256", "SHA384" or "SHA512" (also "SHA2-256", "SHA-256", ...,
 *                      any case); SHA-1 and others are refused.
 * @param[in]  dgst     the digest, exactly as long as `digest` gives.
 * @param[out] sig      at least KM_SIGNATURE_MAX bytes is always enough.
 * @return KM_OK; KM_E_INVALID (NULL, bad flags, wrong digest length);
 *         KM_E_UNSUPPORTED (unknown digest; a backend that cannot sign digests);
 *         KM_E_USAGE (not a signing key, Ed25519, usage mask); KM_E_POLICY;
 *         KM_E_STATE (no version may protect, or `version` is not the primary);
 *         KM_E_BUFFER; KM_E_FORK; KM_E_BACKEND.
 * On error nothing is left in `sig`. Thread-safe, also on one shared handle.
 */
KM_EXTERN int km_sign_digest(km_key *key, uint32_t version, uint32_t flags, const char *digest,
                             const uint8_t *dgst, size_t dgst_len, uint8_t *sig, size_t sig_cap,
                             size_t *sig_len);

/**
 * RSA-OAEP decryption (the key's OAEP digest, SHA-256 unless created with
 * km_key_options::rsa_oaep_digest, the same for MGF1; empty label) of a small
 * secret, typically a key wrapped to this RSA key by another party (CMS, a KMS
 * import). A process operation: SUSPENDED and DEACTIVATED versions still
 * decrypt. An empty plaintext is KM_E_INTEGRITY here (a km_secret is never
 * empty): km_rsa_oaep_decrypt() returns it.
 *
 * @param[in]  key      an RSA key with KM_USAGE_UNWRAP.
 * @param[in]  version  0 = the primary (or newest).
 * @param[in]  in       exactly the modulus size in bytes.
 * @param[out] out      the plaintext in secure memory; free with km_secret_free().
 * @return KM_OK; KM_E_INVALID; KM_E_USAGE (not RSA, usage mask); KM_E_NOTFOUND (version);
 *         KM_E_STATE (the version may not process); KM_E_INTEGRITY (wrong key or altered
 *         data, wrong length); KM_E_UNSUPPORTED (backend); KM_E_FORK; KM_E_BACKEND.
 * Thread-safe.
 */
KM_EXTERN int km_rsa_decrypt(km_key *key, uint32_t version, const uint8_t *in, size_t in_len,
                             km_secret **out) KM_WUR;

/**
 * RSA-OAEP decryption with a label (PKCS#1 v2.2; the label may be empty) and
 * the key's OAEP digest (SHA-256, SHA-384 or SHA-512 as recorded in the key,
 * the same for MGF1), into the caller's buffer; an empty plaintext decrypts to
 * *out_len = 0. Checks as km_rsa_decrypt().
 *
 * @param[in]  label    may be NULL when label_len is 0; at most KM_AAD_MAX bytes.
 * @param[out] out      the plaintext (at most the modulus size - 2 * digest - 2
 *                      bytes); may be NULL when out_cap is 0.
 * @return KM_OK; KM_E_INVALID; KM_E_USAGE; KM_E_NOTFOUND; KM_E_STATE;
 *         KM_E_INTEGRITY (wrong key, label or digest, altered data, wrong
 *         length); KM_E_BUFFER (*out_len: the size needed); KM_E_UNSUPPORTED (a
 *         backend that decrypts only without a label with SHA-256); KM_E_FORK;
 *         KM_E_BACKEND. On error other than KM_E_BUFFER, `out` is zeroed.
 * kmctl: rsa-decrypt.
 */
KM_EXTERN int km_rsa_oaep_decrypt(km_key *key, uint32_t version, const uint8_t *label,
                                  size_t label_len, const uint8_t *in, size_t in_len,
                                  uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * RSA-OAEP encryption to the key's public key (what any holder of the public
 * key can do; offered for convenience), with its OAEP digest and `label`. A
 * protect operation of the key (KM_USAGE_WRAP or KM_USAGE_UNWRAP, a version
 * that may protect).
 *
 * @param[in]  version  0 = the primary; another version only if it is the
 *                      primary (a version that may protect).
 * @param[in]  label    may be NULL when label_len is 0; at most KM_AAD_MAX bytes.
 * @param[in]  in       at most the modulus size - 2 * digest - 2 bytes; may be empty.
 * @param[out] out      the caller's buffer: the modulus size in bytes.
 * @param[out] out_len  the bytes written (the size needed with KM_E_BUFFER).
 * @return KM_OK; KM_E_INVALID (NULL out_len, key, in or label; label longer than
 *         KM_AAD_MAX; a plaintext too long for the modulus); KM_E_BUFFER
 *         (*out_len: the size needed); KM_E_USAGE (not RSA, neither wrap nor
 *         unwrap usage); KM_E_POLICY (the key is out of policy); KM_E_STATE (no
 *         version that may protect, `version` not the primary); KM_E_DENIED (a
 *         principal without the encrypt permission); KM_E_UNSUPPORTED (the
 *         backend gives no public key); KM_E_FORK; KM_E_BACKEND; KM_E_CRYPTO.
 * Audited as an encryption. Thread-safe. kmctl: rsa-encrypt.
 */
KM_EXTERN int km_rsa_oaep_encrypt(km_key *key, uint32_t version, const uint8_t *label,
                                  size_t label_len, const uint8_t *in, size_t in_len,
                                  uint8_t *out, size_t out_cap, size_t *out_len) KM_WUR;

/**
 * Verifies a signature.
 *
 * @param[in] version  0 = the version named in the header (tagged) or the primary (raw).
 * @param[in] flags    the flags the signature was made with.
 * @return KM_OK when valid; KM_E_VERIFY when not; KM_E_INVALID (NULL, malformed
 *         header, a header naming another key or algorithm); KM_E_NOTFOUND (version);
 *         KM_E_STATE; KM_E_USAGE.
 * kmctl: verify.
 */
KM_EXTERN int km_verify(km_key *key, uint32_t version, uint32_t flags,
                        const uint8_t *msg, size_t msg_len,
                        const uint8_t *sig, size_t sig_len) KM_WUR;

/**
 * Computes a MAC with the primary version (tagged unless KM_SIG_RAW): HMAC
 * for hmac-* keys (the digest's length), AES-CMAC (NIST SP 800-38B, 16
 * bytes) for aes-*-cmac keys.
 * @param[out] tag  at least KM_MAC_MAX bytes is always enough.
 * @return as km_sign().
 * kmctl: mac.
 */
KM_EXTERN int km_mac(km_key *key, uint32_t flags, const uint8_t *msg, size_t msg_len,
                     uint8_t *tag, size_t tag_cap, size_t *tag_len);

/**
 * Verifies an HMAC or AES-CMAC in constant time. A raw HMAC tag may be
 * truncated to no fewer than 16 bytes (the leftmost bytes, as RFC 2104
 * allows); a CMAC tag is always its full 16 bytes.
 * @return KM_OK when valid; KM_E_VERIFY when not; other errors as km_verify().
 * kmctl: mac-verify.
 */
KM_EXTERN int km_mac_verify(km_key *key, uint32_t version, uint32_t flags,
                            const uint8_t *msg, size_t msg_len,
                            const uint8_t *tag, size_t tag_len) KM_WUR;

/** Largest request of km_random(), bytes. */
#define KM_RANDOM_MAX (1u << 20)

/**
 * Random bytes for the caller (AWS KMS GenerateRandom): keys, nonces, tokens
 * of the caller's own protocols.
 *
 * @param[in]  ctx         the vault (its registered backends).
 * @param[in]  protection  NULL or "software": OpenSSL's DRBG; the name of a
 *                         device backend ("pkcs11", "tpm2"): that device's own
 *                         generator (C_GenerateRandom, TPM2_GetRandom), opened
 *                         with the vault's configuration of it.
 * @param[out] out         `len` bytes.
 * @param[in]  len         1..KM_RANDOM_MAX.
 * @return KM_OK; KM_E_INVALID (NULL ctx or out, len 0 or above KM_RANDOM_MAX);
 *         KM_E_UNSUPPORTED (no such backend, or it has no random generator);
 *         KM_E_STATE (the vault was closed); KM_E_FORK (a handle from before
 *         fork()); KM_E_NOMEM; KM_E_BACKEND (the device failed, or failed to
 *         open: its own code when it gives one); KM_E_CRYPTO (the DRBG failed).
 *         On error `out` is zeroed (when out and len were valid).
 * Not audited (no key is used). Thread-safe. kmctl: random N [--protection].
 */
KM_EXTERN int km_random(km_ctx *ctx, const char *protection, uint8_t *out, size_t len) KM_WUR;

/** Operations of km_batch(). */
typedef enum km_batch_op {
    KM_BATCH_ENCRYPT = 1,    /**< km_encrypt() of each item's in (aad) into out */
    KM_BATCH_DECRYPT = 2,    /**< km_decrypt_key() of each item's in (aad) into out */
    KM_BATCH_SIGN = 3,       /**< km_sign() of each item's in into out */
    KM_BATCH_VERIFY = 4,     /**< km_verify() of each item's sig over in */
    KM_BATCH_MAC = 5,        /**< km_mac() of each item's in into out */
    KM_BATCH_MAC_VERIFY = 6  /**< km_mac_verify() of each item's sig over in */
} km_batch_op;

/** Most items of one km_batch() call. */
#define KM_BATCH_MAX 100000
/** Bytes of an item's error detail, its NUL included. */
#define KM_BATCH_DETAIL 160

/** One item of km_batch(): its input, its output buffer and its outcome. */
typedef struct km_batch_item {
    const uint8_t *in;   /**< plaintext, ciphertext or message; may be NULL when in_len is 0 */
    size_t in_len;
    const uint8_t *aad;  /**< encrypt, decrypt: the associated data (NULL when aad_len is 0) */
    size_t aad_len;
    const uint8_t *sig;  /**< verify, mac-verify: the signature or tag */
    size_t sig_len;
    uint8_t *out;        /**< encrypt, decrypt, sign, mac: the output buffer */
    size_t out_cap;
    size_t out_len;      /**< out: bytes written (the size needed with KM_E_BUFFER) */
    int result;          /**< out: KM_OK, or the item's km_error_code (KM_E_VERIFY: invalid) */
    char detail[KM_BATCH_DETAIL]; /**< out: why the item failed (km_error_last()), or "" */
} km_batch_item;

/**
 * One operation over many items with one key (Vault Transit's batch_input):
 * each item succeeds or fails on its own, with its code and detail; the
 * others are still done. Encryption checks the key (access, usage, state)
 * and fetches its primary version once for all items, so a batch costs less
 * than as many km_encrypt() calls; every item still gets its own nonce,
 * usage count and audit entry. Each item behaves exactly as the single call.
 *
 * @param[in] flags  as the single call takes: KM_SIG_* (sign, verify, mac,
 *                   mac-verify), KM_DECRYPT_ALLOW_COMPROMISED (decrypt), 0 (encrypt).
 * @param[in,out] items  the caller's array (and the buffers it points to): the
 *                   call fills each item's out, out_len, result and detail;
 *                   libkm keeps no pointer into it. NULL only when count is 0.
 * @param[in] count  0..KM_BATCH_MAX.
 * @return KM_OK when every item succeeded (also for count 0); otherwise the
 *         first failed item's code, as the single call returns it (KM_E_VERIFY
 *         when a signature or MAC was invalid; KM_E_BUFFER, KM_E_INTEGRITY, ...).
 *         When the key refuses an encryption (KM_E_DENIED, KM_E_USAGE, KM_E_UNSUPPORTED,
 *         KM_E_STATE, KM_E_POLICY, KM_E_FORK) every item gets that code and
 *         detail. KM_E_INVALID, with no item touched, for a NULL key or items,
 *         an unknown op, flags with KM_BATCH_ENCRYPT, or more than KM_BATCH_MAX
 *         items. An item that failed has out_len 0 (the size needed with
 *         KM_E_BUFFER) and, for encrypt and decrypt, a zeroed out.
 * Thread-safe (two threads must not share one items array).
 * kmctl: encrypt, decrypt, sign, verify, mac, mac-verify with --batch.
 */
KM_EXTERN int km_batch(km_key *key, km_batch_op op, uint32_t flags, km_batch_item *items,
                       size_t count);

/**
 * Encodes binary libkm output as text: "km1:" + base64url without padding.
 * @param[out] out      NUL-terminated text; may be NULL to ask for the size.
 * @param[out] out_len  characters written (without the NUL), or the buffer size
 *                      needed (with the NUL) when KM_E_BUFFER is returned.
 * @return KM_OK; KM_E_INVALID; KM_E_BUFFER.
 */
KM_EXTERN int km_text_encode(const uint8_t *bin, size_t bin_len, char *out, size_t out_cap,
                             size_t *out_len);

/**
 * Decodes the "km1:" text form. Whitespace at the end is ignored; anything
 * else that is not base64url, padding included, is refused.
 * @return KM_OK; KM_E_INVALID (no km1: prefix, bad character or length); KM_E_BUFFER.
 */
KM_EXTERN int km_text_decode(const char *text, size_t text_len, uint8_t *out, size_t out_cap,
                             size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* KM_CRYPTO_H */
