/*
 * provider.c - the km provider's entry point (OSSL_provider_init, the only
 * exported symbol), its configuration, algorithm tables and errors.
 *
 * Configuration, from the provider's openssl.cnf section:
 *   vault = /path/to/vault            (else $KM_VAULT)
 *   passphrase_file = /path/to/file   (one trailing newline stripped; else $KM_PASSPHRASE)
 *   principal = NAME                  (else $KM_PRINCIPAL; the passphrase is then that
 *                                      principal's own credential, and the provider has
 *                                      that principal's rights only; unset: the owner)
 * The passphrase file must be a regular file owned by the process's user, not
 * a symlink, and readable by nobody else (mode 0600 or tighter): anything
 * else is refused, because whoever can read it holds the vault's keys.
 * The vault is opened at the first km: URI, so that loading the provider
 * costs nothing when no key is used.
 */
#include "provider.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define KMP_PASSPHRASE_MAX 1024

/* ------------------------------------------------------------------ errors */

void kmp_error(kmp_prov *p, int reason, const char *fmt, ...)
{
    va_list ap;

    if (p == NULL || p->new_error == NULL || p->vset_error == NULL)
        return;
    p->new_error(p->handle);
    if (p->set_error_debug != NULL)
        p->set_error_debug(p->handle, OPENSSL_FILE, OPENSSL_LINE, "km provider");
    va_start(ap, fmt);
    p->vset_error(p->handle, reason, fmt, ap);
    va_end(ap);
}

void kmp_error_km(kmp_prov *p, int rc, const char *what)
{
    const km_error *e = km_error_last();
    char native[160] = "";

    if (e != NULL && e->native_kind == KM_NATIVE_OPENSSL && e->native != 0) {
        memcpy(native, " (OpenSSL: ", 11);
        ERR_error_string_n(e->native, native + 11, sizeof native - 13);
        strcat(native, ")");
    }
    kmp_error(p, KMP_R_LIBKM, "%s: libkm %s: %s%s", what, km_err_name(rc),
              e != NULL && e->message != NULL && e->message[0] != '\0' ? e->message
                                                                        : km_strerror(rc),
              native);
}

static const OSSL_ITEM reason_strings[] = {
    { KMP_R_LIBKM, "libkm refused or failed" },
    { KMP_R_CONFIG, "km provider configuration" },
    { KMP_R_BAD_URI, "bad km: URI" },
    { KMP_R_UNSUPPORTED, "not supported by libkm" },
    { KMP_R_NO_PRIVATE, "no private key in libkm for this key" },
    { KMP_R_INTERNAL, "km provider internal error" },
    { 0, NULL }
};

/* ------------------------------------------------------------- digests */

const char *kmp_md_canon(const char *name)
{
    static const char *const t[][4] = {
        { "SHA256", "SHA2-256", "SHA-256", "2.16.840.1.101.3.4.2.1" },
        { "SHA384", "SHA2-384", "SHA-384", "2.16.840.1.101.3.4.2.2" },
        { "SHA512", "SHA2-512", "SHA-512", "2.16.840.1.101.3.4.2.3" },
    };
    size_t i, j;

    if (name == NULL)
        return NULL;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        for (j = 0; j < 4; j++)
            if (strcasecmp(name, t[i][j]) == 0)
                return t[i][0];
    return NULL;
}

size_t kmp_md_size(const char *canon)
{
    if (canon == NULL)
        return 0;
    return strcmp(canon, "SHA256") == 0 ? 32 : strcmp(canon, "SHA384") == 0 ? 48 : 64;
}

/* ------------------------------------------------------------- the vault */

