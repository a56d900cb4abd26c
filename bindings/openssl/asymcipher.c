/*
 * asymcipher.c - RSA-OAEP decryption through libkm (km_rsa_decrypt).
 *
 * libkm decrypts OAEP with SHA-256, MGF1-SHA-256 and an empty label only;
 * anything else (PKCS#1 v1.5, other digests, a label) is refused with a
 * clear error rather than attempted. Encryption is a public operation and
 * runs on the public key in the provider's library context.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

typedef struct {
    kmp_prov *prov;
    kmp_key *key;
    int pad;              /* RSA_PKCS1_OAEP_PADDING, or what was asked */
    const char *md;       /* OAEP digest, canonical; NULL = not SHA-2 */
    const char *mgf1;     /* NULL = the OAEP digest */
    int bad_md;           /* an unsupported digest was set */
    int label;            /* a non-empty label was set */
} kmp_asym;

static void *asym_newctx(void *provctx)
{
    kmp_asym *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    a->prov = provctx;
    a->pad = RSA_PKCS1_PADDING; /* OpenSSL's default; we will ask for OAEP */
    a->md = "SHA256";
    return a;
}

static void asym_freectx(void *ctx)
{
    kmp_asym *a = ctx;

    if (a == NULL)
        return;
    kmp_key_free(a->key);
    free(a);
}

static void *asym_dupctx(void *ctx)
{
    kmp_asym *a = ctx, *d = malloc(sizeof *d);

    if (d == NULL)
        return NULL;
    *d = *a;
    if (d->key != NULL)
        __atomic_add_fetch(&d->key->refs, 1, __ATOMIC_ACQ_REL);
    return d;
}

static int asym_set_ctx_params(void *ctx, const OSSL_PARAM params[])
{
    kmp_asym *a = ctx;
    const OSSL_PARAM *p;
    const char *s = NULL;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int pad = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            pad = strcmp(s, "oaep") == 0 ? RSA_PKCS1_OAEP_PADDING
                  : strcmp(s, "pkcs1") == 0 ? RSA_PKCS1_PADDING : -1;
        } else if (!OSSL_PARAM_get_int(p, &pad)) {
            return 0;
        }
        a->pad = pad;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
            return 0;
        a->md = kmp_md_canon(s);
        a->bad_md |= a->md == NULL;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
            return 0;
        a->mgf1 = kmp_md_canon(s);
        a->bad_md |= a->mgf1 == NULL;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL)
        a->label = p->data_size > 0;
    return 1;
}

static const OSSL_PARAM *asym_settable(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
        OSSL_PARAM_END
    };
    (void)ctx;
    (void)provctx;
    return t;
}

static int asym_get_ctx_params(void *ctx, OSSL_PARAM params[])
{
    kmp_asym *a = ctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int ok = p->data_type == OSSL_PARAM_INTEGER
                 ? OSSL_PARAM_set_int(p, a->pad)
                 : OSSL_PARAM_set_utf8_string(p, a->pad == RSA_PKCS1_OAEP_PADDING ? "oaep" : "pkcs1");
        if (!ok)
            return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, a->md != NULL ? a->md : ""))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, a->mgf1 ? a->mgf1 : a->md ? a->md : ""))
        return 0;
    return 1;
}

static const OSSL_PARAM *asym_gettable(void *ctx, void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END
    };
    (void)ctx;
    (void)provctx;
    return t;
}

static int asym_init(void *ctx, void *keydata, const OSSL_PARAM params[])
{
    kmp_asym *a = ctx;
    kmp_key *k = keydata;

    if (k == NULL || k->pub == NULL)
        return 0;
    if (k != a->key) {
        __atomic_add_fetch(&k->refs, 1, __ATOMIC_ACQ_REL);
        kmp_key_free(a->key);
        a->key = k;
    }
    return asym_set_ctx_params(a, params);
}

