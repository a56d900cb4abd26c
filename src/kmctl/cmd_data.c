/* cmd_data.c - kmctl commands that use keys: encrypt, decrypt, sign, verify, mac, mac-verify. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmctl.h"
#include "kmctl_json.h"

/* Largest signature or tag file read by verify and mac-verify (binary or km1: text). */
#define KMCTL_SIGFILE_MAX 65536
/* Largest ciphertext on stdin: the biggest binary one, in the km1: text form, with slack. */
#define KMCTL_CIPHERTEXT_TEXT_MAX \
    ((size_t)4 + ((size_t)KM_PLAINTEXT_MAX + KM_CIPHERTEXT_OVERHEAD + 2) / 3 * 4 + 4096)

static void aad_of(const struct kmctl_args *a, const uint8_t **aad, size_t *len)
{
    *aad = (const uint8_t *)a->val[OPT_AAD];
    *len = *aad != NULL ? strlen(a->val[OPT_AAD]) : 0;
}

static uint32_t sig_flags(const struct kmctl_args *a)
{
    return (a->val[OPT_RAW] != NULL ? KM_SIG_RAW : 0) | (a->val[OPT_P1363] != NULL ? KM_SIG_P1363 : 0)
           | (a->val[OPT_PKCS1] != NULL ? KM_SIG_PKCS1 : 0);
}

uint32_t kmctl_sig_flags(const struct kmctl_args *a)
{
    return sig_flags(a);
}

/* Writes binary output, or its km1: text form with --text. */
static int emit(const struct kmctl_args *a, const uint8_t *p, size_t n)
{
    if (a->val[OPT_TEXT] != NULL)
        return kmctl_text_write(p, n);
    return kmctl_write(p, n);
}

/* ------------------------------------------------------------ encrypt */

int kmctl_cmd_encrypt(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf pt = { NULL, 0, 0 };
    const uint8_t *aad;
    uint8_t *ct = NULL;
    size_t aad_len, ct_len = 0;
    km_key *key = NULL;
    int rc;

    if (a->val[OPT_BATCH] != NULL)
        return kmctl_batch(k, a, KM_BATCH_ENCRYPT);
    aad_of(a, &aad, &aad_len);
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the plaintext", KM_PLAINTEXT_MAX, &pt)) != KMCTL_EXIT_OK)
        goto out;
    ct = malloc(pt.len + KM_CIPHERTEXT_OVERHEAD);
    if (ct == NULL) {
        rc = kmctl_error(KMCTL_EXIT_OTHER, "encrypting: out of memory");
        goto out;
    }
    rc = km_encrypt(key, pt.p, pt.len, aad, aad_len, ct, pt.len + KM_CIPHERTEXT_OVERHEAD, &ct_len);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "encrypting with key '%s'", a->pos[0]);
        goto out;
    }
    rc = emit(a, ct, ct_len);
out:
    free(ct);
    kmctl_buf_free(&pt);
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ decrypt */

int kmctl_cmd_decrypt(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf ct = { NULL, 0, 0 };
    const uint8_t *aad;
    uint8_t *pt = NULL;
    size_t aad_len, cap = 0, pt_len = 0;
    uint32_t flags;
    int rc;

    if (a->val[OPT_BATCH] != NULL)
        return kmctl_batch(k, a, KM_BATCH_DECRYPT);
    aad_of(a, &aad, &aad_len);
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the ciphertext", KMCTL_CIPHERTEXT_TEXT_MAX, &ct)) != KMCTL_EXIT_OK)
        goto out;
    if ((rc = kmctl_text_decode_if(&ct)) != KMCTL_EXIT_OK)
        goto out;
    cap = ct.len > 0 ? ct.len : 1;
    pt = malloc(cap);
    if (pt == NULL) {
        rc = kmctl_error(KMCTL_EXIT_OTHER, "decrypting: out of memory");
        goto out;
    }
    flags = a->val[OPT_ALLOW_COMPROMISED] != NULL ? KM_DECRYPT_ALLOW_COMPROMISED : 0;
    rc = km_decrypt(k->ctx, flags, ct.p, ct.len, aad, aad_len, pt, cap, &pt_len);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "decrypting");
        goto out;
    }
    rc = kmctl_write(pt, pt_len);
