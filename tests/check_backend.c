/* check_backend.c - the backend vtable: registration rules and the core's
 * dispatch, proven with a fake backend that counts its calls. The fake is a
 * test double for the dispatch only; it is never used in place of a backend. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>
#include <km/sys/backend.h>

#include "testutil.h"

static struct {
    int open, close, generate, load, unload, seal, open_aead, sign, verify, destroy;
    uint8_t last_nonce[12];
    uint32_t last_version;
    int fail_generate;
    int short_sig;
} calls;

static int fake_open(void **out_state, const char *config)
{
    (void)config;
    calls.open++;
    *out_state = &calls;
    return KM_OK;
}
static void fake_close(void *state)
{
    ck_assert_ptr_eq(state, &calls);
    calls.close++;
}
static int fake_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    (void)state;
    calls.generate++;
    if (calls.fail_generate)
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_PKCS11, 0x30 /* CKR_DEVICE_ERROR */,
                                "fake device error");
    calls.last_version = spec->key_version;
    return km_secret_from(out_ref, "fake-ref", 8);
}
static int fake_destroy(void *state, const km_backend_keyspec *spec, const uint8_t *ref, size_t len)
{
    (void)state; (void)spec; (void)ref; (void)len;
    calls.destroy++;
    return KM_OK;
}
static int fake_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref, size_t len,
                     void **out_obj)
{
    (void)state; (void)spec;
    ck_assert_uint_eq(len, 8);
    ck_assert_mem_eq(ref, "fake-ref", 8);
    calls.load++;
    *out_obj = &calls.load;
    return KM_OK;
}
static void fake_unload(void *state, void *obj)
{
    (void)state; (void)obj;
    calls.unload++;
}
/* "encrypts" by copying: a dispatch probe, not a cipher */
static int fake_seal(void *obj, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                     const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                     uint8_t *out, uint8_t tag[16])
{
    (void)obj; (void)aad2; (void)aad2_len;
    ck_assert_uint_eq(aad1_len, KM_CIPHERTEXT_HEADER);
    ck_assert_mem_eq(aad1 + 24, nonce, 12); /* the header carries the nonce the core drew */
    calls.seal++;
    memcpy(calls.last_nonce, nonce, 12);
    memcpy(out, in, in_len);
    memset(tag, 0x77, 16);
    return KM_OK;
}
static int fake_open_aead(void *obj, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                          const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                          const uint8_t tag[16], uint8_t *out)
{
    (void)obj; (void)nonce; (void)aad1; (void)aad1_len; (void)aad2; (void)aad2_len;
    calls.open_aead++;
    if (tag[0] != 0x77)
        return KM_E_INTEGRITY;
    memcpy(out, in, in_len);
    return KM_OK;
}
static int fake_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
                     size_t cap, size_t *sig_len)
{
    (void)obj; (void)flags; (void)msg; (void)msg_len;
    calls.sign++;
    if (calls.short_sig) { /* a lying backend: claims more than fits */
        *sig_len = cap + 100;
        return KM_OK;
    }
    memset(sig, 0x11, 8);
    *sig_len = 8;
    return KM_OK;
}

static const km_backend_ops fake_ops = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "fake",
    .caps = KM_BACKEND_CAP_SYMMETRIC | KM_BACKEND_CAP_ASYMMETRIC,
    .open = fake_open,
    .close = fake_close,
    .generate = fake_generate,
    .destroy = fake_destroy,
    .load = fake_load,
    .unload = fake_unload,
    .aead_seal = fake_seal,
    .aead_open = fake_open_aead,
    .sign = fake_sign,
    /* verify, mac, wrap, ... left NULL: unsupported */
};

static char *dir;
static km_ctx *ctx;

static void setup(void)
{
    static int registered;
    memset(&calls, 0, sizeof calls);
    if (!registered) {
        ck_assert_int_eq(km_backend_register(&fake_ops), KM_OK);
        registered = 1;
    }
    tu_setup(&dir, &ctx, NULL);
}

static void teardown(void)
{
    tu_teardown(&dir, &ctx);
}

