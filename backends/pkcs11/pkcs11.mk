# backends/pkcs11: the PKCS#11 HSM backend (issue 6). Included from the top
# Makefile.am when configure found p11-kit and pkcs11-helper (HAVE_PKCS11).
libkm_internal_la_SOURCES += backends/pkcs11/p11_int.h backends/pkcs11/p11_conn.c \
	backends/pkcs11/pkcs11.c
libkm_internal_la_CFLAGS += $(PKCS11_CFLAGS)
libkm_internal_la_LIBADD += $(PKCS11_LIBS)

if HAVE_CHECK
check_PROGRAMS += tests/check_pkcs11
tests_check_pkcs11_SOURCES = tests/check_pkcs11.c tests/testutil.h tests/testutil.c
tests_check_pkcs11_CFLAGS = $(TEST_CFLAGS) $(PKCS11_CFLAGS)
tests_check_pkcs11_LDADD = $(PUBLIC_LIBS) $(PKCS11_LIBS)
TESTS += tests/check_pkcs11
endif
