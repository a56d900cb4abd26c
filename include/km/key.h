/**
 * @file km/key.h
 * @brief Keys: types, creation, import, opening, listing, information, rotation.
 *
 * A key is a named object with a random 16-byte id, a type, a usage mask and
 * one or more versions. The newest active version is the primary: it protects
 * new data; older versions still process (decrypt, verify) data they made.
 */
#ifndef KM_KEY_H
#define KM_KEY_H

#include "common.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An open key handle. Opaque; may be shared by threads. */
typedef struct km_key km_key;

/**
 * Key types. The value is also the algorithm id written in ciphertext and
 * signature headers (docs/FORMATS.md), so values never change.
 */
typedef enum km_key_type {
    KM_KEY_AES_128_GCM = 1,
    KM_KEY_AES_192_GCM = 2,
    KM_KEY_AES_256_GCM = 3,
    KM_KEY_AES_256_KWP = 4,
    KM_KEY_HMAC_SHA256 = 5,
    KM_KEY_HMAC_SHA384 = 6,
    KM_KEY_HMAC_SHA512 = 7,
    KM_KEY_EC_P256 = 8,
    KM_KEY_EC_P384 = 9,
    KM_KEY_EC_P521 = 10,
    KM_KEY_ED25519 = 11,
    KM_KEY_X25519 = 12,
    KM_KEY_RSA_2048 = 13,
    KM_KEY_RSA_3072 = 14,
    KM_KEY_RSA_4096 = 15,
    KM_KEY_FFDHE2048 = 16,   /**< finite-field Diffie-Hellman, RFC 7919 group (agree only) */
    KM_KEY_FFDHE3072 = 17,
    KM_KEY_FFDHE4096 = 18,
    KM_KEY_AES_128_CMAC = 19, /**< AES-CMAC (NIST SP 800-38B): 16-byte tags (mac only) */
    KM_KEY_AES_192_CMAC = 20,
    KM_KEY_AES_256_CMAC = 21,
    KM_KEY_AES_128_SIV = 22,  /**< deterministic encryption, AES-SIV (RFC 5297): a 32-byte key;
                                   equal plaintexts under equal aad give equal ciphertexts */
    KM_KEY_AES_192_SIV = 23,  /**< AES-SIV, a 48-byte key */
    KM_KEY_AES_256_SIV = 24   /**< AES-SIV, a 64-byte key */
} km_key_type;

/** Usage mask bits. */
#define KM_USAGE_ENCRYPT    0x001u
#define KM_USAGE_DECRYPT    0x002u
#define KM_USAGE_SIGN       0x004u
#define KM_USAGE_VERIFY     0x008u
#define KM_USAGE_MAC        0x010u
#define KM_USAGE_MAC_VERIFY 0x020u
#define KM_USAGE_WRAP       0x040u
#define KM_USAGE_UNWRAP     0x080u
#define KM_USAGE_DERIVE     0x100u
#define KM_USAGE_AGREE      0x200u
/** km_agree_raw(): the raw shared secret leaves libkm (AWS DeriveSharedSecret). Never
 *  part of a type's default usage (usage 0): a key has it only when asked for at
 *  creation or import; EC, X25519 and FFDHE keys. */
#define KM_USAGE_AGREE_RAW  0x400u

/** Key flags (km_key_options::flags). */
#define KM_KEY_EXPORTABLE   0x1u /**< material may leave libkm, wrapped */
#define KM_KEY_PUBLIC_ONLY  0x2u /**< read-only: set on keys imported from a public key */
/** Versions may not be scheduled for destruction or destroyed, not even by
 *  km_maintain(), and the key is not purged, while this is set (km_key_set()). */
#define KM_KEY_DELETION_PROTECTED 0x4u

/** Lifecycle states of a key version (NIST SP 800-57; docs/LIFECYCLE.md). */
typedef enum km_key_state {
    KM_STATE_PRE_ACTIVE = 1,
    KM_STATE_ACTIVE = 2,
    KM_STATE_SUSPENDED = 3,
    KM_STATE_DEACTIVATED = 4,
    KM_STATE_COMPROMISED = 5,
    KM_STATE_DESTROY_PENDING = 6,
    KM_STATE_DESTROYED = 7
} km_key_state;

