/*
 * tpm2.c - the "tpm2" backend: keys created under the TPM's storage primary.
 *
 * Reference (stored sealed in the catalog):
 *   [1 byte format version = 1][1 byte kind][TPM2B_PUBLIC][TPM2B_PRIVATE]
 * with the TPM2B structures marshalled by Tss2_MU (each carries its size). The
 * TPM itself holds nothing but its seed: the blobs load again after a restart
 * and fail to load under another TPM (KM_E_INTEGRITY or KM_E_BACKEND).
 *
 * Kinds:
 *   EC P-256   ECDSA-SHA256 signing key; sign in the TPM, verify and the
 *              public key in software (the primitives, prim.h) from the
 *              public point. RSA-2048 likewise (RSA-PSS; OAEP in the TPM).
 *   HMAC-SHA256 keyed-hash object generated in the TPM; mac via TPM2_HMAC.
 *   AES (GCM, KWP) the key bytes sealed as a TPM data object; `load`
 *              unseals them (over a salted, encrypting session) into secure
 *              memory as a keyed primitive (km__skey, prim.h: the same keyed
 *              contexts the software backend uses), which does the cipher
 *              work (the TPM has no GCM). No other backend is called.
 *   keyslot    the vault's master key sealed the same way (slot_seal /
 *              slot_unseal): the vault then opens on this TPM without a
 *              passphrase, and not on another TPM (its seed differs).
 */
#include "keytype.h"
#include "tpm2_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#define REF_VERSION 1
enum ref_kind { KIND_ECDSA = 1, KIND_HMAC = 2, KIND_SEALED = 3, KIND_SLOT = 4, KIND_RSA = 5 };

#define RSA_BYTES 256   /* RSA-2048 */

#define P256_FIELD 32
#define P256_DER_MAX 72  /* SEQUENCE of two 33-byte INTEGERs */

typedef struct tpm_state {
    km__tpm2_conn *conn;
    uint32_t pcrs;      /* keyslots: SHA-256 PCRs to bind to (bit i = PCR i), from pcrs= */
} tpm_state;

typedef struct tpm_obj {
    tpm_state *st;
    uint64_t id;        /* unique in the process: names the object in the conn's cache */
    km_key_type type;
    enum ref_kind kind;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    km__pkey *pkey;     /* EC, RSA: the public key (verification, export: prim.h) */
    km__skey *sk;       /* sealed: the unsealed key with its keyed contexts (prim.h) */
} tpm_obj;

static const uint8_t empty_msg[1] = { 0 };

/* The reference kind of a key type the TPM can hold (the key-type table's
 * KM__KT_TPM2 bit); 0 for others. */
static enum ref_kind kind_of(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);

    if (kt == NULL || !(kt->backends & KM__KT_TPM2))
        return 0;
    switch (kt->family) {
    case KM__FAM_ECDSA:
        return KIND_ECDSA;
    case KM__FAM_RSA:
        return KIND_RSA;
    case KM__FAM_HMAC:
        return KIND_HMAC;
    case KM__FAM_AES_GCM:
    case KM__FAM_AES_KWP:
        return KIND_SEALED;
    default:
        return 0;
    }
}

/* The AES-GCM cipher of a sealed key type (NULL: AES-KWP). */
static const char *sealed_cipher(km_key_type type)
{
    const km__keytype *kt = km__keytype_get((int)type);
    return kt != NULL && kt->family == KM__FAM_AES_GCM ? kt->cipher : NULL;
}

/* ---------------------------------------------------------- open / close */

/* The "pcrs=sha256:0,7" (or "pcrs=0,7") item of a configuration: the SHA-256
 * PCRs a keyslot is sealed to. */
static int parse_pcrs(const char *config, uint32_t *mask)
{
    const char *p = config ? strstr(config, "pcrs=") : NULL;
    char *endp;

    *mask = 0;
    if (p == NULL)
        return KM_OK;
    p += 5;
    if (strncmp(p, "sha256:", 7) == 0)
        p += 7;
    while (*p != '\0' && *p != ';') {
        unsigned long n = strtoul(p, &endp, 10);
        if (endp == p || n > 23 || (*endp != ',' && *endp != ';' && *endp != '\0'))
            return km__err(KM_E_INVALID, "tpm2 configuration: pcrs= is a list of PCR numbers "
                                         "0..23 (sha256 bank), e.g. pcrs=sha256:0,7");
        *mask |= 1u << n;
        p = *endp == ',' ? endp + 1 : endp;
    }
    if (*mask == 0)
        return km__err(KM_E_INVALID, "tpm2 configuration: pcrs= names no PCR");
    return KM_OK;
}

static void pcr_selection(uint32_t mask, TPML_PCR_SELECTION *sel)
{
    memset(sel, 0, sizeof *sel);
    sel->count = 1;
    sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel->pcrSelections[0].sizeofSelect = 3;
    sel->pcrSelections[0].pcrSelect[0] = (uint8_t)mask;
    sel->pcrSelections[0].pcrSelect[1] = (uint8_t)(mask >> 8);
    sel->pcrSelections[0].pcrSelect[2] = (uint8_t)(mask >> 16);
}

static int tpm_open(void **out_state, const char *config)
{
    tpm_state *st;
    int rc;

    if (out_state == NULL)
        return km__err(KM_E_INVALID, "tpm2 open: out_state is NULL");
    *out_state = NULL;
    st = calloc(1, sizeof *st);
    if (st == NULL)
        return km__err(KM_E_NOMEM, "tpm2 open: out of memory");
    if ((rc = parse_pcrs(config, &st->pcrs)) != KM_OK
        || (rc = km__tpm2_conn_get(config, &st->conn)) != KM_OK) {
        free(st);
        return rc;
    }
    *out_state = st;
    return KM_OK;
}

static void tpm_close(void *state)
{
    tpm_state *st = state;

    if (st == NULL)
        return;
    km__tpm2_conn_put(st->conn);
    free(st);
}

/* ------------------------------------------------------------- references */

static int ref_make(enum ref_kind kind, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv,
                    km_secret **out)
{
    uint8_t buf[2 + sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE)];
    size_t off = 2;
    TSS2_RC rc;
    int krc;

    buf[0] = REF_VERSION;
    buf[1] = (uint8_t)kind;
    rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof buf, &off);
    if (rc == TSS2_RC_SUCCESS)
        rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof buf, &off);
    if (rc != TSS2_RC_SUCCESS)
        return km__tpm2_err(rc, "marshal key blobs");
    krc = km_secret_from(out, buf, off);
    km_memzero(buf, sizeof buf);
    return krc;
}

