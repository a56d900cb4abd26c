/**
 * @file km/vault.h
 * @brief Opening and closing a vault (a libkm context).
 *
 * A km_ctx is one open vault. The default and only built-in store is an LMDB
 * environment directory (URI `lmdb:/path/to/dir`, or a bare path). Its master
 * key lives only in keyslots; a passphrase slot opens it.
 */
#ifndef KM_VAULT_H
#define KM_VAULT_H

#include "common.h"
#include "secret.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An open vault. Opaque; one may be shared by many threads. */
typedef struct km_ctx km_ctx;

/**
 * A clock: returns the current time in seconds since the Unix epoch (UTC).
 * Tests inject one to move time; NULL means the system clock. A caller's
 * clock is used only when the vault policy allows a test clock
 * (`"testing": {"caller_clock": true}`, docs/POLICY.md); otherwise the system
 * clock is. Either way libkm's time never goes back past the vault's last
 * audited time.
 */
typedef int64_t (*km_clock_fn)(void *arg);

/** km_open_options::flags */
#define KM_OPEN_CREATE        0x1u /**< create the vault if the directory holds none */
#define KM_OPEN_EXCL          0x2u /**< with CREATE: fail with KM_E_EXISTS if one exists */
#define KM_OPEN_STRICT_REFRESH 0x4u /**< re-read key state from the vault on every use */
#define KM_OPEN_FIPS          0x8u /**< with CREATE: a new vault gets the FIPS 140-3 policy profile */

#define KM_OPEN_OPTIONS_VERSION 4
/** Default scrypt cost (log2 N) of a new passphrase slot: N = 2^17, r = 8, p = 1. */
#define KM_KDF_COST_DEFAULT 17
/** Smallest scrypt cost accepted (log2 N). */
#define KM_KDF_COST_MIN 14
/** Largest scrypt cost accepted (log2 N). */
#define KM_KDF_COST_MAX 22

/** Options of km_open(). Initialise with KM_OPEN_OPTIONS_INIT, then set fields. */
typedef struct km_open_options {
    uint32_t version;           /**< KM_OPEN_OPTIONS_VERSION */
    uint32_t flags;             /**< KM_OPEN_* */
    const uint8_t *passphrase;  /**< passphrase bytes (copied; never kept) */
    size_t passphrase_len;      /**< 1 to 1024 bytes */
    uint32_t kdf_cost;          /**< log2 scrypt N for a created slot; 0 = KM_KDF_COST_DEFAULT */
    uint32_t refresh_ms;        /**< how stale another process's change may look in open handles; 0 = 100 ms; capped at 5000 ms */
    uint64_t map_size;          /**< LMDB map size in bytes; 0 = 1 GiB (or the vault's current size) */
    km_clock_fn clock;          /**< NULL = system clock; used only where the policy allows a test clock (km_clock_fn) */
    void *clock_arg;            /**< passed to clock */
    /* ---- version 2 ---- */
    uint32_t key_cache_max;     /**< key objects kept loaded before unused ones are dropped; 0 = 65536 */
    /* ---- version 3 ---- */
    /**
     * Open as this principal (km/acl.h): `passphrase` must open that
     * principal's own keyslot, which proves its credential. NULL opens with
     * an owner passphrase slot (the one the vault was created with).
     */
    const char *principal;
    /**
     * With `passphrase` NULL: open with a keyslot of this backend ("tpm2",
     * "pkcs11"; see km_vault_add_backend_slot), the backend being opened with
     * `slot_config` (a TCTI; a module, token and PIN).
     */
    const char *slot_backend;
    const char *slot_config;    /**< configuration for slot_backend; may be NULL */
    /**
     * With `passphrase` and `slot_backend` NULL: open with the custodians'
     * shares of a Shamir keyslot (km_vault_add_shares), each a NUL-terminated
     * "kms1:..." text; at least that slot's M distinct shares.
     */
    const char *const *shares;
    size_t share_count;         /**< number of entries in `shares` */
    /* ---- version 4 ---- */
    /**
     * An `etcd://` vault over TLS (https to every member): the PEM file of
     * the CA that signed the members' certificates. NULL: plain http.
     */
    const char *tls_ca;
    const char *tls_cert;       /**< the client certificate (PEM file) for etcd's --client-cert-auth; needs tls_ca */
    const char *tls_key;        /**< its private key (PEM file) */
} km_open_options;

