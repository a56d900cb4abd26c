/**
 * @file km/error.h
 * @brief Error codes, their names and messages, and the per-thread last error.
 *
 * Every libkm function that can fail returns an `int`: KM_OK (0) on success
 * or one of the negative codes below. Codes are append-only: a code keeps its
 * number forever and is never reused.
 */
#ifndef KM_ERROR_H
#define KM_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The error list: X(NAME, value, "message"). Append only; never renumber.
 * It generates the enum, km_strerror() and km_err_name().
 */
#define KM_ERROR_LIST(X)                                                        \
    X(KM_OK,            0,  "success")                                          \
    X(KM_E_INVALID,    -1,  "invalid argument")                                 \
    X(KM_E_UNSUPPORTED,-2,  "operation or algorithm not supported")             \
    X(KM_E_NOMEM,      -3,  "out of memory")                                    \
    X(KM_E_NOTFOUND,   -4,  "not found")                                        \
    X(KM_E_EXISTS,     -5,  "already exists")                                   \
    X(KM_E_AUTH,       -6,  "authentication failed (wrong passphrase or credential)") \
    X(KM_E_INTEGRITY,  -7,  "integrity check failed (data altered, wrong key or wrong aad)") \
    X(KM_E_VERIFY,     -8,  "signature or MAC does not verify")                \
    X(KM_E_STATE,      -9,  "key state does not allow this operation")         \
    X(KM_E_USAGE,      -10, "key usage does not allow this operation")         \
    X(KM_E_POLICY,     -11, "refused by policy")                               \
    X(KM_E_DENIED,     -12, "access denied")                                   \
    X(KM_E_LIMIT,      -13, "usage limit reached")                             \
    X(KM_E_BUFFER,     -14, "output buffer too small")                         \
    X(KM_E_CORRUPT,    -15, "vault record failed to open (altered, moved or corrupt)") \
    X(KM_E_IO,         -16, "storage I/O error")                               \
    X(KM_E_FULL,       -17, "vault storage is full")                           \
    X(KM_E_BACKEND,    -18, "key backend failed")                              \
    X(KM_E_CRYPTO,     -19, "cryptographic library failed")                    \
    X(KM_E_FORK,       -20, "handle used in a forked child process")           \
    X(KM_E_BUSY,       -21, "resource busy")                                   \
    X(KM_E_INTERNAL,   -22, "internal error")

/** libkm error codes (negative), KM_OK on success. */
typedef enum km_error_code {
#define KM_X_ENUM_(name, value, msg) name = value,
    KM_ERROR_LIST(KM_X_ENUM_)
#undef KM_X_ENUM_
    KM_E__LAST = -22 /**< the most negative code in this version */
} km_error_code;

/** Kind of native code carried in km_error::native. */
typedef enum km_native_kind {
    KM_NATIVE_NONE = 0,    /**< no native code */
    KM_NATIVE_ERRNO = 1,   /**< errno value */
    KM_NATIVE_LMDB = 2,    /**< LMDB return code (MDB_*) */
    KM_NATIVE_OPENSSL = 3, /**< ERR_get_error() packed code */
    KM_NATIVE_PKCS11 = 4,  /**< CK_RV */
    KM_NATIVE_TSS2 = 5,    /**< TSS2_RC */
    KM_NATIVE_KMIP = 6     /**< KMIP Result Reason of a failed operation */
} km_native_kind;

/** The last error of the calling thread. All fields are read-only. */
typedef struct km_error {
    int code;                /**< the km_error_code returned */
    const char *message;     /**< one line naming what failed; never secrets */
    km_native_kind native_kind; /**< what `native` is */
    unsigned long native;    /**< the backend's own code (CK_RV, TSS2_RC, MDB rc) */
} km_error;

/**
 * Returns the static message of an error code ("KM_E_INVALID: invalid argument").
 *
 * Never NULL; an unknown code gives "unknown error". Thread-safe.
 */
KM_EXTERN const char *km_strerror(int code);

/**
 * Returns the name of an error code ("KM_E_INVALID"), or "KM_E_UNKNOWN".
 *
 * The string is static. Thread-safe.
 */
KM_EXTERN const char *km_err_name(int code);

/**
 * Returns the calling thread's last error.
 *
 * Never NULL; when no error was recorded, `code` is KM_OK and `message` is
 * "no error". The pointer stays valid until the thread's next libkm call.
 * A successful call does not clear it; use km_error_clear().
 */
KM_EXTERN const km_error *km_error_last(void);

/** Clears the calling thread's last error. */
KM_EXTERN void km_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif /* KM_ERROR_H */
