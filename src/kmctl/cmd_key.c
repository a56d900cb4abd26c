/* cmd_key.c - kmctl commands that manage keys: init, key create|import|list|info|rotate|public. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kmctl.h"
#include "kmctl_json.h"

/* Largest key file accepted by key import (an RSA-4096 PKCS#8 PEM is about 3.3 KiB). */
#define KMCTL_KEYFILE_MAX 65536
/* Largest public key export buffer tried first (grown on KM_E_BUFFER). */
#define KMCTL_PUBKEY_CAP 4096

static const struct {
    uint32_t bit;
    const char *name;
} usage_names[] = {
    { KM_USAGE_ENCRYPT, "encrypt" }, { KM_USAGE_DECRYPT, "decrypt" },
    { KM_USAGE_SIGN, "sign" },       { KM_USAGE_VERIFY, "verify" },
    { KM_USAGE_MAC, "mac" },         { KM_USAGE_MAC_VERIFY, "mac-verify" },
    { KM_USAGE_WRAP, "wrap" },       { KM_USAGE_UNWRAP, "unwrap" },
    { KM_USAGE_DERIVE, "derive" },   { KM_USAGE_AGREE, "agree" },
    { KM_USAGE_AGREE_RAW, "agree-raw" },
};

static const struct {
    uint32_t bit;
    const char *name;
} flag_names[] = {
    { KM_KEY_EXPORTABLE, "exportable" },
    { KM_KEY_PUBLIC_ONLY, "public-only" },
    { KM_KEY_DELETION_PROTECTED, "deletion-protected" },
};

static const struct {
    const char *name;
    km_material_format format;
} format_names[] = {
    { "raw", KM_MATERIAL_RAW },
    { "pkcs8", KM_MATERIAL_PKCS8_DER },
    { "spki", KM_MATERIAL_SPKI_DER },
    { "pem", KM_MATERIAL_PEM },
    { "jwk", KM_MATERIAL_JWK },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ helpers */

int kmctl_open_key(struct kmctl *k, const char *name, km_key **out)
{
    int rc = km_key_open(out, k->ctx, name);

    if (rc != KM_OK)
        return kmctl_lib_error(rc, "opening key '%s'", name);
    return KMCTL_EXIT_OK;
}

static int parse_type(const char *name, km_key_type *out)
{
    char list[512] = "";
    int t;

    if (km_key_type_from_name(name, out) == KM_OK)
        return KMCTL_EXIT_OK;
    for (t = 1; t < 64; t++) {
        const char *n = km_key_type_name((km_key_type)t);
        if (n != NULL && strlen(list) + strlen(n) + 3 < sizeof list) {
            if (list[0] != '\0')
                strcat(list, ", ");
            strcat(list, n);
        }
    }
    return kmctl_error(KMCTL_EXIT_USAGE, "unknown key type '%s' (one of: %s)", name, list);
}

/* "encrypt,decrypt" -> KM_USAGE_ENCRYPT | KM_USAGE_DECRYPT */
static int parse_usage(const char *s, uint32_t *out)
{
    const char *p = s;

    *out = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, ","), i;
        for (i = 0; i < COUNT(usage_names); i++)
            if (strlen(usage_names[i].name) == n && strncmp(p, usage_names[i].name, n) == 0)
                break;
        if (i == COUNT(usage_names))
            return kmctl_error(KMCTL_EXIT_USAGE,
                               "--usage: unknown usage '%.*s' (encrypt, decrypt, sign, verify, mac, "
                               "mac-verify, wrap, unwrap, derive, agree, agree-raw)", (int)n, p);
        *out |= usage_names[i].bit;
        p += n;
        if (*p == ',')
            p++;
    }
    if (*out == 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "--usage: empty list");
    return KMCTL_EXIT_OK;
}

static int parse_format(const char *s, km_material_format *out)
{
    size_t i;

    for (i = 0; i < COUNT(format_names); i++)
        if (strcmp(s, format_names[i].name) == 0) {
            *out = format_names[i].format;
            return KMCTL_EXIT_OK;
        }
    return kmctl_error(KMCTL_EXIT_USAGE, "--format: unknown format '%s' (raw, pkcs8, spki, pem, jwk)", s);
}

