/* prim.c - the primitives the vault itself needs, as thin EVP wrappers. */
#include "km_int.h"
#include <pthread.h>
#include <stdatomic.h>

#include <limits.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

int km__random(void *out, size_t len)
{
    if (len == 0)
        return KM_OK;
    if (len > INT_MAX || RAND_bytes(out, (int)len) != 1)
        return km__err_ossl(KM_E_CRYPTO, "random generator failed");
    return KM_OK;
}

/*
 * Nonces come from a per-thread buffer of DRBG output refilled in 16 KiB
 * blocks: one RAND_bytes call per 1365 nonces instead of one per nonce
 * (docs/PLATFORM.md). The buffer is discarded in a forked child (the fork
 * generation changes) and wiped when the thread exits.
 */
#define KM__NONCE_BUF 16380 /* a multiple of 12; per nonce ~37 instructions of DRBG
                              * output, against ~52 with 4 KiB requests */

struct nonce_stream {
    uint8_t buf[KM__NONCE_BUF];
    size_t pos;
    unsigned gen;
    int init;
};

/* The stream is on the heap and the thread-local variables are in the
 * initial-exec model: a data-path call reads them without a call to
 * __tls_get_addr (a few bytes of static TLS, which glibc keeps aside even for
 * a library loaded by dlopen, as the Python bindings do). */
static _Thread_local struct nonce_stream *tl_ns KM__TLS_IE;
static pthread_key_t ns_key;
static pthread_once_t ns_once = PTHREAD_ONCE_INIT;

static void ns_wipe(void *p)
{
    struct nonce_stream *ns = p;
    if (ns != NULL) {
        km_memzero(ns, sizeof *ns);
        free(ns);
        if (tl_ns == ns)
            tl_ns = NULL;
    }
}

static void ns_key_init(void)
{
    (void)pthread_key_create(&ns_key, ns_wipe);
}

unsigned km__thread_index(void)
{
    static atomic_uint next;
    static _Thread_local unsigned idx KM__TLS_IE = UINT_MAX;
    if (idx == UINT_MAX)
        idx = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % (UINT_MAX / 2);
    return idx;
}

void km__br_init(km__brlock *b)
{
    int i;
    for (i = 0; i < KM__BR_STRIPES; i++) {
        atomic_init(&b->s[i].readers, 0);
        atomic_init(&b->s[i].writer, 0);
    }
    pthread_mutex_init(&b->wmu, NULL);
}

void km__br_destroy(km__brlock *b)
{
    pthread_mutex_destroy(&b->wmu);
}

/* Both sides announce themselves, then look at the other (sequentially
 * consistent): a reader and a writer arriving at once cannot both miss the
 * other; whichever sees the other steps back. */
unsigned km__br_rdlock(km__brlock *b)
{
    unsigned s = km__thread_index() % KM__BR_STRIPES;
    for (;;) {
        atomic_fetch_add(&b->s[s].readers, 1);
        if (atomic_load(&b->s[s].writer) == 0)
            return s;
        atomic_fetch_sub_explicit(&b->s[s].readers, 1, memory_order_release);
        while (atomic_load_explicit(&b->s[s].writer, memory_order_relaxed) != 0)
            sched_yield();
    }
}

void km__br_rdunlock(km__brlock *b, unsigned stripe)
{
    atomic_fetch_sub_explicit(&b->s[stripe].readers, 1, memory_order_release);
}

/* A writer that finds readers yields a few times, then sleeps, 1 us doubling
 * up to 1 ms: a reader may hold the lock for a slow backend call (an HSM or
 * TPM signature takes milliseconds), which a spinning writer would burn a CPU
 * waiting for. */
static void br_backoff(unsigned tries)
{
    struct timespec ts = { 0, 0 };
    if (tries < 16) {
        sched_yield();
        return;
    }
    ts.tv_nsec = tries - 16 < 10 ? 1000L << (tries - 16) : 1000000L;
    nanosleep(&ts, NULL);
}

