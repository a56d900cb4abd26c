/*
 * check_vectors.c - third-party known answers (Project Wycheproof, RFC 3394 / 5649 / 5869 /
 * 4231, the GCM spec) run through libkm's own code paths.
 *
 * Every test of every file is run; each file prints one line:
 *   vectors: <file>: <n> tests, <v ok>/<v> valid passed, <i ok>/<i> invalid refused,
 *            <k> acceptable (<what libkm did>), <u> unsupported parameters
 * and the test fails when a valid case fails, an invalid case is accepted, or an error is not
 * one of the clean refusals the API documents. "Unsupported parameters" are cases libkm cannot
 * express by design (a caller-chosen GCM nonce, an HMAC tag shorter than 16 bytes, unpadded KW);
 * they are neither in the valid nor in the invalid count, and a note line says why.
 *
 * Paths:
 *  - ECDSA P-256 (DER, P1363), Ed25519, RSA-PSS-2048: km_key_import(SPKI DER) + km_verify(RAW).
 *  - HMAC-SHA-256: km_key_import(RAW) + km_mac_verify(RAW) and km_mac(RAW).
 *  - AES-CMAC (aes_cmac_test.json, RFC 4493, SP 800-38B): the same, with aes-*-cmac keys.
 *  - RSA-OAEP (SHA-256/384/512, labels): km_key_import(PKCS#8) with the OAEP digest recorded in
 *    the key, km_rsa_oaep_decrypt, and km_rsa_oaep_encrypt back.
 *  - AES-SIV (aes_siv_cmac_test.json): the software backend's aead_seal / aead_open with an
 *    aes-*-siv key (as AES-GCM above).
 *  - ECDH P-256 (ecdh_secp256r1_test.json), X25519 (x25519_test.json): km_key_import of the
 *    private key (PKCS#8, raw) with the usage agree-raw, then km_agree_raw with the peer's
 *    SubjectPublicKeyInfo; an all-zero X25519 secret must never come out.
 *  - AES-GCM: the software backend's aead_seal / aead_open (what km_encrypt / km_decrypt call);
 *    libkm takes no caller nonce, so this is the only way to reach a known nonce.
 *  - AES-KWP, HKDF: km__kwp_wrap / km__kwp_unwrap and km__hkdf_sha256 (what the vault uses).
 *
 * Acceptable cases: none of the files carries any except aes_wrap_test.json, whose cases are all
 * unsupported (libkm has no unpadded KW). Decision, should one appear in a file libkm runs:
 * libkm's answer is recorded either way (accepted or refused) and printed; an accepted one must
 * still give the expected output.
 */
#include <check.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km_int.h"
#include "core.h"
#include "testutil.h"

#ifndef KM_VECTORS_DIR
#error "KM_VECTORS_DIR must name the directory of the vector files"
#endif

#define MAX_SHOWN_FAILURES 25

typedef struct vstats {
    const char *file;
    unsigned n;
    unsigned valid, valid_ok;
    unsigned invalid, invalid_ok;
    unsigned acc, acc_accepted, acc_refused;
    unsigned unsup;
    unsigned failures;
    char note[512];
} vstats;

enum { R_VALID, R_INVALID, R_ACCEPTABLE };

static void vs_init(vstats *s, const char *file)
{
    memset(s, 0, sizeof *s);
    s->file = file;
}

static void vfail(vstats *s, long tc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void vfail(vstats *s, long tc, const char *fmt, ...)
{
    va_list ap;
    s->failures++;
    if (s->failures > MAX_SHOWN_FAILURES)
        return;
    fprintf(stderr, "vectors: %s: FAIL tcId %ld: ", s->file, tc);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [last error: %s]\n", km_error_last()->message);
}

static void vnote(vstats *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void vnote(vstats *s, const char *fmt, ...)
{
    size_t used = strlen(s->note);
    va_list ap;
    if (used > 0 && used + 2 < sizeof s->note) {
        memcpy(s->note + used, "; ", 3);
        used += 2;
    }
    va_start(ap, fmt);
    vsnprintf(s->note + used, sizeof s->note - used, fmt, ap);
    va_end(ap);
}

/* Prints the file's line and fails the test on any failure. `expected_n` is the file's
 * numberOfTests (0 to skip the check). */
static void vs_report(const vstats *s, unsigned expected_n)
{
    char acc[96];
    if (s->acc == 0)
        snprintf(acc, sizeof acc, "none in file");
    else
        snprintf(acc, sizeof acc, "%u accepted, %u refused", s->acc_accepted, s->acc_refused);
    printf("vectors: %s: %u tests, %u/%u valid passed, %u/%u invalid refused, %u acceptable (%s), "
           "%u unsupported parameters\n",
           s->file, s->n, s->valid_ok, s->valid, s->invalid_ok, s->invalid, s->acc, acc, s->unsup);
    if (s->note[0] != '\0')
        printf("vectors: %s: note: %s\n", s->file, s->note);
    fflush(stdout);
    ck_assert_msg(s->n == s->valid + s->invalid + s->acc + s->unsup,
                  "%s: bookkeeping: %u tests != %u + %u + %u + %u", s->file, s->n, s->valid,
                  s->invalid, s->acc, s->unsup);
    if (expected_n != 0)
        ck_assert_msg(s->n == expected_n, "%s: ran %u tests, the file declares %u", s->file, s->n,
                      expected_n);
    ck_assert_msg(s->failures == 0, "%s: %u failure(s), first ones on stderr", s->file,
                  s->failures);
    ck_assert_msg(s->valid_ok == s->valid && s->invalid_ok == s->invalid,
                  "%s: counts disagree with the failure count", s->file);
}

/* ------------------------------------------------------------ JSON helpers */

static json_t *load_json(const char *file)
{
    char path[4096];
    json_error_t err;
    json_t *root;
    snprintf(path, sizeof path, "%s/%s", KM_VECTORS_DIR, file);
    root = json_load_file(path, 0, &err);
    ck_assert_msg(root != NULL, "%s: %s (line %d)", path, err.text, err.line);
    return root;
}

static const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_string(v), "field '%s' is missing or not a string", key);
    return json_string_value(v);
}

static long jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_integer(v), "field '%s' is missing or not an integer", key);
    return (long)json_integer_value(v);
}

/* Hex field as malloc'ed bytes (never NULL, also for ""). */
static uint8_t *jhex(json_t *obj, const char *key, size_t *len)
{
    const char *h = jstr(obj, key);
    uint8_t *b = tu_unhex(h, len);
    ck_assert_msg(b != NULL, "field '%s' is not hex", key);
    return b;
}

static int jresult(json_t *t)
{
    const char *r = jstr(t, "result");
    if (strcmp(r, "valid") == 0)
        return R_VALID;
    if (strcmp(r, "invalid") == 0)
        return R_INVALID;
    ck_assert_msg(strcmp(r, "acceptable") == 0, "unknown result '%s'", r);
    return R_ACCEPTABLE;
}

static json_t *jarr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_array(v), "field '%s' is missing or not an array", key);
    return v;
}

/* Counts an outcome. `ok` means libkm produced the expected answer for a valid case (accepted
 * with the right output) or refused cleanly for an invalid one; `accepted` is what libkm did
 * for an acceptable case. */
static void count_valid(vstats *s, int ok)
{
    s->valid++;
    if (ok)
        s->valid_ok++;
}

static void count_invalid(vstats *s, int refused)
{
    s->invalid++;
    if (refused)
        s->invalid_ok++;
}

static void count_acceptable(vstats *s, int accepted)
{
    s->acc++;
    if (accepted)
        s->acc_accepted++;
    else
        s->acc_refused++;
}

/* Counts a case of any result: `ok` means libkm gave the expected answer (for an acceptable
 * case: that it accepted). */
static void count_result(vstats *s, int r, int ok)
{
    if (r == R_VALID)
        count_valid(s, ok);
    else if (r == R_INVALID)
        count_invalid(s, ok);
    else
        count_acceptable(s, ok);
}

/* One case of a Wycheproof file: its group `g` and test `t`; it counts itself in `s`. */
typedef void (*vcase_fn)(vstats *s, json_t *g, json_t *t, void *arg);
/* After the last case: the file's note lines, from what `arg` gathered. */
typedef void (*vnotes_fn)(vstats *s, void *arg);

/* Runs `each` on every test of every group of `file`, then `notes` (may be NULL), and prints
 * and checks the file's line against its numberOfTests. */
