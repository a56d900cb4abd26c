/**
 * @file km/policy.h
 * @brief The vault's policy: algorithms, sizes, cryptoperiods, rotation, usage
 * limits, destruction grace, dual control (docs/POLICY.md).
 *
 * Every vault has a policy; a new vault gets the built-in default (NIST SP
 * 800-57 Part 1 rev. 5, SP 800-131A rev. 2), or the FIPS 140-3 profile when
 * created with KM_OPEN_FIPS. The policy is a JSON document stored sealed in
 * the vault. The core applies it before any dispatch: key creation and import
 * (KM_E_POLICY naming the rule), protection with an algorithm past its
 * protect-until date, the per-version usage limit and the usage fraction at
 * which km_maintain() rotates.
 */
#ifndef KM_POLICY_H
#define KM_POLICY_H

#include "common.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Replaces the vault's policy with a JSON document.
 *
 * @param[in] json  the document (UTF-8, need not be NUL-terminated), at most 1 MiB.
 * @return KM_OK; KM_E_INVALID for a malformed document (the message names the
 *         line and column, or the JSON path, and the rule); KM_E_UNSUPPORTED for
 *         a newer document version; KM_E_IO. Keys already out of the new policy
 *         keep working for processing; km_policy_report() lists them.
 * The change is durable and seen by this process at once and by other
 * processes within their refresh interval. Thread-safe.
 * kmctl: policy set.
 */
KM_EXTERN int km_policy_set(km_ctx *ctx, const char *json, size_t json_len);

/**
 * Writes the vault's current policy as JSON (NUL-terminated).
 * @param[out] out      may be NULL to ask for the size.
 * @param[out] out_len  characters written without the NUL, or the size needed
 *                      (with the NUL) when KM_E_BUFFER is returned.
 * @return KM_OK; KM_E_INVALID; KM_E_BUFFER; KM_E_NOMEM.
 * kmctl: policy show.
 */
KM_EXTERN int km_policy_get(km_ctx *ctx, char *out, size_t out_cap, size_t *out_len);

/** The keys out of policy, from km_policy_report(). Opaque. */
typedef struct km_policy_findings km_policy_findings;

/**
 * Lists every key of the vault that is out of policy, and why.
 * @param[out] out  free with km_policy_findings_free().
 * @return KM_OK (also when every key is within policy); KM_E_INVALID; KM_E_IO.
 * kmctl: policy check.
 */
KM_EXTERN int km_policy_report(km_ctx *ctx, km_policy_findings **out);
/** Returns the number of keys out of policy (0 for NULL). */
KM_EXTERN size_t km_policy_findings_count(const km_policy_findings *f);
/**
 * One finding: the key's name and the reasons, each starting with the rule's
 * JSON path ("algorithms.rsa-2048.protect_until: ..."), "; "-separated.
 * Borrowed from the findings. @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_policy_findings_get(const km_policy_findings *f, size_t index,
                                     const char **key_name, const char **why);
/** Releases findings. Accepts NULL. */
KM_EXTERN void km_policy_findings_free(km_policy_findings *f);

#ifdef __cplusplus
}
#endif
#endif /* KM_POLICY_H */
