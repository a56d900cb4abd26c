/* key.c - the key API of include/km/key.h that works on a handle or a type:
 * key-type names, the handle's accessors and km_key_free, rotation,
 * information, public-key export. Creating, importing, opening and listing
 * keys, and the key objects themselves, are src/core/key.c. */
#include "core.h"
#include "remote.h"
#include "km/sys/server.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(offsetof(km_version_info, revoke_reason) == KM_VERSION_INFO_SIZE_V1,
               "KM_VERSION_INFO_SIZE_V1 is the size before the appended fields");


/* ------------------------------------------------------------- key types */

const char *km_key_type_name(km_key_type type)
{
    return km__type_name(type);
}

int km_key_type_from_name(const char *name, km_key_type *out)
{
    const km__keytype *kt;
    if (name == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_key_type_from_name: %s is NULL",
                       name == NULL ? "name" : "out");
    if ((kt = km__keytype_by_name(name)) == NULL)
        return km__err(KM_E_UNSUPPORTED, "unknown key type (expected e.g. aes-256-gcm, ec-p256)");
    *out = kt->id;
    return KM_OK;
}

/* ------------------------------------------------------------ handles */

void km_key_free(km_key *key)
{
    if (key == NULL)
        return;
    km__kobj_unref(key->k);
    free(key);
}

const char *km_key_name(const km_key *key)
{
    const char *n;
    if (key == NULL)
        return NULL;
    /* a rename replaces the pointer under the write lock (the old string
     * lives as long as the key object) */
    pthread_rwlock_rdlock(&key->k->lock);
    n = key->k->name;
    pthread_rwlock_unlock(&key->k->lock);
    return n;
}

const uint8_t *km_key_id(const km_key *key)
{
    return key ? key->k->id : NULL;
}

km_key_type km_key_get_type(const km_key *key)
{
    return key ? key->k->type : (km_key_type)0;
}

/* --------------------------------------------------------------- rotate */

int km_key_rotate(km_key *key, uint32_t *new_version)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_ROTATE, key, new_version);
    km__kobj *k;
    int rc;

    if (new_version != NULL)
        *new_version = 0;
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_rotate: key is NULL");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(k->ctx, KM__OP_KEY_ROTATE, k)) != KM_OK)
        return rc;
    return km__kobj_rotate(k, new_version);
}

/* ----------------------------------------------------------------- info */

struct km_keyinfo {
    char *name;
    uint8_t id[16];
    km_key_type type;
    uint32_t usage, flags, primary, nvers;
    char protection[32];
    int64_t created;
    km_version_info *vers;
    km__keymeta meta;   /* description, aliases, tags */
    uint32_t rotate_days, protect_days, process_days, grace_days;
    uint32_t min_process, min_protect;
    char *policy;       /* the key's own, or NULL */
    char owner[72];
};

