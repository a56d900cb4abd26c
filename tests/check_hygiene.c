/*
 * check_hygiene.c - secret hygiene through the public API (docs/RELIABILITY.md E, issue 10 item 5).
 *
 * A canary AES-256 key (32 bytes made at run time, never stored contiguously in
 * this program: the scanner keeps it XOR-masked) is imported raw, used, then
 * destroyed (revoke, schedule_destroy 7 days, km_maintain 8 days later on an
 * injected clock) and the vault closed; the live memory of this process is then
 * scanned (/proc/self/maps + /proc/self/mem) for the canary. Likewise after error
 * paths, in a core dump of a child that aborts holding the key (libkm's secure
 * pages are MADV_DONTDUMP), in data.mdb and lock.mdb, and in exported blobs.
 *
 * Runs in one process (CK_NOFORK) so that the figures add up; prints
 *   hygiene: canary found in X of N places checked
 * Every place where it is found is printed with its address and mapping.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <km.h>

#include "testutil.h"

#define DAY 86400
#define MASK 0xA5u
#define CHUNK (1u << 20)

static int places, found_places;
static uint8_t needle[32];   /* canary XOR MASK: never the canary itself */
static uint8_t *scanbuf;     /* mmap'ed, skipped by the scan */

/* The canary: 32 bytes from a seed (time and pid), XOR-masked into needle. */
static void canary_init(void)
{
    uint64_t x = (uint64_t)time(NULL) * 6364136223846793005ull + (uint64_t)getpid() * 1442695040888963407ull;
    int i;
    for (i = 0; i < 32; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        needle[i] = (uint8_t)((uint8_t)(x >> 24) ^ MASK);
    }
}

/* Writes the canary into `out` (the caller wipes it with km_memzero). */
static void canary_get(volatile uint8_t *out)
{
    int i;
    for (i = 0; i < 32; i++)
        out[i] = (uint8_t)(needle[i] ^ MASK);
}

/* Offsets of the canary in `hay` (compared byte by byte against the mask). */
static size_t find_all(const uint8_t *hay, size_t n, size_t *first)
{
    size_t i, hits = 0;
    uint8_t c0 = (uint8_t)(needle[0] ^ MASK);
    if (n < 32)
        return 0;
    for (i = 0; i + 32 <= n; i++) {
        size_t j;
        if (hay[i] != c0)
            continue;
        for (j = 1; j < 32 && hay[i + j] == (uint8_t)(needle[j] ^ MASK); j++)
            ;
        if (j == 32) {
            if (hits++ == 0 && first)
                *first = i;
        }
    }
    return hits;
}

/* Scans this process's readable memory; returns the number of hits, printing each. */
static size_t scan_self(const char *when)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY);
    char line[1024];
    size_t hits = 0, regions = 0, skipped = 0;

    ck_assert(maps != NULL && mem >= 0);
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi, a;
        char perm[8] = "";
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) != 3)
            continue;
        if (perm[0] != 'r' || strstr(line, "[vvar]") || strstr(line, "[vsyscall]")
            || strstr(line, "[vdso]")) {
            skipped++;
            continue;
        }
        if ((uintptr_t)scanbuf < hi && (uintptr_t)scanbuf + CHUNK > lo)
            continue; /* our own read buffer */
        if (hi - lo > (1ul << 32)) { /* sanitizer shadow and other huge reservations */
            skipped++;
            continue;
        }
        regions++;
        /* overlap chunks by 31 bytes so a canary across a boundary is seen */
        for (a = lo; a < hi;) {
            size_t want = hi - a < CHUNK ? hi - a : CHUNK, off = 0;
            ssize_t got = pread(mem, scanbuf, want, (off_t)a);
            if (got > 0) {
                size_t h = find_all(scanbuf, (size_t)got, &off);
                if (h > 0) {
                    line[strcspn(line, "\n")] = '\0';
                    printf("hygiene: %s: canary x%zu at %#lx in [%s]\n", when, h, a + off, line);
                    hits += h;
                }
                km_memzero(scanbuf, (size_t)got);
            }
            if (got <= 0) {
                a += 4096; /* an unreadable page (file hole, guard) */
                continue;
            }
            if (a + (size_t)got >= hi)
                break;
            a += (size_t)got > 31 ? (size_t)got - 31 : (size_t)got;
        }
    }
    fclose(maps);
    close(mem);
    printf("hygiene: %s: scanned %zu regions (%zu skipped), %zu hits\n", when, regions, skipped, hits);
    return hits;
}

