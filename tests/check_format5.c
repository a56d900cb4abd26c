/* check_format5.c - vault format 5 (version records inside the key records,
 * docs/FORMATS.md): a vault written by libkm before it (tests/data/
 * vault-v4.tar.gz, made by tests/data/mkvault4.c with main at 3211513) opens,
 * is moved up in audited steps, and keeps its keys, states, aliases and
 * ciphertexts; a kill at every write step of that move leaves a vault that
 * opens and finishes the move; a key record whose version list disagrees
 * with its count, a record without a list, and an older record replayed are
 * refused or named. Runs against etcd too (tests/etcd_suites.sh: the old
 * vault is copied record for record into the cluster). */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"
#include "store_int.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    tu_setup(&dir, NULL, NULL);
}

static void teardown(void)
{
    tu_teardown(&dir, NULL);
}

typedef struct cts {
    uint8_t ct[3][128];
    size_t len[3];
} cts;

/* Unpacks the format-4 vault and its ciphertexts under `d` (d/v4/vault,
 * d/v4/ct), then copies its records into the store of d (d/vault, or the
 * etcd prefix of d under KM_TEST_ETCD), the way km_vault_copy would, without
 * opening it through the core (which would move it to format 5). */
static void v4_install(const char *d, cts *c)
{
    const char *src = getenv("top_srcdir");
    char cmd[9000], path[4200], uri[4300];
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    const km__store_ops *ops = NULL;
    const char *loc = NULL;
    km__env *from = NULL;
    km__store *to = NULL;
    km_secret *m = NULL;
    uint8_t vid[16], pid[16];
    uint64_t n = 0;
    FILE *f;
    int i;

    snprintf(cmd, sizeof cmd, "mkdir -p '%s/v4' && tar -xzf '%s/tests/data/vault-v4.tar.gz' -C '%s/v4'",
             d, src != NULL ? src : "..", d);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/v4/ct", d);
    ck_assert_ptr_nonnull(f = fopen(path, "rb"));
    for (i = 0; i < 3; i++) {
        int hi = fgetc(f), lo = fgetc(f);
        ck_assert_int_ge(lo, 0);
        c->len[i] = (size_t)hi << 8 | (size_t)lo;
        ck_assert_uint_le(c->len[i], sizeof c->ct[i]);
        ck_assert_uint_eq(fread(c->ct[i], 1, c->len[i], f), c->len[i]);
    }
    fclose(f);
    o.passphrase = (const uint8_t *)TU_PASS;
    o.passphrase_len = strlen(TU_PASS);
    snprintf(path, sizeof path, "%s/v4/vault", d);
    OK(km__env_open(&from, path, &o, &m, vid, pid));
    km_secret_free(m);
    tu_vault_uri(uri, sizeof uri, d);
    OK(km__store_find(uri, &ops, &loc));
    o.flags = KM_OPEN_CREATE;
    OK(ops->open(&to, loc, &o));
    OK(km__store_copy(from, to, &n));
    ck_assert_uint_gt(n, 10);
    km__store_close(to);
    km__env_close(from);
}

static int open_d(km_ctx **c, const char *d)
{
    return tu_vault_open(c, d, TU_PASS, 0);
}

/* The format of c's vault, its version records and whether the move's marker is there. */
static void format_of(km_ctx *c, uint32_t *format, uint64_t *vrecs, int *marker)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    int rc;
    OK(km__txn_begin(c->env, 0, &t));
    OK(km__store_format(t, format));
    OK(km__table_count(t, KM__T_VMETA, vrecs));
    rc = km__rec_get(t, c->sealer, KM__T_META, (const uint8_t *)"format5-migration", 17, &rec);
    *marker = rc == KM_OK;
    km_secret_free(rec);
    km__txn_abort(t);
}

