/*
 * vault_int.h - shared inside the API layer: the master-key change of
 * vault.c, used by km_vault_rekey and by km_principal_remove's rotation
 * (acl.c). Nothing outside src/api/ includes it.
 */
#ifndef KM_API_VAULT_INT_H
#define KM_API_VAULT_INT_H

#include "core.h"

/* A new master key for ctx's vault in one write transaction: pre(pre_arg, t,
 * old sealer) first (NULL: the rekey's approved request consumed), every
 * sealed record resealed, then the keyslots: with a passphrase, replaced by
 * one slot for it; with passphrase NULL (a rotation), every key-pair slot
 * re-wrapped (km__slots_rewrap: KM_E_STATE naming a slot of the older form).
 * Device slots are re-sealed by their devices where they can be. One audit
 * entry of `op` (detail: a rotation's start of its detail, read after pre
 * ran). The caller has checked its rights. Then ctx uses the new key. */
int km__ctx_rekey(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                  uint32_t kdf_cost, int op, km__txn_hook pre, void *pre_arg,
                  const char *detail);

#endif /* KM_API_VAULT_INT_H */
