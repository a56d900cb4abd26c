/* check_keyslots.c - the vault's credentials against one admin who plays
 * alone (issue 18 findings 4, 6 and 10): with the policy's
 * `principal-change`, rekey and adding or removing a keyslot need custodian
 * approvals like adding a principal; a keyslot removal that would leave only
 * device slots that cannot open the vault now is refused; offboarding a
 * principal with --revoke-keys revokes its keys in the removal's own
 * transaction, so that a crash at any write step leaves all of it or none.
 * Each test runs on a fresh vault (the fake clock) with the five principals
 * of testutil.h and a policy asking 2 approvals for principal changes. */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <km.h>
#include <km/sys/backend.h>

#include "km_int.h"
#include "store.h"
#include "testutil.h"

#define NEW_PASS "a passphrase of one admin's choosing"

static char *dir;
static km_ctx *owner, *admin, *c1, *c2;

static void policy(const char *dual)
{
    char pol[200];
    snprintf(pol, sizeof pol, "{\"version\": 1, \"dual_control\": {%s}}", dual);
    OK(km_policy_set(owner, pol, strlen(pol)));
}

/* The vault and its principals, with no dual control (the default). */
static void setup_plain(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    c2 = tu_as(dir, TU_CUST2, TU_CUST2_PASS);
}

/* The same with principal-change: 2 (and policy-change: 2, which a vault
 * policy needs beside it: docs/POLICY.md). */
static void setup(void)
{
    setup_plain();
    policy("\"principal-change\": 2, \"policy-change\": 2");
    km_close(admin);
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
}

static void teardown(void)
{
    km_close(c2);
    km_close(c1);
    km_close(admin);
    tu_teardown(&dir, &owner);
}

/* The admin's principal-change request with `params`, approved by both custodians. */
static void approved(const char *params)
{
    uint8_t id[16];
    OK(km_request_create(admin, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)params,
                         strlen(params), 0, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
}


static void denied_for_approvals(int rc)
{
    ck_assert_int_eq(rc, KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "principal-change needs 2"));
}

/* ------------------------------------------------------------ a fake device */

/* A device keyslot backend: the blob is the master key XOR 0x5a; while
 * `device_broken` is set (a TPM whose PCRs moved) it refuses to unseal. */
static int device_broken;

static int dev_generate(void *state, const km_backend_keyspec *spec, km_secret **out)
{
    (void)state;
    (void)spec;
    (void)out;
    return KM_E_UNSUPPORTED;
}

static int dev_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref, size_t len,
                    void **obj)
{
    (void)state;
    (void)spec;
    (void)ref;
    (void)len;
    (void)obj;
    return KM_E_UNSUPPORTED;
}

static void dev_unload(void *state, void *obj)
{
    (void)state;
    (void)obj;
}

static int dev_xor(const uint8_t *in, size_t len, km_secret **out)
{
    size_t i;
    int rc = km_secret_new(out, len);
    for (i = 0; rc == KM_OK && i < len; i++)
        km_secret_data(*out)[i] = in[i] ^ 0x5a;
    return rc;
}

static int dev_seal(void *state, const km_secret *master, km_secret **blob)
{
    (void)state;
    return dev_xor(km_secret_data(master), km_secret_len(master), blob);
}

static int dev_unseal(void *state, const uint8_t *blob, size_t len, km_secret **master)
{
    (void)state;
    if (device_broken)
        return km_backend_error(KM_E_AUTH, KM_NATIVE_NONE, 0, "policy of the seal not met");
    return dev_xor(blob, len, master);
}

static void device_register(void)
{
    static int done;
    km_backend_ops o;

    if (done)
        return;
    memset(&o, 0, sizeof o);
    o.version = KM_BACKEND_OPS_VERSION;
    o.name = "fakeslot";
    o.generate = dev_generate;
    o.load = dev_load;
    o.unload = dev_unload;
    o.slot_seal = dev_seal;
    o.slot_unseal = dev_unseal;
    OK(km_backend_register(&o));
    done = 1;
}

/* ------------------------------------------------------- dual control */

/* Issue 18 finding 6: one admin rekeyed the vault (a new passphrase only it
 * knows, every other keyslot dropped) despite principal-change: 2. The rekey
 * now needs the same approvals; refused, nothing changed; approved, it runs
 * once and consumes the request in its own transaction. */
