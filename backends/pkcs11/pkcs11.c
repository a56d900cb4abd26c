/*
 * pkcs11.c - the "pkcs11" backend: keys generated and used inside a PKCS#11
 * token (an HSM, a smart card; SoftHSM2 in the tests). Built with
 * --enable-pkcs11.
 *
 * Configuration (km_vault_backend_set(ctx, "pkcs11", config), stored sealed):
 *
 *     module=/usr/lib/softhsm/libsofthsm2.so;token=pkcs11:token=LABEL;pin=PIN
 *
 *   module=  the PKCS#11 module, loaded through p11-kit (required)
 *   token=   an RFC 7512 PKCS#11 URI naming the token (token label, serial,
 *            manufacturer, model; library-* attributes match the module). The
 *            URI's own ';'-separated attributes stay part of it: the value runs
 *            to the next ";module=" or ";pin=" or the end. (required)
 *   pin=     the user PIN (optional; else $KM_PKCS11_PIN; else the application's
 *            PIN callback, km_pkcs11_set_pin_callback; else no login)
 *
 * Keys: aes-256-gcm (CKM_AES_GCM), hmac-sha256/384/512 (CKK_GENERIC_SECRET,
 * CKM_SHA*_HMAC; sign/verify only), ec-p256 / ec-p384 (CKM_ECDSA on a SHA-256 /
 * SHA-384 digest; ECDH with CKM_ECDH1_DERIVE when the key's usage has agree),
 * rsa-2048 / rsa-3072 (CKM_RSA_PKCS_PSS on a SHA-256 digest, MGF1-SHA-256,
 * salt 32). Digests are signed too (KM_BACKEND_CAP_SIGN_DIGEST, for
 * km_sign_digest and the OpenSSL provider): ECDSA, PSS with the digest's MGF1
 * and salt, PKCS#1 v1.5 over a DigestInfo. RSA-OAEP decryption
 * (km_rsa_decrypt: CKM_RSA_PKCS_OAEP, SHA-256, MGF1-SHA-256, empty label) in
 * the token; SoftHSM2 up to 2.6.1 takes OAEP with SHA-1 only and refuses it
 * (CKR_ARGUMENTS_BAD), which libkm reports as KM_E_UNSUPPORTED. Every object:
 * CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE only for
 * KM_KEY_EXPORTABLE keys, never CKA_WRAP / CKA_UNWRAP; on private keys
 * CKA_SIGN only with the sign usage, CKA_DECRYPT only on RSA keys with the
 * unwrap usage, CKA_DERIVE only on EC keys with the agree usage; a random
 * 16-byte CKA_ID. Verification and the public key are done in software from
 * the token's public attributes, through the primitives (prim.h): no OpenSSL
 * call here.
 *
 * Reference (36 bytes, stored sealed by the core):
 *   'P' '1' 1 type serial[16] cka_id[16]
 * Objects are found by CKA_ID; a cached handle is dropped on any failure and
 * found again once (no retry loops).
 */
#include "km_int.h"
#include "keytype.h"
#include "p11_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>


#define REF_LEN 36
#define PSS_SALT 32
/* a vendor code of our own: the object is not on the token */
#define RV_NOT_FOUND (CKR_VENDOR_DEFINED | 0x4b4d0001UL)

/* The key types a token holds are those of the key-type table (keytype.h)
 * with KM__KT_PKCS11; what is PKCS#11's own is the DER OID of a curve
 * (CKA_EC_PARAMS). */
static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

static const uint8_t *ec_oid(const km__keytype *ti, size_t *len)
{
    if (ti->group != NULL && strcmp(ti->group, "P-256") == 0) {
        *len = sizeof oid_p256;
        return oid_p256;
    }
    if (ti->group != NULL && strcmp(ti->group, "P-384") == 0) {
        *len = sizeof oid_p384;
        return oid_p384;
    }
    *len = 0;
    return NULL;
}

static const km__keytype *type_get(int type)
{
    const km__keytype *kt = km__keytype_get(type);
    return kt != NULL && (kt->backends & KM__KT_PKCS11) ? kt : NULL;
}

typedef struct p11_obj {
    km__p11 *p;
    const km__keytype *ti;
    uint8_t id[16];
    pthread_mutex_t mu;
    CK_OBJECT_HANDLE h;     /* secret or private key; CK_INVALID_HANDLE = find by CKA_ID */
    km__pkey *pub;          /* asymmetric: the public key (prim.h) */
} p11_obj;

/* Maps an rv from run() to a km code. */
static int fail(CK_RV rv, const char *what)
{
    if (rv == RV_NOT_FOUND)
        return km__err(KM_E_NOTFOUND, "pkcs11: %s: no object with the key's CKA_ID on the token",
                       what);
    return km__p11_fail(rv, what);
}

/* ------------------------------------------------------- process exit */

/*
 * A vault closed from an atexit handler registered before the token's module
 * was loaded (the OpenSSL provider closes its vaults so, before
 * OPENSSL_cleanup) would call C_CloseSession and C_Finalize after the
 * module's own exit-time destructors ran (handlers run in reverse order;
 * SoftHSM2's C++ statics are registered when it is loaded): a crash at exit.
 * So the first open registers a handler of its own, after the module's: it
 * closes the idle sessions and finalises the modules of the open tokens while
 * they are intact; a later km__p11_close then finds nothing to close, and
 * p11-kit does not call down into a module it already finalised.
 */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;
static km__p11 **live;
static size_t n_live, cap_live;

static void p11_at_exit(void)
{
    size_t i;

    pthread_mutex_lock(&live_mu);
    for (i = 0; i < n_live; i++) {
        km__p11 *p = live[i];

        pthread_mutex_lock(&p->mu);
        if (p->pid == getpid()) {
            while (p->n_idle > 0)
                (void)p->fl->C_CloseSession(p->idle[--p->n_idle]);
            (void)p11_kit_module_finalize(p->fl);
        }
        p->n_idle = 0;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&live_mu);
}

static void register_at_exit(void)
{
    (void)atexit(p11_at_exit);
}

static int live_add(km__p11 *p)
{
    int rc = KM_OK;

    pthread_once(&live_once, register_at_exit);
    pthread_mutex_lock(&live_mu);
    if (n_live == cap_live) {
        size_t cap = cap_live ? 2 * cap_live : 4;
        km__p11 **n = realloc(live, cap * sizeof *n);
        if (n == NULL) {
            rc = km__err(KM_E_NOMEM, "pkcs11: out of memory");
        } else {
            live = n;
            cap_live = cap;
        }
    }
    if (rc == KM_OK)
        live[n_live++] = p;
    pthread_mutex_unlock(&live_mu);
    return rc;
}

static void live_remove(km__p11 *p)
{
    size_t i;

    pthread_mutex_lock(&live_mu);
    for (i = 0; i < n_live; i++) {
        if (live[i] == p) {
            live[i] = live[--n_live];
            break;
        }
    }
    if (n_live == 0) {
        free(live);
        live = NULL;
        cap_live = 0;
    }
    pthread_mutex_unlock(&live_mu);
}

/* ---------------------------------------------------------------- open */