/* The key options of create and import, from --usage, --exportable, --protection. */
static int key_options(const struct kmctl_args *a, km_key_options *o)
{
    int rc;

    if (a->val[OPT_USAGE] != NULL && (rc = parse_usage(a->val[OPT_USAGE], &o->usage)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_EXPORTABLE] != NULL)
        o->flags |= KM_KEY_EXPORTABLE;
    if (a->val[OPT_DELETION_PROTECTED] != NULL)
        o->flags |= KM_KEY_DELETION_PROTECTED;
    o->protection = a->val[OPT_PROTECTION];
    if (a->val[OPT_ROTATE_EVERY] != NULL)
        o->rotate_days = (uint32_t)a->num[OPT_ROTATE_EVERY];
    if (a->val[OPT_ACTIVATE_AT] != NULL) {
        /* a date already past would be taken as "now" by libkm: say so
         * rather than pretend to schedule it (a minute of slack for clocks) */
        if (a->date[OPT_ACTIVATE_AT] < (int64_t)time(NULL) - 60)
            return kmctl_error(KMCTL_EXIT_USAGE, "--activate-at %s is in the past: leave it out "
                               "to activate the key now", a->val[OPT_ACTIVATE_AT]);
        o->activate_at = a->date[OPT_ACTIVATE_AT];
    }
    if (a->val[OPT_PROTECT_DAYS] != NULL)
        o->protect_days = (uint32_t)a->num[OPT_PROTECT_DAYS];
    if (a->val[OPT_PROCESS_DAYS] != NULL)
        o->process_days = (uint32_t)a->num[OPT_PROCESS_DAYS];
    return kmctl_oaep_digest(a, o);
}

static int emit_json(json_t *root);
static int set(json_t *obj, const char *key, json_t *v);

int kmctl_print_id(const struct kmctl_args *a, const char *name, const uint8_t *id)
{
    char hex[33];

    kmctl_hex(id, 16, hex);
    if (a->val[OPT_JSON] != NULL) {
        json_t *o = json_object();
        if (o != NULL && ((name != NULL && set(o, "name", json_string(name)) != 0)
                          || set(o, "id", json_string(hex)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        return emit_json(o);
    }
    return printf("%s\n", hex) < 0 ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed")
                                   : KMCTL_EXIT_OK;
}

static int emit_json(json_t *root)
{
    char *s;
    int rc;

    if (root == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "building the JSON output failed");
    s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (s == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "building the JSON output failed");
    rc = kmctl_write(s, strlen(s));
    if (rc == KMCTL_EXIT_OK)
        rc = kmctl_write("\n", 1);
    free(s);
    return rc;
}

static json_t *json_time(int64_t t)
{
    char iso[32];

    if (t == 0)
        return json_null();
    kmctl_time(t, iso);
    return json_string(iso);
}

/* Adds a member; a NULL value (allocation or UTF-8 failure) poisons the object. */
static int set(json_t *obj, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

/* ------------------------------------------------------------ init */

int kmctl_cmd_init(struct kmctl *k, const struct kmctl_args *a)
{
    uint8_t id[16];
    int rc;

    if ((rc = km_vault_id(k->ctx, id)) != KM_OK)
        return kmctl_lib_error(rc, "reading the vault id");
    return kmctl_print_id(a, NULL, id);
}

/* ------------------------------------------------------------ key create */

int kmctl_check_key_create(const struct kmctl_args *a)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key_type type;
    int rc;

    if ((rc = parse_type(a->val[OPT_TYPE], &type)) != KMCTL_EXIT_OK)
        return rc;
    return key_options(a, &o);
}

int kmctl_cmd_key_create(struct kmctl *k, const struct kmctl_args *a)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_key_type type;
    km_key *key = NULL;
    int rc;

    if ((rc = parse_type(a->val[OPT_TYPE], &type)) != KMCTL_EXIT_OK ||
        (rc = key_options(a, &o)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_key_create(&key, k->ctx, a->pos[0], type, &o)) != KM_OK)
        return kmctl_lib_error(rc, "creating key '%s'", a->pos[0]);
    rc = kmctl_print_id(a, a->pos[0], km_key_id(key));
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ key import */

int kmctl_check_key_import(const struct kmctl_args *a)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_material_format f;
    km_key_type type;
    int rc;

    if ((rc = parse_type(a->val[OPT_TYPE], &type)) != KMCTL_EXIT_OK ||
        (rc = key_options(a, &o)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_RAW] != NULL && a->val[OPT_WRAPPED] != NULL)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s: give --raw FILE or --wrapped BLOB, not both", a->cmd);
    if (a->val[OPT_RAW] == NULL && a->val[OPT_WRAPPED] == NULL)
        return kmctl_error(KMCTL_EXIT_USAGE,
                           "%s: give --raw FILE (plaintext import) or --wrapped BLOB", a->cmd);
    if (a->val[OPT_FORMAT] != NULL) {
        if (a->val[OPT_RAW] == NULL)
            return kmctl_error(KMCTL_EXIT_USAGE, "%s: --format goes with --raw", a->cmd);
        if ((rc = parse_format(a->val[OPT_FORMAT], &f)) != KMCTL_EXIT_OK)
            return rc;
    }
    return KMCTL_EXIT_OK;
}

/* import --wrapped BLOB: a blob wrapped to this vault's wrapping key (the
 * cloud BYOK format), or a libkm AES-KWP blob naming a KEK of this vault. */
static int import_wrapped(struct kmctl *k, const struct kmctl_args *a, km_key_type type,
                          const km_key_options *o)
{
    struct kmctl_buf b = { NULL, 0, 0 };
    km_key *key = NULL;
    km_wrap_format f;
    int rc = kmctl_read_file(a->val[OPT_WRAPPED], 1u << 16, &b);
    if (rc != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_text_decode_if(&b)) != KMCTL_EXIT_OK)
        goto out;
    f = b.len > 2 && b.p[0] == 'K' && b.p[1] == 'W' ? KM_WRAP_KWP : KM_WRAP_RSA_OAEP_KWP;
    rc = km_key_import_wrapped(&key, k->ctx, a->pos[0], type, f, b.p, b.len, o);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "importing wrapped key '%s'", a->pos[0]);
        goto out;
    }
    rc = kmctl_print_id(a, a->pos[0], km_key_id(key));
