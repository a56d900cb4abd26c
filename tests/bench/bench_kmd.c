/* bench_kmd.c - the kmd pairs (`make bench-kmd`, issue 20; docs/PERFORMANCE.md):
 *
 *   kmd-encrypt-64          km: a KMIP Encrypt of 64 bytes through kmd's Unix
 *                           socket, one client, one persistent connection;
 *                           raw: the transport's own limit, a bare echo of a
 *                           message of the same size over a Unix socket
 *   kmd-encrypt-64-client   km: km_encrypt of 64 bytes in libkm's client mode
 *                           (a "kmd:" context: the standard Encrypt, the
 *                           ciphertext put together again; src/api/remote.c);
 *                           raw: the same echo as kmd-encrypt-64
 *   kmd-encrypt-64-8clients km: the same from 8 client processes at once
 *                           (aggregate); raw: embedded km_encrypt of 64 bytes
 *                           in 8 threads of one process, on the same cores
 *   kmd-encrypt-64-8clients-echo
 *                           km: the same 8 client processes against kmd;
 *                           raw: against the echo server (a thread per
 *                           connection): the shared transport's limit
 *   kmip-server             PyKMIP's own client doing GCM Encrypts of 64 bytes:
 *                           km against kmd, raw against the PyKMIP server
 *                           (tests/kmd/bench_pykmip.py; skipped= when PyKMIP
 *                           is not installed)
 *   kmip-server-cpu         the same runs: each server's own CPU time per
 *                           request (all its threads, /proc/PID/task/N/schedstat),
 *                           km_us = kmd, raw_us = the PyKMIP server, ratio =
 *                           km_us / raw_us (lower is better; 0.05 = 20x): the
 *                           server's cost without the shared Python client,
 *                           whose own ~0.3 ms per request bounds kmip-server's
 *                           ops/s on the kmd side
 *
 * A vault, a principal and kmd (the built src/kmd/kmd, stopped by its PID)
 * are made in a scratch directory. BENCH_ROUNDS rounds (7) of BENCH_ROUND_S
 * seconds (0.25), km and raw interleaved, median of rounds; one BENCH line
 * per pair. (km_encrypt through kmd needs libkm's client mode, not built
 * yet: the client here sends the KMIP request itself.) */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <km.h>

#include "benchutil.h"
#include "kmip_ttlv.h"

#ifndef KM_BUILDDIR
#define KM_BUILDDIR "."
#endif
#ifndef KM_SRCDIR
#define KM_SRCDIR "."
#endif
#define PASS "bench kmd passphrase"
#define NCLIENTS 8
#define MAX_ROUNDS 31

static int g_rounds = 7;
static double g_round_s = 0.25;
static char g_sock[108], g_uid[33];

/* ------------------------------------------------------------ I/O */

static void io_all(int fd, uint8_t *b, size_t n, int out)
{
    while (n > 0) {
        ssize_t r = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            bench_die("socket %s failed", out ? "send" : "recv");
        }
        b += r;
        n -= (size_t)r;
    }
}

/* One message (8-byte TTLV header, then the rest) into b (cap bytes). */
static size_t recv_msg(int fd, uint8_t *b, size_t cap)
{
    size_t total;
    io_all(fd, b, 8, 0);
    if (km__ttlv_peek_len(b, 8, cap, &total) != KM_OK)
        bench_die("a bad message header");
    io_all(fd, b + 8, total - 8, 0);
    return total;
}

static int connect_to(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        bench_die("cannot connect to %s", path);
    return fd;
}

/* The Encrypt request of 64 bytes under g_uid, built once. */
static uint8_t g_req[512];
static size_t g_req_len;

static void build_request(void)
{
    km__ttlv_enc e;
    const uint8_t *m;
    uint8_t pt[64];
    memset(pt, 0x5a, sizeof pt);
    km__ttlv_enc_init(&e, 0);
    km__kmip_req_begin(&e, 1, 4, 1);
    km__kmip_item_begin(&e, KM__KMIP_OP_ENCRYPT, NULL, 0);
    km__ttlv_put_text(&e, KM__KMIP_TAG_UNIQUE_IDENTIFIER, g_uid, 32);
    km__ttlv_begin(&e, KM__KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS);
    km__ttlv_put_enum(&e, KM__KMIP_TAG_BLOCK_CIPHER_MODE, KM__KMIP_MODE_GCM);
    km__ttlv_put_int(&e, KM__KMIP_TAG_TAG_LENGTH, 16);
    km__ttlv_end(&e);
    km__ttlv_put_bytes(&e, KM__KMIP_TAG_DATA, pt, sizeof pt);
    km__kmip_item_end(&e);
    km__kmip_req_end(&e);
    if (km__ttlv_enc_finish(&e, &m, &g_req_len) != KM_OK || g_req_len > sizeof g_req)
        bench_die("cannot build the request");
    memcpy(g_req, m, g_req_len);
    km__ttlv_enc_free(&e);
}

