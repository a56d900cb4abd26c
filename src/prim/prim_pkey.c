/*
 * prim_pkey.c - km__pkey (prim.h): public keys as the device backends meet
 * them (SPKI, an EC point or x/y, an RSA modulus and exponent, a
 * certificate), their SPKI export, signature verification, the ECDSA
 * signature encodings, digests. The software backend uses the same functions
 * for decoding SPKI, export and verification.
 */
#include "km_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <jansson.h>

#define PKEY_DER_MAX ((size_t)1 << 16)
#define SIG_MAX 1024      /* longer than any signature of a supported key */
#define PSS_SALT 32

static const uint8_t empty_msg[1] = { 0 };

void km__pkey_free(km__pkey *k)
{
    EVP_PKEY_free(k);
}

/* The DH public key `pub` on the RFC 7919 group `group` (PKCS#3 DH, the
 * group named), or NULL. */
static EVP_PKEY *dh_named(const char *group, const BIGNUM *pub)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = NULL;
    EVP_PKEY *k = NULL;

    if (b != NULL
        && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1
        && (pub == NULL || OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PUB_KEY, pub) == 1)
        && (params = OSSL_PARAM_BLD_to_param(b)) != NULL
        && (c = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL)) != NULL
        && EVP_PKEY_fromdata_init(c) == 1)
        (void)EVP_PKEY_fromdata(c, &k, pub != NULL ? EVP_PKEY_PUBLIC_KEY
                                                   : EVP_PKEY_KEY_PARAMETERS, params);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    return k;
}

/* 1 when the FFC parameter `name` of a and b is the same number. */
static int ffc_param_eq(const EVP_PKEY *a, const EVP_PKEY *b, const char *name)
{
    BIGNUM *x = NULL, *y = NULL;
    int eq = EVP_PKEY_get_bn_param(a, name, &x) == 1 && EVP_PKEY_get_bn_param(b, name, &y) == 1
             && BN_cmp(x, y) == 0;
    BN_free(x);
    BN_free(y);
    return eq;
}

/* An X9.42 DH public key (OID dhpublicnumber, OpenSSL's DHX; pyca/cryptography
 * writes FFDHE keys so) whose p, g and q are those of an RFC 7919 group, as
 * the same public value in the PKCS#3 form on the named group, which the
 * FFDHE key types use. Any other parameters are refused: only the prime
 * matching is not enough (a wrong g or q would move the key to another
 * subgroup). Replaces *pk on success. */
static int dhx_to_named_group(EVP_PKEY **pk)
{
    static const char *const groups[] = { "ffdhe2048", "ffdhe3072", "ffdhe4096" };
    EVP_PKEY *ref = NULL, *named = NULL;
    BIGNUM *pub = NULL;
    size_t i;
    int rc = KM_OK;

    for (i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if ((ref = dh_named(groups[i], NULL)) == NULL)
            return km__err_ossl(KM_E_CRYPTO, "cannot set up the DH group %s", groups[i]);
        if (ffc_param_eq(*pk, ref, OSSL_PKEY_PARAM_FFC_P))
            break;
        EVP_PKEY_free(ref);
        ref = NULL;
    }
    if (ref == NULL)
        return km__err(KM_E_INVALID, "an X9.42 (DHX) public key whose prime is not that of an "
                       "RFC 7919 group (ffdhe2048, ffdhe3072, ffdhe4096) is refused");
    if (!ffc_param_eq(*pk, ref, OSSL_PKEY_PARAM_FFC_G)
        || !ffc_param_eq(*pk, ref, OSSL_PKEY_PARAM_FFC_Q))
        rc = km__err(KM_E_INVALID, "an X9.42 (DHX) public key with the %s prime but another %s "
                     "is refused", groups[i],
                     ffc_param_eq(*pk, ref, OSSL_PKEY_PARAM_FFC_G) ? "subgroup order q"
                                                                   : "generator g");
    else if (EVP_PKEY_get_bn_param(*pk, OSSL_PKEY_PARAM_PUB_KEY, &pub) != 1
             || (named = dh_named(groups[i], pub)) == NULL)
        rc = km__err_ossl(KM_E_INVALID, "the X9.42 (DHX) public key on %s does not convert",
                          groups[i]);
    BN_free(pub);
    EVP_PKEY_free(ref);
    if (rc == KM_OK) {
        EVP_PKEY_free(*pk);
        *pk = named;
    }
    return rc;
}

