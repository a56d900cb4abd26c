/* testutil.c - the fixtures shared by the Check suites (testutil.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *d;
    snprintf(tmpl, sizeof tmpl, "%s/km-test.XXXXXX", base && *base ? base : "/tmp");
    d = mkdtemp(tmpl);
    ck_assert_msg(d != NULL, "mkdtemp failed");
    return strdup(d);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

int tu_memmem(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len)
{
    return memmem(hay, hay_len, needle, needle_len) != NULL;
}

uint8_t *tu_unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex), i;
    uint8_t *out;
    if (n % 2)
        return NULL;
    out = malloc(n / 2 + 1);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return out;
}

int tu_all_zero(const uint8_t *p, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

void tu_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

void tu_guard_new(tu_guard *g, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;

    if (data_pages == 0)
        data_pages = 1;
    g->map_len = (data_pages + 1) * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(g->map != MAP_FAILED, "mmap failed");
    ck_assert_int_eq(mprotect(g->map + data_pages * page, page, PROT_NONE), 0);
    g->p = g->map + data_pages * page - len;
    g->len = len;
}

void tu_guard_copy(tu_guard *g, const void *data, size_t len)
{
    tu_guard_new(g, len);
    if (len > 0)
        memcpy(g->p, data, len);
}

void tu_guard_free(tu_guard *g)
{
    if (g->map != NULL)
        munmap(g->map, g->map_len);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------- clock */

int64_t tu_now = TU_NOW_START;

int64_t tu_clock(void *arg)
{
    (void)arg;
    return tu_now;
}

/* ------------------------------------------------------------ vaults */

void tu_vault_uri(char *out, size_t cap, const char *dir)
{
    snprintf(out, cap, "lmdb:%s/vault", dir);
}

int tu_vault_open_with(km_ctx **out, const char *dir, const tu_open *t)
{
    char uri[4200];
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    const char *pass = t->pass;

    if (pass == NULL && t->slot_backend == NULL && t->shares == NULL)
        pass = TU_PASS;
    tu_vault_uri(uri, sizeof uri, dir);
    o.flags = t->flags;
    if (pass != NULL) {
        o.passphrase = (const uint8_t *)pass;
        o.passphrase_len = strlen(pass);
    }
    o.kdf_cost = KM_KDF_COST_MIN;
    o.principal = t->principal;
    o.clock = t->clock;
    o.clock_arg = t->clock_arg;
    o.slot_backend = t->slot_backend;
    o.slot_config = t->slot_config;
    o.key_cache_max = t->key_cache_max;
    o.shares = t->shares;
    o.share_count = t->share_count;
    o.refresh_ms = t->refresh_ms;
    return km_open(out, uri, &o);
}

int tu_vault_open(km_ctx **out, const char *dir, const char *pass, uint32_t flags)
{
    tu_open o = TU_OPEN_INIT;
    o.pass = pass;
    o.flags = flags;
    return tu_vault_open_with(out, dir, &o);
}

int tu_vault_open_as(km_ctx **out, const char *dir, const char *who, const char *pass,
                     uint32_t flags)
{
    tu_open o = TU_OPEN_INIT;
    o.principal = who;
    o.pass = pass;
    o.flags = flags;
    o.clock = tu_clock;
    return tu_vault_open_with(out, dir, &o);
}

int tu_vault_open_slot(km_ctx **out, const char *dir, const char *backend, const char *config)
{
    tu_open o = TU_OPEN_INIT;
    o.slot_backend = backend;
    o.slot_config = config;
    return tu_vault_open_with(out, dir, &o);
}

km_ctx *tu_as(const char *dir, const char *who, const char *pass)
{
    km_ctx *ctx = NULL;
    int rc = tu_vault_open_as(&ctx, dir, who, pass, 0);
    ck_assert_msg(rc == KM_OK, "opening as %s: %s (%s)", who, km_err_name(rc),
                  km_error_last()->message);
    return ctx;
}

static km_ctx *vault_new(const char *dir, const tu_open *t)
{
    km_ctx *ctx = NULL;
    tu_open o = *t;
    int rc;

    o.flags |= KM_OPEN_CREATE;
    rc = tu_vault_open_with(&ctx, dir, &o);
    ck_assert_msg(rc == KM_OK, "km_open: %s (%s)", km_err_name(rc), km_error_last()->message);
    return ctx;
}

km_ctx *tu_vault(const char *dir)
{
    tu_open o = TU_OPEN_INIT;
    return vault_new(dir, &o);
}

km_ctx *tu_vault_clocked(const char *dir, uint32_t flags)
{
    tu_open o = TU_OPEN_INIT;
    o.flags = flags;
    o.clock = tu_clock;
    return vault_new(dir, &o);
}

