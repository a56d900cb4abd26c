/*
 * prim_keyed.c - km__skey (prim.h): a symmetric key with pools of keyed
 * OpenSSL contexts, shared by the software backend (backends/software/software.c) and the
 * device backends that keep a key sealed by the device and use it in software
 * (backends/tpm2). The key schedule is made once; a call takes a context, sets
 * the nonce (or restarts the MAC), and gives it back.
 */
#include "km_int.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

enum { POOL_ENC = 0, POOL_DEC = 1, POOL_MAC = 2, POOL__COUNT };

/* Each pool (km__ctxpool, prim.h) has a few per-thread slots (a thread always
 * uses the same one, on its own cache line) taken and returned with one atomic
 * exchange, so that threads sharing a key do not meet on a mutex; the mutex
 * list behind them holds the contexts of any further concurrent callers. */
#define POOL_SLOTS 4

struct pool_slot {
    _Atomic(km__ctxnode *) n;
    char pad[64 - sizeof(void *)];
};

struct km__ctxpool {
    struct pool_slot slots[POOL_SLOTS];
    pthread_mutex_t mu;
    km__ctxnode *free;
    void (*item_free)(void *);
    int init;
};

static unsigned thread_slot(void)
{
    return km__thread_index() % POOL_SLOTS;
}

static int ctxpool_init(km__ctxpool *p, void (*item_free)(void *))
{
    memset(p, 0, sizeof *p);
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return km__err(KM_E_NOMEM, "context pool: cannot make a mutex");
    p->item_free = item_free;
    p->init = 1;
    return KM_OK;
}

static void ctxpool_fini(km__ctxpool *p)
{
    km__ctxnode *n, *next;
    int j;
    if (!p->init)
        return;
    for (j = 0; j < POOL_SLOTS; j++)
        km__ctxnode_free(p, atomic_exchange(&p->slots[j].n, NULL));
    for (n = p->free; n != NULL; n = next) {
        next = n->next;
        km__ctxnode_free(p, n);
    }
    pthread_mutex_destroy(&p->mu);
    p->init = 0;
}

int km__ctxpool_new(km__ctxpool **out, void (*item_free)(void *))
{
    km__ctxpool *p = aligned_alloc(64, (sizeof *p + 63) / 64 * 64);
    int rc;
    *out = NULL;
    if (p == NULL)
        return km__err(KM_E_NOMEM, "context pool: out of memory");
    if ((rc = ctxpool_init(p, item_free)) != KM_OK) {
        free(p);
        return rc;
    }
    *out = p;
    return KM_OK;
}

void km__ctxpool_free(km__ctxpool *p)
{
    if (p == NULL)
        return;
    ctxpool_fini(p);
    free(p);
}

km__ctxnode *km__ctxnode_new(void *item)
{
    km__ctxnode *n = calloc(1, sizeof *n);
    if (n != NULL)
        n->item = item;
    return n;
}

void km__ctxnode_free(km__ctxpool *p, km__ctxnode *n)
{
    if (n == NULL)
        return;
    if (n->item != NULL)
        p->item_free(n->item);
    free(n);
}

km__ctxnode *km__ctxpool_take(km__ctxpool *p)
{
    km__ctxnode *n = atomic_exchange_explicit(&p->slots[thread_slot()].n, NULL,
                                              memory_order_acquire);
    if (n != NULL)
        return n;
    pthread_mutex_lock(&p->mu);
    n = p->free;
    if (n != NULL)
        p->free = n->next;
    pthread_mutex_unlock(&p->mu);
    if (n != NULL)
        n->next = NULL;
    return n;
}

void km__ctxpool_give(km__ctxpool *p, km__ctxnode *n)
{
    km__ctxnode *empty = NULL;
    n->next = NULL;
    if (atomic_compare_exchange_strong_explicit(&p->slots[thread_slot()].n, &empty, n,
                                                memory_order_release, memory_order_relaxed))
        return;
    pthread_mutex_lock(&p->mu);
    n->next = p->free;
    p->free = n;
    pthread_mutex_unlock(&p->mu);
}

