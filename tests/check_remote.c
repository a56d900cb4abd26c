/* check_remote.c - libkm's client mode (src/api/remote.c, docs/KMD.md):
 * km_open("kmd:SOCKET") and km_open("kmip://HOST:PORT") give the public API
 * executed in kmd as the connection's principal. Ciphertexts, wrapped data
 * keys, MAC tags and signatures made through kmd open and verify in the
 * embedded mode and the other way round, byte for byte the same format;
 * errors come back with libkm's code and kmd's detail; the vault's own
 * administration is refused with KM_E_UNSUPPORTED; the attacker: a client
 * that names another principal, reaches for vault administration, is
 * removed while connected, sends malformed calls, or sees kmd killed or
 * stopped mid-call. Each test starts its own kmd (stopped by PID) on a
 * socket in the test's directory, our uid mapped to the principal under
 * test. */
#define _GNU_SOURCE 1
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <km.h>
#include <km/sys/server.h>

#include "kmip_ttlv.h"
#include "testutil.h"

static char *dir;
static km_ctx *owner;
static pid_t kmd_pid;
static char sock[100], uri[120];

static void kmd_stop(int sig)
{
    int status, i;
    if (kmd_pid <= 0)
        return;
    kill(kmd_pid, sig);
    for (i = 0; i < 200 && waitpid(kmd_pid, &status, WNOHANG) != kmd_pid; i++)
        tu_sleep_ms(50);
    if (i == 200) {
        kill(kmd_pid, SIGKILL);
        waitpid(kmd_pid, &status, 0);
    }
    kmd_pid = 0;
}

/* Starts kmd with our uid mapped to `who` and `extra` configuration lines. */
static void kmd_start(const char *who, const char *extra)
{
    char path[700], conf[700], bin[700];
    const char *b = getenv("top_builddir");
    FILE *f;

    snprintf(path, sizeof path, "%s/pass", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(TU_PASS "\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0600), 0);
    snprintf(conf, sizeof conf, "%s/kmd.conf", dir);
    f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "vault = lmdb:%s/vault\nsocket = %s\nrefresh_ms = 10\npassphrase_file = %s\n"
            "principal.%u = %s\n%s", dir, sock, path, (unsigned)getuid(), who,
            extra != NULL ? extra : "");
    fclose(f);
    snprintf(bin, sizeof bin, "%s/src/kmd/kmd", b != NULL ? b : ".");
    tu_kmd_spawn(bin, conf, dir, sock, &kmd_pid);
}

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
    snprintf(sock, sizeof sock, "%s/kmd.sock", dir);
    snprintf(uri, sizeof uri, "kmd:%s", sock);
    kmd_pid = 0;
}

static void teardown(void)
{
    kmd_stop(SIGTERM);
    tu_teardown(&dir, &owner);
}


/* A client context as the principal kmd maps us to. */
static km_ctx *client(void)
{
    km_ctx *c = NULL;
    OK(km_open(&c, uri, NULL));
    return c;
}

static void expect_err(int rc, int code, const char *part)
{
    ck_assert_msg(rc == code, "rc %s, expected %s (%s)", km_err_name(rc), km_err_name(code),
                  km_error_last()->message);
    ck_assert_int_eq(km_error_last()->code, code);
    if (part != NULL)
        ck_assert_msg(strstr(km_error_last()->message, part) != NULL, "'%s' not in '%s'", part,
                      km_error_last()->message);
}

/* The same API through kmd, and the same bytes: an admin creates keys through
 * kmd; what it encrypts, wraps, MACs and signs opens and verifies in the
 * embedded mode (the owner's context on the vault), and the other way
 * round. */
START_TEST(test_remote_same_bytes)
{
    km_ctx *c;
    km_key *ka = NULL, *kh = NULL, *ke = NULL, *ea = NULL, *eh = NULL, *ee = NULL;
    uint8_t vid[16], vid2[16], ct[256], pt[256], tag1[64], tag2[64], sig[256], w[256];
    size_t ct_len, pt_len, t1, t2, sig_len, w_len;
    km_secret *dk = NULL, *dk2 = NULL;
    km_keyinfo *info = NULL;
    uint32_t roles = 0, v = 0;
    char name[80];

    kmd_start(TU_ADMIN, NULL);
    c = client();
    OK(km_whoami(c, name, sizeof name, &roles));
    ck_assert_str_eq(name, TU_ADMIN);
    ck_assert_uint_eq(roles, KM_ROLE_ADMIN);
    OK(km_vault_id(c, vid));
    OK(km_vault_id(owner, vid2));
    ck_assert_mem_eq(vid, vid2, 16);
    OK(km_key_create(&ka, c, "ra", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&kh, c, "rh", KM_KEY_HMAC_SHA256, NULL));
    OK(km_key_create(&ke, c, "re", KM_KEY_EC_P256, NULL));
    ck_assert_str_eq(km_key_name(ka), "ra");
    ck_assert_int_eq(km_key_get_type(ke), KM_KEY_EC_P256);
    OK(km_key_open(&ea, owner, "ra"));
    OK(km_key_open(&eh, owner, "rh"));
    OK(km_key_open(&ee, owner, "re"));
    ck_assert_mem_eq(km_key_id(ka), km_key_id(ea), 16);

    /* encrypt through kmd, decrypt embedded; and back */
    OK(km_encrypt(ka, (const uint8_t *)"hello", 5, (const uint8_t *)"ad", 2, ct, sizeof ct, &ct_len));
    ck_assert_uint_eq(ct_len, 5 + km_ciphertext_overhead());
    OK(km_decrypt(owner, 0, ct, ct_len, (const uint8_t *)"ad", 2, pt, sizeof pt, &pt_len));
    ck_assert_mem_eq(pt, "hello", 5);
    OK(km_encrypt(ea, (const uint8_t *)"world", 5, NULL, 0, ct, sizeof ct, &ct_len));
    OK(km_decrypt(c, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len));
    ck_assert_uint_eq(pt_len, 5);
    ck_assert_mem_eq(pt, "world", 5);
    OK(km_decrypt_key(ka, 0, ct, ct_len, NULL, 0, pt, sizeof pt, &pt_len));
    /* a wrong AAD through kmd: the integrity error, kmd's detail */
    expect_err(km_decrypt(c, 0, ct, ct_len, (const uint8_t *)"x", 1, pt, sizeof pt, &pt_len),
               KM_E_INTEGRITY, NULL);
    /* too small a buffer: KM_E_BUFFER and the size needed */
    pt_len = 0;
    expect_err(km_decrypt(c, 0, ct, ct_len, NULL, 0, pt, 2, &pt_len), KM_E_BUFFER, NULL);
    ck_assert_uint_eq(pt_len, 5);

    /* envelope: a data key made through kmd opens embedded, and back */
    OK(km_datakey_generate(ka, NULL, 0, &dk, w, sizeof w, &w_len));
    OK(km_datakey_decrypt(owner, w, w_len, NULL, 0, &dk2));
    ck_assert_uint_eq(km_secret_len(dk), km_secret_len(dk2));
    ck_assert_mem_eq(km_secret_data(dk), km_secret_data(dk2), km_secret_len(dk));
    km_secret_free(dk);
    km_secret_free(dk2);
    OK(km_datakey_generate(ea, NULL, 0, &dk, w, sizeof w, &w_len));
    OK(km_datakey_decrypt(c, w, w_len, NULL, 0, &dk2));
    ck_assert_mem_eq(km_secret_data(dk), km_secret_data(dk2), km_secret_len(dk));
    km_secret_free(dk);
    km_secret_free(dk2);

    /* MAC tags are deterministic: the same bytes both ways */
    OK(km_mac(kh, 0, (const uint8_t *)"m", 1, tag1, sizeof tag1, &t1));
    OK(km_mac(eh, 0, (const uint8_t *)"m", 1, tag2, sizeof tag2, &t2));
    ck_assert_uint_eq(t1, t2);
    ck_assert_mem_eq(tag1, tag2, t1);
    OK(km_mac_verify(eh, 0, 0, (const uint8_t *)"m", 1, tag1, t1));
    tag1[t1 - 1] ^= 1;
    ck_assert_int_ne(km_mac_verify(kh, 0, 0, (const uint8_t *)"m", 1, tag1, t1), KM_OK);

    /* signatures verify across */
    OK(km_sign(ke, 0, (const uint8_t *)"s", 1, sig, sizeof sig, &sig_len));
    OK(km_verify(ee, 0, 0, (const uint8_t *)"s", 1, sig, sig_len));
    OK(km_sign(ee, 0, (const uint8_t *)"t", 1, sig, sizeof sig, &sig_len));
    OK(km_verify(ke, 0, 0, (const uint8_t *)"t", 1, sig, sig_len));
    ck_assert_int_ne(km_verify(ke, 0, 0, (const uint8_t *)"u", 1, sig, sig_len), KM_OK);

    /* the lifecycle and the key's metadata through kmd */
    OK(km_key_rotate(ka, &v));
    ck_assert_uint_eq(v, 2);
    OK(km_key_set_tag(ka, "team", "orders"));
    OK(km_key_info(&info, ka));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 2);
    ck_assert_uint_eq(km_keyinfo_primary(info), 2);
    ck_assert_str_eq(km_keyinfo_owner(info), TU_ADMIN);
    ck_assert_uint_eq(km_keyinfo_tag_count(info), 1);
    km_keyinfo_free(info);
    km_key_free(ka);
    OK(km_key_create(&ka, c, "rs", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_suspend(ka, 0));
    expect_err(km_encrypt(ka, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len),
               KM_E_STATE, NULL);
    OK(km_key_resume(ka, 0));
    OK(km_encrypt(ka, (const uint8_t *)"x", 1, NULL, 0, ct, sizeof ct, &ct_len));

    km_key_free(ka);
    km_key_free(kh);
    km_key_free(ke);
    km_key_free(ea);
    km_key_free(eh);
    km_key_free(ee);
    km_close(c);
}
END_TEST

