"""
Group commit and batching: L{mailplat.queue.commit}, the batched queue-file
operations of L{mailplat.queue.store}, and how the runner and local delivery
use them (fewer state files, fsyncs and thread hand-offs per message, the
same durability).
"""

import errno
import json
import os
from dataclasses import asdict

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer

from mailplat.auth.userdb import UserDatabase
from mailplat.config.schema import QueueConfig
from mailplat.delivery.local import LocalDelivery
from mailplat.interfaces import IDeliveryTarget
from mailplat.queue import files as filesModule
from mailplat.queue import store as storeModule
from mailplat.queue.commit import Batcher, GroupCommitter
from mailplat.queue.envelope import (
    DEFERRED,
    DELIVERED,
    DeliveryResult,
    Envelope,
    Recipient,
)
from mailplat.queue.runner import QueueRunner
from mailplat.queue.store import QueuedMessage, QueueStore, newQueueId
from mailplat.storage.maildir import MaildirStore
from mailplat.testing import cachedHash, runSynchronously


class ManualThread:
    """
    A C{runInThread} stand-in whose calls run only when the test says so,
    like a busy thread.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def runNext(self):
        f, args, d = self.calls.pop(0)
        try:
            result = f(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)


def envelope(recipients=("demo@example.test",), sender="a@b.example"):
    return Envelope(
        id=newQueueId(),
        sender=sender,
        recipients=[Recipient(r) for r in recipients],
        arrival=1000.0,
    )


def spooled(queue, content=b"Subject: x\r\n\r\nbody\r\n", **kw):
    spool = queue.spool(envelope(**kw))
    spool.write(content)
    return spool


class BatcherTests(unittest.TestCase):
    def test_requestsWhileBusyFormTheNextGroup(self):
        thread = ManualThread()
        seen = []

        def work(requests):
            seen.append(list(requests))
            return [r * 10 for r in requests]

        batcher = Batcher(thread, work)
        first = batcher.submit(1)
        second, third = batcher.submit(2), batcher.submit(3)
        self.assertEqual(len(thread.calls), 1)
        thread.runNext()
        self.assertEqual(self.successResultOf(first), 10)
        self.assertNoResult(second)
        # The requests that waited went to the thread together.
        self.assertEqual(len(thread.calls), 1)
        thread.runNext()
        self.assertEqual(seen, [[1], [2, 3]])
        self.assertEqual(
            [self.successResultOf(second), self.successResultOf(third)], [20, 30]
        )
        self.assertEqual(batcher.groups, 2)

    def test_exceptionResultFailsOnlyItsRequest(self):
        thread = ManualThread()
        batcher = Batcher(thread, lambda rs: [r if r else ValueError("zero") for r in rs])
        batcher.submit(5)
        ds = [batcher.submit(n) for n in (1, 0, 2)]
        thread.runNext()
        thread.runNext()
        self.assertEqual(self.successResultOf(ds[0]), 1)
        self.failureResultOf(ds[1], ValueError)
        self.assertEqual(self.successResultOf(ds[2]), 2)

    def test_workRaisingFailsTheGroup(self):
        def work(requests):
            raise OSError(errno.EIO, "broken")

        batcher = Batcher(runSynchronously, work)
        self.failureResultOf(batcher.submit(1), OSError)
        # The batcher is not stuck.
        batcher.work = lambda rs: ["ok"] * len(rs)
        self.assertEqual(self.successResultOf(batcher.submit(2)), "ok")

    def test_maxGroup(self):
        thread = ManualThread()
        seen = []
        batcher = Batcher(thread, lambda rs: seen.append(len(rs)) or list(rs), maxGroup=2)
        for n in range(5):
            batcher.submit(n)
        while thread.calls:
            thread.runNext()
        self.assertEqual(seen, [1, 2, 2])


class CommitManyTests(unittest.TestCase):
    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def test_commitsAllWithOneDirectoryFsync(self):
        spools = [spooled(self.queue) for _ in range(3)]
        synced = []
        real = filesModule.fsyncDirectory
        self.patch(filesModule, "fsyncDirectory", lambda p: (synced.append(p), real(p)))
        results = self.queue.commitMany(spools)
        self.assertEqual(synced, [self.queue.activeDir])
        self.assertTrue(all(isinstance(r, QueuedMessage) for r in results))
        self.assertEqual(self.queue.ids(), sorted(s.envelope.id for s in spools))
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        loaded = self.queue.load(spools[1].envelope.id)
        self.assertEqual(b"".join(loaded.contentChunks()), b"Subject: x\r\n\r\nbody\r\n")

    def test_oneFailingFileLeavesTheOthers(self):
        good, bad = spooled(self.queue), spooled(self.queue)
        real = os.fsync

        def fsync(fd):
            # The files are created by commitMany (the messages were held
            # in memory): known by their path.
            if os.readlink(f"/proc/self/fd/{fd}") == os.path.abspath(bad.tmpPath):
                raise OSError(errno.EIO, "Input/output error")
            return real(fd)

        self.patch(os, "fsync", fsync)
        results = self.queue.commitMany([good, bad])
        self.assertIsInstance(results[0], QueuedMessage)
        self.assertIsInstance(results[1], OSError)
        self.assertEqual(self.queue.ids(), [good.envelope.id])
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    def test_directoryFsyncFailureKeepsNothing(self):
        spools = [spooled(self.queue) for _ in range(2)]

        def fail(path):
            raise OSError(errno.EIO, "Input/output error")

        self.patch(filesModule, "fsyncDirectory", fail)
        results = self.queue.commitMany(spools)
        self.assertTrue(all(isinstance(r, OSError) for r in results))
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    def test_removeMany(self):
        items = [spooled(self.queue).commit() for _ in range(3)]
        items[0].envelope.recipients[0].state = DELIVERED
        self.queue.saveState(items[0])
        synced = []
        real = storeModule.fsyncDirectory
        self.patch(storeModule, "fsyncDirectory", lambda p: (synced.append(p), real(p)))
        results = self.queue.removeMany([items[0].id, items[1].id, "GONE"])
        self.assertEqual(results, [None, None, None])
        self.assertEqual(synced, [self.queue.activeDir])
        self.assertEqual(os.listdir(self.queue.activeDir), [items[2].id])

    def test_removeManyItemsSkipsAbsentStateFiles(self):
        """
        Given L{QueuedMessage}s, removal unlinks C{.state} only for those that
        have one (loaded with it, or saved since), and removes both then.
        """
        items = [spooled(self.queue).commit() for _ in range(3)]
        self.queue.saveState(items[0])
        reloaded = self.queue.load(items[0].id)
        self.assertEqual([items[0].hasState, items[1].hasState, reloaded.hasState], [True, False, True])
        unlinked = []
        real = os.unlink
        self.patch(os, "unlink", lambda p: (unlinked.append(os.path.basename(p)), real(p)))
        self.assertEqual(self.queue.removeMany([reloaded, items[1]]), [None, None])
        self.assertEqual(unlinked, [items[0].id + ".state", items[0].id, items[1].id])
        self.assertEqual(os.listdir(self.queue.activeDir), [items[2].id])

    def test_contentThroughTheLock(self):
        """
        A locked message is read through its lock's descriptor, in chunks,
        with the added header fields first; the same bytes as from its path.
        """
        spool = spooled(self.queue)
        body = b"".join(b"line %05d\r\n" % n for n in range(3000))
        spool.write(body)
        spool.envelope.headers = ["X-Added: yes\r\n"]
        item = self.queue.load(spool.commit().id)
        fromPath = b"".join(item.contentChunks(1000))
        item.lock()
        self.addCleanup(item.unlock)
        opened = []
        self.patch(QueuedMessage, "openContent", lambda self: opened.append(self))
        for size in (1000, len(body), len(body) + 100, 7):
            self.assertEqual(b"".join(item.contentChunks(size)), fromPath)
        self.assertEqual(opened, [])
        self.assertTrue(fromPath.startswith(b"X-Added: yes\r\n"))
        self.assertTrue(fromPath.endswith(body))

    def test_envelopeJSONAsBefore(self):
        env = envelope(recipients=("x@example.test", "y@example.test"))
        env.client = {"address": "192.0.2.1", "helo": "h", "tls": None}
        env.params = {"body": "8BITMIME", "smtputf8": True}
        env.headers = ["Authentication-Results: x\r\n"]
        env.recipients[1].notify = "SUCCESS"
        self.assertEqual(
            env.toJSON(),
            json.dumps(asdict(env), sort_keys=True, ensure_ascii=False).encode("utf-8"),
        )
        self.assertEqual(
            env.stateJSON(),
            json.dumps([asdict(r) for r in env.recipients], sort_keys=True,
                       ensure_ascii=False).encode("utf-8"),
        )
        self.assertEqual(Envelope.fromJSON(env.toJSON()), env)


class GroupCommitterTests(unittest.TestCase):
    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.thread = ManualThread()
        self.committer = GroupCommitter(self.queue, self.thread)

    def test_answerOnlyWhenDurable(self):
        first = self.committer.commit(spooled(self.queue))
        waiting = [self.committer.commit(spooled(self.queue)) for _ in range(3)]
        self.assertNoResult(first)
        # Not in active/ before the thread did its work.
        self.assertEqual(self.queue.ids(), [])
        self.thread.runNext()
        item = self.successResultOf(first)
        self.assertEqual(self.queue.ids(), [item.id])
        for d in waiting:
            self.assertNoResult(d)
        self.thread.runNext()
        ids = [self.successResultOf(d).id for d in waiting]
        self.assertEqual(self.queue.ids(), sorted([item.id] + ids))
        self.assertEqual(self.committer.groups, 2)

    def test_failureOfTheWholeGroupRemovesTheFiles(self):
        spools = [spooled(self.queue), spooled(self.queue)]

        def broken(spools):
            raise RuntimeError("bug")

        self.patch(self.queue, "commitMany", broken)
        committer = GroupCommitter(self.queue, runSynchronously)
        for spool in spools:
            self.failureResultOf(committer.commit(spool), RuntimeError)
        self.assertEqual(os.listdir(self.queue.tmpDir), [])


@implementer(IDeliveryTarget)
class Target:
    """
    A target answering each recipient from C{answers} (default: delivered).
    """

    def __init__(self, name, domain, answers=None):
        self.name = name
        self.domain = domain
        self.answers = answers or {}
        self.pending = []

    def accepts(self, recipient):
        return recipient.endswith("@" + self.domain)

    def deliver(self, item, recipients):
        d = defer.Deferred()
        self.pending.append(
            (d, {r: self.answers.get(r, DeliveryResult(DELIVERED, "2.0.0", "ok", self.name))
                 for r in recipients})
        )
        return d

    def finish(self):
        d, results = self.pending.pop(0)
        d.callback(results)


class RunnerStateTests(unittest.TestCase):
    """
    The state file is written only when the message stays in the queue.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.clock = Clock()
        self.saved = []
        real = self.queue.saveState
        self.patch(self.queue, "saveState", lambda item: (self.saved.append(item.id), real(item)))

    def runner(self, *targets):
        runner = QueueRunner(
            self.queue, list(targets), self.clock, runSynchronously,
            QueueConfig(), now=self.clock.seconds,
        )
        runner.startService()
        self.addCleanup(runner.stopService)
        return runner

    def queued(self, recipients):
        spool = self.queue.spool(envelope(recipients=recipients))
        spool.write(b"Subject: x\r\n\r\nbody\r\n")
        return spool.commit()

    def test_allDeliveredAtOnceWritesNoState(self):
        a = Target("a", "a.example")
        runner = self.runner(a)
        item = self.queued(("x@a.example", "y@a.example"))
        runner.enqueue(item)
        self.clock.advance(0)
        a.finish()
        self.assertEqual(self.saved, [])
        self.assertEqual(self.queue.ids(), [])

    def test_firstOfTwoTargetsIsRecordedAtOnce(self):
        a, b = Target("a", "a.example"), Target("b", "b.example")
        runner = self.runner(a, b)
        item = self.queued(("x@a.example", "y@b.example"))
        runner.enqueue(item)
        self.clock.advance(0)
        a.finish()
        # b is still talking: a's result is durable now.
        self.assertEqual(self.saved, [item.id])
        state = self.queue.load(item.id).envelope.recipients
        self.assertEqual([r.state for r in state], [DELIVERED, "pending"])
        b.finish()
        # All final: removed, no second state file.
        self.assertEqual(self.saved, [item.id])
        self.assertEqual(self.queue.ids(), [])

    def test_deferredRecipientKeepsItsState(self):
        later = DeliveryResult(DEFERRED, "4.2.0", "later", "a")
        a = Target("a", "a.example", {"y@a.example": later})
        runner = self.runner(a)
        item = self.queued(("x@a.example", "y@a.example"))
        runner.enqueue(item)
        self.clock.advance(0)
        a.finish()
        self.assertEqual(self.saved, [item.id, item.id])
        loaded = self.queue.load(item.id)
        self.assertEqual([r.state for r in loaded.envelope.recipients],
                         [DELIVERED, "pending"])

    def test_openAndRemoveAreBatched(self):
        thread = ManualThread()
        a = Target("a", "a.example")
        runner = QueueRunner(self.queue, [a], self.clock, thread, QueueConfig(),
                             now=self.clock.seconds)
        runner.startService()
        thread.runNext()  # recovery: the queue is empty
        items = [self.queued(("x@a.example",)) for _ in range(3)]
        for item in items:
            runner.enqueue(item)
        self.clock.advance(0)
        thread.runNext()  # opens the first
        thread.runNext()  # opens the other two together
        self.assertEqual(thread.calls, [])
        for _ in items:
            a.finish()
        thread.runNext()  # removes the first
        thread.runNext()  # removes the other two
        self.assertEqual(thread.calls, [])
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(runner._opener.groups, 2)
        self.assertEqual(runner._remover.groups, 2)
        # Unlocked by the removal: nothing else to do in a thread.
        self.assertTrue(all(item.lockFD is None for item in items))
        runner.stopService()


