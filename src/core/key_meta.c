/* key_meta.c - a key's identity and metadata after creation: rename, aliases,
 * description, tags (tags 13-15 of the key record, docs/FORMATS.md), and the
 * filtered, sorted listing (km_key_list_filtered). Names and aliases share
 * the name index (HMAC of the name -> key id), so the vault file holds them
 * only as keyed hashes; the key record (sealed) lists its aliases, which is
 * what km_key_open checks an alias against. Every change rewrites the key
 * record with km__tlv_copy_except, so fields this libkm does not know stay. */
#include "core.h"
#include "km/quorum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- the record */

/* A list value: entries of u16 BE length || bytes (aliases: one string per
 * entry; tags: key, value, key, value, ...). */
static int list_next(const uint8_t *v, size_t n, size_t *off, const uint8_t **s, size_t *sl)
{
    size_t l;
    if (n - *off < 2)
        return km__err(KM_E_CORRUPT, "key record: truncated list");
    l = ((size_t)v[*off] << 8) | v[*off + 1];
    if (n - *off - 2 < l)
        return km__err(KM_E_CORRUPT, "key record: list entry runs past the end");
    *s = v + *off + 2;
    *sl = l;
    *off += 2 + l;
    return KM_OK;
}

static char *dup_checked(const uint8_t *s, size_t l, int *rc)
{
    char *d;
    if (memchr(s, 0, l) != NULL) {
        *rc = km__err(KM_E_CORRUPT, "key record: NUL inside a string");
        return NULL;
    }
    if ((d = strndup((const char *)s, l)) == NULL)
        *rc = km__err(KM_E_NOMEM, "out of memory");
    return d;
}

void km__keymeta_free(km__keymeta *m)
{
    size_t i;
    free(m->description);
    for (i = 0; i < m->naliases; i++)
        free(m->aliases[i]);
    for (i = 0; i < m->ntags; i++) {
        free(m->tag_keys[i]);
        free(m->tag_values[i]);
    }
    memset(m, 0, sizeof *m);
}

/* Decodes tags 13-15 of a checked key record. */
static int meta_decode(const uint8_t *b, size_t n, km__keymeta *m)
{
    const uint8_t *v, *s;
    size_t vl, sl, off;
    int rc = KM_OK;

    memset(m, 0, sizeof *m);
    if (km__tlv_find(b, n, KM__K_DESCRIPTION, &v, &vl)) {
        if (vl == 0 || vl > KM_KEY_DESCRIPTION_MAX)
            return km__err(KM_E_CORRUPT, "key record: bad description");
        if ((m->description = dup_checked(v, vl, &rc)) == NULL)
            goto fail;
    }
    if (km__tlv_find(b, n, KM__K_ALIASES, &v, &vl)) {
        for (off = 0; off < vl;) {
            if (m->naliases == KM_KEY_ALIASES_MAX) {
                rc = km__err(KM_E_CORRUPT, "key record: too many aliases");
                goto fail;
            }
            if ((rc = list_next(v, vl, &off, &s, &sl)) != KM_OK)
                goto fail;
            if (sl == 0 || sl > KM_KEY_NAME_MAX) {
                rc = km__err(KM_E_CORRUPT, "key record: bad alias");
                goto fail;
            }
            if ((m->aliases[m->naliases] = dup_checked(s, sl, &rc)) == NULL)
                goto fail;
            m->naliases++;
        }
    }
    if (km__tlv_find(b, n, KM__K_TAGS, &v, &vl)) {
        for (off = 0; off < vl;) {
            const uint8_t *t2;
            size_t tl2;
            if (m->ntags == KM_KEY_TAGS_MAX) {
                rc = km__err(KM_E_CORRUPT, "key record: too many tags");
                goto fail;
            }
            if ((rc = list_next(v, vl, &off, &s, &sl)) != KM_OK
                || (rc = list_next(v, vl, &off, &t2, &tl2)) != KM_OK)
                goto fail;
            if (sl == 0 || sl > KM_KEY_TAG_KEY_MAX || tl2 > KM_KEY_TAG_VALUE_MAX) {
                rc = km__err(KM_E_CORRUPT, "key record: bad tag");
                goto fail;
            }
            if ((m->tag_keys[m->ntags] = dup_checked(s, sl, &rc)) == NULL)
                goto fail;
            if ((m->tag_values[m->ntags] = dup_checked(t2, tl2, &rc)) == NULL) {
                free(m->tag_keys[m->ntags]);
                goto fail;
            }
            m->ntags++;
        }
    }
    return KM_OK;
fail:
    km__keymeta_free(m);
    return rc;
}

static void list_put(uint8_t *out, size_t *off, const char *s)
{
    size_t l = strlen(s);
    out[*off] = (uint8_t)(l >> 8);
    out[*off + 1] = (uint8_t)l;
    memcpy(out + *off + 2, s, l);
    *off += 2 + l;
}

/* Writes rec (a checked key record) back with its name set to `name` (when
 * not NULL) and tags 13-15 from m. */
