/* check_tls.c - the primitives' mutual TLS (src/prim/tls.h): a client and a
 * server of this one process over loopback. The certificates are made by the
 * test (EC P-256, two CAs, leaves with and without clientAuth, expired and
 * not yet valid, two CNs, a CN with a control character). A refused peer
 * fails the server's handshake with the reason; a server certificate for
 * another address fails the client's; every wait is bounded. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "km_int.h"
#include "tls.h"
#include "testutil.h"

static char *dir;  /* the PKI, made once */

/* ------------------------------------------------------------------ the PKI */

/* The PKI is made in main(), outside any test: a failure ends the program. */
#define PKI(cond)                                                                          \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "check_tls: making the test PKI failed: %s\n", #cond);        \
            exit(EXIT_FAILURE);                                                            \
        }                                                                                  \
    } while (0)

static EVP_PKEY *ca_key, *ca2_key;
static X509 *ca_crt, *ca2_crt;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    PKI(ext != NULL);
    PKI(X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *k)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s.crt", dir, name);
    f = fopen(path, "w");
    PKI(f != NULL);
    PKI(PEM_write_X509(f, x) == 1);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = fopen(path, "w");
    PKI(f != NULL);
    PKI(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
}

/*
 * A certificate `name`.crt/.key with subject CNs `cn` (and `cn2` when not
 * NULL), valid from now + nb to now + na seconds, signed by the issuer
 * (self-signed CA when issuer is NULL); eku and san may be NULL.
 */
static void make_cert(const char *name, const char *cn, const char *cn2, X509 *issuer,
                      EVP_PKEY *ikey, const char *eku, const char *san, long nb, long na,
                      X509 **xo, EVP_PKEY **ko)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();

    PKI(k != NULL);
    PKI(X509_set_version(x, 2) == 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    if (cn2 != NULL)
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn2, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, k);
    if (issuer == NULL) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, x, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature,keyAgreement");
        if (eku != NULL)
            add_ext(x, issuer, NID_ext_key_usage, eku);
        if (san != NULL)
            add_ext(x, issuer, NID_subject_alt_name, san);
    }
    PKI(X509_sign(x, issuer ? ikey : k, EVP_sha256()) > 0);
    write_pem(name, x, k);
    X509_NAME_free(n);
    if (xo != NULL) {
        *xo = x;
        *ko = k;
    } else {
        X509_free(x);
        EVP_PKEY_free(k);
    }
}

static void make_pki(void)
{
    const long day = 86400;

    make_cert("ca", "libkm tls test CA", NULL, NULL, NULL, NULL, NULL, -day, day, &ca_crt,
              &ca_key);
    make_cert("ca2", "another CA", NULL, NULL, NULL, NULL, NULL, -day, day, &ca2_crt, &ca2_key);
    make_cert("server", "127.0.0.1", NULL, ca_crt, ca_key, "serverAuth", "IP:127.0.0.1", -day,
              day, NULL, NULL);
    make_cert("server-other-ip", "10.1.2.3", NULL, ca_crt, ca_key, "serverAuth", "IP:10.1.2.3",
              -day, day, NULL, NULL);
    make_cert("alice", "alice", NULL, ca_crt, ca_key, "clientAuth", NULL, -day, day, NULL, NULL);
    make_cert("foreign", "alice", NULL, ca2_crt, ca2_key, "clientAuth", NULL, -day, day, NULL,
              NULL);
    make_cert("expired", "alice", NULL, ca_crt, ca_key, "clientAuth", NULL, -3 * day, -day, NULL,
              NULL);
    make_cert("future", "alice", NULL, ca_crt, ca_key, "clientAuth", NULL, day, 2 * day, NULL,
              NULL);
    make_cert("noeku", "alice", NULL, ca_crt, ca_key, "serverAuth", NULL, -day, day, NULL, NULL);
    make_cert("twocn", "alice", "admin", ca_crt, ca_key, "clientAuth", NULL, -day, day, NULL,
              NULL);
    make_cert("ctlcn", "ali\nce", NULL, ca_crt, ca_key, "clientAuth", NULL, -day, day, NULL, NULL);
}

