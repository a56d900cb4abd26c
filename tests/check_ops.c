/*
 * check_ops.c - the operations of issue 23 through the public API: AES-CMAC
 * keys, km_random (the DRBG and a backend's own generator).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>
#include <km/sys/backend.h>
#include <openssl/core_names.h>
#include <openssl/dh.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "testutil.h"

TU_VAULT_FIXTURE

/* ------------------------------------------------------------------ CMAC */

static const km_key_type cmac_types[] = { KM_KEY_AES_128_CMAC, KM_KEY_AES_192_CMAC,
                                          KM_KEY_AES_256_CMAC };

/* A generated CMAC key: tagged and raw MACs of 16 bytes that verify; a changed
 * byte, a truncated tag, a tag of another key and another algorithm are refused;
 * the key does nothing but MACs. */
START_TEST(test_ops_cmac_generated_key)
{
    km_key_type type = cmac_types[_i];
    km_key *k = NULL, *k2 = NULL, *h = NULL;
    const uint8_t msg[] = "ledger line 42";
    uint8_t tag[KM_MAC_MAX], tag2[KM_MAC_MAX], raw[KM_MAC_MAX], ct[128], sig[KM_SIGNATURE_MAX];
    size_t n = 0, n2 = 0, rn = 0;
    km_secret *d = NULL;

    OK(km_key_create(&k, ctx, "cmac", type, NULL));
    OK(km_key_create(&k2, ctx, "cmac2", type, NULL));
    OK(km_key_create(&h, ctx, "hmac", KM_KEY_HMAC_SHA256, NULL));
    ck_assert_str_eq(km_key_type_name(type), type == KM_KEY_AES_128_CMAC   ? "aes-128-cmac"
                                             : type == KM_KEY_AES_192_CMAC ? "aes-192-cmac"
                                                                           : "aes-256-cmac");
    OK(km_mac(k, 0, msg, sizeof msg, tag, sizeof tag, &n));
    ck_assert_uint_eq(n, KM_TAG_HEADER + 16);
    ck_assert_uint_eq(tag[3], (uint8_t)type); /* the algorithm id in the tag header */
    OK(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n));
    OK(km_mac(k, KM_SIG_RAW, msg, sizeof msg, raw, sizeof raw, &rn));
    ck_assert_uint_eq(rn, 16);
    ck_assert_mem_eq(raw, tag + KM_TAG_HEADER, 16); /* deterministic */
    OK(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, raw, 16));
    /* a truncated CMAC is refused, raw or tagged */
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, raw, 15), KM_E_VERIFY);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n - 1), KM_E_VERIFY);
    /* the message, the tag, one bit each */
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg - 1, tag, n), KM_E_VERIFY);
    tag[n - 1] ^= 0x80;
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n), KM_E_VERIFY);
    tag[n - 1] ^= 0x80;
    /* another key of the type: its header names another key; its raw tag differs */
    ck_assert_int_eq(km_mac_verify(k2, 0, 0, msg, sizeof msg, tag, n), KM_E_INVALID);
    ck_assert_int_eq(km_mac_verify(k2, 0, KM_SIG_RAW, msg, sizeof msg, raw, 16), KM_E_VERIFY);
    /* an HMAC tag with its header rewritten to name this key is still refused */
    OK(km_mac(h, 0, msg, sizeof msg, tag2, sizeof tag2, &n2));
    memcpy(tag2, tag, KM_TAG_HEADER);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag2, n2), KM_E_VERIFY);
    /* CMAC keys only compute MACs: no HKDF (unlike HMAC keys), no encryption, no signing */
    ck_assert_int_eq(km_derive(k, NULL, 0, (const uint8_t *)"i", 1, 32, &d), KM_E_USAGE);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n), KM_E_USAGE);
    ck_assert_int_eq(km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_E_USAGE);
    km_key_free(k);
    km_key_free(k2);
    km_key_free(h);
}
END_TEST

/* Import: exactly the AES key length of the type; usages outside MAC refused. */
START_TEST(test_ops_cmac_import_rules)
{
    uint8_t key[33] = { 0 };
    km_key *k = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;

    ck_assert_int_eq(km_key_import(&k, ctx, "c15", KM_KEY_AES_128_CMAC, KM_MATERIAL_RAW, key, 15,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "c17", KM_KEY_AES_128_CMAC, KM_MATERIAL_RAW, key, 17,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "c33", KM_KEY_AES_256_CMAC, KM_MATERIAL_RAW, key, 33,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "c24", KM_KEY_AES_192_CMAC, KM_MATERIAL_PKCS8_DER, key,
                                   24, KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    OK(km_key_import(&k, ctx, "c32", KM_KEY_AES_256_CMAC, KM_MATERIAL_RAW, key, 32,
                     KM_IMPORT_ALLOW_RAW, NULL));
    km_key_free(k);
    k = NULL;
    o.usage = KM_USAGE_DERIVE;
    ck_assert_int_eq(km_key_create(&k, ctx, "cd", KM_KEY_AES_128_CMAC, &o), KM_E_INVALID);
    o.usage = KM_USAGE_MAC_VERIFY;
    OK(km_key_create(&k, ctx, "cv", KM_KEY_AES_128_CMAC, &o));
    {
        uint8_t tag[KM_MAC_MAX];
        size_t n = 0;
        ck_assert_int_eq(km_mac(k, 0, (const uint8_t *)"m", 1, tag, sizeof tag, &n), KM_E_USAGE);
    }
    km_key_free(k);
}
END_TEST

/* The vault policy can forbid CMAC keys like any type. */
START_TEST(test_ops_cmac_policy_forbids)
{
    km_key *k = NULL;
    const char *pol = "{\"version\": 1, \"algorithms\": {\"aes-128-cmac\": "
                      "{\"allowed\": false}}}";
    OK(km_policy_set(ctx, pol, strlen(pol)));
    ck_assert_int_eq(km_key_create(&k, ctx, "c", KM_KEY_AES_128_CMAC, NULL), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "aes-128-cmac"));
    OK(km_key_create(&k, ctx, "c", KM_KEY_AES_256_CMAC, NULL));
    km_key_free(k);
}
END_TEST

/* ---------------------------------------------------------------- random */

static unsigned rand_calls;

static int rb_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    (void)state;
    (void)spec;
    *out_ref = NULL;
    return KM_E_UNSUPPORTED;
}

static int rb_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                   size_t ref_len, void **out_obj)
{
    (void)state;
    (void)spec;
    (void)ref;
    (void)ref_len;
    *out_obj = NULL;
    return KM_E_UNSUPPORTED;
}

static void rb_unload(void *state, void *obj)
{
    (void)state;
    (void)obj;
}

/* A device whose generator gives 0x5a bytes, or fails when asked for 13. */
static int rb_random(void *state, uint8_t *out, size_t len)
{
    (void)state;
    rand_calls++;
    memset(out, 0x5a, len);
    if (len == 13) {
        memset(out, 0, len);
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0, "rng: device failure");
    }
    return KM_OK;
}

static const km_backend_ops rng_ops = {
    .version = KM_BACKEND_OPS_VERSION, .name = "ops-rng", .generate = rb_generate,
    .load = rb_load, .unload = rb_unload, .random = rb_random,
};
/* The same backend written against version 2 of the table: its random is never read. */
static const km_backend_ops v2_ops = {
    .version = 2, .name = "ops-v2", .generate = rb_generate,
    .load = rb_load, .unload = rb_unload, .random = rb_random,
};

START_TEST(test_ops_random)
{
    uint8_t a[64], b[64], zero[64] = { 0 };
    static uint8_t big[KM_RANDOM_MAX + 1];
    static int registered;

    if (!registered) {
        OK(km_backend_register(&rng_ops));
        OK(km_backend_register(&v2_ops));
        registered = 1;
    }
    /* the DRBG: two draws differ, neither is zero */
    OK(km_random(ctx, NULL, a, sizeof a));
    OK(km_random(ctx, "software", b, sizeof b));
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(memcmp(a, zero, sizeof a) != 0);
    OK(km_random(ctx, NULL, big, KM_RANDOM_MAX));
    /* bad input */
    memset(a, 0xee, sizeof a);
    ck_assert_int_eq(km_random(NULL, NULL, a, 1), KM_E_INVALID);
    ck_assert_int_eq(km_random(ctx, NULL, NULL, 1), KM_E_INVALID);
    ck_assert_int_eq(km_random(ctx, NULL, a, 0), KM_E_INVALID);
    ck_assert_int_eq(km_random(ctx, NULL, big, KM_RANDOM_MAX + 1), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "len"));
    /* a backend's own generator is used when named */
    rand_calls = 0;
    OK(km_random(ctx, "ops-rng", a, 20));
    ck_assert_uint_eq(rand_calls, 1);
    ck_assert_uint_eq(a[0], 0x5a);
    ck_assert_uint_eq(a[19], 0x5a);
    /* its failure is the call's, with nothing left in out */
    memset(a, 0xee, sizeof a);
    ck_assert_int_eq(km_random(ctx, "ops-rng", a, 13), KM_E_BACKEND);
    ck_assert_mem_eq(a, zero, 13);
    /* unknown backends, and backends without a generator, are refused, never the DRBG */
    memset(a, 0xee, sizeof a);
    ck_assert_int_eq(km_random(ctx, "no-such-backend", a, 8), KM_E_UNSUPPORTED);
    ck_assert_mem_eq(a, zero, 8);
    rand_calls = 0;
    ck_assert_int_eq(km_random(ctx, "ops-v2", a, 8), KM_E_UNSUPPORTED);
    ck_assert_uint_eq(rand_calls, 0);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "random"));
}
END_TEST

/* ------------------------------------------------------------------- RSA */

/* The OAEP digest is recorded in the key: what fits (modulus - 2 * digest - 2)
 * follows it, also after the vault is closed and opened again; a label binds. */
