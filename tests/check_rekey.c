/* check_rekey.c - km_vault_rekey and km_vault_compact: keys survive a rekey,
 * the old passphrase and the old sealed bytes stop opening, compaction removes
 * the old sealed material from data.mdb, SIGKILL during a rekey leaves exactly
 * one of the two vaults, and compaction refuses a shared vault. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "core.h"
#include "testraw.h"
#include "testutil.h"

#define DAY 86400
#define PASS_B "the new passphrase"

static char *dir;

static void setup(void)
{
    tu_setup(&dir, NULL, NULL);
}

static void teardown(void)
{
    tu_teardown(&dir, NULL);
}

/* Opens (creating) dir/vault with `pass`, on the fake clock tu_clock when
 * with_clock is set. */
static int open_pass(km_ctx **out, const char *pass, int with_clock)
{
    tu_open o = TU_OPEN_INIT;
    o.flags = KM_OPEN_CREATE;
    o.pass = pass;
    if (with_clock)
        o.clock = tu_clock;
    return tu_vault_open_with(out, dir, &o);
}

#define NKEYS 3
typedef struct sample {
    uint8_t ct[NKEYS][100];
    size_t ct_len[NKEYS];
} sample;

static void make_keys(km_ctx *ctx, sample *s)
{
    char name[32];
    km_key *k;
    int i;
    for (i = 0; i < NKEYS; i++) {
        snprintf(name, sizeof name, "key-%d", i);
        OK(km_key_create(&k, ctx, name, KM_KEY_AES_256_GCM, NULL));
        OK(km_encrypt(k, (const uint8_t *)name, strlen(name), NULL, 0, s->ct[i], sizeof s->ct[i],
                      &s->ct_len[i]));
        km_key_free(k);
    }
}

static void check_keys(km_ctx *ctx, const sample *s)
{
    char name[32];
    uint8_t pt[100], ct[100];
    size_t n, cn;
    km_key *k;
    int i;
    for (i = 0; i < NKEYS; i++) {
        snprintf(name, sizeof name, "key-%d", i);
        OK(km_key_open(&k, ctx, name));
        OK(km_decrypt(ctx, 0, s->ct[i], s->ct_len[i], NULL, 0, pt, sizeof pt, &n));
        ck_assert_uint_eq(n, strlen(name));
        ck_assert_int_eq(memcmp(pt, name, n), 0);
        OK(km_encrypt(k, pt, n, NULL, 0, ct, sizeof ct, &cn));
        OK(km_decrypt(ctx, 0, ct, cn, NULL, 0, pt, sizeof pt, &n));
        km_key_free(k);
    }
}

static char *vpath(const char *leaf)
{
    static char p[4300];
    snprintf(p, sizeof p, "%s/vault/%s", dir, leaf);
    return p;
}

