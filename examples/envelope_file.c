/* envelope_file.c - encrypt a file with a fresh data key that a vault key wraps (envelope encryption). */
/*
 * Envelope encryption, as AWS KMS and Google Cloud KMS do it: the vault key
 * (the KEK) never touches the file's bytes. For each file libkm generates a
 * 256-bit data key, returns it in secure memory together with its wrapped
 * form, and the application encrypts the file locally with AES-256-GCM under
 * the data key (here with OpenSSL EVP, in 64 KiB chunks, so any file size
 * works). Only the wrapped data key is stored, at the head of the file:
 *
 *     "KMF1" | wrapped data key (KM_DATAKEY_WRAPPED_LEN) | nonce (12) | ciphertext | tag (16)
 *
 * The file's name is the aad of both the wrapped key and the GCM encryption,
 * so a file renamed or swapped with another fails to decrypt. Each data key
 * encrypts exactly one file, so its one random nonce can never repeat.
 * Rotating the KEK later only needs km_rewrap() on the 84-byte header.
 *
 * Usage: envelope_file [DIR]   (a temporary directory by default)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <km.h>

#define CHUNK 65536
#define MAGIC "KMF1"

static int km_fail(const char *what, int rc)
{
    fprintf(stderr, "envelope_file: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return -1;
}

static int io_fail(const char *what)
{
    fprintf(stderr, "envelope_file: %s failed\n", what);
    return -1;
}

/* Encrypts `in` to `out` under a new data key wrapped by `kek`; aad = the file's name. */
static int encrypt_file(km_key *kek, const char *name, FILE *in, FILE *out)
{
    uint8_t wrapped[KM_DATAKEY_WRAPPED_LEN], nonce[12], tag[16];
    static uint8_t buf[CHUNK], obuf[CHUNK];
    km_secret *dek = NULL;
    EVP_CIPHER_CTX *c = NULL;
    size_t wrapped_len, n;
    int len, rc, ret = -1;

    rc = km_datakey_generate(kek, (const uint8_t *)name, strlen(name), &dek, wrapped, sizeof wrapped,
                             &wrapped_len);
    if (rc != KM_OK)
        return km_fail("km_datakey_generate", rc);
    if (RAND_bytes(nonce, sizeof nonce) != 1 || (c = EVP_CIPHER_CTX_new()) == NULL
        || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, km_secret_data(dek), nonce) != 1
        || EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)name, (int)strlen(name)) != 1) {
        io_fail("EVP encrypt init");
        goto out;
    }
    if (fwrite(MAGIC, 1, 4, out) != 4 || fwrite(wrapped, 1, wrapped_len, out) != wrapped_len
        || fwrite(nonce, 1, sizeof nonce, out) != sizeof nonce) {
        io_fail("write header");
        goto out;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (EVP_EncryptUpdate(c, obuf, &len, buf, (int)n) != 1
            || fwrite(obuf, 1, (size_t)len, out) != (size_t)len) {
            io_fail("encrypt");
            goto out;
        }
    }
    if (ferror(in) || EVP_EncryptFinal_ex(c, obuf, &len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, sizeof tag, tag) != 1
        || fwrite(tag, 1, sizeof tag, out) != sizeof tag || fflush(out) != 0) {
        io_fail("finish");
        goto out;
    }
    ret = 0;
out:
    EVP_CIPHER_CTX_free(c);
    km_secret_free(dek); /* wipes the data key */
    return ret;
}

/*
 * Decrypts a file written by encrypt_file(). The plaintext is written to `out`
 * as it is decrypted but is only to be trusted when this returns 0 (the tag is
 * checked at the end): a real program writes to a temporary file and renames
 * it into place only on success.
 */
