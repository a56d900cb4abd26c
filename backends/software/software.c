/*
 * software.c - the "software" backend: key material held by libkm itself and
 * used through OpenSSL 3 EVP. The only file that calls EVP for software keys.
 *
 * A software reference (km_int.h) is [1 byte km_material_format][bytes]:
 *   RAW        AES and HMAC key bytes
 *   PKCS8_DER  an asymmetric private key (PrivateKeyInfo, re-encoded by us)
 *   SPKI_DER   a public-only key (SubjectPublicKeyInfo)
 * References are secrets: they live in km_secret (secure memory) only.
 *
 * A loaded object keeps what each call needs ready: AES-GCM, HMAC and
 * AES-KWP objects a km__skey (src/prim/prim_keyed.c: pools of keyed cipher or MAC
 * contexts, the key schedule done once; the TPM backend uses the same for its
 * unsealed keys); asymmetric objects an EVP_PKEY, verified and exported
 * through the primitives (src/prim/prim_pkey.c) as the device backends do.
 * Objects are used by many threads at once; unload is called when no call is
 * in flight.
 */
#include "km_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------- key types */

/* The key types are the table of keytype.h (name, family, sizes, usages);
 * what is OpenSSL's own is here: the EVP key type name of a family. */
static const char *ossl_keytype(const km__keytype *ti)
{
    switch (ti->family) {
    case KM__FAM_ECDSA: return "EC";
    case KM__FAM_EDDSA: return "ED25519";
    case KM__FAM_X25519: return "X25519";
    case KM__FAM_RSA: return "RSA";
    case KM__FAM_FFDHE: return "DH";
    default: return NULL;
    }
}

/* HMAC keys imported raw may be 14 (112 bits, SP 800-131A) to 1024 bytes. */
#define KM__HMAC_KEY_MIN 14
#define KM__HMAC_KEY_MAX 1024
/* RSA-PSS salt length. */
#define KM__PSS_SALT 32
/* Largest signature: RSA-4096. Largest DER ECDSA signature (P-521) is 139. */
#define KM__SIG_BUF 512
/* Largest encoded key accepted (RSA-4096 PKCS#8 is about 2.4 KiB). */
#define KM__MATERIAL_MAX ((size_t)1 << 16)

/* ----------------------------------------------------------- loaded objects */

typedef struct sw_obj {
    const km__keytype *ti;
    km_key_type type;
    int public_only;       /* no private key: verify, wrap, public_key only */
    km__skey *sk;          /* symmetric: the key and its pools of keyed contexts (prim.h) */
    EVP_PKEY *pkey;        /* asymmetric */
    km__ctxpool *signers;  /* a signing key: EVP_MD_CTX kept between signatures (sw_sign) */
} sw_obj;

static const uint8_t empty_msg[1] = { 0 };

static void md_ctx_free(void *m)
{
    EVP_MD_CTX_free(m);
}

static void obj_free(sw_obj *o)
{
    if (o == NULL)
        return;
    km__skey_free(o->sk);
    km__ctxpool_free(o->signers);
    EVP_PKEY_free(o->pkey);
    free(o);
}

/* ------------------------------------------------------ decoding and checks */

/* Checks that a decoded key is of the algorithm, curve and size of `ti`. */
static int check_pkey_type(const km__keytype *ti, EVP_PKEY *pkey, const char *what)
{
    const char *have = EVP_PKEY_get0_type_name(pkey);

    if (have == NULL)
        have = "unknown";
    switch (ti->family) {
    case KM__FAM_ECDSA: {
        char group[64];
        size_t glen = 0;
        int nid;

        if (!EVP_PKEY_is_a(pkey, "EC"))
            return km__err_ossl(KM_E_INVALID, "%s is a %s key, type %s needs EC %s", what, have,
                                ti->name, ti->group);
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1)
            return km__err_ossl(KM_E_INVALID, "%s is an EC key without a named curve, type %s "
                                "needs %s", what, ti->name, ti->group);
        nid = OBJ_txt2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid != EC_curve_nist2nid(ti->group))
            return km__err_ossl(KM_E_INVALID, "%s is an EC key on curve %s, type %s needs %s",
                                what, group, ti->name, ti->group);
        return KM_OK;
    }
    case KM__FAM_RSA:
        if (!EVP_PKEY_is_a(pkey, "RSA"))
            return km__err_ossl(KM_E_INVALID, "%s is a %s key, type %s needs RSA", what, have,
                                ti->name);
        if (EVP_PKEY_get_bits(pkey) != (int)ti->bits)
            return km__err_ossl(KM_E_INVALID, "%s is a %d-bit RSA key, type %s needs %d bits",
                                what, EVP_PKEY_get_bits(pkey), ti->name, (int)ti->bits);
        return KM_OK;
    case KM__FAM_EDDSA:
    case KM__FAM_X25519:
        if (!EVP_PKEY_is_a(pkey, ossl_keytype(ti)))
            return km__err_ossl(KM_E_INVALID, "%s is a %s key, type %s needs %s", what, have,
                                ti->name, ossl_keytype(ti));
        return KM_OK;
    case KM__FAM_FFDHE: {
        char group[64];
        size_t glen = 0;
        if (!EVP_PKEY_is_a(pkey, "DH"))
            return km__err_ossl(KM_E_INVALID, "%s is a %s key, type %s needs DH %s", what, have,
                                ti->name, ti->group);
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1
            || strcmp(group, ti->group) != 0)
            return km__err_ossl(KM_E_INVALID, "%s is not a DH key on the RFC 7919 group %s", what,
                                ti->group);
        return KM_OK;
    }
    default:
        break;
    }
    return km__err(KM_E_INVALID, "type %s has no asymmetric key", ti->name);
}

