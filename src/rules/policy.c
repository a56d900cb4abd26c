/* policy.c - the policy document: defaults, parsing, tightening, checks (NIST SP 800-57, SP 800-131A). */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ------------------------------------------------------------ constants */

#define DAY_SECONDS 86400
#define NO_DATE INT64_MAX             /* open-ended: no protect_until */
#define DOC_MAX ((size_t)1 << 20)     /* longest policy document accepted */
#define DAYS_MAX 36500u               /* a period of at most 100 years */
#define GRACE_MAX 3650u               /* as km_key_schedule_destroy() */
#define BITS_MAX 16384u
#define APPROVALS_MAX 16u
#define GCM_LIMIT_MAX ((uint64_t)1 << 32)   /* SP 800-38D section 8.3 */
#define HMAC_MIN_BITS 112u            /* SP 800-131A rev. 2 section 10 */
#define GRACE_DEFAULT 30u             /* km_key_options: 0 = 30 */

/* Per key type, the table of keytype.h: name (as km_key_type_name()), policy
 * class, size (bits), security strength (SP 800-57 Part 1 rev. 5 Table 2;
 * RSA-4096 counts as 128) and whether FIPS 140-3 approves it. */
typedef km__keytype ptype;

static const char *const class_names[KM__PCLASS__COUNT] = {
    "symmetric-data", "symmetric-wrapping", "hmac", "signature-private", "key-agreement"
};

/* SP 800-57 Part 1 rev. 5 Table 1 (section 5.3.6), upper values, in days:
 * originator-usage period; recipient-usage period counted from activation
 * (OUP + 3 years); 0 = no maximum (public signature-verification key:
 * "several years, depending on key size"). */
static const struct { uint32_t protect, process; } class_defaults[KM__PCLASS__COUNT] = {
    { 730, 1825 },  /* symmetric data encryption key: OUP <= 2 y, RUP <= OUP + 3 y */
    { 730, 1825 },  /* symmetric key-wrapping key: OUP <= 2 y, RUP <= OUP + 3 y */
    { 730, 1825 },  /* symmetric authentication key: OUP <= 2 y, RUP <= OUP + 3 y */
    { 1095, 0 },    /* private signature key: 1-3 y; verification: several years */
    { 730, 730 },   /* private static key-agreement key: 1-2 y */
};

#define N_OPS 5
static const char *const op_names[N_OPS] = {
    "destroy", "export", "import-raw", "policy-change", "principal-change"
};

/* operations.<name>: operations a policy may forbid (bit i of km__policy::ops_forbidden
 * is pop_names[i]; the KM__POLICY_OP_* values of policy.h) */
#define N_POPS 2
static const char *const pop_names[N_POPS] = { "rsa-pkcs1v15-sign", "agree-raw" };
static const char *const pop_what[N_POPS] = {
    "RSA PKCS#1 v1.5 signatures (use RSA-PSS)",
    "the raw shared secret of a key agreement (km_agree derives a key from it instead)"
};

typedef struct palg {
    int allowed;
    uint32_t min_bits;
    int64_t until;          /* last day it may protect (days since the epoch), or NO_DATE */
} palg;

struct km__policy {
    int fips;
    palg alg[KM__KEYTYPE_MAX + 1];
    uint32_t strength_min;          /* security_strength.minimum */
    int64_t until_112;              /* security_strength.protect_112_until */
    int periods_required;           /* cryptoperiods.required */
    struct pperiods { uint32_t protect, process; } cls[KM__PCLASS__COUNT]; /* 0 = no maximum */
    int rot_required;
    uint32_t rot_max_days;
    double usage_fraction;
    int rot_replace_unusable;       /* rotation.replace_unusable_primary */
    uint64_t gcm_limit;
    uint32_t grace_min, grace_max;
    uint32_t tombstone_days;     /* a destroyed key's record kept at least this long */
    uint32_t approvals[N_OPS];
    int caller_clock;               /* testing.caller_clock */
    uint32_t ops_forbidden;         /* operations.<name> false: KM__POLICY_OP_* */
};

/* ------------------------------------------------------------------ dates */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t day_of(int64_t t)
{
    return t >= 0 ? t / DAY_SECONDS : -((-(t + 1)) / DAY_SECONDS) - 1;
}

/* "YYYY-MM-DD" (1970..9999) -> days since the epoch; -1 if not a date. */
static int64_t parse_date(const char *s)
{
    static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, m, d, i, leap;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    for (i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return -1;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1970 || m < 1 || m > 12 || d < 1)
        return -1;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] + (m == 2 && leap))
        return -1;
    return days_from_civil(y, m, d);
}

static void format_date(int64_t day, char out[16])
{
    int y, m, d;
    if (day == NO_DATE) {
        snprintf(out, 16, "none");
        return;
    }
    civil_from_days(day, &y, &m, &d);
    snprintf(out, 16, "%04d-%02d-%02d", y, m, d);
}

/* ------------------------------------------------------------------ types */

static const ptype *ptype_get(int type)
{
    return km__keytype_get(type);
}

km__pclass km__policy_type_class(km_key_type type)
{
    const ptype *pt = ptype_get(type);
    return pt != NULL ? pt->pclass : KM__PCLASS__COUNT;
}

const char *km__policy_class_name(km__pclass c)
{
    return (unsigned)c < KM__PCLASS__COUNT ? class_names[c] : NULL;
}

const char *km__policy_profile(const km__policy *p)
{
    return p != NULL && p->fips ? "fips" : "default";
}

/* The size of a key: HMAC keys may be imported at any length. */
static uint32_t key_size(const ptype *pt, uint32_t key_bits)
{
    return (pt->family == KM__FAM_HMAC) && key_bits != 0 ? key_bits : pt->bits;
}

/* Security strength (SP 800-57 Part 1 rev. 5 section 5.6.1): an HMAC key has
 * the strength of its length, up to 256. */
static uint32_t strength_of(const ptype *pt, uint32_t bits)
{
    if ((pt->family == KM__FAM_HMAC))
        return bits < 256 ? bits : 256;
    return pt->strength;
}

/* ------------------------------------------------------------ life cycle */

