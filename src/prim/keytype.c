/*
 * keytype.c - the key-type table (keytype.h): one row per km_key_type.
 * Pure data and pure functions: no OpenSSL, no I/O, no state.
 */
#include "keytype.h"

#include <string.h>

#define U_AEAD (KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT)
#define U_WRAP (KM_USAGE_WRAP | KM_USAGE_UNWRAP)
#define U_MAC (KM_USAGE_MAC | KM_USAGE_MAC_VERIFY | KM_USAGE_DERIVE)
#define U_CMAC (KM_USAGE_MAC | KM_USAGE_MAC_VERIFY)
#define U_SIGN (KM_USAGE_SIGN | KM_USAGE_VERIFY)
/* agree-raw may be asked for at creation; never in a default usage */
#define U_AGREE (KM_USAGE_AGREE | KM_USAGE_AGREE_RAW)

#define SD KM__PCLASS_SYMMETRIC_DATA
#define SW KM__PCLASS_SYMMETRIC_WRAPPING
#define HM KM__PCLASS_HMAC
#define SG KM__PCLASS_SIGNATURE_PRIVATE
#define KA KM__PCLASS_KEY_AGREEMENT

#define P11 KM__KT_PKCS11
#define CARD KM__KT_PKCS11_CARD
#define TPM KM__KT_TPM2

/* A symmetric row: AES (cipher) or HMAC (digest). */
#define SYM(t, n, fam, len, ciph, dig, u, cls, str, be)                                        \
    [t] = { .id = t, .name = n, .family = fam, .bits = 8 * (len), .key_len = len,              \
            .cipher = ciph, .md = dig, .usages = u, .default_usage = u, .pclass = cls,          \
            .strength = str, .fips = 1, .hdr_alg = t, .backends = be }
/* An AES-SIV row: deterministic encryption, not FIPS approved, software only. */
#define SIV(t, n, len, ciph, str)                                                                \
    [t] = { .id = t, .name = n, .family = KM__FAM_AES_SIV, .bits = 8 * (len), .key_len = len,  \
            .cipher = ciph, .usages = U_AEAD, .default_usage = U_AEAD, .pclass = SD,            \
            .strength = str, .fips = 0, .hdr_alg = t, .backends = 0 }
/* An asymmetric row. */
#define ASYM(t, n, fam, b, fld, grp, dig, u, cls, str, fip, hdr, be)                            \
    [t] = { .id = t, .name = n, .family = fam, .bits = b, .field = fld, .group = grp,           \
            .md = dig, .usages = u, .default_usage = (u) & ~KM_USAGE_AGREE_RAW, .pclass = cls,   \
            .strength = str,                                                                     \
            .fips = fip, .hdr_alg = hdr, .backends = be }

