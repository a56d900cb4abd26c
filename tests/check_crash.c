/* check_crash.c - SIGKILL at random moments: every acknowledged change is
 * there afterwards, nothing half-done is, usage counters never go backwards,
 * the vault opens without repair.
 *
 * test_crash_lifecycle_sigkill runs KM_CRASH_KILLS rounds (default 200; `make
 * soak` runs 10,000): a child creates, rotates, revokes, schedules for
 * destruction and destroys (km_maintain) keys, announcing each call on a
 * pipe before it and acknowledging it after it returned; the parent kills it
 * at a random moment, then opens the vault afresh and checks every key
 * against its model: each acknowledged change is there, the one call in
 * flight is either wholly there or wholly absent, every version that may
 * process still decrypts what the child encrypted under it, and no other key
 * exists. */
#include <check.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <km.h>

#include "testutil.h"

#define ROUNDS 40

struct ack {
    uint32_t encrypts;   /* successful km_encrypt calls so far in this child */
    uint32_t version;    /* newest version a completed km_key_rotate returned */
};

/* The child: encrypts, rotates every 64 encryptions, and acknowledges each
 * completed call on the pipe; runs until killed. */
static void child(const char *dir, int fd)
{
    km_ctx *ctx = NULL;
    km_key *k = NULL;
    struct ack a = { 0, 0 };
    uint8_t ct[64];
    size_t n;
    if (tu_vault_open(&ctx, dir, TU_PASS, 0) != KM_OK || km_key_open(&k, ctx, "busy") != KM_OK)
        _exit(2);
    for (;;) {
        if (km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &n) != KM_OK)
            _exit(3);
        a.encrypts++;
        if (a.encrypts % 64 == 0 && km_key_rotate(k, &a.version) != KM_OK)
            _exit(4);
        if (write(fd, &a, sizeof a) != sizeof a)
            _exit(5);
    }
}

START_TEST(test_crash_sigkill_keeps_acknowledged_changes)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    km_key *k = NULL;
    uint64_t acked_encrypts = 0;
    uint32_t acked_version = 1;
    int round;

    srand((unsigned)time(NULL));
    ck_assert_int_eq(km_key_create(NULL, ctx, "busy", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_close(ctx);
    for (round = 0; round < ROUNDS; round++) {
        int fds[2], st;
        struct ack a, last = { 0, 0 };
        pid_t pid;
        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, fds[1]);
        }
        close(fds[1]);
        /* wait until the child works (its vault open runs scrypt), then kill
         * it at a random moment 0-40 ms later */
        ck_assert_int_eq(read(fds[0], &last, sizeof last), (ssize_t)sizeof last);
        usleep((useconds_t)(rand() % 40000));
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        ck_assert_msg(WIFSIGNALED(st), "child exited on its own (%d)", WEXITSTATUS(st));
        while (read(fds[0], &a, sizeof a) == sizeof a)
            last = a;
        close(fds[0]);
        acked_encrypts += last.encrypts;
        if (last.version > acked_version)
            acked_version = last.version;
    }
    /* Opens without repair; every acknowledged rotation is there; the
     * persisted invocation counts add up to at least what was acknowledged. */
    ctx = tu_vault(dir);
    ck_assert_int_eq(km_key_open(&k, ctx, "busy"), KM_OK);
    {
        km_keyinfo *info = NULL;
        uint64_t total = 0;
        uint32_t i;
        ck_assert_int_eq(km_key_info(&info, k), KM_OK);
        ck_assert_uint_ge(km_keyinfo_version_count(info), acked_version);
        for (i = 0; i < km_keyinfo_version_count(info); i++) {
            km_version_info vi;
            ck_assert_int_eq(km_keyinfo_version(info, i, &vi, sizeof vi), KM_OK);
            total += vi.invocations;
        }
        ck_assert_msg(total >= acked_encrypts, "counters went backwards: %llu persisted, %llu acknowledged",
                      (unsigned long long)total, (unsigned long long)acked_encrypts);
        printf("crash: %d SIGKILLs; %llu acknowledged encryptions, %llu persisted; %u versions "
               "acknowledged, %u present; 0 lost\n", ROUNDS, (unsigned long long)acked_encrypts,
               (unsigned long long)total, acked_version, km_keyinfo_version_count(info));
        km_keyinfo_free(info);
        ck_assert_uint_gt(acked_encrypts, 0);
    }
    km_key_free(k);
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------ lifecycle under SIGKILL */

