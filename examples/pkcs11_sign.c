/* pkcs11_sign.c - sign releases with an ECDSA key generated inside a PKCS#11 HSM, and check the signature with plain OpenSSL. */
/*
 * The key is created with protection "pkcs11": the HSM generates it,
 * sensitive and non-extractable, and the vault stores only its reference
 * (token serial and CKA_ID). libkm still enforces the key's lifecycle, policy
 * and audit before every call to the token. Anyone can verify the signatures
 * with the exported public key and no libkm at all, as done here with OpenSSL.
 *
 * The HSM is configured once per vault with km_vault_backend_set(): the
 * module, an RFC 7512 token URI and the user PIN, e.g.
 *     module=/usr/lib/softhsm/libsofthsm2.so;token=pkcs11:token=releases;pin=1234
 * This example reads it from the environment variable KM_PKCS11_CONFIG (never
 * from the command line, where other users could see the PIN).
 *
 * Usage: KM_PKCS11_CONFIG=... pkcs11_sign DIR
 * (examples/pkcs11_sign.sh makes a temporary SoftHSM2 token and runs it.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <km.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "pkcs11_sign: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return 1;
}

/* Verifies a raw (DER) ECDSA-SHA-256 signature with OpenSSL alone: 1 valid, 0 not, -1 error. */
static int openssl_verify(const uint8_t *pem, size_t pem_len, const char *msg, const uint8_t *sig,
                          size_t sig_len)
{
    BIO *b = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pub = b != NULL ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int r = -1;

    if (pub != NULL && md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1)
        r = EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)msg, strlen(msg));
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pub);
    BIO_free(b);
    return r < 0 ? -1 : r;
}

static int run(km_ctx *ctx)
{
    const char *release = "libkm-1.0.0.tar.gz sha256=9f86d081884c7d659a2feaa0c55ad015";
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    uint8_t sig[KM_SIGNATURE_MAX], raw[KM_SIGNATURE_MAX], pem[2048], blob[4096];
    size_t sig_len, raw_len, pem_len, blob_len;
    km_keyinfo *info = NULL;
    km_key *key = NULL, *kek = NULL;
    int rc, status = 1;

    ko.protection = "pkcs11"; /* generated in the token, never leaves it */
    if ((rc = km_key_create(&key, ctx, "release-signing", KM_KEY_EC_P256, &ko)) != KM_OK)
        return fail("km_key_create (pkcs11)", rc);
    if ((rc = km_key_info(&info, key)) != KM_OK) {
        fail("km_key_info", rc);
        goto out;
    }
    printf("key '%s': %s, protection %s\n", km_keyinfo_name(info),
           km_key_type_name(km_keyinfo_type(info)), km_keyinfo_protection(info));
    km_keyinfo_free(info);

    /* a libkm signature (with its header naming key and version), checked by libkm */
    if ((rc = km_sign(key, 0, (const uint8_t *)release, strlen(release), sig, sizeof sig, &sig_len))
        != KM_OK) {
        fail("km_sign", rc);
        goto out;
    }
    if ((rc = km_verify(key, 0, 0, (const uint8_t *)release, strlen(release), sig, sig_len)) != KM_OK) {
        fail("km_verify", rc);
        goto out;
    }
    rc = km_verify(key, 0, 0, (const uint8_t *)"libkm-1.0.1.tar.gz", 18, sig, sig_len);
    if (rc != KM_E_VERIFY) {
        fprintf(stderr, "pkcs11_sign: another message gave %s, not KM_E_VERIFY\n", km_err_name(rc));
        goto out;
    }

    /* a raw DER signature for other tools, checked with OpenSSL and the public key only */
    if ((rc = km_sign(key, KM_SIG_RAW, (const uint8_t *)release, strlen(release), raw, sizeof raw,
                      &raw_len)) != KM_OK) {
        fail("km_sign (raw)", rc);
        goto out;
    }
    if ((rc = km_key_public_export(key, 0, KM_MATERIAL_PEM, pem, sizeof pem, &pem_len)) != KM_OK) {
        fail("km_key_public_export", rc);
        goto out;
    }
    if (openssl_verify(pem, pem_len, release, raw, raw_len) != 1) {
        fprintf(stderr, "pkcs11_sign: OpenSSL did not accept the signature\n");
        goto out;
    }
    printf("signed '%s': verified by libkm and by OpenSSL with the public key\n", release);

    /* created without KM_KEY_EXPORTABLE: it is non-extractable in the token and cannot
     * leave it, even wrapped */
    if ((rc = km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_KWP, NULL)) != KM_OK) {
        fail("km_key_create (kek)", rc);
        goto out;
    }
    rc = km_key_export_wrapped(key, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &blob_len);
    if (rc == KM_OK) {
        fprintf(stderr, "pkcs11_sign: the HSM key was exported\n");
        goto out;
    }
    printf("export of the HSM key refused (%s)\n", km_err_name(rc));
    status = 0;
out:
    km_key_free(kek);
    km_key_free(key);
    return status;
}

int main(int argc, char **argv)
{
    const char *config = getenv("KM_PKCS11_CONFIG");
    const char *pass = "an example passphrase";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    char uri[4200];
    int rc, status;

    if (argc != 2 || config == NULL) {
        fprintf(stderr, "usage: KM_PKCS11_CONFIG='module=...;token=pkcs11:token=...;pin=...' "
                        "pkcs11_sign DIR\n");
        return 2;
    }
    snprintf(uri, sizeof uri, "lmdb:%s/vault", argv[1]);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */
    if ((rc = km_open(&ctx, uri, &o)) != KM_OK)
        return fail("km_open", rc);
    /* stored sealed in the vault: keys with protection "pkcs11" find their token on every open */
    if ((rc = km_vault_backend_set(ctx, "pkcs11", config)) != KM_OK) {
        km_close(ctx);
        return fail("km_vault_backend_set", rc);
    }
    status = run(ctx);
    km_close(ctx);
    if (status == 0)
        printf("pkcs11_sign: all steps passed\n");
    return status;
}