static void set_default(km__policy *p, int fips)
{
    int t;
    const int64_t end_2030 = days_from_civil(2030, 12, 31);
    memset(p, 0, sizeof *p);
    p->fips = fips != 0;
    for (t = 1; t <= KM__KEYTYPE_MAX; t++) {
        const ptype *pt = ptype_get(t);
        if (pt == NULL)
            continue;
        p->alg[t].allowed = !p->fips || pt->fips;
        p->alg[t].min_bits = (pt->family == KM__FAM_HMAC) ? HMAC_MIN_BITS : pt->bits;
        /* SP 800-131A rev. 2 / SP 800-57 section 5.6.3: 112-bit strength protects through 2030 */
        p->alg[t].until = pt->strength < 128 ? end_2030 : NO_DATE;
    }
    p->strength_min = 112;
    p->until_112 = end_2030;
    p->periods_required = 0;
    for (t = 0; t < KM__PCLASS__COUNT; t++) {
        p->cls[t].protect = class_defaults[t].protect;
        p->cls[t].process = class_defaults[t].process;
    }
    p->rot_required = 0;
    p->rot_max_days = 730;
    p->usage_fraction = 0.9;
    p->gcm_limit = GCM_LIMIT_MAX;
    p->grace_min = 7;
    p->grace_max = 90;
    p->tombstone_days = 90;
}

int km__policy_default(km__policy **out, int fips)
{
    km__policy *p;
    if (out == NULL)
        return km__err(KM_E_INVALID, "km__policy_default: out is NULL");
    *out = NULL;
    p = malloc(sizeof *p);
    if (p == NULL)
        return km__err(KM_E_NOMEM, "policy: out of memory");
    set_default(p, fips);
    *out = p;
    return KM_OK;
}

void km__policy_free(km__policy *p)
{
    free(p);
}

int km__policy_dup(km__policy **out, const km__policy *p)
{
    km__policy *c;
    if (out == NULL || p == NULL)
        return km__err(KM_E_INVALID, "km__policy_dup: %s is NULL", out == NULL ? "out" : "p");
    *out = NULL;
    c = malloc(sizeof *c);
    if (c == NULL)
        return km__err(KM_E_NOMEM, "policy: out of memory");
    memcpy(c, p, sizeof *c);
    *out = c;
    return KM_OK;
}

int km__policy_equal(const km__policy *a, const km__policy *b)
{
    int t;
    if (a == NULL || b == NULL)
        return a == b;
    if (a->fips != b->fips || a->strength_min != b->strength_min || a->until_112 != b->until_112 ||
        a->periods_required != b->periods_required || a->rot_required != b->rot_required ||
        a->rot_max_days != b->rot_max_days || a->usage_fraction != b->usage_fraction ||
        a->rot_replace_unusable != b->rot_replace_unusable ||
        a->gcm_limit != b->gcm_limit || a->grace_min != b->grace_min ||
        a->grace_max != b->grace_max || a->caller_clock != b->caller_clock
        || a->tombstone_days != b->tombstone_days || a->ops_forbidden != b->ops_forbidden)
        return 0;
    for (t = 1; t <= KM__KEYTYPE_MAX; t++)
        if (a->alg[t].allowed != b->alg[t].allowed || a->alg[t].min_bits != b->alg[t].min_bits ||
            a->alg[t].until != b->alg[t].until)
            return 0;
    for (t = 0; t < KM__PCLASS__COUNT; t++)
        if (a->cls[t].protect != b->cls[t].protect || a->cls[t].process != b->cls[t].process)
            return 0;
    for (t = 0; t < N_OPS; t++)
        if (a->approvals[t] != b->approvals[t])
            return 0;
    return 1;
}

/* --------------------------------------------------- locating a JSON path
 * jansson keeps no positions, so an error about a field finds it again in
 * the text, which jansson has already accepted as well-formed JSON. */

typedef struct scan {
    const char *s;
    size_t n, i;
} scan;

static void sc_ws(scan *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
                             sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
        sc->i++;
}

/* At a '"': moves past the closing quote. */
static int sc_string(scan *sc)
{
    sc->i++;
    while (sc->i < sc->n) {
        if (sc->s[sc->i] == '\\') {
            sc->i += 2;
        } else if (sc->s[sc->i] == '"') {
            sc->i++;
            return 1;
        } else {
            sc->i++;
        }
    }
    return 0;
}

static int sc_value(scan *sc)
{
    sc_ws(sc);
    if (sc->i >= sc->n)
        return 0;
    if (sc->s[sc->i] == '"')
        return sc_string(sc);
    if (sc->s[sc->i] == '{' || sc->s[sc->i] == '[') {
        size_t depth = 0;
        while (sc->i < sc->n) {
            char c = sc->s[sc->i];
            if (c == '"') {
                if (!sc_string(sc))
                    return 0;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    sc->i++;
                    return 1;
                }
            }
            sc->i++;
        }
        return 0;
    }
    while (sc->i < sc->n && sc->s[sc->i] != ',' && sc->s[sc->i] != '}' && sc->s[sc->i] != ']' &&
           sc->s[sc->i] != ' ' && sc->s[sc->i] != '\t' && sc->s[sc->i] != '\n' &&
           sc->s[sc->i] != '\r')
        sc->i++;
    return 1;
}

/* Does the key token tok[0..len) (quotes included) spell `want`? */
static int key_eq(const char *tok, size_t len, const char *want)
{
    json_t *j;
    int eq;
    if (memchr(tok, '\\', len) == NULL)
        return len - 2 == strlen(want) && memcmp(tok + 1, want, len - 2) == 0;
    j = json_loadb(tok, len, JSON_DECODE_ANY, NULL);
    eq = json_is_string(j) && strcmp(json_string_value(j), want) == 0;
    json_decref(j);
    return eq;
}

/* Line and column (1-based, columns in characters as jansson counts them) of
 * the value at path seg[0..nseg), or of its key when at_key. 0 if absent. */
