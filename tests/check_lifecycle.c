/* check_lifecycle.c - the lifecycle table of docs/LIFECYCLE.md, state by state and
 * operation by operation, and the time-driven transitions under a moved clock. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

#include "testutil.h"

#define DAY 86400
static char *dir;
static km_ctx *ctx;

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    o.flags = KM_OPEN_STRICT_REFRESH;
    o.clock = tu_clock;        /* tu_now: 2030-03-17 */
    tu_setup(&dir, &ctx, &o);
}

static void teardown(void)
{
    tu_teardown(&dir, &ctx);
}

static km_key_state state_of(km_key *k, uint32_t version, km_version_info *out)
{
    km_keyinfo *info = NULL;
    km_version_info vi;
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, version - 1, &vi, sizeof vi));
    km_keyinfo_free(info);
    if (out)
        *out = vi;
    return vi.state;
}

/* Brings a fresh key's version 1 into `st`; *ct gets a ciphertext made while
 * it was ACTIVE (none for PRE_ACTIVE). */
static km_key *key_in_state(const char *name, km_key_state st, uint8_t *ct, size_t *ct_len)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    *ct_len = 0;
    if (st == KM_STATE_PRE_ACTIVE)
        o.activate_at = tu_now + DAY;
    OK(km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, &o));
    if (st != KM_STATE_PRE_ACTIVE)
        OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, ct, 100, ct_len));
    switch (st) {
    case KM_STATE_PRE_ACTIVE:
    case KM_STATE_ACTIVE:
        break;
    case KM_STATE_SUSPENDED:
        OK(km_key_suspend(k, 1));
        break;
    case KM_STATE_DEACTIVATED:
        OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
        break;
    case KM_STATE_COMPROMISED:
        OK(km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, tu_now - 10));
        break;
    case KM_STATE_DESTROY_PENDING:
        OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
        OK(km_key_schedule_destroy(k, 1, 7));
        break;
    case KM_STATE_DESTROYED:
        OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
        OK(km_key_schedule_destroy(k, 1, 7));
        tu_now += 8 * DAY;
        OK(km_maintain(ctx, NULL));
        break;
    }
    ck_assert_int_eq(state_of(k, 1, NULL), st);
    return k;
}

enum { A_ACTIVATE, A_SUSPEND, A_RESUME, A_REVOKE, A_COMPROMISE, A_DESTROY, A_CANCEL, A_N };
static const char *const op_names[A_N] = { "activate", "suspend", "resume", "revoke",
                                           "revoke-compromise", "schedule-destroy", "cancel" };

/* Expected state after (op, from), 0 = refused: written from docs/LIFECYCLE.md. */
static km_key_state expected(int op, km_key_state from)
{
    switch (op) {
    case A_ACTIVATE: return from == KM_STATE_PRE_ACTIVE ? KM_STATE_ACTIVE : 0;
    case A_SUSPEND: return from == KM_STATE_ACTIVE ? KM_STATE_SUSPENDED : 0;
    case A_RESUME: return from == KM_STATE_SUSPENDED ? KM_STATE_ACTIVE : 0;
    case A_REVOKE:
        return from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED ? KM_STATE_DEACTIVATED : 0;
    case A_COMPROMISE:
        return from == KM_STATE_PRE_ACTIVE || from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED
                       || from == KM_STATE_DEACTIVATED ? KM_STATE_COMPROMISED : 0;
    case A_DESTROY:
        return from == KM_STATE_PRE_ACTIVE || from == KM_STATE_DEACTIVATED
                       || from == KM_STATE_COMPROMISED ? KM_STATE_DESTROY_PENDING : 0;
    case A_CANCEL:
        return from == KM_STATE_DESTROY_PENDING ? KM_STATE_DEACTIVATED : 0; /* came from there */
    }
    return 0;
}

