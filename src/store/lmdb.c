/*
 * vault.c - the LMDB vault: one shared environment per directory, passphrase
 * keyslots for the master key, and records sealed with AES-256-GCM.
 *
 * Layout of the environment (one named DB per km__table):
 *   meta   "format"   1 byte, the vault format (1)             unsealed
 *          "vault-id" 16 random bytes                          unsealed
 *          "check"    sealed copy of format || vault-id: a downgraded or
 *                     swapped unsealed entry fails the open (KM_E_CORRUPT)
 *   slots  BE32 slot id -> TLV keyslot (unsealed: the master is not known
 *          yet; the master in it is AES-KWP wrapped under scrypt(passphrase))
 *   others sealed records (km_int.h): [1][nonce 12][ciphertext][tag 16],
 *          AAD = "km-rec" || 1 || table name || 0 || LMDB key.
 *
 * Processes and threads: LMDB must not open one environment twice in one
 * process (closing one copy would drop the other's fcntl locks), so a
 * process-wide registry keyed by the directory's st_dev/st_ino shares one
 * km__env, refcounted. Read transactions run on many threads (MDB_NOTLS).
 * An environment is never used across fork(): each env records km__fork_gen
 * at open and km__txn_begin refuses it in a child with KM_E_FORK (the core
 * checks its own handles the same way); a child opens the vault again and
 * gets a fresh environment.
 */
#include "km_int.h"
#include "shamir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
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

static void fault_step(void);   /* fault injection, below km__txn_commit's section */

#define VAULT_FORMAT 1
#define MASTER_LEN 32
#define DEFAULT_MAP_SIZE ((uint64_t)1 << 30)
#define RESIZE_WAIT_S 2

#define REC_FORMAT 1
#define REC_NONCE 12
#define REC_TAG 16
#define REC_OVERHEAD (1 + REC_NONCE + REC_TAG)
#define REC_MAX ((size_t)16 << 20)  /* largest plaintext (the km_secret limit) */
#define KEY_MAX 511                 /* LMDB's default maximum key size */
#define AAD_PREFIX "km-rec"
#define AAD_MAX (sizeof AAD_PREFIX - 1 + 1 + 16 + 1 + KEY_MAX)

/* Keyslot TLV tags and values. */
enum {
    SLOT_TAG_TYPE = 1,
    SLOT_TAG_KDF = 2,
    SLOT_TAG_LOG2N = 3,
    SLOT_TAG_R = 4,
    SLOT_TAG_P = 5,
    SLOT_TAG_SALT = 6,
    SLOT_TAG_WRAPPED = 7,
    SLOT_TAG_SELECTOR = 8,  /* principal slots: SHA-256("km-principal-v1" || salt || name) */
    SLOT_TAG_PID = 9,       /* principal slots: the principal id */
    SLOT_TAG_BACKEND = 10,  /* backend slots: the backend's name */
    SLOT_TAG_BLOB = 11,     /* backend slots: the backend's sealed blob */
    SLOT_TAG_M = 12,        /* Shamir slots: shares needed */
    SLOT_TAG_N = 13,        /* Shamir slots: shares made */
    SLOT_TAG_SETID = 14,    /* Shamir slots: random id of the split */
    SLOT_TAG_HASHES = 15    /* Shamir slots: SHA-256 of each share, in order */
};
#define SLOT_TYPE_PASSPHRASE 1
#define SLOT_TYPE_BACKEND 2
#define SLOT_TYPE_SHAMIR 3
#define SLOT_KDF_SCRYPT 1
#define SLOT_SCRYPT_R 8
#define SLOT_SCRYPT_P 1
#define SLOT_SALT_LEN 32
#define SLOT_KEK_LEN 32
#define SLOT_WRAPPED_LEN (MASTER_LEN + 8)
/* five u32 entries, the salt and the wrapped master, nothing else */
#define SLOT_PASS_REC_LEN (5 * (5 + 4) + (5 + SLOT_SALT_LEN) + (5 + SLOT_WRAPPED_LEN))

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

struct km__env {
    MDB_env *mdb;
    MDB_dbi dbi[KM__T__COUNT];
    dev_t dev;
    ino_t ino;
    unsigned fork_gen;          /* km__fork_gen when opened */
    unsigned refs;              /* under reg_mu */
    struct km__env *next;       /* registry list, under reg_mu */
    /* Adopting a map size grown by another process (mdb_env_set_mapsize(env, 0))
     * needs no transaction of this process open: `active` counts them,
     * `resizing` holds new ones back meanwhile. */
    atomic_uint active;
    atomic_int resizing;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* After km__env_compact: the descriptor of lock.mdb whose exclusive
     * lock let the compaction run (downgraded to LMDB's shared lock when
     * the environment was reopened). Closing any descriptor of lock.mdb
     * drops every fcntl lock of the process on it, LMDB's too, so it stays
     * open until the environment is closed. -1 otherwise. */
    int lock_fd;
};

struct km__txn {
    km__env *env;
    MDB_txn *txn;
    int write;
    int err;                    /* sticky: a write failed, the txn can only abort */
    int native;                 /* its LMDB code */
};

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

static int table_ok(km__table tbl)
{
    return (unsigned)tbl < (unsigned)KM__T__COUNT;
}

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
static int rec_shape(km__table tbl, const MDB_val *v)
{
    const uint8_t *p = v->mv_data;

    if (v->mv_size < REC_OVERHEAD + 1 || v->mv_size - REC_OVERHEAD > REC_MAX)
        return km__err(KM_E_CORRUPT, "vault record in table %s has an impossible length",
                       table_names[tbl]);
    if (p[0] != REC_FORMAT)
        return km__err(KM_E_CORRUPT, "vault record in table %s has unknown record format %u",
                       table_names[tbl], (unsigned)p[0]);
    return KM_OK;
}

/* Opens a stored value into `out` (v->mv_size - REC_OVERHEAD bytes). On
 * failure `out` is zeroed. */
static int rec_unseal(const km__sealer *s, km__table tbl, const MDB_val *k, const MDB_val *v,
                      uint8_t *out)
{
    uint8_t aad[AAD_MAX];
    const uint8_t *p = v->mv_data;
    size_t n = v->mv_size - REC_OVERHEAD, aad_len;

    if (k->mv_size == 0 || k->mv_size > KEY_MAX)
        return km__err(KM_E_CORRUPT, "vault record in table %s has an impossible key",
                       table_names[tbl]);
    aad_len = aad_build(aad, tbl, k->mv_data, k->mv_size);
    if (km__gcmk_open(s->seal, p + 1, aad, aad_len, p + 1 + REC_NONCE, n, p + 1 + REC_NONCE + n,
                     out) != KM_OK)
        return km__err(KM_E_CORRUPT, "vault record in table %s failed to open", table_names[tbl]);
    return KM_OK;
}

static int rec_args(const char *fn, const km__txn *t, km__table tbl, const uint8_t *key,
                    size_t key_len)
{
    if (t == NULL || t->txn == NULL)
        return km__err(KM_E_INVALID, "%s: transaction is NULL", fn);
    if (!table_ok(tbl))
        return km__err(KM_E_INVALID, "%s: unknown table", fn);
    if (key == NULL || key_len == 0 || key_len > KEY_MAX)
        return km__err(KM_E_INVALID, "%s: key must be 1 to %d bytes", fn, KEY_MAX);
    return KM_OK;
}

static int txn_writable(const char *fn, km__txn *t)
{
    if (!t->write)
        return km__err(KM_E_INVALID, "%s: read-only transaction", fn);
    if (t->err != KM_OK)
        return km__err_native(t->err, KM_NATIVE_LMDB, (unsigned long)(long)t->native,
                              "%s: the transaction already failed", fn);
    return KM_OK;
}

/* Records a failed LMDB write: LMDB then only allows an abort. */
static int txn_fail(km__txn *t, int mrc, const char *what)
{
    int rc = lmdb_err(mrc, what);
    t->err = rc;
    t->native = mrc;
    return rc;
}

static int raw_put(km__txn *t, km__table tbl, const void *key, size_t key_len, const void *val,
                   size_t val_len)
{
    MDB_val k = mval(key, key_len), v = mval(val, val_len);
    int mrc;
    fault_step();
    mrc = mdb_put(t->txn, t->env->dbi[tbl], &k, &v, MDB_NOOVERWRITE);

    if (mrc == MDB_KEYEXIST)
        return km__err(KM_E_EXISTS, "a record with this key already exists in table %s",
                       table_names[tbl]);
    if (mrc != 0)
        return txn_fail(t, mrc, "cannot write the vault");
    return KM_OK;
}