void km__br_wrlock(km__brlock *b)
{
    int i;
    pthread_mutex_lock(&b->wmu);
    for (i = 0; i < KM__BR_STRIPES; i++) {
        unsigned tries = 0;
        for (;;) {
            atomic_store(&b->s[i].writer, 1);
            if (atomic_load(&b->s[i].readers) == 0)
                break;
            atomic_store(&b->s[i].writer, 0); /* a reader holds it: let it finish */
            br_backoff(tries++);
        }
    }
}

void km__br_wrunlock(km__brlock *b)
{
    int i;
    for (i = KM__BR_STRIPES - 1; i >= 0; i--)
        atomic_store_explicit(&b->s[i].writer, 0, memory_order_release);
    pthread_mutex_unlock(&b->wmu);
}

int km__nonce12(uint8_t out[12])
{
    struct nonce_stream *ns = tl_ns;
    unsigned gen = atomic_load_explicit(&km__fork_gen, memory_order_relaxed);

    if (ns == NULL || !ns->init || ns->gen != gen || ns->pos + 12 > KM__NONCE_BUF) {
        if (ns == NULL) {
            if ((ns = calloc(1, sizeof *ns)) == NULL)
                return km__err(KM_E_NOMEM, "nonce buffer: out of memory");
            (void)pthread_once(&ns_once, ns_key_init);
            (void)pthread_setspecific(ns_key, ns);
            tl_ns = ns;
        }
        if (RAND_bytes(ns->buf, KM__NONCE_BUF) != 1) {
            km_memzero(ns->buf, sizeof ns->buf);
            ns->init = 0;
            return km__err_ossl(KM_E_CRYPTO, "random generator failed");
        }
        ns->pos = 0;
        ns->gen = gen;
        ns->init = 1;
    }
    memcpy(out, ns->buf + ns->pos, 12);
    memset(ns->buf + ns->pos, 0, 12); /* each nonce is handed out once */
    ns->pos += 12;
    return KM_OK;
}

