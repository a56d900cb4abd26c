/* check_policy.c - the policy module (src/rules/policy.c): defaults, parsing, tightening, checks. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "policy.h"
#include "testutil.h"

#define DAY 86400

/* ---------------------------------------------------------------- helpers */

/* Seconds since the epoch of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static const char *last_msg(void)
{
    return km_error_last()->message;
}

#define assert_msg_has(needle)                                                              \
    ck_assert_msg(strstr(last_msg(), (needle)) != NULL, "message \"%s\" lacks \"%s\"",      \
                  last_msg(), (needle))

static km__policy *deflt(int fips)
{
    km__policy *p = NULL;
    ck_assert_int_eq(km__policy_default(&p, fips), KM_OK);
    ck_assert_ptr_nonnull(p);
    return p;
}

static km__policy *parse_ok(const char *doc, const km__policy *base)
{
    km__policy *p = NULL;
    int rc = km__policy_parse(&p, doc, strlen(doc), base);
    ck_assert_msg(rc == KM_OK, "parse failed (%d): %s", rc, last_msg());
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Parses a document that must fail; returns the code (the message stays in km_error_last). */
static int parse_fail(const char *doc, const km__policy *base)
{
    km__policy *p = (km__policy *)&p; /* must be reset to NULL */
    int rc = km__policy_parse(&p, doc, strlen(doc), base);
    ck_assert_msg(rc != KM_OK, "parse of a bad document succeeded: %s", doc);
    ck_assert_ptr_null(p);
    return rc;
}

/* Reads the ```json block that follows `marker` in docs/POLICY.md. */
static char *doc_block(const char *marker)
{
    const char *path = KM_VECTORS_DIR "/../../docs/POLICY.md";
    size_t len = 0;
    char *text = (char *)tu_read_file(path, &len), *m, *start, *end, *out;
    ck_assert_msg(text != NULL, "cannot read %s", path);
    text = realloc(text, len + 1);
    ck_assert_ptr_nonnull(text);
    text[len] = '\0';
    m = strstr(text, marker);
    ck_assert_msg(m != NULL, "no %s in docs/POLICY.md", marker);
    start = strstr(m, "```json\n");
    ck_assert_ptr_nonnull(start);
    start += strlen("```json\n");
    end = strstr(start, "\n```");
    ck_assert_ptr_nonnull(end);
    out = strndup(start, (size_t)(end - start));
    ck_assert_ptr_nonnull(out);
    free(text);
    return out;
}

/* A vault policy stricter than the default (the example of docs/POLICY.md). */
static const char strict_doc[] =
    "{\n"
    "  \"version\": 1,\n"
    "  \"profile\": \"fips\",\n"
    "  \"algorithms\": {\n"
    "    \"aes-128-gcm\": {\"allowed\": false},\n"
    "    \"aes-192-gcm\": {\"allowed\": false},\n"
    "    \"ec-p256\": {\"allowed\": false},\n"
    "    \"rsa-2048\": {\"allowed\": false},\n"
    "    \"hmac-sha256\": {\"min_bits\": 256}\n"
    "  },\n"
    "  \"security_strength\": {\"minimum\": 128},\n"
    "  \"cryptoperiods\": {\"required\": true, \"symmetric-data\": {\"protect_days\": 365, "
    "\"process_days\": 1460}},\n"
    "  \"rotation\": {\"required\": true, \"max_days\": 90, \"usage_fraction\": 0.5},\n"
    "  \"usage_limits\": {\"aes-gcm-invocations\": 1000000000},\n"
    "  \"destruction\": {\"min_grace_days\": 30, \"max_grace_days\": 60},\n"
    "  \"dual_control\": {\"destroy\": 2, \"export\": 2, \"policy-change\": 2, "
    "\"principal-change\": 2}\n"
    "}\n";

/* -------------------------------------------------------------- defaults */

