/*
 * km_int.h - internal interfaces shared by the core (src/) and the built-in
 * LMDB vault and software backend (backends/lmdb/). Not installed.
 *
 * Naming: km__ for cross-file internal helpers.
 */
#ifndef KM_INT_H
#define KM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>

#include "km.h"
#include "km/sys/backend.h"

/* ------------------------------------------------------------------ error.c */

/* Records the calling thread's last error and returns `code`. Messages are one
 * impersonal line and never contain secrets. */
int km__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int km__err_native(int code, km_native_kind kind, unsigned long native, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes the oldest OpenSSL error from the queue as native code, clears the queue. */
int km__err_ossl(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ----------------------------------------------------------------- secure.c */

/* A km_secret from the small-secret pool (locked, non-dumpable arenas; no
 * guard page per secret): for libkm's own short-lived records. Freed (and
 * wiped) with km_secret_free as any other. */
int km__secret_new_pooled(km_secret **out, size_t len);
/* Registers the pool's fork handlers (km_init calls it first thing). */
void km__secure_fork_init(void);
/* Secure allocation (mlock, MADV_DONTDUMP, guard pages). km__sfree wipes. */
void *km__salloc(size_t len);
void km__sfree(void *p, size_t len);

/* Under AddressSanitizer, memory libkm maps itself (secure pages, the OpenSSL
 * region of osslmem.c) is registered with LeakSanitizer as a root region, so
 * that heap objects pointed to only from there are not reported as leaks by
 * a leak check made while a vault is open (libFuzzer does them). */
#if defined(__SANITIZE_ADDRESS__)
#define KM__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KM__LSAN 1
#endif
#endif
#ifdef KM__LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* prim.c: an ECDSA signature given as r || s (field bytes each, as PKCS#11
 * and TPMs return it) as DER ECDSA-Sig-Value in out. KM_E_CRYPTO when it does
 * not encode or does not fit in cap. */
int km__ecdsa_raw_to_der(const uint8_t *rs, size_t field, uint8_t *out, size_t cap,
                         size_t *out_len);

/* ---------------------------------------------------------------- osslmem.c */

/* OpenSSL allocations made by this thread between begin and end (nested) come
 * from locked, non-dumpable pages when the allocation functions are installed
 * (km__osslmem_hooked); otherwise begin/end do nothing and callers must not
 * keep keyed cipher contexts beyond a call. */
void km__osslmem_begin(void);
void km__osslmem_end(void);
int km__osslmem_hooked(void);
void km__osslmem_fork_init(void);

/* ------------------------------------------------------------------- init.c */

/* Incremented in the child after every fork(); handles compare it. */
extern atomic_uint km__fork_gen;

/* --------------------------------------------------------------- prim.c
 * Thin EVP wrappers for the primitives the vault itself needs. All return
 * KM_OK or a km error code (recorded). */

/* Cryptographically strong random bytes (OpenSSL DRBG). */
int km__random(void *out, size_t len);
/* Per-thread buffered DRBG stream for nonces: wiped and refilled after fork. */
int km__nonce12(uint8_t out[12]);
/* One-shot AES-256-GCM with a 12-byte nonce and a 16-byte tag. */
int km__gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
/* A pre-keyed AES-256-GCM key for many one-shot operations from many threads
 * (the vault's record sealing). */
typedef struct km__gcmk km__gcmk;
int km__gcmk_new(km__gcmk **out, const uint8_t key[32]);
void km__gcmk_free(km__gcmk *g);
int km__gcmk_seal(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
int km__gcmk_open(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out);
/* KM_E_INTEGRITY on a bad tag; `out` is then zeroed. */
int km__gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, const uint8_t tag[16],
                 uint8_t *out);
/* scrypt(pass, salt, N = 2^log2n, r, p) -> out. */
int km__scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
               uint32_t log2n, uint32_t r, uint32_t p, uint8_t *out, size_t out_len);
