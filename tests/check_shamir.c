/* check_shamir.c - the Shamir arithmetic (src/prim/shamir.c): GF(2^8) multiply and
 * inverse against a slow reference and the FIPS-197 examples; every M-subset
 * of N shares recovers the secret and fewer do not; a fixed known-answer
 * vector; altered shares interpolate to a different secret (the arithmetic
 * cannot detect it: the keyslot checks a hash per share); argument errors. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "km_int.h"
#include "shamir.h"
#include "testutil.h"

/* Reference multiply: schoolbook carry-less product, then long division by
 * x^8 + x^4 + x^3 + x + 1 (0x11b). Branchy and slow on purpose. */
static uint8_t ref_mul(uint8_t a, uint8_t b)
{
    unsigned prod = 0;
    int i;
    for (i = 0; i < 8; i++)
        if (b & (1u << i))
            prod ^= (unsigned)a << i;
    for (i = 14; i >= 8; i--)
        if (prod & (1u << i))
            prod ^= 0x11bu << (i - 8);
    return (uint8_t)prod;
}

/* Reference inverse by exhaustive search. */
static uint8_t ref_inv(uint8_t a)
{
    unsigned b;
    for (b = 1; b < 256; b++)
        if (ref_mul(a, (uint8_t)b) == 1)
            return (uint8_t)b;
    return 0;
}

/* y = sum_j c[j] x^j, c[0] the secret byte, by the reference multiply. */
static uint8_t ref_eval(const uint8_t *c, unsigned deg, uint8_t x)
{
    uint8_t y = 0, xp = 1;
    unsigned j;
    for (j = 0; j <= deg; j++) {
        y ^= ref_mul(c[j], xp);
        xp = ref_mul(xp, x);
    }
    return y;
}

/* Lagrange at 0 with the reference arithmetic, independent of shamir.c. */
static void ref_combine(const uint8_t *xs, const uint8_t *ys, unsigned k, size_t len,
                        uint8_t *out)
{
    size_t b;
    unsigned i, j;
    memset(out, 0, len);
    for (i = 0; i < k; i++) {
        uint8_t num = 1, den = 1, l;
        for (j = 0; j < k; j++) {
            if (j == i)
                continue;
            num = ref_mul(num, xs[j]);
            den = ref_mul(den, (uint8_t)(xs[j] ^ xs[i]));
        }
        l = ref_mul(num, ref_inv(den));
        for (b = 0; b < len; b++)
            out[b] ^= ref_mul(ys[(size_t)i * len + b], l);
    }
}

static void rnd(uint8_t *p, size_t len)
{
    ck_assert_int_eq(km__random(p, len), KM_OK);
}

/* Gathers the shares of the subset `mask` (bit i = share x = i + 1). */
static unsigned pick(const uint8_t *all, size_t len, unsigned n, unsigned mask, uint8_t *xs,
                     uint8_t *ys)
{
    unsigned i, k = 0;
    for (i = 0; i < n; i++)
        if (mask & (1u << i)) {
            xs[k] = (uint8_t)(i + 1);
            memcpy(ys + (size_t)k * len, all + (size_t)i * len, len);
            k++;
        }
    return k;
}

START_TEST(gf_mul_all_products)
{
    unsigned a, b;
    for (a = 0; a < 256; a++)
        for (b = 0; b < 256; b++)
            ck_assert_msg(km__gf256_mul((uint8_t)a, (uint8_t)b) == ref_mul((uint8_t)a, (uint8_t)b),
                          "%02x * %02x", a, b);
    /* FIPS-197 section 4.2 examples pin the polynomial independently of ref_mul */
    ck_assert_uint_eq(km__gf256_mul(0x57, 0x83), 0xc1);
    ck_assert_uint_eq(km__gf256_mul(0x57, 0x13), 0xfe);
    ck_assert_uint_eq(km__gf256_mul(0x57, 0x02), 0xae);
}
END_TEST

