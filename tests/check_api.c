/* check_api.c - the public C API end to end: vaults, keys, data path, errors. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <km.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "testutil.h"

TU_VAULT_FIXTURE

/* ------------------------------------------------------------------ vault */

START_TEST(test_api_version_and_init)
{
    ck_assert_str_eq(km_version(), KM_VERSION_STRING);
    ck_assert_int_eq(km_init(), KM_OK);
    ck_assert_int_eq(km_init(), KM_OK);
}
END_TEST

START_TEST(test_api_open_errors)
{
    km_ctx *c = (km_ctx *)1;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char uri[4200];
    o.passphrase = (const uint8_t *)"p";
    o.passphrase_len = 1;
    o.kdf_cost = KM_KDF_COST_MIN;
    ck_assert_int_eq(km_open(NULL, "x", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, NULL, &o), KM_E_INVALID);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(km_open(&c, "", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "lmdb:/tmp/x", NULL), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "s3://bucket/x", &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "scheme"));
    snprintf(uri, sizeof uri, "lmdb:%s/none", dir);
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_NOTFOUND);
    o.kdf_cost = 3;
    o.flags = KM_OPEN_CREATE;
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "kdf_cost"));
    o.kdf_cost = KM_KDF_COST_MIN;
    o.flags = 0x100;
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_INVALID);
    o.flags = KM_OPEN_CREATE;
    o.passphrase_len = 0;
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "passphrase"));
    o.passphrase_len = 1;
    o.version = 99;
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_INVALID);
    /* nothing was created by the refused calls */
    ck_assert_int_ne(access(uri + 5, F_OK), 0);
    km_close(NULL);
}
END_TEST

START_TEST(test_api_reopen_and_passphrases)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    uint8_t id1[16], id2[16];
    OK(km_key_create(NULL, ctx, "persisted", KM_KEY_AES_128_GCM, NULL));
    OK(km_vault_id(ctx, id1));
    ck_assert_int_eq(km_vault_add_passphrase(ctx, NULL, 3, 0), KM_E_INVALID);
    ck_assert_int_eq(km_vault_add_passphrase(ctx, (const uint8_t *)"second", 6, 2), KM_E_INVALID);
    OK(km_vault_add_passphrase(ctx, (const uint8_t *)"second", 6, KM_KDF_COST_MIN));
    km_close(ctx);
    ctx = NULL;
    ck_assert_int_eq(tu_vault_open(&c, dir, "wrong", 0), KM_E_AUTH);
    ck_assert_ptr_null(c);
    OK(tu_vault_open(&c, dir, "second", 0));
    OK(km_vault_id(c, id2));
    ck_assert_mem_eq(id1, id2, 16);
    OK(km_key_open(&k, c, "persisted"));
    ck_assert_int_eq(km_key_get_type(k), KM_KEY_AES_128_GCM);
    km_key_free(k);
    km_close(c);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    ck_assert_int_eq(tu_vault_open(&c, dir, TU_PASS, KM_OPEN_CREATE | KM_OPEN_EXCL), KM_E_EXISTS);
}
END_TEST

/* Two contexts on one vault in one process share the environment and see
 * each other's changes. */
