/* audit_append.c - appending to the tamper-evident audit log, in the
 * caller's write transaction: the entry encoding (docs/FORMATS.md), the
 * chain head, the MAC key, the sinks (each entry goes to them as it is
 * appended). Below the write path (wtxn.c); events in transactions of their
 * own and the data-path queue are audit_log.c, the API audit.c. The sinks
 * get an entry once its transaction has committed (km__txn_on_done), never
 * one of a change that was rolled back.
 *
 * An entry is a TLV whose last field is the HMAC-SHA-256 (under the vault's
 * audit key) of everything before it, and which holds the SHA-256 of the
 * previous entry. Entries are stored in sealed records of KM__T_AUDIT keyed
 * by the BE64 sequence number of their first entry: one entry per record for
 * a state change (appended in the caller's transaction), a batch per record
 * for the group-committed data-path entries. The head (last sequence, its
 * SHA-256) is a sealed meta record written in the same transaction.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>


enum {
    A_SEQ = 1, A_TIME = 2, A_PRINCIPAL = 3, A_OP = 4, A_KEY = 5, A_VERSION = 6, A_RESULT = 7,
    A_DETAIL = 8, A_PREV = 9, A_MAC = 10, A_PEER = 11, A_WRITES = 12, A_CHECKPOINT = 13
};

/* Room for A_WRITES in an entry: the rest (principal, peer, detail...) fits
 * in 1024 bytes; a longer write log takes a checkpoint instead. */
#define WRITES_MAX (ENTRY_MAX - 1024)

/* The catalog field of a state change's entry (issue 18): its transaction's
 * write log, or a checkpoint digest of the whole catalog. */
typedef struct wfield {
    const uint8_t *writes;
    size_t writes_len;
    int checkpoint;
    uint8_t digest[32];
} wfield;

#define ENTRY_MAX KM__AUDIT_ENTRY_MAX
#define DETAIL_MAX KM__AUDIT_DETAIL_MAX

static const uint8_t head_key[] = "audit-head";
static const uint8_t akey_key[] = "audit-key";

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

/* The head record: BE64 last sequence, its SHA-256, and (since issue 18)
 * BE64 the time of that entry; 40 bytes (no time) in older vaults. */
int km__audit_head_time(const km__sealer *s, km__txn *t, km_audit_head *h, int64_t *last)
{
    km_secret *rec = NULL;
    int rc;

    memset(h, 0, sizeof *h);
    *last = 0;
    rc = km__rec_get(t, s, KM__T_META, head_key, sizeof head_key - 1, &rec);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    if (km_secret_len(rec) != 40 && km_secret_len(rec) != 48) {
        km_secret_free(rec);
        return km__err(KM_E_CORRUPT, "audit head record has the wrong length");
    }
    h->seq = km__be64_get(km_secret_data(rec));
    memcpy(h->hash, km_secret_data(rec) + 8, 32);
    if (km_secret_len(rec) == 48)
        *last = (int64_t)km__be64_get(km_secret_data(rec) + 40);
    km_secret_free(rec);
    return KM_OK;
}

int km__audit_head_read(const km__sealer *s, km__txn *t, km_audit_head *h)
{
    int64_t last;
    return km__audit_head_time(s, t, h, &last);
}

int km__audit_key_ready(struct km_ctx *ctx, km__txn *t)
{
    int rc;
    pthread_mutex_lock(&ctx->audit.kmu);
    rc = akey_load(ctx, t, ctx->sealer);
    pthread_mutex_unlock(&ctx->audit.kmu);
    return rc;
}

static int head_write(const km__sealer *s, km__txn *t, const km_audit_head *h, int64_t last)
{
    uint8_t b[48];
    km__be64_put(b, h->seq);
    memcpy(b + 8, h->hash, 32);
    km__be64_put(b + 40, (uint64_t)last);
    return km__rec_put(t, s, KM__T_META, head_key, sizeof head_key - 1, b, sizeof b, 0);
}

