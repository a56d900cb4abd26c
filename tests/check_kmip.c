/* check_kmip.c - the kmip backend through the public API, against PyKMIP
 * servers this suite starts itself: certificates made by the test
 * (tests/kmip/pykmip.sh: an EC P-256 CA, a server certificate for
 * IP:127.0.0.1, client certificates with clientAuth), free ports, the
 * configuration and database in a temporary directory, each server stopped by
 * its PID. PyKMIP's own client (tests/kmip/pykmip_client.py) checks what the
 * server holds. A missing PyKMIP fails the suite, never skips it. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <km.h>

#include "testutil.h"

#ifndef KM_KMIP_TESTDIR
#define KM_KMIP_TESTDIR "tests/kmip"
#endif
#define PYTHON "/usr/bin/python3"
#define PYKMIP_SERVER "/usr/bin/pykmip-server"

/* ----------------------------------------------------------- server helper */

typedef struct server {
    char dir[512];   /* configuration, database and log (certificates: pki_dir) */
    int port;
    pid_t pid;
} server;

static char pki_dir[512];   /* made once by main() */
static int in_main = 1;     /* Check's asserts work only inside a test */

/* ck_assert_msg in a test; in main() (before and after the tests) a message and exit. */
#define REQUIRE(cond, ...)                                                   \
    do {                                                                     \
        if (in_main) {                                                       \
            if (!(cond)) {                                                   \
                fprintf(stderr, "check_kmip: " __VA_ARGS__);                 \
                fputc('\n', stderr);                                         \
                exit(EXIT_FAILURE);                                          \
            }                                                                \
        } else {                                                             \
            ck_assert_msg(cond, __VA_ARGS__);                                \
        }                                                                    \
    } while (0)

static char *tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/km-kmip.XXXXXX", base && *base ? base : "/tmp");
    REQUIRE(mkdtemp(tmpl) != NULL, "mkdtemp failed");
    return strdup(tmpl);
}
static server shared;       /* started once by main(), used by most tests */

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int port_open(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Every server started is recorded as pki_dir/server.PID until it is stopped:
 * Check runs each test in a forked child, and one that fails ends at once,
 * leaving its server running; main() stops what is still recorded. */
static void reg_add(pid_t pid)
{
    char path[700];
    FILE *f;
    snprintf(path, sizeof path, "%s/server.%d", pki_dir, (int)pid);
    f = fopen(path, "w");
    if (f != NULL)
        fclose(f);
}

static void reg_remove(pid_t pid)
{
    char path[700];
    snprintf(path, sizeof path, "%s/server.%d", pki_dir, (int)pid);
    (void)unlink(path);
}

/* True when pid is still a pykmip-server (not a reused PID). */
static int is_pykmip(pid_t pid)
{
    return tu_pid_runs(pid, "pykmip-server", NULL);
}

static void reap_leftovers(void)
{
    char path[700];
    struct dirent *e;
    DIR *d = opendir(pki_dir);
    int pid;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (sscanf(e->d_name, "server.%d", &pid) != 1 || pid <= 1)
            continue;
        if (is_pykmip(pid)) {
            fprintf(stderr, "check_kmip: stopping pykmip-server %d left by a failed test\n", pid);
            kill(pid, SIGTERM);
            sleep_ms(2000);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        snprintf(path, sizeof path, "%s/server.%d", pki_dir, pid);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Starts PyKMIP on s->dir (made) and s->port (a free one when 0); waits until
 * it listens. The server is this process's child: its own PID, not a shell's. */
static void server_start(server *s)
{
    char cmd[1400], conf[600], log[600], out[600];
    long long until;
    pid_t pid;

    if (s->dir[0] == '\0') {
        char *d = tmpdir();
        snprintf(s->dir, sizeof s->dir, "%s", d);
        free(d);
    }
    if (s->port == 0)
        s->port = free_port();
    REQUIRE(s->port > 0, "no free port");
    snprintf(cmd, sizeof cmd, "sh %s/pykmip.sh conf %s %d %s", KM_KMIP_TESTDIR, s->dir, s->port,
             pki_dir);
    REQUIRE(run(cmd) == 0, "%s failed", cmd);
    snprintf(conf, sizeof conf, "%s/server.conf", s->dir);
    snprintf(log, sizeof log, "%s/server.log", s->dir);  /* absolute: PyKMIP needs a dirname */
    snprintf(out, sizeof out, "%s/stdout.log", s->dir);
    pid = fork();
    REQUIRE(pid >= 0, "fork failed");
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setpgid(0, 0);
        execl(PYTHON, PYTHON, PYKMIP_SERVER, "-f", conf, "-l", log, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    reg_add(pid);
    until = now_ms() + 60000; /* ~1.5 s on an idle machine; much more on a loaded one */
    while (!port_open(s->port)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            REQUIRE(0, "pykmip-server exited at start (see %s)", out);
        }
        REQUIRE(now_ms() < until, "pykmip-server did not listen on %d (see %s)", s->port, out);
        sleep_ms(100);
    }
}

/* SIGTERM, then checks it is gone (reaped). */
static void server_stop(server *s)
{
    long long until;
    int st;

    if (s->pid <= 0)
        return;
    REQUIRE(kill(s->pid, SIGTERM) == 0, "kill failed");
    until = now_ms() + 20000;
    while (waitpid(s->pid, &st, WNOHANG) != s->pid) {
        if (now_ms() > until) {
            kill(-s->pid, SIGKILL);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        sleep_ms(50);
    }
    /* gone: no such process any more */
    REQUIRE(kill(s->pid, 0) != 0 && errno == ESRCH, "pykmip-server %d still runs", (int)s->pid);
    kill(-s->pid, SIGKILL); /* any child it left in its group */
    reg_remove(s->pid);
    s->pid = 0;
}

/* ---------------------------------------------------------------- helpers */

static char *config_for(const server *s, const char *client, const char *ca, const char *extra)
{
    static char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "server=127.0.0.1:%d;ca=%s/%s.crt;cert=%s/%s.crt;key=%s/%s.key;timeout=5000%s%s",
             s->port, pki_dir, ca, pki_dir, client, pki_dir, client, extra ? ";" : "",
             extra ? extra : "");
    return cfg;
}

static int64_t fake_now;
static int64_t test_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

typedef struct fixture {
    char *dir;
    km_ctx *ctx;
} fixture;

static void fx_open(fixture *f, const char *config)
{
    char path[4200];
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    int rc;

    f->dir = tu_tmpdir();
    snprintf(path, sizeof path, "lmdb:%s/vault", f->dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    o.clock = test_clock;
    fake_now = (int64_t)time(NULL);
    rc = km_open(&f->ctx, path, &o);
    ck_assert_msg(rc == KM_OK, "km_open: %s", km_error_last()->message);
    tu_allow_test_clock(f->ctx, 0);   /* fake_now moves */
    if (config != NULL)
        ck_assert_int_eq(km_vault_backend_set(f->ctx, "kmip", config), KM_OK);
}

static void fx_close(fixture *f)
{
    km_close(f->ctx);
    tu_rmtree(f->dir);
    free(f->dir);
}

static int create_kmip_key(km_ctx *ctx, const char *name, km_key_type type, km_key **out)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    o.protection = "kmip";
    return km_key_create(out, ctx, name, type, &o);
}

/* PyKMIP's own client: its first output line in `out`. */
static int pyclient(const server *s, const char *client, const char *what, const char *arg,
                    char *out, size_t cap)
{
    char cmd[2048];
    FILE *p;
    int st;

    snprintf(cmd, sizeof cmd, "%s %s/pykmip_client.py %s %d %s/%s.crt %s/%s.key %s '%s'", PYTHON,
             KM_KMIP_TESTDIR, pki_dir, s->port, pki_dir, client, pki_dir, client, what, arg);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    out[0] = '\0';
    if (fgets(out, (int)cap, p) != NULL)
        out[strcspn(out, "\r\n")] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The server's unique identifier of the key "client" created last (the suite
 * runs one test at a time; PyKMIP numbers objects 1, 2, ...). */
static void newest_uid(const server *s, char *uid, size_t cap)
{
    ck_assert_int_eq(pyclient(s, "client", "newest", "-", uid, cap), 0);
    ck_assert_msg(uid[0] != '\0' && strcmp(uid, "NOTFOUND") != 0, "client has no object");
}

static const uint8_t MSG[] = "a message kept by the key server";
static const uint8_t AAD[] = "context";

/* ---------------------------------------------------------------- tests */

static void round_trip(const char *version)
{
    fixture f;
    km_key *k = NULL;
    char uid[64], out[64];
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len;
    int rc;

    fx_open(&f, config_for(&shared, "client", "ca", version));
    rc = create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k);
    ck_assert_msg(rc == KM_OK, "create: %s", km_error_last()->message);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, AAD, sizeof AAD, ct, sizeof ct, &ct_len),
                     KM_OK);
    ck_assert_uint_eq(ct_len, sizeof MSG + KM_CIPHERTEXT_OVERHEAD);
    ck_assert(ct[0] == 'K' && ct[1] == 'M' && ct[2] == 1);
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, AAD, sizeof AAD, pt, sizeof pt, &pt_len),
                     KM_OK);
    ck_assert(pt_len == sizeof MSG && memcmp(pt, MSG, pt_len) == 0);
    /* a wrong aad fails on the server's tag check */
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, AAD, 3, pt, sizeof pt, &pt_len),
                     KM_E_INTEGRITY);
    /* the key was created Sensitive (PyKMIP 0.10 refuses Extractable: the
     * backend asked again without it), and a second key needs no retry */
    newest_uid(&shared, uid, sizeof uid);
    ck_assert_int_eq(pyclient(&shared, "client", "sensitive", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "True");
    km_key_free(k);
    k = NULL;
    ck_assert_int_eq(create_kmip_key(f.ctx, "k2", KM_KEY_AES_256_GCM, &k), KM_OK);
    newest_uid(&shared, uid, sizeof uid);
    ck_assert_int_eq(pyclient(&shared, "client", "sensitive", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "True");
    km_key_free(k);
    fx_close(&f);
}

START_TEST(test_kmip_round_trip_default_version)
{
    round_trip(NULL);
}
END_TEST

START_TEST(test_kmip_round_trip_protocol_1_4)
{
    round_trip("version=1.4");
}
END_TEST

START_TEST(test_kmip_round_trip_protocol_2_0)
{
    round_trip("version=2.0");
}
END_TEST

/* The ciphertext is format v1 under the server's key: PyKMIP's Get gives the
 * key bytes (PyKMIP exports keys to their owner), and a local AES-GCM opens it. */
START_TEST(test_kmip_ciphertext_known_answer)
{
    fixture f;
    km_key *k = NULL;
    uint8_t ct[256], pt[256], aad[64], *key;
    size_t ct_len, key_len, n = sizeof MSG;
    char uid[128], hex[200];
    EVP_CIPHER_CTX *c;
    int len, fin;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "kat", KM_KEY_AES_256_GCM, &k), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, n, AAD, sizeof AAD, ct, sizeof ct, &ct_len), KM_OK);
    newest_uid(&shared, uid, sizeof uid);
    ck_assert_int_eq(pyclient(&shared, "client", "state", uid, hex, sizeof hex), 0);
    ck_assert_str_eq(hex, "ACTIVE");
    ck_assert_int_eq(pyclient(&shared, "client", "get", uid, hex, sizeof hex), 0);
    key = tu_unhex(hex, &key_len);
    ck_assert_ptr_nonnull(key);
    ck_assert_uint_eq(key_len, 32);
    memcpy(aad, ct, 36);
    memcpy(aad + 36, AAD, sizeof AAD);
    c = EVP_CIPHER_CTX_new();
    ck_assert_int_eq(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, ct + 24), 1);
    ck_assert_int_eq(EVP_DecryptUpdate(c, NULL, &len, aad, 36 + (int)sizeof AAD), 1);
    ck_assert_int_eq(EVP_DecryptUpdate(c, pt, &len, ct + 36, (int)n), 1);
    ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, ct + 36 + n), 1);
    ck_assert_int_eq(EVP_DecryptFinal_ex(c, pt + len, &fin), 1);
    ck_assert(len + fin == (int)n && memcmp(pt, MSG, n) == 0);
    EVP_CIPHER_CTX_free(c);
    free(key);
    km_key_free(k);
    fx_close(&f);
}
END_TEST