/** Longest key name in bytes (UTF-8, no NUL, no control characters). */
#define KM_KEY_NAME_MAX 255

#define KM_KEY_OPTIONS_VERSION 5
/** Options of km_key_create() and km_key_import(). */
typedef struct km_key_options {
    uint32_t version;        /**< KM_KEY_OPTIONS_VERSION */
    uint32_t usage;          /**< KM_USAGE_* mask; 0 = every usage the type supports but
                                  KM_USAGE_AGREE_RAW (which must be named) */
    uint32_t flags;          /**< KM_KEY_* */
    const char *protection;  /**< backend holding the material; NULL = "software" */
    /* ---- version 2 ---- */
    int64_t activate_at;     /**< activation date (seconds since the epoch); 0 = now.
                                  A future date creates the version PRE_ACTIVE. */
    uint32_t rotate_days;    /**< rotate every N days (km_maintain, or lazily on use); 0 = never */
    uint32_t protect_days;   /**< originator-usage period: protect-stop = activation + N days; 0 = none */
    uint32_t process_days;   /**< recipient-usage period: process-stop = activation + N days; 0 = none */
    uint32_t destroy_grace_days; /**< grace between process-stop and destruction; 0 = 30 */
    /* ---- version 3 ---- */
    const char *policy;      /**< the key's own policy (JSON, docs/POLICY.md; copied), which may
                                  only tighten the vault's; NULL = the vault's policy alone */
    /* ---- version 4 ---- */
    const uint8_t *key_id;   /**< import only: keep this 16-byte id (the source key's, so that
                                  its ciphertexts decrypt here); NULL = a new random id */
    /* ---- version 5 ---- */
    uint32_t import_version; /**< import only: the version number the material becomes (0 = 1).
                                  With key_id naming a key this vault has (under the same name,
                                  type and protection), the material is added to it as that
                                  version, which must be newer than its last; otherwise a new
                                  key is made. Versions skipped below it are recorded as
                                  destroyed (their material is not here). */
    uint32_t rsa_oaep_digest; /**< RSA keys: the digest of RSA-OAEP (and of its MGF1) in
                                  km_rsa_decrypt(), km_rsa_oaep_decrypt() and
                                  km_rsa_oaep_encrypt(): 256, 384 or 512 (SHA-2); 0 = 256.
                                  Recorded in the key; other types: 0 only */
} km_key_options;

#define KM_KEY_OPTIONS_INIT { KM_KEY_OPTIONS_VERSION, 0, 0, NULL, 0, 0, 0, 0, 0, NULL, NULL, 0, 0 }

/** Material formats for km_key_import() and km_key_public_export(). */
typedef enum km_material_format {
    KM_MATERIAL_RAW = 1,       /**< symmetric key bytes; raw 32-byte Ed25519/X25519 private keys */
    KM_MATERIAL_PKCS8_DER = 2, /**< private key, PKCS#8 DER (unencrypted) */
    KM_MATERIAL_SPKI_DER = 3,  /**< public key, SubjectPublicKeyInfo DER */
    KM_MATERIAL_PEM = 4,       /**< PKCS#8 or SPKI in PEM */
    KM_MATERIAL_JWK = 5        /**< a public key as a JSON Web Key (RFC 7517/7518: EC P-256/384/521,
                                    RSA, OKP Ed25519/X25519): km_key_public_export(), and
                                    km_key_import() of a verify-only key (no private JWK) */
} km_material_format;

/** km_key_import() flags. */
#define KM_IMPORT_ALLOW_RAW 0x1u /**< required: plaintext import is a deliberate act */

/**
 * Returns the canonical name of a key type ("aes-256-gcm"), or NULL if unknown.
 * Key types are numbered from 1 without gaps, so calling this with 1, 2, ...
 * until it returns NULL lists every type this libkm knows.
 */
