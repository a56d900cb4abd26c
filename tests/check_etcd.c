/* check_etcd.c - one vault for many hosts (issue 21): vaults on a 3-member
 * etcd cluster started here on 127.0.0.1 free ports (tests/etcdtest.c),
 * "hosts" being processes that share no file.
 *   canary       a key named CANARY-..., its imported material and a
 *                plaintext: none of them in etcd's data directories (and a
 *                control value put in clear is found there)
 *   writers      two processes creating keys and rotating one shared key at
 *                once: nothing lost, the audit chain one verified chain
 *   propagation  rotations and compromises in process A in force in
 *                process B (refresh interval 5 s) within 100 ms (median of
 *                5 rounds, printed): the watch
 *   members      one member killed: operations go on; two killed: a write
 *                fails within seconds with a clear error, a cached key
 *                serves until its refresh bound and then fails closed, and
 *                everything works again once they are back
 *   SIGKILL      writers killed at random: every acknowledged key is there
 *                and the audit chain verifies
 *   store        snapshot reads, a lost lock fencing the commit, a value
 *                above etcd's request limit refused clearly, bad URIs
 *   TLS          a member serving https only with client certificates: the
 *                right CA and certificate open, a missing or foreign client
 *                certificate, another CA and plain http do not
 * A missing etcd is a failure under CI=true, a loud skip (77) otherwise. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcdtest.h"
#include "km_int.h"
#include "store_int.h"
#include "testutil.h"

static tu_etcd cluster;
static tu_etcd tls_cluster;   /* one member, https only, client certificates required */
static char pki[1100];        /* its certificates (tests/kmip/pykmip.sh certs) */
static char *dir;
static km_ctx *ctx;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* every member running and healthy before each test (a test that killed
 * members and failed leaves them dead) */
static void setup(void)
{
    int i;

    for (i = 0; i < cluster.n; i++)
        if (tu_etcd_member_start(&cluster, i) != 0)
            ck_abort_msg("%s", tu_etcd_error());
    ck_assert_msg(tu_etcd_wait_healthy(&cluster, 15000) == 0, "%s", tu_etcd_error());
    tu_setup(&dir, &ctx, NULL);
}

static void teardown(void)
{
    tu_teardown(&dir, &ctx);
}

static km_ctx *open_b(uint32_t refresh_ms)
{
    tu_open o = TU_OPEN_INIT;
    km_ctx *c = NULL;

    o.refresh_ms = refresh_ms;
    ck_assert_int_eq(tu_vault_open_with(&c, dir, &o), KM_OK);
    return c;
}

/* ------------------------------------------------------------- canary */

static int file_has(const char *path, const uint8_t *needle, size_t n)
{
    size_t len = 0;
    uint8_t *p = tu_read_file(path, &len);
    int hit = p != NULL && tu_memmem(p, len, needle, n);

    free(p);
    return hit;
}

/* how many files under `root` hold needle */
static int tree_has(const char *root, const uint8_t *needle, size_t n)
{
    DIR *d = opendir(root);
    struct dirent *e;
    int hits = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[4200];
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        if (lstat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode))
            hits += tree_has(path, needle, n);
        else if (S_ISREG(sb.st_mode))
            hits += file_has(path, needle, n);
    }
    closedir(d);
    return hits;
}

