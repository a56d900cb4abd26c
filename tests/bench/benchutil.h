/* benchutil.h - shared helpers of the benchmarks: clock, statistics, machine
 * line, scratch directories, vault opening, a read-only look into a closed
 * vault's LMDB environment. Not part of libkm. */
#ifndef KM_BENCHUTIL_H
#define KM_BENCHUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <km.h>

/* Aborts the benchmark with a message (and km_error_last() when rc < 0). */
#define BENCH_CHECK(call)                                                              \
    do {                                                                               \
        int brc_ = (call);                                                             \
        if (brc_ != KM_OK)                                                             \
            bench_die_km(#call, brc_, __FILE__, __LINE__);                             \
    } while (0)

void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void bench_die_km(const char *what, int rc, const char *file, int line)
    __attribute__((noreturn));

/* Monotonic seconds. */
double bench_now(void);
/* Median of n values (sorts v in place). */
double bench_median(double *v, size_t n);
/* The q-quantile (0..1) of n values, nearest rank (sorts v in place). */
double bench_quantile(double *v, size_t n, double q);
/* An environment variable as a number, or `def` when unset or empty. */
double bench_env_num(const char *name, double def);

/* Prints the machine line: "# machine: nproc=... cpu="..." openssl="..." ...". */
void bench_print_machine(const char *prog);
/* Prints "# loadavg=... at the end". */
void bench_print_load(void);

/* A fresh scratch directory under $BENCH_DIR, $TMPDIR or /tmp (malloc'ed path). */
char *bench_mkdtemp(const char *tag);
/* Zeroed memory of n bytes on cache lines of its own (64-byte aligned, the
 * size rounded up to 64): the buffers two threads write, so that no line is
 * shared between them by the allocator's placement (false sharing). */
void *bench_line_alloc(size_t n);
/* Removes a directory tree (unless BENCH_KEEP=1). */
void bench_rmtree(const char *path);

/* Opens (creating if needed) the vault in `dir` with the cheapest scrypt
 * cost; `map_size` 0 = libkm's default. */
km_ctx *bench_vault_open(const char *dir, uint64_t map_size);
/* The same with the context's key cache holding up to key_cache_max keys (0: libkm's default). */
km_ctx *bench_vault_open_cache(const char *dir, uint64_t map_size, uint32_t key_cache_max);

/* What a read-only look at a closed vault's LMDB environment finds. */
typedef struct bench_dbstat {
    size_t entries;          /* records in the named DB */
    size_t depth;            /* B-tree depth */
    size_t pages;            /* branch + leaf + overflow pages */
} bench_dbstat;

typedef struct bench_vaultstat {
    uint64_t file_bytes;     /* data.mdb st_size */
    uint64_t disk_bytes;     /* data.mdb st_blocks * 512 */
    uint64_t used_bytes;     /* (last used page + 1) * page size */
    unsigned psize;
    bench_dbstat keys, names, vmeta, material, counters;
} bench_vaultstat;

/* Fills `st`. The vault must not be open in this process (LMDB forbids
 * opening one environment twice in one process). */
void bench_vault_stat(const char *dir, bench_vaultstat *st);

/* Calls fn(key, key_len, val_len, arg) for every record of the named DB
 * `table` of a closed vault. */
typedef void (*bench_rec_fn)(const uint8_t *key, size_t key_len, size_t val_len, void *arg);
void bench_vault_scan(const char *dir, const char *table, bench_rec_fn fn, void *arg);

#endif /* KM_BENCHUTIL_H */
