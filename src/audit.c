/* audit.c - the tamper-evident audit log (include/km/audit.h, docs/FORMATS.md).
 *
 * An entry is a TLV whose last field is the HMAC-SHA-256 (under the vault's
 * audit key) of everything before it, and which holds the SHA-256 of the
 * previous entry. Entries are stored in sealed records of KM__T_AUDIT keyed
 * by the BE64 sequence number of their first entry: one entry per record for
 * a state change (appended in the caller's transaction), a batch per record
 * for the group-committed data-path entries. The head (last sequence, its
 * SHA-256) is a sealed meta record written in the same transaction.
 *
 * Data-path entries are queued (a small fixed-size record per call) and
 * written by a flusher thread of the context, or by the caller itself when
 * the queue is full (back-pressure) - a queue that cannot be written makes
 * the calls fail: fail closed. */
#include "core.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/evp.h>

enum {
    A_SEQ = 1, A_TIME = 2, A_PRINCIPAL = 3, A_OP = 4, A_KEY = 5, A_VERSION = 6, A_RESULT = 7,
    A_DETAIL = 8, A_PREV = 9, A_MAC = 10
};

#define ENTRY_MAX 1024
#define DETAIL_MAX 200
#define QUEUE_AGE_MS 200
#define QUEUE_HARD_MAX (4 * KM_AUDIT_BATCH)
#define FLUSH_MIN 256          /* entries that wake the flusher at once */

static const uint8_t head_key[] = "audit-head";
static const uint8_t akey_key[] = "audit-key";
static const uint8_t level_key[] = "audit-level";

static const char *const op_names[KM__OP__COUNT] = {
    [KM__OP_NONE] = "none",
    [KM__OP_OPEN] = "vault.open",
    [KM__OP_AUTH_FAIL] = "auth.fail",
    [KM__OP_DENIED] = "denied",
    [KM__OP_KEY_CREATE] = "key.create",
    [KM__OP_KEY_IMPORT] = "key.import",
    [KM__OP_KEY_ROTATE] = "key.rotate",
    [KM__OP_KEY_STATE] = "key.state",
    [KM__OP_KEY_DESTROY] = "key.destroy",
    [KM__OP_KEY_POLICY] = "key.policy",
    [KM__OP_KEY_GRANT] = "key.grant",
    [KM__OP_KEY_OWNER] = "key.owner",
    [KM__OP_EXPORT] = "key.export",
    [KM__OP_POLICY_SET] = "policy.set",
    [KM__OP_BACKEND_SET] = "backend.set",
    [KM__OP_SLOT_ADD] = "keyslot.add",
    [KM__OP_SLOT_REMOVE] = "keyslot.remove",
    [KM__OP_REKEY] = "vault.rekey",
    [KM__OP_COMPACT] = "vault.compact",
    [KM__OP_AUDIT_LEVEL] = "audit.level",
    [KM__OP_PRINCIPAL_ADD] = "principal.add",
    [KM__OP_PRINCIPAL_REMOVE] = "principal.remove",
    [KM__OP_REQUEST] = "request.create",
    [KM__OP_APPROVE] = "request.approve",
    [KM__OP_EXECUTE] = "request.execute",
    [KM__OP_ENCRYPT] = "encrypt",
    [KM__OP_DECRYPT] = "decrypt",
    [KM__OP_SIGN] = "sign",
    [KM__OP_VERIFY] = "verify",
    [KM__OP_MAC] = "mac",
    [KM__OP_DATAKEY] = "datakey",
    [KM__OP_REWRAP] = "rewrap",
    [KM__OP_DERIVE] = "derive",
    [KM__OP_AGREE] = "agree",
    [KM__OP_PUBLIC] = "public",
    [KM__OP_AUDIT_READ] = "audit.read",
    [KM__OP_READ] = "metadata.read",
    [KM__OP_COMPROMISED_USE] = "compromised.use",
    [KM__OP_BACKUP] = "vault.backup",
};

const char *km__op_name(int op)
{
    return op > 0 && op < KM__OP__COUNT && op_names[op] != NULL ? op_names[op] : "unknown";
}