/* AES-KWP (RFC 5649) with a 128/192/256-bit KEK. wrap: out_len = ceil8(len) + 8. */
int km__kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                 uint8_t *out, size_t out_cap, size_t *out_len);
/* KM_E_INTEGRITY when the integrity check fails; `out` zeroed. */
int km__kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                   uint8_t *out, size_t out_cap, size_t *out_len);
/* HKDF-SHA-256 (RFC 5869). */
int km__hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                    const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);
/* CKM_RSA_AES_KEY_WRAP to an outside RSA public key (SPKI DER or PEM):
 * RSA-OAEP-SHA-256 of a fresh AES-256 key, then AES-KWP of `in`. */
int km__rsa_oaep_kwp_wrap(const uint8_t *spki, size_t spki_len, const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len);
/* A reusable keyed HMAC-SHA-256 (and SHA-256) context: one thread at a time. */
typedef struct km__mac km__mac;
int km__mac_new(km__mac **out, const uint8_t *key, size_t key_len);
int km__mac_compute(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32]);
int km__mac_sha256(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32]);
void km__mac_free(km__mac *m);
/* A pre-keyed HMAC-SHA-256 (key up to 32 bytes) for many threads. */
typedef struct km__hmack km__hmack;
int km__hmack_new(km__hmack **out, const uint8_t *key, size_t key_len);
int km__hmack_compute(km__hmack *h, const uint8_t *msg, size_t len, uint8_t out[32]);
void km__hmack_free(km__hmack *h);
/* SHA-256 of the concatenation of n parts. */
int km__sha256v(const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t out[32]);
/* HMAC-SHA-256, full 32-byte output. */
int km__hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[32]);

/* ----------------------------------------------------------------- format.c */

/* Ciphertext header v1 (DESIGN.md): KM, 1, alg, key id[16], version BE32, nonce[12]. */
#define KM__CT_MAGIC0 'K'
#define KM__CT_MAGIC1 'M'
#define KM__SIG_MAGIC1 'S'   /* tagged signature: 'K' 'S' */
#define KM__MAC_MAGIC1 'T'   /* tagged MAC: 'K' 'T' */
#define KM__DK_MAGIC1 'D'    /* wrapped data key: 'K' 'D', otherwise a v1 ciphertext */
#define KM__FORMAT_V1 1

typedef struct km__ct_header {
    uint8_t magic1;          /* KM__CT_MAGIC1 (data) or KM__DK_MAGIC1 (wrapped data key) */
    uint8_t alg;
    uint8_t key_id[16];
    uint32_t version;
    uint8_t nonce[12];
} km__ct_header;

void km__ct_header_write(uint8_t out[KM_CIPHERTEXT_HEADER], const km__ct_header *h);
/* KM_E_INVALID: too short / wrong magic; KM_E_UNSUPPORTED: other format version. */
int km__ct_header_parse(const uint8_t *in, size_t len, km__ct_header *h);
/* Tagged signature / MAC header (24 bytes): K, magic1, 1, alg, key id, version. */
void km__tag_header_write(uint8_t out[KM_TAG_HEADER], uint8_t magic1, uint8_t alg,
                          const uint8_t key_id[16], uint32_t version);
int km__tag_header_parse(const uint8_t *in, size_t len, uint8_t magic1, uint8_t *alg,
                         uint8_t key_id[16], uint32_t *version);

static inline void km__be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t km__be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void km__be64_put(uint8_t *p, uint64_t v)
{
    km__be32_put(p, (uint32_t)(v >> 32)); km__be32_put(p + 4, (uint32_t)v);
}
static inline uint64_t km__be64_get(const uint8_t *p)
{
    return ((uint64_t)km__be32_get(p) << 32) | km__be32_get(p + 4);
}

/* TLV records: tag (1 byte), length (BE32), value. Tags are unique per record.
 * Writer into a fixed caller buffer; overflow is sticky and reported at end. */
