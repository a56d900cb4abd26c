/* testdev.h - the devices the backend tests run against, started per test:
 * a SoftHSM2 installation with its own configuration and token directory, and
 * swtpm (TPM 2.0 simulator) instances on free 127.0.0.1 port pairs, stopped
 * by their recorded PIDs. No Check dependency (the benchmarks use it too):
 * every function returns 0 on success and -1 with tu_dev_error() saying why;
 * testutil.h has the asserting forms the Check suites use. */
#ifndef KM_TESTDEV_H
#define KM_TESTDEV_H

#include <sys/types.h>

#define TU_P11_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TU_P11_SO_PIN "1234"

/* Why the last tu_dev_* call of this process failed. */
const char *tu_dev_error(void);
/* Records why a call failed (for tu_dev_error); returns -1. For helpers of
 * other services built on these (tests/etcdtest.c). */
int tu_dev_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sleeps ms milliseconds. */
void tu_dev_sleep_ms(long ms);

/* ---------------------------------------------------------- SoftHSM2 */

/* A SoftHSM2 installation of one test: its own configuration file and token
 * directory inside the test's directory, named by SOFTHSM2_CONF. */
typedef struct tu_softhsm {
    char conf[4200];     /* DIR/softhsm2.conf */
    char tokdir[4200];   /* DIR/tok */
} tu_softhsm;

/* 1 when the module and softhsm2-util are there; otherwise prints why
 * (naming `who`) and returns 0: the caller then fails, never skips. */
int tu_softhsm_installed(const char *who);
/* Makes DIR/tok and DIR/softhsm2.conf and exports SOFTHSM2_CONF. */
int tu_dev_softhsm_setup(tu_softhsm *t, const char *dir);
/* Initialises a token `label` with `so_pin` and user PIN `pin` in the first
 * free slot of the current SOFTHSM2_CONF. */
int tu_dev_softhsm_token(const char *label, const char *so_pin, const char *pin);
/* Unsets SOFTHSM2_CONF (the files go with the test's directory). */
void tu_softhsm_cleanup(tu_softhsm *t);

/* ------------------------------------------------------------- swtpm */

/* A swtpm of one test, on 127.0.0.1. */
typedef struct tu_swtpm {
    char dir[512];       /* state directory (its own; holds the pid file) */
    int port;            /* server port; control on port + 1; 0: pick a free pair */
    pid_t pid;           /* 0 when stopped */
    char tcti[128];      /* swtpm:host=127.0.0.1,port=P */
    char config[160];    /* tcti=... for km_vault_backend_set */
} tu_swtpm;

/* 1 when swtpm and the tpm2-tools used here are installed; otherwise prints
 * why (naming `who`) and returns 0: the caller then fails, never skips. */
int tu_swtpm_installed(const char *who);
/* 1 when port is free on 127.0.0.1 (a bind succeeds). */
int tu_dev_port_free(int port);
/* A free port P with P + 1 free too, on 127.0.0.1; 0 when none was found. */
int tu_dev_free_port_pair(void);
/* 1 when process `pid` still runs a command line containing `a` (and `b`
 * when not NULL): a recorded PID is ours before it is signalled, not reused. */
int tu_pid_runs(pid_t pid, const char *a, const char *b);
/* Makes the state directory PARENT/NAME (t zeroed first) and starts a swtpm
 * there on a free port pair (tu_dev_swtpm_start). */
int tu_dev_swtpm_make(tu_swtpm *t, const char *parent, const char *name);
/* Starts swtpm on t->dir and t->port (a free pair chosen when port is 0),
 * records its PID, waits until it answers, and sets a short
 * dictionary-attack lockout (an unclean stop counts as a failure). */
int tu_dev_swtpm_start(tu_swtpm *t);
/* Orderly stop: TPM2_Shutdown, then SIGTERM to the recorded PID; waits until
 * it and its ports are gone. No connection may be open. Stopped: nothing. */
int tu_dev_swtpm_stop(tu_swtpm *t);
/* SIGKILL to the recorded PID; waits until it and its ports are gone. */
int tu_dev_swtpm_kill(tu_swtpm *t);
/* Runs a tpm2-tools command line against t (TPM2TOOLS_TCTI). */
int tu_dev_swtpm_tools(const tu_swtpm *t, const char *args);

/* Check runs every test in a forked child, and a failed assertion ends it
 * without its teardown: a swtpm it started (a daemon) would run on. So every
 * started swtpm is recorded in a registry directory (REG/swtpm.PID), which is
 * also the TMPDIR of the tests. tu_swtpm_registry makes it (in main, before
 * the runner; 0 on success); tu_swtpm_reap stops every swtpm still recorded
 * (checked through /proc to be ours), removes the registry and returns how
 * many it stopped. Without a registry nothing is recorded. */
int tu_swtpm_registry(const char *who);
int tu_swtpm_reap(const char *who);

#endif
