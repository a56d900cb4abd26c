/* cmd_ops.c - kmctl commands of the operations added by issue 23: random,
 * rsa-encrypt and rsa-decrypt (RSA-OAEP with a label), --oaep-digest,
 * datakey decrypt, datakey-pair. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kmctl.h"

/* ------------------------------------------------------------- random */

int kmctl_cmd_random(struct kmctl *k, const struct kmctl_args *a)
{
    uint64_t n = 0;
    uint8_t *buf = NULL;
    char *hex = NULL;
    int rc;

    if (kmctl_parse_uint(a->pos[0], KM_RANDOM_MAX, &n) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "random: N must be 1 to %u bytes, not '%s'",
                           (unsigned)KM_RANDOM_MAX, a->pos[0]);
    buf = malloc((size_t)n);
    if (buf == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "random: out of memory");
    rc = km_random(k->ctx, a->val[OPT_PROTECTION], buf, (size_t)n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "drawing %llu random bytes from %s", (unsigned long long)n,
                             a->val[OPT_PROTECTION] != NULL ? a->val[OPT_PROTECTION]
                                                            : "the DRBG");
        goto out;
    }
    if (a->val[OPT_HEX] != NULL) {
        hex = malloc(2 * (size_t)n + 2);
        if (hex == NULL) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "random: out of memory");
            goto out;
        }
        kmctl_hex(buf, (size_t)n, hex);
        hex[2 * n] = '\n';
        rc = kmctl_write(hex, 2 * (size_t)n + 1);
    } else {
        rc = a->val[OPT_TEXT] != NULL ? kmctl_text_write(buf, (size_t)n)
                                      : kmctl_write(buf, (size_t)n);
    }
out:
    if (buf != NULL)
        km_memzero(buf, (size_t)n);
    if (hex != NULL)
        km_memzero(hex, 2 * (size_t)n + 2);
    free(buf);
    free(hex);
    return rc;
}

/* -------------------------------------------------------------- RSA-OAEP */

int kmctl_oaep_digest(const struct kmctl_args *a, km_key_options *o)
{
    const char *d = a->val[OPT_OAEP_DIGEST];

    if (d == NULL)
        return KMCTL_EXIT_OK;
    if (strcasecmp(d, "sha256") == 0)
        o->rsa_oaep_digest = 256;
    else if (strcasecmp(d, "sha384") == 0)
        o->rsa_oaep_digest = 384;
    else if (strcasecmp(d, "sha512") == 0)
        o->rsa_oaep_digest = 512;
    else
        return kmctl_error(KMCTL_EXIT_USAGE, "--oaep-digest must be sha256, sha384 or sha512, "
                           "not '%s'", d);
    return KMCTL_EXIT_OK;
}

/* Shared by rsa-encrypt and rsa-decrypt: stdin through one of the two calls. */
static int rsa_oaep(struct kmctl *k, const struct kmctl_args *a, int enc)
{
    struct kmctl_buf in = { NULL, 0, 0 };
    const uint8_t *label = (const uint8_t *)a->val[OPT_LABEL];
    size_t label_len = label != NULL ? strlen(a->val[OPT_LABEL]) : 0, n = 0;
    uint32_t version = a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
    uint8_t out[KM_SIGNATURE_MAX];
    km_key *key = NULL;
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_read_fd(STDIN_FILENO, enc ? "the plaintext" : "the ciphertext",
                            KM_SIGNATURE_MAX, &in)) != KMCTL_EXIT_OK)
        goto out;
    if (enc)
        rc = km_rsa_oaep_encrypt(key, version, label, label_len, in.p, in.len, out, sizeof out,
                                 &n);
    else
        rc = km_rsa_oaep_decrypt(key, version, label, label_len, in.p, in.len, out, sizeof out,
                                 &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "RSA-OAEP %s with key '%s'", enc ? "encryption" : "decryption",
                             a->pos[0]);
        goto out;
    }
    rc = n > 0 ? kmctl_write(out, n) : KMCTL_EXIT_OK;
out:
    km_memzero(out, sizeof out);
    if (in.p != NULL)
        km_memzero(in.p, in.len);
    kmctl_buf_free(&in);
    km_key_free(key);
    return rc;
}

int kmctl_cmd_rsa_encrypt(struct kmctl *k, const struct kmctl_args *a)
{
    return rsa_oaep(k, a, 1);
}

