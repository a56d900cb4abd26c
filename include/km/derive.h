/**
 * @file km/derive.h
 * @brief Key derivation (HKDF) and key agreement (ECDH, X25519), each giving
 * a secret in secure memory.
 */
#ifndef KM_DERIVE_H
#define KM_DERIVE_H

#include "common.h"
#include "key.h"
#include "secret.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest derived secret (HKDF-SHA-256: 255 x 32 bytes). */
#define KM_DERIVE_MAX 8160

/**
 * Derives a secret with HKDF-SHA-256 (RFC 5869) from the primary version of
 * an HMAC key with KM_USAGE_DERIVE, as Vault Transit's derived keys: the same
 * key, salt and info always give the same secret.
 *
 * @param[in]  salt, info  may be NULL when their length is 0; info is the
 *                         caller's context (a tenant id, a purpose).
 * @param[in]  out_len     1 to KM_DERIVE_MAX bytes.
 * @param[out] out         the secret; free with km_secret_free().
 * @return KM_OK; KM_E_INVALID; KM_E_USAGE (not an HMAC key, or no derive
 *         usage); KM_E_STATE (no version may protect); KM_E_POLICY.
 */
KM_EXTERN int km_derive(km_key *key, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                        size_t info_len, size_t out_len, km_secret **out);

/**
 * Agrees a secret with a peer (ECDH on the key's curve, or X25519) and
 * derives `out_len` bytes from it with HKDF-SHA-256 (empty salt, `info`), as
 * OpenBao's derive-key does; the raw shared secret never leaves libkm (see
 * km_agree_raw() for the usage that lets it). For FFDHE the secret is taken as
 * OpenSSL gives it (no leading zero bytes), as in earlier releases.
 *
 * @param[in] peer  the peer's public key (SubjectPublicKeyInfo DER) on the
 *                  same curve; invalid, low-order and other-curve points are refused.
 * @return KM_OK; KM_E_INVALID (a bad or other-curve peer key, bad lengths);
 *         KM_E_USAGE (no agree usage, or a public-only key); KM_E_STATE; KM_E_POLICY.
 */
KM_EXTERN int km_agree(km_key *key, const uint8_t *peer, size_t peer_len, const uint8_t *info,
                       size_t info_len, size_t out_len, km_secret **out);

/** Largest raw shared secret of km_agree_raw() (ffdhe4096: 512 bytes). */
#define KM_AGREE_RAW_MAX 512

/**
 * The raw shared secret with a peer, for protocols that run their own KDF
 * (AWS KMS DeriveSharedSecret): ECDH on the key's curve (the x-coordinate,
 * the field's length), X25519 (32 bytes), FFDHE (as long as the prime,
 * zero-padded as SP 800-56A rev. 3 asks). The secret leaves libkm, so three
 * gates apply, each off unless asked for: the key's usage KM_USAGE_AGREE_RAW
 * (never a type's default; given at creation or import, and km_key_set() can
 * only remove it), for a principal an explicit KM_PERM_AGREE_RAW grant (not in
 * KM_PERM_ALL, not implied by owning the key), and the policy rule
 * operations.agree-raw (allowed unless the vault's or the key's own policy
 * says false). Every call that reaches the key is audited (operation
 * agree.raw, with the result and the first bytes of the peer key's SHA-256),
 * whatever the audit level; if that entry cannot be written the call fails.
 *
 * @param[in] peer  the peer's public key, SubjectPublicKeyInfo DER, on the
 *                  key's curve or group: for FFDHE the PKCS#3 form (OID
 *                  dhKeyAgreement) or the X9.42 form (OID dhpublicnumber, what
 *                  pyca/cryptography writes) whose p, g and q are the named
 *                  group's. Invalid, low-order, explicit-curve and other-group
 *                  keys are refused.
 * @param[out] out  the secret (at most KM_AGREE_RAW_MAX bytes); free with km_secret_free().
 * @return KM_OK; KM_E_INVALID (a bad or other-curve peer key, NULL);
 *         KM_E_USAGE (no agree-raw usage, a public-only key); KM_E_DENIED (no
 *         agree-raw grant); KM_E_POLICY (operations.agree-raw is false, or the
 *         policy stops the type); KM_E_STATE; KM_E_UNSUPPORTED (the backend
 *         cannot agree); the audit log's errors.
 */
KM_EXTERN int km_agree_raw(km_key *key, const uint8_t *peer, size_t peer_len, km_secret **out);

#ifdef __cplusplus
}
#endif
#endif /* KM_DERIVE_H */
