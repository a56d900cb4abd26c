/*
 * lmdb_backup.c - hot backup and restore of an LMDB vault: the LMDB store's
 * backup and restore members (km_vault_backup, km_vault_restore; the public
 * part is src/api/vault.c).
 *
 * A backup is one file: a compacted copy of the vault's data.mdb written by
 * LMDB from one read snapshot (mdb_env_copyfd2 with MDB_CP_COMPACT) while
 * writers of every process go on. Every record in it stays sealed under the
 * vault's master key and its keyslots are copied with it, so it opens with
 * the same passphrases (or other keyslots) as the vault had when it was
 * taken, and with nothing else. Compaction leaves out free pages: no old
 * sealed copy of an overwritten or deleted record is carried into it.
 *
 * Durability: the copy goes to a temporary file next to the target
 * (`<path>.tmp.XXXXXX`, mode 0600), is fsync'ed, then linked to its final
 * name without ever replacing an existing file (renameat2 RENAME_NOREPLACE,
 * or link() where the file system lacks it), and the directory is fsync'ed.
 * After a crash the target is either absent or complete; a leftover
 * temporary file may be deleted.
 *
 * A restore checks that the file is a libkm vault (an LMDB file whose "meta"
 * table holds a known format and a vault id, with at least one keyslot),
 * copies it the same way into `<dir>/data.mdb` and never overwrites a vault.
 */
#include "km_int.h"
#include "lmdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

/* As in src/store/store.c and docs/FORMATS.md: the unsealed meta entries. */
#define BK_VAULT_FORMAT 5   /* the newest vault format (src/store/store.c) */
#define BK_MAXDBS 16
static const char BK_META[] = "meta";
static const char BK_SLOTS[] = "slots";
static const char BK_FORMAT[] = "format";
static const char BK_VAULT_ID[] = "vault-id";

static int bk_errno(int code, const char *what)
{
    int e = errno;
    return km__err_native(code, KM_NATIVE_ERRNO, (unsigned long)e, "%s: %s", what, strerror(e));
}

static int bk_lmdb(int code, int mrc, const char *what)
{
    return km__err_native(code, KM_NATIVE_LMDB, (unsigned long)(long)mrc, "%s: %s", what,
                          mdb_strerror(mrc));
}

/* The directory part of `path` ("." when it has none) into out. */
static int parent_dir(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (slash == NULL) {
        if (cap < 2)
            return km__err(KM_E_INVALID, "path too long");
        strcpy(out, ".");
        return KM_OK;
    }
    n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap)
        return km__err(KM_E_INVALID, "path too long");
    memcpy(out, path, n);
    out[n] = '\0';
    return KM_OK;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -1;
    if (fsync(fd) != 0)
        rc = -1;
    (void)close(fd);
    return rc;
}

/* Gives the complete file `tmp` the name `final` unless that exists
 * (KM_E_EXISTS then); `tmp` is gone afterwards in every case. */
static int publish(const char *tmp, const char *final)
{
    int rc = KM_OK;

    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
        return KM_OK;
    if (errno == EEXIST) {
        rc = km__err(KM_E_EXISTS, "the target file exists (never overwritten)");
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        /* no RENAME_NOREPLACE on this file system: link() fails on EEXIST too */
        if (link(tmp, final) != 0)
            rc = errno == EEXIST ? km__err(KM_E_EXISTS, "the target file exists (never overwritten)")
                                 : bk_errno(KM_E_IO, "cannot name the copied vault file");
    } else {
        rc = bk_errno(KM_E_IO, "cannot name the copied vault file");
    }
    (void)unlink(tmp);
    return rc;
}

/* Writes a copy of `src` into a temporary file in `dir`, fsyncs it and names
 * it `final`. copy() fills the descriptor. */
typedef int (*copy_fn)(void *arg, int fd);

