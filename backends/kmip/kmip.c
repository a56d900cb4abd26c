/*
 * kmip.c - the "kmip" backend: libkm keys held by a KMIP key server (issue 19).
 *
 * The catalog, policy, lifecycle, grants and audit stay in libkm's core; the
 * key material and the cryptographic operations stay in the server.
 *
 *   generate   Create (AES-256, usage Encrypt|Decrypt, Name
 *              "libkm-<key id hex>-v<version>", or "libkm-new-<random hex>-v1"
 *              for a key being created, whose id the core assigns after the
 *              material exists), then Activate (two requests:
 *              PyKMIP cannot parse an Activate batched with its Create through
 *              the ID placeholder); an object that fails to activate is
 *              destroyed again. Create and Register ask for Sensitive = true
 *              and Extractable = false, and fewer when the server refuses them
 *              (make_active)
 *              An HMAC-SHA256 key is drawn by libkm and Registered (KMIP
 *              servers such as PyKMIP create no HMAC keys), then activated
 *   import     Register of raw aes-256-gcm or hmac-sha256 material
 *   rsa-*      CreateKeyPair + Activate of both; sign = Sign (RSA-PSS, SHA-256,
 *              salt 32) checked with the public key before it is returned;
 *              verify and public_key with the public key from a Get
 *   mac        MAC (HMAC-SHA256) in the server; a message must not be empty
 *   aead_seal  Encrypt, AES-GCM: the nonce libkm drew as IV/Counter/Nonce,
 *              libkm's header || the caller's AAD as the Authenticated
 *              Encryption Additional Data, a 16-byte tag: ciphertext format
 *              v1 unchanged (a KMIP key's ciphertext looks like any other)
 *   aead_open  Decrypt the same way; a tag that does not match is
 *              KM_E_INTEGRITY (the server's General Failure) and `out` zeroed
 *   destroy    Revoke (Cessation of Operation) + Destroy, one batch; an object
 *              the server no longer has counts as destroyed
 *   keyslot    the vault's master key encrypted under a server key of its
 *              own (slot_seal / slot_unseal): the vault opens with the key
 *              server and this client certificate, no passphrase
 *
 * Reference (stored sealed in the catalog): [1 byte format = 1][the server's
 * Unique Identifier, 1..255 bytes of text], or for an RSA key pair [2][n][the
 * private key's n-byte identifier][the public key's]. It names the object on
 * one server: the same configuration (server, and a client certificate the
 * server maps to the owner) is needed to use it.
 *
 * Other key types and operations (km_sign_digest among them) are
 * KM_E_UNSUPPORTED. A server's failure keeps its Result Reason as the native
 * code (KM_NATIVE_KMIP) in km_error_last().
 */
#include "kmip_int.h"
#include "km_int.h"   /* primitives: random bytes */
#include "prim.h"     /* primitives: RSA public keys, signature checks */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define REF_VERSION 1
#define UID_MAX 255

typedef struct kmip_state {
    km__kmip_conn *conn;
    /* the KM__KMIP_PROTECT_* attributes this server takes: all at first,
     * lowered when a Create or Register with them is refused */
    _Atomic uint32_t protect;
    /* 1 while Sign requests carry the PSS Salt Length fields; 0 after a
     * server refused to parse them */
    _Atomic int pss_fields;
} kmip_state;

typedef struct kmip_obj {
    kmip_state *st;
    km_key_type type;
    size_t uid_len;
    char uid[UID_MAX + 1];      /* the key, or an RSA key pair's private key */
    size_t pub_len;
    char pub[UID_MAX + 1];      /* an RSA key pair's public key */
    pthread_mutex_t mu;         /* guards pkey */
    km__pkey *pkey;             /* the public key, fetched on first use */
} kmip_obj;

/* ---------------------------------------------------------- open / close */

static int kmip_open(void **out_state, const char *config)
{
    km__kmip_config cfg;
    kmip_state *st;
    int rc;

    if (out_state == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip open: out_state is NULL");
    *out_state = NULL;
    rc = km__kmip_config_parse(config, &cfg);
    if (rc != KM_OK)
        return rc;
    st = calloc(1, sizeof *st);
    if (st == NULL)
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip open: out of memory");
    rc = km__kmip_conn_new(&cfg, &st->conn);
    km_memzero(&cfg, sizeof cfg);
    if (rc != KM_OK) {
        free(st);
        return rc;
    }
    atomic_init(&st->protect, KM__KMIP_PROTECT_SENSITIVE | KM__KMIP_PROTECT_NOT_EXTRACTABLE);
    atomic_init(&st->pss_fields, 1);
    *out_state = st;
    return KM_OK;
}

static void kmip_close(void *state)
{
    kmip_state *st = state;
    if (st == NULL)
        return;
    km__kmip_conn_free(st->conn);
    free(st);
}

static kmip_state *state_of(void *state)
{
    return state;
}

static int need_state(kmip_state *st, const char *what)
{
    if (st == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip %s: the backend has no configuration "
                                "(km_vault_backend_set(ctx, \"kmip\", \"server=...\"))",
                                what);
    return KM_OK;
}

/* One request of one or more batch items; checks the count. */
static int call(kmip_state *st, km__kmip_build build, void *arg, size_t items,
                km__kmip_reply *r, const char *what)
{
    int rc = km__kmip_call(st->conn, build, arg, r);
    if (rc != KM_OK)
        return rc;
    if (r->msg.n != items) {
        unsigned n = (unsigned)r->msg.n;
        /* a one-item failure for the whole batch (an unparsed request) */
        rc = n == 1 ? km__kmip_result_err(&r->msg.items[0], 0, what) : KM_OK;
        km__kmip_reply_free(r);
        if (rc != KM_OK)
            return rc;
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip %s: the server answered %u batch items, not %u", what, n,
                                (unsigned)items);
    }
    return KM_OK;
}

