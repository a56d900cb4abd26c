# tests/fuzz/fuzz.mk - libFuzzer targets for every libkm parser (docs/RELIABILITY.md A,
# issue 10 item 1), their corpora replayed by `make check`, and `make fuzz`.
# Included from the top Makefile.am: include $(srcdir)/tests/fuzz/fuzz.mk
#
#   make check                 replays every file of tests/fuzz/corpus/*/ through
#                              every target, built with the normal compiler
#   make fuzz                  builds each target with clang -fsanitize=fuzzer,address,undefined
#                              and runs it FUZZ_SECONDS (30) with -max_len=4096; prints
#                              "FUZZ <target> execs=<n> crashes=<n>" per target
#       FUZZ_SECONDS=60        seconds per target
#       FUZZ_TARGETS="text"    a subset
#       FUZZ_KEEP=1            keep new interesting inputs in tests/fuzz/corpus/<target>/
#       FUZZ_CC=clang-15       another clang
#   make fuzz-corpus           regenerates the seed-* files from real libkm output
#
# Targets: ciphertext (km_decrypt, km_decrypt_key, km_rewrap), text (km_text_decode),
# datakey (km_datakey_decrypt), tagged (km_verify, km_mac_verify), tlv (km__tlv_*,
# km__vmeta_decode), policy (km__policy_parse), open (km_open URIs and options),
# record (sealed key and version records through km_key_open_id), audit (audit
# records and entries through km_audit_verify/foreach), export (KWP export blobs
# through km_key_import_wrapped), ttlv (the KMIP TTLV decoder and response
# parser, src/prim/kmip_ttlv.c), kmd (kmd's request path, src/kmd/kmip.c, through a
# delegated admin context).

FUZZ_ALL_TARGETS = ciphertext text datakey tagged tlv policy open record audit export ttlv kmd
FUZZ_TARGETS = $(FUZZ_ALL_TARGETS)
FUZZ_SECONDS = 30
FUZZ_KEEP = 0
FUZZ_CC = clang
FUZZ_DEFINES =
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_DIR = $(abs_top_builddir)/tests/fuzz/run

FUZZ_REPLAY_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS) $(LMDB_CFLAGS) $(JANSSON_CFLAGS) \
	-DFUZZ_CORPUS_DIR='"$(abs_top_srcdir)/tests/fuzz/corpus"'
FUZZ_REPLAY_LIBS = libkm_internal.la $(CRYPTO_LIBS) $(LMDB_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)

check_PROGRAMS += tests/fuzz/replay_ciphertext tests/fuzz/replay_text tests/fuzz/replay_datakey \
	tests/fuzz/replay_tagged tests/fuzz/replay_tlv tests/fuzz/replay_policy \
	tests/fuzz/replay_open tests/fuzz/replay_record tests/fuzz/replay_audit \
	tests/fuzz/replay_export tests/fuzz/replay_ttlv tests/fuzz/replay_kmd tests/fuzz/gen_corpus
TESTS += tests/fuzz/replay_ciphertext tests/fuzz/replay_text tests/fuzz/replay_datakey \
	tests/fuzz/replay_tagged tests/fuzz/replay_tlv tests/fuzz/replay_policy \
	tests/fuzz/replay_open tests/fuzz/replay_record tests/fuzz/replay_audit \
	tests/fuzz/replay_export tests/fuzz/replay_ttlv tests/fuzz/replay_kmd

tests_fuzz_replay_ciphertext_SOURCES = tests/fuzz/fuzz_ciphertext.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_ciphertext_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"ciphertext"'
tests_fuzz_replay_ciphertext_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_text_SOURCES = tests/fuzz/fuzz_text.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_text_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"text"'
tests_fuzz_replay_text_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_datakey_SOURCES = tests/fuzz/fuzz_datakey.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_datakey_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"datakey"'
tests_fuzz_replay_datakey_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_tagged_SOURCES = tests/fuzz/fuzz_tagged.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_tagged_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"tagged"'
tests_fuzz_replay_tagged_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_tlv_SOURCES = tests/fuzz/fuzz_tlv.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_tlv_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"tlv"'
tests_fuzz_replay_tlv_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_policy_SOURCES = tests/fuzz/fuzz_policy.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_policy_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"policy"'
tests_fuzz_replay_policy_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_open_SOURCES = tests/fuzz/fuzz_open.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_open_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"open"'
tests_fuzz_replay_open_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_record_SOURCES = tests/fuzz/fuzz_record.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_record_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"record"'
tests_fuzz_replay_record_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_audit_SOURCES = tests/fuzz/fuzz_audit.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_audit_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"audit"'
tests_fuzz_replay_audit_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_export_SOURCES = tests/fuzz/fuzz_export.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_export_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"export"'
tests_fuzz_replay_export_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_ttlv_SOURCES = tests/fuzz/fuzz_ttlv.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_ttlv_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"ttlv"'
tests_fuzz_replay_ttlv_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_replay_kmd_SOURCES = tests/fuzz/fuzz_kmd.c tests/fuzz/replay.c tests/fuzz/fuzz_common.h
tests_fuzz_replay_kmd_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DFUZZ_TARGET='"kmd"'
tests_fuzz_replay_kmd_LDADD = $(FUZZ_REPLAY_LIBS)
tests_fuzz_gen_corpus_SOURCES = tests/fuzz/gen_corpus.c tests/fuzz/fuzz_common.h
tests_fuzz_gen_corpus_CFLAGS = $(FUZZ_REPLAY_CFLAGS)
tests_fuzz_gen_corpus_LDADD = $(FUZZ_REPLAY_LIBS)

