/*
 * kmip_ttlv.c - the KMIP TTLV codec: a strict tree decoder, an appending
 * encoder, and the request/response message helpers. See kmip_ttlv.h for the
 * format and the rules; docs/FORMATS.md for where libkm uses it.
 */
#include "kmip_ttlv.h"
#include "km/sys/server.h"

#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- helpers */

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint64_t padded(uint64_t len)
{
    return (len + 7) & ~(uint64_t)7;
}

const char *km__kmip_tag_name(uint32_t tag)
{
    switch (tag) {
#define KM__KMIP_TAG_NAME_(name, value) \
    case value:                         \
        return #name;
        KM__KMIP_TAG_LIST(KM__KMIP_TAG_NAME_)
#undef KM__KMIP_TAG_NAME_
    default:
        return NULL;
    }
}

/* --------------------------------------------------------------- decoding */

typedef struct dec {
    const uint8_t *buf;
    size_t len;
    km__ttlv_limits lim;
    km__ttlv_tree *t;
    size_t cap;
} dec;

static int fail(dec *d, const char *why, size_t off)
{
    d->t->why = why;
    d->t->why_off = off;
    return KM_E_CORRUPT;
}

static int new_item(dec *d, int *out)
{
    if (d->t->n >= d->lim.max_items)
        return KM_E_CORRUPT;
    if (d->t->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        km__ttlv_item *ni;
        if (ncap > d->lim.max_items)
            ncap = d->lim.max_items;
        ni = realloc(d->t->items, ncap * sizeof *ni);
        if (ni == NULL)
            return KM_E_NOMEM;
        d->t->items = ni;
        d->cap = ncap;
    }
    *out = (int)d->t->n++;
    return KM_OK;
}

