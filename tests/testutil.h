/* testutil.h - the fixtures shared by the Check suites: temporary directories
 * and vaults, the OK/RC assertions, a fake clock, the suite runner, and the
 * devices the backend suites test against (a SoftHSM2 token with its own
 * configuration, a swtpm on a free port pair, stopped by its recorded PID).
 *
 * Every helper fails the running test (a Check assertion) when it cannot do
 * its job, unless it says it returns a code. A missing SoftHSM2 or swtpm is
 * a failure of the suite (tu_softhsm_installed, tu_swtpm_installed in main),
 * never a skip. */
#ifndef KM_TESTUTIL_H
#define KM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include <km.h>

#include "testdev.h"

#define TU_PASS "test passphrase"

/* --------------------------------------------------------- assertions */

/* Asserts that `call` returns KM_OK; the failure names the call, the code
 * and libkm's last message. */
#define TU_OK(call)                                                                            \
    do {                                                                                       \
        int tu_rc_ = (call);                                                                   \
        ck_assert_msg(tu_rc_ == KM_OK, "%s: %s (%s)", #call, km_err_name(tu_rc_),             \
                      km_error_last()->message);                                               \
    } while (0)

/* Asserts that `call` returns `want` (a KM_ code). */
#define TU_RC(want, call)                                                                      \
    do {                                                                                       \
        int tu_rc_ = (call);                                                                   \
        ck_assert_msg(tu_rc_ == (want), "%s: %s, expected %s (%s)", #call, km_err_name(tu_rc_), \
                      km_err_name(want), km_error_last()->message);                            \
    } while (0)

/* The short names every suite uses (a suite that needs the names for
 * something else defines TU_NO_SHORT_NAMES before including this file). */
#ifndef TU_NO_SHORT_NAMES
#define OK(call) TU_OK(call)
#define RC(want, call) TU_RC(want, call)
#endif

/* ------------------------------------------------------ files and bytes */

/* Makes a fresh temporary directory (mkdtemp under $TMPDIR or /tmp); returns
 * a malloc'ed copy of its path, removed by tu_rmtree(). */
char *tu_tmpdir(void);
/* Removes a directory tree (NULL: nothing). */
void tu_rmtree(const char *path);
/* Reads a whole file; returns malloc'ed bytes and sets *len; NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Finds `needle` in `hay`; 1 if present. */
int tu_memmem(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len);
/* Decodes hex into a malloc'ed buffer (NULL for odd length or a bad digit). */
uint8_t *tu_unhex(const char *hex, size_t *len);
/* 1 when every byte is zero. */
int tu_all_zero(const uint8_t *p, size_t len);
/* Sleeps `ms` milliseconds. */
void tu_sleep_ms(long ms);

/* Starts kmd (the binary `bin`) with configuration `conf`, its stderr
 * appended to DIR/kmd.log, and waits up to 10 s for its socket `sock`: *pid
 * is its pid (it dies with the test process). The test fails if kmd exits at
 * start (*pid is then 0: already reaped) or makes no socket. */
void tu_kmd_spawn(const char *bin, const char *conf, const char *dir, const char *sock,
                  pid_t *pid);

/* A buffer whose last byte sits right before a PROT_NONE page: a read or
 * write past [p, p + len) faults. */
typedef struct tu_guard {
    uint8_t *map;
    size_t map_len;
    uint8_t *p;      /* the usable bytes: [p, p + len) ends at the PROT_NONE page */
    size_t len;
} tu_guard;
/* Maps a guarded buffer of `len` bytes (0 allowed). */
void tu_guard_new(tu_guard *g, size_t len);
/* As tu_guard_new, holding a copy of `data`. */
void tu_guard_copy(tu_guard *g, const void *data, size_t len);
/* Unmaps it (a zeroed tu_guard: nothing) and zeroes *g. */
void tu_guard_free(tu_guard *g);

/* ------------------------------------------------------------- clock */

