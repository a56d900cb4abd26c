/* check_keymeta.c - a key's names and metadata after creation (issue 22):
 * rename, aliases (moved atomically between keys), description, tags, the
 * filtered sorted listing; each audited, refused for bad input and for a
 * principal without the admin role, kept through rotation and reopening,
 * never in clear in the vault file, and a replayed name-index record is
 * refused. */
#include <check.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <km.h>

#include "testraw.h"
#include "testutil.h"

TU_VAULT_FIXTURE

/* The same with the fake clock tu_clock (tu_now). */
static void setup_clocked(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    o.flags = KM_OPEN_STRICT_REFRESH;
    tu_setup(&dir, &ctx, &o);
}

static km_key *mk(const char *name, km_key_type type)
{
    km_key *k = NULL;
    OK(km_key_create(&k, ctx, name, type, NULL));
    return k;
}

static void same_key(km_key *a, const char *name)
{
    km_key *b = NULL;
    OK(km_key_open(&b, ctx, name));
    ck_assert_msg(memcmp(km_key_id(a), km_key_id(b), 16) == 0, "'%s' opens another key", name);
    km_key_free(b);
}

/* The last audit entry's op and detail. */
struct last {
    char op[32], detail[256];
    uint8_t key_id[16];
};
static int last_one(const km_audit_entry *e, void *arg)
{
    struct last *l = arg;
    snprintf(l->op, sizeof l->op, "%s", e->op);
    snprintf(l->detail, sizeof l->detail, "%s", e->detail);
    memcpy(l->key_id, e->key_id, 16);
    return 0;
}
static void last_entry(struct last *l)
{
    memset(l, 0, sizeof *l);
    OK(km_audit_foreach(ctx, 1, last_one, l));
}

START_TEST(test_keymeta_rename)
{
    km_key *a = mk("orders", KM_KEY_AES_256_GCM), *c = mk("other", KM_KEY_AES_256_GCM), *o = NULL;
    uint8_t ct[128], pt[16];
    size_t ctl = 0, ptl = 0;
    struct last l;

    OK(km_encrypt(a, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &ctl));
    OK(km_key_rename(a, "orders-2026"));
    ck_assert_str_eq(km_key_name(a), "orders-2026");
    last_entry(&l);
    ck_assert_str_eq(l.op, "key.meta");
    ck_assert_msg(strstr(l.detail, "renamed 'orders' to 'orders-2026'") != NULL, "%s", l.detail);
    ck_assert(memcmp(l.key_id, km_key_id(a), 16) == 0);
    RC(KM_E_NOTFOUND, km_key_open(&o, ctx, "orders"));
    same_key(a, "orders-2026");
    /* the ciphertext names the id, not the name */
    OK(km_decrypt(ctx, 0, ct, ctl, NULL, 0, pt, sizeof pt, &ptl));
    ck_assert(ptl == 5 && memcmp(pt, "hello", 5) == 0);
    /* onto a taken name, a reserved one, a bad one: refused, nothing changed */
    RC(KM_E_EXISTS, km_key_rename(c, "orders-2026"));
    RC(KM_E_INVALID, km_key_rename(c, "km:import-wrapping-key"));
    RC(KM_E_INVALID, km_key_rename(c, ""));
    RC(KM_E_INVALID, km_key_rename(c, "bad\nname"));
    RC(KM_E_INVALID, km_key_rename(NULL, "x"));
    ck_assert_str_eq(km_key_name(c), "other");
    same_key(c, "other");
    /* the old name is free again */
    km_key_free(o);
    o = mk("orders", KM_KEY_AES_256_GCM);
    ck_assert(memcmp(km_key_id(o), km_key_id(a), 16) != 0);
    /* same name: nothing to do */
    OK(km_key_rename(o, "orders"));
    km_key_free(o);
    km_key_free(a);
    km_key_free(c);
}
END_TEST

/* Another handle of the same key (opened before the rename) shows the new
 * name once it is used; the name it handed out before stays readable. */
START_TEST(test_keymeta_rename_other_handle)
{
    km_key *a = mk("first", KM_KEY_AES_256_GCM), *b = NULL;
    km_keyinfo *info = NULL;
    const char *before;

    OK(km_key_open(&b, ctx, "first"));
    before = km_key_name(b);
    OK(km_key_rename(a, "second"));
    OK(km_key_info(&info, b));
    ck_assert_str_eq(km_keyinfo_name(info), "second");
    ck_assert_str_eq(km_key_name(b), "second");
    ck_assert_str_eq(before, "first");
    km_keyinfo_free(info);
    km_key_free(a);
    km_key_free(b);
}
END_TEST

static int alias_in(km_key *k, const char *alias)
{
    km_keyinfo *info = NULL;
    uint32_t i, n;
    int found = 0;
    OK(km_key_info(&info, k));
    n = km_keyinfo_alias_count(info);
    for (i = 0; i < n; i++)
        found |= strcmp(km_keyinfo_alias(info, i), alias) == 0;
    ck_assert(km_keyinfo_alias(info, n) == NULL);
    km_keyinfo_free(info);
    return found;
}

START_TEST(test_keymeta_alias)
{
    km_key *a = mk("key-2025", KM_KEY_AES_256_GCM), *b = mk("key-2026", KM_KEY_AES_256_GCM);
    km_key *o = NULL;
    struct last l;
    char name[32];
    int i;

    OK(km_key_alias_add(a, "payments", 0));
    OK(km_key_alias_add(a, "payments", 0)); /* already there */
    same_key(a, "payments");
    ck_assert(alias_in(a, "payments"));
    last_entry(&l);
    ck_assert_str_eq(l.op, "key.meta");
    /* a name is never an alias; another key's alias moves only when asked */
    RC(KM_E_EXISTS, km_key_alias_add(b, "key-2025", KM_ALIAS_MOVE));
    RC(KM_E_EXISTS, km_key_alias_add(a, "key-2025", 0));
    RC(KM_E_EXISTS, km_key_alias_add(b, "payments", 0));
    same_key(a, "payments");
    RC(KM_E_INVALID, km_key_alias_add(b, "km:mine", 0));
    RC(KM_E_INVALID, km_key_alias_add(b, "x", 0x80));
    RC(KM_E_EXISTS, km_key_rename(b, "payments"));
    /* moved in one transaction: from a to b */
    OK(km_key_alias_add(b, "payments", KM_ALIAS_MOVE));
    same_key(b, "payments");
    ck_assert(!alias_in(a, "payments"));
    ck_assert(alias_in(b, "payments"));
    last_entry(&l);
    ck_assert_msg(strstr(l.detail, "moved from 'key-2025' to 'key-2026'") != NULL, "%s", l.detail);
    /* removing: a name is not an alias; an unknown alias is not found */
    RC(KM_E_INVALID, km_key_alias_remove(ctx, "key-2026"));
    RC(KM_E_NOTFOUND, km_key_alias_remove(ctx, "nothing"));
    OK(km_key_alias_remove(ctx, "payments"));
    RC(KM_E_NOTFOUND, km_key_open(&o, ctx, "payments"));
    ck_assert(!alias_in(b, "payments"));
    /* at most KM_KEY_ALIASES_MAX */
    for (i = 0; i < KM_KEY_ALIASES_MAX; i++) {
        snprintf(name, sizeof name, "alias-%d", i);
        OK(km_key_alias_add(a, name, 0));
    }
    RC(KM_E_LIMIT, km_key_alias_add(a, "one-more", 0));
    /* the aliases survive a rotation and a rename */
    OK(km_key_rotate(a, NULL));
    OK(km_key_rename(a, "key-2025-old"));
    same_key(a, "alias-0");
    same_key(a, "alias-15");
    km_key_free(a);
    km_key_free(b);
}
END_TEST

