/*
 * check_tamper.c - tamper, binding and key confusion through the public API (docs/RELIABILITY.md B):
 * edited ciphertext headers, every bit flip and truncation of a real ciphertext (binary and
 * km1: text), aad binding, key confusion, rotation, wrong passphrase, vault records moved
 * under another LMDB key, secrets at rest, signatures across keys.
 *
 * Inputs handed to libkm sit right before a PROT_NONE page and outputs right before another,
 * so any read or write past a buffer crashes the test instead of passing silently.
 * A failed decrypt must leave the output all zero (it is filled with 0xAA before the call).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <km.h>
#include <lmdb.h>

#include "testraw.h"
#include "testutil.h"

#define PT_LEN 64
#define CT_LEN (PT_LEN + KM_CIPHERTEXT_OVERHEAD)

TU_VAULT_FIXTURE

/* ------------------------------------------------------------ guarded buffers */

typedef tu_guard guard;    /* testutil.h */

/* ------------------------------------------------------------------ helpers */

static const uint8_t *sample_pt(void)
{
    static uint8_t pt[PT_LEN];
    size_t i;
    for (i = 0; i < PT_LEN; i++)
        pt[i] = (uint8_t)('a' + i % 26);
    return pt;
}

static km_key *make_key(const char *name, km_key_type type)
{
    km_key *k = NULL;
    OK(km_key_create(&k, ctx, name, type, NULL));
    ck_assert_ptr_nonnull(k);
    return k;
}

/* Encrypts the 64-byte sample into ct[CT_LEN]. */
static void encrypt_sample(km_key *k, const uint8_t *aad, size_t aad_len, uint8_t ct[CT_LEN])
{
    size_t n = 0;
    OK(km_encrypt(k, sample_pt(), PT_LEN, aad, aad_len, ct, CT_LEN, &n));
    ck_assert_uint_eq(n, CT_LEN);
}

static int clean_refusal(int rc)
{
    return rc == KM_E_INVALID || rc == KM_E_UNSUPPORTED || rc == KM_E_NOTFOUND
           || rc == KM_E_INTEGRITY;
}

/*
 * Decrypts `ct` (copied against a guard page) with km_decrypt (key NULL) or km_decrypt_key,
 * into a guarded output of `out_cap` bytes filled with 0xAA. Asserts a refusal: not KM_OK,
 * one of the documented codes, *out_len 0, the first min(out_cap, ct_len) bytes zero.
 * Returns the code.
 */
static int decrypt_refused(km_ctx *c, km_key *key, const uint8_t *ct, size_t ct_len,
                           const uint8_t *aad, size_t aad_len, size_t out_cap, const char *what)
{
    guard in, out;
    size_t n = 777, z = out_cap < ct_len ? out_cap : ct_len;
    int rc;

    tu_guard_copy(&in, ct, ct_len);
    tu_guard_new(&out, out_cap);
    memset(out.p, 0xAA, out_cap);
    if (key == NULL)
        rc = km_decrypt(c, 0, in.p, ct_len, aad, aad_len, out.p, out_cap, &n);
    else
        rc = km_decrypt_key(key, 0, in.p, ct_len, aad, aad_len, out.p, out_cap, &n);
    ck_assert_msg(rc != KM_OK, "%s: a tampered ciphertext DECRYPTED", what);
    ck_assert_msg(clean_refusal(rc), "%s: refused with %s (%s), not a documented code", what,
                  km_err_name(rc), km_error_last()->message);
    ck_assert_msg(n == 0, "%s: out_len %zu after a refusal", what, n);
    ck_assert_msg(tu_all_zero(out.p, z), "%s: output not zeroed after %s", what,
                  km_err_name(rc));
    tu_guard_free(&in);
    tu_guard_free(&out);
    return rc;
}

/* The positive control: the ciphertext decrypts to the sample. */
static void decrypt_ok(km_ctx *c, km_key *key, const uint8_t *ct, size_t ct_len,
                       const uint8_t *aad, size_t aad_len)
{
    guard in, out;
    size_t n = 0;
    tu_guard_copy(&in, ct, ct_len);
    tu_guard_new(&out, PT_LEN);
    if (key == NULL)
        OK(km_decrypt(c, 0, in.p, ct_len, aad, aad_len, out.p, PT_LEN, &n));
    else
        OK(km_decrypt_key(key, 0, in.p, ct_len, aad, aad_len, out.p, PT_LEN, &n));
    ck_assert_uint_eq(n, PT_LEN);
    ck_assert_int_eq(memcmp(out.p, sample_pt(), PT_LEN), 0);
    tu_guard_free(&in);
    tu_guard_free(&out);
}

/* Edits one header byte of a copy and asserts the exact refusal code on both entry points. */
static void header_edit(km_key *k, const uint8_t ct[CT_LEN], size_t off, uint8_t val, int want,
                        int want_key, const char *what)
{
    uint8_t t[CT_LEN];
    char w[160];
    int rc;
    memcpy(t, ct, CT_LEN);
    t[off] = val;
    snprintf(w, sizeof w, "%s (byte %zu = 0x%02x), km_decrypt", what, off, val);
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, w);
    ck_assert_msg(rc == want, "%s: %s, the header doc says %s", w, km_err_name(rc),
                  km_err_name(want));
    snprintf(w, sizeof w, "%s (byte %zu = 0x%02x), km_decrypt_key", what, off, val);
    rc = decrypt_refused(ctx, k, t, CT_LEN, NULL, 0, PT_LEN, w);
    ck_assert_msg(rc == want_key, "%s: %s, the header doc says %s", w, km_err_name(rc),
                  km_err_name(want_key));
}

/* ------------------------------------------------------------ header fields */

