/* check_audit.c - issue 5: the audit log (chain, MAC, tamper cases, sinks,
 * data-path levels, crash atomicity), keyslots (Shamir M-of-N, principals,
 * a backend slot through the dispatch), access control (role x operation)
 * and dual control (request, approve, consume, expiry, replay). */
#include <check.h>
#include <errno.h>
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

#include <km.h>
#include <km/sys/backend.h>

#include "testraw.h"
#include "testutil.h"

static char *tmp;           /* the test's directory */
static const char *vdir;    /* the directory of the vault the helpers open: tmp */

static void setup(void)
{
    tu_setup(&tmp, NULL, NULL);
    vdir = tmp;
}

static void teardown(void)
{
    tu_teardown(&tmp, NULL);
}

/* Opens with a passphrase (owner) or as a principal, on the fake clock. */
static int open_as(km_ctx **c, const char *principal, const char *pass, uint32_t flags)
{
    return tu_vault_open_as(c, vdir, principal, pass, flags);
}

static km_ctx *owner(void)
{
    km_ctx *c = NULL;
    OK(open_as(&c, NULL, TU_PASS, KM_OPEN_CREATE));
    return c;
}

static km_key *mkkey(km_ctx *c, const char *name, km_key_type type)
{
    km_key *k = NULL;
    OK(km_key_create(&k, c, name, type, NULL));
    return k;
}

/* The first 256 entries in full; every entry counted by operation. */
typedef struct collected {
    int n;
    char ops[256][24];
    char principals[256][72];
    char details[256][128];
    int results[256];
    char op_names[64][24];
    int op_counts[64];
    int nops;
} collected;

static int collect(const km_audit_entry *e, void *arg)
{
    collected *c = arg;
    int i;
    if (c->n < 256) {
        snprintf(c->ops[c->n], sizeof c->ops[0], "%s", e->op);
        snprintf(c->principals[c->n], sizeof c->principals[0], "%s", e->principal);
        snprintf(c->details[c->n], sizeof c->details[0], "%s", e->detail);
        c->results[c->n] = e->result;
    }
    for (i = 0; i < c->nops && strcmp(c->op_names[i], e->op) != 0; i++)
        ;
    if (i == c->nops && c->nops < 64)
        snprintf(c->op_names[c->nops++], sizeof c->op_names[0], "%s", e->op);
    if (i < 64)
        c->op_counts[i]++;
    c->n++;
    return 0;
}

static int count_op(const collected *c, const char *op)
{
    int i;
    for (i = 0; i < c->nops; i++)
        if (strcmp(c->op_names[i], op) == 0)
            return c->op_counts[i];
    return 0;
}

/* ------------------------------------------------------------ the log */

START_TEST(audit_records_state_changes)
{
    km_ctx *c = owner();
    km_key *k = mkkey(c, "payments", KM_KEY_AES_256_GCM);
    collected col;
    km_audit_head h;
    uint64_t n = 0, bad = 9;
    uint32_t v = 0;

    OK(km_key_rotate(k, &v));
    OK(km_key_suspend(k, 2));
    OK(km_key_resume(k, 2));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_policy_set(c, "{\"version\": 1}", 14));
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "key.create"), 1);
    ck_assert_int_eq(count_op(&col, "key.rotate"), 1);
    ck_assert_int_eq(count_op(&col, "key.state"), 3);
    ck_assert_int_eq(count_op(&col, "policy.set"), 2);   /* the fixture's (test clock), ours */
    ck_assert_str_eq(col.principals[0], "owner");
    /* after the format upgrade's checkpoint and the fixture's policy.set */
    ck_assert_ptr_nonnull(strstr(col.details[4], "suspend"));
    OK(km_audit_verify(c, NULL, &n, &bad));
    ck_assert_uint_eq(n, (uint64_t)col.n);
    ck_assert_uint_eq(bad, 0);
    OK(km_audit_head_get(c, &h));
    ck_assert_uint_eq(h.seq, n);
    OK(km_audit_verify(c, &h, NULL, NULL));
    km_key_free(k);
    km_close(c);
}
END_TEST

/* Raw LMDB access to the vault file, to play the attacker (testraw.h). */
static tu_raw raw;

static MDB_env *raw_open(MDB_dbi *audit, MDB_dbi *meta, MDB_txn **txn)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/vault", tmp);
    tu_raw_begin(&raw, dir, 0, (uint64_t)1 << 30);
    *audit = tu_raw_dbi(&raw, "audit");
    *meta = tu_raw_dbi(&raw, "meta");
    *txn = raw.txn;
    return raw.env;
}

static void raw_close(MDB_env *e, MDB_txn *txn)
{
    ck_assert_ptr_eq(e, raw.env);
    ck_assert_ptr_eq(txn, raw.txn);
    tu_raw_end(&raw);
}

static MDB_val seqkey(uint8_t b[8], uint64_t s)
{
    MDB_val k;
    int i;
    for (i = 7; i >= 0; i--, s >>= 8)
        b[i] = (uint8_t)s;
    k.mv_data = b;
    k.mv_size = 8;
    return k;
}

/* A vault with a few entries; returns the number of entries. */
static uint64_t build_log(km_audit_head *head)
{
    km_ctx *c = owner();
    km_key *k = mkkey(c, "k", KM_KEY_AES_256_GCM);
    uint64_t n = 0;
    int i;
    for (i = 0; i < 4; i++)
        OK(km_key_rotate(k, NULL));
    OK(km_audit_verify(c, NULL, &n, NULL));
    if (head != NULL)
        OK(km_audit_head_get(c, head));
    km_key_free(k);
    km_close(c);
    return n;
}

static int verify_fresh(uint64_t *bad, const km_audit_head *anchor)
{
    km_ctx *c = NULL;
    int rc;
    OK(open_as(&c, NULL, TU_PASS, 0));
    rc = km_audit_verify(c, anchor, NULL, bad);
    km_close(c);
    return rc;
}

START_TEST(audit_tamper_edit)
{
    MDB_env *e;
    MDB_txn *t;
    MDB_dbi a, m;
    MDB_val k, v;
    uint8_t kb[8], *copy;
    uint64_t bad = 0;

    ck_assert_uint_ge(build_log(NULL), 5);
    e = raw_open(&a, &m, &t);
    k = seqkey(kb, 3);
    ck_assert_int_eq(mdb_get(t, a, &k, &v), 0);
    copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x01;
    v.mv_data = copy;
    ck_assert_int_eq(mdb_put(t, a, &k, &v, 0), 0);
    raw_close(e, t);
    free(copy);
    ck_assert_int_eq(verify_fresh(&bad, NULL), KM_E_INTEGRITY);
    ck_assert_uint_eq(bad, 3);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "3"));
}
END_TEST

