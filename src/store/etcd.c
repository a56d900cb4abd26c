/*
 * etcd.c - the etcd store (km__store_etcd, src/store/store.h): the vault's
 * tables as keys of an etcd v3 cluster, reached through etcd's JSON gateway
 * (POST /v3/kv/range, /v3/kv/txn, /v3/lease/grant, /v3/watch) with libcurl
 * and jansson. Raw bytes in and out, as LMDB: every value is already sealed
 * by store.c and names are keyed hashes, so etcd holds no name, material or
 * plaintext.
 *
 * URI: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (store.c strips "etcd:" and
 * "//"); https when km_open_options (version 4) carries tls_ca, with
 * tls_cert/tls_key as the client certificate. Layout under "/PREFIX/":
 *   t/<table>/<record key bytes>   the records (table as km__table_name)
 *   rev                            the vault revision key: rewritten by every
 *                                  commit (its mod revision is gen())
 *   lock                           the writer lock, held with a lease
 *
 * Transactions. A read transaction reads at one etcd revision (the cluster's
 * revision at begin: every range carries revision=R), so it sees one
 * snapshot. A write transaction takes the vault's writer lock first (a Txn
 * creating "lock" only if absent, the key bound to a lease of LOCK_TTL_S
 * seconds, renewed while the transaction runs, so a SIGKILLed writer's lock
 * goes away by itself within LOCK_TTL_S), reads at the
 * revision the lock was taken, buffers its puts and deletes, and commits them
 * in one etcd Txn guarded by two compares: "lock" still has the create
 * revision we made and "rev" the mod revision we saw. Writers are therefore
 * serialised across processes and hosts as LMDB's writer lock serialises
 * them, so the callers above (30 write paths of the core, none of which can
 * be re-run from the store) never see a conflict in normal operation; the
 * compares fence a writer whose lock was lost (its lease expired while it
 * was paused for more than the lease): that commit writes nothing and fails
 * with KM_E_BUSY ("retry"), the caller's operation as a whole is then
 * retried by its caller. Nothing acknowledged is ever lost and the audit
 * chain (appended inside each write transaction) stays one linear chain.
 *
 * Limits: one commit is one etcd request: above etcd's --max-request-bytes
 * (1.5 MiB by default) or --max-txn-ops (128 by default) it is refused with
 * KM_E_FULL saying which limit; a single value above the request limit is
 * refused at the put.
 *
 * Members: the endpoints are tried in turn, starting with the last one that
 * answered; a connection error, a timeout, "no leader" or "leader changed"
 * moves to the next, and when every member failed so, the round starts again
 * after 50, 100, 200... ms until RETRY_MS have passed (an election after a
 * member's death takes about one election timeout). Every request carries
 * gRPC metadata "hasleader" so a member cut off from its quorum answers at
 * once instead of waiting; with no quorum anywhere a request fails with
 * KM_E_IO after about RETRY_MS (plus REQ_TIMEOUT_MS for a member that does
 * not answer at all).
 *
 * Changes by other processes: a thread per open store watches "/PREFIX/t/"
 * and bumps km__store_changes (store.h) for every change outside the audit
 * and counters tables; the core adds it to its write generation, so cached
 * keys and permissions are re-read at their next use. The core's refresh
 * interval stays the fallback while the watch is down.
 *
 * Fork: a handle is never used across fork() (KM_E_FORK), as LMDB's.
 */
#include "km_int.h"
#include "store.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ETCD_REQ_MAX ((size_t)1536 * 1024) /* etcd's --max-request-bytes default */
#define ETCD_TXN_OPS_MAX 128u              /* etcd's --max-txn-ops default (named in errors) */
#define LOCK_TTL_S 5
#define LOCK_WAIT_MS 30000
#define REQ_TIMEOUT_MS 2500
#define RETRY_MS 1500                      /* more rounds over the members until then */
#define CONNECT_TIMEOUT_MS 400
#define PAGE 512
#define POOL_MAX 8
#define EP_MAX 16
#define WATCH_RETRY_MS 100

typedef struct wop {
    km__table tbl;
    uint8_t *key, *val;   /* val NULL: a delete */
    size_t klen, vlen;
} wop;

typedef struct etcd_store {
    km__store base;               /* first: the handle the store layer holds */
    char *eps[EP_MAX];
    size_t n_eps;
    atomic_size_t cur;            /* the endpoint that answered last */
    char *pfx;                    /* "/PREFIX/" */
    size_t pfx_len;
    char *tls_ca, *tls_cert, *tls_key;
    unsigned fork_gen;
    pthread_mutex_t pool_mu;
    CURL *pool[POOL_MAX];
    size_t n_pool;
    struct curl_slist *hdrs;
    pthread_mutex_t wmu;          /* the one writer of this handle */
    int64_t lease;                /* under wmu: the lease of the lock key */
    int64_t lease_ms;             /* when it was granted (monotonic ms) */
    uint8_t owner[16];            /* this handle's lock and commit token */
    uint64_t commits;             /* under wmu */
    /* the watch */
    pthread_t watch_th;
    int watching;
    atomic_int stop;
    atomic_int watch_up;
    CURLM *wm;
    void *watch_mem;              /* the watch thread's line buffer, reachable from here:
                                   * a forked child (no watch thread) keeps a reference */
} etcd_store;

typedef struct held {
    struct held *next;
    size_t len;
    uint8_t data[];
} held;

typedef struct etcd_txn {
    km__txn base;                 /* first: store.c allocates txn_size bytes */
    int64_t rev;                  /* the snapshot revision */
    int64_t lock_rev;             /* write: create revision of our lock key */
    int64_t vrev_mod;             /* write: mod revision of "rev" at begin */
    wop *ops;                     /* write: buffered, sorted by (tbl, key) */
    size_t n_ops, cap_ops;
    int cleared[KM__T__COUNT];
    held *held;                   /* values handed out by get */
} etcd_txn;

static etcd_store *st_of(km__store *st)
{
    return (etcd_store *)(void *)st;
}