static int locate(const char *text, size_t len, const char *const *seg, int nseg, int at_key,
                  int *line, int *col)
{
    scan sc = { text, len, 0 };
    size_t at, i, ks;
    int k, l = 1, c = 1, match;

    sc_ws(&sc);
    at = sc.i;
    for (k = 0; k < nseg; k++) {
        if (sc.i >= len || text[sc.i] != '{')
            return 0;
        sc.i++;
        for (;;) {
            sc_ws(&sc);
            if (sc.i >= len || text[sc.i] != '"')
                return 0;
            ks = sc.i;
            if (!sc_string(&sc))
                return 0;
            match = key_eq(text + ks, sc.i - ks, seg[k]);
            sc_ws(&sc);
            if (sc.i >= len || text[sc.i] != ':')
                return 0;
            sc.i++;
            sc_ws(&sc);
            if (match) {
                at = at_key && k == nseg - 1 ? ks : sc.i;
                break;
            }
            if (!sc_value(&sc))
                return 0;
            sc_ws(&sc);
            if (sc.i >= len || text[sc.i] != ',')
                return 0;
            sc.i++;
        }
    }
    for (i = 0; i < at; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
    return 1;
}

/* ------------------------------------------------------------- parsing */

#define PATH_DEPTH 4

typedef struct pctx {
    const char *text;
    size_t len;
    const char *seg[PATH_DEPTH];
    int depth;
} pctx;

static void push(pctx *c, const char *s)
{
    if (c->depth < PATH_DEPTH)
        c->seg[c->depth] = s;
    c->depth++;
}

static void pop(pctx *c)
{
    c->depth--;
}

/* Records "policy line L column C: <path><sep><what>" (or "policy: ..." when
 * the path is not in the document). */
static int vperr(const pctx *c, int code, int at_key, const char *sep, const char *fmt,
                 va_list ap) __attribute__((format(printf, 5, 0)));
static int vperr(const pctx *c, int code, int at_key, const char *sep, const char *fmt,
                 va_list ap)
{
    char path[192], what[192];
    size_t n = 0;
    int i, line, col, depth = c->depth < PATH_DEPTH ? c->depth : PATH_DEPTH;

    snprintf(path, sizeof path, "document");
    for (i = 0; i < depth; i++) {
        int w = snprintf(path + n, sizeof path - n, "%s%s", i ? "." : "", c->seg[i]);
        if (w < 0 || (size_t)w >= sizeof path - n)
            break;
        n += (size_t)w;
    }
    vsnprintf(what, sizeof what, fmt, ap);
    if (locate(c->text, c->len, c->seg, depth, at_key, &line, &col))
        return km__err(code, "policy line %d column %d: %s%s%s", line, col, path, sep, what);
    return km__err(code, "policy: %s%s%s", path, sep, what);
}

static int perr(const pctx *c, int at_key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(const pctx *c, int at_key, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vperr(c, KM_E_INVALID, at_key, ": ", fmt, ap);
    va_end(ap);
    return rc;
}

static int perr_code(const pctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr_code(const pctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vperr(c, code, 0, ": ", fmt, ap);
    va_end(ap);
    return rc;
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static int get_object(pctx *c, json_t *v)
{
    if (!json_is_object(v))
        return perr(c, 0, "expected an object, got %s", jtype(v));
    return KM_OK;
}

static int get_bool(pctx *c, json_t *v, int *out)
{
    if (!json_is_boolean(v))
        return perr(c, 0, "expected true or false, got %s", jtype(v));
    *out = json_is_true(v);
    return KM_OK;
}

/* An integer in [lo, hi]; with null_ok, null gives 0. */
static int get_uint(pctx *c, json_t *v, uint64_t lo, uint64_t hi, int null_ok, uint64_t *out)
{
    json_int_t i;
    if (null_ok && json_is_null(v)) {
        *out = 0;
        return KM_OK;
    }
    if (!json_is_integer(v))
        return perr(c, 0, "expected an integer%s, got %s", null_ok ? " or null" : "", jtype(v));
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < lo || (uint64_t)i > hi)
        return perr(c, 0, "%lld is out of range (%llu to %llu%s)", (long long)i,
                    (unsigned long long)lo, (unsigned long long)hi, null_ok ? ", or null" : "");
    *out = (uint64_t)i;
    return KM_OK;
}

static int get_u32(pctx *c, json_t *v, uint32_t lo, uint32_t hi, int null_ok, uint32_t *out)
{
    uint64_t x = 0;
    int rc = get_uint(c, v, lo, hi, null_ok, &x);
    if (rc == KM_OK)
        *out = (uint32_t)x;
    return rc;
}

static int get_date(pctx *c, json_t *v, int64_t *out)
{
    int64_t d;
    if (json_is_null(v)) {
        *out = NO_DATE;
        return KM_OK;
    }
    if (!json_is_string(v))
        return perr(c, 0, "expected a date \"YYYY-MM-DD\" or null, got %s", jtype(v));
    d = parse_date(json_string_value(v));
    if (d < 0)
        return perr(c, 0, "not a date (expected \"YYYY-MM-DD\", 1970 to 9999)");
    *out = d;
    return KM_OK;
}

/* Every section of a policy is an object of fields, parsed the same way:
 * `field` is called for each field in document order, with the field's name
 * on the error path, and the first error stops the parse. A field function
 * returns KM_OK or the error it recorded with perr() (an unknown field:
 * perr(c, 1, "unknown field (expected ...)")). A new rule is one more branch
 * in its section's field function; a new section, one more field function
 * and its line in section_fields[] (and its name in sections[]). */
typedef int (*field_fn)(pctx *c, const char *k, json_t *v, void *arg);

static int parse_fields(pctx *c, json_t *obj, field_fn field, void *arg)
{
    const char *k;
    json_t *v;
    int rc;
    if ((rc = get_object(c, obj)) != KM_OK)
        return rc;
    json_object_foreach(obj, k, v) {
        push(c, k);
        rc = field(c, k, v, arg);
        pop(c);
        if (rc != KM_OK)
            return rc;
    }
    return KM_OK;
}

/* algorithms.<type>: the rules of one key type */
typedef struct alg_arg {
    const ptype *pt;
    palg *a;
} alg_arg;

static int field_alg(pctx *c, const char *k, json_t *v, void *arg)
{
    const alg_arg *x = arg;
    uint32_t lo = (x->pt->family == KM__FAM_HMAC) ? HMAC_MIN_BITS : 1;
    if (strcmp(k, "allowed") == 0)
        return get_bool(c, v, &x->a->allowed);
    if (strcmp(k, "min_bits") == 0)
        return get_u32(c, v, lo, BITS_MAX, 0, &x->a->min_bits);
    if (strcmp(k, "protect_until") == 0)
        return get_date(c, v, &x->a->until);
    return perr(c, 1, "unknown field (expected allowed, min_bits, protect_until)");
}

static int field_algorithms(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    const ptype *pt = km__keytype_by_name(k);
    alg_arg x;
    if (pt == NULL)
        return perr(c, 1, "unknown key type (expected a key type name such as aes-256-gcm)");
    x.pt = pt;
    x.a = &p->alg[pt->id];
    return parse_fields(c, v, field_alg, &x);
}

static int field_strength(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    int rc;
    if (strcmp(k, "minimum") == 0) {
        rc = get_u32(c, v, 112, 256, 0, &p->strength_min);
        if (rc == KM_OK && p->strength_min != 112 && p->strength_min != 128 &&
            p->strength_min != 192 && p->strength_min != 256)
            rc = perr(c, 0, "expected 112, 128, 192 or 256");
        return rc;
    }
    if (strcmp(k, "protect_112_until") == 0)
        return get_date(c, v, &p->until_112);
    return perr(c, 1, "unknown field (expected minimum, protect_112_until)");
}

/* cryptoperiods.<class>: the periods of one class */
static int field_class(pctx *c, const char *k, json_t *v, void *arg)
{
    struct pperiods *cls = arg;
    if (strcmp(k, "protect_days") == 0)
        return get_u32(c, v, 1, DAYS_MAX, 1, &cls->protect);
    if (strcmp(k, "process_days") == 0)
        return get_u32(c, v, 1, DAYS_MAX, 1, &cls->process);
    return perr(c, 1, "unknown field (expected protect_days, process_days)");
}

static int field_cryptoperiods(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    int cl;
    if (strcmp(k, "required") == 0)
        return get_bool(c, v, &p->periods_required);
    for (cl = 0; cl < KM__PCLASS__COUNT; cl++)
        if (strcmp(k, class_names[cl]) == 0)
            return parse_fields(c, v, field_class, &p->cls[cl]);
    return perr(c, 1, "unknown field (expected required, symmetric-data, symmetric-wrapping, "
                      "hmac, signature-private, key-agreement)");
}

static int field_rotation(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    if (strcmp(k, "required") == 0)
        return get_bool(c, v, &p->rot_required);
    if (strcmp(k, "max_days") == 0)
        return get_u32(c, v, 1, DAYS_MAX, 0, &p->rot_max_days);
    if (strcmp(k, "usage_fraction") == 0) {
        double f;
        if (!json_is_number(v))
            return perr(c, 0, "expected a number, got %s", jtype(v));
        f = json_number_value(v);
        if (!(f > 0.0 && f <= 1.0))
            return perr(c, 0, "expected a fraction greater than 0 and at most 1");
        p->usage_fraction = f;
        return KM_OK;
    }
    if (strcmp(k, "replace_unusable_primary") == 0)
        return get_bool(c, v, &p->rot_replace_unusable);
    return perr(c, 1, "unknown field (expected required, max_days, usage_fraction, "
                      "replace_unusable_primary)");
}

static int field_limits(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    if (strcmp(k, "aes-gcm-invocations") == 0)
        return get_uint(c, v, 1, GCM_LIMIT_MAX, 0, &p->gcm_limit);
    return perr(c, 1, "unknown field (expected aes-gcm-invocations)");
}

static int field_testing(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    if (strcmp(k, "caller_clock") == 0)
        return get_bool(c, v, &p->caller_clock);
    return perr(c, 1, "unknown field (expected caller_clock)");
}

/* operations.<name>: false forbids it (pop_names[]) */
static int field_operations(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    int i, allowed = 1, rc;
    for (i = 0; i < N_POPS && strcmp(k, pop_names[i]) != 0; i++)
        ;
    if (i == N_POPS)
        return perr(c, 1, "unknown field (expected rsa-pkcs1v15-sign, agree-raw)");
    if ((rc = get_bool(c, v, &allowed)) != KM_OK)
        return rc;
    if (allowed)
        p->ops_forbidden &= ~(1u << i);
    else
        p->ops_forbidden |= 1u << i;
    return KM_OK;
}

static int field_destruction(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    if (strcmp(k, "min_grace_days") == 0)
        return get_u32(c, v, 1, GRACE_MAX, 0, &p->grace_min);
    if (strcmp(k, "max_grace_days") == 0)
        return get_u32(c, v, 1, GRACE_MAX, 0, &p->grace_max);
    if (strcmp(k, "tombstone_days") == 0)
        return get_u32(c, v, 0, 36500, 0, &p->tombstone_days);
    return perr(c, 1, "unknown field (expected min_grace_days, max_grace_days, tombstone_days)");
}

static int op_index(const char *op)
{
    int i;
    for (i = 0; i < N_OPS; i++)
        if (strcmp(op, op_names[i]) == 0)
            return i;
    return -1;
}

static int field_dual(pctx *c, const char *k, json_t *v, void *arg)
{
    km__policy *p = arg;
    int i = op_index(k);
    if (i < 0)
        return perr(c, 1, "unknown operation (expected destroy, export, import-raw, "
                          "policy-change, principal-change)");
    return get_u32(c, v, 0, APPROVALS_MAX, 0, &p->approvals[i]);
}

static const char sections[] = "version, profile, algorithms, security_strength, "
                               "cryptoperiods, rotation, usage_limits, destruction, dual_control, "
                               "testing, operations";

/* The sections of the document's top level, and their field functions */
static const struct {
    const char *name;
    field_fn field;
} section_fields[] = {
    { "algorithms", field_algorithms },   { "security_strength", field_strength },
    { "cryptoperiods", field_cryptoperiods }, { "rotation", field_rotation },
    { "usage_limits", field_limits },     { "destruction", field_destruction },
    { "dual_control", field_dual },       { "testing", field_testing },
    { "operations", field_operations },
};

/* The document's top level: version and profile are parsed first, apart */
static int field_root(pctx *c, const char *k, json_t *v, void *arg)
{
    size_t i;
    if (strcmp(k, "version") == 0 || strcmp(k, "profile") == 0)
        return KM_OK;
    for (i = 0; i < sizeof section_fields / sizeof section_fields[0]; i++)
        if (strcmp(k, section_fields[i].name) == 0)
            return parse_fields(c, v, section_fields[i].field, arg);
    return perr(c, 1, "unknown field (expected %s)", sections);
}

/* Rules that involve more than one field. */
static int check_consistent(pctx *c, const km__policy *p)
{
    int t, rc = KM_OK;
    for (t = 1; t <= KM__KEYTYPE_MAX; t++) {
        if (ptype_get(t) != NULL && p->fips && p->alg[t].allowed && !ptype_get(t)->fips) {
            push(c, "algorithms");
            push(c, ptype_get(t)->name);
            push(c, "allowed");
            rc = perr(c, 0, "%s is not FIPS 140-3 approved (profile fips)", ptype_get(t)->name);
            c->depth -= 3;
            return rc;
        }
    }
    for (t = 0; t < KM__PCLASS__COUNT; t++) {
        uint32_t pr = p->cls[t].protect, ps = p->cls[t].process;
        if (ps != 0 && (pr == 0 || ps < pr)) {
            push(c, "cryptoperiods");
            push(c, class_names[t]);
            push(c, "process_days");
            if (pr == 0)
                rc = perr(c, 0, "a maximum recipient-usage period needs a maximum protect_days");
            else
                rc = perr(c, 0, "%u is shorter than protect_days (%u): the recipient-usage period "
                                "is counted from activation", ps, pr);
            c->depth -= 3;
            return rc;
        }
    }
    if (p->grace_min > p->grace_max) {
        push(c, "destruction");
        push(c, "min_grace_days");
        rc = perr(c, 0, "%u is greater than max_grace_days (%u)", p->grace_min, p->grace_max);
        c->depth -= 2;
    }
    return rc;
}

/* ------------------------------------------------------------ tightening */


static int ploose(const pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ploose(const pctx *c, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vperr(c, KM_E_POLICY, 0, " ", fmt, ap);
    va_end(ap);
    return rc;
}

/* KM_E_POLICY "<s1.s2.s3> loosens the vault policy (vault X, key Y)". */
static int loose(pctx *c, const char *s1, const char *s2, const char *s3, const char *vault,
                 const char *key)
{
    int n = 1, rc;
    push(c, s1);
    if (s2 != NULL) {
        push(c, s2);
        n++;
    }
    if (s3 != NULL) {
        push(c, s3);
        n++;
    }
    rc = ploose(c, "loosens the vault policy (vault %s, key %s)", vault, key);
    c->depth -= n;
    return rc;
}

static const char *num(char buf[32], uint64_t v, int zero_is_none)
{
    if (zero_is_none && v == 0)
        snprintf(buf, 32, "no maximum");
    else
        snprintf(buf, 32, "%llu", (unsigned long long)v);
    return buf;
}

/* A maximum where 0 means none: is `key` looser than `vault`? */
static int max_looser(uint32_t key, uint32_t vault)
{
    return vault != 0 && (key == 0 || key > vault);
}

static int check_tighter(pctx *c, const km__policy *p, const km__policy *b)
{
    char x[32], y[32];
    int t;

    if (b->fips && !p->fips)
        return loose(c, "profile", NULL, NULL, "fips", "default");
    for (t = 1; t <= KM__KEYTYPE_MAX; t++) {
        const palg *k = &p->alg[t], *v = &b->alg[t];
        const char *n = ptype_get(t)->name;
        if (n == NULL || !k->allowed)
            continue;
        if (!v->allowed)
            return loose(c, "algorithms", n, "allowed", "false", "true");
        if (k->min_bits < v->min_bits)
            return loose(c, "algorithms", n, "min_bits", num(x, v->min_bits, 0),
                         num(y, k->min_bits, 0));
        if (k->until > v->until) {
            format_date(v->until, x);
            format_date(k->until, y);
            return loose(c, "algorithms", n, "protect_until", x, y);
        }
    }
    if (p->strength_min < b->strength_min)
        return loose(c, "security_strength", "minimum", NULL, num(x, b->strength_min, 0),
                     num(y, p->strength_min, 0));
    if (p->until_112 > b->until_112) {
        format_date(b->until_112, x);
        format_date(p->until_112, y);
        return loose(c, "security_strength", "protect_112_until", NULL, x, y);
    }
    if (b->periods_required && !p->periods_required)
        return loose(c, "cryptoperiods", "required", NULL, "true", "false");
    for (t = 0; t < KM__PCLASS__COUNT; t++) {
        if (max_looser(p->cls[t].protect, b->cls[t].protect))
            return loose(c, "cryptoperiods", class_names[t], "protect_days",
                         num(x, b->cls[t].protect, 1), num(y, p->cls[t].protect, 1));
        if (max_looser(p->cls[t].process, b->cls[t].process))
            return loose(c, "cryptoperiods", class_names[t], "process_days",
                         num(x, b->cls[t].process, 1), num(y, p->cls[t].process, 1));
    }
    if (b->rot_required && !p->rot_required)
        return loose(c, "rotation", "required", NULL, "true", "false");
    if (p->rot_max_days > b->rot_max_days)
        return loose(c, "rotation", "max_days", NULL, num(x, b->rot_max_days, 0),
                     num(y, p->rot_max_days, 0));
    if (p->usage_fraction > b->usage_fraction) {
        snprintf(x, sizeof x, "%g", b->usage_fraction);
        snprintf(y, sizeof y, "%g", p->usage_fraction);
        return loose(c, "rotation", "usage_fraction", NULL, x, y);
    }
    if (p->rot_replace_unusable && !b->rot_replace_unusable)
        return loose(c, "rotation", "replace_unusable_primary", NULL, "false", "true");
    if (p->gcm_limit > b->gcm_limit)
        return loose(c, "usage_limits", "aes-gcm-invocations", NULL, num(x, b->gcm_limit, 0),
                     num(y, p->gcm_limit, 0));
    if (p->grace_min < b->grace_min)
        return loose(c, "destruction", "min_grace_days", NULL, num(x, b->grace_min, 0),
                     num(y, p->grace_min, 0));
    if (p->grace_max > b->grace_max)
        return loose(c, "destruction", "max_grace_days", NULL, num(x, b->grace_max, 0),
                     num(y, p->grace_max, 0));
    if (p->tombstone_days < b->tombstone_days)
        return loose(c, "destruction", "tombstone_days", NULL, num(x, b->tombstone_days, 0),
                     num(y, p->tombstone_days, 0));
    for (t = 0; t < N_OPS; t++)
        if (p->approvals[t] < b->approvals[t])
            return loose(c, "dual_control", op_names[t], NULL, num(x, b->approvals[t], 0),
                         num(y, p->approvals[t], 0));
    if (p->caller_clock && !b->caller_clock)
        return loose(c, "testing", "caller_clock", NULL, "false", "true");
    for (t = 0; t < N_POPS; t++)
        if ((b->ops_forbidden & (1u << t)) && !(p->ops_forbidden & (1u << t)))
            return loose(c, "operations", pop_names[t], NULL, "false", "true");
    return KM_OK;
}

/* ------------------------------------------------------------ the parser */

static int parse_version(pctx *c, json_t *root)
{
    json_t *v = json_object_get(root, "version");
    int rc = KM_OK;
    push(c, "version");
    if (v == NULL) {
        rc = perr(c, 0, "missing (a policy document starts with \"version\": 1)");
    } else if (!json_is_integer(v)) {
        rc = perr(c, 0, "expected an integer, got %s", jtype(v));
    } else if (json_integer_value(v) > 1) {
        rc = perr_code(c, KM_E_UNSUPPORTED, "version %lld is newer than this libkm supports (1)",
                       (long long)json_integer_value(v));
    } else if (json_integer_value(v) != 1) {
        rc = perr(c, 0, "expected 1");
    }
    pop(c);
    return rc;
}

static int parse_profile(pctx *c, json_t *root, const km__policy *base, km__policy *p)
{
    json_t *v = json_object_get(root, "profile");
    const char *s;
    int rc = KM_OK;
    if (v == NULL) {
        if (base != NULL)
            memcpy(p, base, sizeof *p);
        else
            set_default(p, 0);
        return KM_OK;
    }
    push(c, "profile");
    s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s == NULL)
        rc = perr(c, 0, "expected \"default\" or \"fips\", got %s", jtype(v));
    else if (strcmp(s, "default") == 0)
        set_default(p, 0);
    else if (strcmp(s, "fips") == 0)
        set_default(p, 1);
    else
        rc = perr(c, 0, "expected \"default\" or \"fips\"");
    pop(c);
    return rc;
}

int km__policy_parse(km__policy **out, const char *json, size_t len, const km__policy *base)
{
    json_error_t e;
    json_t *root = NULL;
    km__policy *p = NULL;
    pctx c;
    int rc;

    if (out == NULL)
        return km__err(KM_E_INVALID, "km__policy_parse: out is NULL");
    *out = NULL;
    if (json == NULL)
        return km__err(KM_E_INVALID, "km__policy_parse: json is NULL");
    if (len > DOC_MAX)
        return km__err(KM_E_INVALID, "policy: the document is longer than %zu bytes", DOC_MAX);
    memset(&c, 0, sizeof c);
    c.text = json;
    c.len = len;

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (root == NULL)
        return km__err(KM_E_INVALID, "policy line %d column %d: %s", e.line, e.column, e.text);
    if (!json_is_object(root)) {
        rc = perr(&c, 0, "expected an object, got %s", jtype(root));
        goto out;
    }
    p = malloc(sizeof *p);
    if (p == NULL) {
        rc = km__err(KM_E_NOMEM, "policy: out of memory");
        goto out;
    }
    if ((rc = parse_version(&c, root)) != KM_OK || (rc = parse_profile(&c, root, base, p)) != KM_OK)
        goto out;

    if ((rc = parse_fields(&c, root, field_root, p)) != KM_OK)
        goto out;
    /* looser than the vault first: a key policy re-allowing x25519 under a
     * fips vault is a loosening, not a malformed document */
    if (base != NULL && (rc = check_tighter(&c, p, base)) != KM_OK)
        goto out;
    if ((rc = check_consistent(&c, p)) != KM_OK)
        goto out;
    *out = p;
    p = NULL;
    rc = KM_OK;
out:
    free(p);
    json_decref(root);
    return rc;
}

/* -------------------------------------------------------------- to JSON */

static int set(json_t *o, const char *k, json_t *v)
{
    return v != NULL && json_object_set_new(o, k, v) == 0;
}

/* A new object under parent[k], or NULL. */
static json_t *child(json_t *parent, const char *k)
{
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(parent, k, o) != 0)
        return NULL;
    return o;
}

static json_t *jdate(int64_t day)
{
    char b[16];
    if (day == NO_DATE)
        return json_null();
    format_date(day, b);
    return json_string(b);
}

static json_t *jmax(uint32_t v)
{
    return v != 0 ? json_integer((json_int_t)v) : json_null();
}

/* The fewest digits that give the same double back. */
static int real_precision(double f)
{
    char b[40];
    int prec;
    for (prec = 1; prec < 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, f);
        if (strtod(b, NULL) == f)
            return prec;
    }
    return 17;
}

char *km__policy_to_json(const km__policy *p)
{
    json_t *root, *o, *e;
    char *s = NULL;
    size_t n, flags;
    int t, ok = 1;

    if (p == NULL) {
        km__err(KM_E_INVALID, "km__policy_to_json: p is NULL");
        return NULL;
    }
    root = json_object();
    if (root == NULL)
        goto nomem;
    ok &= set(root, "version", json_integer(1));
    ok &= set(root, "profile", json_string(km__policy_profile(p)));
    if (!ok || (o = child(root, "algorithms")) == NULL)
        goto nomem;
    for (t = 1; t <= KM__KEYTYPE_MAX; t++) {
        if (ptype_get(t) == NULL)
            continue;
        if ((e = child(o, ptype_get(t)->name)) == NULL)
            goto nomem;
        ok &= set(e, "allowed", json_boolean(p->alg[t].allowed));
        ok &= set(e, "min_bits", json_integer((json_int_t)p->alg[t].min_bits));
        ok &= set(e, "protect_until", jdate(p->alg[t].until));
    }
    if (!ok || (o = child(root, "security_strength")) == NULL)
        goto nomem;
    ok &= set(o, "minimum", json_integer((json_int_t)p->strength_min));
    ok &= set(o, "protect_112_until", jdate(p->until_112));
    if (!ok || (o = child(root, "cryptoperiods")) == NULL)
        goto nomem;
    ok &= set(o, "required", json_boolean(p->periods_required));
    for (t = 0; t < KM__PCLASS__COUNT; t++) {
        if ((e = child(o, class_names[t])) == NULL)
            goto nomem;
        ok &= set(e, "protect_days", jmax(p->cls[t].protect));
        ok &= set(e, "process_days", jmax(p->cls[t].process));
    }
    if (!ok || (o = child(root, "rotation")) == NULL)
        goto nomem;
    ok &= set(o, "required", json_boolean(p->rot_required));
    ok &= set(o, "max_days", json_integer((json_int_t)p->rot_max_days));
    ok &= set(o, "usage_fraction", json_real(p->usage_fraction));
    ok &= set(o, "replace_unusable_primary", json_boolean(p->rot_replace_unusable));
    if (!ok || (o = child(root, "usage_limits")) == NULL)
        goto nomem;
    ok &= set(o, "aes-gcm-invocations", json_integer((json_int_t)p->gcm_limit));
    if (!ok || (o = child(root, "destruction")) == NULL)
        goto nomem;
    ok &= set(o, "min_grace_days", json_integer((json_int_t)p->grace_min));
    ok &= set(o, "max_grace_days", json_integer((json_int_t)p->grace_max));
    ok &= set(o, "tombstone_days", json_integer((json_int_t)p->tombstone_days));
    if (!ok || (o = child(root, "dual_control")) == NULL)
        goto nomem;
    for (t = 0; t < N_OPS; t++)
        ok &= set(o, op_names[t], json_integer((json_int_t)p->approvals[t]));
    if (ok && p->caller_clock) {       /* only when on: the default document stays as it was */
        if ((o = child(root, "testing")) == NULL)
            goto nomem;
        ok &= set(o, "caller_clock", json_true());
    }
    if (ok && p->ops_forbidden != 0) { /* likewise only when one is forbidden */
        if ((o = child(root, "operations")) == NULL)
            goto nomem;
        for (t = 0; t < N_POPS; t++)
            ok &= set(o, pop_names[t], json_boolean(!(p->ops_forbidden & (1u << t))));
    }
    if (!ok)
        goto nomem;

    flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(real_precision(p->usage_fraction));
    n = json_dumpb(root, NULL, 0, flags);
    if (n == 0 || (s = malloc(n + 1)) == NULL)
        goto nomem;
    if (json_dumpb(root, s, n, flags) != n) {
        free(s);
        goto nomem;
    }
    s[n] = '\0';
    json_decref(root);
    return s;
nomem:
    json_decref(root);
    km__err(KM_E_NOMEM, "policy: out of memory");
    return NULL;
}

/* -------------------------------------------------------------- checks */

static int check_args(const km__policy *p, km_key_type type, const ptype **pt, const char *fn)
{
    if (p == NULL)
        return km__err(KM_E_INVALID, "%s: p is NULL", fn);
    *pt = ptype_get(type);
    if (*pt == NULL)
        return km__err(KM_E_INVALID, "%s: unknown key type %d", fn, (int)type);
    return KM_OK;
}

int km__policy_check_protect_bits(const km__policy *p, km_key_type type, uint32_t key_bits,
                                  int64_t now)
{
    const ptype *pt;
    const palg *a;
    uint32_t bits, st;
    char d[16];
    int rc;

    if ((rc = check_args(p, type, &pt, "km__policy_check_protect")) != KM_OK)
        return rc;
    a = &p->alg[type];
    bits = key_size(pt, key_bits);
    st = strength_of(pt, bits);
    if (!a->allowed)
        return km__err(KM_E_POLICY, "policy rule algorithms.%s.allowed: %s keys are not allowed%s",
                       pt->name, pt->name, p->fips && !pt->fips ? " (not FIPS 140-3 approved)" : "");
    if (bits < a->min_bits)
        return km__err(KM_E_POLICY, "policy rule algorithms.%s.min_bits: a key of %u bits is below "
                       "the minimum of %u", pt->name, bits, a->min_bits);
    if (st < p->strength_min)
        return km__err(KM_E_POLICY, "policy rule security_strength.minimum: a %s key of %u bits has "
                       "%u-bit security strength, below the minimum of %u", pt->name, bits, st,
                       p->strength_min);
    if (a->until != NO_DATE && day_of(now) > a->until) {
        format_date(a->until, d);
        return km__err(KM_E_POLICY, "policy rule algorithms.%s.protect_until: %s may not protect "
                       "new data after %s", pt->name, pt->name, d);
    }
    if (st < 128 && p->until_112 != NO_DATE && day_of(now) > p->until_112) {
        format_date(p->until_112, d);
        return km__err(KM_E_POLICY, "policy rule security_strength.protect_112_until: a %s key of "
                       "%u bits (112-bit security strength) may not protect new data after %s",
                       pt->name, bits, d);
    }
    return KM_OK;
}

int km__policy_check_protect(const km__policy *p, km_key_type type, int64_t now)
{
    return km__policy_check_protect_bits(p, type, 0, now);
}

int km__policy_check_grace(const km__policy *p, uint32_t grace_days)
{
    if (p == NULL)
        return km__err(KM_E_INVALID, "km__policy_check_grace: p is NULL");
    if (grace_days < p->grace_min)
        return km__err(KM_E_POLICY, "policy rule destruction.min_grace_days: a grace period of %u "
                       "day(s) is below the minimum of %u", grace_days, p->grace_min);
    if (grace_days > p->grace_max)
        return km__err(KM_E_POLICY, "policy rule destruction.max_grace_days: a grace period of %u "
                       "day(s) exceeds the maximum of %u", grace_days, p->grace_max);
    return KM_OK;
}

int km__policy_check_create(const km__policy *p, km_key_type type, uint32_t key_bits, int64_t now,
                            uint32_t rotate_days, uint32_t protect_days, uint32_t process_days,
                            uint32_t grace_days)
{
    const ptype *pt;
    const char *cn;
    uint32_t mp, ms;
    int rc;

    if ((rc = check_args(p, type, &pt, "km__policy_check_create")) != KM_OK)
        return rc;
    if ((rc = km__policy_check_protect_bits(p, type, key_bits, now)) != KM_OK)
        return rc;
    cn = class_names[pt->pclass];
    mp = p->cls[pt->pclass].protect;
    ms = p->cls[pt->pclass].process;
    if (protect_days == 0 && p->periods_required && mp != 0)
        return km__err(KM_E_POLICY, "policy rule cryptoperiods.required: a %s key needs an "
                       "originator-usage period (protect_days, at most %u)", pt->name, mp);
    if (mp != 0 && protect_days > mp)
        return km__err(KM_E_POLICY, "policy rule cryptoperiods.%s.protect_days: an originator-usage "
                       "period of %u days exceeds the maximum of %u", cn, protect_days, mp);
    if (process_days == 0 && p->periods_required && ms != 0)
        return km__err(KM_E_POLICY, "policy rule cryptoperiods.required: a %s key needs a "
                       "recipient-usage period (process_days, at most %u)", pt->name, ms);
    if (ms != 0 && process_days > ms)
        return km__err(KM_E_POLICY, "policy rule cryptoperiods.%s.process_days: a recipient-usage "
                       "period of %u days exceeds the maximum of %u", cn, process_days, ms);
    if (rotate_days == 0 && p->rot_required)
        return km__err(KM_E_POLICY, "policy rule rotation.required: the key needs a rotation "
                       "period (rotate_days, at most %u)", p->rot_max_days);
    if (rotate_days > p->rot_max_days)
        return km__err(KM_E_POLICY, "policy rule rotation.max_days: a rotation period of %u days "
                       "exceeds the maximum of %u", rotate_days, p->rot_max_days);
    if (grace_days != 0)
        return km__policy_check_grace(p, grace_days);
    return KM_OK;
}

void km__policy_key_defaults(const km__policy *p, km_key_type type, uint32_t *rotate_days,
                             uint32_t *protect_days, uint32_t *process_days,
                             uint32_t *grace_days)
{
    const ptype *pt = ptype_get(type);
    uint32_t v;
    if (p == NULL || pt == NULL)
        return;
    if (process_days != NULL && *process_days == 0 && p->periods_required)
        *process_days = p->cls[pt->pclass].process;
    if (protect_days != NULL && *protect_days == 0 && p->periods_required) {
        v = p->cls[pt->pclass].protect;
        /* never past the recipient-usage period the caller chose */
        if (process_days != NULL && *process_days != 0 && *process_days < v)
            v = *process_days;
        *protect_days = v;
    }
    if (rotate_days != NULL && *rotate_days == 0 && p->rot_required) {
        v = p->rot_max_days;
        /* rotate before the primary reaches its protect-stop */
        if (protect_days != NULL && *protect_days != 0 && *protect_days < v)
            v = *protect_days;
        *rotate_days = v;
    }
    if (grace_days != NULL && *grace_days == 0) {
        v = GRACE_DEFAULT;
        if (v < p->grace_min)
            v = p->grace_min;
        if (v > p->grace_max)
            v = p->grace_max;
        *grace_days = v;
    }
}

int km__policy_replace_unusable(const km__policy *p)
{
    return p != NULL && p->rot_replace_unusable;
}

void km__policy_usage_limit(const km__policy *p, km_key_type type, uint64_t *limit,
                            uint64_t *rotate_at)
{
    const ptype *pt = ptype_get(type);
    uint64_t l = 0, r = 0;
    if (p != NULL && pt != NULL && (pt->family == KM__FAM_AES_GCM)) {
        l = p->gcm_limit;
        r = (uint64_t)((double)l * p->usage_fraction);
        if (r == 0)
            r = 1;
        if (r > l)
            r = l;
    }
    if (limit != NULL)
        *limit = l;
    if (rotate_at != NULL)
        *rotate_at = r;
}

int km__policy_caller_clock(const km__policy *p)
{
    return p != NULL && p->caller_clock;
}

uint32_t km__policy_approvals(const km__policy *p, const char *op)
{
    int i;
    if (p == NULL || op == NULL || (i = op_index(op)) < 0)
        return UINT32_MAX;
    return p->approvals[i];
}

/* ------------------------------------------------------- policy report */

typedef struct whyw {
    char *buf;
    size_t cap, len;
    int n;
} whyw;

static void why_add(whyw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(whyw *w, const char *fmt, ...)
{
    va_list ap;
    int k;
    w->n++;
    if (w->buf == NULL || w->cap == 0)
        return;
    if (w->n > 1) {
        if (w->len + 3 > w->cap)
            return;
        memcpy(w->buf + w->len, "; ", 3);
        w->len += 2;
    }
    if (w->len + 1 >= w->cap)
        return;
    va_start(ap, fmt);
    k = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        w->len += (size_t)k < w->cap - w->len ? (size_t)k : w->cap - w->len - 1;
}

int km__policy_key_out_of_policy(const km__policy *p, km_key_type type, int64_t now,
                                 int64_t primary_activated, uint32_t rotate_days,
                                 uint32_t protect_days, uint32_t process_days, char *why,
                                 size_t why_len)
{
    whyw w = { why, why_len, 0, 0 };
    const ptype *pt = ptype_get(type);
    const palg *a;
    const char *cn;
    uint32_t st, mp, ms, every;
    int64_t today = day_of(now);
    char d[16];

    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (p == NULL || pt == NULL) {
        why_add(&w, "%s", p == NULL ? "no policy" : "unknown key type");
        return 1;
    }
    a = &p->alg[type];
    st = pt->strength;
    cn = class_names[pt->pclass];
    mp = p->cls[pt->pclass].protect;
    ms = p->cls[pt->pclass].process;

    if (!a->allowed)
        why_add(&w, "algorithms.%s.allowed: %s keys are not allowed", pt->name, pt->name);
    if (pt->bits < a->min_bits)
        why_add(&w, "algorithms.%s.min_bits: %u bits, below the minimum of %u", pt->name, pt->bits,
                a->min_bits);
    if (st < p->strength_min)
        why_add(&w, "security_strength.minimum: %u-bit security strength, below the minimum of %u",
                st, p->strength_min);
    if (primary_activated != 0 && a->until != NO_DATE && today > a->until) {
        format_date(a->until, d);
        why_add(&w, "algorithms.%s.protect_until: still has a primary version after %s", pt->name, d);
    }
    if (primary_activated != 0 && st < 128 && p->until_112 != NO_DATE && today > p->until_112) {
        format_date(p->until_112, d);
        why_add(&w, "security_strength.protect_112_until: 112-bit strength still protecting after %s",
                d);
    }
    if (protect_days == 0 && p->periods_required && mp != 0)
        why_add(&w, "cryptoperiods.required: no originator-usage period (protect_days)");
    if (mp != 0 && protect_days > mp)
        why_add(&w, "cryptoperiods.%s.protect_days: %u days, over the maximum of %u", cn,
                protect_days, mp);
    if (process_days == 0 && p->periods_required && ms != 0)
        why_add(&w, "cryptoperiods.required: no recipient-usage period (process_days)");
    if (ms != 0 && process_days > ms)
        why_add(&w, "cryptoperiods.%s.process_days: %u days, over the maximum of %u", cn,
                process_days, ms);
    if (rotate_days == 0 && p->rot_required)
        why_add(&w, "rotation.required: no rotation period");
    if (rotate_days > p->rot_max_days)
        why_add(&w, "rotation.max_days: rotates every %u days, over the maximum of %u", rotate_days,
                p->rot_max_days);
    every = rotate_days != 0 ? rotate_days : p->rot_required ? p->rot_max_days : 0;
    if (every != 0 && primary_activated != 0 && now >= primary_activated &&
        now - primary_activated >= (int64_t)every * DAY_SECONDS)
        why_add(&w, "%s: rotation overdue, the primary version is %lld days old (rotate every %u)",
                rotate_days != 0 ? "rotation" : "rotation.max_days",
                (long long)((now - primary_activated) / DAY_SECONDS), every);
    return w.n > 0;
}

uint32_t km__policy_ops_forbidden(const km__policy *p)
{
    return p != NULL ? p->ops_forbidden : 0;
}

int km__policy_op_allowed(uint32_t forbidden, uint32_t op)
{
    int i;
    for (i = 0; i < N_POPS; i++)
        if ((op & (1u << i)) && (forbidden & (1u << i)))
            return km__err(KM_E_POLICY, "policy rule operations.%s: the policy forbids %s",
                           pop_names[i], pop_what[i]);
    return KM_OK;
}

uint32_t km__policy_tombstone_days(const km__policy *p)
{
    return p != NULL ? p->tombstone_days : UINT32_MAX;
}
