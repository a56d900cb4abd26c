/* check_threads.c - one key handle shared by threads that encrypt, decrypt
 * and rotate at once; nonces never repeat across threads and processes. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <km.h>

#include "testutil.h"

#define THREADS 4
#define PER_THREAD 20000

static char *dir;
static km_ctx *ctx;
static km_key *key;
static uint8_t (*nonces)[12];
static volatile int failures;

static void setup(void)
{
    tu_setup(&dir, &ctx, NULL);
    ck_assert_int_eq(km_key_create(&key, ctx, "shared", KM_KEY_AES_256_GCM, NULL), KM_OK);
    nonces = calloc((size_t)THREADS * PER_THREAD * 2, 12);
    failures = 0;
}

static void teardown(void)
{
    free(nonces);
    km_key_free(key);
    tu_teardown(&dir, &ctx);
}

static void *worker(void *arg)
{
    size_t id = (size_t)(uintptr_t)arg, i;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD], pt[64], msg[64];
    for (i = 0; i < PER_THREAD; i++) {
        size_t n, m;
        memset(msg, (int)(i + id), sizeof msg);
        if (km_encrypt(key, msg, sizeof msg, (const uint8_t *)&id, sizeof id, ct, sizeof ct, &n) != KM_OK
            || km_decrypt(ctx, 0, ct, n, (const uint8_t *)&id, sizeof id, pt, sizeof pt, &m) != KM_OK
            || m != sizeof msg || memcmp(pt, msg, m) != 0) {
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
            continue;
        }
        memcpy(nonces[id * PER_THREAD + i], ct + 24, 12);
    }
    return NULL;
}

static void *rotator(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < 20; i++) {
        if (km_key_rotate(key, NULL) != KM_OK)
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int cmp12(const void *a, const void *b)
{
    return memcmp(a, b, 12);
}

static size_t duplicates(uint8_t (*v)[12], size_t n)
{
    size_t i, d = 0;
    qsort(v, n, 12, cmp12);
    for (i = 1; i < n; i++)
        if (memcmp(v[i - 1], v[i], 12) == 0)
            d++;
    return d;
}

/* No failed decrypt during rotation, and no repeated nonce. */
START_TEST(test_threads_encrypt_decrypt_rotate)
{
    pthread_t t[THREADS], r;
    size_t i;
    km_keyinfo *info = NULL;
    for (i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i), 0);
    ck_assert_int_eq(pthread_create(&r, NULL, rotator, NULL), 0);
    for (i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_join(r, NULL);
    ck_assert_int_eq(failures, 0);
    ck_assert_uint_eq(duplicates(nonces, (size_t)THREADS * PER_THREAD), 0);
    ck_assert_int_eq(km_key_info(&info, key), KM_OK);
    ck_assert_uint_eq(km_keyinfo_version_count(info), 21);
    km_keyinfo_free(info);
}
END_TEST

/* Parent and a forked child (with its own vault context) never produce the
 * same nonce. */
START_TEST(test_threads_fork_nonces_distinct)
{
    int fds[2];
    pid_t pid;
    size_t i, n = 2000;
    uint8_t ct[KM_CIPHERTEXT_OVERHEAD];
    size_t len;
    for (i = 0; i < 10; i++) /* warm the parent's nonce buffer before fork */
        ck_assert_int_eq(km_encrypt(key, NULL, 0, NULL, 0, ct, sizeof ct, &len), KM_OK);
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_ctx *c2 = NULL;
        km_key *k2 = NULL;
        close(fds[0]);
        if (tu_vault_open(&c2, dir, TU_PASS, 0) != KM_OK || km_key_open(&k2, c2, "shared") != KM_OK)
            _exit(2);
        for (i = 0; i < n; i++) {
            if (km_encrypt(k2, NULL, 0, NULL, 0, ct, sizeof ct, &len) != KM_OK
                || write(fds[1], ct + 24, 12) != 12)
                _exit(3);
        }
        km_key_free(k2);
        km_close(c2);
        _exit(0);
    }
    close(fds[1]);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(km_encrypt(key, NULL, 0, NULL, 0, ct, sizeof ct, &len), KM_OK);
        memcpy(nonces[i], ct + 24, 12);
    }
    for (i = 0; i < n; i++)
        ck_assert_int_eq(read(fds[0], nonces[n + i], 12), 12);
    {
        int st = 0;
        waitpid(pid, &st, 0);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    close(fds[0]);
    ck_assert_uint_eq(duplicates(nonces, 2 * n), 0);
}
END_TEST

