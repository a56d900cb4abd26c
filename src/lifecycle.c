/* lifecycle.c - what each key-version state allows (NIST SP 800-57; DESIGN.md). */
#include "core.h"
#include "km/quorum.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const char *km_state_name(km_key_state state)
{
    switch (state) {
    case KM_STATE_PRE_ACTIVE: return "pre-active";
    case KM_STATE_ACTIVE: return "active";
    case KM_STATE_SUSPENDED: return "suspended";
    case KM_STATE_DEACTIVATED: return "deactivated";
    case KM_STATE_COMPROMISED: return "compromised";
    case KM_STATE_DESTROY_PENDING: return "destroy-pending";
    case KM_STATE_DESTROYED: return "destroyed";
    }
    return NULL;
}

/* Protect (encrypt, sign, wrap, MAC): ACTIVE only, and before protect-stop. */
int km__may_protect(const km__ver *v, int64_t now)
{
    if (v->state != KM_STATE_ACTIVE)
        return km__err(KM_E_STATE, "key version %u is %s: it may not protect new data",
                       v->version, km_state_name(v->state));
    if (v->activated != 0 && now < v->activated)
        return km__err(KM_E_STATE, "key version %u is not yet active", v->version);
    if (v->protect_stop != 0 && now >= v->protect_stop)
        return km__err(KM_E_STATE, "key version %u is past its protect-stop date", v->version);
    return KM_OK;
}

/* Process (decrypt, verify, unwrap, MAC verify): ACTIVE, SUSPENDED, DEACTIVATED
 * before process-stop; COMPROMISED only when asked for explicitly. */
int km__may_process(const km__ver *v, uint32_t flags, int64_t now)
{
    switch (v->state) {
    case KM_STATE_ACTIVE:
    case KM_STATE_SUSPENDED:
    case KM_STATE_DEACTIVATED:
        break;
    case KM_STATE_COMPROMISED:
        if (flags & KM_DECRYPT_ALLOW_COMPROMISED)
            return KM_OK;
        return km__err(KM_E_STATE, "key version %u is compromised: pass "
                                   "KM_DECRYPT_ALLOW_COMPROMISED to recover data", v->version);
    case KM_STATE_PRE_ACTIVE:
    case KM_STATE_DESTROY_PENDING:
    case KM_STATE_DESTROYED:
    default:
        return km__err(KM_E_STATE, "key version %u is %s: it may not process data",
                       v->version, km_state_name(v->state) ? km_state_name(v->state) : "unknown");
    }
    if (v->process_stop != 0 && now >= v->process_stop)
        return km__err(KM_E_STATE, "key version %u is past its process-stop date", v->version);
    return KM_OK;
}

uint32_t km__primary(const km__kobj *k, int64_t now)
{
    uint32_t i;
    for (i = k->nvers; i > 0; i--) {
        const km__ver *v = k->vers[i - 1];
        if (v->state == KM_STATE_ACTIVE && (v->activated == 0 || now >= v->activated)
            && (v->protect_stop == 0 || now < v->protect_stop))
            return v->version;
    }
    return 0;
}

/* ------------------------------------------------------------ transitions */

static const char *const reason_names[] = {
    NULL, "unspecified", "key-compromise", "ca-compromise", "affiliation-changed",
    "superseded", "cessation-of-operation", "privilege-withdrawn",
};

const char *km_revoke_reason_name(km_revoke_reason reason)
{
    if ((int)reason < KM_REVOKE_UNSPECIFIED || reason > KM_REVOKE_PRIVILEGE_WITHDRAWN)
        return NULL;
    return reason_names[reason];
}

int km_revoke_reason_from_name(const char *name, km_revoke_reason *out)
{
    int i;
    if (name == NULL || out == NULL)
        return km__err(KM_E_INVALID, "km_revoke_reason_from_name: %s is NULL",
                       name == NULL ? "name" : "out");
    for (i = KM_REVOKE_UNSPECIFIED; i <= KM_REVOKE_PRIVILEGE_WITHDRAWN; i++) {
        if (strcmp(reason_names[i], name) == 0) {
            *out = (km_revoke_reason)i;
            return KM_OK;
        }
    }
    return km__err(KM_E_INVALID, "unknown revocation reason (expected e.g. superseded, "
                                 "key-compromise)");
}

