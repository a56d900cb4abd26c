/**
 * @file km/audit.h
 * @brief The tamper-evident audit log.
 *
 * Every state change of a vault (keys created, rotated, transitioned,
 * destroyed; policy, backends, keyslots, principals, grants, approvals)
 * writes its audit entry in the same LMDB transaction as the change: there is
 * never a change without its entry or an entry without its change. Denied
 * calls are audited too; failed authentications (which have no master key to
 * write with) are counted in the vault and reported by an entry at the next
 * successful open.
 *
 * Each entry carries its sequence number, time, principal, operation, key id
 * and version, result and a short detail, never a secret. Each entry is
 * chained to the hash of the previous one and covered by an HMAC-SHA-256
 * under a key derived from the master key (kept across km_vault_rekey): a
 * state change's entry by a MAC of its own, data-path entries by one MAC per
 * batch record (docs/FORMATS.md, layout 2); records are sealed like every
 * record. km_audit_verify() names the first bad entry; the head (sequence and
 * hash of the last entry) can be exported and later passed back to
 * km_audit_verify(), so that a truncated tail shows.
 *
 * Data-path operations (encrypt, decrypt, sign, ...) are audited at the level
 * km_audit_set_level() chooses: none, per-key usage counters (the default:
 * the counters every key version keeps), or every call. Every-call entries are
 * group-committed: queued in the context and written in batches (sealed
 * records of up to 16384 entries, one transaction per 32768) by a flusher
 * thread of the context, at least every 100 ms, soon after 256 are queued
 * (under a steady load one transaction per 25 ms at the most, unless 32768
 * wait), and by km_audit_flush() and km_close(). When the queue holds
 * 16 x KM_AUDIT_BATCH entries the calling thread writes it itself, and a
 * queue that cannot be written makes data-path calls fail (fail closed). A
 * crash can lose the queued entries of calls that returned in the last
 * ~100 ms and those of the commit under way (at most the queue's bound and
 * one transaction's), never a state change's entry.
 *
 * Entries can also be copied to syslog and to a JSON-lines file for a SIEM,
 * each once its transaction has committed (never an entry of a change that
 * was rolled back). A sink that cannot write fails closed: the change whose
 * entry it lost stands (its entry is in the vault's log), and every later
 * change of the context is refused (KM_E_IO) until a sink is set again.
 */
#ifndef KM_AUDIT_H
#define KM_AUDIT_H

#include "common.h"
#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Data-path audit levels (km_audit_set_level). */
typedef enum km_audit_level {
    KM_AUDIT_DATA_NONE = 0,     /**< no record of data-path calls */
    KM_AUDIT_DATA_COUNTERS = 1, /**< per-version usage counters only (default) */
    KM_AUDIT_DATA_EVERY = 2     /**< an entry for every call, group-committed */
} km_audit_level;

/** Data-path entries per batch the flusher aims at (the queue holds at most 16x). */
#define KM_AUDIT_BATCH 4096

/** The head of the log: the last entry's sequence number and SHA-256. */
typedef struct km_audit_head {
    uint64_t seq;        /**< 0 for an empty log */
    uint8_t hash[32];    /**< the last entry's hash (SHA-256, docs/FORMATS.md); zero when empty */
} km_audit_head;

/** One audit entry, as km_audit_foreach() passes it (valid during the call). */
typedef struct km_audit_entry {
    uint64_t seq;            /**< 1, 2, 3, ... */
    int64_t time;            /**< seconds since the epoch (the vault's clock) */
    const char *principal;   /**< "owner", a principal's name, "shares", "backend:tpm2"; "name via peer" through a server (km/sys/server.h) */
    const char *op;          /**< operation name, e.g. "key.create", "encrypt", "denied" */
    int has_key;             /**< 1 when key_id and version apply */
    uint8_t key_id[16];      /**< the key's id */
    uint32_t version;        /**< the key version, 0 when not one version */
    int result;              /**< KM_OK or the km error code the operation returned */
    const char *detail;      /**< short non-secret detail ("" when none) */
    uint8_t hash[32];        /**< this entry's hash (SHA-256; the next one chains it) */
} km_audit_entry;

/** Callback of km_audit_foreach(); non-zero stops (a negative value is returned). */
typedef int (*km_audit_fn)(const km_audit_entry *entry, void *arg);

