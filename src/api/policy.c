/* policy.c - the policy API (include/km/policy.h): setting and reading
 * the vault policy, the report of keys out of policy. The policy rules are
 * src/rules/policy.c; the context holds the policy in force (src/core/ctx.c). */
#include "core.h"
#include "remote.h"
#include "km/sys/server.h"
#include "km/quorum.h"

#include <stdlib.h>
#include <string.h>

/* The new vault policy, with the approvals the policy in force asks for
 * (the new one may ask for more), in one write transaction. */
static int policy_store(struct km_ctx *ctx, const char *json, size_t len)
{
    km__txn *t = NULL;
    int rc = km__wtxn_begin(ctx, &t);
    if (rc != KM_OK)
        return rc;
    rc = km__ctx_policy_put(ctx, t, json, len);
    if (rc == KM_OK)
        rc = km__quorum_consume(ctx, t, KM_REQ_POLICY_CHANGE, NULL, (const uint8_t *)json, len);
    if (rc != KM_OK) {
        km__wtxn_abort(t);
        return rc;
    }
    return km__wtxn_commit(ctx, t, KM__OP_POLICY_SET, NULL, 0, "vault policy");
}

/* KM_E_POLICY for dual control that one principal can satisfy alone: a
 * principal change (adding custodians of its own) or a policy change
 * (lowering the count) that asks fewer approvals than a quorum it protects. */
static int quorum_guarded(const km__policy *p)
{
    uint32_t counts[KM_REQ_PRINCIPAL_CHANGE + 1] = { 0 }, need = 0;
    int op, weak, over = 0;

    for (op = KM_REQ_DESTROY; op <= KM_REQ_PRINCIPAL_CHANGE; op++)
        counts[op] = km__policy_approvals(p, km__quorum_op_name(op));
    weak = km__rules_quorum_unguarded(counts, &need, &over);
    if (weak == 0)
        return KM_OK;
    return km__err(KM_E_POLICY, "policy: dual_control.%s is %u but dual_control.%s is %u: "
                                "one principal could %s and satisfy the %s quorum alone; set "
                                "principal-change and policy-change to at least %u",
                   km__quorum_op_name(weak), counts[weak], km__quorum_op_name(over), need,
                   weak == KM_REQ_PRINCIPAL_CHANGE ? "add custodians of its own"
                                                   : "lower the count",
                   km__quorum_op_name(over), need);
}

int km_policy_set(km_ctx *ctx, const char *json, size_t json_len)
{
    KM__REMOTE(ctx, KM__KC_POLICY_SET, json, json_len);
    km__policy *p = NULL;
    int rc;

    if (ctx == NULL || json == NULL)
        return km__err(KM_E_INVALID, "km_policy_set: %s is NULL", ctx == NULL ? "ctx" : "json");
    if (json_len == 0 || json_len > (1u << 20))
        return km__err(KM_E_INVALID, "km_policy_set: json must be 1 byte to 1 MiB");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    if ((rc = km__acl_check(ctx, KM__OP_POLICY_SET, NULL)) != KM_OK)
        return rc;
    if ((rc = km__policy_parse(&p, json, json_len, NULL)) != KM_OK)
        return rc;
    if ((rc = quorum_guarded(p)) != KM_OK) {
        km__policy_free(p);
        return rc;
    }
    rc = policy_store(ctx, json, json_len);
    if (rc == KM_OK)
        km__ctx_policy_install(ctx, p, json, json_len);
    else
        km__policy_free(p);
    return rc;
}

int km_policy_get(km_ctx *ctx, char *out, size_t out_cap, size_t *out_len)
{
    KM__REMOTE(ctx, KM__KC_POLICY_GET, out, out_cap, out_len);
    char *json;
    size_t n;
    int rc;

    if (out_len == NULL)
        return km__err(KM_E_INVALID, "km_policy_get: out_len is NULL");
    *out_len = 0;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_policy_get: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__ctx_policy_refresh(ctx, 1)) != KM_OK)
        return rc;
    json = km__policy_to_json(km__policy_acquire(ctx));
    km__policy_release(ctx);
    if (json == NULL)
        return km__err(KM_E_NOMEM, "km_policy_get: out of memory");
    n = strlen(json);
    if (out == NULL || out_cap < n + 1) {
        *out_len = n + 1;
        free(json);
        return km__err(KM_E_BUFFER, "km_policy_get: out needs %zu bytes", n + 1);
    }
    memcpy(out, json, n + 1);
    *out_len = n;
    free(json);
    return KM_OK;
}

/* ------------------------------------------------------------ policy report */

struct km_policy_findings {
    struct finding {
        char *name;
        char *why;
    } *f;
    size_t n;
};

