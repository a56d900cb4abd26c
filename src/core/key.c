/* key.c - key objects: create, import, open, list, rotate; the cache. The
 * public functions that create, import, open and list keys are here, beside
 * the key-object code they share; the rest of km/key.h (handle accessors,
 * rotation, information, public-key export) is src/api/key.c. */
#include "core.h"
#include "km/quorum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names that begin with "km:" are libkm's own (km:import-wrapping-key, the
 * vault's BYOK key): a caller who could create or import one could put its
 * own key where importers expect the vault's. */
#define KM__RESERVED_PREFIX "km:"

int km__key_name_reserved(const char *name)
{
    return strncmp(name, KM__RESERVED_PREFIX, sizeof KM__RESERVED_PREFIX - 1) == 0;
}

int km__key_name_check(const char *fn, const char *name, size_t *len)
{
    size_t i, n;
    if (name == NULL)
        return km__err(KM_E_INVALID, "%s: name is NULL", fn);
    n = strnlen(name, KM_KEY_NAME_MAX + 1);
    if (n == 0 || n > KM_KEY_NAME_MAX)
        return km__err(KM_E_INVALID, "%s: name must be 1 to %d bytes", fn, KM_KEY_NAME_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return km__err(KM_E_INVALID, "%s: name contains a control character", fn);
    }
    *len = n;
    return KM_OK;
}

/* -------------------------------------------------------- record helpers */

static void put_i64(km__tlv_w *w, uint8_t tag, int64_t v)
{
    km__tlv_put_u64(w, tag, (uint64_t)v);
}

/* One pass over a record: where the first entry of each tag below 32 is
 * (what km__tlv_find would answer for it), so that decoding a record of n
 * entries reads it once instead of once per field. */
typedef struct tlvix {
    const uint8_t *v[32];
    uint32_t l[32];
    uint32_t seen;
} tlvix;

static void tlvix_build(tlvix *x, const uint8_t *b, size_t n)
{
    size_t off = 0;
    x->seen = 0;
    while (off + 5 <= n) {
        uint32_t l = km__be32_get(b + off + 1);
        uint8_t tag = b[off];
        if (n - off - 5 < l)
            break;
        if (tag < 32 && !(x->seen & (1u << tag))) {
            x->seen |= 1u << tag;
            x->v[tag] = b + off + 5;
            x->l[tag] = l;
        }
        off += 5 + (size_t)l;
    }
}

static int ix_find(const tlvix *x, uint8_t tag, const uint8_t **v, size_t *l)
{
    if (tag >= 32 || !(x->seen & (1u << tag)))
        return 0;
    *v = x->v[tag];
    *l = x->l[tag];
    return 1;
}

/* As km__tlv_get_u32 / _u64: KM_E_NOTFOUND (quiet), KM_E_CORRUPT on a bad length. */
static int ix_uint(const tlvix *x, uint8_t tag, size_t width, uint64_t *out)
{
    const uint8_t *v;
    size_t vl;
    if (!ix_find(x, tag, &v, &vl))
        return KM_E_NOTFOUND;
    if (vl != width)
        return km__err(KM_E_CORRUPT, "record: entry %u has length %zu, expected %zu",
                       (unsigned)tag, vl, width);
    *out = width == 4 ? km__be32_get(v) : km__be64_get(v);
    return KM_OK;
}

static int ix_u32(const tlvix *x, uint8_t tag, uint32_t *out)
{
    uint64_t v = 0;
    int rc = ix_uint(x, tag, 4, &v);
    if (rc == KM_OK)
        *out = (uint32_t)v;
    return rc;
}

/* An optional time: 0 when absent. */
static int ix_i64(const tlvix *x, uint8_t tag, int64_t *out)
{
    uint64_t v = 0;
    int rc = ix_uint(x, tag, 8, &v);
    *out = rc == KM_OK ? (int64_t)v : 0;
    return rc == KM_E_NOTFOUND ? KM_OK : rc;
}

void km__vkey(uint8_t out[20], const uint8_t id[16], uint32_t version)
{
    memcpy(out, id, 16);
    km__be32_put(out + 16, version);
}

int km__vmeta_encode(const km__ver *v, uint8_t *buf, size_t cap, size_t *len)
{
    km__tlv_w w;
    km__tlv_init(&w, buf, cap);
    km__tlv_put_u32(&w, KM__V_STATE, (uint32_t)v->state);
    put_i64(&w, KM__V_CREATED, v->created);
    put_i64(&w, KM__V_ACTIVATED, v->activated);
    put_i64(&w, KM__V_PROTECT_STOP, v->protect_stop);
    put_i64(&w, KM__V_PROCESS_STOP, v->process_stop);
    put_i64(&w, KM__V_DESTROY_AFTER, v->destroy_after);
    if (v->prev_state != 0)
        km__tlv_put_u32(&w, KM__V_PREV_STATE, (uint32_t)v->prev_state);
    if (v->revoke_reason != 0)
        km__tlv_put_u32(&w, KM__V_REVOKE_REASON, v->revoke_reason);
    if (v->compromise_date != 0)
        put_i64(&w, KM__V_COMPROMISE_DATE, v->compromise_date);
    if (v->deactivated != 0)
        put_i64(&w, KM__V_DEACTIVATED, v->deactivated);
    if (v->destroyed != 0)
        put_i64(&w, KM__V_DESTROYED, v->destroyed);
    *len = w.len;
    return km__tlv_end(&w);
}

int km__vmeta_decode(const uint8_t *b, size_t n, km__ver *v)
{
    uint32_t st = 0;
    tlvix x;
    int rc = km__tlv_check(b, n);
    if (rc != KM_OK)
        return rc;
    tlvix_build(&x, b, n);
    if (ix_u32(&x, KM__V_STATE, &st) != KM_OK || st < KM_STATE_PRE_ACTIVE
        || st > KM_STATE_DESTROYED)
        return km__err(KM_E_CORRUPT, "version record: bad state");
    v->state = (km_key_state)st;
    if ((rc = ix_i64(&x, KM__V_CREATED, &v->created)) != KM_OK
        || (rc = ix_i64(&x, KM__V_ACTIVATED, &v->activated)) != KM_OK
        || (rc = ix_i64(&x, KM__V_PROTECT_STOP, &v->protect_stop)) != KM_OK
        || (rc = ix_i64(&x, KM__V_PROCESS_STOP, &v->process_stop)) != KM_OK
        || (rc = ix_i64(&x, KM__V_DESTROY_AFTER, &v->destroy_after)) != KM_OK
        || (rc = ix_i64(&x, KM__V_COMPROMISE_DATE, &v->compromise_date)) != KM_OK
        || (rc = ix_i64(&x, KM__V_DEACTIVATED, &v->deactivated)) != KM_OK
        || (rc = ix_i64(&x, KM__V_DESTROYED, &v->destroyed)) != KM_OK)
        return rc;
    st = 0;
    rc = ix_u32(&x, KM__V_PREV_STATE, &st);
    if (rc == KM_E_CORRUPT || (rc == KM_OK && (st < KM_STATE_PRE_ACTIVE || st > KM_STATE_COMPROMISED)))
        return km__err(KM_E_CORRUPT, "version record: bad previous state");
    v->prev_state = rc == KM_OK ? (km_key_state)st : (km_key_state)0;
    v->revoke_reason = 0;
    rc = ix_u32(&x, KM__V_REVOKE_REASON, &v->revoke_reason);
    if (rc == KM_E_CORRUPT)
        return rc;
    return KM_OK;
}

/* ------------------------------------------------- the version list (tag 19)
 *
 * From vault format 5 the metadata of every version lives in its key record
 * (tag 19: entries of BE32 length || version record, versions 1..n in order),
 * so that loading a key reads one sealed record (docs/FORMATS.md). */

/* Calls fn for each entry of the version list of key record rec[0..n), in
 * order; the list must hold exactly the record's version count (tag 7). */
int km__keyrec_vers(const uint8_t *rec, size_t n, km__vrec_fn fn, void *arg)
{
    const uint8_t *l;
    size_t ll, off = 0;
    uint32_t nvers = 0, i = 0;
    tlvix x;
    int rc;

    tlvix_build(&x, rec, n);
    if (ix_u32(&x, KM__K_NVERSIONS, &nvers) != KM_OK || nvers == 0
        || nvers > KM__VERSIONS_MAX)
        return km__err(KM_E_CORRUPT, "key record: bad version count");
    if (!ix_find(&x, KM__K_VERSIONS, &l, &ll))
        return km__err(KM_E_CORRUPT, "key record: no version list (a record of a vault format "
                                     "before 5 in a format-5 vault)");
    while (off < ll) {
        uint32_t el;
        if (ll - off < 4 || (el = km__be32_get(l + off)) > ll - off - 4 || ++i > nvers)
            break;
        if (fn != NULL && (rc = fn(i, l + off + 4, el, arg)) != KM_OK)
            return rc;
        off += 4 + (size_t)el;
    }
    if (off != ll || i != nvers)
        return km__err(KM_E_CORRUPT, "key record: its version list disagrees with its version "
                                     "count (%u)", nvers);
    return KM_OK;
}

struct ver_one {
    uint32_t want;
    km__ver *v;
    int found;
};

static int ver_one_fn(uint32_t version, const uint8_t *b, size_t n, void *arg)
{
    struct ver_one *o = arg;
    if (version != o->want)
        return KM_OK;
    o->found = 1;
    o->v->version = version;
    return km__vmeta_decode(b, n, o->v);
}

int km__keyrec_ver(const uint8_t *rec, size_t n, uint32_t version, km__ver *v)
{
    struct ver_one o = { version, v, 0 };
    int rc = km__keyrec_vers(rec, n, ver_one_fn, &o);
    if (rc == KM_OK && !o.found)
        rc = km__err(KM_E_NOTFOUND, "the key has no version %u", version);
    return rc;
}

/* Appends entry v to a version list being built in buf (cap bytes). */
static int vlist_add(uint8_t *buf, size_t cap, size_t *off, const km__ver *v)
{
    size_t len = 0;
    int rc;
    if (cap - *off < 4)
        return km__err(KM_E_INTERNAL, "version list too long");
    if ((rc = km__vmeta_encode(v, buf + *off + 4, cap - *off - 4, &len)) != KM_OK)
        return rc;
    km__be32_put(buf + *off, (uint32_t)len);
    *off += 4 + len;
    return KM_OK;
}

/* Appends to version list buf (cap bytes, *off used) versions from..to-1 of
 * a key, whose material was never imported, as destroyed (so that version
 * numbers stay those of the source key), then v (version `to`). */
static int vlist_add_new(uint8_t *buf, size_t cap, size_t *off, uint32_t from, const km__ver *v,
                         int64_t now)
{
    uint32_t i;
    int rc = KM_OK;
    for (i = from; i < v->version && rc == KM_OK; i++) {
        km__ver d;
        memset(&d, 0, sizeof d);
        d.version = i;
        d.state = KM_STATE_DESTROYED;
        d.created = d.destroyed = now;
        rc = vlist_add(buf, cap, off, &d);
    }
    return rc == KM_OK ? vlist_add(buf, cap, off, v) : rc;
}

