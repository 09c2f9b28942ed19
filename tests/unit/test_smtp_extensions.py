"""
SMTP extensions and limits: CHUNKING, DSN, SMTPUTF8, aliases and friends,
VRFY, connection limits, the greeting pause and the session deadline.
"""

import os

from twisted.internet.address import IPv4Address
from twisted.trial import unittest

from mailplat.testing import cachedHash
from tests.tlsfakes import StartTLSTransport
from tests.unit.test_smtp_server import PEER, SessionMixin


def transaction(proto, t, send, rcpt=b"demo@example.test", mail=b"MAIL FROM:<a@b.example>"):
    send(proto, t, b"EHLO c\r\n" + mail + b"\r\nRCPT TO:<" + rcpt + b">\r\n")


class ChunkingTests(SessionMixin, unittest.TestCase):
    def test_chunksAndLast(self):
        proto, t = self.connect()
        transaction(proto, t, self.send)
        self.assertEqual(
            self.send(proto, t, b"BDAT 14\r\nSubject: x\r\n\r\n"),
            b"250 2.0.0 14 octets received\r\n",
        )
        out = self.send(proto, t, b"BDAT 9 LAST\r\nbody\nend\n")
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(out, f"250 2.0.0 Ok: queued as {item.id}\r\n".encode())
        body = self.queuedContent().split(b"\r\n\r\n", 1)[1]
        # No dot-unstuffing in BDAT; bare LF stored as CRLF.
        self.assertEqual(body, b"body\r\nend\r\n")

    def test_pipelinedChunksInOnePacket(self):
        proto, t = self.connect()
        out = self.send(
            proto, t,
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<demo@example.test>\r\n"
            b"BDAT 5\r\n.x\r\n\rBDAT 0 LAST\r\nNOOP\r\n",
        )
        item = self.ctx.runner.enqueued[0]
        self.assertTrue(
            out.endswith(
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 5 octets received\r\n"
                + f"250 2.0.0 Ok: queued as {item.id}\r\n".encode()
                + b"250 2.0.0 Ok\r\n"
            )
        )
        # A message that does not end with CRLF gets one.
        self.assertTrue(self.queuedContent().endswith(b".x\r\n\r\r\n"))

    def test_dataAfterBdat(self):
        proto, t = self.connect()
        transaction(proto, t, self.send)
        self.send(proto, t, b"BDAT 3\r\nab\n")
        self.assertEqual(
            self.send(proto, t, b"DATA\r\n"), b"503 5.5.1 Error: DATA after BDAT\r\n"
        )

    def test_bdatWithoutTransactionConsumesChunk(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"BDAT 12 LAST\r\nNOOP\r\nNOOP\r\nNOOP\r\n"),
            b"503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n",
        )
        self.assertEqual(self.tmpFiles(), [])

    def test_bdatSyntaxClosesSession(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, b"BDAT lots\r\n"),
            b"501 5.5.4 Syntax: BDAT size [LAST]; closing the session\r\n",
        )
        self.assertTrue(t.disconnecting)

    def test_bdatTooBig(self):
        self.overrides = {"smtp": {"max_message_size": 100}}
        self.setUp()
        proto, t = self.connect()
        transaction(proto, t, self.send)
        self.assertEqual(
            self.send(proto, t, b"BDAT 200 LAST\r\n" + b"x" * 200),
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
        )
        self.assertEqual(self.tmpFiles(), [])
        self.assertEqual(self.activeFiles(), [])