struct km__skey {
    km__skey_kind kind;
    uint8_t *key;          /* the key bytes, in secure memory */
    size_t key_len;
    EVP_CIPHER *cipher;    /* GCM, SIV */
    EVP_MAC *mac;          /* HMAC, CMAC */
    char md[32];           /* HMAC: the digest name; CMAC: the cipher name */
    km__ctxpool pools[POOL__COUNT];
};

/* A pooled AES-GCM context with its parameters built once: the nonce, the
 * tag and the parameter arrays that point at them (prim_keyed.c gcm_run). */
typedef struct gcm_item {
    EVP_CIPHER_CTX *c;
    uint8_t iv[12], tag[16];
    OSSL_PARAM set[3];     /* the whole IV, the expected tag (opening), end */
    OSSL_PARAM set_iv[2];  /* the whole IV, end (sealing) */
    OSSL_PARAM tagp[2];    /* the tag, end */
} gcm_item;

static void gcm_item_init(gcm_item *g, EVP_CIPHER_CTX *c)
{
    memset(g, 0, sizeof *g);
    g->c = c;
    /* the length -1: "tlsivfixed" sets the whole IV (gcm_set_nonce) */
    g->set[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED, g->iv,
                                                  (size_t)-1);
    g->set[1] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, g->tag, 16);
    g->set[2] = OSSL_PARAM_construct_end();
    g->set_iv[0] = g->set[0];
    g->set_iv[1] = g->set[2];
    g->tagp[0] = g->set[1];
    g->tagp[1] = g->set[2];
}

static void cipher_ctx_free(void *item)
{
    gcm_item *g = item;
    EVP_CIPHER_CTX_free(g->c);
    km_memzero(g, sizeof *g);
    free(g);
}

static void mac_ctx_free(void *m)
{
    EVP_MAC_CTX_free(m);
}

/* Makes a new keyed context for pool `which`. The key schedule (and the HMAC
 * key copy) OpenSSL allocates here goes to locked, non-dumpable pages when
 * libkm's allocator is installed (osslmem.c). */
static int pool_node_new(km__skey *k, int which, km__ctxnode **out)
{
    km__ctxnode *n = NULL;
    int ok;

    *out = NULL;
    n = km__ctxnode_new(NULL);
    if (n == NULL)
        return km__err(KM_E_NOMEM, "keyed context: out of memory");
    km__osslmem_begin();
    if (which == POOL_MAC) {
        EVP_MAC_CTX *m = EVP_MAC_CTX_new(k->mac);
        OSSL_PARAM params[2];

        params[0] = OSSL_PARAM_construct_utf8_string(k->kind == KM__SKEY_CMAC
                                                     ? OSSL_MAC_PARAM_CIPHER
                                                     : OSSL_MAC_PARAM_DIGEST, k->md, 0);
        params[1] = OSSL_PARAM_construct_end();
        n->item = m;
        ok = m != NULL && EVP_MAC_init(m, k->key, k->key_len, params) == 1;
    } else {
        EVP_CIPHER_CTX *c;
        gcm_item *g = malloc(sizeof *g);
        int enc = which == POOL_ENC;

        c = g != NULL ? EVP_CIPHER_CTX_new() : NULL;
        ok = c != NULL && EVP_CipherInit_ex(c, k->cipher, NULL, NULL, NULL, enc) == 1
             && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1
             && EVP_CipherInit_ex(c, NULL, NULL, k->key, NULL, enc) == 1;
        if (g != NULL) {
            gcm_item_init(g, c);
            n->item = g;
        } else
            EVP_CIPHER_CTX_free(c);
    }
    km__osslmem_end();
    if (!ok) {
        km__ctxnode_free(&k->pools[which], n);
        return km__err_ossl(KM_E_CRYPTO, "cannot prepare a %s context",
                            which == POOL_MAC ? "MAC" : "cipher");
    }
    *out = n;
    return KM_OK;
}

