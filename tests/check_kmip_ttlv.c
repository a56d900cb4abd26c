/*
 * check_kmip_ttlv.c - the KMIP TTLV codec (src/prim/kmip_ttlv.c) and the kmip
 * backend's request builders (backends/kmip/kmip_msg.c): known answers
 * against bytes made by PyKMIP's own encoder (tests/kmip/vectors.txt, made by
 * tests/kmip/capture_vectors.py), round trips, every truncation and bit flip
 * of those messages refused or decoded consistently, and the limits.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/kmip/kmip_int.h"

#ifndef KM_KMIP_VECTORS
#define KM_KMIP_VECTORS "tests/kmip/vectors.txt"
#endif

#define MAX_VEC 32

typedef struct vec {
    char name[64];
    uint8_t *b;
    size_t len;
} vec;

static vec vecs[MAX_VEC];
static size_t nvec;

static void load_vectors(void)
{
    FILE *f;
    char line[8192];

    if (nvec > 0)
        return;
    f = fopen(KM_KMIP_VECTORS, "r");
    ck_assert_msg(f != NULL, "cannot open %s", KM_KMIP_VECTORS);
    while (fgets(line, sizeof line, f) != NULL) {
        char *sp = strchr(line, ' ');
        size_t hl, i;
        vec *v;
        if (sp == NULL)
            continue;
        ck_assert(nvec < MAX_VEC);
        v = &vecs[nvec++];
        *sp = '\0';
        ck_assert(strlen(line) < sizeof v->name);
        memcpy(v->name, line, strlen(line) + 1);
        hl = strcspn(sp + 1, "\r\n");
        ck_assert(hl % 2 == 0);
        v->len = hl / 2;
        v->b = malloc(v->len);
        ck_assert_ptr_nonnull(v->b);
        for (i = 0; i < v->len; i++) {
            unsigned x;
            ck_assert(sscanf(sp + 1 + 2 * i, "%2x", &x) == 1);
            v->b[i] = (uint8_t)x;
        }
    }
    fclose(f);
    ck_assert_uint_ge(nvec, 15);
}

static const vec *get_vec(const char *name)
{
    size_t i;
    load_vectors();
    for (i = 0; i < nvec; i++)
        if (strcmp(vecs[i].name, name) == 0)
            return &vecs[i];
    ck_abort_msg("no vector %s", name);
    return NULL;
}

/* Decodes and encodes again: the same bytes. */
static void reencode_same(const uint8_t *b, size_t len, const km__ttlv_tree *t)
{
    km__ttlv_enc e;
    const uint8_t *out;
    size_t out_len;

    km__ttlv_enc_init(&e, 0);
    ck_assert_int_eq(km__ttlv_put_item(&e, t, 0), KM_OK);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &out, &out_len), KM_OK);
    ck_assert_uint_eq(out_len, len);
    ck_assert(memcmp(out, b, len) == 0);
    km__ttlv_enc_free(&e);
}

START_TEST(test_kmip_ttlv_vectors_decode_and_reencode)
{
    size_t i;

    load_vectors();
    for (i = 0; i < nvec; i++) {
        km__ttlv_tree t;
        ck_assert_msg(km__ttlv_decode(vecs[i].b, vecs[i].len, NULL, &t) == KM_OK, "%s: %s",
                      vecs[i].name, t.why ? t.why : "");
        ck_assert_uint_ge(t.n, 8);
        reencode_same(vecs[i].b, vecs[i].len, &t);
        km__ttlv_tree_free(&t);
    }
}
END_TEST

/* A request built by a kmip_msg.c builder equals PyKMIP's bytes. */
static void same_as(const char *name, km__ttlv_enc *e)
{
    const vec *v = get_vec(name);
    const uint8_t *out;
    size_t len;

    ck_assert_int_eq(km__ttlv_enc_finish(e, &out, &len), KM_OK);
    ck_assert_msg(len == v->len && memcmp(out, v->b, len) == 0, "%s differs from PyKMIP's", name);
    km__ttlv_enc_free(e);
}

static const uint8_t PT[] = "plaintext of 23 bytes..";
static const uint8_t AAD[] = "libkm header and aad";

static void test_iv(uint8_t iv[12])
{
    int i;
    for (i = 0; i < 12; i++)
        iv[i] = (uint8_t)(0xA0 + i);
}