START_TEST(test_etcd_canary_not_in_data_dirs)
{
    char name[64], data[700], cmd[1024];
    uint8_t material[32], pt[48], ct[200];
    size_t ct_len;
    km_key *k = NULL;
    int i;

    snprintf(name, sizeof name, "CANARY-%d-%ld", (int)getpid(), (long)time(NULL));
    for (i = 0; i < 32; i++)
        material[i] = (uint8_t)(0xA5 ^ (i * 7));
    memcpy(pt, "CANARY-PLAINTEXT-0123456789-abcdefghijklmnopqrs", sizeof pt);
    ck_assert_int_eq(km_key_import(&k, ctx, name, KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, material,
                                   sizeof material, KM_IMPORT_ALLOW_RAW, NULL),
                     KM_OK);
    ck_assert_int_eq(km_encrypt(k, pt, sizeof pt, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(k);
    /* the control: a value put in clear with etcdctl is found in every member's files */
    snprintf(cmd, sizeof cmd,
             "ETCDCTL_API=3 etcdctl --endpoints=%s put /control CONTROL-%d >/dev/null",
             cluster.endpoints, (int)getpid());
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(tu_etcd_wait_healthy(&cluster, 5000), 0);
    tu_sleep_ms(300);   /* etcd's backend commits every 100 ms */
    {
        char ctl[128];
        snprintf(ctl, sizeof ctl, "CONTROL-%d", (int)getpid());
        ck_assert_int_ge(tree_has(cluster.dir, (const uint8_t *)ctl, strlen(ctl)), cluster.n);
    }
    for (i = 0; i < cluster.n; i++) {
        snprintf(data, sizeof data, "%s/m%d", cluster.dir, i);
        ck_assert_msg(tree_has(data, (const uint8_t *)name, strlen(name)) == 0,
                      "the key name is in member %d's files", i);
        ck_assert_msg(tree_has(data, material, sizeof material) == 0,
                      "the key material is in member %d's files", i);
        ck_assert_msg(tree_has(data, material, 16) == 0, "half the material is in m%d", i);
        ck_assert_msg(tree_has(data, pt, sizeof pt) == 0, "the plaintext is in m%d's files", i);
    }
}
END_TEST

/* ---------------------------------------------------- concurrent writers */

#define W_KEYS 6
#define W_ROTS 6

static int writer(int id)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    char name[32];
    int i;

    if (tu_vault_open(&c, dir, NULL, 0) != KM_OK)
        return 10;
    for (i = 0; i < W_KEYS; i++) {
        snprintf(name, sizeof name, "w%d-%d", id, i);
        if (km_key_create(&k, c, name, KM_KEY_AES_256_GCM, NULL) != KM_OK) {
            fprintf(stderr, "writer %d: create: %s\n", id, km_error_last()->message);
            return 11;
        }
        km_key_free(k);
    }
    if (km_key_open(&k, c, "shared") != KM_OK)
        return 12;
    for (i = 0; i < W_ROTS; i++)
        if (km_key_rotate(k, NULL) != KM_OK) {
            fprintf(stderr, "writer %d: rotate: %s\n", id, km_error_last()->message);
            return 13;
        }
    km_key_free(k);
    km_close(c);
    return 0;
}

START_TEST(test_etcd_two_writers_lose_nothing)
{
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    pid_t p[2];
    int i, st;
    uint64_t count = 0, bad = 1;

    ck_assert_int_eq(km_key_create(&k, ctx, "shared", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    for (i = 0; i < 2; i++) {
        p[i] = fork();
        ck_assert_int_ge(p[i], 0);
        if (p[i] == 0)
            _exit(writer(i));
    }
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(waitpid(p[i], &st, 0), p[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d: status %d", i, st);
    }
    km_close(ctx);
    ctx = open_b(0);
    for (i = 0; i < 2 * W_KEYS; i++) {
        char name[32];
        snprintf(name, sizeof name, "w%d-%d", i / W_KEYS, i % W_KEYS);
        ck_assert_int_eq(km_key_open(&k, ctx, name), KM_OK);
        km_key_free(k);
    }
    ck_assert_int_eq(km_key_open(&k, ctx, "shared"), KM_OK);
    ck_assert_int_eq(km_key_info(&info, k), KM_OK);
    ck_assert_uint_eq(km_keyinfo_version_count(info), 1 + 2 * W_ROTS);
    ck_assert_uint_eq(km_keyinfo_primary(info), 1 + 2 * W_ROTS);
    km_keyinfo_free(info);
    km_key_free(k);
    ck_assert_int_eq(km_audit_verify(ctx, NULL, &count, &bad), KM_OK);
    ck_assert_uint_eq(bad, 0);
    /* vault creation, 1 + 12 creates, 12 rotations at least */
    ck_assert_uint_ge(count, 1 + 2 * W_KEYS + 2 * W_ROTS);
}
END_TEST

/* ------------------------------------------------------------ propagation */

/* The key version a ciphertext's header names (offset 20, big-endian:
 * docs/FORMATS.md). */
static uint32_t ct_version(const uint8_t *ct)
{
    return ((uint32_t)ct[20] << 24) | ((uint32_t)ct[21] << 16) | ((uint32_t)ct[22] << 8) | ct[23];
}

#define PROP_ROUNDS 5

/* Process A (a child): on 'r' from `go` rotates "p", on 'v' marks its
 * oldest uncompromised version compromised; writes the monotonic time each
 * call returned (the change acknowledged) to `done`. B may see a change a
 * little before that: the call reads the key again after its commit. */
static void propagation_a(int go, int done)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    uint32_t bad = 1;
    char b;
    double t;

    if (tu_vault_open(&c, dir, NULL, 0) != KM_OK || km_key_open(&k, c, "p") != KM_OK)
        _exit(20);
    while (read(go, &b, 1) == 1 && b != 'q') {
        int rc = b == 'r' ? km_key_rotate(k, NULL)
                          : km_key_revoke(k, bad++, KM_REVOKE_KEY_COMPROMISE, (int64_t)time(NULL));
        if (rc != KM_OK) {
            fprintf(stderr, "A: %c: %s\n", b, km_error_last()->message);
            _exit(21);
        }
        t = mono_ms();
        if (write(done, &t, sizeof t) != (ssize_t)sizeof t)
            _exit(22);
    }
    km_key_free(k);
    km_close(c);
    _exit(0);
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Process B (this one, refresh interval 5 s: only the watch can tell it
 * sooner) and process A (propagation_a) on key "p". */
typedef struct prop {
    pid_t a;
    int go, done;
    km_ctx *b;
    km_key *k;
} prop;

static void prop_start(prop *pr)
{
    km_key *k = NULL;
    int go[2], done[2];

    ck_assert_int_eq(km_key_create(&k, ctx, "p", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(done), 0);
    pr->a = fork();
    ck_assert_int_ge(pr->a, 0);
    if (pr->a == 0) {
        close(go[1]);
        close(done[0]);
        propagation_a(go[0], done[1]);
    }
    /* only A holds its ends: a dead A reads as end of file here, not a hang */
    close(go[0]);
    close(done[1]);
    pr->go = go[1];
    pr->done = done[0];
    pr->b = open_b(5000);
    ck_assert_int_eq(km_key_open(&pr->k, pr->b, "p"), KM_OK);
}

/* A makes a change ('r' rotate, 'v' compromise): when it was acknowledged. */
static double prop_change(prop *pr, char what)
{
    double t_a;

    ck_assert_int_eq(write(pr->go, &what, 1), 1);
    ck_assert_int_eq(read(pr->done, &t_a, sizeof t_a), (ssize_t)sizeof t_a);
    return t_a;
}

/* B encrypts until its ciphertexts name version v (the last one in ct):
 * the time after t_a it took. */
static double prop_wait_version(prop *pr, uint32_t v, double t_a, uint8_t *ct, size_t *ct_len)
{
    double t_b;

    for (;;) {
        ck_assert_int_eq(km_encrypt(pr->k, (const uint8_t *)"x", 1, NULL, 0, ct, 200, ct_len),
                         KM_OK);
        t_b = mono_ms();
        if (ct_version(ct) == v)
            return t_b - t_a;
        ck_assert_msg(t_b - t_a < 3000, "B still encrypts under version %u after 3 s", v - 1);
        tu_sleep_ms(1);
    }
}

static void prop_end(prop *pr)
{
    int st;

    ck_assert_int_eq(write(pr->go, "q", 1), 1);
    km_key_free(pr->k);
    km_close(pr->b);
    ck_assert_int_eq(waitpid(pr->a, &st, 0), pr->a);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "A: status %d", st);
    close(pr->go);
    close(pr->done);
}

START_TEST(test_etcd_rotation_reaches_another_process_in_100ms)
{
    prop pr;
    uint8_t ct[200], cur[200], pt[64];
    size_t ct_len, cur_len, pt_len;
    double t_a, t_b, rot[PROP_ROUNDS], rev[PROP_ROUNDS];
    int j;

    prop_start(&pr);
    ck_assert_int_eq(km_encrypt(pr.k, (const uint8_t *)"x", 1, NULL, 0, cur, sizeof cur,
                                &cur_len), KM_OK);
    ck_assert_uint_eq(ct_version(cur), 1);
    tu_sleep_ms(200);   /* the watch is up */
    for (j = 0; j < PROP_ROUNDS; j++) {
        /* A rotates: B's next encryptions use version j + 2 */
        t_a = prop_change(&pr, 'r');
        rot[j] = prop_wait_version(&pr, (uint32_t)j + 2, t_a, ct, &ct_len);
        /* A marks version j + 1 compromised: B's cached key stops decrypting under it */
        ck_assert_int_eq(km_decrypt(pr.b, 0, cur, cur_len, NULL, 0, pt, sizeof pt, &pt_len),
                         KM_OK);
        t_a = prop_change(&pr, 'v');
        for (;;) {
            int rc = km_decrypt(pr.b, 0, cur, cur_len, NULL, 0, pt, sizeof pt, &pt_len);
            t_b = mono_ms();
            if (rc != KM_OK)
                break;
            ck_assert_msg(t_b - t_a < 2000, "B still decrypts under the compromised version "
                                             "%d after 2 s", j + 1);
            tu_sleep_ms(1);
        }
        rev[j] = t_b - t_a;
        memcpy(cur, ct, ct_len);
        cur_len = ct_len;
    }
    prop_end(&pr);
    qsort(rot, PROP_ROUNDS, sizeof rot[0], dcmp);
    qsort(rev, PROP_ROUNDS, sizeof rev[0], dcmp);
    printf("etcd propagation (refresh interval 5000 ms, %d rounds): rotation in force in "
           "another process after median %.1f ms (max %.1f), compromise after median %.1f ms "
           "(max %.1f)\n", PROP_ROUNDS, rot[PROP_ROUNDS / 2], rot[PROP_ROUNDS - 1],
           rev[PROP_ROUNDS / 2], rev[PROP_ROUNDS - 1]);
    /* the median: one round slowed by a loaded machine does not decide */
    ck_assert_msg(rot[PROP_ROUNDS / 2] < 100, "rotation took %.1f ms to reach process B",
                  rot[PROP_ROUNDS / 2]);
    ck_assert_msg(rev[PROP_ROUNDS / 2] < 100, "compromise took %.1f ms to reach process B",
                  rev[PROP_ROUNDS / 2]);
}
END_TEST

/* The watch runs on the first member: killed, the watch moves to the next
 * one and changes still arrive at once (not after the 5 s refresh). */
START_TEST(test_etcd_watch_moves_when_its_member_dies)
{
    prop pr;
    uint8_t ct[200];
    size_t ct_len;
    double took;

    prop_start(&pr);
    (void)prop_wait_version(&pr, 1, mono_ms(), ct, &ct_len);
    tu_sleep_ms(200);
    ck_assert_int_eq(tu_etcd_member_kill(&cluster, 0), 0);
    tu_sleep_ms(600);   /* the watch notices and starts again on member 1 */
    took = prop_wait_version(&pr, 2, prop_change(&pr, 'r'), ct, &ct_len);
    prop_end(&pr);
    printf("etcd watch after its member died: rotation in force in another process after "
           "%.1f ms\n", took);
    ck_assert_msg(took < 100, "rotation took %.1f ms with the watch's member dead", took);
    ck_assert_int_eq(tu_etcd_member_start(&cluster, 0), 0);
    ck_assert_int_eq(tu_etcd_wait_healthy(&cluster, 15000), 0);
}
END_TEST

/* -------------------------------------------------------------- members */

START_TEST(test_etcd_one_member_down_operations_go_on)
{
    km_key *k = NULL;
    uint8_t ct[200];
    size_t ct_len;
    int victim;

    ck_assert_int_eq(km_key_create(&k, ctx, "before", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    /* each member in turn, the first (the one in use) included */
    for (victim = 0; victim < cluster.n; victim++) {
        char name[32];
        ck_assert_int_eq(tu_etcd_member_kill(&cluster, victim), 0);
        snprintf(name, sizeof name, "during-%d", victim);
        ck_assert_msg(km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL) == KM_OK,
                      "create with member %d down: %s", victim, km_error_last()->message);
        ck_assert_int_eq(km_key_rotate(k, NULL), KM_OK);
        ck_assert_int_eq(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len),
                         KM_OK);
        km_key_free(k);
        ck_assert_int_eq(km_key_open(&k, ctx, "before"), KM_OK);
        km_key_free(k);
        ck_assert_int_eq(tu_etcd_member_start(&cluster, victim), 0);
        ck_assert_int_eq(tu_etcd_wait_healthy(&cluster, 15000), 0);
    }
}
END_TEST

START_TEST(test_etcd_quorum_loss_fails_fast_then_resumes)
{
    km_ctx *b;
    km_key *k = NULL, *kb = NULL;
    uint8_t ct[200];
    size_t ct_len;
    double t0, took;
    int rc, i;

    ck_assert_int_eq(km_key_create(&k, ctx, "kept", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    /* a cached key with a staleness bound of 1 s */
    b = open_b(1000);
    ck_assert_int_eq(km_key_open(&kb, b, "kept"), KM_OK);
    ck_assert_int_eq(km_encrypt(kb, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len),
                     KM_OK);
    t0 = mono_ms();
    ck_assert_int_eq(tu_etcd_member_kill(&cluster, 1), 0);
    ck_assert_int_eq(tu_etcd_member_kill(&cluster, 2), 0);
    /* the data path: the cached key serves until its bound, then fails closed */
    if (mono_ms() - t0 < 800)
        ck_assert_int_eq(km_encrypt(kb, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct,
                                    &ct_len), KM_OK);
    tu_sleep_ms(1100 - (long)(mono_ms() - t0 < 1100 ? mono_ms() - t0 : 1100) + 50);
    ck_assert_int_eq(km_encrypt(kb, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len),
                     KM_E_IO);
    t0 = mono_ms();
    rc = km_key_create(&k, ctx, "lost", KM_KEY_AES_256_GCM, NULL);
    took = mono_ms() - t0;
    printf("etcd quorum loss: a key create failed after %.0f ms: %s\n", took,
           km_error_last()->message);
    ck_assert_int_eq(rc, KM_E_IO);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "etcd"));
    ck_assert_msg(took < 8000, "the write took %.0f ms to fail", took);
    /* back: the same call works (after the election) */
    ck_assert_int_eq(tu_etcd_member_start(&cluster, 1), 0);
    ck_assert_int_eq(tu_etcd_member_start(&cluster, 2), 0);
    ck_assert_int_eq(tu_etcd_wait_healthy(&cluster, 15000), 0);
    for (i = 0; i < 50; i++) {
        if ((rc = km_key_create(&k, ctx, "lost", KM_KEY_AES_256_GCM, NULL)) == KM_OK)
            break;
        tu_sleep_ms(100);
    }
    ck_assert_msg(rc == KM_OK, "no write after the members came back: %s",
                  km_error_last()->message);
    km_key_free(k);
    ck_assert_int_eq(km_key_open(&k, ctx, "kept"), KM_OK);
    km_key_free(k);
    ck_assert_int_eq(km_encrypt(kb, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len),
                     KM_OK);
    km_key_free(kb);
    km_close(b);
}
END_TEST

/* ---------------------------------------------------------------- SIGKILL */

/* Creates keys "<id>-<n>" forever, writing n to fd after each create returned. */
static void sigkill_writer(int id, int fd)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    char name[32];
    uint32_t n;

    if (tu_vault_open(&c, dir, NULL, 0) != KM_OK)
        _exit(30);
    for (n = 0;; n++) {
        snprintf(name, sizeof name, "%d-%u", id, n);
        if (km_key_create(&k, c, name, KM_KEY_AES_256_GCM, NULL) != KM_OK)
            _exit(31);
        km_key_free(k);
        if (write(fd, &n, sizeof n) != (ssize_t)sizeof n)
            _exit(32);
    }
}

START_TEST(test_etcd_sigkilled_writers_lose_no_acknowledged_change)
{
    uint32_t acked[4] = { 0 }, n;
    int have[4] = { 0 }, round, i;
    uint64_t count = 0, bad = 1;
    km_key *k = NULL;

    srand((unsigned)getpid());
    for (round = 0; round < 2; round++) {
        int fds[2][2];
        pid_t p[2];
        for (i = 0; i < 2; i++) {
            int id = round * 2 + i;
            ck_assert_int_eq(pipe(fds[i]), 0);
            p[i] = fork();
            ck_assert_int_ge(p[i], 0);
            if (p[i] == 0) {
                close(fds[i][0]);
                sigkill_writer(id, fds[i][1]);
            }
            close(fds[i][1]);
        }
        /* each writer's first create acknowledged (the second round's first
         * wait for the lease of a lock a killed writer may hold: up to 5 s),
         * then a random moment to kill them both */
        for (i = 0; i < 2; i++) {
            int id = round * 2 + i;
            if (read(fds[i][0], &n, sizeof n) == (ssize_t)sizeof n) {
                acked[id] = n;
                have[id] = 1;
            }
        }
        tu_sleep_ms(rand() % 800);
        for (i = 0; i < 2; i++) {
            int id = round * 2 + i;
            ck_assert_int_eq(kill(p[i], SIGKILL), 0);
            ck_assert_int_eq(waitpid(p[i], NULL, 0), p[i]);
            while (read(fds[i][0], &n, sizeof n) == (ssize_t)sizeof n) {
                acked[id] = n;
                have[id] = 1;
            }
            close(fds[i][0]);
        }
    }
    for (i = 0; i < 4; i++) {
        uint32_t j;
        ck_assert_msg(have[i], "writer %d acknowledged nothing", i);
        for (j = 0; j <= acked[i]; j++) {
            char name[32];
            snprintf(name, sizeof name, "%d-%u", i, j);
            ck_assert_msg(km_key_open(&k, ctx, name) == KM_OK, "acknowledged key %s is lost",
                          name);
            km_key_free(k);
        }
    }
    ck_assert_int_eq(km_key_create(&k, ctx, "after", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    ck_assert_int_eq(km_audit_verify(ctx, NULL, &count, &bad), KM_OK);
    ck_assert_uint_eq(bad, 0);
    printf("etcd SIGKILL: %u + %u + %u + %u acknowledged creates kept, %llu audit entries "
           "verified\n", acked[0] + 1, acked[1] + 1, acked[2] + 1, acked[3] + 1,
           (unsigned long long)count);
}
END_TEST

/* ------------------------------------------------------------- the store */

static km__store *store_open(const char *prefix)
{
    char uri[600];
    const km__store_ops *ops;
    const char *loc;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km__store *st = NULL;

    snprintf(uri, sizeof uri, "etcd://%s/%s", cluster.endpoints, prefix);
    ck_assert_int_eq(km__store_find(uri, &ops, &loc), KM_OK);
    ck_assert_ptr_eq(ops, &km__store_etcd);
    ck_assert_int_eq(ops->open(&st, loc, &o), KM_OK);
    return st;
}

static int put1(km__store *st, const char *key, const char *val)
{
    km__txn *t = NULL;
    int rc = km__txn_begin(st, 1, &t);

    if (rc != KM_OK)
        return rc;
    if ((rc = km__raw_put(t, KM__T_KEYS, key, strlen(key), val, strlen(val), 0)) != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    return km__txn_commit(t);
}

START_TEST(test_etcd_store_snapshot_fence_and_limits)
{
    char prefix[64], cmd[700];
    km__store *st, *st2;
    km__txn *r = NULL, *w = NULL;
    const uint8_t *v;
    size_t vl;
    uint64_t g1 = 0, g2 = 0, n = 0;
    uint8_t *big;

    snprintf(prefix, sizeof prefix, "store-%d", (int)getpid());
    st = store_open(prefix);
    st2 = store_open(prefix);
    ck_assert_int_eq(put1(st, "a", "one"), KM_OK);
    ck_assert_int_eq(km__store_gen(st, &g1), KM_OK);
    /* a read transaction keeps its snapshot while another handle writes */
    ck_assert_int_eq(km__txn_begin(st, 0, &r), KM_OK);
    ck_assert_int_eq(put1(st2, "a", "two"), KM_OK);
    ck_assert_int_eq(put1(st2, "b", "new"), KM_OK);
    ck_assert_int_eq(km__raw_get(r, KM__T_KEYS, "a", 1, &v, &vl), KM_OK);
    ck_assert_int_eq(vl, 3);
    ck_assert_int_eq(memcmp(v, "one", 3), 0);
    ck_assert_int_eq(km__raw_get(r, KM__T_KEYS, "b", 1, &v, &vl), KM_E_NOTFOUND);
    ck_assert_int_eq(km__table_count(r, KM__T_KEYS, &n), KM_OK);
    ck_assert_uint_eq(n, 1);
    km__txn_abort(r);
    ck_assert_int_eq(km__store_gen(st, &g2), KM_OK);
    ck_assert_uint_gt(g2, g1);
    /* a write transaction sees its own writes, merged in iteration order */
    ck_assert_int_eq(km__txn_begin(st, 1, &w), KM_OK);
    ck_assert_int_eq(km__raw_put(w, KM__T_KEYS, "aa", 2, "x", 1, 0), KM_OK);
    ck_assert_int_eq(km__raw_del(w, KM__T_KEYS, "b", 1), KM_OK);
    ck_assert_int_eq(km__raw_put(w, KM__T_KEYS, "a", 1, "y", 1, KM__PUT_NOOVERWRITE),
                     KM_E_EXISTS);
    ck_assert_int_eq(km__table_count(w, KM__T_KEYS, &n), KM_OK);
    ck_assert_uint_eq(n, 2);   /* a, aa */
    /* the attacker (or an expired lease): the lock key is deleted under the
     * writer; its commit must write nothing */
    snprintf(cmd, sizeof cmd, "ETCDCTL_API=3 etcdctl --endpoints=%s del /%s/lock >/dev/null",
             cluster.endpoints, prefix);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(km__txn_commit(w), KM_E_BUSY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "lock was lost"));
    ck_assert_int_eq(km__txn_begin(st, 0, &r), KM_OK);
    ck_assert_int_eq(km__raw_get(r, KM__T_KEYS, "aa", 2, &v, &vl), KM_E_NOTFOUND);
    ck_assert_int_eq(km__raw_get(r, KM__T_KEYS, "b", 1, &v, &vl), KM_OK);
    km__txn_abort(r);
    /* a value above etcd's request limit: refused at the put, clearly */
    big = calloc(1, (size_t)2 << 20);
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(km__txn_begin(st, 1, &w), KM_OK);
    ck_assert_int_eq(km__raw_put(w, KM__T_KEYS, "big", 3, big, (size_t)2 << 20, 0), KM_E_FULL);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "1.5 MiB"));
    km__txn_abort(w);
    /* several values that fit alone but not together: refused at the commit */
    ck_assert_int_eq(km__txn_begin(st, 1, &w), KM_OK);
    ck_assert_int_eq(km__raw_put(w, KM__T_KEYS, "b1", 2, big, (size_t)1 << 20, 0), KM_OK);
    ck_assert_int_eq(km__raw_put(w, KM__T_KEYS, "b2", 2, big, (size_t)1 << 20, 0), KM_OK);
    ck_assert_int_eq(km__txn_commit(w), KM_E_FULL);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "max-request-bytes"));
    free(big);
    /* the lock was released: a writer gets in at once */
    ck_assert_int_eq(put1(st2, "c", "ok"), KM_OK);
    km__store_close(st);
    km__store_close(st2);
}
END_TEST

START_TEST(test_etcd_uri_errors)
{
    km_ctx *c = NULL;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char uri[300];
    double t0;
    int port;

    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.flags = KM_OPEN_CREATE;
    o.kdf_cost = KM_KDF_COST_MIN;
    ck_assert_int_eq(km_open(&c, "etcd://127.0.0.1:2379", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "etcd://127.0.0.1:2379/", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "etcd:///prefix", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "etcd://127.0.0.1/prefix", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "etcd://u@127.0.0.1:1/p", &o), KM_E_INVALID);
    ck_assert_int_eq(km_open(&c, "etcd://127.0.0.1:1/p?x", &o), KM_E_INVALID);
    o.tls_cert = "/nonexistent.pem";
    ck_assert_int_eq(km_open(&c, "etcd://127.0.0.1:1/p", &o), KM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "tls_ca"));
    o.tls_cert = NULL;
    /* nobody there: a clear error, quickly */
    port = cluster.port[0] + 1000;
    snprintf(uri, sizeof uri, "etcd://127.0.0.1:%d,127.0.0.1:%d/p", port, port + 2);
    t0 = mono_ms();
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_IO);
    ck_assert_double_lt(mono_ms() - t0, 3000);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "no member"));
    /* a version-3 caller's options are read as version 3 (no TLS fields) */
    o.version = 3;
    o.flags = 0;
    snprintf(uri, sizeof uri, "etcd://%s/none-%d", cluster.endpoints, (int)getpid());
    ck_assert_int_eq(km_open(&c, uri, &o), KM_E_NOTFOUND);
}
END_TEST

