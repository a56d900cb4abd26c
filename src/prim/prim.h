/*
 * prim.h - the primitives: every cryptographic operation libkm makes outside
 * the software backend (backends/software/software.c) and the OpenSSL provider, as thin
 * wrappers over OpenSSL 3. The device backends (backends/pkcs11,
 * backends/tpm2) include no OpenSSL header: what they need of software
 * crypto (digests, public keys from a device's coordinates or modulus, SPKI
 * export, signature verification, raw r || s <-> DER, keyed AES-GCM / HMAC /
 * AES-KWP objects for key material a device seals) is here, once, and the
 * software backend uses the same functions where it does the same thing.
 *
 *   prim.c        random, nonces, one-shot AES-GCM, scrypt, AES-KWP, HKDF,
 *                 HMAC/SHA-256 helpers of the vault, RSA-OAEP + KWP wrap
 *   prim_keyed.c  km__skey: a keyed AES-GCM / HMAC / AES-KWP object with
 *                 pools of keyed contexts (the hot path of data keys)
 *   prim_pkey.c   km__pkey: public keys (SPKI, EC point, RSA n/e, X.509),
 *                 SPKI export, verification, ECDSA encodings, digests
 *
 * Every function returns KM_OK or a negative km error code it has recorded
 * (km__err: one impersonal line, never key bytes). Not installed.
 */
#ifndef KM_PRIM_H
#define KM_PRIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "km.h"

/* ------------------------------------------------------------------ prim.c */


/* Cryptographically strong random bytes (OpenSSL DRBG). */
int km__random(void *out, size_t len);
/* Per-thread buffered DRBG stream for nonces: wiped and refilled after fork. */
int km__nonce12(uint8_t out[12]);
/* A small number for the calling thread, given in order of first call (0, 1, 2, ...):
 * callers take it modulo their count of per-thread slots, so that threads sharing
 * an object use different cache lines. */
unsigned km__thread_index(void);
/* A reader-writer lock for data paths (prim.c): a reader counts itself in its
 * thread's stripe only (one atomic add, one subtract: no pthread_rwlock's ~100
 * instructions), so that threads reading at once write no cache line in
 * common; a writer (serialised by wmu) claims every stripe, in order, each at a
 * moment it has no reader. Readers are preferred as with glibc's default
 * rwlock: a writer that finds a reader backs off and retries, so a thread may
 * read-lock a lock it already reads (a reader waits only for a writer that
 * holds its stripe). Stripes are 128 bytes apart, so two never share a line
 * whatever the struct's alignment. */
#define KM__BR_STRIPES 4
typedef struct km__brlock {
    struct {
        atomic_uint readers;
        atomic_int writer;
        char pad[128 - sizeof(atomic_uint) - sizeof(atomic_int)];
    } s[KM__BR_STRIPES];
    pthread_mutex_t wmu;
} km__brlock;
void km__br_init(km__brlock *b);
void km__br_destroy(km__brlock *b);
/* Read-locks the calling thread's stripe; returns it for km__br_rdunlock. */
unsigned km__br_rdlock(km__brlock *b);
void km__br_rdunlock(km__brlock *b, unsigned stripe);
void km__br_wrlock(km__brlock *b);
void km__br_wrunlock(km__brlock *b);

/* The initial-exec TLS model for small thread-local variables on the data path
 * (no __tls_get_addr call per access from the shared library). */
#if defined(__GNUC__)
#define KM__TLS_IE __attribute__((tls_model("initial-exec")))
#else
#define KM__TLS_IE
#endif
/* One-shot AES-256-GCM with a 12-byte nonce and a 16-byte tag. */
int km__gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
/* A pre-keyed AES-256-GCM key for many one-shot operations from many threads
 * (the vault's record sealing). */
typedef struct km__gcmk km__gcmk;
int km__gcmk_new(km__gcmk **out, const uint8_t key[32]);
void km__gcmk_free(km__gcmk *g);
int km__gcmk_seal(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
int km__gcmk_open(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out);
/* KM_E_INTEGRITY on a bad tag; `out` is then zeroed. */
int km__gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, const uint8_t tag[16],
                 uint8_t *out);