static void test_ct(uint8_t ct[23])
{
    int i;
    for (i = 0; i < 23; i++)
        ct[i] = (uint8_t)((i * 7 + 3) & 0xff); /* as capture_vectors.py */
}

START_TEST(test_kmip_ttlv_requests_match_pykmip)
{
    km__ttlv_enc e;
    uint8_t iv[12], ct[23], tag[16];
    int i;

    test_iv(iv);
    test_ct(ct);
    for (i = 0; i < 16; i++)
        tag[i] = (uint8_t)(0xF0 + i);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 1, 4, KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT,
                        "libkm-test", 10, 0);
    same_as("create_req_14", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 2, 0, KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT,
                        "libkm-test", 10, 0);
    same_as("create_req_20", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 1, 4, KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT,
                        "libkm-test", 10, KM__KMIP_PROTECT_SENSITIVE);
    same_as("create_sensitive_req_14", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 2, 0, KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT,
                        "libkm-test", 10, KM__KMIP_PROTECT_SENSITIVE);
    same_as("create_sensitive_req_20", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_activate(&e, 1, 4, "1", 1);
    same_as("activate_req", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_discover(&e, -1, -1);
    same_as("discover_req", &e);
    /* the AAD in two parts (libkm's header, then the caller's) */
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_encrypt(&e, 1, 4, "1", 1, PT, 23, iv, 12, AAD, 6, AAD + 6, 14);
    same_as("encrypt_req", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_decrypt(&e, 1, 4, "1", 1, ct, 23, iv, 12, AAD, 20, NULL, 0, tag, 16);
    same_as("decrypt_req", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_revoke_destroy(&e, 1, 4, "1", 1);
    same_as("revoke_destroy_req", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_get(&e, 1, 4, "1", 1);
    same_as("get_req", &e);
    {
        uint8_t key[32];
        for (i = 0; i < 32; i++)
            key[i] = (uint8_t)i;
        km__ttlv_enc_init(&e, 0);
        km__kmip_msg_register(&e, 1, 4, KM__KMIP_ALG_HMAC_SHA256,
                              KM__KMIP_USAGE_MAC_GENERATE | KM__KMIP_USAGE_MAC_VERIFY,
                              "libkm-test", 10, key, 32, 0);
        same_as("register_hmac_req_14", &e);
        km__ttlv_enc_init(&e, 0);
        km__kmip_msg_register(&e, 2, 0, KM__KMIP_ALG_HMAC_SHA256,
                              KM__KMIP_USAGE_MAC_GENERATE | KM__KMIP_USAGE_MAC_VERIFY,
                              "libkm-test", 10, key, 32, 0);
        same_as("register_hmac_req_20", &e);
        km__ttlv_enc_init(&e, 0);
        km__kmip_msg_register(&e, 1, 4, KM__KMIP_ALG_HMAC_SHA256,
                              KM__KMIP_USAGE_MAC_GENERATE | KM__KMIP_USAGE_MAC_VERIFY,
                              "libkm-test", 10, key, 32, KM__KMIP_PROTECT_SENSITIVE);
        same_as("register_hmac_sensitive_req_14", &e);
        km__ttlv_enc_init(&e, 0);
        km__kmip_msg_register(&e, 2, 0, KM__KMIP_ALG_HMAC_SHA256,
                              KM__KMIP_USAGE_MAC_GENERATE | KM__KMIP_USAGE_MAC_VERIFY,
                              "libkm-test", 10, key, 32, KM__KMIP_PROTECT_SENSITIVE);
        same_as("register_hmac_sensitive_req_20", &e);
    }
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_mac(&e, 1, 4, "1", 1, PT, 23);
    same_as("mac_req", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create_key_pair(&e, 1, 4, 2048, "libkm-test", 10, KM__KMIP_PROTECT_SENSITIVE);
    same_as("create_key_pair_req_14", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create_key_pair(&e, 2, 0, 2048, "libkm-test", 10, KM__KMIP_PROTECT_SENSITIVE);
    same_as("create_key_pair_req_20", &e);
    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_sign(&e, 1, 4, "1", 1, PT, 23, 0);
    same_as("sign_req", &e);
}
END_TEST

/* Extractable = false (no PyKMIP vector: PyKMIP 0.10 does not know it): in
 * 2.0 a Boolean in the Attributes after Sensitive, in 1.4 an Attribute named
 * "Extractable" with a false Boolean value. */
START_TEST(test_kmip_ttlv_create_not_extractable)
{
    km__ttlv_limits lim = KM__TTLV_LIMITS_DEFAULT;
    km__ttlv_enc e;
    km__ttlv_tree t;
    const uint8_t *out;
    const char *name;
    size_t len, name_len;
    int v, bi, pl, at, i, found = 0;

    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 2, 0, KM__KMIP_USAGE_ENCRYPT, "n", 1,
                        KM__KMIP_PROTECT_SENSITIVE | KM__KMIP_PROTECT_NOT_EXTRACTABLE);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &out, &len), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(out, len, &lim, &t), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, 0, KM__KMIP_TAG_BATCH_ITEM, &bi), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, bi, KM__KMIP_TAG_REQUEST_PAYLOAD, &pl), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, pl, KM__KMIP_TAG_ATTRIBUTES, &at), KM_OK);
    ck_assert_int_eq(km__ttlv_get_bool(&t, at, KM__KMIP_TAG_SENSITIVE, &v), KM_OK);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(km__ttlv_get_bool(&t, at, KM__KMIP_TAG_EXTRACTABLE, &v), KM_OK);
    ck_assert_int_eq(v, 0);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);

    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_create(&e, 1, 4, KM__KMIP_USAGE_ENCRYPT, "n", 1,
                        KM__KMIP_PROTECT_NOT_EXTRACTABLE);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &out, &len), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(out, len, &lim, &t), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, 0, KM__KMIP_TAG_BATCH_ITEM, &bi), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, bi, KM__KMIP_TAG_REQUEST_PAYLOAD, &pl), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, pl, KM__KMIP_TAG_TEMPLATE_ATTRIBUTE, &at), KM_OK);
    for (i = 0; (v = km__ttlv_child(&t, at, KM__KMIP_TAG_ATTRIBUTE, i)) >= 0; i++) {
        int b = -1;
        ck_assert_int_eq(km__ttlv_get_text(&t, v, KM__KMIP_TAG_ATTRIBUTE_NAME, &name,
                                           &name_len), KM_OK);
        ck_assert(name_len != 9 || memcmp(name, "Sensitive", 9) != 0); /* not asked for */
        if (name_len == 11 && memcmp(name, "Extractable", 11) == 0) {
            ck_assert_int_eq(km__ttlv_get_bool(&t, v, KM__KMIP_TAG_ATTRIBUTE_VALUE, &b), KM_OK);
            ck_assert_int_eq(b, 0);
            found++;
        }
    }
    ck_assert_int_eq(found, 1);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);
}
END_TEST