static int zero_bytes(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/*
 * Decodes the item at [off, end) whose parent is `parent` at `depth`;
 * stores the offset after it (padding included) in *next_off and its index
 * in *out_idx.
 */
static int dec_item(dec *d, size_t off, size_t end, int parent, unsigned depth, size_t *next_off,
                    int *out_idx)
{
    const uint8_t *h;
    uint32_t tag, vlen;
    uint8_t type;
    uint64_t plen;
    size_t voff;
    int idx, rc, last = -1;

    if (depth > d->lim.max_depth)
        return fail(d, "nesting deeper than the limit", off);
    if (end - off < 8)
        return fail(d, "truncated item header", off);
    h = d->buf + off;
    tag = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    type = h[3];
    vlen = be32(h + 4);
    voff = off + 8;
    plen = padded(vlen);
    if (plen > (uint64_t)(end - voff))
        return fail(d, "item length past the end of its container", off);
    switch (type) {
    case KM__TTLV_INTEGER:
    case KM__TTLV_ENUM:
    case KM__TTLV_INTERVAL:
        if (vlen != 4)
            return fail(d, "4-byte item with another length", off);
        break;
    case KM__TTLV_LONG:
    case KM__TTLV_DATETIME:
    case KM__TTLV_DATETIME_EXT:
        if (vlen != 8)
            return fail(d, "8-byte item with another length", off);
        break;
    case KM__TTLV_BOOL:
        if (vlen != 8)
            return fail(d, "boolean with a length other than 8", off);
        if (be64(d->buf + voff) > 1)
            return fail(d, "boolean neither 0 nor 1", off);
        break;
    case KM__TTLV_BIGINT:
        if (vlen == 0 || vlen % 8 != 0)
            return fail(d, "big integer length not a positive multiple of 8", off);
        break;
    case KM__TTLV_STRUCTURE:
        if (vlen % 8 != 0)
            return fail(d, "structure length not a multiple of 8", off);
        break;
    case KM__TTLV_TEXT:
    case KM__TTLV_BYTES:
        break;
    default:
        return fail(d, "unknown item type", off + 3);
    }
    if (!zero_bytes(d->buf + voff + vlen, (size_t)(plen - vlen)))
        return fail(d, "padding bytes not zero", voff + vlen);
    rc = new_item(d, &idx);
    if (rc == KM_E_CORRUPT)
        return fail(d, "more items than the limit", off);
    if (rc != KM_OK)
        return rc;
    d->t->items[idx].tag = tag;
    d->t->items[idx].type = type;
    d->t->items[idx].len = vlen;
    d->t->items[idx].val = d->buf + voff;
    d->t->items[idx].parent = parent;
    d->t->items[idx].first = -1;
    d->t->items[idx].next = -1;
    d->t->items[idx].depth = depth;
    if (type == KM__TTLV_STRUCTURE) {
        size_t c = voff, cend = voff + vlen;
        while (c < cend) {
            int child;
            rc = dec_item(d, c, cend, idx, depth + 1, &c, &child);
            if (rc != KM_OK)
                return rc;
            /* items may have moved: index, never keep pointers */
            if (last < 0)
                d->t->items[idx].first = child;
            else
                d->t->items[last].next = child;
            last = child;
        }
    }
    *next_off = voff + (size_t)plen;
    *out_idx = idx;
    return KM_OK;
}

int km__ttlv_decode(const uint8_t *buf, size_t len, const km__ttlv_limits *lim,
                    km__ttlv_tree *out)
{
    static const km__ttlv_limits def = KM__TTLV_LIMITS_DEFAULT;
    dec d;
    size_t end = 0;
    int root, rc;

    if (out == NULL)
        return KM_E_INVALID;
    memset(out, 0, sizeof *out);
    if (buf == NULL && len > 0)
        return KM_E_INVALID;
    memset(&d, 0, sizeof d);
    d.buf = buf;
    d.len = len;
    d.lim = lim ? *lim : def;
    if (d.lim.max_depth > KM__TTLV_MAX_DEPTH)
        d.lim.max_depth = KM__TTLV_MAX_DEPTH;
    if (d.lim.max_items > (size_t)0x7fffffff)
        d.lim.max_items = 0x7fffffff;
    d.t = out;
    if (len > d.lim.max_len)
        return fail(&d, "message longer than the limit", 0);
    rc = dec_item(&d, 0, len, -1, 1, &end, &root);
    if (rc != KM_OK)
        return rc;
    if (end != len)
        return fail(&d, "bytes after the message", end);
    return KM_OK;
}

void km__ttlv_tree_free(km__ttlv_tree *t)
{
    if (t == NULL)
        return;
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

int km__ttlv_peek_len(const uint8_t *buf, size_t len, size_t max_len, size_t *out_total)
{
    uint64_t total;

    if (buf == NULL || out_total == NULL || len < 8)
        return KM_E_CORRUPT;
    total = 8 + padded(be32(buf + 4));
    if (total > max_len)
        return KM_E_CORRUPT;
    *out_total = (size_t)total;
    return KM_OK;
}

int km__ttlv_child(const km__ttlv_tree *t, int parent, uint32_t tag, int nth)
{
    int c;

    if (t == NULL || parent < 0 || (size_t)parent >= t->n
        || t->items[parent].type != KM__TTLV_STRUCTURE)
        return -1;
    for (c = t->items[parent].first; c >= 0; c = t->items[c].next)
        if (t->items[c].tag == tag && nth-- == 0)
            return c;
    return -1;
}

size_t km__ttlv_count(const km__ttlv_tree *t, int parent, uint32_t tag)
{
    size_t n = 0;
    int c;

    if (t == NULL || parent < 0 || (size_t)parent >= t->n
        || t->items[parent].type != KM__TTLV_STRUCTURE)
        return 0;
    for (c = t->items[parent].first; c >= 0; c = t->items[c].next)
        if (t->items[c].tag == tag)
            n++;
    return n;
}

static int typed(const km__ttlv_tree *t, int parent, uint32_t tag, uint8_t type,
                 const km__ttlv_item **out)
{
    int c = km__ttlv_child(t, parent, tag, 0);
    if (c < 0)
        return KM_E_NOTFOUND;
    if (t->items[c].type != type)
        return KM_E_CORRUPT;
    *out = &t->items[c];
    return KM_OK;
}

int km__ttlv_get_int(const km__ttlv_tree *t, int parent, uint32_t tag, int32_t *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_INTEGER, &it);
    if (rc == KM_OK)
        *out = (int32_t)be32(it->val);
    return rc;
}

int km__ttlv_get_long(const km__ttlv_tree *t, int parent, uint32_t tag, int64_t *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_LONG, &it);
    if (rc == KM_OK)
        *out = (int64_t)be64(it->val);
    return rc;
}

int km__ttlv_get_enum(const km__ttlv_tree *t, int parent, uint32_t tag, uint32_t *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_ENUM, &it);
    if (rc == KM_OK)
        *out = be32(it->val);
    return rc;
}