START_TEST(test_tamper_header_magic)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    encrypt_sample(a, NULL, 0, ct);
    decrypt_ok(ctx, NULL, ct, CT_LEN, NULL, 0);
    /* not a libkm ciphertext: KM_E_INVALID */
    header_edit(a, ct, 0, 'X', KM_E_INVALID, KM_E_INVALID, "magic[0]");
    header_edit(a, ct, 0, 'k', KM_E_INVALID, KM_E_INVALID, "magic[0]");
    header_edit(a, ct, 1, 'S', KM_E_INVALID, KM_E_INVALID, "magic[1] = signature magic");
    header_edit(a, ct, 1, 'T', KM_E_INVALID, KM_E_INVALID, "magic[1] = MAC magic");
    header_edit(a, ct, 1, 0, KM_E_INVALID, KM_E_INVALID, "magic[1]");
    decrypt_ok(ctx, a, ct, CT_LEN, NULL, 0);
    km_key_free(a);
}
END_TEST

START_TEST(test_tamper_header_format_version)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    encrypt_sample(a, NULL, 0, ct);
    ck_assert_int_eq(ct[2], 1);
    /* a future (or past) format version: KM_E_UNSUPPORTED */
    header_edit(a, ct, 2, 2, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "format version");
    header_edit(a, ct, 2, 0, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "format version");
    header_edit(a, ct, 2, 0xFF, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "format version");
    km_key_free(a);
}
END_TEST

START_TEST(test_tamper_header_algorithm)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    encrypt_sample(a, NULL, 0, ct);
    ck_assert_int_eq(ct[3], KM_KEY_AES_256_GCM);
    /* Another known algorithm: the key's authenticated metadata wins, the header is altered
     * data: KM_E_INTEGRITY (never a downgrade to AES-128 or to another primitive). */
    header_edit(a, ct, 3, KM_KEY_AES_128_GCM, KM_E_INTEGRITY, KM_E_INTEGRITY, "algorithm");
    header_edit(a, ct, 3, KM_KEY_AES_192_GCM, KM_E_INTEGRITY, KM_E_INTEGRITY, "algorithm");
    header_edit(a, ct, 3, KM_KEY_AES_256_KWP, KM_E_INTEGRITY, KM_E_INTEGRITY, "algorithm");
    header_edit(a, ct, 3, KM_KEY_HMAC_SHA256, KM_E_INTEGRITY, KM_E_INTEGRITY, "algorithm");
    header_edit(a, ct, 3, KM_KEY_RSA_4096, KM_E_INTEGRITY, KM_E_INTEGRITY, "algorithm");
    km_key_free(a);
}
END_TEST

START_TEST(test_tamper_header_algorithm_unknown)
{
    /* crypto.h, km_decrypt: "KM_E_UNSUPPORTED (a future format version or unknown algorithm)" */
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    int past = 1; /* the first id past the last key type */
    while (km_key_type_name((km_key_type)past) != NULL)
        past++;
    encrypt_sample(a, NULL, 0, ct);
    header_edit(a, ct, 3, 0, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "unknown algorithm");
    header_edit(a, ct, 3, (uint8_t)past, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "unknown algorithm");
    header_edit(a, ct, 3, 0xFF, KM_E_UNSUPPORTED, KM_E_UNSUPPORTED, "unknown algorithm");
    km_key_free(a);
}
END_TEST

START_TEST(test_tamper_header_key_id)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM),
           *c = make_key("c", KM_KEY_AES_128_GCM);
    uint8_t ct[CT_LEN], t[CT_LEN];
    int rc;
    encrypt_sample(a, NULL, 0, ct);
    ck_assert_int_eq(memcmp(ct + 4, km_key_id(a), 16), 0);
    /* an id not in the vault: KM_E_NOTFOUND (km_decrypt_key: another key's: KM_E_INTEGRITY) */
    header_edit(a, ct, 4, (uint8_t)(ct[4] ^ 0x01), KM_E_NOTFOUND, KM_E_INTEGRITY, "key id");
    header_edit(a, ct, 19, (uint8_t)(ct[19] ^ 0x80), KM_E_NOTFOUND, KM_E_INTEGRITY, "key id");
    /* the id of another key of the same type: found, and the AEAD fails (header bound) */
    memcpy(t, ct, CT_LEN);
    memcpy(t + 4, km_key_id(b), 16);
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "key id of b");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, b, t, CT_LEN, NULL, 0, PT_LEN, "key id of b, km_decrypt_key(b)");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, a, t, CT_LEN, NULL, 0, PT_LEN, "key id of b, km_decrypt_key(a)");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    /* the id of a key of another algorithm */
    memcpy(t + 4, km_key_id(c), 16);
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "key id of c (AES-128)");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    /* both: the id and algorithm of c */
    t[3] = KM_KEY_AES_128_GCM;
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "key id and alg of c");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    decrypt_ok(ctx, NULL, ct, CT_LEN, NULL, 0);
    km_key_free(a);
    km_key_free(b);
    km_key_free(c);
}
END_TEST

START_TEST(test_tamper_header_version)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    encrypt_sample(a, NULL, 0, ct);
    ck_assert_int_eq(ct[20] | ct[21] | ct[22], 0);
    ck_assert_int_eq(ct[23], 1);
    header_edit(a, ct, 23, 2, KM_E_NOTFOUND, KM_E_NOTFOUND, "version 2 (none)");
    header_edit(a, ct, 23, 0, KM_E_INVALID, KM_E_INVALID, "version 0");
    header_edit(a, ct, 20, 0x80, KM_E_NOTFOUND, KM_E_NOTFOUND, "version 2^31 + 1");
    header_edit(a, ct, 20, 0xFF, KM_E_NOTFOUND, KM_E_NOTFOUND, "version 0xff000001");
    {
        uint8_t t[CT_LEN];
        int rc;
        memcpy(t, ct, CT_LEN);
        memset(t + 20, 0xFF, 4);
        rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "version 0xffffffff");
        ck_assert_int_eq(rc, KM_E_NOTFOUND);
    }
    km_key_free(a);
}
END_TEST

/* ------------------------------------------------------- flips and truncation */

