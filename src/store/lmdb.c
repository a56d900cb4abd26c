/*
 * lmdb.c - the LMDB store (km__store_lmdb, src/store/store.h): the vault's tables
 * as named databases of one LMDB environment in a directory, raw bytes in
 * and out (sealing and keyslots are above, in src/store/store.c and keyslot.c),
 * compaction, and the live copy behind backups (lmdb_backup.c).
 *
 * One named database per km__table, named km__table_name(tbl); values are
 * stored as given.
 *
 * Processes and threads: LMDB must not open one environment twice in one
 * process (closing one copy would drop the other's fcntl locks), so a
 * process-wide registry keyed by the directory's st_dev/st_ino shares one
 * handle, refcounted. Read transactions run on many threads (MDB_NOTLS);
 * LMDB's writer lock serialises write transactions across processes. A
 * handle is never used across fork(): each records km__fork_gen at open and
 * a transaction begun in a child fails with KM_E_FORK (the core checks its
 * own handles the same way); a child opens the vault again and gets a fresh
 * environment.
 */
#include "km_int.h"
#include "lmdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#define DEFAULT_MAP_SIZE ((uint64_t)1 << 30)
#define RESIZE_WAIT_S 2
#define RD_KEPT 8                   /* read transactions kept per environment */

typedef struct km__env_lmdb km__env_lmdb;

struct km__env_lmdb {
    km__store base;             /* first: the handle the store layer holds */
    MDB_env *mdb;
    MDB_dbi dbi[KM__T__COUNT];
    dev_t dev;
    ino_t ino;
    unsigned fork_gen;          /* km__fork_gen when opened */
    unsigned refs;              /* under reg_mu */
    struct km__env_lmdb *next;  /* registry list, under reg_mu */
    /* Adopting a map size grown by another process (mdb_env_set_mapsize(env, 0))
     * needs no transaction of this process open: `active` counts them,
     * `resizing` holds new ones back meanwhile. */
    atomic_uint active;
    atomic_int resizing;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* After a compaction: the descriptor of lock.mdb whose exclusive
     * lock let the compaction run (downgraded to LMDB's shared lock when
     * the environment was reopened). Closing any descriptor of lock.mdb
     * drops every fcntl lock of the process on it, LMDB's too, so it stays
     * open until the environment is closed. -1 otherwise. */
    int lock_fd;
    /* Added to LMDB's last transaction id for the change generation: grown
     * by each compaction of this handle (the compacted copy's ids restart). */
    _Atomic uint64_t gen_base;
    /* Read transactions kept for reuse (rd_take, rd_give): reset, so they
     * hold no snapshot (mdb_txn_reset: no page is pinned, nothing can be
     * read through them) until mdb_txn_renew takes the newest one; a
     * thread uses the slot of its index, taken and returned with one
     * atomic exchange. Aborted before the environment is closed (rd_drain). */
    struct {
        _Atomic(MDB_txn *) txn;
        char pad[64 - sizeof(void *)];
    } rd[RD_KEPT];
};

typedef struct lmdb_txn {
    km__txn base;               /* first: store.c allocates txn_size bytes */
    MDB_txn *txn;
} lmdb_txn;

static km__env_lmdb *env_of(km__store *st)
{
    return (km__env_lmdb *)(void *)st;
}

static MDB_txn *txn_of(km__txn *t)
{
    return ((lmdb_txn *)(void *)t)->txn;
}

/* ---------------------------------------------------------------- helpers */

static int lmdb_err(int rc, const char *what)
{
    int code;

    switch (rc) {
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:    /* the file system is full (LMDB returns errno values as they are) */
    case EFBIG:
    case EDQUOT:
        code = KM_E_FULL;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        code = KM_E_CORRUPT;
        break;
    case MDB_VERSION_MISMATCH:
        code = KM_E_UNSUPPORTED;
        break;
    case ENOMEM:
        code = KM_E_NOMEM;
        break;
    default:
        code = KM_E_IO;
        break;
    }
    return km__err_native(code, KM_NATIVE_LMDB, (unsigned long)(long)rc, "%s: %s", what,
                          mdb_strerror(rc));
}

static MDB_val mval(const void *p, size_t len)
{
    MDB_val v;
    v.mv_size = len;
    v.mv_data = (void *)(uintptr_t)p; /* LMDB does not write through key/data in */
    return v;
}

/* ------------------------------------------------------------ raw records */