int km__pkey_from_spki(km__pkey **out, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey;
    int rc;

    *out = NULL;
    if (der == NULL || len == 0 || len > PKEY_DER_MAX)
        return km__err(KM_E_INVALID, "public key must be 1 byte to 64 KiB");
    pkey = d2i_PUBKEY_ex(NULL, &p, (long)len, NULL, NULL);
    if (pkey == NULL)
        return km__err_ossl(KM_E_INVALID, "material does not parse as a SubjectPublicKeyInfo");
    if (p != der + len) {
        EVP_PKEY_free(pkey);
        return km__err_ossl(KM_E_INVALID, "public key has trailing bytes");
    }
    if (!km__pkey_named_curve(pkey)) {
        EVP_PKEY_free(pkey);
        return km__err(KM_E_INVALID, "an EC key with explicit curve parameters is refused: "
                       "only named curves");
    }
    if (EVP_PKEY_is_a(pkey, "DHX") && (rc = dhx_to_named_group(&pkey)) != KM_OK) {
        EVP_PKEY_free(pkey);
        return rc;
    }
    *out = pkey;
    return KM_OK;
}

int km__pkey_named_curve(const km__pkey *k)
{
    char enc[32];

    if (!EVP_PKEY_is_a(k, "EC"))
        return 1;
    /* OpenSSL 3 keeps how the group was given: "named_curve" or "explicit" */
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof enc, NULL) != 1)
        return 0;
    return strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) == 0;
}

int km__pkey_from_cert(km__pkey **out, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x;

    *out = NULL;
    if (der == NULL || len == 0 || len > PKEY_DER_MAX)
        return km__err(KM_E_CORRUPT, "the certificate does not decode");
    x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL || p != der + len || (*out = X509_get_pubkey(x)) == NULL) {
        X509_free(x);
        return km__err_ossl(KM_E_CORRUPT, "the certificate does not decode");
    }
    X509_free(x);
    return KM_OK;
}

int km__pkey_from_ec_point(km__pkey **out, const char *group, const uint8_t *point,
                           size_t point_len)
{
    EVP_PKEY_CTX *pc = NULL;
    OSSL_PARAM params[3];
    int rc = KM_OK;

    *out = NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)(uintptr_t)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *)(uintptr_t)point, point_len);
    params[2] = OSSL_PARAM_construct_end();
    pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1
        || EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        *out = NULL;
        rc = km__err_ossl(KM_E_CRYPTO, "the %s public point does not decode", group);
    }
    EVP_PKEY_CTX_free(pc);
    return rc;
}

int km__pkey_from_ec_xy(km__pkey **out, const char *group, const uint8_t *x, size_t x_len,
                        const uint8_t *y, size_t y_len)
{
    int nid = EC_curve_nist2nid(group);
    EC_GROUP *g = nid != NID_undef ? EC_GROUP_new_by_curve_name(nid) : NULL;
    size_t field = g != NULL ? ((size_t)EC_GROUP_get_degree(g) + 7) / 8 : 0;
    uint8_t point[1 + 2 * 66];
    int rc;

    EC_GROUP_free(g);
    *out = NULL;
    if (field == 0 || field > 66 || x_len == 0 || x_len > field || y_len == 0 || y_len > field)
        return km__err(KM_E_CRYPTO, "the %s public point does not decode", group);
    memset(point, 0, sizeof point);
    point[0] = 0x04;
    memcpy(point + 1 + field - x_len, x, x_len);
    memcpy(point + 1 + 2 * field - y_len, y, y_len);
    rc = km__pkey_from_ec_point(out, group, point, 1 + 2 * field);
    km_memzero(point, sizeof point);
    return rc;
}

int km__pkey_from_ec_point_der(km__pkey **out, const char *group, const uint8_t *der,
                               size_t der_len)
{
    const unsigned char *q = der;
    ASN1_OCTET_STRING *os;
    int rc;

    *out = NULL;
    if (der == NULL || der_len == 0 || der_len > LONG_MAX)
        return km__err(KM_E_CRYPTO, "the %s public point does not decode", group);
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)der_len);
    if (os == NULL)
        return km__err_ossl(KM_E_CRYPTO, "the %s public point does not decode", group);
    rc = km__pkey_from_ec_point(out, group, ASN1_STRING_get0_data(os),
                                (size_t)ASN1_STRING_length(os));
    ASN1_OCTET_STRING_free(os);
    return rc;
}

