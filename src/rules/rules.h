/*
 * rules.h - the rules: pure decisions over plain structs.
 *
 * No storage, no I/O, no locks, no calls into the core: every function here
 * decides from its arguments alone (and records its refusal with km__err()).
 * The core gathers the facts (a version's state and dates, a principal's
 * roles and grants, a request's approvals, the policy) and asks; the rules
 * call nothing above them. The policy rules are in policy.h (policy.c).
 *
 *   rules_ops.c        the operations of the audit log and access control
 *   rules_lifecycle.c  the key-version state machine (docs/LIFECYCLE.md), dates, what is due
 *   rules_acl.c        access decisions: roles, grants -> allow or deny with a reason
 *   rules_quorum.c     dual control: distinct valid approvals against what is needed
 */
#ifndef KM_RULES_H
#define KM_RULES_H

#include "km_int.h"

/* ------------------------------------------------------------ rules_ops.c */

/* Operations, for access control and the audit log. Append only: the audit
 * log stores the number. */
enum {
    KM__OP_NONE = 0, KM__OP_OPEN, KM__OP_AUTH_FAIL, KM__OP_DENIED,
    KM__OP_KEY_CREATE, KM__OP_KEY_IMPORT, KM__OP_KEY_ROTATE, KM__OP_KEY_STATE,
    KM__OP_KEY_DESTROY, KM__OP_KEY_POLICY, KM__OP_KEY_GRANT, KM__OP_KEY_OWNER, KM__OP_EXPORT,
    KM__OP_POLICY_SET, KM__OP_BACKEND_SET, KM__OP_SLOT_ADD, KM__OP_SLOT_REMOVE, KM__OP_REKEY,
    KM__OP_COMPACT, KM__OP_AUDIT_LEVEL, KM__OP_PRINCIPAL_ADD, KM__OP_PRINCIPAL_REMOVE,
    KM__OP_REQUEST, KM__OP_APPROVE, KM__OP_EXECUTE,
    KM__OP_ENCRYPT, KM__OP_DECRYPT, KM__OP_SIGN, KM__OP_VERIFY, KM__OP_MAC, KM__OP_DATAKEY,
    KM__OP_REWRAP, KM__OP_DERIVE, KM__OP_AGREE, KM__OP_PUBLIC, KM__OP_AUDIT_READ, KM__OP_READ,
    KM__OP_COMPROMISED_USE, KM__OP_BACKUP, KM__OP_MAINTAIN,
    KM__OP_KEY_META,
    KM__OP_AGREE_RAW,
    KM__OP__COUNT
};

/* The audit name of an operation ("key.rotate"); "unknown" for none. Static. */
const char *km__op_name(int op);

/* ------------------------------------------------------ rules_lifecycle.c */

/* The facts of one key version the state machine decides on. */
typedef struct km__vstate {
    uint32_t version;
    km_key_state state;
    km_key_state prev_state;     /* before destroy-pending (for cancel) */
    int64_t activated, protect_stop, process_stop, destroy_after;
    /* below the key's minimum protect / process version (its version window) */
    int below_min_protect, below_min_process;
} km__vstate;

/* Operations of the state machine (km_key_activate ... and maintenance). */
typedef enum km__lc_op {
    KM__LC_ACTIVATE, KM__LC_SUSPEND, KM__LC_RESUME, KM__LC_REVOKE, KM__LC_SCHEDULE_DESTROY,
    KM__LC_CANCEL_DESTROY, KM__LC_DEACTIVATE, KM__LC_DESTROY
} km__lc_op;

/* Protect (encrypt, sign, wrap, MAC): ACTIVE only, after activation and
 * before protect-stop. KM_OK, or KM_E_STATE saying why. */
