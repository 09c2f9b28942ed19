"""
State shared by every IMAP listener of one store (port 143 and 993): how
many connections each user has (a per-user limit), and the poller that
notices mail dropped into a watched Maildir by another program.
"""

import weakref

from twisted.logger import Logger

from mailplat.interfaces import NoSuchFolder


class UserConnections:
    """
    Counts the logged-in IMAP sessions of each user.
    """

    def __init__(self):
        self._counts = {}

    def acquire(self, address, limit):
        """
        @return: whether one more session of C{address} is allowed (and now
            counted).
        """
        count = self._counts.get(address, 0)
        if limit and count >= limit:
            return False
        self._counts[address] = count + 1
        return True

    def release(self, address):
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)

    def count(self, address):
        return self._counts.get(address, 0)


class FolderPoller:
    """
    Polls the folders IDLE sessions watch, in one thread-pool call per
    interval for all of them, so that mail another program drops into the
    Maildir reaches idle sessions within about a second.  Changes made
    through the store reach them at once through folder listeners; this is
    only for changes behind the store's back.
    """

    log = Logger()

    def __init__(self, clock, runBlocking, interval=0.5):
        self.clock = clock
        self.runBlocking = runBlocking
        self.interval = interval
        self._watched = {}
        self._call = None
        self._running = False

    def watch(self, folder):
        self._watched[folder] = self._watched.get(folder, 0) + 1
        self._schedule()

    def unwatch(self, folder):
        count = self._watched.get(folder, 0) - 1
        if count > 0:
            self._watched[folder] = count
        else:
            self._watched.pop(folder, None)
        if not self._watched and self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None

    def _schedule(self):
        if self._watched and self._call is None and not self._running:
            self._call = self.clock.callLater(self.interval, self._poll)

    def _poll(self):
        self._call = None
        self._running = True
        folders = list(self._watched)

        def pollAll():
            for folder in folders:
                try:
                    folder.poll()
                except NoSuchFolder:
                    pass
                except Exception:
                    self.log.failure("imap: polling {folder!r} failed", folder=folder)

        def done(result):
            self._running = False
            self._schedule()

        self.runBlocking(pollAll).addBoth(done)


_byStore = weakref.WeakKeyDictionary()


def sharedFor(context):
    """
    @return: C{(UserConnections, FolderPoller)} shared by every IMAP factory
        of C{context.store}.
    """
    shared = _byStore.get(context.store)
    if shared is None:
        shared = _byStore[context.store] = (
            UserConnections(),
            FolderPoller(context.clock, context.runBlocking),
        )
    return shared