static int p11_open(void **out_state, const char *config)
{
    size_t len;
    char *buf, *seg, *semi, *module = NULL, *uri = NULL, *pin = NULL;
    int cur = 0, rc;
    km__p11 *p = NULL;

    *out_state = NULL;
    if (config == NULL)
        return km__err(KM_E_INVALID, "pkcs11: no configuration (km_vault_backend_set with "
                       "module=...;token=pkcs11:...)");
    len = strlen(config);
    buf = km__salloc(len + 1);
    if (buf == NULL)
        return km__err(KM_E_NOMEM, "pkcs11: no secure memory");
    memcpy(buf, config, len + 1);
    for (seg = buf; seg != NULL; seg = semi != NULL ? semi + 1 : NULL) {
        semi = strchr(seg, ';');
        if (semi != NULL)
            *semi = '\0';
        if (strncmp(seg, "module=", 7) == 0) {
            module = seg + 7;
            cur = 1;
        } else if (strncmp(seg, "pin=", 4) == 0) {
            pin = seg + 4;
            cur = 2;
        } else if (strncmp(seg, "token=", 6) == 0 && uri == NULL) {
            uri = seg + 6;
            cur = 3;
        } else if (cur == 3 && seg > buf) {
            seg[-1] = ';'; /* an attribute of the URI */
        } else if (*seg != '\0') {
            rc = km__err(KM_E_INVALID, "pkcs11: unknown configuration item (want module=, "
                         "token=, pin=)");
            goto out;
        }
    }
    if (module == NULL || *module == '\0' || uri == NULL || *uri == '\0') {
        rc = km__err(KM_E_INVALID, "pkcs11: the configuration needs module= and token=");
        goto out;
    }
    rc = km__p11_open(&p, module, uri, pin);
    if (rc == KM_OK && (rc = live_add(p)) != KM_OK)
        km__p11_close(p);
    if (rc == KM_OK)
        *out_state = p;
out:
    km__sfree(buf, len + 1);
    return rc;
}

static void p11_close(void *state)
{
    if (state == NULL)
        return;
    live_remove(state);
    km__p11_close(state);
}

/* ------------------------------------------------------------ generate */

static int p11_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    km__p11 *p = state;
    const km__keytype *ti;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, extractable;
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET;
    CK_BBOOL derive = (spec != NULL && (spec->usage & (KM_USAGE_AGREE | KM_USAGE_AGREE_RAW))) ? CK_TRUE : CK_FALSE;
    CK_BBOOL sign = (spec != NULL && (spec->usage & KM_USAGE_SIGN)) ? CK_TRUE : CK_FALSE;
    CK_BBOOL decrypt = (spec != NULL && (spec->usage & KM_USAGE_UNWRAP)) ? CK_TRUE : CK_FALSE;
    CK_ULONG value_len, bits;
    static const uint8_t e65537[] = { 0x01, 0x00, 0x01 };
    const uint8_t *oid;
    size_t oid_len;
    char names[160];
    uint8_t id[16];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h1 = CK_INVALID_HANDLE, h2 = CK_INVALID_HANDLE;
    CK_MECHANISM m = { 0, NULL, 0 };
    CK_RV rv;
    uint8_t *r;
    int rc;

    if (out_ref == NULL)
        return km__err(KM_E_INVALID, "pkcs11 generate: out_ref is NULL");
    *out_ref = NULL;
    if (p == NULL || spec == NULL)
        return km__err(KM_E_INVALID, "pkcs11 generate: %s is NULL", p == NULL ? "state" : "spec");
    ti = type_get(spec->type);
    if (ti == NULL)
        return km__err(KM_E_UNSUPPORTED, "pkcs11: key type %s is not supported on a token "
                       "(%s)", km_key_type_name(spec->type) ? km_key_type_name(spec->type)
                                                            : "(unknown)",
                       km__keytype_names(names, sizeof names, KM__KT_PKCS11));
    if (spec->flags & KM_KEY_PUBLIC_ONLY)
        return km__err(KM_E_INVALID, "pkcs11 generate: a public-only key cannot be generated");
    oid = ec_oid(ti, &oid_len);
    extractable = (spec->flags & KM_KEY_EXPORTABLE) ? CK_TRUE : CK_FALSE;
    if ((rc = km__random(id, sizeof id)) != KM_OK)
        return rc;
    if ((rc = km__p11_session_get(p, &s)) != KM_OK)
        return rc;
    if (ti->family == KM__FAM_AES_GCM) {
        CK_ATTRIBUTE t[] = {
            { CKA_CLASS, &sec, sizeof sec },         { CKA_KEY_TYPE, &aes, sizeof aes },
            { CKA_VALUE_LEN, &value_len, sizeof value_len },
            { CKA_TOKEN, &yes, sizeof yes },         { CKA_PRIVATE, &yes, sizeof yes },
            { CKA_SENSITIVE, &yes, sizeof yes },     { CKA_EXTRACTABLE, &extractable, 1 },
            { CKA_ENCRYPT, &yes, sizeof yes },       { CKA_DECRYPT, &yes, sizeof yes },
            { CKA_WRAP, &no, sizeof no },            { CKA_UNWRAP, &no, sizeof no },
            { CKA_SIGN, &no, sizeof no },            { CKA_VERIFY, &no, sizeof no },
            { CKA_DERIVE, &no, sizeof no },          { CKA_ID, id, sizeof id },
        };
        value_len = ti->key_len;
        m.mechanism = CKM_AES_KEY_GEN;
        rv = p->fl->C_GenerateKey(s, &m, t, sizeof t / sizeof t[0], &h1);
    } else if (ti->family == KM__FAM_HMAC) {
        /* a generic secret that only signs and verifies (CKM_SHA*_HMAC) */
        CK_ATTRIBUTE t[] = {
            { CKA_CLASS, &sec, sizeof sec },         { CKA_KEY_TYPE, &gen, sizeof gen },
            { CKA_VALUE_LEN, &value_len, sizeof value_len },
            { CKA_TOKEN, &yes, sizeof yes },         { CKA_PRIVATE, &yes, sizeof yes },
            { CKA_SENSITIVE, &yes, sizeof yes },     { CKA_EXTRACTABLE, &extractable, 1 },
            { CKA_ENCRYPT, &no, sizeof no },         { CKA_DECRYPT, &no, sizeof no },
            { CKA_WRAP, &no, sizeof no },            { CKA_UNWRAP, &no, sizeof no },
            { CKA_SIGN, &yes, sizeof yes },          { CKA_VERIFY, &yes, sizeof yes },
            { CKA_DERIVE, &no, sizeof no },          { CKA_ID, id, sizeof id },
        };
        value_len = ti->key_len;
        m.mechanism = CKM_GENERIC_SECRET_KEY_GEN;
        rv = p->fl->C_GenerateKey(s, &m, t, sizeof t / sizeof t[0], &h1);
    } else {
        CK_ATTRIBUTE pub_ec[] = {
            { CKA_TOKEN, &yes, sizeof yes },  { CKA_VERIFY, &yes, sizeof yes },
            { CKA_ENCRYPT, &no, sizeof no },  { CKA_WRAP, &no, sizeof no },
            { CKA_DERIVE, &no, sizeof no },   { CKA_ID, id, sizeof id },
            { CKA_EC_PARAMS, (void *)(uintptr_t)oid, oid_len },
        };
        CK_ATTRIBUTE pub_rsa[] = {
            { CKA_TOKEN, &yes, sizeof yes },  { CKA_VERIFY, &yes, sizeof yes },
            { CKA_ENCRYPT, &no, sizeof no },  { CKA_WRAP, &no, sizeof no },
            { CKA_DERIVE, &no, sizeof no },   { CKA_ID, id, sizeof id },
            { CKA_MODULUS_BITS, &bits, sizeof bits },
            { CKA_PUBLIC_EXPONENT, (void *)(uintptr_t)e65537, sizeof e65537 },
        };
        CK_ATTRIBUTE priv[] = {
            { CKA_TOKEN, &yes, sizeof yes },     { CKA_PRIVATE, &yes, sizeof yes },
            { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_EXTRACTABLE, &extractable, 1 },
            /* each operation only when the key's usage has it: sign (ECDSA,
             * PSS), decrypt (RSA-OAEP, km_rsa_decrypt: usage unwrap; never
             * CKA_UNWRAP), derive (ECDH, km_agree: usage agree) */
            { CKA_SIGN, &sign, sizeof sign },
            { CKA_DECRYPT, ti->family == KM__FAM_RSA ? &decrypt : &no, sizeof no },
            { CKA_UNWRAP, &no, sizeof no },
            { CKA_DERIVE, ti->family == KM__FAM_ECDSA ? &derive : &no, sizeof no },
            { CKA_ID, id, sizeof id },
        };
        bits = ti->bits;
        if (ti->family == KM__FAM_ECDSA) {
            m.mechanism = CKM_EC_KEY_PAIR_GEN;
            rv = p->fl->C_GenerateKeyPair(s, &m, pub_ec, sizeof pub_ec / sizeof pub_ec[0], priv,
                                          sizeof priv / sizeof priv[0], &h1, &h2);
        } else {
            m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
            rv = p->fl->C_GenerateKeyPair(s, &m, pub_rsa, sizeof pub_rsa / sizeof pub_rsa[0],
                                          priv, sizeof priv / sizeof priv[0], &h1, &h2);
        }
    }
    km__p11_session_put(p, s, rv);
    if (rv != CKR_OK)
        return fail(rv, ti->family == KM__FAM_AES_GCM || ti->family == KM__FAM_HMAC ? "C_GenerateKey"
                                                                : "C_GenerateKeyPair");
    if ((rc = km_secret_new(out_ref, REF_LEN)) != KM_OK)
        return rc;
    r = km_secret_data(*out_ref);
    r[0] = 'P';
    r[1] = '1';
    r[2] = 1;
    r[3] = (uint8_t)spec->type;
    pthread_mutex_lock(&p->mu);
    memcpy(r + 4, p->serial, 16);
    pthread_mutex_unlock(&p->mu);
    memcpy(r + 20, id, 16);
    return KM_OK;
}

