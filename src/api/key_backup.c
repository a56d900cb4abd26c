/* key_backup.c - one key moved with its history (km/distribute.h: km_key_backup,
 * km_key_restore; the format is docs/FORMATS.md "Key backup"). The backup is
 * AES-256-GCM under a fresh 32-byte key, itself wrapped to the receiving
 * vault's import wrapping key (RSA-OAEP + AES-KWP, what km_key_import_wrapped
 * reads) or with AES-KWP under an scrypt key of a passphrase. Every header
 * byte is authenticated data of the GCM, so an altered backup, a wrong
 * passphrase or another vault's backup fails before anything is written. */
#include "core.h"
#include "crypto_int.h"
#include "prim.h"
#include "km/quorum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KB_MAGIC0 'K'
#define KB_MAGIC1 'B'
#define KB_FORMAT 1
#define KB_TO_VAULT 1
#define KB_PASSPHRASE 2
#define KB_LOG2N 15              /* scrypt N = 2^15, r = 8, p = 1 */
#define KB_HEAD 71               /* bytes before the wrapped key W */
#define KB_MAX (16u << 20)       /* largest backup read */
#define KB_PASS_PARAMS "passphrase"

/* Payload TLV tags. */
enum { KB_T_KEY = 1, KB_T_VERSIONS = 2, KB_T_MATERIAL = 3, KB_T_COUNTERS = 4 };

/* A growing buffer. */
typedef struct kbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} kbuf;

