/*
 * kmip_ttlv.h - the OASIS KMIP TTLV codec (internal; issue 19).
 *
 * A KMIP message is one TTLV item: Tag (3 bytes), Type (1 byte), Length
 * (4 bytes, big-endian, the value's length without padding), then the value,
 * padded with zero bytes to a multiple of 8. A Structure's value is its
 * children, one after the other. Types and their value lengths:
 *
 *   0x01 Structure      children, filling the length exactly
 *   0x02 Integer        4 (signed, big-endian), padded to 8
 *   0x03 Long Integer   8 (signed)
 *   0x04 Big Integer    a multiple of 8 (two's complement, big-endian)
 *   0x05 Enumeration    4 (unsigned), padded to 8
 *   0x06 Boolean        8, the value 0 or 1
 *   0x07 Text String    any length (UTF-8, not NUL-terminated), padded
 *   0x08 Byte String    any length, padded
 *   0x09 Date-Time      8 (POSIX seconds, signed)
 *   0x0A Interval       4 (unsigned seconds), padded to 8
 *   0x0B Date-Time Extended (KMIP 2.0) 8 (microseconds)
 *
 * The decoder is strict: one item fills the buffer exactly; every length is
 * checked against the bytes that remain before anything is read; fixed-size
 * types must have their size, padding bytes must be zero, a Boolean is 0 or
 * 1; and the caller's limits on total length, nesting depth and item count
 * hold. Because padding is checked, decoding and encoding again gives the same
 * bytes (the fuzz target tests/fuzz/fuzz_ttlv.c checks it).
 *
 * The encoder appends items to a growing buffer, opening and closing
 * Structures; it wipes every buffer it drops (messages carry plaintext and,
 * for Get, key material). Errors are sticky: after the first failure every
 * call does nothing, and km__ttlv_enc_finish() returns that error.
 *
 * The message helpers (km__kmip_*) build request messages (header with the
 * protocol version and batch count, then batch items with an operation and a
 * payload) and parse response messages into their batch items' results.
 *
 * Errors are libkm's codes (KM_OK, KM_E_CORRUPT for a malformed input,
 * KM_E_NOMEM, KM_E_INVALID for a misuse, KM_E_NOTFOUND for a missing field);
 * the decoder leaves why and where in the tree's `why` and `why_off`. The
 * module uses nothing but libc: no core header, no OpenSSL.
 */
#ifndef KM_KMIP_TTLV_H
#define KM_KMIP_TTLV_H

#include <stddef.h>
#include <stdint.h>

#include "km/error.h"

/* ------------------------------------------------------------------ types */

enum km__ttlv_type {
    KM__TTLV_STRUCTURE = 0x01,
    KM__TTLV_INTEGER = 0x02,
    KM__TTLV_LONG = 0x03,
    KM__TTLV_BIGINT = 0x04,
    KM__TTLV_ENUM = 0x05,
    KM__TTLV_BOOL = 0x06,
    KM__TTLV_TEXT = 0x07,
    KM__TTLV_BYTES = 0x08,
    KM__TTLV_DATETIME = 0x09,
    KM__TTLV_INTERVAL = 0x0A,
    KM__TTLV_DATETIME_EXT = 0x0B
};

/* ------------------------------------------------------------------- tags */