int km__txn_is_write(const km__txn *t)
{
    return t != NULL && t->write;
}

int km__table_count(km__txn *t, km__table tbl, uint64_t *out)
{
    MDB_stat st;
    int mrc;

    *out = 0;
    if (t == NULL || t->txn == NULL || !table_ok(tbl))
        return km__err(KM_E_INVALID, "km__table_count: bad arguments");
    if ((mrc = mdb_stat(t->txn, t->env->dbi[tbl], &st)) != 0)
        return lmdb_err(mrc, "cannot read the vault");
    *out = st.ms_entries;
    return KM_OK;
}

int km__authfail_get(km__txn *t, uint64_t *n)
{
    MDB_val k = mval(META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1), v;
    int mrc = mdb_get(t->txn, t->env->dbi[KM__T_META], &k, &v);

    *n = 0;
    if (mrc == MDB_NOTFOUND)
        return KM_OK;
    if (mrc != 0)
        return lmdb_err(mrc, "cannot read the vault metadata");
    if (v.mv_size != 8)
        return km__err(KM_E_CORRUPT, "vault metadata: bad failed-authentication counter");
    *n = km__be64_get(v.mv_data);
    return KM_OK;
}

int km__authfail_clear(km__txn *t)
{
    MDB_val k = mval(META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1);
    int mrc;
    fault_step();
    mrc = mdb_del(t->txn, t->env->dbi[KM__T_META], &k, NULL);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return txn_fail(t, mrc, "cannot write the vault metadata");
    return KM_OK;
}

/* Counts a failed authentication (best effort: a failure to count is not
 * the caller's error). */
static void authfail_bump(km__env *e)
{
    km__txn *t = NULL;
    uint64_t n = 0;
    uint8_t b[8];
    MDB_val k = mval(META_AUTH_FAILS, sizeof META_AUTH_FAILS - 1), v;

    if (km__txn_begin(e, 1, &t) != KM_OK)
        return;
    if (km__authfail_get(t, &n) != KM_OK) {
        km__txn_abort(t);
        return;
    }
    km__be64_put(b, n + 1);
    v = mval(b, sizeof b);
    fault_step();
    if (mdb_put(t->txn, t->env->dbi[KM__T_META], &k, &v, 0) != 0) {
        km__txn_abort(t);
        return;
    }
    (void)km__txn_commit(t);
}

/* ------------------------------------------------- process-wide registry */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static km__env *reg_head;
static km__env *reg_orphans;    /* envs inherited across fork() and dropped in the child */
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

static void env_destroy(km__env *e)
{
    if (e == NULL)
        return;
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
static int env_mdb_open(km__env *e, const char *dir, uint64_t map_size)
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
    /* Durable commits only: none of LMDB's no-sync or no-meminit flags (TESTING.md C). */
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
        if ((mrc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &e->dbi[i])) != 0) {
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
                   km__env **out)
{
    km__env *e;
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

    if ((rc = env_mdb_open(e, dir, map_size)) != KM_OK)
        goto fail;
    *out = e;
    return KM_OK;
fail:
    env_destroy(e);
    return rc;
}

/* Finds or opens the shared environment of `dir` (described by `st`). */
static int env_acquire(const char *dir, const struct stat *st, uint64_t map_size, km__env **out)
{
    unsigned gen = atomic_load(&km__fork_gen);
    km__env *e;
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

void km__env_close(km__env *env)
{
    km__env **pp;

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

static void env_leave(km__env *e)
{
    if (atomic_fetch_sub(&e->active, 1) == 1 && atomic_load(&e->resizing)) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->mu);
    }
}

static void env_enter(km__env *e)
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
static int env_adopt_mapsize(km__env *e)
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

int km__txn_begin(km__env *env, int write, km__txn **out)
{
    km__txn *t;
    int mrc, rc, tries;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__txn_begin: out is NULL");
    *out = NULL;
    if (env == NULL)
        return km__err(KM_E_INVALID, "km__txn_begin: env is NULL");
    if (env->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "vault environment used in a forked child; open the vault "
                                  "again there");
    if (env->mdb == NULL)
        return km__err(KM_E_IO, "the vault environment could not be reopened after compaction; "
                                "close the vault and open it again");
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    t->env = env;
    t->write = write != 0;
    for (tries = 0;; tries++) {
        env_enter(env);
        mrc = mdb_txn_begin(env->mdb, NULL, write ? 0 : MDB_RDONLY, &t->txn);
        if (mrc == 0)
            break;
        env_leave(env);
        if (mrc == MDB_MAP_RESIZED && tries < 3) {
            if ((rc = env_adopt_mapsize(env)) != KM_OK) {
                free(t);
                return rc;
            }
            continue;
        }
        free(t);
        return lmdb_err(mrc, "cannot begin a vault transaction");
    }
    *out = t;
    return KM_OK;
}

/* ------------------------------------------------------- fault injection */

/* A test hook (tests/check_faults.c), reachable only through the internal
 * library: every write step of the vault (a put, a delete, a commit, the
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

static void fault_step(void)
{
    unsigned long at = atomic_load_explicit(&fault_at, memory_order_relaxed);
    if (at == 0)
        return;
    if (atomic_fetch_add(&fault_count, 1) + 1 == at)
        (void)kill(getpid(), SIGKILL);
}

/* After LMDB reports EIO on a commit: 1 when the cause is a full file system
 * (a short write there gives EIO, not ENOSPC) or the file size limit. */
static int storage_full(km__env *e)
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

int km__txn_commit(km__txn *t)
{
    km__env *e;
    int mrc, rc = KM_OK;

    if (t == NULL)
        return km__err(KM_E_INVALID, "km__txn_commit: transaction is NULL");
    e = t->env;
    if (t->err != KM_OK) {
        mdb_txn_abort(t->txn);
        rc = km__err_native(t->err, KM_NATIVE_LMDB, (unsigned long)(long)t->native,
                            "vault transaction aborted after a failed write: %s",
                            mdb_strerror(t->native));
    } else {
        fault_step();   /* before the commit */
        if ((mrc = mdb_txn_commit(t->txn)) != 0) {
            if (mrc == EIO && storage_full(e))
                rc = km__err_native(KM_E_FULL, KM_NATIVE_LMDB, (unsigned long)(long)mrc,
                                    "cannot commit the vault transaction: the file system "
                                    "holding the vault is full (LMDB: %s)", mdb_strerror(mrc));
            else
                rc = lmdb_err(mrc, "cannot commit the vault transaction");
        } else
            fault_step();   /* committed, before the caller hears of it */
    }
    env_leave(e);
    free(t);
    return rc;
}

