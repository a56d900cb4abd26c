/* fuzz_policy.c - the policy JSON parser km__policy_parse, without a base and
 * with the default and FIPS policies as base; *out stays NULL on refusal, and
 * the JSON of a parsed policy parses back to an equal policy. */
#include "fuzz_common.h"
#include "policy.h"

static km__policy *base_default, *base_fips;

static void cleanup(void)
{
    km__policy_free(base_default);
    km__policy_free(base_fips);
}

static void one(const char *json, size_t len, const km__policy *base)
{
    km__policy *p = (km__policy *)(uintptr_t)1, *q = NULL;
    int rc = km__policy_parse(&p, json, len, base);
    FUZZ_CHECK(fz_known_rc(rc));
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_INVALID || rc == KM_E_UNSUPPORTED || rc == KM_E_POLICY);
    if (rc != KM_OK) {
        FUZZ_CHECK(p == NULL);
        return;
    }
    FUZZ_CHECK(p != NULL);
    {
        char *s = km__policy_to_json(p);
        FUZZ_CHECK(s != NULL);
        rc = km__policy_parse(&q, s, strlen(s), NULL);
        FUZZ_CHECK(rc == KM_OK && km__policy_equal(p, q));
        free(s);
        km__policy_free(q);
    }
    km__policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base_default == NULL) {
        FUZZ_CHECK(km_init() == KM_OK);
        FUZZ_CHECK(km__policy_default(&base_default, 0) == KM_OK);
        FUZZ_CHECK(km__policy_default(&base_fips, 1) == KM_OK);
        atexit(cleanup);
    }
    one((const char *)data, size, NULL);
    one((const char *)data, size, base_default);
    one((const char *)data, size, base_fips);
    return 0;
}