class LocalBatchTests(unittest.TestCase):
    def setUp(self):
        base = self.mktemp()
        os.makedirs(base)
        self.users = UserDatabase(os.path.join(base, "passwd"))
        for user in ("a@example.test", "b@example.test"):
            self.users.setPassword(user, cachedHash("pw"))
        self.store = MaildirStore(os.path.join(base, "mail"))
        self.queue = QueueStore(os.path.join(base, "queue"))
        self.queue.create()
        self.thread = ManualThread()
        self.local = LocalDelivery(self.store, self.users, lambda d: True, self.thread)

    def queued(self, recipients, body):
        spool = self.queue.spool(envelope(recipients=recipients))
        spool.write(b"Subject: " + body + b"\r\n\r\n" + body + b"\r\n")
        return spool.commit()

    def test_groupedDeliveries(self):
        first = self.local.deliver(self.queued(("a@example.test",), b"one"), ["a@example.test"])
        items = [
            self.queued(("a@example.test", "b@example.test"), b"two"),
            self.queued(("a@example.test", "nobody@example.test"), b"three"),
        ]
        ds = [self.local.deliver(item, [r.address for r in item.envelope.recipients])
              for item in items]
        self.thread.runNext()
        self.assertEqual(self.successResultOf(first)["a@example.test"].state, DELIVERED)
        self.thread.runNext()
        two, three = [self.successResultOf(d) for d in ds]
        self.assertEqual(two["a@example.test"].detail, "delivered to maildir as uid 2")
        self.assertEqual(two["b@example.test"].detail, "delivered to maildir as uid 1")
        self.assertEqual(three["a@example.test"].detail, "delivered to maildir as uid 3")
        self.assertEqual(three["nobody@example.test"].status, "5.1.1")
        inbox = self.store.folder("a@example.test")
        bodies = [inbox.read(info) for info in inbox.snapshot()]
        self.assertEqual(
            [b.split(b"\r\n\r\n")[1] for b in bodies], [b"one\r\n", b"two\r\n", b"three\r\n"]
        )
        self.assertTrue(all(b.startswith(b"Return-Path: <a@b.example>\r\n") for b in bodies))
        self.assertEqual(self.local._batcher.groups, 2)

    def test_quotaInAGroup(self):
        self.store.quotaLimit = 300
        local = LocalDelivery(self.store, self.users, lambda d: True, self.thread)
        local.deliver(self.queued(("a@example.test",), b"x"), ["a@example.test"])
        ds = [local.deliver(self.queued(("a@example.test",), b"y" * 100), ["a@example.test"])
              for _ in range(3)]
        self.thread.runNext()
        self.thread.runNext()
        states = [self.successResultOf(d)["a@example.test"] for d in ds]
        self.assertEqual([r.status for r in states], ["2.0.0", "4.2.2", "4.2.2"])
        inbox = self.store.folder("a@example.test")
        self.assertEqual(len(inbox.snapshot()), 2)
        self.assertEqual(os.listdir(os.path.join(inbox.path, "tmp")), [])

    def test_storeWithoutDeliverMany(self):
        class OneByOne:
            def __init__(self, store):
                self.store = store
                self.calls = 0

            def deliver(self, address, chunks, folder):
                self.calls += 1
                return self.store.deliver(address, chunks, folder)

        plain = OneByOne(self.store)
        local = LocalDelivery(plain, self.users, lambda d: True, self.thread)
        local.deliver(self.queued(("a@example.test",), b"1"), ["a@example.test"])
        d = local.deliver(self.queued(("a@example.test", "b@example.test"), b"2"),
                          ["a@example.test", "b@example.test"])
        self.thread.runNext()
        self.thread.runNext()
        self.assertEqual(plain.calls, 3)
        self.assertEqual({r.state for r in self.successResultOf(d).values()}, {DELIVERED})


