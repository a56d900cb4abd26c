/*
 * p11_card.h - what the pkcs11 backend's card side (p11_card.c) offers the
 * API layer (src/pkcs11.c, km/pkcs11.h) and the raw layer (p11_conn.c): token
 * and certificate discovery, the PIN callback and cache, the key type of a
 * certificate, and the raw layer's PIN hook. No PKCS#11 or pkcs11-helper type
 * appears here; the policy, access and catalog work of km_pkcs11_key_link is
 * the API layer's. Internal, not installed.
 */
#ifndef KM_P11_CARD_H
#define KM_P11_CARD_H

#include <stddef.h>
#include <stdint.h>

#include "km/pkcs11.h"

/* The longest serialised certificate id a card key reference holds. */
#define KM__P11CARD_ID_MAX 4096

/* Lists the tokens (certs == 0) or the certificates (certs == 1) of the
 * PKCS#11 module at `module` (only the tokens the module itself shows, not
 * those of other modules p11-kit's proxy adds). *out is freed with
 * km__p11card_list_free. KM_E_INVALID (no module path), KM_E_BACKEND (the
 * module does not load or initialise), KM_E_NOMEM. */
int km__p11card_list(km_pkcs11_list **out, const char *module, int certs);
/* Entries of a list (0 for NULL). */
size_t km__p11card_list_count(const km_pkcs11_list *list);
/* A field of an entry (borrowed, valid until the list is freed); NULL when
 * index or field is out of range. */
const char *km__p11card_list_get(const km_pkcs11_list *list, size_t index,
                                 km_pkcs11_field field);
/* Frees a list; accepts NULL. */
void km__p11card_list_free(km_pkcs11_list *list);

/* The application's PIN callback (NULL: none), the PIN cache period in
 * seconds (-1: until cleared; the caller checked the range), and forgetting
 * every cached PIN. Process-wide, as pkcs11-helper is. */
void km__p11card_set_pin_callback(km_pkcs11_pin_fn fn, void *arg);
void km__p11card_set_pin_cache(int seconds);
void km__p11card_pin_cache_clear(void);

/* The key type of the certificate `cert_id` (a serialised certificate id,
 * NUL-terminated) on its token: ec-p256, ec-p384, rsa-2048 or rsa-3072.
 * Needs an open "pkcs11-card" backend instance (it holds pkcs11-helper).
 * KM_E_NOTFOUND / KM_E_BACKEND (no such certificate), KM_E_CORRUPT (it does
 * not decode), KM_E_UNSUPPORTED (another key type). */
int km__p11card_cert_type(const char *cert_id, km_key_type *type);
/* The usages a card key of `type` can have (sign and verify). */
uint32_t km__p11card_usage(km_key_type type);

/* The raw layer's PIN hook (p11_conn.c): a session on `slot` of the p11-kit
 * function list `function_list` (a CK_FUNCTION_LIST *) is not logged in and
 * no PIN is configured: log the token in through pkcs11-helper with the
 * application's PIN callback. KM_E_AUTH when there is none or it cancels. */
int km__p11card_login(void *function_list, unsigned long slot);

#endif