static int gcm(int enc, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
               size_t aad_len, const uint8_t *in, size_t len, uint8_t *tag, uint8_t *out)
{
    EVP_CIPHER_CTX *c = NULL;
    int n, rc = KM_E_CRYPTO;

    if (len > INT_MAX || aad_len > INT_MAX)
        return km__err(KM_E_INVALID, "record too large");
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return km__err_ossl(KM_E_NOMEM, "cipher context");
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1
        || EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (aad_len > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        goto out;
    if (len > 0 && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc) {
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
            goto out;
        if (EVP_CipherFinal_ex(c, out + len, &n) != 1) {
            rc = KM_E_INTEGRITY;
            goto out;
        }
    } else {
        if (EVP_CipherFinal_ex(c, out + len, &n) != 1
            || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
            goto out;
    }
    rc = KM_OK;
out:
    EVP_CIPHER_CTX_free(c);
    if (rc != KM_OK) {
        if (len > 0)
            km_memzero(out, len);
        if (rc == KM_E_INTEGRITY)
            return km__err_ossl(rc, "authentication tag does not match");
        return km__err_ossl(rc, "AES-GCM failed");
    }
    return KM_OK;
}

/* A pre-keyed AES-256-GCM key: a few context pairs, each keyed once and
 * reused under its lock; a thread picks one by a per-thread index and falls
 * back to a one-shot context when that one is busy. Freeing the contexts
 * cleanses the key schedules. */
#define GCMK_SLOTS 8

typedef struct gcmk_slot {
    pthread_mutex_t mu;
    EVP_CIPHER_CTX *enc, *dec;
} gcmk_slot;

struct km__gcmk {
    uint8_t key[32];      /* secure memory: the object is km__salloc'ed */
    gcmk_slot slot[GCMK_SLOTS];
};

static EVP_CIPHER_CTX *gcmk_ctx(const uint8_t key[32], int enc)
{
    EVP_CIPHER_CTX *c;
    int ok;

    /* the key schedule: locked, non-dumpable pages (osslmem.c) */
    km__osslmem_begin();
    c = EVP_CIPHER_CTX_new();
    ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1
         && EVP_CipherInit_ex(c, NULL, NULL, key, NULL, enc) == 1;
    km__osslmem_end();
    if (!ok) {
        EVP_CIPHER_CTX_free(c);
        return NULL;
    }
    return c;
}

int km__gcmk_new(km__gcmk **out, const uint8_t key[32])
{
    km__gcmk *g = km__salloc(sizeof *g);
    int i;

    *out = NULL;
    if (g == NULL)
        return km__err(KM_E_NOMEM, "cannot map secure memory");
    memset(g, 0, sizeof *g);
    memcpy(g->key, key, 32);
    for (i = 0; i < GCMK_SLOTS; i++) {
        pthread_mutex_init(&g->slot[i].mu, NULL);
        /* without libkm's allocator in OpenSSL no keyed context is kept:
         * gcmk_op then keys one per call (km_key_schedules) */
        if (!km__osslmem_hooked())
            continue;
        g->slot[i].enc = gcmk_ctx(key, 1);
        g->slot[i].dec = gcmk_ctx(key, 0);
        if (g->slot[i].enc == NULL || g->slot[i].dec == NULL) {
            km__gcmk_free(g);
            return km__err_ossl(KM_E_CRYPTO, "AES-GCM context setup failed");
        }
    }
    *out = g;
    return KM_OK;
}

void km__gcmk_free(km__gcmk *g)
{
    int i;
    if (g == NULL)
        return;
    for (i = 0; i < GCMK_SLOTS; i++) {
        EVP_CIPHER_CTX_free(g->slot[i].enc);
        EVP_CIPHER_CTX_free(g->slot[i].dec);
        pthread_mutex_destroy(&g->slot[i].mu);
    }
    km__sfree(g, sizeof *g);
}

static unsigned gcmk_index(void)
{
    static atomic_uint next;
    static _Thread_local unsigned idx = UINT_MAX;
    if (idx == UINT_MAX)
        idx = atomic_fetch_add(&next, 1) % GCMK_SLOTS;
    return idx;
}

/* One GCM operation with a pre-keyed context (only the nonce is set). */
static int gcmk_run(EVP_CIPHER_CTX *c, int enc, const uint8_t nonce[12], const uint8_t *aad,
                    size_t aad_len, const uint8_t *in, size_t len, uint8_t *tag, uint8_t *out)
{
    int n;
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, enc) != 1)
        return KM_E_CRYPTO;
    if (aad_len > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        return KM_E_CRYPTO;
    if (len > 0 && EVP_CipherUpdate(c, out, &n, in, (int)len) != 1)
        return KM_E_CRYPTO;
    if (!enc) {
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1)
            return KM_E_CRYPTO;
        if (EVP_CipherFinal_ex(c, out + len, &n) != 1)
            return KM_E_INTEGRITY;
        return KM_OK;
    }
    if (EVP_CipherFinal_ex(c, out + len, &n) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
        return KM_E_CRYPTO;
    return KM_OK;
}

static int gcmk_op(km__gcmk *g, int enc, const uint8_t nonce[12], const uint8_t *aad,
                   size_t aad_len, const uint8_t *in, size_t len, uint8_t *tag, uint8_t *out)
{
    gcmk_slot *sl = &g->slot[gcmk_index()];
    int rc;

    if (len > INT_MAX || aad_len > INT_MAX)
        return km__err(KM_E_INVALID, "record too large");
    if (sl->enc == NULL || pthread_mutex_trylock(&sl->mu) != 0)
        return gcm(enc, g->key, nonce, aad, aad_len, in, len, tag, out);
    rc = gcmk_run(enc ? sl->enc : sl->dec, enc, nonce, aad, aad_len, in, len, tag, out);
    pthread_mutex_unlock(&sl->mu);
    if (rc != KM_OK) {
        if (len > 0)
            km_memzero(out, len);
        ERR_clear_error();
        if (rc == KM_E_INTEGRITY)
            return km__err(rc, "authentication tag does not match");
        return km__err(rc, "AES-GCM failed");
    }
    return KM_OK;
}

int km__gcmk_seal(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16])
{
    return gcmk_op(g, 1, nonce, aad, aad_len, in, len, tag, out);
}

int km__gcmk_open(km__gcmk *g, const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out)
{
    uint8_t t[16];
    memcpy(t, tag, 16);
    return gcmk_op(g, 0, nonce, aad, aad_len, in, len, t, out);
}

