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
 * AWS DeriveSharedSecret and OpenBao's derive-key do; the raw shared secret
 * never leaves libkm.
 *
 * @param[in] peer  the peer's public key (SubjectPublicKeyInfo DER) on the
 *                  same curve; invalid, low-order and other-curve points are refused.
 * @return KM_OK; KM_E_INVALID (a bad or other-curve peer key, bad lengths);
 *         KM_E_USAGE (no agree usage, or a public-only key); KM_E_STATE; KM_E_POLICY.
 */
KM_EXTERN int km_agree(km_key *key, const uint8_t *peer, size_t peer_len, const uint8_t *info,
                       size_t info_len, size_t out_len, km_secret **out);

#ifdef __cplusplus
}
#endif
#endif /* KM_DERIVE_H */