/* Takes a keyed context from the pool, or makes one when the pool is empty. */
static int pool_take(km__skey *k, int which, km__ctxnode **out)
{
    km__ctxnode *n = km__ctxpool_take(&k->pools[which]);
    if (n != NULL) {
        *out = n;
        return KM_OK;
    }
    return pool_node_new(k, which, out);
}

static void pool_give(km__skey *k, int which, km__ctxnode *n)
{
    /* Without libkm's allocator in OpenSSL a keyed cipher context would keep
     * the key schedule in the ordinary heap: one context per call, freed
     * (and cleansed by OpenSSL) at once. */
    if (which != POOL_MAC && !km__osslmem_hooked()) {
        km__ctxnode_free(&k->pools[which], n);
        return;
    }
    km__ctxpool_give(&k->pools[which], n);
}

static void pool_node_free(km__skey *k, int which, km__ctxnode *n)
{
    km__ctxnode_free(&k->pools[which], n);
}

void km__skey_free(km__skey *k)
{
    int i;

    if (k == NULL)
        return;
    for (i = 0; i < POOL__COUNT; i++)
        ctxpool_fini(&k->pools[i]);
    EVP_CIPHER_free(k->cipher);
    EVP_MAC_free(k->mac);
    if (k->key != NULL)
        km__sfree(k->key, k->key_len);
    km_memzero(k, sizeof *k);
    free(k);
}

int km__skey_new(km__skey **out, km__skey_kind kind, const char *alg, const uint8_t *key,
                 size_t key_len)
{
    km__skey *k;
    km__ctxnode *n;
    int rc, i;

    *out = NULL;
    if (key == NULL || key_len == 0 || key_len > INT_MAX
        || (kind != KM__SKEY_KWP && alg == NULL)
        || ((kind == KM__SKEY_HMAC || kind == KM__SKEY_CMAC) && strlen(alg) >= sizeof k->md)
        || (kind != KM__SKEY_GCM && kind != KM__SKEY_HMAC && kind != KM__SKEY_KWP
            && kind != KM__SKEY_CMAC && kind != KM__SKEY_SIV))
        return km__err(KM_E_INVALID, "keyed object: bad key or algorithm");
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return km__err(KM_E_NOMEM, "keyed object: out of memory");
    k->kind = kind;
    for (i = 0; i < POOL__COUNT; i++) {
        if ((rc = ctxpool_init(&k->pools[i], i == POOL_MAC ? mac_ctx_free : cipher_ctx_free))
            != KM_OK) {
            while (i-- > 0)
                ctxpool_fini(&k->pools[i]);
            free(k);
            return rc;
        }
    }
    k->key_len = key_len;
    k->key = km__salloc(key_len);
    if (k->key == NULL) {
        rc = km__err(KM_E_NOMEM, "keyed object: no secure memory");
        goto out;
    }
    memcpy(k->key, key, key_len);
    if (kind == KM__SKEY_SIV) {
        k->cipher = EVP_CIPHER_fetch(NULL, alg, NULL);
        if (k->cipher == NULL || (size_t)EVP_CIPHER_get_key_length(k->cipher) != key_len) {
            rc = km__err_ossl(KM_E_CRYPTO, "%s is not available for a %zu-byte key", alg, key_len);
            goto out;
        }
    } else if (kind == KM__SKEY_GCM) {
        k->cipher = EVP_CIPHER_fetch(NULL, alg, NULL);
        if (k->cipher == NULL) {
            rc = km__err_ossl(KM_E_CRYPTO, "%s is not available", alg);
            goto out;
        }
        /* one context per direction now, so the first calls allocate
         * nothing (when contexts are kept at all: km_key_schedules) */
        if ((rc = pool_node_new(k, POOL_ENC, &n)) != KM_OK)
            goto out;
        pool_give(k, POOL_ENC, n);
        if (km__osslmem_hooked()) {
            if ((rc = pool_node_new(k, POOL_DEC, &n)) != KM_OK)
                goto out;
            pool_give(k, POOL_DEC, n);
        }
    } else if (kind == KM__SKEY_HMAC || kind == KM__SKEY_CMAC) {
        const char *mac = kind == KM__SKEY_HMAC ? "HMAC" : "CMAC";
        memcpy(k->md, alg, strlen(alg) + 1);
        k->mac = EVP_MAC_fetch(NULL, mac, NULL);
        if (k->mac == NULL) {
            rc = km__err_ossl(KM_E_CRYPTO, "%s is not available", mac);
            goto out;
        }
        if ((rc = pool_node_new(k, POOL_MAC, &n)) != KM_OK)
            goto out;
        pool_give(k, POOL_MAC, n);
    }
    *out = k;
    k = NULL;
    rc = KM_OK;
out:
    km__skey_free(k);
    return rc;
}

