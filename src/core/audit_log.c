/* audit_log.c - the audit log's own transactions in the core: events
 * outside a state change (a refusal, a backup, failed authentications) and
 * the data-path queue, whose entries are written by a flusher thread of the
 * context, or by the caller itself when the queue is full (back-pressure) -
 * a queue that cannot be written makes the calls fail: fail closed. The
 * entries are appended by audit_append.c; the API is audit.c. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QUEUE_AGE_MS 200
/* The queue's bound: what a commit's sync (a few ms) lets a fast caller
 * queue meanwhile at some millions of calls a second, so that the caller
 * rarely writes the queue itself (issue 24); it also bounds what a crash
 * can lose (docs/SECURITY.md) to this and the batch being committed. */
#define QUEUE_HARD_MAX (16 * KM_AUDIT_BATCH)
#define FLUSH_MIN 256          /* entries that wake the flusher at once */
/* Entries per transaction: two batch records (docs/FORMATS.md), 512 KiB,
 * well under etcd's 1.5 MiB request limit once sealed and encoded. */
#define FLUSH_TXN_MAX (8 * KM_AUDIT_BATCH)
#define FLUSH_GAP_MS 25        /* between transactions under load (flusher) */

static const uint8_t level_key[] = KM__AUDIT_LEVEL_KEY;

typedef km__audit_entry_in entry_in;

/* Writes an event that is not part of a state change (a denied call) in a
 * transaction of its own. */
int km__audit_event(struct km_ctx *ctx, int op, const uint8_t *key_id, uint32_t version,
                    int result, const char *detail)
{
    km__txn *t = NULL;
    int rc;

    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    return km__wtxn_commit_event(ctx, t, op, key_id, version, result, detail);
}

/* Writes the queued data-path entries, in transactions of at most
 * FLUSH_TXN_MAX entries. The batch is taken out of the queue under mu, which
 * is released before the write lock is taken; on failure what was not
 * written goes back to the front. Flushes are serialised by fmu so that
 * batches reach the log in queue order. */
static int flush(struct km_ctx *ctx)
{
    entry_in *batch;
    size_t n, cap, done = 0;
    km__txn *t = NULL;
    int rc = KM_OK;

    pthread_mutex_lock(&ctx->audit.fmu);
    pthread_mutex_lock(&ctx->audit.mu);
    batch = ctx->audit.q;
    n = ctx->audit.qn;
    cap = ctx->audit.qcap;
    if (n == 0) {
        pthread_mutex_unlock(&ctx->audit.mu);
        pthread_mutex_unlock(&ctx->audit.fmu);
        return KM_OK;
    }
    /* the callers go on in the spare queue (kept from the last batch) */
    ctx->audit.q = ctx->audit.spare;
    ctx->audit.qcap = ctx->audit.spare_cap;
    ctx->audit.qn = 0;
    ctx->audit.spare = NULL;
    ctx->audit.spare_cap = 0;
    pthread_mutex_unlock(&ctx->audit.mu);
    while (rc == KM_OK && done < n) {
        size_t m = n - done < FLUSH_TXN_MAX ? n - done : FLUSH_TXN_MAX;
        if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK) /* not km__wtxn_begin: it flushes */
            break;
        /* batch records appended here, committed by the write path without
         * a generation bump (nothing a handle caches) */
        pthread_mutex_lock(&ctx->audit.kmu);
        rc = km__audit_append_entries(ctx, t, ctx->sealer, batch + done, m);
        pthread_mutex_unlock(&ctx->audit.kmu);
        if (rc == KM_OK)
            rc = km__wtxn_commit_plain(t, 0);
        else
            km__wtxn_abort(t);
        if (rc == KM_OK)
            done += m;
    }
    if (rc == KM_OK) {
        pthread_mutex_lock(&ctx->audit.mu);
        if (ctx->audit.spare == NULL) {
            ctx->audit.spare = batch;   /* the next flush's spare queue */
            ctx->audit.spare_cap = cap;
            batch = NULL;
        }
        pthread_mutex_unlock(&ctx->audit.mu);
        free(batch);
        atomic_store(&ctx->audit.failed, KM_OK);
        pthread_mutex_unlock(&ctx->audit.fmu);
        return KM_OK;
    }
    /* what was written is out of the batch */
    if (done > 0) {
        memmove(batch, batch + done, (n - done) * sizeof *batch);
        n -= done;
    }
    /* put the batch back in front of what was queued meanwhile */
    pthread_mutex_lock(&ctx->audit.mu);
    {
        entry_in *nb = cap >= n + ctx->audit.qn
                                           ? batch
                                           : realloc(batch, (n + ctx->audit.qn) * sizeof *batch);
        if (nb != NULL) {
            if (ctx->audit.qn > 0)
                memcpy(nb + n, ctx->audit.q, ctx->audit.qn * sizeof *nb);
            free(ctx->audit.q);
            ctx->audit.q = nb;
            ctx->audit.qcap = cap >= n + ctx->audit.qn ? cap : n + ctx->audit.qn;
            ctx->audit.qn += n;
        } else {
            free(batch);   /* out of memory: the batch is lost, the error stays */
        }
    }
    pthread_mutex_unlock(&ctx->audit.mu);
    atomic_store(&ctx->audit.failed, rc);
    pthread_mutex_unlock(&ctx->audit.fmu);
    return rc;
}