START_TEST(audit_tamper_delete)
{
    MDB_env *e;
    MDB_txn *t;
    MDB_dbi a, m;
    MDB_val k;
    uint8_t kb[8];
    uint64_t bad = 0;

    build_log(NULL);
    e = raw_open(&a, &m, &t);
    k = seqkey(kb, 2);
    ck_assert_int_eq(mdb_del(t, a, &k, NULL), 0);
    raw_close(e, t);
    ck_assert_int_eq(verify_fresh(&bad, NULL), KM_E_INTEGRITY);
    ck_assert_uint_eq(bad, 2);
}
END_TEST

START_TEST(audit_tamper_reorder)
{
    MDB_env *e;
    MDB_txn *t;
    MDB_dbi a, m;
    MDB_val k3, k4, v3, v4;
    uint8_t b3[8], b4[8], *c3, *c4;
    size_t l3, l4;
    uint64_t bad = 0;

    build_log(NULL);
    e = raw_open(&a, &m, &t);
    k3 = seqkey(b3, 3);
    k4 = seqkey(b4, 4);
    ck_assert_int_eq(mdb_get(t, a, &k3, &v3), 0);
    ck_assert_int_eq(mdb_get(t, a, &k4, &v4), 0);
    l3 = v3.mv_size;
    l4 = v4.mv_size;
    c3 = malloc(l3);
    c4 = malloc(l4);
    memcpy(c3, v3.mv_data, l3);
    memcpy(c4, v4.mv_data, l4);
    v3.mv_data = c4;
    v3.mv_size = l4;
    v4.mv_data = c3;
    v4.mv_size = l3;
    ck_assert_int_eq(mdb_put(t, a, &k3, &v3, 0), 0);
    ck_assert_int_eq(mdb_put(t, a, &k4, &v4, 0), 0);
    raw_close(e, t);
    free(c3);
    free(c4);
    ck_assert_int_eq(verify_fresh(&bad, NULL), KM_E_INTEGRITY);
    ck_assert_uint_eq(bad, 3);
}
END_TEST

START_TEST(audit_tamper_insert)
{
    MDB_env *e;
    MDB_txn *t;
    MDB_dbi a, m;
    MDB_val k, kn, v;
    uint8_t kb[8], kbn[8], *copy;
    uint64_t bad = 0, n;

    n = build_log(NULL);
    e = raw_open(&a, &m, &t);
    k = seqkey(kb, 2);
    ck_assert_int_eq(mdb_get(t, a, &k, &v), 0);
    copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    kn = seqkey(kbn, n + 1);
    v.mv_data = copy;
    ck_assert_int_eq(mdb_put(t, a, &kn, &v, 0), 0);
    raw_close(e, t);
    free(copy);
    ck_assert_int_eq(verify_fresh(&bad, NULL), KM_E_INTEGRITY);
    ck_assert_uint_eq(bad, n + 1);
}
END_TEST

/* Truncating the tail and rolling the sealed head back to an older copy
 * passes a verification without an anchor; the exported head catches it. */
START_TEST(audit_tamper_truncate_with_anchor)
{
    MDB_env *e;
    MDB_txn *t;
    MDB_dbi a, m;
    MDB_val hk = { 10, "audit-head" }, hv, k;
    uint8_t *old_head, kb[8];
    size_t old_len;
    uint64_t n_old, n_new, s, bad = 0;
    km_audit_head anchor;
    km_ctx *c;
    km_key *key = NULL;

    n_old = build_log(NULL);
    e = raw_open(&a, &m, &t);
    ck_assert_int_eq(mdb_get(t, m, &hk, &hv), 0);
    old_len = hv.mv_size;
    old_head = malloc(old_len);
    memcpy(old_head, hv.mv_data, old_len);
    raw_close(e, t);
    /* more changes, then the auditor exports the head */
    OK(open_as(&c, NULL, TU_PASS, 0));
    OK(km_key_open(&key, c, "k"));
    OK(km_key_rotate(key, NULL));
    OK(km_key_rotate(key, NULL));
    km_key_free(key);
    OK(km_audit_head_get(c, &anchor));
    n_new = anchor.seq;
    km_close(c);
    ck_assert_uint_gt(n_new, n_old);
    /* the attacker drops the tail and restores the old head */
    e = raw_open(&a, &m, &t);
    for (s = n_old + 1; s <= n_new; s++) {
        k = seqkey(kb, s);
        ck_assert_int_eq(mdb_del(t, a, &k, NULL), 0);
    }
    hv.mv_data = old_head;
    hv.mv_size = old_len;
    ck_assert_int_eq(mdb_put(t, m, &hk, &hv, 0), 0);
    raw_close(e, t);
    free(old_head);
    /* the rotations' records are left that the truncated log never wrote
     * (issue 18: entries list the records they write) */
    ck_assert_int_eq(verify_fresh(&bad, NULL), KM_E_INTEGRITY);
    ck_assert_int_eq(verify_fresh(&bad, &anchor), KM_E_INTEGRITY);
    ck_assert_uint_eq(bad, n_old + 1);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "truncated"));
}
END_TEST

START_TEST(audit_chain_survives_rekey)
{
    km_ctx *c = owner();
    km_key *k = mkkey(c, "k", KM_KEY_AES_256_GCM);
    collected col;
    uint64_t n = 0;

    OK(km_vault_rekey(c, (const uint8_t *)"new pass", 8, KM_KDF_COST_MIN));
    OK(km_key_rotate(k, NULL));
    OK(km_audit_verify(c, NULL, &n, NULL));
    km_key_free(k);
    km_close(c);
    OK(open_as(&c, NULL, "new pass", 0));
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "vault.rekey"), 1);
    OK(km_audit_verify(c, NULL, &n, NULL));
    ck_assert_uint_eq(n, (uint64_t)col.n);
    km_close(c);
}
END_TEST

/* Issue 22 item 7: at level every, the chain shows a context's calls in the order they were
 * made: an encrypt queued before a rotation comes before the rotation's entry. */
START_TEST(audit_every_keeps_call_order)
{
    km_ctx *c = owner();
    km_key *k;
    uint8_t ct[64];
    size_t len;
    int i, enc = -1, rot = -1;
    collected col;

    OK(km_audit_set_level(c, KM_AUDIT_DATA_EVERY));
    k = mkkey(c, "k", KM_KEY_AES_256_GCM);
    OK(km_encrypt(k, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &len));
    OK(km_key_rotate(k, NULL));
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    for (i = 0; i < col.n && i < 256; i++) {
        if (enc < 0 && strcmp(col.ops[i], "encrypt") == 0)
            enc = i;
        if (rot < 0 && strcmp(col.ops[i], "key.rotate") == 0)
            rot = i;
    }
    ck_assert_int_ge(enc, 0);
    ck_assert_int_ge(rot, 0);
    ck_assert_int_lt(enc, rot);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    km_key_free(k);
    km_close(c);
}
END_TEST

