"""Low-level ctypes layer of the libkm bindings.

Every C function of the public headers (include/km.h, include/km/*.h) is
declared once, in ``_FUNCTIONS`` below, with its argtypes, restype and
errcheck. Functions returning an ``int`` status go through ``_check``, which
raises the exception class of the error code (``CODES`` maps every code of
KM_ERROR_LIST in include/km/error.h to one class). Nothing here reaches into
libkm's internals: only the installed API is used.

The library is found, in this order:
  1. the path in the environment variable ``KM_LIBRARY``;
  2. ``libkm.so.0`` (or ``libkm.so``) next to this module;
  3. ``libkm.so.0`` in the libdir that ``make install`` recorded in ``km/_paths.py``;
  4. the soname ``libkm.so.0`` through the dynamic linker.

A function missing from the loaded library (an older libkm) does not break
the import: calling it raises ``Unsupported``.
"""

import ctypes
import os

__all__ = ["lib", "CODES", "KmError", "wipe"]

# ---------------------------------------------------------------- loading

SONAME = "libkm.so.0"


def _load():
    tried = []
    env = os.environ.get("KM_LIBRARY")
    if env:
        # an explicit choice: fail loudly rather than fall back silently
        return ctypes.CDLL(env), env
    here = os.path.dirname(os.path.abspath(__file__))
    for name in (SONAME, "libkm.so"):
        path = os.path.join(here, name)
        if os.path.exists(path):
            return ctypes.CDLL(path), path
        tried.append(path)
    # `make install` records the libdir it installed libkm into (km/_paths.py),
    # so a package installed under a prefix finds its own library there even
    # when that libdir is not on the dynamic linker's path
    try:
        from . import _paths
    except ImportError:
        _paths = None
    if _paths is not None and getattr(_paths, "LIBDIR", ""):
        path = os.path.join(_paths.LIBDIR, SONAME)
        if os.path.exists(path):
            return ctypes.CDLL(path), path
        tried.append(path)
    try:
        return ctypes.CDLL(SONAME), SONAME
    except OSError as e:
        tried.append(SONAME)
        raise ImportError(
            "km: cannot load libkm (set KM_LIBRARY to the path of libkm.so.0); tried: "
            + ", ".join(tried) + ": " + str(e)) from e


# ---------------------------------------------------------------- C types

class _Opaque(ctypes.Structure):
    """Base of the opaque handle types (never dereferenced)."""
    _fields_ = []


class km_ctx(_Opaque):
    pass


class km_key(_Opaque):
    pass


class km_keyinfo(_Opaque):
    pass


class km_secret(_Opaque):
    pass


class km_maintain_report(_Opaque):
    pass


CTX_P = ctypes.POINTER(km_ctx)
KEY_P = ctypes.POINTER(km_key)
KEYINFO_P = ctypes.POINTER(km_keyinfo)
SECRET_P = ctypes.POINTER(km_secret)
REPORT_P = ctypes.POINTER(km_maintain_report)


class km_policy_findings(_Opaque):
    pass


FINDINGS_P = ctypes.POINTER(km_policy_findings)
U8_P = ctypes.POINTER(ctypes.c_uint8)
SIZE_P = ctypes.POINTER(ctypes.c_size_t)
U32_P = ctypes.POINTER(ctypes.c_uint32)
INT_P = ctypes.POINTER(ctypes.c_int)

km_clock_fn = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)
km_key_list_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, U8_P, ctypes.c_int,
                                  ctypes.c_void_p)

km_grant_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_void_p)


class km_key_filter(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("type", ctypes.c_int),
                ("protection", ctypes.c_char_p),
                ("state", ctypes.c_int),
                ("tag", ctypes.c_char_p)]


KM_KEY_FILTER_VERSION = 1
KM_ALIAS_MOVE = 0x1


class km_key_settings(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("fields", ctypes.c_uint32),
                ("rotate_days", ctypes.c_uint32),
                ("usage", ctypes.c_uint32),
                ("exportable", ctypes.c_int),
                ("policy", ctypes.c_char_p),
                ("deletion_protection", ctypes.c_int),
                ("min_process_version", ctypes.c_uint32),
                ("min_protect_version", ctypes.c_uint32)]


