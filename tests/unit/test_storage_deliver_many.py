"""
L{mailplat.storage.maildir.MaildirFolder.deliverMany}: local delivery's group
commit (one fsync of C{new/}, one index transaction), with each message's
outcome its own.
"""

import os

from twisted.trial import unittest

from mailplat.interfaces import QuotaExceeded
from mailplat.storage import maildir as maildirModule
from mailplat.storage.index import IndexIOError
from mailplat.storage.maildir import MaildirStore

USER = "demo@example.test"


class DeliverManyTests(unittest.TestCase):
    def setUp(self):
        self.store = MaildirStore(self.mktemp())
        self.folder = self.store.folder(USER)

    def test_oneDirectoryFsyncForTheGroup(self):
        synced = []
        real = maildirModule.fsyncDirectory
        self.patch(maildirModule, "fsyncDirectory", lambda p: (synced.append(p), real(p)))
        changes = []
        self.folder.addListener(lambda: changes.append(1))
        uids = self.store.deliverMany(
            USER, [[b"Subject: %d\r\n\r\n" % n, b"body\r\n"] for n in range(4)]
        )
        self.assertEqual(uids, [1, 2, 3, 4])
        self.assertEqual(synced, [os.path.join(self.folder.path, "new")])
        self.assertEqual(len(changes), 1)
        infos = self.folder.snapshot()
        self.assertEqual([i.uid for i in infos], [1, 2, 3, 4])
        self.assertEqual(self.folder.read(infos[2]), b"Subject: 2\r\n\r\nbody\r\n")
        self.assertEqual(os.listdir(os.path.join(self.folder.path, "tmp")), [])
        # The same as single deliveries afterwards.
        self.assertEqual(self.folder.deliver([b"x\r\n"]), 5)

    def test_writeErrorFailsOnlyThatMessage(self):
        def broken():
            yield b"Subject: half\r\n"
            raise OSError(5, "Input/output error")

        results = self.store.deliverMany(USER, [[b"a\r\n"], broken(), [b"c\r\n"]])
        self.assertEqual(results[0], 1)
        self.assertIsInstance(results[1], OSError)
        self.assertEqual(results[2], 2)
        self.assertEqual(os.listdir(os.path.join(self.folder.path, "tmp")), [])

    def test_quota(self):
        self.store.quotaLimit = 10
        results = self.store.deliverMany(USER, [[b"12345\r\n"], [b"67890\r\n"]])
        self.assertEqual(results[0], 1)
        self.assertIsInstance(results[1], QuotaExceeded)
        self.assertEqual(len(self.folder.snapshot()), 1)
        self.assertEqual(os.listdir(os.path.join(self.folder.path, "tmp")), [])

    def test_indexFailureLeavesFilesForTheScan(self):
        index = self.folder._index

        def broken(*args):
            raise IndexIOError("disk I/O error")

        real = index.addMessages
        self.patch(index, "addMessages", broken)
        results = self.store.deliverMany(USER, [[b"a\r\n"], [b"b\r\n"]])
        self.assertTrue(all(isinstance(r, IndexIOError) for r in results))
        self.assertEqual(os.listdir(os.path.join(self.folder.path, "tmp")), [])
        self.patch(index, "addMessages", real)
        # The files reached new/: the next scan adopts them (a duplicate
        # later, never a loss).
        self.folder.poll()
        self.assertEqual(len(self.folder.snapshot()), 2)

    def test_fsyncErrorFailsOnlyThatMessage(self):
        real = os.fsync
        calls = []

        def fsync(fd):
            calls.append(fd)
            if os.fstat(fd).st_size == 4:
                raise OSError(5, "Input/output error")
            return real(fd)

        self.patch(os, "fsync", fsync)
        results = self.store.deliverMany(USER, [[b"a\r\n"], [b"bb\r\n"], [b"c\r\n"]])
        self.assertEqual(results[0], 1)
        self.assertIsInstance(results[1], OSError)
        self.assertEqual(results[2], 2)
        self.assertEqual(os.listdir(os.path.join(self.folder.path, "tmp")), [])
