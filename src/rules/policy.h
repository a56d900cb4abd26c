/*
 * policy.h - the policy module: what keys may exist and how long they may be
 * used (NIST SP 800-57 Part 1 rev. 5, SP 800-131A rev. 2, SP 800-38D).
 *
 * Pure: no storage, no key handles. The core loads the vault's policy (and a
 * key's own, parsed with the vault's as `base`), asks these functions before
 * creating, importing, protecting, rotating and destroying, and stores the
 * text of km__policy_to_json(). The document and its defaults: docs/POLICY.md.
 *
 * Errors are recorded with km__err(); every refusal (KM_E_POLICY) names the
 * rule as its JSON path, e.g. "policy rule algorithms.rsa-2048.protect_until: ...".
 * A km__policy is immutable after it is made, so one may be shared by threads.
 * Times are seconds since the epoch (UTC); periods are whole days.
 */
#ifndef KM_INT_POLICY_H
#define KM_INT_POLICY_H

#include "km_int.h"
#include "keytype.h"

typedef struct km__policy km__policy;

/* km__pclass, the SP 800-57 key classes of the key types: keytype.h. */

/* The built-in policy: fips = 0 the default profile, 1 the FIPS 140-3 profile
 * (approved algorithms only: no x25519). KM_OK or KM_E_NOMEM. */
int km__policy_default(km__policy **out, int fips);

/* Parses a policy document (JSON, docs/POLICY.md) of `len` bytes (no NUL
 * needed). Fields left out keep the value of the starting point: `base` when
 * given and the document names no "profile", else the named profile (default:
 * "default"). With `base` (the vault's policy, when parsing a key's own), the
 * result must be at least as strict as `base` in every rule.
 * *out is set to NULL first and written only on success; free with
 * km__policy_free().
 * Errors: KM_E_INVALID for bad JSON, a duplicate key, an unknown field, a
 * wrong type or a bad value ("policy line L column C: <path>: <what>");
 * KM_E_UNSUPPORTED for a "version" newer than 1; KM_E_POLICY when a rule is
 * looser than in `base` ("policy line L column C: <path> loosens the vault
 * policy (vault ..., key ...)", or "policy: <path> ..." when the document
 * does not spell the rule out); KM_E_NOMEM. */
int km__policy_parse(km__policy **out, const char *json, size_t len, const km__policy *base);

/* Accepts NULL. */
void km__policy_free(km__policy *p);

/* A copy (KM_OK, KM_E_INVALID for NULL, KM_E_NOMEM). */
int km__policy_dup(km__policy **out, const km__policy *p);

/* 1 when both policies have the same rules (the profile name included). */
int km__policy_equal(const km__policy *a, const km__policy *b);

/* The full JSON text of a policy, every rule spelled out (for storage and
 * `kmctl policy show`); km__policy_parse() of it gives an equal policy.
 * malloc'ed and NUL-terminated, the caller frees; NULL on error (recorded). */
char *km__policy_to_json(const km__policy *p);

/* "default" or "fips" (static). */
const char *km__policy_profile(const km__policy *p);

/* The class of a key type (KM__PCLASS__COUNT for an unknown type), and its
 * name as in the document ("symmetric-data"; NULL if unknown). */
km__pclass km__policy_type_class(km_key_type type);
const char *km__policy_class_name(km__pclass c);

/* Checks creating or importing a key of `type` at `now` with the given
 * periods (0 = unset; call km__policy_key_defaults() first so that unset
 * periods get the policy's defaults): the type is allowed; its size (for
 * HMAC: `key_bits`, 0 = the type's default length) reaches min_bits and
 * security_strength.minimum; it may still protect new data; protect_days and
 * process_days are within the class maxima (and set when
 * cryptoperiods.required); rotate_days is within rotation.max_days (and set
 * when rotation.required); grace_days (0 = the default) is within the
 * destruction window.
 * KM_OK; KM_E_POLICY "policy rule <path>: ..."; KM_E_INVALID (NULL p,
 * unknown type). */
int km__policy_check_create(const km__policy *p, km_key_type type, uint32_t key_bits, int64_t now,
                            uint32_t rotate_days, uint32_t protect_days, uint32_t process_days,
                            uint32_t grace_days);

