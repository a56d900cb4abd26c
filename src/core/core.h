/*
 * core.h - the core's private structures: contexts, key objects, versions,
 * backend instances, and the core's functions. The core, lowest first:
 * ctx.c (the context), audit_append.c, wtxn.c (the write path),
 * audit_log.c, access.c, approvals.c, key.c (key objects), key_state.c. The
 * API files above it (src/api/: one per public header, acl.c for km/acl.h,
 * vault.c for km/vault.h, ...) call the core and the rules (rules.h), never
 * the reverse.
 * The catalog store (src/store/) and the primitives (src/prim/)
 * never include this header; the store reaches the catalog through store.h
 * and hands nothing back up except through callbacks the core gives it (the
 * keyslot unsealer of km__store_open).
 */
#ifndef KM_CORE_H
#define KM_CORE_H

#include "km_int.h"
#include "store.h"
#include "policy.h"
#include "rules.h"
#include "kmip_ttlv.h"   /* KM__KC_*: the functions of client mode (KM__REMOTE) */

/* The built-in key backends' tables (registered by ctx.c's register_builtins;
 * each defined in its backend: backends/software/, backends/pkcs11/,
 * backends/tpm2/). */
extern const km_backend_ops km__software_backend;
#ifdef KM_HAVE_PKCS11
extern const km_backend_ops km__pkcs11_backend;
extern const km_backend_ops km__pkcs11_card_backend;
#endif
#ifdef KM_HAVE_TPM2
extern const km_backend_ops km__tpm2_backend;
#endif
extern const km_backend_ops km__kmip_backend;   /* backends/kmip/ (always built) */

/* Record tags (TLV) of the catalog records. Append only. */
enum {
    KM__K_NAME = 1, KM__K_TYPE = 2, KM__K_USAGE = 3, KM__K_FLAGS = 4, KM__K_PROTECTION = 5,
    KM__K_CREATED = 6, KM__K_NVERSIONS = 7, KM__K_ROTATE_DAYS = 8, KM__K_PROTECT_DAYS = 9,
    KM__K_PROCESS_DAYS = 10, KM__K_GRACE_DAYS = 11, KM__K_POLICY = 12,
    /* key_meta.c: written after creation, absent in older records */
    KM__K_DESCRIPTION = 13, KM__K_ALIASES = 14, KM__K_TAGS = 15,
    KM__K_MIN_PROCESS = 16, KM__K_MIN_PROTECT = 17, /* the version window; absent = 0 */
    KM__K_OAEP_DIGEST = 18, /* RSA-OAEP digest (ops, issue 23) */
    KM__K_VERSIONS = 19     /* vault format 5: the version records (key.c, km__keyrec_vers) */
};
enum {
    KM__V_STATE = 1, KM__V_CREATED = 2, KM__V_ACTIVATED = 3, KM__V_PROTECT_STOP = 4,
    KM__V_PROCESS_STOP = 5, KM__V_DESTROY_AFTER = 6, KM__V_PREV_STATE = 7,
    KM__V_REVOKE_REASON = 8, KM__V_COMPROMISE_DATE = 9, KM__V_DEACTIVATED = 10,
    KM__V_DESTROYED = 11
};
enum { KM__C_INVOCATIONS = 1, KM__C_BYTES = 2 };

/* The most versions one key keeps (a record claiming more is corrupt). */
#define KM__VERSIONS_MAX 100000u

/* Key objects kept in a context's cache before unused ones are dropped. */
#ifndef KM__CACHE_MAX
#define KM__CACHE_MAX 65536
#endif

/* Largest per-key policy document (bytes of JSON). */
#define KM__KEY_POLICY_MAX 4096

/* Usage limits (AES-GCM with random nonces: 2^32 invocations per version,
 * NIST SP 800-38D section 8.3, rotating at 0.9 of it) come from the policy
 * (src/rules/policy.c); km__kobj caches them at each refresh. */
/* Other protect operations are counted but not limited here (policy may). */
#define KM__NO_LIMIT UINT64_MAX
/* First block of invocations reserved at a time; doubles up to the max. */
#define KM__RESERVE_MIN 1024u
#define KM__RESERVE_MAX (1u << 20)

typedef struct km__backend_inst {
    km_backend_ops ops;   /* copied at registration */
    void *state;          /* from ops.open, or NULL */
    struct km__backend_inst *next;
} km__backend_inst;

typedef struct km__ver {
    uint32_t version;
    km_key_state state;
    int64_t created, activated, protect_stop, process_stop, destroy_after;
    km_key_state prev_state;     /* for cancel-destroy */
    uint32_t revoke_reason;
    int64_t compromise_date, deactivated, destroyed;
    int below_min_protect, below_min_process;  /* the key's version window, at the last read */
    /* backend object, loaded on first use */
    _Atomic(void *) obj;
    pthread_mutex_t mu;          /* serialises loading and counter reservation */
    /* usage: this process's uses of this version, and how many it may make
     * before reserving another block in the vault (reserved-before-use, so
     * the persisted count never goes backwards after a crash) */
    atomic_uint_fast64_t used;
    atomic_uint_fast64_t allowance;
    atomic_uint_fast64_t bytes;
    uint64_t global_end;         /* the vault's reserved count after our last block */
    uint32_t block;              /* next block size */
    atomic_uint_fast64_t reserved_seen; /* last persisted reserved count seen (for info) */
    atomic_uint_fast64_t bytes_seen;    /* last persisted byte count seen (for info) */
    /* per-thread shares of the allowance (key.c km__ver_count), made at the first
     * count: a call takes one invocation from its thread's share, on a cache line
     * of its own; `used` then counts what was handed to the shares */
    _Atomic(struct km__vshare *) shares;
} km__ver;