KM_EXTERN const char *km_key_type_name(km_key_type type);

/**
 * Parses a key type name ("aes-256-gcm", "ec-p256", "rsa-3072", ...).
 * @return KM_OK, KM_E_INVALID for NULL, KM_E_UNSUPPORTED for an unknown name.
 */
KM_EXTERN int km_key_type_from_name(const char *name, km_key_type *out);

/** Returns the name of a state ("active"), or NULL if unknown. */
KM_EXTERN const char *km_state_name(km_key_state state);

/**
 * Creates a key with a freshly generated first version (version 1, ACTIVE).
 *
 * @param[out] out   set to an open handle (free with km_key_free()), or NULL on
 *                   error. May be NULL when the caller wants no handle.
 * @param[in]  ctx   the vault.
 * @param[in]  name  unique name, 1..KM_KEY_NAME_MAX bytes of printable UTF-8.
 * @param[in]  type  the key type.
 * @param[in]  opts  NULL for defaults.
 * @return KM_OK; KM_E_INVALID for a bad name, type, usage or option (the usage
 *         must fit the type), or a key policy that does not parse;
 *         KM_E_POLICY when the vault policy (or the key's own, which may only
 *         tighten it) refuses the type, size or periods, naming the rule;
 *         KM_E_EXISTS when the name is taken;
 *         KM_E_UNSUPPORTED for an unknown protection; KM_E_BACKEND, KM_E_IO.
 * Nothing is written to the vault on error. Thread-safe.
 * Names beginning with "km:" are libkm's own and refused (KM_E_INVALID).
 * kmctl: key create.
 */
KM_EXTERN int km_key_create(km_key **out, km_ctx *ctx, const char *name,
                            km_key_type type, const km_key_options *opts);

/**
 * Imports key material in plaintext as a new key (version 1, ACTIVE).
 *
 * Requires KM_IMPORT_ALLOW_RAW in `flags`. A public key (SPKI) gives a
 * verify-only key with KM_KEY_PUBLIC_ONLY set.
 *
 * With KM_MATERIAL_JWK only a public JWK is taken (a verify-only key); a
 * private JWK ("d" present) is refused.
 *
 * @param[out] out      the new key's handle (free with km_key_free()); may be NULL.
 * @param[in] material  the key bytes; copied, never kept. The caller wipes them.
 * @return KM_OK; KM_E_INVALID for a bad argument, missing flag, a wrong length
 *         for the type, material that does not parse or whose algorithm or
 *         curve differs from `type` (a JWK: not a JSON object, a private JWK,
 *         a point not on the curve, more than 64 KiB); KM_E_EXISTS;
 *         KM_E_POLICY (the vault policy refuses the type or size);
 *         KM_E_DENIED (no import permission, or the import-raw approvals
 *         missing); KM_E_UNSUPPORTED (an unknown protection); KM_E_BACKEND;
 *         KM_E_IO. Thread-safe. kmctl: key import NAME --type --raw FILE
 *         [--format raw|pkcs8|spki|pem|jwk].
 */
KM_EXTERN int km_key_import(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                            km_material_format format, const uint8_t *material,
                            size_t material_len, uint32_t flags, const km_key_options *opts);

/**
 * Creates a session key: an ephemeral key of `type`, generated in memory,
 * never written to the vault, and wiped when the handle is freed. It works
 * with every data-path call of its type (decrypt with km_decrypt_key(), since
 * km_decrypt() finds only vault keys); it has no name in the vault, no
 * lifecycle and no rotation (KM_E_UNSUPPORTED), and is not exported. The
 * vault policy still decides whether the type may be created.
 * @return KM_OK; KM_E_INVALID; KM_E_POLICY; KM_E_NOMEM.
 */
KM_EXTERN int km_session_key_create(km_key **out, km_ctx *ctx, km_key_type type);

/**
 * Opens a key by name.
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND; KM_E_CORRUPT; KM_E_IO.
 */
KM_EXTERN int km_key_open(km_key **out, km_ctx *ctx, const char *name);