/* ------------------------------------------------------------ the context */

/* Loads (creating on first use) the audit MAC key: HKDF of the master key,
 * kept sealed in meta so that a rekey leaves the existing chain verifiable. */
static int akey_load(struct km_ctx *ctx, km__txn *t, const km__sealer *s)
{
    km_secret *rec = NULL, *k = NULL;
    int rc;

    if (ctx->audit.key != NULL)
        return KM_OK;
    rc = km__rec_get(t, s, KM__T_META, akey_key, sizeof akey_key - 1, &rec);
    if (rc == KM_E_NOTFOUND && t != NULL && km__txn_is_write(t)) {
        static const char info[] = "km-audit-mac-v1";
        km_secret *master = ctx->master;
        if ((rc = km_secret_new(&k, 32)) != KM_OK)
            return rc;
        rc = km__hkdf_sha256(km_secret_data(master), km_secret_len(master), ctx->vault_id, 16,
                             (const uint8_t *)info, sizeof info - 1, km_secret_data(k), 32);
        if (rc == KM_OK)
            rc = km__rec_put(t, s, KM__T_META, akey_key, sizeof akey_key - 1,
                             km_secret_data(k), 32, KM__PUT_NOOVERWRITE);
        if (rc != KM_OK) {
            km_secret_free(k);
            return rc;
        }
        ctx->audit.key = k;   /* the transaction may still abort: the key stays right */
        return KM_OK;
    }
    if (rc == KM_E_NOTFOUND)
        return KM_E_NOTFOUND; /* no entry was ever written */
    if (rc != KM_OK)
        return rc;
    if (km_secret_len(rec) != 32) {
        km_secret_free(rec);
        return km__err(KM_E_CORRUPT, "audit key record has the wrong length");
    }
    ctx->audit.key = rec;
    return KM_OK;
}

static int head_read(const km__sealer *s, km__txn *t, km_audit_head *h)
{
    km_secret *rec = NULL;
    int rc;

    memset(h, 0, sizeof *h);
    rc = km__rec_get(t, s, KM__T_META, head_key, sizeof head_key - 1, &rec);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    if (km_secret_len(rec) != 40) {
        km_secret_free(rec);
        return km__err(KM_E_CORRUPT, "audit head record has the wrong length");
    }
    h->seq = km__be64_get(km_secret_data(rec));
    memcpy(h->hash, km_secret_data(rec) + 8, 32);
    km_secret_free(rec);
    return KM_OK;
}

static int head_write(const km__sealer *s, km__txn *t, const km_audit_head *h)
{
    uint8_t b[40];
    km__be64_put(b, h->seq);
    memcpy(b + 8, h->hash, 32);
    return km__rec_put(t, s, KM__T_META, head_key, sizeof head_key - 1, b, sizeof b, 0);
}

/* ------------------------------------------------------------- encoding */

/* A data-path call waiting in the queue. */
struct km__audit_pending {
    int64_t time;
    int32_t op, result;
    uint32_t version;
    uint8_t has_key;
    uint8_t key_id[16];
};

/* An entry to encode (state changes carry a detail). */
typedef struct entry_in {
    int64_t time;
    int op, result, has_key;
    const uint8_t *key_id;
    uint32_t version;
    const char *detail;
} entry_in;

static void detail_copy(char *dst, const char *src)
{
    size_t i = 0;
    if (src != NULL)
        for (; src[i] != '\0' && i < DETAIL_MAX; i++)
            dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = '\0';
}

/* The context's MAC context, keyed with the audit key (under kmu). */
static int mac_ready(struct km_ctx *ctx)
{
    if (ctx->audit.mac != NULL)
        return KM_OK;
    return km__mac_new(&ctx->audit.mac, km_secret_data(ctx->audit.key), 32);
}

/* Encodes entry `seq` chained to `prev`; `hash` gets its SHA-256 (of every
 * byte before the MAC field), and the MAC field is HMAC-SHA-256(audit key,
 * that hash). */
