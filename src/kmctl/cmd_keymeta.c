/* cmd_keymeta.c - kmctl commands on a key's names and metadata: key list
 * (sorted, filtered), key rename, key alias, key unalias, key describe,
 * key tag, key untag; and the metadata lines of key info. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmctl.h"
#include "kmctl_json.h"

static int write_failed(void)
{
    return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
}

/* ------------------------------------------------------------ key list */

struct list_entry {
    char *name;
    uint8_t id[16];
    km_key_type type;
};

struct list_acc {
    struct list_entry *v;
    size_t n, cap;
    int oom;
};

static int list_one(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    struct list_acc *acc = arg;

    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 16;
        struct list_entry *nv = realloc(acc->v, cap * sizeof *nv);
        if (nv == NULL) {
            acc->oom = 1;
            return 1;
        }
        acc->v = nv;
        acc->cap = cap;
    }
    if ((acc->v[acc->n].name = strdup(name)) == NULL) {
        acc->oom = 1;
        return 1;
    }
    memcpy(acc->v[acc->n].id, id, 16);
    acc->v[acc->n].type = type;
    acc->n++;
    return 0;
}

static int parse_state(const char *s, km_key_state *out)
{
    int st;
    char list[160] = "";
    for (st = 1; km_state_name((km_key_state)st) != NULL; st++) {
        const char *n = km_state_name((km_key_state)st);
        if (strcmp(n, s) == 0) {
            *out = (km_key_state)st;
            return KMCTL_EXIT_OK;
        }
        if (strlen(list) + strlen(n) + 3 < sizeof list) {
            if (list[0] != '\0')
                strcat(list, ", ");
            strcat(list, n);
        }
    }
    return kmctl_error(KMCTL_EXIT_USAGE, "--state: unknown state '%s' (one of: %s)", s, list);
}

/* One key of `key list --json`: name, id, type, and what key info tells of
 * its protection, aliases, tags and description. */
static json_t *list_json_one(struct kmctl *k, const struct list_entry *e)
{
    json_t *o = json_object();
    km_key *key = NULL;
    km_keyinfo *info = NULL;
    const char *tn = km_key_type_name(e->type);
    char hex[33];
    int bad;

    kmctl_hex(e->id, 16, hex);
    bad = o == NULL || kmctl_json_set(o, "name", json_string(e->name)) != 0
          || kmctl_json_set(o, "id", json_string(hex)) != 0
          || kmctl_json_set(o, "type", tn ? json_string(tn) : json_null()) != 0;
    /* the key may be gone or unreadable meanwhile: the listing still shows it */
    if (!bad && km_key_open_id(&key, k->ctx, e->id) == KM_OK && km_key_info(&info, key) == KM_OK)
        bad = kmctl_json_set(o, "protection", json_string(km_keyinfo_protection(info))) != 0
              || kmctl_keymeta_json(o, info) != 0;
    km_keyinfo_free(info);
    km_key_free(key);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int kmctl_cmd_key_list(struct kmctl *k, const struct kmctl_args *a)
{
    struct list_acc acc = { NULL, 0, 0, 0 };
    km_key_filter f = KM_KEY_FILTER_INIT;
    size_t i;
    int rc;

    if (a->val[OPT_TYPE] != NULL && (rc = kmctl_parse_type(a->val[OPT_TYPE], &f.type)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_STATE] != NULL && (rc = parse_state(a->val[OPT_STATE], &f.state)) != KMCTL_EXIT_OK)
        return rc;
    f.protection = a->val[OPT_PROTECTION];
    f.tag = a->val[OPT_TAG];
    if (f.tag != NULL && (f.tag[0] == '\0' || f.tag[0] == '='))
        return kmctl_error(KMCTL_EXIT_USAGE, "--tag: expected TAG or TAG=VALUE");
    rc = km_key_list_filtered(k->ctx, &f, list_one, &acc);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "listing keys");
        goto out;
    }
    if (acc.oom) {
        rc = kmctl_error(KMCTL_EXIT_OTHER, "listing keys: out of memory");
        goto out;
    }
    if (a->val[OPT_JSON] != NULL) {
        json_t *root = json_object(), *keys = json_array();
        int bad = root == NULL || kmctl_json_set(root, "keys", keys) != 0;
        for (i = 0; i < acc.n && !bad; i++) {
            json_t *e = list_json_one(k, &acc.v[i]);
            bad = e == NULL || json_array_append_new(keys, e) != 0;
        }
        if (bad) {
            json_decref(root);
            root = NULL;
        }
        rc = kmctl_json_emit(root);
    } else {
        rc = KMCTL_EXIT_OK;
        for (i = 0; i < acc.n; i++) {
            char hex[33];
            const char *tn = km_key_type_name(acc.v[i].type);
            kmctl_hex(acc.v[i].id, 16, hex);
            if (printf("%s\t%s\t%s\n", acc.v[i].name, tn ? tn : "?", hex) < 0) {
                rc = write_failed();
                break;
            }
        }
    }
