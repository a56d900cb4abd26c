/* cmd_backup.c - kmctl backup (a hot, sealed copy of the open vault in one
 * file) and kmctl restore (that file made a vault directory again). */
#include "kmctl.h"

int kmctl_cmd_backup(struct kmctl *k, const struct kmctl_args *a)
{
    int rc = km_vault_backup(k->ctx, a->pos[0]);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "backing up the vault to %s", a->pos[0]);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_restore(struct kmctl *k, const struct kmctl_args *a)
{
    int rc;
    (void)k;
    rc = km_vault_restore(a->pos[0], a->pos[1]);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "restoring %s into %s", a->pos[0], a->pos[1]);
    return KMCTL_EXIT_OK;
}