static int count_keys(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    (void)name;
    (void)id;
    (void)type;
    (*(int *)arg)++;
    return 0;
}

static int via_peer(const km_audit_entry *e, void *arg)
{
    if (strcmp(e->op, "key.create") == 0 && strncmp(e->principal, TU_ADMIN " via uid:", 
                                                    strlen(TU_ADMIN " via uid:")) == 0)
        *(int *)arg = -1;
    return 0;
}

/* Listings, audit and policy through kmd; audit entries name the principal
 * via the peer. */
START_TEST(test_remote_admin)
{
    km_ctx *c;
    km_key *k = NULL;
    km_audit_head h;
    uint64_t count = 0, bad = 0;
    char pol[65536];
    size_t pol_len = 0;
    int n = 0;

    kmd_start(TU_ADMIN, NULL);
    c = client();
    OK(km_key_create(&k, c, "a1", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT));
    {
        /* km_batch through kmd, item by item: each opens embedded; one bad item
         * fails alone, with its detail */
        km_batch_item it[3];
        uint8_t o[3][64], pt[64];
        size_t pl, i;
        memset(it, 0, sizeof it);
        for (i = 0; i < 3; i++) {
            it[i].in = (const uint8_t *)"batch";
            it[i].in_len = 5;
            it[i].out = o[i];
            it[i].out_cap = i == 2 ? 4 : sizeof o[i];
        }
        ck_assert_int_eq(km_batch(k, KM_BATCH_ENCRYPT, 0, it, 3), KM_E_BUFFER);
        for (i = 0; i < 2; i++) {
            OK(it[i].result);
            OK(km_decrypt(owner, 0, o[i], it[i].out_len, NULL, 0, pt, sizeof pt, &pl));
            ck_assert_mem_eq(pt, "batch", 5);
        }
        ck_assert_int_eq(it[2].result, KM_E_BUFFER);
        ck_assert_str_ne(it[2].detail, "");
    }
    OK(km_key_list(c, count_keys, &n));
    ck_assert_int_ge(n, 1);
    OK(km_policy_get(c, pol, sizeof pol, &pol_len));
    ck_assert_uint_gt(pol_len, 2);
    OK(km_audit_head_get(c, &h));
    ck_assert_uint_gt(h.seq, 0);
    OK(km_audit_verify(c, &h, &count, &bad));
    ck_assert_uint_ge(count, h.seq);
    /* kmd's audit entry of the create names the principal and the peer */
    OK(km_audit_foreach(owner, 1, via_peer, &n));
    ck_assert_int_eq(n, -1);
    km_key_free(k);
    km_close(c);
}
END_TEST

/* What has no meaning through kmd is refused, saying why; a client cannot
 * name another principal, send a passphrase or create a vault. */
START_TEST(test_remote_refused)
{
    km_ctx *c, *x = NULL;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_secret *sh[2];
    km_key *sk;

    kmd_start(TU_USER, NULL);
    c = client();
    expect_err(km_vault_rekey(c, (const uint8_t *)"p", 1, 0), KM_E_UNSUPPORTED, "kmd's user");
    expect_err(km_vault_add_passphrase(c, (const uint8_t *)"p", 1, 0), KM_E_UNSUPPORTED,
               "kmd's user");
    expect_err(km_vault_add_shares(c, 2, 2, sh), KM_E_UNSUPPORTED, "kmd's user");
    expect_err(km_vault_backup(c, "/tmp/x"), KM_E_UNSUPPORTED, NULL);
    expect_err(km_vault_compact(c), KM_E_UNSUPPORTED, NULL);
    expect_err(km_audit_sink_file(c, "/tmp/x"), KM_E_UNSUPPORTED, "audit");
    x = (km_ctx *)&o;   /* a result pointer reads NULL after a refusal */
    expect_err(km_ctx_delegate(c, TU_ADMIN, "uid:1", &x), KM_E_UNSUPPORTED, NULL);
    ck_assert_ptr_null(x);
    sk = (km_key *)&o;
    expect_err(km_session_key_create(&sk, c, KM_KEY_AES_256_GCM), KM_E_UNSUPPORTED,
               "session key");
    ck_assert_ptr_null(sk);
    /* the library's checks run in kmd, as this principal: a user adds no principal */
    expect_err(km_principal_add(c, "mallory", KM_ROLE_ADMIN, (const uint8_t *)"p", 1, 14),
               KM_E_DENIED, NULL);
    km_close(c);

    o.principal = TU_ADMIN;
    expect_err(km_open(&x, uri, &o), KM_E_DENIED, "cannot name another");
    ck_assert_ptr_null(x);
    o.principal = NULL;
    o.passphrase = (const uint8_t *)TU_ADMIN_PASS;
    o.passphrase_len = strlen(TU_ADMIN_PASS);
    expect_err(km_open(&x, uri, &o), KM_E_INVALID, "no passphrase");
    o.passphrase = NULL;
    o.passphrase_len = 0;
    o.flags = KM_OPEN_CREATE;
    expect_err(km_open(&x, uri, &o), KM_E_UNSUPPORTED, NULL);
    o.flags = 0;
    o.principal = TU_USER;
    OK(km_open(&x, uri, &o));
    km_close(x);
}
END_TEST