out:
    for (i = 0; i < acc.n; i++)
        free(acc.v[i].name);
    free(acc.v);
    return rc;
}

/* ------------------------------------------------ key info: metadata */

int kmctl_keymeta_json(json_t *root, const km_keyinfo *info)
{
    json_t *aliases = json_array(), *tags = json_object();
    const char *d = km_keyinfo_description(info), *pol = km_keyinfo_policy(info);
    uint32_t i, rot, prot, proc, grace, minp, minq;
    int bad;

    km_keyinfo_periods(info, &rot, &prot, &proc, &grace);
    km_keyinfo_window(info, &minp, &minq);
    bad = kmctl_json_set(root, "owner", json_string(km_keyinfo_owner(info))) != 0
          || kmctl_json_set(root, "min_decryption_version", json_integer(minp)) != 0
          || kmctl_json_set(root, "min_encryption_version", json_integer(minq)) != 0
          || kmctl_json_set(root, "rotate_days", json_integer(rot)) != 0
          || kmctl_json_set(root, "protect_days", json_integer(prot)) != 0
          || kmctl_json_set(root, "process_days", json_integer(proc)) != 0
          || kmctl_json_set(root, "destroy_grace_days", json_integer(grace)) != 0
          || kmctl_json_set(root, "policy", pol ? json_loads(pol, 0, NULL) : json_null()) != 0
          || kmctl_json_set(root, "description", d ? json_string(d) : json_null()) != 0
              || kmctl_json_set(root, "aliases", aliases) != 0
              || kmctl_json_set(root, "tags", tags) != 0;

    for (i = 0; !bad && i < km_keyinfo_alias_count(info); i++)
        bad = json_array_append_new(aliases, json_string(km_keyinfo_alias(info, i))) != 0;
    for (i = 0; !bad && i < km_keyinfo_tag_count(info); i++) {
        const char *t, *v;
        bad = km_keyinfo_tag(info, i, &t, &v) != KM_OK || kmctl_json_set(tags, t, json_string(v)) != 0;
    }
    return bad ? -1 : 0;
}

void kmctl_keymeta_text(const km_keyinfo *info)
{
    const char *d = km_keyinfo_description(info), *pol = km_keyinfo_policy(info);
    uint32_t i, n, rot, prot, proc, grace, minp, minq;

    km_keyinfo_periods(info, &rot, &prot, &proc, &grace);
    km_keyinfo_window(info, &minp, &minq);
    printf("owner:       %s\n", km_keyinfo_owner(info));
    if (minp != 0 || minq != 0)
        printf("window:      minimum decryption version %u, encryption version %u (0: none)\n",
               (unsigned)minp, (unsigned)minq);
    printf("rotation:    %s", rot ? "every " : "none\n");
    if (rot)
        printf("%u days\n", (unsigned)rot);
    printf("periods:     protect %u, process %u, destruction grace %u days (0: none)\n",
           (unsigned)prot, (unsigned)proc, (unsigned)grace);
    if (pol != NULL)
        printf("own policy:  %s\n", pol);
    if (d != NULL)
        printf("description: %s\n", d);
    if ((n = km_keyinfo_alias_count(info)) > 0) {
        printf("aliases:     ");
        for (i = 0; i < n; i++)
            printf("%s%s", i ? ", " : "", km_keyinfo_alias(info, i));
        printf("\n");
    }
    if ((n = km_keyinfo_tag_count(info)) > 0) {
        printf("tags:        ");
        for (i = 0; i < n; i++) {
            const char *t, *v;
            if (km_keyinfo_tag(info, i, &t, &v) == KM_OK)
                printf("%s%s=%s", i ? ", " : "", t, v);
        }
        printf("\n");
    }
}

/* ------------------------------------------------ changing the metadata */

