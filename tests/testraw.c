/* testraw.c - raw LMDB access to a closed vault's files (testraw.h). */
#include "testraw.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t tu_tlv_at(const uint8_t *rec, size_t len, uint8_t tag)
{
    size_t off = 0;

    while (off + 5 <= len) {
        uint32_t l = be32(rec + off + 1);
        if (l > len - off - 5)
            break;
        if (rec[off] == tag)
            return off;
        off += 5 + l;
    }
    return (size_t)-1;
}

size_t tu_tlv_drop(uint8_t *rec, size_t len, uint8_t tag)
{
    size_t off = tu_tlv_at(rec, len, tag), n;

    if (off == (size_t)-1)
        return len;
    n = 5 + be32(rec + off + 1);
    memmove(rec + off, rec + off + n, len - off - n);
    return len - n;
}

void tu_raw_principal_slot(tu_raw *r, const char *name, uint8_t id[4])
{
    static const char tag[] = "km-principal-v1";
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int found = 0;

    ck_assert_int_eq(mdb_cursor_open(r->txn, tu_raw_dbi(r, "slots"), &c), 0);
    while (!found && mdb_cursor_get(c, &k, &v, MDB_NEXT) == 0) {
        const uint8_t *rec = v.mv_data;
        size_t salt = tu_tlv_at(rec, v.mv_size, 6), sel = tu_tlv_at(rec, v.mv_size, 8);
        uint8_t h[32];
        unsigned hl = 0;
        EVP_MD_CTX *md;

        if (k.mv_size != 4 || salt == (size_t)-1 || sel == (size_t)-1
            || be32(rec + salt + 1) != 32 || be32(rec + sel + 1) != 32)
            continue;
        md = EVP_MD_CTX_new();
        ck_assert_ptr_nonnull(md);
        ck_assert(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
                  && EVP_DigestUpdate(md, tag, sizeof tag - 1) == 1
                  && EVP_DigestUpdate(md, rec + salt + 5, 32) == 1
                  && EVP_DigestUpdate(md, name, strlen(name)) == 1
                  && EVP_DigestFinal_ex(md, h, &hl) == 1);
        EVP_MD_CTX_free(md);
        if (memcmp(h, rec + sel + 5, 32) == 0) {
            memcpy(id, k.mv_data, 4);
            found = 1;
        }
    }
    mdb_cursor_close(c);
    ck_assert_msg(found, "no keyslot of principal '%s'", name);
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
