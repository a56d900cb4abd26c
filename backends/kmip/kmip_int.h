/*
 * kmip_int.h - internals of the KMIP backend (backends/kmip/, issue 19),
 * shared by the request builders (kmip_msg.c), the connection (kmip_conn.c)
 * and the key operations (kmip.c).
 *
 * The backend uses only public libkm headers (km/sys/backend.h) and the TTLV
 * codec (src/prim/kmip_ttlv.h); OpenSSL only for TLS (kmip_conn.c).
 */
#ifndef KM_KMIP_INT_H
#define KM_KMIP_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "km/sys/backend.h"
#include "kmip_ttlv.h"

/* ----------------------------------------------------------- request builders
 * Each writes one whole Request Message at protocol major.minor into `e`
 * (an initialised encoder) and returns its error (KM_OK, KM_E_NOMEM,
 * KM_E_INVALID). The bytes equal those of PyKMIP's encoder for the same
 * request (tests/kmip/vectors.txt, tests/check_kmip_ttlv.c). */

/* DiscoverVersions offering 2.0 and 1.4 (want_minor < 0), or only want_major.want_minor;
 * the header says 1.4, which any server that knows the operation reads. */
int km__kmip_msg_discover(km__ttlv_enc *e, int want_major, int want_minor);

/* What Create and Register ask of the new object beyond its type, usage and
 * name (KMIP 1.4 / 2.0 attributes): Sensitive = true (its material is not
 * to be returned in the clear), Extractable = false (not to be returned at
 * all). PyKMIP 0.10 stores Sensitive without enforcing it and cannot parse
 * a request with Extractable (docs/KMIP.md). */
enum {
    KM__KMIP_PROTECT_SENSITIVE = 1,
    KM__KMIP_PROTECT_NOT_EXTRACTABLE = 2
};

/* Create of a 256-bit AES Symmetric Key with the usage mask, a Name and the
 * KM__KMIP_PROTECT_* attributes of `protect` after it (a Template-Attribute
 * in 1.x, Attributes in 2.0). */
int km__kmip_msg_create(km__ttlv_enc *e, int major, int minor, uint32_t usage_mask,
                        const char *name, size_t name_len, uint32_t protect);

/* CreateKeyPair of an RSA key of `bits`: the private key with usage Sign,
 * the Name and the `protect` attributes; the public key with usage Verify
 * and the Name followed by "-public". */
int km__kmip_msg_create_key_pair(km__ttlv_enc *e, int major, int minor, uint32_t bits,
                                 const char *name, size_t name_len, uint32_t protect);

/* Sign of `data` (the message: the server hashes it) with SHA-256 and, by
 * pss_fields: KM__KMIP_SIGN_PSS, RSA-PSS; KM__KMIP_SIGN_PSS_FIELDS, RSA-PSS
 * with the KMIP 1.4 Salt Length 32, Mask Generator MGF1 and its hash
 * SHA-256 (libkm's PSS), which PyKMIP 0.10 cannot parse;
 * KM__KMIP_SIGN_PKCS1, PKCS#1 v1.5 (KM_SIG_PKCS1). */
enum { KM__KMIP_SIGN_PSS = 0, KM__KMIP_SIGN_PSS_FIELDS = 1, KM__KMIP_SIGN_PKCS1 = 2 };
int km__kmip_msg_sign(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len,
                      const uint8_t *data, size_t data_len, int pss_fields);

/* Activate of one object. (Not batched with the Create through the ID
 * placeholder: PyKMIP's server cannot parse an Activate without its Unique
 * Identifier.) */
int km__kmip_msg_activate(km__ttlv_enc *e, int major, int minor, const char *uid,
                          size_t uid_len);

/* Encrypt / Decrypt with AES-GCM (Cryptographic Parameters: mode GCM,
 * algorithm AES, tag length 16), the IV, and the AAD aad1 || aad2. */
int km__kmip_msg_encrypt(km__ttlv_enc *e, int major, int minor, const char *uid,
                         size_t uid_len, const uint8_t *data, size_t data_len,
                         const uint8_t *iv, size_t iv_len, const uint8_t *aad1, size_t aad1_len,
                         const uint8_t *aad2, size_t aad2_len);
int km__kmip_msg_decrypt(km__ttlv_enc *e, int major, int minor, const char *uid,
                         size_t uid_len, const uint8_t *data, size_t data_len,
                         const uint8_t *iv, size_t iv_len, const uint8_t *aad1, size_t aad1_len,
                         const uint8_t *aad2, size_t aad2_len, const uint8_t *tag,
                         size_t tag_len);

