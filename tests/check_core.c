/* check_core.c - errors, secure memory, encodings (src/prim/error.c, secure.c, format.c, prim.c). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "km_int.h"
#include "testutil.h"

/* ------------------------------------------------------------------ errors */

START_TEST(test_error_every_code_named)
{
    static const int codes[] = {
#define X_(name, value, msg) value,
        KM_ERROR_LIST(X_)
#undef X_
    };
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *n = km_err_name(codes[i]), *m = km_strerror(codes[i]);
        ck_assert_str_ne(n, "KM_E_UNKNOWN");
        /* km_strerror starts with the code's name, as mdb_strerror does */
        ck_assert_int_eq(strncmp(m, n, strlen(n)), 0);
        ck_assert_int_eq(codes[i], -(int)i); /* dense, negative, never renumbered */
    }
    ck_assert_int_eq(KM_E__LAST, codes[sizeof codes / sizeof codes[0] - 1]);
    ck_assert_str_eq(km_err_name(1), "KM_E_UNKNOWN");
    ck_assert_str_eq(km_strerror(-999), "unknown error");
    ck_assert_str_eq(km_err_name(KM_E_INVALID), "KM_E_INVALID");
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    km__err(KM_E_IO, "thread two failed");
    return (void *)(intptr_t)km_error_last()->code;
}

START_TEST(test_error_last_is_per_thread)
{
    pthread_t t;
    void *res;
    km_error_clear();
    ck_assert_int_eq(km_error_last()->code, KM_OK);
    ck_assert_ptr_nonnull(km_error_last()->message);
    ck_assert_int_eq(km__err(KM_E_AUTH, "first %d", 1), KM_E_AUTH);
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &res);
    ck_assert_int_eq((int)(intptr_t)res, KM_E_IO);
    ck_assert_int_eq(km_error_last()->code, KM_E_AUTH);
    ck_assert_str_eq(km_error_last()->message, "first 1");
    ck_assert_int_eq(km__err_native(KM_E_IO, KM_NATIVE_LMDB, 42, "x"), KM_E_IO);
    ck_assert_int_eq(km_error_last()->native_kind, KM_NATIVE_LMDB);
    ck_assert_uint_eq(km_error_last()->native, 42);
    /* a backend cannot report success or an unknown code as an error */
    ck_assert_int_eq(km_backend_error(0, KM_NATIVE_PKCS11, 5, "x"), KM_E_BACKEND);
    ck_assert_int_eq(km_backend_error(-500, KM_NATIVE_PKCS11, 5, "x"), KM_E_BACKEND);
    ck_assert_int_eq(km_backend_error(KM_E_AUTH, KM_NATIVE_PKCS11, 0xa0, "pin"), KM_E_AUTH);
    ck_assert_uint_eq(km_error_last()->native, 0xa0);
}
END_TEST

START_TEST(test_error_long_message_truncated)
{
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    km__err(KM_E_INVALID, "%s", big);
    ck_assert_uint_lt(strlen(km_error_last()->message), 300);
}
END_TEST

/* ------------------------------------------------------------------ secrets */

START_TEST(test_secure_secret_lifecycle)
{
    km_secret *s = NULL;
    ck_assert_int_eq(km_secret_new(NULL, 8), KM_E_INVALID);
    ck_assert_int_eq(km_secret_new(&s, 0), KM_E_INVALID);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(km_secret_new(&s, (16u << 20) + 1), KM_E_INVALID);
    ck_assert_int_eq(km_secret_new(&s, 33), KM_OK);
    ck_assert_uint_eq(km_secret_len(s), 33);
    ck_assert(tu_all_zero(km_secret_data(s), 33));
    memset(km_secret_data(s), 0x5a, 33);
    km_secret_free(s);
    km_secret_free(NULL);
    ck_assert_int_eq(km_secret_from(&s, "abc", 3), KM_OK);
    ck_assert_mem_eq(km_secret_data(s), "abc", 3);
    km_secret_free(s);
    ck_assert_int_eq(km_secret_from(&s, NULL, 3), KM_E_INVALID);
    ck_assert_ptr_null(km_secret_data(NULL));
    ck_assert_uint_eq(km_secret_len(NULL), 0);
}
END_TEST