typedef struct km__kobj {
    struct km_ctx *ctx;
    atomic_int refs;
    uint8_t id[16];
    char *name;
    km_key_type type;
    uint32_t usage, flags;
    char protection[32];
    int64_t created;
    uint32_t rotate_days, protect_days, process_days, grace_days;
    uint32_t min_process, min_protect; /* the version window (0: none) */
    char *policy_json;           /* the key's own policy, or NULL */
    uint32_t oaep_digest;        /* RSA: the RSA-OAEP digest, 256/384/512 (0 read as 256) */
    km__backend_inst *be;
    pthread_rwlock_t lock;       /* versions array and metadata */
    /* the data path's read lock on the same (key_state.c km__kobj_dp_rdlock): a
     * striped lock made at the first encrypt, decrypt or signature; a writer
     * takes k->lock, then this one (km__kobj_wrlock) */
    _Atomic(km__brlock *) dplock;
    km__ver **vers;              /* index = version - 1 */
    uint32_t nvers;
    uint32_t primary;            /* 0 = none */
    atomic_uint loaded_gen;      /* km__write_gen when last read */
    _Atomic int64_t checked_ms;  /* monotonic ms of the last read */
    atomic_int use_checked;      /* 1 once the first use checked usage/age rotation */
    int removed;                 /* key no longer in the vault */
    int session;                 /* an ephemeral key: never in the vault */
    /* from the vault policy at the last refresh */
    int policy_rc;               /* KM_OK, or KM_E_POLICY: the algorithm may not protect */
    char policy_msg[200];
    uint32_t ops_forbidden;      /* KM__POLICY_OP_* the key's effective policy forbids */
    uint64_t usage_limit;        /* invocations per version; KM__NO_LIMIT = none */
    uint64_t rotate_at;          /* rotate when the primary reached this; 0 = never */
    int replace_unusable;        /* rotation.replace_unusable_primary of its policy */
    /* the context principal's permissions on this key (acl.c), cached */
    atomic_uint acl_perms;
    atomic_uint acl_gen;         /* km__write_gen + 1 when read; 0 = never read */
    _Atomic int64_t acl_ms;      /* monotonic ms when read */
    struct km__kobj *hnext;      /* ctx cache chain */
    /* names the key had before a rename (km_key_name's pointers stay valid
     * while the object lives); freed with it */
    char **old_names;
    size_t nold_names;
} km__kobj;

struct km_key {
    km__kobj *k;
    unsigned fork_gen;
};


struct km__audit_entry_in;

/* A context's audit state (audit.c). Lock order: fmu, then the LMDB write
 * lock, then kmu; mu (the queue) is never held while a transaction begins. */
typedef struct km__audit_ctx {
    atomic_int level;                /* km_audit_level */
    pthread_mutex_t mu;              /* the data-path queue and the flusher's state */
    struct km__audit_entry_in *q;    /* the data-path entries queued (detail NULL) */
    size_t qn, qcap;
    struct km__audit_entry_in *spare; /* an empty queue for the next flush to swap in */
    size_t spare_cap;
    pthread_cond_t cv;               /* wakes the flusher */
    pthread_t thread;                /* the flusher, started at the first queued entry */
    int thread_on, stop, waiting;
    unsigned thread_gen;             /* km__fork_gen when it started */
    atomic_int failed;               /* the last flush's error, KM_OK when fine */
    pthread_mutex_t fmu;             /* serialises flushes (batches in queue order) */
    pthread_mutex_t kmu;             /* the MAC key and context, the sinks */
    km_secret *key;                  /* the audit MAC key, loaded on first use */
    km__mac *mac;                    /* keyed with it */
    uint8_t *buf;                    /* encoding buffer of append_entries */
    size_t bufcap;
    int syslog;
    int fd;                          /* JSON-lines sink, or -1 */
    uint64_t sink_failed;            /* the entry a sink failed at after its commit (0: none);
                                      * changes are refused until a sink is set again */
} km__audit_ctx;