START_TEST(audit_data_levels_and_sink)
{
    km_ctx *c = owner();
    km_key *k = mkkey(c, "k", KM_KEY_AES_256_GCM);
    uint8_t ct[256], pt[64];
    size_t len, n, i;
    collected col;
    uint8_t *file;
    char sink[4300];
    km_audit_level lv;

    snprintf(sink, sizeof sink, "%s/audit.jsonl", tmp);
    OK(km_audit_sink_file(c, sink));
    OK(km_audit_get_level(c, &lv));
    ck_assert_int_eq(lv, KM_AUDIT_DATA_COUNTERS);
    for (i = 0; i < 10; i++)
        OK(km_encrypt(k, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &len));
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "encrypt"), 0);
    OK(km_audit_set_level(c, KM_AUDIT_DATA_EVERY));
    for (i = 0; i < 100; i++)
        OK(km_encrypt(k, (const uint8_t *)"hello", 5, NULL, 0, ct, sizeof ct, &len));
    OK(km_decrypt(c, 0, ct, len, NULL, 0, pt, sizeof pt, &n));
    ck_assert_int_eq(km_decrypt(c, 0, ct, len, (const uint8_t *)"x", 1, pt, sizeof pt, &n),
                     KM_E_INTEGRITY);
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));  /* flushes the queue */
    ck_assert_int_eq(count_op(&col, "encrypt"), 100);
    ck_assert_int_eq(count_op(&col, "decrypt"), 2);
    ck_assert_int_eq(col.results[col.n - 1], KM_E_INTEGRITY);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    /* the sink holds one JSON line per entry written by this context */
    file = tu_read_file(sink, &n);
    ck_assert_ptr_nonnull(file);
    {
        size_t lines = 0;
        for (i = 0; i < n; i++)
            lines += file[i] == '\n';
        ck_assert_uint_ge(lines, 103);
        ck_assert(tu_memmem(file, n, (const uint8_t *)"\"op\":\"encrypt\"", 14));
        ck_assert(!tu_memmem(file, n, (const uint8_t *)TU_PASS, strlen(TU_PASS)));
        ck_assert(!tu_memmem(file, n, (const uint8_t *)"hello", 5));
    }
    free(file);
    km_key_free(k);
    km_close(c);
}
END_TEST

/* A sink gets an entry once its change has committed (issue 18), so a sink
 * that cannot write cannot stop that change (its entry is in the vault's own
 * log); it fails closed for the next one: every change is refused until a
 * sink is set again. */
START_TEST(audit_sink_fails_closed)
{
    km_ctx *c = owner();
    km_key *k = NULL;
    uint32_t v = 0;

    if (access("/dev/full", W_OK) != 0)
        ck_abort_msg("/dev/full is needed for this test");
    k = mkkey(c, "k", KM_KEY_AES_256_GCM);
    OK(km_audit_sink_file(c, "/dev/full"));
    OK(km_key_rotate(k, &v));
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(km_key_rotate(k, &v), KM_E_IO);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "sink failed at entry"));
    OK(km_audit_sink_file(c, NULL));
    km_key_free(k);
    OK(km_key_open(&k, c, "k"));
    OK(km_key_rotate(k, &v));
    ck_assert_uint_eq(v, 3);  /* the refused rotation left no version behind */
    km_key_free(k);
    km_close(c);
}
END_TEST

START_TEST(audit_failed_auth_reported)
{
    km_ctx *c = owner();
    collected col;
    km_close(c);
    ck_assert_int_eq(open_as(&c, NULL, "wrong", 0), KM_E_AUTH);
    ck_assert_int_eq(open_as(&c, NULL, "wrong again", 0), KM_E_AUTH);
    OK(open_as(&c, NULL, TU_PASS, 0));
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "auth.fail"), 1);
    ck_assert_ptr_nonnull(strstr(col.details[col.n - 1], "2 failed"));
    km_close(c);
}
END_TEST

/* SIGKILL during writes: no change without its entry, no entry without its
 * change. A child creates and rotates keys; it is killed at random. */
