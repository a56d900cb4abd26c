/* scale.c - libkm vaults of 1 k, 100 k (and 1 M) keys: open-by-name latency
 * and bytes on disk per key version, printed as a table.
 *
 * One vault grows through the sizes: keys are created through the public
 * API only (km_key_create: one durable LMDB transaction per key, about
 * 1,000 per second on ext4). At each size the vault is closed, its
 * data.mdb measured, then opened again and BENCH_SCALE_SAMPLES (2000)
 * random names are opened with km_key_open + km_key_free, each timed alone,
 * on a freshly opened context (libkm's key cache cold; a second context
 * keeps the LMDB environment open, as a long-running process would).
 * The same names are then opened once more on another fresh context (the
 * mapping's pages now touched): the "again" column. Last, km_decrypt of one
 * 64-byte ciphertext is timed with one key in a context's key cache, then
 * with every key of the vault (or BENCH_SCALE_DEC_KEYS of them) opened once
 * in that context, whose key cache is made large enough to keep them all
 * ("dec-1", "dec-many"). The resident memory (VmRSS) that those cached key
 * objects added, per key (one version each, metadata only), is "rss/key";
 * "rss/ver" is what a loaded version adds on top (its backend object: the
 * software backend's keyed AES-GCM contexts), measured over
 * min(keys, BENCH_SCALE_LOAD_KEYS = 10000) keys used for one encryption each.
 *
 * Sizes: 1000 and 100000; BENCH_SCALE_FULL=1 adds 1000000 (about 17 minutes
 * of key creation); BENCH_SCALE_SIZES="1000,5000" overrides the list.
 */
#define _GNU_SOURCE 1
#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/vfs.h>

#define MAX_SIZES 8
#define SCALE_MAP_SIZE ((uint64_t)16 << 30)

static uint64_t g_rng = 0x2545f4914f6cdd1du;

static uint64_t rng_next(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1du;
}

static void key_name(char *out, size_t cap, size_t i)
{
    snprintf(out, cap, "scale-%07zu", i);
}

static size_t parse_sizes(size_t *sizes, int full)
{
    const char *s = getenv("BENCH_SCALE_SIZES");
    size_t n = 0;
    if (s != NULL && *s != '\0') {
        char *copy = strdup(s), *tok, *save = NULL;
        if (copy == NULL)
            bench_die("out of memory");
        for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            char *end;
            unsigned long long v = strtoull(tok, &end, 10);
            if (*end != '\0' || v == 0 || n == MAX_SIZES || (n > 0 && v <= sizes[n - 1]))
                bench_die("BENCH_SCALE_SIZES must be increasing key counts, comma-separated");
            sizes[n++] = (size_t)v;
        }
        free(copy);
        return n;
    }
    sizes[n++] = 1000;
    sizes[n++] = 100000;
    if (full)
        sizes[n++] = 1000000;
    return n;
}

/* Page faults of this process so far (minor: a page of the vault's mapping
 * touched for the first time in this process, already in the page cache). */
static double minflt(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_minflt : 0;
}

/* Opens each sampled name once on fresh contexts, timing each open; a name
 * is opened at most once per context. *faults: minor page faults per open
 * (the context's own opening excluded). */
static void time_opens(const char *dir, const size_t *sample, size_t nsample, size_t per_ctx,
                       double *lat_us, double *faults)
{
    km_ctx *ctx = NULL;
    size_t i;
    char name[64];
    double f = 0, f0;

    for (i = 0; i < nsample; i++) {
        km_key *k = NULL;
        double t0;
        if (i % per_ctx == 0) {
            km_close(ctx);
            ctx = bench_vault_open(dir, SCALE_MAP_SIZE);
        }
        key_name(name, sizeof name, sample[i]);
        f0 = minflt();
        t0 = bench_now();
        BENCH_CHECK(km_key_open(&k, ctx, name));
        km_key_free(k);
        lat_us[i] = (bench_now() - t0) * 1e6;
        f += minflt() - f0;
    }
    km_close(ctx);
    *faults = f / (double)nsample;
}

/* The process's resident memory in bytes (VmRSS of /proc/self/status). */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtod(line + 6, NULL);
    fclose(f);
    return kb * 1024;
}

/* Microseconds per km_decrypt of one 64-byte ciphertext over about `secs`. */
static double decrypt_us(km_ctx *ctx, const uint8_t *ct, size_t ct_len, double secs)
{
    uint8_t pt[64];
    size_t n, ops = 0, i;
    double t0 = bench_now(), el;
    do {
        for (i = 0; i < 256; i++)
            BENCH_CHECK(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n));
        ops += 256;
        el = bench_now() - t0;
    } while (el < secs);
    return el * 1e6 / (double)ops;
}

/* km_decrypt finds its key in the context's key cache. Decrypt speed with
 * one key cached, then after `n` keys were opened (and freed) once through
 * the same context, whose cache keeps them all; the resident memory they
 * added per key; then what loading `nload` versions (one encryption with
 * each) added per version. */
