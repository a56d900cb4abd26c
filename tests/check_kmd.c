/* check_kmd.c - kmd (src/kmd, docs/KMD.md) as a separate process behind its
 * Unix socket: PyKMIP's own client drives the KMIP operations (1.4 and 2.0,
 * tests/kmd/pykmip_unix.py); a principal that reaches only the socket is
 * held to its role and grants and is refused once removed; an unmapped uid
 * is refused; malformed, truncated, oversized and slow requests are refused
 * with no hang; a client killed mid-request harms nobody; 64 clients at
 * once; kmd SIGKILLed during writes keeps every acknowledged change and a
 * whole audit chain. Each test has its own vault (the five principals of
 * testutil.h) and its own kmd, mapped from our uid to the principal under
 * test, started on a socket in the test's directory and stopped by PID
 * (PR_SET_PDEATHSIG: it dies with the test). */
#define _GNU_SOURCE 1
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <grp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <km.h>

#include "kmip_ttlv.h"
#include "testutil.h"

#define T(name) KM__KMIP_TAG_##name

static char *dir;
static km_ctx *owner;
static pid_t kmd_pid;
static char sock[100];

static void setup(void)
{
    tu_open o = TU_OPEN_INIT;
    tu_setup(&dir, &owner, &o);
    tu_principals_add(owner);
    snprintf(sock, sizeof sock, "%s/kmd.sock", dir);
    kmd_pid = 0;
}

static void kmd_stop(int sig);

static void teardown(void)
{
    kmd_stop(SIGTERM);
    tu_teardown(&dir, &owner);
}

/* ------------------------------------------------------------ kmd */

static const char *builddir(void)
{
    const char *b = getenv("top_builddir");
    return b != NULL ? b : ".";
}

/* Writes the configuration (our uid mapped to `who`, `extra` lines) and
 * starts kmd; waits until its socket is there. */
static void kmd_start(const char *who, const char *extra)
{
    char path[700], bin[700];
    FILE *f;

    snprintf(path, sizeof path, "%s/pass", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(TU_PASS "\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0600), 0);
    snprintf(path, sizeof path, "%s/kmd.conf", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# kmd for check_kmd\nvault = lmdb:%s/vault\nsocket = %s\nrefresh_ms = 10\n",
            dir, sock);
    if (extra == NULL || strstr(extra, "unseal") == NULL)
        fprintf(f, "passphrase_file = %s/pass\n", dir);
    if (who != NULL)
        fprintf(f, "principal.%u = %s\n", (unsigned)getuid(), who);
    fputs(extra != NULL ? extra : "", f);
    fclose(f);
    snprintf(bin, sizeof bin, "%s/src/kmd/kmd", builddir());
    tu_kmd_spawn(bin, path, dir, sock, &kmd_pid);
}

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

/* ------------------------------------------------------ a raw client */

static int connect_kmd(void)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct timeval tv = { 20, 0 };
    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        b += w;
        n -= (size_t)w;
    }
}

/* Reads one response message; NULL when the connection closed first. */
static uint8_t *recv_msg(int fd, size_t *len)
{
    uint8_t head[8], *b;
    size_t got = 0, total;
    while (got < 8) {
        ssize_t r = recv(fd, head + got, 8 - got, 0);
        if (r <= 0)
            return NULL;
        got += (size_t)r;
    }
    ck_assert_int_eq(km__ttlv_peek_len(head, 8, 1u << 24, &total), KM_OK);
    b = malloc(total);
    memcpy(b, head, 8);
    while (got < total) {
        ssize_t r = recv(fd, b + got, total - got, 0);
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
    }
    *len = total;
    return b;
}

/* The result of one request: status, reason, and a copy of the payload's
 * Unique Identifier / Data (when present). */
typedef struct res {
    uint32_t status, reason;
    char uid[64];
    char msg[256];
    uint8_t raw[2048];   /* the whole response (its first bytes) */
    size_t raw_len;
    uint8_t data[256];
    size_t data_len;
    uint8_t iv[32];
    size_t iv_len;
    int closed;
} res;

static void parse(const uint8_t *b, size_t n, res *r)
{
    km__ttlv_tree t;
    km__kmip_response resp;
    const char *s;
    const uint8_t *d;
    size_t l;
    int pl;

    memset(r, 0, sizeof *r);
    ck_assert_int_eq(km__ttlv_decode(b, n, NULL, &t), KM_OK);
    ck_assert_int_eq(km__kmip_response_parse(&t, &resp), KM_OK);
    ck_assert_uint_eq(resp.n, 1);
    r->status = resp.items[0].status;
    r->reason = resp.items[0].reason;
    if (resp.items[0].message != NULL)
        snprintf(r->msg, sizeof r->msg, "%.*s", (int)resp.items[0].message_len,
                 resp.items[0].message);
    pl = resp.items[0].payload;
    if (pl >= 0 && km__ttlv_get_text(&t, pl, T(UNIQUE_IDENTIFIER), &s, &l) == KM_OK
        && l < sizeof r->uid) {
        memcpy(r->uid, s, l);
        r->uid[l] = '\0';
    }
    if (pl >= 0 && km__ttlv_get_bytes(&t, pl, T(DATA), &d, &l) == KM_OK && l <= sizeof r->data) {
        memcpy(r->data, d, l);
        r->data_len = l;
    }
    if (pl >= 0 && km__ttlv_get_bytes(&t, pl, T(IV_COUNTER_NONCE), &d, &l) == KM_OK
        && l <= sizeof r->iv) {
        memcpy(r->iv, d, l);
        r->iv_len = l;
    }
    km__ttlv_tree_free(&t);
}

/* A connection that is closed by kmd within `ms` (recv returns 0). */
static int closed_within(int fd, long ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    uint8_t b[4096];
    int64_t end = (int64_t)time(NULL) * 1000 + ms;
    for (;;) {
        int r = poll(&p, 1, 100);
        if (r > 0) {
            ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                return 1;
            continue;   /* an error response before the close */
        }
        if ((int64_t)time(NULL) * 1000 > end)
            return 0;
    }
}

/* Sends the request built in e on fd and parses the answer. */
static void roundtrip(int fd, km__ttlv_enc *e, res *r)
{
    const uint8_t *m;
    size_t n, rn;
    uint8_t *rb;
    ck_assert_int_eq(km__ttlv_enc_finish(e, &m, &n), KM_OK);
    send_all(fd, m, n);
    km__ttlv_enc_free(e);
    rb = recv_msg(fd, &rn);
    if (rb == NULL) {
        memset(r, 0, sizeof *r);
        r->closed = 1;
        return;
    }
    parse(rb, rn, r);
    r->raw_len = rn < sizeof r->raw ? rn : sizeof r->raw;
    memcpy(r->raw, rb, r->raw_len);
    free(rb);
}

/* Whether a response holds a Link of `type` to `uid` (its Link Type enum
 * followed by the Linked Object Identifier). */
static int has_link(const res *r, uint32_t type, const char *uid)
{
    uint8_t pat[12] = { 0x42, 0x00, 0x4B, 0x05, 0, 0, 0, 4, 0, 0, 0, 0 };
    const uint8_t *p;
    pat[10] = (uint8_t)(type >> 8);
    pat[11] = (uint8_t)type;
    p = memmem(r->raw, r->raw_len, pat, sizeof pat);
    return p != NULL && memmem(p, r->raw_len - (size_t)(p - r->raw), uid, strlen(uid)) != NULL;
}

/* Requests with one batch item. `uid` may be NULL. */
static void req_begin(km__ttlv_enc *e, uint32_t op)
{
    km__ttlv_enc_init(e, 0);
    km__kmip_req_begin(e, 1, 4, 1);
    km__kmip_item_begin(e, op, NULL, 0);
}

static void req_end(km__ttlv_enc *e)
{
    km__kmip_item_end(e);
    km__kmip_req_end(e);
}

static void put_uid(km__ttlv_enc *e, const char *uid)
{
    if (uid != NULL)
        km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
}

static void do_simple(int fd, uint32_t op, const char *uid, res *r)
{
    km__ttlv_enc e;
    req_begin(&e, op);
    put_uid(&e, uid);
    if (op == KM__KMIP_OP_REVOKE) {
        km__ttlv_begin(&e, T(REVOCATION_REASON));
        km__ttlv_put_enum(&e, T(REVOCATION_REASON_CODE), KM__KMIP_REVOKE_CESSATION);
        km__ttlv_end(&e);
    }
    req_end(&e);
    roundtrip(fd, &e, r);
}

static void do_create(int fd, const char *name, res *r)
{
    km__ttlv_enc e;
    req_begin(&e, KM__KMIP_OP_CREATE);
    km__ttlv_put_enum(&e, T(OBJECT_TYPE), KM__KMIP_OBJ_SYMMETRIC_KEY);
    km__ttlv_begin(&e, T(TEMPLATE_ATTRIBUTE));
    km__ttlv_begin(&e, T(ATTRIBUTE));
    km__ttlv_put_text(&e, T(ATTRIBUTE_NAME), "Cryptographic Algorithm", 23);
    km__ttlv_put_enum(&e, T(ATTRIBUTE_VALUE), KM__KMIP_ALG_AES);
    km__ttlv_end(&e);
    km__ttlv_begin(&e, T(ATTRIBUTE));
    km__ttlv_put_text(&e, T(ATTRIBUTE_NAME), "Name", 4);
    km__ttlv_begin(&e, T(ATTRIBUTE_VALUE));
    km__ttlv_put_text(&e, T(NAME_VALUE), name, strlen(name));
    km__ttlv_put_enum(&e, T(NAME_TYPE), KM__KMIP_NAME_TEXT);
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    req_end(&e);
    roundtrip(fd, &e, r);
}

static void do_encrypt(int fd, const char *uid, const char *pt, const char *aad, res *r)
{
    km__ttlv_enc e;
    req_begin(&e, KM__KMIP_OP_ENCRYPT);
    put_uid(&e, uid);
    km__ttlv_begin(&e, T(CRYPTOGRAPHIC_PARAMETERS));
    km__ttlv_put_enum(&e, T(BLOCK_CIPHER_MODE), KM__KMIP_MODE_GCM);
    km__ttlv_end(&e);
    km__ttlv_put_bytes(&e, T(DATA), (const uint8_t *)pt, strlen(pt));
    if (aad != NULL)
        km__ttlv_put_bytes(&e, T(AE_ADDITIONAL_DATA), (const uint8_t *)aad, strlen(aad));
    req_end(&e);
    roundtrip(fd, &e, r);
}

