"""
The IMAP server on a real loopback socket with real TLS, driven by Python's
L{imaplib} in a thread: STARTTLS, LOGIN, SELECT and a byte-exact FETCH.
"""

import imaplib
import os
import socket
import ssl

from twisted.internet import defer, reactor, threads
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest

from mailplat.certs import makeSelfSigned
from mailplat.config import ListenerConfig
from mailplat.imap import IMAPFactory
from mailplat.testing import makeContext
from mailplat.tls import serverContextFactory

ADDRESS = "demo@example.test"
EXTENSIONS = (
    "LITERAL+", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE",
    "CHILDREN", "SPECIAL-USE", "QUOTA", "QUOTA=RES-STORAGE", "CONDSTORE",
    "APPENDLIMIT=67108864",
)
MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: demo@example.test\r\n"
    b"Subject: over TLS\r\n"
    b"\r\n"
    b"line one\r\n"
    b".\r\n"
    b"\r\n"
    b"last line without newline"
)


class TrackingFactory(IMAPFactory):
    """
    Remembers each connection, so the test can wait until the server has
    seen it close.
    """

    def __init__(self, context, listener):
        IMAPFactory.__init__(self, context, listener)
        self.closed = []

    def buildProtocol(self, addr):
        proto = IMAPFactory.buildProtocol(self, addr)
        closed = defer.Deferred()
        self.closed.append(closed)
        connectionLost = proto.connectionLost

        def tracked(reason):
            connectionLost(reason)
            closed.callback(None)

        proto.connectionLost = tracked
        return proto


def clientContext():
    """
    A client TLS context that accepts the test's self-signed certificate.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class LoopbackTestMixin:
    tls = "starttls"

    def setUp(self):
        directory = self.mktemp()
        certificate, key = makeSelfSigned("localhost", os.path.join(directory, "tls"))
        self.ctx = makeContext(
            directory,
            clock=reactor,
            runBlocking=threads.deferToThread,
            tlsOptions=serverContextFactory(certificate, key),
        )
        self.ctx.callFromThread = reactor.callFromThread
        listener = ListenerConfig(
            name="imap", protocol="imap", endpoint="tcp:0", tls=self.tls
        )
        self.factory = TrackingFactory(self.ctx, listener)
        factory = self.factory
        if self.tls == "implicit":
            factory = TLSMemoryBIOFactory(self.ctx.tlsOptions, False, factory)
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)


class STARTTLSLoopbackTests(LoopbackTestMixin, unittest.TestCase):

    def client(self, port):
        """
        Runs in a thread: a whole imaplib session.
        """
        with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
            before = imap.capabilities
            imap.starttls(ssl_context=clientContext())
            after = imap.capabilities
            imap.login(ADDRESS, "demo")
            typ, count = imap.select("INBOX")
            typ, data = imap.fetch("1", "(RFC822.SIZE BODY[])")
            typ, flags = imap.fetch("1", "(FLAGS)")
            imap.logout()
        return before, after, count, data, flags

    @defer.inlineCallbacks
    def test_fetchOverSTARTTLS(self):
        yield threads.deferToThread(self.ctx.store.deliver, ADDRESS, [MESSAGE])
        before, after, count, data, flags = yield threads.deferToThread(
            self.client, self.port.getHost().port
        )
        yield defer.gatherResults(self.factory.closed)

        self.assertEqual(before, ("IMAP4REV1", "STARTTLS", "LOGINDISABLED") + EXTENSIONS)
        self.assertEqual(after, ("IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR") + EXTENSIONS)
        self.assertEqual(count, [b"1"])
        self.assertEqual(
            data[0][0], b"1 (RFC822.SIZE %d BODY[] {%d}" % (len(MESSAGE), len(MESSAGE))
        )
        self.assertEqual(data[0][1], MESSAGE)
        self.assertEqual(data[1], b" FLAGS (\\Seen \\Recent))")
        self.assertEqual(flags, [b"1 (FLAGS (\\Seen \\Recent))"])

    def idleClient(self, port, delivered):
        """
        Runs in a thread: STARTTLS, LOGIN, SELECT, IDLE; wait for the EXISTS
        of a message delivered by another thread, then DONE.
        """
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            reader = raw.makefile("rb")
            reader.readline()
            raw.sendall(b"a STARTTLS\r\n")
            assert reader.readline() == b"a OK Begin TLS negotiation now\r\n"
            with clientContext().wrap_socket(raw) as tls:
                reader = tls.makefile("rb")
                lines = []

                def command(line, until):
                    tls.sendall(line + b"\r\n")
                    while True:
                        lines.append(reader.readline())
                        if lines[-1].startswith(until):
                            return

                command(b"b LOGIN demo@example.test demo", b"b ")
                command(b"c SELECT INBOX", b"c ")
                command(b"d IDLE", b"+ ")
                threads.blockingCallFromThread(reactor, delivered)
                lines.append(reader.readline())
                lines.append(reader.readline())
                command(b"DONE", b"d ")
                command(b"e LOGOUT", b"e ")
        return lines

    @defer.inlineCallbacks
    def test_idle(self):
        """
        A message delivered from another thread while a session idles is
        reported at once, through the folder listener and C{callFromThread}.
        """

        def delivered():
            return threads.deferToThread(self.ctx.store.deliver, ADDRESS, [MESSAGE])

        lines = yield threads.deferToThread(
            self.idleClient, self.port.getHost().port, delivered
        )
        yield defer.gatherResults(self.factory.closed)
        start = lines.index(b"+ idling\r\n")
        self.assertEqual(
            lines[start:],
            [
                b"+ idling\r\n",
                b"* 1 EXISTS\r\n",
                b"* 1 RECENT\r\n",
                b"d OK IDLE terminated\r\n",
                b"* BYE Logging out\r\n",
                b"e OK LOGOUT completed\r\n",
            ],
        )


class ImplicitTLSLoopbackTests(LoopbackTestMixin, unittest.TestCase):
    """
    Port 993 style (RFC 8314): the factory wrapped in TLS from the first byte.
    """

    tls = "implicit"

    def client(self, port):
        with imaplib.IMAP4_SSL(
            "127.0.0.1", port, ssl_context=clientContext(), timeout=30
        ) as imap:
            capabilities = imap.capabilities
            imap.login(ADDRESS, "demo")
            imap.select("INBOX", readonly=True)
            typ, data = imap.fetch("1", "(BODY[])")
            imap.logout()
        return capabilities, data

    @defer.inlineCallbacks
    def test_fetchOverImplicitTLS(self):
        yield threads.deferToThread(self.ctx.store.deliver, ADDRESS, [MESSAGE])
        capabilities, data = yield threads.deferToThread(
            self.client, self.port.getHost().port
        )
        yield defer.gatherResults(self.factory.closed)

        self.assertEqual(capabilities, ("IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR") + EXTENSIONS)
        self.assertEqual(data, [(b"1 (BODY[] {%d}" % (len(MESSAGE),), MESSAGE), b")"])