typedef enum { OP_ACTIVATE, OP_SUSPEND, OP_RESUME, OP_REVOKE, OP_SCHEDULE_DESTROY,
               OP_CANCEL_DESTROY, OP_DEACTIVATE, OP_DESTROY } lc_op;

static const char *op_name(lc_op op)
{
    switch (op) {
    case OP_ACTIVATE: return "activate";
    case OP_SUSPEND: return "suspend";
    case OP_RESUME: return "resume";
    case OP_REVOKE: return "revoke";
    case OP_SCHEDULE_DESTROY: return "schedule destruction of";
    case OP_CANCEL_DESTROY: return "cancel destruction of";
    case OP_DEACTIVATE: return "deactivate";
    case OP_DESTROY: return "destroy";
    }
    return "change";
}

typedef struct lc_arg {
    lc_op op;
    km_revoke_reason reason;
    int64_t date;        /* compromise date, or destroy-after */
    uint32_t grace_days; /* OP_SCHEDULE_DESTROY: for the dual-control request */
} lc_arg;

static int is_compromise(km_revoke_reason r)
{
    return r == KM_REVOKE_KEY_COMPROMISE || r == KM_REVOKE_CA_COMPROMISE;
}

/*
 * The transition table of DESIGN.md: returns the new state for (op, from),
 * or 0 when the transition is not allowed. This one function decides; the
 * table-driven test in tests/check_lifecycle.c walks every pair.
 */
km_key_state km__transition(int op, km_key_state from, int compromise)
{
    switch ((lc_op)op) {
    case OP_ACTIVATE:
        return from == KM_STATE_PRE_ACTIVE ? KM_STATE_ACTIVE : 0;
    case OP_SUSPEND:
        return from == KM_STATE_ACTIVE ? KM_STATE_SUSPENDED : 0;
    case OP_RESUME:
        return from == KM_STATE_SUSPENDED ? KM_STATE_ACTIVE : 0;
    case OP_REVOKE:
        if (compromise)
            return (from == KM_STATE_PRE_ACTIVE || from == KM_STATE_ACTIVE
                    || from == KM_STATE_SUSPENDED || from == KM_STATE_DEACTIVATED)
                       ? KM_STATE_COMPROMISED : 0;
        /* a non-compromise revocation deactivates */
        return (from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED) ? KM_STATE_DEACTIVATED : 0;
    case OP_DEACTIVATE:
        return (from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED) ? KM_STATE_DEACTIVATED : 0;
    case OP_SCHEDULE_DESTROY:
        return (from == KM_STATE_PRE_ACTIVE || from == KM_STATE_DEACTIVATED
                || from == KM_STATE_COMPROMISED) ? KM_STATE_DESTROY_PENDING : 0;
    case OP_CANCEL_DESTROY:
        return 0; /* back to the recorded previous state: handled by the caller */
    case OP_DESTROY:
        return from == KM_STATE_DESTROY_PENDING ? KM_STATE_DESTROYED : 0;
    }
    return 0;
}

/* Applies one transition to one version in its own write transaction; on
 * OP_DESTROY also removes the material (backend first, then the record). */
