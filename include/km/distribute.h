/**
 * @file km/distribute.h
 * @brief Moving keys between vaults and to or from other key managers:
 * wrapped export and import (BYOK).
 *
 * Two wrapped forms (docs/FORMATS.md):
 * - KM_WRAP_KWP: the key material wrapped with AES-KWP (RFC 5649) under an
 *   aes-256-kwp key-encryption key of a vault, behind a 24-byte libkm header
 *   (`K` `W`, format, KEK type, KEK id, KEK version) that says which KEK.
 * - KM_WRAP_RSA_OAEP_KWP: CKM_RSA_AES_KEY_WRAP, the import format of AWS KMS,
 *   Google Cloud KMS and Vault Transit: RSA-OAEP (SHA-256, MGF1-SHA-256) of a
 *   fresh AES-256 key to the recipient's RSA public key, then AES-KWP of the
 *   material under that key. No header: the recipient knows its own key.
 * The material is the raw key for symmetric keys and PKCS#8 DER for private
 * keys. Only keys created with KM_KEY_EXPORTABLE leave the vault.
 */
#ifndef KM_DISTRIBUTE_H
#define KM_DISTRIBUTE_H

#include "common.h"
#include "key.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Wrapped key formats. */
typedef enum km_wrap_format {
    KM_WRAP_KWP = 1,          /**< AES-KWP under a vault KEK, with a libkm header */
    KM_WRAP_RSA_OAEP_KWP = 2  /**< RSA-OAEP-SHA-256 + AES-KWP (CKM_RSA_AES_KEY_WRAP) */
} km_wrap_format;

/**
 * Exports a key version's material, wrapped.
 *
 * @param[in] version        0 = the primary (or newest) version.
 * @param[in] kek            KM_WRAP_KWP: an aes-256-kwp key with KM_USAGE_WRAP; else NULL.
 * @param[in] recipient_spki KM_WRAP_RSA_OAEP_KWP: the recipient's RSA public key
 *                           (SubjectPublicKeyInfo DER or PEM, 2048 bits or more); else NULL.
 * @param[out] out           the wrapped key; NULL to ask for the size.
 * @return KM_OK; KM_E_INVALID (bad format or arguments, a recipient key that
 *         is not RSA >= 2048); KM_E_POLICY (the key is not exportable);
 *         KM_E_UNSUPPORTED (a public-only key, or a backend whose material cannot
 *         leave it); KM_E_STATE (destroyed version, or a KEK that may not protect);
 *         KM_E_USAGE (the KEK may not wrap); KM_E_DENIED (a principal without
 *         the export right on the key, or without the encrypt right on the
 *         KEK: wrapping under it is encrypting with it); KM_E_BUFFER.
 * kmctl: export.
 */
KM_EXTERN int km_key_export_wrapped(km_key *key, uint32_t version, km_wrap_format format,
                                    km_key *kek, const uint8_t *recipient_spki,
                                    size_t recipient_len, uint8_t *out, size_t out_cap,
                                    size_t *out_len);

/**
 * Imports a wrapped key as a new key (version 1, ACTIVE).
 *
 * KM_WRAP_KWP: the header names a KEK of this vault. KM_WRAP_RSA_OAEP_KWP:
 * the blob was wrapped to this vault's import wrapping key
 * (km_vault_wrapping_key()). The material must fit `type` exactly.
 * @return KM_OK; KM_E_INVALID (malformed blob or material of another type);
 *         KM_E_INTEGRITY (a blob that does not unwrap: altered, or wrapped to
 *         another key); KM_E_NOTFOUND (the KEK is not in this vault);
 *         KM_E_DENIED (a principal without the import role, or without the
 *         decrypt right on the KEK: unwrapping under it is decrypting with it);
 *         KM_E_EXISTS; KM_E_POLICY.
 * Nothing is stored and nothing released on error.
 */
KM_EXTERN int km_key_import_wrapped(km_key **out, km_ctx *ctx, const char *name,
                                    km_key_type type, km_wrap_format format,
                                    const uint8_t *blob, size_t blob_len,
                                    const km_key_options *opts);

