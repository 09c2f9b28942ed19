"""
Tests for the Maildir store and its UID index.
"""

import os

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from mailplat.interfaces import IMailFolder, IMailStore
from mailplat.storage.maildir import (
    BadFolderName,
    MaildirStore,
    MessageGone,
    NoSuchFolder,
)

USER = "demo@example.test"


class MaildirTests(unittest.TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.store = MaildirStore(self.root)

    def test_interfaces(self):
        verifyObject(IMailStore, self.store)
        verifyObject(IMailFolder, self.store.folder(USER))

    def test_layout(self):
        folder = self.store.folder(USER)
        self.assertEqual(folder.path, os.path.join(self.root, "example.test", "demo", "Maildir"))
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(folder.path, sub)))

    def test_deliverAssignsAscendingUIDs(self):
        folder = self.store.folder(USER)
        self.assertEqual(folder.deliver([b"one\r\n"]), 1)
        self.assertEqual(folder.deliver([b"two", b"\r\n"]), 2)
        infos = folder.snapshot()
        self.assertEqual([i.uid for i in infos], [1, 2])
        self.assertEqual([folder.read(i) for i in infos], [b"one\r\n", b"two\r\n"])
        self.assertEqual([i.size for i in infos], [5, 5])
        self.assertTrue(all(i.recent for i in infos))
        self.assertEqual(os.listdir(os.path.join(folder.path, "tmp")), [])

    def test_uidsSurviveRestart(self):
        folder = self.store.folder(USER)
        folder.deliver([b"one\r\n"])
        folder.deliver([b"two\r\n"])
        validity = folder.uidValidity
        folder.remove(folder.snapshot()[:1])
        again = MaildirStore(self.root).folder(USER)
        self.assertEqual(again.uidValidity, validity)
        self.assertEqual([i.uid for i in again.snapshot()], [2])
        self.assertEqual(again.deliver([b"three\r\n"]), 3)
        self.assertEqual(again.uidNext, 4)

    def test_flagsInFileNames(self):
        folder = self.store.folder(USER)
        folder.deliver([b"one\r\n"])
        [info] = folder.snapshot()
        updated = folder.setFlags(info, {"\\Seen", "\\Flagged", "\\Recent"})
        self.assertEqual(updated.flags, frozenset({"\\Seen", "\\Flagged"}))
        self.assertTrue(updated.path.endswith(":2,FS"))
        self.assertEqual(os.path.dirname(updated.path), os.path.join(folder.path, "cur"))
        # A stale MessageInfo still reads after the rename.
        self.assertEqual(folder.read(info), b"one\r\n")
        [again] = folder.snapshot()
        self.assertEqual(again.uid, 1)
        self.assertEqual(again.flags, frozenset({"\\Seen", "\\Flagged"}))

    def test_changeFlagsKeepsConcurrentChanges(self):
        """
        A change made from an older snapshot applies to the flags as they are
        now: a flag another session set meanwhile is kept.
        """
        folder = self.store.folder(USER)
        folder.deliver([b"one\r\n"])
        [old] = folder.snapshot()
        folder.changeFlags(old, add={"\\Flagged"})
        updated = folder.changeFlags(old, add={"\\Seen"})
        self.assertEqual(updated.flags, frozenset({"\\Seen", "\\Flagged"}))
        updated = folder.changeFlags(old, remove={"\\Flagged"})
        self.assertEqual(updated.flags, frozenset({"\\Seen"}))
        folder.remove([old])
        self.assertRaises(MessageGone, folder.changeFlags, old, add={"\\Seen"})

    def test_externalDrops(self):
        """
        Mail put in new/ by another program gets the next UID; a file removed
        by another program disappears from the index.
        """
        folder = self.store.folder(USER)
        folder.deliver([b"one\r\n"])
        with open(os.path.join(folder.path, "new", "123.ext.host"), "wb") as f:
            f.write(b"external\r\n")
        infos = folder.snapshot()
        self.assertEqual([i.uid for i in infos], [1, 2])
        self.assertEqual(infos[1].size, 10)
        os.unlink(infos[0].path)
        self.assertEqual([i.uid for i in folder.snapshot()], [2])
        self.assertRaises(MessageGone, folder.read, infos[0])

    def test_listeners(self):
        folder = self.store.folder(USER)
        calls = []
        folder.addListener(lambda: calls.append(1))
        folder.deliver([b"x\r\n"])
        folder.setFlags(folder.snapshot()[0], {"\\Seen"})
        folder.remove(folder.snapshot())
        self.assertEqual(len(calls), 3)

    def test_folderNamesStayInside(self):
        for bad in ("..", "../x", "a/../b", "a//b", ".hidden", "x\x00y", "a\\b", "/abs", ""):
            self.assertRaises(BadFolderName, self.store.folder, USER, bad)
        self.assertRaises(NoSuchFolder, self.store.folder, USER, "Sent")

    def test_userDirectoryQuoting(self):
        self.assertEqual(
            self.store.userDirectory("../../etc@example.test"),
            os.path.join(self.root, "example.test", "%2E.%2F..%2Fetc"),
        )
        self.assertEqual(
            self.store.userDirectory("a/b@..")[len(self.root) :],
            "/%2E./a%2Fb",
        )