void km__txn_abort(km__txn *t)
{
    if (t == NULL)
        return;
    mdb_txn_abort(t->txn);
    env_leave(t->env);
    free(t);
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
    if (master == NULL || km_secret_len(master) != MASTER_LEN)
        return km__err(KM_E_INVALID, "km__sealer_new: master must be a %d-byte secret",
                       MASTER_LEN);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    atomic_init(&s->retired, 0);
    s->keys = km__salloc(SEALER_KEYS_LEN);
    if (s->keys == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    rc = km__hkdf_sha256(km_secret_data(master), MASTER_LEN, NULL, 0, (const uint8_t *)info_seal,
                         sizeof info_seal - 1, s->keys, 32);
    if (rc != KM_OK)
        goto out;
    rc = km__hkdf_sha256(km_secret_data(master), MASTER_LEN, NULL, 0, (const uint8_t *)info_name,
                         sizeof info_name - 1, s->keys + 32, 32);
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

/* ---------------------------------------------------------------- records */

int km__rec_get(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, km_secret **out)
{
    MDB_val k, v;
    km_secret *sec = NULL;
    int rc, mrc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__rec_get: out is NULL");
    *out = NULL;
    if ((rc = rec_args("km__rec_get", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if (s == NULL)
        return km__err(KM_E_INVALID, "km__rec_get: sealer is NULL");
    if (tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_get: keyslots are not sealed records");
    k = mval(key, key_len);
    mrc = mdb_get(t->txn, t->env->dbi[tbl], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no record with this key in table %s", table_names[tbl]);
    if (mrc != 0)
        return lmdb_err(mrc, "cannot read the vault");
    if ((rc = rec_shape(tbl, &v)) != KM_OK)
        return rc;
    if ((rc = km__secret_new_pooled(&sec, v.mv_size - REC_OVERHEAD)) != KM_OK)
        return rc;
    if ((rc = rec_unseal(s, tbl, &k, &v, km_secret_data(sec))) != KM_OK) {
        km_secret_free(sec);
        return rc;
    }
    *out = sec;
    return KM_OK;
}

int km__rec_put(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, const uint8_t *val, size_t val_len, unsigned flags)
{
    uint8_t aad[AAD_MAX], *buf;
    size_t aad_len, n;
    MDB_val k, v;
    int rc, mrc;

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
    if ((rc = txn_writable("km__rec_put", t)) != KM_OK)
        return rc;
    if (atomic_load(&s->retired))
        return km__err(KM_E_STATE, "the vault was rekeyed while this operation ran; retry it");
    /* the sealed value is not secret: ordinary heap */
    n = val_len + REC_OVERHEAD;
    buf = malloc(n);
    if (buf == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    buf[0] = REC_FORMAT;
    if ((rc = km__nonce12(buf + 1)) != KM_OK)
        goto out;
    aad_len = aad_build(aad, tbl, key, key_len);
    rc = km__gcmk_seal(s->seal, buf + 1, aad, aad_len, val, val_len, buf + 1 + REC_NONCE,
                      buf + 1 + REC_NONCE + val_len);
    if (rc != KM_OK)
        goto out;
    k = mval(key, key_len);
    v = mval(buf, n);
    fault_step();
    mrc = mdb_put(t->txn, t->env->dbi[tbl], &k, &v,
                  (flags & KM__PUT_NOOVERWRITE) ? MDB_NOOVERWRITE : 0);
    if (mrc == MDB_KEYEXIST)
        rc = km__err(KM_E_EXISTS, "a record with this key already exists in table %s",
                     table_names[tbl]);
    else if (mrc != 0)
        rc = txn_fail(t, mrc, "cannot write the vault");
out:
    free(buf);
    return rc;
}

int km__rec_del(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len)
{
    MDB_val k;
    int rc, mrc;

    if ((rc = rec_args("km__rec_del", t, tbl, key, key_len)) != KM_OK)
        return rc;
    if ((rc = txn_writable("km__rec_del", t)) != KM_OK)
        return rc;
    k = mval(key, key_len);
    fault_step();
    mrc = mdb_del(t->txn, t->env->dbi[tbl], &k, NULL);
    if (mrc == MDB_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no record with this key in table %s", table_names[tbl]);
    if (mrc != 0)
        return txn_fail(t, mrc, "cannot delete from the vault");
    return KM_OK;
}

int km__rec_iter(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *prefix,
                 size_t prefix_len, km__rec_fn fn, void *arg)
{
    MDB_cursor *c = NULL;
    MDB_cursor_op op;
    MDB_val k, v;
    uint8_t *buf = NULL;        /* secure scratch for one unsealed value */
    size_t cap = 0, n;
    int rc = KM_OK, mrc, r;

    if (t == NULL || t->txn == NULL || s == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km__rec_iter: %s is NULL",
                       t == NULL || t->txn == NULL ? "transaction" : s == NULL ? "sealer" : "fn");
    if (!table_ok(tbl) || tbl == KM__T_SLOTS)
        return km__err(KM_E_INVALID, "km__rec_iter: not a table of sealed records");
    if ((prefix == NULL && prefix_len > 0) || prefix_len > KEY_MAX)
        return km__err(KM_E_INVALID, "km__rec_iter: bad prefix");
    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[tbl], &c)) != 0)
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
            goto out;
        }
        if (prefix_len > 0
            && (k.mv_size < prefix_len || memcmp(k.mv_data, prefix, prefix_len) != 0))
            break;
        if ((rc = rec_shape(tbl, &v)) != KM_OK)
            goto out;
        n = v.mv_size - REC_OVERHEAD;
        if (n > cap) {
            km__sfree(buf, cap);
            cap = 0;
            buf = km__salloc((n + 4095) & ~(size_t)4095);
            if (buf == NULL) {
                rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
                goto out;
            }
            cap = (n + 4095) & ~(size_t)4095;
        }
        if ((rc = rec_unseal(s, tbl, &k, &v, buf)) != KM_OK)
            goto out;
        r = fn(k.mv_data, k.mv_size, buf, n, arg);
        km_memzero(buf, n);
        if (r != 0) {
            rc = r < 0 ? r : KM_OK;
            goto out;
        }
    }
out:
    mdb_cursor_close(c);
    km__sfree(buf, cap);
    return rc;
}

/* --------------------------------------------------------------- keyslots */

/* A passphrase slot (owner or principal), a backend slot, or a Shamir slot. */
typedef struct any_slot {
    uint32_t id, type;
    uint32_t log2n;                 /* passphrase */
    const uint8_t *salt;            /* passphrase */
    const uint8_t *selector;        /* principal slots: SHA-256 of salt and name; else NULL */
    const uint8_t *pid;             /* principal slots: the principal id[16] */
    const uint8_t *wrapped;         /* passphrase, Shamir: KWP of the master key */
    const char *backend;            /* backend: its name (not NUL-terminated) */
    size_t backend_len;
    const uint8_t *blob;            /* backend: its opaque blob */
    size_t blob_len;
    uint32_t m, n;                  /* Shamir */
    const uint8_t *setid;           /* Shamir: 16 bytes naming the split */
    const uint8_t *hashes;          /* Shamir: n share hashes of 32 bytes */
} any_slot;

static int tlv_bytes(const uint8_t *rec, size_t len, uint8_t tag, size_t want,
                     const uint8_t **out)
{
    size_t n;
    return km__tlv_find(rec, len, tag, out, &n) && n == want;
}

/* Parses and strictly validates a keyslot before any KDF runs on it. A slot
 * of a type this libkm does not know (a newer one's) gets type 0: skipped. */
static int slot_parse(const uint8_t *rec, size_t len, uint32_t id, any_slot *sl)
{
    uint32_t type, kdf, r, p;
    size_t n;

    memset(sl, 0, sizeof *sl);
    sl->id = id;
    if (km__tlv_check(rec, len) != KM_OK
        || km__tlv_get_u32(rec, len, SLOT_TAG_TYPE, &type) != KM_OK)
        return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
    switch (type) {
    case SLOT_TYPE_PASSPHRASE:
        if (km__tlv_get_u32(rec, len, SLOT_TAG_KDF, &kdf) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_LOG2N, &sl->log2n) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_R, &r) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_P, &p) != KM_OK
            || !tlv_bytes(rec, len, SLOT_TAG_SALT, SLOT_SALT_LEN, &sl->salt)
            || !tlv_bytes(rec, len, SLOT_TAG_WRAPPED, SLOT_WRAPPED_LEN, &sl->wrapped))
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        if (km__tlv_find(rec, len, SLOT_TAG_SELECTOR, &sl->selector, &n)) {
            if (n != 32 || !tlv_bytes(rec, len, SLOT_TAG_PID, 16, &sl->pid)
                || len != SLOT_PASS_REC_LEN + (5 + 32) + (5 + 16))
                return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        } else if (len != SLOT_PASS_REC_LEN) {
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        }
        if (kdf != SLOT_KDF_SCRYPT || sl->log2n < KM_KDF_COST_MIN
            || sl->log2n > KM_KDF_COST_MAX || r != SLOT_SCRYPT_R || p != SLOT_SCRYPT_P)
            return km__err(KM_E_CORRUPT, "keyslot %u has invalid parameters", id);
        break;
    case SLOT_TYPE_BACKEND:
        if (!km__tlv_find(rec, len, SLOT_TAG_BACKEND, (const uint8_t **)&sl->backend,
                          &sl->backend_len)
            || !km__tlv_find(rec, len, SLOT_TAG_BLOB, &sl->blob, &sl->blob_len)
            || sl->backend_len == 0 || sl->backend_len > 31 || sl->blob_len == 0
            || sl->blob_len > KM__SLOT_BLOB_MAX)
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        break;
    case SLOT_TYPE_SHAMIR:
        if (km__tlv_get_u32(rec, len, SLOT_TAG_M, &sl->m) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_N, &sl->n) != KM_OK
            || sl->m < 2 || sl->m > sl->n || sl->n > KM_SHARES_MAX
            || !tlv_bytes(rec, len, SLOT_TAG_SETID, 16, &sl->setid)
            || !tlv_bytes(rec, len, SLOT_TAG_HASHES, (size_t)sl->n * 32, &sl->hashes)
            || !tlv_bytes(rec, len, SLOT_TAG_WRAPPED, SLOT_WRAPPED_LEN, &sl->wrapped))
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        break;
    default:
        return KM_OK; /* type stays 0 */
    }
    sl->type = type;
    return KM_OK;
}