static int ref_parse(const uint8_t *ref, size_t len, enum ref_kind kind, TPM2B_PUBLIC *pub,
                     TPM2B_PRIVATE *priv)
{
    size_t off = 2;

    memset(pub, 0, sizeof *pub);
    memset(priv, 0, sizeof *priv);
    if (ref == NULL || len < 3)
        return km__err(KM_E_INVALID, "tpm2 load: reference too short");
    if (ref[0] != REF_VERSION)
        return km__err(KM_E_UNSUPPORTED, "tpm2 load: reference format %u is not supported",
                       ref[0]);
    if (ref[1] != (uint8_t)kind)
        return km__err(KM_E_INVALID, "tpm2 load: the reference is of another key kind");
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(ref, len, &off, pub) != TSS2_RC_SUCCESS
        || Tss2_MU_TPM2B_PRIVATE_Unmarshal(ref, len, &off, priv) != TSS2_RC_SUCCESS
        || off != len)
        return km__err(KM_E_INVALID, "tpm2 load: malformed key blobs");
    return KM_OK;
}

/* ----------------------------------------------------------- TPM helpers */

/* A salted HMAC session bound to nothing, salted with the storage primary,
 * that encrypts the first command parameter and the first response parameter
 * (AES-128-CFB) so that sealed key bytes never cross the wire in clear. */
static TSS2_RC start_enc_session(km__tpm2_conn *c, ESYS_TR *out)
{
    TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128,
                         .mode.aes = TPM2_ALG_CFB };
    TSS2_RC rc;

    *out = ESYS_TR_NONE;
    KM__TPM2_CALL(rc, Esys_StartAuthSession(c->esys, c->primary, ESYS_TR_NONE, ESYS_TR_NONE,
                                            ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_HMAC,
                                            &sym, TPM2_ALG_SHA256, out));
    if (rc != TSS2_RC_SUCCESS) {
        *out = ESYS_TR_NONE;
        return rc;
    }
    rc = Esys_TRSess_SetAttributes(c->esys, *out,
                                   TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT
                                       | TPMA_SESSION_CONTINUESESSION,
                                   0xff);
    return rc;
}

/* A salted policy session (a trial one computes the digest only) with
 * PolicyPCR over the SHA-256 PCRs in `mask` at their current values; the
 * real one also encrypts the Unseal response. */
static TSS2_RC start_policy_session(km__tpm2_conn *c, int trial, uint32_t mask, ESYS_TR *out)
{
    TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128,
                         .mode.aes = TPM2_ALG_CFB };
    TPML_PCR_SELECTION sel;
    TSS2_RC rc;

    *out = ESYS_TR_NONE;
    pcr_selection(mask, &sel);
    KM__TPM2_CALL(rc, Esys_StartAuthSession(c->esys, c->primary, ESYS_TR_NONE, ESYS_TR_NONE,
                                            ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                            trial ? TPM2_SE_TRIAL : TPM2_SE_POLICY, &sym,
                                            TPM2_ALG_SHA256, out));
    if (rc != TSS2_RC_SUCCESS) {
        *out = ESYS_TR_NONE;
        return rc;
    }
    if (!trial
        && (rc = Esys_TRSess_SetAttributes(c->esys, *out, TPMA_SESSION_ENCRYPT
                                                              | TPMA_SESSION_CONTINUESESSION,
                                           0xff)) != TSS2_RC_SUCCESS)
        return rc;
    KM__TPM2_CALL(rc, Esys_PolicyPCR(c->esys, *out, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     NULL, &sel));
    return rc;
}

struct policy_arg {
    uint32_t pcrs;
    TPM2B_DIGEST digest;   /* out */
};

static void flush(km__tpm2_conn *c, ESYS_TR *h);

static int op_policy_digest(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct policy_arg *a = varg;
    TPM2B_DIGEST *d = NULL;
    ESYS_TR sess = ESYS_TR_NONE;
    TSS2_RC rc;
    int krc = KM_OK;

    if ((rc = start_policy_session(c, 1, a->pcrs, &sess)) == TSS2_RC_SUCCESS)
        rc = Esys_PolicyGetDigest(c->esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &d);
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "PolicyPCR (trial)");
    } else {
        a->digest = *d;
    }
    Esys_Free(d);
    flush(c, &sess);
    return krc;
}

static void flush(km__tpm2_conn *c, ESYS_TR *h)
{
    if (*h != ESYS_TR_NONE && c->esys != NULL)
        (void)Esys_FlushContext(c->esys, *h);
    *h = ESYS_TR_NONE;
}

/* ------------------------------------------------------------- generate */

struct gen_arg {
    enum ref_kind kind;
    size_t key_len;            /* sealed: bytes of key to generate */
    const uint8_t *data;       /* sealed: these bytes instead of random ones (a keyslot) */
    const TPM2B_DIGEST *policy;/* a keyslot bound to PCRs: the object's authPolicy */
    km_secret *ref;            /* out */
};

static void template_for(enum ref_kind kind, TPM2B_PUBLIC *t)
{
    memset(t, 0, sizeof *t);
    t->publicArea.nameAlg = TPM2_ALG_SHA256;
    t->publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                                     | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA;
    switch (kind) {
    case KIND_ECDSA:
        t->publicArea.type = TPM2_ALG_ECC;
        /* sign (ECDSA, scheme given per call) and decrypt (ECDH_ZGen for
         * km_agree): an unrestricted key with a NULL scheme may do both */
        t->publicArea.objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT
                                          | TPMA_OBJECT_SENSITIVEDATAORIGIN;
        t->publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        t->publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        t->publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        t->publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        break;
    case KIND_RSA:
        /* PSS sign and OAEP decrypt: both schemes given per call */
        t->publicArea.type = TPM2_ALG_RSA;
        t->publicArea.objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT
                                          | TPMA_OBJECT_SENSITIVEDATAORIGIN;
        t->publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        t->publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        t->publicArea.parameters.rsaDetail.keyBits = 2048;
        t->publicArea.parameters.rsaDetail.exponent = 0;   /* 65537 */
        break;
    case KIND_HMAC:
        t->publicArea.type = TPM2_ALG_KEYEDHASH;
        t->publicArea.objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT
                                          | TPMA_OBJECT_SENSITIVEDATAORIGIN;
        t->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_HMAC;
        t->publicArea.parameters.keyedHashDetail.scheme.details.hmac.hashAlg = TPM2_ALG_SHA256;
        break;
    case KIND_SEALED:
    case KIND_SLOT:
        /* a sealed data object: no sign/decrypt, the data comes from us */
        t->publicArea.type = TPM2_ALG_KEYEDHASH;
        t->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
        break;
    }
}

