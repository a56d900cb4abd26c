/* check_crypto.c - the software backend (backends/software/software.c), called through its vtable. */
#include "km_int.h"
#include "core.h"
#include "testutil.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static const km_backend_ops *const B = &km__software_backend;

/* ------------------------------------------------------------------ helpers */

static km_backend_keyspec spec_of(km_key_type type, uint32_t flags)
{
    static const uint8_t id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    km_backend_keyspec s;
    memset(&s, 0, sizeof s);
    s.version = 1;
    s.type = type;
    s.usage = km__type_usage(type);
    s.flags = flags;
    s.key_id = id;
    s.key_version = 1;
    return s;
}

static km_secret *gen(km_key_type type)
{
    km_backend_keyspec s = spec_of(type, 0);
    km_secret *ref = NULL;
    int rc = B->generate(NULL, &s, &ref);
    ck_assert_msg(rc == KM_OK, "generate %s: %s (%s)", km_key_type_name(type), km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_nonnull(ref);
    return ref;
}

static void *load_bytes(km_key_type type, uint32_t flags, const uint8_t *ref, size_t len)
{
    km_backend_keyspec s = spec_of(type, flags);
    void *obj = NULL;
    int rc = B->load(NULL, &s, ref, len, &obj);
    ck_assert_msg(rc == KM_OK, "load %s: %s (%s)", km_key_type_name(type), km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_nonnull(obj);
    return obj;
}

static void *load_ref(km_key_type type, const km_secret *ref)
{
    return load_bytes(type, 0, km_secret_data(ref), km_secret_len(ref));
}

static void *gen_load(km_key_type type)
{
    km_secret *ref = gen(type);
    void *obj = load_ref(type, ref);
    km_secret_free(ref);
    return obj;
}

static int import_m(km_key_type type, uint32_t flags, km_material_format fmt, const uint8_t *m,
                    size_t len, km_secret **out)
{
    km_backend_keyspec s = spec_of(type, flags);
    return B->import(NULL, &s, fmt, m, len, out);
}

static km_secret *import_ok(km_key_type type, km_material_format fmt, const uint8_t *m,
                            size_t len)
{
    km_secret *ref = NULL;
    int rc = import_m(type, 0, fmt, m, len, &ref);
    ck_assert_msg(rc == KM_OK, "import %s: %s (%s)", km_key_type_name(type), km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_nonnull(ref);
    return ref;
}

/* An import that must fail with KM_E_INVALID, leave no reference and no OpenSSL error. */
static void import_invalid(km_key_type type, uint32_t flags, km_material_format fmt,
                           const uint8_t *m, size_t len, const char *why)
{
    km_secret *ref = (km_secret *)(uintptr_t)1;
    int rc = import_m(type, flags, fmt, m, len, &ref);
    ck_assert_msg(rc == KM_E_INVALID, "%s: import as %s gave %s", why, km_key_type_name(type),
                  km_err_name(rc));
    ck_assert_int_eq(km_error_last()->code, KM_E_INVALID);
    ck_assert_ptr_null(ref);
    ck_assert_msg(ERR_peek_error() == 0, "%s: OpenSSL error queue not cleared", why);
}

static uint8_t *unhex(const char *hex, size_t *len)
{
    uint8_t *b = tu_unhex(hex, len);
    ck_assert_ptr_nonnull(b);
    return b;
}

static void ck_hex_eq(const uint8_t *got, size_t got_len, const char *hex)
{
    size_t n;
    uint8_t *want = unhex(hex, &n);
    ck_assert_uint_eq(got_len, n);
    ck_assert_mem_eq(got, want, n);
    free(want);
}

/* The public key of a loaded object, as SPKI DER (malloc'ed). */
static uint8_t *spki_of(void *obj, size_t *len)
{
    uint8_t *buf = malloc(2048);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(B->public_key(obj, buf, 2048, len), KM_OK);
    return buf;
}

static EVP_PKEY *pkey_of_ref(const km_secret *ref)
{
    const unsigned char *p = km_secret_data(ref) + 1;
    PKCS8_PRIV_KEY_INFO *p8;
    EVP_PKEY *pk;
    ck_assert_int_eq(km_secret_data(ref)[0], KM_MATERIAL_PKCS8_DER);
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)km_secret_len(ref) - 1);
    ck_assert_ptr_nonnull(p8);
    ck_assert_ptr_eq(p, km_secret_data(ref) + km_secret_len(ref));
    pk = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    ck_assert_ptr_nonnull(pk);
    return pk;
}

static const km_key_type gcm_types[] = { KM_KEY_AES_128_GCM, KM_KEY_AES_192_GCM,
                                         KM_KEY_AES_256_GCM };
static const km_key_type hmac_types[] = { KM_KEY_HMAC_SHA256, KM_KEY_HMAC_SHA384,
                                          KM_KEY_HMAC_SHA512 };
static const km_key_type sign_types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_EC_P521,
                                          KM_KEY_ED25519, KM_KEY_RSA_2048, KM_KEY_RSA_3072,
                                          KM_KEY_RSA_4096 };
static const km_key_type ec_types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_EC_P521 };
static const km_key_type agree_types[] = { KM_KEY_EC_P256, KM_KEY_EC_P384, KM_KEY_EC_P521,
                                           KM_KEY_X25519 };
static const km_key_type pub_types[] = { KM_KEY_EC_P256, KM_KEY_ED25519, KM_KEY_RSA_2048 };

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ------------------------------------------------------------- the tables */

START_TEST(test_crypto_backend_table_complete)
{
    ck_assert_uint_eq(B->version, KM_BACKEND_OPS_VERSION);
    ck_assert_str_eq(B->name, "software");
    ck_assert(B->caps & KM_BACKEND_CAP_SYMMETRIC);
    ck_assert(B->caps & KM_BACKEND_CAP_ASYMMETRIC);
    ck_assert(B->caps & KM_BACKEND_CAP_IMPORT);
    ck_assert_ptr_nonnull(B->generate);
    ck_assert_ptr_nonnull(B->import);
    ck_assert_ptr_nonnull(B->load);
    ck_assert_ptr_nonnull(B->unload);
    ck_assert_ptr_nonnull(B->aead_seal);
    ck_assert_ptr_nonnull(B->aead_open);
    ck_assert_ptr_nonnull(B->sign);
    ck_assert_ptr_nonnull(B->verify);
    ck_assert_ptr_nonnull(B->mac);
    ck_assert_ptr_nonnull(B->wrap);
    ck_assert_ptr_nonnull(B->unwrap);
    ck_assert_ptr_nonnull(B->derive);
    ck_assert_ptr_nonnull(B->agree);
    ck_assert_ptr_nonnull(B->public_key);
}
END_TEST

START_TEST(test_crypto_type_tables)
{
    int t;

    ck_assert(!km__type_is_valid(0));
    ck_assert(!km__type_is_valid(KM__KEYTYPE_MAX + 1));
    ck_assert(!km__type_is_valid(-1));
    for (t = KM_KEY_AES_128_GCM; t <= KM__KEYTYPE_MAX; t++) {
        ck_assert(km__type_is_valid(t));
        ck_assert_uint_ne(km__type_usage((km_key_type)t), 0);
    }
    ck_assert_uint_eq(km__type_key_len(KM_KEY_AES_128_GCM), 16);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_AES_192_GCM), 24);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_AES_256_GCM), 32);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_AES_256_KWP), 32);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_HMAC_SHA256), 32);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_HMAC_SHA384), 48);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_HMAC_SHA512), 64);
    ck_assert_uint_eq(km__type_key_len(KM_KEY_EC_P256), 0);
    ck_assert_uint_eq(km__type_key_len((km_key_type)99), 0);
    ck_assert(km__type_is_symmetric(KM_KEY_AES_256_KWP));
    ck_assert(km__type_is_symmetric(KM_KEY_HMAC_SHA512));
    ck_assert(!km__type_is_symmetric(KM_KEY_X25519));
    ck_assert(!km__type_is_symmetric((km_key_type)0));

    ck_assert_uint_eq(km__type_usage(KM_KEY_AES_192_GCM), KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT);
    ck_assert_uint_eq(km__type_usage(KM_KEY_AES_256_KWP), KM_USAGE_WRAP | KM_USAGE_UNWRAP);
    ck_assert_uint_eq(km__type_usage(KM_KEY_HMAC_SHA384),
                      KM_USAGE_MAC | KM_USAGE_MAC_VERIFY | KM_USAGE_DERIVE);
    ck_assert_uint_eq(km__type_usage(KM_KEY_EC_P521),
                      KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_AGREE);
    ck_assert_uint_eq(km__type_usage(KM_KEY_ED25519), KM_USAGE_SIGN | KM_USAGE_VERIFY);
    ck_assert_uint_eq(km__type_usage(KM_KEY_X25519), KM_USAGE_AGREE);
    ck_assert_uint_eq(km__type_usage(KM_KEY_RSA_3072),
                      KM_USAGE_SIGN | KM_USAGE_VERIFY | KM_USAGE_WRAP | KM_USAGE_UNWRAP);
    ck_assert_uint_eq(km__type_usage((km_key_type)0), 0);
}
END_TEST