int km_policy_report(km_ctx *ctx, km_policy_findings **out)
{
    KM__REMOTE(ctx, KM__KC_POLICY_REPORT, out);
    km__id_list l = { NULL, 0, 0 };
    km_policy_findings *r;
    size_t i;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km_policy_report: out is NULL");
    *out = NULL;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_policy_report: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK || (rc = km__ctx_policy_refresh(ctx, 1)) != KM_OK)
        return rc;
    if ((rc = km_key_list(ctx, km__key_id_collect, &l)) != KM_OK) {
        free(l.ids);
        return rc;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL || (l.n > 0 && (r->f = calloc(l.n, sizeof *r->f)) == NULL)) {
        free(r);
        free(l.ids);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    for (i = 0; i < l.n && rc == KM_OK; i++) {
        km__kobj *k = NULL;
        char why[1024];
        int bad;
        rc = km__kobj_get(ctx, l.ids[i], &k);
        if (rc == KM_OK)
            rc = km__kobj_refresh(k, 1);
        if (rc == KM_OK) {
            const km__policy *p;
            int64_t now = km__now(ctx), act = 0;
            /* the key's lock before the policy's, as km__kobj_refresh takes them
             * (ThreadSanitizer found the inverse order here) */
            pthread_rwlock_rdlock(&k->lock);
            p = km__policy_acquire(ctx);
            if (k->primary != 0)
                act = k->vers[k->primary - 1]->activated;
            bad = km__policy_key_out_of_policy(p, k->type, now, act, k->rotate_days,
                                               k->protect_days, k->process_days, why, sizeof why);
            km__policy_release(ctx);
            pthread_rwlock_unlock(&k->lock);
            if (bad) {
                r->f[r->n].name = strdup(k->name);
                r->f[r->n].why = strdup(why);
                if (r->f[r->n].name == NULL || r->f[r->n].why == NULL) {
                    free(r->f[r->n].name);
                    free(r->f[r->n].why);
                    rc = km__err(KM_E_NOMEM, "out of memory");
                } else {
                    r->n++;
                }
            }
        }
        km__kobj_unref(k);
    }
    free(l.ids);
    if (rc != KM_OK) {
        km_policy_findings_free(r);
        return rc;
    }
    *out = r;
    return KM_OK;
}

size_t km_policy_findings_count(const km_policy_findings *f)
{
    return f ? f->n : 0;
}

int km_policy_findings_get(const km_policy_findings *f, size_t index, const char **key_name,
                           const char **why)
{
    if (f == NULL || index >= f->n)
        return km__err(KM_E_INVALID, "km_policy_findings_get: no entry %zu", index);
    if (key_name)
        *key_name = f->f[index].name;
    if (why)
        *why = f->f[index].why;
    return KM_OK;
}

void km_policy_findings_free(km_policy_findings *f)
{
    size_t i;
    if (f == NULL)
        return;
    for (i = 0; i < f->n; i++) {
        free(f->f[i].name);
        free(f->f[i].why);
    }
    free(f->f);
    free(f);
}


/* km_policy_report's findings from kmd (src/kmd/vendor.c): a Structure of
 * records, each a Structure of the key's name and the reasons (texts). */
int km__findings_remote(const km__ttlv_tree *t, int st, km_policy_findings **out)
{
    km_policy_findings *r = calloc(1, sizeof *r);
    size_t n = km__ttlv_count(t, st, KM_KMD_TAG_OUT), i;

    *out = NULL;
    if (r == NULL || (n > 0 && (r->f = calloc(n, sizeof *r->f)) == NULL)) {
        free(r);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    for (i = 0; i < n; i++) {
        int c = km__ttlv_child(t, st, KM_KMD_TAG_OUT, (int)i);
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        int x = km__ttlv_child(t, c, KM_KMD_TAG_OUT, 0), y = km__ttlv_child(t, c, KM_KMD_TAG_OUT, 1);
        if (x < 0 || y < 0 || t->items[x].type != KM__TTLV_TEXT || t->items[y].type != KM__TTLV_TEXT) {
            km_policy_findings_free(r);
            return KM_E_CORRUPT;
        }
        a = (const char *)t->items[x].val;
        al = t->items[x].len;
        b = (const char *)t->items[y].val;
        bl = t->items[y].len;
        r->n = i + 1;
        if ((r->f[i].name = strndup(a, al)) == NULL || (r->f[i].why = strndup(b, bl)) == NULL) {
            km_policy_findings_free(r);
            return km__err(KM_E_NOMEM, "out of memory");
        }
    }
    *out = r;
    return KM_OK;
}