static int op_generate(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct gen_arg *a = varg;
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_PUBLIC tmpl;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcrs;
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_PRIVATE *priv = NULL;
    ESYS_TR sess = ESYS_TR_NONE, auth = ESYS_TR_PASSWORD;
    TSS2_RC rc;
    int krc;

    memset(&sens, 0, sizeof sens);
    memset(&outside, 0, sizeof outside);
    memset(&pcrs, 0, sizeof pcrs);
    template_for(a->kind, &tmpl);
    if (a->policy != NULL) {
        /* usable only through the policy: no password authorization */
        tmpl.publicArea.authPolicy = *a->policy;
        tmpl.publicArea.objectAttributes &= ~TPMA_OBJECT_USERWITHAUTH;
    }
    if (a->kind == KIND_SEALED || a->kind == KIND_SLOT) {
        if (a->key_len > sizeof sens.sensitive.data.buffer) {
            krc = km__err(KM_E_INTERNAL, "tpm2: sealed key too long");
            goto out;
        }
        if (a->data != NULL)
            memcpy(sens.sensitive.data.buffer, a->data, a->key_len);
        else if ((krc = km__random_priv(sens.sensitive.data.buffer, a->key_len)) != KM_OK)
            goto out;
        sens.sensitive.data.size = (UINT16)a->key_len;
        if ((rc = start_enc_session(c, &sess)) != TSS2_RC_SUCCESS) {
            *trc = rc;
            krc = km__tpm2_err(rc, "StartAuthSession (salted)");
            goto out;
        }
        auth = sess;
    }
    km__tpm2_cache_room(c, 1, 0);   /* TPM2_Create needs a free object slot */
    KM__TPM2_CALL(rc, Esys_Create(c->esys, c->primary, auth, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                                  &tmpl, &outside, &pcrs, &priv, &pub, NULL, NULL, NULL));
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "Create");
        goto out;
    }
    krc = ref_make(a->kind, pub, priv, &a->ref);
out:
    km_memzero(&sens, sizeof sens);
    flush(c, &sess);
    Esys_Free(pub);
    Esys_Free(priv);
    return krc;
}

static int tpm_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    tpm_state *st = state;
    struct gen_arg a;
    int rc;

    if (out_ref == NULL)
        return km__err(KM_E_INVALID, "tpm2 generate: out_ref is NULL");
    *out_ref = NULL;
    if (st == NULL || spec == NULL || spec->version == 0)
        return km__err(KM_E_INVALID, "tpm2 generate: %s", st == NULL ? "no state" : "bad spec");
    memset(&a, 0, sizeof a);
    a.kind = kind_of(spec->type);
    if (a.kind == 0)
        return km__err(KM_E_UNSUPPORTED, "tpm2: key type %s is not supported by the TPM backend",
                       km_key_type_name(spec->type) ? km_key_type_name(spec->type) : "?");
    if (spec->flags & (KM_KEY_PUBLIC_ONLY | KM_KEY_EXPORTABLE))
        return km__err(KM_E_UNSUPPORTED, "tpm2: keys are neither public-only nor exportable");
    a.key_len = km__type_key_len(spec->type);
    rc = km__tpm2_run(st->conn, op_generate, &a);
    if (rc == KM_OK)
        *out_ref = a.ref;
    else
        km_secret_free(a.ref);
    return rc;
}

/* ------------------------------------------------------------ load / unload */

static int ec_pkey_from_public(const TPM2B_PUBLIC *pub, km__pkey **out)
{
    const TPMS_ECC_POINT *pt = &pub->publicArea.unique.ecc;

    *out = NULL;
    if (pub->publicArea.type != TPM2_ALG_ECC
        || pub->publicArea.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256
        || pt->x.size == 0 || pt->x.size > P256_FIELD || pt->y.size == 0
        || pt->y.size > P256_FIELD)
        return km__err(KM_E_INVALID, "tpm2 load: not an ECC P-256 public area");
    return km__pkey_from_ec_xy(out, "P-256", pt->x.buffer, pt->x.size, pt->y.buffer,
                               pt->y.size);
}

static int rsa_pkey_from_public(const TPM2B_PUBLIC *pub, km__pkey **out)
{
    const TPM2B_PUBLIC_KEY_RSA *n = &pub->publicArea.unique.rsa;
    uint32_t e = pub->publicArea.parameters.rsaDetail.exponent;
    uint8_t be[4];

    *out = NULL;
    if (pub->publicArea.type != TPM2_ALG_RSA || pub->publicArea.parameters.rsaDetail.keyBits != 2048
        || n->size != RSA_BYTES)
        return km__err(KM_E_INVALID, "tpm2 load: not an RSA-2048 public area");
    km__be32_put(be, e == 0 ? 65537u : e);   /* 0: the TPM's default exponent */
    return km__pkey_from_rsa(out, n->buffer, n->size, be, sizeof be);
}

static int load_blobs(km__tpm2_conn *c, tpm_obj *o, ESYS_TR *h, TSS2_RC *trc);

/* The object's loaded handle from the connection's cache, else the object is
 * loaded (the least recently used entry flushed first when the cache is full)
 * and cached. The caller never flushes it; after a failed operation it calls
 * cache_failed. */
static int load_cached(km__tpm2_conn *c, tpm_obj *o, ESYS_TR *h, TSS2_RC *trc)
{
    int krc;

    if ((*h = km__tpm2_cache_find(c, o->id)) != ESYS_TR_NONE)
        return KM_OK;
    km__tpm2_cache_room(c, 1, 0);
    if ((krc = load_blobs(c, o, h, trc)) != KM_OK)
        return krc;
    km__tpm2_cache_add(c, o->id, *h);
    return KM_OK;
}

/* After an operation on a cached handle failed: a handle that failed is not
 * trusted again (flushed, loaded again next time), unless the TPM only ran
 * out of object memory for something else (km__tpm2_run evicts and retries). */
static void cache_failed(km__tpm2_conn *c, tpm_obj *o, TSS2_RC trc)
{
    if (trc != TPM2_RC_OBJECT_MEMORY)
        km__tpm2_cache_forget(c, o->id);
}

/* Loads the object's blobs under the primary; the caller flushes *h (or
 * caches it). The caller made room for it in the TPM (km__tpm2_cache_room). */
static int load_blobs(km__tpm2_conn *c, tpm_obj *o, ESYS_TR *h, TSS2_RC *trc)
{
    TSS2_RC rc;

    KM__TPM2_CALL(rc, Esys_Load(c->esys, c->primary, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &o->priv, &o->pub, h));
    if (rc != TSS2_RC_SUCCESS) {
        *h = ESYS_TR_NONE;
        *trc = rc;
        return km__tpm2_err(rc, rc == TPM2_RC_OBJECT_MEMORY
                                    ? "Load (no free object slot in the TPM)"
                                    : "Load (key blobs of another TPM, or altered?)");
    }
    return KM_OK;
}