struct vput {
    const km__ver *v;
    uint8_t *buf;
    size_t cap, off;
};

static int vput_fn(uint32_t version, const uint8_t *b, size_t n, void *arg)
{
    struct vput *p = arg;
    if (version == p->v->version)
        return vlist_add(p->buf, p->cap, &p->off, p->v);
    if (p->cap - p->off < 4 + n)
        return km__err(KM_E_INTERNAL, "version list too long");
    km__be32_put(p->buf + p->off, (uint32_t)n);
    memcpy(p->buf + p->off + 4, b, n);
    p->off += 4 + n;
    return KM_OK;
}

int km__keyrec_ver_put(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const uint8_t *rec,
                       size_t n, const km__ver *v)
{
    static const uint8_t drop[] = { KM__K_VERSIONS, KM__K_NVERSIONS };
    uint32_t nvers = 0;
    struct vput p;
    uint8_t *out = NULL;
    km__tlv_w w;
    int rc;

    if (km__tlv_get_u32(rec, n, KM__K_NVERSIONS, &nvers) != KM_OK)
        return km__err(KM_E_CORRUPT, "key record: bad version count");
    if (v->version == 0 || v->version > nvers + 1 || (v->version > nvers
                                                      && nvers >= KM__VERSIONS_MAX))
        return km__err(KM_E_INTERNAL, "version %u of a key with %u", v->version, nvers);
    memset(&p, 0, sizeof p);
    p.v = v;
    p.cap = n + 512;
    if ((p.buf = malloc(p.cap)) == NULL || (out = malloc(p.cap + 64)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = km__keyrec_vers(rec, n, vput_fn, &p)) != KM_OK)
        goto out;
    if (v->version == nvers + 1 && (rc = vlist_add(p.buf, p.cap, &p.off, v)) != KM_OK)
        goto out;
    km__tlv_init(&w, out, p.cap + 64);
    km__tlv_copy_except(&w, rec, n, drop, sizeof drop);
    km__tlv_put_u32(&w, KM__K_NVERSIONS, v->version > nvers ? v->version : nvers);
    km__tlv_put(&w, KM__K_VERSIONS, p.buf, p.off);
    if ((rc = km__tlv_end(&w)) == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id, 16, out, w.len, 0);
out:
    free(p.buf);
    free(out);
    return rc;
}

/* A new key's record: nvers versions, 1..nvers-1 destroyed (never
 * imported) and v the last (`now` for the destroyed ones' dates). */
static int encode_key(const km__kobj *k, uint32_t nvers, const km__ver *v, int64_t now,
                      uint8_t *buf, size_t cap, size_t *len)
{
    size_t lcap = (size_t)nvers * 160, off = 0;
    uint8_t *list = malloc(lcap);
    km__tlv_w w;
    int rc;
    if (list == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    if ((rc = vlist_add_new(list, lcap, &off, 1, v, now)) != KM_OK) {
        free(list);
        return rc;
    }
    km__tlv_init(&w, buf, cap);
    km__tlv_put_str(&w, KM__K_NAME, k->name);
    km__tlv_put_u32(&w, KM__K_TYPE, (uint32_t)k->type);
    km__tlv_put_u32(&w, KM__K_USAGE, k->usage);
    km__tlv_put_u32(&w, KM__K_FLAGS, k->flags);
    km__tlv_put_str(&w, KM__K_PROTECTION, k->protection);
    put_i64(&w, KM__K_CREATED, k->created);
    km__tlv_put_u32(&w, KM__K_NVERSIONS, nvers);
    km__tlv_put_u32(&w, KM__K_ROTATE_DAYS, k->rotate_days);
    km__tlv_put_u32(&w, KM__K_PROTECT_DAYS, k->protect_days);
    km__tlv_put_u32(&w, KM__K_PROCESS_DAYS, k->process_days);
    km__tlv_put_u32(&w, KM__K_GRACE_DAYS, k->grace_days);
    if (k->policy_json != NULL)
        km__tlv_put_str(&w, KM__K_POLICY, k->policy_json);
    if (k->oaep_digest != 0 && k->oaep_digest != 256)
        km__tlv_put_u32(&w, KM__K_OAEP_DIGEST, k->oaep_digest);
    km__tlv_put(&w, KM__K_VERSIONS, list, off);
    free(list);
    *len = w.len;
    return km__tlv_end(&w);
}

/* Parsed key record (name borrowed from the record buffer). */
typedef struct keyrec {
    const uint8_t *name;
    size_t name_len;
    uint32_t type, usage, flags, nvers;
    uint32_t rotate_days, protect_days, process_days, grace_days;
    uint32_t min_process, min_protect;
    uint32_t oaep_digest;        /* 256 when absent */
    const uint8_t *policy;       /* the key's own policy JSON (borrowed), or NULL */
    size_t policy_len;
    char protection[32];
    int64_t created;
} keyrec;

static int decode_key(const uint8_t *b, size_t n, keyrec *r)
{
    const uint8_t *p;
    size_t pl;
    tlvix x;
    int rc = km__tlv_check(b, n);
    if (rc != KM_OK)
        return rc;
    memset(r, 0, sizeof *r);
    tlvix_build(&x, b, n);
    if (!ix_find(&x, KM__K_NAME, &r->name, &r->name_len) || r->name_len == 0
        || r->name_len > KM_KEY_NAME_MAX || memchr(r->name, 0, r->name_len) != NULL)
        return km__err(KM_E_CORRUPT, "key record: bad name");
    if (ix_u32(&x, KM__K_TYPE, &r->type) != KM_OK || !km__type_is_valid((int)r->type))
        return km__err(KM_E_CORRUPT, "key record: bad type");
    if (ix_u32(&x, KM__K_USAGE, &r->usage) != KM_OK
        || ix_u32(&x, KM__K_FLAGS, &r->flags) != KM_OK
        || ix_u32(&x, KM__K_NVERSIONS, &r->nvers) != KM_OK || r->nvers == 0
        || r->nvers > KM__VERSIONS_MAX)
        return km__err(KM_E_CORRUPT, "key record: bad usage, flags or version count");
    if (!ix_find(&x, KM__K_PROTECTION, &p, &pl) || pl == 0 || pl >= sizeof r->protection
        || memchr(p, 0, pl) != NULL)
        return km__err(KM_E_CORRUPT, "key record: bad protection");
    memcpy(r->protection, p, pl);
    r->protection[pl] = '\0';
    r->grace_days = 30;
    if (ix_find(&x, KM__K_POLICY, &r->policy, &r->policy_len)
        && (r->policy_len == 0 || r->policy_len > KM__KEY_POLICY_MAX
            || memchr(r->policy, 0, r->policy_len) != NULL))
        return km__err(KM_E_CORRUPT, "key record: bad policy");
    if ((ix_u32(&x, KM__K_ROTATE_DAYS, &r->rotate_days) == KM_E_CORRUPT)
        || (ix_u32(&x, KM__K_PROTECT_DAYS, &r->protect_days) == KM_E_CORRUPT)
        || (ix_u32(&x, KM__K_PROCESS_DAYS, &r->process_days) == KM_E_CORRUPT)
        || (ix_u32(&x, KM__K_GRACE_DAYS, &r->grace_days) == KM_E_CORRUPT)
        || (ix_u32(&x, KM__K_MIN_PROCESS, &r->min_process) == KM_E_CORRUPT)
        || (ix_u32(&x, KM__K_MIN_PROTECT, &r->min_protect) == KM_E_CORRUPT))
        return KM_E_CORRUPT;
    r->oaep_digest = 256;
    if (ix_u32(&x, KM__K_OAEP_DIGEST, &r->oaep_digest) == KM_E_CORRUPT
        || (r->oaep_digest != 256 && r->oaep_digest != 384 && r->oaep_digest != 512)
        || (r->oaep_digest != 256 && km__type_family((km_key_type)r->type) != KM__FAM_RSA))
        return km__err(KM_E_CORRUPT, "key record: bad RSA-OAEP digest");
    return ix_i64(&x, KM__K_CREATED, &r->created);
}

/* The persisted usage counters of a version; 0 when it has none yet (a key
 * never used: the common case of a cold open, which records no error). */
static int read_counters(km__txn *t, const km__sealer *s, const uint8_t vk[20], uint64_t *inv,
                         uint64_t *bytes)
{
    uint8_t rec[64];
    size_t len = 0;
    int rc = km__rec_read(t, s, KM__T_COUNTERS, vk, 20, rec, sizeof rec, &len);
    *inv = 0;
    *bytes = 0;
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc == KM_E_BUFFER)
        rc = km__err(KM_E_CORRUPT, "counter record of %zu bytes", len);
    if (rc == KM_OK)
        rc = km__tlv_check(rec, len);
    if (rc == KM_OK)
        rc = km__tlv_get_u64(rec, len, KM__C_INVOCATIONS, inv);
    if (rc == KM_OK)
        rc = km__tlv_get_u64(rec, len, KM__C_BYTES, bytes);
    km_memzero(rec, sizeof rec);
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_CORRUPT, "counter record incomplete");
    return rc;
}

static int write_counters(km__txn *t, const km__sealer *s, const uint8_t vk[20], uint64_t inv,
                          uint64_t bytes)
{
    uint8_t buf[32];
    km__tlv_w w;
    km__tlv_init(&w, buf, sizeof buf);
    km__tlv_put_u64(&w, KM__C_INVOCATIONS, inv);
    km__tlv_put_u64(&w, KM__C_BYTES, bytes);
    if (km__tlv_end(&w) != KM_OK)
        return KM_E_INTERNAL;
    return km__rec_put(t, s, KM__T_COUNTERS, vk, 20, buf, w.len, 0);
}

/* ------------------------------------------------------ key objects */

static km__ver *ver_new(uint32_t version)
{
    km__ver *v = calloc(1, sizeof *v);
    if (v == NULL)
        return NULL;
    v->version = version;
    atomic_init(&v->obj, NULL);
    atomic_init(&v->used, 0);
    atomic_init(&v->allowance, 0);
    atomic_init(&v->bytes, 0);
    atomic_init(&v->reserved_seen, 0);
    atomic_init(&v->bytes_seen, 0);
    v->block = KM__RESERVE_MIN;
    pthread_mutex_init(&v->mu, NULL);
    return v;
}

static void ver_free(km__kobj *k, km__ver *v)
{
    void *obj = NULL;
    if (v == NULL)
        return;
    obj = atomic_load(&v->obj);
    if (obj != NULL && k->be != NULL)
        k->be->ops.unload(k->be->state, obj);
    pthread_mutex_destroy(&v->mu);
    free(atomic_load(&v->shares));
    free(v);
}

static void kobj_free(km__kobj *k)
{
    uint32_t i;
    km__kobj_release_counters(k);
    for (i = 0; i < k->nvers; i++)
        ver_free(k, k->vers[i]);
    free(k->vers);
    free(k->name);
    for (i = 0; i < k->nold_names; i++)
        free(k->old_names[i]);
    free(k->old_names);
    free(k->policy_json);
    pthread_rwlock_destroy(&k->lock);
    if (atomic_load(&k->dplock) != NULL) {
        km__br_destroy(atomic_load(&k->dplock));
        free(atomic_load(&k->dplock));
    }
    km__ctx_unref(k->ctx);
    free(k);
}

