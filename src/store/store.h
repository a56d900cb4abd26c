/*
 * store.h - the catalog store: the vault's records in transactions, sealed
 * with AES-256-GCM, its keyslots, and the vault-level work built on them
 * (open or create and unlock, rekey's storage part, compaction, backup).
 * Internal; reached through km_int.h. Not installed.
 *
 * Layers, top to bottom:
 *   the core (src/core/ctx.c, key.c, ...)  calls the functions of this header
 *   src/store/store.c   the scheme table, dispatch to the implementation,
 *                       sealed records over raw bytes, the vault meta, open/
 *                       create/unlock, rekey's storage part, the fault hook
 *   src/store/keyslot.c keyslots: raw (unsealed, KWP-protected) records of
 *                       KM__T_SLOTS
 *   an implementation of km__store_ops: raw bytes in tables, transactions
 *                       (src/store/lmdb.c, its backup and restore in
 *                       lmdb_backup.c)
 * Store code uses only the primitives (the rest of km_int.h and shamir.h),
 * never the core: a keyslot sealed by a device is opened through the
 * km__slot_unsealer the core hands to km__store_open.
 *
 * Sealed value: [1 byte record-format version = 1][12 nonce][ciphertext][16 tag]
 * Associated data: "km-rec" || rec-format(1) || table name || 0x00 || record key.
 * A record moved to another key or table, downgraded or edited fails to
 * open (KM_E_CORRUPT). Sealing is done here, once, for every implementation:
 * an implementation only stores the bytes it is given.
 *
 * A second implementation (a replicated store) is one km__store_ops and one
 * row in the scheme table of store.c; nothing above this header changes.
 */
#ifndef KM_STORE_H
#define KM_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "km.h"

typedef enum km__table {
    KM__T_META = 0,     /* vault metadata: "format", "vault-id", "auth-failures" unsealed
                         * (store.c), every other entry sealed */
    KM__T_SLOTS,        /* keyslots: BE32 slot id -> slot record (not sealed: KWP-protected) */
    KM__T_KEYS,         /* key id[16] -> key record */
    KM__T_NAMES,        /* HMAC(name key, name)[32] -> key id record */
    KM__T_VMETA,        /* key id[16] || BE32 version -> version metadata record */
    KM__T_MATERIAL,     /* key id[16] || BE32 version -> backend reference */
    KM__T_COUNTERS,     /* key id[16] || BE32 version -> reserved usage counters */
    KM__T_AUDIT,        /* BE64 sequence -> audit entry */
    KM__T__COUNT
} km__table;

/* The table's name ("meta", "slots", ...): part of every sealed record's
 * associated data, and the name an implementation stores the table under.
 * NULL for a value out of range. */
const char *km__table_name(km__table tbl);

/* Record keys are 1 to KM__STORE_KEY_MAX bytes (LMDB's default limit). */
#define KM__STORE_KEY_MAX 511

typedef struct km__store km__store;   /* an open store (its implementation may share one) */
typedef struct km__txn km__txn;       /* a read or write transaction */
typedef struct km__sealer km__sealer; /* derived record-sealing keys of an unlocked vault */
/* The name the core has used for an open store since the LMDB-only days. */
typedef km__store km__env;

/* A record visited by an iteration: key and value are borrowed for the call.
 * Return 0 to go on, non-zero to stop (see each iterating function). */
typedef int (*km__rec_fn)(const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len, void *arg);

/* ----------------------------------------------------- the implementation
 * An implementation stores raw bytes in the tables of km__table, in
 * transactions. It embeds `struct km__store` first in its open handle and
 * `struct km__txn` first in its transaction (ops->txn_size bytes, allocated
 * and freed by store.c), the way an SQLite VFS embeds sqlite3_file.
 *
 * Errors: an implementation records its own failures (km__err_native with
 * its native code) and returns the km code; the "normal" outcomes
 * KM_E_NOTFOUND (get, del) and KM_E_EXISTS (put with KM__PUT_NOOVERWRITE)
 * are returned without being recorded (store.c words them). After any other
 * failed put, del or clear the transaction can only be aborted: store.c then
 * refuses further writes in it and turns its commit into an abort.
 *
 * Threads: read transactions run on many threads at once; write
 * transactions of one store are serialised (txn_begin(write) waits for the
 * one open), across processes too where several can open the store. A
 * transaction is used by one thread at a time.
 */