static int tls_open(km_ctx **c, const char *ca, const char *cert, const char *key,
                    uint32_t flags)
{
    char uri[300], f_ca[1200], f_cert[1200], f_key[1200];
    km_open_options o = KM_OPEN_OPTIONS_INIT;

    snprintf(uri, sizeof uri, "etcd://%s/tls-%d", tls_cluster.endpoints, (int)getpid());
    snprintf(f_ca, sizeof f_ca, "%s/%s", pki, ca ? ca : "");
    snprintf(f_cert, sizeof f_cert, "%s/%s", pki, cert ? cert : "");
    snprintf(f_key, sizeof f_key, "%s/%s", pki, key ? key : "");
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.flags = flags;
    o.kdf_cost = KM_KDF_COST_MIN;
    o.tls_ca = ca ? f_ca : NULL;
    o.tls_cert = cert ? f_cert : NULL;
    o.tls_key = key ? f_key : NULL;
    *c = NULL;
    return km_open(c, uri, &o);
}

START_TEST(test_etcd_tls_client_certificates)
{
    km_ctx *c = NULL;
    km_key *k = NULL;

    ck_assert_msg(tls_open(&c, "ca.crt", "client.crt", "client.key", KM_OPEN_CREATE) == KM_OK,
                  "%s", km_error_last()->message);
    ck_assert_int_eq(km_key_create(&k, c, "over-tls", KM_KEY_AES_256_GCM, NULL), KM_OK);
    km_key_free(k);
    km_close(c);
    ck_assert_int_eq(tls_open(&c, "ca.crt", "client.crt", "client.key", 0), KM_OK);
    ck_assert_int_eq(km_key_open(&k, c, "over-tls"), KM_OK);
    km_key_free(k);
    km_close(c);
    /* the cluster asks for a client certificate */
    ck_assert_int_eq(tls_open(&c, "ca.crt", NULL, NULL, 0), KM_E_IO);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "no member"));
    /* one of another CA is refused */
    ck_assert_int_eq(tls_open(&c, "ca.crt", "other.crt", "other.key", 0), KM_E_IO);
    /* the members' certificate is checked against the CA given */
    ck_assert_int_eq(tls_open(&c, "other-ca.crt", "client.crt", "client.key", 0), KM_E_IO);
    /* no plain http to a TLS cluster */
    ck_assert_int_eq(tls_open(&c, NULL, NULL, NULL, 0), KM_E_IO);
    /* a client certificate without a CA: refused before any connection */
    ck_assert_int_eq(tls_open(&c, NULL, "client.crt", "client.key", 0), KM_E_INVALID);
}
END_TEST