/* -------------------------------------------------------- load / find */

static int parse_ref(km__p11 *p, const km_backend_keyspec *spec, const uint8_t *ref,
                     size_t ref_len, const char *fn, const km__keytype **ti)
{
    int serial_ok;

    if (p == NULL || spec == NULL || ref == NULL)
        return km__err(KM_E_INVALID, "pkcs11 %s: NULL argument", fn);
    if (ref_len != REF_LEN || ref[0] != 'P' || ref[1] != '1' || ref[2] != 1
        || ref[3] != (uint8_t)spec->type || (*ti = type_get(ref[3])) == NULL)
        return km__err(KM_E_CORRUPT, "pkcs11 %s: not a pkcs11 key reference of this type", fn);
    pthread_mutex_lock(&p->mu);
    serial_ok = memcmp(p->serial, ref + 4, 16) == 0;
    pthread_mutex_unlock(&p->mu);
    if (!serial_ok)
        return km__err(KM_E_NOTFOUND, "pkcs11 %s: the key lives on another token (serial "
                       "%.16s)", fn, (const char *)ref + 4);
    return KM_OK;
}

/* The key's secret or private object handle (cached until a failure). */
static CK_RV obj_handle(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *h)
{
    CK_ULONG n = 0;
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&o->mu);
    if (o->h == CK_INVALID_HANDLE) {
        rv = km__p11_find(o->p, s, o->id,
                          o->ti->family == KM__FAM_AES_GCM || o->ti->family == KM__FAM_HMAC ? CKO_SECRET_KEY
                                                                         : CKO_PRIVATE_KEY,
                          &o->h, 1, &n);
        if (rv == CKR_OK && n == 0)
            rv = RV_NOT_FOUND;
        if (rv != CKR_OK)
            o->h = CK_INVALID_HANDLE;
    }
    *h = o->h;
    pthread_mutex_unlock(&o->mu);
    return rv;
}

static void obj_forget(p11_obj *o)
{
    pthread_mutex_lock(&o->mu);
    o->h = CK_INVALID_HANDLE;
    pthread_mutex_unlock(&o->mu);
}

typedef CK_RV (*op_fn)(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg);

/* Runs op on the key's object; on a stale session or handle, once more on a
 * fresh session with the object found again. km code; *rv the last CK_RV. */
static int run(p11_obj *o, op_fn fn, void *arg, const char *what, CK_RV *last)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_RV rv = CKR_OK;
    int attempt, rc;

    for (attempt = 0; attempt < 2; attempt++) {
        if ((rc = km__p11_session_get(o->p, &s)) != KM_OK) {
            *last = CKR_DEVICE_ERROR;
            return rc;
        }
        rv = obj_handle(o, s, &h);
        if (rv == CKR_OK)
            rv = fn(o, s, h, arg);
        km__p11_session_put(o->p, s, rv == RV_NOT_FOUND ? CKR_OK : rv);
        if (rv == CKR_OK)
            break;
        obj_forget(o);
        if (!km__p11_rv_stale(rv))
            break;
    }
    *last = rv;
    return rv == CKR_OK ? KM_OK : fail(rv, what);
}

static CK_RV get_attr(km__p11 *p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t,
                      uint8_t **out, CK_ULONG *len)
{
    CK_ATTRIBUTE a = { t, NULL, 0 };
    CK_RV rv = p->fl->C_GetAttributeValue(s, h, &a, 1);

    *out = NULL;
    if (rv != CKR_OK)
        return rv;
    if (a.ulValueLen == 0 || a.ulValueLen > 4096)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    a.pValue = malloc(a.ulValueLen);
    if (a.pValue == NULL)
        return CKR_HOST_MEMORY;
    rv = p->fl->C_GetAttributeValue(s, h, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return rv;
    }
    *out = a.pValue;
    *len = a.ulValueLen;
    return CKR_OK;
}

/* The public key from the token's public-key object. */
static int load_pub(p11_obj *o, CK_SESSION_HANDLE s, CK_RV *last)
{
    uint8_t *a1 = NULL, *a2 = NULL;
    CK_ULONG l1 = 0, l2 = 0, cnt = 0;
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    int rc;

    rv = km__p11_find(o->p, s, o->id, CKO_PUBLIC_KEY, &h, 1, &cnt);
    if (rv == CKR_OK && cnt == 0)
        rv = RV_NOT_FOUND;
    if (rv == CKR_OK && o->ti->family == KM__FAM_ECDSA)
        rv = get_attr(o->p, s, h, CKA_EC_POINT, &a1, &l1);
    else if (rv == CKR_OK) {
        rv = get_attr(o->p, s, h, CKA_MODULUS, &a1, &l1);
        if (rv == CKR_OK)
            rv = get_attr(o->p, s, h, CKA_PUBLIC_EXPONENT, &a2, &l2);
    }
    *last = rv;
    if (rv != CKR_OK) {
        rc = fail(rv, "reading the public key");
        goto out;
    }
    if (o->ti->family == KM__FAM_ECDSA)
        rc = km__pkey_from_ec_point_der(&o->pub, o->ti->group, a1, l1);
    else
        rc = km__pkey_from_rsa(&o->pub, a1, l1, a2, l2);
    if (rc != KM_OK) {
        const km_error *e = km_error_last();   /* keep the primitive's OpenSSL code */
        rc = km_backend_error(rc, e->native_kind, e->native,
                              "pkcs11: the token's %s public key does not decode", o->ti->name);
    }
out:
    free(a1);
    free(a2);
    return rc;
}