#define KM_OPEN_OPTIONS_INIT \
    { KM_OPEN_OPTIONS_VERSION, 0, NULL, 0, 0, 0, 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, \
      NULL, NULL, NULL }

/** Most shares a Shamir keyslot can be split into. */
#define KM_SHARES_MAX 32

/**
 * Opens (or with KM_OPEN_CREATE creates) a vault.
 *
 * @param[out] out   set to the new context, or NULL on error; close with km_close().
 * @param[in]  uri   `lmdb:/path/dir` or a path to the vault directory (created
 *                   with mode 0700 when KM_OPEN_CREATE is given and it is absent);
 *                   or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, a vault kept
 *                   under PREFIX in an etcd v3 cluster (docs/ETCD.md; TLS with
 *                   the version-4 options);
 *                   or client mode (docs/KMD.md): `kmd:/path/to/kmd.sock`
 *                   (kmd's Unix socket) or `kmip://HOST:PORT` (kmd's mutual
 *                   TLS listener: `tls_ca`, `tls_cert` and `tls_key` of the
 *                   version-4 options are required). The context holds no
 *                   vault: every function runs in kmd as the principal kmd
 *                   maps the connection to (the peer's uid, the client
 *                   certificate). `opts` may be NULL; a passphrase, keyslot
 *                   backend or shares are refused (KM_E_INVALID: nothing is
 *                   sent), KM_OPEN_CREATE (KM_E_UNSUPPORTED), and a
 *                   `principal` other than kmd's mapping (KM_E_DENIED).
 *                   Functions that administer the vault file (keyslots,
 *                   rekey, compaction, backup, copy, backend configuration),
 *                   audit sinks, progress callbacks, session keys and
 *                   pkcs11 card links return KM_E_UNSUPPORTED saying why. A
 *                   call that gets no answer within 60 s
 *                   (`$KM_KMD_TIMEOUT_MS`), or whose connection breaks,
 *                   returns KM_E_IO; the next call connects again.
 * @param[in]  opts  options; carry a passphrase (an owner's, or with
 *                   `principal` a principal's), or a keyslot backend, or
 *                   Shamir shares. Creating a vault needs an owner passphrase.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL/empty argument, an unknown URI scheme, a bad option;
 *         KM_E_NOTFOUND when no vault exists and KM_OPEN_CREATE is not given;
 *         KM_E_EXISTS with KM_OPEN_EXCL when a vault exists;
 *         KM_E_AUTH when no keyslot opens with the passphrase (or the
 *         backend, or the shares: a wrong or altered share is named);
 *         KM_E_BACKEND when the keyslot's device fails (its native code in
 *         km_error_last());
 *         KM_E_CORRUPT when the vault's records fail to open;
 *         KM_E_UNSUPPORTED for a vault written by a newer format version;
 *         KM_E_IO for a storage error (native LMDB code in km_error_last()),
 *         or no etcd member reachable with a quorum, or kmd not reachable.
 *
 * Opening the same directory twice in one process shares one LMDB environment.
 * Thread-safe.
 */
KM_EXTERN int km_open(km_ctx **out, const char *uri, const km_open_options *opts) KM_WUR;

/**
 * Closes a vault: wipes its master key and derived keys. Accepts NULL.
 *
 * Every km_key opened from it must have been freed first; a key handle
 * still open keeps the vault's memory alive until it is freed, but any use
 * of it fails with KM_E_STATE.
 */
KM_EXTERN void km_close(km_ctx *ctx);

/**
 * Adds a passphrase keyslot so that `passphrase` opens the vault too (as the
 * owner).
 * Under dual control when the vault policy's `principal-change` asks for
 * approvals (km/quorum.h: a KM_REQ_PRINCIPAL_CHANGE request with params "keyslot-add:passphrase",
 * consumed in the same transaction).
 *
 * @return KM_OK; KM_E_INVALID for bad arguments; KM_E_DENIED (the right, or
 *         the approvals, missing); KM_E_IO on storage errors.
 */
KM_EXTERN int km_vault_add_passphrase(km_ctx *ctx, const uint8_t *passphrase,
                                      size_t passphrase_len, uint32_t kdf_cost);

