/*
 * signature.c - ECDSA, RSA (PSS and PKCS#1 v1.5) and Ed25519 signatures.
 *
 * Signing always calls libkm (km_sign_digest, or km_sign for Ed25519), so the
 * key's lifecycle, usage mask, policy and audit apply to every signature; a
 * refusal is raised as an OpenSSL error carrying libkm's message. Hashing and
 * verification are public work, done in the provider's own library context.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

enum kind { KIND_EC, KIND_RSA, KIND_ED };

typedef struct {
    kmp_prov *prov;
    enum kind kind;
    kmp_key *key;         /* a reference held while the context lives */
    int op;               /* 1 sign, 0 verify */
    const char *md;       /* canonical digest name, or NULL (not set) */
    int pad;              /* RSA: RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen;          /* RSA-PSS: RSA_PSS_SALTLEN_* or bytes */
    const char *mgf1;     /* RSA-PSS: canonical, or NULL = the digest */
    EVP_MD_CTX *mdctx;    /* digest-sign/verify hashing (EC, RSA) */
} kmp_sig;

static void *sig_newctx(void *provctx, enum kind kind)
{
    kmp_sig *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->prov = provctx;
    s->kind = kind;
    s->pad = RSA_PKCS1_PADDING;
    s->saltlen = RSA_PSS_SALTLEN_DIGEST;
    return s;
}

static void *ec_newctx(void *provctx, const char *propq) { (void)propq; return sig_newctx(provctx, KIND_EC); }
static void *rsa_newctx(void *provctx, const char *propq) { (void)propq; return sig_newctx(provctx, KIND_RSA); }
static void *ed_newctx(void *provctx, const char *propq) { (void)propq; return sig_newctx(provctx, KIND_ED); }

static void sig_freectx(void *ctx)
{
    kmp_sig *s = ctx;

    if (s == NULL)
        return;
    EVP_MD_CTX_free(s->mdctx);
    kmp_key_free(s->key);
    free(s);
}

static void *sig_dupctx(void *ctx)
{
    kmp_sig *s = ctx, *d = malloc(sizeof *d);

    if (d == NULL)
        return NULL;
    *d = *s;
    d->mdctx = NULL;
    if (s->mdctx != NULL) {
        if ((d->mdctx = EVP_MD_CTX_new()) == NULL || EVP_MD_CTX_copy_ex(d->mdctx, s->mdctx) != 1) {
            EVP_MD_CTX_free(d->mdctx);
            free(d);
            return NULL;
        }
    }
    if (d->key != NULL)
        __atomic_add_fetch(&d->key->refs, 1, __ATOMIC_ACQ_REL);
    return d;
}

/* ------------------------------------------------------------- params */

static int set_md(kmp_sig *s, const char *name, const char **slot)
{
    const char *c = kmp_md_canon(name);

    if (c == NULL) {
        kmp_error(s->prov, KMP_R_UNSUPPORTED, "digest '%.40s': libkm signs with SHA-256, SHA-384 "
                  "or SHA-512", name != NULL ? name : "");
        return 0;
    }
    *slot = c;
    return 1;
}

static int sig_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
    kmp_sig *s = ctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(s, name, &s->md))
            return 0;
    }
    if (s->kind != KIND_RSA)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;
        const char *str = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &str))
                return 0;
            pad = strcmp(str, "pss") == 0 ? RSA_PKCS1_PSS_PADDING
                  : strcmp(str, "pkcs1") == 0 ? RSA_PKCS1_PADDING : 0;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            return 0;
        }
        if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) {
            kmp_error(s->prov, KMP_R_UNSUPPORTED, "RSA signatures in libkm use PSS or PKCS#1 v1.5 "
                      "padding");
            return 0;
        }
        s->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        int n = 0;
        const char *str = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &str))
                return 0;
            n = strcmp(str, "digest") == 0 ? RSA_PSS_SALTLEN_DIGEST
                : strcmp(str, "max") == 0 ? RSA_PSS_SALTLEN_MAX
                : strcmp(str, "auto") == 0 ? RSA_PSS_SALTLEN_AUTO : atoi(str);
        } else if (!OSSL_PARAM_get_int(p, &n)) {
            return 0;
        }
        s->saltlen = n;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(s, name, &s->mgf1))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_settable(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };
    (void)ctx;
    (void)provctx;
    return t;
}