/* A principal removed while connected is refused at its next call. */
START_TEST(test_remote_removed_principal)
{
    km_ctx *c;
    km_key *k = NULL, *e = NULL;
    uint8_t ct[128];
    size_t ct_len;

    OK(km_key_create(&e, owner, "uk", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(e, TU_USER, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
    kmd_start(TU_USER, NULL);
    c = client();
    OK(km_key_open(&k, c, "uk"));
    OK(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len));
    OK(km_principal_remove(owner, TU_USER, 0));
    tu_sleep_ms(50);   /* kmd's refresh_ms is 10 */
    expect_err(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len),
               KM_E_DENIED, NULL);
    km_key_free(k);
    km_key_free(e);
    km_close(c);
}
END_TEST

/* A raw KMIP request of the vendor call. */
static int raw_call(int fd, int32_t fn, int nargs, uint32_t *reason)
{
    km__ttlv_enc e;
    km__ttlv_tree t;
    km__kmip_response r;
    const uint8_t *req;
    uint8_t head[8], *resp;
    size_t len, total = 0;
    int i, rc = -1;

    km__ttlv_enc_init(&e, 0);
    km__kmip_req_begin(&e, 2, 0, 1);
    km__kmip_item_begin(&e, KM_KMD_OP_CALL, NULL, 0);
    km__ttlv_put_int(&e, KM_KMD_TAG_FUNCTION, fn);
    for (i = 0; i < nargs; i++)
        km__ttlv_put_text(&e, KM_KMD_TAG_ARG, "x", 1);
    km__kmip_item_end(&e);
    km__kmip_req_end(&e);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &req, &len), KM_OK);
    ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    km__ttlv_enc_free(&e);
    ck_assert_int_eq(recv(fd, head, 8, MSG_WAITALL), 8);
    ck_assert_int_eq(km__ttlv_peek_len(head, 8, 1 << 20, &total), KM_OK);
    resp = malloc(total);
    memcpy(resp, head, 8);
    ck_assert_int_eq(recv(fd, resp + 8, total - 8, MSG_WAITALL), (ssize_t)(total - 8));
    ck_assert_int_eq(km__ttlv_decode(resp, total, NULL, &t), KM_OK);
    ck_assert_int_eq(km__kmip_response_parse(&t, &r), KM_OK);
    *reason = r.items[0].reason;
    if (r.items[0].status == KM__KMIP_STATUS_SUCCESS) {
        int32_t krc = 0;
        ck_assert_int_eq(km__ttlv_get_int(&t, r.items[0].payload, KM_KMD_TAG_RC, &krc), KM_OK);
        rc = krc;
    }
    km__ttlv_tree_free(&t);
    free(resp);
    return rc;
}

static int connect_kmd(void)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Malformed vendor calls: refused with Invalid Message, kmd stays up; a
 * function that is not served (none administers the vault) is
 * KM_E_UNSUPPORTED. */
START_TEST(test_remote_malformed)
{
    uint32_t reason = 0;
    km_ctx *c;
    char name[80];
    int fd;

    kmd_start(TU_ADMIN, NULL);
    fd = connect_kmd();
    /* km_encrypt takes 4 arguments: 1 text is wrong in number and type */
    ck_assert_int_eq(raw_call(fd, KM__KC_ENCRYPT, 1, &reason), -1);
    ck_assert_uint_eq(reason, KM__KMIP_REASON_INVALID_MESSAGE);
    ck_assert_int_eq(raw_call(fd, KM__KC_ENCRYPT, 4, &reason), -1);
    ck_assert_uint_eq(reason, KM__KMIP_REASON_INVALID_MESSAGE);
    /* km_key_open: a Text name is right, but the output must be a capacity */
    ck_assert_int_eq(raw_call(fd, KM__KC_KEY_OPEN, 2, &reason), -1);
    ck_assert_uint_eq(reason, KM__KMIP_REASON_INVALID_MESSAGE);
    ck_assert_int_eq(raw_call(fd, 9999, 0, &reason), KM_E_UNSUPPORTED);
    close(fd);
    c = client();
    OK(km_whoami(c, name, sizeof name, NULL));
    ck_assert_str_eq(name, TU_ADMIN);
    km_close(c);
}
END_TEST

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* kmd stopped (SIGSTOP) mid-session: the call fails with KM_E_IO after the
 * timeout, no hang; kmd killed: KM_E_IO at once; kmd back: the same context
 * connects again. */
/* Stops kmd and waits until it is stopped: kill() only queues SIGSTOP, and a
 * connection thread woken by a request before the group stop reached it
 * could still answer (the test's "no answer in time" then read KM_OK). */
static void kmd_pause(void)
{
    int st = 0;
    ck_assert_int_eq(kill(kmd_pid, SIGSTOP), 0);
    ck_assert_int_eq(waitpid(kmd_pid, &st, WUNTRACED), kmd_pid);
    ck_assert(WIFSTOPPED(st));
}

START_TEST(test_remote_kmd_gone)
{
    km_ctx *c;
    km_key *k = NULL;
    uint8_t ct[128];
    size_t ct_len;
    long long t0;

    setenv("KM_KMD_TIMEOUT_MS", "700", 1);
    kmd_start(TU_ADMIN, NULL);
    c = client();
    OK(km_key_create(&k, c, "g", KM_KEY_AES_256_GCM, NULL));
    kmd_pause();
    t0 = ms_now();
    expect_err(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len), KM_E_IO,
               "in time");
    ck_assert_int_lt(ms_now() - t0, 5000);
    kill(kmd_pid, SIGCONT);
    kmd_stop(SIGKILL);
    t0 = ms_now();
    expect_err(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len), KM_E_IO,
               "kmd");
    ck_assert_int_lt(ms_now() - t0, 2000);
    kmd_start(TU_ADMIN, NULL);
    OK(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len));
    km_key_free(k);
    km_close(c);
    /* killed while it holds the call (a long timeout: the kill, not the
     * timeout, ends the call) */
    setenv("KM_KMD_TIMEOUT_MS", "30000", 1);
    c = client();
    OK(km_key_open(&k, c, "g"));
    kmd_pause();
    {
        pid_t killer = fork(), dead = kmd_pid;
        ck_assert_int_ge(killer, 0);
        if (killer == 0) {
            tu_sleep_ms(300);
            kill(dead, SIGKILL);
            _exit(0);
        }
        t0 = ms_now();
        expect_err(km_encrypt(k, (const uint8_t *)"a", 1, NULL, 0, ct, sizeof ct, &ct_len),
                   KM_E_IO, "closed the connection");
        ck_assert_int_lt(ms_now() - t0, 5000);
        waitpid(killer, NULL, 0);
    }
    kmd_stop(SIGKILL);
    km_key_free(k);
    km_close(c);
    unsetenv("KM_KMD_TIMEOUT_MS");
}
END_TEST

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* kmip://: the same API over kmd's mutual TLS listener, the client
 * certificate's CN naming the principal; a client of another CA is
 * refused with KM_E_IO. */