static int apply(km__kobj *k, uint32_t version, const lc_arg *a)
{
    struct km_ctx *ctx = k->ctx;
    km_secret *rec = NULL, *ref = NULL;
    km__txn *t = NULL;
    km__ver v;
    km_key_state to, from_state;
    uint8_t vk[20], buf[256];
    size_t len;
    int64_t now = km__now(ctx);
    int rc;

    if (version == 0 || version > k->nvers)
        return km__err(KM_E_NOTFOUND, "key '%s' has no version %u", k->name, version);
    km__vkey(vk, k->id, version);
    if ((rc = km__txn_begin(ctx->env, 1, &t)) != KM_OK)
        return rc;
    memset(&v, 0, sizeof v);
    v.version = version;
    rc = km__rec_get(t, ctx->sealer, KM__T_VMETA, vk, 20, &rec);
    if (rc == KM_OK)
        rc = km__vmeta_decode(km_secret_data(rec), km_secret_len(rec), &v);
    if (rc != KM_OK)
        goto fail;
    if (a->op == OP_CANCEL_DESTROY) {
        to = v.state == KM_STATE_DESTROY_PENDING && v.prev_state != 0 ? v.prev_state : 0;
        if (to != 0 && v.destroy_after != 0 && now >= v.destroy_after)
            to = 0; /* the grace window is over */
    } else {
        to = km__transition(a->op, v.state, a->op == OP_REVOKE && is_compromise(a->reason));
    }
    if (to == 0) {
        rc = km__err(KM_E_STATE, "cannot %s key '%s' version %u: it is %s", op_name(a->op),
                     k->name, version, km_state_name(v.state));
        goto fail;
    }
    switch (a->op) {
    case OP_ACTIVATE:
        v.activated = a->date != 0 ? a->date : now;
        v.protect_stop = k->protect_days ? v.activated + (int64_t)k->protect_days * 86400 : 0;
        v.process_stop = k->process_days ? v.activated + (int64_t)k->process_days * 86400 : 0;
        break;
    case OP_REVOKE:
        v.revoke_reason = a->reason;
        if (to == KM_STATE_COMPROMISED)
            v.compromise_date = a->date;
        else
            v.deactivated = now;
        break;
    case OP_DEACTIVATE:
        v.deactivated = now;
        break;
    case OP_SCHEDULE_DESTROY:
        v.prev_state = v.state;
        v.destroy_after = a->date;
        break;
    case OP_CANCEL_DESTROY:
        v.prev_state = 0;
        v.destroy_after = 0;
        break;
    case OP_DESTROY:
        v.destroyed = now;
        break;
    case OP_SUSPEND:
    case OP_RESUME:
        break;
    }
    from_state = v.state;
    v.state = to;
    if (a->op == OP_DESTROY) {
        /* Cryptographic destruction: the backend's object first (HSM, TPM),
         * then the sealed reference. If the backend fails, nothing changes
         * and the next maintenance run retries. */
        rc = km__rec_get(t, ctx->sealer, KM__T_MATERIAL, vk, 20, &ref);
        if (rc == KM_OK && k->be->ops.destroy != NULL) {
            km_backend_keyspec spec;
            memset(&spec, 0, sizeof spec);
            spec.version = 1;
            spec.type = k->type;
            spec.usage = k->usage;
            spec.flags = k->flags;
            spec.key_id = k->id;
            spec.key_version = version;
            rc = k->be->ops.destroy(k->be->state, &spec, km_secret_data(ref), km_secret_len(ref));
        }
        if (rc == KM_E_NOTFOUND)
            rc = KM_OK;
        if (rc == KM_OK) {
            rc = km__rec_del(t, KM__T_MATERIAL, vk, 20);
            if (rc == KM_E_NOTFOUND)
                rc = KM_OK;
        }
        if (rc != KM_OK)
            goto fail;
    }
    if ((rc = km__vmeta_encode(&v, buf, sizeof buf, &len)) != KM_OK
        || (rc = km__rec_put(t, ctx->sealer, KM__T_VMETA, vk, 20, buf, len, 0)) != KM_OK)
        goto fail;
    if (a->op == OP_SCHEDULE_DESTROY) {
        /* dual control: consumes an approved request in this transaction */
        uint8_t params[8];
        km__be32_put(params, version);
        km__be32_put(params + 4, a->grace_days);
        if ((rc = km__quorum_consume(ctx, t, KM_REQ_DESTROY, k->id, params, sizeof params))
            != KM_OK)
            goto fail;
    }
    {
        char d[160];
        snprintf(d, sizeof d, "%s '%s': %s -> %s%s%s", op_name(a->op), k->name,
                 km_state_name(from_state), km_state_name(to),
                 a->op == OP_REVOKE ? ", reason " : "",
                 a->op == OP_REVOKE ? km_revoke_reason_name(a->reason) : "");
        rc = km__audit_append(ctx, t, a->op == OP_DESTROY || a->op == OP_SCHEDULE_DESTROY
                                              || a->op == OP_CANCEL_DESTROY
                                          ? KM__OP_KEY_DESTROY : KM__OP_KEY_STATE,
                              k->id, version, KM_OK, d);
        if (rc != KM_OK)
            goto fail;
    }
    rc = km__txn_commit(t);
    t = NULL;
    if (rc == KM_OK) {
        atomic_fetch_add(&km__write_gen, 1);
        if (a->op == OP_DESTROY)
            km__ver_unload(k, version);
        rc = km__kobj_refresh(k, 1);
    }
    goto out;
fail:
    km__txn_abort(t);
out:
    km_secret_free(rec);
    km_secret_free(ref);
    return rc;
}

