/* shamir.h - Shamir secret sharing over GF(2^8) (internal). */
#ifndef KM_SHAMIR_H
#define KM_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

/* Splits secret (1..64 bytes) into n shares (2 <= m <= n <= 255): share i
 * (0-based) has x = i + 1 and its len bytes at ys + i*len. Coefficients come
 * from km__random. */
int km__shamir_split(const uint8_t *secret, size_t len, unsigned m, unsigned n, uint8_t *ys);
/* Lagrange interpolation at 0 of k shares (distinct non-zero xs[k], ys k*len
 * bytes). The arithmetic cannot tell a wrong share: callers check it. */
int km__shamir_combine(const uint8_t *xs, const uint8_t *ys, unsigned k, size_t len,
                       uint8_t *secret);
/* GF(2^8) product and inverse (AES polynomial), constant time; for tests. */
uint8_t km__gf256_mul(uint8_t a, uint8_t b);
uint8_t km__gf256_inv(uint8_t a);

#endif /* KM_SHAMIR_H */
