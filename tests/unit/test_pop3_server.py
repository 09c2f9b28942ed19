"""
Tests for L{mailplat.pop3.server}: every reply is asserted exactly.
"""

import base64
import os

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer

from mailplat.config import ListenerConfig
from mailplat.pop3 import POP3Factory
from mailplat.storage.maildir import MaildirStore
from mailplat.testing import makeContext

USER = "demo@example.test"
TLS_OPTIONS = object()

PEER = IPv4Address("TCP", "192.0.2.7", 4321)
PLAINTEXT_REFUSED = (
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
    b"(SSL/TLS) connections.\r\n"
)
CAPA_PLAIN = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
    b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION mailplat\r\n.\r\n"
)
CAPA_TLS = (
    b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
    b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
    b"IMPLEMENTATION mailplat\r\n.\r\n"
)

MSG1 = b"From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n"
MSG2 = (
    b"From: b@example.test\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.leading dot\r\nmiddle . dot\r\n.\r\nlast\r\n"
)
MSG3 = b"Subject: no final newline\r\n\r\nline 1\r\nline 2\r\nline 3"


@implementer(ITLSTransport)
class STLSTransport(StringTransport):
    """
    A transport that can start TLS: afterwards it provides L{ISSLTransport}.
    """

    tlsOptions = None

    def startTLS(self, contextFactory, normal=True):
        self.tlsOptions = contextFactory
        alsoProvides(self, ISSLTransport)


@implementer(ISSLTransport)
class ImplicitTLSTransport(StringTransport):
    """
    A transport under TLS from the first byte.
    """


class PausingTransport(ImplicitTLSTransport):
    """
    A transport whose buffer is "full" after every write of message data.
    """

    def write(self, data):
        StringTransport.write(self, data)
        if self.producer is not None:
            self.producer.pauseProducing()


