/* check_pkcs11.c - the pkcs11 backend against a temporary SoftHSM2 token per
 * test, through the public API only (plus the raw PKCS#11 API to inspect the
 * token): encryption, rotation, signatures, attributes, faults, destruction. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include <km.h>
#include <km/derive.h>
#include <km/lifecycle.h>

#include "testutil.h"

#define MODULE TU_P11_MODULE
#define LABEL "km-test"
#define PIN "5678"
#define DAY 86400

static char *dir;
static tu_softhsm hsm;      /* this test's SoftHSM2 configuration and token directory */
static char config[4400];
static km_ctx *ctx;

static void setup(void)
{
    tu_setup(&dir, NULL, NULL);
    tu_softhsm_setup(&hsm, dir);
    tu_softhsm_token(LABEL, PIN);
    ctx = tu_vault_clocked(dir, 0);
    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s;pin=%s", MODULE, LABEL, PIN);
    OK(km_vault_backend_set(ctx, "pkcs11", config));
}

static void teardown(void)
{
    tu_teardown(&dir, &ctx);
    tu_softhsm_cleanup(&hsm);
}

static km_key *create(const char *name, km_key_type type, uint32_t flags)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;

    o.protection = "pkcs11";
    o.flags = flags;
    OK(km_key_create(&k, ctx, name, type, &o));
    return k;
}

/* ---------------------------------------------------- raw token access */

struct raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *r)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, i;
    CK_TOKEN_INFO ti;
    char label[33];
    CK_RV rv;

    r->fl = p11_kit_module_load(MODULE, 0);
    ck_assert_ptr_nonnull(r->fl);
    ck_assert_int_eq(p11_kit_module_initialize(r->fl), CKR_OK);
    ck_assert_int_eq(r->fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    memset(label, ' ', 32);
    memcpy(label, LABEL, strlen(LABEL));
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(r->fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, label, 32) == 0)
            break;
    }
    ck_assert_uint_lt(i, n);
    ck_assert_int_eq(r->fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &r->s),
                     CKR_OK);
    rv = r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)PIN, strlen(PIN));
    ck_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN); /* the vault is logged in */
}

static void raw_close(struct raw *r)
{
    r->fl->C_CloseSession(r->s);
    p11_kit_module_finalize(r->fl);
    p11_kit_module_release(r->fl);
}

/* Every key object on the token (up to cap). */
static CK_ULONG raw_keys(struct raw *r, CK_OBJECT_HANDLE *out, CK_ULONG cap)
{
    CK_ULONG n = 0;
    ck_assert_int_eq(r->fl->C_FindObjectsInit(r->s, NULL, 0), CKR_OK);
    ck_assert_int_eq(r->fl->C_FindObjects(r->s, out, cap, &n), CKR_OK);
    ck_assert_int_eq(r->fl->C_FindObjectsFinal(r->s), CKR_OK);
    return n;
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_pkcs11_encrypt_roundtrip)
{
    km_key *k = create("aes", KM_KEY_AES_256_GCM, 0);
    const uint8_t pt[] = "attack at dawn, with the token";
    uint8_t ct[256], out[256];
    size_t ct_len = 0, out_len = 0, sizes[] = { 0, 1, sizeof pt };
    unsigned i;

    for (i = 0; i < 3; i++) {
        OK(km_encrypt(k, pt, sizes[i], (const uint8_t *)"aad", 3, ct, sizeof ct, &ct_len));
        ck_assert_uint_eq(ct_len, sizes[i] + km_ciphertext_overhead());
        OK(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aad", 3, out, sizeof out, &out_len));
        ck_assert_uint_eq(out_len, sizes[i]);
        ck_assert_mem_eq(out, pt, sizes[i]);
    }
    /* a flipped ciphertext bit, a wrong aad: integrity, output zeroed */
    ct[ct_len - 20] ^= 1;
    memset(out, 0xaa, sizeof out);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aad", 3, out, sizeof out,
                                &out_len), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(out, ct_len));
    ct[ct_len - 20] ^= 1;
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aaX", 3, out, sizeof out,
                                &out_len), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(out, ct_len));
    /* and still fine afterwards (the pool recovered) */
    OK(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aad", 3, out, sizeof out, &out_len));
    /* a long aad (heap path) */
    {
        static uint8_t big[4096];
        memset(big, 7, sizeof big);
        OK(km_encrypt(k, pt, sizeof pt, big, sizeof big, ct, sizeof ct, &ct_len));
        OK(km_decrypt(ctx, 0, ct, ct_len, big, sizeof big, out, sizeof out, &out_len));
        ck_assert_mem_eq(out, pt, sizeof pt);
    }
    /* messages across the backend's buffer sizes (stack / heap ciphertext,
     * pooled / paged plaintext): 2032, 2033, 4096, 4097, 9000 bytes */
    {
        static const size_t lens[] = { 2032, 2033, 4096, 4097, 9000 };
        static uint8_t msg[9000], bct[9200], bout[9000];
        size_t bl = 0, ol = 0;
        unsigned j;
        for (j = 0; j < sizeof msg; j++)
            msg[j] = (uint8_t)(j * 7 + 1);
        for (j = 0; j < 5; j++) {
            OK(km_encrypt(k, msg, lens[j], NULL, 0, bct, sizeof bct, &bl));
            OK(km_decrypt(ctx, 0, bct, bl, NULL, 0, bout, sizeof bout, &ol));
            ck_assert_uint_eq(ol, lens[j]);
            ck_assert_mem_eq(bout, msg, lens[j]);
            bct[bl - 1] ^= 1;
            ck_assert_int_eq(km_decrypt(ctx, 0, bct, bl, NULL, 0, bout, sizeof bout, &ol),
                             KM_E_INTEGRITY);
            ck_assert(tu_all_zero(bout, lens[j]));
        }
    }
    km_key_free(k);
}
END_TEST

