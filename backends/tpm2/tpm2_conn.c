/*
 * tpm2_conn.c - the TPM 2.0 backend's connection layer: the TCTI from the
 * configuration, shared ESAPI connections, the storage primary, error
 * mapping, bounded retries and reconnection.
 */
#include "tpm2_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static km__tpm2_conn *conns;

/* ------------------------------------------------------------------ errors */

int km__tpm2_retryable(TSS2_RC rc)
{
    return rc == TPM2_RC_RETRY || rc == TPM2_RC_YIELDED || rc == TPM2_RC_TESTING;
}

void km__tpm2_backoff(int attempt)
{
    struct timespec ts = { 0, 5000000L << attempt }; /* 5, 10, 20 ms */
    nanosleep(&ts, NULL);
}

int km__tpm2_err(TSS2_RC rc, const char *what)
{
    const char *msg = Tss2_RC_Decode(rc);
    int code = KM_E_BACKEND;

    if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
        TSS2_RC base = (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3fu)) : rc;
        if (base == TPM2_RC_LOCKOUT)
            return km_backend_error(KM_E_AUTH, KM_NATIVE_TSS2, rc,
                                    "tpm2 %s: the TPM is in dictionary-attack lockout (%s)",
                                    what, msg);
        if (base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_BAD_AUTH
            || base == TPM2_RC_POLICY_FAIL)   /* e.g. PCRs no longer as sealed */
            code = KM_E_AUTH;
        else if (base == TPM2_RC_INTEGRITY)
            code = KM_E_INTEGRITY;
    }
    return km_backend_error(code, KM_NATIVE_TSS2, rc, "tpm2 %s failed: %s", what, msg);
}

/* A failure below the TPM (TCTI, SYS, ESYS layers): the connection may be
 * dead or out of step. Or a TPM that restarted under us: our handles are no
 * longer loaded (TPM2_RC_REFERENCE_H0..H6, or TPM2_RC_HANDLE on a handle) or
 * the TPM awaits Startup. Either way the connection is dropped with every
 * handle and made again. */
static int is_conn_error(TSS2_RC rc)
{
    if (rc == TSS2_RC_SUCCESS)
        return 0;
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
        return 1;
    if ((rc & TPM2_RC_FMT1) && (rc & (TPM2_RC_FMT1 | 0x3fu)) == TPM2_RC_HANDLE
        && !(rc & (TPM2_RC_P | TPM2_RC_S)) && (rc & 0x700u) != 0)
        return 1;   /* one of the command's handles is not what it was */
    return (rc >= TPM2_RC_REFERENCE_H0 && rc <= TPM2_RC_REFERENCE_H6)
           || rc == TPM2_RC_INITIALIZE;
}

static int is_object_memory(TSS2_RC rc)
{
    return rc == TPM2_RC_OBJECT_MEMORY;
}

/* -------------------------------------------------------------- connection */

/* Forgets the connection and every handle of it, sending nothing:
 * Esys_Finalize sends nothing and the TCTI's finalize only closes its socket
 * or device, so a dead TPM cannot make it hang and a child after fork() does
 * not touch the parent's objects. */
static void conn_drop(km__tpm2_conn *c)
{
    if (c->esys != NULL)
        Esys_Finalize(&c->esys);
    if (c->tcti_ctx != NULL)
        Tss2_TctiLdr_Finalize(&c->tcti_ctx);
    c->esys = NULL;
    c->tcti_ctx = NULL;
    c->primary = ESYS_TR_NONE;
    memset(c->cache, 0, sizeof c->cache);
    c->cache_n = 0;
    c->cache_cap = 0;
}

/* Flushes every cached object and the primary (best effort), then drops the
 * connection: for a TPM that answers (a handle went stale, the last vault
 * closed), so that nothing of ours stays loaded in it. */
