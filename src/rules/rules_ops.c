/* rules_ops.c - the operations of the audit log and access control: their
 * names (stored by number in the log, shown by name). Pure (rules.h). */
#include "rules.h"

static const char *const op_names[KM__OP__COUNT] = {
    [KM__OP_NONE] = "none",
    [KM__OP_OPEN] = "vault.open",
    [KM__OP_AUTH_FAIL] = "auth.fail",
    [KM__OP_DENIED] = "denied",
    [KM__OP_KEY_CREATE] = "key.create",
    [KM__OP_KEY_IMPORT] = "key.import",
    [KM__OP_KEY_ROTATE] = "key.rotate",
    [KM__OP_KEY_STATE] = "key.state",
    [KM__OP_KEY_DESTROY] = "key.destroy",
    [KM__OP_KEY_POLICY] = "key.policy",
    [KM__OP_KEY_GRANT] = "key.grant",
    [KM__OP_KEY_OWNER] = "key.owner",
    [KM__OP_EXPORT] = "key.export",
    [KM__OP_POLICY_SET] = "policy.set",
    [KM__OP_BACKEND_SET] = "backend.set",
    [KM__OP_SLOT_ADD] = "keyslot.add",
    [KM__OP_SLOT_REMOVE] = "keyslot.remove",
    [KM__OP_REKEY] = "vault.rekey",
    [KM__OP_COMPACT] = "vault.compact",
    [KM__OP_AUDIT_LEVEL] = "audit.level",
    [KM__OP_PRINCIPAL_ADD] = "principal.add",
    [KM__OP_PRINCIPAL_REMOVE] = "principal.remove",
    [KM__OP_REQUEST] = "request.create",
    [KM__OP_APPROVE] = "request.approve",
    [KM__OP_EXECUTE] = "request.execute",
    [KM__OP_ENCRYPT] = "encrypt",
    [KM__OP_DECRYPT] = "decrypt",
    [KM__OP_SIGN] = "sign",
    [KM__OP_VERIFY] = "verify",
    [KM__OP_MAC] = "mac",
    [KM__OP_DATAKEY] = "datakey",
    [KM__OP_REWRAP] = "rewrap",
    [KM__OP_DERIVE] = "derive",
    [KM__OP_AGREE] = "agree",
    [KM__OP_PUBLIC] = "public",
    [KM__OP_AUDIT_READ] = "audit.read",
    [KM__OP_READ] = "metadata.read",
    [KM__OP_COMPROMISED_USE] = "compromised.use",
    [KM__OP_BACKUP] = "vault.backup",
    [KM__OP_MAINTAIN] = "vault.maintain",
    [KM__OP_KEY_META] = "key.meta",
    [KM__OP_AGREE_RAW] = "agree.raw",
};

const char *km__op_name(int op)
{
    return op > 0 && op < KM__OP__COUNT && op_names[op] != NULL ? op_names[op] : "unknown";
}

