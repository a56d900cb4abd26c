/* check_vault.c - the LMDB store (src/store/lmdb.c) under src/store/store.c and keyslot.c:
 * keyslots, sealed records, sharing. */
#include <check.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "km_int.h"
#include "store.h"
#include "testraw.h"
#include "testutil.h"

#define PASS2 "another passphrase"

static char *tmp;            /* per-test temporary directory */
static char vdir[4400];      /* tmp/vault */

static void setup(void)
{
    tu_setup(&tmp, NULL, NULL);
    snprintf(vdir, sizeof vdir, "%s/vault", tmp);
}

static void teardown(void)
{
    tu_teardown(&tmp, NULL);
}

static uint8_t km_test_pid[16]; /* the principal out-parameter (unused: owner opens) */

static int vopen_at(const char *dir, const char *pass, uint32_t flags, uint64_t map_size,
                    km__env **env, km_secret **master, uint8_t id[16])
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    o.flags = flags;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN;
    o.map_size = map_size;
    return km__env_open(env, dir, &o, master, id, km_test_pid);
}

static int vopen(const char *pass, uint32_t flags, km__env **env, km_secret **master,
                 uint8_t id[16])
{
    return vopen_at(vdir, pass, flags, 0, env, master, id);
}

/* An open vault and its sealer. */
struct vault {
    km__env *env;
    km_secret *master;
    km__sealer *s;
    uint8_t id[16];
};

static void vault_up_at(struct vault *v, const char *dir, uint32_t flags, uint64_t map_size)
{
    int rc;
    memset(v, 0, sizeof *v);
    rc = vopen_at(dir, TU_PASS, flags, map_size, &v->env, &v->master, v->id);
    ck_assert_msg(rc == KM_OK, "km__env_open: %s (%s)", km_err_name(rc), km_error_last()->message);
    ck_assert_int_eq(km__sealer_new(&v->s, v->master), KM_OK);
}

static void vault_up(struct vault *v, uint32_t flags)
{
    vault_up_at(v, vdir, flags, 0);
}

static void vault_down(struct vault *v)
{
    km__sealer_free(v->s);
    km_secret_free(v->master);
    km__env_close(v->env);
    memset(v, 0, sizeof *v);
}

static void put1(struct vault *v, km__table tbl, const char *key, const char *val)
{
    km__txn *t = NULL;
    ck_assert_int_eq(km__txn_begin(v->env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v->s, tbl, (const uint8_t *)key, strlen(key),
                                 (const uint8_t *)val, strlen(val), 0), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
}

/* km__rec_get in its own read txn; on KM_OK compares with `want`. */
static int get1(struct vault *v, km__table tbl, const char *key, const char *want)
{
    km__txn *t = NULL;
    km_secret *sec = NULL;
    int rc;
    ck_assert_int_eq(km__txn_begin(v->env, 0, &t), KM_OK);
    rc = km__rec_get(t, v->s, tbl, (const uint8_t *)key, strlen(key), &sec);
    km__txn_abort(t);
    if (rc == KM_OK) {
        ck_assert_msg(want != NULL, "record %s opened, expected an error", key);
        ck_assert_uint_eq(km_secret_len(sec), strlen(want));
        ck_assert_int_eq(memcmp(km_secret_data(sec), want, strlen(want)), 0);
    } else {
        ck_assert_ptr_null(sec);
    }
    km_secret_free(sec);
    return rc;
}

/* ------------------------------------------------------------ open/create */

START_TEST(test_vault_create_then_reopen)
{
    struct stat st;
    km__env *env = NULL;
    km_secret *m1 = NULL, *m2 = NULL, *m3 = NULL;
    uint8_t id1[16], id2[16], id3[16];
    char other[sizeof vdir];

    ck_assert_int_eq(vopen(TU_PASS, KM_OPEN_CREATE, &env, &m1, id1), KM_OK);
    ck_assert_ptr_nonnull(env);
    ck_assert_uint_eq(km_secret_len(m1), 32);
    ck_assert(!tu_all_zero(km_secret_data(m1), 32));
    ck_assert(!tu_all_zero(id1, 16));
    km__env_close(env);
    ck_assert_int_eq(stat(vdir, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);

    env = NULL;
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m2, id2), KM_OK);
    ck_assert_int_eq(memcmp(km_secret_data(m1), km_secret_data(m2), 32), 0);
    ck_assert_int_eq(memcmp(id1, id2, 16), 0);
    km__env_close(env);

    /* another vault: another master and id */
    snprintf(other, sizeof other, "%s/other", tmp);
    ck_assert_int_eq(vopen_at(other, TU_PASS, KM_OPEN_CREATE, 0, &env, &m3, id3), KM_OK);
    ck_assert_int_ne(memcmp(km_secret_data(m1), km_secret_data(m3), 32), 0);
    ck_assert_int_ne(memcmp(id1, id3, 16), 0);
    km__env_close(env);
    km_secret_free(m1);
    km_secret_free(m2);
    km_secret_free(m3);
}
END_TEST