START_TEST(test_policy_defaults_match_document)
{
    km__policy *def = deflt(0), *fips = deflt(1), *p;
    char *block = doc_block("<!-- policy:default -->"), *js;
    json_t *a, *b;
    json_error_t e;

    /* the documented default is the built-in default ... */
    p = parse_ok(block, NULL);
    ck_assert(km__policy_equal(p, def));
    km__policy_free(p);
    /* ... spelled out field by field exactly as km__policy_to_json() writes it */
    js = km__policy_to_json(def);
    ck_assert_ptr_nonnull(js);
    a = json_loads(block, JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(a != NULL, "docs block: line %d: %s", e.line, e.text);
    b = json_loads(js, 0, &e);
    ck_assert_ptr_nonnull(b);
    ck_assert_msg(json_equal(a, b), "docs/POLICY.md default block differs from the built-in:\n%s",
                  js);
    /* the FIPS profile is the default minus x25519 and AES-SIV */
    json_object_set_new(b, "profile", json_string("fips"));
    json_object_set_new(json_object_get(json_object_get(b, "algorithms"), "x25519"), "allowed",
                        json_false());
    json_object_set_new(json_object_get(json_object_get(b, "algorithms"), "aes-128-siv"),
                        "allowed", json_false());
    json_object_set_new(json_object_get(json_object_get(b, "algorithms"), "aes-192-siv"),
                        "allowed", json_false());
    json_object_set_new(json_object_get(json_object_get(b, "algorithms"), "aes-256-siv"),
                        "allowed", json_false());
    free(js);
    json_decref(a);
    js = km__policy_to_json(fips);
    a = json_loads(js, 0, &e);
    ck_assert(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    free(js);
    p = parse_ok("{\"version\": 1, \"profile\": \"fips\"}", NULL);
    ck_assert(km__policy_equal(p, fips));
    ck_assert_str_eq(km__policy_profile(p), "fips");
    km__policy_free(p);
    p = parse_ok("{\"version\": 1}", NULL);
    ck_assert(km__policy_equal(p, def));
    ck_assert_str_eq(km__policy_profile(p), "default");
    ck_assert(!km__policy_equal(def, fips));
    km__policy_free(p);
    free(block);
    km__policy_free(def);
    km__policy_free(fips);
}
END_TEST

START_TEST(test_policy_document_examples)
{
    char *vdoc = doc_block("<!-- policy:example-vault -->");
    char *kdoc = doc_block("<!-- policy:example-key -->");
    char *rdoc = doc_block("<!-- policy:example-refused -->");
    km__policy *strict = parse_ok(strict_doc, NULL), *vault = parse_ok(vdoc, NULL), *key;

    /* the example vault policy is the one these tests use as strict_doc */
    ck_assert(km__policy_equal(vault, strict));
    key = parse_ok(kdoc, vault);
    ck_assert_uint_eq(km__policy_approvals(key, "export"), 3);
    ck_assert_int_eq(km__policy_check_create(key, KM_KEY_AES_256_GCM, 0, 0, 31, 365, 1460, 30),
                     KM_E_POLICY);
    assert_msg_has("policy rule rotation.max_days");
    ck_assert_int_eq(parse_fail(rdoc, vault), KM_E_POLICY);
    ck_assert_str_eq(last_msg(), "policy line 2 column 27: rotation.max_days loosens the vault policy "
                                 "(vault 90, key 180)");
    km__policy_free(key);
    km__policy_free(vault);
    km__policy_free(strict);
    free(vdoc);
    free(kdoc);
    free(rdoc);
}
END_TEST

START_TEST(test_policy_defaults_nist_values)
{
    km__policy *p = deflt(0);
    int64_t now = utc(2025, 6, 1, 12, 0, 0);
    uint64_t limit = 1, rot = 1;
    uint32_t r = 0, pr = 0, ps = 0, g = 0;
    int t;

    /* SP 800-38D section 8.3: 2^32 invocations with random nonces; rotate at 0.9 */
    km__policy_usage_limit(p, KM_KEY_AES_256_GCM, &limit, &rot);
    ck_assert_uint_eq(limit, (uint64_t)1 << 32);
    ck_assert_uint_eq(rot, 3865470566u); /* floor(0.9 * 2^32) */
    km__policy_usage_limit(p, KM_KEY_AES_128_GCM, &limit, &rot);
    ck_assert_uint_eq(limit, (uint64_t)1 << 32);
    km__policy_usage_limit(p, KM_KEY_AES_256_KWP, &limit, &rot);
    ck_assert_uint_eq(limit, 0);
    ck_assert_uint_eq(rot, 0);
    km__policy_usage_limit(p, KM_KEY_HMAC_SHA256, &limit, &rot);
    ck_assert_uint_eq(limit, 0);

    /* no dual control by default; an unknown operation fails closed */
    ck_assert_uint_eq(km__policy_approvals(p, "destroy"), 0);
    ck_assert_uint_eq(km__policy_approvals(p, "export"), 0);
    ck_assert_uint_eq(km__policy_approvals(p, "import-raw"), 0);
    ck_assert_uint_eq(km__policy_approvals(p, "policy-change"), 0);
    ck_assert_uint_eq(km__policy_approvals(p, "principal-change"), 0);
    ck_assert_uint_eq(km__policy_approvals(p, "destroy-all"), UINT32_MAX);
    ck_assert_uint_eq(km__policy_approvals(NULL, "destroy"), UINT32_MAX);

    /* nothing required: no periods imposed, grace 30 */
    km__policy_key_defaults(p, KM_KEY_AES_256_GCM, &r, &pr, &ps, &g);
    ck_assert_uint_eq(r, 0);
    ck_assert_uint_eq(pr, 0);
    ck_assert_uint_eq(ps, 0);
    ck_assert_uint_eq(g, 30);

    /* every type allowed, including x25519 */
    for (t = KM_KEY_AES_128_GCM; t <= KM_KEY_RSA_4096; t++)
        ck_assert_msg(km__policy_check_create(p, (km_key_type)t, 0, now, 0, 0, 0, 0) == KM_OK,
                      "type %d: %s", t, last_msg());

    /* SP 800-57 Table 1 upper values are accepted exactly */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, 730, 730, 1825, 90), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_KWP, 0, now, 730, 730, 1825, 7), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA512, 0, now, 0, 730, 1825, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_EC_P384, 0, now, 0, 1095, 36500, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_X25519, 0, now, 0, 730, 730, 0), KM_OK);

    ck_assert_int_eq(km__policy_type_class(KM_KEY_AES_192_GCM), KM__PCLASS_SYMMETRIC_DATA);
    ck_assert_int_eq(km__policy_type_class(KM_KEY_AES_256_KWP), KM__PCLASS_SYMMETRIC_WRAPPING);
    ck_assert_int_eq(km__policy_type_class(KM_KEY_HMAC_SHA384), KM__PCLASS_HMAC);
    ck_assert_int_eq(km__policy_type_class(KM_KEY_ED25519), KM__PCLASS_SIGNATURE_PRIVATE);
    ck_assert_int_eq(km__policy_type_class(KM_KEY_RSA_3072), KM__PCLASS_SIGNATURE_PRIVATE);
    ck_assert_int_eq(km__policy_type_class(KM_KEY_X25519), KM__PCLASS_KEY_AGREEMENT);
    ck_assert_int_eq(km__policy_type_class((km_key_type)99), KM__PCLASS__COUNT);
    ck_assert_str_eq(km__policy_class_name(KM__PCLASS_HMAC), "hmac");
    ck_assert_ptr_null(km__policy_class_name(KM__PCLASS__COUNT));
    km__policy_free(p);
}
END_TEST

START_TEST(test_policy_type_names_match_core)
{
    km__policy *def = deflt(0);
    int64_t now = utc(2025, 1, 1, 0, 0, 0);
    char doc[160];
    int t, n = 0;

    for (t = 1; t <= 64; t++) {
        const char *name = km_key_type_name((km_key_type)t);
        km__policy *p;
        char rule[64];
        if (name == NULL) {
            ck_assert_int_eq(km__policy_check_protect(def, (km_key_type)t, now), KM_E_INVALID);
            continue;
        }
        n++;
        ck_assert_int_ne(km__policy_type_class((km_key_type)t), KM__PCLASS__COUNT);
        snprintf(doc, sizeof doc, "{\"version\": 1, \"algorithms\": {\"%s\": {\"allowed\": false}}}",
                 name);
        p = parse_ok(doc, def);
        snprintf(rule, sizeof rule, "policy rule algorithms.%s.allowed:", name);
        ck_assert_int_eq(km__policy_check_protect(p, (km_key_type)t, now), KM_E_POLICY);
        assert_msg_has(rule);
        km__policy_free(p);
    }
    ck_assert_int_eq(n, KM__KEYTYPE_MAX);
    km__policy_free(def);
}
END_TEST

/* ------------------------------------------------------------ algorithms */

