/* kmip.c - kmd's KMIP server subset (docs/KMD.md): one Request Message in,
 * one Response Message out, each batch item through libkm's public API as
 * the connection's principal. The TTLV codec is the primitives'
 * (src/prim/kmip_ttlv.h); this file knows the operations.
 *
 * Managed objects are libkm keys: the Unique Identifier is the key id in
 * lower-case hex (32 characters), the Name its name. Encrypt and Decrypt are
 * libkm's AES-GCM ciphertext format v1 (docs/FORMATS.md) taken apart: the
 * IV/Counter/Nonce kmd returns is the header's version and nonce (16 bytes,
 * opaque to the client, given back to Decrypt), Data the GCM ciphertext and
 * the tag the Authenticated Encryption Tag (or, when the request's
 * Cryptographic Parameters carry no Tag Length, appended to Data). kmd always
 * draws the nonce: a client IV is refused. */
#include "kmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "kmip_ttlv.h"

#include <km/sys/server.h>

#define T(name) KM__KMIP_TAG_##name

/* Tags, operations and values beyond the codec's list (KMIP 1.4 / 2.0). */
enum {
    TAG_MAXIMUM_ITEMS = 0x42004F,
    TAG_QUERY_FUNCTION = 0x420074,
    TAG_SERVER_INFORMATION = 0x420088,
    TAG_VALIDITY_INDICATOR = 0x42009B,
    TAG_VENDOR_IDENTIFICATION = 0x42009D,
    TAG_DATA_LENGTH = 0x4200C4,
    TAG_ATTRIBUTE_REFERENCE = 0x42013B,
    TAG_PUBLIC_KEY = 0x42006D,
    TAG_PRIVATE_KEY_UNIQUE_IDENTIFIER = 0x420066,
    TAG_PUBLIC_KEY_UNIQUE_IDENTIFIER = 0x42006F,
    TAG_COMMON_TEMPLATE_ATTRIBUTE = 0x42001F,
    TAG_PRIVATE_KEY_TEMPLATE_ATTRIBUTE = 0x420065,
    TAG_PUBLIC_KEY_TEMPLATE_ATTRIBUTE = 0x42006E,
    TAG_COMMON_ATTRIBUTES = 0x420126,
    TAG_PRIVATE_KEY_ATTRIBUTES = 0x420127,
    TAG_PUBLIC_KEY_ATTRIBUTES = 0x420128,
    TAG_LINK = 0x42004A,
    TAG_LINK_TYPE = 0x42004B,
    TAG_LINKED_OBJECT_IDENTIFIER = 0x42004C,
    TAG_OBJECT_GROUP = 0x420056,
    TAG_KEY_WRAPPING_DATA = 0x420046,
    TAG_KEY_WRAPPING_SPECIFICATION = 0x420047,
    TAG_ENCRYPTION_KEY_INFORMATION = 0x420036,
    TAG_WRAPPING_METHOD = 0x42009E
};
enum { LINK_PUBLIC_KEY = 0x102, LINK_PRIVATE_KEY = 0x103, LINK_REPLACEMENT = 0x10A,
       LINK_REPLACED = 0x10B };
enum { WRAP_METHOD_ENCRYPT = 1, FORMAT_PKCS8 = 0x04, MODE_AES_KWP = 0x0C, PADDING_OAEP = 0x02,
       HASH_SHA256 = 0x04 };
/* Cryptographic Usage Mask bits and the libkm usages they are (Export: the
 * key is made exportable, wrapped only) */
static const struct { uint32_t kmip, usage; } usage_bits[] = {
    { 0x0001, KM_USAGE_SIGN }, { 0x0002, KM_USAGE_VERIFY }, { 0x0004, KM_USAGE_ENCRYPT },
    { 0x0008, KM_USAGE_DECRYPT }, { 0x0010, KM_USAGE_WRAP }, { 0x0020, KM_USAGE_UNWRAP },
    { 0x0080, KM_USAGE_MAC }, { 0x0100, KM_USAGE_MAC_VERIFY }, { 0x0200, KM_USAGE_DERIVE },
    { 0x0800, KM_USAGE_AGREE }
};
#define MASK_EXPORT 0x0040u
#define GROUP_TAG "kmip.object-group"   /* the libkm tag holding the Object Group */
enum {
    OP_CREATE_KEY_PAIR = 0x02,
    OP_REKEY = 0x04,
    OP_GET_ATTRIBUTE_LIST = 0x0C,
    OP_MAC_VERIFY = 0x24,
    OP_RNG_RETRIEVE = 0x25
};
enum { QUERY_OPERATIONS = 1, QUERY_OBJECTS = 2, QUERY_SERVER_INFORMATION = 3 };
enum { VALID = 1, INVALID = 2 };
enum { REASON_WRONG_STATE = KM__KMIP_REASON_ILLEGAL_OPERATION };
enum { ALG_HMAC_SHA256 = 0x09, ALG_HMAC_SHA384 = 0x0A, ALG_HMAC_SHA512 = 0x0B, ALG_EC = 0x1A,
       ALG_ED25519 = 0x37 };
enum { FORMAT_X509 = 0x05 };   /* Key Format Type X.509: SubjectPublicKeyInfo DER */

#define UID_LEN 32
#define UID_CAP KM__KMIP_UID_CAP   /* hex id, "-v" and a version, "-pub" */
#define RNG_MAX 1024

static const uint32_t supported_ops[] = {
    KM__KMIP_OP_CREATE, OP_CREATE_KEY_PAIR, KM__KMIP_OP_REGISTER, OP_REKEY, KM__KMIP_OP_GET,
    KM__KMIP_OP_LOCATE, KM__KMIP_OP_GET_ATTRIBUTES,
    OP_GET_ATTRIBUTE_LIST, KM__KMIP_OP_ACTIVATE, KM__KMIP_OP_REVOKE, KM__KMIP_OP_DESTROY,
    KM__KMIP_OP_QUERY, KM__KMIP_OP_DISCOVER_VERSIONS, KM__KMIP_OP_ENCRYPT, KM__KMIP_OP_DECRYPT,
    KM__KMIP_OP_SIGN, KM__KMIP_OP_SIGNATURE_VERIFY, KM__KMIP_OP_MAC, OP_MAC_VERIFY,
    OP_RNG_RETRIEVE
};

/* One batch item's outcome. */
typedef struct result {
    uint32_t reason;          /* 0 = success */
    char msg[320];            /* "KM_E_<NAME>: " and libkm's whole message (client mode
                               * maps it back, src/api/remote.c) */
} result;

typedef struct req {
    km_ctx *ctx;                    /* NULL while kmd is sealed */
    const kmd_limits *lim;
    const km__ttlv_tree *t;
    int major, minor;
    char placeholder[UID_CAP];      /* the ID Placeholder: the last object made */
    km__ttlv_enc *e;                /* the response being built */
} req;

static int fail(result *r, uint32_t reason, const char *what)
{
    r->reason = reason;
    snprintf(r->msg, sizeof r->msg, "%s", what);
    return -1;
}

/* libkm's error as a KMIP result reason, with libkm's message. */
static int km_fail(result *r, int rc)
{
    uint32_t reason;
    switch (rc) {
    case KM_E_DENIED: reason = KM__KMIP_REASON_PERMISSION_DENIED; break;
    case KM_E_AUTH: reason = KM__KMIP_REASON_PERMISSION_DENIED; break;
    case KM_E_NOTFOUND: reason = KM__KMIP_REASON_ITEM_NOT_FOUND; break;
    case KM_E_INVALID: reason = KM__KMIP_REASON_INVALID_FIELD; break;
    case KM_E_EXISTS: reason = 0x18; break;   /* Object Already Exists */
    case KM_E_STATE: reason = REASON_WRONG_STATE; break;
    case KM_E_USAGE: reason = KM__KMIP_REASON_PERMISSION_DENIED; break;
    case KM_E_POLICY: reason = KM__KMIP_REASON_PERMISSION_DENIED; break;
    case KM_E_UNSUPPORTED: reason = KM__KMIP_REASON_FEATURE_NOT_SUPPORTED; break;
    case KM_E_INTEGRITY: reason = KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE; break;
    case KM_E_LIMIT: reason = 0x1A; break;    /* Usage Limit Exceeded */
    default: reason = KM__KMIP_REASON_GENERAL_FAILURE; break;
    }
    r->reason = reason;
    snprintf(r->msg, sizeof r->msg, "%s: %s", km_err_name(rc), km_error_last()->message);
    return -1;
}

/* ------------------------------------------------------------ objects */