#define KM__STORE_OPS_VERSION 1

struct km__store {
    const struct km__store_ops *ops;
};

/* What km__txn_on_done calls when a transaction ends: committed = 1 after a
 * successful commit, 0 after an abort or a failed commit. */
typedef void (*km__txn_done_fn)(void *arg, int committed);

struct km__txn {
    km__store *st;
    int write;
    /* store.c's own: sticky after a failed write */
    int err;
    km_native_kind native_kind;
    unsigned long native;
    char why[160];
    /* km__txn_on_done's: called once when the transaction ends */
    km__txn_done_fn done;
    void *done_arg;
    /* store.c's write log (km__txn_writes): one item per tracked record put
     * or deleted; all = 1 after a clear of a tracked table */
    uint8_t *wlog;
    size_t wlog_len, wlog_cap, wlog_off;
    int wlog_all;
};

typedef struct km__store_ops {
    uint32_t version;   /* KM__STORE_OPS_VERSION */
    const char *scheme; /* its URI scheme ("lmdb"): "<scheme>:<location>" */
    size_t txn_size;    /* its transaction's size, >= sizeof(struct km__txn) */

    /* Required. Opens or joins the store at `location` (for LMDB a
     * directory) with o->flags (KM_OPEN_CREATE: create an empty store where
     * there is none) and o->map_size. Errors: KM_E_NOTFOUND (no store there,
     * no CREATE; nothing created), KM_E_INVALID, KM_E_IO, KM_E_NOMEM. */
    int (*open)(km__store **out, const char *location, const km_open_options *o);
    /* Required. Drops one open's reference. */
    void (*close)(km__store *st);
    /* Required. Begins a transaction in the caller's zeroed `t` (t->st and
     * t->write are set). KM_E_FORK (a handle inherited across fork()),
     * KM_E_BUSY, KM_E_IO. */
    int (*txn_begin)(km__store *st, int write, km__txn *t);
    /* Required. Commits (KM_E_FULL, KM_E_IO) or aborts; neither frees t. */
    int (*txn_commit)(km__txn *t);
    void (*txn_abort)(km__txn *t);
    /* Required. The value of `key`, borrowed until the next write in t or
     * its end. KM_E_NOTFOUND. */
    int (*get)(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len,
               const uint8_t **val, size_t *val_len);
    /* Required. Writes (replaces unless KM__PUT_NOOVERWRITE: KM_E_EXISTS). */
    int (*put)(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len,
               const uint8_t *val, size_t val_len, unsigned flags);
    /* Required. KM_E_NOTFOUND when absent. */
    int (*del)(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len);
    /* Required. Calls fn for every record whose key starts with `prefix`
     * (prefix_len 0: all), in key order (bytewise, shorter first). fn may
     * write to t: to other tables, and in this one only a new value for the
     * key it was given. A non-zero return of fn stops the walk and is
     * returned as is; else KM_OK, or the implementation's read error. */
    int (*iter)(km__txn *t, km__table tbl, const uint8_t *prefix, size_t prefix_len,
                km__rec_fn fn, void *arg);
    /* Required. Deletes every record of a table. */
    int (*clear)(km__txn *t, km__table tbl);
    /* Required. Records in a table. */
    int (*count)(km__txn *t, km__table tbl, uint64_t *out);

    /* Optional (NULL: KM_E_UNSUPPORTED). The change generation: grows
     * whenever a write transaction committed, in this process or any other
     * (LMDB: the last transaction id, kept growing across a compaction). */
    int (*gen)(km__store *st, uint64_t *out);
    /* Optional. Rewrites the store without free space (km_vault_compact). */
    int (*compact)(km__store *st);
    /* Optional. A consistent copy of the open store as one file at `path`,
     * never overwriting one (km_vault_backup). */
    int (*backup)(km__store *st, const char *path);
    /* Optional. The file of `backup` made a store at `location` again, never
     * over an existing one (km_vault_restore). */
    int (*restore)(const char *backup, const char *location);
    /* Optional. Takes one more reference to an open store (dropped by
     * close), for another context of this process on the same store
     * (km_ctx_delegate). */
    void (*ref)(km__store *st);
} km__store_ops;

/* The LMDB implementation (src/store/lmdb.c). */
extern const km__store_ops km__store_lmdb;
/* The etcd implementation (src/store/etcd.c; built when configure found
 * libcurl: KM_HAVE_ETCD). */