START_TEST(test_kmip_bad_tag_refused)
{
    fixture f;
    km_key *k = NULL;
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len, i;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "tag", KM_KEY_AES_256_GCM, &k), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    ct[ct_len - 1] ^= 0x01;
    memset(pt, 0xAA, sizeof pt);
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len),
                     KM_E_INTEGRITY);
    /* the core's words, then the server's own: its Result Reason kept as native code */
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_KMIP);
    ck_assert_uint_eq(km_error_last()->native, 0x100); /* General Failure (PyKMIP 0.10) */
    ck_assert_msg(strstr(km_error_last()->message, "ciphertext failed authentication") != NULL
                      && strstr(km_error_last()->message, "kmip decrypt: the server answered "
                                                          "General Failure") != NULL,
                  "%s", km_error_last()->message);
    for (i = 0; i < sizeof MSG; i++)
        ck_assert_uint_eq(pt[i], 0);
    /* a changed ciphertext byte, too */
    ct[ct_len - 1] ^= 0x01;
    ct[40] ^= 0x80;
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len),
                     KM_E_INTEGRITY);
    ct[40] ^= 0x80;
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    km_key_free(k);
    fx_close(&f);
}
END_TEST

/* Another client certificate (another CN) cannot use the first one's keys:
 * not through libkm, not through PyKMIP's client. */
