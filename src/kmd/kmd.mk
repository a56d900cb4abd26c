# kmd: the vault behind a process boundary, served over KMIP (issue 20,
# docs/KMD.md). Included from the top Makefile.am:
#   include $(srcdir)/src/kmd/kmd.mk
# kmd sees the public headers (include/, km/sys/server.h among them) and the
# primitives' KMIP TTLV codec, compiled into it (libc only; the library does
# not export km__ names).

sbin_PROGRAMS = src/kmd/kmd
src_kmd_kmd_SOURCES = src/kmd/kmd.h src/kmd/main.c src/kmd/config.c src/kmd/kmip.c \
	src/kmd/tls.c src/prim/kmip_ttlv.h src/prim/kmip_ttlv.c
src_kmd_kmd_CPPFLAGS = $(KM_CONFIG_INCLUDE) -I$(srcdir)/include -iquote $(srcdir)/src/prim
src_kmd_kmd_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
# the TLS listener (tls.c) uses libssl directly until the primitives' TLS
# module serves kmd (layering debt, tests/layers.debt)
src_kmd_kmd_LDADD = libkm.la $(SSL_LIBS) $(CRYPTO_LIBS) $(PTHREAD_LIBS)

EXTRA_DIST += src/kmd/kmd.conf.example
man8_MANS = docs/kmd.8
EXTRA_DIST += docs/kmd.8