/* *ts = from + ms. */
static void ts_add_ms(struct timespec *ts, const struct timespec *from, long ms)
{
    *ts = *from;
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += ms % 1000 * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The flusher thread: writes the queue when FLUSH_MIN entries wait or the
 * oldest is QUEUE_AGE_MS / 2 old; under a steady load, a transaction at
 * most every FLUSH_GAP_MS unless FLUSH_TXN_MAX entries wait (each commit's
 * sync costs the same, whatever it holds: fewer, larger ones burn less of
 * the CPU the callers share; issue 24). */
static void *flusher(void *arg)
{
    struct km_ctx *ctx = arg;
    struct timespec ts, now, last = { 0, 0 };

    pthread_mutex_lock(&ctx->audit.mu);
    while (!ctx->audit.stop) {
        if (ctx->audit.qn < FLUSH_MIN) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            ts_add_ms(&ts, &now, QUEUE_AGE_MS / 2);
            ctx->audit.waiting = 1;
            (void)pthread_cond_timedwait(&ctx->audit.cv, &ctx->audit.mu, &ts);
            ctx->audit.waiting = 0;
            if (ctx->audit.qn >= FLUSH_MIN)
                continue;   /* a batch is ready: the gap below applies */
        } else if (ctx->audit.qn < FLUSH_TXN_MAX) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            ts_add_ms(&ts, &last, FLUSH_GAP_MS);
            if (now.tv_sec < ts.tv_sec || (now.tv_sec == ts.tv_sec && now.tv_nsec < ts.tv_nsec)) {
                ctx->audit.waiting = 1;
                (void)pthread_cond_timedwait(&ctx->audit.cv, &ctx->audit.mu, &ts);
                ctx->audit.waiting = 0;
                continue;
            }
        }
        if (ctx->audit.qn == 0 || ctx->audit.stop)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &last);
        pthread_mutex_unlock(&ctx->audit.mu);
        (void)flush(ctx);   /* a failure stays queued; callers fail closed once full */
        pthread_mutex_lock(&ctx->audit.mu);
    }
    pthread_mutex_unlock(&ctx->audit.mu);
    return NULL;
}

/* Starts the flusher (under mu). */
static int flusher_start(struct km_ctx *ctx)
{
    pthread_condattr_t ca;
    int e;

    if (ctx->audit.thread_on)
        return KM_OK;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->audit.cv, &ca);
    pthread_condattr_destroy(&ca);
    ctx->audit.stop = 0;
    if ((e = pthread_create(&ctx->audit.thread, NULL, flusher, ctx)) != 0) {
        pthread_cond_destroy(&ctx->audit.cv);
        return km__err(KM_E_NOMEM, "audit: cannot start the flusher thread");
    }
    ctx->audit.thread_on = 1;
    ctx->audit.thread_gen = atomic_load(&km__fork_gen);
    return KM_OK;
}

int km__audit_data(struct km_ctx *ctx, int op, const uint8_t *key_id, uint32_t version,
                   int result)
{
    entry_in *p;
    int rc;

    if (atomic_load_explicit(&ctx->audit.level, memory_order_relaxed) != KM_AUDIT_DATA_EVERY)
        return KM_OK;
    pthread_mutex_lock(&ctx->audit.mu);
    if (ctx->audit.qn >= QUEUE_HARD_MAX) {
        /* back-pressure: the caller writes the queue itself; if it cannot, fail closed */
        pthread_mutex_unlock(&ctx->audit.mu);
        if ((rc = flush(ctx)) != KM_OK)
            return km__err(rc, "audit: the data-path entries cannot be written (failing closed)");
        pthread_mutex_lock(&ctx->audit.mu);
    }
    if (!ctx->audit.thread_on && (rc = flusher_start(ctx)) != KM_OK) {
        pthread_mutex_unlock(&ctx->audit.mu);
        return rc;
    }
    if (ctx->audit.qn == ctx->audit.qcap) {
        size_t ncap = ctx->audit.qcap ? ctx->audit.qcap * 2 : 1024;
        entry_in *nq = realloc(ctx->audit.q, ncap * sizeof *nq);
        if (nq == NULL) {
            pthread_mutex_unlock(&ctx->audit.mu);
            return km__err(KM_E_NOMEM, "audit: out of memory");
        }
        ctx->audit.q = nq;
        ctx->audit.qcap = ncap;
    }
    p = &ctx->audit.q[ctx->audit.qn++];
    p->time = km__now(ctx);
    p->op = op;
    p->result = result;
    p->has_key = key_id != NULL;
    if (key_id != NULL)
        memcpy(p->key_id, key_id, 16);
    p->version = version;
    p->detail = NULL;   /* a data-path entry: batch layout */
    if ((ctx->audit.qn == FLUSH_MIN || ctx->audit.qn == FLUSH_TXN_MAX) && ctx->audit.waiting)
        pthread_cond_signal(&ctx->audit.cv);
    pthread_mutex_unlock(&ctx->audit.mu);
    return KM_OK;
}

