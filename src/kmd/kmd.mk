# kmd: the vault behind a process boundary, served over KMIP (issue 20,
# docs/KMD.md). Included from the top Makefile.am:
#   include $(srcdir)/src/kmd/kmd.mk
# kmd sees the public headers (include/, km/sys/server.h among them) and, of
# the primitives, the KMIP TTLV codec and the TLS module (src/prim/tls.h).
# libkm.so exports no km__ name, so kmd links the convenience library: one
# copy of the library in the program (the TLS module's errors are the
# thread's last error that km_error_last() reads).

sbin_PROGRAMS = src/kmd/kmd
src_kmd_kmd_SOURCES = src/kmd/kmd.h src/kmd/main.c src/kmd/config.c src/kmd/kmip.c \
	src/kmd/vendor.c \
	src/kmd/tls.c
src_kmd_kmd_CPPFLAGS = $(KM_CONFIG_INCLUDE) -I$(srcdir)/include -iquote $(srcdir)/src/prim
src_kmd_kmd_LDADD = libkm_internal.la $(SSL_LIBS) $(CRYPTO_LIBS) $(LMDB_LIBS) $(JANSSON_LIBS) \
	$(PTHREAD_LIBS)

EXTRA_DIST += src/kmd/kmd.conf.example
man8_MANS = docs/kmd.8
EXTRA_DIST += docs/kmd.8