/* The refusal codes allowed for a flip at byte `off` of the header / body. */
static int flip_code_ok(size_t off, int rc)
{
    if (off < 2)
        return rc == KM_E_INVALID;                              /* magic */
    if (off == 2)
        return rc == KM_E_UNSUPPORTED;                          /* format version */
    if (off == 3)
        return rc == KM_E_INTEGRITY || rc == KM_E_UNSUPPORTED;  /* algorithm */
    if (off < 20)
        return rc == KM_E_NOTFOUND;                             /* key id */
    if (off < 24)
        return rc == KM_E_NOTFOUND || rc == KM_E_INVALID;       /* version (0 is invalid) */
    return rc == KM_E_INTEGRITY;                                /* nonce, ct, tag */
}

START_TEST(test_tamper_every_bit_flip)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN], t[CT_LEN];
    unsigned counts[4] = { 0, 0, 0, 0 }; /* INVALID, UNSUPPORTED, NOTFOUND, INTEGRITY */
    size_t bit;
    char w[96];

    encrypt_sample(a, (const uint8_t *)"aad", 3, ct);
    decrypt_ok(ctx, NULL, ct, CT_LEN, (const uint8_t *)"aad", 3);
    for (bit = 0; bit < (size_t)CT_LEN * 8; bit++) {
        int rc;
        memcpy(t, ct, CT_LEN);
        t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        snprintf(w, sizeof w, "bit %zu flipped (byte %zu), km_decrypt", bit, bit / 8);
        rc = decrypt_refused(ctx, NULL, t, CT_LEN, (const uint8_t *)"aad", 3, PT_LEN, w);
        ck_assert_msg(flip_code_ok(bit / 8, rc), "%s: unexpected %s", w, km_err_name(rc));
        counts[rc == KM_E_INVALID ? 0 : rc == KM_E_UNSUPPORTED ? 1 : rc == KM_E_NOTFOUND ? 2 : 3]++;
        snprintf(w, sizeof w, "bit %zu flipped (byte %zu), km_decrypt_key", bit, bit / 8);
        rc = decrypt_refused(ctx, a, t, CT_LEN, (const uint8_t *)"aad", 3, PT_LEN, w);
        if (bit / 8 >= 4 && bit / 8 < 20)
            ck_assert_msg(rc == KM_E_INTEGRITY, "%s: %s (another key's id)", w, km_err_name(rc));
        else
            ck_assert_msg(flip_code_ok(bit / 8, rc), "%s: unexpected %s", w, km_err_name(rc));
    }
    printf("tamper: %u/%u single-bit flips refused (INVALID %u, UNSUPPORTED %u, NOTFOUND %u, "
           "INTEGRITY %u), output zeroed every time\n",
           counts[0] + counts[1] + counts[2] + counts[3], CT_LEN * 8, counts[0], counts[1],
           counts[2], counts[3]);
    decrypt_ok(ctx, NULL, ct, CT_LEN, (const uint8_t *)"aad", 3);
    km_key_free(a);
}
END_TEST

START_TEST(test_tamper_every_truncation)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN];
    size_t len;
    char w[96];

    encrypt_sample(a, NULL, 0, ct);
    for (len = 0; len < CT_LEN; len++) {
        int want = len < KM_CIPHERTEXT_OVERHEAD ? KM_E_INVALID : KM_E_INTEGRITY, rc;
        snprintf(w, sizeof w, "truncated to %zu bytes, km_decrypt", len);
        rc = decrypt_refused(ctx, NULL, ct, len, NULL, 0, PT_LEN, w);
        ck_assert_msg(rc == want, "%s: %s, expected %s", w, km_err_name(rc), km_err_name(want));
        snprintf(w, sizeof w, "truncated to %zu bytes, km_decrypt_key", len);
        rc = decrypt_refused(ctx, a, ct, len, NULL, 0, PT_LEN, w);
        ck_assert_msg(rc == want, "%s: %s, expected %s", w, km_err_name(rc), km_err_name(want));
        /* the output sized exactly for what the truncated input claims */
        if (len >= KM_CIPHERTEXT_OVERHEAD) {
            snprintf(w, sizeof w, "truncated to %zu bytes, exact output", len);
            rc = decrypt_refused(ctx, NULL, ct, len, NULL, 0, len - KM_CIPHERTEXT_OVERHEAD, w);
            ck_assert_int_eq(rc, KM_E_INTEGRITY);
        }
    }
    /* one byte too many is altered data too */
    {
        uint8_t longer[CT_LEN + 1];
        int rc;
        memcpy(longer, ct, CT_LEN);
        longer[CT_LEN] = 0;
        rc = decrypt_refused(ctx, NULL, longer, CT_LEN + 1, NULL, 0, PT_LEN + 1, "extended by 1");
        ck_assert_int_eq(rc, KM_E_INTEGRITY);
    }
    printf("tamper: %d/%d truncations refused cleanly (KM_E_INVALID below %d bytes, "
           "KM_E_INTEGRITY above)\n", CT_LEN, CT_LEN, KM_CIPHERTEXT_OVERHEAD);
    decrypt_ok(ctx, NULL, ct, CT_LEN, NULL, 0);
    km_key_free(a);
}
END_TEST

/* Decodes `text` (len chars, no NUL, against a guard page); if it decodes, the result must
 * not decrypt. Returns 1 when the decode refused, 0 when the decrypt refused. */
static int text_refused(const char *text, size_t len, const char *what)
{
    guard in;
    uint8_t bin[CT_LEN + 16];
    size_t n = 999;
    int rc;

    tu_guard_copy(&in, text, len);
    memset(bin, 0xAA, sizeof bin);
    rc = km_text_decode((const char *)in.p, len, bin, sizeof bin, &n);
    tu_guard_free(&in);
    if (rc != KM_OK) {
        ck_assert_msg(rc == KM_E_INVALID, "%s: km_text_decode gave %s, not KM_E_INVALID", what,
                      km_err_name(rc));
        ck_assert_msg(n == 0, "%s: out_len %zu after a refused decode", what, n);
        return 1;
    }
    ck_assert_uint_le(n, sizeof bin);
    (void)decrypt_refused(ctx, NULL, bin, n, NULL, 0, PT_LEN, what);
    return 0;
}