START_TEST(test_ops_rsa_oaep_digest_recorded)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *e = NULL;
    uint8_t msg[200], ct[512], out[512];
    size_t n = 0, m = 0;

    memset(msg, 0x42, sizeof msg);
    o.rsa_oaep_digest = 512;
    OK(km_key_create(&k, ctx, "r512", KM_KEY_RSA_2048, &o));
    ck_assert_int_eq(km_rsa_oaep_encrypt(k, 0, NULL, 0, msg, 127, ct, sizeof ct, &n), KM_E_INVALID);
    OK(km_rsa_oaep_encrypt(k, 0, (const uint8_t *)"L", 1, msg, 126, ct, sizeof ct, &n));
    ck_assert_uint_eq(n, 256);
    km_key_free(k);
    km_close(ctx);
    ctx = tu_vault(dir);
    OK(km_key_open(&k, ctx, "r512"));
    OK(km_rsa_oaep_decrypt(k, 0, (const uint8_t *)"L", 1, ct, n, out, sizeof out, &m));
    ck_assert_uint_eq(m, 126);
    ck_assert_mem_eq(out, msg, 126);
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, n, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(km_rsa_oaep_encrypt(k, 0, NULL, 0, msg, 127, ct, sizeof ct, &n), KM_E_INVALID);
    /* too small an output buffer: the size needed */
    OK(km_rsa_oaep_encrypt(k, 0, NULL, 0, msg, 10, ct, sizeof ct, &n));
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, n, out, 9, &m), KM_E_BUFFER);
    ck_assert_uint_eq(m, 10);
    ck_assert_int_eq(km_rsa_oaep_encrypt(k, 0, NULL, 0, msg, 10, ct, 255, &n), KM_E_BUFFER);
    ck_assert_uint_eq(n, 256);
    /* a SHA-256 key refuses a SHA-512 ciphertext */
    OK(km_key_create(&e, ctx, "r256", KM_KEY_RSA_2048, NULL));
    OK(km_rsa_oaep_encrypt(e, 0, NULL, 0, msg, 190, ct, sizeof ct, &n)); /* 256 - 66 */
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, n, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    km_key_free(k);
    km_key_free(e);
    /* the option: RSA keys only, SHA-2 sizes only */
    o.rsa_oaep_digest = 384;
    ck_assert_int_eq(km_key_create(&k, ctx, "ec", KM_KEY_EC_P256, &o), KM_E_INVALID);
    o.rsa_oaep_digest = 160;
    ck_assert_int_eq(km_key_create(&k, ctx, "r160", KM_KEY_RSA_2048, &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "rsa_oaep_digest"));
}
END_TEST

/* An empty message: km_rsa_oaep_decrypt gives it back empty; km_rsa_decrypt
 * (a km_secret, never empty) refuses it and says where to go. */
START_TEST(test_ops_rsa_oaep_empty_message)
{
    km_key *k = NULL, *s = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    uint8_t ct[512], out[16];
    size_t n = 0, m = 99;
    km_secret *sec = NULL;

    OK(km_key_create(&k, ctx, "r", KM_KEY_RSA_2048, NULL));
    OK(km_rsa_oaep_encrypt(k, 0, NULL, 0, NULL, 0, ct, sizeof ct, &n));
    OK(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, n, NULL, 0, &m));
    ck_assert_uint_eq(m, 0);
    ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, n, &sec), KM_E_INTEGRITY);
    ck_assert_ptr_null(sec);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "km_rsa_oaep_decrypt"));
    /* bad input */
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, 0, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 0, ct, n - 1, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(km_rsa_oaep_decrypt(k, 0, NULL, 5, ct, n, out, sizeof out, &m),
                     KM_E_INVALID);
    ck_assert_int_eq(km_rsa_oaep_encrypt(k, 0, NULL, 0, NULL, 3, ct, sizeof ct, &n), KM_E_INVALID);
    /* a signing-only RSA key neither encrypts to itself nor decrypts; an unwrap-only one
     * is encrypted to */
    o.usage = KM_USAGE_SIGN | KM_USAGE_VERIFY;
    OK(km_key_create(&s, ctx, "s", KM_KEY_RSA_2048, &o));
    ck_assert_int_eq(km_rsa_oaep_encrypt(s, 0, NULL, 0, out, 1, ct, sizeof ct, &n), KM_E_USAGE);
    OK(km_rsa_oaep_encrypt(k, 0, NULL, 0, out, 1, ct, sizeof ct, &n));
    ck_assert_int_eq(km_rsa_oaep_decrypt(s, 0, NULL, 0, ct, n, out, sizeof out, &m), KM_E_USAGE);
    km_key_free(s);
    o.usage = KM_USAGE_UNWRAP;
    OK(km_key_create(&s, ctx, "u", KM_KEY_RSA_2048, &o));
    OK(km_rsa_oaep_encrypt(s, 0, NULL, 0, out, 1, ct, sizeof ct, &n));
    OK(km_rsa_oaep_decrypt(s, 0, NULL, 0, ct, n, out, sizeof out, &m));
    ck_assert_uint_eq(m, 1);
    km_key_free(k);
    km_key_free(s);
}
END_TEST

/* PKCS#1 v1.5 signatures over whole messages (SHA-256): openssl verifies them;
 * they are not PSS signatures and the other way round; other key types refuse the flag. */
START_TEST(test_ops_rsa_pkcs1_sign_messages)
{
    km_key *k = NULL, *ec = NULL;
    const uint8_t msg[] = "pay 10 to bob";
    uint8_t sig[KM_SIGNATURE_MAX], pss[KM_SIGNATURE_MAX], der[1024];
    size_t n = 0, pn = 0, dn = 0;
    const unsigned char *p = der;
    EVP_PKEY *pub;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;

    OK(km_key_create(&k, ctx, "r", KM_KEY_RSA_2048, NULL));
    OK(km_key_create(&ec, ctx, "ec", KM_KEY_EC_P256, NULL));
    OK(km_sign(k, KM_SIG_PKCS1, msg, sizeof msg, sig, sizeof sig, &n));
    ck_assert_uint_eq(n, KM_TAG_HEADER + 256);
    OK(km_verify(k, 0, KM_SIG_PKCS1, msg, sizeof msg, sig, n));
    ck_assert_int_eq(km_verify(k, 0, 0, msg, sizeof msg, sig, n), KM_E_VERIFY);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_PKCS1, msg, sizeof msg - 1, sig, n), KM_E_VERIFY);
    OK(km_sign(k, 0, msg, sizeof msg, pss, sizeof pss, &pn));
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_PKCS1, msg, sizeof msg, pss, pn), KM_E_VERIFY);
    /* PKCS#1 v1.5 is deterministic */
    OK(km_sign(k, KM_SIG_PKCS1 | KM_SIG_RAW, msg, sizeof msg, pss, sizeof pss, &pn));
    ck_assert_mem_eq(pss, sig + KM_TAG_HEADER, 256);
    /* openssl verifies the raw one */
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, der, sizeof der, &dn));
    pub = d2i_PUBKEY(NULL, &p, (long)dn);
    ck_assert_ptr_nonnull(pub);
    ck_assert_int_eq(EVP_DigestVerifyInit_ex(m, &pc, "SHA256", NULL, NULL, pub, NULL), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING), 0);
    ck_assert_int_eq(EVP_DigestVerify(m, pss, pn, msg, sizeof msg), 1);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pub);
    ck_assert_int_eq(km_sign(ec, KM_SIG_PKCS1, msg, sizeof msg, sig, sizeof sig, &n),
                     KM_E_INVALID);
    ck_assert_int_eq(km_verify(ec, 0, KM_SIG_PKCS1, msg, sizeof msg, sig, n), KM_E_INVALID);
    km_key_free(k);
    km_key_free(ec);
}
END_TEST

/* --------------------------------------------------------------- AES-SIV */

/* AES-SIV of the header (first S2V string) and the aad (second, when not empty), with raw
 * OpenSSL: what docs/FORMATS.md says the ciphertext is (C then V after the header). */
static void siv_reference(const uint8_t *key, size_t klen, const uint8_t *hdr, const uint8_t *aad,
                          size_t alen, const uint8_t *pt, size_t plen, uint8_t *out)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, klen == 64 ? "AES-256-SIV" : "AES-128-SIV", NULL);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int len = 0;

    ck_assert_int_eq(EVP_EncryptInit_ex(x, c, NULL, key, NULL), 1);
    ck_assert_int_eq(EVP_EncryptUpdate(x, NULL, &len, hdr, KM_CIPHERTEXT_HEADER), 1);
    if (alen > 0)
        ck_assert_int_eq(EVP_EncryptUpdate(x, NULL, &len, aad, (int)alen), 1);
    ck_assert_int_eq(EVP_EncryptUpdate(x, out, &len, pt, (int)plen), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(x, out + plen, &len), 1);
    ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + plen), 1);
    EVP_CIPHER_CTX_free(x);
    EVP_CIPHER_free(c);
}

