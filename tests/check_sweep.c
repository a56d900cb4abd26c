/*
 * check_sweep.c - every truncation and every single-bit flip of a real sample
 * of each structure libkm parses (docs/RELIABILITY.md A), with the input ending right
 * at a PROT_NONE page: a clean, documented error, never a crash or a read past
 * the buffer, and nothing released (no secret out, no key created, no
 * signature or MAC accepted). Structures here: the wrapped data key, the
 * KWP export blob, the tagged Ed25519 and ECDSA signatures, the tagged HMAC,
 * the policy JSON, and the sealed vault records of the keys (with their versions),
 * material, counters and names tables (flipped in data.mdb itself). The v1
 * ciphertext and its km1: text form are swept by check_tamper.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <km.h>
#include <lmdb.h>

#include "policy.h"
#include "testraw.h"
#include "testutil.h"

TU_VAULT_FIXTURE

/* ------------------------------------------------------------ guarded buffers */

typedef tu_guard guard;    /* testutil.h */

/* ------------------------------------------------------------ the sweep */

/* Parses `in` (len bytes, against the guard page); asserts itself that
 * nothing was released on error; returns the km code. */
typedef int (*parse_fn)(const uint8_t *in, size_t len, void *arg);

struct tally {
    unsigned n, ok;
    unsigned by[32];            /* refusals by -code */
};

static int clean_code(int rc)
{
    switch (rc) {
    case KM_E_INVALID: case KM_E_UNSUPPORTED: case KM_E_NOTFOUND: case KM_E_INTEGRITY:
    case KM_E_VERIFY: case KM_E_CORRUPT: case KM_E_STATE: case KM_E_USAGE: case KM_E_POLICY:
        return 1;
    default:
        return 0;
    }
}

static void tally_print(const char *what, const struct tally *t, unsigned nt, unsigned nb)
{
    int c;
    printf("sweep: %s: %u truncations + %u bit flips, %u refused (", what, nt, nb, t->n - t->ok);
    for (c = 1; c < 32; c++)
        if (t->by[c])
            printf("%s%s %u", c == 1 ? "" : " ", km_err_name(-c), t->by[c]);
    printf(")");
    if (t->ok)
        printf(", %u accepted as another valid document", t->ok);
    printf("\n");
}

/* Runs fn on every truncation [0, len) and every single-bit flip of sample.
 * A refusal must be a documented code; accept_ok(variant) says when KM_OK is
 * allowed (NULL: never). */