struct km_ctx {
    atomic_int refs;
    atomic_int closed;
    unsigned fork_gen;
    km__store *env;              /* the open catalog store (store.h), shared by contexts on it */
    /* swapped by km_vault_rekey (under mu) while other threads may read them */
    km__sealer *_Atomic sealer;
    km_secret *_Atomic master;   /* the vault master key, secure memory */
    uint8_t vault_id[16];
    uint32_t flags;
    uint32_t refresh_ms;
    km_clock_fn clock;           /* the caller's: used only when the policy allows it */
    void *clock_arg;
    atomic_int clock_ok;         /* the vault policy's testing.caller_clock */
    _Atomic int64_t time_floor;  /* the latest audited time seen: time never goes below it */
    pthread_mutex_t mu;          /* backend instances */
    km__backend_inst *backends;
    pthread_rwlock_t policy_lock; /* the vault policy */
    km__policy *policy;
    char *policy_json;            /* the stored document, to notice changes */
    size_t policy_json_len;
    _Atomic int64_t policy_checked_ms;
    km__brlock cache_lock;       /* key object cache, by id (striped: read on every decrypt) */
    km__kobj **cache;            /* hash table of key objects by id */
    size_t cache_buckets, cache_count, cache_cursor, cache_max;
    /* who opened the vault: the owner (an owner passphrase slot), a
     * principal (its own slot), "shares" or "backend:<name>" */
    char principal_name[72];
    uint8_t principal_id[16];     /* zero unless a principal */
    int is_principal;
    /* km_ctx_delegate (km/sys/server.h): a server's context acting as the
     * principal, for the client `peer` ("uid:1000"), named in its audit entries */
    int delegated;
    char peer[64];
    _Atomic uint32_t roles;       /* KM_ROLE_* of a principal (re-read: roles_*) */
    int policy_required;          /* format >= KM__FORMAT_POLICY_STORED: a missing policy record is refused */
    atomic_uint roles_gen;        /* km__wtxn_gen() + 1 when last read; 0 = at open */
    atomic_llong roles_ms;        /* km__mono_ms() when last read */
    km_progress_fn progress;      /* km_set_progress */
    void *progress_arg;
    km__audit_ctx audit;
    /* km__audit_close, set by km_open: called when the last reference goes
     * (ctx.c calls nothing above it) */
    void (*audit_close)(struct km_ctx *ctx);
    /* client mode (src/api/remote.c, docs/KMD.md): a context opened on kmd
     * holds no vault; every public function runs there through remote_call
     * (KM__REMOTE below), and remote_close ends the connection with the last
     * reference. NULL for a vault of this process. */
    struct km__remote *remote;
    int (*remote_call)(struct km_ctx *ctx, uint32_t fn, ...);
    void (*remote_close)(struct km_ctx *ctx);
};

/* The first line of a public function: a context in client mode runs the
 * call in kmd (fn a KM__KC_* of kmip_ttlv.h, the arguments after the context
 * as the table's format says). KM__REMOTE_KEY for a function of a key
 * handle (a NULL key falls through to the local checks); KM__REMOTE_NO for
 * one that has no meaning through kmd: KM_E_UNSUPPORTED saying why. */
#define KM__REMOTE(ctx, ...)                                                   \
    do {                                                                       \
        struct km_ctx *km__rx_ = (ctx);                                        \
        if (km__rx_ != NULL && km__rx_->remote != NULL)                        \
            return km__rx_->remote_call(km__rx_, __VA_ARGS__);                 \
    } while (0)
#define KM__REMOTE_KEY(key, ...) KM__REMOTE((key) != NULL ? (key)->k->ctx : NULL, __VA_ARGS__)
#define KM__REMOTE_NO(ctx, fn, why)                                            \
    do {                                                                       \
        const struct km_ctx *km__rx_ = (ctx);                                  \
        if (km__rx_ != NULL && km__rx_->remote != NULL)                        \
            return km__err(KM_E_UNSUPPORTED, "%s: not served through kmd: %s", (fn), (why)); \
    } while (0)

/* wtxn.c: the one write path. Every change of the vault goes through here:
 * begin, then commit (the change's audit entry, the commit, the generation
 * bump) or abort. The audit entry goes to the sinks as it is appended, as it
 * always did (audit_append.c), so before the commit.
 *
 * km__wtxn_begin: a write transaction on the context's vault, in *out.
 * Errors: those of km__txn_begin (KM_E_FORK, KM_E_IO, KM_E_NOMEM). */
int km__wtxn_begin(struct km_ctx *ctx, km__txn **out);
/* Appends the audit entry of the change (op with key_id, version, detail;
 * result KM_OK) in t, commits, and after a successful commit bumps the write
 * generation so that every handle of this process re-reads what it cached.
 * Always consumes t (aborted when the entry cannot be appended). Errors: the
 * append's (KM_E_CORRUPT, KM_E_NOMEM, ...), the commit's (KM_E_FULL, KM_E_IO). */
int km__wtxn_commit(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                    uint32_t version, const char *detail);
/* km__wtxn_commit that also says whether the commit itself was tried (1)
 * or the entry failed first (0), for a caller that undoes work outside the
 * vault only when nothing can have been committed. */
int km__wtxn_commit_ex(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                       uint32_t version, const char *detail, int *committing);
/* The same for an event that changes nothing a handle caches (a refusal, a
 * backup, failed authentications): the entry carries `result`, and the
 * generation is not bumped. */
int km__wtxn_commit_event(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                          uint32_t version, int result, const char *detail);
/* Commits t whose audit entries the caller appended itself (a batch of
 * data-path entries, a rekey's entry under the new sealer) or that needs none
 * (usage counters); bumps the generation when `changed`. Always consumes t.
 * Errors: KM_E_FULL, KM_E_IO. */
int km__wtxn_commit_plain(km__txn *t, int changed);
/* Aborts t (NULL accepted). */
void km__wtxn_abort(km__txn *t);
/* After a change made outside a km__wtxn transaction (rekey, compaction):
 * bumps the generation. */
void km__wtxn_changed(void);
/* The write generation: changes after every committed change of any context
 * of this process, and after every change of another process that the
 * store heard of (km__store_changes, store.h). */
extern atomic_uint km__wtxn_generation;   /* written by wtxn.c only */
static inline unsigned km__wtxn_gen(void)
{
    /* acquire: what the writer committed before bumping is seen after;
     * plus the changes of other processes a store heard of (etcd's watch) */
    return atomic_load_explicit(&km__wtxn_generation, memory_order_acquire)
           + atomic_load_explicit(&km__store_changes, memory_order_acquire);
}