/* Decodes PKCS#8 PrivateKeyInfo DER, the whole input and nothing else. */
static int decode_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **out)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = KM_E_INVALID;

    *out = NULL;
    if (len == 0 || len > KM__MATERIAL_MAX)
        return km__err(KM_E_INVALID, "PKCS#8 key must be 1 byte to 64 KiB");
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (p8 == NULL) {
        rc = km__err_ossl(KM_E_INVALID, "material does not parse as a PKCS#8 private key");
        goto out;
    }
    if (p != der + len) {
        rc = km__err_ossl(KM_E_INVALID, "PKCS#8 private key has trailing bytes");
        goto out;
    }
    pkey = EVP_PKCS82PKEY_ex(p8, NULL, NULL);
    if (pkey == NULL) {
        rc = km__err_ossl(KM_E_INVALID, "PKCS#8 private key of an unsupported or bad algorithm");
        goto out;
    }
    if (!km__pkey_named_curve(pkey)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        rc = km__err(KM_E_INVALID, "an EC key with explicit curve parameters is refused: only "
                     "named curves");
        goto out;
    }
    *out = pkey;
    rc = KM_OK;
out:
    PKCS8_PRIV_KEY_INFO_free(p8); /* wipes the key octets */
    return rc;
}

/* Checks a key's own consistency at import: the public key is valid, and a
 * private key matches its public key. */
static int check_pkey_valid(EVP_PKEY *pkey, int private)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok;

    if (c == NULL)
        return km__err_ossl(KM_E_CRYPTO, "software backend: key context");
    ok = private ? EVP_PKEY_pairwise_check(c) : EVP_PKEY_public_check(c);
    EVP_PKEY_CTX_free(c);
    if (ok != 1)
        return km__err_ossl(KM_E_INVALID, "%s key fails its consistency check",
                            private ? "private" : "public");
    return KM_OK;
}

/* ---------------------------------------------------------- references */

/* Makes a reference [format][len bytes], the bytes left for the caller. */
static int ref_new(km_material_format fmt, size_t len, km_secret **out, uint8_t **bytes)
{
    int rc;

    if ((rc = km_secret_new(out, len + 1)) != KM_OK)
        return rc;
    km_secret_data(*out)[0] = (uint8_t)fmt;
    *bytes = km_secret_data(*out) + 1;
    return KM_OK;
}

/* Encodes an asymmetric key as a reference: PKCS#8 for a private key, SPKI
 * for a public one. */
static int ref_from_pkey(EVP_PKEY *pkey, int private, km_secret **out)
{
    OSSL_ENCODER_CTX *e = NULL;
    unsigned char *der = NULL;
    uint8_t *bytes;
    size_t len = 0;
    int rc = KM_E_CRYPTO;

    *out = NULL;
    if (!private) {
        size_t n = km__pkey_spki_len(pkey), got = 0;
        if (n == 0)
            return km__err_ossl(KM_E_CRYPTO, "cannot encode the public key");
        if ((rc = ref_new(KM_MATERIAL_SPKI_DER, n, out, &bytes)) != KM_OK)
            return rc;
        if ((rc = km__pkey_spki(pkey, bytes, n, &got)) != KM_OK || got != n) {
            km_secret_free(*out);
            *out = NULL;
            return rc != KM_OK ? rc : km__err(KM_E_CRYPTO, "cannot encode the public key");
        }
        return KM_OK;
    }
    e = OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
    if (e == NULL || OSSL_ENCODER_CTX_get_num_encoders(e) == 0
        || OSSL_ENCODER_to_data(e, &der, &len) != 1 || der == NULL || len == 0) {
        rc = km__err_ossl(KM_E_CRYPTO, "cannot encode the private key as PKCS#8");
        goto out;
    }
    if ((rc = ref_new(KM_MATERIAL_PKCS8_DER, len, out, &bytes)) != KM_OK)
        goto out;
    memcpy(bytes, der, len);
    rc = KM_OK;
out:
    OSSL_ENCODER_CTX_free(e);
    if (der != NULL)
        OPENSSL_clear_free(der, len);
    return rc;
}

/* Splits a PEM block (PKCS#8 "PRIVATE KEY" or SPKI "PUBLIC KEY") into DER in
 * secure memory. Only one block, no headers, nothing but white space after. */
