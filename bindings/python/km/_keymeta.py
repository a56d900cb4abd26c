"""A key's names and metadata after creation (issue 22): the methods that
km.Key and km.Vault inherit from _KeyMeta and _VaultMeta.

Names and aliases share one namespace: ``vault.key(alias)`` opens the key an
alias names. Every change is one transaction in the vault and one audit entry
(operation ``key.meta``); a principal needs the admin role.
"""

import ctypes
import json
import sys

from . import _ffi
from ._ffi import lib


def _pkg():
    # the package's helpers (_Use, _cstr, _key_type), imported when first
    # called: this module is loaded while km/__init__.py is being executed
    return sys.modules[__package__]


def _state(state):
    """A state name ("active", ...) to its number; InvalidArgument when unknown."""
    i = 1
    while True:
        n = lib.km_state_name(i)
        if n is None:
            break
        if n == state:
            return i
        i += 1
    raise _ffi.CLASSES["InvalidArgument"]("unknown key state %r" % (state,),
                                          function="list_keys")


def key_lister():
    """A km_key_list_fn that collects (name, id as hex, type name) into
    `found` (an exception raised inside goes to `failure`, never through C):
    returns (callback, found, failure)."""
    found, failure = [], []

    def each(name, key_id, ktype, arg):
        try:
            found.append((name.decode("utf-8", "replace"), ctypes.string_at(key_id, 16).hex(),
                          lib.km_key_type_name(ktype) or str(ktype)))
            return 0
        except BaseException as e:  # pragma: no cover - never unwind through C
            failure.append(e)
            return 1

    return _ffi.km_key_list_fn(each), found, failure


def info_extra(ki):
    """The periods, own policy, description, aliases and tags of a
    km_keyinfo, for Key.info()."""
    tags = {}
    per = [ctypes.c_uint32() for _ in range(4)]
    lib.km_keyinfo_periods(ki, *[ctypes.byref(x) for x in per])
    pol = lib.km_keyinfo_policy(ki)
    win = [ctypes.c_uint32() for _ in range(2)]
    lib.km_keyinfo_window(ki, ctypes.byref(win[0]), ctypes.byref(win[1]))
    t, v = _ffi._ccp(), _ffi._ccp()
    for i in range(lib.km_keyinfo_tag_count(ki)):
        lib.km_keyinfo_tag(ki, i, ctypes.byref(t), ctypes.byref(v))
        tags[t.value.decode("utf-8", "replace")] = v.value.decode("utf-8", "replace")
    return {"owner": lib.km_keyinfo_owner(ki),
            "rotate_days": per[0].value, "protect_days": per[1].value,
            "process_days": per[2].value, "destroy_grace_days": per[3].value,
            "min_decryption_version": win[0].value, "min_encryption_version": win[1].value,
            "policy": json.loads(pol) if pol is not None else None,
            "description": lib.km_keyinfo_description(ki),
            "aliases": [lib.km_keyinfo_alias(ki, i)
                        for i in range(lib.km_keyinfo_alias_count(ki))],
            "tags": tags}


