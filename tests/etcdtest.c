/* etcdtest.c - an etcd cluster of the tests (etcdtest.h). */
#include "etcdtest.h"
#include "testdev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *tu_etcd_error(void)
{
    return tu_dev_error();
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tu_etcd_installed(const char *who)
{
    if (access("/usr/bin/etcd", X_OK) == 0)
        return 1;
    fprintf(stderr, "%s: etcd is not installed (apt-get install etcd-server etcd-client)\n",
            who);
    return 0;
}

static void member_path(const tu_etcd *c, int i, const char *what, char *out, size_t cap)
{
    snprintf(out, cap, "%s/m%d%s", c->dir, i, what);
}

static pid_t member_pid(const tu_etcd *c, int i)
{
    char path[700];
    FILE *f;
    int pid = 0;

    member_path(c, i, ".pid", path, sizeof path);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* 1 when pid still runs etcd on member i's data directory (not a reused PID):
 * "--data-dir DIR/mI" then a space in its command line. */
static int is_ours(const tu_etcd *c, int i, pid_t pid)
{
    char data[700];

    member_path(c, i, " ", data, sizeof data);
    return pid > 0 && tu_pid_runs(pid, "etcd", data);
}

int tu_etcd_member_start(const tu_etcd *c, int i)
{
    char name[16], data[700], log[700], pidf[700], curl[64], purl[64], cluster[512] = "",
                                                                        token[80];
    pid_t pid;
    FILE *f;
    int k, fresh;
    struct stat sb;

    if (is_ours(c, i, member_pid(c, i)))
        return 0;   /* running */
    snprintf(name, sizeof name, "m%d", i);
    member_path(c, i, "", data, sizeof data);
    member_path(c, i, ".log", log, sizeof log);
    member_path(c, i, ".pid", pidf, sizeof pidf);
    snprintf(curl, sizeof curl, "%s://127.0.0.1:%d", c->pki[0] ? "https" : "http", c->port[i]);
    snprintf(purl, sizeof purl, "http://127.0.0.1:%d", c->port[i] + 1);
    for (k = 0; k < c->n; k++) {
        size_t l = strlen(cluster);
        snprintf(cluster + l, sizeof cluster - l, "%sm%d=http://127.0.0.1:%d", k ? "," : "", k,
                 c->port[k] + 1);
    }
    snprintf(token, sizeof token, "km-test-%d", c->port[0]);
    fresh = stat(data, &sb) != 0;
    pid = fork();
    if (pid < 0)
        return tu_dev_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        /* a new session: a test's signals and its end do not reach it */
        (void)setsid();
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* this member's own data directory name is in its command line:
         * --data-dir DIR/mI (then a space), which is_ours looks for */
        if (c->pki[0]) {
            char cert[600], key[600], ca[600];
            /* etcd's JSON gateway dials etcd's gRPC with this certificate:
             * it must be good for clientAuth too */
            snprintf(cert, sizeof cert, "%s/server-both.crt", c->pki);
            snprintf(key, sizeof key, "%s/server-both.key", c->pki);
            snprintf(ca, sizeof ca, "%s/ca.crt", c->pki);
            execl("/usr/bin/etcd", "etcd", "--name", name, "--data-dir", data,
                  "--listen-client-urls", curl, "--advertise-client-urls", curl,
                  "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                  "--initial-cluster", cluster, "--initial-cluster-token", token,
                  "--initial-cluster-state", fresh ? "new" : "existing",
                  "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca,
                  "--client-cert-auth", "--logger", "zap", "--log-level", "warn",
                  (char *)NULL);
            _exit(127);
        }
        execl("/usr/bin/etcd", "etcd", "--name", name, "--data-dir", data,
              "--listen-client-urls", curl, "--advertise-client-urls", curl,
              "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
              "--initial-cluster", cluster, "--initial-cluster-token", token,
              "--initial-cluster-state", fresh ? "new" : "existing", "--max-txn-ops", "10000",
              "--heartbeat-interval", "50", "--election-timeout", "500", "--logger", "zap",
              "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    if ((f = fopen(pidf, "w")) == NULL)
        return tu_dev_fail("cannot write %s", pidf);
    fprintf(f, "%d\n", (int)pid);
    fclose(f);
    /* until the child has exec'd, its command line is ours: wait for etcd's */
    {
        long end = now_ms() + 5000;
        while (!is_ours(c, i, pid)) {
            if (waitpid(pid, NULL, WNOHANG) == pid || now_ms() > end)
                return tu_dev_fail("etcd member %d did not start (see %s)", i, log);
            tu_dev_sleep_ms(2);
        }
    }
    return 0;
}

int tu_etcd_member_kill(const tu_etcd *c, int i)
{
    pid_t pid = member_pid(c, i);
    long end = now_ms() + 10000;

    if (!is_ours(c, i, pid))
        return 0;
    (void)kill(pid, SIGKILL);
    while (is_ours(c, i, pid)) {
        (void)waitpid(pid, NULL, WNOHANG);   /* reap it when it is our child */
        if (now_ms() > end)
            return tu_dev_fail("etcd member %d (pid %d) does not die", i, (int)pid);
        tu_dev_sleep_ms(5);
    }
    /* its ports are free again once the process is gone */
    return 0;
}

/* GET /health of member i: 1 when it answers {"health":"true"}. */
static int healthy(const tu_etcd *c, int i)
{
    struct sockaddr_in a;
    struct timeval tv = { 1, 0 };
    char req[128], buf[1024];
    ssize_t n, got = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);

    if (c->pki[0]) {
        char cmd[2200];
        close(s);
        snprintf(cmd, sizeof cmd, "curl -sf -m 1 --cacert '%s/ca.crt' --cert '%s/client.crt' "
                 "--key '%s/client.key' https://127.0.0.1:%d/health 2>/dev/null "
                 "| grep -q '\"health\":\"true\"'", c->pki, c->pki, c->pki, c->port[i]);
        return system(cmd) == 0;
    }
    if (s < 0)
        return 0;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)c->port[i]);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return 0;
    }
    snprintf(req, sizeof req, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if (write(s, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(s);
        return 0;
    }
    while (got < (ssize_t)sizeof buf - 1 && (n = read(s, buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    close(s);
    buf[got > 0 ? got : 0] = '\0';
    return strstr(buf, "\"health\":\"true\"") != NULL;
}

int tu_etcd_wait_healthy(const tu_etcd *c, int ms)
{
    long end = now_ms() + ms;
    int i;

    for (;;) {
        int all = 1;
        for (i = 0; i < c->n; i++)
            if (is_ours(c, i, member_pid(c, i)) && !healthy(c, i))
                all = 0;
        if (all)
            return 0;
        if (now_ms() > end)
            return tu_dev_fail("the etcd cluster in %s is not healthy after %d ms (see its m*.log)",
                        c->dir, ms);
        tu_dev_sleep_ms(20);
    }
}

static int start(tu_etcd *c, const char *dir, int n, const char *pki);

static int save(const tu_etcd *c)
{
    char path[700];
    FILE *f;
    int i;

    snprintf(path, sizeof path, "%s/cluster", c->dir);
    if ((f = fopen(path, "w")) == NULL)
        return tu_dev_fail("cannot write %s", path);
    fprintf(f, "%d", c->n);
    for (i = 0; i < c->n; i++)
        fprintf(f, " %d", c->port[i]);
    fprintf(f, "\n");
    fclose(f);
    return 0;
}

static void endpoints(tu_etcd *c)
{
    int i;

    c->endpoints[0] = '\0';
    for (i = 0; i < c->n; i++) {
        size_t l = strlen(c->endpoints);
        snprintf(c->endpoints + l, sizeof c->endpoints - l, "%s127.0.0.1:%d", i ? "," : "",
                 c->port[i]);
    }
}

int tu_etcd_load(tu_etcd *c, const char *dir)
{
    char path[700];
    FILE *f;
    int i;

    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(path, sizeof path, "%s/cluster", dir);
    if ((f = fopen(path, "r")) == NULL)
        return tu_dev_fail("no cluster recorded in %s", dir);
    if (fscanf(f, "%d", &c->n) != 1 || c->n < 1 || c->n > TU_ETCD_MAX) {
        fclose(f);
        return tu_dev_fail("bad %s", path);
    }
    for (i = 0; i < c->n; i++)
        if (fscanf(f, "%d", &c->port[i]) != 1) {
            fclose(f);
            return tu_dev_fail("bad %s", path);
        }
    fclose(f);
    endpoints(c);
    return 0;
}

int tu_etcd_start_tls(tu_etcd *c, const char *dir, int n, const char *pki)
{
    return start(c, dir, n, pki);
}

int tu_etcd_start(tu_etcd *c, const char *dir, int n)
{
    return start(c, dir, n, "");
}

static int start(tu_etcd *c, const char *dir, int n, const char *pki)
{
    int i, p;

    memset(c, 0, sizeof *c);
    snprintf(c->pki, sizeof c->pki, "%s", pki);
    if (n < 1 || n > TU_ETCD_MAX)
        return tu_dev_fail("1 to %d members", TU_ETCD_MAX);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tu_dev_fail("mkdir %s: %s", dir, strerror(errno));
    c->n = n;
    srand((unsigned)getpid() ^ (unsigned)now_ms());
    p = 20000 + 2 * (rand() % 15000);
    for (i = 0; i < n; i++) {
        int tries = 0;
        while (!(tu_dev_port_free(p) && tu_dev_port_free(p + 1))) {
            p += 2;
            if (p > 64000)
                p = 20000;
            if (++tries > 5000)
                return tu_dev_fail("no free port pair on 127.0.0.1");
        }
        c->port[i] = p;
        p += 2;
    }
    endpoints(c);
    if (save(c) != 0)
        return -1;
    for (i = 0; i < n; i++)
        if (tu_etcd_member_start(c, i) != 0) {
            tu_etcd_stop(c);
            return -1;
        }
    if (tu_etcd_wait_healthy(c, 20000) != 0) {
        tu_etcd_stop(c);
        return -1;
    }
    return 0;
}

void tu_etcd_stop(const tu_etcd *c)
{
    int i;

    for (i = 0; i < c->n; i++)
        (void)tu_etcd_member_kill(c, i);
}