void km__kobj_unref(km__kobj *k)
{
    if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1)
        kobj_free(k);
}

/* Caches what the vault policy says about this key, so that the data path
 * checks it without taking the policy lock. Called at every refresh. */
static void kobj_apply_policy(km__kobj *k)
{
    const km__policy *p = km__policy_acquire(k->ctx);
    km__policy *own = NULL;
    km_error saved = *km_error_last();
    char saved_msg[256]; /* the size of error.c's message buffer */
    uint64_t limit = 0, rotate_at = 0;
    int rc, recorded = 0;
    /* saved.message points into the thread's error buffer, which an error
     * recorded below overwrites: keep its text (only when there is one) */
    if (saved.code != KM_OK)
        snprintf(saved_msg, sizeof saved_msg, "%s", saved.message != NULL ? saved.message : "");
    /* the key's own policy tightens the vault's; if it no longer parses
     * against the vault's (the vault's was tightened past it), the vault's
     * applies and km_policy_report() shows the key */
    if (k->policy_json != NULL) {
        if (km__policy_parse(&own, k->policy_json, strlen(k->policy_json), p) == KM_OK)
            p = own;
        else
            recorded = 1;
    }
    rc = km__policy_check_protect(p, k->type, km__now(k->ctx));
    if (rc != KM_OK) {
        snprintf(k->policy_msg, sizeof k->policy_msg, "%s", km_error_last()->message);
        recorded = 1;
    }
    k->policy_rc = rc;
    k->ops_forbidden = km__policy_ops_forbidden(p);
    km__policy_usage_limit(p, k->type, &limit, &rotate_at);
    k->replace_unusable = km__policy_replace_unusable(p);
    km__policy_free(own);
    km__policy_release(k->ctx);
    k->usage_limit = limit ? limit : KM__NO_LIMIT;
    k->rotate_at = rotate_at;
    /* the thread's last error is the caller's: put back only when one of the
     * calls above recorded another (formatting it again costs) */
    if (!recorded)
        return;
    if (saved.code != KM_OK)
        km__err_native(saved.code, saved.native_kind, saved.native, "%s", saved_msg);
    else
        km_error_clear();
}

/* Reads the key record and every version's metadata in one snapshot, and
 * merges them into k (which the caller holds exclusively or write-locked).
 * The persisted usage counters (reserved_seen: km_key_info's invocations and
 * usage-based rotation) are read for every version with `all_counters`, else
 * only for the primary of a key with usage-based rotation: a cold open reads
 * three records (name, key, version) instead of four. */
static int kobj_ver_fn(uint32_t version, const uint8_t *b, size_t n, void *arg)
{
    km__kobj *k = arg;
    km__ver *v = k->vers[version - 1];
    int rc = km__vmeta_decode(b, n, v);
    v->below_min_process = version < k->min_process;
    v->below_min_protect = version < k->min_protect;
    return rc;
}

static int kobj_read_rec(km__kobj *k, km__txn *t, int all_counters, const uint8_t *rec,
                         size_t rec_len);

/* The key record is unsealed into a stack buffer (catalog metadata, no key
 * material; wiped after), into secure memory only when it is larger. */
#define KEYREC_STACK 2048

static int kobj_read(km__kobj *k, km__txn *t, int all_counters)
{
    uint8_t buf[KEYREC_STACK];
    km_secret *big = NULL;
    size_t len = 0;
    int rc;

    rc = km__rec_read(t, k->ctx->sealer, KM__T_KEYS, k->id, 16, buf, sizeof buf, &len);
    if (rc == KM_E_BUFFER) {
        rc = km__rec_get(t, k->ctx->sealer, KM__T_KEYS, k->id, 16, &big);
        if (rc == KM_OK)
            rc = kobj_read_rec(k, t, all_counters, km_secret_data(big), km_secret_len(big));
        km_secret_free(big);
        return rc;
    }
    if (rc == KM_E_NOTFOUND) {
        k->removed = 1;
        return km__err(KM_E_NOTFOUND, "the key no longer exists");
    }
    if (rc == KM_OK)
        rc = kobj_read_rec(k, t, all_counters, buf, len);
    km_memzero(buf, len < sizeof buf ? len : sizeof buf);
    return rc;
}

static int kobj_read_rec(km__kobj *k, km__txn *t, int all_counters, const uint8_t *rec,
                         size_t rec_len)
{
    struct km_ctx *ctx = k->ctx;
    keyrec r;
    uint32_t i;
    int rc;

    rc = decode_key(rec, rec_len, &r);
    if (rc != KM_OK)
        goto out;
    if (k->name == NULL) {
        k->name = strndup((const char *)r.name, r.name_len);
        if (k->name == NULL) {
            rc = km__err(KM_E_NOMEM, "out of memory");
            goto out;
        }
        k->type = (km_key_type)r.type;
        k->usage = r.usage;
        k->flags = r.flags;
        memcpy(k->protection, r.protection, sizeof k->protection);
        k->created = r.created;
    } else if (k->type != (km_key_type)r.type || strcmp(k->protection, r.protection) != 0) {
        rc = km__err(KM_E_CORRUPT, "key record changed its type or protection");
        goto out;
    } else {
        /* renamed (km_key_rename): the old string is kept until the object
         * goes, since km_key_name() handed it out */
        if (strlen(k->name) != r.name_len || memcmp(k->name, r.name, r.name_len) != 0) {
            char *nn = strndup((const char *)r.name, r.name_len);
            char **old = realloc(k->old_names, (k->nold_names + 1) * sizeof *old);
            if (old != NULL)
                k->old_names = old;
            if (nn == NULL || old == NULL) {
                free(nn);
                rc = km__err(KM_E_NOMEM, "out of memory");
                goto out;
            }
            k->old_names[k->nold_names++] = k->name;
            k->name = nn;
        }
        /* written only when changed: readers check them under the read lock */
        if (k->usage != r.usage)
            k->usage = r.usage;
        if (k->flags != r.flags)
            k->flags = r.flags;
    }
    if ((r.policy == NULL) != (k->policy_json == NULL)
        || (r.policy != NULL && (strlen(k->policy_json) != r.policy_len
                                 || memcmp(k->policy_json, r.policy, r.policy_len) != 0))) {
        char *pj = r.policy ? strndup((const char *)r.policy, r.policy_len) : NULL;
        if (r.policy != NULL && pj == NULL) {
            rc = km__err(KM_E_NOMEM, "out of memory");
            goto out;
        }
        free(k->policy_json);
        k->policy_json = pj;
    }
    if (k->oaep_digest != r.oaep_digest)
        k->oaep_digest = r.oaep_digest;
    if (k->rotate_days != r.rotate_days || k->protect_days != r.protect_days
        || k->process_days != r.process_days || k->grace_days != r.grace_days) {
        k->rotate_days = r.rotate_days;
        k->protect_days = r.protect_days;
        k->process_days = r.process_days;
        k->grace_days = r.grace_days;
    }
    k->min_process = r.min_process;
    k->min_protect = r.min_protect;
    if (r.nvers > k->nvers) {
        km__ver **nv = realloc(k->vers, r.nvers * sizeof *nv);
        if (nv == NULL) {
            rc = km__err(KM_E_NOMEM, "out of memory");
            goto out;
        }
        k->vers = nv;
        for (i = k->nvers; i < r.nvers; i++) {
            if ((k->vers[i] = ver_new(i + 1)) == NULL) {
                k->nvers = i;
                rc = km__err(KM_E_NOMEM, "out of memory");
                goto out;
            }
        }
        k->nvers = r.nvers;
    }
    /* the versions: from the key record's own list (format 5), one record */
    if (r.nvers < k->nvers) {
        rc = km__err(KM_E_CORRUPT, "key record lost versions (%u, was %u)", r.nvers, k->nvers);
        goto out;
    }
    if ((rc = km__keyrec_vers(rec, rec_len, kobj_ver_fn, k)) != KM_OK)
        goto out;
    for (i = 0; all_counters && i < k->nvers; i++) {
        uint8_t vk[20];
        uint64_t seen = 0, bytes = 0;
        km__vkey(vk, k->id, i + 1);
        if ((rc = read_counters(t, ctx->sealer, vk, &seen, &bytes)) != KM_OK)
            goto out;
        atomic_store(&k->vers[i]->reserved_seen, seen);
        atomic_store(&k->vers[i]->bytes_seen, bytes);
    }
    k->primary = km__primary(k, km__now(ctx));
    kobj_apply_policy(k);
    if (!all_counters && k->rotate_at != 0 && k->primary != 0) {
        uint8_t vk[20];
        uint64_t seen = 0, bytes;
        km__vkey(vk, k->id, k->primary);
        if ((rc = read_counters(t, ctx->sealer, vk, &seen, &bytes)) != KM_OK)
            goto out;
        atomic_store(&k->vers[k->primary - 1]->reserved_seen, seen);
    }
out:
    return rc;
}

int km__kobj_refresh(km__kobj *k, int force)
{
    km__txn *t = NULL;
    unsigned gen = km__wtxn_gen();
    int64_t now_ms = km__mono_ms();
    int rc;

    if (k->session) { /* nothing to re-read: it lives only in memory */
        atomic_store(&k->loaded_gen, gen);
        atomic_store(&k->checked_ms, now_ms);
        return KM_OK;
    }

    km__kobj_wrlock(k);
    if (!force && k->loaded_gen == gen && now_ms - k->checked_ms < (int64_t)k->ctx->refresh_ms) {
        km__kobj_wrunlock(k);
        return KM_OK; /* another thread refreshed it meanwhile */
    }
    rc = km__txn_begin(k->ctx->env, 0, &t);
    if (rc == KM_OK) {
        rc = kobj_read(k, t, force);
        km__txn_abort(t);
    }
    if (rc == KM_OK) {
        k->loaded_gen = gen;
        k->checked_ms = now_ms;
    }
    km__kobj_wrunlock(k);
    return rc;
}

/* The cache is a chained hash table keyed by the (random) key id, doubled
 * when it holds twice as many keys as buckets, so a lookup stays O(1) in a
 * vault of any size. */
static size_t bucket_of(const uint8_t id[16], size_t nbuckets)
{
    uint64_t x;
    memcpy(&x, id, sizeof x);
    return (size_t)(x & (nbuckets - 1));
}

/* Under the cache read lock: the key object, or NULL. */
static km__kobj *cache_find(struct km_ctx *ctx, const uint8_t id[16])
{
    km__kobj *k;
    if (ctx->cache == NULL)
        return NULL;
    for (k = ctx->cache[bucket_of(id, ctx->cache_buckets)]; k != NULL; k = k->hnext)
        if (memcmp(k->id, id, 16) == 0)
            return k;
    return NULL;
}

