/*
 * keymgmt.c - the key object of the km provider (EC, RSA, Ed25519).
 *
 * A key object holds the libkm key handle and the public key of one pinned
 * version, as an EVP_PKEY in the provider's private library context. Only
 * the public part is ever exported (get_params, export), so OpenSSL can
 * build certificates and check that a certificate matches the key; the
 * private key stays in libkm.
 */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/x509.h>

/* The family of a libkm key type, from its public name (km_key_type_name):
 * "rsa-<bits>", "ec-<curve>", "ed25519". */
static int name_has_prefix(km_key_type t, const char *prefix)
{
    const char *n = km_key_type_name(t);
    return n != NULL && strncmp(n, prefix, strlen(prefix)) == 0;
}

int kmp_is_rsa(km_key_type t)
{
    return name_has_prefix(t, "rsa-");
}

int kmp_is_ec(km_key_type t)
{
    return name_has_prefix(t, "ec-");
}

const char *kmp_key_type_name(km_key_type t)
{
    const char *n = km_key_type_name(t);

    if (kmp_is_ec(t))
        return "EC";
    if (kmp_is_rsa(t))
        return "RSA";
    if (n != NULL && strcmp(n, "ed25519") == 0)
        return "ED25519";
    return NULL;
}

kmp_key *kmp_key_new(kmp_prov *p)
{
    kmp_key *k = calloc(1, sizeof *k);

    if (k == NULL)
        return NULL;
    k->prov = p;
    k->refs = 1;
    return k;
}

void kmp_key_free(kmp_key *k)
{
    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    km_key_free(k->key);
    EVP_PKEY_free(k->pub);
    free(k);
}

int kmp_key_from_km(kmp_prov *p, km_key *key, uint32_t version, kmp_key **out)
{
    km_key_type t = km_key_get_type(key);
    km_keyinfo *info = NULL;
    uint8_t der[4096];
    const unsigned char *dp = der;
    size_t len = 0;
    kmp_key *k;
    int rc;

    *out = NULL;
    if (kmp_key_type_name(t) == NULL) {
        kmp_error(p, KMP_R_UNSUPPORTED, "key '%s' is a %s key: the provider uses EC, RSA and "
                  "Ed25519 keys", km_key_name(key), km_key_type_name(t));
        return 0;
    }
    if (version == 0) {
        /* the primary; with none (a suspended key) the newest, so that a use is
         * refused by libkm with its reason rather than the load failing */
        if ((rc = km_key_info(&info, key)) != KM_OK) {
            kmp_error_km(p, rc, "reading the key's metadata");
            return 0;
        }
        version = km_keyinfo_primary(info);
        if (version == 0)
            version = km_keyinfo_version_count(info);
        km_keyinfo_free(info);
    }
    if ((rc = km_key_public_export(key, version, KM_MATERIAL_SPKI_DER, der, sizeof der, &len))
        != KM_OK) {
        kmp_error_km(p, rc, "exporting the public key");
        return 0;
    }
    if ((k = kmp_key_new(p)) == NULL)
        return 0;
    k->pub = d2i_PUBKEY_ex(NULL, &dp, (long)len, p->libctx, NULL);
    if (k->pub == NULL) {
        kmp_error(p, KMP_R_INTERNAL, "libkm's public key does not parse");
        kmp_key_free(k);
        return 0;
    }
    k->key = key;
    k->has_pub = 1;
    k->type = t;
    k->version = version;
    *out = k;
    return 1;
}

/* ---------------------------------------------------------------- keymgmt */

static void *km_new(void *provctx)
{
    return kmp_key_new(provctx);
}

static void km_free(void *keydata)
{
    kmp_key_free(keydata);
}

