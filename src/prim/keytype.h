/*
 * keytype.h - the key-type table: everything libkm knows about a key type
 * that is not an OpenSSL call (primitives layer; pure data and pure
 * functions, so the rules may read it too).
 *
 * One row per km_key_type (include/km/key.h): its name, family, sizes,
 * usages, policy class and security strength, FIPS 140-3 status, the
 * algorithm id it writes in headers, and which device backends can hold it.
 * Adding a type is one row here plus its primitive (docs/ARCHITECTURE.md,
 * "A new key type"). The rows are indexed by id: ids are 1..KM__KEYTYPE_MAX
 * without gaps.
 */
#ifndef KM_KEYTYPE_H
#define KM_KEYTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "km.h"

/* The highest km_key_type value. */
#define KM__KEYTYPE_MAX 24 /* KM_KEY_AES_256_SIV */

/* The algorithm family of a type: what its keys do and how. */
typedef enum km__family {
    KM__FAM_NONE = 0,
    KM__FAM_AES_GCM,   /* AES-GCM data encryption */
    KM__FAM_AES_KWP,   /* AES key wrap with padding (RFC 5649) */
    KM__FAM_HMAC,      /* HMAC, and HKDF derivation from it */
    KM__FAM_ECDSA,     /* NIST curve: ECDSA and ECDH */
    KM__FAM_EDDSA,     /* Ed25519 */
    KM__FAM_X25519,    /* X25519 key agreement */
    KM__FAM_RSA,       /* RSA-PSS / PKCS#1 v1.5 signatures, RSA-OAEP wrap */
    KM__FAM_FFDHE,     /* RFC 7919 finite-field Diffie-Hellman */
    KM__FAM_CMAC,      /* AES-CMAC (NIST SP 800-38B) */
    KM__FAM_AES_SIV    /* AES-SIV deterministic encryption (RFC 5297) */
} km__family;

/* Key classes of SP 800-57 Part 1 rev. 5 Table 1 that the key types map to
 * (the policy's cryptoperiod classes, src/rules/policy.c). */
typedef enum km__pclass {
    KM__PCLASS_SYMMETRIC_DATA = 0,     /* aes-*-gcm, aes-*-siv */
    KM__PCLASS_SYMMETRIC_WRAPPING = 1, /* aes-256-kwp */
    KM__PCLASS_HMAC = 2,               /* hmac-*, aes-*-cmac (symmetric authentication key) */
    KM__PCLASS_SIGNATURE_PRIVATE = 3,  /* ec-p*, ed25519, rsa-* */
    KM__PCLASS_KEY_AGREEMENT = 4,      /* x25519, ffdhe* */
    KM__PCLASS__COUNT = 5
} km__pclass;

/* Device backends that can hold a type (the software backend holds every
 * type). */
#define KM__KT_PKCS11      0x1u /* backends/pkcs11/pkcs11.c: generated on the token */
#define KM__KT_PKCS11_CARD 0x2u /* backends/pkcs11/p11_card.c: a card's certificate key */
#define KM__KT_TPM2        0x4u /* backends/tpm2/tpm2.c */

typedef struct km__keytype {
    km_key_type id;        /* the km_key_type value (also the header algorithm id) */
    const char *name;      /* canonical name, as km_key_type_name() */
    km__family family;
    uint32_t bits;         /* size: AES/HMAC key bits, EC field bits (P-521: 521),
                              Ed25519/X25519 256, RSA modulus bits, FFDHE group bits */
    size_t key_len;        /* symmetric: raw key bytes (HMAC: generated length, the
                              digest length, which is also the tag length); else 0 */
    size_t field;          /* ECDSA: bytes of r and of s in IEEE P1363 form; else 0 */
    const char *cipher;    /* AES: the cipher ("AES-256-GCM", "AES-256-WRAP-PAD",
                              "AES-256-SIV"; CMAC: the block cipher, "AES-256-CBC") */
    const char *group;     /* ECDSA: the curve ("P-256"); FFDHE: the group ("ffdhe2048") */
    const char *md;        /* the digest of signatures, or of the HMAC ("SHA256") */
    uint32_t usages;       /* KM_USAGE_* bits a key of the type may have */
    uint32_t default_usage;/* the usage of a key created with usage 0 */
    km__pclass pclass;     /* its policy class */
    uint32_t strength;     /* security strength in bits (SP 800-57 Part 1 rev. 5 Table 2;
                              RSA-4096 counts as 128) */
    unsigned fips : 1;     /* approved by FIPS 140-3 (FIPS 186-5, SP 800-38D/38F,
                              FIPS 198-1, SP 800-56A rev. 3; not X25519) */
    uint8_t hdr_alg;       /* the algorithm id written in ciphertext, wrapped-key and
                              signature or tag headers (the id); 0: agreement-only
                              types write no header */
    uint32_t backends;     /* KM__KT_* device backends that can hold it */
} km__keytype;

/* The table, indexed by id (row 0 and gaps have a NULL name); read it
 * through the functions below. */
extern const km__keytype km__keytypes[KM__KEYTYPE_MAX + 1];

/* The row of a type; NULL for a value that is no type. Pure (inline: the
 * data path asks it on every call). */
static inline const km__keytype *km__keytype_get(int type)
{
    if (type < 1 || type > KM__KEYTYPE_MAX || km__keytypes[type].name == NULL)
        return NULL;
    return &km__keytypes[type];
}

/* The row of a canonical name ("aes-256-gcm"; exact, case-sensitive); NULL
 * for NULL or an unknown name. Pure. */
const km__keytype *km__keytype_by_name(const char *name);

/* Iteration: the row after `prev` (NULL: the first), NULL after the last.
 *   for (kt = km__keytype_next(NULL); kt; kt = km__keytype_next(kt)) ... */
const km__keytype *km__keytype_next(const km__keytype *prev);

/* 1 when `type` is a key type. Pure. */
int km__type_is_valid(int type);
/* The canonical name of a type ("aes-256-gcm"), NULL for a non-type: what
 * km_key_type_name() returns. Pure. */
const char *km__type_name(km_key_type type);
/* 1 for AES and HMAC types (raw key bytes), 0 otherwise. Pure. */
int km__type_is_symmetric(km_key_type type);
/* The raw key length of a symmetric type (HMAC: the generated length); 0 for
 * others and non-types. Pure. */
size_t km__type_key_len(km_key_type type);
/* The length of a MAC type's full tag: the digest length for HMAC, 16 for
 * AES-CMAC; 0 for other types. Pure. */
size_t km__type_mac_len(km_key_type type);
/* The usage bits a key of the type gets by default (usage 0; 0 for a
 * non-type). Pure. */
uint32_t km__type_usage(km_key_type type);
/* Every usage bit a type can have: the default ones and those given only on
 * request (KM_USAGE_AGREE_RAW). Pure. */
uint32_t km__type_usage_allowed(km_key_type type);
/* The family of a type (KM__FAM_NONE for a non-type). Pure. */
static inline km__family km__type_family(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL ? kt->family : KM__FAM_NONE;
}
/* 1 when a device backend (KM__KT_*) can hold the type. Pure. */
int km__type_on_backend(km_key_type type, uint32_t backend);

/* Writes the names of the types a device backend (KM__KT_*) can hold into
 * `buf` ("ec-p256, ec-p384, rsa-2048"), for messages; truncated to fit `cap`
 * (cap > 0), always NUL-terminated. Returns buf. Pure. */
const char *km__keytype_names(char *buf, size_t cap, uint32_t backend);

#endif /* KM_KEYTYPE_H */
