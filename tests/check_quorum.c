/* check_quorum.c - dual control through the public API (km/quorum.h): a call
 * under dual control is refused without an approved request; M distinct
 * custodians' approvals make it pass, once, for its requester and its exact
 * arguments; duplicate, self, owner and non-custodian approvals are refused,
 * as are expired, spent and unknown requests. Each test runs on a fresh vault
 * (fake clock) holding the five principals of testutil.h and a deactivated
 * version 1 of key "old", made by the admin. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

#include "testutil.h"

static char *dir;
static km_ctx *owner, *admin, *c1, *c2, *user;
static km_key *old;         /* the admin's handle on "old" */

/* KM_REQ_DESTROY params: BE32 version 1, BE32 grace 7 days */
static const uint8_t destroy_1_7[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };

/* The vault policy of every test: destroy and import need two approvals,
 * and so do the changes that could get round them (a policy that asks fewer
 * for a principal or policy change is refused: test_quorum_self_quorum_policy_refused). */
static const char policy2[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                              "\"import-raw\": 2, \"principal-change\": 2, "
                              "\"policy-change\": 2}, " TU_TEST_CLOCK "}";

/* An approved request of `who` for op (the two custodians approve); its id in id. */
static void approved_id(km_ctx *who, km_request_op op, const char *key, const void *params,
                        size_t len, uint8_t id[16])
{
    OK(km_request_create(who, op, key, params, len, 3600, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
}

static void approved(km_ctx *who, km_request_op op, const char *key, const void *params,
                     size_t len)
{
    uint8_t id[16];
    approved_id(who, op, key, params, len, id);
}

/* The owner adds a third custodian, erin, with the custodians' approval. */
static km_ctx *add_erin(void)
{
    static const char p[] = "add:erin-custodian:custodian";
    approved(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, p, sizeof p - 1);
    OK(tu_principal_add(owner, "erin-custodian", KM_ROLE_CUSTODIAN, "pc3"));
    return tu_as(dir, "erin-custodian", "pc3");
}

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
    /* before the principals open: their contexts read it then */
    OK(km_policy_set(owner, policy2, sizeof policy2 - 1));
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    c2 = tu_as(dir, TU_CUST2, TU_CUST2_PASS);
    user = tu_as(dir, TU_USER, TU_USER_PASS);
    OK(km_key_create(&old, admin, "old", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(old, NULL));
    OK(km_key_revoke(old, 1, KM_REVOKE_SUPERSEDED, 0));
}

static void teardown(void)
{
    km_key_free(old);
    km_close(user);
    km_close(c2);
    km_close(c1);
    km_close(admin);
    tu_teardown(&dir, &owner);
}

/* Opens the admin's context and key again, so that they read a policy
 * changed since (an open context re-reads it only after its refresh period). */
static void reopen_admin(void)
{
    km_key_free(old);
    km_close(admin);
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_open(&old, admin, "old"));
}

/* The admin's request to destroy "old" v1 with 7 days' grace. */
static void request_destroy(uint8_t id[16], uint32_t ttl_s)
{
    OK(km_request_create(admin, KM_REQ_DESTROY, "old", destroy_1_7, sizeof destroy_1_7, ttl_s,
                         id));
}

static km_request_status status(const uint8_t id[16])
{
    km_request_status st;
    memset(&st, 0xee, sizeof st);
    OK(km_request_info(admin, id, &st));
    return st;
}

/* ------------------------------------------------------------ tests */

/* Without a request the call is refused, saying how many approvals it needs. */
START_TEST(test_quorum_call_without_request_denied)
{
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "2 custodian approval"));
}
END_TEST

