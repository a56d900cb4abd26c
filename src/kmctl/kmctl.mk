# kmctl: the command-line tool (issue 8). Included from the top Makefile.am:
#   include $(srcdir)/src/kmctl/kmctl.mk
# Paths are relative to the top of the tree. kmctl sees only the public
# headers (include/), never the library's internals (src/).
# The top Makefile.am defines neither bin_PROGRAMS nor man1_MANS, and automake
# refuses '+=' on an undefined variable: this fragment defines both with '='
# (switch to '+=' if the top Makefile.am ever defines them before the include).

bin_PROGRAMS = src/kmctl/kmctl
src_kmctl_kmctl_SOURCES = src/kmctl/kmctl.h src/kmctl/main.c src/kmctl/report.c \
	src/kmctl/io.c src/kmctl/cmd_key.c src/kmctl/cmd_lifecycle.c src/kmctl/cmd_data.c \
	src/kmctl/cmd_policy.c src/kmctl/cmd_backup.c src/kmctl/cmd_access.c \
	src/kmctl/cmd_backend.c src/kmctl/cmd_kmd.c src/kmctl/cmd_ops.c
src_kmctl_kmctl_SOURCES += src/kmctl/kmctl_json.h src/kmctl/cmd_keymeta.c
src_kmctl_kmctl_SOURCES += src/kmctl/cmd_parity.c
src_kmctl_kmctl_CPPFLAGS = $(KM_CONFIG_INCLUDE) -I$(srcdir)/include
src_kmctl_kmctl_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
src_kmctl_kmctl_LDADD = libkm.la $(JANSSON_LIBS)

man1_MANS = docs/kmctl.1

# the grammar end to end against a fresh vault
TESTS += tests/kmctl.sh
EXTRA_DIST += docs/kmctl.1 tests/kmctl.sh
# kmctl through kmd: --vault kmd:SOCKET (issue 20, client mode)
TESTS += tests/kmctl_kmd.sh
EXTRA_DIST += tests/kmctl_kmd.sh
# a key's names and metadata (issue 22)
TESTS += tests/kmctl_keymeta.sh
EXTRA_DIST += tests/kmctl_keymeta.sh
# issue 23's commands (random, CMAC keys, ...)
TESTS += tests/kmctl_ops.sh
EXTRA_DIST += tests/kmctl_ops.sh
# kmctl parity with the C API: export --kek/--version, derive, sign-digest, audit sinks, --json (issue 23 item 8)
TESTS += tests/kmctl_parity.sh
EXTRA_DIST += tests/kmctl_parity.sh