extern const km__store_ops km__store_etcd;
/* 1 while the etcd store st has its watch on the vault's records running. */
int km__etcd_watching(km__store *st);
/* Changes made by other processes, as a store that hears of them learns
 * them (the etcd store's watch): grows by one per batch of changes to
 * anything a cache holds. The core adds it to its write generation
 * (km__wtxn_gen), so cached keys and permissions are re-read at their next
 * use. Written by the implementations only. */
extern atomic_uint km__store_changes;

/* ---------------------------------------------------------- for the core */

/* The one place that maps a URI to a store implementation (store.c's scheme
 * table): "<scheme>:<location>" ("lmdb:/dir", "lmdb:///dir"), or a bare path
 * for the default store (LMDB). *location points into uri. KM_E_INVALID (an
 * unknown scheme, no location, a location over 4000 bytes). */
int km__store_find(const char *uri, const km__store_ops **ops, const char **location);

/* Opens a device's keyslot: the core's way to unseal a master key with a
 * registered key backend (`config` as given to km_open), handed to the store
 * so that the store never calls the core. KM_E_AUTH when the device refuses
 * the blob; any other error stops the unlock. */
typedef int (*km__slot_unseal_fn)(void *arg, const char *backend, const char *config,
                                  const uint8_t *blob, size_t blob_len, km_secret **master);
/* A keyslot of the older form that opened the vault (its master key wrapped
 * under the credential's key itself): its id, and that key while it is at
 * hand, to rewrite it as a key-pair slot (docs/SECURITY.md); kek NULL: none. */
typedef struct km__slot_conv {
    uint32_t id;
    km_secret *kek;
} km__slot_conv;
typedef struct km__slot_unsealer {
    km__slot_unseal_fn fn;
    void *arg;
    /* not NULL: the store leaves an older slot's conversion to the caller,
     * in *defer (km__store_slot_convert in an audited transaction; the
     * caller frees defer->kek); NULL: the store converts it itself, in a
     * transaction of its own */
    km__slot_conv *defer;
} km__slot_unsealer;
/* Rewrites the slot cv names as a key-pair slot in the write transaction t
 * (nothing when cv names none, or the slot changed meanwhile). */
int km__store_slot_convert(km__txn *t, const km_secret *master, const km__slot_conv *cv);

/* Opens (or creates) the store at `location` with `ops`, and unlocks the
 * vault in it with what `o` carries (passphrase, principal, shares, or a
 * device through `unseal`, which may be NULL: no device keyslot opens then),
 * giving the 32-byte master key in secure memory, the vault id and the
 * opening principal's id (zero for the owner). Several opens of one LMDB
 * directory in a process share one handle (refcounted).
 * Errors: KM_E_NOTFOUND (no vault, no CREATE), KM_E_EXISTS (EXCL), KM_E_AUTH,
 * KM_E_CORRUPT, KM_E_UNSUPPORTED (newer format), KM_E_IO, KM_E_INVALID. */
int km__store_open(km__store **out, const km__store_ops *ops, const char *location,
                   const km_open_options *o, const km__slot_unsealer *unseal,
                   km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16]);
/* Drops one open's reference; accepts NULL. */
void km__store_close(km__store *st);
/* One more reference to an open store (km__store_close drops it).
 * KM_E_UNSUPPORTED when the implementation has no `ref`. */
int km__store_ref(km__store *st);
/* km__store_open of a bare LMDB directory without a device (the tests'). */
int km__env_open(km__env **out, const char *dir, const km_open_options *o,
                 km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16]);
void km__env_close(km__env *env);

/* The store's change generation (km__store_ops.gen). KM_E_UNSUPPORTED when
 * the implementation cannot tell. The core's own km__write_gen (core.h) is
 * another thing: bumped by the core after writes that change what its
 * caches hold, not after audit appends or counter reservations. */
int km__store_gen(km__store *st, uint64_t *out);

/* Rewrites the store without free space. For LMDB: data.mdb copied with
 * MDB_CP_COMPACT into dir/compact.tmp, fsync, renamed over data.mdb, and
 * reopened in place (the handle stays valid). KM_E_BUSY when another km_ctx
 * of this process shares the handle, another process has it open, or this
 * process's transactions stay open; KM_E_IO, KM_E_FULL, KM_E_FORK;
 * KM_E_UNSUPPORTED for a store without compaction. */
