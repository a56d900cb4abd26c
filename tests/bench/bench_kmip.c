/* bench_kmip.c - the kmip-encrypt pair of `make bench`: libkm's kmip backend
 * (km_encrypt of 64 bytes through a KMIP server) against PyKMIP's own client
 * doing the same AES-GCM Encrypt on the same server and key
 * (tests/kmip/bench_raw.py), one persistent connection each. The PyKMIP
 * server, its certificates (tests/kmip/pykmip.sh) and a vault are made in the
 * scratch directory; the server is stopped by its PID at the end.
 * Prints the pair's BENCH line (operations per second) and
 *   BENCH kmip-encrypt-cpu km_us=... raw_us=...
 * the client CPU time per operation (getrusage of this process for libkm; the
 * Python client's own process time for PyKMIP). */
#include "bench_hw.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <km.h>

#include "benchutil.h"

#ifndef KM_KMIP_TESTDIR
#define KM_KMIP_TESTDIR "tests/kmip"
#endif
#define PYTHON "/usr/bin/python3"

typedef struct kmip_km {
    km_key *key;
    uint8_t msg[64], out[64 + 64];
    double cpu;   /* seconds of this process's CPU in the calls */
    uint64_t ops;
} kmip_km;

typedef struct kmip_raw {
    FILE *to, *from;
    pid_t pid;
    double cpu;
    uint64_t ops;
} kmip_raw;

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec
           + ru.ru_stime.tv_usec / 1e6;
}

static int km_kmip_encrypt(void *arg, uint64_t n)
{
    kmip_km *k = arg;
    double c0 = cpu_now();
    size_t len;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_encrypt(k->key, k->msg, sizeof k->msg, NULL, 0, k->out, sizeof k->out,
                               &len));
    k->cpu += cpu_now() - c0;
    k->ops += n;
    return 0;
}

static int raw_kmip_encrypt(void *arg, uint64_t n)
{
    kmip_raw *r = arg;
    char line[128];
    double cpu = 0;

    fprintf(r->to, "%llu\n", (unsigned long long)n);
    fflush(r->to);
    if (fgets(line, sizeof line, r->from) == NULL || sscanf(line, "ok %lf", &cpu) != 1)
        bench_die("bench_raw.py failed");
    r->cpu += cpu;
    r->ops += n;
    return 0;
}

static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int port_open(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Runs `argv` with pipes to its stdin and from its stdout. */
static pid_t spawn(char *const argv[], FILE **to, FILE **from)
{
    int in[2], out[2];
    pid_t pid;

    if (pipe(in) != 0 || pipe(out) != 0)
        bench_die("pipe failed");
    pid = fork();
    if (pid < 0)
        bench_die("fork failed");
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *to = fdopen(in[1], "w");
    *from = fdopen(out[0], "r");
    return pid;
}

static void stop(pid_t pid)
{
    int st, i;
    kill(pid, SIGTERM);
    for (i = 0; i < 400 && waitpid(pid, &st, WNOHANG) != pid; i++)
        usleep(50000);
    if (i == 400) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
}

void bench_hw_kmip(const char *dir, bench_pair_fn pair)
{
    char pki[1024], cmd[8192], conf[1100], log[1100], vdir[4300], config[4096], uid[64],
        port_s[16], crt[1100], key[1100];
    km_key_options o = KM_KEY_OPTIONS_INIT;
    kmip_km k;
    kmip_raw r;
    km_ctx *ctx;
    pid_t server;
    FILE *p;
    int port, i;

    if (access("/usr/bin/pykmip-server", X_OK) != 0
        || system(PYTHON " -c 'import kmip.pie.client' 2>/dev/null") != 0) {
        printf("BENCH kmip-encrypt skipped=pykmip-not-installed\n");
        return;
    }
    if ((size_t)snprintf(pki, sizeof pki, "%s/kmip", dir) >= sizeof pki)
        bench_die("the scratch directory's path is too long");
    port = free_port();
    snprintf(cmd, sizeof cmd, "mkdir -p %s && sh %s/pykmip.sh certs %s && sh %s/pykmip.sh conf %s %d",
             pki, KM_KMIP_TESTDIR, pki, KM_KMIP_TESTDIR, pki, port);
    if (port == 0 || system(cmd) != 0)
        bench_die("cannot make the KMIP test PKI");
    snprintf(conf, sizeof conf, "%s/server.conf", pki);
    snprintf(log, sizeof log, "%s/server.log", pki);
    server = fork();
    if (server < 0)
        bench_die("fork failed");
    if (server == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(PYTHON, PYTHON, "/usr/bin/pykmip-server", "-f", conf, "-l", log, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 600 && !port_open(port); i++)
        usleep(100000);
    if (i == 600)
        bench_die("pykmip-server did not start");

    snprintf(vdir, sizeof vdir, "%s/kmipvault", dir);
    ctx = bench_vault_open(vdir, 0);
    snprintf(config, sizeof config, "server=127.0.0.1:%d;ca=%s/ca.crt;cert=%s/client.crt;"
             "key=%s/client.key;version=1.4", port, pki, pki, pki);
    BENCH_CHECK(km_vault_backend_set(ctx, "kmip", config));
    o.protection = "kmip";
    memset(&k, 0, sizeof k);
    BENCH_CHECK(km_key_create(&k.key, ctx, "kmip-aes", KM_KEY_AES_256_GCM, &o));

    /* the same server key for PyKMIP's client: the newest object of this client */
    snprintf(cmd, sizeof cmd, PYTHON " %s/pykmip_client.py %s %d %s/client.crt %s/client.key "
             "newest -", KM_KMIP_TESTDIR, pki, port, pki, pki);
    p = popen(cmd, "r");
    if (p == NULL || fgets(uid, sizeof uid, p) == NULL)
        bench_die("cannot find the key on the server");
    pclose(p);
    uid[strcspn(uid, "\r\n")] = '\0';
    memset(&r, 0, sizeof r);
    snprintf(cmd, sizeof cmd, "%s/bench_raw.py", KM_KMIP_TESTDIR);
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(crt, sizeof crt, "%s/client.crt", pki);
    snprintf(key, sizeof key, "%s/client.key", pki);
    {
        char *argv[] = { (char *)PYTHON, cmd, pki, port_s, crt, key, uid, NULL };
        r.pid = spawn(argv, &r.to, &r.from);
    }
    pair("kmip-encrypt", km_kmip_encrypt, &k, raw_kmip_encrypt, &r);
    printf("BENCH kmip-encrypt-cpu km_us=%.1f raw_us=%.1f ratio=%.3f\n",
           k.ops ? k.cpu * 1e6 / (double)k.ops : 0.0, r.ops ? r.cpu * 1e6 / (double)r.ops : 0.0,
           r.cpu > 0 && k.ops && r.ops ? (k.cpu / (double)k.ops) / (r.cpu / (double)r.ops) : 0.0);
    fflush(stdout);
    fclose(r.to);
    fclose(r.from);
    waitpid(r.pid, NULL, 0);
    km_key_free(k.key);
    km_close(ctx);
    stop(server);
}
