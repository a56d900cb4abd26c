/* kmctl.h - shared declarations of the kmctl command-line tool (public libkm API only). */
#ifndef KMCTL_H
#define KMCTL_H

#include <stddef.h>
#include <stdint.h>

#include <km.h>

/* Exit codes: one per error class; documented in kmctl --help and kmctl(1). */
enum kmctl_exit {
    KMCTL_EXIT_OK = 0,          /* success */
    KMCTL_EXIT_USAGE = 1,       /* bad arguments, invalid input (KM_E_INVALID) */
    KMCTL_EXIT_NOTFOUND = 2,    /* KM_E_NOTFOUND */
    KMCTL_EXIT_EXISTS = 3,      /* KM_E_EXISTS */
    KMCTL_EXIT_DENIED = 4,      /* KM_E_POLICY, KM_E_DENIED, KM_E_STATE, KM_E_USAGE, KM_E_LIMIT */
    KMCTL_EXIT_AUTH = 5,        /* KM_E_AUTH */
    KMCTL_EXIT_INTEGRITY = 6,   /* KM_E_INTEGRITY, KM_E_VERIFY, KM_E_CORRUPT */
    KMCTL_EXIT_BACKEND = 7,     /* KM_E_BACKEND, KM_E_IO, KM_E_FULL, KM_E_CRYPTO */
    KMCTL_EXIT_UNSUPPORTED = 8, /* KM_E_UNSUPPORTED, or not in this libkm version */
    KMCTL_EXIT_OTHER = 9        /* anything else (out of memory, output write errors, ...) */
};

/* `key destroy` grace when --grace is not given, days. */
#define KMCTL_DESTROY_GRACE_DEFAULT 30

/* Option ids: the index of an option's value in kmctl_args. */
enum kmctl_opt_id {
    OPT_TYPE,
    OPT_PROTECTION,
    OPT_EXPORTABLE,
    OPT_USAGE,
    OPT_ROTATE_EVERY,
    OPT_JSON,
    OPT_AAD,
    OPT_TEXT,
    OPT_RAW,
    OPT_P1363,
    OPT_DER,
    OPT_VERSION,
    OPT_FORMAT,
    OPT_REASON,
    OPT_COMPROMISE_DATE,
    OPT_GRACE,
    OPT_WRAP_WITH,
    OPT_WRAPPED,
    OPT_KDF_COST,
    OPT_ACTIVATE_AT,
    OPT_PROTECT_DAYS,
    OPT_PROCESS_DAYS,
    OPT_ALLOW_COMPROMISED,
    OPT_PLAINTEXT_FILE,
    OPT_ANCHOR,
    OPT_FROM,
    OPT_ROLE,
    OPT_CREDENTIAL_FILE,
    OPT_REVOKE_KEYS,
    OPT_PERMS,
    OPT_TARGET,
    OPT_TTL,
    OPT_M,
    OPT_N,
    OPT_OUT_DIR,
    OPT_TCTI,
    OPT_MODULE,
    OPT_TOKEN_URI,
    OPT_PIN_FILE,
    OPT_STORE_PIN,
    OPT_NEW_PASS_FILE,
    OPT_PCRS,
    OPT_SERVER,
    OPT_CA,
    OPT_CERT,
    OPT_TLS_KEY,
    OPT_PROTOCOL,
    OPT_TIMEOUT,
    OPT_MOVE,
    OPT_STATE,
    OPT_TAG,
    OPT_POLICY,
    OPT_DELETION_PROTECTION,
    OPT_DELETION_PROTECTED,
    OPT_NOT_EXPORTABLE,
    OPT_MIN_DECRYPTION,
    OPT_MIN_ENCRYPTION,
    OPT_KEY_ID,
    OPT_BACKUP_PASS_FILE,
    OPT_NAME,
    OPT_HEX,
    OPT_OAEP_DIGEST,
    OPT_PKCS1,
    OPT_LABEL,
    OPT_TO,
    OPT_NEW_AAD,
    OPT_PUBLIC_OUT,
    OPT_BATCH,
    OPT_JWK,
    OPT_ROTATE_MASTER,
    OPT_KEK,
    OPT_SALT,
    OPT_INFO,
    OPT_DIGEST,
    OPT_CERT_ID,
    OPT_LENGTH,
    OPT__COUNT
};