int km__pkey_from_rsa(km__pkey **out, const uint8_t *n, size_t n_len, const uint8_t *e,
                      size_t e_len)
{
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *b = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = NULL;
    int rc = KM_OK;

    *out = NULL;
    if (n_len > INT_MAX || e_len > INT_MAX)
        return km__err(KM_E_CRYPTO, "the RSA public key does not decode");
    bn = BN_bin2bn(n, (int)n_len, NULL);
    be = BN_bin2bn(e, (int)e_len, NULL);
    b = OSSL_PARAM_BLD_new();
    if (bn == NULL || be == NULL || b == NULL
        || OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) != 1
        || OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) != 1
        || (params = OSSL_PARAM_BLD_to_param(b)) == NULL
        || (pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
        || EVP_PKEY_fromdata_init(pc) != 1
        || EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        *out = NULL;
        rc = km__err_ossl(KM_E_CRYPTO, "the RSA public key does not decode");
    }
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    BN_free(bn);
    BN_free(be);
    return rc;
}

int km__pkey_from_rsa_pkcs1(km__pkey **out, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;

    *out = NULL;
    if (der == NULL || len == 0 || len > LONG_MAX)
        return km__err(KM_E_INVALID, "the RSA public key (PKCS#1) is empty or too long");
    *out = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    if (*out == NULL || p != der + len) {
        km__pkey_free(*out);
        *out = NULL;
        return km__err_ossl(KM_E_INVALID, "the RSA public key (PKCS#1) does not decode");
    }
    return KM_OK;
}

size_t km__pkey_spki_len(const km__pkey *k)
{
    int n = i2d_PUBKEY(k, NULL);
    return n > 0 ? (size_t)n : 0;
}

int km__pkey_spki(const km__pkey *k, uint8_t *out, size_t out_cap, size_t *out_len)
{
    unsigned char *p = out;
    int n;

    *out_len = 0;
    n = i2d_PUBKEY(k, NULL);
    if (n <= 0)
        return km__err_ossl(KM_E_CRYPTO, "cannot encode the public key");
    if (out == NULL || out_cap < (size_t)n) {
        *out_len = (size_t)n;
        return km__err(KM_E_BUFFER, "public key needs %d bytes", n);
    }
    if (i2d_PUBKEY(k, &p) != n) {
        km_memzero(out, out_cap);
        return km__err_ossl(KM_E_CRYPTO, "cannot encode the public key");
    }
    *out_len = (size_t)n;
    return KM_OK;
}

size_t km__pkey_size(const km__pkey *k)
{
    int n = EVP_PKEY_get_size(k);
    return n > 0 ? (size_t)n : 0;
}

int km__pkey_is_ec(const km__pkey *k, const char *group)
{
    char have[64];
    size_t glen = 0;
    int nid;

    if (!EVP_PKEY_is_a(k, "EC")
        || EVP_PKEY_get_group_name(k, have, sizeof have, &glen) != 1)
        return 0;
    nid = OBJ_txt2nid(have);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(have);
    return nid != NID_undef && nid == EC_curve_nist2nid(group);
}

int km__pkey_is_rsa(const km__pkey *k, int bits)
{
    return EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) == bits;
}

int km__pkey_peer_ec_point(const uint8_t *spki, size_t spki_len, const char *group,
                           uint8_t *point, size_t cap, size_t *point_len)
{
    EVP_PKEY *peer = NULL;
    size_t plen = 0, field;
    int ok;

    *point_len = 0;
    ok = km__pkey_from_spki(&peer, spki, spki_len) == KM_OK && km__pkey_is_ec(peer, group);
    field = ok ? ((size_t)EVP_PKEY_get_bits(peer) + 7) / 8 : 0;
    ok = ok && EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                               cap, &plen) == 1
         && plen == 2 * field + 1 && point[0] == 0x04;
    EVP_PKEY_free(peer);
    if (!ok) {
        if (cap > 0)
            km_memzero(point, cap);
        return km__err_ossl(KM_E_INVALID, "the peer key is not an uncompressed %s public key",
                            group);
    }
    *point_len = plen;
    return KM_OK;
}