START_TEST(test_pkcs11_reopen_and_rotate)
{
    km_key *k = create("aes", KM_KEY_AES_256_GCM, 0);
    uint8_t ct1[128], ct2[128], out[128];
    size_t n1 = 0, n2 = 0, n = 0;
    uint32_t ver = 0;
    CK_OBJECT_HANDLE hs[16];
    struct raw r;

    OK(km_encrypt(k, (const uint8_t *)"one", 3, NULL, 0, ct1, sizeof ct1, &n1));
    OK(km_key_rotate(k, &ver));
    ck_assert_uint_eq(ver, 2);
    OK(km_encrypt(k, (const uint8_t *)"two", 3, NULL, 0, ct2, sizeof ct2, &n2));
    km_key_free(k);
    /* a fresh vault handle: objects are found again by CKA_ID */
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0);
    OK(km_decrypt(ctx, 0, ct1, n1, NULL, 0, out, sizeof out, &n));
    ck_assert_mem_eq(out, "one", 3);
    OK(km_decrypt(ctx, 0, ct2, n2, NULL, 0, out, sizeof out, &n));
    ck_assert_mem_eq(out, "two", 3);
    raw_open(&r);
    ck_assert_uint_eq(raw_keys(&r, hs, 16), 2); /* two secret keys */
    raw_close(&r);
}
END_TEST

static const km_key_type sig_types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_RSA_2048 };

START_TEST(test_pkcs11_sign_verify)
{
    km_key_type type = sig_types[_i];
    km_key *k = create("signer", type, 0);
    const uint8_t msg[] = "message to sign";
    uint8_t sig[1024], spki[2048];
    size_t sig_len = 0, spki_len = 0;
    const unsigned char *p = spki;
    EVP_PKEY *pk;
    EVP_MD_CTX *m;
    EVP_PKEY_CTX *pc = NULL;

    /* tagged, through libkm */
    OK(km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &sig_len));
    OK(km_verify(k, 0, 0, msg, sizeof msg, sig, sig_len));
    sig[sig_len - 1] ^= 1;
    ck_assert_int_eq(km_verify(k, 0, 0, msg, sizeof msg, sig, sig_len), KM_E_VERIFY);
    if (type != KM_KEY_RSA_2048) {
        OK(km_sign(k, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, sizeof sig, &sig_len));
        ck_assert_uint_eq(sig_len, type == KM_KEY_EC_P256 ? 64 : 96);
        OK(km_verify(k, 0, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, sig_len));
    }
    /* raw signature, checked by OpenSSL with the exported public key */
    OK(km_sign(k, KM_SIG_RAW, msg, sizeof msg, sig, sizeof sig, &sig_len));
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len));
    pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    ck_assert_ptr_nonnull(pk);
    m = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(m, &pc, type == KM_KEY_EC_P384 ? EVP_sha384()
                                                                          : EVP_sha256(),
                                          NULL, pk), 1);
    if (type == KM_KEY_RSA_2048) {
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32), 0);
    }
    ck_assert_int_eq(EVP_DigestVerify(m, sig, sig_len, msg, sizeof msg), 1);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pk);
    km_key_free(k);
}
END_TEST

START_TEST(test_pkcs11_attributes)
{
    km_key *k1 = create("aes", KM_KEY_AES_256_GCM, 0);
    km_key *k2 = create("ec", KM_KEY_EC_P256, 0);
    CK_OBJECT_HANDLE hs[16];
    CK_ULONG n, i, nkeys = 0;
    struct raw r;

    km_key_free(k1);
    km_key_free(k2);
    raw_open(&r);
    n = raw_keys(&r, hs, 16);
    ck_assert_uint_eq(n, 3); /* secret, private, public */
    for (i = 0; i < n; i++) {
        CK_OBJECT_CLASS cls;
        CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, wrap = CK_TRUE, tok = CK_FALSE;
        CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof cls } };
        CK_ATTRIBUTE b[] = { { CKA_SENSITIVE, &sens, 1 }, { CKA_EXTRACTABLE, &extr, 1 },
                             { CKA_TOKEN, &tok, 1 } };
        CK_ATTRIBUTE w[] = { { CKA_WRAP, &wrap, 1 } };
        CK_ATTRIBUTE v[] = { { CKA_VALUE, NULL, 0 } };
        uint8_t id[32];
        CK_ATTRIBUTE idattr[] = { { CKA_ID, id, sizeof id } };

        ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], a, 1), CKR_OK);
        ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], idattr, 1), CKR_OK);
        ck_assert_uint_eq(idattr[0].ulValueLen, 16);
        if (cls == CKO_PUBLIC_KEY)
            continue;
        nkeys++;
        ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], b, 3), CKR_OK);
        ck_assert_int_eq(sens, CK_TRUE);
        ck_assert_int_eq(extr, CK_FALSE);
        ck_assert_int_eq(tok, CK_TRUE);
        if (cls == CKO_SECRET_KEY) {
            ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], w, 1), CKR_OK);
            ck_assert_int_eq(wrap, CK_FALSE);
        }
        ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], v, 1), CKR_ATTRIBUTE_SENSITIVE);
    }
    ck_assert_uint_eq(nkeys, 2);
    raw_close(&r);
}
END_TEST