static int entry_encode(struct km_ctx *ctx, uint64_t seq, const entry_in *p,
                        const uint8_t prev[32], uint8_t *out, size_t *out_len, uint8_t hash[32])
{
    km__tlv_w w;
    uint8_t mac[32];
    size_t body;
    int rc;

    km__tlv_init(&w, out, ENTRY_MAX);
    km__tlv_put_u64(&w, A_SEQ, seq);
    km__tlv_put_u64(&w, A_TIME, (uint64_t)p->time);
    km__tlv_put_str(&w, A_PRINCIPAL, ctx->principal_name);
    km__tlv_put_u32(&w, A_OP, (uint32_t)p->op);
    if (p->has_key) {
        km__tlv_put(&w, A_KEY, p->key_id, 16);
        km__tlv_put_u32(&w, A_VERSION, p->version);
    }
    km__tlv_put_u32(&w, A_RESULT, (uint32_t)p->result);
    km__tlv_put_str(&w, A_DETAIL, p->detail != NULL ? p->detail : "");
    km__tlv_put(&w, A_PREV, prev, 32);
    if ((rc = km__tlv_end(&w)) != KM_OK)
        return rc;
    body = w.len;
    if ((rc = km__mac_sha256(ctx->audit.mac, out, body, hash)) != KM_OK
        || (rc = km__mac_compute(ctx->audit.mac, hash, 32, mac)) != KM_OK)
        return rc;
    km__tlv_put(&w, A_MAC, mac, 32);
    if ((rc = km__tlv_end(&w)) != KM_OK)
        return rc;
    *out_len = w.len;
    return KM_OK;
}

/* Decodes and checks one entry's own MAC. */
static int entry_decode(km__mac *m, const uint8_t *b, size_t n, km_audit_entry *e,
                        uint8_t prev[32], char *pbuf, char *dbuf)
{
    const uint8_t *v;
    size_t vl, i, mac_at;
    uint64_t seq, tm;
    uint32_t op, ver = 0, res;
    uint8_t mac[32];

    memset(e, 0, sizeof *e);
    if (n < 5 + 32 || km__tlv_check(b, n) != KM_OK)
        return KM_E_INTEGRITY;
    mac_at = n - (5 + 32);
    if (b[mac_at] != A_MAC || km__tlv_check(b, mac_at) != KM_OK)
        return KM_E_INTEGRITY;
    if (km__mac_sha256(m, b, mac_at, e->hash) != KM_OK
        || km__mac_compute(m, e->hash, 32, mac) != KM_OK
        || !km_ct_equal(mac, b + mac_at + 5, 32))
        return KM_E_INTEGRITY;
    if (km__tlv_get_u64(b, n, A_SEQ, &seq) != KM_OK || km__tlv_get_u64(b, n, A_TIME, &tm) != KM_OK
        || km__tlv_get_u32(b, n, A_OP, &op) != KM_OK
        || km__tlv_get_u32(b, n, A_RESULT, &res) != KM_OK
        || !km__tlv_find(b, n, A_PREV, &v, &vl) || vl != 32)
        return KM_E_INTEGRITY;
    memcpy(prev, v, 32);
    e->seq = seq;
    e->time = (int64_t)tm;
    e->op = km__op_name((int)op);
    e->result = (int)res;
    if (km__tlv_find(b, n, A_KEY, &v, &vl)) {
        if (vl != 16 || km__tlv_get_u32(b, n, A_VERSION, &ver) != KM_OK)
            return KM_E_INTEGRITY;
        e->has_key = 1;
        memcpy(e->key_id, v, 16);
        e->version = ver;
    }
    pbuf[0] = dbuf[0] = '\0';
    if (km__tlv_find(b, n, A_PRINCIPAL, &v, &vl)) {
        vl = vl > 127 ? 127 : vl;
        for (i = 0; i < vl; i++)
            pbuf[i] = (char)v[i];
        pbuf[vl] = '\0';
    }
    if (km__tlv_find(b, n, A_DETAIL, &v, &vl)) {
        vl = vl > DETAIL_MAX ? DETAIL_MAX : vl;
        for (i = 0; i < vl; i++)
            dbuf[i] = (char)v[i];
        dbuf[vl] = '\0';
    }
    e->principal = pbuf;
    e->detail = dbuf;
    return KM_OK;
}