static int pem_decode(const uint8_t *pem, size_t len, int *is_public, unsigned char **der,
                      long *der_len)
{
    BIO *b = NULL;
    char *name = NULL, *header = NULL, rest[64];
    unsigned char *data = NULL;
    long dlen = 0;
    int n, i, rc = KM_E_INVALID;

    *der = NULL;
    *der_len = 0;
    if (len == 0 || len > KM__MATERIAL_MAX)
        return km__err(KM_E_INVALID, "PEM key must be 1 byte to 64 KiB");
    b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return km__err_ossl(KM_E_NOMEM, "software backend: memory BIO");
    if (PEM_read_bio_ex(b, &name, &header, &data, &dlen, PEM_FLAG_SECURE | PEM_FLAG_ONLY_B64)
            != 1) {
        rc = km__err_ossl(KM_E_INVALID, "material does not parse as PEM");
        goto out;
    }
    if (header != NULL && header[0] != '\0') {
        rc = km__err_ossl(KM_E_INVALID, "PEM key has headers (encrypted keys are not accepted)");
        goto out;
    }
    if (strcmp(name, "PRIVATE KEY") == 0) {
        *is_public = 0;
    } else if (strcmp(name, "PUBLIC KEY") == 0) {
        *is_public = 1;
    } else {
        rc = km__err_ossl(KM_E_INVALID, "PEM label must be PRIVATE KEY (PKCS#8) or PUBLIC KEY "
                          "(SPKI)");
        goto out;
    }
    while ((n = BIO_read(b, rest, (int)sizeof rest)) > 0) {
        for (i = 0; i < n; i++) {
            if (rest[i] != ' ' && rest[i] != '\t' && rest[i] != '\r' && rest[i] != '\n') {
                rc = km__err_ossl(KM_E_INVALID, "PEM key has trailing data");
                goto out;
            }
        }
    }
    *der = data;
    *der_len = dlen;
    data = NULL;
    rc = KM_OK;
out:
    BIO_free(b);
    OPENSSL_secure_free(name);
    OPENSSL_secure_free(header);
    if (data != NULL)
        OPENSSL_secure_clear_free(data, (size_t)dlen);
    return rc;
}

/* Parses material of an asymmetric type into a key object, checked against
 * the type. *is_public says what it holds. */
static int parse_asym(const km__keytype *ti, km_material_format fmt, const uint8_t *m,
                      size_t len, EVP_PKEY **out, int *is_public)
{
    unsigned char *der = NULL;
    long der_len = 0;
    int rc;

    *out = NULL;
    switch (fmt) {
    case KM_MATERIAL_RAW:
        if (ti->family != KM__FAM_EDDSA && ti->family != KM__FAM_X25519)
            return km__err(KM_E_INVALID, "type %s cannot be imported raw (use PKCS#8 or SPKI)",
                           ti->name);
        if (len != 32)
            return km__err(KM_E_INVALID, "a raw %s private key is 32 bytes, not %zu", ti->name,
                           len);
        *out = EVP_PKEY_new_raw_private_key_ex(NULL, ossl_keytype(ti), NULL, m, len);
        if (*out == NULL)
            return km__err_ossl(KM_E_INVALID, "raw %s private key rejected", ti->name);
        *is_public = 0;
        return KM_OK;
    case KM_MATERIAL_PKCS8_DER:
        *is_public = 0;
        rc = decode_pkcs8(m, len, out);
        break;
    case KM_MATERIAL_SPKI_DER:
        *is_public = 1;
        rc = km__pkey_from_spki(out, m, len);
        break;
    case KM_MATERIAL_PEM:
        rc = pem_decode(m, len, is_public, &der, &der_len);
        if (rc == KM_OK) {
            rc = *is_public ? km__pkey_from_spki(out, der, (size_t)der_len)
                            : decode_pkcs8(der, (size_t)der_len, out);
            OPENSSL_secure_clear_free(der, (size_t)der_len);
        }
        break;
    default:
        return km__err(KM_E_INVALID, "unknown material format %d", (int)fmt);
    }
    if (rc != KM_OK)
        return rc;
    rc = check_pkey_type(ti, *out, *is_public ? "the public key" : "the private key");
    if (rc != KM_OK) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    return rc;
}

static int symmetric_len_ok(const km__keytype *ti, size_t len)
{
    if (ti->family == KM__FAM_HMAC)
        return len >= KM__HMAC_KEY_MIN && len <= KM__HMAC_KEY_MAX;
    return len == ti->key_len;
}

/* The primitive keyed object of a symmetric family (prim.h). */
static km__skey_kind skey_kind(const km__keytype *ti)
{
    switch (ti->family) {
    case KM__FAM_AES_GCM: return KM__SKEY_GCM;
    case KM__FAM_HMAC: return KM__SKEY_HMAC;
    case KM__FAM_CMAC: return KM__SKEY_CMAC;
    case KM__FAM_AES_SIV: return KM__SKEY_SIV;
    default: return KM__SKEY_KWP;
    }
}

static int spec_type(const km_backend_keyspec *spec, const char *fn,
                     const km__keytype **ti)
{
    if (spec == NULL)
        return km__err(KM_E_INVALID, "software backend %s: spec is NULL", fn);
    if (spec->version < 1)
        return km__err(KM_E_INVALID, "software backend %s: spec->version is 0", fn);
    *ti = km__keytype_get((int)spec->type);
    if (*ti == NULL)
        return km__err(KM_E_INVALID, "software backend %s: unknown key type %d", fn,
                       (int)spec->type);
    return KM_OK;
}

/* ------------------------------------------------------ generate / import */

