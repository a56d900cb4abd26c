/* check_p11helper.c - what pkcs11-helper does for libkm (km/pkcs11.h), against
 * temporary SoftHSM2 tokens per test: token discovery with stable serialised
 * ids, the PIN callback (retry count, wrong then right PIN, cancel), the PIN
 * cache period, a smart-card-like key (EC key pair + certificate with the
 * same CKA_ID) linked into a vault and signing, the raw layer's sessions
 * surviving pkcs11-helper's initialise/terminate in one process, and fork. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include <km.h>
#include <km/pkcs11.h>

#include "testutil.h"

#define MODULE TU_P11_MODULE
#define PIN "5678"

static char *dir;
static km_ctx *ctx;
static tu_softhsm hsm;      /* this test's SoftHSM2 configuration and token directory */

/* ------------------------------------------------------------ fixture */

static void setup(void)
{
    tu_setup(&dir, NULL, NULL);
    tu_softhsm_setup(&hsm, dir);
    unsetenv("KM_PKCS11_PIN");
    tu_softhsm_token("km-a", PIN);
    tu_softhsm_token("km-b", PIN);
    ctx = tu_vault(dir);
}

static void teardown(void)
{
    km_pkcs11_set_pin_callback(NULL, NULL);
    tu_teardown(&dir, &ctx);
    tu_softhsm_cleanup(&hsm);
}

/* ------------------------------------------------------- PIN callback */

struct pins {
    int calls;
    unsigned retries[8];
    char label[64];
    const char *give[8];     /* per call: the PIN to give, NULL = cancel */
};

static int pin_cb(void *arg, const char *label, unsigned retry, char *pin, size_t cap)
{
    struct pins *p = arg;
    const char *g;

    if (p->calls < 8)
        p->retries[p->calls] = retry;
    snprintf(p->label, sizeof p->label, "%s", label);
    g = p->calls < 8 ? p->give[p->calls] : NULL;
    p->calls++;
    if (g == NULL || strlen(g) + 1 > cap)
        return -1;
    memcpy(pin, g, strlen(g) + 1);
    return 0;
}

/* ------------------------------------------------ a smart-card-like key */

struct raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *r, const char *label)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, i;
    CK_TOKEN_INFO ti;
    char l[33];

    r->fl = p11_kit_module_load(MODULE, 0);
    ck_assert_ptr_nonnull(r->fl);
    ck_assert_int_eq(p11_kit_module_initialize(r->fl), CKR_OK);
    ck_assert_int_eq(r->fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(r->fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        memcpy(l, ti.label, 32);
        l[32] = '\0';
        if (strncmp(l, label, strlen(label)) == 0 && l[strlen(label)] == ' ')
            break;
    }
    ck_assert_msg(i < n, "token %s not found", label);
    ck_assert_int_eq(r->fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                          NULL, &r->s), CKR_OK);
    ck_assert_int_eq(r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)PIN, 4), CKR_OK);
}

static void raw_close(struct raw *r)
{
    (void)r->fl->C_Logout(r->s);
    (void)r->fl->C_CloseSession(r->s);
    (void)p11_kit_module_finalize(r->fl);
    p11_kit_module_release(r->fl);
}

/* Generates an EC P-256 key pair in the token and stores a certificate for
 * its public key with the same CKA_ID (issued by a throwaway CA key), as a
 * smart card carries. Returns the certificate (caller frees). */
static X509 *make_card_key_type(const char *label, const char *cn, int rsa);

static X509 *make_card_key(const char *label, const char *cn)
{
    return make_card_key_type(label, cn, 0);
}