static void sweep(const char *what, const uint8_t *sample, size_t len, parse_fn fn, void *arg,
                  int (*accept_ok)(const uint8_t *v, size_t vlen, int trunc))
{
    struct tally t;
    uint8_t *v = malloc(len ? len : 1);
    size_t l, bit;
    guard g;
    int rc;

    memset(&t, 0, sizeof t);
    ck_assert_ptr_nonnull(v);
    /* the positive control */
    tu_guard_copy(&g, sample, len);
    rc = fn(g.p, len, arg);
    tu_guard_free(&g);
    ck_assert_msg(rc == KM_OK, "%s: the untouched sample is refused: %s (%s)", what, km_err_name(rc),
                  km_error_last()->message);
    for (l = 0; l < len + 8 * len; l++) {
        size_t vlen;
        int trunc = l < len;
        memcpy(v, sample, len);
        if (trunc) {
            vlen = l;
        } else {
            bit = l - len;
            v[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            vlen = len;
        }
        tu_guard_copy(&g, v, vlen);
        rc = fn(g.p, vlen, arg);
        tu_guard_free(&g);
        t.n++;
        if (rc == KM_OK) {
            ck_assert_msg(accept_ok != NULL && accept_ok(v, vlen, trunc),
                          "%s: %s %zu ACCEPTED", what, trunc ? "truncation to" : "bit flip",
                          trunc ? vlen : l - len);
            t.ok++;
            continue;
        }
        ck_assert_msg(clean_code(rc), "%s: %s %zu refused with %s (%s), not a documented code", what,
                      trunc ? "truncation to" : "bit flip", trunc ? vlen : l - len, km_err_name(rc),
                      km_error_last()->message);
        t.by[-rc]++;
    }
    tally_print(what, &t, (unsigned)len, (unsigned)(8 * len));
    free(v);
}

/* ------------------------------------------------------------ wrapped data key */

struct dk_arg {
    const uint8_t *aad;
    size_t aad_len;
    uint8_t key[KM_DATAKEY_LEN];
};

static int dk_parse(const uint8_t *in, size_t len, void *argp)
{
    struct dk_arg *a = argp;
    km_secret *out = (km_secret *)(uintptr_t)1;
    int rc = km_datakey_decrypt(ctx, in, len, a->aad, a->aad_len, &out);
    if (rc == KM_OK) {
        ck_assert(km_secret_len(out) == KM_DATAKEY_LEN
                  && memcmp(km_secret_data(out), a->key, KM_DATAKEY_LEN) == 0);
        km_secret_free(out);
    } else {
        ck_assert_msg(out == NULL, "km_datakey_decrypt released a secret on %s", km_err_name(rc));
    }
    return rc;
}

START_TEST(test_sweep_wrapped_datakey)
{
    km_key *kek = NULL;
    km_secret *plain = NULL;
    uint8_t w[KM_DATAKEY_WRAPPED_LEN];
    size_t wl = 0;
    struct dk_arg a = { (const uint8_t *)"sweep aad", 9, { 0 } };

    OK(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_GCM, NULL));
    OK(km_datakey_generate(kek, a.aad, a.aad_len, &plain, w, sizeof w, &wl));
    ck_assert_uint_eq(wl, KM_DATAKEY_WRAPPED_LEN);
    memcpy(a.key, km_secret_data(plain), KM_DATAKEY_LEN);
    km_secret_free(plain);
    sweep("wrapped data key (km_datakey_decrypt)", w, wl, dk_parse, &a, NULL);
    km_key_free(kek);
}
END_TEST

/* ------------------------------------------------------------ export blob */

static int count_key(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name; (void)id; (void)type;
    (*(unsigned *)arg)++;
    return 0;
}

static int imp_parse(const uint8_t *in, size_t len, void *arg)
{
    km_key *k = (km_key *)(uintptr_t)1;
    int rc;
    (void)arg;
    rc = km_key_import_wrapped(&k, ctx, "imported", KM_KEY_HMAC_SHA256, KM_WRAP_KWP, in, len, NULL);
    if (rc == KM_OK) {
        km_key_free(k);         /* the positive control (run last) */
    } else {
        ck_assert_msg(k == NULL, "km_key_import_wrapped left a handle on %s", km_err_name(rc));
    }
    return rc;
}