class DSNTests(SessionMixin, unittest.TestCase):
    def test_parametersStored(self):
        proto, t = self.connect()
        self.send(
            proto, t,
            b"EHLO c\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B314 BODY=8BITMIME\r\n"
            b"RCPT TO:<demo@example.test> NOTIFY=SUCCESS,FAILURE "
            b"ORCPT=rfc822;Demo+2Btag@example.test\r\nDATA\r\n",
        )
        self.send(proto, t, b"Subject: dsn\r\n\r\nx\r\n.\r\n")
        env = self.ctx.runner.enqueued[0].envelope
        self.assertEqual(env.params, {"ret": "HDRS", "envid": "QQ+314", "body": "8BITMIME"})
        [r] = env.recipients
        self.assertEqual((r.address, r.notify, r.orcpt), (
            "demo@example.test", "SUCCESS,FAILURE", "rfc822;Demo+tag@example.test"))

    def test_defaultOrcptIsTheRecipientAsGiven(self):
        proto, t = self.connect()
        transaction(proto, t, self.send, rcpt=b"Demo@Example.test")
        self.send(proto, t, b"DATA\r\nx\r\n.\r\n")
        [r] = self.ctx.runner.enqueued[0].envelope.recipients
        self.assertEqual((r.address, r.orcpt, r.notify), (
            "demo@example.test", "rfc822;Demo@example.test", ""))

    def test_badParameters(self):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        for cmd, name in [
            (b"MAIL FROM:<a@b.example> RET=ALL", b"RET"),
            (b"MAIL FROM:<a@b.example> ENVID=a+zz", b"ENVID"),
            (b"MAIL FROM:<a@b.example> ENVID=" + b"x" * 101, b"ENVID"),
            (b"MAIL FROM:<a@b.example> BODY=BINARYMIME", b"BODY"),
            (b"MAIL FROM:<a@b.example> SMTPUTF8=yes", b"SMTPUTF8"),
        ]:
            self.assertEqual(
                self.send(proto, t, cmd + b"\r\n"),
                b"555 5.5.4 Unsupported or malformed parameter: " + name + b"\r\n",
            )
        self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n")
        for cmd, name in [
            (b"NOTIFY=NEVER,DELAY", b"NOTIFY"),
            (b"NOTIFY=SOMETIMES", b"NOTIFY"),
            (b"NOTIFY=SUCCESS,SUCCESS", b"NOTIFY"),
            (b"ORCPT=nosemicolon", b"ORCPT"),
            (b"ORCPT=rfc822;bad+Q", b"ORCPT"),
        ]:
            self.assertEqual(
                self.send(proto, t, b"RCPT TO:<demo@example.test> " + cmd + b"\r\n"),
                b"555 5.5.4 Unsupported or malformed parameter: " + name + b"\r\n",
            )


class UTF8Tests(SessionMixin, unittest.TestCase):
    def test_utf8AddressesNeedSMTPUTF8(self):
        self.ctx.users.setPassword("jürgen@example.test", cachedHash("pw"))
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\n")
        self.assertEqual(
            self.send(proto, t, "MAIL FROM:<müller@b.example>\r\n".encode()),
            b"553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter on MAIL\r\n",
        )
        self.send(proto, t, b"MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            self.send(proto, t, "RCPT TO:<jürgen@example.test>\r\n".encode()),
            b"553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter on MAIL\r\n",
        )
        self.send(proto, t, b"RSET\r\n")
        self.assertEqual(
            self.send(proto, t, "MAIL FROM:<müller@bücher.example> SMTPUTF8\r\n".encode()),
            b"250 2.1.0 Ok\r\n",
        )
        self.assertEqual(
            self.send(proto, t, "RCPT TO:<Jürgen@example.test>\r\n".encode()),
            b"250 2.1.5 Ok\r\n",
        )
        self.send(proto, t, b"DATA\r\n")
        self.send(proto, t, "Subject: grüße\r\n\r\nx\r\n.\r\n".encode())
        item = self.ctx.runner.enqueued[0]
        self.assertEqual(item.envelope.sender, "müller@bücher.example")
        self.assertEqual(item.envelope.recipients[0].address, "jürgen@example.test")
        self.assertIn(b"with UTF8SMTP id", self.queuedContent())