const km__keytype km__keytypes[KM__KEYTYPE_MAX + 1] = {
    SYM(KM_KEY_AES_128_GCM, "aes-128-gcm", KM__FAM_AES_GCM, 16, "AES-128-GCM", NULL, U_AEAD, SD,
        128, TPM),
    SYM(KM_KEY_AES_192_GCM, "aes-192-gcm", KM__FAM_AES_GCM, 24, "AES-192-GCM", NULL, U_AEAD, SD,
        192, TPM),
    SYM(KM_KEY_AES_256_GCM, "aes-256-gcm", KM__FAM_AES_GCM, 32, "AES-256-GCM", NULL, U_AEAD, SD,
        256, P11 | TPM),
    SYM(KM_KEY_AES_256_KWP, "aes-256-kwp", KM__FAM_AES_KWP, 32, "AES-256-WRAP-PAD", NULL, U_WRAP,
        SW, 256, TPM),
    /* HMAC: the generated key is as long as the digest; strength up to 256 */
    SYM(KM_KEY_HMAC_SHA256, "hmac-sha256", KM__FAM_HMAC, 32, NULL, "SHA256", U_MAC, HM, 256,
        P11 | TPM),
    SYM(KM_KEY_HMAC_SHA384, "hmac-sha384", KM__FAM_HMAC, 48, NULL, "SHA384", U_MAC, HM, 256, P11),
    SYM(KM_KEY_HMAC_SHA512, "hmac-sha512", KM__FAM_HMAC, 64, NULL, "SHA512", U_MAC, HM, 256, P11),
    ASYM(KM_KEY_EC_P256, "ec-p256", KM__FAM_ECDSA, 256, 32, "P-256", "SHA256", U_SIGN | U_AGREE,
         SG, 128, 1, KM_KEY_EC_P256, P11 | CARD | TPM),
    ASYM(KM_KEY_EC_P384, "ec-p384", KM__FAM_ECDSA, 384, 48, "P-384", "SHA384", U_SIGN | U_AGREE,
         SG, 192, 1, KM_KEY_EC_P384, P11 | CARD),
    ASYM(KM_KEY_EC_P521, "ec-p521", KM__FAM_ECDSA, 521, 66, "P-521", "SHA512", U_SIGN | U_AGREE,
         SG, 256, 1, KM_KEY_EC_P521, 0),
    ASYM(KM_KEY_ED25519, "ed25519", KM__FAM_EDDSA, 256, 0, NULL, NULL, U_SIGN, SG, 128, 1,
         KM_KEY_ED25519, 0),
    /* X25519 is not in SP 800-56A rev. 3 */
    ASYM(KM_KEY_X25519, "x25519", KM__FAM_X25519, 256, 0, NULL, NULL, U_AGREE, KA, 128, 0, 0, 0),
    ASYM(KM_KEY_RSA_2048, "rsa-2048", KM__FAM_RSA, 2048, 0, NULL, "SHA256", U_SIGN | U_WRAP, SG,
         112, 1, KM_KEY_RSA_2048, P11 | CARD | TPM),
    ASYM(KM_KEY_RSA_3072, "rsa-3072", KM__FAM_RSA, 3072, 0, NULL, "SHA256", U_SIGN | U_WRAP, SG,
         128, 1, KM_KEY_RSA_3072, P11 | CARD),
    ASYM(KM_KEY_RSA_4096, "rsa-4096", KM__FAM_RSA, 4096, 0, NULL, "SHA256", U_SIGN | U_WRAP, SG,
         128, 1, KM_KEY_RSA_4096, 0),
    /* RFC 7919 safe-prime groups, approved by SP 800-56A rev. 3 */
    ASYM(KM_KEY_FFDHE2048, "ffdhe2048", KM__FAM_FFDHE, 2048, 0, "ffdhe2048", NULL, U_AGREE, KA,
         112, 1, 0, 0),
    ASYM(KM_KEY_FFDHE3072, "ffdhe3072", KM__FAM_FFDHE, 3072, 0, "ffdhe3072", NULL, U_AGREE, KA,
         128, 1, 0, 0),
    ASYM(KM_KEY_FFDHE4096, "ffdhe4096", KM__FAM_FFDHE, 4096, 0, "ffdhe4096", NULL, U_AGREE, KA,
         152, 1, 0, 0),
    /* AES-CMAC (SP 800-38B): a symmetric authentication key, 16-byte tags */
    SYM(KM_KEY_AES_128_CMAC, "aes-128-cmac", KM__FAM_CMAC, 16, "AES-128-CBC", NULL, U_CMAC, HM,
        128, 0),
    SYM(KM_KEY_AES_192_CMAC, "aes-192-cmac", KM__FAM_CMAC, 24, "AES-192-CBC", NULL, U_CMAC, HM,
        192, 0),
    SYM(KM_KEY_AES_256_CMAC, "aes-256-cmac", KM__FAM_CMAC, 32, "AES-256-CBC", NULL, U_CMAC, HM,
        256, 0),
    /* AES-SIV (RFC 5297): two AES keys (S2V's and CTR's), so twice the AES size; not in
     * FIPS 140-3 (no SP 800-38 mode) */
    SIV(KM_KEY_AES_128_SIV, "aes-128-siv", 32, "AES-128-SIV", 128),
    SIV(KM_KEY_AES_192_SIV, "aes-192-siv", 48, "AES-192-SIV", 192),
    SIV(KM_KEY_AES_256_SIV, "aes-256-siv", 64, "AES-256-SIV", 256),
};

const km__keytype *km__keytype_by_name(const char *name)
{
    int t;
    if (name == NULL)
        return NULL;
    for (t = 1; t <= KM__KEYTYPE_MAX; t++)
        if (km__keytypes[t].name != NULL && strcmp(km__keytypes[t].name, name) == 0)
            return &km__keytypes[t];
    return NULL;
}

const km__keytype *km__keytype_next(const km__keytype *prev)
{
    int t = prev == NULL ? 1 : (int)prev->id + 1;
    for (; t <= KM__KEYTYPE_MAX; t++)
        if (km__keytypes[t].name != NULL)
            return &km__keytypes[t];
    return NULL;
}

int km__type_is_valid(int type)
{
    return km__keytype_get(type) != NULL;
}

const char *km__type_name(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL ? kt->name : NULL;
}

int km__type_is_symmetric(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL && kt->key_len != 0;
}

size_t km__type_key_len(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL ? kt->key_len : 0;
}

size_t km__type_mac_len(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    if (kt == NULL)
        return 0;
    return kt->family == KM__FAM_HMAC ? kt->key_len : kt->family == KM__FAM_CMAC ? 16 : 0;
}

uint32_t km__type_usage(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL ? kt->default_usage : 0;
}

uint32_t km__type_usage_allowed(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL ? kt->usages : 0;
}

int km__type_on_backend(km_key_type type, uint32_t backend)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL && (kt->backends & backend) != 0;
}

const char *km__keytype_names(char *buf, size_t cap, uint32_t backend)
{
    const km__keytype *kt;
    size_t n = 0;

    buf[0] = '\0';
    for (kt = km__keytype_next(NULL); kt != NULL; kt = km__keytype_next(kt)) {
        size_t l = strlen(kt->name);
        if (!(kt->backends & backend))
            continue;
        if (n > 0 && n + 2 < cap) {
            memcpy(buf + n, ", ", 2);
            n += 2;
        }
        if (n + l >= cap)
            l = cap - 1 - n;
        memcpy(buf + n, kt->name, l);
        n += l;
        buf[n] = '\0';
    }
    return buf;
}