static int do_op(km_key *k, int op)
{
    switch (op) {
    case A_ACTIVATE: return km_key_activate(k, 1);
    case A_SUSPEND: return km_key_suspend(k, 1);
    case A_RESUME: return km_key_resume(k, 1);
    case A_REVOKE: return km_key_revoke(k, 1, KM_REVOKE_CESSATION_OF_OPERATION, 0);
    case A_COMPROMISE: return km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, tu_now - 1);
    case A_DESTROY: return km_key_schedule_destroy(k, 1, 7);
    case A_CANCEL: return km_key_cancel_destroy(k, 1);
    }
    return KM_E_INTERNAL;
}

/* Every (state x transition) pair. */
START_TEST(test_lifecycle_transition_table)
{
    km_key_state st;
    int op, n = 0;
    for (st = KM_STATE_PRE_ACTIVE; st <= KM_STATE_DESTROYED; st++) {
        for (op = 0; op < A_N; op++) {
            char name[64];
            uint8_t ct[100];
            size_t ct_len;
            km_key *k;
            km_key_state want = expected(op, st), got;
            int rc;
            snprintf(name, sizeof name, "k-%d-%d", (int)st, op);
            k = key_in_state(name, st, ct, &ct_len);
            rc = do_op(k, op);
            got = state_of(k, 1, NULL);
            if (want == 0) {
                ck_assert_msg(rc == KM_E_STATE, "%s from %s gave %s, want KM_E_STATE", op_names[op],
                              km_state_name(st), km_err_name(rc));
                ck_assert_int_eq(got, st); /* nothing changed */
            } else {
                ck_assert_msg(rc == KM_OK, "%s from %s gave %s (%s)", op_names[op], km_state_name(st),
                              km_err_name(rc), km_error_last()->message);
                ck_assert_msg(got == want, "%s from %s gave state %s, want %s", op_names[op],
                              km_state_name(st), km_state_name(got), km_state_name(want));
            }
            km_key_free(k);
            n++;
        }
    }
    ck_assert_int_eq(n, 7 * A_N);
}
END_TEST

/* Protect and process in every state. */
START_TEST(test_lifecycle_operations_by_state)
{
    km_key_state st;
    for (st = KM_STATE_PRE_ACTIVE; st <= KM_STATE_DESTROYED; st++) {
        char name[32];
        uint8_t ct[100], out[100], pt[16];
        size_t ct_len, n;
        int rc, may_protect = st == KM_STATE_ACTIVE;
        int may_process = st == KM_STATE_ACTIVE || st == KM_STATE_SUSPENDED || st == KM_STATE_DEACTIVATED;
        km_key *k;
        snprintf(name, sizeof name, "s-%d", (int)st);
        k = key_in_state(name, st, ct, &ct_len);
        rc = km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &n);
        ck_assert_msg(may_protect ? rc == KM_OK : rc == KM_E_STATE, "encrypt in %s: %s",
                      km_state_name(st), km_err_name(rc));
        if (ct_len > 0) {
            memset(pt, 0xAA, sizeof pt);
            rc = km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n);
            ck_assert_msg(may_process ? rc == KM_OK : rc == KM_E_STATE, "decrypt in %s: %s",
                          km_state_name(st), km_err_name(rc));
            if (rc != KM_OK)
                ck_assert(tu_all_zero(pt, 4));
            rc = km_decrypt(ctx, KM_DECRYPT_ALLOW_COMPROMISED, ct, ct_len, NULL, 0, pt, sizeof pt, &n);
            ck_assert_msg((may_process || st == KM_STATE_COMPROMISED) ? rc == KM_OK : rc == KM_E_STATE,
                          "decrypt (allow compromised) in %s: %s", km_state_name(st), km_err_name(rc));
        }
        km_key_free(k);
    }
}
END_TEST

