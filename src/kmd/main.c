/* main.c - kmd: start-up (configuration, the vault opened as its owner or
 * with a device keyslot), the Unix socket, one thread per connection
 * (SO_PEERCRED uid -> principal -> a delegated context, km/sys/server.h),
 * the framing of KMIP messages with their limits. docs/KMD.md.
 *
 * Connections share nothing but the server context (libkm's own locking) and
 * the seal state: each thread blocks in its own recv() and serves its
 * requests without any kmd-wide lock (docs/PERFORMANCE.md, kmd). */
#define _GNU_SOURCE 1   /* accept4, struct ucred */
#include "kmd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <km/sys/server.h>

#include "kmip_ttlv.h"

#define PASS_MAX 1024

static kmd_config cfg;
/* the server's context: NULL while sealed (unseal = shares), set once */
static _Atomic(km_ctx *) srv;
static volatile sig_atomic_t stopping;
static atomic_uint active;

static void logm(const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kmd: %s\n", line);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------- start-up */

/* The owner passphrase from its file: no symlink, a regular file of ours
 * that nobody else can read (as the OpenSSL provider's passphrase_file). */
static int read_passphrase(const char *path, km_secret **out, size_t *len)
{
    struct stat st;
    km_secret *s = NULL;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        logm("passphrase_file '%s': %s", path,
             errno == ELOOP ? "is a symbolic link (refused)" : strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        logm("passphrase_file '%s': not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        logm("passphrase_file '%s': must be owned by kmd's user and readable by nobody else "
             "(chown it, chmod 600 it)", path);
        close(fd);
        return -1;
    }
    if (km_secret_new(&s, PASS_MAX + 2) != KM_OK) {
        close(fd);
        return -1;
    }
    n = read(fd, km_secret_data(s), PASS_MAX + 1);
    close(fd);
    if (n > 0 && km_secret_data(s)[n - 1] == '\n')
        n--;
    if (n <= 0 || n > PASS_MAX) {
        logm("passphrase_file '%s': the passphrase must be 1 to %d bytes", path, PASS_MAX);
        km_secret_free(s);
        return -1;
    }
    *out = s;
    *len = (size_t)n;
    return 0;
}

/* Opens the vault with `o` and makes it the server's context. */
static int vault_ready(const km_open_options *o)
{
    km_ctx *c = NULL;
    int rc = km_open(&c, cfg.vault, o);

    if (rc != KM_OK) {
        logm("cannot open the vault '%s': %s: %s", cfg.vault, km_err_name(rc),
             km_error_last()->message);
        return rc;
    }
    if (cfg.audit_file[0] != '\0' && (rc = km_audit_sink_file(c, cfg.audit_file)) != KM_OK) {
        logm("audit_file '%s': %s", cfg.audit_file, km_error_last()->message);
        km_close(c);
        return rc;
    }
    atomic_store(&srv, c);
    return KM_OK;
}

/* ------------------------------------------------------- sealed start */

/* The shares custodians sent so far (unseal = shares): distinct texts of one
 * split, with who sent each, until the keyslot's M are there. */
static pthread_mutex_t seal_mu = PTHREAD_MUTEX_INITIALIZER;
static km_secret *held[KM_SHARES_MAX];
static char held_peer[KM_SHARES_MAX][32];
static unsigned nheld, need;
static uint8_t split[16];

static void shares_forget(void)
{
    unsigned i;
    for (i = 0; i < nheld; i++) {
        km_secret_free(held[i]);
        held[i] = NULL;
    }
    nheld = need = 0;
}

/* base64url without padding; -1 on a bad character or length. */
static int b64url(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52 : c == '-' ? 62 : c == '_' ? 63 : -1;
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *len = o;
    return 0;
}

static int unseal_share(const uint8_t *b, size_t n, const char *peer, unsigned *have,
                        unsigned *needp, char *msg, size_t cap)
{
    uint8_t raw[64];
    size_t len = 0, i;
    int rc = KM_OK;

    if (n < 6 || n > 200 || memcmp(b, "kms1:", 5) != 0
        || b64url((const char *)b + 5, n - 5, raw, sizeof raw, &len) != 0 || len != 52
        || raw[0] != 1 || raw[17] < 2 || raw[17] > raw[18] || raw[18] > KM_SHARES_MAX) {
        snprintf(msg, cap, "not a custodian share (kms1:...)");
        return KM_E_INVALID;
    }
    pthread_mutex_lock(&seal_mu);
    if (atomic_load(&srv) != NULL) {
        snprintf(msg, cap, "kmd is not sealed");
        rc = KM_E_STATE;
        goto out;
    }
    if (nheld > 0 && memcmp(split, raw + 1, 16) != 0) {
        snprintf(msg, cap, "a share of another split than the shares held");
        rc = KM_E_AUTH;
        goto out;
    }
    for (i = 0; i < nheld; i++)
        if (km_secret_len(held[i]) == n && km_ct_equal(km_secret_data(held[i]), b, n))
            break;
    if (i == nheld) {   /* a new one (a repeated share counts once) */
        if (km_secret_from(&held[nheld], b, n) != KM_OK) {
            snprintf(msg, cap, "out of memory");
            rc = KM_E_NOMEM;
            goto out;
        }
        snprintf(held_peer[nheld], sizeof held_peer[0], "%s", peer);
        memcpy(split, raw + 1, 16);
        need = raw[17];
        nheld++;
        logm("%s: unseal share %u of %u received", peer, nheld, need);
    }
    *have = nheld;
    *needp = need;
    if (nheld >= need) {
        km_open_options o = KM_OPEN_OPTIONS_INIT;
        char *texts[KM_SHARES_MAX];
        km_secret *tx[KM_SHARES_MAX];
        unsigned j, made = 0;

        /* NUL-terminated copies in secure memory for km_open */
        for (j = 0; j < nheld; j++, made++) {
            if (km_secret_new(&tx[j], km_secret_len(held[j]) + 1) != KM_OK)
                break;
            memcpy(km_secret_data(tx[j]), km_secret_data(held[j]), km_secret_len(held[j]));
            texts[j] = (char *)km_secret_data(tx[j]);
        }
        o.refresh_ms = cfg.refresh_ms;
        o.shares = (const char *const *)texts;
        o.share_count = made;
        rc = made == nheld ? vault_ready(&o) : KM_E_NOMEM;
        for (j = 0; j < made; j++)
            km_secret_free(tx[j]);
        if (rc == KM_OK) {
            km_ctx *c = atomic_load(&srv);
            char d[120];
            for (j = 0; j < nheld; j++) {
                snprintf(d, sizeof d, "unseal: share %u of %u received from %s", j + 1, need,
                         held_peer[j]);
                if (km_server_audit(c, d) != KM_OK)
                    logm("cannot audit an unseal share: %s", km_error_last()->message);
            }
            logm("unsealed with %u shares", nheld);
        } else {
            snprintf(msg, cap, "the shares did not open the vault (%s); every share held is "
                               "forgotten: send them again", km_error_last()->message);
            rc = KM_E_AUTH;
            *have = 0;
        }
        shares_forget();
    }
out:
    pthread_mutex_unlock(&seal_mu);
    km_memzero(raw, sizeof raw);
    return rc;
}

static int vault_open(void)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_secret *pass = NULL;
    size_t pass_len = 0;
    int rc;

    if (cfg.unseal) {
        logm("started sealed: waiting for the custodians' shares (kmctl unseal)");
        return 0;
    }
    o.refresh_ms = cfg.refresh_ms;
    if (cfg.passphrase_file[0] != '\0') {
        if (read_passphrase(cfg.passphrase_file, &pass, &pass_len) != 0)
            return -1;
        o.passphrase = km_secret_data(pass);
        o.passphrase_len = pass_len;
    } else {
        o.slot_backend = cfg.slot_backend;
        o.slot_config = cfg.slot_config[0] ? cfg.slot_config : NULL;
    }
    rc = vault_ready(&o);
    km_secret_free(pass);
    return rc == KM_OK ? 0 : -1;
}

