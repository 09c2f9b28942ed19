"""
L{mailplat._net.writeNow} over real TCP on 127.0.0.1: bytes sent at once and
bytes queued by the transport arrive complete and in order, also when the
socket buffer fills up.
"""

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.trial import unittest

from mailplat._net import writeNow

BIG = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than a socket buffer


class Writer(protocol.Protocol):
    def connectionMade(self):
        writeNow(self.transport, b"220 first\r\n")
        # Sent in part at once, the rest queued.
        writeNow(self.transport, BIG)
        writeNow(self.transport, b"tail\r\n")
        self.transport.write(b"queued by twisted\r\n")
        writeNow(self.transport, b"after the queued line\r\n")
        self.transport.loseConnection()


class Reader(protocol.Protocol):
    def __init__(self):
        self.data = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.data))


class WriteNowTCPTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_orderAndCompleteness(self):
        factory = protocol.Factory.forProtocol(Writer)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        reader = Reader()
        yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reader
        )
        received = yield reader.done
        self.assertEqual(
            received,
            b"220 first\r\n" + BIG
            + b"tail\r\nqueued by twisted\r\nafter the queued line\r\n",
        )