START_TEST(test_policy_fips_refuses_x25519)
{
    km__policy *fips = deflt(1), *def = deflt(0);
    int64_t now = utc(2025, 1, 1, 0, 0, 0);
    const char *doc = "{\n"
                      "  \"version\": 1,\n"
                      "  \"profile\": \"fips\",\n"
                      "  \"algorithms\": {\"x25519\": {\"allowed\": true}}\n"
                      "}";

    ck_assert_int_eq(km__policy_check_create(fips, KM_KEY_X25519, 0, now, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("policy rule algorithms.x25519.allowed:");
    assert_msg_has("FIPS");
    ck_assert_int_eq(km__policy_check_protect(fips, KM_KEY_X25519, now), KM_E_POLICY);
    /* Ed25519 is approved by FIPS 186-5, the rest as in the default */
    ck_assert_int_eq(km__policy_check_create(fips, KM_KEY_ED25519, 0, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(fips, KM_KEY_EC_P256, 0, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(fips, KM_KEY_AES_256_KWP, 0, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(def, KM_KEY_X25519, 0, now, 0, 0, 0, 0), KM_OK);

    /* a FIPS document cannot allow x25519 */
    ck_assert_int_eq(parse_fail(doc, NULL), KM_E_INVALID);
    assert_msg_has("policy line 4 column 40: algorithms.x25519.allowed: x25519 is not FIPS 140-3 approved");
    /* a key's policy cannot leave a FIPS vault's profile or re-allow x25519 */
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"profile\": \"default\"}", fips), KM_E_POLICY);
    assert_msg_has("profile loosens the vault policy (vault fips, key default)");
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"algorithms\": {\"x25519\": {\"allowed\": true}}}",
                                fips), KM_E_POLICY);
    assert_msg_has("algorithms.x25519.allowed loosens the vault policy");
    km__policy_free(fips);
    km__policy_free(def);
}
END_TEST

START_TEST(test_policy_112_bit_strength_until_2030)
{
    km__policy *p = deflt(0), *f = deflt(1);
    int64_t last = utc(2030, 12, 31, 23, 59, 59), first = utc(2031, 1, 1, 0, 0, 0);

    /* SP 800-131A rev. 2: RSA-2048 (112-bit) protects through 2030 */
    ck_assert_int_eq(km__policy_check_protect(p, KM_KEY_RSA_2048, last), KM_OK);
    ck_assert_int_eq(km__policy_check_protect(f, KM_KEY_RSA_2048, last), KM_OK);
    ck_assert_int_eq(km__policy_check_protect(p, KM_KEY_RSA_2048, first), KM_E_POLICY);
    assert_msg_has("policy rule algorithms.rsa-2048.protect_until: rsa-2048 may not protect new data "
                   "after 2030-12-31");
    ck_assert_int_eq(km__policy_check_protect(f, KM_KEY_RSA_2048, first), KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_RSA_2048, 0, first, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("algorithms.rsa-2048.protect_until");
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_RSA_2048, 0, last, 0, 0, 0, 0), KM_OK);
    /* 128-bit strength is open-ended */
    ck_assert_int_eq(km__policy_check_protect(p, KM_KEY_RSA_3072, utc(2040, 1, 1, 0, 0, 0)), KM_OK);
    ck_assert_int_eq(km__policy_check_protect(p, KM_KEY_AES_128_GCM, utc(2099, 1, 1, 0, 0, 0)), KM_OK);
    ck_assert_int_eq(km__policy_check_protect(p, KM_KEY_EC_P256, utc(2099, 1, 1, 0, 0, 0)), KM_OK);

    /* an imported HMAC key of 112..127 bits has 112-bit strength */
    ck_assert_int_eq(km__policy_check_protect_bits(p, KM_KEY_HMAC_SHA256, 112, last), KM_OK);
    ck_assert_int_eq(km__policy_check_protect_bits(p, KM_KEY_HMAC_SHA256, 127, first), KM_E_POLICY);
    assert_msg_has("policy rule security_strength.protect_112_until:");
    ck_assert_int_eq(km__policy_check_protect_bits(p, KM_KEY_HMAC_SHA256, 128, first), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA256, 112, first, 0, 0, 0, 0),
                     KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA256, 0, first, 0, 0, 0, 0), KM_OK);
    km__policy_free(p);
    km__policy_free(f);
}
END_TEST

START_TEST(test_policy_min_sizes)
{
    km__policy *p = deflt(0), *k;
    int64_t now = utc(2025, 1, 1, 0, 0, 0);

    /* HMAC keys >= 112 bits (SP 800-131A rev. 2 section 10) */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA256, 104, now, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("policy rule algorithms.hmac-sha256.min_bits: a key of 104 bits is below the "
                   "minimum of 112");
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA256, 111, now, 0, 0, 0, 0), KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA256, 112, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_HMAC_SHA384, 0, now, 0, 0, 0, 0), KM_OK);
    /* key_bits only matters for HMAC: an AES key is its type's size */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_128_GCM, 8, now, 0, 0, 0, 0), KM_OK);

    /* a policy may raise minimum sizes; a document may not go below 112 for HMAC */
    k = parse_ok("{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"min_bits\": 3072},"
                 " \"hmac-sha256\": {\"min_bits\": 256}}}", p);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_RSA_2048, 0, now, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("policy rule algorithms.rsa-2048.min_bits: a key of 2048 bits is below the "
                   "minimum of 3072");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_HMAC_SHA256, 192, now, 0, 0, 0, 0), KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_HMAC_SHA256, 256, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_RSA_3072, 0, now, 0, 0, 0, 0), KM_OK);
    km__policy_free(k);
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"algorithms\": {\"hmac-sha512\": {\"min_bits\": 64}}}",
                                NULL), KM_E_INVALID);
    assert_msg_has("algorithms.hmac-sha512.min_bits: 64 is out of range (112 to 16384)");

    /* security_strength.minimum 128 refuses every 112-bit key */
    k = parse_ok("{\"version\": 1, \"security_strength\": {\"minimum\": 128}}", p);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_RSA_2048, 0, now, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("policy rule security_strength.minimum: a rsa-2048 key of 2048 bits has 112-bit "
                   "security strength, below the minimum of 128");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_HMAC_SHA256, 120, now, 0, 0, 0, 0), KM_E_POLICY);
    assert_msg_has("security_strength.minimum");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_HMAC_SHA256, 128, now, 0, 0, 0, 0), KM_OK);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_128_GCM, 0, now, 0, 0, 0, 0), KM_OK);
    km__policy_free(k);
    k = parse_ok("{\"version\": 1, \"security_strength\": {\"minimum\": 192}}", p);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_128_GCM, 0, now, 0, 0, 0, 0), KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_EC_P256, 0, now, 0, 0, 0, 0), KM_E_POLICY);
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_EC_P384, 0, now, 0, 0, 0, 0), KM_OK);
    km__policy_free(k);
    km__policy_free(p);
}
END_TEST

/* --------------------------------------------------------------- periods */