START_TEST(audit_crash_atomicity)
{
    int round;
    km_close(owner());   /* the vault exists before the first child runs */
    srand(1234);
    for (round = 0; round < 15; round++) {
        int ready[2];
        char b;
        pid_t pid;
        ck_assert_int_eq(pipe(ready), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            km_ctx *c = NULL;
            char name[32];
            int i;
            close(ready[0]);
            if (open_as(&c, NULL, TU_PASS, 0) != KM_OK)
                _exit(2);
            if (write(ready[1], "r", 1) != 1)   /* opened: the kill may come now */
                _exit(3);
            for (i = 0;; i++) {
                km_key *k = NULL;
                snprintf(name, sizeof name, "r%d-%d", round, i % 4);
                if (km_key_open(&k, c, name) == KM_OK) {
                    (void)km_key_rotate(k, NULL);
                } else {
                    (void)km_key_create(&k, c, name, KM_KEY_AES_256_GCM, NULL);
                }
                km_key_free(k);
            }
        }
        close(ready[1]);
        ck_assert_int_eq(read(ready[0], &b, 1), 1);
        close(ready[0]);
        usleep(5000 + (useconds_t)(rand() % 60000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    {
        km_ctx *c = NULL;
        collected col;
        uint64_t n = 0;
        int r, i, creates = 0, rotates = 0;
        uint32_t versions = 0;

        OK(open_as(&c, NULL, TU_PASS, 0));
        OK(km_audit_verify(c, NULL, &n, NULL));
        memset(&col, 0, sizeof col);
        OK(km_audit_foreach(c, 1, collect, &col));
        creates = count_op(&col, "key.create");
        rotates = count_op(&col, "key.rotate");
        /* every version in the catalog has exactly one entry, and back */
        for (r = 0; r < 15; r++)
            for (i = 0; i < 4; i++) {
                char name[32];
                km_key *k = NULL;
                km_keyinfo *info = NULL;
                snprintf(name, sizeof name, "r%d-%d", r, i);
                if (km_key_open(&k, c, name) != KM_OK)
                    continue;
                OK(km_key_info(&info, k));
                versions += km_keyinfo_version_count(info);
                km_keyinfo_free(info);
                km_key_free(k);
            }
        ck_assert_int_gt(creates, 0);
        ck_assert_uint_eq(versions, (uint32_t)(creates + rotates));
        km_close(c);
    }
}
END_TEST

/* ------------------------------------------------------- Shamir keyslot */

static int open_shares(const char *const *shares, size_t n)
{
    tu_open o = TU_OPEN_INIT;
    km_ctx *c = NULL;
    int rc;
    o.shares = shares;
    o.share_count = n;
    rc = tu_vault_open_with(&c, vdir, &o);
    km_close(c);
    return rc;
}

START_TEST(shamir_3_of_5_every_subset)
{
    km_ctx *c = owner();
    km_secret *sh[5];
    const char *s[5];
    unsigned mask, i, ok = 0, refused = 0;

    OK(km_vault_add_shares(c, 3, 5, sh));
    km_close(c);
    for (i = 0; i < 5; i++) {
        s[i] = (const char *)km_secret_data(sh[i]);
        ck_assert_int_eq(strncmp(s[i], "kms1:", 5), 0);
    }
    for (mask = 1; mask < 32; mask++) {
        const char *pick[5];
        size_t n = 0;
        for (i = 0; i < 5; i++)
            if (mask & (1u << i))
                pick[n++] = s[i];
        if (n >= 3) {
            ck_assert_msg(open_shares(pick, n) == KM_OK, "subset 0x%x: %s", mask,
                          km_error_last()->message);
            ok++;
        } else {
            ck_assert_int_eq(open_shares(pick, n), KM_E_AUTH);
            refused++;
        }
    }
    ck_assert_uint_eq(ok, 16);       /* C(5,3) + C(5,4) + C(5,5) */
    ck_assert_uint_eq(refused, 15);  /* C(5,1) + C(5,2) */
    /* the same share three times is one share */
    {
        const char *same[3] = { s[0], s[0], s[0] };
        ck_assert_int_eq(open_shares(same, 3), KM_E_AUTH);
    }
    for (i = 0; i < 5; i++)
        km_secret_free(sh[i]);
}
END_TEST

START_TEST(shamir_altered_share_named)
{
    km_ctx *c = owner();
    km_secret *sh[3], *other[2];
    char bad[256];
    const char *pick[3];
    size_t i, len;

    OK(km_vault_add_shares(c, 2, 3, sh));
    km_close(c);
    /* flip one base64 character of share 2's y part */
    len = km_secret_len(sh[1]);
    memcpy(bad, km_secret_data(sh[1]), len);
    bad[len] = '\0';
    bad[len - 5] = bad[len - 5] == 'A' ? 'B' : 'A';
    pick[0] = (const char *)km_secret_data(sh[0]);
    pick[1] = bad;
    ck_assert_int_eq(open_shares(pick, 2), KM_E_AUTH);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "share 2"));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "altered"));
    /* garbage is invalid, not a wrong key */
    pick[1] = "kms1:!!!";
    ck_assert_int_eq(open_shares(pick, 2), KM_E_INVALID);
    /* shares of another vault's split do not open this one */
    {
        char other_dir[4200];
        snprintf(other_dir, sizeof other_dir, "%s/other", tmp);
        ck_assert_int_eq(mkdir(other_dir, 0700), 0);
        vdir = other_dir;
        c = owner();
        OK(km_vault_add_shares(c, 2, 2, other));
        km_close(c);
        vdir = tmp;
        pick[0] = (const char *)km_secret_data(other[0]);
        pick[1] = (const char *)km_secret_data(other[1]);
        ck_assert_int_eq(open_shares(pick, 2), KM_E_AUTH);
        for (i = 0; i < 2; i++)
            km_secret_free(other[i]);
    }
    /* and the genuine pair opens */
    pick[0] = (const char *)km_secret_data(sh[0]);
    pick[1] = (const char *)km_secret_data(sh[2]);
    OK(open_shares(pick, 2));
    for (i = 0; i < 3; i++)
        km_secret_free(sh[i]);
}
END_TEST

START_TEST(shamir_only_slot_left)
{
    km_ctx *c = owner();
    km_secret *sh[3];
    const char *pick[2];
    size_t i;

    OK(km_vault_add_shares(c, 2, 3, sh));
    OK(km_vault_remove_passphrases(c));
    ck_assert_int_eq(km_vault_remove_passphrases(c), KM_E_NOTFOUND);
    km_close(c);
    ck_assert_int_eq(open_as(&c, NULL, TU_PASS, 0), KM_E_AUTH);
    pick[0] = (const char *)km_secret_data(sh[2]);
    pick[1] = (const char *)km_secret_data(sh[0]);
    OK(open_shares(pick, 2));
    for (i = 0; i < 3; i++)
        km_secret_free(sh[i]);
}
END_TEST

/* ------------------------------------------ a backend keyslot (dispatch) */

/* The "device": a 32-byte secret the test backend keeps per configuration.
 * This exercises the core's slot dispatch only (a real TPM and a real
 * SoftHSM2 token are tested in check_tpm2 / check_pkcs11). */
static uint8_t dev_a[32] = { 1, 2, 3 }, dev_b[32] = { 9, 9, 9 };

static int sb_open(void **st, const char *config)
{
    if (config == NULL)
        return KM_E_INVALID;
    *st = strcmp(config, "device=a") == 0 ? dev_a : strcmp(config, "device=b") == 0 ? dev_b
                                                                                   : NULL;
    return *st ? KM_OK : KM_E_BACKEND;
}
static int sb_gen(void *s, const km_backend_keyspec *sp, km_secret **r)
{
    (void)s; (void)sp; (void)r;
    return KM_E_UNSUPPORTED;
}
static int sb_load(void *s, const km_backend_keyspec *sp, const uint8_t *r, size_t n, void **o)
{
    (void)s; (void)sp; (void)r; (void)n; (void)o;
    return KM_E_UNSUPPORTED;
}
static void sb_unload(void *s, void *o)
{
    (void)s; (void)o;
}
/* blob = the master key xor the device secret, then the device secret's
 * first byte as a check: a stand-in for a token's wrap, enough to prove
 * which device the core dispatched to. */
static int sb_seal(void *s, const km_secret *m, km_secret **blob)
{
    const uint8_t *d = s;
    uint8_t b[33];
    size_t i;
    for (i = 0; i < 32; i++)
        b[i] = km_secret_data(m)[i] ^ d[i];
    b[32] = d[0];
    return km_secret_from(blob, b, sizeof b);
}
static int sb_unseal(void *s, const uint8_t *blob, size_t n, km_secret **m)
{
    const uint8_t *d = s;
    uint8_t b[32];
    size_t i;
    if (n != 33 || blob[32] != d[0])
        return KM_E_AUTH;
    for (i = 0; i < 32; i++)
        b[i] = blob[i] ^ d[i];
    return km_secret_from(m, b, 32);
}