/* The KMIP tags libkm uses (KMIP 1.4 section 9.1.3.1, 2.0 section 11.1). */
#define KM__KMIP_TAG_LIST(X)                                   \
    X(ACTIVATION_DATE, 0x420001)                               \
    X(ATTRIBUTE, 0x420008)                                     \
    X(ATTRIBUTE_INDEX, 0x420009)                               \
    X(ATTRIBUTE_NAME, 0x42000A)                                \
    X(ATTRIBUTE_VALUE, 0x42000B)                               \
    X(BATCH_COUNT, 0x42000D)                                   \
    X(BATCH_ERROR_CONTINUATION, 0x42000E)                      \
    X(BATCH_ITEM, 0x42000F)                                    \
    X(BATCH_ORDER_OPTION, 0x420010)                            \
    X(BLOCK_CIPHER_MODE, 0x420011)                             \
    X(COMPROMISE_OCCURRENCE_DATE, 0x420021)                    \
    X(CRYPTOGRAPHIC_ALGORITHM, 0x420028)                       \
    X(CRYPTOGRAPHIC_LENGTH, 0x42002A)                          \
    X(CRYPTOGRAPHIC_PARAMETERS, 0x42002B)                      \
    X(CRYPTOGRAPHIC_USAGE_MASK, 0x42002C)                      \
    X(HASHING_ALGORITHM, 0x420038)                             \
    X(IV_COUNTER_NONCE, 0x42003D)                              \
    X(KEY_BLOCK, 0x420040)                                     \
    X(KEY_COMPRESSION_TYPE, 0x420041)                          \
    X(KEY_FORMAT_TYPE, 0x420042)                               \
    X(KEY_MATERIAL, 0x420043)                                  \
    X(KEY_VALUE, 0x420045)                                     \
    X(MAC_DATA, 0x4200C6)                                      \
    X(MAXIMUM_RESPONSE_SIZE, 0x420050)                         \
    X(NAME, 0x420053)                                          \
    X(NAME_TYPE, 0x420054)                                     \
    X(NAME_VALUE, 0x420055)                                    \
    X(OBJECT_TYPE, 0x420057)                                   \
    X(OPERATION, 0x42005C)                                     \
    X(PADDING_METHOD, 0x42005F)                                \
    X(PROTOCOL_VERSION, 0x420069)                              \
    X(PROTOCOL_VERSION_MAJOR, 0x42006A)                        \
    X(PROTOCOL_VERSION_MINOR, 0x42006B)                        \
    X(REQUEST_HEADER, 0x420077)                                \
    X(REQUEST_MESSAGE, 0x420078)                               \
    X(REQUEST_PAYLOAD, 0x420079)                               \
    X(RESPONSE_HEADER, 0x42007A)                               \
    X(RESPONSE_MESSAGE, 0x42007B)                              \
    X(RESPONSE_PAYLOAD, 0x42007C)                              \
    X(RESULT_MESSAGE, 0x42007D)                                \
    X(RESULT_REASON, 0x42007E)                                 \
    X(RESULT_STATUS, 0x42007F)                                 \
    X(REVOCATION_MESSAGE, 0x420080)                            \
    X(REVOCATION_REASON, 0x420081)                             \
    X(REVOCATION_REASON_CODE, 0x420082)                        \
    X(STATE, 0x42008D)                                         \
    X(SYMMETRIC_KEY, 0x42008F)                                 \
    X(TEMPLATE_ATTRIBUTE, 0x420091)                            \
    X(TIME_STAMP, 0x420092)                                    \
    X(UNIQUE_BATCH_ITEM_ID, 0x420093)                          \
    X(UNIQUE_IDENTIFIER, 0x420094)                             \
    X(DATA, 0x4200C2)                                          \
    X(SIGNATURE_DATA, 0x4200C3)                                \
    X(RANDOM_IV, 0x4200C5)                                     \
    X(TAG_LENGTH, 0x4200CE)                                    \
    X(AE_ADDITIONAL_DATA, 0x4200FE)                            \
    X(AE_TAG, 0x4200FF)                                        \
    X(SENSITIVE, 0x420120)                                     \
    X(EXTRACTABLE, 0x420122)                                   \
    X(ATTRIBUTES, 0x420125)                                    \
    X(COMMON_TEMPLATE_ATTRIBUTE, 0x42001F)                     \
    X(PRIVATE_KEY, 0x420064)                                   \
    X(PRIVATE_KEY_TEMPLATE_ATTRIBUTE, 0x420065)                \
    X(PRIVATE_KEY_UNIQUE_IDENTIFIER, 0x420066)                 \
    X(PUBLIC_KEY, 0x42006D)                                    \
    X(PUBLIC_KEY_TEMPLATE_ATTRIBUTE, 0x42006E)                 \
    X(PUBLIC_KEY_UNIQUE_IDENTIFIER, 0x42006F)                  \
    X(SALT_LENGTH, 0x420100)                                   \
    X(MASK_GENERATOR, 0x420101)                                \
    X(MASK_GENERATOR_HASHING_ALGORITHM, 0x420102)              \
    X(COMMON_ATTRIBUTES, 0x420126)                             \
    X(PRIVATE_KEY_ATTRIBUTES, 0x420127)                        \
    X(PUBLIC_KEY_ATTRIBUTES, 0x420128)                         \
    X(VALIDITY_INDICATOR, 0x42009B)                            \
    X(DATA_LENGTH, 0x4200C4)

