/* check_acl.c - access control through the public API (km/acl.h): who may do
 * what by role, grants to principals and to roles, denials (KM_E_DENIED naming
 * the permission, audited), principals added, listed and removed. Each test
 * runs on a fresh vault holding the five principals of testutil.h (admin, two
 * custodians, user, auditor), opened by the owner. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <km.h>

#include "testutil.h"

static char *dir;
static km_ctx *owner;       /* the vault's owner: every right */

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    o.clock = tu_clock;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
}

static void teardown(void)
{
    tu_teardown(&dir, &owner);
}

static const uint8_t msg[] = "a message";

/* The four principals, one per role, and their passphrases. */
static const char *const who[4] = { TU_ADMIN, TU_CUST1, TU_USER, TU_AUDITOR };
static const char *const pass[4] = { TU_ADMIN_PASS, TU_CUST1_PASS, TU_USER_PASS,
                                     TU_AUDITOR_PASS };

/* Encrypts `msg` with `k`; returns the km rc. */
static int try_encrypt(km_key *k)
{
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD];
    size_t n = 0;
    return km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n);
}

/* Opens key `name` in `c` and encrypts with it; returns the km rc of the encryption. */
static int encrypt_as(km_ctx *c, const char *name)
{
    km_key *k = NULL;
    int rc;
    OK(km_key_open(&k, c, name));
    rc = try_encrypt(k);
    km_key_free(k);
    return rc;
}

/* A key `name` made by the owner. */
static km_key *owner_key(const char *name)
{
    km_key *k = NULL;
    OK(km_key_create(&k, owner, name, KM_KEY_AES_256_GCM, NULL));
    return k;
}

/* The permissions the principal of `c` has on key `name`. */
static uint32_t perms_of(km_ctx *c, const char *name)
{
    km_key *k = NULL;
    uint32_t p = 0xdeadbeef;
    OK(km_key_open(&k, c, name));
    OK(km_key_perms(k, &p));
    km_key_free(k);
    return p;
}

/* ----------------------------------------------------------- audit */

typedef struct denials {
    const char *principal;   /* count only this principal's denials */
    int n;
    char detail[256];        /* the last one's detail */
} denials;

static int count_denied(const km_audit_entry *e, void *arg)
{
    denials *d = arg;
    if (strcmp(e->op, "denied") == 0 && strcmp(e->principal, d->principal) == 0) {
        ck_assert_int_eq(e->result, KM_E_DENIED);
        d->n++;
        snprintf(d->detail, sizeof d->detail, "%s", e->detail);
    }
    return 0;
}

static int denials_of(const char *principal, char *detail, size_t cap)
{
    denials d;
    memset(&d, 0, sizeof d);
    d.principal = principal;
    OK(km_audit_foreach(owner, 1, count_denied, &d));
    if (detail != NULL)
        snprintf(detail, cap, "%s", d.detail);
    return d.n;
}

/* ----------------------------------------------------------- roles */

/* The owner holds every role and every permission on every key. */
START_TEST(test_acl_owner_has_every_right)
{
    char name[80];
    uint32_t roles = 0;
    km_key *k = owner_key("k");

    OK(km_whoami(owner, name, sizeof name, &roles));
    ck_assert_str_eq(name, "owner");
    ck_assert_uint_eq(roles, KM_ROLE_ADMIN | KM_ROLE_CUSTODIAN | KM_ROLE_USER | KM_ROLE_AUDITOR);
    ck_assert_uint_eq(perms_of(owner, "k"), KM_PERM_ALL | KM_PERM_AGREE_RAW);
    OK(try_encrypt(k));
    km_key_free(k);
}
END_TEST

/* A principal opens with its own passphrase and is who it says, with its roles. */
START_TEST(test_acl_principal_roles_by_whoami)
{
    static const struct {
        const char *name, *pass;
        uint32_t roles;
    } p[] = {
        { TU_ADMIN, TU_ADMIN_PASS, KM_ROLE_ADMIN },
        { TU_CUST1, TU_CUST1_PASS, KM_ROLE_CUSTODIAN },
        { TU_USER, TU_USER_PASS, KM_ROLE_USER },
        { TU_AUDITOR, TU_AUDITOR_PASS, KM_ROLE_AUDITOR },
    };
    size_t i;

    for (i = 0; i < sizeof p / sizeof p[0]; i++) {
        km_ctx *c = tu_as(dir, p[i].name, p[i].pass);
        char name[80];
        uint32_t roles = 0;
        OK(km_whoami(c, name, sizeof name, &roles));
        ck_assert_str_eq(name, p[i].name);
        ck_assert_uint_eq(roles, p[i].roles);
        km_close(c);
    }
}
END_TEST