/* The public key of an RSA key pair generated in the token (n and e read back). */
static EVP_PKEY *raw_rsa_pub(struct raw *r, CK_OBJECT_HANDLE h)
{
    uint8_t n[512], e[16];
    CK_ATTRIBUTE t[2] = { { CKA_MODULUS, n, sizeof n }, { CKA_PUBLIC_EXPONENT, e, sizeof e } };
    OSSL_PARAM_BLD *bld;
    OSSL_PARAM *params;
    EVP_PKEY_CTX *pc;
    EVP_PKEY *pub = NULL;
    BIGNUM *bn, *be;

    ck_assert_int_eq(r->fl->C_GetAttributeValue(r->s, h, t, 2), CKR_OK);
    bn = BN_bin2bn(n, (int)t[0].ulValueLen, NULL);
    be = BN_bin2bn(e, (int)t[1].ulValueLen, NULL);
    bld = OSSL_PARAM_BLD_new();
    ck_assert(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn));
    ck_assert(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be));
    params = OSSL_PARAM_BLD_to_param(bld);
    pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    ck_assert_int_eq(EVP_PKEY_fromdata_init(pc), 1);
    ck_assert_int_eq(EVP_PKEY_fromdata(pc, &pub, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pub;
}

static X509 *make_card_key_type(const char *label, const char *cn, int rsa)
{
    static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_CLASS ccls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ctype = CKC_X_509;
    uint8_t id[8] = { 0xca, 0x7d, 0, 0, 0, 0, 0, 1 }, point[200], *der = NULL, *subj = NULL;
    CK_ATTRIBUTE pub_t[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_VERIFY, &yes, sizeof yes },
        { CKA_ID, id, sizeof id }, { CKA_EC_PARAMS, (void *)(uintptr_t)p256, sizeof p256 },
    };
    CK_ATTRIBUTE priv_t[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_PRIVATE, &yes, sizeof yes },
        { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_SIGN, &yes, sizeof yes },
        { CKA_ID, id, sizeof id },
    };
    CK_ATTRIBUTE pt = { CKA_EC_POINT, point, sizeof point };
    CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_OBJECT_HANDLE hpub, hpriv, hcert;
    struct raw r;
    const unsigned char *q;
    ASN1_OCTET_STRING *os;
    OSSL_PARAM_BLD *bld;
    OSSL_PARAM *params;
    EVP_PKEY_CTX *pc;
    EVP_PKEY *pub = NULL, *ca;
    X509 *x;
    X509_NAME *name;
    int der_len, subj_len;

    raw_open(&r, label);
    if (rsa) {
        static const uint8_t e65537[] = { 1, 0, 1 };
        CK_ULONG bits = 2048;
        CK_ATTRIBUTE rpub_t[] = {
            { CKA_TOKEN, &yes, sizeof yes }, { CKA_VERIFY, &yes, sizeof yes },
            { CKA_ENCRYPT, &yes, sizeof yes }, { CKA_ID, id, sizeof id },
            { CKA_MODULUS_BITS, &bits, sizeof bits },
            { CKA_PUBLIC_EXPONENT, (void *)(uintptr_t)e65537, sizeof e65537 },
        };
        CK_ATTRIBUTE rpriv_t[] = {
            { CKA_TOKEN, &yes, sizeof yes }, { CKA_PRIVATE, &yes, sizeof yes },
            { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_SIGN, &yes, sizeof yes },
            { CKA_DECRYPT, &yes, sizeof yes }, { CKA_ID, id, sizeof id },
        };
        m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        ck_assert_int_eq(r.fl->C_GenerateKeyPair(r.s, &m, rpub_t, 6, rpriv_t, 6, &hpub, &hpriv),
                         CKR_OK);
        pub = raw_rsa_pub(&r, hpub);
        goto cert;
    }
    ck_assert_int_eq(r.fl->C_GenerateKeyPair(r.s, &m, pub_t, 4, priv_t, 5, &hpub, &hpriv),
                     CKR_OK);
    ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hpub, &pt, 1), CKR_OK);
    q = point;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)pt.ulValueLen);
    ck_assert_ptr_nonnull(os);
    bld = OSSL_PARAM_BLD_new();
    ck_assert(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0));
    ck_assert(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                               ASN1_STRING_get0_data(os),
                                               (size_t)ASN1_STRING_length(os)));
    params = OSSL_PARAM_BLD_to_param(bld);
    pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    ck_assert_int_eq(EVP_PKEY_fromdata_init(pc), 1);
    ck_assert_int_eq(EVP_PKEY_fromdata(pc, &pub, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    ASN1_OCTET_STRING_free(os);
cert:
    ca = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(ca);
    x = X509_new();
    ck_assert_int_eq(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    name = X509_get_issuer_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"km test CA",
                               -1, -1, 0);
    ck_assert_int_eq(X509_set_pubkey(x, pub), 1);
    ck_assert_int_gt(X509_sign(x, ca, EVP_sha256()), 0);
    EVP_PKEY_free(ca);
    EVP_PKEY_free(pub);
    der_len = i2d_X509(x, &der);
    subj_len = i2d_X509_NAME(X509_get_subject_name(x), &subj);
    ck_assert_int_gt(der_len, 0);
    ck_assert_int_gt(subj_len, 0);
    {
        CK_ATTRIBUTE cert_t[] = {
            { CKA_CLASS, &ccls, sizeof ccls }, { CKA_CERTIFICATE_TYPE, &ctype, sizeof ctype },
            { CKA_TOKEN, &yes, sizeof yes },   { CKA_ID, id, sizeof id },
            { CKA_LABEL, (void *)(uintptr_t)cn, strlen(cn) },
            { CKA_SUBJECT, subj, (CK_ULONG)subj_len }, { CKA_VALUE, der, (CK_ULONG)der_len },
        };
        ck_assert_int_eq(r.fl->C_CreateObject(r.s, cert_t, 7, &hcert), CKR_OK);
    }
    OPENSSL_free(der);
    OPENSSL_free(subj);
    raw_close(&r);
    return x;
}

/* The serialised id of the (only) certificate on token `label`. */
static char *card_id(const char *label)
{
    km_pkcs11_list *l = NULL;
    char *id = NULL;
    size_t i;

    OK(km_pkcs11_certificates(&l, MODULE));
    for (i = 0; i < km_pkcs11_list_count(l); i++)
        if (strcmp(km_pkcs11_list_get(l, i, KM_PKCS11_TOKEN_LABEL), label) == 0) {
            ck_assert_ptr_null(id);
            id = strdup(km_pkcs11_list_get(l, i, KM_PKCS11_ID));
        }
    km_pkcs11_list_free(l);
    ck_assert_msg(id != NULL, "no certificate found on %s", label);
    return id;
}

static void card_backend(km_ctx *c)
{
    OK(km_vault_backend_set(c, "pkcs11-card", "module=" MODULE));
}

/* ------------------------------------------------------------- tests */

/* Each initialised token is found once, with its label and a serialised id
 * that is the same on every listing (and in another process). */
START_TEST(test_p11helper_discovery)
{
    km_pkcs11_list *l = NULL, *l2 = NULL;
    const char *ida = NULL, *idb = NULL;
    size_t i, n;
    int fds[2];
    char child[512] = "";
    pid_t pid;
    int st;

    OK(km_pkcs11_tokens(&l, MODULE));
    n = km_pkcs11_list_count(l);
    for (i = 0; i < n; i++) {
        const char *lab = km_pkcs11_list_get(l, i, KM_PKCS11_LABEL);
        ck_assert_ptr_nonnull(km_pkcs11_list_get(l, i, KM_PKCS11_ID));
        ck_assert_str_eq(km_pkcs11_list_get(l, i, KM_PKCS11_MANUFACTURER), "SoftHSM project");
        if (strcmp(lab, "km-a") == 0) {
            ck_assert_ptr_null(ida);
            ida = km_pkcs11_list_get(l, i, KM_PKCS11_ID);
        } else if (strcmp(lab, "km-b") == 0) {
            ck_assert_ptr_null(idb);
            idb = km_pkcs11_list_get(l, i, KM_PKCS11_ID);
        }
    }
    ck_assert_msg(ida != NULL && idb != NULL, "both tokens listed (%zu entries)", n);
    ck_assert_uint_eq(n, 2);   /* initialised tokens only (not the free slot's) */
    ck_assert_str_ne(ida, idb);
    ck_assert_ptr_nonnull(strstr(ida, km_pkcs11_list_get(l, ida == km_pkcs11_list_get(l, 0,
                                 KM_PKCS11_ID) ? 0 : 1, KM_PKCS11_SERIAL)));
    ck_assert_ptr_null(km_pkcs11_list_get(l, n, KM_PKCS11_ID));
    ck_assert_ptr_null(km_pkcs11_list_get(l, 0, (km_pkcs11_field)99));
    /* the same ids on a second listing */
    OK(km_pkcs11_tokens(&l2, MODULE));
    ck_assert_uint_eq(km_pkcs11_list_count(l2), n);
    for (i = 0; i < n; i++)
        ck_assert_str_eq(km_pkcs11_list_get(l2, i, KM_PKCS11_ID),
                         km_pkcs11_list_get(l, i, KM_PKCS11_ID));
    km_pkcs11_list_free(l2);
    /* and in another process (a re-run) */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_pkcs11_list *c = NULL;
        size_t k;
        close(fds[0]);
        if (km_pkcs11_tokens(&c, MODULE) != KM_OK)
            _exit(2);
        for (k = 0; k < km_pkcs11_list_count(c); k++)
            if (strcmp(km_pkcs11_list_get(c, k, KM_PKCS11_LABEL), "km-a") == 0)
                (void)!write(fds[1], km_pkcs11_list_get(c, k, KM_PKCS11_ID),
                             strlen(km_pkcs11_list_get(c, k, KM_PKCS11_ID)));
        _exit(0);
    }
    close(fds[1]);
    ck_assert_int_gt(read(fds[0], child, sizeof child - 1), 0);
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_str_eq(child, ida);
    km_pkcs11_list_free(l);
    /* bad arguments */
    ck_assert_int_eq(km_pkcs11_tokens(NULL, MODULE), KM_E_INVALID);
    ck_assert_int_eq(km_pkcs11_tokens(&l, NULL), KM_E_INVALID);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(km_pkcs11_tokens(&l, "/nonexistent/module.so"), KM_E_BACKEND);
    ck_assert_uint_eq(km_pkcs11_list_count(NULL), 0);
    km_pkcs11_list_free(NULL);
}
END_TEST