typedef struct km__tlv_w {
    uint8_t *buf;
    size_t cap, len;
    int overflow;
} km__tlv_w;

void km__tlv_init(km__tlv_w *w, uint8_t *buf, size_t cap);
void km__tlv_put(km__tlv_w *w, uint8_t tag, const void *val, size_t len);
void km__tlv_put_u32(km__tlv_w *w, uint8_t tag, uint32_t v);
void km__tlv_put_u64(km__tlv_w *w, uint8_t tag, uint64_t v);
void km__tlv_put_str(km__tlv_w *w, uint8_t tag, const char *s);
/* KM_OK or KM_E_INTERNAL on overflow. */
int km__tlv_end(const km__tlv_w *w);

/* Validates a whole record: every entry well-formed, no duplicate tag.
 * KM_E_CORRUPT otherwise. */
int km__tlv_check(const uint8_t *buf, size_t len);
/* Finds `tag`. Returns 1 found, 0 absent. (Call km__tlv_check first.) */
int km__tlv_find(const uint8_t *buf, size_t len, uint8_t tag, const uint8_t **val,
                 size_t *vlen);
/* Typed getters: KM_OK, KM_E_NOTFOUND when absent, KM_E_CORRUPT on a wrong length. */
int km__tlv_get_u32(const uint8_t *buf, size_t len, uint8_t tag, uint32_t *out);
int km__tlv_get_u64(const uint8_t *buf, size_t len, uint8_t tag, uint64_t *out);

/* base64url without padding. */
size_t km__b64url_encoded_len(size_t bin_len);
void km__b64url_encode(const uint8_t *in, size_t len, char *out); /* writes NUL too */
/* KM_E_INVALID on a bad character or an impossible length. */
int km__b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* ---------------------------------------------------------- backends/lmdb/vault.c
 * The catalog: an LMDB environment whose every value is sealed with
 * AES-256-GCM under a key derived from the vault master key.
 *
 * Sealed value: [1 byte record-format version = 1][12 nonce][ciphertext][16 tag]
 * Associated data: "km-rec" || rec-format(1) || table name || 0x00 || LMDB key bytes.
 * A record moved to another LMDB key or table, downgraded or edited fails to
 * open (KM_E_CORRUPT).
 */
typedef enum km__table {
    KM__T_META = 0,     /* vault metadata: "format", "vault-id", ... (slot-independent, unsealed: see vault.c) */
    KM__T_SLOTS,        /* keyslots: BE32 slot id -> slot record (not sealed: KWP-protected) */
    KM__T_KEYS,         /* key id[16] -> key record */
    KM__T_NAMES,        /* HMAC(name key, name)[32] -> key id record */
    KM__T_VMETA,        /* key id[16] || BE32 version -> version metadata record */
    KM__T_MATERIAL,     /* key id[16] || BE32 version -> backend reference */
    KM__T_COUNTERS,     /* key id[16] || BE32 version -> reserved usage counters */
    KM__T_AUDIT,        /* BE64 sequence -> audit entry (future) */
    KM__T__COUNT
} km__table;

typedef struct km__env km__env;   /* one LMDB environment, shared per directory per process */
typedef struct km__txn km__txn;   /* a read or write transaction */
typedef struct km__sealer km__sealer; /* derived record-sealing keys of an unlocked vault */

/* Opens (or creates) the environment of the vault directory `dir`, and unlocks
 * it with the passphrase in `o`, giving the 32-byte master key in secure memory.
 * Shares one environment per directory in the process (refcounted).
 * Errors: KM_E_NOTFOUND (no vault, no CREATE), KM_E_EXISTS (EXCL), KM_E_AUTH,
 * KM_E_CORRUPT, KM_E_UNSUPPORTED (newer format), KM_E_IO. */
