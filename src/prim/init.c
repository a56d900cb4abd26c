/* init.c - library version and one-time initialisation. */
#include "km_int.h"

#include <pthread.h>
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

/* OpenSSL 3.0.12 fixed CVE-2023-5363 (short IVs through EVP_CipherInit_ex2). */
#define KM__OPENSSL_MIN 0x300000c0UL

atomic_uint km__fork_gen;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = KM_E_INTERNAL;

static void on_fork_child(void)
{
    atomic_fetch_add(&km__fork_gen, 1);
}

#ifdef KM__LSAN
/* OpenSSL's secure heap is a mapping of its own, holding pointers to ordinary
 * heap objects (DRBG state, key parts): give it to LeakSanitizer as a root
 * region (found from a block allocated in it, through /proc/self/maps). */
static void lsan_secure_heap(void)
{
    void *p = OPENSSL_secure_malloc(16);
    char line[512];
    FILE *f;

    if (p == NULL || !CRYPTO_secure_allocated(p)) {
        OPENSSL_secure_free(p);
        return;
    }
    if ((f = fopen("/proc/self/maps", "r")) != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            unsigned long lo, hi;
            if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo
                && (uintptr_t)p < hi) {
                __lsan_register_root_region((void *)lo, hi - lo);
                break;
            }
        }
        fclose(f);
    }
    OPENSSL_secure_free(p);
}
#endif

static void do_init(void)
{
    if (OpenSSL_version_num() < KM__OPENSSL_MIN) {
        init_rc = KM_E_UNSUPPORTED;
        return;
    }
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL)) {
        init_rc = KM_E_CRYPTO;
        return;
    }
    /* OpenSSL keeps private-key bignums in its secure heap when one exists;
     * give it one unless the application already did. Best effort: without
     * it OpenSSL falls back to the ordinary heap. */
    if (!CRYPTO_secure_malloc_initialized())
        (void)CRYPTO_secure_malloc_init(1 << 21, 16);
#ifdef KM__LSAN
    lsan_secure_heap();
#endif
    if (pthread_atfork(NULL, NULL, on_fork_child) != 0) {
        init_rc = KM_E_INTERNAL;
        return;
    }
    /* The secret pool's fork handlers first: prepare handlers run in reverse
     * order of registration, so the pool's lock is taken last before a fork,
     * after the vault registry's, as in every other path (registry, then an
     * LMDB writer, then the pool). */
    km__secure_fork_init();
    km__osslmem_fork_init();
    init_rc = KM_OK;
}

const char *km_version(void)
{
    return KM_VERSION_STRING;
}

int km_init(void)
{
    if (pthread_once(&init_once, do_init) != 0)
        return km__err(KM_E_INTERNAL, "km_init: pthread_once failed");
    if (init_rc == KM_E_UNSUPPORTED)
        return km__err(KM_E_UNSUPPORTED, "OpenSSL %s is older than 3.0.12 (CVE-2023-5363)",
                       OpenSSL_version(OPENSSL_VERSION_STRING));
    if (init_rc != KM_OK)
        return km__err(init_rc, "km_init: OpenSSL initialisation failed");
    return KM_OK;
}