START_TEST(test_keyslots_rekey_needs_approvals)
{
    km_ctx *c = NULL;

    denied_for_approvals(km_vault_rekey(admin, (const uint8_t *)NEW_PASS, strlen(NEW_PASS),
                                        KM_KDF_COST_MIN));
    denied_for_approvals(km_vault_rekey(owner, (const uint8_t *)NEW_PASS, strlen(NEW_PASS),
                                        KM_KDF_COST_MIN));
    /* nothing changed: the others still open, the new passphrase does not */
    OK(tu_vault_open_as(&c, dir, TU_CUST1, TU_CUST1_PASS, 0));
    km_close(c);
    RC(KM_E_AUTH, tu_vault_open(&c, dir, NEW_PASS, 0));
    /* approvals for something else do not count */
    approved("keyslot-add:passphrase");
    denied_for_approvals(km_vault_rekey(admin, (const uint8_t *)NEW_PASS, strlen(NEW_PASS),
                                        KM_KDF_COST_MIN));
    approved("rekey");
    OK(km_vault_rekey(admin, (const uint8_t *)NEW_PASS, strlen(NEW_PASS), KM_KDF_COST_MIN));
    OK(tu_vault_open(&c, dir, NEW_PASS, 0));
    ck_assert_int_eq(tu_audit_count(c, "request.execute", "principal-change request"), 1);
    ck_assert_int_eq(tu_audit_count(c, "vault.rekey", "new master key"), 1);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    km_close(c);
    /* the request served once */
    denied_for_approvals(km_vault_rekey(admin, (const uint8_t *)TU_PASS, strlen(TU_PASS),
                                        KM_KDF_COST_MIN));
}
END_TEST

/* Adding an owner passphrase gave one admin the owner's rights, and removing
 * the owner passphrases with it locked the owner out: both need approvals. */
START_TEST(test_keyslots_owner_passphrase_change_needs_approvals)
{
    km_ctx *c = NULL;

    denied_for_approvals(km_vault_add_passphrase(admin, (const uint8_t *)NEW_PASS,
                                                 strlen(NEW_PASS), KM_KDF_COST_MIN));
    RC(KM_E_AUTH, tu_vault_open(&c, dir, NEW_PASS, 0));
    approved("keyslot-add:passphrase");
    OK(km_vault_add_passphrase(admin, (const uint8_t *)NEW_PASS, strlen(NEW_PASS),
                               KM_KDF_COST_MIN));
    OK(tu_vault_open(&c, dir, NEW_PASS, 0));
    km_close(c);
    denied_for_approvals(km_vault_add_passphrase(admin, (const uint8_t *)"x", 1,
                                                 KM_KDF_COST_MIN));
    denied_for_approvals(km_vault_remove_passphrases(admin));
    OK(tu_vault_open(&c, dir, TU_PASS, 0));
    km_close(c);
    approved("keyslot-remove:passphrases");
    OK(km_vault_remove_passphrases(admin));
    RC(KM_E_AUTH, tu_vault_open(&c, dir, TU_PASS, 0));
    RC(KM_E_AUTH, tu_vault_open(&c, dir, NEW_PASS, 0));
    ck_assert_int_eq(tu_audit_count(admin, "request.execute", "principal-change request"), 2);
}
END_TEST

/* A device keyslot or a set of shares is a credential too: each needs the
 * approvals, bound to the backend's name or to M and N. */
START_TEST(test_keyslots_device_and_shares_need_approvals)
{
    km_secret *shares[5] = { NULL };
    km_ctx *c = NULL;
    size_t i;

    device_register();
    device_broken = 0;
    denied_for_approvals(km_vault_add_backend_slot(admin, "fakeslot", NULL));
    RC(KM_E_AUTH, tu_vault_open_slot(&c, dir, "fakeslot", NULL));
    approved("keyslot-add:backend:fakeslot");
    OK(km_vault_add_backend_slot(admin, "fakeslot", NULL));
    OK(tu_vault_open_slot(&c, dir, "fakeslot", NULL));
    km_close(c);

    denied_for_approvals(km_vault_add_shares(admin, 2, 3, shares));
    ck_assert_ptr_null(shares[0]);
    approved("keyslot-add:shares:2-of-3");
    denied_for_approvals(km_vault_add_shares(admin, 3, 5, shares));
    OK(km_vault_add_shares(admin, 2, 3, shares));
    for (i = 0; i < 3; i++)
        ck_assert_ptr_nonnull(shares[i]);
    for (i = 0; i < 5; i++)
        km_secret_free(shares[i]);
}
END_TEST