START_TEST(test_kmip_other_client_refused)
{
    fixture f;
    km_ctx *ctx2 = NULL;
    km_key *k = NULL;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len;
    char path[4200], uid[128], out[200];
    int rc;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "mine", KM_KEY_AES_256_GCM, &k), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(k);
    /* the same vault, its kmip configuration now naming client2 */
    ck_assert_int_eq(km_vault_backend_set(f.ctx, "kmip", config_for(&shared, "client2", "ca",
                                                                    NULL)), KM_OK);
    km_close(f.ctx);
    snprintf(path, sizeof path, "lmdb:%s/vault", f.dir);
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    ck_assert_int_eq(km_open(&ctx2, path, &o), KM_OK);
    f.ctx = ctx2;
    rc = km_decrypt(ctx2, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len);
    ck_assert_msg(rc != KM_OK, "client2 decrypted client1's ciphertext");
    /* PyKMIP: Permission Denied, "Could not locate object" */
    ck_assert_int_eq(rc, KM_E_DENIED);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_KMIP);
    ck_assert_uint_eq(km_error_last()->native, 0xC);
    newest_uid(&shared, uid, sizeof uid);
    ck_assert_int_eq(pyclient(&shared, "client2", "get", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "DENIED");
    /* the owner still can */
    ck_assert_int_eq(pyclient(&shared, "client", "state", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "ACTIVE");
    fx_close(&f);
}
END_TEST

/* TLS: a server certificate of another CA, a name it was not issued for, a
 * client certificate without clientAuth, one of another CA: all refused with
 * KM_E_BACKEND, and the key is not created. */
START_TEST(test_kmip_tls_refusals)
{
    static const struct {
        const char *client, *ca, *host;
    } cases[] = {
        { "client", "other-ca", NULL },    /* wrong CA for the server */
        { "client", "ca", "localhost" },   /* the certificate is for IP:127.0.0.1 only */
        { "noeku", "ca", NULL },           /* no clientAuth */
        { "other", "ca", NULL },           /* a client of another CA */
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f;
        km_key *k = NULL;
        char cfg[2048];
        long long t0;
        int rc;

        snprintf(cfg, sizeof cfg, "%s", config_for(&shared, cases[i].client, cases[i].ca, NULL));
        if (cases[i].host != NULL) {
            char port[16], *p = strstr(cfg, "127.0.0.1:");
            snprintf(port, sizeof port, "%d", shared.port);
            ck_assert_ptr_nonnull(p);
            snprintf(cfg, sizeof cfg, "server=%s:%s;ca=%s/ca.crt;cert=%s/client.crt;"
                     "key=%s/client.key;timeout=5000", cases[i].host, port, pki_dir, pki_dir,
                     pki_dir);
        }
        fx_open(&f, cfg);
        t0 = now_ms();
        rc = create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k);
        ck_assert_msg(rc == KM_E_BACKEND, "case %zu: %s (%s)", i, km_err_name(rc),
                      km_error_last()->message);
        ck_assert_ptr_null(k);
        ck_assert_int_lt(now_ms() - t0, 12000);
        ck_assert_int_eq(km_key_open(&k, f.ctx, "k"), KM_E_NOTFOUND);
        fx_close(&f);
    }
}
END_TEST

/* The server stopped (SIGSTOP): a timeout, once; killed: an error within
 * seconds, never a hang; restarted on the same port and database: the same
 * key works again (one reconnect). */
START_TEST(test_kmip_server_restart_recovers)
{
    server s;
    fixture f;
    km_key *k = NULL;
    uint8_t ct[256], ct2[256], pt[256];
    size_t ct_len, ct2_len, pt_len;
    long long t0;
    int rc;

    memset(&s, 0, sizeof s);
    server_start(&s);
    fx_open(&f, config_for(&s, "client", "ca", "timeout=2000"));
    ck_assert_int_eq(create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    /* a server that hangs (stopped): one timeout, no second wait on a new connection */
    ck_assert_int_eq(kill(s.pid, SIGSTOP), 0);
    t0 = now_ms();
    rc = km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct2, sizeof ct2, &ct2_len);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "timed out"));
    ck_assert_int_ge(now_ms() - t0, 1900);
    ck_assert_int_lt(now_ms() - t0, 3800);
    ck_assert_int_eq(kill(s.pid, SIGCONT), 0);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct2, sizeof ct2, &ct2_len), KM_OK);
    server_stop(&s);
    t0 = now_ms();
    rc = km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct2, sizeof ct2, &ct2_len);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_lt(now_ms() - t0, 8000);
    t0 = now_ms();
    rc = km_decrypt(f.ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_lt(now_ms() - t0, 8000);
    server_start(&s); /* same dir, same port, same database */
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert(pt_len == sizeof MSG && memcmp(pt, MSG, pt_len) == 0);
    /* a connection dropped under a live handle: the server restarted again */
    server_stop(&s);
    server_start(&s);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct2, sizeof ct2, &ct2_len), KM_OK);
    ck_assert_int_eq(km_decrypt(f.ctx, 0, ct2, ct2_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    km_key_free(k);
    fx_close(&f);
    server_stop(&s);
    tu_rmtree(s.dir);
}
END_TEST

/* A server that accepts and never answers: KM_E_BACKEND after the timeout. */
START_TEST(test_kmip_silent_server_times_out)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    fixture f;
    km_key *k = NULL;
    server fake;
    long long t0;
    int lfd, rc;

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 4), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    memset(&fake, 0, sizeof fake);
    fake.port = ntohs(sa.sin_port);
    fx_open(&f, config_for(&fake, "client", "ca", "timeout=1000"));
    t0 = now_ms();
    rc = create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_lt(now_ms() - t0, 5000);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "timed out"));
    /* nobody listening at all: at once */
    close(lfd);
    t0 = now_ms();
    ck_assert_int_eq(create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k), KM_E_BACKEND);
    ck_assert_int_lt(now_ms() - t0, 3000);
    fx_close(&f);
}
END_TEST

/* km_maintain destroys the version after its grace: Revoke + Destroy on the
 * server, which then has no such object (PyKMIP deletes destroyed objects). */
START_TEST(test_kmip_destroy_reaches_the_server)
{
    fixture f;
    km_key *k = NULL;
    km_maintain_report *rep = NULL;
    uint8_t ct[256];
    size_t ct_len;
    char uid[128], out[200];
    int rc;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "gone", KM_KEY_AES_256_GCM, &k), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    newest_uid(&shared, uid, sizeof uid);
    ck_assert_int_eq(km_key_revoke(k, 1, KM_REVOKE_CESSATION_OF_OPERATION, 0), KM_OK);
    rc = km_key_schedule_destroy(k, 1, 30);
    ck_assert_msg(rc == KM_OK, "schedule_destroy: %s", km_error_last()->message);
    /* within the grace: still on the server */
    ck_assert_int_eq(pyclient(&shared, "client", "state", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "ACTIVE");
    fake_now += 31 * 86400;
    ck_assert_int_eq(km_maintain(f.ctx, &rep), KM_OK);
    km_maintain_report_free(rep);
    ck_assert_int_eq(pyclient(&shared, "client", "state", uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "NOTFOUND");
    km_key_free(k);
    fx_close(&f);
}
END_TEST

START_TEST(test_kmip_config_and_types)
{
    static const char *const bad[] = {
        "ca=/x;cert=/y;key=/z",                              /* no server */
        "server=127.0.0.1;ca=/x;cert=/y;key=/z",             /* no port */
        "server=127.0.0.1:99999;ca=/x;cert=/y;key=/z",       /* port out of range */
        "server=127.0.0.1:5696;ca=/x;cert=/y",               /* no key */
        "server=127.0.0.1:5696;ca=/x;cert=/y;key=/z;version=1.2",
        "server=127.0.0.1:5696;ca=/x;cert=/y;key=/z;colour=blue",
        "server=127.0.0.1:5696;ca=/nonexistent;cert=/y;key=/z",
    };
    size_t i;
    fixture f;
    km_key *k = NULL;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fx_open(&f, bad[i]);
        ck_assert_msg(create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k) == KM_E_INVALID,
                      "config %zu accepted: %s", i, km_error_last()->message);
        fx_close(&f);
    }
    /* a client key under a passphrase: refused at once, never a prompt */
    {
        char cfg[2048];
        snprintf(cfg, sizeof cfg, "server=127.0.0.1:%d;ca=%s/ca.crt;cert=%s/client.crt;"
                 "key=%s/client-enc.key", shared.port, pki_dir, pki_dir, pki_dir);
        fx_open(&f, cfg);
        ck_assert_int_eq(create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k), KM_E_INVALID);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "client-enc.key"));
        ck_assert_ptr_null(strstr(km_error_last()->message, "secret"));
        fx_close(&f);
    }
    /* no configuration at all */
    fx_open(&f, NULL);
    ck_assert_int_eq(create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k), KM_E_INVALID);
    fx_close(&f);
    /* a key type the backend does not hold */
    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "ec", KM_KEY_EC_P256, &k), KM_E_UNSUPPORTED);
    ck_assert_int_eq(create_kmip_key(f.ctx, "ed", KM_KEY_ED25519, &k), KM_E_UNSUPPORTED);
    fx_close(&f);
}
END_TEST

