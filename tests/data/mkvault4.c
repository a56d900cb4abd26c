/* mkvault4.c - writes the format-4 vault kept as test data
 * (tests/data/vault-v4.tar.gz, read by tests/check_format5.c): built once
 * with libkm as main stood before vault format 5 (commit 3211513), with the
 * public API only. Not built by make; to rebuild the data with such a libkm:
 *   cc -Iinclude tests/data/mkvault4.c -Lbuild/.libs -lkm -o mkvault4
 *   ./mkvault4 DIR && tar -C DIR -czf tests/data/vault-v4.tar.gz vault ct
 * DIR/vault: passphrase "test passphrase"; keys "aes" (AES-256-GCM, three
 * versions, version 1 revoked as superseded: DEACTIVATED), "hmac" (with an
 * alias, a description and a tag), "ec" (P-256), "pending" (version 1
 * DESTROY_PENDING); DIR/ct: three ciphertexts of "format 4 vN" under aes
 * versions 1 to 3, each as a 2-byte big-endian length and the bytes. */
#include <km.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK(x) do { int rc_ = (x); if (rc_ != KM_OK) { fprintf(stderr, "%s: %s\n", #x, \
                   km_error_last()->message); exit(1); } } while (0)

int main(int argc, char **argv)
{
    char path[4096];
    km_open_options o;
    km_ctx *c = NULL;
    km_key *aes = NULL, *h = NULL, *ec = NULL, *p = NULL;
    FILE *f;
    uint32_t v, i;

    if (argc != 2)
        return 2;
    memset(&o, 0, sizeof o);
    o.version = KM_OPEN_OPTIONS_VERSION;
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)"test passphrase";
    o.passphrase_len = strlen("test passphrase");
    o.kdf_cost = KM_KDF_COST_MIN;
    snprintf(path, sizeof path, "%s/vault", argv[1]);
    OK(km_open(&c, path, &o));
    snprintf(path, sizeof path, "%s/ct", argv[1]);
    if ((f = fopen(path, "wb")) == NULL)
        return 1;
    OK(km_key_create(&aes, c, "aes", KM_KEY_AES_256_GCM, NULL));
    for (i = 1; i <= 3; i++) {
        uint8_t ct[128];
        char pt[32];
        size_t n;
        snprintf(pt, sizeof pt, "format 4 v%u", i);
        OK(km_encrypt(aes, (const uint8_t *)pt, strlen(pt), NULL, 0, ct, sizeof ct, &n));
        fputc((int)(n >> 8), f);
        fputc((int)(n & 0xff), f);
        fwrite(ct, 1, n, f);
        if (i < 3)
            OK(km_key_rotate(aes, &v));
    }
    fclose(f);
    OK(km_key_revoke(aes, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_create(&h, c, "hmac", KM_KEY_HMAC_SHA256, NULL));
    OK(km_key_alias_add(h, "hmac-alias", 0));
    OK(km_key_set_description(h, "made by format 4"));
    OK(km_key_set_tag(h, "team", "storage"));
    OK(km_key_create(&ec, c, "ec", KM_KEY_EC_P256, NULL));
    OK(km_key_create(&p, c, "pending", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_revoke(p, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(p, 1, 30));
    km_key_free(aes);
    km_key_free(h);
    km_key_free(ec);
    km_key_free(p);
    km_close(c);
    return 0;
}