static void uid_of(const uint8_t id[16], char out[UID_LEN + 1])
{
    static const char hx[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 16; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[UID_LEN] = '\0';
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A managed object's identifier: each version of a libkm key is one managed
 * object (ReKey makes the next), "<key id hex>" for version 1 and
 * "<key id hex>-v<N>" for version N >= 2; a key pair's public half adds
 * "-pub". */
static void uid_fmt(const uint8_t id[16], uint32_t ver, int pub, char out[UID_CAP])
{
    km__kmip_uid(id, ver, pub, out);
}

/* The key and version of identifier s (n bytes, uid_fmt's form). */
static int key_of_text(req *q, const char *s, size_t n, km_key **k, uint32_t *ver, int *pub,
                       result *r)
{
    uint8_t id[16];
    size_t i;
    int rc;

    *ver = 1;
    *pub = 0;
    if (n >= UID_LEN + 4 && memcmp(s + n - 4, "-pub", 4) == 0) {
        *pub = 1;
        n -= 4;
    }
    if (n > UID_LEN + 2 && n <= UID_LEN + 8 && s[UID_LEN] == '-' && s[UID_LEN + 1] == 'v'
        && s[UID_LEN + 2] >= '1' && s[UID_LEN + 2] <= '9') {   /* no leading zero */
        uint32_t v = 0;
        for (i = UID_LEN + 2; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            v = v * 10 + (uint32_t)(s[i] - '0');
        if (i == n && v >= 2) {   /* version 1 is the bare id, one name per object */
            *ver = v;
            n = UID_LEN;
        }
    }
    if (n != UID_LEN)
        return fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND, "no object with this identifier");
    for (i = 0; i < 16; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND, "no object with this identifier");
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    if ((rc = km_key_open_id(k, q->ctx, id)) != KM_OK)
        return km_fail(r, rc);
    return 0;
}

/* The payload's Unique Identifier (or the ID Placeholder) opened as a key
 * and version; `pub` (NULL: such an identifier is refused) is set when it
 * names a key pair's public half. */
static int key_of_pub(req *q, int pl, km_key **k, uint32_t *ver, int *pub, result *r)
{
    const char *s;
    size_t n;
    int rc = km__ttlv_get_text(q->t, pl, T(UNIQUE_IDENTIFIER), &s, &n), p = 0;

    if (rc == KM_E_NOTFOUND && q->placeholder[0] != '\0') {
        s = q->placeholder;
        n = strlen(q->placeholder);
    } else if (rc != KM_OK) {
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Unique Identifier");
    }
    if (key_of_text(q, s, n, k, ver, &p, r) != 0)
        return -1;
    if (p && pub == NULL) {
        km_key_free(*k);
        *k = NULL;
        return fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND,
                    "a public key object does not do this: use the private key's identifier");
    }
    if (pub != NULL)
        *pub = p;
    return 0;
}

static int key_of(req *q, int pl, km_key **k, uint32_t *ver, result *r)
{
    return key_of_pub(q, pl, k, ver, NULL, r);
}

static void put_uid(req *q, km_key *k, uint32_t ver)
{
    char uid[UID_CAP];
    uid_fmt(km_key_id(k), ver, 0, uid);
    km__ttlv_put_text(q->e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
}

/* A key version this request made: its identifier in the response, the ID
 * Placeholder of the next batch items; frees the handle. */
static int made(req *q, km_key *k, uint32_t ver)
{
    put_uid(q, k, ver);
    uid_fmt(km_key_id(k), ver, 0, q->placeholder);
    km_key_free(k);
    return 0;
}

/* The version `ver` of k's metadata into *vi, with the key's version count
 * and primary (either may be NULL). 0, or -1 with Item Not Found when the
 * key has no such version. */
static int version_of(km_key *k, uint32_t ver, km_version_info *vi, uint32_t *count,
                      uint32_t *primary, result *r)
{
    km_keyinfo *info = NULL;
    int rc = km_key_info(&info, k);
    if (rc != KM_OK)
        return km_fail(r, rc);
    if (count != NULL)
        *count = km_keyinfo_version_count(info);
    if (primary != NULL)
        *primary = km_keyinfo_primary(info);
    rc = ver >= 1 && ver <= km_keyinfo_version_count(info)
             ? km_keyinfo_version(info, ver - 1, vi, sizeof *vi) : KM_E_NOTFOUND;
    km_keyinfo_free(info);
    if (rc != KM_OK)
        return fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND, "no object with this identifier");
    return 0;
}

/* Whether version `ver` protects (Encrypt, Sign, MAC): libkm protects with
 * the key's primary version only, so a replaced object (ReKey) does not. */
static int protects(km_key *k, uint32_t ver, result *r)
{
    km_version_info vi;
    uint32_t primary = 0;
    char uid[UID_CAP], m[200];
    if (version_of(k, ver, &vi, NULL, &primary, r) != 0)
        return -1;
    if (ver == primary || primary == 0)   /* none protects: libkm says why */
        return 0;
    uid_fmt(km_key_id(k), primary, 0, uid);
    snprintf(m, sizeof m, "this object was replaced (ReKey): it still decrypts and verifies, "
                          "but protects no more; use %s", uid);
    return fail(r, REASON_WRONG_STATE, m);
}

/* An attribute's value in a payload, in either form: KMIP 1.x (Attribute
 * structures with an Attribute Name, directly in `parent` or in its Template
 * Attribute) or 2.0 (the tagged value in an Attributes structure). The
 * index of the value, or -1. */
static int attr_find(const req *q, int parent, const char *name, uint32_t tag2)
{
    int holders[2], h, i, a;
    holders[0] = parent;
    holders[1] = km__ttlv_child(q->t, parent, T(TEMPLATE_ATTRIBUTE), 0);
    for (h = 0; h < 2; h++) {
        if (holders[h] < 0)
            continue;
        for (i = 0; (a = km__ttlv_child(q->t, holders[h], T(ATTRIBUTE), i)) >= 0; i++) {
            const char *s;
            size_t n;
            if (km__ttlv_get_text(q->t, a, T(ATTRIBUTE_NAME), &s, &n) == KM_OK
                && n == strlen(name) && memcmp(s, name, n) == 0)
                return km__ttlv_child(q->t, a, T(ATTRIBUTE_VALUE), 0);
        }
    }
    if ((a = km__ttlv_child(q->t, parent, T(ATTRIBUTES), 0)) >= 0)
        return km__ttlv_child(q->t, a, tag2, 0);
    return -1;
}

/* The value of an attribute item of a fixed type (its tag may be Attribute
 * Value): KM_OK, KM_E_CORRUPT for another type. */
static int item_u32(const req *q, int idx, uint8_t type, uint32_t *out)
{
    const km__ttlv_item *it = &q->t->items[idx];
    if (it->type != type || it->len != 4)
        return KM_E_CORRUPT;
    *out = (uint32_t)it->val[0] << 24 | (uint32_t)it->val[1] << 16 | (uint32_t)it->val[2] << 8
           | it->val[3];
    return KM_OK;
}

/* A Text String attribute item as a C string (1 to cap - 1 bytes, no NUL):
 * KM_OK, KM_E_CORRUPT otherwise. */
static int item_text(const req *q, int idx, char *out, size_t cap)
{
    const km__ttlv_item *it = &q->t->items[idx];
    if (it->type != KM__TTLV_TEXT || it->len == 0 || it->len >= cap
        || memchr(it->val, 0, it->len) != NULL)
        return KM_E_CORRUPT;
    memcpy(out, it->val, it->len);
    out[it->len] = '\0';
    return KM_OK;
}

/* The Name attribute's text (a Name structure's Name Value). */
static int attr_name(const req *q, int parent, char *out, size_t cap)
{
    int v = attr_find(q, parent, "Name", T(NAME));
    const char *s;
    size_t n;
    if (v < 0)
        return KM_E_NOTFOUND;
    if (km__ttlv_get_text(q->t, v, T(NAME_VALUE), &s, &n) != KM_OK || n == 0 || n >= cap
        || memchr(s, 0, n) != NULL)
        return KM_E_CORRUPT;
    memcpy(out, s, n);
    out[n] = '\0';
    return KM_OK;
}

static uint32_t kmip_state(km_key_state s)
{
    switch (s) {
    case KM_STATE_PRE_ACTIVE: return KM__KMIP_STATE_PRE_ACTIVE;
    case KM_STATE_ACTIVE: return KM__KMIP_STATE_ACTIVE;
    case KM_STATE_SUSPENDED: return KM__KMIP_STATE_ACTIVE;
    case KM_STATE_COMPROMISED: return KM__KMIP_STATE_COMPROMISED;
    case KM_STATE_DESTROY_PENDING:
    case KM_STATE_DESTROYED: return KM__KMIP_STATE_DESTROYED;
    default: return KM__KMIP_STATE_DEACTIVATED;
    }
}

/* The KMIP view of a libkm key type: object type, algorithm, length. */
static int kmip_type(km_key_type ty, uint32_t *obj, uint32_t *alg, int32_t *len)
{
    *obj = KM__KMIP_OBJ_SYMMETRIC_KEY;
    switch (ty) {
    case KM_KEY_AES_128_GCM: *alg = KM__KMIP_ALG_AES; *len = 128; return 0;
    case KM_KEY_AES_192_GCM: *alg = KM__KMIP_ALG_AES; *len = 192; return 0;
    case KM_KEY_AES_256_GCM: *alg = KM__KMIP_ALG_AES; *len = 256; return 0;
    case KM_KEY_AES_256_KWP: *alg = KM__KMIP_ALG_AES; *len = 256; return 0;
    case KM_KEY_HMAC_SHA256: *alg = ALG_HMAC_SHA256; *len = 256; return 0;
    case KM_KEY_HMAC_SHA384: *alg = ALG_HMAC_SHA384; *len = 384; return 0;
    case KM_KEY_HMAC_SHA512: *alg = ALG_HMAC_SHA512; *len = 512; return 0;
    case KM_KEY_EC_P256: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = ALG_EC; *len = 256; return 0;
    case KM_KEY_EC_P384: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = ALG_EC; *len = 384; return 0;
    case KM_KEY_EC_P521: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = ALG_EC; *len = 521; return 0;
    case KM_KEY_ED25519: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = ALG_ED25519; *len = 255; return 0;
    case KM_KEY_RSA_2048: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = KM__KMIP_ALG_RSA; *len = 2048; return 0;
    case KM_KEY_RSA_3072: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = KM__KMIP_ALG_RSA; *len = 3072; return 0;
    case KM_KEY_RSA_4096: *obj = KM__KMIP_OBJ_PRIVATE_KEY; *alg = KM__KMIP_ALG_RSA; *len = 4096; return 0;
    default: return -1;
    }
}

/* ---------------------------------------------------------- operations */

static int op_discover(req *q, int pl, result *r)
{
    static const int vers[][2] = { { 2, 0 }, { 1, 4 }, { 1, 3 }, { 1, 2 }, { 1, 1 }, { 1, 0 } };
    size_t i, n = sizeof vers / sizeof vers[0];
    int asked = pl >= 0 ? (int)km__ttlv_count(q->t, pl, T(PROTOCOL_VERSION)) : 0;
    (void)r;
    /* ours, newest first, restricted to those the client offered */
    for (i = 0; i < n; i++) {
        int j, ok = asked == 0;
        for (j = 0; j < asked && !ok; j++) {
            int pv = km__ttlv_child(q->t, pl, T(PROTOCOL_VERSION), j);
            int32_t ma = -1, mi = -1;
            (void)km__ttlv_get_int(q->t, pv, T(PROTOCOL_VERSION_MAJOR), &ma);
            (void)km__ttlv_get_int(q->t, pv, T(PROTOCOL_VERSION_MINOR), &mi);
            ok = ma == vers[i][0] && mi == vers[i][1];
        }
        if (!ok)
            continue;
        km__ttlv_begin(q->e, T(PROTOCOL_VERSION));
        km__ttlv_put_int(q->e, T(PROTOCOL_VERSION_MAJOR), vers[i][0]);
        km__ttlv_put_int(q->e, T(PROTOCOL_VERSION_MINOR), vers[i][1]);
        km__ttlv_end(q->e);
    }
    return 0;
}

static int op_query(req *q, int pl, result *r)
{
    size_t i, nf = km__ttlv_count(q->t, pl, TAG_QUERY_FUNCTION);
    int want[4] = { 0, 0, 0, 0 };
    static const char vendor[] = "libkm kmd";
    (void)r;
    for (i = 0; i < nf; i++) {
        int f = km__ttlv_child(q->t, pl, TAG_QUERY_FUNCTION, (int)i);
        uint32_t v;
        if (item_u32(q, f, KM__TTLV_ENUM, &v) == KM_OK && v >= 1 && v <= 3)
            want[v] = 1;
    }
    if (want[QUERY_OPERATIONS])
        for (i = 0; i < sizeof supported_ops / sizeof supported_ops[0]; i++)
            km__ttlv_put_enum(q->e, T(OPERATION), supported_ops[i]);
    if (want[QUERY_OBJECTS]) {
        km__ttlv_put_enum(q->e, T(OBJECT_TYPE), KM__KMIP_OBJ_SYMMETRIC_KEY);
        km__ttlv_put_enum(q->e, T(OBJECT_TYPE), KM__KMIP_OBJ_PRIVATE_KEY);
    }
    if (want[QUERY_SERVER_INFORMATION]) {
        km__ttlv_put_text(q->e, TAG_VENDOR_IDENTIFICATION, vendor, sizeof vendor - 1);
        km__ttlv_begin(q->e, TAG_SERVER_INFORMATION);
        km__ttlv_put_text(q->e, TAG_VENDOR_IDENTIFICATION, km_version(), strlen(km_version()));
        km__ttlv_end(q->e);
    }
    return 0;
}

/* A name for an object created without one. */
static int fresh_name(char *out, size_t cap)
{
    uint8_t b[8];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return -1;
    snprintf(out, cap, "kmip-%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7]);
    return 0;
}

typedef struct locate {
    req *q;
    const char *name;
    uint32_t obj, alg;   /* Object Type, Cryptographic Algorithm filters; 0 = any */
    int32_t len;         /* Cryptographic Length; 0 = any */
    uint32_t state;      /* State (KMIP); 0 = any */
    const char *group;   /* Object Group; NULL = any */
    uint32_t max;
    uint32_t n;
} locate;

/* One key of the vault: every version of it that matches is a managed
 * object found (a key the principal may not open is not listed). */
static int locate_one(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    locate *l = arg;
    char uid[UID_CAP];
    uint32_t obj = 0, alg = 0, i, count;
    int32_t len = 0;
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    int stop = 0;

    if (l->name != NULL && strcmp(l->name, name) != 0)
        return 0;
    if (strncmp(name, "km:", 3) == 0)
        return 0;   /* libkm's own keys */
    if (kmip_type(type, &obj, &alg, &len) != 0)
        obj = alg = 0;
    /* a key pair is a Private Key and, with "-pub", a Public Key */
    if (l->obj != 0 && !(l->obj == obj
                         || (l->obj == KM__KMIP_OBJ_PUBLIC_KEY && obj == KM__KMIP_OBJ_PRIVATE_KEY)))
        return 0;
    if ((l->alg != 0 && l->alg != alg) || (l->len != 0 && l->len != len))
        return 0;
    if (km_key_open_id(&k, l->q->ctx, id) != KM_OK || km_key_info(&info, k) != KM_OK) {
        km_key_free(k);
        return 0;
    }
    if (l->group != NULL) {
        uint32_t t, nt = km_keyinfo_tag_count(info);
        const char *tk, *tv;
        for (t = 0; t < nt; t++)
            if (km_keyinfo_tag(info, t, &tk, &tv) == KM_OK && strcmp(tk, GROUP_TAG) == 0
                && strcmp(tv, l->group) == 0)
                break;
        if (t == nt)
            goto done;
    }
    count = km_keyinfo_version_count(info);
    for (i = 0; i < count && !stop; i++) {
        km_version_info vi;
        if (km_keyinfo_version(info, i, &vi, sizeof vi) != KM_OK
            || (l->state != 0 && kmip_state(vi.state) != l->state))
            continue;
        uid_fmt(id, i + 1, l->obj == KM__KMIP_OBJ_PUBLIC_KEY, uid);
        km__ttlv_put_text(l->q->e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
        stop = ++l->n >= l->max;
    }
done:
    km_keyinfo_free(info);
    km_key_free(k);
    return stop;
}

/* The libkm type of a KMIP algorithm and length for Create / Register
 * (symmetric) or CreateKeyPair (asymmetric); -1 when kmd has none. */
static int libkm_type(uint32_t alg, int32_t len, int asym, km_key_type *ty)
{
    static const struct { uint32_t alg; int32_t len; int asym; km_key_type ty; } map[] = {
        { KM__KMIP_ALG_AES, 256, 0, KM_KEY_AES_256_GCM }, { KM__KMIP_ALG_AES, 0, 0, KM_KEY_AES_256_GCM },
        { KM__KMIP_ALG_AES, 128, 0, KM_KEY_AES_128_GCM }, { KM__KMIP_ALG_AES, 192, 0, KM_KEY_AES_192_GCM },
        { ALG_HMAC_SHA256, -1, 0, KM_KEY_HMAC_SHA256 }, { ALG_HMAC_SHA384, -1, 0, KM_KEY_HMAC_SHA384 },
        { ALG_HMAC_SHA512, -1, 0, KM_KEY_HMAC_SHA512 },
        { ALG_EC, 256, 1, KM_KEY_EC_P256 }, { ALG_EC, 0, 1, KM_KEY_EC_P256 },
        { ALG_EC, 384, 1, KM_KEY_EC_P384 }, { ALG_EC, 521, 1, KM_KEY_EC_P521 },
        { 0x06, 256, 1, KM_KEY_EC_P256 }, { 0x06, 0, 1, KM_KEY_EC_P256 },  /* ECDSA */
        { 0x06, 384, 1, KM_KEY_EC_P384 }, { 0x06, 521, 1, KM_KEY_EC_P521 },
        { ALG_ED25519, -1, 1, KM_KEY_ED25519 },
        { KM__KMIP_ALG_RSA, 2048, 1, KM_KEY_RSA_2048 }, { KM__KMIP_ALG_RSA, 0, 1, KM_KEY_RSA_2048 },
        { KM__KMIP_ALG_RSA, 3072, 1, KM_KEY_RSA_3072 }, { KM__KMIP_ALG_RSA, 4096, 1, KM_KEY_RSA_4096 },
    };
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].alg == alg && map[i].asym == asym && (map[i].len == -1 || map[i].len == len)) {
            *ty = map[i].ty;
            return 0;
        }
    return -1;
}

/* The other attributes kmd honours at Create / Register / CreateKeyPair. */
typedef struct kextra {
    int has_mask;
    uint32_t mask;                            /* Cryptographic Usage Mask */
    char group[KM_KEY_TAG_VALUE_MAX + 1];     /* Object Group ("" = none) */
} kextra;

/* A Cryptographic Usage Mask as libkm usages and flags: every bit must have
 * a libkm counterpart (usage_bits, Export); whether the key type can do
 * them is libkm's to say (km_key_create refuses a usage the type lacks). */
static int usage_of_mask(uint32_t mask, km_key_options *o, result *r)
{
    size_t i;
    uint32_t left = mask;
    char m[160];
    o->usage = 0;
    for (i = 0; i < sizeof usage_bits / sizeof usage_bits[0]; i++)
        if (mask & usage_bits[i].kmip) {
            o->usage |= usage_bits[i].usage;
            left &= ~usage_bits[i].kmip;
        }
    if (mask & MASK_EXPORT) {
        o->flags |= KM_KEY_EXPORTABLE;
        left &= ~MASK_EXPORT;
    }
    if (left != 0 || o->usage == 0) {
        snprintf(m, sizeof m, "Cryptographic Usage Mask 0x%x: %s", (unsigned)mask,
                 left ? "bits libkm keys have no usage for" : "no usage");
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, m);
    }
    return 0;
}

