/* testdev.c - SoftHSM2 tokens and swtpm instances for the tests (testdev.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testdev.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
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

static char dev_err[512];

const char *tu_dev_error(void)
{
    return dev_err;
}

/* Records why a call failed; returns -1 (exported for tests/etcdtest.c;
 * this file calls it dev_fail). */
#define dev_fail tu_dev_fail
int tu_dev_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dev_err, sizeof dev_err, fmt, ap);
    va_end(ap);
    return -1;
}

static void dev_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

void tu_dev_sleep_ms(long ms)
{
    dev_sleep_ms(ms);
}

static int dev_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* ---------------------------------------------------------- SoftHSM2 */

int tu_softhsm_installed(const char *who)
{
    if (access(TU_P11_MODULE, R_OK) == 0 && system("softhsm2-util --version >/dev/null 2>&1") == 0)
        return 1;
    /* never a silent skip: the build asked for the PKCS#11 backend */
    fprintf(stderr, "%s: SoftHSM2 (%s, softhsm2-util) is not installed (apt-get install "
            "softhsm2): FAILED\n", who, TU_P11_MODULE);
    return 0;
}

int tu_dev_softhsm_setup(tu_softhsm *t, const char *dir)
{
    FILE *f;

    snprintf(t->tokdir, sizeof t->tokdir, "%s/tok", dir);
    if (mkdir(t->tokdir, 0700) != 0)
        return dev_fail("mkdir %s: %s", t->tokdir, strerror(errno));
    snprintf(t->conf, sizeof t->conf, "%s/softhsm2.conf", dir);
    if ((f = fopen(t->conf, "w")) == NULL)
        return dev_fail("cannot write %s: %s", t->conf, strerror(errno));
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
            t->tokdir);
    if (fclose(f) != 0)
        return dev_fail("cannot write %s", t->conf);
    if (setenv("SOFTHSM2_CONF", t->conf, 1) != 0)
        return dev_fail("setenv SOFTHSM2_CONF failed");
    return 0;
}

int tu_dev_softhsm_token(const char *label, const char *so_pin, const char *pin)
{
    char cmd[512];

    snprintf(cmd, sizeof cmd, "softhsm2-util --init-token --free --label %s --so-pin %s "
             "--pin %s >/dev/null", label, so_pin, pin);
    if (system(cmd) != 0)
        return dev_fail("softhsm2-util --init-token --label %s failed", label);
    return 0;
}

void tu_softhsm_cleanup(tu_softhsm *t)
{
    (void)t;
    unsetenv("SOFTHSM2_CONF");
}

/* ------------------------------------------------------------- swtpm */

static int port_bind(int port, int do_connect)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (do_connect)
        ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    else
        ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* 1 when nothing listens on `port` and it can be bound. */
static int port_free(int port)
{
    return port_bind(port, 0);
}

int tu_dev_port_free(int port)
{
    return port_free(port);
}

/* 1 when something accepts connections on `port`. */
static int port_open(int port)
{
    return port_bind(port, 1);
}

static int pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

int tu_swtpm_installed(const char *who)
{
    if (system("command -v swtpm >/dev/null 2>&1 && command -v tpm2_shutdown >/dev/null 2>&1 "
               "&& command -v tpm2_dictionarylockout >/dev/null 2>&1") == 0)
        return 1;
    /* never a silent skip: the build asked for the TPM backend */
    fprintf(stderr, "%s: swtpm or tpm2-tools not installed (apt-get install swtpm "
                    "swtpm-tools tpm2-tools): FAILED\n", who);
    return 0;
}

int tu_dev_free_port_pair(void)
{
    int i;

    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (i = 0; i < 200; i++) {
        int p = 20000 + 2 * (rand() % 15000);
        if (port_free(p) && port_free(p + 1))
            return p;
    }
    (void)dev_fail("no free port pair on 127.0.0.1");
    return 0;
}

static char reg_dir[4096];

static void reg_path(pid_t pid, char *out, size_t cap)
{
    snprintf(out, cap, "%s/swtpm.%d", reg_dir, (int)pid);
}

static int reg_add(pid_t pid, const char *state_dir)
{
    char path[4200];
    FILE *f;

    if (reg_dir[0] == '\0')
        return 0;
    reg_path(pid, path, sizeof path);
    if ((f = fopen(path, "w")) == NULL)
        return dev_fail("cannot record swtpm %d in %s", (int)pid, reg_dir);
    fprintf(f, "%s\n", state_dir);
    fclose(f);
    return 0;
}

static void reg_remove(pid_t pid)
{
    char path[4200];

    if (reg_dir[0] == '\0')
        return;
    reg_path(pid, path, sizeof path);
    (void)unlink(path);
}

int tu_pid_runs(pid_t pid, const char *a, const char *b)
{
    char path[64], buf[8192];
    size_t n, i;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return strstr(buf, a) != NULL && (b == NULL || strstr(buf, b) != NULL);
}

/* True when `pid` is still a swtpm serving state_dir (not a reused PID). */
static int is_our_swtpm(pid_t pid, const char *state_dir)
{
    return tu_pid_runs(pid, "swtpm", state_dir);
}

