/* check_prim.c - the primitives the device backends use (src/prim/prim.h:
 * prim_keyed.c km__skey, prim_pkey.c km__pkey): they agree with the one-shot
 * primitives and with the software backend on the same keys. */
#include <check.h>
#include <time.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "km_int.h"
#include "core.h"
#include "testutil.h"

static const km_backend_ops *const B = &km__software_backend;
static const uint8_t msg[] = "the primitives sign and verify this";

/* A software key of `type` (generated), loaded. */
static void *sw_key(km_key_type type, uint32_t usage)
{
    km_backend_keyspec spec = { .version = 1, .type = type, .usage = usage };
    km_secret *ref = NULL;
    void *obj = NULL;

    ck_assert_int_eq(B->generate(NULL, &spec, &ref), KM_OK);
    ck_assert_int_eq(B->load(NULL, &spec, km_secret_data(ref), km_secret_len(ref), &obj), KM_OK);
    km_secret_free(ref);
    return obj;
}

/* The key-type table (keytype.h): one row per id 1..KM__KEYTYPE_MAX, no gaps,
 * lookups and iteration agree with each other and with the public names. */
START_TEST(test_prim_keytype_table)
{
    const km__keytype *kt;
    char buf[128], small[12];
    int t, n = 0;

    ck_assert_ptr_null(km__keytype_get(0));
    ck_assert_ptr_null(km__keytype_get(KM__KEYTYPE_MAX + 1));
    ck_assert_ptr_null(km_key_type_name((km_key_type)(KM__KEYTYPE_MAX + 1)));
    ck_assert_ptr_null(km__keytype_by_name(NULL));
    ck_assert_ptr_null(km__keytype_by_name("AES-256-GCM"));
    for (t = 1; t <= KM__KEYTYPE_MAX; t++) {
        kt = km__keytype_get(t);
        ck_assert_ptr_nonnull(kt);
        ck_assert_int_eq((int)kt->id, t);
        ck_assert_str_eq(km_key_type_name((km_key_type)t), kt->name);
        ck_assert_ptr_eq(km__keytype_by_name(kt->name), kt);
        ck_assert_int_ne(kt->family, KM__FAM_NONE);
        ck_assert_uint_ne(kt->usages, 0);
        ck_assert_uint_eq(kt->default_usage & ~kt->usages, 0);
        ck_assert_int_lt(kt->pclass, KM__PCLASS__COUNT);
        ck_assert_uint_ne(kt->bits, 0);
        ck_assert_uint_ge(kt->strength, 112);
        ck_assert(kt->hdr_alg == 0 || kt->hdr_alg == (uint8_t)t);
        /* symmetric <=> raw key bytes; AES has a cipher, HMAC and ECDSA a digest */
        ck_assert_int_eq(kt->key_len != 0, kt->family == KM__FAM_AES_GCM
                         || kt->family == KM__FAM_AES_KWP || kt->family == KM__FAM_HMAC
                         || kt->family == KM__FAM_CMAC || kt->family == KM__FAM_AES_SIV);
        ck_assert_int_eq(km__type_is_symmetric((km_key_type)t), kt->key_len != 0);
        if (kt->family == KM__FAM_AES_GCM || kt->family == KM__FAM_AES_KWP
            || kt->family == KM__FAM_CMAC || kt->family == KM__FAM_AES_SIV)
            ck_assert_ptr_nonnull(kt->cipher);
        /* AES-SIV: two AES keys, not FIPS approved, header id of its own */
        if (kt->family == KM__FAM_AES_SIV)
            ck_assert(kt->key_len == 2 * kt->strength / 8 && !kt->fips && kt->hdr_alg == t);
        /* a MAC type has a tag length: the digest's (HMAC) or the AES block (CMAC) */
        ck_assert_uint_eq(km__type_mac_len((km_key_type)t),
                          kt->family == KM__FAM_HMAC ? kt->key_len
                          : kt->family == KM__FAM_CMAC ? 16 : 0);
        if (kt->family == KM__FAM_ECDSA)
            ck_assert(kt->group != NULL && kt->md != NULL && kt->field == (kt->bits + 7) / 8);
        if (kt->family == KM__FAM_HMAC)
            ck_assert_ptr_nonnull(kt->md);
        ck_assert_uint_eq(km__type_usage((km_key_type)t), kt->default_usage);
        ck_assert_uint_eq(km__type_usage_allowed((km_key_type)t), kt->usages);
        /* agree-raw is never a default usage; the agreement types may be given it */
        ck_assert_uint_eq(kt->default_usage & KM_USAGE_AGREE_RAW, 0);
        ck_assert_uint_eq(kt->usages, kt->default_usage | ((kt->usages & KM_USAGE_AGREE)
                                                           ? KM_USAGE_AGREE_RAW : 0));
        ck_assert_int_eq(km__type_family((km_key_type)t), kt->family);
    }
    for (kt = km__keytype_next(NULL); kt != NULL; kt = km__keytype_next(kt))
        n++;
    ck_assert_int_eq(n, KM__KEYTYPE_MAX);
    ck_assert_str_eq(km__keytype_names(buf, sizeof buf, KM__KT_PKCS11_CARD),
                     "ec-p256, ec-p384, rsa-2048, rsa-3072");
    ck_assert_str_eq(km__keytype_names(small, sizeof small, KM__KT_PKCS11_CARD), "ec-p256, ec");
    ck_assert_str_eq(km__keytype_names(buf, sizeof buf, 0), "");
    ck_assert(km__type_on_backend(KM_KEY_AES_256_KWP, KM__KT_TPM2));
    ck_assert(!km__type_on_backend(KM_KEY_AES_256_KWP, KM__KT_PKCS11));
    ck_assert(!km__type_on_backend((km_key_type)0, KM__KT_TPM2));
}
END_TEST

