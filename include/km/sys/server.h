/**
 * @file km/sys/server.h
 * @brief API for servers that authenticate their clients themselves (kmd).
 *
 * A key server (kmd, docs/KMD.md) owns the vault: it opens it once, as the
 * owner or with an unattended keyslot, and its clients never hold the master
 * key nor a credential of the vault. The server authenticates each client
 * itself (the peer's uid on a Unix socket, a TLS client certificate) and maps
 * it to a principal of the vault (km/acl.h). km_ctx_delegate() gives it a
 * context that acts as that principal, without the principal's passphrase:
 * every call made through it is decided, refused and audited exactly as if
 * the principal had opened the vault itself with km_open_options::principal.
 *
 * Who may delegate: only a context opened by the vault's owner passphrase, a
 * device keyslot (tpm2, pkcs11, kmip, ...) or the custodians' Shamir shares,
 * that is a context holding every right. A principal's context (even an
 * admin's) cannot delegate, nor can a delegated context: a principal never
 * acts as another.
 */
#ifndef KM_SYS_SERVER_H
#define KM_SYS_SERVER_H

#include "../common.h"
#include "../vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest peer description km_ctx_delegate() accepts (bytes, without the NUL). */
#define KM_PEER_MAX 56

/**
 * A context acting as an existing principal over the vault `srv` has open.
 *
 * The new context shares `srv`'s store (one environment, no second open of
 * the files) and holds its own copy of the master key in secure memory; it
 * has its own key cache, policy view and audit state, and takes `srv`'s
 * clock, refresh interval, flags and audit sinks (syslog, the JSON-lines
 * file) as they are at the call. Close it with km_close(); it may outlive
 * `srv` (each holds its own reference to the store).
 *
 * Rights: the principal's roles, its grants, its roles' grants and the keys
 * it owns (km/acl.h), re-read like those of any principal context: at once
 * after a change made in this process, and another process's change within
 * `srv`'s refresh interval (km_open_options::refresh_ms, at most 5 s). A
 * principal removed afterwards is refused (KM_E_DENIED, audited) on its next
 * call through the context. Keys it creates are owned by it.
 *
 * Audit: every entry written through the context names the principal and
 * the peer: the entry's principal reads `principal via peer` (for example
 * "alice via uid:1000", docs/FORMATS.md), the peer being stored in its own
 * field of the entry.
 *
 * Not through a delegated context: km_vault_rekey() and km_vault_compact()
 * (KM_E_UNSUPPORTED; they belong to the server's own context, and a rekey
 * made by `srv` leaves the delegated contexts with the old master key: close
 * and delegate them again). While any delegated context is open,
 * km_vault_compact() of `srv` returns KM_E_BUSY (the store is shared).
 *
 * @param[in]  srv        a context opened by the owner, a device keyslot or
 *                        Shamir shares (not by a principal, not delegated).
 * @param[in]  principal  the name of an existing principal (1 to 64 bytes).
 * @param[in]  peer       who is connected, as the server authenticated it:
 *                        1 to KM_PEER_MAX printable ASCII bytes, e.g.
 *                        "uid:1000" or "tls:CN=app1"; never a secret.
 * @param[out] out        the new context (close it with km_close()), NULL on error.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL argument, a bad principal name or peer;
 *         KM_E_DENIED when `srv` is a principal's or a delegated context;
 *         KM_E_AUTH when no principal of that name exists;
 *         KM_E_STATE when `srv` was closed; KM_E_FORK in a forked child;
 *         KM_E_NOMEM; KM_E_CORRUPT, KM_E_IO from the vault.
 *
 * Thread-safe: many threads may delegate from one `srv` at once.
 * kmctl: none (kmd calls it for each authenticated connection).
 */
KM_EXTERN int km_ctx_delegate(km_ctx *srv, const char *principal, const char *peer,
                              km_ctx **out) KM_WUR;

/**
 * Records an event of the server's own in the vault's audit log, such as a
 * custodian's share received while unsealing (operation "vault.open",
 * principal: who opened `srv`). Only a context that may delegate (see
 * above) may write one.
 *
 * @param[in] srv     the server's context.
 * @param[in] detail  1 to 200 printable ASCII bytes, never a secret (name the
 *                    peer in it, e.g. "unseal share 1 of 3 from uid:1000").
 * @return KM_OK; KM_E_INVALID (NULL, an empty, too long or non-printable
 *         detail); KM_E_DENIED (a principal's or delegated context);
 *         KM_E_STATE (srv was closed); KM_E_FORK; KM_E_NOMEM; KM_E_FULL,
 *         KM_E_IO (the entry could not be written).
 * Thread-safe. kmctl: none (kmd writes its unseal events with it).
 */