START_TEST(test_ops_siv_deterministic)
{
    static const uint8_t zero12[12];
    uint8_t key[64], a[128], b[128], c[128], ref[128], out[128];
    const uint8_t pt[] = "4111 1111 1111 1111";
    size_t na = 0, nb = 0, nc = 0, m = 0;
    km_key *k = NULL, *g = NULL;

    memset(key, 0x33, sizeof key);
    OK(km_key_import(&k, ctx, "siv", KM_KEY_AES_256_SIV, KM_MATERIAL_RAW, key, sizeof key,
                     KM_IMPORT_ALLOW_RAW, NULL));
    ck_assert_str_eq(km_key_type_name(KM_KEY_AES_256_SIV), "aes-256-siv");
    OK(km_encrypt(k, pt, sizeof pt, (const uint8_t *)"card", 4, a, sizeof a, &na));
    OK(km_encrypt(k, pt, sizeof pt, (const uint8_t *)"card", 4, b, sizeof b, &nb));
    ck_assert_uint_eq(na, sizeof pt + KM_CIPHERTEXT_OVERHEAD);
    /* equal plaintexts and aad give equal ciphertexts (the documented leakage) */
    ck_assert_uint_eq(na, nb);
    ck_assert_mem_eq(a, b, na);
    ck_assert_uint_eq(a[3], KM_KEY_AES_256_SIV);          /* its own algorithm id */
    ck_assert_mem_eq(a + 24, zero12, 12);                 /* no nonce */
    /* another aad, another message: another ciphertext */
    OK(km_encrypt(k, pt, sizeof pt, (const uint8_t *)"cardX", 5, c, sizeof c, &nc));
    ck_assert(memcmp(a + KM_CIPHERTEXT_HEADER, c + KM_CIPHERTEXT_HEADER, nc - 36) != 0);
    /* the format: AES-SIV(header, aad; pt) laid out as C || V */
    siv_reference(key, sizeof key, a, (const uint8_t *)"card", 4, pt, sizeof pt, ref);
    ck_assert_mem_eq(a + KM_CIPHERTEXT_HEADER, ref, sizeof pt + 16);
    OK(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m));
    ck_assert_uint_eq(m, sizeof pt);
    ck_assert_mem_eq(out, pt, m);
    /* tampering: data, tag, nonce field, algorithm id, aad */
    a[40] ^= 1;
    ck_assert_int_eq(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    a[40] ^= 1;
    a[na - 1] ^= 1;
    ck_assert_int_eq(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    a[na - 1] ^= 1;
    a[30] = 1;
    ck_assert_int_eq(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    a[30] = 0;
    a[3] = KM_KEY_AES_256_GCM;
    ck_assert_int_eq(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    a[3] = KM_KEY_AES_256_SIV;
    ck_assert_int_eq(km_decrypt(ctx, 0, a, na, (const uint8_t *)"cart", 4, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    OK(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m));
    /* an empty message: OpenSSL 3.0's AES-SIV cannot, refused cleanly */
    ck_assert_int_eq(km_encrypt(k, NULL, 0, NULL, 0, c, sizeof c, &nc), KM_E_UNSUPPORTED);
    /* a rotated key: another version, another ciphertext; the old one still decrypts */
    OK(km_key_rotate(k, NULL));
    OK(km_encrypt(k, pt, sizeof pt, (const uint8_t *)"card", 4, c, sizeof c, &nc));
    ck_assert(memcmp(a + KM_CIPHERTEXT_HEADER, c + KM_CIPHERTEXT_HEADER, nc - 36) != 0);
    OK(km_decrypt(ctx, 0, a, na, (const uint8_t *)"card", 4, out, sizeof out, &m));
    /* generated keys of each size; wrong import lengths; a GCM ciphertext is not a SIV one */
    OK(km_key_create(&g, ctx, "siv128", KM_KEY_AES_128_SIV, NULL));
    OK(km_encrypt(g, pt, sizeof pt, NULL, 0, b, sizeof b, &nb));
    OK(km_decrypt_key(g, 0, b, nb, NULL, 0, out, sizeof out, &m));
    km_key_free(g);
    OK(km_key_create(&g, ctx, "siv192", KM_KEY_AES_192_SIV, NULL));
    km_key_free(g);
    ck_assert_int_eq(km_key_import(&g, ctx, "s32", KM_KEY_AES_256_SIV, KM_MATERIAL_RAW, key, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    km_key_free(k);
}
END_TEST

/* Not FIPS 140-3 approved: the fips profile refuses AES-SIV keys. */
START_TEST(test_ops_siv_fips_refused)
{
    km_key *k = NULL;
    const char *pol = "{\"version\": 1, \"profile\": \"fips\"}";
    OK(km_policy_set(ctx, pol, strlen(pol)));
    ck_assert_int_eq(km_key_create(&k, ctx, "siv", KM_KEY_AES_256_SIV, NULL), KM_E_POLICY);
    ck_assert_int_eq(km_key_create(&k, ctx, "cmac", KM_KEY_AES_256_CMAC, NULL), KM_OK);
    km_key_free(k);
}
END_TEST

/* -------------------------------------------------------- envelope extras */

/* Data keys of every size a symmetric type has; the wrapped form is 52 + the length and
 * unwraps to the same bytes under the same aad only; not a data key type, refused. */
START_TEST(test_ops_datakey_sizes)
{
    static const struct { km_key_type t; size_t len; } v[] = {
        { KM_KEY_AES_128_GCM, 16 }, { KM_KEY_AES_192_GCM, 24 }, { KM_KEY_AES_256_GCM, 32 },
        { KM_KEY_HMAC_SHA256, 32 }, { KM_KEY_HMAC_SHA384, 48 }, { KM_KEY_HMAC_SHA512, 64 },
        { KM_KEY_AES_256_SIV, 64 },
    };
    km_key *kek = NULL;
    uint8_t w[256], out[256];
    size_t wl = 0, i, n = 0;
    km_secret *pt = NULL, *back = NULL;
    const char *pol = "{\"version\": 1, \"algorithms\": {\"hmac-sha512\": {\"allowed\": false}}}";

    OK(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_GCM, NULL));
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        OK(km_datakey_generate_type(kek, v[i].t, (const uint8_t *)"a", 1, &pt, w, sizeof w, &wl));
        ck_assert_uint_eq(km_secret_len(pt), v[i].len);
        ck_assert_uint_eq(wl, KM_CIPHERTEXT_OVERHEAD + v[i].len);
        ck_assert_uint_eq(w[1], 'D');
        OK(km_datakey_decrypt(ctx, w, wl, (const uint8_t *)"a", 1, &back));
        ck_assert_uint_eq(km_secret_len(back), v[i].len);
        ck_assert_mem_eq(km_secret_data(back), km_secret_data(pt), v[i].len);
        km_secret_free(back);
        back = NULL;
        ck_assert_int_eq(km_datakey_decrypt(ctx, w, wl, (const uint8_t *)"b", 1, &back),
                         KM_E_INTEGRITY);
        ck_assert_int_eq(km_decrypt(ctx, 0, w, wl, (const uint8_t *)"a", 1, out, sizeof out, &n),
                         KM_E_INVALID);
        km_secret_free(pt);
        pt = NULL;
    }
    /* without the plaintext; too small a buffer says how much */
    OK(km_datakey_generate_type(kek, KM_KEY_AES_128_GCM, NULL, 0, NULL, w, sizeof w, &wl));
    ck_assert_int_eq(km_datakey_generate_type(kek, KM_KEY_HMAC_SHA512, NULL, 0, NULL, w, 100, &wl),
                     KM_E_BUFFER);
    ck_assert_uint_eq(wl, 116);
    /* not data key types; a length no data key has */
    ck_assert_int_eq(km_datakey_generate_type(kek, KM_KEY_EC_P256, NULL, 0, &pt, w, sizeof w, &wl),
                     KM_E_INVALID);
    ck_assert_int_eq(km_datakey_generate_type(kek, KM_KEY_AES_256_KWP, NULL, 0, &pt, w, sizeof w,
                                              &wl), KM_E_INVALID);
    ck_assert_int_eq(km_datakey_decrypt(ctx, w, KM_CIPHERTEXT_OVERHEAD + 20, NULL, 0, &back),
                     KM_E_INVALID);
    /* the vault policy decides the type, as for keys */
    OK(km_policy_set(ctx, pol, strlen(pol)));
    ck_assert_int_eq(km_datakey_generate_type(kek, KM_KEY_HMAC_SHA512, NULL, 0, &pt, w, sizeof w,
                                              &wl), KM_E_POLICY);
    ck_assert_ptr_null(pt);
    km_key_free(kek);
}
END_TEST

static const km_key_type pair_types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_RSA_2048,
                                          KM_KEY_ED25519, KM_KEY_X25519, KM_KEY_RSA_3072 };

/* A data key pair: the private key wrapped (K P), the public key plain; the private key
 * imported as a key gives the same public key; only km_datakey_pair_decrypt opens it. */
START_TEST(test_ops_datakey_pair)
{
    km_key_type type = pair_types[_i];
    km_key *kek = NULL, *imp = NULL;
    uint8_t w[KM_DATAKEY_PAIR_WRAPPED_MAX], pub[KM_DATAKEY_PAIR_PUBLIC_MAX], pub2[1024], out[4096];
    size_t wl = 0, pl = 0, pl2 = 0, n = 0;
    km_secret *priv = NULL, *back = NULL;
    char name[32];

    OK(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_GCM, NULL));
    OK(km_datakey_pair_generate(kek, type, (const uint8_t *)"ctx", 3, &priv, w, sizeof w, &wl,
                                pub, sizeof pub, &pl));
    ck_assert_uint_eq(w[1], 'P');
    ck_assert_uint_eq(wl, KM_CIPHERTEXT_OVERHEAD + km_secret_len(priv));
    OK(km_datakey_pair_decrypt(ctx, w, wl, (const uint8_t *)"ctx", 3, &back));
    ck_assert_uint_eq(km_secret_len(back), km_secret_len(priv));
    ck_assert_mem_eq(km_secret_data(back), km_secret_data(priv), km_secret_len(priv));
    /* the private key is a PKCS#8 of the type, whose public key is the one returned */
    snprintf(name, sizeof name, "imp-%d", (int)type);
    OK(km_key_import(&imp, ctx, name, type, KM_MATERIAL_PKCS8_DER, km_secret_data(priv),
                     km_secret_len(priv), KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_key_public_export(imp, 0, KM_MATERIAL_SPKI_DER, pub2, sizeof pub2, &pl2));
    ck_assert_uint_eq(pl, pl2);
    ck_assert_mem_eq(pub, pub2, pl);
    km_secret_free(back);
    back = NULL;
    /* wrong aad; other unwrapping calls */
    ck_assert_int_eq(km_datakey_pair_decrypt(ctx, w, wl, (const uint8_t *)"ctX", 3, &back),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(km_datakey_decrypt(ctx, w, wl, (const uint8_t *)"ctx", 3, &back),
                     KM_E_INVALID);
    ck_assert_int_eq(km_decrypt(ctx, 0, w, wl, (const uint8_t *)"ctx", 3, out, sizeof out, &n),
                     KM_E_INVALID);
    ck_assert_ptr_null(back);
    /* without the private key in clear; the buffers too small */
    OK(km_datakey_pair_generate(kek, type, NULL, 0, NULL, w, sizeof w, &wl, pub, sizeof pub, &pl));
    ck_assert_int_eq(km_datakey_pair_generate(kek, type, NULL, 0, NULL, w, 60, &wl, pub,
                                              sizeof pub, &pl), KM_E_BUFFER);
    ck_assert_uint_gt(wl, 60);
    ck_assert_int_eq(km_datakey_pair_generate(kek, type, NULL, 0, NULL, w, sizeof w, &wl, pub, 8,
                                              &pl), KM_E_BUFFER);
    ck_assert_uint_gt(pl, 8);
    km_secret_free(priv);
    km_key_free(imp);
    km_key_free(kek);
}
END_TEST

START_TEST(test_ops_datakey_pair_refusals)
{
    km_key *kek = NULL, *ec = NULL;
    uint8_t w[KM_DATAKEY_PAIR_WRAPPED_MAX], pub[KM_DATAKEY_PAIR_PUBLIC_MAX];
    size_t wl = 0, pl = 0;
    km_secret *priv = NULL;
    const char *pol = "{\"version\": 1, \"algorithms\": {\"ed25519\": {\"allowed\": false}}}";

    OK(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&ec, ctx, "ec", KM_KEY_EC_P256, NULL));
    ck_assert_int_eq(km_datakey_pair_generate(kek, KM_KEY_AES_256_GCM, NULL, 0, &priv, w, sizeof w,
                                              &wl, pub, sizeof pub, &pl), KM_E_INVALID);
    ck_assert_int_eq(km_datakey_pair_generate(kek, KM_KEY_FFDHE2048, NULL, 0, &priv, w, sizeof w,
                                              &wl, pub, sizeof pub, &pl), KM_E_INVALID);
    /* the KEK must encrypt */
    ck_assert_int_eq(km_datakey_pair_generate(ec, KM_KEY_EC_P256, NULL, 0, &priv, w, sizeof w, &wl,
                                              pub, sizeof pub, &pl), KM_E_USAGE);
    OK(km_policy_set(ctx, pol, strlen(pol)));
    ck_assert_int_eq(km_datakey_pair_generate(kek, KM_KEY_ED25519, NULL, 0, &priv, w, sizeof w,
                                              &wl, pub, sizeof pub, &pl), KM_E_POLICY);
    ck_assert_ptr_null(priv);
    km_key_free(kek);
    km_key_free(ec);
}
END_TEST

/* Issue 22 item 7: data under a COMPROMISED version is rewrapped (not handed out as plaintext)
 * only when the caller asks with KM_DECRYPT_ALLOW_COMPROMISED through km_rewrap_ex. */
START_TEST(test_ops_rewrap_compromised)
{
    km_key *k = NULL;
    uint8_t ct[128], ct2[128], out[128];
    size_t n = 0, n2 = 0, m = 0;
    uint32_t v = 0;

    OK(km_key_create(&k, ctx, "cmp", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, (const uint8_t *)"payload", 7, (const uint8_t *)"a", 1, ct, sizeof ct, &n));
    OK(km_key_rotate(k, &v));
    ck_assert_uint_eq(v, 2);
    OK(km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, 1700000000));
    ck_assert_int_eq(km_rewrap(ctx, ct, n, (const uint8_t *)"a", 1, ct2, sizeof ct2, &n2),
                     KM_E_STATE);
    ck_assert_int_eq(km_rewrap_ex(ctx, 0, ct, n, (const uint8_t *)"a", 1, NULL, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_STATE);
    ck_assert_int_eq(km_rewrap_ex(ctx, 0x80, ct, n, (const uint8_t *)"a", 1, NULL, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_INVALID);
    OK(km_rewrap_ex(ctx, KM_DECRYPT_ALLOW_COMPROMISED, ct, n, (const uint8_t *)"a", 1, NULL, NULL,
                    0, ct2, sizeof ct2, &n2));
    ck_assert_uint_eq(n2, n);
    /* the output is under v2: it decrypts without the flag */
    OK(km_decrypt(ctx, 0, ct2, n2, (const uint8_t *)"a", 1, out, sizeof out, &m));
    ck_assert_mem_eq(out, "payload", 7);
    km_key_free(k);
}
END_TEST

/* Issue 22 item 7: km_rewrap_batch_ex keeps each failed item's own detail (tampered,
 * wrong aad, compromised without the flag), and the flag lets the compromised one through. */
START_TEST(test_ops_rewrap_batch_detail)
{
    km_key *k = NULL, *c = NULL;
    uint8_t ct[3][64], out[3][64];
    size_t n[3], i;
    km_batch_item it[3];
    uint32_t v = 0;

    OK(km_key_create(&k, ctx, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&c, ctx, "c", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, (const uint8_t *)"m0", 2, (const uint8_t *)"a", 1, ct[0], 64, &n[0]));
    OK(km_encrypt(k, (const uint8_t *)"m1", 2, (const uint8_t *)"a", 1, ct[1], 64, &n[1]));
    OK(km_encrypt(c, (const uint8_t *)"m2", 2, (const uint8_t *)"a", 1, ct[2], 64, &n[2]));
    OK(km_key_rotate(c, &v));
    OK(km_key_revoke(c, 1, KM_REVOKE_KEY_COMPROMISE, 1700000000));
    memset(it, 0, sizeof it);
    for (i = 0; i < 3; i++) {
        it[i].in = ct[i];
        it[i].in_len = n[i];
        it[i].aad = (const uint8_t *)"a";
        it[i].aad_len = 1;
        it[i].out = out[i];
        it[i].out_cap = 64;
    }
    it[1].aad = (const uint8_t *)"b"; /* the wrong aad */
    ck_assert_int_eq(km_rewrap_batch_ex(ctx, 0, it, 3), KM_E_INTEGRITY);
    ck_assert_int_eq(it[0].result, KM_OK);
    ck_assert_str_eq(it[0].detail, "");
    ck_assert_int_eq(it[1].result, KM_E_INTEGRITY);
    ck_assert_int_eq(it[2].result, KM_E_STATE);
    ck_assert_ptr_nonnull(strstr(it[2].detail, "compromised"));
    ck_assert_ptr_null(strstr(it[1].detail, "compromised"));
    ck_assert_str_ne(it[1].detail, "");
    it[1].aad = (const uint8_t *)"a";
    OK(km_rewrap_batch_ex(ctx, KM_DECRYPT_ALLOW_COMPROMISED, it, 3));
    ck_assert_int_eq(it[2].result, KM_OK);
    ck_assert_uint_eq(it[2].out_len, n[2]);
    ck_assert_int_eq(km_rewrap_batch_ex(ctx, 0x80, it, 3), KM_E_INVALID);
    ck_assert_int_eq(km_rewrap_batch_ex(ctx, 0, NULL, 3), KM_E_INVALID);
    km_key_free(k);
    km_key_free(c);
}
END_TEST

/* Rewrap to another key and another aad; the kind stays; the principal needs decrypt on the
 * source key and encrypt on the target. */
START_TEST(test_ops_rewrap_to)
{
    km_key *a = NULL, *b = NULL, *ua = NULL, *ub = NULL, *ec = NULL;
    km_ctx *uc = NULL;
    uint8_t ct[128], ct2[128], out[128], w[128], w2[128];
    size_t n = 0, n2 = 0, m = 0, wl = 0, wl2 = 0;
    km_secret *dk = NULL, *dk2 = NULL;

    OK(km_key_create(&a, ctx, "a", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&b, ctx, "b", KM_KEY_AES_128_GCM, NULL));
    OK(km_key_create(&ec, ctx, "ec", KM_KEY_EC_P256, NULL));
    OK(km_encrypt(a, (const uint8_t *)"payload", 7, (const uint8_t *)"old", 3, ct, sizeof ct, &n));
    OK(km_rewrap_to(ctx, ct, n, (const uint8_t *)"old", 3, b, (const uint8_t *)"new", 3, ct2,
                    sizeof ct2, &n2));
    ck_assert_uint_eq(n2, n);
    ck_assert_mem_eq(ct2 + 4, km_key_id(b), 16);
    OK(km_decrypt(ctx, 0, ct2, n2, (const uint8_t *)"new", 3, out, sizeof out, &m));
    ck_assert_mem_eq(out, "payload", 7);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct2, n2, (const uint8_t *)"old", 3, out, sizeof out, &m),
                     KM_E_INTEGRITY);
    /* the same key, a new aad; an empty one */
    OK(km_rewrap_to(ctx, ct, n, (const uint8_t *)"old", 3, NULL, (const uint8_t *)"", 0, ct2,
                    sizeof ct2, &n2));
    ck_assert_mem_eq(ct2 + 4, km_key_id(a), 16);
    OK(km_decrypt(ctx, 0, ct2, n2, NULL, 0, out, sizeof out, &m));
    /* a wrapped data key stays one */
    OK(km_datakey_generate(a, (const uint8_t *)"x", 1, &dk, w, sizeof w, &wl));
    OK(km_rewrap_to(ctx, w, wl, (const uint8_t *)"x", 1, b, NULL, 0, w2, sizeof w2, &wl2));
    OK(km_datakey_decrypt(ctx, w2, wl2, (const uint8_t *)"x", 1, &dk2));
    ck_assert_mem_eq(km_secret_data(dk2), km_secret_data(dk), KM_DATAKEY_LEN);
    /* wrong old aad; a target that does not encrypt */
    ck_assert_int_eq(km_rewrap_to(ctx, ct, n, (const uint8_t *)"odl", 3, b, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_INTEGRITY);
    ck_assert_int_eq(km_rewrap_to(ctx, ct, n, (const uint8_t *)"old", 3, ec, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_USAGE);
    /* grants: the user may decrypt a and encrypt nothing under b, then may */
    tu_principals_add(ctx);
    OK(km_key_grant(a, TU_USER, KM_PERM_DECRYPT | KM_PERM_ENCRYPT));
    OK(km_key_grant(b, TU_USER, KM_PERM_DECRYPT));
    OK(tu_vault_open_as(&uc, dir, TU_USER, TU_USER_PASS, 0));
    OK(km_key_open(&ua, uc, "a"));
    OK(km_key_open(&ub, uc, "b"));
    ck_assert_int_eq(km_rewrap_to(uc, ct, n, (const uint8_t *)"old", 3, ub, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_DENIED);
    OK(km_key_grant(b, TU_USER, KM_PERM_DECRYPT | KM_PERM_ENCRYPT));
    OK(km_key_grant(a, TU_USER, KM_PERM_ENCRYPT));
    km_key_free(ua);
    km_key_free(ub);
    km_close(uc);
    OK(tu_vault_open_as(&uc, dir, TU_USER, TU_USER_PASS, 0));
    OK(km_key_open(&ub, uc, "b"));
    /* now encrypt on b, but no more decrypt on a */
    ck_assert_int_eq(km_rewrap_to(uc, ct, n, (const uint8_t *)"old", 3, ub, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_DENIED);
    OK(km_key_grant(a, TU_USER, KM_PERM_DECRYPT));
    km_key_free(ub);
    km_close(uc);
    OK(tu_vault_open_as(&uc, dir, TU_USER, TU_USER_PASS, 0));
    OK(km_key_open(&ub, uc, "b"));
    OK(km_rewrap_to(uc, ct, n, (const uint8_t *)"old", 3, ub, NULL, 0, ct2, sizeof ct2, &n2));
    /* a key of another vault handle is refused */
    ck_assert_int_eq(km_rewrap_to(ctx, ct, n, (const uint8_t *)"old", 3, ub, NULL, 0, ct2,
                                  sizeof ct2, &n2), KM_E_INVALID);
    km_key_free(ub);
    km_close(uc);
    km_secret_free(dk);
    km_secret_free(dk2);
    km_key_free(a);
    km_key_free(b);
    km_key_free(ec);
}
END_TEST

/* ------------------------------------------------------------------ batch */

START_TEST(test_ops_batch_encrypt_decrypt)
{
    enum { N = 64 };
    static km_batch_item it[N], dt[N];
    static uint8_t pt[N][40], ct[N][40 + KM_CIPHERTEXT_OVERHEAD], back[N][40];
    km_key *k = NULL, *ec = NULL;
    size_t i;
    char aad[N][8];

    OK(km_key_create(&k, ctx, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&ec, ctx, "ec", KM_KEY_EC_P256, NULL));
    memset(it, 0, sizeof it);
    for (i = 0; i < N; i++) {
        memset(pt[i], (int)i, sizeof pt[i]);
        snprintf(aad[i], sizeof aad[i], "row%zu", i);
        it[i].in = pt[i];
        it[i].in_len = 1 + i % 40;
        it[i].aad = (const uint8_t *)aad[i];
        it[i].aad_len = strlen(aad[i]);
        it[i].out = ct[i];
        it[i].out_cap = sizeof ct[i];
    }
    /* two bad items among them: a NULL input, too small an output */
    it[5].in = NULL;
    it[9].out_cap = 10;
    ck_assert_int_eq(km_batch(k, KM_BATCH_ENCRYPT, 0, it, N), KM_E_INVALID);
    for (i = 0; i < N; i++) {
        if (i == 5 || i == 9)
            continue;
        ck_assert_int_eq(it[i].result, KM_OK);
        ck_assert_str_eq(it[i].detail, "");
        ck_assert_uint_eq(it[i].out_len, it[i].in_len + KM_CIPHERTEXT_OVERHEAD);
    }
    ck_assert_int_eq(it[5].result, KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(it[5].detail, "pt is NULL"));
    ck_assert_int_eq(it[9].result, KM_E_BUFFER);
    ck_assert_uint_eq(it[9].out_len, it[9].in_len + KM_CIPHERTEXT_OVERHEAD);
    /* every nonce differs; each decrypts singly and in a batch; one tampered item fails alone */
    ck_assert(memcmp(ct[0] + 24, ct[1] + 24, 12) != 0);
    memset(dt, 0, sizeof dt);
    for (i = 0; i < N; i++) {
        dt[i].in = ct[i];
        dt[i].in_len = it[i].out_len;
        dt[i].aad = it[i].aad;
        dt[i].aad_len = it[i].aad_len;
        dt[i].out = back[i];
        dt[i].out_cap = sizeof back[i];
    }
    dt[5].in_len = dt[9].in_len = 0; /* the failed ones: nothing to decrypt */
    dt[5].in = dt[9].in = ct[0];
    ct[20][40] ^= 1;
    ck_assert_int_eq(km_batch(k, KM_BATCH_DECRYPT, 0, dt, N), KM_E_INVALID);
    for (i = 0; i < N; i++) {
        if (i == 5 || i == 9) {
            ck_assert_int_eq(dt[i].result, KM_E_INVALID);
            continue;
        }
        if (i == 20) {
            ck_assert_int_eq(dt[i].result, KM_E_INTEGRITY);
            ck_assert_ptr_nonnull(strstr(dt[i].detail, "authentication"));
            continue;
        }
        ck_assert_int_eq(dt[i].result, KM_OK);
        ck_assert_uint_eq(dt[i].out_len, it[i].in_len);
        ck_assert_mem_eq(back[i], pt[i], it[i].in_len);
    }
    /* a key that does not encrypt: every item refused with the key's reason */
    ck_assert_int_eq(km_batch(ec, KM_BATCH_ENCRYPT, 0, it, N), KM_E_USAGE);
    for (i = 0; i < N; i++) {
        ck_assert_int_eq(it[i].result, KM_E_USAGE);
        ck_assert_ptr_nonnull(strstr(it[i].detail, "does not encrypt"));
    }
    /* bad calls touch nothing */
    it[0].result = 12345;
    ck_assert_int_eq(km_batch(k, (km_batch_op)0, 0, it, N), KM_E_INVALID);
    ck_assert_int_eq(km_batch(k, KM_BATCH_ENCRYPT, 1, it, N), KM_E_INVALID);
    ck_assert_int_eq(km_batch(NULL, KM_BATCH_ENCRYPT, 0, it, N), KM_E_INVALID);
    ck_assert_int_eq(km_batch(k, KM_BATCH_ENCRYPT, 0, it, KM_BATCH_MAX + 1), KM_E_INVALID);
    ck_assert_int_eq(it[0].result, 12345);
    OK(km_batch(k, KM_BATCH_ENCRYPT, 0, NULL, 0));
    km_key_free(k);
    km_key_free(ec);
}
END_TEST

/* A suspended key refuses the whole batch (lifecycle checked once, for all). */
START_TEST(test_ops_batch_state_and_audit)
{
    km_batch_item it[3];
    uint8_t out[3][80];
    km_key *k = NULL;
    size_t i;
    uint64_t before = 0, after = 0;

    OK(km_key_create(&k, ctx, "k", KM_KEY_AES_128_GCM, NULL));
    memset(it, 0, sizeof it);
    for (i = 0; i < 3; i++) {
        it[i].in = (const uint8_t *)"x";
        it[i].in_len = 1;
        it[i].out = out[i];
        it[i].out_cap = sizeof out[i];
    }
    /* every item is audited at the "every" level */
    OK(km_audit_set_level(ctx, KM_AUDIT_DATA_EVERY));
    OK(km_audit_flush(ctx));
    OK(km_audit_verify(ctx, NULL, &before, NULL));
    OK(km_batch(k, KM_BATCH_ENCRYPT, 0, it, 3));
    OK(km_audit_flush(ctx));
    OK(km_audit_verify(ctx, NULL, &after, NULL));
    ck_assert_uint_eq(after, before + 3);
    OK(km_key_suspend(k, 0));
    ck_assert_int_eq(km_batch(k, KM_BATCH_ENCRYPT, 0, it, 3), KM_E_STATE);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(it[i].result, KM_E_STATE);
        ck_assert_uint_eq(it[i].out_len, 0);
    }
    km_key_free(k);
}
END_TEST

START_TEST(test_ops_batch_sign_verify_mac)
{
    enum { N = 8 };
    km_batch_item it[N], vt[N];
    uint8_t sig[N][KM_SIGNATURE_MAX], tag[N][KM_MAC_MAX];
    char msg[N][16];
    km_key *ec = NULL, *h = NULL;
    size_t i;

    OK(km_key_create(&ec, ctx, "ec", KM_KEY_ED25519, NULL));
    OK(km_key_create(&h, ctx, "h", KM_KEY_AES_128_CMAC, NULL));
    memset(it, 0, sizeof it);
    for (i = 0; i < N; i++) {
        snprintf(msg[i], sizeof msg[i], "message %zu", i);
        it[i].in = (const uint8_t *)msg[i];
        it[i].in_len = strlen(msg[i]);
        it[i].out = sig[i];
        it[i].out_cap = sizeof sig[i];
    }
    OK(km_batch(ec, KM_BATCH_SIGN, 0, it, N));
    memcpy(vt, it, sizeof vt);
    for (i = 0; i < N; i++) {
        vt[i].sig = sig[i];
        vt[i].sig_len = it[i].out_len;
    }
    OK(km_batch(ec, KM_BATCH_VERIFY, 0, vt, N));
    vt[3].sig = sig[4]; /* another message's signature */
    vt[3].sig_len = it[4].out_len;
    ck_assert_int_eq(km_batch(ec, KM_BATCH_VERIFY, 0, vt, N), KM_E_VERIFY);
    for (i = 0; i < N; i++)
        ck_assert_int_eq(vt[i].result, i == 3 ? KM_E_VERIFY : KM_OK);
    /* MACs, raw */
    for (i = 0; i < N; i++) {
        it[i].out = tag[i];
        it[i].out_cap = sizeof tag[i];
    }
    OK(km_batch(h, KM_BATCH_MAC, KM_SIG_RAW, it, N));
    for (i = 0; i < N; i++) {
        ck_assert_uint_eq(it[i].out_len, 16);
        vt[i].sig = tag[i];
        vt[i].sig_len = 16;
    }
    OK(km_batch(h, KM_BATCH_MAC_VERIFY, KM_SIG_RAW, vt, N));
    tag[6][0] ^= 1;
    ck_assert_int_eq(km_batch(h, KM_BATCH_MAC_VERIFY, KM_SIG_RAW, vt, N), KM_E_VERIFY);
    ck_assert_int_eq(vt[6].result, KM_E_VERIFY);
    ck_assert_int_eq(vt[7].result, KM_OK);
    km_key_free(ec);
    km_key_free(h);
}
END_TEST

/* -------------------------------------------------------------------- JWK */

static const struct { km_key_type t; const char *head; } jwk_types[] = {
    { KM_KEY_EC_P256, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" },
    { KM_KEY_EC_P384, "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"" },
    { KM_KEY_EC_P521, "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"" },
    { KM_KEY_RSA_2048, "{\"kty\":\"RSA\",\"n\":\"" },
    { KM_KEY_ED25519, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"" },
    { KM_KEY_X25519, "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"" },
};

/* A public key as a JWK and back: the same SPKI; the imported key verifies what the
 * original signs and is verify-only. */
START_TEST(test_ops_jwk_round_trip)
{
    km_key_type type = jwk_types[_i].t;
    km_key *k = NULL, *imp = NULL;
    char jwk[2048];
    uint8_t a[1024], b[1024], sig[KM_SIGNATURE_MAX];
    size_t jl = 0, al = 0, bl = 0, sl = 0;

    OK(km_key_create(&k, ctx, "orig", type, NULL));
    OK(km_key_public_export(k, 0, KM_MATERIAL_JWK, (uint8_t *)jwk, sizeof jwk, &jl));
    ck_assert_uint_eq(jl, strlen(jwk));
    ck_assert_msg(strncmp(jwk, jwk_types[_i].head, strlen(jwk_types[_i].head)) == 0, "%s", jwk);
    ck_assert_ptr_null(strchr(jwk, '='));  /* base64url without padding */
    ck_assert_ptr_null(strstr(jwk, "\"d\""));
    ck_assert_int_eq(km_key_public_export(k, 0, KM_MATERIAL_JWK, (uint8_t *)jwk, 10, &jl),
                     KM_E_BUFFER);
    OK(km_key_public_export(k, 0, KM_MATERIAL_JWK, (uint8_t *)jwk, sizeof jwk, &jl));
    if (type == KM_KEY_X25519) {
        /* a public X25519 key does nothing in libkm (agreement needs the private key) */
        ck_assert_int_eq(km_key_import(&imp, ctx, "from-jwk", type, KM_MATERIAL_JWK,
                                       (const uint8_t *)jwk, jl, KM_IMPORT_ALLOW_RAW, NULL),
                         KM_E_INVALID);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "no use"));
        km_key_free(k);
        return;
    }
    OK(km_key_import(&imp, ctx, "from-jwk", type, KM_MATERIAL_JWK, (const uint8_t *)jwk, jl,
                     KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, a, sizeof a, &al));
    OK(km_key_public_export(imp, 0, KM_MATERIAL_SPKI_DER, b, sizeof b, &bl));
    ck_assert_uint_eq(al, bl);
    ck_assert_mem_eq(a, b, al);
    OK(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &sl));
    OK(km_verify(imp, 0, KM_SIG_RAW, (const uint8_t *)"m", 1, sig + KM_TAG_HEADER,
                 sl - KM_TAG_HEADER));
    ck_assert_int_eq(km_sign(imp, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &sl),
                     KM_E_USAGE);
    km_key_free(k);
    km_key_free(imp);
}
END_TEST

START_TEST(test_ops_jwk_refused)
{
    static const char *const bad[] = {
        "not json",
        "[1, 2]",
        "{\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-192\",\"x\":\"AA\",\"y\":\"AA\"}",
        /* a point of the right length but not on P-256 */
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
        /* coordinates shorter than the field */
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AA\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA==\"}",
    };
    km_key *k = NULL, *e = NULL;
    char jwk[2048], priv[2300];
    size_t jl = 0, i;
    char name[16];

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(name, sizeof name, "bad%zu", i);
        ck_assert_msg(km_key_import(&k, ctx, name, KM_KEY_EC_P256, KM_MATERIAL_JWK,
                                    (const uint8_t *)bad[i], strlen(bad[i]), KM_IMPORT_ALLOW_RAW,
                                    NULL) == KM_E_INVALID, "%s", bad[i]);
        ck_assert_ptr_null(k);
    }
    /* a private JWK (with "d") is refused; the type must match the key's */
    OK(km_key_create(&e, ctx, "ec", KM_KEY_EC_P256, NULL));
    OK(km_key_public_export(e, 0, KM_MATERIAL_JWK, (uint8_t *)jwk, sizeof jwk, &jl));
    snprintf(priv, sizeof priv, "%.*s,\"d\":\"AQ\"}", (int)jl - 1, jwk);
    ck_assert_int_eq(km_key_import(&k, ctx, "priv", KM_KEY_EC_P256, KM_MATERIAL_JWK,
                                   (const uint8_t *)priv, strlen(priv), KM_IMPORT_ALLOW_RAW, NULL),
                     KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "private"));
    ck_assert_int_eq(km_key_import(&k, ctx, "p384", KM_KEY_EC_P384, KM_MATERIAL_JWK,
                                   (const uint8_t *)jwk, jl, KM_IMPORT_ALLOW_RAW, NULL),
                     KM_E_INVALID);
    /* symmetric and FFDHE keys have no JWK form here */
    km_key_free(e);
    OK(km_key_create(&e, ctx, "aes", KM_KEY_AES_256_GCM, NULL));
    ck_assert_int_eq(km_key_public_export(e, 0, KM_MATERIAL_JWK, (uint8_t *)jwk, sizeof jwk, &jl),
                     KM_E_UNSUPPORTED);
    km_key_free(e);
}
END_TEST

/* ----------------------------------------------------- explicit EC curves */

/* Wycheproof ecdh_secp256r1_test.json tcId 361 ("cofactor = n", flags LargeCofactor,
 * InvalidPublic, UnnamedCurve): a P-256 public key spelled with explicit curve parameters.
 * Refused at import and as an agreement peer; the same point on the named curve works. */
START_TEST(test_ops_ec_explicit_parameters_refused)
{
    static const char *const hex =
        "308201553082010d06072a8648ce3d020130820100020101302c06072a8648ce3d0101022100ffff"
        "ffff00000001000000000000000000000000ffffffffffffffffffffffff30440420ffffffff0000"
        "0001000000000000000000000000fffffffffffffffffffffffc04205ac635d8aa3a93e7b3ebbd55"
        "769886bc651d06b0cc53b0f63bce3c3e27d2604b0441046b17d1f2e12c4247f8bce6e563a440f277"
        "037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececb"
        "b6406837bf51f5022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63"
        "2551022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551034200"
        "041510264c189c3d523ff9916abd7069efa6968d8dc7ddb6457d7869b53ea60cdcfafb7ed4786da1"
        "5d29ee59256f536da3575a4888c1bb0a95b256f4a7e9fd764a";
    size_t n = 0, pn = 0;
    uint8_t *spki = tu_unhex(hex, &n), peer[128];
    km_key *k = NULL, *imp = NULL, *other = NULL;
    km_secret *sec = NULL;

    OK(km_key_create(&k, ctx, "me", KM_KEY_EC_P256, NULL));
    ck_assert_int_eq(km_key_import(&imp, ctx, "explicit", KM_KEY_EC_P256, KM_MATERIAL_SPKI_DER,
                                   spki, n, KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "explicit"));
    ck_assert_int_eq(km_agree(k, spki, n, NULL, 0, 32, &sec), KM_E_INVALID);
    ck_assert_ptr_null(sec);
    /* a named-curve peer still agrees */
    OK(km_key_create(&other, ctx, "other", KM_KEY_EC_P256, NULL));
    OK(km_key_public_export(other, 0, KM_MATERIAL_SPKI_DER, peer, sizeof peer, &pn));
    OK(km_agree(k, peer, pn, NULL, 0, 32, &sec));
    km_secret_free(sec);
    free(spki);
    km_key_free(k);
    km_key_free(other);
}
END_TEST

/* ------------------------------------------------------- raw agreement */

/* The public key (SPKI DER) of an OpenSSL key. */
static size_t spki_of(EVP_PKEY *p, uint8_t *out, size_t cap)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(p, &der);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_le((size_t)n, cap);
    memcpy(out, der, (size_t)n);
    OPENSSL_free(der);
    return (size_t)n;
}

/* OpenSSL's agreement of `priv` with the public key `spki` (DH: padded to the prime). */
static size_t ossl_agree(EVP_PKEY *priv, const uint8_t *spki, size_t spki_len, uint8_t *out,
                         size_t cap)
{
    const unsigned char *p = spki;
    EVP_PKEY *peer = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(priv, NULL);
    size_t n = cap;
    ck_assert_ptr_nonnull(peer);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(EVP_PKEY_derive_init(c), 1);
    if (EVP_PKEY_is_a(priv, "DH"))
        ck_assert_int_eq(EVP_PKEY_CTX_set_dh_pad(c, 1), 1);
    ck_assert_int_eq(EVP_PKEY_derive_set_peer(c, peer), 1);
    ck_assert_int_eq(EVP_PKEY_derive(c, out, &n), 1);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(peer);
    return n;
}

static km_key *agree_raw_key(const char *name, km_key_type type)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    o.usage = KM_USAGE_AGREE | KM_USAGE_AGREE_RAW;
    OK(km_key_create(&k, ctx, name, type, &o));
    return k;
}

static const struct { km_key_type type; const char *ossl, *group; size_t len; } raw_types[] = {
    { KM_KEY_EC_P256, "EC", "P-256", 32 }, { KM_KEY_EC_P384, "EC", "P-384", 48 },
    { KM_KEY_EC_P521, "EC", "P-521", 66 }, { KM_KEY_X25519, "X25519", NULL, 32 },
};

/* km_agree_raw gives what OpenSSL computes on the peer's side, the field's
 * length; km_agree is HKDF-SHA-256 of that very secret; each call is audited
 * (agree.raw, whatever the audit level), the secret never in the entry. */
START_TEST(test_ops_agree_raw_matches_peer)
{
    uint8_t mine[200], theirs[200], want[80], hk[32];
    size_t ml = 0, tl, wl;
    EVP_PKEY *peer = raw_types[_i].group != NULL
                         ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", raw_types[_i].group)
                         : EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    km_key *k = agree_raw_key("raw", raw_types[_i].type);
    km_secret *z = NULL, *d = NULL;
    int before = tu_audit_count(ctx, "agree.raw", "raw shared secret");

    ck_assert_ptr_nonnull(peer);
    tl = spki_of(peer, theirs, sizeof theirs);
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, mine, sizeof mine, &ml));
    wl = ossl_agree(peer, mine, ml, want, sizeof want);
    ck_assert_uint_eq(wl, raw_types[_i].len);
    OK(km_agree_raw(k, theirs, tl, &z));
    ck_assert_uint_eq(km_secret_len(z), wl);
    ck_assert_mem_eq(km_secret_data(z), want, wl);
    /* the derived form is HKDF of the same secret (empty salt, info "i") */
    OK(km_agree(k, theirs, tl, (const uint8_t *)"i", 1, 32, &d));
    {
        EVP_PKEY_CTX *h = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
        size_t hl = sizeof hk;
        ck_assert_ptr_nonnull(h);
        ck_assert_int_eq(EVP_PKEY_derive_init(h), 1);
        ck_assert_int_eq(EVP_PKEY_CTX_set_hkdf_md(h, EVP_sha256()), 1);
        ck_assert_int_eq(EVP_PKEY_CTX_set1_hkdf_key(h, want, (int)wl), 1);
        ck_assert_int_eq(EVP_PKEY_CTX_add1_hkdf_info(h, (const unsigned char *)"i", 1), 1);
        ck_assert_int_eq(EVP_PKEY_derive(h, hk, &hl), 1);
        EVP_PKEY_CTX_free(h);
    }
    ck_assert_mem_eq(km_secret_data(d), hk, 32);
    ck_assert_int_eq(tu_audit_count(ctx, "agree.raw", "raw shared secret"), before + 1);
    km_secret_free(z);
    km_secret_free(d);
    km_key_free(k);
    EVP_PKEY_free(peer);
}
END_TEST

