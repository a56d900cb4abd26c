/* check_tpm2.c - the TPM 2.0 backend through the public API, against swtpm
 * instances this suite starts itself (127.0.0.1, free ports, temporary state).
 * Fails (never skips) when swtpm or tpm2-tools are not installed. */
#include <check.h>
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

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <km.h>

#include "testutil.h"

/* ------------------------------------------------------------ swtpm helper */

typedef struct swtpm {
    char dir[512];     /* temporary state directory */
    int port;          /* server port; control on port + 1 */
    pid_t pid;
    char tcti[128];    /* swtpm:host=127.0.0.1,port=P */
    char config[160];  /* tcti=... for km_vault_backend_set */
} swtpm;

static int port_free(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static int port_open(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static void tools(const swtpm *t, const char *args)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd, "TPM2TOOLS_TCTI='%s' %s >/dev/null 2>&1", t->tcti, args);
    if (system(cmd) != 0)
        ck_abort_msg("failed: %s", args);
}

/* Starts swtpm on t->dir and t->port (a free pair chosen when port is 0). */
static void swtpm_start(swtpm *t)
{
    char cmd[2048], pidpath[600];
    FILE *f;
    int i;

    if (t->port == 0) {
        srand((unsigned)getpid() ^ (unsigned)time(NULL));
        for (i = 0; i < 200; i++) {
            int p = 20000 + 2 * (rand() % 15000);
            if (port_free(p) && port_free(p + 1)) {
                t->port = p;
                break;
            }
        }
        ck_assert_int_ne(t->port, 0);
        snprintf(t->tcti, sizeof t->tcti, "swtpm:host=127.0.0.1,port=%d", t->port);
        snprintf(t->config, sizeof t->config, "tcti=%s", t->tcti);
    }
    snprintf(pidpath, sizeof pidpath, "%s/pid", t->dir);
    snprintf(cmd, sizeof cmd,
             "swtpm socket --tpm2 --tpmstate dir=%s --server type=tcp,port=%d,bindaddr=127.0.0.1 "
             "--ctrl type=tcp,port=%d,bindaddr=127.0.0.1 --flags not-need-init,startup-clear "
             "--pid file=%s --daemon",
             t->dir, t->port, t->port + 1, pidpath);
    ck_assert_int_eq(system(cmd), 0);
    t->pid = 0;
    for (i = 0; i < 500 && t->pid == 0; i++) {
        f = fopen(pidpath, "r");
        if (f != NULL) {
            int pid = 0;
            if (fscanf(f, "%d", &pid) == 1)
                t->pid = pid;
            fclose(f);
        }
        if (t->pid == 0)
            sleep_ms(10);
    }
    ck_assert_int_gt(t->pid, 0);
    for (i = 0; i < 500 && !port_open(t->port); i++)
        sleep_ms(10);
    /* test TPMs: no long dictionary-attack lockouts (an unclean stop counts as a failure) */
    tools(t, "tpm2_dictionarylockout --setup-parameters --max-tries=1000 --recovery-time=1 "
             "--lockout-recovery-time=1");
}

static void swtpm_wait_gone(swtpm *t)
{
    int i;

    for (i = 0; i < 500 && pid_alive(t->pid); i++)
        sleep_ms(10);
    ck_assert_msg(!pid_alive(t->pid), "swtpm %d did not stop", (int)t->pid);
    for (i = 0; i < 500 && !port_free(t->port); i++)
        sleep_ms(10);
    t->pid = 0;
}

/* Orderly stop: TPM2_Shutdown, then the process. No libkm connection may be open. */
static void swtpm_stop(swtpm *t)
{
    if (t->pid == 0)
        return;
    tools(t, "tpm2_shutdown");
    kill(t->pid, SIGTERM);
    swtpm_wait_gone(t);
}

static void swtpm_kill(swtpm *t)
{
    kill(t->pid, SIGKILL);
    swtpm_wait_gone(t);
}

static int have_tools(void)
{
    return system("command -v swtpm >/dev/null 2>&1 && command -v tpm2_shutdown >/dev/null 2>&1 "
                  "&& command -v tpm2_dictionarylockout >/dev/null 2>&1") == 0;
}

/* ----------------------------------------------------------------- fixture */

static char *dir;       /* the test's temporary directory */
static swtpm tpm, tpm_b;

