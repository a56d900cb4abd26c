/* check_store.c - the catalog store interface (src/store/store.h): a second
 * implementation (an in-memory store with call counters, below) under the
 * same sealing, keyslots, unlock and rekey as LMDB; the device-keyslot
 * callback; the change generation; the scheme table; a failed write. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "km_int.h"
#include "store.h"
#include "testutil.h"

#define PASS2 "another passphrase"

/* ------------------------------------------------- an in-memory store
 * Tables of records sorted by key; a write transaction works on a private
 * copy of every table, swapped in at commit (one writer at a time); a read
 * transaction holds a reference on the committed copy. Stores are named
 * and outlive their last close (a process-local "disk"). */

typedef struct mrec {
    uint8_t *key, *val;
    size_t klen, vlen;
} mrec;

typedef struct mdb {
    int refs;
    mrec *r[KM__T__COUNT];
    size_t n[KM__T__COUNT], cap[KM__T__COUNT];
} mdb;

typedef struct mem_store {
    km__store base;
    char name[64];
    int refs;
    pthread_mutex_t wmu;         /* the one writer */
    mdb *committed;
    uint64_t gen;
    struct mem_store *next;
} mem_store;

typedef struct mem_txn {
    km__txn base;
    mdb *db;
} mem_txn;

static struct {
    unsigned open, begin, commit, abort, get, put, del, iter, clear;
    int fail_put;                /* the next put fails with KM_E_FULL */
} calls;

static mem_store *stores;
static const km__store_ops mem_ops;

static void mdb_unref(mdb *d)
{
    int t;
    size_t i;

    if (d == NULL || --d->refs > 0)
        return;
    for (t = 0; t < KM__T__COUNT; t++) {
        for (i = 0; i < d->n[t]; i++) {
            free(d->r[t][i].key);
            free(d->r[t][i].val);
        }
        free(d->r[t]);
    }
    free(d);
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(q);
    memcpy(q, p, n);
    return q;
}

static mdb *mdb_copy(const mdb *s)
{
    mdb *d = calloc(1, sizeof *d);
    int t;
    size_t i;

    ck_assert_ptr_nonnull(d);
    d->refs = 1;
    for (t = 0; s != NULL && t < KM__T__COUNT; t++) {
        d->n[t] = d->cap[t] = s->n[t];
        d->r[t] = calloc(s->n[t] ? s->n[t] : 1, sizeof(mrec));
        ck_assert_ptr_nonnull(d->r[t]);
        for (i = 0; i < s->n[t]; i++) {
            d->r[t][i].klen = s->r[t][i].klen;
            d->r[t][i].vlen = s->r[t][i].vlen;
            d->r[t][i].key = dup_bytes(s->r[t][i].key, s->r[t][i].klen);
            d->r[t][i].val = dup_bytes(s->r[t][i].val, s->r[t][i].vlen);
        }
    }
    return d;
}

/* bytewise order, a prefix first */
static int kcmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an > bn) - (an < bn);
}

/* The index of key, or where it would go (*found = 0). */
static size_t find(const mdb *d, km__table t, const uint8_t *key, size_t klen, int *found)
{
    size_t i;

    for (i = 0; i < d->n[t]; i++) {
        int c = kcmp(d->r[t][i].key, d->r[t][i].klen, key, klen);
        if (c >= 0) {
            *found = c == 0;
            return i;
        }
    }
    *found = 0;
    return i;
}

static mdb *db_of(km__txn *t)
{
    return ((mem_txn *)(void *)t)->db;
}

static int mem_open(km__store **out, const char *location, const km_open_options *o)
{
    mem_store *s;

    calls.open++;
    *out = NULL;
    for (s = stores; s != NULL; s = s->next)
        if (strcmp(s->name, location) == 0)
            break;
    if (s == NULL) {
        if (!(o->flags & KM_OPEN_CREATE))
            return km__err(KM_E_NOTFOUND, "no vault at this path");
        s = calloc(1, sizeof *s);
        ck_assert_ptr_nonnull(s);
        s->base.ops = &mem_ops;
        snprintf(s->name, sizeof s->name, "%s", location);
        pthread_mutex_init(&s->wmu, NULL);
        s->committed = mdb_copy(NULL);
        s->next = stores;
        stores = s;
    }
    s->refs++;
    *out = &s->base;
    return KM_OK;
}

