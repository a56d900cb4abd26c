/* check_nonces.c - no two encryptions under one key version share a nonce
 * (docs/RELIABILITY.md B): KM_NONCE_TOTAL encryptions (default 2^20 in make check;
 * `make soak` runs 2^24) under one key, spread over two processes with their
 * own contexts, two threads in each, their main threads, and a child forked
 * from a process whose nonce stream was already in use (after its parent's
 * handle is refused there with KM_E_FORK, it opens the vault again). Every
 * participant writes its nonces to its own file; the parent sorts them all
 * and counts duplicates: zero. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <km.h>

#include "testutil.h"

#define NONCE_OFF 24            /* magic 2, format 1, alg 1, key id 16, version 4 */
#define NONCE_LEN 12

static char *dir;
static uint64_t total, warm_n, child_n, thread_n;

static uint64_t nonce_total(void)
{
    const char *e = getenv("KM_NONCE_TOTAL");
    unsigned long long n = e != NULL ? strtoull(e, NULL, 10) : 0;
    return n >= 1024 && n <= (1ull << 28) ? (uint64_t)n : (uint64_t)1 << 20;
}

/* Encrypts n empty messages with k and appends each nonce to `label`'s file. */
static int run(km_key *k, const char *label, uint64_t n)
{
    char path[4200];
    uint8_t ct[KM_CIPHERTEXT_OVERHEAD];
    size_t len;
    uint64_t i;
    FILE *f;
    static __thread char buf[1 << 16];

    snprintf(path, sizeof path, "%s/nonces.%s", dir, label);
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    setvbuf(f, buf, _IOFBF, sizeof buf);
    for (i = 0; i < n; i++) {
        if (km_encrypt(k, NULL, 0, NULL, 0, ct, sizeof ct, &len) != KM_OK || len != sizeof ct
            || fwrite(ct + NONCE_OFF, 1, NONCE_LEN, f) != NONCE_LEN) {
            fclose(f);
            return -1;
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

struct th {
    km_key *k;
    char label[32];
    int rc;
};

static void *thread_main(void *arg)
{
    struct th *t = arg;
    t->rc = run(t->k, t->label, thread_n);
    return NULL;
}

static int open_key(km_ctx **c, km_key **k)
{
    if (tu_vault_open(c, dir, TU_PASS, 0) != KM_OK)
        return -1;
    return km_key_open(k, *c, "nonces") == KM_OK ? 0 : -1;
}

/* A worker process: main thread first (warming its nonce stream), then for
 * process 0 a fork, then two threads. Exit status 0 on success. */
static void worker(int id)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    struct th t[2];
    pthread_t tid[2];
    char label[32];
    pid_t child = -1;
    int i, st = 0;

    if (open_key(&c, &k) != 0)
        _exit(2);
    snprintf(label, sizeof label, "p%d-main", id);
    if (run(k, label, warm_n) != 0)
        _exit(3);
    if (id == 0) {
        child = fork();
        if (child < 0)
            _exit(4);
        if (child == 0) {
            km_ctx *c2 = NULL;
            km_key *k2 = NULL;
            uint8_t ct[KM_CIPHERTEXT_OVERHEAD];
            size_t len;
            /* the parent's handle is refused in the child */
            if (km_encrypt(k, NULL, 0, NULL, 0, ct, sizeof ct, &len) != KM_E_FORK)
                _exit(20);
            if (open_key(&c2, &k2) != 0)
                _exit(21);
            if (run(k2, "forked", child_n) != 0)
                _exit(22);
            km_key_free(k2);
            km_close(c2);
            _exit(0);
        }
    }
    for (i = 0; i < 2; i++) {
        t[i].k = k;
        snprintf(t[i].label, sizeof t[i].label, "p%d-t%d", id, i);
        t[i].rc = -1;
        if (pthread_create(&tid[i], NULL, thread_main, &t[i]) != 0)
            _exit(5);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(tid[i], NULL);
        if (t[i].rc != 0)
            _exit(6);
    }
    if (child > 0 && (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0))
        _exit(7);
    km_key_free(k);
    km_close(c);
    _exit(0);
}

static int cmp12(const void *a, const void *b)
{
    return memcmp(a, b, NONCE_LEN);
}

START_TEST(test_nonces_never_repeat)
{
    static const char *const labels[] = { "p0-main", "p0-t0", "p0-t1", "forked",
                                          "p1-main", "p1-t0", "p1-t1" };
    km_ctx *ctx;
    pid_t pid[2];
    uint8_t *all;
    size_t have = 0, i, dups = 0;
    int p, st;

    dir = tu_tmpdir();
    ctx = tu_vault(dir);
    ck_assert_int_eq(km_key_create(NULL, ctx, "nonces", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_close(ctx);
    total = nonce_total();
    warm_n = total / 16;
    child_n = total / 8;
    thread_n = (total - 2 * warm_n - child_n) / 4;
    total = 2 * warm_n + child_n + 4 * thread_n;
    for (p = 0; p < 2; p++) {
        pid[p] = fork();
        ck_assert_int_ge(pid[p], 0);
        if (pid[p] == 0)
            worker(p);
    }
    for (p = 0; p < 2; p++) {
        ck_assert_int_eq(waitpid(pid[p], &st, 0), pid[p]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d failed (status %d)", p, st);
    }
    all = malloc((size_t)total * NONCE_LEN);
    ck_assert_ptr_nonnull(all);
    for (i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        char path[4200];
        size_t len = 0;
        uint8_t *b;
        snprintf(path, sizeof path, "%s/nonces.%s", dir, labels[i]);
        b = tu_read_file(path, &len);
        ck_assert_msg(b != NULL, "no nonce file %s", labels[i]);
        ck_assert_uint_eq(len % NONCE_LEN, 0);
        ck_assert_uint_le(have + len, (size_t)total * NONCE_LEN);
        memcpy(all + have, b, len);
        have += len;
        free(b);
        unlink(path);
    }
    ck_assert_uint_eq(have, (size_t)total * NONCE_LEN);
    qsort(all, (size_t)total, NONCE_LEN, cmp12);
    for (i = 1; i < (size_t)total; i++)
        if (memcmp(all + (i - 1) * NONCE_LEN, all + i * NONCE_LEN, NONCE_LEN) == 0)
            dups++;
    free(all);
    printf("nonces: %llu encryptions under one key version (2 processes x (main thread + 2 threads) "
           "+ 1 forked child), %zu duplicate nonces\n", (unsigned long long)total, dups);
    fflush(stdout);
    ck_assert_uint_eq(dups, 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *nonces_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("nonces", NULL, &tc, 0, NULL, NULL);

    /* 2^24 take about a minute on 2 cores; generous for loaded machines */
    tcase_set_timeout(tc, 60.0 + (double)nonce_total() / 50000.0);
    tcase_add_test(tc, test_nonces_never_repeat);
    return s;
}

int main(void)
{
    return tu_run(nonces_suite());
}
