/* check_envelope.c - data keys wrapped under a KEK, and rewrap after rotation. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "testutil.h"

static char *dir;
static km_ctx *ctx;
static km_key *kek;

static void setup(void)
{
    tu_setup(&dir, &ctx, NULL);
    ck_assert_int_eq(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_GCM, NULL), KM_OK);
}

static void teardown(void)
{
    km_key_free(kek);
    tu_teardown(&dir, &ctx);
}

START_TEST(test_envelope_datakey_round_trip)
{
    uint8_t w[KM_DATAKEY_WRAPPED_LEN], w2[KM_DATAKEY_WRAPPED_LEN], small[10], pt[64];
    km_secret *dk = NULL, *back = NULL, *none = (km_secret *)1;
    size_t n, m;
    ck_assert_uint_eq(km_datakey_wrapped_len(), KM_DATAKEY_WRAPPED_LEN);
    OK(km_datakey_generate(kek, (const uint8_t *)"file-1", 6, &dk, w, sizeof w, &n));
    ck_assert_uint_eq(n, KM_DATAKEY_WRAPPED_LEN);
    ck_assert_uint_eq(km_secret_len(dk), KM_DATAKEY_LEN);
    ck_assert_int_eq(w[0], 'K');
    ck_assert_int_eq(w[1], 'D');
    ck_assert_mem_eq(w + 4, km_key_id(kek), 16);
    OK(km_datakey_decrypt(ctx, w, n, (const uint8_t *)"file-1", 6, &back));
    ck_assert_mem_eq(km_secret_data(back), km_secret_data(dk), KM_DATAKEY_LEN);
    km_secret_free(back);
    back = NULL;
    /* aad binds; a wrapped key is not a ciphertext and vice versa */
    ck_assert_int_eq(km_datakey_decrypt(ctx, w, n, (const uint8_t *)"file-2", 6, &back), KM_E_INTEGRITY);
    ck_assert_ptr_null(back);
    ck_assert_int_eq(km_decrypt(ctx, 0, w, n, (const uint8_t *)"file-1", 6, pt, sizeof pt, &m), KM_E_INVALID);
    ck_assert(tu_all_zero(pt, KM_DATAKEY_LEN));
    OK(km_encrypt(kek, km_secret_data(dk), KM_DATAKEY_LEN, NULL, 0, w2, sizeof w2, &m));
    ck_assert_int_eq(km_datakey_decrypt(ctx, w2, m, NULL, 0, &back), KM_E_INVALID);
    /* wrapped only */
    OK(km_datakey_generate(kek, NULL, 0, NULL, w2, sizeof w2, &m));
    OK(km_datakey_decrypt(ctx, w2, m, NULL, 0, &back));
    km_secret_free(back);
    /* bad arguments */
    ck_assert_int_eq(km_datakey_generate(kek, NULL, 0, &none, small, sizeof small, &m), KM_E_BUFFER);
    ck_assert_ptr_null(none);
    ck_assert_uint_eq(m, KM_DATAKEY_WRAPPED_LEN);
    ck_assert_int_eq(km_datakey_generate(NULL, NULL, 0, NULL, w2, sizeof w2, &m), KM_E_INVALID);
    ck_assert_int_eq(km_datakey_decrypt(ctx, w, n - 1, NULL, 0, &back), KM_E_INVALID);
    km_secret_free(dk);
}
END_TEST

