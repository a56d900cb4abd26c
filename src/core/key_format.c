/* key_format.c - vault format 5: the version records move into their key
 * records (tag 19, docs/FORMATS.md), so that loading a key reads one sealed
 * record instead of one per version.
 *
 * The move runs at km_open in audited write transactions that each leave a
 * vault that opens (crash-safe by construction: every step is one atomic
 * transaction, and every intermediate state is one this code resumes from):
 *   1. the format becomes 5 and the sealed marker meta/format5-migration is
 *      written (an older libkm refuses the vault from here on);
 *   2. the key records that have no version list yet get one, built from
 *      their version records, KEY_BATCH keys per transaction;
 *   3. the version records, now unused, are deleted, DEL_BATCH per
 *      transaction;
 *   4. the marker is deleted.
 * A vault found at format 5 with the marker (an open interrupted by a crash
 * or a kill) resumes at step 2; a key record that already has its list is
 * left as it is. Batches stay small so that each audit entry lists its
 * writes (tag 12, no whole-catalog checkpoint) and an etcd transaction stays
 * under etcd's 128 operations. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_BATCH 24
#define DEL_BATCH 28
static const uint8_t MARKER[] = "format5-migration";

typedef struct idset {
    uint8_t (*id)[20];
    size_t n, cap, len;   /* len: bytes of each id (16 keys, 20 versions) */
} idset;

static int idset_add(idset *s, const uint8_t *key, size_t len)
{
    if (len != s->len)
        return km__err(KM_E_CORRUPT, "vault format 5 migration: a record key of %zu bytes", len);
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        uint8_t (*ni)[20] = realloc(s->id, nc * sizeof *ni);
        if (ni == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        s->id = ni;
        s->cap = nc;
    }
    memcpy(s->id[s->n++], key, len);
    return KM_OK;
}

/* The key records without a version list. */
static int old_key_fn(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                      void *arg)
{
    const uint8_t *l;
    size_t ll;
    if (km__tlv_check(val, val_len) != KM_OK)
        return km__err(KM_E_CORRUPT, "vault format 5 migration: a key record is malformed");
    if (km__tlv_find(val, val_len, KM__K_VERSIONS, &l, &ll))
        return 0;
    return idset_add(arg, key, key_len);
}

static int any_fn(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                  void *arg)
{
    (void)val;
    (void)val_len;
    return idset_add(arg, key, key_len);
}

/* Gathers, in a read transaction, what is left to move. */
static int gather(struct km_ctx *ctx, idset *keys, idset *vrecs)
{
    km__txn *t = NULL;
    int rc = km__txn_begin(ctx->env, 0, &t);
    if (rc != KM_OK)
        return rc;
    if (keys != NULL)
        rc = km__rec_iter(t, ctx->sealer, KM__T_KEYS, NULL, 0, old_key_fn, keys);
    if (rc == KM_OK && vrecs != NULL)
        rc = km__rec_iter(t, ctx->sealer, KM__T_VMETA, NULL, 0, any_fn, vrecs);
    km__txn_abort(t);
    return rc;
}

/* Rewrites key id's record in t with the version list built from its
 * version records (nothing when it has one already, or is gone). */
static int convert_key(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], int *done)
{
    static const uint8_t drop[] = { KM__K_VERSIONS };
    km_secret *rec = NULL;
    uint8_t *list = NULL, *out = NULL;
    const uint8_t *l;
    size_t ll, off = 0, cap;
    uint32_t nvers = 0, i;
    km__tlv_w w;
    int rc;

    *done = 0;
    rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, id, 16, &rec);
    if (rc == KM_E_NOTFOUND) {
        km_error_clear();
        return KM_OK;     /* purged meanwhile */
    }
    if (rc != KM_OK)
        return rc;
    if (km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK
        || km__tlv_get_u32(km_secret_data(rec), km_secret_len(rec), KM__K_NVERSIONS, &nvers)
               != KM_OK
        || nvers == 0 || nvers > KM__VERSIONS_MAX) {
        rc = km__err(KM_E_CORRUPT, "vault format 5 migration: a key record is malformed");
        goto out;
    }
    if (km__tlv_find(km_secret_data(rec), km_secret_len(rec), KM__K_VERSIONS, &l, &ll))
        goto out;         /* another process moved it */
    cap = (size_t)nvers * 160;
    if ((list = malloc(cap)) == NULL
        || (out = malloc(km_secret_len(rec) + cap + 16)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    for (i = 1; i <= nvers; i++) {
        uint8_t vk[20];
        km_secret *vr = NULL;
        km__ver v;
        size_t len = 0;
        km__vkey(vk, id, i);
        rc = km__rec_get(t, ctx->sealer, KM__T_VMETA, vk, 20, &vr);
        if (rc == KM_E_NOTFOUND)
            rc = km__err(KM_E_CORRUPT, "vault format 5 migration: version %u of a key has no "
                                       "record", i);
        /* decoded and encoded again: a malformed record stops the move */
        memset(&v, 0, sizeof v);
        if (rc == KM_OK)
            rc = km__vmeta_decode(km_secret_data(vr), km_secret_len(vr), &v);
        km_secret_free(vr);
        if (rc == KM_OK && cap - off < 4)
            rc = km__err(KM_E_INTERNAL, "version list too long");
        if (rc == KM_OK)
            rc = km__vmeta_encode(&v, list + off + 4, cap - off - 4, &len);
        if (rc != KM_OK)
            goto out;
        km__be32_put(list + off, (uint32_t)len);
        off += 4 + len;
    }
    km__tlv_init(&w, out, km_secret_len(rec) + cap + 16);
    km__tlv_copy_except(&w, km_secret_data(rec), km_secret_len(rec), drop, sizeof drop);
    km__tlv_put(&w, KM__K_VERSIONS, list, off);
    if ((rc = km__tlv_end(&w)) == KM_OK
        && (rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id, 16, out, w.len, 0)) == KM_OK)
        *done = 1;
out:
    free(list);
    free(out);
    km_secret_free(rec);
    return rc;
}