static size_t scan_file(const char *path, const char *what)
{
    size_t len = 0, h, off = 0;
    uint8_t *b = tu_read_file(path, &len);
    if (b == NULL)
        return 0;
    h = find_all(b, len, &off);
    if (h > 0)
        printf("hygiene: canary x%zu in %s (%s) at offset %zu\n", h, what, path, off);
    km_memzero(b, len);
    free(b);
    return h;
}

static void place(const char *what, size_t hits)
{
    places++;
    if (hits > 0)
        found_places++;
    printf("hygiene: place %-38s %s\n", what, hits ? "CANARY FOUND" : "clean");
}

static km_key *import_canary(km_ctx *ctx, const char *name, km_key_type type)
{
    volatile uint8_t m[32];
    km_key *k = NULL;
    int rc;
    canary_get(m);
    rc = km_key_import(&k, ctx, name, type, KM_MATERIAL_RAW, (const uint8_t *)(uintptr_t)m, 32,
                       KM_IMPORT_ALLOW_RAW, NULL);
    km_memzero((void *)(uintptr_t)m, sizeof m);
    ck_assert_msg(rc == KM_OK, "import: %s (%s)", km_err_name(rc), km_error_last()->message);
    return k;
}

static void vault_files(const char *dir, const char *when)
{
    char p[4300], w[100];
    snprintf(p, sizeof p, "%s/vault/data.mdb", dir);
    snprintf(w, sizeof w, "data.mdb %s", when);
    place(w, scan_file(p, "data.mdb"));
    snprintf(p, sizeof p, "%s/vault/lock.mdb", dir);
    snprintf(w, sizeof w, "lock.mdb %s", when);
    place(w, scan_file(p, "lock.mdb"));
}

/* The scanner works: the canary is found while this test holds a copy. */
START_TEST(test_scanner_sees_canary)
{
    uint8_t *copy = malloc(32);
    canary_get(copy);
    ck_assert_msg(scan_self("self-test") >= 1, "the memory scanner does not see a known copy");
    km_memzero(copy, 32);
    free(copy);
}
END_TEST

START_TEST(test_after_destroy_and_close)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx;
    km_key *k;
    uint8_t ct[64 + KM_CIPHERTEXT_OVERHEAD], pt[64], wk[KM_DATAKEY_WRAPPED_LEN];
    size_t n, m;
    size_t h;
    km_secret *dk = NULL;

    tu_now = 1900000000;
    ctx = tu_vault_clocked(dir, 0);
    k = import_canary(ctx, "canary", KM_KEY_AES_256_GCM);
    OK(km_encrypt(k, (const uint8_t *)"sixty-four bytes of plaintext, more or less, to encrypt...!!!!!!", 64,
                  NULL, 0, ct, sizeof ct, &n));
    OK(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    OK(km_datakey_generate(k, NULL, 0, &dk, wk, sizeof wk, &m));
    km_secret_free(dk);
    place("ciphertext", find_all(ct, n, NULL));
    place("wrapped data key", find_all(wk, m, NULL));
    vault_files(dir, "(key live)");
    /* while loaded the canary may be in libkm's secure pages: not counted */
    printf("hygiene: while the key is loaded: %zu hits (expected: libkm's secure memory)\n",
           scan_self("key loaded"));

    OK(km_key_revoke(k, 1, KM_REVOKE_CESSATION_OF_OPERATION, 0));
    OK(km_key_schedule_destroy(k, 1, 7));
    tu_now += 8 * DAY;
    OK(km_maintain(ctx, NULL));
    km_key_free(k);
    h = scan_self("after destroy, vault open");
    place("live memory after destroy", h);
    km_close(ctx);
    h = scan_self("after destroy and close");
    place("live memory after destroy+close", h);
    vault_files(dir, "(destroyed)");
    tu_rmtree(dir);
    free(dir);
    ck_assert_msg(found_places == 0, "canary found (see the hygiene: lines above)");
}
END_TEST

