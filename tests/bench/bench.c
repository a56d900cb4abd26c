/* bench.c - libkm against the limit it sits on, side by side, as ratios.
 *
 * Every pair is measured interleaved in one run: km, raw, km, raw, ... for
 * BENCH_ROUNDS rounds (default 7) of BENCH_ROUND_S seconds each (default
 * 0.25), after one short warm-up of each side; each side's figure is the
 * median of its rounds and ratio = km / raw. One line per pair:
 *
 *   BENCH <name> km=<ops/s> raw=<ops/s> ratio=<km/raw>
 *   BENCH <name> skipped=<reason>
 *
 * Usage: bench [PAIR...]            only the named pairs (default: all)
 *        bench --profile PAIR [S]   only the km side of PAIR for S seconds
 *                                   (for perf record / callgrind)
 * See docs/PERFORMANCE.md for what each pair means.
 */
#define _GNU_SOURCE 1
#include "benchutil.h"
#include "bench_hw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define MAX_ROUNDS 64
#define BATCH 16                  /* operations between two clock reads */
#define COLD_KEYS_DEFAULT 2000    /* keys in the open-cold vault */
#define MAX_THREADS 8             /* the most threads a scaling figure uses */

static int g_rounds = 7;
static double g_round_s = 0.25, g_warm_s = 0.08;

/* One side of a pair: performs n operations, returns 0 (or dies). */
typedef int (*bench_fn)(void *arg, uint64_t n);

/* Operations per second of `f` over about `secs` seconds. `excluded`, when
 * not NULL, is time the side spent on untimed set-up inside its calls. */
static double rate(bench_fn f, void *arg, double secs, double *excluded)
{
    uint64_t done = 0;
    double t0, t, el;

    if (excluded != NULL)
        *excluded = 0;
    t0 = bench_now();
    do {
        if (f(arg, BATCH) != 0)
            bench_die("a benchmark operation failed");
        done += BATCH;
        t = bench_now();
        el = t - t0 - (excluded != NULL ? *excluded : 0);
    } while (el < secs);
    return (double)done / el;
}

static void report(const char *name, double km, double raw)
{
    printf("BENCH %s km=%.0f raw=%.0f ratio=%.3f\n", name, km, raw, raw > 0 ? km / raw : 0.0);
    fflush(stdout);
}


/* Runs the pair interleaved and reports it. */
static void pair(const char *name, bench_fn km, void *km_arg, double *km_excl, bench_fn raw,
                 void *raw_arg, double *raw_excl)
{
    double k[MAX_ROUNDS], r[MAX_ROUNDS];
    int i;

    (void)rate(km, km_arg, g_warm_s, km_excl);
    (void)rate(raw, raw_arg, g_warm_s, raw_excl);
    for (i = 0; i < g_rounds; i++) {
        k[i] = rate(km, km_arg, g_round_s, km_excl);
        r[i] = rate(raw, raw_arg, g_round_s, raw_excl);
    }
    report(name, bench_median(k, (size_t)g_rounds), bench_median(r, (size_t)g_rounds));
}

/* ------------------------------------------------------------ raw AES-GCM */

static void ossl_check(int ok, const char *what)
{
    if (ok != 1)
        bench_die("OpenSSL: %s failed", what);
}

/* A careful user of raw EVP: the key schedule once, a fresh random nonce per
 * message with RAND_bytes(12), output nonce || ciphertext || tag. */
typedef struct raw_gcm {
    EVP_CIPHER_CTX *c;
    size_t len;               /* plaintext length */
    uint8_t *pt, *out;
    uint8_t **pool;           /* raw messages to decrypt */
    size_t npool, next;
} raw_gcm;

static void raw_gcm_init(raw_gcm *s, size_t len, size_t npool)
{
    uint8_t key[32];
    memset(s, 0, sizeof *s);
    s->len = len;
    s->npool = npool;
    s->c = EVP_CIPHER_CTX_new();
    s->pt = bench_line_alloc(len);
    s->out = bench_line_alloc(len + 28);
    if (s->c == NULL || s->pt == NULL || s->out == NULL)
        bench_die("out of memory");
    ossl_check(RAND_bytes(key, sizeof key), "RAND_bytes");
    ossl_check(RAND_bytes(s->pt, (int)len), "RAND_bytes");
    ossl_check(EVP_CipherInit_ex(s->c, EVP_aes_256_gcm(), NULL, key, NULL, -1), "cipher init");
    memset(key, 0, sizeof key);
}

static void raw_gcm_seal_one(raw_gcm *s, uint8_t *out)
{
    int n = 0, m = 0;
    ossl_check(RAND_bytes(out, 12), "RAND_bytes");
    ossl_check(EVP_EncryptInit_ex(s->c, NULL, NULL, NULL, out), "encrypt init");
    ossl_check(EVP_EncryptUpdate(s->c, out + 12, &n, s->pt, (int)s->len), "encrypt update");
    ossl_check(EVP_EncryptFinal_ex(s->c, out + 12 + n, &m), "encrypt final");
    ossl_check(EVP_CIPHER_CTX_ctrl(s->c, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + s->len), "get tag");
}

static int raw_encrypt(void *arg, uint64_t n)
{
    raw_gcm *s = arg;
    uint64_t i;
    for (i = 0; i < n; i++)
        raw_gcm_seal_one(s, s->out);
    return 0;
}