START_TEST(test_rekey_keys_survive)
{
    km_ctx *ctx = NULL;
    km_key *k = NULL;
    sample s;
    uint8_t pt[100];
    size_t n;

    OK(open_pass(&ctx, TU_PASS, 0));
    make_keys(ctx, &s);
    OK(km_key_open(&k, ctx, "key-0"));   /* a handle held across the rekey */
    ck_assert_int_eq(km_vault_rekey(ctx, NULL, 3, KM_KDF_COST_MIN), KM_E_INVALID);
    ck_assert_int_eq(km_vault_rekey(ctx, (const uint8_t *)"x", 1, 99), KM_E_INVALID);
    OK(km_vault_rekey(ctx, (const uint8_t *)PASS_B, strlen(PASS_B), KM_KDF_COST_MIN));
    check_keys(ctx, &s);
    OK(km_encrypt(k, (const uint8_t *)"abc", 3, NULL, 0, s.ct[0], sizeof s.ct[0], &s.ct_len[0]));
    OK(km_decrypt(ctx, 0, s.ct[0], s.ct_len[0], NULL, 0, pt, sizeof pt, &n));
    km_key_free(k);
    /* a second rekey on the same context, and credentials re-added after it */
    OK(km_vault_rekey(ctx, (const uint8_t *)PASS_B, strlen(PASS_B), KM_KDF_COST_MIN));
    OK(km_vault_add_passphrase(ctx, (const uint8_t *)"third", 5, KM_KDF_COST_MIN));
    km_close(ctx);

    ck_assert_int_eq(open_pass(&ctx, TU_PASS, 0), KM_E_AUTH);
    OK(open_pass(&ctx, "third", 0));
    km_close(ctx);
    OK(open_pass(&ctx, PASS_B, 0));
    OK(km_decrypt(ctx, 0, s.ct[0], s.ct_len[0], NULL, 0, pt, sizeof pt, &n));
    ck_assert_int_eq(memcmp(pt, "abc", 3), 0);
    s.ct_len[0] = 0;
    {
        /* key-0's first ciphertext was replaced; re-make it for check_keys */
        km_key *k0;
        OK(km_key_open(&k0, ctx, "key-0"));
        OK(km_encrypt(k0, (const uint8_t *)"key-0", 5, NULL, 0, s.ct[0], sizeof s.ct[0],
                      &s.ct_len[0]));
        km_key_free(k0);
    }
    check_keys(ctx, &s);
    km_close(ctx);
}
END_TEST

