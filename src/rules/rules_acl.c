/* rules_acl.c - access decisions: a principal's roles and grants against
 * what an operation needs, allow or deny with a reason. Pure (rules.h): the
 * core reads the principal, its grants and the key's owner (access.c). */
#include "rules.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "km/acl.h"

uint32_t km__rules_op_perm(int op)
{
    switch (op) {
    case KM__OP_ENCRYPT: case KM__OP_DATAKEY: return KM_PERM_ENCRYPT;
    case KM__OP_DECRYPT: case KM__OP_REWRAP: return KM_PERM_DECRYPT;
    case KM__OP_SIGN: return KM_PERM_SIGN;
    case KM__OP_VERIFY: return KM_PERM_VERIFY;
    case KM__OP_MAC: return KM_PERM_MAC;
    case KM__OP_DERIVE: case KM__OP_AGREE: return KM_PERM_DERIVE;
    case KM__OP_EXPORT: return KM_PERM_EXPORT;
    case KM__OP_AGREE_RAW: return KM_PERM_AGREE_RAW;
    default: return 0;
    }
}

static const char *perm_name(uint32_t p)
{
    return p == KM_PERM_ENCRYPT ? "encrypt" : p == KM_PERM_DECRYPT ? "decrypt"
         : p == KM_PERM_SIGN ? "sign" : p == KM_PERM_VERIFY ? "verify"
         : p == KM_PERM_MAC ? "mac" : p == KM_PERM_DERIVE ? "derive"
         : p == KM_PERM_EXPORT ? "export" : p == KM_PERM_AGREE_RAW ? "agree-raw" : "?";
}

uint32_t km__rules_op_role(int op)
{
    switch (op) {
    case KM__OP_READ: case KM__OP_PUBLIC: return 0;
    case KM__OP_AUDIT_READ: return KM_ROLE_AUDITOR | KM_ROLE_ADMIN;
    case KM__OP_APPROVE: return KM_ROLE_CUSTODIAN;
    default: return KM_ROLE_ADMIN;
    }
}

const char *km__rules_role_name(uint32_t r)
{
    return r == KM_ROLE_ADMIN ? "admin" : r == KM_ROLE_CUSTODIAN ? "custodian"
         : r == KM_ROLE_USER ? "user" : r == KM_ROLE_AUDITOR ? "auditor" : "?";
}

uint32_t km__rules_role_from_name(const char *r)
{
    return strcmp(r, "admin") == 0 ? KM_ROLE_ADMIN : strcmp(r, "custodian") == 0
         ? KM_ROLE_CUSTODIAN : strcmp(r, "user") == 0 ? KM_ROLE_USER
         : strcmp(r, "auditor") == 0 ? KM_ROLE_AUDITOR : 0;
}

uint32_t km__rules_effective_perms(uint32_t roles, int owns, uint32_t granted)
{
    /* an auditor-only principal never gets key material or crypto operations */
    if ((roles & ~KM_ROLE_AUDITOR) == 0)
        return 0;
    return owns ? KM_PERM_ALL | granted : granted;
}

int km__rules_principal_name_ok(const char *n)
{
    size_t i, len = n ? strlen(n) : 0;
    /* the names the audit log gives to callers that are not principals
     * ("owner", "shares", "backend:NAME") and to role grantees ("role:"),
     * in any case: a principal named "Owner" would pass for the owner */
    if (len == 0 || len > 64 || strncasecmp(n, "role:", 5) == 0 || strcasecmp(n, "owner") == 0
        || strcasecmp(n, "shares") == 0 || strncasecmp(n, "backend:", 8) == 0)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)n[i] <= 0x20 || (unsigned char)n[i] >= 0x7f)
            return 0;
    return 1;
}

int km__rules_acl_decide(const km__subject *s, int op, const char *key_name, uint32_t perms,
                         char *why, size_t cap)
{
    uint32_t need = km__rules_op_perm(op), role;

    if (cap > 0)
        why[0] = '\0';
    if (!s->is_principal)
        return KM_OK;   /* the owner: every right */
    if (need == 0) {
        role = km__rules_op_role(op);
        if (role == 0 || (s->roles & role) != 0)
            return KM_OK;
        snprintf(why, cap, "principal '%s' lacks the %s role for %s", s->name,
                 role == (KM_ROLE_AUDITOR | KM_ROLE_ADMIN) ? "auditor or admin"
                                                           : km__rules_role_name(role),
                 km__op_name(op));
        return KM_E_DENIED;
    }
    if ((perms & need) == need)
        return KM_OK;
    snprintf(why, cap, "principal '%s' lacks the %s permission on key '%s'", s->name,
             perm_name(need), key_name ? key_name : "?");
    return KM_E_DENIED;
}
