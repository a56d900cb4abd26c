/* bench_hw.c - the hardware pairs of `make bench`: libkm on a PKCS#11 token
 * (SoftHSM2) against direct C_Encrypt / C_Sign on the same token, and libkm
 * on a TPM (swtpm) against direct Esys_Sign. The token and the TPMs are made
 * here in a scratch directory and stopped at the end. A pair whose backend is
 * not built prints "skipped=". */
#include "bench_hw.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <km.h>

#include "benchutil.h"
#include "../testdev.h"

#define MSG_LEN 64

/* ---------------------------------------------------------------- PKCS#11 */

#ifdef KM_HAVE_PKCS11
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#define P11_MODULE TU_P11_MODULE
#define P11_LABEL "kmbench"
#define P11_PIN "4321"

typedef struct p11_km {
    km_key *key;
    uint8_t msg[MSG_LEN], out[MSG_LEN + 64];
} p11_km;

typedef struct p11_raw {
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE aes, ec;
    uint8_t msg[MSG_LEN], out[MSG_LEN + 64];
} p11_raw;

static int km_p11_encrypt(void *arg, uint64_t n)
{
    p11_km *k = arg;
    size_t len;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_encrypt(k->key, k->msg, MSG_LEN, NULL, 0, k->out, sizeof k->out, &len));
    return 0;
}

static int km_p11_sign(void *arg, uint64_t n)
{
    p11_km *k = arg;
    size_t len;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_sign(k->key, KM_SIG_RAW, k->msg, MSG_LEN, k->out, sizeof k->out, &len));
    return 0;
}

/* Direct: C_EncryptInit(CKM_AES_GCM, a fresh random 12-byte IV) + C_Encrypt. */
static int raw_p11_encrypt(void *arg, uint64_t n)
{
    p11_raw *r = arg;
    uint8_t iv[12];
    CK_GCM_PARAMS gp;
    CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof gp };
    CK_ULONG len;
    uint64_t i;

    for (i = 0; i < n; i++) {
        if (RAND_bytes(iv, sizeof iv) != 1)
            bench_die("RAND_bytes failed");
        memset(&gp, 0, sizeof gp);
        gp.pIv = iv;
        gp.ulIvLen = sizeof iv;
        gp.ulIvBits = 96;
        gp.ulTagBits = 128;
        len = sizeof r->out;
        if (r->fl->C_EncryptInit(r->s, &m, r->aes) != CKR_OK
            || r->fl->C_Encrypt(r->s, r->msg, MSG_LEN, r->out, &len) != CKR_OK)
            bench_die("raw C_Encrypt failed");
    }
    return 0;
}

/* Direct: SHA-256 in software (as libkm does) + C_SignInit(CKM_ECDSA) + C_Sign. */
static int raw_p11_sign(void *arg, uint64_t n)
{
    p11_raw *r = arg;
    CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
    uint8_t dg[32];
    unsigned int dl;
    CK_ULONG len;
    uint64_t i;

    for (i = 0; i < n; i++) {
        if (EVP_Digest(r->msg, MSG_LEN, dg, &dl, EVP_sha256(), NULL) != 1)
            bench_die("SHA-256 failed");
        len = sizeof r->out;
        if (r->fl->C_SignInit(r->s, &m, r->ec) != CKR_OK
            || r->fl->C_Sign(r->s, dg, dl, r->out, &len) != CKR_OK)
            bench_die("raw C_Sign failed");
    }
    return 0;
}

