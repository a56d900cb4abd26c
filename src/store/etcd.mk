# src/store/etcd.mk: the etcd catalog store (issue 21). Included from the top
# Makefile.am when configure found libcurl (HAVE_ETCD).
#
libkm_internal_la_SOURCES += src/store/etcd.c
libkm_internal_la_CFLAGS += $(CURL_CFLAGS)
libkm_internal_la_LIBADD += $(CURL_LIBS)