static uint32_t mask_of_usage(uint32_t usage, uint32_t flags)
{
    size_t i;
    uint32_t mask = flags & KM_KEY_EXPORTABLE ? MASK_EXPORT : 0;
    for (i = 0; i < sizeof usage_bits / sizeof usage_bits[0]; i++)
        if (usage & usage_bits[i].usage)
            mask |= usage_bits[i].kmip;
    return mask;
}

/* An AES-256 key whose mask only wraps and unwraps is libkm's aes-256-kwp. */
static km_key_type wrapping_type(km_key_type ty, const kextra *x, const km_key_options *o)
{
    if (ty == KM_KEY_AES_256_GCM && x->has_mask && (o->usage & (KM_USAGE_WRAP | KM_USAGE_UNWRAP))
        && !(o->usage & (KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT)))
        return KM_KEY_AES_256_KWP;
    return ty;
}

/* The Cryptographic Usage Mask onto a key being made (libkm refuses a
 * usage its type lacks); Export makes it exportable. *ty may become
 * aes-256-kwp. */
static int apply_extra(const kextra *x, km_key_type *ty, km_key_options *o, result *r)
{
    if (!x->has_mask)
        return 0;
    if (usage_of_mask(x->mask, o, r) != 0)
        return -1;
    *ty = wrapping_type(*ty, x, o);
    return 0;
}

/* km_key_create with the mask's usages. PyKMIP's client adds Encrypt and
 * Decrypt to every Create's mask (an HMAC or EC key's too): when the type
 * refuses the mask and other usages are in it, the key is made with those. */
static int create_key(req *q, km_key **k, const char *name, km_key_type ty, km_key_options *o)
{
    const uint32_t aead = KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT;
    int rc = km_key_create(k, q->ctx, name, ty, o);
    if (rc == KM_E_INVALID && (o->usage & aead) && (o->usage & ~aead)) {
        o->usage &= ~aead;
        rc = km_key_create(k, q->ctx, name, ty, o);
    }
    return rc;
}

/* After the key is made: its Object Group as the libkm tag GROUP_TAG. */
static int group_set(km_key *k, const kextra *x, result *r)
{
    int rc;
    if (x->group[0] == '\0' || (rc = km_key_set_tag(k, GROUP_TAG, x->group)) == KM_OK)
        return 0;
    return km_fail(r, rc);
}

/* Algorithm, length, Name, Usage Mask and Object Group of a Create /
 * Register / CreateKeyPair, read from the payload (and, for a key pair, its
 * common and private parts). */