/** Opens a key by its 16-byte id. @return as km_key_open(). */
KM_EXTERN int km_key_open_id(km_key **out, km_ctx *ctx, const uint8_t id[16]);

/** Releases a key handle (the key stays in the vault). Accepts NULL. */
KM_EXTERN void km_key_free(km_key *key);

/** Returns the key's name (borrowed, valid while the handle lives). */
KM_EXTERN const char *km_key_name(const km_key *key);

/** Returns the key's 16-byte id (borrowed, valid while the handle lives). */
KM_EXTERN const uint8_t *km_key_id(const km_key *key);

/** Returns the key's type, or 0 for NULL. */
KM_EXTERN km_key_type km_key_get_type(const km_key *key);

/**
 * Called once per key by km_key_list(); return non-zero to stop the listing.
 * `name` and `id` are valid only during the call.
 */
typedef int (*km_key_list_fn)(const char *name, const uint8_t id[16], km_key_type type,
                              void *arg);

/**
 * Lists every key of the vault (in id order) from one consistent snapshot.
 *
 * @return KM_OK (also when `fn` stopped early); KM_E_INVALID; KM_E_CORRUPT; KM_E_IO.
 */
KM_EXTERN int km_key_list(km_ctx *ctx, km_key_list_fn fn, void *arg);

/**
 * Adds a new version (freshly generated material) and makes it the primary.
 *
 * Older versions keep their state: they still decrypt and verify.
 * @param[out] new_version  the new version number; may be NULL.
 * @return KM_OK; KM_E_INVALID; KM_E_UNSUPPORTED for imported public-only keys;
 *         KM_E_LIMIT past 100,000 versions; KM_E_BACKEND; KM_E_IO.
 * kmctl: key rotate.
 */
KM_EXTERN int km_key_rotate(km_key *key, uint32_t *new_version);

/** A snapshot of one key's metadata, from km_key_info(). Opaque. */
typedef struct km_keyinfo km_keyinfo;

/** One version's metadata, filled by km_keyinfo_version(). Fields are only appended. */
typedef struct km_version_info {
    uint32_t version;        /**< 1, 2, ... */
    km_key_state state;      /**< lifecycle state */
    int64_t created;         /**< seconds since the epoch; 0 = not set */
    int64_t activated;
    int64_t protect_stop;
    int64_t process_stop;
    int64_t destroy_after;
    uint64_t invocations;    /**< uses reserved so far (an upper bound of real use) */
    uint64_t bytes;          /**< bytes protected: written to the vault at each counter block
                                  and when a handle is freed, plus this process's since */
    /* ---- appended (libkm 0.x, issue 22) ---- */
    uint32_t revoke_reason;  /**< km_revoke_reason of a revoked version; 0 = not revoked */
    int64_t compromise_date; /**< for a compromised version; 0 = not set */
    int64_t deactivated;     /**< when it was deactivated; 0 = not */
    int64_t destroyed;       /**< when its material was destroyed; 0 = not */
} km_version_info;

/** The size of km_version_info before the appended fields: km_keyinfo_version()
 *  accepts any out_size from this up and fills what fits. */
#define KM_VERSION_INFO_SIZE_V1 64

/**
 * Reads a fresh snapshot of the key's metadata from the vault.
 * @param[out] out  free with km_keyinfo_free().
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND if the key was removed; KM_E_CORRUPT; KM_E_IO.
 * kmctl: key info.
 */
KM_EXTERN int km_key_info(km_keyinfo **out, km_key *key);