static const km_backend_ops slot_backend = {
    .version = KM_BACKEND_OPS_VERSION, .name = "slottest", .caps = 0, .open = sb_open,
    .generate = sb_gen, .load = sb_load, .unload = sb_unload, .slot_seal = sb_seal,
    .slot_unseal = sb_unseal
};

static int open_backend(const char *config)
{
    km_ctx *c = NULL;
    int rc = tu_vault_open_slot(&c, vdir, "slottest", config);
    km_close(c);
    return rc;
}

START_TEST(backend_slot_dispatch)
{
    km_ctx *c = owner();
    collected col;
    int rc = km_backend_register(&slot_backend);
    ck_assert(rc == KM_OK || rc == KM_E_EXISTS);
    ck_assert_int_eq(open_backend("device=a"), KM_E_AUTH);   /* no slot yet */
    OK(km_vault_add_backend_slot(c, "slottest", "device=a"));
    ck_assert_int_eq(km_vault_add_backend_slot(c, "software", NULL), KM_E_INVALID);
    ck_assert_int_eq(km_vault_add_backend_slot(c, "nosuch", NULL), KM_E_UNSUPPORTED);
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "keyslot.add"), 1);
    km_close(c);
    OK(open_backend("device=a"));
    ck_assert_int_eq(open_backend("device=b"), KM_E_AUTH);
    ck_assert_int_eq(open_backend("device=zzz"), KM_E_BACKEND);
}
END_TEST

/* ------------------------------------------------ principals and roles */

static km_ctx *as(const char *who, const char *pass)
{
    return tu_as(vdir, who, pass);
}

START_TEST(principal_slots_prove_credentials)
{
    km_ctx *c = owner(), *p;
    char name[80];
    uint32_t roles = 0;

    tu_principals_add(c);
    ck_assert_int_eq(km_principal_add(c, TU_USER, KM_ROLE_USER, (const uint8_t *)"x", 1,
                                      KM_KDF_COST_MIN), KM_E_EXISTS);
    ck_assert_int_eq(km_principal_add(c, "owner", KM_ROLE_USER, (const uint8_t *)"x", 1,
                                      KM_KDF_COST_MIN), KM_E_INVALID);
    ck_assert_int_eq(km_principal_add(c, "p2", 0, (const uint8_t *)"x", 1, KM_KDF_COST_MIN),
                     KM_E_INVALID);   /* no role */
    ck_assert_int_eq(km_principal_add(c, "p2", 0x100, (const uint8_t *)"x", 1, KM_KDF_COST_MIN),
                     KM_E_INVALID);   /* an unknown role bit */
    ck_assert_int_eq(km_principal_add(c, "p2", KM_ROLE_USER, (const uint8_t *)"x", 0,
                                      KM_KDF_COST_MIN), KM_E_INVALID);
    ck_assert_int_eq(km_principal_add(c, "p2", KM_ROLE_USER, (const uint8_t *)"x", 1,
                                      KM_KDF_COST_MAX + 1), KM_E_INVALID);
    ck_assert_int_eq(km_principal_add(c, "has space", KM_ROLE_USER, (const uint8_t *)"x", 1,
                                      KM_KDF_COST_MIN), KM_E_INVALID);
    km_close(c);
    p = as(TU_USER, "pu");
    OK(km_whoami(p, name, sizeof name, &roles));
    ck_assert_str_eq(name, TU_USER);
    ck_assert_uint_eq(roles, KM_ROLE_USER);
    km_close(p);
    /* another principal's passphrase, or the owner's, does not open as uma */
    ck_assert_int_eq(open_as(&p, TU_USER, "pa", 0), KM_E_AUTH);
    ck_assert_int_eq(open_as(&p, TU_USER, TU_PASS, 0), KM_E_AUTH);
    ck_assert_int_eq(open_as(&p, "nobody", "pu", 0), KM_E_AUTH);
    /* a principal's passphrase is not an owner passphrase */
    ck_assert_int_eq(open_as(&p, NULL, "pu", 0), KM_E_AUTH);
}
END_TEST

static int count_principal(const char *name, uint32_t roles, int64_t created, void *arg)
{
    (void)name; (void)roles; (void)created;
    (*(int *)arg)++;
    return 0;
}

