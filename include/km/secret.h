/**
 * @file km/secret.h
 * @brief Secure memory: secrets handed to callers, constant-time compare, wiping.
 *
 * A km_secret holds secret bytes (a data key, an exported key) in memory that
 * is locked (mlock), excluded from core dumps (MADV_DONTDUMP) and fenced by
 * guard pages. km_secret_free() wipes it before release.
 */
#ifndef KM_SECRET_H
#define KM_SECRET_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque secret buffer in secure memory. */
typedef struct km_secret km_secret;

/**
 * Allocates a zero-filled secret of `len` bytes.
 *
 * @param[out] out  set to the new secret, or NULL on error; free with km_secret_free().
 * @param[in]  len  1 to 16 MiB.
 * @return KM_OK; KM_E_INVALID when out is NULL or len is 0 or too large;
 *         KM_E_NOMEM when the pages cannot be mapped.
 * Thread-safe.
 */
KM_EXTERN int km_secret_new(km_secret **out, size_t len);

/**
 * Allocates a secret holding a copy of `len` bytes at `data`.
 *
 * The caller still owns and should wipe `data`.
 * @return as km_secret_new(); KM_E_INVALID also when data is NULL.
 */
KM_EXTERN int km_secret_from(km_secret **out, const void *data, size_t len);

/** Returns the secret's bytes (writable), or NULL for a NULL secret. Borrowed. */
KM_EXTERN unsigned char *km_secret_data(const km_secret *s);

/** Returns the secret's length in bytes, 0 for a NULL secret. */
KM_EXTERN size_t km_secret_len(const km_secret *s);

/** Wipes and releases a secret. Accepts NULL. */
KM_EXTERN void km_secret_free(km_secret *s);

/**
 * Compares two buffers in time that depends only on `len`.
 *
 * @return 1 when equal, 0 otherwise (also when a or b is NULL and len > 0).
 */
KM_EXTERN int km_ct_equal(const void *a, const void *b, size_t len) KM_WUR;

/** Overwrites `len` bytes at `p` with zeros in a way the compiler cannot drop. */
KM_EXTERN void km_memzero(void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* KM_SECRET_H */
