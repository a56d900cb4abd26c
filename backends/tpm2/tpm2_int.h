/*
 * tpm2_int.h - internals of the TPM 2.0 backend (backends/tpm2/), shared by
 * the connection layer (tpm2_conn.c) and the key operations (tpm2.c).
 */
#ifndef KM_TPM2_INT_H
#define KM_TPM2_INT_H

#include "km_int.h"

#include <tss2/tss2_esys.h>

/* The most key objects a connection keeps loaded (the TPM's own limit,
 * TPM2_PT_HR_TRANSIENT_AVAIL, is usually lower: swtpm has 3 slots in all). */
#define KM__TPM2_CACHE_MAX 16

/* A key object kept loaded between operations (tpm2.c): its handle, and the
 * id of the loaded key (tpm_obj) it belongs to. */
typedef struct km__tpm2_cached {
    ESYS_TR h;
    uint64_t id;
    uint64_t used;           /* the connection's clock at its last use (LRU) */
} km__tpm2_cached;

/*
 * One connection to a TPM, shared process-wide by every vault whose tpm2
 * configuration names the same TCTI (swtpm and a bare /dev/tpm0 serve one
 * connection at a time). All TPM access is serialised by its mutex.
 *
 * Transient objects: the storage primary is kept loaded, and so are the key
 * objects used last (the cache), so that a key used again costs one TPM
 * command, not Load + command + FlushContext. The cache holds at most
 * cache_cap objects: the TPM's free transient slots once the primary is
 * loaded (TPM2_PT_HR_TRANSIENT_AVAIL, read at connect; at most 2 through the
 * kernel's resource manager, whose space holds 3 objects). A miss flushes the
 * least recently used entry when the cache is full. An operation that needs
 * a transient object of its own (Create, a sealed object's Load, an HMAC
 * sequence) first makes room for it the same way, and flushes it before it
 * returns. Should the TPM still answer TPM2_RC_OBJECT_MEMORY (another client
 * took slots), km__tpm2_run evicts one entry, lowers cache_cap and runs the
 * operation once more. A key unloaded (closed, destroyed, its vault closed)
 * has its entry flushed; a dropped connection forgets the cache (the TPM
 * restarted, or a handle failed: everything is loaded again from the blobs).
 */
typedef struct km__tpm2_conn {
    struct km__tpm2_conn *next;
    char *tcti;              /* TCTI configuration string; "" = the tctildr default */
    unsigned refs;
    pthread_mutex_t mu;
    TSS2_TCTI_CONTEXT *tcti_ctx;
    ESYS_CONTEXT *esys;      /* NULL when not connected */
    ESYS_TR primary;         /* ESYS_TR_NONE when not loaded */
    km__tpm2_cached cache[KM__TPM2_CACHE_MAX];
    unsigned cache_n;        /* entries in use: cache[0 .. cache_n - 1] */
    unsigned cache_cap;      /* 1 .. KM__TPM2_CACHE_MAX; 0 until connected */
    uint64_t clock;
    unsigned fork_gen;       /* km__fork_gen of the process that owns the connection */
} km__tpm2_conn;

/* Locks the connection. In a child after fork() it first forgets the
 * parent's connection, sending nothing (the parent's handles stay the
 * parent's): the child connects anew. */
void km__tpm2_lock(km__tpm2_conn *c);
void km__tpm2_unlock(km__tpm2_conn *c);

/* The cache, under the connection's lock. find: the handle of object `id`
 * (ESYS_TR_NONE when not cached), marked used. add: records a loaded handle
 * (the caller made room first). forget: flushes and forgets the entry of `id`
 * if any. room: flushes least recently used entries (never that of `keep`;
 * 0 = none) until `need` more transient objects fit. */
ESYS_TR km__tpm2_cache_find(km__tpm2_conn *c, uint64_t id);
void km__tpm2_cache_add(km__tpm2_conn *c, uint64_t id, ESYS_TR h);
void km__tpm2_cache_forget(km__tpm2_conn *c, uint64_t id);
void km__tpm2_cache_room(km__tpm2_conn *c, unsigned need, uint64_t keep);

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
 * connection turns out to be dead or its handles stale (a TCTI error, a TPM
 * that restarted: TPM2_RC_INITIALIZE, REFERENCE_Hx or HANDLE on a handle),
 * drops it with the cache and runs `op` once more in the same call on a new
 * connection, loading the keys again from their blobs (so a restarted TPM is
 * found again); a TPM that is away gives KM_E_BACKEND at once. On
 * TPM2_RC_OBJECT_MEMORY it evicts a cached object and runs `op` once more.
 * Never more than two runs. */
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