int km__ttlv_get_bool(const km__ttlv_tree *t, int parent, uint32_t tag, int *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_BOOL, &it);
    if (rc == KM_OK)
        *out = be64(it->val) != 0;
    return rc;
}

int km__ttlv_get_datetime(const km__ttlv_tree *t, int parent, uint32_t tag, int64_t *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_DATETIME, &it);
    if (rc == KM_OK)
        *out = (int64_t)be64(it->val);
    return rc;
}

int km__ttlv_get_interval(const km__ttlv_tree *t, int parent, uint32_t tag, uint32_t *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_INTERVAL, &it);
    if (rc == KM_OK)
        *out = be32(it->val);
    return rc;
}

int km__ttlv_get_bytes(const km__ttlv_tree *t, int parent, uint32_t tag, const uint8_t **out,
                       size_t *out_len)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_BYTES, &it);
    if (rc == KM_OK) {
        *out = it->val;
        *out_len = it->len;
    }
    return rc;
}

int km__ttlv_get_text(const km__ttlv_tree *t, int parent, uint32_t tag, const char **out,
                      size_t *out_len)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_TEXT, &it);
    if (rc == KM_OK) {
        *out = (const char *)it->val;
        *out_len = it->len;
    }
    return rc;
}

int km__ttlv_get_struct(const km__ttlv_tree *t, int parent, uint32_t tag, int *out)
{
    const km__ttlv_item *it;
    int rc = typed(t, parent, tag, KM__TTLV_STRUCTURE, &it);
    if (rc == KM_OK)
        *out = (int)(it - t->items);
    return rc;
}

/* --------------------------------------------------------------- encoding */

void km__ttlv_enc_init(km__ttlv_enc *e, size_t max)
{
    memset(e, 0, sizeof *e);
    e->max = max ? max : KM__TTLV_DEFAULT_MAX_LEN;
}

void km__ttlv_enc_free(km__ttlv_enc *e)
{
    if (e == NULL)
        return;
    if (e->buf != NULL) {
        wipe(e->buf, e->cap);
        free(e->buf);
    }
    e->buf = NULL;
    e->len = e->cap = 0;
    e->depth = 0;
}

/* Makes room for `n` more bytes; a grown buffer is copied and the old one
 * wiped before it is freed (realloc would leave the bytes behind). */
static int reserve(km__ttlv_enc *e, uint64_t n)
{
    size_t ncap;
    uint8_t *nb;

    if (e->err != KM_OK)
        return e->err;
    if (n > (uint64_t)(e->max - e->len))
        return e->err = KM_E_NOMEM;
    if (e->len + n <= e->cap)
        return KM_OK;
    ncap = e->cap ? e->cap : 256;
    while (ncap < e->len + n)
        ncap = ncap > e->max / 2 ? e->max : ncap * 2;
    nb = malloc(ncap);
    if (nb == NULL)
        return e->err = KM_E_NOMEM;
    if (e->buf != NULL) {
        memcpy(nb, e->buf, e->len);
        wipe(e->buf, e->cap);
        free(e->buf);
    }
    e->buf = nb;
    e->cap = ncap;
    return KM_OK;
}

static int header(km__ttlv_enc *e, uint32_t tag, uint8_t type, uint64_t vlen)
{
    uint8_t *h;

    if (e->err != KM_OK)
        return e->err;
    if (tag > 0xffffff || vlen > 0xffffffffu)
        return e->err = KM_E_INVALID;
    if (reserve(e, 8 + padded(vlen)) != KM_OK)
        return e->err;
    h = e->buf + e->len;
    h[0] = (uint8_t)(tag >> 16);
    h[1] = (uint8_t)(tag >> 8);
    h[2] = (uint8_t)tag;
    h[3] = type;
    put_be32(h + 4, (uint32_t)vlen);
    e->len += 8;
    return KM_OK;
}

/* Writes `vlen` value bytes (from p, or zeros when p is NULL) and the padding. */
static int value(km__ttlv_enc *e, const uint8_t *p, size_t vlen)
{
    size_t pl = (size_t)padded(vlen);
    if (p != NULL && vlen > 0)
        memcpy(e->buf + e->len, p, vlen);
    else
        memset(e->buf + e->len, 0, vlen);
    memset(e->buf + e->len + vlen, 0, pl - vlen);
    e->len += pl;
    return KM_OK;
}

