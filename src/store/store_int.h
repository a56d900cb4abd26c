/*
 * store_int.h - declarations shared inside the store layer only (src/store/store.c
 * and src/store/keyslot.c): raw, unsealed records through the implementation, with
 * the fault-injection steps and the sticky failure of a transaction. The
 * core never includes this header (it uses sealed records, store.h).
 */
#ifndef KM_STORE_INT_H
#define KM_STORE_INT_H

#include "km_int.h"
#include "store.h"

/* The vault master key's length. */
#define KM__MASTER_LEN 32

/* The raw value of `key` in t, borrowed until the next write in t or its
 * end. KM_E_NOTFOUND (not recorded as the thread's error), or the
 * implementation's read error. */
int km__raw_get(km__txn *t, km__table tbl, const void *key, size_t key_len, const uint8_t **val,
                size_t *val_len);
/* Writes a raw value (KM__PUT_NOOVERWRITE: KM_E_EXISTS, recorded, naming the
 * table). Counts a fault step. */
int km__raw_put(km__txn *t, km__table tbl, const void *key, size_t key_len, const void *val,
                size_t val_len, unsigned flags);
/* Deletes; KM_E_NOTFOUND not recorded. Counts a fault step. */
int km__raw_del(km__txn *t, km__table tbl, const void *key, size_t key_len);
/* The implementation's iter (fn's non-zero return comes back as is). */
int km__raw_iter(km__txn *t, km__table tbl, const uint8_t *prefix, size_t prefix_len,
                 km__rec_fn fn, void *arg);
/* Deletes every record of a table. */
int km__raw_clear(km__txn *t, km__table tbl);
/* KM_E_INVALID for a read-only transaction, the sticky error of a failed
 * write (naming `fn`), else KM_OK. */
int km__txn_writable(const char *fn, km__txn *t);

/* keyslot.c: unwraps the master key with the first keyslot that opens with
 * what the options carry (a device's through `unseal`, which may be NULL).
 * Every slot is validated before any KDF or device call runs. pid: the
 * principal whose slot opened (all zero for an owner slot). KM_E_AUTH,
 * KM_E_CORRUPT (a malformed slot, no slot at all), or the device's error. */
/* conv (may be NULL): when the slot that opened is of the older form (its
 * master key wrapped under the credential's key itself), its id and that
 * key, for km__slot_convert (the caller frees conv->kek); else kek NULL. */
/* (km__slot_conv: store.h) */
int km__slots_open(km__txn *t, const km_open_options *o, const km__slot_unsealer *unseal,
                   km_secret **master, uint8_t pid[16], km__slot_conv *conv);
/* keyslot.c: rewrites the slot km__slots_open named in cv as a key-pair
 * slot (docs/FORMATS.md, type 4) in the write transaction t, with no KDF
 * run: nothing when cv names none, or the slot changed meanwhile. */
int km__slot_convert(km__txn *t, const km_secret *master, const km__slot_conv *cv);
/* keyslot.c: checks every keyslot's MAC (docs/FORMATS.md, Keyslots) under
 * `master`: KM_E_CORRUPT naming the first slot that has none or another (a
 * file edit). Vault format 3 and later. */
int km__slots_verify(km__txn *t, const km_secret *master);
/* keyslot.c: writes every keyslot back with a MAC under `master` (the move
 * to vault format 3, in the caller's write transaction). */
int km__slots_authenticate(km__txn *t, const km_secret *master);
/* keyslot.c: how km_open's options ask to unlock: 0 when they carry
 * nothing that opens a keyslot. */
int km__slot_unlock_mode(const km_open_options *o);

#endif /* KM_STORE_INT_H */
