/*
 * km_int.h - internal interfaces shared by every part of the library: the
 * primitives (error.c, secure.c, osslmem.c, init.c, prim.c, format.c), the
 * catalog store (store.h, included below), and the built-in key backends'
 * tables. Not installed. The core's own structures are in core.h.
 *
 * Naming: km__ for cross-file internal helpers.
 */
#ifndef KM_INT_H
#define KM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>

#include "km.h"
#include "km/sys/backend.h"

/* ------------------------------------------------------------------ error.c */

/* Records the calling thread's last error and returns `code`. Messages are one
 * impersonal line and never contain secrets. */
int km__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int km__err_native(int code, km_native_kind kind, unsigned long native, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* As km__err, for a failure a backend reported first: when the thread's last
 * error is `code` with a native code (the backend's: a KMIP Result Reason, a CK_RV),
 * that code and the backend's message (in parentheses after the new one) are
 * kept, so the server's or device's own reason survives the core's wording. */
int km__err_over(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the oldest OpenSSL error from the queue as native code, clears the queue. */
int km__err_ossl(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ----------------------------------------------------------------- secure.c */

/* A km_secret from the small-secret pool (locked, non-dumpable arenas; no
 * guard page per secret): for libkm's own short-lived records. Freed (and
 * wiped) with km_secret_free as any other. */
int km__secret_new_pooled(km_secret **out, size_t len);
/* Registers the pool's fork handlers (km_init calls it first thing). */
void km__secure_fork_init(void);
/* Secure allocation (mlock, MADV_DONTDUMP, guard pages). km__sfree wipes. */
void *km__salloc(size_t len);
void km__sfree(void *p, size_t len);

/* Under AddressSanitizer, memory libkm maps itself (secure pages, the OpenSSL
 * region of osslmem.c) is registered with LeakSanitizer as a root region, so
 * that heap objects pointed to only from there are not reported as leaks by
 * a leak check made while a vault is open (libFuzzer does them). */
#if defined(__SANITIZE_ADDRESS__)
#define KM__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KM__LSAN 1
#endif
#endif
#ifdef KM__LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* ---------------------------------------------------------------- osslmem.c */

/* OpenSSL allocations made by this thread between begin and end (nested) come
 * from locked, non-dumpable pages when the allocation functions are installed
 * (km__osslmem_hooked); otherwise begin/end do nothing and callers must not
 * keep keyed cipher contexts beyond a call. */
void km__osslmem_begin(void);
void km__osslmem_end(void);
int km__osslmem_hooked(void);
void km__osslmem_fork_init(void);

/* ------------------------------------------------------------------- init.c */

/* Incremented in the child after every fork(); handles compare it. */
extern atomic_uint km__fork_gen;

/* The primitives (prim.c, prim_keyed.c, prim_pkey.c): every OpenSSL call of
 * the device backends goes through them. */
#include "prim.h"
#include "keytype.h"

/* ----------------------------------------------------------------- format.c */

/* Ciphertext header v1 (docs/FORMATS.md): KM, 1, alg, key id[16], version BE32, nonce[12]. */
#define KM__CT_MAGIC0 'K'
#define KM__CT_MAGIC1 'M'
#define KM__SIG_MAGIC1 'S'   /* tagged signature: 'K' 'S' */
#define KM__MAC_MAGIC1 'T'   /* tagged MAC: 'K' 'T' */
#define KM__DK_MAGIC1 'D'    /* wrapped data key: 'K' 'D', otherwise a v1 ciphertext */
#define KM__DKP_MAGIC1 'P'   /* wrapped private key of a data key pair: 'K' 'P' (PKCS#8 DER) */
#define KM__FORMAT_V1 1

typedef struct km__ct_header {
    uint8_t magic1;          /* KM__CT_MAGIC1 (data), KM__DK_MAGIC1 (wrapped data key) or
                                KM__DKP_MAGIC1 (wrapped private key of a data key pair) */
    uint8_t alg;
    uint8_t key_id[16];
    uint32_t version;
    uint8_t nonce[12];
} km__ct_header;

void km__ct_header_write(uint8_t out[KM_CIPHERTEXT_HEADER], const km__ct_header *h);
/* KM_E_INVALID: too short / wrong magic; KM_E_UNSUPPORTED: other format version. */
int km__ct_header_parse(const uint8_t *in, size_t len, km__ct_header *h);
/* Tagged signature / MAC header (24 bytes): K, magic1, 1, alg, key id, version. */
void km__tag_header_write(uint8_t out[KM_TAG_HEADER], uint8_t magic1, uint8_t alg,
                          const uint8_t key_id[16], uint32_t version);
int km__tag_header_parse(const uint8_t *in, size_t len, uint8_t magic1, uint8_t *alg,
                         uint8_t key_id[16], uint32_t *version);

static inline void km__be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t km__be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void km__be64_put(uint8_t *p, uint64_t v)
{
    km__be32_put(p, (uint32_t)(v >> 32)); km__be32_put(p + 4, (uint32_t)v);
}
static inline uint64_t km__be64_get(const uint8_t *p)
{
    return ((uint64_t)km__be32_get(p) << 32) | km__be32_get(p + 4);
}

/* TLV records: tag (1 byte), length (BE32), value. Tags are unique per record.
 * Writer into a fixed caller buffer; overflow is sticky and reported at end. */
typedef struct km__tlv_w {
    uint8_t *buf;
    size_t cap, len;
    int overflow;
} km__tlv_w;

void km__tlv_init(km__tlv_w *w, uint8_t *buf, size_t cap);
void km__tlv_put(km__tlv_w *w, uint8_t tag, const void *val, size_t len);
void km__tlv_put_u32(km__tlv_w *w, uint8_t tag, uint32_t v);
void km__tlv_put_u64(km__tlv_w *w, uint8_t tag, uint64_t v);
void km__tlv_put_str(km__tlv_w *w, uint8_t tag, const char *s);
/* KM_OK or KM_E_INTERNAL on overflow. */
int km__tlv_end(const km__tlv_w *w);

/* Validates a whole record: every entry well-formed, no duplicate tag.
 * KM_E_CORRUPT otherwise. */
int km__tlv_check(const uint8_t *buf, size_t len);
/* Finds `tag`. Returns 1 found, 0 absent. (Call km__tlv_check first.) */
int km__tlv_find(const uint8_t *buf, size_t len, uint8_t tag, const uint8_t **val,
                 size_t *vlen);
/* Appends to w every entry of the (checked) record buf except those whose tag
 * is one of tags[0..ntags): rewriting some fields of a record keeps the
 * fields a newer libkm added. */
void km__tlv_copy_except(km__tlv_w *w, const uint8_t *buf, size_t len, const uint8_t *tags,
                         size_t ntags);
/* Typed getters: KM_OK, KM_E_NOTFOUND when absent, KM_E_CORRUPT on a wrong length. */
int km__tlv_get_u32(const uint8_t *buf, size_t len, uint8_t tag, uint32_t *out);
int km__tlv_get_u64(const uint8_t *buf, size_t len, uint8_t tag, uint64_t *out);

/* base64url without padding. */
size_t km__b64url_encoded_len(size_t bin_len);
void km__b64url_encode(const uint8_t *in, size_t len, char *out); /* writes NUL too */
/* KM_E_INVALID on a bad character or an impossible length. */
int km__b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* ------------------------------------------ backends/software/software.c
 * Software key material (the "software" backend's reference) and the EVP
 * operations on it. A software reference is:
 *   [1 byte km_material_format][material bytes]
 * RAW for AES/HMAC (and never for asymmetric keys in generated refs),
 * PKCS8_DER for asymmetric private keys, SPKI_DER for public-only keys.
 */
/* (The built-in backends' tables are declared in core.h, which registers them.) */

/* The key-type table and km__type_* (km__type_key_len, km__type_usage, ...)
 * are in keytype.h (primitives). */

#endif /* KM_INT_H */
