/* lifecycle.c - the lifecycle API (km/lifecycle.h: activate, suspend, resume,
 * revoke, schedule and cancel destruction; km_maintain and its report). The
 * state machine is the rules' (rules_lifecycle.c); transitions are applied by
 * key_state.c. */
#include "core.h"
#include "km/quorum.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int lc_entry(const char *fn, km_key *key, uint32_t version, const km__lc_arg *a)
{
    km__kobj *k;
    int rc;

    if (key == NULL)
        return km__err(KM_E_INVALID, "%s: key is NULL", fn);
    if ((rc = km__key_use(key, &k)) != KM_OK)
        return rc;
    if (k->session)
        return km__err(KM_E_UNSUPPORTED, "%s: a session key has no lifecycle; free it", fn);
    if ((rc = km__acl_check(k->ctx, a->op == KM__LC_SCHEDULE_DESTROY || a->op == KM__LC_CANCEL_DESTROY
                                        ? KM__OP_KEY_DESTROY : KM__OP_KEY_STATE, k)) != KM_OK)
        return rc;
    if (version == 0) {
        pthread_rwlock_rdlock(&k->lock);
        if (a->op == KM__LC_ACTIVATE || a->op == KM__LC_RESUME) {
            /* the newest version waiting for it: pre-active, or suspended */
            km_key_state want = a->op == KM__LC_ACTIVATE ? KM_STATE_PRE_ACTIVE : KM_STATE_SUSPENDED;
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
                           a->op == KM__LC_ACTIVATE ? "pre-active"
                           : a->op == KM__LC_RESUME ? "suspended" : "primary");
    }
    return km__key_transition(k, version, a);
}

int km_key_activate(km_key *key, uint32_t version)
{
    KM__REMOTE_KEY(key, KM__KC_ACTIVATE, key, version);
    km__lc_arg a = { KM__LC_ACTIVATE, 0, 0, 0 };
    return lc_entry("km_key_activate", key, version, &a);
}

int km_key_suspend(km_key *key, uint32_t version)
{
    KM__REMOTE_KEY(key, KM__KC_SUSPEND, key, version);
    km__lc_arg a = { KM__LC_SUSPEND, 0, 0, 0 };
    return lc_entry("km_key_suspend", key, version, &a);
}

int km_key_resume(km_key *key, uint32_t version)
{
    KM__REMOTE_KEY(key, KM__KC_RESUME, key, version);
    km__lc_arg a = { KM__LC_RESUME, 0, 0, 0 };
    return lc_entry("km_key_resume", key, version, &a);
}

int km_key_revoke(km_key *key, uint32_t version, km_revoke_reason reason, int64_t compromise_date)
{
    KM__REMOTE_KEY(key, KM__KC_REVOKE, key, version, reason, compromise_date);
    km__lc_arg a = { KM__LC_REVOKE, reason, compromise_date, 0 };
    if (km_revoke_reason_name(reason) == NULL)
        return km__err(KM_E_INVALID, "km_key_revoke: unknown reason %d", (int)reason);
    if (km__rules_is_compromise(reason)) {
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
    KM__REMOTE_KEY(key, KM__KC_SCHEDULE_DESTROY, key, version, grace_days);
    km__lc_arg a = { KM__LC_SCHEDULE_DESTROY, 0, 0, 0 };
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
    KM__REMOTE_KEY(key, KM__KC_CANCEL_DESTROY, key, version);
    km__lc_arg a = { KM__LC_CANCEL_DESTROY, 0, 0, 0 };
    return lc_entry("km_key_cancel_destroy", key, version, &a);
}

/* --------------------------------------------------------------- maintain */

int km_maintain(km_ctx *ctx, km_maintain_report **out)
{
    KM__REMOTE(ctx, KM__KC_MAINTAIN, out);
    km_maintain_report *r = NULL;
    km__id_list l = { NULL, 0, 0 };
    size_t i;
    int rc, first_err = KM_OK;

    if (out != NULL)
        *out = NULL;
    if (ctx == NULL)
        return km__err(KM_E_INVALID, "km_maintain: ctx is NULL");
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    /* time-driven transitions destroy, deactivate and rotate keys: an admin's
     * (or the owner's) call, like the operations they stand for */
    if ((rc = km__acl_check(ctx, KM__OP_MAINTAIN, NULL)) != KM_OK)
        return rc;
    {   /* its dates are judged no earlier than the vault's last audited time */
        km__txn *t = NULL;
        if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
            return rc;
        (void)km__now_txn(ctx, t);
        km__txn_abort(t);
    }
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    if ((rc = km_key_list(ctx, km__key_id_collect, &l)) != KM_OK)
        goto out;
    for (i = 0; i < l.n; i++) {
        km__kobj *k = NULL;
        km__progress(ctx, "maintain", i, l.n);
        rc = km__kobj_get(ctx, l.ids[i], &k);
        if (rc == KM_OK)
            rc = km__kobj_refresh(k, 1);
        if (rc == KM_OK)
            rc = km__kobj_maintain(k, r, 0);
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

