/* audit.c - the audit API (include/km/audit.h): the data-path level,
 * reading and verifying the log, the sinks' settings, alerts. The log
 * itself (appending, the queue, the sinks) is the core's: audit_log.c. */
#include "core.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENTRY_MAX KM__AUDIT_ENTRY_MAX
#define DETAIL_MAX KM__AUDIT_DETAIL_MAX

static const uint8_t level_key[] = KM__AUDIT_LEVEL_KEY;

int km_audit_flush(km_ctx *ctx)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_FLUSH, 0);
    int rc;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_audit_flush: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    return km__audit_flush(ctx);
}

/* --------------------------------------------------------------- public */

int km_audit_set_level(km_ctx *ctx, km_audit_level level)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_SET_LEVEL, level);
    km__txn *t = NULL;
    uint8_t b;
    char d[32];
    int rc;

    if (ctx == NULL || (unsigned)level > KM_AUDIT_DATA_EVERY)
        return km__err(KM_E_INVALID, "km_audit_set_level: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_AUDIT_LEVEL, NULL)) != KM_OK)
        return rc;
    b = (uint8_t)level;
    snprintf(d, sizeof d, "level %s", level == KM_AUDIT_DATA_NONE ? "none"
                                      : level == KM_AUDIT_DATA_COUNTERS ? "counters" : "every");
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__rec_put(t, ctx->sealer, KM__T_META, level_key, sizeof level_key - 1, &b, 1, 0);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    rc = km__wtxn_commit(ctx, t, KM__OP_AUDIT_LEVEL, NULL, 0, d);
    if (rc == KM_OK)
        atomic_store(&ctx->audit.level, level);
    return rc;
}

int km_audit_get_level(km_ctx *ctx, km_audit_level *level)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_GET_LEVEL, level);
    if (ctx == NULL || level == NULL)
        return km__err(KM_E_INVALID, "km_audit_get_level: bad arguments");
    *level = (km_audit_level)atomic_load(&ctx->audit.level);
    return KM_OK;
}

int km_audit_head_get(km_ctx *ctx, km_audit_head *head)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_HEAD_GET, head);
    km__txn *t = NULL;
    int rc;

    if (ctx == NULL || head == NULL)
        return km__err(KM_E_INVALID, "km_audit_head_get: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_AUDIT_READ, NULL)) != KM_OK)
        return rc;
    if ((rc = km_audit_flush(ctx)) != KM_OK)
        return rc;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__audit_head_read(ctx->sealer, t, head);
    km__txn_abort(t);
    return rc;
}

typedef struct walk {
    struct km_ctx *ctx;
    uint64_t from, count, bad;
    km_audit_fn fn;
    void *arg;
    km__audit_chain *chain;   /* km_audit_verify's: the catalog check */
} walk;

/* Checks one entry (decoded, its MAC checked) against the walk's
 * expectations: it chains to the entry before, the anchor, the catalog;
 * calls w->fn. */
typedef struct walk_raw_arg {
    walk *w;
    const km_audit_head *anchor;
    uint8_t want_prev[32];
} walk_raw_arg;

static int walk_raw(const km__audit_item *it, void *arg)
{
    walk_raw_arg *a = arg;
    walk *w = a->w;
    uint64_t s = it->e.seq;
    int r;

    if (!km_ct_equal(it->prev, a->want_prev, 32)) {
        w->bad = s;
        return km__err(KM_E_INTEGRITY,
                       "audit entry %llu does not chain to entry %llu (reordered or replaced)",
                       (unsigned long long)s, (unsigned long long)(s - 1));
    }
    memcpy(a->want_prev, it->e.hash, 32);
    if (a->anchor != NULL && a->anchor->seq == s && !km_ct_equal(a->anchor->hash, it->e.hash, 32)) {
        w->bad = s;
        return km__err(KM_E_INTEGRITY, "audit entry %llu differs from the exported head",
                       (unsigned long long)s);
    }
    w->count++;
    if (w->chain != NULL && it->raw != NULL
        && (r = km__audit_chain_entry(w->chain, s, it->raw, it->raw_len)) != KM_OK) {
        w->bad = s;
        return r;
    }
    if (w->fn != NULL && s >= w->from && (r = w->fn(&it->e, w->arg)) != 0)
        return r < 0 ? r : 1;
    return KM_OK;
}

