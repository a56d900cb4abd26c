/* check_multiproc.c - several processes on one vault (docs/RELIABILITY.md D): one of
 * them SIGKILLed KM_MULTIPROC_KILLS times (default 20; `make soak`: 200, more
 * than LMDB's 126 reader slots, so reader slots left by killed readers must be
 * reclaimed) in the middle of its writes while three others go on: none of
 * them stalls, every write acknowledged by any of them is there afterwards,
 * the audit chain is whole. And SIGKILL during km_vault_compact
 * (docs/RELIABILITY.md C; KM_COMPACT_KILLS, default 20): the vault opens with every key
 * and its material after each kill, whether the compacted copy had replaced
 * data.mdb or not, and the half-written copy is removed. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <km.h>

#include "testutil.h"

#define WORKERS 3               /* survivors, besides the victim */
#define MAX_PER_WORKER 100000

static int env_count(const char *name, int dflt)
{
    const char *e = getenv(name);
    long n = e != NULL ? strtol(e, NULL, 10) : 0;
    return n > 0 && n <= 1000000 ? (int)n : dflt;
}

/* ------------------------------------------------------------ workers */

/* A worker: its own context; creates w<id>-<i>, rotates it, encrypts under
 * version 2, and only then writes i to `ack`; stops when `stop` reads EOF. */
static void worker(const char *dir, int id, int ack, int stop)
{
    km_ctx *ctx = NULL;
    uint32_t i;
    char name[64];
    uint8_t ct[8 + KM_CIPHERTEXT_OVERHEAD], c;

    if (tu_vault_open(&ctx, dir, TU_PASS, 0) != KM_OK)
        _exit(2);
    (void)fcntl(stop, F_SETFL, O_NONBLOCK);
    for (i = 0; i < MAX_PER_WORKER; i++) {
        km_key *k = NULL;
        uint32_t v = 0;
        size_t n;
        if (read(stop, &c, 1) == 0)
            break;
        snprintf(name, sizeof name, "w%d-%u", id, i);
        if (km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL) != KM_OK)
            _exit(3);
        if (km_key_rotate(k, &v) != KM_OK || v != 2)
            _exit(4);
        if (km_encrypt(k, (const uint8_t *)name, 8, NULL, 0, ct, sizeof ct, &n) != KM_OK)
            _exit(5);
        km_key_free(k);
        if (write(ack, &i, sizeof i) != (ssize_t)sizeof i)
            _exit(6);
    }
    km_close(ctx);
    _exit(0);
}

struct proc {
    pid_t pid;
    int ack;                    /* read end */
    uint32_t acked;             /* keys 0 .. acked-1 acknowledged */
};

static void spawn(struct proc *p, const char *dir, int id, int stop_rd, int stop_wr)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        close(fds[0]);
        close(stop_wr);
        worker(dir, id, fds[1], stop_rd);
    }
    close(fds[1]);
    ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    p->ack = fds[0];
}

static void drain(struct proc *p)
{
    uint32_t i;
    while (read(p->ack, &i, sizeof i) == (ssize_t)sizeof i)
        p->acked = i + 1;
}

static int count_key(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name; (void)id; (void)type;
    (*(uint64_t *)arg)++;
    return 0;
}

