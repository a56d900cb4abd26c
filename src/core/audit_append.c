/* audit_append.c - appending to the tamper-evident audit log, in the
 * caller's write transaction: the entry encoding (docs/FORMATS.md), the
 * chain head, the MAC key, the sinks (each entry goes to them as it is
 * appended). Below the write path (wtxn.c); events in transactions of their
 * own and the data-path queue are audit_log.c, the API audit.c. The sinks
 * get an entry once its transaction has committed (km__txn_on_done), never
 * one of a change that was rolled back.
 *
 * Entries are stored in sealed records of KM__T_AUDIT keyed by the BE64
 * sequence number of their first entry, in one of two layouts
 * (docs/FORMATS.md): layout 1, entries each a TLV whose last field is the
 * HMAC-SHA-256 (under the vault's audit key) of everything before it and
 * which holds the SHA-256 of the previous entry - one entry per record for a
 * state change (appended in the caller's transaction); layout 2, a batch of
 * data-path entries (no detail, no catalog field) in 16 bytes each behind
 * one header, with one SHA-256 and one MAC for the whole record (the
 * group-committed data-path entries: issue 24). Logs written before layout 2
 * hold only layout 1, with batches of it. The head (last sequence, its hash)
 * is a sealed meta record written in the same transaction.
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

/* pbuf (128) = the principal's name, and " via peer" for an entry made
 * through a delegated context (km_ctx_delegate), cut at 127 bytes. */
static void principal_join(char *pbuf, const uint8_t *name, size_t nl, const uint8_t *peer,
                           size_t pl)
{
    size_t at;

    nl = nl > 127 ? 127 : nl;
    memcpy(pbuf, name, nl);
    pbuf[nl] = '\0';
    at = strlen(pbuf);
    if (pl == 0)
        return;
    if (at + 5 + pl > 127)
        pl = at + 5 < 127 ? 127 - at - 5 : 0;
    if (pl > 0) {
        memcpy(pbuf + at, " via ", 5);
        memcpy(pbuf + at + 5, peer, pl);
        pbuf[at + 5 + pl] = '\0';
    }
}

/* Decodes and checks one entry's own MAC (layout 1). */
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
        const uint8_t *peer = NULL;
        size_t peer_len = 0;
        if (!km__tlv_find(b, n, A_PEER, &peer, &peer_len))
            peer_len = 0;
        principal_join(pbuf, v, vl, peer, peer_len);
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

/* ------------------------------------------------ layout 2: the batch */

/* A batch record (docs/FORMATS.md, "Audit entry"): B_MAGIC, first sequence
 * (8), count (4), the previous entry's hash (32), base time (8), principal
 * (length 1, bytes), peer (length 1, bytes; 0 when none), count x B_ENTRY
 * entries [time after the base (4), operation (2), result (4), key index (2;
 * B_NOKEY when none), version (4)], key table [count (2), ids (16 each)], MAC
 * (32). The record's hash is SHA-256 of every byte before the MAC, the MAC
 * HMAC-SHA-256 of that hash under the audit key; entry `seq` of the record
 * has the hash SHA-256(record hash || BE64 seq). A layout-1 record begins
 * with the BE32 length of an entry (at most ENTRY_MAX: a 0 byte first). */
#define B_MAGIC 0xA2
#define B_HDR 53
#define B_ENTRY 16
#define B_NOKEY 0xFFFF
#define B_KEYS_MAX 1024        /* keys per record; a record closes at the next */
#define B_ENTRIES_MAX 16384    /* entries per record: 256 KiB (an etcd request is <= 1.5 MiB) */
#define B_SLOTS 2048           /* the key table's index, a power of two > 1.5 x B_KEYS_MAX */
#define B_RECORD_MAX (B_HDR + 2 + 2 * 255 + B_ENTRY * B_ENTRIES_MAX + 2 + 16 * B_KEYS_MAX + 32)
#define B_SCRATCH ((B_RECORD_MAX + 63) & ~63)   /* where batch_append's key table starts */

static uint32_t be16_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static void be16_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* A batch record opened by batch_open: its fields, its hash checked. */
typedef struct batch_view {
    uint64_t first;
    uint32_t count, nkeys;
    const uint8_t *prev, *ents, *keys;
    int64_t base;
    uint8_t hash[32];          /* the record's hash */
} batch_view;

static int is_batch(const uint8_t *b, size_t n)
{
    return n > 0 && b[0] == B_MAGIC;
}