/* ctx.c */
int64_t km__now(const struct km_ctx *ctx);
/* Raises the context's time floor to t (an audited time): km__now never
 * returns less from then on. */
void km__now_floor(struct km_ctx *ctx, int64_t t);
/* km__now after raising the floor to the vault's last audited time (read
 * from the audit head in t): for time-driven decisions. */
int64_t km__now_txn(struct km_ctx *ctx, km__txn *t);
int64_t km__mono_ms(void);
int km__ctx_check(struct km_ctx *ctx);
/* A zeroed context with its locks initialised, one reference; NULL when out
 * of memory. km__ctx_ready finishes one whose store, sealer, master key and
 * policy are in place (the principal's roles, the audit state); a context
 * that never became ready is freed with km__ctx_discard (NULL accepted). */
struct km_ctx *km__ctx_alloc(void);
int km__ctx_ready(struct km_ctx *ctx);
void km__ctx_discard(struct km_ctx *ctx);
int km__backend_get(struct km_ctx *ctx, const char *name, km__backend_inst **out);
/* A registered backend opened with `config` seals / unseals a master key for
 * a device keyslot; km__backend_slot_unseal is what km_open hands to the
 * store (as its km__slot_unsealer) to open such a slot. */
int km__backend_slot_seal(const char *name, const char *config, const km_secret *master,
                          km_secret **blob);
int km__backend_slot_unseal(const char *name, const char *config, const uint8_t *blob,
                            size_t blob_len, km_secret **master);
/* km__backend_slot_seal with the configuration stored in the vault for that
 * backend (km_vault_backend_set), or none. */
int km__backend_slot_seal_for(struct km_ctx *ctx, const char *name, const km_secret *master,
                              km_secret **blob);
/* The unsealer a keyslot removal checks the device slots it leaves with
 * (km__slot_remove_owner, km__slot_remove_principal): each device opened
 * with the configuration stored in the vault for its backend, or none. */
void km__ctx_slot_check(struct km_ctx *ctx, km__slot_unsealer *out);
void km__ctx_ref(struct km_ctx *ctx);
void km__ctx_unref(struct km_ctx *ctx);

/* ctx.c: the policy. Acquire gives the current policy under a read lock. */
const km__policy *km__policy_acquire(struct km_ctx *ctx);
void km__policy_release(struct km_ctx *ctx);
/* ctx.c: loads the stored policy, or installs the default when none is
 * stored (*none_stored = 1; may be NULL). KM_E_CORRUPT (does not parse), the
 * vault's errors. */
int km__ctx_policy_load(struct km_ctx *ctx, int *none_stored);
/* ctx.c: registers the built-in backends (once). */
void km__backends_builtin(void);
/* Re-reads the stored policy when another process may have changed it. */
int km__ctx_policy_refresh(struct km_ctx *ctx, int force);

/* ctx.c: checks a passphrase (1..1024 bytes) and a scrypt cost (0 = the
 * default, else KM_KDF_COST_MIN..MAX), naming `fn` in the error. */
int km__pass_args(const char *fn, const uint8_t *pass, size_t pass_len, uint32_t *kdf_cost);

/* ctx.c: reports progress of long work when the caller asked for it. */
void km__progress(struct km_ctx *ctx, const char *what, uint64_t done, uint64_t total);

/* audit_append.c: an entry to append (state changes carry a detail). */
typedef struct km__audit_entry_in {
    int64_t time;
    int op, result, has_key;
    uint32_t version;
    uint8_t key_id[16];
    const char *detail;   /* NULL: a data-path entry (a batch record's, docs/FORMATS.md) */
} km__audit_entry_in;
/* Appends `count` entries as one sealed record in the write transaction t,
 * sealed with s, and sends each to the sinks. Call with ctx->audit.kmu held.
 * Errors: KM_E_CORRUPT (an entry beyond the stored head), KM_E_NOMEM, KM_E_IO
 * (a sink), the vault's. */
int km__audit_append_entries(struct km_ctx *ctx, km__txn *t, const km__sealer *s,
                             const km__audit_entry_in *p, size_t count);
/* audit_append.c, audit_log.c */
/* Appends a state change's entry in the caller's write transaction. */
int km__audit_append(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                     uint32_t version, int result, const char *detail);
/* The same with an explicit sealer (a rekey's new one). */
int km__audit_append_sealed(struct km_ctx *ctx, km__txn *t, const km__sealer *s, int op,
                            const uint8_t *key_id, uint32_t version, int result,
                            const char *detail);
/* An event outside a state change (a denied call), in its own transaction. */
int km__audit_event(struct km_ctx *ctx, int op, const uint8_t *key_id, uint32_t version,
                    int result, const char *detail);
/* A data-path call (queued when the level is "every"). */
int km__audit_data(struct km_ctx *ctx, int op, const uint8_t *key_id, uint32_t version,
                   int result);
int km__audit_open(struct km_ctx *ctx);
void km__audit_close(struct km_ctx *ctx);
/* Writes the queued data-path entries now (km_audit_flush without checks).
 * Errors: the vault's; the batch stays queued. */