static int lmdb_get(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len,
                    const uint8_t **val, size_t *val_len)
{
    MDB_val k = mval(key, key_len), v;
    int mrc = mdb_get(txn_of(t), env_of(t->st)->dbi[tbl], &k, &v);

    if (mrc == MDB_NOTFOUND)
        return KM_E_NOTFOUND;
    if (mrc != 0)
        return lmdb_err(mrc, "cannot read the vault");
    *val = v.mv_data;
    *val_len = v.mv_size;
    return KM_OK;
}

static int lmdb_put(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len,
                    const uint8_t *val, size_t val_len, unsigned flags)
{
    MDB_val k = mval(key, key_len), v = mval(val, val_len);
    int mrc = mdb_put(txn_of(t), env_of(t->st)->dbi[tbl], &k, &v,
                      (flags & KM__PUT_NOOVERWRITE) ? MDB_NOOVERWRITE : 0);

    if (mrc == MDB_KEYEXIST)
        return KM_E_EXISTS;
    if (mrc != 0)
        return lmdb_err(mrc, "cannot write the vault");
    return KM_OK;
}

static int lmdb_del(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len)
{
    MDB_val k = mval(key, key_len);
    int mrc = mdb_del(txn_of(t), env_of(t->st)->dbi[tbl], &k, NULL);

    if (mrc == MDB_NOTFOUND)
        return KM_E_NOTFOUND;
    if (mrc != 0)
        return lmdb_err(mrc, "cannot delete from the vault");
    return KM_OK;
}

/* A cursor in a write transaction is tracked by LMDB: a put of the current
 * key's new value by fn (through mdb_put) leaves it valid. */