/* Under the cache write lock: when the cache holds KM__CACHE_MAX keys, drops
 * entries nobody else holds (only the cache's reference), a few buckets at a
 * time from a rotating cursor, so that a process touching every key of a huge
 * vault keeps bounded memory. No reader can be inside the cache meanwhile. */
static void cache_evict(struct km_ctx *ctx)
{
    size_t scanned;
    for (scanned = 0; scanned < 64 && ctx->cache_count >= ctx->cache_max; scanned++) {
        km__kobj **pp = &ctx->cache[ctx->cache_cursor];
        while (*pp != NULL) {
            km__kobj *e = *pp;
            if (atomic_load(&e->refs) == 1) {
                *pp = e->hnext;
                e->hnext = NULL;
                ctx->cache_count--;
                km__kobj_unref(e);
            } else {
                pp = &e->hnext;
            }
        }
        ctx->cache_cursor = (ctx->cache_cursor + 1) & (ctx->cache_buckets - 1);
    }
}

/* Under the cache write lock. Failure to grow is harmless (longer chains). */
static void cache_insert(struct km_ctx *ctx, km__kobj *k)
{
    size_t b;
    if (ctx->cache != NULL && ctx->cache_count >= ctx->cache_max)
        cache_evict(ctx);
    if (ctx->cache == NULL || ctx->cache_count >= 2 * ctx->cache_buckets) {
        size_t nb = ctx->cache == NULL ? 256 : ctx->cache_buckets * 2, i;
        km__kobj **nt = calloc(nb, sizeof *nt);
        if (nt != NULL) {
            for (i = 0; ctx->cache != NULL && i < ctx->cache_buckets; i++) {
                km__kobj *e = ctx->cache[i], *n;
                for (; e != NULL; e = n) {
                    n = e->hnext;
                    b = bucket_of(e->id, nb);
                    e->hnext = nt[b];
                    nt[b] = e;
                }
            }
            free(ctx->cache);
            ctx->cache = nt;
            ctx->cache_buckets = nb;
        } else if (ctx->cache == NULL) {
            return; /* not cached: the caller keeps its own reference */
        }
    }
    b = bucket_of(k->id, ctx->cache_buckets);
    atomic_fetch_add(&k->refs, 1); /* the cache's reference */
    k->hnext = ctx->cache[b];
    ctx->cache[b] = k;
    ctx->cache_count++;
}

/* Looks the key up in the cache and, on a hit, returns with the cache read
 * lock HELD and no new reference (the data path's fast lookup): the caller
 * calls km__cache_unlock() when done. On a miss, NULL and no lock. */
km__kobj *km__cache_peek(struct km_ctx *ctx, const uint8_t id[16])
{
    km__kobj *k;
    unsigned st = km__br_rdlock(&ctx->cache_lock);
    k = cache_find(ctx, id);
    if (k == NULL)
        km__br_rdunlock(&ctx->cache_lock, st);
    return k;
}

void km__cache_unlock(struct km_ctx *ctx)
{
    km__br_rdunlock(&ctx->cache_lock, km__thread_index() % KM__BR_STRIPES);
}

/* km__kobj_get reading in the caller's read transaction `in` (NULL: one of its own). */
static int kobj_get(struct km_ctx *ctx, const uint8_t id[16], km__txn *in, km__kobj **out)
{
    km__kobj *k, *other;
    km__txn *t = in;
    unsigned st;
    int rc = KM_OK;

    *out = NULL;
    st = km__br_rdlock(&ctx->cache_lock);
    k = cache_find(ctx, id);
    if (k != NULL)
        atomic_fetch_add(&k->refs, 1);
    km__br_rdunlock(&ctx->cache_lock, st);
    if (k != NULL) {
        *out = k;
        return KM_OK;
    }

    k = calloc(1, sizeof *k);
    if (k == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    memcpy(k->id, id, 16);
    atomic_init(&k->refs, 1);
    k->ctx = ctx;
    km__ctx_ref(ctx);
    pthread_rwlock_init(&k->lock, NULL);
    k->loaded_gen = km__wtxn_gen();
    k->checked_ms = km__mono_ms();
    if (in == NULL)
        rc = km__txn_begin(ctx->env, 0, &t);
    if (rc == KM_OK) {
        rc = kobj_read(k, t, 0);
        if (in == NULL)
            km__txn_abort(t);
    }
    if (rc == KM_OK)
        rc = km__backend_get(ctx, k->protection, &k->be);
    if (rc != KM_OK) {
        kobj_free(k);
        return rc;
    }

    km__br_wrlock(&ctx->cache_lock);
    other = cache_find(ctx, id);
    if (other != NULL) {
        atomic_fetch_add(&other->refs, 1);
        km__br_wrunlock(&ctx->cache_lock);
        kobj_free(k);
        *out = other;
        return KM_OK;
    }
    cache_insert(ctx, k);
    km__br_wrunlock(&ctx->cache_lock);
    *out = k;
    return KM_OK;
}

int km__kobj_get(struct km_ctx *ctx, const uint8_t id[16], km__kobj **out)
{
    return kobj_get(ctx, id, NULL, out);
}

void km__cache_clear(struct km_ctx *ctx)
{
    size_t b;
    km__br_wrlock(&ctx->cache_lock);
    for (b = 0; ctx->cache != NULL && b < ctx->cache_buckets; b++) {
        km__kobj *k = ctx->cache[b], *n;
        ctx->cache[b] = NULL;
        for (; k != NULL; k = n) {
            n = k->hnext;
            k->hnext = NULL;
            km__kobj_unref(k);
        }
    }
    free(ctx->cache);
    ctx->cache = NULL;
    ctx->cache_buckets = ctx->cache_count = 0;
    km__br_wrunlock(&ctx->cache_lock);
}

int km__ver_obj(km__kobj *k, km__ver *v, void **out)
{
    km__txn *t = NULL;
    km_secret *ref = NULL;
    km_backend_keyspec spec;
    void *obj = atomic_load_explicit(&v->obj, memory_order_acquire);
    uint8_t vk[20];
    int rc;

    if (obj != NULL) {
        *out = obj;
        return KM_OK;
    }
    pthread_mutex_lock(&v->mu);
    obj = atomic_load(&v->obj);
    if (obj != NULL) {
        pthread_mutex_unlock(&v->mu);
        *out = obj;
        return KM_OK;
    }
    km__vkey(vk, k->id, v->version);
    rc = km__txn_begin(k->ctx->env, 0, &t);
    if (rc == KM_OK) {
        rc = km__rec_get(t, k->ctx->sealer, KM__T_MATERIAL, vk, 20, &ref);
        km__txn_abort(t);
    }
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_STATE, "the material of this key version is gone");
    if (rc == KM_OK) {
        memset(&spec, 0, sizeof spec);
        spec.version = 1;
        spec.type = k->type;
        spec.usage = k->usage;
        spec.flags = k->flags;
        spec.key_id = k->id;
        spec.key_version = v->version;
        rc = k->be->ops.load(k->be->state, &spec, km_secret_data(ref), km_secret_len(ref), &obj);
        if (rc == KM_OK && obj == NULL)
            rc = km__err(KM_E_BACKEND, "backend '%s' loaded no object", k->be->ops.name);
        if (rc == KM_OK)
            atomic_store_explicit(&v->obj, obj, memory_order_release);
    }
    km_secret_free(ref);
    pthread_mutex_unlock(&v->mu);
    if (rc == KM_OK)
        *out = obj;
    return rc;
}

static uint64_t shares_bytes(km__ver *v, int take);

/* Reserves the next block of invocations for this process in the vault. */
static int reserve_block(km__kobj *k, km__ver *v, uint64_t limit)
{
    km__txn *t = NULL;
    uint64_t inv = 0, bytes = 0, grant;
    uint8_t vk[20];
    int rc;

    if (k->session) /* its whole allowance was granted at creation */
        return km__err(KM_E_LIMIT, "session key reached its usage limit");

    km__vkey(vk, k->id, v->version);
    rc = km__wtxn_begin(k->ctx, &t);
    if (rc != KM_OK)
        return rc;
    rc = read_counters(t, k->ctx->sealer, vk, &inv, &bytes);
    if (rc != KM_OK)
        goto fail;
    if (inv >= limit) {
        rc = km__err(KM_E_LIMIT, "key version %u reached its usage limit; rotate the key",
                     v->version);
        goto fail;
    }
    grant = v->block;
    /* with a small limit, reserve finely so that usage-based rotation and
     * the hard stop fall close to the real count */
    if (limit != KM__NO_LIMIT && grant > limit / 64)
        grant = limit / 64 ? limit / 64 : 1;
    if (limit - inv < grant)
        grant = limit - inv;
    bytes += atomic_exchange(&v->bytes, 0) + shares_bytes(v, 1);
    rc = write_counters(t, k->ctx->sealer, vk, inv + grant, bytes);
    if (rc != KM_OK)
        goto fail;
    /* counters only: nothing a handle caches changed */
    rc = km__wtxn_commit_plain(t, 0);
    t = NULL;
    if (rc != KM_OK)
        return rc;
    v->global_end = inv + grant;
    v->reserved_seen = inv + grant;
    v->bytes_seen = bytes;
    if (v->block < KM__RESERVE_MAX)
        v->block *= 2;
    atomic_fetch_add(&v->allowance, grant);
    return KM_OK;
fail:
    km__wtxn_abort(t);
    return rc;
}

int km__key_protect_check(km__kobj *k, uint32_t usage, const char *what, uint32_t version,
                          km__ver **out)
{
    int derive = usage == KM_USAGE_DERIVE || usage == KM_USAGE_AGREE || usage == KM_USAGE_AGREE_RAW;

    if (!(k->usage & usage))
        return km__err(KM_E_USAGE, "key '%s' (%s) may not %s", k->name,
                       km__type_name(k->type), what);
    if (k->policy_rc != KM_OK)
        return km__err(KM_E_POLICY, "%s", k->policy_msg);
    if (k->primary == 0)
        return km__err(KM_E_STATE, "key '%s' has no version that may %s", k->name,
                       derive ? "be used" : "protect new data");
    if (version != 0 && version != k->primary)
        return km__err(KM_E_STATE, "version %u of key '%s' is not its primary version (%u)",
                       version, k->name, k->primary);
    /* the audit entry of a refused call names the primary */
    *out = k->vers[k->primary - 1];
    return km__may_protect(*out, km__now(k->ctx));
}

/* A thread's share of a version's allowance: invocations handed to it and not
 * used yet, and the bytes it processed since the last reservation. A line of
 * its own, so that threads counting on one version never share one. Threads
 * beyond KM__VSHARES share lines (the fields are atomic either way). */
#define KM__VSHARES 16
#define KM__VSHARE_CHUNK 256 /* invocations handed to a share at a time */

struct km__vshare {
    _Alignas(64) atomic_uint_fast64_t avail;
    atomic_uint_fast64_t bytes;
};

