/*
 * kmd.h - kmd, the vault behind a process boundary, served over KMIP
 * (docs/KMD.md, issue 20). kmd is a program of libkm's public API: it opens
 * one vault as its owner (or with a device keyslot), authenticates each
 * client itself (the peer's uid on a Unix socket) and serves it through a
 * context delegated to the client's principal (km/sys/server.h). The only
 * internal module it uses is the primitives' KMIP TTLV codec
 * (src/prim/kmip_ttlv.[ch], libc only), compiled into it.
 *
 *   config.c  the configuration file (key = value lines)
 *   kmip.c    one KMIP request message in, one response message out
 *   main.c    start-up, the socket, one thread per connection, framing
 */
#ifndef KMD_H
#define KMD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <km.h>

/* Most uid -> principal lines of a configuration. */
#define KMD_MAP_MAX 256

typedef struct kmd_map {
    uid_t uid;
    char principal[65];
} kmd_map;

typedef struct kmd_cnmap {
    char cn[65];
    char principal[65];
} kmd_cnmap;

typedef struct kmd_config {
    char vault[4096];           /* vault = URI or directory (required) */
    char socket_path[108];      /* socket = path of the Unix socket (required) */
    unsigned socket_mode;       /* socket_mode = octal, default 0660 */
    char passphrase_file[4096]; /* passphrase_file = the owner passphrase, or */
    char slot_backend[32];      /* slot_backend = a device keyslot's backend */
    char slot_config[1024];     /* slot_config = its configuration */
    int unseal;                 /* unseal = shares: start sealed, custodians unseal */
    unsigned max_connections;   /* max_connections, default 64 */
    unsigned idle_timeout_ms;   /* idle_timeout_ms between requests, default 30000 */
    unsigned request_timeout_ms; /* request_timeout_ms: one request's bytes, default 5000 */
    size_t max_message;         /* max_message bytes of a request, default 1 MiB */
    uint32_t refresh_ms;        /* refresh_ms: km_open_options::refresh_ms, default 100 */
    char audit_file[4096];      /* audit_file = a JSON-lines audit sink (optional) */
    kmd_map map[KMD_MAP_MAX];   /* principal.<uid> = name */
    size_t nmap;
    char tls_listen[64];        /* tls_listen = IPv4:PORT (optional) */
    char tls_ca[4096];          /* tls_ca = the clients' CA (PEM) */
    char tls_cert[4096];        /* tls_cert = kmd's certificate chain (PEM) */
    char tls_key[4096];         /* tls_key = its private key (PEM) */
    kmd_cnmap cnmap[KMD_MAP_MAX]; /* tls_principal.<client certificate CN> = name */
    size_t ncn;
} kmd_config;

/* Reads `path` into *c (defaults first). 0, or -1 with the reason in
 * err (file:line: what). */
int kmd_config_load(const char *path, kmd_config *c, char *err, size_t err_cap);
/* The principal of `uid`, or NULL. */
const char *kmd_config_principal(const kmd_config *c, uid_t uid);
/* The principal of a TLS client certificate's Common Name, or NULL. */
const char *kmd_config_cn_principal(const kmd_config *c, const char *cn);

/* tls.c: the TLS listener's context (0, or -1 with err) over the primitives'
 * TLS module (src/prim/tls.h); a connection's handshake on *fd within
 * `deadline` (monotonic ms, now_ms) giving the client certificate's Common
 * Name: the connection owns the socket from the call on (*fd is set to -1,
 * the socket closed on failure and by kmd_tls_free); its I/O as recv/send,
 * each bounded by a deadline (EAGAIN when it passed, EIO on a failure). */
int kmd_tls_init(const kmd_config *c, char *err, size_t cap);
void kmd_tls_done(void);
int kmd_tls_accept(int *fd, int64_t deadline, void **out, char *cn, size_t cn_cap, char *err,
                   size_t err_cap);
ssize_t kmd_tls_read(void *t, uint8_t *b, size_t n, int64_t deadline);
ssize_t kmd_tls_write(void *t, const uint8_t *b, size_t n, int64_t deadline);
void kmd_tls_free(void *t);

/* A sealed kmd's share handler (main.c): takes one share text from `peer`;
 * KM_OK with the counts, or a km error code with msg saying why. */
typedef int (*kmd_unseal_fn)(const uint8_t *share, size_t len, const char *peer,
                             unsigned *have, unsigned *need, char *msg, size_t cap);

/* What the request handler needs besides the context: the decoder's limit,
 * the connection's peer, the Unseal handler (NULL: Unseal not served). */
typedef struct kmd_limits {
    size_t max_message;
    const char *peer;
    kmd_unseal_fn unseal;
} kmd_limits;

/*
 * Handles one KMIP Request Message `req` (exactly one TTLV item) as the
 * principal of `ctx`: every operation through libkm's public API. `ctx` is
 * NULL while kmd is sealed: only DiscoverVersions, Query and Unseal are
 * served then. *resp is a
 * malloc'd Response Message (free with kmd_response_free, which wipes it).
 * Returns 0, or -1 when the request was not a well-formed Request Message
 * (*resp then holds an error response to send before closing).
 */
int kmd_kmip_handle(km_ctx *ctx, const kmd_limits *lim, const uint8_t *req, size_t req_len,
                    uint8_t **resp, size_t *resp_len);
void kmd_response_free(uint8_t *resp, size_t len);

/* vendor.c: kmd's libkm call (KM_KMD_OP_CALL, docs/KMD.md): runs the call in
 * the request payload `pl` of `t` on `ctx` (the connection's principal) and
 * writes the response payload's fields into `e`. 0; or -1 with a KMIP result
 * reason and message for a call that does not match its signature. */
struct km__ttlv_tree;
struct km__ttlv_enc;
int kmd_vendor_call(km_ctx *ctx, const struct km__ttlv_tree *t, int pl, struct km__ttlv_enc *e,
                    uint32_t *reason, char *msg, size_t cap);

#endif /* KMD_H */