static const char *path(const char *name, const char *ext)
{
    static char buf[16][600];
    static int i;
    i = (i + 1) % 16;
    snprintf(buf[i], sizeof buf[i], "%s/%s.%s", dir, name, ext);
    return buf[i];
}

static km__tls_ctx *server_ctx(const char *ca)
{
    km__tls_conf c = { "kmd", path(ca, "crt"), path("server", "crt"), path("server", "key"),
                       KM_E_AUTH };
    km__tls_ctx *ctx = NULL;
    TU_OK(km__tls_server_ctx_new(&c, &ctx));
    return ctx;
}

static km__tls_ctx *client_ctx(const char *cert)
{
    km__tls_conf c = { "client", path("ca", "crt"), path(cert, "crt"), path(cert, "key"), 0 };
    km__tls_ctx *ctx = NULL;
    TU_OK(km__tls_client_ctx_new(&c, &ctx));
    return ctx;
}

/* ---------------------------------------------------------------- the server */

typedef struct srv {
    int lfd, port;
    km__tls_ctx *ctx;
    int timeout_ms;
    pthread_t th;
    /* results */
    int rc;
    km_error err;
    char cn[64];
    int cn_rc;
    char subject[256];
    uint8_t fp[32];
    char got[16];
    long long took_ms;
} srv;

static void *srv_main(void *arg)
{
    srv *s = arg;
    km__tls *t = NULL;
    long long t0 = km__tls_now_ms();
    struct pollfd p = { s->lfd, POLLIN, 0 };
    int fd = poll(&p, 1, 5000) == 1 ? accept(s->lfd, NULL, NULL) : -1;

    if (fd < 0) {
        s->rc = KM_E_INTERNAL;
        return NULL;
    }
    s->rc = km__tls_accept(s->ctx, fd, t0 + s->timeout_ms, &t);
    s->took_ms = km__tls_now_ms() - t0;
    if (s->rc != KM_OK) {
        s->err = *km_error_last();
        return NULL;
    }
    s->cn_rc = km__tls_peer_cn(t, s->cn, sizeof s->cn);
    if (km__tls_peer_subject(t, s->subject, sizeof s->subject) != KM_OK
        || km__tls_peer_fingerprint(t, s->fp) != KM_OK)
        s->rc = KM_E_INTERNAL;
    /* echo one message, then end the connection politely */
    if (s->rc == KM_OK && km__tls_read_full(t, s->got, 5, km__tls_now_ms() + 5000) == KM_OK)
        (void)km__tls_write(t, s->got, 5, km__tls_now_ms() + 5000);
    km__tls_free(t, 1);
    return NULL;
}

/* Starts a server thread with ctx (freed by srv_join) that accepts one client. */
static void srv_start(srv *s, km__tls_ctx *ctx, int timeout_ms)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;

    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->timeout_ms = timeout_ms;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s->lfd, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(s->lfd, 4), 0);
    ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_join(srv *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    km__tls_ctx_free(s->ctx);
}

/* A client with certificate `cert` connects to s and exchanges "hello":
 * the client's result (KM_OK only when the echo came back). */
static int client_run(srv *s, const char *cert, const char *host)
{
    km__tls_ctx *c = client_ctx(cert);
    km__tls *t = NULL;
    char port[16], buf[8];
    int rc;

    snprintf(port, sizeof port, "%d", s->port);
    rc = km__tls_connect(c, host, port, km__tls_now_ms() + 5000, &t);
    if (rc == KM_OK)
        rc = km__tls_write(t, "hello", 5, km__tls_now_ms() + 5000);
    if (rc == KM_OK)
        rc = km__tls_read_full(t, buf, 5, km__tls_now_ms() + 5000);
    if (rc == KM_OK && memcmp(buf, "hello", 5) != 0)
        rc = KM_E_INTERNAL;
    km__tls_free(t, 1);
    km__tls_ctx_free(c);
    return rc;
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_tls_mutual_handshake_names_the_client)
{
    srv s;
    uint8_t want[32];
    unsigned int n = 0;
    size_t len;
    uint8_t *pem;
    X509 *x;
    BIO *b;

    srv_start(&s, server_ctx("ca"), 5000);
    TU_OK(client_run(&s, "alice", "127.0.0.1"));
    srv_join(&s);
    ck_assert_int_eq(s.rc, KM_OK);
    ck_assert_int_eq(s.cn_rc, KM_OK);
    ck_assert_str_eq(s.cn, "alice");
    ck_assert_str_eq(s.subject, "CN=alice");
    ck_assert_int_eq(memcmp(s.got, "hello", 5), 0);
    /* the fingerprint is the client certificate's */
    pem = tu_read_file(path("alice", "crt"), &len);
    b = BIO_new_mem_buf(pem, (int)len);
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(X509_digest(x, EVP_sha256(), want, &n), 1);
    ck_assert_int_eq(memcmp(want, s.fp, 32), 0);
    X509_free(x);
    BIO_free(b);
    free(pem);
}
END_TEST