/* M of N: one approval of two is not enough; the second makes the call pass. */
START_TEST(test_quorum_m_of_n_approvals)
{
    uint8_t id[16];
    km_request_status st;

    request_destroy(id, 3600);
    st = status(id);
    ck_assert_uint_eq(st.approvals, 0);
    ck_assert_uint_eq(st.needed, 2);
    OK(km_request_approve(c1, id));
    ck_assert_uint_eq(status(id).approvals, 1);
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "not yet approved"));
    OK(km_request_approve(c2, id));
    ck_assert_uint_eq(status(id).approvals, 2);
    OK(km_key_schedule_destroy(old, 1, 7));
    ck_assert_int_eq(status(id).consumed, 1);
}
END_TEST

/* An approval given by a custodian who has been removed since no longer
 * counts (issue 18: approvals of removed custodians are void). */
START_TEST(test_quorum_removed_custodian_approval_void)
{
    uint8_t id[16];
    km_ctx *c3;

    static const char rm[] = "remove:" TU_CUST2;

    c3 = add_erin();
    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    approved(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, rm, sizeof rm - 1);
    OK(km_principal_remove(owner, TU_CUST2, 0));
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "not yet approved"));
    OK(km_request_approve(c3, id));
    OK(km_key_schedule_destroy(old, 1, 7));
    km_close(c3);
}
END_TEST

/* A key's own policy may ask for more approvals than the vault's: it is
 * honoured (issue 18: key-level dual control was never consulted). */
START_TEST(test_quorum_key_policy_dual_control)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *g = NULL;
    uint8_t id[16];
    km_ctx *c3;

    o.policy = "{\"version\": 1, \"dual_control\": {\"destroy\": 3}}";
    o.activate_at = tu_now + 10 * 86400;        /* pre-active: destroyable at once */
    OK(km_key_create(&g, admin, "guarded", KM_KEY_AES_256_GCM, &o));
    OK(km_request_create(admin, KM_REQ_DESTROY, "guarded", destroy_1_7, sizeof destroy_1_7,
                         3600, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    RC(KM_E_DENIED, km_key_schedule_destroy(g, 1, 7));     /* the vault's 2 are not enough */
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "3 custodian approval"));
    c3 = add_erin();
    OK(km_request_approve(c3, id));
    OK(km_key_schedule_destroy(g, 1, 7));
    km_key_free(g);
    km_close(c3);
}
END_TEST

/* Three of three: two approvals are short; the policy's count is the one in
 * force when the call is made. */
START_TEST(test_quorum_needed_follows_policy)
{
    uint8_t id[16];
    km_ctx *c3;

    static const char pol3[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 3, "
                               "\"principal-change\": 3, \"policy-change\": 3}, "
                               TU_TEST_CLOCK "}";

    c3 = add_erin();
    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    approved(owner, KM_REQ_POLICY_CHANGE, NULL, pol3, sizeof pol3 - 1);
    OK(km_policy_set(owner, pol3, sizeof pol3 - 1));
    reopen_admin();
    ck_assert_uint_eq(status(id).needed, 3);
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "3 custodian approval"));
    OK(km_request_approve(c3, id));
    OK(km_key_schedule_destroy(old, 1, 7));
    km_close(c3);
}
END_TEST

/* One custodian approving twice counts once: the second is refused. */
START_TEST(test_quorum_duplicate_approval_refused)
{
    uint8_t id[16];

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    RC(KM_E_EXISTS, km_request_approve(c1, id));
    ck_assert_uint_eq(status(id).approvals, 1);
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
}
END_TEST

/* A custodian approving the same request from a second context of its own
 * is still the same custodian. */
START_TEST(test_quorum_same_custodian_other_context_refused)
{
    uint8_t id[16];
    km_ctx *again = tu_as(dir, TU_CUST1, TU_CUST1_PASS);

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    RC(KM_E_EXISTS, km_request_approve(again, id));
    ck_assert_uint_eq(status(id).approvals, 1);
    km_close(again);
}
END_TEST

