/*
 * p11_helper.c - pkcs11-helper behind p11_helper.h: token discovery with
 * serialised ids, the application's PIN callback with retry counts and the
 * PIN cache period, fork fix-up, and private-key operations on keys bound to
 * a certificate with the same CKA_ID (smart cards).
 *
 * The only file that includes pkcs11-helper's headers (their pkcs11.h has the
 * same include guard as p11-kit's: docs/PLATFORM.md). pkcs11-helper is
 * process-global: one lock serialises every call into it, and a reference
 * count decides when it is initialised and terminated.
 *
 * No PIN is ever logged: pkcs11-helper's log hook drops everything, messages
 * name the step and the CK_RV only, and libkm's PIN buffers are wiped.
 */
#include "km_int.h"
#include "p11_helper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11h-core.h>
#include <pkcs11-helper-1.0/pkcs11h-token.h>
#include <pkcs11-helper-1.0/pkcs11h-certificate.h>

#define MAX_PROVIDERS 8
#define MAX_TRIES 3           /* PINs offered per login: never a loop that locks a token */
#define PIN_MAX 256

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned refs;
static unsigned gen;            /* bumped at every pkcs11h_initialize */
static pid_t init_pid;
static char *providers[MAX_PROVIDERS];
static size_t n_providers;
static int cache_period = PKCS11H_PIN_CACHE_INFINITE;
static km_pkcs11_pin_fn pin_fn;
static void *pin_arg;

struct km__p11h_cert {
    pkcs11h_certificate_t cert;
    unsigned gen;               /* the pkcs11-helper instance it belongs to */
};

static int fail(CK_RV rv, const char *what)
{
    int code;

    switch (rv) {
    case CKR_CANCEL:
    case CKR_FUNCTION_CANCELED:
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_NOT_LOGGED_IN:
        code = KM_E_AUTH;
        break;
    case CKR_HOST_MEMORY:
        code = KM_E_NOMEM;
        break;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_FUNCTION_NOT_SUPPORTED:
        code = KM_E_UNSUPPORTED;
        break;
    case CKR_BUFFER_TOO_SMALL:
        code = KM_E_BUFFER;
        break;
    default:
        code = KM_E_BACKEND;
        break;
    }
    return km_backend_error(code, KM_NATIVE_PKCS11, (unsigned long)rv,
                            "pkcs11-helper: %s failed: %s (0x%lx)%s", what,
                            pkcs11h_getMessage(rv), (unsigned long)rv,
                            rv == CKR_CANCEL ? " (PIN prompt cancelled or no PIN callback)"
                                             : "");
}

/* ------------------------------------------------------------- hooks */

static void log_hook(void *const global_data, const unsigned flags, const char *const format,
                     va_list args)
{
    (void)global_data;
    (void)flags;
    (void)format;
    (void)args;   /* dropped: nothing of pkcs11-helper's reaches a log */
}

static PKCS11H_BOOL token_hook(void *const global_data, void *const user_data,
                               const pkcs11h_token_id_t token, const unsigned retry)
{
    (void)global_data;
    (void)user_data;
    (void)token;
    (void)retry;
    return FALSE; /* never wait for a token to be inserted: fail at once */
}

/* Asks the application (mu is held by the caller of pkcs11-helper). */
static int ask_pin(const char *label, unsigned retry, char *pin, size_t pin_max)
{
    if (pin_fn == NULL || retry >= MAX_TRIES || pin_max == 0)
        return -1;
    memset(pin, 0, pin_max);
    if (pin_fn(pin_arg, label, retry, pin, pin_max) != 0 || memchr(pin, '\0', pin_max) == NULL) {
        km_memzero(pin, pin_max);
        return -1;
    }
    return 0;
}

static PKCS11H_BOOL pin_hook(void *const global_data, void *const user_data,
                             const pkcs11h_token_id_t token, const unsigned retry,
                             char *const pin, const size_t pin_max)
{
    (void)global_data;
    (void)user_data;
    return ask_pin(token != NULL ? token->label : "", retry, pin, pin_max) == 0 ? TRUE : FALSE;
}

/* ------------------------------------------------------- references */

