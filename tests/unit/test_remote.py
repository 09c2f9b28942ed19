"""
Tests for L{mailplat.delivery.remote}: routing, MX fallback, per-destination
concurrency and connection reuse, with a fake resolver, scripted peers and a
fake clock.
"""

import random

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from mailplat.delivery.remote import MXRoute, RemoteDelivery, SmarthostRoute
from mailplat.delivery.smtpclient import SMTPClientProtocol
from mailplat.dns import Resolver
from mailplat.interfaces import IDeliveryTarget
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, Envelope, Recipient
from mailplat.queue.store import QueueStore, newQueueId
from mailplat.testing import runSynchronously
from tests.unit.test_dns import FakeQuery
from tests.unit.test_smtpclient import PeerTransport, scripted

ZONE = {
    "remote.example": [("MX", "10 mx1.remote.example."), ("MX", "20 mx2.remote.example.")],
    "mx1.remote.example": [("A", "192.0.2.1")],
    "mx2.remote.example": [("A", "192.0.2.2")],
    "nullmx.example": [("MX", "0 .")],
    "self.example": [("MX", "10 mail.example.test."), ("MX", "5 mail.example.test.")],
    "backup.example": [("MX", "10 mx1.remote.example."), ("MX", "20 mail.example.test.")],
    "mail.example.test": [("A", "192.0.2.100")],
}


class RemoteDeliveryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.queue = QueueStore(self.mktemp())
        self.queue.create()
        self.resolver = Resolver(
            self.clock, runSynchronously, FakeQuery(ZONE, servfail={"broken.example"}),
            random.Random(0),
        )
        self.peers = {"192.0.2.1": scripted(), "192.0.2.2": scripted()}
        self.connections = []

    def connect(self, address, port):
        respond = self.peers.get(address)
        if respond is None:
            return defer.fail(ConnectionRefusedError("Connection refused"))
        transport = PeerTransport(respond)
        protocol = SMTPClientProtocol(self.clock)
        transport.autoPump = protocol
        protocol.makeConnection(transport)
        transport._reply("CONNECT")
        self.connections.append((address, transport))
        return defer.succeed(protocol)

    def target(self, route=None, **kw):
        route = route or MXRoute(self.resolver, "mail.example.test", 25)
        return RemoteDelivery(
            route, lambda d: d == "example.test", self.clock, runSynchronously,
            "mail.example.test", connect=self.connect, **kw
        )

    def item(self, *recipients):
        env = Envelope(newQueueId(), "s@example.test", [Recipient(r) for r in recipients], 1000.0)
        spool = self.queue.spool(env)
        spool.write(b"Subject: x\r\n\r\nbody\r\n")
        return spool.commit()

    def deliver(self, target, *recipients):
        return self.successResultOf(target.deliver(self.item(*recipients), list(recipients)))

    def test_interface(self):
        target = self.target()
        verifyObject(IDeliveryTarget, target)
        self.assertTrue(target.accepts("x@remote.example"))
        self.assertFalse(target.accepts("x@example.test"))

    def test_firstMXDownSecondTakesIt(self):
        del self.peers["192.0.2.1"]
        results = self.deliver(self.target(), "a@remote.example")
        r = results["a@remote.example"]
        self.assertEqual((r.state, r.relay), (DELIVERED, "mx2.remote.example[192.0.2.2]:25"))

    def test_allMXDown(self):
        self.peers.clear()
        r = self.deliver(self.target(), "a@remote.example")["a@remote.example"]
        self.assertEqual(
            (r.state, r.status, r.detail),
            (DEFERRED, "4.4.1", "connect to mx2.remote.example[192.0.2.2]:25: Connection refused"),
        )

    def test_greeting4xxTriesNext(self):
        self.peers["192.0.2.1"] = scripted(greeting="421 4.7.0 try later")
        r = self.deliver(self.target(), "a@remote.example")["a@remote.example"]
        self.assertEqual((r.state, r.relay), (DELIVERED, "mx2.remote.example[192.0.2.2]:25"))

    def test_dnsOutcomes(self):
        target = self.target()
        cases = {
            "a@nullmx.example": (FAILED, "5.1.10"),
            "a@nosuch.example": (FAILED, "5.1.2"),
            "a@broken.example": (DEFERRED, "4.4.3"),
            "a@self.example": (FAILED, "5.4.6"),
        }
        for rcpt, expected in cases.items():
            r = self.deliver(target, rcpt)[rcpt]
            self.assertEqual((r.state, r.status), expected, rcpt)
        self.assertEqual(self.connections, [])

    def test_backupMXUsesOnlyBetterHosts(self):
        """
        We are a backup MX of backup.example: only the better host is used.
        """
        del self.peers["192.0.2.1"]
        r = self.deliver(self.target(), "a@backup.example")["a@backup.example"]
        self.assertEqual((r.state, r.status), (DEFERRED, "4.4.1"))

    def test_connectionReuse(self):
        """
        Two messages to one destination in a row use one connection; after
        the idle time it is closed with QUIT.
        """
        target = self.target(connectionIdle=2.0)
        self.deliver(target, "a@remote.example")
        self.deliver(target, "b@remote.example")
        [(address, transport)] = self.connections
        self.assertEqual(
            [c for c in transport.commands if c.startswith("MAIL") or c == "QUIT"],
            [c for c in transport.commands if c.startswith("MAIL")],
        )
        self.assertEqual(len([c for c in transport.commands if c.startswith("MAIL")]), 2)
        self.clock.advance(2)
        self.assertEqual(transport.commands[-1], "QUIT")

    def test_perDestinationLimit(self):
        """
        With at most two connections to a destination, a third message
        waits for one of them.
        """
        self.peers["192.0.2.1"] = scripted(final=None)
        target = self.target(maxPerDestination=2)
        ds = [target.deliver(self.item(f"{n}@remote.example"), [f"{n}@remote.example"])
              for n in range(3)]
        self.assertEqual(len(self.connections), 2)
        for d in ds:
            self.assertNoResult(d)
        # The first connection's peer answers the final dot: the waiting
        # message goes over that connection.
        transport = self.connections[0][1]
        transport.respond = scripted()
        transport.autoPump.dataReceived(b"250 2.0.0 Ok\r\n")
        self.assertEqual(self.successResultOf(ds[0])["0@remote.example"].state, DELIVERED)
        self.assertEqual(len(self.connections), 2)
        self.assertEqual(len([c for c in transport.commands if c.startswith("MAIL")]), 2)
        # The second connection's peer answers too; idle connections close.
        second = self.connections[1][1]
        second.respond = scripted()
        second.autoPump.dataReceived(b"250 2.0.0 Ok\r\n")
        for d in ds[1:]:
            self.assertEqual(list(self.successResultOf(d).values())[0].state, DELIVERED)
        self.clock.advance(2)
        self.assertEqual((transport.commands[-1], second.commands[-1]), ("QUIT", "QUIT"))

    def test_messagesPerConnection(self):
        target = self.target(maxMessagesPerConnection=1)
        self.deliver(target, "a@remote.example")
        self.deliver(target, "b@remote.example")
        self.assertEqual(len(self.connections), 2)

    def test_smarthost(self):
        route = SmarthostRoute(self.resolver, "192.0.2.2", 587, "none", domains=("relayed.example",))
        target = self.target(route)
        self.assertTrue(target.accepts("x@relayed.example"))
        self.assertFalse(target.accepts("x@remote.example"))
        r = self.deliver(target, "x@relayed.example")["x@relayed.example"]
        self.assertEqual((r.state, r.relay), (DELIVERED, "192.0.2.2[192.0.2.2]:587"))