/* --------------------------------------------------------------- sinks */

int km_audit_entry_json(const km_audit_entry *e, char *out, size_t cap, size_t *out_len)
{
    char id[33], hash[65], det[DETAIL_MAX * 6 + 1], pr[128 * 6 + 1];
    const char *srcs[2];
    char *dsts[2];
    int n, i;
    size_t j, k;

    if (e == NULL || (out == NULL && cap != 0))
        return km__err(KM_E_INVALID, "km_audit_entry_json: bad arguments");
    for (i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", e->key_id[i]);
    for (i = 0; i < 32; i++)
        snprintf(hash + 2 * i, 3, "%02x", e->hash[i]);
    srcs[0] = e->detail ? e->detail : "";
    srcs[1] = e->principal ? e->principal : "";
    dsts[0] = det;
    dsts[1] = pr;
    for (i = 0; i < 2; i++) {      /* JSON string escaping */
        const char *s = srcs[i];
        size_t lim = i == 0 ? DETAIL_MAX : 127;
        for (j = 0, k = 0; s[j] != '\0' && j < lim; j++) {
            unsigned char c = (unsigned char)s[j];
            if (c == '"' || c == '\\') {
                dsts[i][k++] = '\\';
                dsts[i][k++] = (char)c;
            } else if (c < 0x20 || c >= 0x7f) {
                k += (size_t)snprintf(dsts[i] + k, 7, "\\u%04x", c);
            } else {
                dsts[i][k++] = (char)c;
            }
        }
        dsts[i][k] = '\0';
    }
    if (e->has_key)
        n = snprintf(out, cap,
                     "{\"seq\":%llu,\"time\":%lld,\"principal\":\"%s\",\"op\":\"%s\","
                     "\"key_id\":\"%s\",\"version\":%u,\"result\":\"%s\",\"detail\":\"%s\","
                     "\"hash\":\"%s\"}",
                     (unsigned long long)e->seq, (long long)e->time, pr, e->op, id, e->version,
                     e->result == 0 ? "OK" : km_err_name(e->result), det, hash);
    else
        n = snprintf(out, cap,
                     "{\"seq\":%llu,\"time\":%lld,\"principal\":\"%s\",\"op\":\"%s\","
                     "\"result\":\"%s\",\"detail\":\"%s\",\"hash\":\"%s\"}",
                     (unsigned long long)e->seq, (long long)e->time, pr, e->op,
                     e->result == 0 ? "OK" : km_err_name(e->result), det, hash);
    if (n < 0)
        return km__err(KM_E_INTERNAL, "km_audit_entry_json: formatting failed");
    if (out_len != NULL)
        *out_len = (size_t)n + 1;
    if ((size_t)n >= cap)
        return KM_E_BUFFER;
    return KM_OK;
}

/* Sends one encoded entry to the context's sinks; KM_E_IO when one fails. */
static int sinks_write(struct km_ctx *ctx, const uint8_t *b, size_t n)
{
    km_audit_entry e;
    uint8_t prev[32];
    char pbuf[128], dbuf[DETAIL_MAX + 1], line[2048];
    size_t len = 0;
    ssize_t w;

    if (!ctx->audit.syslog && ctx->audit.fd < 0)
        return KM_OK;
    if (entry_decode(ctx->audit.mac, b, n, &e, prev, pbuf, dbuf) != KM_OK
        || km_audit_entry_json(&e, line, sizeof line - 1, &len) != KM_OK)
        return km__err(KM_E_INTERNAL, "audit: cannot format an entry for the sinks");
    if (ctx->audit.syslog)
        syslog(LOG_AUTHPRIV | LOG_NOTICE, "libkm audit %s", line);
    if (ctx->audit.fd >= 0) {
        line[len - 1] = '\n';
        w = write(ctx->audit.fd, line, len);
        if (w != (ssize_t)len)
            return km__err(KM_E_IO, "audit: cannot write to the JSON-lines sink");
    }
    return KM_OK;
}

/* --------------------------------------------------------------- appending */

/* Appends `count` entries as ONE sealed record in the caller's write
 * transaction (record: n x (BE32 length || entry)). Called with kmu held. */
static int append_entries(struct km_ctx *ctx, km__txn *t, const km__sealer *s,
                          const entry_in *p, size_t count)
{
    km_audit_head h;
    uint8_t seqb[8], *rec;
    size_t i, len, at = 0;
    uint64_t first;
    int rc;

    if ((rc = akey_load(ctx, t, s)) != KM_OK || (rc = mac_ready(ctx)) != KM_OK)
        return rc;
    if ((rc = head_read(s, t, &h)) != KM_OK)
        return rc;
    first = h.seq + 1;
    for (i = 0; i < count; i++) {
        uint8_t *e;
        /* the context's encoding buffer, kept between batches (no secrets in it) */
        if (ctx->audit.bufcap - at < ENTRY_MAX + 4) {
            size_t ncap = ctx->audit.bufcap ? ctx->audit.bufcap * 2 : 64 * 1024;
            uint8_t *nb;
            while (ncap - at < ENTRY_MAX + 4)
                ncap *= 2;
            if ((nb = realloc(ctx->audit.buf, ncap)) == NULL)
                return km__err(KM_E_NOMEM, "audit: out of memory");
            ctx->audit.buf = nb;
            ctx->audit.bufcap = ncap;
        }
        rec = ctx->audit.buf;
        e = rec + at + 4;
        if ((rc = entry_encode(ctx, h.seq + 1, &p[i], h.hash, e, &len, h.hash)) != KM_OK)
            return rc;
        km__be32_put(rec + at, (uint32_t)len);
        if ((rc = sinks_write(ctx, e, len)) != KM_OK)
            return rc;
        at += 4 + len;
        h.seq++;
    }
    km__be64_put(seqb, first);
    rc = km__rec_put(t, s, KM__T_AUDIT, seqb, 8, ctx->audit.buf, at, KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS)
        rc = km__err(KM_E_CORRUPT, "audit entry %llu exists beyond the stored head",
                     (unsigned long long)first);
    if (rc == KM_OK)
        rc = head_write(s, t, &h);
    return rc;
}

int km__audit_append(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                     uint32_t version, int result, const char *detail)
{
    return km__audit_append_sealed(ctx, t, ctx->sealer, op, key_id, version, result, detail);
}

int km__audit_append_sealed(struct km_ctx *ctx, km__txn *t, const km__sealer *s, int op,
                            const uint8_t *key_id, uint32_t version, int result,
                            const char *detail)
{
    entry_in p;
    char d[DETAIL_MAX + 1];
    int rc;

    detail_copy(d, detail);
    p.time = km__now(ctx);
    p.op = op;
    p.result = result;
    p.has_key = key_id != NULL;
    p.key_id = key_id;
    p.version = key_id != NULL ? version : 0;
    p.detail = d;
    /* kmu is innermost: taken with the LMDB write lock held, never the other way */
    pthread_mutex_lock(&ctx->audit.kmu);
    rc = append_entries(ctx, t, s, &p, 1);
    pthread_mutex_unlock(&ctx->audit.kmu);
    return rc;
}

/* Writes an event that is not part of a state change (a denied call) in a
 * transaction of its own. */
int km__audit_event(struct km_ctx *ctx, int op, const uint8_t *key_id, uint32_t version,
                    int result, const char *detail)
{
    km__txn *t = NULL;
    int rc;

    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    rc = km__audit_append(ctx, t, op, key_id, version, result, detail);
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    return km__txn_commit(t);
}

/* Writes the queued data-path entries in one transaction. The batch is taken
 * out of the queue under mu, which is released before the write lock is
 * taken; on failure it goes back to the front. Flushes are serialised by fmu
 * so that batches reach the log in queue order. */
static int flush(struct km_ctx *ctx)
{
    struct km__audit_pending *batch;
    entry_in *in = NULL;
    size_t n, cap, i;
    km__txn *t = NULL;
    int rc;

    pthread_mutex_lock(&ctx->audit.fmu);
    pthread_mutex_lock(&ctx->audit.mu);
    batch = ctx->audit.q;
    n = ctx->audit.qn;
    cap = ctx->audit.qcap;
    ctx->audit.q = NULL;
    ctx->audit.qn = ctx->audit.qcap = 0;
    pthread_mutex_unlock(&ctx->audit.mu);
    if (n == 0) {
        free(batch);
        pthread_mutex_unlock(&ctx->audit.fmu);
        return KM_OK;
    }
    if ((in = malloc(n * sizeof *in)) == NULL) {
        rc = km__err(KM_E_NOMEM, "audit: out of memory");
    } else {
        for (i = 0; i < n; i++) {
            in[i].time = batch[i].time;
            in[i].op = batch[i].op;
            in[i].result = batch[i].result;
            in[i].has_key = batch[i].has_key;
            in[i].key_id = batch[i].key_id;
            in[i].version = batch[i].version;
            in[i].detail = NULL;
        }
        rc = km__txn_begin(ctx->env, 1, &t);
    }
    if (rc == KM_OK) {
        pthread_mutex_lock(&ctx->audit.kmu);
        rc = append_entries(ctx, t, ctx->sealer, in, n);
        pthread_mutex_unlock(&ctx->audit.kmu);
        if (rc == KM_OK)
            rc = km__txn_commit(t);
        else
            km__txn_abort(t);
    }
    free(in);
    if (rc == KM_OK) {
        free(batch);
        atomic_store(&ctx->audit.failed, KM_OK);
        pthread_mutex_unlock(&ctx->audit.fmu);
        return KM_OK;
    }
    /* put the batch back in front of what was queued meanwhile */
    pthread_mutex_lock(&ctx->audit.mu);
    if (cap >= n + ctx->audit.qn
        || (batch = realloc(batch, (n + ctx->audit.qn) * sizeof *batch)) != NULL) {
        if (ctx->audit.qn > 0)
            memcpy(batch + n, ctx->audit.q, ctx->audit.qn * sizeof *batch);
        free(ctx->audit.q);
        ctx->audit.q = batch;
        ctx->audit.qcap = cap >= n + ctx->audit.qn ? cap : n + ctx->audit.qn;
        ctx->audit.qn += n;
    }
    pthread_mutex_unlock(&ctx->audit.mu);
    atomic_store(&ctx->audit.failed, rc);
    pthread_mutex_unlock(&ctx->audit.fmu);
    return rc;
}

/* The flusher thread: writes the queue when a batch is ready or the oldest
 * entry is QUEUE_AGE_MS old. */
static void *flusher(void *arg)
{
    struct km_ctx *ctx = arg;
    struct timespec ts;

    pthread_mutex_lock(&ctx->audit.mu);
    while (!ctx->audit.stop) {
        /* a batch as soon as one is ready; a short queue at least every
         * QUEUE_AGE_MS / 2 */
        if (ctx->audit.qn < FLUSH_MIN) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += QUEUE_AGE_MS / 2 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            ctx->audit.waiting = 1;
            (void)pthread_cond_timedwait(&ctx->audit.cv, &ctx->audit.mu, &ts);
            ctx->audit.waiting = 0;
        }
        if (ctx->audit.qn == 0 || ctx->audit.stop)
            continue;
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
    struct km__audit_pending *p;
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
        struct km__audit_pending *nq = realloc(ctx->audit.q, ncap * sizeof *nq);
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
    if (ctx->audit.qn >= FLUSH_MIN && ctx->audit.waiting)
        pthread_cond_signal(&ctx->audit.cv);
    pthread_mutex_unlock(&ctx->audit.mu);
    return KM_OK;
}

int km_audit_flush(km_ctx *ctx)
{
    int rc;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_audit_flush: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
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
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (fails > 0) {
        /* failed authentications since the last open: into the log now */
        char d[96];
        snprintf(d, sizeof d, "%llu failed authentication(s) since the last open",
                 (unsigned long long)fails);
        if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
            return rc;
        rc = km__authfail_get(t, &fails);
        if (rc == KM_OK && fails > 0)
            rc = km__audit_append(ctx, t, KM__OP_AUTH_FAIL, NULL, 0, KM_E_AUTH, d);
        if (rc == KM_OK)
            rc = km__authfail_clear(t);
        if (rc != KM_OK) {
            km__txn_abort(t);
            return rc;
        }
        rc = km__txn_commit(t);
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

/* --------------------------------------------------------------- public */

int km_audit_set_level(km_ctx *ctx, km_audit_level level)
{
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
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    rc = km__rec_put(t, ctx->sealer, KM__T_META, level_key, sizeof level_key - 1, &b, 1, 0);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_AUDIT_LEVEL, NULL, 0, KM_OK, d);
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    rc = km__txn_commit(t);
    if (rc == KM_OK) {
        atomic_store(&ctx->audit.level, level);
        atomic_fetch_add(&km__write_gen, 1);
    }
    return rc;
}

int km_audit_get_level(km_ctx *ctx, km_audit_level *level)
{
    if (ctx == NULL || level == NULL)
        return km__err(KM_E_INVALID, "km_audit_get_level: bad arguments");
    *level = (km_audit_level)atomic_load(&ctx->audit.level);
    return KM_OK;
}

int km_audit_head_get(km_ctx *ctx, km_audit_head *head)
{
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
    rc = head_read(ctx->sealer, t, head);
    km__txn_abort(t);
    return rc;
}

typedef struct walk {
    struct km_ctx *ctx;
    uint64_t from, count, bad;
    km_audit_fn fn;
    void *arg;
} walk;

/* Checks one entry against the walk's expectations; calls w->fn. */
static int walk_entry(walk *w, km__mac *m, const km_audit_head *anchor, uint64_t s,
                      const uint8_t *b, size_t n, uint8_t want_prev[32])
{
    km_audit_entry e;
    uint8_t prev[32];
    char pbuf[128], dbuf[DETAIL_MAX + 1];
    int r;

    r = entry_decode(m, b, n, &e, prev, pbuf, dbuf);
    if (r != KM_OK || e.seq != s) {
        w->bad = s;
        return km__err(KM_E_INTEGRITY, "audit entry %llu has a bad MAC or sequence",
                       (unsigned long long)s);
    }
    if (!km_ct_equal(prev, want_prev, 32)) {
        w->bad = s;
        return km__err(KM_E_INTEGRITY,
                       "audit entry %llu does not chain to entry %llu (reordered or replaced)",
                       (unsigned long long)s, (unsigned long long)(s - 1));
    }
    memcpy(want_prev, e.hash, 32);
    if (anchor != NULL && anchor->seq == s && !km_ct_equal(anchor->hash, e.hash, 32)) {
        w->bad = s;
        return km__err(KM_E_INTEGRITY, "audit entry %llu differs from the exported head",
                       (unsigned long long)s);
    }
    w->count++;
    if (w->fn != NULL && s >= w->from && (r = w->fn(&e, w->arg)) != 0)
        return r < 0 ? r : 1;
    return KM_OK;
}

/* Reads entries 1..head in order (records keyed by their first entry's
 * sequence), checking each; calls w->fn from w->from. */
static int audit_walk(struct km_ctx *ctx, const km_audit_head *anchor, walk *w)
{
    km__txn *t = NULL;
    km_audit_head h;
    km_secret *rec = NULL;
    km__mac *m = NULL;
    uint8_t seqb[8], want_prev[32];
    uint64_t s, stored = 0, records = 0;
    int rc;

    w->bad = 0;
    w->count = 0;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    if ((rc = head_read(ctx->sealer, t, &h)) != KM_OK)
        goto out;
    if ((rc = km__table_count(t, KM__T_AUDIT, &stored)) != KM_OK)
        goto out;
    pthread_mutex_lock(&ctx->audit.kmu);
    rc = h.seq > 0 || stored > 0 ? akey_load(ctx, t, ctx->sealer) : KM_OK;
    pthread_mutex_unlock(&ctx->audit.kmu);
    if (rc == KM_E_NOTFOUND) {
        w->bad = 1;
        rc = km__err(KM_E_INTEGRITY, "audit log: the MAC key record is missing");
    }
    if (rc != KM_OK)
        goto out;
    if (ctx->audit.key != NULL && (rc = km__mac_new(&m, km_secret_data(ctx->audit.key), 32)))
        goto out;
    memset(want_prev, 0, sizeof want_prev);
    for (s = 1; s <= h.seq;) {
        const uint8_t *p;
        size_t left, len;
        uint64_t first = s;

        km__be64_put(seqb, s);
        rc = km__rec_get(t, ctx->sealer, KM__T_AUDIT, seqb, 8, &rec);
        if (rc == KM_E_NOTFOUND) {
            w->bad = s;
            rc = km__err(KM_E_INTEGRITY, "audit entry %llu is missing (deleted)",
                         (unsigned long long)s);
            goto out;
        }
        if (rc == KM_E_CORRUPT) {
            w->bad = s;
            rc = km__err(KM_E_INTEGRITY, "audit entry %llu fails to open (edited or moved)",
                         (unsigned long long)s);
            goto out;
        }
        if (rc != KM_OK)
            goto out;
        records++;
        p = km_secret_data(rec);
        left = km_secret_len(rec);
        while (left > 0) {
            if (left < 4 || (len = km__be32_get(p)) == 0 || len > left - 4 || len > ENTRY_MAX) {
                w->bad = s;
                rc = km__err(KM_E_INTEGRITY, "audit record %llu is malformed at entry %llu",
                             (unsigned long long)first, (unsigned long long)s);
                goto out;
            }
            rc = walk_entry(w, m, anchor, s, p + 4, len, want_prev);
            if (rc == 1) {
                rc = KM_OK;
                goto out;   /* the callback stopped the walk */
            }
            if (rc != KM_OK)
                goto out;
            p += 4 + len;
            left -= 4 + len;
            s++;
        }
        km_secret_free(rec);
        rec = NULL;
        if (s == first) {
            w->bad = s;
            rc = km__err(KM_E_INTEGRITY, "audit record %llu is empty", (unsigned long long)s);
            goto out;
        }
    }
    if (s != h.seq + 1) {
        w->bad = h.seq;
        rc = km__err(KM_E_INTEGRITY, "audit log runs past its head (entry %llu)",
                     (unsigned long long)h.seq);
        goto out;
    }
    if (h.seq > 0 && !km_ct_equal(h.hash, want_prev, 32)) {
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
out:
    km__mac_free(m);
    km_secret_free(rec);
    km__txn_abort(t);
    return rc;
}

int km_audit_verify(km_ctx *ctx, const km_audit_head *anchor, uint64_t *count,
                    uint64_t *bad_seq)
{
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
    rc = audit_walk(ctx, anchor, &w);
    if (count != NULL)
        *count = w.count;
    if (bad_seq != NULL)
        *bad_seq = w.bad;
    return rc;
}

int km_audit_foreach(km_ctx *ctx, uint64_t from, km_audit_fn fn, void *arg)
{
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
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_audit_sink_syslog: ctx is NULL");
    pthread_mutex_lock(&ctx->audit.kmu);
    ctx->audit.syslog = enable != 0;
    pthread_mutex_unlock(&ctx->audit.kmu);
    return KM_OK;
}

int km_audit_sink_file(km_ctx *ctx, const char *path)
{
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
        why = e->has_key ? "use of a key outside its grants" : "an operation outside the role";
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
    alerts a;
    if (ctx == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_audit_alerts: bad arguments");
    a.fn = fn;
    a.arg = arg;
    return km_audit_foreach(ctx, from, alert_scan, &a);
}
