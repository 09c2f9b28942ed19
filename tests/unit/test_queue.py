"""
Tests for the durable queue (L{mailplat.queue.store}) and its runner
(L{mailplat.queue.runner}), with a fake clock.
"""

import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mailplat.config.schema import QueueConfig
from mailplat.delivery.local import LocalDelivery
from mailplat.interfaces import IDeliveryTarget
from mailplat.queue.envelope import (
    DEFERRED,
    DELIVERED,
    FAILED,
    DeliveryResult,
    Envelope,
    Recipient,
)
from mailplat.queue.runner import QueueRunner
from mailplat.queue.store import QueueFileError, QueueStore, newQueueId
from mailplat.storage.maildir import MaildirStore
from mailplat.testing import runSynchronously
from mailplat.auth.userdb import UserDatabase
from mailplat.testing import cachedHash


def envelope(recipients=("demo@example.test",), sender="a@b.example", arrival=1000.0):
    return Envelope(
        id=newQueueId(),
        sender=sender,
        recipients=[Recipient(r) for r in recipients],
        arrival=arrival,
    )


def queueMessage(queue, content=b"Subject: x\r\n\r\nbody\r\n", **kw):
    spool = queue.spool(envelope(**kw))
    spool.write(content)
    return spool.commit()


class StoreTests(unittest.TestCase):
    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def test_commitAndLoad(self):
        item = queueMessage(self.queue, recipients=("x@example.test", "y@example.test"))
        self.assertEqual(self.queue.ids(), [item.id])
        loaded = self.queue.load(item.id)
        self.assertEqual(loaded.envelope, item.envelope)
        self.assertEqual(b"".join(loaded.contentChunks()), b"Subject: x\r\n\r\nbody\r\n")
        self.assertEqual(loaded.size, 20)
        with open(loaded.path, "rb") as f:
            first = f.readline()
        self.assertTrue(first.startswith(b"MAILPLAT-QUEUE 1 "))

    def test_stateOverlay(self):
        item = queueMessage(self.queue, recipients=("x@example.test", "y@example.test"))
        item.envelope.recipients[0].state = DELIVERED
        self.queue.saveState(item)
        loaded = self.queue.load(item.id)
        self.assertEqual([r.state for r in loaded.envelope.recipients], [DELIVERED, "pending"])
        self.queue.remove(item.id)
        self.assertEqual(os.listdir(self.queue.activeDir), [])

    def test_abortLeavesNothing(self):
        spool = self.queue.spool(envelope())
        spool.write(b"half")
        spool.abort()
        self.assertEqual(os.listdir(self.queue.tmpDir), [])
        self.assertEqual(self.queue.ids(), [])

    def test_createRemovesUnfinishedSpools(self):
        spool = self.queue.spool(envelope())
        spool.write(b"half")
        spool._file.flush()
        self.assertEqual(self.queue.create(), [spool.envelope.id])
        self.assertEqual(os.listdir(self.queue.tmpDir), [])

    def test_corruptFiles(self):
        for name, data in [
            ("A", b"garbage"),
            ("B", b"MAILPLAT-QUEUE 1 999\n{}\n"),
            ("C", b"MAILPLAT-QUEUE 1 2\n{}\nbody"),
            ("D", b"MAILPLAT-QUEUE 1 4\nnull\nbody"),
        ]:
            with open(os.path.join(self.queue.activeDir, name), "wb") as f:
                f.write(data)
            self.assertRaises(QueueFileError, self.queue.load, name)


@implementer(IDeliveryTarget)
class ScriptedTarget:
    """
    A delivery target answering from a script of results.
    """

    name = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def accepts(self, recipient):
        return recipient.endswith("@example.test")

    def deliver(self, item, recipients):
        self.calls.append(list(recipients))
        results = self.script.pop(0)
        return defer.succeed({r: results[r] for r in recipients})


ok = DeliveryResult(DELIVERED, "2.0.0", "ok", "scripted")
later = DeliveryResult(DEFERRED, "4.2.0", "try later", "scripted")
never = DeliveryResult(FAILED, "5.1.1", "no such user", "scripted")


