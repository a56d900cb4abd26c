# The km OpenSSL 3 provider (issue 9). Included from the top Makefile.am:
#   include $(srcdir)/bindings/openssl/openssl.mk
# A libtool module (km.so, no version, no lib prefix) that exports only
# OSSL_provider_init, sees only libkm's public headers and links libkm.la.
# Installed in $(ossl_modulesdir): $(libdir)/ossl-modules unless configure was
# given --with-openssl-modulesdir=DIR (OpenSSL's own directory is
# `pkg-config --variable=modulesdir libcrypto`). From the build tree:
#   openssl ... -provider-path bindings/openssl/.libs -provider km -provider default

ossl_modules_LTLIBRARIES = bindings/openssl/km.la
bindings_openssl_km_la_SOURCES = bindings/openssl/provider.h bindings/openssl/provider.c \
	bindings/openssl/keymgmt.c bindings/openssl/store.c bindings/openssl/signature.c \
	bindings/openssl/asymcipher.c
bindings_openssl_km_la_CPPFLAGS = $(KM_CONFIG_INCLUDE) -I$(srcdir)/include
bindings_openssl_km_la_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS)
bindings_openssl_km_la_LIBADD = libkm.la $(CRYPTO_LIBS) $(PTHREAD_LIBS)
bindings_openssl_km_la_LDFLAGS = $(AM_LDFLAGS) -module -avoid-version -shared -no-undefined \
	-export-symbols-regex '^OSSL_provider_init$$'

# the real openssl tool against a fresh vault: sign/verify per key type, a
# certificate, TLS 1.3 and TLS 1.2 handshakes, RSA-OAEP, lifecycle refusals
TESTS += tests/openssl/provider.sh
# the provider with its keys in kmd (client mode, issue 20)
TESTS += tests/openssl/provider_kmd.sh
EXTRA_DIST += tests/openssl/provider_kmd.sh
EXTRA_DIST += bindings/openssl/openssl.mk tests/openssl/provider.sh docs/OPENSSL.md