START_TEST(test_policy_periods_over_maxima)
{
    static const struct {
        km_key_type type;
        uint32_t rotate, protect, process, grace;
        int rc;
        const char *rule;
    } cases[] = {
        { KM_KEY_AES_256_GCM, 0, 731, 0, 0, KM_E_POLICY, "cryptoperiods.symmetric-data.protect_days" },
        { KM_KEY_AES_256_GCM, 0, 730, 1826, 0, KM_E_POLICY, "cryptoperiods.symmetric-data.process_days" },
        { KM_KEY_AES_256_GCM, 0, 0, 1825, 0, KM_OK, NULL },
        { KM_KEY_AES_256_KWP, 0, 731, 0, 0, KM_E_POLICY, "cryptoperiods.symmetric-wrapping.protect_days" },
        { KM_KEY_AES_256_KWP, 0, 0, 1826, 0, KM_E_POLICY, "cryptoperiods.symmetric-wrapping.process_days" },
        { KM_KEY_HMAC_SHA256, 0, 731, 0, 0, KM_E_POLICY, "cryptoperiods.hmac.protect_days" },
        { KM_KEY_HMAC_SHA256, 0, 0, 1826, 0, KM_E_POLICY, "cryptoperiods.hmac.process_days" },
        { KM_KEY_EC_P256, 0, 1096, 0, 0, KM_E_POLICY, "cryptoperiods.signature-private.protect_days" },
        { KM_KEY_RSA_4096, 0, 1095, 0, 0, KM_OK, NULL },
        { KM_KEY_ED25519, 0, 0, 36500, 0, KM_OK, NULL },  /* verification: no maximum */
        { KM_KEY_X25519, 0, 731, 0, 0, KM_E_POLICY, "cryptoperiods.key-agreement.protect_days" },
        { KM_KEY_X25519, 0, 0, 731, 0, KM_E_POLICY, "cryptoperiods.key-agreement.process_days" },
        { KM_KEY_AES_128_GCM, 731, 0, 0, 0, KM_E_POLICY, "rotation.max_days" },
        { KM_KEY_EC_P521, 731, 0, 0, 0, KM_E_POLICY, "rotation.max_days" },
        { KM_KEY_AES_128_GCM, 730, 0, 0, 0, KM_OK, NULL },
        { KM_KEY_AES_128_GCM, 0, 0, 0, 6, KM_E_POLICY, "destruction.min_grace_days" },
        { KM_KEY_AES_128_GCM, 0, 0, 0, 91, KM_E_POLICY, "destruction.max_grace_days" },
        { KM_KEY_AES_128_GCM, 0, 0, 0, 7, KM_OK, NULL },
        { KM_KEY_AES_128_GCM, 0, 0, 0, 90, KM_OK, NULL },
    };
    km__policy *p = deflt(0);
    int64_t now = utc(2025, 1, 1, 0, 0, 0);
    char rule[96];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = km__policy_check_create(p, cases[i].type, 0, now, cases[i].rotate, cases[i].protect,
                                         cases[i].process, cases[i].grace);
        ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d (%s)", i, rc, last_msg());
        if (cases[i].rule != NULL) {
            snprintf(rule, sizeof rule, "policy rule %s: ", cases[i].rule);
            assert_msg_has(rule);
        }
    }
    ck_assert_int_eq(km__policy_check_grace(p, 7), KM_OK);
    ck_assert_int_eq(km__policy_check_grace(p, 90), KM_OK);
    ck_assert_int_eq(km__policy_check_grace(p, 1), KM_E_POLICY);
    assert_msg_has("policy rule destruction.min_grace_days: a grace period of 1 day(s) is below the "
                   "minimum of 7");
    ck_assert_int_eq(km__policy_check_grace(p, 3650), KM_E_POLICY);
    assert_msg_has("destruction.max_grace_days");
    km__policy_free(p);
}
END_TEST

START_TEST(test_policy_required_periods_and_defaults)
{
    km__policy *def = deflt(0), *p;
    int64_t now = utc(2025, 1, 1, 0, 0, 0);
    uint32_t r, pr, ps, g;

    p = parse_ok("{\"version\": 1, \"cryptoperiods\": {\"required\": true},"
                 " \"rotation\": {\"required\": true, \"max_days\": 365},"
                 " \"destruction\": {\"min_grace_days\": 40, \"max_grace_days\": 60}}", def);
    /* nothing set: each requirement is named */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, 365, 0, 1825, 0),
                     KM_E_POLICY);
    assert_msg_has("policy rule cryptoperiods.required: a aes-256-gcm key needs an originator-usage "
                   "period (protect_days, at most 730)");
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, 365, 730, 0, 0),
                     KM_E_POLICY);
    assert_msg_has("policy rule cryptoperiods.required: a aes-256-gcm key needs a recipient-usage");
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, 0, 730, 1825, 0),
                     KM_E_POLICY);
    assert_msg_has("policy rule rotation.required: the key needs a rotation period");
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, 366, 730, 1825, 0),
                     KM_E_POLICY);
    assert_msg_has("policy rule rotation.max_days: a rotation period of 366 days exceeds the maximum "
                   "of 365");
    /* signature keys have no recipient maximum, so none is required */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_EC_P256, 0, now, 365, 1095, 0, 0), KM_OK);

    /* defaults fill what the caller left at 0 */
    r = pr = ps = g = 0;
    km__policy_key_defaults(p, KM_KEY_AES_256_GCM, &r, &pr, &ps, &g);
    ck_assert_uint_eq(r, 365);
    ck_assert_uint_eq(pr, 730);
    ck_assert_uint_eq(ps, 1825);
    ck_assert_uint_eq(g, 40); /* 30 brought into [40, 60] */
    ck_assert_int_eq(km__policy_check_create(p, KM_KEY_AES_256_GCM, 0, now, r, pr, ps, g), KM_OK);
    r = ps = g = 0;
    pr = 90;  /* rotate before protect-stop */
    km__policy_key_defaults(p, KM_KEY_AES_256_GCM, &r, &pr, &ps, &g);
    ck_assert_uint_eq(r, 90);
    ck_assert_uint_eq(pr, 90);
    r = pr = g = 0;
    ps = 300; /* protect-stop never after process-stop */
    km__policy_key_defaults(p, KM_KEY_HMAC_SHA256, &r, &pr, &ps, &g);
    ck_assert_uint_eq(pr, 300);
    ck_assert_uint_eq(r, 300);
    r = 20;   /* a given value is kept */
    pr = ps = g = 0;
    km__policy_key_defaults(p, KM_KEY_ED25519, &r, &pr, &ps, NULL);
    ck_assert_uint_eq(r, 20);
    ck_assert_uint_eq(pr, 1095);
    ck_assert_uint_eq(ps, 0);
    km__policy_key_defaults(p, KM_KEY_ED25519, NULL, NULL, NULL, NULL); /* accepts NULLs */
    km__policy_free(p);
    km__policy_free(def);
}
END_TEST