static int lc_entry(const char *fn, km_key *key, uint32_t version, const lc_arg *a)
{
    km__kobj *k;
    int rc;

    if (key == NULL)
        return km__err(KM_E_INVALID, "%s: key is NULL", fn);
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->session)
        return km__err(KM_E_UNSUPPORTED, "%s: a session key has no lifecycle; free it", fn);
    if ((rc = km__acl_check(k->ctx, a->op == OP_SCHEDULE_DESTROY || a->op == OP_CANCEL_DESTROY
                                        ? KM__OP_KEY_DESTROY : KM__OP_KEY_STATE, k)) != KM_OK)
        return rc;
    if (version == 0) {
        pthread_rwlock_rdlock(&k->lock);
        if (a->op == OP_ACTIVATE || a->op == OP_RESUME) {
            /* the newest version waiting for it: pre-active, or suspended */
            km_key_state want = a->op == OP_ACTIVATE ? KM_STATE_PRE_ACTIVE : KM_STATE_SUSPENDED;
            uint32_t i;
            for (i = k->nvers; i > 0 && version == 0; i--)
                if (k->vers[i - 1]->state == want)
                    version = i;
        } else {
            version = k->primary;
        }
        pthread_rwlock_unlock(&k->lock);
        if (version == 0)
            return km__err(KM_E_STATE, "%s: key '%s' has no %s version", fn, k->name,
                           a->op == OP_ACTIVATE ? "pre-active"
                           : a->op == OP_RESUME ? "suspended" : "primary");
    }
    return apply(k, version, a);
}

int km_key_activate(km_key *key, uint32_t version)
{
    lc_arg a = { OP_ACTIVATE, 0, 0, 0 };
    return lc_entry("km_key_activate", key, version, &a);
}

int km_key_suspend(km_key *key, uint32_t version)
{
    lc_arg a = { OP_SUSPEND, 0, 0, 0 };
    return lc_entry("km_key_suspend", key, version, &a);
}

int km_key_resume(km_key *key, uint32_t version)
{
    lc_arg a = { OP_RESUME, 0, 0, 0 };
    return lc_entry("km_key_resume", key, version, &a);
}

int km_key_revoke(km_key *key, uint32_t version, km_revoke_reason reason, int64_t compromise_date)
{
    lc_arg a = { OP_REVOKE, reason, compromise_date, 0 };
    if (km_revoke_reason_name(reason) == NULL)
        return km__err(KM_E_INVALID, "km_key_revoke: unknown reason %d", (int)reason);
    if (is_compromise(reason)) {
        if (compromise_date <= 0)
            return km__err(KM_E_INVALID, "km_key_revoke: a compromise needs its compromise date");
        if (key != NULL && compromise_date > km__now(key->k->ctx) + 60)
            return km__err(KM_E_INVALID, "km_key_revoke: the compromise date is in the future");
    } else if (compromise_date != 0) {
        return km__err(KM_E_INVALID, "km_key_revoke: a compromise date needs a compromise reason");
    }
    return lc_entry("km_key_revoke", key, version, &a);
}

int km_key_schedule_destroy(km_key *key, uint32_t version, uint32_t grace_days)
{
    lc_arg a = { OP_SCHEDULE_DESTROY, 0, 0, 0 };
    if (grace_days < 1 || grace_days > 3650)
        return km__err(KM_E_INVALID, "km_key_schedule_destroy: grace_days must be 1 to 3650");
    if (key == NULL)
        return km__err(KM_E_INVALID, "km_key_schedule_destroy: key is NULL");
    {
        struct km_ctx *ctx = key->k->ctx;
        int rc = km__policy_check_grace(km__policy_acquire(ctx), grace_days);
        km__policy_release(ctx);
        if (rc != KM_OK)
            return rc;
    }
    a.date = km__now(key->k->ctx) + (int64_t)grace_days * 86400;
    a.grace_days = grace_days;
    return lc_entry("km_key_schedule_destroy", key, version, &a);
}

int km_key_cancel_destroy(km_key *key, uint32_t version)
{
    lc_arg a = { OP_CANCEL_DESTROY, 0, 0, 0 };
    return lc_entry("km_key_cancel_destroy", key, version, &a);
}

/* --------------------------------------------------------------- maintain */