START_TEST(test_after_error_paths)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx;
    km_key *k, *bad = NULL;
    uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD], pt[16];
    volatile uint8_t mat[32];
    size_t n, m;
    int before = found_places, rc;

    tu_now = 1900000000;
    ctx = tu_vault_clocked(dir, 0);
    /* a refused import: 32 bytes for a 16-byte key type */
    canary_get(mat);
    rc = km_key_import(&bad, ctx, "bad", KM_KEY_AES_128_GCM, KM_MATERIAL_RAW,
                       (const uint8_t *)(uintptr_t)mat, 32, KM_IMPORT_ALLOW_RAW, NULL);
    km_memzero((void *)(uintptr_t)mat, sizeof mat);
    ck_assert_int_eq(rc, KM_E_INVALID);
    place("live memory after a refused import", scan_self("after refused import"));

    /* a failed decrypt under the canary key, then close */
    k = import_canary(ctx, "canary", KM_KEY_AES_256_GCM);
    OK(km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &n));
    ct[n - 1] ^= 1;
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(pt, sizeof pt));
    km_key_free(k);
    km_close(ctx);
    place("live memory after failed decrypt+close", scan_self("after failed decrypt and close"));
    vault_files(dir, "(error paths)");
    tu_rmtree(dir);
    free(dir);
    ck_assert_msg(found_places == before, "canary found (see the hygiene: lines above)");
}
END_TEST

START_TEST(test_public_export)
{
    char *dir = tu_tmpdir();
    km_ctx *ctx;
    km_key *k;
    uint8_t out[512];
    size_t n;
    int before = found_places;

    tu_now = 1900000000;
    ctx = tu_vault_clocked(dir, 0);
    k = import_canary(ctx, "canary-ed", KM_KEY_ED25519);   /* the canary as a private key */
    OK(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, out, sizeof out, &n));
    place("public export (SPKI DER)", find_all(out, n, NULL));
    OK(km_key_public_export(k, 0, KM_MATERIAL_PEM, out, sizeof out, &n));
    place("public export (PEM)", find_all(out, n, NULL));
    km_key_free(k);
    km_close(ctx);
    vault_files(dir, "(ed25519)");
    tu_rmtree(dir);
    free(dir);
    ck_assert_msg(found_places == before, "canary found (see the hygiene: lines above)");
}
END_TEST

/* The newest core* file in dir, or "" */
static void find_core(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    out[0] = '\0';
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "core", 4) == 0)
            snprintf(out, cap, "%s/%s", dir, e->d_name);
    if (d)
        closedir(d);
}

/* Forks a child that opens a vault, imports the canary as an AES key, encrypts
 * and decrypts with it and, with `asym`, imports the same bytes as an Ed25519
 * private key and signs; the child then dumps core while holding the keys.
 * Returns the canary's copies in the core, or (size_t)-1 when no core could
 * be read here (printed as a FINDING). */
static size_t core_dump_hits(int asym)
{
    char *dir = tu_tmpdir();
    char pattern[256] = "", core[4300], cmd[4500];
    int fds[2], st = 0, via_gcore = 0;
    FILE *f = fopen("/proc/sys/kernel/core_pattern", "r");
    struct rlimit rl;
    size_t h = (size_t)-1;
    pid_t pid;

    if (f) {
        if (fgets(pattern, sizeof pattern, f) == NULL)
            pattern[0] = '\0';
        fclose(f);
    }
    pattern[strcspn(pattern, "\n")] = '\0';
    getrlimit(RLIMIT_CORE, &rl);
    via_gcore = pattern[0] == '|' || strchr(pattern, '/') != NULL || rl.rlim_max == 0;
    if (via_gcore && access("/usr/bin/gcore", X_OK) != 0) {
        printf("hygiene: FINDING: core_pattern '%s' (or RLIMIT_CORE hard 0) sends cores where this "
               "test cannot read them, and gcore is not installed: core dump not checked\n", pattern);
        tu_rmtree(dir);
        free(dir);
        return h;
    }
    ck_assert(pipe(fds) == 0);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        km_ctx *ctx;
        km_key *k;
        uint8_t ct[16 + KM_CIPHERTEXT_OVERHEAD], pt[16], sig[KM_SIGNATURE_MAX];
        size_t n, pn;
        close(fds[0]);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_CORE, &rl);
        prctl(PR_SET_DUMPABLE, 1);
        if (chdir(dir) != 0)
            _exit(3);
        ctx = tu_vault_clocked(dir, 0);
        k = import_canary(ctx, "canary", KM_KEY_AES_256_GCM);
        if (km_encrypt(k, (const uint8_t *)"0123456789abcdef", 16, NULL, 0, ct, sizeof ct, &n) != KM_OK
            || km_decrypt(ctx, 0, ct, n, NULL, 0, pt, sizeof pt, &pn) != KM_OK)
            _exit(4);
        if (asym) {
            /* the same bytes as an Ed25519 private key: encoded as PKCS#8 at
             * import, decoded at load, used */
            km_key *e = import_canary(ctx, "canary-ed25519", KM_KEY_ED25519);
            if (km_sign(e, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &pn) != KM_OK)
                _exit(4);
        }
        if (via_gcore) {
            if (write(fds[1], "x", 1) != 1)
                _exit(5);
            for (;;)
                pause();
        }
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    close(fds[1]);
    if (via_gcore) {
        char c;
        ck_assert(read(fds[0], &c, 1) == 1);
        snprintf(cmd, sizeof cmd, "gcore -o '%s/core' %d >/dev/null 2>&1", dir, (int)pid);
        ck_assert_msg(system(cmd) == 0, "gcore failed");
        kill(pid, SIGKILL);
    }
    close(fds[0]);
    waitpid(pid, &st, 0);
    find_core(dir, core, sizeof core);
    if (core[0] == '\0') {
        printf("hygiene: FINDING: no core file written (core_pattern '%s', status %#x): core dump "
               "not checked\n", pattern, st);
    } else {
        struct stat sb;
        stat(core, &sb);
        printf("hygiene: core dump %s (%lld bytes, %s, %s)\n", core, (long long)sb.st_size,
               via_gcore ? "gcore" : "kernel", asym ? "AES and Ed25519 keys" : "AES key");
        h = scan_file(core, "core dump");
    }
    tu_rmtree(dir);
    free(dir);
    return h;
}