int km__audit_flush(struct km_ctx *ctx)
{
    return flush(ctx);
}

/* ----------------------------------------------------- context lifecycle */

int km__audit_open(struct km_ctx *ctx)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint64_t fails = 0;
    int rc;

    ctx->audit.fd = -1;
    atomic_init(&ctx->audit.level, KM_AUDIT_DATA_COUNTERS);
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, level_key, sizeof level_key - 1, &rec);
    if (rc == KM_OK && km_secret_len(rec) == 1 && km_secret_data(rec)[0] <= KM_AUDIT_DATA_EVERY)
        atomic_store(&ctx->audit.level, km_secret_data(rec)[0]);
    else if (rc == KM_OK)
        rc = km__err(KM_E_CORRUPT, "audit level record is malformed");
    else if (rc == KM_E_NOTFOUND)
        rc = KM_OK;
    km_secret_free(rec);
    if (rc == KM_OK)
        rc = km__authfail_get(t, &fails);
    if (rc == KM_OK) {
        /* time never goes back past the vault's last audited time */
        km_audit_head h;
        int64_t last = 0;
        rc = km__audit_head_time(ctx->sealer, t, &h, &last);
        km__now_floor(ctx, last);
    }
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (fails > 0) {
        /* failed authentications since the last open: into the log now */
        char d[96];
        snprintf(d, sizeof d, "%llu failed authentication(s) since the last open",
                 (unsigned long long)fails);
        if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
            return rc;
        rc = km__authfail_get(t, &fails);
        if (rc == KM_OK)
            rc = km__authfail_clear(t);
        if (rc != KM_OK) {
            km__wtxn_abort(t);
            return rc;
        }
        if (fails == 0)   /* another process logged them meanwhile */
            return km__wtxn_commit_plain(t, 0);
        return km__wtxn_commit_event(ctx, t, KM__OP_AUTH_FAIL, NULL, 0, KM_E_AUTH, d);
    }
    return rc;
}

void km__audit_close(struct km_ctx *ctx)
{
    int same_process = ctx->fork_gen == atomic_load(&km__fork_gen);

    if (ctx->audit.thread_on) {
        if (ctx->audit.thread_gen == atomic_load(&km__fork_gen)) {
            pthread_mutex_lock(&ctx->audit.mu);
            ctx->audit.stop = 1;
            pthread_cond_signal(&ctx->audit.cv);
            pthread_mutex_unlock(&ctx->audit.mu);
            pthread_join(ctx->audit.thread, NULL);
            pthread_cond_destroy(&ctx->audit.cv);
        }
        /* in a forked child the thread does not exist: nothing to join */
        ctx->audit.thread_on = 0;
    }
    /* a forked child must not write its parent's queue */
    if (ctx->env != NULL && same_process)
        (void)flush(ctx);
    pthread_mutex_lock(&ctx->audit.mu);
    free(ctx->audit.q);
    ctx->audit.q = NULL;
    ctx->audit.qn = ctx->audit.qcap = 0;
    free(ctx->audit.spare);
    ctx->audit.spare = NULL;
    ctx->audit.spare_cap = 0;
    pthread_mutex_unlock(&ctx->audit.mu);
    pthread_mutex_lock(&ctx->audit.kmu);
    if (ctx->audit.fd >= 0)
        close(ctx->audit.fd);
    ctx->audit.fd = -1;
    km__mac_free(ctx->audit.mac);
    ctx->audit.mac = NULL;
    free(ctx->audit.buf);
    ctx->audit.buf = NULL;
    ctx->audit.bufcap = 0;
    km_secret_free(ctx->audit.key);
    ctx->audit.key = NULL;
    pthread_mutex_unlock(&ctx->audit.kmu);
}