enum km__kmip_tag {
#define KM__KMIP_TAG_ENUM_(name, value) KM__KMIP_TAG_##name = value,
    KM__KMIP_TAG_LIST(KM__KMIP_TAG_ENUM_)
#undef KM__KMIP_TAG_ENUM_
    KM__KMIP_TAG__END = 0
};

/* The name of a tag in the list ("UNIQUE_IDENTIFIER"), or NULL. */
const char *km__kmip_tag_name(uint32_t tag);

/* ------------------------------------------------------------ enumerations */

enum km__kmip_operation {
    KM__KMIP_OP_CREATE = 0x01,
    KM__KMIP_OP_CREATE_KEY_PAIR = 0x02,
    KM__KMIP_OP_REGISTER = 0x03,
    KM__KMIP_OP_LOCATE = 0x08,
    KM__KMIP_OP_GET = 0x0A,
    KM__KMIP_OP_GET_ATTRIBUTES = 0x0B,
    KM__KMIP_OP_ACTIVATE = 0x12,
    KM__KMIP_OP_REVOKE = 0x13,
    KM__KMIP_OP_DESTROY = 0x14,
    KM__KMIP_OP_QUERY = 0x18,
    KM__KMIP_OP_DISCOVER_VERSIONS = 0x1E,
    KM__KMIP_OP_ENCRYPT = 0x1F,
    KM__KMIP_OP_DECRYPT = 0x20,
    KM__KMIP_OP_SIGN = 0x21,
    KM__KMIP_OP_SIGNATURE_VERIFY = 0x22,
    KM__KMIP_OP_MAC = 0x23,
    KM__KMIP_OP_MAC_VERIFY = 0x24,
    KM__KMIP_OP_RNG_RETRIEVE = 0x25
};

enum km__kmip_validity { KM__KMIP_VALID = 1, KM__KMIP_INVALID = 2 };

enum km__kmip_result_status {
    KM__KMIP_STATUS_SUCCESS = 0,
    KM__KMIP_STATUS_FAILED = 1,
    KM__KMIP_STATUS_PENDING = 2,
    KM__KMIP_STATUS_UNDONE = 3
};

enum km__kmip_result_reason {
    KM__KMIP_REASON_ITEM_NOT_FOUND = 0x01,
    KM__KMIP_REASON_RESPONSE_TOO_LARGE = 0x02,
    KM__KMIP_REASON_AUTH_NOT_SUCCESSFUL = 0x03,
    KM__KMIP_REASON_INVALID_MESSAGE = 0x04,
    KM__KMIP_REASON_OPERATION_NOT_SUPPORTED = 0x05,
    KM__KMIP_REASON_MISSING_DATA = 0x06,
    KM__KMIP_REASON_INVALID_FIELD = 0x07,
    KM__KMIP_REASON_FEATURE_NOT_SUPPORTED = 0x08,
    KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE = 0x0A,
    KM__KMIP_REASON_ILLEGAL_OPERATION = 0x0B,
    KM__KMIP_REASON_PERMISSION_DENIED = 0x0C,
    KM__KMIP_REASON_GENERAL_FAILURE = 0x100
};

