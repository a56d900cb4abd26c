/*
 * p11_conn.c - the thin raw PKCS#11 layer: the module (p11-kit), the token
 * (RFC 7512 URI, matched against the token info, never by slot id), login,
 * a small session pool, and every CK_RV translated to a km code and recorded
 * with km_backend_error(..., KM_NATIVE_PKCS11, rv, ...).
 *
 * No call here retries a login: a wrong PIN fails the one attempt (a token
 * locks after a few). A session that saw any failure is closed, never
 * pooled; a device failure drops every idle session and makes the next
 * session_get search the slot list again (so a token that comes back, or is
 * re-initialised and given a new slot id, is found again by its URI).
 */
#include "km_int.h"
#include "p11_int.h"
#include "p11_card.h"     /* km__p11card_login: no PKCS#11 types */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    case CKR_HOST_MEMORY: return "CKR_HOST_MEMORY";
    case CKR_SLOT_ID_INVALID: return "CKR_SLOT_ID_INVALID";
    case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
    case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY: return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
    case CKR_ENCRYPTED_DATA_INVALID: return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
    case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID: return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
    case CKR_PIN_LEN_RANGE: return "CKR_PIN_LEN_RANGE";
    case CKR_SESSION_CLOSED: return "CKR_SESSION_CLOSED";
    case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
    case CKR_TEMPLATE_INCOMPLETE: return "CKR_TEMPLATE_INCOMPLETE";
    case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
    case CKR_USER_PIN_NOT_INITIALIZED: return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_BUFFER_TOO_SMALL: return "CKR_BUFFER_TOO_SMALL";
    case CKR_CRYPTOKI_NOT_INITIALIZED: return "CKR_CRYPTOKI_NOT_INITIALIZED";
    default: return "CKR_?";
    }
}

int km__p11_fail(CK_RV rv, const char *what)
{
    int code;

    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
        code = KM_E_AUTH;
        break;
    case CKR_HOST_MEMORY:
        code = KM_E_NOMEM;
        break;
    case CKR_MECHANISM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_FUNCTION_NOT_SUPPORTED:
        code = KM_E_UNSUPPORTED;
        break;
    default: /* device removed, token absent, stale sessions and handles, device errors */
        code = KM_E_BACKEND;
        break;
    }
    return km_backend_error(code, KM_NATIVE_PKCS11, (unsigned long)rv,
                            "pkcs11: %s failed: %s (0x%lx)", what, rv_name(rv),
                            (unsigned long)rv);
}

int km__p11_rv_stale(CK_RV rv)
{
    return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID
           || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

static int rv_device(CK_RV rv)
{
    return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR
           || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED
           || rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID
           || rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_GENERAL_ERROR;
}

/* Drops every idle session (with p->mu held). */
static void drop_idle_locked(km__p11 *p)
{
    while (p->n_idle > 0)
        (void)p->fl->C_CloseSession(p->idle[--p->n_idle]);
}

/* Finds the slot whose token matches the URI (with p->mu held). */
static CK_RV find_slot_locked(km__p11 *p)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, i;
    CK_TOKEN_INFO ti;
    CK_RV rv;

    rv = p->fl->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return rv;
    if (n == 0)
        return CKR_TOKEN_NOT_PRESENT;
    slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return CKR_HOST_MEMORY;
    rv = p->fl->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv == CKR_OK) {
        rv = CKR_TOKEN_NOT_PRESENT;
        for (i = 0; i < n; i++) {
            if (p->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                continue;
            if (p11_kit_uri_match_token_info(p->uri, &ti) == 1) {
                p->slot = slots[i];
                memcpy(p->serial, ti.serialNumber, sizeof p->serial);
                p->slot_ok = 1;
                rv = CKR_OK;
                break;
            }
        }
    }
    free(slots);
    return rv;
}

/* Re-initialises the module (with p->mu held): after fork() in the child,
 * whose inherited sessions and handles mean nothing (PKCS#11 says the child
 * must call C_Initialize again), and after the token went away, so that a
 * token that came back (or was re-initialised) is read anew. Handles are
 * never kept across this: objects are found again by CKA_ID. */
static CK_RV reinit_locked(km__p11 *p)
{
    CK_RV rv;

    if (p->pid != getpid()) {
        p->n_idle = 0;           /* the parent's sessions: not ours to close */
        p->pid = getpid();
    } else {
        drop_idle_locked(p);
    }
    (void)p11_kit_module_finalize(p->fl);
    rv = p11_kit_module_initialize(p->fl);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        rv = CKR_OK;
    p->slot_ok = 0;
    if (rv == CKR_OK)
        p->reinit = 0;
    return rv;
}

/* Opens a new logged-in session (with p->mu held). */
static int open_session_locked(km__p11 *p, CK_SESSION_HANDLE *out)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_SESSION_INFO si;
    CK_RV rv;

    if ((p->reinit || p->pid != getpid()) && (rv = reinit_locked(p)) != CKR_OK)
        return km__p11_fail(rv, "initialising the module again");
    if (!p->slot_ok && (rv = find_slot_locked(p)) != CKR_OK) {
        p->reinit = 1;
        return km__p11_fail(rv, "finding the token of the URI");
    }
    rv = p->fl->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        p->slot_ok = 0;
        return km__p11_fail(rv, "C_OpenSession");
    }
    rv = p->fl->C_GetSessionInfo(s, &si);
    if (rv == CKR_OK && (si.state == CKS_RO_PUBLIC_SESSION || si.state == CKS_RW_PUBLIC_SESSION)) {
        if (p->pin[0] == '\0') {
            /* no PIN configured: the application's PIN callback, through
             * pkcs11-helper (km_pkcs11_set_pin_callback; p11_card.c) */
            int prc = km__p11card_login(p->fl, (unsigned long)p->slot);
            if (prc != KM_OK) {
                (void)p->fl->C_CloseSession(s);
                return prc;
            }
            *out = s;
            return KM_OK;
        }
        rv = p->fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)p->pin, (CK_ULONG)strlen(p->pin));
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
            rv = CKR_OK;
        if (rv != CKR_OK) {
            (void)p->fl->C_CloseSession(s);
            if (rv_device(rv)) {
                p->slot_ok = 0;
                p->reinit = 1;
            }
            return km__p11_fail(rv, "C_Login");
        }
    } else if (rv != CKR_OK) {
        (void)p->fl->C_CloseSession(s);
        p->slot_ok = 0;
        return km__p11_fail(rv, "C_GetSessionInfo");
    }
    *out = s;
    return KM_OK;
}