static int rec_write(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const km_secret *rec,
                     const char *name, const km__keymeta *m)
{
    static const uint8_t meta_tags[] = { KM__K_DESCRIPTION, KM__K_ALIASES, KM__K_TAGS, KM__K_NAME };
    size_t cap = km_secret_len(rec) + 64 + KM_KEY_NAME_MAX + KM_KEY_DESCRIPTION_MAX
                 + KM_KEY_ALIASES_MAX * (2 + KM_KEY_NAME_MAX)
                 + KM_KEY_TAGS_MAX * (4 + KM_KEY_TAG_KEY_MAX + KM_KEY_TAG_VALUE_MAX);
    uint8_t *buf = malloc(cap), *list = malloc(cap);
    size_t i, off;
    km__tlv_w w;
    int rc;

    if (buf == NULL || list == NULL) {
        free(buf);
        free(list);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    km__tlv_init(&w, buf, cap);
    km__tlv_copy_except(&w, km_secret_data(rec), km_secret_len(rec), meta_tags,
                        name != NULL ? 4 : 3);
    if (name != NULL)
        km__tlv_put_str(&w, KM__K_NAME, name);
    if (m->description != NULL)
        km__tlv_put_str(&w, KM__K_DESCRIPTION, m->description);
    if (m->naliases > 0) {
        for (i = off = 0; i < m->naliases; i++)
            list_put(list, &off, m->aliases[i]);
        km__tlv_put(&w, KM__K_ALIASES, list, off);
    }
    if (m->ntags > 0) {
        for (i = off = 0; i < m->ntags; i++) {
            list_put(list, &off, m->tag_keys[i]);
            list_put(list, &off, m->tag_values[i]);
        }
        km__tlv_put(&w, KM__K_TAGS, list, off);
    }
    rc = km__tlv_end(&w);
    if (rc == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, id, 16, buf, w.len, 0);
    free(list);
    free(buf);
    return rc;
}

/* Reads key id's record in t: *rec (checked), its name (in name, of
 * KM_KEY_NAME_MAX + 1 bytes) and metadata. */
static int rec_read(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], km_secret **rec,
                    char *name, km__keymeta *m)
{
    const uint8_t *v;
    size_t vl;
    int rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, id, 16, rec);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "the key no longer exists");
    if (rc != KM_OK)
        return rc;
    rc = km__tlv_check(km_secret_data(*rec), km_secret_len(*rec));
    if (rc == KM_OK && (!km__tlv_find(km_secret_data(*rec), km_secret_len(*rec), KM__K_NAME, &v, &vl)
                        || vl == 0 || vl > KM_KEY_NAME_MAX || memchr(v, 0, vl) != NULL))
        rc = km__err(KM_E_CORRUPT, "key record: bad name");
    if (rc == KM_OK) {
        memcpy(name, v, vl);
        name[vl] = '\0';
        rc = meta_decode(km_secret_data(*rec), km_secret_len(*rec), m);
    }
    if (rc != KM_OK) {
        km_secret_free(*rec);
        *rec = NULL;
    }
    return rc;
}

int km__keyrec_has_name(const uint8_t *rec, size_t n, const char *name)
{
    const uint8_t *v, *s = NULL;
    size_t vl, sl = 0, off, len = strlen(name);

    if (km__tlv_find(rec, n, KM__K_NAME, &v, &vl) && vl == len && memcmp(v, name, len) == 0)
        return 1;
    if (!km__tlv_find(rec, n, KM__K_ALIASES, &v, &vl))
        return 0;
    for (off = 0; off < vl;) {
        if (list_next(v, vl, &off, &s, &sl) != KM_OK)
            return 0;
        if (sl == len && memcmp(s, name, len) == 0)
            return 1;
    }
    return 0;
}

int km__key_meta_read(km__kobj *k, km__keymeta *m)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    char name[KM_KEY_NAME_MAX + 1];
    int rc;

    memset(m, 0, sizeof *m);
    if (k->session)
        return KM_OK;
    if ((rc = km__txn_begin(k->ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = rec_read(k->ctx, t, k->id, &rec, name, m);
    km_secret_free(rec);
    km__txn_abort(t);
    return rc;
}

/* ------------------------------------------------------------- changes */

static int find_alias(const km__keymeta *m, const char *a)
{
    size_t i;
    for (i = 0; i < m->naliases; i++)
        if (strcmp(m->aliases[i], a) == 0)
            return (int)i;
    return -1;
}

static void drop_alias(km__keymeta *m, int i)
{
    free(m->aliases[i]);
    memmove(&m->aliases[i], &m->aliases[i + 1], (m->naliases - (size_t)i - 1) * sizeof m->aliases[0]);
    m->naliases--;
}

/* The name checks of a new name or alias (`what` in the messages). */
static int new_name_check(const char *fn, const char *name, size_t *len)
{
    int rc = km__key_name_check(fn, name, len);
    if (rc == KM_OK && km__key_name_reserved(name))
        rc = km__err(KM_E_INVALID, "%s: names beginning with 'km:' are libkm's own", fn);
    return rc;
}

int km__key_rename(km__kobj *k, const char *new_name)
{
    struct km_ctx *ctx = k->ctx;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__keymeta m;
    char old[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX];
    uint8_t h_old[32], h_new[32];
    size_t len;
    int rc;

    if ((rc = new_name_check("km_key_rename", new_name, &len)) != KM_OK)
        return rc;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = rec_read(ctx, t, k->id, &rec, old, &m)) != KM_OK)
        goto fail;
    if (km__key_name_reserved(old)) {
        rc = km__err(KM_E_INVALID, "key '%s' is libkm's own", old);
        goto fail;
    }
    if (strcmp(old, new_name) == 0) {
        km__wtxn_abort(t);
        t = NULL;
        goto out;
    }
    if ((rc = km__sealer_name_hash(ctx->sealer, old, strlen(old), h_old)) != KM_OK
        || (rc = km__sealer_name_hash(ctx->sealer, new_name, len, h_new)) != KM_OK)
        goto fail;
    rc = km__rec_put(t, ctx->sealer, KM__T_NAMES, h_new, 32, k->id, 16, KM__PUT_NOOVERWRITE);
    if (rc == KM_E_EXISTS)
        rc = km__err(KM_E_EXISTS, "the name '%s' is taken (by a key or an alias)",
                     new_name);
    if (rc != KM_OK || (rc = km__rec_del(t, KM__T_NAMES, h_old, 32)) != KM_OK
        || (rc = rec_write(ctx, t, k->id, rec, new_name, &m)) != KM_OK)
        goto fail;
    snprintf(d, sizeof d, "renamed '%.64s' to '%.64s'", old, new_name);
    rc = km__wtxn_commit(ctx, t, KM__OP_KEY_META, k->id, 0, d);
    t = NULL;
    if (rc == KM_OK)
        (void)km__kobj_refresh(k, 1);
    goto out;
fail:
    km__wtxn_abort(t);
out:
    km__keymeta_free(&m);
    km_secret_free(rec);
    return rc;
}