static void raw_gcm_make_pool(raw_gcm *s)
{
    size_t i;
    s->pool = calloc(s->npool, sizeof *s->pool);
    if (s->pool == NULL)
        bench_die("out of memory");
    for (i = 0; i < s->npool; i++) {
        if ((s->pool[i] = malloc(s->len + 28)) == NULL)
            bench_die("out of memory");
        raw_gcm_seal_one(s, s->pool[i]);
    }
}

static int raw_decrypt(void *arg, uint64_t n)
{
    raw_gcm *s = arg;
    uint64_t i;
    int l = 0, m = 0;
    for (i = 0; i < n; i++) {
        uint8_t *ct = s->pool[s->next];
        s->next = (s->next + 1) % s->npool;
        ossl_check(EVP_DecryptInit_ex(s->c, NULL, NULL, NULL, ct), "decrypt init");
        ossl_check(EVP_DecryptUpdate(s->c, s->out, &l, ct + 12, (int)s->len), "decrypt update");
        ossl_check(EVP_CIPHER_CTX_ctrl(s->c, EVP_CTRL_GCM_SET_TAG, 16, ct + 12 + s->len),
                   "set tag");
        ossl_check(EVP_DecryptFinal_ex(s->c, s->out + l, &m), "tag check");
    }
    return 0;
}

/* The primitive's own limit: raw EVP with a deterministic (counter) nonce as
 * SP 800-38D 8.2.1 allows, a 4-byte fixed field and an 8-byte invocation
 * counter: no random bytes at all, the key schedule once, the context reused. */
static int raw_encrypt_counter(void *arg, uint64_t n)
{
    raw_gcm *s = arg;
    static const uint8_t fixed[4] = { 0x6b, 0x6d, 0x00, 0x01 };
    uint64_t i;
    int l = 0, m = 0;
    for (i = 0; i < n; i++) {
        uint8_t *out = s->out;
        uint64_t ctr = s->next++;
        int b;
        memcpy(out, fixed, 4);
        for (b = 0; b < 8; b++)
            out[4 + b] = (uint8_t)(ctr >> (56 - 8 * b));
        ossl_check(EVP_EncryptInit_ex(s->c, NULL, NULL, NULL, out), "encrypt init");
        ossl_check(EVP_EncryptUpdate(s->c, out + 12, &l, s->pt, (int)s->len), "encrypt update");
        ossl_check(EVP_EncryptFinal_ex(s->c, out + 12 + l, &m), "encrypt final");
        ossl_check(EVP_CIPHER_CTX_ctrl(s->c, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + s->len),
                   "get tag");
    }
    return 0;
}

static void raw_gcm_free(raw_gcm *s)
{
    size_t i;
    for (i = 0; s->pool != NULL && i < s->npool; i++)
        free(s->pool[i]);
    free(s->pool);
    free(s->pt);
    free(s->out);
    EVP_CIPHER_CTX_free(s->c);
}

/* ------------------------------------------------------------- km AES-GCM */

typedef struct km_gcm {
    km_ctx *ctx;
    km_key *key;
    size_t len, cap;
    uint8_t *pt, *out;
    uint8_t **pool;           /* km ciphertexts to decrypt */
    size_t npool, next;
} km_gcm;

static void km_gcm_init(km_gcm *s, km_ctx *ctx, km_key *key, size_t len, size_t npool)
{
    size_t i, n;
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->key = key;
    s->len = len;
    s->cap = len + KM_CIPHERTEXT_OVERHEAD;
    s->npool = npool;
    s->pt = bench_line_alloc(len);
    s->out = bench_line_alloc(s->cap);
    s->pool = calloc(npool, sizeof *s->pool);
    if (s->pt == NULL || s->out == NULL || s->pool == NULL)
        bench_die("out of memory");
    ossl_check(RAND_bytes(s->pt, (int)len), "RAND_bytes");
    for (i = 0; i < npool; i++) {
        if ((s->pool[i] = malloc(s->cap)) == NULL)
            bench_die("out of memory");
        BENCH_CHECK(km_encrypt(key, s->pt, len, NULL, 0, s->pool[i], s->cap, &n));
    }
}

static int km_encrypt_n(void *arg, uint64_t n)
{
    km_gcm *s = arg;
    size_t olen;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_encrypt(s->key, s->pt, s->len, NULL, 0, s->out, s->cap, &olen));
    return 0;
}

static int km_decrypt_n(void *arg, uint64_t n)
{
    km_gcm *s = arg;
    size_t olen;
    uint64_t i;
    for (i = 0; i < n; i++) {
        const uint8_t *ct = s->pool[s->next];
        s->next = (s->next + 1) % s->npool;
        BENCH_CHECK(km_decrypt(s->ctx, 0, ct, s->cap, NULL, 0, s->out, s->cap, &olen));
    }
    return 0;
}

static void km_gcm_free(km_gcm *s)
{
    size_t i;
    for (i = 0; i < s->npool; i++)
        free(s->pool[i]);
    free(s->pool);
    free(s->pt);
    free(s->out);
}

/* ------------------------------------------------------------------- sign */

#define SIGN_MSG_LEN 32

typedef struct km_sig {
    km_key *key;
    uint8_t msg[SIGN_MSG_LEN];
    uint8_t sig[KM_SIGNATURE_MAX];
} km_sig;

