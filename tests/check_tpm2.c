/* check_tpm2.c - the TPM 2.0 backend through the public API, against swtpm
 * instances this suite starts itself (127.0.0.1, free ports, temporary state).
 * Fails (never skips) when swtpm or tpm2-tools are not installed. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <km.h>

#include "testutil.h"

/* ----------------------------------------------------------------- fixture */

typedef tu_swtpm swtpm;     /* testutil.h: a swtpm of this test, stopped by its PID */

static char *dir;       /* the test's temporary directory */
static swtpm tpm, tpm_b;

static void setup(void)
{
    setenv("TSS2_LOG", "all+NONE", 1);
    tu_setup(&dir, NULL, NULL);
    tu_swtpm_make(&tpm, dir, "tpm-a");
    memset(&tpm_b, 0, sizeof tpm_b);
}

static void teardown(void)
{
    tu_swtpm_stop(&tpm);
    tu_swtpm_stop(&tpm_b);
    tu_teardown(&dir, NULL);
}

/* A vault in the test directory whose tpm2 backend is `t`. */
static km_ctx *vault_for(const swtpm *t)
{
    km_ctx *ctx = tu_vault(dir);
    ck_assert_int_eq(km_vault_backend_set(ctx, "tpm2", t->config), KM_OK);
    return ctx;
}

static km_key *tpm_key(km_ctx *ctx, const char *name, km_key_type type)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;

    o.protection = "tpm2";
    ck_assert_msg(km_key_create(&k, ctx, name, type, &o) == KM_OK, "create %s: %s", name,
                  km_error_last()->message);
    return k;
}

static const uint8_t msg[] = "message signed by the TPM";

static void sign_ok(km_key *k)
{
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t n = 0;
    int rc = km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n);

    ck_assert_msg(rc == KM_OK, "sign: %s", km_error_last()->message);
    ck_assert_int_eq(km_verify(k, 0, 0, msg, sizeof msg, sig, n), KM_OK);
}

/* The TPM's own count of loaded transient objects (tpm2_getcap, from outside
 * the library: the swtpm TCTI connects per command, so tpm2-tools get through
 * while libkm is connected). */
static int transient_count(const swtpm *t)
{
    char cmd[1024], line[256];
    FILE *p;
    int n = 0, rc;

    snprintf(cmd, sizeof cmd, "TPM2TOOLS_TCTI='%s' tpm2_getcap handles-transient 2>/dev/null",
             t->tcti);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    while (fgets(line, sizeof line, p) != NULL)
        if (strncmp(line, "- 0x80", 6) == 0)
            n++;
    rc = pclose(p);
    ck_assert_msg(rc == 0, "tpm2_getcap handles-transient failed (%d)", rc);
    return n;
}

static void mac_ok(km_key *k)
{
    uint8_t tag[KM_MAC_MAX];
    size_t n = 0;

    ck_assert_int_eq(km_mac(k, 0, msg, sizeof msg, tag, sizeof tag, &n), KM_OK);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n), KM_OK);
}

/* ------------------------------------------------------------------- tests */

START_TEST(test_tpm2_ecdsa_sign_verify)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "ec", KM_KEY_EC_P256);
    uint8_t sig[KM_SIGNATURE_MAX], spki[256];
    const uint8_t *p = spki;
    size_t n = 0, spki_len = 0;
    EVP_PKEY *pub;
    EVP_MD_CTX *m;

    sign_ok(k);
    /* a changed message does not verify */
    ck_assert_int_eq(km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(km_verify(k, 0, 0, msg, sizeof msg - 1, sig, n), KM_E_VERIFY);

    /* the raw DER signature verifies with OpenSSL under the exported public key */
    ck_assert_int_eq(km_sign(k, KM_SIG_RAW, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki,
                                          &spki_len), KM_OK);
    pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
    ck_assert_ptr_nonnull(pub);
    ck_assert(EVP_PKEY_is_a(pub, "EC"));
    m = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pub), 1);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, n, msg, sizeof msg), 1);
    EVP_MD_CTX_free(m);
    EVP_PKEY_free(pub);

    /* P1363 r||s */
    ck_assert_int_eq(km_sign(k, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, sizeof sig, &n),
                     KM_OK);
    ck_assert_uint_eq(n, 64);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, n), KM_OK);
    sig[10] ^= 1;
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW | KM_SIG_P1363, msg, sizeof msg, sig, n),
                     KM_E_VERIFY);
    km_key_free(k);
    km_close(ctx);
}
END_TEST

/* The connection keeps the keys used last loaded (tpm2.c load_cached): keys
 * used in turn, more than the TPM's transient slots (swtpm: 3, one for the
 * primary), evict the least recently used one and all sign and verify. */