static void raw_p11_open(p11_raw *r)
{
    CK_SLOT_ID slots[16];
    CK_ULONG ns = 16, i;
    CK_TOKEN_INFO ti;
    char label[32];
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG klen = 32;
    CK_MECHANISM kg = { CKM_AES_KEY_GEN, NULL, 0 }, ecg = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    /* persistent private token objects, as libkm's keys are (and must be:
     * they outlive the process). SoftHSM2's file store re-reads a token
     * object's generation from its file on every use, a session object
     * (CKA_TOKEN=FALSE) skips that: a baseline of session objects would
     * measure another kind of object, not libkm's overhead. */
    CK_ATTRIBUTE aes_t[] = { { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &yes, 1 },
                             { CKA_SENSITIVE, &yes, 1 }, { CKA_EXTRACTABLE, &no, 1 },
                             { CKA_ENCRYPT, &yes, 1 }, { CKA_VALUE_LEN, &klen, sizeof klen } };
    CK_ATTRIBUTE pub_t[] = { { CKA_TOKEN, &yes, 1 },
                             { CKA_EC_PARAMS, (void *)(uintptr_t)p256, sizeof p256 },
                             { CKA_VERIFY, &yes, 1 } };
    CK_ATTRIBUTE prv_t[] = { { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &yes, 1 },
                             { CKA_SENSITIVE, &yes, 1 }, { CKA_EXTRACTABLE, &no, 1 },
                             { CKA_SIGN, &yes, 1 } };
    CK_OBJECT_HANDLE pub;
    CK_RV rv;

    if ((r->fl = p11_kit_module_load(P11_MODULE, 0)) == NULL
        || p11_kit_module_initialize(r->fl) != CKR_OK
        || r->fl->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
        bench_die("cannot load %s", P11_MODULE);
    memset(label, ' ', sizeof label);
    memcpy(label, P11_LABEL, strlen(P11_LABEL));
    for (i = 0; i < ns; i++)
        if (r->fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK && memcmp(ti.label, label, 32) == 0)
            break;
    if (i == ns || r->fl->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                        &r->s) != CKR_OK)
        bench_die("no bench token");
    rv = r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)P11_PIN, strlen(P11_PIN));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        bench_die("C_Login failed");
    if (r->fl->C_GenerateKey(r->s, &kg, aes_t, 6, &r->aes) != CKR_OK
        || r->fl->C_GenerateKeyPair(r->s, &ecg, pub_t, 3, prv_t, 5, &pub, &r->ec) != CKR_OK)
        bench_die("raw key generation failed");
    RAND_bytes(r->msg, sizeof r->msg);
}

void bench_hw_pkcs11(const char *dir, bench_pair_fn pair, int want_enc, int want_sign)
{
    char vdir[4300], config[512];
    tu_softhsm hsm;
    km_key_options o = KM_KEY_OPTIONS_INIT;
    p11_km ke, ks;
    p11_raw r;
    km_ctx *ctx;

    if (access(P11_MODULE, R_OK) != 0) {
        if (want_enc)
            printf("BENCH pkcs11-encrypt skipped=softhsm2-not-installed\n");
        if (want_sign)
            printf("BENCH pkcs11-sign skipped=softhsm2-not-installed\n");
        return;
    }
    if (tu_dev_softhsm_setup(&hsm, dir) != 0
        || tu_dev_softhsm_token(P11_LABEL, "5678", P11_PIN) != 0)
        bench_die("SoftHSM2 token: %s", tu_dev_error());
    snprintf(vdir, sizeof vdir, "%s/p11vault", dir);
    ctx = bench_vault_open(vdir, 0);
    snprintf(config, sizeof config, "module=%s;token=pkcs11:token=%s;pin=%s", P11_MODULE,
             P11_LABEL, P11_PIN);
    BENCH_CHECK(km_vault_backend_set(ctx, "pkcs11", config));
    o.protection = "pkcs11";
    memset(&ke, 0, sizeof ke);
    memset(&ks, 0, sizeof ks);
    BENCH_CHECK(km_key_create(&ke.key, ctx, "p11-aes", KM_KEY_AES_256_GCM, &o));
    BENCH_CHECK(km_key_create(&ks.key, ctx, "p11-ec", KM_KEY_EC_P256, &o));
    RAND_bytes(ke.msg, sizeof ke.msg);
    memcpy(ks.msg, ke.msg, sizeof ks.msg);
    memset(&r, 0, sizeof r);
    raw_p11_open(&r);
    memcpy(r.msg, ke.msg, sizeof r.msg);
    if (want_enc)
        pair("pkcs11-encrypt", km_p11_encrypt, &ke, raw_p11_encrypt, &r);
    if (want_sign)
        pair("pkcs11-sign", km_p11_sign, &ks, raw_p11_sign, &r);
    r.fl->C_CloseSession(r.s);
    p11_kit_module_finalize(r.fl);
    p11_kit_module_release(r.fl);
    km_key_free(ke.key);
    km_key_free(ks.key);
    km_close(ctx);
}
#else
void bench_hw_pkcs11(const char *dir, bench_pair_fn pair, int want_enc, int want_sign)
{
    (void)dir;
    (void)pair;
    if (want_enc)
        printf("BENCH pkcs11-encrypt skipped=pkcs11-backend-not-built\n");
    if (want_sign)
        printf("BENCH pkcs11-sign skipped=pkcs11-backend-not-built\n");
}
#endif

/* -------------------------------------------------------------------- TPM */

#ifdef KM_HAVE_TPM2
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

typedef struct tpm_raw {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR key;
    TPM2B_DIGEST dg;
} tpm_raw;

typedef struct tpm_km {
    km_key *key;
    uint8_t msg[MSG_LEN], sig[KM_SIGNATURE_MAX];
} tpm_km;

