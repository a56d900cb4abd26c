/* main.c - kmctl: the command table, the command-line parser, opening the vault, help. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "kmctl.h"

/* ------------------------------------------------------------ the grammar */

enum kmctl_arg_kind { ARG_NONE, ARG_STR, ARG_UINT, ARG_DATE };

struct kmctl_optspec {
    const char *name;        /* without the leading "--" */
    const char *metavar;     /* NULL for a flag */
    unsigned char kind;      /* enum kmctl_arg_kind */
    unsigned char required;
    unsigned char id;        /* enum kmctl_opt_id */
    uint64_t max;            /* ARG_UINT: largest value */
};

enum kmctl_vault_mode { VAULT_NONE, VAULT_OPEN, VAULT_CREATE, VAULT_KMD };

typedef int (*kmctl_run_fn)(struct kmctl *k, const struct kmctl_args *a);
typedef int (*kmctl_check_fn)(const struct kmctl_args *a);

struct kmctl_cmd {
    const char *words;       /* "key create" */
    const char *positional;  /* "NAME SIGFILE", or "" */
    int npos;                /* the number of positional arguments */
    const struct kmctl_optspec *opts;
    kmctl_check_fn check;    /* optional: validates before the vault is opened */
    kmctl_run_fn run;        /* NULL: parsed, but not available in this libkm version (exit 8) */
    unsigned char vault;     /* enum kmctl_vault_mode */
    const char *io;          /* redirections shown in the synopsis */
    const char *summary;
};

#define DAYS_MAX 36500u
#define VERSION_MAX 0x7fffffffu
#define GRACE_MAX 3650u

#define O_END { NULL, NULL, ARG_NONE, 0, 0, 0 }
#define O_JSON { "json", NULL, ARG_NONE, 0, OPT_JSON, 0 }
#define O_AAD { "aad", "TEXT", ARG_STR, 0, OPT_AAD, 0 }
#define O_TEXT { "text", NULL, ARG_NONE, 0, OPT_TEXT, 0 }
#define O_RAWSIG { "raw", NULL, ARG_NONE, 0, OPT_RAW, 0 }
#define O_P1363 { "p1363", NULL, ARG_NONE, 0, OPT_P1363, 0 }
#define O_PKCS1 { "pkcs1", NULL, ARG_NONE, 0, OPT_PKCS1, 0 }
#define O_BATCH { "batch", NULL, ARG_NONE, 0, OPT_BATCH, 0 }
#define O_VERSION { "version", "N", ARG_UINT, 0, OPT_VERSION, VERSION_MAX }
#define O_VERSION_REQ { "version", "N", ARG_UINT, 1, OPT_VERSION, VERSION_MAX }
#define O_TYPE_REQ { "type", "TYPE", ARG_STR, 1, OPT_TYPE, 0 }
#define O_PROTECTION { "protection", "software|pkcs11|tpm2", ARG_STR, 0, OPT_PROTECTION, 0 }
#define O_EXPORTABLE { "exportable", NULL, ARG_NONE, 0, OPT_EXPORTABLE, 0 }
#define O_USAGE { "usage", "LIST", ARG_STR, 0, OPT_USAGE, 0 }

static const struct kmctl_optspec o_none[] = { O_END };
static const struct kmctl_optspec o_json[] = { O_JSON, O_END };
static const struct kmctl_optspec o_init[] = {
    { "kdf-cost", "N", ARG_UINT, 0, OPT_KDF_COST, 64 }, O_JSON, O_END };
static const struct kmctl_optspec o_create[] = {
    O_TYPE_REQ, O_PROTECTION, O_EXPORTABLE, O_USAGE,
    { "rotate-every", "DAYS", ARG_UINT, 0, OPT_ROTATE_EVERY, DAYS_MAX },
    { "activate-at", "DATE", ARG_DATE, 0, OPT_ACTIVATE_AT, 0 },
    { "protect-days", "DAYS", ARG_UINT, 0, OPT_PROTECT_DAYS, DAYS_MAX },
    { "process-days", "DAYS", ARG_UINT, 0, OPT_PROCESS_DAYS, DAYS_MAX },
    { "deletion-protection", NULL, ARG_NONE, 0, OPT_DELETION_PROTECTED, 0 },

    { "oaep-digest", "sha256|sha384|sha512", ARG_STR, 0, OPT_OAEP_DIGEST, 0 }, O_JSON, O_END };
static const struct kmctl_optspec o_import[] = {
    O_TYPE_REQ,
    { "raw", "FILE", ARG_STR, 0, OPT_RAW, 0 },
    { "format", "raw|pkcs8|spki|pem|jwk", ARG_STR, 0, OPT_FORMAT, 0 },
    { "wrapped", "BLOB", ARG_STR, 0, OPT_WRAPPED, 0 },
    O_PROTECTION, O_EXPORTABLE, O_USAGE,
    { "key-id", "HEX", ARG_STR, 0, OPT_KEY_ID, 0 }, O_VERSION,

    { "oaep-digest", "sha256|sha384|sha512", ARG_STR, 0, OPT_OAEP_DIGEST, 0 }, O_JSON, O_END };
static const struct kmctl_optspec o_public[] = {
    { "der", NULL, ARG_NONE, 0, OPT_DER, 0 }, O_VERSION,
    { "jwk", NULL, ARG_NONE, 0, OPT_JWK, 0 }, O_END };
static const struct kmctl_optspec o_version[] = { O_VERSION, O_END };
static const struct kmctl_optspec o_version_req[] = { O_VERSION_REQ, O_END };
static const struct kmctl_optspec o_revoke[] = {
    O_VERSION, { "reason", "REASON", ARG_STR, 1, OPT_REASON, 0 },
    { "compromise-date", "DATE", ARG_DATE, 0, OPT_COMPROMISE_DATE, 0 }, O_END };
static const struct kmctl_optspec o_destroy[] = {
    O_VERSION_REQ, { "grace", "DAYS", ARG_UINT, 0, OPT_GRACE, GRACE_MAX }, O_END };
static const struct kmctl_optspec o_encrypt[] = { O_AAD, O_TEXT, O_BATCH, O_END };
static const struct kmctl_optspec o_datakey[] = {
    O_AAD, O_TEXT, { "plaintext-file", "FILE", ARG_STR, 0, OPT_PLAINTEXT_FILE, 0 },
    { "type", "TYPE", ARG_STR, 0, OPT_TYPE, 0 }, O_END };
static const struct kmctl_optspec o_decrypt[] = {
    O_AAD, { "allow-compromised", NULL, ARG_NONE, 0, OPT_ALLOW_COMPROMISED, 0 }, O_BATCH, O_END };
static const struct kmctl_optspec o_sign[] = { O_RAWSIG, O_P1363, O_TEXT, O_PKCS1, O_BATCH,
                                                O_END };
static const struct kmctl_optspec o_verify[] = { O_RAWSIG, O_P1363, O_VERSION, O_PKCS1, O_BATCH,
                                                  O_END };
