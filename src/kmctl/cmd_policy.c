/* cmd_policy.c - kmctl policy show | check | set: the vault policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kmctl.h"

int kmctl_cmd_policy_show(struct kmctl *k, const struct kmctl_args *a)
{
    char *buf = NULL;
    size_t need = 0, n = 0;
    int rc;

    (void)a; /* the policy is a JSON document either way */
    rc = km_policy_get(k->ctx, NULL, 0, &need);
    if (rc != KM_E_BUFFER)
        return kmctl_lib_error(rc, "reading the policy");
    if ((buf = malloc(need)) == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "out of memory");
    rc = km_policy_get(k->ctx, buf, need, &n);
    if (rc != KM_OK) {
        free(buf);
        return kmctl_lib_error(rc, "reading the policy");
    }
    rc = kmctl_write(buf, n);
    if (rc == KMCTL_EXIT_OK && (n == 0 || buf[n - 1] != '\n'))
        rc = kmctl_write("\n", 1);
    free(buf);
    return rc;
}

/* Exit 0 when every key is within the policy, 4 when some are not. */
int kmctl_cmd_policy_check(struct kmctl *k, const struct kmctl_args *a)
{
    km_policy_findings *f = NULL;
    json_t *root = NULL, *arr = NULL;
    size_t i, n;
    int rc;

    if ((rc = km_policy_report(k->ctx, &f)) != KM_OK)
        return kmctl_lib_error(rc, "checking the keys against the policy");
    n = km_policy_findings_count(f);
    if (a->val[OPT_JSON] != NULL) {
        root = json_object();
        arr = json_array();
        if (root == NULL || arr == NULL || json_object_set(root, "out_of_policy", arr) != 0)
            goto oom;
    }
    for (i = 0; i < n; i++) {
        const char *name = NULL, *why = NULL;
        if (km_policy_findings_get(f, i, &name, &why) != KM_OK)
            continue;
        if (root != NULL) {
            json_t *e = json_object();
            if (e == NULL || json_array_append_new(arr, e) != 0
                || json_object_set_new(e, "key", json_string(name)) != 0
                || json_object_set_new(e, "why", json_string(why)) != 0)
                goto oom;
        } else if (printf("%s\t%s\n", name, why) < 0) {
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
        if (rc != KMCTL_EXIT_OK)
            goto out;
    }
    rc = n == 0 ? KMCTL_EXIT_OK : KMCTL_EXIT_DENIED;
    goto out;
oom:
    rc = kmctl_error(KMCTL_EXIT_OTHER, "building the JSON output failed");
out:
    json_decref(arr);
    json_decref(root);
    km_policy_findings_free(f);
    return rc;
}

int kmctl_cmd_policy_set(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf b = { 0 };
    int rc = kmctl_read_file(a->pos[0], 1u << 20, &b);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    rc = km_policy_set(k->ctx, (const char *)b.p, b.len);
    kmctl_buf_free(&b);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "setting the policy from %s", a->pos[0]);
    return KMCTL_EXIT_OK;
}
