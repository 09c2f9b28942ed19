"""
Password hashing with argon2id (argon2-cffi).

Hashes are stored with a Dovecot-style scheme prefix, C{{ARGON2ID}$argon2id$...},
so a password file can later be shared with, or migrated from, Dovecot's
passwd-file format.
"""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SCHEME = "{ARGON2ID}"

# RFC 9106 "second recommended option" is 64 MiB / t=3; we keep argon2-cffi's
# defaults (t=3, m=64 MiB, p=4), which it keeps current.
_hasher = None


def _getHasher():
    global _hasher
    if _hasher is None:
        _hasher = PasswordHasher()
    return _hasher


def hashPassword(password):
    """
    Hash C{password} (L{str}) for storage.

    @return: the stored form, C{"{ARGON2ID}$argon2id$..."}.
    """
    return SCHEME + _getHasher().hash(password)


def isKnownHash(stored):
    """
    @return: whether C{stored} is in a scheme this module can verify.
    """
    return stored.startswith(SCHEME + "$argon2id$")


def verifyPassword(stored, password):
    """
    Check C{password} against the C{stored} hash.  CPU-heavy (tens of
    milliseconds by design): call it from a thread, never the reactor.

    @return: L{True} when it matches, L{False} otherwise (also for an unknown or
        damaged hash).
    """
    if not isKnownHash(stored):
        return False
    try:
        return _getHasher().verify(stored[len(SCHEME) :], password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash checked when the user does not exist, so that the answer takes the same
# time whether or not the user exists.
_dummy = None


def dummyHash():
    global _dummy
    if _dummy is None:
        _dummy = hashPassword("mailplat dummy password, never matches anything")
    return _dummy