/* The raw sealed `material` record of (id, version), read with plain LMDB. */
static uint8_t *raw_material(const uint8_t id[16], uint32_t version, size_t *len)
{
    tu_raw r;
    MDB_val k, v;
    uint8_t key[20], *out = NULL;

    memcpy(key, id, 16);
    km__be32_put(key + 16, version);
    tu_raw_begin(&r, vpath(""), MDB_RDONLY, 0);
    k.mv_data = key;
    k.mv_size = sizeof key;
    if (mdb_get(r.txn, tu_raw_dbi(&r, "material"), &k, &v) == 0) {
        out = malloc(v.mv_size);
        memcpy(out, v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    tu_raw_end(&r);
    return out;
}

/* Opens a sealed material record with the record key derived from `master`
 * (src/store/store.c's record format, FORMATS.md): KM_OK or KM_E_INTEGRITY. */
static int open_sealed(const uint8_t master[32], const uint8_t id[16], uint32_t version,
                       const uint8_t *rec, size_t len)
{
    static const char info[] = "km v1 record seal";
    uint8_t key[32], aad[64], out[256];
    size_t a = 0;
    ck_assert_uint_gt(len, 29);
    ck_assert_uint_lt(len - 29, sizeof out);
    OK(km__hkdf_sha256(master, 32, NULL, 0, (const uint8_t *)info, sizeof info - 1, key, 32));
    memcpy(aad, "km-rec", 6);
    a = 6;
    aad[a++] = 1;
    memcpy(aad + a, "material", 8);
    a += 8;
    aad[a++] = 0;
    memcpy(aad + a, id, 16);
    km__be32_put(aad + a + 16, version);
    a += 20;
    return km__gcm_open(key, rec + 1, aad, a, rec + 13, len - 29, rec + len - 16, out);
}

static int file_has(const char *path, const uint8_t *needle, size_t n, size_t *size)
{
    size_t len = 0;
    uint8_t *buf = tu_read_file(path, &len);
    int r;
    ck_assert_ptr_nonnull(buf);
    r = tu_memmem(buf, len, needle, n);
    free(buf);
    if (size)
        *size = len;
    return r;
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    uint8_t *buf = tu_read_file(from, &len);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(buf);
}

/* The test: destroy + rekey + compact, then the old sealed bytes of
 * the destroyed material cannot be opened and are gone from the file. */
START_TEST(test_rekey_destroyed_material_gone)
{
    static const uint8_t aes[32] = "0123456789abcdef0123456789ABCDEF";
    km_ctx *ctx = NULL;
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    uint8_t id[16], ct[100], pt[100], old_master[32];
    uint8_t *sealed_v1;
    size_t ct_len, n, sealed_len = 0, size_before, size_after;
    char oldcopy[4300], olddir[4300];
    uint32_t v2 = 0;
    km_ctx *old = NULL;

    OK(open_pass(&ctx, TU_PASS, 1));
    OK(km_key_import(&k, ctx, "imported", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, aes, sizeof aes,
                     KM_IMPORT_ALLOW_RAW, NULL));
    memcpy(id, km_key_id(k), 16);
    OK(km_encrypt(k, (const uint8_t *)"v1 data", 7, NULL, 0, ct, sizeof ct, &ct_len));
    OK(km_key_rotate(k, &v2));
    ck_assert_uint_eq(v2, 2);
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(k, 1, 7));
    km_key_free(k);
    km_close(ctx);

    /* the sealed record of v1 as stored, and a copy of the whole old file */
    sealed_v1 = raw_material(id, 1, &sealed_len);
    ck_assert_ptr_nonnull(sealed_v1);
    snprintf(oldcopy, sizeof oldcopy, "%s/old.mdb", dir);
    copy_file(vpath("data.mdb"), oldcopy);

    OK(open_pass(&ctx, TU_PASS, 1));
    memcpy(old_master, km_secret_data(ctx->master), 32);
    ck_assert_int_eq(open_sealed(old_master, id, 1, sealed_v1, sealed_len), KM_OK); /* control */
    tu_now += 8 * DAY;
    OK(km_maintain(ctx, NULL));
    OK(km_key_open(&k, ctx, "imported"));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_int_eq(vi.state, KM_STATE_DESTROYED);
    km_keyinfo_free(info);
    ck_assert_int_ne(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n), KM_OK);

    OK(km_vault_rekey(ctx, (const uint8_t *)PASS_B, strlen(PASS_B), KM_KDF_COST_MIN));
    /* the saved sealed bytes do not open under the new record key */
    ck_assert_int_eq(open_sealed(km_secret_data(ctx->master), id, 1, sealed_v1, sealed_len),
                     KM_E_INTEGRITY);
    ck_assert_int_ne(memcmp(old_master, km_secret_data(ctx->master), 32), 0);
    OK(km_encrypt(k, (const uint8_t *)"v2 data", 7, NULL, 0, ct, sizeof ct, &ct_len));
    km_key_free(k);
    km_close(ctx);

    /* the old file does not open with the new passphrase */
    snprintf(olddir, sizeof olddir, "%s/oldvault", dir);
    ck_assert_int_eq(mkdir(olddir, 0700), 0);
    snprintf(olddir, sizeof olddir, "%s/oldvault/data.mdb", dir);
    copy_file(oldcopy, olddir);
    snprintf(olddir, sizeof olddir, "lmdb:%s/oldvault", dir);
    {
        km_open_options o = KM_OPEN_OPTIONS_INIT;
        o.passphrase = (const uint8_t *)PASS_B;
        o.passphrase_len = strlen(PASS_B);
        ck_assert_int_eq(km_open(&old, olddir, &o), KM_E_AUTH);
    }

    /* compaction removes the stale copies */
    (void)file_has(vpath("data.mdb"), sealed_v1, sealed_len, &size_before);
    OK(open_pass(&ctx, PASS_B, 1));
    OK(km_vault_compact(ctx));
    /* the context keeps working after compaction */
    OK(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n));
    ck_assert_int_eq(memcmp(pt, "v2 data", 7), 0);
    OK(km_key_open(&k, ctx, "imported"));
    OK(km_encrypt(k, (const uint8_t *)"after", 5, NULL, 0, ct, sizeof ct, &ct_len));
    km_key_free(k);
    km_close(ctx);
    ck_assert_int_eq(file_has(vpath("data.mdb"), sealed_v1, sealed_len, &size_after), 0);
    ck_assert_int_eq(file_has(vpath("data.mdb"), aes, sizeof aes, NULL), 0);
    ck_assert_uint_le(size_after, size_before);
    ck_assert_int_eq(access(vpath("compact.tmp"), F_OK), -1);

    OK(open_pass(&ctx, PASS_B, 1));
    OK(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n));
    ck_assert_int_eq(memcmp(pt, "after", 5), 0);
    km_close(ctx);
    free(sealed_v1);
}
END_TEST