/* The hash of entry seq of a record whose hash is rh. */
static int batch_entry_hash(km__mac *m, const uint8_t rh[32], uint64_t seq, uint8_t out[32])
{
    uint8_t b[40];
    memcpy(b, rh, 32);
    km__be64_put(b + 32, seq);
    return km__mac_sha256(m, b, sizeof b, out);
}

/* Checks a batch record's framing and MAC; pbuf (128) gets its principal. */
static int batch_open(km__mac *m, const uint8_t *b, size_t n, batch_view *v, char *pbuf)
{
    const uint8_t *name, *peer;
    size_t at = B_HDR, nl, pl;
    uint8_t mac[32];

    memset(v, 0, sizeof *v);
    if (n < B_HDR + 2 + 2 + 32 || b[0] != B_MAGIC)
        return KM_E_INTEGRITY;
    v->first = km__be64_get(b + 1);
    v->count = km__be32_get(b + 9);
    v->prev = b + 13;
    v->base = (int64_t)km__be64_get(b + 45);
    nl = b[at++];
    name = b + at;
    at += nl;
    if (at >= n)
        return KM_E_INTEGRITY;
    pl = b[at++];
    peer = b + at;
    at += pl;
    if (v->count == 0 || v->count > B_ENTRIES_MAX || n - 32 < at
        || (n - 32 - at) < (size_t)v->count * B_ENTRY + 2)
        return KM_E_INTEGRITY;
    v->ents = b + at;
    at += (size_t)v->count * B_ENTRY;
    v->nkeys = be16_get(b + at);
    at += 2;
    v->keys = b + at;
    if (v->nkeys > B_KEYS_MAX || n - 32 - at != (size_t)v->nkeys * 16)
        return KM_E_INTEGRITY;
    if (km__mac_sha256(m, b, n - 32, v->hash) != KM_OK
        || km__mac_compute(m, v->hash, 32, mac) != KM_OK || !km_ct_equal(mac, b + n - 32, 32))
        return KM_E_INTEGRITY;
    principal_join(pbuf, name, nl, peer, pl);
    return KM_OK;
}

/* Entry i of an opened batch (its principal in pbuf, its detail ""). */
static int batch_entry(km__mac *m, const batch_view *v, uint32_t i, const char *pbuf,
                       km_audit_entry *e)
{
    const uint8_t *p = v->ents + (size_t)i * B_ENTRY;
    uint32_t ki = be16_get(p + 10);

    memset(e, 0, sizeof *e);
    e->seq = v->first + i;
    e->time = v->base + (int64_t)km__be32_get(p);
    e->op = km__op_name((int)be16_get(p + 4));
    e->result = (int)km__be32_get(p + 6);
    if (ki != B_NOKEY) {
        if (ki >= v->nkeys)
            return KM_E_INTEGRITY;
        e->has_key = 1;
        memcpy(e->key_id, v->keys + (size_t)ki * 16, 16);
        e->version = km__be32_get(p + 12);
    }
    e->principal = pbuf;
    e->detail = "";
    return batch_entry_hash(m, v->hash, e->seq, e->hash) == KM_OK ? KM_OK : KM_E_INTEGRITY;
}

/* Data-path entries only (no detail, an operation that fits): layout 2. */
static int batchable(const entry_in *p, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (p[i].detail != NULL || p[i].op <= 0 || p[i].op >= B_NOKEY)
            return 0;
    return count > 0;
}

/* The index of key id in the record's key table (added when new), or
 * B_NOKEY when the table is full. */