enum km__kmip_object_type {
    KM__KMIP_OBJ_SYMMETRIC_KEY = 0x02,
    KM__KMIP_OBJ_PUBLIC_KEY = 0x03,
    KM__KMIP_OBJ_PRIVATE_KEY = 0x04,
    KM__KMIP_OBJ_SECRET_DATA = 0x07
};

enum km__kmip_algorithm {
    KM__KMIP_ALG_AES = 0x03,
    KM__KMIP_ALG_RSA = 0x04,
    KM__KMIP_ALG_HMAC_SHA256 = 0x09
};

enum km__kmip_block_mode { KM__KMIP_MODE_GCM = 0x09 };

enum km__kmip_padding { KM__KMIP_PAD_PKCS1_V15 = 0x08, KM__KMIP_PAD_PSS = 0x0A };

enum km__kmip_hash { KM__KMIP_HASH_SHA256 = 0x06 };

enum km__kmip_mask_generator { KM__KMIP_MGF1 = 0x01 };

enum km__kmip_usage {
    KM__KMIP_USAGE_SIGN = 0x01,
    KM__KMIP_USAGE_VERIFY = 0x02,
    KM__KMIP_USAGE_ENCRYPT = 0x04,
    KM__KMIP_USAGE_DECRYPT = 0x08,
    KM__KMIP_USAGE_WRAP_KEY = 0x10,
    KM__KMIP_USAGE_UNWRAP_KEY = 0x20,
    KM__KMIP_USAGE_MAC_GENERATE = 0x80,
    KM__KMIP_USAGE_MAC_VERIFY = 0x100
};

enum km__kmip_key_format {
    KM__KMIP_FORMAT_RAW = 0x01,
    KM__KMIP_FORMAT_PKCS1 = 0x03,
    KM__KMIP_FORMAT_X509 = 0x05
};

enum km__kmip_state {
    KM__KMIP_STATE_PRE_ACTIVE = 1,
    KM__KMIP_STATE_ACTIVE = 2,
    KM__KMIP_STATE_DEACTIVATED = 3,
    KM__KMIP_STATE_COMPROMISED = 4,
    KM__KMIP_STATE_DESTROYED = 5,
    KM__KMIP_STATE_DESTROYED_COMPROMISED = 6
};

enum km__kmip_revocation_reason {
    KM__KMIP_REVOKE_UNSPECIFIED = 1,
    KM__KMIP_REVOKE_KEY_COMPROMISE = 2,
    KM__KMIP_REVOKE_CESSATION = 6
};

enum km__kmip_name_type { KM__KMIP_NAME_TEXT = 1 };

/* --------------------------------------------------------------- decoding */

/* Limits a decoder enforces. */
typedef struct km__ttlv_limits {
    size_t max_len;      /* the whole message, header included */
    unsigned max_depth;  /* 1 = a lone primitive item; at most KM__TTLV_MAX_DEPTH */
    size_t max_items;    /* items in the tree, the root included */
} km__ttlv_limits;

#define KM__TTLV_MAX_DEPTH 32
#define KM__TTLV_DEFAULT_MAX_LEN (16u * 1024 * 1024)
#define KM__TTLV_DEFAULT_MAX_DEPTH 16
#define KM__TTLV_DEFAULT_MAX_ITEMS 4096
#define KM__TTLV_LIMITS_DEFAULT                                                  \
    { KM__TTLV_DEFAULT_MAX_LEN, KM__TTLV_DEFAULT_MAX_DEPTH, KM__TTLV_DEFAULT_MAX_ITEMS }

/* One decoded item. `val` points into the decoded buffer (which must outlive
 * the tree); `len` is the value length as encoded (without padding). Indices
 * are -1 when there is none; a Structure's children are first, then next... */