static int key_attrs(const req *q, const int *where, size_t nwhere, uint32_t *alg, int32_t *len,
                     char *name, size_t cap, kextra *x, result *r)
{
    size_t i;
    int v, have_name = 0;
    *alg = 0;
    *len = 0;
    memset(x, 0, sizeof *x);
    for (i = 0; i < nwhere; i++) {
        if (where[i] < 0)
            continue;
        if (!x->has_mask && (v = attr_find(q, where[i], "Cryptographic Usage Mask",
                                           T(CRYPTOGRAPHIC_USAGE_MASK))) >= 0) {
            if (item_u32(q, v, KM__TTLV_INTEGER, &x->mask) != KM_OK)
                return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Cryptographic Usage Mask");
            x->has_mask = x->mask != 0;   /* 0: none stated (PyKMIP's Register) */
        }
        if (x->group[0] == '\0'
            && (v = attr_find(q, where[i], "Object Group", TAG_OBJECT_GROUP)) >= 0
            && item_text(q, v, x->group, sizeof x->group) != KM_OK)
            return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Object Group");
        if (*alg == 0 && (v = attr_find(q, where[i], "Cryptographic Algorithm",
                                        T(CRYPTOGRAPHIC_ALGORITHM))) >= 0
            && item_u32(q, v, KM__TTLV_ENUM, alg) != KM_OK)
            return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Cryptographic Algorithm");
        if (*len == 0 && (v = attr_find(q, where[i], "Cryptographic Length",
                                        T(CRYPTOGRAPHIC_LENGTH))) >= 0
            && item_u32(q, v, KM__TTLV_INTEGER, (uint32_t *)len) != KM_OK)
            return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Cryptographic Length");
        if (!have_name) {
            int rc = attr_name(q, where[i], name, cap);
            if (rc == KM_E_CORRUPT)
                return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Name");
            have_name = rc == KM_OK;
        }
    }
    if (!have_name && fresh_name(name, cap) != 0)
        return fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "no random bytes");
    return 0;
}

/* CreateKeyPair: one libkm key holds both halves. The private key's
 * identifier is the key id in hex; the public key's is the same with
 * "-pub" (Get on it returns the public key). */
static int op_create_key_pair(req *q, int pl, result *r)
{
    int where[4];
    uint32_t alg;
    int32_t len;
    char name[KM_KEY_NAME_MAX + 1], uid[UID_LEN + 5];
    km_key_type ty;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    kextra x;
    int rc;

    where[0] = km__ttlv_child(q->t, pl, TAG_COMMON_TEMPLATE_ATTRIBUTE, 0);
    where[1] = km__ttlv_child(q->t, pl, TAG_PRIVATE_KEY_TEMPLATE_ATTRIBUTE, 0);
    where[2] = km__ttlv_child(q->t, pl, TAG_COMMON_ATTRIBUTES, 0);
    where[3] = km__ttlv_child(q->t, pl, TAG_PRIVATE_KEY_ATTRIBUTES, 0);
    if (key_attrs(q, where, 2, &alg, &len, name, sizeof name, &x, r) != 0)
        return -1;
    if (alg == 0) {
        /* the 2.0 form: the tagged attributes in Common / Private Key Attributes */
        size_t i;
        int named = 0;
        for (i = 2; i < 4; i++) {
            const char *s;
            size_t n;
            int nm;
            if (where[i] < 0)
                continue;
            if (alg == 0)
                (void)km__ttlv_get_enum(q->t, where[i], T(CRYPTOGRAPHIC_ALGORITHM), &alg);
            if (len == 0)
                (void)km__ttlv_get_int(q->t, where[i], T(CRYPTOGRAPHIC_LENGTH), &len);
            if (!named && (nm = km__ttlv_child(q->t, where[i], T(NAME), 0)) >= 0
                && km__ttlv_get_text(q->t, nm, T(NAME_VALUE), &s, &n) == KM_OK && n > 0
                && n < sizeof name) {
                memcpy(name, s, n);
                name[n] = '\0';
                named = 1;
            }
        }
    }
    if (libkm_type(alg, len, 1, &ty) != 0)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "CreateKeyPair: EC (P-256, P-384, P-521), Ed25519, RSA (2048, 3072, 4096)");
    o.activate_at = (int64_t)4102444800; /* Pre-Active, as Create */
    if (apply_extra(&x, &ty, &o, r) != 0)
        return -1;
    if ((rc = create_key(q, &k, name, ty, &o)) != KM_OK)
        return km_fail(r, rc);
    if (group_set(k, &x, r) != 0) {
        km_key_free(k);
        return -1;
    }
    uid_of(km_key_id(k), uid);
    km__ttlv_put_text(q->e, TAG_PRIVATE_KEY_UNIQUE_IDENTIFIER, uid, UID_LEN);
    memcpy(uid + UID_LEN, "-pub", 5);
    km__ttlv_put_text(q->e, TAG_PUBLIC_KEY_UNIQUE_IDENTIFIER, uid, UID_LEN + 4);
    uid_of(km_key_id(k), q->placeholder);
    km_key_free(k);
    return 0;
}

/* Register: a symmetric key (Raw) or a public key (X.509 SubjectPublicKeyInfo)
 * imported into the vault (km_key_import; the vault policy decides whether
 * raw imports are allowed, and dual control applies as to any import). */
static int op_register(req *q, int pl, result *r)
{
    uint32_t obj = 0, fmt = 0, alg = 0;
    int32_t len = 0;
    int where[1], obj_i, kb, kv, rc;
    const uint8_t *mat;
    size_t mat_len;
    char name[KM_KEY_NAME_MAX + 1];
    km_key_type ty;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    kextra x;

    if (km__ttlv_get_enum(q->t, pl, T(OBJECT_TYPE), &obj) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Object Type");
    if (obj != KM__KMIP_OBJ_SYMMETRIC_KEY && obj != KM__KMIP_OBJ_PUBLIC_KEY)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "Register: symmetric keys and public keys only");
    obj_i = km__ttlv_child(q->t, pl, obj == KM__KMIP_OBJ_SYMMETRIC_KEY ? T(SYMMETRIC_KEY)
                                                                      : TAG_PUBLIC_KEY, 0);
    if (obj_i < 0 || km__ttlv_get_struct(q->t, obj_i, T(KEY_BLOCK), &kb) != KM_OK
        || km__ttlv_get_enum(q->t, kb, T(KEY_FORMAT_TYPE), &fmt) != KM_OK
        || km__ttlv_get_struct(q->t, kb, T(KEY_VALUE), &kv) != KM_OK
        || km__ttlv_get_bytes(q->t, kv, T(KEY_MATERIAL), &mat, &mat_len) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Key Block with Key Material bytes");
    if ((obj == KM__KMIP_OBJ_SYMMETRIC_KEY && fmt != KM__KMIP_FORMAT_RAW)
        || (obj == KM__KMIP_OBJ_PUBLIC_KEY && fmt != FORMAT_X509))
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "Register: Raw symmetric keys, X.509 (SubjectPublicKeyInfo) public keys");
    (void)km__ttlv_get_enum(q->t, kb, T(CRYPTOGRAPHIC_ALGORITHM), &alg);
    (void)km__ttlv_get_int(q->t, kb, T(CRYPTOGRAPHIC_LENGTH), &len);
    where[0] = pl;
    {
        uint32_t a2 = 0;
        int32_t l2 = 0;
        if (key_attrs(q, where, 1, &a2, &l2, name, sizeof name, &x, r) != 0)
            return -1;
        if (alg == 0)
            alg = a2;
        if (len == 0)
            len = l2;
    }
    if (obj == KM__KMIP_OBJ_SYMMETRIC_KEY && alg == KM__KMIP_ALG_AES && len == 0)
        len = (int32_t)mat_len * 8;
    if (libkm_type(alg, len, obj == KM__KMIP_OBJ_PUBLIC_KEY, &ty) != 0)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "Register: an algorithm and length kmd has no key type for");
    o.activate_at = (int64_t)4102444800;
    if (apply_extra(&x, &ty, &o, r) != 0)
        return -1;
    rc = km_key_import(&k, q->ctx, name, ty,
                       obj == KM__KMIP_OBJ_SYMMETRIC_KEY ? KM_MATERIAL_RAW : KM_MATERIAL_SPKI_DER,
                       mat, mat_len, KM_IMPORT_ALLOW_RAW, &o);
    if (rc != KM_OK)
        return km_fail(r, rc);
    if (group_set(k, &x, r) != 0) {
        km_key_free(k);
        return -1;
    }
    return made(q, k, 1);
}

/* Get with a Key Wrapping Specification: the secret or private key of
 * version `ver`, wrapped (km_key_export_wrapped: the key must be exportable,
 * the export's dual control approved, and the principal allowed to use the
 * wrapping key). Wrapping Method Encrypt with an Encryption Key Information
 * naming an aes-256-kwp key (AES Key Wrap with Padding, RFC 5649: the Key
 * Value is its output) or an RSA key pair's public half (RSA-OAEP + AES-KWP,
 * CKM_RSA_AES_KEY_WRAP). */