START_TEST(test_remote_tls)
{
    char pki[700], cmd[2048], extra[2600], u[64], name[80];
    const char *src = getenv("top_srcdir");
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    char ca[800], crt[800], key[800], okey[800], ocrt[800];
    km_ctx *c = NULL;
    int port = free_port();

    snprintf(pki, sizeof pki, "%s/pki", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && sh %s/tests/kmip/pykmip.sh certs %s >/dev/null",
             pki, src != NULL ? src : ".", pki);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(extra, sizeof extra, "tls_listen = 127.0.0.1:%d\ntls_ca = %s/ca.crt\n"
             "tls_cert = %s/server.crt\ntls_key = %s/server.key\n"
             "tls_principal.libkm-a = " TU_AUDITOR "\n", port, pki, pki, pki);
    kmd_start(TU_ADMIN, extra);
    snprintf(u, sizeof u, "kmip://127.0.0.1:%d", port);
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    snprintf(crt, sizeof crt, "%s/client.crt", pki);
    snprintf(key, sizeof key, "%s/client.key", pki);
    o.tls_ca = ca;
    o.tls_cert = crt;
    o.tls_key = key;
    OK(km_open(&c, u, &o));
    OK(km_whoami(c, name, sizeof name, NULL));
    ck_assert_str_eq(name, TU_AUDITOR);
    km_close(c);
    c = NULL;
    snprintf(ocrt, sizeof ocrt, "%s/other.crt", pki);
    snprintf(okey, sizeof okey, "%s/other.key", pki);
    o.tls_cert = ocrt;
    o.tls_key = okey;
    expect_err(km_open(&c, u, &o), KM_E_IO, NULL);
    ck_assert_ptr_null(c);
    o.tls_ca = NULL;
    expect_err(km_open(&c, u, &o), KM_E_INVALID, "tls_ca");
}
END_TEST

/* ------------------------------------------------ the standard operations */
/* km_encrypt, km_decrypt, km_sign / km_verify, km_mac / km_mac_verify and
 * km_random go over KMIP's own Encrypt, Decrypt, Sign, SignatureVerify, MAC,
 * MACVerify and RNGRetrieve (src/api/remote.c, docs/KMD.md "Which calls take
 * which path"); what they cannot carry falls back to the libkm call. A
 * proxy between client and kmd logs each request's operation and Unique
 * Identifier ("<op hex> <uid or ->" per line): what went over the wire, not
 * what the client says it did. */

static pid_t proxy_pid;
static char psock[100], plog[700], puri[140];

static int io_full(int fd, uint8_t *b, size_t n, int out)
{
    while (n > 0) {
        ssize_t k = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One message from `from` (malloc'd), or NULL at its end. */
static uint8_t *msg_read(int from, size_t *len)
{
    uint8_t head[8], *m;
    size_t total = 0;
    if (io_full(from, head, 8, 0) != 0 || km__ttlv_peek_len(head, 8, 64u << 20, &total) != KM_OK
        || (m = malloc(total)) == NULL)
        return NULL;
    memcpy(m, head, 8);
    if (io_full(from, m + 8, total - 8, 0) != 0) {
        free(m);
        return NULL;
    }
    *len = total;
    return m;
}

/* The relay of one client connection: each request logged, then passed on. */
static void proxy_relay(int c)
{
    struct sockaddr_un a;
    int up = socket(AF_UNIX, SOCK_STREAM, 0);
    FILE *lf;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    if (connect(up, (struct sockaddr *)&a, sizeof a) != 0)
        _exit(1);
    for (;;) {
        km__ttlv_tree t;
        size_t len = 0, i;
        uint8_t *m = msg_read(c, &len);
        if (m == NULL)
            _exit(0);
        memset(&t, 0, sizeof t);
        if (km__ttlv_decode(m, len, NULL, &t) == KM_OK && (lf = fopen(plog, "a")) != NULL) {
            int bi;
            for (i = 0; (bi = km__ttlv_child(&t, 0, KM__KMIP_TAG_BATCH_ITEM, (int)i)) >= 0; i++) {
                uint32_t op = 0;
                int pl = -1;
                const char *uid = "-";
                size_t ul = 1;
                (void)km__ttlv_get_enum(&t, bi, KM__KMIP_TAG_OPERATION, &op);
                if (km__ttlv_get_struct(&t, bi, KM__KMIP_TAG_REQUEST_PAYLOAD, &pl) == KM_OK
                    && km__ttlv_get_text(&t, pl, KM__KMIP_TAG_UNIQUE_IDENTIFIER, &uid, &ul)
                           != KM_OK) {
                    uid = "-";
                    ul = 1;
                }
                fprintf(lf, "%x %.*s\n", op, (int)ul, uid);
            }
            fclose(lf);
        }
        km__ttlv_tree_free(&t);
        if (io_full(up, m, len, 1) != 0)
            _exit(1);
        free(m);
        if ((m = msg_read(up, &len)) == NULL || io_full(c, m, len, 1) != 0)
            _exit(1);
        free(m);
    }
}

/* kmd as `who`, and the proxy in front of it at puri. */
static void proxy_start(const char *who)
{
    struct sockaddr_un a;
    int ls;

    kmd_start(who, NULL);
    snprintf(psock, sizeof psock, "%s/proxy.sock", dir);
    snprintf(puri, sizeof puri, "kmd:%s", psock);
    snprintf(plog, sizeof plog, "%s/proxy.log", dir);
    ls = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", psock);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(ls, 8), 0);
    proxy_pid = fork();
    ck_assert_int_ge(proxy_pid, 0);
    if (proxy_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGCHLD, SIG_IGN);
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c < 0)
                continue;
            if (fork() == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(ls);
                proxy_relay(c);
            }
            close(c);
        }
    }
    close(ls);
}

static void std_teardown(void)
{
    if (proxy_pid > 0) {
        kill(proxy_pid, SIGKILL);
        waitpid(proxy_pid, NULL, 0);
        proxy_pid = 0;
    }
    teardown();
}

/* The proxy's log from line `from` on, joined with ',' ("1f 0123…,20 …"). */
static void log_from(int from, char *out, size_t cap)
{
    char line[200];
    FILE *f = fopen(plog, "r");
    int n = 0;
    out[0] = '\0';
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (n++ >= from)
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", line);
    }
    fclose(f);
}

static int log_lines(void)
{
    char all[65536], *p;
    int n = 0;
    log_from(0, all, sizeof all);
    for (p = all; *p != '\0'; p++)
        n += *p == ',';
    return all[0] != '\0' ? n + 1 : 0;
}