class POP3ServerTests(unittest.TestCase):
    def setUp(self):
        self.ctx = makeContext(self.mktemp(), tlsOptions=TLS_OPTIONS)
        self.factories = {}

    def deliver(self, *messages):
        for message in messages:
            self.ctx.store.deliver(USER, [message])

    def folder(self):
        return self.ctx.store.folder(USER)

    def connect(self, tls="starttls", transport=None):
        factory = self.factories.get(tls)
        if factory is None:
            listener = ListenerConfig("pop3", "pop3", "tcp:0", tls=tls)
            factory = self.factories[tls] = POP3Factory(self.ctx, listener)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        if transport is None:
            transport = STLSTransport(peerAddress=PEER)
        proto.makeConnection(transport)
        return proto, transport

    def send(self, proto, transport, data):
        """
        Feed C{data} to C{proto}; return what it wrote in response.
        """
        transport.clear()
        proto.dataReceived(data)
        return transport.value()

    def login(self, transport=None):
        proto, transport = self.connect(
            "implicit",
            (
                transport
                if transport is not None
                else ImplicitTLSTransport(peerAddress=PEER)
            ),
        )
        reply = self.send(proto, transport, f"USER {USER}\r\nPASS demo\r\n".encode())
        self.assertEqual(reply, b"+OK\r\n+OK Logged in.\r\n")
        return proto, transport

    def assertReplies(self, proto, transport, data, expected):
        self.assertEqual(self.send(proto, transport, data), expected)

    # -- greeting, CAPA, commands

    def test_greeting(self):
        proto, transport = self.connect()
        self.assertEqual(transport.value(), b"+OK mailplat POP3 server ready\r\n")
        self.assertEqual(proto.state, "AUTHORIZATION")

    def test_capaBeforeTLS(self):
        proto, transport = self.connect()
        self.assertReplies(proto, transport, b"CAPA\r\n", CAPA_PLAIN)

    def test_capaWithoutTLSListener(self):
        """
        A listener with C{tls = "none"} offers no STLS.
        """
        proto, transport = self.connect("none")
        self.assertReplies(
            proto, transport, b"CAPA\r\n", CAPA_PLAIN.replace(b"STLS\r\n", b"")
        )
        self.assertReplies(
            proto, transport, b"STLS\r\n", b"-ERR TLS not available.\r\n"
        )

    def test_capaWithoutCertificate(self):
        """
        Without TLS options, a C{starttls} listener cannot offer STLS.
        """
        self.ctx.tlsOptions = None
        proto, transport = self.connect()
        self.assertNotIn(b"STLS", self.send(proto, transport, b"CAPA\r\n"))

    def test_capaAfterSTLS(self):
        proto, transport = self.connect()
        self.send(proto, transport, b"STLS\r\n")
        self.assertReplies(proto, transport, b"CAPA\r\n", CAPA_TLS)

    def test_capaImplicitTLS(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(proto, transport, b"CAPA\r\n", CAPA_TLS)

    def test_capaInTransaction(self):
        """
        RFC 2449 section 5: the AUTHORIZATION capabilities are listed in the
        TRANSACTION state too.
        """
        proto, transport = self.login()
        self.assertReplies(proto, transport, b"CAPA\r\n", CAPA_TLS)

    def test_caseInsensitiveAndBareLF(self):
        proto, transport = self.connect()
        self.assertReplies(proto, transport, b"cApA\n", CAPA_PLAIN)

    def test_unknownCommand(self):
        proto, transport = self.connect()
        for line in [b"FOO", b"", b"AP0P x", b"\xff\xfe", b"APOP a b", b"_CAPA"]:
            self.assertReplies(
                proto, transport, line + b"\r\n", b"-ERR Unknown command\r\n"
            )

    def test_wrongState(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        for command in [b"STAT", b"LIST", b"UIDL", b"RETR 1", b"TOP 1 1", b"DELE 1"]:
            self.assertReplies(
                proto, transport, command + b"\r\n", b"-ERR Not logged in.\r\n"
            )
        self.assertReplies(
            proto, transport, b"RSET\r\nNOOP\r\n", b"-ERR Not logged in.\r\n" * 2
        )
        proto, transport = self.login()
        for command in [b"USER x", b"PASS y", b"AUTH PLAIN", b"STLS"]:
            self.assertReplies(
                proto, transport, command + b"\r\n", b"-ERR Already logged in.\r\n"
            )

    def test_quitInAuthorization(self):
        proto, transport = self.connect()
        self.assertReplies(proto, transport, b"QUIT\r\nCAPA\r\n", b"+OK Bye\r\n")
        self.assertTrue(transport.disconnecting)

    # -- line length

    def test_lineTooLong(self):
        """
        A line over the limit gets one error; the rest of it is dropped as it
        arrives, never buffered; the next line is read normally.
        """
        proto, transport = self.connect()
        limit = self.ctx.config.access.maxLineLength
        self.assertReplies(
            proto, transport, b"X" * limit + b"\r\n", b"-ERR Unknown command\r\n"
        )
        self.assertReplies(
            proto, transport, b"X" * (limit + 1) + b"\r\n", b"-ERR Line too long\r\n"
        )
        self.assertReplies(
            proto, transport, b"Y" * (limit + 1), b"-ERR Line too long\r\n"
        )
        for _ in range(20):
            self.assertReplies(proto, transport, b"Z" * 1000000, b"")
            self.assertEqual(len(proto._partial), 0)
        self.assertReplies(proto, transport, b"ZZ\r\nCAPA\r\n", CAPA_PLAIN)

    def test_lineTooLongInPieces(self):
        proto, transport = self.connect()
        limit = self.ctx.config.access.maxLineLength
        self.assertReplies(proto, transport, b"N" * limit, b"")
        self.assertReplies(proto, transport, b"N", b"-ERR Line too long\r\n")
        self.assertReplies(
            proto, transport, b"N\r\nNOOP\r\n", b"-ERR Not logged in.\r\n"
        )

    # -- STLS

    def test_stls(self):
        proto, transport = self.connect()
        self.assertReplies(
            proto, transport, b"STLS\r\n", b"+OK Begin TLS negotiation now\r\n"
        )
        self.assertIs(transport.tlsOptions, TLS_OPTIONS)
        self.assertReplies(
            proto,
            transport,
            b"STLS\r\n",
            b"-ERR Command not permitted when TLS active\r\n",
        )

    def test_stlsImplicitTLS(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(
            proto,
            transport,
            b"STLS\r\n",
            b"-ERR Command not permitted when TLS active\r\n",
        )

    def test_stlsDiscardsPipelinedData(self):
        """
        Lines sent after STLS in the same packet were sent in plaintext: they
        are not run, and not kept to be run under TLS (DESIGN section 7).
        """
        proto, transport = self.connect()
        self.assertReplies(
            proto,
            transport,
            f"STLS\r\nUSER {USER}\r\nPASS demo\r\nCAPA\r\n".encode(),
            b"+OK Begin TLS negotiation now\r\n",
        )
        # The USER given in plaintext was forgotten.
        self.assertReplies(
            proto, transport, b"PASS demo\r\n", b"-ERR No username given.\r\n"
        )

    def test_stlsDiscardsPartialLine(self):
        """
        An incomplete line after STLS does not prefix the first line under
        TLS, and an over-long one does not make the server drop that line.
        """
        proto, transport = self.connect()
        self.send(proto, transport, b"STLS\r\nCA")
        self.assertReplies(proto, transport, b"PA\r\n", b"-ERR Unknown command\r\n")
        proto, transport = self.connect()
        limit = self.ctx.config.access.maxLineLength
        self.send(proto, transport, b"STLS\r\n" + b"X" * (limit + 1))
        self.assertReplies(proto, transport, b"CAPA\r\n", CAPA_TLS)

    # -- authentication

    def test_userPassRefusedBeforeTLS(self):
        for tls in ("starttls", "none"):
            proto, transport = self.connect(tls)
            self.assertReplies(
                proto, transport, f"USER {USER}\r\n".encode(), PLAINTEXT_REFUSED
            )
            self.assertReplies(proto, transport, b"PASS demo\r\n", PLAINTEXT_REFUSED)
            plain = base64.b64encode(f"\0{USER}\0demo".encode())
            self.assertReplies(
                proto, transport, b"AUTH PLAIN " + plain + b"\r\n", PLAINTEXT_REFUSED
            )
            self.assertReplies(proto, transport, b"AUTH PLAIN\r\n", PLAINTEXT_REFUSED)
            self.assertEqual(proto.state, "AUTHORIZATION")

    def test_loginAfterSTLS(self):
        self.deliver(MSG1)
        proto, transport = self.connect()
        self.send(proto, transport, b"STLS\r\n")
        self.assertReplies(
            proto,
            transport,
            f"USER {USER}\r\nPASS demo\r\nSTAT\r\n".encode(),
            b"+OK\r\n+OK Logged in.\r\n+OK 1 %d\r\n" % len(MSG1),
        )
        self.assertEqual(proto.state, "TRANSACTION")

    def test_loginCaseInsensitiveCommands(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(
            proto,
            transport,
            b"user DEMO@Example.TEST\r\npass demo\r\n",
            b"+OK\r\n+OK Logged in.\r\n",
        )

    def assertLoginFails(self, user, password):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(
            proto,
            transport,
            f"USER {user}\r\nPASS {password}\r\nCAPA\r\n".encode(),
            b"+OK\r\n",
        )
        # The answer, and the lines after it, wait for the failure delay.
        self.assertEqual(transport.producerState, "paused")
        transport.clear()
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(
            transport.value(), b"-ERR [AUTH] Authentication failed.\r\n" + CAPA_TLS
        )
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(proto.state, "AUTHORIZATION")
        # PASS needs a new USER.
        self.assertReplies(
            proto, transport, b"PASS demo\r\n", b"-ERR No username given.\r\n"
        )

    def test_wrongPassword(self):
        self.assertLoginFails(USER, "wrong")

    def test_unknownUser(self):
        self.assertLoginFails("nobody@example.test", "demo")

    def test_passWithSpaces(self):
        self.assertLoginFails(USER, "demo with spaces")

    def test_userWithoutName(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(proto, transport, b"USER\r\n", b"-ERR Syntax error\r\n")

    def test_authPlainInitialResponse(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        plain = base64.b64encode(f"\0{USER}\0demo".encode())
        self.assertReplies(
            proto, transport, b"AUTH PLAIN " + plain + b"\r\n", b"+OK Logged in.\r\n"
        )
        self.assertEqual(proto.state, "TRANSACTION")

    def test_authPlainContinuation(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(proto, transport, b"auth plain\r\n", b"+ \r\n")
        plain = base64.b64encode(f"{USER}\0{USER}\0demo".encode())
        self.assertReplies(proto, transport, plain + b"\r\n", b"+OK Logged in.\r\n")

    def test_authPlainWrongPassword(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        plain = base64.b64encode(f"\0{USER}\0nope".encode())
        self.assertReplies(proto, transport, b"AUTH PLAIN " + plain + b"\r\n", b"")
        transport.clear()
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(transport.value(), b"-ERR [AUTH] Authentication failed.\r\n")

    def test_authPlainOtherIdentity(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        plain = base64.b64encode(f"other@example.test\0{USER}\0demo".encode())
        self.assertReplies(
            proto,
            transport,
            b"AUTH PLAIN " + plain + b"\r\n",
            b"-ERR [AUTH] Authentication failed.\r\n",
        )

    def test_authPlainCancelled(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.send(proto, transport, b"AUTH PLAIN\r\n")
        self.assertReplies(
            proto, transport, b"*\r\n", b"-ERR Authentication cancelled.\r\n"
        )
        self.assertReplies(proto, transport, b"NOOP\r\n", b"-ERR Not logged in.\r\n")

    def test_authPlainBadData(self):
        proto, transport = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        cases = [
            (b"AUTH PLAIN !!!!\r\n", b"-ERR Invalid base64 data.\r\n"),
            (b"AUTH PLAIN =\r\n", b"-ERR Invalid PLAIN response.\r\n"),
            (
                b"AUTH PLAIN " + base64.b64encode(b"a\0b") + b"\r\n",
                b"-ERR Invalid PLAIN response.\r\n",
            ),
            (
                b"AUTH CRAM-MD5\r\n",
                b"-ERR [AUTH] Unsupported authentication mechanism.\r\n",
            ),
            (b"AUTH PLAIN a b\r\n", b"-ERR Syntax error\r\n"),
            (b"AUTH\r\n", b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"),
        ]
        for line, reply in cases:
            self.assertReplies(proto, transport, line, reply)

    def test_loginLogs(self):
        with capturedLogs() as events:
            self.login()
            self.assertLoginFails(USER, "wrong")
        texts = [e["log_format"].format(**e) for e in events if "peer" in e]
        self.assertIn(f"pop3: {USER} logged in from 192.0.2.7 (0 messages)", texts)
        self.assertIn(f"pop3: failed login for '{USER}' from 192.0.2.7", texts)

    # -- locking

    def test_inUse(self):
        proto1, transport1 = self.login()
        proto2, transport2 = self.connect(
            "implicit", ImplicitTLSTransport(peerAddress=PEER)
        )
        self.assertReplies(
            proto2,
            transport2,
            f"USER {USER}\r\nPASS demo\r\n".encode(),
            b"+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n",
        )
        self.assertEqual(proto2.state, "AUTHORIZATION")
        # Another listener (another factory) of the same store shares the lock.
        proto3, transport3 = self.connect("starttls")
        self.send(proto3, transport3, b"STLS\r\n")
        self.assertReplies(
            proto3,
            transport3,
            f"USER {USER}\r\nPASS demo\r\n".encode(),
            b"+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n",
        )
        self.assertReplies(proto1, transport1, b"QUIT\r\n", b"+OK Logging out.\r\n")
        proto1.connectionLost(None)
        self.assertReplies(
            proto2,
            transport2,
            f"USER {USER}\r\nPASS demo\r\n".encode(),
            b"+OK\r\n+OK Logged in.\r\n",
        )

    def test_lockReleasedOnConnectionLost(self):
        proto, transport = self.login()
        proto.connectionLost(None)
        self.login()

    # -- listing

    def test_statListUidl(self):
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        uids = [m.uid for m in self.folder().snapshot()]
        validity = self.folder().uidValidity
        uidl = [b"%08X%08X" % (uid, validity) for uid in uids]
        size = len(MSG1) + len(MSG2)
        self.assertReplies(proto, transport, b"STAT\r\n", b"+OK 2 %d\r\n" % size)
        self.assertReplies(
            proto,
            transport,
            b"LIST\r\n",
            b"+OK 2 messages (%d octets)\r\n1 %d\r\n2 %d\r\n.\r\n"
            % (size, len(MSG1), len(MSG2)),
        )
        self.assertReplies(proto, transport, b"LIST 2\r\n", b"+OK 2 %d\r\n" % len(MSG2))
        self.assertReplies(
            proto,
            transport,
            b"UIDL\r\n",
            b"+OK Unique-ID listing follows\r\n1 %s\r\n2 %s\r\n.\r\n" % tuple(uidl),
        )
        self.assertReplies(proto, transport, b"UIDL 1\r\n", b"+OK 1 %s\r\n" % uidl[0])
        self.assertReplies(proto, transport, b"NOOP\r\n", b"+OK\r\n")

    def test_emptyMaildrop(self):
        proto, transport = self.login()
        self.assertReplies(proto, transport, b"STAT\r\n", b"+OK 0 0\r\n")
        self.assertReplies(
            proto, transport, b"LIST\r\n", b"+OK 0 messages (0 octets)\r\n.\r\n"
        )
        self.assertReplies(
            proto, transport, b"UIDL\r\n", b"+OK Unique-ID listing follows\r\n.\r\n"
        )

    def test_badMessageNumbers(self):
        self.deliver(MSG1)
        proto, transport = self.login()
        cases = [
            (b"LIST 0", b"-ERR No such message"),
            (b"LIST 2", b"-ERR No such message"),
            (b"LIST 99999999999999999999", b"-ERR No such message"),
            (b"LIST x", b"-ERR Syntax error"),
            (b"LIST -1", b"-ERR Syntax error"),
            (b"LIST 1 2", b"-ERR Syntax error"),
            (b"UIDL 2", b"-ERR No such message"),
            (b"RETR", b"-ERR Syntax error"),
            (b"RETR 2", b"-ERR No such message"),
            (b"TOP 1", b"-ERR Syntax error"),
            (b"TOP 1 x", b"-ERR Syntax error"),
            (b"TOP 2 1", b"-ERR No such message"),
            (b"DELE", b"-ERR Syntax error"),
            (b"DELE 5", b"-ERR No such message"),
        ]
        for line, reply in cases:
            self.assertReplies(proto, transport, line + b"\r\n", reply + b"\r\n")

    def test_snapshotIsFixed(self):
        """
        Message numbers refer to the snapshot taken at login (RFC 1939
        section 5): a message delivered meanwhile is not listed.
        """
        self.deliver(MSG1)
        proto, transport = self.login()
        self.deliver(MSG2)
        self.assertReplies(proto, transport, b"STAT\r\n", b"+OK 1 %d\r\n" % len(MSG1))

    # -- RETR and TOP

    def test_retr(self):
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\n",
            b"+OK %d octets\r\n" % len(MSG1) + MSG1 + b".\r\n",
        )
        stuffed = (
            b"From: b@example.test\r\nSubject: dots\r\n\r\n"
            b"..\r\n...\r\n..leading dot\r\nmiddle . dot\r\n..\r\nlast\r\n"
        )
        self.assertReplies(
            proto,
            transport,
            b"RETR 2\r\n",
            b"+OK %d octets\r\n" % len(MSG2) + stuffed + b".\r\n",
        )
        self.assertIsNone(transport.producer)

    def test_retrWithoutFinalNewline(self):
        self.deliver(MSG3)
        proto, transport = self.login()
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\n",
            b"+OK %d octets\r\n" % len(MSG3) + MSG3 + b"\r\n.\r\n",
        )

    def test_retrDotAtEveryChunkBoundary(self):
        """
        With a "." starting a line at every chunk boundary, every one is
        stuffed: none can end the response early.
        """
        line = b".dot-line\r\n"
        message = b"Subject: xxxxxxxxx\r\n\r\n" + line * 50
        self.assertEqual(len(message) % len(line), 0)
        self.deliver(message)
        proto, transport = self.login()
        proto.chunkSize = len(line)
        expected = message.replace(b"\n.", b"\n..")
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\n",
            b"+OK %d octets\r\n" % len(message) + expected + b".\r\n",
        )
        for size in range(1, 24):
            proto.chunkSize = size
            self.assertReplies(
                proto,
                transport,
                b"RETR 1\r\n",
                b"+OK %d octets\r\n" % len(message) + expected + b".\r\n",
            )

    def test_retrFollowsFlagRename(self):
        """
        A message renamed by an IMAP flag change is still retrieved.
        """
        self.deliver(MSG1)
        proto, transport = self.login()
        info = self.folder().snapshot()[0]
        self.folder().setFlags(info, {"\\Seen"})
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\n",
            b"+OK %d octets\r\n" % len(MSG1) + MSG1 + b".\r\n",
        )

    def test_retrGone(self):
        self.deliver(MSG1)
        proto, transport = self.login()
        self.folder().remove(self.folder().snapshot())
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\n",
            b"-ERR [SYS/TEMP] Message was removed by another session.\r\n",
        )

    def test_retrBackPressure(self):
        """
        While the transport's buffer is full, no more of the message is read.
        """
        self.deliver(MSG2)
        proto, transport = self.login(PausingTransport(peerAddress=PEER))
        proto.chunkSize = 10
        self.assertReplies(
            proto,
            transport,
            b"RETR 1\r\nNOOP\r\n",
            b"+OK %d octets\r\n" % len(MSG2) + MSG2[:10],
        )
        out = transport.value()
        while transport.producer is not None:
            transport.producer.resumeProducing()
            self.assertLessEqual(len(transport.value()) - len(out), 2 * proto.chunkSize)
            out = transport.value()
        self.assertTrue(out.endswith(b"last\r\n.\r\n+OK\r\n"))

    def test_top(self):
        self.deliver(MSG2, MSG3)
        proto, transport = self.login()
        header = b"From: b@example.test\r\nSubject: dots\r\n\r\n"
        self.assertReplies(
            proto,
            transport,
            b"TOP 1 0\r\n",
            b"+OK Top of message follows\r\n" + header + b".\r\n",
        )
        self.assertReplies(
            proto,
            transport,
            b"TOP 1 3\r\n",
            b"+OK Top of message follows\r\n"
            + header
            + b"..\r\n...\r\n..leading dot\r\n.\r\n",
        )
        self.assertReplies(
            proto,
            transport,
            b"TOP 2 100\r\n",
            b"+OK Top of message follows\r\n" + MSG3 + b"\r\n.\r\n",
        )
        self.assertReplies(
            proto,
            transport,
            b"TOP 2 99999999999999999999999\r\n",
            b"+OK Top of message follows\r\n" + MSG3 + b"\r\n.\r\n",
        )

    # -- DELE, RSET, QUIT

    def test_deleRset(self):
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        self.assertReplies(
            proto, transport, b"DELE 1\r\n", b"+OK Marked to be deleted.\r\n"
        )
        for line in [b"DELE 1", b"RETR 1", b"TOP 1 0", b"LIST 1", b"UIDL 1"]:
            self.assertReplies(
                proto, transport, line + b"\r\n", b"-ERR Message already deleted\r\n"
            )
        self.assertReplies(proto, transport, b"STAT\r\n", b"+OK 1 %d\r\n" % len(MSG2))
        self.assertReplies(
            proto,
            transport,
            b"LIST\r\n",
            b"+OK 1 messages (%d octets)\r\n2 %d\r\n.\r\n" % (len(MSG2), len(MSG2)),
        )
        total = len(MSG1) + len(MSG2)
        self.assertReplies(
            proto,
            transport,
            b"RSET\r\n",
            b"+OK maildrop has 2 messages (%d octets)\r\n" % total,
        )
        self.assertReplies(proto, transport, b"STAT\r\n", b"+OK 2 %d\r\n" % total)
        self.assertReplies(proto, transport, b"QUIT\r\n", b"+OK Logging out.\r\n")
        self.assertEqual(len(self.folder().snapshot()), 2)

    def test_deleQuitRemoves(self):
        self.deliver(MSG1, MSG2, MSG3)
        paths = [m.path for m in self.folder().snapshot()]
        proto, transport = self.login()
        with capturedLogs() as events:
            self.assertReplies(
                proto,
                transport,
                b"DELE 1\r\nDELE 3\r\nQUIT\r\nSTAT\r\n",
                b"+OK Marked to be deleted.\r\n" * 2
                + b"+OK Logging out, 2 messages deleted.\r\n",
            )
        self.assertTrue(transport.disconnecting)
        self.assertEqual([os.path.exists(p) for p in paths], [False, True, False])
        self.assertEqual([m.path for m in self.folder().snapshot()], [paths[1]])
        texts = [e["log_format"].format(**e) for e in events]
        self.assertIn(f"pop3: {USER} quit from 192.0.2.7, 2 messages deleted", texts)
        # The lock is free for the next session.
        proto.connectionLost(None)
        self.login()

    def test_deleThenDropRemovesNothing(self):
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        self.send(proto, transport, b"DELE 1\r\nDELE 2\r\n")
        proto.connectionLost(None)
        self.assertEqual(len(self.folder().snapshot()), 2)
        proto, transport = self.login()
        self.assertReplies(
            proto, transport, b"STAT\r\n", b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
        )

    def test_deleThenTimeoutRemovesNothing(self):
        self.deliver(MSG1)
        proto, transport = self.login()
        self.send(proto, transport, b"DELE 1\r\n")
        self.ctx.clock.advance(self.ctx.config.access.pop3Timeout)
        proto.connectionLost(None)
        self.assertEqual(len(self.folder().snapshot()), 1)

    def test_uidlStable(self):
        """
        UIDL strings are the same in a later session and after an IMAP flag
        change.
        """
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        first = self.send(proto, transport, b"UIDL\r\n")
        self.send(proto, transport, b"QUIT\r\n")
        proto.connectionLost(None)
        folder = self.folder()
        for info in folder.snapshot():
            folder.setFlags(info, {"\\Seen", "\\Flagged"})
        proto, transport = self.login()
        self.assertReplies(proto, transport, b"UIDL\r\n", first)

    def test_uidlStableAcrossRestart(self):
        """
        UIDL strings come from the index, so a new store over the same files
        (a restart) gives the same ones, in Dovecot's %08Xu%08Xv form.
        """
        self.deliver(MSG1, MSG2)
        proto, transport = self.login()
        first = self.send(proto, transport, b"UIDL\r\n")
        self.send(proto, transport, b"QUIT\r\n")
        proto.connectionLost(None)
        validity = self.folder().uidValidity
        self.assertEqual(
            first,
            b"+OK Unique-ID listing follows\r\n1 00000001%08X\r\n2 00000002%08X\r\n.\r\n"
            % (validity, validity),
        )
        self.ctx.store = MaildirStore(self.ctx.config.storage.path)
        self.ctx.portal.realm.store = self.ctx.store
        self.factories = {}
        proto, transport = self.login()
        self.assertReplies(proto, transport, b"UIDL\r\n", first)

    # -- timeout

    def test_timeout(self):
        proto, transport = self.connect()
        timeout = self.ctx.config.access.pop3Timeout
        self.ctx.clock.advance(timeout - 1)
        self.send(proto, transport, b"CAPA\r\n")
        self.ctx.clock.advance(timeout - 1)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        self.ctx.clock.advance(1)
        self.assertEqual(transport.value(), b"-ERR Disconnected for inactivity.\r\n")
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(None)
        self.assertEqual(self.ctx.clock.getDelayedCalls(), [])