/* The raw layer with no PIN configured asks the callback: a wrong PIN
 * (retry 0), then the right one (retry 1), and the key works. */
START_TEST(test_p11helper_pin_callback_retry)
{
    struct pins p = { 0, { 0 }, "", { "00000", PIN, NULL } };
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD], pt[64];
    size_t n;

    OK(km_vault_backend_set(ctx, "pkcs11", "module=" MODULE ";token=pkcs11:token=km-a"));
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    o.protection = "pkcs11";
    OK(km_key_create(&k, ctx, "hsm", KM_KEY_AES_256_GCM, &o));
    ck_assert_int_eq(p.calls, 2);
    ck_assert_uint_eq(p.retries[0], 0);
    ck_assert_uint_eq(p.retries[1], 1);
    ck_assert_str_eq(p.label, "km-a");
    OK(km_encrypt(k, (const uint8_t *)"card", 4, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &n));
    ck_assert_mem_eq(pt, "card", 4);
    ck_assert_int_eq(p.calls, 2);   /* logged in: no more prompts */
    km_key_free(k);
}
END_TEST

/* Cancel: KM_E_AUTH at once, no hang, and no PIN in the error. */
START_TEST(test_p11helper_pin_cancel)
{
    struct pins p = { 0, { 0 }, "", { "918273", NULL } };
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    time_t t0 = time(NULL);
    int rc;

    OK(km_vault_backend_set(ctx, "pkcs11", "module=" MODULE ";token=pkcs11:token=km-a"));
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    o.protection = "pkcs11";
    rc = km_key_create(&k, ctx, "hsm", KM_KEY_AES_256_GCM, &o);
    ck_assert_msg(rc == KM_E_AUTH, "cancel gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(k);
    ck_assert_int_eq(p.calls, 2);
    ck_assert_ptr_null(strstr(km_error_last()->message, "918273"));
    ck_assert_ptr_null(strstr(km_error_last()->message, PIN));
    ck_assert_int_le(time(NULL) - t0, 10);
    /* and without a callback: KM_E_AUTH too, the callback is not called */
    OK(km_pkcs11_set_pin_callback(NULL, NULL));
    rc = km_key_create(&k, ctx, "hsm2", KM_KEY_AES_256_GCM, &o);
    ck_assert_int_eq(rc, KM_E_AUTH);
    ck_assert_int_eq(p.calls, 2);
}
END_TEST

/* A card key: linked by its serialised certificate id, it signs in the
 * token; the signature verifies in OpenSSL with the certificate's key. */
START_TEST(test_p11helper_card_sign)
{
    struct pins p = { 0, { 0 }, "", { PIN, PIN, PIN } };
    const char *msg = "signed by the card";
    uint8_t sig[256], spki[200];
    size_t sig_len, spki_len;
    EVP_MD_CTX *m;
    X509 *x;
    char *id;
    km_key *k = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;

    x = make_card_key("km-b", "card holder");
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    id = card_id("km-b");
    card_backend(ctx);
    OK(km_pkcs11_key_link(&k, ctx, "card", id, NULL));
    ck_assert_int_eq(km_key_get_type(k), KM_KEY_EC_P256);
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig, sizeof sig, &sig_len));
    ck_assert_int_eq(p.calls, 1);
    ck_assert_uint_eq(p.retries[0], 0);
    ck_assert_str_eq(p.label, "km-b");
    m = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)), 1);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, sig_len, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(m);
    /* libkm verifies it too; a changed message does not */
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig,
                               sig_len), KM_OK);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, (const uint8_t *)"other", 5, sig, sig_len),
                     KM_E_VERIFY);
    /* the public key is the certificate's */
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len));
    {
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(X509_get0_pubkey(x), &der);
        ck_assert_int_eq(n, (int)spki_len);
        ck_assert_mem_eq(der, spki, spki_len);
        OPENSSL_free(der);
    }
    /* a card key neither rotates nor links twice under one name; a bad id is refused */
    ck_assert_int_eq(km_key_rotate(k, NULL), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_pkcs11_key_link(NULL, ctx, "card", id, NULL), KM_E_EXISTS);
    ck_assert_int_ne(km_pkcs11_key_link(NULL, ctx, "bad", "not an id", NULL), KM_OK);
    ck_assert_int_eq(km_pkcs11_key_link(NULL, ctx, NULL, id, NULL), KM_E_INVALID);
    (void)o;
    km_key_free(k);
    /* reopened from the catalog: the reference is the serialised id */
    OK(km_key_open(&k, ctx, "card"));
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig, sizeof sig, &sig_len));
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig,
                               sig_len), KM_OK);
    ck_assert_int_eq(p.calls, 1);   /* the PIN cache (no expiry): no second prompt */
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

