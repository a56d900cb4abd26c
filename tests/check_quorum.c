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

/* Sets the dual_control policy: `op` needs `m` approvals. */
static void dual(const char *op, unsigned m)
{
    char pol[200];
    snprintf(pol, sizeof pol, "{\"version\": 1, \"dual_control\": {\"%s\": %u}}", op, m);
    OK(km_policy_set(owner, pol, strlen(pol)));
}

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
    dual("destroy", 2);     /* before the principals open: their contexts read it then */
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

    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_principal_remove(owner, TU_CUST2, 0));
    RC(KM_E_DENIED, km_key_schedule_destroy(old, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "not yet approved"));
    OK(tu_principal_add(owner, "erin-custodian", KM_ROLE_CUSTODIAN, "pc3"));
    c3 = tu_as(dir, "erin-custodian", "pc3");
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
    OK(tu_principal_add(owner, "erin-custodian", KM_ROLE_CUSTODIAN, "pc3"));
    c3 = tu_as(dir, "erin-custodian", "pc3");
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

    OK(tu_principal_add(owner, "erin-custodian", KM_ROLE_CUSTODIAN, "pc3"));
    c3 = tu_as(dir, "erin-custodian", "pc3");
    request_destroy(id, 3600);
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    dual("destroy", 3);
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
    OK(tu_principal_add(owner, "erin-custodian", KM_ROLE_CUSTODIAN, "pc3"));
    c3 = tu_as(dir, "erin-custodian", "pc3");
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
    static const char add_x[] = "add:xavier";
    uint8_t id[16];

    dual("principal-change", 2);
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
    return s;
}

int main(void)
{
    return tu_run(quorum_suite());
}
