/*
 * p11_card.c - the p11-kit side of libkm's use of pkcs11-helper: which module
 * pkcs11-helper is given, the public API of km/pkcs11.h (discovery, PIN
 * callback and cache, card keys), the raw layer's PIN hook, and the
 * "pkcs11-card" backend, whose keys are certificate-bound private keys of a
 * token (smart cards) named by a serialised certificate id.
 *
 * Sharing one module with the raw layer (PLATFORM.md): pkcs11h_terminate()
 * calls C_Finalize on every provider it initialised. So, for as long as
 * pkcs11-helper is in use, this file holds its own p11-kit initialisation of
 * the module (p11_kit_module_load + p11_kit_module_initialize: p11-kit counts
 * initialisations), taken before pkcs11-helper loads anything, and hands
 * pkcs11-helper p11-kit's proxy module when the module is registered with
 * p11-kit and enabled in the proxy: the proxy's C_Finalize then only drops
 * p11-kit's count. A module p11-kit does not know is handed over by path: it
 * is already initialised (by the hold), so pkcs11-helper's C_Initialize gets
 * CKR_CRYPTOKI_ALREADY_INITIALIZED and pkcs11-helper never finalises it.
 * Either way the raw layer's sessions survive pkcs11-helper's terminate.
 *
 * Through the proxy pkcs11-helper also sees the other registered modules'
 * tokens: discovery keeps only the tokens this module shows.
 *
 * Includes <p11-kit/...> and never pkcs11-helper's headers (p11_helper.h has
 * no PKCS#11 types).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include "core.h"
#include "p11_helper.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#define REF_MAGIC0 'C'
#define REF_MAGIC1 '1'
#define CERT_ID_MAX 4096

/* ------------------------------------------------------------- the hold */

struct hold {
    CK_FUNCTION_LIST *fl;       /* our own p11-kit initialisation of the module */
};

/* The proxy module next to the libp11-kit we are linked with. */
static char proxy[PATH_MAX];
static void proxy_find(void)
{
    Dl_info di;
    char *slash;

    snprintf(proxy, sizeof proxy, "p11-kit-proxy.so");
    if (dladdr((void *)(uintptr_t)p11_kit_module_load, &di) == 0 || di.dli_fname == NULL
        || strlen(di.dli_fname) + 20 >= sizeof proxy)
        return;
    snprintf(proxy, sizeof proxy, "%s", di.dli_fname);
    slash = strrchr(proxy, '/');
    if (slash != NULL)
        snprintf(slash + 1, sizeof proxy - (size_t)(slash + 1 - proxy), "p11-kit-proxy.so");
    if (slash == NULL || access(proxy, R_OK) != 0)
        snprintf(proxy, sizeof proxy, "p11-kit-proxy.so");
}

static const char *proxy_path(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    (void)pthread_once(&once, proxy_find);
    return proxy;
}

/* 1 when p11-kit's configuration registers `module` (same file) and lets the
 * proxy load it. */
static int in_proxy(const char *module)
{
    static pthread_mutex_t cmu = PTHREAD_MUTEX_INITIALIZER;
    static char last[PATH_MAX];
    static int last_answer = -1;
    CK_FUNCTION_LIST **mods;
    char want[PATH_MAX], have[PATH_MAX], *fn, *en, *dis;
    int answer = 0, i;

    if (realpath(module, want) == NULL)
        return 0;
    pthread_mutex_lock(&cmu);
    if (last_answer >= 0 && strcmp(last, want) == 0) {
        answer = last_answer;
        pthread_mutex_unlock(&cmu);
        return answer;
    }
    mods = p11_kit_modules_load(NULL, 0);
    for (i = 0; mods != NULL && mods[i] != NULL && !answer; i++) {
        fn = p11_kit_module_get_filename(mods[i]);
        if (fn != NULL && realpath(fn, have) != NULL && strcmp(have, want) == 0) {
            en = p11_kit_config_option(mods[i], "enable-in");
            dis = p11_kit_config_option(mods[i], "disable-in");
            answer = (en == NULL || strstr(en, "p11-kit-proxy") != NULL)
                     && (dis == NULL || strstr(dis, "p11-kit-proxy") == NULL);
            free(en);
            free(dis);
        }
        free(fn);
    }
    if (mods != NULL)
        p11_kit_modules_release(mods);
    snprintf(last, sizeof last, "%s", want);
    last_answer = answer;
    pthread_mutex_unlock(&cmu);
    return answer;
}