/* Only custodians approve: not the admin, a user, an auditor, nor the owner. */
START_TEST(test_quorum_wrong_custodian_refused)
{
    uint8_t id[16];
    km_ctx *aud = tu_as(dir, TU_AUDITOR, TU_AUDITOR_PASS);

    request_destroy(id, 3600);
    RC(KM_E_DENIED, km_request_approve(user, id));
    RC(KM_E_DENIED, km_request_approve(aud, id));
    RC(KM_E_DENIED, km_request_approve(owner, id));
    ck_assert_uint_eq(status(id).approvals, 0);
    km_close(aud);
}
END_TEST

/* A requester who is also a custodian cannot approve its own request. */
START_TEST(test_quorum_self_approval_refused)
{
    uint8_t id[16];
    km_ctx *both;
    km_key *k = NULL;

    static const char addb[] = "add:bob-both:custodian,admin";

    approved(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, addb, sizeof addb - 1);
    OK(tu_principal_add(owner, "bob-both", KM_ROLE_ADMIN | KM_ROLE_CUSTODIAN, "pb"));
    both = tu_as(dir, "bob-both", "pb");
    OK(km_key_open(&k, both, "old"));
    OK(km_request_create(both, KM_REQ_DESTROY, "old", destroy_1_7, sizeof destroy_1_7, 3600, id));
    RC(KM_E_DENIED, km_request_approve(both, id));
    ck_assert_uint_eq(status(id).approvals, 0);
    OK(km_request_approve(c1, id));
    RC(KM_E_DENIED, km_key_schedule_destroy(k, 1, 7));   /* its own approval did not count */
    OK(km_request_approve(c2, id));
    OK(km_key_schedule_destroy(k, 1, 7));
    km_key_free(k);
    km_close(both);
}
END_TEST

/* A request serves once: a replay of the call, and later approvals, are refused. */
START_TEST(test_quorum_replay_refused)
{
    uint8_t id[16];
    km_ctx *c3;

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_key_schedule_destroy(old, 1, 7));
    OK(km_key_cancel_destroy(old, 1));
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    c3 = add_erin();
    RC(KM_E_STATE, km_request_approve(c3, id));
    ck_assert_int_eq(status(id).consumed, 1);
    km_close(c3);
}
END_TEST

/* An expired request can be neither approved nor used, even fully approved. */
START_TEST(test_quorum_expired_request_refused)
{
    uint8_t id[16], id2[16];

    request_destroy(id, 600);
    OK(km_request_approve(c1, id));
    tu_now += 601;
    RC(KM_E_STATE, km_request_approve(c2, id));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "expired"));
    /* approved in time, used too late */
    request_destroy(id2, 600);
    OK(km_request_approve(c1, id2));
    OK(km_request_approve(c2, id2));
    tu_now += 600;
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "expired"));
    ck_assert_int_eq(status(id2).consumed, 0);
}
END_TEST

/* The request binds its exact arguments: other arguments are refused. */
START_TEST(test_quorum_other_arguments_refused)
{
    uint8_t id[16];

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 8));
    ck_assert_int_eq(status(id).consumed, 0);
    OK(km_key_schedule_destroy(old, 1, 7));
}
END_TEST

/* Only the requester can use its approved request. */
START_TEST(test_quorum_other_caller_refused)
{
    uint8_t id[16];
    km_key *k = NULL;

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_key_open(&k, owner, "old"));
    RC(KM_E_DENIED, km_key_schedule_destroy(k, 1, 7));
    km_key_free(k);
    ck_assert_int_eq(status(id).consumed, 0);
    OK(km_key_schedule_destroy(old, 1, 7));
}
END_TEST

