/* check_attacks.c - libkm's promises against a caller who does not play by the
 * API (issue 18): a local user who controls the vault directory, a principal
 * who picks a name that passes for someone else, a principal who runs
 * maintenance it has no right to, an operator who compacts without a trace.
 * Each test is the attack; docs/SECURITY.md says which deployment each
 * guarantee holds in. Every test runs on a fresh vault (the fake clock) with
 * the five principals of testutil.h. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <km.h>

#include "testraw.h"
#include "testutil.h"

static char *dir;
static km_ctx *owner;

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
}

static void teardown(void)
{
    tu_teardown(&dir, &owner);
}

/* dir/vault/<name> */
static void vpath(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/vault%s%s", dir, name[0] ? "/" : "", name);
}

static void close_owner(void)
{
    km_close(owner);
    owner = NULL;
}

/* ------------------------------------------------- the vault directory */

/* A user who can write the vault directory replaces lock.mdb with a link to a
 * file only the victim may write: the victim's open refuses, and the file is
 * untouched (LMDB would have written its lock table through the link). */
START_TEST(test_attacks_symlinked_lock_file_refused)
{
    char lock[4200], victim[4200];
    static const char content[] = "root-only configuration\n";
    km_ctx *c = NULL;
    uint8_t *after;
    size_t n = 0;
    FILE *f;

    close_owner();
    snprintf(victim, sizeof victim, "%s/victim.conf", dir);
    ck_assert_ptr_nonnull(f = fopen(victim, "w"));
    fputs(content, f);
    fclose(f);
    ck_assert_int_eq(chmod(victim, 0600), 0);
    vpath(lock, sizeof lock, "lock.mdb");
    ck_assert_int_eq(unlink(lock), 0);
    ck_assert_int_eq(symlink(victim, lock), 0);

    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_DENIED);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "lock.mdb"));
    after = tu_read_file(victim, &n);
    ck_assert_uint_eq(n, sizeof content - 1);
    ck_assert_int_eq(memcmp(after, content, n), 0);
    free(after);

    /* the owner puts the file back: the vault opens again */
    ck_assert_int_eq(unlink(lock), 0);
    OK(tu_vault_open(&c, dir, NULL, 0));
    km_close(c);
}
END_TEST

/* data.mdb as a link (to a copy the attacker controls) is refused too. */
START_TEST(test_attacks_symlinked_data_file_refused)
{
    char data[4200], moved[4200];
    km_ctx *c = NULL;

    close_owner();
    vpath(data, sizeof data, "data.mdb");
    snprintf(moved, sizeof moved, "%s/elsewhere.mdb", dir);
    ck_assert_int_eq(rename(data, moved), 0);
    ck_assert_int_eq(symlink(moved, data), 0);
    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "data.mdb"));
    ck_assert_int_eq(unlink(data), 0);
    ck_assert_int_eq(rename(moved, data), 0);
    OK(tu_vault_open(&c, dir, NULL, 0));
    km_close(c);
}
END_TEST

/* A vault directory that group or others may write is refused: they could
 * plant the links above between the check and LMDB's open. */
START_TEST(test_attacks_writable_vault_dir_refused)
{
    char v[4200];
    km_ctx *c = NULL;
    static const mode_t bad[] = { 0770, 0720, 0702, 0777, 01777 };
    size_t i;

    close_owner();
    vpath(v, sizeof v, "");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(chmod(v, bad[i]), 0);
        ck_assert_msg(tu_vault_open(&c, dir, NULL, 0) == KM_E_DENIED, "mode %o opened",
                      (unsigned)bad[i]);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "writable"));
    }
    /* read access for others is not the danger the check is about */
    ck_assert_int_eq(chmod(v, 0755), 0);
    OK(tu_vault_open(&c, dir, NULL, 0));
    km_close(c);
    ck_assert_int_eq(chmod(v, 0700), 0);
}
END_TEST

/* A directory that belongs to another user is that user's vault to tamper
 * with: refused (root may open a service user's vault, not the reverse). */
START_TEST(test_attacks_vault_dir_of_another_user_refused)
{
    char v[4200];
    km_ctx *c = NULL;

    close_owner();
    vpath(v, sizeof v, "");
    if (geteuid() != 0) {
        /* only root can give the directory away; the check itself is the
         * same comparison the root case below exercises */
        fprintf(stderr, "check_attacks: not root: the foreign-owner case needs chown\n");
        return;
    }
    /* the directory now belongs to uid 65534: neither this user (root) nor root */
    ck_assert_int_eq(chown(v, 65534, 65534), 0);
    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "another user"));
    ck_assert_int_eq(chown(v, 0, 0), 0);
    OK(tu_vault_open(&c, dir, NULL, 0));
    km_close(c);
}
END_TEST