/* Two threads on one backend instance share its connection. */
static km_key *thr_key;
static km_ctx *thr_ctx;
static void *thr_main(void *arg)
{
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len;
    int i;
    (void)arg;
    for (i = 0; i < 20; i++) {
        if (km_encrypt(thr_key, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len) != KM_OK
            || km_decrypt(thr_ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len) != KM_OK
            || pt_len != sizeof MSG)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_kmip_threads_share_the_connection)
{
    fixture f;
    pthread_t t[3];
    void *r;
    int i;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(create_kmip_key(f.ctx, "thr", KM_KEY_AES_256_GCM, &thr_key), KM_OK);
    thr_ctx = f.ctx;
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, thr_main, NULL), 0);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(pthread_join(t[i], &r), 0);
        ck_assert_ptr_null(r);
    }
    km_key_free(thr_key);
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------ a fake server
 * A TLS server in a thread of the test: it answers the DiscoverVersions with
 * PyKMIP's bytes (tests/kmip/vectors.txt), then misbehaves on the next request. */

enum fake_mode { FAKE_TRUNCATED, FAKE_OVERSIZED, FAKE_GARBAGE, FAKE_WRONG_COUNT, FAKE_SILENT };

typedef struct fake {
    int lfd, port;
    enum fake_mode mode;
    pthread_t thr;
} fake;

static uint8_t *vector(const char *name, size_t *len)
{
    char path[1024], line[8192];
    FILE *f;
    uint8_t *b = NULL;

    snprintf(path, sizeof path, "%s/vectors.txt", KM_KMIP_TESTDIR);
    f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    while (b == NULL && fgets(line, sizeof line, f) != NULL) {
        char *sp = strchr(line, ' ');
        if (sp == NULL)
            continue;
        *sp = '\0';
        if (strcmp(line, name) == 0) {
            sp[1 + strcspn(sp + 1, "\r\n")] = '\0';
            b = tu_unhex(sp + 1, len);
        }
    }
    fclose(f);
    return b;
}

static int ssl_read_msg(SSL *ssl)
{
    uint8_t hdr[8], buf[4096];
    size_t n, got = 0, total;

    while (got < 8) {
        if (SSL_read_ex(ssl, hdr + got, 8 - got, &n) != 1)
            return -1;
        got += n;
    }
    total = ((size_t)hdr[4] << 24 | (size_t)hdr[5] << 16 | (size_t)hdr[6] << 8 | hdr[7]);
    while (total > 0) {
        if (SSL_read_ex(ssl, buf, total < sizeof buf ? total : sizeof buf, &n) != 1)
            return -1;
        total -= n;
    }
    return 0;
}

static void *fake_main(void *arg)
{
    fake *fk = arg;
    char crt[700], key[700];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    uint8_t *disc, *create, bad[64];
    size_t disc_len = 0, create_len = 0, n;
    int fd;
    SSL *ssl;

    snprintf(crt, sizeof crt, "%s/server.crt", pki_dir);
    snprintf(key, sizeof key, "%s/server.key", pki_dir);
    SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
    disc = vector("discover_resp", &disc_len);
    create = vector("create_resp_14", &create_len);
    fd = accept(fk->lfd, NULL, NULL);
    if (fd < 0 || disc == NULL || create == NULL)
        goto out;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1 && ssl_read_msg(ssl) == 0
        && SSL_write_ex(ssl, disc, disc_len, &n) == 1 && ssl_read_msg(ssl) == 0) {
        switch (fk->mode) {
        case FAKE_TRUNCATED:
            SSL_write_ex(ssl, create, create_len / 2, &n);
            break;
        case FAKE_OVERSIZED:
            memcpy(bad, create, 8);
            bad[4] = 0x7f; /* 2 GiB announced */
            SSL_write_ex(ssl, bad, 8, &n);
            sleep_ms(300);
            break;
        case FAKE_GARBAGE:
            memset(bad, 0xEE, sizeof bad);
            memcpy(bad, "\x42\x00\x7b\x01\x00\x00\x00\x38", 8);
            SSL_write_ex(ssl, bad, sizeof bad, &n);
            sleep_ms(300);
            break;
        case FAKE_WRONG_COUNT:
            /* a valid message whose header says 2 batch items and holds 1 */
            create[0x53] = 2; /* the Batch Count's value */
            SSL_write_ex(ssl, create, create_len, &n);
            sleep_ms(300);
            break;
        case FAKE_SILENT:
            sleep_ms(3000);
            break;
        }
    }
    SSL_free(ssl);
    close(fd);
out:
    free(disc);
    free(create);
    SSL_CTX_free(ctx);
    return NULL;
}

static void fake_start(fake *fk, enum fake_mode mode)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;

    memset(fk, 0, sizeof *fk);
    fk->mode = mode;
    fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fk->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fk->lfd, 4), 0);
    ck_assert_int_eq(getsockname(fk->lfd, (struct sockaddr *)&sa, &sl), 0);
    fk->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&fk->thr, NULL, fake_main, fk), 0);
}

static void fake_stop(fake *fk)
{
    shutdown(fk->lfd, SHUT_RDWR);
    pthread_join(fk->thr, NULL);
    close(fk->lfd);
}

/* Truncated, oversized, malformed, inconsistent or missing responses:
 * KM_E_BACKEND within the timeout, nothing created, no crash. */
START_TEST(test_kmip_bad_responses_refused)
{
    static const struct {
        enum fake_mode mode;
        const char *says;
    } cases[] = {
        { FAKE_TRUNCATED, "receive" },
        { FAKE_OVERSIZED, "longer than" },
        { FAKE_GARBAGE, "malformed" },
        { FAKE_WRONG_COUNT, "malformed" },
        { FAKE_SILENT, "timed out" },
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        server srv;
        fixture f;
        fake fk;
        km_key *k = NULL;
        long long t0;
        int rc;

        fake_start(&fk, cases[i].mode);
        memset(&srv, 0, sizeof srv);
        srv.port = fk.port;
        fx_open(&f, config_for(&srv, "client", "ca", "timeout=1500"));
        t0 = now_ms();
        rc = create_kmip_key(f.ctx, "k", KM_KEY_AES_256_GCM, &k);
        ck_assert_msg(rc == KM_E_BACKEND, "case %zu: %s (%s)", i, km_err_name(rc),
                      km_error_last()->message);
        ck_assert_msg(strstr(km_error_last()->message, cases[i].says) != NULL, "case %zu: %s", i,
                      km_error_last()->message);
        ck_assert_int_lt(now_ms() - t0, 6000);
        ck_assert_int_eq(km_key_open(&k, f.ctx, "k"), KM_E_NOTFOUND);
        fx_close(&f);
        fake_stop(&fk);
    }
}
END_TEST

/* The kmip keyslot: the vault opens with the key server and the client
 * certificate, no passphrase; not with another client's certificate. */
static int open_with_kmip(const char *dir, const char *cfg, km_ctx **out)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char uri[4200];
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.slot_backend = "kmip";
    o.slot_config = cfg;
    return km_open(out, uri, &o);
}

