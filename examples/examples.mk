# Example programs (examples/), included from the top Makefile.am after TESTS,
# check_PROGRAMS and EXTRA_DIST are first set there:
#   include $(srcdir)/examples/examples.mk
# Each example is one use case with a one-line description at its top; it is
# compiled and run by `make check` so that it never rots (curl's docs/examples
# habit). An example exits non-zero when any step fails. The Python example
# (examples/python_example.py) is run by the pytest suite (bindings/python).

EXAMPLES_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS)
EXAMPLES_LIBS = libkm.la $(CRYPTO_LIBS) $(PTHREAD_LIBS)

# basic vault use
check_PROGRAMS += examples/basic_vault
examples_basic_vault_SOURCES = examples/basic_vault.c
examples_basic_vault_LDADD = libkm.la
TESTS += examples/basic_vault

# envelope encryption of a file with a data key (the file itself with OpenSSL EVP)
check_PROGRAMS += examples/envelope_file
examples_envelope_file_SOURCES = examples/envelope_file.c
examples_envelope_file_CFLAGS = $(EXAMPLES_CFLAGS)
examples_envelope_file_LDADD = $(EXAMPLES_LIBS)
TESTS += examples/envelope_file

# rotation, then rewrap of the stored data and retirement of the old version
check_PROGRAMS += examples/rotate_rewrap
examples_rotate_rewrap_SOURCES = examples/rotate_rewrap.c
examples_rotate_rewrap_LDADD = libkm.la
TESTS += examples/rotate_rewrap

# a minimal custom backend (include/km/sys/backend.h), the model for backend authors
check_PROGRAMS += examples/custom_backend
examples_custom_backend_SOURCES = examples/custom_backend.c
examples_custom_backend_CFLAGS = $(EXAMPLES_CFLAGS)
examples_custom_backend_LDADD = $(EXAMPLES_LIBS)
TESTS += examples/custom_backend

# signing with a key generated in a PKCS#11 HSM: pkcs11_sign.sh makes a
# temporary SoftHSM2 token and runs the program against it
if HAVE_PKCS11
check_PROGRAMS += examples/pkcs11_sign
examples_pkcs11_sign_SOURCES = examples/pkcs11_sign.c
examples_pkcs11_sign_CFLAGS = $(EXAMPLES_CFLAGS)
examples_pkcs11_sign_LDADD = $(EXAMPLES_LIBS)
TESTS += examples/pkcs11_sign.sh
endif
EXTRA_DIST += examples/pkcs11_sign.sh

# a vault whose master key is sealed to a TPM 2.0: tpm2_vault.sh starts a
# temporary swtpm and runs the program against it
if HAVE_TPM2
check_PROGRAMS += examples/tpm2_vault
examples_tpm2_vault_SOURCES = examples/tpm2_vault.c
examples_tpm2_vault_LDADD = libkm.la
TESTS += examples/tpm2_vault.sh
endif
EXTRA_DIST += examples/tpm2_vault.sh

# the demo of ./quickstart demo
noinst_PROGRAMS = examples/demo
examples_demo_SOURCES = examples/demo.c
examples_demo_LDADD = libkm.la

EXTRA_DIST += examples/examples.mk