static int hold_open(struct hold *h, const char *module)
{
    CK_RV rv;
    int rc;

    h->fl = NULL;
    if (module == NULL || *module == '\0')
        return km__err(KM_E_INVALID, "pkcs11: no module path");
    h->fl = p11_kit_module_load(module, 0);
    if (h->fl == NULL)
        return km__err(KM_E_BACKEND, "pkcs11: cannot load the module %s", module);
    rv = p11_kit_module_initialize(h->fl);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        p11_kit_module_release(h->fl);
        h->fl = NULL;
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_PKCS11, (unsigned long)rv,
                                "pkcs11: initialising the module failed (0x%lx)",
                                (unsigned long)rv);
    }
    rc = km__p11h_get(in_proxy(module) ? proxy_path() : module);
    if (rc != KM_OK) {
        (void)p11_kit_module_finalize(h->fl);
        p11_kit_module_release(h->fl);
        h->fl = NULL;
    }
    return rc;
}

static void hold_close(struct hold *h)
{
    if (h->fl == NULL)
        return;
    km__p11h_put();               /* pkcs11h_terminate first, then our finalise */
    (void)p11_kit_module_finalize(h->fl);
    p11_kit_module_release(h->fl);
    h->fl = NULL;
}

/* ------------------------------------------------------------ discovery */

struct km_pkcs11_list {
    km__p11h_item *items;
    size_t n;
};

