# backends/tpm2: the TPM 2.0 backend (issue 7). Included from the top
# Makefile.am when configure found tpm2-tss (HAVE_TPM2).
# (Sources and tests are added here as the backend is written.)
