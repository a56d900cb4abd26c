/* demo.c - the quick-start demo: a vault, a key, encrypt, rotate, decrypt old and new, sign. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

#define CHECK(call)                                                                   \
    do {                                                                              \
        int rc_ = (call);                                                             \
        if (rc_ != KM_OK) {                                                           \
            fprintf(stderr, "demo: %s failed: %s (%s)\n", #call, km_err_name(rc_),   \
                    km_error_last()->message);                                        \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static void hex(const char *label, const uint8_t *p, size_t n)
{
    size_t i;
    printf("  %s ", label);
    for (i = 0; i < n && i < 24; i++)
        printf("%02x", p[i]);
    printf("%s (%zu bytes)\n", n > 24 ? "..." : "", n);
}

int main(int argc, char **argv)
{
    const char *pass = getenv("KM_PASSPHRASE") ? getenv("KM_PASSPHRASE") : "demo passphrase";
    const char *msg1 = "first secret, under version 1", *msg2 = "second secret, under version 2";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    uint8_t ct1[128], ct2[128], pt[128], sig[KM_SIGNATURE_MAX], pub[1024];
    size_t ct1_len, ct2_len, pt_len, sig_len, pub_len;
    char uri[4200], text[256];
    size_t text_len;
    km_ctx *ctx;
    km_key *aes, *ec;
    uint32_t v2;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: demo VAULT-DIR\n");
        return 2;
    }
    snprintf(uri, sizeof uri, "lmdb:%s", argv[1]);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    printf("libkm %s demo\n", km_version());

    CHECK(km_open(&ctx, uri, &o));
    printf("1. created an encrypted LMDB vault at %s (passphrase keyslot, scrypt N=2^%d)\n",
           argv[1], KM_KDF_COST_DEFAULT);

    CHECK(km_key_create(&aes, ctx, "demo-aes", KM_KEY_AES_256_GCM, NULL));
    printf("2. created key 'demo-aes' (aes-256-gcm), version 1\n");

    CHECK(km_encrypt(aes, (const uint8_t *)msg1, strlen(msg1), NULL, 0, ct1, sizeof ct1, &ct1_len));
    printf("3. encrypted \"%s\"\n", msg1);
    hex("ciphertext v1:", ct1, ct1_len);
    CHECK(km_text_encode(ct1, ct1_len, text, sizeof text, &text_len));
    printf("  as text: %.60s...\n", text);

    CHECK(km_key_rotate(aes, &v2));
    printf("4. rotated 'demo-aes': version %u is now the primary\n", v2);

    CHECK(km_encrypt(aes, (const uint8_t *)msg2, strlen(msg2), NULL, 0, ct2, sizeof ct2, &ct2_len));
    printf("5. encrypted \"%s\" under version %u\n", msg2, v2);

    CHECK(km_decrypt(ctx, 0, ct1, ct1_len, NULL, 0, pt, sizeof pt, &pt_len));
    printf("6. decrypted the old (v1) ciphertext: \"%.*s\"\n", (int)pt_len, pt);
    CHECK(km_decrypt(ctx, 0, ct2, ct2_len, NULL, 0, pt, sizeof pt, &pt_len));
    printf("   decrypted the new (v%u) ciphertext: \"%.*s\"\n", v2, (int)pt_len, pt);

    ct1[40] ^= 1;
    rc = km_decrypt(ctx, 0, ct1, ct1_len, NULL, 0, pt, sizeof pt, &pt_len);
    printf("7. a ciphertext with one flipped bit is refused: %s\n", km_err_name(rc));
    if (rc != KM_E_INTEGRITY)
        return 1;

    CHECK(km_key_create(&ec, ctx, "demo-signing", KM_KEY_EC_P256, NULL));
    CHECK(km_sign(ec, 0, (const uint8_t *)msg1, strlen(msg1), sig, sizeof sig, &sig_len));
    printf("8. signed with 'demo-signing' (ECDSA P-256)\n");
    hex("signature:", sig, sig_len);
    rc = km_verify(ec, 0, 0, (const uint8_t *)msg1, strlen(msg1), sig, sig_len);
    printf("   verify: %s\n", rc == KM_OK ? "valid" : km_err_name(rc));
    if (rc != KM_OK)
        return 1;
    rc = km_verify(ec, 0, 0, (const uint8_t *)msg2, strlen(msg2), sig, sig_len);
    printf("   verify of another message: %s\n", rc == KM_E_VERIFY ? "invalid, as it should be" : km_err_name(rc));
    if (rc != KM_E_VERIFY)
        return 1;
    CHECK(km_key_public_export(ec, 0, KM_MATERIAL_PEM, pub, sizeof pub, &pub_len));
    printf("9. public key for other tools:\n%s", (const char *)pub);

    km_key_free(aes);
    km_key_free(ec);
    km_close(ctx);
    printf("demo: all steps passed\n");
    return 0;
}
