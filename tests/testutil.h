/* testutil.h - helpers shared by the Check suites. */
#ifndef KM_TESTUTIL_H
#define KM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <km.h>

#define TU_PASS "test passphrase"

/* Makes a fresh temporary directory (mkdtemp under $TMPDIR or /tmp); returns
 * a static-lifetime copy of its path, removed by tu_rmtree(). */
char *tu_tmpdir(void);
/* Removes a directory tree. */
void tu_rmtree(const char *path);
/* Opens (creating) a vault at dir/vault with TU_PASS and the cheapest scrypt
 * cost; fails the test on error. */
km_ctx *tu_vault(const char *dir);
/* As tu_vault with a given passphrase and flags; returns the km rc. */
int tu_vault_open(km_ctx **out, const char *dir, const char *pass, uint32_t flags);
/* Reads a whole file; returns malloc'ed bytes and sets *len; NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Finds `needle` in `hay`; 1 if present. */
int tu_memmem(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len);
/* Decodes hex into a malloc'ed buffer (NULL for odd length or a bad digit). */
uint8_t *tu_unhex(const char *hex, size_t *len);
/* 1 when every byte is zero. */
int tu_all_zero(const uint8_t *p, size_t len);

#endif