/* ------------------------------------------------------------ names */

/* The audit log names callers that are not principals "owner", "shares" and
 * "backend:NAME", and role grantees "role:NAME": a principal may take none of
 * these names, in any case, or its entries would pass for theirs. */
START_TEST(test_attacks_reserved_principal_names)
{
    static const char *const names[] = { "owner", "Owner", "OWNER", "shares", "Shares",
                                         "backend:tpm2", "Backend:pkcs11", "role:admin",
                                         "ROLE:user" };
    char who[80];
    uint32_t roles;
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(tu_principal_add(owner, names[i], KM_ROLE_USER, "pw") == KM_E_INVALID,
                      "principal '%s' was added", names[i]);
    /* an ordinary name still works, and the owner is still the only "owner" */
    OK(tu_principal_add(owner, "owner-assistant", KM_ROLE_USER, "pw"));
    OK(km_whoami(owner, who, sizeof who, &roles));
    ck_assert_str_eq(who, "owner");
}
END_TEST

/* ------------------------------------------------------- maintenance */

typedef struct seen {
    const char *op;
    const char *principal;
    int result;
    int n;
} seen;

static int find_op(const km_audit_entry *e, void *arg)
{
    seen *s = arg;
    if (strcmp(e->op, s->op) == 0 && (s->principal == NULL || strcmp(e->principal, s->principal) == 0)) {
        s->n++;
        s->result = e->result;
    }
    return 0;
}

static int count_op(const char *op, const char *principal, int *last_result)
{
    seen s = { op, principal, 0, 0 };
    OK(km_audit_foreach(owner, 1, find_op, &s));
    if (last_result != NULL)
        *last_result = s.result;
    return s.n;
}

/* km_maintain destroys, deactivates and rotates: an auditor or a user running
 * it (with a clock of its choosing) is refused and audited; an admin may. */