static int sw_generate_in(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    const km__keytype *ti = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t *bytes;
    int rc;

    (void)state;
    if (out_ref == NULL)
        return km__err(KM_E_INVALID, "software backend generate: out_ref is NULL");
    *out_ref = NULL;
    if ((rc = spec_type(spec, "generate", &ti)) != KM_OK)
        return rc;
    if (spec->flags & KM_KEY_PUBLIC_ONLY)
        return km__err(KM_E_INVALID, "software backend generate: a public-only key cannot be "
                       "generated");
    switch (ti->family) {
    case KM__FAM_AES_GCM:
    case KM__FAM_AES_KWP:
    case KM__FAM_HMAC:
    case KM__FAM_CMAC:
    case KM__FAM_AES_SIV:
        if ((rc = ref_new(KM_MATERIAL_RAW, ti->key_len, out_ref, &bytes)) != KM_OK)
            return rc;
        if (RAND_priv_bytes(bytes, (int)ti->key_len) != 1) {
            km_secret_free(*out_ref);
            *out_ref = NULL;
            return km__err_ossl(KM_E_CRYPTO, "random generator failed");
        }
        return KM_OK;
    case KM__FAM_ECDSA:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", ti->group);
        break;
    case KM__FAM_EDDSA:
    case KM__FAM_X25519:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, ossl_keytype(ti));
        break;
    case KM__FAM_RSA:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)ti->bits);
        break;
    case KM__FAM_FFDHE: {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
        OSSL_PARAM gp[2];
        gp[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)(uintptr_t)ti->group, 0);
        gp[1] = OSSL_PARAM_construct_end();
        if (pc == NULL || EVP_PKEY_keygen_init(pc) != 1 || EVP_PKEY_CTX_set_params(pc, gp) != 1
            || EVP_PKEY_generate(pc, &pkey) != 1)
            pkey = NULL;
        EVP_PKEY_CTX_free(pc);
        break;
    }
    case KM__FAM_NONE:
        break;
    }
    if (pkey == NULL)
        return km__err_ossl(KM_E_CRYPTO, "%s key generation failed", ti->name);
    rc = ref_from_pkey(pkey, 1, out_ref);
    EVP_PKEY_free(pkey);
    return rc;
}

static int sw_import_in(void *state, const km_backend_keyspec *spec, km_material_format format,
                     const uint8_t *material, size_t material_len, km_secret **out_ref)
{
    const km__keytype *ti = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t *bytes;
    int rc, is_public = 0;

    (void)state;
    if (out_ref == NULL)
        return km__err(KM_E_INVALID, "software backend import: out_ref is NULL");
    *out_ref = NULL;
    if ((rc = spec_type(spec, "import", &ti)) != KM_OK)
        return rc;
    if (material == NULL || material_len == 0)
        return km__err(KM_E_INVALID, "software backend import: no material");
    if (km__type_is_symmetric(spec->type)) {
        if (format != KM_MATERIAL_RAW)
            return km__err(KM_E_INVALID, "a %s key is imported as raw bytes only", ti->name);
        if (!symmetric_len_ok(ti, material_len)) {
            if (ti->family == KM__FAM_HMAC)
                return km__err(KM_E_INVALID, "an %s key must be %d to %d bytes, not %zu",
                               ti->name, KM__HMAC_KEY_MIN, KM__HMAC_KEY_MAX, material_len);
            return km__err(KM_E_INVALID, "an %s key must be %zu bytes, not %zu", ti->name,
                           ti->key_len, material_len);
        }
        if ((rc = ref_new(KM_MATERIAL_RAW, material_len, out_ref, &bytes)) != KM_OK)
            return rc;
        memcpy(bytes, material, material_len);
        return KM_OK;
    }
    if ((rc = parse_asym(ti, format, material, material_len, &pkey, &is_public)) != KM_OK)
        return rc;
    if (!is_public && (spec->flags & KM_KEY_PUBLIC_ONLY)) {
        rc = km__err(KM_E_INVALID, "a public-only key was given private key material");
        goto out;
    }
    if ((rc = check_pkey_valid(pkey, !is_public)) != KM_OK)
        goto out;
    rc = ref_from_pkey(pkey, !is_public, out_ref);
out:
    EVP_PKEY_free(pkey);
    return rc;
}

/* ------------------------------------------------------------ load / unload */

static int sw_load_in(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                   size_t ref_len, void **out_obj)
{
    const km__keytype *ti = NULL;
    sw_obj *o = NULL;
    int rc, is_public = 0;

    (void)state;
    if (out_obj == NULL)
        return km__err(KM_E_INVALID, "software backend load: out_obj is NULL");
    *out_obj = NULL;
    if ((rc = spec_type(spec, "load", &ti)) != KM_OK)
        return rc;
    if (ref == NULL || ref_len < 2)
        return km__err(KM_E_INVALID, "software backend load: reference too short");
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return km__err(KM_E_NOMEM, "software backend load: out of memory");
    o->ti = ti;
    o->type = spec->type;
    if (km__type_is_symmetric(spec->type)) {
        if (ref[0] != KM_MATERIAL_RAW || !symmetric_len_ok(ti, ref_len - 1)) {
            rc = km__err(KM_E_INVALID, "software backend load: not a %s key reference",
                         ti->name);
            goto out;
        }
        rc = km__skey_new(&o->sk, skey_kind(ti), ti->family == KM__FAM_HMAC ? ti->md : ti->cipher,
                          ref + 1, ref_len - 1);
        if (rc != KM_OK)
            goto out;
    } else {
        if (ref[0] != KM_MATERIAL_PKCS8_DER && ref[0] != KM_MATERIAL_SPKI_DER) {
            rc = km__err(KM_E_INVALID, "software backend load: not a %s key reference",
                         ti->name);
            goto out;
        }
        rc = parse_asym(ti, (km_material_format)ref[0], ref + 1, ref_len - 1, &o->pkey,
                        &is_public);
        if (rc != KM_OK)
            goto out;
        o->public_only = is_public || (spec->flags & KM_KEY_PUBLIC_ONLY) != 0;
        if (!o->public_only && (ti->family == KM__FAM_ECDSA || ti->family == KM__FAM_EDDSA
                                || ti->family == KM__FAM_RSA)
            && (rc = km__ctxpool_new(&o->signers, md_ctx_free)) != KM_OK)
            goto out;
    }
    *out_obj = o;
    o = NULL;
    rc = KM_OK;
out:
    obj_free(o);
    return rc;
}