/** Releases an info snapshot. Accepts NULL. */
KM_EXTERN void km_keyinfo_free(km_keyinfo *info);
/** Returns the key's name (borrowed from the snapshot). */
KM_EXTERN const char *km_keyinfo_name(const km_keyinfo *info);
/** Returns the key's 16-byte id (borrowed from the snapshot). */
KM_EXTERN const uint8_t *km_keyinfo_id(const km_keyinfo *info);
/** Returns the key's type. */
KM_EXTERN km_key_type km_keyinfo_type(const km_keyinfo *info);
/** Returns the key's usage mask (KM_USAGE_*). */
KM_EXTERN uint32_t km_keyinfo_usage(const km_keyinfo *info);
/** Returns the key's flags (KM_KEY_*). */
KM_EXTERN uint32_t km_keyinfo_flags(const km_keyinfo *info);
/** Returns the key's protection ("software", ...), borrowed from the snapshot. */
KM_EXTERN const char *km_keyinfo_protection(const km_keyinfo *info);
/** Returns the key's creation time (seconds since the epoch). */
KM_EXTERN int64_t km_keyinfo_created(const km_keyinfo *info);
/** Returns the primary version number (0 when no version may protect). */
KM_EXTERN uint32_t km_keyinfo_primary(const km_keyinfo *info);
/** Returns the number of versions. */
KM_EXTERN uint32_t km_keyinfo_version_count(const km_keyinfo *info);
/**
 * Copies the metadata of the version at `index` (0 = version 1) into `out`.
 * @param[in] out_size  sizeof(km_version_info) as the caller compiled it (a
 *            program built before fields were appended gets the fields it knows).
 * @return KM_OK; KM_E_INVALID for a bad index, NULL or an out_size below
 *         KM_VERSION_INFO_SIZE_V1.
 */
KM_EXTERN int km_keyinfo_version(const km_keyinfo *info, uint32_t index,
                                  km_version_info *out, size_t out_size);

/**
 * Exports the public key of an asymmetric key version.
 *
 * @param[in]  version  0 = the primary version (the newest when none is primary).
 * @param[in]  format   KM_MATERIAL_SPKI_DER, KM_MATERIAL_PEM or KM_MATERIAL_JWK
 *                      (RFC 7517 JSON text, NUL-terminated: *out_len counts
 *                      the text without its NUL, and includes it with
 *                      KM_E_BUFFER; EC, RSA, Ed25519 and X25519
 *                      keys; no "kid", "alg" or "use" member).
 * @param[out] out      the caller's buffer; may be NULL to ask for the length.
 * @param[out] out_len  the bytes written, or needed when KM_E_BUFFER is returned.
 * @return KM_OK; KM_E_INVALID (NULL key or out_len, another format);
 *         KM_E_UNSUPPORTED for a symmetric key, a backend that gives no public
 *         key, or a JWK of a type JWK has no form for in libkm (FFDHE);
 *         KM_E_NOTFOUND for an unknown version; KM_E_STATE for a destroyed
 *         version; KM_E_BUFFER; KM_E_FORK; KM_E_BACKEND; KM_E_CRYPTO.
 * Not audited (public data). Thread-safe. kmctl: key public NAME [--der|--jwk]
 * [--version N].
 */
KM_EXTERN int km_key_public_export(km_key *key, uint32_t version, km_material_format format,
                                   uint8_t *out, size_t out_cap, size_t *out_len);

/* ------------------------------------------------ names and metadata */

/*
 * A key has one name and up to KM_KEY_ALIASES_MAX aliases; names and aliases
 * share one namespace (km_key_open finds a key by either) and are stored only
 * as keyed hashes in the vault's name index. A description and tags
 * (key=value) are stored sealed with the key. Every change is one write
 * transaction and one audit entry (operation "key.meta"); a principal needs
 * the admin role.
 */
#define KM_KEY_ALIASES_MAX 16     /**< aliases per key */
#define KM_KEY_DESCRIPTION_MAX 1024 /**< bytes of a description */
#define KM_KEY_TAGS_MAX 32        /**< tags per key */
#define KM_KEY_TAG_KEY_MAX 64     /**< bytes of a tag's key: [A-Za-z0-9_.:/-] */
#define KM_KEY_TAG_VALUE_MAX 256  /**< bytes of a tag's value (printable, may be empty) */