START_TEST(test_tamper_text_form)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct[CT_LEN], bin[CT_LEN];
    char text[256], t[256], w[96];
    size_t tlen = 0, n = 0, len, i;
    unsigned dec_refused = 0, decrypt_refusals = 0, changed = 0;

    encrypt_sample(a, NULL, 0, ct);
    OK(km_text_encode(ct, CT_LEN, text, sizeof text, &tlen));
    ck_assert_uint_eq(tlen, strlen(text));
    ck_assert_int_eq(memcmp(text, "km1:", 4), 0);
    /* positive controls: as is, and with trailing whitespace */
    OK(km_text_decode(text, tlen, bin, sizeof bin, &n));
    ck_assert_uint_eq(n, CT_LEN);
    ck_assert_int_eq(memcmp(bin, ct, CT_LEN), 0);
    decrypt_ok(ctx, NULL, bin, n, NULL, 0);
    memcpy(t, text, tlen);
    memcpy(t + tlen, "\n", 1);
    OK(km_text_decode(t, tlen + 1, bin, sizeof bin, &n));
    ck_assert_uint_eq(n, CT_LEN);

    /* every truncation */
    for (len = 0; len < tlen; len++) {
        snprintf(w, sizeof w, "text truncated to %zu chars", len);
        if (text_refused(text, len, w))
            dec_refused++;
        else
            decrypt_refusals++;
    }
    printf("tamper: %zu/%zu km1: truncations refused (%u by km_text_decode, %u by km_decrypt)\n",
           tlen, tlen, dec_refused, decrypt_refusals);

    /* every character changed: to the next base64url character (decodes, or is refused as
     * non-canonical), and to characters outside the alphabet (refused by the decoder) */
    dec_refused = decrypt_refusals = 0;
    for (i = 0; i < tlen; i++) {
        static const char bad[] = { '=', '+', '/', '.', '~', '\0', (char)0xC3 };
        size_t j;
        const char *p = strchr(alphabet, text[i]);
        memcpy(t, text, tlen);
        if (i < 4)
            t[i] = (char)(text[i] == 'k' ? 'K' : text[i] == 'm' ? 'n' : text[i] == '1' ? '2' : ';');
        else
            t[i] = p != NULL && p[1] != '\0' ? p[1] : alphabet[0];
        snprintf(w, sizeof w, "text char %zu changed '%c' -> '%c'", i, text[i], t[i]);
        if (text_refused(t, tlen, w))
            dec_refused++;
        else
            decrypt_refusals++;
        changed++;
        for (j = 0; j < sizeof bad; j++) {
            memcpy(t, text, tlen);
            t[i] = bad[j];
            snprintf(w, sizeof w, "text char %zu changed to 0x%02x", i, (unsigned char)bad[j]);
            ck_assert_msg(text_refused(t, tlen, w) == 1, "%s: decoded", w);
        }
    }
    printf("tamper: %u/%zu km1: single-character changes refused (%u by km_text_decode, %u by "
           "km_decrypt), plus %zu out-of-alphabet characters refused by the decoder\n",
           dec_refused + decrypt_refusals, (size_t)changed, dec_refused, decrypt_refusals,
           (size_t)changed * 7);
    km_key_free(a);
}
END_TEST

/* ------------------------------------------------------------------- aad */

START_TEST(test_tamper_aad)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    const uint8_t *aad = (const uint8_t *)"tenant=42;table=orders";
    size_t alen = strlen((const char *)aad);
    uint8_t ct[CT_LEN], ct0[CT_LEN];
    int rc;

    encrypt_sample(a, aad, alen, ct);
    decrypt_ok(ctx, NULL, ct, CT_LEN, aad, alen);
    decrypt_ok(ctx, a, ct, CT_LEN, aad, alen);
    rc = decrypt_refused(ctx, NULL, ct, CT_LEN, NULL, 0, PT_LEN, "missing aad");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, NULL, ct, CT_LEN, (const uint8_t *)"tenant=43;table=orders", alen,
                         PT_LEN, "wrong aad");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, NULL, ct, CT_LEN, aad, alen - 1, PT_LEN, "aad one byte short");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, NULL, ct, CT_LEN, (const uint8_t *)"tenant=42;table=orders!",
                         alen + 1, PT_LEN, "aad one byte long");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, a, ct, CT_LEN, (const uint8_t *)"", 0, PT_LEN,
                         "empty aad, km_decrypt_key");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    /* the header and the caller's aad are not interchangeable: the header bytes given as aad
     * of a ciphertext made without aad do not help, and vice versa */
    encrypt_sample(a, NULL, 0, ct0);
    rc = decrypt_refused(ctx, NULL, ct0, CT_LEN, ct0, KM_CIPHERTEXT_HEADER, PT_LEN,
                         "aad given to a ciphertext made without");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    decrypt_ok(ctx, NULL, ct0, CT_LEN, NULL, 0);
    km_key_free(a);
}
END_TEST

/* --------------------------------------------------------- key confusion */

START_TEST(test_tamper_wrong_key)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM),
           *h = make_key("h", KM_KEY_HMAC_SHA256);
    uint8_t ct[CT_LEN];
    int rc;

    encrypt_sample(a, NULL, 0, ct);
    rc = decrypt_refused(ctx, b, ct, CT_LEN, NULL, 0, PT_LEN, "ciphertext of a, key b");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    rc = decrypt_refused(ctx, h, ct, CT_LEN, NULL, 0, PT_LEN, "ciphertext of a, HMAC key");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    /* a larger output buffer is zeroed over min(out_cap, ct_len) */
    rc = decrypt_refused(ctx, b, ct, CT_LEN, NULL, 0, CT_LEN + 32, "ciphertext of a, key b, big out");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    decrypt_ok(ctx, a, ct, CT_LEN, NULL, 0);
    km_key_free(a);
    km_key_free(b);
    km_key_free(h);
}
END_TEST