class _KeyMeta:
    """Renaming, aliases, description and tags of a Key."""

    def rename(self, new_name):
        """Renames the key (its id, ciphertexts, grants and aliases stay); the
        old name is free at once. Raises AlreadyExists when the name is taken
        by a key or an alias, InvalidArgument for a bad or "km:" name."""
        p = _pkg()
        cname = p._cstr(new_name, "new_name")
        with p._Use(self._h) as k:
            lib.km_key_rename(k, cname)
            self.name = lib.km_key_name(k)

    def add_alias(self, alias, *, move=False):
        """Gives the key another name. With move=True an alias of another key
        is moved to this one in one transaction (a reader opens the old or the
        new key by it, never neither). Raises AlreadyExists when it is a key's
        name, or another key's alias without move; LimitReached past 16."""
        p = _pkg()
        calias = p._cstr(alias, "alias")
        with p._Use(self._h) as k:
            lib.km_key_alias_add(k, calias, _ffi.KM_ALIAS_MOVE if move else 0)

    def set_description(self, text):
        """Sets the description (at most 1024 bytes, no control character);
        None or "" removes it."""
        p = _pkg()
        ctext = None if text is None else p._cstr(text, "text")
        with p._Use(self._h) as k:
            lib.km_key_set_description(k, ctext)

    def set_tag(self, tag, value):
        """Sets tag `tag` (1-64 of A-Z a-z 0-9 _ . : / -) to `value` (at most
        256 bytes, may be empty); at most 32 tags."""
        p = _pkg()
        ctag, cval = p._cstr(tag, "tag"), p._cstr(value, "value")
        with p._Use(self._h) as k:
            lib.km_key_set_tag(k, ctag, cval)

    def remove_tag(self, tag):
        """Removes tag `tag`; NotFound when the key does not have it."""
        p = _pkg()
        ctag = p._cstr(tag, "tag")
        with p._Use(self._h) as k:
            lib.km_key_set_tag(k, ctag, None)


    def set(self, *, rotate_days=None, usage=None, exportable=None, policy=None,
            deletion_protection=None, min_decryption_version=None,
            min_encryption_version=None):
        """Changes the key's settings in one transaction (only the arguments
        given): rotate_days (0 = never, within the policy), usage (a narrower
        list of km.USAGES names), exportable (only False), policy (the key's
        own policy, a dict or JSON text, at least as strict as the one in
        force for it), deletion_protection (bool). A new policy and clearing
        deletion protection are "policy-change" operations on the key under
        dual control: request them with vault.request("policy-change",
        key_name, params) where params is the policy JSON (exactly as given
        here) or b"deletion-protection=off". min_decryption_version and
        min_encryption_version set the version window (0 = none): versions
        below them no longer decrypt/verify, or encrypt/sign. Raises
        PolicyError (looser), InvalidArgument, AccessDenied."""
        p = _pkg()
        s = _ffi.km_key_settings()
        s.version = _ffi.KM_KEY_SETTINGS_VERSION
        if rotate_days is not None:
            s.fields |= _ffi.KM_SET_ROTATE_DAYS
            s.rotate_days = rotate_days
        if usage is not None:
            s.fields |= _ffi.KM_SET_USAGE
            s.usage = p._mask(usage, p.USAGES, "usage")
        if exportable is not None:
            s.fields |= _ffi.KM_SET_EXPORTABLE
            s.exportable = 1 if exportable else 0
        if policy is not None:
            s.fields |= _ffi.KM_SET_POLICY
            s.policy = p._cstr(p._policy_text(policy), "policy")
        if deletion_protection is not None:
            s.fields |= _ffi.KM_SET_DELETION_PROTECTION
            s.deletion_protection = 1 if deletion_protection else 0
        if min_decryption_version is not None:
            s.fields |= _ffi.KM_SET_MIN_PROCESS_VERSION
            s.min_process_version = min_decryption_version
        if min_encryption_version is not None:
            s.fields |= _ffi.KM_SET_MIN_PROTECT_VERSION
            s.min_protect_version = min_encryption_version
        with p._Use(self._h) as k:
            lib.km_key_set(k, ctypes.byref(s))

    def trim(self, grace_days=0):
        """Retires the versions below the minimum decryption version: each
        active or suspended one is deactivated (superseded, not compromised),
        then scheduled for destruction after grace_days (0: the key's grace).
        Returns how many were scheduled. Never the primary (StateError)."""
        p = _pkg()
        n = ctypes.c_uint32(0)
        with p._Use(self._h) as k:
            lib.km_key_trim(k, grace_days, ctypes.byref(n))
        return n.value


    def purge(self):
        """Removes the records of this key once every version is destroyed and
        the policy's destruction.tombstone_days have passed; its name and
        aliases are free again and the handle is closed. StateError before
        then, or under deletion protection."""
        p = _pkg()
        with p._Use(self._h) as k:
            lib.km_key_purge(k)
        self.close()


    def backup(self, *, recipient=None, passphrase=None):
        """A backup of this key with its whole history (versions, states,
        dates, policy, metadata, counters) as bytes, for Vault.restore_key():
        wrapped to the receiving vault's wrapping key (`recipient`: its
        wrapping_key() PEM or DER) or under `passphrase`. Only exportable
        software keys (PolicyError otherwise); under export dual control."""
        p = _pkg()
        if (recipient is None) == (passphrase is None):
            raise _ffi.CLASSES["InvalidArgument"]("give either recipient or passphrase",
                                                  function="backup")
        if isinstance(recipient, str):
            recipient = recipient.encode("ascii")
        if isinstance(passphrase, str):
            passphrase = passphrase.encode("utf-8")
        rp, rn = _ffi.in_data(recipient or b"", "recipient")
        pb, pn = _ffi.in_buffer(passphrase or b"", "passphrase")
        need = ctypes.c_size_t(0)
        try:
            with p._Use(self._h) as k:
                rc = lib.km_key_backup(k, rp if recipient else None, rn, pb if passphrase else None,
                                       pn, None, 0, ctypes.byref(need))
                if rc < 0 and rc != _ffi.CLASSES["BufferTooSmall"].code:
                    raise _ffi.error_for(rc, "km_key_backup")
                out = (ctypes.c_uint8 * need.value)()
                rc = lib.km_key_backup(k, rp if recipient else None, rn,
                                       pb if passphrase else None, pn, out, need.value,
                                       ctypes.byref(need))
                if rc < 0:
                    raise _ffi.error_for(rc, "km_key_backup")
            return bytes(out[:need.value])
        finally:
            _ffi.wipe(pb)


    def grants(self):
        """The grants on this key as a list of (grantee, [permission names]):
        a principal's name or "role:NAME". The vault owner, an admin and an
        auditor see all; another principal sees those that apply to it."""
        p = _pkg()
        found, failure = [], []

        def each(grantee, perms, arg):
            try:
                found.append((grantee.decode("utf-8", "replace"), p._names(perms, p.PERMS)))
                return 0
            except BaseException as e:  # pragma: no cover - never unwind through C
                failure.append(e)
                return 1

        cb = _ffi.km_grant_fn(each)
        with p._Use(self._h) as k:
            lib.km_key_grants(k, cb, None)
        if failure:  # pragma: no cover
            raise failure[0]
        return found