/* --------------------------------------------------------------- generate */

typedef struct create_arg {
    char name[64];
    uint32_t protect;   /* KM__KMIP_PROTECT_*, set by make_active */
} create_arg;

static int build_create(km__ttlv_enc *e, int major, int minor, void *arg)
{
    create_arg *a = arg;
    return km__kmip_msg_create(e, major, minor, KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT,
                               a->name, strlen(a->name), a->protect);
}

typedef struct uid_arg {
    const char *uid;
    size_t uid_len;
} uid_arg;

static int build_activate(km__ttlv_enc *e, int major, int minor, void *arg)
{
    uid_arg *a = arg;
    return km__kmip_msg_activate(e, major, minor, a->uid, a->uid_len);
}

static int build_revoke_destroy(km__ttlv_enc *e, int major, int minor, void *arg)
{
    uid_arg *a = arg;
    return km__kmip_msg_revoke_destroy(e, major, minor, a->uid, a->uid_len);
}

/*
 * Revokes and destroys an object libkm made but will not use (it did not
 * activate, or the keyslot it was made for could not be sealed), so that no
 * orphan stays on the server; best effort. Returns `rc`, the failure that
 * made the object useless, with its recorded error (code, native code,
 * message) restored.
 */
static int discard(kmip_state *st, const char *uid, size_t uid_len, int rc)
{
    const km_error *le = km_error_last();
    km_native_kind kind = le->native_kind;
    unsigned long native = le->native;
    uid_arg u = { uid, uid_len };
    km__kmip_reply r;
    char msg[512];

    snprintf(msg, sizeof msg, "%s", le->message);
    if (call(st, build_revoke_destroy, &u, 2, &r, "destroy") == KM_OK)
        km__kmip_reply_free(&r);
    return km_backend_error(rc, kind, native, "%s", msg);
}

/* True when a failed Create or Register may have been refused for the
 * protection attributes it carried (an unknown attribute: PyKMIP 0.10 cannot
 * parse Extractable, others say Invalid Field or not supported). */
static int refused_attrs(const km__kmip_result *r)
{
    return r->status == KM__KMIP_STATUS_FAILED
           && (r->reason == KM__KMIP_REASON_INVALID_MESSAGE
               || r->reason == KM__KMIP_REASON_INVALID_FIELD
               || r->reason == KM__KMIP_REASON_FEATURE_NOT_SUPPORTED
               || r->reason == KM__KMIP_REASON_OPERATION_NOT_SUPPORTED);
}

/* Makes a new object: `build` (Create, Register or CreateKeyPair, operation
 * `op`, its argument starting with a create_arg whose `protect` is set
 * here); the successful reply in *r. The object asks for the protection
 * attributes the server takes: Sensitive and not Extractable; a server that
 * refuses them is asked again with fewer (Extractable dropped first, then
 * Sensitive), and the backend instance remembers what it takes.
 * make_active then activates a Create's or Register's object; its unique
 * identifier in uid[0 .. *uid_len) (UID_MAX bytes at most, no NUL). */
static int make_new(kmip_state *st, km__kmip_build build, void *arg, uint32_t op,
                    const char *what, km__kmip_reply *r)
{
    create_arg *ca = arg;
    int rc;

    for (ca->protect = atomic_load(&st->protect);;) {
        rc = call(st, build, arg, 1, r, what);
        if (rc != KM_OK)
            return rc;
        if (ca->protect == 0 || !refused_attrs(&r->msg.items[0]))
            break;
        km__kmip_reply_free(r);
        if (ca->protect & KM__KMIP_PROTECT_NOT_EXTRACTABLE)
            ca->protect &= ~(uint32_t)KM__KMIP_PROTECT_NOT_EXTRACTABLE;
        else
            ca->protect &= ~(uint32_t)KM__KMIP_PROTECT_SENSITIVE;
        atomic_fetch_and(&st->protect, ca->protect);
    }
    rc = km__kmip_result_err(&r->msg.items[0], op, what);
    if (rc != KM_OK)
        km__kmip_reply_free(r);
    return rc;
}

/* The unique identifier tagged `tag` in a response's payload, copied to
 * uid_out (UID_MAX bytes at most, no NUL). */
static int reply_uid(const km__kmip_reply *r, uint32_t tag, const char *what, char *uid_out,
                     size_t *uid_len_out)
{
    const char *uid;
    size_t uid_len;

    if (km__ttlv_get_text(&r->tree, r->msg.items[0].payload, tag, &uid, &uid_len) != KM_OK)
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip %s: the response has no unique identifier", what);
    if (uid_len == 0 || uid_len > UID_MAX || memchr(uid, 0, uid_len) != NULL)
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip %s: the unique identifier is empty, has a NUL or is "
                                "longer than %d", what, UID_MAX);
    memcpy(uid_out, uid, uid_len);
    *uid_len_out = uid_len;
    return KM_OK;
}

static int activate(kmip_state *st, const char *uid, size_t uid_len)
{
    uid_arg u = { uid, uid_len };
    km__kmip_reply r;
    int rc = call(st, build_activate, &u, 1, &r, "activate");

    if (rc == KM_OK) {
        rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_ACTIVATE, "activate");
        km__kmip_reply_free(&r);
    }
    return rc;
}