/* The reference from our store: the address of a key object, detached here. */
static void *km_load(const void *reference, size_t reference_sz)
{
    kmp_key *k = NULL;

    if (reference == NULL || reference_sz != sizeof k)
        return NULL;
    memcpy(&k, reference, sizeof k);
    memset((void *)(uintptr_t)reference, 0, sizeof k); /* ownership moves to the caller */
    return k;
}

static int km_has(const void *keydata, int selection)
{
    const kmp_key *k = keydata;

    if (k == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->key == NULL && !k->has_priv)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && !k->has_pub)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) && k->pub == NULL)
        return 0;
    return 1;
}

static int km_match(const void *a, const void *b, int selection)
{
    const kmp_key *x = a, *y = b;

    if (x == NULL || y == NULL || x->pub == NULL || y->pub == NULL)
        return 0;
    if (!(selection & OSSL_KEYMGMT_SELECT_KEYPAIR))
        return EVP_PKEY_parameters_eq(x->pub, y->pub) == 1;
    /* a libkm private key is its public key's twin */
    return EVP_PKEY_eq(x->pub, y->pub) == 1;
}

static int evp_selection(int selection)
{
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        return EVP_PKEY_KEYPAIR;
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        return EVP_PKEY_PUBLIC_KEY;
    return EVP_PKEY_KEY_PARAMETERS;
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[], const char *type)
{
    kmp_key *k = keydata;
    EVP_PKEY_CTX *c;
    EVP_PKEY *pk = NULL;
    int ok, sel = evp_selection(selection);

    if (k == NULL || k->key != NULL || k->pub != NULL)
        return 0;
    c = EVP_PKEY_CTX_new_from_name(k->prov->libctx, type, NULL);
    ok = c != NULL && EVP_PKEY_fromdata_init(c) == 1
         && EVP_PKEY_fromdata(c, &pk, sel, (OSSL_PARAM *)(uintptr_t)params) == 1;
    EVP_PKEY_CTX_free(c);
    if (!ok)
        return 0;
    k->pub = pk;
    k->has_pub = sel != EVP_PKEY_KEY_PARAMETERS
                 && OSSL_PARAM_locate_const(params, strcmp(type, "RSA") == 0 ? OSSL_PKEY_PARAM_RSA_N
                                                    : OSSL_PKEY_PARAM_PUB_KEY) != NULL;
    k->has_priv = sel == EVP_PKEY_KEYPAIR
                  && OSSL_PARAM_locate_const(params, strcmp(type, "RSA") == 0 ? OSSL_PKEY_PARAM_RSA_D
                                                     : OSSL_PKEY_PARAM_PRIV_KEY) != NULL;
    if (k->has_priv && !k->has_pub && strcmp(type, "RSA") != 0) {
        /* an EC or Ed25519 private key alone: the default provider derives the public one */
        size_t n = 0;
        k->has_pub = EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, NULL, 0, &n) == 1;
    }
    return 1;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    kmp_key *k = keydata;
    OSSL_PARAM *params = NULL;
    int ok, sel;

    if (k == NULL || k->pub == NULL)
        return 0;
    if (k->key != NULL) {
        /*
         * A libkm key: the public part only, and only when no private part is
         * asked for. Refusing OSSL_KEYMGMT_SELECT_ALL matters: libcrypto
         * exports a key with it to the provider of an operation it fetched by
         * name (with another provider loaded first, the default provider's
         * ECDSA) and, if the export succeeds, runs that provider's operation on
         * a key that has no private half ("missing private key" in TLS 1.2's
         * ServerKeyExchange). A refusal makes it use this provider's operation.
         */
        if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
            return 0;
        if (!(selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)))
            return 0;
        sel = EVP_PKEY_PUBLIC_KEY;
    } else {
        sel = evp_selection(selection);
        if (sel == EVP_PKEY_KEYPAIR && !k->has_priv)
            sel = k->has_pub ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
        else if (sel == EVP_PKEY_PUBLIC_KEY && !k->has_pub)
            sel = EVP_PKEY_KEY_PARAMETERS;
    }
    if (EVP_PKEY_todata(k->pub, sel, &params) != 1)
        return 0;
    ok = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    kmp_key *k = keydata;

    if (k == NULL || k->pub == NULL)
        return 0;
    /* what the default provider says of the same key */
    return EVP_PKEY_get_params(k->pub, params);
}