START_TEST(test_policy_usage_limit_lowered)
{
    km__policy *def = deflt(0), *p;
    uint64_t limit, rot;

    p = parse_ok("{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": 1000},"
                 " \"rotation\": {\"usage_fraction\": 0.5}}", def);
    km__policy_usage_limit(p, KM_KEY_AES_192_GCM, &limit, &rot);
    ck_assert_uint_eq(limit, 1000);
    ck_assert_uint_eq(rot, 500);
    km__policy_free(p);
    p = parse_ok("{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": 1}}", def);
    km__policy_usage_limit(p, KM_KEY_AES_192_GCM, &limit, &rot);
    ck_assert_uint_eq(limit, 1);
    ck_assert_uint_eq(rot, 1);
    km__policy_free(p);
    p = parse_ok("{\"version\": 1, \"rotation\": {\"usage_fraction\": 1}}", NULL);
    km__policy_usage_limit(p, KM_KEY_AES_256_GCM, &limit, &rot);
    ck_assert_uint_eq(rot, (uint64_t)1 << 32);
    km__policy_free(p);
    /* SP 800-38D bound: never above 2^32 */
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": "
                                "4294967297}}", NULL), KM_E_INVALID);
    assert_msg_has("usage_limits.aes-gcm-invocations: 4294967297 is out of range (1 to 4294967296)");
    km__policy_free(def);
}
END_TEST

START_TEST(test_policy_approvals)
{
    km__policy *def = deflt(0), *v, *k;
    v = parse_ok("{\"version\": 1, \"dual_control\": {\"destroy\": 2, \"export\": 1}}", def);
    ck_assert_uint_eq(km__policy_approvals(v, "destroy"), 2);
    ck_assert_uint_eq(km__policy_approvals(v, "export"), 1);
    ck_assert_uint_eq(km__policy_approvals(v, "import-raw"), 0);
    k = parse_ok("{\"version\": 1, \"dual_control\": {\"export\": 3, \"import-raw\": 1}}", v);
    ck_assert_uint_eq(km__policy_approvals(k, "destroy"), 2); /* inherited */
    ck_assert_uint_eq(km__policy_approvals(k, "export"), 3);
    ck_assert_uint_eq(km__policy_approvals(k, "import-raw"), 1);
    km__policy_free(k);
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"dual_control\": {\"destroy\": 1}}", v),
                     KM_E_POLICY);
    assert_msg_has("dual_control.destroy loosens the vault policy (vault 2, key 1)");
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"dual_control\": {\"destroy\": 17}}", NULL),
                     KM_E_INVALID);
    km__policy_free(v);
    km__policy_free(def);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_policy_bad_json_names_line_and_column)
{
    static const char missing_comma[] = "{\n"
                                        "  \"version\": 1\n"
                                        "  \"profile\": \"fips\"\n"
                                        "}\n";
    static const char trailing[] = "{\"version\": 1}\n\n  x";
    km__policy *p = NULL;

    ck_assert_int_eq(parse_fail(missing_comma, NULL), KM_E_INVALID);
    assert_msg_has("policy line 3 column ");
    assert_msg_has("expected");
    ck_assert_int_eq(parse_fail(trailing, NULL), KM_E_INVALID);
    assert_msg_has("policy line 3 column ");
    ck_assert_int_eq(parse_fail("", NULL), KM_E_INVALID);
    assert_msg_has("policy line ");
    ck_assert_int_eq(parse_fail("{\"version\": 1,}", NULL), KM_E_INVALID);
    assert_msg_has("policy line 1 column ");
    ck_assert_int_eq(parse_fail("[1, 2]", NULL), KM_E_INVALID);
    assert_msg_has("policy line 1 column 1: document: expected an object, got an array");
    /* an embedded NUL is not JSON */
    ck_assert_int_eq(km__policy_parse(&p, "{\"version\": 1}\0", 15, NULL), KM_E_INVALID);
    ck_assert_ptr_null(p);
    /* arguments */
    ck_assert_int_eq(km__policy_parse(&p, NULL, 0, NULL), KM_E_INVALID);
    ck_assert_int_eq(km__policy_parse(NULL, "{}", 2, NULL), KM_E_INVALID);
    ck_assert_int_eq(km__policy_check_create(NULL, KM_KEY_AES_128_GCM, 0, 0, 0, 0, 0, 0), KM_E_INVALID);
    ck_assert_ptr_null(km__policy_to_json(NULL));
    km__policy_free(NULL);
}
END_TEST