START_TEST(test_lifecycle_bad_arguments)
{
    km_key *k = NULL;
    km_revoke_reason r;
    OK(km_key_create(&k, ctx, "args", KM_KEY_EC_P256, NULL));
    ck_assert_int_eq(km_key_activate(NULL, 1), KM_E_INVALID);
    ck_assert_int_eq(km_key_suspend(k, 9), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_revoke(k, 1, (km_revoke_reason)0, 0), KM_E_INVALID);
    ck_assert_int_eq(km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, 0), KM_E_INVALID);
    ck_assert_int_eq(km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, tu_now + 5 * DAY), KM_E_INVALID);
    ck_assert_int_eq(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, tu_now), KM_E_INVALID);
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 0), KM_E_INVALID);
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_STATE); /* ACTIVE: never directly */
    OK(km_revoke_reason_from_name("key-compromise", &r));
    ck_assert_int_eq(r, KM_REVOKE_KEY_COMPROMISE);
    ck_assert_str_eq(km_revoke_reason_name(KM_REVOKE_PRIVILEGE_WITHDRAWN), "privilege-withdrawn");
    ck_assert_int_eq(km_revoke_reason_from_name("bored", &r), KM_E_INVALID);
    km_key_free(k);
}
END_TEST

/* The scenario: rotate every 90 days, protect 90 days, process 2
 * years, destroy 30 days later; every step visible in km_key_info. */
START_TEST(test_lifecycle_time_driven)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_maintain_report *rep = NULL;
    km_version_info vi;
    km_keyinfo *info = NULL;
    km_key *k = NULL;
    uint8_t ct1[100], pt[16];
    size_t n1, n;
    const char *name, *action;
    uint32_t ver;
    int64_t t0 = tu_now;

    o.rotate_days = 90;
    o.protect_days = 90;
    o.process_days = 730;
    o.destroy_grace_days = 30;
    OK(km_key_create(&k, ctx, "records", KM_KEY_AES_256_GCM, &o));
    OK(km_encrypt(k, (const uint8_t *)"v1 data", 7, NULL, 0, ct1, sizeof ct1, &n1));
    state_of(k, 1, &vi);
    ck_assert_int_eq(vi.protect_stop, t0 + 90 * DAY);
    ck_assert_int_eq(vi.process_stop, t0 + 730 * DAY);

    tu_now = t0 + 89 * DAY;
    OK(km_maintain(ctx, &rep));
    ck_assert_uint_eq(km_maintain_report_count(rep), 0);
    km_maintain_report_free(rep);

    tu_now = t0 + 90 * DAY;
    OK(km_maintain(ctx, &rep));
    ck_assert_uint_eq(km_maintain_report_count(rep), 2);
    OK(km_maintain_report_get(rep, 0, &name, &ver, &action));
    ck_assert_str_eq(name, "records");
    ck_assert_str_eq(action, "deactivated");
    OK(km_maintain_report_get(rep, 1, &name, &ver, &action));
    ck_assert_str_eq(action, "rotated");
    ck_assert_uint_eq(ver, 2);
    km_maintain_report_free(rep);
    ck_assert_int_eq(state_of(k, 1, NULL), KM_STATE_DEACTIVATED);
    ck_assert_int_eq(state_of(k, 2, NULL), KM_STATE_ACTIVE);
    {
        uint8_t ct2[100];
        OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct2, sizeof ct2, &n));
        ck_assert_int_eq(ct2[23], 2); /* new data goes to the new version */
    }
    OK(km_decrypt(ctx, 0, ct1, n1, NULL, 0, pt, sizeof pt, &n)); /* decrypt-only, still works */

    /* nine more rotations over two years, on time, without a run in between
     * being missed: each run does what is due */
    tu_now = t0 + 180 * DAY;
    OK(km_maintain(ctx, NULL));
    OK(km_key_info(&info, k));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 3);
    ck_assert_uint_eq(km_keyinfo_primary(info), 3);
    km_keyinfo_free(info);

    /* past v1's process-stop: destroy-pending with the grace window, then destroyed */
    tu_now = t0 + 730 * DAY;
    OK(km_maintain(ctx, NULL));
    state_of(k, 1, &vi);
    ck_assert_int_eq(vi.state, KM_STATE_DESTROY_PENDING);
    ck_assert_int_eq(vi.destroy_after, t0 + 760 * DAY);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct1, n1, NULL, 0, pt, sizeof pt, &n), KM_E_STATE);
    tu_now = t0 + 760 * DAY;
    OK(km_maintain(ctx, NULL));
    state_of(k, 1, &vi);
    ck_assert_int_eq(vi.state, KM_STATE_DESTROYED);
    ck_assert_int_gt(vi.created, 0); /* the tombstone keeps the metadata */
    ck_assert_int_eq(km_decrypt(ctx, KM_DECRYPT_ALLOW_COMPROMISED, ct1, n1, NULL, 0, pt, sizeof pt, &n),
                     KM_E_STATE);
    /* a second run has nothing left to do for v1 */
    km_key_free(k);
}
END_TEST