START_TEST(test_keymeta_description_tags)
{
    km_key *a = mk("tagged", KM_KEY_AES_256_GCM);
    km_keyinfo *info = NULL;
    const char *t, *v;
    char big[KM_KEY_DESCRIPTION_MAX + 2], tag[16];
    int i;

    OK(km_key_set_description(a, "orders database, column encryption"));
    OK(km_key_set_tag(a, "team", "payments"));
    OK(km_key_set_tag(a, "env", "prod"));
    OK(km_key_set_tag(a, "cost-center", ""));
    OK(km_key_set_tag(a, "env", "staging")); /* replaces */
    RC(KM_E_NOTFOUND, km_key_set_tag(a, "absent", NULL));
    RC(KM_E_INVALID, km_key_set_tag(a, "", "x"));
    RC(KM_E_INVALID, km_key_set_tag(a, "has space", "x"));
    RC(KM_E_INVALID, km_key_set_tag(a, "ok", "bad\x01value"));
    RC(KM_E_INVALID, km_key_set_description(a, "line\nbreak"));
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    RC(KM_E_INVALID, km_key_set_description(a, big));
    /* the key keeps them through a rotation and a reopening of the vault */
    OK(km_key_rotate(a, NULL));
    km_key_free(a);
    km_close(ctx);
    ctx = tu_vault(dir);
    OK(km_key_open(&a, ctx, "tagged"));
    OK(km_key_info(&info, a));
    ck_assert_str_eq(km_keyinfo_description(info), "orders database, column encryption");
    ck_assert_uint_eq(km_keyinfo_tag_count(info), 3);
    OK(km_keyinfo_tag(info, 0, &t, &v));
    ck_assert(strcmp(t, "cost-center") == 0 && strcmp(v, "") == 0);
    OK(km_keyinfo_tag(info, 1, &t, &v));
    ck_assert(strcmp(t, "env") == 0 && strcmp(v, "staging") == 0);
    OK(km_keyinfo_tag(info, 2, &t, &v));
    ck_assert(strcmp(t, "team") == 0 && strcmp(v, "payments") == 0);
    RC(KM_E_INVALID, km_keyinfo_tag(info, 3, &t, &v));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 2);
    km_keyinfo_free(info);
    /* removal */
    OK(km_key_set_tag(a, "env", NULL));
    OK(km_key_set_description(a, NULL));
    OK(km_key_info(&info, a));
    ck_assert_ptr_null(km_keyinfo_description(info));
    ck_assert_uint_eq(km_keyinfo_tag_count(info), 2);
    km_keyinfo_free(info);
    for (i = 0; i < KM_KEY_TAGS_MAX - 2; i++) {
        snprintf(tag, sizeof tag, "t%02d", i);
        OK(km_key_set_tag(a, tag, "v"));
    }
    RC(KM_E_LIMIT, km_key_set_tag(a, "one-more", "v"));
    OK(km_key_set_tag(a, "t00", "replacing needs no room"));
    km_key_free(a);
}
END_TEST

/* A key made before this version has none of the fields: it reads as
 * having no description, alias or tag (every key the other suites make). */
START_TEST(test_keymeta_old_record)
{
    km_key *a = mk("plain", KM_KEY_EC_P256);
    km_keyinfo *info = NULL;
    OK(km_key_info(&info, a));
    ck_assert_ptr_null(km_keyinfo_description(info));
    ck_assert_uint_eq(km_keyinfo_alias_count(info), 0);
    ck_assert_uint_eq(km_keyinfo_tag_count(info), 0);
    km_keyinfo_free(info);
    km_key_free(a);
}
END_TEST

struct names {
    char v[16][64];
    int n;
};
static int collect(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    struct names *ns = arg;
    km_key *k = NULL;
    (void)id; (void)type;
    /* the callback may call libkm (the snapshot is already read) */
    OK(km_key_open(&k, ctx, name));
    km_key_free(k);
    if (ns->n < 16)
        snprintf(ns->v[ns->n++], 64, "%s", name);
    return 0;
}

static const char *listed(const km_key_filter *f)
{
    static char out[512];
    struct names ns;
    int i;
    memset(&ns, 0, sizeof ns);
    OK(km_key_list_filtered(ctx, f, collect, &ns));
    out[0] = '\0';
    for (i = 0; i < ns.n; i++) {
        strcat(out, i ? " " : "");
        strcat(out, ns.v[i]);
    }
    return out;
}