/* A verify (or, for a key that is not libkm's, sign) context on the key in
 * our library context, set up as `s`. */
static EVP_PKEY_CTX *pub_ctx(kmp_sig *s, const char *md, int sign)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(s->prov->libctx, s->key->pub, NULL);
    char pss[] = "pss", pkcs1[] = "pkcs1";
    OSSL_PARAM p[5], *q = p;
    int salt = s->saltlen;

    if (c == NULL)
        return NULL;
    if (md != NULL)
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, (char *)(uintptr_t)md, 0);
    if (s->kind == KIND_RSA) {
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE,
                                                s->pad == RSA_PKCS1_PSS_PADDING ? pss : pkcs1, 0);
        if (s->pad == RSA_PKCS1_PSS_PADDING) {
            if (!sign && s->op && salt == RSA_PSS_SALTLEN_DIGEST && md != NULL)
                salt = (int)kmp_md_size(md);
            *q++ = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &salt);
            if (s->mgf1 != NULL || md != NULL)
                *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
                                                        (char *)(uintptr_t)(s->mgf1 ? s->mgf1 : md), 0);
        }
    }
    *q = OSSL_PARAM_construct_end();
    if ((sign ? EVP_PKEY_sign_init(c) : EVP_PKEY_verify_init(c)) != 1
        || EVP_PKEY_CTX_set_params(c, p) != 1) {
        EVP_PKEY_CTX_free(c);
        return NULL;
    }
    return c;
}

static int sig_get_ctx_params(void *ctx, OSSL_PARAM params[])
{
    kmp_sig *s = ctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
        static const unsigned char ed25519_aid[] = { 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70 };
        if (s->key == NULL)
            return 0;
        if (s->kind == KIND_ED) {
            if (!OSSL_PARAM_set_octet_string(p, ed25519_aid, sizeof ed25519_aid))
                return 0;
        } else {
            /* the default provider's DER for the same public key and settings */
            unsigned char aid[256];
            OSSL_PARAM q[2];
            EVP_PKEY_CTX *c = pub_ctx(s, s->md != NULL ? s->md : "SHA256", 0);
            int ok;
            q[0] = OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid,
                                                     sizeof aid);
            q[1] = OSSL_PARAM_construct_end();
            ok = c != NULL && EVP_PKEY_CTX_get_params(c, q) == 1 && q[0].return_size > 0
                 && q[0].return_size <= sizeof aid;
            EVP_PKEY_CTX_free(c);
            if (!ok || !OSSL_PARAM_set_octet_string(p, aid, q[0].return_size))
                return 0;
        }
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, s->md != NULL ? s->md : ""))
        return 0;
    if (s->kind == KIND_RSA) {
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
            int ok = p->data_type == OSSL_PARAM_INTEGER
                     ? OSSL_PARAM_set_int(p, s->pad)
                     : OSSL_PARAM_set_utf8_string(p, s->pad == RSA_PKCS1_PSS_PADDING ? "pss" : "pkcs1");
            if (!ok)
                return 0;
        }
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
            int ok = p->data_type == OSSL_PARAM_INTEGER ? OSSL_PARAM_set_int(p, s->saltlen)
                     : OSSL_PARAM_set_utf8_string(p, s->saltlen == RSA_PSS_SALTLEN_DIGEST ? "digest"
                                                     : s->saltlen == RSA_PSS_SALTLEN_MAX ? "max"
                                                     : s->saltlen == RSA_PSS_SALTLEN_AUTO ? "auto"
                                                     : "digest");
            if (!ok)
                return 0;
        }
        if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL
            && !OSSL_PARAM_set_utf8_string(p, s->mgf1 ? s->mgf1 : s->md ? s->md : ""))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };
    (void)ctx;
    (void)provctx;
    return t;
}

