/*
 * lmdb.h - what the two files of the LMDB store share (src/store/lmdb.c and
 * lmdb_backup.c). Nothing else includes it.
 */
#ifndef KM_STORE_LMDB_H
#define KM_STORE_LMDB_H

#include "km_int.h"
#include "store.h"

/* Writes a compacted copy of the open store's data.mdb to fd (at its
 * current offset, which must be 0 on an empty file) from one read snapshot
 * (mdb_env_copyfd2, MDB_CP_COMPACT) while writers go on; holds off a
 * compaction meanwhile. KM_E_IO (LMDB code kept), KM_E_FORK, KM_E_INVALID. */
int km__lmdb_copyfd(km__store *st, int fd);
/* km__store_ops.backup and .restore of the LMDB store (lmdb_backup.c). */
int km__lmdb_backup(km__store *st, const char *path);
int km__lmdb_restore(const char *backup, const char *dir);

#endif /* KM_STORE_LMDB_H */