#define SLOTS 8                 /* keys changed at a time */
#define MAXV 6                  /* versions per key before it is retired */
#define CT_LEN (16 + KM_CIPHERTEXT_OVERHEAD)
#define GRACE_DAYS 7            /* the default policy's shortest grace */
#define FUTURE_S ((int64_t)8 * 86400)

enum { OP_CREATE = 1, OP_ROTATE, OP_REVOKE, OP_SCHEDULE, OP_MAINTAIN, OP_RETIRE, OP__N };
enum { MSG_READY = 0, MSG_INTENT = 1, MSG_ACK = 2 };
static const char *const op_names[OP__N] = { "", "create", "rotate", "revoke", "schedule-destroy",
                                             "maintain (destroy)", "retire" };

struct slot {
    uint32_t gen;               /* the key of this slot is named s<slot>-g<gen> */
    int exists;
    uint32_t nvers;
    uint8_t state[MAXV];        /* km_key_state of version i + 1 */
    uint8_t has_ct[MAXV];       /* a ciphertext the child made under version i + 1 */
    uint32_t ct_len[MAXV];
    uint8_t ct[MAXV][CT_LEN];
};

struct model {
    struct slot s[SLOTS];
    uint32_t keys;              /* keys ever created: what km_key_list must count */
    int64_t clock_ahead;        /* the children's clock offset: FUTURE_S more at each
                                 * maintain (time never goes back past the last audited) */
};

/* One message on the pipe (smaller than PIPE_BUF: written atomically). */
struct msg {
    uint32_t kind, op, slot, version, ct_len;
    uint8_t ct[CT_LEN];
};

static void slot_name(char *out, size_t cap, uint32_t slot, uint32_t gen)
{
    snprintf(out, cap, "s%u-g%u", slot, gen);
}

static void slot_plain(uint8_t pt[16], uint32_t slot, uint32_t gen, uint32_t version)
{
    memset(pt, 0, 16);
    snprintf((char *)pt, 16, "%u/%u/%u", slot, gen, version);
}

/* A completed call, applied to the model (parent and child alike). */
static void model_apply(struct model *m, const struct msg *g)
{
    struct slot *s = &m->s[g->slot];
    uint32_t i, j;

    switch (g->op) {
    case OP_CREATE:
        memset(s->state, 0, sizeof s->state);
        memset(s->has_ct, 0, sizeof s->has_ct);
        s->exists = 1;
        s->nvers = 1;
        s->state[0] = KM_STATE_ACTIVE;
        m->keys++;
        break;
    case OP_ROTATE:
        s->state[s->nvers] = KM_STATE_ACTIVE;
        s->has_ct[s->nvers] = 0;
        s->nvers++;
        break;
    case OP_REVOKE:
        s->state[g->version - 1] = KM_STATE_DEACTIVATED;
        break;
    case OP_SCHEDULE:
        s->state[g->version - 1] = KM_STATE_DESTROY_PENDING;
        break;
    case OP_MAINTAIN:
        for (i = 0; i < SLOTS; i++)
            for (j = 0; j < m->s[i].nvers; j++)
                if (m->s[i].state[j] == KM_STATE_DESTROY_PENDING)
                    m->s[i].state[j] = KM_STATE_DESTROYED;
        break;
    case OP_RETIRE:
        s->gen++;
        s->exists = 0;
        s->nvers = 0;
        memset(s->state, 0, sizeof s->state);
        memset(s->has_ct, 0, sizeof s->has_ct);
        break;
    default:
        break;
    }
    if ((g->op == OP_CREATE || g->op == OP_ROTATE) && g->ct_len > 0 && g->version >= 1
        && g->version <= MAXV) {
        memcpy(s->ct[g->version - 1], g->ct, g->ct_len);
        s->ct_len[g->version - 1] = g->ct_len;
        s->has_ct[g->version - 1] = 1;
    }
}

static int any_pending(const struct model *m)
{
    uint32_t i, j;
    for (i = 0; i < SLOTS; i++)
        for (j = 0; j < m->s[i].nvers; j++)
            if (m->s[i].state[j] == KM_STATE_DESTROY_PENDING)
                return 1;
    return 0;
}