const uint8_t *km__skey_bytes(const km__skey *k, size_t *len)
{
    *len = k->key_len;
    return k->key;
}

static int gcm_args(const km__skey *k, size_t aad1_len, size_t aad2_len, size_t in_len)
{
    if (k->kind != KM__SKEY_GCM && k->kind != KM__SKEY_SIV)
        return km__err(KM_E_USAGE, "this key does not encrypt data");
    if (in_len > INT_MAX || aad1_len > INT_MAX || aad2_len > INT_MAX)
        return km__err(KM_E_INVALID, "AES-GCM: input too long");
    return KM_OK;
}

/* AES-SIV in one call on a context keyed here (the S2V state is per message):
 * enc seals `in` into out and tag, else checks tag while opening into out. */
static int siv_run(km__skey *k, int enc, const uint8_t *aad1, size_t aad1_len,
                   const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                   uint8_t *out, uint8_t tag[16])
{
    static const uint8_t none[1] = { 0 };
    EVP_CIPHER_CTX *c;
    uint8_t fin[16];
    int len = 0, ok;

    km__osslmem_begin();
    c = EVP_CIPHER_CTX_new();
    ok = c != NULL && EVP_CipherInit_ex(c, k->cipher, NULL, k->key, NULL, enc) == 1
         && (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1)
         && EVP_CipherUpdate(c, NULL, &len, aad1 != NULL ? aad1 : none, (int)aad1_len) == 1
         && (aad2_len == 0 || EVP_CipherUpdate(c, NULL, &len, aad2, (int)aad2_len) == 1);
    if (ok) {
        /* the message in one update, then the final check */
        int r = EVP_CipherUpdate(c, out, &len, in, (int)in_len);
        ok = r == 1 && (size_t)len == in_len && EVP_CipherFinal_ex(c, fin, &len) == 1
             && (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1);
        if (!ok && !enc) {
            EVP_CIPHER_CTX_free(c);
            km__osslmem_end();
            ERR_clear_error();
            return KM_E_INTEGRITY;
        }
    }
    EVP_CIPHER_CTX_free(c);
    km__osslmem_end();
    return ok ? KM_OK : KM_E_CRYPTO;
}

/* Sets the 12-byte nonce of a keyed GCM context (made by pool_node_new) and,
 * when opening, the expected tag. OpenSSL 3.0's EVP_CipherInit_ex looks the
 * IV length up by name several times per call (a third of a 64-byte
 * message's cost); the provider's "tlsivfixed" parameter with the length -1
 * sets the whole IV and a fresh IV state as the init does (the long-standing
 * "restore the whole IV" case of EVP_CTRL_AEAD_SET_IV_FIXED). That shortcut is
 * used only once fast_iv_probe() has seen it give the init's results in this
 * process; otherwise the init is used. */