/* An RSA card key: PSS signatures that OpenSSL verifies with the
 * certificate's key; no decryption. */
START_TEST(test_p11helper_card_rsa)
{
    struct pins p = { 0, { 0 }, "", { PIN, PIN, PIN } };
    const char *msg = "rsa card";
    uint8_t sig[512], ct[256];
    size_t sig_len;
    EVP_PKEY_CTX *pc = NULL;
    EVP_MD_CTX *m;
    km_secret *out = NULL;
    km_key *k = NULL;
    X509 *x;
    char *id;

    x = make_card_key_type("km-a", "rsa holder", 1);
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    id = card_id("km-a");
    card_backend(ctx);
    OK(km_pkcs11_key_link(&k, ctx, "rsa-card", id, NULL));
    ck_assert_int_eq(km_key_get_type(k), KM_KEY_RSA_2048);
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig, sizeof sig, &sig_len));
    ck_assert_uint_eq(sig_len, 256);
    m = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, X509_get0_pubkey(x)), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()), 0);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, sig_len, (const uint8_t *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(m);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, (const uint8_t *)msg, strlen(msg), sig,
                               sig_len), KM_OK);
    /* a card key does not decrypt (usage sign and verify only) */
    memset(ct, 0, sizeof ct);
    ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, 256, &out), KM_E_UNSUPPORTED);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(p.calls, 1);
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

