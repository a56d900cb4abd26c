/* fuzz_record.c - vault key records: the input is split into a key record
 * (KM__T_KEYS) and a version record; the version record becomes the key
 * record's version list (tag 19, vault format 5: one entry, BE32 length ||
 * record) when the key record is well-formed TLV (else the key record is
 * stored as it is), sealed into the fixture's vault as if the vault held it,
 * then opened through km_key_open_id (decode_key, km__keyrec_vers,
 * km__vmeta_decode, a key's own policy) and km_key_info.
 * Input: [BE16 length of the key record][key record][version record]. */
#include "fuzz_common.h"
#include "core.h"

static const uint8_t rec_id[16] = FZ_ID('R');

static void put_del(const uint8_t *krec, size_t kl, const uint8_t *vrec, size_t vl, int put)
{
    static const uint8_t t19 = KM__K_VERSIONS;
    km__txn *t = NULL;
    uint8_t *b = NULL, *e = NULL;
    km__tlv_w w;
    FUZZ_CHECK(km__txn_begin(fz.ctx->env, 1, &t) == KM_OK);
    if (put && kl > 0 && km__tlv_check(krec, kl) == KM_OK
        && (b = malloc(kl + vl + 16)) != NULL && (e = malloc(vl + 4)) != NULL) {
        km__tlv_init(&w, b, kl + vl + 16);
        km__tlv_copy_except(&w, krec, kl, &t19, 1);
        km__be32_put(e, (uint32_t)vl);
        if (vl > 0)
            memcpy(e + 4, vrec, vl);
        km__tlv_put(&w, KM__K_VERSIONS, e, vl + 4);
        if (km__tlv_end(&w) == KM_OK) {
            krec = b;
            kl = w.len;
        }
    }
    if (put) {
        /* empty values cannot be stored: the record is then absent */
        if (kl > 0)
            FUZZ_CHECK(km__rec_put(t, fz.ctx->sealer, KM__T_KEYS, rec_id, 16, krec, kl, 0) == KM_OK);
    } else {
        (void)km__rec_del(t, KM__T_KEYS, rec_id, 16);
    }
    FUZZ_CHECK(km__txn_commit(t) == KM_OK);
    free(b);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t kl;
    km_key *k = (km_key *)(uintptr_t)1;
    int rc;

    if (size < 2)
        return 0;
    fz_setup();
    kl = (size_t)data[0] << 8 | data[1];
    if (kl > size - 2)
        kl = size - 2;
#ifdef KM_FUZZ_TOLERATE_NVERS_OOM
    {   /* the known unbounded allocation in kobj_read (docs/RELIABILITY.md): `make fuzz` only */
        uint32_t nv = 0;
        if (km__tlv_check(data + 2, kl) == KM_OK
            && km__tlv_get_u32(data + 2, kl, KM__K_NVERSIONS, &nv) == KM_OK && nv > 4096)
            return 0;
    }
#endif
    put_del(data + 2, kl, data + 2 + kl, size - 2 - kl, 1);
    rc = km_key_open_id(&k, fz.ctx, rec_id);
    FUZZ_CHECK(fz_known_rc(rc));
    if (rc == KM_OK) {
        km_keyinfo *info = NULL;
        FUZZ_CHECK(k != NULL);
        if (km_key_info(&info, k) == KM_OK) {
            km_version_info vi;
            FUZZ_CHECK(km_keyinfo_name(info) != NULL);
            (void)km_keyinfo_version(info, 0, &vi, sizeof vi);
            km_keyinfo_free(info);
        }
        km_key_free(k);
    } else {
        FUZZ_CHECK(k == NULL);
    }
    put_del(NULL, 0, NULL, 0, 0);
    km__cache_clear(fz.ctx);
    return 0;
}