START_TEST(test_vault_wrong_passphrase_is_auth)
{
    struct vault v;
    km__env *env = (km__env *)&v;
    km_secret *m = (km_secret *)&v;
    uint8_t id[16] = { 0 };

    vault_up(&v, KM_OPEN_CREATE);
    vault_down(&v);
    ck_assert_int_eq(vopen("wrong passphrase", 0, &env, &m, id), KM_E_AUTH);
    ck_assert_ptr_null(env);
    ck_assert_ptr_null(m);
    ck_assert(tu_all_zero(id, 16));
    ck_assert_str_eq(km_error_last()->message, "no keyslot opens with this passphrase");
    /* a prefix of the right one does not open either */
    ck_assert_int_eq(vopen("test", 0, &env, &m, id), KM_E_AUTH);
}
END_TEST

START_TEST(test_vault_missing_without_create_is_notfound)
{
    struct stat st;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16];
    char path[4500];

    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_NOTFOUND);
    ck_assert_int_ne(stat(vdir, &st), 0); /* nothing created */
    /* an empty directory holds no vault, and stays empty */
    ck_assert_int_eq(mkdir(vdir, 0700), 0);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_NOTFOUND);
    snprintf(path, sizeof path, "%s/data.mdb", vdir);
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_ptr_null(env);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_vault_excl_refuses_existing)
{
    struct vault v;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16], id0[16];

    /* EXCL on a fresh directory creates */
    vault_up(&v, KM_OPEN_CREATE | KM_OPEN_EXCL);
    memcpy(id0, v.id, 16);
    vault_down(&v);
    ck_assert_int_eq(vopen(TU_PASS, KM_OPEN_CREATE | KM_OPEN_EXCL, &env, &m, id), KM_E_EXISTS);
    ck_assert_ptr_null(env);
    /* CREATE alone opens the existing one */
    ck_assert_int_eq(vopen(TU_PASS, KM_OPEN_CREATE, &env, &m, id), KM_OK);
    ck_assert_int_eq(memcmp(id, id0, 16), 0);
    km__env_close(env);
    km_secret_free(m);
}
END_TEST

START_TEST(test_vault_bad_kdf_cost_is_invalid)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16];
    struct stat st;

    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    o.kdf_cost = KM_KDF_COST_MIN - 1;
    ck_assert_int_eq(km__env_open(&env, vdir, &o, &m, id, km_test_pid), KM_E_INVALID);
    o.kdf_cost = KM_KDF_COST_MAX + 1;
    ck_assert_int_eq(km__env_open(&env, vdir, &o, &m, id, km_test_pid), KM_E_INVALID);
    o.kdf_cost = KM_KDF_COST_MIN;
    o.passphrase_len = 0;
    ck_assert_int_eq(km__env_open(&env, vdir, &o, &m, id, km_test_pid), KM_E_INVALID);
    ck_assert_int_ne(stat(vdir, &st), 0);
    ck_assert_int_eq(km__env_open(NULL, vdir, &o, &m, id, km_test_pid), KM_E_INVALID);
}
END_TEST

START_TEST(test_vault_second_passphrase_slot_opens)
{
    struct vault v;
    km__txn *t = NULL;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16];

    vault_up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_add_passphrase(t, v.master, (const uint8_t *)PASS2, strlen(PASS2),
                                             KM_KDF_COST_MIN), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    /* a cost out of range is refused */
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__slot_add_passphrase(t, v.master, (const uint8_t *)PASS2, strlen(PASS2),
                                             KM_KDF_COST_MIN - 1), KM_E_INVALID);
    km__txn_abort(t);
    put1(&v, KM__T_KEYS, "k", "value");
    vault_down(&v);

    ck_assert_int_eq(vopen(PASS2, 0, &env, &m, id), KM_OK);
    km__env_close(env);
    vault_up(&v, 0);
    ck_assert_int_eq(memcmp(km_secret_data(v.master), km_secret_data(m), 32), 0);
    ck_assert_int_eq(memcmp(v.id, id, 16), 0);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "k", "value"), KM_OK);
    vault_down(&v);
    km_secret_free(m);
    m = NULL;
    ck_assert_int_eq(vopen("neither", 0, &env, &m, id), KM_E_AUTH);
}
END_TEST

START_TEST(test_vault_env_shared_in_process)
{
    struct vault a, b;
    char alias[4500];

    vault_up(&a, KM_OPEN_CREATE);
    /* another spelling of the same directory: same st_dev/st_ino */
    snprintf(alias, sizeof alias, "%s/./vault/", tmp);
    vault_up_at(&b, alias, 0, 0);
    ck_assert_ptr_eq(a.env, b.env);
    ck_assert_int_eq(memcmp(km_secret_data(a.master), km_secret_data(b.master), 32), 0);
    put1(&a, KM__T_KEYS, "shared", "seen by both");
    /* dropping one reference keeps the environment for the other */
    vault_down(&a);
    ck_assert_int_eq(get1(&b, KM__T_KEYS, "shared", "seen by both"), KM_OK);
    vault_down(&b);
    /* the last close closed it: a new open works */
    vault_up(&a, 0);
    ck_assert_int_eq(get1(&a, KM__T_KEYS, "shared", "seen by both"), KM_OK);
    vault_down(&a);
}
END_TEST

