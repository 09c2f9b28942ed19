"""
Unit tests for L{mailplat.smtp.server}: no sockets, no real time.
"""

import base64
import errno
import os

from twisted.internet.address import IPv4Address
from twisted.trial import unittest

from mailplat.config.schema import ListenerConfig
from mailplat.queue import store as storeModule
from mailplat.smtp.server import SMTPFactory
from mailplat.testing import makeContext
from tests.tlsfakes import ImplicitTLSTransport, StartTLSTransport

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


def plain(user, password):
    return base64.b64encode(b"\0" + user + b"\0" + password).decode("ascii")


class SessionMixin:
    profile = "mx"
    tls = "starttls"
    overrides = None

    def setUp(self):
        self.ctx = makeContext(
            self.mktemp(), tlsOptions=object(), overrides=self.overrides
        )
        self.listener = ListenerConfig(
            "test", "smtp", "tcp:0", tls=self.tls, profile=self.profile
        )

    def connect(self, transportClass=StartTLSTransport):
        factory = SMTPFactory(self.ctx, self.listener)
        proto = factory.buildProtocol(PEER)
        transport = transportClass(peerAddress=PEER)
        proto.makeConnection(transport)
        self.assertEqual(
            transport.value(), b"220 mail.example.test ESMTP mailplat\r\n"
        )
        transport.clear()
        return proto, transport

    def send(self, proto, transport, data):
        transport.clear()
        proto.dataReceived(data)
        return transport.value()

    def activeFiles(self):
        return sorted(os.listdir(self.ctx.queue.activeDir))

    def tmpFiles(self):
        return sorted(os.listdir(self.ctx.queue.tmpDir))

    def queuedContent(self, index=0):
        item = self.ctx.runner.enqueued[index]
        return b"".join(item.contentChunks())