/* The PIN cache period: within it no second prompt; after it, one. */
START_TEST(test_p11helper_pin_cache_period)
{
    struct pins p = { 0, { 0 }, "", { PIN, PIN, PIN, PIN } };
    const char *msg = "m";
    uint8_t sig[256];
    size_t sig_len;
    km_key *k = NULL;
    X509 *x;
    char *id;

    x = make_card_key("km-a", "cache");
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    ck_assert_int_eq(km_pkcs11_set_pin_cache(-2), KM_E_INVALID);
    OK(km_pkcs11_set_pin_cache(1));
    id = card_id("km-a");
    card_backend(ctx);
    OK(km_pkcs11_key_link(&k, ctx, "card", id, NULL));
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, 1, sig, sizeof sig, &sig_len));
    ck_assert_int_eq(p.calls, 1);
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, 1, sig, sizeof sig, &sig_len));
    ck_assert_int_eq(p.calls, 1);   /* within the period */
    sleep(3);
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, 1, sig, sizeof sig, &sig_len));
    ck_assert_int_eq(p.calls, 2);   /* expired: asked again */
    /* cleared on demand */
    OK(km_pkcs11_pin_cache_clear());
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)msg, 1, sig, sizeof sig, &sig_len));
    ck_assert_int_eq(p.calls, 3);
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