int km__key_alias_add(km__kobj *k, const char *alias, int move)
{
    struct km_ctx *ctx = k->ctx;
    km__txn *t = NULL;
    km_secret *rec = NULL, *rec2 = NULL;
    km__keymeta m, m2;
    char name[KM_KEY_NAME_MAX + 1], name2[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX];
    uint8_t h[32], id2[16];
    size_t len;
    int rc, i;

    memset(&m2, 0, sizeof m2);
    memset(&m, 0, sizeof m);
    if ((rc = new_name_check("km_key_alias_add", alias, &len)) != KM_OK)
        return rc;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = rec_read(ctx, t, k->id, &rec, name, &m)) != KM_OK)
        goto fail;
    if (strcmp(name, alias) == 0) {
        rc = km__err(KM_E_EXISTS, "'%s' is this key's name", alias);
        goto fail;
    }
    if (find_alias(&m, alias) >= 0) { /* already there */
        km__wtxn_abort(t);
        t = NULL;
        goto out;
    }
    if (km__key_name_reserved(name)) {
        rc = km__err(KM_E_INVALID, "key '%s' is libkm's own", name);
        goto fail;
    }
    if (m.naliases >= KM_KEY_ALIASES_MAX) {
        rc = km__err(KM_E_LIMIT, "key '%s' has %d aliases, the most a key has",
                     name, KM_KEY_ALIASES_MAX);
        goto fail;
    }
    rc = km__key_lookup_name(ctx, t, alias, len, id2);
    if (rc == KM_OK) {
        /* taken: by another key's alias (movable) or name (never) */
        if (memcmp(id2, k->id, 16) == 0) {
            rc = km__err(KM_E_CORRUPT, "name index points at a key that does not list it");
            goto fail;
        }
        if ((rc = rec_read(ctx, t, id2, &rec2, name2, &m2)) != KM_OK)
            goto fail;
        if (strcmp(name2, alias) == 0) {
            rc = km__err(KM_E_EXISTS, "'%s' is the name of another key", alias);
            goto fail;
        }
        if ((i = find_alias(&m2, alias)) < 0) {
            rc = km__err(KM_E_CORRUPT, "name index points at a key that does not list it");
            goto fail;
        }
        if (!move) {
            rc = km__err(KM_E_EXISTS, "'%s' is an alias of key '%s'", alias, name2);
            goto fail;
        }
        drop_alias(&m2, i);
        if ((rc = rec_write(ctx, t, id2, rec2, NULL, &m2)) != KM_OK)
            goto fail;
        snprintf(d, sizeof d, "alias '%.64s' moved from '%.48s' to '%.48s'", alias, name2, name);
    } else if (rc == KM_E_NOTFOUND) {
        km_error_clear();
        snprintf(d, sizeof d, "alias '%.64s' added to '%.64s'", alias, name);
    } else {
        goto fail;
    }
    if ((m.aliases[m.naliases] = strdup(alias)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto fail;
    }
    m.naliases++;
    if ((rc = km__sealer_name_hash(ctx->sealer, alias, len, h)) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_NAMES, h, 32, k->id, 16, 0)) != KM_OK
        || (rc = rec_write(ctx, t, k->id, rec, NULL, &m)) != KM_OK)
        goto fail;
    rc = km__wtxn_commit(ctx, t, KM__OP_KEY_META, k->id, 0, d);
    t = NULL;
    goto out;
fail:
    km__wtxn_abort(t);
out:
    km__keymeta_free(&m);
    km__keymeta_free(&m2);
    km_secret_free(rec);
    km_secret_free(rec2);
    return rc;
}

int km__key_alias_remove(struct km_ctx *ctx, const char *alias)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__keymeta m;
    char name[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX];
    uint8_t h[32], id[16];
    size_t len;
    int rc, i;

    memset(&m, 0, sizeof m);
    if ((rc = km__key_name_check("km_key_alias_remove", alias, &len)) != KM_OK)
        return rc;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__key_lookup_name(ctx, t, alias, len, id);
    if (rc == KM_E_NOTFOUND)
        rc = km__err(KM_E_NOTFOUND, "no key has the alias '%s'", alias);
    if (rc != KM_OK || (rc = rec_read(ctx, t, id, &rec, name, &m)) != KM_OK)
        goto fail;
    if (strcmp(name, alias) == 0) {
        rc = km__err(KM_E_INVALID, "'%s' is a key's name, not an alias "
                                   "(rename the key instead)", alias);
        goto fail;
    }
    if ((i = find_alias(&m, alias)) < 0) {
        rc = km__err(KM_E_CORRUPT, "name index points at a key that does not list it");
        goto fail;
    }
    drop_alias(&m, i);
    if ((rc = km__sealer_name_hash(ctx->sealer, alias, len, h)) != KM_OK
        || (rc = km__rec_del(t, KM__T_NAMES, h, 32)) != KM_OK
        || (rc = rec_write(ctx, t, id, rec, NULL, &m)) != KM_OK)
        goto fail;
    snprintf(d, sizeof d, "alias '%.64s' removed from '%.64s'", alias, name);
    rc = km__wtxn_commit(ctx, t, KM__OP_KEY_META, id, 0, d);
    t = NULL;
    goto out;
fail:
    km__wtxn_abort(t);
out:
    km__keymeta_free(&m);
    km_secret_free(rec);
    return rc;
}

/* Text of a description or tag value: no control character. */
static int text_ok(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Read, change (edit), write the metadata of k in one transaction. */
typedef int (*meta_edit_fn)(km__keymeta *m, const char *name, const void *arg, char *d, size_t dcap);

static int meta_change(km__kobj *k, meta_edit_fn edit, const void *arg)
{
    struct km_ctx *ctx = k->ctx;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__keymeta m;
    char name[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX];
    int rc;

    memset(&m, 0, sizeof m);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = rec_read(ctx, t, k->id, &rec, name, &m)) != KM_OK
        || (rc = edit(&m, name, arg, d, sizeof d)) != KM_OK
        || (rc = rec_write(ctx, t, k->id, rec, NULL, &m)) != KM_OK) {
        km__wtxn_abort(t);
    } else {
        rc = km__wtxn_commit(ctx, t, KM__OP_KEY_META, k->id, 0, d);
    }
    km__keymeta_free(&m);
    km_secret_free(rec);
    return rc;
}