/* The fake time of the suites that control the clock (seconds since the
 * epoch); tu_clock returns it (a km_clock_fn; its argument is unused). */
extern int64_t tu_now;
/* 2030-03-17, the fake "now" most suites start from. */
#define TU_NOW_START ((int64_t)1900000000)
int64_t tu_clock(void *arg);

/* ------------------------------------------------------------ vaults */

/* How tu_vault_open_with opens dir/vault (a zeroed struct, TU_OPEN_INIT, is
 * the usual case: an existing vault, TU_PASS, the system clock). */
typedef struct tu_open {
    uint32_t flags;            /* KM_OPEN_* */
    const char *pass;          /* NULL: TU_PASS, unless slot_backend or shares is set (then none) */
    const char *principal;     /* NULL: the owner */
    km_clock_fn clock;         /* NULL: the system clock */
    void *clock_arg;
    const char *slot_backend;  /* open through this backend's keyslot */
    const char *slot_config;
    uint32_t key_cache_max;
    const char *const *shares; /* open with these Shamir shares (pass must be NULL) */
    size_t share_count;
    uint32_t refresh_ms;       /* 0: libkm's default */
} tu_open;
#define TU_OPEN_INIT { 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, 0 }

/* The vault policy that lets a caller's clock (tu_clock) drive time
 * (testing.caller_clock, docs/POLICY.md), and the same with the FIPS
 * profile: a suite that sets its own policy and moves tu_now adds
 * TU_TEST_CLOCK to it. */
#define TU_TEST_CLOCK "\"testing\": {\"caller_clock\": true}"
#define TU_POLICY_TEST_CLOCK "{\"version\": 1, " TU_TEST_CLOCK "}"
#define TU_POLICY_FIPS_TEST_CLOCK "{\"version\": 1, \"profile\": \"fips\", " TU_TEST_CLOCK "}"
/* Sets TU_POLICY_TEST_CLOCK (or the FIPS one) on a vault just created (its
 * first entries); a vault whose policy names caller_clock, or that has more
 * history, is left alone. tu_vault_open_with calls it when it creates a
 * vault with a clock. */
void tu_allow_test_clock(km_ctx *ctx, int fips);

/* Writes "lmdb:DIR/vault", the vault URI every suite uses; with KM_TEST_ETCD
 * set (HOST:PORT,...: tests/etcd_suites.sh) an etcd:// URI whose prefix
 * names DIR instead. */
void tu_vault_uri(char *out, size_t cap, const char *dir);
/* Opens dir/vault as `o` says, with the cheapest scrypt cost; returns the km rc. */
int tu_vault_open_with(km_ctx **out, const char *dir, const tu_open *o);
/* As tu_vault_open_with with a passphrase, flags and otherwise the defaults. */
int tu_vault_open(km_ctx **out, const char *dir, const char *pass, uint32_t flags);
/* As tu_vault_open_with with principal `who` (NULL: the owner), `pass`,
 * `flags` and the fake clock tu_clock. */
int tu_vault_open_as(km_ctx **out, const char *dir, const char *who, const char *pass,
                     uint32_t flags);
/* Opens dir/vault with the keyslot of `backend` configured by `config` (no
 * passphrase); returns the km rc. */
int tu_vault_open_slot(km_ctx **out, const char *dir, const char *backend, const char *config);
/* Opens dir/vault as principal `who` with `pass` (flags 0, the fake clock
 * tu_clock); fails the test on error. */
km_ctx *tu_as(const char *dir, const char *who, const char *pass);
/* Opens (creating) a vault at dir/vault with TU_PASS; fails the test on error. */
km_ctx *tu_vault(const char *dir);
/* As tu_vault, with the fake clock tu_clock and extra KM_OPEN_* flags. */
km_ctx *tu_vault_clocked(const char *dir, uint32_t flags);