static void mem_close(km__store *st)
{
    ((mem_store *)(void *)st)->refs--;
}

static int mem_begin(km__store *st, int write, km__txn *t)
{
    mem_store *s = (mem_store *)(void *)st;
    mem_txn *mt = (mem_txn *)(void *)t;

    calls.begin++;
    if (write) {
        pthread_mutex_lock(&s->wmu);
        mt->db = mdb_copy(s->committed);
    } else {
        mt->db = s->committed;
        mt->db->refs++;
    }
    return KM_OK;
}

static int mem_commit(km__txn *t)
{
    mem_store *s = (mem_store *)(void *)t->st;

    calls.commit++;
    if (t->write) {
        mdb_unref(s->committed);
        s->committed = db_of(t);
        s->gen++;
        pthread_mutex_unlock(&s->wmu);
    } else {
        mdb_unref(db_of(t));
    }
    return KM_OK;
}

static void mem_abort(km__txn *t)
{
    calls.abort++;
    mdb_unref(db_of(t));
    if (t->write)
        pthread_mutex_unlock(&((mem_store *)(void *)t->st)->wmu);
}

static int mem_get(km__txn *t, km__table tbl, const uint8_t *key, size_t klen,
                   const uint8_t **val, size_t *vlen)
{
    mdb *d = db_of(t);
    int found;
    size_t i = find(d, tbl, key, klen, &found);

    calls.get++;
    if (!found)
        return KM_E_NOTFOUND;
    *val = d->r[tbl][i].val;
    *vlen = d->r[tbl][i].vlen;
    return KM_OK;
}

static int mem_put(km__txn *t, km__table tbl, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen, unsigned flags)
{
    mdb *d = db_of(t);
    int found;
    size_t i = find(d, tbl, key, klen, &found);

    calls.put++;
    if (calls.fail_put) {
        calls.fail_put = 0;
        return km__err_native(KM_E_FULL, KM_NATIVE_ERRNO, 28, "memory store: full");
    }
    if (found && (flags & KM__PUT_NOOVERWRITE))
        return KM_E_EXISTS;
    if (found) {
        free(d->r[tbl][i].val);
        d->r[tbl][i].val = dup_bytes(val, vlen);
        d->r[tbl][i].vlen = vlen;
        return KM_OK;
    }
    if (d->n[tbl] == d->cap[tbl]) {
        d->cap[tbl] = d->cap[tbl] ? d->cap[tbl] * 2 : 8;
        d->r[tbl] = realloc(d->r[tbl], d->cap[tbl] * sizeof(mrec));
        ck_assert_ptr_nonnull(d->r[tbl]);
    }
    memmove(d->r[tbl] + i + 1, d->r[tbl] + i, (d->n[tbl] - i) * sizeof(mrec));
    d->r[tbl][i].key = dup_bytes(key, klen);
    d->r[tbl][i].klen = klen;
    d->r[tbl][i].val = dup_bytes(val, vlen);
    d->r[tbl][i].vlen = vlen;
    d->n[tbl]++;
    return KM_OK;
}

static int mem_del(km__txn *t, km__table tbl, const uint8_t *key, size_t klen)
{
    mdb *d = db_of(t);
    int found;
    size_t i = find(d, tbl, key, klen, &found);

    calls.del++;
    if (!found)
        return KM_E_NOTFOUND;
    free(d->r[tbl][i].key);
    free(d->r[tbl][i].val);
    memmove(d->r[tbl] + i, d->r[tbl] + i + 1, (d->n[tbl] - i - 1) * sizeof(mrec));
    d->n[tbl]--;
    return KM_OK;
}

