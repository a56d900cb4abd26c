/**
 * @file km/sys/backend.h
 * @brief API for backend authors: the versioned backend vtable.
 *
 * A backend holds key material (software, an HSM, a TPM) and performs the
 * primitive operations on it. The core runs lifecycle, policy, access control
 * and audit *before* any call, so a backend never sees a refused request and
 * never decides policy. Material is named by an opaque *reference* that the
 * backend returns from generate/import and that the core stores sealed in the
 * vault catalog (for software keys, the reference is the material itself).
 *
 * Rules of the table (as SQLite's sqlite3_io_methods):
 * - `version` comes first; members are only ever appended, each group under a
 *   "valid for version N" comment. A backend built against an older header
 *   sets a smaller version and the core never reads past it.
 * - Members marked *required* must be non-NULL; *optional* ones may be NULL
 *   (the operation is then KM_E_UNSUPPORTED). The core checks version and
 *   pointer before every optional call.
 * - km_backend_register() checks the table and copies it; the caller's table
 *   need not outlive the call.
 *
 * Threading: `load`ed objects are used by many threads at once; a backend
 * serialises internally what its device cannot do in parallel.
 *
 * Errors: return a km_error_code; record the device's own code with
 * km_backend_error() so that km_error_last() carries it. Never put key bytes,
 * PINs or passphrases into a message.
 */
#ifndef KM_SYS_BACKEND_H
#define KM_SYS_BACKEND_H

#include "../common.h"
#include "../error.h"
#include "../key.h"
#include "../secret.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The vtable version this header describes. */
#define KM_BACKEND_OPS_VERSION 3

/** Capability bits (km_backend_ops::caps), informative. */
#define KM_BACKEND_CAP_SYMMETRIC  0x1u /**< AES and HMAC keys */
#define KM_BACKEND_CAP_ASYMMETRIC 0x2u /**< EC, Ed25519, RSA keys */
#define KM_BACKEND_CAP_IMPORT     0x4u /**< accepts imported material */
#define KM_BACKEND_CAP_EXTRACT    0x8u /**< material can be exported wrapped */
/**
 * sign() also signs digests (km_sign_digest): the core then may pass one of
 * KM_BACKEND_SIG_SHA256/384/512 in `flags`, meaning `msg` is a digest of that
 * algorithm, and KM_SIG_PKCS1 for RSA. Without this bit the core never passes them.
 */
#define KM_BACKEND_CAP_SIGN_DIGEST 0x10u

/** sign() flags for a digest (with KM_BACKEND_CAP_SIGN_DIGEST only). */
#define KM_BACKEND_SIG_SHA256 0x100u
#define KM_BACKEND_SIG_SHA384 0x200u
#define KM_BACKEND_SIG_SHA512 0x400u

/** What the core tells a backend about the key version it works on. */
typedef struct km_backend_keyspec {
    uint32_t version;        /**< 1 */
    km_key_type type;        /**< the key type */
    uint32_t usage;          /**< KM_USAGE_* */
    uint32_t flags;          /**< KM_KEY_* */
    const uint8_t *key_id;   /**< 16 bytes */
    uint32_t key_version;    /**< version number */
} km_backend_keyspec;