int main(void)
{
    char root[1024], base[1100], tdir[1100], cmd[4096];
    const char *shm = "/dev/shm";
    Suite *s;
    TCase *tc;
    int rc;

    if (access("/usr/bin/etcd", X_OK) != 0) {
        const char *ci = getenv("CI");
        (void)tu_etcd_installed("check_etcd");
        if (ci != NULL && strcmp(ci, "true") == 0)
            return EXIT_FAILURE;
        printf("SKIP - check_etcd: etcd is not installed\n");
        return 77;
    }
    /* tmpfs when there is one: three members fsync every commit */
    snprintf(root, sizeof root, "%s/km-check-etcd.XXXXXX",
             access(shm, W_OK) == 0 ? shm : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"));
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    snprintf(base, sizeof base, "%s/cluster", root);
    snprintf(tdir, sizeof tdir, "%s/tls", root);
    snprintf(pki, sizeof pki, "%s/pki", root);
    if (tu_etcd_start(&cluster, base, 3) != 0) {
        fprintf(stderr, "check_etcd: %s\n", tu_etcd_error());
        tu_rmtree(root);
        return EXIT_FAILURE;
    }
    /* the TLS member, with tests/kmip's PKI (a server certificate for 127.0.0.1) */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && sh '%s/pykmip.sh' certs '%s'", pki,
             KM_KMIP_TESTDIR, pki);
    if (system(cmd) != 0 || tu_etcd_start_tls(&tls_cluster, tdir, 1, pki) != 0) {
        fprintf(stderr, "check_etcd: the TLS member: %s\n", tu_etcd_error());
        tu_etcd_stop(&cluster);
        tu_rmtree(root);
        return EXIT_FAILURE;
    }
    setenv("KM_TEST_ETCD", cluster.endpoints, 1);
    s = suite_create("etcd");
    tc = tcase_create("etcd");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_etcd_canary_not_in_data_dirs);
    tcase_add_test(tc, test_etcd_two_writers_lose_nothing);
    tcase_add_test(tc, test_etcd_rotation_reaches_another_process_in_100ms);
    tcase_add_test(tc, test_etcd_watch_moves_when_its_member_dies);
    tcase_add_test(tc, test_etcd_one_member_down_operations_go_on);
    tcase_add_test(tc, test_etcd_quorum_loss_fails_fast_then_resumes);
    tcase_add_test(tc, test_etcd_sigkilled_writers_lose_no_acknowledged_change);
    tcase_add_test(tc, test_etcd_store_snapshot_fence_and_limits);
    tcase_add_test(tc, test_etcd_uri_errors);
    tcase_add_test(tc, test_etcd_tls_client_certificates);
    suite_add_tcase(s, tc);
    rc = tu_run(s);
    tu_etcd_stop(&cluster);
    tu_etcd_stop(&tls_cluster);
    tu_rmtree(root);
    return rc;
}