START_TEST(test_tpm2_cached_handles_evict)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k[5];
    char name[16];
    int i, round;

    for (i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "ec%d", i);
        k[i] = tpm_key(ctx, name, i % 2 ? KM_KEY_EC_P256 : KM_KEY_HMAC_SHA256);
    }
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 5; i++) {
            if (i % 2) {
                sign_ok(k[i]);
                sign_ok(k[i]);   /* the cached handle */
            } else {
                uint8_t tag[KM_MAC_MAX];
                size_t n = 0;
                ck_assert_int_eq(km_mac(k[i], 0, msg, sizeof msg, tag, sizeof tag, &n), KM_OK);
                ck_assert_int_eq(km_mac_verify(k[i], 0, 0, msg, sizeof msg, tag, n), KM_OK);
            }
        }
    }
    /* after more turns the cached key is the last one used; closing the vault
     * unloads every object, flushing the cached handle (tpm_unload) */
    sign_ok(k[3]);
    km_key_free(k[3]);
    sign_ok(k[1]);
    sign_ok(k[1]);
    for (i = 0; i < 5; i++)
        if (i != 3)
            km_key_free(k[i]);
    km_close(ctx);
}
END_TEST

/* The connection's cache of loaded objects (tpm2_conn.c): swtpm has 3
 * transient slots, one for the storage primary, so the cache holds 2 keys
 * (TPM2_PT_HR_TRANSIENT_AVAIL). Eight keys of four kinds used in turn, in
 * both orders and with repeats, all sign / mac / verify while the least
 * recently used key is evicted; the TPM never holds more than the primary
 * and 2 keys; an HMAC sequence (a transient object of its own) and the
 * creation of a key (TPM2_Create needs a free slot) make room first. */
START_TEST(test_tpm2_cache_many_keys_evict_lru)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k[8];
    char name[16];
    uint8_t *big;
    size_t n = 0;
    uint8_t tag[KM_MAC_MAX];
    int i, round;

    for (i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "k%d", i);
        k[i] = tpm_key(ctx, name, i == 6 ? KM_KEY_RSA_2048
                                  : i % 3 == 2 ? KM_KEY_HMAC_SHA256 : KM_KEY_EC_P256);
    }
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 8; i++) {
            int j = round == 1 ? 7 - i : i;
            if (j % 3 == 2 && j != 6)
                mac_ok(k[j]);
            else
                sign_ok(k[j]);
            ck_assert_int_le(transient_count(&tpm), 3);
        }
    }
    ck_assert_int_eq(transient_count(&tpm), 3);   /* the primary and the 2 keys used last */
    /* two keys in turn stay loaded: no eviction, nothing else loaded */
    for (i = 0; i < 10; i++) {
        sign_ok(k[0]);
        sign_ok(k[1]);
    }
    ck_assert_int_eq(transient_count(&tpm), 3);
    /* an HMAC over more than one TPM buffer runs a sequence object: room is
     * made for it (the other cached key goes), and it is flushed after */
    big = calloc(1, 5000);
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(km_mac(k[2], 0, big, 5000, tag, sizeof tag, &n), KM_OK);
    ck_assert_int_eq(km_mac_verify(k[2], 0, 0, big, 5000, tag, n), KM_OK);
    free(big);
    ck_assert_int_le(transient_count(&tpm), 3);
    /* a new key while the cache is full */
    sign_ok(k[3]);
    km_key_free(k[7]);
    k[7] = tpm_key(ctx, "k7b", KM_KEY_EC_P256);
    sign_ok(k[7]);
    sign_ok(k[3]);
    ck_assert_int_eq(transient_count(&tpm), 3);
    for (i = 0; i < 8; i++)
        km_key_free(k[i]);
    /* closing the vault (its connection's last user) flushes everything */
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 0);
}
END_TEST

/* Another client holds a slot the cache counted on: the Load gets
 * TPM2_RC_OBJECT_MEMORY, one cached key is evicted and the operation runs
 * once more (and the cache counts on one slot fewer from then on). */
START_TEST(test_tpm2_cache_object_memory_evicts_and_retries)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *a = tpm_key(ctx, "a", KM_KEY_EC_P256), *b = tpm_key(ctx, "b", KM_KEY_EC_P256);
    char cmd[700];
    int i;

    sign_ok(a);
    ck_assert_int_eq(transient_count(&tpm), 2);   /* primary + a */
    /* tpm2-tools leave their primary loaded (swtpm has no resource manager) */
    snprintf(cmd, sizeof cmd, "tpm2_createprimary -C o -c %s/other.ctx", dir);
    tu_swtpm_tools(&tpm, cmd);
    ck_assert_int_eq(transient_count(&tpm), 3);   /* the TPM is full */
    for (i = 0; i < 3; i++) {
        sign_ok(b);   /* a evicted, b loaded */
        sign_ok(a);   /* b evicted, a loaded */
        ck_assert_int_eq(transient_count(&tpm), 3);
    }
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 1);   /* only the other client's object */
    tu_swtpm_tools(&tpm, "tpm2_flushcontext -t");
}
END_TEST

/* A restart of the TPM between two signatures with the cache warm: the
 * cached handles are gone with it; the next operation gets
 * TPM2_RC_REFERENCE_H0 (or a connection error), drops the connection and the
 * cache, connects again and loads the key from its blob in the same call:
 * the second signature succeeds, no error is returned. The same when the
 * handles are flushed behind the library's back (all, or one). */