static void conn_flush_drop(km__tpm2_conn *c)
{
    unsigned i;

    if (c->esys != NULL) {
        for (i = 0; i < c->cache_n; i++)
            (void)Esys_FlushContext(c->esys, c->cache[i].h);
        c->cache_n = 0;
        if (c->primary != ESYS_TR_NONE)
            (void)Esys_FlushContext(c->esys, c->primary);
    }
    conn_drop(c);
}

/* ------------------------------------------------------------------- fork */

/* fork() while another thread holds a connection's lock would leave it
 * locked forever in the child: the locks are held across fork instead (an
 * operation in flight finishes first). The child then forgets the parent's
 * connections on their first use (km__tpm2_lock). */
static void atfork_prepare(void)
{
    km__tpm2_conn *c;

    pthread_mutex_lock(&conns_mu);
    for (c = conns; c != NULL; c = c->next)
        pthread_mutex_lock(&c->mu);
}

static void atfork_release(void)
{
    km__tpm2_conn *c;

    for (c = conns; c != NULL; c = c->next)
        pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&conns_mu);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    (void)pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

void km__tpm2_lock(km__tpm2_conn *c)
{
    unsigned gen;

    pthread_mutex_lock(&c->mu);
    gen = atomic_load(&km__fork_gen);
    if (c->fork_gen != gen) {
        /* a child: the connection and its handles are the parent's */
        conn_drop(c);
        c->fork_gen = gen;
    }
}