/* Writes `rec` as a new keyslot, one id past the highest. */
static int slot_put(km__txn *t, const uint8_t *rec, size_t len, uint32_t *id_out)
{
    MDB_cursor *c = NULL;
    MDB_val k, v;
    uint8_t idb[4];
    uint32_t id = 1;
    int rc = KM_OK, mrc;

    if ((rc = txn_writable("keyslot", t)) != KM_OK)
        return rc;
    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[KM__T_SLOTS], &c)) != 0)
        return lmdb_err(mrc, "cannot read the keyslots");
    mrc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (mrc == 0) {
        if (k.mv_size != 4)
            rc = km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
        else if ((id = km__be32_get(k.mv_data) + 1) == 0)
            rc = km__err(KM_E_FULL, "no keyslot id left");
    } else if (mrc != MDB_NOTFOUND) {
        rc = lmdb_err(mrc, "cannot read the keyslots");
    }
    mdb_cursor_close(c);
    if (rc != KM_OK)
        return rc;
    km__be32_put(idb, id);
    if ((rc = raw_put(t, KM__T_SLOTS, idb, sizeof idb, rec, len)) == KM_OK && id_out != NULL)
        *id_out = id;
    return rc;
}

/* The selector of a principal's slot: SHA-256("km-principal-v1" || salt || name). */
static int principal_selector(const uint8_t salt[SLOT_SALT_LEN], const char *name,
                              uint8_t out[32])
{
    static const char tag[] = "km-principal-v1";
    const uint8_t *parts[3] = { (const uint8_t *)tag, salt, (const uint8_t *)name };
    size_t lens[3] = { sizeof tag - 1, SLOT_SALT_LEN, strlen(name) };
    return km__sha256v(parts, lens, 3, out);
}

int km__slot_add_principal(km__txn *t, const km_secret *master, const uint8_t *pass,
                           size_t pass_len, uint32_t log2n, const char *principal,
                           const uint8_t pid[16])
{
    uint8_t salt[SLOT_SALT_LEN], wrapped[SLOT_WRAPPED_LEN], sel[32];
    uint8_t rec[SLOT_PASS_REC_LEN + (5 + 32) + (5 + 16)];
    uint8_t *kek = NULL;
    size_t wlen = 0;
    km__tlv_w w;
    int rc;

    if (t == NULL || t->txn == NULL)
        return km__err(KM_E_INVALID, "keyslot: transaction is NULL");
    if (master == NULL || km_secret_len(master) != MASTER_LEN)
        return km__err(KM_E_INVALID, "keyslot: master must be a %d-byte secret", MASTER_LEN);
    if (pass == NULL || pass_len == 0 || pass_len > 1024)
        return km__err(KM_E_INVALID, "keyslot: passphrase must be 1 to 1024 bytes");
    if (log2n < KM_KDF_COST_MIN || log2n > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "keyslot: kdf cost must be %d to %d", KM_KDF_COST_MIN,
                       KM_KDF_COST_MAX);
    if ((principal == NULL) != (pid == NULL))
        return km__err(KM_E_INVALID, "keyslot: principal and its id go together");
    if ((rc = txn_writable("keyslot", t)) != KM_OK)
        return rc;
    kek = km__salloc(SLOT_KEK_LEN);
    if (kek == NULL)
        return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
    if ((rc = km__random(salt, sizeof salt)) != KM_OK)
        goto out;
    rc = km__scrypt(pass, pass_len, salt, sizeof salt, log2n, SLOT_SCRYPT_R, SLOT_SCRYPT_P, kek,
                    SLOT_KEK_LEN);
    if (rc != KM_OK)
        goto out;
    rc = km__kwp_wrap(kek, SLOT_KEK_LEN, km_secret_data(master), MASTER_LEN, wrapped,
                      sizeof wrapped, &wlen);
    if (rc != KM_OK)
        goto out;
    if (wlen != SLOT_WRAPPED_LEN) {
        rc = km__err(KM_E_INTERNAL, "key wrap gave an unexpected length");
        goto out;
    }
    km__tlv_init(&w, rec, sizeof rec);
    km__tlv_put_u32(&w, SLOT_TAG_TYPE, SLOT_TYPE_PASSPHRASE);
    km__tlv_put_u32(&w, SLOT_TAG_KDF, SLOT_KDF_SCRYPT);
    km__tlv_put_u32(&w, SLOT_TAG_LOG2N, log2n);
    km__tlv_put_u32(&w, SLOT_TAG_R, SLOT_SCRYPT_R);
    km__tlv_put_u32(&w, SLOT_TAG_P, SLOT_SCRYPT_P);
    km__tlv_put(&w, SLOT_TAG_SALT, salt, sizeof salt);
    km__tlv_put(&w, SLOT_TAG_WRAPPED, wrapped, wlen);
    if (principal != NULL) {
        if ((rc = principal_selector(salt, principal, sel)) != KM_OK)
            goto out;
        km__tlv_put(&w, SLOT_TAG_SELECTOR, sel, sizeof sel);
        km__tlv_put(&w, SLOT_TAG_PID, pid, 16);
    }
    if ((rc = km__tlv_end(&w)) != KM_OK)
        goto out;
    rc = slot_put(t, rec, w.len, NULL);
out:
    km__sfree(kek, SLOT_KEK_LEN);
    return rc;
}

int km__slot_add_passphrase(km__txn *t, const km_secret *master, const uint8_t *pass,
                            size_t pass_len, uint32_t log2n)
{
    return km__slot_add_principal(t, master, pass, pass_len, log2n, NULL, NULL);
}