static void trim(char *dst, size_t cap, const CK_UTF8CHAR *src, size_t len)
{
    while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\0'))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* 1 when the module itself shows an initialised token with these fields
 * (a free slot's blank token is not listed). */
static int module_has(CK_FUNCTION_LIST *fl, const km__p11h_item *it)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64, i;
    CK_TOKEN_INFO ti;
    char l[33], m[33], mo[17], s[17];

    if (fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 0;
    for (i = 0; i < n; i++) {
        if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        trim(l, sizeof l, ti.label, sizeof ti.label);
        trim(m, sizeof m, ti.manufacturerID, sizeof ti.manufacturerID);
        trim(mo, sizeof mo, ti.model, sizeof ti.model);
        trim(s, sizeof s, ti.serialNumber, sizeof ti.serialNumber);
        if (strcmp(l, it->token_label) == 0 && strcmp(m, it->manufacturer) == 0
            && strcmp(mo, it->model) == 0 && strcmp(s, it->serial) == 0)
            return 1;
    }
    return 0;
}

static int list_make(km_pkcs11_list **out, const char *module, int certs)
{
    struct hold h;
    km_pkcs11_list *l;
    km__p11h_item *items = NULL;
    size_t n = 0, i, k;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_%s: out is NULL", certs ? "certificates" : "tokens");
    *out = NULL;
    if (module == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_%s: module is NULL",
                       certs ? "certificates" : "tokens");
    if ((rc = km_init()) != KM_OK)
        return rc;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return km__err(KM_E_NOMEM, "km_pkcs11: out of memory");
    if ((rc = hold_open(&h, module)) != KM_OK) {
        free(l);
        return rc;
    }
    rc = km__p11h_list(certs, &items, &n);
    if (rc == KM_OK) {
        /* keep this module's tokens only (the proxy shows every registered module's) */
        for (i = 0, k = 0; i < n; i++) {
            if (module_has(h.fl, &items[i])) {
                items[k++] = items[i];
            } else {
                free(items[i].id);
                free(items[i].label);
            }
        }
        l->items = items;
        l->n = k;
    }
    hold_close(&h);
    if (rc != KM_OK) {
        free(l);
        return rc;
    }
    *out = l;
    return KM_OK;
}

int km_pkcs11_tokens(km_pkcs11_list **out, const char *module)
{
    return list_make(out, module, 0);
}

int km_pkcs11_certificates(km_pkcs11_list **out, const char *module)
{
    return list_make(out, module, 1);
}

size_t km_pkcs11_list_count(const km_pkcs11_list *list)
{
    return list != NULL ? list->n : 0;
}

const char *km_pkcs11_list_get(const km_pkcs11_list *list, size_t index, km_pkcs11_field field)
{
    const km__p11h_item *it;

    if (list == NULL || index >= list->n)
        return NULL;
    it = &list->items[index];
    switch (field) {
    case KM_PKCS11_ID: return it->id;
    case KM_PKCS11_LABEL: return it->label;
    case KM_PKCS11_MANUFACTURER: return it->manufacturer;
    case KM_PKCS11_MODEL: return it->model;
    case KM_PKCS11_SERIAL: return it->serial;
    case KM_PKCS11_TOKEN_LABEL: return it->token_label;
    default: return NULL;
    }
}

void km_pkcs11_list_free(km_pkcs11_list *list)
{
    if (list == NULL)
        return;
    km__p11h_items_free(list->items, list->n);
    free(list);
}

/* ----------------------------------------------------------------- PINs */

int km_pkcs11_set_pin_callback(km_pkcs11_pin_fn fn, void *arg)
{
    km__p11h_set_pin_callback(fn, arg);
    return KM_OK;
}

int km_pkcs11_set_pin_cache(int seconds)
{
    if (seconds < -1 || seconds > 86400 * 366)
        return km__err(KM_E_INVALID, "km_pkcs11_set_pin_cache: seconds must be -1, 0 or up to "
                       "one year");
    km__p11h_set_cache_period(seconds);
    return KM_OK;
}

int km_pkcs11_pin_cache_clear(void)
{
    km__p11h_forget();
    return KM_OK;
}

/* The raw layer's hook (p11_conn.c): a session of `fl` on `slot` is not
 * logged in and no PIN is configured. */
int km__p11card_login(void *function_list, unsigned long slot)
{
    CK_FUNCTION_LIST *fl = function_list;
    CK_TOKEN_INFO ti;
    struct hold h;
    char *module;
    CK_RV rv;
    int rc;

    rv = fl->C_GetTokenInfo((CK_SLOT_ID)slot, &ti);
    if (rv != CKR_OK)
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_PKCS11, (unsigned long)rv,
                                "pkcs11: C_GetTokenInfo failed (0x%lx)", (unsigned long)rv);
    module = km__p11h_has_pin_callback() ? p11_kit_module_get_filename(fl) : NULL;
    if (module == NULL)
        return km_backend_error(KM_E_AUTH, KM_NATIVE_PKCS11,
                                (unsigned long)CKR_USER_NOT_LOGGED_IN,
                                "pkcs11: the token needs a PIN and none is configured "
                                "(pin=, KM_PKCS11_PIN or km_pkcs11_set_pin_callback)");
    rc = hold_open(&h, module);
    free(module);
    if (rc != KM_OK)
        return rc;
    rc = km__p11h_login(ti.label, ti.manufacturerID, ti.model, ti.serialNumber);
    hold_close(&h);
    if (rc == KM_E_AUTH && km_error_last()->native == (unsigned long)CKR_CANCEL)
        rc = km_backend_error(KM_E_AUTH, KM_NATIVE_PKCS11, (unsigned long)CKR_CANCEL,
                              "pkcs11: the token needs a PIN: none is configured (pin=, "
                              "KM_PKCS11_PIN) and the PIN callback gave none");
    return rc;
}

/* ------------------------------------------------- the pkcs11-card backend */

struct card_be {
    struct hold h;
};

struct card_obj {
    km__p11h_cert *cert;
    EVP_PKEY *pub;
    km_key_type type;
    const char *md;          /* digest signed */
    size_t field;            /* EC: bytes of r and of s */
    size_t bits;             /* RSA */
};

static int card_open(void **out_state, const char *config)
{
    struct card_be *b;
    const char *module;
    char *buf, *semi;
    int rc;

    *out_state = NULL;
    if (config == NULL || strncmp(config, "module=", 7) != 0)
        return km__err(KM_E_INVALID, "pkcs11-card: the configuration is module=PATH "
                       "(km_vault_backend_set(ctx, \"pkcs11-card\", ...))");
    if ((buf = strdup(config + 7)) == NULL)
        return km__err(KM_E_NOMEM, "pkcs11-card: out of memory");
    if ((semi = strchr(buf, ';')) != NULL) {
        if (semi[1] != '\0') {
            free(buf);
            return km__err(KM_E_INVALID, "pkcs11-card: unknown configuration item (want module=)");
        }
        *semi = '\0';
    }
    module = buf;
    if ((b = calloc(1, sizeof *b)) == NULL) {
        free(buf);
        return km__err(KM_E_NOMEM, "pkcs11-card: out of memory");
    }
    rc = hold_open(&b->h, module);
    free(buf);
    if (rc != KM_OK) {
        free(b);
        return rc;
    }
    *out_state = b;
    return KM_OK;
}

static void card_close(void *state)
{
    struct card_be *b = state;

    if (b == NULL)
        return;
    hold_close(&b->h);
    free(b);
}

static int card_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    (void)state;
    (void)spec;
    if (out_ref != NULL)
        *out_ref = NULL;
    return km__err(KM_E_UNSUPPORTED, "pkcs11-card keys are linked from a token "
                   "(km_pkcs11_key_link), never generated or rotated");
}