static void do_decrypt(int fd, const char *uid, const res *enc, const char *aad, res *r)
{
    km__ttlv_enc e;
    req_begin(&e, KM__KMIP_OP_DECRYPT);
    put_uid(&e, uid);
    km__ttlv_put_bytes(&e, T(DATA), enc->data, enc->data_len);
    km__ttlv_put_bytes(&e, T(IV_COUNTER_NONCE), enc->iv, enc->iv_len);
    if (aad != NULL)
        km__ttlv_put_bytes(&e, T(AE_ADDITIONAL_DATA), (const uint8_t *)aad, strlen(aad));
    req_end(&e);
    roundtrip(fd, &e, r);
}

/* The id of key `name` in hex, as kmd names it. */
static void uid_of(const char *name, char out[33])
{
    km_key *k = NULL;
    int i;
    OK(km_key_open(&k, owner, name));
    for (i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", km_key_id(k)[i]);
    km_key_free(k);
}

/* An active AES key `name` made by the owner, with `grantee` granted `perms`. */
static void owner_key(const char *name, const char *grantee, uint32_t perms, char uid[33])
{
    km_key *k = NULL;
    OK(km_key_create(&k, owner, name, KM_KEY_AES_256_GCM, NULL));
    if (grantee != NULL)
        OK(km_key_grant(k, grantee, perms));
    km_key_free(k);
    uid_of(name, uid);
}

/* Get of `uid` wrapped under `kek` (Key Wrapping Specification, Encrypt). */
static void build_get_wrapped(km__ttlv_enc *e, const char *uid, const char *kek)
{
    req_begin(e, KM__KMIP_OP_GET);
    put_uid(e, uid);
    km__ttlv_begin(e, 0x420047);               /* Key Wrapping Specification */
    km__ttlv_put_enum(e, 0x42009E, 1);         /* Wrapping Method: Encrypt */
    km__ttlv_begin(e, 0x420036);               /* Encryption Key Information */
    km__ttlv_put_text(e, T(UNIQUE_IDENTIFIER), kek, strlen(kek));
    km__ttlv_end(e);
    km__ttlv_end(e);
    req_end(e);
}

static void get_wrapped(int fd, const char *uid, const char *kek, res *r)
{
    km__ttlv_enc e;
    build_get_wrapped(&e, uid, kek);
    roundtrip(fd, &e, r);
}

/* ------------------------------------------------------------ PyKMIP */

/* Runs tests/kmd/pykmip_unix.py with `steps`; its output in out. */
static void pykmip(const char *version, const char *steps, char *out, size_t cap)
{
    char cmd[4096];
    const char *src = getenv("top_srcdir");
    FILE *p;
    size_t n;
    snprintf(cmd, sizeof cmd, "KMD_VERBOSE=1 timeout 120 /usr/bin/python3 %s/tests/kmd/pykmip_unix.py %s %s %s 2>&1",
             src != NULL ? src : ".", sock, version, steps);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    ck_assert_msg(pclose(p) == 0, "pykmip_unix.py failed:\n%s", out);
}

static void expect_line(const char *out, const char *line)
{
    ck_assert_msg(strstr(out, line) != NULL, "no line '%s' in:\n%s", line, out);
}

/* expect_line of "<obj><v><rest>": a line about object obj of round v. */
static void expect_step(const char *out, const char *obj, int v, const char *rest)
{
    char line[256];
    snprintf(line, sizeof line, "%s%d%s", obj, v, rest);
    expect_line(out, line);
}

#define K32_TAIL "112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define K32 "00" K32_TAIL

/* PyKMIP's own client creates, finds, activates and uses keys through kmd,
 * in KMIP 1.4 and 2.0: GCM round trip (a flipped ciphertext byte refused),
 * HMAC, signing with an EC key the owner made, revoke and destroy; key
 * pairs (EC, RSA) with Get of their public keys, Register of an AES key
 * whose ciphertexts decrypt locally with its bytes, Get of a secret key
 * refused. */
START_TEST(test_kmd_pykmip_client)
{
    static const char *const versions[2] = { "1.4", "2.0" };
    char out[8192], steps[1024];
    km_key *k = NULL;
    int v;

    OK(km_key_create(&k, owner, "signer", KM_KEY_EC_P256, NULL));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_SIGN | KM_PERM_VERIFY));
    km_key_free(k);
    kmd_start(TU_ADMIN, NULL);
    for (v = 0; v < 2; v++) {
        snprintf(steps, sizeof steps,
                 "discover query create:a%d:AES:256 locate:a%d attrs:a%d activate:a%d attrs:a%d "
                 "gcm:a%d:hello create:h%d:HMAC_SHA256:256:MAC_GENERATE,MAC_VERIFY activate:h%d mac:h%d:hi "
                 "sign:signer:msg revoke:a%d attrs:a%d destroy:a%d attrs:a%d gcm:a%d:late "
                 "locate:nothing", v, v, v, v, v, v, v, v, v, v, v, v, v, v);
        pykmip(versions[v], steps, out, sizeof out);
        expect_line(out, "discover: 2.0 1.4 1.3 1.2 1.1 1.0");
        expect_line(out, "query: 20");
        expect_step(out, "attrs:a", v, ": 256 PRE_ACTIVE");
        expect_step(out, "attrs:a", v, ": 256 ACTIVE");
        expect_step(out, "gcm:a", v, ":hello: hello 16 CRYPTOGRAPHIC_FAILURE");
        expect_step(out, "mac:h", v, ":hi: 32");
        expect_line(out, "sign:signer:msg: ");
        expect_line(out, " VALID\n");
        expect_step(out, "attrs:a", v, ": 256 DEACTIVATED");
        expect_step(out, "attrs:a", v, ": 256 DESTROYED");
        expect_step(out, "gcm:a", v, ":late: FAIL ");
        expect_line(out, "locate:nothing: \n");
    }
    /* key pairs, Get of public keys only, Register checked against a local
     * AES-GCM decryption with the registered bytes */
    pykmip("1.4", "pair:p1:EC:256 getpub:p1 activate:p1 sign:p1:hello pair:r1:RSA:2048 getpub:r1 "
                  "register:s1:" K32 " activate:s1 gcmlocal:s1:" K32 ":secret "
                  "gcmlocal:s1:ff" K32_TAIL ":secret get:s1 get:p1", out, sizeof out);
    expect_line(out, "getpub:p1: PublicKey X_509 91\n");
    expect_line(out, "sign:p1:hello: ");
    expect_line(out, "getpub:r1: PublicKey X_509 294\n");
    expect_line(out, ":secret: secret\n");
    expect_line(out, ":secret: ERROR InvalidTag");
    expect_line(out, "get:s1: FAIL PERMISSION_DENIED");
    expect_line(out, "get:p1: PublicKey 91\n");
    pykmip("2.0", "pair:p2:EC:384 getpub:p2 register:s2:000102030405060708090a0b0c0d0e0f get:s2",
           out, sizeof out);
    expect_line(out, "getpub:p2: PublicKey X_509 120\n");
    expect_line(out, "get:s2: FAIL PERMISSION_DENIED");
    /* Locate by Object Type and Cryptographic Algorithm: a0 h0 a1 h1 s1 s2
     * symmetric, signer p1 r1 p2 key pairs (private, and public as -pub) */
    for (v = 0; v < 2; v++) {
        pykmip(versions[v], "locatetype:SYMMETRIC_KEY locatetype:PRIVATE_KEY "
                            "locatetype:PUBLIC_KEY locatealg:AES locatealg:RSA "
                            "locatealg:HMAC_SHA256", out, sizeof out);
        expect_line(out, "locatetype:SYMMETRIC_KEY: 6\n");
        expect_line(out, "locatetype:PRIVATE_KEY: 4\n");
        expect_line(out, "locatetype:PUBLIC_KEY: 4\n");
        expect_line(out, "locatealg:AES: 4\n");
        expect_line(out, "locatealg:RSA: 1\n");
        expect_line(out, "locatealg:HMAC_SHA256: 2\n");
    }
    {
        /* the public key kmd gave is the key's */
        km_key *p = NULL;
        uint8_t der[200];
        size_t n = 0;
        OK(km_key_open(&p, owner, "p2"));
        OK(km_key_public_export(p, 0, KM_MATERIAL_SPKI_DER, der, sizeof der, &n));
        ck_assert_uint_eq(n, 120);
        km_key_free(p);
    }
    /* what PyKMIP made is in the vault, owned by the admin */
    OK(km_key_open(&k, owner, "h1"));
    km_key_free(k);
    OK(km_audit_verify(owner, NULL, NULL, NULL));
}
END_TEST

/* ------------------------------------------------------------ boundary */

typedef struct who_seen {
    const char *principal;
    int n;
} who_seen;

static int count_principal(const km_audit_entry *e, void *arg)
{
    who_seen *w = arg;
    if (strcmp(e->principal, w->principal) == 0)
        w->n++;
    return 0;
}

/* A user reaching only the socket: encrypt with its grant, no decrypt
 * without one, no create; AAD bound; its entries name it and its uid; once
 * removed, its next request on the open connection is refused. */