static int edit_description(km__keymeta *m, const char *name, const void *arg, char *d, size_t dcap)
{
    const char *text = arg;
    char *nd = NULL;
    if (text != NULL && text[0] != '\0' && (nd = strdup(text)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    free(m->description);
    m->description = nd;
    snprintf(d, dcap, "description of '%.64s' %s", name, nd != NULL ? "set" : "removed");
    return KM_OK;
}

int km__key_describe(km__kobj *k, const char *text)
{
    size_t n = text != NULL ? strnlen(text, KM_KEY_DESCRIPTION_MAX + 1) : 0;
    if (n > KM_KEY_DESCRIPTION_MAX)
        return km__err(KM_E_INVALID, "a description is at most %d bytes",
                       KM_KEY_DESCRIPTION_MAX);
    if (!text_ok(text, n))
        return km__err(KM_E_INVALID, "a description may not hold a control character");
    return meta_change(k, edit_description, text);
}

struct tag_arg {
    const char *tag, *value;
};

static int edit_tag(km__keymeta *m, const char *name, const void *arg, char *d, size_t dcap)
{
    const struct tag_arg *ta = arg;
    size_t i;
    char *kv, *vv;

    for (i = 0; i < m->ntags && strcmp(m->tag_keys[i], ta->tag) < 0; i++)
        ;
    if (ta->value == NULL) {
        if (i == m->ntags || strcmp(m->tag_keys[i], ta->tag) != 0)
            return km__err(KM_E_NOTFOUND, "key '%s' has no tag '%s'", name, ta->tag);
        free(m->tag_keys[i]);
        free(m->tag_values[i]);
        memmove(&m->tag_keys[i], &m->tag_keys[i + 1], (m->ntags - i - 1) * sizeof m->tag_keys[0]);
        memmove(&m->tag_values[i], &m->tag_values[i + 1],
                (m->ntags - i - 1) * sizeof m->tag_values[0]);
        m->ntags--;
        snprintf(d, dcap, "tag '%.64s' of '%.64s' removed", ta->tag, name);
        return KM_OK;
    }
    if ((vv = strdup(ta->value)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    if (i < m->ntags && strcmp(m->tag_keys[i], ta->tag) == 0) {
        free(m->tag_values[i]);
        m->tag_values[i] = vv;
    } else {
        if (m->ntags == KM_KEY_TAGS_MAX) {
            free(vv);
            return km__err(KM_E_LIMIT, "key '%s' has %d tags, the most a key has", name,
                           KM_KEY_TAGS_MAX);
        }
        if ((kv = strdup(ta->tag)) == NULL) {
            free(vv);
            return km__err(KM_E_NOMEM, "out of memory");
        }
        memmove(&m->tag_keys[i + 1], &m->tag_keys[i], (m->ntags - i) * sizeof m->tag_keys[0]);
        memmove(&m->tag_values[i + 1], &m->tag_values[i], (m->ntags - i) * sizeof m->tag_values[0]);
        m->tag_keys[i] = kv;
        m->tag_values[i] = vv;
        m->ntags++;
    }
    /* the value may be anything the owner chose: not in the log */
    snprintf(d, dcap, "tag '%.64s' of '%.64s' set", ta->tag, name);
    return KM_OK;
}

static int tag_key_ok(const char *t)
{
    size_t i, n = strnlen(t, KM_KEY_TAG_KEY_MAX + 1);
    if (n == 0 || n > KM_KEY_TAG_KEY_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == ':' || c == '/' || c == '-'))
            return 0;
    }
    return 1;
}

int km__key_tag_set(km__kobj *k, const char *tag, const char *value)
{
    struct tag_arg ta;
    size_t n;
    if (tag == NULL || !tag_key_ok(tag))
        return km__err(KM_E_INVALID, "a tag is 1 to %d characters of "
                                     "A-Z a-z 0-9 _ . : / -", KM_KEY_TAG_KEY_MAX);
    if (value != NULL) {
        n = strnlen(value, KM_KEY_TAG_VALUE_MAX + 1);
        if (n > KM_KEY_TAG_VALUE_MAX || !text_ok(value, n))
            return km__err(KM_E_INVALID, "a tag value is at most %d bytes without "
                                         "control characters", KM_KEY_TAG_VALUE_MAX);
    }
    ta.tag = tag;
    ta.value = value;
    return meta_change(k, edit_tag, &ta);
}

/* ------------------------------------------------------------ listing */

struct flist_entry {
    char *name;
    uint8_t id[16];
    km_key_type type;
};

struct flist {
    struct km_ctx *ctx;
    km__txn *t;
    const km_key_filter *f;
    struct flist_entry *v;
    size_t n, cap;
};

static int tag_matches(const km__keymeta *m, const char *want)
{
    const char *eq = strchr(want, '=');
    size_t kl = eq != NULL ? (size_t)(eq - want) : strlen(want), i;
    for (i = 0; i < m->ntags; i++)
        if (strlen(m->tag_keys[i]) == kl && memcmp(m->tag_keys[i], want, kl) == 0)
            return eq == NULL || strcmp(m->tag_values[i], eq + 1) == 0;
    return 0;
}

struct state_find {
    km_key_state state;
    int found;
};

static int state_find_fn(uint32_t version, const uint8_t *b, size_t n, void *arg)
{
    struct state_find *f = arg;
    km__ver v;
    int rc;
    memset(&v, 0, sizeof v);
    v.version = version;
    if ((rc = km__vmeta_decode(b, n, &v)) == KM_OK && v.state == f->state)
        f->found = 1;
    return rc;
}

/* 1 when a version of key record rec is in `state`. */
static int has_state(const uint8_t *rec, size_t n, km_key_state state, int *rc)
{
    struct state_find f = { state, 0 };
    *rc = km__keyrec_vers(rec, n, state_find_fn, &f);
    return *rc == KM_OK && f.found;
}

static int flist_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                     void *p)
{
    struct flist *l = p;
    const km_key_filter *f = l->f;
    const uint8_t *v;
    size_t vl;
    uint32_t type = 0, nvers = 0;
    int rc = KM_OK;

    if (key_len != 16)
        return km__err(KM_E_CORRUPT, "key table: bad key length");
    if (km__tlv_check(val, val_len) != KM_OK
        || !km__tlv_find(val, val_len, KM__K_NAME, &v, &vl) || vl == 0 || vl > KM_KEY_NAME_MAX
        || memchr(v, 0, vl) != NULL || km__tlv_get_u32(val, val_len, KM__K_TYPE, &type) != KM_OK
        || km__tlv_get_u32(val, val_len, KM__K_NVERSIONS, &nvers) != KM_OK
        || nvers > KM__VERSIONS_MAX)
        return km__err(KM_E_CORRUPT, "key record: bad name, type or version count");
    if (f != NULL) {
        if (f->type != 0 && (km_key_type)type != f->type)
            return 0;
        if (f->protection != NULL) {
            const uint8_t *pv;
            size_t pl;
            if (!km__tlv_find(val, val_len, KM__K_PROTECTION, &pv, &pl)
                || pl != strlen(f->protection) || memcmp(pv, f->protection, pl) != 0)
                return 0;
        }
        if (f->tag != NULL) {
            km__keymeta m;
            int match;
            if ((rc = meta_decode(val, val_len, &m)) != KM_OK)
                return rc;
            match = tag_matches(&m, f->tag);
            km__keymeta_free(&m);
            if (!match)
                return 0;
        }
        if (f->state != 0 && !has_state(val, val_len, f->state, &rc))
            return rc != KM_OK ? rc : 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct flist_entry *nv = realloc(l->v, cap * sizeof *nv);
        if (nv == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        l->v = nv;
        l->cap = cap;
    }
    if ((l->v[l->n].name = strndup((const char *)v, vl)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    memcpy(l->v[l->n].id, key, 16);
    l->v[l->n].type = (km_key_type)type;
    l->n++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct flist_entry *)a)->name, ((const struct flist_entry *)b)->name);
}

int km__key_list_filtered(struct km_ctx *ctx, const km_key_filter *f, km_key_list_fn fn,
                          void *arg)
{
    struct flist l;
    size_t i;
    int rc;

    memset(&l, 0, sizeof l);
    l.ctx = ctx;
    l.f = f;
    if ((rc = km__txn_begin(ctx->env, 0, &l.t)) != KM_OK)
        return rc;
    rc = km__rec_iter(l.t, ctx->sealer, KM__T_KEYS, NULL, 0, flist_one, &l);
    km__txn_abort(l.t);
    if (rc == KM_OK && l.n > 0) {   /* qsort's array may not be NULL, even for 0 */
        qsort(l.v, l.n, sizeof *l.v, by_name);
        for (i = 0; i < l.n; i++)
            if (fn(l.v[i].name, l.v[i].id, l.v[i].type, arg) != 0)
                break;
    }
    for (i = 0; i < l.n; i++)
        free(l.v[i].name);
    free(l.v);
    return rc;
}

/* ------------------------------------------------------------ settings */

/* The params of the dual-control request that clears deletion protection. */
#define KM__DP_OFF "deletion-protection=off"

/* The key's own policy `json` (NULL: none) parsed against the vault's p;
 * *out is p itself when there is none (then *own stays NULL). */
static int effective(const km__policy *p, const char *json, km__policy **own, const km__policy **out)
{
    int rc = KM_OK;
    *own = NULL;
    *out = p;
    if (json != NULL && (rc = km__policy_parse(own, json, strlen(json), p)) == KM_OK)
        *out = *own;
    return rc;
}

/* The policy checks of new settings: a new own policy is at least as strict
 * as the old one in every rule (its full text parsed with the old effective
 * policy as the base), and the key's periods fit the policy that results. */
static int settings_policy_check(struct km_ctx *ctx, km_key_type type, const char *old_json,
                                 const char *new_json, int policy_changed, uint32_t rot,
                                 uint32_t protect, uint32_t process, uint32_t grace)
{
    const km__policy *p = km__policy_acquire(ctx), *old_eff, *new_eff;
    km__policy *old_own = NULL, *new_own = NULL, *cmp = NULL;
    char *full = NULL;
    int rc;

    /* an old policy that no longer parses against the vault's: the vault's applies */
    if (effective(p, old_json, &old_own, &old_eff) != KM_OK)
        old_eff = p;
    if ((rc = effective(p, new_json, &new_own, &new_eff)) != KM_OK)
        goto out;
    if (policy_changed) {
        if ((full = km__policy_to_json(new_eff)) == NULL) {
            rc = km_error_last()->code != KM_OK ? km_error_last()->code : KM_E_NOMEM;
            goto out;
        }
        rc = km__policy_parse(&cmp, full, strlen(full), old_eff);
        if (rc == KM_E_POLICY)
            rc = km__err(KM_E_POLICY, "a key's own policy may only tighten the one in force for "
                                      "it: %s", km_error_last()->message);
        if (rc != KM_OK)
            goto out;
    }
    rc = km__policy_check_create(new_eff, type, 0, km__now(ctx), rot, protect, process, grace);
out:
    free(full);
    km__policy_free(cmp);
    km__policy_free(old_own);
    km__policy_free(new_own);
    km__policy_release(ctx);
    return rc;
}

static void detail_add(char *d, size_t cap, const char *what)
{
    size_t n = strlen(d);
    if (n + strlen(what) + 3 < cap)
        snprintf(d + n, cap - n, "%s%s", d[n - 1] == ':' ? " " : ", ", what);
}

int km__key_settings(km__kobj *k, const km_key_settings *s)
{
    static const uint8_t tags[] = { KM__K_USAGE, KM__K_FLAGS, KM__K_ROTATE_DAYS, KM__K_POLICY,
                                    KM__K_MIN_PROCESS, KM__K_MIN_PROTECT };
    struct km_ctx *ctx = k->ctx;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__keymeta m;
    char name[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX], *old_policy = NULL, what[64];
    const char *new_policy;
    uint32_t type = 0, usage = 0, flags = 0, rot = 0, protect = 0, process = 0, grace = 30;
    uint32_t n_usage, n_flags, n_rot, nvers = 0, min_proc = 0, min_prot = 0;
    const uint8_t *v, *b;
    size_t vl, bl;
    uint8_t *buf = NULL;
    km__tlv_w w;
    int rc;

    memset(&m, 0, sizeof m);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = rec_read(ctx, t, k->id, &rec, name, &m)) != KM_OK)
        goto fail;
    b = km_secret_data(rec);
    bl = km_secret_len(rec);
    if (km__tlv_get_u32(b, bl, KM__K_TYPE, &type) != KM_OK
        || km__tlv_get_u32(b, bl, KM__K_USAGE, &usage) != KM_OK
        || km__tlv_get_u32(b, bl, KM__K_FLAGS, &flags) != KM_OK
        || km__tlv_get_u32(b, bl, KM__K_ROTATE_DAYS, &rot) == KM_E_CORRUPT
        || km__tlv_get_u32(b, bl, KM__K_PROTECT_DAYS, &protect) == KM_E_CORRUPT
        || km__tlv_get_u32(b, bl, KM__K_PROCESS_DAYS, &process) == KM_E_CORRUPT
        || km__tlv_get_u32(b, bl, KM__K_GRACE_DAYS, &grace) == KM_E_CORRUPT
        || km__tlv_get_u32(b, bl, KM__K_NVERSIONS, &nvers) != KM_OK
        || km__tlv_get_u32(b, bl, KM__K_MIN_PROCESS, &min_proc) == KM_E_CORRUPT
        || km__tlv_get_u32(b, bl, KM__K_MIN_PROTECT, &min_prot) == KM_E_CORRUPT) {
        rc = km__err(KM_E_CORRUPT, "key record: bad usage, flags or periods");
        goto fail;
    }
    if (km__tlv_find(b, bl, KM__K_POLICY, &v, &vl)
        && (old_policy = dup_checked(v, vl, &rc)) == NULL)
        goto fail;
    n_usage = usage;
    n_flags = flags;
    n_rot = rot;
    new_policy = old_policy;
    snprintf(d, sizeof d, "settings of '%.64s':", name);
    if (s->fields & KM_SET_ROTATE_DAYS) {
        n_rot = s->rotate_days;
        snprintf(what, sizeof what, "rotate every %u days", n_rot);
        detail_add(d, sizeof d, n_rot ? what : "no rotation");
    }
    if (s->fields & KM_SET_USAGE) {
        if (s->usage == 0 || (s->usage & ~usage)) {
            rc = km__err(KM_E_INVALID, "key '%s': the usage can only be narrowed to a non-empty "
                                       "part of what it has", name);
            goto fail;
        }
        n_usage = s->usage;
        detail_add(d, sizeof d, "usage narrowed");
    }
    if (s->fields & KM_SET_EXPORTABLE) {
        if (s->exportable && !(flags & KM_KEY_EXPORTABLE)) {
            rc = km__err(KM_E_POLICY, "key '%s' is not exportable, and a key becomes exportable "
                                      "only when it is created", name);
            goto fail;
        }
        if (!s->exportable)
            n_flags &= ~KM_KEY_EXPORTABLE;
        detail_add(d, sizeof d, s->exportable ? "exportable" : "not exportable");
    }
    if (s->fields & KM_SET_DELETION_PROTECTION) {
        if (s->deletion_protection)
            n_flags |= KM_KEY_DELETION_PROTECTED;
        else
            n_flags &= ~KM_KEY_DELETION_PROTECTED;
        detail_add(d, sizeof d, s->deletion_protection ? "deletion protection on"
                                                       : "deletion protection off");
    }
    if (s->fields & KM_SET_POLICY) {
        new_policy = s->policy;
        detail_add(d, sizeof d, "own policy");
    }
    if (s->fields & KM_SET_MIN_PROCESS_VERSION) {
        min_proc = s->min_process_version;
        snprintf(what, sizeof what, "minimum decryption version %u", min_proc);
        detail_add(d, sizeof d, what);
    }
    if (s->fields & KM_SET_MIN_PROTECT_VERSION) {
        min_prot = s->min_protect_version;
        snprintf(what, sizeof what, "minimum encryption version %u", min_prot);
        detail_add(d, sizeof d, what);
    }
    if (min_proc > nvers || min_prot > nvers) {
        rc = km__err(KM_E_INVALID, "key '%s' has %u versions: a minimum version is at most that",
                     name, nvers);
        goto fail;
    }
    if (min_prot != 0 && min_prot < min_proc) {
        rc = km__err(KM_E_INVALID, "key '%s': the minimum encryption version (%u) is below the "
                                   "minimum decryption version (%u)", name, min_prot, min_proc);
        goto fail;
    }
    if ((s->fields & (KM_SET_ROTATE_DAYS | KM_SET_POLICY))
        && (rc = settings_policy_check(ctx, (km_key_type)type, old_policy, new_policy,
                                       (s->fields & KM_SET_POLICY) != 0, n_rot, protect, process,
                                       grace)) != KM_OK)
        goto fail;
    /* what loosens protection is a policy change on the key, under dual control */
    if ((s->fields & KM_SET_POLICY)
        && (rc = km__quorum_consume_key(ctx, t, KM_REQ_POLICY_CHANGE, k, (const uint8_t *)s->policy,
                                        strlen(s->policy))) != KM_OK)
        goto fail;
    if ((flags & KM_KEY_DELETION_PROTECTED) && !(n_flags & KM_KEY_DELETION_PROTECTED)
        && (rc = km__quorum_consume_key(ctx, t, KM_REQ_POLICY_CHANGE, k, (const uint8_t *)KM__DP_OFF,
                                        sizeof KM__DP_OFF - 1)) != KM_OK)
        goto fail;
    vl = bl + 64 + (new_policy != NULL ? strlen(new_policy) : 0);
    if ((buf = malloc(vl)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto fail;
    }
    km__tlv_init(&w, buf, vl);
    km__tlv_copy_except(&w, b, bl, tags, sizeof tags);
    km__tlv_put_u32(&w, KM__K_USAGE, n_usage);
    km__tlv_put_u32(&w, KM__K_FLAGS, n_flags);
    km__tlv_put_u32(&w, KM__K_ROTATE_DAYS, n_rot);
    if (new_policy != NULL)
        km__tlv_put_str(&w, KM__K_POLICY, new_policy);
    if (min_proc != 0)
        km__tlv_put_u32(&w, KM__K_MIN_PROCESS, min_proc);
    if (min_prot != 0)
        km__tlv_put_u32(&w, KM__K_MIN_PROTECT, min_prot);
    if ((rc = km__tlv_end(&w)) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_KEYS, k->id, 16, buf, w.len, 0)) != KM_OK)
        goto fail;
    rc = km__wtxn_commit(ctx, t, KM__OP_KEY_POLICY, k->id, 0, d);
    t = NULL;
    if (rc == KM_OK)
        (void)km__kobj_refresh(k, 1);
    goto out;