/**
 * Adds a keyslot that a backend holds: the master key sealed to a TPM
 * ("tpm2", optionally bound to PCRs) or wrapped by a non-extractable HSM key
 * ("pkcs11"), so that the vault opens with that device and no passphrase
 * (km_open_options::slot_backend). `config` is the backend's configuration
 * for the slot (see that backend's documentation); a PIN in it is used, never
 * stored. Audited.
 * Under dual control when the vault policy's `principal-change` asks for
 * approvals (km/quorum.h: a KM_REQ_PRINCIPAL_CHANGE request with params "keyslot-add:backend:NAME",
 * consumed in the same transaction).
 *
 * @return KM_OK; KM_E_INVALID; KM_E_UNSUPPORTED (no such backend, or it
 *         cannot hold keyslots); KM_E_BACKEND / KM_E_AUTH from the device;
 *         KM_E_DENIED without the right; KM_E_IO.
 * kmctl: keyslot add kmip, keyslot add tpm2.
 */
KM_EXTERN int km_vault_add_backend_slot(km_ctx *ctx, const char *backend, const char *config);

/**
 * Adds a Shamir M-of-N keyslot: a fresh secret is split into `n` shares for
 * custodians, any `m` of which open the vault (km_open_options::shares),
 * while m - 1 reveal nothing. Each share is returned as text "kms1:..." in
 * secure memory: `shares[i]` for i < n, to be handed to one custodian each
 * and freed with km_secret_free(). The vault stores only a hash of each share,
 * so an altered or foreign share is detected and named at open, never
 * combined into a wrong key. Audited.
 *
 * To leave the shares as the only way in, remove the owner passphrase slots
 * with km_vault_remove_passphrases() after checking that the shares open the
 * vault. (km_vault_rekey() replaces the shares' keyslot too: see there.)

 * Under dual control when the vault policy's `principal-change` asks for
 * approvals (km/quorum.h: a KM_REQ_PRINCIPAL_CHANGE request with params "keyslot-add:shares:M-of-N",
 * consumed in the same transaction).
 *
 * @return KM_OK; KM_E_INVALID unless 2 <= m <= n <= KM_SHARES_MAX;
 *         KM_E_DENIED; KM_E_IO.
 * kmctl: keyslot add shares.
 */
KM_EXTERN int km_vault_add_shares(km_ctx *ctx, unsigned m, unsigned n, km_secret **shares);

/**
 * Removes every owner passphrase keyslot, so that only principals' slots,
 * backend slots and Shamir slots open the vault. Refused (KM_E_STATE) when no
 * other keyslot would remain, or when only device keyslots would and none of
 * them opens the vault now: each is tried with its backend as the vault
 * configures it (km_vault_backend_set), so a TPM slot whose PCRs moved does
 * not count; km_error_last() names the devices and why. Audited.
 * Under dual control when the vault policy's `principal-change` asks for
 * approvals (km/quorum.h: a KM_REQ_PRINCIPAL_CHANGE request with params "keyslot-remove:passphrases",
 * consumed in the same transaction).
 * @return KM_OK; KM_E_STATE; KM_E_DENIED; KM_E_IO.
 * kmctl: keyslot remove passphrases.
 */
KM_EXTERN int km_vault_remove_passphrases(km_ctx *ctx);

/**
 * A progress callback for long work: `what` names it ("maintain", "rewrap",
 * "rekey", "compact"), `done` of `total` steps are finished (done == total
 * at the end). Called in the thread doing the work; keep it short.
 */
typedef void (*km_progress_fn)(const char *what, uint64_t done, uint64_t total, void *arg);

/**
 * Sets (or with NULL clears) the context's progress callback, used by
 * km_maintain (per key), km_rewrap_batch (per ciphertext), km_vault_rekey and
 * km_vault_compact (start and end).
 * @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_set_progress(km_ctx *ctx, km_progress_fn fn, void *arg);

/**
 * Stores the configuration of a key backend (for "pkcs11": the module and the
 * token URI; for "tpm2": the TCTI; see that backend's documentation) sealed
 * in the vault, so that keys with that protection work whenever the vault is
 * opened. A NULL `config` removes it.
 *
 * The configuration may hold a PIN when the administrator chooses to keep one
 * in the vault: it is sealed like every record and never logged.
 * A backend instance already open in this context keeps its old configuration
 * until the vault is reopened.
 * @return KM_OK; KM_E_INVALID (bad name, empty or > 64 KiB config, "software");
 *         KM_E_UNSUPPORTED (no such backend built in or registered); KM_E_IO.
 * kmctl: backend add kmip, backend add pkcs11, backend add tpm2.
 */