int km__pkey_verify(km__pkey *k, const char *md, uint32_t flags, const uint8_t *msg,
                    size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    EVP_MD_CTX *m = NULL;
    EVP_PKEY_CTX *pc = NULL;
    uint8_t der[160];
    size_t der_len = 0;
    int ec = EVP_PKEY_is_a(k, "EC"), rsa = EVP_PKEY_is_a(k, "RSA"), rc;

    if ((flags & ~(KM_SIG_P1363 | KM_SIG_PKCS1)) || ((flags & KM_SIG_P1363) && !ec)
        || ((flags & KM_SIG_PKCS1) && !rsa))
        return km__err(KM_E_INVALID, "verify: bad flags for this key");
    if (sig == NULL || sig_len == 0 || sig_len > SIG_MAX)
        return km__err(KM_E_VERIFY, "signature does not verify (bad length)");
    if (flags & KM_SIG_P1363) {
        size_t field = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
        if (sig_len != 2 * field)
            return km__err(KM_E_VERIFY, "P1363 signature must be %zu bytes", 2 * field);
        if (km__ecdsa_raw_to_der(sig, field, der, sizeof der, &der_len) != KM_OK)
            return km__err_ossl(KM_E_VERIFY, "signature does not verify");
        sig = der;
        sig_len = der_len;
    }
    if ((m = EVP_MD_CTX_new()) == NULL
        || EVP_DigestVerifyInit_ex(m, &pc, md, NULL, NULL, k, NULL) != 1
        || (rsa && (flags & KM_SIG_PKCS1)
            && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) <= 0)
        || (rsa && !(flags & KM_SIG_PKCS1)
            && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) <= 0
                || EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, PSS_SALT) <= 0
                || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) <= 0))) {
        rc = km__err_ossl(KM_E_CRYPTO, "cannot set up %s verification",
                          EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "signature");
        goto out;
    }
    if (EVP_DigestVerify(m, sig, sig_len, msg != NULL ? msg : empty_msg, msg_len) == 1)
        rc = KM_OK;
    else
        rc = km__err_ossl(KM_E_VERIFY, "signature does not verify");
out:
    EVP_MD_CTX_free(m);
    return rc;
}

/* The output length of the SHA-2 digest `md` ("SHA256", "SHA384", "SHA512"); 0 otherwise. */
static size_t sha2_len(const char *md)
{
    return md == NULL ? 0 : strcmp(md, "SHA256") == 0 ? 32 : strcmp(md, "SHA384") == 0 ? 48
           : strcmp(md, "SHA512") == 0 ? 64 : 0;
}

/* An RSA-OAEP context of the key for encryption or decryption: `md` for OAEP
 * and MGF1, the label copied into the context (OpenSSL takes its own copy). */
static int oaep_ctx(km__pkey *k, int enc, const char *md, const uint8_t *label,
                    size_t label_len, EVP_PKEY_CTX **out)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    unsigned char *l = NULL;

    *out = NULL;
    if (!EVP_PKEY_is_a(k, "RSA") || sha2_len(md) == 0) {
        EVP_PKEY_CTX_free(c);
        return km__err(KM_E_USAGE, "RSA-OAEP needs an RSA key and SHA-256, SHA-384 or SHA-512");
    }
    if (label_len > 0 && (l = OPENSSL_memdup(label, label_len)) == NULL) {
        EVP_PKEY_CTX_free(c);
        return km__err(KM_E_NOMEM, "RSA-OAEP: out of memory");
    }
    if (c == NULL || (enc ? EVP_PKEY_encrypt_init(c) : EVP_PKEY_decrypt_init(c)) != 1
        || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) <= 0
        || EVP_PKEY_CTX_set_rsa_oaep_md_name(c, md, NULL) <= 0
        || EVP_PKEY_CTX_set_rsa_mgf1_md_name(c, md, NULL) <= 0
        || (l != NULL && EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, (int)label_len) <= 0)) {
        OPENSSL_free(l);
        EVP_PKEY_CTX_free(c);
        return km__err_ossl(KM_E_CRYPTO, "cannot set up RSA-OAEP with %s", md);
    }
    *out = c;
    return KM_OK;
}

