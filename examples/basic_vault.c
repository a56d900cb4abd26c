/* basic_vault.c - create a vault, keep a key in it, encrypt and decrypt with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <km.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return 1;
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/km-example.XXXXXX", uri[256];
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    const char *pass = "an example passphrase";
    const char *msg = "patient 4711: penicillin allergy";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    uint8_t ct[256], pt[256];
    size_t ct_len, pt_len;
    km_ctx *ctx = NULL;
    km_key *key = NULL;
    int rc;

    if (dir == NULL)
        return 1;
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */

    if ((rc = km_open(&ctx, uri, &o)) != KM_OK)
        return fail("km_open", rc);
    if ((rc = km_key_create(&key, ctx, "records", KM_KEY_AES_256_GCM, NULL)) != KM_OK)
        return fail("km_key_create", rc);
    /* The aad binds the ciphertext to its context: the same aad must be given to decrypt. */
    if ((rc = km_encrypt(key, (const uint8_t *)msg, strlen(msg), (const uint8_t *)"table=patients", 14,
                         ct, sizeof ct, &ct_len)) != KM_OK)
        return fail("km_encrypt", rc);
    if ((rc = km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"table=patients", 14, pt, sizeof pt,
                         &pt_len)) != KM_OK)
        return fail("km_decrypt", rc);
    if (pt_len != strlen(msg) || memcmp(pt, msg, pt_len) != 0) {
        fprintf(stderr, "round trip changed the data\n");
        return 1;
    }
    /* A different aad must fail. */
    rc = km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"table=billing", 13, pt, sizeof pt, &pt_len);
    if (rc != KM_E_INTEGRITY) {
        fprintf(stderr, "decrypt with the wrong aad gave %s\n", km_err_name(rc));
        return 1;
    }
    printf("encrypted %zu bytes into %zu and back; wrong aad refused (%s)\n", strlen(msg), ct_len,
           km_err_name(rc));
    km_key_free(key);
    km_close(ctx);
    if (argc <= 1) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