static CK_RV nop(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg)
{
    (void)o;
    (void)h;
    (void)arg;
    (void)s;
    return CKR_OK;
}

static void p11_unload(void *state, void *obj)
{
    p11_obj *o = obj;

    (void)state;
    if (o == NULL)
        return;
    km__pkey_free(o->pub);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

static int p11_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                    size_t ref_len, void **out_obj)
{
    km__p11 *p = state;
    const km__keytype *ti = NULL;
    p11_obj *o;
    CK_SESSION_HANDLE s;
    CK_RV rv = CKR_OK;
    int rc;

    if (out_obj == NULL)
        return km__err(KM_E_INVALID, "pkcs11 load: out_obj is NULL");
    *out_obj = NULL;
    if ((rc = parse_ref(p, spec, ref, ref_len, "load", &ti)) != KM_OK)
        return rc;
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return km__err(KM_E_NOMEM, "pkcs11 load: out of memory");
    if (pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o);
        return km__err(KM_E_NOMEM, "pkcs11 load: cannot make a mutex");
    }
    o->p = p;
    o->ti = ti;
    o->h = CK_INVALID_HANDLE;
    memcpy(o->id, ref + 20, 16);
    /* find the object now: a missing key fails here, not at first use */
    if ((rc = run(o, nop, NULL, "finding the key", &rv)) != KM_OK)
        goto fail;
    if (ti->family == KM__FAM_ECDSA || ti->family == KM__FAM_RSA) {
        if ((rc = km__p11_session_get(p, &s)) != KM_OK)
            goto fail;
        rc = load_pub(o, s, &rv);
        km__p11_session_put(p, s, rv == RV_NOT_FOUND ? CKR_OK : rv);
        if (rc != KM_OK)
            goto fail;
    }
    *out_obj = o;
    return KM_OK;
fail:
    p11_unload(state, o);
    return rc;
}

/* --------------------------------------------------------------- destroy */

static int p11_destroy(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                       size_t ref_len)
{
    km__p11 *p = state;
    const km__keytype *ti = NULL;
    CK_OBJECT_HANDLE hs[8];
    CK_ULONG n = 0, i;
    CK_SESSION_HANDLE s;
    CK_RV rv, rv2;
    int rc;

    if ((rc = parse_ref(p, spec, ref, ref_len, "destroy", &ti)) != KM_OK)
        return rc;
    if ((rc = km__p11_session_get(p, &s)) != KM_OK)
        return rc;
    rv = km__p11_find(p, s, ref + 20, (CK_ULONG)-1, hs, 8, &n);
    for (i = 0; rv == CKR_OK && i < n; i++) {
        rv2 = p->fl->C_DestroyObject(s, hs[i]);
        if (rv2 != CKR_OK && rv2 != CKR_OBJECT_HANDLE_INVALID)
            rv = rv2;
    }
    km__p11_session_put(p, s, rv);
    return rv == CKR_OK ? KM_OK : fail(rv, "C_DestroyObject");
}

/* ------------------------------------------------------------------ AEAD */

struct gcm_arg {
    int enc;
    const uint8_t *nonce;
    uint8_t *aad;
    size_t aad_len;
    const uint8_t *in;
    CK_ULONG in_len;
    uint8_t *out;
    CK_ULONG out_len;
};

static CK_RV gcm_op(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg)
{
    struct gcm_arg *g = arg;
    CK_GCM_PARAMS gp;
    CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof gp };
    CK_ULONG n = g->out_len;
    CK_RV rv;

    memset(&gp, 0, sizeof gp);
    gp.pIv = (unsigned char *)(uintptr_t)g->nonce;
    gp.ulIvLen = 12;
    gp.ulIvBits = 96;
    gp.pAAD = g->aad;
    gp.ulAADLen = g->aad_len;
    gp.ulTagBits = 128;
    if (g->enc) {
        rv = o->p->fl->C_EncryptInit(s, &m, h);
        if (rv == CKR_OK)
            rv = o->p->fl->C_Encrypt(s, (CK_BYTE *)(uintptr_t)g->in, g->in_len, g->out, &n);
    } else {
        rv = o->p->fl->C_DecryptInit(s, &m, h);
        if (rv == CKR_OK)
            rv = o->p->fl->C_Decrypt(s, (CK_BYTE *)(uintptr_t)g->in, g->in_len, g->out, &n);
    }
    if (rv == CKR_OK && n != (g->enc ? g->in_len + 16 : g->in_len - 16))
        rv = CKR_DATA_LEN_RANGE;
    return rv;
}

/* aad1 || aad2 in `stack` or in a malloc'ed buffer (*heap, to free). */
static int aad_join(const uint8_t *aad1, size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                    uint8_t *stack, size_t stack_len, uint8_t **joined, uint8_t **heap)
{
    size_t n = aad1_len + aad2_len;

    *heap = NULL;
    if (n < aad1_len || (aad1 == NULL && aad1_len > 0) || (aad2 == NULL && aad2_len > 0))
        return km__err(KM_E_INVALID, "pkcs11 aead: bad associated data");
    if (n > stack_len) {
        if ((*heap = malloc(n)) == NULL)
            return km__err(KM_E_NOMEM, "pkcs11 aead: out of memory");
        *joined = *heap;
    } else {
        *joined = stack;
    }
    if (aad1_len > 0)
        memcpy(*joined, aad1, aad1_len);
    if (aad2_len > 0)
        memcpy(*joined + aad1_len, aad2, aad2_len);
    return KM_OK;
}

static int p11_aead_seal(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                         size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                         const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[16])
{
    p11_obj *o = obj;
    /* ciphertext || tag from the token: on the stack up to 4 KiB (no
     * allocation on the data path), else on the heap; not secret */
    uint8_t stack[512], *heap = NULL, one = 0, ctbuf[4096 + 16];
    struct gcm_arg g;
    CK_RV rv;
    int rc;

    if (o == NULL || nonce == NULL || tag == NULL || (in_len > 0 && (in == NULL || out == NULL)))
        return km__err(KM_E_INVALID, "pkcs11 aead_seal: NULL argument");
    if (o->ti->family != KM__FAM_AES_GCM)
        return km__err(KM_E_USAGE, "a %s key does not encrypt data", o->ti->name);
    if (in_len > ((size_t)1 << 31))
        return km__err(KM_E_INVALID, "pkcs11 aead_seal: input too long");
    memset(&g, 0, sizeof g);
    if ((rc = aad_join(aad1, aad1_len, aad2, aad2_len, stack, sizeof stack, &g.aad, &heap))
        != KM_OK)
        return rc;
    g.enc = 1;
    g.nonce = nonce;
    g.aad_len = aad1_len + aad2_len;
    g.in = in_len > 0 ? in : &one;
    g.in_len = in_len;
    g.out_len = in_len + 16;
    g.out = g.out_len <= sizeof ctbuf ? ctbuf : malloc(g.out_len);
    if (g.out == NULL) {
        free(heap);
        return km__err(KM_E_NOMEM, "pkcs11 aead_seal: out of memory");
    }
    rc = run(o, gcm_op, &g, "AES-GCM encryption (C_Encrypt)", &rv);
    if (rc == KM_OK) {
        if (in_len > 0)
            memcpy(out, g.out, in_len);
        memcpy(tag, g.out + in_len, 16);
    }
    if (g.out != ctbuf)
        free(g.out);
    free(heap);
    return rc;
}