int km__ttlv_begin(km__ttlv_enc *e, uint32_t tag)
{
    if (e->err != KM_OK)
        return e->err;
    if (e->depth >= KM__TTLV_MAX_DEPTH)
        return e->err = KM_E_INVALID;
    e->open[e->depth] = e->len;
    if (header(e, tag, KM__TTLV_STRUCTURE, 0) != KM_OK)
        return e->err;
    e->depth++;
    return KM_OK;
}

int km__ttlv_end(km__ttlv_enc *e)
{
    size_t h;

    if (e->err != KM_OK)
        return e->err;
    if (e->depth == 0)
        return e->err = KM_E_INVALID;
    h = e->open[--e->depth];
    if (e->len - h - 8 > 0xffffffffu)
        return e->err = KM_E_INVALID;
    put_be32(e->buf + h + 4, (uint32_t)(e->len - h - 8));
    return KM_OK;
}

static int put_fixed(km__ttlv_enc *e, uint32_t tag, uint8_t type, const uint8_t *v, size_t n)
{
    if (header(e, tag, type, n) != KM_OK)
        return e->err;
    return value(e, v, n);
}

int km__ttlv_put_int(km__ttlv_enc *e, uint32_t tag, int32_t v)
{
    uint8_t b[4];
    put_be32(b, (uint32_t)v);
    return put_fixed(e, tag, KM__TTLV_INTEGER, b, 4);
}

int km__ttlv_put_long(km__ttlv_enc *e, uint32_t tag, int64_t v)
{
    uint8_t b[8];
    put_be64(b, (uint64_t)v);
    return put_fixed(e, tag, KM__TTLV_LONG, b, 8);
}

int km__ttlv_put_enum(km__ttlv_enc *e, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    put_be32(b, v);
    return put_fixed(e, tag, KM__TTLV_ENUM, b, 4);
}

int km__ttlv_put_bool(km__ttlv_enc *e, uint32_t tag, int v)
{
    uint8_t b[8];
    put_be64(b, v ? 1 : 0);
    return put_fixed(e, tag, KM__TTLV_BOOL, b, 8);
}

int km__ttlv_put_datetime(km__ttlv_enc *e, uint32_t tag, int64_t v)
{
    uint8_t b[8];
    put_be64(b, (uint64_t)v);
    return put_fixed(e, tag, KM__TTLV_DATETIME, b, 8);
}

int km__ttlv_put_interval(km__ttlv_enc *e, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    put_be32(b, v);
    return put_fixed(e, tag, KM__TTLV_INTERVAL, b, 4);
}

int km__ttlv_put_text(km__ttlv_enc *e, uint32_t tag, const char *s, size_t len)
{
    if (e->err == KM_OK && s == NULL && len > 0)
        return e->err = KM_E_INVALID;
    return put_fixed(e, tag, KM__TTLV_TEXT, (const uint8_t *)s, len);
}

int km__ttlv_put_bytes(km__ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t len)
{
    if (e->err == KM_OK && p == NULL && len > 0)
        return e->err = KM_E_INVALID;
    return put_fixed(e, tag, KM__TTLV_BYTES, p, len);
}

int km__ttlv_put_bytes2(km__ttlv_enc *e, uint32_t tag, const uint8_t *p1, size_t len1,
                        const uint8_t *p2, size_t len2)
{
    if (e->err == KM_OK && ((p1 == NULL && len1 > 0) || (p2 == NULL && len2 > 0)
                            || len1 > SIZE_MAX - len2))
        return e->err = KM_E_INVALID;
    if (header(e, tag, KM__TTLV_BYTES, (uint64_t)len1 + len2) != KM_OK)
        return e->err;
    if (len1 > 0)
        memcpy(e->buf + e->len, p1, len1);
    if (len2 > 0)
        memcpy(e->buf + e->len + len1, p2, len2);
    e->len += len1 + len2;
    memset(e->buf + e->len, 0, (size_t)(padded(len1 + len2) - (len1 + len2)));
    e->len += (size_t)(padded(len1 + len2) - (len1 + len2));
    return KM_OK;
}

int km__ttlv_put_bigint(km__ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t len)
{
    uint64_t vlen;
    size_t ext;
    uint8_t fill;

    if (e->err == KM_OK && p == NULL && len > 0)
        return e->err = KM_E_INVALID;
    vlen = len == 0 ? 8 : padded(len);
    if (header(e, tag, KM__TTLV_BIGINT, vlen) != KM_OK)
        return e->err;
    ext = (size_t)vlen - len;
    fill = (len > 0 && (p[0] & 0x80)) ? 0xff : 0x00;
    memset(e->buf + e->len, fill, ext);
    if (len > 0)
        memcpy(e->buf + e->len + ext, p, len);
    e->len += (size_t)vlen;
    return KM_OK;
}