/* Takes one invocation from share s; 0 when it has none. */
static int share_take(struct km__vshare *s, uint64_t bytes)
{
    uint_fast64_t a = atomic_load_explicit(&s->avail, memory_order_relaxed);
    while (a > 0) {
        if (atomic_compare_exchange_weak_explicit(&s->avail, &a, a - 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_add_explicit(&s->bytes, bytes, memory_order_relaxed);
            return 1;
        }
    }
    return 0;
}

/* The bytes counted in v's shares, taken out of them (take) or only read. */
static uint64_t shares_bytes(km__ver *v, int take)
{
    struct km__vshare *s = atomic_load_explicit(&v->shares, memory_order_acquire);
    uint64_t sum = 0;
    int i;
    for (i = 0; s != NULL && i < KM__VSHARES; i++)
        sum += take ? atomic_exchange(&s[i].bytes, 0) : atomic_load(&s[i].bytes);
    return sum;
}

uint64_t km__ver_bytes_pending(km__ver *v)
{
    return atomic_load(&v->bytes) + shares_bytes(v, 0);
}

/* The slow path of km__ver_count, under v->mu: hand the thread's share a chunk
 * of the process's allowance (reserving a block in the vault when it is spent),
 * and use one invocation of it. When the vault refuses (the limit), the
 * invocations left in other threads' shares are still this process's to use:
 * take one of them before refusing, so that N threads together make exactly the
 * limit's count of calls. Shares are filled only under v->mu. */
static int count_slow(km__kobj *k, km__ver *v, struct km__vshare *mine, uint64_t bytes,
                      uint64_t limit)
{
    int rc = KM_OK, i;
    for (;;) {
        uint64_t allow = atomic_load(&v->allowance), used = atomic_load(&v->used), take;
        if (used < allow) {
            take = allow - used < KM__VSHARE_CHUNK ? allow - used : KM__VSHARE_CHUNK;
            atomic_store(&v->used, used + take);
            atomic_fetch_add(&mine->avail, take - 1);
            atomic_fetch_add(&mine->bytes, bytes);
            return KM_OK;
        }
        if ((rc = reserve_block(k, v, limit)) != KM_OK)
            break;
    }
    for (i = 0; i < KM__VSHARES; i++) {
        struct km__vshare *s = atomic_load(&v->shares) + i;
        if (share_take(s, bytes))
            return KM_OK;
    }
    return rc;
}

int km__ver_count(km__kobj *k, km__ver *v, uint64_t bytes, uint64_t limit)
{
    struct km__vshare *s = atomic_load_explicit(&v->shares, memory_order_acquire);
    int rc = KM_OK;

    if (s != NULL && share_take(s + km__thread_index() % KM__VSHARES, bytes))
        return KM_OK;
    pthread_mutex_lock(&v->mu);
    if ((s = atomic_load(&v->shares)) == NULL) {
        s = aligned_alloc(64, KM__VSHARES * sizeof *s);
        if (s == NULL)
            rc = km__err(KM_E_NOMEM, "out of memory");
        else {
            memset(s, 0, KM__VSHARES * sizeof *s);
            atomic_store_explicit(&v->shares, s, memory_order_release);
        }
    }
    if (rc == KM_OK)
        rc = count_slow(k, v, s + km__thread_index() % KM__VSHARES, bytes, limit);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* Empties v's shares back into the process's allowance (under v->mu, or when
 * no thread counts on v): the invocations they held count as unused. */
static void shares_return(km__ver *v)
{
    struct km__vshare *s = atomic_load(&v->shares);
    uint64_t back = 0;
    int i;
    for (i = 0; s != NULL && i < KM__VSHARES; i++)
        back += atomic_exchange(&s[i].avail, 0);
    atomic_fetch_sub(&v->used, back);
}

/* Gives back the unused part of this process's last block, when no other
 * process reserved after it (so the persisted count stays an upper bound). */
void km__kobj_release_counters(km__kobj *k)
{
    km__txn *t = NULL;
    uint32_t i;

    /* never touch the environment from a forked child (docs/PLATFORM.md) */
    if (k->ctx == NULL || k->session || k->ctx->fork_gen != atomic_load(&km__fork_gen))
        return;
    for (i = 0; i < k->nvers; i++) {
        km__ver *v = k->vers[i];
        uint64_t used, allow;
        shares_return(v);
        used = atomic_load(&v->used);
        allow = atomic_load(&v->allowance);
        uint64_t inv = 0, bytes = 0, unused;
        uint8_t vk[20];
        if (allow == 0 || used >= allow)
            continue;
        unused = allow - used;
        if (t == NULL && km__wtxn_begin(k->ctx, &t) != KM_OK)
            return;
        km__vkey(vk, k->id, v->version);
        if (read_counters(t, k->ctx->sealer, vk, &inv, &bytes) != KM_OK)
            continue;
        if (inv == v->global_end && inv >= unused)
            (void)write_counters(t, k->ctx->sealer, vk, inv - unused,
                                 bytes + atomic_exchange(&v->bytes, 0) + shares_bytes(v, 1));
        atomic_store(&v->allowance, used);
    }
    if (t != NULL)
        (void)km__wtxn_commit_plain(t, 1);
}

static int kobj_rotate_stored(km__kobj *k, uint32_t *new_version);

/* ------------------------------------------------------------ handles */

static int handle_new(km_key **out, km__kobj *k)
{
    km_key *h = calloc(1, sizeof *h);
    if (h == NULL) {
        km__kobj_unref(k);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    h->k = k;
    h->fork_gen = atomic_load(&km__fork_gen);
    *out = h;
    return KM_OK;
}

static int ctx_arg(const char *fn, km_ctx *ctx)
{
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "%s: ctx is NULL", fn);
    return km__ctx_check(ctx);
}

int km__key_lookup_name(km_ctx *ctx, km__txn *t, const char *name, size_t len, uint8_t id[16])
{
    uint8_t h[32], rec[16];
    size_t rl = 0;
    int rc = km__sealer_name_hash(ctx->sealer, name, len, h);
    if (rc != KM_OK)
        return rc;
    rc = km__rec_read(t, ctx->sealer, KM__T_NAMES, h, 32, rec, sizeof rec, &rl);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no key with this name");
    if (rc == KM_E_BUFFER || (rc == KM_OK && rl != 16))
        rc = km__err(KM_E_CORRUPT, "name record: bad length");
    if (rc == KM_OK)
        memcpy(id, rec, 16);
    km_memzero(rec, sizeof rec);
    return rc;
}

/* `name` is not k's name as cached: an alias, or the key was renamed since.
 * In one snapshot, the name index must still point at k and k's record must
 * hold `name` as its name or an alias (else the index was tampered with). */
static int name_points_at(km_ctx *ctx, const char *name, size_t len, km__kobj *k)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint8_t id[16];
    int rc;

    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__key_lookup_name(ctx, t, name, len, id);
    if (rc == KM_OK && memcmp(id, k->id, 16) != 0)
        rc = km__err(KM_E_NOTFOUND, "no key with this name"); /* moved meanwhile */
    if (rc == KM_OK)
        rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK && km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK)
        rc = KM_E_CORRUPT;
    if (rc == KM_OK && !km__keyrec_has_name(km_secret_data(rec), km_secret_len(rec), name))
        rc = km__err(KM_E_CORRUPT, "name index points at another key");
    km_secret_free(rec);
    km__txn_abort(t);
    if (rc == KM_OK)
        (void)km__kobj_refresh(k, 1); /* a rename: the handle shows the new name */
    return rc;
}

int km_key_open(km_key **out, km_ctx *ctx, const char *name)
{
    KM__REMOTE(ctx, KM__KC_KEY_OPEN, out, name);
    km__txn *t = NULL;
    km__kobj *k = NULL;
    uint8_t id[16];
    size_t len;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_key_open: out is NULL");
    *out = NULL;
    if ((rc = ctx_arg("km_key_open", ctx)) != KM_OK || (rc = km__key_name_check("km_key_open", name, &len)) != KM_OK)
        return rc;
    /* the name index and the key record (with its versions) in one snapshot */
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__key_lookup_name(ctx, t, name, len, id);
    if (rc == KM_OK)
        rc = kobj_get(ctx, id, t, &k);
    km__txn_abort(t);
    if (rc != KM_OK)
        return rc;
    if (strcmp(k->name, name) != 0 && (rc = name_points_at(ctx, name, len, k)) != KM_OK) {
        km__kobj_unref(k);
        return rc;
    }
    return handle_new(out, k);
}

/* A cached object of a key purged since (km_key_purge in this process). */
static int kobj_removed(km__kobj *k)
{
    int r;
    pthread_rwlock_rdlock(&k->lock);
    r = k->removed;
    pthread_rwlock_unlock(&k->lock);
    return r;
}

int km_key_open_id(km_key **out, km_ctx *ctx, const uint8_t id[16])
{
    KM__REMOTE(ctx, KM__KC_KEY_OPEN_ID, out, id);
    km__kobj *k = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_key_open_id: out is NULL");
    *out = NULL;
    if ((rc = ctx_arg("km_key_open_id", ctx)) != KM_OK)
        return rc;
    if (id == NULL)
        return km__err(KM_E_INVALID, "km_key_open_id: id is NULL");
    if ((rc = km__kobj_get(ctx, id, &k)) != KM_OK)
        return rc;
    if (kobj_removed(k)) {
        km__kobj_unref(k);
        return km__err(KM_E_NOTFOUND, "the key no longer exists");
    }
    return handle_new(out, k);
}

/* ------------------------------------------------------ create / import */

static int check_key_options(const char *fn, km_key_type type, const km_key_options *o,
                             uint32_t *usage, uint32_t *flags, const char **prot)
{
    uint32_t allowed;
    if (!km__type_is_valid((int)type))
        return km__err(KM_E_INVALID, "%s: unknown key type %d", fn, (int)type);
    allowed = km__type_usage_allowed(type);
    *usage = km__type_usage(type);
    *flags = 0;
    *prot = "software";
    if (o == NULL)
        return KM_OK;
    if (o->version < 1 || o->version > KM_KEY_OPTIONS_VERSION)
        return km__err(KM_E_INVALID, "%s: opts->version %u is not supported", fn, o->version);
    if (o->usage != 0) {
        if (o->usage & ~allowed)
            return km__err(KM_E_INVALID, "%s: opts->usage has bits the key type cannot do", fn);
        *usage = o->usage;
    }
    if (o->flags & ~(KM_KEY_EXPORTABLE | KM_KEY_DELETION_PROTECTED))
        return km__err(KM_E_INVALID, "%s: opts->flags has unknown bits", fn);
    *flags = o->flags;
    if (o->protection != NULL) {
        if (o->protection[0] == '\0' || strlen(o->protection) > 31)
            return km__err(KM_E_INVALID, "%s: opts->protection must be 1 to 31 bytes", fn);
        *prot = o->protection;
    }
    /* libkm exports only material it holds itself (km_key_export_wrapped):
     * an exportable device key would be an extractable token object that
     * libkm can never export */
    if ((*flags & KM_KEY_EXPORTABLE) && strcmp(*prot, "software") != 0)
        return km__err(KM_E_UNSUPPORTED, "keys protected by '%s' cannot be exportable: libkm "
                                         "exports only software keys", *prot);
    if (o->version >= 2) {
        if (o->activate_at < 0)
            return km__err(KM_E_INVALID, "%s: opts->activate_at is negative", fn);
        if (o->rotate_days > 36500 || o->protect_days > 36500 || o->process_days > 36500)
            return km__err(KM_E_INVALID, "%s: periods must be at most 36500 days", fn);
        if (o->protect_days != 0 && o->process_days != 0 && o->protect_days > o->process_days)
            return km__err(KM_E_INVALID, "%s: opts->protect_days exceeds opts->process_days "
                                         "(protection must stop before processing)", fn);
        if (o->destroy_grace_days > 3650)
            return km__err(KM_E_INVALID, "%s: opts->destroy_grace_days must be at most 3650", fn);
    }
    if (o->version >= 5 && o->import_version > KM__VERSIONS_MAX)
        return km__err(KM_E_INVALID, "%s: opts->import_version is past the %u versions a key "
                                     "keeps", fn, (unsigned)KM__VERSIONS_MAX);
    if (o->version >= 5 && o->rsa_oaep_digest != 0) {
        if (km__type_family(type) != KM__FAM_RSA)
            return km__err(KM_E_INVALID, "%s: opts->rsa_oaep_digest applies to RSA keys only", fn);
        if (o->rsa_oaep_digest != 256 && o->rsa_oaep_digest != 384 && o->rsa_oaep_digest != 512)
            return km__err(KM_E_INVALID, "%s: opts->rsa_oaep_digest must be 256, 384 or 512", fn);
    }
    return KM_OK;
}