/* scrypt(pass, salt, N = 2^log2n, r, p) -> out. */
int km__scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
               uint32_t log2n, uint32_t r, uint32_t p, uint8_t *out, size_t out_len);
/* AES-KWP (RFC 5649) with a 128/192/256-bit KEK. wrap: out_len = ceil8(len) + 8. */
int km__kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                 uint8_t *out, size_t out_cap, size_t *out_len);
/* KM_E_INTEGRITY when the integrity check fails; `out` zeroed. */
int km__kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                   uint8_t *out, size_t out_cap, size_t *out_len);
/* HKDF-SHA-256 (RFC 5869). */
int km__hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                    const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);
/* CKM_RSA_AES_KEY_WRAP to an outside RSA public key (SPKI DER or PEM):
 * RSA-OAEP-SHA-256 of a fresh AES-256 key, then AES-KWP of `in`. */
int km__rsa_oaep_kwp_wrap(const uint8_t *spki, size_t spki_len, const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len);
/* A reusable keyed HMAC-SHA-256 (and SHA-256) context: one thread at a time. */
typedef struct km__mac km__mac;
int km__mac_new(km__mac **out, const uint8_t *key, size_t key_len);
int km__mac_compute(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32]);
int km__mac_sha256(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32]);
void km__mac_free(km__mac *m);
/* A pre-keyed HMAC-SHA-256 (key up to 32 bytes) for many threads. */
typedef struct km__hmack km__hmack;
int km__hmack_new(km__hmack **out, const uint8_t *key, size_t key_len);
int km__hmack_compute(km__hmack *h, const uint8_t *msg, size_t len, uint8_t out[32]);
void km__hmack_free(km__hmack *h);
/* SHA-256 of the concatenation of n parts. */
int km__sha256v(const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t out[32]);
/* HMAC-SHA-256, full 32-byte output. */
int km__hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[32]);

/* An ECDSA signature given as r || s (field bytes each, as PKCS#11 and TPMs
 * return it) as DER ECDSA-Sig-Value in out. KM_E_CRYPTO (nothing recorded:
 * the caller says what failed) when it does not encode or does not fit in cap. */
int km__ecdsa_raw_to_der(const uint8_t *rs, size_t field, uint8_t *out, size_t cap,
                         size_t *out_len);
/* A DER ECDSA-Sig-Value (the whole input) as r || s, `field` bytes each, in
 * out (2 * field bytes). KM_E_CRYPTO (nothing recorded) when it does not
 * parse or a value is longer than `field`. */
int km__ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field, uint8_t *out);
/* Standard base64 (RFC 4648 section 4, with padding) of in into out, which
 * must hold 4 * ceil(len / 3) + 1 bytes; writes a NUL and returns the length
 * without it. For PEM bodies (callers break the lines). */
size_t km__b64_encode(const uint8_t *in, size_t len, char *out);
/* Standard base64 (with padding; no whitespace) of in[0..len) decoded into
 * out (cap bytes; 3 * len / 4 is enough), *out_len its length. KM_E_CORRUPT
 * (nothing recorded) when it does not decode or does not fit. */
int km__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* X25519 (prim.c, OpenSSL EVP): a fresh key pair as raw 32-byte
 * halves; the raw shared secret of priv and a peer's public key (KM_E_CRYPTO,
 * out zeroed, for a small-order peer key). */
int km__x25519_keygen(uint8_t priv[32], uint8_t pub[32]);
int km__x25519_derive(const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32]);
/* `in` wrapped to the X25519 public key pub: a fresh ephemeral key pair
 * (its public half in eph_pub), KEK = HKDF-SHA-256(ECDH, salt = eph_pub ||
 * pub, info "km v1 slot wrap"), AES-KWP (out_len = ceil8(len) + 8). unwrap
 * with the private half: KM_E_INTEGRITY when it is not the matching key. */
int km__x25519_kwp_wrap(const uint8_t pub[32], const uint8_t *in, size_t len,
                        uint8_t eph_pub[32], uint8_t *out, size_t out_cap, size_t *out_len);
int km__x25519_kwp_unwrap(const uint8_t priv[32], const uint8_t pub[32],
                          const uint8_t eph_pub[32], const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len);