/* The role x operation matrix. */
START_TEST(role_operation_matrix)
{
    km_ctx *c = owner(), *who[5];
    const char *names[5] = { TU_ADMIN, TU_CUST1, TU_USER, TU_AUDITOR, NULL };
    const char *pw[5] = { "pa", "pc1", "pu", "po", NULL };
    /* expected: admin, custodian, user, auditor */
    const int create_ok[4] = { 1, 0, 0, 0 };
    const int encrypt_ok[4] = { 0, 0, 1, 0 };   /* only uma is granted */
    const int audit_ok[4] = { 1, 0, 0, 1 };
    const int policy_ok[4] = { 1, 0, 0, 0 };
    const int list_ok[4] = { 1, 1, 1, 1 };
    km_key *k = mkkey(c, "shared", KM_KEY_AES_256_GCM), *kk = NULL;
    uint8_t ct[128];
    size_t len;
    int i, rc, n_listed;
    collected col;

    tu_principals_add(c);
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    ck_assert_int_eq(km_key_grant(k, "nobody", KM_PERM_ENCRYPT), KM_E_NOTFOUND);
    ck_assert_int_eq(km_key_grant(k, "role:wizard", KM_PERM_ENCRYPT), KM_E_INVALID);
    km_key_free(k);
    for (i = 0; i < 4; i++) {
        char kname[32];
        who[i] = as(names[i], pw[i]);
        snprintf(kname, sizeof kname, "made-by-%d", i);
        rc = km_key_create(&kk, who[i], kname, KM_KEY_AES_256_GCM, NULL);
        ck_assert_msg((rc == KM_OK) == create_ok[i], "create as %s: %s", names[i],
                      km_err_name(rc));
        if (rc != KM_OK)
            ck_assert_int_eq(rc, KM_E_DENIED);
        km_key_free(kk);
        kk = NULL;
        OK(km_key_open(&kk, who[i], "shared"));     /* metadata: everyone */
        rc = km_encrypt(kk, (const uint8_t *)"m", 1, NULL, 0, ct, sizeof ct, &len);
        ck_assert_msg((rc == KM_OK) == encrypt_ok[i], "encrypt as %s: %s", names[i],
                      km_err_name(rc));
        if (rc != KM_OK) {
            ck_assert_int_eq(rc, KM_E_DENIED);
            ck_assert_ptr_nonnull(strstr(km_error_last()->message, "encrypt"));
        }
        rc = km_key_rotate(kk, NULL);
        ck_assert_int_eq(rc == KM_OK, create_ok[i]);
        km_key_free(kk);
        kk = NULL;
        rc = km_audit_verify(who[i], NULL, NULL, NULL);
        ck_assert_msg((rc == KM_OK) == audit_ok[i], "audit as %s: %s", names[i],
                      km_err_name(rc));
        rc = km_policy_set(who[i], "{\"version\": 1}", 14);
        ck_assert_int_eq(rc == KM_OK, policy_ok[i]);
        n_listed = 0;
        rc = km_principal_list(who[i], count_principal, &n_listed);
        ck_assert_int_eq(rc == KM_OK, list_ok[i]);
        ck_assert_int_eq(n_listed, 5);
    }
    /* the admin's own key: it owns it, so it may use it */
    OK(km_key_open(&kk, who[0], "made-by-0"));
    OK(km_encrypt(kk, (const uint8_t *)"m", 1, NULL, 0, ct, sizeof ct, &len));
    km_key_free(kk);
    /* a role grant reaches every holder of the role */
    OK(km_key_open(&kk, c, "shared"));
    OK(km_key_grant(kk, "role:custodian", KM_PERM_ENCRYPT));
    km_key_free(kk);
    OK(km_key_open(&kk, who[1], "shared"));
    OK(km_encrypt(kk, (const uint8_t *)"m", 1, NULL, 0, ct, sizeof ct, &len));
    km_key_free(kk);
    /* an auditor is never given material, even when granted */
    OK(km_key_open(&kk, c, "shared"));
    OK(km_key_grant(kk, TU_AUDITOR, KM_PERM_ALL));
    km_key_free(kk);
    OK(km_key_open(&kk, who[3], "shared"));
    ck_assert_int_eq(km_encrypt(kk, (const uint8_t *)"m", 1, NULL, 0, ct, sizeof ct, &len),
                     KM_E_DENIED);
    km_key_free(kk);
    /* the denied calls are in the log, with who and why */
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_ge(count_op(&col, "denied"), 8);
    for (i = 0; i < col.n && i < 256; i++)
        if (strcmp(col.ops[i], "denied") == 0 && strcmp(col.principals[i], TU_USER) == 0) {
            ck_assert_ptr_nonnull(strstr(col.details[i], "admin role"));
            break;
        }
    ck_assert_int_lt(i, col.n);
    for (i = 0; i < 4; i++)
        km_close(who[i]);
    km_close(c);
}
END_TEST

START_TEST(offboarding)
{
    km_ctx *c = owner(), *a, *u;
    km_key *k = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;
    collected col;

    tu_principals_add(c);
    a = as(TU_ADMIN, "pa");
    OK(km_principal_add(a, "leaver", KM_ROLE_ADMIN | KM_ROLE_USER, (const uint8_t *)"pl", 2,
                        KM_KDF_COST_MIN));
    u = as("leaver", "pl");
    k = mkkey(u, "leavers-key", KM_KEY_AES_256_GCM);
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    km_key_free(k);
    ck_assert_int_eq(km_principal_remove(u, "leaver", 1), KM_E_STATE);  /* not itself */
    km_close(u);
    OK(km_principal_remove(a, "leaver", 1));
    ck_assert_int_eq(km_principal_remove(a, "leaver", 1), KM_E_NOTFOUND);
    /* its slot is gone */
    ck_assert_int_eq(open_as(&u, "leaver", "pl", 0), KM_E_AUTH);
    /* its key was revoked at once */
    OK(km_key_open(&k, c, "leavers-key"));
    OK(km_key_info(&info, k));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_int_eq(vi.state, KM_STATE_DEACTIVATED);
    km_keyinfo_free(info);
    km_key_free(k);
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "principal.remove"), 1);
    km_close(a);
    km_close(c);
}
END_TEST

/* --------------------------------------------------------- dual control */

static const char dual_policy[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                                  "\"principal-change\": 2, \"policy-change\": 2}, "
                                  TU_TEST_CLOCK "}";

START_TEST(dual_control_destroy)
{
    km_ctx *c = owner(), *admin, *c1, *c2, *u;
    km_key *k, *ka = NULL;
    uint8_t id[16], params[8];
    km_request_status st;
    collected col;

    tu_principals_add(c);
    OK(km_policy_set(c, dual_policy, strlen(dual_policy)));
    admin = as(TU_ADMIN, "pa");
    c1 = as(TU_CUST1, "pc1");
    c2 = as(TU_CUST2, "pc2");
    u = as(TU_USER, "pu");
    k = mkkey(admin, "old", KM_KEY_AES_256_GCM);
    OK(km_key_rotate(k, NULL));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    /* without a request */
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "2 custodian approval"));
    /* a user may not even ask */
    params[0] = 0; params[1] = 0; params[2] = 0; params[3] = 1;
    params[4] = 0; params[5] = 0; params[6] = 0; params[7] = 7;
    ck_assert_int_eq(km_request_create(u, KM_REQ_DESTROY, "old", params, 8, 0, id), KM_E_DENIED);
    OK(km_request_create(admin, KM_REQ_DESTROY, "old", params, 8, 3600, id));
    /* approvals: not by the requester, not by a non-custodian, not twice */
    ck_assert_int_eq(km_request_approve(admin, id), KM_E_DENIED);
    ck_assert_int_eq(km_request_approve(u, id), KM_E_DENIED);
    OK(km_request_approve(c1, id));
    ck_assert_int_eq(km_request_approve(c1, id), KM_E_EXISTS);
    OK(km_request_info(admin, id, &st));
    ck_assert_uint_eq(st.approvals, 1);
    ck_assert_uint_eq(st.needed, 2);
    ck_assert_str_eq(st.key_name, "old");
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_DENIED);   /* one is not enough */
    OK(km_request_approve(c2, id));
    /* other arguments than requested: refused */
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 8), KM_E_DENIED);
    /* another principal cannot use alice's request */
    OK(km_key_open(&ka, c, "old"));
    ck_assert_int_eq(km_key_schedule_destroy(ka, 1, 7), KM_E_DENIED);
    km_key_free(ka);
    OK(km_key_schedule_destroy(k, 1, 7));
    /* a request serves once */
    OK(km_key_cancel_destroy(k, 1));
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_DENIED);
    ck_assert_int_eq(km_request_approve(c1, id), KM_E_STATE);
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "request.create"), 1);
    ck_assert_int_eq(count_op(&col, "request.approve"), 2);
    ck_assert_int_eq(count_op(&col, "request.execute"), 1);
    ck_assert_int_ge(count_op(&col, "denied"), 4);
    km_key_free(k);
    km_close(u);
    km_close(c2);
    km_close(c1);
    km_close(admin);
    km_close(c);
}
END_TEST

