/*
 * kmip_msg.c - the KMIP requests the kmip backend sends, and the mapping of a
 * failed batch item to a libkm error. Pure: no I/O, no OpenSSL. The bytes of
 * each request are checked against PyKMIP's encoder (tests/check_kmip_ttlv.c).
 */
#include "kmip_int.h"

#include <stdio.h>
#include <string.h>

#define T(name) KM__KMIP_TAG_##name

int km__kmip_msg_discover(km__ttlv_enc *e, int want_major, int want_minor)
{
    km__kmip_req_begin(e, 1, 4, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_DISCOVER_VERSIONS, NULL, 0);
    if (want_minor < 0) {
        km__ttlv_begin(e, T(PROTOCOL_VERSION));
        km__ttlv_put_int(e, T(PROTOCOL_VERSION_MAJOR), 2);
        km__ttlv_put_int(e, T(PROTOCOL_VERSION_MINOR), 0);
        km__ttlv_end(e);
        want_major = 1;
        want_minor = 4;
    }
    km__ttlv_begin(e, T(PROTOCOL_VERSION));
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MAJOR), want_major);
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MINOR), want_minor);
    km__ttlv_end(e);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

/* A 1.x Attribute: its name, then (the caller) its value tagged Attribute Value. */
static void attr_name(km__ttlv_enc *e, const char *name)
{
    km__ttlv_begin(e, T(ATTRIBUTE));
    km__ttlv_put_text(e, T(ATTRIBUTE_NAME), name, strlen(name));
}

static void name_struct(km__ttlv_enc *e, uint32_t tag, const char *name, size_t name_len)
{
    km__ttlv_begin(e, tag);
    km__ttlv_put_text(e, T(NAME_VALUE), name, name_len);
    km__ttlv_put_enum(e, T(NAME_TYPE), KM__KMIP_NAME_TEXT);
    km__ttlv_end(e);
}

/* Sensitive / Extractable: 2.0 attributes, or 1.x Attributes by name. */
static void protect_attrs(km__ttlv_enc *e, int major, uint32_t protect)
{
    if (protect & KM__KMIP_PROTECT_SENSITIVE) {
        if (major >= 2) {
            km__ttlv_put_bool(e, T(SENSITIVE), 1);
        } else {
            attr_name(e, "Sensitive");
            km__ttlv_put_bool(e, T(ATTRIBUTE_VALUE), 1);
            km__ttlv_end(e);
        }
    }
    if (protect & KM__KMIP_PROTECT_NOT_EXTRACTABLE) {
        if (major >= 2) {
            km__ttlv_put_bool(e, T(EXTRACTABLE), 0);
        } else {
            attr_name(e, "Extractable");
            km__ttlv_put_bool(e, T(ATTRIBUTE_VALUE), 0);
            km__ttlv_end(e);
        }
    }
}

