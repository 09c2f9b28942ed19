"""
Tests for the in-memory picture of a folder's index (storage/state.py) and
the memory-only fast paths built on it: kept current by every change made
through the store, updated from modification sequences, stale after the
rescan interval for changes made behind the store's back.
"""

import os

from twisted.trial import unittest

from mailplat.storage import nowait
from mailplat.storage.maildir import MaildirStore
from mailplat.storage.state import FolderState

USER = "demo@example.test"


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class StateTests(unittest.TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.store = MaildirStore(self.root)
        self.folder = self.store.folder(USER)
        self.time = self.folder.clock = FakeTime()

    def deliver(self, *bodies, folder=None):
        folder = folder or self.folder
        return [folder.deliver([b"Subject: %d\r\n\r\n" % n + body])
                for n, body in enumerate(bodies)]

    def settle(self):
        """
        Make the directories look old enough to be trusted (see
        MaildirFolder._settled) and read the folder through the store.
        """
        for sub in ("new", "cur"):
            os.utime(os.path.join(self.folder.path, sub), ns=(10**18, 10**18))
        self.folder._stamp = None
        return self.folder.snapshot()

    def assertMatchesIndex(self, folder=None):
        """
        The folder's state is what building it afresh from the index gives.
        """
        folder = folder or self.folder
        with folder._user.lock:
            state = folder._currentState()
            fresh = FolderState.fromRows(
                folder._row(), folder.path, folder._index.messages(folder.id),
                type(state[0]) if len(state) else tuple, 0,
            )
        self.assertEqual(list(state), list(fresh))
        self.assertEqual(state.row, fresh.row)
        self.assertEqual(state.recent, fresh.recent)

    def test_noStateUntilRead(self):
        self.assertIsNone(self.folder.cachedState(1.0))
        self.deliver(b"a\r\n")
        self.assertIsNone(self.folder.cachedState(1.0))
        self.settle()
        state = self.folder.cachedState(1.0)
        self.assertEqual([i.uid for i in state], [1])

    def test_everyChangeThroughTheStoreMakesItStale(self):
        self.deliver(b"a\r\n", b"b\r\n", b"c\r\n")
        changes = [
            lambda: self.deliver(b"d\r\n"),
            lambda: self.folder.storeFlags([1], add={"\\Seen", "Work"}),
            lambda: self.folder.claimRecent(),
            lambda: self.folder.storeFlags([2], add={"\\Deleted"}),
            lambda: self.folder.expunge(),
            lambda: self.folder.copyTo([1], self.store.folder(USER, "Archive")),
            lambda: self.folder.moveTo([3], self.store.folder(USER, "Archive")),
        ]
        archive = self.store.folder(USER, "Archive")
        for change in changes:
            self.settle()
            self.assertIsNotNone(self.folder.cachedState(1.0))
            change()
            # What the fast paths would answer now is what the index says.
            for folder in (self.folder, archive):
                cached = folder.cachedState(1.0)
                if cached is not None:
                    with folder._user.lock:
                        rows = folder._index.messages(folder.id)
                    self.assertEqual([(i.uid, i.flags, i.recent) for i in cached],
                                     [(r.uid, r.flags, r.recent) for r in rows])
                self.assertMatchesIndex(folder)

    def test_claimRecentUpdatesTheState(self):
        self.deliver(b"a\r\n", b"b\r\n")
        self.settle()
        self.assertEqual(self.folder.cachedState(1.0).recent, {1, 2})
        self.assertEqual(self.folder.claimRecent(), {1, 2})
        state = self.folder.cachedState(1.0)
        self.assertEqual(state.recent, frozenset())
        self.assertTrue(all(i.path.split(os.sep)[-2] == "cur" for i in state))
        self.assertMatchesIndex()

    def test_updatedFromModseqs(self):
        """
        After new messages and flag changes the state is updated from the
        rows whose modification sequence went up, not rebuilt.
        """
        self.deliver(b"a\r\n", b"b\r\n")
        self.settle()
        self.deliver(b"c\r\n")
        self.folder.storeFlags([1], add={"$Label"})
        calls = []
        messages = self.folder._index.messages
        self.folder._index.messages = lambda *a: calls.append(a) or messages(*a)
        infos = self.folder.messages([1, 2, 3])
        self.assertEqual(calls, [])
        self.assertEqual([i.uid for i in infos], [1, 2, 3])
        self.assertEqual(infos[0].flags, {"$Label"})
        del self.folder._index.messages
        self.assertMatchesIndex()

    def test_rebuiltAfterExpunge(self):
        self.deliver(b"a\r\n", b"b\r\n")
        self.settle()
        self.folder.storeFlags([1], add={"\\Deleted"})
        self.folder.expunge()
        self.assertEqual([i.uid for i in self.folder.snapshot()], [2])
        self.assertMatchesIndex()

    def test_externalDropSeenAfterTheRescanInterval(self):
        """
        Mail another program drops into the Maildir is not in the cached
        state until it is older than the rescan interval; then the blocking
        call rescans.
        """
        self.deliver(b"a\r\n")
        self.settle()
        with open(os.path.join(self.folder.path, "new", "1.ext.host"), "wb") as f:
            f.write(b"x\r\n")
        self.assertEqual(len(self.folder.cachedState(1.0)), 1)
        self.time.now += 1.0
        self.assertIsNone(self.folder.cachedState(1.0))
        self.assertEqual(len(self.folder.snapshot()), 2)

    def test_unsettledDirectoryIsLookedAtAgain(self):
        """
        A directory whose modification time is too recent to trust (another
        change could come within the same tick) gives no cached state.
        """
        self.deliver(b"a\r\n")
        self.folder.snapshot()
        self.assertFalse(self.folder._settled)
        self.assertIsNone(self.folder.cachedState(1.0))

    def test_zeroIntervalNeverCaches(self):
        self.deliver(b"a\r\n")
        self.settle()
        self.assertIsNone(self.folder.cachedState(0))

    def test_cachedChangesNeedingAClaim(self):
        """
        A read-write session behind the folder whose new messages are
        recent must claim them (a write): no cached answer.
        """
        self.settle()
        modseq = self.folder.cachedState(1.0).row.highestModseq
        self.deliver(b"a\r\n")
        self.settle()
        self.assertIsNone(self.folder.cachedChanges(modseq, 0, 0, True, 1.0))
        row, uids, arrived, changed, claimed = self.folder.cachedChanges(
            modseq, 0, 0, False, 1.0)
        self.assertEqual((uids, arrived, [i.uid for i in changed]), (None, [1], [1]))
        self.assertEqual(self.folder.changes(modseq, 0, 0, True)[4], {1})
        self.settle()
        self.assertEqual(
            self.folder.cachedChanges(modseq, 0, 0, True, 1.0)[2], [1])

    def test_cachedSelectMatchesSelect(self):
        self.deliver(b"a\r\n", b"b\r\n", b"c\r\n")
        self.folder.storeFlags([1], add={"\\Seen", "Work"})
        self.folder.claimRecent()
        self.settle()
        self.assertEqual(self.folder.cachedSelect(True, 1.0)[1:],
                         self.folder.select(True)[1:])
        row, uids, recent, firstUnseen, keywords = self.folder.cachedSelect(False, 1.0)
        self.assertEqual((list(uids), firstUnseen, keywords), ([1, 2, 3], 2, ["Work"]))

    def test_cachedStatus(self):
        self.deliver(b"a\r\n", b"bb\r\n")
        self.folder.storeFlags([2], add={"\\Seen"})
        self.settle()
        self.assertEqual(self.folder.cachedStatus(1.0), self.folder.status())
        self.assertEqual(self.folder.status()["UNSEEN"], 1)

    def test_viewIsAFixedSnapshot(self):
        self.deliver(b"a\r\n", b"b\r\n")
        view = self.folder.view()
        self.deliver(b"c\r\n")
        self.folder.storeFlags([1], add={"\\Seen"})
        self.assertEqual([(i.uid, i.flags) for i in view],
                         [(1, frozenset()), (2, frozenset())])
        self.assertEqual(view[-1].uid, 2)
        self.assertEqual([i.uid for i in view[0:1]], [1])
        self.assertRaises(IndexError, view.__getitem__, 2)
        self.assertEqual(len(self.folder.view()), 3)

    def test_renamedFolder(self):
        self.store.createFolder(USER, "Work")
        folder = self.store.folder(USER, "Work")
        self.deliver(b"a\r\n", folder=folder)
        folder.snapshot()
        self.store.renameFolder(USER, "Work", "Play")
        self.assertIsNone(folder.cachedState(1.0))
        [info] = folder.snapshot()
        self.assertTrue(info.path.startswith(folder.path + os.sep))
        self.assertEqual(folder.read(info), b"Subject: 0\r\n\r\na\r\n")


class CachedFolderTests(unittest.TestCase):
    def setUp(self):
        self.store = MaildirStore(os.path.abspath(self.mktemp()))

    def test_onlyWhatIsOpen(self):
        self.assertIsNone(self.store.cachedFolder(USER))
        inbox = self.store.folder(USER)
        self.assertIs(self.store.cachedFolder(USER.upper()), inbox)
        self.assertIs(self.store.cachedFolder(USER, "inbox"), inbox)
        self.assertIsNone(self.store.cachedFolder(USER, "Nope"))
        self.assertIsNone(self.store.cachedFolder(USER, "../x"))
        self.assertIsNone(self.store.cachedFolder("other@example.test"))

    def test_deletedAndRenamed(self):
        self.store.createFolder(USER, "Work")
        work = self.store.folder(USER, "Work")
        self.assertIs(self.store.cachedFolder(USER, "Work"), work)
        self.store.renameFolder(USER, "Work", "Play")
        self.assertIsNone(self.store.cachedFolder(USER, "Work"))
        self.assertIs(self.store.cachedFolder(USER, "Play"), work)
        self.store.deleteFolder(USER, "Play")
        self.assertIsNone(self.store.cachedFolder(USER, "Play"))


class ReadNowaitTests(unittest.TestCase):
    if not nowait.available:
        skip = "openat2(RESOLVE_CACHED) is not available here"

    def setUp(self):
        self.store = MaildirStore(os.path.abspath(self.mktemp()))
        self.folder = self.store.folder(USER)
        self.folder.deliver([b"Subject: x\r\n\r\nbody\r\n"])
        [self.info] = self.folder.snapshot()
        self.closed = []

    def test_cached(self):
        self.assertEqual(self.folder.readNowait(self.info, self.closed.append),
                         b"Subject: x\r\n\r\nbody\r\n")

    def test_notInThePageCache(self):
        fd = os.open(self.info.path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        # Some file systems (tmpfs) keep every page: nothing to test there.
        data = self.folder.readNowait(self.info, self.closed.append)
        if data is not None:
            raise unittest.SkipTest("the file system keeps the pages cached")

    def test_goneOrDifferent(self):
        self.folder.storeFlags([1], add={"\\Seen"})
        self.assertIsNone(self.folder.readNowait(self.info, self.closed.append))
        [info] = self.folder.snapshot()
        self.assertIsNone(
            self.folder.readNowait(info._replace(size=info.size + 1), self.closed.append))
        self.assertEqual(self.closed, [])

    def test_unlinkedWhileOpenIsClosedElsewhere(self):
        """
        A file whose last link is gone is freed by its last close, which is
        disk work: such a descriptor is handed to C{closeLater}.
        """
        real = nowait._openCached

        def openAndUnlink(path):
            fd, err = real(path)
            os.unlink(path)
            return fd, err

        self.patch(nowait, "_openCached", openAndUnlink)
        self.assertIsNone(self.folder.readNowait(self.info, self.closed.append))
        self.assertEqual(len(self.closed), 1)
        os.close(self.closed[0])