START_TEST(gf_inverse_all)
{
    unsigned a;
    for (a = 1; a < 256; a++) {
        uint8_t i = km__gf256_inv((uint8_t)a);
        ck_assert_msg(km__gf256_mul((uint8_t)a, i) == 1, "inv(%02x) = %02x", a, i);
        ck_assert_uint_eq(i, ref_inv((uint8_t)a));
    }
    ck_assert_uint_eq(km__gf256_inv(0x53), 0xca); /* the AES S-box derivation example */
    ck_assert_uint_eq(km__gf256_inv(0), 0);
}
END_TEST

/* 3 of 5 with a 32-byte random secret: every 3-, 4- and 5-subset recovers it,
 * every 2-subset (and every single share) does not. */
START_TEST(split_3_of_5)
{
    uint8_t secret[32], all[5 * 32], xs[5], ys[5 * 32], out[32], ref[32];
    unsigned mask, k, n3 = 0, n4 = 0, n5 = 0, n2 = 0;
    rnd(secret, sizeof secret);
    ck_assert_int_eq(km__shamir_split(secret, 32, 3, 5, all), KM_OK);
    for (mask = 1; mask < 32; mask++) {
        k = pick(all, 32, 5, mask, xs, ys);
        ck_assert_int_eq(km__shamir_combine(xs, ys, k, 32, out), KM_OK);
        if (k >= 3) {
            ck_assert_msg(memcmp(out, secret, 32) == 0, "subset %#x", mask);
            n3 += k == 3;
            n4 += k == 4;
            n5 += k == 5;
        } else {
            ck_assert_msg(memcmp(out, secret, 32) != 0, "subset %#x leaks", mask);
            n2 += k == 2;
        }
        /* the shares lie on one polynomial: the reference agrees on any subset */
        ref_combine(xs, ys, k, 32, ref);
        ck_assert(memcmp(ref, out, 32) == 0);
    }
    ck_assert_uint_eq(n3, 10);
    ck_assert_uint_eq(n4, 5);
    ck_assert_uint_eq(n5, 1);
    ck_assert_uint_eq(n2, 10);
}
END_TEST

/* Every (M, N) with 2 <= M <= N <= 6: all M-subsets recover, all
 * (M-1)-subsets do not; the shares are independently checked to lie on a
 * polynomial of degree M-1 (the reference interpolation through the first M
 * recovers the secret, and any M+1 points agree with any M). */
START_TEST(split_all_small)
{
    uint8_t secret[32], all[6 * 32], xs[6], ys[6 * 32], out[32], ref[32];
    unsigned m, n, mask, k, subsets;
    for (n = 2; n <= 6; n++)
        for (m = 2; m <= n; m++) {
            rnd(secret, sizeof secret);
            ck_assert_int_eq(km__shamir_split(secret, 32, m, n, all), KM_OK);
            subsets = 0;
            for (mask = 1; mask < (1u << n); mask++) {
                k = (unsigned)__builtin_popcount(mask);
                if (k != m && k != m - 1)
                    continue;
                pick(all, 32, n, mask, xs, ys);
                ck_assert_int_eq(km__shamir_combine(xs, ys, k, 32, out), KM_OK);
                ref_combine(xs, ys, k, 32, ref);
                ck_assert(memcmp(ref, out, 32) == 0);
                if (k == m) {
                    ck_assert_msg(memcmp(out, secret, 32) == 0, "%u of %u: %#x", m, n, mask);
                    subsets++;
                } else {
                    ck_assert_msg(memcmp(out, secret, 32) != 0, "%u of %u: %#x leaks", m, n,
                                  mask);
                }
            }
            /* C(n, m) */
            {
                unsigned c = 1, i;
                for (i = 0; i < m; i++)
                    c = c * (n - i) / (i + 1);
                ck_assert_uint_eq(subsets, c);
            }
        }
}
END_TEST

/* Known answer computed outside libkm (Python, schoolbook GF(2^8)):
 * secret 00017f80ff53, c1 112233445566, c2 a55aff018000, y = s + c1 x + c2 x^2. */
