/* custom_backend.c - a minimal key backend ("memkeys") registered at run time: the model to copy for backend authors. */
/*
 * What a backend is (include/km/sys/backend.h): a table of functions,
 * km_backend_ops, that holds key material somewhere (a token, a TPM, a cloud
 * KMS, ... here: a table in this process's memory) and performs the primitive
 * operations with it. The libkm core does everything else *before* it calls
 * the backend: the key's lifecycle state and dates, its usage mask, the
 * policy, access control, audit, nonce generation, the ciphertext format. A
 * backend never sees a request that was refused.
 *
 * The core stores, sealed in the vault catalog, only what generate() returns:
 * an opaque *reference*. For an HSM that is an object id; here it is a random
 * 16-byte handle into the "device" below. Because the device is this
 * process's memory, keys of this backend vanish when the process exits (as
 * SQLite's memvfs.c keeps a database in memory): a real backend keeps them in
 * its device, or returns a reference that carries the material wrapped.
 *
 * This backend supports one key type, AES-256-GCM, with OpenSSL EVP for the
 * cipher and libkm's secure memory (km_secret) for the material. Every other
 * operation is left NULL, which the core reports as KM_E_UNSUPPORTED.
 *
 * Usage: custom_backend [DIR]   (a temporary directory by default)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <km.h>
#include <km/sys/backend.h> /* the backend author's API */

/* ------------------------------------------------------------------ the "device" */

#define MEM_SLOTS 64

/* One key held by the device: a handle (what the vault stores) and the material. */
struct mem_slot {
    uint8_t handle[16];
    km_secret *key; /* 32 bytes in libkm's locked, non-dumpable memory; NULL = free slot */
};

/* The device is process-wide; every vault that opens the backend shares it. */
static struct mem_device {
    pthread_mutex_t mu;
    struct mem_slot slot[MEM_SLOTS];
    int instances; /* open() minus close(): for the demonstration below */
} device = { PTHREAD_MUTEX_INITIALIZER, { { { 0 }, NULL } }, 0 };

/* The slot of a handle, or NULL. Called with device.mu held. */
static struct mem_slot *find_slot(const uint8_t *handle, size_t len)
{
    int i;
    if (len != 16)
        return NULL;
    for (i = 0; i < MEM_SLOTS; i++)
        if (device.slot[i].key != NULL && memcmp(device.slot[i].handle, handle, 16) == 0)
            return &device.slot[i];
    return NULL;
}

/* Wipes and frees every key of the device. */
static void mem_device_wipe(void)
{
    int i;
    pthread_mutex_lock(&device.mu);
    for (i = 0; i < MEM_SLOTS; i++) {
        km_secret_free(device.slot[i].key);
        device.slot[i].key = NULL;
    }
    pthread_mutex_unlock(&device.mu);
}

/* Reports an OpenSSL failure with its native code (never any key bytes). */
static int ossl_error(const char *what)
{
    return km_backend_error(KM_E_CRYPTO, KM_NATIVE_OPENSSL, ERR_get_error(), "memkeys: %s failed",
                            what);
}

/* ------------------------------------------------------------------ instance */

/* open/close: one instance per open vault. `config` is what the administrator
 * stored with km_vault_backend_set(ctx, "memkeys", ...); unused here. */
static int mem_open(void **out_state, const char *config)
{
    (void)config;
    pthread_mutex_lock(&device.mu);
    device.instances++;
    pthread_mutex_unlock(&device.mu);
    *out_state = &device;
    return KM_OK;
}

static void mem_close(void *state)
{
    (void)state;
    pthread_mutex_lock(&device.mu);
    device.instances--;
    pthread_mutex_unlock(&device.mu);
}

/* ------------------------------------------------------------------ material */

/* generate (required): new material for a key version; returns its reference. */
static int mem_generate(void *state, const km_backend_keyspec *spec, km_secret **out_ref)
{
    struct mem_slot *s = NULL;
    km_secret *key = NULL;
    uint8_t handle[16];
    int i, rc;

    (void)state;
    if (spec->type != KM_KEY_AES_256_GCM)
        return km_backend_error(KM_E_UNSUPPORTED, KM_NATIVE_NONE, 0,
                                "memkeys: only aes-256-gcm keys");
    if ((rc = km_secret_new(&key, 32)) != KM_OK)
        return rc;
    /* the material and the handle come from OpenSSL's DRBG */
    if (RAND_priv_bytes(km_secret_data(key), 32) != 1 || RAND_bytes(handle, sizeof handle) != 1) {
        km_secret_free(key);
        return ossl_error("RAND_bytes");
    }
    pthread_mutex_lock(&device.mu);
    for (i = 0; i < MEM_SLOTS && s == NULL; i++)
        if (device.slot[i].key == NULL)
            s = &device.slot[i];
    if (s != NULL) {
        memcpy(s->handle, handle, sizeof handle);
        s->key = key;
        key = NULL;
    }
    pthread_mutex_unlock(&device.mu);
    if (s == NULL) {
        km_secret_free(key);
        return km_backend_error(KM_E_FULL, KM_NATIVE_NONE, 0, "memkeys: the device is full");
    }
    /* the reference is what the core seals into the vault catalog */
    return km_secret_from(out_ref, handle, sizeof handle);
}