static int km_set_params(void *keydata, const OSSL_PARAM params[])
{
    kmp_key *k = keydata;

    if (k == NULL || k->pub == NULL || k->key != NULL)
        return k != NULL && k->key != NULL && params != NULL && params[0].key == NULL;
    if (EVP_PKEY_set_params(k->pub, (OSSL_PARAM *)(uintptr_t)params) != 1)
        return 0;
    if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY) != NULL)
        k->has_pub = 1;
    return 1;
}

static const OSSL_PARAM *km_settable(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_END
    };
    (void)provctx;
    return t;
}

static void *km_dup(const void *keydata, int selection)
{
    const kmp_key *k = keydata;
    kmp_key *d;

    (void)selection;
    if (k == NULL)
        return NULL;
    if (k->key != NULL) {
        /* immutable: shared */
        __atomic_add_fetch(&((kmp_key *)(uintptr_t)k)->refs, 1, __ATOMIC_ACQ_REL);
        return (void *)(uintptr_t)k;
    }
    if ((d = kmp_key_new(k->prov)) == NULL)
        return NULL;
    if (k->pub != NULL && (d->pub = EVP_PKEY_dup(k->pub)) == NULL) {
        kmp_key_free(d);
        return NULL;
    }
    d->has_pub = k->has_pub;
    d->has_priv = k->has_priv;
    return d;
}

/* ------------------------------------------- generation (pass-through) */

typedef struct {
    kmp_prov *prov;
    EVP_PKEY_CTX *c;
    int selection;
} kmp_gen;

static void *km_gen_init(void *provctx, int selection, const OSSL_PARAM params[], const char *type)
{
    kmp_prov *p = provctx;
    kmp_gen *g = calloc(1, sizeof *g);

    if (g == NULL)
        return NULL;
    g->prov = p;
    g->selection = selection;
    g->c = EVP_PKEY_CTX_new_from_name(p->libctx, type, NULL);
    if (g->c == NULL
        || ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) ? EVP_PKEY_keygen_init(g->c)
                                                       : EVP_PKEY_paramgen_init(g->c)) != 1
        || (params != NULL && EVP_PKEY_CTX_set_params(g->c, params) != 1)) {
        EVP_PKEY_CTX_free(g->c);
        free(g);
        return NULL;
    }
    return g;
}

static int km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    kmp_gen *g = genctx;
    return params == NULL || EVP_PKEY_CTX_set_params(g->c, params) == 1;
}

static const OSSL_PARAM *km_gen_settable(void *genctx, void *provctx)
{
    kmp_gen *g = genctx;
    (void)provctx;
    return g != NULL ? EVP_PKEY_CTX_settable_params(g->c) : NULL;
}

static int km_gen_set_template(void *genctx, void *templ)
{
    kmp_gen *g = genctx;
    kmp_key *t = templ;
    OSSL_PARAM *params = NULL;
    int ok;

    if (t == NULL || t->pub == NULL)
        return 0;
    if (EVP_PKEY_todata(t->pub, EVP_PKEY_KEY_PARAMETERS, &params) != 1)
        return 0;
    ok = EVP_PKEY_CTX_set_params(g->c, params) == 1;
    OSSL_PARAM_free(params);
    return ok;
}

static void *km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    kmp_gen *g = genctx;
    EVP_PKEY *pk = NULL;
    kmp_key *k;

    (void)cb;
    (void)cbarg;
    if (EVP_PKEY_generate(g->c, &pk) != 1)
        return NULL;
    if ((k = kmp_key_new(g->prov)) == NULL) {
        EVP_PKEY_free(pk);
        return NULL;
    }
    k->pub = pk;
    k->has_pub = k->has_priv = (g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
    return k;
}