static const struct kmctl_optspec o_mac[] = { O_RAWSIG, O_TEXT, O_BATCH, O_END };
static const struct kmctl_optspec o_mac_verify[] = { O_RAWSIG, O_VERSION, O_BATCH, O_END };
static const struct kmctl_optspec o_export[] = {
    { "wrap-with", "PUBKEY.pem", ARG_STR, 0, OPT_WRAP_WITH, 0 },
    { "kek", "KEKNAME", ARG_STR, 0, OPT_KEK, 0 }, O_VERSION, O_END };

static const struct kmctl_optspec o_audit_verify[] = {
    O_JSON, { "anchor", "HEADFILE", ARG_STR, 0, OPT_ANCHOR, 0 }, O_END };
static const struct kmctl_optspec o_audit_show[] = {
    O_JSON, { "from", "SEQ", ARG_UINT, 0, OPT_FROM, UINT64_MAX }, O_END };
static const struct kmctl_optspec o_principal_add[] = {
    { "role", "ROLES", ARG_STR, 1, OPT_ROLE, 0 },
    { "credential-file", "FILE", ARG_STR, 1, OPT_CREDENTIAL_FILE, 0 }, O_END };
static const struct kmctl_optspec o_principal_remove[] = {
    { "revoke-keys", NULL, ARG_NONE, 0, OPT_REVOKE_KEYS, 0 },
    { "rotate-master", NULL, ARG_NONE, 0, OPT_ROTATE_MASTER, 0 }, O_END };
static const struct kmctl_optspec o_grant[] = {
    { "perms", "LIST", ARG_STR, 1, OPT_PERMS, 0 }, O_END };
static const struct kmctl_optspec o_request[] = {
    { "target", "NAME|FILE", ARG_STR, 0, OPT_TARGET, 0 }, O_VERSION,
    { "grace", "DAYS", ARG_UINT, 0, OPT_GRACE, GRACE_MAX },
    { "wrap-with", "PUBKEY.pem", ARG_STR, 0, OPT_WRAP_WITH, 0 },
    { "ttl", "SECONDS", ARG_UINT, 0, OPT_TTL, 30u * 24 * 3600 },
    { "role", "ROLES", ARG_STR, 0, OPT_ROLE, 0 },
    { "policy", "FILE", ARG_STR, 0, OPT_POLICY, 0 },
    { "deletion-protection", "off", ARG_STR, 0, OPT_DELETION_PROTECTION, 0 }, O_JSON, O_END };
static const struct kmctl_optspec o_shares[] = {
    { "m", "M", ARG_UINT, 1, OPT_M, KM_SHARES_MAX }, { "n", "N", ARG_UINT, 1, OPT_N, KM_SHARES_MAX },
    { "out-dir", "DIR", ARG_STR, 1, OPT_OUT_DIR, 0 }, O_END };

static const struct kmctl_optspec o_tcti[] = {
    { "tcti", "TCTI", ARG_STR, 1, OPT_TCTI, 0 }, O_END };
static const struct kmctl_optspec o_tpm_slot[] = {
    { "tcti", "TCTI", ARG_STR, 1, OPT_TCTI, 0 },
    { "pcrs", "sha256:N,N,...", ARG_STR, 0, OPT_PCRS, 0 }, O_END };
static const struct kmctl_optspec o_pkcs11[] = {
    { "module", "PATH", ARG_STR, 1, OPT_MODULE, 0 },
    { "token-uri", "URI", ARG_STR, 1, OPT_TOKEN_URI, 0 },
    { "pin-file", "FILE", ARG_STR, 0, OPT_PIN_FILE, 0 },
    { "store-pin", NULL, ARG_NONE, 0, OPT_STORE_PIN, 0 }, O_END };
static const struct kmctl_optspec o_kmip[] = {
    { "server", "HOST:PORT", ARG_STR, 1, OPT_SERVER, 0 },
    { "ca", "FILE", ARG_STR, 1, OPT_CA, 0 },
    { "cert", "FILE", ARG_STR, 1, OPT_CERT, 0 },
    { "key", "FILE", ARG_STR, 1, OPT_TLS_KEY, 0 },
    { "protocol", "2.0|1.4", ARG_STR, 0, OPT_PROTOCOL, 0 },
    { "timeout", "MS", ARG_UINT, 0, OPT_TIMEOUT, 600000 }, O_END };
static const struct kmctl_optspec o_tokens[] = {
    { "module", "PATH", ARG_STR, 1, OPT_MODULE, 0 }, O_END };
static const struct kmctl_optspec o_module_json[] = {
    { "module", "PATH", ARG_STR, 1, OPT_MODULE, 0 }, O_JSON, O_END };

static const struct kmctl_optspec o_rekey[] = {
    { "new-passphrase-file", "FILE", ARG_STR, 1, OPT_NEW_PASS_FILE, 0 },
    { "kdf-cost", "N", ARG_UINT, 0, OPT_KDF_COST, 64 }, O_END };

static const struct kmctl_optspec o_key_list[] = { O_JSON,
    { "type", "TYPE", ARG_STR, 0, OPT_TYPE, 0 }, { "state", "STATE", ARG_STR, 0, OPT_STATE, 0 },
    { "protection", "BACKEND", ARG_STR, 0, OPT_PROTECTION, 0 },
    { "tag", "TAG[=VALUE]", ARG_STR, 0, OPT_TAG, 0 }, O_END };
static const struct kmctl_optspec o_key_set[] = {
    { "rotate-every", "DAYS", ARG_UINT, 0, OPT_ROTATE_EVERY, DAYS_MAX }, O_USAGE,
    { "not-exportable", NULL, ARG_NONE, 0, OPT_NOT_EXPORTABLE, 0 },
    { "policy", "FILE", ARG_STR, 0, OPT_POLICY, 0 },
    { "deletion-protection", "on|off", ARG_STR, 0, OPT_DELETION_PROTECTION, 0 },
    { "min-decryption-version", "N", ARG_UINT, 0, OPT_MIN_DECRYPTION, VERSION_MAX },
    { "min-encryption-version", "N", ARG_UINT, 0, OPT_MIN_ENCRYPTION, VERSION_MAX }, O_END };
static const struct kmctl_optspec o_trim[] = {
    { "grace", "DAYS", ARG_UINT, 0, OPT_GRACE, GRACE_MAX }, O_END };
static const struct kmctl_optspec o_key_backup[] = {
    { "wrap-with", "PUBKEY.pem", ARG_STR, 0, OPT_WRAP_WITH, 0 },
    { "backup-passphrase-file", "FILE", ARG_STR, 0, OPT_BACKUP_PASS_FILE, 0 }, O_END };
static const struct kmctl_optspec o_key_restore[] = {
    { "name", "NAME", ARG_STR, 0, OPT_NAME, 0 },
    { "backup-passphrase-file", "FILE", ARG_STR, 0, OPT_BACKUP_PASS_FILE, 0 }, O_JSON, O_END };
static const struct kmctl_optspec o_alias[] = { { "move", NULL, ARG_NONE, 0, OPT_MOVE, 0 }, O_END };
static const struct kmctl_optspec o_rsa[] = {
    { "label", "TEXT", ARG_STR, 0, OPT_LABEL, 0 }, O_VERSION, O_END };
