/**
 * @file km/pkcs11.h
 * @brief PKCS#11 tokens and smart cards: discovery, PINs, card keys.
 *
 * What pkcs11-helper does for libkm's PKCS#11 backend, as an API:
 * - token discovery: km_pkcs11_tokens() lists the tokens a module offers with
 *   their serialisable token ids (stable across runs and slot renumbering);
 *   km_pkcs11_certificates() lists the certificate-bound keys (a private key
 *   with a certificate of the same CKA_ID: a user's smart card);
 * - PINs on demand: km_pkcs11_set_pin_callback() lets the application supply a
 *   PIN when a token needs one and none is configured (the "pkcs11" backend
 *   with neither pin= nor KM_PKCS11_PIN, and every card key), with the token
 *   label and a retry count; km_pkcs11_set_pin_cache() sets how long a PIN
 *   given once is reused;
 * - card keys as a key source: km_pkcs11_key_link() enters a card key into a
 *   vault as a key of protection "pkcs11-card", whose reference is the
 *   serialised certificate id. km_sign(), km_verify(), km_key_public_export()
 *   and the whole lifecycle, access control and audit of the core then apply
 *   to it; the private key never leaves the card.
 *
 * Built with --enable-pkcs11; otherwise every function returns KM_E_UNSUPPORTED.
 *
 * Threads and processes: the PIN callback, the cache period and pkcs11-helper
 * itself are process-wide. After fork() the child re-initialises them on its
 * first use (pkcs11h_forkFixup), so a card key or a discovery works there.
 *
 * Caveats:
 * - pkcs11-helper is process-global: an application that uses pkcs11-helper
 *   itself must not use these functions at the same time.
 * - PKCS#11 login state belongs to the token and the process: a PIN cache that
 *   expires logs the token out for every session of the process, including
 *   the "pkcs11" backend's (which then fails once with KM_E_AUTH and logs in
 *   again on its next session). Keep the default (no expiry) when both are used.
 * - A module is shared with the raw layer safely when it is registered with
 *   p11-kit (a .module file): pkcs11-helper then reaches it through
 *   p11-kit-proxy.so. Other modules are given to pkcs11-helper directly while
 *   libkm holds its own p11-kit initialisation of them.
 * - PINs never appear in km_error_last() or in any log.
 */
#ifndef KM_PKCS11_H
#define KM_PKCS11_H

#include "common.h"
#include "key.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A list of tokens or certificates (opaque). */
typedef struct km_pkcs11_list km_pkcs11_list;

/** Fields of a km_pkcs11_list entry (km_pkcs11_list_get()). */
typedef enum km_pkcs11_field {
    KM_PKCS11_ID = 1,           /**< the serialised token id, or certificate id */
    KM_PKCS11_LABEL = 2,        /**< the token label, or the certificate's display name */
    KM_PKCS11_MANUFACTURER = 3, /**< the token's manufacturer id */
    KM_PKCS11_MODEL = 4,        /**< the token's model */
    KM_PKCS11_SERIAL = 5,       /**< the token's serial number */
    KM_PKCS11_TOKEN_LABEL = 6   /**< the token's label (also for a certificate) */
} km_pkcs11_field;

/**
 * Lists the tokens present in the slots of a PKCS#11 module.
 *
 * @param[out] out     the list (free with km_pkcs11_list_free()); NULL on error.
 * @param[in]  module  the module's path (e.g. /usr/lib/softhsm/libsofthsm2.so).
 * @return KM_OK (an empty list when no token is present); KM_E_INVALID for a
 *         NULL argument; KM_E_BACKEND when the module does not load or fails
 *         (the CK_RV in km_error_last()); KM_E_NOMEM.
 * Needs no PIN. Thread-safe.
 * kmctl: backend tokens.
 */
KM_EXTERN int km_pkcs11_tokens(km_pkcs11_list **out, const char *module);

/**
 * Lists the certificate-bound keys of a module's tokens: each entry's
 * KM_PKCS11_ID is a serialised certificate id for km_pkcs11_key_link().
 *
 * @param[out] out     the list (free with km_pkcs11_list_free()); NULL on error.
 * @param[in]  module  the module's path.
 * @return KM_OK; KM_E_INVALID; KM_E_BACKEND; KM_E_AUTH when a token keeps its
 *         certificates private and the PIN prompt was cancelled; KM_E_NOMEM.
 * Thread-safe.
 */
