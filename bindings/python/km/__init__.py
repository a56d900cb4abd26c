"""km: Python bindings of libkm, key management for the whole life of keys.

    import km
    with km.Vault.open("/var/lib/app/vault", passphrase=b"correct horse", create=True) as v:
        k = v.create_key("orders", "aes-256-gcm")
        ct = k.encrypt(b"hello", aad=b"order 42")
        assert v.decrypt(ct, aad=b"order 42") == b"hello"

Conventions
-----------
* Every libkm error code raises its own subclass of ``km.KmError`` (for
  example ``km.NotFound``, ``km.AuthError``, ``km.IntegrityError``); the
  exception carries ``.code``, ``.name``, ``.message`` (km_error_last()) and
  the backend's ``.native_kind`` / ``.native`` code. ``km.InvalidArgument``
  is also a ``ValueError`` and ``km.OutOfMemory`` a ``MemoryError``.
* ``Key.verify`` and ``Key.mac_verify`` return ``False`` for a signature or
  tag that does not verify (KM_E_VERIFY) and raise for every other error
  (a malformed header, a wrong key, a state that forbids verifying, ...).
* Handles (``Vault``, ``Key``) are context managers and are also released by
  ``weakref.finalize`` when garbage-collected. A key keeps its vault alive;
  closing a vault closes its keys first. Using a closed handle raises
  ``km.StateError`` (as libkm does for a key of a closed vault). ``close()``
  waits for calls in progress on other threads. In a child after ``fork()``
  inherited handles raise ``km.ForkError``: open the vault again there.
* Secrets: a passphrase or key material is copied into a private ctypes
  buffer that is wiped after the call. A ``bytearray`` given by the caller is
  the caller's to wipe (use ``km.wipe(buf)``); ``str`` is refused for secrets
  because Python strings cannot be wiped. Secrets that libkm returns come
  back as ``bytearray`` (wipe them with ``km.wipe``). Decrypted plaintext is
  the application's data and comes back as ``bytes``; the C buffer it passed
  through is wiped.

The library is loaded from ``$KM_LIBRARY``, else ``libkm.so.0`` next to this
package, else the soname ``libkm.so.0`` (see km/_ffi.py).
"""

import ctypes
import datetime as _dt
import os
import threading
import weakref

from . import _ffi
from ._ffi import KmError, lib, wipe

__all__ = ["Vault", "Key", "KmError", "version", "encode_text", "decode_text", "wipe",
           "error_class", "KEY_TYPES", "USAGES"] + sorted(_ffi.CLASSES)

# one exception class per error code: km.NotFound, km.AuthError, ...
globals().update(_ffi.CLASSES)
InvalidArgument = _ffi.CLASSES["InvalidArgument"]
StateError = _ffi.CLASSES["StateError"]
BufferTooSmall = _ffi.CLASSES["BufferTooSmall"]
Unsupported = _ffi.CLASSES["Unsupported"]

CIPHERTEXT_OVERHEAD = lib.km_ciphertext_overhead()
SIGNATURE_MAX = lib.km_signature_max()
MAC_MAX = lib.km_mac_max()
CIPHERTEXT_HEADER = _ffi.KM_CIPHERTEXT_HEADER
TAG_HEADER = _ffi.KM_TAG_HEADER
KDF_COST_MIN = _ffi.KM_KDF_COST_MIN
KDF_COST_MAX = _ffi.KM_KDF_COST_MAX
KDF_COST_DEFAULT = _ffi.KM_KDF_COST_DEFAULT

#: key type names accepted by create_key/import_key (km_key_type_name of 1, 2, ...)
KEY_TYPES = tuple(n for n in (lib.km_key_type_name(i) for i in range(1, 64)) if n) \
    if "km_key_type_name" not in lib.missing else ()

#: usage names and their KM_USAGE_* bits
USAGES = {"encrypt": 0x001, "decrypt": 0x002, "sign": 0x004, "verify": 0x008, "mac": 0x010,
          "mac-verify": 0x020, "wrap": 0x040, "unwrap": 0x080, "derive": 0x100,
          "agree": 0x200}