static int mem_iter(km__txn *t, km__table tbl, const uint8_t *prefix, size_t plen,
                    km__rec_fn fn, void *arg)
{
    mdb *d = db_of(t);
    size_t i;
    int rc;

    calls.iter++;
    for (i = 0; i < d->n[tbl]; i++) {
        mrec *r = &d->r[tbl][i];
        if (plen > 0 && (r->klen < plen || memcmp(r->key, prefix, plen) != 0)) {
            if (kcmp(r->key, r->klen, prefix, plen) > 0)
                break;
            continue;
        }
        if ((rc = fn(r->key, r->klen, r->val, r->vlen, arg)) != 0)
            return rc;
    }
    return KM_OK;
}

static int mem_clear(km__txn *t, km__table tbl)
{
    mdb *d = db_of(t);
    size_t i;

    calls.clear++;
    for (i = 0; i < d->n[tbl]; i++) {
        free(d->r[tbl][i].key);
        free(d->r[tbl][i].val);
    }
    d->n[tbl] = 0;
    return KM_OK;
}

static int mem_count(km__txn *t, km__table tbl, uint64_t *out)
{
    *out = db_of(t)->n[tbl];
    return KM_OK;
}

static int mem_gen(km__store *st, uint64_t *out)
{
    *out = ((mem_store *)(void *)st)->gen;
    return KM_OK;
}

/* no compact, backup or restore: optional members left out */
static const km__store_ops mem_ops = {
    .version = KM__STORE_OPS_VERSION,
    .scheme = "mem",
    .txn_size = sizeof(mem_txn),
    .open = mem_open,
    .close = mem_close,
    .txn_begin = mem_begin,
    .txn_commit = mem_commit,
    .txn_abort = mem_abort,
    .get = mem_get,
    .put = mem_put,
    .del = mem_del,
    .iter = mem_iter,
    .clear = mem_clear,
    .count = mem_count,
    .gen = mem_gen,
};

/* The raw value of a record as the memory store holds it (committed). */
static const mrec *mem_raw(km__store *st, km__table tbl, const char *key)
{
    mdb *d = ((mem_store *)(void *)st)->committed;
    int found;
    size_t i = find(d, tbl, (const uint8_t *)key, strlen(key), &found);
    return found ? &d->r[tbl][i] : NULL;
}

/* ------------------------------------------------------------- fixtures */

static int store_no;
static char name[64];        /* a fresh memory store per test */

static void setup(void)
{
    memset(&calls, 0, sizeof calls);
    snprintf(name, sizeof name, "mem-%d", ++store_no);
}

static int open_with(const char *pass, const char *principal, uint32_t flags,
                     const km__slot_unsealer *u, km__store **st, km_secret **m, uint8_t id[16],
                     uint8_t pid[16])
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    o.flags = flags;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = pass ? strlen(pass) : 0;
    o.principal = principal;
    o.kdf_cost = KM_KDF_COST_MIN;
    return km__store_open(st, &mem_ops, name, &o, u, m, id, pid);
}

struct vault {
    km__store *st;
    km_secret *master;
    km__sealer *s;
    uint8_t id[16], pid[16];
};