static int get_wrapped(req *q, int pl, km_key *k, uint32_t ver, int spec, result *r)
{
    uint32_t method = 0, obj, alg, kver;
    int32_t len;
    int eki, kpub, rc;
    const char *s;
    size_t n, out_len = 0;
    km_key *kek = NULL;
    uint8_t out[8192], spki[2048];
    size_t spki_len = 0;
    char uid[UID_CAP];

    (void)pl;
    if (km__ttlv_get_enum(q->t, spec, TAG_WRAPPING_METHOD, &method) != KM_OK
        || method != WRAP_METHOD_ENCRYPT)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED, "Wrapping Method Encrypt only");
    if ((eki = km__ttlv_child(q->t, spec, TAG_ENCRYPTION_KEY_INFORMATION, 0)) < 0
        || km__ttlv_get_text(q->t, eki, T(UNIQUE_IDENTIFIER), &s, &n) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA,
                    "no Encryption Key Information with the wrapping key's Unique Identifier");
    if (key_of_text(q, s, n, &kek, &kver, &kpub, r) != 0)
        return -1;
    /* the wrapping key must be one the principal may protect with (libkm
     * checks only the right to export the key wrapped) */
    {
        uint32_t perms = 0;
        if ((rc = km_key_perms(kek, &perms)) != KM_OK || !(perms & KM_PERM_ENCRYPT)) {
            km_key_free(kek);
            return rc != KM_OK ? km_fail(r, rc)
                               : fail(r, KM__KMIP_REASON_PERMISSION_DENIED,
                                      "the wrapping key is not one this principal may use "
                                      "(Encrypt)");
        }
    }
    if (kpub) {
        rc = km_key_public_export(kek, kver, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len);
        if (rc == KM_OK)
            rc = km_key_export_wrapped(k, ver, KM_WRAP_RSA_OAEP_KWP, NULL, spki, spki_len, out,
                                       sizeof out, &out_len);
    } else if (km_key_get_type(kek) != KM_KEY_AES_256_KWP) {
        km_key_free(kek);
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "the wrapping key must be an AES-256 key "
                    "wrapping keys (Cryptographic Usage Mask Wrap Key / Unwrap Key only) or an "
                    "RSA public key");
    } else {
        rc = km_key_export_wrapped(k, ver, KM_WRAP_KWP, kek, NULL, 0, out, sizeof out, &out_len);
        /* the header names the KEK version used: it must be the object named */
        if (rc == KM_OK && (out_len <= 24 || be32(out + 20) != kver)) {
            km_memzero(out, out_len);
            km_key_free(kek);
            return fail(r, REASON_WRONG_STATE, "the wrapping key object was replaced (ReKey): "
                        "wrap with its replacement");
        }
    }
    if (rc != KM_OK) {
        km_key_free(kek);
        return km_fail(r, rc);
    }
    (void)kmip_type(km_key_get_type(k), &obj, &alg, &len);
    km__ttlv_put_enum(q->e, T(OBJECT_TYPE), obj);
    put_uid(q, k, ver);
    km__ttlv_begin(q->e, obj == KM__KMIP_OBJ_SYMMETRIC_KEY ? T(SYMMETRIC_KEY) : T(PRIVATE_KEY));
    km__ttlv_begin(q->e, T(KEY_BLOCK));
    km__ttlv_put_enum(q->e, T(KEY_FORMAT_TYPE), obj == KM__KMIP_OBJ_SYMMETRIC_KEY
                                                    ? KM__KMIP_FORMAT_RAW : FORMAT_PKCS8);
    /* the wrapped bytes as the Key Material of a Key Value structure (as the
     * PyKMIP server and client have it; RFC 5649's output without libkm's
     * 24-byte header) */
    km__ttlv_begin(q->e, T(KEY_VALUE));
    km__ttlv_put_bytes(q->e, T(KEY_MATERIAL), kpub ? out : out + 24,
                       kpub ? out_len : out_len - 24);
    km__ttlv_end(q->e);
    km__ttlv_put_enum(q->e, T(CRYPTOGRAPHIC_ALGORITHM), alg);
    km__ttlv_put_int(q->e, T(CRYPTOGRAPHIC_LENGTH), len);
    km__ttlv_begin(q->e, TAG_KEY_WRAPPING_DATA);
    km__ttlv_put_enum(q->e, TAG_WRAPPING_METHOD, WRAP_METHOD_ENCRYPT);
    km__ttlv_begin(q->e, TAG_ENCRYPTION_KEY_INFORMATION);
    uid_fmt(km_key_id(kek), kver, kpub, uid);
    km__ttlv_put_text(q->e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
    km__ttlv_begin(q->e, T(CRYPTOGRAPHIC_PARAMETERS));
    if (kpub) {   /* RSA-OAEP (SHA-256) of an AES key, then AES-KWP */
        km__ttlv_put_enum(q->e, T(PADDING_METHOD), PADDING_OAEP);
        km__ttlv_put_enum(q->e, T(HASHING_ALGORITHM), HASH_SHA256);
        km__ttlv_put_enum(q->e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_RSA);
    } else {
        km__ttlv_put_enum(q->e, T(BLOCK_CIPHER_MODE), MODE_AES_KWP);
        km__ttlv_put_enum(q->e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_AES);
    }
    km__ttlv_end(q->e);
    km__ttlv_end(q->e);
    km__ttlv_end(q->e);
    km__ttlv_end(q->e);
    km__ttlv_end(q->e);
    km_memzero(out, sizeof out);
    km_key_free(kek);
    return 0;
}

/* Get: the public key of a key pair (its "-pub" identifier, or the key's
 * own), or with a Key Wrapping Specification a secret or private key
 * wrapped (get_wrapped); secret and private key material never leaves kmd
 * in the clear. */
static int op_get(req *q, int pl, result *r)
{
    km_key *k = NULL;
    int pub, spec;
    uint32_t obj, alg, ver;
    int32_t len;
    uint8_t spki[2048];
    size_t spki_len = 0;
    char uid[UID_CAP];
    int rc;

    if (key_of_pub(q, pl, &k, &ver, &pub, r) != 0)
        return -1;
    if ((spec = km__ttlv_child(q->t, pl, TAG_KEY_WRAPPING_SPECIFICATION, 0)) >= 0 && !pub) {
        rc = get_wrapped(q, pl, k, ver, spec, r);
        km_key_free(k);
        return rc;
    }
    if (kmip_type(km_key_get_type(k), &obj, &alg, &len) != 0 || obj == KM__KMIP_OBJ_SYMMETRIC_KEY) {
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_PERMISSION_DENIED,
                    "kmd never returns secret key material in the clear: Get it wrapped (a Key "
                    "Wrapping Specification)");
    }
    if ((rc = km_key_public_export(k, ver, KM_MATERIAL_SPKI_DER, spki, sizeof spki, &spki_len))
        != KM_OK) {
        km_key_free(k);
        return km_fail(r, rc);
    }
    km__ttlv_put_enum(q->e, T(OBJECT_TYPE), KM__KMIP_OBJ_PUBLIC_KEY);
    uid_fmt(km_key_id(k), ver, 1, uid);
    km__ttlv_put_text(q->e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
    km__ttlv_begin(q->e, TAG_PUBLIC_KEY);
    km__ttlv_begin(q->e, T(KEY_BLOCK));
    km__ttlv_put_enum(q->e, T(KEY_FORMAT_TYPE), FORMAT_X509);
    km__ttlv_begin(q->e, T(KEY_VALUE));
    km__ttlv_put_bytes(q->e, T(KEY_MATERIAL), spki, spki_len);
    km__ttlv_end(q->e);
    km__ttlv_put_enum(q->e, T(CRYPTOGRAPHIC_ALGORITHM), alg);
    km__ttlv_put_int(q->e, T(CRYPTOGRAPHIC_LENGTH), len);
    km__ttlv_end(q->e);
    km__ttlv_end(q->e);
    km_key_free(k);
    return 0;
}

static int op_create(req *q, int pl, result *r)
{
    uint32_t obj = 0, alg;
    int32_t len;
    int rc;
    char name[KM_KEY_NAME_MAX + 1];
    km_key_type ty;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    kextra x;

    if (km__ttlv_get_enum(q->t, pl, T(OBJECT_TYPE), &obj) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Object Type");
    if (obj != KM__KMIP_OBJ_SYMMETRIC_KEY)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "Create makes symmetric keys only (CreateKeyPair the others)");
    if (key_attrs(q, &pl, 1, &alg, &len, name, sizeof name, &x, r) != 0)
        return -1;
    if (alg == 0)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Cryptographic Algorithm");
    if (libkm_type(alg, len, 0, &ty) != 0)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED,
                    "Create: AES (128, 192, 256) and HMAC-SHA-256/384/512 only");
    /* KMIP objects are made Pre-Active; Activate makes them Active. The
     * Cryptographic Usage Mask becomes the key's libkm usage (an AES-256 key
     * that only wraps and unwraps is libkm's aes-256-kwp). */
    o.activate_at = (int64_t)4102444800; /* 2100-01-01 */
    if (apply_extra(&x, &ty, &o, r) != 0)
        return -1;
    if ((rc = create_key(q, &k, name, ty, &o)) != KM_OK)
        return km_fail(r, rc);
    if (group_set(k, &x, r) != 0) {
        km_key_free(k);
        return -1;
    }
    km__ttlv_put_enum(q->e, T(OBJECT_TYPE), KM__KMIP_OBJ_SYMMETRIC_KEY);
    return made(q, k, 1);
}

static int op_locate(req *q, int pl, result *r)
{
    char name[KM_KEY_NAME_MAX + 1], group[KM_KEY_TAG_VALUE_MAX + 1];
    locate l;
    int32_t max = 0;
    int v, rc = attr_name(q, pl, name, sizeof name);

    if (rc == KM_E_CORRUPT)
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Name");
    (void)km__ttlv_get_int(q->t, pl, TAG_MAXIMUM_ITEMS, &max);
    memset(&l, 0, sizeof l);
    l.q = q;
    l.name = rc == KM_OK ? name : NULL;
    if ((v = attr_find(q, pl, "Object Type", T(OBJECT_TYPE))) >= 0
        && item_u32(q, v, KM__TTLV_ENUM, &l.obj) != KM_OK)
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Object Type");
    if ((v = attr_find(q, pl, "Cryptographic Algorithm", T(CRYPTOGRAPHIC_ALGORITHM))) >= 0
        && item_u32(q, v, KM__TTLV_ENUM, &l.alg) != KM_OK)
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Cryptographic Algorithm");
    if ((v = attr_find(q, pl, "Cryptographic Length", T(CRYPTOGRAPHIC_LENGTH))) >= 0
        && (item_u32(q, v, KM__TTLV_INTEGER, (uint32_t *)&l.len) != KM_OK || l.len <= 0))
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Cryptographic Length");
    if ((v = attr_find(q, pl, "State", T(STATE))) >= 0
        && (item_u32(q, v, KM__TTLV_ENUM, &l.state) != KM_OK || l.state == 0))
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad State");
    if ((v = attr_find(q, pl, "Object Group", TAG_OBJECT_GROUP)) >= 0) {
        if (item_text(q, v, group, sizeof group) != KM_OK)
            return fail(r, KM__KMIP_REASON_INVALID_FIELD, "bad Object Group");
        l.group = group;
    }
    l.max = max > 0 ? (uint32_t)max : 1000;
    if ((rc = km_key_list_filtered(q->ctx, NULL, locate_one, &l)) != KM_OK)
        return km_fail(r, rc);
    return 0;
}

/* One attribute in the response, in the form of the request's version. */
static void attr_begin(req *q, const char *name)
{
    if (q->major < 2) {
        km__ttlv_begin(q->e, T(ATTRIBUTE));
        km__ttlv_put_text(q->e, T(ATTRIBUTE_NAME), name, strlen(name));
    }
}

static void attr_end(req *q)
{
    if (q->major < 2)
        km__ttlv_end(q->e);
}

static uint32_t vtag(req *q, uint32_t tag2)
{
    return q->major < 2 ? (uint32_t)T(ATTRIBUTE_VALUE) : tag2;
}