class CommandTests(SessionMixin, unittest.TestCase):
    def test_ehloBeforeTLS(self):
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"EHLO client.example\r\n"),
            b"250-mail.example.test\r\n"
            b"250-PIPELINING\r\n"
            b"250-SIZE 26214400\r\n"
            b"250-8BITMIME\r\n"
            b"250-SMTPUTF8\r\n"
            b"250-DSN\r\n"
            b"250-CHUNKING\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n"
            b"250 STARTTLS\r\n",
        )

    def test_ehloAfterTLSOffersAuth(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.assertEqual(
            self.send(proto, t, b"EHLO client.example\r\n"),
            b"250-mail.example.test\r\n"
            b"250-PIPELINING\r\n"
            b"250-SIZE 26214400\r\n"
            b"250-8BITMIME\r\n"
            b"250-SMTPUTF8\r\n"
            b"250-DSN\r\n"
            b"250-CHUNKING\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n"
            b"250 AUTH PLAIN LOGIN\r\n",
        )

    def test_heloNeedsArgument(self):
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"HELO\r\n"), b"501 5.5.4 Syntax: HELO hostname\r\n"
        )
        self.assertEqual(
            self.send(proto, t, b"HELO client.example\r\n"),
            b"250 mail.example.test\r\n",
        )

    def test_simpleReplies(self):
        proto, t = self.connect()
        self.assertEqual(self.send(proto, t, b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(self.send(proto, t, b"RSET\r\n"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(
            self.send(proto, t, b"VRFY demo\r\n"),
            b"252 2.1.5 Cannot VRFY user, but will accept message and attempt "
            b"delivery\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"EXPN staff\r\n"),
            b"252 2.1.5 Cannot VRFY user, but will accept message and attempt "
            b"delivery\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"HELP\r\n"),
            b"214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET VRFY EXPN NOOP QUIT "
            b"STARTTLS AUTH HELP\r\n214 2.0.0 See RFC 5321\r\n",
        )
        self.assertEqual(self.send(proto, t, b"QUIT\r\n"), b"221 2.0.0 Bye\r\n")
        self.assertTrue(t.disconnecting)

    def test_unknownAndObsoleteCommands(self):
        proto, t = self.connect()
        for verb in (b"SEND", b"SOML", b"SAML", b"TURN"):
            self.assertEqual(
                self.send(proto, t, verb + b" FROM:<a@b>\r\n"),
                b"502 5.5.1 Error: command not implemented\r\n",
            )
        self.assertEqual(
            self.send(proto, t, b"FROB\r\n"),
            b"500 5.5.2 Error: command not recognized\r\n",
        )
        # A binary or non-ASCII verb gets an answer; the session goes on.
        self.assertEqual(
            self.send(proto, t, b"\xff\xfe\x00\x01\r\n"),
            b"500 5.5.2 Error: command not recognized\r\n",
        )
        self.assertEqual(
            self.send(proto, t, "MÄIL x\r\n".encode("utf-8")),
            b"500 5.5.2 Error: command not recognized\r\n",
        )
        self.assertEqual(self.send(proto, t, b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")
        self.assertFalse(t.disconnecting)

    def test_badSequence(self):
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n"),
            b"503 5.5.1 Error: send HELO/EHLO first\r\n",
        )
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<demo@example.test>\r\n"),
            b"503 5.5.1 Error: need MAIL command\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"DATA\r\n"), b"503 5.5.1 Error: need MAIL command\r\n"
        )
        self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n"),
            b"503 5.5.1 Error: nested MAIL command\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"DATA\r\n"), b"554 5.5.1 Error: no valid recipients\r\n"
        )

    def test_syntaxErrors(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL TO:<a@b.example>\r\n"),
            b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:a@b.example\r\n"),
            b"501 5.1.7 Bad sender address syntax\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example> FOO=1\r\n"),
            b"555 5.5.4 Unsupported or malformed parameter: FOO\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example> BODY=9BIT\r\n"),
            b"555 5.5.4 Unsupported or malformed parameter: BODY\r\n",
        )
        self.send(proto, t, b"MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=100\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:demo@example.test\r\n"),
            b"501 5.1.3 Bad recipient address syntax\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<demo@example.test> NOTIFY=NEVER,SUCCESS\r\n"),
            b"555 5.5.4 Unsupported or malformed parameter: NOTIFY\r\n",
        )

    def test_sizeParameterOverLimit(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example> SIZE=26214401\r\n"),
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example> SIZE=26214400\r\n"),
            b"250 2.1.0 Ok\r\n",
        )

    def test_tooManyErrors(self):
        proto, t = self.connect()
        out = self.send(proto, t, b"FROB\r\n" * self.ctx.config.smtp.maxErrors)
        self.assertTrue(
            out.endswith(
                b"500 5.5.2 Error: command not recognized\r\n"
                b"421 4.7.0 mail.example.test Error: too many errors\r\n"
            )
        )
        self.assertTrue(t.disconnecting)

    def test_timeout(self):
        proto, t = self.connect()
        self.ctx.clock.advance(self.ctx.config.smtp.commandTimeout + 1)
        self.assertEqual(
            t.value(), b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"
        )
        self.assertTrue(t.disconnecting)

    def test_commandLineTooLongIsBounded(self):
        proto, t = self.connect()
        limit = self.ctx.config.smtp.maxCommandLine
        for _ in range(100):
            proto.dataReceived(b"X" * 10000)
            self.assertLessEqual(len(proto._buffer), limit + 10000)
        self.assertEqual(t.value(), b"")
        self.assertEqual(
            self.send(proto, t, b"XXXX\r\nNOOP\r\n"),
            b"500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n",
        )


