/* key.c - the key API of include/km/key.h that works on a handle or a type:
 * key-type names, the handle's accessors and km_key_free, rotation,
 * information, public-key export. Creating, importing, opening and listing
 * keys, and the key objects themselves, are src/core/key.c. */
#include "core.h"

#include <stdlib.h>
#include <string.h>


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
    return key ? key->k->name : NULL;
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
};

int km_key_info(km_keyinfo **out, km_key *key)
{
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
    for (i = 0; i < k->nvers; i++) {
        const km__ver *v = k->vers[i];
        km_version_info *o = &info->vers[i];
        o->version = v->version;
        o->state = v->state;
        o->created = v->created;
        o->activated = v->activated;
        o->protect_stop = v->protect_stop;
        o->process_stop = v->process_stop;
        o->destroy_after = v->destroy_after;
        o->invocations = atomic_load(&v->reserved_seen);
        o->bytes = 0;
    }
    pthread_rwlock_unlock(&k->lock);
    *out = info;
    return KM_OK;
}

void km_keyinfo_free(km_keyinfo *info)
{
    if (info == NULL)
        return;
    free(info->name);
    free(info->vers);
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
    if (out_size < sizeof *out)
        return km__err(KM_E_INVALID, "km_keyinfo_version: out_size is smaller than this "
                                     "library's km_version_info");
    if (index >= info->nvers)
        return km__err(KM_E_INVALID, "km_keyinfo_version: index %u is past the last version",
                       index);
    *out = info->vers[index];
    return KM_OK;
}

/* ---------------------------------------------------------- public key */

int km_key_public_export(km_key *key, uint32_t version, km_material_format format,
                         uint8_t *out, size_t out_cap, size_t *out_len)
{
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

