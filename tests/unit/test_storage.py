"""
Tests for the Maildir store and its per-user index.
"""

import os
import threading

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from mailplat.interfaces import (
    FolderExists,
    FolderNotRemovable,
    IMailFolder,
    IMailStore,
    QuotaExceeded,
)
from mailplat.storage import names
from mailplat.storage.index import INDEX_NAME
from mailplat.storage.maildir import (
    BadFolderName,
    MaildirStore,
    MessageGone,
    NoSuchFolder,
)
from mailplat.testing import STANDARD_FOLDERS

USER = "demo@example.test"


class StoreTestMixin:
    quota = None

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.store = MaildirStore(self.root, quota=self.quota)

    def inbox(self):
        return self.store.folder(USER)

    def restart(self):
        self.store = MaildirStore(self.root, quota=self.quota)


class MaildirTests(StoreTestMixin, unittest.TestCase):
    def test_interfaces(self):
        verifyObject(IMailStore, self.store)
        verifyObject(IMailFolder, self.inbox())

    def test_layout(self):
        folder = self.inbox()
        userDir = os.path.join(self.root, "example.test", "demo")
        self.assertEqual(folder.path, os.path.join(userDir, "Maildir"))
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(folder.path, sub)))
        self.assertTrue(os.path.isfile(os.path.join(userDir, INDEX_NAME)))
        self.assertEqual(os.stat(os.path.join(userDir, INDEX_NAME)).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(userDir).st_mode & 0o777, 0o700)
        sent = self.store.folder(USER, "Sent")
        self.assertEqual(sent.path, os.path.join(userDir, "Maildir", ".Sent"))
        self.assertTrue(os.path.isfile(os.path.join(sent.path, "maildirfolder")))

    def test_specialFolders(self):
        """
        Every user has INBOX and the RFC 6154 folders, subscribed.
        """
        self.assertEqual(self.store.folders(USER), STANDARD_FOLDERS)
        self.assertEqual(
            self.store.subscriptions(USER),
            ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"],
        )
        self.assertEqual(self.store.folder(USER, "Trash").specialUse, "\\Trash")

    def test_sameObjectForEveryCaller(self):
        self.assertIs(self.inbox(), self.store.folder(USER, "inbox"))

    def test_deliverAssignsAscendingUIDs(self):
        folder = self.inbox()
        self.assertEqual(folder.deliver([b"one\r\n"]), 1)
        self.assertEqual(folder.deliver([b"two", b"\r\n"]), 2)
        infos = folder.snapshot()
        self.assertEqual([i.uid for i in infos], [1, 2])
        self.assertEqual([folder.read(i) for i in infos], [b"one\r\n", b"two\r\n"])
        self.assertEqual([i.size for i in infos], [5, 5])
        self.assertTrue(all(i.recent for i in infos))
        self.assertEqual([os.path.basename(os.path.dirname(i.path)) for i in infos],
                         ["new", "new"])
        self.assertEqual(os.listdir(os.path.join(folder.path, "tmp")), [])

    def test_deliverWithFlagsAndDate(self):
        folder = self.store.folder(USER, "Sent")
        uid = folder.deliver([b"x\r\n"], {"\\Seen", "$Forwarded"}, 1_000_000_000.0)
        [info] = folder.snapshot()
        self.assertEqual(info.uid, uid)
        self.assertEqual(info.flags, frozenset({"\\Seen", "$Forwarded"}))
        self.assertEqual(info.internalDate, 1_000_000_000.0)
        self.assertTrue(info.path.endswith(":2,S"))
        self.assertEqual(os.stat(info.path).st_mtime, 1_000_000_000.0)

    def test_uidsSurviveRestart(self):
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        folder.deliver([b"two\r\n"])
        validity = folder.uidValidity
        folder.remove(folder.snapshot()[:1])
        self.restart()
        again = self.inbox()
        self.assertEqual(again.uidValidity, validity)
        self.assertEqual([i.uid for i in again.snapshot()], [2])
        self.assertEqual(again.deliver([b"three\r\n"]), 3)
        self.assertEqual(again.uidNext, 4)

    def test_uidValidityDiffersPerFolder(self):
        validities = {self.store.folder(USER, n).uidValidity for n, _ in STANDARD_FOLDERS}
        self.assertEqual(len(validities), len(STANDARD_FOLDERS))

    def test_flagsInFileNames(self):
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        [info] = folder.snapshot()
        updated = folder.setFlags(info, {"\\Seen", "\\Flagged", "\\Recent", "Work"})
        self.assertEqual(updated.flags, frozenset({"\\Seen", "\\Flagged", "Work"}))
        self.assertTrue(updated.path.endswith(":2,FS"))
        self.assertEqual(os.path.dirname(updated.path), os.path.join(folder.path, "cur"))
        # A stale MessageInfo still reads after the rename.
        self.assertEqual(folder.read(info), b"one\r\n")
        self.restart()
        [again] = self.inbox().snapshot()
        self.assertEqual(again.uid, 1)
        self.assertEqual(again.flags, frozenset({"\\Seen", "\\Flagged", "Work"}))

    def test_changeFlagsKeepsConcurrentChanges(self):
        """
        A change made from an older snapshot applies to the flags as they are
        now: a flag another session set meanwhile is kept.
        """
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        [old] = folder.snapshot()
        folder.changeFlags(old, add={"\\Flagged"})
        updated = folder.changeFlags(old, add={"\\Seen"})
        self.assertEqual(updated.flags, frozenset({"\\Seen", "\\Flagged"}))
        updated = folder.changeFlags(old, remove={"\\Flagged"})
        self.assertEqual(updated.flags, frozenset({"\\Seen"}))
        folder.remove([old])
        self.assertRaises(MessageGone, folder.changeFlags, old, add={"\\Seen"})

    def test_modseq(self):
        """
        Each change gets a new modification sequence (RFC 7162); a store that
        changes nothing does not.
        """
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        folder.deliver([b"two\r\n"])
        start = folder.highestModseq
        infos, gone, modified = folder.storeFlags([1, 2, 9], add={"\\Seen"})
        self.assertEqual((gone, modified), ([9], []))
        self.assertEqual([i.modseq for i in infos], [start + 1, start + 1])
        self.assertEqual(folder.highestModseq, start + 1)
        folder.storeFlags([1], add={"\\Seen"})
        self.assertEqual(folder.highestModseq, start + 1)
        folder.storeFlags([2], add={"\\Flagged"})
        row, uids, arrived, changed, claimed = folder.changes(start + 1, 2, 2)
        self.assertEqual((uids, arrived, claimed), (None, [], frozenset()))
        self.assertEqual([(i.uid, i.flags) for i in changed],
                         [(2, frozenset({"\\Seen", "\\Flagged"}))])
        self.assertEqual(row.highestModseq, start + 2)

    def test_changesForASession(self):
        """
        L{MaildirFolder.changes} is what a session catches up with: nothing
        when nothing changed, the UIDs that arrived, and the full UID list
        only when some of the session's messages are gone.
        """
        folder = self.inbox()
        for n in range(3):
            folder.deliver([b"%d\r\n" % n])
        base = folder.highestModseq
        row, uids, arrived, changed, claimed = folder.changes(base, 3, 3, True)
        self.assertEqual((row.highestModseq, uids, arrived, changed, claimed),
                         (base, None, [], [], frozenset()))
        folder.deliver([b"4\r\n"])
        row, uids, arrived, changed, claimed = folder.changes(base, 3, 3, True)
        self.assertEqual((uids, arrived, [i.uid for i in changed], claimed),
                         (None, [4], [4], {1, 2, 3, 4}))
        folder.remove(folder.messages([2]))
        row, uids, arrived, changed, claimed = folder.changes(row.highestModseq, 4, 4)
        self.assertEqual((uids, arrived, changed, claimed), ([1, 3, 4], [], [], frozenset()))

    def test_unchangedSince(self):
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        folder.deliver([b"two\r\n"])
        base = folder.highestModseq
        folder.storeFlags([2], add={"\\Flagged"})
        infos, gone, modified = folder.storeFlags(
            [1, 2], add={"\\Seen"}, unchangedSince=base
        )
        self.assertEqual([i.uid for i in infos], [1])
        self.assertEqual(modified, [2])
        self.assertEqual(
            [i.flags for i in folder.snapshot()],
            [frozenset({"\\Seen"}), frozenset({"\\Flagged"})],
        )

    def test_claimRecent(self):
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        folder.deliver([b"two\r\n"])
        self.assertEqual(folder.claimRecent(), {1, 2})
        self.assertEqual(folder.claimRecent(), frozenset())
        infos = folder.snapshot()
        self.assertEqual([i.recent for i in infos], [False, False])
        self.assertTrue(all(i.path.endswith(":2,") for i in infos))
        self.assertEqual(os.listdir(os.path.join(folder.path, "new")), [])

    def test_expunge(self):
        folder = self.inbox()
        for n in range(4):
            folder.deliver([b"%d\r\n" % n])
        folder.storeFlags([1, 2, 4], add={"\\Deleted"})
        self.assertEqual(folder.expunge([2, 3]), [2])
        self.assertEqual(folder.expunge(), [1, 4])
        self.assertEqual([i.uid for i in folder.snapshot()], [3])
        self.assertEqual(len(os.listdir(os.path.join(folder.path, "cur"))), 0)
        self.assertEqual(len(os.listdir(os.path.join(folder.path, "new"))), 1)

    def test_externalDrops(self):
        """
        Mail put in new/ by another program gets the next UID (and CRLF line
        endings); a file removed by another program disappears from the
        index.
        """
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        path = os.path.join(folder.path, "new", "123.ext.host")
        with open(path, "wb") as f:
            f.write(b"Subject: x\n\nexternal\n")
        infos = folder.snapshot()
        self.assertEqual([i.uid for i in infos], [1, 2])
        self.assertEqual(infos[1].size, 24)
        self.assertEqual(folder.read(infos[1]), b"Subject: x\r\n\r\nexternal\r\n")
        self.assertTrue(infos[1].recent)
        os.unlink(infos[0].path)
        self.assertEqual([i.uid for i in folder.snapshot()], [2])
        self.assertRaises(MessageGone, folder.read, infos[0])

    def test_externalFlagChange(self):
        """
        Another Maildir program that renames a file to change its flags is
        followed, with a new modification sequence; keywords are kept.
        """
        folder = self.inbox()
        folder.deliver([b"one\r\n"], {"\\Seen", "Work"})
        [info] = folder.snapshot()
        before = folder.highestModseq
        os.rename(info.path, info.path.replace(":2,S", ":2,FS"))
        [after] = folder.snapshot()
        self.assertEqual(after.flags, frozenset({"\\Seen", "\\Flagged", "Work"}))
        self.assertEqual(after.modseq, before + 1)

    def test_pollTellsListeners(self):
        folder = self.inbox()
        folder.snapshot()
        calls = []
        folder.addListener(lambda: calls.append(1))
        self.assertFalse(folder.poll())
        with open(os.path.join(folder.path, "new", "1.ext.host"), "wb") as f:
            f.write(b"x\r\n")
        self.assertTrue(folder.poll())
        self.assertEqual(calls, [1])
        self.assertFalse(folder.poll())

    def test_changeWithinTheSameTimestampTick(self):
        """
        A directory changed moments ago is scanned again even if its
        modification time has not moved, since a second change within the
        same timestamp tick does not move it.
        """
        folder = self.inbox()
        folder.deliver([b"x\r\n"])
        folder.snapshot()
        self.assertFalse(folder._settled)
        new = os.path.join(folder.path, "new")
        before = os.stat(new).st_mtime_ns
        with open(os.path.join(new, "2.ext.host"), "wb") as f:
            f.write(b"y\r\n")
        os.utime(new, ns=(before, before))
        self.assertTrue(folder.poll())
        self.assertEqual(len(folder.snapshot()), 2)

    def test_crashBetweenFileAndIndex(self):
        """
        A file renamed into new/ whose index entry was never written (a crash
        in between) is adopted at the next look.
        """
        folder = self.inbox()
        folder.deliver([b"one\r\n"])
        os.rename(
            folder.snapshot()[0].path, os.path.join(folder.path, "new", "2.x.host,S=5")
        )
        self.restart()
        [info] = self.inbox().snapshot()
        self.assertEqual((info.uid, info.key), (2, "2.x.host,S=5"))

    def test_listeners(self):
        folder = self.inbox()
        calls = []
        folder.addListener(lambda: calls.append(1))
        folder.deliver([b"x\r\n"])
        folder.setFlags(folder.snapshot()[0], {"\\Seen"})
        folder.remove(folder.snapshot())
        self.assertEqual(len(calls), 3)

    def test_concurrentDeliveries(self):
        """
        Deliveries from several threads at once get distinct, dense UIDs.
        """
        folder = self.inbox()

        def deliverMany(n):
            for i in range(20):
                self.store.deliver(USER, [b"%d.%d\r\n" % (n, i)])

        threads = [threading.Thread(target=deliverMany, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([i.uid for i in folder.snapshot()], list(range(1, 101)))

    def test_userDirectoryIsAFile(self):
        """
        A user directory that cannot be created is an L{OSError}, which
        delivery treats as temporary.
        """
        os.makedirs(os.path.join(self.root, "example.test"))
        with open(os.path.join(self.root, "example.test", "demo"), "w") as f:
            f.write("in the way")
        self.assertRaises(OSError, self.store.deliver, USER, [b"x\r\n"])

    def test_legacyIndexImported(self):
        """
        The foundation's per-folder C{mailplat-uidlist} keeps its UIDs and
        UIDVALIDITY.
        """
        maildir = os.path.join(self.root, "example.test", "demo", "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        with open(os.path.join(maildir, "cur", "a.host,S=3:2,S"), "wb") as f:
            f.write(b"a\r\n")
        with open(os.path.join(maildir, "new", "b.host,S=3"), "wb") as f:
            f.write(b"b\r\n")
        with open(os.path.join(maildir, "mailplat-uidlist"), "w") as f:
            f.write("mailplat-uidlist 1 1234 9\n7 a.host,S=3\n8 b.host,S=3\n")
        folder = self.inbox()
        self.assertEqual(folder.uidValidity, 1234)
        self.assertEqual(
            [(i.uid, i.flags) for i in folder.snapshot()],
            [(7, frozenset({"\\Seen"})), (8, frozenset())],
        )
        self.assertEqual(folder.deliver([b"c\r\n"]), 9)


class FolderTests(StoreTestMixin, unittest.TestCase):
    """
    Folder names, hierarchy, CREATE/DELETE/RENAME and subscriptions.
    """

    def test_folderNamesStayInside(self):
        for bad in ("..", "../x", "a/../b", "a//b", ".hidden", "x\x00y", "a\\b",
                    "/abs", "", "a/", "x\x7fy", "tab\there", "a%b", "a*b",
                    "a/" * 20 + "b", "x" * 300):
            self.assertRaises(BadFolderName, self.store.folder, USER, bad)
            self.assertRaises(BadFolderName, self.store.createFolder, USER, bad)
        self.assertRaises(NoSuchFolder, self.store.folder, USER, "Nope")
        self.assertEqual(os.listdir(self.root), ["example.test"])

    def test_directoryNames(self):
        self.assertEqual(names.directoryName("a.b"), ".a%2Eb")
        self.assertEqual(names.directoryName("a/b"), ".a.b")
        self.assertEqual(names.directoryName("Entwürfe"), ".Entw%C3%BCrfe")
        for directory in (".a%2Fb", ".%2E%2E", "..", ".a..b", ".%zz", ".a%2eb"):
            self.assertIsNone(names.nameFromDirectory(directory), directory)
        self.assertEqual(names.nameFromDirectory(".a%2Eb.c"), "a.b/c")

    def test_createNested(self):
        self.store.createFolder(USER, "Lists/twisted.dev")
        self.store.createFolder(USER, "a.b")
        self.store.createFolder(USER, "inbox/Sub")
        created = [n for n, _ in self.store.folders(USER) if n not in dict(STANDARD_FOLDERS)]
        self.assertEqual(created, ["INBOX/Sub", "Lists", "Lists/twisted.dev", "a.b"])
        self.assertRaises(FolderExists, self.store.createFolder, USER, "Lists")
        self.assertRaises(FolderExists, self.store.createFolder, USER, "INBOX")
        maildir = self.inbox().path
        self.assertTrue(os.path.isdir(os.path.join(maildir, ".Lists.twisted%2Edev", "cur")))
        self.assertTrue(os.path.isdir(os.path.join(maildir, ".a%2Eb", "cur")))
        self.store.deliver(USER, [b"x\r\n"], "Lists/twisted.dev")
        self.assertEqual(len(self.store.folder(USER, "Lists/twisted.dev").snapshot()), 1)

    def test_externalFolderAdopted(self):
        maildir = self.inbox().path
        os.makedirs(os.path.join(maildir, ".Old.Stuff", "cur"))
        os.makedirs(os.path.join(maildir, ".bad%zz", "cur"))
        self.assertIn(("Old/Stuff", None), self.store.folders(USER))
        self.assertNotIn("bad%zz", dict(self.store.folders(USER)))

    def test_delete(self):
        self.store.createFolder(USER, "Work")
        folder = self.store.folder(USER, "Work")
        folder.deliver([b"x\r\n"])
        path = folder.path
        self.store.deleteFolder(USER, "Work")
        self.assertFalse(os.path.exists(path))
        self.assertRaises(NoSuchFolder, self.store.folder, USER, "Work")
        self.assertRaises(NoSuchFolder, folder.snapshot)
        self.assertRaises(NoSuchFolder, self.store.deleteFolder, USER, "Work")
        # A new folder of the same name is another folder, with another
        # UIDVALIDITY.
        self.store.createFolder(USER, "Work")
        again = self.store.folder(USER, "Work")
        self.assertIsNot(again, folder)
        self.assertRaises(NoSuchFolder, folder.snapshot)
        self.assertEqual(again.snapshot(), [])

    def test_deleteRefused(self):
        self.store.createFolder(USER, "a/b")
        for name in ("INBOX", "inbox", "Sent", "Trash", "a"):
            self.assertRaises(FolderNotRemovable, self.store.deleteFolder, USER, name)
        self.store.deleteFolder(USER, "a/b")
        self.store.deleteFolder(USER, "a")

    def test_rename(self):
        self.store.createFolder(USER, "a/b/c")
        self.store.subscribe(USER, "a/b")
        folder = self.store.folder(USER, "a/b")
        folder.deliver([b"x\r\n"])
        validity = folder.uidValidity
        self.store.renameFolder(USER, "a", "z/y")
        names_ = [n for n, _ in self.store.folders(USER) if n not in dict(STANDARD_FOLDERS)]
        self.assertEqual(names_, ["z", "z/y", "z/y/b", "z/y/b/c"])
        # The object a session holds follows the rename.
        self.assertEqual(folder.name, "z/y/b")
        self.assertEqual(folder.uidValidity, validity)
        self.assertEqual(len(folder.snapshot()), 1)
        self.assertIn("z/y/b", self.store.subscriptions(USER))
        self.assertNotIn("a/b", self.store.subscriptions(USER))
        self.assertRaises(FolderExists, self.store.renameFolder, USER, "z", "Sent")
        self.assertRaises(NoSuchFolder, self.store.renameFolder, USER, "nope", "x")
        self.assertRaises(FolderNotRemovable, self.store.renameFolder, USER, "Sent", "x")
        self.assertRaises(BadFolderName, self.store.renameFolder, USER, "z", "z/q")
        self.assertRaises(BadFolderName, self.store.renameFolder, USER, "z", "../q")

    def test_renameInbox(self):
        """
        RFC 3501 6.3.5: renaming INBOX moves its messages into the new
        folder; INBOX stays, empty, with its UIDVALIDITY.
        """
        inbox = self.inbox()
        inbox.deliver([b"one\r\n"])
        inbox.deliver([b"two\r\n"], {"\\Seen"})
        validity = inbox.uidValidity
        self.store.renameFolder(USER, "INBOX", "Old")
        self.assertEqual(inbox.snapshot(), [])
        self.assertEqual(inbox.uidValidity, validity)
        self.assertEqual(inbox.uidNext, 3)
        old = self.store.folder(USER, "Old").snapshot()
        self.assertEqual([(i.uid, i.flags) for i in old],
                         [(1, frozenset()), (2, frozenset({"\\Seen"}))])

    def test_subscriptions(self):
        self.store.subscribe(USER, "Gone/Folder")
        self.store.subscribe(USER, "Junk", False)
        self.assertEqual(
            self.store.subscriptions(USER),
            ["Archive", "Drafts", "Gone/Folder", "INBOX", "Sent", "Trash"],
        )
        self.assertRaises(BadFolderName, self.store.subscribe, USER, "../x")

    def test_userDirectoryQuoting(self):
        self.assertEqual(
            self.store.userDirectory("../../etc@example.test"),
            os.path.join(self.root, "example.test", "%2E.%2F..%2Fetc"),
        )
        self.assertEqual(
            self.store.userDirectory("a/b@..")[len(self.root) :],
            "/%2E./a%2Fb",
        )


class CopyMoveTests(StoreTestMixin, unittest.TestCase):
    def setUp(self):
        StoreTestMixin.setUp(self)
        self.inbox().deliver([b"one\r\n"], {"\\Seen", "Work"}, 1_000_000.0)
        self.inbox().deliver([b"two\r\n"])
        self.archive = self.store.folder(USER, "Archive")
        self.archive.deliver([b"old\r\n"])

    def test_copy(self):
        pairs = self.inbox().copyTo([1, 2, 7], self.archive)
        self.assertEqual(pairs, [(1, 2), (2, 3)])
        infos = self.archive.snapshot()
        self.assertEqual(
            [(i.uid, i.flags, i.recent, self.archive.read(i)) for i in infos[1:]],
            [
                (2, frozenset({"\\Seen", "Work"}), True, b"one\r\n"),
                (3, frozenset(), True, b"two\r\n"),
            ],
        )
        self.assertEqual(infos[1].internalDate, 1_000_000.0)
        self.assertEqual(len(self.inbox().snapshot()), 2)
        # The copies are independent of the originals.
        self.archive.storeFlags([2], remove={"\\Seen"})
        self.assertEqual(self.inbox().snapshot()[0].flags, frozenset({"\\Seen", "Work"}))

    def test_move(self):
        pairs = self.inbox().moveTo([2], self.archive)
        self.assertEqual(pairs, [(2, 2)])
        self.assertEqual([i.uid for i in self.inbox().snapshot()], [1])
        self.assertEqual(
            [self.archive.read(i) for i in self.archive.snapshot()],
            [b"old\r\n", b"two\r\n"],
        )


class QuotaTests(StoreTestMixin, unittest.TestCase):
    quota = 20

    def test_deliverOverQuota(self):
        folder = self.inbox()
        folder.deliver([b"x" * 15])
        self.assertRaises(QuotaExceeded, folder.deliver, [b"y" * 6])
        self.assertEqual(os.listdir(os.path.join(folder.path, "tmp")), [])
        self.assertEqual(len(folder.snapshot()), 1)
        self.assertEqual(self.store.quota(USER), (15, 20))
        folder.deliver([b"z" * 5])
        self.assertRaises(QuotaExceeded, self.store.deliver, USER, [b""])

    def test_quotaIsAnOSError(self):
        e = QuotaExceeded()
        self.assertIsInstance(e, OSError)
        self.assertEqual(e.strerror, "mailbox quota exceeded")

    def test_copyOverQuota(self):
        folder = self.inbox()
        folder.deliver([b"x" * 12])
        self.assertRaises(
            QuotaExceeded, folder.copyTo, [1], self.store.folder(USER, "Archive")
        )
        # A move does not use more space.
        self.assertEqual(folder.moveTo([1], self.store.folder(USER, "Archive")), [(1, 1)])


class _QueuedItem:
    """
    The parts of a L{mailplat.queue.store.QueuedMessage} local delivery uses.
    """

    def __init__(self, sender, data):
        from mailplat.queue.envelope import Envelope

        self.envelope = Envelope(id="TEST", sender=sender, recipients=[], arrival=0.0)
        self._data = data

    def contentChunks(self):
        yield self._data


class LocalDeliveryQuotaTests(unittest.TestCase):
    """
    The quota is enforced at delivery: over it, local delivery defers with
    4.2.2 (mailbox full) and stores nothing.
    """

    def test_overQuotaDefers(self):
        from mailplat.delivery.local import LocalDelivery
        from mailplat.testing import runSynchronously

        store = MaildirStore(os.path.abspath(self.mktemp()), quota=100)
        users = type("Users", (), {"exists": lambda self, address: True})()
        local = LocalDelivery(store, users, lambda d: True, runSynchronously)
        item = _QueuedItem("a@b.example", b"Subject: x\r\n\r\n" + b"y" * 50 + b"\r\n")
        first = self.successResultOf(local.deliver(item, [USER]))[USER]
        self.assertEqual((first.state, first.status), ("delivered", "2.0.0"))
        second = self.successResultOf(local.deliver(item, [USER]))[USER]
        self.assertEqual(
            (second.state, second.status, second.detail),
            ("deferred", "4.2.2", "mailbox full (quota exceeded)"),
        )
        self.assertEqual(len(store.folder(USER).snapshot()), 1)