START_TEST(test_keymeta_list_filtered)
{
    km_key *k;
    km_key_filter f = KM_KEY_FILTER_INIT;

    k = mk("zeta", KM_KEY_AES_256_GCM);
    OK(km_key_set_tag(k, "env", "prod"));
    km_key_free(k);
    k = mk("alpha", KM_KEY_EC_P256);
    OK(km_key_set_tag(k, "env", "dev"));
    km_key_free(k);
    k = mk("Mid", KM_KEY_AES_256_GCM);
    OK(km_key_suspend(k, 1));
    OK(km_key_alias_add(k, "aaa-alias", 0)); /* aliases are not listed */
    km_key_free(k);
    k = mk("beta", KM_KEY_HMAC_SHA256);
    OK(km_key_rotate(k, NULL));
    OK(km_key_suspend(k, 1));
    km_key_free(k);

    ck_assert_str_eq(listed(NULL), "Mid alpha beta zeta");
    f.type = KM_KEY_AES_256_GCM;
    ck_assert_str_eq(listed(&f), "Mid zeta");
    f.type = 0;
    f.state = KM_STATE_SUSPENDED;
    ck_assert_str_eq(listed(&f), "Mid beta");
    f.state = KM_STATE_ACTIVE;
    ck_assert_str_eq(listed(&f), "alpha beta zeta");
    f.state = 0;
    f.tag = "env";
    ck_assert_str_eq(listed(&f), "alpha zeta");
    f.tag = "env=prod";
    ck_assert_str_eq(listed(&f), "zeta");
    f.tag = "env=pro";
    ck_assert_str_eq(listed(&f), "");
    f.tag = NULL;
    f.protection = "software";
    ck_assert_str_eq(listed(&f), "Mid alpha beta zeta");
    f.protection = "pkcs11";
    ck_assert_str_eq(listed(&f), "");
    f.protection = NULL;
    f.type = KM_KEY_AES_256_GCM;
    f.state = KM_STATE_ACTIVE;
    ck_assert_str_eq(listed(&f), "zeta");
    /* bad filters */
    f.version = 99;
    RC(KM_E_INVALID, km_key_list_filtered(ctx, &f, collect, NULL));
    f.version = KM_KEY_FILTER_VERSION;
    f.state = (km_key_state)42;
    RC(KM_E_INVALID, km_key_list_filtered(ctx, &f, collect, NULL));
    f.state = 0;
    f.type = (km_key_type)999;
    RC(KM_E_INVALID, km_key_list_filtered(ctx, &f, collect, NULL));
    RC(KM_E_INVALID, km_key_list_filtered(ctx, NULL, NULL, NULL));
}
END_TEST

/* Names, aliases, descriptions and tags are in the vault file only sealed
 * (and names only as keyed hashes in the index). */
START_TEST(test_keymeta_nothing_in_clear)
{
    static const char *const secrets[] = { "RenamedQuasarName", "AliasNebula7", "DescPulsar99",
                                           "TagKeyComet", "TagValueMeteor" };
    km_key *a = mk("OriginalName1", KM_KEY_AES_256_GCM);
    char path[4096];
    uint8_t *file;
    size_t len, i;

    OK(km_key_rename(a, "RenamedQuasarName"));
    OK(km_key_alias_add(a, "AliasNebula7", 0));
    OK(km_key_set_description(a, "DescPulsar99"));
    OK(km_key_set_tag(a, "TagKeyComet", "TagValueMeteor"));
    km_key_free(a);
    km_close(ctx);
    ctx = NULL;
    snprintf(path, sizeof path, "%s/vault/data.mdb", dir);
    file = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(file);
    for (i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        ck_assert_msg(!tu_memmem(file, len, (const uint8_t *)secrets[i], strlen(secrets[i])),
                      "'%s' is in the vault file in clear", secrets[i]);
    free(file);
}
END_TEST

/* The name index as an attacker could roll it back: after an alias moved
 * from key A to key B, the old sealed index record (pointing at A) is put
 * back. A no longer lists the alias, so opening by it is refused as
 * corrupt instead of handing out A. */
typedef struct snap {
    uint8_t k[32][64];
    uint8_t v[32][128];
    size_t kl[32], vl[32];
    int n;
} snap;

static void names_snapshot(snap *s)
{
    tu_raw r;
    MDB_cursor *c;
    MDB_val k, v;
    char vdir[4096];
    snprintf(vdir, sizeof vdir, "%s/vault", dir);
    memset(s, 0, sizeof *s);
    tu_raw_begin(&r, vdir, MDB_RDONLY, 0);
    ck_assert_int_eq(mdb_cursor_open(r.txn, tu_raw_dbi(&r, "names"), &c), 0);
    while (mdb_cursor_get(c, &k, &v, MDB_NEXT) == 0 && s->n < 32) {
        ck_assert(k.mv_size <= 64 && v.mv_size <= 128);
        memcpy(s->k[s->n], k.mv_data, k.mv_size);
        memcpy(s->v[s->n], v.mv_data, v.mv_size);
        s->kl[s->n] = k.mv_size;
        s->vl[s->n] = v.mv_size;
        s->n++;
    }
    mdb_cursor_close(c);
    tu_raw_end(&r);
}

START_TEST(test_keymeta_alias_index_replayed)
{
    km_key *a = mk("key-a", KM_KEY_AES_256_GCM), *b = mk("key-b", KM_KEY_AES_256_GCM), *o = NULL;
    snap *before = malloc(sizeof *before), *after = malloc(sizeof *after);
    char vdir[4096];
    int i, j, replayed = 0;
    tu_raw r;

    OK(km_key_alias_add(a, "current", 0));
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    names_snapshot(before);
    ctx = tu_vault(dir);
    OK(km_key_open(&b, ctx, "key-b"));
    OK(km_key_alias_add(b, "current", KM_ALIAS_MOVE));
    km_key_free(b);
    km_close(ctx);
    names_snapshot(after);
    snprintf(vdir, sizeof vdir, "%s/vault", dir);
    tu_raw_begin(&r, vdir, 0, 0);
    for (i = 0; i < after->n; i++)
        for (j = 0; j < before->n; j++)
            if (after->kl[i] == before->kl[j] && memcmp(after->k[i], before->k[j], after->kl[i]) == 0
                && (after->vl[i] != before->vl[j] || memcmp(after->v[i], before->v[j], after->vl[i]) != 0)) {
                tu_raw_put(&r, "names", before->k[j], before->kl[j], before->v[j], before->vl[j]);
                replayed++;
            }
    tu_raw_end(&r);
    ck_assert_int_eq(replayed, 1);
    ctx = tu_vault(dir);
    RC(KM_E_CORRUPT, km_key_open(&o, ctx, "current"));
    free(before);
    free(after);
}
END_TEST

/* Renaming, aliasing, describing and tagging need the admin role. */
START_TEST(test_keymeta_needs_admin)
{
    km_key *a = mk("guarded", KM_KEY_AES_256_GCM), *u = NULL;
    km_ctx *user;

    tu_principals_add(ctx);
    OK(km_key_grant(a, TU_USER, KM_PERM_ALL));
    user = tu_as(dir, TU_USER, TU_USER_PASS);
    OK(km_key_open(&u, user, "guarded"));
    RC(KM_E_DENIED, km_key_rename(u, "mine"));
    RC(KM_E_DENIED, km_key_alias_add(u, "mine", 0));
    RC(KM_E_DENIED, km_key_set_description(u, "mine"));
    RC(KM_E_DENIED, km_key_set_tag(u, "owner", "me"));
    OK(km_key_alias_add(a, "shared", 0));
    RC(KM_E_DENIED, km_key_alias_remove(user, "shared"));
    ck_assert_str_eq(km_key_name(a), "guarded");
    km_key_free(u);
    km_close(user);
    km_key_free(a);
}
END_TEST


/* ------------------------------------------------------------ km_key_set */

static int set1(km_key *k, uint32_t field, uint32_t u, const char *policy)
{
    km_key_settings s = KM_KEY_SETTINGS_INIT;
    s.fields = field;
    s.rotate_days = u;
    s.usage = u;
    s.exportable = (int)u;
    s.deletion_protection = (int)u;
    s.policy = policy;
    return km_key_set(k, &s);
}

static km_key_state state_of(km_key *k)
{
    km_keyinfo *info = NULL;
    km_version_info v;
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    km_keyinfo_free(info);
    return v.state;
}

static uint32_t rotate_days_of(km_key *k)
{
    km_keyinfo *info = NULL;
    uint32_t r = 0;
    OK(km_key_info(&info, k));
    km_keyinfo_periods(info, &r, NULL, NULL, NULL);
    km_keyinfo_free(info);
    return r;
}

START_TEST(test_keyset_rotation_and_usage)
{
    km_key *k = mk("settings", KM_KEY_AES_256_GCM);
    km_key_settings s = KM_KEY_SETTINGS_INIT;
    uint8_t ct[128], ct2[128], pt[16];
    size_t ctl = 0, ptl = 0;
    struct last l;

    ck_assert_uint_eq(rotate_days_of(k), 0);
    OK(set1(k, KM_SET_ROTATE_DAYS, 90, NULL));
    ck_assert_uint_eq(rotate_days_of(k), 90);
    last_entry(&l);
    ck_assert_str_eq(l.op, "key.policy");
    ck_assert_msg(strstr(l.detail, "rotate every 90 days") != NULL, "%s", l.detail);
    /* the vault policy's rotation.max_days (730) */
    RC(KM_E_POLICY, set1(k, KM_SET_ROTATE_DAYS, 800, NULL));
    RC(KM_E_INVALID, set1(k, KM_SET_ROTATE_DAYS, 40000, NULL));
    ck_assert_uint_eq(rotate_days_of(k), 90);
    /* usage: narrowing only */
    OK(km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ctl));
    OK(set1(k, KM_SET_USAGE, KM_USAGE_DECRYPT, NULL));
    RC(KM_E_USAGE, km_encrypt(k, (const uint8_t *)"x", 1, NULL, 0, ct2, sizeof ct2, &ptl));
    OK(km_decrypt(ctx, 0, ct, ctl, NULL, 0, pt, sizeof pt, &ptl));
    RC(KM_E_INVALID, set1(k, KM_SET_USAGE, KM_USAGE_DECRYPT | KM_USAGE_ENCRYPT, NULL));
    RC(KM_E_INVALID, set1(k, KM_SET_USAGE, 0, NULL));
    /* bad settings */
    RC(KM_E_INVALID, km_key_set(k, NULL));
    RC(KM_E_INVALID, km_key_set(k, &s)); /* no field */
    s.fields = 0x100;
    RC(KM_E_INVALID, km_key_set(k, &s));
    s.version = 9;
    s.fields = KM_SET_ROTATE_DAYS;
    RC(KM_E_INVALID, km_key_set(k, &s));
    km_key_free(k);
}
END_TEST