int km__audit_flush(struct km_ctx *ctx);
/* The meta record of the data-path level (one byte, km_audit_level). */
#define KM__AUDIT_LEVEL_KEY "audit-level"
#define KM__AUDIT_ENTRY_MAX 4096
#define KM__AUDIT_DETAIL_MAX 200
/* The stored head (0 and zeros when the log is empty). KM_E_CORRUPT. */
int km__audit_head_read(const km__sealer *s, km__txn *t, km_audit_head *h);
/* The same, and the time of the last entry in *last (0 for an empty log or
 * an older vault's head, which kept no time). */
int km__audit_head_time(const km__sealer *s, km__txn *t, km_audit_head *h, int64_t *last);
/* Loads the audit MAC key into the context (creating it in a write t).
 * KM_E_NOTFOUND when no entry was ever written, KM_E_CORRUPT. */
int km__audit_key_ready(struct km_ctx *ctx, km__txn *t);
/* Decodes one entry and checks its own MAC with m; prev gets the hash it
 * chains to; pbuf (128) and dbuf (KM__AUDIT_DETAIL_MAX + 1) hold its
 * strings. KM_E_INTEGRITY. */
int km__audit_entry_decode(km__mac *m, const uint8_t *b, size_t n, km_audit_entry *e,
                           uint8_t prev[32], char *pbuf, char *dbuf);
/* The catalog fields of an entry already checked by km__audit_entry_decode:
 * its write log (km__txn_writes' items; NULL, 0 when none) and its
 * checkpoint digest (km__catalog_digest; NULL when none). KM_E_INTEGRITY. */
int km__audit_entry_catalog(const uint8_t *b, size_t n, const uint8_t **writes,
                            size_t *writes_len, const uint8_t **checkpoint);
/* Requests a checkpoint in the entry of write transaction t (a change that
 * rewrites every record: rekey, master-key rotation). */
int km__audit_checkpoint(struct km_ctx *ctx, km__txn *t);
/* Compares the catalog as t sees it with the write fields of the entries
 * (fed in order by km__audit_chain_entry from a km__audit_chain_new):
 * KM_E_INTEGRITY naming the first record the chain does not explain. */
typedef struct km__audit_chain km__audit_chain;
int km__audit_chain_new(km__audit_chain **out);
int km__audit_chain_entry(km__audit_chain *c, uint64_t seq, const uint8_t *b, size_t n);
int km__audit_chain_check(km__audit_chain *c, km__txn *t, int required, uint64_t *bad_seq);
void km__audit_chain_free(km__audit_chain *c);
/* Calls fn for each stored entry from sequence `from` (which must begin a
 * record; 0 = 1) to the head in t, each decoded and its MAC checked; fn
 * returns 0 to go on, > 0 to stop (KM_OK), < 0 an error returned as is.
 * KM_E_INTEGRITY for a missing, unopenable or malformed entry. */
typedef int (*km__audit_scan_fn)(const km_audit_entry *e, void *arg);
/* The walk under km__audit_scan and km_audit_verify: the records from
 * sequence `from` (a record's first) while the next sequence is <= `to`,
 * every entry of each decoded and its MAC (a layout-2 record's, once)
 * checked with m, to fn(item, arg): 0 goes on, > 0 stops (returns 1), < 0 is
 * returned as is. An item: the entry (its strings valid during the call),
 * the hash it chains to, and for a layout-1 entry its bytes (for
 * km__audit_entry_catalog; NULL for a batch entry, which has no catalog
 * field). wk: the sequence after the last entry given (or the one fn
 * stopped at), the records read, and the sequence a bad entry or record
 * names (0: none). KM_E_INTEGRITY for a missing, unopenable, malformed or
 * empty record, an entry that fails its MAC or is out of sequence. */
typedef struct km__audit_item {
    km_audit_entry e;
    uint8_t prev[32];
    const uint8_t *raw;
    size_t raw_len;
} km__audit_item;
typedef int (*km__audit_raw_fn)(const km__audit_item *it, void *arg);
typedef struct km__audit_walked {
    uint64_t next, records, bad;
} km__audit_walked;
int km__audit_records(struct km_ctx *ctx, km__txn *t, km__mac *m, uint64_t from, uint64_t to,
                      km__audit_raw_fn fn, void *arg, km__audit_walked *wk);
int km__audit_scan(struct km_ctx *ctx, km__txn *t, uint64_t from, km__audit_scan_fn fn,
                   void *arg);

/* access.c: the access records (layout at the top of access.c). */
#define KM__PFX_PRINCIPAL "principal/"
#define KM__PFX_GRANT "grant/"
#define KM__PFX_OWNER "owner/"
enum { KM__P_NAME = 1, KM__P_ROLES = 2, KM__P_CREATED = 3 };
/* The record key pfx || a[16] || b[16] (a, b may be NULL) in out (64 bytes);
 * returns its length. */
size_t km__acl_rkey(uint8_t *out, const char *pfx, const uint8_t *a, const uint8_t *b);
/* The grantee id of a role: 15 bytes 0xff, then the role bit. */
void km__acl_role_gid(uint32_t role, uint8_t gid[16]);
/* A search of the principal records: by name, by id, or every one to fn. */
typedef struct km__pfind {
    const char *name;     /* find by name, or */
    const uint8_t *pid;   /* by id */
    int found;
    uint8_t id[16];
    uint32_t roles;
    int64_t created;
    char pname[72];
    km_principal_fn fn;   /* or list */
    void *arg;
} km__pfind;
/* Runs f over the principal records in t. KM_E_CORRUPT on a malformed one,
 * or what f->fn returned. */