size_t km__rsa_oaep_max(const km__pkey *k, const char *md)
{
    size_t mod = (size_t)EVP_PKEY_get_size(k), h = sha2_len(md);
    return h != 0 && mod > 2 * h + 2 ? mod - 2 * h - 2 : 0;
}

int km__pkey_rsa_oaep_encrypt(km__pkey *k, const char *md, const uint8_t *label,
                              size_t label_len, const uint8_t *in, size_t in_len, uint8_t *out,
                              size_t out_cap, size_t *out_len)
{
    EVP_PKEY_CTX *c = NULL;
    size_t need = (size_t)EVP_PKEY_get_size(k), n;
    int rc;

    *out_len = 0;
    if (label_len > INT_MAX || (label == NULL && label_len > 0) || (in == NULL && in_len > 0))
        return km__err(KM_E_INVALID, "RSA-OAEP: bad label or input");
    if (in_len > km__rsa_oaep_max(k, md))
        return km__err(KM_E_INVALID, "RSA-OAEP with %s and this key encrypts at most %zu bytes",
                       md, km__rsa_oaep_max(k, md));
    if (out == NULL || out_cap < need) {
        *out_len = need;
        return km__err(KM_E_BUFFER, "RSA-OAEP ciphertext needs %zu bytes", need);
    }
    if ((rc = oaep_ctx(k, 1, md, label, label_len, &c)) != KM_OK)
        return rc;
    n = out_cap;
    if (EVP_PKEY_encrypt(c, out, &n, in != NULL ? in : empty_msg, in_len) != 1 || n != need) {
        km_memzero(out, out_cap);
        rc = km__err_ossl(KM_E_CRYPTO, "RSA-OAEP encryption failed");
    } else {
        *out_len = n;
    }
    EVP_PKEY_CTX_free(c);
    return rc;
}

int km__pkey_rsa_oaep_decrypt(km__pkey *k, const char *md, const uint8_t *label,
                              size_t label_len, const uint8_t *in, size_t in_len, uint8_t *out,
                              size_t out_cap, size_t *out_len)
{
    EVP_PKEY_CTX *c = NULL;
    size_t mod = (size_t)EVP_PKEY_get_size(k), n;
    uint8_t *tmp;
    int rc;

    *out_len = 0;
    if (label_len > INT_MAX || (label == NULL && label_len > 0) || in == NULL)
        return km__err(KM_E_INVALID, "RSA-OAEP: bad label or input");
    if (in_len != mod)
        return km__err(KM_E_INTEGRITY, "an RSA-OAEP ciphertext of this key is %zu bytes, not %zu",
                       mod, in_len);
    if ((tmp = km__salloc(mod)) == NULL)
        return km__err(KM_E_NOMEM, "RSA-OAEP: no secure memory");
    if ((rc = oaep_ctx(k, 0, md, label, label_len, &c)) != KM_OK)
        goto out;
    n = mod;
    if (EVP_PKEY_decrypt(c, tmp, &n, in, in_len) != 1 || n > mod) {
        rc = km__err_ossl(KM_E_INTEGRITY, "RSA-OAEP decryption failed (wrong key, label or "
                          "digest, or altered data)");
        goto out;
    }
    if (out_cap < n) {
        *out_len = n;
        rc = km__err(KM_E_BUFFER, "RSA-OAEP plaintext needs %zu bytes", n);
        goto out;
    }
    if (n > 0)
        memcpy(out, tmp, n);
    *out_len = n;
out:
    EVP_PKEY_CTX_free(c);
    km__sfree(tmp, mod);
    return rc;
}

int km__ecdsa_raw_to_der(const uint8_t *rs, size_t field, uint8_t *out, size_t cap,
                         size_t *out_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, (int)field, NULL), *s = BN_bin2bn(rs + field, (int)field, NULL);
    unsigned char *p = out;
    int n, rc = KM_E_CRYPTO;

    *out_len = 0;
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL;
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t)n > cap || i2d_ECDSA_SIG(es, &p) != n)
        goto out;
    *out_len = (size_t)n;
    rc = KM_OK;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return rc;
}

