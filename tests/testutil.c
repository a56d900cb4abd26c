/* testutil.c - the fixtures shared by the Check suites (testutil.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>

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
    const char *etcd = getenv("KM_TEST_ETCD");

    /* tests/etcd_suites.sh runs suites against an etcd cluster: one prefix
     * per temporary directory */
    if (etcd != NULL && etcd[0] != '\0')
        snprintf(out, cap, "etcd://%s/km-test%s/vault", etcd, dir);
    else
        snprintf(out, cap, "lmdb:%s/vault", dir);
}

int tu_vault_open_with(km_ctx **out, const char *dir, const tu_open *t)
{
    char uri[4200];
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    const char *pass = t->pass;
    int rc;

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
    rc = km_open(out, uri, &o);
    if (rc == KM_OK && t->clock != NULL && (t->flags & KM_OPEN_CREATE))
        tu_allow_test_clock(*out, (t->flags & KM_OPEN_FIPS) != 0);
    return rc;
}

void tu_allow_test_clock(km_ctx *ctx, int fips)
{
    char pol[4096];
    km_audit_head h;
    size_t n = 0;
    const char *doc = fips ? TU_POLICY_FIPS_TEST_CLOCK : TU_POLICY_TEST_CLOCK;

    /* only a vault just made: its policy is the one it was created with */
    TU_OK(km_policy_get(ctx, pol, sizeof pol, &n));
    if (strstr(pol, "\"caller_clock\"") != NULL)
        return;
    TU_OK(km_audit_head_get(ctx, &h));
    if (h.seq > 3)
        return;
    TU_OK(km_policy_set(ctx, doc, strlen(doc)));
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

/* ------------------------------------------------------------ devices */

void tu_softhsm_setup(tu_softhsm *t, const char *dir)
{
    ck_assert_msg(tu_dev_softhsm_setup(t, dir) == 0, "%s", tu_dev_error());
}

void tu_softhsm_token(const char *label, const char *pin)
{
    ck_assert_msg(tu_dev_softhsm_token(label, TU_P11_SO_PIN, pin) == 0, "%s", tu_dev_error());
}

int tu_free_port_pair(void)
{
    int p = tu_dev_free_port_pair();
    ck_assert_msg(p != 0, "%s", tu_dev_error());
    return p;
}

void tu_swtpm_make(tu_swtpm *t, const char *parent, const char *name)
{
    ck_assert_msg(tu_dev_swtpm_make(t, parent, name) == 0, "%s", tu_dev_error());
}

void tu_swtpm_start(tu_swtpm *t)
{
    ck_assert_msg(tu_dev_swtpm_start(t) == 0, "%s", tu_dev_error());
}

void tu_swtpm_stop(tu_swtpm *t)
{
    ck_assert_msg(tu_dev_swtpm_stop(t) == 0, "%s", tu_dev_error());
}

void tu_swtpm_kill(tu_swtpm *t)
{
    ck_assert_msg(tu_dev_swtpm_kill(t) == 0, "%s", tu_dev_error());
}

void tu_swtpm_tools(const tu_swtpm *t, const char *args)
{
    ck_assert_msg(tu_dev_swtpm_tools(t, args) == 0, "%s", tu_dev_error());
}

/* The devices' code (testdev.c, free of Check so that the benchmarks use it
 * too) is compiled here, as part of this file: every suite's source list,
 * some of them in the backends' make fragments, names testutil.c alone. */
void tu_kmd_spawn(const char *bin, const char *conf, const char *dir, const char *sock,
                  pid_t *pid)
{
    int i;
    unlink(sock);
    *pid = fork();
    ck_assert_int_ge(*pid, 0);
    if (*pid == 0) {
        char log[700];
        int fd;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(log, sizeof log, "%s/kmd.log", dir);
        if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0)
            dup2(fd, 2);
        execl(bin, "kmd", "--config", conf, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 200; i++) {
        struct stat st;
        int status;
        if (stat(sock, &st) == 0)
            return;
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = 0;
            ck_abort_msg("kmd exited at start (see %s/kmd.log)", dir);
        }
        tu_sleep_ms(50);
    }
    ck_abort_msg("kmd did not make its socket in 10 s");
}

#include "testdev.c"

static int audit_count_fn(const km_audit_entry *e, void *arg)
{
    const char **want = arg;
    if (strcmp(e->op, want[0]) == 0 && strstr(e->detail, want[1]) != NULL)
        (*(int *)(uintptr_t)want[2])++;
    return 0;
}

int tu_audit_count(km_ctx *c, const char *op, const char *detail)
{
    int n = 0;
    const char *want[3] = { op, detail, (const char *)(uintptr_t)&n };
    OK(km_audit_foreach(c, 1, audit_count_fn, want));
    return n;
}

int tu_wait_killed(int pid, unsigned long step)
{
    int st = 0;
    ck_assert_int_eq(waitpid((pid_t)pid, &st, 0), pid);
    if (WIFSIGNALED(st)) {
        ck_assert_int_eq(WTERMSIG(st), SIGKILL);
        return 1;
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "step %lu: exit %d", step,
                  WEXITSTATUS(st));
    return 0;
}

km_key_state tu_version_state(km_key *k, uint32_t version)
{
    km_keyinfo *info = NULL;
    km_version_info v;
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, version - 1, &v, sizeof v));
    km_keyinfo_free(info);
    return v.state;
}