out:
    km_key_free(key);
    kmctl_buf_free(&b);
    return rc;
}

/* kmctl export NAME --wrap-with PUBKEY.pem | --kek KEKNAME [--version N] > blob:
 * RSA-OAEP + AES-KWP to a public key, or AES-KWP under a KEK of this vault
 * (the form import --wrapped takes back where the same KEK is). */
int kmctl_check_export(const struct kmctl_args *a)
{
    if ((a->val[OPT_WRAP_WITH] != NULL) == (a->val[OPT_KEK] != NULL))
        return kmctl_error(KMCTL_EXIT_USAGE, "export: give --wrap-with PUBKEY.pem (RSA-OAEP + "
                           "AES-KWP) or --kek NAME (AES-KWP under a key of this vault), one of them");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_export(struct kmctl *k, const struct kmctl_args *a)
{
    struct kmctl_buf pub = { NULL, 0, 0 };
    km_key *key = NULL, *kek = NULL;
    uint32_t version = a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
    km_wrap_format f = a->val[OPT_KEK] != NULL ? KM_WRAP_KWP : KM_WRAP_RSA_OAEP_KWP;
    uint8_t *blob = NULL;
    size_t need = 0, n = 0;
    int rc;

    if ((rc = kmctl_check_export(a)) != KMCTL_EXIT_OK)
        return rc;
    if (f == KM_WRAP_RSA_OAEP_KWP
        && (rc = kmctl_read_file(a->val[OPT_WRAP_WITH], 1u << 16, &pub)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        goto out;
    if (f == KM_WRAP_KWP && (rc = kmctl_open_key(k, a->val[OPT_KEK], &kek)) != KMCTL_EXIT_OK)
        goto out;
    rc = km_key_export_wrapped(key, version, f, kek, pub.p, pub.len, NULL, 0, &need);
    if (rc == KM_E_BUFFER && (blob = malloc(need)) != NULL)
        rc = km_key_export_wrapped(key, version, f, kek, pub.p, pub.len, blob, need, &n);
    if (rc != KM_OK) {
        if (version != 0)
            rc = kmctl_lib_error(rc, "exporting version %u of key '%s'", (unsigned)version, a->pos[0]);
        else
            rc = kmctl_lib_error(rc, "exporting key '%s'", a->pos[0]);
        goto out;
    }
    rc = kmctl_write(blob, n);
out:
    free(blob);
    km_key_free(kek);
    km_key_free(key);
    kmctl_buf_free(&pub);
    return rc;
}

/* kmctl wrapping-key > vault-import-pub.pem */
int kmctl_cmd_wrapping_key(struct kmctl *k, const struct kmctl_args *a)
{
    uint8_t pem[4096];
    size_t n = 0;
    int rc;
    (void)a;
    rc = km_vault_wrapping_key(k->ctx, KM_MATERIAL_PEM, pem, sizeof pem, &n);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "reading the vault's import wrapping key");
    return kmctl_write(pem, n);
}

/* The format of a key file when --format is not given. */
static km_material_format guess_format(km_key_type type, const uint8_t *p, size_t n)
{
    /* AES and HMAC keys are raw bytes; the others are asymmetric (their names) */
    const char *name = km_key_type_name(type);
    int asym = name != NULL && strncmp(name, "aes-", 4) != 0 && strncmp(name, "hmac-", 5) != 0;

    if (n >= 10 && memcmp(p, "-----BEGIN", 10) == 0)
        return KM_MATERIAL_PEM;
    if (asym && !((type == KM_KEY_ED25519 || type == KM_KEY_X25519) && n == 32))
        return KM_MATERIAL_PKCS8_DER;
    return KM_MATERIAL_RAW;
}

int kmctl_cmd_key_import(struct kmctl *k, const struct kmctl_args *a)
{
    km_key_options o = KM_KEY_OPTIONS_INIT;
    km_material_format f;
    km_secret *material = NULL;
    km_key_type type;
    km_key *key = NULL;
    size_t len = 0;
    int rc;

    uint8_t id[16];

    if ((rc = parse_type(a->val[OPT_TYPE], &type)) != KMCTL_EXIT_OK ||
        (rc = key_options(a, &o)) != KMCTL_EXIT_OK ||
        (rc = kmctl_import_target(a, &o, id)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_WRAPPED] != NULL)
        return import_wrapped(k, a, type, &o);
    if ((rc = kmctl_read_secret(a->val[OPT_RAW], KMCTL_KEYFILE_MAX, &material, &len)) != KMCTL_EXIT_OK)
        return rc;
    if (a->val[OPT_FORMAT] != NULL) {
        if ((rc = parse_format(a->val[OPT_FORMAT], &f)) != KMCTL_EXIT_OK)
            goto out;
    } else {
        f = guess_format(type, km_secret_data(material), len);
    }
    rc = km_key_import(&key, k->ctx, a->pos[0], type, f, km_secret_data(material), len,
                       KM_IMPORT_ALLOW_RAW, &o);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "importing key '%s'", a->pos[0]);
        goto out;
    }
    rc = kmctl_print_id(a, a->pos[0], km_key_id(key));
out:
    km_key_free(key);
    km_secret_free(material);
    return rc;
}