struct km_maintain_report {
    struct entry {
        char *name;
        uint32_t version;
        const char *action;
    } *e;
    size_t n, cap;
};

static void report_add(km_maintain_report *r, const char *name, uint32_t version,
                       const char *action)
{
    if (r == NULL)
        return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct entry *e = realloc(r->e, cap * sizeof *e);
        if (e == NULL)
            return; /* the report is best effort; the transitions are not */
        r->e = e;
        r->cap = cap;
    }
    r->e[r->n].name = strdup(name);
    r->e[r->n].version = version;
    r->e[r->n].action = action;
    if (r->e[r->n].name != NULL)
        r->n++;
}

/* What is due for one version now: the operation, or -1. */
static int version_due(const km__ver *v, int64_t now)
{
    switch (v->state) {
    case KM_STATE_PRE_ACTIVE:
        if (v->activated != 0 && now >= v->activated)
            return OP_ACTIVATE;
        break;
    case KM_STATE_ACTIVE:
    case KM_STATE_SUSPENDED:
        if (v->protect_stop != 0 && now >= v->protect_stop)
            return OP_DEACTIVATE;
        break;
    case KM_STATE_DEACTIVATED:
        if (v->process_stop != 0 && now >= v->process_stop)
            return OP_SCHEDULE_DESTROY;
        break;
    case KM_STATE_DESTROY_PENDING:
        if (v->destroy_after != 0 && now >= v->destroy_after)
            return OP_DESTROY;
        break;
    case KM_STATE_COMPROMISED:
    case KM_STATE_DESTROYED:
        break;
    }
    return -1;
}

/* Rotation is due when the key has a period and its primary (or, with no
 * primary, its newest version) was activated that long ago, or when the
 * primary used 90% of its invocation limit (AES-GCM). */
static int rotation_due(const km__kobj *k, int64_t now)
{
    const km__ver *v;
    uint32_t p = km__primary(k, now);
    if (k->flags & KM_KEY_PUBLIC_ONLY)
        return 0;
    if (p != 0) {
        v = k->vers[p - 1];
        if (k->rotate_at != 0 && v->reserved_seen >= k->rotate_at)
            return 1;
    }
    if (k->rotate_days == 0)
        return 0;
    if (p == 0) {
        /* nothing may protect: rotate unless a version is waiting to activate */
        uint32_t i;
        for (i = 0; i < k->nvers; i++)
            if (k->vers[i]->state == KM_STATE_PRE_ACTIVE)
                return 0;
        return 1;
    }
    return now >= v->activated + (int64_t)k->rotate_days * 86400;
}

int km__kobj_due(km__kobj *k, int64_t now)
{
    uint32_t i;
    int due = 0;
    pthread_rwlock_rdlock(&k->lock);
    for (i = 0; i < k->nvers && !due; i++)
        due = version_due(k->vers[i], now) >= 0;
    if (!due)
        due = rotation_due(k, now);
    pthread_rwlock_unlock(&k->lock);
    return due;
}

static const char *op_done(int op)
{
    switch (op) {
    case OP_ACTIVATE: return "activated";
    case OP_DEACTIVATE: return "deactivated";
    case OP_SCHEDULE_DESTROY: return "destroy-pending";
    case OP_DESTROY: return "destroyed";
    default: return "changed";
    }
}

/* Applies everything due for one key, one durable step at a time. */
int km__kobj_maintain(km__kobj *k, km_maintain_report *r)
{
    int64_t now = km__now(k->ctx);
    int rc = KM_OK, steps;

    for (steps = 0; steps < 10000; steps++) {
        uint32_t i, version = 0;
        int op = -1, rot;
        lc_arg a;

        pthread_rwlock_rdlock(&k->lock);
        for (i = 0; i < k->nvers && op < 0; i++) {
            op = version_due(k->vers[i], now);
            version = i + 1;
        }
        rot = op < 0 && rotation_due(k, now);
        memset(&a, 0, sizeof a);
        a.op = (lc_op)op;
        if (op == OP_SCHEDULE_DESTROY)
            a.date = k->vers[version - 1]->process_stop + (int64_t)k->grace_days * 86400;
        if (op == OP_ACTIVATE)
            a.date = k->vers[version - 1]->activated; /* keep the scheduled date */
        pthread_rwlock_unlock(&k->lock);

        if (op >= 0) {
            rc = apply(k, version, &a);
            if (rc != KM_OK)
                return rc;
            report_add(r, k->name, version, op_done(op));
        } else if (rot) {
            uint32_t nv = 0;
            rc = km__kobj_rotate(k, &nv);
            if (rc != KM_OK)
                return rc;
            report_add(r, k->name, nv, "rotated");
        } else {
            return KM_OK;
        }
    }
    return km__err(KM_E_INTERNAL, "maintenance of key '%s' did not settle", k->name);
}

