#!/bin/sh
# The secret-hygiene suite again with libkm's OpenSSL allocator turned off
# (KM_OPENSSL_MEM=off), as when libkm is loaded after OpenSSL has allocated
# (Python, the OpenSSL provider): keyed cipher contexts are then made per call,
# and the canary must still be absent everywhere, the core dump included.
set -e
KM_OPENSSL_MEM=off exec "${top_builddir:-.}/tests/check_hygiene"