static int km_sign_n(void *arg, uint64_t n)
{
    km_sig *s = arg;
    size_t len;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_sign(s->key, KM_SIG_RAW, s->msg, sizeof s->msg, s->sig, sizeof s->sig,
                            &len));
    return 0;
}

/* Raw EVP signing: one EVP_PKEY reused across calls, one EVP_MD_CTX reused
 * (re-initialised per message, as EVP_DigestSign requires). */
typedef struct raw_sig {
    EVP_PKEY *pk;
    EVP_MD_CTX *md;
    const char *mdname;       /* "SHA256", or NULL for Ed25519 */
    uint8_t msg[SIGN_MSG_LEN];
    uint8_t sig[256];
} raw_sig;

static int raw_sign_n(void *arg, uint64_t n)
{
    raw_sig *s = arg;
    uint64_t i;
    for (i = 0; i < n; i++) {
        size_t len = sizeof s->sig;
        ossl_check(EVP_DigestSignInit_ex(s->md, NULL, s->mdname, NULL, NULL, s->pk, NULL),
                   "sign init");
        ossl_check(EVP_DigestSign(s->md, s->sig, &len, s->msg, sizeof s->msg), "sign");
    }
    return 0;
}

static void bench_sign(const char *name, km_ctx *ctx, km_key_type type, const char *alg,
                       const char *group, const char *mdname)
{
    km_sig k;
    raw_sig r;
    char kname[64];

    memset(&k, 0, sizeof k);
    memset(&r, 0, sizeof r);
    snprintf(kname, sizeof kname, "bench-%s", name);
    BENCH_CHECK(km_key_create(&k.key, ctx, kname, type, NULL));
    ossl_check(RAND_bytes(k.msg, sizeof k.msg), "RAND_bytes");
    memcpy(r.msg, k.msg, sizeof r.msg);
    r.pk = group != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, alg, group)
                         : EVP_PKEY_Q_keygen(NULL, NULL, alg);
    r.md = EVP_MD_CTX_new();
    r.mdname = mdname;
    if (r.pk == NULL || r.md == NULL)
        bench_die("OpenSSL: cannot make a %s key", alg);
    pair(name, km_sign_n, &k, NULL, raw_sign_n, &r, NULL);
    EVP_MD_CTX_free(r.md);
    EVP_PKEY_free(r.pk);
    km_key_free(k.key);
}

/* -------------------------------------------------------------- open-cold */

/* km side: km_key_open by name + km_key_free, each key once per context, so
 * that every open misses the context's key cache. A "keeper" context stays
 * open on the vault, so the LMDB environment (shared per directory in a
 * process) stays open and mapped, as the raw side's does; when the names run
 * out the measuring context is closed and opened again, untimed. */
typedef struct km_cold {
    const char *dir;
    km_ctx *ctx;
    char **names;
    size_t n, pos, *perm;
    double excluded;
} km_cold;

/* xorshift64*: cheap, so that reshuffling costs the timed loops nothing. */
static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1du;
}

static void shuffle(size_t *p, size_t n)
{
    size_t i;
    for (i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next() % i), t;
        t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
}

static int km_open_n(void *arg, uint64_t n)
{
    km_cold *s = arg;
    uint64_t i;
    for (i = 0; i < n; i++) {
        km_key *k = NULL;
        if (s->pos == s->n) {
            double t0 = bench_now();
            km_close(s->ctx);
            s->ctx = bench_vault_open(s->dir, 0);
            shuffle(s->perm, s->n);
            s->pos = 0;
            s->excluded += bench_now() - t0;
        }
        BENCH_CHECK(km_key_open(&k, s->ctx, s->names[s->perm[s->pos++]]));
        km_key_free(k);
    }
    return 0;
}

/* raw side: read transaction + mdb_get of a record of the same LMDB key and
 * the same sealed size as the vault's key record + AES-256-GCM open with a
 * pre-derived key (the context keyed once), with the vault's kind of
 * associated data ("km-rec" 1 "keys" 0 id). */
typedef struct raw_cold {
    MDB_env *env;
    MDB_dbi dbi;
    uint8_t (*ids)[16];
    size_t n, pos, *perm;
    EVP_CIPHER_CTX *c;
    uint8_t buf[4096];
} raw_cold;

static const char cold_aad_prefix[] = "km-rec\001keys"; /* then 0, then the id */

static size_t cold_aad(uint8_t aad[64], const uint8_t id[16])
{
    size_t n = sizeof cold_aad_prefix; /* with its NUL: the 0 separator */
    memcpy(aad, cold_aad_prefix, n);
    memcpy(aad + n, id, 16);
    return n + 16;
}