class FsyncAllTests(unittest.TestCase):
    def test_resultsInOrder(self):
        from mailplat import _fsutil

        base = self.mktemp()
        os.makedirs(base)
        fds = [os.open(os.path.join(base, str(n)), os.O_WRONLY | os.O_CREAT) for n in range(5)]
        self.addCleanup(lambda: [os.close(fd) for fd in fds])
        real = os.fsync
        synced = []

        def fsync(fd):
            if fd == fds[2]:
                raise OSError(errno.EIO, "Input/output error")
            synced.append(fd)
            return real(fd)

        self.patch(os, "fsync", fsync)
        # In parallel (five files), and one by one (a higher threshold).
        for threshold in (_fsutil.PARALLEL_MIN_FILES, len(fds) + 1):
            self.patch(_fsutil, "PARALLEL_MIN_FILES", threshold)
            del synced[:]
            results = _fsutil.fsyncAll(fds)
            self.assertEqual([r is None for r in results], [True, True, False, True, True])
            self.assertIsInstance(results[2], OSError)
            self.assertEqual(sorted(synced), sorted(fds[:2] + fds[3:]))
        self.assertEqual(_fsutil.fsyncAll([]), [])


class MemorySpoolTests(unittest.TestCase):
    """
    A small message being received is held in memory (L{SpoolFile}) and
    written by the commit; a large one, or one over the process's budget,
    is written as it arrives.  Either way the queue file is the same.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def stored(self, item):
        with open(item.path, "rb") as f:
            return f.read()

    def test_sameFileEitherWay(self):
        held = self.queue.spool(envelope())
        written = self.queue.spool(envelope())
        for spool in (held, written):
            spool.write(b"Subject: x\r\n\r\n")
            spool.write(b"body\r\n")
        written.flush()
        self.assertTrue(held.inMemory)
        self.assertFalse(written.inMemory)
        self.assertEqual(os.listdir(self.queue.tmpDir), [written.envelope.id])
        one, two = self.queue.commitMany([held, written])
        self.assertEqual(
            self.stored(one).replace(held.envelope.id.encode(), b"ID"),
            self.stored(two).replace(written.envelope.id.encode(), b"ID"),
        )
        self.assertEqual(b"".join(one.contentChunks()), b"Subject: x\r\n\r\nbody\r\n")
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    def test_pastTheLimitWrittenAsItArrives(self):
        self.patch(storeModule, "MEMORY_LIMIT", 100)
        spool = self.queue.spool(envelope())
        spool.write(b"a" * 60)
        spool.write(b"b" * 40)
        self.assertTrue(spool.inMemory)
        self.assertEqual(self.queue.memoryHeld, 100)
        spool.write(b"c")
        self.assertFalse(spool.inMemory)
        self.assertEqual(self.queue.memoryHeld, 0)
        spool.write(b"d" * 10)
        item = spool.commit()
        self.assertEqual(
            b"".join(item.contentChunks()), b"a" * 60 + b"b" * 40 + b"c" + b"d" * 10
        )

    def test_budgetSharedByAllMessages(self):
        self.patch(storeModule, "MEMORY_BUDGET", 100)
        first, second = self.queue.spool(envelope()), self.queue.spool(envelope())
        first.write(b"x" * 80)
        second.write(b"y" * 30)
        # The second does not fit beside the first: it goes to its file.
        self.assertTrue(first.inMemory)
        self.assertFalse(second.inMemory)
        self.assertEqual(self.queue.memoryHeld, 80)
        first.abort()
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, {second.envelope.id})
        third = self.queue.spool(envelope())
        third.write(b"z" * 90)
        self.assertTrue(third.inMemory)
        item = second.commit()
        self.assertEqual(b"".join(item.contentChunks()), b"y" * 30)
        self.assertEqual(self.queue.memoryHeld, 90)

    def test_abortHeldLeavesNoFile(self):
        spool = spooled(self.queue)
        spool.abort()
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())

    def test_fileCannotBeCreatedAtCommit(self):
        good, bad = spooled(self.queue), spooled(self.queue)
        # Something else holds the name: creating the file fails.
        with open(bad.tmpPath, "wb") as f:
            f.write(b"not ours")
        results = self.queue.commitMany([good, bad])
        self.assertIsInstance(results[0], QueuedMessage)
        self.assertIsInstance(results[1], FileExistsError)
        self.assertEqual(self.queue.ids(), [good.envelope.id])
        # The other file is left alone; nothing is counted in memory.
        with open(bad.tmpPath, "rb") as f:
            self.assertEqual(f.read(), b"not ours")
        self.assertEqual(self.queue.memoryHeld, 0)
        self.assertEqual(self.queue.spooling, set())