/**
 * Renames a key. The old name is freed at once (another key may take it);
 * ciphertexts, grants and aliases are unaffected (they name the key's id).
 * @return KM_OK (also when new_name is the current name); KM_E_INVALID for a
 *         bad name, a "km:" name, or a key of libkm's own; KM_E_EXISTS when
 *         new_name is taken by a key or an alias; KM_E_DENIED; KM_E_IO;
 *         KM_E_UNSUPPORTED (a session key); KM_E_NOTFOUND (the key was
 *         removed); KM_E_CORRUPT; KM_E_NOMEM; KM_E_FORK.
 * Thread-safe. kmctl: key rename NAME NEWNAME.
 */
KM_EXTERN int km_key_rename(km_key *key, const char *new_name);

/** km_key_alias_add() flag: take the alias from the key that has it now. */
#define KM_ALIAS_MOVE 0x1u

/**
 * Gives the key another name, `alias`. With KM_ALIAS_MOVE an alias of
 * another key is moved to this one in one transaction (as AWS KMS aliases
 * are repointed at a new key): a reader opens either the old or the new key
 * by it, never neither.
 * @return KM_OK (also when the key already has this alias); KM_E_INVALID for
 *         a bad or "km:" alias or unknown flags; KM_E_EXISTS when it is a
 *         key's name, or another key's alias without KM_ALIAS_MOVE;
 *         KM_E_LIMIT past KM_KEY_ALIASES_MAX; KM_E_DENIED; KM_E_IO;
 *         KM_E_UNSUPPORTED (a session key); KM_E_NOTFOUND (the key was
 *         removed); KM_E_CORRUPT; KM_E_NOMEM; KM_E_FORK.
 * Thread-safe. kmctl: key alias NAME ALIAS [--move].
 */
KM_EXTERN int km_key_alias_add(km_key *key, const char *alias, uint32_t flags);

/**
 * Removes an alias (of whichever key has it).
 * @return KM_OK; KM_E_NOTFOUND when no key has it; KM_E_INVALID when it is a
 *         key's name (rename the key instead), NULL ctx or alias; KM_E_DENIED;
 *         KM_E_CORRUPT; KM_E_NOMEM; KM_E_STATE (the vault was closed);
 *         KM_E_FORK; KM_E_IO.
 * Thread-safe. kmctl: key unalias ALIAS.
 */
KM_EXTERN int km_key_alias_remove(km_ctx *ctx, const char *alias);

/**
 * Sets the key's description (printable UTF-8, no control character, at
 * most KM_KEY_DESCRIPTION_MAX bytes); NULL or "" removes it.
 * @return KM_OK; KM_E_INVALID (NULL key, a bad or too long text); KM_E_DENIED;
 *         KM_E_IO; KM_E_UNSUPPORTED (a session key);
 *         KM_E_NOTFOUND (the key was removed); KM_E_CORRUPT; KM_E_NOMEM; KM_E_FORK.
 * Thread-safe. kmctl: key describe NAME TEXT.
 */
KM_EXTERN int km_key_set_description(km_key *key, const char *text);

/**
 * Sets tag `tag` to `value` (replacing its value), or removes it when value
 * is NULL.
 * @return KM_OK; KM_E_INVALID for a bad tag or value; KM_E_NOTFOUND when
 *         removing a tag the key does not have; KM_E_LIMIT past
 *         KM_KEY_TAGS_MAX; KM_E_DENIED; KM_E_IO; KM_E_UNSUPPORTED (a session key);
 *         KM_E_NOTFOUND (the key was removed); KM_E_CORRUPT; KM_E_NOMEM; KM_E_FORK.
 * Thread-safe. kmctl: key tag NAME TAG=VALUE, key untag NAME TAG.
 */
KM_EXTERN int km_key_set_tag(km_key *key, const char *tag, const char *value);

/** Returns the key's description (borrowed from the snapshot), or NULL when none. */
KM_EXTERN const char *km_keyinfo_description(const km_keyinfo *info);
/** Returns the number of the key's aliases. */
KM_EXTERN uint32_t km_keyinfo_alias_count(const km_keyinfo *info);
/** Returns alias `index` (in the order they were added; borrowed), or NULL past the last. */
KM_EXTERN const char *km_keyinfo_alias(const km_keyinfo *info, uint32_t index);
/** Returns the number of the key's tags. */
KM_EXTERN uint32_t km_keyinfo_tag_count(const km_keyinfo *info);
/**
 * Tag `index` (tags are sorted by key): its key and value, borrowed.
 * @return KM_OK; KM_E_INVALID for a bad index or NULL.
 */
