/* rules_quorum.c - dual control: whether a request's approvals authorise
 * the guarded call, and whether an approval may be added. Pure (rules.h):
 * the core reads and writes the request records (approvals.c, quorum.c). */
#include "rules.h"

size_t km__rules_quorum_count(const km__request *r)
{
    size_t i, j, n = 0;

    for (i = 0; i < r->napprovals && i < KM__APPROVERS_MAX; i++) {
        const uint8_t *pid = r->approvals + i * KM__APPROVER_LEN;
        int dup = km_ct_equal(pid, r->rpid, 16);
        for (j = 0; j < i && !dup; j++)
            dup = km_ct_equal(pid, r->approvals + j * KM__APPROVER_LEN, 16);
        if (!dup)
            n++;
    }
    return n;
}

int km__rules_quorum_ready(const km__request *r, uint32_t needed, int64_t now)
{
    if (r->consumed || now >= r->expires)
        return 0;
    return km__rules_quorum_count(r) >= needed;
}

km__approve_verdict km__rules_quorum_may_approve(const km__request *r, const uint8_t approver[16],
                                                 int64_t now)
{
    size_t i;

    if (r->consumed)
        return KM__APPROVE_CONSUMED;
    if (now >= r->expires)
        return KM__APPROVE_EXPIRED;
    if (km_ct_equal(r->rpid, approver, 16))
        return KM__APPROVE_OWN;
    for (i = 0; i < r->napprovals; i++)
        if (km_ct_equal(r->approvals + i * KM__APPROVER_LEN, approver, 16))
            return KM__APPROVE_TWICE;
    if (r->napprovals >= KM__APPROVERS_MAX)
        return KM__APPROVE_FULL;
    return KM__APPROVE_OK;
}