static etcd_txn *tx_of(km__txn *t)
{
    return (etcd_txn *)(void *)t;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- JSON */

/* base64 of bytes as a new JSON string; NULL on memory failure */
static json_t *jb64(const uint8_t *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    json_t *j;

    if (s == NULL)
        return NULL;
    km__b64_encode(p, n, s);
    j = json_string(s);
    free(s);
    return j;
}

/* Decodes a base64 JSON string member into a new buffer (*out NULL and *len
 * 0 when the member is absent: etcd omits empty values). */
static int jbytes(json_t *o, const char *name, uint8_t **out, size_t *len)
{
    json_t *j = json_object_get(o, name);
    const char *s;
    size_t sl;

    *out = NULL;
    *len = 0;
    if (j == NULL)
        return KM_OK;
    if (!json_is_string(j))
        return km__err(KM_E_IO, "etcd: a reply's %s is not a string", name);
    s = json_string_value(j);
    sl = json_string_length(j);
    if ((*out = malloc(sl / 4 * 3 + 1)) == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    if (km__b64_decode(s, sl, *out, sl / 4 * 3 + 1, len) != KM_OK) {
        free(*out);
        *out = NULL;
        return km__err(KM_E_IO, "etcd: a reply's %s is not base64", name);
    }
    return KM_OK;
}

/* An int64 member (the gateway writes them as strings); 0 when absent. */
static int64_t jint(json_t *o, const char *name)
{
    json_t *j = json_object_get(o, name);

    if (json_is_string(j))
        return strtoll(json_string_value(j), NULL, 10);
    if (json_is_integer(j))
        return (int64_t)json_integer_value(j);
    return 0;
}

static json_t *jrev(int64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%lld", (long long)v);
    return json_string(b);
}

/* ----------------------------------------------------------------- HTTP */

typedef struct rbuf {
    char *p;
    size_t n, cap;
} rbuf;

static size_t on_body(char *d, size_t sz, size_t nm, void *arg)
{
    rbuf *b = arg;
    size_t n = sz * nm;

    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static CURL *pool_get(etcd_store *s)
{
    CURL *c = NULL;

    pthread_mutex_lock(&s->pool_mu);
    if (s->n_pool > 0)
        c = s->pool[--s->n_pool];
    pthread_mutex_unlock(&s->pool_mu);
    return c != NULL ? c : curl_easy_init();
}

static void pool_put(etcd_store *s, CURL *c)
{
    pthread_mutex_lock(&s->pool_mu);
    if (s->n_pool < POOL_MAX) {
        s->pool[s->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->pool_mu);
    if (c != NULL)
        curl_easy_cleanup(c);
}

/* The options every request (and the watch) is made with. */
static void curl_setup(etcd_store *s, CURL *c, const char *ep, const char *api, char *url,
                       size_t cap)
{
    snprintf(url, cap, "%s://%s/v3/%s", s->tls_ca != NULL ? "https" : "http", ep, api);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s->tls_ca != NULL) {
        curl_easy_setopt(c, CURLOPT_CAINFO, s->tls_ca);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        if (s->tls_cert != NULL)
            curl_easy_setopt(c, CURLOPT_SSLCERT, s->tls_cert);
        if (s->tls_key != NULL)
            curl_easy_setopt(c, CURLOPT_SSLKEY, s->tls_key);
    }
}

/* An error reply of etcd (HTTP status != 200, body {"error","code",...}) as
 * a km code: the request-size and operation-count limits and a full database
 * are KM_E_FULL, a compare that cannot be made KM_E_INVALID, the rest KM_E_IO. */
static int etcd_reply_err(const char *api, long status, json_t *r, int *retry)
{
    const char *msg = json_string_value(json_object_get(r, "message"));
    long code = (long)jint(r, "code");

    if (msg == NULL)
        msg = json_string_value(json_object_get(r, "error"));
    if (msg == NULL)
        msg = "no message";
    *retry = code == 14 /* UNAVAILABLE: no leader, stopping */ || status == 503;
    if (strstr(msg, "too many operations") != NULL)
        return km__err_native(KM_E_FULL, KM_NATIVE_NONE, (unsigned long)code,
                              "etcd refused the vault transaction: %s (one commit is one etcd "
                              "Txn: raise the cluster's --max-txn-ops, %u by default)",
                              msg, ETCD_TXN_OPS_MAX);
    if (strstr(msg, "too large") != NULL || strstr(msg, "space exceeded") != NULL)
        return km__err_native(KM_E_FULL, KM_NATIVE_NONE, (unsigned long)code,
                              "etcd refused the vault transaction: %s (--max-request-bytes, "
                              "1.5 MiB by default; --quota-backend-bytes, 2 GiB by default)",
                              msg);
    return km__err_native(KM_E_IO, KM_NATIVE_NONE, (unsigned long)code,
                          "etcd %s failed (HTTP %ld): %s", api, status, msg);
}

/* POSTs `req` (consumed) to /v3/<api>, trying each member in turn, and
 * gives the parsed reply. KM_E_IO (no member answered; the members' errors
 * in the message), KM_E_FULL (a limit of etcd), KM_E_NOMEM. */
static int etcd_call(etcd_store *s, const char *api, json_t *req, json_t **out)
{
    char url[600], why[512] = "";
    char *body = json_dumps(req, JSON_COMPACT);
    size_t body_len, i, first, n = s->n_eps;
    int64_t deadline;
    long wait = 50;
    int rc = KM_E_IO;

    json_decref(req);
    *out = NULL;
    if (body == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    body_len = strlen(body);
    /* etcd counts the binary request: base64 is 4/3 of it */
    if (body_len / 4 * 3 > ETCD_REQ_MAX) {
        free(body);
        return km__err(KM_E_FULL, "etcd refuses requests above 1.5 MiB (--max-request-bytes): "
                                  "this vault transaction is about %zu KiB",
                                  body_len / 4 * 3 / 1024);
    }
    first = atomic_load(&s->cur) % n;
    deadline = mono_ms() + RETRY_MS;
    for (i = 0;; i++) {
        size_t e = (first + i) % n, wl;
        CURL *c;
        rbuf b = { NULL, 0, 0 };
        CURLcode cc;
        long status = 0;
        json_t *r;
        int retry = 0;

        if (i > 0 && i % n == 0) {
            /* every member failed with something that passes (an election,
             * a member restarting): again, until the deadline */
            if (mono_ms() + wait > deadline)
                break;
            sleep_ms(wait);
            wait *= 2;
            why[0] = '\0';
        }
        wl = strlen(why);
        if ((c = pool_get(s)) == NULL) {
            rc = km__err(KM_E_NOMEM, "vault: out of memory");
            break;
        }
        curl_setup(s, c, s->eps[e], api, url, sizeof url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)REQ_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        pool_put(s, c);
        if (cc != CURLE_OK) {
            snprintf(why + wl, sizeof why - wl, "%s%s: %s", wl ? "; " : "", s->eps[e],
                     curl_easy_strerror(cc));
            free(b.p);
            continue;
        }
        r = b.p != NULL ? json_loads(b.p, 0, NULL) : NULL;
        free(b.p);
        if (r == NULL) {
            snprintf(why + wl, sizeof why - wl, "%s%s: HTTP %ld, not JSON", wl ? "; " : "",
                     s->eps[e], status);
            continue;
        }
        if (status == 200) {
            atomic_store(&s->cur, e);
            free(body);
            *out = r;
            return KM_OK;
        }
        rc = etcd_reply_err(api, status, r, &retry);
        json_decref(r);
        if (!retry) {
            free(body);
            return rc;
        }
        snprintf(why + wl, sizeof why - wl, "%s%s: %s", wl ? "; " : "", s->eps[e],
                 km_error_last()->message);
    }
    free(body);
    if (rc == KM_E_NOMEM)
        return rc;
    return km__err(KM_E_IO, "etcd: no member of the cluster could serve the vault (no quorum "
                            "or unreachable): %s", why);
}

/* ----------------------------------------------------------------- keys */

/* "/PREFIX/t/<table>/" (tbl >= 0) or "/PREFIX/<name>" into out, plus the
 * record key when given; the length. out holds pfx_len + 32 + KM__STORE_KEY_MAX. */
static size_t ekey(const etcd_store *s, km__table tbl, const uint8_t *key, size_t klen,
                   uint8_t *out)
{
    size_t off = s->pfx_len, n = strlen(km__table_name(tbl));

    memcpy(out, s->pfx, off);
    memcpy(out + off, "t/", 2);
    off += 2;
    memcpy(out + off, km__table_name(tbl), n);
    off += n;
    out[off++] = '/';
    if (klen > 0)
        memcpy(out + off, key, klen);
    return off + klen;
}

#define EKEY_CAP(s) ((s)->pfx_len + 32 + KM__STORE_KEY_MAX)

static json_t *jname(const etcd_store *s, const char *name)
{
    char b[4200];
    size_t n = (size_t)snprintf(b, sizeof b, "%s%s", s->pfx, name);
    return jb64((const uint8_t *)b, n);
}

/* The end of the range of keys starting with p (the prefix with its last
 * byte below 0xff increased). */
static json_t *jrange_end(const uint8_t *p, size_t n)
{
    uint8_t b[4200 + KM__STORE_KEY_MAX];

    memcpy(b, p, n);
    while (n > 0 && b[n - 1] == 0xff)
        n--;
    if (n == 0)
        return jb64((const uint8_t *)"\0", 1); /* all keys */
    b[n - 1]++;
    return jb64(b, n);
}

/* --------------------------------------------------------- transactions */

static int held_copy(etcd_txn *t, const uint8_t *p, size_t n, const uint8_t **out)
{
    held *h = malloc(sizeof *h + (n ? n : 1));

    if (h == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    memcpy(h->data, p, n);
    h->len = n;
    h->next = t->held;
    t->held = h;
    *out = h->data;
    return KM_OK;
}

static void txn_free(etcd_txn *t)
{
    size_t i;

    while (t->held != NULL) {
        held *h = t->held;
        t->held = h->next;
        free(h);
    }
    for (i = 0; i < t->n_ops; i++) {
        free(t->ops[i].key);
        free(t->ops[i].val);
    }
    free(t->ops);
    t->ops = NULL;
    t->n_ops = t->cap_ops = 0;
}

static int fork_check(etcd_store *s)
{
    if (s->fork_gen != atomic_load(&km__fork_gen))
        return km__err(KM_E_FORK, "etcd vault handle used in a forked child; open the vault "
                                  "again there");
    return KM_OK;
}

/* A range at a revision already committed (rev > 0) is read from one
 * member's store without a quorum round (serializable): the member that
 * gave the revision has applied it; another one may not have yet ("future
 * revision"), and is then asked again for a linearizable read. rev 0: a
 * linearizable read of the latest revision. Consumes req. */
static int range_call(etcd_store *s, json_t *req, int64_t rev, json_t **reply)
{
    int rc;

    if (rev <= 0)
        return etcd_call(s, "kv/range", req, reply);
    json_object_set_new(req, "revision", jrev(rev));
    json_object_set_new(req, "serializable", json_true());
    json_incref(req);
    rc = etcd_call(s, "kv/range", req, reply);
    if (rc == KM_E_IO && strstr(km_error_last()->message, "future revision") != NULL) {
        json_object_del(req, "serializable");
        return etcd_call(s, "kv/range", req, reply);
    }
    json_decref(req);
    return rc;
}

/* A range of one key: its reply (caller frees); *kv the key's kv or NULL. */
static int range_one(etcd_store *s, json_t *key, int64_t rev, json_t **reply, json_t **kv)
{
    json_t *req = json_object();
    int rc;

    *kv = NULL;
    json_object_set_new(req, "key", key);
    if ((rc = range_call(s, req, rev, reply)) != KM_OK)
        return rc;
    *kv = json_array_get(json_object_get(*reply, "kvs"), 0);
    return KM_OK;
}

/* Renews the lease (one keepalive): 1 when it is still alive. */
static int lease_keepalive(etcd_store *s)
{
    json_t *req = json_object(), *r;
    int alive;

    json_object_set_new(req, "ID", jrev(s->lease));
    if (etcd_call(s, "lease/keepalive", req, &r) != KM_OK)
        return 0;
    alive = jint(json_object_get(r, "result"), "TTL") > 0;
    json_decref(r);
    if (alive)
        s->lease_ms = mono_ms();
    return alive;
}

/* Inside a write transaction: keeps the lock's lease alive while the
 * transaction runs longer than a third of it (a failure shows at the
 * commit's fence). */
static void lease_touch(km__txn *kt)
{
    etcd_store *s = st_of(kt->st);

    if (kt->write && s->lease != 0 && mono_ms() - s->lease_ms > LOCK_TTL_S * 1000 / 3)
        (void)lease_keepalive(s);
}

/* A lease for the lock key with at least two thirds of LOCK_TTL_S left:
 * the one of the last transaction, renewed, or a new one. */
static int lease_ensure(etcd_store *s)
{
    json_t *req, *r;
    int64_t age = mono_ms() - s->lease_ms;
    int rc;

    if (s->lease != 0 && age < LOCK_TTL_S * 1000 / 3)
        return KM_OK;
    if (s->lease != 0 && age < LOCK_TTL_S * 1000 - 500 && lease_keepalive(s))
        return KM_OK;
    req = json_object();
    json_object_set_new(req, "TTL", jrev(LOCK_TTL_S));
    if ((rc = etcd_call(s, "lease/grant", req, &r)) != KM_OK)
        return rc;
    s->lease = jint(r, "ID");
    s->lease_ms = mono_ms();
    json_decref(r);
    return s->lease != 0 ? KM_OK : km__err(KM_E_IO, "etcd granted no lease for the vault lock");
}

/* One try at the writer lock: 1 taken (t->lock_rev, t->rev, t->vrev_mod
 * set), 0 held by someone else, or an error. */
static int lock_try(etcd_store *s, etcd_txn *t)
{
    json_t *req = json_object(), *cmp = json_object(), *put = json_object(), *rng = json_object();
    json_t *r, *resp, *kv;
    int rc, ok;

    json_object_set_new(cmp, "target", json_string("CREATE"));
    json_object_set_new(cmp, "result", json_string("EQUAL"));
    json_object_set_new(cmp, "key", jname(s, "lock"));
    json_object_set_new(cmp, "create_revision", jrev(0));
    json_object_set_new(put, "key", jname(s, "lock"));
    json_object_set_new(put, "value", jb64(s->owner, sizeof s->owner));
    json_object_set_new(put, "lease", jrev(s->lease));
    json_object_set_new(rng, "key", jname(s, "rev"));
    json_object_set_new(req, "compare", json_pack("[o]", cmp));
    json_object_set_new(req, "success",
                        json_pack("[{s:o},{s:o}]", "request_put", put, "request_range", rng));
    rng = json_object();
    json_object_set_new(rng, "key", jname(s, "lock"));
    json_object_set_new(req, "failure", json_pack("[{s:o}]", "request_range", rng));
    if ((rc = etcd_call(s, "kv/txn", req, &r)) != KM_OK)
        return rc;
    ok = json_is_true(json_object_get(r, "succeeded"));
    resp = json_array_get(json_object_get(r, "responses"), ok ? 1 : 0);
    kv = json_array_get(json_object_get(json_object_get(resp, "response_range"), "kvs"), 0);
    if (ok) {
        t->lock_rev = t->rev = jint(json_object_get(r, "header"), "revision");
        t->vrev_mod = jint(kv, "mod_revision");
    } else if (kv != NULL) {
        /* our own lock, taken by a try whose reply was lost: still ours */
        uint8_t *v;
        size_t vl;
        if (jbytes(kv, "value", &v, &vl) == KM_OK && vl == sizeof s->owner
            && memcmp(v, s->owner, vl) == 0) {
            /* the snapshot must include everything before it: read "rev" now */
            json_t *r2, *kv2;
            t->lock_rev = jint(kv, "create_revision");
            if ((rc = range_one(s, jname(s, "rev"), 0, &r2, &kv2)) == KM_OK) {
                t->rev = jint(json_object_get(r2, "header"), "revision");
                t->vrev_mod = jint(kv2, "mod_revision");
                ok = 1;
                json_decref(r2);
            }
        }
        free(v);
    }
    json_decref(r);
    return rc != KM_OK ? rc : ok;
}

static int etcd_txn_begin(km__store *st, int write, km__txn *kt)
{
    etcd_store *s = st_of(st);
    etcd_txn *t = tx_of(kt);
    json_t *r, *kv;
    int64_t deadline;
    long wait = 1;
    int rc;

    if ((rc = fork_check(s)) != KM_OK)
        return rc;
    if (!write) {
        if ((rc = range_one(s, jname(s, "rev"), 0, &r, &kv)) != KM_OK)
            return rc;
        t->rev = jint(json_object_get(r, "header"), "revision");
        json_decref(r);
        return KM_OK;
    }
    pthread_mutex_lock(&s->wmu);
    deadline = mono_ms() + LOCK_WAIT_MS;
    for (;;) {
        if ((rc = lease_ensure(s)) != KM_OK)
            break;
        rc = lock_try(s, t);
        if (rc == 1) {
            rc = KM_OK;
            break;
        }
        if (rc == KM_E_IO && strstr(km_error_last()->message, "lease not found") != NULL) {
            s->lease = 0;   /* expired meanwhile: a new one */
            continue;
        }
        if (rc != 0)
            break;
        if (mono_ms() > deadline) {
            rc = km__err(KM_E_BUSY, "another writer has held the vault's etcd lock for over "
                                    "%d s", LOCK_WAIT_MS / 1000);
            break;
        }
        /* held: wait with reads (a failed lock Txn is still a Raft write)
         * until the lock key is gone, then try again */
        do {
            json_t *lr, *lkv;
            sleep_ms(wait);
            if (wait < 20)
                wait *= 2;
            if ((rc = range_one(s, jname(s, "lock"), 0, &lr, &lkv)) != KM_OK)
                break;
            rc = lkv != NULL;
            json_decref(lr);
        } while (rc == 1 && mono_ms() <= deadline);
        if (rc < 0)
            break;
    }
    if (rc != KM_OK)
        pthread_mutex_unlock(&s->wmu);
    return rc;
}

/* Releases the lock when it is still ours (errors ignored: the lease ends it). */
static void lock_release(etcd_store *s, etcd_txn *t)
{
    json_t *req = json_object(), *cmp = json_object(), *del = json_object(), *r = NULL;

    json_object_set_new(cmp, "target", json_string("CREATE"));
    json_object_set_new(cmp, "result", json_string("EQUAL"));
    json_object_set_new(cmp, "key", jname(s, "lock"));
    json_object_set_new(cmp, "create_revision", jrev(t->lock_rev));
    json_object_set_new(del, "key", jname(s, "lock"));
    json_object_set_new(req, "compare", json_pack("[o]", cmp));
    json_object_set_new(req, "success", json_pack("[{s:o}]", "request_delete_range", del));
    if (etcd_call(s, "kv/txn", req, &r) == KM_OK)
        json_decref(r);
}

static void etcd_txn_abort(km__txn *kt)
{
    etcd_txn *t = tx_of(kt);
    etcd_store *s = st_of(kt->st);

    if (kt->write) {
        lock_release(s, t);
        pthread_mutex_unlock(&s->wmu);
    }
    txn_free(t);
}

/* Calls fn for every key of table tbl at the snapshot revision, paged. */
typedef int (*kv_fn)(json_t *kv, void *arg);

static int range_each(etcd_store *s, etcd_txn *t, km__table tbl, const uint8_t *prefix,
                      size_t prefix_len, int keys_only, kv_fn fn, void *arg)
{
    uint8_t *k = malloc(EKEY_CAP(s) + 1);
    size_t klen;
    json_t *end;
    int rc = KM_OK;

    if (k == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    klen = ekey(s, tbl, prefix, prefix_len, k);
    end = jrange_end(k, klen);
    for (;;) {
        json_t *req = json_object(), *r, *kvs;
        size_t i;
        int more;

        json_object_set_new(req, "key", jb64(k, klen));
        json_object_set(req, "range_end", end);
        json_object_set_new(req, "limit", jrev(PAGE));
        if (keys_only)
            json_object_set_new(req, "keys_only", json_true());
        if ((rc = range_call(s, req, t->rev, &r)) != KM_OK)
            break;
        kvs = json_object_get(r, "kvs");
        for (i = 0; rc == KM_OK && i < json_array_size(kvs); i++)
            rc = fn(json_array_get(kvs, i), arg);
        more = json_is_true(json_object_get(r, "more")) && json_array_size(kvs) > 0;
        if (rc == KM_OK && more) {
            /* the next page starts just after the last key */
            uint8_t *lk;
            size_t ll;
            if ((rc = jbytes(json_array_get(kvs, json_array_size(kvs) - 1), "key", &lk, &ll))
                == KM_OK) {
                if (ll + 1 > EKEY_CAP(s) + 1) {
                    rc = km__err(KM_E_IO, "etcd: a key of the vault's range is too long");
                } else {
                    memcpy(k, lk, ll);
                    k[ll] = 0;
                    klen = ll + 1;
                }
                free(lk);
            }
        }
        json_decref(r);
        if (rc != KM_OK || !more)
            break;
    }
    json_decref(end);
    free(k);
    return rc;
}

static int kcmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n > 0 ? memcmp(a, b, n) : 0;   /* a or b may be NULL when empty */
    return c != 0 ? c : (al > bl) - (al < bl);
}

static int opcmp(km__table tbl, const uint8_t *k, size_t kl, const wop *o)
{
    if (tbl != o->tbl)
        return tbl < o->tbl ? -1 : 1;
    return kcmp(k, kl, o->key, o->klen);
}

/* The index of (tbl, key) in t->ops, or where it would go (*found 0). */
static size_t op_find(etcd_txn *t, km__table tbl, const uint8_t *k, size_t kl, int *found)
{
    size_t lo = 0, hi = t->n_ops;

    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = opcmp(tbl, k, kl, &t->ops[mid]);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int op_set(etcd_txn *t, km__table tbl, const uint8_t *k, size_t kl, const uint8_t *v,
                  size_t vl, int del)
{
    int found;
    size_t i = op_find(t, tbl, k, kl, &found);
    uint8_t *nv = NULL;

    if (!del) {
        if ((nv = malloc(vl ? vl : 1)) == NULL)
            return km__err(KM_E_NOMEM, "vault: out of memory");
        memcpy(nv, v, vl);
    }
    if (found) {
        free(t->ops[i].val);
        t->ops[i].val = nv;
        t->ops[i].vlen = vl;
        return KM_OK;
    }
    if (t->n_ops == t->cap_ops) {
        size_t cap = t->cap_ops ? t->cap_ops * 2 : 16;
        wop *p = realloc(t->ops, cap * sizeof *p);
        if (p == NULL) {
            free(nv);
            return km__err(KM_E_NOMEM, "vault: out of memory");
        }
        t->ops = p;
        t->cap_ops = cap;
    }
    memmove(t->ops + i + 1, t->ops + i, (t->n_ops - i) * sizeof *t->ops);
    t->ops[i].tbl = tbl;
    t->ops[i].key = malloc(kl);
    if (t->ops[i].key == NULL) {
        memmove(t->ops + i, t->ops + i + 1, (t->n_ops - i) * sizeof *t->ops);
        free(nv);
        return km__err(KM_E_NOMEM, "vault: out of memory");
    }
    memcpy(t->ops[i].key, k, kl);
    t->ops[i].klen = kl;
    t->ops[i].val = nv;
    t->ops[i].vlen = vl;
    t->n_ops++;
    return KM_OK;
}

/* The snapshot's value of a record (not the buffered writes). */
static int snap_get(etcd_store *s, etcd_txn *t, km__table tbl, const uint8_t *key,
                    size_t key_len, const uint8_t **val, size_t *val_len)
{
    uint8_t k[4200 + 32 + KM__STORE_KEY_MAX];
    json_t *r, *kv;
    uint8_t *v;
    size_t vl;
    int rc;

    if (t->cleared[tbl])
        return KM_E_NOTFOUND;
    if ((rc = range_one(s, jb64(k, ekey(s, tbl, key, key_len, k)), t->rev, &r, &kv)) != KM_OK)
        return rc;
    if (kv == NULL) {
        json_decref(r);
        return KM_E_NOTFOUND;
    }
    rc = jbytes(kv, "value", &v, &vl);
    json_decref(r);
    if (rc != KM_OK)
        return rc;
    rc = held_copy(t, v, vl, val);
    *val_len = vl;
    free(v);
    return rc;
}

static int etcd_get(km__txn *kt, km__table tbl, const uint8_t *key, size_t key_len,
                    const uint8_t **val, size_t *val_len)
{
    etcd_txn *t = tx_of(kt);
    int found;
    size_t i;

    lease_touch(kt);
    if (kt->write) {
        i = op_find(t, tbl, key, key_len, &found);
        if (found) {
            if (t->ops[i].val == NULL)
                return KM_E_NOTFOUND;
            *val = t->ops[i].val;
            *val_len = t->ops[i].vlen;
            return KM_OK;
        }
    }
    return snap_get(st_of(kt->st), t, tbl, key, key_len, val, val_len);
}

static int etcd_put(km__txn *kt, km__table tbl, const uint8_t *key, size_t key_len,
                    const uint8_t *val, size_t val_len, unsigned flags)
{
    const uint8_t *v;
    size_t vl;
    int rc;

    if (val_len > ETCD_REQ_MAX - 64 * 1024)
        return km__err(KM_E_FULL, "etcd refuses a value of %zu KiB: its requests are at most "
                                  "1.5 MiB (--max-request-bytes)", val_len / 1024);
    if (flags & KM__PUT_NOOVERWRITE) {
        rc = etcd_get(kt, tbl, key, key_len, &v, &vl);
        if (rc == KM_OK)
            return KM_E_EXISTS;
        if (rc != KM_E_NOTFOUND)
            return rc;
    }
    return op_set(tx_of(kt), tbl, key, key_len, val, val_len, 0);
}

static int etcd_del(km__txn *kt, km__table tbl, const uint8_t *key, size_t key_len)
{
    const uint8_t *v;
    size_t vl;
    int rc = etcd_get(kt, tbl, key, key_len, &v, &vl);

    if (rc != KM_OK)
        return rc;
    return op_set(tx_of(kt), tbl, key, key_len, NULL, 0, 1);
}

/* iteration: the snapshot's records merged with the buffered writes */
typedef struct iter_arg {
    etcd_store *s;
    km__table tbl;
    wop *b;                   /* a copy of the buffered writes of the range */
    size_t nb, bi;
    size_t skip;              /* the table's key prefix length in etcd */
    km__rec_fn fn;
    void *arg;
    int stop;                 /* fn's non-zero return */
} iter_arg;

static int emit(iter_arg *a, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    int r = a->fn(k, kl, v, vl, a->arg);
    if (r != 0) {
        a->stop = r;
        return 1;
    }
    return 0;
}

/* Emits the buffered writes before key k (all of them when k is NULL);
 * 1 when fn stopped, -1 when the next one is k itself. */
static int emit_buffered(iter_arg *a, const uint8_t *k, size_t kl)
{
    while (a->bi < a->nb) {
        wop *o = &a->b[a->bi];
        int c = k == NULL ? -1 : kcmp(o->key, o->klen, k, kl);
        if (c > 0)
            return 0;
        if (c == 0)
            return -1;
        a->bi++;
        if (o->val != NULL && emit(a, o->key, o->klen, o->val, o->vlen))
            return 1;
    }
    return 0;
}

static int iter_kv(json_t *kv, void *arg)
{
    iter_arg *a = arg;
    uint8_t *k = NULL, *v = NULL;
    size_t kl, vl;
    int rc, e;

    if ((rc = jbytes(kv, "key", &k, &kl)) != KM_OK || (rc = jbytes(kv, "value", &v, &vl)) != KM_OK)
        goto done;
    if (kl <= a->skip) {
        rc = km__err(KM_E_IO, "etcd: a key outside the table in its range");
        goto done;
    }
    e = emit_buffered(a, k + a->skip, kl - a->skip);
    if (e == 1) {
        rc = 1;
    } else if (e == -1) {
        wop *o = &a->b[a->bi++];
        if (o->val != NULL && emit(a, o->key, o->klen, o->val, o->vlen))
            rc = 1;
    } else if (emit(a, k + a->skip, kl - a->skip, v, vl)) {
        rc = 1;
    }
done:
    free(k);
    free(v);
    return rc;
}

static int etcd_iter(km__txn *kt, km__table tbl, const uint8_t *prefix, size_t prefix_len,
                     km__rec_fn fn, void *arg)
{
    etcd_txn *t = tx_of(kt);
    etcd_store *s = st_of(kt->st);
    iter_arg a = { s, tbl, NULL, 0, 0, 0, fn, arg, 0 };
    size_t i, j;
    int rc = KM_OK, found;

    lease_touch(kt);
    a.skip = ekey(s, tbl, NULL, 0, (uint8_t[4200 + 32]){ 0 });
    /* fn may rewrite the current key: iterate over a copy of the buffer */
    i = op_find(t, tbl, prefix, prefix_len, &found);
    for (j = i; j < t->n_ops && t->ops[j].tbl == tbl && t->ops[j].klen >= prefix_len
                && (prefix_len == 0 || memcmp(t->ops[j].key, prefix, prefix_len) == 0);
         j++) {
    }
    if (j > i) {
        if ((a.b = calloc(j - i, sizeof *a.b)) == NULL)
            return km__err(KM_E_NOMEM, "vault: out of memory");
        for (a.nb = 0; a.nb < j - i; a.nb++) {
            wop *o = &t->ops[i + a.nb];
            a.b[a.nb] = *o;
            a.b[a.nb].key = malloc(o->klen);
            a.b[a.nb].val = o->val != NULL ? malloc(o->vlen ? o->vlen : 1) : NULL;
            if (a.b[a.nb].key == NULL || (o->val != NULL && a.b[a.nb].val == NULL)) {
                a.nb++;
                rc = km__err(KM_E_NOMEM, "vault: out of memory");
                break;
            }
            memcpy(a.b[a.nb].key, o->key, o->klen);
            if (o->val != NULL)
                memcpy(a.b[a.nb].val, o->val, o->vlen);
        }
    }
    if (rc == KM_OK && !t->cleared[tbl])
        rc = range_each(s, t, tbl, prefix, prefix_len, 0, iter_kv, &a);
    if (rc == KM_OK && emit_buffered(&a, NULL, 0) == 1)
        rc = 1;
    for (i = 0; i < a.nb; i++) {
        free(a.b[i].key);
        free(a.b[i].val);
    }
    free(a.b);
    if (rc == 1)
        return a.stop;
    return rc;
}

static int etcd_clear(km__txn *kt, km__table tbl)
{
    etcd_txn *t = tx_of(kt);
    size_t i, j;

    for (i = 0; i < t->n_ops && t->ops[i].tbl < tbl; i++) {
    }
    for (j = i; j < t->n_ops && t->ops[j].tbl == tbl; j++) {
        free(t->ops[j].key);
        free(t->ops[j].val);
    }
    memmove(t->ops + i, t->ops + j, (t->n_ops - j) * sizeof *t->ops);
    t->n_ops -= j - i;
    t->cleared[tbl] = 1;
    return KM_OK;
}

static int count_one(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *arg)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ++*(uint64_t *)arg;
    return 0;
}

static int etcd_count(km__txn *kt, km__table tbl, uint64_t *out)
{
    etcd_txn *t = tx_of(kt);
    etcd_store *s = st_of(kt->st);
    uint8_t k[4200 + 32];
    size_t kl;
    json_t *req, *r;
    int rc;

    *out = 0;
    if (kt->write && (t->n_ops > 0 || t->cleared[tbl]))
        return etcd_iter(kt, tbl, NULL, 0, count_one, out);
    kl = ekey(s, tbl, NULL, 0, k);
    req = json_object();
    json_object_set_new(req, "key", jb64(k, kl));
    json_object_set_new(req, "range_end", jrange_end(k, kl));
    json_object_set_new(req, "count_only", json_true());
    if ((rc = range_call(s, req, t->rev, &r)) != KM_OK)
        return rc;
    *out = (uint64_t)jint(r, "count");
    json_decref(r);
    return KM_OK;
}

/* The deletes of a cleared table: every record of the snapshot not written
 * again (etcd refuses a Txn whose delete range covers one of its puts). */
typedef struct clear_arg {
    etcd_txn *t;
    km__table tbl;
    size_t skip;
    json_t *ops;
} clear_arg;

static int clear_kv(json_t *kv, void *arg)
{
    clear_arg *a = arg;
    uint8_t *k;
    size_t kl;
    int found, rc;

    if ((rc = jbytes(kv, "key", &k, &kl)) != KM_OK)
        return rc;
    if (kl > a->skip)
        (void)op_find(a->t, a->tbl, k + a->skip, kl - a->skip, &found);
    else
        found = 0;
    if (!found)
        json_array_append_new(a->ops, json_pack("{s:{s:o}}", "request_delete_range", "key",
                                                jb64(k, kl)));
    free(k);
    return KM_OK;
}

static json_t *jcompare(const char *target, json_t *key, const char *field, int64_t v)
{
    json_t *c = json_object();

    json_object_set_new(c, "target", json_string(target));
    json_object_set_new(c, "result", json_string("EQUAL"));
    json_object_set_new(c, "key", key);
    json_object_set_new(c, field, jrev(v));
    return c;
}

static int etcd_txn_commit(km__txn *kt)
{
    etcd_txn *t = tx_of(kt);
    etcd_store *s = st_of(kt->st);
    uint8_t k[4200 + 32 + KM__STORE_KEY_MAX], token[24];
    json_t *ops = json_array(), *req, *r = NULL, *kv;
    size_t i;
    int rc = KM_OK, any = 0;

    if (!kt->write) {
        txn_free(t);
        return KM_OK;
    }
    lease_touch(kt);
    for (i = 0; i < KM__T__COUNT && rc == KM_OK; i++) {
        if (!t->cleared[i])
            continue;
        any = 1;
        {
            clear_arg a = { t, (km__table)i, 0, ops };
            a.skip = ekey(s, (km__table)i, NULL, 0, k);
            rc = range_each(s, t, (km__table)i, NULL, 0, 1, clear_kv, &a);
        }
    }
    for (i = 0; i < t->n_ops && rc == KM_OK; i++) {
        wop *o = &t->ops[i];
        json_t *key = jb64(k, ekey(s, o->tbl, o->key, o->klen, k));
        any = 1;
        if (o->val != NULL)
            json_array_append_new(ops, json_pack("{s:{s:o,s:o}}", "request_put", "key", key,
                                                 "value", jb64(o->val, o->vlen)));
        else
            json_array_append_new(ops, json_pack("{s:{s:o}}", "request_delete_range", "key",
                                                 key));
    }
    if (rc != KM_OK || !any) {
        json_decref(ops);
        etcd_txn_abort(kt);
        return rc;
    }
    /* the commit token in "rev": tells a commit whose reply was lost */
    memcpy(token, s->owner, 16);
    s->commits++;
    for (i = 0; i < 8; i++)
        token[16 + i] = (uint8_t)(s->commits >> (56 - 8 * i));
    json_array_append_new(ops, json_pack("{s:{s:o,s:o}}", "request_put", "key", jname(s, "rev"),
                                         "value", jb64(token, sizeof token)));
    json_array_append_new(ops, json_pack("{s:{s:o}}", "request_delete_range", "key",
                                         jname(s, "lock")));
    req = json_object();
    json_object_set_new(req, "compare",
                        json_pack("[o,o]", jcompare("CREATE", jname(s, "lock"), "create_revision",
                                                    t->lock_rev),
                                  jcompare("MOD", jname(s, "rev"), "mod_revision", t->vrev_mod)));
    json_object_set_new(req, "success", ops);
    rc = etcd_call(s, "kv/txn", req, &r);
    if (rc == KM_OK && !json_is_true(json_object_get(r, "succeeded"))) {
        /* the fence failed: was it our own commit, retried after a lost reply? */
        json_t *r2 = NULL;
        uint8_t *v = NULL;
        size_t vl = 0;
        rc = range_one(s, jname(s, "rev"), 0, &r2, &kv);
        if (rc == KM_OK && (rc = jbytes(kv, "value", &v, &vl)) == KM_OK
            && !(vl == sizeof token && memcmp(v, token, vl) == 0))
            rc = km__err(KM_E_BUSY, "the vault's etcd write lock was lost before the commit "
                                    "(its %d s lease ended): nothing was written; retry",
                         LOCK_TTL_S);
        free(v);
        json_decref(r2);
    }
    json_decref(r);
    if (rc != KM_OK)
        lock_release(s, t);
    pthread_mutex_unlock(&s->wmu);
    txn_free(t);
    return rc;
}

/* ------------------------------------------------------------ the watch */

typedef struct watch_buf {
    etcd_store *s;
    rbuf b;
    int64_t last_rev;         /* the last revision seen: the restart point */
    int failed;               /* the stream must be started again */
} watch_buf;

static void watch_line(watch_buf *w, const char *line)
{
    json_t *j = json_loads(line, 0, NULL), *res, *evs;
    size_t i;
    int bump = 0;

    if (j == NULL)
        return;
    res = json_object_get(j, "result");
    if (json_is_true(json_object_get(res, "canceled"))) {
        /* compacted past where it would restart: start from now, and let
         * every cache re-read (it may have missed changes) */
        w->last_rev = 0;
        w->failed = 1;
        atomic_fetch_add_explicit(&km__store_changes, 1, memory_order_release);
        json_decref(j);
        return;
    }
    if (json_is_true(json_object_get(res, "created"))) {
        int64_t hr = jint(json_object_get(res, "header"), "revision");
        if (w->last_rev == 0)
            w->last_rev = hr;   /* a restart point when nothing changes */
        atomic_store(&w->s->watch_up, 1);
    }
    evs = json_object_get(res, "events");
    for (i = 0; i < json_array_size(evs); i++) {
        json_t *kv = json_object_get(json_array_get(evs, i), "kv");
        uint8_t *k;
        size_t kl;
        int64_t mr = jint(kv, "mod_revision");
        if (mr > w->last_rev)
            w->last_rev = mr;
        if (jbytes(kv, "key", &k, &kl) != KM_OK)
            continue;
        /* audit entries and counter blocks change nothing a cache holds */
        {
            uint8_t a[4200 + 32], c[4200 + 32];
            size_t al = ekey(w->s, KM__T_AUDIT, NULL, 0, a);
            size_t cl = ekey(w->s, KM__T_COUNTERS, NULL, 0, c);
            if (!((kl >= al && memcmp(k, a, al) == 0) || (kl >= cl && memcmp(k, c, cl) == 0)))
                bump = 1;
        }
        free(k);
    }
    if (bump)
        atomic_fetch_add_explicit(&km__store_changes, 1, memory_order_release);
    json_decref(j);
}

static size_t on_watch(char *d, size_t sz, size_t nm, void *arg)
{
    watch_buf *w = arg;
    size_t n = sz * nm;
    char *nl;

    if (on_body(d, sz, nm, &w->b) != n)
        return 0;
    w->s->watch_mem = w->b.p;
    while ((nl = memchr(w->b.p, '\n', w->b.n)) != NULL) {
        *nl = '\0';
        watch_line(w, w->b.p);
        w->b.n -= (size_t)(nl + 1 - w->b.p);
        memmove(w->b.p, nl + 1, w->b.n + 1);
    }
    return w->failed ? 0 : n;   /* 0 ends the transfer */
}

static void *watch_main(void *arg)
{
    etcd_store *s = arg;
    watch_buf w = { s, { NULL, 0, 0 }, 0, 0 };
    size_t e = 0;

    while (!atomic_load(&s->stop)) {
        CURL *c = curl_easy_init();
        char url[600];
        uint8_t k[4200 + 32];
        size_t kl = (size_t)snprintf((char *)k, sizeof k, "%st/", s->pfx);
        json_t *req = json_object(), *cr = json_object();
        char *body;
        int running = 1;

        json_object_set_new(cr, "key", jb64(k, kl));
        json_object_set_new(cr, "range_end", jrange_end(k, kl));
        if (w.last_rev > 0)
            json_object_set_new(cr, "start_revision", jrev(w.last_rev + 1));
        json_object_set_new(req, "create_request", cr);
        w.failed = 0;
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        if (c == NULL || body == NULL) {
            curl_easy_cleanup(c);
            free(body);
            sleep_ms(WATCH_RETRY_MS);
            continue;
        }
        curl_setup(s, c, s->eps[e % s->n_eps], "watch", url, sizeof url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_watch);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
        w.b.n = 0;
        curl_multi_add_handle(s->wm, c);
        while (running && !atomic_load(&s->stop)) {
            if (curl_multi_perform(s->wm, &running) != CURLM_OK)
                break;
            if (running)
                curl_multi_poll(s->wm, NULL, 0, 1000, NULL);
        }
        atomic_store(&s->watch_up, 0);
        /* changes replayed from last_rev + 1 at the restart; a cache read
         * while the watch was down was refreshed by time (refresh_ms) */
        curl_multi_remove_handle(s->wm, c);
        curl_easy_cleanup(c);
        free(body);
        e++;   /* the stream ended: the next member */
        if (!atomic_load(&s->stop))
            sleep_ms(WATCH_RETRY_MS);
    }
    free(w.b.p);
    s->watch_mem = NULL;
    return NULL;
}

/* ------------------------------------------------------------ open/close */

static void store_free(etcd_store *s)
{
    size_t i;

    if (s->watching) {
        atomic_store(&s->stop, 1);
        curl_multi_wakeup(s->wm);
        pthread_join(s->watch_th, NULL);
    }
    if (s->wm != NULL)
        curl_multi_cleanup(s->wm);
    for (i = 0; i < s->n_pool; i++)
        curl_easy_cleanup(s->pool[i]);
    for (i = 0; i < s->n_eps; i++)
        free(s->eps[i]);
    curl_slist_free_all(s->hdrs);
    free(s->pfx);
    free(s->tls_ca);
    free(s->tls_cert);
    free(s->tls_key);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}

static void etcd_close(km__store *st)
{
    etcd_store *s = st_of(st);

    if (s->fork_gen != atomic_load(&km__fork_gen)) {
        /* a child: the watch thread is not there; leak rather than touch the
         * parent's curl state */
        return;
    }
    store_free(s);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_opt(const char *p)
{
    return p != NULL && p[0] != '\0' ? strdup(p) : NULL;
}

/* "HOST:PORT[,HOST:PORT...]/PREFIX" */
static int parse_location(etcd_store *s, const char *loc)
{
    const char *slash = strchr(loc, '/'), *p = loc, *q;
    size_t i, n;

    if (slash == NULL || slash == loc || slash[1] == '\0')
        return km__err(KM_E_INVALID, "etcd vault URI: expected etcd://HOST:PORT[,HOST:PORT...]/"
                                     "PREFIX");
    for (q = slash + 1; *q != '\0'; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')
              || strchr("._-/", *q) != NULL))
            return km__err(KM_E_INVALID, "etcd vault URI: the prefix may hold letters, digits "
                                         "and . _ - / only");
    while (p < slash) {
        q = memchr(p, ',', (size_t)(slash - p));
        n = (size_t)((q != NULL ? q : slash) - p);
        if (n == 0 || n > 255 || memchr(p, ':', n) == NULL)
            return km__err(KM_E_INVALID, "etcd vault URI: each member is HOST:PORT");
        if (s->n_eps == EP_MAX)
            return km__err(KM_E_INVALID, "etcd vault URI: at most %d members", EP_MAX);
        for (i = 0; i < n; i++)
            if (p[i] == '@' || p[i] == '?' || p[i] == '#' || p[i] == ' ')
                return km__err(KM_E_INVALID, "etcd vault URI: a member is HOST:PORT");
        if ((s->eps[s->n_eps] = strndup(p, n)) == NULL)
            return km__err(KM_E_NOMEM, "vault: out of memory");
        s->n_eps++;
        p += n + (q != NULL);
    }
    n = strlen(slash + 1);
    while (n > 0 && slash[n] == '/')
        n--;
    if ((s->pfx = malloc(n + 3)) == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    s->pfx[0] = '/';
    memcpy(s->pfx + 1, slash + 1, n);
    s->pfx[n + 1] = '/';
    s->pfx[n + 2] = '\0';
    s->pfx_len = n + 2;
    return KM_OK;
}

static int etcd_open(km__store **out, const char *location, const km_open_options *o)
{
    etcd_store *s;
    json_t *r, *kv;
    int rc;

    *out = NULL;
    (void)pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return km__err(KM_E_IO, "etcd: libcurl did not initialise: %s",
                       curl_easy_strerror(curl_init_rc));
    if ((s = calloc(1, sizeof *s)) == NULL)
        return km__err(KM_E_NOMEM, "vault: out of memory");
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    s->fork_gen = atomic_load(&km__fork_gen);
    if ((rc = parse_location(s, location)) != KM_OK)
        goto fail;
    if (o->version >= 4) {
        if ((o->tls_cert != NULL || o->tls_key != NULL) && o->tls_ca == NULL) {
            rc = km__err(KM_E_INVALID, "etcd: a client certificate needs tls_ca too");
            goto fail;
        }
        s->tls_ca = dup_opt(o->tls_ca);
        s->tls_cert = dup_opt(o->tls_cert);
        s->tls_key = dup_opt(o->tls_key);
    }
    s->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    s->hdrs = curl_slist_append(s->hdrs, "Grpc-Metadata-hasleader: true");
    s->hdrs = curl_slist_append(s->hdrs, "Expect:");
    if (s->hdrs == NULL || (rc = km__random(s->owner, sizeof s->owner)) != KM_OK) {
        rc = s->hdrs == NULL ? km__err(KM_E_NOMEM, "vault: out of memory") : rc;
        goto fail;
    }
    s->base.ops = &km__store_etcd;
    /* a first request: the cluster answers */
    if ((rc = range_one(s, jname(s, "rev"), 0, &r, &kv)) != KM_OK)
        goto fail;
    json_decref(r);
    if ((s->wm = curl_multi_init()) == NULL) {
        rc = km__err(KM_E_NOMEM, "vault: out of memory");
        goto fail;
    }
    if (pthread_create(&s->watch_th, NULL, watch_main, s) != 0) {
        rc = km__err(KM_E_IO, "etcd: cannot start the watch thread");
        goto fail;
    }
    s->watching = 1;
    *out = &s->base;
    return KM_OK;
fail:
    store_free(s);
    return rc;
}

/* The mod revision of "rev": grows with every commit of any process. */
static int etcd_gen(km__store *st, uint64_t *out)
{
    etcd_store *s = st_of(st);
    json_t *r, *kv;
    int rc;

    *out = 0;
    if ((rc = fork_check(s)) != KM_OK)
        return rc;
    if ((rc = range_one(s, jname(s, "rev"), 0, &r, &kv)) != KM_OK)
        return rc;
    *out = (uint64_t)jint(kv, "mod_revision");
    json_decref(r);
    return KM_OK;
}

int km__etcd_watching(km__store *st)
{
    return st != NULL && st->ops == &km__store_etcd && atomic_load(&st_of(st)->watch_up);
}

const km__store_ops km__store_etcd = {
    .version = KM__STORE_OPS_VERSION,
    .scheme = "etcd",
    .txn_size = sizeof(etcd_txn),
    .open = etcd_open,
    .close = etcd_close,
    .txn_begin = etcd_txn_begin,
    .txn_commit = etcd_txn_commit,
    .txn_abort = etcd_txn_abort,
    .get = etcd_get,
    .put = etcd_put,
    .del = etcd_del,
    .iter = etcd_iter,
    .clear = etcd_clear,
    .count = etcd_count,
    .gen = etcd_gen,
};
