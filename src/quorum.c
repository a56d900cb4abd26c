/* quorum.c - dual control: requests, approvals, consumption (km/quorum.h).
 *
 * A request is a sealed meta record "request/" || id[16]:
 *   TLV { op, key id (optional), params SHA-256, requester name, requester
 *         pid, created, expires, consumed, approvals (n x (pid[16] || BE64 time)) }
 * The guarded call consumes a matching approved request of its caller in the
 * same transaction as its change (km__quorum_consume). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"

enum {
    R_OP = 1, R_KEY = 2, R_PHASH = 3, R_REQUESTER = 4, R_RPID = 5, R_CREATED = 6,
    R_EXPIRES = 7, R_CONSUMED = 8, R_APPROVALS = 9
};

#define APPROVER_LEN 24
#define APPROVERS_MAX 16
#define REQ_REC_MAX 1024

static const char pfx_request[] = "request/";

static const char *const pol_op[] = {
    [KM_REQ_DESTROY] = "destroy", [KM_REQ_EXPORT] = "export", [KM_REQ_IMPORT_RAW] = "import-raw",
    [KM_REQ_POLICY_CHANGE] = "policy-change", [KM_REQ_PRINCIPAL_CHANGE] = "principal-change"
};

typedef struct req {
    uint32_t op;
    int has_key;
    uint8_t key_id[16];
    uint8_t phash[32];
    char requester[72];
    uint8_t rpid[16];
    int64_t created, expires;
    uint32_t consumed;
    uint8_t approvals[APPROVERS_MAX * APPROVER_LEN];
    size_t napprovals;
} req;

static size_t req_key(uint8_t *out, const uint8_t id[16])
{
    memcpy(out, pfx_request, sizeof pfx_request - 1);
    memcpy(out + sizeof pfx_request - 1, id, 16);
    return sizeof pfx_request - 1 + 16;
}

static int req_encode(const req *r, uint8_t *buf, size_t cap, size_t *len)
{
    km__tlv_w w;
    int rc;
    km__tlv_init(&w, buf, cap);
    km__tlv_put_u32(&w, R_OP, r->op);
    if (r->has_key)
        km__tlv_put(&w, R_KEY, r->key_id, 16);
    km__tlv_put(&w, R_PHASH, r->phash, 32);
    km__tlv_put_str(&w, R_REQUESTER, r->requester);
    km__tlv_put(&w, R_RPID, r->rpid, 16);
    km__tlv_put_u64(&w, R_CREATED, (uint64_t)r->created);
    km__tlv_put_u64(&w, R_EXPIRES, (uint64_t)r->expires);
    km__tlv_put_u32(&w, R_CONSUMED, r->consumed);
    if (r->napprovals > 0)
        km__tlv_put(&w, R_APPROVALS, r->approvals, r->napprovals * APPROVER_LEN);
    if ((rc = km__tlv_end(&w)) != KM_OK)
        return rc;
    *len = w.len;
    return KM_OK;
}

static int req_decode(const uint8_t *b, size_t n, req *r)
{
    const uint8_t *v;
    size_t vl;
    uint64_t c, e;

    memset(r, 0, sizeof *r);
    if (km__tlv_check(b, n) != KM_OK || km__tlv_get_u32(b, n, R_OP, &r->op) != KM_OK
        || !km__tlv_find(b, n, R_PHASH, &v, &vl) || vl != 32)
        goto bad;
    memcpy(r->phash, v, 32);
    if (km__tlv_find(b, n, R_KEY, &v, &vl)) {
        if (vl != 16)
            goto bad;
        r->has_key = 1;
        memcpy(r->key_id, v, 16);
    }
    if (!km__tlv_find(b, n, R_REQUESTER, &v, &vl) || vl == 0 || vl >= sizeof r->requester)
        goto bad;
    memcpy(r->requester, v, vl);
    if (!km__tlv_find(b, n, R_RPID, &v, &vl) || vl != 16)
        goto bad;
    memcpy(r->rpid, v, 16);
    if (km__tlv_get_u64(b, n, R_CREATED, &c) != KM_OK
        || km__tlv_get_u64(b, n, R_EXPIRES, &e) != KM_OK
        || km__tlv_get_u32(b, n, R_CONSUMED, &r->consumed) != KM_OK)
        goto bad;
    r->created = (int64_t)c;
    r->expires = (int64_t)e;
    if (km__tlv_find(b, n, R_APPROVALS, &v, &vl)) {
        if (vl % APPROVER_LEN != 0 || vl / APPROVER_LEN > APPROVERS_MAX)
            goto bad;
        memcpy(r->approvals, v, vl);
        r->napprovals = vl / APPROVER_LEN;
    }
    return KM_OK;
bad:
    return km__err(KM_E_CORRUPT, "a dual-control request record is malformed");
}

static int req_get(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], req *r)
{
    km_secret *rec = NULL;
    uint8_t k[32];
    int rc = km__rec_get(t, ctx->sealer, KM__T_META, k, req_key(k, id), &rec);
    if (rc == KM_E_NOTFOUND)
        return km__err(KM_E_NOTFOUND, "no such dual-control request");
    if (rc != KM_OK)
        return rc;
    rc = req_decode(km_secret_data(rec), km_secret_len(rec), r);
    km_secret_free(rec);
    return rc;
}

static int req_put(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const req *r)
{
    uint8_t buf[REQ_REC_MAX], k[32];
    size_t len;
    int rc = req_encode(r, buf, sizeof buf, &len);
    if (rc == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, k, req_key(k, id), buf, len, 0);
    return rc;
}

uint32_t km__quorum_needed(struct km_ctx *ctx, int op)
{
    uint32_t n;
    if (op < KM_REQ_DESTROY || op > KM_REQ_PRINCIPAL_CHANGE)
        return UINT32_MAX;
    n = km__policy_approvals(km__policy_acquire(ctx), pol_op[op]);
    km__policy_release(ctx);
    return n;
}

static int params_hash(int op, const uint8_t *p, size_t n, uint8_t out[32])
{
    uint8_t o = (uint8_t)op;
    static const char tag[] = "km-request-v1";
    const uint8_t *parts[3] = { (const uint8_t *)tag, &o, p != NULL ? p : (const uint8_t *)"" };
    size_t lens[3] = { sizeof tag - 1, 1, p != NULL ? n : 0 };
    return km__sha256v(parts, lens, 3, out);
}

typedef struct cfind {
    struct km_ctx *ctx;
    int op;
    const uint8_t *key_id;
    uint8_t phash[32];
    uint32_t needed;
    int64_t now;
    int found;
    uint8_t id[16];
    req r;
    int stale;           /* a match that is expired or short of approvals */
} cfind;