/* The gates, each playing the attacker: a key made without agree-raw (and
 * one that cannot be given it later), a principal holding every ordinary
 * permission but not the agree-raw grant, a vault and a key policy that
 * forbid it; bad peers. Refusals reaching the key are audited. */
START_TEST(test_ops_agree_raw_refused)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key_settings set;
    uint8_t peer[200], other[200], low[44];
    size_t pl = 0, ol = 0;
    uint32_t perms = 0;
    km_key *k = NULL, *plain = NULL, *p384 = NULL, *x = NULL, *uk = NULL;
    km_ctx *user = NULL;
    km_secret *z = NULL;
    const char *forbid = "{\"version\": 1, \"operations\": {\"agree-raw\": false}}";
    static char pol[8192];
    size_t n = 0;

    k = agree_raw_key("raw", KM_KEY_EC_P256);
    OK(km_key_create(&plain, ctx, "plain", KM_KEY_EC_P256, NULL));
    OK(km_key_create(&p384, ctx, "p384", KM_KEY_EC_P384, NULL));
    OK(km_key_public_export(plain, 0, KM_MATERIAL_SPKI_DER, peer, sizeof peer, &pl));
    OK(km_key_public_export(p384, 0, KM_MATERIAL_SPKI_DER, other, sizeof other, &ol));

    /* 1. the usage: never by default, cannot be added afterwards, only on agreement types */
    {
        km_keyinfo *info = NULL;
        OK(km_key_info(&info, plain));
        ck_assert_uint_eq(km_keyinfo_usage(info), KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_AGREE);
        km_keyinfo_free(info);
    }
    ck_assert_int_eq(km_agree_raw(plain, peer, pl, &z), KM_E_USAGE);
    ck_assert_ptr_null(z);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "agree-raw"));
    ck_assert_int_eq(tu_audit_count(ctx, "agree.raw", "raw shared secret, 0 bytes"), 1);
    memset(&set, 0, sizeof set);
    set.version = KM_KEY_SETTINGS_VERSION;
    set.fields = KM_SET_USAGE;
    set.usage = KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_AGREE | KM_USAGE_AGREE_RAW;
    ck_assert_int_eq(km_key_set(plain, &set), KM_E_INVALID);
    ck_assert_int_eq(km_agree_raw(plain, peer, pl, &z), KM_E_USAGE);
    o.usage = KM_USAGE_ENCRYPT | KM_USAGE_AGREE_RAW;
    ck_assert_int_eq(km_key_create(&x, ctx, "aes", KM_KEY_AES_256_GCM, &o), KM_E_INVALID);
    o.usage = KM_USAGE_SIGN | KM_USAGE_AGREE_RAW;
    ck_assert_int_eq(km_key_create(&x, ctx, "ed", KM_KEY_ED25519, &o), KM_E_INVALID);
    /* a key with agree-raw alone agrees raw but does not derive */
    o.usage = KM_USAGE_AGREE_RAW;
    OK(km_key_create(&x, ctx, "rawonly", KM_KEY_EC_P256, &o));
    OK(km_agree_raw(x, peer, pl, &z));
    km_secret_free(z);
    z = NULL;
    ck_assert_int_eq(km_agree(x, peer, pl, NULL, 0, 32, &z), KM_E_USAGE);
    km_key_free(x);
    x = NULL;

    /* 2. bad input: NULLs, garbage, another curve, an X25519 low-order point */
    ck_assert_int_eq(km_agree_raw(k, peer, pl, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_agree_raw(NULL, peer, pl, &z), KM_E_INVALID);
    ck_assert_int_eq(km_agree_raw(k, NULL, 0, &z), KM_E_INVALID);
    ck_assert_int_eq(km_agree_raw(k, (const uint8_t *)"garbage", 7, &z), KM_E_INVALID);
    ck_assert_int_eq(km_agree_raw(k, other, ol, &z), KM_E_INVALID);
    ck_assert_ptr_null(z);
    x = agree_raw_key("x", KM_KEY_X25519);
    {
        /* SPKI of the X25519 point 0 (order 1): OpenSSL refuses the all-zero secret */
        static const uint8_t hdr[12] = { 0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
                                         0x6e, 0x03, 0x21, 0x00 };
        memset(low, 0, sizeof low);
        memcpy(low, hdr, sizeof hdr);
        ck_assert_int_eq(km_agree_raw(x, low, sizeof low, &z), KM_E_INVALID);
        ck_assert_ptr_null(z);
    }
    km_key_free(x);

    /* 3. a principal: every ordinary permission, owner of nothing, no agree-raw grant */
    tu_principals_add(ctx);
    OK(km_key_grant(k, TU_USER, KM_PERM_ALL));
    OK(km_key_perms(k, &perms));
    ck_assert_uint_eq(perms, KM_PERM_ALL | KM_PERM_AGREE_RAW); /* the vault owner */
    ck_assert_int_eq(km_key_grant(k, TU_USER, 0x100), KM_E_INVALID);
    OK(tu_vault_open_as(&user, dir, TU_USER, TU_USER_PASS, 0));
    OK(km_key_open(&uk, user, "raw"));
    ck_assert_int_eq(km_agree_raw(uk, peer, pl, &z), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "agree-raw"));
    OK(km_agree(uk, peer, pl, NULL, 0, 32, &z)); /* the derived form needs derive only */
    km_secret_free(z);
    z = NULL;
    km_key_free(uk);
    OK(km_key_grant(k, TU_USER, KM_PERM_ALL | KM_PERM_AGREE_RAW));
    km_close(user);
    OK(tu_vault_open_as(&user, dir, TU_USER, TU_USER_PASS, 0));
    OK(km_key_open(&uk, user, "raw"));
    OK(km_key_perms(uk, &perms));
    ck_assert_uint_eq(perms, KM_PERM_ALL | KM_PERM_AGREE_RAW);
    OK(km_agree_raw(uk, peer, pl, &z));
    km_secret_free(z);
    z = NULL;
    km_key_free(uk);
    km_close(user);

    /* 4. the vault policy forbids it: refused, named, audited; derived agreement still works */
    OK(km_policy_set(ctx, forbid, strlen(forbid)));
    OK(km_policy_get(ctx, pol, sizeof pol, &n));
    ck_assert_ptr_nonnull(strstr(pol, "\"agree-raw\": false"));
    km_key_free(k);
    OK(km_key_open(&k, ctx, "raw"));
    ck_assert_int_eq(km_agree_raw(k, peer, pl, &z), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "operations.agree-raw"));
    ck_assert_int_ge(tu_audit_count(ctx, "agree.raw", "raw shared secret, 0 bytes"), 2);
    OK(km_agree(k, peer, pl, NULL, 0, 32, &z));
    km_secret_free(z);
    z = NULL;
    /* a key policy may not re-allow it under that vault */
    o.usage = KM_USAGE_AGREE | KM_USAGE_AGREE_RAW;
    o.policy = "{\"version\": 1, \"operations\": {\"agree-raw\": true}}";
    ck_assert_int_eq(km_key_create(&x, ctx, "loose", KM_KEY_EC_P256, &o), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "operations.agree-raw loosens"));
    o.policy = "{\"version\": 1, \"profile\": \"default\"}";
    ck_assert_int_eq(km_key_create(&x, ctx, "loose", KM_KEY_EC_P256, &o), KM_E_POLICY);

    /* 5. the vault allows it again; a key's own policy forbids it for that key alone */
    OK(km_policy_set(ctx, "{\"version\": 1}", 14));
    o.policy = forbid;
    OK(km_key_create(&x, ctx, "own", KM_KEY_EC_P256, &o));
    ck_assert_int_eq(km_agree_raw(x, peer, pl, &z), KM_E_POLICY);
    km_key_free(k);
    OK(km_key_open(&k, ctx, "raw"));
    OK(km_agree_raw(k, peer, pl, &z));
    km_secret_free(z);
    /* an unknown operation name is a malformed policy */
    ck_assert_int_eq(km_policy_set(ctx, "{\"version\": 1, \"operations\": {\"raw\": false}}", 46),
                     KM_E_INVALID);
    km_key_free(x);
    km_key_free(k);
    km_key_free(plain);
    km_key_free(p384);
}
END_TEST