/* --------------------------------------------------------------- init */

static int sig_init(kmp_sig *s, void *keydata, const OSSL_PARAM params[], int op)
{
    kmp_key *k = keydata;

    if (k == NULL || k->pub == NULL)
        return 0;
    if (op && k->key == NULL && !k->has_priv) {
        kmp_error(s->prov, KMP_R_NO_PRIVATE, "this key has no private half in libkm");
        return 0;
    }
    if (k != s->key) {
        __atomic_add_fetch(&k->refs, 1, __ATOMIC_ACQ_REL);
        kmp_key_free(s->key);
        s->key = k;
    }
    s->op = op;
    return sig_set_ctx_params(s, params);
}

static int sig_sign_init(void *ctx, void *keydata, const OSSL_PARAM params[])
{
    return sig_init(ctx, keydata, params, 1);
}

static int sig_verify_init(void *ctx, void *keydata, const OSSL_PARAM params[])
{
    return sig_init(ctx, keydata, params, 0);
}

/* ---------------------------------------------------------------- sign */

/* A key that is not libkm's (see provider.h): the default provider signs. */
static int sign_passthrough(kmp_sig *s, const char *md, unsigned char *sig, size_t *siglen,
                            size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    EVP_PKEY_CTX *c = pub_ctx(s, md, 1);
    size_t n = sigsize;
    int ok = c != NULL && EVP_PKEY_sign(c, sig, &n, tbs, tbslen) == 1;

    EVP_PKEY_CTX_free(c);
    if (ok)
        *siglen = n;
    return ok;
}

/* Signs a digest of `md` (canonical) with libkm. */
static int sign_hash(kmp_sig *s, const char *md, unsigned char *sig, size_t *siglen,
                     size_t sigsize, const unsigned char *dgst, size_t dlen)
{
    uint32_t flags = 0;
    size_t n = 0;
    int rc;

    if (s->key->key == NULL)
        return sign_passthrough(s, md, sig, siglen, sigsize, dgst, dlen);

    if (s->kind == KIND_RSA && s->pad == RSA_PKCS1_PADDING) {
        flags = KM_SIG_PKCS1;
    } else if (s->kind == KIND_RSA) {
        if ((s->saltlen != RSA_PSS_SALTLEN_DIGEST && s->saltlen != (int)kmp_md_size(md))
            || (s->mgf1 != NULL && strcmp(s->mgf1, md) != 0)) {
            kmp_error(s->prov, KMP_R_UNSUPPORTED, "libkm signs RSA-PSS with MGF1 of the digest "
                      "and a salt as long as the digest (rsa_pss_saltlen:digest)");
            return 0;
        }
    }
    rc = km_sign_digest(s->key->key, s->key->version, flags, md, dgst, dlen, sig, sigsize, &n);
    if (rc != KM_OK) {
        char what[KM_KEY_NAME_MAX + 32];
        snprintf(what, sizeof what, "signing with key '%s'", km_key_name(s->key->key));
        kmp_error_km(s->prov, rc, what);
        return 0;
    }
    *siglen = n;
    return 1;
}