static int done(int rc, km_key *key, const char *what, const char *name)
{
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "%s key '%s'", what, name);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_key_rename(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    return done(km_key_rename(key, a->pos[1]), key, "renaming", a->pos[0]);
}

int kmctl_cmd_key_alias(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    rc = km_key_alias_add(key, a->pos[1], a->val[OPT_MOVE] != NULL ? KM_ALIAS_MOVE : 0);
    if (rc == KM_E_EXISTS && a->val[OPT_MOVE] == NULL && strstr(km_error_last()->message, "alias"))
        rc = kmctl_lib_error(rc, "adding the alias '%s' to key '%s' (--move takes it from the other key)",
                             a->pos[1], a->pos[0]);
    else if (rc != KM_OK)
        rc = kmctl_lib_error(rc, "adding an alias to key '%s'", a->pos[0]);
    km_key_free(key);
    return rc;
}

int kmctl_cmd_key_unalias(struct kmctl *k, const struct kmctl_args *a)
{
    int rc = km_key_alias_remove(k->ctx, a->pos[0]);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "removing the alias '%s'", a->pos[0]);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_key_describe(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    return done(km_key_set_description(key, a->pos[1]), key, "describing", a->pos[0]);
}

int kmctl_cmd_key_tag(struct kmctl *k, const struct kmctl_args *a)
{
    const char *eq = strchr(a->pos[1], '=');
    char tag[KM_KEY_TAG_KEY_MAX + 1];
    km_key *key = NULL;
    int rc;

    if (eq == NULL || eq == a->pos[1] || (size_t)(eq - a->pos[1]) > KM_KEY_TAG_KEY_MAX)
        return kmctl_error(KMCTL_EXIT_USAGE, "key tag: expected TAG=VALUE (a tag of 1 to %d "
                                             "characters)", KM_KEY_TAG_KEY_MAX);
    memcpy(tag, a->pos[1], (size_t)(eq - a->pos[1]));
    tag[eq - a->pos[1]] = '\0';
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    return done(km_key_set_tag(key, tag, eq + 1), key, "tagging", a->pos[0]);
}

int kmctl_cmd_key_untag(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    return done(km_key_set_tag(key, a->pos[1], NULL), key, "removing a tag of", a->pos[0]);
}

/* ------------------------------------------------------------ key set */

/* The params of the policy-change request that key set makes (libkm's
 * KM_REQ_POLICY_CHANGE on a key): the policy file's bytes, or the words
 * "deletion-protection=off". */
#define DP_OFF "deletion-protection=off"