typedef struct km__ttlv_item {
    uint32_t tag;
    uint8_t type;
    uint32_t len;
    const uint8_t *val;
    int parent;
    int first;
    int next;
    unsigned depth;  /* 1 for the root */
} km__ttlv_item;

/* A decoded message: items[0] is the root, the rest in document order. */
typedef struct km__ttlv_tree {
    km__ttlv_item *items;
    size_t n;
    const char *why;   /* on KM_E_CORRUPT: a static phrase saying what was wrong */
    size_t why_off;    /* and the offset in the buffer where */
} km__ttlv_tree;

/*
 * Decodes `buf` (exactly one item) into `out`, which is zeroed first and must
 * be released with km__ttlv_tree_free() whatever the result. `lim` NULL means
 * KM__TTLV_LIMITS_DEFAULT.
 * Returns KM_OK; KM_E_CORRUPT for any malformed input or a limit exceeded
 * (out->why says which); KM_E_NOMEM; KM_E_INVALID for NULL arguments.
 */
int km__ttlv_decode(const uint8_t *buf, size_t len, const km__ttlv_limits *lim,
                    km__ttlv_tree *out);

/* Releases a tree's item array (not the buffer it points into). NULL is fine. */
void km__ttlv_tree_free(km__ttlv_tree *t);

/*
 * The length of the item at the start of `buf`, from its header alone:
 * 8 + its padded value length. KM_E_CORRUPT when `len` < 8 (not enough to
 * tell) or the length is over `max_len`. Used to read one message off a stream.
 */
int km__ttlv_peek_len(const uint8_t *buf, size_t len, size_t max_len, size_t *out_total);

/*
 * Child lookup: the index of the `nth` (0-based) child of Structure `parent`
 * with tag `tag`, or -1 (also when `parent` is not a Structure or out of range).
 */
int km__ttlv_child(const km__ttlv_tree *t, int parent, uint32_t tag, int nth);

/* How many children of `parent` have tag `tag`. */
size_t km__ttlv_count(const km__ttlv_tree *t, int parent, uint32_t tag);

/*
 * Typed getters on the first child of `parent` with tag `tag`: KM_OK;
 * KM_E_NOTFOUND when there is none; KM_E_CORRUPT when it has another type.
 * Byte and text getters return a pointer into the buffer and the length.
 */
int km__ttlv_get_int(const km__ttlv_tree *t, int parent, uint32_t tag, int32_t *out);
int km__ttlv_get_long(const km__ttlv_tree *t, int parent, uint32_t tag, int64_t *out);
int km__ttlv_get_enum(const km__ttlv_tree *t, int parent, uint32_t tag, uint32_t *out);
int km__ttlv_get_bool(const km__ttlv_tree *t, int parent, uint32_t tag, int *out);
int km__ttlv_get_datetime(const km__ttlv_tree *t, int parent, uint32_t tag, int64_t *out);
int km__ttlv_get_interval(const km__ttlv_tree *t, int parent, uint32_t tag, uint32_t *out);
int km__ttlv_get_bytes(const km__ttlv_tree *t, int parent, uint32_t tag, const uint8_t **out,
                       size_t *out_len);
int km__ttlv_get_text(const km__ttlv_tree *t, int parent, uint32_t tag, const char **out,
                      size_t *out_len);
/* The index of the Structure child, in *out. */
int km__ttlv_get_struct(const km__ttlv_tree *t, int parent, uint32_t tag, int *out);

/* --------------------------------------------------------------- encoding */

typedef struct km__ttlv_enc {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t max;                         /* the largest message it may build */
    size_t open[KM__TTLV_MAX_DEPTH];    /* offsets of the open Structures' headers */
    unsigned depth;
    int err;                            /* the first error, sticky */
} km__ttlv_enc;

/* Starts an empty encoder that refuses to grow past `max` bytes (0 = the
 * default KM__TTLV_DEFAULT_MAX_LEN). Allocates nothing yet. */