START_TEST(test_multiproc_one_killed_mid_write_others_go_on)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    struct proc w[WORKERS], victim;
    uint32_t victim_acked = 0, before[WORKERS];
    uint64_t keys = 0, acked_total = 0;
    int stop[2], kills = env_count("KM_MULTIPROC_KILLS", 20), round, i, st;
    unsigned incarnation = 0;
    char name[64];

    km_close(ctx);
    srand((unsigned)time(NULL));
    ck_assert_int_eq(pipe(stop), 0);
    for (i = 0; i < WORKERS; i++) {
        w[i].acked = 0;
        spawn(&w[i], dir, i, stop[0], stop[1]);
    }
    for (round = 0; round < kills; round++) {
        uint32_t got = 0;
        int waited;
        /* a victim that writes under its own id prefix per incarnation */
        victim.acked = 0;
        spawn(&victim, dir, 100 + (int)incarnation, stop[0], stop[1]);
        for (i = 0; i < WORKERS; i++) {
            drain(&w[i]);
            before[i] = w[i].acked;
        }
        /* wait for its first acknowledged write, then kill it at a random
         * moment of its next ones (it spends most of its time in write
         * transactions and their fsyncs) */
        for (waited = 0; waited < 5000 && victim.acked == 0; waited++) {
            usleep(1000);
            drain(&victim);
        }
        ck_assert_msg(victim.acked > 0, "round %d: the victim made no write in 5 s", round);
        usleep((useconds_t)(rand() % 8000));
        kill(victim.pid, SIGKILL);
        waitpid(victim.pid, &st, 0);
        ck_assert_msg(WIFSIGNALED(st), "round %d: the victim failed (exit %d)", round, WEXITSTATUS(st));
        drain(&victim);
        close(victim.ack);
        got = victim.acked;
        victim_acked += got;
        {
            /* what this incarnation acknowledged (w<100+inc>-0 .. got-1) is
             * there, seen from a fresh context while the others write */
            km_ctx *c = NULL;
            uint32_t j;
            ck_assert_int_eq(tu_vault_open(&c, dir, TU_PASS, 0), KM_OK);
            for (j = 0; j < got; j++) {
                km_key *k = NULL;
                km_keyinfo *info = NULL;
                snprintf(name, sizeof name, "w%u-%u", 100 + incarnation, j);
                ck_assert_msg(km_key_open(&k, c, name) == KM_OK, "round %d: acknowledged key %s lost",
                              round, name);
                ck_assert_int_eq(km_key_info(&info, k), KM_OK);
                ck_assert_uint_eq(km_keyinfo_version_count(info), 2);
                km_keyinfo_free(info);
                km_key_free(k);
            }
            km_close(c);
        }
        incarnation++;
        /* the others went on: each acknowledges a new write within 10 s */
        for (i = 0; i < WORKERS; i++) {
            for (waited = 0; waited < 10000; waited++) {
                drain(&w[i]);
                if (w[i].acked > before[i])
                    break;
                usleep(1000);
            }
            ck_assert_msg(w[i].acked > before[i], "round %d: worker %d stalled after the kill", round, i);
        }
    }
    /* stop the survivors (EOF on the stop pipe), collect their acks */
    close(stop[1]);
    for (i = 0; i < WORKERS; i++) {
        waitpid(w[i].pid, &st, 0);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d failed (status %d)", i, st);
        drain(&w[i]);
        close(w[i].ack);
        acked_total += w[i].acked;
    }
    close(stop[0]);
    ctx = tu_vault(dir);
    for (i = 0; i < WORKERS; i++) {
        uint32_t j;
        for (j = 0; j < w[i].acked; j++) {
            km_key *k = NULL;
            snprintf(name, sizeof name, "w%d-%u", i, j);
            ck_assert_msg(km_key_open(&k, ctx, name) == KM_OK, "acknowledged key %s lost", name);
            km_key_free(k);
        }
    }
    /* the survivors stopped between calls; each victim incarnation may have
     * left its one call in flight, whole: at most one more key each */
    ck_assert_int_eq(km_key_list(ctx, count_key, &keys), KM_OK);
    ck_assert_uint_ge(keys, acked_total + victim_acked);
    ck_assert_uint_le(keys, acked_total + victim_acked + (uint64_t)kills);
#ifdef KM_AUDIT_H
    {
        uint64_t count = 0, bad = 0;
        int rc = km_audit_verify(ctx, NULL, &count, &bad);
        ck_assert_msg(rc == KM_OK, "audit chain after the kills: %s at entry %llu", km_err_name(rc),
                      (unsigned long long)bad);
        printf("multiproc: audit chain whole (%llu entries)\n", (unsigned long long)count);
        fflush(stdout);
    }
#endif
    printf("multiproc: %d writer processes SIGKILLed mid-write while %d others wrote; %llu + %u writes "
           "acknowledged, all present; %llu keys in the vault; the others never stalled\n", kills,
           WORKERS, (unsigned long long)acked_total, victim_acked, (unsigned long long)keys);
    fflush(stdout);
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ compaction */

#define COMPACT_KEYS 300