# secret hygiene (docs/RELIABILITY.md E): tests/check_hygiene.c
if HAVE_CHECK
check_PROGRAMS += tests/check_hygiene
tests_check_hygiene_SOURCES = tests/check_hygiene.c tests/testutil.h tests/testutil.c
tests_check_hygiene_CFLAGS = $(TEST_CFLAGS)
tests_check_hygiene_LDADD = $(PUBLIC_LIBS)
TESTS += tests/check_hygiene
# the same with libkm's OpenSSL allocator off (per-call key schedules)
TESTS += tests/hygiene_percall.sh
EXTRA_DIST += tests/hygiene_percall.sh
endif

EXTRA_DIST += tests/fuzz/corpus tests/fuzz/fuzz.mk docs/RELIABILITY.md

fuzz-corpus: tests/fuzz/gen_corpus$(EXEEXT)
	tests/fuzz/gen_corpus$(EXEEXT) $(abs_top_srcdir)/tests/fuzz/corpus

# The library is compiled once with clang and the sanitizers (plus the
# fuzzer's coverage), then linked into each target with -fsanitize=fuzzer.
FUZZ_LIB_FLAGS = -g -O1 -std=c11 $(FUZZ_SAN) $(DEFS) -include $(abs_top_builddir)/config.h -I$(abs_top_srcdir)/include \
	-iquote $(abs_top_srcdir)/src/prim -iquote $(abs_top_srcdir)/src/store \
	-iquote $(abs_top_srcdir)/src/rules -iquote $(abs_top_srcdir)/src/core -DKM_BUILDING_LIBRARY $(PTHREAD_CFLAGS) $(CRYPTO_CFLAGS) \
	$(LMDB_CFLAGS) $(JANSSON_CFLAGS) $(PKCS11_CFLAGS) $(TSS2_CFLAGS) $(FUZZ_DEFINES)
FUZZ_LIB_LIBS = $(libkm_internal_la_LIBADD)

fuzz-build:
	@mkdir -p $(FUZZ_DIR)/obj
	@set -e; objs=; for s in $(libkm_internal_la_SOURCES); do \
	  case $$s in *.c) ;; *) continue ;; esac; \
	  o=$(FUZZ_DIR)/obj/`echo $$s | tr / _`.o; \
	  if [ ! -f $$o ] || [ $(abs_top_srcdir)/$$s -nt $$o ]; then \
	    echo "  FUZZCC   $$s"; \
	    $(FUZZ_CC) $(FUZZ_LIB_FLAGS) -fsanitize=fuzzer-no-link -c $(abs_top_srcdir)/$$s -o $$o; fi; \
	  objs="$$objs $$o"; done; \
	for t in $(FUZZ_TARGETS); do \
	  echo "  FUZZLD   fuzz_$$t"; \
	  $(FUZZ_CC) $(FUZZ_LIB_FLAGS) -fsanitize=fuzzer $(abs_top_srcdir)/tests/fuzz/fuzz_$$t.c $$objs \
	    $(FUZZ_LIB_LIBS) -o $(FUZZ_DIR)/fuzz_$$t; done

fuzz: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  src=$(abs_top_srcdir)/tests/fuzz/corpus/$$t; mkdir -p $$src; \
	  work=$(FUZZ_DIR)/new-$$t; art=$(FUZZ_DIR)/artifacts-$$t; log=$(FUZZ_DIR)/fuzz_$$t.log; \
	  rm -rf $$work $$art; mkdir -p $$work $$art; \
	  if [ "$(FUZZ_KEEP)" = 1 ]; then dirs="$$src"; else dirs="$$work $$src"; fi; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(FUZZ_DIR)/fuzz_$$t -max_len=4096 -max_total_time=$(FUZZ_SECONDS) -timeout=30 \
	    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=$$art/ $$dirs > $$log 2>&1 || true; \
	  execs=`sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' $$log | tail -n 1`; \
	  if [ -z "$$execs" ]; then execs=`sed -n 's/^#\([0-9][0-9]*\).*/\1/p' $$log | tail -n 1`; fi; \
	  crashes=`ls $$art | wc -l`; \
	  echo "FUZZ $$t execs=$${execs:-0} crashes=$$crashes"; \
	  if [ "$$crashes" != 0 ]; then rc=1; ls $$art | sed "s|^|  artifact: $$art/|"; \
	    grep -m1 -A12 -E 'ERROR: |FUZZ_CHECK|runtime error' $$log | sed 's/^/  /'; fi; \
	done; exit $$rc

.PHONY: fuzz fuzz-build fuzz-corpus
