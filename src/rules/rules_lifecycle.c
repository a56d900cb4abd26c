/* rules_lifecycle.c - the key-version state machine (NIST SP 800-57;
 * docs/LIFECYCLE.md): what each state allows, which transitions are legal, and what
 * time makes due. Pure (rules.h): decisions over a km__vstate and `now`. */
#include "rules.h"

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

/* km__rules_may_protect's refusals (its fast path is inline in rules.h). */
int km__rules_protect_refused(const km__vstate *v, int64_t now)
{
    if (v->below_min_protect)
        return km__err(KM_E_STATE, "key version %u is below the key's minimum encryption "
                                   "version: it may not protect new data", v->version);
    if (v->state != KM_STATE_ACTIVE)
        return km__err(KM_E_STATE, "key version %u is %s: it may not protect new data",
                       v->version, km_state_name(v->state));
    if (v->activated != 0 && now < v->activated)
        return km__err(KM_E_STATE, "key version %u is not yet active", v->version);
    return km__err(KM_E_STATE, "key version %u is past its protect-stop date", v->version);
}

int km__rules_may_process(const km__vstate *v, uint32_t flags, int64_t now)
{
    if (v->below_min_process)
        return km__err(KM_E_STATE, "key version %u is below the key's minimum decryption "
                                   "version: it may not process data", v->version);
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

int km__rules_primary_candidate(const km__vstate *v, int64_t now)
{
    return v->state == KM_STATE_ACTIVE && (v->activated == 0 || now >= v->activated)
           && (v->protect_stop == 0 || now < v->protect_stop) && !v->below_min_protect;
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

int km__rules_is_compromise(km_revoke_reason r)
{
    return r == KM_REVOKE_KEY_COMPROMISE || r == KM_REVOKE_CA_COMPROMISE;
}

/*
 * The transition table of docs/LIFECYCLE.md: returns the new state for (op, from),
 * or 0 when the transition is not allowed. This one function decides; the
 * table-driven test in tests/check_lifecycle.c walks every pair.
 */
km_key_state km__transition(int op, km_key_state from, int compromise)
{
    switch ((km__lc_op)op) {
    case KM__LC_ACTIVATE:
        return from == KM_STATE_PRE_ACTIVE ? KM_STATE_ACTIVE : 0;
    case KM__LC_SUSPEND:
        return from == KM_STATE_ACTIVE ? KM_STATE_SUSPENDED : 0;
    case KM__LC_RESUME:
        return from == KM_STATE_SUSPENDED ? KM_STATE_ACTIVE : 0;
    case KM__LC_REVOKE:
        if (compromise)
            return (from == KM_STATE_PRE_ACTIVE || from == KM_STATE_ACTIVE
                    || from == KM_STATE_SUSPENDED || from == KM_STATE_DEACTIVATED)
                       ? KM_STATE_COMPROMISED : 0;
        /* a non-compromise revocation deactivates */
        return (from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED) ? KM_STATE_DEACTIVATED : 0;
    case KM__LC_DEACTIVATE:
        return (from == KM_STATE_ACTIVE || from == KM_STATE_SUSPENDED) ? KM_STATE_DEACTIVATED : 0;
    case KM__LC_SCHEDULE_DESTROY:
        return (from == KM_STATE_PRE_ACTIVE || from == KM_STATE_DEACTIVATED
                || from == KM_STATE_COMPROMISED) ? KM_STATE_DESTROY_PENDING : 0;
    case KM__LC_CANCEL_DESTROY:
        return 0; /* back to the recorded previous state: km__rules_cancel_destroy */
    case KM__LC_DESTROY:
        return from == KM_STATE_DESTROY_PENDING ? KM_STATE_DESTROYED : 0;
    }
    return 0;
}

km_key_state km__rules_cancel_destroy(const km__vstate *v, int64_t now)
{
    km_key_state to = v->state == KM_STATE_DESTROY_PENDING && v->prev_state != 0
                          ? v->prev_state : 0;
    if (to != 0 && v->destroy_after != 0 && now >= v->destroy_after)
        to = 0; /* the grace window is over */
    return to;
}

void km__rules_stop_dates(int64_t activated, uint32_t protect_days, uint32_t process_days,
                          int64_t *protect_stop, int64_t *process_stop)
{
    *protect_stop = protect_days ? activated + (int64_t)protect_days * 86400 : 0;
    *process_stop = process_days ? activated + (int64_t)process_days * 86400 : 0;
}

/* ---------------------------------------------------------- what is due */

int km__rules_version_due(const km__vstate *v, uint32_t grace_days, int64_t now, int64_t *date)
{
    *date = 0;
    switch (v->state) {
    case KM_STATE_PRE_ACTIVE:
        if (v->activated != 0 && now >= v->activated) {
            *date = v->activated; /* keep the scheduled date */
            return KM__LC_ACTIVATE;
        }
        break;
    case KM_STATE_ACTIVE:
    case KM_STATE_SUSPENDED:
        if (v->protect_stop != 0 && now >= v->protect_stop)
            return KM__LC_DEACTIVATE;
        break;
    case KM_STATE_DEACTIVATED:
        if (v->process_stop != 0 && now >= v->process_stop) {
            *date = v->process_stop + (int64_t)grace_days * 86400;
            return KM__LC_SCHEDULE_DESTROY;
        }
        break;
    case KM_STATE_DESTROY_PENDING:
        if (v->destroy_after != 0 && now >= v->destroy_after)
            return KM__LC_DESTROY;
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
int km__rules_rotation_due(const km__rotation_in *in, int64_t now)
{
    if (in->public_only)
        return 0;
    if (in->has_primary && in->rotate_at != 0 && in->primary_reserved >= in->rotate_at)
        return 1;
    if (in->rotate_days == 0)
        return 0;
    if (!in->has_primary)
        /* nothing may protect: rotate unless a version is waiting to activate,
         * and only where the caller allows it (docs/LIFECYCLE.md "Rotation") */
        return in->no_primary_rotates && !in->pre_active_waiting;
    return now >= in->primary_activated + (int64_t)in->rotate_days * 86400;
}