static void up(struct vault *v, uint32_t flags)
{
    int rc;

    memset(v, 0, sizeof *v);
    rc = open_with(TU_PASS, NULL, flags, NULL, &v->st, &v->master, v->id, v->pid);
    ck_assert_msg(rc == KM_OK, "km__store_open: %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_int_eq(km__sealer_new(&v->s, v->master), KM_OK);
}

static void down(struct vault *v)
{
    km__sealer_free(v->s);
    km_secret_free(v->master);
    km__store_close(v->st);
    memset(v, 0, sizeof *v);
}

static void put1(struct vault *v, km__table tbl, const char *key, const char *val)
{
    km__txn *t = NULL;
    ck_assert_int_eq(km__txn_begin(v->st, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v->s, tbl, (const uint8_t *)key, strlen(key),
                                 (const uint8_t *)val, strlen(val), 0), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
}

static int get1(struct vault *v, const km__sealer *s, km__table tbl, const char *key,
                const char *want)
{
    km__txn *t = NULL;
    km_secret *sec = NULL;
    int rc;

    ck_assert_int_eq(km__txn_begin(v->st, 0, &t), KM_OK);
    rc = km__rec_get(t, s, tbl, (const uint8_t *)key, strlen(key), &sec);
    km__txn_abort(t);
    if (rc == KM_OK) {
        ck_assert_uint_eq(km_secret_len(sec), strlen(want));
        ck_assert_int_eq(memcmp(km_secret_data(sec), want, strlen(want)), 0);
    }
    km_secret_free(sec);
    return rc;
}

/* ----------------------------------------------------------------- tests */

START_TEST(test_store_second_implementation_creates_and_unlocks)
{
    struct vault a, b;
    km__store *st = NULL;
    km_secret *m = NULL;
    km__txn *t = NULL;
    uint8_t id[16], pid[16];
    uint64_t fails = 0;

    /* no store of that name and no CREATE: nothing made */
    ck_assert_int_eq(open_with(TU_PASS, NULL, 0, NULL, &st, &m, id, pid), KM_E_NOTFOUND);
    ck_assert_ptr_null(st);
    up(&a, KM_OPEN_CREATE);
    ck_assert(calls.open == 2 && calls.commit >= 1);
    /* the vault meta went through the raw interface: format, id, sealed check */
    ck_assert_ptr_nonnull(mem_raw(a.st, KM__T_META, "format"));
    ck_assert_ptr_nonnull(mem_raw(a.st, KM__T_META, "vault-id"));
    ck_assert_uint_eq(mem_raw(a.st, KM__T_META, "check")->vlen, 17 + 29);
    memcpy(id, a.id, 16);
    down(&a);
    up(&b, 0);
    ck_assert_int_eq(memcmp(id, b.id, 16), 0);
    /* a wrong passphrase is counted in the store, as with LMDB */
    ck_assert_int_eq(open_with("wrong passphrase", NULL, 0, NULL, &st, &m, id, pid), KM_E_AUTH);
    ck_assert_str_eq(km_error_last()->message, "no keyslot opens with this passphrase");
    ck_assert_ptr_null(m);
    ck_assert_int_eq(km__txn_begin(b.st, 0, &t), KM_OK);
    ck_assert_int_eq(km__authfail_get(t, &fails), KM_OK);
    km__txn_abort(t);
    ck_assert_uint_eq(fails, 1);
    /* EXCL on an existing vault */
    ck_assert_int_eq(open_with(TU_PASS, NULL, KM_OPEN_CREATE | KM_OPEN_EXCL, NULL, &st, &m, id,
                               pid), KM_E_EXISTS);
    down(&b);
}
END_TEST

START_TEST(test_store_records_are_sealed_above_the_implementation)
{
    static const char plain[] = "a secret worth sealing";
    struct vault v;
    km__txn *t = NULL;
    const mrec *r;
    uint64_t n = 0;

    up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_KEYS, "k1", plain);
    put1(&v, KM__T_KEYS, "k2", "two");
    /* the implementation got sealed bytes: format 1, nonce, ciphertext, tag */
    r = mem_raw(v.st, KM__T_KEYS, "k1");
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->vlen, strlen(plain) + 29);
    ck_assert_uint_eq(r->val[0], 1);
    ck_assert(!tu_memmem(r->val, r->vlen, (const uint8_t *)plain, strlen(plain)));
    ck_assert_int_eq(get1(&v, v.s, KM__T_KEYS, "k1", plain), KM_OK);
    /* a value moved to another key fails to open */
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(mem_put(t, KM__T_KEYS, (const uint8_t *)"k3", 2, r->val, r->vlen, 0), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(get1(&v, v.s, KM__T_KEYS, "k3", plain), KM_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "keys"));
    /* count, delete, NOOVERWRITE */
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__table_count(t, KM__T_KEYS, &n), KM_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"k2", 2,
                                 (const uint8_t *)"x", 1, KM__PUT_NOOVERWRITE), KM_E_EXISTS);
    ck_assert_int_eq(km__rec_del(t, KM__T_KEYS, (const uint8_t *)"k3", 2), KM_OK);
    ck_assert_int_eq(km__rec_del(t, KM__T_KEYS, (const uint8_t *)"k3", 2), KM_E_NOTFOUND);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(get1(&v, v.s, KM__T_KEYS, "k3", NULL), KM_E_NOTFOUND);
    down(&v);
}
END_TEST