START_TEST(test_keyset_exportable_only_towards_less)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *n = mk("plain", KM_KEY_AES_256_GCM), *kek = mk("kek", KM_KEY_AES_256_KWP);
    uint8_t blob[256];
    size_t bl = 0;

    o.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, ctx, "exp", KM_KEY_AES_256_GCM, &o));
    OK(km_key_export_wrapped(k, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &bl));
    RC(KM_E_POLICY, set1(n, KM_SET_EXPORTABLE, 1, NULL));
    OK(set1(k, KM_SET_EXPORTABLE, 1, NULL)); /* already: no change */
    OK(set1(k, KM_SET_EXPORTABLE, 0, NULL));
    RC(KM_E_POLICY, km_key_export_wrapped(k, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &bl));
    RC(KM_E_POLICY, set1(k, KM_SET_EXPORTABLE, 1, NULL));
    /* a device key is never exportable by libkm: refused before the device is asked */
    o.protection = "pkcs11";
    RC(KM_E_UNSUPPORTED, km_key_create(NULL, ctx, "dev1", KM_KEY_AES_256_GCM, &o));
    o.protection = "tpm2";
    RC(KM_E_UNSUPPORTED, km_key_create(NULL, ctx, "dev2", KM_KEY_EC_P256, &o));
    o.protection = "kmip";
    RC(KM_E_UNSUPPORTED, km_key_create(NULL, ctx, "dev3", KM_KEY_AES_256_GCM, &o));
    km_key_free(k);
    km_key_free(n);
    km_key_free(kek);
}
END_TEST

START_TEST(test_keyset_policy_tighten_only)
{
    km_key *k = mk("pol", KM_KEY_AES_256_GCM);
    km_keyinfo *info = NULL;

    OK(set1(k, KM_SET_ROTATE_DAYS, 60, NULL));
    OK(set1(k, KM_SET_POLICY, 0, "{\"version\": 1, \"rotation\": {\"max_days\": 90}}"));
    OK(km_key_info(&info, k));
    ck_assert_ptr_nonnull(strstr(km_keyinfo_policy(info), "90"));
    km_keyinfo_free(info);
    /* looser than the key's own (90), though within the vault's (730) */
    RC(KM_E_POLICY, set1(k, KM_SET_POLICY, 0, "{\"version\": 1, \"rotation\": {\"max_days\": 365}}"));
    /* a document that leaves the rule out would fall back to the vault's 730 */
    RC(KM_E_POLICY, set1(k, KM_SET_POLICY, 0, "{\"version\": 1}"));
    /* tighter, but the key's 60-day rotation would break it */
    RC(KM_E_POLICY, set1(k, KM_SET_POLICY, 0, "{\"version\": 1, \"rotation\": {\"max_days\": 30}}"));
    RC(KM_E_POLICY, set1(k, KM_SET_ROTATE_DAYS, 120, NULL));
    /* both at once, in one transaction */
    {
        km_key_settings s = KM_KEY_SETTINGS_INIT;
        s.fields = KM_SET_ROTATE_DAYS | KM_SET_POLICY;
        s.rotate_days = 20;
        s.policy = "{\"version\": 1, \"rotation\": {\"max_days\": 30}}";
        OK(km_key_set(k, &s));
    }
    ck_assert_uint_eq(rotate_days_of(k), 20);
    RC(KM_E_INVALID, set1(k, KM_SET_POLICY, 0, "{not json"));
    RC(KM_E_INVALID, set1(k, KM_SET_POLICY, 0, NULL));
    km_key_free(k);
}
END_TEST

