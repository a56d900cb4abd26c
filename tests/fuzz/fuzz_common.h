/*
 * fuzz_common.h - the fixture shared by the libFuzzer targets of tests/fuzz/:
 * one vault, created once per process in a temporary directory (on /dev/shm
 * when it is writable, so that LMDB commits are cheap), holding keys imported
 * from fixed material under fixed ids, so that the seed corpora made by
 * tests/fuzz/gen_corpus.c (real libkm output) decrypt and verify here too.
 *
 * FUZZ_CHECK(cond) traps (a crash libFuzzer reports) when an API promise
 * is broken; the replay driver (replay.c) runs the same code under gcc.
 */
#ifndef KM_FUZZ_COMMON_H
#define KM_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <km.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);     \
            __builtin_trap();                                                                  \
        }                                                                                      \
    } while (0)

/* The fixed material and ids (never secrets: test data). */
#define FZ_PASS "fuzz passphrase"
#define FZ_AAD "fuzz aad"
#define FZ_MSG "fuzz message"
static const uint8_t fz_aes_key[32] = {
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0 };
static const uint8_t fz_hmac_key[32] = {
    0x4b, 0x4d, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x68, 0x6d, 0x61, 0x63, 0x2d, 0x6b, 0x65, 0x79,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10 };
static const uint8_t fz_ed_key[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60 };
/* The KEK of fuzz_export's blobs (AES-256-KWP, wrap/unwrap only). */
static const uint8_t fz_kek_key[32] = {
    0x6b, 0x65, 0x6b, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
    0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
/* An EC P-256 private key, PKCS#8 DER (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256). */
static const char fz_ec_pkcs8_hex[] =
    "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420"
    "e21bcd0995614d1ef54740ca0d436f9771ed98d5c49ad4ce446e4427667c89b3a1440342"
    "000444a7f46a30102847d1a346e2de974afdf1ba49b3fadf46afb05a4154e8ff93586a1c"
    "3f6a7c82d6cbf669434ea6aa084bf14326e26ea18905d2942dfd4a82d9c0";
#define FZ_ID(c) { 'f', 'u', 'z', 'z', '-', 'k', 'e', 'y', '-', 'i', 'd', '-', '0', '0', '0', c }

typedef struct fz_fixture {
    char dir[256];
    km_ctx *ctx;
    km_key *aes, *hmac, *ed, *ec, *kek;
} fz_fixture;

static fz_fixture fz;

static inline int fz_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static inline void fz_rmtree(const char *path)
{
    (void)nftw(path, fz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory in `out`; exits on failure. */
static inline void fz_mkdtemp(char *out, size_t cap, const char *tag)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(out, cap, "%s/km-fuzz-%s-XXXXXX", base, tag);
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

static inline void fz_teardown(void)
{
    km_key_free(fz.aes);
    km_key_free(fz.hmac);
    km_key_free(fz.ed);
    km_key_free(fz.ec);
    km_key_free(fz.kek);
    km_close(fz.ctx);
    fz_rmtree(fz.dir);
    memset(&fz, 0, sizeof fz);
}

static inline void fz_die(const char *what, int rc)
{
    fprintf(stderr, "fuzz fixture: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    exit(2);
}

static inline km_key *fz_import_usage(const char *name, km_key_type type, km_material_format fmt,
                                      const uint8_t *m, size_t mlen, char idc, uint32_t usage)
{
    static const uint8_t base_id[16] = FZ_ID('0');
    uint8_t id[16];
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    int rc;
    memcpy(id, base_id, 16);
    id[15] = (uint8_t)idc;
    ko.key_id = id;
    ko.usage = usage;
    rc = km_key_import(&k, fz.ctx, name, type, fmt, m, mlen, KM_IMPORT_ALLOW_RAW, &ko);
    if (rc != KM_OK)
        fz_die(name, rc);
    return k;
}

static inline km_key *fz_import(const char *name, km_key_type type, km_material_format fmt,
                                const uint8_t *m, size_t mlen, char idc)
{
    return fz_import_usage(name, type, fmt, m, mlen, idc, 0);
}

static inline void fz_unhex(const char *hex, uint8_t *out, size_t *len)
{
    size_t i, n = strlen(hex) / 2;
    for (i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    *len = n;
}

/* Creates the vault and its keys once per process. */
static inline void fz_setup(void)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char uri[300];
    uint8_t ec[200];
    size_t ec_len;
    int rc;

    if (fz.ctx != NULL)
        return;
    fz_mkdtemp(fz.dir, sizeof fz.dir, "vault");
    snprintf(uri, sizeof uri, "lmdb:%s/vault", fz.dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)FZ_PASS;
    o.passphrase_len = strlen(FZ_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    if ((rc = km_open(&fz.ctx, uri, &o)) != KM_OK)
        fz_die("km_open", rc);
    fz.aes = fz_import("fz-aes", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, fz_aes_key, 32, '1');
    fz.hmac = fz_import("fz-hmac", KM_KEY_HMAC_SHA256, KM_MATERIAL_RAW, fz_hmac_key, 32, '2');
    fz.ed = fz_import("fz-ed", KM_KEY_ED25519, KM_MATERIAL_RAW, fz_ed_key, 32, '3');
    fz_unhex(fz_ec_pkcs8_hex, ec, &ec_len);
    fz.ec = fz_import("fz-ec", KM_KEY_EC_P256, KM_MATERIAL_PKCS8_DER, ec, ec_len, '4');
    fz.kek = fz_import_usage("fz-kek", KM_KEY_AES_256_KWP, KM_MATERIAL_RAW, fz_kek_key, 32, '5',
                             KM_USAGE_WRAP | KM_USAGE_UNWRAP);
    atexit(fz_teardown);
}

static inline int fz_all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Every code a public call may return (negative km_error_code or KM_OK). */
static inline int fz_known_rc(int rc)
{
    return rc <= KM_OK && rc >= KM_E_INTERNAL;
}

#endif
