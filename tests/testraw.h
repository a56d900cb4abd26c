/* testraw.h - raw LMDB access to a closed vault's files, as an attacker with
 * the files would have (the tamper, vault, sweep, audit and rekey suites).
 * Every helper fails the running test when LMDB refuses. */
#ifndef KM_TESTRAW_H
#define KM_TESTRAW_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

typedef struct tu_raw {
    MDB_env *env;
    MDB_txn *txn;
    unsigned flags;      /* the environment flags it was opened with */
} tu_raw;

/* Opens the LMDB environment in directory `vdir` (a vault: DIR/vault) with
 * `env_flags` (0, MDB_NOLOCK, MDB_RDONLY) and, when map_size is not 0, that
 * map size, then begins a transaction (read-only with MDB_RDONLY). */
void tu_raw_begin(tu_raw *r, const char *vdir, unsigned env_flags, uint64_t map_size);
/* The handle of table `table`, which must exist. */
MDB_dbi tu_raw_dbi(tu_raw *r, const char *table);
/* A malloc'ed copy of the value at `key` in `table` (which must be there); *len its length. */
uint8_t *tu_raw_get(tu_raw *r, const char *table, const void *key, size_t key_len, size_t *len);
/* Writes `val` at `key` in `table`. */
void tu_raw_put(tu_raw *r, const char *table, const void *key, size_t key_len, const void *val,
                size_t val_len);
/* The record key of one key version: the key id, then the version big-endian. */
void tu_raw_vkey(uint8_t out[20], const uint8_t id[16], uint32_t version);
/* Keyslot records (docs/FORMATS.md, Keyslots) as an attacker edits them:
 * TLV entries tag (1) || BE32 length || value. The offset of entry `tag` in
 * rec, or (size_t)-1 when there is none. */
size_t tu_tlv_at(const uint8_t *rec, size_t len, uint8_t tag);
/* Removes entry `tag` from rec (in place); the new length (len when absent). */
size_t tu_tlv_drop(uint8_t *rec, size_t len, uint8_t tag);
/* The id (BE32, the record key) of principal `name`'s keyslot in the slots
 * table: the slot whose selector (tag 8) is SHA-256("km-principal-v1" ||
 * salt || name). Fails the test when there is none. */
void tu_raw_principal_slot(tu_raw *r, const char *name, uint8_t id[4]);
/* Commits (a read-only transaction: aborts) and closes the environment. */
void tu_raw_end(tu_raw *r);

#endif
