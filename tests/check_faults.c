/*
 * check_faults.c - a crash at every write step (docs/RELIABILITY.md C: "a crash at every
 * step of rotate, rewrap, import and destroy leaves the old state or the new
 * one"). The vault's internal fault hook (km__fault_arm, src/store/store.c)
 * counts every put, delete, commit, the moment after each commit, and the file
 * steps of compaction (directory made, copy written, copy synced, renamed).
 * Operations: create, import, rotate, revoke (compromise), destroy by
 * km_maintain, rekey, compact, rewrap, suspend, schedule-destroy,
 * cancel-destroy, schedule-destroy under dual control (an approved request
 * consumed in the same transaction), and import of an AES-KWP wrapped key. For each operation a dry run counts its steps; then for
 * every step k a child process runs the operation on a fresh copy of the same
 * vault and SIGKILLs itself at step k; the parent opens the copy and checks
 * that it holds exactly the state before or the state after the operation
 * (key versions and states, material usable, the old ciphertext still
 * decrypting, the audit chain whole and its entries matching the change).
 * One line per operation: "faults: OP: N steps, N crashes, old A, new B, half-done 0".
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "km_int.h"
#include "store.h"
#include "testutil.h"

#define DAY 86400
#define NEW_PASS "the new passphrase"

/* Opens dir/vault as the owner on the fake clock tu_clock. */
static int open_at(km_ctx **out, const char *dir, const char *pass, uint32_t flags)
{
    return tu_vault_open_as(out, dir, NULL, pass, flags);
}

static void copy_dir(const char *from, const char *to)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
    ck_assert_msg(system(cmd) == 0, "cannot copy %s", from);
}

/* The base vault: key "k" (AES, v1) with a ciphertext, key "d" (AES) whose v1
 * is rotated out, revoked and scheduled for destruction in 7 days, key "s"
 * (AES) whose v1 is rotated out and revoked (DEACTIVATED). For the dual-control
 * destroy (`dual` = 1) also: principals (an admin, two custodians), a policy
 * asking 2 approvals for destroy, key "s2" of the admin like "s", and the
 * admin's request to schedule s2 v1's destruction, approved by both custodians. */
static uint8_t base_ct[64 + KM_CIPHERTEXT_OVERHEAD];
static size_t base_ct_len;
static const uint8_t raw_key[32] = "0123456789abcdef0123456789abcde";
static uint8_t req_id[16];
static uint8_t wrapped[512];   /* key "e" (HMAC, exportable) wrapped under "kek" (AES-KWP) */
static size_t wrapped_len;