/* The keyed GCM context is reused call after call, its nonce set by the
 * provider's parameter rather than an init (prim_keyed.c gcm_set_nonce): each
 * sealing under a new nonce equals the one-shot (an init per call) and the
 * SP 800-38D/GCM spec test case 16; a context that failed a tag check, an
 * empty message and an empty AAD leave the next call sound. Fails if a reused
 * context kept the previous nonce or state. */
START_TEST(test_prim_skey_gcm_reused_context_nonces)
{
    size_t kl, nl, pl, al, cl, tl;
    uint8_t *key = tu_unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                            &kl);
    uint8_t *iv = tu_unhex("cafebabefacedbaddecaf888", &nl);
    uint8_t *pt = tu_unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                           "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", &pl);
    uint8_t *aad = tu_unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", &al);
    uint8_t *kct = tu_unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662", &cl);
    uint8_t *ktag = tu_unhex("76fc6ece0f4e1768cddf8853bb2d551b", &tl);
    uint8_t nonce[12], ct[64], ct2[64], out[64], tag[16], tag2[16];
    km__skey *g = NULL;
    int i;

    ck_assert(km__osslmem_hooked()); /* else no context is kept: nothing reused */
    ck_assert_int_eq(km__skey_new(&g, KM__SKEY_GCM, "AES-256-GCM", key, kl), KM_OK);
    for (i = 0; i < 6; i++) {
        size_t n = i == 3 ? 0 : pl, a = i == 4 ? 0 : al;
        memcpy(nonce, iv, sizeof nonce);
        nonce[11] ^= (uint8_t)i; /* i == 0: the spec's nonce */
        ck_assert_int_eq(km__skey_seal(g, nonce, aad, a, NULL, 0, pt, n, ct, tag), KM_OK);
        ck_assert_int_eq(km__gcm_seal(key, nonce, aad, a, pt, n, ct2, tag2), KM_OK);
        ck_assert_mem_eq(ct, ct2, n);
        ck_assert_mem_eq(tag, tag2, 16);
        if (i == 0) {
            ck_assert_mem_eq(ct, kct, cl);
            ck_assert_mem_eq(tag, ktag, tl);
        }
        ck_assert_int_eq(km__skey_open(g, nonce, aad, a, NULL, 0, ct, n, tag, out), KM_OK);
        ck_assert_mem_eq(out, pt, n);
        tag[i % 16] ^= 0x40;
        ck_assert_int_eq(km__skey_open(g, nonce, aad, a, NULL, 0, ct, n, tag, out),
                         KM_E_INTEGRITY);
        ck_assert(tu_all_zero(out, n));
        tag[i % 16] ^= 0x40;
        if (n > 0) {
            ct[n - 1] ^= 1;
            ck_assert_int_eq(km__skey_open(g, nonce, aad, a, NULL, 0, ct, n, tag, out),
                             KM_E_INTEGRITY);
        }
    }
    km__skey_free(g);
    free(key);
    free(iv);
    free(pt);
    free(aad);
    free(kct);
    free(ktag);
}
END_TEST