int km__slot_add_backend(km__txn *t, const char *backend, const uint8_t *blob, size_t blob_len)
{
    km__tlv_w w;
    uint8_t *rec;
    size_t cap, nlen = backend ? strlen(backend) : 0;
    int rc;

    if (t == NULL || nlen == 0 || nlen > 31 || blob == NULL || blob_len == 0
        || blob_len > KM__SLOT_BLOB_MAX)
        return km__err(KM_E_INVALID, "keyslot: bad backend slot arguments");
    cap = 64 + nlen + blob_len;
    if ((rec = malloc(cap)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    km__tlv_init(&w, rec, cap);
    km__tlv_put_u32(&w, SLOT_TAG_TYPE, SLOT_TYPE_BACKEND);
    km__tlv_put(&w, SLOT_TAG_BACKEND, backend, nlen);
    km__tlv_put(&w, SLOT_TAG_BLOB, blob, blob_len);
    rc = km__tlv_end(&w);
    if (rc == KM_OK)
        rc = slot_put(t, rec, w.len, NULL);
    free(rec);
    return rc;
}

/* The hash that names one share: SHA-256("km-share-v1" || setid || x || y). */
static int share_hash(const uint8_t setid[16], uint8_t x, const uint8_t *y, uint8_t out[32])
{
    static const char tag[] = "km-share-v1";
    const uint8_t *parts[4] = { (const uint8_t *)tag, setid, &x, y };
    size_t lens[4] = { sizeof tag - 1, 16, 1, KM__SHARE_Y_LEN };
    return km__sha256v(parts, lens, 4, out);
}

/* Share text: "kms1:" + base64url(1 | setid[16] | m | n | x | y[32]). */
#define SHARE_BIN_LEN (1 + 16 + 3 + KM__SHARE_Y_LEN)
#define SHARE_PREFIX "kms1:"

int km__slot_add_shamir(km__txn *t, const km_secret *master, unsigned m, unsigned n,
                        km_secret **shares)
{
    uint8_t setid[16], hashes[KM_SHARES_MAX * 32], wrapped[SLOT_WRAPPED_LEN], bin[SHARE_BIN_LEN];
    uint8_t *secret = NULL, *ys = NULL, *rec = NULL;
    size_t wlen = 0, cap, tlen, ylen = (size_t)n * KM__SHARE_Y_LEN;
    km__tlv_w w;
    unsigned i;
    int rc;

    for (i = 0; i < n && shares != NULL; i++)
        shares[i] = NULL;
    if (t == NULL || master == NULL || shares == NULL || m < 2 || m > n || n > KM_SHARES_MAX)
        return km__err(KM_E_INVALID, "keyslot: need 2 <= m <= n <= %d", KM_SHARES_MAX);
    secret = km__salloc(KM__SHARE_Y_LEN);
    ys = km__salloc(ylen);
    cap = 128 + (size_t)n * 32;
    rec = malloc(cap);
    if (secret == NULL || ys == NULL || rec == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    /* a random secret split in n; the slot holds the master key wrapped under it */
    if ((rc = km__random(secret, KM__SHARE_Y_LEN)) != KM_OK
        || (rc = km__random(setid, sizeof setid)) != KM_OK
        || (rc = km__shamir_split(secret, KM__SHARE_Y_LEN, m, n, ys)) != KM_OK)
        goto out;
    rc = km__kwp_wrap(secret, KM__SHARE_Y_LEN, km_secret_data(master), MASTER_LEN, wrapped,
                      sizeof wrapped, &wlen);
    if (rc != KM_OK)
        goto out;
    for (i = 0; i < n; i++)
        if ((rc = share_hash(setid, (uint8_t)(i + 1), ys + (size_t)i * KM__SHARE_Y_LEN,
                             hashes + (size_t)i * 32)) != KM_OK)
            goto out;
    km__tlv_init(&w, rec, cap);
    km__tlv_put_u32(&w, SLOT_TAG_TYPE, SLOT_TYPE_SHAMIR);
    km__tlv_put_u32(&w, SLOT_TAG_M, m);
    km__tlv_put_u32(&w, SLOT_TAG_N, n);
    km__tlv_put(&w, SLOT_TAG_SETID, setid, sizeof setid);
    km__tlv_put(&w, SLOT_TAG_HASHES, hashes, (size_t)n * 32);
    km__tlv_put(&w, SLOT_TAG_WRAPPED, wrapped, wlen);
    if ((rc = km__tlv_end(&w)) != KM_OK || (rc = slot_put(t, rec, w.len, NULL)) != KM_OK)
        goto out;
    tlen = sizeof SHARE_PREFIX - 1 + km__b64url_encoded_len(SHARE_BIN_LEN);
    for (i = 0; i < n; i++) {
        bin[0] = 1;
        memcpy(bin + 1, setid, 16);
        bin[17] = (uint8_t)m;
        bin[18] = (uint8_t)n;
        bin[19] = (uint8_t)(i + 1);
        memcpy(bin + 20, ys + (size_t)i * KM__SHARE_Y_LEN, KM__SHARE_Y_LEN);
        if ((rc = km_secret_new(&shares[i], tlen)) != KM_OK)
            goto out;
        memcpy(km_secret_data(shares[i]), SHARE_PREFIX, sizeof SHARE_PREFIX - 1);
        km__b64url_encode(bin, sizeof bin, (char *)km_secret_data(shares[i])
                                               + sizeof SHARE_PREFIX - 1);
    }
out:
    km_memzero(bin, sizeof bin);
    km__sfree(secret, KM__SHARE_Y_LEN);
    km__sfree(ys, ylen);
    free(rec);
    if (rc != KM_OK)
        for (i = 0; i < n && shares != NULL; i++) {
            km_secret_free(shares[i]);
            shares[i] = NULL;
        }
    return rc;
}

/* Opens a Shamir slot with the shares given; KM_E_AUTH (naming the share)
 * when a share is not of this split or altered, or too few are given. */
static int shamir_open(const any_slot *sl, const char *const *shares, size_t count,
                       km_secret **master)
{
    uint8_t xs[KM_SHARES_MAX], bin[SHARE_BIN_LEN + 2], h[32];
    uint8_t *ys = NULL, *secret = NULL, *mk = NULL;
    size_t i, j, k = 0, blen, mlen = 0, plen = sizeof SHARE_PREFIX - 1;
    int rc = KM_OK, mine = 0;

    ys = km__salloc((size_t)KM_SHARES_MAX * KM__SHARE_Y_LEN);
    secret = km__salloc(KM__SHARE_Y_LEN);
    mk = km__salloc(SLOT_WRAPPED_LEN);
    if (ys == NULL || secret == NULL || mk == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    for (i = 0; i < count; i++) {
        const char *s = shares[i];
        if (s == NULL || strncmp(s, SHARE_PREFIX, plen) != 0
            || km__b64url_decode(s + plen, strlen(s + plen), bin, sizeof bin, &blen) != KM_OK
            || blen != SHARE_BIN_LEN || bin[0] != 1) {
            rc = km__err(KM_E_INVALID, "share %zu is not a libkm share (kms1:...)", i + 1);
            goto out;
        }
        if (!km_ct_equal(bin + 1, sl->setid, 16))
            continue;                   /* a share of another split */
        mine++;
        if (bin[17] != sl->m || bin[18] != sl->n || bin[19] == 0 || bin[19] > sl->n) {
            rc = km__err(KM_E_AUTH, "share %zu does not match keyslot %u", i + 1, sl->id);
            goto out;
        }
        if ((rc = share_hash(sl->setid, bin[19], bin + 20, h)) != KM_OK)
            goto out;
        if (!km_ct_equal(h, sl->hashes + (size_t)(bin[19] - 1) * 32, 32)) {
            rc = km__err(KM_E_AUTH, "share %zu (number %u of keyslot %u) is altered or wrong",
                         i + 1, (unsigned)bin[19], sl->id);
            goto out;
        }
        for (j = 0; j < k; j++)
            if (xs[j] == bin[19])
                break;
        if (j < k)
            continue;                   /* the same share twice counts once */
        xs[k] = bin[19];
        memcpy(ys + k * KM__SHARE_Y_LEN, bin + 20, KM__SHARE_Y_LEN);
        k++;
    }
    if (mine == 0) {
        rc = KM_E_NOTFOUND;             /* not this slot's shares: try another */
        goto out;
    }
    if (k < sl->m) {
        rc = km__err(KM_E_AUTH, "keyslot %u needs %u distinct shares, %zu given", sl->id, sl->m,
                     k);
        goto out;
    }
    if ((rc = km__shamir_combine(xs, ys, (unsigned)sl->m, KM__SHARE_Y_LEN, secret)) != KM_OK)
        goto out;
    rc = km__kwp_unwrap(secret, KM__SHARE_Y_LEN, sl->wrapped, SLOT_WRAPPED_LEN, mk,
                        SLOT_WRAPPED_LEN, &mlen);
    if (rc == KM_E_INTEGRITY) {
        rc = km__err(KM_E_AUTH, "the shares do not open keyslot %u", sl->id);
        goto out;
    }
    if (rc == KM_OK && mlen != MASTER_LEN)
        rc = km__err(KM_E_CORRUPT, "keyslot %u holds a key of the wrong length", sl->id);
    if (rc == KM_OK)
        rc = km_secret_from(master, mk, MASTER_LEN);
out:
    km_memzero(bin, sizeof bin);
    km__sfree(ys, (size_t)KM_SHARES_MAX * KM__SHARE_Y_LEN);
    km__sfree(secret, KM__SHARE_Y_LEN);
    km__sfree(mk, SLOT_WRAPPED_LEN);
    return rc;
}

/* Tries one passphrase slot: KM_E_INTEGRITY when it is another passphrase's. */
static int pass_open(const any_slot *sl, const uint8_t *pass, size_t pass_len,
                     km_secret **master)
{
    uint8_t *kek = km__salloc(SLOT_KEK_LEN), *mk = km__salloc(SLOT_WRAPPED_LEN);
    size_t mlen = 0;
    int rc;

    if (kek == NULL || mk == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    rc = km__scrypt(pass, pass_len, sl->salt, SLOT_SALT_LEN, sl->log2n, SLOT_SCRYPT_R,
                    SLOT_SCRYPT_P, kek, SLOT_KEK_LEN);
    if (rc != KM_OK)
        goto out;
    rc = km__kwp_unwrap(kek, SLOT_KEK_LEN, sl->wrapped, SLOT_WRAPPED_LEN, mk, SLOT_WRAPPED_LEN,
                        &mlen);
    if (rc != KM_OK)
        goto out;
    if (mlen != MASTER_LEN)
        rc = km__err(KM_E_CORRUPT, "keyslot %u holds a key of the wrong length", sl->id);
    else
        rc = km_secret_from(master, mk, MASTER_LEN);
out:
    km__sfree(kek, SLOT_KEK_LEN);
    km__sfree(mk, SLOT_WRAPPED_LEN);
    return rc;
}

/* How km_open's options ask to unlock. */
static int unlock_mode(const km_open_options *o)
{
    if (o->passphrase != NULL)
        return SLOT_TYPE_PASSPHRASE;
    if (o->version >= 3 && o->slot_backend != NULL)
        return SLOT_TYPE_BACKEND;
    if (o->version >= 3 && o->share_count > 0)
        return SLOT_TYPE_SHAMIR;
    return 0;
}

/* Unwraps the master key with the first slot that opens with what the options
 * carry. Every slot is validated before any KDF or device call runs.
 * pid: the principal whose slot opened (all zero for an owner slot). */
static int slots_open(km__txn *t, const km_open_options *o, km_secret **master,
                      uint8_t pid[16])
{
    const char *principal = o->version >= 3 ? o->principal : NULL;
    MDB_cursor *c = NULL;
    MDB_cursor_op op;
    MDB_val k, v;
    any_slot sl;
    uint8_t sel[32];
    unsigned nslots = 0, tried = 0;
    int rc = KM_OK, mrc, round, mode = unlock_mode(o), soft_rc = KM_OK;
    char bname[32];

    *master = NULL;
    memset(pid, 0, 16);
    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[KM__T_SLOTS], &c)) != 0)
        return lmdb_err(mrc, "cannot read the keyslots");
    /* round 0 validates every slot, round 1 tries the ones that match */
    for (round = 0; round < 2 && *master == NULL; round++) {
        for (op = MDB_FIRST;; op = MDB_NEXT) {
            mrc = mdb_cursor_get(c, &k, &v, op);
            if (mrc == MDB_NOTFOUND)
                break;
            if (mrc != 0) {
                rc = lmdb_err(mrc, "cannot read the keyslots");
                goto out;
            }
            if (k.mv_size != 4) {
                rc = km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
                goto out;
            }
            if ((rc = slot_parse(v.mv_data, v.mv_size, km__be32_get(k.mv_data), &sl)) != KM_OK)
                goto out;
            if (round == 0) {
                nslots++;
                continue;
            }
            if (sl.type != (uint32_t)mode)
                continue;
            if (mode == SLOT_TYPE_PASSPHRASE) {
                if ((principal == NULL) != (sl.selector == NULL))
                    continue;
                if (principal != NULL) {
                    if ((rc = principal_selector(sl.salt, principal, sel)) != KM_OK)
                        goto out;
                    if (!km_ct_equal(sel, sl.selector, 32))
                        continue;
                }
                tried++;
                rc = pass_open(&sl, o->passphrase, o->passphrase_len, master);
                if (rc == KM_E_INTEGRITY)
                    continue;   /* another passphrase's slot */
                if (rc != KM_OK)
                    goto out;
                if (sl.pid != NULL)
                    memcpy(pid, sl.pid, 16);
                goto out;
            } else if (mode == SLOT_TYPE_BACKEND) {
                if (sl.backend_len != strlen(o->slot_backend)
                    || memcmp(sl.backend, o->slot_backend, sl.backend_len) != 0)
                    continue;
                tried++;
                memcpy(bname, sl.backend, sl.backend_len);
                bname[sl.backend_len] = '\0';
                rc = km__backend_slot_unseal(bname, o->slot_config, sl.blob, sl.blob_len,
                                             master);
                if (rc == KM_OK && km_secret_len(*master) != MASTER_LEN) {
                    km_secret_free(*master);
                    *master = NULL;
                    rc = km__err(KM_E_CORRUPT, "keyslot %u gave a key of the wrong length",
                                 sl.id);
                }
                if (rc == KM_OK)
                    goto out;
                soft_rc = rc;   /* remember the device's reason; try the next slot */
            } else {
                rc = shamir_open(&sl, o->shares, o->share_count, master);
                if (rc == KM_E_NOTFOUND)
                    continue;
                tried++;
                goto out;
            }
        }
        if (round == 0 && nslots == 0) {
            rc = km__err(KM_E_CORRUPT, "the vault has no keyslot");
            goto out;
        }
    }
    if (mode == SLOT_TYPE_BACKEND && soft_rc != KM_OK && soft_rc != KM_E_AUTH)
        rc = soft_rc;           /* km_error_last still names the device's failure */
    else if (mode == SLOT_TYPE_PASSPHRASE && principal != NULL && tried == 0)
        rc = km__err(KM_E_AUTH, "no keyslot for this principal opens with this passphrase");
    else if (mode == SLOT_TYPE_PASSPHRASE)
        rc = km__err(KM_E_AUTH, "no keyslot opens with this passphrase");
    else if (mode == SLOT_TYPE_BACKEND)
        rc = km__err(KM_E_AUTH, tried ? "no %s keyslot opens on this device"
                                      : "the vault has no %s keyslot", o->slot_backend);
    else
        rc = km__err(KM_E_AUTH, "no keyslot opens with these shares");
out:
    mdb_cursor_close(c);
    km_memzero(&sl, sizeof sl);
    return rc;
}

/* Deletes the slots `want` selects: 1 = owner passphrase slots, 2 = the
 * passphrase slots of principal pid. Refuses to leave the vault without a
 * keyslot. *removed counts them. */
static int slots_remove(km__txn *t, int want, const uint8_t pid[16], unsigned *removed)
{
    MDB_cursor *c = NULL;
    MDB_val k, v;
    any_slot sl;
    unsigned total = 0, hit = 0;
    int rc = KM_OK, mrc, pass;

    *removed = 0;
    if ((rc = txn_writable("keyslot", t)) != KM_OK)
        return rc;
    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[KM__T_SLOTS], &c)) != 0)
        return lmdb_err(mrc, "cannot read the keyslots");
    for (pass = 0; pass < 2; pass++) {
        for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
             mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            int match;
            if (k.mv_size != 4) {
                rc = km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
                goto out;
            }
            if ((rc = slot_parse(v.mv_data, v.mv_size, km__be32_get(k.mv_data), &sl)) != KM_OK)
                goto out;
            match = sl.type == SLOT_TYPE_PASSPHRASE
                    && (want == 1 ? sl.pid == NULL
                                  : sl.pid != NULL && km_ct_equal(sl.pid, pid, 16));
            if (pass == 0) {
                total++;
                hit += match != 0;
                continue;
            }
            if (match)
                fault_step();
            if (match && (mrc = mdb_cursor_del(c, 0)) != 0) {
                rc = txn_fail(t, mrc, "cannot remove a keyslot");
                goto out;
            }
        }
        if (mrc != MDB_NOTFOUND && mrc != 0) {
            rc = lmdb_err(mrc, "cannot read the keyslots");
            goto out;
        }
        if (pass == 0 && hit == 0) {
            rc = km__err(KM_E_NOTFOUND, want == 1 ? "the vault has no owner passphrase slot"
                                                  : "the principal has no keyslot");
            goto out;
        }
        if (pass == 0 && hit == total) {
            rc = km__err(KM_E_STATE, "removing these keyslots would leave the vault with none");
            goto out;
        }
    }
    *removed = hit;