struct id_list {
    uint8_t (*ids)[16];
    size_t n, cap;
};

static int collect_id(const char *name, const uint8_t id[16], km_key_type type, void *arg)
{
    struct id_list *l = arg;
    (void)name; (void)type;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->ids, cap * 16);
        if (p == NULL)
            return 1;
        l->ids = p;
        l->cap = cap;
    }
    memcpy(l->ids[l->n++], id, 16);
    return 0;
}

int km_maintain(km_ctx *ctx, km_maintain_report **out)
{
    km_maintain_report *r = NULL;
    struct id_list l = { NULL, 0, 0 };
    size_t i;
    int rc, first_err = KM_OK;

    if (out != NULL)
        *out = NULL;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_maintain: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    if ((rc = km_key_list(ctx, collect_id, &l)) != KM_OK)
        goto out;
    for (i = 0; i < l.n; i++) {
        km__kobj *k = NULL;
        km__progress(ctx, "maintain", i, l.n);
        rc = km__kobj_get(ctx, l.ids[i], &k);
        if (rc == KM_OK)
            rc = km__kobj_refresh(k, 1);
        if (rc == KM_OK)
            rc = km__kobj_maintain(k, r);
        km__kobj_unref(k);
        /* one key's failure (a backend that cannot destroy now) does not
         * stop the others; the first error is returned */
        if (rc != KM_OK && first_err == KM_OK)
            first_err = rc;
    }
    km__progress(ctx, "maintain", l.n, l.n);
    rc = first_err;
out:
    free(l.ids);
    if (out != NULL && (rc == KM_OK || r->n > 0))
        *out = r;
    else
        km_maintain_report_free(r);
    return rc;
}

size_t km_maintain_report_count(const km_maintain_report *r)
{
    return r ? r->n : 0;
}

int km_maintain_report_get(const km_maintain_report *r, size_t index, const char **key_name,
                           uint32_t *version, const char **action)
{
    if (r == NULL || index >= r->n)
        return km__err(KM_E_INVALID, "km_maintain_report_get: no entry %zu", index);
    if (key_name)
        *key_name = r->e[index].name;
    if (version)
        *version = r->e[index].version;
    if (action)
        *action = r->e[index].action;
    return KM_OK;
}

void km_maintain_report_free(km_maintain_report *r)
{
    size_t i;
    if (r == NULL)
        return;
    for (i = 0; i < r->n; i++)
        free(r->e[i].name);
    free(r->e);
    free(r);
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
    struct id_list l = { NULL, 0, 0 };
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
    if ((rc = km_key_list(ctx, collect_id, &l)) != KM_OK) {
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

int km__key_revoke_all(struct km_ctx *ctx, const uint8_t id[16], const char *why)
{
    km__kobj *k = NULL;
    lc_arg a = { OP_REVOKE, KM_REVOKE_AFFILIATION_CHANGED, 0, 0 };
    uint32_t i, n;
    km_key_state st;
    int rc, first = KM_OK;

    (void)why;
    if ((rc = km__kobj_get(ctx, id, &k)) != KM_OK)
        return rc == KM_E_NOTFOUND ? KM_OK : rc;
    pthread_rwlock_rdlock(&k->lock);
    n = k->nvers;
    pthread_rwlock_unlock(&k->lock);
    for (i = 1; i <= n; i++) {
        pthread_rwlock_rdlock(&k->lock);
        st = i <= k->nvers ? k->vers[i - 1]->state : KM_STATE_DESTROYED;
        pthread_rwlock_unlock(&k->lock);
        if (st == KM_STATE_ACTIVE || st == KM_STATE_SUSPENDED) {
            rc = apply(k, i, &a);
            if (rc != KM_OK && first == KM_OK)
                first = rc;
        }
    }
    km__kobj_unref(k);
    return first;
}
