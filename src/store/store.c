/*
 * store.c - the catalog store above its implementations (store.h): the
 * scheme table, transactions and raw records dispatched to the
 * implementation, records sealed with AES-256-GCM, the vault meta, opening
 * (create or unlock) a vault, rekey's storage part, and the fault hook.
 *
 * The vault meta (table meta):
 *   "format"        1 byte, the vault format (1 to 4)        unsealed
 *   "vault-id"      16 random bytes                          unsealed
 *   "auth-failures" BE64 failed unlocks since the last good  unsealed
 *   "check"         sealed copy of format || vault-id: a downgraded or
 *                   swapped unsealed entry fails the open (KM_E_CORRUPT)
 * Keyslots are raw records of table slots (keyslot.c), each with its MAC from
 * format 3 on; every other record
 * is sealed: [1][nonce 12][ciphertext][tag 16], AAD = "km-rec" || 1 ||
 * table name || 0 || record key.
 */
#include "store_int.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1: the first format; 2: the same records, and the vault's policy is always
 * stored (a missing policy record is refused: km__store_format_upgrade moves a
 * format-1 vault up at its first open); 3: every keyslot carries its MAC
 * (keyslot.c), checked at every open. Older libkm refuses a newer format
 * with KM_E_UNSUPPORTED. 4: audit entries explain the catalog (store.h). 5: the
 * version records live in the key records (src/core/key_format.c). */
#define VAULT_FORMAT 5

#define REC_FORMAT 1
#define REC_NONCE 12
#define REC_TAG 16
#define REC_OVERHEAD (1 + REC_NONCE + REC_TAG)
#define REC_MAX ((size_t)16 << 20)  /* largest plaintext (the km_secret limit) */
#define KEY_MAX KM__STORE_KEY_MAX
#define AAD_PREFIX "km-rec"
#define AAD_MAX (sizeof AAD_PREFIX - 1 + 1 + 16 + 1 + KEY_MAX)

static const char *const table_names[KM__T__COUNT] = {
    [KM__T_META] = "meta",         [KM__T_SLOTS] = "slots",
    [KM__T_KEYS] = "keys",         [KM__T_NAMES] = "names",
    [KM__T_VMETA] = "vmeta",       [KM__T_MATERIAL] = "material",
    [KM__T_COUNTERS] = "counters", [KM__T_AUDIT] = "audit",
};

static const char META_FORMAT[] = "format";
static const char META_VAULT_ID[] = "vault-id";
static const char META_CHECK[] = "check";
/* unsealed: failed authentications since the last successful open (no
 * master key is at hand to seal it); turned into an audit entry then */
static const char META_AUTH_FAILS[] = "auth-failures";

struct km__sealer {
    uint8_t *keys;              /* secure memory: [0,32) record seal, [32,64) name index */
    km__gcmk *seal;             /* the record-seal key, pre-keyed contexts */
    km__hmack *names;           /* the name-index key, pre-keyed */
    /* Set (before the commit) when km__vault_rekey replaced this sealer:
     * km__rec_put then refuses to write with it. */
    atomic_int retired;
    /* Sealers and master keys replaced by rekeys of the owning context, kept
     * alive (a thread may still be using them) until this one is freed. */
    struct km__sealer *prev;
    km_secret *prev_master;
};
#define SEALER_KEYS_LEN 64

const char *km__table_name(km__table tbl)
{
    return (unsigned)tbl < (unsigned)KM__T__COUNT ? table_names[tbl] : NULL;
}

static int table_ok(km__table tbl)
{
    return (unsigned)tbl < (unsigned)KM__T__COUNT;
}

/* ------------------------------------------------------------ the schemes */

/* The store implementations by URI scheme; the first row is the default
 * (a bare path). A new store is one row. */
static const km__store_ops *const stores[] = {
    &km__store_lmdb,
#ifdef KM_HAVE_ETCD
    &km__store_etcd,
#endif
};

atomic_uint km__store_changes;

int km__store_find(const char *uri, const km__store_ops **ops, const char **location)
{
    const char *path = NULL;
    size_t i, n;

    *ops = NULL;
    *location = NULL;
    for (i = 0; i < sizeof stores / sizeof stores[0]; i++) {
        n = strlen(stores[i]->scheme);
        if (strncmp(uri, stores[i]->scheme, n) == 0 && uri[n] == ':') {
            *ops = stores[i];
            path = uri + n + 1;
            if (strncmp(path, "//", 2) == 0) /* lmdb:///abs/path */
                path += 2;
            break;
        }
    }
    if (*ops == NULL) {
        if (strchr(uri, ':') != NULL && uri[0] != '/' && uri[0] != '.')
            return km__err(KM_E_INVALID, "km_open: unknown URI scheme (expected lmdb:/path"
#ifdef KM_HAVE_ETCD
                                          " or etcd://HOST:PORT/PREFIX"
#endif
                                          ")");
        *ops = stores[0];
        path = uri;
    }
    if (path[0] == '\0')
        return km__err(KM_E_INVALID, "km_open: the URI names no directory");
    if (strlen(path) > 4000)
        return km__err(KM_E_INVALID, "km_open: path too long");
    *location = path;
    return KM_OK;
}

/* ------------------------------------------------------- fault injection */

/* A test hook (tests/check_faults.c), reachable only through the internal
 * library: every write step of the store (a put, a delete, a commit, the
 * moment after a commit, a file step of compaction) counts, and at step
 * `fault_at` the process kills itself with SIGKILL, as a crash there would.
 * fault_at = 0 (the default) disables it; ULONG_MAX only counts. */
static atomic_ulong fault_at, fault_count;

void km__fault_arm(unsigned long at)
{
    atomic_store(&fault_count, 0);
    atomic_store(&fault_at, at);
}

unsigned long km__fault_steps(void)
{
    return atomic_load(&fault_count);
}

void km__fault_step(void)
{
    unsigned long at = atomic_load_explicit(&fault_at, memory_order_relaxed);
    if (at == 0)
        return;
    if (atomic_fetch_add(&fault_count, 1) + 1 == at)
        (void)kill(getpid(), SIGKILL);
}

/* ------------------------------------------------------------ transactions */