/* The vault's format and whether the move's marker is there, in one read
 * transaction. */
static int read_state(struct km_ctx *ctx, uint32_t *format, int *present)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    int rc = km__txn_begin(ctx->env, 0, &t);
    if (rc != KM_OK)
        return rc;
    if ((rc = km__store_format(t, format)) == KM_OK && *format >= KM__FORMAT_VERSIONS) {
        rc = km__rec_get(t, ctx->sealer, KM__T_META, MARKER, sizeof MARKER - 1, &rec);
        *present = rc == KM_OK;
        if (rc == KM_E_NOTFOUND) {
            km_error_clear();
            rc = KM_OK;
        }
    }
    km__txn_abort(t);
    km_secret_free(rec);
    return rc;
}

int km__vault_format5(struct km_ctx *ctx)
{
    idset keys = { NULL, 0, 0, 16 }, vrecs = { NULL, 0, 0, 20 };
    km__txn *t = NULL;
    uint32_t format = 0;
    size_t i, j, moved = 0;
    int rc, present = 0;
    char d[KM__AUDIT_DETAIL_MAX];
    static const uint8_t one = 1;

    if ((rc = read_state(ctx, &format, &present)) != KM_OK
        || (format >= KM__FORMAT_VERSIONS && !present))
        return rc;    /* the common case: one read transaction */
    if ((rc = gather(ctx, &keys, &vrecs)) != KM_OK)
        goto out;

    /* 1: format 5, and the marker while anything is left to move */
    if (format < KM__FORMAT_VERSIONS) {
        if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
            goto out;
        rc = km__store_format_upgrade(t, ctx->sealer, ctx->master, KM__FORMAT_VERSIONS);
        if (rc == KM_OK && (keys.n > 0 || vrecs.n > 0))
            rc = km__rec_put(t, ctx->sealer, KM__T_META, MARKER, sizeof MARKER - 1, &one, 1, 0);
        snprintf(d, sizeof d, "vault format 5: %zu key record(s) and %zu version record(s) to "
                 "move", keys.n, vrecs.n);
        if (rc != KM_OK) {
            km__wtxn_abort(t);
            goto out;
        }
        if ((rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0, d)) != KM_OK)
            goto out;
    }
    /* 2: the version lists into the key records */
    for (i = 0; i < keys.n; i += KEY_BATCH) {
        size_t n = 0;
        if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
            goto out;
        for (j = i; j < keys.n && j < i + KEY_BATCH && rc == KM_OK; j++) {
            int done = 0;
            rc = convert_key(ctx, t, keys.id[j], &done);
            n += (size_t)done;
        }
        if (rc != KM_OK) {
            km__wtxn_abort(t);
            goto out;
        }
        moved += n;
        snprintf(d, sizeof d, "vault format 5: version lists of %zu key record(s) written "
                 "(%zu of %zu)", n, j, keys.n);
        if ((rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0, d)) != KM_OK)
            goto out;
    }
    /* 3: the version records, now read by nobody */
    for (i = 0; i < vrecs.n; i += DEL_BATCH) {
        if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
            goto out;
        for (j = i; j < vrecs.n && j < i + DEL_BATCH && rc == KM_OK; j++)
            rc = km__rec_del_opt(t, KM__T_VMETA, vrecs.id[j], 20);
        if (rc != KM_OK) {
            km__wtxn_abort(t);
            goto out;
        }
        snprintf(d, sizeof d, "vault format 5: version records deleted (%zu of %zu)", j,
                 vrecs.n);
        if ((rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0, d)) != KM_OK)
            goto out;
    }
    /* 4: done */
    if (keys.n > 0 || vrecs.n > 0 || present) {
        if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
            goto out;
        rc = km__rec_del_opt(t, KM__T_META, MARKER, sizeof MARKER - 1);
        snprintf(d, sizeof d, "vault format 5: the move is complete (%zu key record(s) "
                 "converted by this open)", moved);
        if (rc != KM_OK)
            km__wtxn_abort(t);
        else
            rc = km__wtxn_commit(ctx, t, KM__OP_MAINTAIN, NULL, 0, d);
    }
out:
    free(keys.id);
    free(vrecs.id);
    return rc;
}