class AddressTests(SessionMixin, unittest.TestCase):
    overrides = {
        "domains": {
            "local": ["example.test"],
            "virtual": ["alias.example"],
            "aliases_file": "aliases",
            "postmaster": "demo@example.test",
        }
    }

    def setUp(self):
        SessionMixin.setUp(self)
        self.ctx.users.setPassword("alice@example.test", cachedHash("pw"))
        with open(os.path.join(os.path.dirname(self.ctx.config.auth.usersFile), "aliases"), "w") as f:
            f.write(
                "sales@example.test: alice@example.test, partner@other.example\n"
                "staff@example.test: sales@example.test, demo@example.test\n"
                "@alias.example: @example.test\n"
                "info@alias.example: alice@example.test\n"
            )

    def rcpt(self, address):
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        out = self.send(proto, t, b"RCPT TO:<" + address + b">\r\n")
        return out, proto

    def resolved(self, address):
        out, proto = self.rcpt(address)
        self.assertEqual(out, b"250 2.1.5 Ok\r\n", address)
        return sorted(proto.transaction.recipients)

    def test_expansion(self):
        self.assertEqual(
            self.resolved(b"staff@example.test"),
            ["alice@example.test", "demo@example.test", "partner@other.example"],
        )
        self.assertEqual(self.resolved(b"ALICE+news@Example.TEST"), ["alice@example.test"])
        self.assertEqual(self.resolved(b"demo@alias.example"), ["demo@example.test"])
        self.assertEqual(self.resolved(b"info@alias.example"), ["alice@example.test"])
        self.assertEqual(self.resolved(b"postmaster@example.test"), ["demo@example.test"])
        self.assertEqual(self.resolved(b"postmaster@alias.example"), ["demo@example.test"])
        self.assertEqual(self.resolved(b"Postmaster"), ["demo@example.test"])

    def test_unknown(self):
        for address in (b"nobody@example.test", b"nobody@alias.example", b"alice+@x.test"):
            out, _ = self.rcpt(address)
            if address.endswith(b"x.test"):
                self.assertEqual(out, b"554 5.7.1 <alice+@x.test>: Relay access denied\r\n")
            else:
                self.assertEqual(
                    out,
                    b"550 5.1.1 <" + address + b">: Recipient address rejected: User unknown\r\n",
                )

    def test_catchAll(self):
        with open(os.path.join(os.path.dirname(self.ctx.config.auth.usersFile), "aliases"), "a") as f:
            f.write("@example.test: alice@example.test\n")
        self.assertEqual(self.resolved(b"anything@example.test"), ["alice@example.test"])
        # Users and aliases come before the catch-all.
        self.assertEqual(self.resolved(b"demo@example.test"), ["demo@example.test"])

    def test_vrfyModes(self):
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"VRFY alice@example.test\r\n"),
            b"252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery\r\n",
        )
        self.overrides = dict(self.overrides, smtp={"vrfy": "verify"})
        self.setUp()
        proto, t = self.connect()
        self.assertEqual(
            self.send(proto, t, b"VRFY <sales@example.test>\r\n"),
            b"250 2.1.5 <sales@example.test>\r\n",
        )
        self.assertEqual(
            self.send(proto, t, b"EXPN nobody@example.test\r\n"),
            b"550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown\r\n",
        )