static int consume_scan(const uint8_t *key, size_t key_len, const uint8_t *val, size_t len,
                        void *arg)
{
    cfind *f = arg;
    req r;
    int rc;

    if (key_len != sizeof pfx_request - 1 + 16)
        return km__err(KM_E_CORRUPT, "a request record key is malformed");
    if ((rc = req_decode(val, len, &r)) != KM_OK)
        return rc;
    if (r.op != (uint32_t)f->op || r.consumed || !km_ct_equal(r.phash, f->phash, 32)
        || !km_ct_equal(r.rpid, f->ctx->principal_id, 16)
        || strcmp(r.requester, f->ctx->principal_name) != 0
        || r.has_key != (f->key_id != NULL)
        || (f->key_id != NULL && !km_ct_equal(r.key_id, f->key_id, 16)))
        return 0;
    if (f->now >= r.expires || r.napprovals < f->needed) {
        f->stale = 1;
        return 0;
    }
    f->found = 1;
    memcpy(f->id, key + sizeof pfx_request - 1, 16);
    f->r = r;
    return 1;
}

int km__quorum_consume(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                       const uint8_t *params, size_t params_len)
{
    cfind f;
    char d[120];
    int rc;

    memset(&f, 0, sizeof f);
    f.needed = km__quorum_needed(ctx, op);
    if (f.needed == 0)
        return KM_OK;
    f.ctx = ctx;
    f.op = op;
    f.key_id = key_id;
    f.now = km__now(ctx);
    if ((rc = params_hash(op, params, params_len, f.phash)) != KM_OK)
        return rc;
    rc = km__rec_iter(t, ctx->sealer, KM__T_META, (const uint8_t *)pfx_request,
                      sizeof pfx_request - 1, consume_scan, &f);
    if (rc != KM_OK)
        return rc;
    if (!f.found)
        return km__err(KM_E_DENIED, "%s needs %u custodian approval(s)%s: create a request "
                                    "(km_request_create / kmctl request create) with these exact "
                                    "arguments",
                       pol_op[op], f.needed, f.stale ? " (a matching request is expired or "
                                                        "not yet approved)" : "");
    f.r.consumed = 1;
    if ((rc = req_put(ctx, t, f.id, &f.r)) != KM_OK)
        return rc;
    snprintf(d, sizeof d, "%s request %02x%02x%02x%02x.. by %s, %zu approval(s)", pol_op[op],
             f.id[0], f.id[1], f.id[2], f.id[3], f.r.requester, f.r.napprovals);
    return km__audit_append(ctx, t, KM__OP_EXECUTE, key_id, 0, KM_OK, d);
}

int km__quorum_check_own(struct km_ctx *ctx, int op, const uint8_t *key_id,
                         const uint8_t *params, size_t params_len)
{
    km__txn *t = NULL;
    int rc;

    if (km__quorum_needed(ctx, op) == 0)
        return KM_OK;
    /* the consumption, in a transaction that is thrown away */
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    rc = km__quorum_consume(ctx, t, op, key_id, params, params_len);
    km__txn_abort(t);
    return rc;
}