/* The fixture of most suites: a fresh temporary directory in *dir and, when
 * ctx is not NULL, a new vault in it (opened as `o` says, KM_OPEN_CREATE
 * added; o NULL: TU_PASS and the system clock). tu_now is reset to
 * TU_NOW_START. */
void tu_setup(char **dir, km_ctx **ctx, const tu_open *o);
/* Closes *ctx (ctx may be NULL), removes and frees *dir, and NULLs both. */
void tu_teardown(char **dir, km_ctx **ctx);

/* The fixture of the suites that need nothing else: declares the static
 * `dir` and `ctx` of the test and its setup()/teardown() (tu_setup with the
 * defaults, tu_teardown), to pass to tu_suite. */
#define TU_VAULT_FIXTURE                                                                       \
    static char *dir;                                                                          \
    static km_ctx *ctx;                                                                        \
    static void setup(void)                                                                    \
    {                                                                                          \
        tu_setup(&dir, &ctx, NULL);                                                            \
    }                                                                                          \
    static void teardown(void)                                                                 \
    {                                                                                          \
        tu_teardown(&dir, &ctx);                                                               \
    }

/* -------------------------------------------------------- principals */

/* The principals of the access-control suites, with their passphrases. */
#define TU_ADMIN "alice-admin"
#define TU_ADMIN_PASS "pa"
#define TU_CUST1 "carol-custodian"
#define TU_CUST1_PASS "pc1"
#define TU_CUST2 "dave-custodian"
#define TU_CUST2_PASS "pc2"
#define TU_USER "uma-user"
#define TU_USER_PASS "pu"
#define TU_AUDITOR "otto-auditor"
#define TU_AUDITOR_PASS "po"
/* Adds one principal with the cheapest scrypt cost; returns the km rc. */
int tu_principal_add(km_ctx *ctx, const char *name, uint32_t roles, const char *pass);
/* Adds the five principals above (admin, two custodians, user, auditor). */
void tu_principals_add(km_ctx *ctx);

/* ------------------------------------------------------------ suites */

/* A suite named `name` with one test case `tcase` (NULL: `name`), its
 * timeout (seconds; 0: Check's default) and, when setup or teardown is not NULL, a checked
 * fixture; *tc is the test case to add the tests to. */
Suite *tu_suite(const char *name, const char *tcase, TCase **tc, double timeout, SFun setup,
                SFun teardown);
/* One more test case `name` in suite `s`, with its timeout (0: Check's
 * default) and, when setup or teardown is not NULL, a checked fixture. */
TCase *tu_tcase(Suite *s, const char *name, double timeout, SFun setup, SFun teardown);
/* Runs `s` (CK_NORMAL) and frees the runner; EXIT_SUCCESS when every test passed. */
int tu_run(Suite *s);

/* ------------------------------------------------------------ devices */

/* testdev.h's SoftHSM2 and swtpm helpers, failing the test when they fail. */
void tu_softhsm_setup(tu_softhsm *t, const char *dir);
/* A token `label` with user PIN `pin` and SO PIN TU_P11_SO_PIN. */
void tu_softhsm_token(const char *label, const char *pin);
int tu_free_port_pair(void);
void tu_swtpm_make(tu_swtpm *t, const char *parent, const char *name);
void tu_swtpm_start(tu_swtpm *t);
void tu_swtpm_stop(tu_swtpm *t);
void tu_swtpm_kill(tu_swtpm *t);
void tu_swtpm_tools(const tu_swtpm *t, const char *args);

/* Audit entries of operation `op` whose detail holds `detail` (fails the
 * test when the log does not read). */
int tu_audit_count(km_ctx *c, const char *op, const char *detail);

/* Waits for child `pid` of a kill-at-every-step test (km__fault_arm): it
 * must exit 0 or die of SIGKILL (fails the test naming `step` otherwise).
 * 1 when it was killed. */
int tu_wait_killed(int pid, unsigned long step);
/* The state of version `version` (1-based) of key k, read now. */
km_key_state tu_version_state(km_key *k, uint32_t version);

#endif