fail:
    km__wtxn_abort(t);
out:
    free(buf);
    free(old_policy);
    km__keymeta_free(&m);
    km_secret_free(rec);
    return rc;
}

/* ---------------------------------------------------------------- purge */

struct rkeys {
    uint8_t (*k)[64];
    size_t n, cap;
};

/* Collects the record keys of a prefix scan (deleted after the scan). */
static int collect_key(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                       void *arg)
{
    struct rkeys *r = arg;
    (void)val; (void)val_len;
    if (key_len > 63)
        return km__err(KM_E_CORRUPT, "meta record key too long");
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        void *p = realloc(r->k, cap * 64);
        if (p == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        r->k = p;
        r->cap = cap;
    }
    r->k[r->n][0] = (uint8_t)key_len;
    memcpy(r->k[r->n] + 1, key, key_len);
    r->n++;
    return 0;
}

/* Deletes every META record whose key begins with pfx || id. */
static int del_prefixed(struct km_ctx *ctx, km__txn *t, const char *pfx, const uint8_t id[16])
{
    struct rkeys r = { NULL, 0, 0 };
    uint8_t p[64];
    size_t pl = km__acl_rkey(p, pfx, id, NULL), i;
    int rc = km__rec_iter(t, ctx->sealer, KM__T_META, p, pl, collect_key, &r);
    for (i = 0; rc == KM_OK && i < r.n; i++)
        rc = km__rec_del(t, KM__T_META, r.k[i] + 1, r.k[i][0]);
    free(r.k);
    return rc;
}