/* -------------------------------------------------------------- references */

START_TEST(test_crypto_reference_layout)
{
    km_secret *a = gen(KM_KEY_AES_256_GCM), *b = gen(KM_KEY_AES_256_GCM), *r;
    EVP_PKEY *pk;

    /* [RAW][32 key bytes]; two keys differ */
    ck_assert_uint_eq(km_secret_len(a), 33);
    ck_assert_int_eq(km_secret_data(a)[0], KM_MATERIAL_RAW);
    ck_assert(memcmp(km_secret_data(a) + 1, km_secret_data(b) + 1, 32) != 0);
    ck_assert(!tu_all_zero(km_secret_data(a) + 1, 32));
    km_secret_free(a);
    km_secret_free(b);

    r = gen(KM_KEY_AES_128_GCM);
    ck_assert_uint_eq(km_secret_len(r), 17);
    ck_assert_int_eq(km_secret_data(r)[0], KM_MATERIAL_RAW);
    km_secret_free(r);
    r = gen(KM_KEY_AES_192_GCM);
    ck_assert_uint_eq(km_secret_len(r), 25);
    km_secret_free(r);
    r = gen(KM_KEY_AES_256_KWP);
    ck_assert_uint_eq(km_secret_len(r), 33);
    ck_assert_int_eq(km_secret_data(r)[0], KM_MATERIAL_RAW);
    km_secret_free(r);
    r = gen(KM_KEY_HMAC_SHA384);
    ck_assert_uint_eq(km_secret_len(r), 49);
    km_secret_free(r);
    r = gen(KM_KEY_HMAC_SHA512);
    ck_assert_uint_eq(km_secret_len(r), 65);
    km_secret_free(r);

    /* asymmetric: [PKCS8_DER][PrivateKeyInfo] of the right algorithm */
    r = gen(KM_KEY_EC_P384);
    pk = pkey_of_ref(r);
    ck_assert(EVP_PKEY_is_a(pk, "EC"));
    ck_assert_int_eq(EVP_PKEY_get_bits(pk), 384);
    EVP_PKEY_free(pk);
    km_secret_free(r);
    r = gen(KM_KEY_X25519);
    pk = pkey_of_ref(r);
    ck_assert(EVP_PKEY_is_a(pk, "X25519"));
    EVP_PKEY_free(pk);
    km_secret_free(r);
}
END_TEST

START_TEST(test_crypto_load_rejects_bad_references)
{
    km_backend_keyspec s = spec_of(KM_KEY_AES_256_GCM, 0);
    km_secret *aes = gen(KM_KEY_AES_256_GCM), *ec = gen(KM_KEY_EC_P256);
    uint8_t bad[40];
    void *obj = (void *)(uintptr_t)1;

    /* a RAW reference one byte short */
    ck_assert_int_eq(B->load(NULL, &s, km_secret_data(aes), 32, &obj), KM_E_INVALID);
    ck_assert_ptr_null(obj);
    /* an unknown format byte */
    memcpy(bad, km_secret_data(aes), 33);
    bad[0] = 9;
    ck_assert_int_eq(B->load(NULL, &s, bad, 33, &obj), KM_E_INVALID);
    ck_assert_int_eq(B->load(NULL, &s, bad, 1, &obj), KM_E_INVALID);
    ck_assert_int_eq(B->load(NULL, &s, NULL, 0, &obj), KM_E_INVALID);
    ck_assert_int_eq(B->load(NULL, NULL, km_secret_data(aes), 33, &obj), KM_E_INVALID);
    /* an AES reference loaded as an EC key, and the reverse */
    s = spec_of(KM_KEY_EC_P256, 0);
    ck_assert_int_eq(B->load(NULL, &s, km_secret_data(aes), 33, &obj), KM_E_INVALID);
    s = spec_of(KM_KEY_AES_256_GCM, 0);
    ck_assert_int_eq(B->load(NULL, &s, km_secret_data(ec), km_secret_len(ec), &obj),
                     KM_E_INVALID);
    /* a P-256 reference loaded as P-384 */
    s = spec_of(KM_KEY_EC_P384, 0);
    ck_assert_int_eq(B->load(NULL, &s, km_secret_data(ec), km_secret_len(ec), &obj),
                     KM_E_INVALID);
    ck_assert_ptr_null(obj);
    ck_assert(ERR_peek_error() == 0);
    km_secret_free(aes);
    km_secret_free(ec);
    B->unload(NULL, NULL); /* accepts NULL */
}
END_TEST

/* ------------------------------------------------------------------ AES-GCM */

START_TEST(test_crypto_gcm_round_trip_and_tamper)
{
    km_key_type type = gcm_types[_i];
    void *obj = gen_load(type), *other = gen_load(type);
    static const size_t lens[] = { 0, 1, 15, 16, 64, 1000 };
    uint8_t nonce[12], hdr[36], aad[20], pt[1000], ct[1000], back[1000], tag[16], bad[16];
    size_t i, n;

    memset(hdr, 0x36, sizeof hdr);
    memset(aad, 0xad, sizeof aad);
    for (i = 0; i < sizeof pt; i++)
        pt[i] = (uint8_t)i;
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        n = lens[i];
        ck_assert_int_eq(km__random(nonce, 12), KM_OK);
        ck_assert_int_eq(B->aead_seal(obj, nonce, hdr, 36, aad, 20, pt, n, ct, tag), KM_OK);
        /* the ciphertext differs from the plaintext; only asserted from 16 bytes
         * on, where an accidental match has probability 2^-128 (a 1-byte one
         * matches by chance once in 256 runs) */
        if (n >= 16)
            ck_assert(memcmp(ct, pt, n) != 0);
        memset(back, 0xaa, sizeof back);
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, tag, back), KM_OK);
        ck_assert_mem_eq(back, pt, n);

        /* a changed tag, nonce, header, caller aad, ciphertext or key fails, output zeroed */
        memcpy(bad, tag, 16);
        bad[15] ^= 0x80;
        memset(back, 0xaa, sizeof back);
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, bad, back),
                         KM_E_INTEGRITY);
        ck_assert(tu_all_zero(back, n));
        ck_assert(ERR_peek_error() == 0);
        nonce[0] ^= 1;
        memset(back, 0xaa, sizeof back);
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, tag, back),
                         KM_E_INTEGRITY);
        ck_assert(tu_all_zero(back, n));
        nonce[0] ^= 1;
        hdr[3] ^= 1;
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, tag, back),
                         KM_E_INTEGRITY);
        hdr[3] ^= 1;
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 19, ct, n, tag, back),
                         KM_E_INTEGRITY);
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, NULL, 0, ct, n, tag, back),
                         KM_E_INTEGRITY);
        if (n > 0) {
            ct[n - 1] ^= 1;
            memset(back, 0xaa, sizeof back);
            ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, tag, back),
                             KM_E_INTEGRITY);
            ck_assert(tu_all_zero(back, n));
            ct[n - 1] ^= 1;
        }
        memset(back, 0xaa, sizeof back);
        ck_assert_int_eq(B->aead_open(other, nonce, hdr, 36, aad, 20, ct, n, tag, back),
                         KM_E_INTEGRITY);
        ck_assert(tu_all_zero(back, n));
        ck_assert_int_eq(km_error_last()->code, KM_E_INTEGRITY);
        /* the pooled context still works after the failures */
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, aad, 20, ct, n, tag, back), KM_OK);
        ck_assert_mem_eq(back, pt, n);
    }
    B->unload(NULL, obj);
    B->unload(NULL, other);
}
END_TEST

/* The associated data is aad1 || aad2: only the concatenation matters. The
 * vector is TC16 of the GCM specification (rfc_vectors.json, gcm_spec_aes256). */
