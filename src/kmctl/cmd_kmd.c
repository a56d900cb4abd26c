/* cmd_kmd.c - kmctl commands addressed to a kmd (docs/KMD.md) through its
 * socket, --vault kmd:SOCKET: unseal. */
#include "kmctl.h"

#include <stdio.h>
#include <string.h>

#include <km/sys/server.h>

/* kmctl --vault kmd:SOCKET unseal --share-file FILE...: each share to the
 * sealed kmd; prints how far the unseal is. */
int kmctl_cmd_unseal(struct kmctl *k, const struct kmctl_args *a)
{
    const char *sock = k->vault + 4;
    unsigned have = 0, need = 0;
    size_t i;
    int rc;
    (void)a;

    for (i = 0; i < k->nshares; i++) {
        if ((rc = km_server_unseal(sock, k->shares[i], &have, &need)) != KM_OK)
            return kmctl_lib_error(rc, "unseal: share %zu", i + 1);
    }
    if (have >= need)
        printf("unsealed (%u of %u shares)\n", need, need);
    else
        printf("sealed: %u of %u shares received\n", have, need);
    return KMCTL_EXIT_OK;
}