static int decrypt_file(km_ctx *ctx, const char *name, FILE *in, FILE *out)
{
    uint8_t head[4 + KM_DATAKEY_WRAPPED_LEN + 12], tag[16];
    static uint8_t buf[CHUNK + 16], obuf[CHUNK + 16];
    size_t have = 0, n;
    km_secret *dek = NULL;
    EVP_CIPHER_CTX *c = NULL;
    int len, rc, ret = -1;

    if (fread(head, 1, sizeof head, in) != sizeof head || memcmp(head, MAGIC, 4) != 0)
        return io_fail("read header (not an envelope file)");
    rc = km_datakey_decrypt(ctx, head + 4, KM_DATAKEY_WRAPPED_LEN, (const uint8_t *)name,
                            strlen(name), &dek);
    if (rc != KM_OK)
        return km_fail("km_datakey_decrypt", rc);
    if ((c = EVP_CIPHER_CTX_new()) == NULL
        || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, km_secret_data(dek),
                              head + 4 + KM_DATAKEY_WRAPPED_LEN) != 1
        || EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)name, (int)strlen(name)) != 1) {
        io_fail("EVP decrypt init");
        goto out;
    }
    /* the last 16 bytes of the file are the tag: always keep 16 bytes back */
    while ((n = fread(buf + have, 1, CHUNK + 16 - have, in)) > 0) {
        have += n;
        if (have > 16) {
            if (EVP_DecryptUpdate(c, obuf, &len, buf, (int)(have - 16)) != 1
                || fwrite(obuf, 1, (size_t)len, out) != (size_t)len) {
                io_fail("decrypt");
                goto out;
            }
            memmove(buf, buf + have - 16, 16);
            have = 16;
        }
    }
    if (ferror(in) || have != 16) {
        io_fail("read (file too short)");
        goto out;
    }
    memcpy(tag, buf, 16);
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, sizeof tag, tag) != 1
        || EVP_DecryptFinal_ex(c, obuf, &len) != 1) {
        fprintf(stderr, "envelope_file: %s: authentication failed (altered or renamed)\n", name);
        goto out;
    }
    ret = fflush(out) == 0 ? 0 : io_fail("flush");
out:
    EVP_CIPHER_CTX_free(c);
    km_secret_free(dek);
    return ret;
}

/* Runs one encrypt or decrypt from path `from` to path `to`. */
static int run(int enc, km_ctx *ctx, km_key *kek, const char *name, const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int rc = -1;
    if (in != NULL && out != NULL)
        rc = enc ? encrypt_file(kek, name, in, out) : decrypt_file(ctx, name, in, out);
    else
        io_fail("fopen");
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        rc = io_fail("fclose");
    return rc;
}

static int same_files(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int ca, cb, same = fa != NULL && fb != NULL;
    while (same) {
        ca = getc(fa);
        cb = getc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF)
            break;
    }
    if (fa != NULL)
        fclose(fa);
    if (fb != NULL)
        fclose(fb);
    return same;
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/km-envelope.XXXXXX", uri[300], plain[300], sealed[300], back[300], cmd[330];
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    const char *pass = "an example passphrase";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    km_key *kek = NULL;
    FILE *f;
    long i;
    int rc, status = 1;

    if (dir == NULL)
        return 1;
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    snprintf(plain, sizeof plain, "%s/report.csv", dir);
    snprintf(sealed, sizeof sealed, "%s/report.csv.kmf", dir);
    snprintf(back, sizeof back, "%s/report.csv.out", dir);

    /* a 200 KB sample file: several chunks */
    if ((f = fopen(plain, "wb")) == NULL)
        return 1;
    for (i = 0; i < 10000; i++)
        fprintf(f, "%06ld,customer %ld,%ld.%02ld\n", i, i * 7919 % 10007, i % 997, i % 100);
    if (fclose(f) != 0)
        return 1;

    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */
    if ((rc = km_open(&ctx, uri, &o)) != KM_OK) {
        km_fail("km_open", rc);
        goto out;
    }
    if ((rc = km_key_create(&kek, ctx, "file-kek", KM_KEY_AES_256_GCM, NULL)) != KM_OK) {
        km_fail("km_key_create", rc);
        goto out;
    }
    if (run(1, ctx, kek, "report.csv", plain, sealed) != 0
        || run(0, ctx, kek, "report.csv", sealed, back) != 0)
        goto out;
    if (!same_files(plain, back)) {
        fprintf(stderr, "envelope_file: the decrypted file differs\n");
        goto out;
    }
    /* the same file presented under another name must not decrypt */
    fprintf(stderr, "envelope_file: decrypting under another name (must be refused):\n");
    if (run(0, ctx, kek, "invoice.csv", sealed, back) == 0) {
        fprintf(stderr, "envelope_file: a renamed file decrypted\n");
        goto out;
    }
    /* nor may a file with one byte changed (the GCM tag is checked at the end) */
    if ((f = fopen(sealed, "r+b")) == NULL || fseek(f, 100000, SEEK_SET) != 0 || (i = getc(f)) == EOF
        || fseek(f, 100000, SEEK_SET) != 0 || putc((int)i ^ 1, f) == EOF || fclose(f) != 0) {
        io_fail("altering the sample");
        goto out;
    }
    fprintf(stderr, "envelope_file: decrypting an altered file (must be refused):\n");
    if (run(0, ctx, kek, "report.csv", sealed, back) == 0) {
        fprintf(stderr, "envelope_file: an altered file decrypted\n");
        goto out;
    }
    printf("envelope_file: %s encrypted under a wrapped data key and back; renamed or altered "
           "files are refused\n", plain);
    status = 0;
out:
    km_key_free(kek);
    km_close(ctx);
    if (argc <= 1) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            status = 1;
    }
    return status;
}