START_TEST(test_prim_skey_agrees_with_one_shot)
{
    uint8_t key[32], nonce[12], aad[5] = "aad12", pt[40], ct[40], ct2[40], out[40];
    uint8_t tag[16], tag2[16], mac[32], mac2[32], w[64], w2[64];
    size_t wl = 0, wl2 = 0;
    km__skey *g = NULL, *h = NULL, *k = NULL;
    km_secret *un = NULL;
    const uint8_t *kb;
    size_t kl = 0;

    ck_assert_int_eq(km__random(key, sizeof key), KM_OK);
    ck_assert_int_eq(km__random(nonce, sizeof nonce), KM_OK);
    ck_assert_int_eq(km__random(pt, sizeof pt), KM_OK);
    /* AES-256-GCM over aad1 || aad2 equals the one-shot over the whole AAD */
    ck_assert_int_eq(km__skey_new(&g, KM__SKEY_GCM, "AES-256-GCM", key, sizeof key), KM_OK);
    ck_assert_int_eq(km__skey_seal(g, nonce, aad, 2, aad + 2, 3, pt, sizeof pt, ct, tag), KM_OK);
    ck_assert_int_eq(km__gcm_seal(key, nonce, aad, sizeof aad, pt, sizeof pt, ct2, tag2), KM_OK);
    ck_assert_mem_eq(ct, ct2, sizeof ct);
    ck_assert_mem_eq(tag, tag2, sizeof tag);
    ck_assert_int_eq(km__skey_open(g, nonce, aad, sizeof aad, NULL, 0, ct, sizeof ct, tag, out),
                     KM_OK);
    ck_assert_mem_eq(out, pt, sizeof pt);
    /* a bad tag: KM_E_INTEGRITY, output zeroed, the object still works */
    tag[0] ^= 1;
    ck_assert_int_eq(km__skey_open(g, nonce, aad, sizeof aad, NULL, 0, ct, sizeof ct, tag, out),
                     KM_E_INTEGRITY);
    ck_assert(tu_all_zero(out, sizeof out));
    tag[0] ^= 1;
    ck_assert_int_eq(km__skey_open(g, nonce, aad, sizeof aad, NULL, 0, ct, sizeof ct, tag, out),
                     KM_OK);
    /* a GCM key neither MACs nor wraps */
    ck_assert_int_eq(km__skey_mac(g, pt, sizeof pt, mac, sizeof mac), KM_E_USAGE);
    ck_assert_int_eq(km__skey_wrap(g, pt, 16, w, sizeof w, &wl), KM_E_USAGE);

    /* HMAC-SHA-256 equals the one-shot, many times over one object */
    ck_assert_int_eq(km__skey_new(&h, KM__SKEY_HMAC, "SHA256", key, sizeof key), KM_OK);
    ck_assert_int_eq(km__hmac_sha256(key, sizeof key, pt, sizeof pt, mac2), KM_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(km__skey_mac(h, pt, sizeof pt, mac, sizeof mac), KM_OK);
        ck_assert_mem_eq(mac, mac2, sizeof mac);
    }
    kb = km__skey_bytes(h, &kl);
    ck_assert_uint_eq(kl, sizeof key);
    ck_assert_mem_eq(kb, key, sizeof key);
    ck_assert_int_eq(km__skey_seal(h, nonce, NULL, 0, NULL, 0, pt, sizeof pt, ct, tag),
                     KM_E_USAGE);

    /* AES-KWP equals the one-shot and unwraps; an altered wrap fails */
    ck_assert_int_eq(km__skey_new(&k, KM__SKEY_KWP, NULL, key, sizeof key), KM_OK);
    ck_assert_int_eq(km__skey_wrap(k, pt, 20, NULL, 0, &wl), KM_E_BUFFER);
    ck_assert_uint_eq(wl, 32);
    ck_assert_int_eq(km__skey_wrap(k, pt, 20, w, sizeof w, &wl), KM_OK);
    ck_assert_int_eq(km__kwp_wrap(key, sizeof key, pt, 20, w2, sizeof w2, &wl2), KM_OK);
    ck_assert_uint_eq(wl, wl2);
    ck_assert_mem_eq(w, w2, wl);
    ck_assert_int_eq(km__skey_unwrap(k, w, wl, &un), KM_OK);
    ck_assert_uint_eq(km_secret_len(un), 20);
    ck_assert_mem_eq(km_secret_data(un), pt, 20);
    km_secret_free(un);
    un = NULL;
    w[3] ^= 1;
    ck_assert_int_eq(km__skey_unwrap(k, w, wl, &un), KM_E_INTEGRITY);
    ck_assert_ptr_null(un);
    ck_assert_int_eq(km__skey_unwrap(k, w, 12, &un), KM_E_INTEGRITY);

    km__skey_free(g);
    km__skey_free(h);
    km__skey_free(k);
    km__skey_free(NULL);
}
END_TEST

