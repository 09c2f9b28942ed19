"""
The POP3 maildrop lock: one POP3 session per maildrop (RFC 1939 section 4:
the server "acquires an exclusive-access lock on the maildrop").

The lock lives in memory, shared by every POP3 listener of the same store (the
110 and 995 factories), so a session on one port locks out the other.  IMAP and
delivery are not locked out: the store is safe for concurrent use, and a POP3
session works on its own snapshot.
"""

import weakref


class MaildropLocks:
    """
    Which maildrops have a POP3 session, keyed by user address.
    """

    def __init__(self):
        self._owners = {}

    def acquire(self, address, owner):
        """
        @return: whether C{owner} now holds the lock on C{address} (it may
            already have held it).
        """
        current = self._owners.setdefault(address, owner)
        return current is owner

    def release(self, address, owner):
        """
        Release C{address} if C{owner} holds it.
        """
        if self._owners.get(address) is owner:
            del self._owners[address]

    def isLocked(self, address):
        return address in self._owners


_byStore = weakref.WeakKeyDictionary()


def locksFor(store):
    """
    @return: the L{MaildropLocks} shared by every POP3 factory of C{store}.
    """
    locks = _byStore.get(store)
    if locks is None:
        locks = _byStore[store] = MaildropLocks()
    return locks
