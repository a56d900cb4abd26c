/*
 * p11_none.c - km/pkcs11.h in a build without the PKCS#11 backend
 * (--disable-pkcs11): every function says so, and the export list stays the
 * same in every build.
 */
#include "km_int.h"

#include "km/pkcs11.h"

static int none(const char *fn)
{
    return km__err(KM_E_UNSUPPORTED, "%s: libkm was built without PKCS#11 support "
                   "(--enable-pkcs11)", fn);
}

int km_pkcs11_tokens(km_pkcs11_list **out, const char *module)
{
    (void)module;
    if (out != NULL)
        *out = NULL;
    return none("km_pkcs11_tokens");
}

int km_pkcs11_certificates(km_pkcs11_list **out, const char *module)
{
    (void)module;
    if (out != NULL)
        *out = NULL;
    return none("km_pkcs11_certificates");
}

size_t km_pkcs11_list_count(const km_pkcs11_list *list)
{
    (void)list;
    return 0;
}

const char *km_pkcs11_list_get(const km_pkcs11_list *list, size_t index, km_pkcs11_field field)
{
    (void)list;
    (void)index;
    (void)field;
    return NULL;
}

void km_pkcs11_list_free(km_pkcs11_list *list)
{
    (void)list;
}

int km_pkcs11_set_pin_callback(km_pkcs11_pin_fn fn, void *arg)
{
    (void)fn;
    (void)arg;
    return none("km_pkcs11_set_pin_callback");
}

int km_pkcs11_set_pin_cache(int seconds)
{
    (void)seconds;
    return none("km_pkcs11_set_pin_cache");
}

int km_pkcs11_pin_cache_clear(void)
{
    return none("km_pkcs11_pin_cache_clear");
}

int km_pkcs11_key_link(km_key **out, km_ctx *ctx, const char *name, const char *cert_id,
                       const km_key_options *opts)
{
    (void)ctx;
    (void)name;
    (void)cert_id;
    (void)opts;
    if (out != NULL)
        *out = NULL;
    return none("km_pkcs11_key_link");
}