/* The periods of a key, from its options (version 2 fields). */
static void set_periods(km__kobj *k, const km_key_options *o)
{
    k->rotate_days = k->protect_days = k->process_days = 0;
    k->grace_days = 30;
    k->policy_json = o != NULL && o->version >= 3 ? (char *)(uintptr_t)o->policy : NULL;
    k->oaep_digest = o != NULL && o->version >= 5 && o->rsa_oaep_digest != 0
                     ? o->rsa_oaep_digest : 256;
    if (o != NULL && o->version >= 2) {
        k->rotate_days = o->rotate_days;
        k->protect_days = o->protect_days;
        k->process_days = o->process_days;
        if (o->destroy_grace_days != 0)
            k->grace_days = o->destroy_grace_days;
    }
}

/* A new version's dates: activation (now, or a later date: PRE_ACTIVE),
 * then protect-stop and process-stop from the key's periods. */
void km__version_init(km__ver *v, const km__kobj *k, uint32_t version, int64_t now,
                      int64_t activate_at)
{
    memset(v, 0, sizeof *v);
    v->version = version;
    v->created = now;
    v->activated = activate_at > now ? activate_at : now;
    v->state = activate_at > now ? KM_STATE_PRE_ACTIVE : KM_STATE_ACTIVE;
    if (k->protect_days)
        v->protect_stop = v->activated + (int64_t)k->protect_days * 86400;
    if (k->process_days)
        v->process_stop = v->activated + (int64_t)k->process_days * 86400;
}

/* Applies the vault policy to a new key: fills the periods the caller left
 * unset with the policy's defaults (into *eff, a version-2 copy of the
 * options) and checks type, size, dates and periods. */
static int policy_for_new_key(km_ctx *ctx, km_key_type type, uint32_t key_bits,
                              const km_key_options *o, km_key_options *eff)
{
    const km__policy *p;
    km__policy *own = NULL;
    int rc;
    km_key_options def = KM_KEY_OPTIONS_INIT;
    *eff = def;
    if (o != NULL) {
        eff->usage = o->usage;
        eff->flags = o->flags;
        eff->protection = o->protection;
        if (o->version >= 4)
            eff->key_id = o->key_id;
        if (o->version >= 5) {
            eff->import_version = o->import_version;
            eff->rsa_oaep_digest = o->rsa_oaep_digest;
        }
        if (o->version >= 2) {
            eff->activate_at = o->activate_at;
            eff->rotate_days = o->rotate_days;
            eff->protect_days = o->protect_days;
            eff->process_days = o->process_days;
            eff->destroy_grace_days = o->destroy_grace_days;
        }
    }
    if (o != NULL && o->version >= 3 && o->policy != NULL) {
        size_t pl = strnlen(o->policy, KM__KEY_POLICY_MAX + 1);
        if (pl == 0 || pl > KM__KEY_POLICY_MAX)
            return km__err(KM_E_INVALID, "opts->policy must be 1 to %d bytes of JSON",
                           KM__KEY_POLICY_MAX);
        eff->policy = o->policy;
    }
    if (eff->destroy_grace_days == 0)
        eff->destroy_grace_days = 30;
    p = km__policy_acquire(ctx);
    if (eff->policy != NULL) {
        /* a looser rule is KM_E_POLICY naming it; a malformed one KM_E_INVALID */
        rc = km__policy_parse(&own, eff->policy, strlen(eff->policy), p);
        if (rc != KM_OK) {
            km__policy_release(ctx);
            return rc;
        }
        p = own;
    }
    km__policy_key_defaults(p, type, &eff->rotate_days, &eff->protect_days, &eff->process_days,
                            &eff->destroy_grace_days);
    rc = km__policy_check_create(p, type, key_bits, km__now(ctx), eff->rotate_days,
                                 eff->protect_days, eff->process_days, eff->destroy_grace_days);
    km__policy_free(own);
    km__policy_release(ctx);
    return rc;
}

/* Writes key record rec (as stored) back with versions nvers+1..v->version-1
 * (destroyed, never imported) and v appended, the count set to v->version:
 * the metadata (key_meta.c) and fields of a newer libkm stay. */
static int put_new_version(km_ctx *ctx, km__txn *t, const uint8_t id[16], const km_secret *rec,
                           uint32_t nvers, const km__ver *v, int64_t now)
{
    static const uint8_t drop[] = { KM__K_NVERSIONS, KM__K_VERSIONS };
    const uint8_t *l = NULL;
    size_t ll = 0, cap, off;
    uint8_t *b, *list;
    km__tlv_w w;
    int rc;

    if ((rc = km__keyrec_vers(km_secret_data(rec), km_secret_len(rec), NULL, NULL)) != KM_OK)
        return rc;
    (void)km__tlv_find(km_secret_data(rec), km_secret_len(rec), KM__K_VERSIONS, &l, &ll);
    cap = ll + (size_t)(v->version - nvers) * 160;
    list = malloc(cap);
    b = malloc(km_secret_len(rec) + cap + 32);
    if (list == NULL || b == NULL) {
        free(list);
        free(b);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    memcpy(list, l, ll);
    off = ll;
    if ((rc = vlist_add_new(list, cap, &off, nvers + 1, v, now)) == KM_OK) {
        km__tlv_init(&w, b, km_secret_len(rec) + cap + 32);
        km__tlv_copy_except(&w, km_secret_data(rec), km_secret_len(rec), drop, sizeof drop);
        km__tlv_put_u32(&w, KM__K_NVERSIONS, v->version);
        km__tlv_put(&w, KM__K_VERSIONS, list, off);
        if ((rc = km__tlv_end(&w)) == KM_OK)
            rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id, 16, b, w.len, 0);
    }
    free(list);
    free(b);
    return rc;
}

/* Writes a new key (record, name index, version 1 metadata and material) in
 * one transaction. Nothing is written on failure. With `raw` (plaintext
 * material being imported), the caller's approved KM_REQ_IMPORT_RAW request
 * for exactly that material is consumed in the same transaction: it is spent
 * only if the key is stored. */
static int store_new_key(km_ctx *ctx, int op, const char *name, size_t name_len,
                         km_key_type type, uint32_t usage, uint32_t flags, const char *prot,
                         const km_secret *ref, const km_key_options *o, uint8_t id_out[16],
                         const uint8_t *raw, size_t raw_len)
{
    km__txn *t = NULL;
    km__kobj tmp;
    km__ver v;
    uint8_t h[32], vk[20], *buf = NULL;
    size_t len = 0, cap;
    int64_t now = km__now(ctx);
    uint32_t first;
    int rc;

    memset(&tmp, 0, sizeof tmp);
    tmp.name = (char *)(uintptr_t)name;
    tmp.type = type;
    tmp.usage = usage;
    tmp.flags = flags;
    snprintf(tmp.protection, sizeof tmp.protection, "%s", prot);
    tmp.created = now;
    set_periods(&tmp, o);
    first = o != NULL && o->version >= 5 && o->import_version > 1 ? o->import_version : 1;
    km__version_init(&v, &tmp, first, now, o != NULL && o->version >= 2 ? o->activate_at : 0);

    if (o != NULL && o->version >= 4 && o->key_id != NULL)
        memcpy(id_out, o->key_id, 16);
    else if ((rc = km__random(id_out, 16)) != KM_OK)
        return rc;
    if ((rc = km__sealer_name_hash(ctx->sealer, name, name_len, h)) != KM_OK)
        return rc;
    km__vkey(vk, id_out, first);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__rec_put(t, ctx->sealer, KM__T_NAMES, h, 32, id_out, 16, KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS) {
        rc = km__err(KM_E_EXISTS, "a key with this name exists");
        goto fail;
    }
    if (rc != KM_OK)
        goto fail;
    cap = KM__KEY_POLICY_MAX + 1024 + (size_t)first * 160;
    if ((buf = malloc(cap)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = encode_key(&tmp, first, &v, now, buf, cap, &len)) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id_out, 16, buf, len, KM__PUT_NOOVERWRITE)) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_MATERIAL, vk, 20, km_secret_data(ref),
                             km_secret_len(ref), KM__PUT_NOOVERWRITE)) != KM_OK)
        goto fail;
    if ((rc = km__acl_set_owner(ctx, t, id_out)) != KM_OK)
        goto fail;
    if (raw != NULL
        && (rc = km__quorum_consume(ctx, t, KM_REQ_IMPORT_RAW, NULL, raw, raw_len)) != KM_OK)
        goto fail;
    {
        char d[120];
        snprintf(d, sizeof d, "'%.64s' %s, %s", name, km__type_name(type), prot);
        free(buf);
        return km__wtxn_commit(ctx, t, op, id_out, first, d);
    }
fail:
    free(buf);
    km__wtxn_abort(t);
    return rc;
}

static void make_spec(km_backend_keyspec *spec, km_key_type type, uint32_t usage,
                      uint32_t flags, const uint8_t *id, uint32_t version)
{
    memset(spec, 0, sizeof *spec);
    spec->version = 1;
    spec->type = type;
    spec->usage = usage;
    spec->flags = flags;
    spec->key_id = id;
    spec->key_version = version;
}