/**
 * Writes the public half of the vault's RSA-4096 import wrapping key, which
 * senders use for KM_WRAP_RSA_OAEP_KWP (as Vault Transit's wrapping_key and
 * AWS GetParametersForImport). The key is created on first use and kept
 * in the vault under the reserved name "km:import-wrapping-key".
 * @param[in] format  KM_MATERIAL_PEM or KM_MATERIAL_SPKI_DER.
 * @return KM_OK; KM_E_INVALID; KM_E_BUFFER (with *out_len the size needed).
 * kmctl: wrapping-key.
 */
KM_EXTERN int km_vault_wrapping_key(km_ctx *ctx, km_material_format format, uint8_t *out,
                                    size_t out_cap, size_t *out_len);

/* ------------------------------------------------ per-key backup and restore */

/**
 * Writes a backup of one key with its whole history: the key record (name,
 * type, usage, flags, periods, own policy, metadata), every version's state
 * and dates, the material of every version not destroyed, and the usage
 * counters (docs/FORMATS.md "Key backup"). It is encrypted (AES-256-GCM,
 * header authenticated) under a fresh key that is wrapped either to the
 * receiving vault's import wrapping key (`recipient`, its
 * km_vault_wrapping_key() output, PEM or SPKI DER: only that vault restores
 * it) or under a passphrase (scrypt; `pass`). Exactly one of the two.
 * As for km_key_export_wrapped: only an exportable software key, under the
 * key's export dual control (params = the recipient public key bytes, or the
 * 10 bytes "passphrase"); audited (key.export, "backup").
 * @param[out] out      the caller's buffer, or NULL to ask for the size
 *                      (KM_E_BUFFER, *out_len). The output is not secret (it is
 *                      encrypted) and is written only after the dual control
 *                      and the audit entry succeed.
 * @return KM_OK; KM_E_INVALID (NULL key or out_len; both or neither of
 *         recipient and pass; a passphrase of a bad length; a recipient that
 *         is not an RSA public key); KM_E_POLICY (not exportable);
 *         KM_E_UNSUPPORTED (not a software key, a session key); KM_E_DENIED
 *         (no export permission, or approvals missing); KM_E_BUFFER
 *         (*out_len: the size needed); KM_E_CORRUPT (the key's records);
 *         KM_E_FORK; KM_E_NOMEM; KM_E_IO.
 * Thread-safe. kmctl: key backup NAME (--wrap-with PUBKEY.pem |
 * --backup-passphrase-file FILE).
 */
KM_EXTERN int km_key_backup(km_key *key, const uint8_t *recipient, size_t recipient_len,
                            const uint8_t *pass, size_t pass_len, uint8_t *out, size_t out_cap,
                            size_t *out_len);

/**
 * Restores a key from km_key_backup() output into this vault, with its id,
 * versions, states, dates and counters, under `name` (NULL: the name it had;
 * its aliases are not restored). `pass` for a passphrase backup, NULL for
 * one wrapped to this vault. Audited (key.import, "restored").
 * @param[out] out  a handle on the restored key (free with km_key_free());
 *                  may be NULL.
 * @return KM_OK; KM_E_INVALID (NULL ctx or blob, not a backup, a truncated
 *         or malformed one, a bad or "km:" name, a passphrase missing for a
 *         passphrase backup); KM_E_UNSUPPORTED (a future backup format, a
 *         key of another backend); KM_E_INTEGRITY (altered, a wrong
 *         passphrase, or wrapped to another vault); KM_E_EXISTS (the name is
 *         taken, or the key is here already); KM_E_POLICY (its own policy is
 *         looser than this vault's, or its type or periods out of policy);
 *         KM_E_DENIED (no import permission); KM_E_STATE, KM_E_FORK (the
 *         vault handle); KM_E_NOMEM; KM_E_IO. Nothing is written on error.
 * Thread-safe. kmctl: key restore FILE [--name NAME] [--backup-passphrase-file FILE].
 */
KM_EXTERN int km_key_restore(km_ctx *ctx, const uint8_t *blob, size_t blob_len,
                             const uint8_t *pass, size_t pass_len, const char *name,
                             km_key **out);

#ifdef __cplusplus
}
#endif
#endif /* KM_DISTRIBUTE_H */