/* Everything the old vault held, as it held it. */
static void check_contents(km_ctx *c, const cts *ct)
{
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    uint8_t pt[64], sig[KM_SIGNATURE_MAX];
    size_t n;
    int i;

    OK(km_key_open(&k, c, "aes"));
    for (i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "format 4 v%d", i + 1);
        OK(km_decrypt(c, 0, ct->ct[i], ct->len[i], NULL, 0, pt, sizeof pt, &n));
        ck_assert_uint_eq(n, strlen(want));
        ck_assert(memcmp(pt, want, n) == 0);
    }
    ck_assert_int_eq(tu_version_state(k, 1), KM_STATE_DEACTIVATED);
    ck_assert_int_eq(tu_version_state(k, 2), KM_STATE_ACTIVE);
    ck_assert_int_eq(tu_version_state(k, 3), KM_STATE_ACTIVE);
    OK(km_key_info(&info, k));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 3);
    ck_assert_uint_eq(km_keyinfo_primary(info), 3);
    km_keyinfo_free(info);
    km_key_free(k);
    OK(km_key_open(&k, c, "hmac-alias"));
    ck_assert_str_eq(km_key_name(k), "hmac");
    OK(km_key_info(&info, k));
    ck_assert_str_eq(km_keyinfo_description(info), "made by format 4");
    ck_assert_uint_eq(km_keyinfo_tag_count(info), 1);
    km_keyinfo_free(info);
    OK(km_mac(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &n));
    km_key_free(k);
    OK(km_key_open(&k, c, "ec"));
    OK(km_sign(k, 0, (const uint8_t *)"m", 1, sig, sizeof sig, &n));
    OK(km_verify(k, 0, 0, (const uint8_t *)"m", 1, sig, n));
    km_key_free(k);
    OK(km_key_open(&k, c, "pending"));
    ck_assert_int_eq(tu_version_state(k, 1), KM_STATE_DESTROY_PENDING);
    km_key_free(k);
    OK(km_audit_verify(c, NULL, NULL, NULL));
}

/* The old vault opens, is moved to format 5 in audited steps (none left to
 * do afterwards), keeps everything, and later changes land in the key
 * records. */
START_TEST(test_format5_opens_v4_vault)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    uint32_t format = 0, v = 0;
    uint64_t vrecs = 0, seq_before, seq_after;
    km_audit_head h;
    int marker = 1, entries = 0;
    cts ct;

    v4_install(dir, &ct);
    OK(open_d(&c, dir));
    format_of(c, &format, &vrecs, &marker);
    ck_assert_uint_eq(format, 5);
    ck_assert_uint_eq(vrecs, 0);
    ck_assert_int_eq(marker, 0);
    entries = tu_audit_count(c, "vault.maintain", "vault format 5");
    ck_assert_int_ge(entries, 4); /* begin, key records, version records, done */
    check_contents(c, &ct);
    OK(km_audit_head_get(c, &h));
    seq_before = h.seq;
    /* later changes: a rotation and a transition live in the key record */
    OK(km_key_open(&k, c, "aes"));
    OK(km_key_rotate(k, &v));
    ck_assert_uint_eq(v, 4);
    OK(km_key_suspend(k, 2));
    km_key_free(k);
    km_close(c);
    OK(open_d(&c, dir));
    OK(km_audit_head_get(c, &h));
    seq_after = h.seq;
    ck_assert_uint_eq(seq_after, seq_before + 2); /* the reopen wrote nothing */
    format_of(c, &format, &vrecs, &marker);
    ck_assert_uint_eq(vrecs, 0);
    OK(km_key_open(&k, c, "aes"));
    ck_assert_int_eq(tu_version_state(k, 2), KM_STATE_SUSPENDED);
    ck_assert_int_eq(tu_version_state(k, 4), KM_STATE_ACTIVE);
    km_key_free(k);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    km_close(c);
}
END_TEST

/* A kill at every write step of the open that moves the vault: each leaves
 * a vault that the next open moves the rest of the way, with everything in
 * it and the audit log whole; a vault left at format 5 mid-move is refused
 * by nothing but an older libkm. */