static void kb_put(kbuf *b, const void *d, size_t n)
{
    if (b->oom || n == 0) /* an empty part may have no buffer: memcpy from NULL */
        return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 1024;
        uint8_t *np;
        while (cap - b->n < n)
            cap *= 2;
        if ((np = km__salloc(cap)) == NULL) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL) {
            memcpy(np, b->p, b->n);
            km__sfree(b->p, b->cap);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void kb_u32(kbuf *b, uint32_t v)
{
    uint8_t x[4];
    km__be32_put(x, v);
    kb_put(b, x, 4);
}

static void kb_free(kbuf *b)
{
    if (b->p != NULL)
        km__sfree(b->p, b->cap);
    memset(b, 0, sizeof *b);
}

/* The payload of key k read in one snapshot: tlv(1 key record),
 * tlv(2 n x (u32 len || version record)), tlv(3 n x (u32 version || u32 len ||
 * reference)), tlv(4 n x (u32 version || u64 invocations || u64 bytes)). */
static int read_payload(km__kobj *k, kbuf *out, uint32_t *nv)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    kbuf vers = { 0 }, mats = { 0 }, ctrs = { 0 };
    uint32_t i, n = 0;
    uint8_t hdr[5];
    int rc;

    if ((rc = km__txn_begin(k->ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, k->ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK && (km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK
                        || km__tlv_get_u32(km_secret_data(rec), km_secret_len(rec),
                                           KM__K_NVERSIONS, &n) != KM_OK || n > KM__VERSIONS_MAX))
        rc = km__err(KM_E_CORRUPT, "key record: bad version count");
    /* the version records: the key record's own list (vault format 5), in
     * the payload's layout */
    if (rc == KM_OK && (rc = km__keyrec_vers(km_secret_data(rec), km_secret_len(rec), NULL, NULL))
                           == KM_OK) {
        const uint8_t *l = NULL;
        size_t ll = 0;
        (void)km__tlv_find(km_secret_data(rec), km_secret_len(rec), KM__K_VERSIONS, &l, &ll);
        kb_put(&vers, l, ll);
    }
    for (i = 1; rc == KM_OK && i <= n; i++) {
        uint8_t vk[20];
        km_secret *r = NULL;
        km__vkey(vk, k->id, i);
        {
            rc = km__rec_get(t, k->ctx->sealer, KM__T_MATERIAL, vk, 20, &r);
            if (rc == KM_OK) {
                kb_u32(&mats, i);
                kb_u32(&mats, (uint32_t)km_secret_len(r));
                kb_put(&mats, km_secret_data(r), km_secret_len(r));
            }
            if (rc == KM_E_NOTFOUND) /* destroyed: no material */
                rc = KM_OK;
            km_secret_free(r);
            r = NULL;
        }
        if (rc == KM_OK) {
            rc = km__rec_get(t, k->ctx->sealer, KM__T_COUNTERS, vk, 20, &r);
            if (rc == KM_OK) {
                kb_u32(&ctrs, i);
                kb_u32(&ctrs, (uint32_t)km_secret_len(r));
                kb_put(&ctrs, km_secret_data(r), km_secret_len(r));
            }
            if (rc == KM_E_NOTFOUND)
                rc = KM_OK;
            km_secret_free(r);
        }
    }
    km__txn_abort(t);
    if (rc == KM_OK) {
        const kbuf *parts[3] = { &vers, &mats, &ctrs };
        hdr[0] = KB_T_KEY;
        km__be32_put(hdr + 1, (uint32_t)km_secret_len(rec));
        kb_put(out, hdr, 5);
        kb_put(out, km_secret_data(rec), km_secret_len(rec));
        for (i = 0; i < 3; i++) {
            hdr[0] = (uint8_t)(KB_T_VERSIONS + i);
            km__be32_put(hdr + 1, (uint32_t)parts[i]->n);
            kb_put(out, hdr, 5);
            kb_put(out, parts[i]->p, parts[i]->n);
        }
        if (out->oom || vers.oom || mats.oom || ctrs.oom)
            rc = km__err(KM_E_NOMEM, "out of memory");
    }
    km_secret_free(rec);
    kb_free(&vers);
    kb_free(&mats);
    kb_free(&ctrs);
    *nv = n;
    return rc;
}

/* The 32-byte key of a passphrase backup's wrapping: scrypt(pass, salt). */
static int pass_kek(const uint8_t *pass, size_t pass_len, const uint8_t salt[32], uint32_t log2n,
                    uint8_t kek[32])
{
    return km__scrypt(pass, pass_len, salt, 32, log2n, 8, 1, kek, 32);
}

int km_key_backup(km_key *key, const uint8_t *recipient, size_t recipient_len,
                  const uint8_t *pass, size_t pass_len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_BACKUP, key, recipient, recipient_len, pass, pass_len, out, out_cap, out_len);
    uint8_t bkey[32], kek[32], head[KB_HEAD], w[1024], nonce[12], *aad = NULL;
    size_t wl = 0, need;
    kbuf pl = { 0 };
    km__kobj *k;
    km__txn *t = NULL;
    uint32_t nv = 0;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_key_backup: out_len is NULL");
    *out_len = 0;
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_backup: key is NULL");
    if ((recipient != NULL && recipient_len > 0) == (pass != NULL && pass_len > 0))
        return km__err(KM_E_INVALID, "km_key_backup: give either the receiving vault's wrapping "
                                     "key or a passphrase");
    if (pass != NULL) {
        uint32_t cost = KB_LOG2N;
        if ((rc = km__pass_args("km_key_backup", pass, pass_len, &cost)) != KM_OK)
            return rc;
    }
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->session)
        return km__err(KM_E_UNSUPPORTED, "a session key is not backed up");
    if (!(k->flags & KM_KEY_EXPORTABLE))
        return km__err(KM_E_POLICY, "key '%s' was not created exportable: it is not backed up",
                       k->name);
    if (strcmp(k->protection, "software") != 0)
        return km__err(KM_E_UNSUPPORTED, "keys protected by '%s' are not backed up by libkm",
                       k->protection);
    if ((rc = km__acl_check(k->ctx, KM__OP_EXPORT, k)) != KM_OK)
        return rc;

    memset(head, 0, sizeof head);
    head[0] = KB_MAGIC0;
    head[1] = KB_MAGIC1;
    head[2] = KB_FORMAT;
    head[3] = pass != NULL ? KB_PASSPHRASE : KB_TO_VAULT;
    memcpy(head + 4, k->id, 16);
    memcpy(head + 20, k->ctx->vault_id, 16);
    if ((rc = km__random(bkey, 32)) != KM_OK || (rc = km__random(nonce, 12)) != KM_OK)
        goto out;
    if (pass != NULL) {
        head[36] = KB_LOG2N;
        if ((rc = km__random(head + 37, 32)) != KM_OK
            || (rc = pass_kek(pass, pass_len, head + 37, KB_LOG2N, kek)) != KM_OK
            || (rc = km__kwp_wrap(kek, 32, bkey, 32, w, sizeof w, &wl)) != KM_OK)
            goto out;
    } else if ((rc = km__rsa_oaep_kwp_wrap(recipient, recipient_len, bkey, 32, w, sizeof w, &wl))
               != KM_OK) {
        goto out;
    }
    head[69] = (uint8_t)(wl >> 8);
    head[70] = (uint8_t)wl;
    if ((rc = read_payload(k, &pl, &nv)) != KM_OK)
        goto out;
    need = KB_HEAD + wl + 12 + pl.n + 16;
    *out_len = need;
    if (out == NULL || out_cap < need) {
        rc = km__err(KM_E_BUFFER, "km_key_backup: needs %zu bytes", need);
        goto out;
    }
    /* the export's dual control and audit entry, before the bytes leave */
    if ((rc = km__wtxn_begin(k->ctx, &t)) != KM_OK)
        goto out;
    rc = km__quorum_consume_key(k->ctx, t, KM_REQ_EXPORT, k,
                                pass != NULL ? (const uint8_t *)KB_PASS_PARAMS : recipient,
                                pass != NULL ? sizeof KB_PASS_PARAMS - 1 : recipient_len);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        goto out;
    }
    {
        char d[160];
        snprintf(d, sizeof d, "'%.64s' backed up (%u versions) %s", k->name, nv,
                 pass != NULL ? "under a passphrase" : "to a vault's wrapping key");
        if ((rc = km__wtxn_commit(k->ctx, t, KM__OP_EXPORT, k->id, 0, d)) != KM_OK)
            goto out;
    }
    memcpy(out, head, KB_HEAD);
    memcpy(out + KB_HEAD, w, wl);
    memcpy(out + KB_HEAD + wl, nonce, 12);
    aad = out; /* everything before the ciphertext */
    rc = km__gcm_seal(bkey, nonce, aad, KB_HEAD + wl + 12, pl.p, pl.n, out + KB_HEAD + wl + 12,
                      out + KB_HEAD + wl + 12 + pl.n);
    if (rc != KM_OK)
        km_memzero(out, need);
