/* testraw.c - raw LMDB access to a closed vault's files (testraw.h). */
#include "testraw.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

void tu_raw_begin(tu_raw *r, const char *vdir, unsigned env_flags, uint64_t map_size)
{
    int mrc;

    memset(r, 0, sizeof *r);
    r->flags = env_flags;
    ck_assert_int_eq(mdb_env_create(&r->env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(r->env, 32), 0);
    if (map_size != 0)
        ck_assert_int_eq(mdb_env_set_mapsize(r->env, (size_t)map_size), 0);
    mrc = mdb_env_open(r->env, vdir, env_flags, 0600);
    ck_assert_msg(mrc == 0, "raw open of %s: %s", vdir, mdb_strerror(mrc));
    ck_assert_int_eq(mdb_txn_begin(r->env, NULL, env_flags & MDB_RDONLY, &r->txn), 0);
}

MDB_dbi tu_raw_dbi(tu_raw *r, const char *table)
{
    MDB_dbi d;
    int mrc = mdb_dbi_open(r->txn, table, 0, &d);
    ck_assert_msg(mrc == 0, "raw table %s: %s", table, mdb_strerror(mrc));
    return d;
}

uint8_t *tu_raw_get(tu_raw *r, const char *table, const void *key, size_t key_len, size_t *len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key }, v;
    uint8_t *p;
    int mrc = mdb_get(r->txn, tu_raw_dbi(r, table), &k, &v);

    ck_assert_msg(mrc == 0, "raw get in %s: %s", table, mdb_strerror(mrc));
    p = malloc(v.mv_size);
    ck_assert_ptr_nonnull(p);
    memcpy(p, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return p;
}

void tu_raw_put(tu_raw *r, const char *table, const void *key, size_t key_len, const void *val,
                size_t val_len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key }, v = { val_len, (void *)(uintptr_t)val };
    ck_assert_int_eq(mdb_put(r->txn, tu_raw_dbi(r, table), &k, &v, 0), 0);
}

void tu_raw_vkey(uint8_t out[20], const uint8_t id[16], uint32_t version)
{
    memcpy(out, id, 16);
    out[16] = (uint8_t)(version >> 24);
    out[17] = (uint8_t)(version >> 16);
    out[18] = (uint8_t)(version >> 8);
    out[19] = (uint8_t)version;
}

void tu_raw_end(tu_raw *r)
{
    if (r->flags & MDB_RDONLY)
        mdb_txn_abort(r->txn);
    else
        ck_assert_int_eq(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
    r->txn = NULL;
    r->env = NULL;
}