KM_EXTERN int km_vault_backend_set(km_ctx *ctx, const char *name, const char *config);

/**
 * Writes the vault's 16-byte random id to `out`.
 * @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_vault_id(const km_ctx *ctx, uint8_t out[16]);

/**
 * Rekeys the vault: draws a new random master key and reseals every record
 * with keys derived from it, so that any older sealed copy of a record (for
 * example the material of a destroyed key version left in a free page of
 * data.mdb) can no longer be opened by anyone who learns the new master key
 * or a passphrase.
 *
 * In one LMDB write transaction: every sealed record (key and version
 * records, key material references, usage counters, audit entries, and the
 * sealed meta entries such as the check record, the policy and backend
 * configurations) is opened with the old record key and sealed again with the
 * new one; the name index is rebuilt under the new name key; and **all
 * keyslots are removed** and replaced by one passphrase slot holding the new
 * master key under `passphrase`, plus the device keyslots that could be
 * re-sealed: before the transaction, the new master key is sealed with the
 * backend of each backend keyslot (a TPM or an HSM; one per backend name,
 * opened with the configuration stored in the vault by km_vault_backend_set(),
 * or none), and those that succeed are written in the same transaction; a
 * device that is not reachable loses its keyslot. Every other passphrase,
 * principal keyslot and Shamir share no longer opens the vault: add them
 * again afterwards (km_vault_add_passphrase(), km_principal_add(),
 * km_vault_add_shares()). The audit entry says how many device keyslots were
 * re-sealed and dropped. Key ids, versions, states and material are
 * unchanged: existing ciphertexts, signatures and wrapped keys stay valid.
 *
 * Crash safety: the transaction commits atomically; after a crash or SIGKILL
 * at any point the vault holds either the old master key (the old
 * passphrases open it) or the new one (only `passphrase` opens it), never a
 * mix.
 *
 * Afterwards this context uses the new master key. The old derived keys stay
 * in this context's locked memory until km_close(), so that another thread
 * that was using them meanwhile fails cleanly: a read with them returns
 * KM_E_CORRUPT, a write KM_E_STATE (retry the operation). Other contexts on
 * the same vault (other processes, or another km_ctx of this process) still
 * hold the old master key: their reads fail with KM_E_CORRUPT and they must
 * close and reopen the vault with the new passphrase. Plain data keys
 * already unwrapped by the application are not affected.
 *
 * The old sealed bytes remain physically in data.mdb's free pages until they
 * are reused; km_vault_compact() removes them.
 *
 * Under dual control when the vault policy's `principal-change` asks for
 * approvals (km/quorum.h: a KM_REQ_PRINCIPAL_CHANGE request with params "rekey",
 * consumed in the same transaction).
 *
 * @param ctx             an open vault.
 * @param passphrase      the passphrase of the new (only) keyslot; copied, not
 *                        kept; 1 to 1024 bytes.
 * @param passphrase_len  its length.
 * @param kdf_cost        log2 of the scrypt N of the new slot,
 *                        KM_KDF_COST_MIN..KM_KDF_COST_MAX; 0 = KM_KDF_COST_DEFAULT.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL ctx or passphrase, a bad length or cost;
 *         KM_E_DENIED without the right or the approvals (nothing done);
 *         KM_E_STATE when ctx was closed;
 *         KM_E_FORK when ctx is used in a forked child;
 *         KM_E_CORRUPT when a record does not open with the current master
 *         key (e.g. another context rekeyed the vault first): nothing changed;
 *         KM_E_FULL when the map cannot hold the transaction (raise map_size);
 *         KM_E_NOMEM, KM_E_CRYPTO, KM_E_IO (native LMDB code in km_error_last()).
 *         On any error the vault and the context are unchanged.
 *
 * Thread-safe; rekeys of one context are serialised. It holds the vault's
 * write lock (all processes) for the whole operation, including one scrypt
 * run at `kdf_cost`.
 * kmctl: vault rekey.
 */