/* Sign with libkm's PSS fields (no PyKMIP vector: PyKMIP 0.10 cannot encode
 * them): Salt Length 32, Mask Generator MGF1 and its hash SHA-256 in the
 * Cryptographic Parameters, after the algorithm. */
START_TEST(test_kmip_ttlv_sign_pss_fields)
{
    km__ttlv_limits lim = KM__TTLV_LIMITS_DEFAULT;
    km__ttlv_enc e;
    km__ttlv_tree t;
    const uint8_t *out;
    size_t len;
    int32_t salt = 0;
    uint32_t v = 0;
    int bi, pl, cp;

    km__ttlv_enc_init(&e, 0);
    km__kmip_msg_sign(&e, 1, 4, "1", 1, PT, 23, 1);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &out, &len), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(out, len, &lim, &t), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, 0, KM__KMIP_TAG_BATCH_ITEM, &bi), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, bi, KM__KMIP_TAG_REQUEST_PAYLOAD, &pl), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, pl, KM__KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS, &cp),
                     KM_OK);
    ck_assert_int_eq(km__ttlv_get_enum(&t, cp, KM__KMIP_TAG_PADDING_METHOD, &v), KM_OK);
    ck_assert_uint_eq(v, KM__KMIP_PAD_PSS);
    ck_assert_int_eq(km__ttlv_get_int(&t, cp, KM__KMIP_TAG_SALT_LENGTH, &salt), KM_OK);
    ck_assert_int_eq(salt, 32);
    ck_assert_int_eq(km__ttlv_get_enum(&t, cp, KM__KMIP_TAG_MASK_GENERATOR, &v), KM_OK);
    ck_assert_uint_eq(v, KM__KMIP_MGF1);
    ck_assert_int_eq(km__ttlv_get_enum(&t, cp, KM__KMIP_TAG_MASK_GENERATOR_HASHING_ALGORITHM,
                                       &v), KM_OK);
    ck_assert_uint_eq(v, KM__KMIP_HASH_SHA256);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);
}
END_TEST

