/*
 * replay.c - runs corpus files through one fuzz target's LLVMFuzzerTestOneInput
 * without libFuzzer, so that plain gcc builds replay the corpora as regression
 * tests in `make check` (tests/fuzz/fuzz.mk links one replay_<target> per target).
 *
 *   replay_<target>                 every file of every directory under FUZZ_CORPUS_DIR
 *                                   (all targets' corpora, not only its own)
 *   replay_<target> PATH...         these files, or every file under these directories
 *
 * Each file is copied into a buffer of exactly its size, so ASan builds catch a
 * read past the end. Prints "replay <target>: N inputs" and exits 0; a broken
 * promise traps (FUZZ_CHECK) and fails the test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif
#ifndef FUZZ_TARGET
#define FUZZ_TARGET "?"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t n_inputs;
static int verbose;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f != NULL)
            fclose(f);
        return -1;
    }
    buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (verbose)
        fprintf(stderr, "replay %s: %s\n", FUZZ_TARGET, path);
    /* exactly `len` bytes: nothing after them to read by mistake */
    if (len == 0) {
        free(buf);
        buf = NULL;
        (void)LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    } else {
        uint8_t *exact = realloc(buf, (size_t)len);
        buf = exact != NULL ? exact : buf;
        (void)LLVMFuzzerTestOneInput(buf, (size_t)len);
    }
    free(buf);
    n_inputs++;
    return 0;
}

static int walk_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)ftw;
    if (flag == FTW_F && run_file(p) != 0)
        return 1;
    return 0;
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: no such file or directory\n", path);
        return -1;
    }
    if (S_ISDIR(st.st_mode))
        return nftw(path, walk_cb, 16, FTW_PHYS) == 0 ? 0 : -1;
    return run_file(path);
}

int main(int argc, char **argv)
{
    int i, rc = 0;
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (argc < 2)
        rc = run_path(FUZZ_CORPUS_DIR);
    for (i = 1; i < argc && rc == 0; i++)
        rc = run_path(argv[i]);
    printf("replay %s: %zu inputs\n", FUZZ_TARGET, n_inputs);
    return rc == 0 && n_inputs > 0 ? 0 : 1;
}
