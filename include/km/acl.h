/**
 * @file km/acl.h
 * @brief Principals, roles and key grants.
 *
 * A vault is opened either by its owner (an owner passphrase slot, a backend
 * keyslot or Shamir shares: every right), or by a principal
 * (km_open_options::principal) whose own keyslot proves its credential. A
 * principal has roles:
 *
 * | role | may |
 * |---|---|
 * | admin | create, import, rotate and transition keys; policy; backends; keyslots; principals; grants; audit level |
 * | custodian | approve dual-control requests; hold shares |
 * | user | cryptographic operations on keys it owns or that are granted to it or to one of its roles |
 * | auditor | read the audit log and key metadata; never key material or crypto operations |
 *
 * Every principal may read key metadata (list, info, public keys). A refused
 * call returns KM_E_DENIED naming the missing permission, and is audited.
 * Grants and roles are read when a key is loaded and refreshed as key state is
 * (km_open_options::refresh_ms), so a revoked grant stops a handle within that
 * time.
 */
#ifndef KM_ACL_H
#define KM_ACL_H

#include "common.h"
#include "key.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Roles (a bit set). */
#define KM_ROLE_ADMIN     0x1u
#define KM_ROLE_CUSTODIAN 0x2u
#define KM_ROLE_USER      0x4u
#define KM_ROLE_AUDITOR   0x8u

/** Permissions a grant gives on one key (a bit set). */
#define KM_PERM_ENCRYPT 0x01u   /**< km_encrypt, km_datakey_generate */
#define KM_PERM_DECRYPT 0x02u   /**< km_decrypt, km_datakey_decrypt, km_rewrap */
#define KM_PERM_SIGN    0x04u   /**< km_sign */
#define KM_PERM_VERIFY  0x08u   /**< km_verify, km_mac_verify */
#define KM_PERM_MAC     0x10u   /**< km_mac */
#define KM_PERM_DERIVE  0x20u   /**< km_derive, km_agree */
#define KM_PERM_EXPORT  0x40u   /**< km_key_export_wrapped */
#define KM_PERM_ALL     0x7fu   /**< every permission above; not KM_PERM_AGREE_RAW */
/** km_agree_raw: only by an explicit grant (not in KM_PERM_ALL, not implied by owning
 *  the key); the vault owner has it. */
#define KM_PERM_AGREE_RAW 0x80u

/**
 * Adds a principal with `roles` and its own passphrase keyslot (the
 * passphrase wraps the master key; the principal opens the vault with it).
 * Needs the admin role (or the owner). Audited.
 * @return KM_OK; KM_E_INVALID (name 1..64 printable bytes, roles, passphrase);
 *         KM_E_EXISTS; KM_E_DENIED; KM_E_IO.
 * kmctl: principal add.
 */
KM_EXTERN int km_principal_add(km_ctx *ctx, const char *name, uint32_t roles,
                               const uint8_t *passphrase, size_t passphrase_len,
                               uint32_t kdf_cost);

/**
 * Offboards a principal in one audited transaction: removes its keyslots
 * (it can no longer open the vault), its record and every grant to it, and
 * hands the keys it owned to the vault owner. `flags`: with
 * KM_PRINCIPAL_REVOKE_KEYS (1, what a non-zero `revoke_owned` was before)
 * every live (active or suspended) version of each of those keys is revoked
 * (reason affiliation changed: deactivated) in the same transaction, each
 * with its audit entry, so that a crash leaves all of it or none (a person
 * who leaves takes no usable key along). With KM_PRINCIPAL_ROTATE_MASTER the
 * same transaction also replaces the vault's master key and reseals every
 * record under it (as km_vault_rekey()), while every remaining passphrase
 * (owner or principal) and share-set keyslot is re-wrapped for the new key
 * (key-pair keyslots: nobody types a credential) and device keyslots are
 * re-sealed by their devices (one that cannot is dropped, as in a rekey): a
 * removed principal who kept the old master key reads nothing written after.
 * Refused (KM_E_STATE, naming it) while a keyslot is of the older form: one
 * open with it converts it. Other open contexts must reopen. Needs the admin
 * role. Refused (KM_E_STATE) when its keyslots were the last that open the
 * vault now (see km_vault_remove_passphrases()).
 * @return KM_OK; KM_E_NOTFOUND; KM_E_DENIED; KM_E_STATE (it is the caller, a
 *         slot of the older form); KM_E_INVALID (unknown flags); KM_E_IO.
 * kmctl: principal remove.
 */
KM_EXTERN int km_principal_remove(km_ctx *ctx, const char *name, int flags);

/** km_principal_remove() flag: revoke the live versions of the keys it owned. */
#define KM_PRINCIPAL_REVOKE_KEYS 1
/** km_principal_remove() flag: rotate the master key in the same transaction. */
#define KM_PRINCIPAL_ROTATE_MASTER 2

/** Callback of km_principal_list(); non-zero stops. */
typedef int (*km_principal_fn)(const char *name, uint32_t roles, int64_t created, void *arg);

/**
 * Lists the principals. Any principal may list. @return KM_OK or an error.
 * kmctl: principal list.
 */
KM_EXTERN int km_principal_list(km_ctx *ctx, km_principal_fn fn, void *arg);

/**
 * Who opened this context: writes its name ("owner", a principal's name,
 * "shares", "backend:NAME") and roles (all four for the owner).
 * @return KM_OK; KM_E_BUFFER; KM_E_INVALID.
 * kmctl: whoami.
 */
KM_EXTERN int km_whoami(km_ctx *ctx, char *name, size_t name_cap, uint32_t *roles);

/**
 * Grants `perms` (KM_PERM_*) on `key` to a principal (`grantee` = its name)
 * or to a role (`grantee` = "role:user", "role:admin", ...), replacing an
 * earlier grant to the same grantee; perms 0 removes it. Needs admin. Audited.
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND (no such principal); KM_E_DENIED.
 * kmctl: key grant.
 */
KM_EXTERN int km_key_grant(km_key *key, const char *grantee, uint32_t perms);

/**
 * The permissions this context's principal has on `key` (KM_PERM_ALL |
 * KM_PERM_AGREE_RAW for the vault owner; KM_PERM_ALL and its grants for a
 * principal on a key it owns).
 * @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_key_perms(km_key *key, uint32_t *perms);

/** Called once per grant by km_key_grants(); non-zero stops. `grantee` is a
 *  principal's name or "role:NAME"; valid only during the call. */
typedef int (*km_grant_fn)(const char *grantee, uint32_t perms, void *arg);

/**
 * Lists the grants on `key` (principals by name, then roles, in record
 * order). The vault owner, an admin and an auditor see every grant; another
 * principal sees the grants that apply to it (its own and its roles').
 * @return KM_OK (also when fn stopped); KM_E_INVALID; KM_E_CORRUPT; KM_E_IO.
 * kmctl: key grants.
 */
KM_EXTERN int km_key_grants(km_key *key, km_grant_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* KM_ACL_H */