/* The child's next call. */
static void choose(const struct model *m, unsigned *seed, struct msg *g)
{
    uint32_t slot = (uint32_t)rand_r(seed) % SLOTS, v, cand[3], n = 0;
    const struct slot *s = &m->s[slot];
    uint32_t revoke_v = 0, sched_v = 0;

    memset(g, 0, sizeof *g);
    g->slot = slot;
    if (any_pending(m) && rand_r(seed) % 3 == 0) {
        g->op = OP_MAINTAIN;
        return;
    }
    if (!s->exists) {
        g->op = OP_CREATE;
        g->version = 1;
        return;
    }
    /* the newest version is the primary and always ACTIVE here */
    for (v = 1; v < s->nvers; v++) {
        if (revoke_v == 0 && s->state[v - 1] == KM_STATE_ACTIVE)
            revoke_v = v;
        if (sched_v == 0 && s->state[v - 1] == KM_STATE_DEACTIVATED)
            sched_v = v;
    }
    if (s->nvers < MAXV)
        cand[n++] = OP_ROTATE;
    if (revoke_v)
        cand[n++] = OP_REVOKE;
    if (sched_v)
        cand[n++] = OP_SCHEDULE;
    if (n == 0) {
        g->op = any_pending(m) ? OP_MAINTAIN : OP_RETIRE;
        return;
    }
    g->op = cand[(uint32_t)rand_r(seed) % n];
    g->version = g->op == OP_ROTATE ? s->nvers + 1 : g->op == OP_REVOKE ? revoke_v
                 : g->op == OP_SCHEDULE ? sched_v : 0;
}

static int64_t crash_clock(void *arg)
{
    return (int64_t)time(NULL) + *(volatile int64_t *)arg;
}

static int open_with_clock(km_ctx **out, const char *dir, int64_t *offset)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = crash_clock;
    o.clock_arg = offset;
    return tu_vault_open_with(out, dir, &o);
}

static void send_msg(int fd, const struct msg *g)
{
    if (write(fd, g, sizeof *g) != (ssize_t)sizeof *g)
        _exit(5);
}

/* The child: runs calls on its copy of the parent's model until killed. */
static void lifecycle_child(const char *dir, int fd, struct model *m, unsigned seed)
{
    static int64_t offset;
    km_ctx *ctx = NULL;

    offset = m->clock_ahead;
    struct msg g;
    char name[64];

    if (open_with_clock(&ctx, dir, &offset) != KM_OK)
        _exit(2);
    memset(&g, 0, sizeof g);
    send_msg(fd, &g);           /* MSG_READY */
    for (;;) {
        km_key *k = NULL;
        uint8_t pt[16];
        size_t n = 0;
        uint32_t v = 0;
        int rc = KM_OK;

        choose(m, &seed, &g);
        g.kind = MSG_INTENT;
        send_msg(fd, &g);
        slot_name(name, sizeof name, g.slot, m->s[g.slot].gen);
        switch (g.op) {
        case OP_CREATE:
            rc = km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL);
            break;
        case OP_ROTATE:
            if ((rc = km_key_open(&k, ctx, name)) == KM_OK && (rc = km_key_rotate(k, &v)) == KM_OK
                && v != g.version)
                _exit(20);
            break;
        case OP_REVOKE:
            if ((rc = km_key_open(&k, ctx, name)) == KM_OK)
                rc = km_key_revoke(k, g.version, KM_REVOKE_SUPERSEDED, 0);
            break;
        case OP_SCHEDULE:
            if ((rc = km_key_open(&k, ctx, name)) == KM_OK)
                rc = km_key_schedule_destroy(k, g.version, GRACE_DAYS);
            break;
        case OP_MAINTAIN:
            offset += FUTURE_S;
            rc = km_maintain(ctx, NULL);
            break;
        default:
            break;
        }
        if (rc != KM_OK)
            _exit(10 + (int)g.op);
        if (g.op == OP_CREATE || g.op == OP_ROTATE) {
            slot_plain(pt, g.slot, m->s[g.slot].gen, g.version);
            if (km_encrypt(k, pt, sizeof pt, NULL, 0, g.ct, sizeof g.ct, &n) != KM_OK)
                _exit(30);
            g.ct_len = (uint32_t)n;
        }
        km_key_free(k);
        g.kind = MSG_ACK;
        send_msg(fd, &g);
        model_apply(m, &g);
    }
}

