/* check_openpath.c - what the open path keeps between calls (issue 24,
 * session 7; docs/PERFORMANCE.md "Session 7: the open path"): the LMDB store
 * keeps reset read transactions for reuse (src/store/lmdb.c, rd_take/rd_give),
 * so a read after another context's or another process's commit must see it
 * (a kept transaction renewed, never a kept snapshot); the kept transactions
 * are dropped before the environment closes or is compacted; and a
 * successful open leaves the caller's last error as it was. */
#include <check.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"
#include "store_int.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    tu_setup(&dir, NULL, NULL);
}

static void teardown(void)
{
    tu_teardown(&dir, NULL);
}

/* The name's id through a read transaction of c's store, or the code. */
static int lookup(km_ctx *c, const char *name)
{
    km__txn *t = NULL;
    uint8_t id[16];
    int rc = km__txn_begin(c->env, 0, &t);
    if (rc == KM_OK)
        rc = km__key_lookup_name(c, t, name, strlen(name), id);
    km__txn_abort(t);
    return rc;
}

/* A child process changes the vault: creates `create`, renames `from` to `to`. */
static void child_change(km_ctx *inherited[], const char *create, const char *from, const char *to)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_ctx *c = NULL;
        km_key *k = NULL;
        int ok = tu_vault_open(&c, dir, NULL, 0) == KM_OK
                 && km_key_create(NULL, c, create, KM_KEY_AES_256_GCM, NULL) == KM_OK
                 && km_key_open(&k, c, from) == KM_OK && km_key_rename(k, to) == KM_OK;
        km_key_free(k);
        km_close(c);
        while (*inherited != NULL) /* the parent's, freed (valgrind: lost in the child) */
            km_close(*inherited++);
        _exit(ok ? 0 : 1);
    }
    {
        int st = 0;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

/* Reads after a commit of another context (same environment) and of another
 * process see it: the kept read transaction of this thread is renewed (the
 * newest snapshot), and an open by name answers from the newest index. */
START_TEST(test_openpath_kept_txn_sees_commits)
{
    km_ctx *c = tu_vault(dir), *c2 = NULL, *c3;
    km_key *k = NULL;

    OK(km_key_create(NULL, c, "a", KM_KEY_AES_256_GCM, NULL));
    RC(KM_E_NOTFOUND, lookup(c, "b"));   /* the transaction is kept after this */
    RC(KM_E_NOTFOUND, lookup(c, "b"));   /* and reused */
    c2 = tu_vault(dir);
    OK(km_key_create(NULL, c2, "b", KM_KEY_AES_256_GCM, NULL));
    OK(lookup(c, "b"));
    OK(km_key_open(&k, c, "b"));
    km_key_free(k);

    /* another process: a new key, and "a" renamed to "a2" */
    OK(lookup(c, "a"));
    child_change((km_ctx *[]){ c, c2, NULL }, "c", "a", "a2");
    OK(lookup(c, "c"));
    RC(KM_E_NOTFOUND, lookup(c, "a"));
    OK(lookup(c, "a2"));
    c3 = tu_vault(dir);                  /* a cold key cache, the same environment */
    RC(KM_E_NOTFOUND, km_key_open(&k, c3, "a"));
    OK(km_key_open(&k, c3, "a2"));
    ck_assert_str_eq(km_key_name(k), "a2");
    km_key_free(k);
    OK(km_key_open(&k, c3, "c"));
    km_key_free(k);
    km_close(c3);
    km_close(c2);
    km_close(c);
}
END_TEST

/* The kept transactions are aborted before the environment is closed (each
 * open and close of the vault here opens and closes the environment: a
 * leaked transaction would be a leak under ASan, and a reader slot held
 * would exhaust LMDB's reader table within these rounds), and before a
 * compaction replaces it. */
START_TEST(test_openpath_kept_txn_dropped_at_close_and_compaction)
{
    km_ctx *c = tu_vault(dir);
    km_key *k = NULL;
    int i;

    OK(km_key_create(NULL, c, "k", KM_KEY_AES_256_GCM, NULL));
    km_close(c);
    for (i = 0; i < 300; i++) {
        c = tu_vault(dir);
        OK(km_key_open(&k, c, "k"));
        km_key_free(k);
        km_close(c);
    }
    c = tu_vault(dir);
    OK(lookup(c, "k"));                  /* one kept */
    OK(km_vault_compact(c));
    OK(lookup(c, "k"));                  /* on the compacted environment */
    OK(km_key_create(NULL, c, "k2", KM_KEY_AES_256_GCM, NULL));
    OK(lookup(c, "k2"));
    km_close(c);
}
END_TEST

/* A successful open (key record read, its counters record missing: a key
 * never used) leaves the thread's last error as the caller left it. */
/* The LMDB reader table is shared by every process on the vault: when
 * another process holds every free slot, a read on a new thread of this one
 * gives back the slots this process keeps idle and goes on (without that, it
 * failed: "cannot begin a vault transaction"). */
static void *lookup_thread(void *arg)
{
    return (void *)(intptr_t)lookup(arg, "full");
}

START_TEST(test_openpath_readers_full_gives_back_kept)
{
    km_ctx *c = tu_vault(dir);
    km_key *k = NULL;
    int up[2], down[2], st = 0;
    char b = 0;
    pid_t pid;
    pthread_t th;
    void *res = NULL;

    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(km_key_create(NULL, c, "full", KM_KEY_AES_256_GCM, NULL), KM_OK);
    ck_assert_int_eq(km_key_open(&k, c, "full"), KM_OK); /* this thread's slot now kept */
    km_key_free(k);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* takes every free reader slot, holds them until told */
        MDB_env *e = NULL;
        MDB_txn *t[1024];
        char v[4096];
        int n = 0, ok;
        km_close(c); /* the parent's (valgrind: lost in the child) */
        snprintf(v, sizeof v, "%s/vault", dir);
        if (mdb_env_create(&e) != 0 || mdb_env_set_maxdbs(e, 32) != 0
            || mdb_env_open(e, v, MDB_NOTLS | MDB_RDONLY, 0600) != 0)
            _exit(2);
        while (n < 1024 && mdb_txn_begin(e, NULL, MDB_RDONLY, &t[n]) == 0)
            n++;
        b = n > 0 && n < 1024 ? 'y' : 'n';
        ok = write(up[1], &b, 1) == 1 && read(down[0], &b, 1) == 1;
        while (n > 0)
            mdb_txn_abort(t[--n]);
        mdb_env_close(e);
        _exit(ok ? 0 : 3);
    }
    ck_assert_int_eq(read(up[0], &b, 1), 1);
    ck_assert_int_eq(b, 'y');
    ck_assert_int_eq(pthread_create(&th, NULL, lookup_thread, c), 0);
    ck_assert_int_eq(pthread_join(th, &res), 0);
    ck_assert_int_eq(write(down[1], "x", 1), 1);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_int_eq((int)(intptr_t)res, KM_OK);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
    km_close(c);
}
END_TEST