static int p11_aead_open(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                         size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                         const uint8_t *in, size_t in_len, const uint8_t tag[16], uint8_t *out)
{
    p11_obj *o = obj;
    /* ciphertext || tag in (not secret): on the stack up to 4 KiB, else on
     * the heap; the plaintext lands in secure memory first (a pooled secret
     * up to 2 KiB: no mmap per call; else guarded pages) */
    uint8_t stack[512], *heap = NULL, ctbuf[4096 + 16], *ctin = NULL, *pt;
    size_t buf_len = in_len + 16;
    km_secret *ptsec = NULL;
    struct gcm_arg g;
    CK_RV rv = CKR_OK, rv2;
    int rc;

    if (o == NULL || nonce == NULL || tag == NULL || (in_len > 0 && (in == NULL || out == NULL)))
        return km__err(KM_E_INVALID, "pkcs11 aead_open: NULL argument");
    if (o->ti->family != KM__FAM_AES_GCM)
        return km__err(KM_E_USAGE, "a %s key does not decrypt data", o->ti->name);
    if (in_len > ((size_t)1 << 31))
        return km__err(KM_E_INVALID, "pkcs11 aead_open: input too long");
    memset(&g, 0, sizeof g);
    if ((rc = aad_join(aad1, aad1_len, aad2, aad2_len, stack, sizeof stack, &g.aad, &heap))
        != KM_OK)
        goto out;
    ctin = buf_len <= sizeof ctbuf ? ctbuf : malloc(buf_len);
    if (ctin == NULL) {
        rc = km__err(KM_E_NOMEM, "pkcs11 aead_open: out of memory");
        goto out;
    }
    if ((rc = buf_len <= 2048 ? km__secret_new_pooled(&ptsec, buf_len)
                              : km_secret_new(&ptsec, buf_len)) != KM_OK)
        goto out;
    pt = km_secret_data(ptsec);
    if (in_len > 0)
        memcpy(ctin, in, in_len);
    memcpy(ctin + in_len, tag, 16);
    g.nonce = nonce;
    g.aad_len = aad1_len + aad2_len;
    g.in = ctin;
    g.in_len = buf_len;
    g.out = pt;
    g.out_len = buf_len;
    rc = run(o, gcm_op, &g, "AES-GCM decryption (C_Decrypt)", &rv);
    if (rc != KM_OK && (rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID)) {
        /* SoftHSM reports a bad tag as CKR_GENERAL_ERROR: it is an integrity
         * failure only if the token is still there and the key still found */
        rv2 = CKR_OK;
        if (run(o, nop, NULL, "finding the key", &rv2) == KM_OK)
            rc = km_backend_error(KM_E_INTEGRITY, KM_NATIVE_PKCS11, (unsigned long)rv,
                                  "pkcs11: AES-GCM authentication failed");
    }
    if (rc == KM_OK && in_len > 0)
        memcpy(out, g.out, in_len);
out:
    if (rc != KM_OK && in_len > 0 && out != NULL)
        km_memzero(out, in_len);
    km_secret_free(ptsec);
    if (ctin != ctbuf)
        free(ctin);
    free(heap);
    return rc;
}

/* ------------------------------------------------------------ signatures */

struct sign_arg {
    const uint8_t *digest;   /* or, for HMAC and PKCS#1, the data the token signs */
    CK_ULONG digest_len;
    uint8_t *out;
    CK_ULONG out_len;
    CK_MECHANISM mech;       /* mechanism 0: the key type's default */
};

static CK_RV sign_op(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg)
{
    struct sign_arg *a = arg;
    CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, PSS_SALT };
    CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
    CK_RV rv;

    if (a->mech.mechanism != 0) {
        m = a->mech;
    } else if (o->ti->family == KM__FAM_RSA) {
        m.mechanism = CKM_RSA_PKCS_PSS;
        m.pParameter = &pss;
        m.ulParameterLen = sizeof pss;
    }
    rv = o->p->fl->C_SignInit(s, &m, h);
    if (rv == CKR_OK)
        rv = o->p->fl->C_Sign(s, (CK_BYTE *)(uintptr_t)a->digest, a->digest_len, a->out,
                              &a->out_len);
    return rv;
}

#define SIG_DIGESTS (KM_BACKEND_SIG_SHA256 | KM_BACKEND_SIG_SHA384 | KM_BACKEND_SIG_SHA512)

/* A digest to sign (KM_BACKEND_CAP_SIGN_DIGEST): the mechanism, and for
 * PKCS#1 v1.5 the DigestInfo the token signs, in `buf`. */
static int digest_mech(const p11_obj *o, uint32_t flags, const uint8_t *dgst, size_t dgst_len,
                       struct sign_arg *a, CK_RSA_PKCS_PSS_PARAMS *pss, uint8_t *buf,
                       size_t cap)
{
    static const uint8_t di256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
    static const uint8_t di384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
    static const uint8_t di512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                     0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };
    uint32_t d = flags & SIG_DIGESTS;
    size_t want = d == KM_BACKEND_SIG_SHA256 ? 32 : d == KM_BACKEND_SIG_SHA384 ? 48
                : d == KM_BACKEND_SIG_SHA512 ? 64 : 0;
    const uint8_t *di = d == KM_BACKEND_SIG_SHA256 ? di256 : d == KM_BACKEND_SIG_SHA384 ? di384
                      : di512;

    if (want == 0 || dgst == NULL || dgst_len != want)
        return km__err(KM_E_INVALID, "pkcs11 sign: bad digest for a %s key", o->ti->name);
    memset(&a->mech, 0, sizeof a->mech);
    a->digest = dgst;
    a->digest_len = (CK_ULONG)want;
    if (o->ti->family == KM__FAM_ECDSA) {
        a->mech.mechanism = CKM_ECDSA;
    } else if (flags & KM_SIG_PKCS1) {
        if (sizeof di256 + want > cap)
            return km__err(KM_E_INTERNAL, "pkcs11 sign: DigestInfo buffer too small");
        memcpy(buf, di, sizeof di256);
        memcpy(buf + sizeof di256, dgst, want);
        a->mech.mechanism = CKM_RSA_PKCS;
        a->digest = buf;
        a->digest_len = (CK_ULONG)(sizeof di256 + want);
    } else {
        /* PSS with MGF1 of the same digest, salt = digest length (as the
         * software backend and OpenSSL's "digest" salt length) */
        pss->hashAlg = d == KM_BACKEND_SIG_SHA256 ? CKM_SHA256
                     : d == KM_BACKEND_SIG_SHA384 ? CKM_SHA384 : CKM_SHA512;
        pss->mgf = d == KM_BACKEND_SIG_SHA256 ? CKG_MGF1_SHA256
                 : d == KM_BACKEND_SIG_SHA384 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA512;
        pss->sLen = (CK_ULONG)want;
        a->mech.mechanism = CKM_RSA_PKCS_PSS;
        a->mech.pParameter = pss;
        a->mech.ulParameterLen = sizeof *pss;
    }
    return KM_OK;
}

