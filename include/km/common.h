/**
 * @file km/common.h
 * @brief Visibility and attribute macros, library version and initialisation.
 */
#ifndef KM_COMMON_H
#define KM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol exported from libkm (everything else is hidden). */
#if defined(KM_BUILDING_LIBRARY) && defined(__GNUC__)
#define KM_EXTERN __attribute__((visibility("default")))
#else
#define KM_EXTERN
#endif

/** The result of this function must be checked (verify, decrypt, open). */
#if defined(__GNUC__)
#define KM_WUR __attribute__((warn_unused_result))
#else
#define KM_WUR
#endif

/** Version of the headers; compare with km_version() at run time. */
#define KM_VERSION_MAJOR 0
#define KM_VERSION_MINOR 1
#define KM_VERSION_PATCH 0
#define KM_VERSION_STRING "0.1.0"

/**
 * Returns the version string of the linked library ("0.1.0").
 *
 * The string is static; never free it. Thread-safe.
 * kmctl: version.
 */
KM_EXTERN const char *km_version(void);

/**
 * Initialises the library: OpenSSL, the secure heap and the fork handler.
 *
 * Idempotent and thread-safe; every other entry point calls it, so calling
 * it is optional, but calling it once early makes the cost predictable.
 *
 * @return KM_OK, or KM_E_CRYPTO when OpenSSL cannot be initialised, or
 *         KM_E_UNSUPPORTED when the run-time OpenSSL is older than 3.0.12.
 */
KM_EXTERN int km_init(void);

/** km_key_schedules(): keyed AES contexts are kept, in locked, non-dumpable pages. */
#define KM_SCHEDULES_LOCKED 1
/** km_key_schedules(): a context is keyed for each call and wiped after it. */
#define KM_SCHEDULES_PER_CALL 2

/**
 * Says where the key schedules of loaded AES keys live.
 *
 * OpenSSL keeps an AES key schedule (which begins with the raw key) in memory
 * it allocates itself. When libkm is loaded before the process's first OpenSSL
 * allocation, a library constructor installs OpenSSL allocation functions
 * (CRYPTO_set_mem_functions) that hand every allocation to malloc unchanged
 * except those libkm makes while keying a context it keeps: these come from
 * locked pages excluded from core dumps, wiped when freed. The answer is then
 * KM_SCHEDULES_LOCKED, and keyed contexts live as long as the key is loaded.
 *
 * Otherwise (libkm loaded after OpenSSL had allocated, e.g. through dlopen from
 * an interpreter or as an OpenSSL provider; or the environment variable
 * KM_OPENSSL_MEM=off at load, for applications that install their own OpenSSL
 * allocator) the answer is KM_SCHEDULES_PER_CALL: each encryption and
 * decryption keys a fresh context and frees it, so no key schedule outlives
 * a call, at a cost per call (docs/PERFORMANCE.md).
 *
 * libkm.so is linked with -z nodelete: once loaded it stays mapped, so the
 * functions installed in OpenSSL can never point into an unloaded library.
 *
 * @return KM_SCHEDULES_LOCKED or KM_SCHEDULES_PER_CALL.
 */
KM_EXTERN int km_key_schedules(void);

#ifdef __cplusplus
}
#endif
#endif /* KM_COMMON_H */