static void decrypt_cached(const char *dir, size_t n, size_t nload, double *one_us,
                           double *all_us, double *rss_key, double *rss_ver)
{
    km_ctx *ctx = bench_vault_open_cache(dir, SCALE_MAP_SIZE, (uint32_t)(n + 1024));
    uint8_t pt[64] = { 0 }, ct[64 + KM_CIPHERTEXT_OVERHEAD];
    size_t ct_len, i;
    char name[64];
    km_key *k = NULL;
    double r0, r1, r2;

    key_name(name, sizeof name, n / 2);
    BENCH_CHECK(km_key_open(&k, ctx, name));
    BENCH_CHECK(km_encrypt(k, pt, sizeof pt, NULL, 0, ct, sizeof ct, &ct_len));
    km_key_free(k);
    *one_us = decrypt_us(ctx, ct, ct_len, 0.3);
    r0 = rss_bytes();
    for (i = 0; i < n; i++) {
        key_name(name, sizeof name, i);
        BENCH_CHECK(km_key_open(&k, ctx, name));
        km_key_free(k);
    }
    r1 = rss_bytes();
    *all_us = decrypt_us(ctx, ct, ct_len, 0.3);
    for (i = 0; i < nload && i < n; i++) {
        uint8_t c2[64 + KM_CIPHERTEXT_OVERHEAD];
        size_t l2;
        key_name(name, sizeof name, i);
        BENCH_CHECK(km_key_open(&k, ctx, name));
        BENCH_CHECK(km_encrypt(k, pt, sizeof pt, NULL, 0, c2, sizeof c2, &l2));
        km_key_free(k);
    }
    r2 = rss_bytes();
    *rss_key = n > 0 ? (r1 - r0) / (double)n : 0;
    *rss_ver = nload > 0 && n > 0 ? (r2 - r1) / (double)(nload < n ? nload : n) : 0;
    km_close(ctx);
}