int km__env_open(km__env **out, const char *dir, const km_open_options *o,
                 km_secret **master_out, uint8_t vault_id[16], uint8_t pid[16]);
void km__env_close(km__env *env);

/* Derives the sealing keys (HKDF from master). */
int km__sealer_new(km__sealer **out, const km_secret *master);
void km__sealer_free(km__sealer *s);
/* The 32-byte keyed hash of a name for KM__T_NAMES. */
int km__sealer_name_hash(const km__sealer *s, const char *name, size_t len, uint8_t out[32]);

int km__txn_begin(km__env *env, int write, km__txn **out);
int km__txn_commit(km__txn *t);   /* always frees t; KM_E_FULL / KM_E_IO on failure */
void km__txn_abort(km__txn *t);   /* accepts NULL */

/* Reads and unseals a record into secure memory. KM_E_NOTFOUND, KM_E_CORRUPT. */
int km__rec_get(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, km_secret **out);
/* Seals and writes. flags: KM__PUT_NOOVERWRITE -> KM_E_EXISTS if present. */
#define KM__PUT_NOOVERWRITE 1
int km__rec_put(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *key,
                size_t key_len, const uint8_t *val, size_t val_len, unsigned flags);
/* KM_E_NOTFOUND when absent. */
int km__rec_del(km__txn *t, km__table tbl, const uint8_t *key, size_t key_len);
/* Calls fn for every record whose LMDB key starts with `prefix` (may be empty),
 * in key order, with the unsealed value (wiped after the call). fn returns
 * non-zero to stop (that value is returned if negative, else KM_OK). */
typedef int (*km__rec_fn)(const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len, void *arg);
int km__rec_iter(km__txn *t, const km__sealer *s, km__table tbl, const uint8_t *prefix,
                 size_t prefix_len, km__rec_fn fn, void *arg);
/* Adds a passphrase slot for the master key (in a write transaction). */
int km__slot_add_passphrase(km__txn *t, const km_secret *master, const uint8_t *pass,
                            size_t pass_len, uint32_t log2n);

/* A principal's passphrase slot (principal == NULL and pid == NULL: an
 * owner slot, as km__slot_add_passphrase). */
int km__slot_add_principal(km__txn *t, const km_secret *master, const uint8_t *pass,
                           size_t pass_len, uint32_t log2n, const char *principal,
                           const uint8_t pid[16]);
/* Removes every passphrase slot of principal `pid`; KM_E_NOTFOUND if none. */
int km__slot_remove_principal(km__txn *t, const uint8_t pid[16]);
/* Removes every owner passphrase slot (KM_E_STATE if none would remain). */
int km__slot_remove_owner(km__txn *t);
/* 1 for a write transaction. */
int km__txn_is_write(const km__txn *t);
/* Entries in a table. */
int km__table_count(km__txn *t, km__table tbl, uint64_t *out);
/* The unsealed count of failed authentications since the last successful open. */
int km__authfail_get(km__txn *t, uint64_t *n);
int km__authfail_clear(km__txn *t);
/* A backend keyslot holding the blob of the backend's slot_seal. */
#define KM__SLOT_BLOB_MAX ((size_t)64 << 10)
int km__slot_add_backend(km__txn *t, const char *backend, const uint8_t *blob, size_t blob_len);
/* Test hook (vault.c): at write step `at` of the vault the process SIGKILLs
 * itself (0 = off, ULONG_MAX = count only); km__fault_steps: steps so far. */
void km__fault_arm(unsigned long at);
unsigned long km__fault_steps(void);
/* The distinct backend names of the vault's backend keyslots (at most cap),
 * and how many backend keyslots there are in all. */
int km__slot_backend_names(km__txn *t, char names[][32], size_t cap, size_t *n, size_t *total);
/* A Shamir keyslot: m of n shares (text "kms1:...", in shares[0..n-1]) open it. */
#define KM__SHARE_Y_LEN 32
int km__slot_add_shamir(km__txn *t, const km_secret *master, unsigned m, unsigned n,
                        km_secret **shares);