static void run_file(const char *file, vcase_fn each, vnotes_fn notes, void *arg)
{
    json_t *root = load_json(file), *g, *t;
    size_t gi, ti;
    vstats s;

    vs_init(&s, file);
    json_array_foreach(jarr(root, "testGroups"), gi, g) {
        json_array_foreach(jarr(g, "tests"), ti, t)
            each(&s, g, t, arg);
    }
    if (notes != NULL)
        notes(&s, arg);
    vs_report(&s, (unsigned)jint(root, "numberOfTests"));
    json_decref(root);
}

/* --------------------------------------------------------------- signatures */

static int sig_refusal(int rc)
{
    return rc == KM_E_VERIFY || rc == KM_E_INVALID;
}

static void run_sig_file(const char *file, km_key_type type, uint32_t flags)
{
    json_t *root = load_json(file), *groups = jarr(root, "testGroups"), *g;
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    unsigned refused_groups = 0;
    size_t gi;
    vstats s;

    vs_init(&s, file);
    json_array_foreach(groups, gi, g) {
        json_t *tests = jarr(g, "tests"), *t;
        size_t pklen, ti;
        uint8_t *pk = jhex(g, "publicKeyDer", &pklen);
        km_key *key = NULL;
        char name[32];
        int rc;

        snprintf(name, sizeof name, "group-%zu", gi);
        rc = km_key_import(&key, ctx, name, type, KM_MATERIAL_SPKI_DER, pk, pklen,
                           KM_IMPORT_ALLOW_RAW, NULL);
        free(pk);
        if (rc != KM_OK) {
            /* A refused public key refuses every signature of its group. */
            refused_groups++;
            json_array_foreach(tests, ti, t) {
                long tc = jint(t, "tcId");
                int r = jresult(t);
                s.n++;
                if (rc != KM_E_INVALID && rc != KM_E_UNSUPPORTED)
                    vfail(&s, tc, "key import of group %zu: unclean error %s", gi, km_err_name(rc));
                if (r == R_VALID) {
                    count_valid(&s, 0);
                    vfail(&s, tc, "valid case, but its group's public key was refused: %s",
                          km_err_name(rc));
                } else if (r == R_INVALID) {
                    count_invalid(&s, 1);
                } else {
                    count_acceptable(&s, 0);
                }
            }
            continue;
        }
        ck_assert_int_eq(km_key_get_type(key), type);
        json_array_foreach(tests, ti, t) {
            long tc = jint(t, "tcId");
            int r = jresult(t);
            size_t mlen, slen;
            uint8_t *msg = jhex(t, "msg", &mlen), *sig = jhex(t, "sig", &slen);

            s.n++;
            rc = km_verify(key, 0, KM_SIG_RAW | flags, msg, mlen, sig, slen);
            if (r == R_VALID) {
                count_valid(&s, rc == KM_OK);
                if (rc != KM_OK)
                    vfail(&s, tc, "valid signature refused: %s (%s)", km_err_name(rc),
                          jstr(t, "comment"));
            } else if (r == R_INVALID) {
                count_invalid(&s, sig_refusal(rc));
                if (rc == KM_OK)
                    vfail(&s, tc, "INVALID SIGNATURE ACCEPTED (%s)", jstr(t, "comment"));
                else if (!sig_refusal(rc))
                    vfail(&s, tc, "invalid signature refused with an unclean error %s (%s)",
                          km_err_name(rc), jstr(t, "comment"));
            } else {
                if (rc != KM_OK && !sig_refusal(rc))
                    vfail(&s, tc, "acceptable case: unclean error %s", km_err_name(rc));
                count_acceptable(&s, rc == KM_OK);
            }
            free(msg);
            free(sig);
        }
        km_key_free(key);
    }
    if (refused_groups)
        vnote(&s, "%u group public key(s) refused at import; their tests counted as refused",
              refused_groups);
    vs_report(&s, (unsigned)jint(root, "numberOfTests"));
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
    json_decref(root);
}

START_TEST(test_vectors_ecdsa_secp256r1_sha256)
{
    run_sig_file("ecdsa_secp256r1_sha256_test.json", KM_KEY_EC_P256, 0);
}
END_TEST

START_TEST(test_vectors_ecdsa_secp256r1_sha256_p1363)
{
    run_sig_file("ecdsa_secp256r1_sha256_p1363_test.json", KM_KEY_EC_P256, KM_SIG_P1363);
}
END_TEST

START_TEST(test_vectors_ed25519)
{
    run_sig_file("ed25519_test.json", KM_KEY_ED25519, 0);
}
END_TEST

START_TEST(test_vectors_rsa_pss_2048_sha256_mgf1_32)
{
    /* libkm's RSA-PSS is fixed at SHA-256 / MGF1-SHA-256 / 32-byte salt: this file's set. */
    json_t *root = load_json("rsa_pss_2048_sha256_mgf1_32_test.json"), *g;
    size_t gi;
    json_array_foreach(jarr(root, "testGroups"), gi, g) {
        ck_assert_str_eq(jstr(g, "sha"), "SHA-256");
        ck_assert_str_eq(jstr(g, "mgfSha"), "SHA-256");
        ck_assert_int_eq(jint(g, "sLen"), 32);
        ck_assert_int_eq(jint(g, "keySize"), 2048);
    }
    json_decref(root);
    run_sig_file("rsa_pss_2048_sha256_mgf1_32_test.json", KM_KEY_RSA_2048, 0);
}
END_TEST

/* --------------------------------------------------------------------- HMAC */

#define HMAC_KEY_MIN 14
#define HMAC_KEY_MAX 1024
#define HMAC_TAG_MIN 16

/* One HMAC case through the public API (a key imported per case). `full_len` is the digest
 * length of `type`. Counts the case in `s`. */
static void hmac_case(vstats *s, km_ctx *ctx, km_key_type type, size_t full_len, long tc, int r,
                      const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                      const uint8_t *tag, size_t tlen)
{
    km_key *k = NULL;
    char name[48];
    uint8_t out[KM_MAC_MAX];
    size_t olen = 0;
    int rc;

    s->n++;
    snprintf(name, sizeof name, "hmac-%d-%ld", (int)type, tc);
    rc = km_key_import(&k, ctx, name, type, KM_MATERIAL_RAW, key, klen, KM_IMPORT_ALLOW_RAW, NULL);
    if (rc != KM_OK) {
        if (klen >= HMAC_KEY_MIN && klen <= HMAC_KEY_MAX) {
            vfail(s, tc, "HMAC key of %zu bytes refused: %s", klen, km_err_name(rc));
            count_result(s, r, 0);
            return;
        }
        /* too short for libkm (14 bytes minimum) or for the policy (112 bits) */
        if (rc != KM_E_INVALID && rc != KM_E_UNSUPPORTED && rc != KM_E_POLICY)
            vfail(s, tc, "HMAC key of %zu bytes refused with an unclean error %s", klen,
                  km_err_name(rc));
        s->unsup++; /* refused by design: raw HMAC keys are 14..1024 bytes */
        return;
    }
    rc = km_mac_verify(k, 0, KM_SIG_RAW, msg, mlen, tag, tlen);
    if (tlen < HMAC_TAG_MIN) {
        /* libkm refuses tags shorter than 16 bytes by design */
        if (rc == KM_OK)
            vfail(s, tc, "a %zu-byte tag was accepted (libkm's floor is 16)", tlen);
        else if (rc != KM_E_VERIFY)
            vfail(s, tc, "short tag refused with an unclean error %s", km_err_name(rc));
        if (r == R_INVALID)
            count_invalid(s, rc == KM_E_VERIFY);
        else
            s->unsup++;
        goto out;
    }
    if (r == R_VALID) {
        int ok = rc == KM_OK;
        if (!ok)
            vfail(s, tc, "valid tag refused: %s", km_err_name(rc));
        if (tlen == full_len) {
            memset(out, 0xAA, sizeof out);
            rc = km_mac(k, KM_SIG_RAW, msg, mlen, out, sizeof out, &olen);
            if (rc != KM_OK || olen != tlen || memcmp(out, tag, tlen) != 0) {
                ok = 0;
                vfail(s, tc, "km_mac does not reproduce the tag: %s, %zu bytes", km_err_name(rc),
                      olen);
            }
        }
        count_valid(s, ok);
    } else if (r == R_INVALID) {
        count_invalid(s, rc == KM_E_VERIFY);
        if (rc == KM_OK)
            vfail(s, tc, "INVALID TAG ACCEPTED");
        else if (rc != KM_E_VERIFY)
            vfail(s, tc, "invalid tag refused with %s, not KM_E_VERIFY", km_err_name(rc));
    } else {
        if (rc != KM_OK && rc != KM_E_VERIFY)
            vfail(s, tc, "acceptable case: unclean error %s", km_err_name(rc));
        count_acceptable(s, rc == KM_OK);
    }
out:
    km_key_free(k);
}