out:
    if (pt != NULL) {
        km_memzero(pt, cap);
        free(pt);
    }
    kmctl_buf_free(&ct);
    return rc;
}

/* ------------------------------------------------------------ sign, mac */

static int tag_cmd(struct kmctl *k, const struct kmctl_args *a, int is_mac)
{
    struct kmctl_buf msg = { NULL, 0, 0 };
    uint8_t out[KM_SIGNATURE_MAX > KM_MAC_MAX ? KM_SIGNATURE_MAX : KM_MAC_MAX];
    size_t n = 0;
    km_key *key = NULL;
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the message", KM_PLAINTEXT_MAX, &msg)) != KMCTL_EXIT_OK)
        goto out;
    if (is_mac)
        rc = km_mac(key, sig_flags(a), msg.p, msg.len, out, sizeof out, &n);
    else
        rc = km_sign(key, sig_flags(a), msg.p, msg.len, out, sizeof out, &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "%s with key '%s'", is_mac ? "computing the MAC" : "signing", a->pos[0]);
        goto out;
    }
    rc = emit(a, out, n);
out:
    kmctl_buf_free(&msg);
    km_key_free(key);
    return rc;
}

int kmctl_cmd_sign(struct kmctl *k, const struct kmctl_args *a)
{
    return a->val[OPT_BATCH] != NULL ? kmctl_batch(k, a, KM_BATCH_SIGN) : tag_cmd(k, a, 0);
}

int kmctl_cmd_mac(struct kmctl *k, const struct kmctl_args *a)
{
    return a->val[OPT_BATCH] != NULL ? kmctl_batch(k, a, KM_BATCH_MAC) : tag_cmd(k, a, 1);
}

/* ------------------------------------------------------------ verify, mac-verify */

static int verify_cmd(struct kmctl *k, const struct kmctl_args *a, int is_mac)
{
    struct kmctl_buf msg = { NULL, 0, 0 }, sig = { NULL, 0, 0 };
    uint32_t version = a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
    km_key *key = NULL;
    int rc;

    if ((rc = kmctl_read_file(a->pos[1], KMCTL_SIGFILE_MAX, &sig)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_text_decode_if(&sig)) != KMCTL_EXIT_OK)
        goto out;
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        goto out;
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the message", KM_PLAINTEXT_MAX, &msg)) != KMCTL_EXIT_OK)
        goto out;
    if (is_mac)
        rc = km_mac_verify(key, version, sig_flags(a), msg.p, msg.len, sig.p, sig.len);
    else
        rc = km_verify(key, version, sig_flags(a), msg.p, msg.len, sig.p, sig.len);
    if (rc != KM_OK)
        rc = kmctl_lib_error(rc, "%s '%s' with key '%s'", is_mac ? "verifying the MAC" : "verifying the signature",
                             a->pos[1], a->pos[0]);
    else
        rc = KMCTL_EXIT_OK;
out:
    kmctl_buf_free(&msg);
    kmctl_buf_free(&sig);
    km_key_free(key);
    return rc;
}

int kmctl_cmd_verify(struct kmctl *k, const struct kmctl_args *a)
{
    return a->val[OPT_BATCH] != NULL ? kmctl_batch(k, a, KM_BATCH_VERIFY) : verify_cmd(k, a, 0);
}

int kmctl_cmd_mac_verify(struct kmctl *k, const struct kmctl_args *a)
{
    return a->val[OPT_BATCH] != NULL ? kmctl_batch(k, a, KM_BATCH_MAC_VERIFY)
                                     : verify_cmd(k, a, 1);
}

/* ------------------------------------------------------------ datakey */

/* Writes a secret to a new file only its owner can read (refuses to
 * overwrite an existing one). */
static int write_secret_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t off = 0;
    if (fd < 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "cannot create %s (it must not exist yet)", path);
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w <= 0) {
            close(fd);
            unlink(path);
            return kmctl_error(KMCTL_EXIT_OTHER, "writing %s failed", path);
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(path);
        return kmctl_error(KMCTL_EXIT_OTHER, "writing %s failed", path);
    }
    return KMCTL_EXIT_OK;
}