static size_t sig_max(const p11_obj *o, uint32_t flags)
{
    if (o->ti->family == KM__FAM_RSA)
        return o->ti->bits / 8;
    if (flags & KM_SIG_P1363)
        return 2 * o->ti->field;
    return km__pkey_size(o->pub);
}

static int p11_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
                    size_t sig_cap, size_t *sig_len)
{
    p11_obj *o = obj;
    uint8_t digest[64], raw[512], dinfo[19 + 64];
    size_t dlen = 0;
    struct sign_arg a;
    CK_RSA_PKCS_PSS_PARAMS pss;
    size_t need;
    CK_RV rv;
    int rc;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11 sign: sig_len is NULL");
    *sig_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "pkcs11 sign: %s is NULL", o == NULL ? "obj" : "msg");
    if (o->ti->family == KM__FAM_AES_GCM || o->ti->family == KM__FAM_HMAC)
        return km__err(KM_E_USAGE, "a %s key does not sign", o->ti->name);
    if ((flags & ~(KM_SIG_P1363 | KM_SIG_PKCS1 | SIG_DIGESTS))
        || ((flags & KM_SIG_P1363) && o->ti->family != KM__FAM_ECDSA)
        || ((flags & KM_SIG_PKCS1) && (o->ti->family != KM__FAM_RSA || !(flags & SIG_DIGESTS))))
        return km__err(KM_E_INVALID, "pkcs11 sign: bad flags for a %s key", o->ti->name);
    need = sig_max(o, flags);
    if (sig == NULL || sig_cap < need) {
        *sig_len = need;
        return km__err(KM_E_BUFFER, "signature needs %zu bytes", need);
    }
    memset(&a, 0, sizeof a);
    if (flags & SIG_DIGESTS) {
        if ((rc = digest_mech(o, flags, msg, msg_len, &a, &pss, dinfo, sizeof dinfo)) != KM_OK)
            return rc;
    } else {
        if ((rc = km__digest(o->ti->md, msg, msg_len, digest, sizeof digest, &dlen)) != KM_OK)
            return rc;
        a.digest = digest;
        a.digest_len = (CK_ULONG)dlen;
    }
    a.out = raw;
    a.out_len = sizeof raw;
    if ((rc = run(o, sign_op, &a, "C_Sign", &rv)) != KM_OK)
        return rc;
    if (o->ti->family == KM__FAM_RSA || (flags & KM_SIG_P1363)) {
        if (a.out_len != need)
            return km__err(KM_E_BACKEND, "pkcs11 sign: the token returned %lu bytes, not %zu",
                           (unsigned long)a.out_len, need);
        memcpy(sig, raw, need);
        *sig_len = need;
        return KM_OK;
    }
    /* raw r || s -> DER ECDSA-Sig-Value */
    if (a.out_len != 2 * o->ti->field)
        return km__err(KM_E_BACKEND, "pkcs11 sign: the token returned %lu bytes, not %zu",
                       (unsigned long)a.out_len, 2 * o->ti->field);
    if (km__ecdsa_raw_to_der(raw, o->ti->field, sig, sig_cap, sig_len) != KM_OK)
        return km__err_ossl(KM_E_CRYPTO, "pkcs11 sign: cannot encode the ECDSA signature");
    return KM_OK;
}

static int p11_verify(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                      const uint8_t *sig, size_t sig_len)
{
    p11_obj *o = obj;

    if (o == NULL || (msg == NULL && msg_len > 0) || (sig == NULL && sig_len > 0))
        return km__err(KM_E_INVALID, "pkcs11 verify: NULL argument");
    if (o->ti->family == KM__FAM_AES_GCM || o->ti->family == KM__FAM_HMAC)
        return km__err(KM_E_USAGE, "a %s key does not verify signatures", o->ti->name);
    if ((flags & ~KM_SIG_P1363) || ((flags & KM_SIG_P1363) && o->ti->family != KM__FAM_ECDSA))
        return km__err(KM_E_INVALID, "pkcs11 verify: bad flags for a %s key", o->ti->name);
    /* public-key work in software (prim.h) */
    return km__pkey_verify(o->pub, o->ti->md, flags, msg, msg_len, sig, sig_len);
}

static int p11_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    p11_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11 public_key: out_len is NULL");
    *out_len = 0;
    if (o == NULL)
        return km__err(KM_E_INVALID, "pkcs11 public_key: obj is NULL");
    if (o->pub == NULL)
        return km__err(KM_E_UNSUPPORTED, "a %s key has no public key", o->ti->name);
    return km__pkey_spki(o->pub, out, out_cap, out_len);
}

/* ------------------------------------------------------------------- table */

/* ------------------------------------------------------------ keyslot */

/*
 * An HSM keyslot: the vault master key encrypted (AES-256-GCM, in the token)
 * under a token key made for the slot (sensitive, non-extractable, encrypt /
 * decrypt only). Blob:
 *   'S' 1 ref_len(1) ref[ref_len] nonce[12] ciphertext[32] tag[16]
 * where ref is the key's reference (token serial and CKA_ID). Another token,
 * or this one re-initialised, cannot open it.
 */
/* ------------------------------------------------------------------ HMAC */

static int p11_mac(void *obj, const uint8_t *msg, size_t msg_len, uint8_t *tag, size_t tag_cap,
                   size_t *tag_len)
{
    p11_obj *o = obj;
    struct sign_arg a;
    uint8_t raw[64], one = 0;
    CK_RV rv;
    int rc;

    if (tag_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11 mac: tag_len is NULL");
    *tag_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "pkcs11 mac: %s is NULL", o == NULL ? "obj" : "msg");
    if (o->ti->family != KM__FAM_HMAC)
        return km__err(KM_E_USAGE, "a %s key does not compute MACs", o->ti->name);
    /* the tag is as long as the digest, which is the type's key length */
    if (tag == NULL || tag_cap < o->ti->key_len) {
        *tag_len = o->ti->key_len;
        return km__err(KM_E_BUFFER, "a MAC needs %zu bytes", o->ti->key_len);
    }
    memset(&a, 0, sizeof a);
    a.mech.mechanism = o->ti->key_len == 32 ? CKM_SHA256_HMAC
                     : o->ti->key_len == 48 ? CKM_SHA384_HMAC : CKM_SHA512_HMAC;
    a.digest = msg != NULL ? msg : &one;
    a.digest_len = (CK_ULONG)msg_len;
    a.out = raw;
    a.out_len = sizeof raw;
    if ((rc = run(o, sign_op, &a, "C_Sign (HMAC)", &rv)) != KM_OK)
        return rc;
    if (a.out_len != o->ti->key_len) {
        km_memzero(raw, sizeof raw);
        return km__err(KM_E_BACKEND, "pkcs11 mac: the token returned %lu bytes, not %zu",
                       (unsigned long)a.out_len, o->ti->key_len);
    }
    memcpy(tag, raw, o->ti->key_len);
    km_memzero(raw, sizeof raw);
    *tag_len = o->ti->key_len;
    return KM_OK;
}

/* ------------------------------------------------------------------ ECDH */

struct ecdh_arg {
    const uint8_t *point;      /* the peer's uncompressed point */
    CK_ULONG point_len;
    CK_ULONG secret_len;
    uint8_t *out;              /* secure memory, secret_len bytes */
};

/* CKM_ECDH1_DERIVE into a session object that is extractable only so that
 * the shared secret can be read out; destroyed at once, whatever happens. */