START_TEST(test_prim_ec_key_from_point_verifies_software_signatures)
{
    void *obj = sw_key(KM_KEY_EC_P384, KM_USAGE_SIGN | KM_USAGE_VERIFY);
    uint8_t spki[256], spki2[256], point[1 + 2 * 66], sig[128], raw[96], der[128];
    size_t spki_len = 0, spki2_len = 0, plen = 0, sig_len = 0, der_len = 0;
    km__pkey *a = NULL, *b = NULL, *c = NULL;

    ck_assert_int_eq(B->public_key(obj, spki, sizeof spki, &spki_len), KM_OK);
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, sizeof sig, &sig_len), KM_OK);
    /* the key from its SPKI, from its point, from x and y: one key */
    ck_assert_int_eq(km__pkey_from_spki(&a, spki, spki_len), KM_OK);
    ck_assert(km__pkey_is_ec(a, "P-384"));
    ck_assert(!km__pkey_is_ec(a, "P-256"));
    ck_assert(!km__pkey_is_rsa(a, 2048));
    ck_assert_int_eq(km__pkey_peer_ec_point(spki, spki_len, "P-384", point, sizeof point, &plen),
                     KM_OK);
    ck_assert_uint_eq(plen, 97);
    ck_assert_int_eq(km__pkey_peer_ec_point(spki, spki_len, "P-256", point, sizeof point, &plen),
                     KM_E_INVALID);
    ck_assert_int_eq(km__pkey_peer_ec_point(spki, spki_len, "P-384", point, sizeof point, &plen),
                     KM_OK);
    ck_assert_int_eq(km__pkey_from_ec_point(&b, "P-384", point, plen), KM_OK);
    ck_assert_int_eq(km__pkey_from_ec_xy(&c, "P-384", point + 1, 48, point + 49, 48), KM_OK);
    ck_assert_int_eq(km__pkey_spki(b, spki2, sizeof spki2, &spki2_len), KM_OK);
    ck_assert_uint_eq(spki2_len, spki_len);
    ck_assert_mem_eq(spki2, spki, spki_len);
    ck_assert_int_eq(km__pkey_spki(c, NULL, 0, &spki2_len), KM_E_BUFFER);
    ck_assert_uint_eq(spki2_len, spki_len);
    ck_assert_int_eq(km__pkey_spki(c, spki2, sizeof spki2, &spki2_len), KM_OK);
    ck_assert_mem_eq(spki2, spki, spki_len);
    /* a point off the curve does not make a key */
    {
        km__pkey *bad = NULL;
        point[40] ^= 1;
        ck_assert_int_eq(km__pkey_from_ec_point(&bad, "P-384", point, plen), KM_E_CRYPTO);
        ck_assert_ptr_null(bad);
        point[40] ^= 1;
    }

    /* DER and r || s: both verify, convert both ways, a changed message fails */
    ck_assert_int_eq(km__pkey_verify(b, "SHA384", 0, msg, sizeof msg, sig, sig_len), KM_OK);
    ck_assert_int_eq(km__ecdsa_der_to_raw(sig, sig_len, 48, raw), KM_OK);
    ck_assert_int_eq(km__pkey_verify(c, "SHA384", KM_SIG_P1363, msg, sizeof msg, raw, 96), KM_OK);
    ck_assert_int_eq(km__ecdsa_raw_to_der(raw, 48, der, sizeof der, &der_len), KM_OK);
    ck_assert_uint_eq(der_len, sig_len);
    ck_assert_mem_eq(der, sig, sig_len);
    ck_assert_int_eq(km__pkey_verify(a, "SHA384", 0, msg, sizeof msg - 1, sig, sig_len),
                     KM_E_VERIFY);
    ck_assert_int_eq(km__pkey_verify(a, "SHA384", KM_SIG_P1363, msg, sizeof msg, raw, 95),
                     KM_E_VERIFY);
    ck_assert_int_eq(km__pkey_verify(a, "SHA384", 0, msg, sizeof msg, sig, 0), KM_E_VERIFY);
    ck_assert_int_eq(km__ecdsa_raw_to_der(raw, 48, der, 10, &der_len), KM_E_CRYPTO);
    ck_assert_int_eq(km__ecdsa_der_to_raw(sig, sig_len - 1, 48, raw), KM_E_CRYPTO);
    /* and the software backend verifies through the same function */
    ck_assert_int_eq(B->verify(obj, KM_SIG_P1363, msg, sizeof msg, (uint8_t *)raw, 96), KM_OK);

    km__pkey_free(a);
    km__pkey_free(b);
    km__pkey_free(c);
    km__pkey_free(NULL);
    B->unload(NULL, obj);
}
END_TEST