/* The CK_BBOOL attribute `t` of the key's private or secret object. */
static CK_BBOOL key_flag(struct raw *r, km_key *k, CK_OBJECT_CLASS want, CK_ATTRIBUTE_TYPE t)
{
    CK_OBJECT_HANDLE hs[32];
    CK_ULONG n = raw_keys(r, hs, 32), i;
    CK_BBOOL v = 2;
    uint8_t id[16];
    size_t got = 0;
    km_keyinfo *info = NULL;

    (void)id;
    (void)got;
    (void)info;
    (void)k;
    for (i = 0; i < n; i++) {
        CK_OBJECT_CLASS cls;
        CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof cls } };
        CK_ATTRIBUTE b[] = { { t, &v, 1 } };
        ck_assert_int_eq(r->fl->C_GetAttributeValue(r->s, hs[i], a, 1), CKR_OK);
        if (cls != want)
            continue;
        ck_assert_int_eq(r->fl->C_GetAttributeValue(r->s, hs[i], b, 1), CKR_OK);
        return v;
    }
    ck_abort_msg("no object of class %lu on the token", (unsigned long)want);
    return v;
}

/* HMAC keys generated in the token: tags of the right length, verified, a
 * changed message refused, another key another tag; sign-only attributes. */
START_TEST(test_pkcs11_hmac)
{
    static const km_key_type types[] = { KM_KEY_HMAC_SHA256, KM_KEY_HMAC_SHA384,
                                         KM_KEY_HMAC_SHA512 };
    static const size_t lens[] = { 32, 48, 64 };
    const uint8_t msg[] = "authenticate me on the token";
    uint8_t t1[KM_MAC_MAX], t2[KM_MAC_MAX];
    size_t n1 = 0, n2 = 0;
    km_key *k = create("hmac", types[_i], 0), *k2 = create("hmac2", types[_i], 0);
    struct raw r;

    OK(km_mac(k, KM_SIG_RAW, msg, sizeof msg, t1, sizeof t1, &n1));
    ck_assert_uint_eq(n1, lens[_i]);
    OK(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, t1, n1));
    OK(km_mac(k, KM_SIG_RAW, msg, sizeof msg, t2, sizeof t2, &n2));
    ck_assert_int_eq(memcmp(t1, t2, n1), 0);            /* deterministic */
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg - 1, t1, n1), KM_E_VERIFY);
    OK(km_mac(k2, KM_SIG_RAW, msg, sizeof msg, t2, sizeof t2, &n2));
    ck_assert_int_ne(memcmp(t1, t2, n1), 0);            /* another key */
    /* tagged form, through libkm */
    OK(km_mac(k, 0, msg, sizeof msg, t1, sizeof t1, &n1));
    OK(km_mac_verify(k, 0, 0, msg, sizeof msg, t1, n1));
    km_key_free(k2);
    km_key_free(k);
    raw_open(&r);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_SECRET_KEY, CKA_SENSITIVE), CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_SECRET_KEY, CKA_EXTRACTABLE), CK_FALSE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_SECRET_KEY, CKA_SIGN), CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_SECRET_KEY, CKA_ENCRYPT), CK_FALSE);
    raw_close(&r);
}
END_TEST

/* HKDF-SHA-256 with an empty salt, as km_agree derives. */
static void hkdf(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t *out, size_t n)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[4];
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm, ikm_len);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info,
                                             strlen(info));
    p[3] = OSSL_PARAM_construct_end();
    ck_assert_int_eq(EVP_KDF_derive(kc, out, n, p), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
}

/* ECDH in the token (CKM_ECDH1_DERIVE): km_agree equals what the peer
 * computes with the token key's public half; a key without the agree usage
 * has CKA_DERIVE false and is refused; the derived session object is gone. */