int km__principal_find(struct km_ctx *ctx, km__txn *t, km__pfind *f);
/* The permissions of the context's principal on key kid, read now.
 * Errors: KM_E_CORRUPT, the vault's. */
int km__acl_perms_read(struct km_ctx *ctx, const uint8_t kid[16], uint32_t *perms);
/* access.c: KM_OK, or KM_E_DENIED (audited) naming the missing permission. k may
 * be NULL for operations on the vault. */
int km__acl_check(struct km_ctx *ctx, int op, const km__kobj *k);
/* Reads the opening principal's roles (KM_E_AUTH when it was removed). */
int km__acl_load(struct km_ctx *ctx);
/* The longest refresh interval a context may have (ms): how long another
 * process's revocation, grant or role change may go unseen in an open handle. */
#define KM__REFRESH_MAX_MS 5000u
/* Records the context's principal as the owner of a new key, in t. */
int km__acl_set_owner(struct km_ctx *ctx, km__txn *t, const uint8_t kid[16]);

/* approvals.c: dual control. Consumes an approved request of the context's
 * principal for op (KM_REQ_*) with these exact params in t, or returns
 * KM_E_DENIED saying how many approvals the op needs. KM_OK at once when the
 * policy asks for none. _own runs it in a transaction of its own. */
int km__quorum_consume(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                       const uint8_t *params, size_t params_len);
int km__quorum_consume_own(struct km_ctx *ctx, int op, const uint8_t *key_id,
                           const uint8_t *params, size_t params_len);
/* The same check as km__quorum_consume_own, nothing consumed (the request is
 * then spent by km__quorum_consume in the transaction of the change). */
int km__quorum_check_own(struct km_ctx *ctx, int op, const uint8_t *key_id,
                         const uint8_t *params, size_t params_len);
/* The approvals the vault policy asks for op (KM_REQ_*); UINT32_MAX for an
 * unknown op. */
uint32_t km__quorum_needed(struct km_ctx *ctx, int op);
/* As km__quorum_needed for an operation on key k: the larger of the vault's
 * count and the one in k's own policy. */
uint32_t km__quorum_needed_key(struct km_ctx *ctx, int op, const km__kobj *k);
/* km__quorum_consume for an operation on key k, with km__quorum_needed_key. */
int km__quorum_consume_key(struct km_ctx *ctx, km__txn *t, int op, const km__kobj *k,
                           const uint8_t *params, size_t params_len);
/* approvals.c: the policy name of a request op ("destroy"), "?" if unknown. */
const char *km__quorum_op_name(int op);
/* The request record `id` in t. KM_E_NOTFOUND, KM_E_CORRUPT. */
int km__request_get(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], km__request *r);
/* Writes the request record `id` in t. KM_E_INTERNAL (too large), the vault's. */
int km__request_put(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const km__request *r);
/* The SHA-256 that binds a request to the exact parameters of its call. */
int km__request_params_hash(int op, const uint8_t *p, size_t n, uint8_t out[32]);
/* What a request for op on key_name (NULL for vault operations) with
 * params p does, every parameter spelled out for its custodians (material
 * and public keys as their SHA-256), into out (cap bytes, truncated).
 * KM_E_INVALID for malformed principal-change parameters. */
int km__request_describe(int op, const char *key_name, const uint8_t *p, size_t n, char *out,
                         size_t cap);
/* A 16-byte id (a request's, a key's) as 32 lowercase hex digits. */
void km__id_hex(const uint8_t id[16], char out[33]);

/* key.c: km_key_import. Material that enters the vault is under the
 * policy's import-raw dual control, the request bound to `req_params` (a
 * wrapped key's blob) or, when that is NULL, to the material itself;
 * `reference` = 1 for a reference to a key that stays on its device (no
 * material enters, no dual control). */
int km__key_import(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                   km_material_format format, const uint8_t *material, size_t material_len,
                   uint32_t flags, const km_key_options *opts, int reference,
                   const uint8_t *req_params, size_t req_params_len);

/* key_state.c: revokes (reason affiliation changed: deactivated) every
 * ACTIVE or SUSPENDED version of key `id` in the caller's write transaction
 * t, each with its audit entry there; *count (may be NULL) grows by the
 * versions revoked. A key that is gone: nothing. */
int km__key_revoke_all_in(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], size_t *count);

/* key_state.c: one transition of the lifecycle state machine. */
typedef struct km__lc_arg {
    km__lc_op op;
    km_revoke_reason reason;
    int64_t date;        /* compromise date, activation date (0 = now), or destroy-after */
    uint32_t grace_days; /* KM__LC_SCHEDULE_DESTROY: for the dual-control request */
} km__lc_arg;
/* Applies a->op to one version in its own write transaction (the rules
 * decide whether it is legal); on KM__LC_DESTROY also removes the material
 * (backend first, then the record); KM__LC_SCHEDULE_DESTROY consumes an
 * approved dual-control request. Refreshes k. Errors: KM_E_NOTFOUND (no such
 * version), KM_E_STATE (not allowed from its state), KM_E_DENIED (approvals
 * missing), the backend's and the vault's errors. */
int km__key_transition(km__kobj *k, uint32_t version, const km__lc_arg *a);
/* The verb of a lifecycle operation for messages ("schedule destruction of"). */
const char *km__lc_op_verb(int op);