/* One AES-CMAC case (below). */
static void cmac_case(vstats *s, km_ctx *ctx, long tc, int r, const uint8_t *key, size_t klen,
                      const uint8_t *msg, size_t mlen, const uint8_t *tag, size_t tlen);

/* A MAC file's run (HMAC or AES-CMAC): its vault, and what it counted. */
typedef struct mac_run {
    km_ctx *ctx;
    int cmac;            /* aes_cmac_test.json: keySize checked, cmac_case */
    unsigned truncated;  /* HMAC tags shorter than the digest */
} mac_run;

/* A MAC file's case: key, msg and tag; `arg` is the mac_run. */
static void mac_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    mac_run *m = arg;
    size_t klen, mlen, tlen;
    uint8_t *key = jhex(t, "key", &klen), *msg = jhex(t, "msg", &mlen),
            *tag = jhex(t, "tag", &tlen);
    if (m->cmac) {
        ck_assert_uint_eq((size_t)jint(g, "keySize"), 8 * klen);
        cmac_case(s, m->ctx, jint(t, "tcId"), jresult(t), key, klen, msg, mlen, tag, tlen);
    } else {
        if (tlen < 32)
            m->truncated++;
        hmac_case(s, m->ctx, KM_KEY_HMAC_SHA256, 32, jint(t, "tcId"), jresult(t), key, klen, msg,
                  mlen, tag, tlen);
    }
    free(key);
    free(msg);
    free(tag);
}

static void hmac_notes(vstats *s, void *arg)
{
    const mac_run *m = arg;
    vnote(s, "%u cases carry a truncated tag (verified through km_mac_verify only)",
          m->truncated);
    if (s->unsup)
        vnote(s, "unsupported = valid tags < 16 bytes or keys outside 14..1024 bytes (libkm "
                 "refuses both by design)");
}

/* A MAC file through the public API, in a vault of its own. */
static void run_mac_file(const char *file, int cmac)
{
    char *dir = tu_tmpdir();
    mac_run m = { NULL, cmac, 0 };

    m.ctx = tu_vault(dir);
    run_file(file, mac_each, cmac ? NULL : hmac_notes, &m);
    km_close(m.ctx);
    tu_rmtree(dir);
    free(dir);
}

START_TEST(test_vectors_hmac_sha256)
{
    run_mac_file("hmac_sha256_test.json", 0);
}
END_TEST

/* ----------------------------------------------------------------- AES-CMAC */

/* The AES-CMAC type of a key length, 0 for none. */
static km_key_type cmac_type(size_t klen)
{
    return klen == 16 ? KM_KEY_AES_128_CMAC : klen == 24 ? KM_KEY_AES_192_CMAC
           : klen == 32 ? KM_KEY_AES_256_CMAC : (km_key_type)0;
}

/* One AES-CMAC case through the public API: a key of an AES length goes through hmac_case
 * (km_key_import(RAW) of the aes-*-cmac type of that length, km_mac_verify(RAW), km_mac(RAW);
 * CMAC tags are 16 bytes); a key of another length must be refused at import (KM_E_INVALID):
 * counted as an invalid case refused. */
static void cmac_case(vstats *s, km_ctx *ctx, long tc, int r, const uint8_t *key, size_t klen,
                      const uint8_t *msg, size_t mlen, const uint8_t *tag, size_t tlen)
{
    km_key_type type = cmac_type(klen);
    km_key *k = NULL;
    char name[48];
    int rc;

    if (type != 0) {
        hmac_case(s, ctx, type, 16, tc, r, key, klen, msg, mlen, tag, tlen);
        return;
    }
    s->n++;
    snprintf(name, sizeof name, "cmac-%ld-%zu", tc, klen);
    rc = km_key_import(&k, ctx, name, KM_KEY_AES_128_CMAC, KM_MATERIAL_RAW, key, klen,
                       KM_IMPORT_ALLOW_RAW, NULL);
    if (rc == KM_OK)
        vfail(s, tc, "a %zu-byte AES-CMAC key was accepted", klen);
    else if (rc != KM_E_INVALID)
        vfail(s, tc, "a %zu-byte key refused with %s, not KM_E_INVALID", klen, km_err_name(rc));
    if (r == R_VALID)
        count_valid(s, 0);
    else
        count_invalid(s, rc == KM_E_INVALID);
    km_key_free(k);
}

START_TEST(test_vectors_aes_cmac)
{
    run_mac_file("aes_cmac_test.json", 1);
}
END_TEST

/* RFC 4493 section 4 (AES-128) and NIST SP 800-38B appendix D.2, D.3 (AES-192, AES-256):
 * the four messages of 0, 16, 40 and 64 bytes, through km_mac and km_mac_verify. */
START_TEST(test_vectors_cmac_rfc4493_sp800_38b)
{
    static const char *const msg_hex =
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
    static const size_t lens[4] = { 0, 16, 40, 64 };
    static const struct { const char *key, *tags[4]; } v[] = {
        { "2b7e151628aed2a6abf7158809cf4f3c",
          { "bb1d6929e95937287fa37d129b756746", "070a16b46b4d4144f79bdd9dd04a287c",
            "dfa66747de9ae63030ca32611497c827", "51f0bebf7e3b9d92fc49741779363cfe" } },
        { "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
          { "d17ddf46adaacde531cac483de7a9367", "9e99a7bf31e710900662f65e617c5184",
            "8a1de5be2eb31aad089a82e6ee908b0e", "a1d5df0eed790f794d77589659f39a11" } },
        { "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
          { "028962f61b7bf89efc6b551f4667d983", "28a7023f452e8f82bd4bf28d8c37c35c",
            "aaf3d8f1de5640c232f5b169b9c911e6", "e1992190549f6ed5696a2c056c315410" } },
    };
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    size_t mlen, i, j;
    uint8_t *msg = tu_unhex(msg_hex, &mlen);

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t klen;
        uint8_t *key = tu_unhex(v[i].key, &klen);
        km_key *k = NULL;
        char name[32];
        snprintf(name, sizeof name, "rfc4493-%zu", i);
        ck_assert_int_eq(km_key_import(&k, ctx, name, cmac_type(klen), KM_MATERIAL_RAW, key, klen,
                                       KM_IMPORT_ALLOW_RAW, NULL), KM_OK);
        for (j = 0; j < 4; j++) {
            size_t tlen, olen = 0;
            uint8_t *tag = tu_unhex(v[i].tags[j], &tlen), out[KM_MAC_MAX];
            ck_assert_int_eq(km_mac(k, KM_SIG_RAW, msg, lens[j], out, sizeof out, &olen), KM_OK);
            ck_assert_uint_eq(olen, 16);
            ck_assert_msg(memcmp(out, tag, 16) == 0, "key %zu, message %zu: wrong tag", i, j);
            ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, lens[j], tag, 16), KM_OK);
            tag[15] ^= 1;
            ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, lens[j], tag, 16), KM_E_VERIFY);
            /* a CMAC tag is never truncated */
            tag[15] ^= 1;
            ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, msg, lens[j], tag, 15), KM_E_VERIFY);
            free(tag);
        }
        printf("vectors: AES-%zu-CMAC: 4 known answers of %s passed\n", 8 * klen,
               i == 0 ? "RFC 4493 section 4" : "SP 800-38B appendix D");
        km_key_free(k);
        free(key);
    }
    free(msg);
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ----------------------------------------------------------------- RSA-OAEP */

/* A Wycheproof RSA-OAEP file through the public API: each group's PKCS#8 key imported as an
 * RSA key whose OAEP digest is `digest` (km_key_options::rsa_oaep_digest), each case through
 * km_rsa_oaep_decrypt with its label; valid cases must give the message (the empty one
 * included) and survive km_rsa_oaep_encrypt -> km_rsa_oaep_decrypt; invalid ones must be
 * KM_E_INTEGRITY. */