static CK_RV ecdh_op(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg)
{
    struct ecdh_arg *e = arg;
    CK_ECDH1_DERIVE_PARAMS dp = { CKD_NULL, 0, NULL, e->point_len,
                                  (CK_BYTE *)(uintptr_t)e->point };
    CK_MECHANISM m = { CKM_ECDH1_DERIVE, &dp, sizeof dp };
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
    CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG len = e->secret_len;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &sec, sizeof sec },      { CKA_KEY_TYPE, &gen, sizeof gen },
        { CKA_VALUE_LEN, &len, sizeof len },  { CKA_TOKEN, &no, sizeof no },
        { CKA_PRIVATE, &yes, sizeof yes },    { CKA_SENSITIVE, &no, sizeof no },
        { CKA_EXTRACTABLE, &yes, sizeof yes },
    };
    CK_ATTRIBUTE v = { CKA_VALUE, e->out, e->secret_len };
    CK_OBJECT_HANDLE hk = CK_INVALID_HANDLE;
    CK_RV rv, rv2;

    rv = o->p->fl->C_DeriveKey(s, &m, h, t, sizeof t / sizeof t[0], &hk);
    if (rv != CKR_OK)
        return rv;
    rv = o->p->fl->C_GetAttributeValue(s, hk, &v, 1);
    if (rv == CKR_OK && v.ulValueLen != e->secret_len)
        rv = CKR_GENERAL_ERROR;
    rv2 = o->p->fl->C_DestroyObject(s, hk);
    return rv != CKR_OK ? rv : rv2;
}

static int p11_agree(void *obj, const uint8_t *peer_spki, size_t peer_len, km_secret **out)
{
    p11_obj *o = obj;
    uint8_t point[2 * 66 + 1];
    size_t plen = 0;
    struct ecdh_arg e;
    CK_RV rv;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "pkcs11 agree: out is NULL");
    *out = NULL;
    if (o == NULL || peer_spki == NULL || peer_len == 0 || peer_len > 4096)
        return km__err(KM_E_INVALID, "pkcs11 agree: bad arguments");
    if (o->ti->family != KM__FAM_ECDSA)
        return km__err(KM_E_USAGE, "a %s key does not do key agreement", o->ti->name);
    if (km__pkey_peer_ec_point(peer_spki, peer_len, o->ti->group, point, sizeof point, &plen)
            != KM_OK
        || plen != 2 * o->ti->field + 1) {
        return km__err(KM_E_INVALID, "pkcs11 agree: the peer key is not an uncompressed %s "
                       "public key (SPKI DER)", o->ti->group);
    }
    if ((rc = km_secret_new(out, o->ti->field)) != KM_OK)
        return rc;
    e.point = point;
    e.point_len = (CK_ULONG)plen;
    e.secret_len = (CK_ULONG)o->ti->field;
    e.out = km_secret_data(*out);
    if ((rc = run(o, ecdh_op, &e, "C_DeriveKey (ECDH)", &rv)) != KM_OK) {
        km_secret_free(*out);
        *out = NULL;
        return rc;
    }
    return KM_OK;
}

/* -------------------------------------------------------------- RSA-OAEP */

struct oaep_arg {
    const uint8_t *in;         /* exactly the modulus size */
    CK_ULONG in_len;
    uint8_t *out;              /* secure memory, in_len bytes */
    CK_ULONG out_len;
    CK_MECHANISM_TYPE hash;    /* the OAEP digest (CKM_SHA256, ...) */
    CK_RSA_PKCS_MGF_TYPE mgf;  /* MGF1 with the same digest */
    CK_ULONG hlen;             /* its length */
    const uint8_t *label;      /* CKZ_DATA_SPECIFIED */
    CK_ULONG label_len;
    CK_RV init_rv;             /* C_DecryptInit's result (parameters refused?) */
};

/* CKM_RSA_PKCS_OAEP with the digest, MGF1 of the same and the label of `a`:
 * what km_rsa_decrypt and km_rsa_oaep_decrypt promise (as the software backend). */
static CK_RV oaep_op(p11_obj *o, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *arg)
{
    struct oaep_arg *a = arg;
    CK_RSA_PKCS_OAEP_PARAMS op = { a->hash, a->mgf, CKZ_DATA_SPECIFIED,
                                   (CK_VOID_PTR)(uintptr_t)a->label, a->label_len };
    CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &op, sizeof op };
    CK_RV rv;

    a->out_len = a->in_len;
    rv = a->init_rv = o->p->fl->C_DecryptInit(s, &m, h);
    if (rv == CKR_OK)
        rv = o->p->fl->C_Decrypt(s, (CK_BYTE *)(uintptr_t)a->in, a->in_len, a->out, &a->out_len);
    if (rv == CKR_OK && a->out_len > a->in_len - 2 * a->hlen - 2)
        rv = CKR_DATA_LEN_RANGE;  /* longer than OAEP can carry: a lying token */
    return rv;
}

/* RSA-OAEP decryption in the token with a digest (KM_BACKEND_SIG_SHA*) and a
 * label, into out (at least in_len bytes). */
static int p11_rsa_decrypt(void *obj, uint32_t flags, const uint8_t *label, size_t label_len,
                           const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                           size_t *out_len)
{
    p11_obj *o = obj;
    struct oaep_arg a;
    CK_RV rv = CKR_OK, rv2;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "pkcs11 decrypt: out_len is NULL");
    *out_len = 0;
    if (o == NULL || in == NULL || out == NULL)
        return km__err(KM_E_INVALID, "pkcs11 decrypt: a NULL argument");
    if (o->ti->family != KM__FAM_RSA)
        return km__err(KM_E_USAGE, "a %s key does not decrypt", o->ti->name);
    if (in_len != o->ti->bits / 8 || out_cap < in_len)
        return km__err(KM_E_INTEGRITY, "RSA-OAEP decryption failed (bad length)");
    memset(&a, 0, sizeof a);
    a.in = in;
    a.in_len = (CK_ULONG)in_len;
    a.out = out;
    a.label = label;
    a.label_len = (CK_ULONG)label_len;
    a.hash = flags == KM_BACKEND_SIG_SHA512 ? CKM_SHA512
             : flags == KM_BACKEND_SIG_SHA384 ? CKM_SHA384 : CKM_SHA256;
    a.mgf = flags == KM_BACKEND_SIG_SHA512 ? CKG_MGF1_SHA512
            : flags == KM_BACKEND_SIG_SHA384 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA256;
    a.hlen = flags == KM_BACKEND_SIG_SHA512 ? 64 : flags == KM_BACKEND_SIG_SHA384 ? 48 : 32;
    rc = run(o, oaep_op, &a, "RSA-OAEP decryption (C_Decrypt)", &rv);
    if (rc != KM_OK && a.init_rv != CKR_OK
        && (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID)) {
        /* SoftHSM2 up to 2.6.1 takes OAEP with SHA-1 only (CKR_ARGUMENTS_BAD) */
        rc = km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_PKCS11, (unsigned long)rv,
                              "pkcs11: the token does not offer RSA-OAEP with SHA-%lu, MGF1 of "
                              "the same and a label of %zu bytes (C_DecryptInit: 0x%lx)",
                              (unsigned long)a.hlen * 8, label_len, (unsigned long)rv);
    } else if (rc != KM_OK && a.init_rv == CKR_OK
               && (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE
                   || rv == CKR_GENERAL_ERROR)) {
        /* a bad padding; some tokens say CKR_GENERAL_ERROR: an integrity
         * failure only if the token is still there and the key still found */
        rv2 = CKR_OK;
        if (rv != CKR_GENERAL_ERROR || run(o, nop, NULL, "finding the key", &rv2) == KM_OK)
            rc = km_backend_error(KM_E_INTEGRITY, KM_NATIVE_PKCS11, (unsigned long)rv,
                                  "RSA-OAEP decryption failed (wrong key, label or digest, or "
                                  "altered ciphertext)");
    }
    if (rc == KM_OK)
        *out_len = a.out_len;
    else
        km_memzero(out, out_cap);
    return rc;
}

