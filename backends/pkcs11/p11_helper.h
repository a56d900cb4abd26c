/*
 * p11_helper.h - the one internal interface to pkcs11-helper (p11_helper.c is
 * the only file that includes its headers): token discovery with serialisable
 * token ids, the application's PIN prompt with retry counts and PIN caching,
 * fork fix-up, and signing with certificate-bound private keys (smart cards). No PKCS#11 type appears here, so that files on the p11-kit side
 * (<p11-kit/pkcs11.h>) can include it: the two pkcs11.h share one include
 * guard (docs/PLATFORM.md).
 *
 * pkcs11-helper is process-global. Users take a reference with
 * km__p11h_get(), naming the provider location to load, and drop it with
 * km__p11h_put(); the last put terminates pkcs11-helper. The caller (p11_card.c)
 * keeps its own p11-kit initialisation of the module for as long as it holds a
 * reference, and hands pkcs11-helper p11-kit's proxy when the module is
 * registered with p11-kit: pkcs11h_terminate()'s C_Finalize then never
 * finalises the module under the raw layer's sessions.
 */
#ifndef KM_P11_HELPER_H
#define KM_P11_HELPER_H

#include <stddef.h>
#include <stdint.h>

#include "km/pkcs11.h"

/* Takes a reference on pkcs11-helper, initialising it (and its PIN hook) on
 * the first one, and adds the provider at `location` unless it is there.
 * In a child after fork() it runs pkcs11h_forkFixup() first. */
int km__p11h_get(const char *location);
/* Drops a reference; the last one calls pkcs11h_terminate(). */
void km__p11h_put(void);

/* A token or a certificate as discovered (plain strings, NUL-terminated). */
typedef struct km__p11h_item {
    char *id;             /* serialised token id or certificate id (malloc'ed) */
    char *label;          /* token label, or the certificate's display name */
    char manufacturer[33];
    char model[17];
    char serial[17];
    char token_label[33];
} km__p11h_item;

/* Lists the tokens (certs == 0) or the end-entity certificates (certs == 1)
 * that pkcs11-helper sees. *out is a malloc'ed array of *n items. Needs a
 * reference (km__p11h_get). */
int km__p11h_list(int certs, km__p11h_item **out, size_t *n);
void km__p11h_items_free(km__p11h_item *items, size_t n);

/* Logs the token whose token info fields are given (blank-padded fixed
 * fields as in CK_TOKEN_INFO, copied and trimmed here) in, prompting the
 * application's PIN callback (km_pkcs11_set_pin_callback) with the token
 * label and a retry count. KM_E_AUTH when cancelled, when no callback is set,
 * or when the token refused every PIN offered. Needs a reference. */
int km__p11h_login(const uint8_t label[32], const uint8_t manufacturer[32],
                   const uint8_t model[16], const uint8_t serial[16]);

/* A certificate-bound private key, opened from a serialised certificate id. */
typedef struct km__p11h_cert km__p11h_cert;

/* Opens the certificate (the object is found now; no PIN yet) and gives its
 * DER encoding in a malloc'ed buffer (*der, *der_len). Needs a reference,
 * which the handle does not take: close it before the put. */
int km__p11h_cert_open(km__p11h_cert **out, const char *cert_id, uint8_t **der,
                       size_t *der_len);
void km__p11h_cert_close(km__p11h_cert *c);

/* Mechanisms of the private-key operations (no CK_MECHANISM here). */
enum km__p11h_mech {
    KM__P11H_ECDSA = 1,        /* CKM_ECDSA on a digest: raw r || s */
    KM__P11H_RSA_PSS_SHA256,   /* CKM_RSA_PKCS_PSS, SHA-256, MGF1-SHA-256, salt 32 */
    KM__P11H_RSA_PSS_SHA384    /* CKM_RSA_PKCS_PSS, SHA-384, MGF1-SHA-384, salt 48 */
};

/* Signs a digest with the key,
 * prompting for the PIN when the token needs one and none is cached.
 * *out_len: capacity in, bytes written out. */
int km__p11h_cert_op(km__p11h_cert *c, enum km__p11h_mech mech, const uint8_t *in,
                     size_t in_len, uint8_t *out, size_t *out_len);

/* Sets the PIN cache period in seconds (-1 = until km_pkcs11_pin_cache_clear). */
void km__p11h_set_cache_period(int seconds);
/* The current PIN cache period. */
int km__p11h_cache_period(void);
/* Forgets every cached PIN (logs pkcs11-helper's sessions out). */
void km__p11h_forget(void);
/* The application's PIN callback as set with km_pkcs11_set_pin_callback. */
void km__p11h_set_pin_callback(km_pkcs11_pin_fn fn, void *arg);
/* 1 when a PIN callback is set. */
int km__p11h_has_pin_callback(void);

#endif
