/* cmd_lifecycle.c - kmctl commands that move key versions through their lifecycle, and maintain. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kmctl.h"

/* Grace before a scheduled destruction when --grace is not given (days). */

static uint32_t version_of(const struct kmctl_args *a)
{
    return a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
}

static const char *version_text(const struct kmctl_args *a, char buf[32])
{
    if (a->val[OPT_VERSION] == NULL)
        return "the primary version";
    snprintf(buf, 32, "version %u", (unsigned)a->num[OPT_VERSION]);
    return buf;
}

/* Opens the key named by the first argument, applies op, reports its failure. */
static int transition(struct kmctl *k, const struct kmctl_args *a, const char *verb,
                      int (*op)(km_key *, uint32_t))
{
    km_key *key = NULL;
    char vb[32];
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = op(key, version_of(a))) != KM_OK)
        rc = kmctl_lib_error(rc, "%s %s of key '%s'", verb, version_text(a, vb), a->pos[0]);
    else
        rc = KMCTL_EXIT_OK;
    km_key_free(key);
    return rc;
}

int kmctl_cmd_key_activate(struct kmctl *k, const struct kmctl_args *a)
{
    return transition(k, a, "activating", km_key_activate);
}

int kmctl_cmd_key_suspend(struct kmctl *k, const struct kmctl_args *a)
{
    return transition(k, a, "suspending", km_key_suspend);
}

int kmctl_cmd_key_resume(struct kmctl *k, const struct kmctl_args *a)
{
    return transition(k, a, "resuming", km_key_resume);
}

int kmctl_cmd_key_cancel_destroy(struct kmctl *k, const struct kmctl_args *a)
{
    return transition(k, a, "cancelling the destruction of", km_key_cancel_destroy);
}

/* ------------------------------------------------------------ revoke */

/* The KMIP reason names, and "compromise" for key-compromise. */
static int parse_reason(const char *s, km_revoke_reason *out)
{
    if (strcmp(s, "compromise") == 0)
        s = "key-compromise";
    if (km_revoke_reason_from_name(s, out) == KM_OK)
        return KMCTL_EXIT_OK;
    return kmctl_error(KMCTL_EXIT_USAGE,
                       "--reason: unknown reason '%s' (unspecified, key-compromise, ca-compromise, "
                       "affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn)", s);
}

int kmctl_check_key_revoke(const struct kmctl_args *a)
{
    km_revoke_reason r;

    return parse_reason(a->val[OPT_REASON], &r);
}

int kmctl_cmd_key_revoke(struct kmctl *k, const struct kmctl_args *a)
{
    int64_t when = a->val[OPT_COMPROMISE_DATE] != NULL ? a->date[OPT_COMPROMISE_DATE] : 0;
    km_revoke_reason reason;
    km_key *key = NULL;
    char vb[32];
    int rc;

    if ((rc = parse_reason(a->val[OPT_REASON], &reason)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_key_revoke(key, version_of(a), reason, when)) != KM_OK)
        rc = kmctl_lib_error(rc, "revoking %s of key '%s'", version_text(a, vb), a->pos[0]);
    else
        rc = KMCTL_EXIT_OK;
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ destroy */

int kmctl_cmd_key_destroy(struct kmctl *k, const struct kmctl_args *a)
{
    uint32_t grace = a->val[OPT_GRACE] != NULL ? (uint32_t)a->num[OPT_GRACE] : KMCTL_DESTROY_GRACE_DEFAULT;
    km_key *key = NULL;
    char vb[32];
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_key_schedule_destroy(key, version_of(a), grace)) != KM_OK)
        rc = kmctl_lib_error(rc, "scheduling the destruction of %s of key '%s'", version_text(a, vb),
                             a->pos[0]);
    else
        rc = KMCTL_EXIT_OK;
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ maintain */

int kmctl_cmd_maintain(struct kmctl *k, const struct kmctl_args *a)
{
    km_maintain_report *r = NULL;
    json_t *root = NULL, *acts = NULL;
    size_t i, n;
    int rc;

    if ((rc = km_maintain(k->ctx, &r)) != KM_OK)
        return kmctl_lib_error(rc, "maintaining the vault");
    n = km_maintain_report_count(r);
    if (a->val[OPT_JSON] != NULL) {
        root = json_object();
        acts = json_array();
        if (root == NULL || acts == NULL || json_object_set(root, "actions", acts) != 0)
            goto oom;
    }
    for (i = 0; i < n; i++) {
        const char *name = NULL, *action = NULL;
        uint32_t version = 0;
        if ((rc = km_maintain_report_get(r, i, &name, &version, &action)) != KM_OK) {
            rc = kmctl_lib_error(rc, "reading the maintenance report");
            goto out;
        }
        if (root != NULL) {
            json_t *e = json_object();
            if (e == NULL || json_array_append_new(acts, e) != 0 ||
                json_object_set_new(e, "key", json_string(name)) != 0 ||
                json_object_set_new(e, "version", json_integer(version)) != 0 ||
                json_object_set_new(e, "action", json_string(action)) != 0)
                goto oom;
        } else if (printf("%s\t%u\t%s\n", name, (unsigned)version, action) < 0) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
            goto out;
        }
    }
    if (root != NULL) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s == NULL)
            goto oom;
        rc = kmctl_write(s, strlen(s));
        if (rc == KMCTL_EXIT_OK)
            rc = kmctl_write("\n", 1);
        free(s);
    } else {
        rc = KMCTL_EXIT_OK;
    }
    goto out;
oom:
    rc = kmctl_error(KMCTL_EXIT_OTHER, "building the JSON output failed");
out:
    json_decref(acts);
    json_decref(root);
    km_maintain_report_free(r);
    return rc;
}