START_TEST(test_tpm2_cache_restart_reloads)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *a = tpm_key(ctx, "a", KM_KEY_EC_P256), *b = tpm_key(ctx, "b", KM_KEY_HMAC_SHA256);

    sign_ok(a);
    mac_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 3);
    tu_swtpm_stop(&tpm);   /* orderly: TPM2_Shutdown, then the process */
    tu_swtpm_start(&tpm);
    ck_assert_int_eq(transient_count(&tpm), 0);
    sign_ok(a);
    mac_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 3);
    /* killed (no Shutdown) and restarted */
    tu_swtpm_kill(&tpm);
    tu_swtpm_start(&tpm);
    mac_ok(b);
    sign_ok(a);
    ck_assert_int_eq(transient_count(&tpm), 3);
    /* every transient object flushed by someone else: stale handles */
    tu_swtpm_tools(&tpm, "tpm2_flushcontext -t");
    ck_assert_int_eq(transient_count(&tpm), 0);
    sign_ok(a);
    mac_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 3);
    /* only a's handle flushed by someone else (the primary is made first at
     * connect, 0x80000000; a is loaded next): using a reconnects, and our
     * other handles (b, the old primary) are flushed, not left to fill the
     * TPM's slots */
    tu_swtpm_tools(&tpm, "tpm2_flushcontext 0x80000001");
    ck_assert_int_eq(transient_count(&tpm), 2);
    sign_ok(a);
    ck_assert_int_eq(transient_count(&tpm), 2);   /* the new primary and a */
    mac_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 3);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 0);
}
END_TEST

/* A destroyed key version's handle is flushed at once (the TPM's transient
 * count goes back), and a closed key's when its vault closes. */
START_TEST(test_tpm2_cache_destroy_flushes)
{
    km_ctx *ctx = NULL;
    km_key *a, *b;
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t n = 0;

    tu_now = TU_NOW_START;
    ctx = tu_vault_clocked(dir, 0);
    ck_assert_int_eq(km_vault_backend_set(ctx, "tpm2", tpm.config), KM_OK);
    a = tpm_key(ctx, "a", KM_KEY_EC_P256);
    b = tpm_key(ctx, "b", KM_KEY_EC_P256);
    sign_ok(a);
    sign_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 3);
    /* destroy a's only version: deactivate, schedule, let the grace pass */
    ck_assert_int_eq(km_key_revoke(a, 1, KM_REVOKE_SUPERSEDED, 0), KM_OK);
    ck_assert_int_eq(km_key_schedule_destroy(a, 1, 7), KM_OK);   /* the policy's minimum */
    ck_assert_int_eq(transient_count(&tpm), 3);
    tu_now += 8 * 86400;
    ck_assert_int_eq(km_maintain(ctx, NULL), KM_OK);
    ck_assert_int_eq(transient_count(&tpm), 2);   /* the primary and b */
    ck_assert_int_ne(km_sign(a, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    sign_ok(b);
    ck_assert_int_eq(transient_count(&tpm), 2);
    km_key_free(a);
    km_key_free(b);
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 0);
}
END_TEST

/* Many threads share the connection and its cache: four threads sign with
 * four keys in turn (more keys than the cache holds, so entries are evicted
 * under the other threads' feet); every signature verifies. */
struct sign_thread_arg {
    km_key **keys;
    int id;
    int failures;
};

static void *sign_thread(void *varg)
{
    struct sign_thread_arg *a = varg;
    uint8_t sig[KM_SIGNATURE_MAX];
    int i;

    for (i = 0; i < 12; i++) {
        km_key *k = a->keys[(a->id + i) % 4];
        size_t n = 0;
        if (km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n) != KM_OK
            || km_verify(k, 0, 0, msg, sizeof msg, sig, n) != KM_OK)
            a->failures++;
    }
    return NULL;
}

START_TEST(test_tpm2_cache_threads)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k[4];
    pthread_t th[4];
    struct sign_thread_arg args[4];
    char name[16];
    int i;

    for (i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "t%d", i);
        k[i] = tpm_key(ctx, name, KM_KEY_EC_P256);
    }
    for (i = 0; i < 4; i++) {
        args[i].keys = k;
        args[i].id = i;
        args[i].failures = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, sign_thread, &args[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_msg(args[i].failures == 0, "thread %d: %d failed signatures", i,
                      args[i].failures);
    }
    ck_assert_int_eq(transient_count(&tpm), 3);
    for (i = 0; i < 4; i++)
        km_key_free(k[i]);
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 0);
}
END_TEST

/* fork(): a child never uses (nor flushes) the parent's loaded objects. The
 * child's inherited key refuses with KM_E_FORK, and closing the inherited
 * vault in the child forgets the parent's connection without a TPM command:
 * the parent's primary and cached key stay loaded and keep working. */
START_TEST(test_tpm2_cache_fork_child_leaves_parent_handles)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "a", KM_KEY_EC_P256);
    int status = 0;
    pid_t pid;

    sign_ok(k);
    ck_assert_int_eq(transient_count(&tpm), 2);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uint8_t sig[KM_SIGNATURE_MAX];
        size_t n = 0;
        int ok = km_sign(k, 0, msg, sizeof msg, sig, sizeof sig, &n) == KM_E_FORK;
        km_key_free(k);
        km_close(ctx);
        _exit(ok ? 0 : 3);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    ck_assert_int_eq(transient_count(&tpm), 2);   /* nothing of the parent's flushed */
    sign_ok(k);
    ck_assert_int_eq(transient_count(&tpm), 2);   /* still the cached handle */
    km_key_free(k);
    km_close(ctx);
    ck_assert_int_eq(transient_count(&tpm), 0);
}
END_TEST