static const struct { km_key_type type; const char *group; } dh_types[] = {
    { KM_KEY_FFDHE2048, "ffdhe2048" }, { KM_KEY_FFDHE3072, "ffdhe3072" },
    { KM_KEY_FFDHE4096, "ffdhe4096" },
};

/* A DH key of `group` made by OpenSSL, as "DH" (PKCS#3) or "DHX" (X9.42). */
static EVP_PKEY *dh_keygen(const char *alg, const char *group)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    OSSL_PARAM params[2];
    EVP_PKEY *k = NULL;
    char g[32];
    snprintf(g, sizeof g, "%s", group);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, g, 0);
    params[1] = OSSL_PARAM_construct_end();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(EVP_PKEY_keygen_init(c), 1);
    ck_assert_int_eq(EVP_PKEY_CTX_set_params(c, params), 1);
    ck_assert_int_eq(EVP_PKEY_keygen(c, &k), 1);
    EVP_PKEY_CTX_free(c);
    return k;
}

/* The X9.42 (DHX) SPKI of the public value of `k` with parameters p, g, q
 * (q + dq, g replaced by `g` when g > 0): how pyca/cryptography writes FFDHE
 * keys, and the same with a wrong g or q. */
static size_t dhx_spki(EVP_PKEY *k, long g, int dq, uint8_t *out, size_t cap)
{
    BIGNUM *p = NULL, *q = NULL, *gg = NULL, *pub = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "DHX", NULL);
    EVP_PKEY *x = NULL;
    size_t n;
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_FFC_P, &p), 1);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_FFC_Q, &q), 1);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_FFC_G, &gg), 1);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PUB_KEY, &pub), 1);
    if (g > 0)
        ck_assert_int_eq(BN_set_word(gg, (BN_ULONG)g), 1);
    if (dq != 0)
        ck_assert_int_eq(dq > 0 ? BN_add_word(q, (BN_ULONG)dq) : BN_sub_word(q, (BN_ULONG)-dq), 1);
    ck_assert_int_eq(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_FFC_P, p), 1);
    ck_assert_int_eq(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_FFC_Q, q), 1);
    ck_assert_int_eq(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_FFC_G, gg), 1);
    ck_assert_int_eq(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PUB_KEY, pub), 1);
    params = OSSL_PARAM_BLD_to_param(b);
    ck_assert_int_eq(EVP_PKEY_fromdata_init(c), 1);
    ck_assert_int_eq(EVP_PKEY_fromdata(c, &x, EVP_PKEY_PUBLIC_KEY, params), 1);
    ck_assert_int_eq(EVP_PKEY_is_a(x, "DHX"), 1);
    n = spki_of(x, out, cap);
    ck_assert_int_eq(out[8], 0x06); /* OID dhpublicnumber 1.2.840.10046.2.1 */
    ck_assert_mem_eq(out + 10, "\x2a\x86\x48\xce\x3e\x02\x01", 7);
    EVP_PKEY_free(x);
    EVP_PKEY_CTX_free(c);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    BN_free(p);
    BN_free(q);
    BN_free(gg);
    BN_free(pub);
    return n;
}

