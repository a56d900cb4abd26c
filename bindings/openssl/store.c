/*
 * store.c - the km: URI loader: km:NAME or km:NAME;version=N.
 *
 * It hands libcrypto a reference to a key object of this provider
 * (OSSL_OBJECT_PARAM_REFERENCE), so libcrypto loads it through our keymgmt
 * and no private key is ever exported. The vault is opened here, at the first URI.
 */
#include "provider.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>

typedef struct {
    kmp_prov *prov;
    char *name;
    uint32_t version;
    int done;
} kmp_store_ctx;

static void store_close_ctx(kmp_store_ctx *c)
{
    if (c == NULL)
        return;
    free(c->name);
    free(c);
}

static void *store_open(void *provctx, const char *uri)
{
    kmp_prov *p = provctx;
    kmp_store_ctx *c;
    const char *name, *semi;
    size_t len;

    if (uri == NULL || strncmp(uri, "km:", 3) != 0)
        return NULL; /* not ours: another loader may take it */
    name = uri + 3;
    semi = strchr(name, ';');
    len = semi != NULL ? (size_t)(semi - name) : strlen(name);
    if (len == 0 || len > KM_KEY_NAME_MAX) {
        kmp_error(p, KMP_R_BAD_URI, "km: URI without a key name (km:NAME or km:NAME;version=N)");
        return NULL;
    }
    if ((c = calloc(1, sizeof *c)) == NULL || (c->name = strndup(name, len)) == NULL) {
        free(c);
        return NULL;
    }
    c->prov = p;
    if (semi != NULL) {
        char *end = NULL;
        unsigned long v;
        if (strncmp(semi, ";version=", 9) != 0 || semi[9] < '0' || semi[9] > '9') {
            kmp_error(p, KMP_R_BAD_URI, "km: URI: only ;version=N may follow the name");
            store_close_ctx(c);
            return NULL;
        }
        errno = 0;
        v = strtoul(semi + 9, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX) {
            kmp_error(p, KMP_R_BAD_URI, "km: URI: version must be 1 to 4294967295");
            store_close_ctx(c);
            return NULL;
        }
        c->version = (uint32_t)v;
    }
    return c;
}

static const OSSL_PARAM *store_settable(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END
    };
    (void)provctx;
    return t;
}

static int store_set_params(void *ctx, const OSSL_PARAM params[])
{
    (void)ctx;
    (void)params; /* a km: URI names one key: whatever is expected, that is what we have */
    return 1;
}

static int store_load(void *ctx, OSSL_CALLBACK *cb, void *cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                      void *pw_cbarg)
{
    kmp_store_ctx *c = ctx;
    kmp_prov *p = c->prov;
    kmp_key *k = NULL;
    km_key *key = NULL;
    km_ctx *vault;
    OSSL_PARAM params[4];
    int type = OSSL_OBJECT_PKEY, rc, ok;

    (void)pw_cb;
    (void)pw_cbarg; /* the passphrase is the provider's configuration, never a prompt */
    if (c->done)
        return 0;
    c->done = 1;
    if ((vault = kmp_vault(p)) == NULL)
        return 0;
    if ((rc = km_key_open(&key, vault, c->name)) != KM_OK) {
        kmp_error_km(p, rc, "opening the key");
        return 0;
    }
    if (!kmp_key_from_km(p, key, c->version, &k)) {
        km_key_free(key);
        return 0;
    }
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                                 (char *)(uintptr_t)kmp_key_type_name(k->type), 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &k, sizeof k);
    params[3] = OSSL_PARAM_construct_end();
    ok = cb(params, cbarg);
    kmp_key_free(k); /* NULL when our keymgmt took it */
    return ok;
}

static int store_eof(void *ctx)
{
    return ((kmp_store_ctx *)ctx)->done;
}

static int store_close(void *ctx)
{
    store_close_ctx(ctx);
    return 1;
}

const OSSL_DISPATCH kmp_store[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close },
    { 0, NULL }
};
