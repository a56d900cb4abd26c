/* cmd_backend.c - kmctl: registering a TPM, a PKCS#11 token or a KMIP server with the vault,
 * and sealing the master key to a TPM (a keyslot). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>

#include <km/sys/backend.h>

#include "kmctl.h"

#define CONFIG_MAX 4096

/* A configuration value may not hold the separator of the config string. */
static int plain(const char *what, const char *v)
{
    if (v[0] == '\0' || strchr(v, ';') != NULL || strchr(v, '\n') != NULL)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s must be non-empty, without ';' or newlines",
                           what);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_backend_add_tpm2(struct kmctl *k, const struct kmctl_args *a)
{
    char config[CONFIG_MAX];
    int rc;

    if ((rc = plain("--tcti", a->val[OPT_TCTI])) != KMCTL_EXIT_OK)
        return rc;
    if ((size_t)snprintf(config, sizeof config, "tcti=%s", a->val[OPT_TCTI]) >= sizeof config)
        return kmctl_error(KMCTL_EXIT_USAGE, "--tcti is too long");
    if ((rc = km_vault_backend_set(k->ctx, "tpm2", config)) != KM_OK)
        return kmctl_lib_error(rc, "registering the TPM");
    return KMCTL_EXIT_OK;
}

/* A file the backend will read: an absolute path (the vault is opened from
 * anywhere), readable now. */