START_TEST(test_keyset_deletion_protection)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *ck = NULL;
    km_ctx *c1;
    uint8_t id[16];
    km_keyinfo *info = NULL;
    /* the test clock stays allowed: the destruction below is due by tu_now */
    static const char pol[] = "{\"version\": 1, " TU_TEST_CLOCK ", \"dual_control\": "
                              "{\"policy-change\": 1, \"principal-change\": 1}}";

    o.flags = KM_KEY_DELETION_PROTECTED;
    o.activate_at = 4000000000; /* pre-active: destroyable at once */
    OK(km_key_create(&k, ctx, "kept", KM_KEY_AES_256_GCM, &o));
    OK(km_key_info(&info, k));
    ck_assert(km_keyinfo_flags(info) & KM_KEY_DELETION_PROTECTED);
    km_keyinfo_free(info);
    RC(KM_E_STATE, km_key_schedule_destroy(k, 1, 7));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "protected against deletion"));
    /* clearing it is a policy change on the key: under dual control */
    tu_principals_add(ctx);
    OK(km_policy_set(ctx, pol, strlen(pol)));
    RC(KM_E_DENIED, set1(k, KM_SET_DELETION_PROTECTION, 0, NULL));
    OK(km_request_create(ctx, KM_REQ_POLICY_CHANGE, "kept", (const uint8_t *)"deletion-protection=off",
                         23, 3600, id));
    {
        tu_open co = TU_OPEN_INIT; /* the system clock, as ctx */
        co.principal = TU_CUST1;
        co.pass = TU_CUST1_PASS;
        OK(tu_vault_open_with(&c1, dir, &co));
    }
    OK(km_request_approve(c1, id));
    /* the request is for this key only */
    OK(km_key_create(&ck, ctx, "other", KM_KEY_AES_256_GCM, &o));
    RC(KM_E_DENIED, set1(ck, KM_SET_DELETION_PROTECTION, 0, NULL));
    OK(set1(k, KM_SET_DELETION_PROTECTION, 0, NULL));
    OK(km_key_schedule_destroy(k, 1, 7));
    /* setting it is free, and holds back what was scheduled: with the clock
     * past the destruction date, maintenance leaves the version alone */
    OK(set1(k, KM_SET_DELETION_PROTECTION, 1, NULL));
    km_key_free(ck);
    km_key_free(k);
    km_close(ctx);
    ctx = tu_vault_clocked(dir, 0); /* tu_now: 2030, years after the date */
    OK(km_key_open(&k, ctx, "kept"));
    OK(km_maintain(ctx, NULL));
    ck_assert_int_eq(state_of(k), KM_STATE_DESTROY_PENDING);
    km_close(c1);
    c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS); /* on the same clock */
    OK(km_request_create(ctx, KM_REQ_POLICY_CHANGE, "kept", (const uint8_t *)"deletion-protection=off",
                         23, 3600, id));
    OK(km_request_approve(c1, id));
    OK(set1(k, KM_SET_DELETION_PROTECTION, 0, NULL));
    OK(km_maintain(ctx, NULL));
    ck_assert_int_eq(state_of(k), KM_STATE_DESTROYED);
    km_close(c1);
    km_key_free(k);
}
END_TEST


/* ------------------------------------------------- version window, trim */

static void window(km_key *k, uint32_t fields, uint32_t min_process, uint32_t min_protect, int want)
{
    km_key_settings st = KM_KEY_SETTINGS_INIT;
    st.fields = fields;
    st.min_process_version = min_process;
    st.min_protect_version = min_protect;
    RC(want, km_key_set(k, &st));
}

START_TEST(test_window_min_versions)
{
    km_key *k = mk("windowed", KM_KEY_AES_256_GCM);
    uint8_t ct[3][128], pt[16], out[128];
    size_t ctl[3], ptl, ol;
    uint32_t mp = 9, mq = 9, i;
    km_keyinfo *info = NULL;

    for (i = 0; i < 3; i++) {
        if (i > 0)
            OK(km_key_rotate(k, NULL));
        OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, ct[i], sizeof ct[i], &ctl[i]));
    }
    window(k, KM_SET_MIN_PROCESS_VERSION, 2, 0, KM_OK);
    RC(KM_E_STATE, km_decrypt(ctx, 0, ct[0], ctl[0], NULL, 0, pt, sizeof pt, &ptl));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "minimum decryption version"));
    /* not even as a compromised-data recovery */
    RC(KM_E_STATE, km_decrypt(ctx, KM_DECRYPT_ALLOW_COMPROMISED, ct[0], ctl[0], NULL, 0, pt,
                              sizeof pt, &ptl));
    OK(km_decrypt(ctx, 0, ct[1], ctl[1], NULL, 0, pt, sizeof pt, &ptl));
    /* bad windows */
    window(k, KM_SET_MIN_PROCESS_VERSION, 4, 0, KM_E_INVALID);
    window(k, KM_SET_MIN_PROTECT_VERSION, 0, 1, KM_E_INVALID); /* below the decryption minimum */
    window(k, KM_SET_MIN_PROTECT_VERSION, 0, 3, KM_OK);
    OK(km_key_info(&info, k));
    km_keyinfo_window(info, &mp, &mq);
    ck_assert(mp == 2 && mq == 3);
    km_keyinfo_free(info);
    OK(km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, out, sizeof out, &ol));
    /* the primary may not fall below the encryption minimum */
    OK(km_key_suspend(k, 3));
    RC(KM_E_STATE, km_encrypt(k, (const uint8_t *)"data", 4, NULL, 0, out, sizeof out, &ol));
    OK(km_key_resume(k, 3));
    /* kept through a rotation; lowered again, version 1 decrypts */
    OK(km_key_rotate(k, NULL));
    window(k, KM_SET_MIN_PROCESS_VERSION | KM_SET_MIN_PROTECT_VERSION, 0, 0, KM_OK);
    OK(km_decrypt(ctx, 0, ct[0], ctl[0], NULL, 0, pt, sizeof pt, &ptl));
    km_key_free(k);
}
END_TEST