class RelayTests(SessionMixin, unittest.TestCase):
    overrides = {"smtp": {"trusted_networks": ["192.0.2.0/24"]}}

    def test_trustedNetworkRelays(self):
        proto, t = self.connect()
        transaction(proto, t, self.send, rcpt=b"x@other.example")
        self.assertEqual(list(proto.transaction.recipients), ["x@other.example"])

    def test_untrustedDoesNot(self):
        self.overrides = {"smtp": {"trusted_networks": ["198.51.100.0/24"]}}
        self.setUp()
        proto, t = self.connect()
        self.send(proto, t, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        self.assertEqual(
            self.send(proto, t, b"RCPT TO:<x@other.example>\r\n"),
            b"554 5.7.1 <x@other.example>: Relay access denied\r\n",
        )


class LimitTests(SessionMixin, unittest.TestCase):
    overrides = {"smtp": {"max_connections": 3, "max_connections_per_ip": 2}}

    def open(self, host):
        proto = self.factory().buildProtocol(None)
        t = StartTLSTransport(peerAddress=IPv4Address("TCP", host, 1000))
        proto.makeConnection(t)
        return proto, t

    def factory(self):
        from mailplat.smtp.server import SMTPFactory

        return SMTPFactory(self.ctx, self.listener)

    def test_connectionLimits(self):
        a1, t1 = self.open("192.0.2.1")
        a2, t2 = self.open("192.0.2.1")
        a3, t3 = self.open("192.0.2.1")
        self.assertEqual(
            t3.value(),
            b"421 4.7.0 mail.example.test Error: too many connections from 192.0.2.1\r\n",
        )
        self.assertTrue(t3.disconnecting)
        a3.connectionLost(None)
        b1, u1 = self.open("192.0.2.2")
        b2, u2 = self.open("192.0.2.3")
        self.assertEqual(
            u2.value(), b"421 4.7.0 mail.example.test Error: too many connections\r\n"
        )
        b2.connectionLost(None)
        a1.connectionLost(None)
        c, v = self.open("192.0.2.1")
        self.assertEqual(v.value(), b"220 mail.example.test ESMTP mailplat\r\n")

    def test_sessionDeadline(self):
        proto, t = self.connect()
        deadline = self.ctx.config.smtp.sessionTimeout
        step = self.ctx.config.smtp.commandTimeout / 2
        elapsed = 0
        while elapsed + step < deadline:
            self.assertEqual(self.send(proto, t, b"NOOP\r\n"), b"250 2.0.0 Ok\r\n")
            self.ctx.clock.advance(step)
            elapsed += step
        t.clear()
        self.ctx.clock.advance(deadline - elapsed)
        self.assertEqual(
            t.value(), b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"
        )
        self.assertTrue(t.disconnecting)


class GreetPauseTests(SessionMixin, unittest.TestCase):
    overrides = {"smtp": {"greet_pause": "3s"}}

    def test_patientClientIsGreeted(self):
        from mailplat.smtp.server import SMTPFactory

        proto = SMTPFactory(self.ctx, self.listener).buildProtocol(None)
        t = StartTLSTransport(peerAddress=PEER)
        proto.makeConnection(t)
        self.assertEqual(t.value(), b"")
        self.ctx.clock.advance(3)
        self.assertEqual(t.value(), b"220 mail.example.test ESMTP mailplat\r\n")

    def test_clientTalkingFirstIsRejected(self):
        from mailplat.smtp.server import SMTPFactory

        proto = SMTPFactory(self.ctx, self.listener).buildProtocol(None)
        t = StartTLSTransport(peerAddress=PEER)
        proto.makeConnection(t)
        proto.dataReceived(b"EHLO spam\r\nMAIL FROM:<s@spam.example>\r\n")
        self.assertEqual(t.value(), b"554 5.5.1 Error: talked before the greeting\r\n")
        self.assertTrue(t.disconnecting)
        self.ctx.clock.advance(3)
        self.assertEqual(t.value(), b"554 5.5.1 Error: talked before the greeting\r\n")


class ForgedResultsTests(SessionMixin, unittest.TestCase):
    def test_ourAuthenticationResultsAreRemoved(self):
        """
        RFC 8601 5: Authentication-Results fields that claim our authserv-id
        are removed from incoming mail; others are kept.
        """
        proto, t = self.connect()
        transaction(proto, t, self.send)
        self.send(proto, t, b"DATA\r\n")
        out = self.send(
            proto, t,
            b"Authentication-Results: MAIL.example.test;\r\n\tdkim=pass header.d=bank.example\r\n"
            b"Authentication-Results: other.example; spf=fail\r\n"
            b"Subject: x\r\n\r\nAuthentication-Results: mail.example.test; body stays\r\n.\r\n",
        )
        self.assertTrue(out.startswith(b"250 2.0.0 Ok: queued as "))
        content = self.queuedContent()
        head, body = content.split(b"\r\n\r\n", 1)
        self.assertNotIn(b"header.d=bank.example", head)
        self.assertIn(b"\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: x", head)
        self.assertEqual(body, b"Authentication-Results: mail.example.test; body stays\r\n")
