/*
 * keyslot.c - the vault's keyslots: the master key wrapped for each way of
 * unlocking (an owner's or a principal's passphrase, a device, m of n
 * Shamir shares), as raw records of the slots table (not sealed: the master
 * key is not known before a slot opens). Byte formats in docs/FORMATS.md.
 *
 * A keyslot is a TLV record under its BE32 id (one past the highest). A
 * device's keyslot holds the blob of its backend's slot_seal; the store
 * opens it through the km__slot_unsealer the core gave to km__store_open.
 */
#include "store_int.h"
#include "shamir.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASTER_LEN KM__MASTER_LEN

/* Keyslot TLV tags and values. */
enum {
    SLOT_TAG_TYPE = 1,
    SLOT_TAG_KDF = 2,
    SLOT_TAG_LOG2N = 3,
    SLOT_TAG_R = 4,
    SLOT_TAG_P = 5,
    SLOT_TAG_SALT = 6,
    SLOT_TAG_WRAPPED = 7,
    SLOT_TAG_SELECTOR = 8,  /* principal slots: SHA-256("km-principal-v1" || salt || name) */
    SLOT_TAG_PID = 9,       /* principal slots: the principal id */
    SLOT_TAG_BACKEND = 10,  /* backend slots: the backend's name */
    SLOT_TAG_BLOB = 11,     /* backend slots: the backend's sealed blob */
    SLOT_TAG_M = 12,        /* Shamir slots: shares needed */
    SLOT_TAG_N = 13,        /* Shamir slots: shares made */
    SLOT_TAG_SETID = 14,    /* Shamir slots: random id of the split */
    SLOT_TAG_HASHES = 15,   /* Shamir slots: SHA-256 of each share, in order */
    SLOT_TAG_MAC = 16,      /* every slot, last: HMAC of the id and the fields before it */
    SLOT_TAG_CRED = 17,     /* key-pair slots: the credential (SLOT_TYPE_PASSPHRASE, _SHAMIR) */
    SLOT_TAG_PUB = 18,      /* key-pair slots: the slot's X25519 public key */
    SLOT_TAG_PRIVW = 19,    /* key-pair slots: KWP of its private key under the credential's key */
    SLOT_TAG_EPH = 20       /* key-pair slots: the ephemeral X25519 public key of WRAPPED */
};
#define SLOT_TYPE_PASSPHRASE 1
#define SLOT_TYPE_BACKEND 2
#define SLOT_TYPE_SHAMIR 3
/* A key-pair slot: the credential's key (scrypt output, combined Shamir
 * secret) opens an X25519 private key, the master key is wrapped to its
 * public half, so a new master key is wrapped for it without the credential. */
#define SLOT_TYPE_KEYPAIR 4
#define SLOT_KDF_SCRYPT 1
#define SLOT_SCRYPT_R 8
#define SLOT_SCRYPT_P 1
#define SLOT_SALT_LEN 32
#define SLOT_KEK_LEN 32
#define SLOT_WRAPPED_LEN (MASTER_LEN + 8)
/* five u32 entries, the salt and the wrapped master, nothing else */
#define SLOT_PASS_REC_LEN (5 * (5 + 4) + (5 + SLOT_SALT_LEN) + (5 + SLOT_WRAPPED_LEN))
#define SLOT_MAC_LEN 32
#define SLOT_MAC_ENTRY (5 + SLOT_MAC_LEN)
#define SLOT_PRIVW_LEN (32 + 8)
/* what a key-pair slot carries on top of its credential's fields */
#define SLOT_KP_EXTRA ((5 + 4) + (5 + 32) + (5 + SLOT_PRIVW_LEN) + (5 + 32))

/* A passphrase slot (owner or principal), a backend slot, or a Shamir slot. */
typedef struct any_slot {
    uint32_t id, type;
    uint32_t log2n;                 /* passphrase */
    const uint8_t *salt;            /* passphrase */
    const uint8_t *selector;        /* principal slots: SHA-256 of salt and name; else NULL */
    const uint8_t *pid;             /* principal slots: the principal id[16] */
    const uint8_t *wrapped;         /* passphrase, Shamir: KWP of the master key */
    const char *backend;            /* backend: its name (not NUL-terminated) */
    size_t backend_len;
    const uint8_t *blob;            /* backend: its opaque blob */
    size_t blob_len;
    uint32_t m, n;                  /* Shamir */
    const uint8_t *setid;           /* Shamir: 16 bytes naming the split */
    const uint8_t *hashes;          /* Shamir: n share hashes of 32 bytes */
    const uint8_t *body;            /* the record without its MAC entry */
    size_t body_len;
    const uint8_t *mac;             /* the MAC entry's value, or NULL (older formats) */
    int kp;                         /* a key-pair slot (its type is then its credential's) */
    const uint8_t *pub, *privw, *eph;   /* key-pair slots */
} any_slot;

/* The keyslot MAC: HMAC-SHA-256 under HKDF(master, "km v1 keyslot mac") of
 * "km-slot-v1" || BE32 slot id || every byte of the record before its MAC
 * entry. It makes each field of a slot (its type, principal id, selector,
 * parameters) authentic: a file edit that turns a principal's slot into an
 * owner's, or points it at another principal, fails the open. */