START_TEST(test_window_trim)
{
    km_key *k = mk("trimmed", KM_KEY_AES_256_GCM), *r = mk("rollback", KM_KEY_AES_256_GCM);
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *p = NULL;
    uint32_t n = 99;

    RC(KM_E_STATE, km_key_trim(k, 7, &n)); /* no minimum */
    ck_assert_uint_eq(n, 0);
    OK(km_key_rotate(k, NULL));
    OK(km_key_rotate(k, NULL));
    OK(km_key_suspend(k, 2));
    window(k, KM_SET_MIN_PROCESS_VERSION, 3, 0, KM_OK);
    RC(KM_E_POLICY, km_key_trim(k, 1, &n)); /* below the policy's destruction window */
    OK(km_key_trim(k, 7, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(tu_version_state(k, 1), KM_STATE_DESTROY_PENDING);
    ck_assert_int_eq(tu_version_state(k, 2), KM_STATE_DESTROY_PENDING);
    ck_assert_int_eq(tu_version_state(k, 3), KM_STATE_ACTIVE);
    OK(km_key_trim(k, 0, &n)); /* nothing left to do */
    ck_assert_uint_eq(n, 0);
    /* never the primary: version 2 suspended, the primary is version 1 */
    OK(km_key_rotate(r, NULL));
    OK(km_key_suspend(r, 2));
    window(r, KM_SET_MIN_PROCESS_VERSION, 2, 0, KM_OK);
    RC(KM_E_STATE, km_key_trim(r, 7, &n));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "primary"));
    ck_assert_int_eq(tu_version_state(r, 1), KM_STATE_ACTIVE);
    /* nor under deletion protection */
    o.flags = KM_KEY_DELETION_PROTECTED;
    OK(km_key_create(&p, ctx, "protected", KM_KEY_AES_256_GCM, &o));
    OK(km_key_rotate(p, NULL));
    window(p, KM_SET_MIN_PROCESS_VERSION, 2, 0, KM_OK);
    RC(KM_E_STATE, km_key_trim(p, 7, &n));
    ck_assert_int_eq(tu_version_state(p, 1), KM_STATE_ACTIVE); /* nothing done on the way */
    km_key_free(p);
    km_key_free(r);
    km_key_free(k);
}
END_TEST



/* ------------------------------------------------ further imported versions */

START_TEST(test_import_further_versions)
{
    static const uint8_t id[16] = { 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7 };
    uint8_t m2[32], m3[32], m5[32], ct[128], pt[16];
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *src = NULL;
    km_keyinfo *info = NULL;
    size_t ctl = 0, ptl = 0;
    km_version_info v;

    memset(m2, 2, sizeof m2);
    memset(m3, 3, sizeof m3);
    memset(m5, 5, sizeof m5);
    o.key_id = id;
    o.import_version = 2;   /* the source's version 1 is gone: recorded destroyed */
    OK(km_key_import(&k, ctx, "migrated", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m2, 32,
                     KM_IMPORT_ALLOW_RAW, &o));
    km_key_free(k);
    o.import_version = 3;
    OK(km_key_import(&k, ctx, "migrated", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m3, 32,
                     KM_IMPORT_ALLOW_RAW, &o));
    /* not newer, another name, another type */
    RC(KM_E_EXISTS, km_key_import(NULL, ctx, "migrated", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m5,
                                  32, KM_IMPORT_ALLOW_RAW, &o));
    o.import_version = 5;
    RC(KM_E_EXISTS, km_key_import(NULL, ctx, "elsewhere", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m5,
                                  32, KM_IMPORT_ALLOW_RAW, &o));
    RC(KM_E_INVALID, km_key_import(NULL, ctx, "migrated", KM_KEY_HMAC_SHA256, KM_MATERIAL_RAW, m5,
                                   32, KM_IMPORT_ALLOW_RAW, &o));
    OK(km_key_import(NULL, ctx, "migrated", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m5, 32,
                     KM_IMPORT_ALLOW_RAW, &o));
    OK(km_key_info(&info, k));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 5);
    ck_assert_uint_eq(km_keyinfo_primary(info), 5);
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    ck_assert_int_eq(v.state, KM_STATE_DESTROYED);
    OK(km_keyinfo_version(info, 3, &v, sizeof v));
    ck_assert_int_eq(v.state, KM_STATE_DESTROYED);
    OK(km_keyinfo_version(info, 2, &v, sizeof v));
    ck_assert_int_eq(v.state, KM_STATE_ACTIVE);
    km_keyinfo_free(info);
    /* a ciphertext of the source's version 3 (same id, same material) decrypts here */
    {
        char d2[4096];
        km_ctx *other;
        km_key_options so = KM_KEY_OPTIONS_INIT;
        snprintf(d2, sizeof d2, "%s/src", dir);
        ck_assert_int_eq(mkdir(d2, 0700), 0);
        other = tu_vault(d2);
        so.key_id = id;
        so.import_version = 3;
        OK(km_key_import(&src, other, "src", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, m3, 32,
                         KM_IMPORT_ALLOW_RAW, &so));
        OK(km_encrypt(src, (const uint8_t *)"old data", 8, NULL, 0, ct, sizeof ct, &ctl));
        km_key_free(src);
        km_close(other);
    }
    OK(km_decrypt(ctx, 0, ct, ctl, NULL, 0, pt, sizeof pt, &ptl));
    ck_assert(ptl == 8 && memcmp(pt, "old data", 8) == 0);
    /* create takes no import_version */
    o.key_id = NULL;
    RC(KM_E_INVALID, km_key_create(NULL, ctx, "c", KM_KEY_AES_256_GCM, &o));
    km_key_free(k);
}
END_TEST


/* ------------------------------------------------ per-key backup, restore */

static km_ctx *vault_in(const char *sub)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    return tu_vault(d);
}

static uint8_t *backup_of(km_key *k, const uint8_t *pub, size_t pub_len, const char *pass,
                          size_t *len)
{
    uint8_t *b;
    size_t need = 0;
    RC(KM_E_BUFFER, km_key_backup(k, pub, pub_len, (const uint8_t *)pass, pass ? strlen(pass) : 0,
                                  NULL, 0, &need));
    b = malloc(need);
    OK(km_key_backup(k, pub, pub_len, (const uint8_t *)pass, pass ? strlen(pass) : 0, b, need,
                     len));
    ck_assert_uint_eq(*len, need);
    return b;
}