START_TEST(test_policy_unknown_field_named)
{
    static const struct {
        const char *doc;
        const char *msg;
    } cases[] = {
        { "{\n  \"version\": 1,\n  \"rotaton\": {}\n}",
          "policy line 3 column 3: rotaton: unknown field (expected version, profile," },
        { "{\n  \"version\": 1,\n  \"algorithms\": {\n    \"rsa-2048\": {\"alowed\": false}\n  }\n}",
          "policy line 4 column 18: algorithms.rsa-2048.alowed: unknown field (expected allowed, "
          "min_bits, protect_until)" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-1024\": {}}}",
          "policy line 1 column 31: algorithms.rsa-1024: unknown key type" },
        { "{\"version\": 1, \"cryptoperiods\": {\"symmetric\": {}}}",
          "cryptoperiods.symmetric: unknown field" },
        { "{\"version\": 1, \"cryptoperiods\": {\"hmac\": {\"protect\": 5}}}",
          "cryptoperiods.hmac.protect: unknown field (expected protect_days, process_days)" },
        { "{\"version\": 1, \"rotation\": {\"period\": 5}}", "rotation.period: unknown field" },
        { "{\"version\": 1, \"usage_limits\": {\"aes-gcm-bytes\": 5}}",
          "usage_limits.aes-gcm-bytes: unknown field" },
        { "{\"version\": 1, \"destruction\": {\"grace\": 5}}", "destruction.grace: unknown field" },
        { "{\"version\": 1, \"dual_control\": {\"sign\": 2}}", "dual_control.sign: unknown operation" },
        { "{\"version\": 1, \"security_strength\": {\"max\": 2}}",
          "security_strength.max: unknown field" },
        /* an escaped key is found as the name it spells */
        { "{\"version\": 1,\n \"rot\\u0061ton\": 1}", "policy line 2 column 2: rotaton: unknown field" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(parse_fail(cases[i].doc, NULL), KM_E_INVALID);
        assert_msg_has(cases[i].msg);
    }
}
END_TEST

START_TEST(test_policy_wrong_type_named)
{
    static const struct {
        const char *doc;
        const char *msg;
    } cases[] = {
        { "{\n  \"version\": 1,\n  \"algorithms\": {\n    \"rsa-2048\": {\"allowed\": \"yes\"}\n  }\n}",
          "policy line 4 column 29: algorithms.rsa-2048.allowed: expected true or false, got a string" },
        { "{\"version\": 1, \"algorithms\": []}",
          "policy line 1 column 30: algorithms: expected an object, got an array" },
        { "{\"version\": 1, \"algorithms\": {\"aes-128-gcm\": {\"min_bits\": 128.5}}}",
          "algorithms.aes-128-gcm.min_bits: expected an integer, got a real number" },
        { "{\"version\": 1, \"cryptoperiods\": {\"hmac\": {\"process_days\": \"730\"}}}",
          "cryptoperiods.hmac.process_days: expected an integer or null, got a string" },
        { "{\"version\": 1, \"cryptoperiods\": {\"required\": 1}}",
          "cryptoperiods.required: expected true or false, got an integer" },
        { "{\"version\": 1, \"rotation\": {\"usage_fraction\": \"0.9\"}}",
          "rotation.usage_fraction: expected a number, got a string" },
        { "{\"version\": 1, \"rotation\": {\"max_days\": null}}",
          "rotation.max_days: expected an integer, got null" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": 2030}}}",
          "algorithms.rsa-2048.protect_until: expected a date \"YYYY-MM-DD\" or null, got an integer" },
        { "{\"version\": \"1\"}", "policy line 1 column 13: version: expected an integer, got a string" },
        { "{\"version\": 1, \"profile\": 1}", "profile: expected \"default\" or \"fips\", got an integer" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(parse_fail(cases[i].doc, NULL), KM_E_INVALID);
        assert_msg_has(cases[i].msg);
    }
}
END_TEST

START_TEST(test_policy_bad_values_named)
{
    static const struct {
        const char *doc;
        int rc;
        const char *msg;
    } cases[] = {
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": \"2030-02-30\"}}}",
          KM_E_INVALID, "algorithms.rsa-2048.protect_until: not a date" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": \"2030-13-01\"}}}",
          KM_E_INVALID, "not a date" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": \"31-12-2030\"}}}",
          KM_E_INVALID, "not a date" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": \"1969-12-31\"}}}",
          KM_E_INVALID, "not a date" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"protect_until\": \"2030-12-31 \"}}}",
          KM_E_INVALID, "not a date" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"min_bits\": 0}}}",
          KM_E_INVALID, "algorithms.rsa-2048.min_bits: 0 is out of range (1 to 16384)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"hmac\": {\"protect_days\": 0}}}",
          KM_E_INVALID, "cryptoperiods.hmac.protect_days: 0 is out of range (1 to 36500, or null)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"hmac\": {\"protect_days\": -5}}}",
          KM_E_INVALID, "cryptoperiods.hmac.protect_days: -5 is out of range" },
        { "{\"version\": 1, \"cryptoperiods\": {\"hmac\": {\"protect_days\": 900, \"process_days\": 800}}}",
          KM_E_INVALID, "cryptoperiods.hmac.process_days: 800 is shorter than protect_days (900)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"key-agreement\": {\"protect_days\": null}}}",
          KM_E_INVALID, "cryptoperiods.key-agreement.process_days: a maximum recipient-usage period "
          "needs a maximum protect_days" },
        { "{\"version\": 1, \"destruction\": {\"min_grace_days\": 60, \"max_grace_days\": 30}}",
          KM_E_INVALID, "destruction.min_grace_days: 60 is greater than max_grace_days (30)" },
        { "{\"version\": 1, \"destruction\": {\"max_grace_days\": 3651}}",
          KM_E_INVALID, "destruction.max_grace_days: 3651 is out of range (1 to 3650)" },
        { "{\"version\": 1, \"rotation\": {\"usage_fraction\": 0}}",
          KM_E_INVALID, "rotation.usage_fraction: expected a fraction greater than 0 and at most 1" },
        { "{\"version\": 1, \"rotation\": {\"usage_fraction\": 1.5}}", KM_E_INVALID, "usage_fraction" },
        { "{\"version\": 1, \"security_strength\": {\"minimum\": 120}}",
          KM_E_INVALID, "security_strength.minimum: expected 112, 128, 192 or 256" },
        { "{\"version\": 1, \"security_strength\": {\"minimum\": 80}}",
          KM_E_INVALID, "security_strength.minimum: 80 is out of range" },
        { "{\"version\": 1, \"profile\": \"strict\"}", KM_E_INVALID,
          "policy line 1 column 27: profile: expected \"default\" or \"fips\"" },
        { "{\"profile\": \"fips\"}", KM_E_INVALID,
          "policy: version: missing (a policy document starts with \"version\": 1)" },
        { "{\"version\": 0}", KM_E_INVALID, "version: expected 1" },
        { "{\n\"version\": 2}", KM_E_UNSUPPORTED,
          "policy line 2 column 12: version: version 2 is newer than this libkm supports (1)" },
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(parse_fail(cases[i].doc, NULL) == cases[i].rc, "case %zu: %s", i, last_msg());
        assert_msg_has(cases[i].msg);
    }
}
END_TEST

START_TEST(test_policy_duplicate_keys_refused)
{
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"version\": 1}", NULL), KM_E_INVALID);
    assert_msg_has("policy line 1 column ");
    assert_msg_has("duplicate object key");
    ck_assert_int_eq(parse_fail("{\n  \"version\": 1,\n  \"algorithms\": {\n"
                                "    \"rsa-2048\": {\"allowed\": false, \"allowed\": true}\n  }\n}",
                                NULL), KM_E_INVALID);
    assert_msg_has("policy line 4 column ");
    assert_msg_has("duplicate object key");
}
END_TEST

/* ------------------------------------------------------------ tightening */