START_TEST(test_sweep_export_blob)
{
    km_key *kek = NULL, *k = NULL, *chk = NULL;
    km_key_options ko = KM_KEY_OPTIONS_INIT, eo = KM_KEY_OPTIONS_INIT;
    uint8_t blob[512], mac1[KM_MAC_MAX], mac2[KM_MAC_MAX];
    size_t bl = 0, m1 = 0, m2 = 0;
    unsigned before = 0, after = 0;
    guard g;

    ko.usage = KM_USAGE_WRAP | KM_USAGE_UNWRAP;
    OK(km_key_create(&kek, ctx, "kek", KM_KEY_AES_256_KWP, &ko));
    eo.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, ctx, "exported", KM_KEY_HMAC_SHA256, &eo));
    OK(km_key_export_wrapped(k, 0, KM_WRAP_KWP, kek, NULL, 0, blob, sizeof blob, &bl));
    OK(km_key_list(ctx, count_key, &before));
    /* the sweep without sweep()'s positive control first (it would take the
     * name, and every variant would then fail with KM_E_EXISTS) */
    {
        uint8_t *v = malloc(bl);
        size_t l;
        struct tally t;
        memset(&t, 0, sizeof t);
        ck_assert_ptr_nonnull(v);
        for (l = 0; l < bl + 8 * bl; l++) {
            size_t vlen = l < bl ? l : bl;
            int rc;
            memcpy(v, blob, bl);
            if (l >= bl)
                v[(l - bl) / 8] ^= (uint8_t)(1u << ((l - bl) % 8));
            tu_guard_copy(&g, v, vlen);
            rc = imp_parse(g.p, vlen, NULL);
            tu_guard_free(&g);
            ck_assert_msg(rc != KM_OK, "export blob: variant %zu IMPORTED", l);
            ck_assert_msg(clean_code(rc), "export blob: variant %zu refused with %s (%s)", l,
                          km_err_name(rc), km_error_last()->message);
            t.n++;
            t.by[-rc]++;
        }
        tally_print("KWP export blob (km_key_import_wrapped)", &t, (unsigned)bl, (unsigned)(8 * bl));
        free(v);
    }
    /* nothing was stored: no new key */
    OK(km_key_list(ctx, count_key, &after));
    ck_assert_uint_eq(after, before);
    ck_assert_int_eq(km_key_open(&chk, ctx, "imported"), KM_E_NOTFOUND);
    /* the positive control, last: the untouched blob imports the same key */
    tu_guard_copy(&g, blob, bl);
    OK(imp_parse(g.p, bl, NULL));
    tu_guard_free(&g);
    OK(km_key_open(&chk, ctx, "imported"));
    OK(km_mac(k, KM_SIG_RAW, (const uint8_t *)"m", 1, mac1, sizeof mac1, &m1));
    OK(km_mac(chk, KM_SIG_RAW, (const uint8_t *)"m", 1, mac2, sizeof mac2, &m2));
    ck_assert(m1 == m2 && memcmp(mac1, mac2, m1) == 0);
    km_key_free(chk);
    km_key_free(k);
    km_key_free(kek);
}
END_TEST

/* ------------------------------------------------------------ tagged signatures and MACs */

struct sig_arg {
    km_key *key;
    int mac;
};

#define SIG_MSG ((const uint8_t *)"the message that was signed")
#define SIG_MSG_LEN 27

static int sig_parse(const uint8_t *in, size_t len, void *argp)
{
    struct sig_arg *a = argp;
    if (a->mac)
        return km_mac_verify(a->key, 0, 0, SIG_MSG, SIG_MSG_LEN, in, len);
    return km_verify(a->key, 0, 0, SIG_MSG, SIG_MSG_LEN, in, len);
}

static void sweep_sig(km_key_type type, int mac, const char *what)
{
    struct sig_arg a = { NULL, mac };
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t sl = 0;

    OK(km_key_create(&a.key, ctx, what, type, NULL));
    if (mac)
        OK(km_mac(a.key, 0, SIG_MSG, SIG_MSG_LEN, sig, sizeof sig, &sl));
    else
        OK(km_sign(a.key, 0, SIG_MSG, SIG_MSG_LEN, sig, sizeof sig, &sl));
    sweep(what, sig, sl, sig_parse, &a, NULL);
    km_key_free(a.key);
}

START_TEST(test_sweep_tagged_signatures_and_macs)
{
    sweep_sig(KM_KEY_ED25519, 0, "tagged Ed25519 signature (km_verify)");
    sweep_sig(KM_KEY_EC_P256, 0, "tagged ECDSA P-256 signature (km_verify)");
    sweep_sig(KM_KEY_HMAC_SHA256, 1, "tagged HMAC-SHA-256 (km_mac_verify)");
}
END_TEST

/* ------------------------------------------------------------ policy JSON */

static int pol_parse(const uint8_t *in, size_t len, void *arg)
{
    km__policy *p = (km__policy *)(uintptr_t)1;
    int rc = km__policy_parse(&p, (const char *)in, len, arg);
    if (rc == KM_OK)
        km__policy_free(p);
    else
        ck_assert_msg(p == NULL, "km__policy_parse left a policy on %s", km_err_name(rc));
    return rc;
}

/* A truncation is valid JSON only if it cut nothing but trailing white space;
 * a flipped bit may give another valid document (a digit, a letter in a name
 * that is still known, a space for a tab): allowed, but it must parse cleanly. */