/* Only a caller allowed to make the call may ask; bad requests are refused. */
START_TEST(test_quorum_request_create_checks)
{
    uint8_t id[16];

    RC(KM_E_DENIED, km_request_create(user, KM_REQ_DESTROY, "old", destroy_1_7, 8, 0, id));
    RC(KM_E_NOTFOUND, km_request_create(admin, KM_REQ_DESTROY, "missing", destroy_1_7, 8, 0,
                                        id));
    RC(KM_E_INVALID, km_request_create(admin, KM_REQ_DESTROY, NULL, destroy_1_7, 8, 0, id));
    RC(KM_E_INVALID, km_request_create(admin, (km_request_op)99, "old", destroy_1_7, 8, 0, id));
    RC(KM_E_INVALID, km_request_create(admin, KM_REQ_DESTROY, "old", destroy_1_7, 8,
                                       KM_REQUEST_TTL_MAX + 1, id));
    /* a principal change names no key (a policy change may: km_key_set of that key) */
    RC(KM_E_INVALID, km_request_create(admin, KM_REQ_PRINCIPAL_CHANGE, "old",
                                       (const uint8_t *)"add:x", 5, 0, id));
    RC(KM_E_NOTFOUND, km_request_create(admin, KM_REQ_POLICY_CHANGE, "missing",
                                        (const uint8_t *)"{}", 2, 0, id));
}
END_TEST

/* A request's state: operation, key, requester, lifetime. */
START_TEST(test_quorum_request_info)
{
    uint8_t id[16], unknown[16];
    km_request_status st;

    request_destroy(id, 0);
    st = status(id);
    ck_assert_int_eq(st.op, KM_REQ_DESTROY);
    ck_assert_str_eq(st.key_name, "old");
    ck_assert_str_eq(st.requester, TU_ADMIN);
    ck_assert_int_eq(st.created, tu_now);
    ck_assert_int_eq(st.expires, tu_now + KM_REQUEST_TTL_DEFAULT);
    ck_assert_int_eq(st.consumed, 0);
    memset(unknown, 0x42, sizeof unknown);
    RC(KM_E_NOTFOUND, km_request_info(admin, unknown, &st));
    RC(KM_E_NOTFOUND, km_request_approve(c1, unknown));
}
END_TEST

/* A principal change under dual control names the principal: the approval
 * of "add:x" does not add "y". */
START_TEST(test_quorum_principal_change_bound_to_name)
{
    static const char add_x[] = "add:xavier:user";
    uint8_t id[16];

    RC(KM_E_DENIED, tu_principal_add(owner, "xavier", KM_ROLE_USER, "px"));
    OK(km_request_create(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)add_x,
                         sizeof add_x - 1, 0, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    RC(KM_E_DENIED, tu_principal_add(owner, "yvonne", KM_ROLE_USER, "py"));
    OK(tu_principal_add(owner, "xavier", KM_ROLE_USER, "px"));
    RC(KM_E_DENIED, km_principal_remove(owner, "xavier", 0));
}
END_TEST

/* Key material that arrives wrapped (AES-KWP under a vault KEK, or
 * RSA-OAEP + AES-KWP to the vault's import wrapping key) is under import-raw
 * dual control like plaintext material, the request bound to the blob
 * (issue 18: "import-raw: 2" was bypassed by import --wrapped). */
START_TEST(test_quorum_wrapped_import_needs_approvals)
{
    km_key_options ex = KM_KEY_OPTIONS_INIT;
    km_key *kek = NULL, *src = NULL, *copy = NULL;
    uint8_t blob[1024], pub[4096];
    size_t blob_len, pub_len;

    ex.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&kek, admin, "kek", KM_KEY_AES_256_KWP, NULL));
    OK(km_key_create(&src, admin, "src", KM_KEY_AES_256_GCM, &ex));
    OK(km_key_export_wrapped(src, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &blob_len));
    RC(KM_E_DENIED, km_key_import_wrapped(&copy, admin, "copy1", KM_KEY_AES_256_GCM, KM_WRAP_KWP,
                                          blob, blob_len, NULL));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "import-raw needs 2"));
    approved(admin, KM_REQ_IMPORT_RAW, NULL, blob, blob_len);
    OK(km_key_import_wrapped(&copy, admin, "copy1", KM_KEY_AES_256_GCM, KM_WRAP_KWP, blob,
                             blob_len, NULL));
    RC(KM_E_DENIED, km_key_import_wrapped(NULL, admin, "copy1b", KM_KEY_AES_256_GCM, KM_WRAP_KWP,
                                          blob, blob_len, NULL));      /* served once */
    /* BYOK to the vault's import wrapping key */
    OK(km_vault_wrapping_key(admin, KM_MATERIAL_SPKI_DER, pub, sizeof pub, &pub_len));
    OK(km_key_export_wrapped(src, 0, KM_WRAP_RSA_OAEP_KWP, NULL, pub, pub_len, blob, sizeof blob,
                             &blob_len));
    RC(KM_E_DENIED, km_key_import_wrapped(NULL, admin, "copy2", KM_KEY_AES_256_GCM,
                                          KM_WRAP_RSA_OAEP_KWP, blob, blob_len, NULL));
    approved(admin, KM_REQ_IMPORT_RAW, NULL, blob, blob_len);
    OK(km_key_import_wrapped(NULL, admin, "copy2", KM_KEY_AES_256_GCM, KM_WRAP_RSA_OAEP_KWP,
                             blob, blob_len, NULL));
    km_key_free(copy);
    km_key_free(src);
    km_key_free(kek);
}
END_TEST