int km__rules_protect_refused(const km__vstate *v, int64_t now);
static inline int km__rules_may_protect(const km__vstate *v, int64_t now)
{
    /* inline: every encrypt, sign and MAC asks it */
    if (v->state == KM_STATE_ACTIVE && (v->activated == 0 || now >= v->activated)
        && (v->protect_stop == 0 || now < v->protect_stop) && !v->below_min_protect)
        return KM_OK;
    return km__rules_protect_refused(v, now);
}
/* Process (decrypt, verify, unwrap): ACTIVE, SUSPENDED, DEACTIVATED before
 * process-stop; COMPROMISED only with KM_DECRYPT_ALLOW_COMPROMISED in flags.
 * KM_OK, or KM_E_STATE saying why. */
int km__rules_may_process(const km__vstate *v, uint32_t flags, int64_t now);
/* 1 when the version may be a key's primary now (what may_protect allows). */
int km__rules_primary_candidate(const km__vstate *v, int64_t now);
/* The new state for (op, from), 0 when not allowed (the docs/LIFECYCLE.md table).
 * KM__LC_CANCEL_DESTROY is decided by km__rules_cancel_destroy. */
km_key_state km__transition(int op, km_key_state from, int compromise);
/* The state a cancelled destruction returns to, 0 when it may not (not
 * destroy-pending, or the grace window is over). */
km_key_state km__rules_cancel_destroy(const km__vstate *v, int64_t now);
/* 1 for a revocation reason that is a compromise. */
int km__rules_is_compromise(km_revoke_reason r);
/* The protect-stop and process-stop dates of a version activated at
 * `activated` under the key's periods (0 days: no date). */
void km__rules_stop_dates(int64_t activated, uint32_t protect_days, uint32_t process_days,
                          int64_t *protect_stop, int64_t *process_stop);
/* What time makes due for one version now: the operation (a km__lc_op), or
 * -1. *date gets the date the transition records: the scheduled activation
 * for KM__LC_ACTIVATE, process-stop plus grace_days for
 * KM__LC_SCHEDULE_DESTROY, else 0. */
int km__rules_version_due(const km__vstate *v, uint32_t grace_days, int64_t now, int64_t *date);

/* The facts rotation is decided on. */
typedef struct km__rotation_in {
    int public_only;             /* KM_KEY_PUBLIC_ONLY keys never rotate */
    int has_primary;
    int64_t primary_activated;
    uint64_t primary_reserved;   /* invocations reserved for the primary so far */
    uint64_t rotate_at;          /* rotate when it reached this; 0 = never */
    uint32_t rotate_days;        /* 0 = no period */
    int pre_active_waiting;      /* a version waits to activate */
    int no_primary_rotates;      /* a key without a usable primary may rotate: km_maintain,
                                  * or lazily with rotation.replace_unusable_primary */
} km__rotation_in;
/* 1 when rotation is due: the primary reached its usage mark, or the period
 * passed since it was activated, or nothing may protect, no version is
 * waiting to activate (with a period) and no_primary_rotates. */
int km__rules_rotation_due(const km__rotation_in *in, int64_t now);

/* ------------------------------------------------------------ rules_acl.c */

#define KM__ROLES_ALL (KM_ROLE_ADMIN | KM_ROLE_CUSTODIAN | KM_ROLE_USER | KM_ROLE_AUDITOR)

/* The principal asking. */
typedef struct km__subject {
    int is_principal;            /* 0: the vault owner, every right */
    const char *name;
    uint32_t roles;              /* KM_ROLE_* */
} km__subject;

/* The KM_PERM_* bit a key operation needs; 0 for an operation on the vault. */
uint32_t km__rules_op_perm(int op);
/* 1 when an operation on the vault (km__rules_op_perm(op) == 0) needs no key
 * grant but a role; the role bits any one of which allows it (0: anyone). */
uint32_t km__rules_op_role(int op);
/* A role's name ("admin"), "?" for none. */
const char *km__rules_role_name(uint32_t role);
/* The role bit named by "admin", "custodian", "user" or "auditor"; 0 otherwise. */
uint32_t km__rules_role_from_name(const char *name);
/* The permissions a principal has on a key from its records: everything when
 * it owns the key, else its own and its roles' grants; none at all for an
 * auditor-only principal. */