static void run_oaep_file(const char *file, uint32_t digest)
{
    json_t *root = load_json(file), *g, *t;
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    size_t gi, ti;
    unsigned labelled = 0, empty = 0;
    vstats s;

    vs_init(&s, file);
    json_array_foreach(jarr(root, "testGroups"), gi, g) {
        size_t dlen;
        uint8_t *der = jhex(g, "privateKeyPkcs8", &dlen);
        long bits = jint(g, "keySize");
        km_key_options o = KM_KEY_OPTIONS_INIT;
        km_key *k = NULL;
        char name[32];
        int rc;

        o.rsa_oaep_digest = digest;
        snprintf(name, sizeof name, "oaep-%zu", gi);
        ck_assert_int_eq(bits, 2048);
        rc = km_key_import(&k, ctx, name, KM_KEY_RSA_2048, KM_MATERIAL_PKCS8_DER, der, dlen,
                           KM_IMPORT_ALLOW_RAW, &o);
        ck_assert_msg(rc == KM_OK, "%s: import: %s", file, km_error_last()->message);
        json_array_foreach(jarr(g, "tests"), ti, t) {
            size_t mlen, clen, llen, n = 0, n2 = 0;
            uint8_t *msg = jhex(t, "msg", &mlen), *ct = jhex(t, "ct", &clen),
                    *label = jhex(t, "label", &llen), out[512], ct2[512];
            long tc = jint(t, "tcId");
            int r = jresult(t);

            s.n++;
            memset(out, 0xAA, sizeof out);
            rc = km_rsa_oaep_decrypt(k, 0, label, llen, ct, clen, out, sizeof out, &n);
            if (r == R_VALID) {
                int ok = rc == KM_OK && n == mlen && (mlen == 0 || memcmp(out, msg, mlen) == 0);
                if (!ok)
                    vfail(&s, tc, "valid ciphertext: %s, %zu bytes", km_err_name(rc), n);
                if (llen > 0)
                    labelled++;
                if (mlen == 0)
                    empty++;
                /* and back: encrypt with the public key, decrypt again */
                rc = km_rsa_oaep_encrypt(k, 0, label, llen, msg, mlen, ct2, sizeof ct2, &n2);
                if (rc != KM_OK || n2 != 256) {
                    ok = 0;
                    vfail(&s, tc, "km_rsa_oaep_encrypt: %s", km_err_name(rc));
                } else if (km_rsa_oaep_decrypt(k, 0, label, llen, ct2, n2, out, sizeof out, &n)
                               != KM_OK || n != mlen || (mlen > 0 && memcmp(out, msg, mlen) != 0)) {
                    ok = 0;
                    vfail(&s, tc, "encrypt -> decrypt does not give the message back");
                } else if (km_rsa_oaep_decrypt(k, 0, (const uint8_t *)"other", 5, ct2, n2, out,
                                               sizeof out, &n) != KM_E_INTEGRITY) {
                    ok = 0;
                    vfail(&s, tc, "a wrong label was not refused");
                }
                count_valid(&s, ok);
            } else {
                count_invalid(&s, rc == KM_E_INTEGRITY);
                if (rc == KM_OK)
                    vfail(&s, tc, "INVALID CIPHERTEXT ACCEPTED");
                else if (rc != KM_E_INTEGRITY)
                    vfail(&s, tc, "refused with %s, not KM_E_INTEGRITY", km_err_name(rc));
            }
            free(msg);
            free(ct);
            free(label);
        }
        km_key_free(k);
        free(der);
    }
    vnote(&s, "%u valid cases carry a label, %u an empty message (decrypted to empty)", labelled,
          empty);
    vs_report(&s, (unsigned)jint(root, "numberOfTests"));
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
    json_decref(root);
}

START_TEST(test_vectors_rsa_oaep_2048_sha256)
{
    run_oaep_file("rsa_oaep_2048_sha256_mgf1sha256_test.json", 256);
}
END_TEST

START_TEST(test_vectors_rsa_oaep_2048_sha384)
{
    run_oaep_file("rsa_oaep_2048_sha384_mgf1sha384_test.json", 384);
}
END_TEST

START_TEST(test_vectors_rsa_oaep_2048_sha512)
{
    run_oaep_file("rsa_oaep_2048_sha512_mgf1sha512_test.json", 512);
}
END_TEST

/* ------------------------------------------------------------------ AES-GCM */

typedef struct gcm_ref {
    km_secret *ref;
    void *obj;
} gcm_ref;

static int gcm_load(gcm_ref *g, const uint8_t *key, size_t klen)
{
    static const uint8_t zero_id[16];
    km_backend_keyspec spec;
    int rc;

    memset(g, 0, sizeof *g);
    memset(&spec, 0, sizeof spec);
    spec.version = 1;
    spec.type = klen == 16 ? KM_KEY_AES_128_GCM : klen == 24 ? KM_KEY_AES_192_GCM
                                                            : KM_KEY_AES_256_GCM;
    spec.usage = KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT;
    spec.flags = 0;
    spec.key_id = zero_id;
    spec.key_version = 1;
    ck_assert_int_eq(km_secret_new(&g->ref, klen + 1), KM_OK);
    km_secret_data(g->ref)[0] = (unsigned char)KM_MATERIAL_RAW;
    memcpy(km_secret_data(g->ref) + 1, key, klen);
    rc = km__software_backend.load(NULL, &spec, km_secret_data(g->ref), klen + 1, &g->obj);
    if (rc != KM_OK) {
        km_secret_free(g->ref);
        g->ref = NULL;
        g->obj = NULL;
    }
    return rc;
}

static void gcm_unload(gcm_ref *g)
{
    if (g->obj != NULL)
        km__software_backend.unload(NULL, g->obj);
    km_secret_free(g->ref);
    g->obj = NULL;
    g->ref = NULL;
}

/* One 96-bit-nonce, 128-bit-tag case. Returns 1 when libkm's answer is the expected one. */
static int gcm_case(vstats *s, long tc, int r, const uint8_t *key, size_t klen,
                    const uint8_t *iv, const uint8_t *aad, size_t alen, const uint8_t *msg,
                    size_t mlen, const uint8_t *ct, size_t clen, const uint8_t *tag)
{
    gcm_ref g;
    uint8_t *out, otag[16];
    size_t cap = (mlen > clen ? mlen : clen) + 1;
    int rc, ok = 1;

    rc = gcm_load(&g, key, klen);
    if (rc != KM_OK) {
        vfail(s, tc, "software backend refused a %zu-byte AES key: %s", klen, km_err_name(rc));
        return 0;
    }
    out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    if (r == R_VALID) {
        ck_assert_uint_eq(mlen, clen);
        memset(out, 0xAA, cap);
        rc = km__software_backend.aead_seal(g.obj, iv, aad, alen, NULL, 0, msg, mlen, out, otag);
        if (rc != KM_OK || memcmp(out, ct, clen) != 0 || memcmp(otag, tag, 16) != 0) {
            vfail(s, tc, "aead_seal does not give ct||tag: %s", km_err_name(rc));
            ok = 0;
        }
        /* the same with the associated data split as libkm does (header, then caller's) */
        if (alen > 1) {
            memset(out, 0xAA, cap);
            rc = km__software_backend.aead_seal(g.obj, iv, aad, alen / 2, aad + alen / 2,
                                                alen - alen / 2, msg, mlen, out, otag);
            if (rc != KM_OK || memcmp(out, ct, clen) != 0 || memcmp(otag, tag, 16) != 0) {
                vfail(s, tc, "aead_seal with split aad does not give ct||tag: %s",
                      km_err_name(rc));
                ok = 0;
            }
        }
    }
    memset(out, 0xAA, cap);
    rc = km__software_backend.aead_open(g.obj, iv, aad, alen, NULL, 0, ct, clen, tag, out);
    if (r == R_VALID) {
        if (rc != KM_OK || memcmp(out, msg, mlen) != 0) {
            vfail(s, tc, "aead_open of a valid case: %s", km_err_name(rc));
            ok = 0;
        }
    } else {
        if (rc == KM_OK) {
            vfail(s, tc, "INVALID CIPHERTEXT OPENED");
            ok = 0;
        } else if (rc != KM_E_INTEGRITY) {
            vfail(s, tc, "invalid case refused with %s, not KM_E_INTEGRITY", km_err_name(rc));
            ok = 0;
        }
        if (!tu_all_zero(out, clen)) {
            vfail(s, tc, "refused open left bytes in the output buffer");
            ok = 0;
        }
    }
    free(out);
    gcm_unload(&g);
    return ok;
}

/* What the GCM file's cases libkm cannot express were. */
typedef struct gcm_run {
    unsigned other_iv, other_tag;
} gcm_run;