int km__ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field, uint8_t *out)
{
    const unsigned char *p = der;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG *sig;
    int ok;

    if (der_len > LONG_MAX || field > INT_MAX)
        return KM_E_CRYPTO;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL)
        return KM_E_CRYPTO;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = p == der + der_len && BN_bn2binpad(r, out, (int)field) == (int)field
         && BN_bn2binpad(s, out + field, (int)field) == (int)field;
    ECDSA_SIG_free(sig);
    return ok ? KM_OK : KM_E_CRYPTO;
}

size_t km__b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t done = 0, off = 0;
    /* EVP_EncodeBlock takes an int: encode in slices of whole 3-byte groups */
    while (len - done > 0) {
        size_t n = len - done > 3 * 4096 ? 3 * 4096 : len - done;
        off += (size_t)EVP_EncodeBlock((unsigned char *)out + off, in + done, (int)n);
        done += n;
    }
    out[off] = '\0';
    return off;
}

int km__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t done = 0, off = 0, pad = 0;

    *out_len = 0;
    if (len % 4 != 0)
        return KM_E_CORRUPT;
    if (len > 0 && in[len - 1] == '=')
        pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
    if (len / 4 * 3 - pad > cap)
        return KM_E_CORRUPT;
    /* EVP_DecodeBlock takes an int: decode in slices of whole 4-character groups;
     * it counts padding as zero bytes, taken off at the end */
    while (len - done > 0) {
        size_t n = len - done > 4 * 4096 ? 4 * 4096 : len - done;
        uint8_t tmp[3 * 4096];
        int got = EVP_DecodeBlock(tmp, (const unsigned char *)in + done, (int)n);
        size_t keep;
        if (got < 0 || (size_t)got != n / 4 * 3)
            return KM_E_CORRUPT;
        keep = (size_t)got - (done + n == len ? pad : 0);
        memcpy(out + off, tmp, keep);
        off += keep;
        done += n;
    }
    *out_len = off;
    return KM_OK;
}

int km__random_priv(void *out, size_t len)
{
    if (len == 0)
        return KM_OK;
    if (len > INT_MAX || RAND_priv_bytes(out, (int)len) != 1)
        return km__err_ossl(KM_E_CRYPTO, "random generator failed");
    return KM_OK;
}

/* The SHA-2 digests signers use, fetched once for the process (an implicit
 * fetch on every signature costs a method-store lookup); others per call. */
static const char *const md_names[] = { "SHA256", "SHA384", "SHA512" };
static EVP_MD *md_cache[3];
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch_all(void)
{
    size_t i;
    for (i = 0; i < 3; i++)
        md_cache[i] = EVP_MD_fetch(NULL, md_names[i], NULL);
}

int km__digest(const char *md, const uint8_t *msg, size_t len, uint8_t *out, size_t cap,
               size_t *out_len)
{
    EVP_MD *d = NULL, *own = NULL;
    unsigned int n = 0;
    size_t i;
    int rc = KM_OK;

    *out_len = 0;
    (void)pthread_once(&md_once, md_fetch_all);
    for (i = 0; i < 3 && d == NULL; i++)
        if (strcmp(md, md_names[i]) == 0)
            d = md_cache[i];
    if (d == NULL)
        d = own = EVP_MD_fetch(NULL, md, NULL);
    if (d == NULL)
        return km__err_ossl(KM_E_CRYPTO, "digest %s is not available", md);
    if ((size_t)EVP_MD_get_size(d) > cap)
        rc = km__err(KM_E_INTERNAL, "digest buffer too small");
    else if (EVP_Digest(msg != NULL ? msg : empty_msg, len, out, &n, d, NULL) != 1)
        rc = km__err_ossl(KM_E_CRYPTO, "%s failed", md);
    else
        *out_len = n;
    EVP_MD_free(own);
    return rc;
}

/* ---------------------------------------------------------------- JWK */

/* base64url (no padding) of n bytes as a JSON member `"name":"..."` appended
 * at *off in out (cap); 0 when it does not fit. */