KM_EXTERN int km_server_audit(km_ctx *srv, const char *detail) KM_WUR;

/**
 * @name kmd's vendor extension: Unseal
 * A kmd started sealed (docs/KMD.md) holds no vault until custodians send
 * M shares of the vault's Shamir keyslot (km_vault_add_shares), one per
 * request: KMIP operation KM_KMD_OP_UNSEAL whose payload carries the share
 * text ("kms1:...") as a Byte String tagged KM_KMD_TAG_SHARE. The response
 * payload carries two Integers, the distinct shares kmd holds
 * (KM_KMD_TAG_SHARES_HAVE) and how many the keyslot needs
 * (KM_KMD_TAG_SHARES_NEED); equal when kmd is unsealed.
 * @{
 */
#define KM_KMD_OP_UNSEAL 0x80000001u        /**< KMIP extension operation */
#define KM_KMD_TAG_SHARE 0x540001u          /**< Byte String: one share's text */
#define KM_KMD_TAG_SHARES_HAVE 0x540002u    /**< Integer: distinct shares held */
#define KM_KMD_TAG_SHARES_NEED 0x540003u    /**< Integer: shares the keyslot needs */
/** @} */

/**
 * Sends one custodian share to a sealed kmd listening on the Unix socket
 * `socket_path` (the client side of kmd's Unseal extension, above).
 *
 * @param[in]  socket_path  kmd's socket.
 * @param[in]  share        the share text "kms1:..." (NUL-terminated).
 * @param[out] have         distinct shares kmd holds now (may be NULL).
 * @param[out] need         shares the keyslot needs (may be NULL); have ==
 *                          need when this share unsealed kmd.
 * @return KM_OK;
 *         KM_E_INVALID for a NULL argument or a share that is no "kms1:" text;
 *         KM_E_IO when kmd cannot be reached or answers something else;
 *         KM_E_AUTH when kmd refused the share (of another split, or the
 *         shares did not open the vault: kmd then forgets every share held);
 *         KM_E_STATE when kmd is not sealed;
 *         KM_E_DENIED when kmd refused this peer (uid not mapped).
 *         km_error_last() carries kmd's message.
 * kmctl: unseal.
 */
KM_EXTERN int km_server_unseal(const char *socket_path, const char *share, unsigned *have,
                               unsigned *need) KM_WUR;


/**
 * @name kmd's vendor extension: the libkm call (client mode)
 * A context opened on kmd (km_open() with `kmd:/path/kmd.sock` or
 * `kmip://host:port`, docs/KMD.md) runs each libkm function in kmd as the
 * connection's principal with one KMIP request of operation KM_KMD_OP_CALL.
 * Request payload: the function (Integer KM_KMD_TAG_FUNCTION, a KM_KMD_FN_*
 * value), then its arguments in order, each an item tagged KM_KMD_TAG_ARG
 * (Long Integer for numbers and output capacities, Text String, Byte String
 * for bytes and key ids, Boolean false for a NULL pointer, a Structure for
 * an option struct; docs/KMD.md lists each function's arguments). Response
 * payload: libkm's return code (Integer KM_KMD_TAG_RC), its error detail
 * when not KM_OK (Text String KM_KMD_TAG_MESSAGE), then the outputs, each
 * tagged KM_KMD_TAG_OUT. A call kmd cannot read is refused with the result
 * reason Invalid Message.
 * @{
 */
#define KM_KMD_OP_CALL 0x80000002u          /**< KMIP extension operation: one libkm call */
#define KM_KMD_TAG_FUNCTION 0x540004u       /**< Integer: the KM_KMD_FN_* called */
#define KM_KMD_TAG_ARG 0x540005u            /**< one argument (type by the function) */
#define KM_KMD_TAG_RC 0x540006u             /**< Integer: libkm's return code */
#define KM_KMD_TAG_MESSAGE 0x540007u        /**< Text String: km_error_last()'s message */
#define KM_KMD_TAG_OUT 0x540008u            /**< one output (type by the function) */
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* KM_SYS_SERVER_H */
