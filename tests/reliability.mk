# tests/reliability.mk - hot backup and restore (issue 10 item 7) and the
# reliability suites of docs/RELIABILITY.md C and D that are not in tests/fuzz/fuzz.mk.
# Included at the end of the top Makefile.am:
#   include $(srcdir)/tests/reliability.mk
#
#   make check   tests/check_backup (backup under load, restore), check_multiproc
#                (processes on one vault, one SIGKILLed mid-write; SIGKILL during
#                km_vault_compact), check_sweep (every truncation and bit flip of each
#                structure against a PROT_NONE page); check_crash keeps its short run
#   make soak    the long runs: check_crash with KM_CRASH_KILLS=10000 (SOAK_KILLS),
#                check_nonces (2^24 encryptions over threads, processes and a fork,
#                SOAK_NONCES), printed figures in tests/soak-*.log

# every C suite under ThreadSanitizer, from a build configured with --enable-tsan
EXTRA_DIST += tests/tsan_all.sh tests/tsan-p11helper.supp
.PHONY: tsan-check
tsan-check:
	MAKE='$(MAKE)' sh $(abs_top_srcdir)/tests/tsan_all.sh

if HAVE_CHECK
check_PROGRAMS += tests/check_backup
tests_check_backup_SOURCES = tests/check_backup.c tests/testutil.h tests/testutil.c
tests_check_backup_CFLAGS = $(TEST_CFLAGS)
tests_check_backup_LDADD = $(PUBLIC_LIBS)
TESTS += tests/check_backup
check_PROGRAMS += tests/check_multiproc
tests_check_multiproc_SOURCES = tests/check_multiproc.c tests/testutil.h tests/testutil.c
tests_check_multiproc_CFLAGS = $(TEST_CFLAGS)
tests_check_multiproc_LDADD = $(PUBLIC_LIBS)
TESTS += tests/check_multiproc
check_PROGRAMS += tests/check_nonces
tests_check_nonces_SOURCES = tests/check_nonces.c tests/testutil.h tests/testutil.c
tests_check_nonces_CFLAGS = $(TEST_CFLAGS)
tests_check_nonces_LDADD = $(PUBLIC_LIBS)
TESTS += tests/check_nonces
check_PROGRAMS += tests/check_sweep
tests_check_sweep_SOURCES = tests/check_sweep.c tests/testutil.h tests/testutil.c \
	tests/testraw.h tests/testraw.c
tests_check_sweep_CFLAGS = $(TEST_CFLAGS) $(JANSSON_CFLAGS)
tests_check_sweep_LDADD = $(INTERNAL_LIBS) $(JANSSON_LIBS)
TESTS += tests/check_sweep
endif

# ---------------------------------------------------------------- make soak
# The long runs of docs/RELIABILITY.md B, C and D with the same code as make check;
# each prints its figure line and keeps its log in tests/soak-<name>.log.
SOAK_KILLS = 10000
SOAK_PROC_KILLS = 200
SOAK_COMPACT_KILLS = 200
SOAK_NONCES = 16777216

soak: tests/check_crash$(EXEEXT) tests/check_multiproc$(EXEEXT) tests/check_nonces$(EXEEXT)
	@rc=0; \
	echo "soak: check_crash lifecycle, $(SOAK_KILLS) SIGKILLs"; \
	KM_CRASH_KILLS=$(SOAK_KILLS) CK_RUN_CASE=lifecycle ./tests/check_crash >tests/soak-crash.log 2>&1 || rc=1; \
	cat tests/soak-crash.log; \
	echo "soak: check_nonces, $(SOAK_NONCES) encryptions"; \
	KM_NONCE_TOTAL=$(SOAK_NONCES) ./tests/check_nonces >tests/soak-nonces.log 2>&1 || rc=1; \
	cat tests/soak-nonces.log; \
	echo "soak: check_multiproc, $(SOAK_PROC_KILLS) + $(SOAK_COMPACT_KILLS) SIGKILLs"; \
	KM_MULTIPROC_KILLS=$(SOAK_PROC_KILLS) KM_COMPACT_KILLS=$(SOAK_COMPACT_KILLS) \
	  ./tests/check_multiproc >tests/soak-multiproc.log 2>&1 || rc=1; \
	cat tests/soak-multiproc.log; \
	if [ $$rc -eq 0 ]; then echo "soak: passed"; else echo "soak: FAILED"; fi; \
	exit $$rc

.PHONY: soak
CLEANFILES += tests/soak-crash.log tests/soak-nonces.log tests/soak-multiproc.log

EXTRA_DIST += tests/reliability.mk