int km__gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16])
{
    return gcm(1, key, nonce, aad, aad_len, in, len, tag, out);
}

int km__gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, size_t len, const uint8_t tag[16],
                 uint8_t *out)
{
    uint8_t t[16];
    memcpy(t, tag, 16);
    return gcm(0, key, nonce, aad, aad_len, in, len, t, out);
}

int km__scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
               uint32_t log2n, uint32_t r, uint32_t p, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kc = NULL;
    OSSL_PARAM params[6];
    uint64_t n;
    int rc = KM_E_CRYPTO;

    if (log2n < 1 || log2n > 30)
        return km__err(KM_E_INVALID, "scrypt cost out of range");
    n = (uint64_t)1 << log2n;
    kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SCRYPT, NULL);
    if (kdf == NULL || (kc = EVP_KDF_CTX_new(kdf)) == NULL)
        goto out;
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(uintptr_t)pass, pass_len);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt, salt_len);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
    params[5] = OSSL_PARAM_construct_end();
    {
        uint64_t maxmem = 128 * r * (n + (uint64_t)p + 2) + (1u << 20);
        OSSL_PARAM mp[2] = { OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
                             OSSL_PARAM_construct_end() };
        if (EVP_KDF_CTX_set_params(kc, mp) != 1)
            goto out;
    }
    if (EVP_KDF_derive(kc, out, out_len, params) != 1)
        goto out;
    rc = KM_OK;
out:
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    if (rc != KM_OK) {
        km_memzero(out, out_len);
        return km__err_ossl(rc, "scrypt failed");
    }
    return KM_OK;
}

static const EVP_CIPHER *kwp_cipher(size_t kek_len)
{
    switch (kek_len) {
    case 16: return EVP_aes_128_wrap_pad();
    case 24: return EVP_aes_192_wrap_pad();
    case 32: return EVP_aes_256_wrap_pad();
    default: return NULL;
    }
}

static int kwp(int enc, const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
               uint8_t *out, size_t out_cap, size_t *out_len)
{
    const EVP_CIPHER *ciph = kwp_cipher(kek_len);
    EVP_CIPHER_CTX *c = NULL;
    int n = 0, m = 0, rc = KM_E_CRYPTO;
    size_t need;

    *out_len = 0;
    if (ciph == NULL)
        return km__err(KM_E_INVALID, "key-wrapping key must be 16, 24 or 32 bytes");
    if (enc) {
        if (len == 0 || len > (1u << 24))
            return km__err(KM_E_INVALID, "data to wrap must be 1 byte to 16 MiB");
        need = (len + 7) / 8 * 8 + 8;
    } else {
        if (len < 16 || len % 8 != 0 || len > (1u << 24) + 8) {
            if (out != NULL)
                km_memzero(out, out_cap);
            return km__err(KM_E_INTEGRITY, "wrapped data has an impossible length");
        }
        need = len; /* OpenSSL may write up to len bytes before checking */
    }
    if (out_cap < need) {
        *out_len = need;
        return km__err(KM_E_BUFFER, "output buffer too small for key wrap");
    }
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return km__err_ossl(KM_E_NOMEM, "cipher context");
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    if (EVP_CipherInit_ex(c, ciph, NULL, kek, NULL, enc) != 1)
        goto out;
    if (EVP_CipherUpdate(c, out, &n, in, (int)len) != 1 || n < 0) {
        rc = enc ? KM_E_CRYPTO : KM_E_INTEGRITY;
        goto out;
    }
    if (EVP_CipherFinal_ex(c, out + n, &m) != 1) {
        rc = enc ? KM_E_CRYPTO : KM_E_INTEGRITY;
        goto out;
    }
    *out_len = (size_t)n + (size_t)m;
    rc = KM_OK;
out:
    EVP_CIPHER_CTX_free(c);
    if (rc != KM_OK) {
        km_memzero(out, out_cap);
        *out_len = 0;
        return km__err_ossl(rc, rc == KM_E_INTEGRITY ? "key unwrap integrity check failed"
                                                     : "key wrap failed");
    }
    return KM_OK;
}