/* The parsed command line of one command. */
struct kmctl_args {
    const char *cmd;                  /* the command words, "key create" */
    const char *pos[4];               /* positional arguments */
    int npos;
    const char *val[OPT__COUNT];      /* option values; "" for a flag given; NULL = absent */
    uint64_t num[OPT__COUNT];         /* numeric options, parsed */
    int64_t date[OPT__COUNT];         /* date options, seconds since the epoch (UTC) */
};

/* The state a command runs with. */
struct kmctl {
    km_ctx *ctx;                      /* the open vault, or NULL for commands without one */
    const char *vault;                /* --vault DIR or KM_VAULT */
    const char *const *shares;        /* "kmd:" commands: the --share-file texts */
    size_t nshares;
};

/* report.c: exit codes and messages */
int kmctl_exit_code(int km_rc);
int kmctl_lib_error(int km_rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kmctl_error(int exit_code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kmctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kmctl_unsupported(const char *what);
void kmctl_hex(const uint8_t *p, size_t n, char *out);
void kmctl_time(int64_t t, char out[32]);
int kmctl_parse_date(const char *s, int64_t *out);
int kmctl_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* io.c: binary-safe input and output */
struct kmctl_buf {
    uint8_t *p;
    size_t len, cap;
};
void kmctl_buf_free(struct kmctl_buf *b);
int kmctl_read_fd(int fd, const char *what, size_t max, struct kmctl_buf *out);
int kmctl_read_file(const char *path, size_t max, struct kmctl_buf *out);
int kmctl_read_secret(const char *path, size_t max, km_secret **out, size_t *len);
int kmctl_write(const void *p, size_t n);
int kmctl_finish_stdout(void);
int kmctl_passphrase(const char *file, km_secret **out, size_t *len);
int kmctl_text_decode_if(struct kmctl_buf *b);
int kmctl_text_write(const uint8_t *bin, size_t n);

/* commands: key management (cmd_key.c) */
int kmctl_cmd_init(struct kmctl *k, const struct kmctl_args *a);
/* cmd_kmd.c: a kmd's socket (--vault kmd:PATH) */
int kmctl_cmd_unseal(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_create(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_import(struct kmctl *k, const struct kmctl_args *a);
int kmctl_check_key_create(const struct kmctl_args *a);
int kmctl_check_key_import(const struct kmctl_args *a);
int kmctl_cmd_key_list(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_info(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_rotate(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_public(struct kmctl *k, const struct kmctl_args *a);
int kmctl_open_key(struct kmctl *k, const char *name, km_key **out);

/* commands: the lifecycle of key versions (cmd_lifecycle.c) */
int kmctl_cmd_key_activate(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_suspend(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_resume(struct kmctl *k, const struct kmctl_args *a);
int kmctl_check_key_revoke(const struct kmctl_args *a);
int kmctl_cmd_key_revoke(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_destroy(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_cancel_destroy(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_maintain(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_export(struct kmctl *k, const struct kmctl_args *a);
int kmctl_check_export(const struct kmctl_args *a);
int kmctl_cmd_wrapping_key(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_datakey(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_rewrap(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_policy_show(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_policy_check(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_policy_set(struct kmctl *k, const struct kmctl_args *a);

/* commands: using keys (cmd_data.c) */
int kmctl_cmd_encrypt(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_decrypt(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_sign(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_verify(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_mac(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_mac_verify(struct kmctl *k, const struct kmctl_args *a);

/* commands: audit, principals, grants, requests, share keyslots (cmd_access.c) */
int kmctl_cmd_audit_verify(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_audit_show(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_audit_head(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_audit_level(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_audit_alerts(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_principal_add(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_principal_remove(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_principal_list(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_whoami(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_grant(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_request_create(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_request_approve(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_request_show(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_keyslot_add_shares(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_keyslot_remove_passphrases(struct kmctl *k, const struct kmctl_args *a);

/* commands: TPM and PKCS#11 registration, the TPM keyslot (cmd_backend.c) */
int kmctl_cmd_backend_add_tpm2(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_add_kmip(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_keyslot_add_kmip(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_add_pkcs11(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_tokens(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_list(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_keyslot_add_tpm2(struct kmctl *k, const struct kmctl_args *a);

/* vault maintenance and the progress line (cmd_backend.c) */
int kmctl_cmd_vault_compact(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_vault_rekey(struct kmctl *k, const struct kmctl_args *a);
void kmctl_progress(const char *what, uint64_t done, uint64_t total, void *arg);

/* commands: backup and restore (cmd_backup.c) */
int kmctl_cmd_backup(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_restore(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_vault_copy(struct kmctl *k, const struct kmctl_args *a);
/* main.c: the TLS files of an etcd:// vault from KM_ETCD_CA, KM_ETCD_CERT and
 * KM_ETCD_KEY (unset or empty: none) into o. */
void kmctl_etcd_tls(km_open_options *o);

/* commands: a key's names and metadata (cmd_keymeta.c) */
int kmctl_cmd_key_rename(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_alias(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_unalias(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_describe(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_tag(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_untag(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_set(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_trim(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_purge(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_backup(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_grants(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_restore(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_perms(struct kmctl *k, const struct kmctl_args *a);
/* cmd_parity.c: the remaining public operations (issue 23 item 8) */
int kmctl_cmd_audit_level_show(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_keyslot_add_passphrase(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_add_card(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_backend_certificates(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_key_link(struct kmctl *k, const struct kmctl_args *a);
/* $KM_PKCS11_PIN as the PIN callback of card keys (km_pkcs11_set_pin_callback), when set. */
void kmctl_card_pin(void);
/* --json of backend list, backend tokens and version (the text forms: cmd_backend.c, main.c) */
int kmctl_cmd_backends_json(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_tokens_json(struct kmctl *k, const struct kmctl_args *a);
int kmctl_version_json(const char *kmctl_version, const char *libkm_version);
/* import --key-id HEX --version N: the options' key_id (kept in id) and import_version */
int kmctl_import_target(const struct kmctl_args *a, km_key_options *o, uint8_t id[16]);
/* request create key-set: the params of a key settings request (pf holds a read file) */
int kmctl_key_set_request_params(const struct kmctl_args *a, struct kmctl_buf *pf,
                                 const uint8_t **pp, size_t *plen);

/* commands of issue 23's operations (cmd_ops.c) */
int kmctl_cmd_random(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_rsa_encrypt(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_rsa_decrypt(struct kmctl *k, const struct kmctl_args *a);
/* --oaep-digest sha256|sha384|sha512 of key create/import into opts (0 when absent). */
int kmctl_oaep_digest(const struct kmctl_args *a, km_key_options *o);
int kmctl_cmd_datakey_decrypt(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_datakey_pair(struct kmctl *k, const struct kmctl_args *a);
/* --batch of encrypt, decrypt, sign, verify, mac, mac-verify: JSON lines in, JSON lines out;
 * and of rewrap (op KMCTL_BATCH_REWRAP, no key: km_rewrap_batch_ex, km_rewrap_ex). */
int kmctl_batch(struct kmctl *k, const struct kmctl_args *a, km_batch_op op);
#define KMCTL_BATCH_REWRAP ((km_batch_op)0) /* not a km_batch_op of libkm's (they start at 1) */
/* cmd_data.c: the KM_SIG_* flags of --raw, --p1363, --pkcs1. */
uint32_t kmctl_sig_flags(const struct kmctl_args *a);
/* cmd_data.c: writes secret bytes to a new file of mode 0600 (never an existing one). */
int kmctl_secret_file(const char *path, const uint8_t *p, size_t n);
/* cmd_data.c: derive (HKDF from an HMAC key) and sign-digest (kmctl parity, issue 23 item 8) */
int kmctl_cmd_derive(struct kmctl *k, const struct kmctl_args *a);
int kmctl_cmd_sign_digest(struct kmctl *k, const struct kmctl_args *a);
/* cmd_ops.c: agree NAME PEERFILE [--raw] (km_agree, km_agree_raw) */
int kmctl_cmd_agree(struct kmctl *k, const struct kmctl_args *a);

#endif /* KMCTL_H */