int tu_swtpm_registry(const char *who)
{
    const char *base = getenv("TMPDIR");

    snprintf(reg_dir, sizeof reg_dir, "%s/km-%s.XXXXXX", base && *base ? base : "/tmp", who);
    if (mkdtemp(reg_dir) == NULL) {
        fprintf(stderr, "%s: mkdtemp: %s\n", who, strerror(errno));
        reg_dir[0] = '\0';
        return -1;
    }
    setenv("TMPDIR", reg_dir, 1);   /* every test's directory is made in it */
    return 0;
}

int tu_swtpm_reap(const char *who)
{
    DIR *d;
    struct dirent *e;
    int found = 0;

    if (reg_dir[0] == '\0' || (d = opendir(reg_dir)) == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[4200], state_dir[600] = "";
        FILE *f;
        int pid, i;

        if (sscanf(e->d_name, "swtpm.%d", &pid) != 1 || pid <= 0)
            continue;
        reg_path(pid, path, sizeof path);
        if ((f = fopen(path, "r")) != NULL) {
            if (fgets(state_dir, sizeof state_dir, f) != NULL)
                state_dir[strcspn(state_dir, "\n")] = '\0';
            fclose(f);
        }
        if (state_dir[0] != '\0' && is_our_swtpm(pid, state_dir)) {
            found++;
            fprintf(stderr, "%s: stopping swtpm %d left running by a failed test\n", who, pid);
            kill(pid, SIGTERM);
            for (i = 0; i < 200 && is_our_swtpm(pid, state_dir); i++)
                dev_sleep_ms(10);
            if (is_our_swtpm(pid, state_dir))
                kill(pid, SIGKILL);
        }
        (void)unlink(path);
    }
    closedir(d);
    nftw(reg_dir, dev_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return found;
}

int tu_dev_swtpm_tools(const tu_swtpm *t, const char *args)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd, "TPM2TOOLS_TCTI='%s' %s >/dev/null 2>&1", t->tcti, args);
    if (system(cmd) != 0)
        return dev_fail("failed: %s", args);
    return 0;
}

int tu_dev_swtpm_make(tu_swtpm *t, const char *parent, const char *name)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/%s", parent, name);
    if (mkdir(t->dir, 0700) != 0)
        return dev_fail("mkdir %s: %s", t->dir, strerror(errno));
    return tu_dev_swtpm_start(t);
}

int tu_dev_swtpm_start(tu_swtpm *t)
{
    char cmd[2048], pidpath[600];
    FILE *f;
    int i;

    if (t->port == 0) {
        if ((t->port = tu_dev_free_port_pair()) == 0)
            return -1;
        snprintf(t->tcti, sizeof t->tcti, "swtpm:host=127.0.0.1,port=%d", t->port);
        snprintf(t->config, sizeof t->config, "tcti=%s", t->tcti);
    }
    snprintf(pidpath, sizeof pidpath, "%s/pid", t->dir);
    snprintf(cmd, sizeof cmd,
             "swtpm socket --tpm2 --tpmstate dir=%s --server type=tcp,port=%d,bindaddr=127.0.0.1 "
             "--ctrl type=tcp,port=%d,bindaddr=127.0.0.1 --flags not-need-init,startup-clear "
             "--pid file=%s --daemon",
             t->dir, t->port, t->port + 1, pidpath);
    if (system(cmd) != 0)
        return dev_fail("swtpm did not start on port %d", t->port);
    t->pid = 0;
    for (i = 0; i < 500 && t->pid == 0; i++) {
        f = fopen(pidpath, "r");
        if (f != NULL) {
            int pid = 0;
            if (fscanf(f, "%d", &pid) == 1)
                t->pid = pid;
            fclose(f);
        }
        if (t->pid == 0)
            dev_sleep_ms(10);
    }
    if (t->pid <= 0)
        return dev_fail("swtpm wrote no pid to %s", pidpath);
    if (reg_add(t->pid, t->dir) != 0)
        return -1;
    for (i = 0; i < 500 && !port_open(t->port); i++)
        dev_sleep_ms(10);
    /* test TPMs: no long dictionary-attack lockouts (an unclean stop counts as a failure) */
    return tu_dev_swtpm_tools(t, "tpm2_dictionarylockout --setup-parameters --max-tries=1000 "
                                 "--recovery-time=1 --lockout-recovery-time=1");
}

static int swtpm_wait_gone(tu_swtpm *t)
{
    int i;

    for (i = 0; i < 500 && pid_alive(t->pid); i++)
        dev_sleep_ms(10);
    if (pid_alive(t->pid))
        return dev_fail("swtpm %d did not stop", (int)t->pid);
    reg_remove(t->pid);
    for (i = 0; i < 500 && !port_free(t->port); i++)
        dev_sleep_ms(10);
    t->pid = 0;
    return 0;
}

int tu_dev_swtpm_stop(tu_swtpm *t)
{
    if (t->pid == 0)
        return 0;
    if (tu_dev_swtpm_tools(t, "tpm2_shutdown") != 0)
        return -1;
    kill(t->pid, SIGTERM);
    return swtpm_wait_gone(t);
}

int tu_dev_swtpm_kill(tu_swtpm *t)
{
    kill(t->pid, SIGKILL);
    return swtpm_wait_gone(t);
}