class _VaultMeta:
    """Aliases and the filtered listing of a Vault."""

    def remove_alias(self, alias):
        """Removes an alias (of whichever key has it). NotFound when no key has
        it; InvalidArgument when it is a key's name."""
        p = _pkg()
        calias = p._cstr(alias, "alias")
        with p._Use(self._h) as ctx:
            lib.km_key_alias_remove(ctx, calias)

    def restore_key(self, backup, *, passphrase=None, name=None):
        """Restores a Key.backup() into this vault (its id, versions, states,
        dates, counters; not its aliases), under `name` or the name it had;
        returns the Key. Raises IntegrityError (altered, wrong passphrase,
        another vault's), AlreadyExists (the name is taken or the key is here)."""
        p = _pkg()
        if isinstance(passphrase, str):
            passphrase = passphrase.encode("utf-8")
        bp, bn = _ffi.in_data(backup, "backup")
        pb, pn = _ffi.in_buffer(passphrase or b"", "passphrase")
        cname = None if name is None else p._cstr(name, "name")
        out = _ffi.KEY_P()
        try:
            with p._Use(self._h) as ctx:
                lib.km_key_restore(ctx, bp, bn, pb if passphrase else None, pn, cname,
                                   ctypes.byref(out))
                return p.Key._new(self, out)
        finally:
            _ffi.wipe(pb)

    def list_keys(self, *, type=None, state=None, protection=None, tag=None):
        """The keys that match every filter given, sorted by name, as a list of
        (name, id as hex, type name): `type` a type name, `state` a state name
        (keys with at least one version in it), `protection` a backend name,
        `tag` "K" (keys with tag K) or "K=V"."""
        p = _pkg()
        f = _ffi.km_key_filter()
        f.version = _ffi.KM_KEY_FILTER_VERSION
        if type is not None:
            f.type = p._key_type(type)
        if state is not None:
            f.state = _state(state)
        if protection is not None:
            f.protection = p._cstr(protection, "protection")
        if tag is not None:
            f.tag = p._cstr(tag, "tag")
        cb, found, failure = key_lister()
        with p._Use(self._h) as ctx:
            lib.km_key_list_filtered(ctx, ctypes.byref(f), cb, None)
        if failure:  # pragma: no cover
            raise failure[0]
        return found
