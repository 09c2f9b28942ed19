"""
Password hashing: the default scheme (argon2id) and verification of every
scheme L{mailplat.auth.schemes} knows.
"""

from mailplat.auth.schemes import hashPassword, isKnownHash, verifyPassword

__all__ = ["dummyHash", "hashPassword", "isKnownHash", "verifyPassword"]

_dummy = []


def dummyHash():
    """
    A hash checked when the user does not exist, so that the answer takes the
    same time whether or not the user exists.
    """
    if not _dummy:
        _dummy.append(hashPassword("mailplat dummy password, never matches anything"))
    return _dummy[0]