/* Random bytes from OpenSSL's private DRBG (for key material). KM_E_CRYPTO. */
int km__random_priv(void *out, size_t len);
/* The digest `md` (an OpenSSL name: "SHA256", "SHA384", "SHA512") of msg in
 * out (cap bytes, at least the digest's length); *out_len its length.
 * KM_E_CRYPTO when the digest is unknown or fails, KM_E_INTERNAL when cap is
 * too small. */
int km__digest(const char *md, const uint8_t *msg, size_t len, uint8_t *out, size_t cap,
               size_t *out_len);

/* ------------------------------------------------------------ prim_keyed.c */

/* A symmetric key object: the key bytes in secure memory and, for AES-GCM
 * and HMAC, pools of keyed OpenSSL contexts (the key schedule is made once:
 * a call takes a context, uses it and gives it back). Many threads may use
 * one object at once; free it when no call is in flight. The contexts are
 * allocated in locked, non-dumpable pages (osslmem.c) when libkm's allocator
 * is installed in OpenSSL; otherwise cipher contexts are not kept beyond a
 * call. */
/* A pool of prepared OpenSSL contexts (prim_keyed.c) shared by threads: a few
 * per-thread slots taken and given back with one atomic exchange each, then a
 * list under a mutex. A context lives in a node; item_free frees an item. */
typedef struct km__ctxnode {
    struct km__ctxnode *next;
    void *item;
} km__ctxnode;
typedef struct km__ctxpool km__ctxpool;
int km__ctxpool_new(km__ctxpool **out, void (*item_free)(void *));
void km__ctxpool_free(km__ctxpool *p);
/* A pooled node, or NULL when the pool is empty (the caller makes one). */
km__ctxnode *km__ctxpool_take(km__ctxpool *p);
void km__ctxpool_give(km__ctxpool *p, km__ctxnode *n);
/* A node holding item (NULL: out of memory); freeing one frees its item. */
km__ctxnode *km__ctxnode_new(void *item);
void km__ctxnode_free(km__ctxpool *p, km__ctxnode *n);

typedef struct km__skey km__skey;
typedef enum km__skey_kind {
    KM__SKEY_GCM = 1,   /* AES-GCM: alg is the cipher ("AES-256-GCM"), 12-byte nonce, 16-byte tag */
    KM__SKEY_HMAC,      /* HMAC: alg is the digest ("SHA256") */
    KM__SKEY_KWP,       /* AES-KWP (RFC 5649): alg NULL, a 16/24/32-byte key */
    KM__SKEY_CMAC,      /* AES-CMAC (SP 800-38B): alg is the CBC cipher ("AES-256-CBC") */
    KM__SKEY_SIV        /* AES-SIV (RFC 5297): alg is the cipher ("AES-256-SIV"), no nonce,
                           the 16-byte synthetic IV as the tag */
} km__skey_kind;

/* Copies key (key_len bytes) into a new object of `kind`. KM_E_NOMEM,
 * KM_E_CRYPTO (algorithm unavailable, or a first context cannot be keyed). */
int km__skey_new(km__skey **out, km__skey_kind kind, const char *alg, const uint8_t *key,
                 size_t key_len);
/* Wipes and frees; accepts NULL. */
void km__skey_free(km__skey *k);
/* The key bytes (borrowed, secure memory; for HKDF from an HMAC key). */
const uint8_t *km__skey_bytes(const km__skey *k, size_t *len);
/* AES-GCM over aad1 || aad2 (either may be empty). KM_E_USAGE (not a GCM
 * key), KM_E_INVALID (a length above INT_MAX), KM_E_CRYPTO (out and tag are
 * then zeroed). An AES-SIV key ignores the nonce (NULL allowed) and takes
 * aad1 as the first S2V string, always (even empty), aad2 as a second one
 * only when not empty; the tag is the synthetic IV V of RFC 5297 (whose
 * output V || C is here out = C, tag = V). An empty message is
 * KM_E_UNSUPPORTED: OpenSSL 3.0's AES-SIV never finishes one. */
int km__skey_seal(km__skey *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                  const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                  uint8_t *out, uint8_t tag[16]);
/* KM_E_INTEGRITY on a bad tag, KM_E_USAGE, KM_E_INVALID, KM_E_CRYPTO; out is
 * zeroed on every failure. */