/* The modulus and exponent of an RSA SPKI (test side, through OpenSSL). */
static void rsa_ne(const uint8_t *spki, size_t len, uint8_t *n, size_t *n_len, uint8_t *e,
                   size_t *e_len)
{
    const unsigned char *p = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    BIGNUM *bn = NULL, *be = NULL;

    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn), 1);
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &be), 1);
    *n_len = (size_t)BN_bn2bin(bn, n);
    *e_len = (size_t)BN_bn2bin(be, e);
    BN_free(bn);
    BN_free(be);
    EVP_PKEY_free(k);
}

START_TEST(test_prim_rsa_key_from_modulus_verifies_pss)
{
    void *obj = sw_key(KM_KEY_RSA_2048, KM_USAGE_SIGN | KM_USAGE_VERIFY);
    uint8_t spki[512], spki2[512], sig[256], n[256], e[8], d[64];
    size_t spki_len = 0, spki2_len = 0, sig_len = 0, n_len = 0, e_len = 0, d_len = 0;
    km__pkey *k = NULL;

    ck_assert_int_eq(B->public_key(obj, spki, sizeof spki, &spki_len), KM_OK);
    ck_assert_int_eq(B->sign(obj, 0, msg, sizeof msg, sig, sizeof sig, &sig_len), KM_OK);
    rsa_ne(spki, spki_len, n, &n_len, e, &e_len);
    ck_assert_int_eq(km__pkey_from_rsa(&k, n, n_len, e, e_len), KM_OK);
    ck_assert(km__pkey_is_rsa(k, 2048));
    ck_assert(!km__pkey_is_ec(k, "P-256"));
    ck_assert_uint_eq(km__pkey_size(k), 256);
    ck_assert_int_eq(km__pkey_spki(k, spki2, sizeof spki2, &spki2_len), KM_OK);
    ck_assert_uint_eq(spki2_len, spki_len);
    ck_assert_mem_eq(spki2, spki, spki_len);
    ck_assert_int_eq(km__pkey_verify(k, "SHA256", 0, msg, sizeof msg, sig, sig_len), KM_OK);
    sig[10] ^= 1;
    ck_assert_int_eq(km__pkey_verify(k, "SHA256", 0, msg, sizeof msg, sig, sig_len), KM_E_VERIFY);
    /* P1363 is for EC keys only */
    ck_assert_int_eq(km__pkey_verify(k, "SHA256", KM_SIG_P1363, msg, sizeof msg, sig, sig_len),
                     KM_E_INVALID);
    /* not SPKI, not a certificate */
    {
        km__pkey *bad = NULL;
        ck_assert_int_eq(km__pkey_from_spki(&bad, n, n_len), KM_E_INVALID);
        ck_assert_int_eq(km__pkey_from_cert(&bad, spki, spki_len), KM_E_CORRUPT);
        ck_assert_ptr_null(bad);
    }
    /* digests: SHA-256 of nothing; an unknown digest */
    ck_assert_int_eq(km__digest("SHA256", NULL, 0, d, sizeof d, &d_len), KM_OK);
    ck_assert_uint_eq(d_len, 32);
    ck_assert_uint_eq(d[0], 0xe3);
    ck_assert_uint_eq(d[31], 0x55);
    ck_assert_int_eq(km__digest("SHA512", msg, sizeof msg, d, 32, &d_len), KM_E_INTERNAL);
    ck_assert_int_eq(km__digest("NO-SUCH-DIGEST", msg, sizeof msg, d, sizeof d, &d_len),
                     KM_E_CRYPTO);
    km__pkey_free(k);
    B->unload(NULL, obj);
}
END_TEST

