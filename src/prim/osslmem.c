/*
 * osslmem.c - OpenSSL's memory for libkm's keyed cipher contexts, in locked,
 * non-dumpable pages.
 *
 * OpenSSL keeps an AES key schedule (whose first round keys are the raw key)
 * in the provider context it allocates when a cipher context is keyed, in its
 * ordinary heap. libkm keeps keyed contexts for the life of a loaded key (the
 * key schedule and GHASH table are computed once, not per message), so without
 * care the key would sit in pages a core dump includes.
 *
 * When libkm is loaded before the process's first OpenSSL allocation (the
 * common case for a program linked with libkm), a library constructor installs
 * allocation functions with CRYPTO_set_mem_functions(). They pass every
 * allocation to malloc/realloc/free unchanged, except those made by a thread
 * inside a km__osslmem_begin()/km__osslmem_end() scope: libkm opens one only
 * around keying a cipher context it will keep. Those come from one reserved
 * region of this process whose pages are MADV_DONTDUMP, mlock'ed (best effort,
 * as every libkm secret page) and wiped on free. A free or realloc of a block
 * in the region is recognised by its address.
 *
 * When OpenSSL had already allocated (libkm dlopen'ed late, e.g. by Python or
 * as an OpenSSL provider) or KM_OPENSSL_MEM=off is set, the functions cannot be
 * installed and km_key_schedules() says KM_SCHEDULES_PER_CALL: the software
 * backend then keys a fresh context for each call and frees it (OpenSSL
 * cleanses a cipher context when it frees it), so no schedule outlives a call.
 */
#include "km_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define REGION_SIZE ((size_t)256 << 20)  /* address space reserved, not memory */
#define COMMIT_STEP ((size_t)64 << 10)
#define HDR 16
#define CLASSES 8                         /* blocks of 32 .. 4096 bytes, header included */
#define CLASS_MIN 32
#define MAGIC 0x6b6d6f6du

typedef struct blk_hdr {
    uint32_t magic;
    uint32_t cls;          /* class, or CLASSES for a large block */
    size_t size;           /* whole block, header included */
} blk_hdr;

typedef struct free_blk {
    struct free_blk *next;
    size_t size;
} free_blk;

static unsigned char *region;             /* set once by the constructor */
static unsigned char *committed_end, *bump;
static free_blk *free_class[CLASSES];
static free_blk *free_large;
static pthread_mutex_t om_mu = PTHREAD_MUTEX_INITIALIZER;
static int hooked;
static _Thread_local int scope;

static int in_region(const void *p)
{
    return region != NULL && (uintptr_t)p - (uintptr_t)region < REGION_SIZE;
}

static size_t class_size(uint32_t c)
{
    return (size_t)CLASS_MIN << c;
}

/* Makes [bump, bump + need) usable (om_mu held). */
static int commit(size_t need)
{
    size_t n;
    if ((size_t)(committed_end - bump) >= need)
        return 0;
    n = (need - (size_t)(committed_end - bump) + COMMIT_STEP - 1) / COMMIT_STEP * COMMIT_STEP;
    if ((size_t)(committed_end - region) + n > REGION_SIZE - (size_t)sysconf(_SC_PAGESIZE))
        return -1;  /* keep the last page as a guard */
    if (mprotect(committed_end, n, PROT_READ | PROT_WRITE) != 0)
        return -1;
#ifdef MADV_DONTDUMP
    (void)madvise(committed_end, n, MADV_DONTDUMP);
#endif
    (void)mlock(committed_end, n);
    committed_end += n;
    return 0;
}

static void *region_alloc(size_t n)
{
    size_t total = n + HDR;
    uint32_t c = 0;
    unsigned char *b = NULL;
    blk_hdr *h;

    if (n > REGION_SIZE / 2)
        return NULL;
    while (c < CLASSES && class_size(c) < total)
        c++;
    pthread_mutex_lock(&om_mu);
    if (c < CLASSES) {
        total = class_size(c);
        if (free_class[c] != NULL) {
            b = (unsigned char *)free_class[c];
            free_class[c] = free_class[c]->next;
        }
    } else {
        free_blk **pp;
        total = (total + 4095) & ~(size_t)4095;
        for (pp = &free_large; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->size == total) {
                b = (unsigned char *)*pp;
                *pp = (*pp)->next;
                break;
            }
        }
    }
    if (b == NULL && commit(total) == 0) {
        b = bump;
        bump += total;
    }
    pthread_mutex_unlock(&om_mu);
    if (b == NULL)
        return NULL;
    h = (blk_hdr *)b;
    h->magic = MAGIC;
    h->cls = c;
    h->size = total;
    return b + HDR;
}

static size_t region_usable(const void *p)
{
    const blk_hdr *h = (const blk_hdr *)((const unsigned char *)p - HDR);
    return h->size - HDR;
}

static void region_free(void *p)
{
    blk_hdr *h = (blk_hdr *)((unsigned char *)p - HDR);
    uint32_t c = h->cls;
    size_t size = h->size;
    free_blk *f = (free_blk *)h;

    if (h->magic != MAGIC)
        abort();  /* not a block of ours: a double free or a wild pointer */
    OPENSSL_cleanse(h, size);
    f->size = size;
    pthread_mutex_lock(&om_mu);
    if (c < CLASSES) {
        f->next = free_class[c];
        free_class[c] = f;
    } else {
        f->next = free_large;
        free_large = f;
    }
    pthread_mutex_unlock(&om_mu);
}

static void *om_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (scope > 0)
        return region_alloc(n);
    return malloc(n);
}

static void om_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p != NULL && in_region(p))
        region_free(p);
    else
        free(p);
}

static void *om_realloc(void *p, size_t n, const char *file, int line)
{
    void *q;
    size_t old;

    if (p == NULL)
        return om_malloc(n, file, line);
    if (!in_region(p))
        return realloc(p, n);
    if (n == 0) {
        region_free(p);
        return NULL;
    }
    /* a block of the region stays in the region */
    if ((q = region_alloc(n)) == NULL)
        return NULL;
    old = region_usable(p);
    memcpy(q, p, old < n ? old : n);
    region_free(p);
    return q;
}

__attribute__((constructor)) static void om_install(void)
{
    const char *e = getenv("KM_OPENSSL_MEM");
    long ps = sysconf(_SC_PAGESIZE);
    void *r;

    if (e != NULL && strcmp(e, "off") == 0)
        return;
    r = mmap(NULL, REGION_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return;
    /* the first page stays PROT_NONE: a guard before the first block */
    region = r;
    committed_end = bump = region + (ps > 0 ? (size_t)ps : 4096);
    if (CRYPTO_set_mem_functions(om_malloc, om_realloc, om_free) != 1) {
        region = NULL;
        munmap(r, REGION_SIZE);
        return;
    }
    hooked = 1;
#ifdef KM__LSAN
    __lsan_register_root_region(region, REGION_SIZE);
#endif
}

static void om_prepare(void)
{
    pthread_mutex_lock(&om_mu);
}

static void om_release(void)
{
    pthread_mutex_unlock(&om_mu);
}

void km__osslmem_fork_init(void)
{
    (void)pthread_atfork(om_prepare, om_release, om_release);
}

int km__osslmem_hooked(void)
{
    return hooked;
}

void km__osslmem_begin(void)
{
    if (hooked)
        scope++;
}

void km__osslmem_end(void)
{
    if (hooked)
        scope--;
}

int km_key_schedules(void)
{
    return hooked ? KM_SCHEDULES_LOCKED : KM_SCHEDULES_PER_CALL;
}