struct crash_stats {
    uint64_t acked[OP__N];
    uint64_t inflight, inflight_done, versions_checked, decrypts;
};

static int count_key(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name; (void)id; (void)type;
    (*(uint32_t *)arg)++;
    return 0;
}

/* Opens the vault afresh and checks it against the model, allowing the call
 * in flight (if any) to be wholly done or wholly not; then makes the model
 * what was found. */
static void verify_round(const char *dir, struct model *m, const struct msg *fl,
                         struct crash_stats *st, int round)
{
    km_ctx *ctx = NULL;
    uint32_t i, j, keys = 0;
    int rc, done = 0;

    rc = tu_vault_open(&ctx, dir, TU_PASS, 0);
    ck_assert_msg(rc == KM_OK, "round %d: the vault does not open after SIGKILL: %s (%s)", round,
                  km_err_name(rc), km_error_last()->message);
    for (i = 0; i < SLOTS; i++) {
        struct slot *s = &m->s[i];
        int on_me = fl != NULL && fl->slot == i;
        km_key *k = NULL;
        km_keyinfo *info = NULL;
        char name[64];
        uint32_t nv;

        slot_name(name, sizeof name, i, s->gen);
        rc = km_key_open(&k, ctx, name);
        if (!s->exists) {
            if (rc == KM_E_NOTFOUND)
                continue;
            ck_assert_msg(rc == KM_OK && on_me && fl->op == OP_CREATE,
                          "round %d: key %s is %s, expected absent", round, name, km_err_name(rc));
            s->exists = 1;      /* the create in flight was done; checked below */
            s->nvers = 0;
            m->keys++;
            done = 1;
        } else {
            ck_assert_msg(rc == KM_OK, "round %d: acknowledged key %s: %s", round, name,
                          km_err_name(rc));
        }
        ck_assert_int_eq(km_key_info(&info, k), KM_OK);
        nv = km_keyinfo_version_count(info);
        if (on_me && (fl->op == OP_CREATE || fl->op == OP_ROTATE) && nv == s->nvers + 1) {
            ck_assert_msg(nv == fl->version, "round %d: %s has %u versions", round, name, nv);
            s->state[nv - 1] = KM_STATE_ACTIVE;
            s->has_ct[nv - 1] = 0;
            s->nvers = nv;
            done = 1;
        }
        ck_assert_msg(nv == s->nvers, "round %d: key %s has %u versions, %u acknowledged", round,
                      name, nv, s->nvers);
        for (j = 0; j < nv; j++) {
            km_version_info vi;
            uint8_t want = s->state[j];
            ck_assert_int_eq(km_keyinfo_version(info, j, &vi, sizeof vi), KM_OK);
            ck_assert_uint_eq(vi.version, j + 1);
            if ((uint8_t)vi.state != want) {
                int ok = 0;
                if (on_me && fl->version == j + 1 && fl->op == OP_REVOKE)
                    ok = vi.state == KM_STATE_DEACTIVATED;
                else if (on_me && fl->version == j + 1 && fl->op == OP_SCHEDULE)
                    ok = vi.state == KM_STATE_DESTROY_PENDING;
                else if (fl != NULL && fl->op == OP_MAINTAIN && want == KM_STATE_DESTROY_PENDING)
                    ok = vi.state == KM_STATE_DESTROYED;
                ck_assert_msg(ok, "round %d: key %s version %u is %s, expected %s%s", round, name,
                              j + 1, km_state_name(vi.state), km_state_name((km_key_state)want),
                              fl != NULL ? " (or the call in flight done)" : "");
                s->state[j] = (uint8_t)vi.state;
                done = 1;
            }
            st->versions_checked++;
            /* the material: what the child encrypted still decrypts while
             * the version may process, and never after */
            if (s->has_ct[j]) {
                uint8_t pt[16], want_pt[16];
                size_t n = 0;
                int drc = km_decrypt(ctx, 0, s->ct[j], s->ct_len[j], NULL, 0, pt, sizeof pt, &n);
                slot_plain(want_pt, i, s->gen, j + 1);
                if (vi.state == KM_STATE_ACTIVE || vi.state == KM_STATE_DEACTIVATED) {
                    ck_assert_msg(drc == KM_OK && n == 16 && memcmp(pt, want_pt, 16) == 0,
                                  "round %d: key %s version %u no longer decrypts: %s", round,
                                  name, j + 1, km_err_name(drc));
                } else {
                    ck_assert_msg(drc != KM_OK && tu_all_zero(pt, sizeof pt),
                                  "round %d: key %s version %u (%s) still decrypts", round, name,
                                  j + 1, km_state_name(vi.state));
                }
                st->decrypts++;
            }
        }
        km_keyinfo_free(info);
        km_key_free(k);
    }
    ck_assert_int_eq(km_key_list(ctx, count_key, &keys), KM_OK);
    ck_assert_msg(keys == m->keys, "round %d: %u keys in the vault, %u created", round, keys, m->keys);
    km_close(ctx);
    if (fl != NULL) {
        st->inflight++;
        st->inflight_done += (uint64_t)done;
    }
}