int km_key_info(km_keyinfo **out, km_key *key)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_INFO, out, key);
    struct km_keyinfo *info;
    km__kobj *k;
    uint32_t i;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_key_info: out is NULL");
    *out = NULL;
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_info: key is NULL");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if ((rc = km__kobj_refresh(k, 1)) != KM_OK)
        return rc;
    info = calloc(1, sizeof *info);
    if (info == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    pthread_rwlock_rdlock(&k->lock);
    info->name = strdup(k->name);
    info->vers = calloc(k->nvers, sizeof *info->vers);
    if (info->name == NULL || info->vers == NULL) {
        pthread_rwlock_unlock(&k->lock);
        km_keyinfo_free(info);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    memcpy(info->id, k->id, 16);
    info->type = k->type;
    info->usage = k->usage;
    info->flags = k->flags;
    info->primary = km__primary(k, km__now(k->ctx));
    info->nvers = k->nvers;
    memcpy(info->protection, k->protection, sizeof info->protection);
    info->created = k->created;
    info->rotate_days = k->rotate_days;
    info->protect_days = k->protect_days;
    info->process_days = k->process_days;
    info->grace_days = k->grace_days;
    info->min_process = k->min_process;
    info->min_protect = k->min_protect;
    if (k->policy_json != NULL && (info->policy = strdup(k->policy_json)) == NULL) {
        pthread_rwlock_unlock(&k->lock);
        km_keyinfo_free(info);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    for (i = 0; i < k->nvers; i++) {
        km__ver *v = k->vers[i];
        km_version_info *o = &info->vers[i];
        o->version = v->version;
        o->state = v->state;
        o->created = v->created;
        o->activated = v->activated;
        o->protect_stop = v->protect_stop;
        o->process_stop = v->process_stop;
        o->destroy_after = v->destroy_after;
        o->invocations = atomic_load(&v->reserved_seen);
        /* persisted, plus this process's not yet written (km__kobj_release_counters) */
        o->bytes = atomic_load(&v->bytes_seen) + km__ver_bytes_pending(v);
        o->revoke_reason = v->revoke_reason;
        o->compromise_date = v->compromise_date;
        o->deactivated = v->deactivated;
        o->destroyed = v->destroyed;
    }
    pthread_rwlock_unlock(&k->lock);
    if (k->session)
        snprintf(info->owner, sizeof info->owner, "owner");
    else if ((rc = km__key_owner_name(k->ctx, k->id, info->owner, sizeof info->owner)) != KM_OK) {
        km_keyinfo_free(info);
        return rc;
    }
    if ((rc = km__key_meta_read(k, &info->meta)) != KM_OK) {
        km_keyinfo_free(info);
        return rc;
    }
    *out = info;
    return KM_OK;
}

void km_keyinfo_free(km_keyinfo *info)
{
    if (info == NULL)
        return;
    free(info->name);
    free(info->vers);
    km__keymeta_free(&info->meta);
    free(info->policy);
    free(info);
}

const char *km_keyinfo_name(const km_keyinfo *i) { return i ? i->name : NULL; }
const uint8_t *km_keyinfo_id(const km_keyinfo *i) { return i ? i->id : NULL; }
km_key_type km_keyinfo_type(const km_keyinfo *i) { return i ? i->type : (km_key_type)0; }
uint32_t km_keyinfo_usage(const km_keyinfo *i) { return i ? i->usage : 0; }
uint32_t km_keyinfo_flags(const km_keyinfo *i) { return i ? i->flags : 0; }
const char *km_keyinfo_protection(const km_keyinfo *i) { return i ? i->protection : NULL; }
int64_t km_keyinfo_created(const km_keyinfo *i) { return i ? i->created : 0; }
uint32_t km_keyinfo_primary(const km_keyinfo *i) { return i ? i->primary : 0; }
uint32_t km_keyinfo_version_count(const km_keyinfo *i) { return i ? i->nvers : 0; }

int km_keyinfo_version(const km_keyinfo *info, uint32_t index, km_version_info *out,
                       size_t out_size)
{
    if (info == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_keyinfo_version: %s is NULL",
                       info == NULL ? "info" : "out");
    if (out_size < KM_VERSION_INFO_SIZE_V1)
        return km__err(KM_E_INVALID, "km_keyinfo_version: out_size is smaller than the first "
                                     "km_version_info");
    if (index >= info->nvers)
        return km__err(KM_E_INVALID, "km_keyinfo_version: index %u is past the last version",
                       index);
    memcpy(out, &info->vers[index], out_size < sizeof *out ? out_size : sizeof *out);
    return KM_OK;
}

/* ---------------------------------------------------------- public key */

int km_key_public_export(km_key *key, uint32_t version, km_material_format format,
                         uint8_t *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_PUBLIC_EXPORT, key, version, format, out, out_cap, out_len);
    uint8_t der[4096];
    size_t der_len = 0, need;
    km__kobj *k;
    km__ver *v = NULL;
    void *obj = NULL;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_key_public_export: out_len is NULL");
    *out_len = 0;
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_public_export: key is NULL");
    if (format != KM_MATERIAL_SPKI_DER && format != KM_MATERIAL_PEM && format != KM_MATERIAL_JWK)
        return km__err(KM_E_INVALID, "km_key_public_export: format must be SPKI_DER, PEM or JWK");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (km__type_is_symmetric(k->type))
        return km__err(KM_E_UNSUPPORTED, "km_key_public_export: a symmetric key has no public part");
    if (k->be->ops.public_key == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot export public keys", k->be->ops.name);
    pthread_rwlock_rdlock(&k->lock);
    if (version == 0)
        version = k->primary ? k->primary : k->nvers;
    if (version == 0 || version > k->nvers) {
        pthread_rwlock_unlock(&k->lock);
        return km__err(KM_E_NOTFOUND, "km_key_public_export: no version %u", version);
    }
    v = k->vers[version - 1];
    if (v->state == KM_STATE_DESTROYED) {
        pthread_rwlock_unlock(&k->lock);
        return km__err(KM_E_STATE, "km_key_public_export: version %u is destroyed", version);
    }
    rc = km__ver_obj(k, v, &obj);
    if (rc == KM_OK)
        rc = k->be->ops.public_key(obj, der, sizeof der, &der_len);
    pthread_rwlock_unlock(&k->lock);
    if (rc != KM_OK)
        return rc;
    if (format == KM_MATERIAL_JWK)
        return km__pkey_jwk(der, der_len, (char *)out, out == NULL ? 0 : out_cap, out_len);
    if (format == KM_MATERIAL_SPKI_DER) {
        *out_len = der_len;
        if (out == NULL || out_cap < der_len)
            return km__err(KM_E_BUFFER, "km_key_public_export: needs %zu bytes", der_len);
        memcpy(out, der, der_len);
        return KM_OK;
    }
    /* PEM: 64-character lines of base64 between the RFC 7468 labels. */
    {
        static const char head[] = "-----BEGIN PUBLIC KEY-----\n";
        static const char tail[] = "-----END PUBLIC KEY-----\n";
        size_t lines = (der_len + 47) / 48, off = 0, i;
        need = sizeof head - 1 + (der_len + 2) / 3 * 4 + lines + sizeof tail - 1;
        *out_len = need;
        if (out == NULL || out_cap < need + 1)
            return km__err(KM_E_BUFFER, "km_key_public_export: needs %zu bytes", need + 1);
        memcpy(out, head, sizeof head - 1);
        off = sizeof head - 1;
        for (i = 0; i < der_len; i += 48) {
            off += km__b64_encode(der + i, der_len - i < 48 ? der_len - i : 48, (char *)out + off);
            out[off++] = '\n';
        }
        memcpy(out + off, tail, sizeof tail - 1);
        off += sizeof tail - 1;
        out[off] = '\0';
        *out_len = off;
    }
    return KM_OK;
}


/* ------------------------------------------------- names and metadata */

/* The checks of every change of a key after creation: the handle, a key of
 * the vault (not a session key), the access rule of `op`. */
static int stored_key(const char *fn, km_key *key, int op, km__kobj **k)
{
    int rc;
    if (key == NULL)
        return km__err(KM_E_INVALID, "%s: key is NULL", fn);
    if ((rc = km__key_use(key, k)) != KM_OK)
        return rc;
    if ((*k)->session)
        return km__err(KM_E_UNSUPPORTED, "%s: a session key is not in the vault", fn);
    return km__acl_check((*k)->ctx, op, *k);
}

static int meta_use(const char *fn, km_key *key, km__kobj **k)
{
    return stored_key(fn, key, KM__OP_KEY_META, k);
}

int km_key_rename(km_key *key, const char *new_name)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_RENAME, key, new_name);
    km__kobj *k;
    int rc = meta_use("km_key_rename", key, &k);
    return rc != KM_OK ? rc : km__key_rename(k, new_name);
}