/* The import of RSA-OAEP wrapped keys: SHA-256, no label, the plaintext
 * straight into secure memory. */
static int p11_unwrap(void *obj, const uint8_t *in, size_t in_len, km_secret **out)
{
    km_secret *buf = NULL;
    size_t n = 0;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "pkcs11 decrypt: out is NULL");
    *out = NULL;
    if (in == NULL || in_len == 0 || in_len > 1024)
        return km__err(KM_E_INTEGRITY, "RSA-OAEP decryption failed (bad length)");
    if ((rc = km_secret_new(&buf, in_len)) != KM_OK)
        return rc;
    rc = p11_rsa_decrypt(obj, KM_BACKEND_SIG_SHA256, NULL, 0, in, in_len, km_secret_data(buf),
                         in_len, &n);
    if (rc == KM_OK)
        rc = km_secret_from(out, km_secret_data(buf), n);
    km_secret_free(buf);
    return rc;
}

static const uint8_t slot_aad[] = "km-pkcs11-keyslot-v1";

static void slot_spec(km_backend_keyspec *spec, const uint8_t id[16])
{
    memset(spec, 0, sizeof *spec);
    spec->version = 1;
    spec->type = KM_KEY_AES_256_GCM;
    spec->usage = KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT;
    spec->key_id = id;
    spec->key_version = 1;
}

static int p11_slot_seal(void *state, const km_secret *master, km_secret **out_blob)
{
    km_backend_keyspec spec;
    km_secret *ref = NULL;
    void *obj = NULL;
    uint8_t id[16], nonce[12], blob[3 + 255 + 12 + 32 + 16];
    size_t n;
    int rc;

    *out_blob = NULL;
    if (master == NULL || km_secret_len(master) != 32)
        return km__err(KM_E_INVALID, "pkcs11 keyslot: a 32-byte master key is needed");
    if ((rc = km__random(id, sizeof id)) != KM_OK || (rc = km__random(nonce, sizeof nonce)))
        return rc;
    slot_spec(&spec, id);
    if ((rc = p11_generate(state, &spec, &ref)) != KM_OK)
        return rc;
    if (km_secret_len(ref) > 255) {
        rc = km__err(KM_E_INTERNAL, "pkcs11 keyslot: key reference too long");
        goto out;
    }
    if ((rc = p11_load(state, &spec, km_secret_data(ref), km_secret_len(ref), &obj)) != KM_OK)
        goto out;
    n = km_secret_len(ref);
    blob[0] = 'S';
    blob[1] = 1;
    blob[2] = (uint8_t)n;
    memcpy(blob + 3, km_secret_data(ref), n);
    memcpy(blob + 3 + n, nonce, 12);
    rc = p11_aead_seal(obj, nonce, slot_aad, sizeof slot_aad - 1, NULL, 0, km_secret_data(master),
                       32, blob + 3 + n + 12, blob + 3 + n + 12 + 32);
    if (rc == KM_OK)
        rc = km_secret_from(out_blob, blob, 3 + n + 12 + 32 + 16);
out:
    if (obj != NULL)
        p11_unload(state, obj);
    if (rc != KM_OK && ref != NULL)   /* do not leave an unused key in the token */
        (void)p11_destroy(state, &spec, km_secret_data(ref), km_secret_len(ref));
    km_secret_free(ref);
    km_memzero(blob, sizeof blob);
    return rc;
}

static int p11_slot_unseal(void *state, const uint8_t *blob, size_t blob_len,
                           km_secret **out_master)
{
    km_backend_keyspec spec;
    void *obj = NULL;
    uint8_t mk[32];
    size_t n;
    int rc;

    *out_master = NULL;
    if (blob == NULL || blob_len < 3 || blob[0] != 'S' || blob[1] != 1 || blob[2] != REF_LEN
        || blob_len != 3u + REF_LEN + 12 + 32 + 16)
        return km__err(KM_E_CORRUPT, "pkcs11 keyslot: malformed blob");
    n = REF_LEN;
    slot_spec(&spec, blob + 3 + REF_LEN - 16);   /* the reference ends with the CKA_ID */
    rc = p11_load(state, &spec, blob + 3, n, &obj);
    if (rc == KM_E_NOTFOUND || rc == KM_E_INVALID || rc == KM_E_INTEGRITY) {
        char keep[200];
        snprintf(keep, sizeof keep, "%s", km_error_last()->message);
        return km__err(KM_E_AUTH, "pkcs11 keyslot: this token cannot open it (%s)", keep);
    }
    if (rc != KM_OK)
        return rc;
    rc = p11_aead_open(obj, blob + 3 + n, slot_aad, sizeof slot_aad - 1, NULL, 0,
                       blob + 3 + n + 12, 32, blob + 3 + n + 12 + 32, mk);
    p11_unload(state, obj);
    if (rc == KM_E_INTEGRITY)
        rc = km__err(KM_E_AUTH, "pkcs11 keyslot: the token key does not open it");
    if (rc == KM_OK)
        rc = km_secret_from(out_master, mk, sizeof mk);
    km_memzero(mk, sizeof mk);
    return rc;
}

/* km_random with this protection: the token's generator. */
static int p11_random(void *state, uint8_t *out, size_t len)
{
    km__p11 *p = state;
    CK_SESSION_HANDLE s;
    CK_RV rv;
    int rc;

    if (p == NULL || out == NULL || len == 0)
        return km__err(KM_E_INVALID, "pkcs11 random: bad arguments");
    if ((rc = km__p11_session_get(p, &s)) != KM_OK)
        return rc;
    rv = p->fl->C_GenerateRandom(s, out, (CK_ULONG)len);
    km__p11_session_put(p, s, rv);
    if (rv != CKR_OK) {
        km_memzero(out, len);
        return fail(rv, "C_GenerateRandom");
    }
    return KM_OK;
}

const km_backend_ops km__pkcs11_backend = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "pkcs11",
    .caps = KM_BACKEND_CAP_SYMMETRIC | KM_BACKEND_CAP_ASYMMETRIC | KM_BACKEND_CAP_SIGN_DIGEST,
    .open = p11_open,
    .close = p11_close,
    .generate = p11_generate,
    .import = NULL,
    .destroy = p11_destroy,
    .load = p11_load,
    .unload = p11_unload,
    .aead_seal = p11_aead_seal,
    .aead_open = p11_aead_open,
    .sign = p11_sign,
    .verify = p11_verify,
    .mac = p11_mac,
    .wrap = NULL,
    .unwrap = p11_unwrap,
    .derive = NULL,
    .agree = p11_agree,
    .public_key = p11_public_key,
    .ctl = NULL,
    .slot_seal = p11_slot_seal,
    .slot_unseal = p11_slot_unseal,
    .random = p11_random,
    .rsa_decrypt = p11_rsa_decrypt,
};