static void parse(const char *name, km__ttlv_tree *t, km__kmip_response *r)
{
    const vec *v = get_vec(name);
    ck_assert_int_eq(km__ttlv_decode(v->b, v->len, NULL, t), KM_OK);
    ck_assert_int_eq(km__kmip_response_parse(t, r), KM_OK);
}

START_TEST(test_kmip_ttlv_responses_parse)
{
    km__ttlv_tree t;
    km__kmip_response r;
    const char *s;
    const uint8_t *b;
    size_t n;
    int obj, blk, kv, p;
    uint8_t ct[23];
    uint32_t en;

    parse("create_resp_14", &t, &r);
    ck_assert_int_eq(r.major, 1);
    ck_assert_int_eq(r.minor, 4);
    ck_assert_int_eq(r.time_stamp, 1700000000);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_uint_eq(r.items[0].operation, KM__KMIP_OP_CREATE);
    ck_assert_int_eq(km__kmip_result_err(&r.items[0], KM__KMIP_OP_CREATE, "create"), KM_OK);
    ck_assert_int_eq(km__kmip_result_err(&r.items[0], KM__KMIP_OP_GET, "get"), KM_E_BACKEND);
    ck_assert_int_eq(km__ttlv_get_text(&t, r.items[0].payload, KM__KMIP_TAG_UNIQUE_IDENTIFIER,
                                       &s, &n), KM_OK);
    ck_assert(n == 1 && s[0] == '1');
    ck_assert_int_eq(km__ttlv_get_enum(&t, r.items[0].payload, KM__KMIP_TAG_OBJECT_TYPE, &en),
                     KM_OK);
    ck_assert_uint_eq(en, KM__KMIP_OBJ_SYMMETRIC_KEY);
    /* a getter of another type */
    ck_assert_int_eq(km__ttlv_get_bytes(&t, r.items[0].payload, KM__KMIP_TAG_UNIQUE_IDENTIFIER,
                                        &b, &n), KM_E_CORRUPT);
    ck_assert_int_eq(km__ttlv_get_int(&t, r.items[0].payload, KM__KMIP_TAG_DATA, NULL),
                     KM_E_NOTFOUND);
    km__ttlv_tree_free(&t);

    parse("create_resp_20", &t, &r);
    ck_assert_int_eq(r.major, 2);
    ck_assert_int_eq(r.minor, 0);
    km__ttlv_tree_free(&t);

    parse("discover_resp", &t, &r);
    p = r.items[0].payload;
    ck_assert_uint_eq(km__ttlv_count(&t, p, KM__KMIP_TAG_PROTOCOL_VERSION), 2);
    km__ttlv_tree_free(&t);

    parse("encrypt_resp", &t, &r);
    test_ct(ct);
    ck_assert_int_eq(km__ttlv_get_bytes(&t, r.items[0].payload, KM__KMIP_TAG_DATA, &b, &n), KM_OK);
    ck_assert(n == 23 && memcmp(b, ct, 23) == 0);
    ck_assert_int_eq(km__ttlv_get_bytes(&t, r.items[0].payload, KM__KMIP_TAG_AE_TAG, &b, &n),
                     KM_OK);
    ck_assert(n == 16 && b[0] == 0xF0 && b[15] == 0xFF);
    km__ttlv_tree_free(&t);

    parse("get_resp", &t, &r);
    ck_assert_int_eq(km__ttlv_get_struct(&t, r.items[0].payload, KM__KMIP_TAG_SYMMETRIC_KEY, &obj),
                     KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, obj, KM__KMIP_TAG_KEY_BLOCK, &blk), KM_OK);
    ck_assert_int_eq(km__ttlv_get_struct(&t, blk, KM__KMIP_TAG_KEY_VALUE, &kv), KM_OK);
    ck_assert_int_eq(km__ttlv_get_bytes(&t, kv, KM__KMIP_TAG_KEY_MATERIAL, &b, &n), KM_OK);
    ck_assert(n == 32 && b[0] == 0 && b[31] == 31);
    km__ttlv_tree_free(&t);

    parse("failure_resp", &t, &r);
    ck_assert_uint_eq(r.items[0].status, KM__KMIP_STATUS_FAILED);
    ck_assert_uint_eq(r.items[0].reason, KM__KMIP_REASON_GENERAL_FAILURE);
    ck_assert(r.items[0].message_len == 11 && memcmp(r.items[0].message, "Invalid tag", 11) == 0);
    ck_assert_int_eq(r.items[0].payload, -1);
    ck_assert_int_eq(km__kmip_result_err(&r.items[0], KM__KMIP_OP_DECRYPT, "decrypt"),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_KMIP);
    ck_assert_uint_eq(km_error_last()->native, 0x100);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "General Failure"));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "Invalid tag"));
    km__ttlv_tree_free(&t);

    parse("not_found_resp", &t, &r);
    ck_assert_int_eq(km__kmip_result_err(&r.items[0], KM__KMIP_OP_ENCRYPT, "encrypt"),
                     KM_E_NOTFOUND);
    ck_assert_uint_eq(km_error_last()->native, KM__KMIP_REASON_ITEM_NOT_FOUND);
    km__ttlv_tree_free(&t);

    /* a request is not a response */
    {
        const vec *v = get_vec("get_req");
        ck_assert_int_eq(km__ttlv_decode(v->b, v->len, NULL, &t), KM_OK);
        ck_assert_int_eq(km__kmip_response_parse(&t, &r), KM_E_CORRUPT);
        km__ttlv_tree_free(&t);
    }
}
END_TEST

