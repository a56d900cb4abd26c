# Python bindings (ctypes): included from the top Makefile.am, after
# AM_TESTS_ENVIRONMENT and TESTS are first set there:
#   include $(srcdir)/bindings/python/python.mk
# The pytest suite runs against $(top_builddir)/.libs/libkm.so.0 with the
# interpreter configure substituted as PYTHON (/usr/bin/python3 by default,
# Debian's, which has python3-pytest). It also runs examples/python_example.py.
#
# `make install` puts the km package into $(pythondir)/km (the interpreter's
# site directory for the prefix, from AM_PATH_PYTHON; Debian's packages pass
# pythondir=/usr/lib/python3/dist-packages) and writes km/_paths.py with
# $(libdir) at install time, so the package loads the libkm it was installed
# with (`make install prefix=P` records P's libdir).
# bindings/python/pyproject.toml installs the same package with pip (it then
# finds libkm through the soname).

kmpydir = $(pythondir)/km
kmpy_PYTHON = bindings/python/km/__init__.py bindings/python/km/_ffi.py \
	bindings/python/km/_keymeta.py

install-data-hook: install-km-paths
uninstall-hook: uninstall-km-paths
.PHONY: install-km-paths uninstall-km-paths
install-km-paths:
	$(MKDIR_P) '$(DESTDIR)$(kmpydir)'
	{ echo '"""Where make install put libkm (written at install time)."""'; \
	  echo 'LIBDIR = "$(libdir)"'; } > '$(DESTDIR)$(kmpydir)/_paths.py'
uninstall-km-paths:
	rm -f '$(DESTDIR)$(kmpydir)/_paths.py'
	rm -rf '$(DESTDIR)$(kmpydir)/__pycache__'

AM_TESTS_ENVIRONMENT += PYTHON='$(PYTHON)'; export PYTHON;
TESTS += bindings/python/run-tests.sh
# the package through kmd (client mode, issue 20)
EXTRA_DIST += bindings/python/tests/test_kmd.py

EXTRA_DIST += bindings/python/python.mk bindings/python/run-tests.sh \
	bindings/python/pyproject.toml bindings/python/README.md \
	bindings/python/tests/test_vault.py bindings/python/tests/test_errors.py \
	bindings/python/tests/test_example.py bindings/python/tests/test_api.py \
	bindings/python/tests/conftest.py bindings/python/tests/test_keymeta.py bindings/python/tests/test_ops.py \
	examples/python_example.py bindings/python/tests/test_parity.py