START_TEST(known_answer)
{
    static const char *const sh[5] = {"b479b3c52a35", "8036c80c639f", "344e0449b6f9",
                                      "fa5eda9b68d0", "4e2616debdb6"};
    static const uint8_t secret[6] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x53};
    static const uint8_t c[3][6] = {{0x00, 0x01, 0x7f, 0x80, 0xff, 0x53},
                                    {0x11, 0x22, 0x33, 0x44, 0x55, 0x66},
                                    {0xa5, 0x5a, 0xff, 0x01, 0x80, 0x00}};
    uint8_t all[5 * 6], xs[5], ys[5 * 6], out[6];
    unsigned i, mask;
    size_t b, l;
    for (i = 0; i < 5; i++) {
        uint8_t *v = tu_unhex(sh[i], &l);
        ck_assert_ptr_nonnull(v);
        ck_assert_uint_eq(l, 6);
        memcpy(all + i * 6, v, 6);
        free(v);
        /* the test's reference evaluation agrees with the external vector */
        for (b = 0; b < 6; b++) {
            uint8_t col[3] = {c[0][b], c[1][b], c[2][b]};
            ck_assert_uint_eq(ref_eval(col, 2, (uint8_t)(i + 1)), all[i * 6 + b]);
        }
    }
    for (mask = 1; mask < 32; mask++) {
        unsigned k = pick(all, 6, 5, mask, xs, ys);
        if (k < 3)
            continue;
        ck_assert_int_eq(km__shamir_combine(xs, ys, k, 6, out), KM_OK);
        ck_assert_msg(memcmp(out, secret, 6) == 0, "subset %#x", mask);
    }
}
END_TEST

/* km__shamir_split's output is a degree-(m-1) polynomial with the secret at 0:
 * checked by the reference only (m = 4, n = 9, 64 bytes). */
START_TEST(split_matches_reference)
{
    uint8_t secret[64], all[9 * 64], xs[9], ys[9 * 64], ref[64];
    unsigned mask;
    rnd(secret, sizeof secret);
    ck_assert_int_eq(km__shamir_split(secret, 64, 4, 9, all), KM_OK);
    for (mask = 0x0f; mask < (1u << 9); mask += 0x25) {
        unsigned k = pick(all, 64, 9, mask, xs, ys);
        if (k < 4)
            continue;
        ref_combine(xs, ys, k, 64, ref);
        ck_assert_msg(memcmp(ref, secret, 64) == 0, "subset %#x", mask);
    }
}
END_TEST

/* A share with an altered byte, or a share presented under the wrong x,
 * interpolates to a different secret and the arithmetic returns KM_OK: it
 * cannot detect a wrong share. The keyslot detects it with a hash per share
 * (src/store/keyslot.c); this test documents why that check is needed. */
START_TEST(altered_share_changes_result)
{
    uint8_t secret[32], all[5 * 32], xs[3], ys[3 * 32], out[32];
    unsigned s, b;
    rnd(secret, sizeof secret);
    ck_assert_int_eq(km__shamir_split(secret, 32, 3, 5, all), KM_OK);
    for (s = 0; s < 3; s++)
        for (b = 0; b < 32; b += 7) {
            unsigned d;
            pick(all, 32, 5, 0x15, xs, ys); /* shares 1, 3, 5 */
            ys[s * 32 + b] ^= 0x01;
            ck_assert_int_eq(km__shamir_combine(xs, ys, 3, 32, out), KM_OK);
            ck_assert(memcmp(out, secret, 32) != 0);
            /* exactly the altered byte position differs (non-zero Lagrange coefficient) */
            for (d = 0; d < 32; d++)
                ck_assert((out[d] != secret[d]) == (d == b));
        }
    pick(all, 32, 5, 0x15, xs, ys);
    xs[1] = 2; /* share 3's bytes under x = 2 */
    ck_assert_int_eq(km__shamir_combine(xs, ys, 3, 32, out), KM_OK);
    ck_assert(memcmp(out, secret, 32) != 0);
}
END_TEST