class RunnerTests(unittest.TestCase):
    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.clock = Clock()
        self.clock.advance(1000)
        self.config = QueueConfig(retryInitial=60, retryMax=3600, maxLifetime=5 * 86400)

    def runner(self, target):
        runner = QueueRunner(
            self.queue, [target], self.clock, runSynchronously, self.config,
            now=self.clock.seconds,
        )
        runner.startService()
        self.addCleanup(runner.stopService)
        return runner

    def test_verifyTargets(self):
        verifyObject(IDeliveryTarget, ScriptedTarget([]))
        verifyObject(
            IDeliveryTarget, LocalDelivery(None, None, lambda d: True, runSynchronously)
        )

    def test_deliveredMessageIsRemoved(self):
        target = ScriptedTarget([{"demo@example.test": ok}])
        runner = self.runner(target)
        item = queueMessage(self.queue)
        runner.enqueue(item)
        self.clock.advance(0)
        self.assertEqual(target.calls, [["demo@example.test"]])
        self.assertEqual(self.queue.ids(), [])

    def test_retryBackoffUntilDelivered(self):
        target = ScriptedTarget([{"demo@example.test": later}] * 3 + [{"demo@example.test": ok}])
        runner = self.runner(target)
        runner.enqueue(queueMessage(self.queue, arrival=1000))
        self.clock.advance(0)
        self.assertEqual(len(target.calls), 1)
        for n, delay in enumerate((60, 120, 240), 2):
            self.clock.advance(delay - 1)
            self.assertEqual(len(target.calls), n - 1)
            self.clock.advance(1)
            self.assertEqual(len(target.calls), n)
        self.assertEqual(self.queue.ids(), [])

    def test_mixedResultsPerRecipient(self):
        target = ScriptedTarget(
            [
                {"a@example.test": ok, "b@example.test": later, "c@example.test": never},
                {"b@example.test": ok},
            ]
        )
        runner = self.runner(target)
        item = queueMessage(
            self.queue, recipients=("a@example.test", "b@example.test", "c@example.test")
        )
        runner.enqueue(item)
        self.clock.advance(0)
        loaded = self.queue.load(item.id)
        self.assertEqual(
            [(r.state, r.lastStatus) for r in loaded.envelope.recipients],
            [(DELIVERED, "2.0.0"), ("pending", "4.2.0"), (FAILED, "5.1.1")],
        )
        self.clock.advance(60)
        self.assertEqual(target.calls, [["a@example.test", "b@example.test", "c@example.test"], ["b@example.test"]])
        self.assertEqual(self.queue.ids(), [])

    def test_expiry(self):
        target = ScriptedTarget([{"demo@example.test": later}] * 1000)
        runner = self.runner(target)
        item = queueMessage(self.queue, arrival=self.clock.seconds())
        runner.enqueue(item)
        self.clock.advance(0)
        for _ in range(200):
            if not self.queue.ids():
                break
            self.clock.advance(3600)
        self.assertEqual(self.queue.ids(), [])
        # First retry after a minute, growing to the hourly maximum: 5 days
        # take far fewer than 200 hourly steps; the last call was the expiry.
        self.assertLess(len(target.calls), 5 * 24 + 10)

    def test_restartResumes(self):
        item = queueMessage(self.queue)
        target = ScriptedTarget([{"demo@example.test": ok}])
        self.runner(target)
        self.clock.advance(0)
        self.assertEqual(target.calls, [["demo@example.test"]])
        self.assertEqual(self.queue.ids(), [])
        self.assertNotEqual(item.id, None)

    def test_corruptMessageIsQuarantinedAndOthersGoOn(self):
        with open(os.path.join(self.queue.activeDir, "00BAD"), "wb") as f:
            f.write(b"garbage")
        item = queueMessage(self.queue)
        target = ScriptedTarget([{"demo@example.test": ok}])
        self.runner(target)
        self.clock.advance(0)
        self.assertEqual(os.listdir(self.queue.quarantineDir), ["00BAD"])
        self.assertEqual(self.queue.ids(), [])
        self.assertEqual(target.calls, [["demo@example.test"]])
        self.assertNotEqual(item.id, None)

    def test_noTargetDefers(self):
        target = ScriptedTarget([])
        runner = self.runner(target)
        item = queueMessage(self.queue, recipients=("x@remote.example",))
        runner.enqueue(item)
        self.clock.advance(0)
        loaded = self.queue.load(item.id)
        self.assertEqual(loaded.envelope.recipients[0].lastStatus, "4.4.0")
        self.assertEqual(loaded.envelope.recipients[0].state, "pending")


class LocalDeliveryTests(unittest.TestCase):
    def test_deliverWithReturnPath(self):
        base = self.mktemp()
        queue = QueueStore(os.path.join(base, "queue"))
        queue.create()
        store = MaildirStore(os.path.join(base, "mail"))
        users = UserDatabase(os.path.join(base, "passwd"))
        users.setPassword("demo@example.test", cachedHash("demo"))
        local = LocalDelivery(store, users, lambda d: d == "example.test", runSynchronously)
        item = queueMessage(queue, recipients=("demo@example.test", "gone@example.test"))
        results = self.successResultOf(
            local.deliver(item, ["demo@example.test", "gone@example.test"])
        )
        self.assertEqual(results["demo@example.test"].state, DELIVERED)
        self.assertEqual(
            results["gone@example.test"],
            DeliveryResult(FAILED, "5.1.1", "no such user here", "local"),
        )
        folder = store.folder("demo@example.test")
        [info] = folder.snapshot()
        self.assertEqual(
            folder.read(info),
            b"Return-Path: <a@b.example>\r\nSubject: x\r\n\r\nbody\r\n",
        )
