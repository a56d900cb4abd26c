/*
 * gen_corpus.c - writes the seed corpora of tests/fuzz/corpus/<target>/ from
 * real libkm output, made in the same fixture vault (fixed key material and
 * ids, fuzz_common.h) that the targets use, so that the seeds pass the
 * authentication checks and lead the fuzzer past them.
 *
 *   tests/fuzz/gen_corpus DIR      (make fuzz-corpus writes tests/fuzz/corpus)
 *
 * Ciphertexts and signatures have random nonces: each run gives new bytes under
 * the same file names (seed-*), which is fine: any real sample will do.
 */
#include "fuzz_common.h"
#include "core.h"

#include <sys/stat.h>

static const char *root;
static int n_files;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data; (void)size;
    return 0;
}

static void put(const char *target, const char *name, const void *b, size_t n)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", root, target);
    (void)mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/seed-%s", root, target, name);
    f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(b, 1, n, f) != n)) {
        perror(path);
        exit(1);
    }
    fclose(f);
    n_files++;
}

#define CHECK(call)                                                                            \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != KM_OK) {                                                                    \
            fprintf(stderr, "%s: %s (%s)\n", #call, km_err_name(rc_), km_error_last()->message); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static void text_of(const char *name, const uint8_t *b, size_t n, const char *suffix)
{
    char t[4096];
    size_t tl;
    CHECK(km_text_encode(b, n, t, sizeof t - 8, &tl));
    strcat(t, suffix);
    put("text", name, t, strlen(t));
}

static void record_of(km__table tbl, const uint8_t *key, size_t kl, km_secret **out)
{
    km__txn *t = NULL;
    CHECK(km__txn_begin(fz.ctx->env, 0, &t));
    CHECK(km__rec_get(t, fz.ctx->sealer, tbl, key, kl, out));
    km__txn_abort(t);
}

/* Version 1's record of key record krec: the first entry of its version
 * list (tag 19, vault format 5). */
static void version1_of(const km_secret *krec, km_secret **out)
{
    const uint8_t *l = NULL;
    size_t ll = 0;
    if (!km__tlv_find(km_secret_data(krec), km_secret_len(krec), KM__K_VERSIONS, &l, &ll)
        || ll < 4 || km__be32_get(l) > ll - 4) {
        fprintf(stderr, "gen_corpus: a key record without its version list\n");
        exit(1);
    }
    CHECK(km_secret_from(out, l + 4, km__be32_get(l)));
}

int main(int argc, char **argv)
{
    const uint8_t *msg = (const uint8_t *)FZ_MSG;
    size_t ml = strlen(FZ_MSG), n;
    uint8_t ct[256], sig[KM_SIGNATURE_MAX], wk[KM_DATAKEY_WRAPPED_LEN], buf[8192];
    km_secret *krec = NULL, *vrec = NULL;
    km__policy *p = NULL;
    char *json;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    (void)mkdir(root, 0755);
    fz_setup();

    /* ciphertexts */
    CHECK(km_encrypt(fz.aes, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &n));
    put("ciphertext", "hello", ct, n);
    text_of("ct-hello", ct, n, "");
    text_of("ct-hello-nl", ct, n, "\r\n");
    CHECK(km_encrypt(fz.aes, NULL, 0, NULL, 0, ct, sizeof ct, &n));
    put("ciphertext", "empty", ct, n);
    CHECK(km_encrypt(fz.aes, msg, ml, (const uint8_t *)FZ_AAD, strlen(FZ_AAD), ct, sizeof ct, &n));
    put("ciphertext", "aad", ct, n);
    put("ciphertext", "header-only", ct, KM_CIPHERTEXT_HEADER);
    ct[2] = 2; /* a future format version */
    put("ciphertext", "format2", ct, n);

    /* wrapped data keys */
    CHECK(km_datakey_generate(fz.aes, NULL, 0, NULL, wk, sizeof wk, &n));
    put("datakey", "plain", wk, n);
    put("ciphertext", "datakey", wk, n);
    text_of("datakey", wk, n, "");
    CHECK(km_datakey_generate(fz.aes, (const uint8_t *)FZ_AAD, strlen(FZ_AAD), NULL, wk,
                              sizeof wk, &n));
    put("datakey", "aad", wk, n);

    /* tagged signatures and MACs, and raw ones */
    CHECK(km_sign(fz.ed, 0, msg, ml, sig, sizeof sig, &n));
    put("tagged", "ed25519", sig, n);
    text_of("sig-ed25519", sig, n, "");
    CHECK(km_sign(fz.ec, 0, msg, ml, sig, sizeof sig, &n));
    put("tagged", "ecdsa-der", sig, n);
    CHECK(km_sign(fz.ec, KM_SIG_P1363, msg, ml, sig, sizeof sig, &n));
    put("tagged", "ecdsa-p1363", sig, n);
    CHECK(km_sign(fz.ec, KM_SIG_RAW, msg, ml, sig, sizeof sig, &n));
    put("tagged", "ecdsa-der-raw", sig, n);
    CHECK(km_sign(fz.ed, KM_SIG_RAW, msg, ml, sig, sizeof sig, &n));
    put("tagged", "ed25519-raw", sig, n);
    CHECK(km_mac(fz.hmac, 0, msg, ml, sig, sizeof sig, &n));
    put("tagged", "hmac", sig, n);
    text_of("mac", sig, n, " ");
    CHECK(km_mac(fz.hmac, KM_SIG_RAW, msg, ml, sig, sizeof sig, &n));
    put("tagged", "hmac-raw", sig, n);
    put("tagged", "hmac-raw-16", sig, 16);
    put("text", "empty", "km1:", 4);

    /* vault records: the AES key's record and its version 1 record */
    record_of(KM__T_KEYS, km_key_id(fz.aes), 16, &krec);
    version1_of(krec, &vrec);
    put("tlv", "keyrec", km_secret_data(krec), km_secret_len(krec));
    put("tlv", "vmeta", km_secret_data(vrec), km_secret_len(vrec));
    put("tlv", "empty", "", 0);
    n = km_secret_len(krec);
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, km_secret_data(krec), n);
    memcpy(buf + 2 + n, km_secret_data(vrec), km_secret_len(vrec));
    put("record", "aes", buf, 2 + n + km_secret_len(vrec));
    km_secret_free(krec);
    km_secret_free(vrec);
    record_of(KM__T_KEYS, km_key_id(fz.ec), 16, &krec);
    version1_of(krec, &vrec);
    n = km_secret_len(krec);
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, km_secret_data(krec), n);
    memcpy(buf + 2 + n, km_secret_data(vrec), km_secret_len(vrec));
    put("record", "ec", buf, 2 + n + km_secret_len(vrec));
    km_secret_free(krec);
    km_secret_free(vrec);

    /* audit (fuzz_audit.c): the vault's first record, each entry without its
     * 37-byte MAC item (the target appends a valid one) */
    {
        uint8_t seq[8];
        const uint8_t *r;
        size_t left, len, out = 0;
        km__be64_put(seq, 1);
        record_of(KM__T_AUDIT, seq, 8, &krec);
        r = km_secret_data(krec);
        left = km_secret_len(krec);
        while (left >= 4 && (len = km__be32_get(r)) >= 37 && len <= left - 4
               && out + len < sizeof buf) {
            km__be32_put(buf + out, (uint32_t)(len - 37));
            memcpy(buf + out + 4, r + 4, len - 37);
            out += 4 + len - 37;
            r += 4 + len;
            left -= 4 + len;
        }
        put("audit", "record1", buf, out);
        if (out > 0)
            put("audit", "entry1", buf, 4 + km__be32_get(buf));
        km_secret_free(krec);
        krec = NULL;
    }

    /* export blobs (fuzz_export.c): [type selector][KWP blob under fz.kek] */
    {
        static const struct { km_key_type type; uint8_t sel; const char *name; } ex[] = {
            { KM_KEY_AES_256_GCM, 0, "aes" }, { KM_KEY_HMAC_SHA256, 1, "hmac" },
            { KM_KEY_ED25519, 2, "ed25519" }, { KM_KEY_EC_P256, 3, "ec" }
        };
        size_t i;
        for (i = 0; i < sizeof ex / sizeof ex[0]; i++) {
            km_key_options ko = KM_KEY_OPTIONS_INIT;
            km_key *k = NULL;
            char kn[32];
            ko.flags = KM_KEY_EXPORTABLE;
            snprintf(kn, sizeof kn, "fz-exp-%s", ex[i].name);
            CHECK(km_key_create(&k, fz.ctx, kn, ex[i].type, &ko));
            buf[0] = ex[i].sel;
            CHECK(km_key_export_wrapped(k, 0, KM_WRAP_KWP, fz.kek, NULL, 0, buf + 1,
                                        sizeof buf - 1, &n));
            put("export", ex[i].name, buf, n + 1);
            km_key_free(k);
        }
    }

    /* policies: the full JSON of both profiles, and small documents */
    CHECK(km__policy_default(&p, 0));
    json = km__policy_to_json(p);
    put("policy", "default", json, strlen(json));
    free(json);
    km__policy_free(p);
    CHECK(km__policy_default(&p, 1));
    json = km__policy_to_json(p);
    put("policy", "fips", json, strlen(json));
    free(json);
    km__policy_free(p);
    put("policy", "small", "{\"version\":1}", 13);
    put("policy", "profile", "{\"profile\":\"fips\"}", 18);

    /* km_open: [mode|flags<<2|version<<6][kdf][pass][map][path] (fuzz_open.c) */
    put("open", "existing", "\x00\x00\x01\x00v", 5);
    put("open", "create", "\x04\x00\x01\x00new", 7);
    put("open", "create-excl-fips", "\x2c\x00\x01\x02x", 5);
    put("open", "bare", "\x01\x00\x01\x00v", 5);
    put("open", "raw", "\x02\x00\x01\x00lmdb:v", 10);
    put("open", "raw-scheme", "\x02\x00\x01\x00pkcs11:token=x", 18);
    put("open", "abs3", "\x03\x00\x02\x00v", 5);
    put("open", "wrongpass", "\x00\x00\x02\x00v", 5);

    printf("gen_corpus: %d files under %s\n", n_files, root);
    return 0;
}