/* key list: cmd_keymeta.c */

/* ------------------------------------------------------------ key info */

static json_t *json_bits(uint32_t mask, int usage)
{
    json_t *arr = json_array();
    uint32_t known = 0;
    size_t i, n = usage ? COUNT(usage_names) : COUNT(flag_names);

    if (arr == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        uint32_t bit = usage ? usage_names[i].bit : flag_names[i].bit;
        known |= bit;
        if ((mask & bit) && json_array_append_new(arr, json_string(usage ? usage_names[i].name
                                                                         : flag_names[i].name)) != 0)
            goto fail;
    }
    if (mask & ~known) {
        char other[16];
        snprintf(other, sizeof other, "0x%x", (unsigned)(mask & ~known));
        if (json_array_append_new(arr, json_string(other)) != 0)
            goto fail;
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static void text_bits(uint32_t mask, int usage, char *out, size_t cap)
{
    json_t *arr = json_bits(mask, usage);
    size_t i;

    out[0] = '\0';
    for (i = 0; arr != NULL && i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s != NULL && strlen(out) + strlen(s) + 2 < cap) {
            if (out[0] != '\0')
                strcat(out, ",");
            strcat(out, s);
        }
    }
    if (out[0] == '\0')
        snprintf(out, cap, "-");
    json_decref(arr);
}

static json_t *info_json(const km_keyinfo *info)
{
    json_t *root = json_object(), *vers = json_array();
    const char *tn = km_keyinfo_type(info) ? km_key_type_name(km_keyinfo_type(info)) : NULL;
    uint32_t i, n = km_keyinfo_version_count(info);
    char hex[33];
    int bad;

    kmctl_hex(km_keyinfo_id(info), 16, hex);
    bad = root == NULL || vers == NULL ||
          set(root, "name", json_string(km_keyinfo_name(info))) != 0 ||
          set(root, "id", json_string(hex)) != 0 ||
          set(root, "type", tn ? json_string(tn) : json_null()) != 0 ||
          set(root, "usage", json_bits(km_keyinfo_usage(info), 1)) != 0 ||
          set(root, "flags", json_bits(km_keyinfo_flags(info), 0)) != 0 ||
          set(root, "protection", json_string(km_keyinfo_protection(info))) != 0 ||
          set(root, "created", json_time(km_keyinfo_created(info))) != 0 ||
          set(root, "primary", json_integer(km_keyinfo_primary(info))) != 0 ||
          set(root, "versions", json_incref(vers)) != 0 ||
          kmctl_keymeta_json(root, info) != 0;
    for (i = 0; i < n && !bad; i++) {
        km_version_info v;
        json_t *e;
        const char *sn;
        if (km_keyinfo_version(info, i, &v, sizeof v) != KM_OK) {
            bad = 1;
            break;
        }
        sn = km_state_name(v.state);
        e = json_object();
        bad = e == NULL || json_array_append_new(vers, e) != 0 ||
              set(e, "version", json_integer(v.version)) != 0 ||
              set(e, "state", sn ? json_string(sn) : json_null()) != 0 ||
              set(e, "created", json_time(v.created)) != 0 ||
              set(e, "activated", json_time(v.activated)) != 0 ||
              set(e, "protect_stop", json_time(v.protect_stop)) != 0 ||
              set(e, "process_stop", json_time(v.process_stop)) != 0 ||
              set(e, "destroy_after", json_time(v.destroy_after)) != 0 ||
              set(e, "invocations", json_integer((json_int_t)v.invocations)) != 0 ||
              set(e, "bytes", json_integer((json_int_t)v.bytes)) != 0 ||
              kmctl_keymeta_version_json(e, &v) != 0;
    }
    json_decref(vers);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int info_text(const km_keyinfo *info)
{
    const char *tn = km_key_type_name(km_keyinfo_type(info));
    uint32_t i, n = km_keyinfo_version_count(info);
    char hex[33], when[32], usage[256], flags[128];

    kmctl_hex(km_keyinfo_id(info), 16, hex);
    kmctl_time(km_keyinfo_created(info), when);
    text_bits(km_keyinfo_usage(info), 1, usage, sizeof usage);
    text_bits(km_keyinfo_flags(info), 0, flags, sizeof flags);
    printf("name:        %s\n", km_keyinfo_name(info));
    printf("id:          %s\n", hex);
    printf("type:        %s\n", tn ? tn : "?");
    printf("usage:       %s\n", usage);
    printf("flags:       %s\n", flags);
    printf("protection:  %s\n", km_keyinfo_protection(info));
    printf("created:     %s\n", when);
    printf("primary:     %u\n", (unsigned)km_keyinfo_primary(info));
    kmctl_keymeta_text(info);
    printf("versions:    %u\n", (unsigned)n);
    printf("  %-7s %-15s %-20s %-20s %-20s %-20s %-20s %s\n", "VERSION", "STATE", "CREATED",
           "ACTIVATED", "PROTECT-STOP", "PROCESS-STOP", "DESTROY-AFTER", "INVOCATIONS");
    for (i = 0; i < n; i++) {
        km_version_info v;
        char c[32], act[32], ps[32], pr[32], da[32];
        const char *sn;
        int rc = km_keyinfo_version(info, i, &v, sizeof v);
        if (rc != KM_OK)
            return kmctl_lib_error(rc, "reading version %u of key '%s'", (unsigned)(i + 1),
                                   km_keyinfo_name(info));
        sn = km_state_name(v.state);
        kmctl_time(v.created, c);
        kmctl_time(v.activated, act);
        kmctl_time(v.protect_stop, ps);
        kmctl_time(v.process_stop, pr);
        kmctl_time(v.destroy_after, da);
        printf("  %-7u %-15s %-20s %-20s %-20s %-20s %-20s %llu\n", (unsigned)v.version,
               sn ? sn : "?", c, act, ps, pr, da, (unsigned long long)v.invocations);
    }
    kmctl_keymeta_versions_text(info);
    return ferror(stdout) ? kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed") : KMCTL_EXIT_OK;
}

int kmctl_cmd_key_info(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    km_keyinfo *info = NULL;
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_key_info(&info, key)) != KM_OK) {
        rc = kmctl_lib_error(rc, "reading key '%s'", a->pos[0]);
        goto out;
    }
    rc = a->val[OPT_JSON] != NULL ? emit_json(info_json(info)) : info_text(info);
out:
    km_keyinfo_free(info);
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ key rotate */

int kmctl_cmd_key_rotate(struct kmctl *k, const struct kmctl_args *a)
{
    km_key *key = NULL;
    uint32_t v = 0;
    int rc;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_key_rotate(key, &v)) != KM_OK)
        rc = kmctl_lib_error(rc, "rotating key '%s'", a->pos[0]);
    else if (a->val[OPT_JSON] != NULL) {
        json_t *o = json_object();
        if (o != NULL && (set(o, "name", json_string(a->pos[0])) != 0
                          || set(o, "version", json_integer((json_int_t)v)) != 0)) {
            json_decref(o);
            o = NULL;
        }
        rc = emit_json(o);
    } else if (printf("%u\n", (unsigned)v) < 0)
        rc = kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    else
        rc = KMCTL_EXIT_OK;
    km_key_free(key);
    return rc;
}