/* The key type of a certificate's public key. */
static int cert_type(const uint8_t *der, size_t der_len, EVP_PKEY **pub, km_key_type *type)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    char group[64];
    int bits;

    *pub = NULL;
    if (x == NULL || p != der + der_len)
        goto bad;
    if ((*pub = X509_get_pubkey(x)) == NULL)
        goto bad;
    X509_free(x);
    x = NULL;
    bits = EVP_PKEY_get_bits(*pub);
    if (EVP_PKEY_is_a(*pub, "EC")
        && EVP_PKEY_get_group_name(*pub, group, sizeof group, NULL) == 1) {
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
            *type = KM_KEY_EC_P256;
            return KM_OK;
        }
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
            *type = KM_KEY_EC_P384;
            return KM_OK;
        }
    } else if (EVP_PKEY_is_a(*pub, "RSA") && (bits == 2048 || bits == 3072)) {
        *type = bits == 2048 ? KM_KEY_RSA_2048 : KM_KEY_RSA_3072;
        return KM_OK;
    }
    EVP_PKEY_free(*pub);
    *pub = NULL;
    return km__err(KM_E_UNSUPPORTED, "pkcs11-card: the certificate's key is not ec-p256, "
                   "ec-p384, rsa-2048 or rsa-3072");
bad:
    X509_free(x);
    EVP_PKEY_free(*pub);
    *pub = NULL;
    return km__err_ossl(KM_E_CORRUPT, "pkcs11-card: the token's certificate does not decode");
}

/* What a card key does. RSA decryption (OAEP-SHA-256, libkm's km_rsa_decrypt)
 * is not offered: SoftHSM2 does OAEP with SHA-1 only, so it could not be
 * tested against a real token here. */
static uint32_t card_usage(km_key_type t)
{
    (void)t;
    return KM_USAGE_SIGN | KM_USAGE_VERIFY;
}

static void card_unload(void *state, void *obj)
{
    struct card_obj *o = obj;

    (void)state;
    if (o == NULL)
        return;
    km__p11h_cert_close(o->cert);
    EVP_PKEY_free(o->pub);
    free(o);
}