/* -------------------------------------------------------------- records */

struct seen {
    int n;
    char keys[8][32];
    char vals[8][32];
    int stop_at;           /* stop after this many (0: never) */
    int stop_rc;
};

static int collect(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                   void *arg)
{
    struct seen *s = arg;
    ck_assert_int_lt(s->n, 8);
    ck_assert_uint_lt(key_len, 32);
    ck_assert_uint_lt(val_len, 32);
    memcpy(s->keys[s->n], key, key_len);
    s->keys[s->n][key_len] = '\0';
    memcpy(s->vals[s->n], val, val_len);
    s->vals[s->n][val_len] = '\0';
    s->n++;
    if (s->stop_at && s->n == s->stop_at)
        return s->stop_rc;
    return 0;
}

START_TEST(test_vault_record_round_trip)
{
    struct vault v;
    struct seen s;
    km__txn *t = NULL;
    km_secret *sec = NULL;

    vault_up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_VMETA, (const uint8_t *)"ab2", 3,
                                 (const uint8_t *)"two", 3, 0), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_VMETA, (const uint8_t *)"ab1", 3,
                                 (const uint8_t *)"one", 3, 0), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_VMETA, (const uint8_t *)"ac1", 3,
                                 (const uint8_t *)"three", 5, 0), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_VMETA, (const uint8_t *)"aa9", 3,
                                 (const uint8_t *)"zero", 4, 0), KM_OK);
    /* the write txn sees its own records */
    ck_assert_int_eq(km__rec_get(t, v.s, KM__T_VMETA, (const uint8_t *)"ab1", 3, &sec), KM_OK);
    km_secret_free(sec);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);

    ck_assert_int_eq(get1(&v, KM__T_VMETA, "ab1", "one"), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_VMETA, "ac1", "three"), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_VMETA, "zz", NULL), KM_E_NOTFOUND);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "ab1", NULL), KM_E_NOTFOUND); /* tables are separate */

    /* prefix iteration, in key order, stopping at the prefix end */
    ck_assert_int_eq(km__txn_begin(v.env, 0, &t), KM_OK);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_VMETA, (const uint8_t *)"ab", 2, collect, &s),
                     KM_OK);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.keys[0], "ab1");
    ck_assert_str_eq(s.vals[0], "one");
    ck_assert_str_eq(s.keys[1], "ab2");
    ck_assert_str_eq(s.vals[1], "two");
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_VMETA, NULL, 0, collect, &s), KM_OK);
    ck_assert_int_eq(s.n, 4);
    ck_assert_str_eq(s.keys[0], "aa9");
    ck_assert_str_eq(s.keys[3], "ac1");
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_VMETA, (const uint8_t *)"b", 1, collect, &s),
                     KM_OK);
    ck_assert_int_eq(s.n, 0);
    /* the callback stops it: positive -> KM_OK, negative -> that code */
    memset(&s, 0, sizeof s);
    s.stop_at = 1;
    s.stop_rc = 1;
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_VMETA, NULL, 0, collect, &s), KM_OK);
    ck_assert_int_eq(s.n, 1);
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    s.stop_rc = KM_E_STATE;
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_VMETA, NULL, 0, collect, &s), KM_E_STATE);
    ck_assert_int_eq(s.n, 2);
    /* a read txn cannot write */
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_VMETA, (const uint8_t *)"x", 1,
                                 (const uint8_t *)"x", 1, 0), KM_E_INVALID);
    ck_assert_int_eq(km__rec_del(t, KM__T_VMETA, (const uint8_t *)"ab1", 3), KM_E_INVALID);
    km__txn_abort(t);

    /* delete */
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_del(t, KM__T_VMETA, (const uint8_t *)"ab1", 3), KM_OK);
    ck_assert_int_eq(km__rec_del(t, KM__T_VMETA, (const uint8_t *)"ab1", 3), KM_E_NOTFOUND);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_VMETA, "ab1", NULL), KM_E_NOTFOUND);
    ck_assert_int_eq(get1(&v, KM__T_VMETA, "ab2", "two"), KM_OK);

    /* an aborted write leaves nothing */
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"gone", 4,
                                 (const uint8_t *)"x", 1, 0), KM_OK);
    km__txn_abort(t);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "gone", NULL), KM_E_NOTFOUND);

    /* arguments */
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_KEYS, (const uint8_t *)"k", 1, NULL, 0, 0),
                     KM_E_INVALID);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_SLOTS, (const uint8_t *)"k", 1,
                                 (const uint8_t *)"x", 1, 0), KM_E_INVALID);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T__COUNT, (const uint8_t *)"k", 1,
                                 (const uint8_t *)"x", 1, 0), KM_E_INVALID);
    ck_assert_int_eq(km__rec_put(t, NULL, KM__T_KEYS, (const uint8_t *)"k", 1,
                                 (const uint8_t *)"x", 1, 0), KM_E_INVALID);
    ck_assert_int_eq(km__rec_get(t, v.s, KM__T_KEYS, NULL, 0, &sec), KM_E_INVALID);
    km__txn_abort(t);
    km__txn_abort(NULL);
    ck_assert_int_eq(km__txn_begin(NULL, 0, &t), KM_E_INVALID);
    ck_assert_ptr_null(t);
    vault_down(&v);
}
END_TEST