static km_key *fake_key(const char *name, km_key_type type, uint32_t usage)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    int rc;
    o.protection = "fake";
    o.usage = usage;
    rc = km_key_create(&k, ctx, name, type, &o);
    ck_assert_msg(rc == KM_OK, "create: %s", km_error_last()->message);
    return k;
}

START_TEST(test_backend_register_rules)
{
    km_backend_ops o = fake_ops;
    ck_assert_int_eq(km_backend_register(NULL), KM_E_INVALID);
    o.version = 0;
    ck_assert_int_eq(km_backend_register(&o), KM_E_INVALID);
    o.version = KM_BACKEND_OPS_VERSION + 1;
    ck_assert_int_eq(km_backend_register(&o), KM_E_UNSUPPORTED);
    o.version = KM_BACKEND_OPS_VERSION;
    ck_assert_int_eq(km_backend_register(&o), KM_E_EXISTS); /* "fake" is taken */
    o.name = "Bad Name";
    ck_assert_int_eq(km_backend_register(&o), KM_E_INVALID);
    o.name = "fake2";
    o.load = NULL;
    ck_assert_int_eq(km_backend_register(&o), KM_E_INVALID);
    o.load = fake_load;
    /* the table is copied: changing ours after registration changes nothing */
    ck_assert_int_eq(km_backend_register(&o), KM_OK);
    o.generate = NULL;
    ck_assert_int_eq(km_backend_unregister("fake2"), KM_OK);
    ck_assert_int_eq(km_backend_unregister("fake2"), KM_E_NOTFOUND);
    ck_assert_int_eq(km_backend_unregister("software"), KM_E_BUSY);
    ck_assert_int_eq(km_backend_unregister(NULL), KM_E_INVALID);
}
END_TEST

/* km_backend_names: built-in backends first (what configure built, config.h),
 * then registered ones in order; a count when the array is short; bad args. */
START_TEST(test_backend_names_lists_builtin_and_registered)
{
    char names[16][KM_BACKEND_NAME_MAX + 1];
    size_t n = 99, n2 = 0, i;
    int seen_fake = -1, seen_fake3 = -1;
    km_backend_ops o = fake_ops;

    ck_assert_int_eq(km_backend_names(NULL, 0, &n), KM_OK);
    ck_assert_uint_ge(n, 2); /* software and fake (setup) at least */
    ck_assert_int_eq(km_backend_names(NULL, 1, &n2), KM_E_INVALID);
    ck_assert_int_eq(km_backend_names(names, 16, NULL), KM_E_INVALID);
    o.name = "fake3";
    ck_assert_int_eq(km_backend_register(&o), KM_OK);
    ck_assert_int_eq(km_backend_names(names, 16, &n2), KM_OK);
    ck_assert_uint_eq(n2, n + 1);
    ck_assert_str_eq(names[0], "software");
    for (i = 0; i < n2; i++) {
        if (strcmp(names[i], "fake") == 0) seen_fake = (int)i;
        if (strcmp(names[i], "fake3") == 0) seen_fake3 = (int)i;
    }
    ck_assert_int_ge(seen_fake, 1);
    ck_assert_int_eq(seen_fake3, (int)n2 - 1); /* registered last, listed last */
#ifdef KM_HAVE_PKCS11
    ck_assert_int_eq(strcmp(names[1], "pkcs11"), 0);
#endif
    /* a short array: filled up to cap, the count is the whole */
    memset(names, 'x', sizeof names);
    ck_assert_int_eq(km_backend_names(names, 1, &n), KM_OK);
    ck_assert_uint_eq(n, n2);
    ck_assert_str_eq(names[0], "software");
    ck_assert_int_eq(names[1][0], 'x');
    ck_assert_int_eq(km_backend_unregister("fake3"), KM_OK);
    ck_assert_int_eq(km_backend_names(NULL, 0, &n), KM_OK);
    ck_assert_uint_eq(n, n2 - 1);
}
END_TEST