/**
 * Sets the data-path audit level of the vault (stored in it, audited).
 * @return KM_OK; KM_E_INVALID; KM_E_DENIED; KM_E_IO.
 * kmctl: audit level.
 */
KM_EXTERN int km_audit_set_level(km_ctx *ctx, km_audit_level level);

/** Reads the data-path audit level. @return KM_OK or KM_E_INVALID. */
KM_EXTERN int km_audit_get_level(km_ctx *ctx, km_audit_level *level);

/**
 * Writes the queued data-path entries now (one transaction).
 * @return KM_OK; KM_E_IO / KM_E_FULL when they cannot be written (they stay
 *         queued, and data-path calls fail while the queue is full).
 */
KM_EXTERN int km_audit_flush(km_ctx *ctx);

/**
 * Reads the head of the log (after flushing the queue), to be kept outside
 * the vault and passed to km_audit_verify() later.
 * @return KM_OK; KM_E_DENIED; KM_E_CORRUPT; KM_E_IO.
 * kmctl: audit head.
 */
KM_EXTERN int km_audit_head_get(km_ctx *ctx, km_audit_head *head);

/**
 * Verifies the whole log: every entry opens and its MAC holds, sequence
 * numbers run 1, 2, 3 without a gap, each entry chains the previous one's
 * hash, the stored head matches the last entry, and with `anchor` the log
 * still holds the anchored entry with the anchored hash (so entries removed
 * from the tail, or a rolled-back vault, show).
 *
 * @param[in]  anchor   a head exported earlier, or NULL.
 * @param[out] count    entries verified (may be NULL).
 * @param[out] bad_seq  the first bad entry's sequence number, 0 when whole
 *                      (may be NULL).
 * @return KM_OK when whole; KM_E_INTEGRITY naming the first bad entry (edited,
 *         deleted, reordered, inserted, or the tail truncated);
 *         KM_E_DENIED; KM_E_IO.
 * kmctl: audit verify.
 */
KM_EXTERN int km_audit_verify(km_ctx *ctx, const km_audit_head *anchor, uint64_t *count,
                              uint64_t *bad_seq);

/**
 * Calls `fn` for each entry from sequence `from` (1 = the first) in order.
 * Entries are verified as they are read; a bad one stops with KM_E_INTEGRITY.
 * @return KM_OK; the callback's negative value; KM_E_INTEGRITY; KM_E_DENIED.
 * kmctl: audit show.
 */
KM_EXTERN int km_audit_foreach(km_ctx *ctx, uint64_t from, km_audit_fn fn, void *arg);

/**
 * Formats an entry as one JSON object (no newline), NUL-terminated.
 * @return KM_OK; KM_E_BUFFER (out_len says the size needed); KM_E_INVALID.
 */
KM_EXTERN int km_audit_entry_json(const km_audit_entry *entry, char *out, size_t out_cap,
                                  size_t *out_len);

/** Callback of km_audit_alerts(): the entry and why it deserves an alert. */
typedef int (*km_audit_alert_fn)(const km_audit_entry *entry, const char *why, void *arg);

/**
 * The monitoring query: calls `fn` for each entry from sequence `from` that
 * is worth an alert, with the reason: "use of a key outside its grants" and
 * "an operation outside the role" (denied calls), "failed authentication" /
 * "repeated failed authentications" (3 or more before one successful open),
 * "use of a compromised key version" (always recorded, whatever the level),
 * and "a ciphertext failed authentication" (at the level "every").
 * @return as km_audit_foreach().
 * kmctl: audit alerts.
 */
KM_EXTERN int km_audit_alerts(km_ctx *ctx, uint64_t from, km_audit_alert_fn fn, void *arg);

/**
 * Copies every entry this context writes to syslog (facility LOG_AUTHPRIV)
 * when `enable` is non-zero. Per context, not stored in the vault.
 * @return KM_OK or KM_E_INVALID.
 */
KM_EXTERN int km_audit_sink_syslog(km_ctx *ctx, int enable);

/**
 * Appends every entry this context writes to the file `path` as JSON lines
 * (created 0600 if absent), once each entry's transaction has committed;
 * NULL stops. After a write that fails, every change of the context is
 * refused (KM_E_IO) until this function or km_audit_sink_syslog() is called
 * again. Per context, not stored in the vault.
 * @return KM_OK; KM_E_IO when the file cannot be opened; KM_E_INVALID.
 */
KM_EXTERN int km_audit_sink_file(km_ctx *ctx, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* KM_AUDIT_H */