/* A Link attribute to version `ver` of key `id` (its public half: pub). */
static void put_link(req *q, uint32_t type, const uint8_t id[16], uint32_t ver, int pub)
{
    char uid[UID_CAP];
    uid_fmt(id, ver, pub, uid);
    attr_begin(q, "Link");
    km__ttlv_begin(q->e, vtag(q, TAG_LINK));
    km__ttlv_put_enum(q->e, TAG_LINK_TYPE, type);
    km__ttlv_put_text(q->e, TAG_LINKED_OBJECT_IDENTIFIER, uid, strlen(uid));
    km__ttlv_end(q->e);
    attr_end(q);
}

/* Whether the request asks for attribute `name` (none asked: all). */
static int wanted(req *q, int pl, const char *name, uint32_t tag2)
{
    size_t i, n = km__ttlv_count(q->t, pl, T(ATTRIBUTE_NAME));
    size_t m = km__ttlv_count(q->t, pl, TAG_ATTRIBUTE_REFERENCE);
    if (n == 0 && m == 0)
        return 1;
    for (i = 0; i < n; i++) {
        const km__ttlv_item *it = &q->t->items[km__ttlv_child(q->t, pl, T(ATTRIBUTE_NAME), (int)i)];
        if (it->type == KM__TTLV_TEXT && it->len == strlen(name) && memcmp(it->val, name, it->len) == 0)
            return 1;
    }
    for (i = 0; i < m; i++) {
        int a = km__ttlv_child(q->t, pl, TAG_ATTRIBUTE_REFERENCE, (int)i);
        uint32_t ref;
        if (item_u32(q, a, KM__TTLV_ENUM, &ref) == KM_OK && ref == tag2)
            return 1;
    }
    return 0;
}

static int op_get_attributes(req *q, int pl, result *r, int list_only)
{
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    uint32_t obj, alg, st, ver, count, t, nt;
    int32_t len;
    int rc, pub;
    char uid[UID_CAP];
    const char *group = NULL, *tk, *tv;

    if (key_of_pub(q, pl, &k, &ver, &pub, r) != 0)
        return -1;
    if ((rc = km_key_info(&info, k)) != KM_OK) {
        km_key_free(k);
        return km_fail(r, rc);
    }
    count = km_keyinfo_version_count(info);
    if (ver > count || km_keyinfo_version(info, ver - 1, &vi, sizeof vi) != KM_OK) {
        km_keyinfo_free(info);
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND, "no object with this identifier");
    }
    if (kmip_type(km_keyinfo_type(info), &obj, &alg, &len) != 0) {
        obj = KM__KMIP_OBJ_PUBLIC_KEY;
        alg = 0;
        len = 0;
    }
    if (pub)
        obj = KM__KMIP_OBJ_PUBLIC_KEY;
    /* the object is one version: its own state */
    st = kmip_state(vi.state);
    nt = km_keyinfo_tag_count(info);
    for (t = 0; t < nt; t++)
        if (km_keyinfo_tag(info, t, &tk, &tv) == KM_OK && strcmp(tk, GROUP_TAG) == 0)
            group = tv;
    uid_fmt(km_key_id(k), ver, pub, uid);
    km__ttlv_put_text(q->e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
    if (list_only) {
        static const char *const names[] = { "Unique Identifier", "Name", "Object Type",
                                             "Cryptographic Algorithm", "Cryptographic Length",
                                             "State", "Cryptographic Usage Mask" };
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            km__ttlv_put_text(q->e, T(ATTRIBUTE_NAME), names[i], strlen(names[i]));
        if (group != NULL)
            km__ttlv_put_text(q->e, T(ATTRIBUTE_NAME), "Object Group", 12);
        if (count > 1 || obj != KM__KMIP_OBJ_SYMMETRIC_KEY)
            km__ttlv_put_text(q->e, T(ATTRIBUTE_NAME), "Link", 4);
    } else {
        if (q->major >= 2)
            km__ttlv_begin(q->e, T(ATTRIBUTES));
        if (wanted(q, pl, "Name", T(NAME))) {
            const char *nm = km_keyinfo_name(info);
            attr_begin(q, "Name");
            km__ttlv_begin(q->e, vtag(q, T(NAME)));
            km__ttlv_put_text(q->e, T(NAME_VALUE), nm, strlen(nm));
            km__ttlv_put_enum(q->e, T(NAME_TYPE), KM__KMIP_NAME_TEXT);
            km__ttlv_end(q->e);
            attr_end(q);
        }
        if (wanted(q, pl, "Object Type", T(OBJECT_TYPE))) {
            attr_begin(q, "Object Type");
            km__ttlv_put_enum(q->e, vtag(q, T(OBJECT_TYPE)), obj);
            attr_end(q);
        }
        if (alg != 0 && wanted(q, pl, "Cryptographic Algorithm", T(CRYPTOGRAPHIC_ALGORITHM))) {
            attr_begin(q, "Cryptographic Algorithm");
            km__ttlv_put_enum(q->e, vtag(q, T(CRYPTOGRAPHIC_ALGORITHM)), alg);
            attr_end(q);
        }
        if (len != 0 && wanted(q, pl, "Cryptographic Length", T(CRYPTOGRAPHIC_LENGTH))) {
            attr_begin(q, "Cryptographic Length");
            km__ttlv_put_int(q->e, vtag(q, T(CRYPTOGRAPHIC_LENGTH)), len);
            attr_end(q);
        }
        if (wanted(q, pl, "State", T(STATE))) {
            attr_begin(q, "State");
            km__ttlv_put_enum(q->e, vtag(q, T(STATE)), st);
            attr_end(q);
        }
        if (wanted(q, pl, "Cryptographic Usage Mask", T(CRYPTOGRAPHIC_USAGE_MASK))) {
            attr_begin(q, "Cryptographic Usage Mask");
            km__ttlv_put_int(q->e, vtag(q, T(CRYPTOGRAPHIC_USAGE_MASK)),
                             (int32_t)mask_of_usage(km_keyinfo_usage(info),
                                                    km_keyinfo_flags(info)));
            attr_end(q);
        }
        if (group != NULL && wanted(q, pl, "Object Group", TAG_OBJECT_GROUP)) {
            attr_begin(q, "Object Group");
            km__ttlv_put_text(q->e, vtag(q, TAG_OBJECT_GROUP), group, strlen(group));
            attr_end(q);
        }
        if (wanted(q, pl, "Link", TAG_LINK)) {
            /* ReKey's chain (version N-1 replaced by N) and a key pair's halves */
            if (ver > 1)
                put_link(q, LINK_REPLACED, km_key_id(k), ver - 1, pub);
            if (ver < count)
                put_link(q, LINK_REPLACEMENT, km_key_id(k), ver + 1, pub);
            if (obj != KM__KMIP_OBJ_SYMMETRIC_KEY && alg != 0)
                put_link(q, pub ? LINK_PRIVATE_KEY : LINK_PUBLIC_KEY, km_key_id(k), ver, !pub);
        }
        if (q->major >= 2)
            km__ttlv_end(q->e);
    }
    km_keyinfo_free(info);
    km_key_free(k);
    return 0;
}

/* The vault policy's shortest destruction grace (days; 7 when unreadable). */
static uint32_t min_grace(km_ctx *ctx)
{
    char buf[16384];
    const char *p;
    size_t n = 0;
    unsigned long d;

    if (km_policy_get(ctx, buf, sizeof buf, &n) != KM_OK
        || (p = strstr(buf, "\"min_grace_days\"")) == NULL || (p = strchr(p, ':')) == NULL)
        return 7;
    d = strtoul(p + 1, NULL, 10);
    return d >= 1 && d <= 3650 ? (uint32_t)d : 7;
}

/* Activate, Revoke, Destroy: a lifecycle change of the object's version. */
static int op_lifecycle(req *q, int pl, uint32_t op, result *r)
{
    km_key *k = NULL;
    km_version_info vi;
    uint32_t ver;
    int rc = KM_OK;

    if (key_of(q, pl, &k, &ver, r) != 0)
        return -1;
    if (version_of(k, ver, &vi, NULL, NULL, r) != 0) {
        km_key_free(k);
        return -1;
    }
    if (op == KM__KMIP_OP_ACTIVATE) {
        rc = km_key_activate(k, ver);
    } else if (op == KM__KMIP_OP_REVOKE) {
        int rr = km__ttlv_child(q->t, pl, T(REVOCATION_REASON), 0);
        uint32_t code = KM__KMIP_REVOKE_UNSPECIFIED;
        int64_t when = 0;
        int compromise;
        if (rr >= 0)
            (void)km__ttlv_get_enum(q->t, rr, T(REVOCATION_REASON_CODE), &code);
        compromise = code == KM__KMIP_REVOKE_KEY_COMPROMISE || code == 3;
        if (compromise
            && km__ttlv_get_datetime(q->t, pl, T(COMPROMISE_OCCURRENCE_DATE), &when) != KM_OK)
            when = (int64_t)time(NULL);
        if (compromise ? vi.state > KM_STATE_DEACTIVATED
                       : !(vi.state == KM_STATE_ACTIVE || vi.state == KM_STATE_SUSPENDED)) {
            km_key_free(k);
            return fail(r, REASON_WRONG_STATE, "the object is not in a state this applies to");
        }
        /* KMIP's revocation reason codes are libkm's */
        rc = km_key_revoke(k, ver, code >= 1 && code <= 7 ? (km_revoke_reason)code
                                                           : KM_REVOKE_UNSPECIFIED,
                           compromise ? when : 0);
    } else if (vi.state != KM_STATE_DESTROY_PENDING && vi.state != KM_STATE_DESTROYED) {
        /* Destroy, after the policy's grace; libkm decides: the principal's
         * right first, then the state (an Active version is never destroyed
         * directly) */
        rc = km_key_schedule_destroy(k, ver, min_grace(q->ctx));
    }
    if (rc != KM_OK) {
        km_key_free(k);
        return km_fail(r, rc);
    }
    put_uid(q, k, ver);
    km_key_free(k);
    return 0;
}

/* ReKey: km_key_rotate. The new version is a new managed object, linked to
 * the one rekeyed (Link Replaced Object / Replacement Object); it becomes
 * the key's primary, so Encrypt by it uses it, and what older versions
 * encrypted still decrypts by their own identifiers. Only the newest object
 * is rekeyed (libkm's versions are one chain). */
