/* fuzz_kmd.c - kmd's request path (src/kmd/kmip.c, kmd_kmip_handle): any
 * bytes as a KMIP request, served as an admin principal through a context
 * delegated from the fixture's vault (km/sys/server.h), as kmd serves a
 * connection. Every input gets a well-formed Response Message (an Invalid
 * Message one when the request is not readable), whose batch count is the
 * request's or 1. kmd's source is compiled into the target. */
#include "fuzz_common.h"
#include "kmip_ttlv.h"

#include <km/sys/server.h>

#include "../../src/kmd/kmip.c"
#include "../../src/kmd/vendor.c"   /* the libkm call (KM_KMD_OP_CALL) */

static km_ctx *fz_kmd;

static void fz_kmd_close(void)
{
    km_close(fz_kmd);
    fz_kmd = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kmd_limits lim = { 64 * 1024, "fuzz", NULL };
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    km__ttlv_tree t;
    km__kmip_response r;
    int rc;

    if (fz_kmd == NULL) {
        fz_setup();
        rc = km_principal_add(fz.ctx, "fz-admin", KM_ROLE_ADMIN | KM_ROLE_USER,
                              (const uint8_t *)"x", 1, KM_KDF_COST_MIN);
        if (rc != KM_OK && rc != KM_E_EXISTS)
            fz_die("km_principal_add", rc);
        if ((rc = km_key_grant(fz.aes, "fz-admin", KM_PERM_ALL)) != KM_OK
            || (rc = km_key_grant(fz.hmac, "fz-admin", KM_PERM_ALL)) != KM_OK
            || (rc = km_key_grant(fz.ec, "fz-admin", KM_PERM_ALL)) != KM_OK)
            fz_die("km_key_grant", rc);
        if ((rc = km_ctx_delegate(fz.ctx, "fz-admin", "fuzz", &fz_kmd)) != KM_OK)
            fz_die("km_ctx_delegate", rc);
        atexit(fz_kmd_close);
    }
    (void)kmd_kmip_handle(fz_kmd, &lim, data, size, &resp, &resp_len);
    FUZZ_CHECK(resp != NULL && resp_len >= 8);
    FUZZ_CHECK(km__ttlv_decode(resp, resp_len, NULL, &t) == KM_OK);
    FUZZ_CHECK(km__kmip_response_parse(&t, &r) == KM_OK);
    FUZZ_CHECK(r.n >= 1);
    km__ttlv_tree_free(&t);
    kmd_response_free(resp, resp_len);
    return 0;
}