KM_EXTERN int km_vault_rekey(km_ctx *ctx, const uint8_t *passphrase, size_t passphrase_len,
                             uint32_t kdf_cost) KM_WUR;

/**
 * Compacts the vault file: writes a copy of data.mdb without free pages
 * (LMDB's mdb_env_copy2 with MDB_CP_COMPACT) into the directory
 * `compact.tmp` inside the vault directory, syncs it, renames it over
 * data.mdb and reopens the environment. Old sealed copies of deleted or
 * overwritten records (LMDB is copy-on-write: they stay in free pages) are
 * then physically gone from the file, and the file usually shrinks. Use it
 * after km_vault_rekey() to finish destroying key material. (Copies of the
 * old file made by backups, snapshots or the file system are not affected.)
 *
 * Exclusive: it refuses with KM_E_BUSY when another km_ctx of this process
 * has the same vault open, or another process has it open (checked with an
 * exclusive, non-blocking fcntl lock on byte 0 of lock.mdb, where every
 * process with the vault open holds LMDB's shared lock; processes that try
 * to open the vault meanwhile wait for the end of the compaction). Other
 * threads' transactions on this context are held back while it runs; if some
 * stay open for 2 s it returns KM_E_BUSY.
 *
 * Crash safety: at any crash point the vault directory holds either the old
 * data.mdb or the complete compacted one (the copy is synced before the
 * atomic rename). A leftover `compact.tmp` is removed by the next open or
 * compaction.
 *
 * The context stays usable afterwards; open km_key handles stay valid.
 *
 * @param ctx  an open vault.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL ctx;
 *         KM_E_STATE when ctx was closed; KM_E_FORK in a forked child;
 *         KM_E_BUSY as described above (nothing changed);
 *         KM_E_IO for a file-system or LMDB error (native errno or LMDB code in
 *         km_error_last()). If reopening fails after a successful rename,
 *         the vault on disk is intact but this context's operations fail with
 *         KM_E_IO: close it and open the vault again.
 *
 * Thread-safe with respect to this context's other threads (they wait).
 * kmctl: vault compact.
 */
KM_EXTERN int km_vault_compact(km_ctx *ctx) KM_WUR;

/**
 * Writes a hot backup of the vault to the file `path`: a consistent copy of
 * the whole vault as of one moment (LMDB's mdb_env_copyfd2 with
 * MDB_CP_COMPACT from one read snapshot), taken while this and other threads
 * and processes keep writing. Every change committed before the call started
 * is in it; changes committed meanwhile may or may not be, each one whole.
 *
 * The backup is one file, the vault's data.mdb without free pages: every
 * record stays sealed under the vault's master key, and the keyslots come
 * with it, so it opens only with the credentials (passphrases, principals'
 * slots, shares, TPM or HSM slots) that opened the vault when the backup was
 * taken, and it holds no old sealed copy of an overwritten or destroyed
 * record. Make it a vault again with km_vault_restore(). A later
 * km_vault_rekey() does not reach a backup: the old passphrases keep opening
 * it, so a backup is as sensitive as the vault was.
 *
 * The copy is written to a temporary file `<path>.tmp.XXXXXX` (mode 0600) in
 * the same directory, synced, then given the name `path`, which is never
 * overwritten, and the directory is synced: after a crash `path` is either
 * absent or complete (a leftover temporary file may be deleted).
 *
 * @param[in] ctx   an open vault.
 * @param[in] path  the backup file to create; its directory must exist.
 * Needs the admin role (km/acl.h); recorded in the audit log (the
 * copy holds that entry).
 * @return KM_OK;
 *         KM_E_INVALID for a NULL ctx or a NULL, empty or too long path;
 *         KM_E_EXISTS when `path` exists (nothing written);
 *         KM_E_STATE when ctx was closed; KM_E_FORK in a forked child;
 *         KM_E_IO for a file-system or LMDB error, e.g. no space (native errno
 *         or LMDB code in km_error_last()); nothing is left at `path` then.
 *
 * Thread-safe. It holds one LMDB read snapshot for its duration (writers are
 * not blocked, but the vault file cannot reuse pages freed meanwhile); a
 * km_vault_compact() of this context meanwhile waits for it, up to its 2 s
 * limit (then KM_E_BUSY).
 * kmctl: backup.
 */