int km_key_alias_add(km_key *key, const char *alias, uint32_t flags)
{
    KM__REMOTE_KEY(key, KM__KC_ALIAS_ADD, key, alias, flags);
    km__kobj *k;
    int rc = meta_use("km_key_alias_add", key, &k);
    if (rc != KM_OK)
        return rc;
    if (flags & ~KM_ALIAS_MOVE)
        return km__err(KM_E_INVALID, "km_key_alias_add: flags has unknown bits");
    return km__key_alias_add(k, alias, (flags & KM_ALIAS_MOVE) != 0);
}

int km_key_alias_remove(km_ctx *ctx, const char *alias)
{
    KM__REMOTE(ctx, KM__KC_ALIAS_REMOVE, alias);
    int rc;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_key_alias_remove: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__acl_check(ctx, KM__OP_KEY_META, NULL)) != KM_OK)
        return rc;
    return km__key_alias_remove(ctx, alias);
}

int km_key_set_description(km_key *key, const char *text)
{
    KM__REMOTE_KEY(key, KM__KC_SET_DESCRIPTION, key, text);
    km__kobj *k;
    int rc = meta_use("km_key_set_description", key, &k);
    return rc != KM_OK ? rc : km__key_describe(k, text);
}

int km_key_set_tag(km_key *key, const char *tag, const char *value)
{
    KM__REMOTE_KEY(key, KM__KC_SET_TAG, key, tag, value);
    km__kobj *k;
    int rc = meta_use("km_key_set_tag", key, &k);
    return rc != KM_OK ? rc : km__key_tag_set(k, tag, value);
}