static int file_arg(const char *what, const char *v, char *abs, size_t cap)
{
    int rc;

    if ((rc = plain(what, v)) != KMCTL_EXIT_OK)
        return rc;
    if (access(v, R_OK) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s: cannot read '%s'", what, v);
    if (realpath(v, abs) == NULL || strlen(abs) >= cap)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s: cannot resolve '%s'", what, v);
    return KMCTL_EXIT_OK;
}

/* The kmip configuration string from the options of backend/keyslot add kmip. */
static int kmip_config(const struct kmctl_args *a, char *config, size_t cap)
{
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], extra[64] = "";
    struct stat st;
    int rc;

    if ((rc = plain("--server", a->val[OPT_SERVER])) != KMCTL_EXIT_OK
        || (rc = file_arg("--ca", a->val[OPT_CA], ca, sizeof ca)) != KMCTL_EXIT_OK
        || (rc = file_arg("--cert", a->val[OPT_CERT], cert, sizeof cert)) != KMCTL_EXIT_OK
        || (rc = file_arg("--key", a->val[OPT_TLS_KEY], key, sizeof key)) != KMCTL_EXIT_OK)
        return rc;
    /* the client's private key is checked like a passphrase file; its name
     * goes into the vault, never its contents */
    if (stat(key, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
        kmctl_warn("key file '%s' is readable by group or others (chmod 600 it)", key);
    if (a->val[OPT_PROTOCOL] != NULL && strcmp(a->val[OPT_PROTOCOL], "2.0") != 0
        && strcmp(a->val[OPT_PROTOCOL], "1.4") != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "--protocol is 2.0 or 1.4 (AES-GCM needs 1.4 or "
                                             "later)");
    if (a->val[OPT_PROTOCOL] != NULL)
        snprintf(extra, sizeof extra, ";version=%s", a->val[OPT_PROTOCOL]);
    if (a->val[OPT_TIMEOUT] != NULL) {
        if (a->num[OPT_TIMEOUT] < 100)
            return kmctl_error(KMCTL_EXIT_USAGE, "--timeout is 100..600000 ms");
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), ";timeout=%llu",
                 (unsigned long long)a->num[OPT_TIMEOUT]);
    }
    if ((size_t)snprintf(config, cap, "server=%s;ca=%s;cert=%s;key=%s%s", a->val[OPT_SERVER],
                         ca, cert, key, extra) >= cap)
        return kmctl_error(KMCTL_EXIT_USAGE, "the paths are too long");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_backend_add_kmip(struct kmctl *k, const struct kmctl_args *a)
{
    char config[CONFIG_MAX];
    int rc;

    if ((rc = kmip_config(a, config, sizeof config)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_vault_backend_set(k->ctx, "kmip", config)) != KM_OK)
        return kmctl_lib_error(rc, "registering the KMIP server");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_keyslot_add_kmip(struct kmctl *k, const struct kmctl_args *a)
{
    char config[CONFIG_MAX];
    int rc;

    if ((rc = kmip_config(a, config, sizeof config)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_vault_add_backend_slot(k->ctx, "kmip", config)) != KM_OK)
        return kmctl_lib_error(rc, "sealing the master key with the KMIP server");
    fprintf(stderr, "kmctl: the master key is sealed by a key of the KMIP server; open with "
                    "KM_KMIP_CONFIG=\"%s\" and no passphrase\n", config);
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_backend_add_pkcs11(struct kmctl *k, const struct kmctl_args *a)
{
    km_secret *config = NULL, *pin = NULL;
    size_t pin_len = 0, n;
    const char *env_pin = getenv("KM_PKCS11_PIN");
    int rc;

    if ((rc = plain("--module", a->val[OPT_MODULE])) != KMCTL_EXIT_OK
        || (rc = plain("--token-uri", a->val[OPT_TOKEN_URI])) != KMCTL_EXIT_OK)
        return rc;
    if (strncmp(a->val[OPT_TOKEN_URI], "pkcs11:", 7) != 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "--token-uri must be an RFC 7512 URI (pkcs11:...)");
    if (a->val[OPT_STORE_PIN] != NULL) {
        /* the administrator asked for a copy of the PIN sealed in the vault */
        if (a->val[OPT_PIN_FILE] != NULL) {
            if ((rc = kmctl_passphrase(a->val[OPT_PIN_FILE], &pin, &pin_len)) != KMCTL_EXIT_OK)
                return rc;
        } else if (env_pin != NULL && env_pin[0] != '\0') {
            if ((rc = km_secret_from(&pin, env_pin, strlen(env_pin))) != KM_OK)
                return kmctl_lib_error(rc, "reading the PIN");
            pin_len = strlen(env_pin);
        } else {
            return kmctl_error(KMCTL_EXIT_USAGE, "--store-pin needs --pin-file FILE or "
                                                 "KM_PKCS11_PIN");
        }
        if (memchr(km_secret_data(pin), ';', pin_len) != NULL) {
            km_secret_free(pin);
            return kmctl_error(KMCTL_EXIT_USAGE, "the PIN may not contain ';'");
        }
    } else if (a->val[OPT_PIN_FILE] != NULL) {
        return kmctl_error(KMCTL_EXIT_USAGE, "--pin-file is only read with --store-pin (otherwise "
                                             "give the PIN at use time in KM_PKCS11_PIN)");
    }
    /* the configuration lives in secure memory: it may hold the PIN */
    if ((rc = km_secret_new(&config, CONFIG_MAX)) != KM_OK) {
        km_secret_free(pin);
        return kmctl_lib_error(rc, "building the configuration");
    }
    n = (size_t)snprintf((char *)km_secret_data(config), CONFIG_MAX, "module=%s;token=%s",
                         a->val[OPT_MODULE], a->val[OPT_TOKEN_URI]);
    if (n < CONFIG_MAX && pin != NULL) {
        if (n + 5 + pin_len >= CONFIG_MAX) {
            n = CONFIG_MAX;
        } else {
            memcpy(km_secret_data(config) + n, ";pin=", 5);
            memcpy(km_secret_data(config) + n + 5, km_secret_data(pin), pin_len);
            n += 5 + pin_len;
            km_secret_data(config)[n] = '\0';
        }
    }
    km_secret_free(pin);
    if (n >= CONFIG_MAX) {
        km_secret_free(config);
        return kmctl_error(KMCTL_EXIT_USAGE, "the module path and token URI are too long");
    }
    rc = km_vault_backend_set(k->ctx, "pkcs11", (const char *)km_secret_data(config));
    km_secret_free(config);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "registering the token");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_keyslot_add_tpm2(struct kmctl *k, const struct kmctl_args *a)
{
    char config[CONFIG_MAX];
    int rc;

    if ((rc = plain("--tcti", a->val[OPT_TCTI])) != KMCTL_EXIT_OK
        || (a->val[OPT_PCRS] != NULL && (rc = plain("--pcrs", a->val[OPT_PCRS])) != KMCTL_EXIT_OK))
        return rc;
    if ((size_t)snprintf(config, sizeof config, "tcti=%s%s%s", a->val[OPT_TCTI],
                         a->val[OPT_PCRS] ? ";pcrs=" : "", a->val[OPT_PCRS] ? a->val[OPT_PCRS] : "")
        >= sizeof config)
        return kmctl_error(KMCTL_EXIT_USAGE, "--tcti is too long");
    if ((rc = km_vault_add_backend_slot(k->ctx, "tpm2", config)) != KM_OK)
        return kmctl_lib_error(rc, "sealing the master key to the TPM");
    fprintf(stderr, "kmctl: the master key is sealed to this TPM; open with KM_TPM2_TCTI set "
                    "and no passphrase\n");
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ maintenance */

int kmctl_cmd_vault_compact(struct kmctl *k, const struct kmctl_args *a)
{
    int rc;
    (void)a;
    if ((rc = km_vault_compact(k->ctx)) != KM_OK)
        return kmctl_lib_error(rc, "compacting the vault");
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_vault_rekey(struct kmctl *k, const struct kmctl_args *a)
{
    km_secret *pass = NULL;
    size_t len = 0;
    int rc;

    if ((rc = kmctl_passphrase(a->val[OPT_NEW_PASS_FILE], &pass, &len)) != KMCTL_EXIT_OK)
        return rc;
    rc = km_vault_rekey(k->ctx, km_secret_data(pass), len,
                        a->val[OPT_KDF_COST] != NULL ? (uint32_t)a->num[OPT_KDF_COST] : 0);
    km_secret_free(pass);
    if (rc != KM_OK)
        return kmctl_lib_error(rc, "rekeying the vault");
    fprintf(stderr, "kmctl: rekeyed; the keyslots were replaced by the new passphrase and the "
                    "device keyslots that could be re-sealed ('kmctl audit show' says how many): "
                    "re-add passphrases, principals and shares\n");
    return KMCTL_EXIT_OK;
}

/* The progress line of long work, on a terminal only (main installs it when
 * stderr is a tty): at most ten updates a second, a newline at the end. */
void kmctl_progress(const char *what, uint64_t done, uint64_t total, void *arg)
{
    static struct timespec last;
    struct timespec now;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (done < total && (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000
                            < 100)
        return;
    last = now;
    fprintf(stderr, "\rkmctl: %s %llu/%llu%s", what, (unsigned long long)done,
            (unsigned long long)total, done >= total ? "\n" : "");
    fflush(stderr);
}

/* The tokens of a PKCS#11 module (pkcs11-helper's discovery): one line per
 * token, its serialised id (stable across runs) and its label. */
int kmctl_cmd_backend_list(struct kmctl *k, const struct kmctl_args *a)
{
    char names[32][KM_BACKEND_NAME_MAX + 1];
    size_t i, n = 0;
    int rc;

    (void)k;
    (void)a;
    if ((rc = km_backend_names(names, 32, &n)) != KM_OK)
        return kmctl_lib_error(rc, "listing the backends");
    for (i = 0; i < n && i < 32; i++) {
        if (printf("%s\n", names[i]) < 0)
            return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    }
    return KMCTL_EXIT_OK;
}

int kmctl_cmd_backend_tokens(struct kmctl *k, const struct kmctl_args *a)
{
    km_pkcs11_list *l = NULL;
    size_t i;
    int rc;

    (void)k;
    if ((rc = km_pkcs11_tokens(&l, a->val[OPT_MODULE])) != KM_OK)
        return kmctl_lib_error(rc, "listing the module's tokens");
    for (i = 0; i < km_pkcs11_list_count(l); i++) {
        if (printf("%s\t%s\n", km_pkcs11_list_get(l, i, KM_PKCS11_ID),
                   km_pkcs11_list_get(l, i, KM_PKCS11_LABEL)) < 0) {
            km_pkcs11_list_free(l);
            return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
        }
    }
    km_pkcs11_list_free(l);
    return KMCTL_EXIT_OK;
}