/* ------------------------------------------------------------ key public */

int kmctl_cmd_key_public(struct kmctl *k, const struct kmctl_args *a)
{
    km_material_format f = a->val[OPT_JWK] != NULL ? KM_MATERIAL_JWK
                           : a->val[OPT_DER] != NULL ? KM_MATERIAL_SPKI_DER : KM_MATERIAL_PEM;
    uint32_t version = a->val[OPT_VERSION] != NULL ? (uint32_t)a->num[OPT_VERSION] : 0;
    size_t cap = KMCTL_PUBKEY_CAP, len = 0;
    uint8_t *buf = NULL;
    km_key *key = NULL;
    int rc, tries;

    if ((rc = kmctl_open_key(k, a->pos[0], &key)) != KMCTL_EXIT_OK)
        return rc;
    for (tries = 0;; tries++) {
        uint8_t *nb = realloc(buf, cap);
        if (nb == NULL) {
            rc = kmctl_error(KMCTL_EXIT_OTHER, "exporting the public key: out of memory");
            goto out;
        }
        buf = nb;
        rc = km_key_public_export(key, version, f, buf, cap, &len);
        if (rc == KM_E_BUFFER && tries < 8) { /* len is the size needed, with or without the NUL */
            cap = len >= cap ? len + 1 : cap * 2;
            continue;
        }
        break;
    }
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "exporting the public key of '%s'", a->pos[0]);
        goto out;
    }
    /* The PEM form is NUL-terminated by libkm; write the text only. */
    if (f == KM_MATERIAL_PEM && len > 0 && buf[len - 1] == '\0')
        len--;
    rc = kmctl_write(buf, len);
    if (rc == KMCTL_EXIT_OK && f == KM_MATERIAL_JWK) /* one JSON line */
        rc = kmctl_write("\n", 1);
out:
    free(buf);
    km_key_free(key);
    return rc;
}

/* ------------------------------------------- shared with cmd_keymeta.c */

int kmctl_json_emit(json_t *root) { return emit_json(root); }
int kmctl_json_set(json_t *obj, const char *key, json_t *v) { return set(obj, key, v); }
json_t *kmctl_json_time(int64_t t) { return json_time(t); }
int kmctl_parse_type(const char *name, km_key_type *out) { return parse_type(name, out); }
int kmctl_parse_usage(const char *s, uint32_t *out) { return parse_usage(s, out); }
