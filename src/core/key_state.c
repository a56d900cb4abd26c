/* key_state.c - the core of the key lifecycle: applying a transition to a
 * stored version (one write transaction), what is due and the maintenance
 * of a key, and the use of a key handle (refreshed when stale, due
 * transitions applied on the way). The decisions are the rules' (rules_lifecycle.c);
 * the public functions are in lifecycle.c. */
#include "core.h"
#include "km/quorum.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const char *km__lc_op_verb(int op)
{
    switch ((km__lc_op)op) {
    case KM__LC_ACTIVATE: return "activate";
    case KM__LC_SUSPEND: return "suspend";
    case KM__LC_RESUME: return "resume";
    case KM__LC_REVOKE: return "revoke";
    case KM__LC_SCHEDULE_DESTROY: return "schedule destruction of";
    case KM__LC_CANCEL_DESTROY: return "cancel destruction of";
    case KM__LC_DEACTIVATE: return "deactivate";
    case KM__LC_DESTROY: return "destroy";
    }
    return "change";
}

/* Applies a->op to the version record v of key `name` (the rules decide
 * whether it is legal from v's state): the dates and reason the operation
 * sets, then the new state. k (the key's object: its cryptoperiods) is only
 * needed for KM__LC_ACTIVATE. KM_E_STATE when it is not allowed; *from: the
 * state before. */
static int lc_apply(const km__kobj *k, const char *name, km__ver *v, const km__lc_arg *a,
                    int64_t now, km_key_state *from)
{
    km__vstate vs = km__ver_vstate(v);
    km_key_state to = a->op == KM__LC_CANCEL_DESTROY
                          ? km__rules_cancel_destroy(&vs, now)
                          : km__transition(a->op, v->state,
                                           a->op == KM__LC_REVOKE
                                               && km__rules_is_compromise(a->reason));

    if (to == 0)
        return km__err(KM_E_STATE, "cannot %s key '%s' version %u: it is %s",
                       km__lc_op_verb(a->op), name, v->version, km_state_name(v->state));
    if (a->op == KM__LC_ACTIVATE && k == NULL)
        return km__err(KM_E_INTERNAL, "activation without the key's cryptoperiods");
    switch (a->op) {
    case KM__LC_ACTIVATE:
        v->activated = a->date != 0 ? a->date : now;
        km__rules_stop_dates(v->activated, k->protect_days, k->process_days, &v->protect_stop,
                             &v->process_stop);
        break;
    case KM__LC_REVOKE:
        v->revoke_reason = a->reason;
        if (to == KM_STATE_COMPROMISED)
            v->compromise_date = a->date;
        else
            v->deactivated = now;
        break;
    case KM__LC_DEACTIVATE:
        v->deactivated = now;
        break;
    case KM__LC_SCHEDULE_DESTROY:
        v->prev_state = v->state;
        v->destroy_after = a->date;
        break;
    case KM__LC_CANCEL_DESTROY:
        v->prev_state = 0;
        v->destroy_after = 0;
        break;
    case KM__LC_DESTROY:
        v->destroyed = now;
        break;
    case KM__LC_SUSPEND:
    case KM__LC_RESUME:
        break;
    }
    *from = v->state;
    v->state = to;
    return KM_OK;
}

/* The audit detail of a transition: "revoke 'k': active -> deactivated, reason ...". */
static void lc_detail(char *d, size_t cap, const char *name, const km__lc_arg *a,
                      km_key_state from, km_key_state to)
{
    snprintf(d, cap, "%s '%s': %s -> %s%s%s", km__lc_op_verb(a->op), name,
             km_state_name(from), km_state_name(to), a->op == KM__LC_REVOKE ? ", reason " : "",
             a->op == KM__LC_REVOKE ? km_revoke_reason_name(a->reason) : "");
}

/* KM_E_STATE when the key record, read in t, has deletion protection. */
static int deletion_allowed(km__kobj *k, km__txn *t)
{
    km_secret *rec = NULL;
    uint32_t flags = 0;
    int rc = km__rec_get(t, k->ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK && (km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK
                        || km__tlv_get_u32(km_secret_data(rec), km_secret_len(rec), KM__K_FLAGS,
                                           &flags) != KM_OK))
        rc = km__err(KM_E_CORRUPT, "key record: bad flags");
    km_secret_free(rec);
    if (rc == KM_OK && (flags & KM_KEY_DELETION_PROTECTED))
        rc = km__err(KM_E_STATE, "key '%s' is protected against deletion: its versions are not "
                                 "destroyed until the protection is cleared", k->name);
    return rc;
}