static void gcm_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    gcm_run *gr = arg;
    long ivbits = jint(g, "ivSize"), tagbits = jint(g, "tagSize");
    long tc = jint(t, "tcId");
    int r = jresult(t), ok;
    size_t klen, ivlen, alen, mlen, clen, tlen;
    uint8_t *key, *iv, *aad, *msg, *ct, *tag;

    s->n++;
    if (ivbits != 96 || tagbits != 128) {
        /* libkm never takes a caller nonce and always writes 12-byte nonces and
         * 16-byte tags: such a ciphertext cannot even be expressed in format v1. */
        if (ivbits != 96)
            gr->other_iv++;
        else
            gr->other_tag++;
        s->unsup++;
        return;
    }
    key = jhex(t, "key", &klen);
    iv = jhex(t, "iv", &ivlen);
    aad = jhex(t, "aad", &alen);
    msg = jhex(t, "msg", &mlen);
    ct = jhex(t, "ct", &clen);
    tag = jhex(t, "tag", &tlen);
    ck_assert_uint_eq(ivlen, 12);
    ck_assert_uint_eq(tlen, 16);
    ok = gcm_case(s, tc, r == R_ACCEPTABLE ? R_VALID : r, key, klen, iv, aad, alen, msg, mlen, ct,
                  clen, tag);
    count_result(s, r, ok);
    free(key);
    free(iv);
    free(aad);
    free(msg);
    free(ct);
    free(tag);
}

static void gcm_notes(vstats *s, void *arg)
{
    const gcm_run *gr = arg;
    vnote(s, "unsupported = %u cases with an IV other than 96 bits, %u with a tag other than "
             "128 bits: libkm draws its own 96-bit nonce and km_decrypt reads it only from "
             "its 36-byte header",
          gr->other_iv, gr->other_tag);
}

START_TEST(test_vectors_aes_gcm)
{
    gcm_run gr = { 0, 0 };
    run_file("aes_gcm_test.json", gcm_each, gcm_notes, &gr);
}
END_TEST

/* ------------------------------------------------------------------ AES-SIV */

/* A Wycheproof deterministic-AEAD file (AES-SIV-CMAC, RFC 5297 with one associated-data
 * string) through the software backend's aead_seal / aead_open with an aes-*-siv key, the aad
 * as the first (and only) S2V string: what km_encrypt / km_decrypt call with the header as
 * that string. Wycheproof's ct is V || C; libkm's aead output is C and tag V. Keys of other
 * sizes must be refused at load (invalid cases). */
static void siv_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    size_t klen, alen, mlen, clen;
    uint8_t *key = jhex(t, "key", &klen), *aad = jhex(t, "aad", &alen),
            *msg = jhex(t, "msg", &mlen), *ct = jhex(t, "ct", &clen);
    uint8_t *out = malloc(mlen + clen + 1), tag[16];
    long tc = jint(t, "tcId");
    int r = jresult(t), rc;
    km_key_type type = klen == 32 ? KM_KEY_AES_128_SIV : klen == 48 ? KM_KEY_AES_192_SIV
                       : klen == 64 ? KM_KEY_AES_256_SIV : (km_key_type)0;
    km_backend_keyspec spec;
    km_secret *ref = NULL;
    void *obj = NULL;
    static const uint8_t zero_id[16];

    (void)g;
    (void)arg;
    s->n++;
    memset(&spec, 0, sizeof spec);
    spec.version = 1;
    spec.type = type != 0 ? type : KM_KEY_AES_256_SIV;
    spec.usage = KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT;
    spec.key_id = zero_id;
    spec.key_version = 1;
    ck_assert_int_eq(km_secret_new(&ref, klen + 1), KM_OK);
    km_secret_data(ref)[0] = (unsigned char)KM_MATERIAL_RAW;
    if (klen > 0)
        memcpy(km_secret_data(ref) + 1, key, klen);
    rc = km__software_backend.load(NULL, &spec, km_secret_data(ref), klen + 1, &obj);
    if (type == 0) {
        if (rc == KM_OK)
            vfail(s, tc, "a %zu-byte AES-SIV key was loaded", klen);
        if (r == R_VALID)
            count_valid(s, 0);
        else
            count_invalid(s, rc == KM_E_INVALID);
    } else if (rc != KM_OK) {
        vfail(s, tc, "load: %s", km_err_name(rc));
        if (r == R_VALID)
            count_valid(s, 0);
        else
            count_invalid(s, 0);
    } else if (r == R_VALID && mlen == 0) {
        /* OpenSSL 3.0's AES-SIV cannot finish an empty message: refused cleanly */
        rc = km__software_backend.aead_seal(obj, zero_id, aad, alen, NULL, 0, msg, 0,
                                            out, tag);
        if (rc != KM_E_UNSUPPORTED)
            vfail(s, tc, "empty message: %s, not KM_E_UNSUPPORTED", km_err_name(rc));
        s->unsup++;
    } else if (r == R_VALID) {
        int ok;
        rc = km__software_backend.aead_seal(obj, zero_id, aad, alen, NULL, 0, msg, mlen,
                                            out, tag);
        ok = rc == KM_OK && clen == mlen + 16 && memcmp(tag, ct, 16) == 0
             && (mlen == 0 || memcmp(out, ct + 16, mlen) == 0);
        if (!ok)
            vfail(s, tc, "seal does not give the ciphertext: %s", km_err_name(rc));
        rc = km__software_backend.aead_open(obj, zero_id, aad, alen, NULL, 0, ct + 16,
                                            clen - 16, ct, out);
        if (rc != KM_OK || (mlen > 0 && memcmp(out, msg, mlen) != 0)) {
            ok = 0;
            vfail(s, tc, "open: %s", km_err_name(rc));
        }
        count_valid(s, ok);
    } else {
        /* a ciphertext shorter than V cannot be opened at all */
        rc = clen < 16 ? KM_E_INTEGRITY
             : km__software_backend.aead_open(obj, zero_id, aad, alen, NULL, 0, ct + 16,
                                              clen - 16, ct, out);
        /* an empty message's V is refused as unsupported (above) */
        if (clen == 16 && rc == KM_E_UNSUPPORTED)
            rc = KM_E_INTEGRITY;
        count_invalid(s, rc == KM_E_INTEGRITY);
        if (rc == KM_OK)
            vfail(s, tc, "INVALID CIPHERTEXT ACCEPTED");
        else if (rc != KM_E_INTEGRITY)
            vfail(s, tc, "refused with %s, not KM_E_INTEGRITY", km_err_name(rc));
    }
    if (obj != NULL)
        km__software_backend.unload(NULL, obj);
    km_secret_free(ref);
    free(out);
    free(key);
    free(aad);
    free(msg);
    free(ct);
}

static void siv_notes(vstats *s, void *arg)
{
    (void)arg;
    vnote(s, "unsupported = the valid empty messages: OpenSSL 3.0's AES-SIV cannot finish "
             "one, libkm refuses them (KM_E_UNSUPPORTED)");
}

START_TEST(test_vectors_aes_siv_cmac)
{
    run_file("aes_siv_cmac_test.json", siv_each, siv_notes, NULL);
}
END_TEST

/* ---------------------------------------------------------------- AES-KWP */

/* KWP known answer through the vault's primitive. Returns 1 when as expected. */
static int kwp_case(vstats *s, long tc, int r, const uint8_t *kek, size_t kek_len,
                    const uint8_t *msg, size_t mlen, const uint8_t *ct, size_t clen)
{
    size_t cap = (mlen > clen ? mlen : clen) + 16, olen = 0;
    uint8_t *out = malloc(cap);
    int rc, ok = 1;

    ck_assert_ptr_nonnull(out);
    if (r == R_VALID) {
        memset(out, 0xAA, cap);
        rc = km__kwp_wrap(kek, kek_len, msg, mlen, out, cap, &olen);
        if (rc != KM_OK || olen != clen || memcmp(out, ct, clen) != 0) {
            vfail(s, tc, "km__kwp_wrap does not give the expected wrap: %s (%zu bytes)",
                  km_err_name(rc), olen);
            ok = 0;
        }
    }
    memset(out, 0xAA, cap);
    olen = 12345;
    rc = km__kwp_unwrap(kek, kek_len, ct, clen, out, cap, &olen);
    if (r == R_VALID) {
        if (rc != KM_OK || olen != mlen || memcmp(out, msg, mlen) != 0) {
            vfail(s, tc, "km__kwp_unwrap of a valid wrap: %s (%zu bytes)", km_err_name(rc), olen);
            ok = 0;
        }
    } else {
        if (rc == KM_OK) {
            vfail(s, tc, "INVALID WRAP UNWRAPPED (%zu bytes)", olen);
            ok = 0;
        } else if (rc != KM_E_INTEGRITY && rc != KM_E_INVALID) {
            vfail(s, tc, "invalid wrap refused with an unclean error %s", km_err_name(rc));
            ok = 0;
        }
        if (rc != KM_OK && olen != 0) {
            vfail(s, tc, "refused unwrap reports %zu output bytes", olen);
            ok = 0;
        }
        if (!tu_all_zero(out, clen < cap ? clen : cap)) {
            vfail(s, tc, "refused unwrap left bytes in the output buffer");
            ok = 0;
        }
    }
    free(out);
    return ok;
}