int km__kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                 uint8_t *out, size_t out_cap, size_t *out_len)
{
    return kwp(1, kek, kek_len, in, len, out, out_cap, out_len);
}

int km__kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t len,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
    return kwp(0, kek, kek_len, in, len, out, out_cap, out_len);
}

int km__hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                    const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kc = NULL;
    OSSL_PARAM params[5], *p = params;
    int rc = KM_E_CRYPTO;

    if (out_len == 0 || out_len > 255 * 32)
        return km__err(KM_E_INVALID, "HKDF output length must be 1 to 8160 bytes");
    kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    if (kdf == NULL || (kc = EVP_KDF_CTX_new(kdf)) == NULL)
        goto out;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm, ikm_len);
    if (salt_len > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt, salt_len);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, info_len);
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kc, out, out_len, params) != 1)
        goto out;
    rc = KM_OK;
out:
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    if (rc != KM_OK) {
        km_memzero(out, out_len);
        return km__err_ossl(rc, "HKDF failed");
    }
    return KM_OK;
}

int km__hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t out[32])
{
    size_t n = 0;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, msg, msg_len, out, 32, &n)
            == NULL || n != 32) {
        km_memzero(out, 32);
        return km__err_ossl(KM_E_CRYPTO, "HMAC failed");
    }
    return KM_OK;
}

/* A keyed HMAC-SHA-256 context, re-initialised (same key) for each message. */
struct km__mac {
    EVP_MAC_CTX *mc;
    EVP_MD_CTX *md;      /* a SHA-256 context reused by km__mac_sha256 */
    EVP_MD *sha256;
};

int km__mac_new(km__mac **out, const uint8_t *key, size_t key_len)
{
    EVP_MAC *mac = NULL;
    km__mac *m;
    OSSL_PARAM params[2];

    *out = NULL;
    if ((m = calloc(1, sizeof *m)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    m->mc = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    m->md = EVP_MD_CTX_new();
    m->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (m->mc == NULL || m->md == NULL || m->sha256 == NULL
        || EVP_MAC_init(m->mc, key, key_len, params) != 1) {
        km__mac_free(m);
        return km__err_ossl(KM_E_CRYPTO, "HMAC context setup failed");
    }
    *out = m;
    return KM_OK;
}

int km__mac_compute(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32])
{
    size_t n = 0;
    if (EVP_MAC_init(m->mc, NULL, 0, NULL) != 1 || EVP_MAC_update(m->mc, msg, len) != 1
        || EVP_MAC_final(m->mc, out, &n, 32) != 1 || n != 32) {
        km_memzero(out, 32);
        return km__err_ossl(KM_E_CRYPTO, "HMAC failed");
    }
    return KM_OK;
}

int km__mac_sha256(km__mac *m, const uint8_t *msg, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(m->md, m->sha256, NULL) != 1 || EVP_DigestUpdate(m->md, msg, len) != 1
        || EVP_DigestFinal_ex(m->md, out, &n) != 1 || n != 32) {
        km_memzero(out, 32);
        return km__err_ossl(KM_E_CRYPTO, "SHA-256 failed");
    }
    return KM_OK;
}

void km__mac_free(km__mac *m)
{
    if (m == NULL)
        return;
    EVP_MAC_CTX_free(m->mc);   /* clears the key */
    EVP_MD_CTX_free(m->md);
    EVP_MD_free(m->sha256);
    free(m);
}

/* A pre-keyed HMAC-SHA-256 for many threads: a few km__mac slots under
 * locks, a one-shot MAC when a thread's slot is busy. */
#define HMACK_SLOTS 8

struct km__hmack {
    uint8_t key[32];
    size_t key_len;
    struct {
        pthread_mutex_t mu;
        km__mac *m;
    } slot[HMACK_SLOTS];
};

