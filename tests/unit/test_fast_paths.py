"""
The shortcuts of the accept and relay paths, each with the behaviour it must
keep: the 250 waits for the group commit, RCPT is answered from remembered
resolutions only while the files are unchanged, the outbound client turns
Nagle off and reads a small message in one thread call, synchronous checks
need no generator.
"""

import errno
import os
import time

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mailplat._dotstuff import DataEncoder
from mailplat._net import writeNow
from mailplat.delivery.session import SMTPSession
from mailplat.delivery.smtpclient import SMTPClientProtocol
from mailplat.policy import verdict as V
from mailplat.policy.pipeline import Pipeline
from mailplat.queue.commit import GroupCommitter
from mailplat.queue.envelope import Envelope, Recipient
from mailplat.queue.store import QueueStore, newQueueId
from mailplat.recipients import MEMO_MAX_AGE, UnknownRecipient
from mailplat.testing import runSynchronously
from tests.unit.test_queue_batching import ManualThread
from tests.unit.test_smtp_server import SessionMixin

# The whole reply to a message that was queued (a queue id is the time in
# milliseconds, at least 10 hex digits, then 6 more).
QUEUED = rb"250 2\.0\.0 Ok: queued as [0-9A-F]{16,}\r\n"
# ... and the reply to the NOOP pipelined after the message.
QUEUED_THEN_NOOP = rb"\A" + QUEUED + rb"250 2\.0\.0 Ok\r\n\Z"


class GroupCommitSessionTests(SessionMixin, unittest.TestCase):
    """
    The SMTP session with the group committer the service uses.
    """

    def setUp(self):
        SessionMixin.setUp(self)
        self.thread = ManualThread()
        self.ctx.committer = GroupCommitter(self.ctx.queue, self.thread)

    def startMessage(self, body=b"body"):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        out = self.send(proto, t, b"Subject: x\r\n\r\n" + body + b"\r\n.\r\nNOOP\r\n")
        return proto, t, out

    def test_250OnlyOnceDurable(self):
        p1, t1, out1 = self.startMessage(b"one")
        p2, t2, out2 = self.startMessage(b"two")
        p3, t3, out3 = self.startMessage(b"three")
        # Nothing answered (and the pipelined NOOP waits): the files are not
        # in active/ yet.
        self.assertEqual((out1, out2, out3), (b"", b"", b""))
        self.assertEqual(self.activeFiles(), [])
        self.thread.runNext()
        # The 250, then the pipelined NOOP's reply.
        self.assertRegex(t1.value(), QUEUED_THEN_NOOP)
        self.assertEqual((t2.value(), t3.value()), (b"", b""))
        self.assertEqual(len(self.activeFiles()), 1)
        # The two that waited are committed together.
        self.thread.runNext()
        for t in (t2, t3):
            self.assertRegex(t.value(), QUEUED_THEN_NOOP)
        self.assertEqual(len(self.activeFiles()), 3)
        self.assertEqual(self.ctx.committer.groups, 2)
        self.assertEqual(len(self.ctx.runner.enqueued), 3)

    def test_commitFailureIn451(self):
        proto, t, out = self.startMessage()
        real = os.fsync

        def failing(fd):
            raise OSError(errno.EIO, "Input/output error")

        self.patch(os, "fsync", failing)
        self.thread.runNext()
        self.patch(os, "fsync", real)
        self.assertEqual(
            t.value(), b"451 4.3.0 Local error in processing\r\n250 2.0.0 Ok\r\n"
        )
        self.assertEqual(self.activeFiles(), [])
        self.assertEqual(self.tmpFiles(), [])