static int raw_open_n(void *arg, uint64_t n)
{
    raw_cold *s = arg;
    uint64_t i;
    for (i = 0; i < n; i++) {
        const uint8_t *id, *p;
        uint8_t aad[64];
        MDB_txn *txn;
        MDB_val k, v;
        size_t ct_len, aad_len;
        int l = 0, m = 0;
        if (s->pos == s->n) {
            shuffle(s->perm, s->n);
            s->pos = 0;
        }
        id = s->ids[s->perm[s->pos++]];
        k.mv_data = (void *)(uintptr_t)id;
        k.mv_size = 16;
        if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0 || mdb_get(txn, s->dbi, &k, &v) != 0)
            bench_die("raw LMDB read failed");
        p = v.mv_data;
        if (v.mv_size < 29 || v.mv_size - 29 > sizeof s->buf)
            bench_die("raw record of a bad size");
        ct_len = v.mv_size - 29;
        aad_len = cold_aad(aad, id);
        ossl_check(EVP_DecryptInit_ex(s->c, NULL, NULL, NULL, p + 1), "decrypt init");
        ossl_check(EVP_DecryptUpdate(s->c, NULL, &l, aad, (int)aad_len), "aad");
        ossl_check(EVP_DecryptUpdate(s->c, s->buf, &l, p + 13, (int)ct_len), "decrypt");
        ossl_check(EVP_CIPHER_CTX_ctrl(s->c, EVP_CTRL_GCM_SET_TAG, 16,
                                       (void *)(uintptr_t)(p + 13 + ct_len)), "set tag");
        ossl_check(EVP_DecryptFinal_ex(s->c, s->buf + l, &m), "tag check");
        mdb_txn_abort(txn);
    }
    return 0;
}

/* Collects the ids and sealed sizes of the vault's "keys" table. */
typedef struct cold_scan {
    uint8_t (*ids)[16];
    size_t *sizes;
    size_t n, cap;
} cold_scan;

static void cold_scan_rec(const uint8_t *key, size_t key_len, size_t val_len, void *arg)
{
    cold_scan *cs = arg;
    if (key_len != 16)
        bench_die("vault 'keys' table has a %zu-byte key", key_len);
    if (cs->n == cs->cap)
        bench_die("vault 'keys' table has more records than expected");
    memcpy(cs->ids[cs->n], key, 16);
    cs->sizes[cs->n++] = val_len;
}

/* The km side's vault: nkeys AES-256-GCM keys, one durable transaction each;
 * k is ready to measure (a fresh context, the names shuffled). */
static void cold_vault_make(km_cold *k, const char *vdir, size_t nkeys)
{
    km_ctx *keeper;
    size_t i;
    double t0;

    memset(k, 0, sizeof *k);
    k->names = calloc(nkeys, sizeof *k->names);
    k->perm = calloc(nkeys, sizeof *k->perm);
    if (k->names == NULL || k->perm == NULL)
        bench_die("out of memory");
    t0 = bench_now();
    keeper = bench_vault_open(vdir, 0);
    for (i = 0; i < nkeys; i++) {
        if (asprintf(&k->names[i], "cold-%06zu", i) < 0)
            bench_die("out of memory");
        BENCH_CHECK(km_key_create(NULL, keeper, k->names[i], KM_KEY_AES_256_GCM, NULL));
        k->perm[i] = i;
    }
    km_close(keeper);
    printf("# open-cold: %zu keys created in %.1f s (%.0f/s)\n", nkeys, bench_now() - t0,
           (double)nkeys / (bench_now() - t0));
    k->dir = vdir;
    k->n = nkeys;
    k->pos = 0;
}

static void cold_vault_free(km_cold *k)
{
    size_t i;
    for (i = 0; i < k->n; i++)
        free(k->names[i]);
    free(k->names);
    free(k->perm);
}