static atomic_int fast_iv_usable = -1;   /* -1 unknown, 0 no, 1 yes (set once) */
static pthread_once_t fast_iv_once = PTHREAD_ONCE_INIT;

static int gcm_set_nonce(gcm_item *g, int enc, int fast, const uint8_t nonce[12],
                         const uint8_t tag[16])
{
    if (!enc)
        memcpy(g->tag, tag, 16);
    if (!fast)
        return EVP_CipherInit_ex(g->c, NULL, NULL, NULL, nonce, enc) == 1
               && (enc || EVP_CIPHER_CTX_set_params(g->c, g->tagp) == 1);
    memcpy(g->iv, nonce, 12);
    return EVP_CIPHER_CTX_set_params(g->c, enc ? g->set_iv : g->set) == 1;
}

/* One AES-GCM message on a pooled context g: enc seals `in` into out and
 * writes the tag, else opens into out and checks tag. Straight to the
 * provider's cipher function with EVP_Cipher (OpenSSL 3: the input is AAD when
 * out is NULL; in == NULL is the final step, which computes or checks the
 * tag), and the tag moved with the item's prebuilt parameter:
 * EVP_CipherUpdate/Final and EVP_CIPHER_CTX_ctrl build and look parameters up
 * by name on every call. The provider refuses to cipher again after a final
 * step until a nonce is set, so a context never reuses one. Returns 1 on
 * success, 0 when the tag does not match (opening), -1 on any other failure;
 * `out` is written before the tag is checked: the caller wipes it on failure. */
static inline int gcm_run_with(gcm_item *g, int enc, int fast, const uint8_t nonce[12],
                               const uint8_t *aad1, size_t aad1_len, const uint8_t *aad2,
                               size_t aad2_len, const uint8_t *in, size_t in_len, uint8_t *out,
                               uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = g->c;

    if (!gcm_set_nonce(g, enc, fast, nonce, tag)
        || (aad1_len > 0 && EVP_Cipher(c, NULL, aad1, (unsigned)aad1_len) != (int)aad1_len)
        || (aad2_len > 0 && EVP_Cipher(c, NULL, aad2, (unsigned)aad2_len) != (int)aad2_len)
        || (in_len > 0 && EVP_Cipher(c, out, in, (unsigned)in_len) != (int)in_len))
        return -1;
    if (EVP_Cipher(c, NULL, NULL, 0) < 0)
        return enc ? -1 : 0;
    if (enc) {
        if (EVP_CIPHER_CTX_get_params(c, g->tagp) != 1)
            return -1;
        memcpy(tag, g->tag, 16);
    }
    return 1;
}

/* Seals two messages under two nonces with the shortcut and with the init on
 * contexts keyed alike, and opens the first with the shortcut: the shortcut
 * is used only if all agree (and a wrong tag is refused). */
static void fast_iv_probe(void)
{
    static const uint8_t key[32] = { 1, 2, 3 }, n1[12] = { 9 }, n2[12] = { 8, 7 };
    static const uint8_t aad[5] = { 'h', 'e', 'a', 'd' }, msg[20] = { 'm', 's', 'g' };
    uint8_t a[2][20], b[2][20], ta[2][16], tb[2][16], back[20];
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_CIPHER_CTX *ec = EVP_CIPHER_CTX_new(), *dc = EVP_CIPHER_CTX_new();
    gcm_item ei, di, *e = &ei, *d = &di;
    int ok = ciph != NULL && ec != NULL && dc != NULL;
    int i;

    gcm_item_init(e, ec);
    gcm_item_init(d, dc);
    ok = ok && EVP_CipherInit_ex(ec, ciph, NULL, key, n1, 1) == 1
         && EVP_CipherInit_ex(dc, ciph, NULL, key, n1, 0) == 1;
    for (i = 0; ok && i < 2; i++)
        ok = gcm_run_with(e, 1, 1, i ? n2 : n1, aad, sizeof aad, NULL, 0, msg, sizeof msg,
                          a[i], ta[i]) == 1
             && gcm_run_with(e, 1, 0, i ? n2 : n1, aad, sizeof aad, NULL, 0, msg, sizeof msg,
                             b[i], tb[i]) == 1;
    ok = ok && memcmp(a, b, sizeof a) == 0 && memcmp(ta, tb, sizeof ta) == 0
         && memcmp(a[0], a[1], sizeof a[0]) != 0
         && gcm_run_with(d, 0, 1, n1, aad, sizeof aad, NULL, 0, a[0], sizeof a[0], back,
                         ta[0]) == 1
         && memcmp(back, msg, sizeof msg) == 0;
    ta[1][0] ^= 1;
    ok = ok && gcm_run_with(d, 0, 1, n2, aad, sizeof aad, NULL, 0, a[1], sizeof a[1], back,
                            ta[1]) == 0;
    EVP_CIPHER_CTX_free(ec);
    EVP_CIPHER_CTX_free(dc);
    EVP_CIPHER_free(ciph);
    ERR_clear_error();
    atomic_store(&fast_iv_usable, ok);
}