class RecipientMemoTests(SessionMixin, unittest.TestCase):
    def setUp(self):
        SessionMixin.setUp(self)
        self.resolver = self.ctx.recipients
        self.hops = []
        real = self.ctx.runBlocking

        def counting(f, *args, **kw):
            self.hops.append(f)
            return real(f, *args, **kw)

        self.ctx.runBlocking = counting

    def rcpt(self, address):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        return self.send(proto, t, b"RCPT TO:<" + address + b">\r\n")

    def test_noMemoWithoutWatcher(self):
        self.rcpt(b"demo@example.test")
        self.rcpt(b"demo@example.test")
        self.assertEqual(len(self.hops), 2)
        self.assertIsNone(self.resolver.cached("demo@example.test"))

    def test_rememberedWhileFilesUnchanged(self):
        self.resolver.checkFiles()
        self.assertEqual(self.rcpt(b"demo@example.test"), b"250 2.1.5 Ok\r\n")
        self.assertEqual(self.rcpt(b"Demo@Example.test"), b"250 2.1.5 Ok\r\n")
        self.assertEqual(len(self.hops), 1)
        # Unknown recipients are always looked up.
        for _ in range(2):
            self.assertTrue(self.rcpt(b"nobody@example.test").startswith(b"550 5.1.1"))
        self.assertEqual(len(self.hops), 3)

    def test_forgottenWhenAFileChanges(self):
        self.resolver.checkFiles()
        self.resolver.resolve("demo@example.test")
        self.assertIsNotNone(self.resolver.cached("demo@example.test"))
        path = self.ctx.users.path
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        # Until the watcher looks, the memo stands (for at most a moment)...
        self.assertIsNotNone(self.resolver.cached("demo@example.test"))
        self.resolver.checkFiles()
        self.assertIsNone(self.resolver.cached("demo@example.test"))

    def test_staleWithoutRecentCheck(self):
        self.resolver.checkFiles()
        self.resolver.resolve("demo@example.test")
        later = time.monotonic() + MEMO_MAX_AGE + 1
        self.assertIsNone(self.resolver.cached("demo@example.test", now=lambda: later))

    def test_notRememberedWhenFilesChangeDuringLookup(self):
        self.resolver.checkFiles()
        real = self.resolver._lookup
        path = self.ctx.users.path

        def lookupWhileChanging(local, domain):
            result = real(local, domain)
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
            self.resolver.checkFiles()
            return result

        self.resolver._lookup = lookupWhileChanging
        self.resolver.resolve("demo@example.test")
        self.assertIsNone(self.resolver.cached("demo@example.test"))

    def test_unknownNotRemembered(self):
        self.resolver.checkFiles()
        self.assertRaises(UnknownRecipient, self.resolver.resolve, "nobody@example.test")
        self.assertIsNone(self.resolver.cached("nobody@example.test"))


class NoDelayTransport(StringTransport):
    noDelay = None

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled


class OutboundClientTests(unittest.TestCase):
    def test_nagleOff(self):
        """
        Commands, data and the final dot are separate writes: Nagle's
        algorithm would hold each back for the peer's delayed ACK.
        """
        transport = NoDelayTransport()
        SMTPClientProtocol(Clock()).makeConnection(transport)
        self.assertIs(transport.noDelay, True)

    def item(self, content):
        queue = QueueStore(self.mktemp())
        queue.create()
        env = Envelope(id=newQueueId(), sender="s@example.test",
                       recipients=[Recipient("a@remote.example")], arrival=1.0)
        spool = queue.spool(env)
        spool.write(content)
        return spool.commit()

    def chunks(self, content, chunkSize, encoder):
        calls = []

        def runBlocking(f, *args):
            calls.append(f)
            return runSynchronously(f, *args)

        session = SMTPSession(None, "h", "192.0.2.1", 25, "me", runBlocking)
        session.chunkSize = chunkSize
        reader = session._reader(self.item(content), encoder)
        out = []
        while True:
            data = self.successResultOf(reader())
            if data is None:
                break
            out.append(data)
        return out, len(calls)

    def test_smallMessageInOneRead(self):
        out, reads = self.chunks(b"Subject: x\r\n\r\n.dot\r\n", 64, DataEncoder())
        self.assertEqual(out, [b"Subject: x\r\n\r\n..dot\r\n.\r\n"])
        self.assertEqual(reads, 1)

    def test_exactChunkSize(self):
        content = b"Subject: x\r\n\r\n12\r\n"
        out, reads = self.chunks(content, len(content), DataEncoder())
        self.assertEqual(b"".join(out), content + b".\r\n")
        self.assertEqual(reads, 2)

    def test_bdatReadsRaw(self):
        content = b"Subject: x\r\n\r\n" + b"y" * 100 + b"\r\n"
        out, reads = self.chunks(content, 50, None)
        self.assertEqual(b"".join(out), content)
        self.assertEqual(reads, 3)


