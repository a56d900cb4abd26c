/*
 * p11_card.c - the p11-kit side of libkm's use of pkcs11-helper: which module
 * pkcs11-helper is given, what km/pkcs11.h's functions (src/pkcs11.c, the API
 * layer) need of the backend (discovery, PIN callback and cache, the key type
 * of a certificate: p11_card.h), the raw layer's PIN hook, and the
 * "pkcs11-card" backend, whose keys are certificate-bound private keys of a
 * token (smart cards) named by a serialised certificate id. Software crypto
 * (digests, the certificate's public key, verification, export) comes from
 * the primitives (prim.h); nothing of the core is used here.
 *
 * Sharing one module with the raw layer (docs/PLATFORM.md): pkcs11h_terminate()
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
#include "km_int.h"
#include "keytype.h"
#include "p11_card.h"
#include "p11_helper.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#define REF_MAGIC0 'C'
#define REF_MAGIC1 '1'
#define CERT_ID_MAX KM__P11CARD_ID_MAX

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

int km__p11card_list(km_pkcs11_list **out, const char *module, int certs)
{
    struct hold h;
    km_pkcs11_list *l;
    km__p11h_item *items = NULL;
    size_t n = 0, i, k;
    int rc;

    *out = NULL;
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

size_t km__p11card_list_count(const km_pkcs11_list *list)
{
    return list != NULL ? list->n : 0;
}

const char *km__p11card_list_get(const km_pkcs11_list *list, size_t index,
                                 km_pkcs11_field field)
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

void km__p11card_list_free(km_pkcs11_list *list)
{
    if (list == NULL)
        return;
    km__p11h_items_free(list->items, list->n);
    free(list);
}

/* ----------------------------------------------------------------- PINs */

void km__p11card_set_pin_callback(km_pkcs11_pin_fn fn, void *arg)
{
    km__p11h_set_pin_callback(fn, arg);
}

void km__p11card_set_pin_cache(int seconds)
{
    km__p11h_set_cache_period(seconds);
}

void km__p11card_pin_cache_clear(void)
{
    km__p11h_forget();
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
    km__pkey *pub;
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

/* The key type of a certificate's public key (*pub: that key). */
static int cert_type(const uint8_t *der, size_t der_len, km__pkey **pub, km_key_type *type)
{
    const km__keytype *kt;
    char names[128];
    int rc;

    *pub = NULL;
    if ((rc = km__pkey_from_cert(pub, der, der_len)) != KM_OK) {
        const km_error *e = km_error_last();   /* keep the primitive's OpenSSL code */
        return km_backend_error(rc, e->native_kind, e->native,
                                "pkcs11-card: the token's certificate does not decode");
    }
    /* the types a card's key may have: KM__KT_PKCS11_CARD in the key-type table */
    for (kt = km__keytype_next(NULL); kt != NULL; kt = km__keytype_next(kt)) {
        if (!(kt->backends & KM__KT_PKCS11_CARD))
            continue;
        if (kt->family == KM__FAM_ECDSA ? km__pkey_is_ec(*pub, kt->group)
            : kt->family == KM__FAM_RSA && km__pkey_is_rsa(*pub, (int)kt->bits)) {
            *type = kt->id;
            return KM_OK;
        }
    }
    km__pkey_free(*pub);
    *pub = NULL;
    return km__err(KM_E_UNSUPPORTED, "pkcs11-card: the certificate's key is not one of %s",
                   km__keytype_names(names, sizeof names, KM__KT_PKCS11_CARD));
}

int km__p11card_cert_type(const char *cert_id, km_key_type *type)
{
    uint8_t *der = NULL;
    size_t der_len = 0;
    km__pkey *pub = NULL;
    km__p11h_cert *c = NULL;
    int rc;

    rc = km__p11h_cert_open(&c, cert_id, &der, &der_len);
    if (rc == KM_OK)
        rc = cert_type(der, der_len, &pub, type);
    km__pkey_free(pub);
    free(der);
    km__p11h_cert_close(c);
    return rc;
}

/* What a card key does. RSA decryption (OAEP-SHA-256, libkm's km_rsa_decrypt)
 * is not offered: SoftHSM2 does OAEP with SHA-1 only, so it could not be
 * tested against a real token here. */
uint32_t km__p11card_usage(km_key_type t)
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
    km__pkey_free(o->pub);
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
    {
        const km__keytype *kt = km__keytype_get((int)have);   /* cert_type() gave a type */
        o->md = kt->md;
        o->field = kt->field;                                 /* ECDSA; 0 for RSA */
        o->bits = kt->family == KM__FAM_RSA ? kt->bits : 0;
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
    if (spec->usage & ~km__p11card_usage(spec->type))
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
    uint8_t digest[64], raw[512];
    size_t need, n = sizeof raw, dlen = 0;
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
                                                      : km__pkey_size(o->pub);
    if (sig == NULL || sig_cap < need) {
        *sig_len = need;
        return km__err(KM_E_BUFFER, "signature needs %zu bytes", need);
    }
    if ((rc = km__digest(o->md, msg, msg_len, digest, sizeof digest, &dlen)) != KM_OK)
        return rc;
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
    int ec;

    if (o == NULL || (msg == NULL && msg_len > 0) || (sig == NULL && sig_len > 0))
        return km__err(KM_E_INVALID, "pkcs11-card verify: NULL argument");
    ec = o->field > 0;
    if ((flags & ~KM_SIG_P1363) || ((flags & KM_SIG_P1363) && !ec))
        return km__err(KM_E_INVALID, "pkcs11-card verify: bad flags");
    /* public-key work in software (prim.h), on the certificate's key */
    return km__pkey_verify(o->pub, o->md, flags, msg, msg_len, sig, sig_len);
}

static int card_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    struct card_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card public_key: out_len is NULL");
    *out_len = 0;
    if (o == NULL)
        return km__err(KM_E_INVALID, "pkcs11-card public_key: obj is NULL");
    return km__pkey_spki(o->pub, out, out_cap, out_len);
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