START_TEST(test_tamper_never_tries_other_keys)
{
    /* A ciphertext of a key that is not in this vault is KM_E_NOTFOUND, even when this vault
     * holds a key of the same name and type: km_decrypt finds keys by id, never by trying. */
    char *dir2 = tu_tmpdir();
    km_ctx *ctx2 = tu_vault(dir2);
    km_key *a = make_key("same-name", KM_KEY_AES_256_GCM), *other = NULL;
    uint8_t ct[CT_LEN];
    int rc;

    OK(km_key_create(&other, ctx2, "same-name", KM_KEY_AES_256_GCM, NULL));
    encrypt_sample(a, NULL, 0, ct);
    rc = decrypt_refused(ctx2, NULL, ct, CT_LEN, NULL, 0, PT_LEN, "other vault");
    ck_assert_int_eq(rc, KM_E_NOTFOUND);
    rc = decrypt_refused(ctx2, other, ct, CT_LEN, NULL, 0, PT_LEN, "other vault, its key");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    decrypt_ok(ctx, NULL, ct, CT_LEN, NULL, 0);
    km_key_free(other);
    km_key_free(a);
    km_close(ctx2);
    tu_rmtree(dir2);
    free(dir2);
}
END_TEST

/* ---------------------------------------------------------------- rotation */

START_TEST(test_tamper_rotation)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    uint8_t ct1[CT_LEN], ct2[CT_LEN], t[CT_LEN];
    uint32_t nv = 0;
    int rc;

    encrypt_sample(a, NULL, 0, ct1);
    ck_assert_uint_eq((uint32_t)ct1[20] << 24 | (uint32_t)ct1[21] << 16 | (uint32_t)ct1[22] << 8
                          | ct1[23], 1);
    OK(km_key_rotate(a, &nv));
    ck_assert_uint_eq(nv, 2);
    encrypt_sample(a, NULL, 0, ct2);
    ck_assert_msg(ct2[20] == 0 && ct2[21] == 0 && ct2[22] == 0 && ct2[23] == 2,
                  "new ciphertexts must carry version 2 in bytes 20..23");
    ck_assert_int_eq(memcmp(ct1 + 4, ct2 + 4, 16), 0);
    decrypt_ok(ctx, NULL, ct1, CT_LEN, NULL, 0);
    decrypt_ok(ctx, NULL, ct2, CT_LEN, NULL, 0);
    decrypt_ok(ctx, a, ct1, CT_LEN, NULL, 0);
    /* a version that does not exist */
    memcpy(t, ct2, CT_LEN);
    t[23] = 3;
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "version 3");
    ck_assert_int_eq(rc, KM_E_NOTFOUND);
    rc = decrypt_refused(ctx, a, t, CT_LEN, NULL, 0, PT_LEN, "version 3, km_decrypt_key");
    ck_assert_int_eq(rc, KM_E_NOTFOUND);
    /* the versions swapped: each exists, but the header is bound */
    memcpy(t, ct2, CT_LEN);
    t[23] = 1;
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "v2 ciphertext labelled v1");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    memcpy(t, ct1, CT_LEN);
    t[23] = 2;
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "v1 ciphertext labelled v2");
    ck_assert_int_eq(rc, KM_E_INTEGRITY);
    /* a fresh handle and a reopened vault see the same */
    km_key_free(a);
    km_close(ctx);
    ck_assert_int_eq(tu_vault_open(&ctx, dir, TU_PASS, 0), KM_OK);
    OK(km_key_open(&a, ctx, "a"));
    encrypt_sample(a, NULL, 0, t);
    ck_assert_int_eq(t[23], 2);
    decrypt_ok(ctx, NULL, ct1, CT_LEN, NULL, 0);
    decrypt_ok(ctx, NULL, ct2, CT_LEN, NULL, 0);
    memcpy(t, ct2, CT_LEN);
    t[23] = 3;
    rc = decrypt_refused(ctx, NULL, t, CT_LEN, NULL, 0, PT_LEN, "version 3 after reopen");
    ck_assert_int_eq(rc, KM_E_NOTFOUND);
    km_key_free(a);
}
END_TEST

/* ------------------------------------------------------------- passphrase */

START_TEST(test_tamper_wrong_passphrase)
{
    /* each attempt costs one scrypt; a few near misses keep the test fast under valgrind */
    static const char *const wrong[] = { "test passphrasE", "test passphras", TU_PASS " " };
    km_key *a = make_key("a", KM_KEY_AES_256_GCM);
    km_ctx *c;
    uint8_t ct[CT_LEN];
    size_t i;

    encrypt_sample(a, NULL, 0, ct);
    km_key_free(a);
    km_close(ctx);
    ctx = NULL;
    for (i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        c = (km_ctx *)&i;
        RC(KM_E_AUTH, tu_vault_open(&c, dir, wrong[i], 0));
        ck_assert_ptr_null(c);
    }
    /* KM_OPEN_CREATE on an existing vault does not replace it */
    c = (km_ctx *)&i;
    RC(KM_E_AUTH, tu_vault_open(&c, dir, "x", KM_OPEN_CREATE));
    ck_assert_ptr_null(c);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    decrypt_ok(ctx, NULL, ct, CT_LEN, NULL, 0);
}
END_TEST

/* ------------------------------------------------------ vault record swaps */

/* Raw access to this test's closed vault (testraw.h). */
static void raw_begin(tu_raw *r)
{
    char vdir[4200];
    snprintf(vdir, sizeof vdir, "%s/vault", dir);
    tu_raw_begin(r, vdir, 0, 0);
}

/* Copies the raw (sealed) value at `from` over the one at `to` in `table`. */
static void raw_copy(tu_raw *r, const char *table, const uint8_t *from, const uint8_t *to,
                     size_t key_len)
{
    size_t n;
    uint8_t *v = tu_raw_get(r, table, from, key_len, &n);
    size_t m;
    uint8_t *old = tu_raw_get(r, table, to, key_len, &m);
    ck_assert_msg(n != m || memcmp(v, old, n) != 0, "the two records are already equal");
    tu_raw_put(r, table, to, key_len, v, n);
    free(v);
    free(old);
}