/* Deletes a record that may be absent. */
int km__rec_del_opt(km__txn *t, km__table tbl, const uint8_t *key, size_t len)
{
    int rc = km__rec_del(t, tbl, key, len);
    if (rc == KM_E_NOTFOUND) {
        km_error_clear();
        rc = KM_OK;
    }
    return rc;
}

struct purge_scan {
    const char *name;
    int64_t last;       /* the last destruction */
};

static int purge_scan_fn(uint32_t version, const uint8_t *b, size_t n, void *arg)
{
    struct purge_scan *p = arg;
    km__ver vs;
    int rc;
    memset(&vs, 0, sizeof vs);
    if ((rc = km__vmeta_decode(b, n, &vs)) != KM_OK)
        return rc;
    if (vs.state != KM_STATE_DESTROYED)
        return km__err(KM_E_STATE, "key '%s' version %u is %s: only a key whose versions are all "
                                   "destroyed is purged", p->name, version, km_state_name(vs.state));
    if (vs.destroyed > p->last)
        p->last = vs.destroyed;
    else if (vs.destroyed == 0 && vs.destroy_after > p->last) /* older records */
        p->last = vs.destroy_after;
    return KM_OK;
}

int km__key_purge(km__kobj *k)
{
    struct km_ctx *ctx = k->ctx;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__keymeta m;
    char name[KM_KEY_NAME_MAX + 1], d[KM__AUDIT_DETAIL_MAX], *own = NULL;
    const uint8_t *b, *v;
    size_t bl, vl, i;
    uint32_t nvers = 0, flags = 0, ver, keep_days;
    int64_t last = 0, now = km__now(ctx);
    uint8_t h[32], vk[20];
    int rc;

    memset(&m, 0, sizeof m);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = rec_read(ctx, t, k->id, &rec, name, &m)) != KM_OK)
        goto fail;
    b = km_secret_data(rec);
    bl = km_secret_len(rec);
    if (km__tlv_get_u32(b, bl, KM__K_NVERSIONS, &nvers) != KM_OK || nvers > KM__VERSIONS_MAX
        || km__tlv_get_u32(b, bl, KM__K_FLAGS, &flags) != KM_OK) {
        rc = km__err(KM_E_CORRUPT, "key record: bad version count or flags");
        goto fail;
    }
    if (flags & KM_KEY_DELETION_PROTECTED) {
        rc = km__err(KM_E_STATE, "key '%s' is protected against deletion: it is not purged", name);
        goto fail;
    }
    {
        struct purge_scan ps = { name, 0 };
        if ((rc = km__keyrec_vers(b, bl, purge_scan_fn, &ps)) != KM_OK)
            goto fail;
        last = ps.last;
    }
    /* the retention of the policy in force for the key (its own may lengthen it) */
    if (km__tlv_find(b, bl, KM__K_POLICY, &v, &vl) && (own = dup_checked(v, vl, &rc)) == NULL)
        goto fail;
    {
        const km__policy *p = km__policy_acquire(ctx), *eff;
        km__policy *o = NULL;
        if (effective(p, own, &o, &eff) != KM_OK)
            eff = p;
        keep_days = km__policy_tombstone_days(eff);
        km__policy_free(o);
        km__policy_release(ctx);
    }
    if (now < last + (int64_t)keep_days * 86400) {
        rc = km__err(KM_E_STATE, "key '%s' was destroyed less than %u days ago (the policy's "
                                 "destruction.tombstone_days): it is kept until then", name,
                     keep_days);
        goto fail;
    }
    /* the names, the versions' records, the grants and the owner, the key */
    if ((rc = km__sealer_name_hash(ctx->sealer, name, strlen(name), h)) != KM_OK
        || (rc = km__rec_del_opt(t, KM__T_NAMES, h, 32)) != KM_OK)
        goto fail;
    for (i = 0; i < m.naliases; i++)
        if ((rc = km__sealer_name_hash(ctx->sealer, m.aliases[i], strlen(m.aliases[i]), h)) != KM_OK
            || (rc = km__rec_del_opt(t, KM__T_NAMES, h, 32)) != KM_OK)
            goto fail;
    for (ver = 1; ver <= nvers; ver++) {
        km__vkey(vk, k->id, ver);
        if ((rc = km__rec_del_opt(t, KM__T_MATERIAL, vk, 20)) != KM_OK
            || (rc = km__rec_del_opt(t, KM__T_COUNTERS, vk, 20)) != KM_OK)
            goto fail;
    }
    if ((rc = del_prefixed(ctx, t, KM__PFX_GRANT, k->id)) != KM_OK
        || (rc = del_prefixed(ctx, t, KM__PFX_OWNER, k->id)) != KM_OK
        || (rc = km__rec_del(t, KM__T_KEYS, k->id, 16)) != KM_OK)
        goto fail;
    snprintf(d, sizeof d, "'%.64s' purged: %u destroyed version(s), its name%s freed", name, nvers,
             m.naliases ? " and aliases" : "");
    rc = km__wtxn_commit(ctx, t, KM__OP_KEY_DESTROY, k->id, 0, d);
    t = NULL;
    goto out;