START_TEST(test_policy_loosening_key_rule_refused)
{
    static const struct {
        const char *doc;
        const char *msg;
    } loosen[] = {
        { "{\"version\": 1,\n \"rotation\": {\"max_days\": 180}}",
          "policy line 2 column 27: rotation.max_days loosens the vault policy (vault 90, key 180)" },
        { "{\"version\": 1, \"algorithms\": {\"rsa-2048\": {\"allowed\": true}}}",
          "algorithms.rsa-2048.allowed loosens the vault policy (vault false, key true)" },
        { "{\"version\": 1, \"algorithms\": {\"hmac-sha256\": {\"min_bits\": 128}}}",
          "algorithms.hmac-sha256.min_bits loosens the vault policy (vault 256, key 128)" },
        { "{\"version\": 1, \"security_strength\": {\"minimum\": 112}}",
          "security_strength.minimum loosens the vault policy (vault 128, key 112)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"required\": false}}",
          "cryptoperiods.required loosens the vault policy (vault true, key false)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"symmetric-data\": {\"protect_days\": 400}}}",
          "cryptoperiods.symmetric-data.protect_days loosens the vault policy (vault 365, key 400)" },
        { "{\"version\": 1, \"cryptoperiods\": {\"symmetric-data\": {\"process_days\": null}}}",
          "cryptoperiods.symmetric-data.process_days loosens the vault policy (vault 1460, key no "
          "maximum)" },
        { "{\"version\": 1, \"rotation\": {\"required\": false}}",
          "rotation.required loosens the vault policy (vault true, key false)" },
        { "{\"version\": 1, \"rotation\": {\"usage_fraction\": 0.6}}",
          "rotation.usage_fraction loosens the vault policy (vault 0.5, key 0.6)" },
        { "{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": 1000000001}}",
          "usage_limits.aes-gcm-invocations loosens the vault policy (vault 1000000000, key 1000000001)" },
        { "{\"version\": 1, \"destruction\": {\"min_grace_days\": 29}}",
          "destruction.min_grace_days loosens the vault policy (vault 30, key 29)" },
        { "{\"version\": 1, \"destruction\": {\"max_grace_days\": 61}}",
          "destruction.max_grace_days loosens the vault policy (vault 60, key 61)" },
        { "{\"version\": 1, \"dual_control\": {\"export\": 1}}",
          "dual_control.export loosens the vault policy (vault 2, key 1)" },
        { "{\"version\": 1, \"profile\": \"default\"}",
          "policy line 1 column 27: profile loosens the vault policy (vault fips, key default)" },
        { "{\"version\": 1, \"algorithms\": {\"aes-256-gcm\": {\"protect_until\": \"2031-01-01\"}},"
          " \"security_strength\": {\"protect_112_until\": \"2031-01-01\"}}",
          "security_strength.protect_112_until loosens the vault policy (vault 2030-12-31, key "
          "2031-01-01)" },
    };
    km__policy *def = deflt(0), *vault = parse_ok(strict_doc, def), *base2, *k;
    int64_t now = utc(2025, 1, 1, 0, 0, 0);
    size_t i;

    for (i = 0; i < sizeof loosen / sizeof loosen[0]; i++) {
        ck_assert_msg(parse_fail(loosen[i].doc, vault) == KM_E_POLICY, "case %zu: %s", i, last_msg());
        assert_msg_has(loosen[i].msg);
    }

    /* a rule the key's document does not spell out is named by its path */
    base2 = parse_ok("{\"version\": 1, \"algorithms\": {\"aes-128-gcm\": {\"allowed\": false}}}", def);
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"profile\": \"default\"}", base2), KM_E_POLICY);
    assert_msg_has("policy: algorithms.aes-128-gcm.allowed loosens the vault policy (vault false, "
                   "key true)");
    /* a protect_until date may be brought earlier, never later or removed */
    k = parse_ok("{\"version\": 1, \"algorithms\": {\"ec-p256\": {\"protect_until\": \"2035-12-31\"}}}",
                 def);
    ck_assert_int_eq(parse_fail("{\"version\": 1, \"algorithms\": {\"ec-p256\": {\"protect_until\": "
                                "null}}}", k), KM_E_POLICY);
    assert_msg_has("algorithms.ec-p256.protect_until loosens the vault policy (vault 2035-12-31, key "
                   "none)");
    km__policy_free(k);
    km__policy_free(base2);

    /* tightening is accepted and applied on top of the vault's rules */
    k = parse_ok("{\"version\": 1, \"algorithms\": {\"ec-p384\": {\"allowed\": false},"
                 " \"aes-256-gcm\": {\"protect_until\": \"2026-12-31\"}},"
                 " \"rotation\": {\"max_days\": 30},"
                 " \"cryptoperiods\": {\"symmetric-data\": {\"protect_days\": 90, \"process_days\": 400}},"
                 " \"destruction\": {\"min_grace_days\": 45}}", vault);
    ck_assert_str_eq(km__policy_profile(k), "fips"); /* inherited */
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_EC_P384, 0, now, 30, 0, 0, 45), KM_E_POLICY);
    assert_msg_has("policy rule algorithms.ec-p384.allowed");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_256_GCM, 0, now, 31, 90, 400, 45), KM_E_POLICY);
    assert_msg_has("policy rule rotation.max_days");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_256_GCM, 0, now, 30, 91, 400, 45), KM_E_POLICY);
    assert_msg_has("policy rule cryptoperiods.symmetric-data.protect_days");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_256_GCM, 0, now, 30, 90, 400, 44), KM_E_POLICY);
    assert_msg_has("policy rule destruction.min_grace_days");
    ck_assert_int_eq(km__policy_check_create(k, KM_KEY_AES_256_GCM, 0, now, 30, 90, 400, 45), KM_OK);
    ck_assert_int_eq(km__policy_check_protect(k, KM_KEY_AES_256_GCM, utc(2027, 1, 1, 0, 0, 0)),
                     KM_E_POLICY);
    assert_msg_has("policy rule algorithms.aes-256-gcm.protect_until");
    ck_assert_uint_eq(km__policy_approvals(k, "destroy"), 2);
    km__policy_free(k);
    /* an empty key policy is the vault's */
    k = parse_ok("{\"version\": 1}", vault);
    ck_assert(km__policy_equal(k, vault));
    km__policy_free(k);
    km__policy_free(vault);
    km__policy_free(def);
}
END_TEST

/* ------------------------------------------------------------ round trip */

START_TEST(test_policy_round_trip)
{
    km__policy *def = deflt(0), *pol[5], *back, *copy = NULL;
    char *js, *js2;
    int i;

    pol[0] = deflt(0);
    pol[1] = deflt(1);
    pol[2] = parse_ok(strict_doc, NULL);
    pol[3] = parse_ok("{\"version\": 1, \"algorithms\": {\"rsa-3072\": {\"protect_until\": \"2000-02-29\"}},"
                      " \"security_strength\": {\"protect_112_until\": null},"
                      " \"cryptoperiods\": {\"hmac\": {\"protect_days\": null, \"process_days\": null}},"
                      " \"rotation\": {\"usage_fraction\": 0.123456789012345678}}", NULL);
    pol[4] = parse_ok("{\"version\": 1, \"rotation\": {\"usage_fraction\": 1}}", NULL);
    for (i = 0; i < 5; i++) {
        js = km__policy_to_json(pol[i]);
        ck_assert_ptr_nonnull(js);
        back = parse_ok(js, NULL);
        ck_assert_msg(km__policy_equal(back, pol[i]), "policy %d does not round-trip:\n%s", i, js);
        /* the text is stable */
        js2 = km__policy_to_json(back);
        ck_assert_str_eq(js, js2);
        /* every rule is spelled out: parsing on top of another base gives the same */
        km__policy_free(back);
        back = parse_ok(js, pol[i]);
        ck_assert(km__policy_equal(back, pol[i]));
        km__policy_free(back);
        free(js);
        free(js2);
    }
    ck_assert(!km__policy_equal(pol[3], def));
    ck_assert_int_eq(km__policy_dup(&copy, pol[3]), KM_OK);
    ck_assert(km__policy_equal(copy, pol[3]));
    km__policy_free(copy);
    js = km__policy_to_json(pol[0]);
    ck_assert_ptr_nonnull(strstr(js, "\"usage_fraction\": 0.9"));
    ck_assert_ptr_nonnull(strstr(js, "\"aes-gcm-invocations\": 4294967296"));
    free(js);
    for (i = 0; i < 5; i++)
        km__policy_free(pol[i]);
    km__policy_free(def);
}
END_TEST