START_TEST(test_kmip_keyslot_opens_the_vault)
{
    fixture f;
    km_ctx *c2 = NULL;
    km_key *k = NULL;
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len;
    char cfg[2048];
    int rc;

    fx_open(&f, NULL);
    ck_assert_int_eq(km_key_create(&k, f.ctx, "data", KM_KEY_AES_256_GCM, NULL), KM_OK);
    ck_assert_int_eq(km_encrypt(k, MSG, sizeof MSG, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(k);
    snprintf(cfg, sizeof cfg, "%s", config_for(&shared, "client", "ca", NULL));
    ck_assert_int_eq(open_with_kmip(f.dir, cfg, &c2), KM_E_AUTH); /* no kmip slot yet */
    rc = km_vault_add_backend_slot(f.ctx, "kmip", cfg);
    ck_assert_msg(rc == KM_OK, "add slot: %s", km_error_last()->message);
    km_close(f.ctx);
    f.ctx = NULL;
    rc = open_with_kmip(f.dir, cfg, &c2);
    ck_assert_msg(rc == KM_OK, "open with the key server: %s", km_error_last()->message);
    ck_assert_int_eq(km_decrypt(c2, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert(pt_len == sizeof MSG && memcmp(pt, MSG, pt_len) == 0);
    km_close(c2);
    c2 = NULL;
    /* another client certificate cannot */
    snprintf(cfg, sizeof cfg, "%s", config_for(&shared, "client2", "ca", NULL));
    rc = open_with_kmip(f.dir, cfg, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "client2 opened the vault: %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* the passphrase still opens it */
    ck_assert_int_eq(tu_vault_open(&c2, f.dir, TU_PASS, 0), KM_OK);
    f.ctx = c2;
    fx_close(&f);
}
END_TEST

/* ------------------------------------------------------- a scripted fake
 * A TLS server thread that answers DiscoverVersions, Create and Activate with
 * PyKMIP's bytes, answers an Encrypt with a response for another operation (the
 * request fails), closes the connection on anything else, and records every
 * operation asked for; connection after connection until stopped. */

#define OP_CREATE 0x01
#define OP_ACTIVATE 0x12
#define OP_REVOKE 0x13
#define OP_DESTROY 0x14
#define OP_DISCOVER 0x1e
#define OP_ENCRYPT 0x1f

typedef struct script {
    int lfd, port;
    pthread_t thr;
    pthread_mutex_t mu;
    uint32_t ops[32];
    int nops;
    char uid[64];        /* the Unique Identifier of create_resp_14 */
    int destroy_named;   /* a Destroy request named that uid */
    EVP_PKEY *rsa;       /* when set: a server of this RSA key pair (below) */
    int sign_salt_fields;/* a Sign request carried Salt Length 32 */
} script;

/* ------------------------------------------- responses written by the test
 * A small TTLV writer for the RSA answers of the scripted fake: CreateKeyPair
 * (private "11", public "12"), Activate, Get of the public key (PKCS#1) and
 * Sign with libkm's RSA-PSS (salt 32), as a server that honours the Salt
 * Length would. */

typedef struct tw {
    uint8_t b[4096];
    size_t n, open[8];
    int depth;
} tw;

static void tw_item(tw *w, uint32_t tag, uint8_t type, const void *v, uint32_t len)
{
    size_t pad = (8 - len % 8) % 8;
    ck_assert_uint_le(w->n + 8 + len + pad, sizeof w->b);
    w->b[w->n] = (uint8_t)(tag >> 16);
    w->b[w->n + 1] = (uint8_t)(tag >> 8);
    w->b[w->n + 2] = (uint8_t)tag;
    w->b[w->n + 3] = type;
    w->b[w->n + 4] = (uint8_t)(len >> 24);
    w->b[w->n + 5] = (uint8_t)(len >> 16);
    w->b[w->n + 6] = (uint8_t)(len >> 8);
    w->b[w->n + 7] = (uint8_t)len;
    if (len > 0)
        memcpy(w->b + w->n + 8, v, len);
    memset(w->b + w->n + 8 + len, 0, pad);
    w->n += 8 + len + pad;
}

static void tw_begin(tw *w, uint32_t tag)
{
    w->open[w->depth++] = w->n;
    tw_item(w, tag, 0x01, NULL, 0);
}

static void tw_end(tw *w)
{
    size_t at = w->open[--w->depth], len = w->n - at - 8;
    w->b[at + 4] = (uint8_t)(len >> 24);
    w->b[at + 5] = (uint8_t)(len >> 16);
    w->b[at + 6] = (uint8_t)(len >> 8);
    w->b[at + 7] = (uint8_t)len;
}

static void tw_u32(tw *w, uint32_t tag, uint8_t type, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    tw_item(w, tag, type, b, 4);
}

/* A one-item success response to `op`; the payload is written by the caller
 * between tw_reply_begin and tw_reply_end. */
static void tw_reply_begin(tw *w, uint32_t op)
{
    static const uint8_t ts[8] = { 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00 };
    memset(w, 0, sizeof *w);
    tw_begin(w, 0x42007B);
    tw_begin(w, 0x42007A);
    tw_begin(w, 0x420069);
    tw_u32(w, 0x42006A, 0x02, 1);
    tw_u32(w, 0x42006B, 0x02, 4);
    tw_end(w);
    tw_item(w, 0x420092, 0x09, ts, 8);
    tw_u32(w, 0x42000D, 0x02, 1);
    tw_end(w);
    tw_begin(w, 0x42000F);
    tw_u32(w, 0x42005C, 0x05, op);
    tw_u32(w, 0x42007F, 0x05, 0);
    tw_begin(w, 0x42007C);
}

static void tw_reply_end(tw *w)
{
    tw_end(w);
    tw_end(w);
    tw_end(w);
}

/* The bytes of the first item tagged `tag` (3 bytes) of type Byte String. */
static const uint8_t *ttlv_bytes(const uint8_t *b, size_t len, const char *tag, size_t *n)
{
    size_t i;
    for (i = 0; i + 8 <= len; i++)
        if (memcmp(b + i, tag, 3) == 0 && b[i + 3] == 0x08) {
            *n = (size_t)b[i + 4] << 24 | (size_t)b[i + 5] << 16 | (size_t)b[i + 6] << 8
                 | b[i + 7];
            return i + 8 + *n <= len ? b + i + 8 : NULL;
        }
    return NULL;
}

static size_t pss_sign(EVP_PKEY *k, int salt, const uint8_t *msg, size_t len, uint8_t *sig,
                       size_t cap);

/* The RSA server's answer to `op` in w; 0 when it has none. */
static int rsa_answer(script *sc, uint32_t op, const uint8_t *req, size_t len, tw *w)
{
    uint8_t der[1024], sig[512], *p = der;
    const uint8_t *data;
    size_t n = 0;
    int dl;

    switch (op) {
    case 0x02: /* CreateKeyPair */
        tw_reply_begin(w, op);
        tw_item(w, 0x420066, 0x07, "11", 2);
        tw_item(w, 0x42006F, 0x07, "12", 2);
        break;
    case 0x12: /* Activate */
        tw_reply_begin(w, op);
        tw_item(w, 0x420094, 0x07, "11", 2);
        break;
    case 0x0A: /* Get: the public key, PKCS#1 */
        dl = i2d_PublicKey(sc->rsa, &p);
        ck_assert_int_gt(dl, 0);
        tw_reply_begin(w, op);
        tw_u32(w, 0x420057, 0x05, 3);
        tw_item(w, 0x420094, 0x07, "12", 2);
        tw_begin(w, 0x42006D);
        tw_begin(w, 0x420040);
        tw_u32(w, 0x420042, 0x05, 3);
        tw_begin(w, 0x420045);
        tw_item(w, 0x420043, 0x08, der, (uint32_t)dl);
        tw_end(w);
        tw_u32(w, 0x420028, 0x05, 4);
        tw_u32(w, 0x42002A, 0x02, 2048);
        tw_end(w);
        tw_end(w);
        break;
    case 0x21: /* Sign: libkm's PSS over the Data */
        /* Salt Length (an Integer) = 32 in the request? */
        for (n = 0; n + 12 <= len; n++)
            if (memcmp(req + n, "\x42\x01\x00\x02\x00\x00\x00\x04\x00\x00\x00\x20", 12) == 0)
                sc->sign_salt_fields = 1;
        data = ttlv_bytes(req, len, "\x42\x00\xc2", &n);
        if (data == NULL)
            return 0;
        n = pss_sign(sc->rsa, 32, data, n, sig, sizeof sig);
        tw_reply_begin(w, op);
        tw_item(w, 0x420094, 0x07, "11", 2);
        tw_item(w, 0x4200C3, 0x08, sig, (uint32_t)n);
        break;
    default:
        return 0;
    }
    tw_reply_end(w);
    return 1;
}

static int ssl_read_whole(SSL *ssl, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n, got = 0, total;

    while (got < 8) {
        if (SSL_read_ex(ssl, buf + got, 8 - got, &n) != 1)
            return -1;
        got += n;
    }
    total = 8 + ((size_t)buf[4] << 24 | (size_t)buf[5] << 16 | (size_t)buf[6] << 8 | buf[7]);
    if (total > cap)
        return -1;
    while (got < total) {
        if (SSL_read_ex(ssl, buf + got, total - got, &n) != 1)
            return -1;
        got += n;
    }
    *len = total;
    return 0;
}

/* The text of the first item tagged `tag` (3 bytes) of type Text String. */
static int ttlv_text(const uint8_t *b, size_t len, const char *tag, char *out, size_t cap)
{
    size_t i, n;
    for (i = 0; i + 8 <= len; i++)
        if (memcmp(b + i, tag, 3) == 0 && b[i + 3] == 0x07) {
            n = (size_t)b[i + 4] << 24 | (size_t)b[i + 5] << 16 | (size_t)b[i + 6] << 8 | b[i + 7];
            if (n >= cap || i + 8 + n > len)
                return -1;
            memcpy(out, b + i + 8, n);
            out[n] = '\0';
            return 0;
        }
    return -1;
}

static void *script_main(void *arg)
{
    script *sc = arg;
    char crt[700], key[700];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *names[] = { "discover_resp", "create_resp_14", "activate_resp", "decrypt_resp" };
    uint8_t *resp[4], req[8192];
    size_t resp_len[4], i, n, len;
    tw w;

    snprintf(crt, sizeof crt, "%s/server.crt", pki_dir);
    snprintf(key, sizeof key, "%s/server.key", pki_dir);
    SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
    for (i = 0; i < 4; i++)
        resp[i] = vector(names[i], &resp_len[i]);
    if (resp[1] != NULL)
        ttlv_text(resp[1], resp_len[1], "\x42\x00\x94", sc->uid, sizeof sc->uid);
    for (;;) {
        int fd = accept(sc->lfd, NULL, NULL);
        SSL *ssl;
        if (fd < 0)
            break;
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1)
            while (ssl_read_whole(ssl, req, sizeof req, &len) == 0) {
                int answer = -1;
                char uid[64];
                /* every Operation (tag 42005c, an Enumeration) in the request */
                for (i = 0; i + 12 <= len; i++) {
                    uint32_t op;
                    if (memcmp(req + i, "\x42\x00\x5c\x05\x00\x00\x00\x04", 8) != 0)
                        continue;
                    op = (uint32_t)req[i + 8] << 24 | (uint32_t)req[i + 9] << 16
                         | (uint32_t)req[i + 10] << 8 | req[i + 11];
                    pthread_mutex_lock(&sc->mu);
                    if (sc->nops < 32)
                        sc->ops[sc->nops++] = op;
                    if (op == OP_DESTROY && ttlv_text(req, len, "\x42\x00\x94", uid,
                                                      sizeof uid) == 0
                        && strcmp(uid, sc->uid) == 0)
                        sc->destroy_named = 1;
                    pthread_mutex_unlock(&sc->mu);
                    answer = op == OP_DISCOVER ? 0 : op == OP_CREATE ? 1
                             : op == OP_ACTIVATE ? 2 : op == OP_ENCRYPT ? 3 : -1;
                    if (sc->rsa != NULL && op != OP_DISCOVER)
                        answer = rsa_answer(sc, op, req, len, &w) ? 4 : -1;
                }
                if (answer == 4) {
                    if (SSL_write_ex(ssl, w.b, w.n, &n) != 1)
                        break;
                    continue;
                }
                if (answer < 0 || resp[answer] == NULL
                    || SSL_write_ex(ssl, resp[answer], resp_len[answer], &n) != 1)
                    break;
            }
        SSL_free(ssl);
        close(fd);
    }
    for (i = 0; i < 4; i++)
        free(resp[i]);
    SSL_CTX_free(ctx);
    return NULL;
}

static void script_start(script *sc, EVP_PKEY *rsa)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;

    memset(sc, 0, sizeof *sc);
    sc->rsa = rsa;
    pthread_mutex_init(&sc->mu, NULL);
    sc->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(sc->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(sc->lfd, 4), 0);
    ck_assert_int_eq(getsockname(sc->lfd, (struct sockaddr *)&sa, &sl), 0);
    sc->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&sc->thr, NULL, script_main, sc), 0);
}

static void script_stop(script *sc)
{
    shutdown(sc->lfd, SHUT_RDWR);
    pthread_join(sc->thr, NULL);
    close(sc->lfd);
    pthread_mutex_destroy(&sc->mu);
}

/* A keyslot whose sealing fails after the server made its key (the Encrypt
 * fails): the slot's key is revoked and destroyed on the server, the error
 * is the Encrypt's, and the vault has no kmip slot. */
START_TEST(test_kmip_keyslot_seal_failure_destroys_the_key)
{
    fixture f;
    server srv;
    script sc;
    km_ctx *c2 = NULL;
    int rc, i, created = 0, revoked = 0, destroyed = 0, after_encrypt = 0;

    fx_open(&f, NULL);
    script_start(&sc, NULL);
    memset(&srv, 0, sizeof srv);
    srv.port = sc.port;
    rc = km_vault_add_backend_slot(f.ctx, "kmip", config_for(&srv, "client", "ca",
                                                             "timeout=2000"));
    ck_assert_msg(rc == KM_E_BACKEND, "%s (%s)", km_err_name(rc), km_error_last()->message);
    ck_assert_msg(strstr(km_error_last()->message, "kmip encrypt") != NULL, "%s",
                  km_error_last()->message);
    script_stop(&sc);
    ck_assert_str_ne(sc.uid, "");
    for (i = 0; i < sc.nops; i++) {
        created += sc.ops[i] == OP_CREATE;
        if (sc.ops[i] == OP_ENCRYPT)
            after_encrypt = 1;
        revoked += after_encrypt && sc.ops[i] == OP_REVOKE;
        destroyed += after_encrypt && sc.ops[i] == OP_DESTROY;
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_ge(revoked, 1);
    ck_assert_int_ge(destroyed, 1);
    ck_assert_int_eq(sc.destroy_named, 1);
    /* no kmip slot was written: the vault does not open through one */
    script_start(&sc, NULL);
    srv.port = sc.port;
    ck_assert_int_eq(open_with_kmip(f.dir, config_for(&srv, "client", "ca", "timeout=2000"),
                                    &c2), KM_E_AUTH);
    script_stop(&sc);
    fx_close(&f);
}
END_TEST


/* HMAC keys: drawn by libkm, registered, MACed by the server (known answer
 * with the key from PyKMIP's Get); imported AES keys encrypt in the server. */
START_TEST(test_kmip_hmac_and_import)
{
    static const uint8_t aes_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                         17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
                                         31, 32 };
    fixture f;
    km_key *k = NULL, *ki = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    uint8_t tag[KM_MAC_MAX], want[32], ct[256], pt[256], *key;
    size_t tag_len, key_len, ct_len, n = sizeof MSG;
    unsigned int want_len = 0;
    char uid[128], hex[200];
    EVP_CIPHER_CTX *c;
    int len, fin, rc;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    rc = create_kmip_key(f.ctx, "mac", KM_KEY_HMAC_SHA256, &k);
    ck_assert_msg(rc == KM_OK, "create hmac: %s", km_error_last()->message);
    ck_assert_int_eq(km_mac(k, KM_SIG_RAW, MSG, sizeof MSG, tag, sizeof tag, &tag_len), KM_OK);
    ck_assert_uint_eq(tag_len, 32);
    newest_uid(&shared, uid, sizeof uid);
    /* registered Sensitive; PyKMIP 0.10 still returns its bytes to Get */
    ck_assert_int_eq(pyclient(&shared, "client", "sensitive", uid, hex, sizeof hex), 0);
    ck_assert_str_eq(hex, "True");
    ck_assert_int_eq(pyclient(&shared, "client", "get", uid, hex, sizeof hex), 0);
    key = tu_unhex(hex, &key_len);
    ck_assert_ptr_nonnull(key);
    ck_assert_uint_eq(key_len, 32);
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, 32, MSG, sizeof MSG, want, &want_len));
    ck_assert(want_len == 32 && memcmp(want, tag, 32) == 0);
    free(key);
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, MSG, sizeof MSG, tag, tag_len), KM_OK);
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, MSG, 3, tag, tag_len), KM_E_VERIFY);
    ck_assert_int_eq(km_mac(k, 0, MSG, sizeof MSG, tag, sizeof tag, &tag_len), KM_OK);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, MSG, sizeof MSG, tag, tag_len), KM_OK);
    km_key_free(k);

    o.protection = "kmip";
    rc = km_key_import(&ki, f.ctx, "imported", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, aes_key,
                       sizeof aes_key, KM_IMPORT_ALLOW_RAW, &o);
    ck_assert_msg(rc == KM_OK, "import: %s", km_error_last()->message);
    ck_assert_int_eq(km_encrypt(ki, MSG, n, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    c = EVP_CIPHER_CTX_new();
    ck_assert_int_eq(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, aes_key, ct + 24), 1);
    ck_assert_int_eq(EVP_DecryptUpdate(c, NULL, &len, ct, 36), 1);
    ck_assert_int_eq(EVP_DecryptUpdate(c, pt, &len, ct + 36, (int)n), 1);
    ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, ct + 36 + n), 1);
    ck_assert_int_eq(EVP_DecryptFinal_ex(c, pt + len, &fin), 1);
    ck_assert(len + fin == (int)n && memcmp(pt, MSG, n) == 0);
    EVP_CIPHER_CTX_free(c);
    km_key_free(ki);
    fx_close(&f);
}
END_TEST

