"""
The IMAP and POP3 fast paths: what a session asks on every command is
answered from the store's memory (no thread hop), small messages the kernel
has cached are read on the reactor thread, and the answers are the same as
the blocking paths give.
"""

import os

from twisted.internet.address import IPv4Address
from twisted.trial import unittest

from mailplat.config import ListenerConfig
from mailplat.imap import messagecommands
from mailplat.pop3 import POP3Factory
from mailplat.storage import nowait
from mailplat.testing import runSynchronously
from tests.imapsupport import MSG1, MSG2, MSG3, MULTIPART, IMAPTestMixin
from tests.unit.test_pop3_server import ImplicitTLSTransport


class CountingRunner:
    """
    A synchronous C{runBlocking} that records what it ran.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args, **kwargs):
        self.calls.append(getattr(f, "__name__", repr(f)))
        return runSynchronously(f, *args, **kwargs)


def settle(folder):
    """
    Make the folder's directories old enough to be trusted without another
    look (see MaildirFolder._settled).
    """
    for sub in ("new", "cur"):
        os.utime(os.path.join(folder.path, sub), ns=(10**18, 10**18))
    folder._stamp = None


class IMAPFastPathTests(IMAPTestMixin, unittest.TestCase):
    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.seen()
        settle(self.folder)
        self.runner = CountingRunner()
        self.ctx.runBlocking = self.runner

    def test_noHopsWhenNothingChanged(self):
        session = self.selected()
        self.runner.calls.clear()
        self.assertEqual(session.command(b"a NOOP"), [b"a OK NOOP completed"])
        self.assertEqual(session.command(b"b UID FETCH 1:* (FLAGS)"), [
            b"* 1 FETCH (FLAGS () UID 1)", b"* 2 FETCH (FLAGS () UID 2)",
            b"* 3 FETCH (FLAGS () UID 3)", b"b OK UID FETCH completed",
        ])
        self.assertEqual(session.command(b"c STATUS INBOX (MESSAGES UNSEEN)"), [
            b"* STATUS INBOX (MESSAGES 3 UNSEEN 3)", b"c OK STATUS completed"])
        self.assertEqual(session.command(b"d SELECT INBOX")[-1],
                         b"d OK [READ-WRITE] SELECT completed")
        self.assertEqual(self.runner.calls, [])

    def test_smallMessagesReadWithoutHop(self):
        if not nowait.available:
            raise unittest.SkipTest("openat2(RESOLVE_CACHED) is not available here")
        session = self.selected()
        self.runner.calls.clear()
        header = MSG2.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        self.assertEqual(session.send(b"a FETCH 2 (BODY.PEEK[HEADER])\r\n"),
                         b"* 2 FETCH (BODY[HEADER] {%d}\r\n%s)\r\n"
                         b"a OK FETCH completed\r\n" % (len(header), header))
        self.assertEqual(session.send(b"b FETCH 2 (BODY.PEEK[] RFC822.SIZE)\r\n"),
                         b"* 2 FETCH (BODY[] {%d}\r\n%s RFC822.SIZE %d)\r\n"
                         b"b OK FETCH completed\r\n" % (len(MSG2), MSG2, len(MSG2)))
        self.assertEqual(self.runner.calls, [])
        # The MIME structure is parsed off the reactor thread.
        session.command(b"c FETCH 2 (ENVELOPE)")
        self.assertEqual(self.runner.calls, ["_renderMany"])

    def test_withoutNowaitOneHopPerGroup(self):
        """
        Where the kernel cannot say whether a read would wait, the messages
        of a FETCH are read in one thread hop per group, with the same
        responses.
        """
        self.patch(nowait, "_openCached", None)
        session = self.selected()
        self.runner.calls.clear()
        out = session.send(b"a FETCH 1:3 (BODY.PEEK[])\r\n")
        self.assertEqual(out, b"".join(
            b"* %d FETCH (BODY[] {%d}\r\n%s)\r\n" % (n, len(m), m)
            for n, m in enumerate((MSG1, MSG2, MSG3), 1)
        ) + b"a OK FETCH completed\r\n")
        self.assertEqual(self.runner.calls, ["_renderMany"])

    def test_groupsAreBounded(self):
        entries = [(type("I", (), {"size": s})(), None, False)
                   for s in (10, 10, 70000, 10, 200000, 200000, 100)]
        sizes = [[e[0].size for e in g] for g in messagecommands._renderGroups(entries)]
        self.assertEqual(sizes, [[10, 10], [70000], [10], [200000], [200000], [100]])
        many = [(type("I", (), {"size": 1})(), None, False)] * 130
        self.assertEqual([len(g) for g in messagecommands._renderGroups(many)],
                         [64, 64, 2])

    def test_otherSessionsChangesAtOnce(self):
        """
        A change made through the store is seen by the next command of
        every session, whatever the rescan interval.
        """
        one, two = self.selected(), self.selected()
        self.assertEqual(two.command(b"a STORE 1 +FLAGS (\\Flagged)"), [
            b"* 1 FETCH (FLAGS (\\Flagged))", b"a OK STORE completed"])
        self.assertEqual(one.command(b"b NOOP"), [
            b"* 1 FETCH (FLAGS (\\Flagged))", b"b OK NOOP completed"])
        self.deliver(MSG2)
        self.assertEqual(one.command(b"c NOOP"), [
            b"* 4 EXISTS", b"* 1 RECENT", b"c OK NOOP completed"])
        self.assertEqual(two.command(b"d NOOP"), [
            b"* 4 EXISTS", b"* 0 RECENT", b"d OK NOOP completed"])

    def test_externalDropAfterRescanInterval(self):
        """
        Mail another program drops into the Maildir reaches a session's
        NOOP once the folder's picture is older than storage.rescan_interval.
        """
        now = [1000.0]
        self.folder.clock = lambda: now[0]
        session = self.selected()
        with open(os.path.join(self.folder.path, "new", "1.ext.host"), "wb") as f:
            f.write(b"Subject: dropped\r\n\r\nx\r\n")
        self.assertEqual(session.command(b"a NOOP"), [b"a OK NOOP completed"])
        now[0] += self.ctx.config.storage.rescanInterval
        self.assertEqual(session.command(b"b NOOP"), [
            b"* 4 EXISTS", b"* 1 RECENT", b"b OK NOOP completed"])


class RescanEveryCommandTests(IMAPTestMixin, unittest.TestCase):
    overrides = {"storage": {"rescan_interval": "0s"}}

    def test_externalDropAtOnce(self):
        self.assertEqual(self.ctx.config.storage.rescanInterval, 0)
        session = self.selected()
        with open(os.path.join(self.folder.path, "new", "1.ext.host"), "wb") as f:
            f.write(b"Subject: dropped\r\n\r\nx\r\n")
        self.assertEqual(session.command(b"a NOOP"), [
            b"* 1 EXISTS", b"* 1 RECENT", b"a OK NOOP completed"])


class POP3FastPathTests(IMAPTestMixin, unittest.TestCase):
    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MULTIPART)
        settle(self.folder)
        self.folder.snapshot()
        self.runner = CountingRunner()
        self.ctx.runBlocking = self.runner

    def pop3(self):
        listener = ListenerConfig("pop3", "pop3", "tcp:0", tls="implicit")
        proto = POP3Factory(self.ctx, listener).buildProtocol(None)
        transport = ImplicitTLSTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 1))
        proto.makeConnection(transport)
        transport.clear()
        proto.dataReceived(b"USER demo@example.test\r\nPASS demo\r\n")
        self.assertEqual(transport.value(), b"+OK\r\n+OK Logged in.\r\n")
        transport.clear()
        return proto, transport

    def test_loginAndRetrWithoutHops(self):
        if not nowait.available:
            raise unittest.SkipTest("openat2(RESOLVE_CACHED) is not available here")
        proto, transport = self.pop3()
        # The maildrop came from the store's memory.
        self.assertEqual(self.runner.calls, [])
        proto.dataReceived(b"RETR 2\r\n")
        self.assertEqual(transport.value(), b"+OK %d octets\r\n" % len(MULTIPART)
                         + MULTIPART + b".\r\n")
        self.assertEqual(self.runner.calls, [])

    def test_retrInOneHopWithoutNowait(self):
        self.patch(nowait, "_openCached", None)
        proto, transport = self.pop3()
        proto.dataReceived(b"RETR 1\r\nTOP 2 1\r\n")
        top = MULTIPART.split(b"\r\n\r\n")[0] + b"\r\n\r\npreamble\r\n"
        self.assertEqual(transport.value(), b"+OK %d octets\r\n" % len(MSG1) + MSG1
                         + b".\r\n+OK Top of message follows\r\n" + top + b".\r\n")
        self.assertEqual(self.runner.calls, ["read", "read"])

    def test_retrGoneInTheHop(self):
        self.patch(nowait, "_openCached", None)
        proto, transport = self.pop3()
        infos = self.folder.snapshot()
        self.folder.remove(infos[:1])
        proto.dataReceived(b"RETR 1\r\n")
        self.assertEqual(
            transport.value(),
            b"-ERR [SYS/TEMP] Message was removed by another session.\r\n")
