/* tpm2_vault.c - a vault whose master key is sealed to a TPM 2.0, so that it opens on this machine without a passphrase. */
/*
 * The vault's master key normally lives in passphrase keyslots. Here a second
 * keyslot is added with km_vault_add_backend_slot(ctx, "tpm2", config): the
 * master key is sealed by the TPM (under its storage hierarchy), so only this
 * TPM can unseal it. Once the TPM slot is proven to open the vault, the
 * passphrase slots are removed: the vault then opens only on this machine
 * (km_open_options::slot_backend), as a LUKS volume bound to a TPM does. A key
 * with protection "tpm2" is also made: its ECDSA private key is used inside
 * the TPM and never exists in memory.
 *
 * The TPM comes from a TCTI configuration in KM_TPM2_CONFIG, e.g.
 *     tcti=device:/dev/tpmrm0      or      tcti=swtpm:host=127.0.0.1,port=2321
 *
 * Usage: KM_TPM2_CONFIG=... tpm2_vault DIR
 * (examples/tpm2_vault.sh starts a temporary swtpm and runs it.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "tpm2_vault: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return 1;
}

/* Opens the vault with the TPM keyslot (no passphrase). */
static int open_with_tpm(km_ctx **out, const char *uri, const char *config)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    o.slot_backend = "tpm2";
    o.slot_config = config;
    return km_open(out, uri, &o);
}

/* Step 1: create the vault (a passphrase is needed to create one), a TPM
 * signing key, an encrypted record; add the TPM keyslot. */
static int create(const char *uri, const char *config, uint8_t *ct, size_t ct_cap, size_t *ct_len)
{
    const char *pass = "a setup passphrase";
    const char *record = "db password: kept in the vault";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    km_key *aes = NULL, *sig = NULL;
    int rc, status = 1;

    o.flags = KM_OPEN_CREATE | KM_OPEN_EXCL;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */
    if ((rc = km_open(&ctx, uri, &o)) != KM_OK)
        return fail("km_open (create)", rc);
    /* keys with protection "tpm2" reach the TPM through this configuration */
    if ((rc = km_vault_backend_set(ctx, "tpm2", config)) != KM_OK) {
        fail("km_vault_backend_set", rc);
        goto out;
    }
    ko.protection = "tpm2";
    if ((rc = km_key_create(&sig, ctx, "host-identity", KM_KEY_EC_P256, &ko)) != KM_OK) {
        fail("km_key_create (tpm2)", rc);
        goto out;
    }
    if ((rc = km_key_create(&aes, ctx, "secrets", KM_KEY_AES_256_GCM, NULL)) != KM_OK) {
        fail("km_key_create", rc);
        goto out;
    }
    if ((rc = km_encrypt(aes, (const uint8_t *)record, strlen(record), NULL, 0, ct, ct_cap, ct_len))
        != KM_OK) {
        fail("km_encrypt", rc);
        goto out;
    }
    /* seal the master key to the TPM: a second way in */
    if ((rc = km_vault_add_backend_slot(ctx, "tpm2", config)) != KM_OK) {
        fail("km_vault_add_backend_slot", rc);
        goto out;
    }
    printf("created the vault, a TPM signing key and a record; master key sealed to the TPM\n");
    status = 0;
out:
    km_key_free(aes);
    km_key_free(sig);
    km_close(ctx);
    return status;
}

/* Step 2: open with the TPM, check the data, drop the passphrase slots. */
static int bind_to_tpm(const char *uri, const char *config, const uint8_t *ct, size_t ct_len)
{
    uint8_t pt[128];
    size_t pt_len;
    km_ctx *ctx = NULL;
    int rc, status = 1;

    if ((rc = open_with_tpm(&ctx, uri, config)) != KM_OK)
        return fail("km_open (tpm2 keyslot)", rc);
    if ((rc = km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len)) != KM_OK) {
        fail("km_decrypt", rc);
        goto out;
    }
    /* the TPM slot works: now it is the only way in */
    if ((rc = km_vault_remove_passphrases(ctx)) != KM_OK) {
        fail("km_vault_remove_passphrases", rc);
        goto out;
    }
    printf("opened with the TPM alone; passphrase keyslots removed\n");
    status = 0;
out:
    km_close(ctx);
    return status;
}

/* Step 3: as at every boot, open with the TPM and use the keys. */
static int use(const char *uri, const char *config, const uint8_t *ct, size_t ct_len)
{
    const char *pass = "a setup passphrase";
    const char *msg = "attestation nonce 31337";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    uint8_t pt[128], sig[KM_SIGNATURE_MAX];
    size_t pt_len, sig_len;
    km_ctx *ctx = NULL, *other = NULL;
    km_key *key = NULL;
    int rc, status = 1;

    /* the old passphrase no longer opens it */
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    rc = km_open(&other, uri, &o);
    km_close(other);
    if (rc != KM_E_AUTH) {
        fprintf(stderr, "tpm2_vault: the removed passphrase gave %s, not KM_E_AUTH\n", km_err_name(rc));
        return 1;
    }
    if ((rc = open_with_tpm(&ctx, uri, config)) != KM_OK)
        return fail("km_open (tpm2 keyslot)", rc);
    if ((rc = km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len)) != KM_OK) {
        fail("km_decrypt", rc);
        goto out;
    }
    if ((rc = km_key_open(&key, ctx, "host-identity")) != KM_OK) {
        fail("km_key_open", rc);
        goto out;
    }
    if ((rc = km_sign(key, 0, (const uint8_t *)msg, strlen(msg), sig, sizeof sig, &sig_len)) != KM_OK) {
        fail("km_sign (in the TPM)", rc);
        goto out;
    }
    if ((rc = km_verify(key, 0, 0, (const uint8_t *)msg, strlen(msg), sig, sig_len)) != KM_OK) {
        fail("km_verify", rc);
        goto out;
    }
    printf("reopened with the TPM: record decrypted (%zu bytes), signed in the TPM; "
           "old passphrase refused\n", pt_len);
    status = 0;
out:
    km_key_free(key);
    km_close(ctx);
    return status;
}

int main(int argc, char **argv)
{
    const char *config = getenv("KM_TPM2_CONFIG");
    uint8_t ct[256];
    size_t ct_len = 0;
    char uri[4200];

    if (argc != 2 || config == NULL) {
        fprintf(stderr, "usage: KM_TPM2_CONFIG='tcti=...' tpm2_vault DIR\n");
        return 2;
    }
    snprintf(uri, sizeof uri, "lmdb:%s/vault", argv[1]);
    if (create(uri, config, ct, sizeof ct, &ct_len) != 0 || bind_to_tpm(uri, config, ct, ct_len) != 0
        || use(uri, config, ct, ct_len) != 0)
        return 1;
    printf("tpm2_vault: all steps passed\n");
    return 0;
}
