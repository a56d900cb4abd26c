/* remote.c - libkm's client mode (docs/KMD.md): km_open() of `kmd:/path`
 * (kmd's Unix socket) or `kmip://host:port` (kmd's mutual TLS listener)
 * gives a context that holds no vault. Every public function starts with
 * KM__REMOTE (core.h), which sends it here. The data path goes over KMIP's
 * standard operations where they carry the call exactly ("standard KMIP
 * operations" below); every other call is one KMIP request of kmd's vendor
 * operation KM_KMD_OP_CALL (km/sys/server.h), the function and its
 * arguments encoded by the signature table of the primitives' KMIP codec
 * (kmip_ttlv.h, shared with kmd's src/kmd/vendor.c), and kmd runs it as the
 * connection's principal. libkm's return code and error detail come back
 * with the outputs. One connection per context, used by one call at a time;
 * a broken connection fails the call with KM_E_IO and is made again at the
 * next call. Key handles of a remote context carry the key's id, name and
 * type; kmd opens the key by its id at each call. */
#include "core.h"
#include "remote.h"
#include "crypto_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "km/sys/server.h"
#include "kmip_ttlv.h"
#include "tls.h"

/* A call that takes longer than this fails with KM_E_IO (KM_KMD_TIMEOUT_MS
 * overrides, 100 ms to 10 min). */
#define REMOTE_TIMEOUT_MS 60000
/* The largest response accepted. */
#define REMOTE_MAX_RESPONSE (64u << 20)
/* Key types remembered for km_decrypt (the most recent handles' keys). */
#define REMOTE_TYPES 64

typedef struct km__remote km__remote;
struct km__remote {
    pthread_mutex_t mu;          /* one call at a time on the connection */
    char uri[300];
    char path[108];              /* kmd: */
    char host[256], port[8];     /* kmip:// */
    km__tls_ctx *tctx;
    km__tls *tls;
    int fd;                      /* the Unix socket, or -1 */
    int timeout_ms;
    /* the key types of the handles this context made (make_key), by key id:
     * km_decrypt's standard Decrypt needs the ciphertext key's type (below) */
    pthread_mutex_t tmu;
    struct { uint8_t id[16]; uint8_t type; } types[REMOTE_TYPES];
    unsigned ntypes;             /* entries filled; the next goes at ntypes % REMOTE_TYPES */
};

/* ---------------------------------------------------------------- transport */

static void conn_drop(km__remote *r)
{
    if (r->tls != NULL)
        km__tls_free(r->tls, 0);
    r->tls = NULL;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

static int conn_make(km__remote *r, long long deadline)
{
    struct sockaddr_un a;
    int rc;

    if (r->fd >= 0 || r->tls != NULL)
        return KM_OK;
    if (r->tctx != NULL) {
        if ((rc = km__tls_connect(r->tctx, r->host, r->port, deadline, &r->tls)) != KM_OK)
            r->tls = NULL;
        return rc;
    }
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, r->path, strlen(r->path) + 1);
    if ((r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0
        || connect(r->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        rc = km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)errno,
                            "kmd: cannot connect to '%s': %s (is kmd running?)", r->path,
                            strerror(errno));
        conn_drop(r);
        return rc;
    }
    return KM_OK;
}

/* Waits until fd is ready for `ev` before the deadline. */
static int wait_fd(int fd, short ev, long long deadline)
{
    for (;;) {
        struct pollfd p = { fd, ev, 0 };
        long long left = deadline - km__tls_now_ms();
        int n;
        if (left <= 0)
            return ETIMEDOUT;
        n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return errno;
    }
}

static int unix_io(km__remote *r, uint8_t *b, size_t n, int out, long long deadline)
{
    while (n > 0) {
        ssize_t k = out ? send(r->fd, b, n, MSG_NOSIGNAL) : recv(r->fd, b, n, 0);
        int e;
        if (k > 0) {
            b += k;
            n -= (size_t)k;
            continue;
        }
        if (k == 0)
            return ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno;
        if ((e = wait_fd(r->fd, out ? POLLOUT : POLLIN, deadline)) != 0)
            return e;
    }
    return 0;
}

static int conn_io(km__remote *r, uint8_t *b, size_t n, int out, long long deadline,
                   const char *fn)
{
    int e, rc;
    if (r->tls != NULL) {
        rc = out ? km__tls_write(r->tls, b, n, deadline) : km__tls_read_full(r->tls, b, n, deadline);
        if (rc != KM_OK)
            rc = km__err(KM_E_IO, "kmd: %s: the connection to %s failed: %s", fn, r->uri,
                         km_error_last()->message);
        return rc;
    }
    if ((e = unix_io(r, b, n, out, deadline)) == 0)
        return KM_OK;
    return km__err_native(KM_E_IO, KM_NATIVE_ERRNO, (unsigned long)e,
                          "kmd: %s: %s", fn,
                          e == ETIMEDOUT ? "no answer from kmd in time"
                          : e == ECONNRESET || e == EPIPE
                              ? "kmd closed the connection (kmd stopped, or refused this "
                                "peer: is its uid mapped to a principal?)"
                              : strerror(e));
}