static int make_active(kmip_state *st, km__kmip_build build, void *arg, uint32_t op,
                       const char *what, char *uid_out, size_t *uid_len_out)
{
    km__kmip_reply r;
    int rc;

    if ((rc = make_new(st, build, arg, op, what, &r)) != KM_OK)
        return rc;
    rc = reply_uid(&r, KM__KMIP_TAG_UNIQUE_IDENTIFIER, what, uid_out, uid_len_out);
    km__kmip_reply_free(&r);
    if (rc != KM_OK)
        return rc;
    if ((rc = activate(st, uid_out, *uid_len_out)) != KM_OK)
        return discard(st, uid_out, *uid_len_out, rc); /* no orphan: it did not activate */
    return KM_OK;
}

/* "<prefix><hex of n random bytes>": a name to tell objects apart on the
 * server, not a secret. */
static int random_name(char *out, size_t cap, const char *prefix, size_t n)
{
    uint8_t b[16];
    size_t i, off;

    if (n > sizeof b || km__random(b, n) != KM_OK)
        return km_backend_error(KM_E_CRYPTO, KM_NATIVE_NONE, 0, "kmip: random bytes failed");
    off = (size_t)snprintf(out, cap, "%s", prefix);
    for (i = 0; i < n && off + 2 < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%02x", b[i]);
    return KM_OK;
}

static int create_active(kmip_state *st, create_arg *a, char *uid_out, size_t *uid_len_out)
{
    return make_active(st, build_create, a, KM__KMIP_OP_CREATE, "create", uid_out, uid_len_out);
}

typedef struct register_arg {
    create_arg n;       /* first: make_active sets n.protect */
    uint32_t alg, usage;
    const uint8_t *material;
    size_t len;
} register_arg;

static int build_register(km__ttlv_enc *e, int major, int minor, void *arg)
{
    register_arg *a = arg;
    return km__kmip_msg_register(e, major, minor, a->alg, a->usage, a->n.name,
                                 strlen(a->n.name), a->material, a->len, a->n.protect);
}

/* The object name of a key version: "libkm-<key id hex>-v<version>", or
 * "libkm-new-<random>-v1" for a key being created (the core assigns its id
 * after the material exists). */
static int object_name(const km_backend_keyspec *spec, create_arg *a)
{
    size_t i;
    uint8_t any;
    int rc, n;

    for (i = 0, any = 0; i < 16 && spec->key_id != NULL; i++)
        any |= spec->key_id[i];
    if (any) {
        n = snprintf(a->name, sizeof a->name, "libkm-");
        for (i = 0; i < 16; i++)
            n += snprintf(a->name + n, sizeof a->name - (size_t)n, "%02x", spec->key_id[i]);
    } else {
        if ((rc = random_name(a->name, sizeof a->name, "libkm-new-", 8)) != KM_OK)
            return rc;
        n = (int)strlen(a->name);
    }
    snprintf(a->name + n, sizeof a->name - (size_t)n, "-v%u", (unsigned)spec->key_version);
    return KM_OK;
}

/* Registers `material` as an active key of `type`; its reference in *out_ref. */
static int register_key(kmip_state *st, const km_backend_keyspec *spec, const uint8_t *material,
                        size_t len, km_secret **out_ref)
{
    register_arg a;
    uint8_t ref[1 + UID_MAX];
    size_t uid_len = 0;
    int rc;

    memset(&a, 0, sizeof a);
    if ((rc = object_name(spec, &a.n)) != KM_OK)
        return rc;
    if (spec->type == KM_KEY_HMAC_SHA256) {
        a.alg = KM__KMIP_ALG_HMAC_SHA256;
        a.usage = KM__KMIP_USAGE_MAC_GENERATE | KM__KMIP_USAGE_MAC_VERIFY;
    } else {
        a.alg = KM__KMIP_ALG_AES;
        a.usage = KM__KMIP_USAGE_ENCRYPT | KM__KMIP_USAGE_DECRYPT;
    }
    a.material = material;
    a.len = len;
    rc = make_active(st, build_register, &a, KM__KMIP_OP_REGISTER, "register", (char *)ref + 1,
                     &uid_len);
    if (rc != KM_OK)
        return rc;
    ref[0] = REF_VERSION;
    return km_secret_from(out_ref, ref, 1 + uid_len);
}

/* ------------------------------------------------------------- RSA key pairs
 * CreateKeyPair (the private key with usage Sign, the public key Verify),
 * both activated. Reference: [2][n][n bytes: the private key's identifier]
 * [the public key's identifier]. */

#define REF_PAIR 2

static uint32_t rsa_bits(km_key_type type)
{
    switch (type) {
    case KM_KEY_RSA_2048: return 2048;
    case KM_KEY_RSA_3072: return 3072;
    case KM_KEY_RSA_4096: return 4096;
    default: return 0;
    }
}

typedef struct pair_arg {
    create_arg n;       /* first: make_new sets n.protect */
    uint32_t bits;
} pair_arg;

static int build_create_key_pair(km__ttlv_enc *e, int major, int minor, void *arg)
{
    pair_arg *a = arg;
    return km__kmip_msg_create_key_pair(e, major, minor, a->bits, a->n.name, strlen(a->n.name),
                                        a->n.protect);
}

static int generate_rsa(kmip_state *st, const km_backend_keyspec *spec, km_secret **out_ref)
{
    uint8_t ref[2 + 2 * UID_MAX];
    size_t priv_len = 0, pub_len = 0;
    km__kmip_reply r;
    pair_arg a;
    int rc;

    memset(&a, 0, sizeof a);
    a.bits = rsa_bits(spec->type);
    if ((rc = object_name(spec, &a.n)) != KM_OK)
        return rc;
    if ((rc = make_new(st, build_create_key_pair, &a, KM__KMIP_OP_CREATE_KEY_PAIR,
                       "create key pair", &r)) != KM_OK)
        return rc;
    rc = reply_uid(&r, KM__KMIP_TAG_PRIVATE_KEY_UNIQUE_IDENTIFIER, "create key pair",
                   (char *)ref + 2, &priv_len);
    if (rc == KM_OK)
        rc = reply_uid(&r, KM__KMIP_TAG_PUBLIC_KEY_UNIQUE_IDENTIFIER, "create key pair",
                       (char *)ref + 2 + priv_len, &pub_len);
    km__kmip_reply_free(&r);
    if (rc != KM_OK)
        return rc;
    rc = activate(st, (char *)ref + 2, priv_len);
    if (rc == KM_OK)
        rc = activate(st, (char *)ref + 2 + priv_len, pub_len);
    if (rc != KM_OK) {
        (void)discard(st, (char *)ref + 2 + priv_len, pub_len, rc);
        return discard(st, (char *)ref + 2, priv_len, rc);
    }
    ref[0] = REF_PAIR;
    ref[1] = (uint8_t)priv_len;
    return km_secret_from(out_ref, ref, 2 + priv_len + pub_len);
}

static int kmip_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    kmip_state *st = state_of(state);
    create_arg a;
    size_t uid_len = 0;
    uint8_t ref[1 + UID_MAX];
    int rc;

    if (out_ref == NULL || spec == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip generate: NULL argument");
    *out_ref = NULL;
    if ((rc = need_state(st, "generate")) != KM_OK)
        return rc;
    if (spec->type == KM_KEY_HMAC_SHA256) {
        /* KMIP servers (PyKMIP) create no HMAC keys: libkm draws the key and
         * registers it, wiping its copy */
        km_secret *k = NULL;
        if ((rc = km_secret_new(&k, 32)) != KM_OK)
            return rc;
        if (km__random_priv(km_secret_data(k), 32) != KM_OK)
            rc = km_backend_error(KM_E_CRYPTO, KM_NATIVE_NONE, 0,
                                  "kmip generate: random bytes failed");
        else
            rc = register_key(st, spec, km_secret_data(k), 32, out_ref);
        km_secret_free(k);
        return rc;
    }
    if (rsa_bits(spec->type) != 0)
        return generate_rsa(st, spec, out_ref);
    if (spec->type != KM_KEY_AES_256_GCM)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip generate: a KMIP server holds aes-256-gcm, hmac-sha256 "
                                "and rsa-* keys only");
    if ((rc = object_name(spec, &a)) != KM_OK)
        return rc;
    rc = create_active(st, &a, (char *)ref + 1, &uid_len);
    if (rc != KM_OK)
        return rc;
    ref[0] = REF_VERSION;
    return km_secret_from(out_ref, ref, 1 + uid_len);
}