START_TEST(test_backend_dispatch_and_nonces)
{
    km_key *k = fake_key("f1", KM_KEY_AES_256_GCM, 0);
    uint8_t ct[100], pt[100], first[12];
    size_t n, m;
    ck_assert_int_eq(calls.open, 1);
    ck_assert_int_eq(calls.generate, 1);
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"abc", 3, NULL, 0, ct, sizeof ct, &n), KM_OK);
    ck_assert_int_eq(calls.load, 1);
    ck_assert_int_eq(calls.seal, 1);
    memcpy(first, calls.last_nonce, 12);
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"abc", 3, NULL, 0, ct, sizeof ct, &n), KM_OK);
    ck_assert_int_eq(calls.load, 1); /* loaded once, reused */
    ck_assert(memcmp(first, calls.last_nonce, 12) != 0); /* a fresh nonce per call */
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_OK);
    ck_assert_int_eq(calls.open_aead, 1);
    ck_assert_mem_eq(pt, "abc", 3);
    ct[n - 16] = 0;
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(pt, 3));
    km_key_free(k);
    km_close(ctx);
    ctx = NULL;
    ck_assert_int_eq(calls.unload, 1);
    ck_assert_int_eq(calls.close, 1);
    ctx = tu_vault(dir);
}
END_TEST

/* The core refuses before dispatch: the backend never sees a refused call. */
START_TEST(test_backend_refused_never_dispatched)
{
    km_key *k = fake_key("f2", KM_KEY_AES_256_GCM, KM_USAGE_DECRYPT);
    km_key *s = fake_key("f3", KM_KEY_EC_P256, 0);
    uint8_t ct[100], sig[KM_SIGNATURE_MAX];
    size_t n;
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"abc", 3, NULL, 0, ct, sizeof ct, &n), KM_E_USAGE);
    ck_assert_int_eq(km_sign(k, 0, (const uint8_t *)"abc", 3, sig, sizeof sig, &n), KM_E_USAGE);
    ck_assert_int_eq(calls.seal + calls.sign + calls.load, 0);
    /* optional operations left NULL are KM_E_UNSUPPORTED, and nothing is called */
    ck_assert_int_eq(km_verify(s, 0, KM_SIG_RAW, (const uint8_t *)"abc", 3, sig, 8), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_key_public_export(s, 0, KM_MATERIAL_PEM, ct, sizeof ct, &n), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_sign(s, 0, (const uint8_t *)"abc", 3, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(calls.sign, 1);
    ck_assert_uint_eq(n, KM_TAG_HEADER + 8);
    km_key_free(k);
    km_key_free(s);
}
END_TEST

/* A backend that claims to have written more than the buffer holds is caught. */
START_TEST(test_backend_lying_length_refused)
{
    km_key *s = fake_key("liar", KM_KEY_EC_P256, 0);
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t n = 0;
    calls.short_sig = 1;
    ck_assert_int_eq(km_sign(s, 0, (const uint8_t *)"abc", 3, sig, sizeof sig, &n), KM_E_BACKEND);
    ck_assert_uint_eq(n, 0);
    km_key_free(s);
}
END_TEST

/* A backend failure carries its native code, and nothing is written. */
START_TEST(test_backend_error_native_code)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    o.protection = "fake";
    calls.fail_generate = 1;
    ck_assert_int_eq(km_key_create(&k, ctx, "nope", KM_KEY_AES_256_GCM, &o), KM_E_BACKEND);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_PKCS11);
    ck_assert_uint_eq(km_error_last()->native, 0x30);
    ck_assert_int_eq(km_key_open(&k, ctx, "nope"), KM_E_NOTFOUND);
    calls.fail_generate = 0;
    /* rotation generates a new reference through the backend */
    k = fake_key("rot", KM_KEY_AES_256_GCM, 0);
    ck_assert_int_eq(km_key_rotate(k, NULL), KM_OK);
    ck_assert_int_eq(calls.generate, 3);
    km_key_free(k);
}
END_TEST

static Suite *backend_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("backend", NULL, &tc, 60, setup, teardown);

    tcase_add_test(tc, test_backend_register_rules);
    tcase_add_test(tc, test_backend_names_lists_builtin_and_registered);
    tcase_add_test(tc, test_backend_dispatch_and_nonces);
    tcase_add_test(tc, test_backend_refused_never_dispatched);
    tcase_add_test(tc, test_backend_lying_length_refused);
    tcase_add_test(tc, test_backend_error_native_code);
    return s;
}

int main(void)
{
    return tu_run(backend_suite());
}