/* Sends one request and reads the response (malloc'd into *resp). */
static int roundtrip(km__remote *r, const uint8_t *req, size_t req_len, uint8_t **resp,
                     size_t *resp_len, const char *fn)
{
    long long deadline = km__tls_now_ms() + r->timeout_ms;
    uint8_t head[8];
    size_t total = 0;
    int rc;

    *resp = NULL;
    if ((rc = conn_make(r, deadline)) != KM_OK)
        return rc;
    if ((rc = conn_io(r, (uint8_t *)(uintptr_t)req, req_len, 1, deadline, fn)) != KM_OK
        || (rc = conn_io(r, head, 8, 0, deadline, fn)) != KM_OK)
        goto fail;
    if (km__ttlv_peek_len(head, 8, REMOTE_MAX_RESPONSE, &total) != KM_OK || total < 8) {
        rc = km__err(KM_E_IO, "kmd: %s: the answer is no KMIP message", fn);
        goto fail;
    }
    if ((*resp = malloc(total)) == NULL) {
        rc = km__err(KM_E_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(*resp, head, 8);
    if ((rc = conn_io(r, *resp + 8, total - 8, 0, deadline, fn)) != KM_OK)
        goto fail;
    *resp_len = total;
    return KM_OK;
fail:
    free(*resp);
    *resp = NULL;
    conn_drop(r);   /* the stream is out of step: the next call connects again */
    return rc;
}

/* ---------------------------------------------------------------- arguments */

/* One argument as the caller passed it. */
typedef struct rarg {
    char c;
    int64_t n;
    const void *p;
    size_t len;
    void *out;
    size_t cap;
    size_t *lenp;
    void *fn;
    void *arg;
} rarg;

/* Inputs of the signature format (kmip_ttlv.h): the rest are outputs. */
static int is_input(char c)
{
    return strchr("uilzsbxkOTQh", c) != NULL;
}

static size_t collect(const char *f, va_list ap, rarg *a)
{
    size_t i;
    for (i = 0; f[i] != '\0' && i < KM__KC_MAX_ARGS; i++) {
        rarg *x = &a[i];
        memset(x, 0, sizeof *x);
        x->c = f[i];
        switch (f[i]) {
        case 'u': x->n = va_arg(ap, unsigned); break;
        case 'i': x->n = va_arg(ap, int); break;
        case 'l': x->n = va_arg(ap, int64_t); break;
        case 'z': x->n = (int64_t)va_arg(ap, size_t); break;
        case 'b':
            x->p = va_arg(ap, const void *);
            x->len = va_arg(ap, size_t);
            break;
        case 'B':
            x->out = va_arg(ap, void *);
            x->cap = va_arg(ap, size_t);
            x->lenp = va_arg(ap, size_t *);
            break;
        case 'C': case 'R':
            x->out = va_arg(ap, void *);
            x->cap = va_arg(ap, size_t);
            break;
        case 'N': case 'P': case 'G': case 'A': case 'E':
            x->fn = va_arg(ap, void *);
            x->arg = va_arg(ap, void *);
            break;
        default:
            if (!is_input(f[i])) {
                x->out = va_arg(ap, void *);
                /* a result pointer reads NULL until the call made one */
                if (x->out != NULL && strchr("KSIFM", f[i]) != NULL)
                    *(void **)x->out = NULL;
            } else
                x->p = va_arg(ap, const void *);
            break;
        }
    }
    return i;
}

static void put_str(km__ttlv_enc *e, uint32_t tag, const char *s)
{
    if (s == NULL)
        km__ttlv_put_bool(e, tag, 0);
    else
        km__ttlv_put_text(e, tag, s, strlen(s));
}

static void put_opt_bytes(km__ttlv_enc *e, uint32_t tag, const void *p, size_t n)
{
    if (p == NULL)
        km__ttlv_put_bool(e, tag, 0);
    else
        km__ttlv_put_bytes(e, tag, p, n);
}

#define A KM_KMD_TAG_ARG

/* An option struct: its fields in order, each an argument item (the
 * struct's version says which it has; kmd fills the rest with defaults). */
static void put_struct(km__ttlv_enc *e, char c, const void *p)
{
    km__ttlv_begin(e, A);
    if (c == 'O') {
        const km_key_options *o = p;
        km__ttlv_put_long(e, A, o->version);
        km__ttlv_put_long(e, A, o->usage);
        km__ttlv_put_long(e, A, o->flags);
        put_str(e, A, o->protection);
        km__ttlv_put_long(e, A, o->version >= 2 ? o->activate_at : 0);
        km__ttlv_put_long(e, A, o->version >= 2 ? o->rotate_days : 0);
        km__ttlv_put_long(e, A, o->version >= 2 ? o->protect_days : 0);
        km__ttlv_put_long(e, A, o->version >= 2 ? o->process_days : 0);
        km__ttlv_put_long(e, A, o->version >= 2 ? o->destroy_grace_days : 0);
        put_str(e, A, o->version >= 3 ? o->policy : NULL);
        put_opt_bytes(e, A, o->version >= 4 ? o->key_id : NULL, 16);
        km__ttlv_put_long(e, A, o->version >= 5 ? o->import_version : 0);
        km__ttlv_put_long(e, A, o->version >= 5 ? o->rsa_oaep_digest : 0);
    } else if (c == 'T') {
        const km_key_settings *s = p;
        km__ttlv_put_long(e, A, s->version);
        km__ttlv_put_long(e, A, s->fields);
        km__ttlv_put_long(e, A, s->rotate_days);
        km__ttlv_put_long(e, A, s->usage);
        km__ttlv_put_long(e, A, s->exportable);
        put_str(e, A, s->policy);
        km__ttlv_put_long(e, A, s->deletion_protection);
        km__ttlv_put_long(e, A, s->min_process_version);
        km__ttlv_put_long(e, A, s->min_protect_version);
    } else if (c == 'Q') {
        const km_key_filter *q = p;
        km__ttlv_put_long(e, A, q->version);
        km__ttlv_put_long(e, A, q->type);
        put_str(e, A, q->protection);
        km__ttlv_put_long(e, A, q->state);
        put_str(e, A, q->tag);
    } else { /* 'h' */
        const km_audit_head *h = p;
        km__ttlv_put_long(e, A, (int64_t)h->seq);
        km__ttlv_put_bytes(e, A, h->hash, sizeof h->hash);
    }
    km__ttlv_end(e);
}

static void encode(km__ttlv_enc *e, const rarg *a, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const rarg *x = &a[i];
        switch (x->c) {
        case 'u': case 'i': case 'l': case 'z': km__ttlv_put_long(e, A, x->n); break;
        case 's': put_str(e, A, x->p); break;
        case 'b': put_opt_bytes(e, A, x->p, x->len); break;
        case 'x': put_opt_bytes(e, A, x->p, 16); break;
        case 'k': put_opt_bytes(e, A, x->p != NULL ? ((const km_key *)x->p)->k->id : NULL, 16); break;
        case 'O': case 'T': case 'Q': case 'h':
            if (x->p == NULL)
                km__ttlv_put_bool(e, A, 0);
            else
                put_struct(e, x->c, x->p);
            break;
        case 'B': case 'C': case 'R':
            if (x->out == NULL && x->c != 'C')
                km__ttlv_put_bool(e, A, 0);
            else
                km__ttlv_put_long(e, A, x->out == NULL ? 0 : (int64_t)x->cap);
            break;
        case 'N': case 'P': case 'G': case 'A': case 'E':
            if (x->fn == NULL)
                km__ttlv_put_bool(e, A, 0);
            else
                km__ttlv_put_long(e, A, 0);
            break;
        default:
            if (x->out == NULL)
                km__ttlv_put_bool(e, A, 0);
            else
                km__ttlv_put_long(e, A, 0);
            break;
        }
    }
}

#undef A

/* ------------------------------------------------------------------ outputs */

typedef struct rtree {
    const km__ttlv_tree *t;
    const char *fn;
} rtree;

static const km__ttlv_item *item(const rtree *r, int i)
{
    return i >= 0 ? &r->t->items[i] : NULL;
}

static int bad(const rtree *r)
{
    return km__err(KM_E_IO, "kmd: %s: kmd's answer does not match the call", r->fn);
}

static int64_t be64v(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* The nth child of Structure `st` (any tag), or -1. */
static int nth(const rtree *r, int st, int n)
{
    int c;
    if (st < 0 || r->t->items[st].type != KM__TTLV_STRUCTURE)
        return -1;
    for (c = r->t->items[st].first; c >= 0 && n > 0; c = r->t->items[c].next)
        n--;
    return c;
}

static int get_long(const rtree *r, int i, int64_t *v)
{
    const km__ttlv_item *it = item(r, i);
    if (it == NULL || it->type != KM__TTLV_LONG)
        return bad(r);
    *v = be64v(it->val);
    return KM_OK;
}

/* Bytes or text of item i (NULL for a Boolean: none). */
static int get_data(const rtree *r, int i, uint8_t type, const uint8_t **p, size_t *n)
{
    const km__ttlv_item *it = item(r, i);
    if (it == NULL)
        return bad(r);
    if (it->type == KM__TTLV_BOOL) {
        *p = NULL;
        *n = 0;
        return KM_OK;
    }
    if (it->type != type)
        return bad(r);
    *p = it->val;
    *n = it->len;
    return KM_OK;
}

static char *dup_text(const rtree *r, int i)
{
    const uint8_t *p;
    size_t n;
    char *s;
    if (get_data(r, i, KM__TTLV_TEXT, &p, &n) != KM_OK || p == NULL)
        return NULL;
    if ((s = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A text field into a fixed buffer (cut to fit). */
static void text_into(const rtree *r, int i, char *out, size_t cap)
{
    const uint8_t *p = NULL;
    size_t n = 0;
    if (get_data(r, i, KM__TTLV_TEXT, &p, &n) != KM_OK || p == NULL)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(out, p, n);
    out[n] = '\0';
}

static int64_t long_at(const rtree *r, int st, int n)
{
    int64_t v = 0;
    (void)get_long(r, nth(r, st, n), &v);
    return v;
}

static void remember_type(km__remote *r, const uint8_t id[16], km_key_type type)
{
    unsigned i, n;
    pthread_mutex_lock(&r->tmu);
    n = r->ntypes < REMOTE_TYPES ? r->ntypes : REMOTE_TYPES;
    for (i = 0; i < n && memcmp(r->types[i].id, id, 16) != 0; i++)
        ;
    if (i == n)
        i = r->ntypes++ % REMOTE_TYPES;
    memcpy(r->types[i].id, id, 16);
    r->types[i].type = (uint8_t)type;
    pthread_mutex_unlock(&r->tmu);
}

/* The type of key `id` if a handle of this context showed it, else -1. */
static int known_type(km__remote *r, const uint8_t id[16])
{
    unsigned i, n;
    int type = -1;
    pthread_mutex_lock(&r->tmu);
    n = r->ntypes < REMOTE_TYPES ? r->ntypes : REMOTE_TYPES;
    for (i = 0; i < n && type < 0; i++)
        if (memcmp(r->types[i].id, id, 16) == 0)
            type = r->types[i].type;
    pthread_mutex_unlock(&r->tmu);
    return type;
}

/* A key handle of the remote context from kmd's {id, name, type, primary}. */
static int make_key(struct km_ctx *ctx, const rtree *r, int st, km_key **out)
{
    const uint8_t *id;
    size_t n;
    km__kobj *k;
    km_key *h;

    if (get_data(r, nth(r, st, 0), KM__TTLV_BYTES, &id, &n) != KM_OK || id == NULL || n != 16)
        return bad(r);
    if ((k = calloc(1, sizeof *k)) == NULL || (h = calloc(1, sizeof *h)) == NULL
        || (k->name = dup_text(r, nth(r, st, 1))) == NULL) {
        if (k != NULL)
            free(k->name);
        free(k);
        return km__err(KM_E_NOMEM, "out of memory");
    }
    memcpy(k->id, id, 16);
    k->type = (km_key_type)long_at(r, st, 2);
    /* the primary version kmd saw at open (0: an older kmd, unknown): the
     * managed object of the standard Encrypt, Sign and MAC (below) */
    k->primary = nth(r, st, 3) >= 0 ? (uint32_t)long_at(r, st, 3) : 0;
    remember_type(ctx->remote, id, k->type);
    k->session = 1;         /* nothing of it is in this process's vault */
    pthread_rwlock_init(&k->lock, NULL);
    atomic_init(&k->refs, 1);
    atomic_fetch_add(&ctx->refs, 1);
    k->ctx = ctx;
    h->k = k;
    h->fork_gen = atomic_load(&km__fork_gen);
    *out = h;
    return KM_OK;
}

static const char *const report_actions[] = { "activated", "deactivated", "destroy-pending",
                                              "destroyed", "rotated", "trimmed", NULL };

static int make_report(const rtree *r, int st, km_maintain_report **out)
{
    km_maintain_report *m = calloc(1, sizeof *m);
    int c;
    if (m == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    for (c = st >= 0 ? r->t->items[st].first : -1; c >= 0; c = r->t->items[c].next) {
        char name[256], act[32];
        const char *a = "changed";
        size_t j;
        text_into(r, nth(r, c, 0), name, sizeof name);
        text_into(r, nth(r, c, 2), act, sizeof act);
        for (j = 0; report_actions[j] != NULL; j++)
            if (strcmp(report_actions[j], act) == 0)
                a = report_actions[j];
        km__report_add(m, name, (uint32_t)long_at(r, c, 1), a);
    }
    *out = m;
    return KM_OK;
}

/* An audit entry from its record (A and E listings). */
static void entry_of(const rtree *r, int c, km_audit_entry *e, char *pr, char *op, char *det,
                     size_t cap)
{
    const uint8_t *p;
    size_t n;
    memset(e, 0, sizeof *e);
    e->seq = (uint64_t)long_at(r, c, 0);
    e->time = long_at(r, c, 1);
    text_into(r, nth(r, c, 2), pr, cap);
    text_into(r, nth(r, c, 3), op, cap);
    e->has_key = (int)long_at(r, c, 4);
    if (get_data(r, nth(r, c, 5), KM__TTLV_BYTES, &p, &n) == KM_OK && p != NULL && n == 16)
        memcpy(e->key_id, p, 16);
    e->version = (uint32_t)long_at(r, c, 6);
    e->result = (int)long_at(r, c, 7);
    text_into(r, nth(r, c, 8), det, cap);
    if (get_data(r, nth(r, c, 9), KM__TTLV_BYTES, &p, &n) == KM_OK && p != NULL && n == 32)
        memcpy(e->hash, p, 32);
    e->principal = pr;
    e->op = op;
    e->detail = det;
}

/* Calls the listing's callback for each record; a non-zero return stops.
 * *last is the last audit sequence seen (A, E). */
static int listing(const rtree *r, const rarg *x, int st, uint64_t *last, int *stopped)
{
    int c, rc = 0;
    for (c = st >= 0 ? r->t->items[st].first : -1; c >= 0 && rc == 0; c = r->t->items[c].next) {
        char a[300], b[300], d[300];
        const uint8_t *p;
        size_t n;
        text_into(r, nth(r, c, 0), a, sizeof a);
        switch (x->c) {
        case 'N':
            if (get_data(r, nth(r, c, 1), KM__TTLV_BYTES, &p, &n) != KM_OK || p == NULL || n != 16)
                return bad(r);
            rc = ((km_key_list_fn)x->fn)(a, p, (km_key_type)long_at(r, c, 2), x->arg);
            break;
        case 'P':
            rc = ((km_principal_fn)x->fn)(a, (uint32_t)long_at(r, c, 1), long_at(r, c, 2), x->arg);
            break;
        case 'G':
            rc = ((km_grant_fn)x->fn)(a, (uint32_t)long_at(r, c, 1), x->arg);
            break;
        default: {   /* A, E */
            km_audit_entry e;
            char why[300];
            entry_of(r, c, &e, a, b, d, sizeof a);
            *last = e.seq;
            if (x->c == 'A') {
                rc = ((km_audit_fn)x->fn)(&e, x->arg);
            } else {
                text_into(r, nth(r, c, 10), why, sizeof why);
                rc = ((km_audit_alert_fn)x->fn)(&e, why, x->arg);
            }
            break;
        }
        }
    }
    if (rc != 0)
        *stopped = rc;
    return KM_OK;
}

/* Writes the outputs of a call that returned rc. */
static int outputs(struct km_ctx *ctx, const rtree *r, int pl, const rarg *a, size_t na,
                   int rc, uint64_t *last, int *stopped)
{
    int c = pl >= 0 ? r->t->items[pl].first : -1;
    size_t i;

    for (i = 0; i < na; i++) {
        const rarg *x = &a[i];
        const uint8_t *p;
        size_t n;
        int64_t v;
        if (is_input(x->c))
            continue;
        while (c >= 0 && r->t->items[c].tag != KM_KMD_TAG_OUT)
            c = r->t->items[c].next;
        if (c < 0)
            return bad(r);
        if (x->c == 'B') {
            if (get_long(r, nth(r, c, 0), &v) != KM_OK || v < 0)
                return bad(r);
            /* the size made or needed; 0 after any other failure, as embedded */
            if (x->lenp != NULL)
                *x->lenp = (rc == KM_OK || rc == KM_E_BUFFER) ? (size_t)v : 0;
            if (rc == KM_OK && x->out != NULL) {
                if (get_data(r, nth(r, c, 1), KM__TTLV_BYTES, &p, &n) != KM_OK || n > x->cap
                    || n != (size_t)v)
                    return bad(r);
                if (n > 0)
                    memcpy(x->out, p, n);
            }
        } else if (rc != KM_OK && x->c != 'S' && x->c != 'K' && x->c != 'L') {
            /* nothing else is written on failure; a result pointer reads NULL */
            if ((x->c == 'I' || x->c == 'F' || x->c == 'M') && x->out != NULL)
                *(void **)x->out = NULL;
        } else if (x->c == 'C' || x->c == 'R' || x->c == 'X' || x->c == 'S') {
            uint8_t type = x->c == 'C' ? KM__TTLV_TEXT : KM__TTLV_BYTES;
            if (get_data(r, c, type, &p, &n) != KM_OK)
                return bad(r);
            if (x->c == 'S') {
                km_secret **s = x->out;
                if (s != NULL)
                    *s = NULL;
                if (rc == KM_OK && s != NULL && p != NULL && km_secret_from(s, p, n) != KM_OK)
                    return km__err(KM_E_NOMEM, "out of memory");
            } else if (x->c == 'C') {
                if (x->out != NULL && x->cap > 0) {
                    size_t m = n < x->cap - 1 ? n : x->cap - 1;
                    if (p != NULL)
                        memcpy(x->out, p, m);
                    ((char *)x->out)[m] = '\0';
                }
            } else {
                size_t want = x->c == 'X' ? 16 : x->cap;
                if (p == NULL || n != want)
                    return bad(r);
                if (x->out != NULL)
                    memcpy(x->out, p, n);
            }
        } else if (x->c == 'U' || x->c == 'L' || x->c == 'Z') {
            if (get_long(r, c, &v) != KM_OK)
                return bad(r);
            if (x->out != NULL) {
                if (x->c == 'U')
                    *(uint32_t *)x->out = (uint32_t)v;
                else if (x->c == 'L')
                    *(uint64_t *)x->out = (uint64_t)v;
                else
                    *(size_t *)x->out = (size_t)v;
            }
        } else if (x->c == 'K') {
            km_key **k = x->out;
            if (k != NULL)
                *k = NULL;
            if (rc == KM_OK && k != NULL) {
                int e = make_key(ctx, r, c, k);
                if (e != KM_OK)
                    return e;
            }
        } else if (x->c == 'H') {
            km_audit_head *h = x->out;
            if (get_data(r, nth(r, c, 1), KM__TTLV_BYTES, &p, &n) != KM_OK || p == NULL
                || n != sizeof h->hash)
                return bad(r);
            h->seq = (uint64_t)long_at(r, c, 0);
            memcpy(h->hash, p, n);
        } else if (x->c == 'W') {
            km_request_status *w = x->out;
            memset(w, 0, sizeof *w);
            w->op = (km_request_op)long_at(r, c, 0);
            text_into(r, nth(r, c, 1), w->key_name, sizeof w->key_name);
            text_into(r, nth(r, c, 2), w->requester, sizeof w->requester);
            w->approvals = (uint32_t)long_at(r, c, 3);
            w->needed = (uint32_t)long_at(r, c, 4);
            w->created = long_at(r, c, 5);
            w->expires = long_at(r, c, 6);
            w->consumed = (int)long_at(r, c, 7);
        } else if (x->c == 'M') {
            int e = make_report(r, c, x->out);
            if (e != KM_OK)
                return e;
        } else if (x->c == 'I') {
            int e = km__keyinfo_remote(r->t, c, x->out);
            if (e != KM_OK)
                return e == KM_E_CORRUPT ? bad(r) : e;
        } else if (x->c == 'F') {
            int e = km__findings_remote(r->t, c, x->out);
            if (e != KM_OK)
                return e == KM_E_CORRUPT ? bad(r) : e;
        } else {   /* listings */
            int e;
            if (x->fn != NULL && (e = listing(r, x, c, last, stopped)) != KM_OK)
                return e;
        }
        c = r->t->items[c].next;
    }
    return KM_OK;
}

/* ---------------------------------------------------------------- the call */

static int result_of(const km__kmip_result *it, const char *fn)
{
    int len = it->message != NULL ? (int)(it->message_len > 400 ? 400 : it->message_len) : 0;
    const char *m = it->message != NULL ? it->message : "(no message)";
    switch (it->reason) {
    case KM__KMIP_REASON_PERMISSION_DENIED:
        return km__err(KM_E_DENIED, "kmd refused %s: %.*s", fn, len, m);
    case KM__KMIP_REASON_INVALID_MESSAGE:
    case KM__KMIP_REASON_INVALID_FIELD:
        return km__err(KM_E_INVALID, "kmd refused %s: %.*s", fn, len, m);
    case KM__KMIP_REASON_OPERATION_NOT_SUPPORTED:
        return km__err(KM_E_UNSUPPORTED, "kmd does not serve %s: %.*s", fn, len, m);
    default:
        return km__err(KM_E_IO, "kmd failed %s: %.*s", fn, len, m);
    }
}

/* One call: request, response, outputs. *stopped: a listing's callback
 * stopped it; *last: the last audit sequence listed. */
static int call_once(struct km_ctx *ctx, uint32_t fn, const rarg *a, size_t na,
                     uint64_t *last, int *stopped)
{
    km__remote *r = ctx->remote;
    const char *name = km__kcall_name(fn);
    km__ttlv_limits lim = { REMOTE_MAX_RESPONSE, KM__TTLV_DEFAULT_MAX_DEPTH, 1u << 22 };
    km__ttlv_enc e;
    km__ttlv_tree t;
    km__kmip_response resp;
    const uint8_t *req;
    uint8_t *ans = NULL;
    size_t req_len, ans_len = 0;
    int32_t krc = 0;
    const char *msg = NULL;
    size_t msg_len = 0;
    rtree rt;
    int rc, pl;

    memset(&t, 0, sizeof t);
    km__ttlv_enc_init(&e, 0);
    km__kmip_req_begin(&e, 2, 0, 1);
    km__kmip_item_begin(&e, KM_KMD_OP_CALL, NULL, 0);
    km__ttlv_put_int(&e, KM_KMD_TAG_FUNCTION, (int32_t)fn);
    encode(&e, a, na);
    km__kmip_item_end(&e);
    km__kmip_req_end(&e);
    if ((rc = km__ttlv_enc_finish(&e, &req, &req_len)) != KM_OK) {
        km__ttlv_enc_free(&e);
        return km__err(rc == KM_E_NOMEM ? KM_E_NOMEM : KM_E_INVALID,
                       "kmd: %s: the request cannot be encoded (too large?)", name);
    }
    pthread_mutex_lock(&r->mu);
    rc = roundtrip(r, req, req_len, &ans, &ans_len, name);
    pthread_mutex_unlock(&r->mu);
    km__ttlv_enc_free(&e);   /* wipes the request */
    if (rc != KM_OK)
        return rc;
    rt.t = &t;
    rt.fn = name;
    if (km__ttlv_decode(ans, ans_len, &lim, &t) != KM_OK || km__kmip_response_parse(&t, &resp) != KM_OK
        || resp.n != 1) {
        rc = km__err(KM_E_IO, "kmd: %s: the answer is no KMIP response", name);
        goto out;
    }
    if (resp.items[0].status != KM__KMIP_STATUS_SUCCESS) {
        rc = result_of(&resp.items[0], name);
        goto out;
    }
    pl = resp.items[0].payload;
    if (pl < 0 || km__ttlv_get_int(&t, pl, KM_KMD_TAG_RC, &krc) != KM_OK) {
        rc = bad(&rt);
        goto out;
    }
    (void)km__ttlv_get_text(&t, pl, KM_KMD_TAG_MESSAGE, &msg, &msg_len);
    if ((rc = outputs(ctx, &rt, pl, a, na, krc, last, stopped)) != KM_OK)
        goto out;
    rc = krc;
    if (rc != KM_OK) {
        /* kmd's code and detail, as if the call had failed here */
        km__err(rc, "%.*s", (int)(msg_len > 480 ? 480 : msg_len), msg != NULL ? msg : "");
    }
out:
    km__ttlv_tree_free(&t);
    if (ans != NULL) {
        km_memzero(ans, ans_len);
        free(ans);
    }
    return rc;
}

/* ---------------------------------------------- standard KMIP operations */
/*
 * The data path goes over KMIP's own operations where they carry libkm's
 * call exactly (docs/KMD.md, "Which calls take which path"): km_encrypt,
 * km_decrypt and km_decrypt_key (flags 0) as Encrypt / Decrypt (AES-GCM
 * parameters, AAD, the tag apart), km_sign and km_mac (flags 0 or
 * KM_SIG_RAW) as Sign / MAC, km_verify and km_mac_verify as SignatureVerify
 * / MACVerify, km_random (software, up to 1024 bytes) as RNGRetrieve. kmd
 * runs the same libkm function for each (src/kmd/kmip.c); the client puts
 * libkm's format v1 bytes together again from the answer and the key's id,
 * type and version (docs/FORMATS.md: the same bytes whichever mode made
 * them). A managed object is one key version ("<id hex>", "<id hex>-v<N>"):
 * Encrypt, Sign and MAC name the handle's primary version as kmd last told
 * it, Decrypt and the verifications the version in the ciphertext or tag.
 *
 * Each std_* returns STD_VENDOR, before sending anything, for a call the
 * standard operation cannot express (flags, other formats, arguments libkm
 * refuses or answers KM_E_BUFFER, a key type or version the client does not
 * know), and after a refusal that is kmd's own rather than libkm's (a
 * replaced object after a rotation elsewhere, an identifier not found):
 * remote_call then sends the libkm call, which answers as the embedded mode
 * does. A libkm error comes back with its code and message: kmd's Result
 * Message is "KM_E_<NAME>: <libkm's message>" (kmip.c km_fail), since a
 * Result Reason alone merges codes (Permission Denied is KM_E_DENIED,
 * KM_E_AUTH, KM_E_USAGE and KM_E_POLICY).
 */
#define STD_VENDOR 1
#define TG(name) KM__KMIP_TAG_##name

typedef struct std_ans {
    km__ttlv_tree t;
    uint8_t *buf;
    size_t len;
    int pl;                      /* the Response Payload */
} std_ans;

static void std_ans_free(std_ans *a)
{
    km__ttlv_tree_free(&a->t);
    if (a->buf != NULL) {
        km_memzero(a->buf, a->len);
        free(a->buf);
    }
}

/* Starts a one-item request of `op` on the managed object of key id's
 * version ver (id NULL: none), with AES-GCM's Cryptographic Parameters when
 * gcm. */
static void std_begin(km__ttlv_enc *e, uint32_t op, const uint8_t *id, uint32_t ver, int gcm)
{
    char uid[KM__KMIP_UID_CAP];
    km__ttlv_enc_init(e, 0);
    km__kmip_req_begin(e, 2, 0, 1);
    km__kmip_item_begin(e, op, NULL, 0);
    if (id != NULL) {
        km__kmip_uid(id, ver, 0, uid);
        km__ttlv_put_text(e, TG(UNIQUE_IDENTIFIER), uid, strlen(uid));
    }
    if (gcm) {
        km__ttlv_begin(e, TG(CRYPTOGRAPHIC_PARAMETERS));
        km__ttlv_put_enum(e, TG(BLOCK_CIPHER_MODE), KM__KMIP_MODE_GCM);
        km__ttlv_put_enum(e, TG(CRYPTOGRAPHIC_ALGORITHM), KM__KMIP_ALG_AES);
        km__ttlv_put_int(e, TG(TAG_LENGTH), 16);
        km__ttlv_end(e);
    }
}

/* A failed item: libkm's code and message from kmd's Result Message, or
 * STD_VENDOR (kmd's own refusal; KM_E_NOTFOUND, whose embedded message
 * names the call). */
static int std_failure(const km__kmip_result *it)
{
    size_t n = it->message != NULL ? it->message_len : 0, k = 0;
    int code;
    for (code = -1; code >= KM_E__LAST; code--) {
        const char *name = km_err_name(code);
        k = strlen(name);
        if (n > k + 2 && memcmp(it->message, name, k) == 0 && it->message[k] == ':'
            && it->message[k + 1] == ' ')
            break;
    }
    if (code < KM_E__LAST || code == KM_E_NOTFOUND)
        return STD_VENDOR;
    return km__err(code, "%.*s", (int)(n - k - 2), it->message + k + 2);
}

/* Ends and sends the request in e (freed); KM_OK with the answer's payload
 * in a (free with std_ans_free whatever the result), a libkm error, or
 * STD_VENDOR. */
static int std_send(struct km_ctx *ctx, km__ttlv_enc *e, const char *fn, std_ans *a)
{
    km__remote *r = ctx->remote;
    km__ttlv_limits lim = { REMOTE_MAX_RESPONSE, KM__TTLV_DEFAULT_MAX_DEPTH, 256 };
    km__kmip_response resp;
    const uint8_t *req;
    size_t req_len;
    int rc;

    memset(a, 0, sizeof *a);
    a->pl = -1;
    km__kmip_item_end(e);
    km__kmip_req_end(e);
    if (km__ttlv_enc_finish(e, &req, &req_len) != KM_OK) {
        km__ttlv_enc_free(e);
        return STD_VENDOR;   /* too large: the libkm call says so */
    }
    pthread_mutex_lock(&r->mu);
    rc = roundtrip(r, req, req_len, &a->buf, &a->len, fn);
    pthread_mutex_unlock(&r->mu);
    km__ttlv_enc_free(e);
    if (rc != KM_OK)
        return rc;
    if (km__ttlv_decode(a->buf, a->len, &lim, &a->t) != KM_OK
        || km__kmip_response_parse(&a->t, &resp) != KM_OK || resp.n != 1)
        return km__err(KM_E_IO, "kmd: %s: the answer is no KMIP response", fn);
    if (resp.items[0].status != KM__KMIP_STATUS_SUCCESS)
        return std_failure(&resp.items[0]);
    if ((a->pl = resp.items[0].payload) < 0)
        return km__err(KM_E_IO, "kmd: %s: kmd's answer does not match the call", fn);
    return KM_OK;
}

/* The answer's bytes `tag`, exactly `want` long (0: 1 to want). */
static const uint8_t *std_bytes(const std_ans *a, uint32_t tag, size_t want, size_t *n)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    if (km__ttlv_get_bytes(&a->t, a->pl, tag, &p, &len) != KM_OK || len > want
        || (n == NULL && len != want) || (n != NULL && len == 0))
        return NULL;
    if (n != NULL)
        *n = len;
    return p;
}

static int std_mismatch(const char *fn)
{
    return km__err(KM_E_IO, "kmd: %s: kmd's answer does not match the call", fn);
}

static int is_gcm(int type)
{
    return type > 0 && km__type_family((km_key_type)type) == KM__FAM_AES_GCM;
}

static uint32_t primary_of(const km__kobj *k)
{
    return __atomic_load_n(&k->primary, __ATOMIC_RELAXED);
}

static void primary_set(km__kobj *k, uint32_t v)
{
    __atomic_store_n(&k->primary, v, __ATOMIC_RELAXED);
}

static int std_encrypt(km_key *key, const uint8_t *pt, size_t pt_len, const uint8_t *aad,
                       size_t aad_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    km__kobj *k = key != NULL ? key->k : NULL;
    uint32_t ver = k != NULL ? primary_of(k) : 0;
    const uint8_t *d, *iv, *tag;
    km__ttlv_enc e;
    std_ans a;
    int rc;

    if (k == NULL || ver == 0 || !is_gcm(k->type) || out_len == NULL || out == NULL
        || (pt == NULL && pt_len > 0) || (aad == NULL && aad_len > 0) || pt_len > KM_PLAINTEXT_MAX
        || aad_len > KM_AAD_MAX || out_cap < pt_len + KM_CIPHERTEXT_OVERHEAD
        || km__buf_overlaps(pt, pt_len, out, pt_len + KM_CIPHERTEXT_OVERHEAD))
        return STD_VENDOR;
    *out_len = 0;
    std_begin(&e, KM__KMIP_OP_ENCRYPT, k->id, ver, 1);
    km__ttlv_put_bytes(&e, TG(DATA), pt != NULL ? pt : (const uint8_t *)"", pt_len);
    if (aad_len > 0)
        km__ttlv_put_bytes(&e, TG(AE_ADDITIONAL_DATA), aad, aad_len);
    if ((rc = std_send(k->ctx, &e, "km_encrypt", &a)) == KM_OK) {
        size_t dn = 0;
        d = pt_len > 0 ? std_bytes(&a, TG(DATA), pt_len, &dn) : NULL;
        iv = std_bytes(&a, TG(IV_COUNTER_NONCE), 16, NULL);
        tag = std_bytes(&a, TG(AE_TAG), 16, NULL);
        if ((pt_len > 0 && (d == NULL || dn != pt_len)) || iv == NULL || tag == NULL
            || km__be32_get(iv) != ver) {
            rc = std_mismatch("km_encrypt");
        } else {
            /* format v1: 'K' 'M', 1, algorithm, key id, version and nonce, data, tag */
            out[0] = KM__CT_MAGIC0;
            out[1] = KM__CT_MAGIC1;
            out[2] = KM__FORMAT_V1;
            out[3] = (uint8_t)k->type;
            memcpy(out + 4, k->id, 16);
            memcpy(out + 20, iv, 16);
            if (pt_len > 0)
                memcpy(out + KM_CIPHERTEXT_HEADER, d, pt_len);
            memcpy(out + KM_CIPHERTEXT_HEADER + pt_len, tag, 16);
            *out_len = pt_len + KM_CIPHERTEXT_OVERHEAD;
        }
    }
    if (rc != KM_OK && rc != STD_VENDOR)
        km_memzero(out, pt_len + KM_CIPHERTEXT_OVERHEAD);
    std_ans_free(&a);
    return rc;
}

/* km_decrypt (key NULL: the ciphertext's key, by its id) and km_decrypt_key. */
static int std_decrypt(struct km_ctx *ctx, km_key *key, uint32_t flags, const uint8_t *ct,
                       size_t ct_len, const uint8_t *aad, size_t aad_len, uint8_t *out,
                       size_t out_cap, size_t *out_len)
{
    const char *fn = key != NULL ? "km_decrypt_key" : "km_decrypt";
    size_t n = ct_len >= KM_CIPHERTEXT_OVERHEAD ? ct_len - KM_CIPHERTEXT_OVERHEAD : 0, dn = 0;
    const uint8_t *d;
    km__ttlv_enc e;
    std_ans a;
    uint32_t ver = 0;
    int type, rc;

    if (flags != 0 || ct == NULL || out == NULL || out_len == NULL
        || ct_len < KM_CIPHERTEXT_OVERHEAD || n > KM_PLAINTEXT_MAX
        || (aad == NULL && aad_len > 0) || aad_len > KM_AAD_MAX || out_cap < n
        || km__buf_overlaps(ct, ct_len, out, n) || ct[0] != KM__CT_MAGIC0
        || ct[1] != KM__CT_MAGIC1 || ct[2] != KM__FORMAT_V1 || (ver = km__be32_get(ct + 20)) == 0)
        return STD_VENDOR;
    if (key != NULL)
        type = memcmp(ct + 4, key->k->id, 16) == 0 ? (int)key->k->type : -1;
    else
        type = known_type(ctx->remote, ct + 4);
    /* kmd puts the header together again from the object: the client vouches
     * for the bytes it does not send (the algorithm, the key id) */
    if (type != ct[3] || !is_gcm(type))
        return STD_VENDOR;
    *out_len = 0;
    std_begin(&e, KM__KMIP_OP_DECRYPT, ct + 4, ver, 1);
    km__ttlv_put_bytes(&e, TG(DATA), ct + KM_CIPHERTEXT_HEADER, n);
    km__ttlv_put_bytes(&e, TG(IV_COUNTER_NONCE), ct + 20, 16);
    km__ttlv_put_bytes(&e, TG(AE_TAG), ct + KM_CIPHERTEXT_HEADER + n, 16);
    if (aad_len > 0)
        km__ttlv_put_bytes(&e, TG(AE_ADDITIONAL_DATA), aad, aad_len);
    if ((rc = std_send(ctx, &e, fn, &a)) == KM_OK) {
        if (km__ttlv_get_bytes(&a.t, a.pl, TG(DATA), &d, &dn) != KM_OK || dn != n)
            rc = std_mismatch(fn);
        else {
            if (n > 0)
                memcpy(out, d, n);
            *out_len = n;
        }
    }
    if (rc != KM_OK && rc != STD_VENDOR)
        km_memzero(out, out_cap < ct_len ? out_cap : ct_len);
    std_ans_free(&a);
    return rc;
}

/* km_sign and km_mac. */
static int std_tagged(km_key *key, int mac, uint32_t flags, const uint8_t *msg, size_t msg_len,
                      uint8_t *sig, size_t sig_cap, size_t *sig_len)
{
    const char *fn = mac ? "km_mac" : "km_sign";
    size_t hdr = flags == KM_SIG_RAW ? 0 : KM_TAG_HEADER, n = 0;
    km__kobj *k = key != NULL ? key->k : NULL;
    uint32_t ver = k != NULL ? primary_of(k) : 0;
    const uint8_t *d;
    km__ttlv_enc e;
    std_ans a;
    int rc;

    if (k == NULL || ver == 0 || (flags != 0 && flags != KM_SIG_RAW) || sig_len == NULL
        || sig == NULL || (msg == NULL && msg_len > 0) || msg_len > KM_PLAINTEXT_MAX
        || sig_cap + KM_TAG_HEADER - hdr < (mac ? KM_MAC_MAX : KM_SIGNATURE_MAX))
        return STD_VENDOR;   /* KM_MAC_MAX and KM_SIGNATURE_MAX count the header */
    *sig_len = 0;
    std_begin(&e, mac ? KM__KMIP_OP_MAC : KM__KMIP_OP_SIGN, k->id, ver, 0);
    km__ttlv_put_bytes(&e, TG(DATA), msg != NULL ? msg : (const uint8_t *)"", msg_len);
    if ((rc = std_send(k->ctx, &e, fn, &a)) == KM_OK) {
        if ((d = std_bytes(&a, mac ? TG(MAC_DATA) : TG(SIGNATURE_DATA), sig_cap - hdr, &n))
            == NULL)
            rc = std_mismatch(fn);
        else {
            if (hdr)
                km__tag_header_write(sig, mac ? KM__MAC_MAGIC1 : KM__SIG_MAGIC1,
                                     (uint8_t)k->type, k->id, ver);
            memcpy(sig + hdr, d, n);
            *sig_len = hdr + n;
        }
    }
    if (rc != KM_OK && rc != STD_VENDOR)
        km_memzero(sig, sig_cap);
    std_ans_free(&a);
    return rc;
}

/* km_verify and km_mac_verify. */
static int std_verify(km_key *key, int mac, uint32_t version, uint32_t flags, const uint8_t *msg,
                      size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    km__kobj *k = key != NULL ? key->k : NULL;
    uint32_t ver = version, v = 0;
    km__ttlv_enc e;
    std_ans a;
    int rc;

    if (k == NULL || sig == NULL || (flags != 0 && flags != KM_SIG_RAW)
        || (msg == NULL && msg_len > 0) || msg_len > KM_PLAINTEXT_MAX)
        return STD_VENDOR;
    if (flags == 0) {   /* the tag header: libkm's checks of it stay libkm's */
        if (sig_len <= KM_TAG_HEADER || sig[0] != KM__CT_MAGIC0
            || sig[1] != (mac ? KM__MAC_MAGIC1 : KM__SIG_MAGIC1) || sig[2] != KM__FORMAT_V1
            || sig[3] != (uint8_t)k->type || memcmp(sig + 4, k->id, 16) != 0)
            return STD_VENDOR;
        ver = km__be32_get(sig + 20);
        if ((version != 0 && version != ver)
            || (mac && sig_len - KM_TAG_HEADER != km__type_mac_len(k->type)))
            return STD_VENDOR;   /* a tagged MAC is full length; MACVerify takes a cut one */
        sig += KM_TAG_HEADER;
        sig_len -= KM_TAG_HEADER;
    }
    if (ver == 0 || sig_len == 0)
        return STD_VENDOR;
    std_begin(&e, mac ? KM__KMIP_OP_MAC_VERIFY : KM__KMIP_OP_SIGNATURE_VERIFY, k->id, ver, 0);
    km__ttlv_put_bytes(&e, TG(DATA), msg != NULL ? msg : (const uint8_t *)"", msg_len);
    km__ttlv_put_bytes(&e, mac ? TG(MAC_DATA) : TG(SIGNATURE_DATA), sig, sig_len);
    if ((rc = std_send(k->ctx, &e, mac ? "km_mac_verify" : "km_verify", &a)) == KM_OK) {
        if (km__ttlv_get_enum(&a.t, a.pl, TG(VALIDITY_INDICATOR), &v) != KM_OK
            || (v != KM__KMIP_VALID && v != KM__KMIP_INVALID))
            rc = std_mismatch(mac ? "km_mac_verify" : "km_verify");
        else if (v == KM__KMIP_INVALID)   /* crypto.c process_tagged's words */
            rc = km__err(KM_E_VERIFY, mac ? "MAC does not verify" : "signature does not verify");
    }
    std_ans_free(&a);
    return rc;
}

static int std_random(struct km_ctx *ctx, const char *protection, uint8_t *out, size_t len)
{
    const uint8_t *d;
    km__ttlv_enc e;
    std_ans a;
    int rc;

    if (out == NULL || len == 0 || len > 1024
        || (protection != NULL && strcmp(protection, "software") != 0))
        return STD_VENDOR;
    std_begin(&e, KM__KMIP_OP_RNG_RETRIEVE, NULL, 0, 0);
    km__ttlv_put_int(&e, TG(DATA_LENGTH), (int32_t)len);
    if ((rc = std_send(ctx, &e, "km_random", &a)) == KM_OK) {
        if ((d = std_bytes(&a, TG(DATA), len, NULL)) == NULL)
            rc = std_mismatch("km_random");
        else
            memcpy(out, d, len);
    }
    if (rc != KM_OK && rc != STD_VENDOR)
        km_memzero(out, len);
    std_ans_free(&a);
    return rc;
}

/* The standard operation of call fn (its arguments a, by the table's
 * format), or STD_VENDOR. */
static int std_call(struct km_ctx *ctx, uint32_t fn, const rarg *a)
{
    km_key *key = (km_key *)(uintptr_t)a[0].p;
    switch (fn) {
    case KM__KC_ENCRYPT:        /* kbbB */
        return std_encrypt(key, a[1].p, a[1].len, a[2].p, a[2].len, a[3].out, a[3].cap,
                           a[3].lenp);
    case KM__KC_DECRYPT:        /* ubbB */
        return std_decrypt(ctx, NULL, (uint32_t)a[0].n, a[1].p, a[1].len, a[2].p, a[2].len,
                           a[3].out, a[3].cap, a[3].lenp);
    case KM__KC_DECRYPT_KEY:    /* kubbB */
        return key == NULL ? STD_VENDOR
                           : std_decrypt(ctx, key, (uint32_t)a[1].n, a[2].p, a[2].len, a[3].p,
                                         a[3].len, a[4].out, a[4].cap, a[4].lenp);
    case KM__KC_SIGN:           /* kubB */
    case KM__KC_MAC:
        return std_tagged(key, fn == KM__KC_MAC, (uint32_t)a[1].n, a[2].p, a[2].len, a[3].out,
                          a[3].cap, a[3].lenp);
    case KM__KC_VERIFY:         /* kuubb */
    case KM__KC_MAC_VERIFY:
        return std_verify(key, fn == KM__KC_MAC_VERIFY, (uint32_t)a[1].n, (uint32_t)a[2].n,
                          a[3].p, a[3].len, a[4].p, a[4].len);
    case KM__KC_RANDOM:         /* sR */
        return std_random(ctx, a[0].p, a[1].out, a[1].cap);
    default:
        return STD_VENDOR;
    }
}

/* After a libkm call that succeeded: what it tells of the handle's primary
 * version (the header of a ciphertext or tag it made; a rotation: unknown,
 * until the next libkm call shows it). */
static void std_learn(uint32_t fn, const rarg *a)
{
    km_key *key;
    /* only these calls take a key handle first: any other's first argument
     * is something else (a context, a request id) and is not read as one */
    if (fn != KM__KC_ENCRYPT && fn != KM__KC_SIGN && fn != KM__KC_MAC && fn != KM__KC_KEY_ROTATE)
        return;
    key = (km_key *)(uintptr_t)a[0].p;
    if (key == NULL || key->k == NULL)
        return;
    if (fn == KM__KC_ENCRYPT && a[3].lenp != NULL && *a[3].lenp >= KM_CIPHERTEXT_OVERHEAD)
        primary_set(key->k, km__be32_get((const uint8_t *)a[3].out + 20));
    else if ((fn == KM__KC_SIGN || fn == KM__KC_MAC) && !(a[1].n & KM_SIG_RAW)
             && a[3].lenp != NULL && *a[3].lenp > KM_TAG_HEADER)
        primary_set(key->k, km__be32_get((const uint8_t *)a[3].out + 20));
    else if (fn == KM__KC_KEY_ROTATE)
        primary_set(key->k, 0);
}

#undef TG

/* km_rewrap_batch_ex through kmd: each item one km_rewrap_ex call, with the
 * item's result and detail (km_batch's items: km__batch_each, crypto.c). */
static int rewrap_batch(km_ctx *ctx, uint32_t flags, km_batch_item *items, size_t count)
{
    size_t i;
    int first = KM_OK;

    if (items == NULL && count > 0)
        return km__err(KM_E_INVALID, "km_rewrap_batch_ex: items is NULL");
    if (count > KM_BATCH_MAX)
        return km__err(KM_E_INVALID, "km_rewrap_batch_ex: count exceeds KM_BATCH_MAX");
    for (i = 0; i < count; i++) {
        km_batch_item *it = &items[i];
        it->out_len = 0;
        if (km__batch_done(it, km_rewrap_ex(ctx, flags, it->in, it->in_len, it->aad, it->aad_len,
                                            NULL, NULL, 0, it->out, it->out_cap, &it->out_len))
            != KM_OK && first == KM_OK)
            first = it->result;
    }
    return first;
}

static int remote_call(struct km_ctx *ctx, uint32_t fn, ...)
{
    const char *f = km__kcall_format(fn);
    rarg a[KM__KC_MAX_ARGS];
    va_list ap;
    size_t na;
    uint64_t last = 0;
    int rc, stopped = 0;

    if (fn == KM__KC_BATCH || fn == KM__KC_REWRAP_BATCH_EX) {
        km_key *key = NULL;
        km_batch_op op = KM_BATCH_ENCRYPT;
        uint32_t flags;
        km_batch_item *items;
        size_t count;
        va_start(ap, fn);
        if (fn == KM__KC_BATCH) {
            key = va_arg(ap, km_key *);
            op = (km_batch_op)va_arg(ap, int);
        }
        flags = va_arg(ap, uint32_t);
        items = va_arg(ap, km_batch_item *);
        count = va_arg(ap, size_t);
        va_end(ap);
        return fn == KM__KC_BATCH ? km__batch_each(key, op, flags, items, count)
                                  : rewrap_batch(ctx, flags, items, count);
    }
    if (f == NULL)
        return km__err(KM_E_UNSUPPORTED, "kmd: function %u has no remote form", fn);
    if ((rc = km__ctx_check(ctx)) != KM_OK)
        return rc;
    va_start(ap, fn);
    na = collect(f, ap, a);
    va_end(ap);
    if ((rc = std_call(ctx, fn, a)) != STD_VENDOR)
        return rc;
    rc = call_once(ctx, fn, a, na, &last, &stopped);
    if (rc == KM_OK)
        std_learn(fn, a);
    /* a long audit log comes in parts: ask again after the last entry */
    while (rc == KM_OK && stopped == 0 && (fn == KM__KC_AUDIT_FOREACH || fn == KM__KC_AUDIT_ALERTS)
           && last >= (uint64_t)a[0].n && last - (uint64_t)a[0].n + 1 >= KM__KC_LIST_MAX) {
        a[0].n = (int64_t)(last + 1);
        rc = call_once(ctx, fn, a, na, &last, &stopped);
    }
    if (rc == KM_OK && stopped != 0 && fn == KM__KC_AUDIT_FOREACH)
        return stopped < 0 ? stopped : -stopped;
    return rc;
}

/* ------------------------------------------------------------ open, close */

static void remote_close(struct km_ctx *ctx)
{
    km__remote *r = ctx->remote;
    if (r == NULL)
        return;
    /* a forked child sends nothing on its parent's connection */
    if (ctx->fork_gen != atomic_load(&km__fork_gen)) {
        if (r->tls != NULL)
            km__tls_free(r->tls, 0);
        r->tls = NULL;
    }
    conn_drop(r);
    km__tls_ctx_free(r->tctx);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->tmu);
    free(r);
    ctx->remote = NULL;
}

int km__remote_uri(const char *uri)
{
    return uri != NULL && (strncmp(uri, "kmd:", 4) == 0 || strncmp(uri, "kmip://", 7) == 0);
}

static int parse_uri(km__remote *r, const char *uri, const km_open_options *o)
{
    if (strlen(uri) >= sizeof r->uri)
        return km__err(KM_E_INVALID, "km_open: the kmd URI is too long");
    snprintf(r->uri, sizeof r->uri, "%s", uri);
    if (strncmp(uri, "kmd:", 4) == 0) {
        const char *p = uri + 4;
        if (p[0] != '/' || strlen(p) >= sizeof r->path)
            return km__err(KM_E_INVALID, "km_open: 'kmd:' needs the absolute path of kmd's "
                                         "socket (under %zu bytes)", sizeof r->path);
        memcpy(r->path, p, strlen(p) + 1);
        return KM_OK;
    } else {
        const char *h = uri + 7, *c = strrchr(h, ':');
        km__tls_conf tc;
        size_t hl;
        if (c == NULL || c == h || strlen(c + 1) == 0 || strlen(c + 1) >= sizeof r->port
            || strspn(c + 1, "0123456789") != strlen(c + 1) || strchr(c + 1, '/') != NULL
            || (hl = (size_t)(c - h)) >= sizeof r->host)
            return km__err(KM_E_INVALID, "km_open: a kmip URI is kmip://HOST:PORT");
        memcpy(r->host, h, hl);
        r->host[hl] = '\0';
        memcpy(r->port, c + 1, strlen(c + 1) + 1);
        if (o == NULL || o->version < 4 || o->tls_ca == NULL || o->tls_cert == NULL
            || o->tls_key == NULL)
            return km__err(KM_E_INVALID, "km_open: kmip://%s needs the options' tls_ca, "
                                         "tls_cert and tls_key (mutual TLS)", r->host);
        memset(&tc, 0, sizeof tc);
        tc.label = "kmd";
        tc.ca = o->tls_ca;
        tc.cert = o->tls_cert;
        tc.key = o->tls_key;
        tc.fail_code = KM_E_IO;
        return km__tls_client_ctx_new(&tc, &r->tctx);
    }
}

int km__remote_open(km_ctx **out, const char *uri, const km_open_options *o)
{
    struct km_ctx *ctx;
    km__remote *r;
    const char *env = getenv("KM_KMD_TIMEOUT_MS");
    uint32_t roles = 0;
    char name[72];
    int rc;

    if (o != NULL) {
        if (o->version < 1 || o->version > KM_OPEN_OPTIONS_VERSION)
            return km__err(KM_E_INVALID, "km_open: opts->version %u is not supported", o->version);
        if (o->passphrase != NULL || (o->version >= 3 && (o->slot_backend != NULL
                                                          || o->share_count > 0)))
            return km__err(KM_E_INVALID, "km_open: %s: kmd knows who connects (the peer's uid "
                           "or client certificate); no passphrase, keyslot or share is sent",
                           uri);
        if (o->flags & (KM_OPEN_CREATE | KM_OPEN_EXCL | KM_OPEN_FIPS))
            return km__err(KM_E_UNSUPPORTED, "km_open: %s: a vault is created by kmd's user, "
                           "not through kmd", uri);
    }
    if ((r = calloc(1, sizeof *r)) == NULL)
        return km__err(KM_E_NOMEM, "out of memory");
    r->fd = -1;
    r->timeout_ms = REMOTE_TIMEOUT_MS;
    if (env != NULL && atoi(env) >= 100 && atoi(env) <= 600000)
        r->timeout_ms = atoi(env);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->tmu, NULL);
    if ((rc = parse_uri(r, uri, o)) != KM_OK || (ctx = km__ctx_alloc()) == NULL) {
        km__tls_ctx_free(r->tctx);
        pthread_mutex_destroy(&r->mu);
        pthread_mutex_destroy(&r->tmu);
        free(r);
        return rc != KM_OK ? rc : km__err(KM_E_NOMEM, "out of memory");
    }
    ctx->remote = r;
    ctx->remote_call = remote_call;
    ctx->remote_close = remote_close;
    ctx->is_principal = 1;
    /* who kmd serves this connection as, and the vault's id */
    if ((rc = remote_call(ctx, KM__KC_HELLO, ctx->vault_id, name, sizeof name, &roles)) != KM_OK) {
        km__ctx_unref(ctx);
        return rc;
    }
    snprintf(ctx->principal_name, sizeof ctx->principal_name, "%s", name);
    atomic_store(&ctx->roles, roles);
    if (o != NULL && o->version >= 3 && o->principal != NULL && strcmp(o->principal, name) != 0) {
        km__ctx_unref(ctx);
        return km__err(KM_E_DENIED, "km_open: %s serves this connection as '%s', not '%s' (kmd "
                       "maps the peer to its principal; a client cannot name another)",
                       uri, name, o->principal);
    }
    *out = ctx;
    return KM_OK;
}