/* Only the principal's own passphrase opens as it; a principal's passphrase
 * is not an owner passphrase. */
START_TEST(test_acl_principal_credential_required)
{
    km_ctx *c = NULL;

    RC(KM_E_AUTH, tu_vault_open_as(&c, dir, TU_USER, TU_ADMIN_PASS, 0));
    RC(KM_E_AUTH, tu_vault_open_as(&c, dir, TU_USER, TU_PASS, 0));
    RC(KM_E_AUTH, tu_vault_open_as(&c, dir, "nobody", TU_USER_PASS, 0));
    RC(KM_E_AUTH, tu_vault_open_as(&c, dir, NULL, TU_USER_PASS, 0));
    ck_assert_ptr_null(c);
    OK(tu_vault_open_as(&c, dir, TU_USER, TU_USER_PASS, 0));
    km_close(c);
}
END_TEST

/* The admin role administers: creates keys, sets the policy, adds principals
 * and grants; no other role may. */
START_TEST(test_acl_admin_role_administers)
{
    static const char pol[] = "{\"version\": 1}";
    km_key *shared = owner_key("shared");
    int i;

    km_key_free(shared);
    for (i = 0; i < 4; i++) {
        km_ctx *c = tu_as(dir, who[i], pass[i]);
        int want = i == 0 ? KM_OK : KM_E_DENIED;
        char kname[32], pname[32];
        km_key *k = NULL;

        snprintf(kname, sizeof kname, "made-by-%d", i);
        snprintf(pname, sizeof pname, "new-%d", i);
        RC(want, km_key_create(&k, c, kname, KM_KEY_AES_256_GCM, NULL));
        km_key_free(k);
        k = NULL;
        RC(want, km_policy_set(c, pol, sizeof pol - 1));
        RC(want, tu_principal_add(c, pname, KM_ROLE_USER, "pn"));
        OK(km_key_open(&k, c, "shared"));      /* metadata: everyone */
        RC(want, km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
        RC(want, km_key_rotate(k, NULL));
        km_key_free(k);
        km_close(c);
    }
}
END_TEST

/* Every principal may read metadata and list the principals. */
START_TEST(test_acl_everyone_reads_metadata)
{
    km_key *k = owner_key("k");
    int i;

    km_key_free(k);
    for (i = 0; i < 4; i++) {
        km_ctx *c = tu_as(dir, who[i], pass[i]);
        km_keyinfo *info = NULL;
        k = NULL;
        OK(km_key_open(&k, c, "k"));
        OK(km_key_info(&info, k));
        km_keyinfo_free(info);
        km_key_free(k);
        km_close(c);
    }
}
END_TEST

/* The auditor role reads the audit log; a user or custodian may not. */
START_TEST(test_acl_audit_log_needs_auditor_or_admin)
{
    static const int ok[4] = { 1, 0, 0, 1 };
    int i;

    for (i = 0; i < 4; i++) {
        km_ctx *c = tu_as(dir, who[i], pass[i]);
        RC(ok[i] ? KM_OK : KM_E_DENIED, km_audit_verify(c, NULL, NULL, NULL));
        km_close(c);
    }
}
END_TEST

/* ---------------------------------------------------------- grants */

/* A user without a grant is refused crypto on a key, with the permission
 * named and the refusal audited; a grant opens exactly what it names. */
START_TEST(test_acl_user_needs_a_grant)
{
    km_key *k = owner_key("k");
    km_ctx *u = tu_as(dir, TU_USER, TU_USER_PASS);
    uint8_t ct[sizeof msg + KM_CIPHERTEXT_OVERHEAD], pt[sizeof msg];
    size_t n = 0, m = 0;
    char detail[256];

    ck_assert_uint_eq(perms_of(u, "k"), 0);
    RC(KM_E_DENIED, encrypt_as(u, "k"));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "encrypt"));
    ck_assert_int_ge(denials_of(TU_USER, detail, sizeof detail), 1);
    ck_assert_ptr_nonnull(strstr(detail, "encrypt"));
    km_close(u);

    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    ck_assert_uint_eq(perms_of(u, "k"), KM_PERM_ENCRYPT);
    OK(encrypt_as(u, "k"));
    /* encrypt does not give decrypt */
    OK(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &n));
    memset(pt, 0, sizeof pt);
    RC(KM_E_DENIED, km_decrypt(u, 0, ct, n, NULL, 0, pt, sizeof pt, &m));
    ck_assert(tu_all_zero(pt, sizeof pt));
    km_close(u);
    km_key_free(k);
}
END_TEST