START_TEST(test_crypto_gcm_known_answer_and_aad_split)
{
    size_t kl, nl, al, pl;
    uint8_t *key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                         &kl);
    uint8_t *iv = unhex("cafebabefacedbaddecaf888", &nl);
    uint8_t *aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", &al);
    uint8_t *pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", &pl);
    km_secret *ref = import_ok(KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, key, kl);
    void *obj = load_ref(KM_KEY_AES_256_GCM, ref);
    uint8_t ct[64], tag[16], back[64];
    size_t split;

    for (split = 0; split <= al; split++) {
        ck_assert_int_eq(B->aead_seal(obj, iv, aad, split, aad + split, al - split, pt, pl, ct,
                                      tag), KM_OK);
        ck_hex_eq(ct, pl, "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
        ck_hex_eq(tag, 16, "76fc6ece0f4e1768cddf8853bb2d551b");
        ck_assert_int_eq(B->aead_open(obj, iv, aad, al - split, aad + al - split, split, ct, pl,
                                      tag, back), KM_OK);
        ck_assert_mem_eq(back, pt, pl);
    }
    /* one-shot AES-256-GCM of prim.c agrees */
    ck_assert_int_eq(km__gcm_open(key, iv, aad, al, ct, pl, tag, back), KM_OK);
    ck_assert_mem_eq(back, pt, pl);
    B->unload(NULL, obj);
    km_secret_free(ref);
    free(key);
    free(iv);
    free(aad);
    free(pt);
}
END_TEST

struct gcm_thread_arg {
    void *obj;
    int failures;
};

static void *gcm_thread(void *p)
{
    struct gcm_thread_arg *a = p;
    uint8_t nonce[12], pt[64], ct[64], back[64], tag[16];
    int i;

    for (i = 0; i < 300; i++) {
        memset(pt, i & 0xff, sizeof pt);
        if (km__nonce12(nonce) != KM_OK
            || B->aead_seal(a->obj, nonce, nonce, 12, NULL, 0, pt, sizeof pt, ct, tag) != KM_OK
            || B->aead_open(a->obj, nonce, nonce, 12, NULL, 0, ct, sizeof ct, tag, back) != KM_OK
            || memcmp(back, pt, sizeof pt) != 0)
            a->failures++;
        tag[0] ^= 1;
        if (B->aead_open(a->obj, nonce, nonce, 12, NULL, 0, ct, sizeof ct, tag, back)
            != KM_E_INTEGRITY)
            a->failures++;
    }
    return NULL;
}

START_TEST(test_crypto_gcm_shared_object_across_threads)
{
    void *obj = gen_load(KM_KEY_AES_256_GCM);
    struct gcm_thread_arg args[6];
    pthread_t th[6];
    int i;

    for (i = 0; i < 6; i++) {
        args[i].obj = obj;
        args[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, gcm_thread, &args[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(args[i].failures, 0);
    }
    B->unload(NULL, obj);
}
END_TEST

/* OpenSSL's allocations, counted (installed in main before anything else). */
static atomic_ulong ossl_allocs;

static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file; (void)line;
    atomic_fetch_add(&ossl_allocs, 1);
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file; (void)line;
    atomic_fetch_add(&ossl_allocs, 1);
    return realloc(p, n);
}

static void count_free(void *p, const char *file, int line)
{
    (void)file; (void)line;
    free(p);
}

/* After the first call, sealing and opening (also failing to open) allocate nothing. */
START_TEST(test_crypto_gcm_steady_state_allocates_nothing)
{
    void *obj = gen_load(KM_KEY_AES_256_GCM);
    uint8_t nonce[12], hdr[36] = { 0 }, pt[64] = { 1 }, ct[64], back[64], tag[16];
    unsigned long before, after;
    int i;

    ck_assert_int_eq(km__nonce12(nonce), KM_OK);
    ck_assert_int_eq(B->aead_seal(obj, nonce, hdr, 36, pt, 3, pt, 64, ct, tag), KM_OK);
    ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, pt, 3, ct, 64, tag, back), KM_OK);
    tag[0] ^= 1;
    ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, pt, 3, ct, 64, tag, back), KM_E_INTEGRITY);
    before = atomic_load(&ossl_allocs);
    for (i = 0; i < 200; i++) {
        ck_assert_int_eq(km__nonce12(nonce), KM_OK);
        ck_assert_int_eq(B->aead_seal(obj, nonce, hdr, 36, pt, 3, pt, 64, ct, tag), KM_OK);
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, pt, 3, ct, 64, tag, back), KM_OK);
        tag[0] ^= 1;
        ck_assert_int_eq(B->aead_open(obj, nonce, hdr, 36, pt, 3, ct, 64, tag, back),
                         KM_E_INTEGRITY);
    }
    after = atomic_load(&ossl_allocs);
    ck_assert_uint_eq(after, before);
    B->unload(NULL, obj);
}
END_TEST

START_TEST(test_crypto_gcm_rejects_bad_arguments)
{
    void *obj = gen_load(KM_KEY_AES_128_GCM), *mac = gen_load(KM_KEY_HMAC_SHA256);
    uint8_t nonce[12] = { 0 }, buf[16] = { 0 }, tag[16] = { 0 }, out[16];

    ck_assert_int_eq(B->aead_seal(NULL, nonce, NULL, 0, NULL, 0, buf, 16, out, tag),
                     KM_E_INVALID);
    ck_assert_int_eq(B->aead_seal(obj, NULL, NULL, 0, NULL, 0, buf, 16, out, tag), KM_E_INVALID);
    ck_assert_int_eq(B->aead_seal(obj, nonce, NULL, 5, NULL, 0, buf, 16, out, tag),
                     KM_E_INVALID);
    ck_assert_int_eq(B->aead_seal(obj, nonce, NULL, 0, NULL, 0, NULL, 16, out, tag),
                     KM_E_INVALID);
    ck_assert_int_eq(B->aead_seal(mac, nonce, NULL, 0, NULL, 0, buf, 16, out, tag), KM_E_USAGE);
    memset(out, 0xaa, sizeof out);
    ck_assert_int_eq(B->aead_open(mac, nonce, NULL, 0, NULL, 0, buf, 16, tag, out), KM_E_USAGE);
    ck_assert(tu_all_zero(out, sizeof out));
    B->unload(NULL, obj);
    B->unload(NULL, mac);
}
END_TEST

/* --------------------------------------------------------------------- HMAC */