static void reopen(void)
{
    int rc;
    km_close(ctx);
    ctx = NULL;
    rc = tu_vault_open(&ctx, dir, TU_PASS, 0);
    ck_assert_msg(rc == KM_OK, "reopen: %s (%s)", km_err_name(rc), km_error_last()->message);
}

/* Opening the key by name, then (if that worked) encrypting with it, fails with KM_E_CORRUPT. */
static void assert_key_corrupt(const char *name, const char *what)
{
    km_key *k = NULL;
    uint8_t ct[CT_LEN];
    size_t n = 5;
    int rc = km_key_open(&k, ctx, name);
    if (rc == KM_OK) {
        memset(ct, 0xAA, sizeof ct);
        rc = km_encrypt(k, sample_pt(), PT_LEN, NULL, 0, ct, sizeof ct, &n);
        ck_assert_msg(rc == KM_E_CORRUPT, "%s: km_encrypt(%s) gave %s (%s), not KM_E_CORRUPT",
                      what, name, km_err_name(rc), km_error_last()->message);
        ck_assert_uint_eq(n, 0);
        ck_assert_msg(tu_all_zero(ct, sizeof ct), "%s: failed encrypt left output", what);
        km_key_free(k);
    } else {
        ck_assert_msg(rc == KM_E_CORRUPT, "%s: km_key_open(%s) gave %s (%s), not KM_E_CORRUPT",
                      what, name, km_err_name(rc), km_error_last()->message);
        ck_assert_ptr_null(k);
    }
}

START_TEST(test_tamper_record_swap_keys)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM), *k;
    uint8_t ida[16], idb[16], cta[CT_LEN], ctb[CT_LEN];
    tu_raw r;
    int rc;

    memcpy(ida, km_key_id(a), 16);
    memcpy(idb, km_key_id(b), 16);
    encrypt_sample(a, NULL, 0, cta);
    encrypt_sample(b, NULL, 0, ctb);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ctx = NULL;

    raw_begin(&r);
    raw_copy(&r, "keys", ida, idb, 16); /* a's key record now sits under b's id */
    tu_raw_end(&r);
    reopen();

    k = (km_key *)&rc;
    RC(KM_E_CORRUPT, km_key_open(&k, ctx, "b"));
    ck_assert_ptr_null(k);
    k = (km_key *)&rc;
    RC(KM_E_CORRUPT, km_key_open_id(&k, ctx, idb));
    ck_assert_ptr_null(k);
    /* b's ciphertext is never opened with a's material */
    {
        guard out;
        size_t n = 3;
        tu_guard_new(&out, PT_LEN);
        memset(out.p, 0xAA, PT_LEN);
        rc = km_decrypt(ctx, 0, ctb, CT_LEN, NULL, 0, out.p, PT_LEN, &n);
        ck_assert_msg(rc == KM_E_CORRUPT, "decrypt under the swapped record: %s",
                      km_err_name(rc));
        ck_assert(tu_all_zero(out.p, PT_LEN));
        tu_guard_free(&out);
    }
    /* a is untouched */
    OK(km_key_open(&k, ctx, "a"));
    decrypt_ok(ctx, k, cta, CT_LEN, NULL, 0);
    km_key_free(k);
}
END_TEST

START_TEST(test_tamper_record_swap_material)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM), *k;
    uint8_t ida[16], idb[16], a1[20], a2[20], b1[20];
    uint8_t cta1[CT_LEN], cta2[CT_LEN], ctb[CT_LEN];
    tu_raw r;
    int rc;

    memcpy(ida, km_key_id(a), 16);
    memcpy(idb, km_key_id(b), 16);
    encrypt_sample(a, NULL, 0, cta1);
    OK(km_key_rotate(a, NULL));
    encrypt_sample(a, NULL, 0, cta2);
    encrypt_sample(b, NULL, 0, ctb);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ctx = NULL;
    tu_raw_vkey(a1, ida, 1);
    tu_raw_vkey(a2, ida, 2);
    tu_raw_vkey(b1, idb, 1);

    raw_begin(&r);
    raw_copy(&r, "material", a2, b1, 20); /* another key's material */
    raw_copy(&r, "material", a2, a1, 20); /* another version's material */
    tu_raw_end(&r);
    reopen();

    /* b: its only version's material is a's v2 under b's LMDB key */
    assert_key_corrupt("b", "material of a/v2 under b/v1");
    {
        guard out;
        size_t n = 3;
        tu_guard_new(&out, PT_LEN);
        memset(out.p, 0xAA, PT_LEN);
        rc = km_decrypt(ctx, 0, ctb, CT_LEN, NULL, 0, out.p, PT_LEN, &n);
        ck_assert_msg(rc == KM_E_CORRUPT, "decrypt of b's ciphertext: %s (%s), not KM_E_CORRUPT",
                      km_err_name(rc), km_error_last()->message);
        ck_assert(tu_all_zero(out.p, PT_LEN));
        /* a/v1: material of v2 under v1's key */
        memset(out.p, 0xAA, PT_LEN);
        rc = km_decrypt(ctx, 0, cta1, CT_LEN, NULL, 0, out.p, PT_LEN, &n);
        ck_assert_msg(rc == KM_E_CORRUPT, "decrypt of a/v1 ciphertext: %s (%s), not KM_E_CORRUPT",
                      km_err_name(rc), km_error_last()->message);
        ck_assert(tu_all_zero(out.p, PT_LEN));
        tu_guard_free(&out);
    }
    /* a/v2 is untouched: still decrypts and encrypts */
    OK(km_key_open(&k, ctx, "a"));
    decrypt_ok(ctx, k, cta2, CT_LEN, NULL, 0);
    {
        uint8_t t[CT_LEN];
        encrypt_sample(k, NULL, 0, t);
        decrypt_ok(ctx, NULL, t, CT_LEN, NULL, 0);
    }
    km_key_free(k);
}
END_TEST

