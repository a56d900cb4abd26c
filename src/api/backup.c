/* backup.c - km_vault_backup (a consistent copy of an open vault, taken
 * while writers run) and km_vault_restore (a backup made a vault directory
 * again). The file work is the store's (src/store/lmdb_backup.c for LMDB). */
#include "core.h"

int km_vault_backup(km_ctx *ctx, const char *path)
{
    int rc;

    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_backup: ctx is NULL");
    if (path == NULL || path[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_backup: path is NULL or empty");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_BACKUP, NULL)) != KM_OK)
        return rc;
    /* queued data-path entries go into the copy too; the backup itself is
     * recorded before the snapshot, so the copy holds its own entry */
    if ((rc = km_audit_flush(ctx)) != KM_OK
        || (rc = km__audit_event(ctx, KM__OP_BACKUP, NULL, 0, KM_OK, "hot backup")) != KM_OK)
        return rc;
    return km__store_backup(ctx->env, path);
}

int km_vault_restore(const char *backup, const char *dir)
{
    if (backup == NULL || backup[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: backup is NULL or empty");
    if (dir == NULL || dir[0] == '\0')
        return km__err(KM_E_INVALID, "km_vault_restore: dir is NULL or empty");
    return km__store_restore(backup, dir);
}