void km__ttlv_enc_init(km__ttlv_enc *e, size_t max);

/* Wipes and frees the buffer; the encoder can be initialised again. NULL is fine. */
void km__ttlv_enc_free(km__ttlv_enc *e);

/* Opens / closes a Structure. end() with none open is KM_E_INVALID; more than
 * KM__TTLV_MAX_DEPTH open is KM_E_INVALID. */
int km__ttlv_begin(km__ttlv_enc *e, uint32_t tag);
int km__ttlv_end(km__ttlv_enc *e);

/* Primitive items. Each returns the encoder's error so far (KM_OK, KM_E_NOMEM
 * when the buffer would pass `max` or malloc fails, KM_E_INVALID for a tag
 * over 24 bits, a value too long for a 32-bit length, NULL with a length). */
int km__ttlv_put_int(km__ttlv_enc *e, uint32_t tag, int32_t v);
int km__ttlv_put_long(km__ttlv_enc *e, uint32_t tag, int64_t v);
int km__ttlv_put_enum(km__ttlv_enc *e, uint32_t tag, uint32_t v);
int km__ttlv_put_bool(km__ttlv_enc *e, uint32_t tag, int v);
int km__ttlv_put_datetime(km__ttlv_enc *e, uint32_t tag, int64_t v);
int km__ttlv_put_interval(km__ttlv_enc *e, uint32_t tag, uint32_t v);
int km__ttlv_put_text(km__ttlv_enc *e, uint32_t tag, const char *s, size_t len);
int km__ttlv_put_bytes(km__ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t len);
/* One Byte String made of two parts, p1 || p2 (either may be empty). */
int km__ttlv_put_bytes2(km__ttlv_enc *e, uint32_t tag, const uint8_t *p1, size_t len1,
                        const uint8_t *p2, size_t len2);
/* A Big Integer from big-endian two's complement bytes; sign-extended on the
 * left to a multiple of 8 bytes (len 0 encodes 8 zero bytes). */
int km__ttlv_put_bigint(km__ttlv_enc *e, uint32_t tag, const uint8_t *p, size_t len);
/* Any item of a decoded tree (a subtree), byte for byte as it was encoded. */
int km__ttlv_put_item(km__ttlv_enc *e, const km__ttlv_tree *t, int idx);

/* The finished message: KM_OK with *out pointing into the encoder (valid until
 * km__ttlv_enc_free), or the sticky error; KM_E_INVALID when a Structure is
 * still open or nothing was encoded. */
int km__ttlv_enc_finish(km__ttlv_enc *e, const uint8_t **out, size_t *out_len);

/* ---------------------------------------------------------------- messages */

/* Opens a Request Message and writes its header: Protocol Version, Batch
 * Order Option (true, when batch_count > 1) and Batch Count. Close with
 * km__kmip_req_end after the batch items. */
int km__kmip_req_begin(km__ttlv_enc *e, int major, int minor, uint32_t batch_count);
/* Opens a Batch Item with its Operation (and a Unique Batch Item ID when
 * id_len > 0), then its Request Payload: put the payload's fields, then
 * km__kmip_item_end. */
int km__kmip_item_begin(km__ttlv_enc *e, uint32_t operation, const uint8_t *id, size_t id_len);
int km__kmip_item_end(km__ttlv_enc *e);
int km__kmip_req_end(km__ttlv_enc *e);

/* The most batch items a parsed response may carry. */
#define KM__KMIP_MAX_BATCH 16

/* One batch item of a response. */
typedef struct km__kmip_result {
    uint32_t operation;      /* 0 when the item had none */
    uint32_t status;         /* KM__KMIP_STATUS_* */
    uint32_t reason;         /* KM__KMIP_REASON_*, 0 when none */
    const char *message;     /* Result Message (not NUL-terminated), NULL when none */
    size_t message_len;
    const uint8_t *batch_id; /* Unique Batch Item ID, NULL when none */
    size_t batch_id_len;
    int payload;             /* the Response Payload Structure's index, -1 when none */
} km__kmip_result;