int km__ttlv_put_item(km__ttlv_enc *e, const km__ttlv_tree *t, int idx)
{
    const km__ttlv_item *it;
    int c;

    if (e->err != KM_OK)
        return e->err;
    if (t == NULL || idx < 0 || (size_t)idx >= t->n)
        return e->err = KM_E_INVALID;
    it = &t->items[idx];
    if (it->type != KM__TTLV_STRUCTURE)
        return put_fixed(e, it->tag, it->type, it->val, it->len);
    if (km__ttlv_begin(e, it->tag) != KM_OK)
        return e->err;
    for (c = it->first; c >= 0; c = t->items[c].next)
        if (km__ttlv_put_item(e, t, c) != KM_OK)
            return e->err;
    return km__ttlv_end(e);
}

int km__ttlv_enc_finish(km__ttlv_enc *e, const uint8_t **out, size_t *out_len)
{
    if (e->err != KM_OK)
        return e->err;
    if (e->depth != 0 || e->len == 0)
        return e->err = KM_E_INVALID;
    *out = e->buf;
    *out_len = e->len;
    return KM_OK;
}

/* ---------------------------------------------------------------- messages */

int km__kmip_req_begin(km__ttlv_enc *e, int major, int minor, uint32_t batch_count)
{
    km__ttlv_begin(e, KM__KMIP_TAG_REQUEST_MESSAGE);
    km__ttlv_begin(e, KM__KMIP_TAG_REQUEST_HEADER);
    km__ttlv_begin(e, KM__KMIP_TAG_PROTOCOL_VERSION);
    km__ttlv_put_int(e, KM__KMIP_TAG_PROTOCOL_VERSION_MAJOR, major);
    km__ttlv_put_int(e, KM__KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
    km__ttlv_end(e);
    if (batch_count > 1)
        km__ttlv_put_bool(e, KM__KMIP_TAG_BATCH_ORDER_OPTION, 1);
    if (batch_count > 0x7fffffff && e->err == KM_OK)
        e->err = KM_E_INVALID;
    km__ttlv_put_int(e, KM__KMIP_TAG_BATCH_COUNT, (int32_t)batch_count);
    return km__ttlv_end(e);
}

int km__kmip_item_begin(km__ttlv_enc *e, uint32_t operation, const uint8_t *id, size_t id_len)
{
    km__ttlv_begin(e, KM__KMIP_TAG_BATCH_ITEM);
    km__ttlv_put_enum(e, KM__KMIP_TAG_OPERATION, operation);
    if (id_len > 0)
        km__ttlv_put_bytes(e, KM__KMIP_TAG_UNIQUE_BATCH_ITEM_ID, id, id_len);
    return km__ttlv_begin(e, KM__KMIP_TAG_REQUEST_PAYLOAD);
}

int km__kmip_item_end(km__ttlv_enc *e)
{
    km__ttlv_end(e);
    return km__ttlv_end(e);
}

int km__kmip_req_end(km__ttlv_enc *e)
{
    return km__ttlv_end(e);
}

/* A getter's result for a required field: NOTFOUND and CORRUPT both corrupt. */
static int need(int rc)
{
    return rc == KM_OK ? KM_OK : KM_E_CORRUPT;
}

/* An optional field: absent is fine, another type is corrupt. */
static int opt(int rc)
{
    return rc == KM_OK || rc == KM_E_NOTFOUND ? KM_OK : KM_E_CORRUPT;
}

int km__kmip_response_parse(const km__ttlv_tree *t, km__kmip_response *out)
{
    int hdr, pv, item, i = 0;
    int32_t major = 0, minor = 0, count = 0;

    if (t == NULL || out == NULL)
        return KM_E_INVALID;
    memset(out, 0, sizeof *out);
    if (t->n == 0 || t->items[0].tag != KM__KMIP_TAG_RESPONSE_MESSAGE
        || t->items[0].type != KM__TTLV_STRUCTURE)
        return KM_E_CORRUPT;
    if (need(km__ttlv_get_struct(t, 0, KM__KMIP_TAG_RESPONSE_HEADER, &hdr)) != KM_OK
        || need(km__ttlv_get_struct(t, hdr, KM__KMIP_TAG_PROTOCOL_VERSION, &pv)) != KM_OK
        || need(km__ttlv_get_int(t, pv, KM__KMIP_TAG_PROTOCOL_VERSION_MAJOR, &major)) != KM_OK
        || need(km__ttlv_get_int(t, pv, KM__KMIP_TAG_PROTOCOL_VERSION_MINOR, &minor)) != KM_OK
        || need(km__ttlv_get_datetime(t, hdr, KM__KMIP_TAG_TIME_STAMP, &out->time_stamp)) != KM_OK
        || need(km__ttlv_get_int(t, hdr, KM__KMIP_TAG_BATCH_COUNT, &count)) != KM_OK)
        return KM_E_CORRUPT;
    if (count < 1 || count > KM__KMIP_MAX_BATCH
        || km__ttlv_count(t, 0, KM__KMIP_TAG_BATCH_ITEM) != (size_t)count)
        return KM_E_CORRUPT;
    out->major = major;
    out->minor = minor;
    out->n = (size_t)count;
    for (item = t->items[0].first; item >= 0; item = t->items[item].next) {
        km__kmip_result *r;
        if (t->items[item].tag != KM__KMIP_TAG_BATCH_ITEM)
            continue;
        if (t->items[item].type != KM__TTLV_STRUCTURE)
            return KM_E_CORRUPT;
        r = &out->items[i++];
        r->payload = -1;
        if (opt(km__ttlv_get_enum(t, item, KM__KMIP_TAG_OPERATION, &r->operation)) != KM_OK
            || need(km__ttlv_get_enum(t, item, KM__KMIP_TAG_RESULT_STATUS, &r->status)) != KM_OK
            || opt(km__ttlv_get_enum(t, item, KM__KMIP_TAG_RESULT_REASON, &r->reason)) != KM_OK
            || opt(km__ttlv_get_text(t, item, KM__KMIP_TAG_RESULT_MESSAGE, &r->message,
                                     &r->message_len)) != KM_OK
            || opt(km__ttlv_get_bytes(t, item, KM__KMIP_TAG_UNIQUE_BATCH_ITEM_ID, &r->batch_id,
                                      &r->batch_id_len)) != KM_OK
            || opt(km__ttlv_get_struct(t, item, KM__KMIP_TAG_RESPONSE_PAYLOAD, &r->payload))
                   != KM_OK)
            return KM_E_CORRUPT;
    }
    return KM_OK;
}

/* ------------------------------------------------------ kmd's libkm call */

static const struct kcall_sig {
    uint32_t fn;
    const char *name;
    const char *format;
} kcall_sigs[] = {
    { KM__KC_HELLO, "hello", "XCU" },
    { KM__KC_KEY_OPEN, "km_key_open", "Ks" },
    { KM__KC_KEY_OPEN_ID, "km_key_open_id", "Kx" },
    { KM__KC_KEY_CREATE, "km_key_create", "KsuO" },
    { KM__KC_KEY_IMPORT, "km_key_import", "KsuubuO" },
    { KM__KC_KEY_LIST, "km_key_list", "N" },
    { KM__KC_KEY_ROTATE, "km_key_rotate", "kU" },
    { KM__KC_KEY_PUBLIC_EXPORT, "km_key_public_export", "kuuB" },
    { KM__KC_KEY_INFO, "km_key_info", "Ik" },
    { KM__KC_KEY_LIST_FILTERED, "km_key_list_filtered", "QN" },
    { KM__KC_ENCRYPT, "km_encrypt", "kbbB" },
    { KM__KC_DECRYPT, "km_decrypt", "ubbB" },
    { KM__KC_DECRYPT_KEY, "km_decrypt_key", "kubbB" },
    { KM__KC_SIGN, "km_sign", "kubB" },
    { KM__KC_SIGN_DIGEST, "km_sign_digest", "kuusbB" },
    { KM__KC_VERIFY, "km_verify", "kuubb" },
    { KM__KC_MAC, "km_mac", "kubB" },
    { KM__KC_MAC_VERIFY, "km_mac_verify", "kuubb" },
    { KM__KC_RANDOM, "km_random", "sR" },
    { KM__KC_RSA_DECRYPT, "km_rsa_decrypt", "kubS" },
    { KM__KC_RSA_OAEP_DECRYPT, "km_rsa_oaep_decrypt", "kubbB" },
    { KM__KC_RSA_OAEP_ENCRYPT, "km_rsa_oaep_encrypt", "kubbB" },
    { KM__KC_DATAKEY_GENERATE, "km_datakey_generate", "kbSB" },
    { KM__KC_DATAKEY_DECRYPT, "km_datakey_decrypt", "bbS" },
    { KM__KC_DATAKEY_GENERATE_TYPE, "km_datakey_generate_type", "kubSB" },
    { KM__KC_DATAKEY_PAIR_GENERATE, "km_datakey_pair_generate", "kubSBB" },
    { KM__KC_DATAKEY_PAIR_DECRYPT, "km_datakey_pair_decrypt", "bbS" },
    { KM__KC_REWRAP, "km_rewrap", "bbB" },
    { KM__KC_REWRAP_TO, "km_rewrap_to", "bbkbB" },
    { KM__KC_REWRAP_EX, "km_rewrap_ex", "ubbkbB" },
    { KM__KC_DERIVE, "km_derive", "kbbzS" },
    { KM__KC_AGREE, "km_agree", "kbbzS" },
    { KM__KC_AGREE_RAW, "km_agree_raw", "kbS" },
    { KM__KC_ACTIVATE, "km_key_activate", "ku" },
    { KM__KC_SUSPEND, "km_key_suspend", "ku" },
    { KM__KC_RESUME, "km_key_resume", "ku" },
    { KM__KC_REVOKE, "km_key_revoke", "kuul" },
    { KM__KC_SCHEDULE_DESTROY, "km_key_schedule_destroy", "kuu" },
    { KM__KC_CANCEL_DESTROY, "km_key_cancel_destroy", "ku" },
    { KM__KC_MAINTAIN, "km_maintain", "M" },
    { KM__KC_KEY_RENAME, "km_key_rename", "ks" },
    { KM__KC_ALIAS_ADD, "km_key_alias_add", "ksu" },
    { KM__KC_ALIAS_REMOVE, "km_key_alias_remove", "s" },
    { KM__KC_SET_DESCRIPTION, "km_key_set_description", "ks" },
    { KM__KC_SET_TAG, "km_key_set_tag", "kss" },
    { KM__KC_KEY_SET, "km_key_set", "kT" },
    { KM__KC_KEY_TRIM, "km_key_trim", "kuU" },
    { KM__KC_KEY_PURGE, "km_key_purge", "k" },
    { KM__KC_WHOAMI, "km_whoami", "CU" },
    { KM__KC_KEY_GRANT, "km_key_grant", "ksu" },
    { KM__KC_KEY_PERMS, "km_key_perms", "kU" },
    { KM__KC_KEY_GRANTS, "km_key_grants", "kG" },
    { KM__KC_PRINCIPAL_ADD, "km_principal_add", "subu" },
    { KM__KC_PRINCIPAL_REMOVE, "km_principal_remove", "si" },
    { KM__KC_PRINCIPAL_LIST, "km_principal_list", "P" },
    { KM__KC_POLICY_SET, "km_policy_set", "b" },
    { KM__KC_POLICY_GET, "km_policy_get", "B" },
    { KM__KC_POLICY_REPORT, "km_policy_report", "F" },
    { KM__KC_REQUEST_CREATE, "km_request_create", "usbuX" },
    { KM__KC_REQUEST_APPROVE, "km_request_approve", "x" },
    { KM__KC_REQUEST_INFO, "km_request_info", "xW" },
    { KM__KC_REQUEST_DESCRIBE, "km_request_describe", "xB" },
    { KM__KC_AUDIT_SET_LEVEL, "km_audit_set_level", "u" },
    { KM__KC_AUDIT_GET_LEVEL, "km_audit_get_level", "U" },
    { KM__KC_AUDIT_FLUSH, "km_audit_flush", "" },
    { KM__KC_AUDIT_HEAD_GET, "km_audit_head_get", "H" },
    { KM__KC_AUDIT_VERIFY, "km_audit_verify", "hLL" },
    { KM__KC_AUDIT_FOREACH, "km_audit_foreach", "lA" },
    { KM__KC_AUDIT_ALERTS, "km_audit_alerts", "lE" },
    { KM__KC_KEY_EXPORT_WRAPPED, "km_key_export_wrapped", "kuukbB" },
    { KM__KC_KEY_IMPORT_WRAPPED, "km_key_import_wrapped", "KsuubO" },
    { KM__KC_VAULT_WRAPPING_KEY, "km_vault_wrapping_key", "uB" },
    { KM__KC_KEY_BACKUP, "km_key_backup", "kbbB" },
    { KM__KC_KEY_RESTORE, "km_key_restore", "bbsK" },
};

static const struct kcall_sig *kcall_sig(uint32_t fn)
{
    size_t i;
    for (i = 0; i < sizeof kcall_sigs / sizeof kcall_sigs[0]; i++)
        if (kcall_sigs[i].fn == fn)
            return &kcall_sigs[i];
    return NULL;
}

void km__kmip_uid(const uint8_t id[16], uint32_t ver, int pub, char out[KM__KMIP_UID_CAP])
{
    static const char hx[] = "0123456789abcdef";
    size_t n = 32;
    int i;

    for (i = 0; i < 16; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    if (ver >= 2) {   /* "-v" and the decimal version */
        char d[10];
        int k = 0;
        out[n++] = '-';
        out[n++] = 'v';
        while (ver > 0) {
            d[k++] = (char)('0' + ver % 10);
            ver /= 10;
        }
        while (k > 0)
            out[n++] = d[--k];
    }
    if (pub) {
        memcpy(out + n, "-pub", 4);
        n += 4;
    }
    out[n] = '\0';
}

const char *km__kcall_name(uint32_t fn)
{
    const struct kcall_sig *s = kcall_sig(fn);
    return s != NULL ? s->name : NULL;
}

const char *km__kcall_format(uint32_t fn)
{
    const struct kcall_sig *s = kcall_sig(fn);
    return s != NULL ? s->format : NULL;
}

/* The TTLV type an argument of format character c is sent as (outputs: their
 * capacity, a Long Integer); 0 for an unknown character. */
static uint8_t kcall_type(char c)
{
    switch (c) {
    case 's': return KM__TTLV_TEXT;
    case 'b': case 'x': case 'k': return KM__TTLV_BYTES;
    case 'O': case 'T': case 'Q': case 'h': return KM__TTLV_STRUCTURE;
    case 'u': case 'i': case 'l': case 'z': return KM__TTLV_LONG;
    default: return c >= 'A' && c <= 'Z' ? KM__TTLV_LONG : 0;
    }
}

int km__kcall_decode(const km__ttlv_tree *t, int pl, uint32_t *fn, km__kcall_arg *a,
                     size_t *n, const char **why)
{
    const struct kcall_sig *s;
    int32_t f = 0;
    size_t i, na;
    int c;

    *n = 0;
    *why = NULL;
    if (km__ttlv_get_int(t, pl, KM_KMD_TAG_FUNCTION, &f) != KM_OK) {
        *why = "no Integer function id";
        return KM_E_CORRUPT;
    }
    *fn = (uint32_t)f;
    if ((s = kcall_sig((uint32_t)f)) == NULL) {
        *why = "unknown function id";
        return KM_E_UNSUPPORTED;
    }
    na = strlen(s->format);
    if (km__ttlv_count(t, pl, KM_KMD_TAG_ARG) != na) {
        *why = "wrong number of arguments";
        return KM_E_CORRUPT;
    }
    for (i = 0, c = t->items[pl].first; c >= 0; c = t->items[c].next) {
        const km__ttlv_item *it = &t->items[c];
        char ch;
        if (it->tag != KM_KMD_TAG_ARG)
            continue;
        ch = s->format[i];
        memset(&a[i], 0, sizeof a[i]);
        a[i].st = -1;
        if (it->type == KM__TTLV_BOOL && ch != 'u' && ch != 'i' && ch != 'l' && ch != 'z') {
            a[i].null = 1;                  /* a NULL pointer */
        } else if (it->type != kcall_type(ch)) {
            *why = "an argument of the wrong type";
            return KM_E_CORRUPT;
        } else if (it->type == KM__TTLV_LONG) {
            a[i].n = (int64_t)be64(it->val);
            if (ch >= 'A' && ch <= 'Z' && a[i].n < 0) {
                *why = "a negative capacity";
                return KM_E_CORRUPT;
            }
        } else if (it->type == KM__TTLV_STRUCTURE) {
            a[i].st = c;
        } else {
            a[i].p = it->val;
            a[i].len = it->len;
            if ((ch == 'x' || ch == 'k') && it->len != 16) {
                *why = "a key id that is not 16 bytes";
                return KM_E_CORRUPT;
            }
        }
        i++;
    }
    *n = na;
    return KM_OK;
}