int kmctl_key_set_request_params(const struct kmctl_args *a, struct kmctl_buf *pf,
                                 const uint8_t **pp, size_t *plen)
{
    int rc;
    if ((a->val[OPT_POLICY] != NULL) == (a->val[OPT_DELETION_PROTECTION] != NULL))
        return kmctl_error(KMCTL_EXIT_USAGE, "request create key-set: either --policy FILE or "
                                             "--deletion-protection off");
    if (a->val[OPT_DELETION_PROTECTION] != NULL) {
        if (strcmp(a->val[OPT_DELETION_PROTECTION], "off") != 0)
            return kmctl_error(KMCTL_EXIT_USAGE, "request create key-set: only turning deletion "
                                                 "protection off needs approval");
        *pp = (const uint8_t *)DP_OFF;
        *plen = sizeof DP_OFF - 1;
        return KMCTL_EXIT_OK;
    }
    if ((rc = kmctl_read_file(a->val[OPT_POLICY], 1 << 20, pf)) != KMCTL_EXIT_OK)
        return rc;
    *pp = pf->p;
    *plen = pf->len;
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_key_set(struct kmctl *k, const struct kmctl_args *a)
{
    km_key_settings s = KM_KEY_SETTINGS_INIT;
    struct kmctl_buf pol = { NULL, 0, 0 };
    km_key *key = NULL;
    char *text = NULL;
    int rc;

    if (a->val[OPT_ROTATE_EVERY] != NULL) {
        s.fields |= KM_SET_ROTATE_DAYS;
        s.rotate_days = (uint32_t)a->num[OPT_ROTATE_EVERY];
    }
    if (a->val[OPT_USAGE] != NULL) {
        if ((rc = kmctl_parse_usage(a->val[OPT_USAGE], &s.usage)) != KMCTL_EXIT_OK)
            return rc;
        s.fields |= KM_SET_USAGE;
    }
    if (a->val[OPT_NOT_EXPORTABLE] != NULL) {
        s.fields |= KM_SET_EXPORTABLE;
        s.exportable = 0;
    }
    if (a->val[OPT_DELETION_PROTECTION] != NULL) {
        const char *v = a->val[OPT_DELETION_PROTECTION];
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
            return kmctl_error(KMCTL_EXIT_USAGE, "--deletion-protection: on or off, not '%s'", v);
        s.fields |= KM_SET_DELETION_PROTECTION;
        s.deletion_protection = strcmp(v, "on") == 0;
    }
    if (a->val[OPT_POLICY] != NULL) {
        if ((rc = kmctl_read_file(a->val[OPT_POLICY], 1 << 20, &pol)) != KMCTL_EXIT_OK)
            return rc;
        if ((text = malloc(pol.len + 1)) == NULL) {
            kmctl_buf_free(&pol);
            return kmctl_error(KMCTL_EXIT_OTHER, "out of memory");
        }
        size_t n = pol.len;
        memcpy(text, pol.p, n);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\r'
                         || text[n - 1] == '\t'))
            n--; /* a file's last newline is not part of the document */
        text[n] = '\0';
        kmctl_buf_free(&pol);
        if (strlen(text) != n) {
            free(text);
            return kmctl_error(KMCTL_EXIT_USAGE, "--policy: the file holds a NUL byte");
        }
        s.fields |= KM_SET_POLICY;
        s.policy = text;
    }
    if (a->val[OPT_MIN_DECRYPTION] != NULL) {
        s.fields |= KM_SET_MIN_PROCESS_VERSION;
        s.min_process_version = (uint32_t)a->num[OPT_MIN_DECRYPTION];
    }
    if (a->val[OPT_MIN_ENCRYPTION] != NULL) {
        s.fields |= KM_SET_MIN_PROTECT_VERSION;
        s.min_protect_version = (uint32_t)a->num[OPT_MIN_ENCRYPTION];
    }
    if (s.fields == 0) {
        free(text);
        return kmctl_error(KMCTL_EXIT_USAGE, "key set: nothing to change (--rotate-every, --usage, "
                                             "--not-exportable, --policy, --deletion-protection, "
                                             "--min-decryption-version, --min-encryption-version)");
    }
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) == KMCTL_EXIT_OK) {
        rc = km_key_set(key, &s);
        if (rc == KM_E_DENIED && strstr(km_error_last()->message, "approval") != NULL)
            rc = kmctl_lib_error(rc, "changing the settings of key '%s' (ask for approval with "
                                     "kmctl request create key-set --target %s)", a->pos[0], a->pos[0]);
        else
            rc = done(rc, NULL, "changing the settings of", a->pos[0]);
        km_key_free(key);
    }
    free(text);
    return rc;
}

int kmctl_cmd_key_trim(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    uint32_t n = 0;
    int rc = kmctl_open_key(k, a->pos[0], &key);

    if (rc != KMCTL_EXIT_OK)
        return rc;
    rc = km_key_trim(key, a->val[OPT_GRACE] != NULL ? (uint32_t)a->num[OPT_GRACE] : 0, &n);
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "trimming key '%s' (%u version(s) scheduled before the error)",
                               a->pos[0], (unsigned)n);
    return printf("%u\n", (unsigned)n) < 0 ? write_failed() : KMCTL_EXIT_OK;
}

int kmctl_cmd_key_purge(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    return done(km_key_purge(key), key, "purging", a->pos[0]);
}

/* ------------------------------------------------------------ import */

int kmctl_import_target(const struct kmctl_args *a, km_key_options *o, uint8_t id[16])
{
    const char *h = a->val[OPT_KEY_ID];
    size_t i;

    if (h != NULL) {
        for (i = 0; i < 32; i++) {
            char c = h[i];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v < 0)
                break;
            if (i % 2 == 0)
                id[i / 2] = (uint8_t)(v << 4);
            else
                id[i / 2] |= (uint8_t)v;
        }
        if (i != 32 || h[32] != '\0')
            return kmctl_error(KMCTL_EXIT_USAGE, "--key-id: expected 32 hex digits (the id key "
                                                 "info shows)");
        o->key_id = id;
    }
    if (a->val[OPT_VERSION] != NULL) {
        if (a->num[OPT_VERSION] == 0)
            return kmctl_error(KMCTL_EXIT_USAGE, "--version: versions count from 1");
        o->import_version = (uint32_t)a->num[OPT_VERSION];
    }
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------ backup, restore */