KM_KEY_SETTINGS_VERSION = 1
KM_SET_ROTATE_DAYS, KM_SET_USAGE, KM_SET_EXPORTABLE, KM_SET_POLICY, KM_SET_DELETION_PROTECTION = (
    0x01, 0x02, 0x04, 0x08, 0x10)
KM_KEY_DELETION_PROTECTED = 0x4
KM_SET_MIN_PROCESS_VERSION, KM_SET_MIN_PROTECT_VERSION = 0x20, 0x40


class km_error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int),
                ("message", ctypes.c_char_p),
                ("native_kind", ctypes.c_int),
                ("native", ctypes.c_ulong)]


class km_open_options(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("flags", ctypes.c_uint32),
                ("passphrase", U8_P),
                ("passphrase_len", ctypes.c_size_t),
                ("kdf_cost", ctypes.c_uint32),
                ("refresh_ms", ctypes.c_uint32),
                ("map_size", ctypes.c_uint64),
                ("clock", km_clock_fn),
                ("clock_arg", ctypes.c_void_p),
                # ---- version 2 ----
                ("key_cache_max", ctypes.c_uint32),
                # ---- version 3 ----
                ("principal", ctypes.c_char_p),
                ("slot_backend", ctypes.c_char_p),
                ("slot_config", ctypes.c_char_p),
                ("shares", ctypes.POINTER(ctypes.c_char_p)),
                ("share_count", ctypes.c_size_t),
                # ---- version 4 ----
                ("tls_ca", ctypes.c_char_p),
                ("tls_cert", ctypes.c_char_p),
                ("tls_key", ctypes.c_char_p)]


class km_key_options(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("usage", ctypes.c_uint32),
                ("flags", ctypes.c_uint32),
                ("protection", ctypes.c_char_p),
                # ---- version 2 ----
                ("activate_at", ctypes.c_int64),
                ("rotate_days", ctypes.c_uint32),
                ("protect_days", ctypes.c_uint32),
                ("process_days", ctypes.c_uint32),
                ("destroy_grace_days", ctypes.c_uint32),
                # ---- version 3 ----
                ("policy", ctypes.c_char_p),
                # ---- version 4 ----
                ("key_id", U8_P),
                # ---- version 5 ----
                ("import_version", ctypes.c_uint32),
                ("rsa_oaep_digest", ctypes.c_uint32)]


KM_BATCH_DETAIL = 160


class km_batch_item(ctypes.Structure):
    _fields_ = [("in_", U8_P), ("in_len", ctypes.c_size_t),
                ("aad", U8_P), ("aad_len", ctypes.c_size_t),
                ("sig", U8_P), ("sig_len", ctypes.c_size_t),
                ("out", U8_P), ("out_cap", ctypes.c_size_t),
                ("out_len", ctypes.c_size_t),
                ("result", ctypes.c_int),
                ("detail", ctypes.c_char * KM_BATCH_DETAIL)]


class km_version_info(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32),
                ("state", ctypes.c_int),
                ("created", ctypes.c_int64),
                ("activated", ctypes.c_int64),
                ("protect_stop", ctypes.c_int64),
                ("process_stop", ctypes.c_int64),
                ("destroy_after", ctypes.c_int64),
                ("invocations", ctypes.c_uint64),
                ("bytes", ctypes.c_uint64),
                # ---- appended ----
                ("revoke_reason", ctypes.c_uint32),
                ("compromise_date", ctypes.c_int64),
                ("deactivated", ctypes.c_int64),
                ("destroyed", ctypes.c_int64)]


class km_audit_head(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64),
                ("hash", ctypes.c_uint8 * 32)]


class km_audit_entry(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64),
                ("time", ctypes.c_int64),
                ("principal", ctypes.c_char_p),
                ("op", ctypes.c_char_p),
                ("has_key", ctypes.c_int),
                ("key_id", ctypes.c_uint8 * 16),
                ("version", ctypes.c_uint32),
                ("result", ctypes.c_int),
                ("detail", ctypes.c_char_p),
                ("hash", ctypes.c_uint8 * 32)]


class km_request_status(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int),
                ("key_name", ctypes.c_char * 256),
                ("requester", ctypes.c_char * 72),
                ("approvals", ctypes.c_uint32),
                ("needed", ctypes.c_uint32),
                ("created", ctypes.c_int64),
                ("expires", ctypes.c_int64),
                ("consumed", ctypes.c_int)]


