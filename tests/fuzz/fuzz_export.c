/* fuzz_export.c - km_key_import_wrapped on arbitrary bytes as a KWP export
 * blob (libkm header naming a KEK of this vault, then AES-KWP of the material)
 * for the input's choice of key type. The fixture holds a KEK with fixed
 * material and id, so seeds made by gen_corpus (real km_key_export_wrapped
 * output) unwrap here and reach the material parsers (raw AES/HMAC lengths,
 * PKCS#8 for EC and Ed25519). Promises checked: *out stays NULL on every
 * refusal, only documented codes come back, an accepted blob gives a usable
 * key of the asked type. Input: [type selector][blob...]. */
#include "fuzz_common.h"

static const km_key_type types[] = {
    KM_KEY_AES_256_GCM, KM_KEY_HMAC_SHA256, KM_KEY_ED25519, KM_KEY_EC_P256, KM_KEY_AES_128_GCM
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long imported;
    km_key *k = (km_key *)(uintptr_t)1;
    km_keyinfo *info = NULL;
    char name[64];
    int rc;

    fz_setup();
    if (size < 1)
        return 0;
    snprintf(name, sizeof name, "fz-imported-%lu", imported);
    rc = km_key_import_wrapped(&k, fz.ctx, name, types[data[0] % (sizeof types / sizeof types[0])],
                               KM_WRAP_KWP, data + 1, size - 1, NULL);
    FUZZ_CHECK(fz_known_rc(rc));
    if (rc != KM_OK) {
        FUZZ_CHECK(k == NULL);
        return 0;
    }
    imported++;
    if (getenv("FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "export: imported a key of type %d\n", (int)types[data[0] % 5]);
    FUZZ_CHECK(k != NULL);
    FUZZ_CHECK(km_key_info(&info, k) == KM_OK);
    FUZZ_CHECK(km_keyinfo_type(info) == types[data[0] % (sizeof types / sizeof types[0])]);
    km_keyinfo_free(info);
    km_key_free(k);
    return 0;
}
