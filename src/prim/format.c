/* format.c - byte encodings: ciphertext and tag headers, TLV records, base64url. */
#include "km_int.h"

#include <string.h>

/* ---------------------------------------------------------------- headers */

void km__ct_header_write(uint8_t out[KM_CIPHERTEXT_HEADER], const km__ct_header *h)
{
    out[0] = KM__CT_MAGIC0;
    out[1] = h->magic1 == KM__DK_MAGIC1 || h->magic1 == KM__DKP_MAGIC1 ? h->magic1 : KM__CT_MAGIC1;
    out[2] = KM__FORMAT_V1;
    out[3] = h->alg;
    memcpy(out + 4, h->key_id, 16);
    km__be32_put(out + 20, h->version);
    memcpy(out + 24, h->nonce, 12);
}

int km__ct_header_parse(const uint8_t *in, size_t len, km__ct_header *h)
{
    if (in == NULL || len < KM_CIPHERTEXT_OVERHEAD)
        return km__err(KM_E_INVALID, "ciphertext: shorter than the %d-byte header and tag",
                       KM_CIPHERTEXT_OVERHEAD);
    if (in[0] != KM__CT_MAGIC0
        || (in[1] != KM__CT_MAGIC1 && in[1] != KM__DK_MAGIC1 && in[1] != KM__DKP_MAGIC1))
        return km__err(KM_E_INVALID, "ciphertext: not a libkm ciphertext (bad magic)");
    h->magic1 = in[1];
    if (in[2] != KM__FORMAT_V1)
        return km__err(KM_E_UNSUPPORTED, "ciphertext: format version %u is not supported",
                       (unsigned)in[2]);
    h->alg = in[3];
    memcpy(h->key_id, in + 4, 16);
    h->version = km__be32_get(in + 20);
    memcpy(h->nonce, in + 24, 12);
    if (h->version == 0)
        return km__err(KM_E_INVALID, "ciphertext: key version 0 does not exist");
    return KM_OK;
}

void km__tag_header_write(uint8_t out[KM_TAG_HEADER], uint8_t magic1, uint8_t alg,
                          const uint8_t key_id[16], uint32_t version)
{
    out[0] = KM__CT_MAGIC0;
    out[1] = magic1;
    out[2] = KM__FORMAT_V1;
    out[3] = alg;
    memcpy(out + 4, key_id, 16);
    km__be32_put(out + 20, version);
}

int km__tag_header_parse(const uint8_t *in, size_t len, uint8_t magic1, uint8_t *alg,
                         uint8_t key_id[16], uint32_t *version)
{
    if (in == NULL || len <= KM_TAG_HEADER)
        return km__err(KM_E_INVALID, "tagged value: shorter than its %d-byte header",
                       KM_TAG_HEADER);
    if (in[0] != KM__CT_MAGIC0 || in[1] != magic1)
        return km__err(KM_E_INVALID, "tagged value: bad magic (not a libkm %s)",
                       magic1 == KM__SIG_MAGIC1 ? "signature" : "MAC");
    if (in[2] != KM__FORMAT_V1)
        return km__err(KM_E_UNSUPPORTED, "tagged value: format version %u is not supported",
                       (unsigned)in[2]);
    *alg = in[3];
    memcpy(key_id, in + 4, 16);
    *version = km__be32_get(in + 20);
    if (*version == 0)
        return km__err(KM_E_INVALID, "tagged value: key version 0 does not exist");
    return KM_OK;
}

/* -------------------------------------------------------------------- TLV */

