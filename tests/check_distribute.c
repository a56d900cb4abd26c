/* check_distribute.c - wrapped export and import (BYOK): between vaults, and
 * with the openssl command-line tool as the outside party. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <km.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "testutil.h"

static char *dir;
static km_ctx *a, *b;

static void setup(void)
{
    char sub[4200];
    tu_setup(&dir, &a, NULL);
    snprintf(sub, sizeof sub, "%s/b", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    b = tu_vault(sub);
}

static void teardown(void)
{
    km_close(b);
    tu_teardown(&dir, &a);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

/* A key moved from vault A to vault B with B's wrapping key (RSA-OAEP +
 * AES-KWP) keeps its id, and B decrypts A's ciphertexts. */
START_TEST(test_distribute_vault_to_vault)
{
    km_key_options ex = KM_KEY_OPTIONS_INIT, im = KM_KEY_OPTIONS_INIT;
    uint8_t pub[4096], blob[1024], ct[100], pt[64];
    size_t pub_len, blob_len, n, m;
    km_key *k = NULL, *k2 = NULL, *secret = NULL;
    const uint8_t msg[] = "moved between vaults";

    ex.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, a, "shared", KM_KEY_AES_256_GCM, &ex));
    OK(km_key_create(&secret, a, "stays", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n));
    OK(km_vault_wrapping_key(b, KM_MATERIAL_SPKI_DER, pub, sizeof pub, &pub_len));
    /* not exportable: refused, nothing released */
    memset(blob, 0xAA, sizeof blob);
    ck_assert_int_eq(km_key_export_wrapped(secret, 0, KM_WRAP_RSA_OAEP_KWP, NULL, pub, pub_len, blob,
                                           sizeof blob, &blob_len), KM_E_POLICY);
    OK(km_key_export_wrapped(k, 0, KM_WRAP_RSA_OAEP_KWP, NULL, pub, pub_len, blob, sizeof blob, &blob_len));
    ck_assert_uint_eq(blob_len, 512 + 40);
    im.key_id = km_key_id(k);
    OK(km_key_import_wrapped(&k2, b, "shared", KM_KEY_AES_256_GCM, KM_WRAP_RSA_OAEP_KWP, blob, blob_len, &im));
    OK(km_decrypt(b, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert_mem_eq(pt, msg, sizeof msg);
    /* wrapped to B: A cannot import it (A has another wrapping key) */
    OK(km_vault_wrapping_key(a, KM_MATERIAL_PEM, pub, sizeof pub, &pub_len));
    ck_assert_int_eq(km_key_import_wrapped(NULL, a, "again", KM_KEY_AES_256_GCM, KM_WRAP_RSA_OAEP_KWP, blob,
                                           blob_len, NULL), KM_E_INTEGRITY);
    /* the same id twice in one vault is refused */
    ck_assert_int_eq(km_key_import_wrapped(NULL, b, "shared2", KM_KEY_AES_256_GCM, KM_WRAP_RSA_OAEP_KWP,
                                           blob, blob_len, &im), KM_E_EXISTS);
    km_key_free(k);
    km_key_free(k2);
    km_key_free(secret);
}
END_TEST

/* AES-KWP under a KEK: round trip, every bit flip and truncation refused. */
START_TEST(test_distribute_kwp_under_kek)
{
    km_key_options ex = KM_KEY_OPTIONS_INIT;
    km_key *kek = NULL, *k = NULL, *ec = NULL, *back = NULL;
    uint8_t blob[1024], sig[KM_SIGNATURE_MAX];
    size_t blob_len, i, sig_len;
    ex.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&kek, a, "kek", KM_KEY_AES_256_KWP, NULL));
    OK(km_key_create(&k, a, "hmac", KM_KEY_HMAC_SHA256, &ex));
    OK(km_key_create(&ec, a, "signer", KM_KEY_EC_P256, &ex));
    OK(km_key_export_wrapped(k, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &blob_len));
    ck_assert_int_eq(blob[1], 'W');
    OK(km_key_import_wrapped(&back, a, "hmac-copy", KM_KEY_HMAC_SHA256, KM_WRAP_KWP, blob, blob_len, NULL));
    {
        uint8_t t1[64], t2[64];
        size_t n1, n2;
        OK(km_mac(k, KM_SIG_RAW, (const uint8_t *)"m", 1, t1, sizeof t1, &n1));
        OK(km_mac(back, KM_SIG_RAW, (const uint8_t *)"m", 1, t2, sizeof t2, &n2));
        ck_assert_mem_eq(t1, t2, n1);
    }
    km_key_free(back);
    for (i = 0; i < blob_len * 8; i++) {
        blob[i / 8] ^= (uint8_t)(1u << (i % 8));
        ck_assert_int_ne(km_key_import_wrapped(NULL, a, "x", KM_KEY_HMAC_SHA256, KM_WRAP_KWP, blob,
                                               blob_len, NULL), KM_OK);
        blob[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    for (i = 0; i < blob_len; i++)
        ck_assert_int_ne(km_key_import_wrapped(NULL, a, "x", KM_KEY_HMAC_SHA256, KM_WRAP_KWP, blob, i,
                                               NULL), KM_OK);
    ck_assert_int_eq(km_key_open(&back, a, "x"), KM_E_NOTFOUND);
    /* a private key (PKCS#8 inside) moves too, and signs the same */
    OK(km_key_export_wrapped(ec, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &blob_len));
    OK(km_key_import_wrapped(&back, a, "signer-copy", KM_KEY_EC_P256, KM_WRAP_KWP, blob, blob_len, NULL));
    OK(km_sign(back, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sizeof sig, &sig_len));
    OK(km_verify(ec, 0, KM_SIG_RAW, (const uint8_t *)"m", 1, sig, sig_len));
    /* a type that does not match the material is refused */
    ck_assert_int_eq(km_key_import_wrapped(NULL, a, "y", KM_KEY_EC_P384, KM_WRAP_KWP, blob, blob_len, NULL),
                     KM_E_INVALID);
    /* wrong arguments */
    ck_assert_int_eq(km_key_export_wrapped(k, 0, KM_WRAP_KWP, NULL, NULL, 0, blob, sizeof blob, &blob_len),
                     KM_E_INVALID);
    ck_assert_int_eq(km_key_export_wrapped(k, 0, KM_WRAP_KWP, ec, NULL, 0, blob, sizeof blob, &blob_len),
                     KM_E_USAGE);
    km_key_free(back);
    km_key_free(kek);
    km_key_free(k);
    km_key_free(ec);
}
END_TEST

/* The openssl tool unwraps what libkm exports (RSA-OAEP + AES-KWP). */
START_TEST(test_distribute_openssl_unwraps_export)
{
    char cmd[16384], path[4200];
    uint8_t raw[32], blob[1024], pub[4096];
    size_t blob_len, len;
    km_key *k = NULL;
    uint8_t *got, *pubpem;
    ck_assert_int_eq(RAND_bytes(raw, 32), 1);
    {
        km_key_options ex = KM_KEY_OPTIONS_INIT;
        ex.flags = KM_KEY_EXPORTABLE;
        OK(km_key_import(&k, a, "known", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, raw, 32, KM_IMPORT_ALLOW_RAW, &ex));
    }
    snprintf(cmd, sizeof cmd, "cd '%s' && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
             "-out r.pem 2>/dev/null && openssl pkey -in r.pem -pubout -out r.pub.pem", dir);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(path, sizeof path, "%s/r.pub.pem", dir);
    pubpem = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(pubpem);
    memcpy(pub, pubpem, len);
    free(pubpem);
    OK(km_key_export_wrapped(k, 0, KM_WRAP_RSA_OAEP_KWP, NULL, pub, len, blob, sizeof blob, &blob_len));
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    write_file(path, blob, blob_len);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && head -c 256 blob.bin > eph.enc && tail -c +257 blob.bin > key.kwp && "
             "openssl pkeyutl -decrypt -inkey r.pem -in eph.enc -out eph.bin "
             "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 && "
             "openssl enc -d -id-aes256-wrap-pad -K $(od -An -tx1 eph.bin | tr -d ' \\n') -iv A65959A6 "
             "-in key.kwp -out key.bin",
             dir);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(path, sizeof path, "%s/key.bin", dir);
    got = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, 32);
    ck_assert_mem_eq(got, raw, 32);
    free(got);
    km_memzero(raw, sizeof raw);
    km_key_free(k);
}
END_TEST