static void kwp_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    long tc = jint(t, "tcId");
    int r = jresult(t), ok;
    size_t klen, mlen, clen;
    uint8_t *key = jhex(t, "key", &klen), *msg = jhex(t, "msg", &mlen),
            *ct = jhex(t, "ct", &clen);
    (void)g;
    (void)arg;
    s->n++;
    ok = kwp_case(s, tc, r == R_ACCEPTABLE ? R_VALID : r, key, klen, msg, mlen, ct, clen);
    count_result(s, r, ok);
    free(key);
    free(msg);
    free(ct);
}

START_TEST(test_vectors_aes_kwp)
{
    run_file("aes_kwp_test.json", kwp_each, NULL, NULL);
}
END_TEST

/* AES-KW (RFC 3394, no padding): libkm has no unpadded KW API. Every case is counted as
 * unsupported; as a cross-mode check, no KW wrap of the file may unwrap as KWP (the two use
 * different integrity values, so a KW blob must never be taken for a KWP one). */
static unsigned kw_cross_check(vstats *s, long tc, const uint8_t *kek, size_t klen,
                               const uint8_t *ct, size_t clen)
{
    size_t cap = clen + 16, olen = 0;
    uint8_t *out = malloc(cap);
    int rc;
    ck_assert_ptr_nonnull(out);
    memset(out, 0xAA, cap);
    rc = km__kwp_unwrap(kek, klen, ct, clen, out, cap, &olen);
    if (rc == KM_OK)
        vfail(s, tc, "an RFC 3394 KW blob unwrapped as KWP (%zu bytes)", olen);
    else if (rc != KM_E_INTEGRITY && rc != KM_E_INVALID)
        vfail(s, tc, "KW blob refused by KWP unwrap with an unclean error %s", km_err_name(rc));
    else if (!tu_all_zero(out, clen))
        vfail(s, tc, "refused unwrap left bytes in the output buffer");
    free(out);
    return rc != KM_OK;
}

static void wrap_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    unsigned *refused = arg;
    size_t klen, clen;
    uint8_t *key = jhex(t, "key", &klen), *ct = jhex(t, "ct", &clen);
    (void)g;
    (void)jresult(t);
    s->n++;
    s->unsup++;
    *refused += kw_cross_check(s, jint(t, "tcId"), key, klen, ct, clen);
    free(key);
    free(ct);
}

static void wrap_notes(vstats *s, void *arg)
{
    vnote(s, "all cases unsupported: libkm has no unpadded AES-KW (RFC 3394) API; "
             "cross-mode check: %u/%u KW blobs refused by KWP unwrap",
          *(const unsigned *)arg, s->n);
}

START_TEST(test_vectors_aes_wrap)
{
    unsigned refused = 0;
    run_file("aes_wrap_test.json", wrap_each, wrap_notes, &refused);
}
END_TEST

/* -------------------------------------------------------------------- HKDF */

static km_ctx *hkdf_ctx;       /* a vault for the km_derive pass, or NULL */
static size_t hkdf_api_cases;  /* cases also run through km_derive */

static int hkdf_case(vstats *s, long tc, int r, const uint8_t *ikm, size_t ilen,
                     const uint8_t *salt, size_t slen, const uint8_t *info, size_t nlen,
                     size_t size, const uint8_t *okm, size_t olen)
{
    uint8_t *out = malloc(size + 1);
    int rc, ok = 1;

    ck_assert_ptr_nonnull(out);
    memset(out, 0xAA, size + 1);
    rc = km__hkdf_sha256(ikm, ilen, salt, slen, info, nlen, out, size);
    if (r == R_VALID) {
        if (rc != KM_OK || olen != size || memcmp(out, okm, size) != 0) {
            vfail(s, tc, "km__hkdf_sha256 (%zu bytes): %s or wrong output", size,
                  km_err_name(rc));
            ok = 0;
        }
    } else {
        if (rc == KM_OK) {
            vfail(s, tc, "INVALID HKDF REQUEST ANSWERED (%zu bytes)", size);
            ok = 0;
        } else if (rc != KM_E_INVALID) {
            vfail(s, tc, "invalid HKDF request refused with %s, not KM_E_INVALID",
                  km_err_name(rc));
            ok = 0;
        }
    }
    /* The same case through the public API: the ikm imported as an HMAC key,
     * km_derive (HKDF-SHA-256 from it). Keys shorter than libkm's 14-byte
     * minimum for raw HMAC keys are not importable: counted apart. */
    if (hkdf_ctx != NULL && ilen >= 14 && ilen <= 1024 && slen <= 4096 && nlen <= 4096) {
        char name[64];
        km_key *k = NULL;
        km_secret *d = (km_secret *)1;
        snprintf(name, sizeof name, "hkdf-%s-%ld", s->file, tc);
        rc = km_key_import(&k, hkdf_ctx, name, KM_KEY_HMAC_SHA256, KM_MATERIAL_RAW, ikm, ilen,
                           KM_IMPORT_ALLOW_RAW, NULL);
        if (rc != KM_OK) {
            vfail(s, tc, "import of the ikm as an HMAC key: %s", km_err_name(rc));
            return 0;
        }
        rc = km_derive(k, salt, slen, info, nlen, size, &d);
        if (r == R_VALID) {
            if (rc != KM_OK || olen != size || memcmp(km_secret_data(d), okm, size) != 0) {
                vfail(s, tc, "km_derive (%zu bytes): %s or wrong output", size, km_err_name(rc));
                ok = 0;
            }
        } else if (rc == KM_OK || d != NULL) {
            vfail(s, tc, "INVALID HKDF REQUEST ANSWERED by km_derive (%zu bytes)", size);
            ok = 0;
        }
        if (rc == KM_OK)
            km_secret_free(d);
        km_key_free(k);
        hkdf_api_cases++;
    }
    free(out);
    return ok;
}

static void hkdf_each(vstats *s, json_t *g, json_t *t, void *arg)
{
    long tc = jint(t, "tcId");
    int r = jresult(t), ok;
    size_t ilen, slen, nlen, olen;
    uint8_t *ikm = jhex(t, "ikm", &ilen), *salt = jhex(t, "salt", &slen),
            *info = jhex(t, "info", &nlen), *okm = jhex(t, "okm", &olen);
    long size = jint(t, "size");
    (void)g;
    (void)arg;
    ck_assert_int_ge(size, 0);
    s->n++;
    ok = hkdf_case(s, tc, r == R_ACCEPTABLE ? R_VALID : r, ikm, ilen, salt, slen, info, nlen,
                   (size_t)size, okm, olen);
    count_result(s, r, ok);
    free(ikm);
    free(salt);
    free(info);
    free(okm);
}

/* Printed before the file's line, as it was: the cases also run through km_derive. */
static void hkdf_notes(vstats *s, void *arg)
{
    (void)arg;
    printf("vectors: %s: %zu cases also through km_derive (ikm imported as an HMAC key; "
           "shorter ikm than 14 bytes cannot be an HMAC key)\n", s->file, hkdf_api_cases);
}

START_TEST(test_vectors_hkdf_sha256)
{
    char *vdir = tu_tmpdir();

    hkdf_ctx = tu_vault(vdir);
    hkdf_api_cases = 0;
    run_file("hkdf_sha256_test.json", hkdf_each, hkdf_notes, NULL);
    km_close(hkdf_ctx);
    hkdf_ctx = NULL;
    tu_rmtree(vdir);
    free(vdir);
}
END_TEST

/* --------------------------------------------------------------- RFC vectors */

static json_t *jarr_opt(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(v == NULL || json_is_array(v), "field '%s' is not an array", key);
    return v;
}

/* A printed line per section, with the same counters. */
static void rfc_section_report(vstats *s, const char *section, unsigned *total_fail)
{
    char file[96];
    snprintf(file, sizeof file, "rfc_vectors.json[%s]", section);
    printf("vectors: %s: %u tests, %u/%u valid passed, %u/%u invalid refused, %u acceptable "
           "(none in file), %u unsupported parameters\n",
           file, s->n, s->valid_ok, s->valid, s->invalid_ok, s->invalid, s->acc, s->unsup);
    if (s->note[0] != '\0')
        printf("vectors: %s: note: %s\n", file, s->note);
    fflush(stdout);
    *total_fail += s->failures;
    ck_assert_msg(s->n == s->valid + s->invalid + s->acc + s->unsup, "%s: bookkeeping", file);
}