out:
    if (rc != KM_OK && rc != KM_E_BUFFER)
        *out_len = 0;
    km_memzero(bkey, sizeof bkey);
    km_memzero(kek, sizeof kek);
    kb_free(&pl);
    return rc;
}

/* ------------------------------------------------------------- restore */

/* Walks a list of (u32 a || ...) entries: *off advances; KM_E_INVALID past the end. */
static int get_u32(const uint8_t *p, size_t n, size_t *off, uint32_t *v)
{
    if (n - *off < 4)
        return km__err(KM_E_INVALID, "backup: truncated list");
    *v = km__be32_get(p + *off);
    *off += 4;
    return KM_OK;
}

typedef struct kplain {
    const uint8_t *key, *vers, *mats, *ctrs;
    size_t key_n, vers_n, mats_n, ctrs_n;
} kplain;

static int open_backup(km_ctx *ctx, const uint8_t *b, size_t n, const uint8_t *pass,
                       size_t pass_len, uint8_t **plain, size_t *plain_len)
{
    uint8_t bkey[64], kek[32];
    km_secret *bk = NULL;
    size_t wl, off, cl, got = 0;
    int rc;

    if (n < KB_HEAD + 12 + 16 || b[0] != KB_MAGIC0 || b[1] != KB_MAGIC1)
        return km__err(KM_E_INVALID, "not a libkm key backup");
    if (b[2] != KB_FORMAT)
        return km__err(KM_E_UNSUPPORTED, "key backup format %u is not supported", b[2]);
    wl = ((size_t)b[69] << 8) | b[70];
    if (n < KB_HEAD + wl + 12 + 16)
        return km__err(KM_E_INVALID, "key backup: truncated");
    if (b[3] == KB_PASSPHRASE) {
        if (pass == NULL || pass_len == 0)
            return km__err(KM_E_INVALID, "this key backup is under a passphrase: give it");
        if (b[36] < 14 || b[36] > 22)
            return km__err(KM_E_INVALID, "key backup: scrypt cost out of range");
        if ((rc = pass_kek(pass, pass_len, b + 37, b[36], kek)) != KM_OK)
            return rc;
        rc = km__kwp_unwrap(kek, 32, b + KB_HEAD, wl, bkey, sizeof bkey, &got);
        km_memzero(kek, sizeof kek);
        if (rc == KM_OK && got != 32)
            rc = KM_E_INTEGRITY;
        if (rc != KM_OK)
            return km__err(KM_E_INTEGRITY, "the key backup does not open with this passphrase "
                                           "(wrong, or the backup was altered)");
    } else if (b[3] == KB_TO_VAULT) {
        if (pass != NULL && pass_len > 0)
            return km__err(KM_E_INVALID, "this key backup is wrapped to a vault, not under a "
                                         "passphrase");
        rc = km__unwrap_blob(ctx, KM_WRAP_RSA_OAEP_KWP, b + KB_HEAD, wl, &bk);
        if (rc == KM_OK && km_secret_len(bk) != 32)
            rc = KM_E_INTEGRITY;
        if (rc == KM_OK)
            memcpy(bkey, km_secret_data(bk), 32);
        km_secret_free(bk);
        if (rc == KM_E_NOTFOUND)
            return km__err(KM_E_INTEGRITY, "the key backup is wrapped to another vault (this one "
                                           "has no import wrapping key)");
        if (rc != KM_OK)
            return km__err(KM_E_INTEGRITY, "the key backup is wrapped to another vault's wrapping "
                                           "key, or was altered");
    } else {
        return km__err(KM_E_INVALID, "key backup: unknown protection %u", b[3]);
    }
    off = KB_HEAD + wl;
    cl = n - off - 12 - 16;
    if ((*plain = km__salloc(cl ? cl : 1)) == NULL) {
        km_memzero(bkey, sizeof bkey);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    rc = km__gcm_open(bkey, b + off, b, off + 12, b + off + 12, cl, b + off + 12 + cl, *plain);
    km_memzero(bkey, sizeof bkey);
    if (rc != KM_OK) {
        km__sfree(*plain, cl ? cl : 1);
        *plain = NULL;
        return km__err(KM_E_INTEGRITY, "the key backup was altered");
    }
    *plain_len = cl;
    return KM_OK;
}

/* Writes the restored key in one transaction. */
static int restore_write(km_ctx *ctx, const uint8_t id[16], const kplain *p, const char *name,
                         uint32_t nvers, const uint8_t src_vault[16])
{
    static const uint8_t drop[] = { KM__K_NAME, KM__K_ALIASES, KM__K_VERSIONS };
    km__txn *t = NULL;
    uint8_t h[32], vk[20], *kb = NULL;
    size_t off, kl = p->key_n + p->vers_n + strlen(name) + 32;
    km__tlv_w w;
    int rc;

    if ((kb = malloc(kl)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    km__tlv_init(&w, kb, kl);
    km__tlv_copy_except(&w, p->key, p->key_n, drop, sizeof drop);
    km__tlv_put_str(&w, KM__K_NAME, name);
    /* the versions into the record's own list (vault format 5), whichever
     * format the backup's key record came from */
    km__tlv_put(&w, KM__K_VERSIONS, p->vers, p->vers_n);
    (void)nvers;
    if ((rc = km__tlv_end(&w)) != KM_OK
        || (rc = km__keyrec_vers(kb, w.len, NULL, NULL)) != KM_OK
        || (rc = km__sealer_name_hash(ctx->sealer, name, strlen(name), h)) != KM_OK
        || (rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        goto out;
    rc = km__rec_put(t, ctx->sealer, KM__T_NAMES, h, 32, id, 16, KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS)
        rc = km__err(KM_E_EXISTS, "the name '%s' is taken in this vault: restore under another",
                     name);
    if (rc == KM_OK) {
        rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id, 16, kb, w.len, KM__PUT_NOOVERWRITE);
        if (rc == KM_E_EXISTS)
            rc = km__err(KM_E_EXISTS, "this key (its id) is in this vault already");
    }
    for (off = 0; rc == KM_OK && off < p->mats_n;) {
        uint32_t v = 0, l = 0;
        if ((rc = get_u32(p->mats, p->mats_n, &off, &v)) == KM_OK
            && (rc = get_u32(p->mats, p->mats_n, &off, &l)) == KM_OK) {
            km__vkey(vk, id, v);
            rc = km__rec_put(t, ctx->sealer, KM__T_MATERIAL, vk, 20, p->mats + off, l,
                             KM__PUT_NOOVERWRITE);
            off += l;
        }
    }
    for (off = 0; rc == KM_OK && off < p->ctrs_n;) {
        uint32_t v = 0, l = 0;
        if ((rc = get_u32(p->ctrs, p->ctrs_n, &off, &v)) == KM_OK
            && (rc = get_u32(p->ctrs, p->ctrs_n, &off, &l)) == KM_OK) {
            km__vkey(vk, id, v);
            rc = km__rec_put(t, ctx->sealer, KM__T_COUNTERS, vk, 20, p->ctrs + off, l, 0);
            off += l;
        }
    }
    if (rc == KM_OK)
        rc = km__acl_set_owner(ctx, t, id);
    if (rc == KM_OK) {
        char d[160];
        snprintf(d, sizeof d, "'%.64s' restored (%u versions) from a backup of vault "
                              "%02x%02x%02x%02x..", name, nvers, src_vault[0], src_vault[1],
                 src_vault[2], src_vault[3]);
        rc = km__wtxn_commit(ctx, t, KM__OP_KEY_IMPORT, id, 0, d);
        t = NULL;
    }
    km__wtxn_abort(t);
out:
    free(kb);
    return rc;
}

/* Checks the decrypted payload: its parts, the key record (its id is the
 * header's), every version record, material and counters entries within
 * the key's versions, every list well formed. */
static int check_payload(km_ctx *ctx, const uint8_t *pl, size_t n, kplain *p, uint32_t *nvers,
                         char *name, size_t name_cap)
{
    const uint8_t *v;
    size_t vl, off;
    uint32_t i, type = 0;
    char prot[32];
    int rc;

    memset(p, 0, sizeof *p);
    if (km__tlv_check(pl, n) != KM_OK || !km__tlv_find(pl, n, KB_T_KEY, &p->key, &p->key_n)
        || !km__tlv_find(pl, n, KB_T_VERSIONS, &p->vers, &p->vers_n)
        || !km__tlv_find(pl, n, KB_T_MATERIAL, &p->mats, &p->mats_n)
        || !km__tlv_find(pl, n, KB_T_COUNTERS, &p->ctrs, &p->ctrs_n))
        return km__err(KM_E_INVALID, "key backup: malformed contents");
    if (km__tlv_check(p->key, p->key_n) != KM_OK
        || km__tlv_get_u32(p->key, p->key_n, KM__K_NVERSIONS, nvers) != KM_OK || *nvers == 0
        || *nvers > KM__VERSIONS_MAX || km__tlv_get_u32(p->key, p->key_n, KM__K_TYPE, &type) != KM_OK
        || !km__type_is_valid((int)type) || !km__tlv_find(p->key, p->key_n, KM__K_NAME, &v, &vl)
        || vl == 0 || vl >= name_cap || memchr(v, 0, vl) != NULL)
        return km__err(KM_E_INVALID, "key backup: malformed key record");
    memcpy(name, v, vl);
    name[vl] = '\0';
    if (!km__tlv_find(p->key, p->key_n, KM__K_PROTECTION, &v, &vl) || vl >= sizeof prot)
        return km__err(KM_E_INVALID, "key backup: malformed key record");
    memcpy(prot, v, vl);
    prot[vl] = '\0';
    if (strcmp(prot, "software") != 0)
        return km__err(KM_E_UNSUPPORTED, "key backup of a '%s' key", prot);
    for (i = 0, off = 0; i < *nvers; i++) {
        uint32_t l;
        km__ver ver;
        if ((rc = get_u32(p->vers, p->vers_n, &off, &l)) != KM_OK)
            return rc;
        if (p->vers_n - off < l || km__vmeta_decode(p->vers + off, l, &ver) != KM_OK)
            return km__err(KM_E_INVALID, "key backup: malformed version %u", i + 1);
        off += l;
    }
    if (off != p->vers_n)
        return km__err(KM_E_INVALID, "key backup: extra version records");
    for (i = 0; i < 2; i++) {
        const uint8_t *lp = i ? p->ctrs : p->mats;
        size_t ln = i ? p->ctrs_n : p->mats_n;
        for (off = 0; off < ln;) {
            uint32_t ver, l;
            if ((rc = get_u32(lp, ln, &off, &ver)) != KM_OK || (rc = get_u32(lp, ln, &off, &l)) != KM_OK)
                return rc;
            if (ver == 0 || ver > *nvers || ln - off < l || l == 0)
                return km__err(KM_E_INVALID, "key backup: malformed material or counters");
            off += l;
        }
    }
    /* the key's own policy must still tighten this vault's */
    if (km__tlv_find(p->key, p->key_n, KM__K_POLICY, &v, &vl)) {
        km__policy *own = NULL;
        rc = km__policy_parse(&own, (const char *)v, vl, km__policy_acquire(ctx));
        km__policy_release(ctx);
        km__policy_free(own);
        if (rc != KM_OK)
            return rc;
    }
    return KM_OK;
}

int km_key_restore(km_ctx *ctx, const uint8_t *blob, size_t blob_len, const uint8_t *pass,
                   size_t pass_len, const char *name, km_key **out)
{
    KM__REMOTE(ctx, KM__KC_KEY_RESTORE, blob, blob_len, pass, pass_len, name, out);
    char bname[KM_KEY_NAME_MAX + 1];
    uint8_t *plain = NULL, id[16], src[16];
    size_t plain_len = 0, len;
    uint32_t nvers = 0;
    kplain p;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || blob == NULL)
        return km__err(KM_E_INVALID, "km_key_restore: %s is NULL", ctx == NULL ? "ctx" : "blob");
    if (blob_len > KB_MAX)
        return km__err(KM_E_INVALID, "km_key_restore: a backup is at most %u bytes", KB_MAX);
    if ((rc = km__ctx_check(ctx)) != KM_OK
        || (rc = km__acl_check(ctx, KM__OP_KEY_IMPORT, NULL)) != KM_OK)
        return rc;
    if (name != NULL && ((rc = km__key_name_check("km_key_restore", name, &len)) != KM_OK))
        return rc;
    if (name != NULL && km__key_name_reserved(name))
        return km__err(KM_E_INVALID, "km_key_restore: names beginning with 'km:' are libkm's own");
    if ((rc = km__ctx_policy_refresh(ctx, 0)) != KM_OK
        || (rc = open_backup(ctx, blob, blob_len, pass, pass_len, &plain, &plain_len)) != KM_OK)
        return rc;
    memcpy(id, blob + 4, 16);
    memcpy(src, blob + 20, 16);
    rc = check_payload(ctx, plain, plain_len, &p, &nvers, bname, sizeof bname);
    if (rc == KM_OK && name == NULL && km__key_name_reserved(bname))
        rc = km__err(KM_E_INVALID, "key backup of libkm's own key '%s'", bname);
    if (rc == KM_OK)
        rc = restore_write(ctx, id, &p, name != NULL ? name : bname, nvers, src);
    km__sfree(plain, plain_len ? plain_len : 1);
    if (rc == KM_OK && out != NULL)
        rc = km_key_open_id(out, ctx, id);
    return rc;
}