/* Without principal-change in the policy nothing needs approvals (the
 * vault's default): an owner adds and removes its passphrases alone. */
START_TEST(test_keyslots_no_dual_control_by_default)
{
    km_ctx *c = NULL;

    OK(km_vault_add_passphrase(admin, (const uint8_t *)NEW_PASS, strlen(NEW_PASS),
                               KM_KDF_COST_MIN));
    OK(tu_vault_open(&c, dir, NEW_PASS, 0));
    km_close(c);
    ck_assert_int_eq(tu_audit_count(admin, "request.execute", ""), 0);
}
END_TEST

/* ------------------------------------------------------------ lockout */

/* Issue 18 finding 10: `keyslot remove passphrases` succeeded when the only
 * other keyslot (a TPM's, PCR-bound) could no longer unseal, locking the
 * vault. The removal now asks each device keyslot it would leave as the only
 * way in to unseal now, and refuses when none does. (check_tpm2 plays the
 * same with a real PCR-bound TPM slot.) */
START_TEST(test_keyslots_remove_refuses_lockout)
{
    char solo[4200];
    km_ctx *v = NULL, *c = NULL;

    device_register();
    device_broken = 0;
    /* a vault of its own: an owner passphrase and a device slot, no principals */
    snprintf(solo, sizeof solo, "%s/solo", dir);
    ck_assert_int_eq(mkdir(solo, 0700), 0);
    v = tu_vault(solo);
    OK(km_vault_add_backend_slot(v, "fakeslot", NULL));
    device_broken = 1;
    RC(KM_E_STATE, km_vault_remove_passphrases(v));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "fakeslot"));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "policy of the seal not met"));
    OK(tu_vault_open(&c, solo, TU_PASS, 0));   /* the passphrase still opens it */
    km_close(c);
    /* the device works again: the removal goes through, the device opens it */
    device_broken = 0;
    OK(km_vault_remove_passphrases(v));
    RC(KM_E_AUTH, tu_vault_open(&c, solo, TU_PASS, 0));
    OK(tu_vault_open_slot(&c, solo, "fakeslot", NULL));
    km_close(c);
    km_close(v);
}
END_TEST

/* A vault that principals' slots still open is not locked: removing the
 * owner passphrases there needs no device (the principals' credentials are
 * held elsewhere), broken or not. */
START_TEST(test_keyslots_remove_kept_by_principal_slots)
{
    device_register();
    OK(km_vault_add_backend_slot(admin, "fakeslot", NULL));
    device_broken = 1;
    OK(km_vault_remove_passphrases(admin));
    device_broken = 0;
}
END_TEST

/* ------------------------------------------------------------ offboarding */

/* The offboarding vault: the admin's keys "a1" (rotated: two active
 * versions) and "a2" (one), and a user. */