out:
    mdb_cursor_close(c);
    return rc;
}

int km__slot_backend_names(km__txn *t, char names[][32], size_t cap, size_t *n, size_t *total)
{
    MDB_cursor *c = NULL;
    MDB_val k, v;
    any_slot sl;
    int rc = KM_OK, mrc;

    *n = *total = 0;
    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[KM__T_SLOTS], &c)) != 0)
        return lmdb_err(mrc, "cannot read the keyslots");
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t i;
        if (k.mv_size != 4) {
            rc = km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
            goto out;
        }
        if ((rc = slot_parse(v.mv_data, v.mv_size, km__be32_get(k.mv_data), &sl)) != KM_OK)
            goto out;
        if (sl.type != SLOT_TYPE_BACKEND || sl.backend_len == 0 || sl.backend_len > 31)
            continue;
        (*total)++;
        for (i = 0; i < *n; i++)
            if (strlen(names[i]) == sl.backend_len
                && memcmp(names[i], sl.backend, sl.backend_len) == 0)
                break;
        if (i < *n || *n == cap)
            continue;   /* one re-seal per backend */
        memcpy(names[*n], sl.backend, sl.backend_len);
        names[*n][sl.backend_len] = '\0';
        (*n)++;
    }
    if (mrc != MDB_NOTFOUND && mrc != 0)
        rc = lmdb_err(mrc, "cannot read the keyslots");