KM_EXTERN int km_keyinfo_tag(const km_keyinfo *info, uint32_t index, const char **tag,
                             const char **value);

#define KM_KEY_FILTER_VERSION 1
/** What km_key_list_filtered() lists; a zero field matches every key. */
typedef struct km_key_filter {
    uint32_t version;        /**< KM_KEY_FILTER_VERSION */
    km_key_type type;        /**< 0 = any type */
    const char *protection;  /**< NULL = any backend */
    km_key_state state;      /**< 0 = any; else keys with at least one version in this state */
    const char *tag;         /**< NULL = any; "K": keys with tag K; "K=V": tag K of value V */
} km_key_filter;
#define KM_KEY_FILTER_INIT { KM_KEY_FILTER_VERSION, 0, NULL, (km_key_state)0, NULL }

/**
 * Lists the keys that match `filter` (NULL: every key), sorted by name
 * (bytewise), read from one consistent snapshot. Unlike km_key_list(), `fn`
 * is called after the snapshot is read, so it may call libkm.
 * @return KM_OK (also when `fn` stopped early); KM_E_INVALID (NULL ctx or fn,
 *         a bad filter version, state, type or an empty tag); KM_E_NOMEM;
 *         KM_E_CORRUPT; KM_E_FORK (the store, in a forked child); KM_E_IO.
 *         Any principal may list (as km_key_list()).
 * Thread-safe. kmctl: key list [--type] [--state] [--protection] [--tag].
 */
KM_EXTERN int km_key_list_filtered(km_ctx *ctx, const km_key_filter *filter, km_key_list_fn fn,
                                   void *arg);

/* ------------------------------------------------ settings after creation */

/** km_key_settings::fields: which settings km_key_set() changes. */
#define KM_SET_ROTATE_DAYS         0x01u
#define KM_SET_USAGE               0x02u
#define KM_SET_EXPORTABLE          0x04u
#define KM_SET_POLICY              0x08u
#define KM_SET_DELETION_PROTECTION 0x10u
#define KM_SET_MIN_PROCESS_VERSION 0x20u
#define KM_SET_MIN_PROTECT_VERSION 0x40u

#define KM_KEY_SETTINGS_VERSION 1
/** What km_key_set() changes; members whose KM_SET_* bit is not in `fields` are ignored. */
typedef struct km_key_settings {
    uint32_t version;          /**< KM_KEY_SETTINGS_VERSION */
    uint32_t fields;           /**< KM_SET_* */
    uint32_t rotate_days;      /**< rotate every N days (0 = never), within the policy */
    uint32_t usage;            /**< KM_USAGE_* mask: only narrowing (a subset of the current one) */
    int exportable;            /**< only 0: an exportable key becomes non-exportable, never back */
    const char *policy;        /**< the key's own policy (JSON), at least as strict as the one in
                                    force for the key in every rule (tighten only) */
    int deletion_protection;   /**< 1 sets KM_KEY_DELETION_PROTECTED, 0 clears it */
    /** The version window (Vault's min_decryption_version and min_encryption_version):
     *  versions below min_process_version no longer process (decrypt, verify, unwrap) and
     *  versions below min_protect_version no longer protect (the primary is the newest
     *  version at or above it); 0 = no minimum. Each is at most the number of versions,
     *  and a non-zero min_protect_version is at least min_process_version. */
    uint32_t min_process_version;
    uint32_t min_protect_version;
} km_key_settings;
#define KM_KEY_SETTINGS_INIT { KM_KEY_SETTINGS_VERSION, 0, 0, 0, 0, NULL, 0, 0, 0 }

