/* mkaudit1.c - writes the vault whose audit log is kept as test data
 * (tests/data/vault-audit1.tar.gz, read by tests/check_audit_batch.c): built
 * once with libkm as main stood before the audit batch layout (layout 2,
 * docs/FORMATS.md; main at e8ddb50), so that every record of its log is of
 * layout 1 (an entry per MAC), data-path batches included. Public API only.
 * Not built by make; to rebuild the data with such a libkm:
 *   cc -Iinclude tests/data/mkaudit1.c -Lbuild/.libs -lkm -o mkaudit1
 *   ./mkaudit1 DIR && tar -C DIR -czf tests/data/vault-audit1.tar.gz vault/data.mdb head
 * DIR/vault: passphrase "test passphrase", data-path level "every"; key "aes"
 * (AES-256-GCM, two versions): 100 encryptions, a flush, 4 decryptions and one
 * that fails (KM_E_INTEGRITY), a rotation, 20 more encryptions; DIR/head: the
 * exported head (sequence, 8 bytes big-endian, and hash, 32) after all that. */
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
    km_key *aes = NULL;
    km_audit_head h;
    uint8_t ct[128], pt[64], hb[40];
    size_t n, m;
    FILE *f;
    int i;

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
    OK(km_audit_set_level(c, KM_AUDIT_DATA_EVERY));
    OK(km_key_create(&aes, c, "aes", KM_KEY_AES_256_GCM, NULL));
    for (i = 0; i < 100; i++)
        OK(km_encrypt(aes, (const uint8_t *)"layout 1", 8, NULL, 0, ct, sizeof ct, &n));
    OK(km_audit_flush(c));
    for (i = 0; i < 4; i++)
        OK(km_decrypt(c, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    if (km_decrypt(c, 0, ct, n, (const uint8_t *)"x", 1, pt, sizeof pt, &m) != KM_E_INTEGRITY)
        return 1;
    OK(km_key_rotate(aes, NULL));
    for (i = 0; i < 20; i++)
        OK(km_encrypt(aes, (const uint8_t *)"layout 1", 8, NULL, 0, ct, sizeof ct, &n));
    OK(km_audit_head_get(c, &h));
    OK(km_audit_verify(c, NULL, NULL, NULL));
    for (i = 0; i < 8; i++)
        hb[i] = (uint8_t)(h.seq >> (56 - 8 * i));
    memcpy(hb + 8, h.hash, 32);
    snprintf(path, sizeof path, "%s/head", argv[1]);
    if ((f = fopen(path, "wb")) == NULL || fwrite(hb, 1, sizeof hb, f) != sizeof hb)
        return 1;
    fclose(f);
    km_key_free(aes);
    km_close(c);
    return 0;
}