/* A scheduled activation: PRE_ACTIVE until the date, then ACTIVE lazily on use. */
START_TEST(test_lifecycle_scheduled_activation)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    uint8_t ct[100];
    size_t n;
    o.activate_at = tu_now + 3 * DAY;
    OK(km_key_create(&k, ctx, "later", KM_KEY_AES_128_GCM, &o));
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n), KM_E_STATE);
    tu_now += 3 * DAY;
    OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n)); /* lazily activated */
    ck_assert_int_eq(state_of(k, 1, NULL), KM_STATE_ACTIVE);
    km_key_free(k);
}
END_TEST

/* Destruction removes the material: a cancel after the grace window fails,
 * and the version can never be used again, even after reopening. */
START_TEST(test_lifecycle_destroy_is_final)
{
    km_key *k = NULL;
    uint8_t ct[100], pt[16];
    size_t n, m;
    OK(km_key_create(&k, ctx, "gone", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 2), KM_E_POLICY); /* below the 7-day minimum */
    OK(km_key_schedule_destroy(k, 1, 7));
    OK(km_key_cancel_destroy(k, 1));
    ck_assert_int_eq(state_of(k, 1, NULL), KM_STATE_DEACTIVATED);
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    OK(km_key_schedule_destroy(k, 1, 7));
    tu_now += 7 * DAY;
    ck_assert_int_eq(km_key_cancel_destroy(k, 1), KM_E_STATE);
    OK(km_maintain(ctx, NULL));
    ck_assert_int_eq(state_of(k, 1, NULL), KM_STATE_DESTROYED);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_STATE);
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_STATE);
    km_key_free(k);
}
END_TEST

/* A key whose algorithm the policy forbids cannot be created; the refusal
 * names the rule; nothing is written. */
START_TEST(test_policy_forbidden_algorithm)
{
    static const char pol[] = "{\"version\": 1, \"algorithms\": {\"aes-128-gcm\": {\"allowed\": false}}}";
    km_key *k = NULL;
    char buf[8192];
    size_t n;
    OK(km_policy_set(ctx, pol, sizeof pol - 1));
    ck_assert_int_eq(km_key_create(&k, ctx, "weak", KM_KEY_AES_128_GCM, NULL), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "aes-128-gcm"));
    ck_assert_int_eq(km_key_open(&k, ctx, "weak"), KM_E_NOTFOUND);
    OK(km_key_create(&k, ctx, "strong", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    OK(km_policy_get(ctx, buf, sizeof buf, &n));
    ck_assert_ptr_nonnull(strstr(buf, "\"aes-128-gcm\""));
    {
        const char *bad1 = "{\"version\": 1, \"bogus\": 1}", *bad2 = "{\"version\": 1,\n \"x\" ";
        ck_assert_int_eq(km_policy_set(ctx, bad1, strlen(bad1)), KM_E_INVALID);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "bogus"));
        ck_assert_int_eq(km_policy_set(ctx, bad2, strlen(bad2)), KM_E_INVALID);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "line 2"));
    }
}
END_TEST