_KEY_FLAGS = {"exportable": _ffi.KM_KEY_EXPORTABLE, "public-only": _ffi.KM_KEY_PUBLIC_ONLY}
_FORMATS = {"raw": _ffi.KM_MATERIAL_RAW, "pkcs8": _ffi.KM_MATERIAL_PKCS8_DER,
            "spki": _ffi.KM_MATERIAL_SPKI_DER, "pem": _ffi.KM_MATERIAL_PEM}


# ---------------------------------------------------------------- module functions

def version():
    """The version string of the loaded libkm ("0.1.0")."""
    return lib.km_version()


def error_class(code):
    """The KmError subclass of a libkm error code (KmError for an unknown one)."""
    return _ffi.CODES.get(code, KmError)


def encode_text(data):
    """Encodes binary libkm output (a ciphertext, signature, MAC) as "km1:..." text."""
    p, n = _ffi.in_data(data, "data")
    return _sized(lambda out, cap, out_len: lib.km_text_encode(p, n, out, cap, out_len),
                  4 + (n * 4 + 2) // 3 + 1).decode("ascii")


def decode_text(text):
    """Decodes the "km1:" text form to bytes; km.InvalidArgument if malformed."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidArgument("km1 text must be ASCII", function="decode_text") from None
    elif not isinstance(text, (bytes, bytearray, memoryview)):
        raise TypeError("text must be str or bytes")
    text = bytes(text)
    return _sized(lambda out, cap, out_len: lib.km_text_decode(text, len(text), out, cap,
                                                               out_len),
                  len(text) * 3 // 4 + 3)


# ---------------------------------------------------------------- helpers

def _sized(call, cap, secret=False):
    """Runs call(out, out_cap, &out_len) with a buffer of `cap` bytes; on
    KM_E_BUFFER retries with the size libkm reports. Returns bytes (a
    bytearray when `secret`). The C buffer is wiped before it is dropped."""
    for _ in range(3):
        cap = max(int(cap), 1)
        out = (ctypes.c_uint8 * cap)()
        out_len = ctypes.c_size_t(0)
        try:
            call(out, cap, ctypes.byref(out_len))
            n = min(out_len.value, cap)
            return bytearray(memoryview(out)[:n]) if secret else ctypes.string_at(out, n)
        except BufferTooSmall:
            if out_len.value <= cap:
                raise
            cap = out_len.value
        finally:
            wipe(out)
    raise BufferTooSmall("output size kept growing", function="_sized")  # pragma: no cover


def _cstr(s, what):
    if isinstance(s, str):
        s = s.encode("utf-8")
    elif not isinstance(s, bytes):
        raise TypeError("%s must be str, not %s" % (what, type(s).__name__))
    if b"\0" in s:
        raise InvalidArgument("%s contains a NUL character" % what, function=what)
    return s


def _key_type(t):
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    out = ctypes.c_int(0)
    lib.km_key_type_from_name(_cstr(t, "type"), ctypes.byref(out))
    return out.value


def _mask(value, names, what):
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = [value]
    mask = 0
    for v in value:
        try:
            mask |= names[v]
        except KeyError:
            raise InvalidArgument("unknown %s %r (one of %s)" % (what, v, ", ".join(names)),
                                  function=what) from None
    return mask


def _names(mask, names):
    out = [n for n, bit in names.items() if mask & bit]
    rest = mask & ~sum(names.values())
    if rest:
        out.append("0x%x" % rest)
    return out


def _key_options(usage=None, exportable=False, protection=None, activate_at=None,
                 rotate_days=None, protect_days=None, process_days=None,
                 destroy_grace_days=None):
    o = _ffi.km_key_options()
    o.version = _ffi.KM_KEY_OPTIONS_VERSION
    o.usage = _mask(usage, USAGES, "usage")
    o.flags = _ffi.KM_KEY_EXPORTABLE if exportable else 0
    o.protection = None if protection is None else _cstr(protection, "protection")
    if isinstance(activate_at, _dt.datetime):
        activate_at = int(activate_at.timestamp())
    o.activate_at = int(activate_at or 0)
    o.rotate_days = int(rotate_days or 0)
    o.protect_days = int(protect_days or 0)
    o.process_days = int(process_days or 0)
    o.destroy_grace_days = int(destroy_grace_days or 0)
    return o


def _time(t):
    return None if t == 0 else t


def _sig_flags(raw, p1363):
    return (_ffi.KM_SIG_RAW if raw else 0) | (_ffi.KM_SIG_P1363 if p1363 else 0)


_HANDLES = weakref.WeakSet()


class _Handle:
    """A C pointer shared by threads: close() waits for calls in progress,
    then frees it once; a use after close raises km.StateError."""

    def __init__(self, ptr, free, what, parent=None):
        self._ptr = ptr
        self._free = free
        self._what = what
        self._users = 0
        self._cond = threading.Condition(threading.Lock())
        self._parent = parent
        self.children = set()
        if parent is not None:
            parent.add_child(self)
        _HANDLES.add(self)

    def _after_fork_in_child(self):
        # the threads that held uses do not exist in the child: forget them, so
        # that close() (at exit, say) frees at once; libkm refuses other uses
        # there with KM_E_FORK and frees handles without touching the vault.
        self._cond = threading.Condition(threading.Lock())
        self._users = 0

    def acquire(self):
        with self._cond:
            if self._ptr is None:
                raise StateError("%s is closed" % self._what, function=self._what)
            self._users += 1
            return self._ptr

    def release(self):
        with self._cond:
            self._users -= 1
            if self._users == 0:
                self._cond.notify_all()

    def add_child(self, child):
        with self._cond:
            if self._ptr is None:  # closing: a key opened meanwhile is freed at once
                raise StateError("%s is closed" % self._what, function=self._what)
            self.children.add(child)

    def discard_child(self, child):
        with self._cond:
            self.children.discard(child)

    @property
    def closed(self):
        return self._ptr is None

    def close(self):
        with self._cond:
            ptr, self._ptr = self._ptr, None
            if ptr is None:
                return
            while self._users:
                self._cond.wait()
            children, self.children = list(self.children), set()
        for c in children:  # keys before their vault
            c.close()
        self._free(ptr)
        if self._parent is not None:
            self._parent.discard_child(self)


def _after_fork_in_child():
    for h in list(_HANDLES):
        h._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Use:
    """`with _Use(handle) as ptr:` holds a use of the handle for one C call."""
    __slots__ = ("_h",)

    def __init__(self, handle):
        self._h = handle

    def __enter__(self):
        return self._h.acquire()

    def __exit__(self, *exc):
        self._h.release()


# ---------------------------------------------------------------- Vault

class Vault:
    """An open libkm vault (km_ctx). Create with Vault.open()."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use km.Vault.open(path, passphrase=...)")

    @classmethod
    def open(cls, path, passphrase, create=False, kdf_cost=None, *, exclusive=False,
             strict_refresh=False, refresh_ms=None, map_size=None):
        """Opens (with create=True: creates if absent) the vault at `path`.

        path: a directory path (str, bytes or os.PathLike) or an "lmdb:/dir" URI.
        passphrase: bytes or bytearray (1 to 1024 bytes). It is copied into a
            private buffer that is wiped as soon as km_open returns; a bytearray
            passed in is not wiped here (that is the caller's choice).
        create: create the vault when the directory holds none.
        kdf_cost: log2 of scrypt's N for a newly created passphrase slot
            (km.KDF_COST_MIN..KDF_COST_MAX; None = libkm's default, 17).
        exclusive: with create, fail with AlreadyExists if a vault exists.
        strict_refresh: re-read key state on every use (KM_OPEN_STRICT_REFRESH).
        refresh_ms, map_size: see km_open_options.

        Raises: NotFound (no vault and not create), AuthError (wrong
        passphrase), AlreadyExists (exclusive), CorruptVault, Unsupported (a
        newer vault format), StorageError, InvalidArgument.
        """
        uri = os.fsencode(os.fspath(path))
        if isinstance(passphrase, str):
            raise TypeError("passphrase must be bytes or bytearray (a str cannot be wiped)")
        if not isinstance(passphrase, (bytes, bytearray, memoryview)):
            raise TypeError("passphrase must be bytes or bytearray, not %s"
                            % type(passphrase).__name__)
        o = _ffi.km_open_options()
        o.version = _ffi.KM_OPEN_OPTIONS_VERSION
        o.flags = ((_ffi.KM_OPEN_CREATE if create else 0)
                   | (_ffi.KM_OPEN_EXCL if exclusive else 0)
                   | (_ffi.KM_OPEN_STRICT_REFRESH if strict_refresh else 0))
        o.kdf_cost = 0 if kdf_cost is None else int(kdf_cost)
        o.refresh_ms = 0 if refresh_ms is None else int(refresh_ms)
        o.map_size = 0 if map_size is None else int(map_size)
        buf, n = _ffi.in_buffer(passphrase, "passphrase")
        ctx = _ffi.CTX_P()
        try:
            o.passphrase = ctypes.cast(buf, _ffi.U8_P)
            o.passphrase_len = n
            lib.km_open(ctypes.byref(ctx), uri, ctypes.byref(o))
        finally:
            o.passphrase = None
            wipe(buf)
        self = object.__new__(cls)
        self._uri = uri
        self._h = _Handle(ctx, lib.km_close, "vault")
        self._finalizer = weakref.finalize(self, self._h.close)
        return self

    # -- handle
    def close(self):
        """Closes the vault: first every key handle opened from it, then km_close
        (which wipes the master key). Idempotent."""
        self._finalizer()

    @property
    def closed(self):
        return self._h.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<km.Vault %r%s>" % (os.fsdecode(self._uri), " closed" if self.closed else "")

    # -- keys
    def create_key(self, name, type, **options):
        """Creates a key with a fresh first version and returns its Key.

        type: a type name ("aes-256-gcm", "ec-p256", ...; see km.KEY_TYPES).
        Keyword options (km_key_options):
          usage: None (every usage the type supports), a KM_USAGE_* mask or
            names from km.USAGES;  exportable: bool;
          protection: backend name (None = "software");
          activate_at: epoch seconds or datetime (a future date creates the
            version PRE_ACTIVE; None = now);
          rotate_days, protect_days, process_days, destroy_grace_days: the
            key's periods in days (None = none; grace None = libkm's 30).
        Raises: AlreadyExists (name taken), Unsupported (unknown type name or
        protection), InvalidArgument (bad name or usage), BackendError, StorageError.
        """
        cname = _cstr(name, "name")
        ktype = _key_type(type)
        o = _key_options(**options)
        out = _ffi.KEY_P()
        with _Use(self._h) as ctx:
            lib.km_key_create(ctypes.byref(out), ctx, cname, ktype, ctypes.byref(o))
            return Key._new(self, out)

    def import_key(self, name, type, material, format="raw", **options):
        """Imports plaintext key material as a new key (KM_IMPORT_ALLOW_RAW:
        calling this method is the deliberate act the flag stands for).

        material: bytes/bytearray (or str for "pem"); copied and the copy wiped.
        format: "raw" (symmetric bytes; 32-byte Ed25519/X25519 private keys),
            "pkcs8" (DER), "spki" (DER public key: a verify-only key), "pem".
        options: as create_key().
        Raises: InvalidArgument (bad length, unparsable material, a type
        mismatch), AlreadyExists, StorageError.
        """
        cname = _cstr(name, "name")
        ktype = _key_type(type)
        try:
            fmt = _FORMATS[format]
        except KeyError:
            raise InvalidArgument("format must be raw, pkcs8, spki or pem",
                                  function="import_key") from None
        if isinstance(material, str):
            if fmt != _ffi.KM_MATERIAL_PEM:
                raise TypeError("material must be bytes-like (str only for pem)")
            material = material.encode("ascii")
        o = _key_options(**options)
        buf, n = _ffi.in_buffer(material, "material")
        out = _ffi.KEY_P()
        try:
            with _Use(self._h) as ctx:
                lib.km_key_import(ctypes.byref(out), ctx, cname, ktype, fmt, buf, n,
                                  _ffi.KM_IMPORT_ALLOW_RAW, ctypes.byref(o))
                return Key._new(self, out)
        finally:
            wipe(buf)

    def key(self, name):
        """Opens the key named `name`. Raises NotFound."""
        cname = _cstr(name, "name")
        out = _ffi.KEY_P()
        with _Use(self._h) as ctx:
            lib.km_key_open(ctypes.byref(out), ctx, cname)
            return Key._new(self, out)

    def key_by_id(self, key_id):
        """Opens a key by its 16-byte id (bytes, or 32 hex digits). Raises NotFound."""
        if isinstance(key_id, str):
            key_id = bytes.fromhex(key_id)
        if len(key_id) != 16:
            raise InvalidArgument("a key id has 16 bytes", function="key_by_id")
        idbuf = (ctypes.c_uint8 * 16).from_buffer_copy(bytes(key_id))
        out = _ffi.KEY_P()
        with _Use(self._h) as ctx:
            lib.km_key_open_id(ctypes.byref(out), ctx, idbuf)
            return Key._new(self, out)

    def keys(self):
        """Every key of the vault as a list of (name, id as hex, type name), in id order."""
        found, failure = [], []

        def each(name, key_id, ktype, arg):
            try:
                found.append((name.decode("utf-8", "replace"),
                              ctypes.string_at(key_id, 16).hex(),
                              lib.km_key_type_name(ktype) or str(ktype)))
                return 0
            except BaseException as e:  # pragma: no cover - never unwind through C
                failure.append(e)
                return 1

        cb = _ffi.km_key_list_fn(each)
        with _Use(self._h) as ctx:
            lib.km_key_list(ctx, cb, None)
        if failure:  # pragma: no cover
            raise failure[0]
        return found

    def __contains__(self, name):
        try:
            self.key(name).close()
            return True
        except _ffi.CLASSES["NotFound"]:
            return False

    # -- data
    def decrypt(self, ciphertext, aad=b"", *, allow_compromised=False):
        """Decrypts a ciphertext of any key of this vault (the key and version come
        from its authenticated header). Returns bytes.

        Raises: IntegrityError (altered data or header, wrong aad), NotFound (no
        such key or version here), InvalidArgument (not a libkm ciphertext),
        StateError (the version may not process), UsageError, Unsupported.
        """
        c, cn = _ffi.in_data(ciphertext, "ciphertext")
        a, an = _ffi.in_data(aad, "aad")
        flags = _ffi.KM_DECRYPT_ALLOW_COMPROMISED if allow_compromised else 0
        with _Use(self._h) as ctx:
            return _sized(lambda out, cap, out_len: lib.km_decrypt(ctx, flags, c, cn, a, an,
                                                                   out, cap, out_len),
                          cn - CIPHERTEXT_OVERHEAD)

    # -- vault
    @property
    def id(self):
        """The vault's 16-byte random id."""
        buf = (ctypes.c_uint8 * 16)()
        with _Use(self._h) as ctx:
            lib.km_vault_id(ctx, buf)
        return bytes(buf)

    def add_passphrase(self, passphrase, kdf_cost=None):
        """Adds a keyslot so that `passphrase` (bytes/bytearray) opens the vault too."""
        if isinstance(passphrase, str):
            raise TypeError("passphrase must be bytes or bytearray (a str cannot be wiped)")
        buf, n = _ffi.in_buffer(passphrase, "passphrase")
        try:
            with _Use(self._h) as ctx:
                lib.km_vault_add_passphrase(ctx, buf, n, 0 if kdf_cost is None else kdf_cost)
        finally:
            wipe(buf)

    def maintain(self):
        """Applies every due time-driven transition; returns [(key name, version, action)]."""
        rep = _ffi.REPORT_P()
        with _Use(self._h) as ctx:
            lib.km_maintain(ctx, ctypes.byref(rep))
        try:
            out = []
            for i in range(lib.km_maintain_report_count(rep)):
                name, ver, action = ctypes.c_char_p(), ctypes.c_uint32(), ctypes.c_char_p()
                lib.km_maintain_report_get(rep, i, ctypes.byref(name), ctypes.byref(ver),
                                           ctypes.byref(action))
                out.append((name.value.decode("utf-8", "replace"), ver.value,
                            action.value.decode("ascii", "replace")))
            return out
        finally:
            lib.km_maintain_report_free(rep)