/* FFDHE: the raw secret is OpenSSL's, zero-padded to the prime's length,
 * for a peer in the PKCS#3 form and in the X9.42 (DHX) form of the same
 * public value; a DHX key with the group's prime but another g or q, one of
 * another group and one of a non-RFC 7919 prime are refused. */
START_TEST(test_ops_agree_raw_ffdhe_dhx)
{
    static uint8_t mine[2200], pk3[2200], dhx[2200], bad[2200], want[512];
    size_t ml = 0, l3, lx, lb, wl, plen = dh_types[_i].type == KM_KEY_FFDHE2048 ? 256
                                         : dh_types[_i].type == KM_KEY_FFDHE3072 ? 384 : 512;
    EVP_PKEY *peer = dh_keygen("DH", dh_types[_i].group), *other, *modp;
    km_key *k = agree_raw_key("dh", dh_types[_i].type);
    km_secret *z = NULL, *z2 = NULL;

    l3 = spki_of(peer, pk3, sizeof pk3);
    lx = dhx_spki(peer, 0, 0, dhx, sizeof dhx);
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, mine, sizeof mine, &ml));
    wl = ossl_agree(peer, mine, ml, want, sizeof want);
    ck_assert_uint_eq(wl, plen);
    OK(km_agree_raw(k, pk3, l3, &z));
    ck_assert_uint_eq(km_secret_len(z), plen);
    ck_assert_mem_eq(km_secret_data(z), want, plen);
    OK(km_agree_raw(k, dhx, lx, &z2));
    ck_assert_uint_eq(km_secret_len(z2), plen);
    ck_assert_mem_eq(km_secret_data(z2), want, plen);
    km_secret_free(z);
    km_secret_free(z2);
    z = NULL;
    /* the derived agreement takes the DHX form too */
    OK(km_agree(k, dhx, lx, NULL, 0, 32, &z));
    km_secret_free(z);
    z = NULL;
    /* another generator, another subgroup order: refused, named */
    lb = dhx_spki(peer, 5, 0, bad, sizeof bad);
    ck_assert_int_eq(km_agree_raw(k, bad, lb, &z), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "generator"));
    lb = dhx_spki(peer, 0, -2, bad, sizeof bad);
    ck_assert_int_eq(km_agree_raw(k, bad, lb, &z), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "subgroup order"));
    ck_assert_int_eq(km_agree(k, bad, lb, NULL, 0, 32, &z), KM_E_INVALID);
    ck_assert_ptr_null(z);
    /* a DHX key of another RFC 7919 group, and of an RFC 3526 MODP group */
    other = dh_keygen("DH", dh_types[(_i + 1) % 3].group);
    lb = dhx_spki(other, 0, 0, bad, sizeof bad);
    ck_assert_int_eq(km_agree_raw(k, bad, lb, &z), KM_E_INVALID);
    modp = dh_keygen("DHX", "modp_2048");
    lb = spki_of(modp, bad, sizeof bad);
    ck_assert_int_eq(km_agree_raw(k, bad, lb, &z), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "RFC 7919"));
    ck_assert_ptr_null(z);
    EVP_PKEY_free(other);
    EVP_PKEY_free(modp);
    EVP_PKEY_free(peer);
    if (_i == 0) {
        /* a peer whose secret starts with a zero byte (1 in 256): OpenSSL's plain derive
         * drops it, km_agree_raw keeps the prime's length, km_agree hashes it as before */
        uint8_t hk[32];
        size_t hl = sizeof hk, tries;
        for (tries = 0; tries < 5000; tries++) {
            EVP_PKEY_CTX *c;
            size_t n = sizeof want;
            peer = dh_keygen("DH", "ffdhe2048");
            c = EVP_PKEY_CTX_new(peer, NULL);
            {
                const unsigned char *pp = mine;
                EVP_PKEY *me = d2i_PUBKEY(NULL, &pp, (long)ml);
                ck_assert_int_eq(EVP_PKEY_derive_init(c), 1);
                ck_assert_int_eq(EVP_PKEY_derive_set_peer(c, me), 1);
                ck_assert_int_eq(EVP_PKEY_derive(c, want, &n), 1);
                EVP_PKEY_free(me);
            }
            EVP_PKEY_CTX_free(c);
            if (n < plen) {
                wl = n;
                break;
            }
            EVP_PKEY_free(peer);
            peer = NULL;
        }
        ck_assert_ptr_nonnull(peer);
        l3 = spki_of(peer, pk3, sizeof pk3);
        OK(km_agree_raw(k, pk3, l3, &z));
        ck_assert_uint_eq(km_secret_len(z), plen);
        ck_assert_uint_eq(km_secret_data(z)[0], 0);
        ck_assert_mem_eq(km_secret_data(z) + (plen - wl), want, wl);
        km_secret_free(z);
        z = NULL;
        OK(km_agree(k, pk3, l3, NULL, 0, 32, &z));
        {
            EVP_PKEY_CTX *h = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
            ck_assert_int_eq(EVP_PKEY_derive_init(h), 1);
            ck_assert_int_eq(EVP_PKEY_CTX_set_hkdf_md(h, EVP_sha256()), 1);
            ck_assert_int_eq(EVP_PKEY_CTX_set1_hkdf_key(h, want, (int)wl), 1);
            ck_assert_int_eq(EVP_PKEY_derive(h, hk, &hl), 1);
            EVP_PKEY_CTX_free(h);
        }
        ck_assert_mem_eq(km_secret_data(z), hk, 32);
        km_secret_free(z);
        EVP_PKEY_free(peer);
    }
    km_key_free(k);
}
END_TEST