START_TEST(test_vault_nooverwrite_is_exists)
{
    struct vault v;
    km__txn *t = NULL;

    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_NAMES, "n", "first");
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_NAMES, (const uint8_t *)"n", 1,
                                 (const uint8_t *)"second", 6, KM__PUT_NOOVERWRITE), KM_E_EXISTS);
    /* the txn is still usable after KM_E_EXISTS */
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_NAMES, (const uint8_t *)"m", 1,
                                 (const uint8_t *)"other", 5, KM__PUT_NOOVERWRITE), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_NAMES, "n", "first"), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_NAMES, "m", "other"), KM_OK);
    /* without the flag, it overwrites */
    put1(&v, KM__T_NAMES, "n", "third");
    ck_assert_int_eq(get1(&v, KM__T_NAMES, "n", "third"), KM_OK);
    vault_down(&v);
}
END_TEST

START_TEST(test_vault_record_moved_is_corrupt)
{
    struct vault v;
    tu_raw r;
    struct seen s;
    km__txn *t = NULL;
    uint8_t *val;
    size_t len;

    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_KEYS, "key-a", "sealed for keys/key-a");
    vault_down(&v);

    tu_raw_begin(&r, vdir, 0, 0);   /* as an attacker with the file */
    val = tu_raw_get(&r, "keys", "key-a", 5, &len);
    tu_raw_put(&r, "keys", "key-b", 5, val, len);      /* same table, other key */
    tu_raw_put(&r, "material", "key-a", 5, val, len);  /* other table, same key */
    tu_raw_put(&r, "vmeta", "key-c", 5, val, len);     /* both */
    tu_raw_end(&r);
    free(val);

    vault_up(&v, 0);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "key-a", "sealed for keys/key-a"), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "key-b", NULL), KM_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "keys"));
    ck_assert_ptr_null(strstr(km_error_last()->message, "sealed for"));
    ck_assert_int_eq(get1(&v, KM__T_MATERIAL, "key-a", NULL), KM_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "material"));
    ck_assert_int_eq(get1(&v, KM__T_VMETA, "key-c", NULL), KM_E_CORRUPT);
    /* iteration meets the moved record too */
    ck_assert_int_eq(km__txn_begin(v.env, 0, &t), KM_OK);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(km__rec_iter(t, v.s, KM__T_KEYS, NULL, 0, collect, &s), KM_E_CORRUPT);
    ck_assert_int_eq(s.n, 1);
    km__txn_abort(t);
    vault_down(&v);
}
END_TEST

START_TEST(test_vault_altered_record_is_corrupt)
{
    static const char *const names[] = { "r-body", "r-tag", "r-nonce", "r-format", "r-short",
                                         "r-tiny" };
    struct vault v;
    tu_raw r;
    uint8_t *val;
    size_t len, i;

    vault_up(&v, KM_OPEN_CREATE);
    for (i = 0; i < 6; i++)
        put1(&v, KM__T_COUNTERS, names[i], "counter value 12345");
    vault_down(&v);

    tu_raw_begin(&r, vdir, 0, 0);
    for (i = 0; i < 6; i++) {
        val = tu_raw_get(&r, "counters", names[i], strlen(names[i]), &len);
        ck_assert_uint_eq(len, 1 + 12 + 19 + 16);
        switch (i) {
        case 0: val[1 + 12 + 3] ^= 0x01; break;    /* a ciphertext bit */
        case 1: val[len - 1] ^= 0x80; break;       /* a tag bit */
        case 2: val[1] ^= 0x10; break;             /* a nonce bit */
        case 3: val[0] = 2; break;                 /* a record format we do not know */
        case 4: len -= 1; break;                   /* truncated */
        case 5: len = 20; break;                   /* shorter than the overhead */
        }
        tu_raw_put(&r, "counters", names[i], strlen(names[i]), val, len);
        free(val);
    }
    tu_raw_end(&r);

    vault_up(&v, 0);
    for (i = 0; i < 6; i++) {
        ck_assert_msg(get1(&v, KM__T_COUNTERS, names[i], NULL) == KM_E_CORRUPT, "%s", names[i]);
        ck_assert_ptr_nonnull(strstr(km_error_last()->message, "counters"));
    }
    vault_down(&v);
}
END_TEST

/* ------------------------------------------------------------- metadata */

START_TEST(test_vault_newer_format_is_unsupported)
{
    struct vault v;
    tu_raw r;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16], newer = 6, zero = 0;

    vault_up(&v, KM_OPEN_CREATE);
    vault_down(&v);
    tu_raw_begin(&r, vdir, 0, 0);
    tu_raw_put(&r, "meta", "format", 6, &newer, 1);
    tu_raw_end(&r);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_UNSUPPORTED);
    ck_assert_int_eq(vopen(TU_PASS, KM_OPEN_CREATE, &env, &m, id), KM_E_UNSUPPORTED);
    ck_assert_ptr_null(env);
    tu_raw_begin(&r, vdir, 0, 0);
    tu_raw_put(&r, "meta", "format", 6, &zero, 1);
    tu_raw_end(&r);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
}
END_TEST