int kmctl_secret_file(const char *path, const uint8_t *p, size_t n)
{
    return write_secret_file(path, p, n);
}

/* kmctl datakey NAME [--aad TEXT] [--text] [--plaintext-file FILE] [--type TYPE]:
 * the wrapped data key on stdout; its plaintext only into FILE on request. */
int kmctl_cmd_datakey(struct kmctl *k, const struct kmctl_args *a)
{
    uint8_t w[KM_CIPHERTEXT_OVERHEAD + KM_DATAKEY_MAX];
    const uint8_t *aad;
    size_t aad_len, n = 0;
    km_secret *dk = NULL;
    km_key *key = NULL;
    km_key_type type = KM_KEY_AES_256_GCM;
    int rc;

    aad_of(a, &aad, &aad_len);
    if (a->val[OPT_TYPE] != NULL && km_key_type_from_name(a->val[OPT_TYPE], &type) != KM_OK)
        return kmctl_error(KMCTL_EXIT_USAGE, "datakey: unknown --type '%s'", a->val[OPT_TYPE]);
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_datakey_generate_type(key, type, aad, aad_len,
                                  a->val[OPT_PLAINTEXT_FILE] != NULL ? &dk : NULL, w, sizeof w, &n);
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "generating a data key under '%s'", a->pos[0]);
    if (dk != NULL) {
        rc = write_secret_file(a->val[OPT_PLAINTEXT_FILE], km_secret_data(dk), km_secret_len(dk));
        km_secret_free(dk);
        if (rc != KMCTL_EXIT_OK)
            return rc;
    }
    return emit(a, w, n);
}

/* ------------------------------------------------------------- rewrap */

/* kmctl rewrap [--aad TEXT] [--to NAME] [--new-aad TEXT] [--allow-compromised] < old > new: the same kind and form (binary or
 * km1: text) as the input, under the key's primary version; --batch: kmctl_batch (cmd_ops.c). */
int kmctl_cmd_rewrap(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf in = { NULL, 0, 0 };
    const uint8_t *aad;
    uint8_t *out = NULL;
    size_t aad_len, n = 0;
    km_key *to = NULL;
    int text, rc;

    if (a->val[OPT_BATCH] != NULL)
        return kmctl_batch(k, a, KMCTL_BATCH_REWRAP);
    aad_of(a, &aad, &aad_len);
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the ciphertext", KMCTL_CIPHERTEXT_TEXT_MAX, &in)) != KMCTL_EXIT_OK)
        goto out;
    text = in.len >= 4 && memcmp(in.p, "km1:", 4) == 0;
    if ((rc = kmctl_text_decode_if(&in)) != KMCTL_EXIT_OK)
        goto out;
    out = malloc(in.len > 0 ? in.len : 1);
    if (out == NULL) {
        rc = kmctl_error(KMCTL_EXIT_OTHER, "rewrapping: out of memory");
        goto out;
    }
    if (a->val[OPT_TO] != NULL && (rc = kmctl_open_key(k, a->val[OPT_TO], &to)) != KMCTL_EXIT_OK)
        goto out;
    rc = km_rewrap_ex(k->ctx,
                      a->val[OPT_ALLOW_COMPROMISED] != NULL ? KM_DECRYPT_ALLOW_COMPROMISED : 0,
                      in.p, in.len, aad, aad_len, to, (const uint8_t *)a->val[OPT_NEW_AAD],
                      a->val[OPT_NEW_AAD] != NULL ? strlen(a->val[OPT_NEW_AAD]) : 0, out, in.len,
                      &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "rewrapping");
        goto out;
    }
    rc = text ? kmctl_text_write(out, n) : kmctl_write(out, n);
out:
    km_key_free(to);
    free(out);
    kmctl_buf_free(&in);
    return rc;
}

/* ------------------------------------------------------------- derive, sign-digest */

/* Writes bytes as --json {"name": NAME, <label>: HEX, ...extra}, a hex line
 * (--hex), the km1: text form (--text) or binary. */