struct unseal_arg {
    tpm_obj *o;
    km_secret *key;    /* out: [KM_MATERIAL_RAW][key bytes] (a keyslot: the bare key) */
    int slot;          /* a keyslot: out is the bare 32-byte master key */
    uint32_t pcrs;     /* a keyslot bound to these PCRs: unseal through PolicyPCR */
};

static int op_unseal(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct unseal_arg *a = varg;
    TPM2B_SENSITIVE_DATA *data = NULL;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_NONE;
    TSS2_RC rc;
    int krc;

    km__tpm2_cache_room(c, 1, 0);   /* the sealed object is loaded for this call only */
    if ((krc = load_blobs(c, a->o, &h, trc)) != KM_OK)
        goto out;
    if (a->pcrs != 0)
        rc = start_policy_session(c, 0, a->pcrs, &sess);
    else
        rc = start_enc_session(c, &sess);
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, a->pcrs ? "PolicyPCR session" : "StartAuthSession (salted)");
        goto out;
    }
    KM__TPM2_CALL(rc, Esys_Unseal(c->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &data));
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "Unseal");
        goto out;
    }
    if (data->size != (a->slot ? 32u : km__type_key_len(a->o->type))) {
        krc = km__err(KM_E_INTEGRITY, "tpm2 load: the sealed key has the wrong length");
        goto out;
    }
    if (a->slot) {
        krc = km_secret_from(&a->key, data->buffer, data->size);
        goto out;
    }
    if ((krc = km_secret_new(&a->key, 1u + data->size)) != KM_OK)
        goto out;
    km_secret_data(a->key)[0] = KM_MATERIAL_RAW;
    memcpy(km_secret_data(a->key) + 1, data->buffer, data->size);
out:
    if (data != NULL)
        km_memzero(data, sizeof *data);
    Esys_Free(data);
    flush(c, &sess);
    flush(c, &h);
    return krc;
}

static void obj_free(tpm_obj *o)
{
    if (o == NULL)
        return;
    km__skey_free(o->sk);
    km__pkey_free(o->pkey);
    km_memzero(o, sizeof *o);
    free(o);
}

static int tpm_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref,
                    size_t ref_len, void **out_obj)
{
    tpm_state *st = state;
    tpm_obj *o = NULL;
    int rc;

    if (out_obj == NULL)
        return km__err(KM_E_INVALID, "tpm2 load: out_obj is NULL");
    *out_obj = NULL;
    if (st == NULL || spec == NULL || spec->version == 0)
        return km__err(KM_E_INVALID, "tpm2 load: %s", st == NULL ? "no state" : "bad spec");
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return km__err(KM_E_NOMEM, "tpm2 load: out of memory");
    o->st = st;
    {
        static atomic_ulong next_id;
        o->id = (uint64_t)atomic_fetch_add(&next_id, 1) + 1;
    }
    o->type = spec->type;
    o->kind = kind_of(spec->type);
    if (o->kind == 0) {
        rc = km__err(KM_E_UNSUPPORTED, "tpm2: key type not supported");
        goto out;
    }
    if ((rc = ref_parse(ref, ref_len, o->kind, &o->pub, &o->priv)) != KM_OK)
        goto out;
    switch (o->kind) {
    case KIND_ECDSA:
        rc = ec_pkey_from_public(&o->pub, &o->pkey);
        break;
    case KIND_RSA:
        rc = rsa_pkey_from_public(&o->pub, &o->pkey);
        break;
    case KIND_HMAC:
        if (o->pub.publicArea.type != TPM2_ALG_KEYEDHASH
            || !(o->pub.publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
            rc = km__err(KM_E_INVALID, "tpm2 load: not an HMAC key");
        break;
    case KIND_SEALED: {
        struct unseal_arg a = { o, NULL, 0, 0 };
        if (o->pub.publicArea.type != TPM2_ALG_KEYEDHASH
            || (o->pub.publicArea.objectAttributes
                & (TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT))) {
            rc = km__err(KM_E_INVALID, "tpm2 load: not a sealed data object");
            break;
        }
        rc = km__tpm2_run(st->conn, op_unseal, &a);
        if (rc == KM_OK)
            rc = km__skey_new(&o->sk, km__type_family(spec->type) == KM__FAM_AES_KWP ? KM__SKEY_KWP
                                                                       : KM__SKEY_GCM,
                              sealed_cipher(spec->type), km_secret_data(a.key) + 1,
                              km_secret_len(a.key) - 1);
        km_secret_free(a.key);
        break;
    }
    case KIND_SLOT:   /* never a key's kind (kind_of gives none) */
        rc = km__err(KM_E_INVALID, "tpm2 load: a keyslot is not a key");
        break;
    }
    if (rc != KM_OK)
        goto out;
    *out_obj = o;
    o = NULL;
out:
    obj_free(o);
    return rc;
}

/* Unloading (the key closed, a version destroyed, the vault closed) flushes
 * the object's cached handle: nothing of a key stays in the TPM after it. */
static void tpm_unload(void *state, void *obj)
{
    tpm_obj *o = obj;
    (void)state;
    if (o != NULL && o->st != NULL && o->st->conn != NULL) {
        km__tpm2_conn *c = o->st->conn;
        km__tpm2_lock(c);
        km__tpm2_cache_forget(c, o->id);
        km__tpm2_unlock(c);
    }
    obj_free(obj);
}

/* ------------------------------------ AES (the unsealed key, in software) */

static int tpm_aead_seal(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                         size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                         const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[16])
{
    tpm_obj *o = obj;

    if (o == NULL || o->sk == NULL)
        return km__err(KM_E_USAGE, "tpm2: this key does not encrypt data");
    if (nonce == NULL || tag == NULL || (in_len > 0 && (in == NULL || out == NULL))
        || (aad1 == NULL && aad1_len > 0) || (aad2 == NULL && aad2_len > 0))
        return km__err(KM_E_INVALID, "tpm2 aead_seal: NULL buffer");
    return km__skey_seal(o->sk, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, out, tag);
}

static int tpm_aead_open(void *obj, const uint8_t nonce[12], const uint8_t *aad1,
                         size_t aad1_len, const uint8_t *aad2, size_t aad2_len,
                         const uint8_t *in, size_t in_len, const uint8_t tag[16], uint8_t *out)
{
    tpm_obj *o = obj;

    if (o == NULL || o->sk == NULL)
        return km__err(KM_E_USAGE, "tpm2: this key does not decrypt data");
    if (nonce == NULL || tag == NULL || (in_len > 0 && (in == NULL || out == NULL))
        || (aad1 == NULL && aad1_len > 0) || (aad2 == NULL && aad2_len > 0)) {
        if (out != NULL && in_len > 0)
            km_memzero(out, in_len);
        return km__err(KM_E_INVALID, "tpm2 aead_open: NULL buffer");
    }
    return km__skey_open(o->sk, nonce, aad1, aad1_len, aad2, aad2_len, in, in_len, tag, out);
}

static int tpm_wrap(void *obj, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
    tpm_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "tpm2 wrap: out_len is NULL");
    *out_len = 0;
    if (o == NULL || o->sk == NULL)
        return km__err(KM_E_USAGE, "tpm2: this key does not wrap");
    if (in == NULL || in_len == 0)
        return km__err(KM_E_INVALID, "tpm2 wrap: nothing to wrap");
    return km__skey_wrap(o->sk, in, in_len, out, out_cap, out_len);
}

/* ------------------------------------------------------------- RSA-OAEP */

struct dec_arg {
    tpm_obj *o;
    const uint8_t *in;
    size_t in_len;
    km_secret *out;    /* out */
};

/* libtpms before 0.10 (Debian 12's swtpm) answers a failed OAEP decode with
 * TPM_RC_FAILURE although the TPM is fine (fixed by libtpms PR #444, which
 * returns TPM_RC_VALUE): tell that apart from a real failure mode by asking
 * the TPM for its self-test result. */
static int tpm_in_failure_mode(km__tpm2_conn *c)
{
    TPM2B_MAX_BUFFER *data = NULL;
    TPM2_RC result = 0;
    TSS2_RC rc = Esys_GetTestResult(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &data,
                                    &result);

    Esys_Free(data);
    return rc != TSS2_RC_SUCCESS || result == TPM2_RC_FAILURE;
}

static int op_rsa_decrypt(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct dec_arg *a = varg;
    TPM2B_PUBLIC_KEY_RSA ct;
    TPMT_RSA_DECRYPT scheme;
    TPM2B_DATA label;
    TPM2B_PUBLIC_KEY_RSA *pt = NULL;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_NONE;
    TSS2_RC rc;
    int krc;

    memset(&ct, 0, sizeof ct);
    memset(&scheme, 0, sizeof scheme);
    memset(&label, 0, sizeof label);
    ct.size = (UINT16)a->in_len;
    memcpy(ct.buffer, a->in, a->in_len);
    scheme.scheme = TPM2_ALG_OAEP;
    scheme.details.oaep.hashAlg = TPM2_ALG_SHA256;
    if ((krc = load_cached(c, a->o, &h, trc)) != KM_OK)
        goto out;
    /* the plaintext comes back encrypted on the wire (salted session) */
    if ((rc = start_enc_session(c, &sess)) != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "StartAuthSession (salted)");
        goto out;
    }
    KM__TPM2_CALL(rc, Esys_RSA_Decrypt(c->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &ct,
                                       &scheme, &label, &pt));
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        if (((rc & 0xFFFF0000u) == 0 && (rc & TPM2_RC_FMT1)
             && ((rc & 0x3Fu) == (TPM2_RC_VALUE & 0x3Fu)
                 || (rc & 0x3Fu) == (TPM2_RC_SIZE & 0x3Fu)))
            || (rc == TPM2_RC_FAILURE && !tpm_in_failure_mode(c)))
            krc = km__err_native(KM_E_INTEGRITY, KM_NATIVE_TSS2, (long)rc,
                                 "RSA-OAEP decryption failed (wrong key or altered ciphertext)");
        else
            krc = km__tpm2_err(rc, "RSA_Decrypt");
        goto out;
    }
    krc = km_secret_from(&a->out, pt->buffer, pt->size);