/* Refused client certificates: the server's handshake fails with its reason
 * and the client gets no echo. */
START_TEST(test_tls_server_refuses_bad_client_certificates)
{
    static const struct {
        const char *cert, *says;
    } cases[] = {
        { "foreign", "unable to get local issuer certificate" }, /* another CA */
        { "expired", "certificate has expired" },
        { "future", "certificate is not yet valid" },
        { "noeku", "unsuitable certificate purpose" },
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv s;
        int crc;

        srv_start(&s, server_ctx("ca"), 5000);
        crc = client_run(&s, cases[i].cert, "127.0.0.1");
        srv_join(&s);
        ck_assert_msg(crc != KM_OK, "case %zu: the client got an answer", i);
        ck_assert_msg(s.rc == KM_E_AUTH, "case %zu: %s (%s)", i, km_err_name(s.rc),
                      s.err.message);
        ck_assert_msg(strstr(s.err.message, cases[i].says) != NULL, "case %zu: %s", i,
                      s.err.message);
        ck_assert_ptr_nonnull(strstr(s.err.message, "kmd: TLS handshake with 127.0.0.1:"));
        ck_assert_int_eq(s.err.native_kind, KM_NATIVE_OPENSSL);
        ck_assert_str_eq(s.cn, "");
    }
}
END_TEST

/* A server that trusts another CA refuses a client of the first. */
START_TEST(test_tls_server_with_another_ca_refuses)
{
    srv s;

    srv_start(&s, server_ctx("ca2"), 5000);
    ck_assert_int_ne(client_run(&s, "alice", "127.0.0.1"), KM_OK);
    srv_join(&s);
    ck_assert_int_eq(s.rc, KM_E_AUTH);
    ck_assert_ptr_nonnull(strstr(s.err.message, "does not verify"));
}
END_TEST

/* A client without a certificate (plain OpenSSL, no km__tls) is refused. */
START_TEST(test_tls_server_refuses_a_client_without_certificate)
{
    srv s;
    struct sockaddr_in a;
    SSL_CTX *c;
    SSL *ssl;
    char buf[8];
    int fd, r;

    srv_start(&s, server_ctx("ca"), 5000);
    c = SSL_CTX_new(TLS_client_method());
    ck_assert_int_eq(SSL_CTX_load_verify_locations(c, path("ca", "crt"), NULL), 1);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)s.port);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    ssl = SSL_new(c);
    SSL_set_fd(ssl, fd);
    r = SSL_connect(ssl); /* TLS 1.3: the server decides after the client's finish */
    if (r == 1) {
        (void)SSL_write(ssl, "hello", 5);
        r = SSL_read(ssl, buf, sizeof buf);
    }
    ck_assert_int_le(r, 0);
    SSL_free(ssl);
    SSL_CTX_free(c);
    close(fd);
    srv_join(&s);
    ck_assert_int_eq(s.rc, KM_E_AUTH);
    ck_assert_msg(strstr(s.err.message, "certificate") != NULL, "%s", s.err.message);
}
END_TEST

/* The client checks the server: a certificate for another address, or a
 * host name the certificate does not carry, fails the client's handshake. */