fail:
    km__wtxn_abort(t);
out:
    free(own);
    km__keymeta_free(&m);
    km_secret_free(rec);
    return rc;
}

/* ------------------------------------------------------ owner and grants */

/* The name of principal pid in t ("(removed)" when gone). */
static void principal_name(struct km_ctx *ctx, km__txn *t, const uint8_t pid[16], char *out,
                           size_t cap)
{
    km__pfind f;
    memset(&f, 0, sizeof f);
    f.pid = pid;
    if (km__principal_find(ctx, t, &f) == KM_OK && f.found)
        snprintf(out, cap, "%s", f.pname);
    else
        snprintf(out, cap, "(removed principal)");
}

int km__key_owner_name(struct km_ctx *ctx, const uint8_t kid[16], char *out, size_t cap)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint8_t k[64];
    int rc;

    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, k, km__acl_rkey(k, KM__PFX_OWNER, kid, NULL), &rec);
    if (rc == KM_E_NOTFOUND) {
        km_error_clear();
        snprintf(out, cap, "owner"); /* the vault owner */
        rc = KM_OK;
    } else if (rc == KM_OK && km_secret_len(rec) != 16) {
        rc = km__err(KM_E_CORRUPT, "an owner record is malformed");
    } else if (rc == KM_OK) {
        principal_name(ctx, t, km_secret_data(rec), out, cap);
    }
    km_secret_free(rec);
    km__txn_abort(t);
    return rc;
}