/* n requests on fd, each answered (a failed one ends the bench). */
static void requests(int fd, uint64_t n)
{
    uint8_t resp[4096];
    uint64_t i;
    for (i = 0; i < n; i++) {
        size_t len;
        io_all(fd, g_req, g_req_len, 1);
        km__ttlv_tree t;
        km__kmip_response r;
        len = recv_msg(fd, resp, sizeof resp);
        if (km__ttlv_decode(resp, len, NULL, &t) != KM_OK || km__kmip_response_parse(&t, &r) != KM_OK
            || r.n != 1 || r.items[0].status != KM__KMIP_STATUS_SUCCESS)
            bench_die("kmd refused the Encrypt (reason %u)", r.n == 1 ? r.items[0].reason : 0u);
        km__ttlv_tree_free(&t);
    }
}

/* ------------------------------------------------------------ sides */

typedef double (*side_fn)(void *arg, double secs);

static double rate_of(uint64_t n, double t0)
{
    return (double)n / (bench_now() - t0);
}

static double kmd_one(void *arg, double secs)
{
    int fd = *(int *)arg;
    uint64_t n = 0;
    double t0 = bench_now();
    do {
        requests(fd, 64);
        n += 64;
    } while (bench_now() - t0 < secs);
    return rate_of(n, t0);
}

/* km_encrypt through client mode, on the handle `arg`. */
static double client_one(void *arg, double secs)
{
    km_key *k = arg;
    uint8_t pt[64], ct[64 + KM_CIPHERTEXT_OVERHEAD];
    uint64_t n = 0;
    double t0 = bench_now();
    memset(pt, 0x5a, sizeof pt);
    do {
        int i;
        for (i = 0; i < 64; i++) {
            size_t len = 0;
            BENCH_CHECK(km_encrypt(k, pt, sizeof pt, NULL, 0, ct, sizeof ct, &len));
        }
        n += 64;
    } while (bench_now() - t0 < secs);
    return rate_of(n, t0);
}

/* The echo server: answers each message with itself, one thread per
 * connection, in a process of its own (as kmd). */
static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t b[4096];
    for (;;) {
        size_t total, got = 0;
        ssize_t r;
        while (got < 8 && (r = recv(fd, b + got, 8 - got, 0)) > 0)
            got += (size_t)r;
        if (got < 8 || km__ttlv_peek_len(b, 8, sizeof b, &total) != KM_OK)
            break;
        while (got < total && (r = recv(fd, b + got, total - got, 0)) > 0)
            got += (size_t)r;
        if (got < total || send(fd, b, total, MSG_NOSIGNAL) != (ssize_t)total)
            break;
    }
    close(fd);
    return NULL;
}