static int kmip_import(void *state, const km_backend_keyspec *spec, km_material_format format,
                       const uint8_t *material, size_t material_len, km_secret **out_ref)
{
    kmip_state *st = state_of(state);
    int rc;

    if (out_ref == NULL || spec == NULL || material == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip import: NULL argument");
    *out_ref = NULL;
    if ((rc = need_state(st, "import")) != KM_OK)
        return rc;
    if ((spec->type != KM_KEY_AES_256_GCM && spec->type != KM_KEY_HMAC_SHA256)
        || format != KM_MATERIAL_RAW)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip import: raw aes-256-gcm and hmac-sha256 keys only");
    if (material_len != 32)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip import: the key is 32 bytes");
    return register_key(st, spec, material, material_len, out_ref);
}

/* ------------------------------------------------------------ load / unload */

/* A reference: one object (format 1: uid), or an RSA key pair (format 2:
 * uid = the private key, pub = the public key; *pub_len 0 for format 1). */
static int ref_parse(const uint8_t *ref, size_t len, const char **uid, size_t *uid_len,
                     const char **pub, size_t *pub_len)
{
    size_t i, start;

    *pub = NULL;
    *pub_len = 0;
    if (ref == NULL || len < 2 || len > 2 + 2 * UID_MAX)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip: the reference is not a KMIP object's");
    if (ref[0] == REF_VERSION && len <= 1 + UID_MAX) {
        start = 1;
        *uid_len = len - 1;
    } else if (ref[0] == REF_PAIR && ref[1] != 0 && (size_t)ref[1] + 2 < len
               && len - 2 - ref[1] <= UID_MAX) {
        start = 2;
        *uid_len = ref[1];
        *pub = (const char *)ref + 2 + ref[1];
        *pub_len = len - 2 - ref[1];
    } else if (ref[0] != REF_VERSION && ref[0] != REF_PAIR) {
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip: reference format %u is not supported", ref[0]);
    } else {
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip: the reference is not a KMIP object's");
    }
    for (i = start; i < len; i++)
        if (ref[i] == 0)
            return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                    "kmip: the reference is not a KMIP object's");
    *uid = (const char *)ref + start;
    return KM_OK;
}