/* ctx.c: a registered backend opened with `config` seals / unseals a master key. */
int km__backend_slot_seal(const char *name, const char *config, const km_secret *master,
                          km_secret **blob);
int km__backend_slot_unseal(const char *name, const char *config, const uint8_t *blob,
                            size_t blob_len, km_secret **master);

/* km_vault_rekey's storage part, in one write transaction of its own: every
 * sealed record (meta except "format"/"vault-id", keys, vmeta, material,
 * counters, audit) is unsealed with old_s and resealed with new_s, the names
 * index is rebuilt under new_s's name key from the key records' names, and
 * all keyslots are replaced by one passphrase slot for new_master. Marks
 * old_s retired (km__rec_put then refuses it with KM_E_STATE) when the
 * commit succeeds. KM_E_CORRUPT when a record does not open with old_s
 * (nothing written), KM_E_FULL, KM_E_IO, KM_E_NOMEM. */
typedef int (*km__txn_hook)(void *arg, km__txn *t, const km__sealer *s);
int km__vault_rekey(km__env *env, km__sealer *old_s, const km__sealer *new_s,
                    const km_secret *new_master, const uint8_t *pass, size_t pass_len,
                    uint32_t log2n, km__txn_hook hook, void *hook_arg);
/* Makes the fresh sealer new_s own old_s and old_master: freed with new_s
 * (a thread may still be using them when the context swaps them). */
void km__sealer_retire(km__sealer *new_s, km__sealer *old_s, km_secret *old_master);
/* Rewrites the environment's data.mdb without free pages (mdb_env_copy2 with
 * MDB_CP_COMPACT into dir/compact.tmp, fsync, rename over data.mdb) and
 * reopens it in place: the km__env pointer stays valid. KM_E_BUSY when
 * another km_ctx of this process shares the environment, another process has
 * it open (exclusive fcntl lock on byte 0 of lock.mdb refused), or this
 * process's transactions stay open; KM_E_IO, KM_E_FULL, KM_E_FORK. */
int km__env_compact(km__env *env);
/* Writes a compacted copy of the environment's data.mdb to fd from one read
 * snapshot (mdb_env_copyfd2, MDB_CP_COMPACT) while writers go on; holds off
 * km__env_compact meanwhile. KM_E_IO (LMDB code kept), KM_E_FORK. */
int km__env_copyfd(km__env *env, int fd);
/* backends/lmdb/backup.c: km_vault_backup / km_vault_restore's file work. */
int km__vault_backup(km__env *env, const char *path);
int km__vault_restore(const char *backup, const char *dir);

/* ---------------------------------------------------------------- crypto.c
 * Software key material (the "software" backend's reference) and the EVP
 * operations on it. A software reference is:
 *   [1 byte km_material_format][material bytes]
 * RAW for AES/HMAC (and never for asymmetric keys in generated refs),
 * PKCS8_DER for asymmetric private keys, SPKI_DER for public-only keys.
 */
extern const km_backend_ops km__software_backend;
#ifdef KM_HAVE_PKCS11
extern const km_backend_ops km__pkcs11_backend;   /* backends/pkcs11/ */
extern const km_backend_ops km__pkcs11_card_backend; /* backends/pkcs11/p11_card.c */
#endif
#ifdef KM_HAVE_TPM2
extern const km_backend_ops km__tpm2_backend;     /* backends/tpm2/ */
#endif
extern const km_backend_ops km__kmip_backend;     /* backends/kmip/ (always built) */

/* Expected raw key length of a symmetric type (0 if not symmetric). */
size_t km__type_key_len(km_key_type type);
/* Usage bits a type can have. */
uint32_t km__type_usage(km_key_type type);
int km__type_is_symmetric(km_key_type type);
int km__type_is_valid(int type);

#endif /* KM_INT_H */