static int lmdb_iter(km__txn *t, km__table tbl, const uint8_t *prefix, size_t prefix_len,
                     km__rec_fn fn, void *arg)
{
    MDB_cursor *c = NULL;
    MDB_cursor_op op;
    MDB_val k, v;
    int rc = KM_OK, mrc;

    if ((mrc = mdb_cursor_open(txn_of(t), env_of(t->st)->dbi[tbl], &c)) != 0)
        return lmdb_err(mrc, "cannot read the vault");
    if (prefix_len > 0) {
        k = mval(prefix, prefix_len);
        op = MDB_SET_RANGE;
    } else {
        op = MDB_FIRST;
    }
    for (;; op = MDB_NEXT) {
        mrc = mdb_cursor_get(c, &k, &v, op);
        if (mrc == MDB_NOTFOUND)
            break;
        if (mrc != 0) {
            rc = lmdb_err(mrc, "cannot read the vault");
            break;
        }
        if (prefix_len > 0
            && (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0))
            break;
        if ((rc = fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc;
}

static int lmdb_clear(km__txn *t, km__table tbl)
{
    int mrc = mdb_drop(txn_of(t), env_of(t->st)->dbi[tbl], 0);

    return mrc == 0 ? KM_OK : lmdb_err(mrc, "cannot clear a vault table");
}

static int lmdb_count(km__txn *t, km__table tbl, uint64_t *out)
{
    MDB_stat st;
    int mrc;

    if ((mrc = mdb_stat(txn_of(t), env_of(t->st)->dbi[tbl], &st)) != 0)
        return lmdb_err(mrc, "cannot read the vault");
    *out = st.ms_entries;
    return KM_OK;
}

/* ------------------------------------------------- process-wide registry */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static km__env_lmdb *reg_head;
static km__env_lmdb *reg_orphans;    /* envs inherited across fork() and dropped in the child */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

/* fork() while another thread holds reg_mu would leave it locked forever in
 * the child: hold it across fork instead. */
static void reg_lock(void)
{
    pthread_mutex_lock(&reg_mu);
}

static void reg_unlock(void)
{
    pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
    (void)pthread_atfork(reg_lock, reg_unlock, reg_unlock);
}

/* Aborts the kept read transactions (each taken from its slot by exchange: one
 * in use is not in its slot): when the reader table is full, and when no
 * transaction of e is running (the
 * environment is being closed, or compaction holds every new one back). */
static void rd_drain(km__env_lmdb *e)
{
    int i;
    for (i = 0; i < RD_KEPT; i++) {
        MDB_txn *t = atomic_exchange(&e->rd[i].txn, NULL);
        if (t != NULL)
            mdb_txn_abort(t);
    }
}

static void env_destroy(km__env_lmdb *e)
{
    if (e == NULL)
        return;
    rd_drain(e);
    if (e->mdb != NULL)
        mdb_env_close(e->mdb);
    if (e->lock_fd >= 0)
        (void)close(e->lock_fd);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cond);
    free(e);
}

#define COMPACT_TMP "compact.tmp"

/* Removes a compaction directory left by a crash (its half-written copy). */
static void compact_tmp_remove(const char *dir)
{
    char path[PATH_MAX + 32];
    int n;

    n = snprintf(path, sizeof path, "%s/" COMPACT_TMP "/data.mdb", dir);
    if (n > 0 && (size_t)n < sizeof path)
        (void)unlink(path);
    n = snprintf(path, sizeof path, "%s/" COMPACT_TMP, dir);
    if (n > 0 && (size_t)n < sizeof path)
        (void)rmdir(path);
}

/* Creates and opens e->mdb on `dir` and its named databases. On failure
 * e->mdb is NULL. */
static int env_mdb_open(km__env_lmdb *e, const char *dir, uint64_t map_size)
{
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    struct stat st2;
    int mrc, dead, i, rc;

    if ((mrc = mdb_env_create(&e->mdb)) != 0) {
        e->mdb = NULL;
        rc = lmdb_err(mrc, "cannot create the LMDB environment");
        goto fail;
    }
    if ((mrc = mdb_env_set_maxdbs(e->mdb, KM__T__COUNT)) != 0
        || (map_size != 0 && (mrc = mdb_env_set_mapsize(e->mdb, (size_t)map_size)) != 0)) {
        rc = lmdb_err(mrc, "cannot configure the LMDB environment");
        goto fail;
    }
    /* Durable commits only: none of LMDB's no-sync or no-meminit flags (docs/RELIABILITY.md C). */
    if ((mrc = mdb_env_open(e->mdb, dir, MDB_NOTLS, 0600)) != 0) {
        rc = lmdb_err(mrc, "cannot open the vault environment");
        goto fail;
    }
    /* Holding LMDB's shared lock on lock.mdb: no compaction runs anywhere,
     * so a leftover compaction directory is from a crash. */
    compact_tmp_remove(dir);
    /* The directory must still be the one we looked up (the registry key). */
    if (stat(dir, &st2) != 0 || st2.st_dev != e->dev || st2.st_ino != e->ino) {
        rc = km__err(KM_E_IO, "the vault directory changed while it was being opened");
        goto fail;
    }
    if (map_size == 0) {
        /* max(1 GiB, the size the vault already has) */
        if ((mrc = mdb_env_set_mapsize(e->mdb, 0)) != 0
            || (mrc = mdb_env_info(e->mdb, &info)) != 0
            || (info.me_mapsize < DEFAULT_MAP_SIZE
                && (mrc = mdb_env_set_mapsize(e->mdb, (size_t)DEFAULT_MAP_SIZE)) != 0)) {
            rc = lmdb_err(mrc, "cannot set the vault map size");
            goto fail;
        }
    }
    (void)mdb_reader_check(e->mdb, &dead);
    /* Named DB handles live on only if the txn opening them commits. */
    if ((mrc = mdb_txn_begin(e->mdb, NULL, 0, &txn)) != 0) {
        rc = lmdb_err(mrc, "cannot begin a vault transaction");
        goto fail;
    }
    for (i = 0; i < KM__T__COUNT; i++) {
        if ((mrc = mdb_dbi_open(txn, km__table_name((km__table)i), MDB_CREATE, &e->dbi[i])) != 0) {
            mdb_txn_abort(txn);
            rc = lmdb_err(mrc, "cannot open a vault table");
            goto fail;
        }
    }
    if ((mrc = mdb_txn_commit(txn)) != 0) {
        rc = lmdb_err(mrc, "cannot commit the vault tables");
        goto fail;
    }
    return KM_OK;
fail:
    if (e->mdb != NULL)
        mdb_env_close(e->mdb);
    e->mdb = NULL;
    return rc;
}

static int env_new(const char *dir, const struct stat *st, uint64_t map_size, unsigned gen,
                   km__env_lmdb **out)
{
    km__env_lmdb *e;
    int rc;

    *out = NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        free(e);
        return km__err(KM_E_NOMEM, "vault: cannot create a mutex");
    }
    if (pthread_cond_init(&e->cond, NULL) != 0) {
        pthread_mutex_destroy(&e->mu);
        free(e);
        return km__err(KM_E_NOMEM, "vault: cannot create a condition variable");
    }
    atomic_init(&e->active, 0);
    atomic_init(&e->resizing, 0);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->fork_gen = gen;
    e->refs = 1;
    e->lock_fd = -1;
    e->base.ops = &km__store_lmdb;
    atomic_init(&e->gen_base, 0);

    if ((rc = env_mdb_open(e, dir, map_size)) != KM_OK)
        goto fail;
    *out = e;
    return KM_OK;
fail:
    env_destroy(e);
    return rc;
}

/* Finds or opens the shared environment of `dir` (described by `st`). */
static int env_acquire(const char *dir, const struct stat *st, uint64_t map_size,
                       km__env_lmdb **out)
{
    unsigned gen = atomic_load(&km__fork_gen);
    km__env_lmdb *e;
    int rc = KM_OK, dead;

    *out = NULL;
    pthread_mutex_lock(&reg_mu);
    for (e = reg_head; e != NULL; e = e->next) {
        /* an env inherited from the parent process is never reused */
        if (e->dev == st->st_dev && e->ino == st->st_ino && e->fork_gen == gen)
            break;
    }
    if (e != NULL) {
        e->refs++;
        (void)mdb_reader_check(e->mdb, &dead);
    } else if ((rc = env_new(dir, st, map_size, gen, &e)) == KM_OK) {
        e->next = reg_head;
        reg_head = e;
    }
    pthread_mutex_unlock(&reg_mu);
    if (rc == KM_OK)
        *out = e;
    return rc;
}

static void lmdb_ref(km__store *st)
{
    pthread_mutex_lock(&reg_mu);
    env_of(st)->refs++;
    pthread_mutex_unlock(&reg_mu);
}

static void lmdb_close(km__store *st)
{
    km__env_lmdb *env = env_of(st), **pp;

    if (env == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    if (--env->refs > 0) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (pp = &reg_head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == env) {
            *pp = env->next;
            break;
        }
    }
    if (env->fork_gen != atomic_load(&km__fork_gen)) {
        /* Inherited from the parent across fork(): LMDB must not be used here,
         * and mdb_env_close could touch the parent's reader slots. Leave the
         * mapping, descriptors and mutex (maybe locked) alone, on a list that
         * keeps them reachable. */
        env->next = reg_orphans;
        reg_orphans = env;
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    pthread_mutex_unlock(&reg_mu);
    env_destroy(env);
}

/* ------------------------------------------------------------ transactions */

static void env_leave(km__env_lmdb *e)
{
    if (atomic_fetch_sub(&e->active, 1) == 1 && atomic_load(&e->resizing)) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->mu);
    }
}