static int pol_accept(const uint8_t *v, size_t vlen, int trunc)
{
    (void)v; (void)vlen;
    return !trunc;
}

START_TEST(test_sweep_policy_json)
{
    char json[65536];
    size_t jl = 0;
    km__policy *base = NULL;

    OK(km_policy_get(ctx, json, sizeof json, &jl));
    while (jl > 0 && (json[jl - 1] == '\n' || json[jl - 1] == ' '))
        jl--;
    sweep("policy JSON (vault policy)", (const uint8_t *)json, jl, pol_parse, NULL, pol_accept);
    /* as a key's own policy, parsed against the vault's */
    OK(km__policy_default(&base, 0));
    sweep("policy JSON (a key's policy against the vault's)", (const uint8_t *)json, jl, pol_parse,
          base, pol_accept);
    km__policy_free(base);
}
END_TEST

/* ------------------------------------------------------------ vault records */

/* A raw view of data.mdb without the lock file (MDB_NOLOCK, testraw.h), used
 * only while no libkm context has the vault open. */
/* The variants of a value of `len` bytes: truncations to 1 .. len - 1 bytes
 * (LMDB stores no empty value), then every single-bit flip. */
static size_t variants(size_t len)
{
    return (len - 1) + 8 * len;
}

/* Replaces the value at `key` by its variant `i`. */
static void raw_variant(tu_raw *r, MDB_dbi d, const uint8_t *key, size_t key_len, size_t i,
                        size_t want_len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key }, v;
    uint8_t buf[4096];
    size_t len;
    ck_assert_int_eq(mdb_get(r->txn, d, &k, &v), 0);
    len = v.mv_size;
    ck_assert_msg(len == want_len, "records of one table differ in length (%zu, %zu)", len, want_len);
    ck_assert_uint_le(len, sizeof buf);
    memcpy(buf, v.mv_data, len);
    if (i < len - 1) {
        v.mv_size = i + 1;
    } else {
        size_t bit = i - (len - 1);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    v.mv_data = buf;
    ck_assert_int_eq(mdb_put(r->txn, d, &k, &v, 0), 0);
}

static size_t raw_len(tu_raw *r, MDB_dbi d, const uint8_t *key, size_t key_len)
{
    MDB_val k = { key_len, (void *)(uintptr_t)key }, v;
    int mrc = mdb_get(r->txn, d, &k, &v);
    ck_assert_msg(mrc == 0, "record absent: %s", mdb_strerror(mrc));
    return v.mv_size;
}

/* The key `name` is refused with KM_E_CORRUPT, at open or at its first use,
 * and releases nothing. Returns 1 when it was refused at open. */
static int key_refused(const char *name, const char *what)
{
    km_key *k = (km_key *)(uintptr_t)1;
    uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 5;
    int rc = km_key_open(&k, ctx, name);
    if (rc != KM_OK) {
        ck_assert_msg(rc == KM_E_CORRUPT, "%s: km_key_open(%s): %s (%s), not KM_E_CORRUPT", what,
                      name, km_err_name(rc), km_error_last()->message);
        ck_assert_ptr_null(k);
        return 1;
    }
    memset(ct, 0xAA, sizeof ct);
    rc = km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &n);
    ck_assert_msg(rc == KM_E_CORRUPT, "%s: km_encrypt(%s) with an altered record: %s (%s)", what,
                  name, km_err_name(rc), km_error_last()->message);
    ck_assert_uint_eq(n, 0);
    ck_assert_msg(tu_all_zero(ct, sizeof ct), "%s: output left after a refusal", what);
    km_key_free(k);
    return 0;
}

static void key_works(const char *name)
{
    km_key *k = NULL;
    uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD], pt[16];
    size_t n, m;
    OK(km_key_open(&k, ctx, name));
    OK(km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert(m == 16 && memcmp(pt, "0123456789abcdef", 16) == 0);
    km_key_free(k);
}

static void group_name(char *out, size_t cap, const char *table, size_t i)
{
    snprintf(out, cap, "%.1s%07zu", table, i);
}