void km__tpm2_unlock(km__tpm2_conn *c)
{
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ cache */

ESYS_TR km__tpm2_cache_find(km__tpm2_conn *c, uint64_t id)
{
    unsigned i;

    for (i = 0; i < c->cache_n; i++) {
        if (c->cache[i].id == id) {
            c->cache[i].used = ++c->clock;
            return c->cache[i].h;
        }
    }
    return ESYS_TR_NONE;
}

void km__tpm2_cache_add(km__tpm2_conn *c, uint64_t id, ESYS_TR h)
{
    if (c->cache_n >= KM__TPM2_CACHE_MAX) {   /* the caller made room: never */
        if (c->esys != NULL)
            (void)Esys_FlushContext(c->esys, h);
        return;
    }
    c->cache[c->cache_n].h = h;
    c->cache[c->cache_n].id = id;
    c->cache[c->cache_n].used = ++c->clock;
    c->cache_n++;
}

static void cache_remove(km__tpm2_conn *c, unsigned i)
{
    if (c->esys != NULL)
        (void)Esys_FlushContext(c->esys, c->cache[i].h);
    c->cache[i] = c->cache[c->cache_n - 1];
    c->cache_n--;
    memset(&c->cache[c->cache_n], 0, sizeof c->cache[c->cache_n]);
}

void km__tpm2_cache_forget(km__tpm2_conn *c, uint64_t id)
{
    unsigned i;

    for (i = 0; i < c->cache_n; i++) {
        if (c->cache[i].id == id) {
            cache_remove(c, i);
            return;
        }
    }
}

/* Flushes the least recently used entry other than `keep`'s; 0 when none. */
static int cache_evict_lru(km__tpm2_conn *c, uint64_t keep)
{
    unsigned i, lru = c->cache_n;

    for (i = 0; i < c->cache_n; i++)
        if (c->cache[i].id != keep && (lru == c->cache_n || c->cache[i].used < c->cache[lru].used))
            lru = i;
    if (lru == c->cache_n)
        return 0;
    cache_remove(c, lru);
    return 1;
}

void km__tpm2_cache_room(km__tpm2_conn *c, unsigned need, uint64_t keep)
{
    unsigned cap = c->cache_cap != 0 ? c->cache_cap : 1;

    while (c->cache_n > 0 && c->cache_n + need > cap)
        if (!cache_evict_lru(c, keep))
            break;
}

/* How many objects the cache may hold: the TPM's free transient slots with
 * the primary loaded. Through the kernel's resource manager (/dev/tpmrm0,
 * and the default TCTI, which prefers it) a connection's space holds 3
 * objects whatever the TPM has free, one of them the primary. */
static unsigned transient_avail(km__tpm2_conn *c)
{
    TPMS_CAPABILITY_DATA *data = NULL;
    TPMI_YES_NO more = 0;
    unsigned cap = 1;
    TSS2_RC rc;

    KM__TPM2_CALL(rc, Esys_GetCapability(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                         TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1,
                                         &more, &data));
    if (rc == TSS2_RC_SUCCESS && data != NULL && data->data.tpmProperties.count >= 1
        && data->data.tpmProperties.tpmProperty[0].property == TPM2_PT_HR_TRANSIENT_AVAIL) {
        uint32_t v = data->data.tpmProperties.tpmProperty[0].value;
        cap = v < 1 ? 1 : v > KM__TPM2_CACHE_MAX ? KM__TPM2_CACHE_MAX : (unsigned)v;
    }
    Esys_Free(data);
    if (cap > 2 && (c->tcti[0] == '\0' || strstr(c->tcti, "tpmrm") != NULL))
        cap = 2;
    return cap;
}

/* The storage primary: ECC P-256, AES-128-CFB, from the owner hierarchy's
 * seed. The same template always gives the same key, so it is never persisted. */
static TSS2_RC create_primary(km__tpm2_conn *c)
{
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_PUBLIC tmpl;
    TPML_PCR_SELECTION pcrs;
    TPM2B_DATA outside;
    TSS2_RC rc;

    memset(&sens, 0, sizeof sens);
    memset(&tmpl, 0, sizeof tmpl);
    memset(&pcrs, 0, sizeof pcrs);
    memset(&outside, 0, sizeof outside);
    tmpl.publicArea.type = TPM2_ALG_ECC;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT
        | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN
        | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA;
    tmpl.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    tmpl.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
    tmpl.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    KM__TPM2_CALL(rc, Esys_CreatePrimary(c->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                         ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                                         &pcrs, &c->primary, NULL, NULL, NULL, NULL));
    if (rc != TSS2_RC_SUCCESS)
        c->primary = ESYS_TR_NONE;
    return rc;
}

/* Connects when needed and loads the primary. */
static int conn_ensure(km__tpm2_conn *c, TSS2_RC *trc)
{
    TSS2_RC rc;

    if (c->esys == NULL) {
        rc = Tss2_TctiLdr_Initialize(c->tcti[0] != '\0' ? c->tcti : NULL, &c->tcti_ctx);
        if (rc != TSS2_RC_SUCCESS) {
            c->tcti_ctx = NULL;
            *trc = rc;
            return km__tpm2_err(rc, "connect (TCTI)");
        }
        rc = Esys_Initialize(&c->esys, c->tcti_ctx, NULL);
        if (rc != TSS2_RC_SUCCESS) {
            c->esys = NULL;
            conn_drop(c);
            *trc = rc;
            return km__tpm2_err(rc, "Esys_Initialize");
        }
        KM__TPM2_CALL(rc, Esys_Startup(c->esys, TPM2_SU_CLEAR));
        if (rc != TSS2_RC_SUCCESS && rc != TPM2_RC_INITIALIZE) {
            conn_drop(c);
            *trc = rc;
            return km__tpm2_err(rc, "Startup");
        }
        c->primary = ESYS_TR_NONE;
    }
    if (c->primary == ESYS_TR_NONE) {
        rc = create_primary(c);
        if (rc != TSS2_RC_SUCCESS) {
            *trc = rc;
            if (is_conn_error(rc))
                conn_drop(c);
            return km__tpm2_err(rc, "CreatePrimary (storage key)");
        }
    }
    if (c->cache_cap == 0)
        c->cache_cap = transient_avail(c);
    return KM_OK;
}

int km__tpm2_run(km__tpm2_conn *c, km__tpm2_op op, void *arg)
{
    int rc = KM_E_BACKEND, attempt;

    km__tpm2_lock(c);
    for (attempt = 0; attempt < 2; attempt++) {
        int was_connected = c->esys != NULL;
        TSS2_RC trc = 0;

        rc = conn_ensure(c, &trc);
        if (rc == KM_OK)
            rc = op(c, arg, &trc);
        if (rc == KM_OK)
            break;
        if (is_object_memory(trc)) {
            /* the TPM has fewer free slots than we counted on (another
             * client holds some): evict one object, count on fewer */
            if (c->cache_n == 0)
                break;
            if (c->cache_n < c->cache_cap)
                c->cache_cap = c->cache_n;
            (void)cache_evict_lru(c, 0);
            continue;
        }
        if (!is_conn_error(trc))
            break;
        /* the TPM went away, restarted, or a handle of ours went stale: drop
         * the connection and every handle, then connect once more at once
         * when it had been working before this call, loading what is needed
         * again from the blobs. When the TPM itself answered (and is not
         * waiting for Startup, i.e. holds nothing), our other handles may
         * still be loaded (one was flushed behind our back): flush them, or
         * their slots would be lost until the TPM restarts. */
        if ((trc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER && trc != TPM2_RC_INITIALIZE)
            conn_flush_drop(c);
        else
            conn_drop(c);
        if (!was_connected)
            break;
    }
    km__tpm2_unlock(c);
    return rc;
}

/* ------------------------------------------------------------ configuration */

/* Extracts the TCTI string from the configuration into a malloc'ed string. */
static int parse_config(const char *config, char **out)
{
    const char *p, *end, *env;

    *out = NULL;
    if (config != NULL && strncmp(config, "tpm2:", 5) == 0)
        config += 5;
    for (p = config; p != NULL && *p != '\0'; p = *end ? end + 1 : end) {
        end = strchr(p, ';');
        if (end == NULL)
            end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            continue;
        if (strncmp(p, "pcrs=", 5) == 0)
            continue;   /* a keyslot's PCR binding (tpm2.c), not the connection's */
        if ((size_t)(end - p) > 5 && strncmp(p, "tcti=", 5) == 0) {
            *out = strndup(p + 5, (size_t)(end - p - 5));
            if (*out == NULL)
                return km__err(KM_E_NOMEM, "tpm2: out of memory");
            return KM_OK;
        }
        return km__err(KM_E_INVALID, "tpm2 configuration: unknown item (expected tcti=...)");
    }
    env = getenv("KM_TPM2_TCTI");
    *out = strdup(env != NULL ? env : "");
    return *out != NULL ? KM_OK : km__err(KM_E_NOMEM, "tpm2: out of memory");
}

int km__tpm2_conn_get(const char *config, km__tpm2_conn **out)
{
    km__tpm2_conn *c;
    char *tcti = NULL;
    int rc;

    *out = NULL;
    if ((rc = parse_config(config, &tcti)) != KM_OK)
        return rc;
    (void)pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&conns_mu);
    for (c = conns; c != NULL; c = c->next) {
        if (strcmp(c->tcti, tcti) == 0) {
            c->refs++;
            pthread_mutex_unlock(&conns_mu);
            free(tcti);
            *out = c;
            return KM_OK;
        }
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
        pthread_mutex_unlock(&conns_mu);
        free(c);
        free(tcti);
        return km__err(KM_E_NOMEM, "tpm2: out of memory");
    }
    c->tcti = tcti;
    c->refs = 1;
    c->primary = ESYS_TR_NONE;
    c->fork_gen = atomic_load(&km__fork_gen);
    c->next = conns;
    conns = c;
    pthread_mutex_unlock(&conns_mu);
    *out = c;
    return KM_OK;
}

void km__tpm2_conn_put(km__tpm2_conn *c)
{
    km__tpm2_conn **pp;

    if (c == NULL)
        return;
    pthread_mutex_lock(&conns_mu);
    if (--c->refs > 0) {
        pthread_mutex_unlock(&conns_mu);
        return;
    }
    for (pp = &conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&conns_mu);
    km__tpm2_lock(c);   /* after fork(): drops the parent's connection, flushing nothing */
    conn_flush_drop(c);
    km__tpm2_unlock(c);
    pthread_mutex_destroy(&c->mu);
    free(c->tcti);
    free(c);
}