START_TEST(test_crypto_hmac_generated_and_known_answer)
{
    static const char *const kat[] = {
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
        "faea9ea9076ede7f4af152e8b2fa9cb6",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
        "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    };
    km_key_type type = hmac_types[_i];
    size_t dlen = km__type_key_len(type), n = 0, m = 0;
    void *obj = gen_load(type), *kobj;
    uint8_t t1[64], t2[64], key[20];
    km_secret *ref;

    ck_assert_int_eq(B->mac(obj, (const uint8_t *)"msg", 3, t1, sizeof t1, &n), KM_OK);
    ck_assert_uint_eq(n, dlen);
    ck_assert_int_eq(B->mac(obj, (const uint8_t *)"msg", 3, t2, sizeof t2, &m), KM_OK);
    ck_assert_mem_eq(t1, t2, dlen); /* the pooled context restarts cleanly */
    ck_assert_int_eq(B->mac(obj, (const uint8_t *)"msh", 3, t2, sizeof t2, &m), KM_OK);
    ck_assert(memcmp(t1, t2, dlen) != 0);
    ck_assert_int_eq(B->mac(obj, NULL, 0, t2, sizeof t2, &m), KM_OK);
    ck_assert_uint_eq(m, dlen);
    /* too small: KM_E_BUFFER with the size needed */
    ck_assert_int_eq(B->mac(obj, (const uint8_t *)"msg", 3, t2, dlen - 1, &m), KM_E_BUFFER);
    ck_assert_uint_eq(m, dlen);
    ck_assert_int_eq(B->mac(obj, (const uint8_t *)"msg", 3, NULL, 0, &m), KM_E_BUFFER);
    ck_assert_uint_eq(m, dlen);
    B->unload(NULL, obj);

    /* RFC 4231 test case 1 */
    memset(key, 0x0b, sizeof key);
    ref = import_ok(type, KM_MATERIAL_RAW, key, sizeof key);
    ck_assert_uint_eq(km_secret_len(ref), 21);
    kobj = load_ref(type, ref);
    ck_assert_int_eq(B->mac(kobj, (const uint8_t *)"Hi There", 8, t1, sizeof t1, &n), KM_OK);
    ck_hex_eq(t1, n, kat[_i]);
    B->unload(NULL, kobj);
    km_secret_free(ref);
}
END_TEST

START_TEST(test_crypto_hmac_import_key_lengths)
{
    uint8_t key[1025];
    km_secret *ref;
    void *obj;
    uint8_t tag[64];
    size_t n;

    memset(key, 0x5c, sizeof key);
    import_invalid(KM_KEY_HMAC_SHA256, 0, KM_MATERIAL_RAW, key, 13, "13-byte HMAC key");
    import_invalid(KM_KEY_HMAC_SHA512, 0, KM_MATERIAL_RAW, key, 1025, "1025-byte HMAC key");
    import_invalid(KM_KEY_HMAC_SHA256, 0, KM_MATERIAL_PKCS8_DER, key, 32, "HMAC key as PKCS#8");
    ref = import_ok(KM_KEY_HMAC_SHA256, KM_MATERIAL_RAW, key, 14);
    obj = load_ref(KM_KEY_HMAC_SHA256, ref);
    ck_assert_int_eq(B->mac(obj, key, 3, tag, sizeof tag, &n), KM_OK);
    B->unload(NULL, obj);
    km_secret_free(ref);
    ref = import_ok(KM_KEY_HMAC_SHA512, KM_MATERIAL_RAW, key, 1024);
    ck_assert_uint_eq(km_secret_len(ref), 1025);
    obj = load_ref(KM_KEY_HMAC_SHA512, ref);
    ck_assert_int_eq(B->mac(obj, key, 3, tag, sizeof tag, &n), KM_OK);
    ck_assert_uint_eq(n, 64);
    B->unload(NULL, obj);
    km_secret_free(ref);
}
END_TEST

/* ------------------------------------------------------------------ derive */

START_TEST(test_crypto_derive_hkdf_known_answer)
{
    uint8_t ikm[22];
    size_t sl, il;
    uint8_t *salt = unhex("000102030405060708090a0b0c", &sl);
    uint8_t *info = unhex("f0f1f2f3f4f5f6f7f8f9", &il);
    km_secret *ref, *out = NULL, *out2 = NULL;
    void *obj, *gobj;

    memset(ikm, 0x0b, sizeof ikm);
    ref = import_ok(KM_KEY_HMAC_SHA256, KM_MATERIAL_RAW, ikm, sizeof ikm);
    obj = load_ref(KM_KEY_HMAC_SHA256, ref);
    /* RFC 5869 A.1 and A.3 */
    ck_assert_int_eq(B->derive(obj, salt, sl, info, il, 42, &out), KM_OK);
    ck_hex_eq(km_secret_data(out), km_secret_len(out),
              "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    km_secret_free(out);
    ck_assert_int_eq(B->derive(obj, NULL, 0, NULL, 0, 42, &out), KM_OK);
    ck_hex_eq(km_secret_data(out), km_secret_len(out),
              "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
    km_secret_free(out);
    out = (km_secret *)(uintptr_t)1;
    ck_assert_int_eq(B->derive(obj, NULL, 0, NULL, 0, 0, &out), KM_E_INVALID);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(B->derive(obj, NULL, 0, NULL, 0, 8161, &out), KM_E_INVALID);
    ck_assert_int_eq(B->derive(obj, NULL, 0, NULL, 0, 8160, &out), KM_OK);
    km_secret_free(out);
    B->unload(NULL, obj);
    km_secret_free(ref);

    /* generated HMAC keys of every size derive; different info, different keys */
    gobj = gen_load(KM_KEY_HMAC_SHA512);
    ck_assert_int_eq(B->derive(gobj, NULL, 0, (const uint8_t *)"a", 1, 32, &out), KM_OK);
    ck_assert_int_eq(B->derive(gobj, NULL, 0, (const uint8_t *)"b", 1, 32, &out2), KM_OK);
    ck_assert(memcmp(km_secret_data(out), km_secret_data(out2), 32) != 0);
    km_secret_free(out);
    km_secret_free(out2);
    B->unload(NULL, gobj);
    free(salt);
    free(info);
}
END_TEST

/* ---------------------------------------------------------- sign / verify */

START_TEST(test_crypto_sign_verify_every_type)
{
    km_key_type type = sign_types[_i];
    void *obj = gen_load(type);
    static const uint8_t msg[] = "the message to sign";
    uint8_t sig[1024], bad[1024];
    size_t n = 0, n2 = 0;

    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_uint_gt(n, 0);
    if (type == KM_KEY_ED25519)
        ck_assert_uint_eq(n, 64);
    if (type == KM_KEY_RSA_2048 || type == KM_KEY_RSA_3072 || type == KM_KEY_RSA_4096)
        ck_assert_uint_eq(n, (size_t)(type == KM_KEY_RSA_2048 ? 256
                                      : type == KM_KEY_RSA_3072 ? 384 : 512));
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n), KM_OK);

    /* another message, a changed signature, truncated, extended, garbage, empty */
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg - 1, sig, n), KM_E_VERIFY);
    memcpy(bad, sig, n);
    bad[n / 2] ^= 0x01;
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, bad, n), KM_E_VERIFY);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n - 1), KM_E_VERIFY);
    memcpy(bad, sig, n);
    bad[n] = 0;
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, bad, n + 1), KM_E_VERIFY);
    memset(bad, 0x30, sizeof bad);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, bad, 7), KM_E_VERIFY);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, bad, sizeof bad), KM_E_VERIFY);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, bad, 0), KM_E_VERIFY);
    ck_assert_int_eq(km_error_last()->code, KM_E_VERIFY);
    ck_assert(ERR_peek_error() == 0);

    /* empty message */
    ck_assert_int_eq(B->sign(obj, 0, NULL, 0, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(B->verify(obj, 0, NULL, 0, sig, n), KM_OK);

    /* too small: KM_E_BUFFER with a size that then suffices */
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, 8, &n2), KM_E_BUFFER);
    ck_assert_uint_ge(n2, 9);
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, n2, &n), KM_OK);
    ck_assert_uint_le(n, n2);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n), KM_OK);

    /* P1363 is for ECDSA only */
    if (type == KM_KEY_ED25519 || type == KM_KEY_RSA_2048 || type == KM_KEY_RSA_3072
        || type == KM_KEY_RSA_4096) {
        ck_assert_int_eq(B->sign(obj, KM_SIG_P1363, msg, sizeof msg, sig, sizeof sig, &n),
                         KM_E_INVALID);
        ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, sig, 64), KM_E_INVALID);
    }
    B->unload(NULL, obj);
}
END_TEST

START_TEST(test_crypto_ecdsa_p1363)
{
    km_key_type type = ec_types[_i];
    static const size_t field[] = { 32, 48, 66 };
    size_t f = field[_i], n = 0, d = 0;
    void *obj = gen_load(type);
    static const uint8_t msg[] = "p1363";
    uint8_t rs[132], der[160], bad[140];
    const unsigned char *p;
    unsigned char *q;
    ECDSA_SIG *es;
    BIGNUM *r, *s;

    ck_assert_int_eq(B->sign(obj, KM_SIG_P1363, msg, sizeof msg, rs, sizeof rs, &n), KM_OK);
    ck_assert_uint_eq(n, 2 * f);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, rs, n), KM_OK);
    /* the same r||s as DER (built independently) verifies without the flag */
    es = ECDSA_SIG_new();
    r = BN_bin2bn(rs, (int)f, NULL);
    s = BN_bin2bn(rs + f, (int)f, NULL);
    ck_assert(es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1);
    q = der;
    d = (size_t)i2d_ECDSA_SIG(es, &q);
    ECDSA_SIG_free(es);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, der, d), KM_OK);
    /* and a DER signature converts to the same width */
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, der, sizeof der, &d), KM_OK);
    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)d);
    ck_assert_ptr_nonnull(es);
    ECDSA_SIG_free(es);
    /* the wrong encoding for the flag, wrong lengths, a changed byte: KM_E_VERIFY */
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, rs, n), KM_E_VERIFY);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, der, d), KM_E_VERIFY);
    memset(bad, 0, sizeof bad);
    memcpy(bad + 1, rs, n);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, bad, n + 1), KM_E_VERIFY);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, rs, n - 1), KM_E_VERIFY);
    memcpy(bad, rs, n);
    bad[n - 1] ^= 1;
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, bad, n), KM_E_VERIFY);
    memset(bad, 0, n);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, bad, n), KM_E_VERIFY);
    memset(bad, 0xff, n);
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, bad, n), KM_E_VERIFY);
    ck_assert(ERR_peek_error() == 0);
    /* a buffer too small for r||s */
    ck_assert_int_eq(B->sign(obj, KM_SIG_P1363, msg, sizeof msg, rs, n - 1, &d), KM_E_BUFFER);
    ck_assert_uint_eq(d, 2 * f);
    B->unload(NULL, obj);
}
END_TEST

