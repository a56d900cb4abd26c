/*
 * pkcs11.c - km/pkcs11.h: token and certificate discovery, the PIN callback
 * and cache, and km_pkcs11_key_link (a smart card's certificate-bound key
 * linked into the vault). The API layer: argument checks, the context and
 * access checks and the catalog import are done here; the token work is the
 * pkcs11 backend's, through backends/pkcs11/p11_card.h. Built with the
 * PKCS#11 backend (backends/pkcs11/p11_none.c otherwise).
 */
#include "core.h"
#include "../../backends/pkcs11/p11_card.h"

#include <string.h>

static int list_make(km_pkcs11_list **out, const char *module, int certs)
{
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_%s: out is NULL", certs ? "certificates" : "tokens");
    *out = NULL;
    if (module == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_%s: module is NULL",
                       certs ? "certificates" : "tokens");
    if ((rc = km_init()) != KM_OK)
        return rc;
    return km__p11card_list(out, module, certs);
}

int km_pkcs11_tokens(km_pkcs11_list **out, const char *module)
{
    return list_make(out, module, 0);
}

int km_pkcs11_certificates(km_pkcs11_list **out, const char *module)
{
    return list_make(out, module, 1);
}

size_t km_pkcs11_list_count(const km_pkcs11_list *list)
{
    return km__p11card_list_count(list);
}

const char *km_pkcs11_list_get(const km_pkcs11_list *list, size_t index, km_pkcs11_field field)
{
    return km__p11card_list_get(list, index, field);
}

void km_pkcs11_list_free(km_pkcs11_list *list)
{
    km__p11card_list_free(list);
}

int km_pkcs11_set_pin_callback(km_pkcs11_pin_fn fn, void *arg)
{
    km__p11card_set_pin_callback(fn, arg);
    return KM_OK;
}

int km_pkcs11_set_pin_cache(int seconds)
{
    if (seconds < -1 || seconds > 86400 * 366)
        return km__err(KM_E_INVALID, "km_pkcs11_set_pin_cache: seconds must be -1, 0 or up to "
                       "one year");
    km__p11card_set_pin_cache(seconds);
    return KM_OK;
}

int km_pkcs11_pin_cache_clear(void)
{
    km__p11card_pin_cache_clear();
    return KM_OK;
}

int km_pkcs11_key_link(km_key **out, km_ctx *ctx, const char *name, const char *cert_id,
                       const km_key_options *opts)
{
    km__backend_inst *be = NULL;
    km_key_options o2 = KM_KEY_OPTIONS_INIT;
    km_key_type type;
    size_t len;
    int rc;

    if (out != NULL)
        *out = NULL;
    KM__REMOTE_NO(ctx, "km_pkcs11_key_link", "a card in this host's reader cannot sign in kmd; link it in kmd's own vault");
    if (ctx == NULL || name == NULL || cert_id == NULL)
        return km__err(KM_E_INVALID, "km_pkcs11_key_link: %s is NULL",
                       ctx == NULL ? "ctx" : name == NULL ? "name" : "cert_id");
    len = strnlen(cert_id, KM__P11CARD_ID_MAX + 1);
    if (len == 0 || len > KM__P11CARD_ID_MAX)
        return km__err(KM_E_INVALID, "km_pkcs11_key_link: cert_id must be 1 to %d bytes",
                       KM__P11CARD_ID_MAX);
    if (opts != NULL) {
        if (opts->version == 0 || opts->version > KM_KEY_OPTIONS_VERSION)
            return km__err(KM_E_INVALID, "km_pkcs11_key_link: opts->version must be 1 to %d",
                           KM_KEY_OPTIONS_VERSION);
        o2.usage = opts->usage;
        o2.flags = opts->flags;
        if (opts->version >= 2) {
            o2.activate_at = opts->activate_at;
            o2.rotate_days = opts->rotate_days;
            o2.protect_days = opts->protect_days;
            o2.process_days = opts->process_days;
            o2.destroy_grace_days = opts->destroy_grace_days;
        }
        if (opts->version >= 3)
            o2.policy = opts->policy;
        if (opts->version >= 4)
            o2.key_id = opts->key_id;
        if (o2.rotate_days != 0)
            return km__err(KM_E_INVALID, "km_pkcs11_key_link: a card key does not rotate "
                           "(rotate_days must be 0)");
    }
    /* refused callers touch no token; the open backend instance holds
     * pkcs11-helper for the certificate look-up */
    if ((rc = km__ctx_check(ctx)) != KM_OK
        || (rc = km__acl_check(ctx, KM__OP_KEY_IMPORT, NULL)) != KM_OK
        || (rc = km__backend_get(ctx, "pkcs11-card", &be)) != KM_OK)
        return rc;
    /* the type comes from the certificate on the token */
    if ((rc = km__p11card_cert_type(cert_id, &type)) != KM_OK)
        return rc;
    o2.protection = "pkcs11-card";
    if (o2.usage == 0)
        o2.usage = km__p11card_usage(type);
    o2.flags &= ~KM_KEY_EXPORTABLE;
    /* no material enters the vault: the reference only (not an import of
     * material under dual control) */
    return km__key_import(out, ctx, name, type, KM_MATERIAL_RAW, (const uint8_t *)cert_id, len,
                          KM_IMPORT_ALLOW_RAW, &o2, 1, NULL, 0);
}