/* A parsed Response Message. */
typedef struct km__kmip_response {
    int major, minor;        /* protocol version of the response header */
    int64_t time_stamp;
    size_t n;                /* batch items = the header's Batch Count */
    km__kmip_result items[KM__KMIP_MAX_BATCH];
} km__kmip_response;

/*
 * Parses a decoded Response Message: the header (Protocol Version, Time
 * Stamp, Batch Count) and each Batch Item (Result Status required, an
 * Operation, Result Reason / Message, Unique Batch Item ID and Response
 * Payload when present). KM_E_CORRUPT when the root is not a Response
 * Message, a required field is missing or of the wrong type, the Batch Count
 * differs from the items present or exceeds KM__KMIP_MAX_BATCH.
 */
int km__kmip_response_parse(const km__ttlv_tree *t, km__kmip_response *out);


/* ------------------------------------------------------ kmd's libkm call */
/*
 * The vendor operation KM_KMD_OP_CALL (include/km/sys/server.h, docs/KMD.md):
 * libkm's client mode (src/api/remote.c) sends one libkm function with its
 * arguments, kmd (src/kmd/vendor.c) runs it as the connection's principal.
 * Both read the function's signature from one table: its format, one
 * character per C argument after the context, in the C order:
 *
 *   inputs   u uint32/enum   i int   l int64   z size_t   s const char*
 *            b const uint8_t* + size_t   x const uint8_t[16]   k km_key*
 *            O const km_key_options*   T const km_key_settings*
 *            Q const km_key_filter*    h const km_audit_head*
 *   outputs  B uint8_t* + cap + size_t*   C char* + cap   R uint8_t* + len
 *            U uint32_t*   L uint64_t*   Z size_t*   S km_secret**
 *            X uint8_t[16]   K km_key**   H km_audit_head*
 *            W km_request_status*   M km_maintain_report**   I km_keyinfo**
 *            F km_policy_findings**   and the listings (callback + arg):
 *            N km_key_list_fn   P km_principal_fn   G km_grant_fn
 *            A km_audit_fn   E km_audit_alert_fn
 *
 * On the wire every character is one KM_KMD_TAG_ARG item of the request
 * (an output: its capacity as a Long Integer, 0 when it has none, Boolean
 * false for a NULL pointer) and every output one KM_KMD_TAG_OUT item of the
 * response (a Structure for the composite ones and the listings).
 */
