/* cmd_ops.c - kmctl commands of the operations added by issue 23: random. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdlib.h>
#include <string.h>

#include "kmctl.h"

/* ------------------------------------------------------------- random */

int kmctl_cmd_random(struct kmctl *k, const struct kmctl_args *a)
{
    uint64_t n = 0;
    uint8_t *buf = NULL;
    char *hex = NULL;
    int rc;

    if (kmctl_parse_uint(a->pos[0], KM_RANDOM_MAX, &n) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "random: N must be 1 to %u bytes, not '%s'",
                           (unsigned)KM_RANDOM_MAX, a->pos[0]);
    buf = malloc((size_t)n);
    if (buf == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "random: out of memory");
    rc = km_random(k->ctx, a->val[OPT_PROTECTION], buf, (size_t)n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "drawing %llu random bytes from %s", (unsigned long long)n,
                             a->val[OPT_PROTECTION] != NULL ? a->val[OPT_PROTECTION]
                                                            : "the DRBG");
        goto out;
    }
    if (a->val[OPT_HEX] != NULL) {
        hex = malloc(2 * (size_t)n + 2);
        if (hex == NULL) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "random: out of memory");
            goto out;
        }
        kmctl_hex(buf, (size_t)n, hex);
        hex[2 * n] = '\n';
        rc = kmctl_write(hex, 2 * (size_t)n + 1);
    } else {
        rc = a->val[OPT_TEXT] != NULL ? kmctl_text_write(buf, (size_t)n)
                                      : kmctl_write(buf, (size_t)n);
    }
out:
    if (buf != NULL)
        km_memzero(buf, (size_t)n);
    if (hex != NULL)
        km_memzero(hex, 2 * (size_t)n + 2);
    free(buf);
    free(hex);
    return rc;
}