static int copy_to(const char *dir, const char *final, const char *tmp_prefix, copy_fn copy,
                   void *arg)
{
    char tmp[PATH_MAX];
    int fd, rc, n;

    n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", tmp_prefix);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return km__err(KM_E_INVALID, "path too long");
    fd = mkostemp(tmp, O_CLOEXEC);   /* mode 0600 */
    if (fd < 0)
        return bk_errno(KM_E_IO, "cannot create a temporary file for the copy");
    rc = copy(arg, fd);
    if (rc == KM_OK && fsync(fd) != 0)
        rc = bk_errno(KM_E_IO, "cannot sync the copied vault file");
    if (close(fd) != 0 && rc == KM_OK)
        rc = bk_errno(KM_E_IO, "cannot close the copied vault file");
    if (rc != KM_OK) {
        (void)unlink(tmp);
        return rc;
    }
    if ((rc = publish(tmp, final)) != KM_OK)
        return rc;
    if (fsync_dir(dir) != 0)
        return bk_errno(KM_E_IO, "cannot sync the directory of the copied vault file");
    return KM_OK;
}

/* ---------------------------------------------------------------- backup */

static int copy_live(void *arg, int fd)
{
    return km__lmdb_copyfd(arg, fd);
}

int km__lmdb_backup(km__store *env, const char *path)
{
    char dir[PATH_MAX];
    struct stat st;
    int rc;

    if (env == NULL || path == NULL || path[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_backup: path is NULL or empty");
    if (strlen(path) >= PATH_MAX - 16)
        return km__err(KM_E_INVALID, "km_vault_backup: path too long");
    if (lstat(path, &st) == 0)
        return km__err(KM_E_EXISTS, "km_vault_backup: the backup file exists (never overwritten)");
    if (errno != ENOENT)
        return bk_errno(KM_E_IO, "km_vault_backup: cannot look up the backup path");
    if ((rc = parent_dir(path, dir, sizeof dir)) != KM_OK)
        return rc;
    return copy_to(dir, path, path, copy_live, env);
}

/* ---------------------------------------------------------------- restore */

/* Opens `file` read-only, without a lock file, and checks that it is a
 * libkm vault. *out is closed by the caller. */
static int backup_open(const char *file, MDB_env **out)
{
    MDB_env *e = NULL;
    MDB_txn *t = NULL;
    MDB_dbi meta, slots;
    MDB_val k, v;
    MDB_stat ms;
    int mrc, rc = KM_OK;

    *out = NULL;
    if ((mrc = mdb_env_create(&e)) != 0)
        return bk_lmdb(KM_E_NOMEM, mrc, "cannot create an LMDB environment");
    if ((mrc = mdb_env_set_maxdbs(e, BK_MAXDBS)) != 0) {
        rc = bk_lmdb(KM_E_IO, mrc, "cannot configure an LMDB environment");
        goto fail;
    }
    /* map size 0: LMDB takes the file's own */
    mrc = mdb_env_open(e, file, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
    if (mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH) {
        rc = bk_lmdb(KM_E_CORRUPT, mrc, "the backup is not a libkm vault file");
        goto fail;
    }
    if (mrc != 0) {
        rc = bk_lmdb(KM_E_IO, mrc, "cannot open the backup file");
        goto fail;
    }
    if ((mrc = mdb_txn_begin(e, NULL, MDB_RDONLY, &t)) != 0) {
        rc = bk_lmdb(KM_E_IO, mrc, "cannot read the backup file");
        goto fail;
    }
    mrc = mdb_dbi_open(t, BK_META, 0, &meta);
    if (mrc == 0)
        mrc = mdb_dbi_open(t, BK_SLOTS, 0, &slots);
    if (mrc == MDB_NOTFOUND || mrc == MDB_INCOMPATIBLE) {
        rc = km__err(KM_E_CORRUPT, "the backup is not a libkm vault file (no vault tables)");
        goto fail;
    }
    if (mrc != 0) {
        rc = bk_lmdb(KM_E_IO, mrc, "cannot read the backup file");
        goto fail;
    }
    k.mv_data = (void *)(uintptr_t)BK_FORMAT;
    k.mv_size = sizeof BK_FORMAT - 1;
    mrc = mdb_get(t, meta, &k, &v);
    if (mrc == 0 && (v.mv_size != 1 || ((const uint8_t *)v.mv_data)[0] == 0))
        mrc = MDB_NOTFOUND;
    if (mrc == 0 && ((const uint8_t *)v.mv_data)[0] > BK_VAULT_FORMAT) {
        rc = km__err(KM_E_UNSUPPORTED, "the backup's vault format %u is newer than this libkm "
                     "reads (%d)", (unsigned)((const uint8_t *)v.mv_data)[0], BK_VAULT_FORMAT);
        goto fail;
    }
    if (mrc == 0) {
        k.mv_data = (void *)(uintptr_t)BK_VAULT_ID;
        k.mv_size = sizeof BK_VAULT_ID - 1;
        mrc = mdb_get(t, meta, &k, &v);
        if (mrc == 0 && v.mv_size != 16)
            mrc = MDB_NOTFOUND;
    }
    if (mrc == 0 && (mrc = mdb_stat(t, slots, &ms)) == 0 && ms.ms_entries == 0)
        mrc = MDB_NOTFOUND;
    if (mrc == MDB_NOTFOUND) {
        rc = km__err(KM_E_CORRUPT, "the backup is not a libkm vault file (no format, vault id "
                                   "or keyslot)");
        goto fail;
    }
    if (mrc != 0) {
        rc = bk_lmdb(KM_E_IO, mrc, "cannot read the backup file");
        goto fail;
    }
    mdb_txn_abort(t);
    *out = e;
    return KM_OK;
fail:
    if (t != NULL)
        mdb_txn_abort(t);
    mdb_env_close(e);
    return rc;
}

static int copy_backup(void *arg, int fd)
{
    int mrc = mdb_env_copyfd2(arg, fd, MDB_CP_COMPACT);

    return mrc == 0 ? KM_OK : bk_lmdb(KM_E_IO, mrc, "cannot copy the backup into the vault");
}

int km__lmdb_restore(const char *backup, const char *dir)
{
    char data[PATH_MAX], tmp_prefix[PATH_MAX];
    struct stat st;
    MDB_env *src = NULL;
    int rc, n;

    if (backup == NULL || backup[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: backup is NULL or empty");
    if (dir == NULL || dir[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: dir is NULL or empty");
    n = snprintf(data, sizeof data, "%s/data.mdb", dir);
    if (n < 0 || (size_t)n >= sizeof data - 16)
        return km__err(KM_E_INVALID, "km_vault_restore: dir path too long");
    snprintf(tmp_prefix, sizeof tmp_prefix, "%s/restore", dir);
    if (stat(backup, &st) != 0)
        return errno == ENOENT ? km__err(KM_E_NOTFOUND, "km_vault_restore: no backup file at "
                                                        "this path")
                               : bk_errno(KM_E_IO, "km_vault_restore: cannot look up the backup");
    if (!S_ISREG(st.st_mode))
        return km__err(KM_E_INVALID, "km_vault_restore: the backup is not a regular file");
    if ((rc = backup_open(backup, &src)) != KM_OK)
        return rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = bk_errno(KM_E_IO, "km_vault_restore: cannot create the vault directory");
        goto out;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = km__err(KM_E_INVALID, "km_vault_restore: dir is not a directory");
        goto out;
    }
    if (lstat(data, &st) == 0) {
        rc = km__err(KM_E_EXISTS, "km_vault_restore: the directory already holds a vault "
                                  "(never overwritten)");
        goto out;
    }
    rc = copy_to(dir, data, tmp_prefix, copy_backup, src);
out:
    mdb_env_close(src);
    return rc;
}
