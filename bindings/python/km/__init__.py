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
  because Python strings cannot be wiped (configurations that may hold a PIN
  and Shamir shares are also accepted as bytes/bytearray for that reason).
  Secrets that libkm returns (data keys, derived and agreed keys, RSA-OAEP
  decrypted keys, Shamir shares) come back as ``km.Secret``, a ``bytearray``
  that ``s.wipe()`` zeroes, that a ``with`` block wipes at its end, and that
  is wiped when the Vault it came from is closed; libkm's own copy is wiped
  before it is returned. Decrypted plaintext is the application's data and
  comes back as ``bytes``; the C buffer it passed through is wiped.

Coverage: the whole public C API. Vault: open (passphrase, principal, TPM/HSM
keyslot, Shamir shares), create_key/import_key/key/key_by_id/keys,
session_key, decrypt, data keys (decrypt_data_key), rewrap/rewrap_batch,
import_wrapped/wrapping_key, policy (get_policy/set_policy/policy_report),
maintain, rekey/compact/backup (km.restore), add_passphrase/add_backend_slot/
add_shares/remove_passphrases, set_backend, principals and dual control
(add_principal, whoami, request/approve), audit (audit_entries, audit_verify,
audit_head, audit_level, sinks). Key: encrypt/decrypt, sign/verify,
sign_digest, mac/mac_verify, generate_data_key, derive, agree, agree_raw, rsa_decrypt,
export_wrapped, public_key, rotate, info/versions, lifecycle (activate,
suspend, resume, revoke, schedule_destroy, cancel_destroy), grant/perms.
A key after creation (km/_keymeta.py): Key.rename, add_alias (move=),
set_description, set_tag/remove_tag, set (rotation, usage, exportable, own
policy, deletion protection, version window), trim, purge, backup, grants;
Vault.list_keys (sorted, filtered), remove_alias, restore_key.

The library is loaded from ``$KM_LIBRARY``, else ``libkm.so.0`` next to this
package, else the soname ``libkm.so.0`` (see km/_ffi.py).
"""

import ctypes
import datetime as _dt
import json
import os
import threading
import weakref

from . import _ffi
from ._ffi import KmError, lib, wipe
from ._keymeta import _KeyMeta, _VaultMeta, info_extra as _keymeta_info
from ._keymeta import key_lister as _keymeta_lister

__all__ = ["Vault", "Key", "Secret", "KmError", "version", "backends", "encode_text", "decode_text",
           "wipe", "error_class", "restore", "KEY_TYPES", "USAGES", "REVOKE_REASONS", "ROLES",
           "PERMS", "REQUEST_OPS", "AUDIT_LEVELS", "RANDOM_MAX"] + sorted(_ffi.CLASSES)

# one exception class per error code: km.NotFound, km.AuthError, ...
globals().update(_ffi.CLASSES)
InvalidArgument = _ffi.CLASSES["InvalidArgument"]
StateError = _ffi.CLASSES["StateError"]
BufferTooSmall = _ffi.CLASSES["BufferTooSmall"]
Unsupported = _ffi.CLASSES["Unsupported"]

CIPHERTEXT_OVERHEAD = lib.km_ciphertext_overhead()
SIGNATURE_MAX = lib.km_signature_max()
MAC_MAX = lib.km_mac_max()
RANDOM_MAX = 1 << 20  # KM_RANDOM_MAX
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
          "agree": 0x200, "agree-raw": 0x400}
_KEY_FLAGS = {"exportable": _ffi.KM_KEY_EXPORTABLE, "public-only": _ffi.KM_KEY_PUBLIC_ONLY,
              "deletion-protected": _ffi.KM_KEY_DELETION_PROTECTED}
_WRAP_FORMATS = {"kwp": _ffi.KM_WRAP_KWP, "rsa-oaep-kwp": _ffi.KM_WRAP_RSA_OAEP_KWP}
DERIVE_MAX = _ffi.KM_DERIVE_MAX
AGREE_RAW_MAX = _ffi.KM_AGREE_RAW_MAX
DATAKEY_LEN = _ffi.KM_DATAKEY_LEN
DATAKEY_WRAPPED_LEN = lib.km_datakey_wrapped_len()
SHARES_MAX = _ffi.KM_SHARES_MAX

#: principal roles (km/acl.h KM_ROLE_*)
ROLES = {"admin": 0x1, "custodian": 0x2, "user": 0x4, "auditor": 0x8}
#: key permissions for grants (km/acl.h KM_PERM_*)
PERMS = {"encrypt": 0x01, "decrypt": 0x02, "sign": 0x04, "verify": 0x08, "mac": 0x10,
         "derive": 0x20, "export": 0x40, "agree-raw": 0x80}
#: operations under dual control (km/quorum.h km_request_op)
REQUEST_OPS = {"destroy": 1, "export": 2, "import-raw": 3, "policy-change": 4,
               "principal-change": 5}
#: data-path audit levels (km/audit.h km_audit_level)
AUDIT_LEVELS = {"none": 0, "counters": 1, "every": 2}

#: revocation reason names (km_revoke_reason_name of 1, 2, ...)
REVOKE_REASONS = tuple(n for n in (lib.km_revoke_reason_name(i) for i in range(1, 32)) if n)
_FORMATS = {"raw": _ffi.KM_MATERIAL_RAW, "pkcs8": _ffi.KM_MATERIAL_PKCS8_DER,
            "spki": _ffi.KM_MATERIAL_SPKI_DER, "pem": _ffi.KM_MATERIAL_PEM,
            "jwk": _ffi.KM_MATERIAL_JWK}


# ---------------------------------------------------------------- module functions

def version():
    """The version string of the loaded libkm ("0.1.0")."""
    return lib.km_version()


def key_schedules():
    """Where loaded AES keys' schedules live: "locked" (kept in libkm's locked,
    non-dumpable pages) or "per-call" (keyed for each call and wiped after it);
    see km_key_schedules() in km/common.h."""
    return "locked" if lib.km_key_schedules() == 1 else "per-call"


def backends():
    """The names of the key backends the loaded libkm has, built-in ones first
    (e.g. ["software", "pkcs11", "pkcs11-card", "tpm2"]); km_backend_names()."""
    n = ctypes.c_size_t(0)
    lib.km_backend_names(None, 0, ctypes.byref(n))
    cap = n.value
    names = (ctypes.c_char * 32 * max(cap, 1))()
    lib.km_backend_names(names, cap, ctypes.byref(n))
    return [bytes(names[i]).split(b"\0", 1)[0].decode() for i in range(min(cap, n.value))]


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


def restore(backup, directory):
    """Makes a vault again from a file written by Vault.backup() in `directory`
    (created if absent; a vault there is never overwritten: AlreadyExists).
    Open it with the credentials that opened the vault when it was backed up.
    Raises NotFound, CorruptVault (not a libkm vault file), AlreadyExists,
    Unsupported, StorageError."""
    lib.km_vault_restore(os.fsencode(os.fspath(backup)), os.fsencode(os.fspath(directory)))


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
                 destroy_grace_days=None, policy=None, key_id=None, version=None,
                 deletion_protection=False, rsa_oaep_digest=None):
    o = _ffi.km_key_options()
    o.version = _ffi.KM_KEY_OPTIONS_VERSION
    o.usage = _mask(usage, USAGES, "usage")
    o.flags = _ffi.KM_KEY_EXPORTABLE if exportable else 0
    if deletion_protection:
        o.flags |= _ffi.KM_KEY_DELETION_PROTECTED
    o.import_version = int(version or 0)
    o.protection = None if protection is None else _cstr(protection, "protection")
    if isinstance(activate_at, _dt.datetime):
        activate_at = int(activate_at.timestamp())
    o.activate_at = int(activate_at or 0)
    o.rotate_days = int(rotate_days or 0)
    o.protect_days = int(protect_days or 0)
    o.process_days = int(process_days or 0)
    o.destroy_grace_days = int(destroy_grace_days or 0)
    if policy is not None:
        o.policy = _policy_text(policy)
    if key_id is not None:
        if isinstance(key_id, str):
            key_id = bytes.fromhex(key_id)
        if len(key_id) != 16:
            raise InvalidArgument("a key id has 16 bytes", function="key_id")
        o._key_id_buf = (ctypes.c_uint8 * 16).from_buffer_copy(bytes(key_id))
        o.key_id = ctypes.cast(o._key_id_buf, _ffi.U8_P)
    if rsa_oaep_digest is not None:
        d = {"sha256": 256, "sha384": 384, "sha512": 512, 256: 256, 384: 384, 512: 512}
        key = rsa_oaep_digest.lower() if isinstance(rsa_oaep_digest, str) else rsa_oaep_digest
        if key not in d:
            raise InvalidArgument("rsa_oaep_digest must be sha256, sha384 or sha512",
                                  function="rsa_oaep_digest")
        o.rsa_oaep_digest = d[key]
    return o


def _policy_text(policy):
    """A policy given as a dict (dumped to JSON), str or bytes: UTF-8 bytes."""
    if isinstance(policy, dict):
        policy = json.dumps(policy)
    if isinstance(policy, str):
        policy = policy.encode("utf-8")
    if not isinstance(policy, (bytes, bytearray)):
        raise TypeError("a policy is a dict, str or bytes, not %s" % type(policy).__name__)
    return bytes(policy)


def _pem_to_der(data):
    """SubjectPublicKeyInfo DER from DER or "-----BEGIN PUBLIC KEY-----" PEM bytes."""
    import base64
    if isinstance(data, str):
        data = data.encode("ascii")
    data = bytes(data)
    if data.lstrip().startswith(b"-----BEGIN"):
        body = b"".join(line for line in data.strip().splitlines()
                        if not line.startswith(b"-----"))
        return base64.b64decode(body)
    return data


def _secret_buffer(value, what):
    """A NUL-terminated private copy of a secret text (a configuration with a
    PIN, a share) as (buffer, char* pointer); the caller wipes the buffer."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("%s must be str or bytes-like, not %s" % (what, type(value).__name__))
    tmp, n = _ffi.in_buffer(value, what)
    try:
        if 0 in tmp[:n]:
            raise InvalidArgument("%s contains a NUL character" % what, function=what)
        buf = (ctypes.c_char * (n + 1))()
        ctypes.memmove(buf, tmp, n)
    finally:
        wipe(tmp)
    return buf, ctypes.cast(buf, ctypes.c_char_p)


