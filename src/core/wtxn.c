/* wtxn.c - the one write path of the core (core.h): every change of the
 * vault begins, appends its audit entry, commits and bumps the write
 * generation here, in that order, so that no change can forget a step.
 *
 * The generation tells every key handle and cached permission of this
 * process that what it read may be stale (key.c, access.c); changes by other
 * processes are noticed by time (refresh_ms), or at once when the store
 * hears of them (etcd's watch: km__store_changes, added by km__wtxn_gen). */
#include "core.h"

/* Bumped after every committed change by any context in this process; only
 * this file writes it (km__wtxn_gen in core.h reads it inline on the data path). */
atomic_uint km__wtxn_generation;

/* The context's queued data-path entries are written first, so that the audit
 * chain shows this context's calls in the order they were made (a data-path
 * call before the state change that follows it). A failed flush keeps them
 * queued (the flusher retries) and does not stop the change. */
int km__wtxn_begin(struct km_ctx *ctx, km__txn **out)
{
    (void)km__audit_flush(ctx);
    return km__txn_begin(ctx->env, 1, out);
}

/* The audit entry, then the commit, then the generation. */
static int commit_entry(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                        uint32_t version, int result, const char *detail, int changed,
                        int *committing)
{
    int rc = km__audit_append(ctx, t, op, key_id, version, result, detail);
    if (committing != NULL)
        *committing = rc == KM_OK;
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    return km__wtxn_commit_plain(t, changed);
}

int km__wtxn_commit(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                    uint32_t version, const char *detail)
{
    return commit_entry(ctx, t, op, key_id, version, KM_OK, detail, 1, NULL);
}

int km__wtxn_commit_ex(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                       uint32_t version, const char *detail, int *committing)
{
    return commit_entry(ctx, t, op, key_id, version, KM_OK, detail, 1, committing);
}

int km__wtxn_commit_event(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                          uint32_t version, int result, const char *detail)
{
    return commit_entry(ctx, t, op, key_id, version, result, detail, 0, NULL);
}

int km__wtxn_commit_plain(km__txn *t, int changed)
{
    int rc = km__txn_commit(t);
    if (rc == KM_OK && changed)
        km__wtxn_changed();
    return rc;
}

void km__wtxn_abort(km__txn *t)
{
    km__txn_abort(t);
}

void km__wtxn_changed(void)
{
    atomic_fetch_add(&km__wtxn_generation, 1);
}

