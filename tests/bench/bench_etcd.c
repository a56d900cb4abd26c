/* bench_etcd.c - the etcd pairs of the bench (issue 21): vaults on etcd
 * clusters started in the scratch directory (tests/etcdtest.c: members on
 * free 127.0.0.1 ports, data directories on tmpfs when /dev/shm is there,
 * stopped by their recorded PIDs at the end).
 *
 *   etcd-open-cold    km = key opened by name on a 3-member etcd vault, raw =
 *                     the same on an LMDB vault (cache of 16 objects, 256
 *                     keys opened round-robin: every open reads the store)
 *   etcd-encrypt-64   km = encrypt 64 bytes with a cached key of the etcd
 *                     vault, raw = of the LMDB vault (the data path does no
 *                     I/O: about 1.0)
 *   etcd-create       km = key creates/s with 3 members, raw = with 1
 *   etcd-propagation  from the start of a km_key_rotate call in this process
 *                     until another process (refresh interval 5 s: only the
 *                     watch tells it) first encrypts under the new version:
 *                     an upper bound of the propagation that includes the
 *                     rotation's own commit, never below 0 (measured from the
 *                     call's return it was: the call reads the key again
 *                     after its commit, and the other process may already
 *                     have used the new version); rotate_p50_ms is the
 *                     call's own time:
 *                     BENCH etcd-propagation p50_ms=.. p99_ms=.. rotate_p50_ms=.. n=..
 */
#define _GNU_SOURCE 1
#include "benchutil.h"
#include "bench_hw.h"
#include "etcdtest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define COLD_KEYS 256
#define PROP_SAMPLES 40

typedef struct opener {
    km_ctx *ctx;
    size_t pos;
} opener;

static km_ctx *open_uri(const char *uri, uint32_t cache_max, uint32_t refresh_ms)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;

    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)"bench passphrase";
    o.passphrase_len = strlen("bench passphrase");
    o.kdf_cost = KM_KDF_COST_MIN;
    o.key_cache_max = cache_max;
    o.refresh_ms = refresh_ms;
    BENCH_CHECK(km_open(&ctx, uri, &o));
    return ctx;
}

static int open_n(void *arg, uint64_t n)
{
    opener *s = arg;
    uint64_t i;
    char name[32];

    for (i = 0; i < n; i++) {
        km_key *k = NULL;
        snprintf(name, sizeof name, "cold-%04zu", s->pos++ % COLD_KEYS);
        BENCH_CHECK(km_key_open(&k, s->ctx, name));
        km_key_free(k);
    }
    return 0;
}

typedef struct encrypter {
    km_key *key;
    uint8_t pt[64], out[64 + 64];
} encrypter;

static int encrypt_n(void *arg, uint64_t n)
{
    encrypter *e = arg;
    uint64_t i;
    size_t len;

    for (i = 0; i < n; i++)
        BENCH_CHECK(km_encrypt(e->key, e->pt, sizeof e->pt, NULL, 0, e->out, sizeof e->out, &len));
    return 0;
}

typedef struct creator {
    km_ctx *ctx;
    unsigned next;
} creator;

static int create_n(void *arg, uint64_t n)
{
    creator *c = arg;
    uint64_t i;
    char name[32];

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "create-%u", c->next++);
        BENCH_CHECK(km_key_create(NULL, c->ctx, name, KM_KEY_AES_256_GCM, NULL));
    }
    return 0;
}

static uint32_t ct_version(const uint8_t *ct)
{
    return ((uint32_t)ct[20] << 24) | ((uint32_t)ct[21] << 16) | ((uint32_t)ct[22] << 8) | ct[23];
}

/* The other process: encrypts in a loop and reports (version, time) at the
 * first use of every new version. */
static void prop_watcher(const char *uri, int fd)
{
    km_ctx *ctx = open_uri(uri, 0, 5000);
    km_key *k = NULL;
    uint8_t out[128];
    size_t len;
    uint32_t last = 0;

    BENCH_CHECK(km_key_open(&k, ctx, "prop"));
    for (;;) {
        uint32_t v;
        BENCH_CHECK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &len));
        v = ct_version(out);
        if (v != last) {
            double msg[2] = { (double)v, bench_now() };
            last = v;
            if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg)
                _exit(1);
        }
        usleep(200);
    }
}