static void sw_unload(void *state, void *obj)
{
    (void)state;
    obj_free(obj);
}

/* ------------------------------------------------------------------ AES-GCM */

/* Inlined into its two callers (the data path's seal and open): a call layer
 * of eleven arguments is ~20 instructions of a 64-byte message's ~3,300. */
static inline __attribute__((always_inline)) int
aead_args(const char *fn, sw_obj *o, const uint8_t *nonce, const uint8_t *aad1,
          size_t aad1_len, const uint8_t *aad2, size_t aad2_len, const uint8_t *in,
          size_t in_len, const uint8_t *out, const uint8_t *tag)
{
    if (o == NULL || nonce == NULL || tag == NULL)
        return km__err(KM_E_INVALID, "software backend %s: %s is NULL", fn,
                       o == NULL ? "obj" : nonce == NULL ? "nonce" : "tag");
    if ((aad1 == NULL && aad1_len > 0) || (aad2 == NULL && aad2_len > 0)
        || (in_len > 0 && (in == NULL || out == NULL)))
        return km__err(KM_E_INVALID, "software backend %s: NULL buffer with a length", fn);
    if (in_len > INT_MAX || aad1_len > INT_MAX || aad2_len > INT_MAX)
        return km__err(KM_E_INVALID, "software backend %s: input too long", fn);
    if (o->ti->family != KM__FAM_AES_GCM && o->ti->family != KM__FAM_AES_SIV)
        return km__err(KM_E_USAGE, "a %s key does not encrypt data", o->ti->name);
    return KM_OK;
}

/* Generation, import and load handle private material: OpenSSL's DER encoder
 * and decoder keep temporary copies of it in buffers they free without
 * cleansing (ASN1_i2d_bio), and the EVP_PKEY and cipher contexts made here
 * live as long as the key is loaded. Their OpenSSL allocations go to
 * libkm's locked, non-dumpable, wiped-on-free pages (osslmem.c) when the
 * allocator is installed. */
static int sw_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    int rc;
    km__osslmem_begin();
    rc = sw_generate_in(state, spec, out_ref);
    km__osslmem_end();
    return rc;
}

static int sw_import(void *state, const km_backend_keyspec *spec, km_material_format format,
                     const uint8_t *material, size_t material_len, km_secret **out_ref)
{
    int rc;
    km__osslmem_begin();
    rc = sw_import_in(state, spec, format, material, material_len, out_ref);
    km__osslmem_end();
    return rc;
}

static int sw_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                   size_t ref_len, void **out_obj)
{
    int rc;
    km__osslmem_begin();
    rc = sw_load_in(state, spec, ref, ref_len, out_obj);
    km__osslmem_end();
    return rc;
}

static int sw_aead_seal(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                        size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                        const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[16])
{
    sw_obj *o = obj;
    int rc;

    rc = aead_args("aead_seal", o, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag);
    if (rc != KM_OK)
        return rc;
    return km__skey_seal(o->sk, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag);
}

static int sw_aead_open(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                        size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                        const uint8_t *in, size_t in_len, const uint8_t tag[16], uint8_t *out)
{
    sw_obj *o = obj;
    int rc;

    rc = aead_args("aead_open", o, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag);
    if (rc != KM_OK) {
        if (out != NULL && in_len > 0)
            km_memzero(out, in_len);
        return rc;
    }
    return km__skey_open(o->sk, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, tag, out);
}

/* ------------------------------------------------------------ sign / verify */

static int is_signer(const sw_obj *o)
{
    return o->ti->family == KM__FAM_ECDSA || o->ti->family == KM__FAM_EDDSA || o->ti->family == KM__FAM_RSA;
}

/* Sets up m for signing with this key's scheme. A context that signed for this
 * key before (again) is re-initialised by OpenSSL on the signature context it
 * keeps (no new EVP_PKEY_CTX, no key look-up) for ECDSA and EdDSA; RSA's
 * padding is set afresh on a full set-up. */
static int sign_init(sw_obj *o, EVP_MD_CTX *m, uint32_t pkcs1, int again)
{
    EVP_PKEY_CTX *pc = NULL;
    const char *md = o->ti->family == KM__FAM_EDDSA ? NULL : o->ti->md;
    int ok;

    if (again && o->ti->family != KM__FAM_RSA) {
        if (EVP_DigestSignInit_ex(m, NULL, md, NULL, NULL, NULL, NULL) == 1)
            return KM_OK;
        ERR_clear_error();
    }
    ok = EVP_DigestSignInit_ex(m, &pc, md, NULL, NULL, o->pkey, NULL) == 1;
    if (ok && o->ti->family == KM__FAM_RSA && pkcs1)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) > 0;
    else if (ok && o->ti->family == KM__FAM_RSA)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0
             && EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, KM__PSS_SALT) > 0
             && EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) > 0;
    if (!ok)
        return km__err_ossl(KM_E_CRYPTO, "cannot set up %s signing", o->ti->name);
    return KM_OK;
}

/* Signs msg into buf with a signing context of the key's pool (made when the
 * pool has none for this thread); a context that failed is freed. */