START_TEST(test_store_failed_write_is_sticky)
{
    struct vault v;
    km__txn *t = NULL;
    unsigned aborts;

    up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"a", 1,
                                 (const uint8_t *)"1", 1, 0), KM_OK);
    calls.fail_put = 1;
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"b", 1,
                                 (const uint8_t *)"2", 1, 0), KM_E_FULL);
    /* no further write reaches the implementation; the commit aborts */
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"c", 1,
                                 (const uint8_t *)"3", 1, 0), KM_E_FULL);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_ERRNO);
    ck_assert_uint_eq(km_error_last()->native, 28);
    ck_assert_int_eq(km__rec_del(t, KM__T_KEYS, (const uint8_t *)"a", 1), KM_E_FULL);
    aborts = calls.abort;
    ck_assert_int_eq(km__txn_commit(t), KM_E_FULL);
    ck_assert_uint_eq(calls.abort, aborts + 1);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "memory store: full"));
    ck_assert_int_eq(get1(&v, v.s, KM__T_KEYS, "a", NULL), KM_E_NOTFOUND);
    down(&v);
}
END_TEST

/* A fake device: its blob is the master key XOR 0x5a; refuses when told. */
struct device {
    unsigned calls;
    int refuse;                  /* KM_OK, or the code to return */
    char seen_backend[32], seen_config[32];
};

static int device_unseal(void *arg, const char *backend, const char *config,
                         const uint8_t *blob, size_t blob_len, km_secret **master)
{
    struct device *d = arg;
    uint8_t mk[32];
    size_t i;

    d->calls++;
    snprintf(d->seen_backend, sizeof d->seen_backend, "%s", backend);
    snprintf(d->seen_config, sizeof d->seen_config, "%s", config ? config : "");
    if (d->refuse != KM_OK)
        return km__err(d->refuse, "the device refuses");
    if (blob_len != 32)
        return km__err(KM_E_AUTH, "not this device's blob");
    for (i = 0; i < 32; i++)
        mk[i] = blob[i] ^ 0x5a;
    return km_secret_from(master, mk, 32);
}

START_TEST(test_store_device_keyslot_opens_through_the_callback)
{
    struct vault v;
    struct device dev;
    km__slot_unsealer u = { device_unseal, &dev, NULL };
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km__store *st = NULL;
    km__txn *t = NULL;
    km_secret *m = NULL;
    uint8_t blob[32], id[16], pid[16];
    size_t i;

    memset(&dev, 0, sizeof dev);
    up(&v, KM_OPEN_CREATE);
    for (i = 0; i < 32; i++)
        blob[i] = km_secret_data(v.master)[i] ^ 0x5a;
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_add_backend(t, v.master, "fakedev", blob, sizeof blob), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);

    o.slot_backend = "fakedev";
    o.slot_config = "slot=7";
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, &u, &m, id, pid), KM_OK);
    ck_assert_uint_eq(dev.calls, 1);
    ck_assert_str_eq(dev.seen_backend, "fakedev");
    ck_assert_str_eq(dev.seen_config, "slot=7");
    ck_assert_int_eq(memcmp(km_secret_data(m), km_secret_data(v.master), 32), 0);
    ck_assert_int_eq(memcmp(id, v.id, 16), 0);
    km_secret_free(m);
    km__store_close(st);
    /* the device's own failure is reported as it is */
    dev.refuse = KM_E_BACKEND;
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, &u, &m, id, pid), KM_E_BACKEND);
    ck_assert_str_eq(km_error_last()->message, "the device refuses");
    dev.refuse = KM_E_AUTH;
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, &u, &m, id, pid), KM_E_AUTH);
    /* no callback: no device keyslot opens */
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, NULL, &m, id, pid),
                     KM_E_UNSUPPORTED);
    ck_assert_ptr_null(m);
    o.slot_backend = "otherdev";
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, &u, &m, id, pid), KM_E_AUTH);
    ck_assert_str_eq(km_error_last()->message, "the vault has no otherdev keyslot");
    down(&v);
}
END_TEST