out:
    if (pt != NULL) {
        km_memzero(pt, sizeof *pt);
        Esys_Free(pt);
    }
    flush(c, &sess);
    if (krc != KM_OK)
        cache_failed(c, a->o, *trc);
    return krc;
}

static int tpm_unwrap(void *obj, const uint8_t *in, size_t in_len, km_secret **out)
{
    tpm_obj *o = obj;

    if (o != NULL && o->kind == KIND_RSA) {
        struct dec_arg a = { o, in, in_len, NULL };
        int rc;

        if (out == NULL || in == NULL)
            return km__err(KM_E_INVALID, "tpm2 decrypt: %s is NULL", out == NULL ? "out" : "in");
        *out = NULL;
        if (in_len != RSA_BYTES)
            return km__err(KM_E_INTEGRITY, "RSA-OAEP decryption failed (bad length)");
        if ((rc = km__tpm2_run(o->st->conn, op_rsa_decrypt, &a)) != KM_OK)
            return rc;
        *out = a.out;
        return KM_OK;
    }
    if (out == NULL)
        return km__err(KM_E_INVALID, "tpm2 unwrap: out is NULL");
    *out = NULL;
    if (o == NULL || o->sk == NULL || o->kind != KIND_SEALED)
        return km__err(KM_E_USAGE, "tpm2: this key does not unwrap");
    if (in == NULL || in_len == 0)
        return km__err(KM_E_INVALID, "tpm2 unwrap: nothing to unwrap");
    return km__skey_unwrap(o->sk, in, in_len, out);
}

/* -------------------------------------------------------------------- ECDSA */

struct sign_arg {
    tpm_obj *o;
    TPM2B_DIGEST digest;
    uint8_t rs[2 * P256_FIELD];  /* out: ECDSA r || s */
    uint8_t rsa[RSA_BYTES];   /* out: RSA-PSS */
    size_t rsa_len;
};