static int sign_msg(sw_obj *o, uint32_t pkcs1, const uint8_t *msg, size_t msg_len,
                    uint8_t *buf, size_t *n)
{
    km__ctxnode *node = km__ctxpool_take(o->signers);
    int again = node != NULL, rc;

    if (node == NULL) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        if (m == NULL || (node = km__ctxnode_new(m)) == NULL) {
            EVP_MD_CTX_free(m);
            return km__err_ossl(KM_E_NOMEM, "software backend: digest context");
        }
    }
    rc = sign_init(o, node->item, pkcs1, again);
    if (rc == KM_OK
        && EVP_DigestSign(node->item, buf, n, msg != NULL ? msg : empty_msg, msg_len) != 1)
        rc = km__err_ossl(KM_E_CRYPTO, "%s signing failed", o->ti->name);
    if (rc == KM_OK)
        km__ctxpool_give(o->signers, node);
    else
        km__ctxnode_free(o->signers, node);
    return rc;
}

#define SIG_DIGESTS (KM_BACKEND_SIG_SHA256 | KM_BACKEND_SIG_SHA384 | KM_BACKEND_SIG_SHA512)

/* Signs a digest (KM_BACKEND_CAP_SIGN_DIGEST): ECDSA as given, RSA with PSS
 * (MGF1 of the same digest, salt = digest length) or PKCS#1 v1.5. */
static int sign_digest(sw_obj *o, uint32_t flags, const uint8_t *dgst, size_t dgst_len,
                       uint8_t *buf, size_t *n)
{
    uint32_t d = flags & SIG_DIGESTS;
    char *md = d == KM_BACKEND_SIG_SHA256 ? "SHA256" : d == KM_BACKEND_SIG_SHA384 ? "SHA384"
             : d == KM_BACKEND_SIG_SHA512 ? "SHA512" : NULL;
    size_t want = d == KM_BACKEND_SIG_SHA256 ? 32 : d == KM_BACKEND_SIG_SHA384 ? 48 : 64;
    char pss[] = "pss", pkcs1[] = "pkcs1", saltlen[] = "digest";
    OSSL_PARAM p[5], *q = p;
    EVP_PKEY_CTX *pc;
    int ok;

    if (md == NULL || dgst == NULL || dgst_len != want)
        return km__err(KM_E_INVALID, "software backend sign: bad digest for a %s key",
                       o->ti->name);
    if (o->ti->family != KM__FAM_ECDSA && o->ti->family != KM__FAM_RSA)
        return km__err(KM_E_USAGE, "a %s key does not sign digests", o->ti->name);
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, md, 0);
    if (o->ti->family == KM__FAM_RSA && (flags & KM_SIG_PKCS1)) {
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pkcs1, 0);
    } else if (o->ti->family == KM__FAM_RSA) {
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pss, 0);
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, saltlen, 0);
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, md, 0);
    }
    *q = OSSL_PARAM_construct_end();
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, o->pkey, NULL);
    ok = pc != NULL && EVP_PKEY_sign_init_ex(pc, p) == 1
         && EVP_PKEY_sign(pc, buf, n, dgst, dgst_len) == 1;
    EVP_PKEY_CTX_free(pc);
    if (!ok)
        return km__err_ossl(KM_E_CRYPTO, "%s digest signing failed", o->ti->name);
    return KM_OK;
}

static int sw_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
                   size_t sig_cap, size_t *sig_len)
{
    sw_obj *o = obj;
    uint8_t buf[KM__SIG_BUF], rs[2 * 66];
    const uint8_t *res = buf;
    size_t n = sizeof buf;
    int rc;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "software backend sign: sig_len is NULL");
    *sig_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "software backend sign: %s is NULL",
                       o == NULL ? "obj" : "msg");
    if (!is_signer(o))
        return km__err(KM_E_USAGE, "a %s key does not sign", o->ti->name);
    if (o->public_only)
        return km__err(KM_E_USAGE, "a public-only %s key cannot sign", o->ti->name);
    if ((flags & ~(KM_SIG_P1363 | KM_SIG_PKCS1 | SIG_DIGESTS))
        || ((flags & KM_SIG_P1363) && o->ti->family != KM__FAM_ECDSA)
        || ((flags & KM_SIG_PKCS1) && o->ti->family != KM__FAM_RSA))
        return km__err(KM_E_INVALID, "software backend sign: bad flags for a %s key",
                       o->ti->name);
    if (flags & SIG_DIGESTS) {
        if ((rc = sign_digest(o, flags, msg, msg_len, buf, &n)) != KM_OK)
            return rc;
    } else if ((rc = sign_msg(o, flags & KM_SIG_PKCS1, msg, msg_len, buf, &n)) != KM_OK) {
        return rc;
    }
    if (flags & KM_SIG_P1363) {
        if (km__ecdsa_der_to_raw(buf, n, o->ti->field, rs) != KM_OK) {
            rc = km__err_ossl(KM_E_CRYPTO, "cannot convert the ECDSA signature to P1363");
            goto out;
        }
        res = rs;
        n = 2 * o->ti->field;
    }
    if (sig == NULL || sig_cap < n) {
        /* a DER ECDSA signature varies in length: ask for the longest */
        if (o->ti->family == KM__FAM_ECDSA && !(flags & KM_SIG_P1363)
            && (size_t)EVP_PKEY_get_size(o->pkey) > n)
            n = (size_t)EVP_PKEY_get_size(o->pkey);
        *sig_len = n;
        rc = km__err(KM_E_BUFFER, "signature needs %zu bytes", n);
        goto out;
    }
    memcpy(sig, res, n);
    *sig_len = n;
    rc = KM_OK;
out:
    return rc;
}