static void bench_open_cold(size_t nkeys)
{
    char *vdir = bench_mkdtemp("bench-cold"), *rdir = bench_mkdtemp("bench-raw");
    km_ctx *keeper;
    km_cold k;
    raw_cold r;
    cold_scan cs;
    MDB_txn *txn;
    uint8_t key[32];
    size_t i, sum = 0;

    memset(&r, 0, sizeof r);
    memset(&cs, 0, sizeof cs);
    r.perm = calloc(nkeys, sizeof *r.perm);
    cs.ids = calloc(nkeys, sizeof *cs.ids);
    cs.sizes = calloc(nkeys, sizeof *cs.sizes);
    if (r.perm == NULL || cs.ids == NULL || cs.sizes == NULL)
        bench_die("out of memory");
    for (i = 0; i < nkeys; i++)
        r.perm[i] = i;
    cold_vault_make(&k, vdir, nkeys);

    /* the raw twin: the same LMDB keys, values of the same sealed sizes */
    cs.cap = nkeys;
    bench_vault_scan(vdir, "keys", cold_scan_rec, &cs);
    if (cs.n != nkeys)
        bench_die("vault 'keys' table has %zu records, expected %zu", cs.n, nkeys);
    ossl_check(RAND_bytes(key, sizeof key), "RAND_bytes");
    if (mdb_env_create(&r.env) != 0 || mdb_env_set_maxdbs(r.env, 4) != 0
        || mdb_env_set_mapsize(r.env, (size_t)256 << 20) != 0
        || mdb_env_open(r.env, rdir, MDB_NOTLS, 0600) != 0
        || mdb_txn_begin(r.env, NULL, 0, &txn) != 0
        || mdb_dbi_open(txn, "keys", MDB_CREATE, &r.dbi) != 0)
        bench_die("cannot create the raw LMDB environment");
    r.c = EVP_CIPHER_CTX_new();
    if (r.c == NULL)
        bench_die("out of memory");
    ossl_check(EVP_CipherInit_ex(r.c, EVP_aes_256_gcm(), NULL, key, NULL, 1), "cipher init");
    for (i = 0; i < nkeys; i++) {
        uint8_t val[4096], aad[64];
        size_t pl = cs.sizes[i] - 29, aad_len = cold_aad(aad, cs.ids[i]);
        MDB_val mk, mv;
        int l = 0, m = 0;
        if (cs.sizes[i] < 29 || cs.sizes[i] > sizeof val)
            bench_die("vault key record of %zu bytes", cs.sizes[i]);
        sum += cs.sizes[i];
        val[0] = 1;
        ossl_check(RAND_bytes(val + 1, 12), "RAND_bytes");
        ossl_check(RAND_bytes(r.buf, (int)pl), "RAND_bytes");
        ossl_check(EVP_EncryptInit_ex(r.c, NULL, NULL, NULL, val + 1), "encrypt init");
        ossl_check(EVP_EncryptUpdate(r.c, NULL, &l, aad, (int)aad_len), "aad");
        ossl_check(EVP_EncryptUpdate(r.c, val + 13, &l, r.buf, (int)pl), "encrypt");
        ossl_check(EVP_EncryptFinal_ex(r.c, val + 13 + l, &m), "encrypt final");
        ossl_check(EVP_CIPHER_CTX_ctrl(r.c, EVP_CTRL_GCM_GET_TAG, 16, val + 13 + pl), "tag");
        mk.mv_data = cs.ids[i];
        mk.mv_size = 16;
        mv.mv_data = val;
        mv.mv_size = cs.sizes[i];
        if (mdb_put(txn, r.dbi, &mk, &mv, MDB_NOOVERWRITE) != 0)
            bench_die("raw LMDB put failed");
    }
    if (mdb_txn_commit(txn) != 0)
        bench_die("raw LMDB commit failed");
    ossl_check(EVP_CipherInit_ex(r.c, NULL, NULL, key, NULL, 0), "cipher init");
    memset(key, 0, sizeof key);
    r.ids = cs.ids;
    r.n = nkeys;
    r.pos = nkeys;
    printf("# open-cold: key records of %.0f bytes sealed on average; raw twin built\n",
           (double)sum / (double)nkeys);

    keeper = bench_vault_open(vdir, 0);
    k.ctx = bench_vault_open(vdir, 0);
    shuffle(k.perm, nkeys);
    pair("open-cold", km_open_n, &k, &k.excluded, raw_open_n, &r, NULL);
    km_close(k.ctx);
    km_close(keeper);

    EVP_CIPHER_CTX_free(r.c);
    mdb_env_close(r.env);
    cold_vault_free(&k);
    free(r.perm);
    free(cs.ids);
    free(cs.sizes);
    bench_rmtree(vdir);
    bench_rmtree(rdir);
    free(vdir);
    free(rdir);
}

/* ---------------------------------------------------------- thread scaling */

typedef struct thr_arg {
    bench_fn fn;
    void *arg;                /* this thread's own state */
    atomic_int *stop;
    pthread_barrier_t *bar;
    uint64_t ops;
} thr_arg;

static void *thr_main(void *a)
{
    thr_arg *t = a;

    pthread_barrier_wait(t->bar);
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
        if (t->fn(t->arg, BATCH) != 0)
            bench_die("a benchmark operation failed");
        t->ops += BATCH;
    }
    return NULL;
}

/* Total ops/s of `nthr` threads running fn on their own args[i]. */
static double threads_rate(bench_fn fn, void **args, int nthr, double secs)
{
    pthread_t th[MAX_THREADS];
    thr_arg ta[MAX_THREADS];
    pthread_barrier_t bar;
    atomic_int stop;
    struct timespec ts;
    uint64_t total = 0;
    double t0, t1;
    int i;

    atomic_init(&stop, 0);
    pthread_barrier_init(&bar, NULL, (unsigned)nthr + 1);
    for (i = 0; i < nthr; i++) {
        ta[i].fn = fn;
        ta[i].arg = args[i];
        ta[i].stop = &stop;
        ta[i].bar = &bar;
        ta[i].ops = 0;
        if (pthread_create(&th[i], NULL, thr_main, &ta[i]) != 0)
            bench_die("pthread_create failed");
    }
    pthread_barrier_wait(&bar);
    t0 = bench_now();
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    for (i = 0; i < nthr; i++) {
        pthread_join(th[i], NULL);
        total += ta[i].ops;
    }
    t1 = bench_now();
    pthread_barrier_destroy(&bar);
    return (double)total / (t1 - t0);
}

/* nthr threads against 1, interleaved; *many and *one get the medians. */
static void scaling(bench_fn fn, void **args, int nthr, double *many, double *one)
{
    double t[MAX_ROUNDS], o[MAX_ROUNDS];
    int i;

    (void)threads_rate(fn, args, nthr, g_warm_s);
    (void)threads_rate(fn, args, 1, g_warm_s);
    for (i = 0; i < g_rounds; i++) {
        t[i] = threads_rate(fn, args, nthr, g_round_s);
        o[i] = threads_rate(fn, args, 1, g_round_s);
    }
    *many = bench_median(t, (size_t)g_rounds);
    *one = bench_median(o, (size_t)g_rounds);
}

/* One thread-scaling figure of km on ONE shared key handle (encrypt) or ONE
 * context (decrypt), against the machine's own scaling in the same run: raw
 * EVP, each thread with its own context. With nthr == 2 it is the pair
 * `name` (km = 2 threads, raw = 1 thread, ratio = km's scaling: the line's
 * format is older than the reference); the verdict is the quotient of km's
 * scaling by raw's. 4 and 8 threads print comment lines only. */