class TransactionTests(SessionMixin, unittest.TestCase):
    def test_deliverOneMessage(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO client.example\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<sender@remote.example>\r\n"),
            b"250 2.1.0 Ok\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<Demo@Example.TEST>\r\n"), b"250 2.1.5 Ok\r\n"
        )
        self.assertEqual(
            self.send(proto, t, b"DATA\r\n"),
            b"354 End data with <CR><LF>.<CR><LF>\r\n",
        )
        out = self.send(
            proto, t, b"Subject: hi\r\n\r\n..leading dot\r\nbare LF\nend\r\n.\r\n"
        )
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(out, f"250 2.0.0 Ok: queued as {item.id}\r\n".encode())
        self.assertEqual(self.activeFiles(), [item.id])
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(item.envelope.sender, "sender@remote.example")
        self.assertEqual(
            [r.address for r in item.envelope.recipients], ["demo@example.test"]
        )
        content = self.queuedContent()
        header, body = content.split(b"\r\n\r\n", 1)
        self.assertTrue(header.startswith(b"Received: from client.example ([192.0.2.7])\r\n"))
        self.assertIn(f"with ESMTP id {item.id}".encode(), header)
        self.assertIn(b"for <demo@example.test>;", header)
        self.assertTrue(header.endswith(b"\r\nSubject: hi"))
        self.assertEqual(body, b".leading dot\r\nbare LF\r\nend\r\n")

    def test_unknownUser(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<nobody@example.test>\r\n"),
            b"550 5.1.1 <nobody@example.test>: Recipient address rejected: "
            b"User unknown\r\n",
        )

    def test_relayDenied(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<someone@other.example>\r\n"),
            b"554 5.7.1 <someone@other.example>: Relay access denied\r\n",
        )

    def test_relayTricksAreRefused(self):
        """
        Every way of naming a remote final destination through a local
        domain is refused for an unauthenticated client.
        """
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        unknown = (
            b"550 5.1.1 <%s>: Recipient address rejected: User unknown\r\n"
        )
        cases = [
            (b"user%other.example@example.test", unknown % b"user%other.example@example.test"),
            (
                b'"user@other.example"@example.test',
                unknown % b'"user@other.example"@example.test',
            ),
            (b"other.example!user@example.test", unknown % b"other.example!user@example.test"),
            (
                b"@example.test:user@other.example",
                b"554 5.7.1 <user@other.example>: Relay access denied\r\n",
            ),
            (b"user@[192.0.2.1]", b"554 5.7.1 <user@[192.0.2.1]>: Relay access denied\r\n"),
            (b"user@example.test.", b"501 5.1.3 Bad recipient address syntax\r\n"),
            (b"", b"501 5.1.3 Bad recipient address syntax\r\n"),
            (b"user\x00@example.test", b"501 5.1.3 Bad recipient address syntax\r\n"),
            (b"demo\x00@other.example", b"501 5.1.3 Bad recipient address syntax\r\n"),
        ]
        for address, expected in cases:
            self.assertEqual(
                self.send(proto, t, b"RCPT TO:<" + address + b">\r\n"),
                expected,
                address,
            )
        self.assertEqual(
            self.send(proto, t, b"DATA\r\n"), b"554 5.5.1 Error: no valid recipients\r\n"
        )

    def test_pipelinedTransactionInOnePacket(self):
        self.ctx.users.setPassword("other@example.test", "{ARGON2ID}$argon2id$x")
        proto, t = self.connect()
        out = self.send(
            proto,
            t,
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<demo@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<other@example.test>\r\n"
            b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        )
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(
            out.split(b"\r\n")[9:],
            [
                b"250 2.1.0 Ok",
                b"250 2.1.5 Ok",
                b"550 5.1.1 <nobody@example.test>: Recipient address rejected: "
                b"User unknown",
                b"250 2.1.5 Ok",
                b"354 End data with <CR><LF>.<CR><LF>",
                f"250 2.0.0 Ok: queued as {item.id}".encode(),
                b"221 2.0.0 Bye",
                b"",
            ],
        )
        self.assertEqual(
            [r.address for r in item.envelope.recipients],
            ["demo@example.test", "other@example.test"],
        )

    def test_asynchronousLookupKeepsOrder(self):
        """
        With user lookups that complete later, replies to pipelined commands
        still come in order, and no command runs before the one ahead of it
        has been answered.
        """
        from twisted.internet import defer

        pending = []

        def runLater(f, *args, **kw):
            d = defer.Deferred()
            pending.append((d, f, args, kw))
            return d

        self.ctx.runBlocking = runLater
        proto, t = self.connect()
        proto.dataReceived(
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<demo@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nNOOP\r\n"
        )
        self.assertTrue(t.value().endswith(b"250 2.1.0 Ok\r\n"))
        t.clear()
        while pending:
            d, f, args, kw = pending.pop(0)
            defer.maybeDeferred(f, *args, **kw).chainDeferred(d)
        self.assertEqual(
            t.value(),
            b"250 2.1.5 Ok\r\n"
            b"550 5.1.1 <nobody@example.test>: Recipient address rejected: "
            b"User unknown\r\n"
            b"250 2.0.0 Ok\r\n",
        )

    def test_longDataLineStaysInDataMode(self):
        """
        A line far over any limit in DATA never returns the session to command
        mode: the commands after it are message content.
        """
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        proto.dataReceived(b"Subject: long\r\n\r\n")
        for _ in range(20):
            proto.dataReceived(b"A" * 5000)
            self.assertLess(len(proto._buffer), 100)
        t.clear()
        proto.dataReceived(
            b"\r\nRSET\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@y>\r\n"
        )
        self.assertEqual(t.value(), b"")
        out = self.send(proto, t, b".\r\n")
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(out, f"250 2.0.0 Ok: queued as {item.id}\r\n".encode())
        body = self.queuedContent().split(b"\r\n\r\n", 1)[1]
        self.assertEqual(
            body,
            b"A" * 100000
            + b"\r\nRSET\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@y>\r\n",
        )

    def test_smugglingVariantsDoNotEndData(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        variants = [
            b"\n.\n",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r",
            b"\r\n.\r",
            b"\r.\r\n",
        ]
        t.clear()
        proto.dataReceived(b"Subject: s\r\n\r\nstart")
        for v in variants:
            proto.dataReceived(
                v + b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<demo@example.test>"
                b"\r\nDATA\r\nsmuggled\r\n"
            )
        self.assertEqual(t.value(), b"")
        out = self.send(proto, t, b"\r\n.\r\n")
        self.assertEqual(len(self.ctx.runner.enqueued), 1)
        self.assertEqual(
            out, f"250 2.0.0 Ok: queued as {self.ctx.runner.enqueued[0].id}\r\n".encode()
        )
        body = self.queuedContent().split(b"\r\n\r\n", 1)[1]
        self.assertEqual(body.count(b"MAIL FROM:<evil@attacker.example>"), 6)
        # Stored with CRLF line endings only.
        self.assertNotIn(b"\n", body.replace(b"\r\n", b""))

    def test_messageTooBig(self):
        self.overrides = {"smtp": {"max_message_size": 2000}}
        self.setUp()
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        for _ in range(10):
            proto.dataReceived(b"x" * 998 + b"\r\n")
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(
            self.send(proto, t, b".\r\nNOOP\r\n"),
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
            b"250 2.0.0 Ok\r\n",
        )
        self.assertEqual(self.activeFiles(), [])
        self.assertEqual(self.ctx.runner.enqueued, [])

    def test_mailLoop(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        out = self.send(proto, t, b"Received: from x\r\n" * 51 + b"\r\nbody\r\n.\r\n")
        self.assertEqual(
            out, b"554 5.4.6 Too many Received headers: mail loop detected\r\n"
        )
        self.assertEqual(self.activeFiles(), [])
        self.assertEqual(self.tmpFiles(), [])

    def test_connectionLostInDataLeavesNothing(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        proto.dataReceived(b"Subject: half\r\n\r\nhalf a mess")
        # A small message is held in memory: no file yet.
        spool = proto.transaction.spool
        self.assertTrue(spool.inMemory)
        self.assertEqual(self.tmpFiles(), [])
        self.assertGreater(spool.size, len(b"Subject: half\r\n\r\n"))
        self.assertEqual(self.ctx.queue.memoryHeld, spool.size)
        proto.connectionLost(None)
        self.assertEqual(self.ctx.queue.memoryHeld, 0)
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(self.activeFiles(), [])

    def test_connectionLostInLargeDataLeavesNothing(self):
        self.patch(storeModule, "MEMORY_LIMIT", 1000)
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        proto.dataReceived(b"Subject: half\r\n\r\n" + b"x" * 78 + b"\r\n")
        self.assertEqual(self.tmpFiles(), [])
        for _ in range(20):
            proto.dataReceived(b"y" * 78 + b"\r\n")
        # Past the limit, the file is written as the message arrives.
        self.assertEqual(len(self.tmpFiles()), 1)
        self.assertEqual(self.ctx.queue.memoryHeld, 0)
        proto.connectionLost(None)
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(self.activeFiles(), [])

    def _failCommit(self, error):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        real = os.fsync

        def failingFsync(fd):
            raise error

        self.patch(os, "fsync", failingFsync)
        out = self.send(proto, t, b"Subject: x\r\n\r\nbody\r\n.\r\n")
        self.patch(os, "fsync", real)
        self.assertEqual(self.activeFiles(), [])
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(self.ctx.runner.enqueued, [])
        # The session goes on.
        self.assertEqual(self.send(proto, t, b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")
        return out

    def test_diskFullAtCommit(self):
        out = self._failCommit(OSError(errno.ENOSPC, "No space left on device"))
        self.assertEqual(out, b"452 4.3.1 Insufficient system storage\r\n")

    def test_ioErrorAtCommit(self):
        out = self._failCommit(OSError(errno.EIO, "Input/output error"))
        self.assertEqual(out, b"451 4.3.0 Local error in processing\r\n")

    def test_diskFullWhileWriting(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.send(proto, t, b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        spool = proto.transaction.spool

        def full(data):
            raise OSError(errno.ENOSPC, "No space left on device")

        spool.write = full
        out = self.send(proto, t, b"Subject: x\r\n\r\n" + b"y" * 100 + b"\r\n.\r\n")
        self.assertEqual(out, b"452 4.3.1 Insufficient system storage\r\n")
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(self.activeFiles(), [])


class TLSAndAuthTests(SessionMixin, unittest.TestCase):
    def test_startTLSDiscardsPipelinedPlaintextAndResets(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        out = self.send(
            proto, t, b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@attacker.example>\r\n"
        )
        self.assertEqual(out, b"220 2.0.0 Ready to start TLS\r\n")
        self.assertTrue(t.tlsStarted)
        self.assertIsNone(proto.transaction)
        self.assertIsNone(proto.helo)
        # Session state was reset: a MAIL without a new EHLO is out of sequence.
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n"),
            b"503 5.5.1 Error: send HELO/EHLO first\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"STARTTLS\r\n"),
            b"503 5.5.1 Error: TLS already active\r\n",
        )

    def test_startTLSUnavailable(self):
        self.ctx.tlsOptions = None
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"STARTTLS\r\n"), b"454 4.7.0 TLS not available\r\n"
        )

    def test_authRefusedBeforeTLS(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(
                proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode()
            ),
            b"530 5.7.0 Must issue a STARTTLS command first\r\n",
        )

    def test_authPlain(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(
                proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode()
            ),
            b"235 2.7.0 Authentication successful\r\n",
        )
        self.assertEqual(proto.authenticated, "demo@example.test")
        self.assertEqual(
            self.send(proto, t, b"AUTH PLAIN\r\n"),
            b"503 5.5.1 Error: already authenticated\r\n",
        )

    def test_authPlainContinuation(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(self.send(proto, t, b"AUTH PLAIN\r\n"), b"334 \r\n")
        self.assertEqual(
            self.send(proto, t, plain(b"demo@example.test", b"demo").encode() + b"\r\n"),
            b"235 2.7.0 Authentication successful\r\n",
        )

    def test_authLogin(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(self.send(proto, t, b"AUTH LOGIN\r\n"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(
            self.send(proto, t, base64.b64encode(b"demo@example.test") + b"\r\n"),
            b"334 UGFzc3dvcmQ6\r\n",
        )
        self.assertEqual(
            self.send(proto, t, base64.b64encode(b"demo") + b"\r\n"),
            b"235 2.7.0 Authentication successful\r\n",
        )

    def test_authFailureIsDelayedAndUniform(self):
        for user, password in ((b"demo@example.test", b"wrong"), (b"nobody@example.test", b"demo")):
            proto, t = self.connect(ImplicitTLSTransport)
            self.send(proto, t, b"EHLO c\r\n")
            self.assertEqual(
                self.send(proto, t, f"AUTH PLAIN {plain(user, password)}\r\n".encode()), b""
            )
            # Commands pipelined behind the AUTH wait for its answer.
            proto.dataReceived(b"NOOP\r\n")
            self.assertEqual(t.value(), b"")
            self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
            self.assertEqual(
                t.value(), b"535 5.7.8 Error: authentication failed\r\n250 2.0.0 Ok\r\n"
            )
            self.assertIsNone(proto.authenticated)
            # The next attempt from this address would be throttled; that has
            # its own test.
            self.ctx.authThrottle.succeeded(PEER.host)

    def test_authThrottleGrowsPerAddress(self):
        """
        Each failure from one address doubles an extra wait before the next
        attempt from it is even checked; a success clears it.
        """
        delay = self.ctx.config.auth.failureDelay
        waits = []
        for n in range(4):
            proto, t = self.connect(ImplicitTLSTransport)
            self.send(proto, t, b"EHLO c\r\n")
            t.clear()
            proto.dataReceived(f"AUTH PLAIN {plain(b'demo@example.test', b'bad')}\r\n".encode())
            waited = 0.0
            while not t.value():
                self.ctx.clock.advance(0.5)
                waited += 0.5
            self.assertEqual(t.value(), b"535 5.7.8 Error: authentication failed\r\n")
            waits.append(waited)
        self.assertEqual(waits, [delay, delay + delay, delay + 2 * delay, delay + 4 * delay])
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        t.clear()
        proto.dataReceived(f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode())
        self.ctx.clock.advance(8 * delay)
        self.assertEqual(t.value(), b"235 2.7.0 Authentication successful\r\n")
        self.assertEqual(self.ctx.authThrottle.delay(PEER.host), 0)

    def test_authAbortAndGarbage(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.send(proto, t, b"AUTH PLAIN\r\n")
        self.assertEqual(
            self.send(proto, t, b"*\r\n"), b"501 5.7.0 Authentication aborted\r\n"
        )
        self.send(proto, t, b"AUTH PLAIN\r\n")
        self.assertEqual(
            self.send(proto, t, b"!!!not base64\r\n"), b"501 5.5.2 Cannot decode response\r\n"
        )
        self.assertEqual(
            self.send(proto, t, b"AUTH CRAM-MD5\r\n"),
            b"504 5.5.4 Unrecognized authentication mechanism\r\n",
        )
        self.assertEqual(self.send(proto, t, b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")

    def test_authenticatedClientMayRelay(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.send(proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode())
        self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<friend@other.example>\r\n"), b"250 2.1.5 Ok\r\n"
        )
        self.send(proto, t, b"DATA\r\n")
        self.send(proto, t, b"Subject: out\r\n\r\nhello\r\n.\r\n")
        header = self.queuedContent().split(b"\r\n\r\n")[0]
        self.assertIn(b"(TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))", header)
        self.assertIn(b"with ESMTPSA id", header)


class SubmissionTests(SessionMixin, unittest.TestCase):
    profile = "submission"

    def test_mailNeedsTLSThenAuth(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\n"),
            b"530 5.7.0 Must issue a STARTTLS command first\r\n",
        )
        self.send(proto, t, b"STARTTLS\r\n")
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\n"),
            b"530 5.7.0 Authentication required\r\n",
        )
        self.send(proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode())
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<someone.else@example.test>\r\n"),
            b"553 5.7.1 <someone.else@example.test>: Sender address rejected: "
            b"not owned by user demo@example.test\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"MAIL FROM:<Demo@example.test>\r\n"), b"250 2.1.0 Ok\r\n"
        )