/* A cancelled PIN prompt for a card key: KM_E_AUTH, no PIN in the message. */
START_TEST(test_p11helper_card_cancel)
{
    struct pins p = { 0, { 0 }, "", { "4444", NULL } };
    uint8_t sig[256];
    size_t sig_len;
    km_key *k = NULL;
    X509 *x;
    char *id;
    int rc;

    x = make_card_key("km-a", "cancel");
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    id = card_id("km-a");
    card_backend(ctx);
    OK(km_pkcs11_key_link(&k, ctx, "card", id, NULL));
    rc = km_sign(k, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sig_len);
    ck_assert_msg(rc == KM_E_AUTH, "gave %s (%s)", km_err_name(rc), km_error_last()->message);
    ck_assert_int_eq(p.calls, 2);
    ck_assert_uint_eq(p.retries[1], 1);
    ck_assert_ptr_null(strstr(km_error_last()->message, "4444"));
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

/* docs/PLATFORM.md's trap: pkcs11-helper initialised first (a card key in use in
 * another vault), then the raw layer opens the same module; terminating
 * pkcs11-helper (closing that vault, and every discovery) must leave the raw
 * layer's pooled, logged-in sessions working. */
START_TEST(test_p11helper_raw_sessions_survive)
{
    struct pins p = { 0, { 0 }, "", { PIN, PIN, PIN } };
    char dir2[4300];
    km_ctx *c2 = NULL;
    km_key *card = NULL, *k = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_pkcs11_list *l = NULL;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD], pt[64], sig[256];
    size_t n, sig_len;
    X509 *x;
    char *id;
    int i;

    x = make_card_key("km-b", "first");
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    id = card_id("km-b");
    /* a second vault whose card key keeps pkcs11-helper initialised */
    snprintf(dir2, sizeof dir2, "%s/v2", dir);
    ck_assert_int_eq(mkdir(dir2, 0700), 0);
    c2 = tu_vault(dir2);
    card_backend(c2);
    OK(km_pkcs11_key_link(&card, c2, "card", id, NULL));
    OK(km_sign(card, KM_SIG_RAW, (const uint8_t *)"x", 1, sig, sizeof sig, &sig_len));
    /* now the raw layer, with a configured PIN, on the other token and this one */
    OK(km_vault_backend_set(ctx, "pkcs11", "module=" MODULE ";token=pkcs11:token=km-a;pin=" PIN));
    o.protection = "pkcs11";
    OK(km_key_create(&k, ctx, "hsm", KM_KEY_AES_256_GCM, &o));
    OK(km_encrypt(k, (const uint8_t *)"before", 6, NULL, 0, ct, sizeof ct, &n));
    /* pkcs11-helper terminates: the card vault closes */
    km_key_free(card);
    km_close(c2);
    /* ... and initialises and terminates again, several times */
    for (i = 0; i < 3; i++) {
        OK(km_pkcs11_tokens(&l, MODULE));
        km_pkcs11_list_free(l);
        l = NULL;
    }
    /* the raw layer's sessions are alive and logged in */
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &n));
    ck_assert_mem_eq(pt, "before", 6);
    for (i = 0; i < 20; i++)
        OK(km_encrypt(k, (const uint8_t *)"after", 5, NULL, 0, ct, sizeof ct, &n));
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