class Secret(bytearray):
    """Secret bytes that libkm returned: a data key, a derived or agreed key,
    an RSA-decrypted key, a Shamir share.

    A ``bytearray``, so that it can be wiped: ``s.wipe()`` zeroes it in place,
    a ``with`` block wipes it at its end, and every Secret still alive is
    wiped when the Vault it came from is closed. libkm's own copy (secure
    memory) is wiped and freed before the Secret is handed out. Growing or
    shrinking it may leave a copy behind (Python reallocates): do not resize
    it. Its repr never shows the bytes.
    """

    def wipe(self):
        """Zeroes the bytes in place (the length stays)."""
        wipe(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.wipe()

    def __repr__(self):
        return "<km.Secret %d bytes>" % len(self)

    __str__ = __repr__


class _Secrets:
    """The Secrets a vault returned that are still alive (weak references by
    identity: a Secret is a bytearray, compared by value and unhashable)."""

    def __init__(self):
        self._refs = {}
        self._lock = threading.Lock()

    def add(self, secret):
        key = id(secret)

        def gone(_ref, key=key, refs=self._refs):
            refs.pop(key, None)

        with self._lock:
            self._refs[key] = weakref.ref(secret, gone)

    def wipe_all(self):
        with self._lock:
            refs, self._refs = list(self._refs.values()), {}
        for r in refs:
            s = r()
            if s is not None:
                s.wipe()


def _take_secret(sp, vault):
    """Copies a km_secret into a Secret registered with `vault`, then frees
    (and so wipes) the km_secret."""
    try:
        n = lib.km_secret_len(sp)
        s = Secret(n)
        if n:
            ctypes.memmove((ctypes.c_char * n).from_buffer(s), lib.km_secret_data(sp), n)
    finally:
        lib.km_secret_free(sp)
    vault._secrets.add(s)
    return s


def _fn(name):
    """lib.<name>, or a function raising Unsupported when this libkm lacks it."""
    fn = getattr(lib, name, None)
    if fn is None:
        return _ffi._missing(name)
    return fn


def _close_vault(handle, secrets):
    secrets.wipe_all()
    handle.close()


def _audit_entry(e):
    """A km_audit_entry as a dict (its strings copied: valid only during the callback)."""
    return {"seq": e.seq, "time": e.time,
            "principal": (e.principal or b"").decode("utf-8", "replace"),
            "op": (e.op or b"").decode("utf-8", "replace"),
            "key_id": bytes(e.key_id) if e.has_key else None,
            "version": e.version,
            "result": "KM_OK" if e.result == 0 else (lib.km_err_name(e.result) or b"").decode(),
            "detail": (e.detail or b"").decode("utf-8", "replace"),
            "hash": bytes(e.hash)}


def _audit_json(entry_p):
    out_len = ctypes.c_size_t(0)
    cap = 1024
    while True:
        buf = ctypes.create_string_buffer(cap)
        try:
            lib.km_audit_entry_json(entry_p, buf, cap, ctypes.byref(out_len))
            return buf.value.decode("utf-8", "replace")
        except BufferTooSmall:
            if out_len.value <= cap:
                raise
            cap = out_len.value


def _time(t):
    return None if t == 0 else t


def _sig_flags(raw, p1363, pkcs1=False):
    return ((_ffi.KM_SIG_RAW if raw else 0) | (_ffi.KM_SIG_P1363 if p1363 else 0)
            | (_ffi.KM_SIG_PKCS1 if pkcs1 else 0))


_HANDLES = weakref.WeakSet()


class _Handle:
    """A C pointer shared by threads: close() waits for calls in progress,
    then frees it once; a use after close raises km.StateError."""

    def __init__(self, ptr, free, what, parent=None):
        self._ptr = ptr
        self._free = free
        self._what = what
        self._users = 0
        # re-entrant: garbage collection can run a handle's weakref.finalize
        # (which calls close) while this very thread holds the lock inside
        # close(); with a plain Lock that deadlocked (seen under make distcheck)
        self._cond = threading.Condition(threading.RLock())
        self._parent = parent
        self.children = set()
        if parent is not None:
            parent.add_child(self)
        _HANDLES.add(self)

    def _after_fork_in_child(self):
        # the threads that held uses do not exist in the child: forget them, so
        # that close() (at exit, say) frees at once; libkm refuses other uses
        # there with KM_E_FORK and frees handles without touching the vault.
        self._cond = threading.Condition(threading.RLock())
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

class Vault(_VaultMeta):
    """An open libkm vault (km_ctx). Create with Vault.open()."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use km.Vault.open(path, passphrase=...)")

    @classmethod
    def open(cls, path, passphrase=None, create=False, kdf_cost=None, *, exclusive=False,
             strict_refresh=False, refresh_ms=None, map_size=None, fips=False,
             key_cache_max=None, principal=None, slot_backend=None, slot_config=None,
             shares=None, tls_ca=None, tls_cert=None, tls_key=None):
        """Opens (with create=True: creates if absent) the vault at `path`.

        path: a directory path (str, bytes or os.PathLike), an "lmdb:/dir" URI,
            or "etcd://HOST:PORT[,HOST:PORT...]/PREFIX" (docs/ETCD.md); or a
            kmd: "kmd:/run/kmd/kmd.sock" or "kmip://HOST:PORT" (with tls_ca,
            tls_cert, tls_key), where every call runs in kmd as the principal
            kmd maps this process to, and no passphrase is given (docs/KMD.md).
        tls_ca, tls_cert, tls_key: for an etcd:// vault, the PEM files of the
            members' CA (https) and of a client certificate and its key.
        passphrase: bytes or bytearray (1 to 1024 bytes). It is copied into a
            private buffer that is wiped as soon as km_open returns; a bytearray
            passed in is not wiped here (that is the caller's choice). None
            when the vault is opened with slot_backend or shares.
        create: create the vault when the directory holds none (needs a passphrase).
        kdf_cost: log2 of scrypt's N for a newly created passphrase slot
            (km.KDF_COST_MIN..KDF_COST_MAX; None = libkm's default, 17).
        exclusive: with create, fail with AlreadyExists if a vault exists.
        strict_refresh: re-read key state on every use (KM_OPEN_STRICT_REFRESH).
        fips: with create, the new vault gets the FIPS 140-3 policy profile.
        refresh_ms, map_size, key_cache_max: see km_open_options.
        principal: open as this principal; `passphrase` is then its own.
        slot_backend, slot_config: open with a keyslot held by a backend
            ("tpm2", "pkcs11"; see Vault.add_backend_slot) and no passphrase;
            slot_config is that backend's configuration (a TCTI; a module,
            token and PIN). A bytes/bytearray config is copied into a buffer
            wiped after the call (a str cannot be wiped).
        shares: open with the custodians' Shamir shares ("kms1:..." texts,
            from Vault.add_shares), at least the slot's M of them; copied
            into buffers wiped after the call.

        Raises: NotFound (no vault and not create), AuthError (wrong
        passphrase, backend slot or shares), AlreadyExists (exclusive),
        BackendError (the keyslot's device), CorruptVault, Unsupported (a
        newer vault format), StorageError, InvalidArgument.
        """
        uri = os.fsencode(os.fspath(path))
        if isinstance(passphrase, str):
            raise TypeError("passphrase must be bytes or bytearray (a str cannot be wiped)")
        if passphrase is not None and not isinstance(passphrase, (bytes, bytearray, memoryview)):
            raise TypeError("passphrase must be bytes or bytearray, not %s"
                            % type(passphrase).__name__)
        remote = uri.startswith(b"kmd:") or uri.startswith(b"kmip://")
        if passphrase is None and slot_backend is None and not shares and not remote:
            raise TypeError("Vault.open needs a passphrase, a slot_backend or shares")
        o = _ffi.km_open_options()
        o.version = _ffi.KM_OPEN_OPTIONS_VERSION
        o.flags = ((_ffi.KM_OPEN_CREATE if create else 0)
                   | (_ffi.KM_OPEN_EXCL if exclusive else 0)
                   | (_ffi.KM_OPEN_STRICT_REFRESH if strict_refresh else 0)
                   | (_ffi.KM_OPEN_FIPS if fips else 0))
        o.kdf_cost = 0 if kdf_cost is None else int(kdf_cost)
        o.refresh_ms = 0 if refresh_ms is None else int(refresh_ms)
        o.map_size = 0 if map_size is None else int(map_size)
        o.key_cache_max = 0 if key_cache_max is None else int(key_cache_max)
        if principal is not None:
            o.principal = _cstr(principal, "principal")
        if slot_backend is not None:
            o.slot_backend = _cstr(slot_backend, "slot_backend")
        if tls_ca is not None:
            o.tls_ca = os.fsencode(os.fspath(tls_ca))
        if tls_cert is not None:
            o.tls_cert = os.fsencode(os.fspath(tls_cert))
        if tls_key is not None:
            o.tls_key = os.fsencode(os.fspath(tls_key))
        wipes = []
        ctx = _ffi.CTX_P()
        try:
            if passphrase is not None:
                buf, n = _ffi.in_buffer(passphrase, "passphrase")
                wipes.append(buf)
                o.passphrase = ctypes.cast(buf, _ffi.U8_P)
                o.passphrase_len = n
            if slot_config is not None:
                buf, o.slot_config = _secret_buffer(slot_config, "slot_config")
                wipes.append(buf)
            if shares:
                shares = list(shares)
                arr = (ctypes.c_char_p * len(shares))()
                for i, share in enumerate(shares):
                    buf, arr[i] = _secret_buffer(share, "share")
                    wipes.append(buf)
                o.shares = arr
                o.share_count = len(shares)
            lib.km_open(ctypes.byref(ctx), uri, ctypes.byref(o))
        finally:
            o.passphrase = None
            o.slot_config = None
            for buf in wipes:
                wipe(buf)
        self = object.__new__(cls)
        self._uri = uri
        self._h = _Handle(ctx, lib.km_close, "vault")
        self._secrets = _Secrets()
        self._finalizer = weakref.finalize(self, _close_vault, self._h, self._secrets)
        return self

    # -- handle
    def close(self):
        """Closes the vault: wipes every km.Secret it returned that is still
        alive, closes every key handle opened from it, then km_close (which
        wipes the master key). Idempotent."""
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
          usage: None (every usage the type supports but "agree-raw", which
            must be named), a KM_USAGE_* mask or names from km.USAGES;  exportable: bool;
          protection: backend name (None = "software");
          activate_at: epoch seconds or datetime (a future date creates the
            version PRE_ACTIVE; None = now);
          rotate_days, protect_days, process_days, destroy_grace_days: the
            key's periods in days (None = none; grace None = libkm's 30);
          rsa_oaep_digest: RSA keys, "sha256" (default), "sha384" or "sha512":
            the RSA-OAEP digest recorded in the key.
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
            "pkcs8" (DER), "spki" (DER public key: a verify-only key), "pem",
            "jwk" (a public JSON Web Key, str or bytes: a verify-only key).
        options: as create_key(), and key_id (16 bytes or hex: keep the source
            key's id) with version (the version number the material becomes:
            with the id of a key this vault has, under the same name, it adds
            that version to it; versions skipped are recorded destroyed).
        Raises: InvalidArgument (bad length, unparsable material, a type
        mismatch), AlreadyExists (the name, or a version not newer than the
        key's last), StorageError.
        """
        cname = _cstr(name, "name")
        ktype = _key_type(type)
        try:
            fmt = _FORMATS[format]
        except KeyError:
            raise InvalidArgument("format must be raw, pkcs8, spki, pem or jwk",
                                  function="import_key") from None
        if isinstance(material, str):
            if fmt not in (_ffi.KM_MATERIAL_PEM, _ffi.KM_MATERIAL_JWK):
                raise TypeError("material must be bytes-like (str only for pem and jwk)")
            material = material.encode("utf-8")
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
        cb, found, failure = _keymeta_lister()
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

    # -- policy
    def policy_json(self):
        """The vault's current policy as a JSON text (docs/POLICY.md)."""
        with _Use(self._h) as ctx:
            out = _sized(lambda out, cap, out_len: lib.km_policy_get(ctx, out, cap, out_len), 4096)
        return out.rstrip(b"\0").decode("utf-8")

    def get_policy(self):
        """The vault's current policy as a dict (the JSON document of docs/POLICY.md)."""
        return json.loads(self.policy_json())

    def set_policy(self, policy):
        """Replaces the vault's policy: a dict, or a JSON str/bytes.
        Raises InvalidArgument (the message names the rule), Unsupported (a
        newer document version), PolicyError/AccessDenied (dual control, rights)."""
        text = _policy_text(policy)
        with _Use(self._h) as ctx:
            lib.km_policy_set(ctx, text, len(text))

    def policy_report(self):
        """Every key out of policy, as a list of (key name, why)."""
        f = _ffi.FINDINGS_P()
        with _Use(self._h) as ctx:
            lib.km_policy_report(ctx, ctypes.byref(f))
        try:
            out = []
            for i in range(lib.km_policy_findings_count(f)):
                name, why = ctypes.c_char_p(), ctypes.c_char_p()
                lib.km_policy_findings_get(f, i, ctypes.byref(name), ctypes.byref(why))
                out.append((name.value.decode("utf-8", "replace"),
                            why.value.decode("utf-8", "replace")))
            return out
        finally:
            lib.km_policy_findings_free(f)

    # -- envelope encryption
    def decrypt_data_key(self, wrapped, aad=b""):
        """Unwraps a data key made by Key.generate_data_key() (the KEK is found
        from its header). Returns a km.Secret (wiped on close).
        Raises IntegrityError (altered, or another aad), NotFound, StateError."""
        w, wn = _ffi.in_data(wrapped, "wrapped")
        a, an = _ffi.in_data(aad, "aad")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as ctx:
            lib.km_datakey_decrypt(ctx, w, wn, a, an, ctypes.byref(sp))
            return _take_secret(sp, self)

    def rewrap(self, data, aad=b"", *, to=None, new_aad=None, allow_compromised=False):
        """Re-encrypts a ciphertext or a wrapped data key under the primary
        version of its own key; the plaintext never reaches Python. The aad
        is the one the input was made with, and stays bound to the output.
        to: a Key of this vault to re-encrypt under instead (km_rewrap_to);
        new_aad: bytes to bind the output to instead of aad;
        allow_compromised: also open data under a COMPROMISED version
        (recovery, audited; km_rewrap_ex with KM_DECRYPT_ALLOW_COMPROMISED)."""
        d, dn = _ffi.in_data(data, "data")
        a, an = _ffi.in_data(aad, "aad")
        if to is None and new_aad is None and not allow_compromised:
            with _Use(self._h) as ctx:
                return _sized(lambda out, cap, out_len: lib.km_rewrap(ctx, d, dn, a, an, out, cap,
                                                                      out_len), dn)
        if to is not None and not isinstance(to, Key):
            raise TypeError("to must be a km.Key")
        flags = _ffi.KM_DECRYPT_ALLOW_COMPROMISED if allow_compromised else 0
        na, nn = (None, 0) if new_aad is None else _ffi.in_data(new_aad, "new_aad")
        if new_aad is not None and na is None:
            na = (ctypes.c_uint8 * 1)()  # an empty new aad: non-NULL, length 0
        with _Use(self._h) as ctx:
            if to is None:
                return _sized(lambda out, cap, out_len: lib.km_rewrap_ex(
                    ctx, flags, d, dn, a, an, None, na, nn, out, cap, out_len), dn)
            with _Use(to._h) as tk:
                return _sized(lambda out, cap, out_len: lib.km_rewrap_ex(
                    ctx, flags, d, dn, a, an, tk, na, nn, out, cap, out_len), dn)

    def decrypt_data_key_pair(self, wrapped, aad=b""):
        """Unwraps the private key (PKCS#8 DER) of a data key pair made by
        Key.generate_data_key_pair(); a km.Secret."""
        w, wn = _ffi.in_data(wrapped, "wrapped")
        a, an = _ffi.in_data(aad, "aad")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as ctx:
            lib.km_datakey_pair_decrypt(ctx, w, wn, a, an, ctypes.byref(sp))
            return _take_secret(sp, self)

    def rewrap_batch(self, items, aads=None, *, allow_compromised=False):
        """Rewraps many ciphertexts / wrapped data keys in one call.

        items: a sequence of bytes; aads: None or one aad per item;
        allow_compromised: as for rewrap().
        Returns a list with, per item, the rewrapped bytes or, for an item
        that failed, the KmError instance saying why, with libkm's detail for
        that item (not raised: the other items are still rewrapped). Raises
        only for a failure of the call itself (e.g. InvalidArgument for too
        many items)."""
        items = list(items)
        n = len(items)
        if aads is not None:
            aads = list(aads)
            if len(aads) != n:
                raise InvalidArgument("rewrap_batch: one aad per item", function="rewrap_batch")
        if n == 0:
            return []
        arr, keep, bufs = _batch_items(items, aads, None, lambda ln: ln)
        flags = _ffi.KM_DECRYPT_ALLOW_COMPROMISED if allow_compromised else 0
        with _Use(self._h) as ctx:
            rc = lib.km_rewrap_batch_ex(ctx, flags, arr, n)
        if rc != 0 and all(arr[i].result == 0 and not arr[i].detail for i in range(n)):
            raise _ffi.error_for(rc, "km_rewrap_batch_ex")  # refused as a whole
        return _batch_results(arr, bufs, False, "km_rewrap_batch_ex")

    # -- distribution
    def import_wrapped(self, name, type, blob, format="kwp", **options):
        """Imports a wrapped key as a new key (version 1, ACTIVE).

        format: "kwp" (a blob from Key.export_wrapped(kek=...) under a KEK of
        this vault) or "rsa-oaep-kwp" (wrapped to this vault's
        wrapping_key()). options: as create_key().
        Raises InvalidArgument, IntegrityError (does not unwrap), NotFound
        (the KEK is not here), AlreadyExists, PolicyError."""
        cname = _cstr(name, "name")
        ktype = _key_type(type)
        try:
            fmt = _WRAP_FORMATS[format]
        except KeyError:
            raise InvalidArgument("format must be 'kwp' or 'rsa-oaep-kwp'",
                                  function="import_wrapped") from None
        b, bn = _ffi.in_data(blob, "blob")
        o = _key_options(**options)
        out = _ffi.KEY_P()
        with _Use(self._h) as ctx:
            lib.km_key_import_wrapped(ctypes.byref(out), ctx, cname, ktype, fmt, b, bn,
                                      ctypes.byref(o))
            return Key._new(self, out)

    def wrapping_key(self, format="pem"):
        """The public half of the vault's RSA-4096 import wrapping key ("pem"
        or "der" SubjectPublicKeyInfo), for senders of "rsa-oaep-kwp" blobs."""
        try:
            fmt = {"pem": _ffi.KM_MATERIAL_PEM, "der": _ffi.KM_MATERIAL_SPKI_DER}[format]
        except KeyError:
            raise InvalidArgument("format must be 'pem' or 'der'",
                                  function="wrapping_key") from None
        with _Use(self._h) as ctx:
            return _sized(lambda out, cap, out_len: lib.km_vault_wrapping_key(ctx, fmt, out, cap,
                                                                              out_len), 2048)

    def session_key(self, type):
        """An ephemeral key that never touches the vault (km_session_key_create)."""
        ktype = _key_type(type)
        out = _ffi.KEY_P()
        with _Use(self._h) as ctx:
            lib.km_session_key_create(ctypes.byref(out), ctx, ktype)
            return Key._new(self, out)

    # -- vault administration
    def rekey(self, passphrase, kdf_cost=None):
        """New master key, every record resealed, and the keyslots replaced by
        one passphrase slot for `passphrase` plus the device keyslots (TPM, HSM)
        that could be re-sealed; add other passphrases, principals and shares
        again afterwards (km_vault_rekey in km/vault.h)."""
        if isinstance(passphrase, str):
            raise TypeError("passphrase must be bytes or bytearray (a str cannot be wiped)")
        buf, n = _ffi.in_buffer(passphrase, "passphrase")
        try:
            with _Use(self._h) as ctx:
                lib.km_vault_rekey(ctx, buf, n, 0 if kdf_cost is None else kdf_cost)
        finally:
            wipe(buf)

    def compact(self):
        """Rewrites the vault file without free pages (old sealed copies gone).
        Raises Busy while another context or process has the vault open."""
        with _Use(self._h) as ctx:
            lib.km_vault_compact(ctx)

    def set_backend(self, name, config):
        """Stores a backend's configuration ("pkcs11": module, token, PIN;
        "tpm2": TCTI) sealed in the vault; None removes it. A bytes/bytearray
        config is copied into a buffer wiped after the call."""
        cname = _cstr(name, "name")
        buf, p = (None, None) if config is None else _secret_buffer(config, "config")
        try:
            with _Use(self._h) as ctx:
                lib.km_vault_backend_set(ctx, cname, p)
        finally:
            if buf is not None:
                wipe(buf)

    def add_backend_slot(self, backend, config=None):
        """Adds a keyslot held by a backend ("tpm2": the master key sealed to
        the TPM; "pkcs11": wrapped by a token key), so that
        Vault.open(path, slot_backend=..., slot_config=...) opens the vault
        without a passphrase. config as for set_backend()."""
        cname = _cstr(backend, "backend")
        buf, p = (None, None) if config is None else _secret_buffer(config, "config")
        try:
            with _Use(self._h) as ctx:
                _fn("km_vault_add_backend_slot")(ctx, cname, p)
        finally:
            if buf is not None:
                wipe(buf)

    def add_shares(self, m, n):
        """Adds a Shamir M-of-N keyslot; returns the n shares ("kms1:..." text)
        as km.Secret objects, one per custodian (wiped on close)."""
        arr = (_ffi.SECRET_P * max(int(n), 1))()
        with _Use(self._h) as ctx:
            _fn("km_vault_add_shares")(ctx, int(m), int(n), arr)
        return [_take_secret(arr[i], self) for i in range(int(n))]

    def remove_passphrases(self):
        """Removes every owner passphrase keyslot (StateError if no other would remain)."""
        with _Use(self._h) as ctx:
            _fn("km_vault_remove_passphrases")(ctx)

    def backup(self, path):
        """Writes a consistent copy of the vault to the new file `path` (never
        overwritten: AlreadyExists) while it stays in use; km.restore() makes
        it a vault again. The copy opens with today's credentials."""
        with _Use(self._h) as ctx:
            lib.km_vault_backup(ctx, os.fsencode(os.fspath(path)))

    def copy_to(self, uri):
        """Copies the vault record for record into the empty store at `uri`
        ("lmdb:/dir", a path, or "etcd://HOST:PORT[,...]/PREFIX") and
        compares the copy with it; the copy opens with today's credentials.
        Never over a vault (AlreadyExists); audited."""
        with _Use(self._h) as ctx:
            lib.km_vault_copy(ctx, os.fsencode(os.fspath(uri)), None)

    # -- principals and grants (km/acl.h)
    def add_principal(self, name, roles, passphrase, kdf_cost=None):
        """Adds a principal with `roles` (names from km.ROLES or a mask) and its
        own passphrase keyslot: Vault.open(path, passphrase=..., principal=name)."""
        if isinstance(passphrase, str):
            raise TypeError("passphrase must be bytes or bytearray (a str cannot be wiped)")
        cname = _cstr(name, "name")
        mask = _mask(roles, ROLES, "role")
        buf, n = _ffi.in_buffer(passphrase, "passphrase")
        try:
            with _Use(self._h) as ctx:
                lib.km_principal_add(ctx, cname, mask, buf, n, 0 if kdf_cost is None else kdf_cost)
        finally:
            wipe(buf)

    def remove_principal(self, name, *, revoke_owned=False, rotate_master=False):
        """Offboards a principal: its keyslots, record and grants go, its keys
        pass to the owner (and with revoke_owned=True are deactivated). With
        rotate_master=True the same transaction gives the vault a new master
        key; the other credentials keep working (km_principal_remove with
        KM_PRINCIPAL_ROTATE_MASTER). Other open Vaults must reopen."""
        flags = (1 if revoke_owned else 0) | (2 if rotate_master else 0)
        with _Use(self._h) as ctx:
            lib.km_principal_remove(ctx, _cstr(name, "name"), flags)

    def principals(self):
        """The principals as a list of (name, [role names], created epoch seconds)."""
        found, failure = [], []

        def each(name, roles, created, arg):
            try:
                found.append((name.decode("utf-8", "replace"), _names(roles, ROLES), created))
                return 0
            except BaseException as e:  # pragma: no cover - never unwind through C
                failure.append(e)
                return 1

        cb = _ffi.km_principal_fn(each)
        with _Use(self._h) as ctx:
            lib.km_principal_list(ctx, cb, None)
        if failure:  # pragma: no cover
            raise failure[0]
        return found

    def whoami(self):
        """(name, [role names]) of who opened this vault ("owner", a principal, "shares", ...)."""
        buf = ctypes.create_string_buffer(128)
        roles = ctypes.c_uint32(0)
        with _Use(self._h) as ctx:
            lib.km_whoami(ctx, buf, len(buf), ctypes.byref(roles))
        return buf.value.decode("utf-8", "replace"), _names(roles.value, ROLES)

    # -- dual control (km/quorum.h)
    def request(self, op, key_name=None, params=b"", ttl=None):
        """Creates a dual-control request for `op` (a name from km.REQUEST_OPS)
        with the exact params the call will use (see km/quorum.h); returns its
        16-byte id, for custodians to approve()."""
        try:
            code = REQUEST_OPS[op] if isinstance(op, str) else int(op)
        except KeyError:
            raise InvalidArgument("unknown request op %r (one of %s)"
                                  % (op, ", ".join(REQUEST_OPS)), function="request") from None
        p, pn = _ffi.in_data(params if not isinstance(params, str) else params.encode("utf-8"),
                             "params")
        rid = (ctypes.c_uint8 * 16)()
        kn = None if key_name is None else _cstr(key_name, "key_name")
        with _Use(self._h) as ctx:
            lib.km_request_create(ctx, code, kn, p, pn, int(ttl or 0), rid)
        return bytes(rid)

    def approve(self, request_id):
        """Approves a request as this vault's principal (a custodian, not its requester)."""
        rid = (ctypes.c_uint8 * 16).from_buffer_copy(bytes(request_id))
        with _Use(self._h) as ctx:
            lib.km_request_approve(ctx, rid)

    def request_info(self, request_id):
        """A request's state as a dict: op, key_name, requester, approvals,
        needed, created, expires, consumed, and params: every parameter of
        the call spelled out, as libkm wrote it when the request was made
        (km_request_describe), for the custodians to read before approving."""
        rid = (ctypes.c_uint8 * 16).from_buffer_copy(bytes(request_id))
        st = _ffi.km_request_status()
        with _Use(self._h) as ctx:
            lib.km_request_info(ctx, rid, ctypes.byref(st))
            text = _sized(lambda out, cap, out_len: lib.km_request_describe(ctx, rid, out, cap,
                                                                            out_len), 256)
        ops = {v: k for k, v in REQUEST_OPS.items()}
        return {"op": ops.get(st.op, st.op), "key_name": st.key_name.decode("utf-8", "replace"),
                "requester": st.requester.decode("utf-8", "replace"),
                "approvals": st.approvals, "needed": st.needed, "created": st.created,
                "expires": st.expires, "consumed": bool(st.consumed),
                "params": text.rstrip(b"\0").decode("utf-8", "replace")}

    # -- audit (km/audit.h)
    @property
    def audit_level(self):
        """The data-path audit level: "none", "counters" (default) or "every"."""
        lv = ctypes.c_int(0)
        with _Use(self._h) as ctx:
            lib.km_audit_get_level(ctx, ctypes.byref(lv))
        return {v: k for k, v in AUDIT_LEVELS.items()}.get(lv.value, lv.value)

    @audit_level.setter
    def audit_level(self, level):
        try:
            code = AUDIT_LEVELS[level] if isinstance(level, str) else int(level)
        except KeyError:
            raise InvalidArgument("audit level is one of none, counters, every",
                                  function="audit_level") from None
        with _Use(self._h) as ctx:
            lib.km_audit_set_level(ctx, code)

    def audit_flush(self):
        """Writes the queued data-path audit entries now."""
        with _Use(self._h) as ctx:
            lib.km_audit_flush(ctx)

    def audit_head(self):
        """The head of the audit log as (seq, sha256 bytes): keep it outside
        the vault and pass it to audit_verify(anchor=...) later."""
        h = _ffi.km_audit_head()
        with _Use(self._h) as ctx:
            lib.km_audit_head_get(ctx, ctypes.byref(h))
        return h.seq, bytes(h.hash)

    def audit_verify(self, anchor=None):
        """Verifies the whole audit log (with `anchor`, a head from
        audit_head(), also that its tail was not cut). Returns the number of
        entries verified; raises IntegrityError with .bad_seq, the first bad
        entry's sequence number."""
        a = None
        if anchor is not None:
            a = _ffi.km_audit_head()
            a.seq = int(anchor[0])
            ctypes.memmove(a.hash, bytes(anchor[1]), 32)
        count, bad = ctypes.c_uint64(0), ctypes.c_uint64(0)
        with _Use(self._h) as ctx:
            try:
                lib.km_audit_verify(ctx, None if a is None else ctypes.byref(a),
                                    ctypes.byref(count), ctypes.byref(bad))
            except KmError as e:
                e.bad_seq = bad.value
                raise
        return count.value

    def audit_entries(self, start=1, *, as_json=False):
        """The audit entries from sequence `start`, as dicts (seq, time,
        principal, op, key_id, version, result, detail, hash), or as libkm's
        JSON text with as_json=True. Raises IntegrityError at a bad entry."""
        found, failure = [], []

        def each(entry, arg):
            try:
                found.append(_audit_json(entry) if as_json else _audit_entry(entry.contents))
                return 0
            except BaseException as e:  # pragma: no cover - never unwind through C
                failure.append(e)
                return 1

        cb = _ffi.km_audit_fn(each)
        with _Use(self._h) as ctx:
            try:
                lib.km_audit_foreach(ctx, int(start), cb, None)
            except KmError:
                if failure:  # pragma: no cover
                    raise failure[0] from None
                raise
        return found

    def audit_alerts(self, start=1):
        """The entries worth an alert (denied uses, failed authentications,
        use of a compromised version, ...) as a list of (entry dict, why)."""
        found, failure = [], []

        def each(entry, why, arg):
            try:
                found.append((_audit_entry(entry.contents), why.decode("utf-8", "replace")))
                return 0
            except BaseException as e:  # pragma: no cover
                failure.append(e)
                return 1

        cb = _ffi.km_audit_alert_fn(each)
        with _Use(self._h) as ctx:
            lib.km_audit_alerts(ctx, int(start), cb, None)
        return found

    def audit_to_syslog(self, enable=True):
        """Copies every entry this vault handle writes to syslog (LOG_AUTHPRIV)."""
        with _Use(self._h) as ctx:
            lib.km_audit_sink_syslog(ctx, 1 if enable else 0)

    def audit_to_file(self, path):
        """Appends every entry this handle writes to `path` as JSON lines; None stops."""
        p = None if path is None else os.fsencode(os.fspath(path))
        with _Use(self._h) as ctx:
            lib.km_audit_sink_file(ctx, p)

    # -- issue 23's operations
    def random(self, n, *, protection=None):
        """n (1..RANDOM_MAX) random bytes (km_random): OpenSSL's DRBG, or with
        protection="pkcs11"/"tpm2" that device's own generator (Unsupported for a
        backend without one; never the DRBG in its place)."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("n must be an int")
        if n < 1 or n > RANDOM_MAX:
            raise InvalidArgument("random: n must be 1 to %d" % RANDOM_MAX, function="km_random")
        prot = _cstr(protection, "protection") if protection is not None else None
        buf = (ctypes.c_uint8 * n)()
        with _Use(self._h) as ctx:
            lib.km_random(ctx, prot, buf, n)
        out = bytes(buf)
        ctypes.memset(buf, 0, n)
        return out


# ---------------------------------------------------------------- Key

class Key(_KeyMeta):
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

    def sign(self, message, *, raw=False, p1363=False, pkcs1=False):
        """Signs with the primary version. Returns the signature, with libkm's
        24-byte header unless raw=True; p1363=True gives ECDSA as r||s;
        pkcs1=True RSA PKCS#1 v1.5 instead of PSS.
        Raises: UsageError, StateError, InvalidArgument, BackendError."""
        m, mn = _ffi.in_data(message, "message")
        flags = _sig_flags(raw, p1363, pkcs1)
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_sign(k, flags, m, mn, out, cap,
                                                                out_len),
                          SIGNATURE_MAX)

    def verify(self, message, signature, *, version=0, raw=False, p1363=False, pkcs1=False):
        """Verifies a signature made with the same raw/p1363/pkcs1 flags.

        Returns True when it is valid and False when it is not (KM_E_VERIFY:
        a wrong signature or message). Raises for every other error:
        InvalidArgument (malformed header, a header naming another key or
        algorithm), NotFound (no such version), StateError, UsageError.
        version: 0 = the version in the header (tagged) or the primary (raw).
        """
        m, mn = _ffi.in_data(message, "message")
        s, sn = _ffi.in_data(signature, "signature")
        with _Use(self._h) as k:
            return lib.km_verify(k, version, _sig_flags(raw, p1363, pkcs1), m, mn, s, sn)

    def mac(self, message, *, raw=False):
        """Computes a MAC with the primary version (tagged unless raw=True): HMAC
        for hmac-* keys, AES-CMAC (16 bytes) for aes-*-cmac keys."""
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
        """The public key of an asymmetric key version as PEM or DER (SPKI) bytes,
        or with format="jwk" a JSON Web Key (RFC 7517) as a str.
        Raises Unsupported for a symmetric key, NotFound for an unknown version."""
        try:
            fmt = {"pem": _ffi.KM_MATERIAL_PEM, "der": _ffi.KM_MATERIAL_SPKI_DER,
                   "jwk": _ffi.KM_MATERIAL_JWK}[format]
        except KeyError:
            raise InvalidArgument("format must be 'pem', 'der' or 'jwk'",
                                  function="public_key") from None
        if format == "jwk":
            with _Use(self._h) as k:
                return _sized(lambda out, cap, out_len: lib.km_key_public_export(
                    k, version, fmt, out, cap, out_len), 2048).decode("ascii")
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
        None when unset), invocations (an upper bound of uses) and bytes;
        description (str or None), aliases (list of str), tags (dict).
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
                    "bytes": vi.bytes,
                    "revoke_reason": (lib.km_revoke_reason_name(vi.revoke_reason)
                                      if vi.revoke_reason else None),
                    "compromise_date": _time(vi.compromise_date),
                    "deactivated": _time(vi.deactivated),
                    "destroyed": _time(vi.destroyed)})
            d.update(_keymeta_info(ki))
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

    def grant(self, grantee, perms):
        """Grants `perms` (names from km.PERMS, or a mask; None/[] removes) on
        this key to a principal name or a role ("role:user", ...)."""
        mask = _mask(perms, PERMS, "permission")
        with _Use(self._h) as k:
            lib.km_key_grant(k, _cstr(grantee, "grantee"), mask)

    def perms(self):
        """The permissions (names from km.PERMS) the vault's principal has on this key."""
        p = ctypes.c_uint32(0)
        with _Use(self._h) as k:
            lib.km_key_perms(k, ctypes.byref(p))
        return _names(p.value, PERMS)

    def versions(self):
        """The key's versions (a list of dicts, as info()["versions"])."""
        return self.info()["versions"]

    # -- envelope encryption, derivation, agreement
    def generate_data_key(self, aad=b"", *, plaintext=True, type=None):
        """Generates a 32-byte data key wrapped under this key (an AES-GCM KEK).

        Returns (plain, wrapped): plain is a km.Secret (a bytearray, wiped on
        close; None with plaintext=False), wrapped is bytes
        (km.DATAKEY_WRAPPED_LEN) to store next to the data; unwrap it with
        Vault.decrypt_data_key(wrapped, aad).
        type: a symmetric key type name for a data key of its size
        ("aes-128-gcm" 16 bytes, "hmac-sha512" 64, ...; km_datakey_generate_type).
        Raises UsageError, StateError, PolicyError, LimitReached."""
        a, an = _ffi.in_data(aad, "aad")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as k:
            if type is None:
                wrapped = _sized(lambda out, cap, out_len: lib.km_datakey_generate(
                    k, a, an, ctypes.byref(sp) if plaintext else None, out, cap, out_len),
                    DATAKEY_WRAPPED_LEN)
            else:
                t = _key_type(type)
                wrapped = _sized(lambda out, cap, out_len: lib.km_datakey_generate_type(
                    k, t, a, an, ctypes.byref(sp) if plaintext else None, out, cap, out_len),
                    CIPHERTEXT_OVERHEAD + 64)
        return (_take_secret(sp, self.vault) if plaintext else None), wrapped

    def generate_data_key_pair(self, type, aad=b"", *, plaintext=True):
        """Generates a data key pair of `type` ("ec-p256", "rsa-3072", "ed25519",
        "x25519", ...; km_datakey_pair_generate). Returns (private, wrapped,
        public): the private key as PKCS#8 DER in a km.Secret (None with
        plaintext=False), it wrapped under this key with `aad` (unwrap it with
        Vault.decrypt_data_key_pair), and the public key as SPKI DER bytes."""
        t = _key_type(type)
        a, an = _ffi.in_data(aad, "aad")
        sp = _ffi.SECRET_P()
        w = (ctypes.c_uint8 * 4096)()
        pub = (ctypes.c_uint8 * 1024)()
        wl, pl = ctypes.c_size_t(0), ctypes.c_size_t(0)
        with _Use(self._h) as k:
            lib.km_datakey_pair_generate(k, t, a, an, ctypes.byref(sp) if plaintext else None,
                                         w, 4096, ctypes.byref(wl), pub, 1024, ctypes.byref(pl))
        return ((_take_secret(sp, self.vault) if plaintext else None),
                ctypes.string_at(w, wl.value), ctypes.string_at(pub, pl.value))

    def derive(self, length, *, salt=b"", info=b""):
        """HKDF-SHA-256 from this HMAC key (usage "derive"): the same salt and
        info always give the same `length` bytes (1..km.DERIVE_MAX), as a km.Secret."""
        s_, sn = _ffi.in_data(salt, "salt")
        i, iname = _ffi.in_data(info, "info")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as k:
            lib.km_derive(k, s_, sn, i, iname, int(length), ctypes.byref(sp))
        return _take_secret(sp, self.vault)

    def agree(self, peer_public_key, length=32, *, info=b""):
        """ECDH / X25519 / FFDHE with a peer's public key (SPKI DER or PEM),
        then HKDF-SHA-256 (empty salt, `info`) to `length` bytes: a km.Secret.
        Both sides get the same bytes. Raises InvalidArgument for a bad or
        other-curve peer key, UsageError."""
        peer, pn = _ffi.in_data(_pem_to_der(peer_public_key), "peer_public_key")
        i, iname = _ffi.in_data(info, "info")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as k:
            lib.km_agree(k, peer, pn, i, iname, int(length), ctypes.byref(sp))
        return _take_secret(sp, self.vault)

    def agree_raw(self, peer_public_key):
        """The raw shared secret with a peer's public key (SPKI DER or PEM; FFDHE
        also in the X9.42 form pyca/cryptography writes), for protocols with
        their own KDF: the ECDH x-coordinate, 32 bytes for X25519, the prime's
        length for FFDHE; a km.Secret. Needs the key's usage "agree-raw"
        (never a default), for a principal the "agree-raw" grant, and a policy
        without "operations": {"agree-raw": false}; audited (agree.raw).
        Raises UsageError, AccessDenied, PolicyError, InvalidArgument."""
        peer, pn = _ffi.in_data(_pem_to_der(peer_public_key), "peer_public_key")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as k:
            lib.km_agree_raw(k, peer, pn, ctypes.byref(sp))
        return _take_secret(sp, self.vault)

    def rsa_decrypt(self, data, *, version=0):
        """RSA-OAEP-SHA-256 decryption of a small secret wrapped to this RSA
        key (usage "unwrap"); a km.Secret."""
        d, dn = _ffi.in_data(data, "data")
        sp = _ffi.SECRET_P()
        with _Use(self._h) as k:
            lib.km_rsa_decrypt(k, version, d, dn, ctypes.byref(sp))
        return _take_secret(sp, self.vault)

    # -- batch calls (km_batch)
    def _batch(self, op, ins, aads=None, sigs=None, flags=0, out_cap=None):
        """km_batch over the items; per item the output bytes (or True/False
        for verification) or the KmError instance saying why it failed (not
        raised: the other items are still done)."""
        ins = list(ins)
        n = len(ins)
        for name, extra in (("aads", aads), ("signatures", sigs)):
            if extra is not None and len(extra) != n:
                raise InvalidArgument("batch: one %s entry per item" % name[:-1],
                                      function="km_batch")
        if n == 0:
            return []
        items, keep, bufs = _batch_items(ins, aads, sigs, out_cap)
        with _Use(self._h) as k:
            rc = lib.km_batch(k, op, flags, items, n)
        if rc != 0 and all(items[i].result == 0 and not items[i].detail for i in range(n)):
            raise _ffi.error_for(rc, "km_batch")  # refused as a whole
        return _batch_results(items, bufs, out_cap is None, "km_batch")

    def encrypt_batch(self, items, aads=None):
        """Encrypts many plaintexts in one call (the key checked once): a list
        of ciphertexts, or per failed item its KmError."""
        return self._batch(_ffi.KM_BATCH_ENCRYPT, items, aads,
                           out_cap=lambda n: n + CIPHERTEXT_OVERHEAD)

    def decrypt_batch(self, ciphertexts, aads=None, *, allow_compromised=False):
        """Decrypts many ciphertexts of this key: plaintexts or KmErrors."""
        flags = _ffi.KM_DECRYPT_ALLOW_COMPROMISED if allow_compromised else 0
        return self._batch(_ffi.KM_BATCH_DECRYPT, ciphertexts, aads, flags=flags,
                           out_cap=lambda n: n)

    def sign_batch(self, messages, *, raw=False, p1363=False, pkcs1=False):
        """Signs many messages: signatures or KmErrors."""
        return self._batch(_ffi.KM_BATCH_SIGN, messages, flags=_sig_flags(raw, p1363, pkcs1),
                           out_cap=lambda n: SIGNATURE_MAX)

    def verify_batch(self, messages, signatures, *, raw=False, p1363=False, pkcs1=False):
        """Verifies many signatures: per item True, False or a KmError."""
        return self._batch(_ffi.KM_BATCH_VERIFY, messages, sigs=list(signatures),
                           flags=_sig_flags(raw, p1363, pkcs1))

    def mac_batch(self, messages, *, raw=False):
        """MACs of many messages: tags or KmErrors."""
        return self._batch(_ffi.KM_BATCH_MAC, messages, flags=_sig_flags(raw, False),
                           out_cap=lambda n: MAC_MAX)

    def mac_verify_batch(self, messages, tags, *, raw=False):
        """Verifies many MACs: per item True, False or a KmError."""
        return self._batch(_ffi.KM_BATCH_MAC_VERIFY, messages, sigs=list(tags),
                           flags=_sig_flags(raw, False))

    def rsa_oaep_encrypt(self, data, *, label=b"", version=0):
        """RSA-OAEP encryption to this RSA key's public key with its OAEP
        digest and `label` (km_rsa_oaep_encrypt): bytes of the modulus size."""
        d, dn = _ffi.in_data(data, "data")
        lb, ln = _ffi.in_data(label, "label")
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_rsa_oaep_encrypt(
                k, version, lb, ln, d, dn, out, cap, out_len), 512)

    def rsa_oaep_decrypt(self, data, *, label=b"", version=0):
        """RSA-OAEP decryption with this key's OAEP digest and `label`
        (km_rsa_oaep_decrypt): a km.Secret, empty for the empty message.
        Raises IntegrityError for a wrong key, label or digest, or altered data."""
        d, dn = _ffi.in_data(data, "data")
        lb, ln = _ffi.in_data(label, "label")
        with _Use(self._h) as k:
            s = Secret(_sized(lambda out, cap, out_len: lib.km_rsa_oaep_decrypt(
                k, version, lb, ln, d, dn, out, cap, out_len), 512, secret=True))
        self.vault._secrets.add(s)
        return s

    def sign_digest(self, digest, algorithm="sha256", *, version=0, p1363=False, pkcs1=False):
        """Signs a digest computed by the caller (raw signature, no header).
        algorithm: "sha256", "sha384" or "sha512"; pkcs1=True: RSA PKCS#1 v1.5
        instead of PSS; p1363=True: ECDSA as r||s."""
        d, dn = _ffi.in_data(digest, "digest")
        flags = ((_ffi.KM_SIG_P1363 if p1363 else 0) | (_ffi.KM_SIG_PKCS1 if pkcs1 else 0))
        alg = _cstr(algorithm, "algorithm")
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_sign_digest(k, version, flags, alg,
                                                                       d, dn, out, cap,
                                                                       out_len),
                          SIGNATURE_MAX)

    # -- distribution
    def export_wrapped(self, *, kek=None, recipient=None, version=0):
        """Exports this key's material wrapped (the key must be exportable).

        kek: a Key of type aes-256-kwp with usage "wrap" ("kwp" format: import
            it with Vault.import_wrapped(..., format="kwp") in a vault that
            holds the same KEK); or
        recipient: an RSA public key (SPKI DER or PEM, >= 2048 bits), e.g.
            another vault's wrapping_key() ("rsa-oaep-kwp" format).
        Raises PolicyError (not exportable), Unsupported (material that cannot
        leave its backend), UsageError, StateError."""
        if (kek is None) == (recipient is None):
            raise InvalidArgument("export_wrapped needs exactly one of kek and recipient",
                                  function="export_wrapped")
        if kek is not None:
            if not isinstance(kek, Key):
                raise TypeError("kek must be a km.Key")
            with _Use(kek._h) as kp, _Use(self._h) as k:
                return _sized(lambda out, cap, out_len: lib.km_key_export_wrapped(
                    k, version, _ffi.KM_WRAP_KWP, kp, None, 0, out, cap, out_len), 1024)
        r, rn = _ffi.in_data(bytes(recipient.encode("ascii") if isinstance(recipient, str)
                                   else recipient), "recipient")
        with _Use(self._h) as k:
            return _sized(lambda out, cap, out_len: lib.km_key_export_wrapped(
                k, version, _ffi.KM_WRAP_RSA_OAEP_KWP, None, r, rn, out, cap, out_len), 4096)


