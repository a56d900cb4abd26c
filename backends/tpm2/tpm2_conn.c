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
 * dead or out of step. Or a TPM that restarted under us: our primary's handle
 * is no longer loaded (TPM2_RC_REFERENCE_H0..H6) or the TPM awaits Startup.
 * Either way the connection is dropped and made again. */
static int is_conn_error(TSS2_RC rc)
{
    if (rc == TSS2_RC_SUCCESS)
        return 0;
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
        return 1;
    return (rc >= TPM2_RC_REFERENCE_H0 && rc <= TPM2_RC_REFERENCE_H6)
           || rc == TPM2_RC_INITIALIZE;
}

/* -------------------------------------------------------------- connection */

static void conn_drop(km__tpm2_conn *c)
{
    /* Esys_Finalize sends nothing: a dead TPM cannot make it hang */
    if (c->esys != NULL)
        Esys_Finalize(&c->esys);
    if (c->tcti_ctx != NULL)
        Tss2_TctiLdr_Finalize(&c->tcti_ctx);
    c->esys = NULL;
    c->tcti_ctx = NULL;
    c->primary = ESYS_TR_NONE;
    c->cached = ESYS_TR_NONE;   /* gone with the ESYS context (and the TPM's state) */
    c->cached_id = 0;
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
    return KM_OK;
}

int km__tpm2_run(km__tpm2_conn *c, km__tpm2_op op, void *arg)
{
    int rc = KM_E_BACKEND, attempt;

    pthread_mutex_lock(&c->mu);
    for (attempt = 0; attempt < 2; attempt++) {
        int was_connected = c->esys != NULL;
        TSS2_RC trc = 0;

        rc = conn_ensure(c, &trc);
        if (rc == KM_OK)
            rc = op(c, arg, &trc);
        if (rc == KM_OK || !is_conn_error(trc))
            break;
        /* the TPM went away (or restarted): drop the connection; reconnect
         * once at once when it had been working before this call */
        conn_drop(c);
        if (!was_connected)
            break;
    }
    pthread_mutex_unlock(&c->mu);
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
    c->cached = ESYS_TR_NONE;
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
    pthread_mutex_lock(&c->mu);
    if (c->esys != NULL && c->primary != ESYS_TR_NONE)
        (void)Esys_FlushContext(c->esys, c->primary);
    conn_drop(c);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    free(c->tcti);
    free(c);
}