START_TEST(dual_control_expiry)
{
    km_ctx *c = owner(), *admin, *c1, *c2;
    km_key *k;
    uint8_t id[16], params[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };

    tu_principals_add(c);
    OK(km_policy_set(c, dual_policy, strlen(dual_policy)));
    admin = as(TU_ADMIN, "pa");
    c1 = as(TU_CUST1, "pc1");
    c2 = as(TU_CUST2, "pc2");
    k = mkkey(admin, "old", KM_KEY_AES_256_GCM);
    OK(km_key_rotate(k, NULL));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_request_create(admin, KM_REQ_DESTROY, "old", params, 8, 600, id));
    OK(km_request_approve(c1, id));
    tu_now += 601;
    ck_assert_int_eq(km_request_approve(c2, id), KM_E_STATE);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "expired"));
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 7), KM_E_DENIED);
    km_key_free(k);
    km_close(c2);
    km_close(c1);
    km_close(admin);
    km_close(c);
}
END_TEST


/* Principal and policy changes under dual control too; and an export. */
/* A raw import under dual control: the approved request names the exact
 * material, and is spent only by the import that stores the key (a failed
 * import, e.g. a name taken, leaves it for the next attempt). */
START_TEST(dual_control_import_raw)
{
    static const char pol[] = "{\"version\": 1, \"dual_control\": {\"import-raw\": 2, "
                              "\"principal-change\": 2, \"policy-change\": 2}}";
    km_ctx *c = owner(), *c1, *c2;
    km_key *k = NULL;
    uint8_t id[16], mat[32], other[32];
    km_request_status st;
    collected col;

    memset(mat, 0x5a, sizeof mat);
    memset(other, 0xa5, sizeof other);
    tu_principals_add(c);
    OK(km_policy_set(c, pol, strlen(pol)));
    c1 = as(TU_CUST1, "pc1");
    c2 = as(TU_CUST2, "pc2");
    k = mkkey(c, "taken", KM_KEY_AES_256_GCM);
    km_key_free(k);
    k = NULL;
    ck_assert_int_eq(km_key_import(&k, c, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, mat, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_DENIED);
    OK(km_request_create(c, KM_REQ_IMPORT_RAW, NULL, mat, sizeof mat, 0, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    /* other material than approved: refused */
    ck_assert_int_eq(km_key_import(&k, c, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, other, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_DENIED);
    /* the import fails (the name is taken): the request is not spent */
    ck_assert_int_eq(km_key_import(&k, c, "taken", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, mat, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_EXISTS);
    OK(km_request_info(c, id, &st));
    ck_assert_int_eq(st.consumed, 0);
    /* the import that stores the key spends it, once */
    OK(km_key_import(&k, c, "imp", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, mat, 32,
                     KM_IMPORT_ALLOW_RAW, NULL));
    km_key_free(k);
    k = NULL;
    OK(km_request_info(c, id, &st));
    ck_assert_int_eq(st.consumed, 1);
    ck_assert_int_eq(km_key_import(&k, c, "imp2", KM_KEY_AES_256_GCM, KM_MATERIAL_RAW, mat, 32,
                                   KM_IMPORT_ALLOW_RAW, NULL), KM_E_DENIED);
    memset(&col, 0, sizeof col);
    OK(km_audit_foreach(c, 1, collect, &col));
    ck_assert_int_eq(count_op(&col, "request.execute"), 1);
    ck_assert_int_eq(count_op(&col, "key.import"), 1);
    km_close(c2);
    km_close(c1);
    km_close(c);
}
END_TEST

START_TEST(dual_control_principal_policy_export)
{
    static const char pol[] = "{\"version\": 1, \"dual_control\": {\"principal-change\": 2, "
                              "\"policy-change\": 2, \"export\": 2}}";
    static const char pol2[] = "{\"version\": 1}";
    km_ctx *c = owner(), *c1, *c2;
    km_key *k = NULL, *w = NULL;
    uint8_t id[16], blob[512];
    size_t n = 0;
    km_key_options ko = KM_KEY_OPTIONS_INIT;

    tu_principals_add(c);
    OK(km_policy_set(c, pol, strlen(pol)));
    c1 = as(TU_CUST1, "pc1");
    c2 = as(TU_CUST2, "pc2");
    ck_assert_int_eq(km_principal_add(c, "newbie", KM_ROLE_USER, (const uint8_t *)"pn", 2,
                                      KM_KDF_COST_MIN), KM_E_DENIED);
    OK(km_request_create(c, KM_REQ_PRINCIPAL_CHANGE, NULL, (const uint8_t *)"add:newbie:user",
                         15, 0, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_principal_add(c, "newbie", KM_ROLE_USER, (const uint8_t *)"pn", 2, KM_KDF_COST_MIN));
    /* the policy change needs two approvals under the policy in force */
    ck_assert_int_eq(km_policy_set(c, pol2, strlen(pol2)), KM_E_DENIED);
    OK(km_request_create(c, KM_REQ_POLICY_CHANGE, NULL, (const uint8_t *)pol2, strlen(pol2), 0,
                         id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_policy_set(c, pol, strlen(pol)) == KM_E_DENIED ? KM_OK : KM_E_INTERNAL);
    OK(km_policy_set(c, pol2, strlen(pol2)));
    /* the export: back under dual control first (the policy itself is now free to change) */
    OK(km_policy_set(c, pol, strlen(pol)));
    ko.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, c, "movable", KM_KEY_AES_256_GCM, &ko));
    OK(km_key_create(&w, c, "kek", KM_KEY_AES_256_KWP, NULL));
    ck_assert_int_eq(km_key_export_wrapped(k, 0, KM_WRAP_KWP, w, NULL, 0, blob, sizeof blob, &n),
                     KM_E_DENIED);
    ck_assert(tu_all_zero(blob, sizeof blob));   /* nothing handed out */
    OK(km_request_create(c, KM_REQ_EXPORT, "movable", km_key_id(w), 16, 0, id));
    OK(km_request_approve(c1, id));
    OK(km_request_approve(c2, id));
    OK(km_key_export_wrapped(k, 0, KM_WRAP_KWP, w, NULL, 0, blob, sizeof blob, &n));
    ck_assert_int_eq(km_key_export_wrapped(k, 0, KM_WRAP_KWP, w, NULL, 0, blob, sizeof blob, &n),
                     KM_E_DENIED);
    km_key_free(k);
    km_key_free(w);
    km_close(c2);
    km_close(c1);
    km_close(c);
}
END_TEST

/* ------------------------------------------------------------ monitoring */

typedef struct alerts_seen {
    int denied, auth, compromised, other;
} alerts_seen;

static int on_alert(const km_audit_entry *e, const char *why, void *arg)
{
    alerts_seen *a = arg;
    (void)e;
    if (strstr(why, "outside its grants") != NULL)
        a->denied++;
    else if (strstr(why, "repeated failed authentications") != NULL)
        a->auth++;
    else if (strstr(why, "compromised") != NULL)
        a->compromised++;
    else
        a->other++;
    return 0;
}

START_TEST(monitoring_alerts)
{
    km_ctx *c = owner(), *u;
    km_key *k = mkkey(c, "k", KM_KEY_AES_256_GCM), *ku = NULL;
    uint8_t ct[128], pt[16];
    size_t len, n;
    alerts_seen a;
    int i;

    OK(km_principal_add(c, TU_USER, KM_ROLE_USER, (const uint8_t *)"pu", 2, KM_KDF_COST_MIN));
    OK(km_encrypt(k, (const uint8_t *)"secret", 6, NULL, 0, ct, sizeof ct, &len));
    OK(km_key_rotate(k, NULL));
    OK(km_key_revoke(k, 1, KM_REVOKE_KEY_COMPROMISE, tu_now - 10));
    km_key_free(k);
    km_close(c);
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(open_as(&c, NULL, "guess", 0), KM_E_AUTH);
    u = as(TU_USER, "pu");
    OK(km_key_open(&ku, u, "k"));
    ck_assert_int_eq(km_encrypt(ku, (const uint8_t *)"m", 1, NULL, 0, ct + 64, 64, &n),
                     KM_E_DENIED);
    km_key_free(ku);
    km_close(u);
    c = owner();
    /* a compromised version decrypts only when asked, and is always audited */
    ck_assert_int_eq(km_decrypt(c, 0, ct, len, NULL, 0, pt, sizeof pt, &n), KM_E_STATE);
    OK(km_decrypt(c, KM_DECRYPT_ALLOW_COMPROMISED, ct, len, NULL, 0, pt, sizeof pt, &n));
    memset(&a, 0, sizeof a);
    OK(km_audit_alerts(c, 1, on_alert, &a));
    ck_assert_int_eq(a.denied, 1);
    ck_assert_int_eq(a.auth, 1);
    ck_assert_int_eq(a.compromised, 1);
    km_close(c);
}
END_TEST

/* Issue 18 finding 7: the catalog check of km_audit_verify (every entry
 * lists the records it wrote) passes after every kind of change, the
 * upgrade's checkpoint and the rekey's included, in this and a new context. */
START_TEST(audit_catalog_explained_after_every_change)
{
    km_ctx *c = owner(), *c2 = NULL;
    km_key *k = mkkey(c, "every", KM_KEY_AES_256_GCM), *k2 = mkkey(c, "gone", KM_KEY_AES_256_GCM);
    km_maintain_report *rep = NULL;

    OK(km_audit_verify(c, NULL, NULL, NULL));
    OK(km_key_rotate(k, NULL));
    OK(tu_principal_add(c, "pat", KM_ROLE_USER, "pat passphrase"));
    OK(km_key_grant(k, "pat", KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    OK(km_key_grant(k, "pat", KM_PERM_ENCRYPT));
    OK(km_audit_verify(c, NULL, NULL, NULL));
    OK(km_key_grant(k, "pat", 0));
    OK(km_key_suspend(k, 1));
    OK(km_key_resume(k, 1));
    OK(km_key_revoke(k, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_set_description(k, "every kind of change"));
    OK(km_key_set_tag(k, "team", "audit"));
    OK(km_policy_set(c, "{\"version\": 1}", 14));
    OK(km_audit_verify(c, NULL, NULL, NULL));
    OK(km_key_revoke(k2, 1, KM_REVOKE_SUPERSEDED, 0));
    OK(km_key_schedule_destroy(k2, 1, 7));
    tu_now += 8 * 86400;
    OK(km_maintain(c, &rep));
    km_maintain_report_free(rep);
    OK(km_audit_verify(c, NULL, NULL, NULL));
    OK(km_principal_remove(c, "pat", 0));
    OK(km_vault_rekey(c, (const uint8_t *)TU_PASS, strlen(TU_PASS), KM_KDF_COST_MIN));
    OK(km_key_rotate(k, NULL));
    OK(km_audit_verify(c, NULL, NULL, NULL));
    OK(km_vault_compact(c));
    OK(km_audit_verify(c, NULL, NULL, NULL));
    km_key_free(k2);
    km_key_free(k);
    km_close(c);
    OK(open_as(&c2, NULL, TU_PASS, 0));
    OK(km_audit_verify(c2, NULL, NULL, NULL));
    km_close(c2);
}
END_TEST

static Suite *suite(void)
{
    TCase *t;
    Suite *s = tu_suite("audit", NULL, &t, 120, setup, teardown);

    tcase_add_test(t, audit_records_state_changes);
    tcase_add_test(t, audit_tamper_edit);
    tcase_add_test(t, audit_tamper_delete);
    tcase_add_test(t, audit_tamper_reorder);
    tcase_add_test(t, audit_tamper_insert);
    tcase_add_test(t, audit_tamper_truncate_with_anchor);
    tcase_add_test(t, audit_chain_survives_rekey);
    tcase_add_test(t, audit_data_levels_and_sink);
    tcase_add_test(t, audit_every_keeps_call_order);
    tcase_add_test(t, audit_sink_fails_closed);
    tcase_add_test(t, audit_failed_auth_reported);
    tcase_add_test(t, audit_crash_atomicity);
    t = tu_tcase(s, "keyslots", 120, setup, teardown);
    tcase_add_test(t, shamir_3_of_5_every_subset);
    tcase_add_test(t, shamir_altered_share_named);
    tcase_add_test(t, shamir_only_slot_left);
    tcase_add_test(t, backend_slot_dispatch);
    tcase_add_test(t, principal_slots_prove_credentials);
    t = tu_tcase(s, "access", 120, setup, teardown);
    tcase_add_test(t, role_operation_matrix);
    tcase_add_test(t, offboarding);
    tcase_add_test(t, dual_control_destroy);
    tcase_add_test(t, dual_control_expiry);
    tcase_add_test(t, dual_control_import_raw);
    tcase_add_test(t, monitoring_alerts);
    tcase_add_test(t, dual_control_principal_policy_export);
    tcase_add_test(t, audit_catalog_explained_after_every_change);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