/* The server's private key of the newest pair (PyKMIP's Get exports it) and
 * the uids of both objects: the two newest objects of "client". */
static EVP_PKEY *newest_pair(char *priv_uid, char *pub_uid, size_t cap)
{
    char uid[64], hex[8192];
    EVP_PKEY *priv = NULL;
    int i, n;

    newest_uid(&shared, uid, sizeof uid);
    n = atoi(uid);
    for (i = n; i > n - 2; i--) {
        uint8_t *der;
        size_t len;
        const unsigned char *p;
        EVP_PKEY *k;
        snprintf(uid, sizeof uid, "%d", i);
        ck_assert_int_eq(pyclient(&shared, "client", "get", uid, hex, sizeof hex), 0);
        der = tu_unhex(hex, &len);
        ck_assert_ptr_nonnull(der);
        p = der;
        k = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)len);
        if (k != NULL) {
            priv = k;
            snprintf(priv_uid, cap, "%s", uid);
        } else {
            snprintf(pub_uid, cap, "%s", uid);
        }
        free(der);
    }
    ck_assert_ptr_nonnull(priv);
    return priv;
}

/* An RSA-PSS signature (SHA-256, MGF1-SHA-256) with salt length `salt`. */
static size_t pss_sign(EVP_PKEY *k, int salt, const uint8_t *msg, size_t len, uint8_t *sig,
                       size_t cap)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    size_t n = cap;

    ck_assert_int_eq(EVP_DigestSignInit(m, &pc, EVP_sha256(), NULL, k), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, salt), 0);
    ck_assert_int_eq(EVP_DigestSign(m, sig, &n, msg, len), 1);
    EVP_MD_CTX_free(m);
    return n;
}