static int key_create(int internal, km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                  const km_key_options *opts)
{
    km__backend_inst *be = NULL;
    km_backend_keyspec spec;
    km_secret *ref = NULL;
    km__kobj *k = NULL;
    const char *prot;
    uint32_t usage, flags;
    uint8_t id[16], pending_id[16] = { 0 };
    km_key_options eff;
    size_t len;
    int rc;

    if (out != NULL)
        *out = NULL;
    if ((rc = ctx_arg("km_key_create", ctx)) != KM_OK
        || (rc = km__acl_check(ctx, KM__OP_KEY_CREATE, NULL)) != KM_OK
        || (rc = km__key_name_check("km_key_create", name, &len)) != KM_OK
        || (rc = check_key_options("km_key_create", type, opts, &usage, &flags, &prot)) != KM_OK)
        return rc;
    if (!internal && strncmp(name, KM__RESERVED_PREFIX, sizeof KM__RESERVED_PREFIX - 1) == 0)
        return km__err(KM_E_INVALID, "km_key_create: names beginning with 'km:' are libkm's own");
    if (opts != NULL && opts->version >= 4 && opts->key_id != NULL)
        return km__err(KM_E_INVALID, "km_key_create: opts->key_id is for imports only");
    if (opts != NULL && opts->version >= 5 && opts->import_version != 0)
        return km__err(KM_E_INVALID, "km_key_create: opts->import_version is for imports only");
    if ((rc = km__ctx_policy_refresh(ctx, 0)) != KM_OK
        || (rc = policy_for_new_key(ctx, type, 0, opts, &eff)) != KM_OK)
        return rc;
    if ((rc = km__backend_get(ctx, prot, &be)) != KM_OK)
        return rc;
    make_spec(&spec, type, usage, flags, pending_id, 1);
    rc = be->ops.generate(be->state, &spec, &ref);
    if (rc == KM_OK && (ref == NULL || km_secret_len(ref) == 0))
        rc = km__err(KM_E_BACKEND, "backend '%s' returned no key reference", prot);
    if (rc != KM_OK)
        goto out;
    rc = store_new_key(ctx, KM__OP_KEY_CREATE, name, len, type, usage, flags, prot, ref, &eff, id,
                       NULL, 0);
    if (rc != KM_OK) {
        if (be->ops.destroy != NULL)
            (void)be->ops.destroy(be->state, &spec, km_secret_data(ref), km_secret_len(ref));
        goto out;
    }
    if (out != NULL) {
        if ((rc = km__kobj_get(ctx, id, &k)) == KM_OK)
            rc = handle_new(out, k);
    }
out:
    km_secret_free(ref);
    return rc;
}

static int pem_is_public(const uint8_t *m, size_t len)
{
    static const char label[] = "-----BEGIN PUBLIC KEY-----";
    size_t i, n = sizeof label - 1;
    for (i = 0; i + n <= len; i++)
        if (memcmp(m + i, label, n) == 0)
            return 1;
    return 0;
}

int km_key_create(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                  const km_key_options *opts)
{
    KM__REMOTE(ctx, KM__KC_KEY_CREATE, out, name, type, opts);
    return key_create(0, out, ctx, name, type, opts);
}

int km__key_create_reserved(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                            const km_key_options *opts)
{
    return key_create(1, out, ctx, name, type, opts);
}

/* Adds imported material to key k as `version` (newer than its last; the
 * versions between are recorded destroyed), in one transaction with the raw
 * import's dual-control request when `raw`. */
static int import_version(km__kobj *k, const char *name, km_key_type type, const char *prot,
                          uint32_t kflags, km_material_format format, const uint8_t *material,
                          size_t material_len, uint32_t version, int raw)
{
    km_ctx *ctx = k->ctx;
    km_backend_keyspec spec;
    km_secret *ref = NULL, *rec = NULL;
    km__txn *t = NULL;
    km__ver v;
    uint8_t vk[20];
    uint32_t nvers = 0;
    int rc, committing = 0;

    if (strcmp(k->name, name) != 0)
        return km__err(KM_E_EXISTS, "a key with this id exists here as '%s'", k->name);
    if (k->type != type || strcmp(k->protection, prot) != 0
        || (k->flags & KM_KEY_PUBLIC_ONLY) != (kflags & KM_KEY_PUBLIC_ONLY))
        return km__err(KM_E_INVALID, "key '%s' is %s, %s%s: a further version must be the same",
                       k->name, km__type_name(k->type), k->protection,
                       (k->flags & KM_KEY_PUBLIC_ONLY) ? ", public only" : "");
    if (version > KM__VERSIONS_MAX)
        return km__err(KM_E_LIMIT, "a key keeps at most %u versions", (unsigned)KM__VERSIONS_MAX);
    {
        const km__policy *p = km__policy_acquire(ctx);
        km__policy *own = NULL;
        if (k->policy_json != NULL
            && km__policy_parse(&own, k->policy_json, strlen(k->policy_json), p) == KM_OK)
            p = own;
        rc = km__policy_check_protect_bits(p, type, format == KM_MATERIAL_RAW
                                                        && km__type_is_symmetric(type)
                                                        ? (uint32_t)(material_len * 8) : 0,
                                           km__now(ctx));
        km__policy_free(own);
        km__policy_release(ctx);
        if (rc != KM_OK)
            return rc;
    }
    if (k->be->ops.import == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' does not import keys", prot);
    make_spec(&spec, k->type, k->usage, k->flags, k->id, version);
    rc = k->be->ops.import(k->be->state, &spec, format, material, material_len, &ref);
    if (rc == KM_OK && (ref == NULL || km_secret_len(ref) == 0))
        rc = km__err(KM_E_BACKEND, "backend '%s' returned no key reference", prot);
    if (rc != KM_OK)
        goto out;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        goto fail;
    rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK && (km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK
                        || km__tlv_get_u32(km_secret_data(rec), km_secret_len(rec),
                                           KM__K_NVERSIONS, &nvers) != KM_OK))
        rc = km__err(KM_E_CORRUPT, "key record: bad version count");
    if (rc != KM_OK)
        goto fail;
    if (version <= nvers) {
        rc = km__err(KM_E_EXISTS, "key '%s' already has version %u (its last is %u): a further "
                                  "version must be newer", k->name, version, nvers);
        goto fail;
    }
    km__version_init(&v, k, version, km__now(ctx), 0);
    km__vkey(vk, k->id, version);
    if ((rc = put_new_version(ctx, t, k->id, rec, nvers, &v, km__now(ctx))) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_MATERIAL, vk, 20, km_secret_data(ref),
                             km_secret_len(ref), KM__PUT_NOOVERWRITE)) != KM_OK)
        goto fail;
    if (raw && (rc = km__quorum_consume(ctx, t, KM_REQ_IMPORT_RAW, NULL, material, material_len))
                  != KM_OK)
        goto fail;
    {
        char d[120];
        snprintf(d, sizeof d, "'%.64s' version %u imported", k->name, version);
        rc = km__wtxn_commit_ex(ctx, t, KM__OP_KEY_IMPORT, k->id, version, d, &committing);
        t = NULL;
    }
    if (rc != KM_OK && !committing)
        goto fail;
    if (rc == KM_OK)
        (void)km__kobj_refresh(k, 1);
    goto out;
fail:
    km__wtxn_abort(t);
    if (ref != NULL && k->be->ops.destroy != NULL)
        (void)k->be->ops.destroy(k->be->state, &spec, km_secret_data(ref), km_secret_len(ref));
out:
    km_secret_free(rec);
    km_secret_free(ref);
    return rc;
}

int km_key_import(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                  km_material_format format, const uint8_t *material, size_t material_len,
                  uint32_t flags, const km_key_options *opts)
{
    KM__REMOTE(ctx, KM__KC_KEY_IMPORT, out, name, type, format, material, material_len, flags, opts);
    uint8_t spki[2048];
    size_t n = 0;
    int rc;

    if (format != KM_MATERIAL_JWK)
        return km__key_import(out, ctx, name, type, format, material, material_len, flags, opts,
                              0, NULL, 0);
    /* a public JWK: its SPKI DER, imported as such (a verify-only key) */
    if (out != NULL)
        *out = NULL;
    if (material == NULL || material_len == 0 || material_len > (1u << 16))
        return km__err(KM_E_INVALID, "km_key_import: material must be 1 byte to 64 KiB");
    if ((rc = km__jwk_to_spki(material, material_len, spki, sizeof spki, &n)) != KM_OK)
        return rc;
    return km__key_import(out, ctx, name, type, KM_MATERIAL_SPKI_DER, spki, n, flags, opts, 0,
                          NULL, 0);
}