static int slot_mac(const km_secret *master, uint32_t id, const uint8_t *body, size_t len,
                    uint8_t out[SLOT_MAC_LEN])
{
    static const char info[] = "km v1 keyslot mac";
    static const char tag[] = "km-slot-v1";
    uint8_t *key = NULL, *msg = NULL;
    size_t tl = sizeof tag - 1;
    int rc;

    if (master == NULL || km_secret_len(master) != MASTER_LEN)
        return km__err(KM_E_INVALID, "keyslot: master must be a %d-byte secret", MASTER_LEN);
    key = km__salloc(32);
    msg = malloc(tl + 4 + len);
    if (key == NULL || msg == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    memcpy(msg, tag, tl);
    km__be32_put(msg + tl, id);
    memcpy(msg + tl + 4, body, len);
    rc = km__hkdf_sha256(km_secret_data(master), MASTER_LEN, NULL, 0, (const uint8_t *)info,
                         sizeof info - 1, key, 32);
    if (rc == KM_OK)
        rc = km__hmac_sha256(key, 32, msg, tl + 4 + len, out);
out:
    km__sfree(key, 32);
    free(msg);
    return rc;
}

/* Checks a parsed slot's MAC: KM_E_CORRUPT when it has none or another. */
static int slot_mac_check(const any_slot *sl, const km_secret *master)
{
    uint8_t want[SLOT_MAC_LEN];
    int rc;

    if (sl->mac == NULL)
        return km__err(KM_E_CORRUPT, "keyslot %u carries no authentication (edited outside "
                                     "libkm)", sl->id);
    if ((rc = slot_mac(master, sl->id, sl->body, sl->body_len, want)) != KM_OK)
        return rc;
    if (!km_ct_equal(want, sl->mac, SLOT_MAC_LEN))
        return km__err(KM_E_CORRUPT, "keyslot %u fails its authentication (edited outside "
                                     "libkm)", sl->id);
    return KM_OK;
}

static int tlv_bytes(const uint8_t *rec, size_t len, uint8_t tag, size_t want,
                     const uint8_t **out)
{
    size_t n;
    return km__tlv_find(rec, len, tag, out, &n) && n == want;
}

/* Parses and strictly validates a keyslot before any KDF runs on it. A slot
 * of a type this libkm does not know (a newer one's) gets type 0: skipped. */
static int slot_parse(const uint8_t *rec, size_t len, uint32_t id, any_slot *sl)
{
    const uint8_t *misplaced;
    uint32_t type, kdf, r, p;
    size_t n;

    memset(sl, 0, sizeof *sl);
    sl->id = id;
    if (km__tlv_check(rec, len) != KM_OK)
        return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
    /* the MAC entry, when there is one, is the last: the fields are the
     * bytes before it (both parse as whole entries, so it is exactly that) */
    if (len > SLOT_MAC_ENTRY && rec[len - SLOT_MAC_ENTRY] == SLOT_TAG_MAC
        && km__be32_get(rec + len - SLOT_MAC_ENTRY + 1) == SLOT_MAC_LEN
        && km__tlv_check(rec, len - SLOT_MAC_ENTRY) == KM_OK) {
        sl->mac = rec + len - SLOT_MAC_LEN;
        len -= SLOT_MAC_ENTRY;
    }
    sl->body = rec;
    sl->body_len = len;
    if (km__tlv_find(rec, len, SLOT_TAG_MAC, &misplaced, &n)   /* a MAC is only last */
        || km__tlv_get_u32(rec, len, SLOT_TAG_TYPE, &type) != KM_OK)
        return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
    if (type == SLOT_TYPE_KEYPAIR) {
        if (km__tlv_get_u32(rec, len, SLOT_TAG_CRED, &type) != KM_OK
            || (type != SLOT_TYPE_PASSPHRASE && type != SLOT_TYPE_SHAMIR)
            || !tlv_bytes(rec, len, SLOT_TAG_PUB, 32, &sl->pub)
            || !tlv_bytes(rec, len, SLOT_TAG_PRIVW, SLOT_PRIVW_LEN, &sl->privw)
            || !tlv_bytes(rec, len, SLOT_TAG_EPH, 32, &sl->eph))
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        sl->kp = 1;
    }
    switch (type) {
    case SLOT_TYPE_PASSPHRASE:
        if (km__tlv_get_u32(rec, len, SLOT_TAG_KDF, &kdf) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_LOG2N, &sl->log2n) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_R, &r) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_P, &p) != KM_OK
            || !tlv_bytes(rec, len, SLOT_TAG_SALT, SLOT_SALT_LEN, &sl->salt)
            || !tlv_bytes(rec, len, SLOT_TAG_WRAPPED, SLOT_WRAPPED_LEN, &sl->wrapped))
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        if (km__tlv_find(rec, len, SLOT_TAG_SELECTOR, &sl->selector, &n)) {
            if (n != 32 || !tlv_bytes(rec, len, SLOT_TAG_PID, 16, &sl->pid)
                || len != SLOT_PASS_REC_LEN + (5 + 32) + (5 + 16) + (sl->kp ? SLOT_KP_EXTRA : 0))
                return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        } else if (len != SLOT_PASS_REC_LEN + (sl->kp ? SLOT_KP_EXTRA : 0)) {
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        }
        if (kdf != SLOT_KDF_SCRYPT || sl->log2n < KM_KDF_COST_MIN
            || sl->log2n > KM_KDF_COST_MAX || r != SLOT_SCRYPT_R || p != SLOT_SCRYPT_P)
            return km__err(KM_E_CORRUPT, "keyslot %u has invalid parameters", id);
        break;
    case SLOT_TYPE_BACKEND:
        if (!km__tlv_find(rec, len, SLOT_TAG_BACKEND, (const uint8_t **)&sl->backend,
                          &sl->backend_len)
            || !km__tlv_find(rec, len, SLOT_TAG_BLOB, &sl->blob, &sl->blob_len)
            || sl->backend_len == 0 || sl->backend_len > 31 || sl->blob_len == 0
            || sl->blob_len > KM__SLOT_BLOB_MAX)
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        break;
    case SLOT_TYPE_SHAMIR:
        if (km__tlv_get_u32(rec, len, SLOT_TAG_M, &sl->m) != KM_OK
            || km__tlv_get_u32(rec, len, SLOT_TAG_N, &sl->n) != KM_OK
            || sl->m < 2 || sl->m > sl->n || sl->n > KM_SHARES_MAX
            || !tlv_bytes(rec, len, SLOT_TAG_SETID, 16, &sl->setid)
            || !tlv_bytes(rec, len, SLOT_TAG_HASHES, (size_t)sl->n * 32, &sl->hashes)
            || !tlv_bytes(rec, len, SLOT_TAG_WRAPPED, SLOT_WRAPPED_LEN, &sl->wrapped))
            return km__err(KM_E_CORRUPT, "keyslot %u is malformed", id);
        break;
    default:
        return KM_OK; /* type stays 0 */
    }
    sl->type = type;
    return KM_OK;
}

/* Walks the keyslots: each one's key checked and record parsed (a slot of
 * an unknown type has type 0), then fn. fn's non-zero return stops the walk
 * and is returned (a positive one too). */
typedef int (*slot_fn)(const any_slot *sl, void *arg);
typedef struct slot_walk {
    slot_fn fn;
    void *arg;
} slot_walk;

static int slot_walk_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                         void *arg)
{
    slot_walk *w = arg;
    any_slot sl;
    int rc;

    if (key_len != 4)
        return km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
    if ((rc = slot_parse(val, val_len, km__be32_get(key), &sl)) != KM_OK)
        return rc;
    rc = w->fn(&sl, w->arg);
    km_memzero(&sl, sizeof sl);
    return rc;
}

static int slots_walk(km__txn *t, slot_fn fn, void *arg)
{
    slot_walk w;

    w.fn = fn;
    w.arg = arg;
    return km__raw_iter(t, KM__T_SLOTS, NULL, 0, slot_walk_one, &w);
}

/* The highest keyslot id (the last key), and whether that key is well-formed. */
typedef struct slot_last {
    int any, bad;
    uint32_t id;
} slot_last;

static int slot_last_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                         void *arg)
{
    slot_last *l = arg;

    (void)val;
    (void)val_len;
    l->any = 1;
    l->bad = key_len != 4;
    l->id = key_len == 4 ? km__be32_get(key) : 0;
    return 0;
}