static int emit_bytes(const struct kmctl_args *a, const char *label, const uint8_t *p, size_t n,
                      json_t *extra)
{
    char *hex = NULL;
    int rc;

    if (a->val[OPT_JSON] == NULL && a->val[OPT_HEX] == NULL) {
        json_decref(extra);
        return emit(a, p, n);
    }
    if ((hex = malloc(2 * n + 2)) == NULL) {
        json_decref(extra);
        return kmctl_error(KMCTL_EXIT_OTHER, "%s: out of memory", a->cmd);
    }
    kmctl_hex(p, n, hex);
    if (a->val[OPT_JSON] != NULL) {
        if (extra != NULL && kmctl_json_set(extra, label, json_string(hex)) != 0) {
            json_decref(extra);
            extra = NULL;
        }
        rc = kmctl_json_emit(extra);
    } else {
        json_decref(extra);
        hex[2 * n] = '\n';
        rc = kmctl_write(hex, 2 * n + 1);
    }
    km_memzero(hex, 2 * n + 2);
    free(hex);
    return rc;
}

/* {"name": NAME} plus more members; NULL when out of memory. */
static json_t *json_named(const char *name)
{
    json_t *o = json_object();
    if (o != NULL && kmctl_json_set(o, "name", json_string(name)) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* kmctl derive NAME N [--salt TEXT] [--info TEXT] [--hex|--text|--json] > secret:
 * HKDF-SHA-256 from an HMAC key with the derive usage (km_derive). */
int kmctl_cmd_derive(struct kmctl *k, const struct kmctl_args *a)
{
    const char *salt = a->val[OPT_SALT], *info = a->val[OPT_INFO];
    km_secret *out = NULL;
    km_key *key = NULL;
    uint64_t n = 0;
    json_t *j = NULL;
    int rc;

    if (kmctl_parse_uint(a->pos[1], KM_DERIVE_MAX, &n) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "derive: the length must be 1 to %u bytes, not '%s'",
                           (unsigned)KM_DERIVE_MAX, a->pos[1]);
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_derive(key, (const uint8_t *)salt, salt != NULL ? strlen(salt) : 0,
                   (const uint8_t *)info, info != NULL ? strlen(info) : 0, (size_t)n, &out);
    km_key_free(key);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "deriving %llu bytes from key '%s'", (unsigned long long)n,
                               a->pos[0]);
    if (a->val[OPT_JSON] != NULL && (j = json_named(a->pos[0])) != NULL
        && kmctl_json_set(j, "length", json_integer((json_int_t)n)) != 0) {
        json_decref(j);
        j = NULL;
    }
    rc = emit_bytes(a, "secret_hex", km_secret_data(out), km_secret_len(out), j);
    km_secret_free(out);
    return rc;
}

/* kmctl sign-digest NAME --digest sha256|sha384|sha512 [--version N] [--p1363]
 * [--pkcs1] [--hex|--text|--json] < digest > sig: the raw signature of a
 * digest computed elsewhere (binary on stdin, e.g. openssl dgst -binary). */
int kmctl_cmd_sign_digest(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf d = { NULL, 0, 0 };
    uint32_t version = a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
    uint8_t sig[KM_SIGNATURE_MAX];
    km_key *key = NULL;
    json_t *j = NULL;
    size_t n = 0;
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the digest", 64, &d)) != KMCTL_EXIT_OK)
        goto out;
    rc = km_sign_digest(key, version, sig_flags(a) & ~KM_SIG_RAW, a->val[OPT_DIGEST], d.p, d.len,
                        sig, sizeof sig, &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "signing a %s digest of %zu bytes with key '%s'",
                             a->val[OPT_DIGEST], d.len, a->pos[0]);
        goto out;
    }
    if (a->val[OPT_JSON] != NULL && (j = json_named(a->pos[0])) != NULL
        && kmctl_json_set(j, "digest", json_string(a->val[OPT_DIGEST])) != 0) {
        json_decref(j);
        j = NULL;
    }
    rc = emit_bytes(a, "signature_hex", sig, n, j);
out:
    km_key_free(key);
    kmctl_buf_free(&d);
    return rc;
}
