"""The error classes match KM_ERROR_LIST, and _ffi declares the whole public C API."""

import ctypes
import os
import re

import pytest

import km
from km import _ffi
from conftest import INCLUDE  # conftest.py: km from the source tree

EXPECTED = {
    "KM_E_INVALID": "InvalidArgument", "KM_E_UNSUPPORTED": "Unsupported",
    "KM_E_NOMEM": "OutOfMemory", "KM_E_NOTFOUND": "NotFound", "KM_E_EXISTS": "AlreadyExists",
    "KM_E_AUTH": "AuthError", "KM_E_INTEGRITY": "IntegrityError",
    "KM_E_VERIFY": "VerifyError", "KM_E_STATE": "StateError", "KM_E_USAGE": "UsageError",
    "KM_E_POLICY": "PolicyError", "KM_E_DENIED": "AccessDenied",
    "KM_E_LIMIT": "LimitReached", "KM_E_BUFFER": "BufferTooSmall",
    "KM_E_CORRUPT": "CorruptVault", "KM_E_IO": "StorageError", "KM_E_FULL": "VaultFull",
    "KM_E_BACKEND": "BackendError", "KM_E_CRYPTO": "CryptoError", "KM_E_FORK": "ForkError",
    "KM_E_BUSY": "Busy", "KM_E_INTERNAL": "InternalError",
}


def header_codes():
    text = open(os.path.join(INCLUDE, "km", "error.h")).read()
    codes = re.findall(r"X\((KM_E_[A-Z0-9_]+),\s*(-\d+),", text)
    assert len(codes) >= 22
    return [(n, int(v)) for n, v in codes]


def test_every_code_of_the_header_has_its_class():
    for name, value in header_codes():
        cls = km.error_class(value)
        assert cls is not km.KmError, name
        assert issubclass(cls, km.KmError)
        assert (cls.code, cls.name) == (value, name)
        assert cls.__name__ == EXPECTED[name] and getattr(km, cls.__name__) is cls
        assert cls.__module__ == "km"
        assert _ffi.lib.km_err_name(value).decode() == name
    classes = [km.error_class(v) for _, v in header_codes()]
    assert len(set(classes)) == len(classes)
    assert set(EXPECTED) == {n for n, _ in header_codes()}


def test_python_bases():
    assert issubclass(km.InvalidArgument, ValueError)
    assert issubclass(km.OutOfMemory, MemoryError)
    assert not issubclass(km.NotFound, ValueError)
    assert km.error_class(-999) is km.KmError


def test_exception_carries_last_error(tmp_path):
    with pytest.raises(km.NotFound) as ei:
        km.Vault.open(tmp_path / "none", passphrase=b"x")
    e = ei.value
    assert e.code == -4 and e.name == "KM_E_NOTFOUND" and e.function == "km_open"
    assert e.message and "\n" not in e.message
    assert str(e).startswith("KM_E_NOTFOUND")
    assert e.native_kind in (None, "errno", "lmdb")
    assert isinstance(e.native, int)


def test_user_constructed_errors():
    e = km.PolicyError("refused")
    assert e.code == -11 and e.name == "KM_E_POLICY" and str(e) == "KM_E_POLICY: refused"
    with pytest.raises(km.KmError):
        raise km.LimitReached("x")


def test_ffi_declares_every_public_function():
    text = " ".join(open(os.path.join(INCLUDE, f)).read() for f in
                    ["km.h"] + ["km/" + n for n in sorted(os.listdir(os.path.join(INCLUDE, "km")))
                                if n.endswith(".h")])
    declared = set(re.findall(r"KM_EXTERN[^;(]*?\b(km_[a-z0-9_]+)\s*\(", text))
    assert "km_encrypt" in declared and "km_open" in declared
    assert declared - set(_ffi._FUNCTIONS) == set()
    # km/sys/backend.h is for backend authors (C vtables); of it the package
    # declares only what Python can use (km_backend_names), and nothing else
    sys_text = open(os.path.join(INCLUDE, "km", "sys", "backend.h")).read()
    sys_declared = set(re.findall(r"KM_EXTERN[^;(]*?\b(km_[a-z0-9_]+)\s*\(", sys_text))
    assert "km_backend_names" in sys_declared
    assert set(_ffi._FUNCTIONS) - declared == {"km_backend_names"}
    assert _ffi.lib.missing == []  # the loaded libkm has all of them


def test_size_twins_match_the_header_constants():
    assert km.CIPHERTEXT_OVERHEAD == 52
    assert km.SIGNATURE_MAX == 1024
    assert km.MAC_MAX == 88


def test_sized_retries_with_the_reported_size_and_wipes():
    seen = []

    def call(out, cap, out_len):  # reports KM_E_BUFFER with the size needed, like libkm
        seen.append((out, cap))
        out_len._obj.value = 10
        if cap < 10:
            raise km.BufferTooSmall("too small")
        ctypes.memmove(out, b"0123456789", 10)

    assert km._sized(call, 4) == b"0123456789"
    assert [c for _, c in seen] == [4, 10]
    assert bytes(seen[-1][0]) == bytes(10)  # the C buffer was wiped after the copy
    s = km._sized(call, 10, secret=True)
    assert isinstance(s, bytearray) and s == bytearray(b"0123456789")

    def refuses(out, cap, out_len):  # KM_E_BUFFER without a bigger size: raised as is
        out_len._obj.value = cap
        raise km.BufferTooSmall("too small")

    with pytest.raises(km.BufferTooSmall):
        km._sized(refuses, 4)