void tu_setup(char **dir, km_ctx **ctx, const tu_open *o)
{
    tu_open def = TU_OPEN_INIT;

    tu_now = TU_NOW_START;
    *dir = tu_tmpdir();
    if (ctx != NULL)
        *ctx = vault_new(*dir, o != NULL ? o : &def);
}

void tu_teardown(char **dir, km_ctx **ctx)
{
    if (ctx != NULL) {
        km_close(*ctx);
        *ctx = NULL;
    }
    tu_rmtree(*dir);
    free(*dir);
    *dir = NULL;
}

/* -------------------------------------------------------- principals */

int tu_principal_add(km_ctx *ctx, const char *name, uint32_t roles, const char *pass)
{
    return km_principal_add(ctx, name, roles, (const uint8_t *)pass, strlen(pass),
                            KM_KDF_COST_MIN);
}

void tu_principals_add(km_ctx *ctx)
{
    TU_OK(tu_principal_add(ctx, TU_ADMIN, KM_ROLE_ADMIN, TU_ADMIN_PASS));
    TU_OK(tu_principal_add(ctx, TU_CUST1, KM_ROLE_CUSTODIAN, TU_CUST1_PASS));
    TU_OK(tu_principal_add(ctx, TU_CUST2, KM_ROLE_CUSTODIAN, TU_CUST2_PASS));
    TU_OK(tu_principal_add(ctx, TU_USER, KM_ROLE_USER, TU_USER_PASS));
    TU_OK(tu_principal_add(ctx, TU_AUDITOR, KM_ROLE_AUDITOR, TU_AUDITOR_PASS));
}

/* ------------------------------------------------------------ suites */

TCase *tu_tcase(Suite *s, const char *name, double timeout, SFun setup, SFun teardown)
{
    TCase *tc = tcase_create(name);

    if (setup != NULL || teardown != NULL)
        tcase_add_checked_fixture(tc, setup, teardown);
    if (timeout > 0)
        tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

Suite *tu_suite(const char *name, const char *tcase, TCase **tc, double timeout, SFun setup,
                SFun teardown)
{
    Suite *s = suite_create(name);

    *tc = tu_tcase(s, tcase != NULL ? tcase : name, timeout, setup, teardown);
    return s;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---------------------------------------------------------- SoftHSM2 */

int tu_softhsm_installed(const char *suite)
{
    if (access(TU_P11_MODULE, R_OK) == 0 && system("softhsm2-util --version >/dev/null 2>&1") == 0)
        return 1;
    /* never a silent skip: the build asked for the PKCS#11 backend */
    fprintf(stderr, "%s: SoftHSM2 (%s, softhsm2-util) is not installed (apt-get install "
            "softhsm2): FAILED\n", suite, TU_P11_MODULE);
    return 0;
}

void tu_softhsm_setup(tu_softhsm *t, const char *dir)
{
    FILE *f;

    snprintf(t->tokdir, sizeof t->tokdir, "%s/tok", dir);
    ck_assert_msg(mkdir(t->tokdir, 0700) == 0, "mkdir %s", t->tokdir);
    snprintf(t->conf, sizeof t->conf, "%s/softhsm2.conf", dir);
    f = fopen(t->conf, "w");
    ck_assert_msg(f != NULL, "cannot write %s", t->conf);
    fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
            t->tokdir);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(setenv("SOFTHSM2_CONF", t->conf, 1), 0);
}

void tu_softhsm_token(const char *label, const char *pin)
{
    char cmd[512];

    snprintf(cmd, sizeof cmd, "softhsm2-util --init-token --free --label %s --so-pin %s "
             "--pin %s >/dev/null", label, TU_P11_SO_PIN, pin);
    ck_assert_msg(system(cmd) == 0, "softhsm2-util --init-token --label %s failed", label);
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

/* 1 when something accepts connections on `port`. */
static int port_open(int port)
{
    return port_bind(port, 1);
}

static int pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

int tu_swtpm_installed(const char *suite)
{
    if (system("command -v swtpm >/dev/null 2>&1 && command -v tpm2_shutdown >/dev/null 2>&1 "
               "&& command -v tpm2_dictionarylockout >/dev/null 2>&1") == 0)
        return 1;
    /* never a silent skip: the build asked for the TPM backend */
    fprintf(stderr, "%s: swtpm or tpm2-tools not installed (apt-get install swtpm "
                    "swtpm-tools tpm2-tools): FAILED\n", suite);
    return 0;
}

int tu_free_port_pair(void)
{
    int i;

    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (i = 0; i < 200; i++) {
        int p = 20000 + 2 * (rand() % 15000);
        if (port_free(p) && port_free(p + 1))
            return p;
    }
    ck_abort_msg("no free port pair on 127.0.0.1");
    return 0;
}

static char reg_dir[4096];

static void reg_path(pid_t pid, char *out, size_t cap)
{
    snprintf(out, cap, "%s/swtpm.%d", reg_dir, (int)pid);
}

static void reg_add(pid_t pid, const char *state_dir)
{
    char path[4200];
    FILE *f;

    if (reg_dir[0] == '\0')
        return;
    reg_path(pid, path, sizeof path);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot record swtpm %d in %s", (int)pid, reg_dir);
    fprintf(f, "%s\n", state_dir);
    fclose(f);
}

static void reg_remove(pid_t pid)
{
    char path[4200];

    if (reg_dir[0] == '\0')
        return;
    reg_path(pid, path, sizeof path);
    (void)unlink(path);
}

/* True when `pid` is still a swtpm serving state_dir (not a reused PID). */
static int is_our_swtpm(pid_t pid, const char *state_dir)
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
    return strstr(buf, "swtpm") != NULL && strstr(buf, state_dir) != NULL;
}

int tu_swtpm_registry(const char *suite)
{
    const char *base = getenv("TMPDIR");

    snprintf(reg_dir, sizeof reg_dir, "%s/km-%s.XXXXXX", base && *base ? base : "/tmp", suite);
    if (mkdtemp(reg_dir) == NULL) {
        fprintf(stderr, "%s: mkdtemp: %s\n", suite, strerror(errno));
        reg_dir[0] = '\0';
        return -1;
    }
    setenv("TMPDIR", reg_dir, 1);   /* every test's directory is made in it */
    return 0;
}

int tu_swtpm_reap(const char *suite)
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
            fprintf(stderr, "%s: stopping swtpm %d left running by a failed test\n", suite, pid);
            kill(pid, SIGTERM);
            for (i = 0; i < 200 && is_our_swtpm(pid, state_dir); i++)
                tu_sleep_ms(10);
            if (is_our_swtpm(pid, state_dir))
                kill(pid, SIGKILL);
        }
        (void)unlink(path);
    }
    closedir(d);
    tu_rmtree(reg_dir);
    return found;
}