/* A later grant to the same grantee replaces the earlier one; perms 0
 * removes it. */
START_TEST(test_acl_grant_replaced_then_removed)
{
    km_key *k = owner_key("k");
    km_ctx *u;

    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    ck_assert_uint_eq(perms_of(u, "k"), KM_PERM_ENCRYPT | KM_PERM_DECRYPT);
    km_close(u);
    OK(km_key_grant(k, TU_USER, KM_PERM_DECRYPT));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    ck_assert_uint_eq(perms_of(u, "k"), KM_PERM_DECRYPT);
    RC(KM_E_DENIED, encrypt_as(u, "k"));
    km_close(u);
    OK(km_key_grant(k, TU_USER, 0));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    ck_assert_uint_eq(perms_of(u, "k"), 0);
    km_close(u);
    km_key_free(k);
}
END_TEST

/* A revoked grant stops a handle that is already open (strict refresh). */
START_TEST(test_acl_revoked_grant_stops_open_handle)
{
    km_key *k = owner_key("k"), *uk = NULL;
    km_ctx *u = NULL;

    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    OK(tu_vault_open_as(&u, dir, TU_USER, TU_USER_PASS, KM_OPEN_STRICT_REFRESH));
    OK(km_key_open(&uk, u, "k"));
    OK(try_encrypt(uk));
    OK(km_key_grant(k, TU_USER, 0));
    RC(KM_E_DENIED, try_encrypt(uk));
    km_key_free(uk);
    km_close(u);
    km_key_free(k);
}
END_TEST

/* A grant to a role reaches every holder of that role, and no one else. */
START_TEST(test_acl_role_grant_reaches_role_holders)
{
    km_key *k = owner_key("k");
    km_ctx *u, *u2, *c1;

    OK(tu_principal_add(owner, "ursula-user", KM_ROLE_USER, "pu2"));
    OK(km_key_grant(k, "role:user", KM_PERM_ENCRYPT));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    u2 = tu_as(dir, "ursula-user", "pu2");
    c1 = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    OK(encrypt_as(u, "k"));
    OK(encrypt_as(u2, "k"));
    RC(KM_E_DENIED, encrypt_as(c1, "k"));
    km_close(c1);
    km_close(u2);
    km_close(u);
    km_key_free(k);
}
END_TEST

/* Grants to an unknown principal or role are refused. */
START_TEST(test_acl_grant_to_unknown_refused)
{
    km_key *k = owner_key("k");

    RC(KM_E_NOTFOUND, km_key_grant(k, "nobody", KM_PERM_ENCRYPT));
    RC(KM_E_INVALID, km_key_grant(k, "role:wizard", KM_PERM_ENCRYPT));
    RC(KM_E_INVALID, km_key_grant(k, TU_USER, (KM_PERM_ALL | KM_PERM_AGREE_RAW) + 1));
    km_key_free(k);
}
END_TEST

/* An auditor never gets key material or a crypto operation, even granted. */
START_TEST(test_acl_auditor_denied_crypto_even_granted)
{
    km_key *k = owner_key("k");
    km_ctx *a;

    OK(km_key_grant(k, TU_AUDITOR, KM_PERM_ALL));
    a = tu_as(dir, TU_AUDITOR, TU_AUDITOR_PASS);
    RC(KM_E_DENIED, encrypt_as(a, "k"));
    km_close(a);
    km_key_free(k);
}
END_TEST

/* A principal has every permission on a key it made; others do not. */
START_TEST(test_acl_key_creator_owns_its_key)
{
    km_ctx *a = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS), *u;
    km_key *k = NULL;

    OK(km_key_create(&k, a, "admins", KM_KEY_AES_256_GCM, NULL));
    km_key_free(k);
    ck_assert_uint_eq(perms_of(a, "admins"), KM_PERM_ALL);
    OK(encrypt_as(a, "admins"));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    ck_assert_uint_eq(perms_of(u, "admins"), 0);
    RC(KM_E_DENIED, encrypt_as(u, "admins"));
    km_close(u);
    km_close(a);
}
END_TEST

/* ------------------------------------------------------ principals */

static int count_principal(const char *name, uint32_t roles, int64_t created, void *arg)
{
    uint32_t *seen = arg;
    (void)created;
    if (strcmp(name, TU_ADMIN) == 0 && roles == KM_ROLE_ADMIN)
        seen[0]++;
    else if (strcmp(name, TU_USER) == 0 && roles == KM_ROLE_USER)
        seen[1]++;
    seen[2]++;
    return 0;
}