START_TEST(test_store_principal_and_shares_keyslots)
{
    static const uint8_t pid0[16] = { 1, 2, 3 };
    struct vault v;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km__store *st = NULL;
    km__txn *t = NULL;
    km_secret *m = NULL, *shares[3] = { NULL, NULL, NULL };
    const char *two[2];
    uint8_t id[16], pid[16];
    size_t n = 0, total = 0;
    char names[4][32];
    int i;

    up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_add_principal(t, v.master, (const uint8_t *)PASS2, strlen(PASS2),
                                            KM_KDF_COST_MIN, "alice", pid0), KM_OK);
    ck_assert_int_eq(km__slot_add_shamir(t, v.master, 2, 3, shares), KM_OK);
    ck_assert_int_eq(km__slot_backend_names(t, names, 4, &n, &total), KM_OK);
    ck_assert(n == 0 && total == 0);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(open_with(PASS2, "alice", 0, NULL, &st, &m, id, pid), KM_OK);
    ck_assert_int_eq(memcmp(pid, pid0, 16), 0);
    km_secret_free(m);
    km__store_close(st);
    ck_assert_int_eq(open_with(PASS2, "bob", 0, NULL, &st, &m, id, pid), KM_E_AUTH);
    two[0] = (const char *)km_secret_data(shares[2]);
    two[1] = (const char *)km_secret_data(shares[0]);
    o.shares = two;
    o.share_count = 2;
    ck_assert_int_eq(km__store_open(&st, &mem_ops, name, &o, NULL, &m, id, pid), KM_OK);
    ck_assert_int_eq(memcmp(km_secret_data(m), km_secret_data(v.master), 32), 0);
    km_secret_free(m);
    km__store_close(st);
    /* the principal's slots go; the owner's cannot all go */
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_remove_principal(t, pid0, NULL, NULL), KM_OK);
    ck_assert_int_eq(km__slot_remove_principal(t, pid0, NULL, NULL), KM_E_NOTFOUND);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(open_with(PASS2, "alice", 0, NULL, &st, &m, id, pid), KM_E_AUTH);
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_remove_owner(t, NULL, NULL), KM_OK);   /* the shares slot remains */
    ck_assert_int_eq(km__slot_remove_owner(t, NULL, NULL), KM_E_NOTFOUND);
    km__txn_abort(t);
    for (i = 0; i < 3; i++)
        km_secret_free(shares[i]);
    down(&v);
}
END_TEST