START_TEST(test_backup_restore)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *r = NULL, *plain = mk("plain", KM_KEY_AES_256_GCM);
    km_ctx *b = vault_in("b"), *c = vault_in("c");
    uint8_t pub[2048], ct1[128], ct2[128], pt[16], *bk, *bp, *bad;
    size_t pub_len = 0, ct1l, ct2l, ptl, bkl, bpl, need;
    km_keyinfo *info = NULL;
    km_version_info v;
    const char *t, *val;

    o.flags = KM_KEY_EXPORTABLE;
    o.policy = "{\"version\": 1, \"rotation\": {\"max_days\": 100}}";
    OK(km_key_create(&k, ctx, "moved", KM_KEY_AES_256_GCM, &o));
    OK(km_encrypt(k, (const uint8_t *)"one", 3, NULL, 0, ct1, sizeof ct1, &ct1l));
    OK(km_key_rotate(k, NULL));
    OK(km_encrypt(k, (const uint8_t *)"two", 3, NULL, 0, ct2, sizeof ct2, &ct2l));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_set_tag(k, "team", "data"));
    OK(km_key_alias_add(k, "moved-alias", 0));
    /* not exportable: no backup */
    RC(KM_E_POLICY, km_key_backup(plain, NULL, 0, (const uint8_t *)"pw", 2, NULL, 0, &need));
    RC(KM_E_INVALID, km_key_backup(k, NULL, 0, NULL, 0, NULL, 0, &need));

    OK(km_vault_wrapping_key(b, KM_MATERIAL_SPKI_DER, pub, sizeof pub, &pub_len));
    bk = backup_of(k, pub, pub_len, NULL, &bkl);
    OK(km_key_restore(b, bk, bkl, NULL, 0, NULL, &r));
    ck_assert(memcmp(km_key_id(r), km_key_id(k), 16) == 0);
    OK(km_decrypt(b, 0, ct1, ct1l, NULL, 0, pt, sizeof pt, &ptl));
    ck_assert(ptl == 3 && memcmp(pt, "one", 3) == 0);
    OK(km_decrypt(b, 0, ct2, ct2l, NULL, 0, pt, sizeof pt, &ptl));
    OK(km_key_info(&info, r));
    ck_assert_str_eq(km_keyinfo_name(info), "moved");
    ck_assert_uint_eq(km_keyinfo_version_count(info), 2);
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    ck_assert_int_eq(v.state, KM_STATE_DEACTIVATED);
    OK(km_keyinfo_version(info, 1, &v, sizeof v));
    ck_assert_int_eq(v.state, KM_STATE_ACTIVE);
    ck_assert_uint_ge(v.invocations, 1);         /* the counters came along */
    ck_assert_ptr_nonnull(strstr(km_keyinfo_policy(info), "100"));
    OK(km_keyinfo_tag(info, 0, &t, &val));
    ck_assert(strcmp(t, "team") == 0 && strcmp(val, "data") == 0);
    ck_assert_uint_eq(km_keyinfo_alias_count(info), 0); /* aliases stay behind */
    km_keyinfo_free(info);
    km_key_free(r);
    /* here already: by name, and under another name by id */
    RC(KM_E_EXISTS, km_key_restore(b, bk, bkl, NULL, 0, NULL, NULL));
    RC(KM_E_EXISTS, km_key_restore(b, bk, bkl, NULL, 0, "moved-again", NULL));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "already"));
    /* a backup for vault b is refused by vault c, with or without a wrapping key */
    RC(KM_E_INTEGRITY, km_key_restore(c, bk, bkl, NULL, 0, NULL, NULL));
    OK(km_vault_wrapping_key(c, KM_MATERIAL_SPKI_DER, pub, sizeof pub, &need));
    RC(KM_E_INTEGRITY, km_key_restore(c, bk, bkl, NULL, 0, NULL, NULL));
    /* altered: a byte of the contents, of the header (the key id), the magic */
    bad = malloc(bkl);
    memcpy(bad, bk, bkl);
    bad[bkl - 20] ^= 1;
    RC(KM_E_INTEGRITY, km_key_restore(b, bad, bkl, NULL, 0, "x1", NULL));
    memcpy(bad, bk, bkl);
    bad[5] ^= 1;
    RC(KM_E_INTEGRITY, km_key_restore(b, bad, bkl, NULL, 0, "x2", NULL));
    memcpy(bad, bk, bkl);
    bad[0] = 'X';
    RC(KM_E_INVALID, km_key_restore(b, bad, bkl, NULL, 0, "x3", NULL));
    RC(KM_E_INVALID, km_key_restore(b, bk, 40, NULL, 0, "x4", NULL));
    free(bad);

    /* under a passphrase, into vault c */
    bp = backup_of(k, NULL, 0, "backup passphrase", &bpl);
    RC(KM_E_INTEGRITY, km_key_restore(c, bp, bpl, (const uint8_t *)"wrong", 5, NULL, NULL));
    RC(KM_E_INVALID, km_key_restore(c, bp, bpl, NULL, 0, NULL, NULL));
    OK(km_key_create(NULL, c, "moved", KM_KEY_AES_256_GCM, NULL));
    RC(KM_E_EXISTS, km_key_restore(c, bp, bpl, (const uint8_t *)"backup passphrase", 17, NULL, NULL));
    OK(km_key_restore(c, bp, bpl, (const uint8_t *)"backup passphrase", 17, "moved-here", &r));
    ck_assert_str_eq(km_key_name(r), "moved-here");
    OK(km_decrypt(c, 0, ct2, ct2l, NULL, 0, pt, sizeof pt, &ptl));
    km_key_free(r);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    free(bk);
    free(bp);
    km_key_free(k);
    km_key_free(plain);
    km_close(b);
    km_close(c);
}
END_TEST


/* ------------------------------------------------------ what key info tells */

static int grant_collect(const char *grantee, uint32_t perms, void *arg)
{
    char *out = arg;
    char e[100];
    snprintf(e, sizeof e, "%s%s=%x", out[0] ? " " : "", grantee, perms);
    strcat(out, e);
    return 0;
}

START_TEST(test_info_tells_everything)
{
    km_key *k = mk("told", KM_KEY_AES_256_GCM), *ku = NULL, *ka = NULL;
    km_keyinfo *info = NULL;
    km_version_info v;
    uint8_t ct[256], pt[100];
    size_t ctl;
    km_ctx *user, *aud, *adm;
    char seen[512];
    int i;
    struct {
        km_version_info v;
        uint8_t after[64];
    } old;

    memset(pt, 'p', sizeof pt);
    for (i = 0; i < 3; i++)
        OK(km_encrypt(k, pt, sizeof pt, NULL, 0, ct, sizeof ct, &ctl));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    ck_assert_uint_ge(v.bytes, 300);
    ck_assert_str_eq(km_keyinfo_owner(info), "owner");
    /* a caller built before the appended fields gets what it knows, no more */
    memset(&old, 0xab, sizeof old);
    OK(km_keyinfo_version(info, 0, &old.v, KM_VERSION_INFO_SIZE_V1));
    ck_assert_uint_eq(old.v.bytes, v.bytes);
    ck_assert_uint_eq(old.v.revoke_reason, 0xabababab);
    RC(KM_E_INVALID, km_keyinfo_version(info, 0, &v, KM_VERSION_INFO_SIZE_V1 - 8));
    km_keyinfo_free(info);
    /* the bytes are in the vault once the handle goes */
    km_key_free(k);
    km_close(ctx);
    ctx = tu_vault(dir);
    OK(km_key_open(&k, ctx, "told"));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    ck_assert_uint_ge(v.bytes, 300);
    km_keyinfo_free(info);
    /* revocation reason, compromise date, deactivation */
    OK(km_key_rotate(k, NULL));
    OK(km_key_rotate(k, NULL));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_revoke(k, 2, KM_REVOKE_KEY_COMPROMISE, 1700000000));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &v, sizeof v));
    ck_assert_uint_eq(v.revoke_reason, KM_REVOKE_SUPERSEDED);
    ck_assert_int_ne(v.deactivated, 0);
    ck_assert_int_eq(v.compromise_date, 0);
    OK(km_keyinfo_version(info, 1, &v, sizeof v));
    ck_assert_uint_eq(v.revoke_reason, KM_REVOKE_KEY_COMPROMISE);
    ck_assert_int_eq(v.compromise_date, 1700000000);
    km_keyinfo_free(info);

    /* the owner and the grants, as each principal sees them */
    tu_principals_add(ctx);
    OK(km_key_grant(k, TU_USER, KM_PERM_DECRYPT));
    OK(km_key_grant(k, "role:custodian", KM_PERM_ENCRYPT));
    seen[0] = '\0';
    OK(km_key_grants(k, grant_collect, seen));
    ck_assert_msg(strstr(seen, TU_USER "=2") && strstr(seen, "role:custodian=1"), "%s", seen);
    user = tu_as(dir, TU_USER, TU_USER_PASS);
    OK(km_key_open(&ku, user, "told"));
    seen[0] = '\0';
    OK(km_key_grants(ku, grant_collect, seen));
    ck_assert_str_eq(seen, TU_USER "=2"); /* not the custodians' */
    km_key_free(ku);
    aud = tu_as(dir, TU_AUDITOR, TU_AUDITOR_PASS);
    OK(km_key_open(&ka, aud, "told"));
    seen[0] = '\0';
    OK(km_key_grants(ka, grant_collect, seen));
    ck_assert_msg(strstr(seen, "role:custodian=1") != NULL, "%s", seen);
    km_key_free(ka);
    adm = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_create(&ka, adm, "admins", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_info(&info, ka));
    ck_assert_str_eq(km_keyinfo_owner(info), TU_ADMIN);
    km_keyinfo_free(info);
    km_key_free(ka);
    km_close(adm);
    km_close(aud);
    km_close(user);
    km_key_free(k);
}
END_TEST