/* RFC 8032 section 7.1, test 1: raw private import, deterministic signature. */
START_TEST(test_crypto_ed25519_known_answer)
{
    size_t kl, n = 0, pl = 0;
    uint8_t *sk = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                        &kl);
    km_secret *ref = import_ok(KM_KEY_ED25519, KM_MATERIAL_RAW, sk, kl);
    void *obj;
    uint8_t sig[64], *spki;

    ck_assert_int_eq(km_secret_data(ref)[0], KM_MATERIAL_PKCS8_DER);
    obj = load_ref(KM_KEY_ED25519, ref);
    ck_assert_int_eq(B->sign(obj, 0, NULL, 0, sig, sizeof sig, &n), KM_OK);
    ck_hex_eq(sig, n, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a"
                      "33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    spki = spki_of(obj, &pl);
    ck_hex_eq(spki, pl, "302a300506032b6570032100"
                        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    free(spki);
    B->unload(NULL, obj);
    km_secret_free(ref);
    import_invalid(KM_KEY_ED25519, 0, KM_MATERIAL_RAW, sk, 31, "31-byte Ed25519 key");
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_RAW, sk, 32, "raw EC key");
    free(sk);
}
END_TEST

/* The signing contexts a key keeps between signatures (software.c sign_msg):
 * a later signature hashes only its own message, Ed25519 stays deterministic,
 * and RSA's padding follows each call's flags, not the last call's. */
START_TEST(test_crypto_sign_reused_context)
{
    size_t kl, n = 0, n1 = 0, i;
    uint8_t *sk = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                        &kl);
    km_secret *ref = import_ok(KM_KEY_ED25519, KM_MATERIAL_RAW, sk, kl);
    void *obj = load_ref(KM_KEY_ED25519, ref);
    static const uint8_t a[] = "first message", b[] = "second";
    uint8_t sig[512], sig1[512];

    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(B->sign(obj, 0, a, sizeof a, sig, sizeof sig, &n), KM_OK);
        ck_assert_int_eq(B->sign(obj, 0, NULL, 0, sig, sizeof sig, &n), KM_OK);
        ck_hex_eq(sig, n, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb88"
                          "21590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    }
    B->unload(NULL, obj);
    km_secret_free(ref);
    free(sk);

    obj = gen_load(KM_KEY_EC_P256);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(B->sign(obj, 0, a, sizeof a, sig1, sizeof sig1, &n1), KM_OK);
        ck_assert_int_eq(B->sign(obj, 0, b, sizeof b, sig, sizeof sig, &n), KM_OK);
        ck_assert_int_eq(B->verify(obj, 0, a, sizeof a, sig1, n1), KM_OK);
        ck_assert_int_eq(B->verify(obj, 0, b, sizeof b, sig, n), KM_OK);
        ck_assert_int_eq(B->verify(obj, 0, a, sizeof a, sig, n), KM_E_VERIFY);
    }
    B->unload(NULL, obj);

    obj = gen_load(KM_KEY_RSA_2048);
    ck_assert_int_eq(B->sign(obj, KM_SIG_PKCS1, a, sizeof a, sig1, sizeof sig1, &n1), KM_OK);
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(B->sign(obj, 0, a, sizeof a, sig, sizeof sig, &n), KM_OK);
        ck_assert_int_eq(B->verify(obj, 0, a, sizeof a, sig, n), KM_OK);
        ck_assert_int_eq(B->verify(obj, KM_SIG_PKCS1, a, sizeof a, sig, n), KM_E_VERIFY);
        ck_assert_int_eq(B->sign(obj, KM_SIG_PKCS1, a, sizeof a, sig, sizeof sig, &n), KM_OK);
        ck_assert(n == n1 && memcmp(sig, sig1, n) == 0); /* PKCS#1 v1.5 is deterministic */
    }
    B->unload(NULL, obj);
}
END_TEST

/* RSA-PSS is SHA-256, MGF1-SHA-256, salt 32 both ways: checked against plain EVP. */
static size_t evp_pss_sign(EVP_PKEY *pk, int salt, const uint8_t *msg, size_t len, uint8_t *sig)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    size_t n = 512;
    ck_assert(EVP_DigestSignInit_ex(m, &pc, "SHA256", NULL, NULL, pk, NULL) == 1);
    ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0);
    ck_assert(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, salt) > 0);
    ck_assert(EVP_DigestSign(m, sig, &n, msg, len) == 1);
    EVP_MD_CTX_free(m);
    return n;
}

START_TEST(test_crypto_rsa_pss_parameters)
{
    km_secret *ref = gen(KM_KEY_RSA_2048);
    EVP_PKEY *pk = pkey_of_ref(ref);
    void *obj = load_ref(KM_KEY_RSA_2048, ref);
    static const uint8_t msg[] = "pss";
    uint8_t sig[512];
    size_t n;
    EVP_MD_CTX *m;
    EVP_PKEY_CTX *pc = NULL;

    n = evp_pss_sign(pk, 32, msg, sizeof msg, sig);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n), KM_OK);
    n = evp_pss_sign(pk, 20, msg, sizeof msg, sig);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n), KM_E_VERIFY);
    n = evp_pss_sign(pk, RSA_PSS_SALTLEN_MAX, msg, sizeof msg, sig);
    ck_assert_int_eq(B->verify(obj, 0, msg, sizeof msg, sig, n), KM_E_VERIFY);
    ck_assert(ERR_peek_error() == 0);

    /* our signature has salt 32 and MGF1-SHA-256 */
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    m = EVP_MD_CTX_new();
    ck_assert(EVP_DigestVerifyInit_ex(m, &pc, "SHA256", NULL, NULL, pk, NULL) == 1);
    ck_assert(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0);
    ck_assert(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) > 0);
    ck_assert(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) > 0);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, n, msg, sizeof msg), 1);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pk);
    B->unload(NULL, obj);
    km_secret_free(ref);
}
END_TEST

/* --------------------------------------------------------- public-only keys */