START_TEST(test_pkcs11_ecdh)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *ns = NULL;
    EVP_PKEY *peer = NULL, *tokpub;
    EVP_PKEY_CTX *pc;
    uint8_t spki[512], pspki[512], z[66], want[32], *pp = pspki;
    const unsigned char *q = spki;
    size_t spki_len = 0, zlen = sizeof z;
    int plen;
    km_secret *got = NULL;
    CK_OBJECT_HANDLE hs[32];
    struct raw r;
    const km_key_type type = _i == 0 ? KM_KEY_EC_P256 : KM_KEY_EC_P384;

    o.protection = "pkcs11";
    o.usage = KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_AGREE;
    OK(km_key_create(&k, ctx, "ecdh", type, &o));
    /* the peer, in software */
    peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", type == KM_KEY_EC_P256 ? "P-256" : "P-384");
    ck_assert_ptr_nonnull(peer);
    plen = i2d_PUBKEY(peer, &pp);
    ck_assert_int_gt(plen, 0);
    OK(km_agree(k, pspki, (size_t)plen, (const uint8_t *)"ctx", 3, sizeof want, &got));
    /* the peer's side: ECDH with the token key's public half, then HKDF */
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len));
    tokpub = d2i_PUBKEY(NULL, &q, (long)spki_len);
    ck_assert_ptr_nonnull(tokpub);
    pc = EVP_PKEY_CTX_new(peer, NULL);
    ck_assert_int_eq(EVP_PKEY_derive_init(pc), 1);
    ck_assert_int_eq(EVP_PKEY_derive_set_peer(pc, tokpub), 1);
    ck_assert_int_eq(EVP_PKEY_derive(pc, z, &zlen), 1);
    ck_assert_uint_eq(zlen, type == KM_KEY_EC_P256 ? 32 : 48);
    hkdf(z, zlen, "ctx", want, sizeof want);
    ck_assert_uint_eq(km_secret_len(got), sizeof want);
    ck_assert_int_eq(memcmp(km_secret_data(got), want, sizeof want), 0);
    km_secret_free(got);
    got = NULL;
    /* a peer on another curve is refused */
    {
        EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC",
                                            type == KM_KEY_EC_P256 ? "P-384" : "P-256");
        uint8_t ospki[512], *op = ospki;
        int olen = i2d_PUBKEY(other, &op);
        ck_assert_int_eq(km_agree(k, ospki, (size_t)olen, NULL, 0, 32, &got), KM_E_INVALID);
        ck_assert_ptr_null(got);
        EVP_PKEY_free(other);
    }
    /* a key made without the agree usage */
    o.usage = KM_USAGE_SIGN | KM_USAGE_VERIFY;
    OK(km_key_create(&ns, ctx, "no-ecdh", type, &o));
    ck_assert_int_eq(km_agree(ns, pspki, (size_t)plen, NULL, 0, 32, &got), KM_E_USAGE);
    ck_assert_ptr_null(got);
    km_key_free(ns);
    km_key_free(k);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(tokpub);
    EVP_PKEY_free(peer);
    /* on the token: two private keys, one may derive; no session object left */
    raw_open(&r);
    {
        CK_ULONG n = raw_keys(&r, hs, 32), i, derive_yes = 0, derive_no = 0, secrets = 0;
        for (i = 0; i < n; i++) {
            CK_OBJECT_CLASS cls;
            CK_BBOOL d = 2;
            CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof cls } };
            CK_ATTRIBUTE b[] = { { CKA_DERIVE, &d, 1 } };
            ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], a, 1), CKR_OK);
            if (cls == CKO_SECRET_KEY)
                secrets++;
            if (cls != CKO_PRIVATE_KEY)
                continue;
            ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], b, 1), CKR_OK);
            if (d == CK_TRUE)
                derive_yes++;
            else
                derive_no++;
        }
        ck_assert_uint_eq(derive_yes, 1);
        ck_assert_uint_eq(derive_no, 1);
        ck_assert_uint_eq(secrets, 0);
    }
    raw_close(&r);
}
END_TEST

/* Digest signing (KM_BACKEND_CAP_SIGN_DIGEST, as the OpenSSL provider uses
 * it): ECDSA on the digest, RSA-PSS with the digest's MGF1 and salt, and
 * RSA PKCS#1 v1.5 over a DigestInfo; OpenSSL verifies each. */
START_TEST(test_pkcs11_sign_digest)
{
    static const char *const mds[] = { "SHA256", "SHA384", "SHA512" };
    const km_key_type type = _i < 3 ? KM_KEY_EC_P256 : KM_KEY_RSA_2048;
    const int pkcs1 = _i >= 6;
    const char *md = mds[_i % 3];
    km_key *k = create("dsigner", type, 0);
    uint8_t dg[64], sig[1024], spki[2048];
    unsigned int dl = 0;
    size_t sl = 0, spki_len = 0;
    const unsigned char *p = spki;
    EVP_PKEY *pk;
    EVP_PKEY_CTX *pc;

    ck_assert_int_eq(EVP_Digest("to be signed", 12, dg, &dl, EVP_get_digestbyname(md), NULL), 1);
    OK(km_sign_digest(k, 0, pkcs1 ? KM_SIG_PKCS1 : 0, md, dg, dl, sig, sizeof sig, &sl));
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len));
    pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    ck_assert_ptr_nonnull(pk);
    pc = EVP_PKEY_CTX_new(pk, NULL);
    ck_assert_int_eq(EVP_PKEY_verify_init(pc), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_signature_md(pc, EVP_get_digestbyname(md)), 0);
    if (type == KM_KEY_RSA_2048 && !pkcs1) {
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST), 0);
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_get_digestbyname(md)), 0);
    } else if (type == KM_KEY_RSA_2048) {
        ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING), 0);
    }
    ck_assert_int_eq(EVP_PKEY_verify(pc, sig, sl, dg, dl), 1);
    dg[0] ^= 1;
    ck_assert_int_ne(EVP_PKEY_verify(pc, sig, sl, dg, dl), 1);
    /* a digest of the wrong length */
    ck_assert_int_eq(km_sign_digest(k, 0, 0, md, dg, dl - 1, sig, sizeof sig, &sl), KM_E_INVALID);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pk);
    km_key_free(k);
}
END_TEST