/* ---------------------------------------------------------------- purge */

START_TEST(test_purge)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *other = NULL, *again = NULL;
    uint8_t id[16];
    km_ctx *c2;

    o.activate_at = tu_now + 86400; /* pre-active: schedulable at once */
    OK(km_key_create(&k, ctx, "gone", KM_KEY_AES_256_GCM, &o));
    OK(km_key_alias_add(k, "gone-alias", 0));
    memcpy(id, km_key_id(k), 16);
    RC(KM_E_STATE, km_key_purge(k)); /* not destroyed */
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "pre-active"));
    OK(km_key_schedule_destroy(k, 1, 7));
    RC(KM_E_STATE, km_key_purge(k)); /* destroy-pending */
    tu_now += 8 * 86400;
    OK(km_maintain(ctx, NULL));
    RC(KM_E_STATE, km_key_purge(k)); /* destroyed, but within the 90-day retention */
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "tombstone_days"));
    RC(KM_E_EXISTS, km_key_create(NULL, ctx, "gone", KM_KEY_AES_256_GCM, NULL));
    tu_now += 91 * 86400;
    OK(km_key_purge(k));
    RC(KM_E_NOTFOUND, km_key_open(&other, ctx, "gone"));
    RC(KM_E_NOTFOUND, km_key_open(&other, ctx, "gone-alias"));
    RC(KM_E_NOTFOUND, km_key_open_id(&other, ctx, id));
    RC(KM_E_NOTFOUND, km_key_rotate(k, NULL));
    km_key_free(k);
    /* the names are free */
    OK(km_key_create(&again, ctx, "gone", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_alias_add(again, "gone-alias", 0));
    km_key_free(again);
    /* another context sees it gone; the audit chain is whole */
    c2 = tu_vault_clocked(dir, 0);
    RC(KM_E_NOTFOUND, km_key_open_id(&other, c2, id));
    OK(km_audit_verify(c2, NULL, NULL, NULL));
    km_close(c2);
}
END_TEST

START_TEST(test_purge_refused_by_protection_and_policy)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL, *l = NULL;

    o.activate_at = tu_now + 86400;
    o.policy = "{\"version\": 1, \"destruction\": {\"tombstone_days\": 400}}";
    OK(km_key_create(&k, ctx, "long-kept", KM_KEY_AES_256_GCM, &o));
    OK(km_key_schedule_destroy(k, 1, 7));
    o.policy = NULL;
    OK(km_key_create(&l, ctx, "protected", KM_KEY_AES_256_GCM, &o));
    OK(km_key_schedule_destroy(l, 1, 7));
    tu_now += 8 * 86400;
    OK(km_maintain(ctx, NULL));
    OK(set1(l, KM_SET_DELETION_PROTECTION, 1, NULL));
    tu_now += 100 * 86400;
    RC(KM_E_STATE, km_key_purge(k)); /* its own policy keeps it 400 days */
    RC(KM_E_STATE, km_key_purge(l));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "protected against deletion"));
    /* a key policy may not shorten the retention */
    RC(KM_E_POLICY, set1(k, KM_SET_POLICY, 0,
                         "{\"version\": 1, \"destruction\": {\"tombstone_days\": 10}}"));
    tu_now += 300 * 86400;
    OK(km_key_purge(k));
    km_key_free(k);
    km_key_free(l);
}
END_TEST

static Suite *keymeta_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("keymeta", "core", &tc, 60, setup, teardown);
    tcase_add_test(tc, test_keymeta_rename);
    tcase_add_test(tc, test_keymeta_rename_other_handle);
    tcase_add_test(tc, test_keymeta_alias);
    tcase_add_test(tc, test_keymeta_description_tags);
    tcase_add_test(tc, test_keymeta_old_record);
    tcase_add_test(tc, test_keymeta_list_filtered);
    tcase_add_test(tc, test_keymeta_nothing_in_clear);
    tcase_add_test(tc, test_keymeta_alias_index_replayed);
    tcase_add_test(tc, test_keymeta_needs_admin);
    tcase_add_test(tc, test_keyset_rotation_and_usage);
    tcase_add_test(tc, test_keyset_exportable_only_towards_less);
    tcase_add_test(tc, test_keyset_policy_tighten_only);
    tcase_add_test(tc, test_keyset_deletion_protection);
    tcase_add_test(tc, test_window_min_versions);
    tcase_add_test(tc, test_window_trim);
    tcase_add_test(tc, test_import_further_versions);
    tcase_add_test(tc, test_backup_restore);
    tcase_add_test(tc, test_info_tells_everything);
    tc = tu_tcase(s, "clocked", 60, setup_clocked, teardown);
    tcase_add_test(tc, test_purge);
    tcase_add_test(tc, test_purge_refused_by_protection_and_policy);
    return s;
}

int main(void)
{
    return tu_run(keymeta_suite());
}