START_TEST(test_tpm2_hmac)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "mac", KM_KEY_HMAC_SHA256);
    uint8_t tag[KM_MAC_MAX], tag2[KM_MAC_MAX], *big;
    size_t n = 0, n2 = 0, big_len = 3000;

    ck_assert_int_eq(km_mac(k, 0, msg, sizeof msg, tag, sizeof tag, &n), KM_OK);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg, tag, n), KM_OK);
    ck_assert_int_eq(km_mac_verify(k, 0, 0, msg, sizeof msg - 1, tag, n), KM_E_VERIFY);
    /* deterministic, and longer than one TPM buffer (HMAC sequence) */
    ck_assert_int_eq(km_mac(k, 0, msg, sizeof msg, tag2, sizeof tag2, &n2), KM_OK);
    ck_assert_mem_eq(tag, tag2, n);
    big = calloc(1, big_len);
    ck_assert_int_eq(km_mac(k, KM_SIG_RAW, big, big_len, tag, sizeof tag, &n), KM_OK);
    ck_assert_uint_eq(n, 32);
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, big, big_len, tag, n), KM_OK);
    big[2999] = 1;
    ck_assert_int_eq(km_mac_verify(k, 0, KM_SIG_RAW, big, big_len, tag, n), KM_E_VERIFY);
    free(big);
    km_key_free(k);
    km_close(ctx);
}
END_TEST

/* km_random with protection tpm2 draws from the TPM: bytes while it runs, the
 * TPM's error (never the DRBG's bytes) when it is gone. */