static void env_enter(km__env_lmdb *e)
{
    for (;;) {
        atomic_fetch_add(&e->active, 1);
        if (!atomic_load(&e->resizing))
            return;
        env_leave(e);
        pthread_mutex_lock(&e->mu);
        while (atomic_load(&e->resizing))
            pthread_cond_wait(&e->cond, &e->mu);
        pthread_mutex_unlock(&e->mu);
    }
}

/* Another process grew the map: adopt its size once no transaction of this
 * process is open (LMDB requires it). */
static int env_adopt_mapsize(km__env_lmdb *e)
{
    struct timespec deadline;
    int rc = KM_OK, w = 0, mrc;

    pthread_mutex_lock(&e->mu);
    if (atomic_load(&e->resizing)) {
        /* another thread is doing it */
        while (atomic_load(&e->resizing))
            pthread_cond_wait(&e->cond, &e->mu);
        pthread_mutex_unlock(&e->mu);
        return KM_OK;
    }
    atomic_store(&e->resizing, 1);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += RESIZE_WAIT_S;
    while (atomic_load(&e->active) > 0 && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&e->cond, &e->mu, &deadline);
    if (atomic_load(&e->active) > 0)
        rc = km__err(KM_E_BUSY, "the vault map grew in another process while transactions "
                                "of this process stay open");
    else if ((mrc = mdb_env_set_mapsize(e->mdb, 0)) != 0)
        rc = lmdb_err(mrc, "cannot adopt the vault's new map size");
    atomic_store(&e->resizing, 0);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static int lmdb_txn_begin(km__store *st, int write, km__txn *t)
{
    km__env_lmdb *env = env_of(st);
    lmdb_txn *lt = (lmdb_txn *)(void *)t;
    int mrc, rc, tries;

    if (env->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "vault environment used in a forked child; open the vault "
                                  "again there");
    if (env->mdb == NULL)
        return km__err(KM_E_IO, "the vault environment could not be reopened after compaction; "
                                "close the vault and open it again");
    for (tries = 0;; tries++) {
        env_enter(env);
        if (!write) { /* a kept one, renewed: the newest snapshot, as a new one */
            MDB_txn *kept = atomic_exchange(&env->rd[km__thread_index() % RD_KEPT].txn, NULL);
            if (kept != NULL && mdb_txn_renew(kept) == 0) {
                lt->txn = kept;
                break;
            }
            if (kept != NULL)
                mdb_txn_abort(kept);
        }
        mrc = mdb_txn_begin(env->mdb, NULL, write ? 0 : MDB_RDONLY, &lt->txn);
        if (mrc == 0)
            break;
        env_leave(env);
        if (mrc == MDB_MAP_RESIZED && tries < 3) {
            if ((rc = env_adopt_mapsize(env)) != KM_OK)
                return rc;
            continue;
        }
        if (mrc == MDB_READERS_FULL && tries < 3) {
            /* the reader table is shared by every process on the vault: give
             * back the slots this process keeps idle, then try again */
            rd_drain(env);
            continue;
        }
        return lmdb_err(mrc, "cannot begin a vault transaction");
    }
    return KM_OK;
}

/* After LMDB reports EIO on a commit: 1 when the cause is a full file system
 * (a short write there gives EIO, not ENOSPC) or the file size limit. */
static int storage_full(km__env_lmdb *e)
{
    struct statvfs vs;
    struct stat sb;
    struct rlimit rl;
    int fd;

    if (mdb_env_get_fd(e->mdb, &fd) != 0)
        return 0;
    if (fstatvfs(fd, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < ((uint64_t)64 << 10))
        return 1;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && fstat(fd, &sb) == 0
        && (uint64_t)sb.st_size + ((uint64_t)64 << 10) > (uint64_t)rl.rlim_cur)
        return 1;
    return 0;
}

static int lmdb_txn_commit(km__txn *t)
{
    km__env_lmdb *e = env_of(t->st);
    int mrc, rc = KM_OK;

    if ((mrc = mdb_txn_commit(txn_of(t))) != 0) {
        if (mrc == EIO && storage_full(e))
            rc = km__err_native(KM_E_FULL, KM_NATIVE_LMDB, (unsigned long)(long)mrc,
                                "cannot commit the vault transaction: the file system "
                                "holding the vault is full (LMDB: %s)", mdb_strerror(mrc));
        else
            rc = lmdb_err(mrc, "cannot commit the vault transaction");
    }
    env_leave(e);
    return rc;
}

static void lmdb_txn_abort(km__txn *t)
{
    km__env_lmdb *e = env_of(t->st);
    MDB_txn *txn = txn_of(t), *empty = NULL;

    if (t->write) {
        mdb_txn_abort(txn);
    } else {
        /* kept for the next read of this thread's slot, holding no snapshot */
        mdb_txn_reset(txn);
        if (!atomic_compare_exchange_strong(&e->rd[km__thread_index() % RD_KEPT].txn, &empty,
                                            txn))
            mdb_txn_abort(txn);
    }
    env_leave(e);
}

/* Looks the directory up, creating it (0700) with KM_OPEN_CREATE. Without
 * CREATE, a directory without data.mdb holds no vault: nothing is created. */
static int vault_dir(const char *dir, uint32_t flags, struct stat *st)
{
    char path[4200];
    struct stat fst;
    int n;

    if (stat(dir, st) != 0) {
        if (errno != ENOENT)
            return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                                  "cannot look up the vault directory");
        if (!(flags & KM_OPEN_CREATE))
            return km__err(KM_E_NOTFOUND, "no vault at this path");
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                                  "cannot create the vault directory");
        if (stat(dir, st) != 0)
            return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                                  "cannot look up the vault directory");
    }
    if (!S_ISDIR(st->st_mode))
        return km__err(KM_E_INVALID, "the vault path is not a directory");
    /* Whoever can write the directory can replace lock.mdb or data.mdb with a
     * symbolic link, and LMDB would then write where the link points with this
     * process's rights: the directory must belong to this user (or root) and
     * be writable by nobody else, and neither file may be a link. */
    if (st->st_uid != geteuid() && st->st_uid != 0)
        return km__err(KM_E_DENIED, "the vault directory belongs to another user (uid %lu): "
                                    "refused", (unsigned long)st->st_uid);
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return km__err(KM_E_DENIED, "the vault directory is writable by group or others "
                                    "(chmod go-w it, or 700): refused");
    {
        static const char *const files[] = { "data.mdb", "lock.mdb" };
        size_t i;
        for (i = 0; i < sizeof files / sizeof files[0]; i++) {
            n = snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            if (n < 0 || (size_t)n >= sizeof path)
                return km__err(KM_E_INVALID, "vault path too long");
            if (lstat(path, &fst) != 0) {
                if (errno == ENOENT)
                    continue;
                return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                                      "cannot look up the vault file");
            }
            if (!S_ISREG(fst.st_mode))
                return km__err(KM_E_DENIED, "the vault's %s is not a regular file (a symbolic "
                                            "link?): refused", files[i]);
        }
    }
    if (!(flags & KM_OPEN_CREATE)) {
        n = snprintf(path, sizeof path, "%s/data.mdb", dir);
        if (n < 0 || (size_t)n >= sizeof path)
            return km__err(KM_E_INVALID, "vault path too long");
        if (stat(path, &fst) != 0) {
            if (errno == ENOENT)
                return km__err(KM_E_NOTFOUND, "no vault at this path");
            return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                                  "cannot look up the vault file");
        }
    }
    return KM_OK;
}

