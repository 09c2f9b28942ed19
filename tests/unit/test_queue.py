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
        spool.flush()
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


@implementer(IDeliveryTarget)
class NoticeSink:
    """
    Takes every recipient the scripted target does not: where notices go.
    """

    name = "notices"

    def __init__(self):
        self.received = []

    def accepts(self, recipient):
        return True

    def deliver(self, item, recipients):
        self.received.append((item.envelope, b"".join(item.contentChunks())))
        return defer.succeed(
            {r: DeliveryResult(DELIVERED, "2.0.0", "ok", "notices") for r in recipients}
        )


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

    def runner(self, *targets):
        runner = QueueRunner(
            self.queue, list(targets), self.clock, runSynchronously, self.config,
            now=self.clock.seconds, hostname="mail.example.test",
            postmaster="postmaster@example.test",
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
        notices = NoticeSink()
        runner = self.runner(target, notices)
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
        # c@ failed: one bounce to the sender, for c@ only.
        [(envelope, content)] = notices.received
        self.assertEqual((envelope.sender, [r.address for r in envelope.recipients]), ("", ["a@b.example"]))
        self.assertIn(b"Final-Recipient: rfc822; c@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n", content)
        self.assertNotIn(b"a@example.test", content.split(b"message/delivery-status")[1].split(b"--")[0])

    def test_expiry(self):
        target = ScriptedTarget([{"demo@example.test": later}] * 1000)
        runner = self.runner(target, NoticeSink())
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


def runUntilIdle(clock, stop, limit=10000):
    """
    Advance C{clock} from one scheduled call to the next until C{stop()}.

    @return: the times at which calls ran.
    """
    times = []
    for _ in range(limit):
        if stop():
            return times
        calls = clock.getDelayedCalls()
        if not calls:
            return times
        nextTime = min(c.getTime() for c in calls)
        clock.advance(max(0, nextTime - clock.seconds()))
        times.append(clock.seconds())
    raise AssertionError("did not stop")


class ScheduleAndNoticeTests(unittest.TestCase):
    """
    The whole life of a message in the queue, on a fake clock: the retry
    schedule, the delay notice, expiry and the bounce, and the other
    notices RFC 3461 NOTIFY asks for.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.clock = Clock()
        self.clock.advance(1000)
        self.config = QueueConfig()  # the defaults: 1 min .. 1 h, 5 days, 4 h

    def runner(self, *targets, postmaster="postmaster@example.test"):
        runner = QueueRunner(
            self.queue, list(targets), self.clock, runSynchronously, self.config,
            now=self.clock.seconds, hostname="mail.example.test",
            postmaster=postmaster,
        )
        runner.startService()
        self.addCleanup(runner.stopService)
        return runner

    def queueWith(self, recipients, sender="a@b.example", notify="", params=None):
        env = envelope(recipients=recipients, sender=sender, arrival=self.clock.seconds())
        for r in env.recipients:
            r.notify = notify
        env.params.update(params or {})
        spool = self.queue.spool(env)
        spool.write(b"Subject: hello\r\nX-Test: 1\r\n\r\nbody\r\n")
        return spool.commit()

    def test_wholeScheduleDelayNoticeExpiryAndBounce(self):
        target = ScriptedTarget([{"demo@example.test": later}] * 1000)
        notices = NoticeSink()
        runner = self.runner(target, notices)
        item = self.queueWith(["demo@example.test"])
        runner.enqueue(item)
        arrival = self.clock.seconds()
        attemptTimes = []
        original = target.deliver

        def recordingDeliver(i, recipients):
            attemptTimes.append(self.clock.seconds() - arrival)
            return original(i, recipients)

        target.deliver = recordingDeliver
        runUntilIdle(self.clock, lambda: item.id not in self.queue.ids())

        gaps = [b - a for a, b in zip(attemptTimes, attemptTimes[1:])]
        # Exponential back-off from one minute, capped at one hour.
        self.assertEqual(gaps[:7], [60, 120, 240, 480, 960, 1920, 3600])
        self.assertEqual(set(gaps[7:-1]), {3600})
        self.assertLessEqual(gaps[-1], 3600)
        self.assertGreater(attemptTimes[-1], 5 * 86400 - 3600)
        self.assertLess(attemptTimes[-1], 5 * 86400)
        # Two notices to the sender: the delay notice at 4 hours, the bounce.
        self.assertEqual(len(notices.received), 2)
        (delayEnv, delay), (bounceEnv, bounced) = notices.received
        self.assertEqual(delayEnv.sender, "")
        self.assertEqual(delayEnv.arrival - arrival, 4 * 3600)
        # The bounce is sent at the expiry, 5 days after arrival.
        self.assertEqual(bounceEnv.arrival - arrival, 5 * 86400)
        self.assertEqual([r.address for r in delayEnv.recipients], ["a@b.example"])
        self.assertIn(b"Subject: Delayed Mail (still being retried)", delay)
        self.assertIn(b"Action: delayed\r\nStatus: 4.2.0\r\n", delay)
        self.assertIn(b"Will-Retry-Until: ", delay)
        self.assertIn(b"Subject: Undelivered Mail Returned to Sender", bounced)
        self.assertIn(
            b"Final-Recipient: rfc822; demo@example.test\r\nAction: failed\r\n"
            b"Status: 4.4.7\r\n",
            bounced,
        )
        self.assertIn(b"message expired in the queue after 5 days; last error: try later", bounced)
        self.assertIn(b"Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nX-Test: 1\r\n\r\n--", bounced)
        self.assertEqual(self.queue.ids(), [])

    def test_retFullReturnsTheWholeMessage(self):
        notices = NoticeSink()
        runner = self.runner(ScriptedTarget([{"demo@example.test": never}]), notices)
        runner.enqueue(self.queueWith(["demo@example.test"], params={"ret": "FULL", "envid": "abc 1"}))
        self.clock.advance(0)
        [(_, content)] = notices.received
        self.assertIn(b"Original-Envelope-Id: abc+201\r\n", content)
        self.assertIn(
            b"Content-Type: message/rfc822\r\n\r\nSubject: hello\r\nX-Test: 1\r\n\r\nbody\r\n\r\n--",
            content,
        )

    def test_notifyNeverSuppressesTheBounce(self):
        notices = NoticeSink()
        runner = self.runner(ScriptedTarget([{"demo@example.test": never}]), notices)
        runner.enqueue(self.queueWith(["demo@example.test"], notify="NEVER"))
        self.clock.advance(0)
        self.assertEqual(notices.received, [])
        self.assertEqual(self.queue.ids(), [])

    def test_notifySuccess(self):
        """
        NOTIFY=SUCCESS: a success notice for a final delivery; none when the
        message was handed on with NOTIFY to a server doing DSN.
        """
        passedOn = DeliveryResult(DELIVERED, "2.0.0", "250 ok", "mx[192.0.2.1]:25", "mx", "")
        notices = NoticeSink()
        target = ScriptedTarget([{"demo@example.test": ok}, {"demo@example.test": passedOn}])
        runner = self.runner(target, notices)
        runner.enqueue(self.queueWith(["demo@example.test"], notify="SUCCESS,FAILURE"))
        self.clock.advance(0)
        [(env, content)] = notices.received
        self.assertIn(b"Subject: Successful Mail Delivery Report", content)
        self.assertIn(b"Action: delivered\r\nStatus: 2.0.0\r\n", content)
        runner.enqueue(self.queueWith(["demo@example.test"], notify="SUCCESS"))
        self.clock.advance(0)
        self.assertEqual(len(notices.received), 1)
        self.assertEqual(self.queue.ids(), [])

    def test_nullSenderIsNeverBounced(self):
        """
        A failed message with the null sender gets no bounce; the
        postmaster gets a copy of the report (a double bounce), and a failed
        report to the postmaster is dropped.
        """
        notices = NoticeSink()
        target = ScriptedTarget([{"demo@example.test": never}] * 2)
        runner = self.runner(target, notices, postmaster="postmaster@b.example")
        runner.enqueue(self.queueWith(["demo@example.test"], sender=""))
        self.clock.advance(0)
        [(env, content)] = notices.received
        self.assertEqual([r.address for r in env.recipients], ["postmaster@b.example"])
        self.assertIn(b"Subject: Postmaster Copy: Undelivered Mail", content)
        runner.enqueue(self.queueWith(["demo@example.test"], sender="", params={"notice": "postmaster"}))
        self.clock.advance(0)
        self.assertEqual(len(notices.received), 1)
        self.assertEqual(self.queue.ids(), [])

    def test_restartKeepsTheSchedule(self):
        """
        After a restart a deferred recipient waits for its next attempt
        time; a delivered one is not tried again.
        """
        target = ScriptedTarget([{"demo@example.test": later, "x@example.test": ok}])
        runner = self.runner(target, NoticeSink())
        item = self.queueWith(["demo@example.test", "x@example.test"])
        runner.enqueue(item)
        self.clock.advance(0)
        runner.stopService()
        self.clock.advance(30)
        target2 = ScriptedTarget([{"demo@example.test": ok}])
        self.runner(target2, NoticeSink())
        self.clock.advance(0)
        self.assertEqual(target2.calls, [])
        self.clock.advance(29)
        self.assertEqual(target2.calls, [])
        self.clock.advance(1)
        self.assertEqual(target2.calls, [["demo@example.test"]])
        self.assertEqual(self.queue.ids(), [])

    def test_localAndRemoteAreIndependent(self):
        """
        The result of a fast target is durable while a slow one is still
        working; a later failure of the slow one does not repeat the fast
        one.
        """
        fast = ScriptedTarget([{"demo@example.test": ok}])

        @implementer(IDeliveryTarget)
        class Slow:
            name = "slow"
            pending = defer.Deferred()

            def accepts(self, r):
                return r.endswith("@remote.example")

            def deliver(self, item, recipients):
                return self.pending

        slow = Slow()
        runner = self.runner(fast, slow, NoticeSink())
        item = self.queueWith(["demo@example.test", "x@remote.example"])
        runner.enqueue(item)
        self.clock.advance(0)
        loaded = self.queue.load(item.id)
        self.assertEqual([r.state for r in loaded.envelope.recipients], [DELIVERED, "pending"])
        slow.pending.callback({"x@remote.example": later})
        slow.pending = defer.Deferred()
        self.clock.advance(60)
        self.assertEqual(fast.calls, [["demo@example.test"]])
        slow.pending.callback({"x@remote.example": ok})
        self.assertEqual(self.queue.ids(), [])

    def test_lockedMessageWaits(self):
        """
        A message locked by the admin command is tried again a little
        later, and others are not held up.
        """
        from mailplat.queue.store import QueueBusy, lockFile

        target = ScriptedTarget([{"demo@example.test": ok}] * 2)
        runner = self.runner(target, NoticeSink())
        locked = self.queueWith(["demo@example.test"])
        other = self.queueWith(["demo@example.test"])
        fd = lockFile(locked.path)
        self.assertRaises(QueueBusy, lockFile, locked.path)
        runner.schedule(locked.id, 0)
        runner.schedule(other.id, 0)
        self.clock.advance(0)
        self.assertEqual(self.queue.ids(), [locked.id])
        os.close(fd)
        self.clock.advance(5)
        self.assertEqual(self.queue.ids(), [])

    def test_holdReleaseDelete(self):
        target = ScriptedTarget([{"demo@example.test": ok}])
        runner = self.runner(target)
        item = self.queueWith(["demo@example.test"])
        self.queue.hold(item.id)
        runner.schedule(item.id, 0)
        self.clock.advance(0)
        self.assertEqual((self.queue.ids(), self.queue.heldIds()), ([], [item.id]))
        self.assertEqual(target.calls, [])
        self.queue.release(item.id)
        runner.schedule(item.id, 0)
        self.clock.advance(0)
        self.assertEqual(target.calls, [["demo@example.test"]])
        gone = self.queueWith(["demo@example.test"])
        self.assertEqual(self.queue.delete(gone.id), "active")
        self.assertRaises(FileNotFoundError, self.queue.delete, gone.id)
        self.assertRaises(FileNotFoundError, self.queue.delete, "../passwd")
        self.assertEqual(self.queue.ids(), [])


class ExtraHeaderTests(unittest.TestCase):
    """
    Header fields added at the end of DATA (after the envelope was first
    written) persist and come first when the content is read.
    """

    def setUp(self):
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def commitWith(self, headers, content=b"Subject: x\r\n\r\nbody\r\n"):
        spool = self.queue.spool(envelope())
        spool.write(content)
        spool.envelope.headers = headers
        spool.envelope.params["quarantine"] = "dmarc"
        return spool.commit()

    def test_inPlace(self):
        ar = "Authentication-Results: mail.example.test; spf=pass smtp.mailfrom=b.example\r\n"
        item = self.commitWith([ar])
        loaded = self.queue.load(item.id)
        self.assertEqual(loaded.envelope.headers, [ar])
        self.assertEqual(loaded.envelope.params, {"quarantine": "dmarc"})
        expected = ar.encode() + b"Subject: x\r\n\r\nbody\r\n"
        self.assertEqual(b"".join(loaded.contentChunks()), expected)
        self.assertEqual(b"".join(loaded.contentChunks(chunkSize=7)), expected)
        self.assertEqual(loaded.size, len(expected))
        with loaded.openContent() as f:
            self.assertEqual(f.read(5) + f.read(), expected)

    def test_largerThanTheReserve(self):
        big = ["X-Big: " + "y" * 5000 + "\r\n"]
        item = self.commitWith(big, content=b"z" * 100000)
        loaded = self.queue.load(item.id)
        self.assertEqual(loaded.envelope.headers, big)
        self.assertEqual(b"".join(loaded.contentChunks()), big[0].encode() + b"z" * 100000)
        self.assertEqual(os.listdir(self.queue.tmpDir), [])


class LocalDeliveryQuarantineTests(unittest.TestCase):
    def test_quarantinedMailGoesToJunkWithItsHeaders(self):
        base = self.mktemp()
        queue = QueueStore(os.path.join(base, "queue"))
        queue.create()
        store = MaildirStore(os.path.join(base, "mail"))
        users = UserDatabase(os.path.join(base, "passwd"))
        users.setPassword("demo@example.test", cachedHash("demo"))
        local = LocalDelivery(store, users, lambda d: d == "example.test", runSynchronously)
        spool = queue.spool(envelope())
        spool.write(b"Subject: x\r\n\r\nbody\r\n")
        ar = "Authentication-Results: mail.example.test; dmarc=fail header.from=b.example\r\n"
        spool.envelope.headers = [ar]
        spool.envelope.params["quarantine"] = "dmarc"
        item = spool.commit()
        [result] = self.successResultOf(local.deliver(item, ["demo@example.test"])).values()
        self.assertEqual(result.state, DELIVERED)
        self.assertTrue(result.detail.endswith(" in Junk"), result.detail)
        self.assertEqual(store.folder("demo@example.test").snapshot(), [])
        junk = store.folder("demo@example.test", "Junk")
        [info] = junk.snapshot()
        self.assertEqual(
            junk.read(info),
            b"Return-Path: <a@b.example>\r\n" + ar.encode() + b"Subject: x\r\n\r\nbody\r\n",
        )