out:
    mdb_cursor_close(c);
    return rc;
}

int km__slot_remove_principal(km__txn *t, const uint8_t pid[16])
{
    unsigned n;
    return slots_remove(t, 2, pid, &n);
}

int km__slot_remove_owner(km__txn *t)
{
    unsigned n;
    return slots_remove(t, 1, NULL, &n);
}

/* --------------------------------------------------------------- vault meta */

/* Reads the unsealed meta. *present = 0 when the environment holds no vault. */
static int meta_read(km__txn *t, int *present, uint8_t vault_id[16])
{
    MDB_val k = mval(META_FORMAT, sizeof META_FORMAT - 1), v;
    const uint8_t *p;
    int mrc;

    *present = 0;
    mrc = mdb_get(t->txn, t->env->dbi[KM__T_META], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return KM_OK;
    if (mrc != 0)
        return lmdb_err(mrc, "cannot read the vault metadata");
    *present = 1;
    p = v.mv_data;
    if (v.mv_size != 1 || p[0] == 0)
        return km__err(KM_E_CORRUPT, "vault metadata: bad format entry");
    if (p[0] > VAULT_FORMAT)
        return km__err(KM_E_UNSUPPORTED, "vault format %u is newer than this libkm reads (%d)",
                       (unsigned)p[0], VAULT_FORMAT);
    k = mval(META_VAULT_ID, sizeof META_VAULT_ID - 1);
    mrc = mdb_get(t->txn, t->env->dbi[KM__T_META], &k, &v);
    if (mrc == MDB_NOTFOUND || (mrc == 0 && v.mv_size != 16))
        return km__err(KM_E_CORRUPT, "vault metadata: missing or bad vault id");
    if (mrc != 0)
        return lmdb_err(mrc, "cannot read the vault metadata");
    memcpy(vault_id, v.mv_data, 16);
    return KM_OK;
}

static void check_value(uint8_t out[17], const uint8_t vault_id[16])
{
    out[0] = VAULT_FORMAT;
    memcpy(out + 1, vault_id, 16);
}

/* Compares the unsealed meta with its sealed copy. */
static int meta_verify(km__txn *t, const km_secret *master, const uint8_t vault_id[16])
{
    km__sealer *s = NULL;
    km_secret *rec = NULL;
    uint8_t want[17];
    int rc;

    if ((rc = km__sealer_new(&s, master)) != KM_OK)
        return rc;
    rc = km__rec_get(t, s, KM__T_META, (const uint8_t *)META_CHECK, sizeof META_CHECK - 1, &rec);
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_CORRUPT, "vault metadata: the sealed check record is missing");
    if (rc != KM_OK)
        goto out;
    check_value(want, vault_id);
    if (km_secret_len(rec) != sizeof want || !km_ct_equal(km_secret_data(rec), want, sizeof want))
        rc = km__err(KM_E_CORRUPT, "vault metadata does not match its sealed copy "
                                   "(downgraded or swapped)");
out:
    km_secret_free(rec);
    km__sealer_free(s);
    return rc;
}

/* Creates the vault in one write transaction. *raced = 1 when another
 * thread or process created it first (nothing written). */