/* Register of a Symmetric Key (Raw key format) of algorithm `alg`
 * (KM__KMIP_ALG_AES or _HMAC_SHA256) with the usage mask, a Name and the
 * KM__KMIP_PROTECT_* attributes of `protect`. */
int km__kmip_msg_register(km__ttlv_enc *e, int major, int minor, uint32_t alg,
                          uint32_t usage_mask, const char *name, size_t name_len,
                          const uint8_t *material, size_t material_len, uint32_t protect);

/* MAC of `data` with an HMAC-SHA256 key (Cryptographic Parameters: the algorithm). */
int km__kmip_msg_mac(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len,
                     const uint8_t *data, size_t data_len);

/* Revoke (Cessation of Operation) and Destroy in one batch. */
int km__kmip_msg_revoke_destroy(km__ttlv_enc *e, int major, int minor, const char *uid,
                                size_t uid_len);

/* Get of one object. */
int km__kmip_msg_get(km__ttlv_enc *e, int major, int minor, const char *uid, size_t uid_len);

/*
 * The libkm code for a failed batch item, recorded as the thread's last error
 * with the Result Reason as native code (KM_NATIVE_KMIP) and the server's
 * message (printable characters only, shortened): Item Not Found -> NOTFOUND,
 * Permission Denied / Authentication Not Successful -> DENIED, Operation or
 * Feature Not Supported -> UNSUPPORTED, Cryptographic Failure or General
 * Failure on a Decrypt -> INTEGRITY (PyKMIP answers a bad tag with General
 * Failure), anything else -> BACKEND. KM_OK for a success.
 */
int km__kmip_result_err(const km__kmip_result *r, uint32_t want_op, const char *what);

/* ----------------------------------------------------------- the connection */

/* The parsed configuration of an instance. */
typedef struct km__kmip_config {
    char host[256];
    char port[8];
    char ca[1024];
    char cert[1024];
    char key[1024];
    int want_major, want_minor;   /* -1: 2.0 or 1.4, the server's choice */
    int timeout_ms;               /* connect and each read or write; 5000 by default */
} km__kmip_config;

/*
 * Parses "server=HOST:PORT;ca=FILE;cert=FILE;key=FILE[;version=2.0|1.4]
 * [;timeout=MS]" (an optional "kmip:" prefix; HOST may be [v6]).
 * KM_E_INVALID naming the bad item (never echoing a value).
 */
int km__kmip_config_parse(const char *config, km__kmip_config *out);

/* One persistent mutual-TLS connection to a server, used under its mutex. */
typedef struct km__kmip_conn km__kmip_conn;

/*
 * Makes a connection object for `cfg` and loads the TLS context (the CA, the
 * client certificate and its key), connecting lazily. KM_E_INVALID when a
 * file does not load (named), KM_E_NOMEM.
 */
int km__kmip_conn_new(const km__kmip_config *cfg, km__kmip_conn **out);
void km__kmip_conn_free(km__kmip_conn *c);

/* A response: the received bytes (wiped when freed), their tree and the parsed message. */
typedef struct km__kmip_reply {
    uint8_t *buf;
    size_t len;
    km__ttlv_tree tree;
    km__kmip_response msg;
} km__kmip_reply;

void km__kmip_reply_free(km__kmip_reply *r);

/* Writes the request for the negotiated protocol version into `e`. */
typedef int (*km__kmip_build)(km__ttlv_enc *e, int major, int minor, void *arg);

/*
 * One request/response exchange under the connection's lock: connects when
 * needed (TCP with TCP_NODELAY, TLS 1.2 or later with the server certificate
 * checked against the CA and the configured host, then DiscoverVersions:
 * KM_E_UNSUPPORTED below 1.4), builds the request with the negotiated
 * version, sends it and reads one response. A reused connection that turns
 * out dropped (closed or reset) is reconnected once and the request sent
 * again; one that times out is dropped and not retried. Every wait is
 * bounded by the configured timeout, so a call takes at most about three
 * timeouts (connect, handshake and exchange after a dropped connection).
 * Returns KM_OK with `out` filled (free it with km__kmip_reply_free);
 * KM_E_BACKEND for a server that cannot be reached, a TLS failure, a
 * timeout, or a malformed response (the native code is errno or OpenSSL's);
 * KM_E_NOMEM.
 */
int km__kmip_call(km__kmip_conn *c, km__kmip_build build, void *arg, km__kmip_reply *out);

/* The protocol version in use (0.0 before the first connection). */
void km__kmip_conn_version(km__kmip_conn *c, int *major, int *minor);

#endif /* KM_KMIP_INT_H */