START_TEST(test_format5_crash_every_step)
{
    char d[4200];
    unsigned long steps, k;
    int crashes = 0, mid = 0;
    km_ctx *c = NULL;
    cts ct;

    snprintf(d, sizeof d, "%s/count", dir);
    v4_install(d, &ct);
    km__fault_arm(ULONG_MAX);
    OK(open_d(&c, d));
    steps = km__fault_steps();
    km__fault_arm(0);
    km_close(c);
    ck_assert_uint_gt(steps, 10);
    for (k = 1; k <= steps + 1; k++) {
        uint32_t format = 0;
        uint64_t vrecs = 0;
        int killed, marker = 0;
        pid_t pid;

        snprintf(d, sizeof d, "%s/s%lu", dir, k);
        v4_install(d, &ct);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *cc = NULL;
            int rc;
            km__fault_arm(k);
            rc = open_d(&cc, d);
            km__fault_arm(0);
            km_close(cc);
            _exit(rc == KM_OK ? 0 : 4);
        }
        killed = tu_wait_killed(pid, k);
        crashes += killed;
        /* what the kill left, seen raw: an interrupted move is at format 5
         * with its marker (or still at 4) */
        {
            km__env *e = NULL;
            km_secret *m = NULL;
            km__txn *t = NULL;
            km_open_options o = KM_OPEN_OPTIONS_INIT;
            uint8_t vid[16], pid2[16];
            o.passphrase = (const uint8_t *)TU_PASS;
            o.passphrase_len = strlen(TU_PASS);
            if (getenv("KM_TEST_ETCD") == NULL) {
                char vpath[4300];
                snprintf(vpath, sizeof vpath, "%s/vault", d);
                OK(km__env_open(&e, vpath, &o, &m, vid, pid2));
                OK(km__txn_begin(e, 0, &t));
                OK(km__store_format(t, &format));
                OK(km__table_count(t, KM__T_VMETA, &vrecs));
                km__txn_abort(t);
                km_secret_free(m);
                km__env_close(e);
                if (format == 5 && vrecs > 0)
                    mid++;
            }
        }
        OK(open_d(&c, d));
        format_of(c, &format, &vrecs, &marker);
        ck_assert_msg(format == 5 && vrecs == 0 && !marker, "step %lu: format %u, %llu version "
                      "records, marker %d after the next open", k, format,
                      (unsigned long long)vrecs, marker);
        check_contents(c, &ct);
        km_close(c);
        if (!killed)
            break;
    }
    printf("format5: open of a format-4 vault: %lu write steps, %d kills, %d left mid-move\n",
           steps, crashes, mid);
    ck_assert_int_gt(crashes, 10);
    if (getenv("KM_TEST_ETCD") == NULL)
        ck_assert_int_gt(mid, 0);
}
END_TEST

/* Writes key `name`'s record, as the vault holds it, edited by `edit`,
 * sealed as libkm would (an attacker with the master key, or a bug). */
typedef void (*rec_edit_fn)(km__tlv_w *w, const uint8_t *rec, size_t n);

static void rewrite_key(km_ctx *c, const char *name, rec_edit_fn edit)
{
    km_key *k = NULL;
    km__txn *t = NULL;
    km_secret *rec = NULL;
    uint8_t id[16], buf[8192];
    km__tlv_w w;

    OK(km_key_open(&k, c, name));
    memcpy(id, km_key_id(k), 16);
    km_key_free(k);
    OK(km__txn_begin(c->env, 1, &t));
    OK(km__rec_get(t, c->sealer, KM__T_KEYS, id, 16, &rec));
    km__tlv_init(&w, buf, sizeof buf);
    edit(&w, km_secret_data(rec), km_secret_len(rec));
    OK(km__tlv_end(&w));
    OK(km__rec_put(t, c->sealer, KM__T_KEYS, id, 16, buf, w.len, 0));
    km_secret_free(rec);
    OK(km__txn_commit(t));
}

/* the count says 3, the list holds 2 */
static void edit_count(km__tlv_w *w, const uint8_t *rec, size_t n)
{
    static const uint8_t t7 = KM__K_NVERSIONS;
    km__tlv_copy_except(w, rec, n, &t7, 1);
    km__tlv_put_u32(w, KM__K_NVERSIONS, 3);
}