/* SIGKILL a child at random points of km_vault_rekey: afterwards exactly one
 * of the two passphrases opens the vault and every key decrypts its data. */
START_TEST(test_rekey_sigkill)
{
    const char *pass[2] = { TU_PASS, PASS_B };
    km_ctx *ctx = NULL;
    sample s;
    int cur = 0, round, status, changed = 0, kept = 0;
    unsigned seed = (unsigned)time(NULL);

    OK(open_pass(&ctx, TU_PASS, 0));
    make_keys(ctx, &s);
    km_close(ctx);
    srand(seed);
    for (round = 0; round < 12; round++) {
        pid_t pid = fork();
        struct timespec ts;
        int rc0, rc1;
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *c = NULL;
            if (open_pass(&c, pass[cur], 0) != KM_OK)
                _exit(2);
            _exit(km_vault_rekey(c, (const uint8_t *)pass[1 - cur], strlen(pass[1 - cur]),
                                 KM_KDF_COST_MIN) == KM_OK ? 0 : 3);
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(rand() % 250) * 1000000L;
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(!WIFEXITED(status) || WEXITSTATUS(status) == 0, "child failed: %d",
                      WEXITSTATUS(status));
        rc0 = open_pass(&ctx, pass[cur], 0);
        if (rc0 == KM_OK) {
            km_close(ctx);
            kept++;
        } else {
            ck_assert_int_eq(rc0, KM_E_AUTH);
        }
        rc1 = open_pass(&ctx, pass[1 - cur], 0);
        if (rc1 == KM_OK) {
            km_close(ctx);
        } else {
            ck_assert_int_eq(rc1, KM_E_AUTH);
        }
        ck_assert_msg((rc0 == KM_OK) != (rc1 == KM_OK), "round %d: %d %d (seed %u)", round,
                      rc0, rc1, seed);
        if (rc1 == KM_OK) {
            cur = 1 - cur;
            changed++;
        }
        OK(open_pass(&ctx, pass[cur], 0));
        check_keys(ctx, &s);
        km_close(ctx);
    }
    fprintf(stderr, "test_rekey_sigkill: %d rekeys committed, %d killed before (seed %u)\n",
            changed, kept, seed);
}
END_TEST

START_TEST(test_rekey_compact_busy)
{
    km_ctx *a = NULL, *b = NULL;
    sample s;
    int p[2], q[2];
    char c = 0;
    pid_t pid;

    OK(open_pass(&a, TU_PASS, 0));
    make_keys(a, &s);
    OK(open_pass(&b, TU_PASS, 0));
    ck_assert_int_eq(km_vault_compact(a), KM_E_BUSY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "another km_ctx"));
    check_keys(b, &s);
    km_close(b);
    OK(km_vault_compact(a));
    check_keys(a, &s);

    /* another process has the vault open */
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(pipe(q), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_ctx *cc = NULL;
        int r = open_pass(&cc, TU_PASS, 0);
        char x = r == KM_OK ? 'o' : 'e';
        if (write(p[1], &x, 1) != 1 || read(q[0], &x, 1) != 1)
            _exit(4);
        km_close(cc);
        _exit(0);
    }
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    ck_assert_int_eq(c, 'o');
    ck_assert_int_eq(km_vault_compact(a), KM_E_BUSY);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "another process"));
    check_keys(a, &s);   /* still usable after the refusal */
    ck_assert_int_eq(write(q[1], &c, 1), 1);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    close(p[0]); close(p[1]); close(q[0]); close(q[1]);
    OK(km_vault_compact(a));
    check_keys(a, &s);
    km_close(a);
}
END_TEST