START_TEST(test_kmip_ttlv_every_truncation_refused)
{
    size_t i, k;

    load_vectors();
    for (i = 0; i < nvec; i++) {
        for (k = 0; k < vecs[i].len; k++) {
            /* an exact-size copy, so that ASan sees a read past the end */
            uint8_t *c = malloc(k ? k : 1);
            km__ttlv_tree t;
            memcpy(c, vecs[i].b, k);
            ck_assert_int_eq(km__ttlv_decode(c, k, NULL, &t), KM_E_CORRUPT);
            ck_assert_ptr_nonnull(t.why);
            km__ttlv_tree_free(&t);
            free(c);
        }
    }
}
END_TEST

START_TEST(test_kmip_ttlv_every_bit_flip_consistent)
{
    size_t i, k, ok = 0, bad = 0;
    int bit;

    load_vectors();
    for (i = 0; i < nvec; i++) {
        uint8_t *c = malloc(vecs[i].len);
        for (k = 0; k < vecs[i].len; k++) {
            for (bit = 0; bit < 8; bit++) {
                km__ttlv_tree t;
                km__kmip_response r;
                int rc;
                memcpy(c, vecs[i].b, vecs[i].len);
                c[k] ^= (uint8_t)(1u << bit);
                rc = km__ttlv_decode(c, vecs[i].len, NULL, &t);
                ck_assert(rc == KM_OK || rc == KM_E_CORRUPT);
                if (rc == KM_OK) {
                    ok++;
                    reencode_same(c, vecs[i].len, &t);
                    rc = km__kmip_response_parse(&t, &r);
                    ck_assert(rc == KM_OK || rc == KM_E_CORRUPT);
                } else {
                    bad++;
                }
                km__ttlv_tree_free(&t);
            }
        }
        free(c);
    }
    /* flips in values decode; flips in lengths, types and padding do not */
    ck_assert_uint_gt(ok, 0);
    ck_assert_uint_gt(bad, 0);
}
END_TEST

/* `depth` nested Structures around one Integer. */
static void nested(km__ttlv_enc *e, int depth)
{
    int i;
    km__ttlv_enc_init(e, 0);
    for (i = 0; i < depth; i++)
        km__ttlv_begin(e, KM__KMIP_TAG_ATTRIBUTES);
    km__ttlv_put_int(e, KM__KMIP_TAG_BATCH_COUNT, 1);
    for (i = 0; i < depth; i++)
        km__ttlv_end(e);
}