const char *km_keyinfo_description(const km_keyinfo *i) { return i ? i->meta.description : NULL; }
uint32_t km_keyinfo_alias_count(const km_keyinfo *i) { return i ? (uint32_t)i->meta.naliases : 0; }
uint32_t km_keyinfo_tag_count(const km_keyinfo *i) { return i ? (uint32_t)i->meta.ntags : 0; }

const char *km_keyinfo_alias(const km_keyinfo *info, uint32_t index)
{
    return info != NULL && index < info->meta.naliases ? info->meta.aliases[index] : NULL;
}

int km_keyinfo_tag(const km_keyinfo *info, uint32_t index, const char **tag, const char **value)
{
    if (info == NULL || tag == NULL || value == NULL)
        return km__err(KM_E_INVALID, "km_keyinfo_tag: an argument is NULL");
    if (index >= info->meta.ntags)
        return km__err(KM_E_INVALID, "km_keyinfo_tag: index %u is past the last tag", index);
    *tag = info->meta.tag_keys[index];
    *value = info->meta.tag_values[index];
    return KM_OK;
}

int km_key_list_filtered(km_ctx *ctx, const km_key_filter *filter, km_key_list_fn fn, void *arg)
{
    KM__REMOTE(ctx, KM__KC_KEY_LIST_FILTERED, filter, fn, arg);
    int rc;
    if (ctx == NULL || fn == NULL)
        return km__err(KM_E_INVALID, "km_key_list_filtered: %s is NULL", ctx == NULL ? "ctx" : "fn");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if (filter != NULL) {
        if (filter->version != KM_KEY_FILTER_VERSION)
            return km__err(KM_E_INVALID, "km_key_list_filtered: filter->version %u is not "
                                         "supported", filter->version);
        if (filter->type != 0 && km_key_type_name(filter->type) == NULL)
            return km__err(KM_E_INVALID, "km_key_list_filtered: unknown key type %d",
                           (int)filter->type);
        if (filter->state != 0 && km_state_name(filter->state) == NULL)
            return km__err(KM_E_INVALID, "km_key_list_filtered: unknown state %d",
                           (int)filter->state);
        if (filter->tag != NULL && (filter->tag[0] == '\0' || filter->tag[0] == '='))
            return km__err(KM_E_INVALID, "km_key_list_filtered: filter->tag is empty");
    }
    return km__key_list_filtered(ctx, filter, fn, arg);
}

int km_key_set(km_key *key, const km_key_settings *s)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_SET, key, s);
    km__kobj *k;
    size_t pl;
    int rc;

    if (s == NULL)
        return km__err(KM_E_INVALID, "km_key_set: settings is NULL");
    if (s->version != KM_KEY_SETTINGS_VERSION)
        return km__err(KM_E_INVALID, "km_key_set: settings->version %u is not supported",
                       s->version);
    if (s->fields == 0 || (s->fields & ~(KM_SET_ROTATE_DAYS | KM_SET_USAGE | KM_SET_EXPORTABLE
                                          | KM_SET_POLICY | KM_SET_DELETION_PROTECTION
                                          | KM_SET_MIN_PROCESS_VERSION
                                          | KM_SET_MIN_PROTECT_VERSION)))
        return km__err(KM_E_INVALID, "km_key_set: settings->fields is empty or has unknown bits");
    if ((s->fields & KM_SET_ROTATE_DAYS) && s->rotate_days > 36500)
        return km__err(KM_E_INVALID, "a rotation period is at most 36500 days");
    if (s->fields & KM_SET_POLICY) {
        pl = s->policy != NULL ? strnlen(s->policy, KM__KEY_POLICY_MAX + 1) : 0;
        if (pl == 0 || pl > KM__KEY_POLICY_MAX)
            return km__err(KM_E_INVALID, "a key's policy is 1 to %d bytes of JSON",
                           KM__KEY_POLICY_MAX);
    }
    if ((rc = meta_use("km_key_set", key, &k)) != KM_OK)
        return rc;
    return km__key_settings(k, s);
}