/* A compaction directory left by a crash is removed at the next open. */
START_TEST(test_rekey_compact_leftover_removed)
{
    km_ctx *ctx = NULL;
    sample s;
    FILE *f;

    OK(open_pass(&ctx, TU_PASS, 0));
    make_keys(ctx, &s);
    km_close(ctx);
    ck_assert_int_eq(mkdir(vpath("compact.tmp"), 0700), 0);
    f = fopen(vpath("compact.tmp/data.mdb"), "wb");
    ck_assert_ptr_nonnull(f);
    fputs("half a copy", f);
    fclose(f);
    OK(open_pass(&ctx, TU_PASS, 0));
    ck_assert_int_eq(access(vpath("compact.tmp"), F_OK), -1);
    check_keys(ctx, &s);
    km_close(ctx);
}
END_TEST

/* ------------------------------------------------ offboarding with rotation */

/* The master key a context of dir/vault holds (the test plays the removed
 * principal, who copied it). */
static void master_of(km_ctx *c, uint8_t out[32])
{
    memcpy(out, km_secret_data(c->master), 32);
}

/* The vault of the rotation tests: the owner, an admin, a user (the one who
 * leaves), a 2-of-3 share set (its shares in sh), a key with a ciphertext. */
static void rotation_base(char sh[3][200], uint8_t ct[100], size_t *ct_len)
{
    km_ctx *o = NULL;
    km_key *k = NULL;
    km_secret *shares[3];
    int i;

    OK(open_pass(&o, TU_PASS, 0));
    OK(tu_principal_add(o, TU_ADMIN, KM_ROLE_ADMIN, TU_ADMIN_PASS));
    OK(tu_principal_add(o, TU_USER, KM_ROLE_USER, TU_USER_PASS));
    OK(km_vault_add_shares(o, 2, 3, shares));
    for (i = 0; i < 3; i++) {
        ck_assert_uint_lt(km_secret_len(shares[i]), 200);
        memcpy(sh[i], km_secret_data(shares[i]), km_secret_len(shares[i]));
        sh[i][km_secret_len(shares[i])] = '\0';
        km_secret_free(shares[i]);
    }
    OK(km_key_create(&k, o, "before", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(k, (const uint8_t *)"old data", 8, NULL, 0, ct, 100, ct_len));
    km_key_free(k);
    km_close(o);
}

/* Opens dir/vault as `principal` (NULL: the owner) with pass, or with the
 * shares when pass is NULL; decrypts ct there. */
static int open_check(const char *principal, const char *pass, char sh[3][200],
                      const uint8_t *ct, size_t ct_len)
{
    const char *two[2] = { sh[0], sh[2] };
    tu_open o = TU_OPEN_INIT;
    km_ctx *c = NULL;
    uint8_t pt[64];
    size_t n = 0;
    int rc;

    o.principal = principal;
    o.pass = pass;
    if (pass == NULL) {
        o.shares = two;
        o.share_count = 2;
    }
    if ((rc = tu_vault_open_with(&c, dir, &o)) != KM_OK)
        return rc;
    if (principal == NULL) {   /* the owner reads the data too */
        rc = km_decrypt(c, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &n);
        if (rc == KM_OK && (n != 8 || memcmp(pt, "old data", 8) != 0))
            rc = KM_E_INTERNAL;
    }
    km_close(c);
    return rc;
}

/* Issue 18 finding 4: a removed principal kept the master key and read every
 * record written later. km_principal_remove(KM_PRINCIPAL_ROTATE_MASTER)
 * replaces it in the removal's transaction; the owner passphrase, the other
 * principal and the share set open with nothing typed again. */
START_TEST(test_rekey_offboard_rotates_master)
{
    char sh[3][200];
    uint8_t ct[100], old_master[32], new_master[32], id[16], *sealed;
    size_t ct_len = 0, sealed_len = 0;
    km_ctx *c = NULL;
    km_key *k = NULL;

    rotation_base(sh, ct, &ct_len);
    OK(open_pass(&c, TU_PASS, 0));
    master_of(c, old_master);      /* what the leaver copied */
    RC(KM_E_INVALID, km_principal_remove(c, TU_USER, 4));
    OK(km_principal_remove(c, TU_USER, KM_PRINCIPAL_ROTATE_MASTER));
    master_of(c, new_master);
    ck_assert_int_ne(memcmp(old_master, new_master, 32), 0);
    /* a key made after the rotation: its sealed material does not open
     * under the old master key (it does under the new one: the control) */
    OK(km_key_create(&k, c, "after", KM_KEY_AES_256_GCM, NULL));
    memcpy(id, km_key_id(k), 16);
    km_key_free(k);
    ck_assert_int_eq(tu_audit_count(c, "principal.remove", "master key rotated"), 1);
    km_close(c);
    sealed = raw_material(id, 1, &sealed_len);
    ck_assert_ptr_nonnull(sealed);
    ck_assert_int_eq(open_sealed(new_master, id, 1, sealed, sealed_len), KM_OK);
    ck_assert_int_eq(open_sealed(old_master, id, 1, sealed, sealed_len), KM_E_INTEGRITY);
    free(sealed);
    /* everyone who stays opens with what they had; the leaver does not */
    OK(open_check(NULL, TU_PASS, sh, ct, ct_len));
    OK(open_check(TU_ADMIN, TU_ADMIN_PASS, sh, ct, ct_len));
    OK(open_check(NULL, NULL, sh, ct, ct_len));
    RC(KM_E_AUTH, open_check(TU_USER, TU_USER_PASS, sh, ct, ct_len));
}
END_TEST

/* The MAC of a keyslot record as the format defines it (docs/FORMATS.md). */
static void slot_mac(const uint8_t master[32], uint32_t id, const uint8_t *body, size_t len,
                     uint8_t out[32])
{
    static const char info[] = "km v1 keyslot mac";
    uint8_t key[32], msg[512];

    ck_assert_uint_le(len + 14, sizeof msg);
    OK(km__hkdf_sha256(master, 32, NULL, 0, (const uint8_t *)info, sizeof info - 1, key, 32));
    memcpy(msg, "km-slot-v1", 10);
    km__be32_put(msg + 10, id);
    memcpy(msg + 14, body, len);
    OK(km__hmac_sha256(key, 32, msg, 14 + len, out));
}

static size_t tlv_u32(uint8_t *p, uint8_t tag, uint32_t v)
{
    p[0] = tag;
    km__be32_put(p + 1, 4);
    km__be32_put(p + 5, v);
    return 9;
}

static size_t tlv_bytes(uint8_t *p, uint8_t tag, const uint8_t *v, size_t n)
{
    p[0] = tag;
    km__be32_put(p + 1, (uint32_t)n);
    memcpy(p + 5, v, n);
    return 5 + n;
}

/* Writes an owner passphrase slot of the older form (type 1: the master key
 * wrapped under the scrypt output itself) at slot id 200, as a vault of an
 * earlier libkm holds it. */
static void legacy_owner_slot(const uint8_t master[32], const char *pass)
{
    uint8_t rec[300], salt[32], kek[32], wrapped[40], idb[4];
    size_t len = 0, wl = 0;
    tu_raw r;

    OK(km__random(salt, sizeof salt));
    OK(km__scrypt((const uint8_t *)pass, strlen(pass), salt, 32, KM_KDF_COST_MIN, 8, 1, kek,
                  32));
    OK(km__kwp_wrap(kek, 32, master, 32, wrapped, sizeof wrapped, &wl));
    len += tlv_u32(rec + len, 1, 1);
    len += tlv_u32(rec + len, 2, 1);
    len += tlv_u32(rec + len, 3, KM_KDF_COST_MIN);
    len += tlv_u32(rec + len, 4, 8);
    len += tlv_u32(rec + len, 5, 1);
    len += tlv_bytes(rec + len, 6, salt, 32);
    len += tlv_bytes(rec + len, 7, wrapped, wl);
    rec[len] = 16;
    km__be32_put(rec + len + 1, 32);
    slot_mac(master, 200, rec, len, rec + len + 5);
    len += 37;
    km__be32_put(idb, 200);
    tu_raw_begin(&r, vpath(""), 0, 0);
    tu_raw_put(&r, "slots", idb, 4, rec, len);
    tu_raw_end(&r);
}

static uint32_t slot_type(uint32_t id)
{
    uint8_t idb[4], *rec;
    size_t len = 0;
    uint32_t type;
    tu_raw r;

    km__be32_put(idb, id);
    tu_raw_begin(&r, vpath(""), MDB_RDONLY, 0);
    rec = tu_raw_get(&r, "slots", idb, 4, &len);
    tu_raw_end(&r);
    ck_assert_uint_ge(len, 9);
    type = km__be32_get(rec + 5);
    free(rec);
    return type;
}

/* A slot of the older form cannot be re-wrapped without its passphrase: the
 * rotation refuses, naming it, and drops nothing; one open with it converts
 * it to a key-pair slot (type 4), after which the rotation keeps it. */
START_TEST(test_rekey_rotation_converts_older_slots)
{
    char sh[3][200];
    uint8_t ct[100], master[32];
    size_t ct_len = 0;
    km_ctx *c = NULL;

    rotation_base(sh, ct, &ct_len);
    OK(open_pass(&c, TU_PASS, 0));
    master_of(c, master);
    km_close(c);
    legacy_owner_slot(master, "an older passphrase");
    ck_assert_uint_eq(slot_type(200), 1);
    OK(open_pass(&c, TU_PASS, 0));
    RC(KM_E_STATE, km_principal_remove(c, TU_USER, KM_PRINCIPAL_ROTATE_MASTER));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "keyslot 200"));
    km_close(c);
    OK(open_check(TU_USER, TU_USER_PASS, sh, ct, ct_len));   /* nothing removed */
    OK(open_check(NULL, "an older passphrase", sh, ct, ct_len));
    ck_assert_uint_eq(slot_type(200), 4);                    /* converted at that open */
    OK(open_pass(&c, TU_PASS, 0));                          /* and audited, in its own entry */
    ck_assert_int_eq(tu_audit_count(c, "vault.maintain",
                                    "keyslot 200 of the older form rewritten as a key-pair slot"),
                     1);
    km_close(c);
    OK(open_pass(&c, TU_PASS, 0));
    OK(km_principal_remove(c, TU_USER, KM_PRINCIPAL_ROTATE_MASTER | KM_PRINCIPAL_REVOKE_KEYS));
    km_close(c);
    OK(open_check(NULL, "an older passphrase", sh, ct, ct_len));
    OK(open_check(TU_ADMIN, TU_ADMIN_PASS, sh, ct, ct_len));
    RC(KM_E_AUTH, open_check(TU_USER, TU_USER_PASS, sh, ct, ct_len));
}
END_TEST