START_TEST(test_store_rekey_reseals_in_the_second_implementation)
{
    struct vault v;
    km__sealer *ns = NULL;
    km_secret *nm = NULL, *m = NULL, *rec = NULL;
    km__store *st = NULL;
    km__txn *t = NULL;
    uint8_t rec_k[32], h[32], id[16], pid[16];
    km__tlv_w w;
    uint64_t n = 0;

    up(&v, KM_OPEN_CREATE);
    /* a key record with a name, and its index entry */
    km__tlv_init(&w, rec_k, sizeof rec_k);
    km__tlv_put_str(&w, 1, "orders");
    ck_assert_int_eq(km__tlv_end(&w), KM_OK);
    ck_assert_int_eq(km__sealer_name_hash(v.s, "orders", 6, h), KM_OK);
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"0123456789abcdef", 16,
                                 rec_k, w.len, 0), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_NAMES, h, 32,
                                 (const uint8_t *)"0123456789abcdef", 16, 0), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_AUDIT, (const uint8_t *)"\0\0\0\0\0\0\0\1", 8,
                                 (const uint8_t *)"entry", 5, 0), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);

    ck_assert_int_eq(km_secret_new(&nm, 32), KM_OK);
    ck_assert_int_eq(km__random(km_secret_data(nm), 32), KM_OK);
    ck_assert_int_eq(km__sealer_new(&ns, nm), KM_OK);
    ck_assert_int_eq(km__vault_rekey(v.st, v.s, ns, NULL, nm, (const uint8_t *)PASS2, strlen(PASS2),
                                     KM_KDF_COST_MIN, NULL, NULL, NULL), KM_OK);
    /* the old sealer opens nothing and writes nothing; the new one opens all */
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_get(t, v.s, KM__T_AUDIT, (const uint8_t *)"\0\0\0\0\0\0\0\1", 8,
                                 &rec), KM_E_CORRUPT);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"x", 1,
                                 (const uint8_t *)"x", 1, 0), KM_E_STATE);
    ck_assert_int_eq(km__rec_get(t, ns, KM__T_AUDIT, (const uint8_t *)"\0\0\0\0\0\0\0\1", 8,
                                 &rec), KM_OK);
    ck_assert_uint_eq(km_secret_len(rec), 5);
    km_secret_free(rec);
    /* the names index rebuilt under the new name key */
    ck_assert_int_eq(km__table_count(t, KM__T_NAMES, &n), KM_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(km__sealer_name_hash(ns, "orders", 6, h), KM_OK);
    ck_assert_int_eq(km__rec_get(t, ns, KM__T_NAMES, h, 32, &rec), KM_OK);
    ck_assert_int_eq(memcmp(km_secret_data(rec), "0123456789abcdef", 16), 0);
    km_secret_free(rec);
    /* one keyslot: the new passphrase */
    ck_assert_int_eq(km__table_count(t, KM__T_SLOTS, &n), KM_OK);
    ck_assert_uint_eq(n, 1);
    km__txn_abort(t);
    ck_assert_int_eq(open_with(TU_PASS, NULL, 0, NULL, &st, &m, id, pid), KM_E_AUTH);
    ck_assert_int_eq(open_with(PASS2, NULL, 0, NULL, &st, &m, id, pid), KM_OK);
    ck_assert_int_eq(memcmp(km_secret_data(m), km_secret_data(nm), 32), 0);
    km_secret_free(m);
    km__store_close(st);
    km__sealer_retire(ns, v.s, v.master);
    v.s = ns;
    v.master = nm;
    down(&v);
}
END_TEST

START_TEST(test_store_gen_and_optional_members)
{
    struct vault v;
    km__txn *t = NULL;
    uint64_t g0 = 0, g1 = 0;

    up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__store_gen(v.st, &g0), KM_OK);
    put1(&v, KM__T_KEYS, "k", "v");
    ck_assert_int_eq(km__store_gen(v.st, &g1), KM_OK);
    ck_assert_uint_gt(g1, g0);
    ck_assert_int_eq(km__txn_begin(v.st, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"a", 1,
                                 (const uint8_t *)"1", 1, 0), KM_OK);
    km__txn_abort(t);
    ck_assert_int_eq(km__store_gen(v.st, &g0), KM_OK);
    ck_assert_uint_eq(g0, g1);
    /* what the memory store leaves out */
    ck_assert_int_eq(km__store_compact(v.st), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km__store_backup(v.st, "/nonexistent/backup"), KM_E_UNSUPPORTED);
    down(&v);
}
END_TEST