/* destroy (optional): the material behind a reference is gone for good. */
static int mem_destroy(void *state, const km_backend_keyspec *spec, const uint8_t *ref, size_t ref_len)
{
    struct mem_slot *s;
    (void)state;
    (void)spec;
    pthread_mutex_lock(&device.mu);
    if ((s = find_slot(ref, ref_len)) != NULL) {
        km_secret_free(s->key); /* zeroes the material */
        s->key = NULL;
    }
    pthread_mutex_unlock(&device.mu);
    return KM_OK; /* already gone counts as destroyed */
}

/* A loaded key version: its own copy of the material, used by many threads. */
struct mem_obj {
    km_secret *key;
};

/* load (required): make a reference ready for use. The core keeps the object
 * for as long as the key is in use, so the hot path does no lookup. */
static int mem_load(void *state, const km_backend_keyspec *spec, const uint8_t *ref, size_t ref_len,
                    void **out_obj)
{
    struct mem_slot *s;
    struct mem_obj *obj;
    int rc;

    (void)state;
    (void)spec;
    if ((obj = calloc(1, sizeof *obj)) == NULL)
        return KM_E_NOMEM;
    pthread_mutex_lock(&device.mu);
    s = find_slot(ref, ref_len);
    rc = s != NULL ? km_secret_from(&obj->key, km_secret_data(s->key), km_secret_len(s->key))
                   : km_backend_error(KM_E_NOTFOUND, KM_NATIVE_NONE, 0,
                                      "memkeys: no such key in the device (another process?)");
    pthread_mutex_unlock(&device.mu);
    if (rc != KM_OK) {
        free(obj);
        return rc;
    }
    *out_obj = obj;
    return KM_OK;
}

/* unload (required): release and wipe a loaded object. */
static void mem_unload(void *state, void *o)
{
    struct mem_obj *obj = o;
    (void)state;
    km_secret_free(obj->key);
    free(obj);
}

/* ------------------------------------------------------------------ operations */

/* aead_seal: AES-256-GCM with the nonce the core drew; aad = aad1 (the libkm
 * header) followed by aad2 (the caller's). */
static int mem_seal(void *o, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                    const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                    uint8_t *out, uint8_t tag[16])
{
    struct mem_obj *obj = o;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len, ok;

    ok = c != NULL && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, km_secret_data(obj->key), nonce)
         && EVP_EncryptUpdate(c, NULL, &len, aad1, (int)aad1_len)
         && (aad2_len == 0 || EVP_EncryptUpdate(c, NULL, &len, aad2, (int)aad2_len))
         && (in_len == 0 || EVP_EncryptUpdate(c, out, &len, in, (int)in_len))
         && EVP_EncryptFinal_ex(c, out + in_len, &len)
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
    EVP_CIPHER_CTX_free(c);
    return ok ? KM_OK : ossl_error("AES-GCM seal");
}

/* aead_open: KM_E_INTEGRITY when the tag does not match, and `out` zeroed. */
static int mem_open_aead(void *o, const uint8_t nonce[12], const uint8_t *aad1, size_t aad1_len,
                         const uint8_t *aad2, size_t aad2_len, const uint8_t *in, size_t in_len,
                         const uint8_t tag[16], uint8_t *out)
{
    struct mem_obj *obj = o;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t t[16];
    int len, ok;

    memcpy(t, tag, 16);
    ok = c != NULL && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, km_secret_data(obj->key), nonce)
         && EVP_DecryptUpdate(c, NULL, &len, aad1, (int)aad1_len)
         && (aad2_len == 0 || EVP_DecryptUpdate(c, NULL, &len, aad2, (int)aad2_len))
         && (in_len == 0 || EVP_DecryptUpdate(c, out, &len, in, (int)in_len))
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, t);
    if (ok && EVP_DecryptFinal_ex(c, out + in_len, &len) <= 0) {
        EVP_CIPHER_CTX_free(c);
        km_memzero(out, in_len); /* release nothing of a forgery */
        return KM_E_INTEGRITY;
    }
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        km_memzero(out, in_len);
        return ossl_error("AES-GCM open");
    }
    return KM_OK;
}

/* The table: `static const`, designated initializers, version first. */
static const km_backend_ops memkeys_ops = {
    .version = KM_BACKEND_OPS_VERSION,
    .name = "memkeys", /* the `protection` of its keys */
    .caps = KM_BACKEND_CAP_SYMMETRIC,
    .open = mem_open,
    .close = mem_close,
    .generate = mem_generate,
    .destroy = mem_destroy,
    .load = mem_load,
    .unload = mem_unload,
    .aead_seal = mem_seal,
    .aead_open = mem_open_aead,
    /* sign, verify, mac, wrap, unwrap, derive, agree, ...: NULL = KM_E_UNSUPPORTED */
};

/* ------------------------------------------------------------------ an application using it */