START_TEST(lengths_1_and_64_and_255)
{
    uint8_t s1 = 0xa7, o1, s64[64], o64[64];
    uint8_t *all = malloc(255 * 64), *xs = malloc(255);
    unsigned i;
    ck_assert_ptr_nonnull(all);
    ck_assert_ptr_nonnull(xs);
    ck_assert_int_eq(km__shamir_split(&s1, 1, 2, 3, all), KM_OK);
    xs[0] = 3;
    xs[1] = 1;
    {
        uint8_t ys[2] = {all[2], all[0]};
        ck_assert_int_eq(km__shamir_combine(xs, ys, 2, 1, &o1), KM_OK);
        ck_assert_uint_eq(o1, s1);
    }
    rnd(s64, sizeof s64);
    ck_assert_int_eq(km__shamir_split(s64, 64, 5, 7, all), KM_OK);
    for (i = 0; i < 5; i++)
        xs[i] = (uint8_t)(i + 3);
    ck_assert_int_eq(km__shamir_combine(xs, all + 2 * 64, 5, 64, o64), KM_OK);
    ck_assert(memcmp(o64, s64, 64) == 0);
    /* the widest split: 255 shares, x = 1..255, all needed */
    ck_assert_int_eq(km__shamir_split(s64, 64, 255, 255, all), KM_OK);
    for (i = 0; i < 255; i++)
        xs[i] = (uint8_t)(i + 1);
    ck_assert_int_eq(km__shamir_combine(xs, all, 255, 64, o64), KM_OK);
    ck_assert(memcmp(o64, s64, 64) == 0);
    ck_assert_int_eq(km__shamir_combine(xs, all, 254, 64, o64), KM_OK);
    ck_assert(memcmp(o64, s64, 64) != 0);
    free(all);
    free(xs);
}
END_TEST

#define INVALID(call)                                                                          \
    do {                                                                                       \
        km_error_clear();                                                                      \
        ck_assert_int_eq((call), KM_E_INVALID);                                                \
        ck_assert_int_eq(km_error_last()->code, KM_E_INVALID);                                 \
    } while (0)

START_TEST(invalid_arguments)
{
    uint8_t secret[65] = {1}, all[256 * 2], xs[3] = {1, 2, 3}, out[65];
    memset(all, 0x5c, sizeof all);
    /* split */
    INVALID(km__shamir_split(secret, 0, 2, 3, all));
    INVALID(km__shamir_split(secret, 65, 2, 3, all));
    INVALID(km__shamir_split(secret, 2, 1, 3, all));
    INVALID(km__shamir_split(secret, 2, 0, 3, all));
    INVALID(km__shamir_split(secret, 2, 4, 3, all));
    INVALID(km__shamir_split(secret, 2, 2, 256, all));
    INVALID(km__shamir_split(NULL, 2, 2, 3, all));
    INVALID(km__shamir_split(secret, 2, 2, 3, NULL));
    ck_assert(all[0] == 0x5c && all[5] == 0x5c); /* nothing written on error */
    ck_assert_int_eq(km__shamir_split(secret, 2, 2, 3, all), KM_OK);
    /* combine */
    INVALID(km__shamir_combine(xs, all, 0, 2, out));
    INVALID(km__shamir_combine(xs, all, 2, 0, out));
    INVALID(km__shamir_combine(xs, all, 2, 65, out));
    INVALID(km__shamir_combine(NULL, all, 2, 2, out));
    INVALID(km__shamir_combine(xs, NULL, 2, 2, out));
    INVALID(km__shamir_combine(xs, all, 2, 2, NULL));
    {
        uint8_t dup[3] = {1, 2, 1}, zero[3] = {1, 0, 2};
        INVALID(km__shamir_combine(dup, all, 3, 2, out));
        INVALID(km__shamir_combine(zero, all, 3, 2, out));
    }
    /* a single share (k = 1) is accepted: it returns its own y */
    ck_assert_int_eq(km__shamir_combine(xs, all, 1, 2, out), KM_OK);
    ck_assert(memcmp(out, all, 2) == 0);
}
END_TEST

static Suite *shamir_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("shamir", NULL, &tc, 60, NULL, NULL);

    tcase_add_test(tc, gf_mul_all_products);
    tcase_add_test(tc, gf_inverse_all);
    tcase_add_test(tc, split_3_of_5);
    tcase_add_test(tc, split_all_small);
    tcase_add_test(tc, known_answer);
    tcase_add_test(tc, split_matches_reference);
    tcase_add_test(tc, altered_share_changes_result);
    tcase_add_test(tc, lengths_1_and_64_and_255);
    tcase_add_test(tc, invalid_arguments);
    return s;
}

int main(void)
{
    return tu_run(shamir_suite());
}