START_TEST(test_tpm2_random)
{
    km_ctx *ctx = vault_for(&tpm);
    uint8_t a[100], b[100], zero[100] = { 0 };

    ck_assert_int_eq(km_random(ctx, "tpm2", a, sizeof a), KM_OK); /* more than one GetRandom */
    ck_assert_int_eq(km_random(ctx, "tpm2", b, sizeof b), KM_OK);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(memcmp(a + 64, zero, 36) != 0);
    tu_swtpm_kill(&tpm);
    memset(a, 0xee, sizeof a);
    ck_assert_int_eq(km_random(ctx, "tpm2", a, sizeof a), KM_E_BACKEND);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_TSS2);
    ck_assert_mem_eq(a, zero, sizeof a);
    ck_assert_int_eq(km_random(ctx, NULL, a, sizeof a), KM_OK); /* the DRBG still works */
    tu_swtpm_start(&tpm);
    ck_assert_int_eq(km_random(ctx, "tpm2", a, 7), KM_OK);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_aes_gcm_round_trip_and_tamper)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "aes", KM_KEY_AES_256_GCM);
    uint8_t ct[256], pt[256];
    size_t ct_len = 0, pt_len = 0;

    ck_assert_int_eq(km_encrypt(k, msg, sizeof msg, (const uint8_t *)"aad", 3, ct, sizeof ct,
                                &ct_len), KM_OK);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aad", 3, pt, sizeof pt,
                                &pt_len), KM_OK);
    ck_assert_uint_eq(pt_len, sizeof msg);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    /* wrong aad, then a flipped ciphertext byte: integrity failure, output zeroed */
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aaD", 3, pt, sizeof pt,
                                &pt_len), KM_E_INTEGRITY);
    ct[ct_len - 20] ^= 0x01;
    memset(pt, 0xa5, sizeof pt);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"aad", 3, pt, sizeof pt,
                                &pt_len), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(pt, sizeof msg));
    km_key_free(k);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_rotate)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *aes = tpm_key(ctx, "aes", KM_KEY_AES_256_GCM);
    km_key *ec = tpm_key(ctx, "ec", KM_KEY_EC_P256);
    uint8_t ct[256], pt[256], sig[KM_SIGNATURE_MAX], sig2[KM_SIGNATURE_MAX];
    size_t ct_len = 0, pt_len = 0, n = 0, n2 = 0;
    uint32_t v = 0;

    ck_assert_int_eq(km_encrypt(aes, msg, sizeof msg, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    ck_assert_int_eq(km_sign(ec, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_int_eq(km_key_rotate(aes, &v), KM_OK);
    ck_assert_uint_eq(v, 2);
    ck_assert_int_eq(km_key_rotate(ec, &v), KM_OK);
    ck_assert_uint_eq(v, 2);
    /* old data still processes; new data uses the new version */
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    ck_assert_int_eq(km_verify(ec, 0, 0, msg, sizeof msg, sig, n), KM_OK);
    ck_assert_int_eq(km_sign(ec, 0, msg, sizeof msg, sig2, sizeof sig2, &n2), KM_OK);
    ck_assert_int_eq(km_verify(ec, 0, 0, msg, sizeof msg, sig2, n2), KM_OK);
    /* the raw v2 signature does not verify under v1 */
    ck_assert_int_eq(km_sign(ec, KM_SIG_RAW, msg, sizeof msg, sig2, sizeof sig2, &n2), KM_OK);
    ck_assert_int_eq(km_verify(ec, 1, KM_SIG_RAW, msg, sizeof msg, sig2, n2), KM_E_VERIFY);
    km_key_free(aes);
    km_key_free(ec);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_keys_reload_after_restart)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *aes = tpm_key(ctx, "aes", KM_KEY_AES_256_GCM);
    km_key *ec = tpm_key(ctx, "ec", KM_KEY_EC_P256);
    uint8_t ct[256], pt[256], sig[KM_SIGNATURE_MAX];
    size_t ct_len = 0, pt_len = 0, n = 0;

    ck_assert_int_eq(km_encrypt(aes, msg, sizeof msg, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    ck_assert_int_eq(km_sign(ec, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    km_key_free(aes);
    km_key_free(ec);
    km_close(ctx);

    tu_swtpm_stop(&tpm);
    tu_swtpm_start(&tpm);

    ck_assert_int_eq(tu_vault_open(&ctx, dir, TU_PASS, 0), KM_OK);
    ck_assert_int_eq(km_key_open(&ec, ctx, "ec"), KM_OK);
    sign_ok(ec);
    ck_assert_int_eq(km_verify(ec, 0, 0, msg, sizeof msg, sig, n), KM_OK);
    ck_assert_int_eq(km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    km_key_free(ec);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_killed_gives_backend_error_then_recovers)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *ec = tpm_key(ctx, "ec", KM_KEY_EC_P256);
    uint8_t sig[KM_SIGNATURE_MAX];
    size_t n = 0;
    const km_error *e;
    time_t t0;
    int rc;

    sign_ok(ec);
    tu_swtpm_kill(&tpm);

    t0 = time(NULL);
    rc = km_sign(ec, 0, msg, sizeof msg, sig, sizeof sig, &n);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    e = km_error_last();
    ck_assert_int_eq(e->code, KM_E_BACKEND);
    ck_assert_int_eq(e->native_kind, KM_NATIVE_TSS2);
    ck_assert_uint_ne(e->native, 0);
    ck_assert_int_le(time(NULL) - t0, 3);
    /* still down: fails again at once, no hang */
    ck_assert_int_eq(km_sign(ec, 0, msg, sizeof msg, sig, sizeof sig, &n), KM_E_BACKEND);
    ck_assert_int_le(time(NULL) - t0, 5);

    tu_swtpm_start(&tpm);
    sign_ok(ec); /* same context, same handle */
    km_key_free(ec);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_restart_under_open_handle_recovers)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *ec = tpm_key(ctx, "ec", KM_KEY_EC_P256);

    sign_ok(ec);
    tu_swtpm_kill(&tpm);
    tu_swtpm_start(&tpm);
    sign_ok(ec); /* the stale connection is dropped and made again in the same call */
    km_key_free(ec);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_other_tpm_cannot_use_keys)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *ec = tpm_key(ctx, "ec", KM_KEY_EC_P256);
    km_key *aes = tpm_key(ctx, "aes", KM_KEY_AES_256_GCM);
    uint8_t ct[256], pt[256], sig[KM_SIGNATURE_MAX];
    size_t ct_len = 0, pt_len = 0, n = 0;
    int rc;

    ck_assert_int_eq(km_encrypt(aes, msg, sizeof msg, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(ec);
    km_key_free(aes);
    /* point the vault at a second TPM with another seed */
    tu_swtpm_make(&tpm_b, dir, "tpm-b");
    ck_assert_int_eq(km_vault_backend_set(ctx, "tpm2", tpm_b.config), KM_OK);
    km_close(ctx);

    ck_assert_int_eq(tu_vault_open(&ctx, dir, TU_PASS, 0), KM_OK);
    ck_assert_int_eq(km_key_open(&ec, ctx, "ec"), KM_OK);
    rc = km_sign(ec, 0, msg, sizeof msg, sig, sizeof sig, &n);
    ck_assert_msg(rc == KM_E_BACKEND || rc == KM_E_INTEGRITY, "sign on another TPM gave %d", rc);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_TSS2);
    rc = km_decrypt(ctx, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len);
    ck_assert_msg(rc == KM_E_BACKEND || rc == KM_E_INTEGRITY, "decrypt on another TPM gave %d",
                  rc);
    ck_assert(tu_all_zero(pt, sizeof msg));
    km_key_free(ec);
    km_close(ctx);
}
END_TEST

START_TEST(test_tpm2_unsupported_type_refused)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key *k = NULL;

    o.protection = "tpm2";
    ck_assert_int_eq(km_key_create(&k, ctx, "ed", KM_KEY_ED25519, &o), KM_E_UNSUPPORTED);
    ck_assert_ptr_null(k);
    km_close(ctx);
}
END_TEST

/* RSA-2048 in the TPM: PSS signatures that OpenSSL verifies under the
 * exported key, and OAEP (SHA-256) decryption of what OpenSSL encrypted. */
START_TEST(test_tpm2_rsa_pss_and_oaep)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "rsa", KM_KEY_RSA_2048);
    uint8_t sig[KM_SIGNATURE_MAX], spki[600], ct[256];
    const uint8_t *p = spki;
    static const uint8_t secret[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    size_t n = 0, spki_len = 0, ct_len = sizeof ct;
    km_secret *pt = NULL;
    EVP_PKEY *pub;
    EVP_PKEY_CTX *pc = NULL;
    EVP_MD_CTX *m;

    sign_ok(k);
    ck_assert_int_eq(km_sign(k, KM_SIG_RAW, msg, sizeof msg, sig, sizeof sig, &n), KM_OK);
    ck_assert_uint_eq(n, 256);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, msg, sizeof msg, sig, n), KM_OK);
    ck_assert_int_eq(km_verify(k, 0, KM_SIG_RAW, msg, sizeof msg - 1, sig, n), KM_E_VERIFY);
    ck_assert_int_eq(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki, sizeof spki,
                                          &spki_len), KM_OK);
    pub = d2i_PUBKEY(NULL, &p, (long)spki_len);
    ck_assert_ptr_nonnull(pub);
    ck_assert(EVP_PKEY_is_a(pub, "RSA"));
    ck_assert_int_eq(EVP_PKEY_get_bits(pub), 2048);
    m = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(m, &pc, EVP_sha256(), NULL, pub), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_AUTO), 0);
    ck_assert_int_eq(EVP_DigestVerify(m, sig, n, msg, sizeof msg), 1);
    EVP_MD_CTX_free(m);

    pc = EVP_PKEY_CTX_new(pub, NULL);
    ck_assert_int_eq(EVP_PKEY_encrypt_init(pc), 1);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()), 0);
    ck_assert_int_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()), 0);
    ck_assert_int_eq(EVP_PKEY_encrypt(pc, ct, &ct_len, secret, sizeof secret), 1);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pub);
    ck_assert_msg(km_rsa_decrypt(k, 0, ct, ct_len, &pt) == KM_OK, "decrypt: %s",
                  km_error_last()->message);
    ck_assert_uint_eq(km_secret_len(pt), sizeof secret);
    ck_assert_mem_eq(km_secret_data(pt), secret, sizeof secret);
    km_secret_free(pt);
    pt = NULL;
    ct[100] ^= 1;
    ck_assert_msg(km_rsa_decrypt(k, 0, ct, ct_len, &pt) == KM_E_INTEGRITY, "tampered: %s",
                  km_error_last()->message);
    ck_assert_ptr_null(pt);
    /* the TPM still works after a failed decode (old libtpms answers it with TPM_RC_FAILURE) */
    ct[100] ^= 1;
    ck_assert_int_eq(km_rsa_decrypt(k, 0, ct, ct_len, &pt), KM_OK);
    ck_assert_mem_eq(km_secret_data(pt), secret, sizeof secret);
    km_secret_free(pt);
    km_key_free(k);
    km_close(ctx);
}
END_TEST