static int fail(const char *what, int rc)
{
    fprintf(stderr, "custom_backend: %s: %s (%s)\n", what, km_err_name(rc), km_error_last()->message);
    return 1;
}

static int run(km_ctx *ctx)
{
    km_key_options ko = KM_KEY_OPTIONS_INIT;
    const char *msg = "held by a custom backend";
    uint8_t ct[128], pt[128];
    size_t ct_len, pt_len;
    km_keyinfo *info = NULL;
    km_key *key = NULL, *ec = NULL;
    int rc;

    ko.protection = "memkeys"; /* this key's material lives in our backend */
    if ((rc = km_key_create(&key, ctx, "mem-key", KM_KEY_AES_256_GCM, &ko)) != KM_OK)
        return fail("km_key_create", rc);
    if ((rc = km_key_info(&info, key)) != KM_OK) {
        km_key_free(key);
        return fail("km_key_info", rc);
    }
    printf("created '%s' with protection '%s'\n", km_keyinfo_name(info), km_keyinfo_protection(info));
    rc = strcmp(km_keyinfo_protection(info), "memkeys") == 0 ? KM_OK : KM_E_INTERNAL;
    km_keyinfo_free(info);
    if (rc != KM_OK)
        goto err;

    /* encrypt and decrypt: the core builds the header and draws the nonce, the backend seals */
    if ((rc = km_encrypt(key, (const uint8_t *)msg, strlen(msg), (const uint8_t *)"ctx", 3, ct, sizeof ct,
                         &ct_len)) != KM_OK) {
        fail("km_encrypt", rc);
        goto err;
    }
    if ((rc = km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"ctx", 3, pt, sizeof pt, &pt_len)) != KM_OK) {
        fail("km_decrypt", rc);
        goto err;
    }
    if (pt_len != strlen(msg) || memcmp(pt, msg, pt_len) != 0) {
        fprintf(stderr, "custom_backend: the round trip changed the data\n");
        goto err;
    }
    /* a flipped bit is caught by the backend's GCM tag check */
    ct[ct_len - 1] ^= 1;
    rc = km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"ctx", 3, pt, sizeof pt, &pt_len);
    if (rc != KM_E_INTEGRITY) {
        fprintf(stderr, "custom_backend: a tampered ciphertext gave %s\n", km_err_name(rc));
        goto err;
    }
    /* rotation asks the backend for new material; old data keeps decrypting */
    ct[ct_len - 1] ^= 1;
    if ((rc = km_key_rotate(key, NULL)) != KM_OK) {
        fail("km_key_rotate", rc);
        goto err;
    }
    if ((rc = km_decrypt(ctx, 0, ct, ct_len, (const uint8_t *)"ctx", 3, pt, sizeof pt, &pt_len)) != KM_OK) {
        fail("km_decrypt after rotation", rc);
        goto err;
    }
    /* the core refuses before dispatch: a usage the key lacks never reaches the backend */
    rc = km_sign(key, 0, (const uint8_t *)msg, strlen(msg), ct, sizeof ct, &ct_len);
    if (rc != KM_E_USAGE) {
        fprintf(stderr, "custom_backend: signing with an AES key gave %s\n", km_err_name(rc));
        goto err;
    }
    /* a key type the backend does not support: its generate() says so */
    rc = km_key_create(&ec, ctx, "mem-ec", KM_KEY_EC_P256, &ko);
    if (rc != KM_E_UNSUPPORTED) {
        fprintf(stderr, "custom_backend: an EC key in memkeys gave %s\n", km_err_name(rc));
        km_key_free(ec);
        goto err;
    }
    printf("encrypted, decrypted, rotated; tampering and unsupported requests refused\n");
    km_key_free(key);
    return 0;
err:
    km_key_free(key);
    return 1;
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/km-backend.XXXXXX", uri[300], cmd[330];
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    const char *pass = "an example passphrase";
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_ctx *ctx = NULL;
    int rc, status;

    if (dir == NULL)
        return 1;
    /* register once per process, before the vaults that use it are opened */
    if ((rc = km_backend_register(&memkeys_ops)) != KM_OK)
        return fail("km_backend_register", rc);
    snprintf(uri, sizeof uri, "lmdb:%s/vault", dir);
    o.flags = KM_OPEN_CREATE;
    o.passphrase = (const uint8_t *)pass;
    o.passphrase_len = strlen(pass);
    o.kdf_cost = KM_KDF_COST_MIN; /* an example: real vaults keep the default cost */
    if ((rc = km_open(&ctx, uri, &o)) != KM_OK)
        return fail("km_open", rc);
    status = run(ctx);
    km_close(ctx);
    if (device.instances != 0) {
        fprintf(stderr, "custom_backend: %d backend instance(s) left open\n", device.instances);
        status = 1;
    }
    if ((rc = km_backend_unregister("memkeys")) != KM_OK)
        status = fail("km_backend_unregister", rc);
    mem_device_wipe(); /* the process is done with its keys: power the "device" off */
    if (argc <= 1) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            status = 1;
    }
    if (status == 0)
        printf("custom_backend: all steps passed\n");
    return status;
}