/* Principals are listed with their roles, by any principal. */
/* Wrapping under a KEK is encrypting with it and unwrapping is decrypting:
 * the export right on a key does not let a principal wrap it under a KEK it
 * has no right on, nor does the import role let one unwrap under it (the
 * grant on the KEK decides, as kmd's Get wrapped does). */
START_TEST(test_acl_wrap_needs_rights_on_kek)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *d = NULL, *kek = NULL, *ud = NULL, *uk = NULL, *x = NULL;
    km_ctx *u, *a;
    uint8_t blob[256];
    size_t n = 0;

    o.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&d, owner, "data", KM_KEY_AES_256_GCM, &o));
    OK(km_key_create(&kek, owner, "kek", KM_KEY_AES_256_KWP, NULL));
    OK(km_key_grant(d, TU_USER, KM_PERM_EXPORT));

    u = tu_as(dir, TU_USER, TU_USER_PASS);
    OK(km_key_open(&ud, u, "data"));
    OK(km_key_open(&uk, u, "kek"));
    memset(blob, 0xa5, sizeof blob);
    RC(KM_E_DENIED, km_key_export_wrapped(ud, 0, KM_WRAP_KWP, uk, NULL, 0, blob, sizeof blob, &n));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "encrypt"));
    ck_assert(tu_all_zero(blob, sizeof blob));
    ck_assert_uint_eq(n, 0);
    ck_assert_int_ge(denials_of(TU_USER, NULL, 0), 1);
    km_key_free(ud);
    km_key_free(uk);
    km_close(u);

    OK(km_key_grant(kek, TU_USER, KM_PERM_ENCRYPT));
    u = tu_as(dir, TU_USER, TU_USER_PASS);
    OK(km_key_open(&ud, u, "data"));
    OK(km_key_open(&uk, u, "kek"));
    OK(km_key_export_wrapped(ud, 0, KM_WRAP_KWP, uk, NULL, 0, blob, sizeof blob, &n));
    km_key_free(ud);
    km_key_free(uk);
    km_close(u);

    /* the admin may import, but not unwrap under a KEK it has no decrypt right on */
    a = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    RC(KM_E_DENIED, km_key_import_wrapped(&x, a, "copy", KM_KEY_AES_256_GCM, KM_WRAP_KWP, blob, n,
                                          NULL));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "decrypt"));
    ck_assert_ptr_null(x);
    km_close(a);
    OK(km_key_grant(kek, TU_ADMIN, KM_PERM_DECRYPT));
    a = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_import_wrapped(&x, a, "copy", KM_KEY_AES_256_GCM, KM_WRAP_KWP, blob, n, NULL));
    km_key_free(x);
    km_close(a);
    km_key_free(d);
    km_key_free(kek);
}
END_TEST

START_TEST(test_acl_principal_list)
{
    uint32_t seen[3] = { 0, 0, 0 };
    km_ctx *u = tu_as(dir, TU_USER, TU_USER_PASS);

    OK(km_principal_list(u, count_principal, seen));
    ck_assert_uint_eq(seen[0], 1);
    ck_assert_uint_eq(seen[1], 1);
    ck_assert_uint_eq(seen[2], 5);
    km_close(u);
}
END_TEST

/* Adding a principal checks its name, roles and passphrase. */
START_TEST(test_acl_principal_add_checks_arguments)
{
    char long_name[66];

    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    RC(KM_E_EXISTS, tu_principal_add(owner, TU_USER, KM_ROLE_USER, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, "owner", KM_ROLE_USER, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, "p2", 0, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, "p2", 0x100, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, "p2", KM_ROLE_USER, ""));
    RC(KM_E_INVALID, tu_principal_add(owner, "has space", KM_ROLE_USER, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, "", KM_ROLE_USER, "x"));
    RC(KM_E_INVALID, tu_principal_add(owner, long_name, KM_ROLE_USER, "x"));
    long_name[64] = '\0';
    OK(tu_principal_add(owner, long_name, KM_ROLE_USER, "x"));   /* 64 bytes: the longest */
}
END_TEST

/* Removing a principal: its keyslot, record and grants go; its keys pass to
 * the owner and, with revoke_owned, are deactivated. */