int main(void)
{
    int full = bench_env_num("BENCH_SCALE_FULL", 0) == 1;
    size_t sizes[MAX_SIZES], nsizes = parse_sizes(sizes, full), nsample, dec_keys, load_keys, s;
    size_t created = 0;
    size_t *sample, *perm = NULL;
    double *lat, *lat2, p50_first = 0, p99_first = 0, p50[MAX_SIZES], p99[MAX_SIZES];
    double dec_ratio[MAX_SIZES], flt[MAX_SIZES][2];
    char *dir, name[64];
    km_ctx *ctx;

    nsample = (size_t)bench_env_num("BENCH_SCALE_SAMPLES", 2000);
    dec_keys = (size_t)bench_env_num("BENCH_SCALE_DEC_KEYS", 0); /* 0: every key */
    load_keys = (size_t)bench_env_num("BENCH_SCALE_LOAD_KEYS", 10000);
    if (nsample < 100)
        bench_die("BENCH_SCALE_SAMPLES must be >= 100");
    sample = calloc(nsample, sizeof *sample);
    lat = calloc(nsample, sizeof *lat);
    lat2 = calloc(nsample, sizeof *lat2);
    if (sample == NULL || lat == NULL || lat2 == NULL)
        bench_die("out of memory");

    BENCH_CHECK(km_init());
    bench_print_machine("bench-scale");
    dir = bench_mkdtemp("bench-scale");
    printf("# vault %s; AES-256-GCM keys, one km_key_create (one durable transaction) each\n", dir);
    {
        struct statfs sf;
        if (statfs(dir, &sf) == 0 && sf.f_type == 0x01021994) /* TMPFS_MAGIC */
            printf("# the vault is on tmpfs: fsync costs nothing there, so create/s is not the "
                   "speed of durable commits on a disk\n");
    }
    if (!full && getenv("BENCH_SCALE_SIZES") == NULL)
        printf("# 1000000 keys: not run (BENCH_SCALE_FULL=1 runs it: about 17 minutes of key "
               "creation at ~1000 keys/s)\n");
    printf("# open: km_key_open + km_key_free of %zu random names on fresh contexts (key cache "
           "cold), each timed alone; 'again': the same names on another fresh context\n",
           nsample);
    if (dec_keys == 0)
        printf("# decrypt: microseconds per km_decrypt (64 B) with 1 key in the context's cache "
               "(dec-1), then with every key of the vault in it (dec-many)\n");
    else
        printf("# decrypt: microseconds per km_decrypt (64 B) with 1 key in the context's cache "
               "(dec-1), then with min(keys, %zu) keys in it (dec-many)\n", dec_keys);
    printf("# memory: resident bytes per cached key (rss/key: key object and version metadata), "
           "then per loaded version on top (rss/ver: its backend object, over min(keys, %zu) "
           "keys)\n", load_keys);
    printf("# %-9s %9s %9s %9s %10s %10s %10s %12s %9s %9s %5s %8s %8s %8s %8s\n", "", "keys",
           "versions", "create/s", "open-p50", "open-p99", "again-p50", "data.mdb", "bytes/ver",
           "used/ver", "depth", "dec-1", "dec-many", "rss/key", "rss/ver");
    fflush(stdout);

    ctx = bench_vault_open(dir, SCALE_MAP_SIZE);
    for (s = 0; s < nsizes; s++) {
        size_t n = sizes[s], i, per_ctx;
        bench_vaultstat st;
        km_ctx *keeper;
        double t0 = bench_now(), create_rate, dec_one, dec_all, rss_key, rss_ver;
        size_t nver;

        for (i = created; i < n; i++) {
            key_name(name, sizeof name, i);
            BENCH_CHECK(km_key_create(NULL, ctx, name, KM_KEY_AES_256_GCM, NULL));
            if ((i + 1) % 20000 == 0) {
                double el = bench_now() - t0;
                fprintf(stderr, "bench-scale: %zu / %zu keys (%.0f/s, %.0f s to go)\n", i + 1, n,
                        (double)(i + 1 - created) / el,
                        (double)(n - i - 1) * el / (double)(i + 1 - created));
            }
        }
        create_rate = (double)(n - created) / (bench_now() - t0);
        created = n;
        km_close(ctx);
        bench_vault_stat(dir, &st);
        if (st.keys.entries != n)
            bench_die("the vault holds %zu keys, expected %zu", st.keys.entries, n);

        /* the sample: distinct names while they last (Fisher-Yates prefix) */
        perm = realloc(perm, n * sizeof *perm);
        if (perm == NULL)
            bench_die("out of memory");
        for (i = 0; i < n; i++)
            perm[i] = i;
        for (i = 0; i < nsample; i++) {
            size_t j, t, k = i % n;
            if (k == 0 && i > 0) /* another round over all names */
                for (j = 0; j < n; j++)
                    perm[j] = j;
            j = k + (size_t)(rng_next() % (n - k));
            t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
            sample[i] = perm[k];
        }
        per_ctx = nsample < n ? nsample : n;

        keeper = bench_vault_open(dir, SCALE_MAP_SIZE);
        time_opens(dir, sample, nsample, per_ctx, lat, &flt[s][0]);
        time_opens(dir, sample, nsample, per_ctx, lat2, &flt[s][1]);
        decrypt_cached(dir, dec_keys == 0 || n < dec_keys ? n : dec_keys, load_keys, &dec_one,
                       &dec_all, &rss_key, &rss_ver);
        km_close(keeper);
        dec_ratio[s] = dec_one > 0 ? dec_all / dec_one : 0;
        p50[s] = bench_median(lat, nsample);
        p99[s] = bench_quantile(lat, nsample, 0.99);
        if (s == 0) {
            p50_first = p50[s];
            p99_first = p99[s];
        }
        /* one version per key, each with its material record (the version
         * records live in the key records from vault format 5) */
        nver = st.material.entries;
        printf("SCALE      %9zu %9zu %9.0f %10.1f %10.1f %10.1f %12llu %9.1f %9.1f %5zu %8.2f "
               "%8.2f %8.0f %8.0f\n", n, nver, create_rate, p50[s], p99[s],
               bench_median(lat2, nsample), (unsigned long long)st.file_bytes,
               (double)st.file_bytes / (double)nver, (double)st.used_bytes / (double)nver,
               st.names.depth, dec_one, dec_all, rss_key, rss_ver);
        fflush(stdout);
        ctx = bench_vault_open(dir, SCALE_MAP_SIZE);
    }
    km_close(ctx);
    for (s = 1; s < nsizes; s++)
        printf("SCALE open-latency %zu/%zu p50=%.2fx p99=%.2fx (target for 1000000/1000: p50 <= "
               "1.5x)\n", sizes[s], sizes[0], p50[s] / p50_first, p99[s] / p99_first);
    for (s = 0; s < nsizes; s++)
        printf("SCALE open-faults %zu keys: %.2f first, %.2f again (minor page faults per open: "
               "pages of the vault's mapping touched for the first time in the process)\n",
               sizes[s], flt[s][0], flt[s][1]);
    for (s = 0; s < nsizes; s++)
        printf("SCALE dec-many/dec-1 %zu keys: %.2fx (target at 1000000 keys in one context: <= "
               "1.5x)\n", sizes[s], dec_ratio[s]);
    printf("# open-*: microseconds; data.mdb: file size in bytes (bytes/ver) and pages in use "
           "((last page + 1) x page size, used/ver), per key version; depth: B-tree depth of the "
           "name index; dec-*: microseconds per km_decrypt; rss/*: bytes\n");
    bench_print_load();
    bench_rmtree(dir);
    free(dir);
    free(perm);
    free(sample);
    free(lat);
    free(lat2);
    return 0;
}