void km_keyinfo_periods(const km_keyinfo *i, uint32_t *rotate_days, uint32_t *protect_days,
                        uint32_t *process_days, uint32_t *grace_days)
{
    if (rotate_days != NULL)
        *rotate_days = i ? i->rotate_days : 0;
    if (protect_days != NULL)
        *protect_days = i ? i->protect_days : 0;
    if (process_days != NULL)
        *process_days = i ? i->process_days : 0;
    if (grace_days != NULL)
        *grace_days = i ? i->grace_days : 0;
}

const char *km_keyinfo_policy(const km_keyinfo *i) { return i ? i->policy : NULL; }

void km_keyinfo_window(const km_keyinfo *i, uint32_t *min_process_version,
                       uint32_t *min_protect_version)
{
    if (min_process_version != NULL)
        *min_process_version = i ? i->min_process : 0;
    if (min_protect_version != NULL)
        *min_protect_version = i ? i->min_protect : 0;
}

int km_key_trim(km_key *key, uint32_t grace_days, uint32_t *count)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_TRIM, key, grace_days, count);
    km__kobj *k;
    int rc;

    if (count != NULL)
        *count = 0;
    if (grace_days > 3650)
        return km__err(KM_E_INVALID, "km_key_trim: a grace period is at most 3650 days");
    if ((rc = stored_key("km_key_trim", key, KM__OP_KEY_DESTROY, &k)) != KM_OK)
        return rc;
    return km__key_trim(k, grace_days, count);
}

int km_key_purge(km_key *key)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_PURGE, key);
    km__kobj *k;
    int rc;

    if ((rc = stored_key("km_key_purge", key, KM__OP_KEY_DESTROY, &k)) != KM_OK)
        return rc;
    if ((rc = km__key_purge(k)) != KM_OK)
        return rc;
    (void)km__kobj_refresh(k, 1); /* marks the object removed */
    km_error_clear();
    return KM_OK;
}

const char *km_keyinfo_owner(const km_keyinfo *i) { return i ? i->owner : NULL; }

/* ------------------------------------------------ key info through kmd */
/* The snapshot kmd sends for km_key_info (src/kmd/vendor.c, put_keyinfo;
 * docs/KMD.md): a Structure of, in order, name, id, type, usage, flags,
 * protection, created, primary, the four periods, the window's two
 * minimums, policy (or false), owner, description (or false), a Structure of
 * aliases, a Structure of tags (key, value, key, value, ...) and a Structure
 * of versions (each a Structure of its 13 numbers in km_version_info's
 * order). */

static int ri_child(const km__ttlv_tree *t, int st, int n)
{
    int c;
    if (st < 0 || t->items[st].type != KM__TTLV_STRUCTURE)
        return -1;
    for (c = t->items[st].first; c >= 0 && n > 0; c = t->items[c].next)
        n--;
    return c;
}

static int64_t ri_long(const km__ttlv_tree *t, int st, int n, int *bad)
{
    int c = ri_child(t, st, n);
    uint64_t v = 0;
    int i;
    if (c < 0 || t->items[c].type != KM__TTLV_LONG) {
        *bad = 1;
        return 0;
    }
    for (i = 0; i < 8; i++)
        v = v << 8 | t->items[c].val[i];
    return (int64_t)v;
}

/* A text (malloc'd), NULL for a Boolean; *bad on anything else. */
static char *ri_text(const km__ttlv_tree *t, int c, int *bad)
{
    char *s;
    if (c < 0 || (t->items[c].type != KM__TTLV_TEXT && t->items[c].type != KM__TTLV_BOOL)) {
        *bad = 1;
        return NULL;
    }
    if (t->items[c].type == KM__TTLV_BOOL)
        return NULL;
    if ((s = strndup((const char *)t->items[c].val, t->items[c].len)) == NULL)
        *bad = 2;
    return s;
}