int km__key_transition(km__kobj *k, uint32_t version, const km__lc_arg *a)
{
    struct km_ctx *ctx = k->ctx;
    km_secret *rec = NULL, *ref = NULL;
    km__txn *t = NULL;
    km__ver v;
    km_key_state to, from_state;
    uint8_t vk[20];
    int64_t now = km__now(ctx);
    int rc;

    if (version == 0 || version > k->nvers)
        return km__err(KM_E_NOTFOUND, "key '%s' has no version %u", k->name, version);
    km__vkey(vk, k->id, version);
    if ((rc = km__wtxn_begin(ctx, &t)) != KM_OK)
        return rc;
    memset(&v, 0, sizeof v);
    v.version = version;
    rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, k->id, 16, &rec);
    if (rc == KM_OK)
        rc = km__keyrec_ver(km_secret_data(rec), km_secret_len(rec), version, &v);
    if (rc == KM_OK)
        rc = lc_apply(k, k->name, &v, a, now, &from_state);
    if (rc != KM_OK)
        goto fail;
    to = v.state;
    if ((a->op == KM__LC_SCHEDULE_DESTROY || a->op == KM__LC_DESTROY)
        && (rc = deletion_allowed(k, t)) != KM_OK)
        goto fail;
    if (a->op == KM__LC_DESTROY) {
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
    if ((rc = km__keyrec_ver_put(ctx, t, k->id, km_secret_data(rec), km_secret_len(rec), &v))
        != KM_OK)
        goto fail;
    if (a->op == KM__LC_SCHEDULE_DESTROY) {
        /* dual control: consumes an approved request in this transaction */
        uint8_t params[8];
        km__be32_put(params, version);
        km__be32_put(params + 4, a->grace_days);
        if ((rc = km__quorum_consume_key(ctx, t, KM_REQ_DESTROY, k, params, sizeof params))
            != KM_OK)
            goto fail;
    }
    {
        char d[160];
        lc_detail(d, sizeof d, k->name, a, from_state, to);
        rc = km__wtxn_commit(ctx, t, a->op == KM__LC_DESTROY || a->op == KM__LC_SCHEDULE_DESTROY
                                             || a->op == KM__LC_CANCEL_DESTROY
                                         ? KM__OP_KEY_DESTROY : KM__OP_KEY_STATE,
                             k->id, version, d);
        t = NULL;
    }
    if (rc == KM_OK) {
        if (a->op == KM__LC_DESTROY)
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

/* --------------------------------------------------------------- maintain */

void km__report_add(km_maintain_report *r, const char *name, uint32_t version,
                       const char *action)
{
    if (r == NULL)
        return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct km__report_entry *e = realloc(r->e, cap * sizeof *e);
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

/* The facts of rotation (under the key's read lock). no_primary_rotates: a
 * key without a usable primary may be rotated (km_maintain; on use only with
 * rotation.replace_unusable_primary). */
static int rotation_due(const km__kobj *k, int64_t now, int no_primary_rotates)
{
    km__rotation_in in;
    uint32_t i, p = km__primary(k, now);

    memset(&in, 0, sizeof in);
    in.public_only = (k->flags & KM_KEY_PUBLIC_ONLY) != 0;
    in.has_primary = p != 0;
    if (p != 0) {
        in.primary_activated = k->vers[p - 1]->activated;
        in.primary_reserved = k->vers[p - 1]->reserved_seen;
    }
    in.rotate_at = k->rotate_at;
    in.rotate_days = k->rotate_days;
    in.no_primary_rotates = no_primary_rotates;
    for (i = 0; i < k->nvers && !in.pre_active_waiting; i++)
        in.pre_active_waiting = k->vers[i]->state == KM_STATE_PRE_ACTIVE;
    return km__rules_rotation_due(&in, now);
}

/* The transition due for a version now (-1: none); a key under deletion
 * protection keeps its due destructions for later. */
static int version_due(const km__kobj *k, const km__ver *v, int64_t now, int64_t *date)
{
    km__vstate vs = km__ver_vstate(v);
    int op = km__rules_version_due(&vs, k->grace_days, now, date);
    if ((k->flags & KM_KEY_DELETION_PROTECTED)
        && (op == KM__LC_SCHEDULE_DESTROY || op == KM__LC_DESTROY))
        op = -1;
    return op;
}

/* Rotation due by the primary's own usage or age (never for a key without an
 * active primary: one whose versions an admin suspended or deactivated). */
static int primary_rotation_due(km__kobj *k, int64_t now)
{
    int due;
    pthread_rwlock_rdlock(&k->lock);
    due = km__primary(k, now) != 0 && rotation_due(k, now, 0);
    pthread_rwlock_unlock(&k->lock);
    return due;
}

/* On use, a key left without a usable primary still rotates when its
 * rotation came due while that primary was usable: the newest ACTIVE
 * version's rotation date is past and not after its protect-stop (the period
 * and the protect period ending together). A version an admin suspended or
 * deactivated is not ACTIVE, so never counts. */
static int rotation_came_first(km__kobj *k, int64_t now)
{
    uint32_t i;
    int due = 0;
    pthread_rwlock_rdlock(&k->lock);
    for (i = k->nvers; i > 0 && k->rotate_days != 0; i--) {
        const km__ver *v = k->vers[i - 1];
        int64_t at;
        if (v->state != KM_STATE_ACTIVE || v->activated == 0)
            continue;
        at = v->activated + (int64_t)k->rotate_days * 86400;
        due = at <= now && (v->protect_stop == 0 || at <= v->protect_stop);
        break;
    }
    pthread_rwlock_unlock(&k->lock);
    return due;
}

int km__kobj_due(km__kobj *k, int64_t now, int lazy)
{
    uint32_t i;
    int due = 0;
    int64_t date;
    pthread_rwlock_rdlock(&k->lock);
    for (i = 0; i < k->nvers && !due; i++)
        due = version_due(k, k->vers[i], now, &date) >= 0;
    if (!due)
        due = rotation_due(k, now, !lazy || k->replace_unusable);
    pthread_rwlock_unlock(&k->lock);
    if (!due && lazy)
        due = rotation_came_first(k, now);
    return due;
}

static const char *op_done(int op)
{
    switch (op) {
    case KM__LC_ACTIVATE: return "activated";
    case KM__LC_DEACTIVATE: return "deactivated";
    case KM__LC_SCHEDULE_DESTROY: return "destroy-pending";
    case KM__LC_DESTROY: return "destroyed";
    default: return "changed";
    }
}

/* Applies everything due for one key, one durable step at a time. */
int km__kobj_maintain(km__kobj *k, km_maintain_report *r, int lazy)
{
    int64_t now = km__now(k->ctx);
    int rc = KM_OK, steps;
    /* on use, a key left without a usable primary is rotated only when its
     * policy says, or when the rotation was due while the primary still was
     * usable (its period ended as its protect period did) */
    int no_primary_rotates = !lazy || k->replace_unusable || primary_rotation_due(k, now)
                             || rotation_came_first(k, now);

    for (steps = 0; steps < 10000; steps++) {
        uint32_t i, version = 0;
        int op = -1, rot;
        km__lc_arg a;

        memset(&a, 0, sizeof a);
        pthread_rwlock_rdlock(&k->lock);
        for (i = 0; i < k->nvers && op < 0; i++) {
            op = version_due(k, k->vers[i], now, &a.date);
            version = i + 1;
        }
        rot = op < 0 && rotation_due(k, now, no_primary_rotates);
        a.op = (km__lc_op)op;
        pthread_rwlock_unlock(&k->lock);

        if (op >= 0) {
            rc = km__key_transition(k, version, &a);
            if (rc != KM_OK)
                return rc;
            km__report_add(r, k->name, version, op_done(op));
        } else if (rot) {
            uint32_t nv = 0;
            rc = km__kobj_rotate(k, &nv);
            if (rc != KM_OK)
                return rc;
            km__report_add(r, k->name, nv, "rotated");
        } else {
            return KM_OK;
        }
    }
    return km__err(KM_E_INTERNAL, "maintenance of key '%s' did not settle", k->name);
}

int km__key_revoke_all_in(struct km_ctx *ctx, km__txn *t, const uint8_t id[16], size_t *count)
{
    const km__lc_arg a = { KM__LC_REVOKE, KM_REVOKE_AFFILIATION_CHANGED, 0, 0 };
    km_secret *rec = NULL;
    km_key_state from;
    const uint8_t *nm;
    uint32_t i, n = 0;
    int64_t now = km__now(ctx);
    size_t nl = 0;
    char d[160], name[KM_KEY_NAME_MAX + 1];
    km__ver v;
    int rc;

    /* the key as this transaction sees it (its name, its number of
     * versions); never its cached object, whose loading takes ctx->mu */
    rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, id, 16, &rec);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc == KM_OK
        && (km__tlv_check(km_secret_data(rec), km_secret_len(rec)) != KM_OK
            || !km__tlv_find(km_secret_data(rec), km_secret_len(rec), KM__K_NAME, &nm, &nl)
            || nl == 0 || nl > KM_KEY_NAME_MAX
            || km__tlv_get_u32(km_secret_data(rec), km_secret_len(rec), KM__K_NVERSIONS, &n)
                   != KM_OK))
        rc = km__err(KM_E_CORRUPT, "a key record is malformed");
    if (rc == KM_OK) {
        memcpy(name, nm, nl);
        name[nl] = '\0';
    }
    for (i = 1; rc == KM_OK && i <= n; i++) {
        /* the record as this transaction last wrote it */
        if (i > 1) {
            km_secret_free(rec);
            rec = NULL;
            if ((rc = km__rec_get(t, ctx->sealer, KM__T_KEYS, id, 16, &rec)) != KM_OK)
                break;
        }
        memset(&v, 0, sizeof v);
        v.version = i;
        rc = km__keyrec_ver(km_secret_data(rec), km_secret_len(rec), i, &v);
        if (rc != KM_OK || (v.state != KM_STATE_ACTIVE && v.state != KM_STATE_SUSPENDED))
            continue;
        if ((rc = lc_apply(NULL, name, &v, &a, now, &from)) != KM_OK
            || (rc = km__keyrec_ver_put(ctx, t, id, km_secret_data(rec), km_secret_len(rec), &v))
                   != KM_OK)
            break;
        lc_detail(d, sizeof d, name, &a, from, v.state);
        if ((rc = km__audit_append(ctx, t, KM__OP_KEY_STATE, id, i, KM_OK, d)) == KM_OK
            && count != NULL)
            (*count)++;
    }
    km_secret_free(rec);
    return rc;
}

/* ------------------------------------------------------------- handles */

/* The data-path lock is made under k->lock held for writing, so a writer that
 * holds k->lock sees it made or not, and stays alone either way. Without memory
 * for it, readers take k->lock itself (token KM__BR_STRIPES). */
unsigned km__kobj_dp_rdlock(km__kobj *k)
{
    km__brlock *b = atomic_load_explicit(&k->dplock, memory_order_acquire);
    if (b == NULL) {
        pthread_rwlock_wrlock(&k->lock);
        /* aligned_alloc wants a size that is a multiple of the alignment */
        if ((b = atomic_load(&k->dplock)) == NULL
            && (b = aligned_alloc(64, (sizeof *b + 63) / 64 * 64)) != NULL) {
            km__br_init(b);
            atomic_store_explicit(&k->dplock, b, memory_order_release);
        }
        pthread_rwlock_unlock(&k->lock);
        if (b == NULL) {
            pthread_rwlock_rdlock(&k->lock);
            return KM__BR_STRIPES;
        }
    }
    return km__br_rdlock(b);
}

void km__kobj_dp_unlock(km__kobj *k, unsigned token)
{
    if (token == KM__BR_STRIPES)
        pthread_rwlock_unlock(&k->lock);
    else
        km__br_rdunlock(atomic_load_explicit(&k->dplock, memory_order_relaxed), token);
}

void km__kobj_wrlock(km__kobj *k)
{
    km__brlock *b;
    pthread_rwlock_wrlock(&k->lock);
    if ((b = atomic_load(&k->dplock)) != NULL)
        km__br_wrlock(b);
}

void km__kobj_wrunlock(km__kobj *k)
{
    km__brlock *b = atomic_load(&k->dplock);
    if (b != NULL)
        km__br_wrunlock(b);
    pthread_rwlock_unlock(&k->lock);
}

int km__key_use(km_key *key, km__kobj **out)
{
    km__kobj *k = key->k;
    int rc;

    if (key->fork_gen != atomic_load_explicit(&km__fork_gen, memory_order_relaxed))
        return km__err(KM_E_FORK, "key handle used in a forked child; open it again there");
    if ((rc = km__ctx_check(k->ctx)) != KM_OK)
        return rc;
    if ((k->ctx->flags & KM_OPEN_STRICT_REFRESH)
        || atomic_load_explicit(&k->loaded_gen, memory_order_relaxed)
               != km__wtxn_gen()
        || km__mono_ms() - atomic_load_explicit(&k->checked_ms, memory_order_relaxed)
               >= (int64_t)k->ctx->refresh_ms) {
        if ((rc = km__ctx_policy_refresh(k->ctx, 0)) != KM_OK)
            return rc;
        rc = km__kobj_refresh(k, (k->ctx->flags & KM_OPEN_STRICT_REFRESH) != 0);
        if (rc != KM_OK)
            return rc;
        /* Time-driven transitions happen lazily on use too (checked at each
         * refresh, so at most every refresh_ms). A failure here leaves the
         * date checks of the data path in force. */
        if (km__kobj_due(k, km__now(k->ctx), 1))
            (void)km__kobj_maintain(k, NULL, 1);
        atomic_store(&k->use_checked, 1);
    } else if (!atomic_load_explicit(&k->use_checked, memory_order_relaxed)
               && !atomic_exchange(&k->use_checked, 1)
               && primary_rotation_due(k, km__now(k->ctx))) {
        /* a key's first use in this process (a short-lived one never reaches a
         * refresh): rotation by the primary's usage or age happens now. The
         * flag is read before the exchange: an exchange on every call would
         * write a cache line that all threads using the key share. */
        (void)km__kobj_maintain(k, NULL, 1);
    }
    *out = k;
    return KM_OK;
}

int km__key_trim(km__kobj *k, uint32_t grace_days, uint32_t *count)
{
    uint32_t i, min, primary, n;
    int rc;

    if ((rc = km__kobj_refresh(k, 1)) != KM_OK)
        return rc;
    pthread_rwlock_rdlock(&k->lock);
    min = k->min_process;
    primary = k->primary;
    n = k->nvers;
    if (grace_days == 0)
        grace_days = k->grace_days;
    pthread_rwlock_unlock(&k->lock);
    if (min <= 1)
        return km__err(KM_E_STATE, "key '%s' has no minimum decryption version above 1: no "
                                   "version to trim", k->name);
    if (k->flags & KM_KEY_DELETION_PROTECTED) /* before any version is deactivated */
        return km__err(KM_E_STATE, "key '%s' is protected against deletion: no version is "
                                   "trimmed", k->name);
    if (primary != 0 && primary < min)
        return km__err(KM_E_STATE, "trimming key '%s' below version %u would destroy its primary "
                                   "version %u", k->name, min, primary);
    {
        int prc = km__policy_check_grace(km__policy_acquire(k->ctx), grace_days);
        km__policy_release(k->ctx);
        if (prc != KM_OK)
            return prc;
    }
    for (i = 1; i < min && i <= n; i++) {
        km__lc_arg a;
        km_key_state st;
        pthread_rwlock_rdlock(&k->lock);
        st = k->vers[i - 1]->state;
        pthread_rwlock_unlock(&k->lock);
        if (st == KM_STATE_DESTROYED || st == KM_STATE_DESTROY_PENDING)
            continue;
        memset(&a, 0, sizeof a);
        if (st == KM_STATE_ACTIVE || st == KM_STATE_SUSPENDED) {
            /* retired, not compromised */
            a.op = KM__LC_REVOKE;
            a.reason = KM_REVOKE_SUPERSEDED;
            if ((rc = km__key_transition(k, i, &a)) != KM_OK)
                return rc;
        }
        a.op = KM__LC_SCHEDULE_DESTROY;
        a.reason = 0;
        a.date = km__now(k->ctx) + (int64_t)grace_days * 86400;
        a.grace_days = grace_days;
        if ((rc = km__key_transition(k, i, &a)) != KM_OK)
            return rc;
        if (count != NULL)
            (*count)++;
    }
    return KM_OK;
}
