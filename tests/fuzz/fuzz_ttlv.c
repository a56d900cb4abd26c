/* fuzz_ttlv.c - the KMIP TTLV decoder (km__ttlv_decode) under the default
 * limits and small ones, the response parser (km__kmip_response_parse) and
 * the typed getters; a decoded message encodes back to the same bytes. */
#include "fuzz_common.h"
#include "kmip_ttlv.h"

static void check_tree(const uint8_t *data, size_t size, const km__ttlv_tree *t)
{
    km__ttlv_enc e;
    km__kmip_response r;
    const uint8_t *out = NULL;
    size_t out_len = 0, i;
    int rc;

    km__ttlv_enc_init(&e, 0);
    FUZZ_CHECK(km__ttlv_put_item(&e, t, 0) == KM_OK);
    FUZZ_CHECK(km__ttlv_enc_finish(&e, &out, &out_len) == KM_OK);
    FUZZ_CHECK(out_len == size && memcmp(out, data, size) == 0);
    km__ttlv_enc_free(&e);
    for (i = 0; i < t->n; i++) {
        const km__ttlv_item *it = &t->items[i];
        FUZZ_CHECK(it->val >= data + 8 && it->val + it->len <= data + size);
        FUZZ_CHECK(i == 0 ? it->parent == -1 : (it->parent >= 0 && (size_t)it->parent < i));
        if (it->type == KM__TTLV_STRUCTURE) {
            const uint8_t *b;
            const char *s;
            size_t n;
            int32_t i32;
            int64_t i64;
            uint32_t u32;
            int bo, st;
            (void)km__ttlv_get_int(t, (int)i, KM__KMIP_TAG_BATCH_COUNT, &i32);
            (void)km__ttlv_get_long(t, (int)i, KM__KMIP_TAG_BATCH_COUNT, &i64);
            (void)km__ttlv_get_enum(t, (int)i, KM__KMIP_TAG_OPERATION, &u32);
            (void)km__ttlv_get_bool(t, (int)i, KM__KMIP_TAG_BATCH_ORDER_OPTION, &bo);
            (void)km__ttlv_get_datetime(t, (int)i, KM__KMIP_TAG_TIME_STAMP, &i64);
            (void)km__ttlv_get_interval(t, (int)i, KM__KMIP_TAG_TIME_STAMP, &u32);
            if (km__ttlv_get_bytes(t, (int)i, KM__KMIP_TAG_DATA, &b, &n) == KM_OK)
                FUZZ_CHECK(b >= data && b + n <= data + size);
            if (km__ttlv_get_text(t, (int)i, KM__KMIP_TAG_UNIQUE_IDENTIFIER, &s, &n) == KM_OK)
                FUZZ_CHECK((const uint8_t *)s >= data && (const uint8_t *)s + n <= data + size);
            if (km__ttlv_get_struct(t, (int)i, KM__KMIP_TAG_RESPONSE_PAYLOAD, &st) == KM_OK)
                FUZZ_CHECK(st > (int)i && (size_t)st < t->n);
        }
    }
    rc = km__kmip_response_parse(t, &r);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_CORRUPT);
    if (rc == KM_OK) {
        FUZZ_CHECK(r.n >= 1 && r.n <= KM__KMIP_MAX_BATCH);
        for (i = 0; i < r.n; i++) {
            const km__kmip_result *x = &r.items[i];
            FUZZ_CHECK(x->payload == -1 || ((size_t)x->payload < t->n
                                            && t->items[x->payload].type == KM__TTLV_STRUCTURE));
            FUZZ_CHECK(x->message == NULL
                       || ((const uint8_t *)x->message >= data
                           && (const uint8_t *)x->message + x->message_len <= data + size));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const km__ttlv_limits small = { 2048, 6, 64 };
    km__ttlv_tree t;
    size_t total = 0;
    int rc;

    rc = km__ttlv_decode(data, size, NULL, &t);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_CORRUPT);
    FUZZ_CHECK(rc == KM_OK || t.why != NULL);
    if (rc == KM_OK) {
        FUZZ_CHECK(t.n >= 1);
        FUZZ_CHECK(km__ttlv_peek_len(data, size, size, &total) == KM_OK && total == size);
        check_tree(data, size, &t);
    }
    km__ttlv_tree_free(&t);
    rc = km__ttlv_decode(data, size, &small, &t);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_CORRUPT);
    if (rc == KM_OK) {
        FUZZ_CHECK(t.n <= 64 && size <= 2048);
        check_tree(data, size, &t);
    }
    km__ttlv_tree_free(&t);
    return 0;
}