static int sig_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    kmp_sig *s = ctx;
    const char *md = s->md;

    if (s->key == NULL || !s->op)
        return 0;
    if (sig == NULL) {
        *siglen = (size_t)EVP_PKEY_get_size(s->key->pub);
        return 1;
    }
    if (s->kind == KIND_ED) {
        kmp_error(s->prov, KMP_R_UNSUPPORTED, "Ed25519 signs messages: use -rawin");
        return 0;
    }
    if (s->key->key == NULL)
        return sign_passthrough(s, md, sig, siglen, sigsize, tbs, tbslen);
    if (md == NULL && s->kind == KIND_EC)
        md = tbslen == 32 ? "SHA256" : tbslen == 48 ? "SHA384" : tbslen == 64 ? "SHA512" : NULL;
    if (md == NULL || kmp_md_size(md) != tbslen) {
        kmp_error(s->prov, KMP_R_UNSUPPORTED, "libkm signs a SHA-256, SHA-384 or SHA-512 digest: "
                  "set the digest (-pkeyopt digest:sha256) and pass a digest of its length");
        return 0;
    }
    return sign_hash(s, md, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_verify(void *ctx, const unsigned char *sig, size_t siglen,
                      const unsigned char *tbs, size_t tbslen)
{
    kmp_sig *s = ctx;
    EVP_PKEY_CTX *c;
    const char *md = s->md;
    int ok;

    if (s->key == NULL || s->kind == KIND_ED)
        return 0;
    if (md == NULL && s->kind == KIND_EC)
        md = tbslen == 32 ? "SHA256" : tbslen == 48 ? "SHA384" : tbslen == 64 ? "SHA512" : NULL;
    if ((c = pub_ctx(s, md, 0)) == NULL)
        return 0;
    ok = EVP_PKEY_verify(c, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* ------------------------------------------------ digest sign/verify */

static int sig_digest_init(void *ctx, const char *mdname, void *keydata,
                           const OSSL_PARAM params[], int op)
{
    kmp_sig *s = ctx;
    EVP_MD *md;
    int ok;

    if (!sig_init(s, keydata, params, op))
        return 0;
    if (mdname != NULL && mdname[0] != '\0' && !set_md(s, mdname, &s->md))
        return 0;
    if (s->md == NULL)
        s->md = s->key->type == KM_KEY_EC_P384 ? "SHA384"
                : s->key->type == KM_KEY_EC_P521 ? "SHA512" : "SHA256";
    if (s->mdctx == NULL && (s->mdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    md = EVP_MD_fetch(s->prov->libctx, s->md, NULL);
    ok = md != NULL && EVP_DigestInit_ex2(s->mdctx, md, NULL) == 1;
    EVP_MD_free(md);
    return ok;
}

static int sig_dsign_init(void *ctx, const char *mdname, void *keydata, const OSSL_PARAM params[])
{
    return sig_digest_init(ctx, mdname, keydata, params, 1);
}

static int sig_dverify_init(void *ctx, const char *mdname, void *keydata,
                            const OSSL_PARAM params[])
{
    return sig_digest_init(ctx, mdname, keydata, params, 0);
}

static int sig_digest_update(void *ctx, const unsigned char *data, size_t len)
{
    kmp_sig *s = ctx;
    return s->mdctx != NULL && EVP_DigestUpdate(s->mdctx, data, len) == 1;
}

static int sig_dsign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    kmp_sig *s = ctx;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;

    if (s->key == NULL || s->mdctx == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = (size_t)EVP_PKEY_get_size(s->key->pub);
        return 1;
    }
    if (EVP_DigestFinal_ex(s->mdctx, d, &dl) != 1)
        return 0;
    return sign_hash(s, s->md, sig, siglen, sigsize, d, dl);
}

static int sig_dverify_final(void *ctx, const unsigned char *sig, size_t siglen)
{
    kmp_sig *s = ctx;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_PKEY_CTX *c;
    int ok;

    if (s->key == NULL || s->mdctx == NULL || EVP_DigestFinal_ex(s->mdctx, d, &dl) != 1)
        return 0;
    if ((c = pub_ctx(s, s->md, 0)) == NULL)
        return 0;
    ok = EVP_PKEY_verify(c, sig, siglen, d, dl) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* --------------------------------------------------- Ed25519 (one-shot) */

static int ed_dinit(void *ctx, const char *mdname, void *keydata, const OSSL_PARAM params[],
                    int op)
{
    if (mdname != NULL && mdname[0] != '\0') {
        kmp_error(((kmp_sig *)ctx)->prov, KMP_R_UNSUPPORTED, "Ed25519 takes no digest");
        return 0;
    }
    return sig_init(ctx, keydata, params, op);
}

static int ed_dsign_init(void *ctx, const char *mdname, void *keydata, const OSSL_PARAM params[])
{
    return ed_dinit(ctx, mdname, keydata, params, 1);
}

static int ed_dverify_init(void *ctx, const char *mdname, void *keydata, const OSSL_PARAM params[])
{
    return ed_dinit(ctx, mdname, keydata, params, 0);
}

static int ed_verify_with(kmp_sig *s, const unsigned char *sig, size_t siglen,
                          const unsigned char *tbs, size_t tbslen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    int ok = m != NULL
             && EVP_DigestVerifyInit_ex(m, NULL, NULL, s->prov->libctx, NULL, s->key->pub, NULL) == 1
             && EVP_DigestVerify(m, sig, siglen, tbs, tbslen) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

static int ed_dsign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    kmp_sig *s = ctx;
    size_t n = 0;
    int rc;

    if (s->key == NULL || !s->op)
        return 0;
    if (sig == NULL) {
        *siglen = 64;
        return 1;
    }
    if (s->key->key == NULL) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        int ok;
        *siglen = sigsize;
        ok = m != NULL
             && EVP_DigestSignInit_ex(m, NULL, NULL, s->prov->libctx, NULL, s->key->pub, NULL) == 1
             && EVP_DigestSign(m, sig, siglen, tbs, tbslen) == 1;
        EVP_MD_CTX_free(m);
        return ok;
    }
    rc = km_sign(s->key->key, KM_SIG_RAW, tbs, tbslen, sig, sigsize, &n);
    if (rc != KM_OK) {
        char what[KM_KEY_NAME_MAX + 32];
        snprintf(what, sizeof what, "signing with key '%s'", km_key_name(s->key->key));
        kmp_error_km(s->prov, rc, what);
        return 0;
    }
    /* km_sign signs with the primary: it must be the version this object pinned */
    if (!ed_verify_with(s, sig, n, tbs, tbslen)) {
        memset(sig, 0, n);
        kmp_error(s->prov, KMP_R_LIBKM, "key '%s': version %u is no longer the primary version",
                  km_key_name(s->key->key), s->key->version);
        return 0;
    }
    *siglen = n;
    return 1;
}

static int ed_dverify(void *ctx, const unsigned char *sig, size_t siglen,
                      const unsigned char *tbs, size_t tbslen)
{
    kmp_sig *s = ctx;
    return s->key != NULL && ed_verify_with(s, sig, siglen, tbs, tbslen);
}

/* ------------------------------------------------------------ tables */

#define KMP_SIG_COMMON(newctx)                                                                  \
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))newctx },                                     \
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx },                               \
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx },                                 \
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params },                 \
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable },                  \
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params },                 \
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable }

#define KMP_SIG_HASHED                                                                          \
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init },                           \
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign },                                     \
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_verify_init },                       \
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify },                                 \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_dsign_init },                   \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_update },              \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_dsign_final },                 \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))sig_dverify_init },               \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_digest_update },            \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))sig_dverify_final }

const OSSL_DISPATCH kmp_signature_ecdsa[] = { KMP_SIG_COMMON(ec_newctx), KMP_SIG_HASHED, { 0, NULL } };
const OSSL_DISPATCH kmp_signature_rsa[] = { KMP_SIG_COMMON(rsa_newctx), KMP_SIG_HASHED, { 0, NULL } };
const OSSL_DISPATCH kmp_signature_ed25519[] = {
    KMP_SIG_COMMON(ed_newctx),
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))ed_dsign_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))ed_dsign },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))ed_dverify_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))ed_dverify },
    { 0, NULL }
};