START_TEST(test_kmip_ttlv_limits)
{
    km__ttlv_limits lim = { 1024, 4, 10 };
    km__ttlv_enc e;
    km__ttlv_tree t;
    const uint8_t *b;
    size_t n;
    int i;

    /* depth: 3 structures + the integer = 4 levels pass, 5 do not */
    nested(&e, 3);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(b, n, &lim, &t), KM_OK);
    ck_assert_uint_eq(t.n, 4);
    ck_assert_uint_eq(t.items[3].depth, 4);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);
    nested(&e, 4);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(b, n, &lim, &t), KM_E_CORRUPT);
    ck_assert_str_eq(t.why, "nesting deeper than the limit");
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);
    /* the encoder itself stops at KM__TTLV_MAX_DEPTH */
    nested(&e, KM__TTLV_MAX_DEPTH + 1);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_E_INVALID);
    km__ttlv_enc_free(&e);
    /* a deep message under the default limits is refused, never recursed into */
    nested(&e, KM__TTLV_MAX_DEPTH - 1);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(b, n, NULL, &t), KM_E_CORRUPT);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);

    /* items: 1 structure + 9 integers pass, + 10 do not */
    for (i = 9; i <= 10; i++) {
        int j;
        km__ttlv_enc_init(&e, 0);
        km__ttlv_begin(&e, KM__KMIP_TAG_ATTRIBUTES);
        for (j = 0; j < i; j++)
            km__ttlv_put_int(&e, KM__KMIP_TAG_BATCH_COUNT, j);
        km__ttlv_end(&e);
        ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
        ck_assert_int_eq(km__ttlv_decode(b, n, &lim, &t), i == 9 ? KM_OK : KM_E_CORRUPT);
        km__ttlv_tree_free(&t);
        km__ttlv_enc_free(&e);
    }

    /* total length */
    km__ttlv_enc_init(&e, 0);
    {
        static uint8_t big[1100];
        km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, big, sizeof big);
    }
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
    ck_assert_int_eq(km__ttlv_decode(b, n, &lim, &t), KM_E_CORRUPT);
    ck_assert_str_eq(t.why, "message longer than the limit");
    km__ttlv_tree_free(&t);
    ck_assert_int_eq(km__ttlv_peek_len(b, n, 1024, &n), KM_E_CORRUPT);
    ck_assert_int_eq(km__ttlv_peek_len(b, 8, 4096, &n), KM_OK);
    ck_assert_uint_eq(n, 8 + 1104);
    ck_assert_int_eq(km__ttlv_peek_len(b, 7, 4096, &n), KM_E_CORRUPT);
    km__ttlv_enc_free(&e);

    /* the encoder's own maximum */
    km__ttlv_enc_init(&e, 64);
    km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, PT, 23);
    km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, PT, 23);
    ck_assert_int_eq(km__ttlv_put_int(&e, KM__KMIP_TAG_BATCH_COUNT, 1), KM_E_NOMEM);
    km__ttlv_enc_free(&e);
}
END_TEST