START_TEST(test_api_two_contexts_one_process)
{
    km_ctx *c2 = NULL;
    km_key *a = NULL, *b = NULL;
    uint8_t ct[100], pt[100];
    size_t n, m;
    OK(tu_vault_open(&c2, dir, TU_PASS, 0));
    OK(km_key_create(&a, ctx, "shared", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_open(&b, c2, "shared"));
    OK(km_encrypt(b, (const uint8_t *)"hi", 2, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    OK(km_key_rotate(a, NULL));
    OK(km_encrypt(b, (const uint8_t *)"hi", 2, NULL, 0, ct, sizeof ct, &n));
    ck_assert_int_eq(ct[23], 2); /* c2's handle sees the rotation at once */
    km_key_free(a);
    km_key_free(b);
    km_close(c2);
}
END_TEST

/* ------------------------------------------------------------------- keys */

static int count_keys(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)id; (void)type;
    ck_assert_ptr_nonnull(name);
    (*(int *)arg)++;
    return 0;
}

static int stop_at_one(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name; (void)id; (void)type;
    (*(int *)arg)++;
    return 1;
}

START_TEST(test_api_key_create_open_list_info)
{
    static const km_key_type all[] = {
        KM_KEY_AES_128_GCM, KM_KEY_AES_192_GCM, KM_KEY_AES_256_GCM, KM_KEY_AES_256_KWP,
        KM_KEY_HMAC_SHA256, KM_KEY_HMAC_SHA384, KM_KEY_HMAC_SHA512, KM_KEY_EC_P256,
        KM_KEY_EC_P384, KM_KEY_EC_P521, KM_KEY_ED25519, KM_KEY_X25519, KM_KEY_RSA_2048,
    };
    km_keyinfo *info = NULL;
    km_version_info vi;
    km_key *k = NULL, *k2 = NULL;
    km_key_type t;
    size_t i;
    int n = 0;

    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
        char name[32];
        const char *tn = km_key_type_name(all[i]);
        ck_assert_ptr_nonnull(tn);
        OK(km_key_type_from_name(tn, &t));
        ck_assert_int_eq(t, all[i]);
        snprintf(name, sizeof name, "key-%s", tn);
        OK(km_key_create(&k, ctx, name, all[i], NULL));
        ck_assert_str_eq(km_key_name(k), name);
        ck_assert_int_eq(km_key_get_type(k), all[i]);
        km_key_free(k);
        k = NULL;
    }
    ck_assert_int_eq(km_key_type_from_name("des-56", &t), KM_E_UNSUPPORTED);
    ck_assert_ptr_null(km_key_type_name((km_key_type)99));
    OK(km_key_list(ctx, count_keys, &n));
    ck_assert_int_eq(n, (int)(sizeof all / sizeof all[0]));
    n = 0;
    OK(km_key_list(ctx, stop_at_one, &n));
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(km_key_list(ctx, NULL, NULL), KM_E_INVALID);

    OK(km_key_open(&k, ctx, "key-ec-p256"));
    OK(km_key_open_id(&k2, ctx, km_key_id(k)));
    ck_assert_str_eq(km_key_name(k2), "key-ec-p256");
    OK(km_key_info(&info, k));
    ck_assert_str_eq(km_keyinfo_name(info), "key-ec-p256");
    ck_assert_mem_eq(km_keyinfo_id(info), km_key_id(k), 16);
    ck_assert_int_eq(km_keyinfo_type(info), KM_KEY_EC_P256);
    ck_assert_uint_eq(km_keyinfo_usage(info), KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_AGREE);
    ck_assert_str_eq(km_keyinfo_protection(info), "software");
    ck_assert_uint_eq(km_keyinfo_primary(info), 1);
    ck_assert_uint_eq(km_keyinfo_version_count(info), 1);
    ck_assert_int_gt(km_keyinfo_created(info), 1700000000);
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_uint_eq(vi.version, 1);
    ck_assert_int_eq(vi.state, KM_STATE_ACTIVE);
    ck_assert_str_eq(km_state_name(vi.state), "active");
    ck_assert_int_eq(km_keyinfo_version(info, 1, &vi, sizeof vi), KM_E_INVALID);
    ck_assert_int_eq(km_keyinfo_version(info, 0, &vi, 8), KM_E_INVALID);
    km_keyinfo_free(info);
    km_keyinfo_free(NULL);
    km_key_free(k);
    km_key_free(k2);
    km_key_free(NULL);
}
END_TEST

START_TEST(test_api_key_bad_input)
{
    km_key *k = (km_key *)1;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    char longname[300];
    uint8_t zero[16] = { 0 };

    ck_assert_int_eq(km_key_create(&k, NULL, "a", KM_KEY_AES_256_GCM, NULL), KM_E_INVALID);
    ck_assert_ptr_null(k);
    ck_assert_int_eq(km_key_create(&k, ctx, NULL, KM_KEY_AES_256_GCM, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_create(&k, ctx, "", KM_KEY_AES_256_GCM, NULL), KM_E_INVALID);
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(km_key_create(&k, ctx, longname, KM_KEY_AES_256_GCM, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_create(&k, ctx, "tab\there", KM_KEY_AES_256_GCM, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_create(&k, ctx, "a", (km_key_type)0, NULL), KM_E_INVALID);
    /* the first value past the last type (km_key_type_name gives NULL there) */
    {
        int past = 1;
        while (km_key_type_name((km_key_type)past) != NULL)
            past++;
        ck_assert_int_eq(km_key_create(&k, ctx, "a", (km_key_type)past, NULL), KM_E_INVALID);
    }
    o.usage = KM_USAGE_SIGN; /* an AES-GCM key cannot sign */
    ck_assert_int_eq(km_key_create(&k, ctx, "a", KM_KEY_AES_256_GCM, &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "usage"));
    o.usage = 0;
    o.flags = 0x80;
    ck_assert_int_eq(km_key_create(&k, ctx, "a", KM_KEY_AES_256_GCM, &o), KM_E_INVALID);
    o.flags = 0;
    o.protection = "no-such-backend";
    ck_assert_int_eq(km_key_create(&k, ctx, "a", KM_KEY_AES_256_GCM, &o), KM_E_UNSUPPORTED);
    o.protection = NULL;
    o.version = 7;
    ck_assert_int_eq(km_key_create(&k, ctx, "a", KM_KEY_AES_256_GCM, &o), KM_E_INVALID);
    OK(km_key_create(NULL, ctx, "a", KM_KEY_AES_256_GCM, NULL));
    ck_assert_int_eq(km_key_create(&k, ctx, "a", KM_KEY_HMAC_SHA256, NULL), KM_E_EXISTS);
    ck_assert_int_eq(km_key_open(&k, ctx, "b"), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_open(&k, ctx, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_open(NULL, ctx, "a"), KM_E_INVALID);
    ck_assert_int_eq(km_key_open_id(&k, ctx, zero), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_open_id(&k, ctx, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_info(NULL, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_rotate(NULL, NULL), KM_E_INVALID);
}
END_TEST

START_TEST(test_api_import_rules)
{
    uint8_t raw[32], ct[64], pt[16];
    km_key *k = NULL;
    size_t n;
    memset(raw, 0x42, sizeof raw);
    ck_assert_int_eq(km_key_import(&k, ctx, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, raw, 32, 0, NULL),
                     KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "KM_IMPORT_ALLOW_RAW"));
    ck_assert_int_eq(km_key_import(&k, ctx, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, raw, 31,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, NULL, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "imp", KM_KEY_AES_256_GCM, (km_material_format)9, raw, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, ctx, "imp", KM_KEY_EC_P256, KM_MATERIAL_PKCS8_DER, raw, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_INVALID);
    /* nothing was stored by the refusals */
    ck_assert_int_eq(km_key_open(&k, ctx, "imp"), KM_E_NOTFOUND);
    OK(km_key_import(&k, ctx, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, raw, 32, KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &n));
    km_key_free(k);
}
END_TEST

/* A public key exported from one key imports as a verify-only key that
 * checks the first key's signatures, and cannot sign or rotate. */
START_TEST(test_api_public_export_import)
{
    km_key *signer = NULL, *pub = NULL;
    uint8_t der[1024], pem[2048], sig[KM_SIGNATURE_MAX];
    size_t der_len, pem_len, sig_len;
    const uint8_t msg[] = "message";
    km_keyinfo *info = NULL;

    OK(km_key_create(&signer, ctx, "signer", KM_KEY_EC_P384, NULL));
    ck_assert_int_eq(km_key_public_export(signer, 0, KM_MATERIAL_SPKI_DER, NULL, 0, &der_len), KM_E_BUFFER);
    ck_assert_uint_gt(der_len, 60);
    OK(km_key_public_export(signer, 0, KM_MATERIAL_SPKI_DER, der, sizeof der, &der_len));
    OK(km_key_public_export(signer, 1, KM_MATERIAL_PEM, pem, sizeof pem, &pem_len));
    ck_assert_int_eq(strncmp((char *)pem, "-----BEGIN PUBLIC KEY-----\n", 27), 0);
    ck_assert_int_eq(km_key_public_export(signer, 2, KM_MATERIAL_PEM, pem, sizeof pem, &pem_len), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_public_export(signer, 0, KM_MATERIAL_RAW, pem, sizeof pem, &pem_len), KM_E_INVALID);
    OK(km_key_import(&pub, ctx, "verifier", KM_KEY_EC_P384, KM_MATERIAL_SPKI_DER, der, der_len,
                     KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_key_info(&info, pub));
    ck_assert(km_keyinfo_flags(info) & KM_KEY_PUBLIC_ONLY);
    ck_assert_uint_eq(km_keyinfo_usage(info), KM_USAGE_VERIFY);
    km_keyinfo_free(info);
    OK(km_sign(signer, KM_SIG_RAW, msg, sizeof msg, sig, sizeof sig, &sig_len));
    OK(km_verify(pub, 0, KM_SIG_RAW, msg, sizeof msg, sig, sig_len));
    ck_assert_int_eq(km_sign(pub, KM_SIG_RAW, msg, sizeof msg, sig, sizeof sig, &sig_len), KM_E_USAGE);
    ck_assert_int_eq(km_key_rotate(pub, NULL), KM_E_UNSUPPORTED);
    /* the PEM form imports too */
    km_key_free(pub);
    OK(km_key_public_export(signer, 1, KM_MATERIAL_PEM, pem, sizeof pem, &pem_len));
    OK(km_key_import(&pub, ctx, "verifier-pem", KM_KEY_EC_P384, KM_MATERIAL_PEM, pem, pem_len,
                     KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_sign(signer, 0, msg, sizeof msg, sig, sizeof sig, &sig_len));
    /* a tagged signature names the signer's id: another key refuses it */
    ck_assert_int_eq(km_verify(pub, 0, 0, msg, sizeof msg, sig, sig_len), KM_E_INVALID);
    km_key_free(pub);
    km_key_free(signer);
}
END_TEST

/* ------------------------------------------------------------- data path */

START_TEST(test_api_encrypt_decrypt_rotate)
{
    km_key *k = NULL;
    uint8_t ct1[200], ct2[200], pt[200];
    size_t n1, n2, m;
    uint32_t v = 0;
    const uint8_t msg[] = "attack at dawn";
    km_keyinfo *info = NULL;

    OK(km_key_create(&k, ctx, "data", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, msg, sizeof msg, (const uint8_t *)"aad", 3, ct1, sizeof ct1, &n1));
    ck_assert_uint_eq(n1, sizeof msg + KM_CIPHERTEXT_OVERHEAD);
    ck_assert_mem_eq(ct1 + 4, km_key_id(k), 16);
    OK(km_key_rotate(k, &v));
    ck_assert_uint_eq(v, 2);
    OK(km_encrypt(k, msg, sizeof msg, (const uint8_t *)"aad", 3, ct2, sizeof ct2, &n2));
    ck_assert_int_eq(ct1[23], 1);
    ck_assert_int_eq(ct2[23], 2);
    OK(km_decrypt(ctx, 0, ct1, n1, (const uint8_t *)"aad", 3, pt, sizeof pt, &m));
    ck_assert_mem_eq(pt, msg, sizeof msg);
    OK(km_decrypt_key(k, 0, ct2, n2, (const uint8_t *)"aad", 3, pt, sizeof pt, &m));
    ck_assert_mem_eq(pt, msg, sizeof msg);
    OK(km_key_info(&info, k));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 2);
    ck_assert_uint_eq(km_keyinfo_primary(info), 2);
    km_keyinfo_free(info);
    /* the rotation is durable: a fresh context sees both versions */
    km_key_free(k);
    km_close(ctx);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    OK(km_decrypt(ctx, 0, ct1, n1, (const uint8_t *)"aad", 3, pt, sizeof pt, &m));
    OK(km_decrypt(ctx, 0, ct2, n2, (const uint8_t *)"aad", 3, pt, sizeof pt, &m));
    /* empty plaintext and empty aad */
    OK(km_key_open(&k, ctx, "data"));
    OK(km_encrypt(k, NULL, 0, NULL, 0, ct1, sizeof ct1, &n1));
    ck_assert_uint_eq(n1, KM_CIPHERTEXT_OVERHEAD);
    OK(km_decrypt(ctx, 0, ct1, n1, NULL, 0, NULL, 0, &m));
    ck_assert_uint_eq(m, 0);
    km_key_free(k);
}
END_TEST

START_TEST(test_api_encrypt_bad_input)
{
    km_key *k = NULL, *ec = NULL;
    uint8_t buf[200], pt[200];
    size_t n;
    OK(km_key_create(&k, ctx, "data", KM_KEY_AES_128_GCM, NULL));
    OK(km_key_create(&ec, ctx, "ec", KM_KEY_ED25519, NULL));
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, buf, sizeof buf, NULL), KM_E_INVALID);
    ck_assert_int_eq(km_encrypt(NULL, (const uint8_t *)"x", 1, NULL, 0, buf, sizeof buf, &n), KM_E_INVALID);
    ck_assert_int_eq(km_encrypt(k, NULL, 1, NULL, 0, buf, sizeof buf, &n), KM_E_INVALID);
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 5, buf, sizeof buf, &n), KM_E_INVALID);
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, buf, 52, &n), KM_E_BUFFER);
    ck_assert_uint_eq(n, 53);
    ck_assert_int_eq(km_encrypt(k, buf + 10, 20, NULL, 0, buf, sizeof buf, &n), KM_E_INVALID); /* overlap */
    ck_assert_int_eq(km_encrypt(k, buf, (size_t)KM_PLAINTEXT_MAX + 1, NULL, 0, buf, sizeof buf, &n),
                     KM_E_INVALID);
    ck_assert_int_eq(km_encrypt(ec, (const uint8_t *)"x", 1, NULL, 0, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(km_decrypt(ctx, 0, buf, 10, NULL, 0, pt, sizeof pt, &n), KM_E_INVALID);
    ck_assert_int_eq(km_decrypt(NULL, 0, buf, 60, NULL, 0, pt, sizeof pt, &n), KM_E_INVALID);
    ck_assert_int_eq(km_decrypt(ctx, 0x80, buf, 60, NULL, 0, pt, sizeof pt, &n), KM_E_INVALID);
    OK(km_encrypt(k, (const uint8_t *)"hello", 5, NULL, 0, buf, sizeof buf, &n));
    ck_assert_int_eq(km_decrypt(ctx, 0, buf, n, NULL, 0, pt, 4, &n), KM_E_BUFFER);
    ck_assert_uint_eq(n, 5);
    km_key_free(k);
    km_key_free(ec);
}
END_TEST

START_TEST(test_api_usage_mask_enforced)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *enc_only = NULL, *both = NULL;
    uint8_t ct[100], pt[100], sig[KM_SIGNATURE_MAX];
    size_t n, m;
    o.usage = KM_USAGE_ENCRYPT;
    OK(km_key_create(&enc_only, ctx, "enc-only", KM_KEY_AES_256_GCM, &o));
    OK(km_encrypt(enc_only, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    memset(pt, 0xAA, sizeof pt);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_USAGE);
    ck_assert(tu_all_zero(pt, n));
    o.usage = KM_USAGE_VERIFY;
    OK(km_key_create(&both, ctx, "verify-only", KM_KEY_EC_P256, &o));
    ck_assert_int_eq(km_sign(both, 0, (const uint8_t *)"x", 1, sig, sizeof sig, &n), KM_E_USAGE);
    km_key_free(enc_only);
    km_key_free(both);
}
END_TEST

START_TEST(test_api_sign_verify_all_types)
{
    static const km_key_type types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_EC_P521,
                                         KM_KEY_ED25519, KM_KEY_RSA_2048 };
    const uint8_t msg[] = "the quick brown fox";
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t i, n;
    for (i = 0; i < sizeof types / sizeof types[0]; i++) {
        km_key *k = NULL;
        char name[32];
        uint32_t flags;
        snprintf(name, sizeof name, "s%zu", i);
        OK(km_key_create(&k, ctx, name, types[i], NULL));
        for (flags = 0; flags <= KM_SIG_RAW; flags++) {
            OK(km_sign(k, flags, msg, sizeof msg, sig, sizeof sig, &n));
            OK(km_verify(k, 0, flags, msg, sizeof msg, sig, n));
            ck_assert_int_eq(km_verify(k, 0, flags, msg, sizeof msg - 1, sig, n), KM_E_VERIFY);
            sig[n - 1] ^= 1;
            ck_assert_int_eq(km_verify(k, 0, flags, msg, sizeof msg, sig, n), KM_E_VERIFY);
        }
        if (types[i] <= KM_KEY_EC_P521) {
            OK(km_sign(k, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, sizeof sig, &n));
            ck_assert_uint_eq(n, types[i] == KM_KEY_EC_P256 ? 64 : types[i] == KM_KEY_EC_P384 ? 96 : 132);
            OK(km_verify(k, 0, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, n));
        } else {
            ck_assert_int_eq(km_sign(k, KM_SIG_P1363, msg, sizeof msg, sig, sizeof sig, &n), KM_E_INVALID);
        }
        /* old versions still verify after rotation; new signatures name v2 */
        OK(km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n));
        OK(km_key_rotate(k, NULL));
        OK(km_verify(k, 0, 0, msg, sizeof msg, sig, n));
        ck_assert_int_eq(km_verify(k, 2, 0, msg, sizeof msg, sig, n), KM_E_INVALID);
        OK(km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n));
        ck_assert_int_eq(sig[23], 2);
        ck_assert_int_eq(km_sign(k, 0, msg, sizeof msg, sig, 10, &n), KM_E_BUFFER);
        km_key_free(k);
    }
}
END_TEST

START_TEST(test_api_mac)
{
    km_key *k = NULL, *aes = NULL;
    const uint8_t msg[] = "ledger line 42";
    uint8_t tag[KM_MAC_MAX], raw[64];
    size_t n, rn;
    OK(km_key_create(&k, ctx, "mac", KM_KEY_HMAC_SHA384, NULL));
    OK(km_key_create(&aes, ctx, "aes", KM_KEY_AES_256_GCM, NULL));
    OK(km_mac(k, 0, msg, sizeof msg, tag, sizeof tag, &n));
    ck_assert_uint_eq(n, KM_TAG_HEADER + 48);
    OK(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n));
    tag[30] ^= 4;
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n), KM_E_VERIFY);
    OK(km_mac(k, KM_SIG_RAW, msg, sizeof msg, raw, sizeof raw, &rn));
    ck_assert_uint_eq(rn, 48);
    OK(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, raw, 16)); /* truncated to 128 bits */
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, raw, 15), KM_E_VERIFY);
    ck_assert_int_eq(km_mac(aes, 0, msg, sizeof msg, tag, sizeof tag, &n), KM_E_USAGE);
    ck_assert_int_eq(km_mac(k, KM_SIG_P1363, msg, sizeof msg, tag, sizeof tag, &n), KM_E_INVALID);
    km_key_free(k);
    km_key_free(aes);
}
END_TEST

