# backends/pkcs11: the PKCS#11 HSM backend (issue 6). Included from the top
# Makefile.am when configure found p11-kit and pkcs11-helper (HAVE_PKCS11).
# (Sources and tests are added here as the backend is written.)