/* Vault format 5 keeps the version records inside the key records
 * (docs/FORMATS.md): the vmeta table is empty and nothing reads it, so a
 * record planted there (key a's sealed record copied in as if it were b's
 * version 1) changes nothing. Another key's record moved under b's id is
 * test_tamper_record_swap_keys; a list that disagrees with its count is
 * format5:test_format5_record_disagrees. */
START_TEST(test_tamper_record_swap_vmeta)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM);
    uint8_t ida[16], idb[16], b1[20], *rec;
    size_t len = 0;
    km_keyinfo *info = NULL;
    tu_raw r;

    memcpy(ida, km_key_id(a), 16);
    memcpy(idb, km_key_id(b), 16);
    OK(km_key_rotate(a, NULL));
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ctx = NULL;
    tu_raw_vkey(b1, idb, 1);

    raw_begin(&r);
    rec = tu_raw_get(&r, "keys", ida, 16, &len);
    tu_raw_put(&r, "vmeta", b1, 20, rec, len);
    free(rec);
    tu_raw_end(&r);
    reopen();
    OK(km_key_open(&b, ctx, "b"));
    OK(km_key_info(&info, b));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 1);
    km_keyinfo_free(info);
    ck_assert_int_eq(tu_version_state(b, 1), KM_STATE_ACTIVE);
    km_key_free(b);
}
END_TEST

START_TEST(test_tamper_record_swap_counters)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM);
    uint8_t ida[16], idb[16], a1[20], b1[20], ct[CT_LEN];
    tu_raw r;

    memcpy(ida, km_key_id(a), 16);
    memcpy(idb, km_key_id(b), 16);
    /* both keys reserve a usage block, so both counter records exist */
    encrypt_sample(a, NULL, 0, ct);
    encrypt_sample(b, NULL, 0, ct);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ctx = NULL;
    tu_raw_vkey(a1, ida, 1);
    tu_raw_vkey(b1, idb, 1);

    raw_begin(&r);
    raw_copy(&r, "counters", b1, a1, 20);
    tu_raw_end(&r);
    reopen();
    assert_key_corrupt("a", "counters of b/v1 under a/v1");
}
END_TEST

START_TEST(test_tamper_record_swap_names)
{
    km_key *a = make_key("a", KM_KEY_AES_256_GCM), *b = make_key("b", KM_KEY_AES_256_GCM), *k;
    uint8_t ida[16], idb[16], ka[64], kb[64], *va, *vb;
    size_t kla = 0, klb = 0, la, lb;
    tu_raw r;
    MDB_cursor *cur;
    MDB_val key, val;
    int n = 0;

    memcpy(ida, km_key_id(a), 16);
    memcpy(idb, km_key_id(b), 16);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ctx = NULL;

    /* the names table holds two entries (keyed hashes); swap their sealed values */
    raw_begin(&r);
    ck_assert_int_eq(mdb_cursor_open(r.txn, tu_raw_dbi(&r, "names"), &cur), 0);
    while (mdb_cursor_get(cur, &key, &val, n == 0 ? MDB_FIRST : MDB_NEXT) == 0) {
        ck_assert_uint_le(key.mv_size, sizeof ka);
        if (n == 0) {
            memcpy(ka, key.mv_data, key.mv_size);
            kla = key.mv_size;
        } else {
            memcpy(kb, key.mv_data, key.mv_size);
            klb = key.mv_size;
        }
        n++;
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(n, 2);
    va = tu_raw_get(&r, "names", ka, kla, &la);
    vb = tu_raw_get(&r, "names", kb, klb, &lb);
    tu_raw_put(&r, "names", ka, kla, vb, lb);
    tu_raw_put(&r, "names", kb, klb, va, la);
    free(va);
    free(vb);
    tu_raw_end(&r);
    reopen();

    k = (km_key *)&n;
    RC(KM_E_CORRUPT, km_key_open(&k, ctx, "a"));
    ck_assert_ptr_null(k);
    RC(KM_E_CORRUPT, km_key_open(&k, ctx, "b"));
    ck_assert_ptr_null(k);
    /* by id they are intact */
    OK(km_key_open_id(&k, ctx, ida));
    ck_assert_str_eq(km_key_name(k), "a");
    km_key_free(k);
    OK(km_key_open_id(&k, ctx, idb));
    ck_assert_str_eq(km_key_name(k), "b");
    km_key_free(k);
}
END_TEST

/* -------------------------------------------------------- secrets at rest */

START_TEST(test_tamper_secret_at_rest)
{
    static const char canary[] = "CANARY-PLAINTEXT-7f3a9c1e5b2d4f60-do-not-store";
    static const char name[] = "canary-key-name-4b1d";
    uint8_t key[32], ct[sizeof canary - 1 + KM_CIPHERTEXT_OVERHEAD], pt[sizeof canary];
    char path[4200];
    const char *files[2] = { "data.mdb", "lock.mdb" };
    km_key *k = NULL;
    size_t i, n;

    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0xC3 ^ (i * 29 + 7));
    OK(km_key_import(&k, ctx, name, KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, key, sizeof key,
                     KM_IMPORT_ALLOW_RAW, NULL));
    OK(km_encrypt(k, (const uint8_t *)canary, sizeof canary - 1, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &n));
    ck_assert_int_eq(memcmp(pt, canary, sizeof canary - 1), 0);
    OK(km_key_rotate(k, NULL));
    km_key_free(k);
    km_close(ctx);
    ctx = NULL;

    for (i = 0; i < 2; i++) {
        size_t len = 0;
        uint8_t *buf;
        snprintf(path, sizeof path, "%s/vault/%s", dir, files[i]);
        buf = tu_read_file(path, &len);
        ck_assert_msg(buf != NULL, "cannot read %s", path);
        ck_assert_msg(!tu_memmem(buf, len, key, sizeof key), "%s holds the key bytes", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, key, 16), "%s holds half the key bytes", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, key + 16, 16), "%s holds half the key bytes", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, (const uint8_t *)canary, sizeof canary - 1),
                      "%s holds the plaintext", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, (const uint8_t *)"CANARY-PLAINTEXT", 16),
                      "%s holds part of the plaintext", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, (const uint8_t *)name, sizeof name - 1),
                      "%s holds the key name", files[i]);
        ck_assert_msg(!tu_memmem(buf, len, (const uint8_t *)TU_PASS, strlen(TU_PASS)),
                      "%s holds the passphrase", files[i]);
        free(buf);
    }
    /* the vault still opens and the key still works (the test looked at real files) */
    reopen();
    OK(km_key_open(&k, ctx, name));
    ck_assert_int_eq(km_decrypt_key(k, 0, ct, sizeof ct, NULL, 0, pt, sizeof pt, &n), KM_OK);
    km_key_free(k);
}
END_TEST

