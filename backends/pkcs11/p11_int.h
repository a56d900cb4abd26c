/*
 * p11_int.h - the thin raw PKCS#11 layer of the pkcs11 backend: one module
 * loaded through p11-kit, one token found by its RFC 7512 URI, a small pool
 * of logged-in sessions, and CK_RV -> km error mapping. Internal, not installed.
 *
 * Include only <p11-kit/pkcs11.h> here: pkcs11-helper's headers bring another
 * pkcs11.h with the same include guard (docs/PLATFORM.md).
 */
#ifndef KM_P11_INT_H
#define KM_P11_INT_H

#include <pthread.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#define KM__P11_POOL_MAX 8
#define KM__P11_PIN_MAX 256

/* One open token (per vault backend instance). */
typedef struct km__p11 {
    CK_FUNCTION_LIST *fl;        /* the module, loaded and initialised through p11-kit */
    P11KitUri *uri;              /* the token URI */
    char *pin;                   /* secure memory, KM__P11_PIN_MAX + 1 bytes; "" = none */
    pthread_mutex_t mu;          /* guards everything below */
    int slot_ok;                 /* 0: find the slot again before the next session */
    int reinit;                  /* 1: finalise and initialise the module again first */
    pid_t pid;                   /* the process that initialised the module (fork check) */
    CK_SLOT_ID slot;
    uint8_t serial[16];          /* the token's serial (blank-padded), as in the references */
    CK_SESSION_HANDLE idle[KM__P11_POOL_MAX];
    size_t n_idle;
} km__p11;

/* Maps a CK_RV to a km code and records it with what failed; returns the km code.
 * `rv` must not be CKR_OK. */
int km__p11_fail(CK_RV rv, const char *what);

/* Loads and initialises the module, parses the URI, finds the token, opens a
 * first session and logs in. PIN: `pin` or, when NULL, $KM_PKCS11_PIN. */
int km__p11_open(km__p11 **out, const char *module, const char *uri, const char *pin);
void km__p11_close(km__p11 *p);

/* Takes a logged-in read-write session (from the pool or a new one). */
int km__p11_session_get(km__p11 *p, CK_SESSION_HANDLE *out);
/* Gives a session back; `rv` is the last result on it: on any failure the
 * session is closed instead, and on a device failure the slot is searched
 * again before the next session. */
void km__p11_session_put(km__p11 *p, CK_SESSION_HANDLE s, CK_RV rv);

/* 1 when `rv` says the session or the object handle is stale (re-find once). */
int km__p11_rv_stale(CK_RV rv);

/* Finds the objects with this CKA_ID (and class, or any class with
 * class == (CK_ULONG)-1). Writes up to `cap` handles; *n the count. */
CK_RV km__p11_find(km__p11 *p, CK_SESSION_HANDLE s, const uint8_t id[16], CK_ULONG cls,
                   CK_OBJECT_HANDLE *out, CK_ULONG cap, CK_ULONG *n);

#endif