static int crash_kills(void)
{
    const char *e = getenv("KM_CRASH_KILLS");
    long n = e != NULL ? strtol(e, NULL, 10) : 0;
    return n > 0 && n <= 10000000 ? (int)n : 200;
}

START_TEST(test_crash_lifecycle_sigkill)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    struct model *m = calloc(1, sizeof *m);

    tu_allow_test_clock(ctx, 0);      /* the children move time with crash_clock */
    struct crash_stats st;
    int round, kills = crash_kills();
    uint64_t total = 0;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();

    ck_assert_ptr_nonnull(m);
    memset(&st, 0, sizeof st);
    km_close(ctx);
    srand(seed);
    for (round = 0; round < kills; round++) {
        int fds[2], status;
        struct msg g, fl;
        int have_fl = 0;
        ssize_t r;
        pid_t pid;

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            lifecycle_child(dir, fds[1], m, seed + (unsigned)round * 7919u);
        }
        close(fds[1]);
        r = read(fds[0], &g, sizeof g);
        if (r != (ssize_t)sizeof g) {
            waitpid(pid, &status, 0);
            ck_abort_msg("round %d: the child did not start (exit %d)", round,
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        /* 0-60 ms: from inside its first call to several calls later */
        usleep((useconds_t)(rand() % 60000));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_assert_msg(WIFSIGNALED(status), "round %d: the child failed (exit %d)", round,
                      WEXITSTATUS(status));
        while ((r = read(fds[0], &g, sizeof g)) == (ssize_t)sizeof g) {
            if (g.kind == MSG_INTENT) {
                fl = g;
                have_fl = 1;
                if (g.op == OP_MAINTAIN)   /* as the child's clock moved */
                    m->clock_ahead += FUTURE_S;
            } else if (g.kind == MSG_ACK) {
                model_apply(m, &g);
                st.acked[g.op]++;
                have_fl = 0;
            }
        }
        ck_assert_int_eq(r, 0);
        close(fds[0]);
        verify_round(dir, m, have_fl ? &fl : NULL, &st, round);
    }
    for (round = 1; round < OP__N; round++)
        total += st.acked[round];
    printf("crash-lifecycle: %d SIGKILLs; %llu acknowledged changes (", kills,
           (unsigned long long)total);
    for (round = 1; round < OP__N; round++)
        printf("%s%s %llu", round > 1 ? ", " : "", op_names[round],
               (unsigned long long)st.acked[round]);
    printf("), 0 lost; %llu kills with a call in flight: %llu found done, %llu not done, 0 "
           "half-done; %u keys; %llu version states and %llu decryptions checked\n",
           (unsigned long long)st.inflight, (unsigned long long)st.inflight_done,
           (unsigned long long)(st.inflight - st.inflight_done), m->keys,
           (unsigned long long)st.versions_checked, (unsigned long long)st.decrypts);
    fflush(stdout);
    ck_assert_uint_gt(total, 0);
    free(m);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *crash_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("crash", NULL, &tc, 300, NULL, NULL);

    tcase_add_test(tc, test_crash_sigkill_keeps_acknowledged_changes);
    /* about 0.1 s a round (two scrypt opens); generous for loaded machines */
    tc = tu_tcase(s, "lifecycle", 120.0 + 1.0 * crash_kills(), NULL, NULL);
    tcase_add_test(tc, test_crash_lifecycle_sigkill);
    return s;
}

int main(void)
{
    return tu_run(crash_suite());
}