int kmctl_cmd_key_backup(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf pub = { NULL, 0, 0 };
    km_secret *pass = NULL;
    size_t pass_len = 0, need = 0, n = 0;
    uint8_t *blob = NULL;
    km_key *key = NULL;
    int rc;

    if ((a->val[OPT_WRAP_WITH] != NULL) == (a->val[OPT_BACKUP_PASS_FILE] != NULL))
        return kmctl_error(KMCTL_EXIT_USAGE, "key backup: either --wrap-with PUBKEY.pem (the "
                                             "receiving vault's wrapping-key) or "
                                             "--backup-passphrase-file FILE");
    if (a->val[OPT_WRAP_WITH] != NULL)
        rc = kmctl_read_file(a->val[OPT_WRAP_WITH], 1u << 16, &pub);
    else
        rc = kmctl_passphrase(a->val[OPT_BACKUP_PASS_FILE], &pass, &pass_len);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        goto out;
    rc = km_key_backup(key, pub.p, pub.len, pass ? km_secret_data(pass) : NULL, pass_len, NULL, 0,
                       &need);
    if (rc == KM_E_BUFFER && (blob = malloc(need)) != NULL)
        rc = km_key_backup(key, pub.p, pub.len, pass ? km_secret_data(pass) : NULL, pass_len, blob,
                           need, &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc == KM_E_BUFFER ? KM_E_NOMEM : rc, "backing up key '%s'", a->pos[0]);
        goto out;
    }
    rc = kmctl_write(blob, n);
out:
    free(blob);
    km_key_free(key);
    km_secret_free(pass);
    kmctl_buf_free(&pub);
    return rc;
}

int kmctl_cmd_key_restore(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf b = { NULL, 0, 0 };
    km_secret *pass = NULL;
    size_t pass_len = 0;
    km_key *key = NULL;
    int rc;

    if ((rc = kmctl_read_file(a->pos[0], 16u << 20, &b)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_BACKUP_PASS_FILE] != NULL
        && (rc = kmctl_passphrase(a->val[OPT_BACKUP_PASS_FILE], &pass, &pass_len)) != KMCTL_EXIT_OK)
        goto out;
    rc = km_key_restore(k->ctx, b.p, b.len, pass ? km_secret_data(pass) : NULL, pass_len,
                        a->val[OPT_NAME], &key);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "restoring the key backup '%s'", a->pos[0]);
        goto out;
    }
    rc = kmctl_print_id(a, km_key_name(key), km_key_id(key));
out:
    km_key_free(key);
    km_secret_free(pass);
    kmctl_buf_free(&b);
    return rc;
}

/* ------------------------------------------------ key info: versions */

int kmctl_keymeta_version_json(json_t *e, const km_version_info *v)
{
    const char *r = v->revoke_reason ? km_revoke_reason_name((km_revoke_reason)v->revoke_reason)
                                     : NULL;
    return kmctl_json_set(e, "revoke_reason", r ? json_string(r) : json_null()) != 0
           || kmctl_json_set(e, "compromise_date", kmctl_json_time(v->compromise_date)) != 0
           || kmctl_json_set(e, "deactivated", kmctl_json_time(v->deactivated)) != 0
           || kmctl_json_set(e, "destroyed", kmctl_json_time(v->destroyed)) != 0 ? -1 : 0;
}

void kmctl_keymeta_versions_text(const km_keyinfo *info)
{
    uint32_t i, n = km_keyinfo_version_count(info);
    for (i = 0; i < n; i++) {
        km_version_info v;
        char when[32];
        if (km_keyinfo_version(info, i, &v, sizeof v) != KM_OK)
            continue;
        if (v.revoke_reason != 0) {
            const char *r = km_revoke_reason_name((km_revoke_reason)v.revoke_reason);
            printf("  version %u revoked: %s", (unsigned)v.version, r ? r : "?");
            if (v.compromise_date != 0) {
                kmctl_time(v.compromise_date, when);
                printf(", compromised at %s", when);
            }
            printf("\n");
        }
        if (v.destroyed != 0) {
            kmctl_time(v.destroyed, when);
            printf("  version %u destroyed at %s\n", (unsigned)v.version, when);
        }
    }
}