/* Reads entries 1..head in order (records keyed by their first entry's
 * sequence), checking each; calls w->fn from w->from. */
static int audit_walk(struct km_ctx *ctx, const km_audit_head *anchor, walk *w)
{
    km__txn *t = NULL;
    km_audit_head h;
    km__audit_walked wk;
    walk_raw_arg a;
    km__mac *m = NULL;
    uint64_t s, stored = 0, records;
    int rc;

    w->bad = 0;
    w->count = 0;
    memset(&a, 0, sizeof a);
    a.w = w;
    a.anchor = anchor;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    if ((rc = km__audit_head_read(ctx->sealer, t, &h)) != KM_OK)
        goto out;
    if ((rc = km__table_count(t, KM__T_AUDIT, &stored)) != KM_OK)
        goto out;
    rc = h.seq > 0 || stored > 0 ? km__audit_key_ready(ctx, t) : KM_OK;
    if (rc == KM_E_NOTFOUND) {
        w->bad = 1;
        rc = km__err(KM_E_INTEGRITY, "audit log: the MAC key record is missing");
    }
    if (rc != KM_OK)
        goto out;
    if (ctx->audit.key != NULL && (rc = km__mac_new(&m, km_secret_data(ctx->audit.key), 32)))
        goto out;
    rc = km__audit_records(ctx, t, m, 1, h.seq, walk_raw, &a, &wk);
    if (wk.bad != 0)
        w->bad = wk.bad;
    if (rc == 1) {
        rc = KM_OK;   /* the callback stopped the walk */
        goto out;
    }
    if (rc != KM_OK)
        goto out;
    s = wk.next;
    records = wk.records;
    if (s != h.seq + 1) {
        w->bad = h.seq;
        rc = km__err(KM_E_INTEGRITY, "audit log runs past its head (entry %llu)",
                     (unsigned long long)h.seq);
        goto out;
    }
    if (h.seq > 0 && !km_ct_equal(h.hash, a.want_prev, 32)) {
        w->bad = h.seq;
        rc = km__err(KM_E_INTEGRITY, "audit head does not match entry %llu",
                     (unsigned long long)h.seq);
        goto out;
    }
    if (stored != records) {
        w->bad = h.seq + 1;
        rc = km__err(KM_E_INTEGRITY, "audit log holds %llu records but its head accounts for "
                                     "%llu (entries inserted or the head rolled back)",
                     (unsigned long long)stored, (unsigned long long)records);
        goto out;
    }
    if (anchor != NULL && anchor->seq > h.seq) {
        w->bad = h.seq + 1;
        rc = km__err(KM_E_INTEGRITY, "audit log ends at entry %llu but the exported head is "
                                     "entry %llu (tail truncated or vault rolled back)",
                     (unsigned long long)h.seq, (unsigned long long)anchor->seq);
        goto out;
    }
    rc = KM_OK;
    if (w->chain != NULL) {
        uint32_t format = 0;
        uint64_t bad = 0;
        if ((rc = km__store_format(t, &format)) == KM_OK)
            rc = km__audit_chain_check(w->chain, t, format >= KM__FORMAT_CHAIN, &bad);
        if (rc != KM_OK)
            w->bad = bad;
    }
out:
    km__mac_free(m);
    km__txn_abort(t);
    return rc;
}

int km_audit_verify(km_ctx *ctx, const km_audit_head *anchor, uint64_t *count,
                    uint64_t *bad_seq)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_VERIFY, anchor, count, bad_seq);
    walk w;
    int rc;

    if (count != NULL)
        *count = 0;
    if (bad_seq != NULL)
        *bad_seq = 0;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_audit_verify: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_AUDIT_READ, NULL)) != KM_OK)
        return rc;
    if ((rc = km_audit_flush(ctx)) != KM_OK)
        return rc;
    memset(&w, 0, sizeof w);
    if ((rc = km__audit_chain_new(&w.chain)) != KM_OK)
        return rc;
    rc = audit_walk(ctx, anchor, &w);
    km__audit_chain_free(w.chain);
    if (count != NULL)
        *count = w.count;
    if (bad_seq != NULL)
        *bad_seq = w.bad;
    return rc;
}