/* A crash at every write step of the removal with rotation leaves the old
 * vault (the user there, the old master key) or the new one (the user gone,
 * a new master key), and the owner, the admin and the shares open either. */
START_TEST(test_rekey_rotation_crash_every_step)
{
    char sh[3][200], base[4200], work[4200], cmd[12800];
    uint8_t ct[100], old_master[32], m[32];
    size_t ct_len = 0;
    unsigned long steps, k;
    int olds = 0, news = 0, crashes = 0;
    km_ctx *c = NULL;

    rotation_base(sh, ct, &ct_len);
    OK(open_pass(&c, TU_PASS, 0));
    master_of(c, old_master);
    km_close(c);
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(work, sizeof work, "%s/vault", dir);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", work, base);
    ck_assert_int_eq(system(cmd), 0);
    OK(open_pass(&c, TU_PASS, 0));
    km__fault_arm(ULONG_MAX);
    OK(km_principal_remove(c, TU_USER, KM_PRINCIPAL_ROTATE_MASTER));
    steps = km__fault_steps();
    km__fault_arm(0);
    km_close(c);
    ck_assert_uint_gt(steps, 4);
    for (k = 1; k <= steps + 1; k++) {
        pid_t pid;
        int killed, rc;

        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", work, base, work);
        ck_assert_int_eq(system(cmd), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *cc = NULL;
            if (open_pass(&cc, TU_PASS, 0) != KM_OK)
                _exit(3);
            km__fault_arm(k);
            rc = km_principal_remove(cc, TU_USER, KM_PRINCIPAL_ROTATE_MASTER);
            km__fault_arm(0);
            km_close(cc);
            _exit(rc == KM_OK ? 0 : 4);
        }
        killed = tu_wait_killed(pid, k);
        crashes += killed;
        OK(open_pass(&c, TU_PASS, 0));
        master_of(c, m);
        OK(km_audit_verify(c, NULL, NULL, NULL));
        km_close(c);
        rc = open_check(TU_USER, TU_USER_PASS, sh, ct, ct_len);
        if (memcmp(m, old_master, 32) == 0) {
            ck_assert_msg(rc == KM_OK, "step %lu: old master key, the user gone", k);
            olds++;
        } else {
            ck_assert_msg(rc == KM_E_AUTH, "step %lu: new master key, the user there", k);
            news++;
        }
        OK(open_check(TU_ADMIN, TU_ADMIN_PASS, sh, ct, ct_len));
        OK(open_check(NULL, NULL, sh, ct, ct_len));
        if (!killed)
            break;
    }
    printf("rekey: principal remove --rotate-master: %lu steps, %d crashes, old %d, new %d, "
           "half-done 0\n", steps, crashes, olds, news);
    ck_assert_int_gt(crashes, 0);
    ck_assert_int_gt(olds, 0);
    ck_assert_int_gt(news, 0);
}
END_TEST