/* LMDB's generation sees another process's commit and survives a compaction. */
START_TEST(test_store_lmdb_gen_counts_other_processes)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char *tmp = tu_tmpdir(), dir[4400];
    km__store *st = NULL;
    km_secret *m = NULL;
    km__sealer *s = NULL;
    km__txn *t = NULL;
    uint8_t id[16], pid[16];
    uint64_t g0 = 0, g1 = 0, g2 = 0;
    int status;
    pid_t child;

    snprintf(dir, sizeof dir, "%s/vault", tmp);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    ck_assert_int_eq(km__env_open(&st, dir, &o, &m, id, pid), KM_OK);
    ck_assert_ptr_eq(st->ops, &km__store_lmdb);
    ck_assert_int_eq(km__sealer_new(&s, m), KM_OK);
    ck_assert_int_eq(km__store_gen(st, &g0), KM_OK);
    child = fork();
    ck_assert_int_ne(child, -1);
    if (child == 0) {
        km__store *cst = NULL;
        km_secret *cm = NULL;
        km__sealer *cs = NULL;
        km__txn *ct = NULL;
        if (km__env_open(&cst, dir, &o, &cm, id, pid) != KM_OK || km__sealer_new(&cs, cm) != KM_OK
            || km__txn_begin(cst, 1, &ct) != KM_OK
            || km__rec_put(ct, cs, KM__T_KEYS, (const uint8_t *)"c", 1, (const uint8_t *)"c", 1,
                           0) != KM_OK
            || km__txn_commit(ct) != KM_OK)
            _exit(1);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(km__store_gen(st, &g1), KM_OK);
    ck_assert_uint_gt(g1, g0);
    /* an aborted write moves nothing */
    ck_assert_int_eq(km__txn_begin(st, 1, &t), KM_OK);
    km__txn_abort(t);
    ck_assert_int_eq(km__store_gen(st, &g2), KM_OK);
    ck_assert_uint_eq(g2, g1);
    /* compaction restarts LMDB's ids, not the generation */
    ck_assert_int_eq(km__store_compact(st), KM_OK);
    ck_assert_int_eq(km__store_gen(st, &g2), KM_OK);
    ck_assert_uint_gt(g2, g1);
    km__sealer_free(s);
    km_secret_free(m);
    km__store_close(st);
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

START_TEST(test_store_scheme_table)
{
    const km__store_ops *ops = NULL;
    const char *loc = NULL;

    ck_assert_int_eq(km__store_find("lmdb:/var/v", &ops, &loc), KM_OK);
    ck_assert_ptr_eq(ops, &km__store_lmdb);
    ck_assert_str_eq(loc, "/var/v");
    ck_assert_int_eq(km__store_find("lmdb:///var/v", &ops, &loc), KM_OK);
    ck_assert_str_eq(loc, "/var/v");
    ck_assert_int_eq(km__store_find("lmdb:rel/v", &ops, &loc), KM_OK);
    ck_assert_str_eq(loc, "rel/v");
    /* a bare path: the default store */
    ck_assert_int_eq(km__store_find("/var/v", &ops, &loc), KM_OK);
    ck_assert_ptr_eq(ops, &km__store_lmdb);
    ck_assert_str_eq(loc, "/var/v");
    ck_assert_int_eq(km__store_find("./a:b", &ops, &loc), KM_OK);
    ck_assert_str_eq(loc, "./a:b");
    ck_assert_int_eq(km__store_find("rel", &ops, &loc), KM_OK);
    /* the etcd store when built (its location: members and prefix, parsed at open) */
#ifdef KM_HAVE_ETCD
    ck_assert_int_eq(km__store_find("etcd://h1:2379,h2:2379/p", &ops, &loc), KM_OK);
    ck_assert_ptr_eq(ops, &km__store_etcd);
    ck_assert_str_eq(loc, "h1:2379,h2:2379/p");
#else
    ck_assert_int_eq(km__store_find("etcd://host/v", &ops, &loc), KM_E_INVALID);
#endif
    /* refused */
    ck_assert_int_eq(km__store_find("nosuch://host/v", &ops, &loc), KM_E_INVALID);
    ck_assert_ptr_null(ops);
    ck_assert_int_eq(km__store_find("lmdb:", &ops, &loc), KM_E_INVALID);
    ck_assert_int_eq(km__store_find("lmdbx:/v", &ops, &loc), KM_E_INVALID);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_store_second_implementation_creates_and_unlocks);
    tcase_add_test(tc, test_store_records_are_sealed_above_the_implementation);
    tcase_add_test(tc, test_store_failed_write_is_sticky);
    tcase_add_test(tc, test_store_device_keyslot_opens_through_the_callback);
    tcase_add_test(tc, test_store_principal_and_shares_keyslots);
    tcase_add_test(tc, test_store_rekey_reseals_in_the_second_implementation);
    tcase_add_test(tc, test_store_gen_and_optional_members);
    tcase_add_test(tc, test_store_lmdb_gen_counts_other_processes);
    tcase_add_test(tc, test_store_scheme_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
