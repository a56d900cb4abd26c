/* cmd_parity.c - kmctl commands that reach the last public operations without
 * one (issue 23 item 8): audit level show, keyslot add passphrase. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>

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