static int op_sign(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct sign_arg *a = varg;
    TPMT_SIG_SCHEME scheme;
    TPMT_TK_HASHCHECK ticket;
    TPMT_SIGNATURE *sig = NULL;
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc;
    int krc;

    memset(&scheme, 0, sizeof scheme);
    memset(&ticket, 0, sizeof ticket);
    if (a->o->kind == KIND_RSA) {
        scheme.scheme = TPM2_ALG_RSAPSS;
        scheme.details.rsapss.hashAlg = TPM2_ALG_SHA256;
    } else {
        scheme.scheme = TPM2_ALG_ECDSA;
        scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    }
    ticket.tag = TPM2_ST_HASHCHECK;
    ticket.hierarchy = TPM2_RH_NULL;
    if ((krc = load_cached(c, a->o, &h, trc)) != KM_OK)
        goto out;
    KM__TPM2_CALL(rc, Esys_Sign(c->esys, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                &a->digest, &scheme, &ticket, &sig));
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "Sign");
        goto out;
    }
    if (a->o->kind == KIND_RSA) {
        if (sig->sigAlg != TPM2_ALG_RSAPSS || sig->signature.rsapss.sig.size != RSA_BYTES) {
            krc = km__err(KM_E_BACKEND, "tpm2 Sign returned another signature algorithm");
            goto out;
        }
        memcpy(a->rsa, sig->signature.rsapss.sig.buffer, RSA_BYTES);
        a->rsa_len = RSA_BYTES;
        krc = KM_OK;
        goto out;
    }
    if (sig->sigAlg != TPM2_ALG_ECDSA) {
        krc = km__err(KM_E_BACKEND, "tpm2 Sign returned another signature algorithm");
        goto out;
    }
    {
        const TPM2B_ECC_PARAMETER *r = &sig->signature.ecdsa.signatureR;
        const TPM2B_ECC_PARAMETER *s = &sig->signature.ecdsa.signatureS;

        if (r->size > P256_FIELD || s->size > P256_FIELD) {
            krc = km__err(KM_E_CRYPTO, "tpm2 sign: bad signature values");
            goto out;
        }
        memset(a->rs, 0, sizeof a->rs);
        memcpy(a->rs + P256_FIELD - r->size, r->buffer, r->size);
        memcpy(a->rs + 2 * P256_FIELD - s->size, s->buffer, s->size);
        krc = KM_OK;
    }
out:
    Esys_Free(sig);
    if (krc != KM_OK)
        cache_failed(c, a->o, *trc);
    return krc;
}

static int tpm_sign(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len, uint8_t *sig,
                    size_t sig_cap, size_t *sig_len)
{
    tpm_obj *o = obj;
    struct sign_arg a;
    size_t n, dlen = 0;
    int rc;

    if (sig_len == NULL)
        return km__err(KM_E_INVALID, "tpm2 sign: sig_len is NULL");
    *sig_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "tpm2 sign: %s is NULL", o == NULL ? "obj" : "msg");
    if (o->kind != KIND_ECDSA && o->kind != KIND_RSA)
        return km__err(KM_E_USAGE, "tpm2: this key does not sign");
    if ((flags & ~KM_SIG_P1363) || (o->kind == KIND_RSA && flags != 0))
        return km__err(KM_E_INVALID, "tpm2 sign: unsupported flags for this key");
    n = o->kind == KIND_RSA ? RSA_BYTES : (flags & KM_SIG_P1363) ? 2 * P256_FIELD : P256_DER_MAX;
    if (sig == NULL || sig_cap < n) {
        *sig_len = n;
        return km__err(KM_E_BUFFER, "signature needs %zu bytes", n);
    }
    memset(&a, 0, sizeof a);
    a.o = o;
    if ((rc = km__digest("SHA256", msg != NULL ? msg : empty_msg, msg_len, a.digest.buffer,
                         sizeof a.digest.buffer, &dlen)) != KM_OK)
        return rc;
    a.digest.size = (UINT16)dlen;
    rc = km__tpm2_run(o->st->conn, op_sign, &a);
    if (rc != KM_OK)
        return rc;
    if (o->kind == KIND_RSA) {
        memcpy(sig, a.rsa, a.rsa_len);
        *sig_len = a.rsa_len;
        return KM_OK;
    }
    if (flags & KM_SIG_P1363) {
        memcpy(sig, a.rs, 2 * P256_FIELD);
        *sig_len = 2 * P256_FIELD;
        return KM_OK;
    }
    if (km__ecdsa_raw_to_der(a.rs, P256_FIELD, sig, sig_cap, sig_len) != KM_OK)
        return km__err(KM_E_CRYPTO, "tpm2 sign: cannot encode the signature");
    return KM_OK;
}

static int tpm_verify(void *obj, uint32_t flags, const uint8_t *msg, size_t msg_len,
                      const uint8_t *sig, size_t sig_len)
{
    tpm_obj *o = obj;

    if (o == NULL)
        return km__err(KM_E_INVALID, "tpm2 verify: obj is NULL");
    if ((o->kind != KIND_ECDSA && o->kind != KIND_RSA) || o->pkey == NULL)
        return km__err(KM_E_USAGE, "tpm2: this key does not verify signatures");
    if ((msg == NULL && msg_len > 0) || (sig == NULL && sig_len > 0))
        return km__err(KM_E_INVALID, "tpm2 verify: %s is NULL", msg == NULL ? "msg" : "sig");
    /* public-key work in software (prim.h), on the TPM key's public key */
    return km__pkey_verify(o->pkey, "SHA256", flags, msg, msg_len, sig, sig_len);
}

static int tpm_public_key(void *obj, uint8_t *out, size_t out_cap, size_t *out_len)
{
    tpm_obj *o = obj;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "tpm2 public_key: out_len is NULL");
    *out_len = 0;
    if (o == NULL || (o->kind != KIND_ECDSA && o->kind != KIND_RSA) || o->pkey == NULL)
        return km__err(KM_E_USAGE, "tpm2: this key has no public key");
    return km__pkey_spki(o->pkey, out, out_cap, out_len);
}

/* --------------------------------------------------------------------- ECDH */

struct agree_arg {
    tpm_obj *o;
    TPM2B_ECC_POINT peer;
    km_secret *z;      /* out: the 32-byte x coordinate of the shared point */
};

static int op_agree(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct agree_arg *a = varg;
    TPM2B_ECC_POINT *out = NULL;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_NONE;
    TSS2_RC rc;
    int krc;

    if ((krc = load_cached(c, a->o, &h, trc)) != KM_OK)
        goto out;
    /* the shared point comes back encrypted on the wire (salted session) */
    if ((rc = start_enc_session(c, &sess)) != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = km__tpm2_err(rc, "StartAuthSession (salted)");
        goto out;
    }
    KM__TPM2_CALL(rc, Esys_ECDH_ZGen(c->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &a->peer,
                                     &out));
    if (rc != TSS2_RC_SUCCESS) {
        *trc = rc;
        krc = (rc & 0xFFFF0000u) == 0 && (rc & TPM2_RC_FMT1)
                      && (rc & 0x3Fu) == (TPM2_RC_ECC_POINT & 0x3Fu)
                  ? km__err_native(KM_E_INVALID, KM_NATIVE_TSS2, (long)rc,
                                   "tpm2 ECDH: the peer point is not on the curve")
                  : km__tpm2_err(rc, "ECDH_ZGen");
        goto out;
    }
    if (out->point.x.size == 0 || out->point.x.size > P256_FIELD) {
        krc = km__err(KM_E_BACKEND, "tpm2 ECDH_ZGen returned a bad point");
        goto out;
    }
    if ((krc = km_secret_new(&a->z, P256_FIELD)) != KM_OK)
        goto out;
    memset(km_secret_data(a->z), 0, P256_FIELD);
    memcpy(km_secret_data(a->z) + P256_FIELD - out->point.x.size, out->point.x.buffer,
           out->point.x.size);
out:
    if (out != NULL) {
        km_memzero(out, sizeof *out);
        Esys_Free(out);
    }
    flush(c, &sess);
    if (krc != KM_OK)
        cache_failed(c, a->o, *trc);
    return krc;
}