START_TEST(test_multiproc_sigkill_during_compact)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    uint8_t ct[COMPACT_KEYS][8 + KM_CIPHERTEXT_OVERHEAD];
    size_t ct_len[COMPACT_KEYS];
    char name[64], tmp[4200];
    int kills = env_count("KM_COMPACT_KILLS", 20), round, i, mid = 0, compactions = 0;


    /* keys, and free pages (rotations rewrite the key records) */
    for (i = 0; i < COMPACT_KEYS; i++) {
        km_key *k = NULL;
        memset(name, 0, sizeof name);   /* the first 8 bytes of name are the plaintext */
        snprintf(name, sizeof name, "c%d", i);
        ck_assert_int_eq(km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL), KM_OK);
        if (i % 3 == 0)
            ck_assert_int_eq(km_key_rotate(k, NULL), KM_OK);
        ck_assert_int_eq(km_encrypt(k, (const uint8_t *)name, 8, NULL, 0, ct[i], sizeof ct[i], &ct_len[i]),
                         KM_OK);
        km_key_free(k);
    }
    km_close(ctx);
    snprintf(tmp, sizeof tmp, "%s/vault/compact.tmp", dir);
    srand((unsigned)time(NULL));
    for (round = 0; round < kills; round++) {
        int fds[2], st;
        uint32_t n = 0, last = 0;
        struct stat sb;
        uint64_t keys = 0;
        pid_t pid;

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *c = NULL;
            uint32_t j;
            close(fds[0]);
            if (tu_vault_open(&c, dir, TU_PASS, 0) != KM_OK)
                _exit(2);
            for (j = 1;; j++) {
                int rc = km_vault_compact(c);
                if (rc != KM_OK)
                    _exit(3);
                if (write(fds[1], &j, sizeof j) != (ssize_t)sizeof j)
                    _exit(4);
            }
        }
        close(fds[1]);
        /* after its first compaction, kill it inside one of the next */
        if (read(fds[0], &n, sizeof n) != (ssize_t)sizeof n) {
            waitpid(pid, &st, 0);
            ck_abort_msg("round %d: the compacting child failed (exit %d)", round,
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
        usleep((useconds_t)(rand() % 15000));
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        ck_assert_msg(WIFSIGNALED(st), "round %d: the child failed (exit %d)", round, WEXITSTATUS(st));
        last = n;
        while (read(fds[0], &n, sizeof n) == (ssize_t)sizeof n)
            last = n;
        close(fds[0]);
        compactions += (int)last;
        if (stat(tmp, &sb) == 0)
            mid++;              /* killed while the copy was being written */
        ctx = NULL;
        ck_assert_msg(tu_vault_open(&ctx, dir, TU_PASS, 0) == KM_OK,
                      "round %d: the vault does not open after a kill during compaction", round);
        ck_assert_int_ne(stat(tmp, &sb), 0);    /* the open removed a leftover copy */
        ck_assert_int_eq(km_key_list(ctx, count_key, &keys), KM_OK);
        ck_assert_uint_eq(keys, COMPACT_KEYS);
        for (i = round % 10; i < COMPACT_KEYS; i += 10) {
            uint8_t pt[8];
            size_t m;
            int drc;
            memset(name, 0, sizeof name);
            snprintf(name, sizeof name, "c%d", i);
            drc = km_decrypt(ctx, 0, ct[i], ct_len[i], NULL, 0, pt, sizeof pt, &m);
            ck_assert_msg(drc == KM_OK && m == 8 && memcmp(pt, name, 8) == 0,
                          "round %d: key %s lost its material: %s (%s)", round, name,
                          km_err_name(drc), km_error_last()->message);
        }
        km_close(ctx);
    }
    printf("compact: %d SIGKILLs during back-to-back km_vault_compact (%d compactions completed, "
           "%d kills left a half-written copy); the vault opened with all %d keys every time\n",
           kills, compactions, mid, COMPACT_KEYS);
    fflush(stdout);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *multiproc_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("multiproc", NULL, &tc, 0, NULL, NULL);

    tcase_set_timeout(tc, 120.0 + 2.0 * env_count("KM_MULTIPROC_KILLS", 20)
                              + 1.0 * env_count("KM_COMPACT_KILLS", 20));
    tcase_add_test(tc, test_multiproc_one_killed_mid_write_others_go_on);
    tcase_add_test(tc, test_multiproc_sigkill_during_compact);
    return s;
}

int main(void)
{
    return tu_run(multiproc_suite());
}