static void km_gen_cleanup(void *genctx)
{
    kmp_gen *g = genctx;

    if (g == NULL)
        return;
    EVP_PKEY_CTX_free(g->c);
    free(g);
}

/* ---------------------------------------------------------- per type */

static const OSSL_PARAM ec_import_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM rsa_import_types[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_D, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_FACTOR1, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_FACTOR2, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_EXPONENT1, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_EXPONENT2, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_COEFFICIENT1, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM ed_import_types[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM ec_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_X, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_Y, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM ed_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END
};

static int ec_import(void *k, int sel, const OSSL_PARAM p[]) { return km_import(k, sel, p, "EC"); }
static int rsa_import(void *k, int sel, const OSSL_PARAM p[]) { return km_import(k, sel, p, "RSA"); }
static int ed_import(void *k, int sel, const OSSL_PARAM p[]) { return km_import(k, sel, p, "ED25519"); }

static void *ec_gen_init(void *pc, int sel, const OSSL_PARAM p[]) { return km_gen_init(pc, sel, p, "EC"); }
static void *rsa_gen_init(void *pc, int sel, const OSSL_PARAM p[]) { return km_gen_init(pc, sel, p, "RSA"); }
static void *ed_gen_init(void *pc, int sel, const OSSL_PARAM p[]) { return km_gen_init(pc, sel, p, "ED25519"); }

static const OSSL_PARAM *ec_itypes(int sel) { (void)sel; return ec_import_types; }
static const OSSL_PARAM *rsa_itypes(int sel) { (void)sel; return rsa_import_types; }
static const OSSL_PARAM *ed_itypes(int sel) { (void)sel; return ed_import_types; }

static const OSSL_PARAM *ec_gettable_fn(void *provctx) { (void)provctx; return ec_gettable; }
static const OSSL_PARAM *rsa_gettable_fn(void *provctx) { (void)provctx; return rsa_gettable; }
static const OSSL_PARAM *ed_gettable_fn(void *provctx) { (void)provctx; return ed_gettable; }

static const char *ec_opname(int op)
{
    /* ECDH: the default provider's, for ECDHE keys made here (no libkm key agrees here) */
    return op == OSSL_OP_SIGNATURE ? "ECDSA" : op == OSSL_OP_KEYEXCH ? "ECDH" : NULL;
}

static const char *rsa_opname(int op)
{
    return op == OSSL_OP_SIGNATURE || op == OSSL_OP_ASYM_CIPHER ? "RSA" : NULL;
}

static const char *ed_opname(int op)
{
    return op == OSSL_OP_SIGNATURE ? "ED25519" : NULL;
}

#define KMP_KEYMGMT(prefix)                                                                     \
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new },                                          \
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free },                                        \
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))km_load },                                        \
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has },                                          \
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match },                                      \
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))prefix##_import },                              \
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))prefix##_itypes },                        \
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export },                                    \
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))prefix##_itypes },                        \
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params },                            \
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))prefix##_gettable_fn },                \
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))prefix##_opname },                \
    { OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))km_dup },                                          \
    { OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))km_set_params },                            \
    { OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))km_settable },                         \
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))prefix##_gen_init },                          \
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))km_gen_set_params },                    \
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))km_gen_settable },                 \
    { OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))km_gen_set_template },                \
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))km_gen },                                          \
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))km_gen_cleanup },                          \
    { 0, NULL }

const OSSL_DISPATCH kmp_keymgmt_ec[] = { KMP_KEYMGMT(ec) };
const OSSL_DISPATCH kmp_keymgmt_rsa[] = { KMP_KEYMGMT(rsa) };
const OSSL_DISPATCH kmp_keymgmt_ed25519[] = { KMP_KEYMGMT(ed) };