/* 1 when sig is a PKCS#1 v1.5 SHA-256 signature of msg by k (OpenSSL). */
static int pkcs1_verify(EVP_PKEY *k, const uint8_t *msg, size_t len, const uint8_t *sig,
                        size_t sig_len)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok;

    ck_assert_int_eq(EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, k), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING), 0);
    ok = EVP_DigestVerify(m, sig, sig_len, msg, len);
    EVP_MD_CTX_free(m);
    return ok;
}

/* RSA through the server: CreateKeyPair + Activate; the public key from a
 * Get equals the server's private key's; verification here with it (libkm's
 * PSS, salt 32); a signature the server makes (PyKMIP 0.10: PSS with the
 * longest salt) is checked before it is returned and refused as
 * KM_E_UNSUPPORTED; PKCS#1 v1.5 (KM_SIG_PKCS1) signs through the server;
 * destruction removes both objects. */
START_TEST(test_kmip_rsa_public_key_verify_and_sign_check)
{
    fixture f;
    km_key *k = NULL;
    km_maintain_report *rep = NULL;
    EVP_PKEY *priv;
    uint8_t spki[1024], want[1024], sig[1024], *p = want;
    size_t spki_len, sig_len, i;
    char priv_uid[64], pub_uid[64], out[64];
    int want_len, rc;

    fx_open(&f, config_for(&shared, "client", "ca", NULL));
    rc = create_kmip_key(f.ctx, "rsa", KM_KEY_RSA_2048, &k);
    ck_assert_msg(rc == KM_OK, "create rsa: %s", km_error_last()->message);
    priv = newest_pair(priv_uid, pub_uid, sizeof priv_uid);
    ck_assert_int_eq(pyclient(&shared, "client", "state", priv_uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "ACTIVE");
    ck_assert_int_eq(pyclient(&shared, "client", "state", pub_uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "ACTIVE");
    ck_assert_int_eq(pyclient(&shared, "client", "sensitive", priv_uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "True");
    /* the public key */
    rc = km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len);
    ck_assert_msg(rc == KM_OK, "public key: %s", km_error_last()->message);
    want_len = i2d_PUBKEY(priv, &p);
    ck_assert_int_gt(want_len, 0);
    ck_assert(spki_len == (size_t)want_len && memcmp(spki, want, spki_len) == 0);
    /* verification in libkm's format: salt 32 verifies, the longest salt does not */
    sig_len = pss_sign(priv, 32, MSG, sizeof MSG, sig, sizeof sig);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, MSG, sizeof MSG, sig, sig_len), KM_OK);
    sig[10] ^= 1;
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, MSG, sizeof MSG, sig, sig_len), KM_E_VERIFY);
    sig_len = pss_sign(priv, RSA_PSS_SALTLEN_MAX, MSG, sizeof MSG, sig, sizeof sig);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, MSG, sizeof MSG, sig, sig_len), KM_E_VERIFY);
    /* the server's signature fails libkm's check: refused, nothing returned */
    memset(sig, 0xAA, sizeof sig);
    rc = km_sign(k, KM_SIG_RAW, MSG, sizeof MSG, sig, sizeof sig, &sig_len);
    ck_assert_msg(rc == KM_E_UNSUPPORTED, "km_sign: %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "32-byte salt"));
    /* PyKMIP 0.10 cannot parse the Salt Length fields: asked again without them */
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "which it cannot parse"));
    for (i = 0; i < sizeof sig; i++)
        ck_assert_uint_eq(sig[i], 0);
    /* PKCS#1 v1.5 (KM_SIG_PKCS1) of a message is what PyKMIP signs as asked:
     * the server's signature, checked by libkm and by OpenSSL with the
     * server's own key */
    rc = km_sign(k, KM_SIG_RAW | KM_SIG_PKCS1, MSG, sizeof MSG, sig, sizeof sig, &sig_len);
    ck_assert_msg(rc == KM_OK, "km_sign pkcs1: %s (%s)", km_err_name(rc), km_error_last()->message);
    ck_assert_uint_eq(sig_len, 256);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW | KM_SIG_PKCS1, MSG, sizeof MSG, sig, sig_len), KM_OK);
    ck_assert_int_eq(pkcs1_verify(priv, MSG, sizeof MSG, sig, sig_len), 1);
    sig[20] ^= 1;
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW | KM_SIG_PKCS1, MSG, sizeof MSG, sig, sig_len),
                     KM_E_VERIFY);
    /* destruction reaches both objects */
    ck_assert_int_eq(km_key_revoke(k, 1, KM_REVOKE_CESSATION_OF_OPERATION, 0), KM_OK);
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 30), KM_OK);
    fake_now += 31 * 86400;
    ck_assert_int_eq(km_maintain(f.ctx, &rep), KM_OK);
    km_maintain_report_free(rep);
    ck_assert_int_eq(pyclient(&shared, "client", "state", priv_uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "NOTFOUND");
    ck_assert_int_eq(pyclient(&shared, "client", "state", pub_uid, out, sizeof out), 0);
    ck_assert_str_eq(out, "NOTFOUND");
    EVP_PKEY_free(priv);
    km_key_free(k);
    fx_close(&f);
}
END_TEST

