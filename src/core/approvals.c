/* approvals.c - dual control in the core: the request records, and the
 * consumption of an approved request by the guarded change, in the change's
 * own transaction. Whether a request authorises is the rules' decision
 * (rules_quorum.c); creating and approving requests is the API (quorum.c).
 *
 * A request is a sealed meta record "request/" || id[16]:
 *   TLV { op, key id (optional), params SHA-256, requester name, requester
 *         pid, created, expires, consumed, approvals (n x (pid[16] || BE64 time)),
 *         audit sequence of its creation entry, the parameters as text }
 * The guarded call consumes a matching approved request of its caller in the
 * same transaction as its change (km__quorum_consume), whose audit entry
 * (request.execute) names the request in full: a request whose record is
 * put back as it was before it was spent is refused because the audit chain
 * since its creation holds that entry (rolling the chain back too shows in
 * km_audit_verify against an exported head). */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"

enum {
    R_OP = 1, R_KEY = 2, R_PHASH = 3, R_REQUESTER = 4, R_RPID = 5, R_CREATED = 6,
    R_EXPIRES = 7, R_CONSUMED = 8, R_APPROVALS = 9, R_ASEQ = 10, R_TEXT = 11
};

#define REQ_REC_MAX (1024 + KM__REQUEST_TEXT_MAX)

static const char pfx_request[] = "request/";

static const char *const pol_op[KM_REQ_PRINCIPAL_CHANGE + 1] = {
    [KM_REQ_DESTROY] = "destroy", [KM_REQ_EXPORT] = "export", [KM_REQ_IMPORT_RAW] = "import-raw",
    [KM_REQ_POLICY_CHANGE] = "policy-change", [KM_REQ_PRINCIPAL_CHANGE] = "principal-change"
};

typedef km__request req;

const char *km__quorum_op_name(int op)
{
    return op >= KM_REQ_DESTROY && op <= KM_REQ_PRINCIPAL_CHANGE ? pol_op[op] : "?";
}

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
        km__tlv_put(&w, R_APPROVALS, r->approvals, r->napprovals * KM__APPROVER_LEN);
    if (r->aseq != 0)
        km__tlv_put_u64(&w, R_ASEQ, r->aseq);
    if (r->text[0] != '\0')
        km__tlv_put_str(&w, R_TEXT, r->text);
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
        if (vl % KM__APPROVER_LEN != 0 || vl / KM__APPROVER_LEN > KM__APPROVERS_MAX)
            goto bad;
        memcpy(r->approvals, v, vl);
        r->napprovals = vl / KM__APPROVER_LEN;
    }
    if (km__tlv_find(b, n, R_ASEQ, &v, &vl) && km__tlv_get_u64(b, n, R_ASEQ, &r->aseq) != KM_OK)
        goto bad;
    if (km__tlv_find(b, n, R_TEXT, &v, &vl)) {
        if (vl >= sizeof r->text || memchr(v, '\0', vl) != NULL)
            goto bad;
        memcpy(r->text, v, vl);
    }
    return KM_OK;
bad:
    return km__err(KM_E_CORRUPT, "a dual-control request record is malformed");
}

int km__request_get(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], req *r)
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