class WriteNowTests(unittest.TestCase):
    def test_otherTransportsWriteAsUsual(self):
        transport = StringTransport()
        writeNow(transport, b"250 ok\r\n")
        writeNow(transport, b"221 bye\r\n")
        self.assertEqual(transport.value(), b"250 ok\r\n221 bye\r\n")


class SyncCheck:
    stages = frozenset({"mail"})

    def __init__(self, verdict, calls):
        self.verdict = verdict
        self.calls = calls

    def check(self, stage, facts):
        self.calls.append(self)
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict


class PipelineSyncTests(unittest.TestCase):
    def test_mixedSyncAndAsync(self):
        calls = []
        stop = V.reject(550, "5.7.1", "no")
        later = SyncCheck(defer.succeed(V.CONTINUE_VERDICT), calls)
        pipeline = Pipeline([
            SyncCheck(V.CONTINUE_VERDICT, calls), later,
            SyncCheck(stop, calls), SyncCheck(V.accept(), calls),
        ])
        self.assertEqual(self.successResultOf(pipeline.run("mail", None)), stop)
        self.assertEqual(len(calls), 3)

    def test_pendingCheckHoldsTheRest(self):
        calls = []
        d = defer.Deferred()
        pipeline = Pipeline([SyncCheck(d, calls), SyncCheck(V.accept(), calls)])
        result = pipeline.run("mail", None)
        self.assertNoResult(result)
        self.assertEqual(len(calls), 1)
        d.callback(V.CONTINUE_VERDICT)
        self.assertEqual(self.successResultOf(result).action, V.ACCEPT)

    def test_raisingCheckFails(self):
        pipeline = Pipeline([SyncCheck(ValueError("bug"), [])])
        self.failureResultOf(pipeline.run("mail", None), ValueError)

    def test_runNowWithoutDeferreds(self):
        calls = []
        pipeline = Pipeline([SyncCheck(V.CONTINUE_VERDICT, calls),
                             SyncCheck(V.accept(), calls)])
        self.assertEqual(pipeline.runNow("mail", None).action, V.ACCEPT)
        self.assertIs(pipeline.runNow("rcpt", None), V.CONTINUE_VERDICT)
        failing = Pipeline([SyncCheck(ValueError("bug"), [])])
        self.failureResultOf(failing.runNow("mail", None), ValueError)


class SyncCheckFailureSessionTests(SessionMixin, unittest.TestCase):
    def test_raisingCheckAnswers451(self):
        class Broken:
            name = "broken"
            stages = frozenset({"mail"})

            def check(self, stage, facts):
                raise RuntimeError("bug in a check")

        self.ctx.policy = Pipeline([Broken()] + self.ctx.policy.checks)
        proto, t = self.connect()
        out = self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\n")
        self.assertTrue(out.endswith(
            b"451 4.3.0 Local error in processing\r\n250 2.0.0 Ok\r\n"), out)
        self.flushLoggedErrors(RuntimeError)


