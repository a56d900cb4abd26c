/* etcdtest.h - an etcd cluster of the tests (issue 21): N members on free
 * 127.0.0.1 ports with data directories in DIR/mI, started with etcd(1) and
 * stopped by their recorded PIDs (DIR/mI.pid, checked through /proc before a
 * signal). No Check dependency (tests/etcd_cluster.c and the benchmarks use
 * it too): every function returns 0 on success and -1 with tu_etcd_error()
 * saying why. */
#ifndef KM_ETCDTEST_H
#define KM_ETCDTEST_H

#include <sys/types.h>

#define TU_ETCD_MAX 5

typedef struct tu_etcd {
    char dir[512];
    int n;                        /* members */
    int port[TU_ETCD_MAX];        /* client port; the peer port is port + 1 */
    char endpoints[256];          /* "127.0.0.1:P0,127.0.0.1:P1,..." */
    char pki[512];                /* TLS: a directory of tests/kmip/pykmip.sh certs; "" = http */
} tu_etcd;

/* Why the last tu_etcd_* call failed. */
const char *tu_etcd_error(void);
/* 1 when etcd(1) is installed; else prints why (naming `who`) and returns 0:
 * the caller then fails (CI) or says it skipped. */
int tu_etcd_installed(const char *who);
/* Makes DIR (if absent), picks ports, starts n members, waits until the
 * cluster has a leader, and records the cluster in DIR/cluster. */
int tu_etcd_start(tu_etcd *c, const char *dir, int n);
/* As tu_etcd_start, serving clients over TLS only with the certificates of
 * PKI (made by tests/kmip/pykmip.sh certs: ca.crt, server-both.crt/key for
 * 127.0.0.1), client certificates required (--client-cert-auth); the
 * health check then runs curl(1) with PKI's client.crt/key. */
int tu_etcd_start_tls(tu_etcd *c, const char *dir, int n, const char *pki);
/* Reads DIR/cluster (a cluster started by another process). */
int tu_etcd_load(tu_etcd *c, const char *dir);
/* Starts member i again on its data directory (after a kill); nothing when
 * it runs. */
int tu_etcd_member_start(const tu_etcd *c, int i);
/* SIGKILLs member i (by its recorded PID) and waits until it is gone. */
int tu_etcd_member_kill(const tu_etcd *c, int i);
/* Waits up to ms for every running member to answer /health "true". */
int tu_etcd_wait_healthy(const tu_etcd *c, int ms);
/* Kills every member; the data directories stay (the caller removes DIR). */
void tu_etcd_stop(const tu_etcd *c);

#endif /* KM_ETCDTEST_H */