# ---------------------------------------------------------------- Key

class Key:
    """An open key handle (km_key), from Vault.create_key/import_key/key().

    Attributes: name (str), id (16 bytes), type (type name, e.g. "aes-256-gcm"),
    vault (the Vault, kept alive by the key).
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("keys come from Vault.create_key(), import_key() or key()")

    @classmethod
    def _new(cls, vault, ptr):
        # called with a use of the vault held, right after a successful open
        self = object.__new__(cls)
        self.vault = vault
        try:
            self.name = lib.km_key_name(ptr)
            self.id = ctypes.string_at(lib.km_key_id(ptr), 16)
            t = lib.km_key_get_type(ptr)
            self.type = lib.km_key_type_name(t) or str(t)
            self._h = _Handle(ptr, lib.km_key_free, "key %r" % self.name, parent=vault._h)
        except BaseException:
            lib.km_key_free(ptr)
            raise
        self._finalizer = weakref.finalize(self, self._h.close)
        return self

    def close(self):
        """Releases the handle (the key stays in the vault). Idempotent."""
        self._finalizer()

    @property
    def closed(self):
        return self._h.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<km.Key %r %s %s%s>" % (self.name, self.type, self.id.hex(),
                                        " closed" if self.closed else "")

    # -- data
    def encrypt(self, data, aad=b""):
        """Encrypts with the primary version (AES-GCM, a fresh random nonce).

        Returns the ciphertext (len(data) + km.CIPHERTEXT_OVERHEAD bytes).
        Raises: UsageError (not an AES-GCM key, or no encrypt usage), StateError
        (no version may protect), LimitReached, InvalidArgument, ForkError.
        """
        p, n = _ffi.in_data(data, "data")
        a, an = _ffi.in_data(aad, "aad")
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_encrypt(k, p, n, a, an, out, cap,
                                                                   out_len),
                          n + CIPHERTEXT_OVERHEAD)

    def decrypt(self, ciphertext, aad=b"", *, allow_compromised=False):
        """Decrypts a ciphertext of this key (km_decrypt_key). A ciphertext of
        another key raises IntegrityError; otherwise errors as Vault.decrypt."""
        c, cn = _ffi.in_data(ciphertext, "ciphertext")
        a, an = _ffi.in_data(aad, "aad")
        flags = _ffi.KM_DECRYPT_ALLOW_COMPROMISED if allow_compromised else 0
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_decrypt_key(k, flags, c, cn, a, an,
                                                                       out, cap, out_len),
                          cn - CIPHERTEXT_OVERHEAD)

    def sign(self, message, *, raw=False, p1363=False):
        """Signs with the primary version. Returns the signature, with libkm's
        24-byte header unless raw=True; p1363=True gives ECDSA as r||s.
        Raises: UsageError, StateError, InvalidArgument, BackendError."""
        m, mn = _ffi.in_data(message, "message")
        flags = _sig_flags(raw, p1363)
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_sign(k, flags, m, mn, out, cap,
                                                                out_len),
                          SIGNATURE_MAX)

    def verify(self, message, signature, *, version=0, raw=False, p1363=False):
        """Verifies a signature made with the same raw/p1363 flags.

        Returns True when it is valid and False when it is not (KM_E_VERIFY:
        a wrong signature or message). Raises for every other error:
        InvalidArgument (malformed header, a header naming another key or
        algorithm), NotFound (no such version), StateError, UsageError.
        version: 0 = the version in the header (tagged) or the primary (raw).
        """
        m, mn = _ffi.in_data(message, "message")
        s, sn = _ffi.in_data(signature, "signature")
        with _Use(self._h) as k:
            return lib.km_verify(k, version, _sig_flags(raw, p1363), m, mn, s, sn)

    def mac(self, message, *, raw=False):
        """Computes an HMAC with the primary version (tagged unless raw=True)."""
        m, mn = _ffi.in_data(message, "message")
        flags = _sig_flags(raw, False)
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_mac(k, flags, m, mn, out, cap,
                                                               out_len),
                          MAC_MAX)

    def mac_verify(self, message, tag, *, version=0, raw=False):
        """Verifies an HMAC in constant time: True if valid, False if not
        (KM_E_VERIFY); raises for every other error, as verify(). A raw tag may
        be truncated to no fewer than 16 bytes."""
        m, mn = _ffi.in_data(message, "message")
        t, tn = _ffi.in_data(tag, "tag")
        with _Use(self._h) as k:
            return lib.km_mac_verify(k, version, _sig_flags(raw, False), m, mn, t, tn)

    def public_key(self, format="pem", *, version=0):
        """The public key of an asymmetric key version as PEM or DER (SPKI) bytes.
        Raises Unsupported for a symmetric key, NotFound for an unknown version."""
        try:
            fmt = {"pem": _ffi.KM_MATERIAL_PEM, "der": _ffi.KM_MATERIAL_SPKI_DER}[format]
        except KeyError:
            raise InvalidArgument("format must be 'pem' or 'der'",
                                  function="public_key") from None
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_key_public_export(k, version, fmt,
                                                                             out, cap, out_len),
                          2048)

    # -- metadata and lifecycle
    def rotate(self):
        """Adds a freshly generated version and makes it the primary; returns its number."""
        v = ctypes.c_uint32(0)
        with _Use(self._h) as k:
            lib.km_key_rotate(k, ctypes.byref(v))
        return v.value

    def info(self):
        """A fresh snapshot of the key's metadata as a dict:

        name, id (16 bytes), type (name), usage (list of names from km.USAGES),
        flags (list: "exportable", "public-only"), protection ("software", ...),
        created (epoch seconds), primary (version number, 0 = none may protect),
        versions: a list of dicts with version, state ("active", ...), created,
        activated, protect_stop, process_stop, destroy_after (epoch seconds or
        None when unset), invocations (an upper bound of uses) and bytes.
        """
        ki = _ffi.KEYINFO_P()
        with _Use(self._h) as k:
            lib.km_key_info(ctypes.byref(ki), k)
        try:
            t = lib.km_keyinfo_type(ki)
            usage = lib.km_keyinfo_usage(ki)
            flags = lib.km_keyinfo_flags(ki)
            d = {"name": lib.km_keyinfo_name(ki),
                 "id": ctypes.string_at(lib.km_keyinfo_id(ki), 16),
                 "type": lib.km_key_type_name(t) or str(t),
                 "usage": _names(usage, USAGES),
                 "usage_mask": usage,
                 "flags": _names(flags, _KEY_FLAGS),
                 "protection": lib.km_keyinfo_protection(ki),
                 "created": lib.km_keyinfo_created(ki),
                 "primary": lib.km_keyinfo_primary(ki),
                 "versions": []}
            vi = _ffi.km_version_info()
            for i in range(lib.km_keyinfo_version_count(ki)):
                lib.km_keyinfo_version(ki, i, ctypes.byref(vi), ctypes.sizeof(vi))
                d["versions"].append({
                    "version": vi.version,
                    "state": lib.km_state_name(vi.state) or str(vi.state),
                    "created": _time(vi.created),
                    "activated": _time(vi.activated),
                    "protect_stop": _time(vi.protect_stop),
                    "process_stop": _time(vi.process_stop),
                    "destroy_after": _time(vi.destroy_after),
                    "invocations": vi.invocations,
                    "bytes": vi.bytes})
            return d
        finally:
            lib.km_keyinfo_free(ki)

    def activate(self, version=0):
        """PRE_ACTIVE -> ACTIVE (version 0: the newest PRE_ACTIVE one)."""
        with _Use(self._h) as k:
            lib.km_key_activate(k, version)

    def suspend(self, version=0):
        """ACTIVE -> SUSPENDED (version 0: the primary)."""
        with _Use(self._h) as k:
            lib.km_key_suspend(k, version)

    def resume(self, version=0):
        """SUSPENDED -> ACTIVE."""
        with _Use(self._h) as k:
            lib.km_key_resume(k, version)

    def revoke(self, reason, version=0, compromise_date=None):
        """Revokes a version. reason: a name ("key-compromise", "superseded", ...)
        or a KMIP code; compromise reasons need compromise_date (epoch seconds
        or a datetime), the others take none."""
        if isinstance(reason, str):
            r = ctypes.c_int(0)
            lib.km_revoke_reason_from_name(_cstr(reason, "reason"), ctypes.byref(r))
            reason = r.value
        if isinstance(compromise_date, _dt.datetime):
            compromise_date = int(compromise_date.timestamp())
        with _Use(self._h) as k:
            lib.km_key_revoke(k, version, reason, int(compromise_date or 0))

    def schedule_destroy(self, version, grace_days):
        """PRE_ACTIVE/DEACTIVATED/COMPROMISED -> DESTROY_PENDING for grace_days."""
        with _Use(self._h) as k:
            lib.km_key_schedule_destroy(k, version, grace_days)

    def cancel_destroy(self, version):
        """DESTROY_PENDING -> the state it came from."""
        with _Use(self._h) as k:
            lib.km_key_cancel_destroy(k, version)