/* Reads the passphrase file (one trailing newline stripped) into secure memory. */
static int read_passphrase(kmp_prov *p, km_secret **out, size_t *len)
{
    km_secret *s = NULL;
    FILE *f;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if (p->pass_file == NULL) {
        const char *env = getenv("KM_PASSPHRASE");
        if (env == NULL || env[0] == '\0' || strlen(env) > KMP_PASSPHRASE_MAX) {
            kmp_error(p, KMP_R_CONFIG, "no passphrase: set passphrase_file in the provider's "
                      "openssl.cnf section or KM_PASSPHRASE (1 to %d bytes)", KMP_PASSPHRASE_MAX);
            return 0;
        }
        if ((rc = km_secret_from(out, env, strlen(env))) != KM_OK) {
            kmp_error_km(p, rc, "reading KM_PASSPHRASE");
            return 0;
        }
        *len = strlen(env);
        return 1;
    }
    if ((rc = km_secret_new(&s, KMP_PASSPHRASE_MAX + 2)) != KM_OK) {
        kmp_error_km(p, rc, "passphrase buffer");
        return 0;
    }
    /* no symlink (O_NOFOLLOW), a regular file of ours that nobody else can read */
    {
        struct stat st;
        int fd = open(p->pass_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            kmp_error(p, KMP_R_CONFIG, "passphrase_file '%s': %s", p->pass_file,
                      errno == ELOOP ? "is a symbolic link (refused)" : strerror(errno));
            km_secret_free(s);
            return 0;
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            kmp_error(p, KMP_R_CONFIG, "passphrase_file '%s': not a regular file", p->pass_file);
            close(fd);
            km_secret_free(s);
            return 0;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
            kmp_error(p, KMP_R_CONFIG,
                      "passphrase_file '%s': must be owned by this process's user and readable "
                      "by nobody else (chown it, chmod 600 it)", p->pass_file);
            close(fd);
            km_secret_free(s);
            return 0;
        }
        if ((f = fdopen(fd, "rb")) == NULL) {
            kmp_error(p, KMP_R_CONFIG, "passphrase_file '%s': %s", p->pass_file, strerror(errno));
            close(fd);
            km_secret_free(s);
            return 0;
        }
    }
    setvbuf(f, NULL, _IONBF, 0); /* no copy of the passphrase in a stdio buffer */
    n = fread(km_secret_data(s), 1, KMP_PASSPHRASE_MAX + 1, f);
    fclose(f);
    if (n > 0 && km_secret_data(s)[n - 1] == '\n')
        n--;
    if (n == 0 || n > KMP_PASSPHRASE_MAX) {
        kmp_error(p, KMP_R_CONFIG, "passphrase_file '%s': the passphrase must be 1 to %d bytes",
                  p->pass_file, KMP_PASSPHRASE_MAX);
        km_secret_free(s);
        return 0;
    }
    *out = s;
    *len = n;
    return 1;
}

km_ctx *kmp_vault(kmp_prov *p)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_secret *pass = NULL;
    size_t pass_len = 0;
    km_ctx *v;
    int rc;

    pthread_mutex_lock(&p->lock);
    if ((v = p->vault) != NULL)
        goto out;
    if (p->vault_path == NULL || p->vault_path[0] == '\0') {
        kmp_error(p, KMP_R_CONFIG, "no vault: set vault in the provider's openssl.cnf section "
                  "or KM_VAULT");
        goto out;
    }
    if (strncmp(p->vault_path, "kmd:", 4) == 0 || strncmp(p->vault_path, "kmip://", 7) == 0) {
        /* the key is in kmd (docs/KMD.md): kmd knows this process by its uid
         * (or, kmip://, by the client certificate of $KM_KMD_CERT); no passphrase */
        o.tls_ca = getenv("KM_KMD_CA");
        o.tls_cert = getenv("KM_KMD_CERT");
        o.tls_key = getenv("KM_KMD_KEY");
    } else if (!read_passphrase(p, &pass, &pass_len)) {
        goto out;
    }
    o.passphrase = pass != NULL ? km_secret_data(pass) : NULL;
    o.passphrase_len = pass_len;
    o.principal = p->principal; /* NULL: the owner */
    /* a long-running server sees a suspension or revocation made by kmctl at once */
    o.flags = KM_OPEN_STRICT_REFRESH;
    rc = km_open(&v, p->vault_path, &o);
    km_secret_free(pass);
    if (rc != KM_OK) {
        v = NULL;
        kmp_error_km(p, rc, "opening the vault");
        goto out;
    }
    p->vault = v;
