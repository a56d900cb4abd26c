/* distribute.c - wrapped export and import of keys (BYOK), the vault's
 * import wrapping key. */
#include "core.h"
#include "crypto_int.h"
#include "km/quorum.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define KM__WRAP_MAGIC1 'W'
#define WRAPPING_KEY_NAME "km:import-wrapping-key"

/* The stored software reference of a version: [format][material]. */
static int read_ref(km__kobj *k, uint32_t version, km_secret **out)
{
    km__txn *t = NULL;
    uint8_t vk[20];
    int rc;
    km__vkey(vk, k->id, version);
    if ((rc = km__txn_begin(k->ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, k->ctx->sealer, KM__T_MATERIAL, vk, 20, out);
    km__txn_abort(t);
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_STATE, "the material of this key version is gone");
    return rc;
}

/* The usable object of a key's version for a wrap (protect) or unwrap
 * (process) with its KEK, checked like the data path. Called under rdlock. */
static int kek_obj(km__kobj *kek, uint32_t version, int protect, km__ver **vout, void **obj)
{
    km__ver *v;
    int rc;
    if (version == 0)
        version = kek->primary;
    if (version == 0 || version > kek->nvers)
        return km__err(protect ? KM_E_STATE : KM_E_NOTFOUND, "key '%s' has no %s version",
                       kek->name, protect ? "primary" : "such");
    v = kek->vers[version - 1];
    rc = protect ? km__may_protect(v, km__now(kek->ctx)) : km__may_process(v, 0, km__now(kek->ctx));
    if (rc == KM_OK)
        rc = km__ver_obj(kek, v, obj);
    if (rc == KM_OK)
        *vout = v;
    return rc;
}

/* After a successful wrap and before the blob is returned: consumes the
 * dual-control request when the policy asks for one (params = the recipient
 * public key, or the KEK's key id) and writes the audit entry, in one
 * transaction. A failure here wipes the blob. */
static int export_record(km__kobj *k, uint32_t version, const uint8_t *params, size_t len)
{
    km__txn *t = NULL;
    char d[120];
    int rc;

    if ((rc = km__wtxn_begin(k->ctx, &t)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "'%.64s' exported wrapped", k->name);
    rc = km__quorum_consume_key(k->ctx, t, KM_REQ_EXPORT, k, params, len);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    return km__wtxn_commit(k->ctx, t, KM__OP_EXPORT, k->id, version, d);
}

int km_key_export_wrapped(km_key *key, uint32_t version, km_wrap_format format, km_key *kek,
                          const uint8_t *recipient, size_t recipient_len, uint8_t *out,
                          size_t out_cap, size_t *out_len)
{
    KM__REMOTE_KEY(key, KM__KC_KEY_EXPORT_WRAPPED, key, version, format, kek, recipient, recipient_len, out, out_cap, out_len);
    km_secret *ref = NULL;
    km__kobj *k, *w = NULL;
    km__ver *v;
    void *obj;
    size_t n = 0;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_key_export_wrapped: out_len is NULL");
    *out_len = 0;
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_export_wrapped: key is NULL");
    if (format == KM_WRAP_KWP ? (kek == NULL || recipient != NULL)
        : format == KM_WRAP_RSA_OAEP_KWP ? (kek != NULL || recipient == NULL || recipient_len == 0)
        : 1)
        return km__err(KM_E_INVALID, "km_key_export_wrapped: KM_WRAP_KWP takes a kek, "
                                     "KM_WRAP_RSA_OAEP_KWP a recipient public key");
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (!(k->flags & KM_KEY_EXPORTABLE))
        return km__err(KM_E_POLICY, "key '%s' was not created exportable", k->name);
    if (k->flags & KM_KEY_PUBLIC_ONLY)
        return km__err(KM_E_UNSUPPORTED, "key '%s' holds only a public key: export it with "
                                         "km_key_public_export", k->name);
    if (k->session)
        return km__err(KM_E_UNSUPPORTED, "a session key is not exported");
    if (strcmp(k->protection, "software") != 0)
        return km__err(KM_E_UNSUPPORTED, "keys protected by '%s' are not exported this way",
                       k->protection);
    pthread_rwlock_rdlock(&k->lock);
    if (version == 0)
        version = k->primary ? k->primary : k->nvers;
    if (version == 0 || version > k->nvers) {
        rc = km__err(KM_E_NOTFOUND, "key '%s' has no version %u", k->name, version);
    } else {
        v = k->vers[version - 1];
        if (v->state == KM_STATE_DESTROYED || v->state == KM_STATE_DESTROY_PENDING
            || v->state == KM_STATE_COMPROMISED)
            rc = km__err(KM_E_STATE, "key '%s' version %u is %s: it is not exported", k->name,
                         version, km_state_name(v->state));
        else
            rc = KM_OK;
    }
    pthread_rwlock_unlock(&k->lock);
    if (rc == KM_OK)
        rc = km__acl_check(k->ctx, KM__OP_EXPORT, k);
    if (rc == KM_OK)
        rc = read_ref(k, version, &ref);
    if (rc == KM_OK && km_secret_len(ref) < 2)
        rc = km__err(KM_E_CORRUPT, "key material record too short");
    if (rc != KM_OK)
        goto out;

    if (format == KM_WRAP_RSA_OAEP_KWP) {
        rc = km__rsa_oaep_kwp_wrap(recipient, recipient_len, km_secret_data(ref) + 1,
                                   km_secret_len(ref) - 1, out, out_cap, out_len);
        if (rc == KM_OK)
            rc = export_record(k, version, recipient, recipient_len);
        goto out;
    }
    if ((rc = km__key_use(kek, &w)) != KM_OK)
        goto out;
    if (w->type != KM_KEY_AES_256_KWP || !(w->usage & KM_USAGE_WRAP)) {
        rc = km__err(KM_E_USAGE, "key '%s' is not an aes-256-kwp key that may wrap", w->name);
        goto out;
    }
    /* wrapping under the KEK is encrypting with it: a principal needs that
     * right on the KEK too, not only the export right on the key */
    if ((rc = km__acl_check(w->ctx, KM__OP_ENCRYPT, w)) != KM_OK)
        goto out;
    if (w->be->ops.wrap == NULL) {
        rc = km__err(KM_E_UNSUPPORTED, "backend '%s' cannot wrap", w->be->ops.name);
        goto out;
    }
    pthread_rwlock_rdlock(&w->lock);
    rc = kek_obj(w, 0, 1, &v, &obj);
    if (rc == KM_OK) {
        size_t need = KM_TAG_HEADER + (km_secret_len(ref) - 1 + 7) / 8 * 8 + 8;
        if (out == NULL || out_cap < need) {
            *out_len = need;
            rc = km__err(KM_E_BUFFER, "the wrapped key needs %zu bytes", need);
        } else {
            rc = w->be->ops.wrap(obj, km_secret_data(ref) + 1, km_secret_len(ref) - 1,
                                 out + KM_TAG_HEADER, out_cap - KM_TAG_HEADER, &n);
            if (rc == KM_OK) {
                km__tag_header_write(out, KM__WRAP_MAGIC1, (uint8_t)w->type, w->id, v->version);
                *out_len = KM_TAG_HEADER + n;
            }
        }
    }
    pthread_rwlock_unlock(&w->lock);
    if (rc == KM_OK)
        rc = export_record(k, version, w->id, 16);
out:
    km_secret_free(ref);
    if (rc != KM_OK && rc != KM_E_BUFFER && out != NULL)
        km_memzero(out, out_cap);
    return rc;
}

/* Unwraps a blob into the key material (secure memory). */
static int unwrap_blob(km_ctx *ctx, km_wrap_format format, const uint8_t *blob, size_t len,
                       km_secret **material)
{
    km__kobj *w = NULL;
    km__ver *v;
    void *obj;
    int rc;

    if (format == KM_WRAP_KWP) {
        uint8_t alg, id[16];
        uint32_t version;
        if ((rc = km__tag_header_parse(blob, len, KM__WRAP_MAGIC1, &alg, id, &version)) != KM_OK)
            return rc;
        if ((rc = km__kobj_get(ctx, id, &w)) != KM_OK)
            return rc == KM_E_NOTFOUND ? km__err(KM_E_NOTFOUND, "the blob's KEK is not in this vault") : rc;
        {
            km_key tmp = { w, ctx->fork_gen };
            km__kobj *ww;
            rc = km__key_use(&tmp, &ww);
        }
        if (rc == KM_OK && (w->type != KM_KEY_AES_256_KWP || alg != (uint8_t)w->type
                            || !(w->usage & KM_USAGE_UNWRAP)))
            rc = km__err(KM_E_INVALID, "the blob's KEK is not an aes-256-kwp key that may unwrap");
        /* unwrapping is decrypting with the KEK: the principal needs that right */
        if (rc == KM_OK)
            rc = km__acl_check(ctx, KM__OP_DECRYPT, w);
        if (rc == KM_OK && w->be->ops.unwrap == NULL)
            rc = km__err(KM_E_UNSUPPORTED, "backend '%s' cannot unwrap", w->be->ops.name);
        if (rc == KM_OK) {
            pthread_rwlock_rdlock(&w->lock);
            rc = kek_obj(w, version, 0, &v, &obj);
            if (rc == KM_OK)
                rc = w->be->ops.unwrap(obj, blob + KM_TAG_HEADER, len - KM_TAG_HEADER, material);
            pthread_rwlock_unlock(&w->lock);
        }
        km__kobj_unref(w);
        return rc;
    }
    /* KM_WRAP_RSA_OAEP_KWP to the vault's import wrapping key */
    {
        km_key *wk = NULL;
        km_secret *eph = NULL;
        uint8_t *m = NULL;
        size_t mod, ml = 0;
        rc = km_key_open(&wk, ctx, WRAPPING_KEY_NAME);
        if (rc == KM_E_NOTFOUND)
            return km__err(KM_E_NOTFOUND, "this vault has no import wrapping key yet "
                                          "(km_vault_wrapping_key makes it)");
        if (rc != KM_OK)
            return rc;
        w = wk->k;
        mod = km__type_family(w->type) == KM__FAM_RSA
                  ? km__keytype_get((int)w->type)->bits / 8 : 256;   /* modulus bytes */
        if (len <= mod + 16 || (len - mod) % 8 != 0) {
            km_key_free(wk);
            return km__err(KM_E_INVALID, "the wrapped key has an impossible length for RSA-OAEP + AES-KWP");
        }
        pthread_rwlock_rdlock(&w->lock);
        rc = kek_obj(w, 0, 0, &v, &obj);
        if (rc == KM_OK)
            rc = w->be->ops.unwrap(obj, blob, mod, &eph);
        pthread_rwlock_unlock(&w->lock);
        km_key_free(wk);
        if (rc == KM_OK && km_secret_len(eph) != 32)
            rc = km__err(KM_E_INTEGRITY, "the wrapped AES key is not 256 bits");
        if (rc == KM_OK && (m = km__salloc(len - mod)) == NULL)
            rc = km__err(KM_E_NOMEM, "out of memory");
        if (rc == KM_OK)
            rc = km__kwp_unwrap(km_secret_data(eph), 32, blob + mod, len - mod, m, len - mod, &ml);
        if (rc == KM_OK)
            rc = km_secret_from(material, m, ml);
        if (m != NULL)
            km__sfree(m, len - mod);
        km_secret_free(eph);
        return rc;
    }
}

int km__unwrap_blob(km_ctx *ctx, km_wrap_format format, const uint8_t *blob, size_t len,
                    km_secret **material)
{
    return unwrap_blob(ctx, format, blob, len, material);
}

int km_key_import_wrapped(km_key **out, km_ctx *ctx, const char *name, km_key_type type,
                          km_wrap_format format, const uint8_t *blob, size_t blob_len,
                          const km_key_options *opts)
{
    KM__REMOTE(ctx, KM__KC_KEY_IMPORT_WRAPPED, out, name, type, format, blob, blob_len, opts);
    km_secret *material = NULL;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (ctx == NULL || blob == NULL)
        return km__err(KM_E_INVALID, "km_key_import_wrapped: %s is NULL", ctx == NULL ? "ctx" : "blob");
    if (format != KM_WRAP_KWP && format != KM_WRAP_RSA_OAEP_KWP)
        return km__err(KM_E_INVALID, "km_key_import_wrapped: unknown format %d", (int)format);
    if (blob_len == 0 || blob_len > (1u << 16))
        return km__err(KM_E_INVALID, "km_key_import_wrapped: blob must be 1 byte to 64 KiB");
    if (!km__type_is_valid((int)type))
        return km__err(KM_E_INVALID, "km_key_import_wrapped: unknown key type %d", (int)type);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = unwrap_blob(ctx, format, blob, blob_len, &material)) != KM_OK)
        return rc;
    rc = km__key_import(out, ctx, name, type,
                       km__type_is_symmetric(type) ? KM_MATERIAL_RAW : KM_MATERIAL_PKCS8_DER,
                       km_secret_data(material), km_secret_len(material), KM_IMPORT_ALLOW_RAW,
                       opts, 0, blob, blob_len);
    km_secret_free(material);
    return rc;
}

int km_vault_wrapping_key(km_ctx *ctx, km_material_format format, uint8_t *out, size_t out_cap,
                          size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_VAULT_WRAPPING_KEY, format, out, out_cap, out_len);
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_vault_wrapping_key: out_len is NULL");
    *out_len = 0;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_vault_wrapping_key: ctx is NULL");
    if (format != KM_MATERIAL_PEM && format != KM_MATERIAL_SPKI_DER)
        return km__err(KM_E_INVALID, "km_vault_wrapping_key: format must be PEM or SPKI_DER");
    rc = km_key_open(&k, ctx, WRAPPING_KEY_NAME);
    if (rc == KM_E_NOTFOUND) {
        o.usage = KM_USAGE_UNWRAP;
        rc = km__key_create_reserved(&k, ctx, WRAPPING_KEY_NAME, KM_KEY_RSA_4096, &o);
        if (rc == KM_E_EXISTS) /* made by another thread or process meanwhile */
            rc = km_key_open(&k, ctx, WRAPPING_KEY_NAME);
    }
    if (rc != KM_OK)
        return rc;
    rc = km_key_public_export(k, 0, format, out, out_cap, out_len);
    km_key_free(k);
    return rc;
}