static int kmip_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                     size_t ref_len, void **out_obj)
{
    kmip_state *st = state_of(state);
    kmip_obj *o;
    const char *uid, *pub;
    size_t uid_len, pub_len;
    int rc;

    if (out_obj == NULL || spec == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip load: NULL argument");
    *out_obj = NULL;
    if ((rc = need_state(st, "load")) != KM_OK)
        return rc;
    if ((rc = ref_parse(ref, ref_len, &uid, &uid_len, &pub, &pub_len)) != KM_OK)
        return rc;
    if ((pub_len != 0) != (rsa_bits(spec->type) != 0))
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip load: the reference does not fit the key type");
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip load: out of memory");
    if (pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o);
        return km_backend_error(KM_E_NOMEM, KM_NATIVE_NONE, 0, "kmip load: mutex");
    }
    o->st = st;
    o->type = spec->type;
    memcpy(o->uid, uid, uid_len);
    o->uid_len = uid_len;
    if (pub_len != 0)
        memcpy(o->pub, pub, pub_len);
    o->pub_len = pub_len;
    *out_obj = o;
    return KM_OK;
}

static void kmip_unload(void *state, void *obj)
{
    kmip_obj *o = obj;

    (void)state;
    if (o == NULL)
        return;
    km__pkey_free(o->pkey);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

/* ---------------------------------------------------------------- AES-GCM */

typedef struct gcm_arg {
    const kmip_obj *o;
    const uint8_t *nonce, *aad1, *aad2, *in, *tag;
    size_t aad1_len, aad2_len, in_len;
} gcm_arg;

static int build_encrypt(km__ttlv_enc *e, int major, int minor, void *arg)
{
    gcm_arg *a = arg;
    return km__kmip_msg_encrypt(e, major, minor, a->o->uid, a->o->uid_len, a->in, a->in_len,
                                a->nonce, 12, a->aad1, a->aad1_len, a->aad2, a->aad2_len);
}

static int build_decrypt(km__ttlv_enc *e, int major, int minor, void *arg)
{
    gcm_arg *a = arg;
    return km__kmip_msg_decrypt(e, major, minor, a->o->uid, a->o->uid_len, a->in, a->in_len,
                                a->nonce, 12, a->aad1, a->aad1_len, a->aad2, a->aad2_len,
                                a->tag, 16);
}

static int gcm_type(const kmip_obj *o, const char *what)
{
    if (o == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip %s: no key", what);
    if (o->type != KM_KEY_AES_256_GCM)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip %s: not an AES-GCM key", what);
    return KM_OK;
}

static int kmip_aead_seal(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                          size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                          const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[16])
{
    kmip_obj *o = obj;
    gcm_arg a = { o, nonce, aad1, aad2, in, NULL, aad1_len, aad2_len, in_len };
    km__kmip_reply r;
    const uint8_t *data, *t, *iv;
    size_t data_len, t_len, iv_len;
    int rc;

    if ((rc = gcm_type(o, "encrypt")) != KM_OK)
        return rc;
    rc = call(o->st, build_encrypt, &a, 1, &r, "encrypt");
    if (rc != KM_OK)
        return rc;
    rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_ENCRYPT, "encrypt");
    if (rc == KM_OK) {
        int p = r.msg.items[0].payload;
        if (km__ttlv_get_bytes(&r.tree, p, KM__KMIP_TAG_DATA, &data, &data_len) != KM_OK
            || data_len != in_len
            || km__ttlv_get_bytes(&r.tree, p, KM__KMIP_TAG_AE_TAG, &t, &t_len) != KM_OK
            || t_len != 16)
            rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                  "kmip encrypt: the response lacks the ciphertext or a "
                                  "16-byte tag (is the protocol 1.4 or later?)");
        /* a server that used another nonce than libkm's would break the format */
        else if (km__ttlv_get_bytes(&r.tree, p, KM__KMIP_TAG_IV_COUNTER_NONCE, &iv, &iv_len)
                     == KM_OK
                 && (iv_len != 12 || memcmp(iv, nonce, 12) != 0))
            rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                  "kmip encrypt: the server used another nonce");
        else {
            if (in_len > 0)
                memcpy(out, data, in_len);
            memcpy(tag, t, 16);
        }
    }
    km__kmip_reply_free(&r);
    return rc;
}

static int kmip_aead_open(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                          size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                          const uint8_t *in, size_t in_len, const uint8_t tag[16], uint8_t *out)
{
    kmip_obj *o = obj;
    gcm_arg a = { o, nonce, aad1, aad2, in, tag, aad1_len, aad2_len, in_len };
    km__kmip_reply r;
    const uint8_t *data;
    size_t data_len;
    int rc;

    if (out != NULL && in_len > 0)
        memset(out, 0, in_len);
    if ((rc = gcm_type(o, "decrypt")) != KM_OK)
        return rc;
    rc = call(o->st, build_decrypt, &a, 1, &r, "decrypt");
    if (rc != KM_OK)
        return rc;
    rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_DECRYPT, "decrypt");
    if (rc == KM_OK) {
        int p = r.msg.items[0].payload;
        if (km__ttlv_get_bytes(&r.tree, p, KM__KMIP_TAG_DATA, &data, &data_len) != KM_OK
            || data_len != in_len)
            rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                  "kmip decrypt: the response lacks the plaintext");
        else if (in_len > 0)
            memcpy(out, data, in_len);
    }
    km__kmip_reply_free(&r); /* wipes the plaintext it carried */
    return rc;
}

/* -------------------------------------------------------------------- MAC */

typedef struct mac_arg {
    const kmip_obj *o;
    const uint8_t *msg;
    size_t len;
} mac_arg;

static int build_mac(km__ttlv_enc *e, int major, int minor, void *arg)
{
    mac_arg *a = arg;
    return km__kmip_msg_mac(e, major, minor, a->o->uid, a->o->uid_len, a->msg, a->len);
}