/* Every bit flip and truncation of a wrapped data key is refused and releases nothing. */
START_TEST(test_envelope_datakey_tamper)
{
    uint8_t w[KM_DATAKEY_WRAPPED_LEN];
    size_t n, bit;
    km_secret *back;
    OK(km_datakey_generate(kek, NULL, 0, NULL, w, sizeof w, &n));
    for (bit = 0; bit < n * 8; bit++) {
        back = NULL;
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_int_ne(km_datakey_decrypt(ctx, w, n, NULL, 0, &back), KM_OK);
        ck_assert_ptr_null(back);
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (bit = 0; bit < n; bit++) {
        back = NULL;
        ck_assert_int_ne(km_datakey_decrypt(ctx, w, bit, NULL, 0, &back), KM_OK);
        ck_assert_ptr_null(back);
    }
}
END_TEST

static int gcm_file(int enc, const uint8_t *key, const uint8_t *iv, const uint8_t *in, size_t n,
                    uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l, ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc) == 1
                && EVP_CipherUpdate(c, out, &l, in, (int)n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + n, &l) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* The scenario: encrypt a large file under a data key, keep only the
 * wrapped key beside it, rotate the KEK, rewrap the key, decrypt; retire v1. */
START_TEST(test_envelope_file_rotate_rewrap)
{
    const size_t size = 1 << 20;
    uint8_t *file = malloc(size), *enc = malloc(size + 16), *dec = malloc(size + 16);
    uint8_t iv[12], tag[16], w[KM_DATAKEY_WRAPPED_LEN], w2[KM_DATAKEY_WRAPPED_LEN];
    km_secret *dk = NULL, *back = NULL;
    size_t n, m;
    ck_assert_int_eq(RAND_bytes(file, (int)size), 1);
    ck_assert_int_eq(RAND_bytes(iv, 12), 1);
    OK(km_datakey_generate(kek, (const uint8_t *)"backup.tar", 10, &dk, w, sizeof w, &n));
    ck_assert(gcm_file(1, km_secret_data(dk), iv, file, size, enc, tag));
    km_secret_free(dk); /* only the wrapped key is kept */

    OK(km_key_rotate(kek, NULL));
    OK(km_rewrap(ctx, w, n, (const uint8_t *)"backup.tar", 10, w2, sizeof w2, &m));
    ck_assert_uint_eq(m, KM_DATAKEY_WRAPPED_LEN);
    ck_assert_int_eq(w[23], 1);
    ck_assert_int_eq(w2[23], 2);
    ck_assert_int_eq(w2[1], 'D');
    /* retire version 1: the old wrapped key stops working, the rewrapped one works */
    OK(km_key_revoke(kek, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(kek, 1, 7));
    ck_assert_int_eq(km_datakey_decrypt(ctx, w, n, (const uint8_t *)"backup.tar", 10, &back), KM_E_STATE);
    OK(km_datakey_decrypt(ctx, w2, m, (const uint8_t *)"backup.tar", 10, &back));
    ck_assert(gcm_file(0, km_secret_data(back), iv, enc, size, dec, tag));
    ck_assert_mem_eq(dec, file, size);
    km_secret_free(back);
    free(file);
    free(enc);
    free(dec);
}
END_TEST

START_TEST(test_envelope_rewrap_ciphertext)
{
    uint8_t ct[100], ct2[100], pt[64];
    size_t n, m, p;
    const uint8_t msg[] = "rewrap me";
    OK(km_encrypt(kek, msg, sizeof msg, (const uint8_t *)"a", 1, ct, sizeof ct, &n));
    OK(km_key_rotate(kek, NULL));
    OK(km_rewrap(ctx, ct, n, (const uint8_t *)"a", 1, ct2, sizeof ct2, &m));
    ck_assert_uint_eq(m, n);
    ck_assert_int_eq(ct2[23], 2);
    ck_assert_int_eq(ct2[1], 'M');
    OK(km_decrypt(ctx, 0, ct2, m, (const uint8_t *)"a", 1, pt, sizeof pt, &p));
    ck_assert_mem_eq(pt, msg, sizeof msg);
    memset(ct2, 0xAA, sizeof ct2);
    ck_assert_int_eq(km_rewrap(ctx, ct, n, (const uint8_t *)"b", 1, ct2, sizeof ct2, &m), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(ct2, n));
    ck_assert_int_eq(km_rewrap(ctx, ct, n, (const uint8_t *)"a", 1, ct2, n - 1, &m), KM_E_BUFFER);
    ck_assert_uint_eq(m, n);
    ck_assert_int_eq(km_rewrap(ctx, ct, n, (const uint8_t *)"a", 1, ct, sizeof ct, &m), KM_E_INVALID);
    ck_assert_int_eq(km_rewrap(NULL, ct, n, NULL, 0, ct2, sizeof ct2, &m), KM_E_INVALID);
}
END_TEST

START_TEST(test_envelope_rewrap_batch)
{
    uint8_t ct[3][100], nw[3][100];
    const uint8_t *in[3];
    uint8_t *outp[3];
    size_t in_len[3], cap[3], out_len[3], i;
    int results[3];
    for (i = 0; i < 3; i++) {
        OK(km_encrypt(kek, (const uint8_t *)"item", 4, NULL, 0, ct[i], sizeof ct[i], &in_len[i]));
        in[i] = ct[i];
        outp[i] = nw[i];
        cap[i] = sizeof nw[i];
    }
    OK(km_key_rotate(kek, NULL));
    ct[1][40] ^= 1; /* one damaged item */
    ck_assert_int_eq(km_rewrap_batch(ctx, 3, in, in_len, NULL, NULL, outp, cap, out_len, results),
                     KM_E_INTEGRITY);
    ck_assert_int_eq(results[0], KM_OK);
    ck_assert_int_eq(results[1], KM_E_INTEGRITY);
    ck_assert_int_eq(results[2], KM_OK);
    ck_assert_int_eq(nw[0][23], 2);
    ck_assert_int_eq(nw[2][23], 2);
    ck_assert(tu_all_zero(nw[1], in_len[1]));
    ck_assert_int_eq(km_rewrap_batch(ctx, 3, NULL, in_len, NULL, NULL, outp, cap, out_len, results),
                     KM_E_INVALID);
}
END_TEST

static Suite *envelope_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("envelope", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_envelope_datakey_round_trip);
    tcase_add_test(tc, test_envelope_datakey_tamper);
    tcase_add_test(tc, test_envelope_file_rotate_rewrap);
    tcase_add_test(tc, test_envelope_rewrap_ciphertext);
    tcase_add_test(tc, test_envelope_rewrap_batch);
    return s;
}

int main(void)
{
    return tu_run(envelope_suite());
}