km_audit_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(km_audit_entry), ctypes.c_void_p)
km_audit_alert_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(km_audit_entry),
                                     ctypes.c_char_p, ctypes.c_void_p)
km_progress_fn = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64,
                                  ctypes.c_void_p)
km_principal_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32,
                                   ctypes.c_int64, ctypes.c_void_p)


class km_pkcs11_list(_Opaque):
    pass


P11LIST_P = ctypes.POINTER(km_pkcs11_list)
# (arg, token_label, retry, pin buffer, pin_cap) -> 0 with the PIN written, else cancel
km_pkcs11_pin_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.c_uint, ctypes.c_void_p, ctypes.c_size_t)


# ---------------------------------------------------------------- constants (include/km/*.h)

KM_OPEN_OPTIONS_VERSION = 4
KM_OPEN_CREATE = 0x1
KM_OPEN_EXCL = 0x2
KM_OPEN_STRICT_REFRESH = 0x4
KM_OPEN_FIPS = 0x8
KM_SHARES_MAX = 32
KM_KDF_COST_DEFAULT = 17
KM_KDF_COST_MIN = 14
KM_KDF_COST_MAX = 22

KM_KEY_OPTIONS_VERSION = 5
KM_KEY_EXPORTABLE = 0x1
KM_KEY_PUBLIC_ONLY = 0x2
KM_IMPORT_ALLOW_RAW = 0x1

KM_MATERIAL_RAW = 1
KM_MATERIAL_PKCS8_DER = 2
KM_MATERIAL_SPKI_DER = 3
KM_MATERIAL_PEM = 4

KM_SIG_RAW = 0x1
KM_SIG_P1363 = 0x2
KM_SIG_PKCS1 = 0x4
KM_MATERIAL_JWK = 5
KM_BATCH_ENCRYPT, KM_BATCH_DECRYPT, KM_BATCH_SIGN = 1, 2, 3
KM_BATCH_VERIFY, KM_BATCH_MAC, KM_BATCH_MAC_VERIFY = 4, 5, 6
KM_WRAP_KWP = 1
KM_WRAP_RSA_OAEP_KWP = 2
KM_DERIVE_MAX = 8160
KM_AGREE_RAW_MAX = 512
KM_DATAKEY_LEN = 32
KM_DATAKEY_WRAPPED_LEN = 84
KM_DECRYPT_ALLOW_COMPROMISED = 0x1

KM_CIPHERTEXT_HEADER = 36
KM_TAG_HEADER = 24

# ---------------------------------------------------------------- errors

# (name, value, Python class name, extra Python base) for every entry of
# KM_ERROR_LIST except KM_OK. Codes are append-only in C; append here too.
_ERRORS = (
    ("KM_E_INVALID", -1, "InvalidArgument", ValueError),
    ("KM_E_UNSUPPORTED", -2, "Unsupported", None),
    ("KM_E_NOMEM", -3, "OutOfMemory", MemoryError),
    ("KM_E_NOTFOUND", -4, "NotFound", None),
    ("KM_E_EXISTS", -5, "AlreadyExists", None),
    ("KM_E_AUTH", -6, "AuthError", None),
    ("KM_E_INTEGRITY", -7, "IntegrityError", None),
    ("KM_E_VERIFY", -8, "VerifyError", None),
    ("KM_E_STATE", -9, "StateError", None),
    ("KM_E_USAGE", -10, "UsageError", None),
    ("KM_E_POLICY", -11, "PolicyError", None),
    ("KM_E_DENIED", -12, "AccessDenied", None),
    ("KM_E_LIMIT", -13, "LimitReached", None),
    ("KM_E_BUFFER", -14, "BufferTooSmall", None),
    ("KM_E_CORRUPT", -15, "CorruptVault", None),
    ("KM_E_IO", -16, "StorageError", None),
    ("KM_E_FULL", -17, "VaultFull", None),
    ("KM_E_BACKEND", -18, "BackendError", None),
    ("KM_E_CRYPTO", -19, "CryptoError", None),
    ("KM_E_FORK", -20, "ForkError", None),
    ("KM_E_BUSY", -21, "Busy", None),
    ("KM_E_INTERNAL", -22, "InternalError", None),
)

NATIVE_KINDS = {0: None, 1: "errno", 2: "lmdb", 3: "openssl", 4: "pkcs11", 5: "tss2",
                6: "kmip"}