enum km__kcall_fn {
    KM__KC_HELLO = 1,       /* >XCU: the vault id, whoami name and roles */
    KM__KC_KEY_OPEN = 10, KM__KC_KEY_OPEN_ID, KM__KC_KEY_CREATE, KM__KC_KEY_IMPORT,
    KM__KC_KEY_LIST, KM__KC_KEY_ROTATE, KM__KC_KEY_PUBLIC_EXPORT, KM__KC_KEY_INFO,
    KM__KC_KEY_LIST_FILTERED,
    KM__KC_ENCRYPT = 30, KM__KC_DECRYPT, KM__KC_DECRYPT_KEY, KM__KC_SIGN, KM__KC_SIGN_DIGEST,
    KM__KC_VERIFY, KM__KC_MAC, KM__KC_MAC_VERIFY, KM__KC_RANDOM, KM__KC_RSA_DECRYPT,
    KM__KC_RSA_OAEP_DECRYPT, KM__KC_RSA_OAEP_ENCRYPT,
    KM__KC_DATAKEY_GENERATE = 50, KM__KC_DATAKEY_DECRYPT, KM__KC_DATAKEY_GENERATE_TYPE,
    KM__KC_DATAKEY_PAIR_GENERATE, KM__KC_DATAKEY_PAIR_DECRYPT, KM__KC_REWRAP, KM__KC_REWRAP_TO,
    KM__KC_REWRAP_EX, KM__KC_DERIVE, KM__KC_AGREE, KM__KC_AGREE_RAW,
    KM__KC_ACTIVATE = 70, KM__KC_SUSPEND, KM__KC_RESUME, KM__KC_REVOKE,
    KM__KC_SCHEDULE_DESTROY, KM__KC_CANCEL_DESTROY, KM__KC_MAINTAIN,
    KM__KC_KEY_RENAME = 90, KM__KC_ALIAS_ADD, KM__KC_ALIAS_REMOVE, KM__KC_SET_DESCRIPTION,
    KM__KC_SET_TAG, KM__KC_KEY_SET, KM__KC_KEY_TRIM, KM__KC_KEY_PURGE,
    KM__KC_WHOAMI = 110, KM__KC_KEY_GRANT, KM__KC_KEY_PERMS, KM__KC_KEY_GRANTS,
    KM__KC_PRINCIPAL_ADD, KM__KC_PRINCIPAL_REMOVE, KM__KC_PRINCIPAL_LIST,
    KM__KC_POLICY_SET = 130, KM__KC_POLICY_GET, KM__KC_POLICY_REPORT,
    KM__KC_REQUEST_CREATE, KM__KC_REQUEST_APPROVE, KM__KC_REQUEST_INFO, KM__KC_REQUEST_DESCRIBE,
    KM__KC_AUDIT_SET_LEVEL = 150, KM__KC_AUDIT_GET_LEVEL, KM__KC_AUDIT_FLUSH,
    KM__KC_AUDIT_HEAD_GET, KM__KC_AUDIT_VERIFY, KM__KC_AUDIT_FOREACH, KM__KC_AUDIT_ALERTS,
    KM__KC_KEY_EXPORT_WRAPPED = 170, KM__KC_KEY_IMPORT_WRAPPED, KM__KC_VAULT_WRAPPING_KEY,
    KM__KC_KEY_BACKUP, KM__KC_KEY_RESTORE,
    /* never sent: the client runs these item by item through the calls above */
    KM__KC_BATCH = 200, KM__KC_REWRAP_BATCH_EX
};

/* The most arguments of one call. */
#define KM__KC_MAX_ARGS 12
/* The most records one listing answers with (a longer listing is cut and
 * says so; km_audit_foreach asks again from where it stopped). */
#define KM__KC_LIST_MAX 4096

/* kmd's managed-object identifier of a libkm key version (docs/KMD.md
 * "Protocol"): the key id in lower-case hex (32 characters), "-v<N>" added
 * for a version N >= 2, "-pub" for a key pair's public half. Shared by kmd
 * (src/kmd/kmip.c) and client mode's standard operations (src/api/remote.c). */
#define KM__KMIP_UID_CAP 56
void km__kmip_uid(const uint8_t id[16], uint32_t ver, int pub, char out[KM__KMIP_UID_CAP]);

/* A function's name ("km_encrypt") and format, or NULL for an unknown id. */
const char *km__kcall_name(uint32_t fn);
const char *km__kcall_format(uint32_t fn);

/* One argument as kmd decoded it: `null` for a NULL pointer; a number or an
 * output's capacity in n; bytes and text in p/len (text not terminated); a
 * Structure's index in st. */
typedef struct km__kcall_arg {
    int null;
    int64_t n;
    const uint8_t *p;
    size_t len;
    int st;
} km__kcall_arg;

/*
 * Decodes a call's request payload `pl`: *fn and its arguments by the
 * table's format (count and types checked; a key id and an `x` 16 bytes).
 * KM_OK, or KM_E_CORRUPT with *why naming what is wrong (an Invalid
 * Message); KM_E_UNSUPPORTED for a function id not in the table.
 */
int km__kcall_decode(const km__ttlv_tree *t, int pl, uint32_t *fn, km__kcall_arg *a,
                     size_t *n, const char **why);

#endif /* KM_KMIP_TTLV_H */