/* Writing one byte past a secret hits the guard page. */
START_TEST(test_secure_overflow_hits_guard)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        km_secret *s = NULL;
        volatile unsigned char *p;
        if (km_secret_new(&s, 32) != KM_OK)
            _exit(3);
        signal(SIGSEGV, SIG_DFL); /* die quietly, also under a sanitizer */
        p = km_secret_data(s);
        p[32] = 1; /* must fault */
        _exit(0);
    } else {
        int st = 0;
        waitpid(pid, &st, 0);
        /* SIGSEGV, or the sanitizer's report and exit when built with ASan */
        ck_assert_msg(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3),
                      "no fault past the secret");
    }
}
END_TEST

START_TEST(test_secure_ct_equal_and_memzero)
{
    uint8_t a[40], b[40];
    memset(a, 7, sizeof a);
    memset(b, 7, sizeof b);
    ck_assert_int_eq(km_ct_equal(a, b, sizeof a), 1);
    b[39] ^= 0x80;
    ck_assert_int_eq(km_ct_equal(a, b, sizeof a), 0);
    ck_assert_int_eq(km_ct_equal(a, b, 39), 1);
    ck_assert_int_eq(km_ct_equal(NULL, b, 1), 0);
    ck_assert_int_eq(km_ct_equal(NULL, NULL, 0), 1);
    km_memzero(a, sizeof a);
    ck_assert(tu_all_zero(a, sizeof a));
    km_memzero(NULL, 5);
}
END_TEST

/* ----------------------------------------------------------------- formats */

START_TEST(test_format_ct_header_round_trip)
{
    km__ct_header h, g;
    uint8_t buf[KM_CIPHERTEXT_OVERHEAD];
    memset(&h, 0, sizeof h);
    memset(buf, 0, sizeof buf);
    h.alg = KM_KEY_AES_256_GCM;
    memset(h.key_id, 0xab, 16);
    h.version = 0x01020304;
    memset(h.nonce, 0xcd, 12);
    km__ct_header_write(buf, &h);
    ck_assert_int_eq(buf[0], 'K');
    ck_assert_int_eq(buf[1], 'M');
    ck_assert_int_eq(buf[2], 1);
    ck_assert_int_eq(buf[3], 3);
    ck_assert_int_eq(buf[20], 1);
    ck_assert_int_eq(buf[23], 4); /* big-endian version */
    ck_assert_int_eq(km__ct_header_parse(buf, sizeof buf, &g), KM_OK);
    ck_assert_int_eq(g.version, h.version);
    ck_assert_mem_eq(g.key_id, h.key_id, 16);
    ck_assert_mem_eq(g.nonce, h.nonce, 12);
    ck_assert_int_eq(km__ct_header_parse(buf, sizeof buf - 1, &g), KM_E_INVALID);
    buf[2] = 2;
    ck_assert_int_eq(km__ct_header_parse(buf, sizeof buf, &g), KM_E_UNSUPPORTED);
    buf[2] = 1;
    buf[1] = 'X';
    ck_assert_int_eq(km__ct_header_parse(buf, sizeof buf, &g), KM_E_INVALID);
    buf[1] = 'M';
    memset(buf + 20, 0, 4);
    ck_assert_int_eq(km__ct_header_parse(buf, sizeof buf, &g), KM_E_INVALID);
}
END_TEST