/* km__err_over: the core's words over a backend's error keep the backend's
 * native code and message, and only when the backend recorded that code. */
START_TEST(test_prim_err_over_keeps_the_backend_reason)
{
    char big[600];

    km_backend_error(KM_E_INTEGRITY, KM_NATIVE_KMIP, 0x100, "kmip decrypt: General Failure");
    ck_assert_int_eq(km__err_over(KM_E_INTEGRITY, "ciphertext failed authentication"),
                     KM_E_INTEGRITY);
    ck_assert_str_eq(km_error_last()->message,
                     "ciphertext failed authentication (kmip decrypt: General Failure)");
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_KMIP);
    ck_assert_uint_eq(km_error_last()->native, 0x100);
    /* another code recorded before: not the backend's account of this failure */
    km_backend_error(KM_E_NOTFOUND, KM_NATIVE_KMIP, 1, "kmip get: Item Not Found");
    km__err_over(KM_E_INTEGRITY, "ciphertext failed authentication");
    ck_assert_str_eq(km_error_last()->message, "ciphertext failed authentication");
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_NONE);
    /* a long backend message is shortened, never overflows */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    km_backend_error(KM_E_VERIFY, KM_NATIVE_PKCS11, 0xc0, "%s", big);
    km__err_over(KM_E_VERIFY, "signature does not verify");
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "signature does not verify (xxx"));
    ck_assert_int_eq(km_error_last()->message[strlen(km_error_last()->message) - 1], ')');
    ck_assert_uint_eq(km_error_last()->native, 0xc0);
}
END_TEST

/* X25519 (the key-pair keyslots' primitive): RFC 7748 section 6.1's
 * exchange, a small-order peer refused, and the wrap to a public key opens
 * only with its private key and the ephemeral key it was made with. */
