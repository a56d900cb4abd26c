/**
 * @file km/quorum.h
 * @brief Dual control: operations that need M approvals.
 *
 * The vault policy (`dual_control` in docs/POLICY.md) names operations that
 * need approvals: `destroy` (km_key_schedule_destroy), `export`
 * (km_key_export_wrapped), `import-raw` (key material entering the vault:
 * km_key_import of private or secret material, km_key_import_wrapped),
 * `policy-change` (km_policy_set) and `principal-change`
 * (km_principal_add, km_principal_remove, and the vault's credentials:
 * km_vault_rekey, km_vault_add_passphrase, km_vault_add_backend_slot,
 * km_vault_add_shares, km_vault_remove_passphrases). Such a call, made without an
 * approved request, fails with KM_E_DENIED saying how many approvals it needs.
 *
 * The flow: the caller creates a request naming the operation, the key and
 * the exact arguments it will pass (km_request_create); distinct custodians,
 * each in a context opened with their own credential (km/acl.h), approve it
 * (km_request_approve); once M have approved, the SAME caller makes the call
 * with the same arguments, and the call consumes the request in the same
 * transaction as its change. A request serves once, expires, cannot be
 * approved by its requester or twice by one custodian. Every step is audited.
 */
#ifndef KM_QUORUM_H
#define KM_QUORUM_H

#include "common.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Operations under dual control. */
typedef enum km_request_op {
    KM_REQ_DESTROY = 1,          /**< km_key_schedule_destroy: params = BE32 version, BE32 grace days */
    KM_REQ_EXPORT = 2,           /**< km_key_export_wrapped: params = the recipient public key bytes */
    KM_REQ_IMPORT_RAW = 3,       /**< km_key_import: params = the material bytes;
                                      km_key_import_wrapped: the wrapped blob (only hashes are kept) */
    KM_REQ_POLICY_CHANGE = 4,    /**< km_policy_set: params = the JSON document; with a key name,
                                      km_key_set of that key: params = its new own policy (JSON)
                                      or "deletion-protection=off" */
    KM_REQ_PRINCIPAL_CHANGE = 5  /**< km_principal_add / _remove: params = "add:NAME:ROLES"
                                      (ROLES: comma-separated admin, custodian, user, auditor,
                                      in any order) or "remove:NAME"; the vault's credentials
                                      (km/vault.h): "rekey" (km_vault_rekey),
                                      "keyslot-add:passphrase", "keyslot-add:backend:NAME",
                                      "keyslot-add:shares:M-of-N", "keyslot-remove:passphrases" */
} km_request_op;

/** Default and longest lifetime of a request, seconds. */
#define KM_REQUEST_TTL_DEFAULT (24 * 3600)
#define KM_REQUEST_TTL_MAX (30 * 24 * 3600)

/** State of a request (km_request_info). */
typedef struct km_request_status {
    km_request_op op;
    char key_name[256];      /**< "" for vault operations */
    char requester[72];      /**< who created it */
    uint32_t approvals;      /**< distinct custodian approvals so far */
    uint32_t needed;         /**< approvals the policy asks for now */
    int64_t created, expires;
    int consumed;            /**< 1 once the operation ran */
} km_request_status;

/**
 * Creates a request for `op` on key `key_name` (NULL for policy and principal
 * changes) with the exact `params` the call will use (see km_request_op).
 * Only a SHA-256 of params is kept. The caller must itself be allowed to make
 * the call (km/acl.h). Audited.
 *
 * @param ttl_s  lifetime in seconds; 0 = KM_REQUEST_TTL_DEFAULT.
 * @param[out] id the request id, 16 bytes, to hand to the custodians.
 * @return KM_OK; KM_E_INVALID; KM_E_NOTFOUND (no such key); KM_E_DENIED; KM_E_IO.
 * kmctl: request create.
 */
KM_EXTERN int km_request_create(km_ctx *ctx, km_request_op op, const char *key_name,
                                const uint8_t *params, size_t params_len, uint32_t ttl_s,
                                uint8_t id[16]);

/**
 * Approves a request as this context's principal, who must hold the
 * custodian role and not be the requester. Audited (refusals too).
 * @return KM_OK; KM_E_NOTFOUND; KM_E_DENIED (not a custodian, self-approval);
 *         KM_E_EXISTS (already approved by this principal); KM_E_STATE
 *         (expired or consumed); KM_E_IO.
 * kmctl: request approve.
 */
KM_EXTERN int km_request_approve(km_ctx *ctx, const uint8_t id[16]);

/**
 * Reads a request's state.
 * @return KM_OK; KM_E_NOTFOUND; KM_E_INVALID.
 * kmctl: request show.
 */
KM_EXTERN int km_request_info(km_ctx *ctx, const uint8_t id[16], km_request_status *out);

/**
 * What a request asks for, every parameter spelled out for the custodians
 * who approve it, as one NUL-terminated text written by libkm when the
 * request was created (never by the requester): the key, version and grace
 * of a destroy; the SHA-256 of an export's recipient public key or of
 * imported material or a wrapped key (never the material); a new policy
 * document in full; the name and roles of a principal change. A request made
 * by an older libkm says that its parameters were not recorded.
 *
 * @param[out] out      the caller's buffer for the text; NULL with cap 0 to
 *                      ask for the size.
 * @param[in]  cap      bytes at out.
 * @param[out] out_len  the bytes the text needs, its NUL included.
 * @return KM_OK; KM_E_BUFFER (cap too small; *out_len says how much);
 *         KM_E_NOTFOUND (no such request); KM_E_INVALID (NULL ctx, id or
 *         out_len, out NULL with cap > 0); KM_E_STATE (the vault was closed);
 *         KM_E_FORK; KM_E_CORRUPT (the request record fails to open); KM_E_IO.
 * Any principal may read it (no role needed); not audited. Thread-safe.
 * kmctl: request show ID.
 */
KM_EXTERN int km_request_describe(km_ctx *ctx, const uint8_t id[16], char *out, size_t cap,
                                  size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* KM_QUORUM_H */