static int lmdb_open(km__store **out, const char *location, const km_open_options *o)
{
    km__env_lmdb *e = NULL;
    struct stat st;
    int rc;

    *out = NULL;
    (void)pthread_once(&reg_once, reg_init);
    if ((rc = vault_dir(location, o->flags, &st)) != KM_OK)
        return rc;
    if ((rc = env_acquire(location, &st, o->map_size, &e)) != KM_OK)
        return rc;
    *out = &e->base;
    return KM_OK;
}

/* LMDB's last committed transaction id, read from the shared meta pages (so
 * other processes' commits count), plus what compactions of this handle
 * added. */
static int lmdb_gen(km__store *st, uint64_t *out)
{
    km__env_lmdb *e = env_of(st);
    MDB_envinfo info;
    int mrc, rc = KM_OK;

    *out = 0;
    if (e->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "vault environment used in a forked child; open the vault "
                                  "again there");
    env_enter(e);   /* holds off a compaction closing e->mdb */
    if (e->mdb == NULL)
        rc = km__err(KM_E_IO, "the vault environment could not be reopened after compaction; "
                              "close the vault and open it again");
    else if ((mrc = mdb_env_info(e->mdb, &info)) != 0)
        rc = lmdb_err(mrc, "cannot read the vault environment");
    else
        *out = atomic_load(&e->gen_base) + (uint64_t)info.me_last_txnid;
    env_leave(e);
    return rc;
}