START_TEST(test_kmd_boundary_user)
{
    char uid[33], expect[96];
    res enc, r;
    who_seen w;
    int fd;

    owner_key("orders", TU_USER, KM_PERM_ENCRYPT, uid);
    kmd_start(TU_USER, NULL);
    fd = connect_kmd();
    do_encrypt(fd, uid, "card 4111", "order-1", &enc);
    ck_assert_uint_eq(enc.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_uint_eq(enc.iv_len, 16);
    ck_assert_uint_eq(enc.data_len, 9 + 16);     /* the tag appended */
    do_decrypt(fd, uid, &enc, "order-1", &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_FAILED);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    do_create(fd, "mine", &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    do_simple(fd, KM__KMIP_OP_DESTROY, uid, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    /* granted decrypt: the round trip, and a wrong AAD fails */
    {
        km_key *k = NULL;
        OK(km_key_open(&k, owner, "orders"));
        OK(km_key_grant(k, TU_USER, KM_PERM_ENCRYPT | KM_PERM_DECRYPT));
        km_key_free(k);
    }
    tu_sleep_ms(50);
    do_decrypt(fd, uid, &enc, "order-1", &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_uint_eq(r.data_len, 9);
    ck_assert_mem_eq(r.data, "card 4111", 9);
    do_decrypt(fd, uid, &enc, "order-2", &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE);
    /* the ciphertext kmd made is libkm's: the owner decrypts it embedded */
    {
        uint8_t ct[64], pt[64];
        size_t n = 0;
        ct[0] = 0x4b; ct[1] = 0x4d; ct[2] = 1; ct[3] = KM_KEY_AES_256_GCM;
        {
            int i;
            for (i = 0; i < 16; i++) {
                unsigned x;
                ck_assert_int_eq(sscanf(uid + 2 * i, "%2x", &x), 1);
                ct[4 + i] = (uint8_t)x;
            }
        }
        memcpy(ct + 20, enc.iv, 16);
        memcpy(ct + 36, enc.data, enc.data_len);
        OK(km_decrypt(owner, 0, ct, 36 + enc.data_len, (const uint8_t *)"order-1", 7, pt,
                      sizeof pt, &n));
        ck_assert_mem_eq(pt, "card 4111", 9);
    }
    /* removed: the next request on the same connection is refused */
    OK(km_principal_remove(owner, TU_USER, 0));
    tu_sleep_ms(50);
    do_encrypt(fd, uid, "x", NULL, &r);
    ck_assert_msg(r.closed || r.reason == KM__KMIP_REASON_PERMISSION_DENIED,
                  "a removed principal's request was not refused");
    close(fd);
    /* a new connection of the removed principal is refused outright */
    fd = connect_kmd();
    ck_assert(closed_within(fd, 2000));
    close(fd);
    kmd_stop(SIGTERM);
    OK(km_audit_verify(owner, NULL, NULL, NULL));
    memset(&w, 0, sizeof w);
    snprintf(expect, sizeof expect, "%s via uid:%u", TU_USER, (unsigned)getuid());
    w.principal = expect;
    OK(km_audit_foreach(owner, 1, count_principal, &w));
    ck_assert_int_ge(w.n, 3);    /* its denials at least */
}
END_TEST

/* The auditor through the socket: may not destroy, revoke or use a key. */
START_TEST(test_kmd_boundary_auditor)
{
    char uid[33];
    res r;
    int fd;

    owner_key("k", NULL, 0, uid);
    kmd_start(TU_AUDITOR, NULL);
    fd = connect_kmd();
    do_simple(fd, KM__KMIP_OP_REVOKE, uid, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    do_simple(fd, KM__KMIP_OP_DESTROY, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_FAILED);
    do_encrypt(fd, uid, "x", NULL, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    close(fd);
    kmd_stop(SIGTERM);
    {
        km_key *k = NULL;
        km_keyinfo *info = NULL;
        km_version_info vi;
        OK(km_key_open(&k, owner, "k"));
        OK(km_key_info(&info, k));
        OK(km_keyinfo_version(info, 0, &vi, sizeof vi));
        ck_assert_int_eq(vi.state, KM_STATE_ACTIVE);
        km_keyinfo_free(info);
        km_key_free(k);
    }
}
END_TEST

/* A uid that the configuration does not map gets nothing: closed at once. */
START_TEST(test_kmd_unmapped_uid_refused)
{
    char uid[33];
    res r;
    int fd;

    owner_key("k", NULL, 0, uid);
    kmd_start(NULL, "principal.4000000000 = " TU_ADMIN "\n");
    fd = connect_kmd();
    ck_assert(closed_within(fd, 2000));
    close(fd);
    (void)r;
}
END_TEST

/* --------------------------------------------------------------- faults */

/* Still serving: a GetAttributes on a new connection succeeds. */
static void still_serving(const char *uid)
{
    res r;
    int fd = connect_kmd();
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    close(fd);
}

/* Garbage, a message that is not a request, a truncated one, an oversized
 * one and a slow one (a byte every 300 ms): each refused (an Invalid Message
 * answer where kmd could read it, then the connection closed) within its
 * limits, and kmd keeps serving. */
START_TEST(test_kmd_malformed_requests)
{
    char uid[33];
    uint8_t junk[64];
    res r;
    int fd, i;
    km__ttlv_enc e;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, "request_timeout_ms = 600\nidle_timeout_ms = 1500\nmax_message = 4096\n");

    /* well framed, bad inside (type 0x42 is no TTLV type): Invalid Message */
    memset(junk, 0xA5, sizeof junk);
    junk[0] = 0x42; junk[1] = 0x00; junk[2] = 0x78; junk[3] = 0x42;
    junk[4] = 0; junk[5] = 0; junk[6] = 0; junk[7] = 56;
    fd = connect_kmd();
    send_all(fd, junk, sizeof junk);
    {
        size_t n;
        uint8_t *b = recv_msg(fd, &n);
        ck_assert_ptr_nonnull(b);
        parse(b, n, &r);
        free(b);
        ck_assert_uint_eq(r.reason, KM__KMIP_REASON_INVALID_MESSAGE);
    }
    ck_assert(closed_within(fd, 2000));
    close(fd);

    /* a Response Message sent as a request */
    fd = connect_kmd();
    km__ttlv_enc_init(&e, 0);
    km__ttlv_begin(&e, T(RESPONSE_MESSAGE));
    km__ttlv_put_int(&e, T(BATCH_COUNT), 1);
    km__ttlv_end(&e);
    roundtrip(fd, &e, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_INVALID_MESSAGE);
    close(fd);

    /* truncated: the header promises more than comes */
    fd = connect_kmd();
    send_all(fd, junk, 20);
    ck_assert(closed_within(fd, 3000));
    close(fd);

    /* oversized: refused from the header, the rest never read */
    fd = connect_kmd();
    junk[4] = 0; junk[5] = 0x10; junk[6] = 0; junk[7] = 0;   /* 1 MiB */
    send_all(fd, junk, 8);
    ck_assert(closed_within(fd, 2000));
    close(fd);

    /* slow: one byte every 300 ms passes request_timeout_ms */
    fd = connect_kmd();
    req_begin(&e, KM__KMIP_OP_GET_ATTRIBUTES);
    put_uid(&e, uid);
    req_end(&e);
    {
        const uint8_t *m;
        size_t n;
        int closed = 0;
        ck_assert_int_eq(km__ttlv_enc_finish(&e, &m, &n), KM_OK);
        for (i = 0; i < (int)n && !closed; i++) {
            if (send(fd, m + i, 1, MSG_NOSIGNAL) != 1)
                closed = 1;
            tu_sleep_ms(300);
        }
        ck_assert_msg(closed || closed_within(fd, 2000), "a slow request was not cut off");
        ck_assert_int_lt(i, (int)n);
    }
    km__ttlv_enc_free(&e);
    close(fd);

    /* idle: a silent connection is closed after idle_timeout_ms */
    fd = connect_kmd();
    ck_assert(closed_within(fd, 4000));
    close(fd);
    still_serving(uid);
}
END_TEST

/* A client killed in the middle of sending a request, and one killed after
 * sending it without reading the answer: kmd serves the next client. */
START_TEST(test_kmd_client_killed_mid_request)
{
    char uid[33];
    int j;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, NULL);
    for (j = 0; j < 2; j++) {
        pid_t p = fork();
        ck_assert_int_ge(p, 0);
        if (p == 0) {
            km__ttlv_enc e;
            const uint8_t *m;
            size_t n;
            int fd = connect_kmd();
            req_begin(&e, KM__KMIP_OP_ENCRYPT);
            put_uid(&e, uid);
            km__ttlv_put_bytes(&e, T(DATA), (const uint8_t *)"0123456789", 10);
            req_end(&e);
            if (km__ttlv_enc_finish(&e, &m, &n) != KM_OK)
                _exit(1);
            send_all(fd, m, j == 0 ? n / 2 : n);
            raise(SIGKILL);
        }
        waitpid(p, NULL, 0);
    }
    still_serving(uid);
    {
        res enc, r;
        int fd = connect_kmd();
        do_encrypt(fd, uid, "after", NULL, &enc);
        ck_assert_uint_eq(enc.status, KM__KMIP_STATUS_SUCCESS);
        do_decrypt(fd, uid, &enc, NULL, &r);
        ck_assert_mem_eq(r.data, "after", 5);
        close(fd);
    }
}
END_TEST

/* 64 clients at once, each with its own connection, encrypt and decrypt. */
typedef struct cl_arg {
    const char *uid;
    int ok;
} cl_arg;

static void *client_main(void *arg)
{
    cl_arg *a = arg;
    int fd, i;
    a->ok = 0;
    fd = connect_kmd();
    for (i = 0; i < 10; i++) {
        res enc, r;
        char msg[32];
        snprintf(msg, sizeof msg, "message %d", i);
        do_encrypt(fd, a->uid, msg, "aad", &enc);
        if (enc.status != KM__KMIP_STATUS_SUCCESS)
            break;
        do_decrypt(fd, a->uid, &enc, "aad", &r);
        if (r.status != KM__KMIP_STATUS_SUCCESS || r.data_len != strlen(msg)
            || memcmp(r.data, msg, r.data_len) != 0)
            break;
        a->ok++;
    }
    close(fd);
    return NULL;
}

START_TEST(test_kmd_64_clients)
{
    char uid[33];
    pthread_t th[64];
    cl_arg a[64];
    int i;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, "max_connections = 64\n");
    for (i = 0; i < 64; i++) {
        a[i].uid = uid;
        ck_assert_int_eq(pthread_create(&th[i], NULL, client_main, &a[i]), 0);
    }
    for (i = 0; i < 64; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].ok, 10);
    }
    still_serving(uid);
}
END_TEST

/* kmd SIGKILLed while a client creates keys: after a restart every Create
 * that was acknowledged is there, and the audit chain is whole. */
START_TEST(test_kmd_sigkill_during_writes)
{
    char names[400][16];
    int acked = 0, fd, round;
    pid_t p;

    for (round = 0; round < 3; round++) {
        int pfd[2];
        kmd_start(TU_ADMIN, NULL);
        ck_assert_int_eq(pipe(pfd), 0);
        p = fork();
        ck_assert_int_ge(p, 0);
        if (p == 0) {
            /* the writer: reports each acknowledged name on the pipe */
            int i;
            close(pfd[0]);
            fd = connect_kmd();
            for (i = 0; i < 100; i++) {
                char nm[16] = { 0 };   /* written whole to the pipe */
                res r;
                snprintf(nm, sizeof nm, "r%d-%d", round, i);
                do_create(fd, nm, &r);
                if (r.closed || r.status != KM__KMIP_STATUS_SUCCESS)
                    _exit(0);
                if (write(pfd[1], nm, sizeof nm) != (ssize_t)sizeof nm)
                    _exit(1);
            }
            _exit(0);
        }
        close(pfd[1]);
        tu_sleep_ms(300 + 200 * round);
        kmd_stop(SIGKILL);
        for (;;) {
            char nm[16];
            if (read(pfd[0], nm, sizeof nm) != (ssize_t)sizeof nm)
                break;
            ck_assert_int_lt(acked, 400);
            memcpy(names[acked++], nm, sizeof nm);
        }
        close(pfd[0]);
        waitpid(p, NULL, 0);
    }
    ck_assert_int_gt(acked, 0);
    kmd_start(TU_ADMIN, NULL);
    fd = connect_kmd();
    {
        int i;
        for (i = 0; i < acked; i++) {
            km_key *k = NULL;
            ck_assert_msg(km_key_open(&k, owner, names[i]) == KM_OK,
                          "acknowledged key %s lost", names[i]);
            km_key_free(k);
        }
    }
    close(fd);
    kmd_stop(SIGTERM);
    OK(km_audit_verify(owner, NULL, NULL, NULL));
}
END_TEST

/* RNGRetrieve and Query through the raw client (PyKMIP 0.10 has no RNG
 * payload); an operation kmd does not serve is Operation Not Supported; an
 * unknown or missing identifier; a client IV is refused (kmd draws nonces). */
START_TEST(test_kmd_rng_and_unsupported)
{
    km__ttlv_enc e;
    res r, r2;
    int fd;

    kmd_start(TU_USER, NULL);
    fd = connect_kmd();
    req_begin(&e, 0x25);
    km__ttlv_put_int(&e, 0x4200C4, 32);
    req_end(&e);
    roundtrip(fd, &e, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_uint_eq(r.data_len, 32);
    req_begin(&e, 0x25);
    km__ttlv_put_int(&e, 0x4200C4, 32);
    req_end(&e);
    roundtrip(fd, &e, &r2);
    ck_assert(memcmp(r.data, r2.data, 32) != 0);
    req_begin(&e, 0x25);
    km__ttlv_put_int(&e, 0x4200C4, 1 << 20);
    req_end(&e);
    roundtrip(fd, &e, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_INVALID_FIELD);
    req_begin(&e, 0x15);   /* Archive */
    req_end(&e);
    roundtrip(fd, &e, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_OPERATION_NOT_SUPPORTED);
    /* an identifier that names no key, or no identifier at all */
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, "00112233445566778899aabbccddeeff", &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, "not-hex", &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, NULL, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_MISSING_DATA);
    /* a client never chooses the nonce */
    {
        char uid[33];
        owner_key("k", TU_USER, KM_PERM_ENCRYPT, uid);
        req_begin(&e, KM__KMIP_OP_ENCRYPT);
        put_uid(&e, uid);
        km__ttlv_put_bytes(&e, T(DATA), (const uint8_t *)"x", 1);
        km__ttlv_put_bytes(&e, T(IV_COUNTER_NONCE), (const uint8_t *)"000000000000", 12);
        req_end(&e);
        roundtrip(fd, &e, &r);
        ck_assert_uint_eq(r.reason, KM__KMIP_REASON_FEATURE_NOT_SUPPORTED);
        do_encrypt(fd, uid, "x", NULL, &r);
        ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    }
    close(fd);
}
END_TEST


/* Runs kmd with config text `conf` (the passphrase file left as the test
 * made it); its exit status, which must come within 10 s. */
static int kmd_exit_status(const char *conf)
{
    char path[700], bin[700];
    FILE *f;
    pid_t p;
    int status = 0, i;

    snprintf(path, sizeof path, "%s/bad.conf", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(conf, f);
    fclose(f);
    snprintf(bin, sizeof bin, "%s/src/kmd/kmd", builddir());
    p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 2);
        execl(bin, "kmd", "--config", path, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 200 && waitpid(p, &status, WNOHANG) != p; i++)
        tu_sleep_ms(50);
    if (i == 200) {
        kill(p, SIGKILL);
        waitpid(p, &status, 0);
        ck_abort_msg("kmd ran with a configuration it should refuse:\n%s", conf);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* kmd refuses to start: a passphrase file others may read, a symlink to a
 * good one, a wrong passphrase; configuration errors (unknown key, missing vault, both or
 * neither open method, a bad number, a uid mapped twice). Nothing listens. */
START_TEST(test_kmd_start_refusals)
{
    char conf[2048], base[1024], pass[700], link[700];
    struct stat st;

    kmd_start(TU_ADMIN, NULL);   /* writes DIR/pass (0600) and a good config */
    kmd_stop(SIGTERM);
    snprintf(pass, sizeof pass, "%s/pass", dir);
    snprintf(base, sizeof base, "vault = lmdb:%s/vault\nsocket = %s\n", dir, sock);
    ck_assert_int_eq(chmod(pass, 0640), 0);
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\n", base, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 1);
    ck_assert_int_eq(chmod(pass, 0600), 0);
    snprintf(link, sizeof link, "%s/pass-link", dir);
    ck_assert_int_eq(symlink(pass, link), 0);
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\n", base, link);
    ck_assert_int_eq(kmd_exit_status(conf), 1);
    {
        FILE *f;
        snprintf(link, sizeof link, "%s/wrong", dir);
        f = fopen(link, "w");
        fputs("not the passphrase\n", f);
        fclose(f);
        ck_assert_int_eq(chmod(link, 0600), 0);
        snprintf(conf, sizeof conf, "%spassphrase_file = %s\n", base, link);
        ck_assert_int_eq(kmd_exit_status(conf), 1);
    }
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\nlisten_tcp = 1\n", base, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    snprintf(conf, sizeof conf, "socket = %s\npassphrase_file = %s\n", sock, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    snprintf(conf, sizeof conf, "%s", base);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\nslot_backend = tpm2\n", base, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\nmax_connections = lots\n", base, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    snprintf(conf, sizeof conf, "%spassphrase_file = %s\nprincipal.7 = a\nprincipal.7 = b\n",
             base, pass);
    ck_assert_int_eq(kmd_exit_status(conf), 2);
    ck_assert_int_ne(stat(sock, &st), 0);
    /* the shipped example is a valid configuration */
    {
        char cmd[1400];
        const char *src = getenv("top_srcdir");
        snprintf(cmd, sizeof cmd, "%s/src/kmd/kmd --config %s/src/kmd/kmd.conf.example "
                 "--check-config 2>/dev/null", builddir(), src != NULL ? src : ".");
        ck_assert_int_eq(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/src/kmd/kmd --config %s/bad.conf --check-config "
                 "2>/dev/null", builddir(), dir);
        ck_assert_int_ne(system(cmd), 0);
    }
}
END_TEST

/* max_connections: the connection past the limit is closed at once; one
 * freed makes room again. */
START_TEST(test_kmd_connection_limit)
{
    char uid[33];
    res r;
    int a, b, c;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, "max_connections = 2\n");
    a = connect_kmd();
    b = connect_kmd();
    do_simple(a, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    do_simple(b, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    c = connect_kmd();
    ck_assert(closed_within(c, 2000));
    close(c);
    close(a);
    tu_sleep_ms(300);
    still_serving(uid);
    close(b);
}
END_TEST

typedef struct note_seen {
    int shares, other;
} note_seen;

static int count_notes(const km_audit_entry *e, void *arg)
{
    note_seen *n = arg;
    if (strcmp(e->op, "vault.open") == 0) {
        if (strstr(e->detail, "unseal: share ") != NULL && strstr(e->detail, "from uid:") != NULL)
            n->shares++;
        else
            n->other++;
    }
    return 0;
}

/* kmctl unseal: runs it with the share files; its exit status, output in out. */
static int kmctl_unseal(const char *files, char *out, size_t cap)
{
    char cmd[2048];
    FILE *p;
    size_t n;
    snprintf(cmd, sizeof cmd, "%s/src/kmctl/kmctl --vault kmd:%s unseal %s 2>&1", builddir(),
             sock, files);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

/* A kmd started sealed serves nothing but Unseal until custodians sent M
 * shares with kmctl unseal: a repeated share counts once, an altered one
 * makes kmd forget every share held, the right M open the vault; a
 * connection made while sealed works once unsealed; each share is in the
 * audit log with its sender; a second unseal is refused. */
START_TEST(test_kmd_sealed_start_unseal)
{
    km_secret *sh[3];
    char path[3][700], files[2200], out[1024], uid[33];
    res r;
    int fd, i;
    note_seen n;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    OK(km_vault_add_shares(owner, 2, 3, sh));
    for (i = 0; i < 3; i++) {
        FILE *f;
        snprintf(path[i], sizeof path[i], "%s/share%d", dir, i);
        f = fopen(path[i], "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%s\n", (const char *)km_secret_data(sh[i]));
        fclose(f);
        ck_assert_int_eq(chmod(path[i], 0600), 0);
    }
    kmd_start(TU_ADMIN, "unseal = shares\n");
    fd = connect_kmd();
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);

    snprintf(files, sizeof files, "--share-file %s --share-file %s", path[0], path[0]);
    ck_assert_msg(kmctl_unseal(files, out, sizeof out) == 0, "kmctl unseal: %s", out);
    ck_assert_msg(strstr(out, "sealed: 1 of 2 shares received") != NULL, "%s", out);
    /* an altered share: the open fails, kmd forgets the shares it held */
    {
        char bad[700];
        FILE *f;
        char *t = strdup((const char *)km_secret_data(sh[1]));
        size_t len = strlen(t);
        t[len - 3] = t[len - 3] == 'A' ? 'B' : 'A';
        snprintf(bad, sizeof bad, "%s/bad", dir);
        f = fopen(bad, "w");
        fprintf(f, "%s\n", t);
        fclose(f);
        chmod(bad, 0600);
        free(t);
        snprintf(files, sizeof files, "--share-file %s", bad);
        ck_assert_int_ne(kmctl_unseal(files, out, sizeof out), 0);
        ck_assert_msg(strstr(out, "did not open the vault") != NULL, "%s", out);
    }
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    snprintf(files, sizeof files, "--share-file %s --share-file %s", path[2], path[1]);
    ck_assert_msg(kmctl_unseal(files, out, sizeof out) == 0, "kmctl unseal: %s", out);
    ck_assert_msg(strstr(out, "unsealed (2 of 2 shares)") != NULL, "%s", out);
    /* the connection made while sealed now acts as its principal */
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    close(fd);
    snprintf(files, sizeof files, "--share-file %s", path[0]);
    ck_assert_int_ne(kmctl_unseal(files, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "not sealed") != NULL, "%s", out);
    kmd_stop(SIGTERM);
    memset(&n, 0, sizeof n);
    OK(km_audit_foreach(owner, 1, count_notes, &n));
    ck_assert_int_eq(n.shares, 2);
    OK(km_audit_verify(owner, NULL, NULL, NULL));
    for (i = 0; i < 3; i++)
        km_secret_free(sh[i]);
}
END_TEST

/* ReKey makes a new managed object (the key's next version, "<id>-v2"),
 * linked to the one rekeyed: Encrypt by the new identifier uses the new
 * version, the old object no longer protects but still decrypts what it
 * made (and only that: an IV of the other version is refused); the old
 * object is not rekeyed twice; a user without the admin role may not
 * rekey. */
START_TEST(test_kmd_rekey)
{
    char uid[33], v2[40];
    res enc1, enc2, r;
    int fd;
    km_key *k = NULL;
    km_keyinfo *info = NULL;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, NULL);
    fd = connect_kmd();
    do_encrypt(fd, uid, "before", NULL, &enc1);
    ck_assert_uint_eq(enc1.status, KM__KMIP_STATUS_SUCCESS);
    do_simple(fd, 0x04, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    snprintf(v2, sizeof v2, "%s-v2", uid);
    ck_assert_str_eq(r.uid, v2);
    do_encrypt(fd, v2, "after", NULL, &enc2);
    ck_assert_uint_eq(enc2.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_str_eq(enc2.uid, v2);
    ck_assert_uint_eq(enc1.iv[3], 1);   /* the version, big-endian */
    ck_assert_uint_eq(enc2.iv[3], 2);
    /* the replaced object protects no more, and names its replacement */
    do_encrypt(fd, uid, "stale", NULL, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ILLEGAL_OPERATION);
    ck_assert_msg(strstr(r.msg, v2) != NULL, "%s", r.msg);
    do_decrypt(fd, uid, &enc1, NULL, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_mem_eq(r.data, "before", 6);
    do_decrypt(fd, v2, &enc2, NULL, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert_mem_eq(r.data, "after", 5);
    do_decrypt(fd, uid, &enc2, NULL, &r);   /* not this object's ciphertext */
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_CRYPTOGRAPHIC_FAILURE);
    /* the Links: the old object's Replacement Object is the new one, the
     * new one's Replaced Object the old */
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, uid, &r);
    ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
    ck_assert(has_link(&r, 0x10A, v2));
    ck_assert(!has_link(&r, 0x10B, v2));
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, v2, &r);
    ck_assert(has_link(&r, 0x10B, uid));
    ck_assert(!has_link(&r, 0x10A, uid));
    do_simple(fd, 0x04, uid, &r);           /* already replaced */
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ILLEGAL_OPERATION);
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, "00000000000000000000000000000000-v2", &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    snprintf(v2, sizeof v2, "%s-v3", uid);  /* no such version */
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, v2, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    snprintf(v2, sizeof v2, "%s-v1", uid);  /* version 1 has one name: the bare id */
    do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, v2, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    {
        /* versions of two digits (rotated by the owner, seen by kmd) */
        int i;
        OK(km_key_open(&k, owner, "k"));
        for (i = 3; i <= 10; i++)
            OK(km_key_rotate(k, NULL));
        km_key_free(k);
        k = NULL;
        tu_sleep_ms(50);
        snprintf(v2, sizeof v2, "%s-v10", uid);
        do_encrypt(fd, v2, "ten", NULL, &r);
        ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
        ck_assert_uint_eq(r.iv[3], 10);
        snprintf(v2, sizeof v2, "%s-v010", uid);
        do_simple(fd, KM__KMIP_OP_GET_ATTRIBUTES, v2, &r);
        ck_assert_uint_eq(r.reason, KM__KMIP_REASON_ITEM_NOT_FOUND);
    }
    close(fd);
    OK(km_key_open(&k, owner, "k"));
    OK(km_key_info(&info, k));
    ck_assert_uint_eq(km_keyinfo_version_count(info), 10);
    km_keyinfo_free(info);
    km_key_free(k);
    kmd_stop(SIGTERM);
    kmd_start(TU_USER, NULL);
    fd = connect_kmd();
    snprintf(v2, sizeof v2, "%s-v10", uid);
    do_simple(fd, 0x04, v2, &r);
    ck_assert_uint_eq(r.reason, KM__KMIP_REASON_PERMISSION_DENIED);
    close(fd);
}
END_TEST

/* The deviations closed, driven by PyKMIP's client: ReKey -> Encrypt
 * by the new identifier, the Link attributes both ways; the Cryptographic
 * Usage Mask made the key's usage (an HMAC key with Encrypt refused, the
 * mask reported back); Locate by State, Cryptographic Length and Object
 * Group; Get of a secret key wrapped with a key-wrapping key the principal
 * may use, unwrapped here to the registered bytes; a key not exportable and
 * an export under dual control without approval refused. */
START_TEST(test_kmd_pykmip_rekey_wrap_mask_locate)
{
    static const char *const versions[2] = { "1.4", "2.0" };
    char out[8192], steps[2048];
    km_key *k = NULL;
    int v;

    kmd_start(TU_ADMIN, NULL);
    for (v = 0; v < 2; v++) {
        snprintf(steps, sizeof steps,
                 "create:r%d:AES:256 activate:r%d gcm:r%d:one rekey:r%d:r%dn gcm:r%dn:two "
                 "gcm:r%d:old attrs:r%dn "
                 "create:m%d:HMAC_SHA256:256:MAC_GENERATE,MAC_VERIFY mask:m%d mask:r%d "
                 "create:bad%d:HMAC_SHA256:256:ENCRYPT,DECRYPT",
                 v, v, v, v, v, v, v, v, v, v, v, v);
        pykmip(versions[v], steps, out, sizeof out);
        expect_step(out, "gcm:r", v, ":one: one 16 CRYPTOGRAPHIC_FAILURE");
        expect_step(out, "gcm:r", v, "n:two: two 16 CRYPTOGRAPHIC_FAILURE");
        expect_step(out, "gcm:r", v, ":old: FAIL ");   /* replaced: protects no more */
        expect_step(out, "attrs:r", v, "n: 256 ACTIVE");
        expect_step(out, "mask:m", v, ": MAC_GENERATE,MAC_VERIFY\n");
        expect_step(out, "mask:r", v, ": ENCRYPT,DECRYPT\n");
        expect_step(out, "create:bad", v, ":HMAC_SHA256:256:ENCRYPT,DECRYPT: FAIL INVALID_FIELD");
    }
    /* the new object's identifier is the old one's with -v2 (the Links:
     * test_kmd_rekey; PyKMIP cannot decode a Link attribute) */
    {
        const char *p = strstr(out, "rekey:r1:r1n: ");
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(strncmp(p + strlen("rekey:r1:r1n: ") + 32, "-v2\n", 4), 0);
    }
    /* Locate by State (r0 r1 replaced and new: 4 Active ...), Length, Group */
    pykmip("1.4", "locateattr:state:PRE_ACTIVE locateattr:state:ACTIVE locateattr:length:256",
           out, sizeof out);
    expect_line(out, "locateattr:state:PRE_ACTIVE: 2\n");   /* m0 m1 */
    expect_line(out, "locateattr:state:ACTIVE: 4\n");       /* r0 r0n r1 r1n */
    expect_line(out, "locateattr:length:256: 6\n");
    OK(km_key_create(&k, owner, "grouped", KM_KEY_AES_128_GCM, NULL));
    OK(km_key_set_tag(k, "kmip.object-group", "payments"));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_ALL));
    km_key_free(k);
    pykmip("2.0", "locateattr:group:payments locateattr:group:none locateattr:length:128", out,
           sizeof out);
    expect_line(out, "locateattr:group:payments: 1\n");
    expect_line(out, "locateattr:group:none: 0\n");
    expect_line(out, "locateattr:length:128: 1\n");
    /* Get wrapped: an exportable key under a key-wrapping key, unwrapped
     * with RFC 5649 here to the registered bytes; a non-exportable one and
     * a secret Get without wrapping refused */
    pykmip("1.4", "registerkek:kek:" K32 " registerexp:exp:000102030405060708090a0b0c0d0e0f "
                  "activate:kek activate:exp getwrapped:exp:kek:" K32 " create:plain:AES:256 getwrapped:plain:kek get:exp "
                  "getwrapped:exp:plain mask:exp mask:kek",
           out, sizeof out);
    expect_line(out, "getwrapped:exp:kek:" K32 ": SymmetricKey 24 True "
                     "000102030405060708090a0b0c0d0e0f\n");
    expect_line(out, "getwrapped:plain:kek: FAIL PERMISSION_DENIED");
    expect_line(out, "get:exp: FAIL PERMISSION_DENIED");
    expect_line(out, "getwrapped:exp:plain: FAIL INVALID_FIELD");
    expect_line(out, "mask:exp: ENCRYPT,DECRYPT,EXPORT\n");
    expect_line(out, "mask:kek: WRAP_KEY,UNWRAP_KEY\n");
    /* the export's dual control: refused until a custodian approved the
     * principal's request */
    {
        static const char pol[] = "{\"version\": 1, \"dual_control\": {\"principal-change\": 1, "
                                  "\"policy-change\": 1, \"export\": 1}}";
        km_ctx *admin, *cust;
        km_key *kek = NULL;
        uint8_t id[16];
        OK(km_policy_set(owner, pol, strlen(pol)));
        pykmip("2.0", "getwrapped:exp:kek", out, sizeof out);
        expect_line(out, "getwrapped:exp:kek: FAIL PERMISSION_DENIED");
        admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
        cust = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
        OK(km_key_open(&kek, owner, "kek"));
        OK(km_request_create(admin, KM_REQ_EXPORT, "exp", km_key_id(kek), 16, 3600, id));
        pykmip("2.0", "getwrapped:exp:kek", out, sizeof out);   /* not yet approved */
        expect_line(out, "getwrapped:exp:kek: FAIL PERMISSION_DENIED");
        OK(km_request_approve(cust, id));
        pykmip("2.0", "getwrapped:exp:kek:" K32, out, sizeof out);
        expect_line(out, "getwrapped:exp:kek:" K32 ": SymmetricKey 24 True "
                         "000102030405060708090a0b0c0d0e0f\n");
        pykmip("2.0", "getwrapped:exp:kek", out, sizeof out);   /* the approval is spent */
        expect_line(out, "getwrapped:exp:kek: FAIL PERMISSION_DENIED");
        km_key_free(kek);
        km_close(admin);
        km_close(cust);
    }
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

/* Runs pykmip_unix.py on kmd's TLS listener as client certificate `name`;
 * its output in out (the exit status is not checked: refusals exit 3). */
static void pykmip_tls(int port, const char *pki, const char *name, const char *steps, char *out,
                       size_t cap)
{
    char cmd[4096];
    const char *src = getenv("top_srcdir");
    FILE *p;
    size_t n;
    snprintf(cmd, sizeof cmd, "timeout 120 /usr/bin/python3 %s/tests/kmd/pykmip_unix.py "
             "tls:%d:%s:%s 1.4 %s 2>&1", src != NULL ? src : ".", port, pki, name, steps);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    pclose(p);
}

/* The TLS listener: PyKMIP's client, unchanged, with a certificate whose CN
 * is mapped works as that principal (audited "via tls:CN=..."); refused: a
 * CN not mapped, a certificate of another CA, one without the clientAuth
 * purpose, an expired one, no certificate. kmd names each refusal. */
START_TEST(test_kmd_tls)
{
    char pki[700], cmd[4096], extra[2600], out[4096], *log;
    static const char *const refused[] = { "client2", "other", "noeku", "exp", "-" };
    static const char *const why[] = {
        "tls:CN=libkm-b: refused: no principal is mapped",
        "unable to get local issuer certificate", "unsuitable certificate purpose",
        "certificate has expired", "peer did not return a certificate" };
    const char *src = getenv("top_srcdir");
    size_t len, i;
    int port = free_port();
    who_seen w;

    snprintf(pki, sizeof pki, "%s/pki", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && sh %s/tests/kmip/pykmip.sh certs %s && cd %s && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout exp.key "
             "-out exp.csr -subj /CN=libkm-a 2>/dev/null && printf 'extendedKeyUsage=clientAuth\\n'"
             " > exp.ext && openssl x509 -req -in exp.csr -CA ca.crt -CAkey ca.key "
             "-CAcreateserial -out exp.crt -days -1 -extfile exp.ext 2>/dev/null",
             pki, src != NULL ? src : ".", pki, pki);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(extra, sizeof extra, "tls_listen = 127.0.0.1:%d\ntls_ca = %s/ca.crt\n"
             "tls_cert = %s/server.crt\ntls_key = %s/server.key\n"
             "tls_principal.libkm-a = " TU_ADMIN "\n", port, pki, pki, pki);
    kmd_start(NULL, extra);
    pykmip_tls(port, pki, "client", "query create:t1:AES:256 activate:t1 gcm:t1:over-tls", out,
               sizeof out);
    expect_line(out, "query: 20");
    expect_line(out, "gcm:t1:over-tls: over-tls 16 CRYPTOGRAPHIC_FAILURE");
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        pykmip_tls(port, pki, refused[i], "query", out, sizeof out);
        ck_assert_msg(strstr(out, "query: 20") == NULL, "%s was served:\n%s", refused[i], out);
        ck_assert_msg(strstr(out, "ERROR") != NULL, "%s: no error:\n%s", refused[i], out);
    }
    kmd_stop(SIGTERM);
    snprintf(cmd, sizeof cmd, "%s/kmd.log", dir);
    log = (char *)tu_read_file(cmd, &len);
    ck_assert_ptr_nonnull(log);
    for (i = 0; i < sizeof why / sizeof why[0]; i++)
        ck_assert_msg(tu_memmem((const uint8_t *)log, len, (const uint8_t *)why[i], strlen(why[i])),
                      "kmd did not log '%s'", why[i]);
    free(log);
    memset(&w, 0, sizeof w);
    w.principal = TU_ADMIN " via tls:CN=libkm-a";
    OK(km_audit_foreach(owner, 1, count_principal, &w));
    ck_assert_int_ge(w.n, 2);    /* the create and the activation */
}
END_TEST

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A sender of one byte per second (the slow client) holds only its
 * own connection: while it dribbles, another client's requests are each
 * answered at once, and the slow one is cut off at request_timeout_ms. */