START_TEST(test_tls_client_verifies_the_server)
{
    km__tls_conf sc = { "kmd", path("ca", "crt"), path("server-other-ip", "crt"),
                        path("server-other-ip", "key"), KM_E_AUTH };
    srv s;
    km__tls_ctx *c, *other = NULL;
    km__tls *t = NULL;
    char port[16];
    int rc;

    /* the server's certificate is for 10.1.2.3 */
    TU_OK(km__tls_server_ctx_new(&sc, &other));
    srv_start(&s, other, 3000);
    c = client_ctx("alice");
    snprintf(port, sizeof port, "%d", s.port);
    rc = km__tls_connect(c, "127.0.0.1", port, km__tls_now_ms() + 5000, &t);
    ck_assert_int_eq(rc, KM_E_BACKEND); /* the client's fail_code: the default */
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(km_error_last()->message, "the server certificate does not verify")
                      != NULL, "%s", km_error_last()->message);
    srv_join(&s);
    ck_assert_int_ne(s.rc, KM_OK);

    /* "localhost" is not in the right server's certificate either */
    srv_start(&s, server_ctx("ca"), 3000);
    snprintf(port, sizeof port, "%d", s.port);
    rc = km__tls_connect(c, "localhost", port, km__tls_now_ms() + 5000, &t);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_msg(strstr(km_error_last()->message, "hostname mismatch") != NULL, "%s",
                  km_error_last()->message);
    srv_join(&s);
    km__tls_ctx_free(c);
}
END_TEST

/* CNs that cannot name a principal: two of them, or a control character. */
START_TEST(test_tls_peer_cn_refuses_ambiguous_names)
{
    const char *certs[] = { "twocn", "ctlcn" };
    size_t i;

    for (i = 0; i < 2; i++) {
        srv s;
        srv_start(&s, server_ctx("ca"), 5000);
        TU_OK(client_run(&s, certs[i], "127.0.0.1"));
        srv_join(&s);
        ck_assert_int_eq(s.rc, KM_OK);
        ck_assert_msg(s.cn_rc == KM_E_AUTH, "%s: %s", certs[i], km_err_name(s.cn_rc));
        ck_assert_str_eq(s.cn, "");
    }
}
END_TEST

/* A client that connects and says nothing: the server's handshake ends at
 * its deadline (ETIMEDOUT), never hangs. A server that says nothing: the
 * client's. */
START_TEST(test_tls_silent_peers_time_out)
{
    struct sockaddr_in a;
    srv s;
    km__tls_ctx *c;
    km__tls *t = NULL;
    char port[16];
    long long t0;
    int fd, lfd, rc;
    socklen_t al = sizeof a;

    srv_start(&s, server_ctx("ca"), 800);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)s.port);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    srv_join(&s);
    close(fd);
    ck_assert_int_eq(s.rc, KM_E_AUTH);
    ck_assert_ptr_nonnull(strstr(s.err.message, "timed out"));
    ck_assert_int_eq(s.err.native_kind, KM_NATIVE_ERRNO);
    ck_assert_int_eq((int)s.err.native, ETIMEDOUT);
    ck_assert_int_lt(s.took_ms, 3000);

    /* a listening socket nobody accepts: the kernel completes TCP, TLS waits */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = 0;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 1), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    c = client_ctx("alice");
    t0 = km__tls_now_ms();
    rc = km__tls_connect(c, "127.0.0.1", port, t0 + 800, &t);
    ck_assert_int_eq(rc, KM_E_BACKEND);
    ck_assert_int_eq((int)km_error_last()->native, ETIMEDOUT);
    ck_assert_int_lt(km__tls_now_ms() - t0, 3000);
    close(lfd);
    km__tls_ctx_free(c);
}
END_TEST

/* Files: a missing CA, a certificate whose key does not match, an encrypted
 * key (no prompt), a client context that is asked to accept. */