static int sw_verify(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                     const uint8_t *sig, size_t sig_len)
{
    sw_obj *o = obj;

    if (o == NULL || (msg == NULL && msg_len > 0) || (sig == NULL && sig_len > 0))
        return km__err(KM_E_INVALID, "software backend verify: %s is NULL",
                       o == NULL ? "obj" : msg == NULL ? "msg" : "sig");
    if (!is_signer(o))
        return km__err(KM_E_USAGE, "a %s key does not verify signatures", o->ti->name);
    if ((flags & ~(KM_SIG_P1363 | KM_SIG_PKCS1))
        || ((flags & KM_SIG_P1363) && o->ti->family != KM__FAM_ECDSA)
        || ((flags & KM_SIG_PKCS1) && o->ti->family != KM__FAM_RSA))
        return km__err(KM_E_INVALID, "software backend verify: bad flags for a %s key",
                       o->ti->name);
    return km__pkey_verify(o->pkey, o->ti->family == KM__FAM_EDDSA ? NULL : o->ti->md, flags, msg,
                           msg_len, sig, sig_len);
}

/* --------------------------------------------------------------------- HMAC */

static int sw_mac(void *obj, const uint8_t *msg, size_t msg_len, uint8_t *tag, size_t tag_cap,
                  size_t *tag_len)
{
    sw_obj *o = obj;
    size_t need;
    int rc;

    if (tag_len == NULL)
        return km__err(KM_E_INVALID, "software backend mac: tag_len is NULL");
    *tag_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "software backend mac: %s is NULL",
                       o == NULL ? "obj" : "msg");
    if (o->ti->family != KM__FAM_HMAC && o->ti->family != KM__FAM_CMAC)
        return km__err(KM_E_USAGE, "a %s key does not compute MACs", o->ti->name);
    need = km__type_mac_len(o->type); /* the digest length; 16 for CMAC */
    if (tag == NULL || tag_cap < need) {
        *tag_len = need;
        return km__err(KM_E_BUFFER, "MAC needs %zu bytes", need);
    }
    if ((rc = km__skey_mac(o->sk, msg, msg_len, tag, need)) != KM_OK) {
        km_memzero(tag, tag_cap);
        return rc;
    }
    *tag_len = need;
    return KM_OK;
}

/* ------------------------------------------------------------- wrap / unwrap */

static int sw_wrap(void *obj, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                   size_t *out_len)
{
    sw_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "software backend wrap: out_len is NULL");
    *out_len = 0;
    if (o == NULL || in == NULL || in_len == 0)
        return km__err(KM_E_INVALID, "software backend wrap: %s",
                       o == NULL ? "obj is NULL" : "nothing to wrap");
    if (o->ti->family == KM__FAM_AES_KWP)
        return km__skey_wrap(o->sk, in, in_len, out, out_cap, out_len);
    if (o->ti->family != KM__FAM_RSA)
        return km__err(KM_E_USAGE, "a %s key does not wrap keys", o->ti->name);
    return km__pkey_rsa_oaep_encrypt(o->pkey, "SHA256", NULL, 0, in, in_len, out, out_cap,
                                     out_len);
}

static int sw_unwrap(void *obj, const uint8_t *in, size_t in_len, km_secret **out)
{
    sw_obj *o = obj;
    uint8_t *tmp = NULL;
    size_t cap = 0, n = 0;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "software backend unwrap: out is NULL");
    *out = NULL;
    if (o == NULL || in == NULL || in_len == 0)
        return km__err(KM_E_INVALID, "software backend unwrap: %s",
                       o == NULL ? "obj is NULL" : "nothing to unwrap");
    if (o->ti->family == KM__FAM_AES_KWP)
        return km__skey_unwrap(o->sk, in, in_len, out);
    if (o->ti->family != KM__FAM_RSA)
        return km__err(KM_E_USAGE, "a %s key does not unwrap keys", o->ti->name);
    if (o->public_only)
        return km__err(KM_E_USAGE, "a public-only %s key cannot unwrap", o->ti->name);
    cap = (size_t)EVP_PKEY_get_size(o->pkey);
    tmp = km__salloc(cap);
    if (tmp == NULL)
        return km__err(KM_E_NOMEM, "software backend unwrap: no secure memory");
    rc = km__pkey_rsa_oaep_decrypt(o->pkey, "SHA256", NULL, 0, in, in_len, tmp, cap, &n);
    if (rc == KM_OK && n == 0)
        rc = km__err(KM_E_INTEGRITY, "unwrapped key is empty");
    if (rc == KM_OK)
        rc = km_secret_from(out, tmp, n);
    km__sfree(tmp, cap);
    return rc;
}

/* RSA-OAEP decryption with a digest and a label (km_rsa_oaep_decrypt). */
static int sw_rsa_decrypt(void *obj, uint32_t flags, const uint8_t *label, size_t label_len,
                          const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                          size_t *out_len)
{
    sw_obj *o = obj;
    const char *md = flags == KM_BACKEND_SIG_SHA256 ? "SHA256"
                     : flags == KM_BACKEND_SIG_SHA384 ? "SHA384"
                     : flags == KM_BACKEND_SIG_SHA512 ? "SHA512" : NULL;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "software backend rsa_decrypt: out_len is NULL");
    *out_len = 0;
    if (o == NULL || in == NULL || md == NULL)
        return km__err(KM_E_INVALID, "software backend rsa_decrypt: bad arguments");
    if (o->ti->family != KM__FAM_RSA || o->public_only)
        return km__err(KM_E_USAGE, "a %s%s key does not decrypt", o->public_only ? "public-only "
                       : "", o->ti->name);
    return km__pkey_rsa_oaep_decrypt(o->pkey, md, label, label_len, in, in_len, out, out_cap,
                                     out_len);
}