/* In a child after fork() (mu held): PKCS#11 wants C_Initialize again in the
 * child. pkcs11h_forkFixup() does that only in pkcs11-helper's safe-fork mode
 * (a no-op otherwise in a threaded build); pkcs11h_plugAndPlay() finalises
 * and initialises every provider: in the child that touches only the child's
 * copy of the module (through p11-kit's proxy, only p11-kit's count). The
 * sessions pkcs11-helper kept from the parent fail once and are opened anew. */
static void fork_fixup_locked(void)
{
    if (refs == 0 || init_pid == getpid())
        return;
    (void)pkcs11h_forkFixup();
    (void)pkcs11h_plugAndPlay();
    init_pid = getpid();
}

static void terminate_locked(void)
{
    size_t i;

    (void)pkcs11h_terminate();
    for (i = 0; i < n_providers; i++)
        free(providers[i]);
    n_providers = 0;
}

int km__p11h_get(const char *location)
{
    char ref[16];
    size_t i;
    CK_RV rv;
    int rc = KM_OK;

    if (location == NULL)
        return km__err(KM_E_INVALID, "pkcs11-helper: no provider location");
    pthread_mutex_lock(&mu);
    fork_fixup_locked();
    if (refs == 0) {
        if ((rv = pkcs11h_initialize()) != CKR_OK) {
            rc = fail(rv, "pkcs11h_initialize");
            goto out;
        }
        init_pid = getpid();
        gen++;
        pkcs11h_setLogLevel(PKCS11H_LOG_QUIET);
        (void)pkcs11h_setLogHook(log_hook, NULL);
        (void)pkcs11h_setTokenPromptHook(token_hook, NULL);
        (void)pkcs11h_setPINPromptHook(pin_hook, NULL);
        (void)pkcs11h_setProtectedAuthentication(FALSE);
        (void)pkcs11h_setMaxLoginRetries(MAX_TRIES);
        (void)pkcs11h_setPINCachePeriod(cache_period);
        /* fork(): not pkcs11-helper's safe-fork mode (its prepare handler
         * waits for every mutex it ever made and was seen to hang); the
         * child fixes up on its first use instead (fork_fixup_locked) */
        (void)pkcs11h_setForkMode(FALSE);
    }
    for (i = 0; i < n_providers; i++)
        if (strcmp(providers[i], location) == 0)
            break;
    if (i == n_providers) {
        if (n_providers == MAX_PROVIDERS) {
            rc = km__err(KM_E_NOMEM, "pkcs11-helper: too many modules in one process");
            goto undo;
        }
        snprintf(ref, sizeof ref, "km%zu", n_providers);
        rv = pkcs11h_addProvider(ref, location, FALSE, PKCS11H_PRIVATEMODE_MASK_AUTO,
                                 PKCS11H_SLOTEVENT_METHOD_POLL, 0, FALSE);
        if (rv != CKR_OK) {
            rc = fail(rv, "loading the module (pkcs11h_addProvider)");
            goto undo;
        }
        if ((providers[n_providers] = strdup(location)) == NULL) {
            rc = km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
            (void)pkcs11h_removeProvider(ref);
            goto undo;
        }
        n_providers++;
    }
    refs++;
    goto out;
undo:
    if (refs == 0)
        terminate_locked();
out:
    pthread_mutex_unlock(&mu);
    return rc;
}

