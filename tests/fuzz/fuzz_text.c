/* fuzz_text.c - km_text_decode on arbitrary text; a decoded value encodes back
 * to the same (trimmed) text, and the size query agrees with the real size. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t cap = size, out_len = 777, need = 0, tl = size, enc_len = 0;
    uint8_t *out = malloc(cap ? cap : 1);
    int rc, rq;

    rq = km_text_decode(text, size, NULL, 0, &need);
    rc = km_text_decode(text, size, out, cap, &out_len);
    FUZZ_CHECK(fz_known_rc(rc) && fz_known_rc(rq));
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_INVALID || rc == KM_E_BUFFER);
    if (rc == KM_OK) {
        char *enc;
        FUZZ_CHECK(out_len <= cap);
        if (out_len > 0) {
            FUZZ_CHECK(rq == KM_E_BUFFER && need >= out_len);
        }
        while (tl > 0 && (text[tl - 1] == '\n' || text[tl - 1] == '\r' || text[tl - 1] == ' '
                          || text[tl - 1] == '\t'))
            tl--;
        if (out_len > 0) {
            enc = malloc(tl + 1);
            FUZZ_CHECK(km_text_encode(out, out_len, enc, tl + 1, &enc_len) == KM_OK);
            FUZZ_CHECK(enc_len == tl && memcmp(enc, text, tl) == 0);
            free(enc);
        } else {
            FUZZ_CHECK(tl == 4);
        }
    } else {
        FUZZ_CHECK(rc != KM_E_BUFFER); /* cap = text length always suffices */
        FUZZ_CHECK(out_len == 0);
    }
    free(out);
    return 0;
}
