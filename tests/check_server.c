/* check_server.c - km_ctx_delegate (km/sys/server.h): a server's context
 * acting as a principal, without its credential. The delegated principal is
 * held to its roles and grants, a removed principal is refused on its next
 * call, who may delegate, and the audit entries name principal and peer. Each
 * test runs on a fresh vault holding the five principals of testutil.h,
 * opened by the owner (the server). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <km.h>
#include <km/sys/server.h>

#include "testutil.h"

static char *dir;
static km_ctx *srv;

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    tu_setup(&dir, &srv, &o);
    tu_principals_add(srv);
}

static void teardown(void)
{
    tu_teardown(&dir, &srv);
}

static const uint8_t msg[] = "a message";

static int encrypt_with(km_ctx *c, const char *name, uint8_t *ct, size_t cap, size_t *n)
{
    km_key *k = NULL;
    int rc = km_key_open(&k, c, name);
    if (rc == KM_OK)
        rc = km_encrypt(k, msg, sizeof msg, NULL, 0, ct, cap, n);
    km_key_free(k);
    return rc;
}

static km_ctx *delegate(const char *who, const char *peer)
{
    km_ctx *c = NULL;
    OK(km_ctx_delegate(srv, who, peer, &c));
    ck_assert_ptr_nonnull(c);
    return c;
}

/* The delegated user is who it says, with only its roles, and reaches a key
 * only through a grant; the auditor cannot destroy; an admin cannot encrypt
 * with a key it holds no grant on. */