static int vault_create(km__env *e, const km_open_options *o, uint32_t cost, km_secret **master_out,
                        uint8_t vault_id[16], int *raced)
{
    static const uint8_t format = VAULT_FORMAT;
    km__txn *t = NULL;
    km__sealer *s = NULL;
    km_secret *master = NULL;
    uint8_t id[16], chk[17];
    int rc, present;

    *raced = 0;
    if ((rc = km__txn_begin(e, 1, &t)) != KM_OK)
        return rc;
    if ((rc = meta_read(t, &present, id)) != KM_OK)
        goto out;
    if (present) {
        *raced = 1;
        goto out;
    }
    if ((rc = km_secret_new(&master, MASTER_LEN)) != KM_OK
        || (rc = km__random(km_secret_data(master), MASTER_LEN)) != KM_OK
        || (rc = km__random(id, sizeof id)) != KM_OK)
        goto out;
    if ((rc = raw_put(t, KM__T_META, META_FORMAT, sizeof META_FORMAT - 1, &format, 1)) != KM_OK
        || (rc = raw_put(t, KM__T_META, META_VAULT_ID, sizeof META_VAULT_ID - 1, id, 16)) != KM_OK)
        goto out;
    rc = km__slot_add_passphrase(t, master, o->passphrase, o->passphrase_len, cost);
    if (rc != KM_OK)
        goto out;
    if ((rc = km__sealer_new(&s, master)) != KM_OK)
        goto out;
    check_value(chk, id);
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

/* Unlocks an existing vault. */
static int vault_unlock(km__env *e, const km_open_options *o, km_secret **master_out,
                        uint8_t vault_id[16], uint8_t pid[16], int *present)
{
    km__txn *t = NULL;
    km_secret *master = NULL;
    uint8_t id[16];
    int rc;

    if ((rc = km__txn_begin(e, 0, &t)) != KM_OK)
        return rc;
    if ((rc = meta_read(t, present, id)) != KM_OK || !*present)
        goto out;
    if ((o->flags & KM_OPEN_CREATE) && (o->flags & KM_OPEN_EXCL)) {
        rc = km__err(KM_E_EXISTS, "a vault already exists in this directory");
        goto out;
    }
    if ((rc = slots_open(t, o, &master, pid)) != KM_OK)
        goto out;
    if ((rc = meta_verify(t, master, id)) != KM_OK)
        goto out;
    memcpy(vault_id, id, 16);
    *master_out = master;
    master = NULL;
out:
    km__txn_abort(t);
    km_secret_free(master);
    return rc;
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

int km__env_open(km__env **out, const char *dir, const km_open_options *o,
                 km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16])
{
    km__env *e = NULL;
    km_secret *master = NULL;
    struct stat st;
    uint32_t cost;
    int rc, present = 0, raced = 0, attempt;

    if (out != NULL)
        *out = NULL;
    if (master_out != NULL)
        *master_out = NULL;
    if (out == NULL || master_out == NULL || vault_id == NULL || pid == NULL)
        return km__err(KM_E_INVALID, "km__env_open: an output is NULL");
    memset(pid, 0, 16);
    if (dir == NULL || dir[0] == '\0')
        return km__err(KM_E_INVALID, "km__env_open: dir is NULL or empty");
    if (o == NULL || o->version < 1 || o->version > KM_OPEN_OPTIONS_VERSION)
        return km__err(KM_E_INVALID, "km__env_open: options missing or of an unknown version");
    if (unlock_mode(o) == 0)
        return km__err(KM_E_INVALID, "km__env_open: no passphrase, keyslot backend or shares");
    if (o->passphrase != NULL && (o->passphrase_len == 0 || o->passphrase_len > 1024))
        return km__err(KM_E_INVALID, "km__env_open: passphrase must be 1 to 1024 bytes");
    cost = o->kdf_cost ? o->kdf_cost : KM_KDF_COST_DEFAULT;
    if (cost < KM_KDF_COST_MIN || cost > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "km__env_open: kdf_cost must be %d to %d", KM_KDF_COST_MIN,
                       KM_KDF_COST_MAX);
    if (o->map_size > SIZE_MAX)
        return km__err(KM_E_INVALID, "km__env_open: map_size too large for this platform");
    if ((rc = km_init()) != KM_OK)
        return rc;
    (void)pthread_once(&reg_once, reg_init);

    if ((rc = vault_dir(dir, o->flags, &st)) != KM_OK)
        return rc;
    if ((rc = env_acquire(dir, &st, o->map_size, &e)) != KM_OK)
        return rc;
    /* A second attempt only after losing a creation race: the vault is then there. */
    for (attempt = 0; attempt < 2; attempt++) {
        rc = vault_unlock(e, o, &master, vault_id, pid, &present);
        if (rc == KM_E_AUTH) {
            char keep[256];
            snprintf(keep, sizeof keep, "%s", km_error_last()->message);
            authfail_bump(e);
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
        rc = vault_create(e, o, cost, &master, vault_id, &raced);
        if (rc != KM_OK || !raced)
            break;
    }
    if (rc == KM_OK && master == NULL)
        rc = km__err(KM_E_INTERNAL, "vault creation raced twice");
    if (rc != KM_OK) {
        km_secret_free(master);
        km__env_close(e);
        return rc;
    }
    *out = e;
    *master_out = master;
    return KM_OK;
}

/* ------------------------------------------------------------------ rekey */

void km__sealer_retire(km__sealer *new_s, km__sealer *old_s, km_secret *old_master)
{
    /* new_s is fresh from km__sealer_new: its slots are empty */
    new_s->prev = old_s;
    new_s->prev_master = old_master;
}

/* Unseals every record of `tbl` with `old_s` and reseals it in place with
 * `new_s`. The unsealed meta entries are skipped. */
static int reseal_table(km__txn *t, const km__sealer *old_s, const km__sealer *new_s,
                        km__table tbl)
{
    MDB_cursor *c = NULL;
    MDB_cursor_op op;
    MDB_val k, v, nv;
    uint8_t kbuf[KEY_MAX], aad[AAD_MAX], *plain = NULL, *sealed = NULL;
    size_t cap = 0, scap = 0, n, klen, aad_len;
    int rc = KM_OK, mrc;

    if ((mrc = mdb_cursor_open(t->txn, t->env->dbi[tbl], &c)) != 0)
        return txn_fail(t, mrc, "cannot read the vault");
    for (op = MDB_FIRST;; op = MDB_NEXT) {
        mrc = mdb_cursor_get(c, &k, &v, op);
        if (mrc == MDB_NOTFOUND)
            break;
        if (mrc != 0) {
            rc = txn_fail(t, mrc, "cannot read the vault");
            goto out;
        }
        if (tbl == KM__T_META
            && ((k.mv_size == sizeof META_FORMAT - 1
                 && memcmp(k.mv_data, META_FORMAT, k.mv_size) == 0)
                || (k.mv_size == sizeof META_VAULT_ID - 1
                    && memcmp(k.mv_data, META_VAULT_ID, k.mv_size) == 0)
                || (k.mv_size == sizeof META_AUTH_FAILS - 1
                    && memcmp(k.mv_data, META_AUTH_FAILS, k.mv_size) == 0)))
            continue;
        if ((rc = rec_shape(tbl, &v)) != KM_OK)
            goto out;
        n = v.mv_size - REC_OVERHEAD;
        if (n > cap) {
            km__sfree(plain, cap);
            cap = (n + 4095) & ~(size_t)4095;
            if ((plain = km__salloc(cap)) == NULL) {
                cap = 0;
                rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
                goto out;
            }
        }
        if (v.mv_size > scap) {
            free(sealed);
            scap = v.mv_size;
            if ((sealed = malloc(scap)) == NULL) {
                scap = 0;
                rc = km__err(KM_E_NOMEM, "vault: out of memory");
                goto out;
            }
        }
        if ((rc = rec_unseal(old_s, tbl, &k, &v, plain)) != KM_OK)
            goto out;
        klen = k.mv_size;
        memcpy(kbuf, k.mv_data, klen);
        sealed[0] = REC_FORMAT;
        if ((rc = km__nonce12(sealed + 1)) != KM_OK)
            goto out;
        aad_len = aad_build(aad, tbl, kbuf, klen);
        rc = km__gcmk_seal(new_s->seal, sealed + 1, aad, aad_len, plain, n, sealed + 1 + REC_NONCE,
                          sealed + 1 + REC_NONCE + n);
        km_memzero(plain, n);
        if (rc != KM_OK)
            goto out;
        k = mval(kbuf, klen);
        nv = mval(sealed, n + REC_OVERHEAD);
        fault_step();
        if ((mrc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT)) != 0) {
            rc = txn_fail(t, mrc, "cannot write the vault");
            goto out;
        }
    }
out:
    mdb_cursor_close(c);
    km__sfree(plain, cap);
    free(sealed);
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

int km__vault_rekey(km__env *env, km__sealer *old_s, const km__sealer *new_s,
                    const km_secret *new_master, const uint8_t *pass, size_t pass_len,
                    uint32_t log2n, km__txn_hook hook, void *hook_arg)
{
    static const km__table sealed_tables[] = {
        KM__T_META, KM__T_KEYS, KM__T_VMETA, KM__T_MATERIAL, KM__T_COUNTERS, KM__T_AUDIT
    };
    km__txn *t = NULL;
    names_arg na;
    size_t i;
    int rc, mrc;

    if (env == NULL || old_s == NULL || new_s == NULL || new_master == NULL || old_s == new_s)
        return km__err(KM_E_INVALID, "km__vault_rekey: bad arguments");
    if ((rc = km__txn_begin(env, 1, &t)) != KM_OK)
        return rc;
    /* Holding the write lock from here: no other writer of any process
     * interleaves. A record that does not open with old_s aborts it all. */
    for (i = 0; i < sizeof sealed_tables / sizeof sealed_tables[0]; i++)
        if ((rc = reseal_table(t, old_s, new_s, sealed_tables[i])) != KM_OK)
            goto out;
    /* The names index is keyed by an HMAC under the old name key: rebuild it. */
    if ((mrc = mdb_drop(t->txn, env->dbi[KM__T_NAMES], 0)) != 0) {
        rc = txn_fail(t, mrc, "cannot clear the names index");
        goto out;
    }
    na.t = t;
    na.s = new_s;
    if ((rc = km__rec_iter(t, new_s, KM__T_KEYS, NULL, 0, names_add, &na)) != KM_OK)
        goto out;
    /* Every keyslot wraps the old master: replace them all by one. */
    if ((mrc = mdb_drop(t->txn, env->dbi[KM__T_SLOTS], 0)) != 0) {
        rc = txn_fail(t, mrc, "cannot clear the keyslots");
        goto out;
    }
    if ((rc = km__slot_add_passphrase(t, new_master, pass, pass_len, log2n)) != KM_OK)
        goto out;
    /* the caller's part of the same transaction (its audit entry) */
    if (hook != NULL && (rc = hook(hook_arg, t, new_s)) != KM_OK)
        goto out;
    /* A writer of this process still holding old_s would begin its
     * transaction after our commit: make km__rec_put refuse old_s. The LMDB
     * writer mutex orders this store before that writer's load. */
    atomic_store(&old_s->retired, 1);
    rc = km__txn_commit(t);
    t = NULL;
    if (rc != KM_OK)
        atomic_store(&old_s->retired, 0);
out:
    km__txn_abort(t);
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
    fault_step();   /* fault injection: the empty compaction directory exists */
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
    fault_step();   /* fault injection: the copy is written, not yet synced */
    mdb_env_close(src);
    src = NULL;
    /* The copy is complete and durable before it replaces the original. */
    if (fsync_path(tmpdata, 0) != 0 || fsync_path(tmp, 1) != 0) {
        rc = errno_err(KM_E_IO, "cannot sync the compacted copy of the vault");
        goto fail;
    }
    fault_step();   /* the compacted copy is complete, not yet renamed */
    if (rename(tmpdata, data) != 0) {
        rc = errno_err(KM_E_IO, "cannot replace the vault file with its compacted copy");
        goto fail;
    }
    fault_step();   /* fault injection: renamed, the directory not yet synced */
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

int km__env_compact(km__env *e)
{
    char dir[PATH_MAX], lockpath[PATH_MAX + 16];
    const char *p = NULL;
    struct timespec deadline;
    struct flock fl;
    MDB_envinfo info;
    size_t map_size;
    int rc = KM_OK, rc2, mrc, w = 0, lfd = -1, locked = 0;

    if (e == NULL)
        return km__err(KM_E_INVALID, "km__env_compact: env is NULL");
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

    map_size = mdb_env_info(e->mdb, &info) == 0 ? info.me_mapsize : 0;
    /* Closing our environment drops LMDB's shared lock on lock.mdb (byte 0,
     * F_RDLCK, held by every process with the environment open). */
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
 * writers of every process go on meanwhile. Holds off km__env_compact (it
 * counts as an open transaction of this process) and adopts a map grown by
 * another process. For backends/lmdb/backup.c. */
int km__env_copyfd(km__env *e, int fd)
{
    int mrc, rc, tries;

    if (e == NULL || fd < 0)
        return km__err(KM_E_INVALID, "km__env_copyfd: bad argument");
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