static const struct kmctl_optspec o_rewrap[] = {
    O_AAD, { "to", "NAME", ARG_STR, 0, OPT_TO, 0 }, { "new-aad", "TEXT", ARG_STR, 0, OPT_NEW_AAD, 0 },
    { "allow-compromised", NULL, ARG_NONE, 0, OPT_ALLOW_COMPROMISED, 0 }, O_BATCH, O_END };
static const struct kmctl_optspec o_datakey_decrypt[] = {
    O_AAD, { "plaintext-file", "FILE", ARG_STR, 0, OPT_PLAINTEXT_FILE, 0 }, O_END };
static const struct kmctl_optspec o_datakey_pair[] = {
    O_TYPE_REQ, { "public-out", "FILE", ARG_STR, 1, OPT_PUBLIC_OUT, 0 }, O_AAD, O_TEXT,
    { "plaintext-file", "FILE", ARG_STR, 0, OPT_PLAINTEXT_FILE, 0 }, O_END };
static const struct kmctl_optspec o_random[] = {
    O_PROTECTION, { "hex", NULL, ARG_NONE, 0, OPT_HEX, 0 }, O_TEXT, O_JSON, O_END };
#define O_HEX { "hex", NULL, ARG_NONE, 0, OPT_HEX, 0 }
static const struct kmctl_optspec o_add_passphrase[] = {
    { "new-passphrase-file", "FILE", ARG_STR, 1, OPT_NEW_PASS_FILE, 0 },
    { "kdf-cost", "N", ARG_UINT, 0, OPT_KDF_COST, 64 }, O_END };
static const struct kmctl_optspec o_key_link[] = {
    { "cert-id", "ID", ARG_STR, 1, OPT_CERT_ID, 0 }, O_USAGE, O_JSON, O_END };
static const struct kmctl_optspec o_derive[] = {
    { "salt", "TEXT", ARG_STR, 0, OPT_SALT, 0 }, { "info", "TEXT", ARG_STR, 0, OPT_INFO, 0 },
    O_HEX, O_TEXT, O_JSON, O_END };
static const struct kmctl_optspec o_sign_digest[] = {
    { "digest", "sha256|sha384|sha512", ARG_STR, 1, OPT_DIGEST, 0 }, O_VERSION, O_P1363, O_PKCS1,
    O_HEX, O_TEXT, O_JSON, O_END };
static const struct kmctl_optspec o_agree[] = {
    { "raw", NULL, ARG_NONE, 0, OPT_RAW, 0 }, { "length", "N", ARG_UINT, 0, OPT_LENGTH, KM_DERIVE_MAX },
    { "info", "TEXT", ARG_STR, 0, OPT_INFO, 0 }, O_HEX, O_TEXT,
    O_JSON, O_END };

static int cmd_version(struct kmctl *k, const struct kmctl_args *a);
static int cmd_help(struct kmctl *k, const struct kmctl_args *a);

/*
 * Every command of the grammar. A NULL run means the library function it needs
 * is not in this libkm version: the command is parsed and validated, then exits
 * KMCTL_EXIT_UNSUPPORTED. Wiring one later is filling in its run (and vault).
 */