/* OpenSSL: RSA-OAEP encryption to the public key `spki` with hash `md`
 * (MGF1 the same), empty label. */
static size_t oaep_encrypt(const uint8_t *spki, size_t spki_len, const char *md,
                           const uint8_t *pt, size_t pt_len, uint8_t *ct, size_t cap)
{
    const unsigned char *p = spki;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_PKEY_CTX *pc;
    size_t n = cap;

    ck_assert_ptr_nonnull(pk);
    pc = EVP_PKEY_CTX_new(pk, NULL);
    ck_assert_int_eq(EVP_PKEY_encrypt_init(pc), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_get_digestbyname(md)), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_get_digestbyname(md)), 0);
    ck_assert_int_eq(EVP_PKEY_encrypt(pc, ct, &n, pt, pt_len), 1);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pk);
    return n;
}

/* RSA-OAEP decryption in the token (km_rsa_decrypt, CKM_RSA_PKCS_OAEP with
 * SHA-256 / MGF1-SHA-256). The private key has CKA_DECRYPT only when the
 * key's usage has unwrap, never CKA_UNWRAP. SoftHSM2 2.6.1 refuses OAEP with
 * any hash but SHA-1 (CKR_ARGUMENTS_BAD at C_DecryptInit): there libkm must
 * say KM_E_UNSUPPORTED with that CK_RV, and the object itself is shown to
 * decrypt through the raw API (OAEP-SHA-1); a token that offers SHA-256 must
 * decrypt what OpenSSL encrypted to the exported public key. */
START_TEST(test_pkcs11_rsa_oaep)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    const uint8_t secret[] = "a 32-byte data key, wrapped....";
    uint8_t spki[1024], ct[512];
    size_t spki_len = 0, ct_len;
    km_secret *pt = NULL;
    CK_INFO info;
    struct raw r;
    int old_softhsm;

    o.protection = "pkcs11";
    o.usage = KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_UNWRAP;
    OK(km_key_create(&k, ctx, "oaep", KM_KEY_RSA_2048, &o));
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len));
    ct_len = oaep_encrypt(spki, spki_len, "SHA256", secret, sizeof secret, ct, sizeof ct);
    ck_assert_uint_eq(ct_len, 256);

    raw_open(&r);
    ck_assert_int_eq(r.fl->C_GetInfo(&info), CKR_OK);
    old_softhsm = memcmp(info.manufacturerID, "SoftHSM", 7) == 0
                  && (info.libraryVersion.major < 2
                      || (info.libraryVersion.major == 2 && info.libraryVersion.minor <= 6));
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_DECRYPT), CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_UNWRAP), CK_FALSE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_SIGN), CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_SENSITIVE), CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_EXTRACTABLE), CK_FALSE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PUBLIC_KEY, CKA_ENCRYPT), CK_FALSE);
    if (old_softhsm) {
        CK_OBJECT_HANDLE hs[8];
        CK_ULONG n = raw_keys(&r, hs, 8), i;
        CK_RSA_PKCS_OAEP_PARAMS op = { CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0 };
        CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &op, sizeof op };
        uint8_t ct1[512], out[512];
        CK_ULONG out_len = sizeof out;
        size_t ct1_len = oaep_encrypt(spki, spki_len, "SHA1", secret, sizeof secret, ct1,
                                      sizeof ct1);

        ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, ct_len, &pt), KM_E_UNSUPPORTED);
        ck_assert_ptr_null(pt);
        ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_PKCS11);
        ck_assert_uint_eq(km_error_last()->native, CKR_ARGUMENTS_BAD);
        /* the token object decrypts (OAEP-SHA-1, raw): CKA_DECRYPT works and it
         * is the private half of the exported public key */
        for (i = 0; i < n; i++) {
            CK_OBJECT_CLASS cls;
            CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof cls } };
            ck_assert_int_eq(r.fl->C_GetAttributeValue(r.s, hs[i], a, 1), CKR_OK);
            if (cls == CKO_PRIVATE_KEY)
                break;
        }
        ck_assert_uint_lt(i, n);
        ck_assert_int_eq(r.fl->C_DecryptInit(r.s, &m, hs[i]), CKR_OK);
        ck_assert_int_eq(r.fl->C_Decrypt(r.s, ct1, (CK_ULONG)ct1_len, out, &out_len), CKR_OK);
        ck_assert_uint_eq(out_len, sizeof secret);
        ck_assert_mem_eq(out, secret, sizeof secret);
        /* with a label: also refused by this token, never decrypted in software */
        ck_assert_int_eq(km_rsa_oaep_encrypt(k, 0, (const uint8_t *)"L", 1, secret, 3, ct1,
                                             sizeof ct1, &ct1_len), KM_OK);
        ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, (const uint8_t *)"L", 1, ct1, ct1_len, out,
                                             sizeof out, &ct1_len), KM_E_UNSUPPORTED);
    } else {
        uint8_t ct2[512], out2[512];
        size_t n2 = 0, m2 = 0;
        /* a label through the token: it binds */
        OK(km_rsa_oaep_encrypt(k, 0, (const uint8_t *)"L", 1, secret, 3, ct2, sizeof ct2, &n2));
        OK(km_rsa_oaep_decrypt(k, 0, (const uint8_t *)"L", 1, ct2, n2, out2, sizeof out2, &m2));
        ck_assert_uint_eq(m2, 3);
        ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, (const uint8_t *)"M", 1, ct2, n2, out2,
                                             sizeof out2, &m2), KM_E_INTEGRITY);
        OK(km_rsa_decrypt(k, 0, ct, ct_len, &pt));
        ck_assert_uint_eq(km_secret_len(pt), sizeof secret);
        ck_assert_mem_eq(km_secret_data(pt), secret, sizeof secret);
        km_secret_free(pt);
        pt = NULL;
        ct[100] ^= 1;
        ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, ct_len, &pt), KM_E_INTEGRITY);
        ck_assert_ptr_null(pt);
        ct[100] ^= 1;
    }
    raw_close(&r);
    /* a wrong length never reaches the token */
    ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, ct_len - 1, &pt), KM_E_INTEGRITY);
    ck_assert_ptr_null(pt);
    km_key_free(k);
}
END_TEST

