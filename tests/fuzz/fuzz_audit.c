/* fuzz_audit.c - audit records and entries (src/core/audit_append.c: the record's
 * [BE32 length][entry] framing and entry_decode's TLV fields) through
 * km_audit_verify and km_audit_foreach (+ km_audit_entry_json of every entry
 * delivered). An entry is only decoded after its MAC checks, which a fuzzer
 * cannot forge; so the input gives entry bodies without their MAC, the target
 * appends to each a valid MAC under the fixture vault's audit key (as
 * audit.c does: HMAC-SHA-256 of the SHA-256 of the body), seals the result as
 * the vault's record of entry 1 and puts the original back after.
 * Input: ([BE32 length][entry body])..., trailing bytes kept as they are;
 * or, when its first byte is 0xA2, a batch record (layout 2, docs/FORMATS.md)
 * without its MAC, which the target appends (HMAC-SHA-256 of the SHA-256 of
 * the rest, as audit_append.c's batch_append does).
 * Promises checked: only documented codes, a failed verify names an entry
 * (bad_seq >= 1), JSON output is NUL-terminated and its size (with the NUL)
 * is what out_len says. */
#include "fuzz_common.h"
#include "core.h"

#define A_MAC_TAG 10      /* src/core/audit_append.c A_MAC */
#define REC_MAX 65536

static int each(const km_audit_entry *e, void *arg)
{
    char js[8192];
    size_t n = 0;
    int rc;
    (void)arg;
    rc = km_audit_entry_json(e, js, sizeof js, &n);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_BUFFER);
    if (rc == KM_OK)
        FUZZ_CHECK(n >= 1 && n <= sizeof js && js[n - 1] == '\0' && strlen(js) == n - 1);
    return 0;
}

static void put_record(const uint8_t *rec, size_t n)
{
    km__txn *t = NULL;
    uint8_t seq[8];
    km__be64_put(seq, 1);
    FUZZ_CHECK(km__txn_begin(fz.ctx->env, 1, &t) == KM_OK);
    FUZZ_CHECK(km__rec_put(t, fz.ctx->sealer, KM__T_AUDIT, seq, 8, rec, n, 0) == KM_OK);
    FUZZ_CHECK(km__txn_commit(t) == KM_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t rec[REC_MAX];
    km_secret *orig = NULL;
    km__mac *m = NULL;
    km__txn *t = NULL;
    uint8_t seq[8], hash[32], mac[32];
    uint64_t count = 0, bad = 0;
    size_t in = 0, out = 0;
    int rc;

    fz_setup();
    /* loads the audit key and checks the untouched log */
    FUZZ_CHECK(km_audit_verify(fz.ctx, NULL, &count, &bad) == KM_OK);
    pthread_mutex_lock(&fz.ctx->audit.kmu);
    FUZZ_CHECK(fz.ctx->audit.key != NULL);
    FUZZ_CHECK(km__mac_new(&m, km_secret_data(fz.ctx->audit.key), 32) == KM_OK);
    pthread_mutex_unlock(&fz.ctx->audit.kmu);
    if (size > 0 && data[0] == 0xA2) {   /* a batch record: its MAC appended */
        out = size < sizeof rec - 32 ? size : sizeof rec - 32;
        memcpy(rec, data, out);
        FUZZ_CHECK(km__mac_sha256(m, rec, out, hash) == KM_OK);
        FUZZ_CHECK(km__mac_compute(m, hash, 32, rec + out) == KM_OK);
        out += 32;
        in = size = 0;
    }
    while (size - in >= 4) {
        size_t len = km__be32_get(data + in);
        if (len > size - in - 4 || out + 4 + len + 37 > sizeof rec)
            break;
        km__be32_put(rec + out, (uint32_t)(len + 37));
        memcpy(rec + out + 4, data + in + 4, len);
        FUZZ_CHECK(km__mac_sha256(m, data + in + 4, len, hash) == KM_OK);
        FUZZ_CHECK(km__mac_compute(m, hash, 32, mac) == KM_OK);
        rec[out + 4 + len] = A_MAC_TAG;
        km__be32_put(rec + out + 5 + len, 32);
        memcpy(rec + out + 9 + len, mac, 32);
        out += 4 + len + 37;
        in += 4 + len;
    }
    km__mac_free(m);
    if (size - in > sizeof rec - out)
        size = in + (sizeof rec - out);
    memcpy(rec + out, data + in, size - in);
    out += size - in;
    if (out == 0)
        return 0;   /* an empty value cannot be stored */

    km__be64_put(seq, 1);
    FUZZ_CHECK(km__txn_begin(fz.ctx->env, 0, &t) == KM_OK);
    FUZZ_CHECK(km__rec_get(t, fz.ctx->sealer, KM__T_AUDIT, seq, 8, &orig) == KM_OK);
    km__txn_abort(t);
    put_record(rec, out);

    rc = km_audit_verify(fz.ctx, NULL, &count, &bad);
    if (getenv("FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "audit: verify %s, %llu entries, bad %llu\n", km_err_name(rc),
                (unsigned long long)count, (unsigned long long)bad);
    FUZZ_CHECK(rc == KM_OK || rc == KM_E_INTEGRITY);
    if (rc != KM_OK)
        FUZZ_CHECK(bad >= 1);
    rc = km_audit_foreach(fz.ctx, 1, each, NULL);
    FUZZ_CHECK(fz_known_rc(rc));

    put_record(km_secret_data(orig), km_secret_len(orig));
    km_secret_free(orig);
    FUZZ_CHECK(km_audit_verify(fz.ctx, NULL, &count, &bad) == KM_OK);
    return 0;
}
