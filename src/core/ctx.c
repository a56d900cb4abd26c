/* ctx.c - opening and closing vaults, the clock, the backend registry. */
#include "core.h"
#include "km/quorum.h"

#include <stdio.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------- backend registry */

#define KM__MAX_BACKENDS 16

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static km_backend_ops reg[KM__MAX_BACKENDS];
static int reg_builtin[KM__MAX_BACKENDS];
static int reg_n;

int km__backend_name_ok(const char *n)
{
    size_t i, len = n ? strlen(n) : 0;
    if (len == 0 || len > 31)
        return 0;
    for (i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int find_backend_locked(const char *name)
{
    int i;
    for (i = 0; i < reg_n; i++)
        if (strcmp(reg[i].name, name) == 0)
            return i;
    return -1;
}

int km__backend_known(const char *name)
{
    int known;
    pthread_mutex_lock(&reg_mu);
    known = find_backend_locked(name) >= 0;
    pthread_mutex_unlock(&reg_mu);
    return known;
}

static int register_backend(const km_backend_ops *ops, int builtin)
{
    int rc = KM_OK;

    if (ops == NULL)
        return km__err(KM_E_INVALID, "km_backend_register: ops is NULL");
    if (ops->version == 0)
        return km__err(KM_E_INVALID, "km_backend_register: ops->version is 0");
    if (ops->version > KM_BACKEND_OPS_VERSION)
        return km__err(KM_E_UNSUPPORTED,
                       "km_backend_register: ops->version %u is newer than this libkm (%u)",
                       ops->version, (unsigned)KM_BACKEND_OPS_VERSION);
    if (!km__backend_name_ok(ops->name))
        return km__err(KM_E_INVALID, "km_backend_register: ops->name must be [a-z0-9_-]{1,31}");
    if (ops->generate == NULL || ops->load == NULL || ops->unload == NULL)
        return km__err(KM_E_INVALID,
                       "km_backend_register: generate, load and unload are required");
    pthread_mutex_lock(&reg_mu);
    if (find_backend_locked(ops->name) >= 0) {
        rc = km__err(KM_E_EXISTS, "km_backend_register: a backend named '%s' is registered",
                     ops->name);
    } else if (reg_n == KM__MAX_BACKENDS) {
        rc = km__err(KM_E_NOMEM, "km_backend_register: too many backends");
    } else {
        /* Copy only what the caller's version defines; the rest stays NULL. */
        memset(&reg[reg_n], 0, sizeof reg[reg_n]);
        memcpy(&reg[reg_n], ops,
               ops->version >= 3   ? sizeof *ops
               : ops->version == 2 ? offsetof(km_backend_ops, random)
                                   : offsetof(km_backend_ops, slot_seal));
        reg_builtin[reg_n] = builtin;
        reg_n++;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static void register_builtins(void);

int km_backend_register(const km_backend_ops *ops)
{
    int rc = km_init();
    if (rc != KM_OK)
        return rc;
    /* the built-in backends first: a program can neither take their names
     * nor be listed before them */
    (void)pthread_once(&builtin_once, register_builtins);
    return register_backend(ops, 0);
}

int km_backend_unregister(const char *name)
{
    int i, rc = KM_OK;

    if (name == NULL)
        return km__err(KM_E_INVALID, "km_backend_unregister: name is NULL");
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i < 0) {
        rc = km__err(KM_E_NOTFOUND, "km_backend_unregister: no backend named '%s'", name);
    } else if (reg_builtin[i]) {
        rc = km__err(KM_E_BUSY, "km_backend_unregister: '%s' is built in", name);
    } else {
        for (; i + 1 < reg_n; i++) {
            reg[i] = reg[i + 1];
            reg_builtin[i] = reg_builtin[i + 1];
        }
        reg_n--;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

int km_backend_names(char (*names)[KM_BACKEND_NAME_MAX + 1], size_t cap, size_t *n)
{
    int i, rc;

    if (n == NULL)
        return km__err(KM_E_INVALID, "km_backend_names: n is NULL");
    *n = 0;
    if (names == NULL && cap > 0)
        return km__err(KM_E_INVALID, "km_backend_names: names is NULL");
    if ((rc = km_init()) != KM_OK)
        return rc;
    km__backends_builtin();
    pthread_mutex_lock(&reg_mu);
    for (i = 0; i < reg_n; i++) {
        if ((size_t)i < cap)
            snprintf(names[i], KM_BACKEND_NAME_MAX + 1, "%s", reg[i].name);
    }
    *n = (size_t)reg_n;
    pthread_mutex_unlock(&reg_mu);
    return KM_OK;
}

void km__backends_builtin(void)
{
    (void)pthread_once(&builtin_once, register_builtins);
}

static void register_builtins(void)
{
    (void)register_backend(&km__software_backend, 1);
#ifdef KM_HAVE_PKCS11
    (void)register_backend(&km__pkcs11_backend, 1);
    (void)register_backend(&km__pkcs11_card_backend, 1);
#endif
#ifdef KM_HAVE_TPM2
    (void)register_backend(&km__tpm2_backend, 1);
#endif
    (void)register_backend(&km__kmip_backend, 1);
}

/* A backend's configuration lives sealed in the vault's meta table under
 * "backend/<name>" (it may hold a PIN the administrator chose to keep). */
void km__backend_config_key(const char *name, uint8_t *out, size_t *len)
{
    *len = (size_t)snprintf((char *)out, 48, "backend/%s", name);
}

/* The stored configuration of a backend as a NUL-terminated string in secure
 * memory, or NULL when none is stored. */
static int backend_config_get(struct km_ctx *ctx, const char *name, km_secret **out)
{
    uint8_t key[48];
    size_t klen;
    km_secret *rec = NULL;
    km__txn *t = NULL;
    int rc;

    *out = NULL;
    km__backend_config_key(name, key, &klen);
    if ((rc = km__txn_begin(ctx->env, 0, &t)) != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, key, klen, &rec);
    km__txn_abort(t);
    if (rc == KM_E_NOTFOUND)
        return KM_OK;
    if (rc != KM_OK)
        return rc;
    rc = km_secret_new(out, km_secret_len(rec) + 1);
    if (rc == KM_OK)
        memcpy(km_secret_data(*out), km_secret_data(rec), km_secret_len(rec));
    km_secret_free(rec);
    return rc;
}


int km__backend_get(struct km_ctx *ctx, const char *name, km__backend_inst **out)
{
    km__backend_inst *b;
    int i, rc;

    *out = NULL;
    pthread_mutex_lock(&ctx->mu);
    for (b = ctx->backends; b != NULL; b = b->next) {
        if (strcmp(b->ops.name, name) == 0) {
            *out = b;
            pthread_mutex_unlock(&ctx->mu);
            return KM_OK;
        }
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        pthread_mutex_unlock(&ctx->mu);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i >= 0)
        b->ops = reg[i];
    pthread_mutex_unlock(&reg_mu);
    if (i < 0) {
        free(b);
        pthread_mutex_unlock(&ctx->mu);
        return km__err(KM_E_UNSUPPORTED, "no backend named '%s' is registered", name);
    }
    if (b->ops.open != NULL) {
        km_secret *config = NULL;
        rc = backend_config_get(ctx, name, &config);
        if (rc == KM_OK)
            rc = b->ops.open(&b->state, config ? (const char *)km_secret_data(config) : NULL);
        km_secret_free(config);
        if (rc != KM_OK) {
            free(b);
            pthread_mutex_unlock(&ctx->mu);
            return rc < 0 ? rc : km__err(KM_E_BACKEND, "backend '%s' failed to open", name);
        }
    }
    b->next = ctx->backends;
    ctx->backends = b;
    *out = b;
    pthread_mutex_unlock(&ctx->mu);
    return KM_OK;
}

/* A short-lived instance of a registered backend opened with `config`, for
 * a keyslot (the vault's stored configuration is not readable yet when a
 * vault is being unlocked). */
static int slot_backend_open(const char *name, const char *config, km_backend_ops *ops,
                             void **state)
{
    int i, rc;

    *state = NULL;
    (void)pthread_once(&builtin_once, register_builtins);
    if (!km__backend_name_ok(name))
        return km__err(KM_E_INVALID, "keyslot backend name must be [a-z0-9_-]{1,31}");
    pthread_mutex_lock(&reg_mu);
    i = find_backend_locked(name);
    if (i >= 0)
        *ops = reg[i];
    pthread_mutex_unlock(&reg_mu);
    if (i < 0)
        return km__err(KM_E_UNSUPPORTED, "no backend named '%s' is registered", name);
    if (ops->slot_seal == NULL || ops->slot_unseal == NULL)
        return km__err(KM_E_UNSUPPORTED, "backend '%s' cannot hold a keyslot", name);
    if (ops->open != NULL && (rc = ops->open(state, config)) != KM_OK)
        return rc < 0 ? rc : km__err(KM_E_BACKEND, "backend '%s' failed to open", name);
    return KM_OK;
}

int km__backend_slot_seal(const char *name, const char *config, const km_secret *master,
                          km_secret **blob)
{
    km_backend_ops ops;
    void *state = NULL;
    int rc;

    *blob = NULL;
    if ((rc = slot_backend_open(name, config, &ops, &state)) != KM_OK)
        return rc;
    rc = ops.slot_seal(state, master, blob);
    if (rc == KM_OK && (*blob == NULL || km_secret_len(*blob) == 0
                        || km_secret_len(*blob) > KM__SLOT_BLOB_MAX)) {
        km_secret_free(*blob);
        *blob = NULL;
        rc = km__err(KM_E_BACKEND, "backend '%s' returned an unusable keyslot blob", name);
    }
    if (rc > 0)
        rc = km__err(KM_E_BACKEND, "backend '%s' could not seal the master key", name);
    if (ops.close != NULL)
        ops.close(state);
    return rc;
}

int km__backend_slot_seal_for(struct km_ctx *ctx, const char *name, const km_secret *master,
                              km_secret **blob)
{
    km_secret *config = NULL;
    int rc;

    *blob = NULL;
    if ((rc = backend_config_get(ctx, name, &config)) != KM_OK)
        return rc;
    rc = km__backend_slot_seal(name, config ? (const char *)km_secret_data(config) : NULL, master,
                               blob);
    km_secret_free(config);
    return rc;
}

int km__backend_slot_unseal(const char *name, const char *config, const uint8_t *blob,
                            size_t blob_len, km_secret **master)
{
    km_backend_ops ops;
    void *state = NULL;
    int rc;

    *master = NULL;
    if ((rc = slot_backend_open(name, config, &ops, &state)) != KM_OK)
        return rc;
    rc = ops.slot_unseal(state, blob, blob_len, master);
    if (rc > 0)
        rc = km__err(KM_E_BACKEND, "backend '%s' could not unseal the master key", name);
    if (rc != KM_OK) {
        km_secret_free(*master);
        *master = NULL;
    }
    if (ops.close != NULL)
        ops.close(state);
    return rc;
}




/* km__ctx_slot_check's unsealer: the stored configuration, not the one given. */
static int slot_check_unseal(void *arg, const char *name, const char *given, const uint8_t *blob,
                             size_t blob_len, km_secret **master)
{
    km_secret *config = NULL;
    int rc;

    (void)given;
    *master = NULL;
    if ((rc = backend_config_get(arg, name, &config)) != KM_OK)
        return rc;
    rc = km__backend_slot_unseal(name, config ? (const char *)km_secret_data(config) : NULL, blob,
                                 blob_len, master);
    km_secret_free(config);
    return rc;
}

void km__ctx_slot_check(struct km_ctx *ctx, km__slot_unsealer *out)
{
    out->fn = slot_check_unseal;
    out->arg = ctx;
    out->defer = NULL;
}

void km__progress(struct km_ctx *ctx, const char *what, uint64_t done, uint64_t total)
{
    if (ctx->progress != NULL)
        ctx->progress(what, done, total, ctx->progress_arg);
}

/* ----------------------------------------------------------------- policy */

static const uint8_t policy_rec_key[] = "policy";

const km__policy *km__policy_acquire(struct km_ctx *ctx)
{
    pthread_rwlock_rdlock(&ctx->policy_lock);
    return ctx->policy;
}

void km__policy_release(struct km_ctx *ctx)
{
    pthread_rwlock_unlock(&ctx->policy_lock);
}

/* Installs a parsed policy and the document it came from. */
void km__ctx_policy_install(struct km_ctx *ctx, km__policy *p, const char *json, size_t len)
{
    char *copy = NULL;
    if (json != NULL && (copy = malloc(len ? len : 1)) != NULL)
        memcpy(copy, json, len);
    pthread_rwlock_wrlock(&ctx->policy_lock);
    km__policy_free(ctx->policy);
    free(ctx->policy_json);
    atomic_store(&ctx->clock_ok, km__policy_caller_clock(p));
    ctx->policy = p;
    ctx->policy_json = copy;
    ctx->policy_json_len = copy ? len : 0;
    pthread_rwlock_unlock(&ctx->policy_lock);
}

int km__ctx_policy_put(struct km_ctx *ctx, km__txn *t, const char *json, size_t len)
{
    return km__rec_put(t, ctx->sealer, KM__T_META, policy_rec_key, sizeof policy_rec_key - 1,
                       (const uint8_t *)json, len, 0);
}

int km__ctx_policy_load(struct km_ctx *ctx, int *none_stored)
{
    km__txn *t = NULL;
    km_secret *rec = NULL;
    km__policy *p = NULL;
    int rc = km__txn_begin(ctx->env, 0, &t);

    if (rc != KM_OK)
        return rc;
    rc = km__rec_get(t, ctx->sealer, KM__T_META, policy_rec_key, sizeof policy_rec_key - 1, &rec);
    km__txn_abort(t);
    if (none_stored != NULL)
        *none_stored = rc == KM_E_NOTFOUND;
    if (rc == KM_E_NOTFOUND && ctx->policy_required)
        /* fail closed: the record was deleted (a file edit needs no key) */
        return km__err(KM_E_CORRUPT, "the vault's policy record is missing (deleted?): refused; "
                                     "restore the vault from a backup");
    if (rc == KM_E_NOTFOUND) {
        if ((rc = km__policy_default(&p, 0)) == KM_OK)
            km__ctx_policy_install(ctx, p, NULL, 0);
        return rc;
    }
    if (rc != KM_OK)
        return rc;
    pthread_rwlock_rdlock(&ctx->policy_lock);
    if (ctx->policy != NULL && ctx->policy_json != NULL && ctx->policy_json_len == km_secret_len(rec)
        && memcmp(ctx->policy_json, km_secret_data(rec), km_secret_len(rec)) == 0) {
        pthread_rwlock_unlock(&ctx->policy_lock);
        km_secret_free(rec);
        return KM_OK; /* unchanged */
    }
    pthread_rwlock_unlock(&ctx->policy_lock);
    rc = km__policy_parse(&p, (const char *)km_secret_data(rec), km_secret_len(rec), NULL);
    if (rc == KM_OK)
        km__ctx_policy_install(ctx, p, (const char *)km_secret_data(rec), km_secret_len(rec));
    else
        rc = km__err(KM_E_CORRUPT, "the vault's stored policy does not parse: %s",
                     km_error_last()->message);
    km_secret_free(rec);
    return rc;
}

int km__ctx_policy_refresh(struct km_ctx *ctx, int force)
{
    int64_t now = km__mono_ms();
    if (!force && now - atomic_load(&ctx->policy_checked_ms) < (int64_t)ctx->refresh_ms)
        return KM_OK;
    atomic_store(&ctx->policy_checked_ms, now);
    return km__ctx_policy_load(ctx, NULL);
}



/* ------------------------------------------------------------------ clock */

/* The caller's clock counts only where the vault's policy allows a test
 * clock (testing.caller_clock); either way time never goes back past the
 * latest audited time this context has seen (issue 18: a caller's clock
 * destroyed keys early and revived expired requests). */
int64_t km__now(const struct km_ctx *ctx)
{
    int64_t t = ctx->clock != NULL && atomic_load(&((struct km_ctx *)(uintptr_t)ctx)->clock_ok)
                    ? ctx->clock(ctx->clock_arg) : (int64_t)time(NULL);
    int64_t floor = atomic_load(&((struct km_ctx *)(uintptr_t)ctx)->time_floor);
    return t < floor ? floor : t;
}

void km__now_floor(struct km_ctx *ctx, int64_t t)
{
    int64_t cur = atomic_load(&ctx->time_floor);
    while (t > cur && !atomic_compare_exchange_weak(&ctx->time_floor, &cur, t))
        ;
}

int64_t km__now_txn(struct km_ctx *ctx, km__txn *t)
{
    km_audit_head h;
    int64_t last = 0;
    if (km__audit_head_time(ctx->sealer, t, &h, &last) == KM_OK)
        km__now_floor(ctx, last);
    return km__now(ctx);
}

int64_t km__mono_ms(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void km__ctx_ref(struct km_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

void km__ctx_unref(struct km_ctx *ctx)
{
    km__backend_inst *b, *n;

    if (atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    for (b = ctx->backends; b != NULL; b = n) {
        n = b->next;
        if (b->ops.close != NULL)
            b->ops.close(b->state);
        free(b);
    }
    if (ctx->audit_close != NULL)
        ctx->audit_close(ctx);
    if (ctx->remote_close != NULL)
        ctx->remote_close(ctx);
    km__ctx_discard(ctx);
}

struct km_ctx *km__ctx_alloc(void)
{
    struct km_ctx *ctx = calloc(1, sizeof *ctx);

    if (ctx == NULL)
        return NULL;
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->closed, 0);
    ctx->fork_gen = atomic_load(&km__fork_gen);
    pthread_mutex_init(&ctx->mu, NULL);
    km__br_init(&ctx->cache_lock);
    pthread_rwlock_init(&ctx->policy_lock, NULL);
    pthread_mutex_init(&ctx->audit.mu, NULL);
    pthread_mutex_init(&ctx->audit.kmu, NULL);
    pthread_mutex_init(&ctx->audit.fmu, NULL);
    ctx->audit.fd = -1;
    return ctx;
}

int km__ctx_ready(struct km_ctx *ctx)
{
    int rc;

    if ((rc = km__acl_load(ctx)) != KM_OK)
        return rc;
    ctx->audit_close = km__audit_close;
    if ((rc = km__audit_open(ctx)) != KM_OK) {
        km__audit_close(ctx);
        ctx->audit_close = NULL;
    }
    return rc;
}

void km__ctx_discard(struct km_ctx *ctx)
{
    if (ctx == NULL)
        return;
    km__sealer_free(ctx->sealer);
    km_secret_free(ctx->master);
    km__policy_free(ctx->policy);
    free(ctx->policy_json);
    km__store_close(ctx->env);
    pthread_mutex_destroy(&ctx->mu);
    pthread_mutex_destroy(&ctx->audit.mu);
    pthread_mutex_destroy(&ctx->audit.kmu);
    pthread_mutex_destroy(&ctx->audit.fmu);
    km__br_destroy(&ctx->cache_lock);
    pthread_rwlock_destroy(&ctx->policy_lock);
    free(ctx);
}

int km__ctx_check(struct km_ctx *ctx)
{
    if (atomic_load_explicit(&ctx->closed, memory_order_relaxed))
        return km__err(KM_E_STATE, "the vault was closed");
    if (ctx->fork_gen != atomic_load_explicit(&km__fork_gen, memory_order_relaxed))
        return km__err(KM_E_FORK, "vault handle used in a forked child; open it again there");
    return KM_OK;
}

int km__pass_args(const char *fn, const uint8_t *pass, size_t pass_len, uint32_t *kdf_cost)
{
    if (pass == NULL || pass_len == 0 || pass_len > 1024)
        return km__err(KM_E_INVALID, "%s: passphrase must be 1 to 1024 bytes", fn);
    if (*kdf_cost == 0)
        *kdf_cost = KM_KDF_COST_DEFAULT;
    if (*kdf_cost < KM_KDF_COST_MIN || *kdf_cost > KM_KDF_COST_MAX)
        return km__err(KM_E_INVALID, "%s: kdf_cost must be %d to %d", fn, KM_KDF_COST_MIN,
                       KM_KDF_COST_MAX);
    return KM_OK;
}

