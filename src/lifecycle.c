/* lifecycle.c - what each key-version state allows (NIST SP 800-57; DESIGN.md). */
#include "core.h"

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