/* ECDH: the TPM key (Esys_ECDH_ZGen) and a software P-256 key agree on the
 * same derived secret both ways; a peer on another curve is refused. */
START_TEST(test_tpm2_ecdh_agree)
{
    km_ctx *ctx = vault_for(&tpm);
    km_key *k = tpm_key(ctx, "ec-agree", KM_KEY_EC_P256), *sw = NULL, *other = NULL;
    uint8_t spki_t[256], spki_s[256], spki_o[256];
    size_t lt = 0, ls = 0, lo = 0;
    km_secret *a = NULL, *b = NULL, *c = NULL;
    static const uint8_t info[] = "ctx";

    ck_assert_int_eq(km_key_create(&sw, ctx, "peer", KM_KEY_EC_P256, NULL), KM_OK);
    ck_assert_int_eq(km_key_public_export(k, 0, KM_MATERIAL_SPKI_DER, spki_t, sizeof spki_t, &lt),
                     KM_OK);
    ck_assert_int_eq(km_key_public_export(sw, 0, KM_MATERIAL_SPKI_DER, spki_s, sizeof spki_s, &ls),
                     KM_OK);
    ck_assert_msg(km_agree(k, spki_s, ls, info, sizeof info, 32, &a) == KM_OK, "tpm agree: %s",
                  km_error_last()->message);
    ck_assert_int_eq(km_agree(sw, spki_t, lt, info, sizeof info, 32, &b), KM_OK);
    ck_assert_uint_eq(km_secret_len(a), 32);
    ck_assert_mem_eq(km_secret_data(a), km_secret_data(b), 32);
    /* another peer gives another secret */
    ck_assert_int_eq(km_key_create(&other, ctx, "other", KM_KEY_EC_P256, NULL), KM_OK);
    ck_assert_int_eq(km_key_public_export(other, 0, KM_MATERIAL_SPKI_DER, spki_o, sizeof spki_o,
                                          &lo), KM_OK);
    ck_assert_int_eq(km_agree(k, spki_o, lo, info, sizeof info, 32, &c), KM_OK);
    ck_assert(memcmp(km_secret_data(a), km_secret_data(c), 32) != 0);
    km_secret_free(c);
    c = NULL;
    /* garbage is refused as invalid */
    spki_s[ls - 5] ^= 0x55;
    ck_assert_int_ne(km_agree(k, spki_s, ls, info, sizeof info, 32, &c), KM_OK);
    ck_assert_ptr_null(c);
    km_secret_free(a);
    km_secret_free(b);
    km_key_free(k);
    km_key_free(sw);
    km_key_free(other);
    km_close(ctx);
}
END_TEST

/* A vault sealed to TPM A opens with A alone (no passphrase), after A
 * restarts too, and not with TPM B; TPM-down gives KM_E_BACKEND. */