START_TEST(test_attacks_maintain_needs_admin)
{
    km_ctx *aud = tu_as(dir, TU_AUDITOR, TU_AUDITOR_PASS);
    km_ctx *usr = tu_as(dir, TU_USER, TU_USER_PASS);
    km_ctx *adm = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    km_maintain_report *r = NULL;
    km_key *k = NULL;

    OK(km_key_create(&k, owner, "soon-gone", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    tu_now += 400LL * 86400;   /* far in the future: anything time-driven is due */

    ck_assert_int_eq(km_maintain(aud, &r), KM_E_DENIED);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(km_maintain(usr, NULL), KM_E_DENIED);
    ck_assert_int_eq(count_op("denied", TU_AUDITOR, NULL), 1);
    ck_assert_int_eq(count_op("denied", TU_USER, NULL), 1);
    OK(km_maintain(adm, &r));
    km_maintain_report_free(r);
    OK(km_maintain(owner, NULL));
    km_close(aud);
    km_close(usr);
    km_close(adm);
}
END_TEST

/* Compaction rewrites the whole vault file: it leaves an audit entry. */
START_TEST(test_attacks_compact_is_audited)
{
    int result = 1;
    uint64_t n = 0;

    ck_assert_int_eq(count_op("vault.compact", NULL, NULL), 0);
    OK(km_vault_compact(owner));
    ck_assert_int_eq(count_op("vault.compact", "owner", &result), 1);
    ck_assert_int_eq(result, KM_OK);
    OK(km_audit_verify(owner, NULL, &n, NULL));
    ck_assert_uint_gt(n, 1);
}
END_TEST

typedef struct alert_seen {
    char why[8][96];
    int n;
} alert_seen;

static int on_alert(const km_audit_entry *e, const char *why, void *arg)
{
    alert_seen *a = arg;
    (void)e;
    if (a->n < 8)
        snprintf(a->why[a->n++], sizeof a->why[0], "%s", why);
    return 0;
}

/* A role denial on a key (a user destroying a key) is filed as an operation
 * outside the role; a grant denial as use outside the key's grants. */
START_TEST(test_attacks_alerts_tell_role_from_grant)
{
    km_ctx *usr = tu_as(dir, TU_USER, TU_USER_PASS);
    km_key *k = NULL, *uk = NULL;
    alert_seen a;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;
    int i, role = 0, grant = 0;

    memset(&a, 0, sizeof a);
    OK(km_key_create(&k, owner, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_open(&uk, usr, "k"));
    ck_assert_int_eq(km_encrypt(uk, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n),
                     KM_E_DENIED);                             /* no grant */
    ck_assert_int_eq(km_key_rotate(uk, NULL), KM_E_DENIED);    /* not an admin */
    OK(km_audit_alerts(owner, 1, on_alert, &a));
    for (i = 0; i < a.n; i++) {
        if (strcmp(a.why[i], "an operation outside the role") == 0)
            role++;
        if (strcmp(a.why[i], "use of a key outside its grants") == 0)
            grant++;
    }
    ck_assert_int_eq(role, 1);
    ck_assert_int_eq(grant, 1);
    km_key_free(uk);
    km_key_free(k);
    km_close(usr);
}
END_TEST

/* ------------------------------------------------------- offboarding */

/* An admin whose principal is removed keeps its open handle: its next
 * administrative call is refused (roles are re-read, not kept from km_open),
 * and the refusal is audited. */
START_TEST(test_attacks_removed_admin_handle_refused)
{
    km_ctx *adm = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);

    OK(tu_principal_add(adm, "ally-1", KM_ROLE_USER, "pw"));   /* an admin may */
    OK(km_principal_remove(owner, TU_ADMIN, 0));
    ck_assert_int_eq(tu_principal_add(adm, "ally-2", KM_ROLE_ADMIN, "pw"), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "removed"));
    ck_assert_int_eq(km_audit_set_level(adm, KM_AUDIT_DATA_NONE), KM_E_DENIED);
    ck_assert_int_eq(count_op("denied", TU_ADMIN, NULL), 2);
    ck_assert_int_eq(count_op("principal.add", TU_ADMIN, NULL), 1);
    km_close(adm);
}
END_TEST

/* A user who opens with a refresh interval of an hour still loses a revoked
 * grant within libkm's cap (5 s) when another process revokes it. */
START_TEST(test_attacks_long_refresh_capped)
{
    tu_open o = TU_OPEN_INIT;
    km_ctx *usr = NULL;
    km_key *k = NULL, *uk = NULL;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;
    pid_t pid;
    int st = 0;

    OK(km_key_create(&k, owner, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    o.principal = TU_USER;
    o.pass = TU_USER_PASS;
    o.refresh_ms = 3600u * 1000u;
    o.clock = tu_clock;
    OK(tu_vault_open_with(&usr, dir, &o));
    OK(km_key_open(&uk, usr, "k"));
    OK(km_encrypt(uk, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n));
    /* another process (no shared in-process generation) revokes the grant */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_ctx *c = NULL;
        km_key *ck = NULL;
        int rc = tu_vault_open(&c, dir, NULL, 0);
        if (rc == KM_OK)
            rc = km_key_open(&ck, c, "k");
        if (rc == KM_OK)
            rc = km_key_grant(ck, TU_USER, 0);
        km_key_free(ck);
        km_close(c);
        _exit(rc == KM_OK ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tu_sleep_ms(5300);
    ck_assert_int_eq(km_encrypt(uk, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n),
                     KM_E_DENIED);
    km_key_free(uk);
    km_key_free(k);
    km_close(usr);
}
END_TEST

/* ------------------------------------------------------ dual control */

/* Two approvals to destroy, and to change the principals or the policy. */
static const char dual2[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                            "\"principal-change\": 2, \"policy-change\": 2}}";

/* Deleting the sealed policy record (a file edit: no key needed) used to make
 * the vault fall back to the default policy, dual control 0. The vault now
 * refuses to open, and an open context refuses at its next refresh. */
START_TEST(test_attacks_deleted_policy_refused)
{
    char v[4200];
    km_ctx *c = NULL;
    tu_raw r;
    MDB_val key = { 6, (void *)"policy" };

    OK(km_policy_set(owner, dual2, sizeof dual2 - 1));
    close_owner();
    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, 0, 0);
    ck_assert_int_eq(mdb_del(r.txn, tu_raw_dbi(&r, "meta"), &key, NULL), 0);
    tu_raw_end(&r);
    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_CORRUPT);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "policy"));
}
END_TEST

/* A fresh vault stores its policy at creation even when nobody set one, so
 * the rule above holds from the first open. */
START_TEST(test_attacks_default_policy_stored_at_creation)
{
    char v[4200];
    km_ctx *c = NULL;
    tu_raw r;
    MDB_val key = { 6, (void *)"policy" }, val;

    close_owner();
    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, MDB_RDONLY, 0);
    ck_assert_int_eq(mdb_get(r.txn, tu_raw_dbi(&r, "meta"), &key, &val), 0);
    tu_raw_end(&r);
    tu_raw_begin(&r, v, 0, 0);
    ck_assert_int_eq(mdb_del(r.txn, tu_raw_dbi(&r, "meta"), &key, NULL), 0);
    tu_raw_end(&r);
    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_CORRUPT);
}
END_TEST

