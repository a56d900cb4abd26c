# Python bindings (ctypes): included from the top Makefile.am, after
# AM_TESTS_ENVIRONMENT and TESTS are first set there:
#   include $(srcdir)/bindings/python/python.mk
# The pytest suite runs against $(top_builddir)/.libs/libkm.so.0 with the
# interpreter configure substituted as PYTHON (/usr/bin/python3 by default,
# Debian's, which has python3-pytest). It also runs examples/python_example.py.
# Installing the km package (pkgpython) is not done yet.

AM_TESTS_ENVIRONMENT += PYTHON='$(PYTHON)'; export PYTHON;
TESTS += bindings/python/run-tests.sh

EXTRA_DIST += bindings/python/python.mk bindings/python/run-tests.sh \
	bindings/python/km/__init__.py bindings/python/km/_ffi.py \
	bindings/python/tests/test_vault.py bindings/python/tests/test_errors.py \
	bindings/python/tests/test_example.py bindings/python/tests/test_api.py \
	bindings/python/tests/conftest.py \
	examples/python_example.py
