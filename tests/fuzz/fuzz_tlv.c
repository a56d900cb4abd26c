/* fuzz_tlv.c - the TLV record parser (km__tlv_check, km__tlv_find, the typed
 * getters) and the version-metadata decoder km__vmeta_decode into a zeroed
 * km__ver; a decoded record encodes and decodes back to the same fields. */
#include "fuzz_common.h"
#include "core.h"

static void same_ver(const km__ver *a, const km__ver *b)
{
    FUZZ_CHECK(a->state == b->state && a->created == b->created && a->activated == b->activated
               && a->protect_stop == b->protect_stop && a->process_stop == b->process_stop
               && a->destroy_after == b->destroy_after && a->prev_state == b->prev_state
               && a->revoke_reason == b->revoke_reason && a->compromise_date == b->compromise_date
               && a->deactivated == b->deactivated && a->destroyed == b->destroyed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static km__ver v, w;
    uint8_t enc[512];
    size_t enc_len = 0;
    int rc, t;

    rc = km__tlv_check(data, size);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_CORRUPT);
    if (rc == KM_OK) {
        for (t = 0; t < 256; t++) {
            const uint8_t *val = NULL;
            size_t vl = 0;
            uint32_t u32 = 0;
            uint64_t u64 = 0;
            int f = km__tlv_find(data, size, (uint8_t)t, &val, &vl);
            int r32 = km__tlv_get_u32(data, size, (uint8_t)t, &u32);
            int r64 = km__tlv_get_u64(data, size, (uint8_t)t, &u64);
            if (!f) {
                FUZZ_CHECK(r32 == KM_E_NOTFOUND && r64 == KM_E_NOTFOUND);
                continue;
            }
            FUZZ_CHECK(val >= data + 5 && val + vl <= data + size && val[-5] == t);
            FUZZ_CHECK(r32 == (vl == 4 ? KM_OK : KM_E_CORRUPT));
            FUZZ_CHECK(r64 == (vl == 8 ? KM_OK : KM_E_CORRUPT));
        }
    }
    memset(&v, 0, sizeof v);
    rc = km__vmeta_decode(data, size, &v);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_CORRUPT);
    if (rc == KM_OK) {
        FUZZ_CHECK(v.state >= KM_STATE_PRE_ACTIVE && v.state <= KM_STATE_DESTROYED);
        FUZZ_CHECK(km__vmeta_encode(&v, enc, sizeof enc, &enc_len) == KM_OK);
        memset(&w, 0, sizeof w);
        FUZZ_CHECK(km__vmeta_decode(enc, enc_len, &w) == KM_OK);
        same_ver(&v, &w);
    }
    return 0;
}