/* RSA-2048 (112-bit strength) protects until 2030-12-31, then only processes;
 * km_policy_report names it. */
START_TEST(test_policy_algorithm_retired_by_date)
{
    km_key *k = NULL;
    km_policy_findings *f = NULL;
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t n;
    const char *name, *why;
    tu_now = 1924905600; /* 2030-12-31 */
    OK(km_key_create(&k, ctx, "legacy", KM_KEY_RSA_2048, NULL));
    OK(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &n));
    OK(km_policy_report(ctx, &f));
    ck_assert_uint_eq(km_policy_findings_count(f), 0);
    km_policy_findings_free(f);
    tu_now = 1925078400; /* 2031-01-02 */
    ck_assert_int_eq(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &n), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "rsa-2048"));
    {   /* a signature from before the date still verifies */
        uint8_t old[KM_SIGNATURE_MAX];
        size_t on;
        tu_now = 1924905600;
        OK(km_sign(k, 0, (const uint8_t *)"m", 1, old, sizeof old, &on));
        tu_now = 1925078400;
        OK(km_verify(k, 0, 0, (const uint8_t *)"m", 1, old, on));
    }
    OK(km_policy_report(ctx, &f));
    ck_assert_uint_eq(km_policy_findings_count(f), 1);
    OK(km_policy_findings_get(f, 0, &name, &why));
    ck_assert_str_eq(name, "legacy");
    ck_assert_ptr_nonnull(strstr(why, "rsa-2048"));
    km_policy_findings_free(f);
    ck_assert_int_eq(km_key_create(NULL, ctx, "legacy2", KM_KEY_RSA_2048, NULL), KM_E_POLICY);
    km_key_free(k);
}
END_TEST

/* The usage limit: a hard stop at the limit, and rotation at the policy's
 * fraction of it (here lowered to 3000 invocations). */
START_TEST(test_policy_usage_limit)
{
    static const char pol[] = "{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": 3000}, "
                              "\"rotation\": {\"usage_fraction\": 0.9}}";
    tu_open o = TU_OPEN_INIT;
    km_maintain_report *rep = NULL;
    km_ctx *c2 = NULL;
    km_key *k = NULL;
    uint8_t ct[100];
    size_t n;
    int i, rc = KM_OK;
    OK(km_policy_set(ctx, pol, sizeof pol - 1));
    /* a second context that refreshes rarely, so that nothing rotates lazily */
    o.refresh_ms = 600000;
    o.clock = tu_clock;
    OK(tu_vault_open_with(&c2, dir, &o));
    OK(km_key_create(&k, c2, "busy", KM_KEY_AES_256_GCM, NULL));
    for (i = 0; i < 3000 && rc == KM_OK; i++)
        rc = km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n);
    ck_assert_msg(rc == KM_OK, "encrypt %d: %s", i, km_err_name(rc));
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n), KM_E_LIMIT);
    OK(km_maintain(c2, &rep));
    ck_assert_uint_eq(km_maintain_report_count(rep), 1);
    km_maintain_report_free(rep);
    OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    ck_assert_int_eq(ct[23], 2);
    km_key_free(k);
    km_close(c2);
}
END_TEST

/* A key's own policy may only tighten the vault's; a tighter one is applied
 * to that key alone, and survives rotation and reopening. */