/* libkm imports a key that the openssl tool wrapped to the vault's wrapping key. */
START_TEST(test_distribute_openssl_wraps_import)
{
    char cmd[16384], path[4200];
    uint8_t pub[4096], *blob, *raw, ct[100], pt[64];
    size_t pub_len, blob_len, raw_len, n;
    km_key *k = NULL;
    const uint8_t msg[] = "byok";
    OK(km_vault_wrapping_key(a, KM_MATERIAL_PEM, pub, sizeof pub, &pub_len));
    snprintf(path, sizeof path, "%s/wrap.pub.pem", dir);
    write_file(path, pub, pub_len);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl rand 32 > key.bin && openssl rand 32 > eph.bin && "
             "openssl pkeyutl -encrypt -pubin -inkey wrap.pub.pem -in eph.bin -out eph.enc "
             "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 && "
             "openssl enc -id-aes256-wrap-pad -K $(od -An -tx1 eph.bin | tr -d ' \\n') -iv A65959A6 "
             "-in key.bin -out key.kwp && cat eph.enc key.kwp > blob.bin",
             dir);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    blob = tu_read_file(path, &blob_len);
    snprintf(path, sizeof path, "%s/key.bin", dir);
    raw = tu_read_file(path, &raw_len);
    ck_assert_ptr_nonnull(blob);
    ck_assert_ptr_nonnull(raw);
    OK(km_key_import_wrapped(&k, a, "from-openssl", KM_KEY_AES_256_GCM, KM_WRAP_RSA_OAEP_KWP, blob, blob_len, NULL));
    OK(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n));
    { /* the imported key is the one openssl wrapped: decrypt with raw EVP */
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l, ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, raw, ct + 24) == 1
                    && EVP_DecryptUpdate(c, NULL, &l, ct, 36) == 1
                    && EVP_DecryptUpdate(c, pt, &l, ct + 36, (int)(n - 52)) == 1
                    && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, ct + n - 16) == 1
                    && EVP_DecryptFinal_ex(c, pt + l, &l) == 1;
        EVP_CIPHER_CTX_free(c);
        ck_assert(ok);
        ck_assert_mem_eq(pt, msg, sizeof msg);
    }
    free(blob);
    km_memzero(raw, raw_len);
    free(raw);
    km_key_free(k);
}
END_TEST