static const struct kmctl_cmd commands[] = {
    { "init", "", 0, o_init, NULL, kmctl_cmd_init, VAULT_CREATE, "",
      "create a new vault (prints its id)" },
    { "key create", "NAME", 1, o_create, kmctl_check_key_create, kmctl_cmd_key_create, VAULT_OPEN, "",
      "create a key with a fresh version 1 (prints its id)" },
    { "key import", "NAME", 1, o_import, kmctl_check_key_import, kmctl_cmd_key_import, VAULT_OPEN, "",
      "import key material: --raw FILE in plaintext, or --wrapped BLOB (prints its id)" },
    { "import", "NAME", 1, o_import, kmctl_check_key_import, kmctl_cmd_key_import, VAULT_OPEN, "",
      "the same as key import" },
    { "key list", "", 0, o_key_list, NULL, kmctl_cmd_key_list, VAULT_OPEN, "",
      "list keys sorted by name (filters: --type, --state, --protection, --tag): NAME<tab>TYPE<tab>ID" },
    { "key info", "NAME", 1, o_json, NULL, kmctl_cmd_key_info, VAULT_OPEN, "",
      "show a key's metadata and versions" },
    { "key rotate", "NAME", 1, o_json, NULL, kmctl_cmd_key_rotate, VAULT_OPEN, "",
      "add a new primary version (prints its number)" },
    { "key public", "NAME", 1, o_public, NULL, kmctl_cmd_key_public, VAULT_OPEN, "> pub.pem",
      "export the public key (PEM, or SPKI DER with --der, or a JWK with --jwk)" },
    { "key activate", "NAME", 1, o_version, NULL, kmctl_cmd_key_activate, VAULT_OPEN, "",
      "pre-active -> active (default: the newest pre-active version)" },
    { "key suspend", "NAME", 1, o_version, NULL, kmctl_cmd_key_suspend, VAULT_OPEN, "",
      "active -> suspended: stops protecting, still processes (default: the primary)" },
    { "key resume", "NAME", 1, o_version, NULL, kmctl_cmd_key_resume, VAULT_OPEN, "",
      "suspended -> active" },
    { "key revoke", "NAME", 1, o_revoke, kmctl_check_key_revoke, kmctl_cmd_key_revoke, VAULT_OPEN, "",
      "-> deactivated, or compromised with a compromise reason and date" },
    { "key destroy", "NAME", 1, o_destroy, NULL, kmctl_cmd_key_destroy, VAULT_OPEN, "",
      "-> destroy-pending: destroyed by maintain after the grace (default 30 days)" },
    { "key cancel-destroy", "NAME", 1, o_version_req, NULL, kmctl_cmd_key_cancel_destroy, VAULT_OPEN, "",
      "destroy-pending -> the state it came from" },
    { "encrypt", "NAME", 1, o_encrypt, NULL, kmctl_cmd_encrypt, VAULT_OPEN, "< plain > cipher",
      "encrypt stdin (binary; --text: the km1: form and a newline)" },
    { "decrypt", "", 0, o_decrypt, NULL, kmctl_cmd_decrypt, VAULT_OPEN, "< cipher > plain",
      "decrypt stdin (binary or km1: text); the key comes from the ciphertext" },
    { "sign", "NAME", 1, o_sign, NULL, kmctl_cmd_sign, VAULT_OPEN, "< msg > sig",
      "sign stdin (libkm's tagged signature; --raw: the bare one)" },
    { "verify", "NAME SIGFILE", 2, o_verify, NULL, kmctl_cmd_verify, VAULT_OPEN, "< msg",
      "verify a signature of stdin (exit 0 valid, 6 not)" },
    { "mac", "NAME", 1, o_mac, NULL, kmctl_cmd_mac, VAULT_OPEN, "< msg > tag",
      "compute the MAC of stdin (tagged; --raw: the bare one)" },
    { "mac-verify", "NAME TAGFILE", 2, o_mac_verify, NULL, kmctl_cmd_mac_verify, VAULT_OPEN, "< msg",
      "verify a MAC of stdin (exit 0 valid, 6 not)" },
    { "datakey", "NAME", 1, o_datakey, NULL, kmctl_cmd_datakey, VAULT_OPEN, "> wrapped",
      "a new data key (AES-256, or the size of --type) wrapped under NAME (plaintext: --plaintext-file)" },
    { "rewrap", "", 0, o_rewrap, NULL, kmctl_cmd_rewrap, VAULT_OPEN, "< old > new",
      "re-encrypt under its key's primary version, or under --to NAME and/or with --new-aad "
      "(--batch: JSON lines)" },
    { "export", "NAME", 1, o_export, kmctl_check_export, kmctl_cmd_export, VAULT_OPEN, "> blob",
      "export a key version wrapped to a public key (--wrap-with) or under a KEK of this vault (--kek)" },
    { "wrapping-key", "", 0, o_none, NULL, kmctl_cmd_wrapping_key, VAULT_OPEN, "> vault-import-pub.pem",
      "print the vault's import wrapping key" },
    { "maintain", "", 0, o_json, NULL, kmctl_cmd_maintain, VAULT_OPEN, "",
      "apply the due time-driven transitions: KEY<tab>VERSION<tab>ACTION per line" },
    { "policy show", "", 0, o_json, NULL, kmctl_cmd_policy_show, VAULT_OPEN, "",
      "print the vault policy (a JSON document)" },
    { "policy check", "", 0, o_json, NULL, kmctl_cmd_policy_check, VAULT_OPEN, "",
      "list keys out of policy: KEY<tab>WHY (exit 0 none, 4 some)" },
    { "policy set", "FILE", 1, o_none, NULL, kmctl_cmd_policy_set, VAULT_OPEN, "",
      "replace the vault policy with the JSON document in FILE" },
    { "audit verify", "", 0, o_audit_verify, NULL, kmctl_cmd_audit_verify, VAULT_OPEN, "",
      "verify the audit chain and MACs (with --anchor: that the log still reaches that head)" },
    { "audit show", "", 0, o_audit_show, NULL, kmctl_cmd_audit_show, VAULT_OPEN, "",
      "print the audit log, one JSON object per line (--json: one document)" },
    { "audit head", "", 0, o_json, NULL, kmctl_cmd_audit_head, VAULT_OPEN, "> head",
      "print the log's head (SEQ HASH), to keep outside the vault for --anchor" },
    { "audit level", "none|counters|every", 1, o_none, NULL, kmctl_cmd_audit_level, VAULT_OPEN,
      "", "set how data-path calls are audited" },
    { "audit alerts", "", 0, o_audit_show, NULL, kmctl_cmd_audit_alerts, VAULT_OPEN, "",
      "entries worth an alert: denied use, failed logins, compromised versions used" },
    { "principal add", "NAME", 1, o_principal_add, NULL, kmctl_cmd_principal_add, VAULT_OPEN, "",
      "add a principal (ROLES: admin,custodian,user,auditor) with its own keyslot" },
    { "principal remove", "NAME", 1, o_principal_remove, NULL, kmctl_cmd_principal_remove,
      VAULT_OPEN, "", "offboard a principal: its keyslot, grants and keys (--revoke-keys), "
      "with a new master key (--rotate-master)" },
    { "principal list", "", 0, o_json, NULL, kmctl_cmd_principal_list, VAULT_OPEN, "",
      "list the principals: NAME<tab>ROLES<tab>CREATED" },
    { "whoami", "", 0, o_json, NULL, kmctl_cmd_whoami, VAULT_OPEN, "",
      "who this vault was opened as, and the roles" },
    { "key grant", "NAME GRANTEE", 2, o_grant, NULL, kmctl_cmd_key_grant, VAULT_OPEN, "",
      "grant permissions on a key to a principal or role:ROLE (--perms none revokes)" },
    { "request create", "OP", 1, o_request, NULL, kmctl_cmd_request_create, VAULT_OPEN, "> id",
      "ask for dual-control approval of OP (destroy, export, import-raw, policy-change, "
      "principal-add, principal-remove, rekey, keyslot-add, keyslot-remove)" },
    { "request approve", "ID", 1, o_none, NULL, kmctl_cmd_request_approve, VAULT_OPEN, "",
      "approve a request as a custodian" },
    { "request show", "ID", 1, o_json, NULL, kmctl_cmd_request_show, VAULT_OPEN, "",
      "show a request's approvals and expiry" },
    { "backend add tpm2", "", 0, o_tcti, NULL, kmctl_cmd_backend_add_tpm2, VAULT_OPEN, "",
      "register a TPM 2.0 (TCTI: swtpm:host=H,port=P or device:/dev/tpmrm0) for --protection tpm2" },
    { "backend add pkcs11", "", 0, o_pkcs11, NULL, kmctl_cmd_backend_add_pkcs11, VAULT_OPEN, "",
      "register a PKCS#11 token for --protection pkcs11 (PIN: KM_PKCS11_PIN, or --store-pin)" },
    { "backend add kmip", "", 0, o_kmip, NULL, kmctl_cmd_backend_add_kmip, VAULT_OPEN, "",
      "register a KMIP key server (mutual TLS) for --protection kmip" },
    { "backend list", "", 0, o_json, NULL, kmctl_cmd_backends_json, VAULT_NONE, "",
      "list the key backends this libkm has, one name per line (no vault)" },
    { "backend tokens", "", 0, o_module_json, NULL, kmctl_cmd_tokens_json, VAULT_NONE, "",
      "list the tokens of a PKCS#11 module: SERIALISED-ID<tab>LABEL per line (no vault, no PIN)" },
    { "keyslot add tpm2", "", 0, o_tpm_slot, NULL, kmctl_cmd_keyslot_add_tpm2, VAULT_OPEN, "",
      "seal the master key to a TPM: the vault then opens with KM_TPM2_TCTI, no passphrase" },
    { "keyslot add kmip", "", 0, o_kmip, NULL, kmctl_cmd_keyslot_add_kmip, VAULT_OPEN, "",
      "seal the master key with a KMIP server's key: the vault then opens with KM_KMIP_CONFIG" },
    { "vault compact", "", 0, o_none, NULL, kmctl_cmd_vault_compact, VAULT_OPEN, "",
      "rewrite the vault file without free pages (no stale sealed copies left)" },
    { "vault rekey", "", 0, o_rekey, NULL, kmctl_cmd_vault_rekey, VAULT_OPEN, "",
      "new master key, everything resealed; every keyslot replaced by the new passphrase" },
    { "keyslot add shares", "", 0, o_shares, NULL, kmctl_cmd_keyslot_add_shares, VAULT_OPEN, "",
      "split a new keyslot into N custodian shares, any M of which open the vault" },
    { "keyslot remove passphrases", "", 0, o_none, NULL, kmctl_cmd_keyslot_remove_passphrases,
      VAULT_OPEN, "", "remove the owner passphrase keyslots (others must remain)" },
    { "backup", "FILE", 1, o_none, NULL, kmctl_cmd_backup, VAULT_OPEN, "",
      "write a consistent, still sealed copy of the vault to FILE (while others write)" },
    { "restore", "FILE DIR", 2, o_none, NULL, kmctl_cmd_restore, VAULT_NONE, "",
      "make the backup FILE a vault in DIR (never overwrites a vault)" },
    { "unseal", "", 0, o_none, NULL, kmctl_cmd_unseal, VAULT_KMD, "",
      "send --share-file shares to a sealed kmd (--vault kmd:SOCKET)" },
    { "vault copy", "SRC DST", 2, o_none, NULL, kmctl_cmd_vault_copy, VAULT_OPEN, "",
      "copy the vault SRC (lmdb:DIR, etcd://HOST:PORT/PREFIX) into the empty DST and verify it" },
    { "key rename", "NAME NEWNAME", 2, o_none, NULL, kmctl_cmd_key_rename, VAULT_OPEN, "",
      "rename a key (its id, ciphertexts, grants and aliases stay)" },
    { "key alias", "NAME ALIAS", 2, o_alias, NULL, kmctl_cmd_key_alias, VAULT_OPEN, "",
      "give a key another name; --move takes the alias from the key that has it" },
    { "key unalias", "ALIAS", 1, o_none, NULL, kmctl_cmd_key_unalias, VAULT_OPEN, "",
      "remove an alias" },
    { "key describe", "NAME TEXT", 2, o_none, NULL, kmctl_cmd_key_describe, VAULT_OPEN, "",
      "set a key's description (\"\" removes it)" },
    { "key tag", "NAME TAG=VALUE", 2, o_none, NULL, kmctl_cmd_key_tag, VAULT_OPEN, "",
      "set a tag of a key" },
    { "key untag", "NAME TAG", 2, o_none, NULL, kmctl_cmd_key_untag, VAULT_OPEN, "",
      "remove a tag of a key" },
    { "key set", "NAME", 1, o_key_set, NULL, kmctl_cmd_key_set, VAULT_OPEN, "",
      "change a key's settings: rotation, usage (narrower), not exportable, own policy (stricter), "
      "deletion protection, version window" },
    { "key trim", "NAME", 1, o_trim, NULL, kmctl_cmd_key_trim, VAULT_OPEN, "",
      "retire the versions below the minimum decryption version (deactivated, then destroyed after the grace)" },
    { "key purge", "NAME", 1, o_none, NULL, kmctl_cmd_key_purge, VAULT_OPEN, "",
      "remove a destroyed key's records once the policy's retention is over (frees its name)" },
    { "key backup", "NAME", 1, o_key_backup, NULL, kmctl_cmd_key_backup, VAULT_OPEN, "> backup",
      "back up one key with its history, to another vault's wrapping key or under a passphrase" },
    { "key restore", "FILE", 1, o_key_restore, NULL, kmctl_cmd_key_restore, VAULT_OPEN, "",
      "restore a key backup into this vault (prints the key id)" },
    { "key grants", "NAME", 1, o_json, NULL, kmctl_cmd_key_grants, VAULT_OPEN, "",
      "list a key's grants: GRANTEE<tab>PERMS (an admin or auditor sees all)" },
    { "datakey decrypt", "", 0, o_datakey_decrypt, NULL, kmctl_cmd_datakey_decrypt, VAULT_OPEN,
      "< wrapped > key", "unwrap a data key or a data key pair's private key (PKCS#8 DER)" },
    { "datakey-pair", "NAME", 1, o_datakey_pair, NULL, kmctl_cmd_datakey_pair, VAULT_OPEN,
      "> wrapped", "a key pair of --type: private key wrapped under NAME, public key to FILE" },
    { "rsa-encrypt", "NAME", 1, o_rsa, NULL, kmctl_cmd_rsa_encrypt, VAULT_OPEN, "< plain > cipher",
      "RSA-OAEP encryption of stdin to the key's public key (the key's digest, --label)" },
    { "rsa-decrypt", "NAME", 1, o_rsa, NULL, kmctl_cmd_rsa_decrypt, VAULT_OPEN, "< cipher > plain",
      "RSA-OAEP decryption of stdin (the key's digest, --label; an empty message is empty)" },
    { "random", "N", 1, o_random, NULL, kmctl_cmd_random, VAULT_OPEN, "> bytes",
      "N random bytes (1..1048576) from the DRBG, or a device's generator with --protection" },
    { "derive", "NAME N", 2, o_derive, NULL, kmctl_cmd_derive, VAULT_OPEN, "> secret",
      "N bytes (1..8160) derived with HKDF-SHA-256 from an HMAC key with the derive usage" },
    { "sign-digest", "NAME", 1, o_sign_digest, NULL, kmctl_cmd_sign_digest, VAULT_OPEN,
      "< digest > sig", "sign a digest computed elsewhere (binary on stdin): the raw signature" },
    { "key perms", "NAME", 1, o_json, NULL, kmctl_cmd_key_perms, VAULT_OPEN, "",
      "what this principal may do with a key: PERMS (encrypt,decrypt,...)" },
    { "audit level show", "", 0, o_json, NULL, kmctl_cmd_audit_level_show, VAULT_OPEN, "",
      "print the data-path audit level (none, counters or every)" },
    { "keyslot add passphrase", "", 0, o_add_passphrase, NULL, kmctl_cmd_keyslot_add_passphrase,
      VAULT_OPEN, "", "one more owner passphrase opens the vault (from --new-passphrase-file)" },
    { "backend add pkcs11-card", "", 0, o_tokens, NULL, kmctl_cmd_backend_add_card, VAULT_OPEN, "",
      "register the PKCS#11 module whose certificate-bound keys (smart cards) key link enters" },
    { "backend certificates", "", 0, o_module_json, NULL, kmctl_cmd_backend_certificates,
      VAULT_NONE, "", "list a module's certificate-bound keys: CERT-ID<tab>LABEL<tab>TOKEN (no vault)" },
    { "key link", "NAME", 1, o_key_link, NULL, kmctl_cmd_key_link, VAULT_OPEN, "",
      "enter a card's certificate-bound key as key NAME (sign, verify; prints its id)" },
    { "agree", "NAME PEERFILE", 2, o_agree, NULL, kmctl_cmd_agree, VAULT_OPEN, "> secret",
      "key agreement with a peer public key (SPKI DER or PEM): N bytes of HKDF-SHA-256, or with --raw the shared secret (usage agree-raw)" },
    { "version", "", 0, o_json, NULL, cmd_version, VAULT_NONE, "", "print the kmctl and libkm versions" },
    { "help", "", 0, o_none, NULL, cmd_help, VAULT_NONE, "", "print this help" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ------------------------------------------------------------ help */

static void synopsis(FILE *f, const struct kmctl_cmd *c)
{
    const struct kmctl_optspec *o;

    fprintf(f, "kmctl %s", c->words);
    if (c->positional[0] != '\0')
        fprintf(f, " %s", c->positional);
    for (o = c->opts; o->name != NULL; o++) {
        const char *open = o->required ? "" : "[", *close = o->required ? "" : "]";
        if (o->metavar != NULL)
            fprintf(f, " %s--%s %s%s", open, o->name, o->metavar, close);
        else
            fprintf(f, " %s--%s%s", open, o->name, close);
    }
    if (c->io[0] != '\0')
        fprintf(f, " %s", c->io);
}

static const char exit_help[] =
    "Exit status:\n"
    "  0  success (verify, mac-verify: the signature or MAC is valid)\n"
    "  1  usage error or invalid input (KM_E_INVALID; an unreadable file named on the command line)\n"
    "  2  not found (KM_E_NOTFOUND: no such key, version or vault)\n"
    "  3  already exists (KM_E_EXISTS)\n"
    "  4  refused: policy, access, key state, key usage or usage limit\n"
    "     (KM_E_POLICY, KM_E_DENIED, KM_E_STATE, KM_E_USAGE, KM_E_LIMIT)\n"
    "  5  authentication failed: wrong passphrase (KM_E_AUTH)\n"
    "  6  integrity: altered data, wrong aad, invalid signature or MAC, corrupt vault\n"
    "     (KM_E_INTEGRITY, KM_E_VERIFY, KM_E_CORRUPT)\n"
    "  7  backend, storage or crypto library failure (KM_E_BACKEND, KM_E_IO, KM_E_FULL, KM_E_CRYPTO)\n"
    "  8  unsupported (KM_E_UNSUPPORTED), or not available in this libkm version\n"
    "  9  any other error (out of memory, the output cannot be written, ...)\n";

/* "Key types: ..." from the library (km_key_type_name of 1, 2, ... until NULL),
 * wrapped before column 83. */
static void key_types(FILE *f)
{
    const char *n;
    size_t col;
    int t;

    fputs("\nKey types:", f);
    col = strlen("Key types:");
    for (t = 1; (n = km_key_type_name((km_key_type)t)) != NULL; t++) {
        if (col + 1 + strlen(n) > 82) {
            fputs("\n ", f);
            col = 1;
        }
        fprintf(f, " %s", n);
        col += 1 + strlen(n);
    }
    fputc('\n', f);
}

static void help(FILE *f)
{
    size_t i;
    int pass;

    fputs("usage: kmctl [--vault DIR] [--passphrase-file FILE] [--principal NAME]\n"
          "             [--share-file FILE]... [--audit-json FILE] [--audit-syslog]\n"
          "             COMMAND [ARGS] [OPTIONS]\n\n"
          "Manages the keys of a libkm vault. The vault is --vault DIR or $KM_VAULT; the\n"
          "passphrase is read from --passphrase-file FILE (one trailing newline stripped)\n"
          "or $KM_PASSPHRASE, never from an argument. With --principal NAME (or\n"
          "$KM_PRINCIPAL) the passphrase is that principal's own credential. With\n"
          "--share-file FILE given M times, custodians' shares open the vault instead;\n"
          "with no passphrase given and $KM_TPM2_TCTI set, the vault's TPM keyslot does,\n"
          "and with $KM_KMIP_CONFIG set, its KMIP keyslot does.\n"
          "--audit-json FILE appends the audit entries of this run to FILE as JSON\n"
          "lines, --audit-syslog sends them to syslog, besides the vault's own log.\n"
          "Errors go to stderr.\n", f);
    for (pass = 0; pass < 2; pass++) {
        int any = 0;
        for (i = 0; i < NCOMMANDS; i++)
            any |= (commands[i].run == NULL) == (pass == 1);
        if (!any)
            continue;
        fputs(pass == 0 ? "\nCommands:\n" : "\nParsed, but not available in this libkm version (exit 8):\n", f);
        for (i = 0; i < NCOMMANDS; i++) {
            if ((commands[i].run == NULL) != (pass == 1))
                continue;
            fputs("  ", f);
            synopsis(f, &commands[i]);
            fprintf(f, "\n      %s\n", commands[i].summary);
        }
    }
    key_types(f);
    fputs("Options may also be given as --name=value; -- ends the options.\n"
          "kmctl COMMAND --help shows one command's synopsis. See kmctl(1).\n\n", f);
    fputs(exit_help, f);
}

static int cmd_help(struct kmctl *k, const struct kmctl_args *a)
{
    (void)k;
    (void)a;
    help(stdout);
    return KMCTL_EXIT_OK;
}

static int cmd_version(struct kmctl *k, const struct kmctl_args *a)
{
    (void)k;
    if (a->val[OPT_JSON] != NULL)
        return kmctl_version_json(KM_VERSION_STRING, km_version());
    if (printf("kmctl %s (libkm %s)\n", KM_VERSION_STRING, km_version()) < 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output failed");
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ the parser */

#define KMCTL_SHARES_MAX 32

struct globals {
    const char *vault;
    const char *passphrase_file;
    int help;
    const char *principal;                 /* --principal NAME or $KM_PRINCIPAL */
    const char *share_files[KMCTL_SHARES_MAX]; /* --share-file FILE, repeated */
    int nshares;
    const char *audit_json;                /* --audit-json FILE: this run's audit entries */
    int audit_syslog;                      /* --audit-syslog */
};

static int usage_error(const struct kmctl_cmd *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct kmctl_cmd *c, const char *fmt, ...)
{
    va_list ap;

    fputs("kmctl: ", stderr);
    if (c != NULL)
        fprintf(stderr, "%s: ", c->words);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c != NULL) {
        fputs("usage: ", stderr);
        synopsis(stderr, c);
        fputc('\n', stderr);
    } else {
        fputs("Try 'kmctl --help'.\n", stderr);
    }
    return KMCTL_EXIT_USAGE;
}

/*
 * Takes a global option at argv[*i] if it is one: returns 1 (taken), 0 (not a
 * global option) or -1 (a usage error, reported).
 */
static int global_option(int argc, char **argv, int *i, struct globals *g, const struct kmctl_cmd *c)
{
    static const char *const names[] = { "vault", "passphrase-file", "principal", "share-file",
                                         "audit-json" };
    const char *arg = argv[*i], *eq;
    size_t n, j;

    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        g->help = 1;
        return 1;
    }
    if (strcmp(arg, "--audit-syslog") == 0) {
        g->audit_syslog = 1;
        return 1;
    }
    if (strncmp(arg, "--", 2) != 0)
        return 0;
    arg += 2;
    eq = strchr(arg, '=');
    n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    for (j = 0; j < sizeof names / sizeof names[0]; j++) {
        const char *v;
        if (strlen(names[j]) != n || strncmp(arg, names[j], n) != 0)
            continue;
        if (eq != NULL) {
            v = eq + 1;
        } else if (*i + 1 < argc) {
            v = argv[++*i];
        } else {
            usage_error(c, "--%s needs an argument", names[j]);
            return -1;
        }
        if (j == 0) {
            g->vault = v;
        } else if (j == 1) {
            g->passphrase_file = v;
        } else if (j == 2) {
            g->principal = v;
        } else if (j == 4) {
            if (v[0] == '\0') {
                usage_error(c, "--audit-json needs a file name");
                return -1;
            }
            g->audit_json = v;
        } else {
            if (g->nshares == KMCTL_SHARES_MAX) {
                usage_error(c, "at most %d --share-file options", KMCTL_SHARES_MAX);
                return -1;
            }
            g->share_files[g->nshares++] = v;
        }
        return 1;
    }
    return 0;
}

/* Splits "key create" into the words of argv[i..]: the number of words matched, or 0. */
static int match_words(const char *words, int argc, char **argv, int i)
{
    int n = 0;

    while (*words != '\0') {
        size_t len = strcspn(words, " ");
        if (i + n >= argc || strlen(argv[i + n]) != len || strncmp(argv[i + n], words, len) != 0)
            return 0;
        n++;
        words += len;
        if (*words == ' ')
            words++;
    }
    return n;
}

static int is_group(const char *w)
{
    size_t i, n = strlen(w);

    for (i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].words, w, n) == 0 && commands[i].words[n] == ' ')
            return 1;
    return 0;
}