/* The operations (hex) of the log from line `from`, joined with ','. */
static void ops_from(int from, char *out, size_t cap)
{
    char all[65536], *save = NULL, *tok;
    out[0] = '\0';
    log_from(from, all, sizeof all);
    for (tok = strtok_r(all, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        tok[strcspn(tok, " ")] = '\0';
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", tok);
    }
}

static void hex_id(const uint8_t id[16], char out[33])
{
    int i;
    for (i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", id[i]);
}

/* Each data call over its standard operation (the wire shows it), the same
 * bytes as the embedded mode; the calls they cannot carry (a flag, another
 * signature format, an output too small) take the libkm call. */
START_TEST(test_std_data_path)
{
    km_ctx *c;
    km_key *a = NULL, *m = NULL, *s = NULL, *oa = NULL, *om = NULL, *os = NULL;
    uint8_t ct[128], ct2[128], pt[64], tag[KM_MAC_MAX], otag[KM_MAC_MAX], sig[KM_SIGNATURE_MAX],
        rnd[32], small[8];
    size_t ctl = 0, ct2l = 0, ptl = 0, tl = 0, otl = 0, sl = 0;
    char ops[4096], want[256], id[33];
    int n0;

    proxy_start(TU_ADMIN);
    OK(km_open(&c, puri, NULL));
    OK(km_key_create(&a, c, "sa", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_create(&m, c, "sm", KM_KEY_HMAC_SHA256, NULL));
    OK(km_key_create(&s, c, "ss", KM_KEY_EC_P256, NULL));
    OK(km_key_open(&oa, owner, "sa"));
    OK(km_key_open(&om, owner, "sm"));
    OK(km_key_open(&os, owner, "ss"));

    n0 = log_lines();
    OK(km_encrypt(a, (const uint8_t *)"standard", 8, (const uint8_t *)"ad", 2, ct, sizeof ct, &ctl));
    ck_assert_uint_eq(ctl, 8 + KM_CIPHERTEXT_OVERHEAD);
    /* format v1 as docs/FORMATS.md has it: 'K' 'M' 1, the type, the key id, version 1 */
    ck_assert_int_eq(ct[0], 'K');
    ck_assert_int_eq(ct[1], 'M');
    ck_assert_int_eq(ct[2], 1);
    ck_assert_int_eq(ct[3], KM_KEY_AES_256_GCM);
    ck_assert_mem_eq(ct + 4, km_key_id(a), 16);
    ck_assert_int_eq(ct[23], 1);
    /* the embedded mode opens it, and the other way round */
    OK(km_decrypt(owner, 0, ct, ctl, (const uint8_t *)"ad", 2, pt, sizeof pt, &ptl));
    ck_assert_mem_eq(pt, "standard", 8);
    OK(km_encrypt(oa, (const uint8_t *)"embedded", 8, NULL, 0, ct2, sizeof ct2, &ct2l));
    OK(km_decrypt(c, 0, ct2, ct2l, NULL, 0, pt, sizeof pt, &ptl));
    ck_assert_uint_eq(ptl, 8);
    ck_assert_mem_eq(pt, "embedded", 8);
    OK(km_decrypt_key(a, 0, ct, ctl, (const uint8_t *)"ad", 2, pt, sizeof pt, &ptl));
    ck_assert_mem_eq(pt, "standard", 8);
    /* the wrong AAD: libkm's code and message */
    expect_err(km_decrypt(c, 0, ct, ctl, (const uint8_t *)"AD", 2, pt, sizeof pt, &ptl),
               KM_E_INTEGRITY, "failed authentication");
    ck_assert_uint_eq(ptl, 0);
    /* an altered algorithm byte is libkm's to refuse (kmd rebuilds the header) */
    ct[3] = KM_KEY_AES_128_GCM;
    ck_assert_int_ne(km_decrypt(c, 0, ct, ctl, (const uint8_t *)"ad", 2, pt, sizeof pt, &ptl),
                     KM_OK);
    ct[3] = KM_KEY_AES_256_GCM;
    /* an HMAC tag: the same bytes as the embedded mode's */
    OK(km_mac(m, 0, (const uint8_t *)"msg", 3, tag, sizeof tag, &tl));
    OK(km_mac(om, 0, (const uint8_t *)"msg", 3, otag, sizeof otag, &otl));
    ck_assert_uint_eq(tl, otl);
    ck_assert_mem_eq(tag, otag, tl);
    OK(km_mac_verify(m, 0, 0, (const uint8_t *)"msg", 3, tag, tl));
    tag[tl - 1] ^= 1;
    expect_err(km_mac_verify(m, 0, 0, (const uint8_t *)"msg", 3, tag, tl), KM_E_VERIFY,
               "MAC does not verify");
    /* a signature verifies in the embedded mode, and a tampered one nowhere */
    OK(km_sign(s, 0, (const uint8_t *)"msg", 3, sig, sizeof sig, &sl));
    OK(km_verify(os, 0, 0, (const uint8_t *)"msg", 3, sig, sl));
    OK(km_verify(s, 0, 0, (const uint8_t *)"msg", 3, sig, sl));
    expect_err(km_verify(s, 0, 0, (const uint8_t *)"msG", 3, sig, sl), KM_E_VERIFY,
               "signature does not verify");
    OK(km_sign(s, KM_SIG_RAW, (const uint8_t *)"msg", 3, sig, sizeof sig, &sl));
    OK(km_verify(os, 1, KM_SIG_RAW, (const uint8_t *)"msg", 3, sig, sl));
    OK(km_random(c, NULL, rnd, sizeof rnd));
    ops_from(n0, ops, sizeof ops);
    /* Encrypt, Decrypt x3, the altered header by the libkm call (the client
     * cannot vouch for it), MAC, MACVerify x2, Sign, SignatureVerify x2,
     * Sign, RNGRetrieve */
    ck_assert_str_eq(ops, "1f,20,20,20,80000002,23,24,24,21,22,22,21,25");
    hex_id(km_key_id(a), id);
    log_from(n0, want, sizeof want);
    ck_assert_msg(strncmp(want, "1f ", 3) == 0 && strncmp(want + 3, id, 32) == 0
                  && want[35] == ',', "Encrypt named '%s', not the key's version 1", want);

    /* what the standard operations cannot carry: the libkm call */
    n0 = log_lines();
    OK(km_decrypt(c, KM_DECRYPT_ALLOW_COMPROMISED, ct, ctl, (const uint8_t *)"ad", 2, pt,
                  sizeof pt, &ptl));
    ck_assert_mem_eq(pt, "standard", 8);
    OK(km_sign(s, KM_SIG_P1363, (const uint8_t *)"msg", 3, sig, sizeof sig, &sl));
    ck_assert_uint_eq(sl, KM_TAG_HEADER + 64);
    expect_err(km_encrypt(a, (const uint8_t *)"standard", 8, NULL, 0, small, sizeof small, &ctl),
               KM_E_BUFFER, NULL);
    ck_assert_uint_eq(ctl, 8 + KM_CIPHERTEXT_OVERHEAD);
    ck_assert_int_eq(km_random(c, NULL, rnd, 0), KM_E_INVALID);
    ops_from(n0, ops, sizeof ops);
    ck_assert_str_eq(ops, "80000002,80000002,80000002,80000002");

    km_key_free(a);
    km_key_free(m);
    km_key_free(s);
    km_key_free(oa);
    km_key_free(om);
    km_key_free(os);
    km_close(c);
}
END_TEST

/* Errors over the standard operations keep libkm's code and message: a key
 * of the wrong type, a principal without the right, a suspended key; each
 * the same as the embedded mode gives the same principal, and over the
 * standard operation (the wire shows it). */
START_TEST(test_std_errors)
{
    km_ctx *c, *ue;
    km_key *a = NULL, *oa = NULL, *ua = NULL, *d = NULL, *od = NULL;
    uint8_t out[128], tag[KM_MAC_MAX];
    size_t n = 0;
    char local[400], ops[512];
    int rc, n0;

    proxy_start(TU_USER);
    OK(km_key_create(&oa, owner, "ea", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(oa, TU_USER, KM_PERM_ENCRYPT | KM_PERM_MAC));
    OK(km_key_create(&od, owner, "ed", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_grant(od, TU_USER, KM_PERM_DECRYPT));
    ue = tu_as(dir, TU_USER, TU_USER_PASS);   /* the same principal, embedded */
    OK(km_key_open(&ua, ue, "ea"));
    OK(km_open(&c, puri, NULL));
    OK(km_key_open(&a, c, "ea"));
    OK(km_key_open(&d, c, "ed"));
    n0 = log_lines();

    /* the wrong key type: an AES key computes no MAC */
    rc = km_mac(ua, 0, (const uint8_t *)"m", 1, tag, sizeof tag, &n);
    ck_assert_int_eq(rc, KM_E_USAGE);
    snprintf(local, sizeof local, "%s", km_error_last()->message);
    expect_err(km_mac(a, 0, (const uint8_t *)"m", 1, tag, sizeof tag, &n), KM_E_USAGE, NULL);
    ck_assert_str_eq(km_error_last()->message, local);

    /* denied: a decrypt-only grant does not encrypt */
    {
        km_key *ud = NULL;
        OK(km_key_open(&ud, ue, "ed"));
        rc = km_encrypt(ud, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &n);
        ck_assert_int_eq(rc, KM_E_DENIED);
        snprintf(local, sizeof local, "%s", km_error_last()->message);
        km_key_free(ud);
    }
    expect_err(km_encrypt(d, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &n), KM_E_DENIED,
               NULL);
    ck_assert_str_eq(km_error_last()->message, local);
    ck_assert_uint_eq(n, 0);

    /* a suspended key encrypts no more: KM_E_STATE, not a Permission Denied's code */
    OK(km_key_suspend(oa, 0));
    tu_sleep_ms(50);   /* kmd's refresh_ms is 10 */
    rc = km_encrypt(oa, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &n);
    ck_assert_int_eq(rc, KM_E_STATE);
    snprintf(local, sizeof local, "%s", km_error_last()->message);
    expect_err(km_encrypt(a, (const uint8_t *)"x", 1, NULL, 0, out, sizeof out, &n), KM_E_STATE,
               NULL);
    ck_assert_str_eq(km_error_last()->message, local);
    ck_assert_ptr_null(strstr(local, "KM_E_"));

    ops_from(n0, ops, sizeof ops);
    ck_assert_str_eq(ops, "23,1f,1f");
    km_key_free(a);
    km_key_free(d);
    km_key_free(ua);
    km_key_free(oa);
    km_key_free(od);
    km_close(c);
    km_close(ue);
}
END_TEST

/* A key rotated elsewhere: the client's next Encrypt names the replaced
 * version 1 object, kmd refuses it (its own refusal, not libkm's), the libkm
 * call encrypts with version 2, and from then on Encrypt names "<id>-v2";
 * a version 2 ciphertext decrypts through the "-v2" object, version 1's
 * through the bare id. */
START_TEST(test_std_rotated)
{
    km_ctx *c;
    km_key *a = NULL, *oa = NULL;
    uint8_t ct1[64], ct2[64], ct3[64], pt[16];
    size_t l1 = 0, l2 = 0, l3 = 0, pl = 0;
    uint32_t v = 0;
    char got[1024], want[256], id[33];
    int n0;

    proxy_start(TU_ADMIN);
    OK(km_open(&c, puri, NULL));
    OK(km_key_create(&a, c, "ra", KM_KEY_AES_256_GCM, NULL));
    OK(km_encrypt(a, (const uint8_t *)"one", 3, NULL, 0, ct1, sizeof ct1, &l1));
    OK(km_key_open(&oa, owner, "ra"));
    OK(km_key_rotate(oa, &v));
    ck_assert_uint_eq(v, 2);
    tu_sleep_ms(50);   /* kmd's refresh_ms is 10 */
    hex_id(km_key_id(a), id);

    n0 = log_lines();
    OK(km_encrypt(a, (const uint8_t *)"two", 3, NULL, 0, ct2, sizeof ct2, &l2));
    ck_assert_int_eq(ct2[23], 2);
    OK(km_encrypt(a, (const uint8_t *)"three", 5, NULL, 0, ct3, sizeof ct3, &l3));
    ck_assert_int_eq(ct3[23], 2);
    OK(km_decrypt(c, 0, ct3, l3, NULL, 0, pt, sizeof pt, &pl));
    ck_assert_mem_eq(pt, "three", 5);
    OK(km_decrypt(c, 0, ct1, l1, NULL, 0, pt, sizeof pt, &pl));
    ck_assert_mem_eq(pt, "one", 3);
    OK(km_decrypt(owner, 0, ct2, l2, NULL, 0, pt, sizeof pt, &pl));
    ck_assert_mem_eq(pt, "two", 3);
    log_from(n0, got, sizeof got);
    snprintf(want, sizeof want, "1f %s,80000002 -,1f %s-v2,20 %s-v2,20 %s", id, id, id, id);
    ck_assert_str_eq(got, want);
    km_key_free(a);
    km_key_free(oa);
    km_close(c);
}
END_TEST

/* ------------------------------------------ dual control, through the socket */

/* Issue 20 item 4 for dual control: the attacks of check_quorum.c (approving
 * one's own request, a self-quorum policy, a spent request replayed, a
 * custodian approving twice, a principal without the custodian role
 * approving) re-run through kmd's socket. Every actor, the requester and each
 * approver, is a child process that setuid()s for good to a uid of its own
 * (64001..64005, mapped in kmd's configuration), so the principal comes from
 * the kernel (SO_PEERCRED), never from the request; the vault's directory is
 * root's, mode 0700: the children reach only the socket. The vault policy
 * asks two approvals for destroy and for the changes that could get round
 * them (the self-quorum rule). The tests run as root (CI: required). */

#define Q_ADMIN 64001   /* alice-admin: the requester */
#define Q_CUST1 64002   /* carol-custodian */
#define Q_CUST2 64003   /* dave-custodian */
#define Q_USER 64004    /* uma-user */
#define Q_BOTH 64005    /* bob-both: admin and custodian */
#define Q_BOTH_NAME "bob-both"
#define Q_CONF "socket_mode = 0666\nprincipal.64001 = " TU_ADMIN "\nprincipal.64002 = " TU_CUST1  \
               "\nprincipal.64003 = " TU_CUST2 "\nprincipal.64004 = " TU_USER                     \
               "\nprincipal.64005 = " Q_BOTH_NAME "\n"

static const char q_policy[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                               "\"principal-change\": 2, \"policy-change\": 2}}";
/* KM_REQ_DESTROY params: BE32 version 1, BE32 grace 7 days */
static const uint8_t q_destroy_1_7[8] = { 0, 0, 0, 1, 0, 0, 0, 7 };
static char q_rundir[64];

/* What one child did through kmd. */
typedef enum {
    Q_CREATE,            /* km_request_create: destroy "old" v1, 7 days' grace */
    Q_APPROVE,           /* km_request_approve(id) */
    Q_DESTROY,           /* km_key_schedule_destroy("old", 1, 7) */
    Q_CANCEL,            /* km_key_cancel_destroy("old", 1) */
    Q_INFO,              /* km_request_info(id) */
    Q_POLICY_REQUEST,    /* km_request_create: policy change to text */
    Q_POLICY_SET,        /* km_policy_set(text) */
    Q_PRINCIPAL_REQUEST, /* km_request_create: principal change, params text */
    Q_PRINCIPAL_ADD,     /* km_principal_add(text, custodian) */
    Q_OPEN_AS            /* km_open naming principal text */
} q_op;

typedef struct q_res {
    int rc;              /* the call's code; -1: the child could not make it */
    char msg[320];       /* its km_error_last() message, or why the child failed */
    char who[80];        /* km_whoami of the child's connection */
    uint8_t id[16];      /* a new request's id */
    uint32_t approvals;  /* Q_INFO */
    int consumed;        /* Q_INFO */
} q_res;

static const char *q_name(uid_t uid)
{
    switch (uid) {
    case Q_ADMIN: return TU_ADMIN;
    case Q_CUST1: return TU_CUST1;
    case Q_CUST2: return TU_CUST2;
    case Q_USER: return TU_USER;
    default: return Q_BOTH_NAME;
    }
}

/* The child's side: uid for good, no way to the vault's files, then op
 * through kmd. */
static void q_child(uid_t uid, q_op op, const uint8_t id[16], const char *text, q_res *r)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_request_status st;
    km_ctx *c = NULL;
    km_key *k = NULL;
    char path[700];
    int rc = KM_OK, fd;

    r->rc = -1;
    if (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0 || getuid() != uid
        || setuid(0) == 0) {
        snprintf(r->msg, sizeof r->msg, "could not become uid %u for good", (unsigned)uid);
        return;
    }
    snprintf(path, sizeof path, "%s/vault/data.mdb", dir);
    if ((fd = open(path, O_RDONLY)) >= 0) {
        close(fd);
        snprintf(r->msg, sizeof r->msg, "uid %u can read the vault file", (unsigned)uid);
        return;
    }
    o.principal = op == Q_OPEN_AS ? text : NULL;
    if ((rc = km_open(&c, uri, &o)) == KM_OK && (rc = km_whoami(c, r->who, sizeof r->who, NULL))
        == KM_OK) {
        switch (op) {
        case Q_CREATE:
            rc = km_request_create(c, KM_REQ_DESTROY, "old", q_destroy_1_7, sizeof q_destroy_1_7,
                                   3600, r->id);
            break;
        case Q_APPROVE: rc = km_request_approve(c, id); break;
        case Q_DESTROY:
        case Q_CANCEL:
            if ((rc = km_key_open(&k, c, "old")) == KM_OK)
                rc = op == Q_DESTROY ? km_key_schedule_destroy(k, 1, 7)
                                     : km_key_cancel_destroy(k, 1);
            break;
        case Q_INFO:
            if ((rc = km_request_info(c, id, &st)) == KM_OK) {
                r->approvals = st.approvals;
                r->consumed = st.consumed;
            }
            break;
        case Q_POLICY_REQUEST:
        case Q_PRINCIPAL_REQUEST:
            rc = km_request_create(c, op == Q_POLICY_REQUEST ? KM_REQ_POLICY_CHANGE
                                                             : KM_REQ_PRINCIPAL_CHANGE, NULL,
                                   (const uint8_t *)text, strlen(text), 3600, r->id);
            break;
        case Q_POLICY_SET: rc = km_policy_set(c, text, strlen(text)); break;
        case Q_PRINCIPAL_ADD:
            rc = km_principal_add(c, text, KM_ROLE_CUSTODIAN, (const uint8_t *)"pm", 2,
                                  KM_KDF_COST_MIN);
            break;
        case Q_OPEN_AS: break;
        }
    }
    r->rc = rc;
    if (rc != KM_OK)
        snprintf(r->msg, sizeof r->msg, "%s", km_error_last()->message);
    km_key_free(k);
    km_close(c);
}

/* Runs op in a child that is `uid`; fails the test unless the call returned
 * want (and, when part is not NULL, its message holds part) as the principal
 * kmd maps uid to. */
static q_res q_as(uid_t uid, q_op op, const uint8_t id[16], const char *text, int want,
                  const char *part)
{
    q_res r;
    int p[2], st = 0;
    pid_t pid;

    memset(&r, 0, sizeof r);
    ck_assert_int_eq(pipe(p), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        q_child(uid, op, id, text, &r);
        _exit(write(p[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 2);
    }
    close(p[1]);
    ck_assert_int_eq(read(p[0], &r, sizeof r), (ssize_t)sizeof r);
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child of uid %u died",
                  (unsigned)uid);
    ck_assert_msg(r.rc != -1, "uid %u: %s", (unsigned)uid, r.msg);
    ck_assert_msg(r.rc == want, "uid %u, step %d: %s, expected %s (%s)", (unsigned)uid, (int)op,
                  km_err_name(r.rc), km_err_name(want), r.msg);
    if (part != NULL)
        ck_assert_msg(strstr(r.msg, part) != NULL, "'%s' not in '%s'", part, r.msg);
    if (op != Q_OPEN_AS)
        ck_assert_str_eq(r.who, q_name(uid));   /* the kernel's uid named it */
    return r;
}

/* A request's approvals and whether it was spent, read by the requester. */
static q_res q_info(const uint8_t id[16])
{
    return q_as(Q_ADMIN, Q_INFO, id, NULL, KM_OK, NULL);
}

typedef struct q_seen {
    char principal[100];
    const char *detail;
    int n;
} q_seen;

static int q_seen_fn(const km_audit_entry *e, void *arg)
{
    q_seen *q = arg;
    if (strcmp(e->principal, q->principal) == 0 && strcmp(e->op, "denied") == 0
        && strstr(e->detail, q->detail) != NULL)
        q->n++;
    return 0;
}

/* The refusals kmd audited as uid's principal via uid, whose detail holds part. */
static int q_audited(uid_t uid, const char *part)
{
    q_seen q;
    memset(&q, 0, sizeof q);
    snprintf(q.principal, sizeof q.principal, "%s via uid:%u", q_name(uid), (unsigned)uid);
    q.detail = part;
    OK(km_audit_foreach(owner, 1, q_seen_fn, &q));
    return q.n;
}

static void setup_quorum(void)
{
    km_ctx *admin;
    km_key *old = NULL;

    setup();
    ck_assert_msg(geteuid() == 0 || getenv("CI") == NULL,
                  "dual control through kmd needs root (setuid to the actors' uids)");
    OK(tu_principal_add(owner, Q_BOTH_NAME, KM_ROLE_ADMIN | KM_ROLE_CUSTODIAN, "pb"));
    OK(km_policy_set(owner, q_policy, sizeof q_policy - 1));
    /* the admin's key "old": version 1 deactivated, so destroyable */
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_create(&old, admin, "old", KM_KEY_AES_256_GCM, NULL));
    OK(km_key_rotate(old, NULL));
    OK(km_key_revoke(old, 1, KM_REVOKE_SUPERSEDED, 0));
    km_key_free(old);
    km_close(admin);
    /* the vault root's and 0700; kmd's socket in a directory anyone may enter */
    ck_assert_int_eq(chmod(dir, 0700), 0);
    snprintf(q_rundir, sizeof q_rundir, "/tmp/kmd-quorum-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(q_rundir));
    ck_assert_int_eq(chmod(q_rundir, 0755), 0);
    snprintf(sock, sizeof sock, "%s/kmd.sock", q_rundir);
    snprintf(uri, sizeof uri, "kmd:%s", sock);
    /* our own uid (root) is the auditor's */
    kmd_start(TU_AUDITOR, Q_CONF);
}

static void teardown_quorum(void)
{
    teardown();
    unlink(sock);
    rmdir(q_rundir);
}

/* A requester who is also a custodian approving its own request: refused
 * and audited as that principal via its uid; its approval never counts. */
START_TEST(test_remote_quorum_own_approval_refused)
{
    q_res r;
    if (geteuid() != 0)
        return;
    r = q_as(Q_BOTH, Q_CREATE, NULL, NULL, KM_OK, NULL);
    q_as(Q_BOTH, Q_APPROVE, r.id, NULL, KM_E_DENIED, "its own request");
    ck_assert_uint_eq(q_info(r.id).approvals, 0);
    ck_assert_int_eq(q_audited(Q_BOTH, "its own request"), 1);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_BOTH, Q_DESTROY, NULL, NULL, KM_E_DENIED, "not yet approved");
    q_as(Q_CUST2, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_BOTH, Q_DESTROY, NULL, NULL, KM_OK, NULL);
}
END_TEST

/* The self-quorum: a policy whose principal-change or policy-change quorum
 * is below destroy's (one principal could add custodians of its own, or
 * lower the count) is refused from the socket, even with both custodians'
 * approval of that very policy; and a principal who is admin and custodian
 * does not add a custodian of its own by approving its own request. */
START_TEST(test_remote_quorum_self_quorum_refused)
{
    static const char no_pc[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                                "\"policy-change\": 2}}";
    static const char no_pol[] = "{\"version\": 1, \"dual_control\": {\"destroy\": 2, "
                                 "\"principal-change\": 2}}";
    static const char add_own[] = "add:mallory:custodian";
    char before[4096], after[4096];
    size_t n = 0;
    q_res r;

    if (geteuid() != 0)
        return;
    OK(km_policy_get(owner, before, sizeof before, &n));
    q_as(Q_ADMIN, Q_POLICY_SET, NULL, no_pc, KM_E_POLICY, "add custodians of its own");
    q_as(Q_ADMIN, Q_POLICY_SET, NULL, no_pol, KM_E_POLICY, "lower the count");
    r = q_as(Q_ADMIN, Q_POLICY_REQUEST, NULL, no_pc, KM_OK, NULL);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_CUST2, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_ADMIN, Q_POLICY_SET, NULL, no_pc, KM_E_POLICY, "alone");
    ck_assert_int_eq(q_info(r.id).consumed, 0);
    OK(km_policy_get(owner, after, sizeof after, &n));
    ck_assert_str_eq(after, before);
    /* custodians of one's own */
    r = q_as(Q_BOTH, Q_PRINCIPAL_REQUEST, NULL, add_own, KM_OK, NULL);
    q_as(Q_BOTH, Q_APPROVE, r.id, NULL, KM_E_DENIED, "its own request");
    q_as(Q_BOTH, Q_PRINCIPAL_ADD, NULL, "mallory", KM_E_DENIED, "approv");
    q_as(Q_ADMIN, Q_PRINCIPAL_ADD, NULL, "mallory", KM_E_DENIED, "approv");
    ck_assert_uint_eq(q_info(r.id).approvals, 0);
}
END_TEST

/* A spent request replayed: the destroy it approved goes through once; the
 * same call again (a new process, a new connection, and after kmd
 * restarted) is refused, and so is a late approval. */
START_TEST(test_remote_quorum_spent_request_replayed)
{
    q_res r;
    if (geteuid() != 0)
        return;
    r = q_as(Q_ADMIN, Q_CREATE, NULL, NULL, KM_OK, NULL);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_CUST2, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_OK, NULL);
    ck_assert_int_eq(q_info(r.id).consumed, 1);
    q_as(Q_ADMIN, Q_CANCEL, NULL, NULL, KM_OK, NULL);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_E_DENIED, NULL);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_E_STATE, "already been used");
    kmd_stop(SIGTERM);
    kmd_start(TU_AUDITOR, Q_CONF);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_E_DENIED, NULL);
    ck_assert_int_eq(q_info(r.id).consumed, 1);
}
END_TEST

/* A custodian approving twice, from another process and connection of its
 * uid: refused (KM_E_EXISTS), counted once; the call stays one approval
 * short until the second custodian approves. */
START_TEST(test_remote_quorum_custodian_twice_counts_once)
{
    q_res r;
    if (geteuid() != 0)
        return;
    r = q_as(Q_ADMIN, Q_CREATE, NULL, NULL, KM_OK, NULL);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_CUST1, Q_APPROVE, r.id, NULL, KM_E_EXISTS, "twice");
    ck_assert_uint_eq(q_info(r.id).approvals, 1);
    ck_assert_int_eq(q_audited(Q_CUST1, "twice"), 1);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_E_DENIED, "not yet approved");
    q_as(Q_CUST2, Q_APPROVE, r.id, NULL, KM_OK, NULL);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_OK, NULL);
}
END_TEST