START_TEST(test_delegate_limited_by_roles_and_grants)
{
    km_ctx *user, *aud;
    km_key *k = NULL, *ka = NULL;
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD], pt[sizeof msg];
    size_t n = 0, m = 0;
    char name[80];
    uint32_t roles = 0;

    OK(km_key_create(&k, srv, "orders", KM_KEY_AES_256_GCM, NULL));
    user = delegate(TU_USER, "uid:1000");
    aud = delegate(TU_AUDITOR, "uid:1001");
    OK(km_whoami(user, name, sizeof name, &roles));
    ck_assert_str_eq(name, TU_USER);
    ck_assert_uint_eq(roles, KM_ROLE_USER);

    /* no grant: refused, then granted encrypt only */
    ck_assert_int_eq(encrypt_with(user, "orders", ct, sizeof ct, &n), KM_E_DENIED);
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    OK(encrypt_with(user, "orders", ct, sizeof ct, &n));
    ck_assert_int_eq(km_decrypt(user, 0, ct, n, NULL, 0, pt, sizeof pt, &m), KM_E_DENIED);
    OK(km_decrypt(srv, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert_mem_eq(pt, msg, sizeof msg);

    /* the auditor reads the log but may not destroy nor use the key */
    OK(km_audit_verify(aud, NULL, NULL, NULL));
    OK(km_key_open(&ka, aud, "orders"));
    ck_assert_int_eq(km_key_schedule_destroy(ka, 1, 30), KM_E_DENIED);
    ck_assert_int_eq(km_encrypt(ka, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n), KM_E_DENIED);
    km_key_free(ka);
    /* a user may not add principals */
    ck_assert_int_eq(tu_principal_add(user, "mallory", KM_ROLE_ADMIN, "pm"), KM_E_DENIED);
    km_key_free(k);
    km_close(user);
    km_close(aud);
}
END_TEST

/* A key the delegated admin creates is owned by that principal (every
 * right on it, where it would need a grant otherwise); a user has none. */
START_TEST(test_delegate_creates_owned_keys)
{
    km_ctx *adm, *user;
    km_key *k = NULL;
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;
    uint32_t p = 0;

    adm = delegate(TU_ADMIN, "uid:1000");
    user = delegate(TU_USER, "uid:1002");
    OK(km_key_create(&k, adm, "mine", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_perms(k, &p));
    ck_assert_uint_eq(p, KM_PERM_ALL);
    OK(encrypt_with(adm, "mine", ct, sizeof ct, &n));
    ck_assert_int_eq(encrypt_with(user, "mine", ct, sizeof ct, &n), KM_E_DENIED);
    km_key_free(k);
    km_close(adm);
    km_close(user);
}
END_TEST

/* A principal removed while its delegated context is open is refused on its
 * very next call, with a denial in the log; delegating to it again fails. */
START_TEST(test_delegate_removed_principal_refused)
{
    km_ctx *user, *again = (km_ctx *)1;
    km_key *k = NULL, *ku = NULL;
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;

    OK(km_key_create(&k, srv, "orders", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    user = delegate(TU_USER, "uid:1000");
    OK(km_key_open(&ku, user, "orders"));
    OK(km_encrypt(ku, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n));
    OK(km_principal_remove(srv, TU_USER, 0));
    /* the handle opened before the removal: its next call is refused */
    ck_assert_int_eq(km_encrypt(ku, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n), KM_E_DENIED);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "removed"));
    ck_assert_int_eq(encrypt_with(user, "orders", ct, sizeof ct, &n), KM_E_DENIED);
    ck_assert_int_eq(km_ctx_delegate(srv, TU_USER, "uid:1000", &again), KM_E_AUTH);
    ck_assert_ptr_null(again);
    /* re-adding a principal of the same name is a new principal: the old
     * delegated context (the removed id) stays refused */
    OK(tu_principal_add(srv, TU_USER, KM_ROLE_USER, "new"));
    ck_assert_int_eq(km_encrypt(ku, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n), KM_E_DENIED);
    km_key_free(ku);
    km_key_free(k);
    km_close(user);
}
END_TEST

typedef struct seen {
    int create_by_peer, denied_by_peer, other;
} seen;

static int scan(const km_audit_entry *e, void *arg)
{
    seen *s = arg;
    if (strcmp(e->principal, TU_ADMIN " via uid:1000") == 0) {
        if (strcmp(e->op, "key.create") == 0)
            s->create_by_peer++;
        else if (strcmp(e->op, "denied") == 0)
            s->denied_by_peer++;
    } else if (strstr(e->principal, "via") != NULL) {
        s->other++;
    }
    return 0;
}

/* Entries written through the delegated context name the principal and the
 * peer ("alice-admin via uid:1000"), also in the JSON form and the file sink;
 * entries of the server's own context do not; the log verifies. */
START_TEST(test_delegate_audit_names_principal_and_peer)
{
    km_ctx *user, *aud;
    km_key *k = NULL;
    seen s;
    char path[512], line[2048];
    uint8_t *file;
    size_t len;

    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
    OK(km_audit_sink_file(srv, path));
    user = delegate(TU_ADMIN, "uid:1000");
    OK(km_key_create(&k, user, "mine", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    aud = delegate(TU_AUDITOR, "tls:CN=otto");
    OK(km_key_open(&k, aud, "mine"));
    ck_assert_int_eq(km_key_schedule_destroy(k, 1, 30), KM_E_DENIED);
    km_key_free(k);
    ck_assert_int_eq(km_key_create(&k, user, "km:reserved", KM_KEY_AES_256_GCM, NULL),
                     KM_E_INVALID);
    memset(&s, 0, sizeof s);
    OK(km_audit_foreach(srv, 1, scan, &s));
    ck_assert_int_eq(s.create_by_peer, 1);
    ck_assert_int_eq(s.other, 1);    /* the auditor's denial, via its TLS peer */
    OK(km_audit_verify(srv, NULL, NULL, NULL));
    /* the sink the server set is the delegated contexts' too */
    file = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(file);
    snprintf(line, sizeof line, "\"principal\":\"%s via uid:1000\",\"op\":\"key.create\"",
             TU_ADMIN);
    ck_assert(tu_memmem(file, len, (const uint8_t *)line, strlen(line)));
    snprintf(line, sizeof line, "\"principal\":\"%s via tls:CN=otto\",\"op\":\"denied\"",
             TU_AUDITOR);
    ck_assert(tu_memmem(file, len, (const uint8_t *)line, strlen(line)));
    free(file);
    km_close(user);
    km_close(aud);
}
END_TEST

/* Only a context holding every right may delegate: not a principal's (even
 * an admin's), not a delegated one; bad arguments are refused; rekey and
 * compaction are not for a delegated context. */
START_TEST(test_delegate_who_may)
{
    km_ctx *adm = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS), *c = (km_ctx *)1, *d;
    char longpeer[KM_PEER_MAX + 2];

    ck_assert_int_eq(km_ctx_delegate(adm, TU_USER, "uid:1", &c), KM_E_DENIED);
    ck_assert_ptr_null(c);
    d = delegate(TU_ADMIN, "uid:0");
    ck_assert_int_eq(km_ctx_delegate(d, TU_USER, "uid:1", &c), KM_E_DENIED);
    ck_assert_int_eq(km_vault_rekey(d, (const uint8_t *)"x", 1, KM_KDF_COST_MIN),
                     KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_vault_compact(d), KM_E_UNSUPPORTED);
    ck_assert_int_eq(km_ctx_delegate(srv, "nobody", "uid:1", &c), KM_E_AUTH);
    ck_assert_int_eq(km_ctx_delegate(srv, TU_USER, "", &c), KM_E_INVALID);
    ck_assert_int_eq(km_ctx_delegate(srv, TU_USER, "uid:1\n", &c), KM_E_INVALID);
    memset(longpeer, 'a', sizeof longpeer - 1);
    longpeer[sizeof longpeer - 1] = '\0';
    ck_assert_int_eq(km_ctx_delegate(srv, TU_USER, longpeer, &c), KM_E_INVALID);
    ck_assert_int_eq(km_ctx_delegate(srv, NULL, "uid:1", &c), KM_E_INVALID);
    ck_assert_int_eq(km_ctx_delegate(NULL, TU_USER, "uid:1", &c), KM_E_INVALID);
    km_close(d);
    km_close(adm);
}
END_TEST

/* A delegated context outlives the server's: each holds the store. */
START_TEST(test_delegate_outlives_server)
{
    km_ctx *adm = delegate(TU_ADMIN, "uid:0");
    km_key *k = NULL;
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;

    km_close(srv);
    srv = NULL;
    OK(km_key_create(&k, adm, "late", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_ENCRYPT));
    km_key_free(k);
    OK(encrypt_with(adm, "late", ct, sizeof ct, &n));
    km_close(adm);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("server", NULL, &tc, 30, setup, teardown);
    tcase_add_test(tc, test_delegate_limited_by_roles_and_grants);
    tcase_add_test(tc, test_delegate_creates_owned_keys);
    tcase_add_test(tc, test_delegate_removed_principal_refused);
    tcase_add_test(tc, test_delegate_audit_names_principal_and_peer);
    tcase_add_test(tc, test_delegate_who_may);
    tcase_add_test(tc, test_delegate_outlives_server);
    return tu_run(s);
}