static int jwk_member(char *out, size_t cap, size_t *off, const char *name, const uint8_t *p,
                      size_t n)
{
    size_t need = strlen(name) + 6 + km__b64url_encoded_len(n);
    if (*off + need >= cap)
        return 0;
    *off += (size_t)snprintf(out + *off, cap - *off, ",\"%s\":\"", name);
    km__b64url_encode(p, n, out + *off);
    *off += km__b64url_encoded_len(n);
    out[(*off)++] = '"';
    out[*off] = '\0';
    return 1;
}

/* A big number as big-endian bytes, left-padded to `width` (0: minimal). */
static int bn_param(const km__pkey *k, const char *name, uint8_t *out, size_t cap, size_t width,
                    size_t *n)
{
    BIGNUM *bn = NULL;
    int len, ok = EVP_PKEY_get_bn_param(k, name, &bn) == 1;

    len = ok ? BN_num_bytes(bn) : -1;
    if (!ok || len < 0 || (size_t)len > cap || (width != 0 && (size_t)len > width)) {
        BN_free(bn);
        return 0;
    }
    *n = width != 0 ? width : (size_t)len;
    ok = BN_bn2binpad(bn, out, (int)*n) == (int)*n;
    BN_free(bn);
    return ok;
}

int km__pkey_jwk(const uint8_t *spki, size_t spki_len, char *out, size_t out_cap,
                 size_t *out_len)
{
    km__pkey *k = NULL;
    uint8_t a[600], b[600];
    size_t an = 0, bn = 0, off = 0;
    char tmp[2048];
    int rc, ok = 0;

    *out_len = 0;
    if ((rc = km__pkey_from_spki(&k, spki, spki_len)) != KM_OK)
        return rc;
    if (EVP_PKEY_is_a(k, "EC")) {
        char grp[32];
        const char *crv;
        size_t field;
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, grp, sizeof grp, NULL)
            != 1)
            goto out;
        crv = strcmp(grp, "prime256v1") == 0 || strcmp(grp, "P-256") == 0 ? "P-256"
              : strcmp(grp, "secp384r1") == 0 || strcmp(grp, "P-384") == 0 ? "P-384"
              : strcmp(grp, "secp521r1") == 0 || strcmp(grp, "P-521") == 0 ? "P-521" : NULL;
        if (crv == NULL)
            goto out;
        field = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
        off = (size_t)snprintf(tmp, sizeof tmp, "{\"kty\":\"EC\",\"crv\":\"%s\"", crv);
        ok = bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, a, sizeof a, field, &an)
             && bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, b, sizeof b, field, &bn)
             && jwk_member(tmp, sizeof tmp, &off, "x", a, an)
             && jwk_member(tmp, sizeof tmp, &off, "y", b, bn);
    } else if (EVP_PKEY_is_a(k, "RSA")) {
        off = (size_t)snprintf(tmp, sizeof tmp, "{\"kty\":\"RSA\"");
        ok = bn_param(k, OSSL_PKEY_PARAM_RSA_N, a, sizeof a, 0, &an)
             && bn_param(k, OSSL_PKEY_PARAM_RSA_E, b, sizeof b, 0, &bn)
             && jwk_member(tmp, sizeof tmp, &off, "n", a, an)
             && jwk_member(tmp, sizeof tmp, &off, "e", b, bn);
    } else if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "X25519")) {
        an = sizeof a;
        off = (size_t)snprintf(tmp, sizeof tmp, "{\"kty\":\"OKP\",\"crv\":\"%s\"",
                               EVP_PKEY_is_a(k, "ED25519") ? "Ed25519" : "X25519");
        ok = EVP_PKEY_get_raw_public_key(k, a, &an) == 1
             && jwk_member(tmp, sizeof tmp, &off, "x", a, an);
    } else {
        rc = km__err(KM_E_UNSUPPORTED, "JWK: this key type has no JWK form in libkm");
        goto out;
    }
    if (!ok || off + 2 > sizeof tmp) {
        rc = km__err_ossl(KM_E_CRYPTO, "JWK: cannot read the public key");
        goto out;
    }
    tmp[off++] = '}';
    tmp[off] = '\0';
    *out_len = off;
    if (out == NULL || out_cap < off + 1) {
        *out_len = off + 1;
        rc = km__err(KM_E_BUFFER, "JWK: needs %zu bytes", off + 1);
        goto out;
    }
    memcpy(out, tmp, off + 1);
    rc = KM_OK;
