/* fuzz_tagged.c - km_verify (Ed25519, ECDSA P-256 in DER and P1363) and
 * km_mac_verify (HMAC-SHA-256) on arbitrary bytes as a tagged signature or MAC
 * of FZ_MSG, and as a raw one. */
#include "fuzz_common.h"

static void ok_rc(int rc)
{
    FUZZ_CHECK(fz_known_rc(rc));
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_VERIFY || rc == KM_E_INVALID || rc == KM_E_UNSUPPORTED
               || rc == KM_E_NOTFOUND || rc == KM_E_STATE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *msg = (const uint8_t *)FZ_MSG;
    size_t ml = strlen(FZ_MSG);
    uint32_t ver = size > 0 ? data[0] % 3 : 0; /* 0 = from the header, 1, 2 */

    fz_setup();
    ok_rc(km_verify(fz.ed, 0, 0, msg, ml, data, size));
    ok_rc(km_verify(fz.ec, 0, 0, msg, ml, data, size));
    ok_rc(km_verify(fz.ec, 0, KM_SIG_P1363, msg, ml, data, size));
    ok_rc(km_mac_verify(fz.hmac, 0, 0, msg, ml, data, size));
    ok_rc(km_mac_verify(fz.hmac, ver, 0, msg, ml, data, size));
    ok_rc(km_verify(fz.ed, ver, KM_SIG_RAW, msg, ml, data, size));
    ok_rc(km_verify(fz.ec, 0, KM_SIG_RAW, msg, ml, data, size));
    ok_rc(km_verify(fz.ec, 0, KM_SIG_RAW | KM_SIG_P1363, msg, ml, data, size));
    ok_rc(km_mac_verify(fz.hmac, 0, KM_SIG_RAW, msg, ml, data, size));
    /* the wrong kind of key for the tag: refused, never verified */
    FUZZ_CHECK(km_mac_verify(fz.ed, 0, 0, msg, ml, data, size) == KM_E_USAGE);
    FUZZ_CHECK(km_verify(fz.hmac, 0, 0, msg, ml, data, size) == KM_E_USAGE);
    return 0;
}