/* ------------------------------------------ policy: PKCS#1 v1.5 signatures */

/* operations.rsa-pkcs1v15-sign false: PKCS#1 v1.5 signing (whole messages,
 * digests, batches) is refused naming the rule, RSA-PSS still signs, old
 * PKCS#1 v1.5 signatures still verify; a key's own policy may forbid it for
 * that key, never re-allow it under a vault that forbids it, nor drop the rule
 * with km_key_set. */
START_TEST(test_ops_policy_pkcs1_sign)
{
    static const char forbid[] = "{\"version\": 1, \"operations\": {\"rsa-pkcs1v15-sign\": false}}";
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key_settings set = KM_KEY_SETTINGS_INIT;
    uint8_t sig[600], sig2[600], dg[32] = { 1 };
    size_t sl = 0, sl2 = 0;
    km_key *k = NULL, *own = NULL;
    km_batch_item it[1];

    OK(km_key_create(&k, ctx, "rsa", KM_KEY_RSA_2048, NULL));
    OK(km_sign(k, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig, sizeof sig, &sl));
    OK(km_policy_set(ctx, forbid, sizeof forbid - 1));
    km_key_free(k);
    OK(km_key_open(&k, ctx, "rsa"));
    ck_assert_int_eq(km_sign(k, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig2, sizeof sig2, &sl2),
                     KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "operations.rsa-pkcs1v15-sign"));
    ck_assert_int_eq(km_sign_digest(k, 0, KM_SIG_PKCS1, "SHA256", dg, 32, sig2, sizeof sig2,
                                    &sl2), KM_E_POLICY);
    memset(it, 0, sizeof it);
    it[0].in = (const uint8_t *)"m";
    it[0].in_len = 1;
    it[0].out = sig2;
    it[0].out_cap = sizeof sig2;
    ck_assert_int_ne(km_batch(k, KM_BATCH_SIGN, KM_SIG_PKCS1, it, 1), KM_OK);
    ck_assert_int_eq(it[0].result, KM_E_POLICY);
    OK(km_sign(k, 0, (const uint8_t *)"m", 1, sig2, sizeof sig2, &sl2));  /* PSS */
    OK(km_verify(k, 0, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig, sl));     /* old data */
    o.policy = "{\"version\": 1, \"operations\": {\"rsa-pkcs1v15-sign\": true}}";
    ck_assert_int_eq(km_key_create(&own, ctx, "loose", KM_KEY_RSA_2048, &o), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "loosens"));

    /* the vault allows it again: a key's own policy forbids it for that key only */
    OK(km_policy_set(ctx, "{\"version\": 1}", 14));
    o.policy = forbid;
    OK(km_key_create(&own, ctx, "own", KM_KEY_RSA_2048, &o));
    ck_assert_int_eq(km_sign(own, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig2, sizeof sig2, &sl2),
                     KM_E_POLICY);
    km_key_free(k);
    OK(km_key_open(&k, ctx, "rsa"));
    OK(km_sign(k, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig2, sizeof sig2, &sl2));
    OK(km_sign_digest(k, 0, KM_SIG_PKCS1, "SHA256", dg, 32, sig2, sizeof sig2, &sl2));
    /* dropping the rule from the key's policy loosens it: refused */
    set.fields = KM_SET_POLICY;
    set.policy = "{\"version\": 1}";
    ck_assert_int_eq(km_key_set(own, &set), KM_E_POLICY);
    ck_assert_int_eq(km_sign(own, KM_SIG_PKCS1, (const uint8_t *)"m", 1, sig2, sizeof sig2, &sl2),
                     KM_E_POLICY);
    km_key_free(own);
    km_key_free(k);
}
END_TEST