START_TEST(test_policy_key_policy_tightens_only)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *other = NULL;
    uint8_t ct[100];
    size_t n;
    int i, rc = KM_OK;
    o.policy = "{\"version\": 1, \"destruction\": {\"min_grace_days\": 1}}";
    ck_assert_int_eq(km_key_create(&k, ctx, "loose", KM_KEY_AES_256_GCM, &o), KM_E_POLICY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "min_grace_days"));
    o.policy = "{\"version\": 1, \"bogus\": true}";
    ck_assert_int_eq(km_key_create(&k, ctx, "bad", KM_KEY_AES_256_GCM, &o), KM_E_INVALID);
    o.policy = "{\"version\": 1, \"algorithms\": {\"aes-256-gcm\": {\"allowed\": false}}}";
    ck_assert_int_eq(km_key_create(&k, ctx, "self-forbidden", KM_KEY_AES_256_GCM, &o), KM_E_POLICY);
    o.policy = "{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": 200}, "
               "\"rotation\": {\"usage_fraction\": 0.5}}";
    OK(km_key_create(&k, ctx, "tight", KM_KEY_AES_256_GCM, &o));
    OK(km_key_create(&other, ctx, "normal", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(k, NULL));
    km_key_free(k);
    km_close(ctx);
    ctx = NULL;
    { /* reopen with a long refresh so nothing rotates lazily while we count */
        tu_open oo = TU_OPEN_INIT;
        oo.refresh_ms = 600000;
        oo.clock = tu_clock;
        OK(tu_vault_open_with(&ctx, dir, &oo));
    }
    km_key_free(other);
    OK(km_key_open(&k, ctx, "tight"));
    OK(km_key_open(&other, ctx, "normal"));
    for (i = 0; i < 200 && rc == KM_OK; i++)
        rc = km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n);
    ck_assert_int_eq(rc, KM_OK);
    ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n), KM_E_LIMIT);
    for (i = 0; i < 300; i++) /* the vault's limit for the other key */
        OK(km_encrypt(other, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    km_key_free(k);
    km_key_free(other);
}
END_TEST

/* A vault created with KM_OPEN_FIPS keeps the FIPS 140-3 profile: no X25519. */
START_TEST(test_policy_fips_profile)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *f = NULL;
    char uri[4200], buf[8192];
    size_t n;
    snprintf(uri, sizeof uri, "lmdb:%s/fips", dir);
    o.flags = KM_OPEN_CREATE | KM_OPEN_FIPS;
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    OK(km_open(&f, uri, &o));
    ck_assert_int_eq(km_key_create(NULL, f, "x", KM_KEY_X25519, NULL), KM_E_POLICY);
    OK(km_key_create(NULL, f, "e", KM_KEY_ED25519, NULL));
    km_close(f);
    o.flags = 0; /* reopened without the flag: the stored profile stays */
    OK(km_open(&f, uri, &o));
    OK(km_policy_get(f, buf, sizeof buf, &n));
    ck_assert_ptr_nonnull(strstr(buf, "fips"));
    ck_assert_int_eq(km_key_create(NULL, f, "x", KM_KEY_X25519, NULL), KM_E_POLICY);
    km_close(f);
}
END_TEST

static uint32_t versions_of(km_key *k)
{
    km_keyinfo *info = NULL;
    uint32_t n;
    OK(km_key_info(&info, k));
    n = (uint32_t)km_keyinfo_version_count(info);
    km_keyinfo_free(info);
    return n;
}

/* A key with a rotation period left without a usable primary (an admin
 * suspended it, or its protect period ended before its rotation period) is
 * not rotated by the refresh on use (every use refreshes here:
 * KM_OPEN_STRICT_REFRESH); km_maintain still rotates it, and on use only a
 * policy with rotation.replace_unusable_primary does. Fails with the old rule
 * ("no usable primary and a period: rotate") at the first encrypt below. */