/* May a key of this type still protect new data (encrypt, sign, wrap, MAC)
 * at `now`? Checks allowed, min_bits, the strength minimum and the
 * protect_until dates. KM_OK; KM_E_POLICY naming the rule; KM_E_INVALID. */
int km__policy_check_protect(const km__policy *p, km_key_type type, int64_t now);
/* As km__policy_check_protect() for an HMAC key of `key_bits` (0 = default):
 * an imported HMAC key of 112 to 127 bits has 112-bit strength. */
int km__policy_check_protect_bits(const km__policy *p, km_key_type type, uint32_t key_bits,
                                  int64_t now);

/* Checks a destruction grace period (1 to 3650 days) against the window.
 * KM_OK; KM_E_POLICY naming destruction.min_grace_days or max_grace_days. */
int km__policy_check_grace(const km__policy *p, uint32_t grace_days);

/* In/out: each non-NULL argument that is 0 (the caller gave none) gets the
 * policy's default for a new key of this type; non-zero values are kept.
 * rotate_days: rotation.max_days when rotation is required (no longer than
 * the protect period); protect_days/process_days: the class maxima when
 * cryptoperiods.required, else 0 (none); grace_days: 30 (the km_key_options
 * default) brought into the destruction window. */
void km__policy_key_defaults(const km__policy *p, km_key_type type, uint32_t *rotate_days,
                             uint32_t *protect_days, uint32_t *process_days,
                             uint32_t *grace_days);

/* The hard usage limit of one key version and the count at which to rotate
 * (floor(limit * rotation.usage_fraction)). AES-GCM: 2^32 and 3865470566 by
 * default (SP 800-38D section 8.3); 0 and 0 (unlimited) for other types. */
void km__policy_usage_limit(const km__policy *p, km_key_type type, uint64_t *limit,
                            uint64_t *rotate_at);

/* rotation.replace_unusable_primary: 1 when a key left without a usable
 * primary is rotated lazily on use (refresh, first use), not only by km_maintain. */
int km__policy_replace_unusable(const km__policy *p);

/* How many approvals operation `op` needs: "destroy", "export", "import-raw",
 * "policy-change", "principal-change"; 0 = none. An unknown op name gives
 * UINT32_MAX (fails closed: it is a programming error). */
uint32_t km__policy_approvals(const km__policy *p, const char *op);
/* 1 when the policy lets a caller's clock (km_open_options.clock) drive
 * time (testing.caller_clock; off by default). */
int km__policy_caller_clock(const km__policy *p);

/* One key against the policy (for km_policy_report()): returns 1 and writes
 * every reason, "; "-separated, each starting with the rule's path, into
 * `why` (truncated to why_len, always NUL-terminated when why_len > 0), or
 * returns 0 when the key is within the policy. primary_activated is the
 * activation time of the key's primary version, 0 when none may protect;
 * the periods are the key's (0 = none). */
int km__policy_key_out_of_policy(const km__policy *p, km_key_type type, int64_t now,
                                 int64_t primary_activated, uint32_t rotate_days,
                                 uint32_t protect_days, uint32_t process_days, char *why,
                                 size_t why_len);

/* How long a destroyed key's record (its tombstone) is kept before
 * km_key_purge may remove it: destruction.tombstone_days (UINT32_MAX for NULL). */
uint32_t km__policy_tombstone_days(const km__policy *p);

/* Operations a policy may forbid (operations.<name>: false); a key's own
 * policy may forbid more, never re-allow one. Allowed by default. */
#define KM__POLICY_OP_RSA_PKCS1V15_SIGN 0x1u /* operations.rsa-pkcs1v15-sign: KM_SIG_PKCS1 signing */
#define KM__POLICY_OP_AGREE_RAW         0x2u /* operations.agree-raw: km_agree_raw */
/* The KM__POLICY_OP_* bits the policy forbids (0 for NULL). */
uint32_t km__policy_ops_forbidden(const km__policy *p);
/* KM_OK when none of the bits in `op` is in `forbidden` (a mask from
 * km__policy_ops_forbidden(), as the core caches it); else KM_E_POLICY
 * "policy rule operations.<name>: the policy forbids ...". */
int km__policy_op_allowed(uint32_t forbidden, uint32_t op);

#endif /* KM_INT_POLICY_H */