void tu_swtpm_tools(const tu_swtpm *t, const char *args)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd, "TPM2TOOLS_TCTI='%s' %s >/dev/null 2>&1", t->tcti, args);
    if (system(cmd) != 0)
        ck_abort_msg("failed: %s", args);
}

void tu_swtpm_make(tu_swtpm *t, const char *parent, const char *name)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/%s", parent, name);
    ck_assert_int_eq(mkdir(t->dir, 0700), 0);
    tu_swtpm_start(t);
}

void tu_swtpm_start(tu_swtpm *t)
{
    char cmd[2048], pidpath[600];
    FILE *f;
    int i;

    if (t->port == 0) {
        t->port = tu_free_port_pair();
        snprintf(t->tcti, sizeof t->tcti, "swtpm:host=127.0.0.1,port=%d", t->port);
        snprintf(t->config, sizeof t->config, "tcti=%s", t->tcti);
    }
    snprintf(pidpath, sizeof pidpath, "%s/pid", t->dir);
    snprintf(cmd, sizeof cmd,
             "swtpm socket --tpm2 --tpmstate dir=%s --server type=tcp,port=%d,bindaddr=127.0.0.1 "
             "--ctrl type=tcp,port=%d,bindaddr=127.0.0.1 --flags not-need-init,startup-clear "
             "--pid file=%s --daemon",
             t->dir, t->port, t->port + 1, pidpath);
    ck_assert_int_eq(system(cmd), 0);
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
            tu_sleep_ms(10);
    }
    ck_assert_int_gt(t->pid, 0);
    reg_add(t->pid, t->dir);
    for (i = 0; i < 500 && !port_open(t->port); i++)
        tu_sleep_ms(10);
    /* test TPMs: no long dictionary-attack lockouts (an unclean stop counts as a failure) */
    tu_swtpm_tools(t, "tpm2_dictionarylockout --setup-parameters --max-tries=1000 "
                      "--recovery-time=1 --lockout-recovery-time=1");
}

static void swtpm_wait_gone(tu_swtpm *t)
{
    int i;

    for (i = 0; i < 500 && pid_alive(t->pid); i++)
        tu_sleep_ms(10);
    ck_assert_msg(!pid_alive(t->pid), "swtpm %d did not stop", (int)t->pid);
    reg_remove(t->pid);
    for (i = 0; i < 500 && !port_free(t->port); i++)
        tu_sleep_ms(10);
    t->pid = 0;
}

void tu_swtpm_stop(tu_swtpm *t)
{
    if (t->pid == 0)
        return;
    tu_swtpm_tools(t, "tpm2_shutdown");
    kill(t->pid, SIGTERM);
    swtpm_wait_gone(t);
}

void tu_swtpm_kill(tu_swtpm *t)
{
    kill(t->pid, SIGKILL);
    swtpm_wait_gone(t);
}