/* ---------------------------------------------------- signatures across keys */

static void cross_sign(km_key_type type, int mac)
{
    char na[64], nb[64];
    km_key *a, *b;
    const uint8_t *msg = (const uint8_t *)"pay 100 to alice";
    size_t mlen = 16, n = 0, rn = 0;
    uint8_t sig[KM_SIGNATURE_MAX], raw[KM_SIGNATURE_MAX];
    int rc;

    snprintf(na, sizeof na, "%s-a", km_key_type_name(type));
    snprintf(nb, sizeof nb, "%s-b", km_key_type_name(type));
    a = make_key(na, type);
    b = make_key(nb, type);
    if (mac) {
        OK(km_mac(a, 0, msg, mlen, sig, sizeof sig, &n));
        OK(km_mac(a, KM_SIG_RAW, msg, mlen, raw, sizeof raw, &rn));
        OK(km_mac_verify(a, 0, 0, msg, mlen, sig, n));
        OK(km_mac_verify(a, 0, KM_SIG_RAW, msg, mlen, raw, rn));
        RC(KM_E_INVALID, km_mac_verify(b, 0, 0, msg, mlen, sig, n));
        RC(KM_E_VERIFY, km_mac_verify(b, 0, KM_SIG_RAW, msg, mlen, raw, rn));
    } else {
        OK(km_sign(a, 0, msg, mlen, sig, sizeof sig, &n));
        OK(km_sign(a, KM_SIG_RAW, msg, mlen, raw, sizeof raw, &rn));
        OK(km_verify(a, 0, 0, msg, mlen, sig, n));
        OK(km_verify(a, 0, KM_SIG_RAW, msg, mlen, raw, rn));
        RC(KM_E_INVALID, km_verify(b, 0, 0, msg, mlen, sig, n));
        RC(KM_E_VERIFY, km_verify(b, 0, KM_SIG_RAW, msg, mlen, raw, rn));
    }
    /* the tagged one relabelled with b's id: the header passes, the signature does not */
    memcpy(sig + 4, km_key_id(b), 16);
    rc = mac ? km_mac_verify(b, 0, 0, msg, mlen, sig, n) : km_verify(b, 0, 0, msg, mlen, sig, n);
    ck_assert_msg(rc == KM_E_VERIFY, "%s relabelled to key b: %s", km_key_type_name(type),
                  km_err_name(rc));
    /* the tagged value with the algorithm changed: refused as naming another algorithm */
    memcpy(sig + 4, km_key_id(a), 16);
    sig[3] = (uint8_t)(sig[3] == KM_KEY_EC_P256 ? KM_KEY_EC_P384 : KM_KEY_EC_P256);
    rc = mac ? km_mac_verify(a, 0, 0, msg, mlen, sig, n) : km_verify(a, 0, 0, msg, mlen, sig, n);
    ck_assert_msg(rc == KM_E_INVALID, "%s with another algorithm id: %s", km_key_type_name(type),
                  km_err_name(rc));
    km_key_free(a);
    km_key_free(b);
}

START_TEST(test_tamper_signature_other_key)
{
    cross_sign(KM_KEY_EC_P256, 0);
    cross_sign(KM_KEY_ED25519, 0);
}
END_TEST

START_TEST(test_tamper_mac_other_key)
{
    cross_sign(KM_KEY_HMAC_SHA256, 1);
}
END_TEST

/* ------------------------------------------------------------------- suite */

static Suite *tamper_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("tamper", NULL, &tc, 60, setup, teardown);

    tcase_add_test(tc, test_tamper_header_magic);
    tcase_add_test(tc, test_tamper_header_format_version);
    tcase_add_test(tc, test_tamper_header_algorithm);
    tcase_add_test(tc, test_tamper_header_algorithm_unknown);
    tcase_add_test(tc, test_tamper_header_key_id);
    tcase_add_test(tc, test_tamper_header_version);
    tcase_add_test(tc, test_tamper_every_bit_flip);
    tcase_add_test(tc, test_tamper_every_truncation);
    tcase_add_test(tc, test_tamper_text_form);
    tcase_add_test(tc, test_tamper_aad);
    tcase_add_test(tc, test_tamper_wrong_key);
    tcase_add_test(tc, test_tamper_never_tries_other_keys);
    tcase_add_test(tc, test_tamper_rotation);
    tcase_add_test(tc, test_tamper_wrong_passphrase);
    tcase_add_test(tc, test_tamper_record_swap_keys);
    tcase_add_test(tc, test_tamper_record_swap_material);
    tcase_add_test(tc, test_tamper_record_swap_vmeta);
    tcase_add_test(tc, test_tamper_record_swap_counters);
    tcase_add_test(tc, test_tamper_record_swap_names);
    tcase_add_test(tc, test_tamper_secret_at_rest);
    tcase_add_test(tc, test_tamper_signature_other_key);
    tcase_add_test(tc, test_tamper_mac_other_key);
    return s;
}

int main(void)
{
    return tu_run(tamper_suite());
}
