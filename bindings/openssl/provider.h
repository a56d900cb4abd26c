/*
 * provider.h - the km OpenSSL 3 provider: what its files share.
 *
 * One file per operation, as OpenSSL's own providers are laid out:
 * provider.c (entry point, configuration, errors), keymgmt.c (the key
 * object), store.c (the km: URI loader), signature.c, asymcipher.c.
 * Private keys stay in libkm: a key object holds a km_key handle for the
 * private operations and a public EVP_PKEY (in the provider's own library
 * context) for everything public.
 */
#ifndef KMP_PROVIDER_H
#define KMP_PROVIDER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include <km.h>

/* The provider instance (the provctx OpenSSL hands to every call). */
typedef struct kmp_prov {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;      /* private: public-key work, hashing; never the app's */
    OSSL_PROVIDER *deflt;      /* the default provider, loaded in libctx */
    pthread_mutex_t lock;      /* guards the lazy vault open */
    km_ctx *vault;             /* opened at the first km: URI */
    char *vault_path;          /* openssl.cnf `vault`, else $KM_VAULT */
    char *pass_file;           /* openssl.cnf `passphrase_file`, else $KM_PASSPHRASE */
    char *principal;           /* openssl.cnf `principal`, else $KM_PRINCIPAL; NULL: owner */
    struct kmp_prov *next;     /* the list of live instances (closed at exit) */
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;
} kmp_prov;

/* A key: private operations through libkm, public ones through `pub`. */
typedef struct kmp_key {
    kmp_prov *prov;
    km_key *key;               /* NULL: a public key imported into this provider */
    km_key_type type;
    uint32_t version;          /* the version whose public key `pub` is (pinned) */
    EVP_PKEY *pub;             /* public key in prov->libctx (a whole key, see below) */
    int has_pub, has_priv;     /* what `pub` holds (has_priv: never for a libkm key) */
    int refs;                  /* atomic; dup shares a libkm key object */
} kmp_key;

/*
 * A key without a libkm handle is an ordinary software key that OpenSSL made
 * with this provider's keymgmt (generation, import, a peer's public key):
 * OpenSSL picks the first provider loaded for a plain "EC" or "RSA" fetch, so
 * with `-provider km -provider default` every such key of the process lands
 * here. Those keys are passed through to the default provider in our library
 * context, private parts included: they are not libkm's keys.
 */

/* Reason codes of the errors the provider raises (shown by ERR_print_errors). */
#define KMP_R_LIBKM        1  /* a libkm call failed: the message is libkm's own */
#define KMP_R_CONFIG       2  /* no vault, no passphrase, unreadable file */
#define KMP_R_BAD_URI      3
#define KMP_R_UNSUPPORTED  4  /* an algorithm, padding or digest libkm does not do */
#define KMP_R_NO_PRIVATE   5  /* a public-only key asked to sign or decrypt */
#define KMP_R_INTERNAL     6

/* provider.c */
void kmp_error(kmp_prov *p, int reason, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Raises libkm's last error (km_error_last) prefixed by `what`. */
void kmp_error_km(kmp_prov *p, int rc, const char *what);
/* The vault, opened on first use; NULL after raising an error. */
km_ctx *kmp_vault(kmp_prov *p);
/* "SHA2-256", "sha256", "SHA-256" -> "SHA256" (and 384, 512); NULL if not one of them. */
const char *kmp_md_canon(const char *name);
size_t kmp_md_size(const char *canon);

/* keymgmt.c */
kmp_key *kmp_key_new(kmp_prov *p);
void kmp_key_free(kmp_key *k);
/* A key object for an open km_key (taken on success) and one version (0 = primary). */
int kmp_key_from_km(kmp_prov *p, km_key *key, uint32_t version, kmp_key **out);
const char *kmp_key_type_name(km_key_type t); /* "EC", "RSA", "ED25519", or NULL */
int kmp_is_rsa(km_key_type t);
int kmp_is_ec(km_key_type t);

extern const OSSL_DISPATCH kmp_keymgmt_ec[];
extern const OSSL_DISPATCH kmp_keymgmt_rsa[];
extern const OSSL_DISPATCH kmp_keymgmt_ed25519[];
extern const OSSL_DISPATCH kmp_store[];
extern const OSSL_DISPATCH kmp_signature_ecdsa[];
extern const OSSL_DISPATCH kmp_signature_rsa[];
extern const OSSL_DISPATCH kmp_signature_ed25519[];
extern const OSSL_DISPATCH kmp_asym_rsa[];

#endif /* KMP_PROVIDER_H */