/* The private key's CKA_SIGN and CKA_DECRYPT follow the key's usage: a
 * sign-only RSA key cannot decrypt in the token, an unwrap-only one cannot
 * sign; the core refuses both before the token is asked. */
START_TEST(test_pkcs11_rsa_oaep_usage)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    uint8_t ct[256], sig[512];
    size_t sl = 0;
    km_secret *pt = NULL;
    struct raw r;

    o.protection = "pkcs11";
    o.usage = _i == 0 ? KM_USAGE_SIGN | KM_USAGE_VERIFY : KM_USAGE_UNWRAP;
    OK(km_key_create(&k, ctx, "rsa-usage", KM_KEY_RSA_2048, &o));
    memset(ct, 1, sizeof ct);
    raw_open(&r);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_DECRYPT),
                     _i == 0 ? CK_FALSE : CK_TRUE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_SIGN), _i == 0 ? CK_TRUE : CK_FALSE);
    ck_assert_int_eq(key_flag(&r, NULL, CKO_PRIVATE_KEY, CKA_DERIVE), CK_FALSE);
    raw_close(&r);
    if (_i == 0) {
        ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, sizeof ct, &pt), KM_E_USAGE);
        ck_assert_ptr_null(pt);
        OK(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &sl));
    } else {
        ck_assert_int_eq(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &sl),
                         KM_E_USAGE);
    }
    km_key_free(k);
}
END_TEST

START_TEST(test_pkcs11_wrong_pin)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    const km_error *e;
    time_t t0;

    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s;pin=0000", MODULE, LABEL);
    OK(km_vault_backend_set(ctx, "pkcs11", config));
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0);
    o.protection = "pkcs11";
    t0 = time(NULL);
    ck_assert_int_eq(km_key_create(&k, ctx, "aes", KM_KEY_AES_256_GCM, &o), KM_E_AUTH);
    ck_assert_int_le(time(NULL) - t0, 1);
    ck_assert_ptr_null(k);
    e = km_error_last();
    ck_assert_int_eq(e->native_kind, KM_NATIVE_PKCS11);
    ck_assert_uint_eq(e->native, CKR_PIN_INCORRECT);
    ck_assert_ptr_null(strstr(e->message, "0000"));
    /* the token is not locked: the right PIN still works */
    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s;pin=%s", MODULE, LABEL, PIN);
    OK(km_vault_backend_set(ctx, "pkcs11", config));
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0);
    k = create("aes", KM_KEY_AES_256_GCM, 0);
    km_key_free(k);
}
END_TEST

START_TEST(test_pkcs11_pin_from_env)
{
    km_key *k;

    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s", MODULE, LABEL);
    OK(km_vault_backend_set(ctx, "pkcs11", config));
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0);
    setenv("KM_PKCS11_PIN", PIN, 1);
    k = create("aes", KM_KEY_AES_256_GCM, 0);
    unsetenv("KM_PKCS11_PIN");
    km_key_free(k);
}
END_TEST

START_TEST(test_pkcs11_token_removed)
{
    km_key *k = create("aes", KM_KEY_AES_256_GCM, 0);
    uint8_t ct[128], out[128];
    size_t n = 0, m = 0;
    time_t t0;
    int rc;

    OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, ct, sizeof ct, &n));
    tu_rmtree(hsm.tokdir);
    t0 = time(NULL);
    rc = km_decrypt(ctx, 0, ct, n, NULL, 0, out, sizeof out, &m);
    ck_assert_msg(rc == KM_E_BACKEND, "rc %d: %s", rc, km_error_last()->message);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_PKCS11);
    rc = km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, out, sizeof out, &m);
    ck_assert_msg(rc == KM_E_BACKEND, "rc %d: %s", rc, km_error_last()->message);
    ck_assert_int_le(time(NULL) - t0, 3);
    /* still failing fast, never hanging, on the next calls */
    rc = km_decrypt(ctx, 0, ct, n, NULL, 0, out, sizeof out, &m);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_le(time(NULL) - t0, 3);
    km_key_free(k);
}
END_TEST

