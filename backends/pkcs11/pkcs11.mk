# backends/pkcs11: the PKCS#11 HSM backend (issue 6). Included from the top
# Makefile.am when configure found p11-kit and pkcs11-helper (HAVE_PKCS11).
libkm_internal_la_SOURCES += backends/pkcs11/p11_int.h backends/pkcs11/p11_conn.c \
	backends/pkcs11/pkcs11.c
# pkcs11-helper behind one interface (p11_helper.c is the only file with its
# headers); p11_card.c: the p11-kit side and the pkcs11-card backend
libkm_internal_la_SOURCES += backends/pkcs11/p11_helper.h backends/pkcs11/p11_helper.c \
	backends/pkcs11/p11_card.h backends/pkcs11/p11_card.c
# km/pkcs11.h's functions (the API layer: context and access checks, catalog
# import), calling the backend through p11_card.h
libkm_internal_la_SOURCES += src/api/pkcs11.c
libkm_internal_la_CFLAGS += $(PKCS11_CFLAGS)
libkm_internal_la_LIBADD += $(PKCS11_LIBS)

if HAVE_CHECK
check_PROGRAMS += tests/check_pkcs11
tests_check_pkcs11_SOURCES = tests/check_pkcs11.c tests/testutil.h tests/testutil.c
tests_check_pkcs11_CFLAGS = $(TEST_CFLAGS) $(PKCS11_CFLAGS)
tests_check_pkcs11_LDADD = $(PUBLIC_LIBS) $(PKCS11_LIBS)
TESTS += tests/check_pkcs11
check_PROGRAMS += tests/check_p11helper
tests_check_p11helper_SOURCES = tests/check_p11helper.c tests/testutil.h tests/testutil.c
tests_check_p11helper_CFLAGS = $(TEST_CFLAGS) $(PKCS11_CFLAGS)
tests_check_p11helper_LDADD = $(PUBLIC_LIBS) $(PKCS11_LIBS)
TESTS += tests/check_p11helper
endif