uint32_t km__rules_effective_perms(uint32_t roles, int owns, uint32_t granted);
/* 1 when the principal name is acceptable (1 to 64 printable bytes without
 * spaces, not "owner", not "role:..."). */
int km__rules_principal_name_ok(const char *name);
/* The decision for op by `s` on the vault (key_name NULL) or on a key where
 * it holds `perms`: KM_OK, or KM_E_DENIED with the reason in why (cap bytes;
 * also for the audit log). Records no error: the caller does. */
int km__rules_acl_decide(const km__subject *s, int op, const char *key_name, uint32_t perms,
                         char *why, size_t cap);

/* --------------------------------------------------------- rules_quorum.c */

#define KM__APPROVER_LEN 24          /* pid[16] || BE64 time */
#define KM__APPROVERS_MAX 16
#define KM__REQUEST_TEXT_MAX 4096    /* the description of a request's parameters, NUL included */

/* A dual-control request, as stored (quorum.c encodes it). */
typedef struct km__request {
    uint32_t op;
    int has_key;
    uint8_t key_id[16];
    uint8_t phash[32];
    char requester[72];
    uint8_t rpid[16];
    int64_t created, expires;
    uint32_t consumed;
    uint8_t approvals[KM__APPROVERS_MAX * KM__APPROVER_LEN];
    size_t napprovals;
    uint64_t aseq;               /* the audit head when it was created (0: unknown, older record) */
    char text[KM__REQUEST_TEXT_MAX];  /* every parameter, as custodians read it ("" older record) */
} km__request;

/* The approvals of r that count: distinct approvers other than the requester. */
size_t km__rules_quorum_count(const km__request *r);
/* Whether r, which matches the guarded call, authorises it now: 1 yes, 0 no
 * (consumed, expired, or fewer than `needed` approvals). */
int km__rules_quorum_ready(const km__request *r, uint32_t needed, int64_t now);
/* Why an approval by `approver` may not be added now. */
typedef enum km__approve_verdict {
    KM__APPROVE_OK = 0, KM__APPROVE_CONSUMED, KM__APPROVE_EXPIRED, KM__APPROVE_OWN,
    KM__APPROVE_TWICE, KM__APPROVE_FULL
} km__approve_verdict;
km__approve_verdict km__rules_quorum_may_approve(const km__request *r, const uint8_t approver[16],
                                                 int64_t now);
/* The parameters of a principal change, canonical: "add:NAME:ROLES" (the
 * role names in the order admin, custodian, user, auditor, comma-separated)
 * or "remove:NAME" (roles 0). Returns the length, or 0 when it does not fit
 * in cap. */
size_t km__rules_principal_params(char *out, size_t cap, int add, const char *name,
                                  uint32_t roles);
/* Parses principal-change parameters "add:NAME:ROLES" (roles in any order)
 * or "remove:NAME" into *add, name (cap bytes) and *roles; KM_OK or
 * KM_E_INVALID (with the expected form). */
int km__rules_principal_params_parse(const uint8_t *p, size_t n, int *add, char *name,
                                     size_t cap, uint32_t *roles);
/* Whether p (n bytes) names a change of the vault's credentials, which is
 * under principal-change too (km/quorum.h): "rekey",
 * "keyslot-add:passphrase", "keyslot-add:backend:NAME",
 * "keyslot-add:shares:M-of-N" or "keyslot-remove:passphrases". 1 or 0. */
int km__rules_slot_change_params(const uint8_t *p, size_t n);
/* Whether a vault policy's quorums (counts[op] for op KM_REQ_DESTROY ..
 * KM_REQ_PRINCIPAL_CHANGE; counts[0] unused) let no principal satisfy one of
 * them alone: principal-change (adding custodians) and policy-change
 * (lowering any count) must each ask at least as many approvals as the
 * largest quorum. 0 when they do; else the KM_REQ_ op that asks too few, with
 * *need the count it must ask and *over the op whose quorum it undercuts. */
int km__rules_quorum_unguarded(const uint32_t counts[6], uint32_t *need, int *over);

#endif /* KM_RULES_H */