/* ---------------------------------------------------------------- compact */

static int errno_err(int code, const char *what)
{
    int e = errno;
    return km__err_native(code, KM_NATIVE_ERRNO, (unsigned long)e, "%s: %s", what, strerror(e));
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -1;
    if (fsync(fd) != 0)
        rc = -1;
    (void)close(fd);
    return rc;
}

/* Copies `dir` compacted into dir/compact.tmp and renames the copy over
 * dir/data.mdb. The caller holds the exclusive lock on lock.mdb, and no
 * environment of this process is open on `dir`. */
static int compact_locked(const char *dir, size_t map_size)
{
    char tmp[PATH_MAX], tmpdata[PATH_MAX + 16], data[PATH_MAX + 16];
    MDB_env *src = NULL;
    int rc = KM_OK, mrc;

    if (snprintf(tmp, sizeof tmp, "%s/" COMPACT_TMP, dir) >= (int)sizeof tmp)
        return km__err(KM_E_INVALID, "vault path too long");
    snprintf(tmpdata, sizeof tmpdata, "%s/data.mdb", tmp);
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    compact_tmp_remove(dir);
    if (mkdir(tmp, 0700) != 0)
        return errno_err(KM_E_IO, "cannot create the compaction directory");
    km__fault_step();   /* fault injection: the empty compaction directory exists */
    /* MDB_NOLOCK: this environment never touches lock.mdb, so closing it
     * cannot drop our lock; MDB_RDONLY: it only reads data.mdb. */
    if ((mrc = mdb_env_create(&src)) != 0) {
        src = NULL;
        rc = lmdb_err(mrc, "cannot create the LMDB environment");
        goto fail;
    }
    if ((mrc = mdb_env_set_maxdbs(src, KM__T__COUNT)) != 0
        || (map_size != 0 && (mrc = mdb_env_set_mapsize(src, map_size)) != 0)
        || (mrc = mdb_env_open(src, dir, MDB_NOLOCK | MDB_RDONLY | MDB_NOTLS, 0600)) != 0) {
        rc = lmdb_err(mrc, "cannot open the vault for compaction");
        goto fail;
    }
    if ((mrc = mdb_env_copy2(src, tmp, MDB_CP_COMPACT)) != 0) {
        rc = lmdb_err(mrc, "cannot write the compacted copy of the vault");
        goto fail;
    }
    km__fault_step();   /* fault injection: the copy is written, not yet synced */
    mdb_env_close(src);
    src = NULL;
    /* The copy is complete and durable before it replaces the original. */
    if (fsync_path(tmpdata, 0) != 0 || fsync_path(tmp, 1) != 0) {
        rc = errno_err(KM_E_IO, "cannot sync the compacted copy of the vault");
        goto fail;
    }
    km__fault_step();   /* the compacted copy is complete, not yet renamed */
    if (rename(tmpdata, data) != 0) {
        rc = errno_err(KM_E_IO, "cannot replace the vault file with its compacted copy");
        goto fail;
    }
    km__fault_step();   /* fault injection: renamed, the directory not yet synced */
    if (fsync_path(dir, 1) != 0) {
        /* the rename happened; only its durability is in doubt */
        rc = errno_err(KM_E_IO, "cannot sync the vault directory after compaction");
    }
    (void)rmdir(tmp);
    return rc;
fail:
    if (src != NULL)
        mdb_env_close(src);
    compact_tmp_remove(dir);
    return rc;
}