static void thread_scaling(const char *name, int nthr, int dec, km_ctx *ctx, km_key *key)
{
    km_gcm k[MAX_THREADS];
    raw_gcm r[MAX_THREADS];
    void *args[MAX_THREADS];
    double kmany, kone, rmany, rone;
    int i;

    for (i = 0; i < nthr; i++) {
        km_gcm_init(&k[i], ctx, key, 64, dec ? 1024 : 0);
        args[i] = &k[i];
    }
    scaling(dec ? km_decrypt_n : km_encrypt_n, args, nthr, &kmany, &kone);
    for (i = 0; i < nthr; i++) {
        raw_gcm_init(&r[i], 64, dec ? 1024 : 0);
        if (dec)
            raw_gcm_make_pool(&r[i]);
        args[i] = &r[i];
    }
    scaling(dec ? raw_decrypt : raw_encrypt, args, nthr, &rmany, &rone);
    if (nthr == 2)
        report(name, kmany, kone);
    else
        printf("# %s: km %d threads %.0f/s, 1 thread %.0f/s, scaling %.3f\n", name, nthr, kmany,
               kone, kmany / kone);
    printf("# %s reference: raw EVP, own context per thread: %d threads %.0f/s, "
           "1 thread %.0f/s, scaling %.3f\n", name, nthr, rmany, rone, rmany / rone);
    printf("# %s verdict: km scaling %.3f / raw scaling %.3f = %.3f (target >= 0.95)\n", name,
           kmany / kone, rmany / rone, (kmany / kone) / (rmany / rone));
    fflush(stdout);
    for (i = 0; i < nthr; i++) {
        km_gcm_free(&k[i]);
        raw_gcm_free(&r[i]);
    }
}

/* The 2-thread pair, then 4 and 8 threads where the machine has the cores. */
static void bench_threads(const char *name, int dec, km_ctx *ctx, km_key *key)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char more[64];
    int n;

    thread_scaling(name, 2, dec, ctx, key);
    for (n = 4; n <= MAX_THREADS; n *= 2) {
        snprintf(more, sizeof more, "%s-%dthreads", dec ? "decrypt-64" : "encrypt-64", n);
        if (ncpu >= n)
            thread_scaling(more, n, dec, ctx, key);
        else
            printf("# %s: not run (nproc=%ld)\n", more, ncpu);
    }
    fflush(stdout);
}

/* The pair runner as bench_hw.c sees it. */
static void hw_pair(const char *name, bench_hw_fn km, void *km_arg, bench_hw_fn raw,
                    void *raw_arg)
{
    pair(name, km, km_arg, NULL, raw, raw_arg, NULL);
    fflush(stdout);
}

/* ------------------------------------------------------------ audit */

/* encrypt-64 with an audit entry for every call (group-committed) against
 * encrypt-64 with the data path not audited, each in a vault of its own. */
static void bench_audit(const char *dir)
{
    char d1[4200], d2[4200];
    km_ctx *on, *off;
    km_key *kon = NULL, *koff = NULL;
    km_gcm a, b;

    snprintf(d1, sizeof d1, "%s/audit-on", dir);
    snprintf(d2, sizeof d2, "%s/audit-off", dir);
    on = bench_vault_open(d1, 0);
    off = bench_vault_open(d2, 0);
    BENCH_CHECK(km_audit_set_level(on, KM_AUDIT_DATA_EVERY));
    BENCH_CHECK(km_audit_set_level(off, KM_AUDIT_DATA_NONE));
    BENCH_CHECK(km_key_create(&kon, on, "audited", KM_KEY_AES_256_GCM, NULL));
    BENCH_CHECK(km_key_create(&koff, off, "unaudited", KM_KEY_AES_256_GCM, NULL));
    km_gcm_init(&a, on, kon, 64, 0);
    km_gcm_init(&b, off, koff, 64, 0);
    pair("encrypt-64-audit", km_encrypt_n, &a, NULL, km_encrypt_n, &b, NULL);
    BENCH_CHECK(km_audit_flush(on));
    BENCH_CHECK(km_audit_verify(on, NULL, NULL, NULL));
    km_gcm_free(&a);
    km_gcm_free(&b);
    km_key_free(kon);
    km_key_free(koff);
    km_close(on);
    km_close(off);
}

/* ------------------------------------------------------------ batch */

/* encrypt-64-batch: a group of 64 encryptions of 64 bytes, as one km_batch
 * call (km side) against 64 km_encrypt calls (raw side); ops are groups. */
#define BATCH_ITEMS 64
typedef struct km_batch64 {
    km_key *key;
    uint8_t pt[64];
    uint8_t out[BATCH_ITEMS][64 + KM_CIPHERTEXT_OVERHEAD];
    km_batch_item it[BATCH_ITEMS];
} km_batch64;

static int km_batch_groups(void *arg, uint64_t n)
{
    km_batch64 *b = arg;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_batch(b->key, KM_BATCH_ENCRYPT, 0, b->it, BATCH_ITEMS));
    return 0;
}

static int km_single_groups(void *arg, uint64_t n)
{
    km_batch64 *b = arg;
    size_t olen;
    uint64_t i;
    int j;
    for (i = 0; i < n; i++)
        for (j = 0; j < BATCH_ITEMS; j++)
            BENCH_CHECK(km_encrypt(b->key, b->pt, sizeof b->pt, NULL, 0, b->out[j],
                                   sizeof b->out[j], &olen));
    return 0;
}