START_TEST(test_prim_x25519_rfc7748_and_wrap)
{
    static const uint8_t a_priv[32] = {
        0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66,
        0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9,
        0x2c, 0x2a };
    static const uint8_t b_pub[32] = {
        0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2, 0xec, 0xe4, 0x35,
        0x37, 0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d, 0xad, 0xfc, 0x7e, 0x14, 0x6f, 0x88,
        0x2b, 0x4f };
    static const uint8_t shared[32] = {
        0x4a, 0x5d, 0x9d, 0x5b, 0xa4, 0xce, 0x2d, 0xe1, 0x72, 0x8e, 0x3b, 0xf4, 0x80, 0x35, 0x0f,
        0x25, 0xe0, 0x7e, 0x21, 0xc9, 0x47, 0xd1, 0x9e, 0x33, 0x76, 0xf0, 0x9b, 0x3c, 0x1e, 0x16,
        0x17, 0x42 };
    uint8_t out[32], zero[32] = { 0 }, priv[32], pub[32], priv2[32], pub2[32], eph[32];
    uint8_t plain[32], wrapped[40], back[40];
    size_t wl = 0, bl = 0;

    OK(km__x25519_derive(a_priv, b_pub, out));
    ck_assert_mem_eq(out, shared, 32);
    ck_assert_int_eq(km__x25519_derive(a_priv, zero, out), KM_E_CRYPTO);
    ck_assert_mem_eq(out, zero, 32);
    OK(km__x25519_keygen(priv, pub));
    OK(km__x25519_keygen(priv2, pub2));
    ck_assert_int_ne(memcmp(pub, pub2, 32), 0);
    memset(plain, 0x5a, sizeof plain);
    OK(km__x25519_kwp_wrap(pub, plain, sizeof plain, eph, wrapped, sizeof wrapped, &wl));
    ck_assert_uint_eq(wl, 40);
    OK(km__x25519_kwp_unwrap(priv, pub, eph, wrapped, wl, back, sizeof back, &bl));
    ck_assert_uint_eq(bl, 32);
    ck_assert_mem_eq(back, plain, 32);
    ck_assert_int_eq(km__x25519_kwp_unwrap(priv2, pub, eph, wrapped, wl, back, sizeof back, &bl),
                     KM_E_INTEGRITY);
    eph[0] ^= 1;
    ck_assert_int_ne(km__x25519_kwp_unwrap(priv, pub, eph, wrapped, wl, back, sizeof back, &bl),
                     KM_OK);
}
END_TEST

/* The striped data-path lock (prim.c km__br_*): readers on every stripe never
 * see a writer's update half done, and a writer waits for readers of every
 * stripe. The writer keeps a == b except inside its critical section. */
static km__brlock br;
static volatile unsigned br_a, br_b;
static unsigned br_torn;
static int br_stop; /* read and written with __atomic builtins */

static void *br_reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&br_stop, __ATOMIC_ACQUIRE)) {
        unsigned st = km__br_rdlock(&br), a = br_a, b;
        sched_yield();
        b = br_b;
        if (a != b)
            __atomic_add_fetch(&br_torn, 1, __ATOMIC_RELAXED);
        km__br_rdunlock(&br, st);
        usleep(20); /* let the writer in (readers are preferred, as with pthread rwlocks) */
    }
    return NULL;
}