int km__request_put(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], const req *r)
{
    uint8_t *buf = malloc(REQ_REC_MAX), k[32];
    size_t len;
    int rc;
    if (buf == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    rc = req_encode(r, buf, REQ_REC_MAX, &len);
    if (rc == KM_OK)
        rc = km__rec_put(t, ctx->sealer, KM__T_META, k, req_key(k, id), buf, len, 0);
    free(buf);
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

int km__request_params_hash(int op, const uint8_t *p, size_t n, uint8_t out[32])
{
    uint8_t o = (uint8_t)op;
    static const char tag[] = "km-request-v1";
    const uint8_t *parts[3] = { (const uint8_t *)tag, &o, p != NULL ? p : (const uint8_t *)"" };
    size_t lens[3] = { sizeof tag - 1, 1, p != NULL ? n : 0 };
    return km__sha256v(parts, lens, 3, out);
}

typedef struct cfind {
    struct km_ctx *ctx;
    km__txn *t;
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
    /* only approvals of principals who are still custodians count: an
     * approval given by a custodian who was removed (or lost the role) since
     * is void */
    req cur = r;   /* the record keeps every approval; only the count drops */
    {
        size_t i, keep = 0;
        for (i = 0; i < r.napprovals && i < KM__APPROVERS_MAX; i++) {
            const uint8_t *a = r.approvals + i * KM__APPROVER_LEN;
            km__pfind pf;
            memset(&pf, 0, sizeof pf);
            pf.pid = a;
            if ((rc = km__principal_find(f->ctx, f->t, &pf)) != KM_OK)
                return rc;
            if (!pf.found || !(pf.roles & KM_ROLE_CUSTODIAN))
                continue;
            if (keep != i)
                memcpy(cur.approvals + keep * KM__APPROVER_LEN, a, KM__APPROVER_LEN);
            keep++;
        }
        cur.napprovals = keep;
    }
    if (!km__rules_quorum_ready(&cur, f->needed, f->now)) {
        f->stale = 1;   /* expired or short of approvals */
        return 0;
    }
    f->found = 1;
    memcpy(f->id, key + sizeof pfx_request - 1, 16);
    f->r = r;
    return 1;
}

uint32_t km__quorum_needed_key(struct km_ctx *ctx, int op, const km__kobj *k)
{
    uint32_t n = km__quorum_needed(ctx, op);
    const km__policy *vp;
    km__policy *own = NULL;

    if (k == NULL || k->policy_json == NULL || n == UINT32_MAX)
        return n;
    /* the key's own policy may only tighten the vault's: its dual control
     * counts when it asks for more (it was checked against the vault's policy
     * when it was set; one that no longer parses against today's leaves the
     * vault's count) */
    vp = km__policy_acquire(ctx);
    if (km__policy_parse(&own, k->policy_json, strlen(k->policy_json), vp) == KM_OK) {
        uint32_t kn = km__policy_approvals(own, pol_op[op]);
        if (kn > n)
            n = kn;
    }
    km__policy_release(ctx);
    km__policy_free(own);
    return n;
}

static int consume_needed(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                          uint32_t needed, const uint8_t *params, size_t params_len);

int km__quorum_consume(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                       const uint8_t *params, size_t params_len)
{
    return consume_needed(ctx, t, op, key_id, km__quorum_needed(ctx, op), params, params_len);
}

int km__quorum_consume_key(struct km_ctx *ctx, km__txn *t, int op, const km__kobj *k,
                           const uint8_t *params, size_t params_len)
{
    return consume_needed(ctx, t, op, k->id, km__quorum_needed_key(ctx, op, k), params,
                          params_len);
}

/* The spent check: whether the audit chain since the request's creation
 * holds its request.execute entry (a record put back as it was before it
 * was spent). */
typedef struct spent {
    char full[80], shortf[40];
    int found;
    uint64_t seq;
} spent;

static int spent_scan(const km_audit_entry *e, void *arg)
{
    spent *sp = arg;
    if (strcmp(e->op, km__op_name(KM__OP_EXECUTE)) != 0)
        return 0;
    if (strncmp(e->detail, sp->full, strlen(sp->full)) != 0
        && strncmp(e->detail, sp->shortf, strlen(sp->shortf)) != 0)
        return 0;
    sp->found = 1;
    sp->seq = e->seq;
    return 1;
}

static int request_spent(struct km_ctx *ctx, km__txn *t, int op, const uint8_t id[16],
                         const req *r)
{
    spent sp;
    char hex[33];
    int rc;

    memset(&sp, 0, sizeof sp);
    km__id_hex(id, hex);
    snprintf(sp.full, sizeof sp.full, "%s request %s ", pol_op[op], hex);
    snprintf(sp.shortf, sizeof sp.shortf, "%s request %.8s.. by ", pol_op[op], hex);
    /* records written before the creation sequence was kept: the whole chain */
    if ((rc = km__audit_scan(ctx, t, r->aseq, spent_scan, &sp)) != KM_OK)
        return rc;
    if (sp.found)
        return km__err(KM_E_INTEGRITY, "%s request %.8s.. was used already (audit entry %llu) "
                                       "but its record says otherwise: it was put back",
                       pol_op[op], hex, (unsigned long long)sp.seq);
    return KM_OK;
}

void km__id_hex(const uint8_t id[16], char out[33])
{
    int i;
    for (i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static int consume_needed(struct km_ctx *ctx, km__txn *t, int op, const uint8_t *key_id,
                          uint32_t needed, const uint8_t *params, size_t params_len)
{
    cfind f;
    char d[KM__AUDIT_DETAIL_MAX + 1], hex[33];
    int rc;

    memset(&f, 0, sizeof f);
    f.needed = needed;
    if (f.needed == 0)
        return KM_OK;
    f.ctx = ctx;
    f.t = t;
    f.op = op;
    f.key_id = key_id;
    f.now = km__now_txn(ctx, t);   /* never before the last audited time */
    if ((rc = km__request_params_hash(op, params, params_len, f.phash)) != KM_OK)
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
    if ((rc = request_spent(ctx, t, op, f.id, &f.r)) != KM_OK)
        return rc;
    f.r.consumed = 1;
    if ((rc = km__request_put(ctx, t, f.id, &f.r)) != KM_OK)
        return rc;
    km__id_hex(f.id, hex);
    snprintf(d, sizeof d, "%s request %s by %s, %zu approval(s)", pol_op[op], hex,
             f.r.requester, f.r.napprovals);
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
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__quorum_consume(ctx, t, op, key_id, params, params_len);
    km__wtxn_abort(t);
    return rc;
}

int km__quorum_consume_own(struct km_ctx *ctx, int op, const uint8_t *key_id,
                           const uint8_t *params, size_t params_len)
{
    km__txn *t = NULL;
    int rc;

    if (km__quorum_needed(ctx, op) == 0)
        return KM_OK;
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    rc = km__quorum_consume(ctx, t, op, key_id, params, params_len);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    /* the request's entry (request.execute) is in t already */
    return km__wtxn_commit_plain(t, 1);
}


/* ---------------------------------------------------------- description */

static int printable(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((p[i] < 0x20 || p[i] >= 0x7f) && p[i] != '\n' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

int km__request_describe(int op, const char *key_name, const uint8_t *p, size_t n, char *out,
                         size_t cap)
{
    uint8_t h[32];
    char hex[65], name[80];
    const uint8_t *parts[1] = { p != NULL ? p : (const uint8_t *)"" };
    size_t i;
    uint32_t roles = 0;
    int add = 0, rc;

    if ((rc = km__sha256v(parts, &n, 1, h)) != KM_OK)
        return rc;
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    switch (op) {
    case KM_REQ_DESTROY:
        if (n == 8)
            snprintf(out, cap, "destroy version %u of key '%s' after %u day(s) of grace",
                     (unsigned)km__be32_get(p), key_name, (unsigned)km__be32_get(p + 4));
        else
            snprintf(out, cap, "destroy key '%s' with %zu bytes of parameters (SHA-256 %s)",
                     key_name, n, hex);
        break;
    case KM_REQ_EXPORT:
        if (n == 16) {      /* AES-KWP: the KEK's key id */
            char kek[33];
            km__id_hex(p, kek);
            snprintf(out, cap, "export key '%s' wrapped under the KEK with key id %s", key_name,
                     kek);
        } else {
            snprintf(out, cap, "export key '%s' wrapped to the public key of %zu bytes with "
                               "SHA-256 %s", key_name, n, hex);
        }
        break;
    case KM_REQ_IMPORT_RAW:
        snprintf(out, cap, "import %zu bytes of key material or wrapped key with SHA-256 %s", n,
                 hex);
        break;
    case KM_REQ_POLICY_CHANGE:
        if (printable(p, n) && n + 64 < cap)
            snprintf(out, cap, "set the vault policy to (SHA-256 %s):\n%.*s", hex, (int)n,
                     (const char *)p);
        else
            snprintf(out, cap, "set the vault policy to a document of %zu bytes with SHA-256 %s",
                     n, hex);
        break;
    default:
        if (km__rules_slot_change_params(p, n)) {
            /* the vault's credentials, under principal-change (km/quorum.h) */
            snprintf(out, cap, "change the vault's keyslots: %.*s%s", (int)n, (const char *)p,
                     n == 5 ? " (a new master key; principals' keyslots and share sets are "
                              "dropped)" : "");
            break;
        }
        if ((rc = km__rules_principal_params_parse(p, n, &add, name, sizeof name, &roles))
            != KM_OK)
            return rc;
        if (add) {
            char canon[160];
            if (km__rules_principal_params(canon, sizeof canon, 1, name, roles) == 0)
                return km__err(KM_E_INVALID, "principal-change parameters too long");
            snprintf(out, cap, "add principal '%s' with role(s) %s", name,
                     canon + strlen("add:") + strlen(name) + 1);
        } else {
            snprintf(out, cap, "remove principal '%s'", name);
        }
        break;
    }
    return KM_OK;
}