static int open_with_tpm(const swtpm *t, km_ctx **out)
{
    return tu_vault_open_slot(out, dir, "tpm2", t->config);
}

START_TEST(test_tpm2_keyslot_opens_on_this_tpm_only)
{
    km_ctx *ctx = tu_vault(dir), *c2 = NULL;
    km_key *k = NULL;
    uint8_t ct[256], pt[256];
    size_t ct_len = 0, pt_len = 0;
    int rc;

    ck_assert_int_eq(km_key_create(&k, ctx, "data", KM_KEY_AES_256_GCM, NULL), KM_OK);
    ck_assert_int_eq(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(k);
    ck_assert_int_eq(open_with_tpm(&tpm, &c2), KM_E_AUTH);   /* no TPM slot yet */
    ck_assert_msg(km_vault_add_backend_slot(ctx, "tpm2", tpm.config) == KM_OK, "add slot: %s",
                  km_error_last()->message);
    km_close(ctx);

    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open with the TPM: %s",
                  km_error_last()->message);
    ck_assert_int_eq(km_decrypt(c2, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    km_close(c2);
    /* the passphrase still opens it too */
    ck_assert_int_eq(tu_vault_open(&c2, dir, TU_PASS, 0), KM_OK);
    km_close(c2);
    /* after a restart of the same TPM (same state): still */
    tu_swtpm_stop(&tpm);
    tu_swtpm_start(&tpm);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open after restart: %s",
                  km_error_last()->message);
    km_close(c2);
    /* another TPM (another seed) cannot */
    tu_swtpm_make(&tpm_b, dir, "tpm-b");
    rc = open_with_tpm(&tpm_b, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "open with another TPM gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* the TPM away: a backend error, quickly, with the TSS2 code */
    tu_swtpm_kill(&tpm);
    rc = open_with_tpm(&tpm, &c2);
    ck_assert_msg(rc == KM_E_BACKEND, "open with the TPM down gave %s", km_err_name(rc));
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_TSS2);
    tu_swtpm_start(&tpm);
}
END_TEST

/* Offboarding with rotation (issue 18 finding 4): the TPM keyslot is
 * re-sealed by the TPM under the new master key; the vault opens with the
 * TPM, the owner passphrase and the remaining admin, nothing typed again. */
START_TEST(test_tpm2_keyslot_resealed_by_rotation)
{
    km_ctx *ctx = vault_for(&tpm), *c2 = NULL;
    km_key *k = NULL;
    uint8_t ct[256], pt[256];
    size_t ct_len = 0, pt_len = 0;

    ck_assert_int_eq(tu_principal_add(ctx, TU_ADMIN, KM_ROLE_ADMIN, TU_ADMIN_PASS), KM_OK);
    ck_assert_int_eq(tu_principal_add(ctx, TU_USER, KM_ROLE_USER, TU_USER_PASS), KM_OK);
    ck_assert_int_eq(km_key_create(&k, ctx, "data", KM_KEY_AES_256_GCM, NULL), KM_OK);
    ck_assert_int_eq(km_encrypt(k, msg, sizeof msg, NULL, 0, ct, sizeof ct, &ct_len), KM_OK);
    km_key_free(k);
    ck_assert_msg(km_vault_add_backend_slot(ctx, "tpm2", tpm.config) == KM_OK, "add slot: %s",
                  km_error_last()->message);
    ck_assert_msg(km_principal_remove(ctx, TU_USER, KM_PRINCIPAL_ROTATE_MASTER) == KM_OK,
                  "remove with rotation: %s", km_error_last()->message);
    ck_assert_int_eq(tu_audit_count(ctx, "principal.remove",
                                    "1 device keyslot(s) re-sealed, 0 dropped"), 1);
    km_close(ctx);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open with the TPM: %s",
                  km_error_last()->message);
    ck_assert_int_eq(km_decrypt(c2, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len), KM_OK);
    ck_assert_mem_eq(pt, msg, sizeof msg);
    km_close(c2);
    ck_assert_int_eq(tu_vault_open(&c2, dir, TU_PASS, 0), KM_OK);
    km_close(c2);
    ck_assert_int_eq(tu_vault_open_as(&c2, dir, TU_ADMIN, TU_ADMIN_PASS, 0), KM_OK);
    km_close(c2);
    ck_assert_int_eq(tu_vault_open_as(&c2, dir, TU_USER, TU_USER_PASS, 0), KM_E_AUTH);
}
END_TEST

/* A keyslot bound to a PCR: opens while the PCR holds its value, not once it
 * is extended; a TPM reset (Startup CLEAR) restores it. PCR 16 is the
 * debug PCR anyone may extend. */
