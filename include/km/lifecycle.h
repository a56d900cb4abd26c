/**
 * @file km/lifecycle.h
 * @brief Moving key versions through their lifecycle (NIST SP 800-57 Part 1 §7).
 *
 * | state           | protect (encrypt, sign, MAC) | process (decrypt, verify)             |
 * |-----------------|------------------------------|---------------------------------------|
 * | PRE_ACTIVE      | no                           | no                                    |
 * | ACTIVE          | yes, until protect-stop      | yes                                   |
 * | SUSPENDED       | no                           | yes                                   |
 * | DEACTIVATED     | no                           | yes, until process-stop               |
 * | COMPROMISED     | no                           | only with KM_DECRYPT_ALLOW_COMPROMISED |
 * | DESTROY_PENDING | no                           | no; cancelable until destroy-after    |
 * | DESTROYED       | no                           | no; metadata kept as a tombstone      |
 *
 * Transitions: PRE_ACTIVE→ACTIVE (activate, or the activation date arrives);
 * ACTIVE⇄SUSPENDED; ACTIVE/SUSPENDED→DEACTIVATED (revoke, or protect-stop
 * passes); any of PRE_ACTIVE/ACTIVE/SUSPENDED/DEACTIVATED→COMPROMISED (revoke
 * with a compromise reason); PRE_ACTIVE/DEACTIVATED/COMPROMISED→DESTROY_PENDING
 * →DESTROYED; DESTROY_PENDING→the state it came from (cancel). An ACTIVE
 * version is never destroyed directly. Every transition is dated.
 *
 * In every function `version` names the key version; 0 means the primary
 * (for km_key_activate: the newest PRE_ACTIVE version).
 */
#ifndef KM_LIFECYCLE_H
#define KM_LIFECYCLE_H

#include "common.h"
#include "key.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Revocation reasons (the KMIP Revocation Reason Code values). */
typedef enum km_revoke_reason {
    KM_REVOKE_UNSPECIFIED = 1,
    KM_REVOKE_KEY_COMPROMISE = 2,
    KM_REVOKE_CA_COMPROMISE = 3,
    KM_REVOKE_AFFILIATION_CHANGED = 4,
    KM_REVOKE_SUPERSEDED = 5,
    KM_REVOKE_CESSATION_OF_OPERATION = 6,
    KM_REVOKE_PRIVILEGE_WITHDRAWN = 7
} km_revoke_reason;

/** Returns the name of a revocation reason ("key-compromise"), or NULL. */
KM_EXTERN const char *km_revoke_reason_name(km_revoke_reason reason);

/** Parses a revocation reason name. @return KM_OK, KM_E_INVALID. */
KM_EXTERN int km_revoke_reason_from_name(const char *name, km_revoke_reason *out);

/**
 * PRE_ACTIVE → ACTIVE, now. `version` 0 = the newest PRE_ACTIVE version.
 * @return KM_OK; KM_E_INVALID (NULL key); KM_E_NOTFOUND (no such version);
 *         KM_E_STATE (the version is not PRE_ACTIVE); KM_E_IO.
 * Thread-safe; the change is durable when the call returns.
 * kmctl: key activate.
 */
KM_EXTERN int km_key_activate(km_key *key, uint32_t version);

/**
 * ACTIVE → SUSPENDED: the version stops protecting and still processes.
 * `version` 0 = the primary.
 * @return as km_key_activate() (KM_E_STATE: the version is not ACTIVE, or the
 *         key has no primary). kmctl: key suspend.
 */
KM_EXTERN int km_key_suspend(km_key *key, uint32_t version);

/**
 * SUSPENDED → ACTIVE. `version` 0 = the newest SUSPENDED version.
 * @return as km_key_activate() (KM_E_STATE: the version is not SUSPENDED).
 *         kmctl: key resume.
 */
KM_EXTERN int km_key_resume(km_key *key, uint32_t version);

/**
 * Revokes a version.
 *
 * KM_REVOKE_KEY_COMPROMISE and KM_REVOKE_CA_COMPROMISE move a live version
 * (PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED) to COMPROMISED and need a
 * compromise date (seconds since the epoch, not in the future); the other
 * reasons move ACTIVE or SUSPENDED to DEACTIVATED and take 0.
 * @return KM_OK; KM_E_INVALID (bad reason, missing or future compromise
 *         date, or a date given with a non-compromise reason); KM_E_NOTFOUND;
 *         KM_E_STATE; KM_E_IO.
 * kmctl: key revoke.
 */
KM_EXTERN int km_key_revoke(km_key *key, uint32_t version, km_revoke_reason reason,
                            int64_t compromise_date);

/**
 * PRE_ACTIVE, DEACTIVATED or COMPROMISED → DESTROY_PENDING; the material is
 * destroyed by km_maintain() once `grace_days` have passed (cancelable until then).
 * @param[in] grace_days  1 to 3650 days.
 * @return KM_OK; KM_E_INVALID (grace out of range); KM_E_NOTFOUND;
 *         KM_E_STATE (an ACTIVE or SUSPENDED version is never destroyed directly); KM_E_IO.
 * kmctl: key destroy.
 */
KM_EXTERN int km_key_schedule_destroy(km_key *key, uint32_t version, uint32_t grace_days);

/**
 * DESTROY_PENDING → the state it came from.
 * @return as km_key_activate() (KM_E_STATE: the version is not DESTROY_PENDING).
 * kmctl: key cancel-destroy.
 */
KM_EXTERN int km_key_cancel_destroy(km_key *key, uint32_t version);

/** What km_maintain() did. Opaque. */
typedef struct km_maintain_report km_maintain_report;

/**
 * Applies every time-driven transition that is due in the vault: activation
 * dates, protect-stop (→ DEACTIVATED), process-stop (→ DESTROY_PENDING),
 * destroy-after (→ DESTROYED: the material is removed from the backend and
 * the vault), and scheduled or usage-based rotation. Each change is its own
 * durable transaction, so an interrupted run leaves every key either before
 * or after a step, and a second run finishes the work.
 *
 * Only the owner or an admin principal may run it (the transitions it applies
 * stand for destroy, revoke and rotate).
 *
 * @param[out] out  the report (free with km_maintain_report_free()); may be NULL.
 * @return KM_OK; KM_E_INVALID; KM_E_DENIED (not the owner or an admin, audited);
 *         KM_E_IO; KM_E_BACKEND (a failed destroy; the version stays
 *         DESTROY_PENDING and the next run retries).
 * kmctl: maintain.
 */
KM_EXTERN int km_maintain(km_ctx *ctx, km_maintain_report **out);

/** Returns the number of actions in the report (0 for NULL). */
KM_EXTERN size_t km_maintain_report_count(const km_maintain_report *r);
/**
 * One action: the key's name, its version, and what happened ("activated",
 * "deactivated", "destroy-pending", "destroyed", "rotated").
 * Pointers are borrowed from the report. @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_maintain_report_get(const km_maintain_report *r, size_t index,
                                     const char **key_name, uint32_t *version,
                                     const char **action);
/** Releases a report. Accepts NULL. */
KM_EXTERN void km_maintain_report_free(km_maintain_report *r);

#ifdef __cplusplus
}
#endif
#endif /* KM_LIFECYCLE_H */