int km__p11_session_get(km__p11 *p, CK_SESSION_HANDLE *out)
{
    int rc = KM_OK;

    pthread_mutex_lock(&p->mu);
    if (p->pid != getpid()) {
        p->n_idle = 0;           /* fork(): the pool is the parent's */
        p->reinit = 1;
    }
    if (p->n_idle > 0)
        *out = p->idle[--p->n_idle];
    else
        rc = open_session_locked(p, out);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void km__p11_session_put(km__p11 *p, CK_SESSION_HANDLE s, CK_RV rv)
{
    pthread_mutex_lock(&p->mu);
    if (p->pid != getpid()) {    /* a session of the parent's, leaked over fork() */
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (rv == CKR_OK && p->n_idle < KM__P11_POOL_MAX) {
        p->idle[p->n_idle++] = s;
    } else {
        (void)p->fl->C_CloseSession(s);
        if (rv_device(rv)) {
            drop_idle_locked(p);
            p->slot_ok = 0;
            p->reinit = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

CK_RV km__p11_find(km__p11 *p, CK_SESSION_HANDLE s, const uint8_t id[16], CK_ULONG cls,
                   CK_OBJECT_HANDLE *out, CK_ULONG cap, CK_ULONG *n)
{
    CK_ATTRIBUTE t[2] = {
        { CKA_ID, (void *)(uintptr_t)id, 16 },
        { CKA_CLASS, &cls, sizeof cls },
    };
    CK_RV rv, rv2;

    *n = 0;
    rv = p->fl->C_FindObjectsInit(s, t, cls == (CK_ULONG)-1 ? 1 : 2);
    if (rv != CKR_OK)
        return rv;
    rv = p->fl->C_FindObjects(s, out, cap, n);
    rv2 = p->fl->C_FindObjectsFinal(s);
    return rv != CKR_OK ? rv : rv2;
}

int km__p11_open(km__p11 **out, const char *module, const char *uri, const char *pin)
{
    km__p11 *p;
    CK_SESSION_HANDLE s;
    CK_INFO info;
    CK_RV rv;
    int rc;

    *out = NULL;
    if (pin == NULL)
        pin = getenv("KM_PKCS11_PIN");
    if (pin == NULL)
        pin = "";
    if (strlen(pin) > KM__P11_PIN_MAX)
        return km__err(KM_E_INVALID, "pkcs11: the PIN is longer than %d bytes",
                       KM__P11_PIN_MAX);
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return km__err(KM_E_NOMEM, "pkcs11: out of memory");
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return km__err(KM_E_NOMEM, "pkcs11: cannot make a mutex");
    }
    p->pin = km__salloc(KM__P11_PIN_MAX + 1);
    if (p->pin == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11: no secure memory for the PIN");
        goto fail;
    }
    memcpy(p->pin, pin, strlen(pin) + 1);
    p->uri = p11_kit_uri_new();
    if (p->uri == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11: out of memory");
        goto fail;
    }
    if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_MODULE, p->uri)
        != P11_KIT_URI_OK) {
        rc = km__err(KM_E_INVALID, "pkcs11: token= is not a PKCS#11 URI (RFC 7512)");
        goto fail;
    }
    p->fl = p11_kit_module_load(module, 0);
    if (p->fl == NULL) {
        rc = km__err(KM_E_BACKEND, "pkcs11: cannot load the module %s", module);
        goto fail;
    }
    p->pid = getpid();
    rv = p11_kit_module_initialize(p->fl);
    if (rv != CKR_OK) {
        p11_kit_module_release(p->fl);
        p->fl = NULL;
        rc = km__p11_fail(rv, "initialising the module");
        goto fail;
    }
    rv = p->fl->C_GetInfo(&info);
    if (rv == CKR_OK && p11_kit_uri_match_module_info(p->uri, &info) != 1) {
        rc = km__err(KM_E_NOTFOUND, "pkcs11: the module does not match the URI");
        goto fail;
    }
    pthread_mutex_lock(&p->mu);
    rv = find_slot_locked(p);
    if (rv != CKR_OK) {
        pthread_mutex_unlock(&p->mu);
        rc = km__p11_fail(rv, "finding the token of the URI");
        goto fail;
    }
    rc = open_session_locked(p, &s);
    if (rc == KM_OK)
        p->idle[p->n_idle++] = s;
    pthread_mutex_unlock(&p->mu);
    if (rc != KM_OK)
        goto fail;
    *out = p;
    return KM_OK;
fail:
    km__p11_close(p);
    return rc;
}

void km__p11_close(km__p11 *p)
{
    if (p == NULL)
        return;
    if (p->fl != NULL) {
        if (p->pid == getpid())
            drop_idle_locked(p);
        (void)p11_kit_module_finalize(p->fl);
        p11_kit_module_release(p->fl);
    }
    if (p->uri != NULL)
        p11_kit_uri_free(p->uri);
    if (p->pin != NULL)
        km__sfree(p->pin, KM__P11_PIN_MAX + 1);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