/* ------------------------------------------------------------ derive / agree */

static int sw_derive(void *obj, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                     size_t info_len, size_t out_len, km_secret **out)
{
    sw_obj *o = obj;
    km_secret *s = NULL;
    const uint8_t *key;
    size_t key_len = 0;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "software backend derive: out is NULL");
    *out = NULL;
    if (o == NULL || (salt == NULL && salt_len > 0) || (info == NULL && info_len > 0))
        return km__err(KM_E_INVALID, "software backend derive: %s is NULL",
                       o == NULL ? "obj" : salt == NULL && salt_len > 0 ? "salt" : "info");
    if (o->ti->family != KM__FAM_HMAC)
        return km__err(KM_E_USAGE, "a %s key does not derive keys", o->ti->name);
    if (out_len == 0 || out_len > 255 * 32)
        return km__err(KM_E_INVALID, "HKDF-SHA-256 output must be 1 to 8160 bytes");
    if ((rc = km_secret_new(&s, out_len)) != KM_OK)
        return rc;
    key = km__skey_bytes(o->sk, &key_len);
    rc = km__hkdf_sha256(key, key_len, salt != NULL ? salt : empty_msg, salt_len,
                         info != NULL ? info : empty_msg, info_len, km_secret_data(s), out_len);
    if (rc != KM_OK) {
        km_secret_free(s);
        return rc;
    }
    *out = s;
    return KM_OK;
}

static int sw_agree(void *obj, const uint8_t *peer_spki, size_t peer_len, km_secret **out)
{
    sw_obj *o = obj;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *c = NULL;
    km_secret *s = NULL, *s2 = NULL;
    size_t len = 0, got;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "software backend agree: out is NULL");
    *out = NULL;
    if (o == NULL || peer_spki == NULL || peer_len == 0)
        return km__err(KM_E_INVALID, "software backend agree: %s",
                       o == NULL ? "obj is NULL" : "no peer key");
    if (o->ti->family != KM__FAM_ECDSA && o->ti->family != KM__FAM_X25519 && o->ti->family != KM__FAM_FFDHE)
        return km__err(KM_E_USAGE, "a %s key does not agree keys", o->ti->name);
    if (o->public_only)
        return km__err(KM_E_USAGE, "a public-only %s key cannot agree keys", o->ti->name);
    if ((rc = km__pkey_from_spki(&peer, peer_spki, peer_len)) != KM_OK)
        return rc;
    if ((rc = check_pkey_type(o->ti, peer, "the peer key")) != KM_OK)
        goto out;
    c = EVP_PKEY_CTX_new_from_pkey(NULL, o->pkey, NULL);
    if (c == NULL || EVP_PKEY_derive_init(c) != 1) {
        rc = km__err_ossl(KM_E_CRYPTO, "cannot set up %s key agreement", o->ti->name);
        goto out;
    }
    if (EVP_PKEY_derive_set_peer_ex(c, peer, 1) != 1) {
        rc = km__err_ossl(KM_E_INVALID, "the peer public key is not valid");
        goto out;
    }
    if (EVP_PKEY_derive(c, NULL, &len) != 1 || len == 0) {
        rc = km__err_ossl(KM_E_CRYPTO, "%s key agreement failed", o->ti->name);
        goto out;
    }
    if ((rc = km_secret_new(&s, len)) != KM_OK)
        goto out;
    got = len;
    if (EVP_PKEY_derive(c, km_secret_data(s), &got) != 1 || got == 0 || got > len) {
        /* X25519 refuses a low-order peer (an all-zero secret) */
        rc = km__err_ossl(KM_E_INVALID, "%s key agreement with this peer failed", o->ti->name);
        goto out;
    }
    if (got != len) {
        if ((rc = km_secret_from(&s2, km_secret_data(s), got)) != KM_OK)
            goto out;
        km_secret_free(s);
        s = s2;
    }
    *out = s;
    s = NULL;
    rc = KM_OK;
out:
    km_secret_free(s);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(peer);
    return rc;
}

/* -------------------------------------------------------------- public key */

static int sw_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    sw_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "software backend public_key: out_len is NULL");
    *out_len = 0;
    if (o == NULL)
        return km__err(KM_E_INVALID, "software backend public_key: obj is NULL");
    if (o->pkey == NULL)
        return km__err(KM_E_UNSUPPORTED, "a %s key has no public key", o->ti->name);
    return km__pkey_spki(o->pkey, out, out_cap, out_len);
}

/* ------------------------------------------------------------------- table */

const km_backend_ops km__software_backend = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "software",
    .caps = KM_BACKEND_CAP_SYMMETRIC | KM_BACKEND_CAP_ASYMMETRIC | KM_BACKEND_CAP_IMPORT
            | KM_BACKEND_CAP_EXTRACT | KM_BACKEND_CAP_SIGN_DIGEST,
    .open = NULL,
    .close = NULL,
    .generate = sw_generate,
    .import = sw_import,
    .destroy = NULL, /* the reference is the material: the core deletes it */
    .load = sw_load,
    .unload = sw_unload,
    .aead_seal = sw_aead_seal,
    .aead_open = sw_aead_open,
    .sign = sw_sign,
    .verify = sw_verify,
    .mac = sw_mac,
    .wrap = sw_wrap,
    .unwrap = sw_unwrap,
    .derive = sw_derive,
    .agree = sw_agree,
    .public_key = sw_public_key,
    .ctl = NULL,
    .rsa_decrypt = sw_rsa_decrypt,
};
