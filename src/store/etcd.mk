# src/store/etcd.mk: the etcd catalog store (issue 21). Included from the top
# Makefile.am when configure found libcurl (HAVE_ETCD).
#
libkm_internal_la_SOURCES += src/store/etcd.c
libkm_internal_la_CFLAGS += $(CURL_CFLAGS)
libkm_internal_la_LIBADD += $(CURL_LIBS)

# the tests: the vault suites again on a 3-member cluster (etcd_suites.sh,
# through the cluster tool etcd_cluster), and the multi-host suite check_etcd
check_PROGRAMS += tests/etcd_cluster
tests_etcd_cluster_SOURCES = tests/etcd_cluster.c tests/etcdtest.h tests/etcdtest.c \
	tests/testdev.h tests/testdev.c
tests_etcd_cluster_CFLAGS = $(TEST_CFLAGS)
TESTS += tests/etcd_suites.sh
EXTRA_DIST += tests/etcd_suites.sh
if HAVE_CHECK
check_PROGRAMS += tests/check_etcd
tests_check_etcd_SOURCES = tests/check_etcd.c tests/etcdtest.h tests/etcdtest.c \
	tests/testutil.h tests/testutil.c
tests_check_etcd_CFLAGS = $(TEST_CFLAGS) -DKM_KMIP_TESTDIR='"$(abs_top_srcdir)/tests/kmip"'
tests_check_etcd_LDADD = $(INTERNAL_LIBS)
TESTS += tests/check_etcd
endif
TESTS += tests/kmctl_etcd.sh
EXTRA_DIST += tests/kmctl_etcd.sh