int km__store_compact(km__store *st);
/* km_vault_backup's file work: a consistent copy of the open store as one
 * file at `path` (never overwritten) while writers go on. KM_E_EXISTS,
 * KM_E_IO, KM_E_FORK, KM_E_UNSUPPORTED. */
int km__store_backup(km__store *st, const char *path);
/* km_vault_restore's file work, with the default store (a directory `dir`).
 * KM_E_NOTFOUND (no backup), KM_E_CORRUPT (not a vault), KM_E_EXISTS,
 * KM_E_IO. */
int km__store_restore(const char *backup, const char *dir);
/* km_vault_copy's store work: every record of src (one read snapshot),
 * byte for byte, into the empty store dst, which may be of another
 * implementation (sealing depends on the table and key only, so the copy
 * opens with the source's credentials). Written in transactions of at most
 * 100 records and 512 KiB (etcd's limits), the vault meta and keyslots last
 * in one, so an interrupted copy holds no vault; then every record of dst is
 * compared with the source's. *records: how many were copied.
 * KM_E_EXISTS (dst holds records: nothing written), KM_E_CORRUPT (the
 * comparison failed), the stores' errors. */
int km__store_copy(km__store *src, km__store *dst, uint64_t *records);

int km__txn_begin(km__store *st, int write, km__txn **out);
int km__txn_commit(km__txn *t);   /* always frees t; KM_E_FULL / KM_E_IO on failure */
void km__txn_abort(km__txn *t);   /* accepts NULL */
/* 1 for a write transaction. */
int km__txn_is_write(const km__txn *t);
/* Registers fn(arg, committed) to be called once when t ends (after its
 * commit, or its abort); one per transaction: the registered arg when fn is
 * already registered, else NULL (then fn is registered with arg). Used to
 * hand audit entries to their sinks only once they are committed. */
void *km__txn_on_done(km__txn *t, km__txn_done_fn fn, void *arg);
/* Entries in a table. */
int km__table_count(km__txn *t, km__table tbl, uint64_t *out);

/* ------------------------------------------------ the write log (issue 18)
 * Every put or delete of a tracked record (all tables but the audit records
 * and the counters, and meta but "audit-head" and "auth-failures", which
 * change without an audit entry) is logged in its write transaction as an
 * item: table (1), key length (1), key, flags (1: bit 0 a value before,
 * bit 1 a value after), SHA-256 of the raw value before (32, zero if none),
 * SHA-256 of the raw value after (32, zero when deleted). */
#define KM__WLOG_BEFORE 1u
#define KM__WLOG_AFTER 2u
#define KM__WLOG_ITEM_MIN (1 + 1 + 1 + 32 + 32)

/* The log of write transaction t since the last km__txn_writes_taken
 * (borrowed until the next write);
 * returns 1 when a tracked table was cleared (the log is then incomplete: a
 * checkpoint is needed), 0 otherwise. */
int km__txn_writes(km__txn *t, const uint8_t **log, size_t *len);
/* Asks for a checkpoint: km__txn_writes returns 1 from now on. */
void km__txn_writes_all(km__txn *t);
/* The log so far went into an audit entry: km__txn_writes starts after it. */
void km__txn_writes_taken(km__txn *t);
/* Parses the item at log[*at] (log_len bytes): 1 and the fields, *at moved
 * past it; 0 at the end; -1 when malformed. */
int km__wlog_item(const uint8_t *log, size_t log_len, size_t *at, km__table *tbl,
                  const uint8_t **key, size_t *key_len, unsigned *flags, const uint8_t **before,
                  const uint8_t **after);
/* Calls fn(tbl, key, key_len, SHA-256 of the raw value, arg) for every
 * tracked record of the catalog, in table then key order; a non-zero return
 * stops the walk and is returned. */
typedef int (*km__catalog_fn)(km__table tbl, const uint8_t *key, size_t key_len,
                              const uint8_t hash[32], void *arg);
int km__catalog_walk(km__txn *t, km__catalog_fn fn, void *arg);
/* The checkpoint digest of items in table-then-key order: SHA-256 over
 * table (1) || key length (1) || key || value hash (32) of each; a running
 * digest, fed by km__catalog_digest_add (ctx from km__catalog_digest_new). */
typedef struct km__cdigest km__cdigest;
int km__catalog_digest_new(km__cdigest **out);
int km__catalog_digest_add(km__cdigest *d, km__table tbl, const uint8_t *key, size_t key_len,
                           const uint8_t hash[32]);
