/* rotate_rewrap.c - rotate a key, move stored ciphertexts to the new version with km_rewrap_batch, retire the old one. */
/*
 * The life of a key after a rotation:
 *   1. km_key_rotate: version 2 becomes the primary; new data uses it, data
 *      under version 1 still decrypts (each ciphertext names its version).
 *   2. km_rewrap_batch: the stored ciphertexts are re-encrypted under version 2
 *      inside libkm; the application never sees the plaintext.
 *   3. km_key_revoke (superseded) deactivates version 1, and
 *      km_key_schedule_destroy gives it a grace window (cancelable) before its
 *      material is destroyed. From then on only the rewrapped data decrypts.
 *
 * Usage: rotate_rewrap [DIR]   (a temporary directory by default)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

#define N 3
#define CT_MAX (64 + KM_CIPHERTEXT_OVERHEAD)

static int fail(const char *what, int rc)
{
    fprintf(stderr, "rotate_rewrap: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return 1;
}

/* The key version a ciphertext names: bytes 20..23 of its header, big-endian (docs/FORMATS.md). */
static uint32_t ct_version(const uint8_t *ct)
{
    return (uint32_t)ct[20] << 24 | (uint32_t)ct[21] << 16 | (uint32_t)ct[22] << 8 | ct[23];
}

/* Prints each version of the key and its state. */
static int show_versions(km_key *key)
{
    km_keyinfo *info = NULL;
    km_version_info vi;
    uint32_t i;
    int rc = km_key_info(&info, key);
    if (rc != KM_OK)
        return fail("km_key_info", rc);
    for (i = 0; i < km_keyinfo_version_count(info); i++) {
        if ((rc = km_keyinfo_version(info, i, &vi, sizeof vi)) != KM_OK) {
            km_keyinfo_free(info);
            return fail("km_keyinfo_version", rc);
        }
        printf("  version %u: %s%s\n", vi.version, km_state_name(vi.state),
               vi.version == km_keyinfo_primary(info) ? " (primary)" : "");
    }
    km_keyinfo_free(info);
    return 0;
}

static int run(km_ctx *ctx)
{
    static const char *records[N] = { "order 1: 3 x widget", "order 2: 1 x gadget", "order 3: 9 x gizmo" };
    static const char *aads[N] = { "order/1", "order/2", "order/3" };
    uint8_t ct[N][CT_MAX], fresh[N][CT_MAX], pt[64];
    const uint8_t *in[N], *aad[N];
    uint8_t *out[N];
    size_t ct_len[N], aad_len[N], cap[N], out_len[N], pt_len;
    int results[N], rc, i;
    uint32_t v2 = 0;
    km_key *key = NULL;

    if ((rc = km_key_create(&key, ctx, "orders", KM_KEY_AES_256_GCM, NULL)) != KM_OK)
        return fail("km_key_create", rc);
    for (i = 0; i < N; i++) {
        rc = km_encrypt(key, (const uint8_t *)records[i], strlen(records[i]), (const uint8_t *)aads[i],
                        strlen(aads[i]), ct[i], sizeof ct[i], &ct_len[i]);
        if (rc != KM_OK)
            goto err_encrypt;
    }

    /* 1. rotate: new data goes to version 2, old data still decrypts */
    if ((rc = km_key_rotate(key, &v2)) != KM_OK)
        goto err_rotate;
    printf("rotated 'orders' to version %u; the stored records name version %u\n", v2, ct_version(ct[0]));
    if (show_versions(key) != 0)
        goto err;

    /* 2. rewrap every stored record under the primary version, in one call */
    for (i = 0; i < N; i++) {
        in[i] = ct[i];
        aad[i] = (const uint8_t *)aads[i];
        aad_len[i] = strlen(aads[i]);
        out[i] = fresh[i];
        cap[i] = sizeof fresh[i];
    }
    rc = km_rewrap_batch(ctx, N, in, ct_len, aad, aad_len, out, cap, out_len, results);
    if (rc != KM_OK) {
        for (i = 0; i < N; i++)
            if (results[i] != KM_OK)
                fprintf(stderr, "rotate_rewrap: record %d: %s\n", i + 1, km_err_name(results[i]));
        fail("km_rewrap_batch", rc);
        goto err;
    }
    for (i = 0; i < N; i++)
        if (ct_version(fresh[i]) != v2) {
            fprintf(stderr, "rotate_rewrap: record %d still names version %u\n", i + 1,
                    ct_version(fresh[i]));
            goto err;
        }
    printf("rewrapped %d records: they now name version %u\n", N, v2);

    /* 3. retire version 1: deactivate it, then schedule its destruction (7 days' grace) */
    if ((rc = km_key_revoke(key, 1, KM_REVOKE_SUPERSEDED, 0)) != KM_OK) {
        fail("km_key_revoke", rc);
        goto err;
    }
    if ((rc = km_key_schedule_destroy(key, 1, 7)) != KM_OK) {
        fail("km_key_schedule_destroy", rc);
        goto err;
    }
    if (show_versions(key) != 0)
        goto err;
    for (i = 0; i < N; i++) {
        rc = km_decrypt(ctx, 0, fresh[i], out_len[i], aad[i], aad_len[i], pt, sizeof pt, &pt_len);
        if (rc != KM_OK) {
            fail("km_decrypt (rewrapped)", rc);
            goto err;
        }
        if (pt_len != strlen(records[i]) || memcmp(pt, records[i], pt_len) != 0) {
            fprintf(stderr, "rotate_rewrap: record %d changed\n", i + 1);
            goto err;
        }
        /* the old ciphertext is under a version that may no longer process */
        rc = km_decrypt(ctx, 0, ct[i], ct_len[i], aad[i], aad_len[i], pt, sizeof pt, &pt_len);
        if (rc != KM_E_STATE) {
            fprintf(stderr, "rotate_rewrap: an old record gave %s, not KM_E_STATE\n", km_err_name(rc));
            goto err;
        }
    }
    printf("rewrapped records decrypt; the old ones are refused (KM_E_STATE)\n");
    km_key_free(key);
    return 0;

err_encrypt:
    fail("km_encrypt", rc);
    goto err;
err_rotate:
    fail("km_key_rotate", rc);
err:
    km_key_free(key);
    return 1;
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/km-rewrap.XXXXXX", uri[300], cmd[330];
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    const char *pass = "an example passphrase";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    int rc, status;

    if (dir == NULL)
        return 1;
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */
    if ((rc = km_open(&ctx, uri, &o)) != KM_OK)
        return fail("km_open", rc);
    status = run(ctx);
    km_close(ctx);
    if (argc <= 1) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            status = 1;
    }
    if (status == 0)
        printf("rotate_rewrap: all steps passed\n");
    return status;
}