START_TEST(test_crypto_public_only_verifies_never_signs)
{
    km_key_type type = pub_types[_i];
    km_secret *ref = gen(type), *pref, *sec = NULL;
    void *priv = load_ref(type, ref), *pub;
    static const uint8_t msg[] = "public";
    uint8_t sig[512], *spki, w[512];
    size_t n = 0, pl = 0, wl = 0;

    spki = spki_of(priv, &pl);
    pref = import_ok(type, KM_MATERIAL_SPKI_DER, spki, pl);
    ck_assert_int_eq(km_secret_data(pref)[0], KM_MATERIAL_SPKI_DER);
    ck_assert_uint_eq(km_secret_len(pref), pl + 1);
    ck_assert_mem_eq(km_secret_data(pref) + 1, spki, pl);
    pub = load_bytes(type, KM_KEY_PUBLIC_ONLY, km_secret_data(pref), km_secret_len(pref));

    ck_assert_int_eq(B->sign(priv, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(B->verify(pub, 0, msg, sizeof msg, sig, n), KM_OK);
    sig[0] ^= 1;
    ck_assert_int_eq(B->verify(pub, 0, msg, sizeof msg, sig, n), KM_E_VERIFY);
    ck_assert_int_eq(B->sign(pub, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_E_USAGE);
    if (type == KM_KEY_RSA_2048) {
        /* the public key wraps; only the private key unwraps */
        ck_assert_int_eq(B->wrap(pub, msg, sizeof msg, w, sizeof w, &wl), KM_OK);
        ck_assert_int_eq(B->unwrap(pub, w, wl, &sec), KM_E_USAGE);
        ck_assert_int_eq(B->unwrap(priv, w, wl, &sec), KM_OK);
        ck_assert_uint_eq(km_secret_len(sec), sizeof msg);
        ck_assert_mem_eq(km_secret_data(sec), msg, sizeof msg);
        km_secret_free(sec);
    }
    if (type == KM_KEY_EC_P256)
        ck_assert_int_eq(B->agree(pub, spki, pl, &sec), KM_E_USAGE);
    /* a public-only spec refuses private material */
    import_invalid(type, KM_KEY_PUBLIC_ONLY, KM_MATERIAL_PKCS8_DER, km_secret_data(ref) + 1,
                   km_secret_len(ref) - 1, "private material for a public-only key");
    free(spki);
    B->unload(NULL, pub);
    B->unload(NULL, priv);
    km_secret_free(pref);
    km_secret_free(ref);
}
END_TEST

START_TEST(test_crypto_public_key_export)
{
    km_secret *ref = gen(KM_KEY_EC_P521);
    void *obj = load_ref(KM_KEY_EC_P521, ref), *aes = gen_load(KM_KEY_AES_256_GCM);
    EVP_PKEY *pk = pkey_of_ref(ref), *pub;
    uint8_t buf[512];
    const unsigned char *p = buf;
    size_t n = 0, need = 0;

    ck_assert_int_eq(B->public_key(obj, NULL, 0, &need), KM_E_BUFFER);
    ck_assert_uint_gt(need, 0);
    ck_assert_int_eq(B->public_key(obj, buf, need - 1, &n), KM_E_BUFFER);
    ck_assert_uint_eq(n, need);
    ck_assert_int_eq(B->public_key(obj, buf, sizeof buf, &n), KM_OK);
    ck_assert_uint_eq(n, need);
    pub = d2i_PUBKEY(NULL, &p, (long)n);
    ck_assert_ptr_nonnull(pub);
    ck_assert_ptr_eq(p, buf + n);
    ck_assert_int_eq(EVP_PKEY_eq(pub, pk), 1);
    ck_assert_int_eq(B->public_key(aes, buf, sizeof buf, &n), KM_E_UNSUPPORTED);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pk);
    B->unload(NULL, obj);
    B->unload(NULL, aes);
    km_secret_free(ref);
}
END_TEST

/* ------------------------------------------------------------ wrap / unwrap */

START_TEST(test_crypto_kwp_wrap_round_trip)
{
    km_secret *ref = gen(KM_KEY_AES_256_KWP), *sec = (km_secret *)(uintptr_t)1;
    void *obj = load_ref(KM_KEY_AES_256_KWP, ref);
    uint8_t key[32], w[64], u[64];
    size_t wl = 0, ul = 0;
    EVP_CIPHER_CTX *c;
    int a = 0, b = 0;

    memset(key, 0x42, sizeof key);
    ck_assert_int_eq(B->wrap(obj, key, 7, w, sizeof w, &wl), KM_OK);
    ck_assert_uint_eq(wl, 16);
    ck_assert_int_eq(B->unwrap(obj, w, wl, &sec), KM_OK);
    ck_assert_uint_eq(km_secret_len(sec), 7);
    ck_assert_mem_eq(km_secret_data(sec), key, 7);
    km_secret_free(sec);
    ck_assert_int_eq(B->wrap(obj, key, 32, NULL, 0, &wl), KM_E_BUFFER);
    ck_assert_uint_eq(wl, 40);
    ck_assert_int_eq(B->wrap(obj, key, 32, w, sizeof w, &wl), KM_OK);
    ck_assert_uint_eq(wl, 40);

    /* RFC 5649 as plain EVP reads it */
    c = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ck_assert(EVP_DecryptInit_ex(c, EVP_aes_256_wrap_pad(), NULL, km_secret_data(ref) + 1, NULL)
              == 1);
    ck_assert(EVP_DecryptUpdate(c, u, &a, w, (int)wl) == 1);
    ck_assert(EVP_DecryptFinal_ex(c, u + a, &b) == 1);
    ck_assert_int_eq(a + b, 32);
    ck_assert_mem_eq(u, key, 32);
    EVP_CIPHER_CTX_free(c);

    ck_assert_int_eq(B->unwrap(obj, w, wl, &sec), KM_OK);
    ck_assert_mem_eq(km_secret_data(sec), key, 32);
    km_secret_free(sec);
    w[wl - 1] ^= 1;
    sec = (km_secret *)(uintptr_t)1;
    ck_assert_int_eq(B->unwrap(obj, w, wl, &sec), KM_E_INTEGRITY);
    ck_assert_ptr_null(sec);
    ck_assert_int_eq(B->unwrap(obj, w, 12, &sec), KM_E_INTEGRITY);
    ck_assert_int_eq(B->unwrap(obj, w, 8, &sec), KM_E_INTEGRITY);
    ck_assert_int_eq(B->wrap(obj, key, 0, w, sizeof w, &wl), KM_E_INVALID);
    ck_assert(ERR_peek_error() == 0);
    (void)ul;
    B->unload(NULL, obj);
    km_secret_free(ref);
}
END_TEST

START_TEST(test_crypto_rsa_oaep_wrap_round_trip)
{
    void *obj = gen_load(KM_KEY_RSA_2048), *other = gen_load(KM_KEY_RSA_2048);
    uint8_t key[191], w[256], w2[256];
    km_secret *sec = NULL;
    size_t wl = 0, need = 0;

    memset(key, 0x17, sizeof key);
    ck_assert_int_eq(B->wrap(obj, key, 32, NULL, 0, &need), KM_E_BUFFER);
    ck_assert_uint_eq(need, 256);
    ck_assert_int_eq(B->wrap(obj, key, 32, w, sizeof w, &wl), KM_OK);
    ck_assert_uint_eq(wl, 256);
    ck_assert_int_eq(B->wrap(obj, key, 32, w2, sizeof w2, &wl), KM_OK);
    ck_assert(memcmp(w, w2, 256) != 0); /* OAEP is randomised */
    ck_assert_int_eq(B->unwrap(obj, w, wl, &sec), KM_OK);
    ck_assert_uint_eq(km_secret_len(sec), 32);
    ck_assert_mem_eq(km_secret_data(sec), key, 32);
    km_secret_free(sec);
    /* the largest input for 2048 bits with SHA-256 is 190 bytes */
    ck_assert_int_eq(B->wrap(obj, key, 190, w, sizeof w, &wl), KM_OK);
    ck_assert_int_eq(B->unwrap(obj, w, wl, &sec), KM_OK);
    ck_assert_uint_eq(km_secret_len(sec), 190);
    km_secret_free(sec);
    ck_assert_int_eq(B->wrap(obj, key, 191, w2, sizeof w2, &wl), KM_E_INVALID);
    /* tampered, wrong key, wrong length */
    w[100] ^= 1;
    ck_assert_int_eq(B->unwrap(obj, w, 256, &sec), KM_E_INTEGRITY);
    ck_assert_ptr_null(sec);
    w[100] ^= 1;
    ck_assert_int_eq(B->unwrap(other, w, 256, &sec), KM_E_INTEGRITY);
    ck_assert_int_eq(B->unwrap(obj, w, 255, &sec), KM_E_INTEGRITY);
    ck_assert(ERR_peek_error() == 0);
    B->unload(NULL, obj);
    B->unload(NULL, other);
}
END_TEST

/* -------------------------------------------------------------------- agree */

START_TEST(test_crypto_agree_both_sides_equal)
{
    km_key_type type = agree_types[_i];
    static const size_t lens[] = { 32, 48, 66, 32 };
    void *a = gen_load(type), *b = gen_load(type);
    km_key_type wrong = type == KM_KEY_EC_P256 ? KM_KEY_EC_P384
                        : type == KM_KEY_X25519 ? KM_KEY_ED25519 : KM_KEY_EC_P256;
    void *w = gen_load(wrong), *rsa = NULL;
    km_secret *s1 = NULL, *s2 = NULL, *s3 = (km_secret *)(uintptr_t)1;
    uint8_t *pa, *pb, *pw, junk[16];
    size_t la, lb, lw;

    pa = spki_of(a, &la);
    pb = spki_of(b, &lb);
    pw = spki_of(w, &lw);
    ck_assert_int_eq(B->agree(a, pb, lb, &s1), KM_OK);
    ck_assert_int_eq(B->agree(b, pa, la, &s2), KM_OK);
    ck_assert_uint_eq(km_secret_len(s1), lens[_i]);
    ck_assert_uint_eq(km_secret_len(s2), lens[_i]);
    ck_assert_mem_eq(km_secret_data(s1), km_secret_data(s2), lens[_i]);
    ck_assert(!tu_all_zero(km_secret_data(s1), lens[_i]));
    /* a peer of another curve or algorithm, garbage, trailing bytes */
    ck_assert_int_eq(B->agree(a, pw, lw, &s3), KM_E_INVALID);
    ck_assert_ptr_null(s3);
    ck_assert_msg(strstr(km_error_last()->message, "peer") != NULL, "%s",
                  km_error_last()->message);
    memset(junk, 0x30, sizeof junk);
    ck_assert_int_eq(B->agree(a, junk, sizeof junk, &s3), KM_E_INVALID);
    pb = realloc(pb, lb + 1);
    pb[lb] = 0;
    ck_assert_int_eq(B->agree(a, pb, lb + 1, &s3), KM_E_INVALID);
    if (type != KM_KEY_X25519) {
        /* a point off the curve: the last byte of y changed */
        pb[lb - 1] ^= 1;
        ck_assert_int_eq(B->agree(a, pb, lb, &s3), KM_E_INVALID);
        pb[lb - 1] ^= 1;
    }
    ck_assert_ptr_null(s3);
    ck_assert(ERR_peek_error() == 0);
    if (type == KM_KEY_EC_P256) {
        rsa = gen_load(KM_KEY_RSA_2048);
        free(pw);
        pw = spki_of(rsa, &lw);
        ck_assert_int_eq(B->agree(a, pw, lw, &s3), KM_E_INVALID);
        B->unload(NULL, rsa);
    }
    km_secret_free(s1);
    km_secret_free(s2);
    free(pa);
    free(pb);
    free(pw);
    B->unload(NULL, a);
    B->unload(NULL, b);
    B->unload(NULL, w);
}
END_TEST

/* RFC 7748 section 6.1, with a raw X25519 private key import. */
START_TEST(test_crypto_x25519_known_answer)
{
    size_t kl, pl;
    uint8_t *sk = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                        &kl);
    uint8_t *peer = unhex("302a300506032b656e032100"
                          "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
                          &pl);
    km_secret *ref = import_ok(KM_KEY_X25519, KM_MATERIAL_RAW, sk, kl), *s = NULL;
    void *obj = load_ref(KM_KEY_X25519, ref);
    uint8_t zero_peer[44];

    ck_assert_int_eq(B->agree(obj, peer, pl, &s), KM_OK);
    ck_hex_eq(km_secret_data(s), km_secret_len(s),
              "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    km_secret_free(s);
    /* a low-order peer point (all zero) gives no secret */
    memcpy(zero_peer, peer, 12);
    memset(zero_peer + 12, 0, 32);
    ck_assert_int_eq(B->agree(obj, zero_peer, sizeof zero_peer, &s), KM_E_INVALID);
    ck_assert_ptr_null(s);
    ck_assert(ERR_peek_error() == 0);
    B->unload(NULL, obj);
    km_secret_free(ref);
    free(sk);
    free(peer);
}
END_TEST

/* ------------------------------------------------------------ import checks */

START_TEST(test_crypto_import_rejects_wrong_length_algorithm_curve)
{
    km_secret *p384 = gen(KM_KEY_EC_P384), *p256 = gen(KM_KEY_EC_P256);
    km_secret *rsa = gen(KM_KEY_RSA_2048), *ed = gen(KM_KEY_ED25519), *x = gen(KM_KEY_X25519);
    km_secret *ref;
    void *o384 = load_ref(KM_KEY_EC_P384, p384);
    uint8_t raw[64], *spki, *buf;
    size_t pl, n;
    unsigned char *der = NULL;
    size_t dlen = 0;
    OSSL_ENCODER_CTX *e;
    EVP_PKEY *pk;

    memset(raw, 7, sizeof raw);
    import_invalid(KM_KEY_AES_128_GCM, 0, KM_MATERIAL_RAW, raw, 15, "15-byte AES-128 key");
    import_invalid(KM_KEY_AES_128_GCM, 0, KM_MATERIAL_RAW, raw, 32, "32-byte AES-128 key");
    import_invalid(KM_KEY_AES_192_GCM, 0, KM_MATERIAL_RAW, raw, 16, "16-byte AES-192 key");
    import_invalid(KM_KEY_AES_256_GCM, 0, KM_MATERIAL_RAW, raw, 33, "33-byte AES-256 key");
    import_invalid(KM_KEY_AES_256_KWP, 0, KM_MATERIAL_RAW, raw, 16, "16-byte KWP key");
    import_invalid(KM_KEY_AES_256_GCM, 0, KM_MATERIAL_SPKI_DER, raw, 32, "AES key as SPKI");

    /* a P-384 key is no P-256 key, and the message says so */
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(p384) + 1,
                   km_secret_len(p384) - 1, "P-384 as P-256");
    ck_assert_msg(strstr(km_error_last()->message, "curve") != NULL, "%s",
                  km_error_last()->message);
    import_invalid(KM_KEY_EC_P521, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(p256) + 1,
                   km_secret_len(p256) - 1, "P-256 as P-521");
    spki = spki_of(o384, &pl);
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_SPKI_DER, spki, pl, "P-384 SPKI as P-256");
    /* RSA size, algorithm mix-ups */
    import_invalid(KM_KEY_RSA_3072, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(rsa) + 1,
                   km_secret_len(rsa) - 1, "RSA-2048 as RSA-3072");
    ck_assert_msg(strstr(km_error_last()->message, "2048") != NULL, "%s",
                  km_error_last()->message);
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(rsa) + 1,
                   km_secret_len(rsa) - 1, "RSA as EC");
    import_invalid(KM_KEY_RSA_2048, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(p256) + 1,
                   km_secret_len(p256) - 1, "EC as RSA");
    import_invalid(KM_KEY_X25519, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(ed) + 1,
                   km_secret_len(ed) - 1, "Ed25519 as X25519");
    import_invalid(KM_KEY_ED25519, 0, KM_MATERIAL_PKCS8_DER, km_secret_data(x) + 1,
                   km_secret_len(x) - 1, "X25519 as Ed25519");
    /* the wrong container, trailing or missing bytes, garbage */
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PKCS8_DER, spki, pl, "SPKI as PKCS#8");
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_SPKI_DER, km_secret_data(p384) + 1,
                   km_secret_len(p384) - 1, "PKCS#8 as SPKI");
    n = km_secret_len(p384) - 1;
    buf = malloc(n + 1);
    memcpy(buf, km_secret_data(p384) + 1, n);
    buf[n] = 0;
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PKCS8_DER, buf, n + 1, "trailing byte");
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PKCS8_DER, buf, n - 1, "truncated");
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PKCS8_DER, raw, sizeof raw, "garbage");
    import_invalid(KM_KEY_EC_P384, 0, (km_material_format)9, buf, n, "unknown format");
    free(buf);
    /* SEC1 (not PKCS#8) DER of the same key is refused */
    pk = pkey_of_ref(p384);
    e = OSSL_ENCODER_CTX_new_for_pkey(pk, EVP_PKEY_KEYPAIR, "DER", "type-specific", NULL);
    ck_assert(e != NULL && OSSL_ENCODER_to_data(e, &der, &dlen) == 1);
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PKCS8_DER, der, dlen, "SEC1 DER");
    OPENSSL_clear_free(der, dlen);
    OSSL_ENCODER_CTX_free(e);
    EVP_PKEY_free(pk);

    /* a private key whose public half belongs to another key (the point is the
     * last 65 bytes of OpenSSL's P-256 PKCS#8) fails the pairwise check */
    {
        km_secret *q = gen(KM_KEY_EC_P256);
        size_t l = km_secret_len(p256) - 1;
        ck_assert_uint_eq(km_secret_len(q) - 1, l);
        buf = malloc(l);
        memcpy(buf, km_secret_data(p256) + 1, l);
        ck_assert_int_eq(buf[l - 65], 0x04);
        memcpy(buf + l - 65, km_secret_data(q) + 1 + l - 65, 65);
        import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PKCS8_DER, buf, l, "mismatched pair");
        ck_assert_msg(strstr(km_error_last()->message, "consistency") != NULL, "%s",
                      km_error_last()->message);
        free(buf);
        km_secret_free(q);
    }

    /* the right key imports, and re-encodes to the same PKCS#8 */
    ref = import_ok(KM_KEY_EC_P384, KM_MATERIAL_PKCS8_DER, km_secret_data(p384) + 1,
                    km_secret_len(p384) - 1);
    ck_assert_uint_eq(km_secret_len(ref), km_secret_len(p384));
    ck_assert_mem_eq(km_secret_data(ref), km_secret_data(p384), km_secret_len(ref));
    km_secret_free(ref);
    free(spki);
    B->unload(NULL, o384);
    km_secret_free(p384);
    km_secret_free(p256);
    km_secret_free(rsa);
    km_secret_free(ed);
    km_secret_free(x);
}
END_TEST