/* km_random with protection pkcs11 draws from the token (C_GenerateRandom through
 * the vault's configuration of it): with a wrong PIN it fails with the token's error,
 * never falling back to the DRBG. */
START_TEST(test_pkcs11_random)
{
    uint8_t a[64], b[64], zero[64] = { 0 };
    const km_error *e;

    OK(km_random(ctx, "pkcs11", a, sizeof a));
    OK(km_random(ctx, "pkcs11", b, sizeof b));
    ck_assert(memcmp(a, b, sizeof a) != 0);
    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s;pin=0000", MODULE, LABEL);
    OK(km_vault_backend_set(ctx, "pkcs11", config));
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0);
    memset(a, 0xee, sizeof a);
    ck_assert_int_eq(km_random(ctx, "pkcs11", a, sizeof a), KM_E_AUTH);
    e = km_error_last();
    ck_assert_int_eq(e->native_kind, KM_NATIVE_PKCS11);
    ck_assert_uint_eq(e->native, CKR_PIN_INCORRECT);
    ck_assert_mem_eq(a, zero, sizeof a);
    OK(km_random(ctx, NULL, a, sizeof a));
}
END_TEST

START_TEST(test_pkcs11_destroy_lifecycle)
{
    km_key *k = create("ec", KM_KEY_EC_P256, 0);
    km_key *k2 = create("other", KM_KEY_AES_256_GCM, 0);
    CK_OBJECT_HANDLE hs[16];
    struct raw r;

    raw_open(&r);
    ck_assert_uint_eq(raw_keys(&r, hs, 16), 3);
    raw_close(&r);
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(k, 1, 7));
    tu_now += 8 * DAY;
    OK(km_maintain(ctx, NULL));
    raw_open(&r);
    ck_assert_uint_eq(raw_keys(&r, hs, 16), 1); /* only the other key's secret */
    raw_close(&r);
    km_key_free(k);
    km_key_free(k2);
}
END_TEST

/* fork(): the child re-initialises the module (C_Initialize again) and can
 * use an HSM key; the parent keeps working afterwards. */
START_TEST(test_pkcs11_fork_child)
{
    /* static: the child never frees the parent's handle, and under valgrind
     * its _exit checks for leaks; a static keeps the handle reachable there */
    static km_key *k;
    uint8_t ct[128], out[128];
    size_t n = 0, m = 0;
    pid_t pid;
    int st = 0;

    k = create("aes", KM_KEY_AES_256_GCM, 0);
    OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, ct, sizeof ct, &n));
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* the child opens the vault again (a handle never crosses fork())
         * and with it the module, initialised again in this process */
        uint8_t o2[128], c2[128];
        size_t m2 = 0, n2 = 0;
        tu_open oo = TU_OPEN_INIT;
        km_ctx *cc = NULL;
        km_key *kk = NULL;
        int rc;

        oo.clock = tu_clock;
        if (tu_vault_open_with(&cc, dir, &oo) != KM_OK)
            _exit(9);
        rc = km_decrypt(cc, 0, ct, n, NULL, 0, o2, sizeof o2, &m2);
        if (rc != KM_OK || m2 != 4 || memcmp(o2, "data", 4) != 0) {
            fprintf(stderr, "child: decrypt: %s\n", km_error_last()->message);
            _exit(10);
        }
        if (km_key_open(&kk, cc, "aes") != KM_OK
            || km_encrypt(kk, (const uint8_t *)"kid", 3, NULL, 0, c2, sizeof c2, &n2) != KM_OK) {
            fprintf(stderr, "child: encrypt: %s\n", km_error_last()->message);
            _exit(11);
        }
        km_key_free(kk);
        km_close(cc);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, out, sizeof out, &m));
    ck_assert_uint_eq(m, 4);
    km_key_free(k);
}
END_TEST

/* The token goes away and comes back (same directory restored): the key is
 * found again by CKA_ID, not through a stale handle. */
START_TEST(test_pkcs11_token_returns)
{
    km_key *k = create("aes", KM_KEY_AES_256_GCM, 0);
    uint8_t ct[128], out[128];
    size_t n = 0, m = 0;
    char cmd[9000];
    int rc;

    OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, ct, sizeof ct, &n));
    snprintf(cmd, sizeof cmd, "mv '%s' '%s.away'", hsm.tokdir, hsm.tokdir);
    ck_assert_int_eq(system(cmd), 0);
    rc = km_decrypt(ctx, 0, ct, n, NULL, 0, out, sizeof out, &m);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_PKCS11);
    snprintf(cmd, sizeof cmd, "mv '%s.away' '%s'", hsm.tokdir, hsm.tokdir);
    ck_assert_int_eq(system(cmd), 0);
    rc = km_decrypt(ctx, 0, ct, n, NULL, 0, out, sizeof out, &m);
    ck_assert_msg(rc == KM_OK, "after the token came back: %s", km_error_last()->message);
    ck_assert_uint_eq(m, 4);
    km_key_free(k);
}
END_TEST

