# tests/bench/bench.mk - the benchmarks (issue 11; docs/PERFORMANCE.md).
# Included from the top Makefile.am:  include $(srcdir)/tests/bench/bench.mk
#
#   make bench        pairs of libkm against raw OpenSSL / LMDB, one BENCH line each
#   make bench-scale  vaults of 1k and 100k keys (BENCH_SCALE_FULL=1 adds 1M)
#
# The programs are EXTRA_PROGRAMS: built on demand by these targets only,
# never by `make` or `make check` (a benchmark is never a timed test).
# Knobs (environment): BENCH_ROUNDS (7), BENCH_ROUND_S (0.25), BENCH_COLD_KEYS
# (2000), BENCH_DIR (scratch directory, default $TMPDIR or /tmp), BENCH_KEEP=1,
# BENCH_SCALE_FULL=1, BENCH_SCALE_SIZES=1000,5000, BENCH_SCALE_SAMPLES (2000);
# BENCH_ARGS passes pair names (or --profile PAIR SECONDS) to the bench program.

# (The top Makefile.am defines no EXTRA_PROGRAMS; should it come to, make this +=.)
EXTRA_PROGRAMS = tests/bench/bench tests/bench/scale

BENCH_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS) $(LMDB_CFLAGS) $(PKCS11_CFLAGS) $(TSS2_CFLAGS)
BENCH_LIBS = libkm.la $(CRYPTO_LIBS) $(LMDB_LIBS) $(PKCS11_LIBS) $(TSS2_LIBS) $(PTHREAD_LIBS)

tests_bench_bench_SOURCES = tests/bench/bench.c tests/bench/benchutil.c tests/bench/benchutil.h \
	tests/bench/bench_hw.c tests/bench/bench_hw.h tests/testdev.c tests/testdev.h tests/bench/bench_kmip.c \
	tests/bench/bench_etcd.c tests/etcdtest.c tests/etcdtest.h
tests_bench_bench_CFLAGS = $(BENCH_CFLAGS) -DKM_KMIP_TESTDIR='"$(abs_top_srcdir)/tests/kmip"' -I$(srcdir)/tests
tests_bench_bench_LDADD = $(BENCH_LIBS)

tests_bench_scale_SOURCES = tests/bench/scale.c tests/bench/benchutil.c tests/bench/benchutil.h
tests_bench_scale_CFLAGS = $(BENCH_CFLAGS)
tests_bench_scale_LDADD = $(BENCH_LIBS)

.PHONY: bench bench-scale
bench: tests/bench/bench$(EXEEXT)
	./tests/bench/bench$(EXEEXT) $(BENCH_ARGS)

bench-scale: tests/bench/scale$(EXEEXT)
	./tests/bench/scale$(EXEEXT)

# EXTRA_PROGRAMS are not removed by `make clean` on their own.
# (If the top Makefile.am comes to define clean-local, add clean-bench to it.)
.PHONY: clean-bench
clean-bench:
	-$(LIBTOOL) --mode=clean rm -f $(EXTRA_PROGRAMS)
clean-local: clean-bench

# the kmd pairs (issue 20; tests/bench/bench_kmd.c): make bench-kmd
EXTRA_PROGRAMS += tests/bench/bench_kmd
tests_bench_bench_kmd_SOURCES = tests/bench/bench_kmd.c tests/bench/benchutil.c \
	tests/bench/benchutil.h src/prim/kmip_ttlv.c src/prim/kmip_ttlv.h
tests_bench_bench_kmd_CPPFLAGS = $(KM_CONFIG_INCLUDE) -I$(srcdir)/include -iquote $(srcdir)/src/prim
tests_bench_bench_kmd_CFLAGS = $(BENCH_CFLAGS) -DKM_BUILDDIR='"$(abs_top_builddir)"' \
	-DKM_SRCDIR='"$(abs_top_srcdir)"'
tests_bench_bench_kmd_LDADD = $(BENCH_LIBS)

EXTRA_DIST += tests/kmd/bench_pykmip.py
.PHONY: bench-kmd
bench-kmd: tests/bench/bench_kmd$(EXEEXT) src/kmd/kmd$(EXEEXT)
	./tests/bench/bench_kmd$(EXEEXT)