static Suite *ops_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("ops", NULL, &tc, 120, setup, teardown);

    tcase_add_loop_test(tc, test_ops_cmac_generated_key, 0, 3);
    tcase_add_test(tc, test_ops_cmac_import_rules);
    tcase_add_test(tc, test_ops_cmac_policy_forbids);
    tcase_add_test(tc, test_ops_random);
    tcase_add_test(tc, test_ops_rsa_oaep_digest_recorded);
    tcase_add_test(tc, test_ops_rsa_oaep_empty_message);
    tcase_add_test(tc, test_ops_rsa_pkcs1_sign_messages);
    tcase_add_test(tc, test_ops_siv_deterministic);
    tcase_add_test(tc, test_ops_siv_fips_refused);
    tcase_add_test(tc, test_ops_datakey_sizes);
    tcase_add_loop_test(tc, test_ops_datakey_pair, 0, sizeof pair_types / sizeof pair_types[0]);
    tcase_add_test(tc, test_ops_datakey_pair_refusals);
    tcase_add_test(tc, test_ops_rewrap_to);
    tcase_add_test(tc, test_ops_rewrap_compromised);
    tcase_add_test(tc, test_ops_rewrap_batch_detail);
    tcase_add_test(tc, test_ops_batch_encrypt_decrypt);
    tcase_add_test(tc, test_ops_batch_state_and_audit);
    tcase_add_test(tc, test_ops_batch_sign_verify_mac);
    tcase_add_loop_test(tc, test_ops_jwk_round_trip, 0, sizeof jwk_types / sizeof jwk_types[0]);
    tcase_add_test(tc, test_ops_jwk_refused);
    tcase_add_test(tc, test_ops_ec_explicit_parameters_refused);
    tcase_add_loop_test(tc, test_ops_agree_raw_matches_peer, 0,
                        sizeof raw_types / sizeof raw_types[0]);
    tcase_add_test(tc, test_ops_agree_raw_refused);
    tcase_add_loop_test(tc, test_ops_agree_raw_ffdhe_dhx, 0, sizeof dh_types / sizeof dh_types[0]);
    tcase_add_test(tc, test_ops_policy_pkcs1_sign);
    return s;
}

int main(void)
{
    return tu_run(ops_suite());
}