START_TEST(test_acl_principal_remove_offboards)
{
    km_ctx *a = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS), *l = NULL;
    km_key *k = owner_key("granted"), *lk = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;

    OK(tu_principal_add(a, "leaver", KM_ROLE_ADMIN | KM_ROLE_USER, "pl"));
    OK(km_key_grant(k, "leaver", KM_PERM_ENCRYPT));
    l = tu_as(dir, "leaver", "pl");
    OK(km_key_create(&lk, l, "leavers-key", KM_KEY_AES_256_GCM, NULL));
    km_key_free(lk);
    lk = NULL;
    RC(KM_E_STATE, km_principal_remove(l, "leaver", 1));       /* not itself */
    km_close(l);
    l = NULL;
    OK(km_principal_remove(a, "leaver", 1));
    RC(KM_E_NOTFOUND, km_principal_remove(a, "leaver", 1));
    RC(KM_E_AUTH, tu_vault_open_as(&l, dir, "leaver", "pl", 0));
    /* its key is the owner's now, and deactivated */
    ck_assert_uint_eq(perms_of(owner, "leavers-key"), KM_PERM_ALL | KM_PERM_AGREE_RAW);
    OK(km_key_open(&lk, owner, "leavers-key"));
    OK(km_key_info(&info, lk));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_int_eq(vi.state, KM_STATE_DEACTIVATED);
    km_keyinfo_free(info);
    km_key_free(lk);
    /* its grant went with it: the same name added again has none */
    OK(tu_principal_add(a, "leaver", KM_ROLE_USER, "pl2"));
    l = tu_as(dir, "leaver", "pl2");
    ck_assert_uint_eq(perms_of(l, "granted"), 0);
    RC(KM_E_DENIED, encrypt_as(l, "granted"));
    km_close(l);
    km_key_free(k);
    km_close(a);
}
END_TEST

/* Without revoke_owned the removed principal's keys stay usable, by the owner. */
START_TEST(test_acl_principal_remove_keeps_keys_without_revoke)
{
    km_ctx *l;
    km_key *lk = NULL;
    km_keyinfo *info = NULL;
    km_version_info vi;

    OK(tu_principal_add(owner, "leaver", KM_ROLE_ADMIN, "pl"));
    l = tu_as(dir, "leaver", "pl");
    OK(km_key_create(&lk, l, "kept", KM_KEY_AES_256_GCM, NULL));
    km_key_free(lk);
    lk = NULL;
    km_close(l);
    OK(km_principal_remove(owner, "leaver", 0));
    OK(km_key_open(&lk, owner, "kept"));
    OK(km_key_info(&info, lk));
    OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
    ck_assert_int_eq(vi.state, KM_STATE_ACTIVE);
    km_keyinfo_free(info);
    OK(try_encrypt(lk));
    km_key_free(lk);
}
END_TEST

/* Only an admin removes principals; a denied removal changes nothing. */
START_TEST(test_acl_principal_remove_needs_admin)
{
    km_ctx *u = tu_as(dir, TU_USER, TU_USER_PASS), *c = NULL;

    RC(KM_E_DENIED, km_principal_remove(u, TU_CUST1, 0));
    km_close(u);
    OK(tu_vault_open_as(&c, dir, TU_CUST1, TU_CUST1_PASS, 0));
    km_close(c);
    ck_assert_int_ge(denials_of(TU_USER, NULL, 0), 1);
}
END_TEST

static Suite *acl_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("acl", NULL, &tc, 120, setup, teardown);

    tcase_add_test(tc, test_acl_owner_has_every_right);
    tcase_add_test(tc, test_acl_principal_roles_by_whoami);
    tcase_add_test(tc, test_acl_principal_credential_required);
    tcase_add_test(tc, test_acl_admin_role_administers);
    tcase_add_test(tc, test_acl_everyone_reads_metadata);
    tcase_add_test(tc, test_acl_audit_log_needs_auditor_or_admin);
    tcase_add_test(tc, test_acl_user_needs_a_grant);
    tcase_add_test(tc, test_acl_grant_replaced_then_removed);
    tcase_add_test(tc, test_acl_revoked_grant_stops_open_handle);
    tcase_add_test(tc, test_acl_role_grant_reaches_role_holders);
    tcase_add_test(tc, test_acl_grant_to_unknown_refused);
    tcase_add_test(tc, test_acl_auditor_denied_crypto_even_granted);
    tcase_add_test(tc, test_acl_key_creator_owns_its_key);
    tcase_add_test(tc, test_acl_principal_list);
    tcase_add_test(tc, test_acl_principal_add_checks_arguments);
    tcase_add_test(tc, test_acl_principal_remove_offboards);
    tcase_add_test(tc, test_acl_principal_remove_keeps_keys_without_revoke);
    tcase_add_test(tc, test_acl_principal_remove_needs_admin);
    tcase_add_test(tc, test_acl_wrap_needs_rights_on_kek);
    return s;
}

int main(void)
{
    return tu_run(acl_suite());
}
