/* fuzz_datakey.c - km_datakey_decrypt (and km_rewrap) on arbitrary bytes as a
 * wrapped data key: *out stays NULL on every refusal, a success gives 32 bytes. */
#include "fuzz_common.h"

static void one(const uint8_t *w, size_t n, const uint8_t *aad, size_t aad_len)
{
    km_secret *s = (km_secret *)(uintptr_t)1;
    int rc = km_datakey_decrypt(fz.ctx, w, n, aad, aad_len, &s);
    FUZZ_CHECK(fz_known_rc(rc));
    if (rc == KM_OK) {
        FUZZ_CHECK(s != NULL && km_secret_len(s) == KM_DATAKEY_LEN);
        FUZZ_CHECK(n == KM_DATAKEY_WRAPPED_LEN);
        km_secret_free(s);
    } else {
        FUZZ_CHECK(s == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t out[KM_DATAKEY_WRAPPED_LEN + 64];
    size_t out_len = 99, cap = size < sizeof out ? size : sizeof out;
    int rc;

    fz_setup();
    one(data, size, NULL, 0);
    one(data, size, (const uint8_t *)FZ_AAD, strlen(FZ_AAD));
    memset(out, 0xAA, sizeof out);
    rc = km_rewrap(fz.ctx, data, size, NULL, 0, out, cap, &out_len);
    FUZZ_CHECK(fz_known_rc(rc));
    if (rc == KM_OK)
        FUZZ_CHECK(out_len == size);
    else if (rc != KM_E_BUFFER) {
        FUZZ_CHECK(out_len == 0);
#ifndef KM_FUZZ_TOLERATE_REWRAP_NOZERO
        FUZZ_CHECK(fz_all_zero(out, cap)); /* km_rewrap: "On error `out` is zeroed" */
#endif
    }
    return 0;
}