/** The backend vtable. Declare it `static const` with designated initializers. */
typedef struct km_backend_ops {
    uint32_t version;        /**< KM_BACKEND_OPS_VERSION the table was written for */
    const char *name;        /**< protection name: [a-z0-9_-]{1,31}, e.g. "software" */
    uint32_t caps;           /**< KM_BACKEND_CAP_* */

    /* ---- valid for version 1 ---- */

    /** Optional. Opens a backend instance for a vault; `config` may be NULL. */
    int (*open)(void **out_state, const char *config);
    /** Optional. Closes an instance opened by `open`. */
    void (*close)(void *state);
    /** Required. Generates material for a new version; returns its reference. */
    int (*generate)(void *state, const km_backend_keyspec *spec, km_secret **out_ref);
    /** Optional. Imports plaintext material; returns its reference. */
    int (*import)(void *state, const km_backend_keyspec *spec, km_material_format format,
                  const uint8_t *material, size_t material_len, km_secret **out_ref);
    /** Optional. Destroys the material behind a reference (HSM object, ...). */
    int (*destroy)(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                   size_t ref_len);
    /** Required. Makes a reference ready for use; returns a per-version object. */
    int (*load)(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                size_t ref_len, void **out_obj);
    /** Required. Releases (and wipes) a loaded object. */
    void (*unload)(void *state, void *obj);
    /**
     * Optional. AES-GCM encryption with the given 12-byte nonce; the
     * associated data is aad1 || aad2 (the libkm header, then the caller's).
     * Writes in_len bytes to `out` and the 16-byte tag.
     */
    int (*aead_seal)(void *obj, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                     const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                     uint8_t *out, uint8_t tag[16]);
    /**
     * Optional. AES-GCM decryption; KM_E_INTEGRITY when the tag does not
     * match, leaving `out` zeroed.
     */
    int (*aead_open)(void *obj, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                     const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                     const uint8_t tag[16], uint8_t *out);
    /** Optional. Signs `msg`; flags: KM_SIG_P1363 (and see KM_BACKEND_CAP_SIGN_DIGEST). */
    int (*sign)(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                uint8_t *sig, size_t sig_cap, size_t *sig_len);
    /** Optional. KM_OK when valid, KM_E_VERIFY when not. */
    int (*verify)(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                  const uint8_t *sig, size_t sig_len);
    /** Optional. Computes the full-length HMAC. */
    int (*mac)(void *obj, const uint8_t *msg, size_t msg_len, uint8_t *tag, size_t tag_cap,
               size_t *tag_len);
    /** Optional. Wraps `in` (key material) under this key (AES-KWP, RSA-OAEP). */
    int (*wrap)(void *obj, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                size_t *out_len);
    /** Optional. Unwraps into secure memory. */
    int (*unwrap)(void *obj, const uint8_t *in, size_t in_len, km_secret **out);
    /** Optional. HKDF-SHA-256 from this key with the given salt and info. */
    int (*derive)(void *obj, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                  size_t info_len, size_t out_len, km_secret **out);
    /** Optional. Key agreement with a peer public key (SPKI DER); the raw shared secret. */
    int (*agree)(void *obj, const uint8_t *peer_spki, size_t peer_len, km_secret **out);
    /** Optional. The public key as SubjectPublicKeyInfo DER. */
    int (*public_key)(void *obj, uint8_t *out, size_t out_cap, size_t *out_len);
    /** Optional. Backend-specific control operations. */
    int (*ctl)(void *state, int op, void *arg);

    /* ---- valid for version 2 ---- */

    /**
     * Optional. Seals the vault's 32-byte master key to this backend for a
     * keyslot (km_vault_add_backend_slot): `state` is an instance opened with
     * the configuration given there. Returns an opaque blob that the vault
     * stores unsealed in the keyslot, so the backend must protect the key
     * itself (a non-extractable token key, a TPM seal). The blob must hold
     * everything slot_unseal needs except secrets (PINs come from the
     * configuration).
     */
    int (*slot_seal)(void *state, const km_secret *master, km_secret **out_blob);
    /**
     * Optional. Recovers the master key from a slot_seal blob. KM_E_AUTH when
     * this instance cannot (another token or TPM, a PCR policy not met);
     * KM_E_BACKEND when the device fails.
     */
    int (*slot_unseal)(void *state, const uint8_t *blob, size_t blob_len,
                       km_secret **out_master);

    /* ---- valid for version 3 ---- */

    /**
     * Optional. Fills `out` with `len` (1..KM_RANDOM_MAX) random bytes from
     * the device's own generator (PKCS#11 C_GenerateRandom, TPM2_GetRandom),
     * for km_random() with this protection. On failure `out` is zeroed.
     */
    int (*random)(void *state, uint8_t *out, size_t len);
    /**
     * Optional. RSA-OAEP decryption with the private key: `flags` is one of
     * KM_BACKEND_SIG_SHA256/384/512, the digest of OAEP and of MGF1; `label`
     * may be empty. Writes the plaintext (possibly empty) to `out` (out_cap
     * is at least the modulus size) and its length to *out_len.
     * KM_E_INTEGRITY for a wrong key, label or digest, or altered data.
     * Without it, km_rsa_decrypt() of a SHA-256 key without a label uses unwrap.
     */
    int (*rsa_decrypt)(void *obj, uint32_t flags, const uint8_t *label, size_t label_len,
                       const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                       size_t *out_len);
} km_backend_ops;

/**
 * Registers a backend process-wide, so that keys with `protection` = its name
 * dispatch to it. The table is checked and copied.
 *
 * @return KM_OK; KM_E_INVALID for NULL, a version of 0, a bad name or a missing
 *         required member; KM_E_UNSUPPORTED for a version newer than
 *         KM_BACKEND_OPS_VERSION; KM_E_EXISTS when the name is registered.
 * Thread-safe.
 */
KM_EXTERN int km_backend_register(const km_backend_ops *ops);

/**
 * Removes a registered backend. Vaults already open keep using their instance.
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND; KM_E_BUSY for a built-in backend.
 */
KM_EXTERN int km_backend_unregister(const char *name);

/** Longest backend name (km_backend_names writes at most this many bytes + NUL). */
#define KM_BACKEND_NAME_MAX 31

/**
 * The names of the backends this libkm has: built-in ones first (those the
 * library was built with: "software", and "pkcs11", "pkcs11-card", "tpm2" when
 * configured, and "kmip"), then those registered at run time, in registration
 * order.
 * @param[out] names  receives up to `cap` NUL-terminated names (may be NULL when
 *                    cap is 0, to ask only for the count)
 * @param[in]  cap    entries available in `names`
 * @param[out] n      how many backends there are in all (may exceed cap: call
 *                    again with a larger array)
 * @return KM_OK; KM_E_INVALID when n is NULL, or names is NULL with cap > 0.
 * Thread-safe.
 * kmctl: backend list.
 */
KM_EXTERN int km_backend_names(char (*names)[KM_BACKEND_NAME_MAX + 1], size_t cap, size_t *n);

/**
 * Records an error with the backend's native code for km_error_last().
 * Returns `code`, so that a backend can `return km_backend_error(...)`.
 * The message is a printf format; it must never contain secrets.
 */
KM_EXTERN int km_backend_error(int code, km_native_kind kind, unsigned long native,
                               const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* KM_SYS_BACKEND_H */