/* HKDF derivation is deterministic per (key, salt, info) and differs otherwise. */
START_TEST(test_distribute_derive)
{
    km_key *k = NULL, *aes = NULL;
    km_secret *s1 = NULL, *s2 = NULL, *s3 = NULL;
    OK(km_key_create(&k, a, "root", KM_KEY_HMAC_SHA256, NULL));
    OK(km_key_create(&aes, a, "aes", KM_KEY_AES_256_GCM, NULL));
    OK(km_derive(k, (const uint8_t *)"salt", 4, (const uint8_t *)"tenant-1", 8, 32, &s1));
    OK(km_derive(k, (const uint8_t *)"salt", 4, (const uint8_t *)"tenant-1", 8, 32, &s2));
    OK(km_derive(k, (const uint8_t *)"salt", 4, (const uint8_t *)"tenant-2", 8, 32, &s3));
    ck_assert_mem_eq(km_secret_data(s1), km_secret_data(s2), 32);
    ck_assert(memcmp(km_secret_data(s1), km_secret_data(s3), 32) != 0);
    km_secret_free(s1);
    km_secret_free(s2);
    km_secret_free(s3);
    s1 = (km_secret *)1;
    ck_assert_int_eq(km_derive(aes, NULL, 0, NULL, 0, 32, &s1), KM_E_USAGE);
    ck_assert_ptr_null(s1);
    ck_assert_int_eq(km_derive(k, NULL, 0, NULL, 0, 0, &s1), KM_E_INVALID);
    ck_assert_int_eq(km_derive(k, NULL, 0, NULL, 0, KM_DERIVE_MAX + 1, &s1), KM_E_INVALID);
    km_key_free(k);
    km_key_free(aes);
}
END_TEST