static void bench_batch(km_key *aes)
{
    km_batch64 *b = calloc(1, sizeof *b);
    int j;
    if (b == NULL)
        bench_die("out of memory");
    b->key = aes;
    ossl_check(RAND_bytes(b->pt, (int)sizeof b->pt), "RAND_bytes");
    for (j = 0; j < BATCH_ITEMS; j++) {
        b->it[j].in = b->pt;
        b->it[j].in_len = sizeof b->pt;
        b->it[j].out = b->out[j];
        b->it[j].out_cap = sizeof b->out[j];
    }
    printf("# encrypt-64-batch: km = one km_batch of %d encryptions (64 B), raw = %d km_encrypt "
           "calls; ops/s are groups of %d\n", BATCH_ITEMS, BATCH_ITEMS, BATCH_ITEMS);
    pair("encrypt-64-batch", km_batch_groups, b, NULL, km_single_groups, b, NULL);
    free(b);
}

/* ------------------------------------------------------------------- main */

static const char *const all_pairs[] = {
    "encrypt-64", "encrypt-4k", "decrypt-64", "decrypt-4k", "sign-p256", "sign-ed25519",
    "open-cold", "encrypt-64-2threads", "encrypt-64-audit", "pkcs11-encrypt", "pkcs11-sign",
    "tpm2-sign", "kmip-encrypt", "etcd-open-cold", "etcd-encrypt-64", "etcd-create",
    "etcd-propagation", "encrypt-64-batch", "encrypt-64-limit", "encrypt-4k-limit",
    "decrypt-64-2threads", NULL
};

