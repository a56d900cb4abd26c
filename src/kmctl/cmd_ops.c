/* cmd_ops.c - kmctl commands of the operations added by issue 23: random,
 * rsa-encrypt and rsa-decrypt (RSA-OAEP with a label), --oaep-digest. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

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