void km__tlv_init(km__tlv_w *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

void km__tlv_put(km__tlv_w *w, uint8_t tag, const void *val, size_t len)
{
    if (w->overflow || len > UINT32_MAX || w->cap - w->len < 5 || w->cap - w->len - 5 < len) {
        w->overflow = 1;
        return;
    }
    w->buf[w->len] = tag;
    km__be32_put(w->buf + w->len + 1, (uint32_t)len);
    if (len > 0)
        memcpy(w->buf + w->len + 5, val, len);
    w->len += 5 + len;
}

void km__tlv_put_u32(km__tlv_w *w, uint8_t tag, uint32_t v)
{
    uint8_t b[4];
    km__be32_put(b, v);
    km__tlv_put(w, tag, b, 4);
}

void km__tlv_put_u64(km__tlv_w *w, uint8_t tag, uint64_t v)
{
    uint8_t b[8];
    km__be64_put(b, v);
    km__tlv_put(w, tag, b, 8);
}

void km__tlv_put_str(km__tlv_w *w, uint8_t tag, const char *s)
{
    km__tlv_put(w, tag, s, s ? strlen(s) : 0);
}

int km__tlv_end(const km__tlv_w *w)
{
    return w->overflow ? km__err(KM_E_INTERNAL, "record encoding overflow") : KM_OK;
}

int km__tlv_check(const uint8_t *buf, size_t len)
{
    uint8_t seen[32] = { 0 };
    size_t off = 0;

    if (buf == NULL && len > 0)
        return km__err(KM_E_CORRUPT, "record: NULL");
    while (off < len) {
        uint32_t l;
        uint8_t tag;
        if (len - off < 5)
            return km__err(KM_E_CORRUPT, "record: truncated entry header");
        tag = buf[off];
        l = km__be32_get(buf + off + 1);
        if (len - off - 5 < l)
            return km__err(KM_E_CORRUPT, "record: entry runs past the end");
        if (seen[tag >> 3] & (1u << (tag & 7)))
            return km__err(KM_E_CORRUPT, "record: duplicate entry %u", (unsigned)tag);
        seen[tag >> 3] |= (uint8_t)(1u << (tag & 7));
        off += 5 + (size_t)l;
    }
    return KM_OK;
}

int km__tlv_find(const uint8_t *buf, size_t len, uint8_t tag, const uint8_t **val,
                 size_t *vlen)
{
    size_t off = 0;

    while (off + 5 <= len) {
        uint32_t l = km__be32_get(buf + off + 1);
        if (len - off - 5 < l)
            return 0;
        if (buf[off] == tag) {
            *val = buf + off + 5;
            *vlen = l;
            return 1;
        }
        off += 5 + (size_t)l;
    }
    return 0;
}

void km__tlv_copy_except(km__tlv_w *w, const uint8_t *buf, size_t len, const uint8_t *tags,
                         size_t ntags)
{
    size_t off = 0, i;

    while (off + 5 <= len) {
        uint32_t l = km__be32_get(buf + off + 1);
        int skip = 0;
        if (len - off - 5 < l)
            return;
        for (i = 0; i < ntags; i++)
            skip |= buf[off] == tags[i];
        if (!skip)
            km__tlv_put(w, buf[off], buf + off + 5, l);
        off += 5 + (size_t)l;
    }
}

int km__tlv_get_u32(const uint8_t *buf, size_t len, uint8_t tag, uint32_t *out)
{
    const uint8_t *v;
    size_t vl;
    if (!km__tlv_find(buf, len, tag, &v, &vl))
        return KM_E_NOTFOUND;
    if (vl != 4)
        return km__err(KM_E_CORRUPT, "record: entry %u has length %zu, expected 4",
                       (unsigned)tag, vl);
    *out = km__be32_get(v);
    return KM_OK;
}

int km__tlv_get_u64(const uint8_t *buf, size_t len, uint8_t tag, uint64_t *out)
{
    const uint8_t *v;
    size_t vl;
    if (!km__tlv_find(buf, len, tag, &v, &vl))
        return KM_E_NOTFOUND;
    if (vl != 8)
        return km__err(KM_E_CORRUPT, "record: entry %u has length %zu, expected 8",
                       (unsigned)tag, vl);
    *out = km__be64_get(v);
    return KM_OK;
}

/* -------------------------------------------------------------- base64url */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t km__b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void km__b64url_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = b64u[v >> 18];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
    }
    out[o] = '\0';
}

static int b64u_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int km__b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t need, i, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    *out_len = 0;
    if (len % 4 == 1)
        return km__err(KM_E_INVALID, "text: impossible base64url length");
    need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (cap < need) {
        *out_len = need;
        return km__err(KM_E_BUFFER, "text: output buffer too small");
    }
    for (i = 0; i < len; i++) {
        int v = b64u_val((unsigned char)in[i]);
        if (v < 0)
            return km__err(KM_E_INVALID, "text: character %zu is not base64url", i);
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* canonical form: the unused low bits of the last character are zero */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        km_memzero(out, o);
        return km__err(KM_E_INVALID, "text: non-canonical base64url ending");
    }
    *out_len = o;
    return KM_OK;
}