static int op_rekey(req *q, int pl, result *r)
{
    km_key *k = NULL;
    km_version_info vi;
    uint32_t ver, count = 0, nv = 0;
    int rc;

    if (key_of(q, pl, &k, &ver, r) != 0)
        return -1;
    if (version_of(k, ver, &vi, &count, NULL, r) != 0) {
        km_key_free(k);
        return -1;
    }
    if (ver != count) {
        char uid[UID_CAP], m[160];
        uid_fmt(km_key_id(k), ver + 1, 0, uid);
        km_key_free(k);
        snprintf(m, sizeof m, "this object was already replaced by %s: rekey the newest", uid);
        return fail(r, REASON_WRONG_STATE, m);
    }
    if ((rc = km_key_rotate(k, &nv)) != KM_OK) {
        km_key_free(k);
        return km_fail(r, rc);
    }
    return made(q, k, nv);
}

/* The Cryptographic Parameters: a GCM / AES check, and whether the tag goes
 * apart (Tag Length given: 16 only). */
static int gcm_params(req *q, int pl, int *tag_apart, result *r)
{
    int cp = km__ttlv_child(q->t, pl, T(CRYPTOGRAPHIC_PARAMETERS), 0);
    uint32_t v;
    int32_t tl;
    *tag_apart = 0;
    if (cp < 0)
        return 0;
    if (km__ttlv_get_enum(q->t, cp, T(BLOCK_CIPHER_MODE), &v) == KM_OK && v != KM__KMIP_MODE_GCM)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED, "AES-GCM only");
    if (km__ttlv_get_enum(q->t, cp, T(CRYPTOGRAPHIC_ALGORITHM), &v) == KM_OK
        && v != KM__KMIP_ALG_AES)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED, "AES-GCM only");
    if (km__ttlv_get_int(q->t, cp, T(TAG_LENGTH), &tl) == KM_OK) {
        if (tl != 16)
            return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED, "Tag Length 16 only");
        *tag_apart = 1;
    }
    return 0;
}

static int op_encrypt(req *q, int pl, result *r)
{
    const uint8_t *pt, *aad = NULL;
    size_t pt_len, aad_len = 0, ct_len = 0;
    uint8_t *ct;
    km_key *k = NULL;
    uint32_t ver;
    int apart, rc;

    if (gcm_params(q, pl, &apart, r) != 0)
        return -1;
    if (km__ttlv_get_bytes(q->t, pl, T(DATA), &pt, &pt_len) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Data");
    if (km__ttlv_child(q->t, pl, T(IV_COUNTER_NONCE), 0) >= 0)
        return fail(r, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED, "kmd draws every nonce: leave IV/Counter/Nonce out");
    (void)km__ttlv_get_bytes(q->t, pl, T(AE_ADDITIONAL_DATA), &aad, &aad_len);
    if (key_of(q, pl, &k, &ver, r) != 0)
        return -1;
    if ((ct = malloc(pt_len + KM_CIPHERTEXT_OVERHEAD)) == NULL) {
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "out of memory");
    }
    rc = km_encrypt(k, pt, pt_len, aad, aad_len, ct, pt_len + KM_CIPHERTEXT_OVERHEAD, &ct_len);
    if (rc == KM_OK && be32(ct + 20) != ver) {
        /* the primary made it: this object is not the primary (replaced) */
        km_memzero(ct, ct_len);
        free(ct);
        rc = protects(k, ver, r);
        km_key_free(k);
        return rc == 0 ? fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "encrypted by another version")
                       : -1;
    }
    if (rc == KM_OK) {
        put_uid(q, k, ver);
        if (apart) {
            km__ttlv_put_bytes(q->e, T(DATA), ct + 36, ct_len - 52);
            km__ttlv_put_bytes(q->e, T(IV_COUNTER_NONCE), ct + 20, 16);
            km__ttlv_put_bytes(q->e, T(AE_TAG), ct + ct_len - 16, 16);
        } else {
            km__ttlv_put_bytes(q->e, T(DATA), ct + 36, ct_len - 36);
            km__ttlv_put_bytes(q->e, T(IV_COUNTER_NONCE), ct + 20, 16);
        }
    }
    free(ct);
    km_key_free(k);
    return rc == KM_OK ? 0 : km_fail(r, rc);
}

static int op_decrypt(req *q, int pl, result *r)
{
    const uint8_t *data, *iv, *tag = NULL, *aad = NULL;
    size_t data_len, iv_len, tag_len = 0, aad_len = 0, n = 0, ct_len;
    uint8_t *ct, *pt;
    km_key *k = NULL;
    uint32_t ver;
    int apart, rc;

    if (gcm_params(q, pl, &apart, r) != 0)
        return -1;
    if (km__ttlv_get_bytes(q->t, pl, T(DATA), &data, &data_len) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Data");
    if (km__ttlv_get_bytes(q->t, pl, T(IV_COUNTER_NONCE), &iv, &iv_len) != KM_OK || iv_len != 16)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no IV/Counter/Nonce as Encrypt returned it (16 bytes)");
    (void)km__ttlv_get_bytes(q->t, pl, T(AE_TAG), &tag, &tag_len);
    (void)km__ttlv_get_bytes(q->t, pl, T(AE_ADDITIONAL_DATA), &aad, &aad_len);
    if (tag != NULL ? tag_len != 16 : data_len < 16)
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "the GCM tag must be 16 bytes");
    if (key_of(q, pl, &k, &ver, r) != 0)
        return -1;
    if (be32(iv) != ver) {   /* the IV names the version that encrypted */
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE,
                    "this IV was made by another object (another version of the key): decrypt "
                    "by the identifier that encrypted");
    }
    /* the libkm ciphertext again: header (magic, format, algorithm, key id,
     * then the IV's version and nonce), data, tag */
    ct_len = 36 + data_len + (tag != NULL ? 16 : 0);
    if ((ct = malloc(ct_len)) == NULL) {
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "out of memory");
    }
    ct[0] = 0x4b;
    ct[1] = 0x4d;
    ct[2] = 1;
    ct[3] = (uint8_t)km_key_get_type(k);
    memcpy(ct + 4, km_key_id(k), 16);
    memcpy(ct + 20, iv, 16);
    memcpy(ct + 36, data, data_len);
    if (tag != NULL)
        memcpy(ct + 36 + data_len, tag, 16);
    if ((pt = malloc(ct_len)) == NULL) {
        free(ct);
        km_key_free(k);
        return fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "out of memory");
    }
    rc = km_decrypt_key(k, 0, ct, ct_len, aad, aad_len, pt, ct_len, &n);
    if (rc == KM_OK) {
        put_uid(q, k, ver);
        km__ttlv_put_bytes(q->e, T(DATA), pt, n);
    }
    km_memzero(pt, ct_len);
    free(pt);
    free(ct);
    km_key_free(k);
    return rc == KM_OK ? 0 : km_fail(r, rc);
}

/* Sign / MAC (out) and SignatureVerify / MACVerify (check). */
static int op_tagged(req *q, int pl, uint32_t op, result *r)
{
    const uint8_t *data, *sig;
    size_t data_len, sig_len, n = 0;
    uint8_t out[KM_SIGNATURE_MAX];
    km_key *k = NULL;
    uint32_t ver;
    int rc, pub, mac = op == KM__KMIP_OP_MAC || op == OP_MAC_VERIFY;
    int verify = op == KM__KMIP_OP_SIGNATURE_VERIFY || op == OP_MAC_VERIFY;
    uint32_t sig_tag = mac ? T(MAC_DATA) : T(SIGNATURE_DATA);

    if (km__ttlv_get_bytes(q->t, pl, T(DATA), &data, &data_len) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Data");
    if (verify && km__ttlv_get_bytes(q->t, pl, sig_tag, &sig, &sig_len) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, mac ? "no MAC Data"
                                                                : "no Signature Data");
    if (key_of_pub(q, pl, &k, &ver, &pub, r) != 0)
        return -1;
    if ((pub && !verify) || (!verify && protects(k, ver, r) != 0)) {
        km_key_free(k);
        return pub ? fail(r, KM__KMIP_REASON_ITEM_NOT_FOUND,
                          "a public key object does not sign: use the private key's identifier")
                   : -1;
    }
    if (verify)
        rc = mac ? km_mac_verify(k, ver, KM_SIG_RAW, data, data_len, sig, sig_len)
                 : km_verify(k, ver, KM_SIG_RAW, data, data_len, sig, sig_len);
    else
        rc = mac ? km_mac(k, KM_SIG_RAW, data, data_len, out, sizeof out, &n)
                 : km_sign(k, KM_SIG_RAW, data, data_len, out, sizeof out, &n);
    if (rc == KM_OK || (verify && rc == KM_E_VERIFY)) {
        put_uid(q, k, ver);
        if (verify)
            km__ttlv_put_enum(q->e, TAG_VALIDITY_INDICATOR, rc == KM_OK ? VALID : INVALID);
        else
            km__ttlv_put_bytes(q->e, sig_tag, out, n);
        rc = KM_OK;
    }
    km_key_free(k);
    return rc == KM_OK ? 0 : km_fail(r, rc);
}

static int op_rng(req *q, int pl, result *r)
{
    int32_t n = 0;
    uint8_t b[RNG_MAX];
    if (km__ttlv_get_int(q->t, pl, TAG_DATA_LENGTH, &n) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no Data Length");
    if (n < 1 || n > RNG_MAX)
        return fail(r, KM__KMIP_REASON_INVALID_FIELD, "Data Length must be 1 to 1024");
    if (getrandom(b, (size_t)n, 0) != (ssize_t)n)
        return fail(r, KM__KMIP_REASON_GENERAL_FAILURE, "no random bytes");
    km__ttlv_put_bytes(q->e, T(DATA), b, (size_t)n);
    km_memzero(b, sizeof b);
    return 0;
}

/* kmd's Unseal extension (km/sys/server.h): one share to main.c's handler. */
static int op_unseal(req *q, int pl, result *r)
{
    const uint8_t *b;
    size_t n;
    unsigned have = 0, need = 0;
    char msg[200];
    int rc;

    if (q->lim->unseal == NULL)
        return fail(r, KM__KMIP_REASON_OPERATION_NOT_SUPPORTED, "this kmd does not start sealed");
    if (km__ttlv_get_bytes(q->t, pl, KM_KMD_TAG_SHARE, &b, &n) != KM_OK)
        return fail(r, KM__KMIP_REASON_MISSING_DATA, "no share");
    msg[0] = '\0';
    rc = q->lim->unseal(b, n, q->lim->peer, &have, &need, msg, sizeof msg);
    if (rc != KM_OK)
        return fail(r, rc == KM_E_STATE ? KM__KMIP_REASON_ILLEGAL_OPERATION
                       : rc == KM_E_AUTH ? KM__KMIP_REASON_AUTH_NOT_SUCCESSFUL
                       : rc == KM_E_INVALID ? KM__KMIP_REASON_INVALID_FIELD
                                            : KM__KMIP_REASON_GENERAL_FAILURE, msg);
    km__ttlv_put_int(q->e, KM_KMD_TAG_SHARES_HAVE, (int32_t)have);
    km__ttlv_put_int(q->e, KM_KMD_TAG_SHARES_NEED, (int32_t)need);
    return 0;
}

static int dispatch(req *q, uint32_t op, int pl, result *r)
{
    if (op == KM_KMD_OP_UNSEAL)
        return op_unseal(q, pl, r);
    if (q->ctx == NULL && op != KM__KMIP_OP_DISCOVER_VERSIONS && op != KM__KMIP_OP_QUERY)
        return fail(r, KM__KMIP_REASON_PERMISSION_DENIED,
                    "kmd is sealed: custodians unseal it with their shares (kmctl unseal)");
    if (op == KM_KMD_OP_CALL)   /* libkm's client mode: src/kmd/vendor.c */
        return kmd_vendor_call(q->ctx, q->t, pl, q->e, &r->reason, r->msg, sizeof r->msg);
    switch (op) {
    case KM__KMIP_OP_DISCOVER_VERSIONS: return op_discover(q, pl, r);
    case KM__KMIP_OP_QUERY: return op_query(q, pl, r);
    case KM__KMIP_OP_CREATE: return op_create(q, pl, r);
    case OP_CREATE_KEY_PAIR: return op_create_key_pair(q, pl, r);
    case KM__KMIP_OP_REGISTER: return op_register(q, pl, r);
    case KM__KMIP_OP_GET: return op_get(q, pl, r);
    case OP_REKEY: return op_rekey(q, pl, r);
    case KM__KMIP_OP_LOCATE: return op_locate(q, pl, r);
    case KM__KMIP_OP_GET_ATTRIBUTES: return op_get_attributes(q, pl, r, 0);
    case OP_GET_ATTRIBUTE_LIST: return op_get_attributes(q, pl, r, 1);
    case KM__KMIP_OP_ACTIVATE:
    case KM__KMIP_OP_REVOKE:
    case KM__KMIP_OP_DESTROY: return op_lifecycle(q, pl, op, r);
    case KM__KMIP_OP_ENCRYPT: return op_encrypt(q, pl, r);
    case KM__KMIP_OP_DECRYPT: return op_decrypt(q, pl, r);
    case KM__KMIP_OP_SIGN:
    case KM__KMIP_OP_SIGNATURE_VERIFY:
    case KM__KMIP_OP_MAC:
    case OP_MAC_VERIFY: return op_tagged(q, pl, op, r);
    case OP_RNG_RETRIEVE: return op_rng(q, pl, r);
    default:
        return fail(r, KM__KMIP_REASON_OPERATION_NOT_SUPPORTED, "operation not supported by kmd (docs/KMD.md)");
    }
}

/* ------------------------------------------------------------ messages */

static void header(km__ttlv_enc *e, int major, int minor, uint32_t count)
{
    km__ttlv_begin(e, T(RESPONSE_MESSAGE));
    km__ttlv_begin(e, T(RESPONSE_HEADER));
    km__ttlv_begin(e, T(PROTOCOL_VERSION));
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MAJOR), major);
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MINOR), minor);
    km__ttlv_end(e);
    km__ttlv_put_datetime(e, T(TIME_STAMP), (int64_t)time(NULL));
    km__ttlv_put_int(e, T(BATCH_COUNT), (int32_t)count);
    km__ttlv_end(e);
}