static const char dual_policy[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                                  "\"principal-change\": 2, \"policy-change\": 2}}";

static void make_deactivated(km_ctx *c, const char *name)
{
    km_key *s;
    OK(km_key_create(&s, c, name, KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(s, NULL));
    OK(km_key_revoke(s, 1, KM_REVOKE_SUPERSEDED, 0));
    km_key_free(s);
}

static void make_dual(const char *dir, km_ctx *c)
{
    static const uint8_t params[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };   /* v1, 7 days */
    km_ctx *a, *c1, *c2;
    OK(tu_principal_add(c, TU_ADMIN, KM_ROLE_ADMIN, TU_ADMIN_PASS));
    OK(tu_principal_add(c, TU_CUST1, KM_ROLE_CUSTODIAN, TU_CUST1_PASS));
    OK(tu_principal_add(c, TU_CUST2, KM_ROLE_CUSTODIAN, TU_CUST2_PASS));
    OK(km_policy_set(c, dual_policy, strlen(dual_policy)));
    OK(tu_vault_open_as(&a, dir, TU_ADMIN, TU_ADMIN_PASS, 0));
    make_deactivated(a, "s2");
    OK(km_request_create(a, KM_REQ_DESTROY, "s2", params, 8, KM_REQUEST_TTL_MAX, req_id));
    OK(tu_vault_open_as(&c1, dir, TU_CUST1, TU_CUST1_PASS, 0));
    OK(tu_vault_open_as(&c2, dir, TU_CUST2, TU_CUST2_PASS, 0));
    OK(km_request_approve(c1, req_id));
    OK(km_request_approve(c2, req_id));
    km_close(c2);
    km_close(c1);
    km_close(a);
}

static void make_base(const char *dir, int dual)
{
    km_ctx *c;
    km_key *k, *d;
    OK(open_at(&c, dir, TU_PASS, KM_OPEN_CREATE));
    OK(km_key_create(&k, c, "k", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, (const uint8_t *)"the old ciphertext's plaintext", 30, NULL, 0, base_ct,
                  sizeof base_ct, &base_ct_len));
    OK(km_key_create(&d, c, "d", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(d, NULL));
    OK(km_key_revoke(d, 1, KM_REVOKE_CESSATION_OF_OPERATION, 0));
    OK(km_key_schedule_destroy(d, 1, 7));
    km_key_free(k);
    make_deactivated(c, "s");
    make_deactivated(c, "c");
    {
        km_key_options ex = KM_KEY_OPTIONS_INIT;
        km_key *kek, *e;
        ex.flags = KM_KEY_EXPORTABLE;
        OK(km_key_create(&kek, c, "kek", KM_KEY_AES_256_KWP, NULL));
        OK(km_key_create(&e, c, "e", KM_KEY_HMAC_SHA256, &ex));
        OK(km_key_export_wrapped(e, 0, KM_WRAP_KWP, kek, NULL, 0, wrapped, sizeof wrapped,
                                 &wrapped_len));
        km_key_free(e);
        km_key_free(kek);
    }
    OK(km_key_open(&k, c, "c"));
    OK(km_key_schedule_destroy(k, 1, 30));   /* still cancelable after the 8 days */
    km_key_free(k);
    k = NULL;
    if (dual)
        make_dual(dir, c);
    km_key_free(d);
    km_close(c);
}

/* --------------------------------------------------------------- operations */

enum op { OP_CREATE, OP_IMPORT, OP_ROTATE, OP_REVOKE, OP_DESTROY, OP_REKEY, OP_COMPACT,
          OP_REWRAP, OP_SUSPEND, OP_SCHEDULE, OP_CANCEL, OP_DUAL, OP_IMPORT_WRAPPED, OP__COUNT };
static const char *const op_names[OP__COUNT] = {
    "create", "import", "rotate", "revoke", "destroy (maintain)", "rekey", "compact", "rewrap",
    "suspend", "schedule-destroy", "cancel-destroy", "schedule-destroy (dual control)",
    "import wrapped (AES-KWP)"
};

/* Opens the vault as the operation's caller (the admin principal who made
 * the dual-control request, else the owner). */
static int open_caller(km_ctx **out, const char *dir, enum op op)
{
    if (op == OP_DUAL)
        return tu_vault_open_as(out, dir, TU_ADMIN, TU_ADMIN_PASS, 0);
    return open_at(out, dir, TU_PASS, 0);
}

/* Runs the operation on an open vault; the km rc. */
static int run_op(km_ctx *c, enum op op)
{
    km_key *k = NULL;
    int rc;
    switch (op) {
    case OP_CREATE:
        rc = km_key_create(&k, c, "n", KM_KEY_AES_256_GCM, NULL);
        break;
    case OP_IMPORT:
        rc = km_key_import(&k, c, "i", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, raw_key, 32,
                           KM_IMPORT_ALLOW_RAW, NULL);
        break;
    case OP_ROTATE:
        if ((rc = km_key_open(&k, c, "k")) == KM_OK)
            rc = km_key_rotate(k, NULL);
        break;
    case OP_REVOKE:
        if ((rc = km_key_open(&k, c, "k")) == KM_OK)
            rc = km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, tu_now - 60);
        break;
    case OP_DESTROY:
        rc = km_maintain(c, NULL);   /* the clock is past d v1's grace period */
        break;
    case OP_REKEY:
        rc = km_vault_rekey(c, (const uint8_t *)NEW_PASS, strlen(NEW_PASS), KM_KDF_COST_MIN);
        break;
    case OP_COMPACT:
        rc = km_vault_compact(c);
        break;
    case OP_REWRAP: {
        uint8_t out[sizeof base_ct];
        size_t n;
        rc = km_rewrap(c, base_ct, base_ct_len, NULL, 0, out, sizeof out, &n);
        break;
    }
    case OP_SUSPEND:
        if ((rc = km_key_open(&k, c, "k")) == KM_OK)
            rc = km_key_suspend(k, 1);
        break;
    case OP_SCHEDULE:
        if ((rc = km_key_open(&k, c, "s")) == KM_OK)
            rc = km_key_schedule_destroy(k, 1, 7);
        break;
    case OP_CANCEL:
        if ((rc = km_key_open(&k, c, "c")) == KM_OK)
            rc = km_key_cancel_destroy(k, 1);
        break;
    case OP_IMPORT_WRAPPED:
        rc = km_key_import_wrapped(&k, c, "w", KM_KEY_HMAC_SHA256, KM_WRAP_KWP, wrapped,
                                   wrapped_len, NULL);
        break;
    case OP_DUAL:   /* consumes the approved request in the same transaction */
        if ((rc = km_key_open(&k, c, "s2")) == KM_OK)
            rc = km_key_schedule_destroy(k, 1, 7);
        break;
    default:
        rc = KM_E_INTERNAL;
    }
    km_key_free(k);
    return rc;
}

static uint64_t count_op_entries(km_ctx *c, const char *opname);

/* The audit operation each one writes (NULL: none), and its count in the base. */
static const char *const op_audit[OP__COUNT] = {
    "key.create", "key.import", "key.rotate", "key.state", "key.destroy", "vault.rekey", NULL, NULL,
    "key.state", "key.destroy", "key.destroy", "key.destroy", "key.import"
};
static uint64_t base_entries, base_executes;

typedef struct count_arg {
    const char *op;
    uint64_t n;
} count_arg;

static int count_cb(const km_audit_entry *e, void *arg)
{
    count_arg *a = arg;
    if (strcmp(e->op, a->op) == 0 && e->result == KM_OK)
        a->n++;
    return 0;
}

static uint64_t count_op_entries(km_ctx *c, const char *opname)
{
    count_arg a = { opname, 0 };
    OK(km_audit_foreach(c, 1, count_cb, &a));
    return a.n;
}

static uint32_t nversions(km_ctx *c, const char *name, km_key_state *v1_state)
{
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    uint32_t n;
    if (km_key_open(&k, c, name) != KM_OK)
        return 0;
    OK(km_key_info(&info, k));
    n = km_keyinfo_version_count(info);
    if (v1_state != NULL) {
        OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
        *v1_state = vi.state;
    }
    km_keyinfo_free(info);
    km_key_free(k);
    return n;
}

/* The key `name` encrypts and decrypts (a usable primary). */
static void usable(km_ctx *c, const char *name)
{
    km_key *k;
    uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD], pt[16];
    size_t n, m;
    OK(km_key_open(&k, c, name));
    OK(km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(c, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert(m == 16 && memcmp(pt, "0123456789abcdef", 16) == 0);
    km_key_free(k);
}

/* Opens the vault after a crash and says whether it holds the state before
 * (0) or after (1) the operation; fails the test on anything else. */
static ino_t base_ino;   /* data.mdb's inode before the operation (compaction replaces it) */

static ino_t data_ino(const char *dir)
{
    char p[4300];
    struct stat sb;
    snprintf(p, sizeof p, "%s/vault/data.mdb", dir);
    ck_assert_msg(stat(p, &sb) == 0, "no %s", p);
    return sb.st_ino;
}

static int classify(const char *dir, enum op op)
{
    km_ctx *c = NULL;
    uint8_t pt[64];
    size_t m;
    uint64_t count = 0, bad = 0;
    km_key_state st = 0;
    uint32_t nv;
    int rc, state = -1;

    if (op == OP_REKEY) {
        int old = open_at(&c, dir, TU_PASS, 0);
        if (old == KM_OK) {
            state = 0;
        } else {
            ck_assert_msg(old == KM_E_AUTH, "rekey: the old passphrase gives %s", km_err_name(old));
            OK(open_at(&c, dir, NEW_PASS, 0));
            state = 1;
        }
    } else {
        if (op == OP_COMPACT)   /* before the open, which may compact nothing but cleans up */
            state = data_ino(dir) != base_ino;
        OK(open_at(&c, dir, TU_PASS, 0));
    }
    /* always: the audit chain is whole and the old data decrypts */
    rc = km_audit_verify(c, NULL, &count, &bad);
    ck_assert_msg(rc == KM_OK, "%s: audit chain broken at entry %llu: %s", op_names[op],
                  (unsigned long long)bad, km_error_last()->message);
    /* (after the revoke, k v1 is compromised: decrypting needs the flag, and
     * k has nothing left to encrypt with) */
    OK(km_decrypt(c, op == OP_REVOKE ? KM_DECRYPT_ALLOW_COMPROMISED : 0, base_ct, base_ct_len,
                  NULL, 0, pt, sizeof pt, &m));
    ck_assert(m == 30 && memcmp(pt, "the old ciphertext's plaintext", 30) == 0);
    if (op != OP_REVOKE && op != OP_SUSPEND)
        usable(c, "k");

    switch (op) {
    case OP_CREATE:
    case OP_IMPORT: {
        const char *name = op == OP_CREATE ? "n" : "i";
        nv = nversions(c, name, NULL);
        state = nv == 1;
        ck_assert_msg(nv <= 1, "%s: %u versions", op_names[op], nv);
        if (state)
            usable(c, name);
        break;
    }
    case OP_ROTATE:
        nv = nversions(c, "k", NULL);
        ck_assert_msg(nv == 1 || nv == 2, "rotate: %u versions", nv);
        state = nv == 2;
        if (state)
            usable(c, "k");
        break;
    case OP_REVOKE:
        nversions(c, "k", &st);
        ck_assert_msg(st == KM_STATE_ACTIVE || st == KM_STATE_COMPROMISED,
                      "revoke: v1 is in state %d", (int)st);
        state = st == KM_STATE_COMPROMISED;
        break;
    case OP_DESTROY:
        nversions(c, "d", &st);
        ck_assert_msg(st == KM_STATE_DESTROY_PENDING || st == KM_STATE_DESTROYED,
                      "destroy: d v1 is in state %d", (int)st);
        state = st == KM_STATE_DESTROYED;
        break;
    case OP_REKEY:
        break;
    case OP_COMPACT:
    case OP_REWRAP: {
        /* nothing changes in the catalog (a compaction: old = the original
         * data.mdb, new = its compacted copy renamed over it; a rewrap has
         * only one state); no half-written compaction copy is left behind */
        char tmp[4300];
        struct stat sb;
        ck_assert_uint_eq(nversions(c, "k", NULL), 1);
        ck_assert_uint_eq(nversions(c, "d", NULL), 2);
        ck_assert_uint_eq(nversions(c, "s", NULL), 2);
        snprintf(tmp, sizeof tmp, "%s/vault/compact.tmp", dir);
        ck_assert_msg(stat(tmp, &sb) != 0, "compact.tmp left after the vault opened");
        if (op == OP_REWRAP)
            state = 1;
        break;
    }
    case OP_SUSPEND:
        nversions(c, "k", &st);
        ck_assert_msg(st == KM_STATE_ACTIVE || st == KM_STATE_SUSPENDED,
                      "suspend: k v1 is in state %d", (int)st);
        state = st == KM_STATE_SUSPENDED;
        if (!state)
            usable(c, "k");
        break;
    case OP_SCHEDULE:
    case OP_DUAL: {
        const char *name = op == OP_DUAL ? "s2" : "s";
        ck_assert_uint_eq(nversions(c, name, &st), 2);
        ck_assert_msg(st == KM_STATE_DEACTIVATED || st == KM_STATE_DESTROY_PENDING,
                      "%s: %s v1 is in state %d", op_names[op], name, (int)st);
        state = st == KM_STATE_DESTROY_PENDING;
        if (op == OP_DUAL) {
            /* the request is spent exactly when the change is there */
            km_request_status rs;
            OK(km_request_info(c, req_id, &rs));
            ck_assert_msg(rs.consumed == state, "dual control: request consumed %d, state %s",
                          rs.consumed, state ? "new" : "old");
            ck_assert_uint_eq(rs.approvals, 2);
            ck_assert_uint_eq(count_op_entries(c, "request.execute"),
                              base_executes + (uint64_t)state);
        }
        break;
    }
    case OP_IMPORT_WRAPPED:
        nv = nversions(c, "w", NULL);
        ck_assert_msg(nv <= 1, "import wrapped: %u versions", nv);
        state = nv == 1;
        if (state) {   /* the same material as the exported key */
            km_key *e, *w;
            uint8_t t1[64], t2[64];
            size_t n1, n2;
            OK(km_key_open(&e, c, "e"));
            OK(km_key_open(&w, c, "w"));
            OK(km_mac(e, KM_SIG_RAW, (const uint8_t *)"m", 1, t1, sizeof t1, &n1));
            OK(km_mac(w, KM_SIG_RAW, (const uint8_t *)"m", 1, t2, sizeof t2, &n2));
            ck_assert(n1 == n2 && memcmp(t1, t2, n1) == 0);
            km_key_free(w);
            km_key_free(e);
        }
        break;
    case OP_CANCEL:
        ck_assert_uint_eq(nversions(c, "c", &st), 2);
        ck_assert_msg(st == KM_STATE_DESTROY_PENDING || st == KM_STATE_DEACTIVATED,
                      "cancel-destroy: c v1 is in state %d", (int)st);
        state = st == KM_STATE_DEACTIVATED;
        break;
    default:
        break;
    }
    /* no change without its audit entry, no entry without its change */
    if (op_audit[op] != NULL)
        ck_assert_msg(count_op_entries(c, op_audit[op]) == base_entries + (uint64_t)state,
                      "%s: %llu '%s' entries, %llu before, state %s", op_names[op],
                      (unsigned long long)count_op_entries(c, op_audit[op]),
                      op_audit[op], (unsigned long long)base_entries, state ? "new" : "old");
    km_close(c);
    return state;
}

/* Dry run (counts), then one child per step. */
static void crash_every_step(const char *base, const char *work, enum op op)
{
    unsigned long steps, k;
    unsigned old = 0, new_ = 0, crashes = 0, finished = 0;
    km_ctx *c;

    copy_dir(base, work);
    base_ino = data_ino(work);
    OK(open_at(&c, work, TU_PASS, 0));
    base_entries = op_audit[op] != NULL ? count_op_entries(c, op_audit[op]) : 0;
    base_executes = count_op_entries(c, "request.execute");
    km_close(c);
    OK(open_caller(&c, work, op));
    km__fault_arm(ULONG_MAX);
    OK(run_op(c, op));
    km_close(c);   /* close's own writes (counters, audit flush) count too */
    steps = km__fault_steps();
    km__fault_arm(0);
    ck_assert_int_eq(classify(work, op), 1);

    for (k = 1; k <= steps; k++) {
        pid_t pid;
        int st = 0, s;
        copy_dir(base, work);
        base_ino = data_ino(work);
        pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            km_ctx *cc;
            if (open_caller(&cc, work, op) != KM_OK)
                _exit(3);
            km__fault_arm(k);
            if (run_op(cc, op) != KM_OK)
                _exit(4);
            km_close(cc);
            _exit(0);
        }
        ck_assert(waitpid(pid, &st, 0) == pid);
        if (WIFSIGNALED(st)) {
            ck_assert_int_eq(WTERMSIG(st), SIGKILL);
            crashes++;
        } else {
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: step %lu: child status %#x",
                          op_names[op], k, st);
            finished++;
        }
        s = classify(work, op);
        if (s == 0)
            old++;
        else
            new_++;
    }
    printf("faults: %s: %lu steps, %u crashes (%u runs finished first), old %u, new %u, "
           "half-done 0\n", op_names[op], steps, crashes, finished, old, new_);
    ck_assert_uint_eq(crashes + finished, steps);
    fflush(stdout);
}

START_TEST(test_crash_at_every_step)
{
    char *dir = tu_tmpdir();
    char base[4200], work[4200];
    int op = _i;

    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    ck_assert(mkdir(base, 0700) == 0);
    tu_now = 1900000000;
    make_base(base, op == OP_DUAL);
    tu_now += 8 * DAY;   /* d v1's destruction is due */
    crash_every_step(base, work, (enum op)op);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------ disk full */

#define DF_FAIL(...)                                                                           \
    do {                                                                                       \
        printf("faults: disk full: FAIL: " __VA_ARGS__);                                      \
        printf(" (%s)\n", km_error_last()->message);                                          \
        fflush(stdout);                                                                        \
        _exit(1);                                                                              \
    } while (0)

static int count_key(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name;
    (void)id;
    (void)type;
    (*(int *)arg)++;
    return 0;
}

/* In a child: fills a vault on a full file system (a 512 KiB tmpfs in a mount
 * namespace of its own when root, else RLIMIT_FSIZE with SIGXFSZ ignored),
 * checks the failing call, then gives the space back and stores again. */
static void disk_full_child(char *top, const char *dir, int force_rlimit)
{
    struct rlimit rl;
    km_ctx *c = NULL;
    km_key *k = NULL;
    char name[32], how[96];
    int real = 0, rc = KM_OK, i, n;
    unsigned long native;

    /* the mount types below are ignored by the kernel, but not NULL: valgrind
     * reads them ("Syscall param mount(type) points to unaddressable byte(s)") */
    if (!force_rlimit && geteuid() == 0 && unshare(CLONE_NEWNS) == 0
        && mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0
        && mount("tmpfs", dir, "tmpfs", 0, "size=512k,mode=0700") == 0) {
        real = 1;
        snprintf(how, sizeof how, "a 512 KiB tmpfs (real ENOSPC)");
    } else {
        signal(SIGXFSZ, SIG_IGN);
        if (getrlimit(RLIMIT_FSIZE, &rl) != 0)
            DF_FAIL("getrlimit");
        rl.rlim_cur = 512 * 1024;   /* the soft limit only: it can be raised again */
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            DF_FAIL("neither a tmpfs mount nor RLIMIT_FSIZE is possible here");
        snprintf(how, sizeof how, "RLIMIT_FSIZE 512 KiB (EFBIG; %s)",
                 force_rlimit ? "the second case" : "not root or no tmpfs: no real ENOSPC here");
    }
    if (open_at(&c, dir, TU_PASS, KM_OPEN_CREATE) != KM_OK)
        DF_FAIL("cannot create the vault");
    for (n = 0; n < 20000; n++) {
        snprintf(name, sizeof name, "key-%d", n);
        if ((rc = km_key_create(&k, c, name, KM_KEY_AES_256_GCM, NULL)) != KM_OK)
            break;
        km_key_free(k);
        k = NULL;
    }
    if (rc == KM_OK)
        DF_FAIL("20000 keys fit in 512 KiB");
    native = km_error_last()->native;
    if (rc != KM_E_FULL)
        DF_FAIL("the failing create gave %s, not KM_E_FULL", km_err_name(rc));
    if (native != (unsigned long)(real ? ENOSPC : EFBIG) && native != EIO)
        DF_FAIL("native code %lu, not %d or EIO", native, real ? ENOSPC : EFBIG);
    if (strstr(km_error_last()->message, "full") == NULL
        && strstr(km_error_last()->message, "No space") == NULL
        && strstr(km_error_last()->message, "too large") == NULL)
        DF_FAIL("the message does not say the storage is full");
    if (k != NULL)
        DF_FAIL("a key handle came back from the failed create");
    /* nothing partial: the failed key is absent, the others all work */
    if (km_key_open(&k, c, name) != KM_E_NOTFOUND)
        DF_FAIL("the key of the failed create exists");
    i = 0;
    if (km_key_list(c, count_key, &i) != KM_OK || i != n)
        DF_FAIL("%d keys listed, %d stored", i, n);
    for (i = 0; i < n; i += n / 10 + 1) {
        uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD], pt[16];
        size_t l, m;
        snprintf(name, sizeof name, "key-%d", i);
        if (km_key_open(&k, c, name) != KM_OK
            || km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &l)
                   != KM_OK
            || km_decrypt(c, 0, ct, l, NULL, 0, pt, sizeof pt, &m) != KM_OK)
            DF_FAIL("stored key %s does not work on the full disk", name);
        km_key_free(k);
        k = NULL;
    }
    km_close(c);
    c = NULL;
    /* reopens on the full disk, chain whole */
    if (open_at(&c, dir, TU_PASS, 0) != KM_OK)
        DF_FAIL("the vault does not reopen on the full disk");
    {
        uint64_t count = 0, bad = 0;
        if (km_audit_verify(c, NULL, &count, &bad) != KM_OK)
            DF_FAIL("the audit chain is broken at %llu", (unsigned long long)bad);
    }
    /* the space returns: the same create works */
    if (real) {
        if (mount("tmpfs", dir, "tmpfs", MS_REMOUNT, "size=4m,mode=0700") != 0)
            DF_FAIL("cannot grow the tmpfs");
    } else {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            DF_FAIL("cannot lift RLIMIT_FSIZE");
    }
    snprintf(name, sizeof name, "key-%d", n);
    if (km_key_create(&k, c, name, KM_KEY_AES_256_GCM, NULL) != KM_OK)
        DF_FAIL("after the space returned the create still fails");
    km_key_free(k);
    km_close(c);
    printf("faults: disk full on %s: %d keys stored, the next create KM_E_FULL (errno %lu), "
           "nothing partial, every key usable, the vault reopens, and the create succeeds once "
           "the space returned\n", how, n, native);
    fflush(stdout);
    free(top); /* the test's tmpdir name: under valgrind the child's _exit checks for leaks */
    _exit(0);
}