START_TEST(test_kmd_slow_sender_one_byte_per_second)
{
    char uid[33];
    km__ttlv_enc e;
    const uint8_t *m;
    size_t n;
    int slow, fd, i, sent = 0, closed = 0;
    double t0;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, "request_timeout_ms = 3000\n");
    slow = connect_kmd();
    fd = connect_kmd();
    req_begin(&e, KM__KMIP_OP_GET_ATTRIBUTES);
    put_uid(&e, uid);
    req_end(&e);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &m, &n), KM_OK);
    t0 = mono_s();
    while (!closed && mono_s() - t0 < 8) {
        res r, enc;
        double a;
        if (send(slow, m + sent, 1, MSG_NOSIGNAL) != 1) {
            closed = 1;
            break;
        }
        sent++;
        /* meanwhile: the other client, answered at once */
        for (i = 0; i < 5; i++) {
            a = mono_s();
            do_encrypt(fd, uid, "fast", NULL, &enc);
            ck_assert_uint_eq(enc.status, KM__KMIP_STATUS_SUCCESS);
            ck_assert_msg(mono_s() - a < 0.9, "a request waited %.2f s behind a slow sender",
                          mono_s() - a);
            (void)r;
        }
        {
            struct pollfd p = { slow, POLLIN, 0 };
            if (poll(&p, 1, 1000) > 0) {   /* kmd closed it (maybe with an answer first) */
                uint8_t b[512];
                ssize_t k = recv(slow, b, sizeof b, MSG_DONTWAIT);
                closed = k == 0 || (k < 0 && errno != EAGAIN) || closed_within(slow, 500);
            }
        }
    }
    ck_assert_msg(closed, "the slow sender was not cut off");
    ck_assert_int_lt(sent, (int)n);
    ck_assert_msg(mono_s() - t0 > 2.5, "cut off before request_timeout_ms");
    km__ttlv_enc_free(&e);
    close(slow);
    close(fd);
}
END_TEST

