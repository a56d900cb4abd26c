/* cmd_parity.c - kmctl commands that reach the last public operations without
 * one (issue 23 item 8): audit level show, keyslot add passphrase,
 * backend add pkcs11-card, backend certificates, key link. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km/sys/backend.h>

#include "kmctl.h"
#include "kmctl_json.h"

static const char *const level_names[] = { "none", "counters", "every" };

/* kmctl audit level show [--json]: the data-path audit level (km_audit_get_level). */
int kmctl_cmd_audit_level_show(struct kmctl *k, const struct kmctl_args *a)
{
    km_audit_level lv = KM_AUDIT_DATA_COUNTERS;
    const char *name;
    json_t *o;
    int rc;

    if ((rc = km_audit_get_level(k->ctx, &lv)) != KM_OK)
        return kmctl_lib_error(rc, "reading the audit level");
    name = (unsigned)lv < sizeof level_names / sizeof level_names[0] ? level_names[lv] : "unknown";
    if (a->val[OPT_JSON] == NULL)
        return printf("%s\n", name) < 0 ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed")
                                        : KMCTL_EXIT_OK;
    o = json_object();
    if (o != NULL && kmctl_json_set(o, "level", json_string(name)) != 0) {
        json_decref(o);
        o = NULL;
    }
    return kmctl_json_emit(o);
}

/* kmctl keyslot add passphrase --new-passphrase-file FILE [--kdf-cost N]: one
 * more owner passphrase opens the vault (km_vault_add_passphrase; under the
 * policy's principal-change dual control). */
int kmctl_cmd_keyslot_add_passphrase(struct kmctl *k, const struct kmctl_args *a)
{
    km_secret *pass = NULL;
    size_t len = 0;
    int rc;

    if ((rc = kmctl_passphrase(a->val[OPT_NEW_PASS_FILE], &pass, &len)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_vault_add_passphrase(k->ctx, km_secret_data(pass), len,
                                 a->val[OPT_KDF_COST] != NULL ? (uint32_t)a->num[OPT_KDF_COST] : 0);
    km_secret_free(pass);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "adding a passphrase keyslot");
    return KMCTL_EXIT_OK;
}

/* kmctl backend add pkcs11-card --module PATH: the module key link uses. */
int kmctl_cmd_backend_add_card(struct kmctl *k, const struct kmctl_args *a)
{
    char config[4096];
    int rc;

    if ((size_t)snprintf(config, sizeof config, "module=%s", a->val[OPT_MODULE]) >= sizeof config)
        return kmctl_error(KMCTL_EXIT_USAGE, "--module: the path is too long");
    if ((rc = km_vault_backend_set(k->ctx, "pkcs11-card", config)) != KM_OK)
        return kmctl_lib_error(rc, "registering the pkcs11-card module '%s'", a->val[OPT_MODULE]);
    return KMCTL_EXIT_OK;
}

/* kmctl backend certificates --module PATH [--json]: the certificate-bound
 * keys of the module's tokens (km_pkcs11_certificates), one per line, or
 * {"certificates": [{"id", "label", "token"}, ...]}. */
int kmctl_cmd_backend_certificates(struct kmctl *k, const struct kmctl_args *a)
{
    km_pkcs11_list *l = NULL;
    json_t *root = NULL, *arr = NULL;
    size_t i;
    int rc, bad = 0;

    (void)k;
    if ((rc = km_pkcs11_certificates(&l, a->val[OPT_MODULE])) != KM_OK)
        return kmctl_lib_error(rc, "listing the certificates of '%s'", a->val[OPT_MODULE]);
    if (a->val[OPT_JSON] != NULL) {
        root = json_object();
        arr = json_array();
        bad = root == NULL || kmctl_json_set(root, "certificates", arr) != 0;
    }
    for (i = 0; i < km_pkcs11_list_count(l) && !bad; i++) {
        const char *id = km_pkcs11_list_get(l, i, KM_PKCS11_ID);
        const char *label = km_pkcs11_list_get(l, i, KM_PKCS11_LABEL);
        const char *token = km_pkcs11_list_get(l, i, KM_PKCS11_TOKEN_LABEL);
        json_t *e;

        label = label != NULL ? label : "";
        token = token != NULL ? token : "";
        if (root == NULL) {
            bad = printf("%s\t%s\t%s\n", id, label, token) < 0;
            continue;
        }
        e = json_object();
        bad = e == NULL || json_array_append_new(arr, e) != 0
              || kmctl_json_set(e, "id", json_string(id)) != 0
              || kmctl_json_set(e, "label", json_string(label)) != 0
              || kmctl_json_set(e, "token", json_string(token)) != 0;
    }
    km_pkcs11_list_free(l);
    if (root != NULL) {
        if (bad) {
            json_decref(root);
            root = NULL;
        }
        return kmctl_json_emit(root);
    }
    return bad ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed") : KMCTL_EXIT_OK;
}

/* kmctl key link NAME --cert-id ID [--usage LIST] [--json]: a card's
 * certificate-bound private key as a vault key (km_pkcs11_key_link; the
 * module from backend add pkcs11-card, the PIN from KM_PKCS11_PIN). */
int kmctl_cmd_key_link(struct kmctl *k, const struct kmctl_args *a)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *key = NULL;
    int rc;

    if (a->val[OPT_USAGE] != NULL && (rc = kmctl_parse_usage(a->val[OPT_USAGE], &o.usage))
                                         != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_pkcs11_key_link(&key, k->ctx, a->pos[0], a->val[OPT_CERT_ID], &o)) != KM_OK)
        return kmctl_lib_error(rc, "linking the card key '%s'", a->pos[0]);
    rc = kmctl_print_id(a, a->pos[0], km_key_id(key));
    km_key_free(key);
    return rc;
}