static void *echo_main(void *arg)
{
    int lfd = *(int *)arg, fd;
    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        pthread_t th;
        if (pthread_create(&th, NULL, echo_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            pthread_detach(th);
    }
    return NULL;
}

static double echo_one(void *arg, double secs)
{
    int fd = *(int *)arg;
    uint8_t b[4096];
    uint64_t n = 0, i;
    double t0 = bench_now();
    do {
        for (i = 0; i < 64; i++) {
            io_all(fd, g_req, g_req_len, 1);
            (void)recv_msg(fd, b, sizeof b);
        }
        n += 64;
    } while (bench_now() - t0 < secs);
    return rate_of(n, t0);
}

/* 8 client processes, each on its own connection, for `secs`: the total
 * rate (each child writes its count into shared memory). */
typedef struct many {
    uint64_t *counts;
    const char *path;   /* kmd's socket, or the echo server's */
    int echo;
} many;

static double clients_many(void *arg, double secs)
{
    many *m = arg;
    uint64_t *counts = m->counts;
    pid_t pids[NCLIENTS];
    double t0;
    int i, st;
    uint64_t total = 0;

    t0 = bench_now();
    for (i = 0; i < NCLIENTS; i++) {
        if ((pids[i] = fork()) < 0)
            bench_die("fork failed");
        if (pids[i] == 0) {
            int fd = connect_to(m->path);
            uint64_t n = 0;
            double c0 = bench_now();
            do {
                if (m->echo) {
                    uint8_t b[4096];
                    int j;
                    for (j = 0; j < 32; j++) {
                        io_all(fd, g_req, g_req_len, 1);
                        (void)recv_msg(fd, b, sizeof b);
                    }
                } else {
                    requests(fd, 32);
                }
                n += 32;
            } while (bench_now() - c0 < secs);
            counts[i] = n;
            _exit(0);
        }
    }
    for (i = 0; i < NCLIENTS; i++) {
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bench_die("a client process failed");
        total += counts[i];
    }
    return rate_of(total, t0);
}

typedef struct emb {
    km_key *key;
    double secs;
    uint64_t n;
} emb;

static void *emb_main(void *arg)
{
    emb *e = arg;
    uint8_t pt[64], ct[64 + KM_CIPHERTEXT_OVERHEAD];
    size_t len;
    double t0 = bench_now();
    memset(pt, 0x5a, sizeof pt);
    e->n = 0;
    do {
        int i;
        for (i = 0; i < 256; i++)
            BENCH_CHECK(km_encrypt(e->key, pt, sizeof pt, NULL, 0, ct, sizeof ct, &len));
        e->n += 256;
    } while (bench_now() - t0 < e->secs);
    return NULL;
}

static double embedded_many(void *arg, double secs)
{
    km_key *key = arg;
    pthread_t th[NCLIENTS];
    emb e[NCLIENTS];
    uint64_t total = 0;
    double t0 = bench_now();
    int i;
    for (i = 0; i < NCLIENTS; i++) {
        e[i].key = key;
        e[i].secs = secs;
        pthread_create(&th[i], NULL, emb_main, &e[i]);
    }
    for (i = 0; i < NCLIENTS; i++) {
        pthread_join(th[i], NULL);
        total += e[i].n;
    }
    return rate_of(total, t0);
}

static void pair(const char *name, side_fn km, void *km_arg, side_fn raw, void *raw_arg)
{
    double k[MAX_ROUNDS], r[MAX_ROUNDS], kk, rr;
    int i;
    (void)km(km_arg, 0.05);
    (void)raw(raw_arg, 0.05);
    for (i = 0; i < g_rounds; i++) {
        k[i] = km(km_arg, g_round_s);
        r[i] = raw(raw_arg, g_round_s);
    }
    kk = bench_median(k, (size_t)g_rounds);
    rr = bench_median(r, (size_t)g_rounds);
    printf("BENCH %s km=%.0f raw=%.0f ratio=%.3f\n", name, kk, rr, rr > 0 ? kk / rr : 0.0);
    fflush(stdout);
}

/* ------------------------------------------------------------ set-up */

static pid_t kmd_start(const char *dir)
{
    char conf[600], pass[600];
    FILE *f;
    pid_t p;
    int i;

    snprintf(pass, sizeof pass, "%s/pass", dir);
    if ((f = fopen(pass, "w")) == NULL)
        bench_die("cannot write %s", pass);
    fputs(PASS, f);
    fclose(f);
    chmod(pass, 0600);
    snprintf(conf, sizeof conf, "%s/kmd.conf", dir);
    if ((f = fopen(conf, "w")) == NULL)
        bench_die("cannot write %s", conf);
    fprintf(f, "vault = lmdb:%s/vault\nsocket = %s\npassphrase_file = %s\n"
               "principal.%u = bench-user\n", dir, g_sock, pass, (unsigned)getuid());
    fclose(f);
    if ((p = fork()) == 0) {
        char bin[600];
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(bin, sizeof bin, "%s/src/kmd/kmd", KM_BUILDDIR);
        execl(bin, "kmd", "--config", conf, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 200; i++) {
        struct stat st;
        if (stat(g_sock, &st) == 0)
            return p;
        usleep(50000);
    }
    bench_die("kmd did not start");
}

int main(void)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char *dir = bench_mkdtemp("kmd"), uri[600], echo_path[108];
    km_ctx *ctx = NULL;
    km_key *key = NULL;
    pid_t echo_pid;
    uint64_t *counts;
    pid_t kmd;
    int i, fd, efd, lfd;
    struct sockaddr_un a;

    g_rounds = (int)bench_env_num("BENCH_ROUNDS", 7);
    g_round_s = bench_env_num("BENCH_ROUND_S", 0.25);
    if (g_rounds < 1 || g_rounds > MAX_ROUNDS)
        bench_die("BENCH_ROUNDS must be 1 to %d", MAX_ROUNDS);
    bench_print_machine("bench_kmd");
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)PASS;
    o.passphrase_len = strlen(PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    BENCH_CHECK(km_open(&ctx, uri, &o));
    BENCH_CHECK(km_principal_add(ctx, "bench-user", KM_ROLE_USER, (const uint8_t *)"u", 1,
                                 KM_KDF_COST_MIN));
    BENCH_CHECK(km_key_create(&key, ctx, "bench", KM_KEY_AES_256_GCM, NULL));
    BENCH_CHECK(km_key_grant(key, "bench-user", KM_PERM_ENCRYPT));
    for (i = 0; i < 16; i++)
        snprintf(g_uid + 2 * i, 3, "%02x", km_key_id(key)[i]);
    build_request();
    snprintf(g_sock, sizeof g_sock, "%s/kmd.sock", dir);
    snprintf(echo_path, sizeof echo_path, "%s/echo.sock", dir);
    kmd = kmd_start(dir);

    /* the echo server on its own socket, in a thread */
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", echo_path);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 8) != 0)
        bench_die("echo socket");
    /* in a process of its own, as kmd is */
    if ((echo_pid = fork()) < 0)
        bench_die("fork failed");
    if (echo_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        echo_main(&lfd);
        _exit(0);
    }
    close(lfd);

    printf("# rounds=%d round_s=%.2f request=%zu bytes: km and raw interleaved, median of "
           "rounds, ratio = km/raw\n", g_rounds, g_round_s, g_req_len);
    fd = connect_to(g_sock);
    efd = connect_to(echo_path);
    pair("kmd-encrypt-64", kmd_one, &fd, echo_one, &efd);
    close(fd);
    {
        km_ctx *cc = NULL;
        km_key *ck = NULL;
        char curi[140];
        snprintf(curi, sizeof curi, "kmd:%s", g_sock);
        BENCH_CHECK(km_open(&cc, curi, NULL));
        BENCH_CHECK(km_key_open(&ck, cc, "bench"));
        pair("kmd-encrypt-64-client", client_one, ck, echo_one, &efd);
        km_key_free(ck);
        km_close(cc);
    }
    close(efd);
    counts = mmap(NULL, sizeof(uint64_t) * NCLIENTS, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED)
        bench_die("mmap failed");
    {
        many km_side = { counts, g_sock, 0 }, echo_side = { counts, echo_path, 1 };
        pair("kmd-encrypt-64-8clients", clients_many, &km_side, embedded_many, key);
        /* the same 8 clients against the echo server: how close kmd comes to
         * the transport's limit when it is shared (a bare echo has no work
         * to spread over the cores) */
        pair("kmd-encrypt-64-8clients-echo", clients_many, &km_side, clients_many, &echo_side);
    }
    /* the same PyKMIP client against kmd and against the PyKMIP server */
    if (access("/usr/bin/pykmip-server", X_OK) != 0
        || system("/usr/bin/python3 -c 'import kmip.pie.client' 2>/dev/null") != 0) {
        printf("BENCH kmip-server skipped=pykmip-not-installed\n");
    } else {
        char cmd[2048], line[256];
        double k = 0, p = 0, kus = 0, pus = 0;
        FILE *f;
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/kmd/bench_pykmip.py %s %s %s "
                 "%s/tests/kmip %.2f %d %d", KM_SRCDIR, g_sock, g_uid, dir, KM_SRCDIR,
                 g_round_s * 4, g_rounds < 3 ? g_rounds : 3, (int)kmd);
        if ((f = popen(cmd, "r")) == NULL || fgets(line, sizeof line, f) == NULL
            || sscanf(line, "kmd=%lf pykmip=%lf", &k, &p) != 2)
            bench_die("bench_pykmip.py failed");
        pclose(f);
        printf("BENCH kmip-server km=%.0f raw=%.0f ratio=%.3f\n", k, p, p > 0 ? k / p : 0.0);
        if (sscanf(line, "kmd=%*f pykmip=%*f kmd_us=%lf pykmip_us=%lf", &kus, &pus) == 2)
            printf("BENCH kmip-server-cpu km_us=%.2f raw_us=%.2f ratio=%.4f\n", kus, pus,
                   pus > 0 ? kus / pus : 0.0);
        else
            printf("BENCH kmip-server-cpu skipped=no-server-cpu-figures\n");
        fflush(stdout);
    }
    bench_print_load();
    kill(kmd, SIGTERM);
    waitpid(kmd, NULL, 0);
    kill(echo_pid, SIGKILL);
    waitpid(echo_pid, NULL, 0);
    km_key_free(key);
    km_close(ctx);
    bench_rmtree(dir);
    free(dir);
    return 0;
}