static char *to_pem(EVP_PKEY *pk, int private, const char *extra)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long n;
    ck_assert(private ? PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1
                      : PEM_write_bio_PUBKEY(b, pk) == 1);
    if (extra != NULL)
        BIO_puts(b, extra);
    n = BIO_get_mem_data(b, &data);
    out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

START_TEST(test_crypto_import_pem)
{
    km_secret *ref = gen(KM_KEY_EC_P256), *r2;
    EVP_PKEY *pk = pkey_of_ref(ref);
    char *pem;
    BIO *b;
    long n;
    char *data;
    OSSL_ENCODER_CTX *e;

    /* PKCS#8 PEM: the same reference as the DER */
    pem = to_pem(pk, 1, "\n  \n");
    ck_assert(strstr(pem, "-----BEGIN PRIVATE KEY-----") != NULL);
    r2 = import_ok(KM_KEY_EC_P256, KM_MATERIAL_PEM, (const uint8_t *)pem, strlen(pem));
    ck_assert_uint_eq(km_secret_len(r2), km_secret_len(ref));
    ck_assert_mem_eq(km_secret_data(r2), km_secret_data(ref), km_secret_len(ref));
    km_secret_free(r2);
    import_invalid(KM_KEY_EC_P384, 0, KM_MATERIAL_PEM, (const uint8_t *)pem, strlen(pem),
                   "P-256 PEM as P-384");
    import_invalid(KM_KEY_EC_P256, KM_KEY_PUBLIC_ONLY, KM_MATERIAL_PEM, (const uint8_t *)pem,
                   strlen(pem), "private PEM for a public-only key");
    /* a PKCS#8 block with RFC 1421 headers is refused */
    {
        const char *body = strchr(pem, '\n') + 1;
        size_t hl = (size_t)(body - pem);
        static const char hdrs[] = "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,"
                                   "00112233445566778899AABBCCDDEEFF\n\n";
        char *h = malloc(strlen(pem) + sizeof hdrs);
        memcpy(h, pem, hl);
        memcpy(h + hl, hdrs, sizeof hdrs - 1);
        strcpy(h + hl + sizeof hdrs - 1, body);
        import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PEM, (const uint8_t *)h, strlen(h),
                       "PEM with headers");
        free(h);
    }
    free(pem);
    /* a second block after the first is refused */
    pem = to_pem(pk, 1, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PEM, (const uint8_t *)pem, strlen(pem),
                   "PEM with a second block");
    free(pem);
    /* SPKI PEM: a public-only reference */
    pem = to_pem(pk, 0, NULL);
    r2 = import_ok(KM_KEY_EC_P256, KM_MATERIAL_PEM, (const uint8_t *)pem, strlen(pem));
    ck_assert_int_eq(km_secret_data(r2)[0], KM_MATERIAL_SPKI_DER);
    km_secret_free(r2);
    free(pem);
    /* SEC1 "EC PRIVATE KEY" and encrypted PKCS#8 PEM are refused */
    b = BIO_new(BIO_s_mem());
    e = OSSL_ENCODER_CTX_new_for_pkey(pk, EVP_PKEY_KEYPAIR, "PEM", "type-specific", NULL);
    ck_assert(e != NULL && OSSL_ENCODER_to_bio(e, b) == 1);
    OSSL_ENCODER_CTX_free(e);
    n = BIO_get_mem_data(b, &data);
    ck_assert(strstr(data, "EC PRIVATE KEY") != NULL);
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PEM, (const uint8_t *)data, (size_t)n,
                   "SEC1 PEM");
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    ck_assert(PEM_write_bio_PKCS8PrivateKey(b, pk, EVP_aes_256_cbc(), "pw", 2, NULL, NULL) == 1);
    n = BIO_get_mem_data(b, &data);
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PEM, (const uint8_t *)data, (size_t)n,
                   "encrypted PKCS#8 PEM");
    BIO_free(b);
    import_invalid(KM_KEY_EC_P256, 0, KM_MATERIAL_PEM, (const uint8_t *)"not a pem", 9,
                   "text");
    EVP_PKEY_free(pk);
    km_secret_free(ref);
}
END_TEST