int km__kmip_msg_create(km__ttlv_enc *e, int major, int minor, uint32_t usage_mask,
                        const char *name, size_t name_len, uint32_t protect)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_CREATE, NULL, 0);
    km__ttlv_put_enum(e, T(OBJECT_TYPE), KM__KMIP_OBJ_SYMMETRIC_KEY);
    if (major >= 2) {
        km__ttlv_begin(e, T(ATTRIBUTES));
        km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_AES);
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_LENGTH), 256);
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_USAGE_MASK), (int32_t)usage_mask);
        km__ttlv_begin(e, T(NAME));
        km__ttlv_put_text(e, T(NAME_VALUE), name, name_len);
        km__ttlv_put_enum(e, T(NAME_TYPE), KM__KMIP_NAME_TEXT);
        km__ttlv_end(e);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
    } else {
        km__ttlv_begin(e, T(TEMPLATE_ATTRIBUTE));
        attr_name(e, "Cryptographic Algorithm");
        km__ttlv_put_enum(e, T(ATTRIBUTE_VALUE), KM__KMIP_ALG_AES);
        km__ttlv_end(e);
        attr_name(e, "Cryptographic Length");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), 256);
        km__ttlv_end(e);
        attr_name(e, "Cryptographic Usage Mask");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), (int32_t)usage_mask);
        km__ttlv_end(e);
        attr_name(e, "Name");
        km__ttlv_begin(e, T(ATTRIBUTE_VALUE));
        km__ttlv_put_text(e, T(NAME_VALUE), name, name_len);
        km__ttlv_put_enum(e, T(NAME_TYPE), KM__KMIP_NAME_TEXT);
        km__ttlv_end(e);
        km__ttlv_end(e);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
    }
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_create_key_pair(km__ttlv_enc *e, int major, int minor, uint32_t bits,
                                 const char *name, size_t name_len, uint32_t protect)
{
    char pub[80];
    size_t pub_len = name_len < 64 ? name_len : 64;

    memcpy(pub, name, pub_len);
    memcpy(pub + pub_len, "-public", 7);
    pub_len += 7;
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_CREATE_KEY_PAIR, NULL, 0);
    if (major >= 2) {
        km__ttlv_begin(e, T(COMMON_ATTRIBUTES));
        km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_RSA);
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_LENGTH), (int32_t)bits);
        km__ttlv_end(e);
        km__ttlv_begin(e, T(PRIVATE_KEY_ATTRIBUTES));
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_USAGE_MASK), KM__KMIP_USAGE_SIGN);
        name_struct(e, T(NAME), name, name_len);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
        km__ttlv_begin(e, T(PUBLIC_KEY_ATTRIBUTES));
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_USAGE_MASK), KM__KMIP_USAGE_VERIFY);
        name_struct(e, T(NAME), pub, pub_len);
        km__ttlv_end(e);
    } else {
        km__ttlv_begin(e, T(COMMON_TEMPLATE_ATTRIBUTE));
        attr_name(e, "Cryptographic Algorithm");
        km__ttlv_put_enum(e, T(ATTRIBUTE_VALUE), KM__KMIP_ALG_RSA);
        km__ttlv_end(e);
        attr_name(e, "Cryptographic Length");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), (int32_t)bits);
        km__ttlv_end(e);
        km__ttlv_end(e);
        km__ttlv_begin(e, T(PRIVATE_KEY_TEMPLATE_ATTRIBUTE));
        attr_name(e, "Cryptographic Usage Mask");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), KM__KMIP_USAGE_SIGN);
        km__ttlv_end(e);
        attr_name(e, "Name");
        name_struct(e, T(ATTRIBUTE_VALUE), name, name_len);
        km__ttlv_end(e);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
        km__ttlv_begin(e, T(PUBLIC_KEY_TEMPLATE_ATTRIBUTE));
        attr_name(e, "Cryptographic Usage Mask");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), KM__KMIP_USAGE_VERIFY);
        km__ttlv_end(e);
        attr_name(e, "Name");
        name_struct(e, T(ATTRIBUTE_VALUE), pub, pub_len);
        km__ttlv_end(e);
        km__ttlv_end(e);
    }
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_sign(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len,
                      const uint8_t *data, size_t data_len, int pss_fields)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_SIGN, NULL, 0);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__ttlv_begin(e, T(CRYPTOGRAPHIC_PARAMETERS));
    km__ttlv_put_enum(e, T(PADDING_METHOD),
                      pss_fields == KM__KMIP_SIGN_PKCS1 ? KM__KMIP_PAD_PKCS1_V15 : KM__KMIP_PAD_PSS);
    km__ttlv_put_enum(e, T(HASHING_ALGORITHM), KM__KMIP_HASH_SHA256);
    km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_RSA);
    if (pss_fields == KM__KMIP_SIGN_PSS_FIELDS) {
        km__ttlv_put_int(e, T(SALT_LENGTH), 32);
        km__ttlv_put_enum(e, T(MASK_GENERATOR), KM__KMIP_MGF1);
        km__ttlv_put_enum(e, T(MASK_GENERATOR_HASHING_ALGORITHM), KM__KMIP_HASH_SHA256);
    }
    km__ttlv_end(e);
    km__ttlv_put_bytes(e, T(DATA), data, data_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_activate(km__ttlv_enc *e, int major, int minor, const char *uid,
                          size_t uid_len)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_ACTIVATE, NULL, 0);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_register(km__ttlv_enc *e, int major, int minor, uint32_t alg,
                          uint32_t usage_mask, const char *name, size_t name_len,
                          const uint8_t *material, size_t material_len, uint32_t protect)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_REGISTER, NULL, 0);
    km__ttlv_put_enum(e, T(OBJECT_TYPE), KM__KMIP_OBJ_SYMMETRIC_KEY);
    if (major >= 2) {
        km__ttlv_begin(e, T(ATTRIBUTES));
        km__ttlv_put_int(e, T(CRYPTOGRAPHIC_USAGE_MASK), (int32_t)usage_mask);
        name_struct(e, T(NAME), name, name_len);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
    } else {
        km__ttlv_begin(e, T(TEMPLATE_ATTRIBUTE));
        attr_name(e, "Cryptographic Usage Mask");
        km__ttlv_put_int(e, T(ATTRIBUTE_VALUE), (int32_t)usage_mask);
        km__ttlv_end(e);
        attr_name(e, "Name");
        name_struct(e, T(ATTRIBUTE_VALUE), name, name_len);
        km__ttlv_end(e);
        protect_attrs(e, major, protect);
        km__ttlv_end(e);
    }
    km__ttlv_begin(e, T(SYMMETRIC_KEY));
    km__ttlv_begin(e, T(KEY_BLOCK));
    km__ttlv_put_enum(e, T(KEY_FORMAT_TYPE), KM__KMIP_FORMAT_RAW);
    km__ttlv_begin(e, T(KEY_VALUE));
    km__ttlv_put_bytes(e, T(KEY_MATERIAL), material, material_len);
    km__ttlv_end(e);
    km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), alg);
    if (material_len > 0x0fffffff && e->err == KM_OK)
        e->err = KM_E_INVALID;
    km__ttlv_put_int(e, T(CRYPTOGRAPHIC_LENGTH), (int32_t)(material_len * 8));
    km__ttlv_end(e);
    km__ttlv_end(e);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_mac(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len,
                     const uint8_t *data, size_t data_len)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_MAC, NULL, 0);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__ttlv_begin(e, T(CRYPTOGRAPHIC_PARAMETERS));
    km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_HMAC_SHA256);
    km__ttlv_end(e);
    km__ttlv_put_bytes(e, T(DATA), data, data_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

static void gcm_params(km__ttlv_enc *e)
{
    km__ttlv_begin(e, T(CRYPTOGRAPHIC_PARAMETERS));
    km__ttlv_put_enum(e, T(BLOCK_CIPHER_MODE), KM__KMIP_MODE_GCM);
    km__ttlv_put_enum(e, T(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_AES);
    km__ttlv_put_int(e, T(TAG_LENGTH), 16);
    km__ttlv_end(e);
}

static int cipher(km__ttlv_enc *e, int major, int minor, uint32_t op, const char *uid,
                  size_t uid_len, const uint8_t *data, size_t data_len, const uint8_t *iv,
                  size_t iv_len, const uint8_t *aad1, size_t aad1_len, const uint8_t *aad2,
                  size_t aad2_len, const uint8_t *tag, size_t tag_len)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, op, NULL, 0);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    gcm_params(e);
    km__ttlv_put_bytes(e, T(DATA), data, data_len);
    km__ttlv_put_bytes(e, T(IV_COUNTER_NONCE), iv, iv_len);
    km__ttlv_put_bytes2(e, T(AE_ADDITIONAL_DATA), aad1, aad1_len, aad2, aad2_len);
    if (tag != NULL)
        km__ttlv_put_bytes(e, T(AE_TAG), tag, tag_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_encrypt(km__ttlv_enc *e, int major, int minor, const char *uid,
                         size_t uid_len, const uint8_t *data, size_t data_len,
                         const uint8_t *iv, size_t iv_len, const uint8_t *aad1, size_t aad1_len,
                         const uint8_t *aad2, size_t aad2_len)
{
    return cipher(e, major, minor, KM__KMIP_OP_ENCRYPT, uid, uid_len, data, data_len, iv,
                  iv_len, aad1, aad1_len, aad2, aad2_len, NULL, 0);
}

int km__kmip_msg_decrypt(km__ttlv_enc *e, int major, int minor, const char *uid,
                         size_t uid_len, const uint8_t *data, size_t data_len,
                         const uint8_t *iv, size_t iv_len, const uint8_t *aad1, size_t aad1_len,
                         const uint8_t *aad2, size_t aad2_len, const uint8_t *tag,
                         size_t tag_len)
{
    if (tag == NULL && e->err == KM_OK)
        e->err = KM_E_INVALID;
    return cipher(e, major, minor, KM__KMIP_OP_DECRYPT, uid, uid_len, data, data_len, iv,
                  iv_len, aad1, aad1_len, aad2, aad2_len, tag, tag_len);
}

int km__kmip_msg_revoke_destroy(km__ttlv_enc *e, int major, int minor, const char *uid,
                                size_t uid_len)
{
    static const uint8_t id1[1] = { 1 }, id2[1] = { 2 };

    /* batch items carry ids: PyKMIP refuses a batch without them */
    km__kmip_req_begin(e, major, minor, 2);
    km__kmip_item_begin(e, KM__KMIP_OP_REVOKE, id1, 1);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__ttlv_begin(e, T(REVOCATION_REASON));
    km__ttlv_put_enum(e, T(REVOCATION_REASON_CODE), KM__KMIP_REVOKE_CESSATION);
    km__ttlv_end(e);
    km__kmip_item_end(e);
    km__kmip_item_begin(e, KM__KMIP_OP_DESTROY, id2, 1);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

int km__kmip_msg_get(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len)
{
    km__kmip_req_begin(e, major, minor, 1);
    km__kmip_item_begin(e, KM__KMIP_OP_GET, NULL, 0);
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, uid_len);
    km__kmip_item_end(e);
    return km__kmip_req_end(e);
}

static const char *reason_name(uint32_t reason)
{
    switch (reason) {
    case KM__KMIP_REASON_ITEM_NOT_FOUND: return "Item Not Found";
    case KM__KMIP_REASON_RESPONSE_TOO_LARGE: return "Response Too Large";
    case KM__KMIP_REASON_AUTH_NOT_SUCCESSFUL: return "Authentication Not Successful";
    case KM__KMIP_REASON_INVALID_MESSAGE: return "Invalid Message";
    case KM__KMIP_REASON_OPERATION_NOT_SUPPORTED: return "Operation Not Supported";
    case KM__KMIP_REASON_MISSING_DATA: return "Missing Data";
    case KM__KMIP_REASON_INVALID_FIELD: return "Invalid Field";
    case KM__KMIP_REASON_FEATURE_NOT_SUPPORTED: return "Feature Not Supported";
    case KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE: return "Cryptographic Failure";
    case KM__KMIP_REASON_ILLEGAL_OPERATION: return "Illegal Operation";
    case KM__KMIP_REASON_PERMISSION_DENIED: return "Permission Denied";
    case KM__KMIP_REASON_GENERAL_FAILURE: return "General Failure";
    default: return "a result reason";
    }
}

int km__kmip_result_err(const km__kmip_result *r, uint32_t want_op, const char *what)
{
    char msg[121];
    size_t i, n = 0;
    int code;

    if (r->status == KM__KMIP_STATUS_SUCCESS) {
        if (want_op != 0 && r->operation != 0 && r->operation != want_op)
            return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                    "kmip %s: the response is for another operation", what);
        return KM_OK;
    }
    /* the server's own words, printable ASCII only */
    for (i = 0; r->message != NULL && i < r->message_len && n + 1 < sizeof msg; i++) {
        unsigned char ch = (unsigned char)r->message[i];
        msg[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    msg[n] = '\0';
    switch (r->reason) {
    case KM__KMIP_REASON_ITEM_NOT_FOUND:
        code = KM_E_NOTFOUND;
        break;
    case KM__KMIP_REASON_PERMISSION_DENIED:
    case KM__KMIP_REASON_AUTH_NOT_SUCCESSFUL:
        code = KM_E_DENIED;
        break;
    case KM__KMIP_REASON_OPERATION_NOT_SUPPORTED:
    case KM__KMIP_REASON_FEATURE_NOT_SUPPORTED:
        code = KM_E_UNSUPPORTED;
        break;
    case KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE:
    case KM__KMIP_REASON_GENERAL_FAILURE:
        code = r->operation == KM__KMIP_OP_DECRYPT || want_op == KM__KMIP_OP_DECRYPT
                   ? KM_E_INTEGRITY
                   : KM_E_BACKEND;
        break;
    default:
        code = KM_E_BACKEND;
    }
    if (r->status != KM__KMIP_STATUS_FAILED)
        code = KM_E_BACKEND; /* pending or undone: libkm never asks for either */
    return km_backend_error(code, KM_NATIVE_KMIP, r->reason,
                            "kmip %s: the server answered %s (0x%x)%s%s", what,
                            reason_name(r->reason), (unsigned)r->reason, n ? ": " : "", msg);
}