START_TEST(test_disk_full)
{
    char *dir = tu_tmpdir();
    char vdir[4200];
    int st = 0;
    pid_t pid;

    snprintf(vdir, sizeof vdir, "%s/fs", dir);
    ck_assert(mkdir(vdir, 0700) == 0);
    fflush(stdout);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0)
        disk_full_child(dir, vdir, _i);
    ck_assert(waitpid(pid, &st, 0) == pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "disk-full child: status %#x (see the "
                  "faults: line above)", st);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* The JSON-lines sink gets an entry only once its change is committed (issue
 * 18: the line used to be written while the entry was appended, before the
 * commit). A rotation is killed at each of its write steps: whenever the
 * rotation did not commit, the sink holds no key.rotate line. */
START_TEST(test_sink_line_only_after_commit)
{
    char *dir = tu_tmpdir(), base[4200], work[4200], sink[4300];
    unsigned long steps, s;
    unsigned uncommitted = 0, committed = 0;
    km_keyinfo *info = NULL;
    km_ctx *c;
    km_key *k;

    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(sink, sizeof sink, "%s/audit.jsonl", dir);
    ck_assert_int_eq(mkdir(base, 0700), 0);
    OK(open_at(&c, base, TU_PASS, KM_OPEN_CREATE));
    OK(km_key_create(&k, c, "k", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    km_close(c);
    copy_dir(base, work);
    OK(open_at(&c, work, TU_PASS, 0));
    OK(km_key_open(&k, c, "k"));
    km__fault_arm(ULONG_MAX);
    OK(km_key_rotate(k, NULL));
    steps = km__fault_steps();
    km__fault_arm(0);
    km_key_free(k);
    km_close(c);
    for (s = 1; s <= steps; s++) {
        uint8_t *file;
        size_t n = 0;
        int st = 0, has;
        pid_t pid;

        copy_dir(base, work);
        unlink(sink);
        fflush(stdout);
        pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            km_ctx *cc;
            km_key *kk;
            if (open_at(&cc, work, TU_PASS, 0) != KM_OK || km_audit_sink_file(cc, sink) != KM_OK
                || km_key_open(&kk, cc, "k") != KM_OK)
                _exit(3);
            km__fault_arm(s);
            (void)km_key_rotate(kk, NULL);
            _exit(0);
        }
        ck_assert(waitpid(pid, &st, 0) == pid);
        ck_assert_msg(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
                      "step %lu: child status %#x", s, st);
        OK(open_at(&c, work, TU_PASS, 0));
        OK(km_key_open(&k, c, "k"));
        OK(km_key_info(&info, k));
        file = tu_read_file(sink, &n);
        has = file != NULL && tu_memmem(file, n, (const uint8_t *)"\"op\":\"key.rotate\"", 17);
        if (km_keyinfo_version_count(info) == 1) {
            ck_assert_msg(!has, "step %lu: the sink has a key.rotate line but the rotation was "
                                "not committed", s);
            uncommitted++;
        } else {
            committed++;
        }
        free(file);
        km_keyinfo_free(info);
        km_key_free(k);
        km_close(c);
    }
    ck_assert_uint_gt(uncommitted, 0);
    ck_assert_uint_gt(committed, 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("faults", "every-step", &tc, 600, NULL, NULL);

    tcase_add_loop_test(tc, test_crash_at_every_step, 0, OP__COUNT);
    tc = tu_tcase(s, "disk-full", 300, NULL, NULL);
    /* 0: a real ENOSPC on a tmpfs when root (else RLIMIT_FSIZE, said so);
     * 1: RLIMIT_FSIZE (EFBIG) in every case */
    tcase_add_loop_test(tc, test_disk_full, 0, 2);
    tc = tu_tcase(s, "sinks", 120, NULL, NULL);
    tcase_add_test(tc, test_sink_line_only_after_commit);
    return tu_run(s);
}