class KmError(Exception):
    """A libkm error.

    Attributes:
        code: the negative km_error_code (e.g. -4).
        name: its C name (e.g. "KM_E_NOTFOUND").
        message: km_error_last()'s one-line message (never secrets).
        native_kind: what ``native`` is: None, "errno", "lmdb", "openssl",
            "pkcs11", "tss2" or "kmip".
        native: the backend's own code (CK_RV, TSS2_RC, MDB rc, errno), or 0.
        function: the C function that failed, when known.
    """

    code = None
    name = "KM_E_UNKNOWN"

    def __init__(self, message=None, code=None, native_kind=None, native=0, function=None):
        if code is not None:
            self.code = code
        if message is None:
            message = self.name
        super().__init__(message)
        self.message = message
        self.native_kind = native_kind
        self.native = native
        self.function = function

    def __str__(self):
        return "%s: %s" % (self.name, self.message) if not self.message.startswith(
            self.name) else self.message


KmError.__module__ = "km"

CODES = {}      # code -> class
CLASSES = {}    # Python class name -> class
for _name, _value, _cls, _extra in _ERRORS:
    _bases = (KmError,) if _extra is None else (KmError, _extra)
    _doc = "libkm error %s (%d)." % (_name, _value)
    _klass = type(_cls, _bases, {"code": _value, "name": _name, "__doc__": _doc,
                                 "__module__": "km"})
    CODES[_value] = _klass
    CLASSES[_cls] = _klass
del _name, _value, _cls, _extra, _bases, _doc, _klass


def error_for(code, function=None):
    """Builds the exception for `code` from the calling thread's last error.

    Must be called right after the failing call, on the same thread (the
    last error is per thread and overwritten by the next libkm call).
    """
    message, kind, native = None, None, 0
    try:
        last = lib.km_error_last().contents
        if last.code == code:
            message = last.message.decode("utf-8", "replace") if last.message else None
            kind = NATIVE_KINDS.get(last.native_kind, last.native_kind)
            native = last.native
        if message is None:
            message = lib.km_strerror(code).decode("utf-8", "replace")
    except Exception:  # pragma: no cover - never hide the original error
        pass
    klass = CODES.get(code)
    if klass is None:
        return KmError(message or "unknown libkm error %d" % code, code=code,
                       native_kind=kind, native=native, function=function)
    return klass(message, native_kind=kind, native=native, function=function)


def _check(result, func, args):
    """errcheck of int-returning functions: KM_OK passes, a negative code raises."""
    if result < 0:
        raise error_for(result, func.__name__)
    return result


def _check_verify(result, func, args):
    """errcheck of km_verify/km_mac_verify: True if valid, False for KM_E_VERIFY."""
    if result == 0:
        return True
    if result == CLASSES["VerifyError"].code:
        return False
    raise error_for(result, func.__name__)


def _check_string(result, func, args):
    """errcheck of functions returning a static/borrowed char*: str, or None for NULL."""
    return None if result is None else result.decode("utf-8", "replace")


# ---------------------------------------------------------------- the function table

_int, _u32, _i64, _size, _ccp, _vp = (ctypes.c_int, ctypes.c_uint32, ctypes.c_int64,
                                      ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p)