START_TEST(test_format_tlv_sweep)
{
    uint8_t buf[128];
    km__tlv_w w;
    uint32_t u = 0;
    uint64_t q = 0;
    size_t cut;
    int bit;

    km__tlv_init(&w, buf, sizeof buf);
    km__tlv_put_u32(&w, 1, 77);
    km__tlv_put_str(&w, 2, "hello");
    km__tlv_put_u64(&w, 3, 1ull << 40);
    ck_assert_int_eq(km__tlv_end(&w), KM_OK);
    ck_assert_int_eq(km__tlv_check(buf, w.len), KM_OK);
    ck_assert_int_eq(km__tlv_get_u32(buf, w.len, 1, &u), KM_OK);
    ck_assert_uint_eq(u, 77);
    ck_assert_int_eq(km__tlv_get_u64(buf, w.len, 3, &q), KM_OK);
    ck_assert_uint_eq(q, 1ull << 40);
    ck_assert_int_eq(km__tlv_get_u32(buf, w.len, 9, &u), KM_E_NOTFOUND);
    ck_assert_int_eq(km__tlv_get_u32(buf, w.len, 2, &u), KM_E_CORRUPT); /* wrong length */
    /* every truncation is either a shorter valid record or refused, never a crash */
    for (cut = 0; cut < w.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        (void)km__tlv_check(copy, cut);
        free(copy);
    }
    ck_assert_int_eq(km__tlv_check(buf, w.len - 1), KM_E_CORRUPT);
    /* every bit flip: check either refuses or the getters stay in bounds */
    for (bit = 0; bit < (int)w.len * 8; bit++) {
        uint8_t copy[128];
        memcpy(copy, buf, w.len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (km__tlv_check(copy, w.len) == KM_OK)
            (void)km__tlv_get_u32(copy, w.len, 1, &u);
    }
    /* duplicates are refused */
    km__tlv_init(&w, buf, sizeof buf);
    km__tlv_put_u32(&w, 1, 1);
    km__tlv_put_u32(&w, 1, 2);
    ck_assert_int_eq(km__tlv_check(buf, w.len), KM_E_CORRUPT);
    /* overflow is sticky */
    km__tlv_init(&w, buf, 8);
    km__tlv_put_u32(&w, 1, 1);
    km__tlv_put_u32(&w, 2, 1);
    ck_assert_int_eq(km__tlv_end(&w), KM_E_INTERNAL);
}
END_TEST

START_TEST(test_format_text_round_trip)
{
    uint8_t bin[100], back[100];
    char text[200];
    size_t n, m, len;
    for (len = 1; len < sizeof bin; len++) {
        size_t i;
        for (i = 0; i < len; i++)
            bin[i] = (uint8_t)(i * 37 + len);
        ck_assert_int_eq(km_text_encode(bin, len, text, sizeof text, &n), KM_OK);
        ck_assert_uint_eq(strlen(text), n);
        ck_assert_int_eq(strncmp(text, "km1:", 4), 0);
        ck_assert_ptr_null(strchr(text, '='));
        ck_assert_ptr_null(strchr(text, '+'));
        ck_assert_ptr_null(strchr(text, '/'));
        ck_assert_int_eq(km_text_decode(text, n, back, sizeof back, &m), KM_OK);
        ck_assert_uint_eq(m, len);
        ck_assert_mem_eq(back, bin, len);
    }
    /* trailing newline accepted; padding, bad characters, prefix refused */
    ck_assert_int_eq(km_text_decode("km1:AAEC\n", 9, back, sizeof back, &m), KM_OK);
    ck_assert_uint_eq(m, 3);
    ck_assert_int_eq(km_text_decode("km1:AAE=", 8, back, sizeof back, &m), KM_E_INVALID);
    ck_assert_int_eq(km_text_decode("km1:AA+C", 8, back, sizeof back, &m), KM_E_INVALID);
    ck_assert_int_eq(km_text_decode("km2:AAEC", 8, back, sizeof back, &m), KM_E_INVALID);
    ck_assert_int_eq(km_text_decode("km1:A", 5, back, sizeof back, &m), KM_E_INVALID);
    ck_assert_int_eq(km_text_decode("km1:AB", 6, back, sizeof back, &m), KM_E_INVALID); /* non-canonical */
    ck_assert_int_eq(km_text_encode(bin, 10, text, 5, &n), KM_E_BUFFER);
    ck_assert_uint_eq(n, 4 + 14 + 1);
    ck_assert_int_eq(km_text_decode("km1:AAECAwQF", 12, back, 2, &m), KM_E_BUFFER);
    ck_assert_int_eq(km_text_encode(NULL, 1, text, sizeof text, &n), KM_E_INVALID);
    ck_assert_int_eq(km_text_decode(NULL, 1, back, sizeof back, &m), KM_E_INVALID);
}
END_TEST

/* --------------------------------------------------------------- primitives */

START_TEST(test_prim_nonces_distinct_and_fork_refresh)
{
    uint8_t a[12], b[12];
    int fds[2];
    pid_t pid;
    ck_assert_int_eq(km_init(), KM_OK);
    ck_assert_int_eq(km__nonce12(a), KM_OK);
    ck_assert_int_eq(km__nonce12(b), KM_OK);
    ck_assert(memcmp(a, b, 12) != 0);
    /* The child's next nonce differs from the parent's next one: the buffer
     * is refilled after fork, not shared. */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uint8_t c[12];
        if (km__nonce12(c) != KM_OK || write(fds[1], c, 12) != 12)
            _exit(1);
        _exit(0);
    } else {
        uint8_t c[12], p[12];
        int st;
        ck_assert_int_eq(read(fds[0], c, 12), 12);
        waitpid(pid, &st, 0);
        ck_assert_int_eq(km__nonce12(p), KM_OK);
        ck_assert(memcmp(c, p, 12) != 0);
        close(fds[0]);
        close(fds[1]);
    }
}
END_TEST