static int kmip_mac(void *obj, const uint8_t *msg, size_t msg_len, uint8_t *tag, size_t tag_cap,
                    size_t *tag_len)
{
    kmip_obj *o = obj;
    mac_arg a = { o, msg, msg_len };
    km__kmip_reply r;
    const uint8_t *m;
    size_t m_len;
    int rc;

    if (o == NULL || tag == NULL || tag_len == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip mac: NULL argument");
    if (o->type != KM_KEY_HMAC_SHA256)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip mac: not an HMAC key");
    if (msg_len == 0)
        /* KMIP's MAC has no empty Data (PyKMIP: "No data to be MACed") */
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip mac: a KMIP server does not MAC an empty message");
    if (tag_cap < 32)
        return km_backend_error(KM_E_BUFFER, KM_NATIVE_NONE, 0, "kmip mac: 32 bytes needed");
    rc = call(o->st, build_mac, &a, 1, &r, "mac");
    if (rc != KM_OK)
        return rc;
    rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_MAC, "mac");
    if (rc == KM_OK) {
        if (km__ttlv_get_bytes(&r.tree, r.msg.items[0].payload, KM__KMIP_TAG_MAC_DATA, &m,
                               &m_len) != KM_OK
            || m_len != 32)
            rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                  "kmip mac: the response has no 32-byte MAC");
        else {
            memcpy(tag, m, 32);
            *tag_len = 32;
        }
    }
    km__kmip_reply_free(&r);
    return rc;
}

/* ----------------------------------------------------- RSA: sign, verify
 * Sign goes to the server (RSA-PSS, SHA-256, with the KMIP 1.4 Salt Length
 * 32, MGF1-SHA-256 fields, asked again without them when the server cannot
 * parse them) and the signature is checked here with the public key before
 * it is returned: a server that signs otherwise (PyKMIP 0.10 signs PSS with
 * the longest salt and ignores the fields) gives KM_E_UNSUPPORTED, never a
 * signature libkm's verifiers would refuse. Verify and public_key use the
 * public key, fetched once with Get (PKCS#1 or X.509 format). */

static int build_get(km__ttlv_enc *e, int major, int minor, void *arg)
{
    uid_arg *a = arg;
    return km__kmip_msg_get(e, major, minor, a->uid, a->uid_len);
}

/* The public key of a key pair object, fetched on first use (o->mu held). */
static int fetch_pkey(kmip_obj *o)
{
    uid_arg a = { o->pub, o->pub_len };
    km__kmip_reply r;
    const uint8_t *mat;
    size_t mat_len;
    uint32_t fmt = 0;
    km__pkey *k = NULL;
    int pk, kb, kv, rc;

    rc = call(o->st, build_get, &a, 1, &r, "get");
    if (rc != KM_OK)
        return rc;
    rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_GET, "get");
    if (rc == KM_OK
        && (km__ttlv_get_struct(&r.tree, r.msg.items[0].payload, KM__KMIP_TAG_PUBLIC_KEY, &pk)
                != KM_OK
            || km__ttlv_get_struct(&r.tree, pk, KM__KMIP_TAG_KEY_BLOCK, &kb) != KM_OK
            || km__ttlv_get_enum(&r.tree, kb, KM__KMIP_TAG_KEY_FORMAT_TYPE, &fmt) != KM_OK
            || km__ttlv_get_struct(&r.tree, kb, KM__KMIP_TAG_KEY_VALUE, &kv) != KM_OK
            || km__ttlv_get_bytes(&r.tree, kv, KM__KMIP_TAG_KEY_MATERIAL, &mat, &mat_len)
                   != KM_OK))
        rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                              "kmip get: the response holds no public key");
    if (rc == KM_OK) {
        if (fmt == KM__KMIP_FORMAT_PKCS1)
            rc = km__pkey_from_rsa_pkcs1(&k, mat, mat_len);
        else if (fmt == KM__KMIP_FORMAT_X509)
            rc = km__pkey_from_spki(&k, mat, mat_len);
        else
            rc = km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                  "kmip get: the public key comes in key format %u "
                                  "(PKCS#1 or X.509 needed)", (unsigned)fmt);
        if (rc != KM_OK)
            rc = km_backend_error(rc == KM_E_UNSUPPORTED ? rc : KM_E_BACKEND, KM_NATIVE_NONE,
                                  0, "kmip get: %s", km_error_last()->message);
    }
    km__kmip_reply_free(&r);
    if (rc == KM_OK && !km__pkey_is_rsa(k, (int)rsa_bits(o->type))) {
        km__pkey_free(k);
        return km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                                "kmip get: the server's public key is not RSA-%u",
                                (unsigned)rsa_bits(o->type));
    }
    if (rc == KM_OK)
        o->pkey = k;
    return rc;
}

/* The key pair's public key (fetched once); NULL with the error recorded. */
static km__pkey *pair_pkey(kmip_obj *o, const char *what)
{
    km__pkey *k;

    if (o == NULL || o->pub_len == 0) {
        km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0, "kmip %s: not an RSA key", what);
        return NULL;
    }
    pthread_mutex_lock(&o->mu);
    if (o->pkey == NULL && fetch_pkey(o) != KM_OK)
        k = NULL;
    else
        k = o->pkey;
    pthread_mutex_unlock(&o->mu);
    return k;
}

static int kmip_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    km__pkey *k = pair_pkey(obj, "public key");
    return k == NULL ? km_error_last()->code : km__pkey_spki(k, out, out_cap, out_len);
}

static int kmip_verify(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                       const uint8_t *sig, size_t sig_len)
{
    km__pkey *k = pair_pkey(obj, "verify");
    return k == NULL ? km_error_last()->code
                     : km__pkey_verify(k, "SHA256", flags, msg, msg_len, sig, sig_len);
}

