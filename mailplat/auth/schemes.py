"""
Password hash schemes, named as Dovecot names them (C{{SCHEME}hash}), so a
Dovecot passwd-file can be used as it is.

  - C{ARGON2ID} (and C{ARGON2I}): argon2-cffi; what mailplat writes.
  - C{BLF-CRYPT}: bcrypt (C{$2y$}/C{$2b$}), with the bcrypt package.
  - C{SHA512-CRYPT}, C{SHA256-CRYPT}: glibc's SHA-crypt (C{$6$}/C{$5$}),
    through the system's libcrypt (libxcrypt): Python's C{crypt} module is
    deprecated and gone in 3.13, and passlib is unmaintained.

Plaintext schemes are refused.  Every verification is CPU-heavy by design:
callers run it in a thread.
"""

import ctypes
import ctypes.util
import hmac
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailplat.auth import argon2mem

DEFAULT_SCHEME = "ARGON2ID"


class UnknownScheme(ValueError):
    """
    The stored hash names a scheme mailplat cannot verify.
    """


_state = {}
_cryptLock = threading.Lock()


def _argon2():
    if "argon2" not in _state:
        _state["argon2"] = PasswordHasher()
    return _state["argon2"]


def _libcrypt():
    if "crypt" not in _state:
        name = ctypes.util.find_library("crypt")
        if name is None:
            raise UnknownScheme("SHA-crypt needs libcrypt, which is not installed")
        lib = ctypes.CDLL(name)
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        _state["crypt"] = lib
    return _state["crypt"]


def _verifyArgon2(hashed, password):
    # With each hashing thread's own buffer when the hash allows (see
    # mailplat.auth.argon2mem for why), else as argon2-cffi does it.
    result = argon2mem.verify(hashed, password)
    if result is not None:
        return result
    try:
        return _argon2().verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _verifyBcrypt(hashed, password):
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


def _verifyShaCrypt(prefix):
    def verify(hashed, password):
        if not hashed.startswith(prefix):
            return False
        lib = _libcrypt()
        with _cryptLock:  # crypt() returns a static buffer
            result = lib.crypt(password.encode("utf-8"), hashed.encode("ascii"))
        return result is not None and hmac.compare_digest(result, hashed.encode("ascii"))

    return verify


_VERIFIERS = {
    "ARGON2ID": _verifyArgon2,
    "ARGON2I": _verifyArgon2,
    "BLF-CRYPT": _verifyBcrypt,
    "SHA512-CRYPT": _verifyShaCrypt("$6$"),
    "SHA256-CRYPT": _verifyShaCrypt("$5$"),
}

SCHEMES = tuple(_VERIFIERS)


def splitScheme(stored):
    """
    @return: C{(scheme, hash)} for C{"{SCHEME}hash"}; a bare C{$argon2id$}
        or C{$2y$} hash is recognised too.
    @raise UnknownScheme: no scheme mailplat knows.
    """
    if stored.startswith("{"):
        scheme, sep, rest = stored[1:].partition("}")
        scheme = scheme.upper()
        if sep and scheme in _VERIFIERS:
            return scheme, rest
        raise UnknownScheme(f"unsupported password scheme {{{scheme}}}")
    if stored.startswith("$argon2id$"):
        return "ARGON2ID", stored
    if stored.startswith(("$2y$", "$2b$", "$2a$")):
        return "BLF-CRYPT", stored
    if stored.startswith("$6$"):
        return "SHA512-CRYPT", stored
    if stored.startswith("$5$"):
        return "SHA256-CRYPT", stored
    raise UnknownScheme("unsupported or plaintext password scheme")


def isKnownHash(stored):
    try:
        splitScheme(stored)
    except UnknownScheme:
        return False
    return True


def hashPassword(password, scheme=DEFAULT_SCHEME):
    """
    @return: the stored form, C{"{ARGON2ID}$argon2id$..."} by default.
    """
    if scheme == "ARGON2ID":
        return "{ARGON2ID}" + _argon2().hash(password)
    if scheme == "BLF-CRYPT":
        import bcrypt

        return "{BLF-CRYPT}" + bcrypt.hashpw(
            password.encode("utf-8"), bcrypt.gensalt()
        ).decode("ascii")
    raise UnknownScheme(f"mailplat does not write {scheme} hashes")


def verifyPassword(stored, password):
    """
    @return: whether C{password} matches; L{False} for an unknown or damaged
        hash.
    """
    try:
        scheme, hashed = splitScheme(stored)
    except UnknownScheme:
        return False
    return _VERIFIERS[scheme](hashed, password)