static void rfc_hmac(json_t *root, km_ctx *ctx, const char *section, km_key_type type,
                     size_t full_len, unsigned *total_fail)
{
    json_t *arr = jarr_opt(root, section), *t;
    size_t i;
    unsigned trunc_checked = 0;
    vstats s;

    if (arr == NULL)
        return;
    vs_init(&s, section);
    s.file = section;
    json_array_foreach(arr, i, t) {
        size_t klen, dlen, mlen;
        uint8_t *key = jhex(t, "key", &klen), *data = jhex(t, "data", &dlen),
                *mac = jhex(t, "mac", &mlen);
        unsigned before_unsup = s.unsup, before_fail = s.failures;
        long tc = (long)i + 1;

        /* RFC 4231 truncated cases (TC5) give fewer bytes than the digest: km_mac_verify only. */
        hmac_case(&s, ctx, type, full_len, tc, R_VALID, key, klen, data, dlen, mac, mlen);
        if (s.unsup == before_unsup && s.failures == before_fail && mlen >= HMAC_TAG_MIN) {
            /* the leftmost 16 bytes verify, 15 are refused by design, a changed byte is refused */
            km_key *k = NULL;
            char name[48];
            int rc;
            snprintf(name, sizeof name, "hmac-%d-%ld", (int)type, tc);
            ck_assert_int_eq(km_key_open(&k, ctx, name), KM_OK);
            rc = km_mac_verify(k, 0, KM_SIG_RAW, data, dlen, mac, HMAC_TAG_MIN);
            if (rc != KM_OK)
                vfail(&s, tc, "%s: 16-byte truncation refused: %s", jstr(t, "id"), km_err_name(rc));
            rc = km_mac_verify(k, 0, KM_SIG_RAW, data, dlen, mac, HMAC_TAG_MIN - 1);
            if (rc != KM_E_VERIFY)
                vfail(&s, tc, "%s: 15-byte truncation gave %s, not KM_E_VERIFY", jstr(t, "id"),
                      km_err_name(rc));
            mac[mlen - 1] ^= 1;
            rc = km_mac_verify(k, 0, KM_SIG_RAW, data, dlen, mac, mlen);
            if (rc != KM_E_VERIFY)
                vfail(&s, tc, "%s: changed tag gave %s, not KM_E_VERIFY", jstr(t, "id"),
                      km_err_name(rc));
            km_key_free(k);
            trunc_checked++;
        } else if (s.unsup != before_unsup) {
            vnote(&s, "%s refused by design (%zu-byte key; raw HMAC keys are 14..1024 bytes)",
                  jstr(t, "id"), klen);
        }
        free(key);
        free(data);
        free(mac);
    }
    vnote(&s, "%u cases also checked truncated to 16 bytes (accepted), 15 bytes and with a "
              "changed byte (refused)",
          trunc_checked);
    rfc_section_report(&s, section, total_fail);
}

START_TEST(test_vectors_rfc_vectors)
{
    json_t *root = load_json("rfc_vectors.json"), *arr, *t;
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    unsigned fail = 0, sections = 0;
    size_t i;
    vstats s;

    /* RFC 3394 (KW without padding): no libkm API; skipped, with the cross-mode check. */
    if ((arr = jarr_opt(root, "rfc3394_kw")) != NULL) {
        unsigned refused = 0;
        vs_init(&s, "rfc3394_kw");
        json_array_foreach(arr, i, t) {
            size_t klen, clen;
            uint8_t *kek = jhex(t, "kek", &klen), *w = jhex(t, "wrapped", &clen);
            s.n++;
            s.unsup++;
            refused += kw_cross_check(&s, (long)i + 1, kek, klen, w, clen);
            free(kek);
            free(w);
        }
        vnote(&s, "skipped: libkm has no unpadded KW API; %u/%u KW blobs refused by KWP unwrap",
              refused, s.n);
        rfc_section_report(&s, "rfc3394_kw", &fail);
        sections++;
    }
    /* RFC 5649 (KWP) through the vault's primitive. */
    if ((arr = jarr_opt(root, "rfc5649_kwp")) != NULL) {
        vs_init(&s, "rfc5649_kwp");
        json_array_foreach(arr, i, t) {
            size_t klen, mlen, clen;
            uint8_t *kek = jhex(t, "kek", &klen), *m = jhex(t, "key_data", &mlen),
                    *w = jhex(t, "wrapped", &clen);
            s.n++;
            count_valid(&s, kwp_case(&s, (long)i + 1, R_VALID, kek, klen, m, mlen, w, clen));
            /* the same wrap with one bit changed must not unwrap */
            w[clen / 2] ^= 0x01;
            s.n++;
            count_invalid(&s, kwp_case(&s, (long)i + 1, R_INVALID, kek, klen, m, mlen, w, clen));
            free(kek);
            free(m);
            free(w);
        }
        vnote(&s, "each RFC case run as given (valid) and with one bit flipped (invalid)");
        rfc_section_report(&s, "rfc5649_kwp", &fail);
        sections++;
    }
    /* RFC 5869 (HKDF-SHA-256). */
    if ((arr = jarr_opt(root, "rfc5869_hkdf_sha256")) != NULL) {
        vs_init(&s, "rfc5869_hkdf_sha256");
        json_array_foreach(arr, i, t) {
            size_t ilen, slen, nlen, olen;
            uint8_t *ikm = jhex(t, "ikm", &ilen), *salt = jhex(t, "salt", &slen),
                    *info = jhex(t, "info", &nlen), *okm = jhex(t, "okm", &olen);
            long L = jint(t, "L");
            ck_assert_int_gt(L, 0);
            s.n++;
            count_valid(&s, hkdf_case(&s, (long)i + 1, R_VALID, ikm, ilen, salt, slen, info, nlen,
                                      (size_t)L, okm, olen));
            free(ikm);
            free(salt);
            free(info);
            free(okm);
        }
        rfc_section_report(&s, "rfc5869_hkdf_sha256", &fail);
        sections++;
    }
    /* RFC 4231 (HMAC) through the public API. */
    if (json_object_get(root, "rfc4231_hmac_sha256") != NULL)
        sections++;
    if (json_object_get(root, "rfc4231_hmac_sha384") != NULL)
        sections++;
    if (json_object_get(root, "rfc4231_hmac_sha512") != NULL)
        sections++;
    rfc_hmac(root, ctx, "rfc4231_hmac_sha256", KM_KEY_HMAC_SHA256, 32, &fail);
    rfc_hmac(root, ctx, "rfc4231_hmac_sha384", KM_KEY_HMAC_SHA384, 48, &fail);
    rfc_hmac(root, ctx, "rfc4231_hmac_sha512", KM_KEY_HMAC_SHA512, 64, &fail);
    /* GCM spec (McGrew-Viega) through the software backend's AEAD. */
    if ((arr = jarr_opt(root, "gcm_spec_aes256")) != NULL) {
        vs_init(&s, "gcm_spec_aes256");
        json_array_foreach(arr, i, t) {
            size_t klen, ivlen, alen, plen, clen, tlen;
            uint8_t *key = jhex(t, "key", &klen), *iv = jhex(t, "iv", &ivlen),
                    *aad = jhex(t, "aad", &alen), *pt = jhex(t, "pt", &plen),
                    *ct = jhex(t, "ct", &clen), *tag = jhex(t, "tag", &tlen);
            ck_assert_uint_eq(ivlen, 12);
            ck_assert_uint_eq(tlen, 16);
            s.n++;
            count_valid(&s, gcm_case(&s, (long)i + 1, R_VALID, key, klen, iv, aad, alen, pt, plen,
                                     ct, clen, tag));
            tag[0] ^= 0x80;
            s.n++;
            count_invalid(&s, gcm_case(&s, (long)i + 1, R_INVALID, key, klen, iv, aad, alen, pt,
                                       plen, ct, clen, tag));
            free(key);
            free(iv);
            free(aad);
            free(pt);
            free(ct);
            free(tag);
        }
        vnote(&s, "each case run as given (valid) and with its tag changed (invalid)");
        rfc_section_report(&s, "gcm_spec_aes256", &fail);
        sections++;
    }
    ck_assert_msg(sections >= 5, "rfc_vectors.json: only %u known sections found", sections);
    {
        /* every top-level section must have been run */
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            if (!json_is_array(v))
                continue;
            ck_assert_msg(strcmp(k, "rfc3394_kw") == 0 || strcmp(k, "rfc5649_kwp") == 0
                              || strcmp(k, "rfc5869_hkdf_sha256") == 0
                              || strncmp(k, "rfc4231_hmac_sha", 16) == 0
                              || strcmp(k, "gcm_spec_aes256") == 0,
                          "rfc_vectors.json: section '%s' is not run by this suite", k);
        }
    }
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
    json_decref(root);
    ck_assert_msg(fail == 0, "rfc_vectors.json: %u failure(s), first ones on stderr", fail);
}
END_TEST