int km__catalog_digest_end(km__cdigest *d, uint8_t out[32]);  /* frees d */
/* The digest of the whole catalog as t sees it. */
int km__catalog_digest(km__txn *t, uint8_t out[32]);

/* Derives the sealing keys (HKDF from master). */
int km__sealer_new(km__sealer **out, const km_secret *master);
void km__sealer_free(km__sealer *s);
/* The 32-byte keyed hash of a name for KM__T_NAMES. */
int km__sealer_name_hash(const km__sealer *s, const char *name, size_t len, uint8_t out[32]);
/* Makes the fresh sealer new_s own old_s and old_master: freed with new_s
 * (a thread may still be using them when the context swaps them). */
void km__sealer_retire(km__sealer *new_s, km__sealer *old_s, km_secret *old_master);

/* Reads and unseals a record into secure memory. KM_E_NOTFOUND, KM_E_CORRUPT. */
int km__rec_get(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, km_secret **out);
/* Reads and unseals a record of catalog metadata (never key material) into
 * the caller's buffer buf[0..cap), which the caller wipes after use; *len is
 * the plaintext length. KM_E_NOTFOUND without recording an error (a lookup
 * that may miss: the caller reports it), KM_E_BUFFER (nothing read) when
 * *len > cap, KM_E_CORRUPT. The read path of km_key_open (no secure page per
 * record). */
int km__rec_read(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                 size_t key_len, uint8_t *buf, size_t cap, size_t *len);
/* Seals and writes. flags: KM__PUT_NOOVERWRITE -> KM_E_EXISTS if present. */
#define KM__PUT_NOOVERWRITE 1
int km__rec_put(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, const uint8_t *val, size_t val_len, unsigned flags);
/* KM_E_NOTFOUND when absent. */
int km__rec_del(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len);
/* Calls fn for every record whose key starts with `prefix` (may be empty),
 * in key order, with the unsealed value (wiped after the call). fn returns
 * non-zero to stop (that value is returned if negative, else KM_OK). fn may
 * write to other tables of t, not to this one. */
int km__rec_iter(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *prefix,
                 size_t prefix_len, km__rec_fn fn, void *arg);

/* The unsealed count of failed authentications since the last successful open. */
int km__authfail_get(km__txn *t, uint64_t *n);
int km__authfail_clear(km__txn *t);

/* Keyslots (keyslot.c), each in the caller's write transaction. Every slot
 * written carries a MAC under a key derived from `master` over its id and
 * fields (checked at every open of a format-3 vault). */
/* Adds a passphrase slot for the master key. */
int km__slot_add_passphrase(km__txn *t, const km_secret *master, const uint8_t *pass,
                            size_t pass_len, uint32_t log2n);
/* A principal's passphrase slot (principal == NULL and pid == NULL: an
 * owner slot, as km__slot_add_passphrase). */
int km__slot_add_principal(km__txn *t, const km_secret *master, const uint8_t *pass,
                           size_t pass_len, uint32_t log2n, const char *principal,
                           const uint8_t pid[16]);
/* Removes every passphrase slot of principal `pid`; KM_E_NOTFOUND if none.
 * KM_E_STATE when no slot would remain, or, with `check` (may be NULL),
 * when none that remains opens the vault now: a passphrase (owner or
 * principal) or Shamir slot counts as one that opens; a device slot counts
 * when check->fn (given a NULL config) unseals it to `master` now (a TPM
 * slot whose PCRs moved does not). */
int km__slot_remove_principal(km__txn *t, const uint8_t pid[16], const km__slot_unsealer *check,
                              const km_secret *master);
/* Removes every owner passphrase slot; KM_E_NOTFOUND, KM_E_STATE as above. */
int km__slot_remove_owner(km__txn *t, const km__slot_unsealer *check, const km_secret *master);
/* A backend keyslot holding the blob of the backend's slot_seal. */
#define KM__SLOT_BLOB_MAX ((size_t)64 << 10)
int km__slot_add_backend(km__txn *t, const km_secret *master, const char *backend,
                         const uint8_t *blob, size_t blob_len);
/* The distinct backend names of the vault's backend keyslots (at most cap),
 * and how many backend keyslots there are in all. */