/* A client that sends requests and never reads the answers: kmd's answers
 * fill the socket, its send gives up after 5 s and the connection is
 * closed; another client is served all along. */
START_TEST(test_kmd_client_not_reading_cut_off)
{
    char uid[33];
    km__ttlv_enc e;
    const uint8_t *m;
    size_t n;
    int hog, i, stuck = 0;
    res r;
    double t0;

    owner_key("k", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(TU_ADMIN, NULL);
    hog = connect_kmd();
    req_begin(&e, KM__KMIP_OP_GET_ATTRIBUTES);
    put_uid(&e, uid);
    req_end(&e);
    ck_assert_int_eq(km__ttlv_enc_finish(&e, &m, &n), KM_OK);
    /* until both directions are full (kmd blocked in its send) */
    for (i = 0; i < 200000 && stuck < 50; i++) {
        if (send(hog, m, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
            stuck++;
            tu_sleep_ms(20);
        }
    }
    ck_assert_int_ge(stuck, 50);
    km__ttlv_enc_free(&e);
    still_serving(uid);
    t0 = mono_s();
    {
        int fd = connect_kmd();
        do_encrypt(fd, uid, "other", NULL, &r);
        ck_assert_uint_eq(r.status, KM__KMIP_STATUS_SUCCESS);
        close(fd);
    }
    /* not read for longer than kmd's send waits (5 s): then drained, the
     * connection ends (kmd gave up on it, the queued requests unserved) */
    tu_sleep_ms(6000);
    ck_assert_msg(closed_within(hog, 5000), "a client that never reads was not cut off");
    ck_assert(mono_s() - t0 < 12);
    close(hog);
    still_serving(uid);
}
END_TEST

/* ------------------------------------------------- the boundary, attacked */

/* Item 4 of issue 20: every attack of the security issue (docs/SECURITY.md's
 * findings) that needed the vault files or the master key, re-run by a
 * principal that reaches only kmd's socket: a child process that setuid()s
 * to nobody (65534, mapped to uma-user in kmd's configuration) while the
 * vault directory is root's, mode 0700. The tests run as root. Each test is
 * named after the finding it re-runs. */

#define NOBODY 65534
static char rundir[64];

/* The attack case's fixture: the vault directory root's and 0700, kmd's
 * socket in a directory of its own that nobody may enter (0755). */
static void setup_attacks(void)
{
    setup();
    ck_assert_msg(geteuid() == 0 || getenv("CI") == NULL,
                  "the boundary attacks need root (setuid to nobody)");
    ck_assert_int_eq(chmod(dir, 0700), 0);
    snprintf(rundir, sizeof rundir, "/tmp/kmd-run-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(rundir));
    ck_assert_int_eq(chmod(rundir, 0755), 0);
    snprintf(sock, sizeof sock, "%s/kmd.sock", rundir);
}

static void teardown_attacks(void)
{
    teardown();
    unlink(sock);
    rmdir(rundir);
}

#define ATTACKER_CONF "socket_mode = 0666\nprincipal.65534 = " TU_USER "\n"

/* What the attacker's child reports: NULL (every attack refused) or why not. */
typedef const char *(*attack_fn)(void *arg);

/* Runs fn in a child that is nobody (uid and gid 65534, no groups); the
 * child's verdict in msg. 0 when every attack was refused. */
static int as_nobody_with(attack_fn fn, void *arg, void (*parent)(void *), char *msg,
                          size_t cap)
{
    int p[2], st = 0;
    pid_t pid;
    ssize_t n;

    if (geteuid() != 0) {
        snprintf(msg, cap, "skipped: not root");
        return 0;
    }
    ck_assert_int_eq(pipe(p), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *why;
        close(p[0]);
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0
            || getuid() != NOBODY || setuid(0) == 0)
            why = "could not become nobody for good";
        else
            why = fn(arg);
        if (why != NULL && write(p[1], why, strlen(why)) < 0)
            _exit(2);
        _exit(why != NULL);
    }
    close(p[1]);
    if (parent != NULL)
        parent(arg);
    n = read(p[0], msg, cap - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int as_nobody(attack_fn fn, void *arg, char *msg, size_t cap)
{
    return as_nobody_with(fn, arg, NULL, msg, cap);
}

#define ATTACK(fn, arg)                                                                        \
    do {                                                                                       \
        char why_[512];                                                                        \
        ck_assert_msg(as_nobody(fn, arg, why_, sizeof why_) == 0, "%s", why_);                 \
    } while (0)

/* A refusal the child expects: returns its reason when not refused. */
#define REFUSED(cond, what)                                                                    \
    do {                                                                                       \
        if (!(cond))                                                                           \
            return "not refused: " what;                                                       \
    } while (0)

/* The vault files: not even listed, read or written by the principal. */
static const char *try_vault_files(void *arg)
{
    char p[700];
    int fd;
    km_ctx *c = NULL;
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    (void)arg;
    snprintf(p, sizeof p, "%s/vault/data.mdb", dir);
    errno = 0;
    fd = open(p, O_RDONLY);
    REFUSED(fd < 0 && errno == EACCES, "reading data.mdb");
    fd = open(p, O_RDWR);
    REFUSED(fd < 0 && errno == EACCES, "opening data.mdb for writing");
    snprintf(p, sizeof p, "%s/vault/lock.mdb", dir);
    fd = open(p, O_RDWR);
    REFUSED(fd < 0 && errno == EACCES, "opening lock.mdb");
    REFUSED(opendir(dir) == NULL && errno == EACCES, "listing the vault's directory");
    snprintf(p, sizeof p, "%s/pass", dir);
    REFUSED(open(p, O_RDONLY) < 0, "reading kmd's passphrase file");
    /* its own passphrase opens nothing: the vault is out of reach */
    snprintf(p, sizeof p, "lmdb:%s/vault", dir);
    o.principal = TU_USER;
    o.passphrase = (const uint8_t *)TU_USER_PASS;
    o.passphrase_len = strlen(TU_USER_PASS);
    REFUSED(km_open(&c, p, &o) != KM_OK, "km_open of the vault with the principal's passphrase");
    return NULL;
}

/* Findings "keyslot records not authenticated: a file edit promotes a
 * principal", "every principal's slot unwraps the same master key" and
 * "single records rolled back": each needs the vault files; a principal of
 * kmd cannot list, read or write them, nor open the vault with its own
 * passphrase. */
START_TEST(test_kmd_attacks_vault_files_out_of_reach)
{
    struct stat st;
    kmd_start(NULL, ATTACKER_CONF);
    /* the premise first: the directory is root's and nobody else's */
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_uint_eq(st.st_uid, 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    ATTACK(try_vault_files, NULL);
}
END_TEST

/* Acting as another principal: the principal comes from the kernel's
 * SO_PEERCRED uid, never from the request; KMIP credentials in the header
 * (an admin's name and passphrase) are not read. */
static const char *try_other_principal(void *arg)
{
    const char *uid = arg;
    km__ttlv_enc e;
    res r;
    int fd = connect_kmd();

    km__ttlv_enc_init(&e, 0);
    km__ttlv_begin(&e, T(REQUEST_MESSAGE));
    km__ttlv_begin(&e, T(REQUEST_HEADER));
    km__ttlv_begin(&e, T(PROTOCOL_VERSION));
    km__ttlv_put_int(&e, T(PROTOCOL_VERSION_MAJOR), 1);
    km__ttlv_put_int(&e, T(PROTOCOL_VERSION_MINOR), 4);
    km__ttlv_end(&e);
    km__ttlv_begin(&e, 0x42000C);                    /* Authentication */
    km__ttlv_begin(&e, 0x420023);                    /* Credential */
    km__ttlv_put_enum(&e, 0x420024, 1);              /* Username and Password */
    km__ttlv_begin(&e, 0x420025);
    km__ttlv_put_text(&e, 0x420099, TU_ADMIN, strlen(TU_ADMIN));
    km__ttlv_put_text(&e, 0x4200A1, TU_ADMIN_PASS, strlen(TU_ADMIN_PASS));
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    km__ttlv_put_int(&e, T(BATCH_COUNT), 1);
    km__ttlv_end(&e);
    km__ttlv_begin(&e, T(BATCH_ITEM));
    km__ttlv_put_enum(&e, T(OPERATION), KM__KMIP_OP_DESTROY);
    km__ttlv_begin(&e, T(REQUEST_PAYLOAD));
    km__ttlv_put_text(&e, T(UNIQUE_IDENTIFIER), uid, strlen(uid));
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    roundtrip(fd, &e, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Destroy with an admin's credential");
    do_create(fd, "as-admin", &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Create (admin only)");
    close(fd);
    return NULL;
}

START_TEST(test_kmd_attacks_act_as_another_principal)
{
    char uid[33], expect[96];
    km_key *k = NULL;
    owner_key("victim", TU_ADMIN, KM_PERM_ALL, uid);
    kmd_start(NULL, ATTACKER_CONF);
    ATTACK(try_other_principal, uid);
    /* the refusals are audited as uma-user via uid:65534, not the admin */
    {
        who_seen w;
        memset(&w, 0, sizeof w);
        snprintf(expect, sizeof expect, "%s via uid:%d", TU_USER, NOBODY);
        w.principal = expect;
        OK(km_audit_foreach(owner, 1, count_principal, &w));
        ck_assert_int_gt(w.n, 0);
    }
    OK(km_key_open(&k, owner, "victim"));
    km_key_free(k);
}
END_TEST

/* Keys outside the principal's grants: encrypt-only means no decrypt, no
 * key it has no grant on at all, no export of a key not granted export,
 * no wrapping under a key-wrapping key it may not use. */
typedef struct grants_arg {
    char enc_only[33], none[33], exportable[33], kek[33];
} grants_arg;

static const char *try_outside_grants(void *arg)
{
    grants_arg *g = arg;
    res enc, r;
    int fd = connect_kmd();
    do_encrypt(fd, g->enc_only, "pan", NULL, &enc);
    REFUSED(enc.status == KM__KMIP_STATUS_SUCCESS, "(the granted Encrypt failed)");
    do_decrypt(fd, g->enc_only, &enc, NULL, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Decrypt with an Encrypt grant");
    do_encrypt(fd, g->none, "pan", NULL, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Encrypt with no grant");
    do_simple(fd, KM__KMIP_OP_REVOKE, g->enc_only, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Revoke");
    do_simple(fd, 0x04, g->enc_only, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "ReKey");
    do_simple(fd, KM__KMIP_OP_GET, g->enc_only, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "Get of a secret key in the clear");
    get_wrapped(fd, g->exportable, g->kek, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED,
            "Get wrapped under a wrapping key the principal may not use");
    close(fd);
    return NULL;
}

START_TEST(test_kmd_attacks_key_outside_grants)
{
    grants_arg g;
    km_key *k = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    owner_key("enc-only", TU_USER, KM_PERM_ENCRYPT, g.enc_only);
    owner_key("none", NULL, 0, g.none);
    o.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, owner, "exportable", KM_KEY_AES_256_GCM, &o));
    OK(km_key_grant(k, TU_USER, KM_PERM_EXPORT));
    km_key_free(k);
    uid_of("exportable", g.exportable);
    OK(km_key_create(&k, owner, "kek", KM_KEY_AES_256_KWP, NULL));   /* no grant */
    km_key_free(k);
    uid_of("kek", g.kek);
    kmd_start(NULL, ATTACKER_CONF);
    ATTACK(try_outside_grants, &g);
}
END_TEST

/* An exportable key "exp" and a key-wrapping key "kek" the admin may use
 * (Export on exp, Encrypt on kek), with the vault policy's export under
 * dual control (one approval); their identifiers in exp and kek. */
static void export_under_dual_control(char exp[33], char kek[33])
{
    static const char pol[] = "{\"version\": 1, \"dual_control\": {\"principal-change\": 1, "
                              "\"policy-change\": 1, \"export\": 1}}";
    km_key *k = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    o.flags = KM_KEY_EXPORTABLE;
    OK(km_key_create(&k, owner, "exp", KM_KEY_AES_256_GCM, &o));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_EXPORT));
    km_key_free(k);
    OK(km_key_create(&k, owner, "kek", KM_KEY_AES_256_KWP, NULL));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_ENCRYPT));
    km_key_free(k);
    uid_of("exp", exp);
    uid_of("kek", kek);
    OK(km_policy_set(owner, pol, strlen(pol)));
}

/* Dual control through the socket: the export waits for an approval; the
 * requester approving its own request counts for nothing; once a custodian
 * approved, the export goes through once, and the very same request bytes
 * sent again are refused (the approval is spent). */
typedef struct dual_arg {
    char exp[33], kek[33];
    int to_child[2], to_parent[2];
    uint8_t id[16];
} dual_arg;

static char sync_wait(int fd)
{
    char c = 0;
    return read(fd, &c, 1) == 1 ? c : 0;
}

static void sync_say(int fd, char c)
{
    ck_assert_int_eq(write(fd, &c, 1), 1);
}

static const char *try_dual_control(void *arg)
{
    dual_arg *d = arg;
    km__ttlv_enc e;
    const uint8_t *m;
    uint8_t msg[1024];
    size_t n;
    res r;
    int fd = connect_kmd();

    close(d->to_child[1]);
    close(d->to_parent[0]);
    get_wrapped(fd, d->exp, d->kek, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "an export with no request");
    sync_say(d->to_parent[1], 'a');   /* the parent makes the request, self-approved */
    REFUSED(sync_wait(d->to_child[0]) == 'b', "(no word from the parent)");
    get_wrapped(fd, d->exp, d->kek, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "an export its requester approved");
    sync_say(d->to_parent[1], 'c');   /* the parent has a custodian approve */
    REFUSED(sync_wait(d->to_child[0]) == 'd', "(no word from the parent)");
    build_get_wrapped(&e, d->exp, d->kek);
    if (km__ttlv_enc_finish(&e, &m, &n) != KM_OK || n > sizeof msg)
        return "(cannot build the request)";
    memcpy(msg, m, n);
    km__ttlv_enc_free(&e);
    send_all(fd, msg, n);   /* the approved export: served once */
    {
        size_t rn;
        uint8_t *rb = recv_msg(fd, &rn);
        parse(rb, rn, &r);
        free(rb);
    }
    REFUSED(r.status == KM__KMIP_STATUS_SUCCESS, "(the approved export failed)");
    send_all(fd, msg, n);   /* the same bytes again */
    {
        size_t rn;
        uint8_t *rb = recv_msg(fd, &rn);
        parse(rb, rn, &r);
        free(rb);
    }
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED, "the approved request replayed");
    close(fd);
    return NULL;
}

static void parent_dual_control(void *arg)
{
    dual_arg *d = arg;
    km_ctx *admin, *cust;
    km_key *kek = NULL;
    close(d->to_child[0]);
    close(d->to_parent[1]);
    ck_assert_int_eq(sync_wait(d->to_parent[0]), 'a');
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    OK(km_key_open(&kek, owner, "kek"));
    OK(km_request_create(admin, KM_REQ_EXPORT, "exp", km_key_id(kek), 16, 3600, d->id));
    ck_assert_int_eq(km_request_approve(admin, d->id), KM_E_DENIED);   /* its own: no */
    sync_say(d->to_child[1], 'b');
    ck_assert_int_eq(sync_wait(d->to_parent[0]), 'c');
    cust = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    OK(km_request_approve(cust, d->id));
    sync_say(d->to_child[1], 'd');
    km_key_free(kek);
    km_close(cust);
    km_close(admin);
}

/* Findings "dual-control bypass: a consumed request's record restored" and
 * the self-quorum ones: from the socket, an admin gets an export only with
 * a custodian's approval, its own approval is refused, and the spent
 * approval does not serve a replayed request. */
START_TEST(test_kmd_attacks_own_approval_and_replayed_request)
{
    dual_arg d;
    char why[512];

    memset(&d, 0, sizeof d);
    export_under_dual_control(d.exp, d.kek);
    /* a policy whose principal-change is below the export quorum (one
     * principal could add custodians of its own) is refused anyway */
    {
        static const char low[] = "{\"version\": 1, \"dual_control\": {\"export\": 2}}";
        ck_assert_int_eq(km_policy_set(owner, low, strlen(low)), KM_E_POLICY);
    }
    ck_assert_int_eq(pipe(d.to_child), 0);
    ck_assert_int_eq(pipe(d.to_parent), 0);
    kmd_start(NULL, "socket_mode = 0666\nprincipal.65534 = " TU_ADMIN "\n");
    ck_assert_msg(as_nobody_with(try_dual_control, &d, parent_dual_control, why, sizeof why) == 0,
                  "%s", why);
    close(d.to_child[1]);
    close(d.to_parent[0]);
}
END_TEST

/* A request header with a Time Stamp of `ts` (KMIP's own clock field). */
static void req_begin_at(km__ttlv_enc *e, uint32_t op, int64_t ts)
{
    km__ttlv_enc_init(e, 0);
    km__ttlv_begin(e, T(REQUEST_MESSAGE));
    km__ttlv_begin(e, T(REQUEST_HEADER));
    km__ttlv_begin(e, T(PROTOCOL_VERSION));
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MAJOR), 1);
    km__ttlv_put_int(e, T(PROTOCOL_VERSION_MINOR), 4);
    km__ttlv_end(e);
    km__ttlv_put_datetime(e, T(TIME_STAMP), ts);
    km__ttlv_put_int(e, T(BATCH_COUNT), 1);
    km__ttlv_end(e);
    km__ttlv_begin(e, T(BATCH_ITEM));
    km__ttlv_put_enum(e, T(OPERATION), op);
    km__ttlv_begin(e, T(REQUEST_PAYLOAD));
}

static void req_end_at(km__ttlv_enc *e)
{
    km__ttlv_end(e);
    km__ttlv_end(e);
    km__ttlv_end(e);
}

typedef struct clock_arg {
    char exp[33], kek[33], later[33];
    int64_t then;
} clock_arg;

static const char *try_caller_clock(void *arg)
{
    clock_arg *c = arg;
    km__ttlv_enc e;
    res r;
    int fd = connect_kmd();
    /* an approval that expired, with a request dated back when it was live */
    req_begin_at(&e, KM__KMIP_OP_GET, c->then);
    put_uid(&e, c->exp);
    km__ttlv_begin(&e, 0x420047);
    km__ttlv_put_enum(&e, 0x42009E, 1);
    km__ttlv_begin(&e, 0x420036);
    km__ttlv_put_text(&e, T(UNIQUE_IDENTIFIER), c->kek, strlen(c->kek));
    km__ttlv_end(&e);
    km__ttlv_end(&e);
    req_end_at(&e);
    roundtrip(fd, &e, &r);
    REFUSED(r.reason == KM__KMIP_REASON_PERMISSION_DENIED,
            "an expired approval used with a request dated back");
    /* a key activating in 2100, with a request dated 2101 */
    req_begin_at(&e, KM__KMIP_OP_ENCRYPT, (int64_t)4133980800);
    put_uid(&e, c->later);
    km__ttlv_put_bytes(&e, T(DATA), (const uint8_t *)"x", 1);
    req_end_at(&e);
    roundtrip(fd, &e, &r);
    REFUSED(r.reason == KM__KMIP_REASON_ILLEGAL_OPERATION,
            "Encrypt with a Pre-Active key by a request dated after its activation");
    close(fd);
    return NULL;
}

/* Findings "the caller's clock drives time-driven decisions" and "a
 * caller-chosen refresh_ms": a socket principal has no clock but the
 * request header's Time Stamp, which kmd does not read (kmd's clock and
 * refresh_ms are its own configuration): an approval past its expiry stays
 * expired, a key before its activation date stays Pre-Active. */
START_TEST(test_kmd_attacks_caller_clock_and_refresh)
{
    clock_arg c;
    km_key *k = NULL, *kek = NULL;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_ctx *admin, *cust;
    uint8_t id[16];

    o.activate_at = (int64_t)4102444800;
    OK(km_key_create(&k, owner, "later", KM_KEY_AES_256_GCM, &o));
    OK(km_key_grant(k, TU_ADMIN, KM_PERM_ENCRYPT));
    km_key_free(k);
    uid_of("later", c.later);
    export_under_dual_control(c.exp, c.kek);
    OK(km_key_open(&kek, owner, "kek"));
    admin = tu_as(dir, TU_ADMIN, TU_ADMIN_PASS);
    cust = tu_as(dir, TU_CUST1, TU_CUST1_PASS);
    c.then = (int64_t)time(NULL);
    /* two seconds: times are whole seconds, one could end between create and approve */
    OK(km_request_create(admin, KM_REQ_EXPORT, "exp", km_key_id(kek), 16, 2, id));
    OK(km_request_approve(cust, id));
    km_close(cust);
    km_close(admin);
    km_key_free(kek);
    tu_sleep_ms(3200);   /* the request expired */
    kmd_start(NULL, "socket_mode = 0666\nprincipal.65534 = " TU_ADMIN "\n");
    ATTACK(try_caller_clock, &c);
}
END_TEST

/* A removed principal: refused on its open connection at its next request
 * and closed on a new one, at once (no rights cached in kmd). */
typedef struct removed_arg {
    char uid[33];
    int to_child[2], to_parent[2];
} removed_arg;

static const char *try_after_removal(void *arg)
{
    removed_arg *d = arg;
    res r;
    int fd = connect_kmd(), fd2;
    close(d->to_child[1]);
    close(d->to_parent[0]);
    do_encrypt(fd, d->uid, "before", NULL, &r);
    REFUSED(r.status == KM__KMIP_STATUS_SUCCESS, "(Encrypt before the removal failed)");
    sync_say(d->to_parent[1], 'a');
    REFUSED(sync_wait(d->to_child[0]) == 'b', "(no word from the parent)");
    /* another process's change reaches kmd within its refresh_ms (10 here,
     * docs/KMD.md): the request goes after that bound, not inside it (sent
     * at once it raced kmd's refresh and passed in a full make check) */
    usleep(50 * 1000);
    do_encrypt(fd, d->uid, "after", NULL, &r);
    REFUSED(r.closed || r.reason == KM__KMIP_REASON_PERMISSION_DENIED,
            "the removed principal's next request on its open connection");
    close(fd);
    fd2 = connect_kmd();
    REFUSED(closed_within(fd2, 3000), "a new connection of the removed principal");
    close(fd2);
    return NULL;
}

static void parent_remove(void *arg)
{
    removed_arg *d = arg;
    close(d->to_child[0]);
    close(d->to_parent[1]);
    ck_assert_int_eq(sync_wait(d->to_parent[0]), 'a');
    OK(km_principal_remove(owner, TU_USER, 0));
    sync_say(d->to_child[1], 'b');
}

/* Finding "offboarding: roles read once at open", from the socket. */
START_TEST(test_kmd_attacks_removed_principal_no_cached_rights)
{
    removed_arg d;
    char why[512];
    owner_key("orders", TU_USER, KM_PERM_ENCRYPT, d.uid);
    ck_assert_int_eq(pipe(d.to_child), 0);
    ck_assert_int_eq(pipe(d.to_parent), 0);
    /* refresh_ms of kmd is 10 here; the removal is written by another
     * process (this one), which kmd sees by its refresh */
    kmd_start(NULL, ATTACKER_CONF);
    ck_assert_msg(as_nobody_with(try_after_removal, &d, parent_remove, why, sizeof why) == 0,
                  "%s", why);
    close(d.to_child[1]);
    close(d.to_parent[0]);
}
END_TEST

int main(void)
{
    TCase *tc;
    Suite *s = tu_suite("kmd", NULL, &tc, 120, setup, teardown);
    tcase_add_test(tc, test_kmd_pykmip_client);
    tcase_add_test(tc, test_kmd_boundary_user);
    tcase_add_test(tc, test_kmd_boundary_auditor);
    tcase_add_test(tc, test_kmd_unmapped_uid_refused);
    tcase_add_test(tc, test_kmd_malformed_requests);
    tcase_add_test(tc, test_kmd_client_killed_mid_request);
    tcase_add_test(tc, test_kmd_64_clients);
    tcase_add_test(tc, test_kmd_sigkill_during_writes);
    tcase_add_test(tc, test_kmd_rng_and_unsupported);
    tcase_add_test(tc, test_kmd_start_refusals);
    tcase_add_test(tc, test_kmd_connection_limit);
    tcase_add_test(tc, test_kmd_sealed_start_unseal);
    tcase_add_test(tc, test_kmd_rekey);
    tcase_add_test(tc, test_kmd_tls);
    tcase_add_test(tc, test_kmd_pykmip_rekey_wrap_mask_locate);
    tc = tu_tcase(s, "faults", 120, setup, teardown);
    tcase_add_test(tc, test_kmd_slow_sender_one_byte_per_second);
    tcase_add_test(tc, test_kmd_client_not_reading_cut_off);
    tc = tu_tcase(s, "attacks", 120, setup_attacks, teardown_attacks);
    tcase_add_test(tc, test_kmd_attacks_vault_files_out_of_reach);
    tcase_add_test(tc, test_kmd_attacks_act_as_another_principal);
    tcase_add_test(tc, test_kmd_attacks_key_outside_grants);
    tcase_add_test(tc, test_kmd_attacks_own_approval_and_replayed_request);
    tcase_add_test(tc, test_kmd_attacks_caller_clock_and_refresh);
    tcase_add_test(tc, test_kmd_attacks_removed_principal_no_cached_rights);
    return tu_run(s);
}