static int listen_socket(void)
{
    struct sockaddr_un a;
    struct stat st;
    char tmp[sizeof a.sun_path + 8];
    int fd;

    /* bound and listening under a temporary name, then renamed: the socket
     * appears only when it accepts */
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(tmp, sizeof tmp, "%s.tmp", cfg.socket_path);
    if (strlen(tmp) >= sizeof a.sun_path) {
        logm("socket '%s': path too long", cfg.socket_path);
        return -1;
    }
    memcpy(a.sun_path, tmp, strlen(tmp) + 1);
    unlink(tmp);
    /* a socket left by a kmd that died is replaced; anything else is not */
    if (lstat(cfg.socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            logm("socket '%s' exists and is not a socket", cfg.socket_path);
            return -1;
        }
        unlink(cfg.socket_path);
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0
        || bind(fd, (struct sockaddr *)&a, sizeof a) != 0
        || chmod(tmp, cfg.socket_mode) != 0 || listen(fd, 128) != 0
        || rename(tmp, cfg.socket_path) != 0) {
        logm("socket '%s': %s", cfg.socket_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The TLS listener on tls_listen (IPv4:PORT), or -1. */
static int listen_tls(void)
{
    struct sockaddr_in a;
    char host[64], err[300];
    const char *colon = strrchr(cfg.tls_listen, ':');
    unsigned long port;
    char *end;
    int fd, one = 1;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    if (colon == NULL || (size_t)(colon - cfg.tls_listen) >= sizeof host
        || (port = strtoul(colon + 1, &end, 10)) == 0 || port > 65535 || *end != '\0') {
        logm("tls_listen '%s': expected IPv4:PORT", cfg.tls_listen);
        return -1;
    }
    memcpy(host, cfg.tls_listen, (size_t)(colon - cfg.tls_listen));
    host[colon - cfg.tls_listen] = '\0';
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        logm("tls_listen '%s': expected IPv4:PORT", cfg.tls_listen);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    if (kmd_tls_init(&cfg, err, sizeof err) != 0) {
        logm("%s", err);
        return -1;
    }
    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) {
        logm("tls_listen '%s': %s", cfg.tls_listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------- connections */

#define RBUF 16384

typedef struct conn {
    int fd;
    uid_t uid;
    int tls;          /* from the TLS listener */
    void *ssl;        /* after the handshake */
    size_t rpos, rlen; /* bytes received ahead, rbuf[rpos..rlen) */
    uint8_t rbuf[RBUF];
} conn;

/* One receive into the connection's buffer (or straight into `direct`, of
 * `cap` bytes, when the caller wants that many): blocks in slices of 200 ms
 * (SO_RCVTIMEO, or the TLS read's own deadline) so that a stopping kmd ends
 * every connection, until bytes come or the deadline (monotonic ms) passes.
 * No poll() before it: a request already waiting costs one system call.
 * The bytes received, or -1 (closed, timed out, stopping). */
static ssize_t fill(conn *c, uint8_t *direct, size_t cap, int64_t deadline)
{
    uint8_t *b = direct;
    if (b == NULL) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        b = c->rbuf + c->rlen;
        cap = RBUF - c->rlen;
    }
    for (;;) {
        int64_t now = now_ms();
        ssize_t r;
        if (stopping || now >= deadline)
            return -1;
        r = c->ssl != NULL
                ? kmd_tls_read(c->ssl, b, cap, deadline < now + 200 ? deadline : now + 200)
                : recv(c->fd, b, cap, 0);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -1;
        }
        if (direct == NULL)
            c->rlen += (size_t)r;
        return r;
    }
}

/* Waits for the first byte of the next request until the deadline: 1 when
 * one is there, 0 not. */
static int wait_readable(conn *c, int64_t deadline)
{
    return c->rpos < c->rlen || fill(c, NULL, 0, deadline) > 0;
}

/* Reads exactly n bytes before the deadline: what the buffer holds first,
 * then receives (large remainders straight into b). 0, or -1. */
static int read_full(conn *c, uint8_t *b, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        size_t have = c->rlen - c->rpos;
        if (have > 0) {
            size_t take = have < n - got ? have : n - got;
            memcpy(b + got, c->rbuf + c->rpos, take);
            c->rpos += take;
            got += take;
            continue;
        }
        if (n - got >= RBUF) {
            ssize_t r = fill(c, b + got, n - got, deadline);
            if (r < 0)
                return -1;
            got += (size_t)r;
        } else if (fill(c, NULL, 0, deadline) < 0) {
            return -1;
        }
    }
    return 0;
}

static int write_full(conn *c, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = c->ssl != NULL
                        ? kmd_tls_write(c->ssl, b, n, now_ms() + cfg.request_timeout_ms)
                        : send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One connection: requests until the client closes, a limit is passed or
 * kmd stops, as `principal` through ctx (delegated when kmd is unsealed, if
 * it was sealed at connect). Closes ctx. */
static void serve(conn *c, km_ctx *ctx, const char *principal, const char *who)
{
    kmd_limits lim;
    uint8_t head[8], *buf = NULL, *resp = NULL;
    size_t total, resp_len = 0;
    struct timeval tv = { 5, 0 }, slice = { 0, 200000 };

    lim.max_message = cfg.max_message;
    lim.peer = who;
    lim.unseal = cfg.unseal ? unseal_share : NULL;
    if (c->fd >= 0) {  /* a TLS connection's I/O has its own deadlines */
        (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice);
    }
    for (;;) {
        int64_t deadline;
        int bad;

        /* idle: the first bytes of the next request */
        if (!wait_readable(c, now_ms() + cfg.idle_timeout_ms))
            break;
        deadline = now_ms() + cfg.request_timeout_ms;
        if (read_full(c, head, sizeof head, deadline) != 0)
            break;
        if (km__ttlv_peek_len(head, sizeof head, cfg.max_message, &total) != KM_OK) {
            /* oversized: say why, then close (the rest is never read) */
            static const uint8_t junk[8] = { 0 };
            logm("%s: a request over max_message (%zu bytes): connection closed", who,
                 cfg.max_message);
            if (kmd_kmip_handle(ctx, &lim, junk, sizeof junk, &resp, &resp_len) != 0
                && resp != NULL)
                (void)write_full(c, resp, resp_len);
            break;
        }
        if ((buf = malloc(total)) == NULL)
            break;
        memcpy(buf, head, sizeof head);
        if (read_full(c, buf + 8, total - 8, deadline) != 0) {
            logm("%s: an incomplete request (closed or slower than request_timeout_ms)", who);
            break;
        }
        /* the principal's context, once the vault is open (at once, or
         * when the custodians unsealed it) */
        if (ctx == NULL && atomic_load(&srv) != NULL) {
            int rc = km_ctx_delegate(atomic_load(&srv), principal, who, &ctx);
            if (rc != KM_OK) {
                logm("%s: refused as '%s': %s: %s", who, principal, km_err_name(rc),
                     km_error_last()->message);
                break;
            }
        }
        bad = kmd_kmip_handle(ctx, &lim, buf, total, &resp, &resp_len);
        km_memzero(buf, total);
        free(buf);
        buf = NULL;
        if (resp == NULL || write_full(c, resp, resp_len) != 0 || bad)
            break;
        kmd_response_free(resp, resp_len);
        resp = NULL;
    }
    if (buf != NULL) {
        km_memzero(buf, 8);
        free(buf);
    }
    kmd_response_free(resp, resp_len);
    km_close(ctx);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    km_ctx *ctx = NULL;
    const char *principal = NULL;
    char peer[KM_PEER_MAX + 1];
    int rc;

    if (c->tls) {
        /* the handshake proves the client certificate; its CN names the principal */
        char cn[256], err[512];
        if (kmd_tls_accept(&c->fd, now_ms() + cfg.request_timeout_ms, &c->ssl, cn, sizeof cn, err,
                           sizeof err) != 0) {
            logm("tls: refused: %s", err);
            snprintf(peer, sizeof peer, "tls:?");
        } else {
            snprintf(peer, sizeof peer, "tls:CN=%.49s", cn);   /* KM_PEER_MAX */
            if ((principal = kmd_config_cn_principal(&cfg, cn)) == NULL)
                logm("%s: refused: no principal is mapped to this certificate", peer);
        }
    } else {
        snprintf(peer, sizeof peer, "uid:%u", (unsigned)c->uid);
        if ((principal = kmd_config_principal(&cfg, c->uid)) == NULL)
            logm("%s: refused: no principal is mapped to this uid", peer);
    }
    if (principal == NULL) {
        /* refused: logged above */
    } else if (atomic_load(&srv) != NULL
               && (rc = km_ctx_delegate(atomic_load(&srv), principal, peer, &ctx)) != KM_OK) {
        /* checked at connect: a removed principal gets nothing */
        logm("%s: refused as '%s': %s: %s", peer, principal, km_err_name(rc),
             km_error_last()->message);
    } else {
        serve(c, ctx, principal, peer);   /* closes ctx */
    }
    kmd_tls_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    km_memzero(c->rbuf, sizeof c->rbuf);   /* requests may carry key material */
    free(c);
    atomic_fetch_sub(&active, 1);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    char err[600];
    struct sigaction sa;
    int lfd, tfd, i;
    const char *path = NULL;
    int check_only = 0;

    for (i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--check-config") == 0)
            check_only = 1;
        else
            path = NULL, i = argc;
    }
    if (path == NULL) {
        fprintf(stderr, "usage: kmd --config FILE [--check-config]   (docs/KMD.md)\n");
        return 2;
    }
    if (kmd_config_load(path, &cfg, err, sizeof err) != 0) {
        logm("%s", err);
        return 2;
    }
    if (check_only) {
        logm("%s: configuration ok", path);
        return 0;
    }
    umask(077);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (vault_open() != 0)
        return 1;
    tfd = -1;
    if (cfg.tls_listen[0] != '\0' && (tfd = listen_tls()) < 0) {
        km_close(atomic_load(&srv));
        return 1;
    }
    if ((lfd = listen_socket()) < 0) {
        km_close(atomic_load(&srv));
        return 1;
    }
    logm("ready on %s%s%s", cfg.socket_path, tfd >= 0 ? " and TLS " : "",
         tfd >= 0 ? cfg.tls_listen : "");
    while (!stopping) {
        struct pollfd p[2] = { { lfd, POLLIN, 0 }, { tfd, POLLIN, 0 } };
        struct ucred cr;
        socklen_t cl = sizeof cr;
        pthread_attr_t at;
        pthread_t th;
        conn *c;
        int fd, tls;

        if (poll(p, tfd >= 0 ? 2 : 1, 200) <= 0)
            continue;
        tls = !(p[0].revents & POLLIN);
        if ((fd = accept4(tls ? tfd : lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        memset(&cr, 0, sizeof cr);
        if (!tls && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
            close(fd);
            continue;
        }
        if (atomic_load(&active) >= cfg.max_connections) {
            logm("%s: refused: max_connections (%u) reached", tls ? "tls" : "unix",
                 cfg.max_connections);
            close(fd);
            continue;
        }
        if ((c = calloc(1, sizeof *c)) == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->uid = cr.uid;
        c->tls = tls;
        atomic_fetch_add(&active, 1);
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, conn_main, c) != 0) {
            atomic_fetch_sub(&active, 1);
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&at);
    }
    close(lfd);
    if (tfd >= 0)
        close(tfd);
    unlink(cfg.socket_path);
    /* the connections see `stopping` within 200 ms */
    for (i = 0; i < 100 && atomic_load(&active) > 0; i++)
        usleep(50000);
    logm("stopped");
    if (atomic_load(&active) == 0) {
        km_close(atomic_load(&srv));
        kmd_tls_done();
    }
    pthread_mutex_lock(&seal_mu);
    shares_forget();
    pthread_mutex_unlock(&seal_mu);
    return 0;
}