/* Writes `rec` (the fields) followed by its MAC entry at slot `id`. */
static int slot_write(km__txn *t, const km_secret *master, uint32_t id, const uint8_t *rec,
                      size_t len, unsigned flags)
{
    uint8_t idb[4], *full;
    int rc;

    if ((full = malloc(len + SLOT_MAC_ENTRY)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    memcpy(full, rec, len);
    full[len] = SLOT_TAG_MAC;
    km__be32_put(full + len + 1, SLOT_MAC_LEN);
    rc = slot_mac(master, id, rec, len, full + len + 5);
    km__be32_put(idb, id);
    if (rc == KM_OK)
        rc = km__raw_put(t, KM__T_SLOTS, idb, sizeof idb, full, len + SLOT_MAC_ENTRY, flags);
    free(full);
    return rc;
}

/* Writes `rec` as a new keyslot, one id past the highest, authenticated
 * under `master`. */
static int slot_put(km__txn *t, const km_secret *master, const uint8_t *rec, size_t len,
                    uint32_t *id_out)
{
    slot_last l;
    uint32_t id = 1;
    int rc;

    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    memset(&l, 0, sizeof l);
    if ((rc = km__raw_iter(t, KM__T_SLOTS, NULL, 0, slot_last_one, &l)) != KM_OK)
        return rc;
    if (l.any) {
        if (l.bad)
            return km__err(KM_E_CORRUPT, "keyslot table holds a malformed key");
        if ((id = l.id + 1) == 0)
            return km__err(KM_E_FULL, "no keyslot id left");
    }
    rc = slot_write(t, master, id, rec, len, KM__PUT_NOOVERWRITE);
    if (rc == KM_OK && id_out != NULL)
        *id_out = id;
    return rc;
}

/* The selector of a principal's slot: SHA-256("km-principal-v1" || salt || name). */
static int principal_selector(const uint8_t salt[SLOT_SALT_LEN], const char *name,
                              uint8_t out[32])
{
    static const char tag[] = "km-principal-v1";
    const uint8_t *parts[3] = { (const uint8_t *)tag, salt, (const uint8_t *)name };
    size_t lens[3] = { sizeof tag - 1, SLOT_SALT_LEN, strlen(name) };
    return km__sha256v(parts, lens, 3, out);
}

/* Ends a key-pair slot's record: a fresh X25519 key pair, its private half
 * wrapped under kek (the credential's 32-byte key), the master key wrapped
 * to its public half (km__x25519_kwp_wrap). */
static int kp_put(km__tlv_w *w, const uint8_t kek[SLOT_KEK_LEN], const km_secret *master)
{
    uint8_t pub[32], privw[SLOT_PRIVW_LEN], eph[32], wrapped[SLOT_WRAPPED_LEN];
    uint8_t *priv = km__salloc(32);
    size_t n1 = 0, n2 = 0;
    int rc;

    if (priv == NULL)
        return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
    if ((rc = km__x25519_keygen(priv, pub)) == KM_OK
        && (rc = km__kwp_wrap(kek, SLOT_KEK_LEN, priv, 32, privw, sizeof privw, &n1)) == KM_OK)
        rc = km__x25519_kwp_wrap(pub, km_secret_data(master), MASTER_LEN, eph, wrapped,
                                 sizeof wrapped, &n2);
    km__sfree(priv, 32);
    if (rc != KM_OK)
        return rc;
    if (n1 != SLOT_PRIVW_LEN || n2 != SLOT_WRAPPED_LEN)
        return km__err(KM_E_INTERNAL, "key wrap gave an unexpected length");
    km__tlv_put(w, SLOT_TAG_PUB, pub, sizeof pub);
    km__tlv_put(w, SLOT_TAG_PRIVW, privw, sizeof privw);
    km__tlv_put(w, SLOT_TAG_EPH, eph, sizeof eph);
    km__tlv_put(w, SLOT_TAG_WRAPPED, wrapped, sizeof wrapped);
    return km__tlv_end(w);
}

/* The key-pair record of a passphrase slot (kek: scrypt of the passphrase
 * under salt; sel and pid for a principal's, else NULL). */
static int pass_kp_record(km__tlv_w *w, uint32_t log2n, const uint8_t salt[SLOT_SALT_LEN],
                          const uint8_t *sel, const uint8_t *pid, const uint8_t *kek,
                          const km_secret *master)
{
    km__tlv_put_u32(w, SLOT_TAG_TYPE, SLOT_TYPE_KEYPAIR);
    km__tlv_put_u32(w, SLOT_TAG_CRED, SLOT_TYPE_PASSPHRASE);
    km__tlv_put_u32(w, SLOT_TAG_KDF, SLOT_KDF_SCRYPT);
    km__tlv_put_u32(w, SLOT_TAG_LOG2N, log2n);
    km__tlv_put_u32(w, SLOT_TAG_R, SLOT_SCRYPT_R);
    km__tlv_put_u32(w, SLOT_TAG_P, SLOT_SCRYPT_P);
    km__tlv_put(w, SLOT_TAG_SALT, salt, SLOT_SALT_LEN);
    if (sel != NULL) {
        km__tlv_put(w, SLOT_TAG_SELECTOR, sel, 32);
        km__tlv_put(w, SLOT_TAG_PID, pid, 16);
    }
    return kp_put(w, kek, master);
}

/* The key-pair record of a Shamir slot (kek: the combined secret). */
static int shamir_kp_record(km__tlv_w *w, unsigned m, unsigned n, const uint8_t setid[16],
                            const uint8_t *hashes, const uint8_t *kek, const km_secret *master)
{
    km__tlv_put_u32(w, SLOT_TAG_TYPE, SLOT_TYPE_KEYPAIR);
    km__tlv_put_u32(w, SLOT_TAG_CRED, SLOT_TYPE_SHAMIR);
    km__tlv_put_u32(w, SLOT_TAG_M, m);
    km__tlv_put_u32(w, SLOT_TAG_N, n);
    km__tlv_put(w, SLOT_TAG_SETID, setid, 16);
    km__tlv_put(w, SLOT_TAG_HASHES, hashes, (size_t)n * 32);
    return kp_put(w, kek, master);
}

/* The master key of a slot, with its credential's key: KM_E_INTEGRITY (nothing
 * recorded) when kek is not this slot's. */
static int slot_unwrap(const any_slot *sl, const uint8_t *kek, uint8_t mk[SLOT_WRAPPED_LEN],
                       size_t *mlen)
{
    uint8_t *priv;
    size_t plen = 0;
    int rc;

    if (!sl->kp)
        return km__kwp_unwrap(kek, SLOT_KEK_LEN, sl->wrapped, SLOT_WRAPPED_LEN, mk,
                              SLOT_WRAPPED_LEN, mlen);
    if ((priv = km__salloc(SLOT_PRIVW_LEN)) == NULL)
        return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
    rc = km__kwp_unwrap(kek, SLOT_KEK_LEN, sl->privw, SLOT_PRIVW_LEN, priv, SLOT_PRIVW_LEN,
                        &plen);
    if (rc == KM_OK && plen != 32)
        rc = km__err(KM_E_CORRUPT, "keyslot %u holds a key of the wrong length", sl->id);
    if (rc == KM_OK) {
        rc = km__x25519_kwp_unwrap(priv, sl->pub, sl->eph, sl->wrapped, SLOT_WRAPPED_LEN, mk,
                                   SLOT_WRAPPED_LEN, mlen);
        if (rc == KM_E_INTEGRITY || rc == KM_E_CRYPTO)
            rc = km__err(KM_E_CORRUPT, "keyslot %u: its key pair does not open the master key "
                                       "it holds", sl->id);
    }
    km__sfree(priv, SLOT_PRIVW_LEN);
    return rc;
}

int km__slot_add_principal(km__txn *t, const km_secret *master, const uint8_t *pass,
                           size_t pass_len, uint32_t log2n, const char *principal,
                           const uint8_t pid[16])
{
    uint8_t salt[SLOT_SALT_LEN], sel[32];
    uint8_t rec[SLOT_PASS_REC_LEN + (5 + 32) + (5 + 16) + SLOT_KP_EXTRA];
    uint8_t *kek = NULL;
    km__tlv_w w;
    int rc;

    if (t == NULL)
        return km__err(KM_E_INVALID, "keyslot: transaction is NULL");
    if (master == NULL || km_secret_len(master) != MASTER_LEN)
        return km__err(KM_E_INVALID, "keyslot: master must be a %d-byte secret", MASTER_LEN);
    if (pass == NULL || pass_len == 0 || pass_len > 1024)
        return km__err(KM_E_INVALID, "keyslot: passphrase must be 1 to 1024 bytes");
    if (log2n < KM_KDF_COST_MIN || log2n > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "keyslot: kdf cost must be %d to %d", KM_KDF_COST_MIN,
                       KM_KDF_COST_MAX);
    if ((principal == NULL) != (pid == NULL))
        return km__err(KM_E_INVALID, "keyslot: principal and its id go together");
    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    kek = km__salloc(SLOT_KEK_LEN);
    if (kek == NULL)
        return km__err(KM_E_NOMEM, "vault: cannot map secure memory");
    if ((rc = km__random(salt, sizeof salt)) != KM_OK)
        goto out;
    rc = km__scrypt(pass, pass_len, salt, sizeof salt, log2n, SLOT_SCRYPT_R, SLOT_SCRYPT_P, kek,
                    SLOT_KEK_LEN);
    if (rc != KM_OK)
        goto out;
    if (principal != NULL && (rc = principal_selector(salt, principal, sel)) != KM_OK)
        goto out;
    km__tlv_init(&w, rec, sizeof rec);
    rc = pass_kp_record(&w, log2n, salt, principal != NULL ? sel : NULL, pid, kek, master);
    if (rc == KM_OK)
        rc = slot_put(t, master, rec, w.len, NULL);
out:
    km__sfree(kek, SLOT_KEK_LEN);
    return rc;
}

int km__slot_add_passphrase(km__txn *t, const km_secret *master, const uint8_t *pass,
                            size_t pass_len, uint32_t log2n)
{
    return km__slot_add_principal(t, master, pass, pass_len, log2n, NULL, NULL);
}

int km__slot_add_backend(km__txn *t, const km_secret *master, const char *backend,
                         const uint8_t *blob, size_t blob_len)
{
    km__tlv_w w;
    uint8_t *rec;
    size_t cap, nlen = backend ? strlen(backend) : 0;
    int rc;

    if (t == NULL || nlen == 0 || nlen > 31 || blob == NULL || blob_len == 0
        || blob_len > KM__SLOT_BLOB_MAX)
        return km__err(KM_E_INVALID, "keyslot: bad backend slot arguments");
    cap = 64 + nlen + blob_len;
    if ((rec = malloc(cap)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    km__tlv_init(&w, rec, cap);
    km__tlv_put_u32(&w, SLOT_TAG_TYPE, SLOT_TYPE_BACKEND);
    km__tlv_put(&w, SLOT_TAG_BACKEND, backend, nlen);
    km__tlv_put(&w, SLOT_TAG_BLOB, blob, blob_len);
    rc = km__tlv_end(&w);
    if (rc == KM_OK)
        rc = slot_put(t, master, rec, w.len, NULL);
    free(rec);
    return rc;
}

/* The hash that names one share: SHA-256("km-share-v1" || setid || x || y). */
static int share_hash(const uint8_t setid[16], uint8_t x, const uint8_t *y, uint8_t out[32])
{
    static const char tag[] = "km-share-v1";
    const uint8_t *parts[4] = { (const uint8_t *)tag, setid, &x, y };
    size_t lens[4] = { sizeof tag - 1, 16, 1, KM__SHARE_Y_LEN };
    return km__sha256v(parts, lens, 4, out);
}

/* Share text: "kms1:" + base64url(1 | setid[16] | m | n | x | y[32]). */
#define SHARE_BIN_LEN (1 + 16 + 3 + KM__SHARE_Y_LEN)
#define SHARE_PREFIX "kms1:"

int km__slot_add_shamir(km__txn *t, const km_secret *master, unsigned m, unsigned n,
                        km_secret **shares)
{
    uint8_t setid[16], hashes[KM_SHARES_MAX * 32], bin[SHARE_BIN_LEN];
    uint8_t *secret = NULL, *ys = NULL, *rec = NULL;
    size_t cap, tlen, ylen = (size_t)n * KM__SHARE_Y_LEN;
    km__tlv_w w;
    unsigned i;
    int rc;

    for (i = 0; i < n && shares != NULL; i++)
        shares[i] = NULL;
    if (t == NULL || master == NULL || shares == NULL || m < 2 || m > n || n > KM_SHARES_MAX)
        return km__err(KM_E_INVALID, "keyslot: need 2 <= m <= n <= %d", KM_SHARES_MAX);
    secret = km__salloc(KM__SHARE_Y_LEN);
    ys = km__salloc(ylen);
    cap = 128 + SLOT_KP_EXTRA + (size_t)n * 32;
    rec = malloc(cap);
    if (secret == NULL || ys == NULL || rec == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    /* a random secret split in n; the slot holds the master key wrapped under it */
    if ((rc = km__random(secret, KM__SHARE_Y_LEN)) != KM_OK
        || (rc = km__random(setid, sizeof setid)) != KM_OK
        || (rc = km__shamir_split(secret, KM__SHARE_Y_LEN, m, n, ys)) != KM_OK)
        goto out;
    for (i = 0; i < n; i++)
        if ((rc = share_hash(setid, (uint8_t)(i + 1), ys + (size_t)i * KM__SHARE_Y_LEN,
                             hashes + (size_t)i * 32)) != KM_OK)
            goto out;
    km__tlv_init(&w, rec, cap);
    if ((rc = shamir_kp_record(&w, m, n, setid, hashes, secret, master)) != KM_OK
        || (rc = slot_put(t, master, rec, w.len, NULL)) != KM_OK)
        goto out;
    tlen = sizeof SHARE_PREFIX - 1 + km__b64url_encoded_len(SHARE_BIN_LEN);
    for (i = 0; i < n; i++) {
        bin[0] = 1;
        memcpy(bin + 1, setid, 16);
        bin[17] = (uint8_t)m;
        bin[18] = (uint8_t)n;
        bin[19] = (uint8_t)(i + 1);
        memcpy(bin + 20, ys + (size_t)i * KM__SHARE_Y_LEN, KM__SHARE_Y_LEN);
        if ((rc = km_secret_new(&shares[i], tlen)) != KM_OK)
            goto out;
        memcpy(km_secret_data(shares[i]), SHARE_PREFIX, sizeof SHARE_PREFIX - 1);
        km__b64url_encode(bin, sizeof bin, (char *)km_secret_data(shares[i])
                                               + sizeof SHARE_PREFIX - 1);
    }
out:
    km_memzero(bin, sizeof bin);
    km__sfree(secret, KM__SHARE_Y_LEN);
    km__sfree(ys, ylen);
    free(rec);
    if (rc != KM_OK)
        for (i = 0; i < n && shares != NULL; i++) {
            km_secret_free(shares[i]);
            shares[i] = NULL;
        }
    return rc;
}

/* Opens a Shamir slot with the shares given; KM_E_AUTH (naming the share)
 * when a share is not of this split or altered, or too few are given. */
static int shamir_open(const any_slot *sl, const char *const *shares, size_t count,
                       km_secret **master, uint8_t *kek_out)
{
    uint8_t xs[KM_SHARES_MAX], bin[SHARE_BIN_LEN + 2], h[32];
    uint8_t *ys = NULL, *secret = NULL, *mk = NULL;
    size_t i, j, k = 0, blen, mlen = 0, plen = sizeof SHARE_PREFIX - 1;
    int rc = KM_OK, mine = 0;

    ys = km__salloc((size_t)KM_SHARES_MAX * KM__SHARE_Y_LEN);
    secret = km__salloc(KM__SHARE_Y_LEN);
    mk = km__salloc(SLOT_WRAPPED_LEN);
    if (ys == NULL || secret == NULL || mk == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    for (i = 0; i < count; i++) {
        const char *s = shares[i];
        if (s == NULL || strncmp(s, SHARE_PREFIX, plen) != 0
            || km__b64url_decode(s + plen, strlen(s + plen), bin, sizeof bin, &blen) != KM_OK
            || blen != SHARE_BIN_LEN || bin[0] != 1) {
            rc = km__err(KM_E_INVALID, "share %zu is not a libkm share (kms1:...)", i + 1);
            goto out;
        }
        if (!km_ct_equal(bin + 1, sl->setid, 16))
            continue;                   /* a share of another split */
        mine++;
        if (bin[17] != sl->m || bin[18] != sl->n || bin[19] == 0 || bin[19] > sl->n) {
            rc = km__err(KM_E_AUTH, "share %zu does not match keyslot %u", i + 1, sl->id);
            goto out;
        }
        if ((rc = share_hash(sl->setid, bin[19], bin + 20, h)) != KM_OK)
            goto out;
        if (!km_ct_equal(h, sl->hashes + (size_t)(bin[19] - 1) * 32, 32)) {
            rc = km__err(KM_E_AUTH, "share %zu (number %u of keyslot %u) is altered or wrong",
                         i + 1, (unsigned)bin[19], sl->id);
            goto out;
        }
        for (j = 0; j < k; j++)
            if (xs[j] == bin[19])
                break;
        if (j < k)
            continue;                   /* the same share twice counts once */
        xs[k] = bin[19];
        memcpy(ys + k * KM__SHARE_Y_LEN, bin + 20, KM__SHARE_Y_LEN);
        k++;
    }
    if (mine == 0) {
        rc = KM_E_NOTFOUND;             /* not this slot's shares: try another */
        goto out;
    }
    if (k < sl->m) {
        rc = km__err(KM_E_AUTH, "keyslot %u needs %u distinct shares, %zu given", sl->id, sl->m,
                     k);
        goto out;
    }
    if ((rc = km__shamir_combine(xs, ys, (unsigned)sl->m, KM__SHARE_Y_LEN, secret)) != KM_OK)
        goto out;
    rc = slot_unwrap(sl, secret, mk, &mlen);
    if (rc == KM_E_INTEGRITY) {
        rc = km__err(KM_E_AUTH, "the shares do not open keyslot %u", sl->id);
        goto out;
    }
    if (rc == KM_OK && mlen != MASTER_LEN)
        rc = km__err(KM_E_CORRUPT, "keyslot %u holds a key of the wrong length", sl->id);
    if (rc == KM_OK)
        rc = km_secret_from(master, mk, MASTER_LEN);
    if (rc == KM_OK && kek_out != NULL)
        memcpy(kek_out, secret, SLOT_KEK_LEN);
out:
    km_memzero(bin, sizeof bin);
    km__sfree(ys, (size_t)KM_SHARES_MAX * KM__SHARE_Y_LEN);
    km__sfree(secret, KM__SHARE_Y_LEN);
    km__sfree(mk, SLOT_WRAPPED_LEN);
    return rc;
}

/* Tries one passphrase slot: KM_E_INTEGRITY when it is another passphrase's. */
static int pass_open(const any_slot *sl, const uint8_t *pass, size_t pass_len,
                     km_secret **master, uint8_t *kek_out)
{
    uint8_t *kek = km__salloc(SLOT_KEK_LEN), *mk = km__salloc(SLOT_WRAPPED_LEN);
    size_t mlen = 0;
    int rc;

    if (kek == NULL || mk == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: cannot map secure memory");
        goto out;
    }
    rc = km__scrypt(pass, pass_len, sl->salt, SLOT_SALT_LEN, sl->log2n, SLOT_SCRYPT_R,
                    SLOT_SCRYPT_P, kek, SLOT_KEK_LEN);
    if (rc != KM_OK)
        goto out;
    if ((rc = slot_unwrap(sl, kek, mk, &mlen)) != KM_OK)
        goto out;
    if (mlen != MASTER_LEN)
        rc = km__err(KM_E_CORRUPT, "keyslot %u holds a key of the wrong length", sl->id);
    else
        rc = km_secret_from(master, mk, MASTER_LEN);
    if (rc == KM_OK && kek_out != NULL)
        memcpy(kek_out, kek, SLOT_KEK_LEN);
out:
    km__sfree(kek, SLOT_KEK_LEN);
    km__sfree(mk, SLOT_WRAPPED_LEN);
    return rc;
}

int km__slot_unlock_mode(const km_open_options *o)
{
    if (o->passphrase != NULL)
        return SLOT_TYPE_PASSPHRASE;
    if (o->version >= 3 && o->slot_backend != NULL)
        return SLOT_TYPE_BACKEND;
    if (o->version >= 3 && o->share_count > 0)
        return SLOT_TYPE_SHAMIR;
    return 0;
}

/* km__slots_open's state over the walk. */
typedef struct slots_open_arg {
    const km_open_options *o;
    const km__slot_unsealer *unseal;
    const char *principal;
    int mode;
    km_secret **master;
    uint8_t *pid;
    unsigned nslots, tried;
    int soft_rc;                /* a device's reason for refusing its slot */
    const any_slot *decoy;      /* a principal slot whose cost an unknown name pays */
    any_slot decoy_copy;
    km__slot_conv *conv;        /* the slot of the older form that opened, or NULL */
    km_secret *kek;             /* its credential's key, when conv is asked for */
} slots_open_arg;

static int slot_count_one(const any_slot *sl, void *arg)
{
    slots_open_arg *a = arg;
    a->nslots++;
    /* the costliest principal slot: what opening under a name that has no
     * slot spends too, so that timing does not tell which names exist */
    if (sl->type == SLOT_TYPE_PASSPHRASE && sl->selector != NULL
        && (a->decoy == NULL || sl->log2n > a->decoy_copy.log2n)) {
        a->decoy_copy = *sl;
        a->decoy = &a->decoy_copy;
    }
    return 0;
}

/* Where a slot's open leaves its credential's key: a slot of the older form
 * is converted after the open (km__slot_convert), when the caller asks. */
static uint8_t *slot_kek_out(const slots_open_arg *a, const any_slot *sl)
{
    return !sl->kp && a->kek != NULL ? km_secret_data(a->kek) : NULL;
}

static void slot_conv_note(slots_open_arg *a, const any_slot *sl)
{
    if (sl->kp || a->kek == NULL)
        return;
    a->conv->id = sl->id;
    a->conv->kek = a->kek;
    a->kek = NULL;
}

/* Tries one slot: 0 to go on with the next, 1 when it opened, or an error
 * that ends the unlock. */
static int slot_try_one(const any_slot *sl, void *arg)
{
    slots_open_arg *a = arg;
    const km_open_options *o = a->o;
    uint8_t sel[32];
    char bname[32];
    int rc;

    if (sl->type != (uint32_t)a->mode)
        return 0;
    if (a->mode == SLOT_TYPE_PASSPHRASE) {
        if ((a->principal == NULL) != (sl->selector == NULL))
            return 0;
        if (a->principal != NULL) {
            if ((rc = principal_selector(sl->salt, a->principal, sel)) != KM_OK)
                return rc;
            if (!km_ct_equal(sel, sl->selector, 32))
                return 0;
        }
        a->tried++;
        rc = pass_open(sl, o->passphrase, o->passphrase_len, a->master, slot_kek_out(a, sl));
        if (rc == KM_E_INTEGRITY)
            return 0;   /* another passphrase's slot */
        if (rc != KM_OK)
            return rc;
        slot_conv_note(a, sl);
        if (sl->pid != NULL)
            memcpy(a->pid, sl->pid, 16);
        return 1;
    }
    if (a->mode == SLOT_TYPE_BACKEND) {
        if (sl->backend_len != strlen(o->slot_backend)
            || memcmp(sl->backend, o->slot_backend, sl->backend_len) != 0)
            return 0;
        a->tried++;
        memcpy(bname, sl->backend, sl->backend_len);
        bname[sl->backend_len] = '\0';
        if (a->unseal == NULL || a->unseal->fn == NULL)
            rc = km__err(KM_E_UNSUPPORTED, "no device can open keyslot %u here", sl->id);
        else
            rc = a->unseal->fn(a->unseal->arg, bname, o->slot_config, sl->blob, sl->blob_len,
                               a->master);
        if (rc == KM_OK && km_secret_len(*a->master) != MASTER_LEN) {
            km_secret_free(*a->master);
            *a->master = NULL;
            rc = km__err(KM_E_CORRUPT, "keyslot %u gave a key of the wrong length", sl->id);
        }
        if (rc == KM_OK)
            return 1;
        a->soft_rc = rc;   /* remember the device's reason; try the next slot */
        return 0;
    }
    rc = shamir_open(sl, o->shares, o->share_count, a->master, slot_kek_out(a, sl));
    if (rc == KM_E_NOTFOUND)
        return 0;
    a->tried++;
    if (rc == KM_OK)
        slot_conv_note(a, sl);
    return rc != KM_OK ? rc : 1;
}

static int slots_open_walk(km__txn *t, const km_open_options *o, const km__slot_unsealer *unseal,
                           km_secret **master, uint8_t pid[16], slots_open_arg *a);

int km__slots_open(km__txn *t, const km_open_options *o, const km__slot_unsealer *unseal,
                   km_secret **master, uint8_t pid[16], km__slot_conv *conv)
{
    slots_open_arg a;
    int rc;

    if (conv != NULL) {
        conv->id = 0;
        conv->kek = NULL;
    }
    memset(&a, 0, sizeof a);
    if (conv != NULL && (rc = km_secret_new(&a.kek, SLOT_KEK_LEN)) != KM_OK)
        return rc;
    a.conv = conv;
    rc = slots_open_walk(t, o, unseal, master, pid, &a);
    km_secret_free(a.kek);
    return rc;
}

/* km__slots_open with its state ready. */
static int slots_open_walk(km__txn *t, const km_open_options *o, const km__slot_unsealer *unseal,
                           km_secret **master, uint8_t pid[16], slots_open_arg *a)
{
    int rc;

    *master = NULL;
    memset(pid, 0, 16);
    a->o = o;
    a->unseal = unseal;
    a->principal = o->version >= 3 ? o->principal : NULL;
    a->mode = km__slot_unlock_mode(o);
    a->master = master;
    a->pid = pid;
    /* every slot is validated before any KDF or device call runs */
    if ((rc = slots_walk(t, slot_count_one, a)) != KM_OK)
        return rc;
    if (a->nslots == 0)
        return km__err(KM_E_CORRUPT, "the vault has no keyslot");
    rc = slots_walk(t, slot_try_one, a);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return KM_OK;
    if (a->mode == SLOT_TYPE_BACKEND && a->soft_rc != KM_OK && a->soft_rc != KM_E_AUTH)
        return a->soft_rc;       /* km_error_last still names the device's failure */
    if (a->mode == SLOT_TYPE_PASSPHRASE && a->principal != NULL && a->tried == 0) {
        /* no slot of that name: pay one slot's KDF anyway (and fail), so
         * that an unknown name answers as slowly as a wrong passphrase */
        if (a->decoy != NULL && o->passphrase != NULL) {
            km_secret *discard = NULL;
            (void)pass_open(a->decoy, o->passphrase, o->passphrase_len, &discard, NULL);
            km_secret_free(discard);
        }
        return km__err(KM_E_AUTH, "no keyslot for this principal opens with this passphrase");
    }
    if (a->mode == SLOT_TYPE_PASSPHRASE)
        return km__err(KM_E_AUTH, "no keyslot opens with this passphrase");
    if (a->mode == SLOT_TYPE_BACKEND)
        return km__err(KM_E_AUTH, a->tried ? "no %s keyslot opens on this device"
                                          : "the vault has no %s keyslot", o->slot_backend);
    return km__err(KM_E_AUTH, "no keyslot opens with these shares");
}

/* slots_remove's walk: the slots `want` selects (1 = owner passphrase
 * slots, 2 = the passphrase slots of principal pid), and how many in all. */
typedef struct slots_sel {
    int want;
    const uint8_t *pid;
    unsigned total, hit;
    uint32_t *ids;
    size_t cap;
} slots_sel;

static int slot_select_one(const any_slot *sl, void *arg)
{
    slots_sel *a = arg;
    uint32_t *p;

    a->total++;
    if (sl->type != SLOT_TYPE_PASSPHRASE
        || !(a->want == 1 ? sl->pid == NULL : sl->pid != NULL && km_ct_equal(sl->pid, a->pid, 16)))
        return 0;
    if (a->hit == a->cap) {
        p = realloc(a->ids, (a->cap ? a->cap * 2 : 8) * sizeof *p);
        if (p == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        a->ids = p;
        a->cap = a->cap ? a->cap * 2 : 8;
    }
    a->ids[a->hit++] = sl->id;
    return 0;
}

/* slots_keeper's walk over the slots a removal leaves: pass 0 looks for a
 * passphrase (owner or principal) or Shamir slot, whose credential is held
 * elsewhere; pass 1 asks each device slot's device to unseal it now, and
 * takes one that gives this vault's master key. */
typedef struct keeper_arg {
    const slots_sel *sel;
    const km__slot_unsealer *check;
    const km_secret *master;
    int pass, found;
    char why[200];
} keeper_arg;

static int slot_keeper_one(const any_slot *sl, void *arg)
{
    keeper_arg *k = arg;
    km_secret *m = NULL;
    char bname[32];
    size_t i;
    int rc;

    for (i = 0; i < k->sel->hit; i++)
        if (k->sel->ids[i] == sl->id)
            return 0;   /* one of those being removed */
    if (k->pass == 0) {
        k->found = sl->type == SLOT_TYPE_PASSPHRASE || sl->type == SLOT_TYPE_SHAMIR;
        return k->found;
    }
    if (sl->type != SLOT_TYPE_BACKEND)
        return 0;
    memcpy(bname, sl->backend, sl->backend_len);
    bname[sl->backend_len] = '\0';
    rc = k->check->fn(k->check->arg, bname, NULL, sl->blob, sl->blob_len, &m);
    k->found = rc == KM_OK && km_secret_len(m) == MASTER_LEN
               && km_ct_equal(km_secret_data(m), km_secret_data(k->master), MASTER_LEN);
    if (!k->found)
        snprintf(k->why, sizeof k->why, "keyslot %u (%s): %s", sl->id, bname,
                 rc == KM_OK ? "its device gives another key" : km_error_last()->message);
    km_secret_free(m);
    return k->found;
}

/* Whether a slot left after removing the selection opens the vault now. */
static int slots_keeper(km__txn *t, const slots_sel *sel, const km__slot_unsealer *check,
                        const km_secret *master)
{
    keeper_arg k;
    int rc;

    memset(&k, 0, sizeof k);
    k.sel = sel;
    k.check = check;
    k.master = master;
    for (k.pass = 0; k.pass < 2 && !k.found; k.pass++)
        if ((rc = slots_walk(t, slot_keeper_one, &k)) < 0)
            return rc;
    if (k.found)
        return KM_OK;
    return km__err(KM_E_STATE, "removing these keyslots would lock the vault: no keyslot left "
                               "opens it now (%s); add a passphrase or shares first",
                   k.why[0] ? k.why : "none but of unknown types");
}

/* Deletes the slots `want` selects (slots_sel). Refuses to leave the vault
 * without a keyslot, and, with `check`, without one that opens it now. */
static int slots_remove(km__txn *t, int want, const uint8_t pid[16],
                        const km__slot_unsealer *check, const km_secret *master)
{
    slots_sel a;
    uint8_t idb[4];
    unsigned i;
    int rc;

    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    memset(&a, 0, sizeof a);
    a.want = want;
    a.pid = pid;
    if ((rc = slots_walk(t, slot_select_one, &a)) != KM_OK)
        goto out;
    if (a.hit == 0) {
        rc = km__err(KM_E_NOTFOUND, want == 1 ? "the vault has no owner passphrase slot"
                                              : "the principal has no keyslot");
        goto out;
    }
    if (a.hit == a.total) {
        rc = km__err(KM_E_STATE, "removing these keyslots would leave the vault with none");
        goto out;
    }
    if (check != NULL && (rc = slots_keeper(t, &a, check, master)) != KM_OK)
        goto out;
    for (i = 0; i < a.hit; i++) {
        km__be32_put(idb, a.ids[i]);
        if ((rc = km__raw_del(t, KM__T_SLOTS, idb, sizeof idb)) != KM_OK)
            goto out;
    }
out:
    free(a.ids);
    return rc;
}

/* ------------------------------------------------ keyslot authentication */

static int slot_verify_one(const any_slot *sl, void *arg)
{
    return slot_mac_check(sl, arg);
}

int km__slots_verify(km__txn *t, const km_secret *master)
{
    return slots_walk(t, slot_verify_one, (void *)(uintptr_t)master);
}

/* km__slots_authenticate's walk: each slot written back as its fields and a
 * fresh MAC (the key it was given: the one the walk is at). */
typedef struct slots_auth_arg {
    km__txn *t;
    const km_secret *master;
} slots_auth_arg;

static int slot_auth_one(const any_slot *sl, void *arg)
{
    slots_auth_arg *a = arg;
    return slot_write(a->t, a->master, sl->id, sl->body, sl->body_len, 0);
}

int km__slots_authenticate(km__txn *t, const km_secret *master)
{
    slots_auth_arg a;
    int rc;

    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    a.t = t;
    a.master = master;
    return slots_walk(t, slot_auth_one, &a);
}

/* km__slot_backend_names's walk. */
typedef struct backend_names_arg {
    char (*names)[32];
    size_t cap, *n, *total;
} backend_names_arg;

static int slot_backend_one(const any_slot *sl, void *arg)
{
    backend_names_arg *a = arg;
    size_t i;

    if (sl->type != SLOT_TYPE_BACKEND || sl->backend_len == 0 || sl->backend_len > 31)
        return 0;
    (*a->total)++;
    for (i = 0; i < *a->n; i++)
        if (strlen(a->names[i]) == sl->backend_len
            && memcmp(a->names[i], sl->backend, sl->backend_len) == 0)
            break;
    if (i < *a->n || *a->n == a->cap)
        return 0;   /* one re-seal per backend */
    memcpy(a->names[*a->n], sl->backend, sl->backend_len);
    a->names[*a->n][sl->backend_len] = '\0';
    (*a->n)++;
    return 0;
}

int km__slot_backend_names(km__txn *t, char names[][32], size_t cap, size_t *n, size_t *total)
{
    backend_names_arg a;

    *n = *total = 0;
    a.names = names;
    a.cap = cap;
    a.n = n;
    a.total = total;
    return slots_walk(t, slot_backend_one, &a);
}

int km__slot_remove_principal(km__txn *t, const uint8_t pid[16], const km__slot_unsealer *check,
                              const km_secret *master)
{
    return slots_remove(t, 2, pid, check, master);
}

int km__slot_remove_owner(km__txn *t, const km__slot_unsealer *check, const km_secret *master)
{
    return slots_remove(t, 1, NULL, check, master);
}

/* ------------------------------------------------------ key-pair slots */

/* km__slot_convert's walk: the slot of cv->id rewritten in key-pair form,
 * when it still is of the older form and cv->kek still opens it. */
typedef struct conv_arg {
    km__txn *t;
    const km_secret *master;
    const km__slot_conv *cv;
} conv_arg;

static int slot_convert_one(const any_slot *sl, void *arg)
{
    conv_arg *a = arg;
    const uint8_t *kek = km_secret_data(a->cv->kek);
    uint8_t *mk = NULL, *rec = NULL;
    size_t mlen = 0, cap = 256 + SLOT_KP_EXTRA + (size_t)KM_SHARES_MAX * 32;
    km__tlv_w w;
    int rc;

    if (sl->id != a->cv->id)
        return 0;
    if (sl->kp || (sl->type != SLOT_TYPE_PASSPHRASE && sl->type != SLOT_TYPE_SHAMIR))
        return 1;       /* converted by another opener meanwhile */
    if (sl->mac != NULL && (rc = slot_mac_check(sl, a->master)) != KM_OK)
        return rc;
    mk = km__salloc(SLOT_WRAPPED_LEN);
    rec = malloc(cap);
    if (mk == NULL || rec == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    /* the credential's key still opens this slot to this master key */
    rc = slot_unwrap(sl, kek, mk, &mlen);
    if (rc != KM_OK || mlen != MASTER_LEN
        || !km_ct_equal(mk, km_secret_data(a->master), MASTER_LEN)) {
        km_error_clear();
        rc = 1;         /* changed meanwhile: left as it is */
        goto out;
    }
    km__tlv_init(&w, rec, cap);
    if (sl->type == SLOT_TYPE_PASSPHRASE)
        rc = pass_kp_record(&w, sl->log2n, sl->salt, sl->selector, sl->pid, kek, a->master);
    else
        rc = shamir_kp_record(&w, sl->m, sl->n, sl->setid, sl->hashes, kek, a->master);
    if (rc == KM_OK)
        rc = slot_write(a->t, a->master, sl->id, rec, w.len, 0);
    if (rc == KM_OK)
        rc = 1;
out:
    km__sfree(mk, SLOT_WRAPPED_LEN);
    free(rec);
    return rc;
}

int km__slot_convert(km__txn *t, const km_secret *master, const km__slot_conv *cv)
{
    conv_arg a;
    int rc;

    if (cv == NULL || cv->kek == NULL || km_secret_len(cv->kek) != SLOT_KEK_LEN)
        return KM_OK;
    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    a.t = t;
    a.master = master;
    a.cv = cv;
    rc = slots_walk(t, slot_convert_one, &a);
    return rc > 0 ? KM_OK : rc;
}

/* km__slots_rewrap's walk. */
typedef struct rewrap_arg {
    km__txn *t;
    const km_secret *old_master, *new_master;
    uint32_t *drop;             /* device slots: deleted after the walk */
    size_t ndrop, cap;
} rewrap_arg;

static int slot_rewrap_one(const any_slot *sl, void *arg)
{
    rewrap_arg *a = arg;
    uint8_t *buf;
    size_t n = 0;
    int rc;

    if ((rc = slot_mac_check(sl, a->old_master)) != KM_OK)
        return rc;
    if (sl->type == SLOT_TYPE_BACKEND) {
        if (a->ndrop == a->cap) {
            uint32_t *p = realloc(a->drop, (a->cap ? a->cap * 2 : 8) * sizeof *p);
            if (p == NULL)
                return km__err(KM_E_NOMEM, "out of memory");
            a->drop = p;
            a->cap = a->cap ? a->cap * 2 : 8;
        }
        a->drop[a->ndrop++] = sl->id;
        return 0;
    }
    if (sl->type == 0)
        return km__err(KM_E_STATE, "keyslot %u is of a type this libkm does not know: a new "
                                   "master key cannot be wrapped for it", sl->id);
    if (!sl->kp)
        return km__err(KM_E_STATE, "keyslot %u (%s) is of the older form, which a new master "
                                   "key cannot be wrapped for without its credential: open the "
                                   "vault with it once (that converts it) or remove it first",
                       sl->id, sl->type == SLOT_TYPE_SHAMIR ? "a share set"
                               : sl->pid != NULL ? "a principal's passphrase"
                                                 : "an owner passphrase");
    /* the same fields, a fresh ephemeral key and the new master wrapped to
     * the slot's public key in place of the old ones */
    if ((buf = malloc(sl->body_len)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    memcpy(buf, sl->body, sl->body_len);
    rc = km__x25519_kwp_wrap(sl->pub, km_secret_data(a->new_master), MASTER_LEN,
                             buf + (sl->eph - sl->body), buf + (sl->wrapped - sl->body),
                             SLOT_WRAPPED_LEN, &n);
    if (rc == KM_OK && n != SLOT_WRAPPED_LEN)
        rc = km__err(KM_E_INTERNAL, "key wrap gave an unexpected length");
    if (rc == KM_OK)
        rc = slot_write(a->t, a->new_master, sl->id, buf, sl->body_len, 0);
    free(buf);
    return rc;
}

int km__slots_rewrap(km__txn *t, const km_secret *old_master, const km_secret *new_master)
{
    rewrap_arg a;
    uint8_t idb[4];
    size_t i;
    int rc;

    if ((rc = km__txn_writable("keyslot", t)) != KM_OK)
        return rc;
    memset(&a, 0, sizeof a);
    a.t = t;
    a.old_master = old_master;
    a.new_master = new_master;
    rc = slots_walk(t, slot_rewrap_one, &a);
    for (i = 0; rc == KM_OK && i < a.ndrop; i++) {
        km__be32_put(idb, a.drop[i]);
        rc = km__raw_del(t, KM__T_SLOTS, idb, sizeof idb);
    }
    free(a.drop);
    return rc;
}