int km__quorum_consume_own(struct km_ctx *ctx, int op, const uint8_t *key_id,
                           const uint8_t *params, size_t params_len)
{
    km__txn *t = NULL;
    int rc;

    if (km__quorum_needed(ctx, op) == 0)
        return KM_OK;
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    rc = km__quorum_consume(ctx, t, op, key_id, params, params_len);
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    rc = km__txn_commit(t);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
}

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
    km__txn *t = NULL;
    km_key *key = NULL;
    req r;
    char d[160];
    int rc, needs_key = op == KM_REQ_DESTROY || op == KM_REQ_EXPORT;

    if (ctx == NULL || id == NULL || op < KM_REQ_DESTROY || op > KM_REQ_PRINCIPAL_CHANGE)
        return km__err(KM_E_INVALID, "km_request_create: bad arguments");
    if (needs_key != (key_name != NULL) && op != KM_REQ_IMPORT_RAW)
        return km__err(KM_E_INVALID, "km_request_create: %s %s a key name", pol_op[op],
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
    if (needs_key) {
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
    if ((rc = params_hash(op, params, params_len, r.phash)) != KM_OK
        || (rc = km__random(id, 16)) != KM_OK)
        return rc;
    snprintf(r.requester, sizeof r.requester, "%s", ctx->principal_name);
    memcpy(r.rpid, ctx->principal_id, 16);
    r.created = km__now(ctx);
    r.expires = r.created + (int64_t)ttl_s;
    snprintf(d, sizeof d, "%s request %02x%02x%02x%02x.. expires in %u s", pol_op[op], id[0],
             id[1], id[2], id[3], ttl_s);
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    rc = req_put(ctx, t, id, &r);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_REQUEST, r.has_key ? r.key_id : NULL, 0, KM_OK, d);
    if (rc != KM_OK) {
        km__txn_abort(t);
        return rc;
    }
    rc = km__txn_commit(t);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
}

int km_request_approve(km_ctx *ctx, const uint8_t id[16])
{
    km__txn *t = NULL;
    req r;
    size_t i;
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
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    if ((rc = req_get(ctx, t, id, &r)) != KM_OK)
        goto fail;
    if (r.consumed) {
        rc = km__err(KM_E_STATE, "the request has already been used");
        goto fail;
    }
    if (km__now(ctx) >= r.expires) {
        rc = km__err(KM_E_STATE, "the request has expired");
        goto fail;
    }
    if (km_ct_equal(r.rpid, ctx->principal_id, 16)) {
        rc = KM_E_DENIED;
        snprintf(d, sizeof d, "'%s' tried to approve its own request %02x%02x%02x%02x..",
                 ctx->principal_name, id[0], id[1], id[2], id[3]);
        goto refused;
    }
    for (i = 0; i < r.napprovals; i++)
        if (km_ct_equal(r.approvals + i * APPROVER_LEN, ctx->principal_id, 16)) {
            rc = KM_E_EXISTS;
            snprintf(d, sizeof d, "'%s' tried to approve request %02x%02x%02x%02x.. twice",
                     ctx->principal_name, id[0], id[1], id[2], id[3]);
            goto refused;
        }
    if (r.napprovals == APPROVERS_MAX) {
        rc = km__err(KM_E_FULL, "the request has the most approvals it can hold");
        goto fail;
    }
    memcpy(r.approvals + r.napprovals * APPROVER_LEN, ctx->principal_id, 16);
    km__be64_put(r.approvals + r.napprovals * APPROVER_LEN + 16, (uint64_t)km__now(ctx));
    r.napprovals++;
    snprintf(d, sizeof d, "%s request %02x%02x%02x%02x.. of %s: approval %zu", pol_op[r.op],
             id[0], id[1], id[2], id[3], r.requester, r.napprovals);
    rc = req_put(ctx, t, id, &r);
    if (rc == KM_OK)
        rc = km__audit_append(ctx, t, KM__OP_APPROVE, r.has_key ? r.key_id : NULL, 0, KM_OK, d);
    if (rc != KM_OK)
        goto fail;
    rc = km__txn_commit(t);
    if (rc == KM_OK)
        atomic_fetch_add(&km__write_gen, 1);
    return rc;
refused:
    km__txn_abort(t);
    (void)km__audit_event(ctx, KM__OP_DENIED, r.has_key ? r.key_id : NULL, 0, rc, d);
    return km__err(rc, "%s (refused)", d);
fail:
    km__txn_abort(t);
    return rc;
}

int km_request_info(km_ctx *ctx, const uint8_t id[16], km_request_status *out)
{
    km__txn *t = NULL;
    req r;
    int rc;

    if (ctx == NULL || id == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_request_info: bad arguments");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    memset(out, 0, sizeof *out);
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = req_get(ctx, t, id, &r);
    km__txn_abort(t);
    if (rc != KM_OK)
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