/* the list lost its last entry (count 2) */
static void edit_list(km__tlv_w *w, const uint8_t *rec, size_t n)
{
    static const uint8_t t19 = KM__K_VERSIONS;
    const uint8_t *l;
    size_t ll;
    ck_assert(km__tlv_find(rec, n, KM__K_VERSIONS, &l, &ll));
    km__tlv_copy_except(w, rec, n, &t19, 1);
    km__tlv_put(w, KM__K_VERSIONS, l, 4 + km__be32_get(l));
}

/* no list at all: a record as format 4 wrote it, in a format-5 vault */
static void edit_nolist(km__tlv_w *w, const uint8_t *rec, size_t n)
{
    static const uint8_t t19 = KM__K_VERSIONS;
    km__tlv_copy_except(w, rec, n, &t19, 1);
}

/* an entry whose length runs past the list */
static void edit_trunc(km__tlv_w *w, const uint8_t *rec, size_t n)
{
    static const uint8_t t19 = KM__K_VERSIONS;
    const uint8_t *l;
    size_t ll;
    uint8_t b[2048];
    ck_assert(km__tlv_find(rec, n, KM__K_VERSIONS, &l, &ll));
    ck_assert_uint_le(ll, sizeof b);
    memcpy(b, l, ll);
    km__be32_put(b, km__be32_get(b) + 1);
    km__tlv_copy_except(w, rec, n, &t19, 1);
    km__tlv_put(w, KM__K_VERSIONS, b, ll);
}

START_TEST(test_format5_record_disagrees)
{
    static const struct {
        const char *name;
        rec_edit_fn edit;
    } cases[] = { { "count", edit_count }, { "list", edit_list }, { "nolist", edit_nolist },
                  { "trunc", edit_trunc } };
    km_ctx *c = NULL, *c2 = NULL;
    km_key *k = NULL;
    size_t i;
    uint32_t v;

    OK(tu_vault_open(&c, dir, TU_PASS, KM_OPEN_CREATE));
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        OK(km_key_create(&k, c, cases[i].name, KM_KEY_AES_256_GCM, NULL));
        OK(km_key_rotate(k, &v));
        km_key_free(k);
        rewrite_key(c, cases[i].name, cases[i].edit);
    }
    km_close(c);
    OK(open_d(&c2, dir));
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RC(KM_E_CORRUPT, km_key_open(&k, c2, cases[i].name));
        ck_assert_ptr_null(k);
    }
    km_close(c2);
}
END_TEST

/* An older sealed key record put back (a rollback of one record: the
 * version list of before a revocation) opens as what it says, but the audit
 * chain's record of writes names it. */
START_TEST(test_format5_record_replayed)
{
    km_ctx *c = NULL;
    km_key *k = NULL;
    km__txn *t = NULL;
    const uint8_t *v;
    uint8_t id[16], *old = NULL;
    size_t vl = 0;
    uint64_t bad = 0;

    OK(tu_vault_open(&c, dir, TU_PASS, KM_OPEN_CREATE));
    OK(km_key_create(&k, c, "r", KM_KEY_AES_256_GCM, NULL));
    memcpy(id, km_key_id(k), 16);
    OK(km__txn_begin(c->env, 0, &t));
    OK(km__raw_get(t, KM__T_KEYS, id, 16, &v, &vl));
    ck_assert_ptr_nonnull(old = malloc(vl));
    memcpy(old, v, vl);
    km__txn_abort(t);
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    km_key_free(k);
    OK(km__txn_begin(c->env, 1, &t));
    OK(km__raw_put(t, KM__T_KEYS, id, 16, old, vl, 0));
    OK(km__txn_commit(t));
    free(old);
    km_close(c);
    OK(open_d(&c, dir));
    RC(KM_E_INTEGRITY, km_audit_verify(c, NULL, NULL, &bad));
    ck_assert(strstr(km_error_last()->message, "keys/") != NULL);
    km_close(c);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("format5", "format5", &tc, 600, setup, teardown);
    tcase_add_test(tc, test_format5_opens_v4_vault);
    tcase_add_test(tc, test_format5_record_disagrees);
    tcase_add_test(tc, test_format5_record_replayed);
    tcase_add_test(tc, test_format5_crash_every_step);
    return tu_run(s);
}