/* Opens the certificate `id` (id_len bytes, no NUL) as a key of `type`. */
static int card_obj_open(const char *id, size_t id_len, km_key_type want, struct card_obj **out)
{
    struct card_obj *o;
    char *s = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    km_key_type have;
    int rc;

    *out = NULL;
    if (id_len == 0 || id_len > CERT_ID_MAX || memchr(id, '\0', id_len) != NULL)
        return km__err(KM_E_INVALID, "pkcs11-card: not a serialised certificate id");
    if ((o = calloc(1, sizeof *o)) == NULL || (s = malloc(id_len + 1)) == NULL) {
        free(o);
        return km__err(KM_E_NOMEM, "pkcs11-card: out of memory");
    }
    memcpy(s, id, id_len);
    s[id_len] = '\0';
    rc = km__p11h_cert_open(&o->cert, s, &der, &der_len);
    free(s);
    if (rc == KM_OK)
        rc = cert_type(der, der_len, &o->pub, &have);
    free(der);
    if (rc == KM_OK && have != want)
        rc = km__err(KM_E_INVALID, "pkcs11-card: the certificate's key is a %s, not a %s",
                     km_key_type_name(have), km_key_type_name(want));
    if (rc != KM_OK) {
        card_unload(NULL, o);
        return rc;
    }
    o->type = have;
    switch (have) {
    case KM_KEY_EC_P256: o->md = "SHA256"; o->field = 32; break;
    case KM_KEY_EC_P384: o->md = "SHA384"; o->field = 48; break;
    case KM_KEY_RSA_2048: o->md = "SHA256"; o->bits = 2048; break;
    default: o->md = "SHA256"; o->bits = 3072; break;
    }
    *out = o;
    return KM_OK;
}