static void offboard_base(const char *d)
{
    km_ctx *o = NULL, *a = NULL;
    km_key *k = NULL;

    OK(tu_vault_open_as(&o, d, NULL, TU_PASS, KM_OPEN_CREATE));
    OK(tu_principal_add(o, TU_ADMIN, KM_ROLE_ADMIN, TU_ADMIN_PASS));
    OK(tu_principal_add(o, TU_USER, KM_ROLE_USER, TU_USER_PASS));
    OK(tu_vault_open_as(&a, d, TU_ADMIN, TU_ADMIN_PASS, 0));
    OK(km_key_create(&k, a, "a1", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(k, NULL));
    km_key_free(k);
    OK(km_key_create(&k, a, "a2", KM_KEY_HMAC_SHA256, NULL));
    km_key_free(k);
    km_close(a);
    km_close(o);
}

/* How many versions of the admin's keys are ACTIVE in the vault of o. */
static int active_versions(km_ctx *o)
{
    static const char *const names[] = { "a1", "a2" };
    int n = 0;
    size_t i;
    uint32_t v, nv;

    for (i = 0; i < 2; i++) {
        km_key *k = NULL;
        km_keyinfo *info = NULL;
        OK(km_key_open(&k, o, names[i]));
        OK(km_key_info(&info, k));
        nv = km_keyinfo_version_count(info);
        for (v = 0; v < nv; v++) {
            km_version_info vi;
            OK(km_keyinfo_version(info, v, &vi, sizeof vi));
            n += vi.state == KM_STATE_ACTIVE;
        }
        km_keyinfo_free(info);
        km_key_free(k);
    }
    return n;
}

static int has_admin_fn(const char *name, uint32_t roles, int64_t created, void *arg)
{
    (void)roles;
    (void)created;
    if (strcmp(name, TU_ADMIN) == 0)
        *(int *)arg = 1;
    return 0;
}

static int has_admin(km_ctx *o)
{
    int found = 0;
    OK(km_principal_list(o, has_admin_fn, &found));
    return found;
}

/* Issue 18 finding 4: `principal remove --revoke-keys` committed the removal,
 * then revoked the keys in transactions of their own: a crash in between left
 * the keys active and nothing to finish it. The revocations are now in the
 * removal's transaction. For every write step k of the removal (counted by
 * the store's fault hook) a child removes the admin and SIGKILLs itself at
 * step k; the vault then holds the admin with its keys active, or neither. */
START_TEST(test_keyslots_remove_revoke_keys_one_transaction)
{
    char base[4200], work[4200], cmd[12800], stepf[4200];
    unsigned long steps = 0, k;
    int crashed = 0, before = 0, after = 0;

    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(stepf, sizeof stepf, "%s/steps", dir);
    ck_assert_int_eq(mkdir(base, 0700), 0);
    offboard_base(base);
    for (k = 0;; k++) {
        km_ctx *o = NULL;
        pid_t pid;
        int st = 0, present, active;

        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", work, base, work);
        ck_assert_int_eq(system(cmd), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *c = NULL;
            int rc = tu_vault_open_as(&c, work, NULL, TU_PASS, 0);
            /* k = 0: the dry run counts the steps */
            km__fault_arm(k == 0 ? ULONG_MAX : k);
            if (rc == KM_OK)
                rc = km_principal_remove(c, TU_ADMIN, 1);
            if (k == 0) {
                FILE *f = fopen(stepf, "w");
                if (f != NULL) {
                    fprintf(f, "%lu\n", km__fault_steps());
                    fclose(f);
                }
            }
            km__fault_arm(0);
            km_close(c);
            _exit(rc == KM_OK ? 0 : 1);
        }
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        if (k == 0) {
            FILE *f = fopen(stepf, "r");
            ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            ck_assert_ptr_nonnull(f);
            ck_assert_int_eq(fscanf(f, "%lu", &steps), 1);
            fclose(f);
            ck_assert_uint_gt(steps, 4);
        } else if (WIFSIGNALED(st)) {
            ck_assert_int_eq(WTERMSIG(st), SIGKILL);
            crashed++;
        } else {
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "step %lu: exit %d", k,
                          WEXITSTATUS(st));
        }
        OK(tu_vault_open_as(&o, work, NULL, TU_PASS, 0));
        present = has_admin(o);
        active = active_versions(o);
        OK(km_audit_verify(o, NULL, NULL, NULL));
        km_close(o);
        ck_assert_msg((present && active == 3) || (!present && active == 0),
                      "step %lu of %lu: admin %s, %d version(s) of its keys active", k, steps,
                      present ? "present" : "removed", active);
        before += present;
        after += !present;
        if (k > 0 && !WIFSIGNALED(st))
            break;   /* the step past the last: the removal completed */
        ck_assert_uint_le(k, steps + 1);
    }
    printf("keyslots: principal remove --revoke-keys: %lu steps, %d crashes, old %d, new %d, "
           "half-done 0\n", steps, crashed, before, after);
    ck_assert_int_gt(crashed, 0);
    ck_assert_int_gt(before, 0);
    ck_assert_int_gt(after, 1);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("keyslots", NULL, &tc, 300, setup, teardown);
    tcase_add_test(tc, test_keyslots_rekey_needs_approvals);
    tcase_add_test(tc, test_keyslots_owner_passphrase_change_needs_approvals);
    tcase_add_test(tc, test_keyslots_device_and_shares_need_approvals);
    tcase_add_test(tc, test_keyslots_remove_refuses_lockout);
    tcase_add_test(tc, test_keyslots_remove_revoke_keys_one_transaction);
    tc = tu_tcase(s, "plain", 300, setup_plain, teardown);
    tcase_add_test(tc, test_keyslots_no_dual_control_by_default);
    tcase_add_test(tc, test_keyslots_remove_kept_by_principal_slots);
    return tu_run(s);
}
