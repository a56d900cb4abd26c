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

#ifdef __cplusplus
}
#endif
#endif /* KM_COMMON_H */