static int wanted(int argc, char **argv, const char *name)
{
    int i;
    if (argc <= 1)
        return 1;
    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

static void check_names(int argc, char **argv)
{
    int i, j;
    for (i = 1; i < argc; i++) {
        for (j = 0; all_pairs[j] != NULL; j++)
            if (strcmp(argv[i], all_pairs[j]) == 0)
                break;
        if (all_pairs[j] == NULL)
            bench_die("unknown pair '%s'", argv[i]);
    }
}

/* --profile PAIR [S]: the km side only, for S seconds, for a profiler. */
static int profile(km_ctx *ctx, km_key *aes, const char *name, double secs, size_t cold_keys)
{
    double ops;
    if (strcmp(name, "encrypt-64") == 0 || strcmp(name, "encrypt-4k") == 0
        || strcmp(name, "decrypt-64") == 0 || strcmp(name, "decrypt-4k") == 0) {
        size_t len = strstr(name, "4k") != NULL ? 4096 : 64;
        km_gcm k;
        km_gcm_init(&k, ctx, aes, len, len == 64 ? 1024 : 256);
        ops = rate(name[0] == 'e' ? km_encrypt_n : km_decrypt_n, &k, secs, NULL);
        km_gcm_free(&k);
    } else if (strcmp(name, "sign-p256") == 0 || strcmp(name, "sign-ed25519") == 0) {
        km_sig k;
        memset(&k, 0, sizeof k);
        BENCH_CHECK(km_key_create(&k.key, ctx, name, strcmp(name, "sign-p256") == 0
                                  ? KM_KEY_EC_P256 : KM_KEY_ED25519, NULL));
        ops = rate(km_sign_n, &k, secs, NULL);
        km_key_free(k.key);
    } else if (strcmp(name, "encrypt-64-2threads") == 0
               || strcmp(name, "decrypt-64-2threads") == 0) {
        km_gcm k[2];
        void *args[2] = { &k[0], &k[1] };
        int dec = name[0] == 'd';
        km_gcm_init(&k[0], ctx, aes, 64, dec ? 1024 : 0);
        km_gcm_init(&k[1], ctx, aes, 64, dec ? 1024 : 0);
        ops = threads_rate(dec ? km_decrypt_n : km_encrypt_n, args, 2, secs);
        km_gcm_free(&k[0]);
        km_gcm_free(&k[1]);
    } else if (strcmp(name, "open-cold") == 0) {
        /* BENCH_COLD_KEYS keys (fewer make a quicker set-up under callgrind:
         * --toggle-collect=km_key_open --toggle-collect=km_key_free) */
        char *vdir = bench_mkdtemp("bench-cold");
        km_ctx *keeper;
        km_cold k;
        cold_vault_make(&k, vdir, cold_keys);
        keeper = bench_vault_open(vdir, 0);
        k.ctx = bench_vault_open(vdir, 0);
        shuffle(k.perm, k.n);
        ops = rate(km_open_n, &k, secs, &k.excluded);
        km_close(k.ctx);
        km_close(keeper);
        cold_vault_free(&k);
        bench_rmtree(vdir);
        free(vdir);
    } else if (strcmp(name, "encrypt-64-audit") == 0) {
        /* the km side of the pair: an entry per call, flushed at the end
         * (the flusher's work is in the profile too) */
        km_gcm k;
        BENCH_CHECK(km_audit_set_level(ctx, KM_AUDIT_DATA_EVERY));
        km_gcm_init(&k, ctx, aes, 64, 0);
        ops = rate(km_encrypt_n, &k, secs, NULL);
        BENCH_CHECK(km_audit_flush(ctx));
        km_gcm_free(&k);
    } else {
        bench_die("--profile supports encrypt-*, decrypt-*, sign-*, encrypt-64-2threads, "
                  "decrypt-64-2threads, open-cold, encrypt-64-audit");
    }
    printf("# profile %s: km side only, %.0f ops/s over %.1f s\n", name, ops, secs);
    return 0;
}

int main(int argc, char **argv)
{
    char *dir;
    km_ctx *ctx;
    km_key *aes;
    size_t cold_keys;
    int i, rc = 0;

    g_rounds = (int)bench_env_num("BENCH_ROUNDS", 7);
    g_round_s = bench_env_num("BENCH_ROUND_S", 0.25);
    cold_keys = (size_t)bench_env_num("BENCH_COLD_KEYS", COLD_KEYS_DEFAULT);
    if (g_rounds < 5 || g_rounds > MAX_ROUNDS)
        bench_die("BENCH_ROUNDS must be 5 to %d", MAX_ROUNDS);
    if (g_round_s < 0.01 || cold_keys < 16)
        bench_die("BENCH_ROUND_S must be >= 0.01 and BENCH_COLD_KEYS >= 16");

    BENCH_CHECK(km_init());
    bench_print_machine("bench");
    dir = bench_mkdtemp("bench");
    ctx = bench_vault_open(dir, 0);
    BENCH_CHECK(km_key_create(&aes, ctx, "bench-aes", KM_KEY_AES_256_GCM, NULL));

    if (argc >= 3 && strcmp(argv[1], "--profile") == 0) {
        rc = profile(ctx, aes, argv[2], argc >= 4 ? atof(argv[3]) : 5.0, cold_keys);
        goto done;
    }
    check_names(argc, argv);
    printf("# rounds=%d round_s=%.2f: km and raw interleaved, median of rounds, "
           "ratio = km/raw\n", g_rounds, g_round_s);
    fflush(stdout);

    for (i = 0; i < 4; i++) {
        static const char *const names[] = { "encrypt-64", "encrypt-4k", "decrypt-64",
                                             "decrypt-4k" };
        size_t len = (i % 2) ? 4096 : 64, npool = (i % 2) ? 256 : 1024;
        int dec = i >= 2;
        km_gcm k;
        raw_gcm r;
        if (!wanted(argc, argv, names[i]))
            continue;
        km_gcm_init(&k, ctx, aes, len, dec ? npool : 0);
        raw_gcm_init(&r, len, npool);
        if (dec)
            raw_gcm_make_pool(&r);
        pair(names[i], dec ? km_decrypt_n : km_encrypt_n, &k, NULL,
             dec ? raw_decrypt : raw_encrypt, &r, NULL);
        km_gcm_free(&k);
        raw_gcm_free(&r);
    }
    if (wanted(argc, argv, "sign-p256"))
        bench_sign("sign-p256", ctx, KM_KEY_EC_P256, "EC", "P-256", "SHA256");
    if (wanted(argc, argv, "sign-ed25519"))
        bench_sign("sign-ed25519", ctx, KM_KEY_ED25519, "ED25519", NULL, NULL);
    if (wanted(argc, argv, "open-cold"))
        bench_open_cold(cold_keys);
    if (wanted(argc, argv, "encrypt-64-2threads"))
        bench_threads("encrypt-64-2threads", 0, ctx, aes);
    if (wanted(argc, argv, "encrypt-64-audit"))
        bench_audit(dir);
    if (wanted(argc, argv, "pkcs11-encrypt") || wanted(argc, argv, "pkcs11-sign"))
        bench_hw_pkcs11(dir, hw_pair, wanted(argc, argv, "pkcs11-encrypt"),
                        wanted(argc, argv, "pkcs11-sign"));
    if (wanted(argc, argv, "tpm2-sign"))
        bench_hw_tpm2(dir, hw_pair);
    if (wanted(argc, argv, "kmip-encrypt"))
        bench_hw_kmip(dir, hw_pair);
    {
        int want[4] = { wanted(argc, argv, "etcd-open-cold"), wanted(argc, argv, "etcd-encrypt-64"),
                        wanted(argc, argv, "etcd-create"), wanted(argc, argv, "etcd-propagation") };
        if (want[0] || want[1] || want[2] || want[3])
            bench_etcd(dir, hw_pair, want);
    }
    if (wanted(argc, argv, "encrypt-64-batch"))
        bench_batch(aes);
    for (i = 0; i < 2; i++) {
        static const char *const names[] = { "encrypt-64-limit", "encrypt-4k-limit" };
        size_t len = i ? 4096 : 64;
        km_gcm k;
        raw_gcm r;
        if (!wanted(argc, argv, names[i]))
            continue;
        km_gcm_init(&k, ctx, aes, len, 0);
        raw_gcm_init(&r, len, 0);
        pair(names[i], km_encrypt_n, &k, NULL, raw_encrypt_counter, &r, NULL);
        km_gcm_free(&k);
        raw_gcm_free(&r);
    }
    if (wanted(argc, argv, "decrypt-64-2threads"))
        bench_threads("decrypt-64-2threads", 1, ctx, aes);
    bench_print_load();
done:
    km_key_free(aes);
    km_close(ctx);
    bench_rmtree(dir);
    free(dir);
    return rc;
}