/* What km_maintain did (key_state.c fills it, lifecycle.c reads it). */
struct km_maintain_report {
    struct km__report_entry {
        char *name;
        uint32_t version;
        const char *action;
    } *e;
    size_t n, cap;
};
/* Adds an entry (best effort: dropped when out of memory); r may be NULL. */
void km__report_add(struct km_maintain_report *r, const char *name, uint32_t version,
                    const char *action);

/* key.c */
/* Finds (cache) or loads the key object by id; returns a new reference. */
int km__kobj_get(struct km_ctx *ctx, const uint8_t id[16], km__kobj **out);
void km__kobj_unref(km__kobj *k);
/* Re-reads the key's metadata when stale. Takes and releases the write lock. */
int km__kobj_refresh(km__kobj *k, int force);
/* key_state.c: checks the handle (fork, closed ctx) and refreshes when
 * stale, applying due time-driven transitions on the way. KM_E_FORK,
 * KM_E_STATE (closed), the refresh's errors. */
int km__key_use(km_key *key, km__kobj **out);
/* The backend object of a version, loaded on first use. Call under rdlock. */
int km__ver_obj(km__kobj *k, km__ver *v, void **out);
/* Accounts one protect use of `bytes`; reserves a block in the vault when due. */
int km__ver_count(km__kobj *k, km__ver *v, uint64_t bytes, uint64_t limit);
/* The data path's read lock on k (for encrypt, decrypt, sign, MAC): its
 * thread's stripe of k->dplock, made on first use; it excludes writers as a
 * read lock on k->lock does. Returns what km__kobj_dp_unlock takes. */
unsigned km__kobj_dp_rdlock(km__kobj *k);
void km__kobj_dp_unlock(km__kobj *k, unsigned token);
/* Write-locks k: k->lock, then every stripe of its data-path lock. */
void km__kobj_wrlock(km__kobj *k);
void km__kobj_wrunlock(km__kobj *k);
/* Bytes processed by this process under v and not yet written to the vault. */
uint64_t km__ver_bytes_pending(km__ver *v);
/* Drops the cache entries of a context (at close). */
void km__cache_clear(struct km_ctx *ctx);
/* Data-path lookup: on a hit returns the object with the cache read lock held
 * (release with km__cache_unlock), no reference taken; NULL on a miss. */
km__kobj *km__cache_peek(struct km_ctx *ctx, const uint8_t id[16]);
void km__cache_unlock(struct km_ctx *ctx);
void km__kobj_release_counters(km__kobj *k);

/* key.c: the ids of the vault's keys, gathered by km_key_list with
 * km__key_id_collect (which stops the listing when out of memory). */
typedef struct km__id_list {
    uint8_t (*ids)[16];
    size_t n, cap;
} km__id_list;
int km__key_id_collect(const char *name, const uint8_t id[16], km_key_type type, void *arg);

/* ctx.c: the backend registry and configuration records. */
int km__backend_name_ok(const char *name);        /* [a-z0-9_-]{1,31} */
int km__backend_known(const char *name);          /* built in or registered */
void km__backend_config_key(const char *name, uint8_t *out, size_t *len);
/* ctx.c: the vault policy record put in t; installing a parsed policy (p is
 * owned by the context afterwards) and the document it came from. */
int km__ctx_policy_put(struct km_ctx *ctx, km__txn *t, const char *json, size_t len);
void km__ctx_policy_install(struct km_ctx *ctx, km__policy *p, const char *json, size_t len);

/* key.c: adds a version with fresh material and makes it the primary. */
int km__kobj_rotate(km__kobj *k, uint32_t *new_version);
/* key.c: version records */
void km__version_init(km__ver *v, const km__kobj *k, uint32_t version, int64_t now,
                      int64_t activate_at);
void km__vkey(uint8_t out[20], const uint8_t id[16], uint32_t version);
int km__vmeta_encode(const km__ver *v, uint8_t *buf, size_t cap, size_t *len);
int km__vmeta_decode(const uint8_t *b, size_t n, km__ver *v);
/* key.c: the version list of a key record (tag 19, vault format 5). Calls
 * fn(version, record, length, arg) for each version of key record rec[0..n)
 * in order (fn NULL: only checks); KM_E_CORRUPT when the list is missing,
 * malformed or holds another number of versions than the record's count. */
typedef int (*km__vrec_fn)(uint32_t version, const uint8_t *b, size_t n, void *arg);
int km__keyrec_vers(const uint8_t *rec, size_t n, km__vrec_fn fn, void *arg);
/* Version `version` of key record rec decoded into v (KM_E_NOTFOUND). */
int km__keyrec_ver(const uint8_t *rec, size_t n, uint32_t version, km__ver *v);
/* Writes key id's record rec[0..n) back in t with version v->version's
 * entry replaced by v, or v appended (and the count raised) when it is the
 * count + 1. */
int km__keyrec_ver_put(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const uint8_t *rec,
                       size_t n, const km__ver *v);
/* key_meta.c: km__rec_del that takes a missing record as deleted. */
int km__rec_del_opt(km__txn *t, km__table tbl, const uint8_t *key, size_t len);
/* key_format.c: moves a vault of format 4 to 5 (the version records into
 * the key records), in audited batches that each leave a vault that opens;
 * resumes an interrupted move. Called by km_open. */
int km__vault_format5(struct km_ctx *ctx);