static int group_error(const char *group, const char *sub)
{
    size_t i, n = strlen(group);

    if (sub != NULL && sub[0] != '-')
        fprintf(stderr, "kmctl: unknown '%s' command '%s'; one of:", group, sub);
    else
        fprintf(stderr, "kmctl: '%s' needs a command; one of:", group);
    for (i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].words, group, n) == 0 && commands[i].words[n] == ' ')
            fprintf(stderr, " %s", commands[i].words + n + 1);
    fputs("\nTry 'kmctl --help'.\n", stderr);
    return KMCTL_EXIT_USAGE;
}

static const struct kmctl_optspec *find_opt(const struct kmctl_cmd *c, const char *name, size_t n)
{
    const struct kmctl_optspec *o;

    for (o = c->opts; o->name != NULL; o++)
        if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
            return o;
    return NULL;
}

static int set_option(const struct kmctl_cmd *c, const struct kmctl_optspec *o, const char *v,
                      struct kmctl_args *a)
{
    if (a->val[o->id] != NULL)
        return usage_error(c, "--%s given twice", o->name);
    if (o->kind == ARG_UINT && kmctl_parse_uint(v, o->max, &a->num[o->id]) != 0) {
        return usage_error(c, "--%s: not a valid number '%s' (a whole number from 1 to %llu)", o->name, v,
                           (unsigned long long)o->max);
    }
    if (o->kind == ARG_DATE && kmctl_parse_date(v, &a->date[o->id]) != 0)
        return usage_error(c, "--%s: not a date '%s' (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)",
                           o->name, v);
    a->val[o->id] = v;
    return KMCTL_EXIT_OK;
}