def _batch_items(ins, aads, sigs, out_cap):
    """A km_batch_item array for ins (with aads, sigs when not None, and an
    output buffer of out_cap(in_len) bytes when out_cap is not None); returns
    (items, the inputs to keep alive, the output buffers)."""
    n = len(ins)
    items = (_ffi.km_batch_item * n)()
    keep, bufs = [], []
    for i, data in enumerate(ins):
        p, in_len = _ffi.in_data(data, "item")
        keep.append(p)
        items[i].in_, items[i].in_len = ctypes.cast(p, _ffi.U8_P), in_len
        if aads is not None:
            p, ln = _ffi.in_data(aads[i], "aad")
            keep.append(p)
            items[i].aad, items[i].aad_len = ctypes.cast(p, _ffi.U8_P), ln
        if sigs is not None:
            p, ln = _ffi.in_data(sigs[i], "signature")
            keep.append(p)
            items[i].sig, items[i].sig_len = ctypes.cast(p, _ffi.U8_P), ln
        if out_cap is not None:
            cap = max(out_cap(in_len), 1)
            b = (ctypes.c_uint8 * cap)()
            bufs.append(b)
            items[i].out, items[i].out_cap = ctypes.cast(b, _ffi.U8_P), cap
    return items, keep, bufs


def _batch_results(items, bufs, verify, function):
    """Per item of a done batch: the output bytes (True/False when verify),
    or the KmError instance with the item's own detail; wipes the buffers."""
    out = []
    for i in range(len(items)):
        r = items[i].result
        if r == 0 and verify:
            out.append(True)
        elif r == _ffi.CLASSES["VerifyError"].code and verify:
            out.append(False)
        elif r == 0:
            out.append(ctypes.string_at(bufs[i], items[i].out_len))
        else:
            detail = items[i].detail.decode("utf-8", "replace")
            out.append(error_class(r)("item %d: %s" % (i, detail), code=r, function=function))
    for b in bufs:
        wipe(b)
    return out
