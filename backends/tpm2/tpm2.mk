# backends/tpm2: the TPM 2.0 backend (issue 7). Included from the top
# Makefile.am when configure found tpm2-tss (HAVE_TPM2).
#
libkm_internal_la_SOURCES += backends/tpm2/tpm2_int.h backends/tpm2/tpm2_conn.c \
	backends/tpm2/tpm2.c
libkm_internal_la_CFLAGS += $(TSS2_CFLAGS)
libkm_internal_la_LIBADD += $(TSS2_LIBS)

if HAVE_CHECK
check_PROGRAMS += tests/check_tpm2
tests_check_tpm2_SOURCES = tests/check_tpm2.c tests/testutil.h tests/testutil.c
tests_check_tpm2_CFLAGS = $(TEST_CFLAGS)
tests_check_tpm2_LDADD = $(PUBLIC_LIBS)
TESTS += tests/check_tpm2
endif
