# backends/kmip: the KMIP key backend (issue 19) and its TTLV codec
# (src/prim/kmip_ttlv.c, reused by a KMIP server later). It needs only OpenSSL,
# so it is always built. Included from the top Makefile.am.
#
libkm_internal_la_SOURCES += src/prim/kmip_ttlv.h src/prim/kmip_ttlv.c src/prim/tls.h src/prim/tls.c \
	backends/kmip/kmip_int.h backends/kmip/kmip_msg.c backends/kmip/kmip_conn.c \
	backends/kmip/kmip.c
# TLS (src/prim/tls.c, also a daemon's server side): libssl (configure's SSL_CFLAGS/SSL_LIBS)
libkm_internal_la_CFLAGS += $(SSL_CFLAGS)
libkm_internal_la_LIBADD += $(SSL_LIBS)

EXTRA_DIST += tests/kmip/capture_vectors.py tests/kmip/vectors.txt tests/kmip/pykmip.sh \
	tests/kmip/pykmip_client.py tests/kmip/bench_raw.py

if HAVE_CHECK
# the codec and the request builders against PyKMIP's bytes (no server)
check_PROGRAMS += tests/check_kmip_ttlv
tests_check_kmip_ttlv_SOURCES = tests/check_kmip_ttlv.c
tests_check_kmip_ttlv_CFLAGS = $(TEST_CFLAGS) -DKM_KMIP_VECTORS='"$(abs_top_srcdir)/tests/kmip/vectors.txt"'
tests_check_kmip_ttlv_LDADD = $(INTERNAL_LIBS)
TESTS += tests/check_kmip_ttlv
# the backend against PyKMIP servers the suite starts (python3-pykmip: fails without)
check_PROGRAMS += tests/check_kmip
tests_check_kmip_SOURCES = tests/check_kmip.c tests/testutil.h tests/testutil.c
tests_check_kmip_CFLAGS = $(TEST_CFLAGS) -DKM_KMIP_TESTDIR='"$(abs_top_srcdir)/tests/kmip"'
tests_check_kmip_LDADD = $(PUBLIC_LIBS) $(SSL_LIBS)
TESTS += tests/check_kmip
endif
# kmctl backend add kmip, keys with --protection kmip (PyKMIP started by the script)
TESTS += tests/kmctl_kmip.sh
EXTRA_DIST += tests/kmctl_kmip.sh

if HAVE_CHECK
# the primitives' mutual TLS (src/prim/tls.c): client and server in one process
check_PROGRAMS += tests/check_tls
tests_check_tls_SOURCES = tests/check_tls.c tests/testutil.h tests/testutil.c
tests_check_tls_CFLAGS = $(TEST_CFLAGS) $(SSL_CFLAGS)
tests_check_tls_LDADD = $(INTERNAL_LIBS) $(SSL_LIBS)
TESTS += tests/check_tls
endif