void km__p11h_put(void)
{
    pthread_mutex_lock(&mu);
    if (refs > 0 && --refs == 0)
        terminate_locked();
    pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------- settings */

void km__p11h_set_cache_period(int seconds)
{
    pthread_mutex_lock(&mu);
    cache_period = seconds < 0 ? PKCS11H_PIN_CACHE_INFINITE : seconds;
    if (refs > 0)
        (void)pkcs11h_setPINCachePeriod(cache_period);
    pthread_mutex_unlock(&mu);
}

int km__p11h_cache_period(void)
{
    int p;

    pthread_mutex_lock(&mu);
    p = cache_period;
    pthread_mutex_unlock(&mu);
    return p;
}

void km__p11h_forget(void)
{
    pthread_mutex_lock(&mu);
    if (refs > 0)
        (void)pkcs11h_logout();
    pthread_mutex_unlock(&mu);
}

void km__p11h_set_pin_callback(km_pkcs11_pin_fn fn, void *arg)
{
    pthread_mutex_lock(&mu);
    pin_fn = fn;
    pin_arg = arg;
    pthread_mutex_unlock(&mu);
}

int km__p11h_has_pin_callback(void)
{
    int has;

    pthread_mutex_lock(&mu);
    has = pin_fn != NULL;
    pthread_mutex_unlock(&mu);
    return has;
}

/* --------------------------------------------------------- discovery */

static void trim_copy(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = strnlen(src, len);

    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void token_fields(km__p11h_item *it, const pkcs11h_token_id_t t)
{
    trim_copy(it->manufacturer, sizeof it->manufacturer, t->manufacturerID,
              sizeof t->manufacturerID);
    trim_copy(it->model, sizeof it->model, t->model, sizeof t->model);
    trim_copy(it->serial, sizeof it->serial, t->serialNumber, sizeof t->serialNumber);
    trim_copy(it->token_label, sizeof it->token_label, t->label, sizeof t->label);
}

void km__p11h_items_free(km__p11h_item *items, size_t n)
{
    size_t i;

    if (items == NULL)
        return;
    for (i = 0; i < n; i++) {
        free(items[i].id);
        free(items[i].label);
    }
    free(items);
}

static int serial_token(const pkcs11h_token_id_t t, char **out)
{
    size_t max = 0;
    CK_RV rv;

    *out = NULL;
    if ((rv = pkcs11h_token_serializeTokenId(NULL, &max, t)) != CKR_OK)
        return fail(rv, "pkcs11h_token_serializeTokenId");
    if ((*out = malloc(max + 1)) == NULL)
        return km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
    if ((rv = pkcs11h_token_serializeTokenId(*out, &max, t)) != CKR_OK) {
        free(*out);
        *out = NULL;
        return fail(rv, "pkcs11h_token_serializeTokenId");
    }
    return KM_OK;
}

static int serial_cert(const pkcs11h_certificate_id_t c, char **out)
{
    size_t max = 0;
    CK_RV rv;

    *out = NULL;
    if ((rv = pkcs11h_certificate_serializeCertificateId(NULL, &max, c)) != CKR_OK)
        return fail(rv, "pkcs11h_certificate_serializeCertificateId");
    if ((*out = malloc(max + 1)) == NULL)
        return km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
    if ((rv = pkcs11h_certificate_serializeCertificateId(*out, &max, c)) != CKR_OK) {
        free(*out);
        *out = NULL;
        return fail(rv, "pkcs11h_certificate_serializeCertificateId");
    }
    return KM_OK;
}

static int list_tokens_locked(km__p11h_item **out, size_t *n)
{
    pkcs11h_token_id_list_t list = NULL, e;
    km__p11h_item *items = NULL;
    size_t count = 0, i = 0;
    CK_RV rv;
    int rc = KM_OK;

    if ((rv = pkcs11h_token_enumTokenIds(PKCS11H_ENUM_METHOD_RELOAD, &list)) != CKR_OK)
        return fail(rv, "listing the tokens (pkcs11h_token_enumTokenIds)");
    for (e = list; e != NULL; e = e->next)
        count++;
    if (count > 0 && (items = calloc(count, sizeof *items)) == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
        goto out;
    }
    for (e = list; e != NULL && rc == KM_OK; e = e->next, i++) {
        token_fields(&items[i], e->token_id);
        rc = serial_token(e->token_id, &items[i].id);
        if (rc == KM_OK && (items[i].label = strdup(items[i].token_label)) == NULL)
            rc = km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
    }
out:
    pkcs11h_token_freeTokenIdList(list);
    if (rc != KM_OK) {
        km__p11h_items_free(items, count);
        return rc;
    }
    *out = items;
    *n = count;
    return KM_OK;
}

static int list_certs_locked(km__p11h_item **out, size_t *n)
{
    pkcs11h_certificate_id_list_t issuers = NULL, ends = NULL, e;
    km__p11h_item *items = NULL;
    size_t count = 0, i = 0;
    CK_RV rv;
    int rc = KM_OK;

    rv = pkcs11h_certificate_enumCertificateIds(PKCS11H_ENUM_METHOD_RELOAD, NULL,
                                                PKCS11H_PROMPT_MASK_ALLOW_PIN_PROMPT, &issuers,
                                                &ends);
    if (rv != CKR_OK)
        return fail(rv, "listing the certificates (pkcs11h_certificate_enumCertificateIds)");
    for (e = ends; e != NULL; e = e->next)
        count++;
    if (count > 0 && (items = calloc(count, sizeof *items)) == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
        goto out;
    }
    for (e = ends; e != NULL && rc == KM_OK; e = e->next, i++) {
        token_fields(&items[i], e->certificate_id->token_id);
        rc = serial_cert(e->certificate_id, &items[i].id);
        if (rc == KM_OK
            && (items[i].label = strdup(e->certificate_id->displayName)) == NULL)
            rc = km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
    }
out:
    pkcs11h_certificate_freeCertificateIdList(issuers);
    pkcs11h_certificate_freeCertificateIdList(ends);
    if (rc != KM_OK) {
        km__p11h_items_free(items, count);
        return rc;
    }
    *out = items;
    *n = count;
    return KM_OK;
}

int km__p11h_list(int certs, km__p11h_item **out, size_t *n)
{
    int rc;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&mu);
    if (refs == 0)
        rc = km__err(KM_E_INTERNAL, "pkcs11-helper: not initialised");
    else
        rc = certs ? list_certs_locked(out, n) : list_tokens_locked(out, n);
    pthread_mutex_unlock(&mu);
    return rc;
}

/* ------------------------------------------------------------- login */

static int same_field(const char *have, const uint8_t *want, size_t len)
{
    char t[33];

    trim_copy(t, sizeof t, (const char *)want, len);
    return strcmp(have, t) == 0;
}

int km__p11h_login(const uint8_t label[32], const uint8_t manufacturer[32],
                   const uint8_t model[16], const uint8_t serial[16])
{
    pkcs11h_token_id_list_t list = NULL, e;
    pkcs11h_token_id_t tok = NULL;
    km__p11h_item it;
    char *pin = NULL;
    unsigned retry;
    CK_RV rv = CKR_OK;
    int rc;

    pthread_mutex_lock(&mu);
    if (refs == 0) {
        rc = km__err(KM_E_INTERNAL, "pkcs11-helper: not initialised");
        goto out;
    }
    if ((rv = pkcs11h_token_enumTokenIds(PKCS11H_ENUM_METHOD_RELOAD, &list)) != CKR_OK) {
        rc = fail(rv, "listing the tokens (pkcs11h_token_enumTokenIds)");
        goto out;
    }
    for (e = list; e != NULL && tok == NULL; e = e->next) {
        memset(&it, 0, sizeof it);
        token_fields(&it, e->token_id);
        if (same_field(it.token_label, label, 32) && same_field(it.manufacturer, manufacturer, 32)
            && same_field(it.model, model, 16) && same_field(it.serial, serial, 16))
            tok = e->token_id;
    }
    if (tok == NULL) {
        rc = km__err(KM_E_NOTFOUND, "pkcs11-helper: the token is not present");
        goto out;
    }
    memset(&it, 0, sizeof it);
    token_fields(&it, tok);
    if ((pin = km__salloc(PIN_MAX)) == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11-helper: no secure memory for a PIN");
        goto out;
    }
    rc = KM_E_AUTH;
    for (retry = 0; retry < MAX_TRIES; retry++) {
        if (ask_pin(it.token_label, retry, pin, PIN_MAX) != 0) {
            rc = fail(CKR_CANCEL, "the PIN prompt");
            break;
        }
        rv = pkcs11h_token_login(tok, FALSE, pin);
        km_memzero(pin, PIN_MAX);
        if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
            rc = KM_OK;
            break;
        }
        rc = fail(rv, "C_Login with the PIN from the callback");
        if (rv != CKR_PIN_INCORRECT && rv != CKR_PIN_INVALID && rv != CKR_PIN_LEN_RANGE)
            break;
    }
out:
    if (pin != NULL)
        km__sfree(pin, PIN_MAX);
    pkcs11h_token_freeTokenIdList(list);
    pthread_mutex_unlock(&mu);
    return rc;
}