/* A handle used in a forked child is refused; the child's fresh vault works. */
START_TEST(test_api_fork_detected)
{
    km_key *k = NULL;
    pid_t pid;
    int st = 0;
    OK(km_key_create(&k, ctx, "forky", KM_KEY_AES_256_GCM, NULL));
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uint8_t ct[100];
        size_t n;
        int rc = km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n);
        _exit(rc == KM_E_FORK ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    km_key_free(k);
}
END_TEST

/* Usage counters are reserved before use and persisted: reopening shows at
 * least as many invocations as were made, never fewer. */
START_TEST(test_api_usage_counter_persisted)
{
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    uint8_t ct[100];
    size_t n;
    int i;
    OK(km_key_create(&k, ctx, "counted", KM_KEY_AES_256_GCM, NULL));
    for (i = 0; i < 3000; i++)
        OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_uint_ge(vi.invocations, 3000);
    km_keyinfo_free(info);
    km_key_free(k);
    km_close(ctx);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    OK(km_key_open(&k, ctx, "counted"));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    /* the unused reservation was given back at close */
    ck_assert_uint_eq(vi.invocations, 3000);
    km_keyinfo_free(info);
    km_key_free(k);
}
END_TEST

/* The ciphertext format of docs/FORMATS.md, to the letter: raw OpenSSL EVP,
 * following only the document, makes a ciphertext that km_decrypt opens, and
 * opens a ciphertext that km_encrypt made. */