int km__key_import(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                   km_material_format format, const uint8_t *material, size_t material_len,
                   uint32_t flags, const km_key_options *opts, int reference,
                   const uint8_t *req_params, size_t req_params_len)
{
    km__backend_inst *be = NULL;
    km_backend_keyspec spec;
    km_secret *ref = NULL;
    km__kobj *k = NULL;
    const char *prot;
    uint32_t usage, kflags;
    int raw;
    uint8_t id[16], pending_id[16] = { 0 };
    km_key_options eff;
    size_t len;
    int rc, pub;

    if (out != NULL)
        *out = NULL;
    if ((rc = ctx_arg("km_key_import", ctx)) != KM_OK
        || (rc = km__acl_check(ctx, KM__OP_KEY_IMPORT, NULL)) != KM_OK
        || (rc = km__key_name_check("km_key_import", name, &len)) != KM_OK
        || (rc = check_key_options("km_key_import", type, opts, &usage, &kflags, &prot)) != KM_OK)
        return rc;
    if (strncmp(name, KM__RESERVED_PREFIX, sizeof KM__RESERVED_PREFIX - 1) == 0)
        return km__err(KM_E_INVALID, "km_key_import: names beginning with 'km:' are libkm's own");
    if (!(flags & KM_IMPORT_ALLOW_RAW))
        return km__err(KM_E_INVALID, "km_key_import: plaintext import needs KM_IMPORT_ALLOW_RAW");
    if (flags & ~KM_IMPORT_ALLOW_RAW)
        return km__err(KM_E_INVALID, "km_key_import: flags has unknown bits");
    if (format < KM_MATERIAL_RAW || format > KM_MATERIAL_PEM)
        return km__err(KM_E_INVALID, "km_key_import: unknown material format %d", (int)format);
    if (material == NULL || material_len == 0 || material_len > (1u << 16))
        return km__err(KM_E_INVALID, "km_key_import: material must be 1 byte to 64 KiB");
    pub = format == KM_MATERIAL_SPKI_DER
          || (format == KM_MATERIAL_PEM && pem_is_public(material, material_len));
    if (pub) {
        if (km__type_is_symmetric(type))
            return km__err(KM_E_INVALID, "km_key_import: a public key for a symmetric type");
        kflags |= KM_KEY_PUBLIC_ONLY;
        usage &= KM_USAGE_VERIFY | KM_USAGE_ENCRYPT | KM_USAGE_WRAP;
        if (usage == 0)
            return km__err(KM_E_INVALID, "km_key_import: a public key of this type has no use");
    }
    /* dual control over key material entering the vault, in the clear or
     * wrapped (the request then binds the blob): the approved request is
     * checked now, before the backend sees the material, and spent in the
     * transaction that stores the key (store_new_key) */
    raw = !pub && !reference;
    if (req_params == NULL) {
        req_params = material;
        req_params_len = material_len;
    }
    if (raw && (rc = km__quorum_check_own(ctx, KM_REQ_IMPORT_RAW, NULL, req_params,
                                          req_params_len)) != KM_OK)
        return rc;
    /* a further version of a key this vault has (the same id) */
    if (opts != NULL && opts->version >= 5 && opts->import_version > 1 && opts->key_id != NULL) {
        rc = km__kobj_get(ctx, opts->key_id, &k);
        if (rc == KM_OK) {
            rc = import_version(k, name, type, prot, kflags, format, material, material_len,
                                opts->import_version, raw);
            if (rc == KM_OK && out != NULL)
                return handle_new(out, k);
            km__kobj_unref(k);
            return rc;
        }
        if (rc != KM_E_NOTFOUND)
            return rc;
        km_error_clear();
        k = NULL;
    }
    if ((rc = km__ctx_policy_refresh(ctx, 0)) != KM_OK
        || (rc = policy_for_new_key(ctx, type,
                                    format == KM_MATERIAL_RAW && km__type_is_symmetric(type)
                                        ? (uint32_t)(material_len * 8) : 0,
                                    opts, &eff)) != KM_OK)
        return rc;
    if ((rc = km__backend_get(ctx, prot, &be)) != KM_OK)
        return rc;
    if (be->ops.import == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' does not import keys", prot);
    make_spec(&spec, type, usage, kflags, pending_id, 1);
    rc = be->ops.import(be->state, &spec, format, material, material_len, &ref);
    if (rc == KM_OK && (ref == NULL || km_secret_len(ref) == 0))
        rc = km__err(KM_E_BACKEND, "backend '%s' returned no key reference", prot);
    if (rc != KM_OK)
        goto out;
    rc = store_new_key(ctx, KM__OP_KEY_IMPORT, name, len, type, usage, kflags, prot, ref, &eff, id,
                       raw ? req_params : NULL, req_params_len);
    if (rc != KM_OK)
        goto out;
    if (out != NULL) {
        if ((rc = km__kobj_get(ctx, id, &k)) == KM_OK)
            rc = handle_new(out, k);
    }
out:
    km_secret_free(ref);
    return rc;
}

/* The primary: the newest version the rules let protect now. */
uint32_t km__primary(const km__kobj *k, int64_t now)
{
    uint32_t i;
    for (i = k->nvers; i > 0; i--) {
        km__vstate vs = km__ver_vstate(k->vers[i - 1]);
        if (km__rules_primary_candidate(&vs, now))
            return vs.version;
    }
    return 0;
}

/* --------------------------------------------------------------- rotate */

int km__kobj_rotate(km__kobj *k, uint32_t *new_version)
{
    if (k->session)
        return km__err(KM_E_UNSUPPORTED, "a session key does not rotate; make a new one");
    return kobj_rotate_stored(k, new_version);
}

static int kobj_rotate_stored(km__kobj *k, uint32_t *new_version)
{
    km_backend_keyspec spec;
    km_secret *ref = NULL, *rec = NULL;
    km__txn *t = NULL;
    km__ver v;
    keyrec r;
    uint8_t vk[20];
    uint32_t nv;
    int rc, committing = 0;

    if (new_version != NULL)
        *new_version = 0;
    if (k->flags & KM_KEY_PUBLIC_ONLY)
        return km__err(KM_E_UNSUPPORTED, "km_key_rotate: a public-only key cannot rotate");

    /* Generate outside the write transaction (RSA can take seconds). */
    make_spec(&spec, k->type, k->usage, k->flags, k->id, 0);
    rc = k->be->ops.generate(k->be->state, &spec, &ref);
    if (rc == KM_OK && (ref == NULL || km_secret_len(ref) == 0))
        rc = km__err(KM_E_BACKEND, "backend returned no key reference");
    if (rc != KM_OK)
        goto out;

    if ((rc = km__wtxn_begin(k->ctx, &t)) != KM_OK)
        goto out;
    rc = km__rec_get(t, k->ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK)
        rc = decode_key(km_secret_data(rec), km_secret_len(rec), &r);
    if (rc != KM_OK)
        goto fail;
    if (r.nvers >= KM__VERSIONS_MAX) {
        rc = km__err(KM_E_LIMIT, "km_key_rotate: the key has %u versions, the most a key keeps",
                     (unsigned)KM__VERSIONS_MAX);
        goto fail;
    }
    nv = r.nvers + 1;
    {
        km__kobj tmp;
        char name[KM_KEY_NAME_MAX + 1];
        memcpy(name, r.name, r.name_len);
        name[r.name_len] = '\0';
        memset(&tmp, 0, sizeof tmp);
        tmp.name = name;
        tmp.type = (km_key_type)r.type;
        tmp.usage = r.usage;
        tmp.flags = r.flags;
        memcpy(tmp.protection, r.protection, sizeof tmp.protection);
        tmp.created = r.created;
        tmp.rotate_days = r.rotate_days;
        tmp.protect_days = r.protect_days;
        tmp.process_days = r.process_days;
        tmp.grace_days = r.grace_days;
        tmp.oaep_digest = r.oaep_digest;
        {
            char pol[KM__KEY_POLICY_MAX + 1];
            tmp.policy_json = NULL;
            if (r.policy != NULL) {
                memcpy(pol, r.policy, r.policy_len);
                pol[r.policy_len] = '\0';
                tmp.policy_json = pol;
            }
            km__version_init(&v, &tmp, nv, km__now(k->ctx), 0);
        }
        if ((rc = put_new_version(k->ctx, t, k->id, rec, r.nvers, &v, km__now(k->ctx))) != KM_OK)
            goto fail;
    }
    km__vkey(vk, k->id, nv);
    if ((rc = km__rec_put(t, k->ctx->sealer, KM__T_MATERIAL, vk, 20, km_secret_data(ref),
                             km_secret_len(ref), KM__PUT_NOOVERWRITE)) != KM_OK)
        goto fail;
    {
        char d[100];
        snprintf(d, sizeof d, "'%.64s' to version %u", k->name, nv);
        rc = km__wtxn_commit_ex(k->ctx, t, KM__OP_KEY_ROTATE, k->id, nv, d, &committing);
        t = NULL;
    }
    if (rc != KM_OK && !committing)
        goto fail;
    if (rc != KM_OK)
        goto out;   /* the commit failed: the material may be referenced, keep it */
    if (new_version != NULL)
        *new_version = nv;
    (void)km__kobj_refresh(k, 1);
    goto out;
fail:
    km__txn_abort(t);
    if (k->be->ops.destroy != NULL && ref != NULL)
        (void)k->be->ops.destroy(k->be->state, &spec, km_secret_data(ref), km_secret_len(ref));
out:
    km_secret_free(rec);
    km_secret_free(ref);
    return rc;
}

/* ----------------------------------------------------------------- list */

struct list_arg {
    km_key_list_fn fn;
    void *arg;
};

static int list_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                    void *p)
{
    struct list_arg *la = p;
    char name[KM_KEY_NAME_MAX + 1];
    keyrec r;
    int rc;

    if (key_len != 16)
        return km__err(KM_E_CORRUPT, "key table: bad key length");
    if ((rc = decode_key(val, val_len, &r)) != KM_OK)
        return rc;
    memcpy(name, r.name, r.name_len);
    name[r.name_len] = '\0';
    return la->fn(name, key, (km_key_type)r.type, la->arg) ? 1 : 0;
}

int km__key_id_collect(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    km__id_list *l = arg;
    (void)name; (void)type;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->ids, cap * 16);
        if (p == NULL)
            return 1;
        l->ids = p;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], id, 16);
    return 0;
}

int km_key_list(km_ctx *ctx, km_key_list_fn fn, void *arg)
{
    KM__REMOTE(ctx, KM__KC_KEY_LIST, fn, arg);
    struct list_arg la;
    km__txn *t = NULL;
    int rc;

    if ((rc = ctx_arg("km_key_list", ctx)) != KM_OK)
        return rc;
    if (fn == NULL)
        return km__err(KM_E_INVALID, "km_key_list: fn is NULL");
    la.fn = fn;
    la.arg = arg;
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_iter(t, ctx->sealer, KM__T_KEYS, NULL, 0, list_one, &la);
    km__txn_abort(t);
    return rc;
}

void km__ver_unload(km__kobj *k, uint32_t version)
{
    void *obj;
    km__kobj_wrlock(k);
    if (version >= 1 && version <= k->nvers) {
        obj = atomic_exchange(&k->vers[version - 1]->obj, NULL);
        if (obj != NULL)
            k->be->ops.unload(k->be->state, obj);
    }
    km__kobj_wrunlock(k);
}

/* ----------------------------------------------------------- session keys */

int km_session_key_create(km_key **out, km_ctx *ctx, km_key_type type)
{
    km_backend_keyspec spec;
    km_secret *ref = NULL;
    km__kobj *k = NULL;
    km__ver *v;
    void *obj = NULL;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_session_key_create: out is NULL");
    *out = NULL;
    KM__REMOTE_NO(ctx, "km_session_key_create", "a session key lives only in the process that made it; use a vault key, or libkm linked in");
    if ((rc = ctx_arg("km_session_key_create", ctx)) != KM_OK)
        return rc;
    if (!km__type_is_valid((int)type))
        return km__err(KM_E_INVALID, "km_session_key_create: unknown key type %d", (int)type);
    if ((rc = km__ctx_policy_refresh(ctx, 0)) != KM_OK)
        return rc;
    {
        const km__policy *p = km__policy_acquire(ctx);
        rc = km__policy_check_create(p, type, 0, km__now(ctx), 0, 0, 0, 30);
        km__policy_release(ctx);
        if (rc != KM_OK)
            return rc;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    atomic_init(&k->refs, 1);
    k->ctx = ctx;
    km__ctx_ref(ctx);
    pthread_rwlock_init(&k->lock, NULL);
    k->session = 1;
    k->type = type;
    k->usage = km__type_usage(type);
    snprintf(k->protection, sizeof k->protection, "software");
    k->created = km__now(ctx);
    k->grace_days = 30;
    if ((rc = km__random(k->id, 16)) != KM_OK)
        goto fail;
    if ((k->name = strdup("(session key)")) == NULL || (k->vers = calloc(1, sizeof *k->vers)) == NULL
        || (k->vers[0] = ver_new(1)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto fail;
    }
    k->nvers = 1;
    v = k->vers[0];
    km__version_init(v, k, 1, k->created, 0);
    if ((rc = km__backend_get(ctx, "software", &k->be)) != KM_OK)
        goto fail;
    make_spec(&spec, type, k->usage, 0, k->id, 1);
    if ((rc = k->be->ops.generate(k->be->state, &spec, &ref)) != KM_OK)
        goto fail;
    rc = k->be->ops.load(k->be->state, &spec, km_secret_data(ref), km_secret_len(ref), &obj);
    km_secret_free(ref); /* the loaded object holds the only copy */
    if (rc != KM_OK)
        goto fail;
    atomic_store(&v->obj, obj);
    k->primary = 1;
    kobj_apply_policy(k);
    atomic_store(&v->allowance, k->usage_limit);
    atomic_store(&k->loaded_gen, km__wtxn_gen());
    atomic_store(&k->checked_ms, km__mono_ms());
    return handle_new(out, k);
fail:
    kobj_free(k);
    return rc;
}