START_TEST(test_prim_brlock_excludes_writer)
{
    pthread_t t[6];
    int i;
    km__br_init(&br);
    br_a = br_b = 0;
    br_torn = 0;
    __atomic_store_n(&br_stop, 0, __ATOMIC_RELEASE);
    for (i = 0; i < 6; i++) /* more threads than stripes: some share one */
        ck_assert_int_eq(pthread_create(&t[i], NULL, br_reader, NULL), 0);
    for (i = 0; i < 300; i++) {
        km__br_wrlock(&br);
        br_a++;
        sched_yield();
        br_b++;
        km__br_wrunlock(&br);
    }
    __atomic_store_n(&br_stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    km__br_destroy(&br);
    ck_assert_uint_eq(br_torn, 0);
    ck_assert_uint_eq(br_a, 300);
}
END_TEST

static atomic_int brw_in;

static void *br_writer(void *arg)
{
    km__br_wrlock(arg);
    atomic_store(&brw_in, 1);
    km__br_wrunlock(arg);
    return NULL;
}

/* A reader may read-lock again while a writer waits (readers are preferred, as
 * with glibc's default rwlock: km__brlock replaced one): no deadlock, and the
 * writer gets in only once both holds are released. */
START_TEST(test_prim_brlock_reader_reenters_with_writer_waiting)
{
    km__brlock b;
    pthread_t w;
    unsigned s1, s2;
    int i;

    km__br_init(&b);
    atomic_store(&brw_in, 0);
    s1 = km__br_rdlock(&b);
    ck_assert_int_eq(pthread_create(&w, NULL, br_writer, &b), 0);
    for (i = 0; i < 50; i++) {
        sched_yield();
        s2 = km__br_rdlock(&b); /* the writer is waiting: this must not block */
        ck_assert_uint_eq(s1, s2);
        ck_assert_int_eq(atomic_load(&brw_in), 0);
        km__br_rdunlock(&b, s2);
    }
    usleep(20000);
    ck_assert_int_eq(atomic_load(&brw_in), 0);
    km__br_rdunlock(&b, s1);
    pthread_join(w, NULL);
    ck_assert_int_eq(atomic_load(&brw_in), 1);
    km__br_destroy(&b);
}
END_TEST

static double brw_cpu_s;

static void *br_writer_cpu(void *arg)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    km__br_wrlock(arg);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    atomic_store(&brw_in, 1);
    km__br_wrunlock(arg);
    brw_cpu_s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    return NULL;
}

/* A reader holding the lock for long (a slow HSM or TPM call under a key's
 * data-path lock) does not make the waiting writer burn a CPU: the writer
 * backs off to sleeps. It waited 600 ms; spinning it used about all of it. */
START_TEST(test_prim_brlock_waiting_writer_sleeps)
{
    km__brlock b;
    pthread_t w;
    unsigned s;

    km__br_init(&b);
    atomic_store(&brw_in, 0);
    s = km__br_rdlock(&b);
    ck_assert_int_eq(pthread_create(&w, NULL, br_writer_cpu, &b), 0);
    usleep(600000);
    ck_assert_int_eq(atomic_load(&brw_in), 0);
    km__br_rdunlock(&b, s);
    pthread_join(w, NULL);
    ck_assert_int_eq(atomic_load(&brw_in), 1);
    ck_assert_msg(brw_cpu_s < 0.15, "the waiting writer used %.3f s of CPU in 0.6 s", brw_cpu_s);
    km__br_destroy(&b);
}
END_TEST

static Suite *prim_suite(void)
{
    Suite *s = suite_create("prim");
    TCase *tc = tcase_create("prim");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_prim_keytype_table);
    tcase_add_test(tc, test_prim_err_over_keeps_the_backend_reason);
    tcase_add_test(tc, test_prim_skey_agrees_with_one_shot);
    tcase_add_test(tc, test_prim_ec_key_from_point_verifies_software_signatures);
    tcase_add_test(tc, test_prim_rsa_key_from_modulus_verifies_pss);
    tcase_add_test(tc, test_prim_x25519_rfc7748_and_wrap);
    tcase_add_test(tc, test_prim_brlock_excludes_writer);
    tcase_add_test(tc, test_prim_skey_gcm_reused_context_nonces);
    tcase_add_test(tc, test_prim_brlock_reader_reenters_with_writer_waiting);
    tcase_add_test(tc, test_prim_brlock_waiting_writer_sleeps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (km_init() != KM_OK)
        return EXIT_FAILURE;
    sr = srunner_create(prim_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