/* An HSM keyslot: the vault opens with the token alone (no passphrase), not
 * with another token, and not after the token is re-initialised. */
static int open_with_token(const char *cfg, km_ctx **out)
{
    return tu_vault_open_slot(out, dir, "pkcs11", cfg);
}

START_TEST(test_pkcs11_keyslot)
{
    char other[4400];
    km_ctx *c2 = NULL;
    int rc;

    ck_assert_int_eq(open_with_token(config, &c2), KM_E_AUTH);   /* no HSM slot yet */
    OK(km_vault_add_backend_slot(ctx, "pkcs11", config));
    OK(open_with_token(config, &c2));
    km_close(c2);
    c2 = NULL;
    /* a second token of the same module: it has not the slot's key */
    tu_softhsm_token("other", PIN);
    snprintf(other, sizeof other, "module=%s;token=pkcs11:token=other;pin=%s", MODULE, PIN);
    rc = open_with_token(other, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "another token gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* a wrong PIN: authentication fails, the PIN is not in the message */
    snprintf(other, sizeof other, "module=%s;token=pkcs11:token=%s;pin=999999", MODULE, LABEL);
    rc = open_with_token(other, &c2);
    ck_assert_int_eq(rc, KM_E_AUTH);
    ck_assert_ptr_null(strstr(km_error_last()->message, "999999"));
    /* the passphrase still opens it */
    OK(tu_vault_open(&c2, dir, TU_PASS, 0));
    km_close(c2);
}
END_TEST

/* The child of test_pkcs11_close_at_exit, a fresh process (exec): an atexit
 * handler that closes the vault is registered before the token's module is
 * loaded, as the OpenSSL provider does; so it runs after the module's own
 * exit-time destructors. Signs once, then returns: the exit must be clean. */
static km_ctx *exit_ctx;

static void close_at_exit(void)
{
    km_close(exit_ctx);
}

static int atexit_child(const char *vault_dir)
{
    tu_open o = TU_OPEN_INIT;
    km_key *k = NULL;
    uint8_t sig[256];
    size_t sl = 0;

    (void)atexit(close_at_exit);
    tu_now = TU_NOW_START;   /* the parent's clock (setup) */
    o.clock = tu_clock;
    if (tu_vault_open_with(&exit_ctx, vault_dir, &o) != KM_OK || km_key_open(&k, exit_ctx, "signer") != KM_OK
        || km_sign(k, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sl) != KM_OK) {
        fprintf(stderr, "atexit child: %s\n", km_error_last()->message);
        return 3;
    }
    km_key_free(k);
    return 0;
}

/* A vault closed from an atexit handler that predates the module's loading
 * (the provider's close_vaults_at_exit): the process exits cleanly, not with
 * SIGSEGV in C_CloseSession after SoftHSM2's destructors ran. */
START_TEST(test_pkcs11_close_at_exit)
{
    km_key *k = create("signer", KM_KEY_EC_P256, 0);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    pid_t pid;
    int st = 0;

    km_key_free(k);
    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(self, self, "--atexit-child", dir, (char *)NULL);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st), "the child died of signal %d at exit",
                  WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    ck_assert_int_eq(WEXITSTATUS(st), 0);
}
END_TEST

static Suite *suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("pkcs11", "softhsm2", &tc, 60, setup, teardown);

    tcase_add_test(tc, test_pkcs11_encrypt_roundtrip);
    tcase_add_test(tc, test_pkcs11_reopen_and_rotate);
    tcase_add_loop_test(tc, test_pkcs11_sign_verify, 0, 3);
    tcase_add_test(tc, test_pkcs11_attributes);
    tcase_add_loop_test(tc, test_pkcs11_hmac, 0, 3);
    tcase_add_loop_test(tc, test_pkcs11_ecdh, 0, 2);
    tcase_add_loop_test(tc, test_pkcs11_sign_digest, 0, 9);
    tcase_add_test(tc, test_pkcs11_rsa_oaep);
    tcase_add_loop_test(tc, test_pkcs11_rsa_oaep_usage, 0, 2);
    tcase_add_test(tc, test_pkcs11_wrong_pin);
    tcase_add_test(tc, test_pkcs11_pin_from_env);
    tcase_add_test(tc, test_pkcs11_token_removed);
    tcase_add_test(tc, test_pkcs11_destroy_lifecycle);
    tcase_add_test(tc, test_pkcs11_keyslot);
    tcase_add_test(tc, test_pkcs11_fork_child);
    tcase_add_test(tc, test_pkcs11_token_returns);
    tcase_add_test(tc, test_pkcs11_close_at_exit);
    tcase_add_test(tc, test_pkcs11_random);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--atexit-child") == 0)
        return atexit_child(argv[2]);

    if (!tu_softhsm_installed("check_pkcs11"))
        return 1;
    return tu_run(suite());
}