static int asym_decrypt(void *ctx, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen)
{
    kmp_asym *a = ctx;
    km_secret *pt = NULL;
    size_t mod;
    int rc;

    if (a->key == NULL)
        return 0;
    mod = (size_t)EVP_PKEY_get_size(a->key->pub);
    if (out == NULL) {
        *outlen = mod;
        return 1;
    }
    if (a->key->key == NULL) {
        /* a key that is not libkm's (see provider.h): the default provider decrypts */
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(a->prov->libctx, a->key->pub, NULL);
        int ok;
        *outlen = outsize;
        ok = a->key->has_priv && c != NULL && EVP_PKEY_decrypt_init(c) == 1
             && EVP_PKEY_CTX_set_rsa_padding(c, a->pad) > 0
             && (a->pad != RSA_PKCS1_OAEP_PADDING
                 || (a->md != NULL && EVP_PKEY_CTX_set_rsa_oaep_md_name(c, a->md, NULL) > 0
                     && EVP_PKEY_CTX_set_rsa_mgf1_md_name(c, a->mgf1 ? a->mgf1 : a->md, NULL) > 0))
             && EVP_PKEY_decrypt(c, out, outlen, in, inlen) == 1;
        EVP_PKEY_CTX_free(c);
        return ok;
    }
    if (a->pad != RSA_PKCS1_OAEP_PADDING || a->bad_md || a->md == NULL
        || strcmp(a->md, "SHA256") != 0 || (a->mgf1 != NULL && strcmp(a->mgf1, "SHA256") != 0)
        || a->label) {
        kmp_error(a->prov, KMP_R_UNSUPPORTED, "libkm decrypts RSA-OAEP with SHA-256, "
                  "MGF1-SHA-256 and no label only (-pkeyopt rsa_padding_mode:oaep "
                  "-pkeyopt rsa_oaep_md:sha256)");
        return 0;
    }
    rc = km_rsa_decrypt(a->key->key, a->key->version, in, inlen, &pt);
    if (rc != KM_OK) {
        char what[KM_KEY_NAME_MAX + 32];
        snprintf(what, sizeof what, "decrypting with key '%s'", km_key_name(a->key->key));
        kmp_error_km(a->prov, rc, what);
        return 0;
    }
    if (km_secret_len(pt) > outsize) {
        km_secret_free(pt);
        kmp_error(a->prov, KMP_R_INTERNAL, "output buffer too small");
        return 0;
    }
    memcpy(out, km_secret_data(pt), km_secret_len(pt));
    *outlen = km_secret_len(pt);
    km_secret_free(pt);
    return 1;
}

/* Encryption needs only the public key: done in our library context. */
static int asym_encrypt(void *ctx, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen)
{
    kmp_asym *a = ctx;
    EVP_PKEY_CTX *c;
    int ok;

    if (a->key == NULL)
        return 0;
    if (out == NULL) {
        *outlen = (size_t)EVP_PKEY_get_size(a->key->pub);
        return 1;
    }
    c = EVP_PKEY_CTX_new_from_pkey(a->prov->libctx, a->key->pub, NULL);
    *outlen = outsize;
    ok = c != NULL && EVP_PKEY_encrypt_init(c) == 1
         && EVP_PKEY_CTX_set_rsa_padding(c, a->pad) > 0
         && (a->pad != RSA_PKCS1_OAEP_PADDING
             || (a->md != NULL && EVP_PKEY_CTX_set_rsa_oaep_md_name(c, a->md, NULL) > 0
                 && EVP_PKEY_CTX_set_rsa_mgf1_md_name(c, a->mgf1 ? a->mgf1 : a->md, NULL) > 0))
         && EVP_PKEY_encrypt(c, out, outlen, in, inlen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

const OSSL_DISPATCH kmp_asym_rsa[] = {
    { OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))asym_newctx },
    { OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))asym_freectx },
    { OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))asym_dupctx },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))asym_init },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))asym_encrypt },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))asym_init },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))asym_decrypt },
    { OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))asym_get_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))asym_gettable },
    { OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))asym_set_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))asym_settable },
    { 0, NULL }
};