int km__hmack_new(km__hmack **out, const uint8_t *key, size_t key_len)
{
    km__hmack *h;
    int i, rc;

    *out = NULL;
    if (key_len > 32)
        return km__err(KM_E_INVALID, "km__hmack_new: key longer than 32 bytes");
    if ((h = km__salloc(sizeof *h)) == NULL)
        return km__err(KM_E_NOMEM, "cannot map secure memory");
    memset(h, 0, sizeof *h);
    memcpy(h->key, key, key_len);
    h->key_len = key_len;
    for (i = 0; i < HMACK_SLOTS; i++) {
        pthread_mutex_init(&h->slot[i].mu, NULL);
        if ((rc = km__mac_new(&h->slot[i].m, key, key_len)) != KM_OK) {
            km__hmack_free(h);
            return rc;
        }
    }
    *out = h;
    return KM_OK;
}

void km__hmack_free(km__hmack *h)
{
    int i;
    if (h == NULL)
        return;
    for (i = 0; i < HMACK_SLOTS; i++) {
        km__mac_free(h->slot[i].m);
        pthread_mutex_destroy(&h->slot[i].mu);
    }
    km__sfree(h, sizeof *h);
}

int km__hmack_compute(km__hmack *h, const uint8_t *msg, size_t len, uint8_t out[32])
{
    static atomic_uint next;
    static _Thread_local unsigned idx = UINT_MAX;
    int rc;

    if (idx == UINT_MAX)
        idx = atomic_fetch_add(&next, 1) % HMACK_SLOTS;
    if (pthread_mutex_trylock(&h->slot[idx].mu) != 0)
        return km__hmac_sha256(h->key, h->key_len, msg, len, out);
    rc = km__mac_compute(h->slot[idx].m, msg, len, out);
    pthread_mutex_unlock(&h->slot[idx].mu);
    return rc;
}

int km__sha256v(const uint8_t *const *parts, const size_t *lens, size_t n, uint8_t out[32])
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    unsigned int len = 0;
    size_t i;
    int ok = mc != NULL && EVP_DigestInit_ex2(mc, EVP_sha256(), NULL) == 1;

    for (i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(mc, parts[i], lens[i]) == 1;
    ok = ok && EVP_DigestFinal_ex(mc, out, &len) == 1 && len == 32;
    EVP_MD_CTX_free(mc);
    if (!ok) {
        km_memzero(out, 32);
        return km__err_ossl(KM_E_CRYPTO, "SHA-256 failed");
    }
    return KM_OK;
}

/* CKM_RSA_AES_KEY_WRAP: RSA-OAEP (SHA-256, MGF1-SHA-256) of a fresh AES-256
 * key to the recipient's public key (SPKI DER or PEM), then AES-KWP of `in`. */
int km__rsa_oaep_kwp_wrap(const uint8_t *spki, size_t spki_len, const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *pc = NULL;
    uint8_t eph[32];
    size_t mod, n, kw = 0;
    int rc = KM_E_CRYPTO;

    *out_len = 0;
    if (spki_len > 11 && memcmp(spki, "-----BEGIN", 10) == 0) {
        BIO *b = BIO_new_mem_buf(spki, (int)spki_len);
        pk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else if (km__pkey_from_spki(&pk, spki, spki_len) != KM_OK) {
        pk = NULL;   /* reported below */
    }
    if (pk == NULL || !EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_get_bits(pk) < 2048) {
        EVP_PKEY_free(pk);
        ERR_clear_error();
        return km__err(KM_E_INVALID, "the recipient key is not an RSA public key of 2048 bits or more");
    }
    mod = (size_t)EVP_PKEY_get_size(pk);
    if (out == NULL || out_cap < mod + (len + 7) / 8 * 8 + 8) {
        *out_len = mod + (len + 7) / 8 * 8 + 8;
        EVP_PKEY_free(pk);
        return km__err(KM_E_BUFFER, "the wrapped key needs %zu bytes", *out_len);
    }
    if (RAND_priv_bytes(eph, sizeof eph) != 1)
        goto out;
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    n = mod;
    if (pc == NULL || EVP_PKEY_encrypt_init(pc) != 1
        || EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) != 1
        || EVP_PKEY_CTX_set_rsa_oaep_md_name(pc, "SHA256", NULL) != 1
        || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, "SHA256", NULL) != 1
        || EVP_PKEY_encrypt(pc, out, &n, eph, sizeof eph) != 1 || n != mod)
        goto out;
    rc = km__kwp_wrap(eph, sizeof eph, in, len, out + mod, out_cap - mod, &kw);
    if (rc == KM_OK)
        *out_len = mod + kw;