/* ------------------------------------------------------------- encoding */

typedef km__audit_entry_in entry_in;

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
static int entry_encode(struct km_ctx *ctx, uint64_t seq, const entry_in *p, const wfield *wf,
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
    if (ctx->delegated)
        km__tlv_put_str(&w, A_PEER, ctx->peer);
    km__tlv_put_u32(&w, A_OP, (uint32_t)p->op);
    if (p->has_key) {
        km__tlv_put(&w, A_KEY, p->key_id, 16);
        km__tlv_put_u32(&w, A_VERSION, p->version);
    }
    km__tlv_put_u32(&w, A_RESULT, (uint32_t)p->result);
    km__tlv_put_str(&w, A_DETAIL, p->detail != NULL ? p->detail : "");
    km__tlv_put(&w, A_PREV, prev, 32);
    if (wf != NULL && wf->checkpoint)
        km__tlv_put(&w, A_CHECKPOINT, wf->digest, 32);
    else if (wf != NULL && wf->writes_len > 0)
        km__tlv_put(&w, A_WRITES, wf->writes, wf->writes_len);
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

int km__audit_entry_catalog(const uint8_t *b, size_t n, const uint8_t **writes,
                            size_t *writes_len, const uint8_t **checkpoint)
{
    const uint8_t *v;
    size_t vl;

    *writes = NULL;
    *writes_len = 0;
    *checkpoint = NULL;
    if (km__tlv_find(b, n, A_CHECKPOINT, &v, &vl)) {
        if (vl != 32)
            return KM_E_INTEGRITY;
        *checkpoint = v;
    }
    if (km__tlv_find(b, n, A_WRITES, &v, &vl)) {
        *writes = v;
        *writes_len = vl;
    }
    return KM_OK;
}

/* Decodes and checks one entry's own MAC. */
int km__audit_entry_decode(km__mac *m, const uint8_t *b, size_t n, km_audit_entry *e,
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
        /* made through a delegated context (km_ctx_delegate): "name via peer" */
        if (km__tlv_find(b, n, A_PEER, &v, &vl) && vl > 0) {
            size_t at = strlen(pbuf);
            if (at + 5 + vl > 127)
                vl = at + 5 < 127 ? 127 - at - 5 : 0;
            if (vl > 0) {
                memcpy(pbuf + at, " via ", 5);
                memcpy(pbuf + at + 5, v, vl);
                pbuf[at + 5 + vl] = '\0';
            }
        }
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
    if (km__audit_entry_decode(ctx->audit.mac, b, n, &e, prev, pbuf, dbuf) != KM_OK
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

/* The entries a transaction appended, for the sinks once it commits. */
typedef struct sink_batch {
    struct km_ctx *ctx;
    uint8_t *buf;        /* n x (BE32 length || entry) */
    size_t len, cap;
} sink_batch;

static void sinks_after(void *arg, int committed)
{
    sink_batch *b = arg;
    struct km_ctx *ctx = b->ctx;
    size_t at = 0, n;

    if (committed) {
        pthread_mutex_lock(&ctx->audit.kmu);
        while (at + 4 <= b->len) {
            n = km__be32_get(b->buf + at);
            if (ctx->audit.sink_failed == 0 && sinks_write(ctx, b->buf + at + 4, n) != KM_OK) {
                km_audit_entry e;
                uint8_t prev[32];
                char pbuf[128], dbuf[DETAIL_MAX + 1];
                /* the change stands (its entry is in the vault's log); the
                 * next change is refused until the sink is set again */
                ctx->audit.sink_failed = km__audit_entry_decode(ctx->audit.mac, b->buf + at + 4,
                                                                n, &e, prev, pbuf, dbuf) == KM_OK
                                             ? e.seq : 1;
            }
            at += 4 + n;
        }
        pthread_mutex_unlock(&ctx->audit.kmu);
    }
    free(b->buf);
    free(b);
}

/* Keeps an encoded entry for the sinks of t's commit (kmu held). */
static int sinks_queue(struct km_ctx *ctx, km__txn *t, const uint8_t *e, size_t len)
{
    sink_batch *b;

    if (!ctx->audit.syslog && ctx->audit.fd < 0)
        return KM_OK;
    if (ctx->audit.sink_failed != 0)
        return km__err(KM_E_IO, "audit: a sink failed at entry %llu after its change was "
                                "committed; set the sink again (km_audit_sink_file, "
                                "km_audit_sink_syslog) before further changes",
                       (unsigned long long)ctx->audit.sink_failed);
    if ((b = calloc(1, sizeof *b)) == NULL)
        return km__err(KM_E_NOMEM, "audit: out of memory");
    b->ctx = ctx;
    {
        sink_batch *had = km__txn_on_done(t, sinks_after, b);
        if (had != NULL) {
            free(b);
            b = had;
        }
    }
    if (b->cap - b->len < len + 4) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        uint8_t *nb;
        while (nc - b->len < len + 4)
            nc *= 2;
        if ((nb = realloc(b->buf, nc)) == NULL)
            return km__err(KM_E_NOMEM, "audit: out of memory");
        b->buf = nb;
        b->cap = nc;
    }
    km__be32_put(b->buf + b->len, (uint32_t)len);
    memcpy(b->buf + b->len + 4, e, len);
    b->len += 4 + len;
    return KM_OK;
}

/* --------------------------------------------------------------- appending */

/* Appends `count` entries as ONE sealed record in the caller's write
 * transaction (record: n x (BE32 length || entry)), for the sinks once it
 * commits. Called with kmu held. */
int km__audit_append_entries(struct km_ctx *ctx, km__txn *t, const km__sealer *s,
                          const entry_in *p, size_t count)
{
    km_audit_head h;
    wfield wf;
    uint8_t seqb[8], *rec;
    size_t i, len, at = 0;
    uint64_t first;
    int64_t last;
    int rc;

    if ((rc = akey_load(ctx, t, s)) != KM_OK || (rc = mac_ready(ctx)) != KM_OK)
        return rc;
    if ((rc = km__audit_head_time(s, t, &h, &last)) != KM_OK)
        return rc;
    /* after akey_load (which may write the audit key): the whole log */
    memset(&wf, 0, sizeof wf);
    wf.checkpoint = km__txn_writes(t, &wf.writes, &wf.writes_len);
    if (wf.checkpoint || wf.writes_len > WRITES_MAX) {
        wf.checkpoint = 1;
        if ((rc = km__catalog_digest(t, wf.digest)) != KM_OK)
            return rc;
    }
    first = h.seq + 1;
    for (i = 0; i < count; i++) {
        entry_in in = p[i];
        uint8_t *e;
        /* audit time never goes back: an entry is never older than the one
         * before it, whatever clock the caller had */
        if (in.time < last)
            in.time = last;
        last = in.time;
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
        if ((rc = entry_encode(ctx, h.seq + 1, &in, i + 1 == count ? &wf : NULL, h.hash, e, &len,
                               h.hash)) != KM_OK)
            return rc;
        km__be32_put(rec + at, (uint32_t)len);
        if ((rc = sinks_queue(ctx, t, e, len)) != KM_OK)
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
        rc = head_write(s, t, &h, last);
    if (rc == KM_OK)
        km__txn_writes_taken(t);
    if (rc == KM_OK)
        km__now_floor(ctx, last);
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
    rc = km__audit_append_entries(ctx, t, s, &p, 1);
    pthread_mutex_unlock(&ctx->audit.kmu);
    return rc;
}


/* ------------------------------------------------------------- scanning */

int km__audit_records(struct km_ctx *ctx, km__txn *t, uint64_t from, uint64_t to,
                      km__audit_raw_fn fn, void *arg, km__audit_walked *wk)
{
    km_secret *rec = NULL;
    uint8_t seqb[8];
    uint64_t s;
    int rc = KM_OK;

    memset(wk, 0, sizeof *wk);
    for (s = from; s <= to;) {
        const uint8_t *p;
        size_t left, len;
        uint64_t first = s;

        km__be64_put(seqb, s);
        rc = km__rec_get(t, ctx->sealer, KM__T_AUDIT, seqb, 8, &rec);
        if (rc == KM_E_NOTFOUND || rc == KM_E_CORRUPT) {
            wk->bad = s;
            rc = km__err(KM_E_INTEGRITY, rc == KM_E_NOTFOUND
                                             ? "audit entry %llu is missing (deleted)"
                                             : "audit entry %llu fails to open (edited or moved)",
                         (unsigned long long)s);
        }
        if (rc != KM_OK)
            goto out;
        wk->records++;
        p = km_secret_data(rec);
        left = km_secret_len(rec);
        while (left > 0) {
            if (left < 4 || (len = km__be32_get(p)) == 0 || len > left - 4 || len > ENTRY_MAX) {
                wk->bad = s;
                rc = km__err(KM_E_INTEGRITY, "audit record %llu is malformed at entry %llu",
                             (unsigned long long)first, (unsigned long long)s);
                goto out;
            }
            if ((rc = fn(s, p + 4, len, arg)) != KM_OK) {
                wk->next = s;
                if (rc > 0)
                    rc = 1;   /* fn stopped the walk */
                goto out;
            }
            p += 4 + len;
            left -= 4 + len;
            s++;
        }
        km_secret_free(rec);
        rec = NULL;
        if (s == first) {
            wk->bad = s;
            rc = km__err(KM_E_INTEGRITY, "audit record %llu is empty", (unsigned long long)s);
            goto out;
        }
    }
    wk->next = s;
out:
    km_secret_free(rec);
    return rc;
}

/* km__audit_scan's step: each entry decoded, its MAC checked. */
typedef struct scan_arg {
    km__mac *m;
    km__audit_scan_fn fn;
    void *arg;
} scan_arg;

static int scan_entry(uint64_t s, const uint8_t *b, size_t n, void *arg)
{
    scan_arg *a = arg;
    km_audit_entry e;
    uint8_t prev[32];
    char pbuf[128], dbuf[DETAIL_MAX + 1];

    if (km__audit_entry_decode(a->m, b, n, &e, prev, pbuf, dbuf) != KM_OK || e.seq != s)
        return km__err(KM_E_INTEGRITY, "audit entry %llu is malformed or fails its MAC",
                       (unsigned long long)s);
    return a->fn(&e, a->arg);
}

int km__audit_scan(struct km_ctx *ctx, km__txn *t, uint64_t from, km__audit_scan_fn fn,
                   void *arg)
{
    km_audit_head h;
    km__audit_walked wk;
    scan_arg a = { NULL, fn, arg };
    int rc;

    if ((rc = km__audit_head_read(ctx->sealer, t, &h)) != KM_OK)
        return rc;
    if (from == 0)
        from = 1;
    if (h.seq < from)
        return KM_OK;
    pthread_mutex_lock(&ctx->audit.kmu);
    rc = akey_load(ctx, t, ctx->sealer);
    if (rc == KM_OK)
        rc = km__mac_new(&a.m, km_secret_data(ctx->audit.key), 32);
    pthread_mutex_unlock(&ctx->audit.kmu);
    if (rc != KM_OK)
        return rc == KM_E_NOTFOUND
                   ? km__err(KM_E_INTEGRITY, "audit log: the MAC key record is missing") : rc;
    rc = km__audit_records(ctx, t, from, h.seq, scan_entry, &a, &wk);
    km__mac_free(a.m);
    return rc < 0 ? rc : KM_OK;
}
