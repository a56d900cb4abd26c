/* bench_hw.h - the hardware pairs of the bench (bench_hw.c). */
#ifndef KM_BENCH_HW_H
#define KM_BENCH_HW_H

#include <stdint.h>

/* A bench function runs n operations; the pair runner measures it. */
typedef int (*bench_hw_fn)(void *arg, uint64_t n);
/* bench.c's pair runner, interleaved rounds, one BENCH line. */
typedef void (*bench_pair_fn)(const char *name, bench_hw_fn km, void *km_arg, bench_hw_fn raw,
                              void *raw_arg);

/* pkcs11-encrypt / pkcs11-sign on a SoftHSM2 token made in `dir`. */
void bench_hw_pkcs11(const char *dir, bench_pair_fn pair, int want_enc, int want_sign);
/* tpm2-sign on two swtpm instances started in `dir`. */
void bench_hw_tpm2(const char *dir, bench_pair_fn pair);
/* kmip-encrypt on a PyKMIP server started in `dir` (bench_kmip.c). */
void bench_hw_kmip(const char *dir, bench_pair_fn pair);

/* etcd-open-cold, etcd-encrypt-64, etcd-create, etcd-propagation (want[0..3])
 * on etcd clusters started in `dir` or /dev/shm (bench_etcd.c). */
void bench_etcd(const char *dir, bench_pair_fn pair, const int want[4]);

#endif