int km_audit_foreach(km_ctx *ctx, uint64_t from, km_audit_fn fn, void *arg)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_FOREACH, from, fn, arg);
    walk w;
    int rc;

    if (ctx == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_audit_foreach: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_AUDIT_READ, NULL)) != KM_OK)
        return rc;
    if ((rc = km_audit_flush(ctx)) != KM_OK)
        return rc;
    memset(&w, 0, sizeof w);
    w.from = from ? from : 1;
    w.fn = fn;
    w.arg = arg;
    return audit_walk(ctx, NULL, &w);
}

int km_audit_sink_syslog(km_ctx *ctx, int enable)
{
    KM__REMOTE_NO(ctx, "km_audit_sink_syslog", "kmd's own configuration decides its audit sinks (audit_file)");
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_audit_sink_syslog: ctx is NULL");
    pthread_mutex_lock(&ctx->audit.kmu);
    ctx->audit.syslog = enable != 0;
    ctx->audit.sink_failed = 0;
    pthread_mutex_unlock(&ctx->audit.kmu);
    return KM_OK;
}

int km_audit_sink_file(km_ctx *ctx, const char *path)
{
    KM__REMOTE_NO(ctx, "km_audit_sink_file", "kmd's own configuration decides its audit sinks (audit_file)");
    int fd = -1;

    if (ctx == NULL || (path != NULL && path[0] == '\0'))
        return km__err(KM_E_INVALID, "km_audit_sink_file: bad arguments");
    if (path != NULL) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return km__err(KM_E_IO, "km_audit_sink_file: cannot open the file");
    }
    pthread_mutex_lock(&ctx->audit.kmu);
    if (ctx->audit.fd >= 0)
        close(ctx->audit.fd);
    ctx->audit.fd = fd;
    ctx->audit.sink_failed = 0;
    pthread_mutex_unlock(&ctx->audit.kmu);
    return KM_OK;
}

/* ------------------------------------------------------------ monitoring */

typedef struct alerts {
    km_audit_alert_fn fn;
    void *arg;
} alerts;

static int alert_scan(const km_audit_entry *e, void *arg)
{
    alerts *a = arg;
    const char *why = NULL;
    unsigned long long n = 0;

    if (strcmp(e->op, "denied") == 0)
        /* the denial's detail says which check refused: a role ("lacks the
         * admin role for ...") or a key's grants ("lacks the ... permission") */
        why = strstr(e->detail, " role ") != NULL || !e->has_key ? "an operation outside the role"
                                                                 : "use of a key outside its grants";
    else if (strcmp(e->op, "auth.fail") == 0)
        why = sscanf(e->detail, "%llu", &n) == 1 && n >= 3 ? "repeated failed authentications"
                                                            : "failed authentication";
    else if (strcmp(e->op, "compromised.use") == 0)
        why = "use of a compromised key version";
    else if (e->result != KM_OK && e->result != KM_E_VERIFY && e->result != KM_E_BUFFER
             && (strcmp(e->op, "decrypt") == 0 || strcmp(e->op, "rewrap") == 0)
             && e->result == KM_E_INTEGRITY)
        why = "a ciphertext failed authentication";
    if (why == NULL)
        return 0;
    return a->fn(e, why, a->arg);
}

int km_audit_alerts(km_ctx *ctx, uint64_t from, km_audit_alert_fn fn, void *arg)
{
    KM__REMOTE(ctx, KM__KC_AUDIT_ALERTS, from, fn, arg);
    alerts a;
    if (ctx == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_audit_alerts: bad arguments");
    a.fn = fn;
    a.arg = arg;
    return km_audit_foreach(ctx, from, alert_scan, &a);
}