KM_EXTERN int km_vault_backup(km_ctx *ctx, const char *path) KM_WUR;

/**
 * Copies the open vault, record for record, into a new vault at `dst_uri`
 * in any store: an LMDB directory (`lmdb:/dir` or a path) or an etcd prefix
 * (`etcd://HOST:PORT[,...]/PREFIX`), to move a vault onto etcd and back.
 * The records stay sealed under the vault's master key and the keyslots come
 * with them: the copy has the same vault id, keys, policy, principals and
 * audit log, and opens with the credentials that open this vault.
 *
 * One read snapshot of this vault is copied while writers go on; the copy
 * is written in transactions of at most 100 records (etcd's limits), the
 * vault's own records last, so an interrupted copy holds no vault (remove
 * what it left before trying again); then every record of the copy is
 * compared with the source's.
 *
 * @param[in] ctx       an open vault.
 * @param[in] dst_uri   where the copy goes: it must hold no vault and no
 *                      record (a vault is never overwritten).
 * @param[in] dst_opts  the destination's store options (version 4: TLS for
 *                      etcd; map_size for LMDB); NULL for the defaults. No
 *                      credential is read from it.
 * Needs the admin role (km/acl.h); under the policy's dual control for
 * exports, an approved KM_REQ_EXPORT request (no key) whose parameters are
 * "vault copy to SCHEME:LOCATION" (the audit entry's text). Recorded in the
 * audit log before the snapshot (the copy holds that entry).
 * @return KM_OK;
 *         KM_E_INVALID for a NULL or empty argument, dst_opts of an unknown
 *         version, an unknown URI scheme (etcd:// in a build without etcd) or
 *         a bad location;
 *         KM_E_DENIED without the role or the approvals;
 *         KM_E_EXISTS when the destination holds records (nothing written);
 *         KM_E_CORRUPT when the copy differs from the source;
 *         KM_E_STATE (the vault was closed); KM_E_FORK;
 *         KM_E_BUSY (etcd: a transaction lost a race); KM_E_NOMEM;
 *         KM_E_FULL, KM_E_IO for a storage error of either store (etcd
 *         unreachable, TLS refused).
 * Thread-safe. kmctl: vault copy SRC DST (the vault opened from SRC).
 */
KM_EXTERN int km_vault_copy(km_ctx *ctx, const char *dst_uri,
                            const km_open_options *dst_opts) KM_WUR;

/**
 * Restores a backup written by km_vault_backup(): checks that `backup` is a
 * libkm vault file (an LMDB file with the vault's format, id and at least one
 * keyslot; its records are authenticated later, when it is opened), then
 * copies it to `dir`/data.mdb (creating `dir` with mode 0700 if absent) the
 * same crash-safe way (temporary file `dir`/restore.tmp.XXXXXX, sync, name
 * never overwritten, directory sync). The restored vault has the backup's
 * vault id, keys, policy, audit log and keyslots: open it with km_open() and
 * the credentials that opened the vault when the backup was taken.
 *
 * A vault is never overwritten: to roll a vault back, restore into a new
 * directory, check it, then swap the directories while no process has either
 * open. Needs no credential (nothing is unsealed). Only restore backups kept
 * where an attacker cannot write: the records are sealed, but LMDB trusts
 * its own page structure (a deliberately malformed file may crash the
 * process that opens it).
 *
 * @param[in] backup  the backup file.
 * @param[in] dir     the vault directory to create the vault in.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL or empty argument, a backup that is not a
 *         regular file, or a `dir` that is not a directory;
 *         KM_E_NOTFOUND when `backup` does not exist;
 *         KM_E_CORRUPT when `backup` is not a libkm vault file;
 *         KM_E_UNSUPPORTED for a vault format newer than this libkm;
 *         KM_E_EXISTS when `dir` already holds a vault (nothing written);
 *         KM_E_IO for a file-system or LMDB error (native code in
 *         km_error_last()); nothing is left at `dir`/data.mdb then.
 *
 * Thread-safe; it does not touch any open vault.
 * kmctl: restore.
 */
KM_EXTERN int km_vault_restore(const char *backup, const char *dir) KM_WUR;

#ifdef __cplusplus
}
#endif
#endif /* KM_VAULT_H */