/* key.c: the facts of a version the lifecycle rules decide on. */
static inline km__vstate km__ver_vstate(const km__ver *v)
{
    km__vstate s;
    s.version = v->version;
    s.state = v->state;
    s.prev_state = v->prev_state;
    s.activated = v->activated;
    s.protect_stop = v->protect_stop;
    s.process_stop = v->process_stop;
    s.destroy_after = v->destroy_after;
    s.below_min_protect = v->below_min_protect;
    s.below_min_process = v->below_min_process;
    return s;
}
/* The lifecycle rules (rules_lifecycle.c) on a version. */
static inline int km__may_protect(const km__ver *v, int64_t now)
{
    km__vstate s = km__ver_vstate(v);
    return km__rules_may_protect(&s, now);
}
static inline int km__may_process(const km__ver *v, uint32_t flags, int64_t now)
{
    km__vstate s = km__ver_vstate(v);
    return km__rules_may_process(&s, flags, now);
}
/* key.c: checks a key name (1..KM_KEY_NAME_MAX bytes, no control
 * character; `fn` names the caller in the error) and gives its length.
 * km__key_name_reserved: 1 for libkm's own names ("km:..."). */
int km__key_name_check(const char *fn, const char *name, size_t *len);
int km__key_name_reserved(const char *name);
/* key.c: the key id a name or alias points at, in t (KM_E_NOTFOUND). */
int km__key_lookup_name(struct km_ctx *ctx, km__txn *t, const char *name, size_t len,
                        uint8_t id[16]);

/* key_meta.c: a key's identity and metadata after creation (tags 13-15 of
 * the key record). Each change is one write transaction, audited as
 * key.meta; names and aliases share the name index. */
int km__key_rename(km__kobj *k, const char *new_name);
int km__key_alias_add(km__kobj *k, const char *alias, int move);
int km__key_alias_remove(struct km_ctx *ctx, const char *alias);
int km__key_describe(km__kobj *k, const char *text);
int km__key_tag_set(km__kobj *k, const char *tag, const char *value);
/* The stored metadata of a key record, decoded (strings malloc'ed). */
typedef struct km__keymeta {
    char *description;                       /* NULL when none */
    size_t naliases, ntags;
    char *aliases[KM_KEY_ALIASES_MAX];
    char *tag_keys[KM_KEY_TAGS_MAX];
    char *tag_values[KM_KEY_TAGS_MAX];
} km__keymeta;
/* Reads the metadata of key k now. KM_E_CORRUPT, KM_E_NOMEM, the vault's. */
int km__key_meta_read(km__kobj *k, km__keymeta *m);
void km__keymeta_free(km__keymeta *m);
/* 1 when `name` is the name or an alias in the key record rec[0..n). */
int km__keyrec_has_name(const uint8_t *rec, size_t n, const char *name);
/* km_key_trim (km/key.h) after the API's argument checks (key_state.c). */
int km__key_trim(km__kobj *k, uint32_t grace_days, uint32_t *count);
/* key_meta.c: the name of a key's owner ("owner" for the vault owner), and
 * its grants as the context's principal may see them (km_key_grants). */
int km__key_owner_name(struct km_ctx *ctx, const uint8_t kid[16], char *out, size_t cap);
int km__key_grants(struct km_ctx *ctx, const uint8_t kid[16], km_grant_fn fn, void *arg);
/* km_key_purge (km/key.h) after the API's checks (key_meta.c). */
int km__key_purge(km__kobj *k);
/* km_key_set (km/key.h) after the API's argument checks. */
int km__key_settings(km__kobj *k, const km_key_settings *s);
/* km_key_list_filtered (km/key.h). */
int km__key_list_filtered(struct km_ctx *ctx, const km_key_filter *f, km_key_list_fn fn,
                          void *arg);
/* key.c: km_key_create for libkm's own names ("km:..."), which the public
 * km_key_create and km_key_import refuse (the vault's BYOK wrapping key). */
int km__key_create_reserved(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                            const km_key_options *opts);
/* key.c: the checks before every protect operation (encrypt, sign, MAC,
 * derive, agree), under the key's read lock: the key's usage allows `usage`
 * (`what` names it in the error), the vault policy lets the algorithm
 * protect, the key has a primary version and it may protect now (and it is
 * `version` when that is not 0). *out = the primary, set also when it may
 * not protect now (the refusal's audit entry names it). Errors: KM_E_USAGE,
 * KM_E_POLICY, KM_E_STATE. */
int km__key_protect_check(km__kobj *k, uint32_t usage, const char *what, uint32_t version,
                          km__ver **out);
/* key.c: drops the loaded backend object of a destroyed version. */
void km__ver_unload(km__kobj *k, uint32_t version);
/* key_state.c: 1 when a time- or usage-driven transition is due for the key;
 * lazy: as seen on use (a key without a usable primary rotates only under
 * rotation.replace_unusable_primary). */
int km__kobj_due(km__kobj *k, int64_t now, int lazy);
/* key_state.c: applies what is due for one key; adds to the report (may be
 * NULL). lazy: on use, as km__kobj_due; a rotation due while the primary was
 * still usable at the start happens even if that primary just stopped. */
int km__kobj_maintain(km__kobj *k, struct km_maintain_report *r, int lazy);
/* key.c: the primary: newest version that may protect now; 0 if none. */
uint32_t km__primary(const km__kobj *k, int64_t now);

#endif /* KM_CORE_H */