static uint32_t batch_key(uint8_t (*keys)[16], uint32_t *nkeys, uint16_t *slots,
                          const uint8_t id[16])
{
    uint32_t h = km__be32_get(id) & (B_SLOTS - 1);

    for (;; h = (h + 1) & (B_SLOTS - 1)) {
        if (slots[h] == B_NOKEY) {
            if (*nkeys == B_KEYS_MAX)
                return B_NOKEY;
            memcpy(keys[*nkeys], id, 16);
            slots[h] = (uint16_t)*nkeys;
            return (*nkeys)++;
        }
        if (memcmp(keys[slots[h]], id, 16) == 0)
            return slots[h];
    }
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

/* Sends one entry to the context's sinks; KM_E_IO when one fails. */
static int sinks_emit(struct km_ctx *ctx, const km_audit_entry *e)
{
    char line[2048];
    size_t len = 0;
    ssize_t w;

    if (km_audit_entry_json(e, line, sizeof line - 1, &len) != KM_OK)
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

/* Sends a layout-1 entry, or every entry of a batch record, to the sinks;
 * on failure *failed_at is the entry that failed (KM_E_IO). */
static int sinks_write(struct km_ctx *ctx, const uint8_t *b, size_t n, uint64_t *failed_at)
{
    km_audit_entry e;
    uint8_t prev[32];
    char pbuf[128], dbuf[DETAIL_MAX + 1];
    batch_view v;
    uint32_t i;
    int rc;

    *failed_at = 1;
    if (!is_batch(b, n)) {
        if (km__audit_entry_decode(ctx->audit.mac, b, n, &e, prev, pbuf, dbuf) != KM_OK)
            return km__err(KM_E_INTERNAL, "audit: cannot format an entry for the sinks");
        *failed_at = e.seq;
        return sinks_emit(ctx, &e);
    }
    if (batch_open(ctx->audit.mac, b, n, &v, pbuf) != KM_OK)
        return km__err(KM_E_INTERNAL, "audit: cannot format an entry for the sinks");
    for (i = 0; i < v.count; i++) {
        *failed_at = v.first + i;
        if (batch_entry(ctx->audit.mac, &v, i, pbuf, &e) != KM_OK)
            return km__err(KM_E_INTERNAL, "audit: cannot format an entry for the sinks");
        if ((rc = sinks_emit(ctx, &e)) != KM_OK)
            return rc;
    }
    return KM_OK;
}

/* The entries a transaction appended, for the sinks once it commits. */
typedef struct sink_batch {
    struct km_ctx *ctx;
    uint8_t *buf;        /* n x (BE32 length || layout-1 entry or layout-2 record) */
    size_t len, cap;
} sink_batch;

static void sinks_after(void *arg, int committed)
{
    sink_batch *b = arg;
    struct km_ctx *ctx = b->ctx;
    size_t at = 0, n;
    uint64_t failed_at;

    if (committed) {
        pthread_mutex_lock(&ctx->audit.kmu);
        while (at + 4 <= b->len) {
            n = km__be32_get(b->buf + at);
            /* the change stands (its entry is in the vault's log); the next
             * change is refused until the sink is set again */
            if (ctx->audit.sink_failed == 0 && (ctx->audit.syslog || ctx->audit.fd >= 0)
                && sinks_write(ctx, b->buf + at + 4, n, &failed_at) != KM_OK)
                ctx->audit.sink_failed = failed_at;
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

/* The context's encoding buffer, kept between batches (no secrets in it):
 * at least `need` bytes from `at` on. */
static int buf_reserve(struct km_ctx *ctx, size_t at, size_t need)
{
    size_t ncap;
    uint8_t *nb;

    if (ctx->audit.bufcap - at >= need)
        return KM_OK;
    ncap = ctx->audit.bufcap ? ctx->audit.bufcap * 2 : 64 * 1024;
    while (ncap - at < need)
        ncap *= 2;
    if ((nb = realloc(ctx->audit.buf, ncap)) == NULL)
        return km__err(KM_E_NOMEM, "audit: out of memory");
    ctx->audit.buf = nb;
    ctx->audit.bufcap = ncap;
    return KM_OK;
}

/* Puts the record of entries from `first` (ctx->audit.buf, len bytes) and
 * keeps it for the sinks. */
static int record_put(struct km_ctx *ctx, km__txn *t, const km__sealer *s, uint64_t first,
                      size_t len)
{
    uint8_t seqb[8];
    int rc;

    km__be64_put(seqb, first);
    rc = km__rec_put(t, s, KM__T_AUDIT, seqb, 8, ctx->audit.buf, len, KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS)
        rc = km__err(KM_E_CORRUPT, "audit entry %llu exists beyond the stored head",
                     (unsigned long long)first);
    if (rc == KM_OK && is_batch(ctx->audit.buf, len))
        rc = sinks_queue(ctx, t, ctx->audit.buf, len);
    return rc;
}

/* Layout 2: the data-path entries p[0..count) as records of at most
 * B_ENTRIES_MAX entries and B_KEYS_MAX keys, each with one hash and one MAC,
 * chained to h (which moves to the last entry); *last: the time floor. */
static int batch_append(struct km_ctx *ctx, km__txn *t, const km__sealer *s, const entry_in *p,
                        size_t count, km_audit_head *h, int64_t *last)
{
    uint8_t (*keys)[16];
    uint16_t *slots;
    size_t i = 0, j, at, nl, pl;
    uint32_t nkeys;
    uint8_t *b, *e;
    int64_t base;
    int rc;

    /* the record, then the key table and its index (the context's buffer) */
    if ((rc = buf_reserve(ctx, 0, B_SCRATCH + 16 * B_KEYS_MAX + 2 * B_SLOTS)) != KM_OK)
        return rc;
    b = ctx->audit.buf;
    keys = (uint8_t (*)[16])(void *)(b + B_SCRATCH);
    slots = (uint16_t *)(void *)(b + B_SCRATCH + 16 * B_KEYS_MAX);
    nl = strlen(ctx->principal_name);
    pl = ctx->delegated ? strlen(ctx->peer) : 0;
    nl = nl > 255 ? 255 : nl;
    pl = pl > 255 ? 255 : pl;
    while (i < count) {
        b[0] = B_MAGIC;
        km__be64_put(b + 1, h->seq + 1);
        memcpy(b + 13, h->hash, 32);
        base = p[i].time < *last ? *last : p[i].time;
        km__be64_put(b + 45, (uint64_t)base);
        at = B_HDR;
        b[at++] = (uint8_t)nl;
        memcpy(b + at, ctx->principal_name, nl);
        at += nl;
        b[at++] = (uint8_t)pl;
        memcpy(b + at, ctx->peer, pl);
        at += pl;
        nkeys = 0;
        memset(slots, 0xff, 2 * B_SLOTS);
        for (j = i; j < count && j - i < B_ENTRIES_MAX; j++) {
            /* audit time never goes back: an entry is never older than the
             * one before it, whatever clock the caller had */
            int64_t tm = p[j].time < *last ? *last : p[j].time;
            uint32_t ki = B_NOKEY;
            if ((uint64_t)(tm - base) > UINT32_MAX)
                break;
            if (p[j].has_key && (ki = batch_key(keys, &nkeys, slots, p[j].key_id)) == B_NOKEY)
                break;
            e = b + at;
            km__be32_put(e, (uint32_t)(tm - base));
            be16_put(e + 4, (uint32_t)p[j].op);
            km__be32_put(e + 6, (uint32_t)p[j].result);
            be16_put(e + 10, ki);
            km__be32_put(e + 12, ki != B_NOKEY ? p[j].version : 0);
            at += B_ENTRY;
            *last = tm;
        }
        km__be32_put(b + 9, (uint32_t)(j - i));
        be16_put(b + at, nkeys);
        memcpy(b + at + 2, keys, (size_t)nkeys * 16);
        at += 2 + (size_t)nkeys * 16;
        if ((rc = km__mac_sha256(ctx->audit.mac, b, at, h->hash)) != KM_OK
            || (rc = km__mac_compute(ctx->audit.mac, h->hash, 32, b + at)) != KM_OK)
            return rc;
        at += 32;
        h->seq += j - i;
        if ((rc = batch_entry_hash(ctx->audit.mac, h->hash, h->seq, h->hash)) != KM_OK
            || (rc = record_put(ctx, t, s, h->seq - (j - i) + 1, at)) != KM_OK)
            return rc;
        i = j;
    }
    return KM_OK;
}

/* Appends `count` entries in the caller's write transaction, for the sinks
 * once it commits: data-path entries (no detail: the queue's) in layout-2
 * records, others as ONE layout-1 record (n x (BE32 length || entry)).
 * Called with kmu held. */
int km__audit_append_entries(struct km_ctx *ctx, km__txn *t, const km__sealer *s,
                          const entry_in *p, size_t count)
{
    km_audit_head h;
    wfield wf;
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
    if (!wf.checkpoint && wf.writes_len == 0 && batchable(p, count)) {
        rc = batch_append(ctx, t, s, p, count, &h, &last);
    } else {
        for (i = 0; i < count; i++) {
            entry_in in = p[i];
            uint8_t *e;
            /* audit time never goes back (as in batch_append) */
            if (in.time < last)
                in.time = last;
            last = in.time;
            if ((rc = buf_reserve(ctx, at, ENTRY_MAX + 4)) != KM_OK)
                return rc;
            e = ctx->audit.buf + at + 4;
            if ((rc = entry_encode(ctx, h.seq + 1, &in, i + 1 == count ? &wf : NULL, h.hash, e,
                                   &len, h.hash)) != KM_OK)
                return rc;
            km__be32_put(ctx->audit.buf + at, (uint32_t)len);
            if ((rc = sinks_queue(ctx, t, e, len)) != KM_OK)
                return rc;
            at += 4 + len;
            h.seq++;
        }
        rc = record_put(ctx, t, s, first, at);
    }
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
    if (key_id != NULL)
        memcpy(p.key_id, key_id, 16);
    p.version = key_id != NULL ? version : 0;
    p.detail = d;
    /* kmu is innermost: taken with the LMDB write lock held, never the other way */
    pthread_mutex_lock(&ctx->audit.kmu);
    rc = km__audit_append_entries(ctx, t, s, &p, 1);
    pthread_mutex_unlock(&ctx->audit.kmu);
    return rc;
}


/* ------------------------------------------------------------- scanning */

/* One entry of a layout-1 record: decoded, its MAC checked. */
static int walk_v1(km__mac *m, uint64_t s, const uint8_t *b, size_t n, km__audit_raw_fn fn,
                   void *arg)
{
    km__audit_item it;
    char pbuf[128], dbuf[DETAIL_MAX + 1];

    it.raw = b;
    it.raw_len = n;
    if (km__audit_entry_decode(m, b, n, &it.e, it.prev, pbuf, dbuf) != KM_OK || it.e.seq != s)
        return km__err(KM_E_INTEGRITY, "audit entry %llu is malformed or fails its MAC",
                       (unsigned long long)s);
    return fn(&it, arg);
}

/* Every entry of a layout-2 record keyed `s` (its MAC checked once);
 * *next: the sequence after it, or the entry fn stopped at. */
static int walk_batch(km__mac *m, uint64_t s, const uint8_t *b, size_t n, km__audit_raw_fn fn,
                      void *arg, uint64_t *next)
{
    km__audit_item it;
    batch_view v;
    char pbuf[128];
    uint32_t i;
    int rc;

    *next = s;
    if (batch_open(m, b, n, &v, pbuf) != KM_OK || v.first != s)
        return km__err(KM_E_INTEGRITY, "audit record %llu (a batch) is malformed or fails its "
                                       "MAC", (unsigned long long)s);
    it.raw = NULL;
    it.raw_len = 0;
    memcpy(it.prev, v.prev, 32);
    for (i = 0; i < v.count; i++) {
        *next = s + i;
        if (batch_entry(m, &v, i, pbuf, &it.e) != KM_OK)
            return km__err(KM_E_INTEGRITY, "audit entry %llu (in the batch of record %llu) is "
                                           "malformed", (unsigned long long)(s + i),
                           (unsigned long long)s);
        if ((rc = fn(&it, arg)) != KM_OK)
            return rc;
        memcpy(it.prev, it.e.hash, 32);
    }
    *next = s + v.count;
    return KM_OK;
}

int km__audit_records(struct km_ctx *ctx, km__txn *t, km__mac *m, uint64_t from, uint64_t to,
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
        if (is_batch(p, left)) {
            rc = walk_batch(m, s, p, left, fn, arg, &s);
            if (rc != KM_OK)
                goto stopped;
            left = 0;
        }
        while (left > 0) {
            if (left < 4 || (len = km__be32_get(p)) == 0 || len > left - 4 || len > ENTRY_MAX) {
                wk->bad = s;
                rc = km__err(KM_E_INTEGRITY, "audit record %llu is malformed at entry %llu",
                             (unsigned long long)first, (unsigned long long)s);
                goto out;
            }
            if ((rc = walk_v1(m, s, p + 4, len, fn, arg)) != KM_OK)
                goto stopped;
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
    goto out;
stopped:
    /* a bad entry, or fn stopped the walk (> 0) or failed (< 0) at s */
    wk->next = s;
    if (rc == KM_E_INTEGRITY && wk->bad == 0)
        wk->bad = s;
    if (rc > 0)
        rc = 1;
out:
    km_secret_free(rec);
    return rc;
}

/* km__audit_scan's step. */
typedef struct scan_arg {
    km__audit_scan_fn fn;
    void *arg;
} scan_arg;

static int scan_entry(const km__audit_item *it, void *arg)
{
    scan_arg *a = arg;
    return a->fn(&it->e, a->arg);
}

int km__audit_scan(struct km_ctx *ctx, km__txn *t, uint64_t from, km__audit_scan_fn fn,
                   void *arg)
{
    km_audit_head h;
    km__audit_walked wk;
    scan_arg a = { fn, arg };
    km__mac *m = NULL;
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
        rc = km__mac_new(&m, km_secret_data(ctx->audit.key), 32);
    pthread_mutex_unlock(&ctx->audit.kmu);
    if (rc != KM_OK)
        return rc == KM_E_NOTFOUND
                   ? km__err(KM_E_INTEGRITY, "audit log: the MAC key record is missing") : rc;
    rc = km__audit_records(ctx, t, m, from, h.seq, scan_entry, &a, &wk);
    km__mac_free(m);
    return rc < 0 ? rc : KM_OK;
}