static int card_import(void *state, const km_backend_keyspec *spec, km_material_format format,
                       const uint8_t *material, size_t material_len, km_secret **out_ref)
{
    struct card_obj *o = NULL;
    uint8_t *r;
    int rc;

    if (out_ref == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card import: out_ref is NULL");
    *out_ref = NULL;
    if (state == NULL || spec == NULL || material == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card import: NULL argument");
    if (format != KM_MATERIAL_RAW)
        return km__err(KM_E_INVALID, "pkcs11-card: a card key is linked by its serialised "
                       "certificate id (km_pkcs11_key_link), never imported as material");
    if (spec->usage & ~card_usage(spec->type))
        return km__err(KM_E_INVALID, "pkcs11-card: a card key signs and verifies only");
    if (spec->flags & KM_KEY_EXPORTABLE)
        return km__err(KM_E_INVALID, "pkcs11-card: a card key is never exportable");
    if ((rc = card_obj_open((const char *)material, material_len, spec->type, &o)) != KM_OK)
        return rc;
    card_unload(state, o);
    if ((rc = km_secret_new(out_ref, 3 + material_len)) != KM_OK)
        return rc;
    r = km_secret_data(*out_ref);
    r[0] = REF_MAGIC0;
    r[1] = REF_MAGIC1;
    r[2] = (uint8_t)spec->type;
    memcpy(r + 3, material, material_len);
    return KM_OK;
}

static int card_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                     size_t ref_len, void **out_obj)
{
    struct card_obj *o = NULL;
    int rc;

    if (out_obj == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card load: out_obj is NULL");
    *out_obj = NULL;
    if (state == NULL || spec == NULL || ref == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card load: NULL argument");
    if (ref_len < 4 || ref[0] != REF_MAGIC0 || ref[1] != REF_MAGIC1
        || ref[2] != (uint8_t)spec->type)
        return km__err(KM_E_CORRUPT, "pkcs11-card load: not a card key reference of this type");
    if ((rc = card_obj_open((const char *)ref + 3, ref_len - 3, spec->type, &o)) != KM_OK)
        return rc;
    *out_obj = o;
    return KM_OK;
}

static int card_destroy(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                        size_t ref_len)
{
    (void)state;
    (void)spec;
    (void)ref;
    (void)ref_len;
    return KM_OK;   /* the key is the card owner's: only the vault's link goes */
}

static int card_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
                     size_t sig_cap, size_t *sig_len)
{
    struct card_obj *o = obj;
    uint8_t digest[EVP_MAX_MD_SIZE], raw[512], one = 0;
    unsigned int dlen = 0;
    size_t need, n = sizeof raw;
    int rc;
    int ec;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card sign: sig_len is NULL");
    *sig_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "pkcs11-card sign: NULL argument");
    ec = o->field > 0;
    if ((flags & ~KM_SIG_P1363) || ((flags & KM_SIG_P1363) && !ec))
        return km__err(KM_E_INVALID, "pkcs11-card sign: bad flags for a %s key",
                       km_key_type_name(o->type));
    need = !ec ? o->bits / 8 : (flags & KM_SIG_P1363) ? 2 * o->field
                                                      : (size_t)EVP_PKEY_get_size(o->pub);
    if (sig == NULL || sig_cap < need) {
        *sig_len = need;
        return km__err(KM_E_BUFFER, "signature needs %zu bytes", need);
    }
    if (EVP_Digest(msg != NULL ? msg : &one, msg_len, digest, &dlen,
                   EVP_get_digestbyname(o->md), NULL) != 1)
        return km__err_ossl(KM_E_CRYPTO, "pkcs11-card sign: digest failed");
    rc = km__p11h_cert_op(o->cert, ec ? KM__P11H_ECDSA : KM__P11H_RSA_PSS_SHA256, digest, dlen,
                          raw, &n);
    if (rc != KM_OK)
        return rc;
    if (!ec || (flags & KM_SIG_P1363)) {
        if (n != need)
            return km__err(KM_E_BACKEND, "pkcs11-card sign: the token returned %zu bytes, "
                           "not %zu", n, need);
        memcpy(sig, raw, need);
        *sig_len = need;
        return KM_OK;
    }
    if (n != 2 * o->field)
        return km__err(KM_E_BACKEND, "pkcs11-card sign: the token returned %zu bytes, not %zu",
                       n, 2 * o->field);
    if (km__ecdsa_raw_to_der(raw, o->field, sig, sig_cap, sig_len) != KM_OK)
        return km__err_ossl(KM_E_CRYPTO, "pkcs11-card sign: cannot encode the ECDSA signature");
    return KM_OK;
}

static int card_verify(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                       const uint8_t *sig, size_t sig_len)
{
    struct card_obj *o = obj;
    EVP_MD_CTX *m = NULL;
    EVP_PKEY_CTX *pc = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    uint8_t der[160], one = 0;
    unsigned char *p = der;
    int rc, n, ec;

    if (o == NULL || (msg == NULL && msg_len > 0) || (sig == NULL && sig_len > 0))
        return km__err(KM_E_INVALID, "pkcs11-card verify: NULL argument");
    ec = o->field > 0;
    if ((flags & ~KM_SIG_P1363) || ((flags & KM_SIG_P1363) && !ec))
        return km__err(KM_E_INVALID, "pkcs11-card verify: bad flags");
    if (sig_len == 0 || sig_len > 1024)
        return km__err(KM_E_VERIFY, "signature does not verify (bad length)");
    if (flags & KM_SIG_P1363) {
        if (sig_len != 2 * o->field)
            return km__err(KM_E_VERIFY, "P1363 signature must be %zu bytes", 2 * o->field);
        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, (int)o->field, NULL);
        s = BN_bin2bn(sig + o->field, (int)o->field, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            rc = km__err_ossl(KM_E_NOMEM, "pkcs11-card verify: out of memory");
            goto out;
        }
        r = s = NULL;
        n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || (size_t)n > sizeof der || i2d_ECDSA_SIG(es, &p) != n) {
            rc = km__err_ossl(KM_E_VERIFY, "signature does not verify");
            goto out;
        }
        sig = der;
        sig_len = (size_t)n;
    }
    if ((m = EVP_MD_CTX_new()) == NULL
        || EVP_DigestVerifyInit_ex(m, &pc, o->md, NULL, NULL, o->pub, NULL) != 1
        || (!ec && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) <= 0
                    || EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) <= 0
                    || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) <= 0))) {
        rc = km__err_ossl(KM_E_CRYPTO, "pkcs11-card verify: cannot set up verification");
        goto out;
    }
    if (EVP_DigestVerify(m, sig, sig_len, msg != NULL ? msg : &one, msg_len) == 1)
        rc = KM_OK;
    else
        rc = km__err_ossl(KM_E_VERIFY, "signature does not verify");
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(m);
    return rc;
}