static int lmdb_compact(km__store *st)
{
    km__env_lmdb *e = env_of(st);
    char dir[PATH_MAX], lockpath[PATH_MAX + 16];
    const char *p = NULL;
    struct timespec deadline;
    struct flock fl;
    MDB_envinfo info;
    size_t map_size;
    int rc = KM_OK, rc2, mrc, w = 0, lfd = -1, locked = 0;

    if (e == NULL)
        return km__err(KM_E_INVALID, "km__store_compact: store is NULL");
    if (e->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "vault environment used in a forked child; open the vault "
                                  "again there");
    /* reg_mu is held throughout: no km_open of this process joins the
     * environment while it is closed and replaced. */
    pthread_mutex_lock(&reg_mu);
    if (e->mdb == NULL) {
        pthread_mutex_unlock(&reg_mu);
        return km__err(KM_E_IO, "the vault environment is not open");
    }
    if (e->refs > 1) {
        pthread_mutex_unlock(&reg_mu);
        return km__err(KM_E_BUSY, "cannot compact: another km_ctx of this process has the "
                                  "vault open (close it first)");
    }
    if ((mrc = mdb_env_get_path(e->mdb, &p)) != 0 || p == NULL
        || strlen(p) >= sizeof dir - 1) {
        pthread_mutex_unlock(&reg_mu);
        return km__err(KM_E_INTERNAL, "cannot get the vault path");
    }
    strcpy(dir, p);
    if (snprintf(lockpath, sizeof lockpath, "%s/lock.mdb", dir) >= (int)sizeof lockpath) {
        pthread_mutex_unlock(&reg_mu);
        return km__err(KM_E_INVALID, "vault path too long");
    }
    /* Hold back this process's transactions (as for a map resize). */
    pthread_mutex_lock(&e->mu);
    while (atomic_load(&e->resizing))
        pthread_cond_wait(&e->cond, &e->mu);
    atomic_store(&e->resizing, 1);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += RESIZE_WAIT_S;
    while (atomic_load(&e->active) > 0 && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&e->cond, &e->mu, &deadline);
    if (atomic_load(&e->active) > 0) {
        rc = km__err(KM_E_BUSY, "cannot compact: transactions of this process stay open");
        goto release;
    }
    pthread_mutex_unlock(&e->mu);

    map_size = 0;
    if (mdb_env_info(e->mdb, &info) == 0) {
        map_size = info.me_mapsize;
        /* the reopened file's transaction ids may restart: the change
         * generation goes on from past this one's */
        atomic_fetch_add(&e->gen_base, (uint64_t)info.me_last_txnid + 1);
    }
    /* Closing our environment drops LMDB's shared lock on lock.mdb (byte 0,
     * F_RDLCK, held by every process with the environment open). */
    rd_drain(e);
    mdb_env_close(e->mdb);
    e->mdb = NULL;
    if (e->lock_fd >= 0) {
        (void)close(e->lock_fd);
        e->lock_fd = -1;
    }
    lfd = open(lockpath, O_RDWR | O_CLOEXEC);
    if (lfd < 0) {
        rc = errno_err(KM_E_IO, "cannot open the vault lock file");
    } else {
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 1;
        if (fcntl(lfd, F_SETLK, &fl) == 0)
            locked = 1;
        else if (errno == EAGAIN || errno == EACCES)
            rc = km__err(KM_E_BUSY, "cannot compact: another process has the vault open");
        else
            rc = errno_err(KM_E_IO, "cannot lock the vault lock file");
    }
    if (locked)
        rc = compact_locked(dir, map_size);
    if (!locked && lfd >= 0) {
        /* must be closed before LMDB takes its lock again */
        (void)close(lfd);
        lfd = -1;
    }
    /* Reopen. With our exclusive lock still held, LMDB's own exclusive-lock
     * attempt succeeds (same process), so it reinitialises lock.mdb for the
     * new file (whose transaction ids restart) before it downgrades the lock
     * to shared and a process waiting to open the vault proceeds. */
    rc2 = env_mdb_open(e, dir, map_size);
    if (lfd >= 0) {
        if (rc2 == KM_OK)
            e->lock_fd = lfd;   /* closing it would drop LMDB's lock */
        else
            (void)close(lfd);
    }
    if (rc == KM_OK && rc2 != KM_OK)
        rc = rc2;
    pthread_mutex_lock(&e->mu);
release:
    atomic_store(&e->resizing, 0);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

/* ---------------------------------------------------------------- backup */

/* Writes a compacted copy of the environment's data.mdb to `fd` (at its
 * current offset, which must be 0 on an empty file), from one read snapshot:
 * writers of every process go on meanwhile. Holds off a compaction (it
 * counts as an open transaction of this process) and adopts a map grown by
 * another process. For lmdb_backup.c. */
int km__lmdb_copyfd(km__store *st, int fd)
{
    km__env_lmdb *e = env_of(st);
    int mrc, rc, tries;

    if (e == NULL || fd < 0)
        return km__err(KM_E_INVALID, "km__lmdb_copyfd: bad argument");
    if (e->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "vault environment used in a forked child; open the vault "
                                  "again there");
    for (tries = 0;; tries++) {
        env_enter(e);
        if (e->mdb == NULL) {
            env_leave(e);
            return km__err(KM_E_IO, "the vault environment could not be reopened after "
                                    "compaction; close the vault and open it again");
        }
        mrc = mdb_env_copyfd2(e->mdb, fd, MDB_CP_COMPACT);
        env_leave(e);
        if (mrc != MDB_MAP_RESIZED || tries >= 3)
            break;
        if ((rc = env_adopt_mapsize(e)) != KM_OK)
            return rc;
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
            return errno_err(KM_E_IO, "cannot rewind the backup file");
    }
    if (mrc != 0)
        return lmdb_err(mrc, "cannot write the copy of the vault");
    return KM_OK;
}

const km__store_ops km__store_lmdb = {
    .version = KM__STORE_OPS_VERSION,
    .scheme = "lmdb",
    .txn_size = sizeof(lmdb_txn),
    .open = lmdb_open,
    .close = lmdb_close,
    .txn_begin = lmdb_txn_begin,
    .txn_commit = lmdb_txn_commit,
    .txn_abort = lmdb_txn_abort,
    .get = lmdb_get,
    .put = lmdb_put,
    .del = lmdb_del,
    .iter = lmdb_iter,
    .clear = lmdb_clear,
    .count = lmdb_count,
    .gen = lmdb_gen,
    .compact = lmdb_compact,
    .backup = km__lmdb_backup,
    .restore = km__lmdb_restore,
    .ref = lmdb_ref,
};