int km__skey_open(km__skey *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                  const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                  const uint8_t tag[16], uint8_t *out);
/* HMAC or AES-CMAC of msg: exactly tag_len bytes (the digest's length; 16
 * for CMAC) in tag. KM_E_USAGE (not a MAC key), KM_E_CRYPTO (tag zeroed). */
int km__skey_mac(km__skey *k, const uint8_t *msg, size_t msg_len, uint8_t *tag,
                 size_t tag_len);
/* AES-KWP wrap (out_len = ceil8(len) + 8; out may be NULL to ask the size:
 * KM_E_BUFFER with *out_len). KM_E_USAGE (not a KWP key). */
int km__skey_wrap(km__skey *k, const uint8_t *in, size_t len, uint8_t *out, size_t out_cap,
                  size_t *out_len);
/* AES-KWP unwrap into a new secret. KM_E_INTEGRITY (impossible length or
 * the integrity check fails), KM_E_USAGE, KM_E_NOMEM. */
int km__skey_unwrap(km__skey *k, const uint8_t *in, size_t len, km_secret **out);

/* ------------------------------------------------------------- prim_pkey.c */

/* An asymmetric key as OpenSSL holds it (an EVP_PKEY), opaque outside the
 * primitives and the software backend. Freed with km__pkey_free. */
typedef struct evp_pkey_st km__pkey;
void km__pkey_free(km__pkey *k);
/* Decodes SubjectPublicKeyInfo DER, the whole input and nothing else; an EC
 * key whose curve is given by explicit parameters (not a named curve OID) is
 * refused (Wycheproof ecdh_secp256r1 tcId 361). An X9.42 DH key (OID
 * dhpublicnumber, "DHX") comes back as the PKCS#3 DH key on its RFC 7919
 * group (ffdhe2048/3072/4096) when its p, g and q are that group's, and is
 * refused otherwise. KM_E_INVALID (KM_E_CRYPTO: OpenSSL cannot set up a group). */
int km__pkey_from_spki(km__pkey **out, const uint8_t *der, size_t len);
/* The public key of an X.509 certificate (DER, the whole input).
 * KM_E_CORRUPT when it does not decode. */
int km__pkey_from_cert(km__pkey **out, const uint8_t *der, size_t len);
/* An EC public key on the named curve ("P-256", "P-384", ...) from its
 * encoded point (0x04 || x || y), or from x and y (big-endian, each at most
 * the field length, left-padded here). KM_E_CRYPTO when it does not decode
 * (not on the curve). */
int km__pkey_from_ec_point(km__pkey **out, const char *group, const uint8_t *point,
                           size_t point_len);
int km__pkey_from_ec_xy(km__pkey **out, const char *group, const uint8_t *x, size_t x_len,
                        const uint8_t *y, size_t y_len);
/* The EC point inside a DER OCTET STRING (PKCS#11's CKA_EC_POINT) as a key
 * on `group`. KM_E_CRYPTO. */
int km__pkey_from_ec_point_der(km__pkey **out, const char *group, const uint8_t *der,
                               size_t der_len);
/* An RSA public key from its modulus and public exponent (big-endian
 * unsigned). KM_E_CRYPTO. */
int km__pkey_from_rsa(km__pkey **out, const uint8_t *n, size_t n_len, const uint8_t *e,
                      size_t e_len);
/* An RSA public key from PKCS#1 RSAPublicKey DER (the whole input and
 * nothing else), as a KMIP server returns one (Key Format Type PKCS_1).
 * KM_E_INVALID when it does not decode. */
int km__pkey_from_rsa_pkcs1(km__pkey **out, const uint8_t *der, size_t len);
/* 1 unless the key is an EC key whose curve came as explicit parameters. */
int km__pkey_named_curve(const km__pkey *k);
/* The SubjectPublicKeyInfo DER of the key in out. KM_E_BUFFER (with
 * *out_len the size needed) when out is NULL or out_cap too small,
 * KM_E_CRYPTO (out zeroed). */