/* Creates n keys of the group (used once, so that every record exists). */
static void make_group(const char *table, size_t from, size_t to, uint8_t (*ids)[16])
{
    char name[32];
    size_t i;
    for (i = from; i < to; i++) {
        km_key *k = NULL;
        uint8_t ct[KM_CIPHERTEXT_OVERHEAD];
        size_t n;
        group_name(name, sizeof name, table, i);
        OK(km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL));
        OK(km_encrypt(k, NULL, 0, NULL, 0, ct, sizeof ct, &n));
        memcpy(ids[i], km_key_id(k), 16);
        km_key_free(k);
    }
}

#define CONTROLS 3
/* from vault format 5 the version records are inside the key records (the "keys" sweep covers
 * them) and the vmeta table is empty */
static const char *const rec_tables[] = { "keys", "material", "counters" };
#define NTABLES (sizeof rec_tables / sizeof rec_tables[0])

START_TEST(test_sweep_vault_records)
{
    char vdir[4200], name[32];
    uint8_t (*ids[NTABLES])[16];
    size_t len[NTABLES], nvar[NTABLES], t, i;
    tu_raw r;

    snprintf(vdir, sizeof vdir, "%s/vault", dir);
    /* one key per table first, to learn the record lengths */
    for (t = 0; t < NTABLES; t++) {
        ids[t] = calloc(1, 16);
        ck_assert_ptr_nonnull(ids[t]);
        make_group(rec_tables[t], 0, 1, ids[t]);
    }
    km_close(ctx);
    ctx = NULL;
    tu_raw_begin(&r, vdir, MDB_NOLOCK, 0);
    for (t = 0; t < NTABLES; t++) {
        uint8_t vk[20];
        tu_raw_vkey(vk, ids[t][0], 1);
        len[t] = t == 0 ? raw_len(&r, tu_raw_dbi(&r, "keys"), ids[t][0], 16)
                        : raw_len(&r, tu_raw_dbi(&r, rec_tables[t]), vk, 20);
        nvar[t] = variants(len[t]);
    }
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    /* one key per variant, and a few controls left alone */
    for (t = 0; t < NTABLES; t++) {
        uint8_t (*grown)[16] = realloc(ids[t], (nvar[t] + CONTROLS) * 16);
        ck_assert_ptr_nonnull(grown);
        ids[t] = grown;
        make_group(rec_tables[t], 1, nvar[t] + CONTROLS, ids[t]);
    }
    km_close(ctx);
    ctx = NULL;
    /* key i of table t gets variant i of its own record in table t */
    tu_raw_begin(&r, vdir, MDB_NOLOCK, 0);
    for (t = 0; t < NTABLES; t++) {
        MDB_dbi d = tu_raw_dbi(&r, rec_tables[t]);
        for (i = 0; i < nvar[t]; i++) {
            uint8_t vk[20];
            tu_raw_vkey(vk, ids[t][i], 1);
            if (t == 0)
                raw_variant(&r, d, ids[t][i], 16, i, len[t]);
            else
                raw_variant(&r, d, vk, 20, i, len[t]);
        }
    }
    tu_raw_end(&r);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    for (t = 0; t < NTABLES; t++) {
        unsigned at_open = 0;
        for (i = 0; i < nvar[t]; i++) {
            char what[96];
            group_name(name, sizeof name, rec_tables[t], i);
            snprintf(what, sizeof what, "%s record, %s %zu", rec_tables[t],
                     i < len[t] - 1 ? "truncated to" : "bit", i < len[t] - 1 ? i + 1 : i - (len[t] - 1));
            at_open += (unsigned)key_refused(name, what);
        }
        for (i = nvar[t]; i < nvar[t] + CONTROLS; i++) {
            group_name(name, sizeof name, rec_tables[t], i);
            key_works(name);
        }
        printf("sweep: sealed %s record (%zu bytes): %zu truncations + %zu bit flips, all refused "
               "with KM_E_CORRUPT (%u at km_key_open, %zu at first use), nothing released\n",
               rec_tables[t], len[t], len[t] - 1, 8 * len[t], at_open, nvar[t] - at_open);
        free(ids[t]);
    }
}
END_TEST