static inline __attribute__((always_inline)) int
gcm_run(gcm_item *c, int enc, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
        const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len, uint8_t *out,
        uint8_t tag[16])
{
    int fast = atomic_load_explicit(&fast_iv_usable, memory_order_acquire);
    if (fast < 0) {
        pthread_once(&fast_iv_once, fast_iv_probe);
        fast = atomic_load(&fast_iv_usable);
    }
    return gcm_run_with(c, enc, fast == 1, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len,
                        out, tag);
}

int km__skey_seal(km__skey *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                  const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                  uint8_t *out, uint8_t tag[16])
{
    km__ctxnode *n = NULL;
    gcm_item *c;
    int rc;

    if ((rc = gcm_args(k, aad1_len, aad2_len, in_len)) != KM_OK)
        return rc;
    if (k->kind == KM__SKEY_SIV && in_len == 0)
        return km__err(KM_E_UNSUPPORTED, "AES-SIV of an empty message: OpenSSL 3.0's AES-SIV "
                       "cannot compute it");
    if (k->kind == KM__SKEY_SIV) {
        if ((rc = siv_run(k, 1, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag)) == KM_OK)
            return KM_OK;
        if (in_len > 0)
            km_memzero(out, in_len);
        km_memzero(tag, 16);
        return km__err_ossl(rc, "AES-SIV encryption failed");
    }
    if ((rc = pool_take(k, POOL_ENC, &n)) != KM_OK)
        return rc;
    c = n->item;
    rc = KM_E_CRYPTO;
    if (gcm_run(c, 1, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag) != 1)
        goto out;
    rc = KM_OK;
out:
    if (rc == KM_OK) {
        pool_give(k, POOL_ENC, n);
        return KM_OK;
    }
    pool_node_free(k, POOL_ENC, n); /* its state is unknown: never reuse it */
    if (in_len > 0)
        km_memzero(out, in_len);
    km_memzero(tag, 16);
    return km__err_ossl(rc, "AES-GCM encryption failed");
}