static int card_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    struct card_obj *o = obj;
    unsigned char *p = out;
    int n;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card public_key: out_len is NULL");
    *out_len = 0;
    if (o == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card public_key: obj is NULL");
    n = i2d_PUBKEY(o->pub, NULL);
    if (n <= 0)
        return km__err_ossl(KM_E_CRYPTO, "cannot encode the public key");
    if (out == NULL || out_cap < (size_t)n) {
        *out_len = (size_t)n;
        return km__err(KM_E_BUFFER, "public key needs %d bytes", n);
    }
    if (i2d_PUBKEY(o->pub, &p) != n)
        return km__err_ossl(KM_E_CRYPTO, "cannot encode the public key");
    *out_len = (size_t)n;
    return KM_OK;
}

const km_backend_ops km__pkcs11_card_backend = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "pkcs11-card",
    .caps = KM_BACKEND_CAP_ASYMMETRIC | KM_BACKEND_CAP_IMPORT,
    .open = card_open,
    .close = card_close,
    .generate = card_generate,
    .import = card_import,
    .destroy = card_destroy,
    .load = card_load,
    .unload = card_unload,
    .sign = card_sign,
    .verify = card_verify,
    .public_key = card_public_key,
};

/* --------------------------------------------------------------- linking */

int km_pkcs11_key_link(km_key **out, km_ctx *ctx, const char *name, const char *cert_id,
                       const km_key_options *opts)
{
    km__backend_inst *be = NULL;
    km_key_options o2 = KM_KEY_OPTIONS_INIT;
    km_key_type type;
    size_t len;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || name == NULL || cert_id == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_key_link: %s is NULL",
                       ctx == NULL ? "ctx" : name == NULL ? "name" : "cert_id");
    len = strnlen(cert_id, CERT_ID_MAX + 1);
    if (len == 0 || len > CERT_ID_MAX)
        return km__err(KM_E_INVALID, "km_pkcs11_key_link: cert_id must be 1 to %d bytes",
                       CERT_ID_MAX);
    if (opts != NULL) {
        if (opts->version == 0 || opts->version > KM_KEY_OPTIONS_VERSION)
            return km__err(KM_E_INVALID, "km_pkcs11_key_link: opts->version must be 1 to %d",
                           KM_KEY_OPTIONS_VERSION);
        o2.usage = opts->usage;
        o2.flags = opts->flags;
        if (opts->version >= 2) {
            o2.activate_at = opts->activate_at;
            o2.rotate_days = opts->rotate_days;
            o2.protect_days = opts->protect_days;
            o2.process_days = opts->process_days;
            o2.destroy_grace_days = opts->destroy_grace_days;
        }
        if (opts->version >= 3)
            o2.policy = opts->policy;
        if (opts->version >= 4)
            o2.key_id = opts->key_id;
        if (o2.rotate_days != 0)
            return km__err(KM_E_INVALID, "km_pkcs11_key_link: a card key does not rotate "
                           "(rotate_days must be 0)");
    }
    /* refused callers touch no token */
    if ((rc = km__ctx_check(ctx)) != KM_OK
        || (rc = km__acl_check(ctx, KM__OP_KEY_IMPORT, NULL)) != KM_OK
        || (rc = km__backend_get(ctx, "pkcs11-card", &be)) != KM_OK)
        return rc;
    /* the type comes from the certificate on the token */
    {
        uint8_t *der = NULL;
        size_t der_len = 0;
        EVP_PKEY *pub = NULL;
        km__p11h_cert *c = NULL;

        rc = km__p11h_cert_open(&c, cert_id, &der, &der_len);
        if (rc == KM_OK)
            rc = cert_type(der, der_len, &pub, &type);
        EVP_PKEY_free(pub);
        free(der);
        km__p11h_cert_close(c);
        if (rc != KM_OK)
            return rc;
    }
    o2.protection = "pkcs11-card";
    if (o2.usage == 0)
        o2.usage = card_usage(type);
    o2.flags &= ~KM_KEY_EXPORTABLE;
    /* no material enters the vault: the reference only (unwrapped = 1: not a
     * raw import under dual control) */
    return km__key_import(out, ctx, name, type, KM_MATERIAL_RAW, (const uint8_t *)cert_id, len,
                          KM_IMPORT_ALLOW_RAW, &o2, 1);
}