int km__txn_begin(km__store *st, int write, km__txn **out)
{
    km__txn *t;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__txn_begin: out is NULL");
    *out = NULL;
    if (st == NULL)
        return km__err(KM_E_INVALID, "km__txn_begin: env is NULL");
    t = calloc(1, st->ops->txn_size);
    if (t == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    t->st = st;
    t->write = write != 0;
    if ((rc = st->ops->txn_begin(st, t->write, t)) != KM_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return KM_OK;
}

int km__txn_commit(km__txn *t)
{
    int rc;

    if (t == NULL)
        return km__err(KM_E_INVALID, "km__txn_commit: transaction is NULL");
    if (t->err != KM_OK) {
        t->st->ops->txn_abort(t);
        rc = km__err_native(t->err, t->native_kind, t->native,
                            "vault transaction aborted after a failed write: %s", t->why);
    } else {
        km__fault_step();   /* before the commit */
        rc = t->st->ops->txn_commit(t);
        if (rc == KM_OK)
            km__fault_step();   /* committed, before the caller hears of it */
    }
    if (t->done != NULL)   /* records no error (the commit's stays the last) */
        t->done(t->done_arg, rc == KM_OK);
    free(t->wlog);
    free(t);
    return rc;
}

void km__txn_abort(km__txn *t)
{
    if (t == NULL)
        return;
    t->st->ops->txn_abort(t);
    if (t->done != NULL)
        t->done(t->done_arg, 0);
    free(t->wlog);
    free(t);
}

void *km__txn_on_done(km__txn *t, km__txn_done_fn fn, void *arg)
{
    if (t->done == fn)
        return t->done_arg;
    t->done = fn;
    t->done_arg = arg;
    return NULL;
}

int km__txn_is_write(const km__txn *t)
{
    return t != NULL && t->write;
}

int km__txn_writable(const char *fn, km__txn *t)
{
    if (!t->write)
        return km__err(KM_E_INVALID, "%s: read-only transaction", fn);
    if (t->err != KM_OK)
        return km__err_native(t->err, t->native_kind, t->native,
                              "%s: the transaction already failed", fn);
    return KM_OK;
}

/* A write failed in the implementation (recorded there): the transaction
 * can only abort from now on. */
static int txn_fail(km__txn *t, int rc)
{
    const km_error *e = km_error_last();

    t->err = rc;
    t->native_kind = e->native_kind;
    t->native = e->native;
    snprintf(t->why, sizeof t->why, "%s", e->message);
    return rc;
}

int km__table_count(km__txn *t, km__table tbl, uint64_t *out)
{
    *out = 0;
    if (t == NULL || !table_ok(tbl))
        return km__err(KM_E_INVALID, "km__table_count: bad arguments");
    return t->st->ops->count(t, tbl, out);
}

/* ------------------------------------------------------------ write log */

static const char META_AUDIT_HEAD[] = "audit-head";

static int meta_is(const uint8_t *key, size_t key_len, const char *name, size_t name_len);

/* A record whose changes the audit chain explains (store.h); key NULL: the
 * table holds some. */
static int wlog_tracked(km__table tbl, const void *key, size_t key_len)
{
    if (tbl == KM__T_AUDIT || tbl == KM__T_COUNTERS)
        return 0;
    if (tbl != KM__T_META || key == NULL)
        return 1;
    return !meta_is(key, key_len, META_AUDIT_HEAD, sizeof META_AUDIT_HEAD - 1)
        && !meta_is(key, key_len, META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1);
}

static int sha256_1(const uint8_t *b, size_t n, uint8_t out[32])
{
    return km__sha256v(&b, &n, 1, out);
}

/* Logs a put (val) or a delete (val NULL) before it is made. */
static int wlog_add(km__txn *t, km__table tbl, const void *key, size_t key_len,
                    const uint8_t *val, size_t val_len)
{
    const uint8_t *old = NULL;
    size_t old_len = 0, need = KM__WLOG_ITEM_MIN + key_len;
    uint8_t *p;
    unsigned flags = 0;
    int rc;

    if (!wlog_tracked(tbl, key, key_len) || key_len > 255)
        return KM_OK;
    if (t->wlog_cap - t->wlog_len < need) {
        size_t ncap = t->wlog_cap ? t->wlog_cap * 2 : 1024;
        uint8_t *nb;
        while (ncap - t->wlog_len < need)
            ncap *= 2;
        if ((nb = realloc(t->wlog, ncap)) == NULL)
            return txn_fail(t, km__err(KM_E_NOMEM, "vault: out of memory"));
        t->wlog = nb;
        t->wlog_cap = ncap;
    }
    p = t->wlog + t->wlog_len;
    memset(p, 0, need);
    p[0] = (uint8_t)tbl;
    p[1] = (uint8_t)key_len;
    memcpy(p + 2, key, key_len);
    rc = t->st->ops->get(t, tbl, key, key_len, &old, &old_len);
    if (rc == KM_OK) {
        flags |= KM__WLOG_BEFORE;
        rc = sha256_1(old, old_len, p + 3 + key_len);
    } else if (rc == KM_E_NOTFOUND) {
        rc = KM_OK;
    }
    if (rc == KM_OK && val != NULL) {
        flags |= KM__WLOG_AFTER;
        rc = sha256_1(val, val_len, p + 3 + key_len + 32);
    }
    if (rc != KM_OK)
        return txn_fail(t, rc);
    p[2 + key_len] = (uint8_t)flags;
    t->wlog_len += need;
    return KM_OK;
}

int km__txn_writes(km__txn *t, const uint8_t **log, size_t *len)
{
    *log = t->wlog + t->wlog_off;
    *len = t->wlog_len - t->wlog_off;
    return t->wlog_all;
}

void km__txn_writes_taken(km__txn *t)
{
    t->wlog_off = t->wlog_len;
    t->wlog_all = 0;
}

void km__txn_writes_all(km__txn *t)
{
    t->wlog_all = 1;
}

int km__wlog_item(const uint8_t *log, size_t log_len, size_t *at, km__table *tbl,
                  const uint8_t **key, size_t *key_len, unsigned *flags, const uint8_t **before,
                  const uint8_t **after)
{
    size_t i = *at, kl;

    if (i == log_len)
        return 0;
    if (log_len - i < KM__WLOG_ITEM_MIN)
        return -1;
    kl = log[i + 1];
    if (log_len - i < KM__WLOG_ITEM_MIN + kl || log[i] >= KM__T__COUNT
        || (log[i + 2 + kl] & ~3u) != 0)
        return -1;
    *tbl = (km__table)log[i];
    *key = log + i + 2;
    *key_len = kl;
    *flags = log[i + 2 + kl];
    *before = log + i + 3 + kl;
    *after = log + i + 3 + kl + 32;
    *at = i + KM__WLOG_ITEM_MIN + kl;
    return 1;
}

typedef struct cat_arg {
    km__table tbl;
    km__catalog_fn fn;
    void *arg;
    int rc;
} cat_arg;

static int cat_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                   void *arg)
{
    cat_arg *a = arg;
    uint8_t h[32];

    if (!wlog_tracked(a->tbl, key, key_len) || key_len > 255)
        return 0;
    if ((a->rc = sha256_1(val, val_len, h)) != KM_OK)
        return 1;
    return (a->rc = a->fn(a->tbl, key, key_len, h, a->arg)) != 0;
}

int km__catalog_walk(km__txn *t, km__catalog_fn fn, void *arg)
{
    cat_arg a;
    int i, rc;

    for (i = 0; i < KM__T__COUNT; i++) {
        if (!wlog_tracked((km__table)i, NULL, 0))
            continue;
        a.tbl = (km__table)i;
        a.fn = fn;
        a.arg = arg;
        a.rc = 0;
        rc = t->st->ops->iter(t, (km__table)i, NULL, 0, cat_one, &a);
        if (a.rc != 0)
            return a.rc;
        if (rc != KM_OK && rc != 1)
            return rc;
    }
    return KM_OK;
}

struct km__cdigest {
    uint8_t *buf;
    size_t len, cap;
};

int km__catalog_digest_new(km__cdigest **out)
{
    if ((*out = calloc(1, sizeof **out)) == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    return KM_OK;
}

int km__catalog_digest_add(km__cdigest *d, km__table tbl, const uint8_t *key, size_t key_len,
                           const uint8_t hash[32])
{
    size_t need = 2 + key_len + 32;

    if (d->cap - d->len < need) {
        size_t ncap = d->cap ? d->cap * 2 : 4096;
        uint8_t *nb;
        while (ncap - d->len < need)
            ncap *= 2;
        if ((nb = realloc(d->buf, ncap)) == NULL)
            return km__err(KM_E_NOMEM, "vault: out of memory");
        d->buf = nb;
        d->cap = ncap;
    }
    d->buf[d->len] = (uint8_t)tbl;
    d->buf[d->len + 1] = (uint8_t)key_len;
    memcpy(d->buf + d->len + 2, key, key_len);
    memcpy(d->buf + d->len + 2 + key_len, hash, 32);
    d->len += need;
    return KM_OK;
}

int km__catalog_digest_end(km__cdigest *d, uint8_t out[32])
{
    int rc = sha256_1(d->buf != NULL ? d->buf : (const uint8_t *)"", d->len, out);

    free(d->buf);
    free(d);
    return rc;
}

static int digest_one(km__table tbl, const uint8_t *key, size_t key_len, const uint8_t hash[32],
                      void *arg)
{
    return km__catalog_digest_add(arg, tbl, key, key_len, hash);
}

int km__catalog_digest(km__txn *t, uint8_t out[32])
{
    km__cdigest *d;
    int rc;

    if ((rc = km__catalog_digest_new(&d)) != KM_OK)
        return rc;
    if ((rc = km__catalog_walk(t, digest_one, d)) != KM_OK) {
        uint8_t junk[32];
        (void)km__catalog_digest_end(d, junk);
        return rc;
    }
    return km__catalog_digest_end(d, out);
}

/* ------------------------------------------------------------ raw records */

int km__raw_get(km__txn *t, km__table tbl, const void *key, size_t key_len, const uint8_t **val,
                size_t *val_len)
{
    return t->st->ops->get(t, tbl, key, key_len, val, val_len);
}

int km__raw_put(km__txn *t, km__table tbl, const void *key, size_t key_len, const void *val,
                size_t val_len, unsigned flags)
{
    int rc;

    km__fault_step();
    if ((rc = wlog_add(t, tbl, key, key_len, val, val_len)) != KM_OK)
        return rc;
    rc = t->st->ops->put(t, tbl, key, key_len, val, val_len, flags);
    if (rc == KM_E_EXISTS)
        return km__err(KM_E_EXISTS, "a record with this key already exists in table %s",
                       table_names[tbl]);
    if (rc != KM_OK)
        return txn_fail(t, rc);
    return KM_OK;
}

int km__raw_del(km__txn *t, km__table tbl, const void *key, size_t key_len)
{
    int rc;

    km__fault_step();
    if ((rc = wlog_add(t, tbl, key, key_len, NULL, 0)) != KM_OK)
        return rc;
    rc = t->st->ops->del(t, tbl, key, key_len);
    if (rc != KM_OK && rc != KM_E_NOTFOUND)
        return txn_fail(t, rc);
    return rc;
}

int km__raw_iter(km__txn *t, km__table tbl, const uint8_t *prefix, size_t prefix_len,
                 km__rec_fn fn, void *arg)
{
    return t->st->ops->iter(t, tbl, prefix, prefix_len, fn, arg);
}

int km__raw_clear(km__txn *t, km__table tbl)
{
    int rc = t->st->ops->clear(t, tbl);

    if (wlog_tracked(tbl, NULL, 0))
        t->wlog_all = 1;

    return rc == KM_OK ? KM_OK : txn_fail(t, rc);
}

/* --------------------------------------------------------- sealed records */

static size_t aad_build(uint8_t aad[AAD_MAX], km__table tbl, const uint8_t *key, size_t key_len)
{
    size_t n = strlen(table_names[tbl]), off = sizeof AAD_PREFIX - 1;

    memcpy(aad, AAD_PREFIX, off);
    aad[off++] = REC_FORMAT;
    memcpy(aad + off, table_names[tbl], n);
    off += n;
    aad[off++] = 0;
    memcpy(aad + off, key, key_len);
    return off + key_len;
}

/* Shape of a stored sealed value; no key needed. */
static int rec_shape(km__table tbl, const uint8_t *p, size_t len)
{
    if (len < REC_OVERHEAD + 1 || len - REC_OVERHEAD > REC_MAX)
        return km__err(KM_E_CORRUPT, "vault record in table %s has an impossible length",
                       table_names[tbl]);
    if (p[0] != REC_FORMAT)
        return km__err(KM_E_CORRUPT, "vault record in table %s has unknown record format %u",
                       table_names[tbl], (unsigned)p[0]);
    return KM_OK;
}

/* Opens a stored value (checked by rec_shape) into `out` (len - REC_OVERHEAD
 * bytes). On failure `out` is zeroed. */
static int rec_unseal(const km__sealer *s, km__table tbl, const uint8_t *key, size_t key_len,
                      const uint8_t *p, size_t len, uint8_t *out)
{
    uint8_t aad[AAD_MAX];
    size_t n = len - REC_OVERHEAD, aad_len;

    if (key_len == 0 || key_len > KEY_MAX)
        return km__err(KM_E_CORRUPT, "vault record in table %s has an impossible key",
                       table_names[tbl]);
    aad_len = aad_build(aad, tbl, key, key_len);
    if (km__gcmk_open(s->seal, p + 1, aad, aad_len, p + 1 + REC_NONCE, n, p + 1 + REC_NONCE + n,
                     out) != KM_OK)
        return km__err(KM_E_CORRUPT, "vault record in table %s failed to open", table_names[tbl]);
    return KM_OK;
}

/* Seals `val` for (tbl, key) into out (val_len + REC_OVERHEAD bytes). */
static int rec_seal(const km__sealer *s, km__table tbl, const uint8_t *key, size_t key_len,
                    const uint8_t *val, size_t val_len, uint8_t *out)
{
    uint8_t aad[AAD_MAX];
    size_t aad_len;
    int rc;

    out[0] = REC_FORMAT;
    if ((rc = km__nonce12(out + 1)) != KM_OK)
        return rc;
    aad_len = aad_build(aad, tbl, key, key_len);
    return km__gcmk_seal(s->seal, out + 1, aad, aad_len, val, val_len, out + 1 + REC_NONCE,
                         out + 1 + REC_NONCE + val_len);
}

static int rec_args(const char *fn, const km__txn *t, km__table tbl, const uint8_t *key,
                    size_t key_len)
{
    if (t == NULL)
        return km__err(KM_E_INVALID, "%s: transaction is NULL", fn);
    if (!table_ok(tbl))
        return km__err(KM_E_INVALID, "%s: unknown table", fn);
    if (key == NULL || key_len == 0 || key_len > KEY_MAX)
        return km__err(KM_E_INVALID, "%s: key must be 1 to %d bytes", fn, KEY_MAX);
    return KM_OK;
}

int km__rec_get(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, km_secret **out)
{
    const uint8_t *v;
    size_t vlen;
    km_secret *sec = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__rec_get: out is NULL");
    *out = NULL;
    if ((rc = rec_args("km__rec_get", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if (s == NULL)
        return km__err(KM_E_INVALID, "km__rec_get: sealer is NULL");
    if (tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_get: keyslots are not sealed records");
    rc = km__raw_get(t, tbl, key, key_len, &v, &vlen);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no record with this key in table %s", table_names[tbl]);
    if (rc != KM_OK)
        return rc;
    if ((rc = rec_shape(tbl, v, vlen)) != KM_OK)
        return rc;
    if ((rc = km__secret_new_pooled(&sec, vlen - REC_OVERHEAD)) != KM_OK)
        return rc;
    if ((rc = rec_unseal(s, tbl, key, key_len, v, vlen, km_secret_data(sec))) != KM_OK) {
        km_secret_free(sec);
        return rc;
    }
    *out = sec;
    return KM_OK;
}

int km__rec_read(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                 size_t key_len, uint8_t *buf, size_t cap, size_t *len)
{
    const uint8_t *v;
    size_t vlen;
    int rc;

    *len = 0;
    if ((rc = rec_args("km__rec_read", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if (s == NULL || tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_read: no sealer, or a keyslot table");
    rc = km__raw_get(t, tbl, key, key_len, &v, &vlen);
    if (rc != KM_OK) /* KM_E_NOTFOUND quietly: the caller says what was missing */
        return rc;
    if ((rc = rec_shape(tbl, v, vlen)) != KM_OK)
        return rc;
    *len = vlen - REC_OVERHEAD;
    if (*len > cap)
        return KM_E_BUFFER;
    return rec_unseal(s, tbl, key, key_len, v, vlen, buf);
}

int km__rec_put(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, const uint8_t *val, size_t val_len, unsigned flags)
{
    uint8_t *buf;
    int rc;

    if ((rc = rec_args("km__rec_put", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if (s == NULL)
        return km__err(KM_E_INVALID, "km__rec_put: sealer is NULL");
    if (tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_put: keyslots are not sealed records");
    if (val == NULL || val_len == 0 || val_len > REC_MAX)
        return km__err(KM_E_INVALID, "km__rec_put: value must be 1 byte to 16 MiB");
    if (flags & ~(unsigned)KM__PUT_NOOVERWRITE)
        return km__err(KM_E_INVALID, "km__rec_put: unknown flags");
    if ((rc = km__txn_writable("km__rec_put", t)) != KM_OK)
        return rc;
    if (atomic_load(&s->retired))
        return km__err(KM_E_STATE, "the vault was rekeyed while this operation ran; retry it");
    /* the sealed value is not secret: ordinary heap */
    buf = malloc(val_len + REC_OVERHEAD);
    if (buf == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    if ((rc = rec_seal(s, tbl, key, key_len, val, val_len, buf)) == KM_OK)
        rc = km__raw_put(t, tbl, key, key_len, buf, val_len + REC_OVERHEAD, flags);
    free(buf);
    return rc;
}

int km__rec_del(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len)
{
    int rc;

    if ((rc = rec_args("km__rec_del", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if ((rc = km__txn_writable("km__rec_del", t)) != KM_OK)
        return rc;
    rc = km__raw_del(t, tbl, key, key_len);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no record with this key in table %s", table_names[tbl]);
    return rc;
}

/* km__rec_iter's walk: each raw value unsealed into secure scratch. */
typedef struct rec_walk {
    const km__sealer *s;
    km__table tbl;
    km__rec_fn fn;
    void *arg;
    uint8_t *buf;
    size_t cap;
} rec_walk;

static int rec_walk_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                        void *arg)
{
    rec_walk *w = arg;
    size_t n;
    int rc, r;

    if ((rc = rec_shape(w->tbl, val, val_len)) != KM_OK)
        return rc;
    n = val_len - REC_OVERHEAD;
    if (n > w->cap) {
        km__sfree(w->buf, w->cap);
        w->cap = 0;
        w->buf = km__salloc((n + 4095) & ~(size_t)4095);
        if (w->buf == NULL)
            return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        w->cap = (n + 4095) & ~(size_t)4095;
    }
    if ((rc = rec_unseal(w->s, w->tbl, key, key_len, val, val_len, w->buf)) != KM_OK)
        return rc;
    r = w->fn(key, key_len, w->buf, n, w->arg);
    km_memzero(w->buf, n);
    return r;
}

int km__rec_iter(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *prefix,
                 size_t prefix_len, km__rec_fn fn, void *arg)
{
    rec_walk w;
    int rc;

    if (t == NULL || s == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km__rec_iter: %s is NULL",
                       t == NULL ? "transaction" : s == NULL ? "sealer" : "fn");
    if (!table_ok(tbl) || tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_iter: not a table of sealed records");
    if ((prefix == NULL && prefix_len > 0) || prefix_len > KEY_MAX)
        return km__err(KM_E_INVALID, "km__rec_iter: bad prefix");
    memset(&w, 0, sizeof w);
    w.s = s;
    w.tbl = tbl;
    w.fn = fn;
    w.arg = arg;
    rc = km__raw_iter(t, tbl, prefix, prefix_len, rec_walk_one, &w);
    km__sfree(w.buf, w.cap);
    /* fn's stop: its negative code, else KM_OK */
    return rc > 0 ? KM_OK : rc;
}

/* ----------------------------------------------------------------- sealer */

void km__sealer_free(km__sealer *s)
{
    km__sealer *prev;

    while (s != NULL) {
        prev = s->prev;
        km__gcmk_free(s->seal);
        km__hmack_free(s->names);
        km__sfree(s->keys, SEALER_KEYS_LEN);
        km_secret_free(s->prev_master);
        free(s);
        s = prev;
    }
}

int km__sealer_new(km__sealer **out, const km_secret *master)
{
    static const char info_seal[] = "km v1 record seal";
    static const char info_name[] = "km v1 name index";
    km__sealer *s = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__sealer_new: out is NULL");
    *out = NULL;
    if (master == NULL || km_secret_len(master) != KM__MASTER_LEN)
        return km__err(KM_E_INVALID, "km__sealer_new: master must be a %d-byte secret",
                       KM__MASTER_LEN);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    atomic_init(&s->retired, 0);
    s->keys = km__salloc(SEALER_KEYS_LEN);
    if (s->keys == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    rc = km__hkdf_sha256(km_secret_data(master), KM__MASTER_LEN, NULL, 0,
                         (const uint8_t *)info_seal, sizeof info_seal - 1, s->keys, 32);
    if (rc != KM_OK)
        goto out;
    rc = km__hkdf_sha256(km_secret_data(master), KM__MASTER_LEN, NULL, 0,
                         (const uint8_t *)info_name, sizeof info_name - 1, s->keys + 32, 32);
    if (rc != KM_OK)
        goto out;
    if ((rc = km__gcmk_new(&s->seal, s->keys)) != KM_OK
        || (rc = km__hmack_new(&s->names, s->keys + 32, 32)) != KM_OK)
        goto out;
    *out = s;
    s = NULL;
out:
    km__sealer_free(s);
    return rc;
}

int km__sealer_name_hash(const km__sealer *s, const char *name, size_t len, uint8_t out[32])
{
    if (s == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km__sealer_name_hash: %s is NULL",
                       s == NULL ? "sealer" : "out");
    if (name == NULL && len > 0)
        return km__err(KM_E_INVALID, "km__sealer_name_hash: name is NULL");
    return km__hmack_compute(s->names, (const uint8_t *)name, len, out);
}

void km__sealer_retire(km__sealer *new_s, km__sealer *old_s, km_secret *old_master)
{
    /* new_s is fresh from km__sealer_new: its slots are empty */
    new_s->prev = old_s;
    new_s->prev_master = old_master;
}

/* ------------------------------------------------ failed authentications */

static int meta_is(const uint8_t *key, size_t key_len, const char *name, size_t name_len)
{
    return key_len == name_len && memcmp(key, name, key_len) == 0;
}

int km__authfail_get(km__txn *t, uint64_t *n)
{
    const uint8_t *v;
    size_t vlen;
    int rc = km__raw_get(t, KM__T_META, META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1, &v, &vlen);

    *n = 0;
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    if (vlen != 8)
        return km__err(KM_E_CORRUPT, "vault metadata: bad failed-authentication counter");
    *n = km__be64_get(v);
    return KM_OK;
}

int km__authfail_clear(km__txn *t)
{
    int rc = km__raw_del(t, KM__T_META, META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1);

    return rc == KM_E_NOTFOUND ? KM_OK : rc;
}

/* Counts a failed authentication (best effort: a failure to count is not
 * the caller's error). */
static void authfail_bump(km__store *st)
{
    km__txn *t = NULL;
    uint64_t n = 0;
    uint8_t b[8];

    if (km__txn_begin(st, 1, &t) != KM_OK)
        return;
    if (km__authfail_get(t, &n) != KM_OK) {
        km__txn_abort(t);
        return;
    }
    km__be64_put(b, n + 1);
    if (km__raw_put(t, KM__T_META, META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1, b, sizeof b,
                    0) != KM_OK) {
        km__txn_abort(t);
        return;
    }
    (void)km__txn_commit(t);
}

/* --------------------------------------------------------------- vault meta */

/* Reads the unsealed meta. *present = 0 when the store holds no vault;
 * *format (may be NULL) its format byte. */
static int meta_read_fmt(km__txn *t, int *present, uint8_t vault_id[16], uint8_t *format)
{
    const uint8_t *p;
    size_t len;
    int rc;

    *present = 0;
    rc = km__raw_get(t, KM__T_META, META_FORMAT, sizeof META_FORMAT - 1, &p, &len);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    *present = 1;
    if (len != 1 || p[0] == 0)
        return km__err(KM_E_CORRUPT, "vault metadata: bad format entry");
    if (p[0] > VAULT_FORMAT)
        return km__err(KM_E_UNSUPPORTED, "vault format %u is newer than this libkm reads (%d)",
                       (unsigned)p[0], VAULT_FORMAT);
    if (format != NULL)
        *format = p[0];
    rc = km__raw_get(t, KM__T_META, META_VAULT_ID, sizeof META_VAULT_ID - 1, &p, &len);
    if (rc == KM_E_NOTFOUND || (rc == KM_OK && len != 16))
        return km__err(KM_E_CORRUPT, "vault metadata: missing or bad vault id");
    if (rc != KM_OK)
        return rc;
    memcpy(vault_id, p, 16);
    return KM_OK;
}

static int meta_read(km__txn *t, int *present, uint8_t vault_id[16])
{
    return meta_read_fmt(t, present, vault_id, NULL);
}

static void check_value(uint8_t out[17], uint8_t format, const uint8_t vault_id[16])
{
    out[0] = format;
    memcpy(out + 1, vault_id, 16);
}

/* Compares the unsealed meta (format, vault id) with its sealed copy. */
static int check_read(km__txn *t, const km__sealer *s, uint8_t format, const uint8_t vault_id[16])
{
    km_secret *rec = NULL;
    uint8_t want[17];
    int rc;

    rc = km__rec_get(t, s, KM__T_META, (const uint8_t *)META_CHECK, sizeof META_CHECK - 1, &rec);
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_CORRUPT, "vault metadata: the sealed check record is missing");
    if (rc != KM_OK)
        return rc;
    check_value(want, format, vault_id);
    if (km_secret_len(rec) != sizeof want || !km_ct_equal(km_secret_data(rec), want, sizeof want))
        rc = km__err(KM_E_CORRUPT, "vault metadata does not match its sealed copy "
                                   "(downgraded or swapped)");
    km_secret_free(rec);
    return rc;
}

/* Compares the unsealed meta with its sealed copy. */
static int meta_verify(km__txn *t, const km_secret *master, uint8_t format,
                       const uint8_t vault_id[16])
{
    km__sealer *s = NULL;
    int rc;

    if ((rc = km__sealer_new(&s, master)) != KM_OK)
        return rc;
    rc = check_read(t, s, format, vault_id);
    km__sealer_free(s);
    return rc;
}

int km__store_format(km__txn *t, uint32_t *format)
{
    uint8_t id[16], f = 0;
    int present, rc;

    *format = 0;
    if ((rc = meta_read_fmt(t, &present, id, &f)) != KM_OK)
        return rc;
    if (!present)
        return km__err(KM_E_CORRUPT, "vault metadata is missing");
    *format = f;
    return KM_OK;
}

int km__store_format_upgrade(km__txn *t, const km__sealer *s, const km_secret *master,
                             uint32_t format)
{
    uint8_t id[16], chk[17], f = 0, nf = (uint8_t)format;
    int present, rc;

    if (format < 1 || format > VAULT_FORMAT)
        return km__err(KM_E_INVALID, "vault format %u is not one this libkm writes", format);
    if ((rc = meta_read_fmt(t, &present, id, &f)) != KM_OK)
        return rc;
    if (!present)
        return km__err(KM_E_CORRUPT, "vault metadata is missing");
    if ((rc = check_read(t, s, f, id)) != KM_OK)
        return rc;
    if (f >= nf)
        return KM_OK;   /* formats only go up */
    if (f < KM__FORMAT_SLOTS_AUTH && nf >= KM__FORMAT_SLOTS_AUTH
        && (rc = km__slots_authenticate(t, master)) != KM_OK)
        return rc;
    check_value(chk, nf, id);
    if ((rc = km__raw_put(t, KM__T_META, META_FORMAT, sizeof META_FORMAT - 1, &nf, 1, 0)) != KM_OK)
        return rc;
    return km__rec_put(t, s, KM__T_META, (const uint8_t *)META_CHECK, sizeof META_CHECK - 1, chk,
                       sizeof chk, 0);
}

/* ------------------------------------------------------------ open / close */

/* Creates the vault in one write transaction. *raced = 1 when another
 * thread or process created it first (nothing written). */
static int vault_create(km__store *st, const km_open_options *o, uint32_t cost,
                        km_secret **master_out, uint8_t vault_id[16], int *raced)
{
    /* created at format 1: the core stores the policy and moves it to 2 in
     * its first open (a crash in between leaves a format-1 vault that the next
     * open moves up the same way) */
    static const uint8_t format = 1;
    km__txn *t = NULL;
    km__sealer *s = NULL;
    km_secret *master = NULL;
    uint8_t id[16], chk[17];
    int rc, present;

    *raced = 0;
    if ((rc = km__txn_begin(st, 1, &t)) != KM_OK)
        return rc;
    if ((rc = meta_read(t, &present, id)) != KM_OK)
        goto out;
    if (present) {
        *raced = 1;
        goto out;
    }
    if ((rc = km_secret_new(&master, KM__MASTER_LEN)) != KM_OK
        || (rc = km__random(km_secret_data(master), KM__MASTER_LEN)) != KM_OK
        || (rc = km__random(id, sizeof id)) != KM_OK)
        goto out;
    if ((rc = km__raw_put(t, KM__T_META, META_FORMAT, sizeof META_FORMAT - 1, &format, 1,
                          KM__PUT_NOOVERWRITE)) != KM_OK
        || (rc = km__raw_put(t, KM__T_META, META_VAULT_ID, sizeof META_VAULT_ID - 1, id, 16,
                             KM__PUT_NOOVERWRITE)) != KM_OK)
        goto out;
    rc = km__slot_add_passphrase(t, master, o->passphrase, o->passphrase_len, cost);
    if (rc != KM_OK)
        goto out;
    if ((rc = km__sealer_new(&s, master)) != KM_OK)
        goto out;
    check_value(chk, format, id);
    rc = km__rec_put(t, s, KM__T_META, (const uint8_t *)META_CHECK, sizeof META_CHECK - 1, chk,
                     sizeof chk, KM__PUT_NOOVERWRITE);
    if (rc != KM_OK)
        goto out;
    rc = km__txn_commit(t);
    t = NULL;
    if (rc != KM_OK)
        goto out;
    memcpy(vault_id, id, 16);
    *master_out = master;
    master = NULL;
out:
    km__txn_abort(t);
    km__sealer_free(s);
    km_secret_free(master);
    return rc;
}

/* The keyslot of the older form that just opened the vault rewritten as a
 * key-pair slot (docs/SECURITY.md, rotating the master key), in a write
 * transaction of its own. Best effort: a failure (a full or read-only
 * store) leaves the slot as it was, converted at a later open. */
static void slot_convert(km__store *st, const km_secret *master, const km__slot_conv *conv)
{
    km__txn *t = NULL;
    int rc;

    if (conv->kek == NULL)
        return;
    if ((rc = km__txn_begin(st, 1, &t)) == KM_OK && (rc = km__slot_convert(t, master, conv)) == KM_OK) {
        rc = km__txn_commit(t);
        t = NULL;
    }
    km__txn_abort(t);
    if (rc != KM_OK)
        km_error_clear();
}

int km__store_slot_convert(km__txn *t, const km_secret *master, const km__slot_conv *cv)
{
    return km__slot_convert(t, master, cv);
}

/* Unlocks an existing vault. */
static int vault_unlock(km__store *st, const km_open_options *o, const km__slot_unsealer *unseal,
                        km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16],
                        int *present, km__slot_conv *conv)
{
    km__txn *t = NULL;
    km_secret *master = NULL;
    uint8_t id[16], format = 0;
    int rc;

    if ((rc = km__txn_begin(st, 0, &t)) != KM_OK)
        return rc;
    if ((rc = meta_read_fmt(t, present, id, &format)) != KM_OK || !*present)
        goto out;
    if ((o->flags & KM_OPEN_CREATE) && (o->flags & KM_OPEN_EXCL)) {
        rc = km__err(KM_E_EXISTS, "a vault already exists in this directory");
        goto out;
    }
    if ((rc = km__slots_open(t, o, unseal, &master, pid, conv)) != KM_OK)
        goto out;
    if ((rc = meta_verify(t, master, format, id)) != KM_OK)
        goto out;
    /* the format is authentic now: from 3 on, every keyslot must be too */
    if (format >= KM__FORMAT_SLOTS_AUTH && (rc = km__slots_verify(t, master)) != KM_OK)
        goto out;
    memcpy(vault_id, id, 16);
    *master_out = master;
    master = NULL;
out:
    km__txn_abort(t);
    km_secret_free(master);
    return rc;
}

int km__store_open(km__store **out, const km__store_ops *ops, const char *location,
                   const km_open_options *o, const km__slot_unsealer *unseal,
                   km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16])
{
    km__store *st = NULL;
    km_secret *master = NULL;
    km__slot_conv conv = { 0, NULL };
    uint32_t cost;
    int rc, present = 0, raced = 0, attempt;

    if (out != NULL)
        *out = NULL;
    if (master_out != NULL)
        *master_out = NULL;
    if (out == NULL || master_out == NULL || vault_id == NULL || pid == NULL)
        return km__err(KM_E_INVALID, "km__store_open: an output is NULL");
    memset(pid, 0, 16);
    if (ops == NULL || ops->version < 1 || ops->version > KM__STORE_OPS_VERSION)
        return km__err(KM_E_INVALID, "km__store_open: no store implementation of this version");
    if (location == NULL || location[0] == '\0')
        return km__err(KM_E_INVALID, "km__store_open: location is NULL or empty");
    if (o == NULL || o->version < 1 || o->version > KM_OPEN_OPTIONS_VERSION)
        return km__err(KM_E_INVALID, "km__store_open: options missing or of an unknown version");
    if (km__slot_unlock_mode(o) == 0)
        return km__err(KM_E_INVALID, "km__store_open: no passphrase, keyslot backend or shares");
    if (o->passphrase != NULL && (o->passphrase_len == 0 || o->passphrase_len > 1024))
        return km__err(KM_E_INVALID, "km__store_open: passphrase must be 1 to 1024 bytes");
    cost = o->kdf_cost ? o->kdf_cost : KM_KDF_COST_DEFAULT;
    if (cost < KM_KDF_COST_MIN || cost > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "km__store_open: kdf_cost must be %d to %d",
                       KM_KDF_COST_MIN, KM_KDF_COST_MAX);
    if (o->map_size > SIZE_MAX)
        return km__err(KM_E_INVALID, "km__store_open: map_size too large for this platform");
    if ((rc = km_init()) != KM_OK)
        return rc;

    if ((rc = ops->open(&st, location, o)) != KM_OK)
        return rc;
    /* A second attempt only after losing a creation race: the vault is then there. */
    for (attempt = 0; attempt < 2; attempt++) {
        km_secret_free(conv.kek);
        rc = vault_unlock(st, o, unseal, &master, vault_id, pid, &present, &conv);
        if (rc == KM_E_AUTH) {
            char keep[256];
            snprintf(keep, sizeof keep, "%s", km_error_last()->message);
            authfail_bump(st);
            (void)km__err(KM_E_AUTH, "%s", keep);
        }
        if (rc != KM_OK || present)
            break;
        if (!(o->flags & KM_OPEN_CREATE)) {
            rc = km__err(KM_E_NOTFOUND, "no vault at this path");
            break;
        }
        if (o->passphrase == NULL || (o->version >= 3 && o->principal != NULL)) {
            rc = km__err(KM_E_INVALID, "a new vault is created with an owner passphrase");
            break;
        }
        rc = vault_create(st, o, cost, &master, vault_id, &raced);
        if (rc != KM_OK || !raced)
            break;
    }
    if (rc == KM_OK && master == NULL)
        rc = km__err(KM_E_INTERNAL, "vault creation raced twice");
    if (rc == KM_OK && unseal != NULL && unseal->defer != NULL) {
        *unseal->defer = conv;       /* the caller converts it, audited */
        conv.kek = NULL;
    } else if (rc == KM_OK) {
        slot_convert(st, master, &conv);
    }
    km_secret_free(conv.kek);
    if (rc != KM_OK) {
        km_secret_free(master);
        ops->close(st);
        return rc;
    }
    *out = st;
    *master_out = master;
    return KM_OK;
}

void km__store_close(km__store *st)
{
    if (st != NULL)
        st->ops->close(st);
}

int km__store_ref(km__store *st)
{
    if (st->ops->ref == NULL)
        return km__err(KM_E_UNSUPPORTED, "the %s store cannot be shared by another context",
                       st->ops->scheme);
    st->ops->ref(st);
    return KM_OK;
}

int km__env_open(km__env **out, const char *dir, const km_open_options *o,
                 km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16])
{
    return km__store_open(out, stores[0], dir, o, NULL, master_out, vault_id, pid);
}

void km__env_close(km__env *env)
{
    km__store_close(env);
}

/* ------------------------------------------------------------ maintenance */

int km__store_gen(km__store *st, uint64_t *out)
{
    *out = 0;
    if (st == NULL)
        return km__err(KM_E_INVALID, "km__store_gen: store is NULL");
    if (st->ops->gen == NULL)
        return km__err(KM_E_UNSUPPORTED, "the %s store keeps no change generation",
                       st->ops->scheme);
    return st->ops->gen(st, out);
}

int km__store_compact(km__store *st)
{
    if (st == NULL)
        return km__err(KM_E_INVALID, "km__store_compact: store is NULL");
    if (st->ops->compact == NULL)
        return km__err(KM_E_UNSUPPORTED, "the %s store cannot be compacted", st->ops->scheme);
    return st->ops->compact(st);
}

int km__store_backup(km__store *st, const char *path)
{
    if (st == NULL || path == NULL || path[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_backup: path is NULL or empty");
    if (st->ops->backup == NULL)
        return km__err(KM_E_UNSUPPORTED, "the %s store makes no backup file", st->ops->scheme);
    return st->ops->backup(st, path);
}

int km__store_restore(const char *backup, const char *dir)
{
    if (stores[0]->restore == NULL)
        return km__err(KM_E_UNSUPPORTED, "the %s store restores no backup file",
                       stores[0]->scheme);
    return stores[0]->restore(backup, dir);
}

/* ------------------------------------------------------------------- copy */

#define COPY_BATCH_RECS 100                   /* etcd's --max-txn-ops is 128 by default */
#define COPY_BATCH_BYTES ((size_t)512 << 10)  /* its requests are at most 1.5 MiB */

typedef struct copy_arg {
    km__store *dst;
    km__txn *w;                 /* the open write transaction on dst */
    km__txn *src;               /* verification: the source snapshot */
    km__table tbl;
    size_t recs, bytes;
    int batch;                  /* 0: one transaction for the whole table */
    uint64_t n;
} copy_arg;

static int copy_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                    void *arg)
{
    copy_arg *a = arg;
    int rc;

    if (a->batch && (a->recs >= COPY_BATCH_RECS || a->bytes + val_len > COPY_BATCH_BYTES)) {
        rc = km__txn_commit(a->w);
        a->w = NULL;
        if (rc != KM_OK || (rc = km__txn_begin(a->dst, 1, &a->w)) != KM_OK)
            return rc;
        a->recs = a->bytes = 0;
    }
    if ((rc = km__raw_put(a->w, a->tbl, key, key_len, val, val_len, KM__PUT_NOOVERWRITE))
        != KM_OK)
        return rc;
    a->recs++;
    a->bytes += key_len + val_len;
    a->n++;
    return 0;
}

/* Every record of the copy is the source's, byte for byte. */
static int copy_check(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                      void *arg)
{
    copy_arg *a = arg;
    const uint8_t *v;
    size_t vl;
    int rc = km__raw_get(a->src, a->tbl, key, key_len, &v, &vl);

    if (rc == KM_E_NOTFOUND || (rc == KM_OK && (vl != val_len || memcmp(v, val, vl) != 0)))
        return km__err(KM_E_CORRUPT, "vault copy: a record of table %s differs from the source",
                       table_names[a->tbl]);
    if (rc != KM_OK)
        return rc;
    a->n++;
    return 0;
}

int km__store_copy(km__store *src, km__store *dst, uint64_t *records)
{
    /* meta and keyslots last, in one transaction: until then the copy holds
     * no vault (an open finds none there) */
    static const km__table order[KM__T__COUNT] = {
        KM__T_KEYS, KM__T_NAMES, KM__T_VMETA, KM__T_MATERIAL, KM__T_COUNTERS, KM__T_AUDIT,
        KM__T_SLOTS, KM__T_META,
    };
    copy_arg a;
    km__txn *r = NULL, *d = NULL;
    uint64_t n, total = 0;
    size_t i;
    int rc;

    *records = 0;
    memset(&a, 0, sizeof a);
    a.dst = dst;
    if ((rc = km__txn_begin(dst, 0, &d)) != KM_OK)
        return rc;
    for (i = 0; i < KM__T__COUNT && rc == KM_OK; i++) {
        if ((rc = km__table_count(d, (km__table)i, &n)) == KM_OK && n > 0)
            rc = km__err(KM_E_EXISTS, "vault copy: the destination is not empty (table %s "
                                      "holds records): a vault is never overwritten",
                         table_names[i]);
    }
    km__txn_abort(d);
    d = NULL;
    if (rc != KM_OK)
        return rc;
    /* one snapshot of the source for the copy and its verification */
    if ((rc = km__txn_begin(src, 0, &r)) != KM_OK)
        return rc;
    for (i = 0; i < KM__T__COUNT && rc == KM_OK; i++) {
        a.tbl = order[i];
        if (a.w == NULL) {
            if ((rc = km__txn_begin(dst, 1, &a.w)) != KM_OK)
                break;
            a.recs = a.bytes = 0;
        }
        a.batch = a.tbl != KM__T_SLOTS && a.tbl != KM__T_META;
        rc = km__raw_iter(r, a.tbl, NULL, 0, copy_one, &a);
        if (rc == KM_OK && a.batch && order[i + 1] == KM__T_SLOTS) {
            /* the tables before the vault's own records are in */
            rc = km__txn_commit(a.w);
            a.w = NULL;
        }
    }
    if (a.w != NULL) {
        if (rc == KM_OK)
            rc = km__txn_commit(a.w);
        else
            km__txn_abort(a.w);
        a.w = NULL;
    }
    total = a.n;
    /* verification: the same number of records in each table, each equal */
    if (rc == KM_OK && (rc = km__txn_begin(dst, 0, &d)) == KM_OK) {
        a.src = r;
        for (i = 0; i < KM__T__COUNT && rc == KM_OK; i++) {
            uint64_t ns = 0;
            a.tbl = (km__table)i;
            a.n = 0;
            if ((rc = km__raw_iter(d, a.tbl, NULL, 0, copy_check, &a)) == KM_OK
                && (rc = km__table_count(r, a.tbl, &ns)) == KM_OK && ns != a.n)
                rc = km__err(KM_E_CORRUPT, "vault copy: table %s has %llu records in the copy, "
                                           "%llu in the source", table_names[i],
                             (unsigned long long)a.n, (unsigned long long)ns);
        }
        km__txn_abort(d);
    }
    km__txn_abort(r);
    if (rc == KM_OK)
        *records = total;
    return rc;
}

/* ------------------------------------------------------------------ rekey */

/* Unseals every record of a table with the old sealer and writes it back
 * sealed with the new one (the unsealed meta entries stay as they are). */
typedef struct reseal_arg {
    km__txn *t;
    const km__sealer *old_s, *new_s;
    km__table tbl;
    uint8_t kbuf[KEY_MAX];
    uint8_t *plain, *sealed;    /* secure scratch; heap (a sealed value is not secret) */
    size_t cap, scap;
} reseal_arg;

static int reseal_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                      void *arg)
{
    reseal_arg *a = arg;
    size_t n;
    int rc;

    if (a->tbl == KM__T_META
        && (meta_is(key, key_len, META_FORMAT, sizeof META_FORMAT - 1)
            || meta_is(key, key_len, META_VAULT_ID, sizeof META_VAULT_ID - 1)
            || meta_is(key, key_len, META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1)))
        return 0;
    if ((rc = rec_shape(a->tbl, val, val_len)) != KM_OK)
        return rc;
    n = val_len - REC_OVERHEAD;
    if (n > a->cap) {
        km__sfree(a->plain, a->cap);
        a->cap = (n + 4095) & ~(size_t)4095;
        if ((a->plain = km__salloc(a->cap)) == NULL) {
            a->cap = 0;
            return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        }
    }
    if (val_len > a->scap) {
        free(a->sealed);
        a->scap = val_len;
        if ((a->sealed = malloc(a->scap)) == NULL) {
            a->scap = 0;
            return km__err(KM_E_NOMEM, "vault: out of memory");
        }
    }
    if ((rc = rec_unseal(a->old_s, a->tbl, key, key_len, val, val_len, a->plain)) != KM_OK)
        return rc;
    /* the key is borrowed from the store: copied before the write */
    memcpy(a->kbuf, key, key_len);
    rc = rec_seal(a->new_s, a->tbl, a->kbuf, key_len, a->plain, n, a->sealed);
    km_memzero(a->plain, n);
    if (rc != KM_OK)
        return rc;
    return km__raw_put(a->t, a->tbl, a->kbuf, key_len, a->sealed, val_len, 0);
}

static int reseal_table(km__txn *t, const km__sealer *old_s, const km__sealer *new_s,
                        km__table tbl)
{
    reseal_arg *a;
    int rc;

    if ((a = calloc(1, sizeof *a)) == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    a->t = t;
    a->old_s = old_s;
    a->new_s = new_s;
    a->tbl = tbl;
    rc = km__raw_iter(t, tbl, NULL, 0, reseal_one, a);
    km__sfree(a->plain, a->cap);
    free(a->sealed);
    free(a);
    return rc;
}

typedef struct names_arg {
    km__txn *t;
    const km__sealer *s;
} names_arg;

/* For each key record: names[HMAC(new name key, name)] = sealed key id. */
static int names_add(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                     void *arg)
{
    names_arg *na = arg;
    const uint8_t *name;
    uint8_t id[16], h[32];
    size_t name_len;
    int rc;

    if (key_len != 16)
        return km__err(KM_E_CORRUPT, "the keys table holds a malformed key");
    if (km__tlv_check(val, val_len) != KM_OK)
        return km__err(KM_E_CORRUPT, "a key record is malformed");
    if (!km__tlv_find(val, val_len, 1 /* KM__K_NAME */, &name, &name_len) || name_len == 0)
        return KM_OK;   /* a key without a name: nothing to index */
    memcpy(id, key, 16);
    if ((rc = km__sealer_name_hash(na->s, (const char *)name, name_len, h)) != KM_OK)
        return rc;
    rc = km__rec_put(na->t, na->s, KM__T_NAMES, h, sizeof h, id, sizeof id,
                     KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS)
        rc = km__err(KM_E_CORRUPT, "two key records carry the same name");
    return rc;
}

int km__vault_rekey(km__store *st, km__sealer *old_s, const km__sealer *new_s,
                    const km_secret *old_master, const km_secret *new_master,
                    const uint8_t *pass, size_t pass_len, uint32_t log2n, km__txn_hook pre,
                    km__txn_hook hook, void *hook_arg)
{
    static const km__table sealed_tables[] = {
        KM__T_META, KM__T_KEYS, KM__T_VMETA, KM__T_MATERIAL, KM__T_COUNTERS, KM__T_AUDIT
    };
    km__txn *t = NULL;
    names_arg na;
    size_t i;
    int rc;

    if (st == NULL || old_s == NULL || new_s == NULL || new_master == NULL || old_s == new_s
        || (pass == NULL && old_master == NULL))
        return km__err(KM_E_INVALID, "km__vault_rekey: bad arguments");
    if ((rc = km__txn_begin(st, 1, &t)) != KM_OK)
        return rc;
    /* Holding the write lock from here: no other writer of any process
     * interleaves. A record that does not open with old_s aborts it all. */
    if (pre != NULL && (rc = pre(hook_arg, t, old_s)) != KM_OK)
        goto out;
    for (i = 0; i < sizeof sealed_tables / sizeof sealed_tables[0]; i++)
        if ((rc = reseal_table(t, old_s, new_s, sealed_tables[i])) != KM_OK)
            goto out;
    /* The names index is keyed by an HMAC under the old name key: rebuild it. */
    if ((rc = km__raw_clear(t, KM__T_NAMES)) != KM_OK)
        goto out;
    na.t = t;
    na.s = new_s;
    if ((rc = km__rec_iter(t, new_s, KM__T_KEYS, NULL, 0, names_add, &na)) != KM_OK)
        goto out;
    if (pass == NULL) {
        /* a rotation: every key-pair slot re-wrapped for the new master */
        if ((rc = km__slots_rewrap(t, old_master, new_master)) != KM_OK)
            goto out;
    } else {
        /* Every keyslot wraps the old master: replace them all by one. */
        if ((rc = km__raw_clear(t, KM__T_SLOTS)) != KM_OK)
            goto out;
        if ((rc = km__slot_add_passphrase(t, new_master, pass, pass_len, log2n)) != KM_OK)
            goto out;
    }
    /* the caller's part of the same transaction (its audit entry) */
    if (hook != NULL && (rc = hook(hook_arg, t, new_s)) != KM_OK)
        goto out;
    /* A writer of this process still holding old_s would begin its
     * transaction after our commit: make km__rec_put refuse old_s. The
     * store's serialisation of write transactions orders this store before
     * that writer's load. */
    atomic_store(&old_s->retired, 1);
    rc = km__txn_commit(t);
    t = NULL;
    if (rc != KM_OK)
        atomic_store(&old_s->retired, 0);
out:
    km__txn_abort(t);
    return rc;
}
