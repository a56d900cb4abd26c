/* secure.c - secure memory for secrets: locked, not dumped, fenced, wiped. */
#include "km_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define KM__SECRET_MAX ((size_t)16 << 20)

struct km_secret {
    unsigned char *data;
    size_t len;
    int pooled;          /* from the small-secret pool (km__secret_new_pooled) */
};

/*
 * The small-secret pool: libkm's own short-lived secrets (every unsealed
 * vault record, read at each key open) come from locked, non-dumpable arenas
 * of fixed-size slots instead of a fresh guarded mapping each, which costs
 * four system calls and page faults per record. A slot is wiped when freed.
 * The trade, as with OpenSSL's secure heap: guard pages fence each arena, not
 * each slot. Secrets handed to callers (km_secret_new) keep their own guard
 * pages.
 */
#define POOL_ARENA ((size_t)64 << 10)
#define POOL_CLASSES 7                  /* 32, 64, ..., 2048 bytes */
#define POOL_MIN 32
#define POOL_MAX 2048

typedef struct pool_slot {
    struct pool_slot *next;
} pool_slot;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_slot *pool_free[POOL_CLASSES];
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_prepare(void)
{
    pthread_mutex_lock(&pool_mu);
}

static void pool_release(void)
{
    pthread_mutex_unlock(&pool_mu);
}

static void pool_init(void)
{
    /* a fork() while another thread holds the pool lock must not leave the
     * child's copy locked */
    (void)pthread_atfork(pool_prepare, pool_release, pool_release);
}

void km__secure_fork_init(void)
{
    (void)pthread_once(&pool_once, pool_init);
}

static int pool_class(size_t len, size_t *size)
{
    int c = 0;
    size_t sz = POOL_MIN;
    while (sz < len) {
        sz <<= 1;
        c++;
    }
    *size = sz;
    return c;
}

static size_t page_size(void)
{
    static size_t ps;
    if (ps == 0) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
    }
    return ps;
}

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

/*
 * Layout: [guard page][data pages][guard page]; the data sits at the end of
 * the data pages (rounded to 16 bytes), so an overflow runs into the guard.
 * The data pages are mlock'ed (best effort: the limit may be low for non-root
 * users) and excluded from core dumps.
 */
void *km__salloc(size_t len)
{
    size_t ps = page_size(), dlen = round_up(len ? len : 1, 16);
    size_t dpages = round_up(dlen, ps), total = dpages + 2 * ps;
    unsigned char *base;

    if (len > KM__SECRET_MAX)
        return NULL;
    base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
#ifdef MADV_DONTDUMP
    (void)madvise(base, total, MADV_DONTDUMP);
#endif
#ifdef MADV_WIPEONFORK
    /* not used: a forked child that frees the secret must still find it mapped */
#endif
    if (mprotect(base, ps, PROT_NONE) != 0 || mprotect(base + ps + dpages, ps, PROT_NONE) != 0) {
        munmap(base, total);
        return NULL;
    }
    (void)mlock(base + ps, dpages);
#ifdef KM__LSAN
    __lsan_register_root_region(base + ps, dpages);
#endif
    return base + ps + dpages - dlen;
}

void km__sfree(void *p, size_t len)
{
    size_t ps = page_size(), dlen = round_up(len ? len : 1, 16);
    size_t dpages = round_up(dlen, ps);
    unsigned char *base;

    if (p == NULL)
        return;
    base = (unsigned char *)p + dlen - dpages - ps;
    OPENSSL_cleanse(base + ps, dpages);
#ifdef KM__LSAN
    __lsan_unregister_root_region(base + ps, dpages);
#endif
    (void)munlock(base + ps, dpages);
    munmap(base, dpages + 2 * ps);
}

/* Carves a new arena into slots of class c (pool_mu held). */
static int pool_grow(int c, size_t sz)
{
    size_t ps = page_size(), i, n = POOL_ARENA / sz;
    unsigned char *base = mmap(NULL, POOL_ARENA + 2 * ps, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -1;
#ifdef MADV_DONTDUMP
    (void)madvise(base, POOL_ARENA + 2 * ps, MADV_DONTDUMP);
#endif
    if (mprotect(base, ps, PROT_NONE) != 0
        || mprotect(base + ps + POOL_ARENA, ps, PROT_NONE) != 0) {
        munmap(base, POOL_ARENA + 2 * ps);
        return -1;
    }
    (void)mlock(base + ps, POOL_ARENA);
    for (i = n; i > 0; i--) {
        pool_slot *sl = (pool_slot *)(void *)(base + ps + (i - 1) * sz);
        sl->next = pool_free[c];
        pool_free[c] = sl;
    }
    return 0;
}

static void *pool_alloc(size_t len)
{
    size_t sz;
    int c = pool_class(len, &sz);
    pool_slot *sl;

    (void)pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool_mu);
    if (pool_free[c] == NULL && pool_grow(c, sz) != 0) {
        pthread_mutex_unlock(&pool_mu);
        return NULL;
    }
    sl = pool_free[c];
    pool_free[c] = sl->next;
    pthread_mutex_unlock(&pool_mu);
    sl->next = NULL;
    return sl;
}

static void pool_free_slot(void *p, size_t len)
{
    size_t sz;
    int c = pool_class(len, &sz);
    pool_slot *sl = p;

    OPENSSL_cleanse(p, sz);
    pthread_mutex_lock(&pool_mu);
    sl->next = pool_free[c];
    pool_free[c] = sl;
    pthread_mutex_unlock(&pool_mu);
}

int km__secret_new_pooled(km_secret **out, size_t len)
{
    km_secret *s;

    *out = NULL;
    if (len == 0 || len > POOL_MAX)
        return km_secret_new(out, len);
    if ((s = calloc(1, sizeof *s)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    if ((s->data = pool_alloc(len)) == NULL) {
        free(s);
        return km__err(KM_E_NOMEM, "cannot map secure pages");
    }
    s->len = len;
    s->pooled = 1;
    *out = s;
    return KM_OK;
}

int km_secret_new(km_secret **out, size_t len)
{
    km_secret *s;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_secret_new: out is NULL");
    *out = NULL;
    if (len == 0 || len > KM__SECRET_MAX)
        return km__err(KM_E_INVALID, "km_secret_new: len must be 1 to 16 MiB");
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return km__err(KM_E_NOMEM, "km_secret_new: out of memory");
    s->data = km__salloc(len);
    if (s->data == NULL) {
        free(s);
        return km__err(KM_E_NOMEM, "km_secret_new: cannot map secure pages");
    }
    s->len = len;
    *out = s;
    return KM_OK;
}

int km_secret_from(km_secret **out, const void *data, size_t len)
{
    int rc;

    if (out != NULL)
        *out = NULL;
    if (data == NULL)
        return km__err(KM_E_INVALID, "km_secret_from: data is NULL");
    rc = km_secret_new(out, len);
    if (rc == KM_OK)
        memcpy((*out)->data, data, len);
    return rc;
}

unsigned char *km_secret_data(const km_secret *s)
{
    return s ? s->data : NULL;
}

size_t km_secret_len(const km_secret *s)
{
    return s ? s->len : 0;
}

void km_secret_free(km_secret *s)
{
    if (s == NULL)
        return;
    if (s->pooled)
        pool_free_slot(s->data, s->len);
    else
        km__sfree(s->data, s->len);
    free(s);
}

int km_ct_equal(const void *a, const void *b, size_t len)
{
    if (len == 0)
        return 1;
    if (a == NULL || b == NULL)
        return 0;
    return CRYPTO_memcmp(a, b, len) == 0;
}

void km_memzero(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}