START_TEST(test_vault_swapped_meta_is_corrupt)
{
    struct vault v;
    tu_raw r;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16], other_id[16];
    MDB_val k = { 5, (void *)(uintptr_t)"check" };

    vault_up(&v, KM_OPEN_CREATE);
    vault_down(&v);
    /* another vault id in the unsealed meta: the sealed copy disagrees */
    memset(other_id, 0x5a, sizeof other_id);
    tu_raw_begin(&r, vdir, 0, 0);
    tu_raw_put(&r, "meta", "vault-id", 8, other_id, 16);
    tu_raw_end(&r);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    ck_assert_ptr_null(m);
    /* the sealed copy removed */
    tu_raw_begin(&r, vdir, 0, 0);
    ck_assert_int_eq(mdb_del(r.txn, tu_raw_dbi(&r, "meta"), &k, NULL), 0);
    tu_raw_end(&r);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    /* an id of the wrong length */
    tu_raw_begin(&r, vdir, 0, 0);
    tu_raw_put(&r, "meta", "vault-id", 8, other_id, 15);
    tu_raw_end(&r);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
}
END_TEST

/* Sets the u32 TLV entry `tag` of slot 1 to `val`. */
static void slot_set_u32(uint8_t tag, uint32_t val)
{
    tu_raw r;
    uint8_t idb[4] = { 0, 0, 0, 1 }, *rec;
    size_t len, off = 0;
    int done = 0;

    tu_raw_begin(&r, vdir, 0, 0);
    rec = tu_raw_get(&r, "slots", idb, 4, &len);
    while (off + 5 <= len) {
        uint32_t l = km__be32_get(rec + off + 1);
        if (rec[off] == tag) {
            ck_assert_uint_eq(l, 4);
            km__be32_put(rec + off + 5, val);
            done = 1;
        }
        off += 5 + l;
    }
    ck_assert(done);
    tu_raw_put(&r, "slots", idb, 4, rec, len);
    tu_raw_end(&r);
    free(rec);
}

START_TEST(test_vault_absurd_slot_is_corrupt)
{
    struct vault v;
    km__env *env = NULL;
    km_secret *m = NULL;
    uint8_t id[16];

    vault_up(&v, KM_OPEN_CREATE);
    vault_down(&v);
    /* refused before scrypt runs: 2^23 with r = 8 would need 8 GiB */
    slot_set_u32(3, KM_KDF_COST_MAX + 1); /* log2n */
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    slot_set_u32(3, KM_KDF_COST_MIN - 1);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    slot_set_u32(3, KM_KDF_COST_MIN);
    slot_set_u32(4, 16);                  /* r */
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    slot_set_u32(4, 8);
    slot_set_u32(5, 2);                   /* p */
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    slot_set_u32(5, 1);
    slot_set_u32(2, 7);                   /* kdf */
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_E_CORRUPT);
    slot_set_u32(2, 1);
    ck_assert_int_eq(vopen(TU_PASS, 0, &env, &m, id), KM_OK);
    km__env_close(env);
    km_secret_free(m);
}
END_TEST

/* A format-2 vault whose keyslots carry no MAC (as an older libkm wrote
 * them) is moved to format 3 at its first open through km_open: every slot
 * gets its MAC in the same transaction as the format byte and the sealed
 * check, and from then on a slot edited in the file fails the open. */
START_TEST(test_vault_format2_slots_authenticated_at_first_open)
{
    static const char pol[] = "{\"version\": 1}";
    uint8_t idb[4] = { 0, 0, 0, 1 }, *rec, *f;
    struct vault v;
    km__txn *t = NULL;
    km_ctx *c = NULL;
    size_t len, flen;
    tu_raw r;

    vault_up(&v, KM_OPEN_CREATE);
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_META, (const uint8_t *)"policy", 6,
                                 (const uint8_t *)pol, sizeof pol - 1, 0), KM_OK);
    ck_assert_int_eq(km__store_format_upgrade(t, v.s, v.master, 2), KM_OK);
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    vault_down(&v);
    /* the slot as format 2 had it: no MAC entry (16) */
    tu_raw_begin(&r, vdir, 0, 0);
    rec = tu_raw_get(&r, "slots", idb, 4, &len);
    ck_assert_uint_ne(tu_tlv_at(rec, len, 16), (size_t)-1);
    len = tu_tlv_drop(rec, len, 16);
    tu_raw_put(&r, "slots", idb, 4, rec, len);
    free(rec);
    f = tu_raw_get(&r, "meta", "format", 6, &flen);
    ck_assert(flen == 1 && f[0] == 2);
    free(f);
    tu_raw_end(&r);

    /* the vault above is LMDB's file, edited raw: open that one even when
     * tests/etcd_suites.sh runs this suite against etcd (Check forks per
     * test, so this only changes this test's process) */
    unsetenv("KM_TEST_ETCD");
    ck_assert_msg(tu_vault_open(&c, tmp, TU_PASS, 0) == KM_OK, "first open: %s",
                  km_error_last()->message);
    km_close(c);
    tu_raw_begin(&r, vdir, MDB_RDONLY, 0);
    f = tu_raw_get(&r, "meta", "format", 6, &flen);
    ck_assert(flen == 1 && f[0] == KM__FORMAT_CURRENT);   /* 4 since issue 18 */
    rec = tu_raw_get(&r, "slots", idb, 4, &len);
    ck_assert_uint_eq(tu_tlv_at(rec, len, 16), len - 37);
    tu_raw_end(&r);
    free(f);
    ck_assert_int_eq(tu_vault_open(&c, tmp, TU_PASS, 0), KM_OK);
    km_close(c);
    /* format 3 now: the slot without its MAC again is refused */
    len = tu_tlv_drop(rec, len, 16);
    tu_raw_begin(&r, vdir, 0, 0);
    tu_raw_put(&r, "slots", idb, 4, rec, len);
    tu_raw_end(&r);
    free(rec);
    ck_assert_int_eq(tu_vault_open(&c, tmp, TU_PASS, 0), KM_E_CORRUPT);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "keyslot 1"));
}
END_TEST