START_TEST(test_crypto_ops_refuse_other_key_types)
{
    void *aes = gen_load(KM_KEY_AES_128_GCM), *ed = gen_load(KM_KEY_ED25519);
    void *x = gen_load(KM_KEY_X25519), *kwp = gen_load(KM_KEY_AES_256_KWP);
    uint8_t buf[256], key[32] = { 0 };
    size_t n;
    km_secret *s = NULL;

    ck_assert_int_eq(B->sign(aes, 0, key, 32, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(B->sign(x, 0, key, 32, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(B->verify(kwp, 0, key, 32, buf, 64), KM_E_USAGE);
    ck_assert_int_eq(B->mac(ed, key, 32, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(B->wrap(aes, key, 32, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(B->wrap(ed, key, 32, buf, sizeof buf, &n), KM_E_USAGE);
    ck_assert_int_eq(B->unwrap(x, buf, 40, &s), KM_E_USAGE);
    ck_assert_int_eq(B->derive(ed, NULL, 0, NULL, 0, 32, &s), KM_E_USAGE);
    ck_assert_int_eq(B->derive(kwp, NULL, 0, NULL, 0, 32, &s), KM_E_USAGE);
    ck_assert_int_eq(B->agree(ed, key, 32, &s), KM_E_USAGE);
    ck_assert_int_eq(B->agree(aes, key, 32, &s), KM_E_USAGE);
    ck_assert_int_eq(B->aead_seal(kwp, key, NULL, 0, NULL, 0, key, 16, buf, buf + 16),
                     KM_E_USAGE);
    ck_assert_int_eq(B->public_key(kwp, buf, sizeof buf, &n), KM_E_UNSUPPORTED);
    ck_assert_ptr_null(s);
    B->unload(NULL, aes);
    B->unload(NULL, ed);
    B->unload(NULL, x);
    B->unload(NULL, kwp);
}
END_TEST

/* ------------------------------------------------------------------- suite */

static Suite *crypto_suite(void)
{
    TCase *tc, *slow;
    Suite *s = tu_suite("crypto", NULL, &tc, 120, NULL, NULL);

    tcase_add_test(tc, test_crypto_backend_table_complete);
    tcase_add_test(tc, test_crypto_type_tables);
    tcase_add_test(tc, test_crypto_reference_layout);
    tcase_add_test(tc, test_crypto_load_rejects_bad_references);
    tcase_add_loop_test(tc, test_crypto_gcm_round_trip_and_tamper, 0, N_OF(gcm_types));
    tcase_add_test(tc, test_crypto_gcm_known_answer_and_aad_split);
    tcase_add_test(tc, test_crypto_gcm_shared_object_across_threads);
    tcase_add_test(tc, test_crypto_gcm_steady_state_allocates_nothing);
    tcase_add_test(tc, test_crypto_gcm_rejects_bad_arguments);
    tcase_add_loop_test(tc, test_crypto_hmac_generated_and_known_answer, 0, N_OF(hmac_types));
    tcase_add_test(tc, test_crypto_hmac_import_key_lengths);
    tcase_add_test(tc, test_crypto_derive_hkdf_known_answer);
    tcase_add_loop_test(tc, test_crypto_ecdsa_p1363, 0, N_OF(ec_types));
    tcase_add_test(tc, test_crypto_ed25519_known_answer);
    tcase_add_test(tc, test_crypto_sign_reused_context);
    tcase_add_test(tc, test_crypto_public_key_export);
    tcase_add_test(tc, test_crypto_kwp_wrap_round_trip);
    tcase_add_loop_test(tc, test_crypto_agree_both_sides_equal, 0, N_OF(agree_types));
    tcase_add_test(tc, test_crypto_x25519_known_answer);
    tcase_add_test(tc, test_crypto_import_pem);
    tcase_add_test(tc, test_crypto_ops_refuse_other_key_types);

    /* RSA key generation takes seconds (minutes under valgrind) */
    slow = tu_tcase(s, "crypto-rsa", 900, NULL, NULL);
    tcase_add_loop_test(slow, test_crypto_sign_verify_every_type, 0, N_OF(sign_types));
    tcase_add_test(slow, test_crypto_rsa_pss_parameters);
    tcase_add_loop_test(slow, test_crypto_public_only_verifies_never_signs, 0, N_OF(pub_types));
    tcase_add_test(slow, test_crypto_rsa_oaep_wrap_round_trip);
    tcase_add_test(slow, test_crypto_import_rejects_wrong_length_algorithm_curve);
    return s;
}

int main(void)
{

    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
        return EXIT_FAILURE;
    if (km_init() != KM_OK)
        return EXIT_FAILURE;
    return tu_run(crypto_suite());
}