static int evp_gcm(int enc, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                   size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n, ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1
                && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) == 1
                && EVP_CipherUpdate(c, out, &n, in, (int)len) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + len, &n) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

START_TEST(test_api_format_interop)
{
    uint8_t key[32], ct[200], pt[64], aadbuf[200];
    const uint8_t msg[] = "interoperable", aad[] = "ctx";
    size_t n, m;
    km_key *k = NULL;
    uint8_t *p = ct;

    ck_assert_int_eq(RAND_bytes(key, sizeof key), 1);
    OK(km_key_import(&k, ctx, "interop", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, key, 32,
                     KM_IMPORT_ALLOW_RAW, NULL));
    /* outside -> libkm */
    p[0] = 'K'; p[1] = 'M'; p[2] = 1; p[3] = 3;
    memcpy(p + 4, km_key_id(k), 16);
    p[20] = 0; p[21] = 0; p[22] = 0; p[23] = 1;
    ck_assert_int_eq(RAND_bytes(p + 24, 12), 1);
    memcpy(aadbuf, p, 36);
    memcpy(aadbuf + 36, aad, sizeof aad);
    ck_assert(evp_gcm(1, key, p + 24, aadbuf, 36 + sizeof aad, msg, sizeof msg, p + 36,
                      p + 36 + sizeof msg));
    OK(km_decrypt(ctx, 0, ct, 52 + sizeof msg, aad, sizeof aad, pt, sizeof pt, &m));
    ck_assert_uint_eq(m, sizeof msg);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    /* libkm -> outside */
    OK(km_encrypt(k, msg, sizeof msg, aad, sizeof aad, ct, sizeof ct, &n));
    memcpy(aadbuf, ct, 36);
    memset(pt, 0, sizeof pt);
    ck_assert(evp_gcm(0, key, ct + 24, aadbuf, 36 + sizeof aad, ct + 36, n - 52, pt, ct + n - 16));
    ck_assert_mem_eq(pt, msg, sizeof msg);
    km_memzero(key, sizeof key);
    km_key_free(k);
}
END_TEST

