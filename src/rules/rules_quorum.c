/* rules_quorum.c - dual control: whether a request's approvals authorise
 * the guarded call, and whether an approval may be added. Pure (rules.h):
 * the core reads and writes the request records (approvals.c, quorum.c). */
#include "rules.h"

#include <stdio.h>
#include <string.h>

#include "km/acl.h"
#include "km/quorum.h"

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

/* ------------------------------------------------- principal-change params */

static const uint32_t role_order[] = { KM_ROLE_ADMIN, KM_ROLE_CUSTODIAN, KM_ROLE_USER,
                                       KM_ROLE_AUDITOR };

size_t km__rules_principal_params(char *out, size_t cap, int add, const char *name,
                                  uint32_t roles)
{
    size_t i, n;
    int w = snprintf(out, cap, "%s:%s", add ? "add" : "remove", name);
    char sep = ':';

    if (w < 0 || (size_t)w >= cap)
        return 0;
    n = (size_t)w;
    for (i = 0; add && i < sizeof role_order / sizeof role_order[0]; i++) {
        if (!(roles & role_order[i]))
            continue;
        w = snprintf(out + n, cap - n, "%c%s", sep, km__rules_role_name(role_order[i]));
        if (w < 0 || (size_t)w >= cap - n)
            return 0;
        n += (size_t)w;
        sep = ',';
    }
    return n;
}

static int has_prefix(const uint8_t *p, size_t n, const char *pfx, size_t *rest)
{
    size_t l = strlen(pfx);
    if (n < l || memcmp(p, pfx, l) != 0)
        return 0;
    *rest = l;
    return 1;
}

int km__rules_slot_change_params(const uint8_t *p, size_t n)
{
    size_t i, at, digits;
    int part;

    if (p == NULL)
        return 0;
    if ((n == 5 && memcmp(p, "rekey", 5) == 0) || (n == 22 && memcmp(p, "keyslot-add:passphrase", 22) == 0)
        || (n == 26 && memcmp(p, "keyslot-remove:passphrases", 26) == 0))
        return 1;
    if (has_prefix(p, n, "keyslot-add:backend:", &at)) {
        if (n == at || n - at > 64)
            return 0;
        for (i = at; i < n; i++)
            if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == ':')
                return 0;
        return 1;
    }
    if (!has_prefix(p, n, "keyslot-add:shares:", &at))
        return 0;
    /* M-of-N: two runs of 1..3 digits around "-of-" */
    for (part = 0; part < 2; part++) {
        for (digits = 0; at < n && p[at] >= '0' && p[at] <= '9' && digits < 4; at++)
            digits++;
        if (digits == 0 || digits > 3)
            return 0;
        if (part == 0) {
            if (n - at < 4 || memcmp(p + at, "-of-", 4) != 0)
                return 0;
            at += 4;
        }
    }
    return at == n;
}

int km__rules_principal_params_parse(const uint8_t *p, size_t n, int *add, char *name,
                                     size_t cap, uint32_t *roles)
{
    static const char form[] = "principal-change parameters are \"add:NAME:ROLES\" (ROLES "
                               "a comma-separated list of admin, custodian, user, auditor) or "
                               "\"remove:NAME\"";
    const uint8_t *rs = NULL, *nm;
    size_t i, nl;

    *roles = 0;
    if (p == NULL)
        return km__err(KM_E_INVALID, "%s", form);
    if (n > 4 && memcmp(p, "add:", 4) == 0) {
        *add = 1;
        nm = p + 4;
        for (i = n; i > 4; i--)          /* roles never hold ':'; a name may */
            if (p[i - 1] == ':') {
                rs = p + i;
                break;
            }
        if (rs == NULL || rs - 1 <= nm)
            return km__err(KM_E_INVALID, "%s: the roles are missing", form);
        nl = (size_t)(rs - 1 - nm);
        while (rs < p + n) {
            char role[16];
            size_t rl = 0;
            while (rs + rl < p + n && rs[rl] != ',')
                rl++;
            if (rl == 0 || rl >= sizeof role)
                return km__err(KM_E_INVALID, "%s", form);
            memcpy(role, rs, rl);
            role[rl] = '\0';
            if (km__rules_role_from_name(role) == 0)
                return km__err(KM_E_INVALID, "%s: unknown role '%s'", form, role);
            *roles |= km__rules_role_from_name(role);
            rs += rl + (rs + rl < p + n);
        }
        if (*roles == 0)
            return km__err(KM_E_INVALID, "%s: the roles are missing", form);
    } else if (n > 7 && memcmp(p, "remove:", 7) == 0) {
        *add = 0;
        nm = p + 7;
        nl = n - 7;
    } else {
        return km__err(KM_E_INVALID, "%s", form);
    }
    if (nl == 0 || nl >= cap || memchr(nm, '\0', nl) != NULL)
        return km__err(KM_E_INVALID, "%s: bad principal name", form);
    memcpy(name, nm, nl);
    name[nl] = '\0';
    return KM_OK;
}

/* ------------------------------------------------------- self-satisfaction */

int km__rules_quorum_unguarded(const uint32_t counts[6], uint32_t *need, int *over)
{
    static const int guards[] = { KM_REQ_PRINCIPAL_CHANGE, KM_REQ_POLICY_CHANGE };
    uint32_t max = 0;
    int op, g, at = 0;

    for (op = KM_REQ_DESTROY; op <= KM_REQ_PRINCIPAL_CHANGE; op++)
        if (counts[op] > max) {
            max = counts[op];
            at = op;
        }
    for (g = 0; g < 2; g++)
        if (counts[guards[g]] < max) {
            *need = max;
            *over = at;
            return guards[g];
        }
    return 0;
}