START_TEST(test_lifecycle_refresh_no_primary_not_rotated)
{
    static const char on[] = "{\"version\": 1, " TU_TEST_CLOCK ", "
                             "\"rotation\": {\"replace_unusable_primary\": true}}";
    static const char keypol[] = "{\"version\": 1, \"rotation\": {\"replace_unusable_primary\": true}}";
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key_settings st = KM_KEY_SETTINGS_INIT;
    km_key *k = NULL, *k2 = NULL, *k3 = NULL, *k4 = NULL, *k5 = NULL;
    uint8_t ct[100];
    size_t n;
    char pol[4096];
    int64_t t0 = tu_now;

    o.rotate_days = 90;
    OK(km_key_create(&k, ctx, "held", KM_KEY_AES_256_GCM, &o));
    OK(km_key_create(&k4, ctx, "own", KM_KEY_AES_256_GCM, &o));
    o.protect_days = 30;
    OK(km_key_create(&k2, ctx, "short", KM_KEY_AES_256_GCM, &o));
    o.protect_days = 90;
    OK(km_key_create(&k3, ctx, "together", KM_KEY_AES_256_GCM, &o));

    /* suspended by an admin: stays as it is on use */
    OK(km_key_suspend(k, 1));
    RC(KM_E_STATE, km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));

    /* protect period (30 days) shorter than the rotation period (90): at day
     * 31 the primary stops on use, and no silent rotation follows */
    tu_now = t0 + 31 * DAY;
    RC(KM_E_STATE, km_encrypt(k2, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    ck_assert_int_eq(state_of(k2, 1, NULL), KM_STATE_DEACTIVATED);
    ck_assert_uint_eq(versions_of(k2), 1);

    /* a rotation due while the primary was still usable (period and protect
     * period ending together) still happens on use */
    tu_now = t0 + 90 * DAY;
    OK(km_encrypt(k3, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    ck_assert_int_eq(ct[23], 2);

    /* past the suspended key's rotation period too: still as it was */
    tu_now = t0 + 100 * DAY;
    RC(KM_E_STATE, km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    ck_assert_uint_eq(versions_of(k), 1);
    ck_assert_uint_eq(versions_of(k2), 1);

    /* an explicit km_maintain rotates a key without a usable primary */
    OK(km_maintain(ctx, NULL));
    ck_assert_uint_eq(versions_of(k2), 2);
    OK(km_encrypt(k2, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));

    /* a key's own policy may not ask for it when the vault's does not (looser) */
    st.fields = KM_SET_POLICY;
    st.policy = keypol;
    RC(KM_E_POLICY, km_key_set(k4, &st));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "replace_unusable_primary"));

    /* the policy says: a suspended key rotates on its next use */
    o.protect_days = 0;
    OK(km_key_create(&k5, ctx, "held2", KM_KEY_AES_256_GCM, &o));
    OK(km_key_suspend(k5, 1));
    RC(KM_E_STATE, km_encrypt(k5, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    OK(km_policy_set(ctx, on, sizeof on - 1));
    OK(km_policy_get(ctx, pol, sizeof pol, &n));
    ck_assert_ptr_nonnull(strstr(pol, "replace_unusable_primary"));
    OK(km_encrypt(k5, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    ck_assert_int_eq(ct[23], 2);
    ck_assert_int_eq(state_of(k5, 1, NULL), KM_STATE_SUSPENDED);
    km_key_free(k);
    km_key_free(k2);
    km_key_free(k3);
    km_key_free(k4);
    km_key_free(k5);
}
END_TEST

static Suite *lifecycle_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("lifecycle", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_lifecycle_transition_table);
    tcase_add_test(tc, test_lifecycle_operations_by_state);
    tcase_add_test(tc, test_lifecycle_bad_arguments);
    tcase_add_test(tc, test_lifecycle_time_driven);
    tcase_add_test(tc, test_lifecycle_scheduled_activation);
    tcase_add_test(tc, test_lifecycle_destroy_is_final);
    tcase_add_test(tc, test_policy_forbidden_algorithm);
    tcase_add_test(tc, test_policy_algorithm_retired_by_date);
    tcase_add_test(tc, test_policy_usage_limit);
    tcase_add_test(tc, test_policy_fips_profile);
    tcase_add_test(tc, test_policy_key_policy_tightens_only);
    tcase_add_test(tc, test_lifecycle_refresh_no_primary_not_rotated);
    return s;
}

int main(void)
{
    return tu_run(lifecycle_suite());
}