/* Principals without the custodian role approving: a user, the requester
 * (an admin), an auditor (this process's uid) are refused; a user's
 * connection that names a custodian is refused at open. Nothing counts. */
START_TEST(test_remote_quorum_non_custodian_refused)
{
    km_ctx *c;
    char name[80];
    q_res r;

    if (geteuid() != 0)
        return;
    r = q_as(Q_ADMIN, Q_CREATE, NULL, NULL, KM_OK, NULL);
    q_as(Q_USER, Q_APPROVE, r.id, NULL, KM_E_DENIED, "custodian");
    q_as(Q_ADMIN, Q_APPROVE, r.id, NULL, KM_E_DENIED, "custodian");
    c = client();
    OK(km_whoami(c, name, sizeof name, NULL));
    ck_assert_str_eq(name, TU_AUDITOR);
    expect_err(km_request_approve(c, r.id), KM_E_DENIED, "custodian");
    km_close(c);
    q_as(Q_USER, Q_OPEN_AS, NULL, TU_CUST1, KM_E_DENIED, "cannot name another");
    ck_assert_uint_eq(q_info(r.id).approvals, 0);
    ck_assert_int_eq(q_audited(Q_USER, "without the custodian role"), 1);
    q_as(Q_ADMIN, Q_DESTROY, NULL, NULL, KM_E_DENIED, NULL);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("remote", NULL, &tc, 120, setup, teardown);
    tcase_add_test(tc, test_remote_same_bytes);
    tcase_add_test(tc, test_remote_admin);
    tcase_add_test(tc, test_remote_refused);
    tcase_add_test(tc, test_remote_removed_principal);
    tcase_add_test(tc, test_remote_malformed);
    tcase_add_test(tc, test_remote_kmd_gone);
    tcase_add_test(tc, test_remote_tls);
    tc = tu_tcase(s, "standard", 120, setup, std_teardown);
    tcase_add_test(tc, test_std_data_path);
    tcase_add_test(tc, test_std_errors);
    tcase_add_test(tc, test_std_rotated);
    tc = tu_tcase(s, "quorum", 120, setup_quorum, teardown_quorum);
    tcase_add_test(tc, test_remote_quorum_own_approval_refused);
    tcase_add_test(tc, test_remote_quorum_self_quorum_refused);
    tcase_add_test(tc, test_remote_quorum_spent_request_replayed);
    tcase_add_test(tc, test_remote_quorum_custodian_twice_counts_once);
    tcase_add_test(tc, test_remote_quorum_non_custodian_refused);
    return tu_run(s);
}