int km__slot_backend_names(km__txn *t, char names[][32], size_t cap, size_t *n, size_t *total);
/* A Shamir keyslot: m of n shares (text "kms1:...", in shares[0..n-1]) open it. */
#define KM__SHARE_Y_LEN 32
int km__slot_add_shamir(km__txn *t, const km_secret *master, unsigned m, unsigned n,
                        km_secret **shares);

/* keyslot.c: every keyslot (its MAC checked under old_master) made to open
 * new_master without a credential: each key-pair slot gets a fresh
 * ephemeral key and new_master wrapped to its public key, under a MAC of
 * new_master; device slots are deleted (the caller writes them re-sealed).
 * KM_E_STATE naming a slot of the older form (or of an unknown type), which
 * cannot be re-wrapped: nothing is dropped silently. */
int km__slots_rewrap(km__txn *t, const km_secret *old_master, const km_secret *new_master);

/* km_vault_rekey's storage part, in one write transaction of its own: every
 * sealed record (meta except "format"/"vault-id"/"auth-failures", keys,
 * vmeta, material, counters, audit) is unsealed with old_s and resealed with
 * new_s, the names index is rebuilt under new_s's name key from the key
 * records' names, and all keyslots are replaced by one passphrase slot for
 * new_master (pass NULL: a rotation, km__slots_rewrap from old_master
 * re-wraps the slots instead); `pre` (may be NULL) adds the caller's first part to the same
 * transaction before anything is resealed (with old_s: what it writes is
 * resealed), `hook` (may be NULL) its last part after (with new_s). Marks
 * old_s retired (km__rec_put then refuses it with KM_E_STATE) when the
 * commit succeeds. KM_E_CORRUPT when a record does not open with old_s
 * (nothing written), KM_E_FULL, KM_E_IO, KM_E_NOMEM. */
typedef int (*km__txn_hook)(void *arg, km__txn *t, const km__sealer *s);
int km__vault_rekey(km__store *st, km__sealer *old_s, const km__sealer *new_s,
                    const km_secret *old_master, const km_secret *new_master,
                    const uint8_t *pass, size_t pass_len, uint32_t log2n, km__txn_hook pre,
                    km__txn_hook hook, void *hook_arg);

/* Test hook (store.c): at write step `at` of the store (a put, a delete, a
 * commit, the moment after a commit, a file step of compaction) the process
 * SIGKILLs itself (0 = off, ULONG_MAX = count only); km__fault_steps: steps
 * so far. km__fault_step marks one step (for implementations' own steps). */
void km__fault_arm(unsigned long at);
unsigned long km__fault_steps(void);
void km__fault_step(void);

/* Vault formats: 1, the first; 2 (KM__FORMAT_POLICY_STORED), the vault's
 * policy is always stored, so a missing policy record is an attack, never
 * "the default". The format byte is unsealed meta checked against the sealed
 * check record at every open, so a file edit cannot move it back. */
#define KM__FORMAT_POLICY_STORED 2u
/* 3 (KM__FORMAT_SLOTS_AUTH): every keyslot carries a MAC under a key derived
 * from the master key, checked at every open (a slot edited in the file, a
 * principal's slot turned into an owner's, fails the open). */
#define KM__FORMAT_SLOTS_AUTH 3u
/* The newest format: what a vault is moved up to at its first open. */
/* 4 (KM__FORMAT_CHAIN): every state change's audit entry lists the records
 * it wrote (or a catalog checkpoint); the upgrade's entry is a checkpoint. */
#define KM__FORMAT_CHAIN 4u
/* 5 (KM__FORMAT_VERSIONS): the version records live in their key record
 * (tag 19); a vault of format 4 is moved up by km_open in audited batches
 * (src/core/key_format.c), a fresh or keyless one in its first open's
 * transaction. */
#define KM__FORMAT_VERSIONS 5u
#define KM__FORMAT_CURRENT KM__FORMAT_VERSIONS
/* The format of the vault of t (checked against its sealed copy at open). */
int km__store_format(km__txn *t, uint32_t *format);
/* Moves the vault of t (a write transaction) up to `format` (never down:
 * nothing is written when it is there already); the sealed check record is
 * verified first. Crossing format 3, every keyslot gets its MAC under
 * `master`. KM_E_CORRUPT, KM_E_INVALID, the write's errors. */
int km__store_format_upgrade(km__txn *t, const km__sealer *s, const km_secret *master,
                             uint32_t format);

#endif /* KM_STORE_H */
