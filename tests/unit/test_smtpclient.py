"""
Tests for the outbound SMTP client (L{mailplat.delivery.smtpclient},
L{mailplat.delivery.session}) against a scripted in-memory peer and a fake
clock: no sockets, no real time.
"""

import os

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from mailplat.delivery.session import SMTPSession, SessionError
from mailplat.delivery.smtpclient import SMTPClientProtocol
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, Envelope, Recipient
from mailplat.queue.store import QueueStore, newQueueId
from mailplat.testing import runSynchronously

EHLO = ["peer.example", "PIPELINING", "SIZE 1000", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES"]


class PeerTransport(StringTransport):
    """
    A scripted SMTP server: C{respond(command)} returns the reply lines for a
    command, C{"."} stands for the end of the data.  Replies are handed to
    the client when the test calls L{pump}, so pipelined commands arrive
    together as they would over TCP.
    """

    def __init__(self, respond):
        StringTransport.__init__(self)
        self.respond = respond
        self.commands = []
        self.data = b""
        self.messages = []
        self._inData = False
        self._pending = b""
        self.outbox = []

    def write(self, data):
        StringTransport.write(self, data)
        self._pending += data
        while self._pending:
            if self._inData:
                whole = self.data + self._pending
                if whole.startswith(b".\r\n"):
                    message, rest = b"", whole[3:]
                else:
                    end = whole.find(b"\r\n.\r\n")
                    if end < 0:
                        self.data, self._pending = whole, b""
                        return
                    message, rest = whole[: end + 2], whole[end + 5 :]
                self.messages.append(message)
                self.data, self._pending, self._inData = b"", rest, False
                self._reply(".")
                continue
            nl = self._pending.find(b"\r\n")
            if nl < 0:
                return
            line, self._pending = self._pending[:nl], self._pending[nl + 2 :]
            command = line.decode("utf-8")
            self.commands.append(command)
            self._reply(command)

    autoPump = None

    def _reply(self, command):
        lines = self.respond(command)
        if lines:
            self.outbox.append("".join(l + "\r\n" for l in lines).encode("utf-8"))
            if self.autoPump is not None:
                self.autoPump.dataReceived(self.outbox.pop(0))
            if lines[-1].startswith("354"):
                self._inData = True

    def startTLS(self, options):
        self.tlsStarted = options


def scripted(ehlo=EHLO, rcpt=lambda a: "250 2.1.5 Ok", data="354 go ahead",
             final="250 2.0.0 Ok: queued as X", greeting="220 peer.example ESMTP", helo=None):
    def respond(command):
        verb = command.split(" ")[0].split(":")[0].upper()
        if command == "CONNECT":
            return [greeting]
        if verb == "EHLO":
            if ehlo is None:
                return ["502 5.5.1 no EHLO"]
            return [f"250-{l}" for l in ehlo[:-1]] + [f"250 {ehlo[-1]}"]
        if verb == "HELO":
            return [helo or "250 peer.example"]
        if verb == "MAIL":
            return ["250 2.1.0 Ok"]
        if verb == "RCPT":
            return [rcpt(command.split("<")[1].split(">")[0])]
        if verb == "DATA":
            return [data]
        if command == ".":
            return [final] if final else []
        if verb in ("RSET", "NOOP"):
            return ["250 2.0.0 Ok"]
        if verb == "QUIT":
            return ["221 2.0.0 Bye"]
        return ["502 5.5.2 what?"]

    return respond


class SessionTestMixin:
    def setUp(self):
        self.clock = Clock()
        self.queue = QueueStore(self.mktemp())
        self.queue.create()

    def item(self, content=b"Subject: x\r\n\r\nbody\r\n", recipients=("a@remote.example",),
             sender="s@example.test", params=None, notify="", orcpt=""):
        env = Envelope(
            id=newQueueId(), sender=sender,
            recipients=[Recipient(r, notify=notify, orcpt=orcpt) for r in recipients],
            arrival=1000.0, params=params or {},
        )
        spool = self.queue.spool(env)
        spool.write(content)
        return spool.commit()

    def connect(self, respond, **kw):
        self.transport = PeerTransport(respond)
        protocol = SMTPClientProtocol(self.clock)
        protocol.makeConnection(self.transport)
        self.protocol = protocol
        self.session = SMTPSession(
            protocol, "mx.remote.example", "192.0.2.1", 25, "mail.example.test",
            runSynchronously, loopNames=("mail.example.test",), **kw
        )
        self.transport._reply("CONNECT")
        return self.session

    def pump(self, d):
        for _ in range(1000):
            if not self.transport.outbox:
                break
            self.protocol.dataReceived(self.transport.outbox.pop(0))
        return d

    def open(self, respond, **kw):
        session = self.connect(respond, **kw)
        d = self.pump(session.open())
        self.successResultOf(d)
        return session

    def send(self, session, item):
        recipients = item.envelope.recipients
        return self.successResultOf(self.pump(session.send(item, recipients)))


class SessionTests(SessionTestMixin, unittest.TestCase):
    def test_pipelinedTransaction(self):
        session = self.open(scripted())
        item = self.item(recipients=("a@remote.example", "b@remote.example"))
        results = self.send(session, item)
        self.assertEqual(
            self.transport.commands,
            ["EHLO mail.example.test", f"MAIL FROM:<s@example.test> SIZE={item.size}",
             "RCPT TO:<a@remote.example>", "RCPT TO:<b@remote.example>", "DATA"],
        )
        self.assertEqual(self.transport.messages, [b"Subject: x\r\n\r\nbody\r\n"])
        for r in ("a@remote.example", "b@remote.example"):
            self.assertEqual(results[r].state, DELIVERED)
            self.assertEqual(results[r].status, "2.0.0")
            self.assertEqual(results[r].detail, "250 2.0.0 Ok: queued as X")
            self.assertEqual(results[r].relay, "mx.remote.example[192.0.2.1]:25")
            self.assertEqual(results[r].remoteMTA, "mx.remote.example")
            self.assertEqual(results[r].dsnAction, "")  # the peer does DSN
        self.assertTrue(session.usable)

    def test_mixedRecipientResults(self):
        replies = {"ok@remote.example": "250 2.1.5 Ok",
                   "later@remote.example": "450 4.2.0 mailbox busy",
                   "gone@remote.example": "550 5.1.1 no such user"}
        session = self.open(scripted(rcpt=replies.get))
        item = self.item(recipients=tuple(replies))
        results = self.send(session, item)
        self.assertEqual(
            {r: (v.state, v.status, v.detail) for r, v in results.items()},
            {"ok@remote.example": (DELIVERED, "2.0.0", "250 2.0.0 Ok: queued as X"),
             "later@remote.example": (DEFERRED, "4.2.0", "450 4.2.0 mailbox busy"),
             "gone@remote.example": (FAILED, "5.1.1", "550 5.1.1 no such user")},
        )

    def test_noRecipientAcceptedThenRSET(self):
        session = self.open(scripted(rcpt=lambda a: "550 5.1.1 no", data="554 5.5.1 no valid recipients"))
        results = self.send(session, self.item())
        self.assertEqual(results["a@remote.example"].state, FAILED)
        self.assertEqual(self.transport.commands[-1], "RSET")
        self.assertTrue(session.usable)

    def test_ehloRefusedFallsBackToHelo(self):
        session = self.open(scripted(ehlo=None))
        self.assertFalse(session.esmtp)
        results = self.send(session, self.item())
        self.assertEqual(
            self.transport.commands,
            ["EHLO mail.example.test", "HELO mail.example.test",
             "MAIL FROM:<s@example.test>", "RCPT TO:<a@remote.example>", "DATA"],
        )
        self.assertEqual(results["a@remote.example"].dsnAction, "relayed")

    def test_greeting421(self):
        session = self.connect(scripted(greeting="421 4.3.2 busy, go away"))
        f = self.failureResultOf(self.pump(session.open()), SessionError)
        self.assertEqual(
            (f.value.state, f.value.status, f.value.detail),
            (DEFERRED, "4.3.2", "host mx.remote.example[192.0.2.1] refused to talk "
             "to me: 421 4.3.2 busy, go away"),
        )

    def test_greetingNamesMyselfIsALoop(self):
        session = self.connect(scripted(greeting="220 mail.example.test ESMTP"))
        f = self.failureResultOf(self.pump(session.open()), SessionError)
        self.assertEqual((f.value.state, f.value.status), (FAILED, "5.4.6"))

    def test_sizeCheckedBeforeSending(self):
        session = self.open(scripted())
        results = self.send(session, self.item(content=b"x" * 1001))
        self.assertEqual(
            (results["a@remote.example"].state, results["a@remote.example"].status),
            (FAILED, "5.3.4"),
        )
        self.assertNotIn("MAIL", " ".join(self.transport.commands))

    def test_552Bounces(self):
        session = self.open(scripted(final="552 5.3.4 message too big"))
        results = self.send(session, self.item())
        self.assertEqual(
            (results["a@remote.example"].state, results["a@remote.example"].status),
            (FAILED, "5.3.4"),
        )

    def test_smtputf8RequiredButNotOffered(self):
        """
        RFC 6531 3.2: a message needing SMTPUTF8 is not sent to a peer that
        does not offer it: it bounces with 5.6.7.
        """
        session = self.open(scripted())
        item = self.item(recipients=("jörg@remote.example",), params={"smtputf8": True})
        results = self.send(session, item)
        self.assertEqual(
            (results["jörg@remote.example"].state, results["jörg@remote.example"].status,
             results["jörg@remote.example"].detail),
            (FAILED, "5.6.7", "SMTPUTF8 is required, but was not offered by host "
             "mx.remote.example[192.0.2.1]"),
        )
        # An all-ASCII message that asked for SMTPUTF8 goes without it.
        results = self.send(session, self.item(params={"smtputf8": True}))
        self.assertEqual(results["a@remote.example"].state, DELIVERED)

    def test_smtputf8AndBodyPassedOn(self):
        session = self.open(scripted(ehlo=EHLO + ["SMTPUTF8"]))
        item = self.item(content="Subject: grüße\r\n\r\nü\r\n".encode(),
                         params={"smtputf8": True, "body": "8BITMIME"})
        self.send(session, item)
        self.assertIn(
            f"MAIL FROM:<s@example.test> SIZE={item.size} BODY=8BITMIME SMTPUTF8",
            self.transport.commands,
        )

    def test_dsnParametersPassedOn(self):
        session = self.open(scripted())
        item = self.item(params={"ret": "HDRS", "envid": "id+1 x"}, notify="SUCCESS,FAILURE",
                         orcpt="rfc822;Orig=@remote.example")
        self.send(session, item)
        self.assertIn(
            f"MAIL FROM:<s@example.test> SIZE={item.size} RET=HDRS ENVID=id+2B1+20x",
            self.transport.commands,
        )
        self.assertIn(
            "RCPT TO:<a@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig+3D@remote.example",
            self.transport.commands,
        )

    def test_dsnParametersNotSentWithoutDSN(self):
        session = self.open(scripted(ehlo=["peer.example", "PIPELINING"]))
        self.send(session, self.item(params={"ret": "HDRS"}, notify="NEVER"))
        self.assertEqual(self.transport.commands[1:3],
                         ["MAIL FROM:<s@example.test>", "RCPT TO:<a@remote.example>"])

    def test_dotAtEveryChunkBoundary(self):
        """
        Read in 4-byte chunks, a message with a "." at the start of every
        chunk arrives whole: the peer sees every line, none ends the data.
        """
        content = b"".join(b".%02d\r" % n + b"\n" for n in range(30))
        session = self.open(scripted())
        session.chunkSize = 5
        results = self.send(session, self.item(content=content))
        self.assertEqual(results["a@remote.example"].state, DELIVERED)
        [wire] = self.transport.messages
        self.assertEqual(wire, content.replace(b"\n.", b"\n..").replace(b".00", b"..00", 1))
        unstuffed = b"\r\n".join(
            l[1:] if l.startswith(b".") else l for l in wire.split(b"\r\n")
        )
        self.assertEqual(unstuffed, content)

    def test_replyTimeout(self):
        """
        RFC 5321 4.5.3.2.6: the reply to the final dot may take 10 minutes;
        then the recipient is deferred and the session is dropped.
        """
        session = self.open(scripted(final=None))
        item = self.item()
        d = self.pump(session.send(item, item.envelope.recipients))
        self.assertNoResult(d)
        self.clock.advance(599)
        self.assertNoResult(d)
        self.clock.advance(1)
        results = self.successResultOf(d)
        self.assertEqual(
            (results["a@remote.example"].state, results["a@remote.example"].status,
             results["a@remote.example"].detail),
            (DEFERRED, "4.4.2", "timeout after 600s with mx.remote.example[192.0.2.1] "
             "while waiting for the reply to the end of data"),
        )
        self.assertFalse(session.usable)

    def test_connectionLostMidData(self):
        session = self.open(scripted(final=None))
        item = self.item()
        d = self.pump(session.send(item, item.envelope.recipients))
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost("reset")))
        results = self.successResultOf(d)
        self.assertEqual(results["a@remote.example"].state, DEFERRED)
        self.assertEqual(results["a@remote.example"].status, "4.4.2")

    def test_tlsRequiredButNotOffered(self):
        session = self.connect(scripted(), tlsMode="encrypt")
        f = self.failureResultOf(self.pump(session.open()), SessionError)
        self.assertEqual((f.value.state, f.value.status), (DEFERRED, "4.7.4"))

    def test_starttlsWhenOffered(self):
        from twisted.internet import defer

        session = self.connect(scripted(ehlo=EHLO + ["STARTTLS"]), tlsMode="may",
                               tlsOptions=lambda host: defer.succeed("tls-options"))
        original = self.transport.respond

        def respond(command):
            if command == "STARTTLS":
                return ["220 2.0.0 go ahead"]
            return original(command)

        self.transport.respond = respond
        self.successResultOf(self.pump(session.open()))
        self.assertEqual(self.transport.tlsStarted, "tls-options")
        self.assertEqual(
            self.transport.commands,
            ["EHLO mail.example.test", "STARTTLS", "EHLO mail.example.test"],
        )

    def test_authNeedsTLS(self):
        session = self.connect(scripted(ehlo=EHLO + ["AUTH PLAIN"]), tlsMode="none",
                               auth=("u", "p"))
        f = self.failureResultOf(self.pump(session.open()), SessionError)
        self.assertEqual(f.value.status, "4.7.0")
        self.assertNotIn("AUTH", " ".join(self.transport.commands))