/* ---------------------------------------------------- the file on disk */

START_TEST(test_vault_file_holds_no_plaintext)
{
    static const char canary[] = "CANARY-plaintext-7f3a9c1e-never-on-disk";
    struct vault v;
    uint8_t master[32], *file;
    char path[4500];
    size_t len;

    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_MATERIAL, "k1", canary);
    put1(&v, KM__T_KEYS, "k2", canary);
    memcpy(master, km_secret_data(v.master), 32);
    ck_assert_int_eq(get1(&v, KM__T_MATERIAL, "k1", canary), KM_OK);
    vault_down(&v);

    snprintf(path, sizeof path, "%s/data.mdb", vdir);
    file = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(file);
    ck_assert(tu_memmem(file, len, (const uint8_t *)"material", 8)); /* the search works */
    ck_assert(!tu_memmem(file, len, (const uint8_t *)canary, strlen(canary)));
    ck_assert(!tu_memmem(file, len, (const uint8_t *)canary, 8));
    ck_assert(!tu_memmem(file, len, master, 32));
    ck_assert(!tu_memmem(file, len, master, 8));
    ck_assert(!tu_memmem(file, len, (const uint8_t *)TU_PASS, strlen(TU_PASS)));
    free(file);
    km_memzero(master, sizeof master);
}
END_TEST

/* ---------------------------------------------------------------- sealer */

START_TEST(test_vault_name_hash_is_keyed)
{
    struct vault a, b;
    uint8_t h1[32], h2[32], h3[32], h4[32];
    char other[sizeof vdir];

    vault_up(&a, KM_OPEN_CREATE);
    snprintf(other, sizeof other, "%s/other", tmp);
    vault_up_at(&b, other, KM_OPEN_CREATE, 0);
    ck_assert_int_eq(km__sealer_name_hash(a.s, "orders", 6, h1), KM_OK);
    ck_assert_int_eq(km__sealer_name_hash(a.s, "orders", 6, h2), KM_OK);
    ck_assert_int_eq(km__sealer_name_hash(a.s, "orderz", 6, h3), KM_OK);
    ck_assert_int_eq(km__sealer_name_hash(b.s, "orders", 6, h4), KM_OK);
    ck_assert_int_eq(memcmp(h1, h2, 32), 0);
    ck_assert_int_ne(memcmp(h1, h3, 32), 0);
    ck_assert_int_ne(memcmp(h1, h4, 32), 0);
    ck_assert_int_eq(km__sealer_name_hash(a.s, NULL, 1, h1), KM_E_INVALID);
    ck_assert_int_eq(km__sealer_name_hash(NULL, "x", 1, h1), KM_E_INVALID);
    /* a record sealed in one vault does not open in another */
    put1(&a, KM__T_KEYS, "k", "vault a");
    vault_down(&a);
    vault_down(&b);
    {
        tu_raw r;
        uint8_t *val;
        size_t len;
        char save[4400];
        tu_raw_begin(&r, vdir, 0, 0);
        val = tu_raw_get(&r, "keys", "k", 1, &len);
        mdb_txn_abort(r.txn);
        mdb_env_close(r.env);
        memcpy(save, vdir, sizeof save);
        snprintf(vdir, sizeof vdir, "%s", other);
        tu_raw_begin(&r, vdir, 0, 0);
        tu_raw_put(&r, "keys", "k", 1, val, len);
        tu_raw_end(&r);
        free(val);
        vault_up(&b, 0);
        ck_assert_int_eq(get1(&b, KM__T_KEYS, "k", NULL), KM_E_CORRUPT);
        vault_down(&b);
        memcpy(vdir, save, sizeof save);
    }
}
END_TEST

/* ------------------------------------------------------- map size, fork */