out:
    km__pkey_free(k);
    return rc;
}

/* A JWK member as bytes (base64url, no padding). */
static int jwk_get(json_t *o, const char *name, uint8_t *out, size_t cap, size_t *n)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v))
        return km__err(KM_E_INVALID, "JWK: \"%s\" is missing or not a string", name);
    if (km__b64url_decode(json_string_value(v), json_string_length(v), out, cap, n) != KM_OK)
        return km__err(KM_E_INVALID, "JWK: \"%s\" is not base64url of a fitting length", name);
    return KM_OK;
}

int km__jwk_to_spki(const uint8_t *jwk, size_t len, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
    json_error_t je;
    json_t *o = json_loadb((const char *)jwk, len, JSON_REJECT_DUPLICATES, &je);
    const char *kty, *crv;
    uint8_t a[600], b[600];
    size_t an = 0, bn = 0;
    km__pkey *k = NULL;
    int rc;

    *out_len = 0;
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        return km__err(KM_E_INVALID, "JWK: not a JSON object");
    }
    kty = json_string_value(json_object_get(o, "kty"));
    crv = json_string_value(json_object_get(o, "crv"));
    if (json_object_get(o, "d") != NULL || json_object_get(o, "p") != NULL) {
        rc = km__err(KM_E_INVALID, "JWK: a private key; only public keys are imported as JWK");
        goto out;
    }
    if (kty == NULL) {
        rc = km__err(KM_E_INVALID, "JWK: \"kty\" is missing");
    } else if (strcmp(kty, "EC") == 0) {
        const char *grp = crv == NULL ? NULL : strcmp(crv, "P-256") == 0 ? "P-256"
                          : strcmp(crv, "P-384") == 0 ? "P-384"
                          : strcmp(crv, "P-521") == 0 ? "P-521" : NULL;
        if (grp == NULL)
            rc = km__err(KM_E_INVALID, "JWK: EC \"crv\" must be P-256, P-384 or P-521");
        else if ((rc = jwk_get(o, "x", a, sizeof a, &an)) == KM_OK
                 && (rc = jwk_get(o, "y", b, sizeof b, &bn)) == KM_OK) {
            size_t field = strcmp(grp, "P-256") == 0 ? 32 : strcmp(grp, "P-384") == 0 ? 48 : 66;
            if (an != field || bn != field)   /* RFC 7518 6.2.1.2: the full field length */
                rc = km__err(KM_E_INVALID, "JWK: \"x\" and \"y\" of %s are %zu bytes", grp, field);
            else if (km__pkey_from_ec_xy(&k, grp, a, an, b, bn) != KM_OK)
                rc = km__err(KM_E_INVALID, "JWK: the point is not on %s", grp);
        }
    } else if (strcmp(kty, "RSA") == 0) {
        if ((rc = jwk_get(o, "n", a, sizeof a, &an)) == KM_OK
            && (rc = jwk_get(o, "e", b, sizeof b, &bn)) == KM_OK
            && km__pkey_from_rsa(&k, a, an, b, bn) != KM_OK)
            rc = km__err(KM_E_INVALID, "JWK: not an RSA public key");
    } else if (strcmp(kty, "OKP") == 0) {
        const char *alg = crv == NULL ? NULL : strcmp(crv, "Ed25519") == 0 ? "ED25519"
                          : strcmp(crv, "X25519") == 0 ? "X25519" : NULL;
        if (alg == NULL)
            rc = km__err(KM_E_INVALID, "JWK: OKP \"crv\" must be Ed25519 or X25519");
        else if ((rc = jwk_get(o, "x", a, sizeof a, &an)) == KM_OK
                 && (an != 32
                     || (k = EVP_PKEY_new_raw_public_key_ex(NULL, alg, NULL, a, an)) == NULL))
            rc = km__err_ossl(KM_E_INVALID, "JWK: \"x\" is not a %s public key", crv);
    } else {
        rc = km__err(KM_E_INVALID, "JWK: \"kty\" must be EC, RSA or OKP");
    }
    if (rc == KM_OK)
        rc = km__pkey_spki(k, out, out_cap, out_len);
out:
    km__pkey_free(k);
    json_decref(o);
    return rc;
}
