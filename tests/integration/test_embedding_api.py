"""
The embedding API of MailplatService, in-process with the real reactor:
submit(), events, users and aliases at run time.
"""

import os
import socket

from twisted.internet import defer
from twisted.trial import unittest

from mailplat.aliases import AliasFileError
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED
from mailplat.service import MailplatService
from mailplat.testing import cachedHash


def closedPort():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EmbeddingAPITests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        # Outbound mail goes to a closed loopback port: deferred, no DNS.
        self.service = MailplatService.fromTOML(
            'hostname = "mail.example.test"\n'
            '[domains]\nlocal = ["example.test"]\npostmaster = "demo@example.test"\n'
            'aliases_file = "aliases"\n'
            '[auth]\nfailure_delay = 0\n'
            f'[smarthost]\nhost = "127.0.0.1"\nport = {closedPort()}\ntls = "none"\n'
            '[listen.smtp]\nprotocol = "smtp"\nendpoint = "tcp:0:interface=127.0.0.1"\n'
            'tls = "none"\n',
            self.dir,
        )
        self.service.context.users.setPassword("demo@example.test", cachedHash("demo"))
        self.events = []
        self.unsubscribe = self.service.subscribe(self.events.append)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def test_submitAndEvents(self):
        yield self.service.addUser("new@example.test", "pw")
        yield self.service.setAlias("team@example.test", ["demo@example.test", "new@example.test"])
        results = yield self.service.submit(
            "app@example.test",
            ["team@example.test", "nobody@example.test", "someone@other.example"],
            b"Subject: from python\n\nhello\n",
        )
        self.assertEqual(
            {a: r.state for a, r in results.items()},
            {
                "demo@example.test": DELIVERED,
                "new@example.test": DELIVERED,
                "nobody@example.test": FAILED,
                "someone@other.example": DEFERRED,
            },
        )
        self.assertEqual(results["nobody@example.test"].status, "5.1.1")
        store = self.service.context.store
        folder = yield self.service.context.runBlocking(store.folder, "new@example.test")
        [info] = yield self.service.context.runBlocking(folder.snapshot)
        content = yield self.service.context.runBlocking(folder.read, info)
        self.assertTrue(content.startswith(b"Return-Path: <app@example.test>\r\nReceived: by "))
        self.assertTrue(content.endswith(b"\r\nSubject: from python\r\n\r\nhello\r\n"))
        kinds = sorted((e.kind, e.recipient) for e in self.events)
        self.assertEqual(
            kinds,
            [
                ("accepted", None),
                ("deferred", "someone@other.example"),
                ("delivered", "demo@example.test"),
                ("delivered", "new@example.test"),
                ("newMail", "demo@example.test"),
                ("newMail", "new@example.test"),
            ],
        )
        self.assertEqual(len({e.queueId for e in self.events}), 1)

    @defer.inlineCallbacks
    def test_aliasesAndUsersAtRunTime(self):
        yield self.service.setAlias("one@example.test", ["two@example.test"])
        # A loop is refused and the file stays as it was.
        yield self.assertFailure(
            self.service.setAlias("two@example.test", ["one@example.test"]), AliasFileError
        )
        with open(os.path.join(self.dir, "aliases")) as f:
            self.assertEqual(f.read(), "one@example.test: two@example.test\n")
        yield self.service.removeAlias("one@example.test")
        yield self.assertFailure(self.service.removeAlias("one@example.test"), KeyError)
        yield self.service.addUser("gone@example.test", "pw")
        yield self.service.removeUser("gone@example.test")
        results = yield self.service.submit("", ["gone@example.test"], b"x\n")
        self.assertEqual(results["gone@example.test"].state, FAILED)

    @defer.inlineCallbacks
    def test_eventsStopAfterUnsubscribe(self):
        self.unsubscribe()
        yield self.service.submit("a@b.example", ["demo@example.test"], b"x\n")
        self.assertEqual(self.events, [])