static void status(km__ttlv_enc *e, const result *r)
{
    km__ttlv_put_enum(e, T(RESULT_STATUS),
                      r->reason ? KM__KMIP_STATUS_FAILED : KM__KMIP_STATUS_SUCCESS);
    if (r->reason) {
        km__ttlv_put_enum(e, T(RESULT_REASON), r->reason);
        km__ttlv_put_text(e, T(RESULT_MESSAGE), r->msg, strlen(r->msg));
    }
}

/* A response to a message kmd could not read: one failed batch item. */
static int invalid(km__ttlv_enc *e, const char *why, uint8_t **resp, size_t *resp_len)
{
    result r;
    const uint8_t *out;
    size_t n;

    char m[sizeof r.msg];
    snprintf(m, sizeof m, "invalid request message: %s", why);
    fail(&r, KM__KMIP_REASON_INVALID_MESSAGE, m);
    km__ttlv_enc_free(e);
    km__ttlv_enc_init(e, 0);
    header(e, 1, 4, 1);
    km__ttlv_begin(e, T(BATCH_ITEM));
    status(e, &r);
    km__ttlv_end(e);
    km__ttlv_end(e);
    *resp = NULL;
    *resp_len = 0;
    if (km__ttlv_enc_finish(e, &out, &n) == KM_OK && (*resp = malloc(n)) != NULL) {
        memcpy(*resp, out, n);
        *resp_len = n;
    }
    km__ttlv_enc_free(e);
    return -1;
}

void kmd_response_free(uint8_t *resp, size_t len)
{
    if (resp != NULL)
        km_memzero(resp, len);
    free(resp);
}

/* Runs one batch item: its payload is built apart (KMIP puts the result
 * status first) and appended to q->e after the status when it succeeded. */
static void item_run(req *q, uint32_t op, int pl, result *r)
{
    km__ttlv_enc *e = q->e, pe;
    km__ttlv_tree pt;
    km__ttlv_limits lim = { 64u << 20, KM__TTLV_DEFAULT_MAX_DEPTH, 1u << 20 };
    const uint8_t *out;
    size_t n;

    km__ttlv_enc_init(&pe, 0);
    q->e = &pe;
    km__ttlv_begin(&pe, T(RESPONSE_PAYLOAD));
    if (dispatch(q, op, pl, r) == 0) {
        km__ttlv_end(&pe);
        memset(&pt, 0, sizeof pt);
        if (km__ttlv_enc_finish(&pe, &out, &n) != KM_OK
            || km__ttlv_decode(out, n, &lim, &pt) != KM_OK)
            fail(r, KM__KMIP_REASON_RESPONSE_TOO_LARGE, "the response could not be built");
        status(e, r);
        if (r->reason == 0)
            km__ttlv_put_item(e, &pt, 0);
        km__ttlv_tree_free(&pt);
    } else {
        status(e, r);
    }
    km__ttlv_enc_free(&pe);
    q->e = e;
}

int kmd_kmip_handle(km_ctx *ctx, const kmd_limits *lim, const uint8_t *reqb, size_t req_len,
                    uint8_t **resp, size_t *resp_len)
{
    km__ttlv_limits tl = KM__TTLV_LIMITS_DEFAULT;
    km__ttlv_tree t;
    km__ttlv_enc e;
    req q;
    int hdr, pv, i, rc;
    int32_t ma = 0, mi = 0, count = 0;
    const uint8_t *out;
    size_t n;

    *resp = NULL;
    *resp_len = 0;
    km__ttlv_enc_init(&e, 0);
    tl.max_len = lim->max_message;
    rc = km__ttlv_decode(reqb, req_len, &tl, &t);
    if (rc != KM_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s at byte %zu", t.why ? t.why : "malformed", t.why_off);
        km__ttlv_tree_free(&t);
        return invalid(&e, why, resp, resp_len);
    }
    if (t.items[0].tag != T(REQUEST_MESSAGE)
        || km__ttlv_get_struct(&t, 0, T(REQUEST_HEADER), &hdr) != KM_OK
        || km__ttlv_get_struct(&t, hdr, T(PROTOCOL_VERSION), &pv) != KM_OK
        || km__ttlv_get_int(&t, pv, T(PROTOCOL_VERSION_MAJOR), &ma) != KM_OK
        || km__ttlv_get_int(&t, pv, T(PROTOCOL_VERSION_MINOR), &mi) != KM_OK
        || km__ttlv_get_int(&t, hdr, T(BATCH_COUNT), &count) != KM_OK || count < 1
        || (size_t)count != km__ttlv_count(&t, 0, T(BATCH_ITEM)) || count > 64) {
        km__ttlv_tree_free(&t);
        return invalid(&e, "not a Request Message with a header and 1 to 64 batch items",
                       resp, resp_len);
    }
    memset(&q, 0, sizeof q);
    q.ctx = ctx;
    q.lim = lim;
    q.t = &t;
    /* answer in the client's version when we speak it, else 1.4 (2.x: 2.0) */
    q.major = ma >= 2 ? 2 : 1;
    q.minor = ma >= 2 ? 0 : (mi > 4 || mi < 0 ? 4 : mi);
    q.e = &e;
    header(&e, q.major, q.minor, (uint32_t)count);
    for (i = 0; i < count; i++) {
        int bi = km__ttlv_child(&t, 0, T(BATCH_ITEM), i), pl = -1;
        uint32_t op = 0;
        const uint8_t *bid = NULL;
        size_t bid_len = 0;
        result r;

        memset(&r, 0, sizeof r);
        km__ttlv_begin(&e, T(BATCH_ITEM));
        if (km__ttlv_get_enum(&t, bi, T(OPERATION), &op) == KM_OK)
            km__ttlv_put_enum(&e, T(OPERATION), op);
        if (km__ttlv_get_bytes(&t, bi, T(UNIQUE_BATCH_ITEM_ID), &bid, &bid_len) == KM_OK)
            km__ttlv_put_bytes(&e, T(UNIQUE_BATCH_ITEM_ID), bid, bid_len);
        (void)km__ttlv_get_struct(&t, bi, T(REQUEST_PAYLOAD), &pl);
        if (op == 0 || (pl < 0 && op != KM__KMIP_OP_DISCOVER_VERSIONS)) {
            fail(&r, KM__KMIP_REASON_INVALID_MESSAGE, op == 0 ? "a batch item without Operation" : "a batch item without payload");
            status(&e, &r);
        } else {
            item_run(&q, op, pl, &r);
        }
        km__ttlv_end(&e);
        /* an object made by this item is the placeholder of the next; a
         * failed item leaves it */
    }
    km__ttlv_end(&e);
    km__ttlv_tree_free(&t);
    if (km__ttlv_enc_finish(&e, &out, &n) != KM_OK || (*resp = malloc(n)) == NULL) {
        km__ttlv_enc_free(&e);
        return invalid(&e, "response could not be built", resp, resp_len);
    }
    memcpy(*resp, out, n);
    *resp_len = n;
    km__ttlv_enc_free(&e);
    return 0;
}