typedef struct sign_arg {
    const kmip_obj *o;
    const uint8_t *msg;
    size_t len;
    int pss_fields;
} sign_arg;

static int build_sign(km__ttlv_enc *e, int major, int minor, void *arg)
{
    sign_arg *a = arg;
    return km__kmip_msg_sign(e, major, minor, a->o->uid, a->o->uid_len, a->msg, a->len,
                             a->pss_fields);
}

static int kmip_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                     uint8_t *sig, size_t sig_cap, size_t *sig_len)
{
    kmip_obj *o = obj;
    km__pkey *k = pair_pkey(o, "sign");
    sign_arg a = { o, msg, msg_len, 0 };
    int pkcs1 = (flags & KM_SIG_PKCS1) != 0;
    km__kmip_reply r;
    const uint8_t *s;
    size_t s_len;
    int rc;

    if (k == NULL)
        return km_error_last()->code;
    if ((flags & ~KM_SIG_PKCS1) != 0)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "kmip sign: messages only (RSA-PSS, or PKCS#1 v1.5 with "
                                "KM_SIG_PKCS1)");
    if (sig_cap < km__pkey_size(k)) {
        *sig_len = km__pkey_size(k);
        return km_backend_error(KM_E_BUFFER, KM_NATIVE_NONE, 0, "kmip sign: %zu bytes needed",
                                km__pkey_size(k));
    }
    for (a.pss_fields = pkcs1 ? KM__KMIP_SIGN_PKCS1 : atomic_load(&o->st->pss_fields);;) {
        rc = call(o->st, build_sign, &a, 1, &r, "sign");
        if (rc != KM_OK)
            return rc;
        if (a.pss_fields != KM__KMIP_SIGN_PSS_FIELDS || !refused_attrs(&r.msg.items[0]))
            break;
        km__kmip_reply_free(&r);
        a.pss_fields = 0;
        atomic_store(&o->st->pss_fields, 0);
    }
    rc = km__kmip_result_err(&r.msg.items[0], KM__KMIP_OP_SIGN, "sign");
    if (rc == KM_OK
        && (km__ttlv_get_bytes(&r.tree, r.msg.items[0].payload, KM__KMIP_TAG_SIGNATURE_DATA, &s,
                               &s_len) != KM_OK
            || s_len == 0 || s_len > sig_cap))
        rc = km_backend_error(KM_E_BACKEND, KM_NATIVE_NONE, 0,
                              "kmip sign: the response holds no signature of the key's size");
    if (rc == KM_OK) {
        /* libkm's format or nothing */
        if (pkcs1 && km__pkey_verify(k, "SHA256", KM_SIG_PKCS1, msg, msg_len, s, s_len) != KM_OK)
            rc = km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                  "kmip sign: the server's signature is not PKCS#1 v1.5 with "
                                  "SHA-256");
        else if (!pkcs1 && km__pkey_verify(k, "SHA256", 0, msg, msg_len, s, s_len) != KM_OK)
            rc = km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                  "kmip sign: the server's signature is not RSA-PSS with "
                                  "SHA-256, MGF1-SHA-256 and a 32-byte salt (it ignores the "
                                  "Salt Length%s; PyKMIP 0.10 uses the longest salt): signing "
                                  "needs a server that honours it",
                                  a.pss_fields ? "" : ", which it cannot parse");
        else {
            memcpy(sig, s, s_len);
            *sig_len = s_len;
        }
    }
    km__kmip_reply_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- destroy */

static int destroy_one(kmip_state *st, const char *uid, size_t uid_len);

static int kmip_destroy(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                        size_t ref_len)
{
    kmip_state *st = state_of(state);
    const char *pub;
    size_t pub_len;
    uid_arg a;
    int rc;

    (void)spec;
    if ((rc = need_state(st, "destroy")) != KM_OK)
        return rc;
    if ((rc = ref_parse(ref, ref_len, &a.uid, &a.uid_len, &pub, &pub_len)) != KM_OK)
        return rc;
    /* a key pair: the private key first, which matters */
    rc = destroy_one(st, a.uid, a.uid_len);
    if (rc == KM_OK && pub_len != 0)
        rc = destroy_one(st, pub, pub_len);
    return rc;
}