struct grant_entry {
    char grantee[80];
    uint32_t perms;
};

struct grant_scan {
    struct km_ctx *ctx;
    km__txn *t;
    size_t pl;
    int all;                 /* admin, auditor or the owner: every grant */
    struct grant_entry *v;
    size_t n, cap;
};

static int grant_one(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                     void *arg)
{
    struct grant_scan *g = arg;
    const uint8_t *gid = key + g->pl + 16;
    struct grant_entry *e;
    int role = 0, i;

    if (key_len != g->pl + 32 || val_len != 4)
        return km__err(KM_E_CORRUPT, "a grant record is malformed");
    for (i = 0; i < 15 && gid[i] == 0xff; i++)
        ;
    role = i == 15;
    if (!g->all) { /* a principal sees what applies to it: its own, its roles' */
        if (role ? !(g->ctx->roles & gid[15])
                 : !km_ct_equal(gid, g->ctx->principal_id, 16))
            return 0;
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        void *p = realloc(g->v, cap * sizeof *g->v);
        if (p == NULL)
            return km__err(KM_E_NOMEM, "out of memory");
        g->v = p;
        g->cap = cap;
    }
    e = &g->v[g->n++];
    e->perms = km__be32_get(val);
    if (role)
        snprintf(e->grantee, sizeof e->grantee, "role:%s", km__rules_role_name(gid[15]));
    else
        e->grantee[0] = '\0'; /* named after the scan (another table iteration) */
    memcpy(e->grantee + 64, gid, 16);
    return 0;
}

int km__key_grants(struct km_ctx *ctx, const uint8_t kid[16], km_grant_fn fn, void *arg)
{
    struct grant_scan g;
    uint8_t p[64];
    size_t i;
    int rc;

    memset(&g, 0, sizeof g);
    g.ctx = ctx;
    g.all = !ctx->is_principal || (ctx->roles & (KM_ROLE_ADMIN | KM_ROLE_AUDITOR));
    g.pl = sizeof KM__PFX_GRANT - 1;
    if ((rc = km__txn_begin(ctx->env, 0, &g.t)) != KM_OK)
        return rc;
    rc = km__rec_iter(g.t, ctx->sealer, KM__T_META, p, km__acl_rkey(p, KM__PFX_GRANT, kid, NULL),
                      grant_one, &g);
    for (i = 0; rc == KM_OK && i < g.n; i++) {
        uint8_t gid[16];
        if (g.v[i].grantee[0] != '\0')
            continue;
        memcpy(gid, g.v[i].grantee + 64, 16);
        principal_name(ctx, g.t, gid, g.v[i].grantee, 64);
    }
    km__txn_abort(g.t);
    for (i = 0; rc == KM_OK && i < g.n; i++) {
        g.v[i].grantee[63] = '\0';
        if (fn(g.v[i].grantee, g.v[i].perms, arg) != 0)
            break;
    }
    free(g.v);
    return rc;
}