START_TEST(test_openpath_open_keeps_last_error)
{
    static const char no128[] = "{\"version\": 1, \"algorithms\": {\"aes-128-gcm\": {\"allowed\": false}}}";
    km_ctx *c = tu_vault(dir), *c2;
    km_key *k = NULL;
    char msg[256];

    OK(km_key_create(NULL, c, "x", KM_KEY_AES_256_GCM, NULL));
    c2 = tu_vault(dir);
    RC(KM_E_NOTFOUND, km_key_open(&k, c2, "missing"));
    snprintf(msg, sizeof msg, "%s", km_error_last()->message);
    OK(km_key_open(&k, c2, "x"));
    ck_assert_int_eq(km_error_last()->code, KM_E_NOTFOUND);
    ck_assert_str_eq(km_error_last()->message, msg);
    km_key_free(k);
    k = NULL;
    /* a key whose type the policy no longer lets protect: loading it records
     * the policy's verdict (an error of its own), then puts the caller's
     * back, text and all (it put back the code with the policy's text) */
    OK(km_key_create(NULL, c, "old128", KM_KEY_AES_128_GCM, NULL));
    OK(km_policy_set(c, no128, sizeof no128 - 1));
    km_close(c2);
    c2 = tu_vault(dir);
    RC(KM_E_NOTFOUND, km_key_open(&k, c2, "missing"));
    snprintf(msg, sizeof msg, "%s", km_error_last()->message);
    OK(km_key_open(&k, c2, "old128"));
    ck_assert_int_eq(km_error_last()->code, KM_E_NOTFOUND);
    ck_assert_str_eq(km_error_last()->message, msg);
    km_key_free(k);
    km_close(c2);
    km_close(c);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("openpath", "openpath", &tc, 300, setup, teardown);
    tcase_add_test(tc, test_openpath_kept_txn_sees_commits);
    tcase_add_test(tc, test_openpath_kept_txn_dropped_at_close_and_compaction);
    tcase_add_test(tc, test_openpath_open_keeps_last_error);
    tcase_add_test(tc, test_openpath_readers_full_gives_back_kept);
    return tu_run(s);
}