out:
    km_memzero(eph, sizeof eph);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pk);
    if (rc != KM_OK) {
        km_memzero(out, out_cap);
        if (rc == KM_E_CRYPTO)
            return km__err_ossl(rc, "RSA-OAEP key wrap failed");
    }
    return rc;
}

/* ------------------------------------------------------------ X25519 */

int km__x25519_keygen(uint8_t priv[32], uint8_t pub[32])
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    EVP_PKEY *pk = NULL;
    size_t a = 32, b = 32;
    int ok;

    ok = pc != NULL && EVP_PKEY_keygen_init(pc) == 1 && EVP_PKEY_generate(pc, &pk) == 1
         && EVP_PKEY_get_raw_private_key(pk, priv, &a) == 1 && a == 32
         && EVP_PKEY_get_raw_public_key(pk, pub, &b) == 1 && b == 32;
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    if (!ok) {
        km_memzero(priv, 32);
        return km__err_ossl(KM_E_CRYPTO, "X25519 key generation failed");
    }
    return KM_OK;
}

int km__x25519_derive(const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32])
{
    EVP_PKEY *me = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv, 32);
    EVP_PKEY *them = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, peer, 32);
    EVP_PKEY_CTX *pc = me ? EVP_PKEY_CTX_new_from_pkey(NULL, me, NULL) : NULL;
    size_t n = 32;
    int ok;

    /* OpenSSL refuses an all-zero shared secret (a small-order peer key) */
    ok = pc != NULL && them != NULL && EVP_PKEY_derive_init(pc) == 1
         && EVP_PKEY_derive_set_peer(pc, them) == 1 && EVP_PKEY_derive(pc, shared, &n) == 1
         && n == 32;
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(me);
    EVP_PKEY_free(them);
    if (!ok) {
        km_memzero(shared, 32);
        return km__err_ossl(KM_E_CRYPTO, "X25519 key agreement failed");
    }
    return KM_OK;
}

/* The KEK of an X25519 wrap: HKDF-SHA-256(shared, eph_pub || pub, info). */
static int x25519_kek(const uint8_t shared[32], const uint8_t eph_pub[32], const uint8_t pub[32],
                      uint8_t kek[32])
{
    static const char info[] = "km v1 slot wrap";
    uint8_t salt[64];

    memcpy(salt, eph_pub, 32);
    memcpy(salt + 32, pub, 32);
    return km__hkdf_sha256(shared, 32, salt, sizeof salt, (const uint8_t *)info,
                           sizeof info - 1, kek, 32);
}

int km__x25519_kwp_wrap(const uint8_t pub[32], const uint8_t *in, size_t len,
                        uint8_t eph_pub[32], uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t eph[32], shared[32], kek[32];
    int rc;

    *out_len = 0;
    if ((rc = km__x25519_keygen(eph, eph_pub)) == KM_OK
        && (rc = km__x25519_derive(eph, pub, shared)) == KM_OK
        && (rc = x25519_kek(shared, eph_pub, pub, kek)) == KM_OK)
        rc = km__kwp_wrap(kek, sizeof kek, in, len, out, out_cap, out_len);
    km_memzero(eph, sizeof eph);
    km_memzero(shared, sizeof shared);
    km_memzero(kek, sizeof kek);
    return rc;
}

int km__x25519_kwp_unwrap(const uint8_t priv[32], const uint8_t pub[32],
                          const uint8_t eph_pub[32], const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t shared[32], kek[32];
    int rc;

    *out_len = 0;
    if ((rc = km__x25519_derive(priv, eph_pub, shared)) == KM_OK
        && (rc = x25519_kek(shared, eph_pub, pub, kek)) == KM_OK)
        rc = km__kwp_unwrap(kek, sizeof kek, in, len, out, out_cap, out_len);
    km_memzero(shared, sizeof shared);
    km_memzero(kek, sizeof kek);
    return rc;
}
