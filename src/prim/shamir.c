/* shamir.c - Shamir secret sharing over GF(2^8) with the AES polynomial
 * x^8 + x^4 + x^3 + x + 1.
 *
 * Why by hand: Debian packages libgfshare, but its field arithmetic uses
 * log/exp table lookups indexed by secret bytes (a cache-timing channel) and
 * a process-global RNG hook. Here multiplication is shift-and-masked-xor and
 * the inverse is a^254 by square-and-multiply: no branch and no memory
 * access depends on a secret byte. The share x coordinates are public.
 *
 * Timing: which operations are constant-time (no measurement, by construction).
 * - km__gf256_mul: fixed 8 rounds; the operand bits select through all-ones /
 *   all-zero masks (0u - bit), never through a branch or an index.
 * - km__gf256_inv: a^254 with a fixed exponent; the multiply is always done
 *   and its result picked with a mask, so only the public exponent is walked.
 * - km__shamir_split: the Horner evaluation of every share byte runs the same
 *   (m - 1) masked multiplies whatever the secret and coefficient bytes are.
 * - km__shamir_combine: the per-byte sum of y * l_i is masked multiplies only.
 * Not constant-time, and need not be: argument checks and the Lagrange
 * coefficients l_i (they depend only on the public xs, k, len, m, n; l_i uses
 * gf256_inv, constant-time anyway), and the loop bounds (public lengths).
 * A wrong or altered share cannot be detected here: it interpolates to a
 * different, valid-looking secret. The keyslot stores a hash per share and
 * checks it before combining (src/store/keyslot.c). */
#include "km_int.h"
#include "shamir.h"

#include <string.h>

uint8_t km__gf256_mul(uint8_t a, uint8_t b)
{
    unsigned r = 0, aa = a, bb = b, i;
    for (i = 0; i < 8; i++) {
        r ^= aa & (0u - (bb & 1u));           /* add a when b's low bit is set */
        bb >>= 1;
        aa = (aa << 1) ^ (0x11bu & (0u - ((aa >> 7) & 1u)));  /* a *= x mod p */
    }
    return (uint8_t)r;
}

uint8_t km__gf256_inv(uint8_t a)
{
    /* a^254 = a^-1 for a != 0 (and 0 for 0) */
    uint8_t r = 1, p = a;
    unsigned e = 254, i;
    for (i = 0; i < 8; i++) {
        uint8_t t = km__gf256_mul(r, p);
        uint8_t mask = (uint8_t)(0u - (e & 1u));
        r = (uint8_t)((t & mask) | (r & (uint8_t)~mask));
        p = km__gf256_mul(p, p);
        e >>= 1;
    }
    return r;
}

int km__shamir_split(const uint8_t *secret, size_t len, unsigned m, unsigned n, uint8_t *ys)
{
    uint8_t *coef;
    size_t b, clen;
    unsigned i, j;
    int rc;

    if (secret == NULL || ys == NULL || len == 0 || len > 64 || m < 2 || m > n || n > 255)
        return km__err(KM_E_INVALID, "shamir: need 1..64 bytes and 2 <= m <= n <= 255");
    clen = (size_t)(m - 1) * len;
    if ((coef = km__salloc(clen)) == NULL)
        return km__err(KM_E_NOMEM, "shamir: cannot map secure memory");
    if ((rc = km__random(coef, clen)) != KM_OK) {
        km__sfree(coef, clen);
        return rc;
    }
    for (i = 0; i < n; i++) {
        uint8_t x = (uint8_t)(i + 1);
        for (b = 0; b < len; b++) {
            /* Horner: ((c[m-1] x + c[m-2]) x + ... ) x + secret */
            uint8_t y = 0;
            for (j = m - 1; j >= 1; j--)
                y = km__gf256_mul((uint8_t)(y ^ coef[(size_t)(j - 1) * len + b]), x);
            ys[(size_t)i * len + b] = (uint8_t)(y ^ secret[b]);
            y = 0;
        }
    }
    km__sfree(coef, clen); /* wipes the coefficients */
    return KM_OK;
}

int km__shamir_combine(const uint8_t *xs, const uint8_t *ys, unsigned k, size_t len,
                       uint8_t *secret)
{
    uint8_t lag[255];
    size_t b;
    unsigned i, j;

    if (xs == NULL || ys == NULL || secret == NULL || k < 1 || k > 255 || len == 0 || len > 64)
        return km__err(KM_E_INVALID, "shamir: bad combine arguments");
    for (i = 0; i < k; i++) {
        if (xs[i] == 0)
            return km__err(KM_E_INVALID, "shamir: a share has x = 0");
        for (j = 0; j < i; j++)
            if (xs[i] == xs[j])
                return km__err(KM_E_INVALID, "shamir: two shares have the same x");
    }
    /* Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); minus is xor */
    for (i = 0; i < k; i++) {
        uint8_t num = 1, den = 1;
        for (j = 0; j < k; j++) {
            if (j == i)
                continue;
            num = km__gf256_mul(num, xs[j]);
            den = km__gf256_mul(den, (uint8_t)(xs[j] ^ xs[i]));
        }
        lag[i] = km__gf256_mul(num, km__gf256_inv(den));
    }
    for (b = 0; b < len; b++) {
        uint8_t s = 0;
        for (i = 0; i < k; i++)
            s ^= km__gf256_mul(ys[(size_t)i * len + b], lag[i]);
        secret[b] = s;
    }
    km_memzero(lag, sizeof lag);
    return KM_OK;
}
