/* audit_chain.c - the catalog explained by the audit chain (issue 18,
 * docs/SECURITY.md): every state change's entry lists the records its
 * transaction wrote (table, key, SHA-256 of the sealed value before and
 * after, store.h's write log) or, for a change that rewrites everything,
 * carries a checkpoint (one SHA-256 over the whole catalog). km_audit_verify
 * replays the entries from the last checkpoint on and compares the result
 * with the records: one whose bytes differ from the last entry that wrote
 * it, one the chain deleted, or a record unchanged since the checkpoint that
 * differs from it, is named (KM_E_INTEGRITY). A record restored from an
 * older copy, with or without the older audit table and head, fails.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One write of a record, in chain order (idx). */
typedef struct witem {
    uint8_t tbl, klen, flags;
    uint8_t key[255];
    uint8_t before[32], after[32];
    uint64_t seq;
    size_t idx;
} witem;

struct km__audit_chain {
    witem *w;
    size_t n, cap;
    int have_cp;
    uint64_t cp_seq;
    uint8_t cp[32];
};

int km__audit_checkpoint(struct km_ctx *ctx, km__txn *t)
{
    (void)ctx;
    if (!km__txn_is_write(t))
        return km__err(KM_E_INVALID, "km__audit_checkpoint: read-only transaction");
    km__txn_writes_all(t);
    return KM_OK;
}

int km__audit_chain_new(km__audit_chain **out)
{
    if ((*out = calloc(1, sizeof **out)) == NULL)
        return km__err(KM_E_NOMEM, "audit: out of memory");
    return KM_OK;
}

void km__audit_chain_free(km__audit_chain *c)
{
    if (c == NULL)
        return;
    free(c->w);
    free(c);
}

int km__audit_chain_entry(km__audit_chain *c, uint64_t seq, const uint8_t *b, size_t n)
{
    const uint8_t *log, *cp, *key, *before, *after;
    size_t len, at = 0, klen;
    km__table tbl;
    unsigned flags;
    int r;

    if (km__audit_entry_catalog(b, n, &log, &len, &cp) != KM_OK)
        return km__err(KM_E_INTEGRITY, "audit entry %llu has a malformed checkpoint",
                       (unsigned long long)seq);
    if (cp != NULL) {
        c->n = 0;   /* everything before is summed up in the checkpoint */
        c->have_cp = 1;
        c->cp_seq = seq;
        memcpy(c->cp, cp, 32);
    }
    while ((r = km__wlog_item(log, len, &at, &tbl, &key, &klen, &flags, &before, &after)) == 1) {
        witem *w;
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            witem *nw = realloc(c->w, ncap * sizeof *nw);
            if (nw == NULL)
                return km__err(KM_E_NOMEM, "audit: out of memory");
            c->w = nw;
            c->cap = ncap;
        }
        w = &c->w[c->n];
        w->tbl = (uint8_t)tbl;
        w->klen = (uint8_t)klen;
        w->flags = (uint8_t)flags;
        memcpy(w->key, key, klen);
        memcpy(w->before, before, 32);
        memcpy(w->after, after, 32);
        w->seq = seq;
        w->idx = c->n++;
    }
    if (r < 0)
        return km__err(KM_E_INTEGRITY, "audit entry %llu has a malformed write list",
                       (unsigned long long)seq);
    return KM_OK;
}

/* The stores' key order (LMDB's default, etcd's): bytes, then length. */
static int key_cmp(uint8_t ta, const uint8_t *a, size_t al, uint8_t tb, const uint8_t *b,
                   size_t bl)
{
    int r;

    if (ta != tb)
        return ta < tb ? -1 : 1;
    r = memcmp(a, b, al < bl ? al : bl);
    if (r != 0)
        return r;
    return al < bl ? -1 : al > bl;
}