out:
    pthread_mutex_unlock(&p->lock);
    return v;
}

/* ------------------------------------------------------------ algorithms */

#define KMP_PROPS "provider=km"

static const OSSL_ALGORITHM keymgmts[] = {
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", KMP_PROPS, kmp_keymgmt_ec, "libkm EC key" },
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KMP_PROPS, kmp_keymgmt_rsa, "libkm RSA key" },
    { "ED25519:1.3.101.112", KMP_PROPS, kmp_keymgmt_ed25519, "libkm Ed25519 key" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM signatures[] = {
    { "ECDSA", KMP_PROPS, kmp_signature_ecdsa, "ECDSA in libkm" },
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KMP_PROPS, kmp_signature_rsa,
      "RSA-PSS and PKCS#1 v1.5 in libkm" },
    { "ED25519:1.3.101.112", KMP_PROPS, kmp_signature_ed25519, "Ed25519 in libkm" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM asym_ciphers[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KMP_PROPS, kmp_asym_rsa, "RSA-OAEP in libkm" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM stores[] = {
    { "km", KMP_PROPS, kmp_store, "libkm keys by km:NAME[;version=N]" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM *kmp_query(void *provctx, int op, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (op) {
    case OSSL_OP_KEYMGMT:
        return keymgmts;
    case OSSL_OP_SIGNATURE:
        return signatures;
    case OSSL_OP_ASYM_CIPHER:
        return asym_ciphers;
    case OSSL_OP_STORE:
        return stores;
    default:
        return NULL;
    }
}

static const OSSL_PARAM *kmp_gettable_params(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END
    };
    (void)provctx;
    return t;
}

static int kmp_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *q;

    (void)provctx;
    if ((q = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(q, "libkm provider"))
        return 0;
    if ((q = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL
        && !OSSL_PARAM_set_utf8_ptr(q, km_version()))
        return 0;
    if ((q = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL
        && !OSSL_PARAM_set_int(q, 1))
        return 0;
    return 1;
}

static const OSSL_ITEM *kmp_reasons(void *provctx)
{
    (void)provctx;
    return reason_strings;
}

/*
 * TLS groups. libssl enables a group that a provider declares only if a fetch
 * of the group's keymgmt by name ("EC") returns that provider's keymgmt. With
 * this provider loaded before `default`, that fetch returns our "EC" keymgmt,
 * so the default provider's P-256, P-384 and P-521 groups are dropped: TLS 1.3
 * still works (X25519), but a TLS 1.2 server with an ECDSA certificate finds
 * its certificate's curve unsupported and answers "no shared cipher". So we
 * declare the same EC groups; whichever provider's "EC" keymgmt wins the
 * fetch, the groups stay (ECDHE keys made by our keymgmt are ordinary
 * software keys, passed through to the default provider).
 */
struct kmp_group {
    const char *name, *internal;
    unsigned int id, secbits;
};

static const struct kmp_group groups[] = {
    { "secp256r1", "prime256v1", 23, 128 },
    { "secp384r1", "secp384r1", 24, 192 },
    { "secp521r1", "secp521r1", 25, 256 },
    { "P-256", "prime256v1", 23, 128 },
    { "P-384", "secp384r1", 24, 192 },
    { "P-521", "secp521r1", 25, 256 },
};

static int kmp_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
    size_t i;

    (void)provctx;
    if (strcasecmp(capability, "TLS-GROUP") != 0)
        return 0;
    for (i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        unsigned int id = groups[i].id, secbits = groups[i].secbits;
        int mintls = 0x0301 /* TLS 1.0 */, maxtls = 0, mindtls = 0xFEFF /* DTLS 1.0 */, maxdtls = 0;
        char alg[] = "EC";
        OSSL_PARAM p[] = {
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *)(uintptr_t)groups[i].name,
                                   strlen(groups[i].name) + 1),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL,
                                   (char *)(uintptr_t)groups[i].internal,
                                   strlen(groups[i].internal) + 1),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, alg, sizeof alg),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &mintls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &maxtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &mindtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &maxdtls),
            OSSL_PARAM_END
        };
        if (!cb(p, arg))
            return 0;
    }
    return 1;
}