static void bench_propagation(const char *uri)
{
    km_ctx *ctx = open_uri(uri, 0, 0);
    km_key *k = NULL;
    double lat[PROP_SAMPLES], call[PROP_SAMPLES], msg[2];
    int fds[2], i;
    pid_t p;

    BENCH_CHECK(km_key_create(&k, ctx, "prop", KM_KEY_AES_256_GCM, NULL));
    if (pipe(fds) != 0)
        bench_die("pipe failed");
    fflush(stdout);
    if ((p = fork()) < 0)
        bench_die("fork failed");
    if (p == 0) {
        close(fds[0]);
        prop_watcher(uri, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], msg, sizeof msg) != (ssize_t)sizeof msg || msg[0] != 1)
        bench_die("etcd-propagation: the other process did not start");
    usleep(200000);   /* its watch is up */
    for (i = 0; i < PROP_SAMPLES; i++) {
        uint32_t v = 0;
        double t0 = bench_now(), t;
        BENCH_CHECK(km_key_rotate(k, &v));
        t = bench_now();
        call[i] = (t - t0) * 1000.0;
        do {
            if (read(fds[0], msg, sizeof msg) != (ssize_t)sizeof msg)
                bench_die("etcd-propagation: the other process died");
        } while (msg[0] < v);
        lat[i] = (msg[1] - t0) * 1000.0; /* bench_now: CLOCK_MONOTONIC, one clock for both */
        usleep(20000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    close(fds[0]);
    printf("BENCH etcd-propagation p50_ms=%.1f p99_ms=%.1f rotate_p50_ms=%.1f n=%d\n",
           bench_quantile(lat, PROP_SAMPLES, 0.5), bench_quantile(lat, PROP_SAMPLES, 0.99),
           bench_quantile(call, PROP_SAMPLES, 0.5), PROP_SAMPLES);
    fflush(stdout);
    km_key_free(k);
    km_close(ctx);
}

void bench_etcd(const char *dir, bench_pair_fn pair, const int want[4])
{
    static const char *const names[4] = { "etcd-open-cold", "etcd-encrypt-64", "etcd-create",
                                          "etcd-propagation" };
    char base[4200], d3[4300], d1[4300], uri3[600], uri1[600], lmdb[4300];
    tu_etcd c3, c1;
    int i;

    if (access("/usr/bin/etcd", X_OK) != 0) {
        for (i = 0; i < 4; i++)
            if (want[i])
                printf("BENCH %s skipped=etcd-not-installed\n", names[i]);
        return;
    }
    if (access("/dev/shm", W_OK) == 0)
        snprintf(base, sizeof base, "/dev/shm/km-bench-etcd.%d", (int)getpid());
    else
        snprintf(base, sizeof base, "%s/etcd", dir);
    snprintf(d3, sizeof d3, "%s/three", base);
    snprintf(d1, sizeof d1, "%s/one", base);
    if (mkdir(base, 0700) != 0 || tu_etcd_start(&c3, d3, 3) != 0)
        bench_die("etcd: %s", tu_etcd_error());
    if (want[2] && tu_etcd_start(&c1, d1, 1) != 0) {
        tu_etcd_stop(&c3);
        bench_die("etcd: %s", tu_etcd_error());
    }
    snprintf(uri3, sizeof uri3, "etcd://%s/bench", c3.endpoints);
    snprintf(lmdb, sizeof lmdb, "lmdb:%s/etcd-twin", dir);
    if (want[0] || want[1]) {
        km_ctx *e = open_uri(uri3, 16, 0), *l = open_uri(lmdb, 16, 0);
        char name[32];
        for (i = 0; i < COLD_KEYS; i++) {
            snprintf(name, sizeof name, "cold-%04d", i);
            BENCH_CHECK(km_key_create(NULL, e, name, KM_KEY_AES_256_GCM, NULL));
            BENCH_CHECK(km_key_create(NULL, l, name, KM_KEY_AES_256_GCM, NULL));
        }
        if (want[0]) {
            opener a = { e, 0 }, b = { l, 0 };
            pair(names[0], open_n, &a, open_n, &b);
        }
        if (want[1]) {
            encrypter a, b;
            memset(&a, 0, sizeof a);
            memset(&b, 0, sizeof b);
            BENCH_CHECK(km_key_open(&a.key, e, "cold-0000"));
            BENCH_CHECK(km_key_open(&b.key, l, "cold-0000"));
            pair(names[1], encrypt_n, &a, encrypt_n, &b);
            km_key_free(a.key);
            km_key_free(b.key);
        }
        km_close(e);
        km_close(l);
    }
    if (want[2]) {
        creator a = { NULL, 0 }, b = { NULL, 0 };
        snprintf(uri1, sizeof uri1, "etcd://%s/bench", c1.endpoints);
        a.ctx = open_uri(uri3, 0, 0);
        b.ctx = open_uri(uri1, 0, 0);
        pair(names[2], create_n, &a, create_n, &b);
        km_close(a.ctx);
        km_close(b.ctx);
        tu_etcd_stop(&c1);
    }
    if (want[3]) {
        snprintf(uri3, sizeof uri3, "etcd://%s/bench-prop", c3.endpoints);
        bench_propagation(uri3);
    }
    tu_etcd_stop(&c3);
    bench_rmtree(base);
}