static int tpm_agree(void *obj, const uint8_t *peer_spki, size_t peer_len, km_secret **out)
{
    tpm_obj *o = obj;
    struct agree_arg a;
    uint8_t point[1 + 2 * P256_FIELD];
    size_t plen = 0;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "tpm2 agree: out is NULL");
    *out = NULL;
    if (o == NULL || peer_spki == NULL || peer_len == 0 || peer_len > 4096)
        return km__err(KM_E_INVALID, "tpm2 agree: bad arguments");
    if (o->kind != KIND_ECDSA)
        return km__err(KM_E_USAGE, "tpm2: this key does not agree keys");
    if (!(o->pub.publicArea.objectAttributes & TPMA_OBJECT_DECRYPT))
        return km__err(KM_E_USAGE, "tpm2: this key was created for signing only (before ECDH "
                                   "support); create a new version to agree keys");
    if (km__pkey_peer_ec_point(peer_spki, peer_len, "P-256", point, sizeof point, &plen) != KM_OK
        || plen != sizeof point)
        return km__err(KM_E_INVALID, "tpm2 agree: the peer key is not a P-256 public key");
    memset(&a, 0, sizeof a);
    a.o = o;
    a.peer.point.x.size = P256_FIELD;
    memcpy(a.peer.point.x.buffer, point + 1, P256_FIELD);
    a.peer.point.y.size = P256_FIELD;
    memcpy(a.peer.point.y.buffer, point + 1 + P256_FIELD, P256_FIELD);
    rc = km__tpm2_run(o->st->conn, op_agree, &a);
    if (rc != KM_OK) {
        km_secret_free(a.z);
        return rc;
    }
    *out = a.z;
    return KM_OK;
}

/* --------------------------------------------------------------------- HMAC */

struct mac_arg {
    tpm_obj *o;
    const uint8_t *msg;
    size_t msg_len;
    uint8_t tag[32];   /* out */
};

static int op_mac(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct mac_arg *a = varg;
    TPM2B_MAX_BUFFER buf;
    TPM2B_DIGEST *res = NULL;
    TPM2B_AUTH seq_auth;
    ESYS_TR h = ESYS_TR_NONE, seq = ESYS_TR_NONE;
    const uint8_t *p = a->msg;
    size_t left = a->msg_len;
    TSS2_RC rc;
    int krc;

    memset(&seq_auth, 0, sizeof seq_auth);
    if ((krc = load_cached(c, a->o, &h, trc)) != KM_OK)
        goto out;
    if (left <= sizeof buf.buffer) {
        buf.size = (UINT16)left;
        if (left > 0)
            memcpy(buf.buffer, p, left);
        KM__TPM2_CALL(rc, Esys_HMAC(c->esys, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &buf, TPM2_ALG_SHA256, &res));
        if (rc != TSS2_RC_SUCCESS) {
            *trc = rc;
            krc = km__tpm2_err(rc, "HMAC");
            goto out;
        }
    } else {
        km__tpm2_cache_room(c, 1, a->o->id);   /* the sequence is an object too */
        KM__TPM2_CALL(rc, Esys_HMAC_Start(c->esys, h, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                          ESYS_TR_NONE, &seq_auth, TPM2_ALG_SHA256, &seq));
        if (rc != TSS2_RC_SUCCESS) {
            seq = ESYS_TR_NONE;
            *trc = rc;
            krc = km__tpm2_err(rc, "HMAC_Start");
            goto out;
        }
        while (left > sizeof buf.buffer) {
            buf.size = sizeof buf.buffer;
            memcpy(buf.buffer, p, sizeof buf.buffer);
            KM__TPM2_CALL(rc, Esys_SequenceUpdate(c->esys, seq, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                                  ESYS_TR_NONE, &buf));
            if (rc != TSS2_RC_SUCCESS) {
                *trc = rc;
                krc = km__tpm2_err(rc, "SequenceUpdate");
                goto out;
            }
            p += sizeof buf.buffer;
            left -= sizeof buf.buffer;
        }
        buf.size = (UINT16)left;
        memcpy(buf.buffer, p, left);
        KM__TPM2_CALL(rc, Esys_SequenceComplete(c->esys, seq, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                                ESYS_TR_NONE, &buf, ESYS_TR_RH_NULL, &res,
                                                NULL));
        if (rc != TSS2_RC_SUCCESS) {
            *trc = rc;
            krc = km__tpm2_err(rc, "SequenceComplete");
            goto out;
        }
        seq = ESYS_TR_NONE; /* SequenceComplete flushed it */
    }
    if (res->size != sizeof a->tag) {
        krc = km__err(KM_E_BACKEND, "tpm2 HMAC returned %u bytes", res->size);
        goto out;
    }
    memcpy(a->tag, res->buffer, sizeof a->tag);
    krc = KM_OK;
out:
    km_memzero(&buf, sizeof buf);
    Esys_Free(res);
    flush(c, &seq);
    if (krc != KM_OK)
        cache_failed(c, a->o, *trc);
    return krc;
}

static int tpm_mac(void *obj, const uint8_t *msg, size_t msg_len, uint8_t *tag, size_t tag_cap,
                   size_t *tag_len)
{
    tpm_obj *o = obj;
    struct mac_arg a;
    int rc;

    if (tag_len == NULL)
        return km__err(KM_E_INVALID, "tpm2 mac: tag_len is NULL");
    *tag_len = 0;
    if (o == NULL || (msg == NULL && msg_len > 0))
        return km__err(KM_E_INVALID, "tpm2 mac: %s is NULL", o == NULL ? "obj" : "msg");
    if (o->kind != KIND_HMAC)
        return km__err(KM_E_USAGE, "tpm2: this key does not compute MACs");
    if (tag == NULL || tag_cap < sizeof a.tag) {
        *tag_len = sizeof a.tag;
        return km__err(KM_E_BUFFER, "MAC needs %zu bytes", sizeof a.tag);
    }
    memset(&a, 0, sizeof a);
    a.o = o;
    a.msg = msg;
    a.msg_len = msg_len;
    rc = km__tpm2_run(o->st->conn, op_mac, &a);
    if (rc == KM_OK) {
        memcpy(tag, a.tag, sizeof a.tag);
        *tag_len = sizeof a.tag;
    }
    km_memzero(a.tag, sizeof a.tag);
    return rc;
}