int km__pkey_spki(const km__pkey *k, uint8_t *out, size_t out_cap, size_t *out_len);
/* The length of the key's SubjectPublicKeyInfo DER; 0 when it does not
 * encode (nothing recorded). */
size_t km__pkey_spki_len(const km__pkey *k);
/* The largest signature or ciphertext of the key in bytes (EVP_PKEY_get_size). */
size_t km__pkey_size(const km__pkey *k);
/* 1 when the key is an EC key on the NIST curve `group` ("P-256"), else 0. */
int km__pkey_is_ec(const km__pkey *k, const char *group);
/* 1 when the key is an RSA key of `bits` bits, else 0. */
int km__pkey_is_rsa(const km__pkey *k, int bits);
/* The uncompressed point (0x04 || x || y, 2 * field + 1 bytes) of a peer's
 * EC public key given as SPKI DER, when it is on the NIST curve `group`.
 * KM_E_INVALID otherwise (any other key, curve or encoding, trailing bytes,
 * or more than cap bytes). */
int km__pkey_peer_ec_point(const uint8_t *spki, size_t spki_len, const char *group,
                           uint8_t *point, size_t cap, size_t *point_len);
/* The JSON Web Key (RFC 7517/7518) of a public key given as SPKI DER: EC
 * {"kty":"EC","crv":"P-256","x","y"} (coordinates of the full field length),
 * RSA {"kty":"RSA","n","e"}, OKP {"kty":"OKP","crv":"Ed25519"|"X25519","x"},
 * base64url without padding, no whitespace, NUL-terminated in out; *out_len
 * its length without the NUL (KM_E_BUFFER: with it). KM_E_UNSUPPORTED for
 * other keys (FFDHE). */
int km__pkey_jwk(const uint8_t *spki, size_t spki_len, char *out, size_t out_cap,
                 size_t *out_len);
/* The SPKI DER of a public JWK (the members above; a private one, with "d",
 * is refused): KM_E_INVALID for anything else, an EC point not on its curve,
 * coordinates not of the field's length; KM_E_BUFFER. */
int km__jwk_to_spki(const uint8_t *jwk, size_t len, uint8_t *out, size_t out_cap,
                    size_t *out_len);
/* The largest RSA-OAEP plaintext of the key with digest `md` ("SHA256"):
 * modulus bytes - 2 * digest bytes - 2; 0 for an unknown digest. */
size_t km__rsa_oaep_max(const km__pkey *k, const char *md);
/* RSA-OAEP with `md` for OAEP and MGF1 and an optional label (PKCS#1 v2.2):
 * encrypt with the public key (out: the modulus size; KM_E_BUFFER with
 * *out_len when out is NULL or short; KM_E_INVALID when in is longer than
 * km__rsa_oaep_max), decrypt with the private key (any plaintext, the empty
 * one included; KM_E_INTEGRITY for a wrong length, key, label or digest, or
 * altered data; KM_E_BUFFER with *out_len when out_cap is short). */
int km__pkey_rsa_oaep_encrypt(km__pkey *k, const char *md, const uint8_t *label,
                              size_t label_len, const uint8_t *in, size_t in_len, uint8_t *out,
                              size_t out_cap, size_t *out_len);
int km__pkey_rsa_oaep_decrypt(km__pkey *k, const char *md, const uint8_t *label,
                              size_t label_len, const uint8_t *in, size_t in_len, uint8_t *out,
                              size_t out_cap, size_t *out_len);
/* Verifies sig over msg with the public key (or the public half of a private
 * key): ECDSA (DER, or r || s with flags KM_SIG_P1363) with digest md, RSA-PSS
 * (md, MGF1-SHA-256, salt 32 bytes) or with KM_SIG_PKCS1 RSA PKCS#1 v1.5 (md),
 * or EdDSA (md NULL). KM_E_VERIFY when it
 * does not verify (also for an impossible length), KM_E_INVALID (unknown
 * flags, P1363 on a non-EC key), KM_E_CRYPTO (cannot set up). */
__attribute__((warn_unused_result))
int km__pkey_verify(km__pkey *k, const char *md, uint32_t flags, const uint8_t *msg,
                    size_t msg_len, const uint8_t *sig, size_t sig_len);

#endif /* KM_PRIM_H */