/* ------------------------------------------------------ certificates */

int km__p11h_cert_open(km__p11h_cert **out, const char *cert_id, uint8_t **der,
                       size_t *der_len)
{
    pkcs11h_certificate_id_t id = NULL;
    km__p11h_cert *c = NULL;
    size_t len = 0;
    CK_RV rv;
    int rc;

    *out = NULL;
    *der = NULL;
    *der_len = 0;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return km__err(KM_E_NOMEM, "pkcs11-helper: out of memory");
    pthread_mutex_lock(&mu);
    if (refs == 0) {
        rc = km__err(KM_E_INTERNAL, "pkcs11-helper: not initialised");
        goto out;
    }
    if ((rv = pkcs11h_certificate_deserializeCertificateId(&id, cert_id)) != CKR_OK) {
        rc = km_backend_error(KM_E_INVALID, KM_NATIVE_PKCS11, (unsigned long)rv,
                              "pkcs11-helper: not a serialised certificate id");
        goto out;
    }
    c->gen = gen;
    rv = pkcs11h_certificate_create(id, NULL, PKCS11H_PROMPT_MASK_ALLOW_PIN_PROMPT, cache_period,
                                    &c->cert);
    if (rv == CKR_OK)
        rv = pkcs11h_certificate_getCertificateBlob(c->cert, NULL, &len);
    if (rv == CKR_OK && (len == 0 || len > 65536))
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    if (rv == CKR_OK && (*der = malloc(len)) == NULL)
        rv = CKR_HOST_MEMORY;
    if (rv == CKR_OK)
        rv = pkcs11h_certificate_getCertificateBlob(c->cert, *der, &len);
    if (rv != CKR_OK) {
        rc = rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_CANCEL || rv == CKR_OBJECT_HANDLE_INVALID
                 || rv == CKR_ATTRIBUTE_VALUE_INVALID
                 ? km_backend_error(KM_E_NOTFOUND, KM_NATIVE_PKCS11, (unsigned long)rv,
                                    "pkcs11-helper: the certificate is not on a present token "
                                    "(%s)", pkcs11h_getMessage(rv))
                 : fail(rv, "reading the certificate");
        goto out;
    }
    *der_len = len;
    rc = KM_OK;
out:
    if (id != NULL)
        pkcs11h_certificate_freeCertificateId(id);
    pthread_mutex_unlock(&mu);
    if (rc != KM_OK) {
        free(*der);
        *der = NULL;
        km__p11h_cert_close(c);
        return rc;
    }
    *out = c;
    return KM_OK;
}