/* A server that signs libkm's RSA-PSS (salt 32, asked for with the Salt
 * Length fields): km_sign returns its signature, which verifies here and
 * with OpenSSL against the server's key. */
START_TEST(test_kmip_rsa_sign_with_a_server_that_honours_the_salt)
{
    fixture f;
    server srv;
    script sc;
    km_key *k = NULL;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t sig_len;
    int rc;

    ck_assert_ptr_nonnull(rsa);
    script_start(&sc, rsa);
    memset(&srv, 0, sizeof srv);
    srv.port = sc.port;
    fx_open(&f, config_for(&srv, "client", "ca", "timeout=3000"));
    rc = create_kmip_key(f.ctx, "rsa", KM_KEY_RSA_2048, &k);
    ck_assert_msg(rc == KM_OK, "create: %s", km_error_last()->message);
    rc = km_sign(k, KM_SIG_RAW, MSG, sizeof MSG, sig, sizeof sig, &sig_len);
    ck_assert_msg(rc == KM_OK, "sign: %s", km_error_last()->message);
    ck_assert_uint_eq(sig_len, 256);
    ck_assert_int_eq(sc.sign_salt_fields, 1);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, MSG, sizeof MSG, sig, sig_len), KM_OK);
    /* tagged signatures too */
    ck_assert_int_eq(km_sign(k, 0, MSG, sizeof MSG, sig, sizeof sig, &sig_len), KM_OK);
    ck_assert_int_eq(km_verify(k, 0, 0, MSG, sizeof MSG, sig, sig_len), KM_OK);
    ck_assert_int_eq(km_sign(k, KM_SIG_RAW, MSG, sizeof MSG, sig, sizeof sig, &sig_len), KM_OK);
    /* an outside verifier with the server's key: PSS, SHA-256, salt 32 */
    ck_assert_int_eq(EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, rsa), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32), 0);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, sig_len, MSG, sizeof MSG), 1);
    /* km_sign_digest: not through a KMIP server */
    ck_assert_int_eq(km_sign_digest(k, 0, 0, "SHA256", sig, 32, sig, sizeof sig, &sig_len),
                     KM_E_UNSUPPORTED);
    EVP_MD_CTX_free(m);
    km_key_free(k);
    fx_close(&f);
    script_stop(&sc);
    EVP_PKEY_free(rsa);
}
END_TEST

static Suite *kmip_suite(void)
{
    Suite *s = suite_create("kmip");
    TCase *tc = tcase_create("kmip");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_kmip_round_trip_default_version);
    tcase_add_test(tc, test_kmip_round_trip_protocol_1_4);
    tcase_add_test(tc, test_kmip_round_trip_protocol_2_0);
    tcase_add_test(tc, test_kmip_ciphertext_known_answer);
    tcase_add_test(tc, test_kmip_bad_tag_refused);
    tcase_add_test(tc, test_kmip_other_client_refused);
    tcase_add_test(tc, test_kmip_tls_refusals);
    tcase_add_test(tc, test_kmip_server_restart_recovers);
    tcase_add_test(tc, test_kmip_silent_server_times_out);
    tcase_add_test(tc, test_kmip_destroy_reaches_the_server);
    tcase_add_test(tc, test_kmip_config_and_types);
    tcase_add_test(tc, test_kmip_threads_share_the_connection);
    tcase_add_test(tc, test_kmip_bad_responses_refused);
    tcase_add_test(tc, test_kmip_keyslot_opens_the_vault);
    tcase_add_test(tc, test_kmip_keyslot_seal_failure_destroys_the_key);
    tcase_add_test(tc, test_kmip_hmac_and_import);
    tcase_add_test(tc, test_kmip_rsa_public_key_verify_and_sign_check);
    tcase_add_test(tc, test_kmip_rsa_sign_with_a_server_that_honours_the_salt);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    char cmd[1200], *d;
    int failed;

    /* PyKMIP missing is a failure, never a skip */
    if (access(PYKMIP_SERVER, X_OK) != 0
        || run(PYTHON " -c 'import kmip.pie.client' 2>/dev/null") != 0) {
        fprintf(stderr, "check_kmip: PyKMIP is not installed (%s and python3-pykmip under %s); "
                        "apt-get install python3-pykmip\n", PYKMIP_SERVER, PYTHON);
        return EXIT_FAILURE;
    }
    d = tmpdir();
    snprintf(pki_dir, sizeof pki_dir, "%s", d);
    free(d);
    snprintf(cmd, sizeof cmd, "sh %s/pykmip.sh certs %s", KM_KMIP_TESTDIR, pki_dir);
    if (run(cmd) != 0) {
        fprintf(stderr, "check_kmip: making the test certificates failed\n");
        return EXIT_FAILURE;
    }
    memset(&shared, 0, sizeof shared);
    server_start(&shared);
    sr = srunner_create(kmip_suite());
    in_main = 0;
    srunner_run_all(sr, CK_NORMAL);
    in_main = 1;
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    server_stop(&shared);
    reap_leftovers();
    tu_rmtree(shared.dir);
    tu_rmtree(pki_dir);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