KM_EXTERN int km_pkcs11_certificates(km_pkcs11_list **out, const char *module);

/** Returns the number of entries of a list (0 for NULL). */
KM_EXTERN size_t km_pkcs11_list_count(const km_pkcs11_list *list);

/**
 * Returns a field of entry `index`, borrowed from the list (valid until it is
 * freed); blank padding removed. NULL for a NULL list, an index out of range
 * or an unknown field.
 */
KM_EXTERN const char *km_pkcs11_list_get(const km_pkcs11_list *list, size_t index,
                                         km_pkcs11_field field);

/** Frees a list; accepts NULL. */
KM_EXTERN void km_pkcs11_list_free(km_pkcs11_list *list);

/**
 * The application's PIN callback.
 *
 * @param[in]  arg          the pointer given to km_pkcs11_set_pin_callback().
 * @param[in]  token_label  the label of the token that needs the PIN.
 * @param[in]  retry        0 on the first prompt for a login, then 1, 2, ...
 *                          after the token refused the PIN given before.
 * @param[out] pin          where to write the PIN, NUL-terminated.
 * @param[in]  pin_cap      bytes available at `pin` (NUL included).
 * @return 0 with the PIN written; any other value cancels the login, which
 *         then fails with KM_E_AUTH.
 * Called from the thread that needs the PIN, with libkm's PKCS#11 lock held:
 * it must not call back into km_pkcs11_*.
 */
typedef int (*km_pkcs11_pin_fn)(void *arg, const char *token_label, unsigned retry, char *pin,
                                size_t pin_cap);

/**
 * Sets the process-wide PIN callback (NULL removes it: a token that needs a
 * PIN none is configured for then fails with KM_E_AUTH). A login offers at
 * most 3 PINs before it fails, so that no loop can lock a token. libkm wipes
 * the PIN buffer after each attempt.
 * @return KM_OK; KM_E_UNSUPPORTED without PKCS#11 support.
 */
KM_EXTERN int km_pkcs11_set_pin_callback(km_pkcs11_pin_fn fn, void *arg);

/**
 * Sets how long a PIN given once is reused without a prompt (pkcs11-helper's
 * PIN cache period), for logins from then on.
 * @param[in] seconds  1..86400*366, or -1 for no expiry (the default), or 0
 *                     to prompt on every login.
 * @return KM_OK; KM_E_INVALID for another value; KM_E_UNSUPPORTED.
 */
KM_EXTERN int km_pkcs11_set_pin_cache(int seconds);

/**
 * Forgets every cached PIN now (the card keys' sessions are logged out).
 * @return KM_OK; KM_E_UNSUPPORTED.
 */
KM_EXTERN int km_pkcs11_pin_cache_clear(void);

/**
 * Links a certificate-bound private key of a token (a smart card) into the
 * vault as a new key named `name` with protection "pkcs11-card". Its type
 * comes from the certificate's public key: ec-p256, ec-p384 (ECDSA), rsa-2048
 * or rsa-3072 (PSS signatures, SHA-256, salt 32). The vault stores the
 * serialised certificate id, never key material; usage is sign and verify
 * (RSA decryption is not offered). The module comes from the vault's
 * "pkcs11-card" configuration: km_vault_backend_set(ctx, "pkcs11-card",
 * "module=PATH") first. The key cannot rotate (a new card key is linked under
 * a new name); destroying it removes the link, never the card's key.
 * Audited and access-checked as a key import.
 *
 * @param[out] out      an open handle (free with km_key_free()), or NULL; may be NULL.
 * @param[in]  ctx      the vault.
 * @param[in]  name     the new key's name.
 * @param[in]  cert_id  a serialised certificate id (km_pkcs11_certificates()).
 * @param[in]  opts     NULL, or options (usage may only narrow; protection ignored).
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND when no such certificate or
 *         private key is on a present token; KM_E_UNSUPPORTED for another key
 *         type; KM_E_EXISTS; KM_E_POLICY; KM_E_BACKEND.
 */
KM_EXTERN int km_pkcs11_key_link(km_key **out, km_ctx *ctx, const char *name,
                                 const char *cert_id, const km_key_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* KM_PKCS11_H */