# name: (restype, argtypes, errcheck)
_FUNCTIONS = {
    # common.h
    "km_version": (_ccp, [], _check_string),
    "km_init": (_int, [], _check),
    "km_key_schedules": (_int, [], None),
    # sys/backend.h
    "km_backend_names": (_int, [_vp, _size, ctypes.POINTER(ctypes.c_size_t)], _check),
    # error.h
    "km_strerror": (_ccp, [_int], None),
    "km_err_name": (_ccp, [_int], None),
    "km_error_last": (ctypes.POINTER(km_error), [], None),
    "km_error_clear": (None, [], None),
    # secret.h
    "km_secret_new": (_int, [ctypes.POINTER(SECRET_P), _size], _check),
    "km_secret_from": (_int, [ctypes.POINTER(SECRET_P), _vp, _size], _check),
    "km_secret_data": (U8_P, [SECRET_P], None),
    "km_secret_len": (_size, [SECRET_P], None),
    "km_secret_free": (None, [SECRET_P], None),
    "km_ct_equal": (_int, [_vp, _vp, _size], None),
    "km_memzero": (None, [_vp, _size], None),
    # vault.h
    "km_open": (_int, [ctypes.POINTER(CTX_P), _ccp, ctypes.POINTER(km_open_options)], _check),
    "km_close": (None, [CTX_P], None),
    "km_vault_add_passphrase": (_int, [CTX_P, U8_P, _size, _u32], _check),
    "km_vault_id": (_int, [CTX_P, U8_P], _check),
    "km_vault_add_backend_slot": (_int, [CTX_P, _ccp, _ccp], _check),
    "km_vault_add_shares": (_int, [CTX_P, ctypes.c_uint, ctypes.c_uint,
                                   ctypes.POINTER(SECRET_P)], _check),
    "km_vault_remove_passphrases": (_int, [CTX_P], _check),
    "km_set_progress": (_int, [CTX_P, km_progress_fn, _vp], _check),
    # key.h
    "km_key_type_name": (_ccp, [_int], _check_string),
    "km_key_type_from_name": (_int, [_ccp, INT_P], _check),
    "km_state_name": (_ccp, [_int], _check_string),
    "km_key_create": (_int, [ctypes.POINTER(KEY_P), CTX_P, _ccp, _int,
                             ctypes.POINTER(km_key_options)], _check),
    "km_key_import": (_int, [ctypes.POINTER(KEY_P), CTX_P, _ccp, _int, _int, U8_P, _size,
                             _u32, ctypes.POINTER(km_key_options)], _check),
    "km_key_open": (_int, [ctypes.POINTER(KEY_P), CTX_P, _ccp], _check),
    "km_key_open_id": (_int, [ctypes.POINTER(KEY_P), CTX_P, U8_P], _check),
    "km_key_free": (None, [KEY_P], None),
    "km_key_name": (_ccp, [KEY_P], _check_string),
    "km_key_id": (U8_P, [KEY_P], None),
    "km_key_get_type": (_int, [KEY_P], None),
    "km_key_list": (_int, [CTX_P, km_key_list_fn, _vp], _check),
    "km_key_rotate": (_int, [KEY_P, U32_P], _check),
    "km_key_info": (_int, [ctypes.POINTER(KEYINFO_P), KEY_P], _check),
    "km_keyinfo_free": (None, [KEYINFO_P], None),
    "km_keyinfo_name": (_ccp, [KEYINFO_P], _check_string),
    "km_keyinfo_id": (U8_P, [KEYINFO_P], None),
    "km_keyinfo_type": (_int, [KEYINFO_P], None),
    "km_keyinfo_usage": (_u32, [KEYINFO_P], None),
    "km_keyinfo_flags": (_u32, [KEYINFO_P], None),
    "km_keyinfo_protection": (_ccp, [KEYINFO_P], _check_string),
    "km_keyinfo_created": (_i64, [KEYINFO_P], None),
    "km_keyinfo_primary": (_u32, [KEYINFO_P], None),
    "km_keyinfo_version_count": (_u32, [KEYINFO_P], None),
    "km_keyinfo_version": (_int, [KEYINFO_P, _u32, ctypes.POINTER(km_version_info), _size],
                           _check),
    "km_key_public_export": (_int, [KEY_P, _u32, _int, U8_P, _size, SIZE_P], _check),
    # crypto.h
    "km_ciphertext_overhead": (_size, [], None),
    "km_signature_max": (_size, [], None),
    "km_mac_max": (_size, [], None),
    "km_encrypt": (_int, [KEY_P, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_decrypt": (_int, [CTX_P, _u32, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_decrypt_key": (_int, [KEY_P, _u32, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P],
                       _check),
    "km_sign": (_int, [KEY_P, _u32, U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_verify": (_int, [KEY_P, _u32, _u32, U8_P, _size, U8_P, _size], _check_verify),
    "km_sign_digest": (_int, [KEY_P, _u32, _u32, _ccp, U8_P, _size, U8_P, _size, SIZE_P],
                       _check),
    "km_rsa_decrypt": (_int, [KEY_P, _u32, U8_P, _size, ctypes.POINTER(SECRET_P)], _check),
    "km_mac": (_int, [KEY_P, _u32, U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_mac_verify": (_int, [KEY_P, _u32, _u32, U8_P, _size, U8_P, _size], _check_verify),
    # char *out declared as uint8_t * (same ABI) so that every output buffer is a c_uint8 array
    "km_text_encode": (_int, [U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_text_decode": (_int, [ctypes.c_char_p, _size, U8_P, _size, SIZE_P], _check),
    "km_random": (_int, [CTX_P, _ccp, U8_P, _size], _check),
    "km_datakey_generate_type": (_int, [KEY_P, _int, U8_P, _size, ctypes.POINTER(SECRET_P), U8_P,
                                        _size, SIZE_P], _check),
    "km_datakey_pair_generate": (_int, [KEY_P, _int, U8_P, _size, ctypes.POINTER(SECRET_P), U8_P,
                                        _size, SIZE_P, U8_P, _size, SIZE_P], _check),
    "km_datakey_pair_decrypt": (_int, [CTX_P, U8_P, _size, U8_P, _size,
                                       ctypes.POINTER(SECRET_P)], _check),
    "km_rewrap_to": (_int, [CTX_P, U8_P, _size, U8_P, _size, KEY_P, U8_P, _size, U8_P, _size,
                            SIZE_P], _check),
    "km_rewrap_ex": (_int, [CTX_P, _u32, U8_P, _size, U8_P, _size, KEY_P, U8_P, _size, U8_P,
                            _size, SIZE_P], _check),
    "km_batch": (_int, [KEY_P, _int, _u32, ctypes.POINTER(km_batch_item), _size], None),
    "km_rewrap_batch_ex": (_int, [CTX_P, _u32, ctypes.POINTER(km_batch_item), _size], None),
    "km_rsa_oaep_encrypt": (_int, [KEY_P, _u32, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P],
                            _check),
    "km_rsa_oaep_decrypt": (_int, [KEY_P, _u32, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P],
                            _check),
    # lifecycle.h
    "km_revoke_reason_name": (_ccp, [_int], _check_string),
    "km_revoke_reason_from_name": (_int, [_ccp, INT_P], _check),
    "km_key_activate": (_int, [KEY_P, _u32], _check),
    "km_key_suspend": (_int, [KEY_P, _u32], _check),
    "km_key_resume": (_int, [KEY_P, _u32], _check),
    "km_key_revoke": (_int, [KEY_P, _u32, _int, _i64], _check),
    "km_key_schedule_destroy": (_int, [KEY_P, _u32, _u32], _check),
    "km_key_cancel_destroy": (_int, [KEY_P, _u32], _check),
    "km_maintain": (_int, [CTX_P, ctypes.POINTER(REPORT_P)], _check),
    "km_maintain_report_count": (_size, [REPORT_P], None),
    "km_maintain_report_get": (_int, [REPORT_P, _size, ctypes.POINTER(_ccp), U32_P,
                                      ctypes.POINTER(_ccp)], _check),
    "km_maintain_report_free": (None, [REPORT_P], None),
    # policy.h
    "km_policy_set": (_int, [CTX_P, ctypes.c_char_p, _size], _check),
    "km_policy_get": (_int, [CTX_P, U8_P, _size, SIZE_P], _check),
    "km_policy_report": (_int, [CTX_P, ctypes.POINTER(FINDINGS_P)], _check),
    "km_policy_findings_count": (_size, [FINDINGS_P], None),
    "km_policy_findings_get": (_int, [FINDINGS_P, _size, ctypes.POINTER(_ccp),
                                      ctypes.POINTER(_ccp)], _check),
    "km_policy_findings_free": (None, [FINDINGS_P], None),
    "km_vault_backend_set": (_int, [CTX_P, _ccp, _ccp], _check),
    "km_vault_rekey": (_int, [CTX_P, U8_P, _size, _u32], _check),
    "km_vault_compact": (_int, [CTX_P], _check),
    "km_vault_backup": (_int, [CTX_P, _ccp], _check),
    "km_vault_restore": (_int, [_ccp, _ccp], _check),
    "km_vault_copy": (_int, [CTX_P, _ccp, ctypes.POINTER(km_open_options)], _check),
    # distribute.h
    "km_key_export_wrapped": (_int, [KEY_P, _u32, _int, KEY_P, U8_P, _size, U8_P, _size, SIZE_P],
                              _check),
    "km_key_import_wrapped": (_int, [ctypes.POINTER(KEY_P), CTX_P, _ccp, _int, _int, U8_P, _size,
                                     ctypes.POINTER(km_key_options)], _check),
    "km_vault_wrapping_key": (_int, [CTX_P, _int, U8_P, _size, SIZE_P], _check),
    # derive.h
    "km_derive": (_int, [KEY_P, U8_P, _size, U8_P, _size, _size, ctypes.POINTER(SECRET_P)], _check),
    "km_agree": (_int, [KEY_P, U8_P, _size, U8_P, _size, _size, ctypes.POINTER(SECRET_P)], _check),
    "km_agree_raw": (_int, [KEY_P, U8_P, _size, ctypes.POINTER(SECRET_P)], _check),
    "km_session_key_create": (_int, [ctypes.POINTER(KEY_P), CTX_P, _int], _check),
    # envelope.h
    "km_datakey_wrapped_len": (_size, [], None),
    "km_datakey_generate": (_int, [KEY_P, U8_P, _size, ctypes.POINTER(SECRET_P), U8_P, _size,
                                   SIZE_P], _check),
    "km_datakey_decrypt": (_int, [CTX_P, U8_P, _size, U8_P, _size, ctypes.POINTER(SECRET_P)],
                           _check),
    "km_rewrap": (_int, [CTX_P, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P], _check),
    "km_rewrap_batch": (_int, [CTX_P, _size, ctypes.POINTER(U8_P), SIZE_P, ctypes.POINTER(U8_P),
                               SIZE_P, ctypes.POINTER(U8_P), SIZE_P, SIZE_P, INT_P], _check),
    # audit.h
    "km_audit_set_level": (_int, [CTX_P, _int], _check),
    "km_audit_get_level": (_int, [CTX_P, INT_P], _check),
    "km_audit_flush": (_int, [CTX_P], _check),
    "km_audit_head_get": (_int, [CTX_P, ctypes.POINTER(km_audit_head)], _check),
    "km_audit_verify": (_int, [CTX_P, ctypes.POINTER(km_audit_head),
                               ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64)],
                        _check),
    "km_audit_foreach": (_int, [CTX_P, ctypes.c_uint64, km_audit_fn, _vp], _check),
    "km_audit_alerts": (_int, [CTX_P, ctypes.c_uint64, km_audit_alert_fn, _vp], _check),
    "km_audit_entry_json": (_int, [ctypes.POINTER(km_audit_entry), ctypes.c_char_p, _size,
                                   SIZE_P], _check),
    "km_audit_sink_syslog": (_int, [CTX_P, _int], _check),
    "km_audit_sink_file": (_int, [CTX_P, _ccp], _check),
    # acl.h
    "km_principal_add": (_int, [CTX_P, _ccp, _u32, U8_P, _size, _u32], _check),
    "km_principal_remove": (_int, [CTX_P, _ccp, _int], _check),
    "km_principal_list": (_int, [CTX_P, km_principal_fn, _vp], _check),
    "km_whoami": (_int, [CTX_P, ctypes.c_char_p, _size, ctypes.POINTER(_u32)], _check),
    "km_key_grant": (_int, [KEY_P, _ccp, _u32], _check),
    "km_key_perms": (_int, [KEY_P, ctypes.POINTER(_u32)], _check),
    # quorum.h
    "km_request_create": (_int, [CTX_P, _int, _ccp, U8_P, _size, _u32, U8_P], _check),
    "km_request_approve": (_int, [CTX_P, U8_P], _check),
    "km_request_info": (_int, [CTX_P, U8_P, ctypes.POINTER(km_request_status)], _check),
    "km_request_describe": (_int, [CTX_P, U8_P, U8_P, _size, SIZE_P], _check),
    # pkcs11.h
    "km_pkcs11_tokens": (_int, [ctypes.POINTER(P11LIST_P), _ccp], _check),
    "km_pkcs11_certificates": (_int, [ctypes.POINTER(P11LIST_P), _ccp], _check),
    "km_pkcs11_list_count": (_size, [P11LIST_P], None),
    "km_pkcs11_list_get": (_ccp, [P11LIST_P, _size, _int], None),
    "km_pkcs11_list_free": (None, [P11LIST_P], None),
    "km_pkcs11_set_pin_callback": (_int, [km_pkcs11_pin_fn, _vp], _check),
    "km_pkcs11_set_pin_cache": (_int, [_int], _check),
    "km_pkcs11_pin_cache_clear": (_int, [], _check),
    "km_pkcs11_key_link": (_int, [ctypes.POINTER(KEY_P), CTX_P, _ccp, _ccp,
                                  ctypes.POINTER(km_key_options)], _check),
    # key.h: names and metadata (issue 22)
    "km_key_rename": (_int, [KEY_P, _ccp], _check),
    "km_key_alias_add": (_int, [KEY_P, _ccp, _u32], _check),
    "km_key_alias_remove": (_int, [CTX_P, _ccp], _check),
    "km_key_set_description": (_int, [KEY_P, _ccp], _check),
    "km_key_set_tag": (_int, [KEY_P, _ccp, _ccp], _check),
    "km_keyinfo_description": (_ccp, [KEYINFO_P], _check_string),
    "km_keyinfo_alias_count": (_u32, [KEYINFO_P], None),
    "km_keyinfo_alias": (_ccp, [KEYINFO_P, _u32], _check_string),
    "km_keyinfo_tag_count": (_u32, [KEYINFO_P], None),
    "km_keyinfo_tag": (_int, [KEYINFO_P, _u32, ctypes.POINTER(_ccp), ctypes.POINTER(_ccp)],
                       _check),
    "km_key_list_filtered": (_int, [CTX_P, ctypes.POINTER(km_key_filter), km_key_list_fn, _vp],
                             _check),
    "km_key_set": (_int, [KEY_P, ctypes.POINTER(km_key_settings)], _check),
    "km_keyinfo_periods": (None, [KEYINFO_P, U32_P, U32_P, U32_P, U32_P], None),
    "km_keyinfo_policy": (_ccp, [KEYINFO_P], _check_string),
    "km_keyinfo_window": (None, [KEYINFO_P, U32_P, U32_P], None),
    "km_key_trim": (_int, [KEY_P, _u32, U32_P], _check),
    "km_key_purge": (_int, [KEY_P], _check),
    "km_keyinfo_owner": (_ccp, [KEYINFO_P], _check_string),
    "km_key_grants": (_int, [KEY_P, km_grant_fn, _vp], _check),
    "km_key_backup": (_int, [KEY_P, U8_P, _size, U8_P, _size, U8_P, _size, SIZE_P], None),
    "km_key_restore": (_int, [CTX_P, U8_P, _size, U8_P, _size, _ccp, ctypes.POINTER(KEY_P)],
                       _check),
}


class _Lib:
    """Namespace of the declared functions (attributes named as in C)."""

    def __init__(self, cdll, path):
        self._cdll = cdll
        self.path = path
        self.missing = []
        for name, (restype, argtypes, errcheck) in _FUNCTIONS.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                self.missing.append(name)
                setattr(self, name, _missing(name))
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            if errcheck is not None:
                fn.errcheck = errcheck
            setattr(self, name, fn)


def _missing(name):
    def call(*args, **kwargs):
        raise CLASSES["Unsupported"]("%s is not in the loaded libkm (%s)" % (name, lib.path),
                                     function=name)
    call.__name__ = name
    return call


lib = _Lib(*_load())


# ---------------------------------------------------------------- buffers

def wipe(buf):
    """Zeroes a ctypes buffer or a bytearray in place (bytes cannot be wiped)."""
    if buf is None:
        return
    if isinstance(buf, bytearray):
        n = len(buf)
        if n:
            ctypes.memset((ctypes.c_char * n).from_buffer(buf), 0, n)
        return
    ctypes.memset(buf, 0, ctypes.sizeof(buf))


def in_buffer(data, what):
    """A private ctypes copy of a bytes-like input, for passing as const uint8_t*.

    Returns (buffer, length). The buffer has at least one byte so that the
    pointer is never NULL; the caller wipes it when the input is secret.
    """
    if data is None:
        data = b""
    if isinstance(data, str):
        raise TypeError("%s must be bytes-like, not str" % what)
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError("%s must be bytes-like, not %s" % (what, type(data).__name__)) from None
    with view:
        n = view.nbytes
        if n == 0:
            return (ctypes.c_uint8 * 1)(), 0
        if not view.c_contiguous:  # rare (a sliced array): one intermediate copy
            return in_buffer(view.tobytes(), what)
        buf = (ctypes.c_uint8 * n).from_buffer_copy(view)
    return buf, n


def in_data(data, what):
    """(pointer, length) of a non-secret bytes-like input; no copy for bytes."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), U8_P), len(data)
    return in_buffer(data, what)