/* The fields a rotation relies on are authentic: an attacker who swaps a
 * key-pair slot's public key (tag 18, to have the next master key wrapped to
 * a key of its own) fails every open (the slot MAC). */
START_TEST(test_rekey_keypair_slot_edit_refused)
{
    char sh[3][200];
    uint8_t ct[100], id[4], *rec, priv[32];
    size_t ct_len = 0, len = 0, at;
    tu_raw r;

    rotation_base(sh, ct, &ct_len);
    tu_raw_begin(&r, vpath(""), 0, 0);
    tu_raw_principal_slot(&r, TU_ADMIN, id);
    rec = tu_raw_get(&r, "slots", id, 4, &len);
    at = tu_tlv_at(rec, len, 18);
    ck_assert_uint_ne(at, (size_t)-1);
    ck_assert_uint_eq(km__be32_get(rec + at + 1), 32);
    OK(km__x25519_keygen(priv, rec + at + 5));
    tu_raw_put(&r, "slots", id, 4, rec, len);
    tu_raw_end(&r);
    free(rec);
    RC(KM_E_CORRUPT, open_check(NULL, TU_PASS, sh, ct, ct_len));
}
END_TEST

static Suite *rekey_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("rekey", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_rekey_keys_survive);
    tcase_add_test(tc, test_rekey_destroyed_material_gone);
    tcase_add_test(tc, test_rekey_sigkill);
    tcase_add_test(tc, test_rekey_compact_busy);
    tcase_add_test(tc, test_rekey_compact_leftover_removed);
    tcase_add_test(tc, test_rekey_offboard_rotates_master);
    tcase_add_test(tc, test_rekey_rotation_converts_older_slots);
    tcase_add_test(tc, test_rekey_rotation_crash_every_step);
    tcase_add_test(tc, test_rekey_keypair_slot_edit_refused);
    return s;
}

int main(void)
{
    return tu_run(rekey_suite());
}