/* Hand-made items the decoder must refuse. */
START_TEST(test_kmip_ttlv_malformed_refused)
{
    static const struct {
        const char *what;
        uint8_t b[24];
        size_t len;
    } bad[] = {
        { "integer of length 8", { 0x42, 0, 0x0D, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1 }, 16 },
        { "integer padding not zero", { 0x42, 0, 0x0D, 2, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 1 }, 16 },
        { "boolean 2", { 0x42, 0, 0x10, 6, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2 }, 16 },
        { "unknown type 0x0C", { 0x42, 0, 0x10, 0x0C, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0 }, 16 },
        { "type 0", { 0x42, 0, 0x10, 0, 0, 0, 0, 0 }, 8 },
        { "length 0xffffffff", { 0x42, 0, 0xC2, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0 }, 16 },
        { "bytes after the item", { 0x42, 0, 0xC2, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 16 },
        { "text padding not zero", { 0x42, 0, 0x94, 7, 0, 0, 0, 1, '1', 0, 0, 0, 0, 0, 0, 9 }, 16 },
        { "structure length not a multiple of 8", { 0x42, 0, 0x25, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0 }, 16 },
        { "child past its structure",
          { 0x42, 0, 0x25, 1, 0, 0, 0, 8, 0x42, 0, 0x0D, 2, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0 }, 24 },
        { "big integer of length 0", { 0x42, 0, 0x10, 4, 0, 0, 0, 0 }, 8 },
        { "big integer of length 4", { 0x42, 0, 0x10, 4, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0 }, 16 },
        { "date-time of length 4", { 0x42, 0, 0x92, 9, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0 }, 16 },
        { "empty", { 0 }, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        km__ttlv_tree t;
        ck_assert_msg(km__ttlv_decode(bad[i].b, bad[i].len, NULL, &t) == KM_E_CORRUPT, "%s",
                      bad[i].what);
        km__ttlv_tree_free(&t);
    }
    {
        /* and the good twins of a few of them */
        static const uint8_t ok1[] = { 0x42, 0, 0x94, 7, 0, 0, 0, 1, '1', 0, 0, 0, 0, 0, 0, 0 };
        static const uint8_t ok2[] = { 0x42, 0, 0x25, 1, 0, 0, 0, 0 };
        km__ttlv_tree t;
        ck_assert_int_eq(km__ttlv_decode(ok1, sizeof ok1, NULL, &t), KM_OK);
        km__ttlv_tree_free(&t);
        ck_assert_int_eq(km__ttlv_decode(ok2, sizeof ok2, NULL, &t), KM_OK);
        ck_assert_int_eq(t.items[0].first, -1);
        km__ttlv_tree_free(&t);
    }
    ck_assert_int_eq(km__ttlv_decode(NULL, 0, NULL, NULL), KM_E_INVALID);
}
END_TEST

START_TEST(test_kmip_ttlv_all_types_round_trip)
{
    static const uint8_t neg[] = { 0x80, 1, 2 }, pos[] = { 0x7f, 1, 2 };
    km__ttlv_enc e;
    km__ttlv_tree t;
    const uint8_t *b;
    const char *s;
    size_t n;
    int32_t i32;
    int64_t i64;
    uint32_t u32;
    int bo, c;

    km__ttlv_enc_init(&e, 0);
    km__ttlv_begin(&e, KM__KMIP_TAG_ATTRIBUTES);
    km__ttlv_put_int(&e, KM__KMIP_TAG_CRYPTOGRAPHIC_LENGTH, -5);
    km__ttlv_put_long(&e, KM__KMIP_TAG_TIME_STAMP + 0x100, INT64_MIN);
    km__ttlv_put_enum(&e, KM__KMIP_TAG_OPERATION, 0xfffffffeu);
    km__ttlv_put_bool(&e, KM__KMIP_TAG_BATCH_ORDER_OPTION, 7);
    km__ttlv_put_text(&e, KM__KMIP_TAG_NAME_VALUE, "héllo", 6);
    km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, PT, 9);
    km__ttlv_put_bytes(&e, KM__KMIP_TAG_MAC_DATA, NULL, 0);
    km__ttlv_put_datetime(&e, KM__KMIP_TAG_TIME_STAMP, 1700000000);
    km__ttlv_put_interval(&e, KM__KMIP_TAG_ACTIVATION_DATE, 3600);
    km__ttlv_put_bigint(&e, KM__KMIP_TAG_KEY_MATERIAL, neg, 3);
    km__ttlv_put_bigint(&e, KM__KMIP_TAG_KEY_MATERIAL, pos, 3);
    km__ttlv_put_bigint(&e, KM__KMIP_TAG_KEY_MATERIAL, NULL, 0);
    km__ttlv_end(&e);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_OK);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_int_eq(km__ttlv_decode(b, n, NULL, &t), KM_OK);
    ck_assert_uint_eq(t.n, 13);
    ck_assert_int_eq(km__ttlv_get_int(&t, 0, KM__KMIP_TAG_CRYPTOGRAPHIC_LENGTH, &i32), KM_OK);
    ck_assert_int_eq(i32, -5);
    ck_assert_int_eq(km__ttlv_get_long(&t, 0, KM__KMIP_TAG_TIME_STAMP + 0x100, &i64), KM_OK);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(km__ttlv_get_enum(&t, 0, KM__KMIP_TAG_OPERATION, &u32), KM_OK);
    ck_assert_uint_eq(u32, 0xfffffffeu);
    ck_assert_int_eq(km__ttlv_get_bool(&t, 0, KM__KMIP_TAG_BATCH_ORDER_OPTION, &bo), KM_OK);
    ck_assert_int_eq(bo, 1);
    ck_assert_int_eq(km__ttlv_get_text(&t, 0, KM__KMIP_TAG_NAME_VALUE, &s, &n), KM_OK);
    ck_assert(n == 6 && memcmp(s, "héllo", 6) == 0);
    ck_assert_int_eq(km__ttlv_get_bytes(&t, 0, KM__KMIP_TAG_DATA, &b, &n), KM_OK);
    ck_assert(n == 9 && memcmp(b, PT, 9) == 0);
    ck_assert_int_eq(km__ttlv_get_bytes(&t, 0, KM__KMIP_TAG_MAC_DATA, &b, &n), KM_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(km__ttlv_get_datetime(&t, 0, KM__KMIP_TAG_TIME_STAMP, &i64), KM_OK);
    ck_assert(i64 == 1700000000);
    ck_assert_int_eq(km__ttlv_get_interval(&t, 0, KM__KMIP_TAG_ACTIVATION_DATE, &u32), KM_OK);
    ck_assert_uint_eq(u32, 3600);
    ck_assert_uint_eq(km__ttlv_count(&t, 0, KM__KMIP_TAG_KEY_MATERIAL), 3);
    c = km__ttlv_child(&t, 0, KM__KMIP_TAG_KEY_MATERIAL, 0);
    ck_assert_uint_eq(t.items[c].len, 8);
    ck_assert(memcmp(t.items[c].val, "\xff\xff\xff\xff\xff\x80\x01\x02", 8) == 0);
    c = km__ttlv_child(&t, 0, KM__KMIP_TAG_KEY_MATERIAL, 1);
    ck_assert(memcmp(t.items[c].val, "\0\0\0\0\0\x7f\x01\x02", 8) == 0);
    c = km__ttlv_child(&t, 0, KM__KMIP_TAG_KEY_MATERIAL, 2);
    ck_assert(t.items[c].len == 8 && memcmp(t.items[c].val, "\0\0\0\0\0\0\0\0", 8) == 0);
    ck_assert_int_eq(km__ttlv_child(&t, 0, KM__KMIP_TAG_KEY_MATERIAL, 3), -1);
    ck_assert_int_eq(km__ttlv_child(&t, 1, KM__KMIP_TAG_KEY_MATERIAL, 0), -1);
    ck_assert_int_eq(km__ttlv_child(&t, 99, KM__KMIP_TAG_KEY_MATERIAL, 0), -1);
    km__ttlv_tree_free(&t);
    km__ttlv_enc_free(&e);

    ck_assert_str_eq(km__kmip_tag_name(KM__KMIP_TAG_UNIQUE_IDENTIFIER), "UNIQUE_IDENTIFIER");
    ck_assert_ptr_null(km__kmip_tag_name(0x123456));
}
END_TEST

START_TEST(test_kmip_ttlv_encoder_misuse)
{
    km__ttlv_enc e;
    const uint8_t *b;
    size_t n;

    km__ttlv_enc_init(&e, 0);
    ck_assert_int_eq(km__ttlv_end(&e), KM_E_INVALID);
    ck_assert_int_eq(km__ttlv_put_int(&e, 1, 1), KM_E_INVALID); /* sticky */
    km__ttlv_enc_free(&e);
    km__ttlv_enc_init(&e, 0);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_E_INVALID); /* nothing */
    km__ttlv_enc_free(&e);
    km__ttlv_enc_init(&e, 0);
    km__ttlv_begin(&e, KM__KMIP_TAG_ATTRIBUTES);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &b, &n), KM_E_INVALID); /* still open */
    km__ttlv_enc_free(&e);
    km__ttlv_enc_init(&e, 0);
    ck_assert_int_eq(km__ttlv_put_int(&e, 0x1000000, 1), KM_E_INVALID);
    km__ttlv_enc_free(&e);
    km__ttlv_enc_init(&e, 0);
    ck_assert_int_eq(km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, NULL, 3), KM_E_INVALID);
    km__ttlv_enc_free(&e);
    km__ttlv_enc_free(NULL);
    km__ttlv_tree_free(NULL);
}
END_TEST

static Suite *ttlv_suite(void)
{
    Suite *s = suite_create("kmip_ttlv");
    TCase *tc = tcase_create("kmip_ttlv");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kmip_ttlv_vectors_decode_and_reencode);
    tcase_add_test(tc, test_kmip_ttlv_requests_match_pykmip);
    tcase_add_test(tc, test_kmip_ttlv_create_not_extractable);
    tcase_add_test(tc, test_kmip_ttlv_sign_pss_fields);
    tcase_add_test(tc, test_kmip_ttlv_responses_parse);
    tcase_add_test(tc, test_kmip_ttlv_every_truncation_refused);
    tcase_add_test(tc, test_kmip_ttlv_every_bit_flip_consistent);
    tcase_add_test(tc, test_kmip_ttlv_limits);
    tcase_add_test(tc, test_kmip_ttlv_malformed_refused);
    tcase_add_test(tc, test_kmip_ttlv_all_types_round_trip);
    tcase_add_test(tc, test_kmip_ttlv_encoder_misuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ttlv_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