/* A process holding an open vault dumps core: the canary is not in the dump.
 * With libkm's allocator in OpenSSL (KM_SCHEDULES_LOCKED) the keyed cipher
 * contexts, the EVP_PKEY and OpenSSL's temporary DER buffers of the private
 * key all live in MADV_DONTDUMP pages wiped on free. Without it
 * (KM_OPENSSL_MEM=off, as tests/hygiene_percall.sh runs this) no cipher
 * context outlives a call, so an AES key is still absent; but OpenSSL's DER
 * encoder and decoder free their temporary copies of a private key without
 * cleansing them (ASN1_i2d_bio: OPENSSL_free), so an asymmetric key may be
 * found in freed heap: a known limit of that mode (docs/RELIABILITY.md),
 * reported here and not counted. */
START_TEST(test_core_dump)
{
    int locked = km_key_schedules() == KM_SCHEDULES_LOCKED;
    size_t h;

    printf("hygiene: key schedules %s\n", locked ? "locked" : "per call");
    h = core_dump_hits(0);
    if (h != (size_t)-1) {
        place("core dump of a process holding an AES key", h);
        ck_assert_msg(h == 0, "canary in the core dump: key material outside libkm's "
                              "MADV_DONTDUMP pages (see the hygiene: lines above)");
    }
    h = core_dump_hits(1);
    if (h != (size_t)-1) {
        if (locked || h == 0) {
            place("core dump of a process holding AES+Ed25519 keys", h);
            ck_assert_msg(h == 0, "canary in the core dump (AES and Ed25519 keys held): key "
                                  "material outside libkm's MADV_DONTDUMP pages");
        } else {
            printf("hygiene: KNOWN FINDING (per-call mode): %zu copies of an Ed25519 private key "
                   "in the core dump, in freed OpenSSL DER buffers (not counted)\n", h);
        }
    }
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s;
    SRunner *sr;
    int failed;

    canary_init();
    {
        /* libkm's constructor installed its allocator in OpenSSL unless told
         * not to: a test binary linked with libkm loads it before any OpenSSL
         * allocation, so anything else is a regression */
        const char *e = getenv("KM_OPENSSL_MEM");
        int want = e != NULL && strcmp(e, "off") == 0 ? KM_SCHEDULES_PER_CALL
                                                       : KM_SCHEDULES_LOCKED;
        printf("hygiene: km_key_schedules() = %s\n",
               km_key_schedules() == KM_SCHEDULES_LOCKED ? "locked" : "per call");
        if (km_key_schedules() != want) {
            printf("hygiene: FAIL: expected key schedules %s\n",
                   want == KM_SCHEDULES_LOCKED ? "locked" : "per call");
            return 1;
        }
    }
    scanbuf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scanbuf == MAP_FAILED)
        return 99;
    s = tu_suite("hygiene", "canary", &tc, 300, NULL, NULL);
    tcase_add_test(tc, test_scanner_sees_canary);
    tcase_add_test(tc, test_after_destroy_and_close);
    tcase_add_test(tc, test_after_error_paths);
    /* before test_public_export: in per-call mode its Ed25519 import leaves
     * freed OpenSSL DER buffers that a later fork would inherit */
    tcase_add_test(tc, test_core_dump);
    tcase_add_test(tc, test_public_export);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* one process: the figures add up */
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("hygiene: canary found in %d of %d places checked\n", found_places, places);
    return failed == 0 && found_places == 0 ? 0 : 1;
}