class HeaderParsingTests(SessionMixin, unittest.TestCase):
    """
    The header section is parsed only when a data-stage check may read it.
    """

    def deliver(self, proto, t):
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        return self.send(
            proto, t, b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n.\r\n"
        )

    def test_notParsedWithoutReader(self):
        seen = []
        real = self.ctx.policy.runNow

        def spy(stage, facts):
            if stage == "data":
                seen.append((facts.headers, facts.receivedCount))
            return real(stage, facts)

        self.ctx.policy.runNow = spy
        proto, t = self.connect()
        writer = []
        original = proto._startMessage

        def keep(tr):
            result = original(tr)
            writer.append(tr.writer)
            return result

        proto._startMessage = keep
        self.assertTrue(self.deliver(proto, t).startswith(b"250 2.0.0 Ok: queued"))
        self.assertEqual(seen, [(None, 1)])
        self.assertIsNone(writer[0]._headers)
        self.assertEqual(self.queuedContent().split(b"\r\n", 5)[-1],
                         b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n")

    def test_parsedForAPluginCheck(self):
        seen = []

        class Reader:
            name = "reads_headers"
            stages = frozenset({"data"})

            def check(self, stage, facts):
                seen.append(facts.headers["Subject"])
                return V.CONTINUE_VERDICT

        self.ctx.policy = Pipeline(self.ctx.policy.checks + [Reader()])
        proto, t = self.connect()
        self.assertTrue(self.deliver(proto, t).startswith(b"250 2.0.0 Ok: queued"))
        self.assertEqual(seen, ["hi"])


class LocalDateTests(unittest.TestCase):
    def test_sameAsFormatdatePerSecond(self):
        import email.utils

        from mailplat.smtp.server import _localDate

        for when in (1_000_000_000.2, 1_000_000_000.9, 1_000_000_001.0, 1_700_000_000.5):
            self.assertEqual(
                _localDate(lambda: when),
                email.utils.formatdate(int(when), localtime=True),
            )


class MemorySpoolSessionTests(SessionMixin, unittest.TestCase):
    """
    The SMTP session holds a small message in memory unless a data-stage
    check may read its spool file.
    """

    def setUp(self):
        SessionMixin.setUp(self)
        self.thread = ManualThread()
        self.ctx.committer = GroupCommitter(self.ctx.queue, self.thread)

    def deliver(self, proto, t):
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        return self.send(proto, t, b"Subject: hi\r\n\r\nbody\r\n.\r\n")

    def test_noFileUntilTheCommitThread(self):
        proto, t = self.connect()
        self.assertEqual(self.deliver(proto, t), b"")
        # Waiting for the commit: nothing on disk yet.
        self.assertEqual(self.tmpFiles(), [])
        self.thread.runNext()
        self.assertRegex(t.value(), b"\\A" + QUEUED + b"\\Z")
        self.assertEqual(len(self.activeFiles()), 1)
        self.assertTrue(self.queuedContent().endswith(b"\r\nSubject: hi\r\n\r\nbody\r\n"))
        self.assertEqual(self.ctx.queue.memoryHeld, 0)

    def test_aCheckThatMayReadTheFileFindsIt(self):
        seen = []
        queue = self.ctx.queue

        class Reader:
            name = "reads_spool"
            stages = frozenset({"data"})

            def check(self, stage, facts):
                with open(facts.spool.tmpPath, "rb") as f:
                    f.seek(facts.spool.offset)
                    seen.append(f.read())
                return V.CONTINUE_VERDICT

        self.ctx.policy = Pipeline(self.ctx.policy.checks + [Reader()])
        proto, t = self.connect()
        self.deliver(proto, t)
        self.assertEqual(len(seen), 1)
        self.assertTrue(seen[0].endswith(b"\r\nSubject: hi\r\n\r\nbody\r\n"))
        self.assertEqual(queue.memoryHeld, 0)
        self.thread.runNext()
        self.assertRegex(t.value(), b"\\A" + QUEUED + b"\\Z")
        self.assertEqual(self.queuedContent(), seen[0])