/* fork(): the child's first use re-initialises pkcs11-helper (forkFixup)
 * while the parent's card key stays usable. */
START_TEST(test_p11helper_fork_child)
{
    struct pins p = { 0, { 0 }, "", { PIN, PIN, PIN } };
    uint8_t sig[256];
    size_t sig_len;
    km_key *k = NULL;
    X509 *x;
    char *id;
    pid_t pid;
    int st;

    x = make_card_key("km-a", "fork");
    OK(km_pkcs11_set_pin_callback(pin_cb, &p));
    id = card_id("km-a");
    card_backend(ctx);
    OK(km_pkcs11_key_link(&k, ctx, "card", id, NULL));
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sig_len));
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_pkcs11_list *l = NULL;
        size_t i, found = 0;
        int status;
        if (km_pkcs11_certificates(&l, MODULE) != KM_OK) {
            fprintf(stderr, "child: %s\n", km_error_last()->message);
            status = 2;
        } else {
            for (i = 0; i < km_pkcs11_list_count(l); i++)
                found += strcmp(km_pkcs11_list_get(l, i, KM_PKCS11_ID), id) == 0;
            if (found != 1)
                fprintf(stderr, "child: %zu certificates, %zu with the id\n",
                        km_pkcs11_list_count(l), found);
            km_pkcs11_list_free(l);
            /* the parent's key handle is refused in the child */
            status = km_sign(k, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sig_len)
                             != KM_E_FORK ? 3 : found == 1 ? 0 : 4;
        }
        /* the child's copies: under valgrind its _exit checks for leaks too */
        free(id);
        X509_free(x);
        _exit(status);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    OK(km_sign(k, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sig_len));
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sig_len), KM_OK);
    km_key_free(k);
    free(id);
    X509_free(x);
}
END_TEST

static Suite *suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("p11helper", "softhsm2", &tc, 60, setup, teardown);

    tcase_add_test(tc, test_p11helper_discovery);
    tcase_add_test(tc, test_p11helper_pin_callback_retry);
    tcase_add_test(tc, test_p11helper_pin_cancel);
    tcase_add_test(tc, test_p11helper_card_sign);
    tcase_add_test(tc, test_p11helper_card_rsa);
    tcase_add_test(tc, test_p11helper_pin_cache_period);
    tcase_add_test(tc, test_p11helper_card_cancel);
    tcase_add_test(tc, test_p11helper_raw_sessions_survive);
    tcase_add_test(tc, test_p11helper_fork_child);
    return s;
}

int main(void)
{
    if (!tu_softhsm_installed("check_p11helper"))
        return 1;
    return tu_run(suite());
}
