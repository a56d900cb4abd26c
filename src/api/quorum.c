/* quorum.c - the dual-control API (km/quorum.h): creating, approving and
 * reading requests. The records and their consumption are the core's
 * (approvals.c); whether an approval may be added is the rules'
 * (rules_quorum.c). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"

typedef km__request req;

static int acl_op(km_request_op op)
{
    switch (op) {
    case KM_REQ_DESTROY: return KM__OP_KEY_DESTROY;
    case KM_REQ_EXPORT: return KM__OP_EXPORT;
    case KM_REQ_IMPORT_RAW: return KM__OP_KEY_IMPORT;
    case KM_REQ_POLICY_CHANGE: return KM__OP_POLICY_SET;
    default: return KM__OP_PRINCIPAL_ADD;
    }
}

int km_request_create(km_ctx *ctx, km_request_op op, const char *key_name,
                      const uint8_t *params, size_t params_len, uint32_t ttl_s, uint8_t id[16])
{
    KM__REMOTE(ctx, KM__KC_REQUEST_CREATE, op, key_name, params, params_len, ttl_s, id);
    km__txn *t = NULL;
    km_key *key = NULL;
    km_audit_head h;
    req r;
    char d[160], pname[80], canon[160];
    uint32_t roles = 0;
    int rc, add = 0, needs_key = op == KM_REQ_DESTROY || op == KM_REQ_EXPORT;
    /* a policy change names a key when it is that key's settings (km_key_set) */
    int may_key = needs_key || op == KM_REQ_IMPORT_RAW || op == KM_REQ_POLICY_CHANGE;

    if (ctx == NULL || id == NULL || op < KM_REQ_DESTROY || op > KM_REQ_PRINCIPAL_CHANGE)
        return km__err(KM_E_INVALID, "km_request_create: bad arguments");
    if ((needs_key && key_name == NULL) || (!may_key && key_name != NULL))
        return km__err(KM_E_INVALID, "km_request_create: %s %s a key name", km__quorum_op_name(op),
                       needs_key ? "needs" : "takes no");
    if (params == NULL && params_len > 0)
        return km__err(KM_E_INVALID, "km_request_create: params is NULL");
    if (ttl_s == 0)
        ttl_s = KM_REQUEST_TTL_DEFAULT;
    if (ttl_s > KM_REQUEST_TTL_MAX)
        return km__err(KM_E_INVALID, "km_request_create: ttl longer than %d s",
                       KM_REQUEST_TTL_MAX);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    memset(&r, 0, sizeof r);
    if (key_name != NULL && op != KM_REQ_IMPORT_RAW) {
        km__kobj *k = NULL;
        if ((rc = km_key_open(&key, ctx, key_name)) != KM_OK)
            return rc;
        if ((rc = km__key_use(key, &k)) == KM_OK) {
            r.has_key = 1;
            memcpy(r.key_id, k->id, 16);
            rc = km__acl_check(ctx, acl_op(op), k);
        }
        km_key_free(key);
        if (rc != KM_OK)
            return rc;
    } else if ((rc = km__acl_check(ctx, acl_op(op), NULL)) != KM_OK) {
        return rc;
    }
    r.op = (uint32_t)op;
    /* every parameter spelled out for the custodians; a principal change in
     * its canonical form (name and roles), which the call rebuilds (acl.c) */
    if ((rc = km__request_describe(op, key_name, params, params_len, r.text, sizeof r.text))
        != KM_OK)
        return rc;
    if (op == KM_REQ_PRINCIPAL_CHANGE && !km__rules_slot_change_params(params, params_len)) {
        if ((rc = km__rules_principal_params_parse(params, params_len, &add, pname, sizeof pname,
                                                   &roles)) != KM_OK)
            return rc;
        params_len = km__rules_principal_params(canon, sizeof canon, add, pname, roles);
        params = (const uint8_t *)canon;
    }
    if ((rc = km__request_params_hash(op, params, params_len, r.phash)) != KM_OK
        || (rc = km__random(id, 16)) != KM_OK)
        return rc;
    snprintf(r.requester, sizeof r.requester, "%s", ctx->principal_name);
    memcpy(r.rpid, ctx->principal_id, 16);
    r.created = km__now(ctx);
    r.expires = r.created + (int64_t)ttl_s;
    snprintf(d, sizeof d, "%s request %02x%02x%02x%02x.. expires in %u s", km__quorum_op_name(op), id[0],
             id[1], id[2], id[3], ttl_s);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    /* the sequence of its own request.create entry: where the spent check
     * of km__quorum_consume starts reading the audit chain */
    if ((rc = km__audit_head_read(ctx->sealer, t, &h)) != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    r.aseq = h.seq + 1;
    if ((rc = km__request_put(ctx, t, id, &r)) != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    return km__wtxn_commit(ctx, t, KM__OP_REQUEST, r.has_key ? r.key_id : NULL, 0, d);
}

int km_request_approve(km_ctx *ctx, const uint8_t id[16])
{
    KM__REMOTE(ctx, KM__KC_REQUEST_APPROVE, id);
    km__txn *t = NULL;
    req r;
    char d[160];
    int rc;

    if (ctx == NULL || id == NULL)
        return km__err(KM_E_INVALID, "km_request_approve: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    /* only a principal holding the custodian role, proven by its own keyslot */
    if (!ctx->is_principal || !(ctx->roles & KM_ROLE_CUSTODIAN)) {
        snprintf(d, sizeof d, "'%s' approved request %02x%02x%02x%02x.. without the custodian "
                              "role", ctx->principal_name, id[0], id[1], id[2], id[3]);
        (void)km__audit_event(ctx, KM__OP_DENIED, NULL, 0, KM_E_DENIED, d);
        return km__err(KM_E_DENIED, "approving needs a custodian principal's own credential");
    }
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    if ((rc = km__request_get(ctx, t, id, &r)) != KM_OK)
        goto fail;
    switch (km__rules_quorum_may_approve(&r, ctx->principal_id, km__now_txn(ctx, t))) {
    case KM__APPROVE_CONSUMED:
        rc = km__err(KM_E_STATE, "the request has already been used");
        goto fail;
    case KM__APPROVE_EXPIRED:
        rc = km__err(KM_E_STATE, "the request has expired");
        goto fail;
    case KM__APPROVE_OWN:
        rc = KM_E_DENIED;
        snprintf(d, sizeof d, "'%s' tried to approve its own request %02x%02x%02x%02x..",
                 ctx->principal_name, id[0], id[1], id[2], id[3]);
        goto refused;
    case KM__APPROVE_TWICE:
        rc = KM_E_EXISTS;
        snprintf(d, sizeof d, "'%s' tried to approve request %02x%02x%02x%02x.. twice",
                 ctx->principal_name, id[0], id[1], id[2], id[3]);
        goto refused;
    case KM__APPROVE_FULL:
        rc = km__err(KM_E_FULL, "the request has the most approvals it can hold");
        goto fail;
    case KM__APPROVE_OK:
        break;
    }
    memcpy(r.approvals + r.napprovals * KM__APPROVER_LEN, ctx->principal_id, 16);
    km__be64_put(r.approvals + r.napprovals * KM__APPROVER_LEN + 16, (uint64_t)km__now(ctx));
    r.napprovals++;
    snprintf(d, sizeof d, "%s request %02x%02x%02x%02x.. of %s: approval %zu", km__quorum_op_name(r.op),
             id[0], id[1], id[2], id[3], r.requester, r.napprovals);
    if ((rc = km__request_put(ctx, t, id, &r)) != KM_OK)
        goto fail;
    return km__wtxn_commit(ctx, t, KM__OP_APPROVE, r.has_key ? r.key_id : NULL, 0, d);
refused:
    km__wtxn_abort(t);
    (void)km__audit_event(ctx, KM__OP_DENIED, r.has_key ? r.key_id : NULL, 0, rc, d);
    return km__err(rc, "%s (refused)", d);
fail:
    km__wtxn_abort(t);
    return rc;
}

/* The request record `id`, in a read transaction of its own. */
static int request_read(km_ctx *ctx, const uint8_t id[16], req *r)
{
    km__txn *t = NULL;
    int rc = km__txn_begin(ctx->env, 0, &t);
    if (rc != KM_OK)
        return rc;
    rc = km__request_get(ctx, t, id, r);
    km__txn_abort(t);
    return rc;
}

int km_request_info(km_ctx *ctx, const uint8_t id[16], km_request_status *out)
{
    KM__REMOTE(ctx, KM__KC_REQUEST_INFO, id, out);
    req r;
    int rc;

    if (ctx == NULL || id == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_request_info: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    memset(out, 0, sizeof *out);
    if ((rc = request_read(ctx, id, &r)) != KM_OK)
        return rc;
    out->op = (km_request_op)r.op;
    if (r.has_key) {
        km__kobj *k = NULL;
        if (km__kobj_get(ctx, r.key_id, &k) == KM_OK) {
            snprintf(out->key_name, sizeof out->key_name, "%s", k->name ? k->name : "");
            km__kobj_unref(k);
        }
    }
    snprintf(out->requester, sizeof out->requester, "%s", r.requester);
    out->approvals = (uint32_t)r.napprovals;
    out->needed = km__quorum_needed(ctx, (int)r.op);
    out->created = r.created;
    out->expires = r.expires;
    out->consumed = r.consumed != 0;
    return KM_OK;
}

int km_request_describe(km_ctx *ctx, const uint8_t id[16], char *out, size_t cap,
                        size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_REQUEST_DESCRIBE, id, out, cap, out_len);
    static const char older[] = "(not recorded: a request made by an older libkm; only a "
                                "SHA-256 of its parameters is kept)";
    req r;
    const char *text;
    size_t n;
    int rc;

    if (out_len != NULL)
        *out_len = 0;
    if (ctx == NULL || id == NULL || out_len == NULL || (out == NULL && cap != 0))
        return km__err(KM_E_INVALID, "km_request_describe: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = request_read(ctx, id, &r)) != KM_OK)
        return rc;
    text = r.text[0] != '\0' ? r.text : older;
    n = strlen(text) + 1;
    *out_len = n;
    if (n > cap)
        return km__err(KM_E_BUFFER, "km_request_describe: %zu bytes needed", n);
    memcpy(out, text, n);
    return KM_OK;
}
