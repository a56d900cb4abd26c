/* check_crash.c - SIGKILL at random moments: every acknowledged change is
 * there afterwards, usage counters never go backwards, the vault opens
 * without repair. (The long run of issue 10 extends this.) */
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

static Suite *crash_suite(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_crash_sigkill_keeps_acknowledged_changes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(crash_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