static int witem_cmp(const void *pa, const void *pb)
{
    const witem *a = pa, *b = pb;
    int r = key_cmp(a->tbl, a->key, a->klen, b->tbl, b->key, b->klen);

    if (r != 0)
        return r;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* The check's state: the sorted writes, each record's group [first, last]. */
typedef struct check {
    km__audit_chain *c;
    km__cdigest *d;        /* the catalog as it was at the checkpoint */
    witem *at_cp;          /* items of the reconstructed checkpoint, sorted */
    size_t ncp, capcp;
    uint64_t bad;
} check;

static int name_err(check *k, uint64_t seq, uint8_t tbl, const uint8_t *key, size_t klen,
                    const char *what)
{
    char hex[2 * 16 + 3];
    size_t i, m = klen < 16 ? klen : 16;

    for (i = 0; i < m; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    if (klen > m)
        snprintf(hex + 2 * m, 3, "..");
    k->bad = seq;
    return km__err(KM_E_INTEGRITY, "vault record %s/%s %s (audit entry %llu)",
                   km__table_name((km__table)tbl), hex, what, (unsigned long long)seq);
}

/* The group of writes of (tbl, key): [*first, *last) in c->w, or none. */
static int group_find(const km__audit_chain *c, uint8_t tbl, const uint8_t *key, size_t klen,
                      size_t *first, size_t *last)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {   /* the first item not below (tbl, key) */
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(c->w[mid].tbl, c->w[mid].key, c->w[mid].klen, tbl, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == c->n || key_cmp(c->w[lo].tbl, c->w[lo].key, c->w[lo].klen, tbl, key, klen) != 0)
        return 0;
    *first = lo;
    for (hi = lo; hi < c->n && key_cmp(c->w[hi].tbl, c->w[hi].key, c->w[hi].klen, tbl, key,
                                       klen) == 0; hi++)
        c->w[hi].flags |= 0x80;   /* seen in the catalog */
    *last = hi;
    return 1;
}

static int cp_add(check *k, uint8_t tbl, const uint8_t *key, size_t klen, const uint8_t h[32])
{
    witem *w;

    if (k->ncp == k->capcp) {
        size_t ncap = k->capcp ? k->capcp * 2 : 256;
        witem *nw = realloc(k->at_cp, ncap * sizeof *nw);
        if (nw == NULL)
            return km__err(KM_E_NOMEM, "audit: out of memory");
        k->at_cp = nw;
        k->capcp = ncap;
    }
    w = &k->at_cp[k->ncp];
    w->tbl = tbl;
    w->klen = (uint8_t)klen;
    memcpy(w->key, key, klen);
    memcpy(w->after, h, 32);
    w->idx = k->ncp++;
    return KM_OK;
}

static int check_one(km__table tbl, const uint8_t *key, size_t key_len, const uint8_t hash[32],
                     void *arg)
{
    check *k = arg;
    size_t first, last;
    const witem *lw;

    if (!group_find(k->c, (uint8_t)tbl, key, key_len, &first, &last))
        return cp_add(k, (uint8_t)tbl, key, key_len, hash);   /* unchanged since the checkpoint */
    lw = &k->c->w[last - 1];
    if (!(lw->flags & KM__WLOG_AFTER))
        return name_err(k, lw->seq, (uint8_t)tbl, key, key_len,
                        "exists but the audit log deleted it");
    if (!km_ct_equal(lw->after, hash, 32))
        return name_err(k, lw->seq, (uint8_t)tbl, key, key_len,
                        "differs from what the audit log last wrote (rolled back or changed "
                        "outside the log)");
    return KM_OK;
}

int km__audit_chain_check(km__audit_chain *c, km__txn *t, int required, uint64_t *bad_seq)
{
    check k;
    uint8_t dg[32];
    size_t i;
    int rc;

    *bad_seq = 0;
    if (!c->have_cp) {
        if (!required)
            return KM_OK;   /* a vault older than the write lists */
        return km__err(KM_E_INTEGRITY, "audit log holds no catalog checkpoint (the audit "
                                       "table was replaced by an older one)");
    }
    memset(&k, 0, sizeof k);
    k.c = c;
    if (c->n > 1)   /* qsort's array may not be NULL, even for 0 */
        qsort(c->w, c->n, sizeof *c->w, witem_cmp);
    /* each write starts from what the one before it left */
    for (i = 1; i < c->n; i++) {
        const witem *a = &c->w[i - 1], *b = &c->w[i];
        if (key_cmp(a->tbl, a->key, a->klen, b->tbl, b->key, b->klen) != 0)
            continue;
        if (((a->flags & KM__WLOG_AFTER) != 0) != ((b->flags & KM__WLOG_BEFORE) != 0)
            || ((b->flags & KM__WLOG_BEFORE) && !km_ct_equal(a->after, b->before, 32))) {
            rc = name_err(&k, b->seq, b->tbl, b->key, b->klen,
                          "was changed between two entries outside the log");
            goto out;
        }
    }
    if ((rc = km__catalog_walk(t, check_one, &k)) != KM_OK)
        goto out;
    for (i = 0; i < c->n; i++) {
        witem *w = &c->w[i];
        int first = i == 0 || key_cmp(c->w[i - 1].tbl, c->w[i - 1].key, c->w[i - 1].klen,
                                      w->tbl, w->key, w->klen) != 0;
        int lastw = i + 1 == c->n || key_cmp(c->w[i + 1].tbl, c->w[i + 1].key,
                                             c->w[i + 1].klen, w->tbl, w->key, w->klen) != 0;
        if (lastw && !(w->flags & 0x80) && (w->flags & KM__WLOG_AFTER)) {
            rc = name_err(&k, w->seq, w->tbl, w->key, w->klen,
                          "is missing but the audit log wrote it");
            goto out;
        }
        /* as it was at the checkpoint */
        if (first && (w->flags & KM__WLOG_BEFORE)
            && (rc = cp_add(&k, w->tbl, w->key, w->klen, w->before)) != KM_OK)
            goto out;
    }
    if (k.ncp > 1)
        qsort(k.at_cp, k.ncp, sizeof *k.at_cp, witem_cmp);
    if ((rc = km__catalog_digest_new(&k.d)) != KM_OK)
        goto out;
    for (i = 0; i < k.ncp && rc == KM_OK; i++)
        rc = km__catalog_digest_add(k.d, (km__table)k.at_cp[i].tbl, k.at_cp[i].key,
                                    k.at_cp[i].klen, k.at_cp[i].after);
    if (rc == KM_OK)
        rc = km__catalog_digest_end(k.d, dg);
    else
        (void)km__catalog_digest_end(k.d, dg);
    if (rc == KM_OK && !km_ct_equal(dg, c->cp, 32)) {
        k.bad = c->cp_seq;
        rc = km__err(KM_E_INTEGRITY, "vault records unchanged since the catalog checkpoint "
                                     "(audit entry %llu) differ from it (rolled back or changed "
                                     "outside the log)", (unsigned long long)c->cp_seq);
    }
out:
    free(k.at_cp);
    *bad_seq = k.bad;
    return rc;
}