/* Two parties agree the same secret (ECDH P-256 and P-384, X25519, FFDHE); a peer on
 * another curve or an invalid point is refused. */
START_TEST(test_distribute_agree)
{
    static const km_key_type types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_X25519,
                                         KM_KEY_FFDHE2048 };
    size_t i;
    for (i = 0; i < 4; i++) {
        km_key *x = NULL, *y = NULL;
        uint8_t px[1024], py[1024];
        size_t nx, ny;
        km_secret *sx = NULL, *sy = NULL;
        char n1[16], n2[16];
        snprintf(n1, sizeof n1, "x%zu", i);
        snprintf(n2, sizeof n2, "y%zu", i);
        OK(km_key_create(&x, a, n1, types[i], NULL));
        OK(km_key_create(&y, b, n2, types[i], NULL));
        OK(km_key_public_export(x, 0, KM_MATERIAL_SPKI_DER, px, sizeof px, &nx));
        OK(km_key_public_export(y, 0, KM_MATERIAL_SPKI_DER, py, sizeof py, &ny));
        OK(km_agree(x, py, ny, (const uint8_t *)"session", 7, 32, &sx));
        OK(km_agree(y, px, nx, (const uint8_t *)"session", 7, 32, &sy));
        ck_assert_mem_eq(km_secret_data(sx), km_secret_data(sy), 32);
        km_secret_free(sx);
        km_secret_free(sy);
        /* a peer key of another type */
        ck_assert_int_eq(km_agree(x, i == 0 ? py : px, 0, NULL, 0, 32, &sx), KM_E_INVALID);
        if (i == 0) {
            km_key *other = NULL;
            uint8_t po[512];
            size_t no;
            OK(km_key_create(&other, b, "other-curve", KM_KEY_EC_P384, NULL));
            OK(km_key_public_export(other, 0, KM_MATERIAL_SPKI_DER, po, sizeof po, &no));
            ck_assert_int_eq(km_agree(x, po, no, NULL, 0, 32, &sx), KM_E_INVALID);
            /* a point not on the curve: flip a bit of the x coordinate */
            py[ny - 10] ^= 1;
            ck_assert_int_ne(km_agree(x, py, ny, NULL, 0, 32, &sx), KM_OK);
            ck_assert_ptr_null(sx);
            km_key_free(other);
        }
        if (i == 2) { /* X25519 low-order points (u = 0, u = 1) give no secret */
            static const uint8_t spki_prefix[12] = { 0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b,
                                                     0x65, 0x6e, 0x03, 0x21, 0x00 };
            uint8_t lo[44];
            int u;
            for (u = 0; u <= 1; u++) {
                memcpy(lo, spki_prefix, 12);
                memset(lo + 12, 0, 32);
                lo[12] = (uint8_t)u;
                sx = NULL;
                ck_assert_int_ne(km_agree(x, lo, sizeof lo, NULL, 0, 32, &sx), KM_OK);
                ck_assert_ptr_null(sx);
            }
        }
        if (i == 3) { /* a DH key of another group is refused */
            km_key *other = NULL;
            uint8_t po[1024];
            size_t no;
            OK(km_key_create(&other, b, "dh3072", KM_KEY_FFDHE3072, NULL));
            OK(km_key_public_export(other, 0, KM_MATERIAL_SPKI_DER, po, sizeof po, &no));
            ck_assert_int_eq(km_agree(x, po, no, NULL, 0, 32, &sx), KM_E_INVALID);
            km_key_free(other);
        }
        km_key_free(x);
        km_key_free(y);
    }
}
END_TEST

static Suite *distribute_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("distribute", NULL, &tc, 600, setup, teardown);

    /* 600 s: RSA-4096 wrapping keys are generated, slowly under valgrind */
    tcase_add_test(tc, test_distribute_vault_to_vault);
    tcase_add_test(tc, test_distribute_kwp_under_kek);
    tcase_add_test(tc, test_distribute_openssl_unwraps_export);
    tcase_add_test(tc, test_distribute_openssl_wraps_import);
    tcase_add_test(tc, test_distribute_derive);
    tcase_add_test(tc, test_distribute_agree);
    return s;
}

int main(void)
{
    return tu_run(distribute_suite());
}