/* A consumed request's record put back as it was before it was spent (the
 * saved sealed bytes, a raw LMDB put: no key needed) used to allow a second
 * destroy with the same approvals. Its use is in the audit chain since its
 * creation: the replay is refused (rolling the chain back too shows in
 * km_audit_verify against an exported head). */
START_TEST(test_attacks_restored_request_refused)
{
    static const uint8_t v1_grace7[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    km_request_status st;
    tu_open o = TU_OPEN_INIT;
    km_ctx *admin, *c1, *c2;
    km_key *k = NULL;
    uint8_t id[16], rk[24], *saved;
    size_t saved_len;
    char v[4200];
    tu_raw r;

    OK(km_policy_set(owner, dual2, sizeof dual2 - 1));
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    c2 = tu_as(dir, TU_CUST2, TU_CUST2_PASS);
    ko.activate_at = tu_now + 10 * 86400;          /* pre-active: destroyable at once */
    OK(km_key_create(&k, admin, "victim", KM_KEY_AES_256_GCM, &ko));
    OK(km_request_create(admin, KM_REQ_DESTROY, "victim", v1_grace7, 8, 3600, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    km_close(c2);
    km_close(c1);
    /* the attacker saves the approved, unspent record */
    km_key_free(k);
    km_close(admin);
    close_owner();
    vpath(v, sizeof v, "");
    memcpy(rk, "request/", 8);
    memcpy(rk + 8, id, 16);
    tu_raw_begin(&r, v, MDB_RDONLY, 0);
    saved = tu_raw_get(&r, "meta", rk, sizeof rk, &saved_len);
    tu_raw_end(&r);
    /* the destroy runs once, and is cancelled */
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_open(&k, admin, "victim"));
    OK(km_key_schedule_destroy(k, 1, 7));
    OK(km_key_cancel_destroy(k, 1));
    RC(KM_E_DENIED, km_key_schedule_destroy(k, 1, 7));
    km_key_free(k);
    km_close(admin);
    /* the attacker puts the record back */
    tu_raw_begin(&r, v, 0, 0);
    tu_raw_put(&r, "meta", rk, sizeof rk, saved, saved_len);
    tu_raw_end(&r);
    free(saved);
    o.clock = tu_clock;
    OK(tu_vault_open_with(&owner, dir, &o));
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_request_info(admin, id, &st));
    ck_assert_int_eq(st.consumed, 0);                /* the record did go back */
    OK(km_key_open(&k, admin, "victim"));
    RC(KM_E_INTEGRITY, km_key_schedule_destroy(k, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "put back"));
    km_key_free(k);
    km_close(admin);
}
END_TEST

/* ------------------------------------------------------------- the clock */

/* Audit times in order: each entry's time, and whether one went back. */
typedef struct times {
    int64_t last;
    int back;
} times;

static int time_scan(const km_audit_entry *e, void *arg)
{
    times *t = arg;
    if (e->time < t->last)
        t->back = 1;
    t->last = e->time;
    return 0;
}

/* A caller's clock (km_open_options.clock) counts only where the vault's
 * policy allows a test clock (testing.caller_clock, off by default): with a
 * clock 30 days ahead the owner's maintenance destroyed a key before its
 * grace ran out, and a clock an hour back revived an expired request
 * (issue 18). A key's own policy cannot turn it on. */
START_TEST(test_attacks_caller_clock_needs_policy)
{
    static const uint8_t v1_grace7[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    tu_open o = TU_OPEN_INIT;
    km_version_info vi;
    km_keyinfo *info = NULL;
    km_ctx *v = NULL, *admin, *c1;
    km_key *k = NULL;
    uint8_t id[16];
    char *d2 = NULL;
    int64_t now = (int64_t)time(NULL);

    tu_setup(&d2, &v, NULL);                     /* made without a clock: policy default */
    tu_principals_add(v);
    OK(km_key_create(&k, v, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(k, NULL));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(k, 1, 7));
    km_key_free(k);
    km_close(v);
    /* the owner opens it again with a clock a month ahead */
    tu_now = now + 30 * 86400;
    o.clock = tu_clock;
    OK(tu_vault_open_with(&v, d2, &o));
    OK(km_maintain(v, NULL));
    OK(km_key_open(&k, v, "k"));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_int_eq(vi.state, KM_STATE_DESTROY_PENDING);
    km_keyinfo_free(info);
    km_key_free(k);
    OK(km_key_create(&k, v, "stamped", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_info(&info, k));
    ck_assert_int_lt(km_keyinfo_created(info), now + 3600);   /* the system's time */
    km_keyinfo_free(info);
    km_key_free(k);
    ko.policy = "{\"version\": 1, \"testing\": {\"caller_clock\": true}}";
    RC(KM_E_POLICY, km_key_create(&k, v, "k2", KM_KEY_AES_256_GCM, &ko));
    /* an expired request stays expired whatever the approver's clock says */
    admin = tu_as(d2, TU_ADMIN, TU_ADMIN_PASS);
    c1 = tu_as(d2, TU_CUST1, TU_CUST1_PASS);
    ko.policy = NULL;
    OK(km_key_create(&k, admin, "victim", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    OK(km_request_create(admin, KM_REQ_DESTROY, "victim", v1_grace7, 8, 1, id));
    tu_sleep_ms(2100);
    tu_now = now - 3600;
    RC(KM_E_STATE, km_request_approve(c1, id));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "expired"));
    km_close(c1);
    km_close(admin);
    tu_teardown(&d2, &v);
}
END_TEST

/* Where the policy allows a test clock, it still never takes time back past
 * the last audited time: a request that expired before the last entry stays
 * expired when the clock is set back, and audit times never decrease. */
START_TEST(test_attacks_clock_never_goes_back)
{
    static const uint8_t v1_grace7[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };
    km_ctx *admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS), *c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    km_keyinfo *info = NULL;
    km_key *k = NULL;
    uint8_t id[16];
    times tm = { 0, 0 };
    int64_t t0 = tu_now;

    OK(km_key_create(&k, admin, "victim", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    OK(km_request_create(admin, KM_REQ_DESTROY, "victim", v1_grace7, 8, 600, id));
    tu_now = t0 + 700;
    OK(km_key_create(&k, admin, "later", KM_KEY_AES_256_GCM, NULL));   /* audited at t0 + 700 */
    km_key_free(k);
    tu_now = t0 - 3600;                                      /* the clock goes back */
    RC(KM_E_STATE, km_request_approve(c1, id));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "expired"));
    OK(km_key_create(&k, admin, "back", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_info(&info, k));
    ck_assert_int_ge(km_keyinfo_created(info), t0 + 700);
    km_keyinfo_free(info);
    km_key_free(k);
    OK(km_audit_foreach(owner, 1, time_scan, &tm));
    ck_assert_int_eq(tm.back, 0);
    ck_assert_int_ge(tm.last, t0 + 700);
    km_close(c1);
    km_close(admin);
}
END_TEST

/* ------------------------------------------------------ reserved keys */

/* An admin who could create or import a key named km:import-wrapping-key
 * (with a private key of its own) would read every BYOK import made to "the
 * vault's" wrapping key: names beginning with "km:" are libkm's own. */
START_TEST(test_attacks_reserved_key_names)
{
    km_ctx *adm = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    km_key *k = NULL;
    uint8_t pem[4096], raw[32];
    size_t n = 0;

    memset(raw, 0x42, sizeof raw);
    ck_assert_int_eq(km_key_create(&k, adm, "km:import-wrapping-key", KM_KEY_RSA_4096, NULL),
                     KM_E_INVALID);
    ck_assert_int_eq(km_key_create(&k, owner, "km:anything", KM_KEY_AES_256_GCM, NULL),
                     KM_E_INVALID);
    ck_assert_int_eq(km_key_import(&k, adm, "km:import-wrapping-key", KM_KEY_AES_256_GCM,
                                   KM_MATERIAL_RAW, raw, sizeof raw, KM_IMPORT_ALLOW_RAW, NULL),
                     KM_E_INVALID);
    ck_assert_ptr_null(k);
    /* the vault makes its own, and only it */
    OK(km_vault_wrapping_key(owner, KM_MATERIAL_PEM, pem, sizeof pem, &n));
    ck_assert_uint_gt(n, 100);
    OK(km_key_open(&k, owner, "km:import-wrapping-key"));
    km_key_free(k);
    km_close(adm);
}
END_TEST

/* ------------------------------------------------------------ keyslots */

/* The keyslot id of principal `who` in the closed vault's file. */
static void slot_of(const char *who, uint8_t id[4])
{
    char v[4200];
    tu_raw r;

    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, MDB_RDONLY, 0);
    tu_raw_principal_slot(&r, who, id);
    tu_raw_end(&r);
}

/* Rewrites keyslot `id` in the closed vault's file (an LMDB writer, as
 * mdb_dump / mdb_load would): drops its entries `drop1` and `drop2` (0:
 * none), or sets its principal id (tag 9) to `pid` (not NULL). */
static void slot_edit(const uint8_t id[4], uint8_t drop1, uint8_t drop2, const uint8_t *pid)
{
    char v[4200];
    tu_raw r;
    uint8_t *rec;
    size_t len, at;

    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, 0, 0);
    rec = tu_raw_get(&r, "slots", id, 4, &len);
    if (drop1 != 0)
        len = tu_tlv_drop(rec, len, drop1);
    if (drop2 != 0)
        len = tu_tlv_drop(rec, len, drop2);
    if (pid != NULL) {
        at = tu_tlv_at(rec, len, 9);
        ck_assert_uint_ne(at, (size_t)-1);
        memcpy(rec + at + 5, pid, 16);
    }
    tu_raw_put(&r, "slots", id, 4, rec, len);
    tu_raw_end(&r);
    free(rec);
}

/* Issue 18 finding 1: a user removed the principal entries (selector, id)
 * from its own keyslot record with a file edit; the slot then passed for an
 * owner slot and the user's passphrase opened the vault as the owner. Every
 * keyslot now carries a MAC under a key derived from the master key (vault
 * format 3): the edit makes the open fail, whoever opens, with or without
 * the MAC entry, and claiming the older format (no MACs) is refused too. */
START_TEST(test_attacks_keyslot_edited_to_owner_refused)
{
    km_ctx *c = NULL;
    char who[80] = "";
    uint8_t two = 2, id[4];
    char v[4200];
    tu_raw r;
    int rc;

    close_owner();
    slot_of(TU_USER, id);
    slot_edit(id, 8, 9, NULL);
    rc = tu_vault_open(&c, dir, TU_USER_PASS, 0);
    if (rc == KM_OK)
        (void)km_whoami(c, who, sizeof who, NULL);
    ck_assert_msg(rc == KM_E_CORRUPT, "the edited slot opened (%s) as '%s'", km_err_name(rc),
                  who);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "keyslot"));
    ck_assert_int_eq(tu_vault_open(&c, dir, NULL, 0), KM_E_CORRUPT);
    /* the MAC entry taken away as well */
    slot_edit(id, 16, 0, NULL);
    ck_assert_int_eq(tu_vault_open(&c, dir, TU_USER_PASS, 0), KM_E_CORRUPT);
    /* and the format byte set back to 2, when slots had no MAC */
    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, 0, 0);
    tu_raw_put(&r, "meta", "format", 6, &two, 1);
    tu_raw_end(&r);
    ck_assert_int_eq(tu_vault_open(&c, dir, TU_USER_PASS, 0), KM_E_CORRUPT);
    ck_assert_ptr_null(c);
}
END_TEST

