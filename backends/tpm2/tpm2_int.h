/*
 * tpm2_int.h - internals of the TPM 2.0 backend (backends/tpm2/), shared by
 * the connection layer (tpm2_conn.c) and the key operations (tpm2.c).
 */
#ifndef KM_TPM2_INT_H
#define KM_TPM2_INT_H

#include "km_int.h"

#include <tss2/tss2_esys.h>

/*
 * One connection to a TPM, shared process-wide by every vault whose tpm2
 * configuration names the same TCTI (swtpm and a bare /dev/tpm0 serve one
 * connection at a time). All TPM access is serialised by its mutex. The
 * storage primary is kept loaded (one of swtpm's 3 transient slots), and the
 * key object used last (a second slot); every other transient handle is
 * flushed before the operation returns, so at most three are ever loaded.
 */
typedef struct km__tpm2_conn {
    struct km__tpm2_conn *next;
    char *tcti;              /* TCTI configuration string; "" = the tctildr default */
    unsigned refs;
    pthread_mutex_t mu;
    TSS2_TCTI_CONTEXT *tcti_ctx;
    ESYS_CONTEXT *esys;      /* NULL when not connected */
    ESYS_TR primary;         /* ESYS_TR_NONE when not loaded */
    /* One key object kept loaded between operations (tpm2.c), so that a key
     * used again costs one TPM command, not Load + command + FlushContext:
     * its handle, and the id of the loaded object (tpm_obj) it belongs to
     * (0 = none). Dropped with the connection. */
    ESYS_TR cached;
    uint64_t cached_id;
} km__tpm2_conn;

/* Parses a backend configuration ("tcti=...", optionally prefixed "tpm2:",
 * items separated by ';'), falling back to $KM_TPM2_TCTI, and takes a reference
 * on the shared connection for that TCTI. Connects lazily. */
int km__tpm2_conn_get(const char *config, km__tpm2_conn **out);
void km__tpm2_conn_put(km__tpm2_conn *c);

/*
 * An operation run under the connection's lock with the primary loaded. It
 * returns a km code (recorded with km__tpm2_err) and stores the failing
 * TSS2_RC in *trc (0 when the failure was not the TPM's).
 */
typedef int (*km__tpm2_op)(km__tpm2_conn *c, void *arg, TSS2_RC *trc);

/* Runs `op`: connects (Startup, CreatePrimary) when needed; when the
 * connection turns out to be dead, drops it and reconnects once in the same
 * call (so a restarted TPM is found again); a TPM that is away gives
 * KM_E_BACKEND at once. */
int km__tpm2_run(km__tpm2_conn *c, km__tpm2_op op, void *arg);

/* Records a TSS2_RC as the thread's last error and returns its km code:
 * TPM2_RC_LOCKOUT, bad authorization -> KM_E_AUTH; an integrity failure
 * (a blob of another TPM or altered) -> KM_E_INTEGRITY; else KM_E_BACKEND. */
int km__tpm2_err(TSS2_RC rc, const char *what);

/* True for TPM2_RC_RETRY / YIELDED / TESTING (retried a bounded number of times). */
int km__tpm2_retryable(TSS2_RC rc);

/* Calls `expr` (a TSS2_RC expression) up to KM__TPM2_TRIES times while the
 * TPM answers RETRY, YIELDED or TESTING. Lockout is never retried. */
#define KM__TPM2_TRIES 3
#define KM__TPM2_CALL(rcvar, expr)                                          \
    do {                                                                    \
        int km__try_;                                                       \
        for (km__try_ = 0; km__try_ < KM__TPM2_TRIES; km__try_++) {         \
            (rcvar) = (expr);                                               \
            if (!km__tpm2_retryable(rcvar))                                 \
                break;                                                      \
            km__tpm2_backoff(km__try_);                                     \
        }                                                                   \
    } while (0)

void km__tpm2_backoff(int attempt);

#endif /* KM_TPM2_INT_H */
