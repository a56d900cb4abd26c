/* fuzz_open.c - km_open's URI parsing and option checks. The input is
 *   [mode/flags][kdf][passphrase][map size][path bytes...]
 * and every path is confined to this process's temporary directory: inputs
 * whose path holds ".." (or, for raw URIs, any '/') are skipped, the process
 * works in that directory, and everything but the fixed vault "v" is removed
 * after each run. scrypt costs above the minimum are mapped to it (bounded time). */
#include "fuzz_common.h"

static char odir[256];
static size_t odir_len;

static int clean_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag;
    if (ftw->level == 0)
        return 0;
    if (strcmp(p + odir_len, "/v") == 0 || strcmp(p + odir_len, "/v/data.mdb") == 0
        || strcmp(p + odir_len, "/v/lock.mdb") == 0)
        return 0;
    (void)remove(p);
    return 0;
}

static void cleanup(void)
{
    if (odir[0] != '\0') {
        if (chdir("/") != 0) { /* leave the directory before removing it */ }
        fz_rmtree(odir);
    }
}

static void setup(void)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *c = NULL;
    char uri[300];
    int rc;
    if (odir[0] != '\0')
        return;
    fz_mkdtemp(odir, sizeof odir, "open");
    odir_len = strlen(odir);
    snprintf(uri, sizeof uri, "lmdb:%s/v", odir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)FZ_PASS;
    o.passphrase_len = strlen(FZ_PASS);
    o.kdf_cost = KM_KDF_COST_MIN;
    if ((rc = km_open(&c, uri, &o)) != KM_OK)
        fz_die("km_open", rc);
    km_close(c);
    if (chdir(odir) != 0) {
        perror("chdir");
        exit(2);
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t longpass[1025];
    static const uint32_t vers[4] = { KM_OPEN_OPTIONS_VERSION, 1, 0, KM_OPEN_OPTIONS_VERSION + 1 };
    static const uint64_t maps[5] = { 0, 1, 1u << 20, 64u << 20, UINT64_MAX };
    static const char *const scheme[4] = { "lmdb:", "", "", "lmdb://" };
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *c = (km_ctx *)(uintptr_t)1;
    char *uri, *rest;
    size_t rl, pl;
    int rc, mode;

    if (size < 4)
        return 0;
    setup();
    mode = data[0] & 3;
    o.flags = (uint32_t)((data[0] >> 2) & 0xf);
    if (data[0] & 0x40)
        o.flags |= 0x100; /* an unknown bit */
    o.version = vers[data[0] >> 6];
    o.kdf_cost = data[1] < 200 ? KM_KDF_COST_MIN : (uint32_t)(data[1] - 200);
    if (o.kdf_cost == 0 || (o.kdf_cost > KM_KDF_COST_MIN && o.kdf_cost <= KM_KDF_COST_MAX))
        o.kdf_cost = KM_KDF_COST_MIN;
    switch (data[2] % 4) {
    case 0: o.passphrase = NULL; o.passphrase_len = data[2] >> 2; break;
    case 1: o.passphrase = (const uint8_t *)FZ_PASS; o.passphrase_len = strlen(FZ_PASS); break;
    case 2: o.passphrase = (const uint8_t *)"other"; o.passphrase_len = 5; break;
    default: o.passphrase = longpass; o.passphrase_len = 1024 + (data[2] >> 7); break;
    }
    o.map_size = maps[data[3] % 5];
    o.refresh_ms = data[3] >> 3;
    o.key_cache_max = data[3] & 0x80 ? 1 : 0;

    rest = strndup((const char *)data + 4, size - 4);
    rl = strlen(rest);
    if (strstr(rest, "..") != NULL || (mode == 2 && strchr(rest, '/') != NULL)) {
        free(rest);
        return 0;
    }
    pl = odir_len + 16 + rl;
    uri = malloc(pl);
    if (mode == 2)
        snprintf(uri, pl, "%s", rest);
    else
        snprintf(uri, pl, "%s%s/%s", scheme[mode], odir, rest);
    free(rest);

    rc = km_open(&c, uri, &o);
    FUZZ_CHECK(fz_known_rc(rc));
    if (rc == KM_OK) {
        FUZZ_CHECK(c != NULL);
        km_close(c);
    } else {
        FUZZ_CHECK(c == NULL);
    }
    free(uri);
    (void)nftw(odir, clean_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