/* The same user points its keyslot at the admin's principal id (read from
 * the admin's slot in the file): opening under its own name then carried the
 * admin's roles. The slot's MAC covers the principal id. */
START_TEST(test_attacks_keyslot_pointed_at_admin_refused)
{
    char v[4200];
    tu_raw r;
    uint8_t id[4], *rec, admin_pid[16];
    size_t len, at;
    km_ctx *c = NULL;
    uint32_t roles = 0;
    char who[80] = "";
    int rc;

    close_owner();
    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, MDB_RDONLY, 0);
    tu_raw_principal_slot(&r, TU_ADMIN, id);
    rec = tu_raw_get(&r, "slots", id, 4, &len);
    at = tu_tlv_at(rec, len, 9);
    ck_assert_uint_ne(at, (size_t)-1);
    memcpy(admin_pid, rec + at + 5, 16);
    free(rec);
    tu_raw_end(&r);
    slot_of(TU_USER, id);
    slot_edit(id, 0, 0, admin_pid);
    rc = tu_vault_open_as(&c, dir, TU_USER, TU_USER_PASS, 0);
    if (rc == KM_OK)
        (void)km_whoami(c, who, sizeof who, &roles);
    ck_assert_msg(rc == KM_E_CORRUPT, "the edited slot opened (%s) as '%s' with roles 0x%x",
                  km_err_name(rc), who, roles);
    ck_assert_ptr_null(c);
    /* the admin itself is refused too: the vault's slots are not what libkm wrote */
    ck_assert_int_eq(tu_vault_open_as(&c, dir, TU_ADMIN, TU_ADMIN_PASS, 0), KM_E_CORRUPT);
}
END_TEST