/*
 * Vaults are closed before OPENSSL_cleanup. A provider activated from
 * openssl.cnf is torn down inside OPENSSL_cleanup, while libcrypto's default
 * library context is being destroyed; km_close still uses EVP there (it gives
 * back reserved usage counters) and would wait forever on that context's
 * lock. OPENSSL_cleanup is registered with atexit at libcrypto's first
 * initialisation, before any provider loads; handlers run in reverse order, so
 * ours runs first, with libcrypto intact. (If the module is unloaded earlier,
 * glibc runs the handler at dlclose; teardown has emptied the list by then.)
 */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;
static kmp_prov *live;

static void close_vaults_at_exit(void)
{
    kmp_prov *p;

    pthread_mutex_lock(&live_lock);
    for (p = live; p != NULL; p = p->next) {
        pthread_mutex_lock(&p->lock);
        km_close(p->vault);
        p->vault = NULL;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&live_lock);
}

static void register_at_exit(void)
{
    (void)atexit(close_vaults_at_exit);
}

static void kmp_teardown(void *provctx)
{
    kmp_prov *p = provctx, **pp;

    if (p == NULL)
        return;
    pthread_mutex_lock(&live_lock);
    for (pp = &live; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    km_close(p->vault);
    if (p->deflt != NULL)
        OSSL_PROVIDER_unload(p->deflt);
    OSSL_LIB_CTX_free(p->libctx);
    free(p->vault_path);
    free(p->pass_file);
    free(p->principal);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static const OSSL_DISPATCH kmp_dispatch[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))kmp_teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))kmp_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))kmp_get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))kmp_query },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))kmp_reasons },
    { OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))kmp_capabilities },
    { 0, NULL }
};

/* Copies a configuration value, or the environment variable, or NULL. */
static char *conf_or_env(const char *conf, const char *env)
{
    const char *v = conf != NULL && conf[0] != '\0' ? conf : env != NULL ? getenv(env) : NULL;
    return v != NULL && v[0] != '\0' ? strdup(v) : NULL;
}

/* The only exported symbol (the link exports nothing else). */
__attribute__((visibility("default")))
OSSL_provider_init_fn OSSL_provider_init;

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    OSSL_FUNC_core_get_params_fn *get_params = NULL;
    char *vault = NULL, *pass_file = NULL, *principal = NULL;
    kmp_prov *p;

    *provctx = NULL;
    if (km_init() != KM_OK)
        return 0;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return 0;
    p->handle = handle;
    pthread_mutex_init(&p->lock, NULL);
    for (; in != NULL && in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            get_params = OSSL_FUNC_core_get_params(in);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            p->new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            p->set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            p->vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
    if (get_params != NULL) {
        OSSL_PARAM q[4];
        q[0] = OSSL_PARAM_construct_utf8_ptr("vault", &vault, 0);
        q[1] = OSSL_PARAM_construct_utf8_ptr("passphrase_file", &pass_file, 0);
        q[2] = OSSL_PARAM_construct_utf8_ptr("principal", &principal, 0);
        q[3] = OSSL_PARAM_construct_end();
        if (!get_params(handle, q)) {
            vault = NULL;
            pass_file = NULL;
            principal = NULL;
        }
    }
    p->vault_path = conf_or_env(vault, "KM_VAULT");
    p->pass_file = conf_or_env(pass_file, NULL);
    p->principal = conf_or_env(principal, "KM_PRINCIPAL");
    /* the private library context: public-key work and hashing, never the app's */
    if ((p->libctx = OSSL_LIB_CTX_new()) == NULL
        || (p->deflt = OSSL_PROVIDER_load(p->libctx, "default")) == NULL) {
        kmp_teardown(p);
        return 0;
    }
    pthread_once(&live_once, register_at_exit);
    pthread_mutex_lock(&live_lock);
    p->next = live;
    live = p;
    pthread_mutex_unlock(&live_lock);
    *provctx = p;
    *out = kmp_dispatch;
    return 1;
}