START_TEST(test_prim_gcm_and_kwp)
{
    uint8_t key[32], nonce[12], pt[40], ct[40], tag[16], back[40], w[64], u[64];
    size_t wl, ul;
    memset(key, 1, sizeof key);
    memset(nonce, 2, sizeof nonce);
    memset(pt, 3, sizeof pt);
    ck_assert_int_eq(km__gcm_seal(key, nonce, (const uint8_t *)"ad", 2, pt, sizeof pt, ct, tag), KM_OK);
    ck_assert_int_eq(km__gcm_open(key, nonce, (const uint8_t *)"ad", 2, ct, sizeof ct, tag, back), KM_OK);
    ck_assert_mem_eq(back, pt, sizeof pt);
    tag[0] ^= 1;
    ck_assert_int_eq(km__gcm_open(key, nonce, (const uint8_t *)"ad", 2, ct, sizeof ct, tag, back),
                     KM_E_INTEGRITY);
    ck_assert(tu_all_zero(back, sizeof back));
    ck_assert_int_eq(km__kwp_wrap(key, 32, pt, 20, w, sizeof w, &wl), KM_OK);
    ck_assert_uint_eq(wl, 32);
    ck_assert_int_eq(km__kwp_unwrap(key, 32, w, wl, u, sizeof u, &ul), KM_OK);
    ck_assert_uint_eq(ul, 20);
    ck_assert_mem_eq(u, pt, 20);
    w[5] ^= 1;
    ck_assert_int_eq(km__kwp_unwrap(key, 32, w, wl, u, sizeof u, &ul), KM_E_INTEGRITY);
    ck_assert(tu_all_zero(u, sizeof u));
    ck_assert_int_eq(km__kwp_unwrap(key, 32, w, 12, u, sizeof u, &ul), KM_E_INTEGRITY);
    ck_assert_int_eq(km__kwp_wrap(key, 31, pt, 20, w, sizeof w, &wl), KM_E_INVALID);
}
END_TEST

static Suite *core_suite(void)
{
    TCase *tc;
    Suite *s = tu_suite("core", NULL, &tc, 60, NULL, NULL);

    tcase_add_test(tc, test_error_every_code_named);
    tcase_add_test(tc, test_error_last_is_per_thread);
    tcase_add_test(tc, test_error_long_message_truncated);
    tcase_add_test(tc, test_secure_secret_lifecycle);
    tcase_add_test(tc, test_secure_overflow_hits_guard);
    tcase_add_test(tc, test_secure_ct_equal_and_memzero);
    tcase_add_test(tc, test_format_ct_header_round_trip);
    tcase_add_test(tc, test_format_tlv_sweep);
    tcase_add_test(tc, test_format_text_round_trip);
    tcase_add_test(tc, test_prim_nonces_distinct_and_fork_refresh);
    tcase_add_test(tc, test_prim_gcm_and_kwp);
    return s;
}

int main(void)
{
    return tu_run(core_suite());
}