/* Per-thread shares of the usage allowance (key.c km__ver_count): threads take
 * invocations from shares of their own, yet together they make exactly the
 * limit's count of encryptions, never one more, even when a thread sits on a
 * share it filled (the others take its leftovers before they are refused), and
 * the vault counts every one. */
#define LIM_THREADS 3
#define LIM_L 10007u

static km_key *lim_key;
static pthread_barrier_t lim_bar;
static unsigned lim_ok, lim_refused, lim_other;

static int lim_call(void)
{
    uint8_t ct[8 + KM_CIPHERTEXT_OVERHEAD];
    size_t n;
    int rc = km_encrypt(lim_key, (const uint8_t *)"12345678", 8, NULL, 0, ct, sizeof ct, &n);
    __atomic_add_fetch(rc == KM_OK ? &lim_ok : rc == KM_E_LIMIT ? &lim_refused : &lim_other, 1,
                       __ATOMIC_RELAXED);
    return rc;
}

static void *lim_worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&lim_bar);
    while (lim_call() == KM_OK)
        ;
    /* refused for good: a second try is refused too */
    lim_call();
    return NULL;
}

START_TEST(test_threads_usage_limit_exact)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    tu_open to = TU_OPEN_INIT;
    km_ctx *c2 = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    pthread_t t[LIM_THREADS];
    char pol[160];
    size_t i;

    snprintf(pol, sizeof pol, "{\"version\": 1, \"usage_limits\": {\"aes-gcm-invocations\": %u}}",
             LIM_L);
    o.policy = pol;
    ck_assert_int_eq(km_key_create(NULL, ctx, "limited", KM_KEY_AES_256_GCM, &o), KM_OK);
    /* a context that refreshes rarely: nothing rotates the key while we count */
    to.refresh_ms = 600000;
    ck_assert_int_eq(tu_vault_open_with(&c2, dir, &to), KM_OK);
    ck_assert_int_eq(km_key_open(&lim_key, c2, "limited"), KM_OK);
    lim_ok = lim_refused = lim_other = 0;
    /* this thread fills its share with one call, then sits on the rest */
    ck_assert_int_eq(lim_call(), KM_OK);
    ck_assert_int_eq(pthread_barrier_init(&lim_bar, NULL, LIM_THREADS), 0);
    for (i = 0; i < LIM_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, lim_worker, NULL), 0);
    for (i = 0; i < LIM_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&lim_bar);
    ck_assert_uint_eq(lim_other, 0);
    ck_assert_uint_eq(lim_ok, LIM_L);
    ck_assert_uint_eq(lim_refused, 2 * LIM_THREADS);
    ck_assert_int_eq(lim_call(), KM_E_LIMIT);
    /* the vault counted them all */
    ck_assert_int_eq(km_key_info(&info, lim_key), KM_OK);
    ck_assert_int_eq(km_keyinfo_version(info, 0, &vi, sizeof vi), KM_OK);
    ck_assert_uint_eq(vi.invocations, LIM_L);
    km_keyinfo_free(info);
    km_key_free(lim_key);
    km_close(c2);
}
END_TEST

static Suite *threads_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("threads", NULL, &tc, 300, setup, teardown);

    tcase_add_test(tc, test_threads_encrypt_decrypt_rotate);
    tcase_add_test(tc, test_threads_fork_nonces_distinct);
    tcase_add_test(tc, test_threads_usage_limit_exact);
    return s;
}

int main(void)
{
    return tu_run(threads_suite());
}