START_TEST(test_vault_map_full_is_full_and_atomic)
{
    static uint8_t big[8192];
    struct vault v;
    km__txn *t = NULL;
    char key[16];
    int i, rc = KM_OK;

    memset(big, 'b', sizeof big);
    vault_up_at(&v, vdir, KM_OPEN_CREATE, (uint64_t)256 << 10); /* 256 KiB */
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    for (i = 0; i < 100 && rc == KM_OK; i++) {
        snprintf(key, sizeof key, "big%03d", i);
        rc = km__rec_put(t, v.s, KM__T_MATERIAL, (const uint8_t *)key, strlen(key), big,
                         sizeof big, 0);
    }
    ck_assert_int_eq(rc, KM_E_FULL);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_LMDB);
    ck_assert_int_eq((int)(long)km_error_last()->native, MDB_MAP_FULL);
    /* the txn is dead: further writes and the commit fail, nothing lands */
    ck_assert_int_eq(km__rec_put(t, v.s, KM__T_MATERIAL, (const uint8_t *)"x", 1, big, 1, 0),
                     KM_E_FULL);
    ck_assert_int_eq(km__txn_commit(t), KM_E_FULL);
    ck_assert_int_eq(get1(&v, KM__T_MATERIAL, "big000", NULL), KM_E_NOTFOUND);
    /* the vault still works */
    put1(&v, KM__T_MATERIAL, "small", "fits");
    ck_assert_int_eq(get1(&v, KM__T_MATERIAL, "small", "fits"), KM_OK);
    vault_down(&v);
    /* recovery after a resize: reopened with a larger map, the same
     * transaction commits and everything is there */
    vault_up_at(&v, vdir, 0, (uint64_t)4 << 20);
    ck_assert_int_eq(km__txn_begin(v.env, 1, &t), KM_OK);
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "big%03d", i);
        ck_assert_int_eq(km__rec_put(t, v.s, KM__T_MATERIAL, (const uint8_t *)key, strlen(key),
                                     big, sizeof big, 0), KM_OK);
    }
    ck_assert_int_eq(km__txn_commit(t), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_MATERIAL, "small", "fits"), KM_OK);
    {
        km_secret *sec = NULL;
        ck_assert_int_eq(km__txn_begin(v.env, 0, &t), KM_OK);
        ck_assert_int_eq(km__rec_get(t, v.s, KM__T_MATERIAL, (const uint8_t *)"big099", 6, &sec),
                         KM_OK);
        km__txn_abort(t);
        ck_assert_uint_eq(km_secret_len(sec), sizeof big);
        ck_assert_int_eq(memcmp(km_secret_data(sec), big, sizeof big), 0);
        km_secret_free(sec);
    }
    vault_down(&v);
}
END_TEST

START_TEST(test_vault_fork_child_refused)
{
    struct vault v;
    km__txn *t = NULL;
    pid_t pid;
    int status;

    ck_assert_int_eq(km_init(), KM_OK);
    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_KEYS, "k", "before fork");
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct vault c;
        km__env *env = NULL;
        km_secret *m = NULL;
        uint8_t id[16];
        if (km__txn_begin(v.env, 0, &t) != KM_E_FORK || t != NULL)
            _exit(10);
        /* opening again in the child gives a fresh environment */
        if (vopen(TU_PASS, 0, &env, &m, id) != KM_OK || env == v.env)
            _exit(11);
        memset(&c, 0, sizeof c);
        c.env = env;
        c.master = m;
        if (km__sealer_new(&c.s, m) != KM_OK || get1(&c, KM__T_KEYS, "k", "before fork") != KM_OK)
            _exit(12);
        vault_down(&c);
        vault_down(&v);     /* the inherited env is only dropped */
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "k", "before fork"), KM_OK);
    vault_down(&v);
}
END_TEST

START_TEST(test_vault_map_resized_by_other_process)
{
    static uint8_t big[16384];
    struct vault v;
    pid_t pid;
    int status;

    ck_assert_int_eq(km_init(), KM_OK);
    memset(big, 'g', sizeof big);
    vault_up_at(&v, vdir, KM_OPEN_CREATE, (uint64_t)1 << 20); /* 1 MiB map here */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* another process: a bigger map, and data beyond the parent's map */
        struct vault c;
        km__txn *t = NULL;
        char key[16];
        int i;
        memset(&c, 0, sizeof c);
        if (vopen_at(vdir, TU_PASS, 0, (uint64_t)64 << 20, &c.env, &c.master, c.id) != KM_OK
            || km__sealer_new(&c.s, c.master) != KM_OK || km__txn_begin(c.env, 1, &t) != KM_OK)
            _exit(10);
        for (i = 0; i < 256; i++) {
            snprintf(key, sizeof key, "grow%03d", i);
            if (km__rec_put(t, c.s, KM__T_MATERIAL, (const uint8_t *)key, strlen(key), big,
                            sizeof big, 0) != KM_OK)
                _exit(11);
        }
        if (km__rec_put(t, c.s, KM__T_KEYS, (const uint8_t *)"marker", 6,
                        (const uint8_t *)"grown", 5, 0) != KM_OK || km__txn_commit(t) != KM_OK)
            _exit(12);
        vault_down(&c);
        vault_down(&v);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    /* txn begin meets MDB_MAP_RESIZED, adopts the new size and retries */
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "marker", "grown"), KM_OK);
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "marker", "grown"), KM_OK);
    put1(&v, KM__T_KEYS, "after", "resize");
    ck_assert_int_eq(get1(&v, KM__T_KEYS, "after", "resize"), KM_OK);
    vault_down(&v);
}
END_TEST