/* -------------------------------------------------------- policy report */

START_TEST(test_policy_out_of_policy_report)
{
    km__policy *def = deflt(0), *fips = deflt(1), *req, *tight;
    int64_t now = utc(2026, 6, 1, 0, 0, 0), later = utc(2031, 3, 1, 0, 0, 0);
    char why[512], small[16];

    /* a key within the policy */
    strcpy(why, "junk");
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_AES_256_GCM, now, now - 10 * DAY, 90,
                                                  730, 1825, why, sizeof why), 0);
    ck_assert_str_eq(why, "");
    /* no periods at all is fine while nothing is required */
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_EC_P256, now, now - 900 * DAY, 0, 0, 0,
                                                  why, sizeof why), 0);

    /* a type the policy no longer allows */
    ck_assert_int_eq(km__policy_key_out_of_policy(fips, KM_KEY_X25519, now, now - DAY, 0, 0, 0, why,
                                                  sizeof why), 1);
    ck_assert_str_eq(why, "algorithms.x25519.allowed: x25519 keys are not allowed");

    /* RSA-2048 still protecting after 2030: both rules named, in order */
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_RSA_2048, later, later - DAY, 0, 0, 0,
                                                  why, sizeof why), 1);
    ck_assert_str_eq(why, "algorithms.rsa-2048.protect_until: still has a primary version after "
                          "2030-12-31; security_strength.protect_112_until: 112-bit strength still "
                          "protecting after 2030-12-31");
    /* ... but not once no version protects (decrypt/verify only) */
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_RSA_2048, later, 0, 0, 0, 0, why,
                                                  sizeof why), 0);

    /* rotation overdue: 90-day period, primary 91 days old; 89 days is fine */
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_AES_128_GCM, now, now - 91 * DAY, 90, 0,
                                                  0, why, sizeof why), 1);
    ck_assert_str_eq(why, "rotation: rotation overdue, the primary version is 91 days old (rotate "
                          "every 90)");
    ck_assert_int_eq(km__policy_key_out_of_policy(def, KM_KEY_AES_128_GCM, now, now - 89 * DAY, 90, 0,
                                                  0, why, sizeof why), 0);

    /* the vault tightened after the key was made */
    tight = parse_ok("{\"version\": 1, \"cryptoperiods\": {\"symmetric-data\": {\"protect_days\": 365,"
                     " \"process_days\": 1000}}, \"rotation\": {\"max_days\": 60},"
                     " \"security_strength\": {\"minimum\": 128}}", def);
    ck_assert_int_eq(km__policy_key_out_of_policy(tight, KM_KEY_AES_256_GCM, now, now - DAY, 90, 730,
                                                  1825, why, sizeof why), 1);
    ck_assert_str_eq(why, "cryptoperiods.symmetric-data.protect_days: 730 days, over the maximum of "
                          "365; cryptoperiods.symmetric-data.process_days: 1825 days, over the "
                          "maximum of 1000; rotation.max_days: rotates every 90 days, over the "
                          "maximum of 60");
    ck_assert_int_eq(km__policy_key_out_of_policy(tight, KM_KEY_RSA_2048, now, now - DAY, 0, 0, 0, why,
                                                  sizeof why), 1);
    ck_assert_str_eq(why, "security_strength.minimum: 112-bit security strength, below the minimum "
                          "of 128");

    /* required periods and rotation, none set, primary older than max_days */
    req = parse_ok("{\"version\": 1, \"cryptoperiods\": {\"required\": true},"
                   " \"rotation\": {\"required\": true, \"max_days\": 365}}", def);
    ck_assert_int_eq(km__policy_key_out_of_policy(req, KM_KEY_HMAC_SHA256, now, now - 400 * DAY, 0, 0,
                                                  0, why, sizeof why), 1);
    ck_assert_str_eq(why, "cryptoperiods.required: no originator-usage period (protect_days); "
                          "cryptoperiods.required: no recipient-usage period (process_days); "
                          "rotation.required: no rotation period; rotation.max_days: rotation "
                          "overdue, the primary version is 400 days old (rotate every 365)");

    /* a short buffer is truncated and terminated; NULL is allowed */
    ck_assert_int_eq(km__policy_key_out_of_policy(req, KM_KEY_HMAC_SHA256, now, now - 400 * DAY, 0, 0,
                                                  0, small, sizeof small), 1);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(strncmp(small, "cryptoperiods.r", sizeof small - 1), 0);
    ck_assert_int_eq(km__policy_key_out_of_policy(req, KM_KEY_HMAC_SHA256, now, 0, 0, 0, 0, NULL, 0), 1);
    km__policy_free(req);
    km__policy_free(tight);
    km__policy_free(fips);
    km__policy_free(def);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *policy_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("policy", NULL, &tc, 30, NULL, NULL);

    tcase_add_test(tc, test_policy_defaults_match_document);
    tcase_add_test(tc, test_policy_document_examples);
    tcase_add_test(tc, test_policy_defaults_nist_values);
    tcase_add_test(tc, test_policy_type_names_match_core);
    tcase_add_test(tc, test_policy_fips_refuses_x25519);
    tcase_add_test(tc, test_policy_112_bit_strength_until_2030);
    tcase_add_test(tc, test_policy_min_sizes);
    tcase_add_test(tc, test_policy_periods_over_maxima);
    tcase_add_test(tc, test_policy_required_periods_and_defaults);
    tcase_add_test(tc, test_policy_usage_limit_lowered);
    tcase_add_test(tc, test_policy_approvals);
    tcase_add_test(tc, test_policy_bad_json_names_line_and_column);
    tcase_add_test(tc, test_policy_unknown_field_named);
    tcase_add_test(tc, test_policy_wrong_type_named);
    tcase_add_test(tc, test_policy_bad_values_named);
    tcase_add_test(tc, test_policy_duplicate_keys_refused);
    tcase_add_test(tc, test_policy_loosening_key_rule_refused);
    tcase_add_test(tc, test_policy_round_trip);
    tcase_add_test(tc, test_policy_out_of_policy_report);
    return s;
}

int main(void)
{
    return tu_run(policy_suite());
}