int kmctl_cmd_rsa_decrypt(struct kmctl *k, const struct kmctl_args *a)
{
    return rsa_oaep(k, a, 0);
}

/* ------------------------------------------------------------ data keys */

/* kmctl datakey decrypt [--aad TEXT] [--plaintext-file FILE] < wrapped: a wrapped data
 * key (K D) or a data key pair's wrapped private key (K P, PKCS#8 DER), binary or km1:;
 * the key to FILE (mode 0600, never an existing file), else to stdout. */
int kmctl_cmd_datakey_decrypt(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf in = { NULL, 0, 0 };
    const uint8_t *aad = (const uint8_t *)a->val[OPT_AAD];
    size_t aad_len = aad != NULL ? strlen(a->val[OPT_AAD]) : 0;
    km_secret *key = NULL;
    int rc;

    if ((rc = kmctl_read_fd(STDIN_FILENO, "the wrapped key", 4 * KM_DATAKEY_PAIR_WRAPPED_MAX,
                            &in)) != KMCTL_EXIT_OK
        || (rc = kmctl_text_decode_if(&in)) != KMCTL_EXIT_OK)
        goto out;
    if (in.len > 1 && in.p[1] == 'P')
        rc = km_datakey_pair_decrypt(k->ctx, in.p, in.len, aad, aad_len, &key);
    else
        rc = km_datakey_decrypt(k->ctx, in.p, in.len, aad, aad_len, &key);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "unwrapping the data key");
        goto out;
    }
    if (a->val[OPT_PLAINTEXT_FILE] != NULL)
        rc = kmctl_secret_file(a->val[OPT_PLAINTEXT_FILE], km_secret_data(key),
                               km_secret_len(key));
    else
        rc = kmctl_write(km_secret_data(key), km_secret_len(key));
out:
    km_secret_free(key);
    kmctl_buf_free(&in);
    return rc;
}

/* kmctl datakey-pair NAME --type TYPE --public-out FILE [--aad TEXT] [--text]
 * [--plaintext-file FILE]: the wrapped private key on stdout, the public key
 * (SPKI DER) to FILE, the private key (PKCS#8 DER) only into FILE on request. */
int kmctl_cmd_datakey_pair(struct kmctl *k, const struct kmctl_args *a)
{
    static uint8_t w[KM_DATAKEY_PAIR_WRAPPED_MAX];
    uint8_t pub[KM_DATAKEY_PAIR_PUBLIC_MAX];
    const uint8_t *aad = (const uint8_t *)a->val[OPT_AAD];
    size_t aad_len = aad != NULL ? strlen(a->val[OPT_AAD]) : 0, wl = 0, pl = 0;
    km_secret *priv = NULL;
    km_key_type type;
    km_key *kek = NULL;
    FILE *f;
    int rc;

    if (km_key_type_from_name(a->val[OPT_TYPE], &type) != KM_OK)
        return kmctl_error(KMCTL_EXIT_USAGE, "datakey-pair: unknown --type '%s'", a->val[OPT_TYPE]);
    if ((rc = kmctl_open_key(k, a->pos[0], &kek)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_datakey_pair_generate(kek, type, aad, aad_len,
                                  a->val[OPT_PLAINTEXT_FILE] != NULL ? &priv : NULL, w, sizeof w,
                                  &wl, pub, sizeof pub, &pl);
    km_key_free(kek);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "generating a %s data key pair under '%s'", a->val[OPT_TYPE],
                               a->pos[0]);
    f = fopen(a->val[OPT_PUBLIC_OUT], "wbx");
    if (f == NULL || fwrite(pub, 1, pl, f) != pl || fclose(f) != 0) {
        km_secret_free(priv);
        return kmctl_error(KMCTL_EXIT_USAGE, "cannot write the public key to '%s' (it must not "
                           "exist)", a->val[OPT_PUBLIC_OUT]);
    }
    if (priv != NULL) {
        rc = kmctl_secret_file(a->val[OPT_PLAINTEXT_FILE], km_secret_data(priv),
                               km_secret_len(priv));
        km_secret_free(priv);
        if (rc != KMCTL_EXIT_OK)
            return rc;
    }
    return a->val[OPT_TEXT] != NULL ? kmctl_text_write(w, wl) : kmctl_write(w, wl);
}