static void make_tpm(swtpm *t, const char *name)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/%s", dir, name);
    ck_assert_int_eq(mkdir(t->dir, 0700), 0);
    swtpm_start(t);
}

static void setup(void)
{
    setenv("TSS2_LOG", "all+NONE", 1);
    dir = tu_tmpdir();
    make_tpm(&tpm, "tpm-a");
    memset(&tpm_b, 0, sizeof tpm_b);
}

static void teardown(void)
{
    if (tpm.pid != 0)
        swtpm_stop(&tpm);
    if (tpm_b.pid != 0)
        swtpm_stop(&tpm_b);
    tu_rmtree(dir);
    free(dir);
    dir = NULL;
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

/* The connection keeps the key used last loaded (tpm2.c load_cached): keys
 * used in turn, more than the TPM's transient slots (swtpm: 3, one for the
 * primary), each evict the previous one and all sign and verify. */
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

    swtpm_stop(&tpm);
    swtpm_start(&tpm);

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
    swtpm_kill(&tpm);

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

    swtpm_start(&tpm);
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
    swtpm_kill(&tpm);
    swtpm_start(&tpm);
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
    make_tpm(&tpm_b, "tpm-b");
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
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char uri[4200];
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.slot_backend = "tpm2";
    o.slot_config = t->config;
    return km_open(out, uri, &o);
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
    swtpm_stop(&tpm);
    swtpm_start(&tpm);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open after restart: %s",
                  km_error_last()->message);
    km_close(c2);
    /* another TPM (another seed) cannot */
    make_tpm(&tpm_b, "tpm-b");
    rc = open_with_tpm(&tpm_b, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "open with another TPM gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* the TPM away: a backend error, quickly, with the TSS2 code */
    swtpm_kill(&tpm);
    rc = open_with_tpm(&tpm, &c2);
    ck_assert_msg(rc == KM_E_BACKEND, "open with the TPM down gave %s", km_err_name(rc));
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_TSS2);
    swtpm_start(&tpm);
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
    tools(&tpm, "tpm2_pcrextend 16:sha256=0000000000000000000000000000000000000000000000000000000000000001");
    rc = open_with_tpm(&tpm, &c2);
    ck_assert_msg(rc == KM_E_AUTH, "open after the PCR changed gave %s (%s)", km_err_name(rc),
                  km_error_last()->message);
    ck_assert_ptr_null(c2);
    /* a TPM restart resets PCR 16: the slot opens again */
    swtpm_stop(&tpm);
    swtpm_start(&tpm);
    ck_assert_msg(open_with_tpm(&tpm, &c2) == KM_OK, "open after a reset: %s",
                  km_error_last()->message);
    km_close(c2);
}
END_TEST

static Suite *tpm2_suite(void)
{
    Suite *s = suite_create("tpm2");
    TCase *tc = tcase_create("swtpm");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_tpm2_ecdsa_sign_verify);
    tcase_add_test(tc, test_tpm2_hmac);
    tcase_add_test(tc, test_tpm2_cached_handles_evict);
    tcase_add_test(tc, test_tpm2_aes_gcm_round_trip_and_tamper);
    tcase_add_test(tc, test_tpm2_rotate);
    tcase_add_test(tc, test_tpm2_keys_reload_after_restart);
    tcase_add_test(tc, test_tpm2_killed_gives_backend_error_then_recovers);
    tcase_add_test(tc, test_tpm2_restart_under_open_handle_recovers);
    tcase_add_test(tc, test_tpm2_other_tpm_cannot_use_keys);
    tcase_add_test(tc, test_tpm2_unsupported_type_refused);
    tcase_add_test(tc, test_tpm2_keyslot_opens_on_this_tpm_only);
    tcase_add_test(tc, test_tpm2_keyslot_pcr_policy);
    tcase_add_test(tc, test_tpm2_ecdh_agree);
    tcase_add_test(tc, test_tpm2_rsa_pss_and_oaep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (!have_tools()) {
        /* never a silent skip: the build asked for the TPM backend */
        fprintf(stderr, "check_tpm2: swtpm or tpm2-tools not installed (apt-get install swtpm "
                        "swtpm-tools tpm2-tools): FAILED\n");
        return 1;
    }
    sr = srunner_create(tpm2_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
