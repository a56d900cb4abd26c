/* cmd_backup.c - kmctl backup (a hot, sealed copy of the open vault in one
 * file), kmctl restore (that file made a vault directory again) and kmctl
 * vault copy (the vault copied into another store: LMDB <-> etcd). */
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

/* kmctl vault copy SRC DST: SRC is the open vault (main.c opens it); the
 * destination's TLS files for etcd come from the same environment as the
 * source's (KM_ETCD_CA, KM_ETCD_CERT, KM_ETCD_KEY). */
int kmctl_cmd_vault_copy(struct kmctl *k, const struct kmctl_args *a)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    int rc;

    kmctl_etcd_tls(&o);
    rc = km_vault_copy(k->ctx, a->pos[1], &o);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "copying the vault %s to %s", a->pos[0], a->pos[1]);
    return KMCTL_EXIT_OK;
}