/* ------------------------------------------------------------ key grants */

static const struct {
    uint32_t bit;
    const char *name;
} perm_names[] = {
    { KM_PERM_ENCRYPT, "encrypt" }, { KM_PERM_DECRYPT, "decrypt" }, { KM_PERM_SIGN, "sign" },
    { KM_PERM_VERIFY, "verify" },   { KM_PERM_MAC, "mac" },         { KM_PERM_DERIVE, "derive" },
    { KM_PERM_EXPORT, "export" },
    { KM_PERM_AGREE_RAW, "agree-raw" },
};

struct grants_out {
    json_t *arr;             /* --json, or NULL: lines */
    int bad;
};

/* perms as names: appended to pa (a JSON array) when not NULL, else into
 * list ("encrypt,decrypt", at least 128 bytes). Returns -1 when pa failed. */
static int perms_names(uint32_t perms, json_t *pa, char *list)
{
    size_t i;
    int bad = 0;

    list[0] = '\0';
    for (i = 0; i < sizeof perm_names / sizeof perm_names[0]; i++) {
        if (!(perms & perm_names[i].bit))
            continue;
        if (pa != NULL) {
            bad |= json_array_append_new(pa, json_string(perm_names[i].name)) != 0;
        } else {
            strcat(list, list[0] ? "," : "");
            strcat(list, perm_names[i].name);
        }
    }
    return bad ? -1 : 0;
}

static int grant_line(const char *grantee, uint32_t perms, void *arg)
{
    struct grants_out *g = arg;
    char list[128];
    json_t *pa = g->arr ? json_array() : NULL, *e;

    g->bad |= perms_names(perms, pa, list) != 0;
    if (g->arr == NULL) {
        g->bad |= printf("%s\t%s\n", grantee, list[0] ? list : "-") < 0;
        return g->bad;
    }
    e = json_object();
    g->bad |= e == NULL || json_array_append_new(g->arr, e) != 0
              || kmctl_json_set(e, "grantee", json_string(grantee)) != 0
              || kmctl_json_set(e, "perms", pa) != 0;
    return g->bad;
}

/* kmctl key perms NAME [--json]: what this run's principal may do with the
 * key (km_key_perms): "encrypt,decrypt,..." or {"name", "perms": [...]}. */
int kmctl_cmd_key_perms(struct kmctl *k, const struct kmctl_args *a)
{
    char list[128];
    uint32_t perms = 0;
    km_key *key = NULL;
    json_t *root, *pa;
    int rc = kmctl_open_key(k, a->pos[0], &key);

    if (rc != KMCTL_EXIT_OK)
        return rc;
    rc = km_key_perms(key, &perms);
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "reading the permissions on key '%s'", a->pos[0]);
    if (a->val[OPT_JSON] == NULL) {
        (void)perms_names(perms, NULL, list);
        return printf("%s\n", list[0] ? list : "-") < 0 ? write_failed() : KMCTL_EXIT_OK;
    }
    root = json_object();
    pa = json_array();
    if (root == NULL || kmctl_json_set(root, "name", json_string(a->pos[0])) != 0
        || perms_names(perms, pa, list) != 0 || kmctl_json_set(root, "perms", pa) != 0) {
        json_decref(root);
        root = NULL;
    }
    return kmctl_json_emit(root);
}

int kmctl_cmd_key_grants(struct kmctl *k, const struct kmctl_args *a)
{
    struct grants_out g = { NULL, 0 };
    json_t *root = NULL;
    km_key *key = NULL;
    int rc = kmctl_open_key(k, a->pos[0], &key);

    if (rc != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_JSON] != NULL) {
        root = json_object();
        g.arr = json_array();
        if (root == NULL || kmctl_json_set(root, "grants", g.arr) != 0)
            g.bad = 1;
    }
    rc = g.bad ? KM_OK : km_key_grants(key, grant_line, &g);
    km_key_free(key);
    if (rc != KM_OK) {
        json_decref(root);
        return kmctl_lib_error(rc, "listing the grants of key '%s'", a->pos[0]);
    }
    if (a->val[OPT_JSON] != NULL) {
        if (g.bad) {
            json_decref(root);
            root = NULL;
        }
        return kmctl_json_emit(root);
    }
    return g.bad ? write_failed() : KMCTL_EXIT_OK;
}
