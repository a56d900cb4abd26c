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

static Suite *ops_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("ops", NULL, &tc, 120, setup, teardown);

    tcase_add_loop_test(tc, test_ops_cmac_generated_key, 0, 3);
    tcase_add_test(tc, test_ops_cmac_import_rules);
    tcase_add_test(tc, test_ops_cmac_policy_forbids);
    tcase_add_test(tc, test_ops_random);
    return s;
}

int main(void)
{
    return tu_run(ops_suite());
}