/* A session key works on the data path, never reaches the vault, and has no
 * lifecycle of its own. */
START_TEST(test_api_session_key)
{
    km_key *s = NULL, *e = NULL;
    uint8_t ct[100], pt[16], sig[KM_SIGNATURE_MAX];
    size_t n, m;
    int count = 0;
    OK(km_session_key_create(&s, ctx, KM_KEY_AES_256_GCM));
    OK(km_encrypt(s, (const uint8_t *)"eph", 3, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt_key(s, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert_mem_eq(pt, "eph", 3);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_rotate(s, NULL), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_key_suspend(s, 0), KM_E_UNSUPPORTED);
    OK(km_key_list(ctx, count_keys, &count));
    ck_assert_int_eq(count, 0);
    OK(km_session_key_create(&e, ctx, KM_KEY_ED25519));
    OK(km_sign(e, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &n));
    OK(km_verify(e, 0, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, n));
    km_key_free(s);
    ck_assert_int_eq(km_session_key_create(&s, ctx, (km_key_type)0), KM_E_INVALID);
    ck_assert_ptr_null(s);
    km_key_free(e);
    /* nothing was written: the vault still has no key */
    km_close(ctx);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    count = 0;
    OK(km_key_list(ctx, count_keys, &count));
    ck_assert_int_eq(count, 0);
}
END_TEST

/* With a small key cache, touching more keys than it holds keeps working:
 * unused key objects are dropped and loaded again when needed. */
START_TEST(test_api_key_cache_bounded)
{
    tu_open o = TU_OPEN_INIT;
    char name[16];
    uint8_t ct[20][64], pt[16];
    size_t n[20], m;
    km_ctx *c = NULL;
    int i, round;
    for (i = 0; i < 20; i++) {
        km_key *k = NULL;
        snprintf(name, sizeof name, "k%d", i);
        OK(km_key_create(&k, ctx, name, KM_KEY_AES_128_GCM, NULL));
        OK(km_encrypt(k, (const uint8_t *)"v", 1, NULL, 0, ct[i], sizeof ct[i], &n[i]));
        km_key_free(k);
    }
    o.key_cache_max = 4;
    OK(tu_vault_open_with(&c, dir, &o));
    for (round = 0; round < 3; round++)
        for (i = 0; i < 20; i++)
            OK(km_decrypt(c, 0, ct[i], n[i], NULL, 0, pt, sizeof pt, &m));
    km_close(c);
}
END_TEST

static Suite *api_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("api", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_api_version_and_init);
    tcase_add_test(tc, test_api_open_errors);
    tcase_add_test(tc, test_api_reopen_and_passphrases);
    tcase_add_test(tc, test_api_two_contexts_one_process);
    tcase_add_test(tc, test_api_key_create_open_list_info);
    tcase_add_test(tc, test_api_key_bad_input);
    tcase_add_test(tc, test_api_import_rules);
    tcase_add_test(tc, test_api_public_export_import);
    tcase_add_test(tc, test_api_encrypt_decrypt_rotate);
    tcase_add_test(tc, test_api_encrypt_bad_input);
    tcase_add_test(tc, test_api_usage_mask_enforced);
    tcase_add_test(tc, test_api_sign_verify_all_types);
    tcase_add_test(tc, test_api_mac);
    tcase_add_test(tc, test_api_fork_detected);
    tcase_add_test(tc, test_api_usage_counter_persisted);
    tcase_add_test(tc, test_api_format_interop);
    tcase_add_test(tc, test_api_session_key);
    tcase_add_test(tc, test_api_key_cache_bounded);
    return s;
}

int main(void)
{
    return tu_run(api_suite());
}