/* The PIN of a card key (pkcs11-card: sign with key link's keys) comes from
 * $KM_PKCS11_PIN, as the other PKCS#11 PINs of kmctl; given once: a PIN the
 * card refused is not offered again (no loop can lock the card). */
static int env_pin(void *arg, const char *token_label, unsigned retry, char *pin, size_t cap)
{
    const char *p = getenv("KM_PKCS11_PIN");

    (void)arg;
    (void)token_label;
    if (retry > 0 || p == NULL || p[0] == '\0' || strlen(p) + 1 > cap)
        return -1;
    memcpy(pin, p, strlen(p) + 1);
    return 0;
}

void kmctl_card_pin(void)
{
    const char *p = getenv("KM_PKCS11_PIN");

    if (p != NULL && p[0] != '\0')
        (void)km_pkcs11_set_pin_callback(env_pin, NULL); /* KM_E_UNSUPPORTED without PKCS#11 */
}

/* ------------------------------------------------------------ --json of listings */

/* kmctl backend list [--json]: {"backends": [NAME, ...]}; the lines otherwise. */
int kmctl_cmd_backends_json(struct kmctl *k, const struct kmctl_args *a)
{
    char names[32][KM_BACKEND_NAME_MAX + 1];
    json_t *root, *arr;
    size_t i, n = 0;
    int rc, bad;

    if (a->val[OPT_JSON] == NULL)
        return kmctl_cmd_backend_list(k, a);
    if ((rc = km_backend_names(names, 32, &n)) != KM_OK)
        return kmctl_lib_error(rc, "listing the backends");
    root = json_object();
    arr = json_array();
    bad = root == NULL || kmctl_json_set(root, "backends", arr) != 0;
    for (i = 0; i < n && i < 32 && !bad; i++)
        bad = json_array_append_new(arr, json_string(names[i])) != 0;
    if (bad) {
        json_decref(root);
        root = NULL;
    }
    return kmctl_json_emit(root);
}

/* kmctl backend tokens --module PATH [--json]: {"tokens": [{"id", "label"}, ...]}. */
int kmctl_cmd_tokens_json(struct kmctl *k, const struct kmctl_args *a)
{
    km_pkcs11_list *l = NULL;
    json_t *root, *arr;
    size_t i;
    int rc, bad;

    if (a->val[OPT_JSON] == NULL)
        return kmctl_cmd_backend_tokens(k, a);
    if ((rc = km_pkcs11_tokens(&l, a->val[OPT_MODULE])) != KM_OK)
        return kmctl_lib_error(rc, "listing the module's tokens");
    root = json_object();
    arr = json_array();
    bad = root == NULL || kmctl_json_set(root, "tokens", arr) != 0;
    for (i = 0; i < km_pkcs11_list_count(l) && !bad; i++) {
        json_t *e = json_object();
        bad = e == NULL || json_array_append_new(arr, e) != 0
              || kmctl_json_set(e, "id", json_string(km_pkcs11_list_get(l, i, KM_PKCS11_ID))) != 0
              || kmctl_json_set(e, "label", json_string(km_pkcs11_list_get(l, i, KM_PKCS11_LABEL)))
                     != 0;
    }
    km_pkcs11_list_free(l);
    if (bad) {
        json_decref(root);
        root = NULL;
    }
    return kmctl_json_emit(root);
}

/* kmctl version --json: {"kmctl": VERSION, "libkm": VERSION}. */
int kmctl_version_json(const char *kmctl_version, const char *libkm_version)
{
    json_t *o = json_object();

    if (o != NULL && (kmctl_json_set(o, "kmctl", json_string(kmctl_version)) != 0
                      || kmctl_json_set(o, "libkm", json_string(libkm_version)) != 0)) {
        json_decref(o);
        o = NULL;
    }
    return kmctl_json_emit(o);
}