/* The names table: its LMDB keys are keyed hashes of the names, so which
 * entry is whose is unknown here; in a vault of only the group's keys, entry
 * j (in LMDB order) gets variant j, and then exactly that many keys fail to
 * open, each with KM_E_CORRUPT, and every other opens as itself. */
START_TEST(test_sweep_vault_name_index)
{
    char vdir[4200], name[32];
    uint8_t (*ids)[16] = calloc(1, 16);
    size_t len, nvar, i, refused = 0, total;
    tu_raw r;
    MDB_dbi d;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t (*keys)[32];

    snprintf(vdir, sizeof vdir, "%s/vault", dir);
    ck_assert_ptr_nonnull(ids);
    make_group("names", 0, 1, ids);
    km_close(ctx);
    ctx = NULL;
    tu_raw_begin(&r, vdir, MDB_NOLOCK, 0);
    d = tu_raw_dbi(&r, "names");
    ck_assert_int_eq(mdb_cursor_open(r.txn, d, &cur), 0);
    ck_assert_int_eq(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    len = v.mv_size;
    mdb_cursor_close(cur);
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
    nvar = variants(len);
    total = nvar + CONTROLS;
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    ids = realloc(ids, total * 16);
    ck_assert_ptr_nonnull(ids);
    make_group("names", 1, total, ids);
    km_close(ctx);
    ctx = NULL;
    keys = calloc(total, 32);
    ck_assert_ptr_nonnull(keys);
    tu_raw_begin(&r, vdir, MDB_NOLOCK, 0);
    d = tu_raw_dbi(&r, "names");
    ck_assert_int_eq(mdb_cursor_open(r.txn, d, &cur), 0);
    for (i = 0; i < total; i++) {
        ck_assert_int_eq(mdb_cursor_get(cur, &k, &v, i == 0 ? MDB_FIRST : MDB_NEXT), 0);
        ck_assert_uint_eq(k.mv_size, 32);
        memcpy(keys[i], k.mv_data, 32);
    }
    /* nothing but the group's names (no other key in this vault) */
    ck_assert_int_ne(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
    mdb_cursor_close(cur);
    for (i = 0; i < nvar; i++)
        raw_variant(&r, d, keys[i], 32, i, len);
    tu_raw_end(&r);
    OK(tu_vault_open(&ctx, dir, TU_PASS, 0));
    for (i = 0; i < total; i++) {
        km_key *kk = (km_key *)(uintptr_t)1;
        int rc;
        group_name(name, sizeof name, "names", i);
        rc = km_key_open(&kk, ctx, name);
        if (rc == KM_OK) {
            ck_assert_str_eq(km_key_name(kk), name);
            ck_assert(memcmp(km_key_id(kk), ids[i], 16) == 0);
            km_key_free(kk);
        } else {
            ck_assert_msg(rc == KM_E_CORRUPT, "name index: km_key_open(%s): %s, not KM_E_CORRUPT",
                          name, km_err_name(rc));
            ck_assert_ptr_null(kk);
            refused++;
        }
    }
    ck_assert_uint_eq(refused, nvar);
    printf("sweep: sealed names record (%zu bytes): %zu truncations + %zu bit flips, all refused "
           "with KM_E_CORRUPT, every other key opens as itself\n", len, len - 1, 8 * len);
    free(keys);
    free(ids);
}
END_TEST

static Suite *sweep_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("sweep", NULL, &tc, 300, setup, teardown);

    tcase_add_test(tc, test_sweep_wrapped_datakey);
    tcase_add_test(tc, test_sweep_export_blob);
    tcase_add_test(tc, test_sweep_tagged_signatures_and_macs);
    tcase_add_test(tc, test_sweep_policy_json);
    tcase_add_test(tc, test_sweep_vault_records);
    tcase_add_test(tc, test_sweep_vault_name_index);
    return s;
}

int main(void)
{
    /* LMDB commits are cheap on tmpfs: thousands of keys are made here */
    if (getenv("TMPDIR") == NULL && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    return tu_run(sweep_suite());
}
