"""
POP3 over a real loopback socket with real TLS, driven by Python's poplib:
STLS (port 110 style) and implicit TLS (port 995 style).
"""

import poplib
import ssl

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest

from mailplat.certs import makeSelfSigned
from mailplat.config import ListenerConfig
from mailplat.pop3 import POP3Factory
from mailplat.testing import makeContext
from mailplat.tls import serverContextFactory

USER = "demo@example.test"


def makeMessage():
    """
    A message of a few hundred KiB (several chunks) with many lines that
    begin with a dot.
    """
    lines = [b"From: a@example.test", b"Subject: loopback", b""]
    for n in range(8000):
        lines.append(b"." * (n % 3) + b"line %d of the body, some text to pad it" % n)
    return b"\r\n".join(lines) + b"\r\n"


class TrackingFactory(POP3Factory):
    """
    A L{POP3Factory} that knows when its connections are gone, so the test
    ends with a clean reactor.
    """

    def __init__(self, context, listener):
        POP3Factory.__init__(self, context, listener)
        self.lost = []

    def buildProtocol(self, addr):
        proto = POP3Factory.buildProtocol(self, addr)
        lost = Deferred()
        self.lost.append(lost)
        connectionLost = proto.connectionLost

        def recordLoss(reason):
            connectionLost(reason)
            lost.callback(None)

        proto.connectionLost = recordLoss
        return proto


def clientContext():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(client):
    """
    In a thread: log in on a connected poplib client, fetch message 1, quit.

    @return: C{(capabilities, message bytes)}.
    """
    try:
        capabilities = client.capa()
        client.user(USER)
        client.pass_("demo")
        response, lines, octets = client.retr(1)
        client.quit()
    finally:
        client.close()
    return capabilities, b"".join(line + b"\r\n" for line in lines)


class POP3LoopbackTests(unittest.TestCase):
    def setUp(self):
        directory = self.mktemp()
        tlsOptions = serverContextFactory(
            *makeSelfSigned("localhost", directory + "-tls")
        )
        self.ctx = makeContext(
            directory,
            clock=reactor,
            runBlocking=deferToThread,
            tlsOptions=tlsOptions,
        )
        self.message = makeMessage()
        self.ctx.store.deliver(USER, [self.message])

    def listen(self, tls):
        listener = ListenerConfig("pop3", "pop3", "tcp:0", tls=tls)
        self.factory = TrackingFactory(self.ctx, listener)
        factory = self.factory
        if tls == "implicit":
            factory = TLSMemoryBIOFactory(self.ctx.tlsOptions, False, factory)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @inlineCallbacks
    def check(self, connect):
        capabilities, message = yield deferToThread(connect)
        yield gatherResults(self.factory.lost)
        self.assertIn("USER", capabilities)
        self.assertIn("SASL", capabilities)
        self.assertNotIn("STLS", capabilities)
        self.assertEqual(message, self.message)

    def test_stls(self):
        port = self.listen("starttls")

        def connect():
            client = poplib.POP3("127.0.0.1", port, timeout=30)
            assert "STLS" in client.capa()
            client.stls(clientContext())
            return fetch(client)

        return self.check(connect)

    def test_implicitTLS(self):
        port = self.listen("implicit")

        def connect():
            client = poplib.POP3_SSL(
                "127.0.0.1", port, context=clientContext(), timeout=30
            )
            return fetch(client)

        return self.check(connect)