/* Revoke + Destroy of one object; KM_OK also when the server has no such object. */
static int destroy_one(kmip_state *st, const char *uid, size_t uid_len)
{
    km__kmip_reply r;
    uid_arg a = { uid, uid_len };
    int rc;

    rc = call(st, build_revoke_destroy, &a, 2, &r, "destroy");
    if (rc != KM_OK)
        return rc;
    {
        /* the items by their Unique Batch Item IDs (1 Revoke, 2 Destroy) when
         * the server echoes them, else in order */
        const km__kmip_result *rv = &r.msg.items[0], *ds = &r.msg.items[1];
        if (rv->batch_id_len == 1 && rv->batch_id[0] == 2) {
            rv = &r.msg.items[1];
            ds = &r.msg.items[0];
        }
        /* the Revoke may fail on an object already revoked: the Destroy decides */
        rc = km__kmip_result_err(ds, KM__KMIP_OP_DESTROY, "destroy");
        if (rc == KM_E_NOTFOUND && rv->reason == KM__KMIP_REASON_ITEM_NOT_FOUND)
            rc = KM_OK; /* destroyed before: the server has no such object */
    }
    km__kmip_reply_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- keyslot
 * The vault's master key encrypted by a server AES key of its own, created
 * for the slot (Name "libkm-keyslot-<random>"). Blob (stored in the vault's
 * keyslot, not secret):
 *   [1 byte format = 1][1 byte n][n bytes: the key's unique identifier]
 *   [12 bytes nonce][32 bytes encrypted master key][16 bytes tag]
 * The AAD is "libkm kmip keyslot" || the first 2 + n bytes, so that the blob's
 * header cannot be changed to point the slot at another object. */

#define SLOT_VERSION 1
#define SLOT_AAD "libkm kmip keyslot"

static int kmip_slot_seal(void *state, const km_secret *master, km_secret **out_blob)
{
    kmip_state *st = state_of(state);
    kmip_obj o;
    create_arg a;
    uint8_t blob[2 + UID_MAX + 12 + 32 + 16], *nonce, *ct;
    size_t uid_len = 0, len;
    int rc;

    if (out_blob == NULL || master == NULL || km_secret_len(master) != 32)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0,
                                "kmip keyslot: a 32-byte master key is needed");
    *out_blob = NULL;
    if ((rc = need_state(st, "keyslot")) != KM_OK)
        return rc;
    if ((rc = random_name(a.name, sizeof a.name, "libkm-keyslot-", 8)) != KM_OK)
        return rc;
    rc = create_active(st, &a, (char *)blob + 2, &uid_len);
    if (rc != KM_OK)
        return rc;
    blob[0] = SLOT_VERSION;
    blob[1] = (uint8_t)uid_len;
    nonce = blob + 2 + uid_len;
    ct = nonce + 12;
    len = 2 + uid_len + 12 + 32 + 16;
    memset(&o, 0, sizeof o);
    o.st = st;
    o.type = KM_KEY_AES_256_GCM;
    memcpy(o.uid, blob + 2, uid_len);
    o.uid_len = uid_len;
    if (km__random(nonce, 12) != KM_OK)
        rc = km_backend_error(KM_E_CRYPTO, KM_NATIVE_NONE, 0,
                              "kmip keyslot: random bytes failed");
    else
        rc = kmip_aead_seal(&o, nonce, (const uint8_t *)SLOT_AAD, strlen(SLOT_AAD), blob,
                            2 + uid_len, km_secret_data(master), 32, ct, ct + 32);
    if (rc == KM_OK)
        rc = km_secret_from(out_blob, blob, len);
    if (rc != KM_OK)
        rc = discard(st, o.uid, o.uid_len, rc); /* the slot's key serves nothing else */
    km_memzero(blob, sizeof blob);
    return rc;
}

static int kmip_slot_unseal(void *state, const uint8_t *blob, size_t blob_len,
                            km_secret **out_master)
{
    kmip_state *st = state_of(state);
    kmip_obj o;
    km_secret *m = NULL;
    size_t n;
    int rc;

    if (out_master == NULL)
        return km_backend_error(KM_E_INVALID, KM_NATIVE_NONE, 0, "kmip keyslot: NULL argument");
    *out_master = NULL;
    if ((rc = need_state(st, "keyslot")) != KM_OK)
        return rc;
    if (blob == NULL || blob_len < 2 || blob[0] != SLOT_VERSION || blob[1] == 0
        || blob_len != 2 + (size_t)blob[1] + 12 + 32 + 16
        || memchr(blob + 2, 0, blob[1]) != NULL)
        return km_backend_error(KM_E_CORRUPT, KM_NATIVE_NONE, 0,
                                "kmip keyslot: not a kmip keyslot blob");
    n = blob[1];
    memset(&o, 0, sizeof o);
    o.st = st;
    o.type = KM_KEY_AES_256_GCM;
    memcpy(o.uid, blob + 2, n);
    o.uid_len = n;
    if ((rc = km_secret_new(&m, 32)) != KM_OK)
        return rc;
    rc = kmip_aead_open(&o, blob + 2 + n, (const uint8_t *)SLOT_AAD, strlen(SLOT_AAD), blob,
                        2 + n, blob + 2 + n + 12, 32, blob + 2 + n + 12 + 32, km_secret_data(m));
    if (rc == KM_E_NOTFOUND || rc == KM_E_DENIED || rc == KM_E_INTEGRITY) {
        /* another server, another client, or another object: not this slot's */
        const km_error *le = km_error_last();
        km_native_kind kind = le->native_kind;
        unsigned long native = le->native;
        char keep[256];
        snprintf(keep, sizeof keep, "%s", le->message);
        km_secret_free(m);
        return km_backend_error(KM_E_AUTH, kind, native,
                                "kmip keyslot: this server or client cannot unseal it (%s)", keep);
    }
    if (rc != KM_OK) {
        km_secret_free(m);
        return rc;
    }
    *out_master = m;
    return KM_OK;
}

const km_backend_ops km__kmip_backend = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "kmip",
    .caps = KM_BACKEND_CAP_SYMMETRIC | KM_BACKEND_CAP_ASYMMETRIC | KM_BACKEND_CAP_IMPORT,
    .open = kmip_open,
    .close = kmip_close,
    .generate = kmip_generate,
    .import = kmip_import,
    .destroy = kmip_destroy,
    .load = kmip_load,
    .unload = kmip_unload,
    .aead_seal = kmip_aead_seal,
    .aead_open = kmip_aead_open,
    .sign = kmip_sign,
    .verify = kmip_verify,
    .mac = kmip_mac,
    .wrap = NULL,
    .unwrap = NULL,
    .derive = NULL,
    .agree = NULL,
    .public_key = kmip_public_key,
    .ctl = NULL,
    .slot_seal = kmip_slot_seal,
    .slot_unseal = kmip_slot_unseal,
};