START_TEST(test_tpm2_keyslot_pcr_policy)
{
    km_ctx *ctx = tu_vault(dir), *c2 = NULL;
    char cfg[300];
    int rc;

    snprintf(cfg, sizeof cfg, "%s;pcrs=sha256:16", tpm.config);
    ck_assert_int_eq(km_vault_add_backend_slot(ctx, "tpm2", "tcti=x;pcrs=sha256:99"),
                     KM_E_INVALID);
    ck_assert_msg(km_vault_add_backend_slot(ctx, "tpm2", cfg) == KM_OK, "add slot: %s",
                  km_error_last()->message);
    km_close(ctx);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open before the extend: %s",
                  km_error_last()->message);
    km_close(c2);
    c2 = NULL;
    tu_swtpm_tools(&tpm, "tpm2_pcrextend 16:sha256=0000000000000000000000000000000000000000000000000000000000000001");
    rc = open_with_tpm(&tpm, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "open after the PCR changed gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* a TPM restart resets PCR 16: the slot opens again */
    tu_swtpm_stop(&tpm);
    tu_swtpm_start(&tpm);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open after a reset: %s",
                  km_error_last()->message);
    km_close(c2);
}
END_TEST

/* Issue 18 finding 10: `keyslot remove passphrases` succeeded when the only
 * other keyslot, a TPM's bound to a PCR, no longer unsealed (the PCR was
 * extended): the vault was locked. The removal now asks the TPM to unseal
 * first and refuses, naming it; once the PCR is back (a TPM reset) the
 * removal goes through and the TPM alone opens the vault. */
START_TEST(test_tpm2_keyslot_remove_refuses_lockout)
{
    km_ctx *ctx = vault_for(&tpm), *c2 = NULL;
    char cfg[300];
    int rc;

    snprintf(cfg, sizeof cfg, "%s;pcrs=sha256:16", tpm.config);
    ck_assert_msg(km_vault_add_backend_slot(ctx, "tpm2", cfg) == KM_OK, "add slot: %s",
                  km_error_last()->message);
    tu_swtpm_tools(&tpm, "tpm2_pcrextend 16:sha256=0000000000000000000000000000000000000000000000000000000000000001");
    rc = km_vault_remove_passphrases(ctx);
    ck_assert_msg(rc == KM_E_STATE, "removal with a TPM that cannot unseal gave %s (%s)",
                  km_err_name(rc), km_error_last()->message);
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "tpm2"));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "lock"));
    km_close(ctx);
    ck_assert_int_eq(tu_vault_open(&c2, dir, TU_PASS, 0), KM_OK);   /* still opens */
    km_close(c2);
    c2 = NULL;
    /* a TPM restart resets PCR 16: the slot unseals, the removal passes */
    tu_swtpm_stop(&tpm);
    tu_swtpm_start(&tpm);
    ck_assert_int_eq(tu_vault_open(&ctx, dir, TU_PASS, 0), KM_OK);
    ck_assert_msg(km_vault_remove_passphrases(ctx) == KM_OK, "removal: %s",
                  km_error_last()->message);
    km_close(ctx);
    ck_assert_int_eq(tu_vault_open(&c2, dir, TU_PASS, 0), KM_E_AUTH);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open with the TPM: %s",
                  km_error_last()->message);
    km_close(c2);
}
END_TEST

static Suite *tpm2_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("tpm2", "swtpm", &tc, 120, setup, teardown);

    tcase_add_test(tc, test_tpm2_ecdsa_sign_verify);
    tcase_add_test(tc, test_tpm2_hmac);
    tcase_add_test(tc, test_tpm2_cached_handles_evict);
    tcase_add_test(tc, test_tpm2_cache_many_keys_evict_lru);
    tcase_add_test(tc, test_tpm2_cache_object_memory_evicts_and_retries);
    tcase_add_test(tc, test_tpm2_cache_restart_reloads);
    tcase_add_test(tc, test_tpm2_cache_destroy_flushes);
    tcase_add_test(tc, test_tpm2_cache_threads);
    tcase_add_test(tc, test_tpm2_cache_fork_child_leaves_parent_handles);
    tcase_add_test(tc, test_tpm2_aes_gcm_round_trip_and_tamper);
    tcase_add_test(tc, test_tpm2_rotate);
    tcase_add_test(tc, test_tpm2_keys_reload_after_restart);
    tcase_add_test(tc, test_tpm2_killed_gives_backend_error_then_recovers);
    tcase_add_test(tc, test_tpm2_restart_under_open_handle_recovers);
    tcase_add_test(tc, test_tpm2_other_tpm_cannot_use_keys);
    tcase_add_test(tc, test_tpm2_unsupported_type_refused);
    tcase_add_test(tc, test_tpm2_keyslot_opens_on_this_tpm_only);
    tcase_add_test(tc, test_tpm2_keyslot_remove_refuses_lockout);
    tcase_add_test(tc, test_tpm2_keyslot_pcr_policy);
    tcase_add_test(tc, test_tpm2_ecdh_agree);
    tcase_add_test(tc, test_tpm2_rsa_pss_and_oaep);
    tcase_add_test(tc, test_tpm2_random);
    tcase_add_test(tc, test_tpm2_keyslot_resealed_by_rotation);
    return s;
}

int main(void)
{
    int failed, rc;

    if (!tu_swtpm_installed("check_tpm2") || tu_swtpm_registry("check_tpm2") != 0)
        return 1;
    rc = tu_run(tpm2_suite());
    failed = rc != EXIT_SUCCESS;
    /* unconditionally: a failed test's swtpm is stopped here */
    if (tu_swtpm_reap("check_tpm2") > 0 && !failed) {
        fprintf(stderr, "check_tpm2: swtpm left running although every test passed: FAILED\n");
        failed = 1;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