/* The map size the file records, as another process would adopt it. */
static uint64_t raw_mapsize(void)
{
    tu_raw r;
    MDB_envinfo info;
    tu_raw_begin(&r, vdir, 0, 0);
    mdb_txn_abort(r.txn);
    ck_assert_int_eq(mdb_env_set_mapsize(r.env, 0), 0);
    ck_assert_int_eq(mdb_env_info(r.env, &info), 0);
    mdb_env_close(r.env);
    return info.me_mapsize;
}

START_TEST(test_vault_map_size_default_and_kept)
{
    struct vault v;

    /* 0: 1 GiB for a new vault */
    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_KEYS, "a", "b");
    vault_down(&v);
    ck_assert_uint_eq(raw_mapsize(), (uint64_t)1 << 30);
    /* an explicit bigger size grows it; 0 afterwards keeps the vault's size */
    vault_up_at(&v, vdir, 0, (uint64_t)3 << 29);
    put1(&v, KM__T_KEYS, "a", "c");
    vault_down(&v);
    ck_assert_uint_eq(raw_mapsize(), (uint64_t)3 << 29);
    vault_up(&v, 0);
    put1(&v, KM__T_KEYS, "a", "d");
    vault_down(&v);
    ck_assert_uint_eq(raw_mapsize(), (uint64_t)3 << 29);
}
END_TEST

/* ------------------------------------------------------------- threads */

struct thr {
    struct vault *v;
    int write;
    int failures;
};

static void *thr_run(void *p)
{
    struct thr *a = p;
    char key[32];
    int i;
    for (i = 0; i < 100; i++) {
        km__txn *t = NULL;
        km_secret *sec = NULL;
        if (km__txn_begin(a->v->env, a->write, &t) != KM_OK) {
            a->failures++;
            continue;
        }
        if (a->write) {
            snprintf(key, sizeof key, "w%03d", i);
            if (km__rec_put(t, a->v->s, KM__T_AUDIT, (const uint8_t *)key, strlen(key),
                            (const uint8_t *)"entry", 5, 0) != KM_OK || km__txn_commit(t) != KM_OK)
                a->failures++;
            continue;
        }
        if (km__rec_get(t, a->v->s, KM__T_KEYS, (const uint8_t *)"k", 1, &sec) != KM_OK
            || km_secret_len(sec) != 6 || memcmp(km_secret_data(sec), "shared", 6) != 0)
            a->failures++;
        km_secret_free(sec);
        km__txn_abort(t);
    }
    return NULL;
}

START_TEST(test_vault_threads_share_env)
{
    struct vault v;
    struct thr a[6];
    pthread_t th[6];
    int i;

    vault_up(&v, KM_OPEN_CREATE);
    put1(&v, KM__T_KEYS, "k", "shared");
    for (i = 0; i < 6; i++) {
        a[i].v = &v;
        a[i].write = i == 0;
        a[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, thr_run, &a[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].failures, 0);
    }
    ck_assert_int_eq(get1(&v, KM__T_AUDIT, "w099", "entry"), KM_OK);
    vault_down(&v);
}
END_TEST

static Suite *vault_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("vault", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_vault_create_then_reopen);
    tcase_add_test(tc, test_vault_wrong_passphrase_is_auth);
    tcase_add_test(tc, test_vault_missing_without_create_is_notfound);
    tcase_add_test(tc, test_vault_excl_refuses_existing);
    tcase_add_test(tc, test_vault_bad_kdf_cost_is_invalid);
    tcase_add_test(tc, test_vault_second_passphrase_slot_opens);
    tcase_add_test(tc, test_vault_env_shared_in_process);
    tcase_add_test(tc, test_vault_record_round_trip);
    tcase_add_test(tc, test_vault_nooverwrite_is_exists);
    tcase_add_test(tc, test_vault_record_moved_is_corrupt);
    tcase_add_test(tc, test_vault_altered_record_is_corrupt);
    tcase_add_test(tc, test_vault_newer_format_is_unsupported);
    tcase_add_test(tc, test_vault_swapped_meta_is_corrupt);
    tcase_add_test(tc, test_vault_absurd_slot_is_corrupt);
    tcase_add_test(tc, test_vault_format2_slots_authenticated_at_first_open);
    tcase_add_test(tc, test_vault_file_holds_no_plaintext);
    tcase_add_test(tc, test_vault_name_hash_is_keyed);
    tcase_add_test(tc, test_vault_map_full_is_full_and_atomic);
    tcase_add_test(tc, test_vault_fork_child_refused);
    tcase_add_test(tc, test_vault_map_resized_by_other_process);
    tcase_add_test(tc, test_vault_map_size_default_and_kept);
    tcase_add_test(tc, test_vault_threads_share_env);
    return s;
}

int main(void)
{
    return tu_run(vault_suite());
}