/* An approval to add a principal names its roles: the approval for "add
 * mallory as user" does not add mallory as admin (issue 18), and a request
 * that names no roles is refused. */
START_TEST(test_quorum_principal_add_bound_to_roles)
{
    static const char add_user[] = "add:mallory:user";
    uint8_t id[16];

    approved(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, add_user, sizeof add_user - 1);
    RC(KM_E_DENIED, tu_principal_add(owner, "mallory", KM_ROLE_ADMIN, "pm"));
    RC(KM_E_DENIED, tu_principal_add(owner, "mallory", KM_ROLE_USER | KM_ROLE_CUSTODIAN, "pm"));
    OK(tu_principal_add(owner, "mallory", KM_ROLE_USER, "pm"));
    RC(KM_E_INVALID, km_request_create(owner, KM_REQ_PRINCIPAL_CHANGE, NULL,
                                       (const uint8_t *)"add:zed", 7, 0, id));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "add:NAME:ROLES"));
    RC(KM_E_INVALID, km_request_create(owner, KM_REQ_PRINCIPAL_CHANGE, NULL,
                                       (const uint8_t *)"add:zed:root", 12, 0, id));
    RC(KM_E_INVALID, km_request_create(owner, KM_REQ_PRINCIPAL_CHANGE, NULL,
                                       (const uint8_t *)"grant:zed", 9, 0, id));
}
END_TEST

/* What the custodians are shown before they approve: every parameter, as
 * libkm wrote it when the request was made (km_request_describe). */
START_TEST(test_quorum_request_describe)
{
    static const char add2[] = "add:mallory:user,custodian";
    static const char pol[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                              "\"import-raw\": 2, \"principal-change\": 2, "
                              "\"policy-change\": 2, \"export\": 1}}";
    static const uint8_t material[32] = { 0x5e, 0xc2, 0xe7 };
    uint8_t id[16];
    char text[4200];
    size_t n = 0;

    request_destroy(id, 0);
    RC(KM_E_BUFFER, km_request_describe(c1, id, NULL, 0, &n));
    ck_assert_uint_gt(n, 1);
    OK(km_request_describe(c1, id, text, sizeof text, &n));
    ck_assert_uint_eq(n, strlen(text) + 1);
    ck_assert_str_eq(text, "destroy version 1 of key 'old' after 7 day(s) of grace");

    OK(km_request_create(owner, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)add2,
                         sizeof add2 - 1, 0, id));
    OK(km_request_describe(c1, id, text, sizeof text, &n));
    ck_assert_str_eq(text, "add principal 'mallory' with role(s) custodian,user");

    OK(km_request_create(owner, KM_REQ_POLICY_CHANGE, NULL, (const uint8_t *)pol,
                         sizeof pol - 1, 0, id));
    OK(km_request_describe(c2, id, text, sizeof text, &n));
    ck_assert_ptr_nonnull(strstr(text, pol));

    OK(km_request_create(admin, KM_REQ_EXPORT, "old", material, 16, 0, id));   /* a KEK id */
    OK(km_request_describe(c2, id, text, sizeof text, &n));
    ck_assert_str_eq(text, "export key 'old' wrapped under the KEK with key id "
                           "5ec2e700000000000000000000000000");

    OK(km_request_create(admin, KM_REQ_IMPORT_RAW, NULL, material, sizeof material, 0, id));
    OK(km_request_describe(c2, id, text, sizeof text, &n));
    ck_assert_ptr_nonnull(strstr(text, "import 32 bytes"));
    ck_assert_ptr_nonnull(strstr(text, "SHA-256 "));
    ck_assert_ptr_null(strstr(text, "5ec2e7"));          /* never the material */
}
END_TEST