/* ------------------------------------------------------------------- suite */

/* ------------------------------------------------- raw agreement (ECDH, X25519) */

/* PKCS#8 of a P-256 private scalar without the public key (OpenSSL computes it): the fixed
 * prefix, then the scalar as 32 bytes. */
static const char p256_pkcs8_prefix[] =
    "308141020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420";
/* SubjectPublicKeyInfo of a raw X25519 public key: the prefix, then the 32 bytes. */
static const uint8_t x25519_spki_prefix[12] = { 0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
                                                0x6e, 0x03, 0x21, 0x00 };

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    while (n--)
        acc |= p[n];
    return acc == 0;
}

/* One agreement case through km_key_import + km_agree_raw: a valid case must give `shared`,
 * an invalid one must be refused with KM_E_INVALID; an acceptable one may go either way but,
 * accepted, must give `shared`; an all-zero X25519 secret (a low-order peer, RFC 7748 section
 * 6.1) must never come out (an ECDH x-coordinate of 0 is a valid secret: tcId 3). */
static void agree_case(vstats *s, km_ctx *ctx, km_key_type type, long tc, int r,
                       const uint8_t *priv, size_t plen, const uint8_t *peer, size_t peer_len,
                       const uint8_t *shared, size_t slen)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    km_secret *z = NULL;
    char name[160];
    int rc, right;

    o.usage = KM_USAGE_AGREE_RAW;
    /* one key per private key (the ECDH file uses 34 for 612 cases): named by its material */
    ck_assert_uint_ge(plen, 32); /* the scalar is the material's last 32 bytes */
    snprintf(name, sizeof name, "agree-%d-", (int)type);
    for (size_t i = plen - 32; i < plen; i++)
        snprintf(name + strlen(name), 3, "%02x", priv[i]);
    if (km_key_open(&k, ctx, name) != KM_OK) {
        rc = km_key_import(&k, ctx, name, type, type == KM_KEY_X25519 ? KM_MATERIAL_RAW
                                                                       : KM_MATERIAL_PKCS8_DER,
                           priv, plen, KM_IMPORT_ALLOW_RAW, &o);
        ck_assert_msg(rc == KM_OK, "%s: tcId %ld: import: %s", s->file, tc,
                      km_error_last()->message);
    }
    s->n++;
    rc = km_agree_raw(k, peer, peer_len, &z);
    right = rc == KM_OK && km_secret_len(z) == slen && memcmp(km_secret_data(z), shared, slen) == 0;
    if (rc == KM_OK && type == KM_KEY_X25519 && all_zero(km_secret_data(z), km_secret_len(z)))
        vfail(s, tc, "an all-zero shared secret was given out");
    if (r == R_VALID) {
        count_valid(s, right);
        if (!right)
            vfail(s, tc, "valid case: %s", km_err_name(rc));
    } else if (r == R_INVALID) {
        count_invalid(s, rc == KM_E_INVALID);
        if (rc == KM_OK)
            vfail(s, tc, "INVALID PEER ACCEPTED");
        else if (rc != KM_E_INVALID)
            vfail(s, tc, "refused with %s, not KM_E_INVALID", km_err_name(rc));
    } else {
        count_acceptable(s, rc == KM_OK);
        if (rc == KM_OK && !right)
            vfail(s, tc, "acceptable case accepted with a wrong secret");
        else if (rc != KM_OK && rc != KM_E_INVALID)
            vfail(s, tc, "refused with %s, not KM_E_INVALID", km_err_name(rc));
    }
    km_secret_free(z);
    km_key_free(k);
}

/* Every case of an agreement file (ECDH P-256 with SPKI peers, or X25519 with raw keys). */
static void run_agree_file(const char *file, km_key_type type)
{
    json_t *root = load_json(file), *g, *t;
    char *dir = tu_tmpdir();
    km_ctx *ctx = tu_vault(dir);
    size_t gi, ti, prefix_len = 0;
    uint8_t *prefix = tu_unhex(p256_pkcs8_prefix, &prefix_len);
    unsigned zero = 0;
    vstats s;

    vs_init(&s, file);
    json_array_foreach(jarr(root, "testGroups"), gi, g) {
        ck_assert_str_eq(jstr(g, "curve"), type == KM_KEY_X25519 ? "curve25519" : "secp256r1");
        json_array_foreach(jarr(g, "tests"), ti, t) {
            size_t plen, klen, slen;
            uint8_t *pub = jhex(t, "public", &plen), *d = jhex(t, "private", &klen),
                    *shared = jhex(t, "shared", &slen), pk8[128], spki[44];
            const uint8_t *dd = d;
            if (type == KM_KEY_X25519) {
                /* raw 32-byte keys: the peer into a SubjectPublicKeyInfo */
                ck_assert_uint_eq(plen, 32);
                ck_assert_uint_eq(klen, 32);
                memcpy(spki, x25519_spki_prefix, sizeof x25519_spki_prefix);
                memcpy(spki + sizeof x25519_spki_prefix, pub, 32);
                zero += all_zero(shared, slen);
                agree_case(&s, ctx, type, jint(t, "tcId"), jresult(t), d, klen, spki,
                           sizeof spki, shared, slen);
            } else {
                /* the scalar (a signed big-endian integer in the file) as 32 bytes of PKCS#8 */
                ck_assert_str_eq(jstr(g, "encoding"), "asn");
                while (klen > 32 && *dd == 0) {
                    dd++;
                    klen--;
                }
                ck_assert_uint_le(klen, 32);
                memcpy(pk8, prefix, prefix_len);
                memset(pk8 + prefix_len, 0, 32 - klen);
                memcpy(pk8 + prefix_len + 32 - klen, dd, klen);
                agree_case(&s, ctx, type, jint(t, "tcId"), jresult(t), pk8, prefix_len + 32, pub,
                           plen, shared, slen);
            }
            free(pub);
            free(d);
            free(shared);
        }
    }
    if (type == KM_KEY_X25519)
        vnote(&s, "through km_key_import (raw) and km_agree_raw; %u cases whose secret is all "
                  "zero (low-order peers) must be refused", zero);
    else
        vnote(&s, "through km_key_import (PKCS#8) and km_agree_raw; the acceptable cases are "
                  "alternative ASN.1 encodings, compressed points, unused or explicit parameters "
                  "(explicit curves are refused, issue 23 item 6)");
    vs_report(&s, (unsigned)jint(root, "numberOfTests"));
    free(prefix);
    km_close(ctx);
    tu_rmtree(dir);
    free(dir);
    json_decref(root);
}

START_TEST(test_vectors_ecdh_secp256r1)
{
    run_agree_file("ecdh_secp256r1_test.json", KM_KEY_EC_P256);
}
END_TEST

START_TEST(test_vectors_x25519)
{
    run_agree_file("x25519_test.json", KM_KEY_X25519);
}
END_TEST

static Suite *vectors_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("vectors", NULL, &tc, 60, NULL, NULL);

    /* 60 s: the slowest test takes ~17 s under valgrind */
    tcase_add_test(tc, test_vectors_aes_gcm);
    tcase_add_test(tc, test_vectors_aes_kwp);
    tcase_add_test(tc, test_vectors_aes_wrap);
    tcase_add_test(tc, test_vectors_hkdf_sha256);
    tcase_add_test(tc, test_vectors_hmac_sha256);
    tcase_add_test(tc, test_vectors_ecdsa_secp256r1_sha256);
    tcase_add_test(tc, test_vectors_ecdsa_secp256r1_sha256_p1363);
    tcase_add_test(tc, test_vectors_ed25519);
    tcase_add_test(tc, test_vectors_rsa_pss_2048_sha256_mgf1_32);
    tcase_add_test(tc, test_vectors_rfc_vectors);
    tcase_add_test(tc, test_vectors_aes_cmac);
    tcase_add_test(tc, test_vectors_cmac_rfc4493_sp800_38b);
    tcase_add_test(tc, test_vectors_rsa_oaep_2048_sha256);
    tcase_add_test(tc, test_vectors_rsa_oaep_2048_sha384);
    tcase_add_test(tc, test_vectors_rsa_oaep_2048_sha512);
    tcase_add_test(tc, test_vectors_aes_siv_cmac);
    /* a key import and an audited call per case: a longer timeout for valgrind */
    tc = tu_tcase(s, "agreement", 600, NULL, NULL);
    tcase_add_test(tc, test_vectors_ecdh_secp256r1);
    tcase_add_test(tc, test_vectors_x25519);
    return s;
}

int main(void)
{
    if (km_init() != KM_OK) {
        fprintf(stderr, "km_init failed\n");
        return 1;
    }
    return tu_run(vectors_suite());
}