/**
 * Changes a key's settings after creation, all in one transaction with one
 * audit entry ("key.policy", naming what changed). Only changes that keep or
 * tighten the key's protection are free: a new own policy, and clearing
 * deletion protection, are "policy-change" operations on the key under the
 * larger of the vault's and the key's dual_control.policy-change count
 * (km_request_create(KM_REQ_POLICY_CHANGE, key name, params): params = the
 * policy JSON, or the 23 bytes "deletion-protection=off"). The key's periods
 * must fit the policy that results.
 * @return KM_OK; KM_E_INVALID (NULL settings or key, bad version or fields,
 *         a usage the key lacks, a rotation period above 36500 days, a policy
 *         that is empty, too long or does not parse, a minimum version above
 *         the number of versions or a min_protect_version below
 *         min_process_version); KM_E_POLICY (exportable back on, a looser
 *         policy, a rotation period the policy refuses); KM_E_DENIED (the
 *         admin role, or approvals missing); KM_E_UNSUPPORTED (a session
 *         key); KM_E_NOTFOUND (the key was removed); KM_E_CORRUPT (its record
 *         fails to open); KM_E_FORK; KM_E_NOMEM; KM_E_IO. Nothing changes on error.
 * Thread-safe. kmctl: key set NAME [--rotate-every] [--usage] [--not-exportable]
 * [--policy FILE] [--deletion-protection on|off] [--min-decryption-version N]
 * [--min-encryption-version N].
 */
KM_EXTERN int km_key_set(km_key *key, const km_key_settings *settings);

/**
 * The key's periods in days (0 = none): rotation, originator-usage
 * (protect), recipient-usage (process), destruction grace. Any out pointer may be NULL.
 */
KM_EXTERN void km_keyinfo_periods(const km_keyinfo *info, uint32_t *rotate_days,
                                  uint32_t *protect_days, uint32_t *process_days,
                                  uint32_t *grace_days);
/** The key's version window: the minimum process and protect versions (0 = none). */
KM_EXTERN void km_keyinfo_window(const km_keyinfo *info, uint32_t *min_process_version,
                                 uint32_t *min_protect_version);

/**
 * Retires the versions below the key's minimum process version
 * (km_key_settings::min_process_version) through the normal destruction path:
 * each ACTIVE or SUSPENDED one is deactivated (revoked as superseded, not
 * compromised), then every one not yet destroyed or pending is scheduled for
 * destruction after `grace_days` (0: the key's destruction grace). For a data
 * set rewrapped to newer versions, so that the old ones go without being
 * marked compromised. Each step is audited; under dual control each
 * scheduling needs its destroy request (as km_key_schedule_destroy).
 * @param[out] count  the versions scheduled now; may be NULL.
 * @return KM_OK; KM_E_STATE when the key has no minimum process version, when
 *         it would reach the primary version, or under deletion protection;
 *         KM_E_POLICY (the grace window); KM_E_DENIED; KM_E_IO. Versions
 *         scheduled before an error stay scheduled.
 * kmctl: key trim.
 */
KM_EXTERN int km_key_trim(km_key *key, uint32_t grace_days, uint32_t *count);

/**
 * Removes a destroyed key's records (its tombstone): the key record, every
 * version's record, its grants and owner, and its name and aliases, which are
 * free again. Only when every version is DESTROYED and the last one was
 * destroyed at least destruction.tombstone_days ago (the policy in force for
 * the key; docs/POLICY.md). Audited (key.destroy, "purged"). The handle then
 * refers to nothing (KM_E_NOTFOUND); free it.
 * @return KM_OK; KM_E_STATE (a version not destroyed, the retention not over,
 *         deletion protection); KM_E_DENIED; KM_E_IO.
 * kmctl: key purge.
 */
KM_EXTERN int km_key_purge(km_key *key);

/** Returns the key's owner: a principal's name, or "owner" (the vault owner); borrowed. */
KM_EXTERN const char *km_keyinfo_owner(const km_keyinfo *info);

/** Returns the key's own policy document (JSON, borrowed), or NULL when it has none. */
KM_EXTERN const char *km_keyinfo_policy(const km_keyinfo *info);

#ifdef __cplusplus
}
#endif
#endif /* KM_KEY_H */
