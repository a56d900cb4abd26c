/* benchutil.c - shared helpers of the benchmarks (see benchutil.h). */
#define _GNU_SOURCE 1
#include "benchutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/crypto.h>

#define BENCH_PASSPHRASE "libkm benchmark passphrase"

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void bench_die_km(const char *what, int rc, const char *file, int line)
{
    const km_error *e = km_error_last();
    bench_die("%s:%d: %s failed: %s (%s)", file, line, what, km_err_name(rc),
              e != NULL && e->message != NULL ? e->message : "");
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_quantile(double *v, size_t n, double q)
{
    size_t rank;
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    rank = (size_t)(q * (double)n + 0.999999); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

double bench_env_num(const char *name, double def)
{
    const char *s = getenv(name);
    char *end = NULL;
    double v;
    if (s == NULL || *s == '\0')
        return def;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || v < 0)
        bench_die("%s=%s is not a non-negative number", name, s);
    return v;
}

static void cpu_model(char *out, size_t cap)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, cap, "unknown");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p != NULL) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = '\0';
                snprintf(out, cap, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

/* The 1-minute load average: other work on the machine skews the figures. */
static double loadavg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double v = -1;
    if (f != NULL) {
        if (fscanf(f, "%lf", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

void bench_print_machine(const char *prog)
{
    char cpu[256];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_model(cpu, sizeof cpu);
    printf("# %s: nproc=%ld cpu=\"%s\" openssl=\"%s\" lmdb=\"%s\" libkm=%s loadavg=%.2f\n",
           prog, ncpu, cpu, OpenSSL_version(OPENSSL_VERSION), mdb_version(NULL, NULL, NULL),
           km_version(), loadavg());
    fflush(stdout);
}

void bench_print_load(void)
{
    printf("# loadavg=%.2f at the end\n", loadavg());
    fflush(stdout);
}

char *bench_mkdtemp(const char *tag)
{
    const char *base = getenv("BENCH_DIR");
    char *path;
    if (base == NULL || *base == '\0')
        base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    if (asprintf(&path, "%s/km-%s-XXXXXX", base, tag) < 0)
        bench_die("out of memory");
    if (mkdtemp(path) == NULL)
        bench_die("mkdtemp %s: %s", path, strerror(errno));
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void bench_rmtree(const char *path)
{
    const char *keep = getenv("BENCH_KEEP");
    if (path == NULL)
        return;
    if (keep != NULL && strcmp(keep, "1") == 0) {
        fprintf(stderr, "bench: kept %s\n", path);
        return;
    }
    (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

km_ctx *bench_vault_open(const char *dir, uint64_t map_size)
{
    return bench_vault_open_cache(dir, map_size, 0);
}

km_ctx *bench_vault_open_cache(const char *dir, uint64_t map_size, uint32_t key_cache_max)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)BENCH_PASSPHRASE;
    o.passphrase_len = sizeof BENCH_PASSPHRASE - 1;
    o.kdf_cost = KM_KDF_COST_MIN;
    o.map_size = map_size;
    o.key_cache_max = key_cache_max;
    BENCH_CHECK(km_open(&ctx, dir, &o));
    return ctx;
}

/* ---------------------------------------------------- read-only LMDB look */

#define LMDB_CHECK(call)                                                               \
    do {                                                                               \
        int mrc_ = (call);                                                             \
        if (mrc_ != 0)                                                                 \
            bench_die("%s: %s", #call, mdb_strerror(mrc_));                            \
    } while (0)

static MDB_env *ro_env_open(const char *dir)
{
    MDB_env *env = NULL;
    LMDB_CHECK(mdb_env_create(&env));
    LMDB_CHECK(mdb_env_set_maxdbs(env, 16));
    LMDB_CHECK(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600));
    return env;
}

static void db_stat(MDB_txn *txn, const char *name, bench_dbstat *out)
{
    MDB_dbi dbi;
    MDB_stat s;
    memset(out, 0, sizeof *out);
    if (mdb_dbi_open(txn, name, 0, &dbi) != 0)
        return; /* absent table */
    LMDB_CHECK(mdb_stat(txn, dbi, &s));
    out->entries = s.ms_entries;
    out->depth = s.ms_depth;
    out->pages = s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages;
}

void bench_vault_stat(const char *dir, bench_vaultstat *st)
{
    char *path;
    struct stat sb;
    MDB_env *env;
    MDB_txn *txn;
    MDB_envinfo info;
    MDB_stat es;

    memset(st, 0, sizeof *st);
    if (asprintf(&path, "%s/data.mdb", dir) < 0)
        bench_die("out of memory");
    if (stat(path, &sb) != 0)
        bench_die("stat %s: %s", path, strerror(errno));
    free(path);
    st->file_bytes = (uint64_t)sb.st_size;
    st->disk_bytes = (uint64_t)sb.st_blocks * 512u;
    env = ro_env_open(dir);
    LMDB_CHECK(mdb_env_info(env, &info));
    LMDB_CHECK(mdb_env_stat(env, &es));
    st->psize = es.ms_psize;
    st->used_bytes = (uint64_t)(info.me_last_pgno + 1) * es.ms_psize;
    LMDB_CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    db_stat(txn, "keys", &st->keys);
    db_stat(txn, "names", &st->names);
    db_stat(txn, "vmeta", &st->vmeta);
    db_stat(txn, "material", &st->material);
    db_stat(txn, "counters", &st->counters);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

void bench_vault_scan(const char *dir, const char *table, bench_rec_fn fn, void *arg)
{
    MDB_env *env = ro_env_open(dir);
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc;

    LMDB_CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    LMDB_CHECK(mdb_dbi_open(txn, table, 0, &dbi));
    LMDB_CHECK(mdb_cursor_open(txn, dbi, &cur));
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        fn(k.mv_data, k.mv_size, v.mv_size, arg);
    if (mrc != MDB_NOTFOUND)
        bench_die("scanning table %s: %s", table, mdb_strerror(mrc));
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

void *bench_line_alloc(size_t n)
{
    size_t sz = (n + 63) / 64 * 64;
    void *p = aligned_alloc(64, sz > 0 ? sz : 64);
    if (p == NULL)
        bench_die("out of memory");
    memset(p, 0, sz > 0 ? sz : 64);
    return p;
}