START_TEST(test_tls_context_files_checked)
{
    km__tls_conf bad[] = {
        { "kmd", "/nonexistent/ca.crt", path("server", "crt"), path("server", "key"), 0 },
        { "kmd", path("ca", "crt"), path("server", "crt"), path("alice", "key"), 0 },
        { "kmd", path("ca", "crt"), path("server", "crt"), NULL, 0 },
    };
    km__tls_ctx *ctx = NULL;
    char enc[700];
    FILE *f;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    km__tls_conf encrypted = { "kmd", path("ca", "crt"), path("server", "crt"), enc, 0 };
    size_t i;
    int sv[2];

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TU_RC(KM_E_INVALID, km__tls_server_ctx_new(&bad[i], &ctx));
        ck_assert_ptr_null(ctx);
    }
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "kmd: "));
    snprintf(enc, sizeof enc, "%s/enc.key", dir);
    f = fopen(enc, "w");
    ck_assert_int_eq(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), NULL, 0, NULL,
                                          (void *)"secret"), 1);
    fclose(f);
    EVP_PKEY_free(k);
    TU_RC(KM_E_INVALID, km__tls_client_ctx_new(&encrypted, &ctx));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "enc.key"));
    ck_assert_ptr_null(strstr(km_error_last()->message, "secret"));
    /* roles are not mixed */
    ctx = client_ctx("alice");
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    {
        km__tls *t = NULL;
        TU_RC(KM_E_INVALID, km__tls_accept(ctx, sv[0], km__tls_now_ms() + 100, &t));
        ck_assert_ptr_null(t);
    }
    close(sv[1]);
    km__tls_ctx_free(ctx);
}
END_TEST

/* Over a socketpair (the daemon's accept on a given fd): read returns 0 at
 * the peer's close, read_full calls that an error. */
static void *pair_client(void *arg)
{
    int fd = *(int *)arg;
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL *ssl;

    SSL_CTX_load_verify_locations(c, path("ca", "crt"), NULL);
    SSL_CTX_use_certificate_file(c, path("alice", "crt"), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(c, path("alice", "key"), SSL_FILETYPE_PEM);
    ssl = SSL_new(c);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
        (void)SSL_write(ssl, "abc", 3);
        (void)SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    SSL_CTX_free(c);
    close(fd);
    return NULL;
}

START_TEST(test_tls_accept_on_a_socketpair_and_eof)
{
    km__tls_ctx *ctx = server_ctx("ca");
    km__tls *t = NULL;
    pthread_t th;
    char buf[8], cn[32];
    size_t got = 0;
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, pair_client, &sv[1]), 0);
    TU_OK(km__tls_accept(ctx, sv[0], km__tls_now_ms() + 5000, &t));
    TU_OK(km__tls_peer_cn(t, cn, sizeof cn));
    ck_assert_str_eq(cn, "alice");
    TU_RC(KM_E_BUFFER, km__tls_peer_cn(t, cn, 3));
    ck_assert_ptr_nonnull(strstr(km__tls_version(t), "TLSv1."));
    TU_OK(km__tls_read_full(t, buf, 3, km__tls_now_ms() + 5000));
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    TU_OK(km__tls_read(t, buf, sizeof buf, &got, km__tls_now_ms() + 5000));
    ck_assert_uint_eq(got, 0);
    TU_RC(KM_E_AUTH, km__tls_read_full(t, buf, 1, km__tls_now_ms() + 5000));
    ck_assert_ptr_nonnull(strstr(km_error_last()->message, "closed"));
    pthread_join(th, NULL);
    km__tls_free(t, 1);
    km__tls_ctx_free(ctx);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tls_mutual_handshake_names_the_client);
    tcase_add_test(tc, test_tls_server_refuses_bad_client_certificates);
    tcase_add_test(tc, test_tls_server_with_another_ca_refuses);
    tcase_add_test(tc, test_tls_server_refuses_a_client_without_certificate);
    tcase_add_test(tc, test_tls_client_verifies_the_server);
    tcase_add_test(tc, test_tls_peer_cn_refuses_ambiguous_names);
    tcase_add_test(tc, test_tls_silent_peers_time_out);
    tcase_add_test(tc, test_tls_context_files_checked);
    tcase_add_test(tc, test_tls_accept_on_a_socketpair_and_eof);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    char tmpl[] = "/tmp/km-tls.XXXXXX";

    PKI(km_init() == KM_OK);
    PKI(mkdtemp(tmpl) != NULL); /* not tu_tmpdir: Check's asserts only run inside a test */
    dir = strdup(tmpl);
    make_pki();
    sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    X509_free(ca_crt);
    X509_free(ca2_crt);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ca2_key);
    tu_rmtree(dir);
    free(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
