/*
 * tls.h - mutual TLS for libkm's network parts (primitives layer): the kmip
 * backend's client connection to a key server and the server side of a
 * daemon that accepts libkm clients. The only place outside the software
 * backend and the provider where libssl is called; callers include no
 * OpenSSL header.
 *
 * A context (km__tls_ctx) holds the trust anchors (a CA file), the own
 * certificate chain and its private key (a PEM file without a passphrase:
 * a library never prompts), TLS 1.2 as the lowest version, and the peer
 * verification: a client checks the server certificate against the CA, the
 * serverAuth purpose and the host name or IP address it connected to; a
 * server requires a client certificate and checks it against the CA and the
 * clientAuth purpose (an expired, foreign or missing certificate fails the
 * handshake). A context is read-only after it is made and may be shared by
 * threads.
 *
 * A connection (km__tls) is one TLS session on a non-blocking socket it
 * owns. Every wait is bounded by a deadline (absolute, km__tls_now_ms()
 * based; a dead peer gives an error within the time, never a hang). Every
 * SSL call runs with SIGPIPE blocked in the calling thread (any of them may
 * write: a failing read sends an alert) and a SIGPIPE it caused is consumed.
 * A connection is used by one thread at a time; a process that forked drops
 * its parent's connections without sending anything.
 *
 * Errors are recorded as the thread's last error with the context's label
 * ("kmip: ...") and the peer's address: the connection's failures (connect,
 * handshake, send, receive, timeout, closed) as the context's `fail_code`
 * with errno (ETIMEDOUT for a timeout, ECONNRESET for a closed connection)
 * or OpenSSL's code as native code; a file that does not load as
 * KM_E_INVALID naming the file (never its contents); KM_E_NOMEM; KM_E_CRYPTO
 * for a failure of libssl itself.
 */
#ifndef KM_TLS_H
#define KM_TLS_H

#include <stddef.h>
#include <stdint.h>

/* What a context is made from. The strings are copied or used during the
 * call only. */
typedef struct km__tls_conf {
    const char *label;  /* the prefix of error messages ("kmip"); NULL: "tls" */
    const char *ca;     /* PEM file of the CA certificates that verify the peer */
    const char *cert;   /* PEM file: the own certificate (and its chain) */
    const char *key;    /* PEM file: the own private key, unencrypted */
    int fail_code;      /* the code of a connection's failures; 0: KM_E_BACKEND */
} km__tls_conf;

typedef struct km__tls_ctx km__tls_ctx;
typedef struct km__tls km__tls;

/* Milliseconds of a monotonic clock: deadlines are now_ms() + timeout. */
long long km__tls_now_ms(void);

/*
 * Makes a client context (verifies the server) or a server context
 * (requires and verifies a client certificate) from `conf`; all three files
 * are needed. *out is NULL on failure. KM_E_INVALID naming the file that
 * does not load or the key that does not match its certificate, KM_E_NOMEM,
 * KM_E_CRYPTO.
 */
int km__tls_client_ctx_new(const km__tls_conf *conf, km__tls_ctx **out);
int km__tls_server_ctx_new(const km__tls_conf *conf, km__tls_ctx **out);
void km__tls_ctx_free(km__tls_ctx *ctx);

/*
 * Client: resolves host:port (numeric port), connects (TCP_NODELAY) and
 * runs the handshake, checking the server certificate for `host` (an IP
 * address is matched against the certificate's IP SANs, a name against its
 * DNS names, and sent as SNI). All before `deadline`. The connection's
 * failures are the context's fail_code ("cannot connect", "timed out",
 * "the server certificate does not verify (REASON)").
 */
int km__tls_connect(km__tls_ctx *ctx, const char *host, const char *port, long long deadline,
                    km__tls **out);

/*
 * Server: runs the handshake on `fd`, a connected stream socket (made
 * non-blocking and close-on-exec here). The connection owns the fd from the
 * call on: it is closed on failure and by km__tls_free. A client without a
 * certificate, or with one the CA did not sign, that has expired or is not
 * valid yet, or that lacks the clientAuth purpose, is refused (fail_code,
 * the verification's reason in the message, native code OpenSSL's
 * X509_V_ERR value).
 */
int km__tls_accept(km__tls_ctx *ctx, int fd, long long deadline, km__tls **out);

/*
 * The verified peer certificate's subject Common Name into cn (NUL
 * terminated). KM_E_AUTH when the connection has no verified peer
 * certificate, the subject has no CN or more than one, or the CN is empty
 * or holds a character outside printable ASCII (it names a principal);
 * KM_E_BUFFER when it does not fit cap (cn then empty).
 */
int km__tls_peer_cn(km__tls *t, char *cn, size_t cap);

/* The verified peer certificate's subject as one RFC 2253 line, for logs. */
int km__tls_peer_subject(km__tls *t, char *out, size_t cap);

/* SHA-256 of the verified peer certificate's DER (to pin a certificate). */
int km__tls_peer_fingerprint(km__tls *t, uint8_t out[32]);

/* The negotiated protocol ("TLSv1.2", "TLSv1.3"). */
const char *km__tls_version(km__tls *t);

/* Writes all `len` bytes before the deadline. */
int km__tls_write(km__tls *t, const void *buf, size_t len, long long deadline);

/*
 * Reads what arrives first, up to len bytes, before the deadline: KM_OK and
 * *got >= 1, or KM_OK and *got == 0 when the peer closed the connection
 * (close_notify, or the TCP stream ended).
 */
int km__tls_read(km__tls *t, void *buf, size_t len, size_t *got, long long deadline);

/* Reads exactly len bytes before the deadline; a peer that closes first is
 * an error ("the connection was closed", ECONNRESET). */
int km__tls_read_full(km__tls *t, void *buf, size_t len, long long deadline);

/*
 * Ends the connection and frees it: sends close_notify when `polite` (one
 * non-blocking try; never in a process other than the one that made it),
 * closes the socket. NULL is ignored.
 */
void km__tls_free(km__tls *t, int polite);

#endif /* KM_TLS_H */