/* A vault policy that lets one principal satisfy a quorum alone is refused:
 * with principal-change below destroy, the owner adds two custodians of its
 * own who approve its destroy; with policy-change below it, an admin lowers
 * the count (issue 18; POLICY.md's own example did this). */
START_TEST(test_quorum_self_quorum_policy_refused)
{
    static const char *const weak[] = {
        "{\"version\": 1, \"dual_control\": {\"destroy\": 2, \"export\": 2, "
        "\"policy-change\": 2}}",
        "{\"version\": 1, \"dual_control\": {\"destroy\": 2, \"principal-change\": 2}}",
        "{\"version\": 1, \"dual_control\": {\"destroy\": 3, \"principal-change\": 2, "
        "\"policy-change\": 3}}",
        "{\"version\": 1, \"dual_control\": {\"import-raw\": 1}}",
    };
    static const char *const why[] = { "principal-change is 0", "policy-change is 0",
                                       "principal-change is 2", "principal-change is 0" };
    char *d2 = NULL;
    km_ctx *fresh = NULL;
    size_t i;

    for (i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        RC(KM_E_POLICY, km_policy_set(owner, weak[i], strlen(weak[i])));
        ck_assert_msg(strstr(km_error_last()->message, why[i]) != NULL, "%s: %s", weak[i],
                      km_error_last()->message);
    }
    /* a new vault too, before any approval is asked */
    tu_setup(&d2, &fresh, NULL);
    RC(KM_E_POLICY, km_policy_set(fresh, weak[0], strlen(weak[0])));
    OK(km_policy_set(fresh, policy2, sizeof policy2 - 1));
    tu_teardown(&d2, &fresh);
}
END_TEST

static Suite *quorum_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("quorum", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_quorum_call_without_request_denied);
    tcase_add_test(tc, test_quorum_m_of_n_approvals);
    tcase_add_test(tc, test_quorum_removed_custodian_approval_void);
    tcase_add_test(tc, test_quorum_key_policy_dual_control);
    tcase_add_test(tc, test_quorum_needed_follows_policy);
    tcase_add_test(tc, test_quorum_duplicate_approval_refused);
    tcase_add_test(tc, test_quorum_same_custodian_other_context_refused);
    tcase_add_test(tc, test_quorum_wrong_custodian_refused);
    tcase_add_test(tc, test_quorum_self_approval_refused);
    tcase_add_test(tc, test_quorum_replay_refused);
    tcase_add_test(tc, test_quorum_expired_request_refused);
    tcase_add_test(tc, test_quorum_other_arguments_refused);
    tcase_add_test(tc, test_quorum_other_caller_refused);
    tcase_add_test(tc, test_quorum_request_create_checks);
    tcase_add_test(tc, test_quorum_request_info);
    tcase_add_test(tc, test_quorum_principal_change_bound_to_name);
    tcase_add_test(tc, test_quorum_wrapped_import_needs_approvals);
    tcase_add_test(tc, test_quorum_principal_add_bound_to_roles);
    tcase_add_test(tc, test_quorum_request_describe);
    tcase_add_test(tc, test_quorum_self_quorum_policy_refused);
    return s;
}

int main(void)
{
    return tu_run(quorum_suite());
}