int km__keyinfo_remote(const km__ttlv_tree *t, int st, km_keyinfo **out)
{
    struct km_keyinfo *info = calloc(1, sizeof *info);
    int bad = 0, c, vs;
    char *s;
    uint32_t i;

    *out = NULL;
    if (info == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    info->name = ri_text(t, ri_child(t, st, 0), &bad);
    c = ri_child(t, st, 1);
    if (c < 0 || t->items[c].type != KM__TTLV_BYTES || t->items[c].len != 16)
        bad = 1;
    else
        memcpy(info->id, t->items[c].val, 16);
    info->type = (km_key_type)ri_long(t, st, 2, &bad);
    info->usage = (uint32_t)ri_long(t, st, 3, &bad);
    info->flags = (uint32_t)ri_long(t, st, 4, &bad);
    if ((s = ri_text(t, ri_child(t, st, 5), &bad)) != NULL)
        snprintf(info->protection, sizeof info->protection, "%s", s);
    free(s);
    info->created = ri_long(t, st, 6, &bad);
    info->primary = (uint32_t)ri_long(t, st, 7, &bad);
    info->rotate_days = (uint32_t)ri_long(t, st, 8, &bad);
    info->protect_days = (uint32_t)ri_long(t, st, 9, &bad);
    info->process_days = (uint32_t)ri_long(t, st, 10, &bad);
    info->grace_days = (uint32_t)ri_long(t, st, 11, &bad);
    info->min_process = (uint32_t)ri_long(t, st, 12, &bad);
    info->min_protect = (uint32_t)ri_long(t, st, 13, &bad);
    info->policy = ri_text(t, ri_child(t, st, 14), &bad);
    if ((s = ri_text(t, ri_child(t, st, 15), &bad)) != NULL)
        snprintf(info->owner, sizeof info->owner, "%s", s);
    free(s);
    info->meta.description = ri_text(t, ri_child(t, st, 16), &bad);
    for (c = ri_child(t, ri_child(t, st, 17), 0); c >= 0 && info->meta.naliases < KM_KEY_ALIASES_MAX;
         c = t->items[c].next)
        info->meta.aliases[info->meta.naliases++] = ri_text(t, c, &bad);
    for (c = ri_child(t, ri_child(t, st, 18), 0); c >= 0 && t->items[c].next >= 0
         && info->meta.ntags < KM_KEY_TAGS_MAX; c = t->items[t->items[c].next].next) {
        info->meta.tag_keys[info->meta.ntags] = ri_text(t, c, &bad);
        info->meta.tag_values[info->meta.ntags++] = ri_text(t, t->items[c].next, &bad);
    }
    vs = ri_child(t, st, 19);
    info->nvers = (uint32_t)km__ttlv_count(t, vs, KM_KMD_TAG_OUT);
    if (vs < 0 || info->name == NULL
        || (info->nvers > 0 && (info->vers = calloc(info->nvers, sizeof *info->vers)) == NULL))
        bad = bad ? bad : 2;
    for (i = 0; !bad && i < info->nvers; i++) {
        int v = km__ttlv_child(t, vs, KM_KMD_TAG_OUT, (int)i);
        km_version_info *o = &info->vers[i];
        o->version = (uint32_t)ri_long(t, v, 0, &bad);
        o->state = (km_key_state)ri_long(t, v, 1, &bad);
        o->created = ri_long(t, v, 2, &bad);
        o->activated = ri_long(t, v, 3, &bad);
        o->protect_stop = ri_long(t, v, 4, &bad);
        o->process_stop = ri_long(t, v, 5, &bad);
        o->destroy_after = ri_long(t, v, 6, &bad);
        o->invocations = (uint64_t)ri_long(t, v, 7, &bad);
        o->bytes = (uint64_t)ri_long(t, v, 8, &bad);
        o->revoke_reason = (uint32_t)ri_long(t, v, 9, &bad);
        o->compromise_date = ri_long(t, v, 10, &bad);
        o->deactivated = ri_long(t, v, 11, &bad);
        o->destroyed = ri_long(t, v, 12, &bad);
    }
    if (bad) {
        km_keyinfo_free(info);
        return bad == 2 ? km__err(KM_E_NOMEM, "out of memory") : KM_E_CORRUPT;
    }
    *out = info;
    return KM_OK;
}