/* ----------------------------------------------------------- timing */

static double open_ms(const char *who, const char *pass)
{
    tu_open o = TU_OPEN_INIT;
    struct timespec a, b;
    km_ctx *c = NULL;
    int rc;

    o.principal = who;
    o.pass = pass;
    clock_gettime(CLOCK_MONOTONIC, &a);
    rc = tu_vault_open_with(&c, dir, &o);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_int_eq(rc, KM_E_AUTH);
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* Opening under a name that has no keyslot costs what a wrong passphrase for
 * an existing name costs (one slot's scrypt), so timing does not tell an
 * outsider which principal names exist. */
START_TEST(test_attacks_principal_name_timing)
{
    static const char pw[] = "timed principal's passphrase";
    double known = 1e9, unknown = 1e9, t;
    int i;

    /* a slot with a real cost (2^15: about 32 MiB and tens of milliseconds) */
    OK(km_principal_add(owner, "timed", KM_ROLE_USER, (const uint8_t *)pw, sizeof pw - 1, 15));
    for (i = 0; i < 3; i++) {
        if ((t = open_ms("timed", "wrong passphrase")) < known)
            known = t;
        if ((t = open_ms("no-such-principal", "wrong passphrase")) < unknown)
            unknown = t;
    }
    ck_assert_msg(unknown >= known / 3, "unknown name %.1f ms, known name %.1f ms", unknown, known);
}
END_TEST

/* ------------------------------------------- records rolled back one by one */

/* The one grant record of the vault (meta "grant/..."): a malloc'ed copy of
 * its key and value. */
static void grant_save(tu_raw *r, MDB_val *key, MDB_val *val)
{
    MDB_cursor *cur;
    MDB_val k = { 6, (void *)"grant/" }, v;
    int found = 0;

    ck_assert_int_eq(mdb_cursor_open(r->txn, tu_raw_dbi(r, "meta"), &cur), 0);
    for (int op = MDB_SET_RANGE; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        if (k.mv_size < 6 || memcmp(k.mv_data, "grant/", 6) != 0)
            break;
        ck_assert_int_eq(found++, 0);
        key->mv_size = k.mv_size;
        key->mv_data = malloc(k.mv_size);
        memcpy(key->mv_data, k.mv_data, k.mv_size);
        val->mv_size = v.mv_size;
        val->mv_data = malloc(v.mv_size);
        memcpy(val->mv_data, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(found, 1);
}

static int verify_as_owner(const km_audit_head *anchor, char *msg, size_t cap)
{
    km_ctx *c = NULL;
    tu_open o = TU_OPEN_INIT;
    int rc;

    o.clock = tu_clock;
    OK(tu_vault_open_with(&c, dir, &o));
    rc = km_audit_verify(c, anchor, NULL, NULL);
    snprintf(msg, cap, "%s", km_error_last()->message);
    km_close(c);
    return rc;
}

/* Issue 18 finding 7: an older sealed grant record put back, alone or with
 * the older audit table and head (so that `audit verify --anchor <earlier
 * head>` passed), now fails km_audit_verify naming a record: every entry
 * lists the records it wrote (docs/SECURITY.md). */
static void grant_rollback(int with_log)
{
    km_key *k = NULL;
    km_audit_head earlier;
    MDB_val gk, gv, hk = { 10, (void *)"audit-head" }, hv, sk;
    char v[4200], msg[512];
    uint8_t seqb[8];
    tu_raw r;
    uint64_t s, last;

    OK(km_key_create(&k, owner, "granted", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(k, TU_CUST1, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    OK(km_audit_head_get(owner, &earlier));
    OK(km_audit_verify(owner, NULL, NULL, NULL));
    km_key_free(k);
    close_owner();
    vpath(v, sizeof v, "");
    tu_raw_begin(&r, v, MDB_RDONLY, 0);
    grant_save(&r, &gk, &gv);
    hv.mv_data = tu_raw_get(&r, "meta", "audit-head", 10, &hv.mv_size);
    tu_raw_end(&r);
    /* more changes: the grant narrowed, the key rotated, another key */
    ck_assert_int_eq(verify_as_owner(NULL, msg, sizeof msg), KM_OK);
    {
        km_ctx *c = NULL;
        tu_open o = TU_OPEN_INIT;
        o.clock = tu_clock;
        OK(tu_vault_open_with(&c, dir, &o));
        OK(km_key_open(&k, c, "granted"));
        OK(km_key_grant(k, TU_CUST1, KM_PERM_ENCRYPT));
        OK(km_key_rotate(k, NULL));
        km_key_free(k);
        OK(km_key_create(&k, c, "other", KM_KEY_AES_256_GCM, NULL));
        km_key_free(k);
        OK(km_audit_verify(c, NULL, NULL, NULL));
        km_close(c);
    }
    /* the attacker puts the older grant back (and the older log and head) */
    tu_raw_begin(&r, v, 0, 0);
    tu_raw_put(&r, "meta", gk.mv_data, gk.mv_size, gv.mv_data, gv.mv_size);
    if (with_log) {
        ck_assert_int_eq(mdb_put(r.txn, tu_raw_dbi(&r, "meta"), &hk, &hv, 0), 0);
        last = earlier.seq + 1000;
        for (s = earlier.seq + 1; s <= last; s++) {
            for (int i = 0; i < 8; i++)
                seqb[i] = (uint8_t)(s >> (56 - 8 * i));
            sk.mv_size = 8;
            sk.mv_data = seqb;
            (void)mdb_del(r.txn, tu_raw_dbi(&r, "audit"), &sk, NULL);
        }
    }
    tu_raw_end(&r);
    ck_assert_int_eq(verify_as_owner(NULL, msg, sizeof msg), KM_E_INTEGRITY);
    ck_assert_ptr_nonnull(strstr(msg, "vault record"));
    ck_assert_int_eq(verify_as_owner(&earlier, msg, sizeof msg), KM_E_INTEGRITY);
    ck_assert_ptr_nonnull(strstr(msg, "vault record"));
    free(gk.mv_data);
    free(gv.mv_data);
    free(hv.mv_data);
}

START_TEST(test_attacks_grant_rolled_back_with_older_log)
{
    grant_rollback(1);
}
END_TEST

START_TEST(test_attacks_grant_rolled_back_alone)
{
    grant_rollback(0);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("attacks", NULL, &tc, 120, setup, teardown);
    tcase_add_test(tc, test_attacks_symlinked_lock_file_refused);
    tcase_add_test(tc, test_attacks_symlinked_data_file_refused);
    tcase_add_test(tc, test_attacks_writable_vault_dir_refused);
    tcase_add_test(tc, test_attacks_vault_dir_of_another_user_refused);
    tcase_add_test(tc, test_attacks_reserved_principal_names);
    tcase_add_test(tc, test_attacks_maintain_needs_admin);
    tcase_add_test(tc, test_attacks_compact_is_audited);
    tcase_add_test(tc, test_attacks_alerts_tell_role_from_grant);
    tcase_add_test(tc, test_attacks_removed_admin_handle_refused);
    tcase_add_test(tc, test_attacks_long_refresh_capped);
    tcase_add_test(tc, test_attacks_principal_name_timing);
    tcase_add_test(tc, test_attacks_reserved_key_names);
    tcase_add_test(tc, test_attacks_deleted_policy_refused);
    tcase_add_test(tc, test_attacks_default_policy_stored_at_creation);
    tcase_add_test(tc, test_attacks_keyslot_edited_to_owner_refused);
    tcase_add_test(tc, test_attacks_keyslot_pointed_at_admin_refused);
    tcase_add_test(tc, test_attacks_restored_request_refused);
    tcase_add_test(tc, test_attacks_caller_clock_needs_policy);
    tcase_add_test(tc, test_attacks_clock_never_goes_back);
    tcase_add_test(tc, test_attacks_grant_rolled_back_with_older_log);
    tcase_add_test(tc, test_attacks_grant_rolled_back_alone);
    return tu_run(s);
}
