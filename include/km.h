/**
 * @file km.h
 * @brief libkm: key management for the whole life of cryptographic keys.
 *
 * @section overview Overview
 *
 * An application opens a *vault* (km_open(); an encrypted LMDB directory),
 * creates or opens *keys* in it (km_key_create(), km_key_open()) and uses them
 * (km_encrypt(), km_decrypt(), km_sign(), km_verify(), km_mac()). Each key has
 * versions; km_key_rotate() adds one and makes it the primary, while the older
 * ones still decrypt and verify what they made. Ciphertexts name their key and
 * version in an authenticated 36-byte header (docs/FORMATS.md), so km_decrypt()
 * needs no key argument.
 *
 * @code
 *   km_open_options o = KM_OPEN_OPTIONS_INIT;
 *   o.flags = KM_OPEN_CREATE;
 *   o.passphrase = (const uint8_t *)"correct horse"; o.passphrase_len = 13;
 *   km_ctx *ctx; km_key *k;
 *   if (km_open(&ctx, "lmdb:/var/lib/app/vault", &o) != KM_OK) fail(km_error_last()->message);
 *   km_key_create(&k, ctx, "orders", KM_KEY_AES_256_GCM, NULL);
 *   uint8_t ct[5 + KM_CIPHERTEXT_OVERHEAD], pt[5]; size_t n;
 *   km_encrypt(k, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &n);
 *   km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &n);
 *   km_key_free(k); km_close(ctx);
 * @endcode
 *
 * Conventions (docs/ARCHITECTURE.md, docs/ABI.md): output parameters come first
 * and are named `out`; `*out` is set to NULL first and written only on
 * success; a `**out` object is freed with its type's `_free`, which accepts
 * NULL; a pointer returned by value is borrowed. Every function returns KM_OK
 * or a negative km_error_code, and km_error_last() says more.
 *
 * @section threads Threads and processes
 * A km_ctx and its km_key handles may be used by many threads at once. Many
 * processes may open one vault. A handle used in a child after fork() fails
 * with KM_E_FORK: open the vault again in the child.
 *
 * @section caveats Caveats
 * - A change made by *another process* (a rotation, a revocation, a policy change) is
 *   seen by this process's open handles within km_open_options::refresh_ms
 *   (100 ms by default), or at once with KM_OPEN_STRICT_REFRESH. Changes made
 *   through the same km_ctx are seen at once.
 * - The passphrase is stretched with scrypt (N = 2^17 by default, ~128 MiB of
 *   memory and a few hundred milliseconds): open a vault once, not per request.
 * - Usage counters are reserved in blocks: after a crash the recorded count
 *   may exceed the real one (never the opposite).
 * - LMDB keeps old copies of overwritten records in free pages until they are
 *   reused; they stay sealed under the master key.
 * - Do not open a vault on a network file system (LMDB's locking needs a local one).
 */
#ifndef KM_H
#define KM_H

#include "km/common.h"
#include "km/error.h"
#include "km/secret.h"
#include "km/vault.h"
#include "km/key.h"
#include "km/crypto.h"
#include "km/lifecycle.h"
#include "km/policy.h"
#include "km/envelope.h"
#include "km/distribute.h"
#include "km/derive.h"
#include "km/audit.h"
#include "km/acl.h"
#include "km/quorum.h"
#include "km/pkcs11.h"

#endif /* KM_H */