/* -------------------------------------------------------------------- table */

/* ------------------------------------------------------------ keyslot */

/* Seals the vault master key to this TPM (under its storage primary, over a
 * salted encrypting session). The blob is a reference of kind KIND_SLOT. */
static int tpm_slot_seal(void *state, const km_secret *master, km_secret **out_blob)
{
    tpm_state *st = state;
    struct gen_arg a;
    struct policy_arg pa;
    int rc;

    if (out_blob == NULL)
        return km__err(KM_E_INVALID, "tpm2 keyslot: out_blob is NULL");
    *out_blob = NULL;
    if (st == NULL || master == NULL || km_secret_len(master) != 32)
        return km__err(KM_E_INVALID, "tpm2 keyslot: a 32-byte master key is needed");
    memset(&a, 0, sizeof a);
    a.kind = KIND_SLOT;
    a.key_len = 32;
    a.data = km_secret_data(master);
    if (st->pcrs != 0) {
        memset(&pa, 0, sizeof pa);
        pa.pcrs = st->pcrs;
        if ((rc = km__tpm2_run(st->conn, op_policy_digest, &pa)) != KM_OK)
            return rc;
        a.policy = &pa.digest;
    }
    rc = km__tpm2_run(st->conn, op_generate, &a);
    /* blob: the PCR mask (BE32, 0 = none), then the object's reference */
    if (rc == KM_OK && (rc = km_secret_new(out_blob, 4 + km_secret_len(a.ref))) == KM_OK) {
        km__be32_put(km_secret_data(*out_blob), st->pcrs);
        memcpy(km_secret_data(*out_blob) + 4, km_secret_data(a.ref), km_secret_len(a.ref));
    }
    km_secret_free(a.ref);
    return rc;
}

static int tpm_slot_unseal(void *state, const uint8_t *blob, size_t blob_len,
                           km_secret **out_master)
{
    tpm_state *st = state;
    tpm_obj o;
    struct unseal_arg a;
    int rc;

    if (out_master == NULL)
        return km__err(KM_E_INVALID, "tpm2 keyslot: out_master is NULL");
    *out_master = NULL;
    if (st == NULL || blob == NULL)
        return km__err(KM_E_INVALID, "tpm2 keyslot: bad arguments");
    if (blob_len < 4)
        return km__err(KM_E_CORRUPT, "tpm2 keyslot: blob too short");
    memset(&o, 0, sizeof o);
    o.st = st;
    o.kind = KIND_SLOT;
    if ((rc = ref_parse(blob + 4, blob_len - 4, KIND_SLOT, &o.pub, &o.priv)) != KM_OK)
        return rc;
    if (o.pub.publicArea.type != TPM2_ALG_KEYEDHASH
        || (o.pub.publicArea.objectAttributes & (TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT)))
        return km__err(KM_E_CORRUPT, "tpm2 keyslot: not a sealed data object");
    memset(&a, 0, sizeof a);
    a.o = &o;
    a.slot = 1;
    a.pcrs = km__be32_get(blob);
    if (a.pcrs > 0xffffffu)
        return km__err(KM_E_CORRUPT, "tpm2 keyslot: bad PCR selection");
    rc = km__tpm2_run(st->conn, op_unseal, &a);
    km_memzero(&o, sizeof o);
    if (rc == KM_E_INTEGRITY || rc == KM_E_AUTH) {
        /* the blob does not load under this TPM's seed: not this machine's slot */
        char keep[200];
        km_secret_free(a.key);
        snprintf(keep, sizeof keep, "%s", km_error_last()->message);
        return km__err_native(KM_E_AUTH, KM_NATIVE_TSS2, km_error_last()->native,
                              "tpm2 keyslot: this TPM cannot unseal it (%s)", keep);
    }
    if (rc != KM_OK) {
        km_secret_free(a.key);
        return rc;
    }
    *out_master = a.key;
    return KM_OK;
}

/* ------------------------------------------------------------ random */

struct rand_arg {
    uint8_t *out;
    size_t len;
};

/* TPM2_GetRandom returns at most a digest's length per call: loop. */
static int op_random(km__tpm2_conn *c, void *varg, TSS2_RC *trc)
{
    struct rand_arg *a = varg;
    size_t got = 0;

    while (got < a->len) {
        TPM2B_DIGEST *d = NULL;
        size_t want = a->len - got > 32 ? 32 : a->len - got;
        TSS2_RC rc = Esys_GetRandom(c->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    (UINT16)want, &d);
        if (rc != TSS2_RC_SUCCESS || d == NULL || d->size == 0 || d->size > want) {
            Esys_Free(d);
            *trc = rc;
            return rc != TSS2_RC_SUCCESS ? km__tpm2_err(rc, "TPM2_GetRandom")
                                         : km__err(KM_E_BACKEND, "TPM2_GetRandom gave no bytes");
        }
        memcpy(a->out + got, d->buffer, d->size);
        got += d->size;
        km_memzero(d->buffer, d->size);
        Esys_Free(d);
    }
    return KM_OK;
}

/* km_random with this protection: the TPM's generator. */
static int tpm_random(void *state, uint8_t *out, size_t len)
{
    tpm_state *st = state;
    struct rand_arg a;
    int rc;

    if (st == NULL || out == NULL || len == 0)
        return km__err(KM_E_INVALID, "tpm2 random: bad arguments");
    a.out = out;
    a.len = len;
    rc = km__tpm2_run(st->conn, op_random, &a);
    if (rc != KM_OK)
        km_memzero(out, len);
    return rc;
}

const km_backend_ops km__tpm2_backend = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "tpm2",
    .caps = KM_BACKEND_CAP_SYMMETRIC | KM_BACKEND_CAP_ASYMMETRIC,
    .open = tpm_open,
    .close = tpm_close,
    .generate = tpm_generate,
    .import = NULL,
    .destroy = NULL, /* the TPM holds nothing: the core deletes the blobs */
    .load = tpm_load,
    .unload = tpm_unload,
    .aead_seal = tpm_aead_seal,
    .aead_open = tpm_aead_open,
    .sign = tpm_sign,
    .verify = tpm_verify,
    .mac = tpm_mac,
    .wrap = tpm_wrap,
    .unwrap = tpm_unwrap,
    .derive = NULL,
    .agree = tpm_agree,
    .public_key = tpm_public_key,
    .ctl = NULL,
    .slot_seal = tpm_slot_seal,
    .slot_unseal = tpm_slot_unseal,
    .random = tpm_random,
};