int km__skey_open(km__skey *k, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                  const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                  const uint8_t tag[16], uint8_t *out)
{
    km__ctxnode *n = NULL;
    gcm_item *c;
    uint8_t t[16];
    int rc;

    if ((rc = gcm_args(k, aad1_len, aad2_len, in_len)) != KM_OK
        || (k->kind == KM__SKEY_GCM && (rc = pool_take(k, POOL_DEC, &n)) != KM_OK)) {
        if (out != NULL && in_len > 0)
            km_memzero(out, in_len);
        return rc;
    }
    if (k->kind == KM__SKEY_SIV && in_len == 0)
        return km__err(KM_E_UNSUPPORTED, "AES-SIV of an empty message: OpenSSL 3.0's AES-SIV "
                       "cannot check it");
    if (k->kind == KM__SKEY_SIV) {
        memcpy(t, tag, 16);
        if ((rc = siv_run(k, 0, aad1, aad1_len, aad2, aad2_len, in, in_len, out, t)) == KM_OK)
            return KM_OK;
        if (in_len > 0)
            km_memzero(out, in_len);
        if (rc == KM_E_INTEGRITY)
            return km__err(rc, "AES-SIV synthetic IV does not match");
        return km__err_ossl(rc, "AES-SIV decryption failed");
    }
    c = n->item;
    memcpy(t, tag, 16);
    rc = gcm_run(c, 0, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, t);
    if (rc != 1) {
        rc = rc == 0 ? KM_E_INTEGRITY : KM_E_CRYPTO;
        goto out;
    }
    rc = KM_OK;
out:
    if (rc == KM_OK || rc == KM_E_INTEGRITY)
        pool_give(k, POOL_DEC, n); /* a bad tag leaves the context sound */
    else
        pool_node_free(k, POOL_DEC, n);
    if (rc == KM_OK)
        return KM_OK;
    if (in_len > 0)
        km_memzero(out, in_len);
    if (rc == KM_E_INTEGRITY)
        return km__err_ossl(rc, "AES-GCM authentication tag does not match");
    return km__err_ossl(rc, "AES-GCM decryption failed");
}

int km__skey_mac(km__skey *k, const uint8_t *msg, size_t msg_len, uint8_t *tag,
                 size_t tag_len)
{
    km__ctxnode *n = NULL;
    EVP_MAC_CTX *m;
    size_t outl = 0;
    int rc;

    if (k->kind != KM__SKEY_HMAC && k->kind != KM__SKEY_CMAC)
        return km__err(KM_E_USAGE, "this key does not compute MACs");
    if ((rc = pool_take(k, POOL_MAC, &n)) != KM_OK)
        return rc;
    m = n->item;
    if (EVP_MAC_init(m, NULL, 0, NULL) != 1 /* restart with the same key */
        || (msg_len > 0 && EVP_MAC_update(m, msg, msg_len) != 1)
        || EVP_MAC_final(m, tag, &outl, tag_len) != 1 || outl != tag_len) {
        pool_node_free(k, POOL_MAC, n);
        km_memzero(tag, tag_len);
        return km__err_ossl(KM_E_CRYPTO, "%s failed", k->kind == KM__SKEY_HMAC ? "HMAC" : "CMAC");
    }
    pool_give(k, POOL_MAC, n);
    return KM_OK;
}

int km__skey_wrap(km__skey *k, const uint8_t *in, size_t len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    *out_len = 0;
    if (k->kind != KM__SKEY_KWP)
        return km__err(KM_E_USAGE, "this key does not wrap keys");
    if (out == NULL)
        out_cap = 0;
    return km__kwp_wrap(k->key, k->key_len, in, len, out, out_cap, out_len);
}

int km__skey_unwrap(km__skey *k, const uint8_t *in, size_t len, km_secret **out)
{
    uint8_t *tmp;
    size_t n = 0;
    int rc;

    *out = NULL;
    if (k->kind != KM__SKEY_KWP)
        return km__err(KM_E_USAGE, "this key does not unwrap keys");
    if (len < 16 || len % 8 != 0 || len > ((size_t)1 << 24) + 8)
        return km__err(KM_E_INTEGRITY, "wrapped key has an impossible length");
    tmp = km__salloc(len);
    if (tmp == NULL)
        return km__err(KM_E_NOMEM, "unwrap: no secure memory");
    rc = km__kwp_unwrap(k->key, k->key_len, in, len, tmp, len, &n);
    if (rc == KM_OK && (n == 0 || n > len))
        rc = km__err(KM_E_INTEGRITY, "unwrapped key is empty");
    if (rc == KM_OK)
        rc = km_secret_from(out, tmp, n);
    km__sfree(tmp, len);
    return rc;
}
