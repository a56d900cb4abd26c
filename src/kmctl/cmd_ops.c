/* cmd_ops.c - kmctl commands of the operations added by issue 23: random,
 * rsa-encrypt and rsa-decrypt (RSA-OAEP with a label), --oaep-digest,
 * datakey decrypt, datakey-pair, --batch (JSON lines; rewrap --batch too),
 * agree (derived or, with --raw, the raw shared secret). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "kmctl.h"
#include "kmctl_json.h"

/* ------------------------------------------------------------- random */

/* kmctl random N [--protection BACKEND] [--hex|--text|--json] > bytes */
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
    if (a->val[OPT_JSON] != NULL || a->val[OPT_HEX] != NULL) {
        hex = malloc(2 * (size_t)n + 2);
        if (hex == NULL) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "random: out of memory");
            goto out;
        }
        kmctl_hex(buf, (size_t)n, hex);
    }
    if (a->val[OPT_JSON] != NULL) {
        /* {"bytes": N, "hex": "..."} (as agree --json and derive --json, --json wins) */
        json_t *j = json_object();
        if (j != NULL && (kmctl_json_set(j, "bytes", json_integer((json_int_t)n)) != 0
                          || kmctl_json_set(j, "hex", json_string(hex)) != 0)) {
            json_decref(j);
            j = NULL;
        }
        rc = kmctl_json_emit(j);
    } else if (hex != NULL) {
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

/* ---------------------------------------------------------------- --batch */

/* Most bytes of --batch input. */
#define KMCTL_BATCH_INPUT_MAX ((size_t)256 << 20)

/* A binary field of an input line: "<name>" as a JSON string (its UTF-8 bytes)
 * or "<name>_km1" in the km1: text form. *p is malloc'ed (never NULL). */
static int batch_field(json_t *o, const char *name, int required, uint8_t **p, size_t *n,
                       char *why, size_t why_cap)
{
    char k1[48];
    json_t *v = json_object_get(o, name), *t;
    size_t cap;

    *p = NULL;
    *n = 0;
    snprintf(k1, sizeof k1, "%s_km1", name);
    t = json_object_get(o, k1);
    if (v != NULL && t != NULL) {
        snprintf(why, why_cap, "give \"%s\" or \"%s\", not both", name, k1);
        return -1;
    }
    if (v != NULL) {
        if (!json_is_string(v)) {
            snprintf(why, why_cap, "\"%s\" must be a string", name);
            return -1;
        }
        *n = json_string_length(v);
        *p = malloc(*n + 1);
        if (*p == NULL)
            return -1;
        memcpy(*p, json_string_value(v), *n);
        return 0;
    }
    if (t != NULL) {
        if (!json_is_string(t)) {
            snprintf(why, why_cap, "\"%s\" must be a km1: string", k1);
            return -1;
        }
        cap = json_string_length(t) + 1;
        *p = malloc(cap);
        if (*p == NULL)
            return -1;
        if (km_text_decode(json_string_value(t), json_string_length(t), *p, cap, n) != KM_OK) {
            snprintf(why, why_cap, "\"%s\": %s", k1, km_error_last()->message);
            return -1;
        }
        return 0;
    }
    if (required) {
        snprintf(why, why_cap, "\"%s\" (or \"%s\") is missing", name, k1);
        return -1;
    }
    *p = malloc(1);
    return *p == NULL ? -1 : 0;
}

/* Whether a line gives the binary field "<name>" (or "<name>_km1"). */
static int batch_has(json_t *o, const char *name)
{
    char k1[48];
    snprintf(k1, sizeof k1, "%s_km1", name);
    return json_object_get(o, name) != NULL || json_object_get(o, k1) != NULL;
}

/* rewrap --batch: -1 and why for a member that is none of rewrap's (a misspelt "new_aad"
 * would otherwise keep the old aad without a word). */
static int batch_unknown(json_t *o, char *why, size_t why_cap)
{
    static const char *const known[] = { "ciphertext", "ciphertext_km1", "aad", "aad_km1",
                                         "new_aad", "new_aad_km1" };
    const char *name;
    json_t *v;
    size_t i;

    json_object_foreach(o, name, v) {
        for (i = 0; i < sizeof known / sizeof known[0] && strcmp(name, known[i]) != 0; i++)
            ;
        if (i == sizeof known / sizeof known[0]) {
            snprintf(why, why_cap, "unknown member \"%.60s\" (rewrap takes ciphertext_km1, aad, "
                     "new_aad)", name);
            return -1;
        }
    }
    return 0;
}

/* Adds "<name>_km1" (and "<name>" when the bytes are printable UTF-8 text
 * without NUL, for plaintexts) to o. */
static void batch_put(json_t *o, const char *name, const uint8_t *p, size_t n, int text_too)
{
    char k1[48], *t;
    size_t tl = 0, cap = 4 + (n + 2) / 3 * 4 + 2;

    snprintf(k1, sizeof k1, "%s_km1", name);
    if (n == 0) {
        json_object_set_new(o, k1, json_string("km1:"));
    } else if ((t = malloc(cap)) != NULL) {
        if (km_text_encode(p, n, t, cap, &tl) == KM_OK)
            json_object_set_new(o, k1, json_stringn(t, tl));
        free(t);
    }
    if (text_too && memchr(p, 0, n) == NULL) {
        json_t *s = json_stringn((const char *)p, n); /* NULL unless valid UTF-8 */
        if (s != NULL)
            json_object_set_new(o, name, s);
    }
}

/* The error of a failed item as JSON fields. */
static void batch_error(json_t *o, int rc, const char *detail)
{
    json_object_set_new(o, "error", json_string(km_err_name(rc) ? km_err_name(rc) : "?"));
    json_object_set_new(o, "detail", json_string(detail));
}

/* kmctl encrypt NAME --batch, decrypt --batch, sign NAME --batch, mac NAME --batch,
 * verify NAME - --batch, mac-verify NAME - --batch, rewrap [--to NAME] --batch: stdin holds
 * one JSON object per line:
 *   encrypt:             {"plaintext": TEXT | "plaintext_km1": "km1:...", "aad": TEXT}
 *   decrypt:             {"ciphertext_km1": "km1:...", "aad": TEXT}
 *   rewrap:              {"ciphertext_km1": "km1:...", "aad": TEXT, "new_aad": TEXT} (no
 *                        new_aad: the same aad; "" none); without --to and new_aad in one
 *                        km_rewrap_batch_ex call, else each with km_rewrap_ex
 *   sign, mac:           {"message": TEXT | "message_km1": ...}
 *   verify, mac-verify:  {"message": ..., "signature_km1" / "tag_km1": "km1:..."}
 * and stdout one per input line, in order: {"index": N, "ciphertext_km1" | "plaintext" and
 * "plaintext_km1" | "signature_km1" | "tag_km1" | "valid": true/false} or
 * {"index": N, "error": "KM_E_...", "detail": "..."}. A line that does not parse fails alone.
 * Exit status: 0 when every item succeeded (verified), else that of the first failure. */
int kmctl_batch(struct kmctl *k, const struct kmctl_args *a, km_batch_op op)
{
    struct kmctl_buf in = { NULL, 0, 0 };
    int verify = op == KM_BATCH_VERIFY || op == KM_BATCH_MAC_VERIFY, rewrap = op == KMCTL_BATCH_REWRAP;
    int has_key = op != KM_BATCH_DECRYPT && !rewrap, each = op == KM_BATCH_DECRYPT;
    const char *out_name = op == KM_BATCH_ENCRYPT || rewrap ? "ciphertext" : op == KM_BATCH_DECRYPT
                           ? "plaintext" : op == KM_BATCH_SIGN ? "signature" : "tag";
    const char *in_name = op == KM_BATCH_ENCRYPT ? "plaintext"
                          : op == KM_BATCH_DECRYPT || rewrap ? "ciphertext" : "message";
    /* the third field of a line: a signature or tag, or rewrap's new aad (in the item's sig) */
    const char *sig_name = op == KM_BATCH_VERIFY ? "signature" : rewrap ? "new_aad" : "tag";
    uint32_t flags = (op == KM_BATCH_ENCRYPT || op == KM_BATCH_DECRYPT || rewrap)
                     ? 0 : kmctl_sig_flags(a);
    km_batch_item *items = NULL;
    uint8_t **bufs = NULL;        /* per item: in, aad, sig, out (4 pointers) */
    char (*why)[KM_BATCH_DETAIL] = NULL;
    size_t n = 0, cap = 0, i, off;
    km_key *key = NULL;
    int rc, first = KM_OK;

    if (verify && strcmp(a->pos[1], "-") != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s --batch: the signatures come in the input lines; "
                           "give - for the file", a->cmd);
    if (rewrap && (a->val[OPT_AAD] != NULL || a->val[OPT_NEW_AAD] != NULL))
        return kmctl_error(KMCTL_EXIT_USAGE, "rewrap --batch: each line gives its \"aad\" and "
                           "\"new_aad\"; no --aad or --new-aad");
    if ((op == KM_BATCH_DECRYPT || rewrap) && a->val[OPT_ALLOW_COMPROMISED] != NULL)
        flags = KM_DECRYPT_ALLOW_COMPROMISED;
    if (has_key && (rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    /* rewrap --to NAME: every item under NAME, each with km_rewrap_ex */
    if (rewrap && a->val[OPT_TO] != NULL) {
        if ((rc = kmctl_open_key(k, a->val[OPT_TO], &key)) != KMCTL_EXIT_OK)
            return rc;
        each = 1;
    }
    if ((rc = kmctl_read_fd(STDIN_FILENO, "the batch", KMCTL_BATCH_INPUT_MAX, &in)) != KMCTL_EXIT_OK)
        goto out;
    /* one item per non-empty line */
    for (off = 0; off < in.len;) {
        uint8_t *nl = memchr(in.p + off, '\n', in.len - off);
        size_t len = nl != NULL ? (size_t)(nl - (in.p + off)) : in.len - off;
        json_error_t je;
        json_t *o;
        km_batch_item *it;
        char *w;

        if (len == 0 || (len == 1 && in.p[off] == '\r')) {
            off += len + 1;
            continue;
        }
        if (n == KM_BATCH_MAX) {
            rc = kmctl_error(KMCTL_EXIT_USAGE, "%s --batch: more than %d items", a->cmd,
                             KM_BATCH_MAX);
            goto out;
        }
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            void *p1 = realloc(items, nc * sizeof *items), *p2, *p3;
            if (p1 != NULL)
                items = p1;
            p2 = realloc(bufs, nc * 4 * sizeof *bufs);
            if (p2 != NULL)
                bufs = p2;
            p3 = realloc(why, nc * sizeof *why);
            if (p3 != NULL)
                why = p3;
            if (p1 == NULL || p2 == NULL || p3 == NULL) {
                rc = kmctl_error(KMCTL_EXIT_OTHER, "%s --batch: out of memory", a->cmd);
                goto out;
            }
            cap = nc;
        }
        it = &items[n];
        memset(it, 0, sizeof *it);
        memset(&bufs[4 * n], 0, 4 * sizeof *bufs);
        w = why[n];
        w[0] = '\0';
        n++;
        off += len + 1;
        o = json_loadb((const char *)in.p + off - len - 1, len, JSON_REJECT_DUPLICATES, &je);
        if (o == NULL || !json_is_object(o)) {
            snprintf(w, KM_BATCH_DETAIL, "line %zu is not a JSON object%s%.80s", n,
                     o == NULL ? ": " : "", o == NULL ? je.text : "");
            json_decref(o);
            continue;
        }
        if ((rewrap && batch_unknown(o, w, KM_BATCH_DETAIL) != 0)
            || batch_field(o, in_name, 1, &bufs[4 * (n - 1)], &it->in_len, w, KM_BATCH_DETAIL) != 0
            || batch_field(o, "aad", 0, &bufs[4 * (n - 1) + 1], &it->aad_len, w,
                           KM_BATCH_DETAIL) != 0
            || ((verify || (rewrap && batch_has(o, sig_name)))
                && batch_field(o, sig_name, 1, &bufs[4 * (n - 1) + 2], &it->sig_len, w,
                               KM_BATCH_DETAIL) != 0)) {
            if (w[0] == '\0')
                snprintf(w, KM_BATCH_DETAIL, "out of memory");
            json_decref(o);
            continue;
        }
        json_decref(o);
        it->in = bufs[4 * (n - 1)];
        it->aad = bufs[4 * (n - 1) + 1];
        it->sig = bufs[4 * (n - 1) + 2];
        if (rewrap && it->sig != NULL)
            each = 1;   /* a new aad: km_rewrap_batch_ex keeps each item's */
        if (!verify) {
            it->out_cap = op == KM_BATCH_ENCRYPT ? it->in_len + KM_CIPHERTEXT_OVERHEAD
                          : op == KM_BATCH_DECRYPT || rewrap ? (it->in_len > 0 ? it->in_len : 1)
                          : op == KM_BATCH_SIGN ? KM_SIGNATURE_MAX : KM_MAC_MAX;
            if ((bufs[4 * (n - 1) + 3] = malloc(it->out_cap)) == NULL) {
                snprintf(w, KM_BATCH_DETAIL, "out of memory");
                continue;
            }
            it->out = bufs[4 * (n - 1) + 3];
        }
    }
    /* the well-formed items through libkm: in one km_batch (km_rewrap_batch_ex) call, or
     * each alone (decrypt: with the key its header names; rewrap to --to or a new aad),
     * the malformed ones answered as such */
    for (i = 0; each && i < n; i++) {
        km_batch_item *it = &items[i];
        if (why[i][0] != '\0')
            continue;
        if (op == KM_BATCH_DECRYPT)
            it->result = km_decrypt(k->ctx, flags, it->in, it->in_len, it->aad, it->aad_len,
                                    it->out, it->out_cap, &it->out_len);
        else
            it->result = km_rewrap_ex(k->ctx, flags, it->in, it->in_len, it->aad, it->aad_len,
                                      key, it->sig, it->sig_len, it->out, it->out_cap,
                                      &it->out_len);
        snprintf(it->detail, sizeof it->detail, "%s",
                 it->result == KM_OK ? "" : km_error_last()->message);
    }
    if (!each) {
        /* malformed items are given to libkm as calls it refuses, so one call does all */
        for (i = 0; i < n; i++)
            if (why[i][0] != '\0') {
                items[i].in = NULL;
                items[i].in_len = 1;
            }
        /* the outcomes are per item */
        if (rewrap)
            (void)km_rewrap_batch_ex(k->ctx, flags, items, n);
        else
            (void)km_batch(key, op, flags, items, n);
    }
    for (i = 0; i < n; i++) {
        json_t *o = json_object();
        char *line;
        int r = why[i][0] != '\0' ? KM_E_INVALID : items[i].result;

        json_object_set_new(o, "index", json_integer((json_int_t)i));
        if (why[i][0] != '\0')
            batch_error(o, r, why[i]);
        else if (verify && (r == KM_OK || r == KM_E_VERIFY))
            json_object_set_new(o, "valid", json_boolean(r == KM_OK));
        else if (r != KM_OK)
            batch_error(o, r, items[i].detail);
        else
            batch_put(o, out_name, items[i].out, items[i].out_len, op == KM_BATCH_DECRYPT);
        line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (line == NULL || kmctl_write(line, strlen(line)) != KMCTL_EXIT_OK
            || kmctl_write("\n", 1) != KMCTL_EXIT_OK) {
            free(line);
            rc = kmctl_error(KMCTL_EXIT_OTHER, "%s --batch: cannot write the results", a->cmd);
            goto out;
        }
        free(line);
        if (r != KM_OK && first == KM_OK)
            first = r;
    }
    rc = first == KM_OK ? KMCTL_EXIT_OK : kmctl_exit_code(first);
out:
    for (i = 0; i < 4 * n; i++) {
        if (bufs[i] != NULL && i % 4 == 3 && op == KM_BATCH_DECRYPT)
            km_memzero(bufs[i], items[i / 4].out_cap);
        free(bufs[i]);
    }
    free(bufs);
    free(items);
    free(why);
    if (in.p != NULL && op == KM_BATCH_ENCRYPT)
        km_memzero(in.p, in.len);
    kmctl_buf_free(&in);
    km_key_free(key);
    return rc;
}

/* ---------------------------------------------------------------- agree */

/* The peer key file: SPKI DER as is, or the DER inside a PEM "PUBLIC KEY"
 * block (standard base64). Rewrites b in place; KMCTL_EXIT_USAGE naming the
 * file when a PEM block does not decode. */
static int peer_der(struct kmctl_buf *b, const char *path)
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
    const char *s = (const char *)b->p, *from, *to;
    size_t n = 0, bits = 0;
    uint32_t acc = 0;

    if (b->len == 0 || b->p[0] == 0x30)
        return KMCTL_EXIT_OK;
    from = memmem(s, b->len, begin, sizeof begin - 1);
    to = from != NULL ? memmem(from, b->len - (size_t)(from - s), end, sizeof end - 1) : NULL;
    if (to == NULL)
        return kmctl_error(KMCTL_EXIT_USAGE, "agree: '%s' is neither SPKI DER nor a PEM PUBLIC "
                           "KEY", path);
    for (from += sizeof begin - 1; from < to; from++) {
        int c = (unsigned char)*from, v;
        v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
          : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
        if (v < 0) {
            if (c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t')
                continue;
            return kmctl_error(KMCTL_EXIT_USAGE, "agree: '%s': bad base64 in the PEM block", path);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b->p[n++] = (uint8_t)(acc >> bits); /* n stays behind the read position */
        }
    }
    b->len = n;
    return KMCTL_EXIT_OK;
}

/* kmctl agree NAME PEERFILE [--raw] [--length N] [--info TEXT] [--hex|--text|--json]:
 * km_agree (HKDF-SHA-256 of the shared secret, N bytes, default 32) or with
 * --raw km_agree_raw (the key needs the agree-raw usage, a principal the
 * agree-raw grant, the policy must allow it). The peer: SPKI DER or PEM. */
int kmctl_cmd_agree(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf peer = { NULL, 0, 0 };
    const char *info = a->val[OPT_INFO];
    int raw = a->val[OPT_RAW] != NULL;
    size_t len = a->val[OPT_LENGTH] != NULL ? (size_t)a->num[OPT_LENGTH] : 32;
    km_secret *out = NULL;
    km_key *key = NULL;
    json_t *j = NULL;
    char *hex = NULL;
    int rc;

    if (raw && (a->val[OPT_LENGTH] != NULL || info != NULL))
        return kmctl_error(KMCTL_EXIT_USAGE, "agree: --raw gives the shared secret itself: no "
                           "--length or --info");
    if (len == 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "agree: --length must be 1 to %u bytes",
                           (unsigned)KM_DERIVE_MAX);
    if ((rc = kmctl_read_file(a->pos[1], 1u << 16, &peer)) != KMCTL_EXIT_OK
        || (rc = peer_der(&peer, a->pos[1])) != KMCTL_EXIT_OK)
        goto out;
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        goto out;
    rc = raw ? km_agree_raw(key, peer.p, peer.len, &out)
             : km_agree(key, peer.p, peer.len, (const uint8_t *)info,
                        info != NULL ? strlen(info) : 0, len, &out);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "%s with key '%s' and the peer key in '%s'",
                             raw ? "raw key agreement" : "key agreement", a->pos[0], a->pos[1]);
        goto out;
    }
    len = km_secret_len(out);
    if (a->val[OPT_JSON] != NULL || a->val[OPT_HEX] != NULL) {
        if ((hex = malloc(2 * len + 2)) == NULL) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "agree: out of memory");
            goto out;
        }
        kmctl_hex(km_secret_data(out), len, hex);
    }
    if (a->val[OPT_JSON] != NULL) {
        j = json_object();
        if (j == NULL || kmctl_json_set(j, "key", json_string(a->pos[0])) != 0
            || kmctl_json_set(j, "raw", json_boolean(raw)) != 0
            || kmctl_json_set(j, "length", json_integer((json_int_t)len)) != 0
            || kmctl_json_set(j, "secret_hex", json_string(hex)) != 0) {
            json_decref(j);
            rc = kmctl_error(KMCTL_EXIT_OTHER, "agree: out of memory");
            goto out;
        }
        rc = kmctl_json_emit(j);
    } else if (hex != NULL) {
        hex[2 * len] = '\n';
        rc = kmctl_write(hex, 2 * len + 1);
    } else {
        rc = a->val[OPT_TEXT] != NULL ? kmctl_text_write(km_secret_data(out), len)
                                      : kmctl_write(km_secret_data(out), len);
    }
out:
    if (hex != NULL) {
        km_memzero(hex, 2 * len + 2);
        free(hex);
    }
    km_secret_free(out);
    km_key_free(key);
    kmctl_buf_free(&peer);
    return rc;
}