/* Parses argv[i..] for command c into a. Returns an exit code (0: go on). */
static int parse_command(const struct kmctl_cmd *c, int argc, char **argv, int i, struct globals *g,
                         struct kmctl_args *a)
{
    const struct kmctl_optspec *o;
    int only_pos = 0, rc;

    for (; i < argc; i++) {
        const char *arg = argv[i], *eq, *name;
        size_t n;

        if (only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (a->npos == c->npos || a->npos == (int)(sizeof a->pos / sizeof a->pos[0]))
                return usage_error(c, "unexpected argument '%s'", arg);
            a->pos[a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if ((rc = global_option(argc, argv, &i, g, c)) < 0)
            return KMCTL_EXIT_USAGE;
        if (rc > 0)
            continue;
        if (strncmp(arg, "--", 2) != 0)
            return usage_error(c, "unknown option '%s'", arg);
        name = arg + 2;
        eq = strchr(name, '=');
        n = eq != NULL ? (size_t)(eq - name) : strlen(name);
        if ((o = find_opt(c, name, n)) == NULL)
            return usage_error(c, "unknown option '%s'", arg);
        if (o->metavar == NULL) {
            if (eq != NULL)
                return usage_error(c, "--%s takes no value", o->name);
            rc = set_option(c, o, "", a);
        } else if (eq != NULL) {
            rc = set_option(c, o, eq + 1, a);
        } else if (i + 1 < argc) {
            rc = set_option(c, o, argv[++i], a);
        } else {
            return usage_error(c, "--%s needs an argument %s", o->name, o->metavar);
        }
        if (rc != KMCTL_EXIT_OK)
            return rc;
    }
    if (g->help)
        return KMCTL_EXIT_OK;
    if (a->npos < c->npos)
        return usage_error(c, "missing %s", c->positional);
    for (o = c->opts; o->name != NULL; o++)
        if (o->required && a->val[o->id] == NULL)
            return usage_error(c, "missing --%s %s", o->name, o->metavar ? o->metavar : "");
    return KMCTL_EXIT_OK;
}

/* ------------------------------------------------------------ main */

/* Reads the share files: one "kms1:..." text each, trailing newline stripped. */
static int read_shares(const struct globals *g, km_secret **out, const char **text)
{
    size_t len;
    int i, rc;

    for (i = 0; i < g->nshares; i++) {
        if ((rc = kmctl_read_secret(g->share_files[i], 4096, &out[i], &len)) != KMCTL_EXIT_OK)
            return rc;
        while (len > 0 && (km_secret_data(out[i])[len - 1] == '\n'
                           || km_secret_data(out[i])[len - 1] == '\r'))
            len--;
        km_secret_data(out[i])[len] = '\0';   /* the buffer holds one byte more than max */
        text[i] = (const char *)km_secret_data(out[i]);
    }
    return KMCTL_EXIT_OK;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

void kmctl_etcd_tls(km_open_options *o)
{
    o->tls_ca = env_nonempty("KM_ETCD_CA");
    o->tls_cert = env_nonempty("KM_ETCD_CERT");
    o->tls_key = env_nonempty("KM_ETCD_KEY");
}

/* --audit-json FILE, --audit-syslog: the audit entries this run writes go
 * there too (km_audit_sink_file, km_audit_sink_syslog), besides the vault's log. */
static int audit_sinks(struct kmctl *k, const struct globals *g)
{
    int rc;

    if (g->audit_json != NULL && (rc = km_audit_sink_file(k->ctx, g->audit_json)) != KM_OK)
        rc = kmctl_lib_error(rc, "--audit-json: opening '%s'", g->audit_json);
    else if (g->audit_syslog && (rc = km_audit_sink_syslog(k->ctx, 1)) != KM_OK)
        rc = kmctl_lib_error(rc, "--audit-syslog");
    else
        return KMCTL_EXIT_OK;
    km_close(k->ctx);
    k->ctx = NULL;
    return rc;
}

static int open_vault(struct kmctl *k, const struct kmctl_cmd *c, const struct kmctl_args *a,
                      const struct globals *g)
{
    km_open_options o = KM_OPEN_OPTIONS_INIT;
    km_secret *pass = NULL, *shares[KMCTL_SHARES_MAX] = { NULL };
    const char *share_text[KMCTL_SHARES_MAX];
    const char *tcti = getenv("KM_TPM2_TCTI");
    const char *kmip = getenv("KM_KMIP_CONFIG");
    char tpm_config[1024];
    size_t pass_len = 0;
    int rc, i;

    k->vault = g->vault != NULL ? g->vault : getenv("KM_VAULT");
    if (strcmp(c->words, "vault copy") == 0)
        k->vault = a->pos[0];   /* the vault to copy is SRC */
    kmctl_etcd_tls(&o);
    if (k->vault == NULL || k->vault[0] == '\0')
        return kmctl_error(KMCTL_EXIT_USAGE, "no vault: use --vault DIR or set KM_VAULT");
    o.principal = g->principal != NULL ? g->principal : getenv("KM_PRINCIPAL");
    if (o.principal != NULL && o.principal[0] == '\0')
        o.principal = NULL;
    if (strncmp(k->vault, "kmd:", 4) == 0 || strncmp(k->vault, "kmip://", 7) == 0) {
        /* client mode: kmd knows who connects; no passphrase is read or sent
         * (kmip://: the client certificate from $KM_KMD_CA, _CERT, _KEY) */
        o.tls_ca = env_nonempty("KM_KMD_CA");
        o.tls_cert = env_nonempty("KM_KMD_CERT");
        o.tls_key = env_nonempty("KM_KMD_KEY");
        if (c->vault == VAULT_CREATE)
            return kmctl_error(KMCTL_EXIT_USAGE, "%s: a vault is created by kmd's user on the "
                               "vault itself, not through kmd", c->words);
        rc = km_open(&k->ctx, k->vault, &o);
        return rc == KM_OK ? KMCTL_EXIT_OK
                           : kmctl_lib_error(rc, "opening the vault through '%s'", k->vault);
    }
    if (g->nshares > 0) {
        /* custodians' shares of a Shamir keyslot, one per file, instead of a passphrase */
        if ((rc = read_shares(g, shares, share_text)) != KMCTL_EXIT_OK)
            goto out;
        o.shares = share_text;
        o.share_count = (size_t)g->nshares;
    } else if (g->passphrase_file == NULL && getenv("KM_PASSPHRASE") == NULL
               && kmip != NULL && kmip[0] != '\0' && c->vault != VAULT_CREATE) {
        /* no passphrase but a KMIP configuration: open with the vault's KMIP keyslot */
        o.slot_backend = "kmip";
        o.slot_config = kmip;
    } else if (g->passphrase_file == NULL && getenv("KM_PASSPHRASE") == NULL
               && tcti != NULL && tcti[0] != '\0' && c->vault != VAULT_CREATE) {
        /* no passphrase but a TPM: open with the vault's TPM keyslot */
        if ((size_t)snprintf(tpm_config, sizeof tpm_config, "tcti=%s", tcti)
            >= sizeof tpm_config)
            return kmctl_error(KMCTL_EXIT_USAGE, "KM_TPM2_TCTI is too long");
        o.slot_backend = "tpm2";
        o.slot_config = tpm_config;
    } else {
        if ((rc = kmctl_passphrase(g->passphrase_file, &pass, &pass_len)) != KMCTL_EXIT_OK)
            return rc;
        o.passphrase = km_secret_data(pass);
        o.passphrase_len = pass_len;
    }
    if (c->vault == VAULT_CREATE) {
        o.flags = KM_OPEN_CREATE | KM_OPEN_EXCL;
        o.kdf_cost = a->val[OPT_KDF_COST] != NULL ? (uint32_t)a->num[OPT_KDF_COST] : 0;
    }
    rc = km_open(&k->ctx, k->vault, &o);
    if (rc != KM_OK)
        rc = kmctl_lib_error(rc, "%s vault '%s'", c->vault == VAULT_CREATE ? "creating" : "opening",
                             k->vault);
    else
        rc = audit_sinks(k, g);
out:
    km_secret_free(pass);
    for (i = 0; i < g->nshares; i++)
        km_secret_free(shares[i]);
    return rc;
}

int main(int argc, char **argv)
{
    struct globals g;
    struct kmctl_args a;
    struct kmctl k = { NULL, NULL, NULL, 0 };
    const struct kmctl_cmd *c = NULL;
    int i = 1, best = 0, rc, out_rc;
    size_t j;

    /* A closed pipe is reported as a write error (exit 9), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    memset(&a, 0, sizeof a);
    memset(&g, 0, sizeof g);

    /* global options before the command */
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--version") == 0)
            return cmd_version(&k, &a) != KMCTL_EXIT_OK ? KMCTL_EXIT_OTHER : kmctl_finish_stdout();
        if ((rc = global_option(argc, argv, &i, &g, NULL)) < 0)
            return KMCTL_EXIT_USAGE;
        if (rc == 0)
            return usage_error(NULL, "unknown option '%s'", argv[i]);
        i++;
    }
    if (i >= argc) {
        if (g.help) {
            help(stdout);
            return kmctl_finish_stdout();
        }
        help(stderr);
        return KMCTL_EXIT_USAGE;
    }
    for (j = 0; j < NCOMMANDS; j++) {
        int n = match_words(commands[j].words, argc, argv, i);
        if (n > best) {
            best = n;
            c = &commands[j];
        }
    }
    if (c == NULL) {
        if (is_group(argv[i]))
            return group_error(argv[i], i + 1 < argc ? argv[i + 1] : NULL);
        return usage_error(NULL, "unknown command '%s'", argv[i]);
    }
    a.cmd = c->words;
    if ((rc = parse_command(c, argc, argv, i + best, &g, &a)) != KMCTL_EXIT_OK)
        return rc;
    if (g.help) {
        fputs("usage: ", stdout);
        synopsis(stdout, c);
        printf("\n  %s\n", c->summary);
        return kmctl_finish_stdout();
    }
    if (c->check != NULL && (rc = c->check(&a)) != KMCTL_EXIT_OK)
        return rc;
    if (c->run == NULL)
        return kmctl_unsupported(c->words);
    if (c->vault == VAULT_KMD) {
        /* a kmd's socket, not a vault: the shares go to kmd */
        static km_secret *sh[KMCTL_SHARES_MAX];
        static const char *text[KMCTL_SHARES_MAX];
        k.vault = g.vault != NULL ? g.vault : getenv("KM_VAULT");
        if (k.vault == NULL || strncmp(k.vault, "kmd:", 4) != 0 || k.vault[4] == '\0')
            return kmctl_error(KMCTL_EXIT_USAGE, "%s needs --vault kmd:SOCKET", c->words);
        if (g.nshares == 0)
            return kmctl_error(KMCTL_EXIT_USAGE, "%s needs --share-file FILE", c->words);
        if ((rc = read_shares(&g, sh, text)) != KMCTL_EXIT_OK)
            return rc;
        k.shares = text;
        k.nshares = (size_t)g.nshares;
        rc = c->run(&k, &a);
        for (j = 0; j < (size_t)g.nshares; j++)
            km_secret_free(sh[j]);
        out_rc = kmctl_finish_stdout();
        return rc != KMCTL_EXIT_OK ? rc : out_rc;
    }
    kmctl_card_pin();
    if (c->vault != VAULT_NONE && (rc = open_vault(&k, c, &a, &g)) != KMCTL_EXIT_OK)
        return rc;
    if (k.ctx != NULL && isatty(STDERR_FILENO))
        (void)km_set_progress(k.ctx, kmctl_progress, NULL);
    rc = c->run(&k, &a);
    km_close(k.ctx);
    out_rc = kmctl_finish_stdout();
    return rc != KMCTL_EXIT_OK ? rc : out_rc;
}