static int km_tpm_sign(void *arg, uint64_t n)
{
    tpm_km *k = arg;
    size_t len;
    uint64_t i;
    for (i = 0; i < n; i++)
        BENCH_CHECK(km_sign(k->key, KM_SIG_RAW, k->msg, MSG_LEN, k->sig, sizeof k->sig, &len));
    return 0;
}

/* Direct: SHA-256 in software (as libkm does) + Esys_Sign with a null ticket. */
static int raw_tpm_sign(void *arg, uint64_t n)
{
    tpm_raw *r = arg;
    TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_ECDSA,
                               .details = { .ecdsa = { .hashAlg = TPM2_ALG_SHA256 } } };
    TPMT_TK_HASHCHECK ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
    TPMT_SIGNATURE *sig = NULL;
    unsigned int dl;
    uint64_t i;

    for (i = 0; i < n; i++) {
        uint8_t msg[MSG_LEN] = { 1 };
        if (EVP_Digest(msg, MSG_LEN, r->dg.buffer, &dl, EVP_sha256(), NULL) != 1)
            bench_die("SHA-256 failed");
        r->dg.size = (UINT16)dl;
        if (Esys_Sign(r->esys, r->key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &r->dg,
                      &scheme, &ticket, &sig) != TSS2_RC_SUCCESS)
            bench_die("raw Esys_Sign failed");
        Esys_Free(sig);
    }
    return 0;
}

static void raw_tpm_open(tpm_raw *r, const char *tcti)
{
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_PUBLIC tmpl;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcrs;

    memset(&sens, 0, sizeof sens);
    memset(&tmpl, 0, sizeof tmpl);
    memset(&outside, 0, sizeof outside);
    memset(&pcrs, 0, sizeof pcrs);
    if (Tss2_TctiLdr_Initialize(tcti, &r->tcti) != TSS2_RC_SUCCESS
        || Esys_Initialize(&r->esys, r->tcti, NULL) != TSS2_RC_SUCCESS)
        bench_die("cannot connect to %s", tcti);
    /* a primary ECDSA P-256 signing key straight under the owner hierarchy */
    tmpl.publicArea.type = TPM2_ALG_ECC;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                                       | TPMA_OBJECT_SENSITIVEDATAORIGIN
                                       | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT
                                       | TPMA_OBJECT_NODA;
    tmpl.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    tmpl.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    if (Esys_CreatePrimary(r->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &r->key, NULL, NULL,
                           NULL, NULL) != TSS2_RC_SUCCESS)
        bench_die("raw CreatePrimary failed");
}

void bench_hw_tpm2(const char *dir, bench_pair_fn pair)
{
    char vdir[4300];
    km_key_options o = KM_KEY_OPTIONS_INIT;
    tpm_km k;
    tpm_raw r;
    km_ctx *ctx;
    tu_swtpm a, b;

    if (system("command -v swtpm >/dev/null 2>&1 && command -v tpm2_dictionarylockout "
               ">/dev/null 2>&1") != 0) {
        printf("BENCH tpm2-sign skipped=swtpm-not-installed\n");
        return;
    }
    setenv("TSS2_LOG", "all+NONE", 1);
    /* swtpm serves one connection: libkm's TPM and the direct caller's are two
     * instances of the same software TPM */
    if (tu_dev_swtpm_make(&a, dir, "tpm-km") != 0 || tu_dev_swtpm_make(&b, dir, "tpm-raw") != 0)
        bench_die("cannot start swtpm: %s", tu_dev_error());
    snprintf(vdir, sizeof vdir, "%s/tpmvault", dir);
    ctx = bench_vault_open(vdir, 0);
    BENCH_CHECK(km_vault_backend_set(ctx, "tpm2", a.config));
    o.protection = "tpm2";
    memset(&k, 0, sizeof k);
    BENCH_CHECK(km_key_create(&k.key, ctx, "tpm-ec", KM_KEY_EC_P256, &o));
    memset(&r, 0, sizeof r);
    raw_tpm_open(&r, b.tcti);
    pair("tpm2-sign", km_tpm_sign, &k, raw_tpm_sign, &r);
    Esys_FlushContext(r.esys, r.key);
    Esys_Finalize(&r.esys);
    Tss2_TctiLdr_Finalize(&r.tcti);
    km_key_free(k.key);
    km_close(ctx);
    if (tu_dev_swtpm_stop(&a) != 0 || tu_dev_swtpm_stop(&b) != 0)
        bench_die("stopping swtpm: %s", tu_dev_error());
}
#else
void bench_hw_tpm2(const char *dir, bench_pair_fn pair)
{
    (void)dir;
    (void)pair;
    printf("BENCH tpm2-sign skipped=tpm2-backend-not-built\n");
}
#endif