void km__p11h_cert_close(km__p11h_cert *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&mu);
    if (c->cert != NULL && refs > 0 && c->gen == gen)   /* else pkcs11h_terminate freed it */
        (void)pkcs11h_certificate_freeCertificate(c->cert);
    pthread_mutex_unlock(&mu);
    free(c);
}

int km__p11h_cert_op(km__p11h_cert *c, enum km__p11h_mech mech, const uint8_t *in,
                     size_t in_len, uint8_t *out, size_t *out_len)
{
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM m;
    size_t n = *out_len;
    CK_RV rv;
    int rc;

    memset(&m, 0, sizeof m);
    switch (mech) {
    case KM__P11H_ECDSA:
        m.mechanism = CKM_ECDSA;
        break;
    case KM__P11H_RSA_PSS_SHA256:
    case KM__P11H_RSA_PSS_SHA384:
        pss.hashAlg = mech == KM__P11H_RSA_PSS_SHA256 ? CKM_SHA256 : CKM_SHA384;
        pss.mgf = mech == KM__P11H_RSA_PSS_SHA256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA384;
        pss.sLen = mech == KM__P11H_RSA_PSS_SHA256 ? 32 : 48;
        m.mechanism = CKM_RSA_PKCS_PSS;
        m.pParameter = &pss;
        m.ulParameterLen = sizeof pss;
        break;
    default:
        return km__err(KM_E_INTERNAL, "pkcs11-helper: unknown mechanism");
    }
    pthread_mutex_lock(&mu);
    if (refs == 0 || c == NULL || c->cert == NULL || c->gen != gen) {
        pthread_mutex_unlock(&mu);
        return km__err(KM_E_INTERNAL, "pkcs11-helper: not initialised");
    }
    fork_fixup_locked();
    rv = pkcs11h_certificate_signAny_ex(c->cert, &m, in, in_len, out, &n);
    pthread_mutex_unlock(&mu);
    if (rv != CKR_OK) {
        rc = fail(rv, "signing with the card key");
        if (n > 0 && out != NULL)
            km_memzero(out, *out_len);
        return rc;
    }
    *out_len = n;
    return KM_OK;
}
