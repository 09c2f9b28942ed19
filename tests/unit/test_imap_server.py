"""
Tests for L{mailplat.imap.server}: the session -- greeting, capabilities,
STARTTLS, login, limits, pipelining -- and the mailbox commands of the
authenticated state.  Every response is asserted in full.
"""

import base64

from twisted.trial import unittest

from mailplat.imap.server import IMAPServer
from tests.imapsupport import (
    ADDRESS,
    CAPS_PLAIN,
    CAPS_TLS,
    EXTENSIONS,
    FLAGS,
    GREETING_PLAIN,
    MSG1,
    MSG2,
    MSG3,
    NO_PLAINTEXT,
    DeferredRunner,
    IMAPTestMixin,
    SSLStringTransport,
)
from mailplat.testing import makeContext


class CapabilityTests(IMAPTestMixin, unittest.TestCase):
    """
    CAPABILITY and the greeting before and after TLS (RFC 3501 6.1.1, 6.2.1).
    """

    def test_greetingBeforeTLS(self):
        session = self.connect()
        self.assertEqual(session.lines(), [GREETING_PLAIN])

    def test_capabilityBeforeTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a CAPABILITY"),
            [b"* CAPABILITY " + CAPS_PLAIN, b"a OK CAPABILITY completed"],
        )

    def test_capabilityAfterSTARTTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(session.command(b"a STARTTLS"), [b"a OK Begin TLS negotiation now"])
        self.assertIs(session.transport.tlsOptions, self.tlsOptions)
        self.assertEqual(
            session.command(b"b CAPABILITY"),
            [b"* CAPABILITY " + CAPS_TLS, b"b OK CAPABILITY completed"],
        )

    def test_listenerWithoutTLS(self):
        """
        A C{tls = "none"} listener offers no STARTTLS and no way to log in.
        """
        session = self.connect(tls="none")
        self.assertEqual(
            session.lines(),
            [b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED " + EXTENSIONS
             + b"] mail.example.test IMAP4rev1 server ready"],
        )
        self.assertEqual(session.command(b"a STARTTLS"), [b"a BAD STARTTLS is not available"])
        self.assertIsNone(session.transport.tlsOptions)
        self.assertEqual(
            session.command(b"b LOGIN demo@example.test demo"), [b"b " + NO_PLAINTEXT]
        )

    def test_noCertificate(self):
        self.ctx.tlsOptions = None
        session = self.connect()
        self.assertEqual(
            session.command(b"a CAPABILITY")[0],
            b"* CAPABILITY IMAP4rev1 LOGINDISABLED " + EXTENSIONS,
        )

    def test_implicitTLS(self):
        session = self.connect(tls="implicit", transport=SSLStringTransport())
        self.assertEqual(
            session.lines(),
            [b"* OK [CAPABILITY " + CAPS_TLS + b"] mail.example.test IMAP4rev1 server ready"],
        )
        self.assertEqual(session.command(b"a STARTTLS"), [b"a BAD STARTTLS is not available"])
        self.assertEqual(
            session.command(b"b LOGIN demo@example.test demo"), [b"b OK LOGIN completed"]
        )

    def test_startTLSTwice(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a STARTTLS"), [b"a BAD Command not allowed in this state"]
        )

    def test_startTLSAgainBeforeLogin(self):
        session = self.connect()
        session.command(b"a STARTTLS")
        self.assertEqual(session.command(b"b STARTTLS"), [b"b BAD STARTTLS is not available"])

    def test_appendLimitFromConfig(self):
        self.ctx = makeContext(self.mktemp(), tlsOptions=object(),
                               overrides={"access": {"max_literal_size": "1M"}})
        session = self.connect()
        self.assertIn(b" APPENDLIMIT=1048576]", session.output())


class STARTTLSInjectionTests(IMAPTestMixin, unittest.TestCase):
    """
    Bytes pipelined after STARTTLS were sent in the clear and must not run as
    if they came over TLS (DESIGN.md section 7).
    """

    def test_pipelinedCommandsDiscarded(self):
        session = self.connect()
        session.output()
        response = session.send(
            b"a STARTTLS\r\nb LOGIN demo@example.test demo\r\nc CAPABILITY\r\n"
        )
        self.assertEqual(response, b"a OK Begin TLS negotiation now\r\n")
        self.assertEqual(session.proto.state, "unauth")
        self.assertIsNone(session.proto.user)
        self.assertEqual(
            session.command(b"d CAPABILITY"),
            [b"* CAPABILITY " + CAPS_TLS, b"d OK CAPABILITY completed"],
        )

    def test_partialLineDiscarded(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a STARTTLS\r\nb LOGIN demo@exa"),
            b"a OK Begin TLS negotiation now\r\n",
        )
        self.assertEqual(session.command(b"c NOOP"), [b"c OK NOOP completed"])

    def test_pipelinedLiteralDiscarded(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a STARTTLS\r\nb LOGIN {17+}\r\ndemo@example.test demo\r\n"),
            b"a OK Begin TLS negotiation now\r\n",
        )
        self.assertEqual(session.proto.state, "unauth")


class LoginTests(IMAPTestMixin, unittest.TestCase):
    """
    LOGIN and AUTHENTICATE PLAIN (RFC 3501 6.2.2, 6.2.3; RFC 4616, 4959).
    """

    def startTLS(self):
        session = self.connect()
        session.output()
        session.command(b"s STARTTLS")
        return session

    def test_loginRefusedBeforeTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a LOGIN demo@example.test demo"), [b"a " + NO_PLAINTEXT]
        )
        self.assertEqual(session.proto.state, "unauth")

    def test_loginLiteralRefusedBeforeTLS(self):
        """
        The refusal comes before any continuation, so the client does not
        send the password in the clear.
        """
        session = self.connect()
        session.output()
        self.assertEqual(session.command(b"a LOGIN {17}"), [b"a " + NO_PLAINTEXT])
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])

    def test_loginNonSyncLiteralBeforeTLS(self):
        """
        A LITERAL+ password sent before TLS is refused and skipped, not run
        as commands.
        """
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a LOGIN {17+}\r\nb LOGOUT\r\nxxxxx demo\r\nc NOOP\r\n"),
            b"a " + NO_PLAINTEXT + b"\r\nc OK NOOP completed\r\n",
        )

    def test_authenticateRefusedBeforeTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(session.command(b"a AUTHENTICATE PLAIN"), [b"a " + NO_PLAINTEXT])

    def test_loginSuccess(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b"a LOGIN demo@example.test demo"), [b"a OK LOGIN completed"]
        )
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual(session.proto.user.address, ADDRESS)

    def test_loginQuoted(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b'a LOGIN "demo@example.test" "demo"'),
            [b"a OK LOGIN completed"],
        )

    def test_loginLiteral(self):
        session = self.startTLS()
        self.assertEqual(session.command(b"a LOGIN {17}"), [b"+ Ready for literal data"])
        self.assertEqual(
            session.command(b"demo@example.test {4}"), [b"+ Ready for literal data"]
        )
        self.assertEqual(session.command(b"demo"), [b"a OK LOGIN completed"])

    def test_loginNonSyncLiterals(self):
        session = self.startTLS()
        self.assertEqual(
            session.send(b"a LOGIN {17+}\r\ndemo@example.test {4+}\r\ndemo\r\n"),
            b"a OK LOGIN completed\r\n",
        )

    def test_loginQuotedEscapes(self):
        self.ctx = makeContext(
            self.mktemp(), users=[(ADDRESS, 'pa"ss\\word')], tlsOptions=object()
        )
        session = self.startTLS()
        self.assertEqual(
            session.command(b'a LOGIN "demo@example.test" "pa\\"ss\\\\word"'),
            [b"a OK LOGIN completed"],
        )

    def test_loginSyntax(self):
        session = self.startTLS()
        self.assertEqual(session.command(b"a LOGIN demo"), [b"a BAD Missing argument"])
        self.assertEqual(
            session.command(b'a LOGIN "demo" "x" y'), [b"a BAD Extra arguments"]
        )
        self.assertEqual(
            session.command(b'a LOGIN "demo\\x" y'),
            [b"a BAD Invalid escape in quoted string"],
        )
        self.assertEqual(
            session.command(b'a LOGIN "demo y'), [b"a BAD Unterminated quoted string"]
        )

    def assertFailsAfterDelay(self, session, line):
        self.assertEqual(session.command(line), [])
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(
            session.lines(), [b"a NO [AUTHENTICATIONFAILED] Authentication failed."]
        )
        self.assertEqual(session.proto.state, "unauth")

    def test_wrongPassword(self):
        session = self.startTLS()
        self.assertFailsAfterDelay(session, b"a LOGIN demo@example.test wrong")

    def test_unknownUser(self):
        session = self.startTLS()
        self.assertFailsAfterDelay(session, b"a LOGIN nobody@example.test demo")

    def test_commandsWaitForLogin(self):
        """
        A command pipelined after a LOGIN that is still being checked runs
        after it, in the state LOGIN leaves.
        """
        session = self.startTLS()
        self.assertEqual(
            session.send(b"a LOGIN demo@example.test wrong\r\nb SELECT INBOX\r\n"), b""
        )
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(
            session.lines(),
            [
                b"a NO [AUTHENTICATIONFAILED] Authentication failed.",
                b"b BAD Command not allowed in this state",
            ],
        )

    def test_authenticatePlain(self):
        session = self.startTLS()
        self.assertEqual(session.command(b"a AUTHENTICATE PLAIN"), [b"+ "])
        self.assertEqual(session.proto.state, "unauth")
        token = base64.b64encode(b"\0demo@example.test\0demo")
        self.assertEqual(session.command(token), [b"a OK AUTHENTICATE completed"])
        self.assertEqual(session.proto.state, "auth")

    def test_authenticatePlainInitialResponse(self):
        session = self.startTLS()
        token = base64.b64encode(b"demo@example.test\0demo@example.test\0demo")
        self.assertEqual(
            session.command(b"a AUTHENTICATE PLAIN " + token),
            [b"a OK AUTHENTICATE completed"],
        )

    def test_authenticatePlainFailure(self):
        session = self.startTLS()
        session.command(b"a AUTHENTICATE PLAIN")
        token = base64.b64encode(b"\0demo@example.test\0wrong")
        self.assertFailsAfterDelay(session, token)

    def test_authenticateCancelled(self):
        session = self.startTLS()
        session.command(b"a AUTHENTICATE PLAIN")
        self.assertEqual(session.command(b"*"), [b"a BAD AUTHENTICATE cancelled"])
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])

    def test_authenticateBadBase64(self):
        session = self.startTLS()
        session.command(b"a AUTHENTICATE PLAIN")
        self.assertEqual(session.command(b"!!!"), [b"a BAD Invalid base64 data"])

    def test_authenticateBadPlain(self):
        session = self.startTLS()
        token = base64.b64encode(b"demo@example.test\0demo")
        self.assertEqual(
            session.command(b"a AUTHENTICATE PLAIN " + token),
            [b"a BAD Invalid PLAIN response"],
        )

    def test_authenticateOtherIdentity(self):
        session = self.startTLS()
        session.command(b"a AUTHENTICATE PLAIN")
        token = base64.b64encode(b"admin@example.test\0demo@example.test\0demo")
        self.assertEqual(
            session.command(token),
            [b"a NO [AUTHORIZATIONFAILED] Authorization identity refused"],
        )

    def test_authenticateUnknownMechanism(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b"a AUTHENTICATE CRAM-MD5"),
            [b"a NO Unsupported authentication mechanism"],
        )

    def test_invalidTag(self):
        session = self.startTLS()
        self.assertEqual(session.command(b"+ NOOP"), [b"* BAD Invalid tag"])
        self.assertEqual(session.command(b"a{ NOOP"), [b"* BAD Invalid tag"])
        self.assertEqual(session.command(b""), [b"* BAD Invalid tag"])
        self.assertEqual(session.command(b"a NOOP"), [b"a OK NOOP completed"])

    def test_unknownCommand(self):
        session = self.startTLS()
        self.assertEqual(session.command(b"a FROB"), [b"a BAD Unknown command"])
        self.assertEqual(session.command(b"a"), [b"a BAD Missing command"])
        self.assertEqual(
            session.command(b"a SELECT INBOX"), [b"a BAD Command not allowed in this state"]
        )
        self.assertEqual(session.command(b"a UID FETCH 1 UID"),
                         [b"a BAD Command not allowed in this state"])

    def test_connectionLimit(self):
        """
        A user may have C{max_connections_per_user} sessions; the next login
        is refused until one ends.
        """
        self.ctx = makeContext(self.mktemp(), tlsOptions=object(),
                               overrides={"access": {"max_connections_per_user": 2}})
        first = self.login()
        self.login()
        third = self.startTLS()
        self.assertEqual(
            third.command(b"a LOGIN demo@example.test demo"),
            [b"a NO [LIMIT] Too many connections for this user"],
        )
        self.assertEqual(third.proto.state, "unauth")
        first.proto.connectionLost(None)
        self.assertEqual(
            third.command(b"b LOGIN demo@example.test demo"), [b"b OK LOGIN completed"]
        )


class LimitTests(IMAPTestMixin, unittest.TestCase):
    """
    Bounded lines and literals, autologout.
    """

    overrides = {"access": {"max_line_length": 200, "max_literal_size": 100}}

    def test_longLine(self):
        session = self.connect()
        session.output()
        self.assertEqual(session.send(b"a NOOP " + b"x" * 300), b"* BYE Command line too long\r\n")
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(session.send(b"\r\nb NOOP\r\n"), b"")

    def test_longTerminatedLine(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a NOOP " + b"x" * 300 + b"\r\nb LOGOUT\r\n"),
            b"* BYE Command line too long\r\n",
        )

    def test_longCommandInPieces(self):
        """
        A command made of many short lines and literals is bounded as a whole.
        """
        session = self.connect()
        session.output()
        session.command(b"s STARTTLS")
        out = session.send(b"a LOGIN {100+}\r\n" + b"x" * 100 + b" {100+}\r\n" + b"x" * 100
                           + b" " + b"{1+}\r\nx " * 1700 + b"\r\n")
        self.assertEqual(out, b"a BAD [TOOBIG] Command too long\r\n")
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])

    def test_oversizeLiteral(self):
        """
        A literal over the limit is refused before the continuation request,
        so the client never sends it.
        """
        session = self.connect()
        session.output()
        session.command(b"s STARTTLS")
        self.assertEqual(
            session.command(b"a LOGIN {101}"),
            [b"a BAD [TOOBIG] Literal too long (at most 100 octets)"],
        )
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])

    def test_oversizeNonSyncLiteralSkipped(self):
        session = self.connect()
        session.output()
        session.command(b"s STARTTLS")
        self.assertEqual(
            session.send(b"a LOGIN {101+}\r\n" + b"b NOOP\r\n" * 12 + b"xxxxx"
                         + b" {3+}\r\nabc\r\nc NOOP\r\n"),
            b"a BAD [TOOBIG] Literal too long (at most 100 octets)\r\n"
            b"c OK NOOP completed\r\n",
        )

    def test_hugeLiteralCount(self):
        session = self.connect()
        session.output()
        session.command(b"s STARTTLS")
        self.assertEqual(
            session.command(b"a LOGIN {99999999999999999999}"),
            [b"a BAD [TOOBIG] Literal too long (at most 100 octets)"],
        )

    def test_binaryLiteral(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a APPEND INBOX ~{5}"),
            [b"a BAD Binary literals are not supported"],
        )

    def test_preauthTimeout(self):
        session = self.connect()
        session.output()
        self.ctx.clock.advance(59)
        self.assertFalse(session.transport.disconnecting)
        self.ctx.clock.advance(1)
        self.assertEqual(session.lines(), [b"* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)

    def test_postauthTimeout(self):
        """
        RFC 3501 5.4: 30 minutes once logged in.
        """
        session = self.selected()
        self.ctx.clock.advance(1799)
        session.command(b"a NOOP")
        self.ctx.clock.advance(1799)
        self.assertFalse(session.transport.disconnecting)
        self.ctx.clock.advance(1)
        self.assertEqual(session.lines(), [b"* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(self.folder._listeners, [])

    def test_idleRenewedByClient(self):
        """
        IDLE does not stop the autologout timer; a client that ends and
        restarts IDLE (RFC 2177: every 29 minutes) stays connected.
        """
        session = self.selected()
        session.command(b"a IDLE")
        self.ctx.clock.advance(29 * 60)
        self.assertEqual(session.command(b"DONE"), [b"a OK IDLE terminated"])
        session.command(b"b IDLE")
        self.ctx.clock.advance(29 * 60)
        self.assertFalse(session.transport.disconnecting)
        self.ctx.clock.advance(60)
        self.assertEqual(session.lines(), [b"* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)

    def test_logout(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a LOGOUT\r\nb NOOP\r\n"),
            b"* BYE Logging out\r\na OK LOGOUT completed\r\n",
        )
        self.assertTrue(session.transport.disconnecting)


class PipeliningTests(IMAPTestMixin, unittest.TestCase):
    """
    Commands pipelined behind one that waits on the disk run after it, in
    order (RFC 3501 5.5), and input is paused while they pile up.
    """

    def test_pipelinedAfterSelect(self):
        self.deliver(MSG1)
        session = self.login()
        runner = DeferredRunner()
        session.proto.context.runBlocking = runner
        self.assertEqual(
            session.send(b"a SELECT INBOX\r\nb FETCH 1 UID\r\nc NOOP\r\n"), b""
        )
        runner.runAll()
        lines = session.lines()
        self.assertEqual(lines[-4:], [
            b"a OK [READ-WRITE] SELECT completed",
            b"* 1 FETCH (UID 1)",
            b"b OK FETCH completed",
            b"c OK NOOP completed",
        ])

    def test_inputPausedWhileBusy(self):
        session = self.login()
        runner = DeferredRunner()
        session.proto.context.runBlocking = runner
        session.send(b"a SELECT INBOX\r\n" + b"b NOOP\r\n" * 2000)
        self.assertEqual(session.transport.producerState, "paused")
        runner.runAll()
        self.assertEqual(session.transport.producerState, "producing")
        self.assertEqual(session.lines()[-1], b"b OK NOOP completed")


class SelectTests(IMAPTestMixin, unittest.TestCase):
    """
    SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2).
    """

    def test_select(self):
        self.deliver(MSG1, MSG2, MSG3)
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Seen"})
        session = self.login()
        self.assertEqual(
            session.command(b"a SELECT INBOX"),
            [
                b"* FLAGS (" + FLAGS + b")",
                b"* 3 EXISTS",
                b"* 3 RECENT",
                b"* OK [UNSEEN 2] First unseen message",
                b"* OK [UIDVALIDITY %d] UIDs valid" % self.folder.uidValidity,
                b"* OK [UIDNEXT 4] Predicted next UID",
                b"* OK [PERMANENTFLAGS (" + FLAGS + b" \\*)] Flags permitted",
                b"* OK [HIGHESTMODSEQ 5] Highest",
                b"a OK [READ-WRITE] SELECT completed",
            ],
        )
        self.assertEqual(session.proto.state, "select")

    def test_selectWithKeywords(self):
        self.deliver(MSG1)
        self.folder.setFlags(self.folder.snapshot()[0], {"$Forwarded", "Work"})
        session = self.login()
        response = session.command(b"a SELECT INBOX")
        self.assertEqual(response[0], b"* FLAGS (" + FLAGS + b" $Forwarded Work)")
        self.assertIn(
            b"* OK [PERMANENTFLAGS (" + FLAGS + b" $Forwarded Work \\*)] Flags permitted",
            response,
        )

    def test_examineEmpty(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a EXAMINE inbox"),
            [
                b"* FLAGS (" + FLAGS + b")",
                b"* 0 EXISTS",
                b"* 0 RECENT",
                b"* OK [UIDVALIDITY %d] UIDs valid" % self.folder.uidValidity,
                b"* OK [UIDNEXT 1] Predicted next UID",
                b"* OK [PERMANENTFLAGS ()] Read-only mailbox",
                b"* OK [HIGHESTMODSEQ 1] Highest",
                b"a OK [READ-ONLY] EXAMINE completed",
            ],
        )

    def test_recentClaimedOnce(self):
        """
        A read-write SELECT claims the recent messages: the next session does
        not see them as recent.  EXAMINE does not claim them.
        """
        self.deliver(MSG1, MSG2)
        examiner = self.login()
        self.assertIn(b"* 2 RECENT", examiner.command(b"a EXAMINE INBOX"))
        first = self.login()
        self.assertIn(b"* 2 RECENT", first.command(b"a SELECT INBOX"))
        second = self.login()
        self.assertIn(b"* 0 RECENT", second.command(b"a SELECT INBOX"))

    def test_selectCondstore(self):
        session = self.login()
        response = session.command(b"a SELECT INBOX (CONDSTORE)")
        self.assertEqual(response[-1], b"a OK [READ-WRITE] SELECT completed")
        self.assertTrue(session.proto.condstore)
        self.assertEqual(
            session.command(b"b SELECT INBOX (QRESYNC)"), [b"b BAD Unknown SELECT parameter"]
        )

    def test_selectOtherFolders(self):
        self.deliver(MSG1, folder="Sent")
        session = self.login()
        response = session.command(b"a EXAMINE Sent")
        self.assertIn(b"* 1 EXISTS", response)
        self.assertEqual(response[-1], b"a OK [READ-ONLY] EXAMINE completed")

    def test_noSuchMailbox(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a SELECT Nope"), [b"a NO [NONEXISTENT] Mailbox does not exist"]
        )

    def assertBadName(self, session, name):
        """
        Every command taking a mailbox name answers C{NO [CANNOT]} for
        C{name}, and nothing is created.
        """
        before = self.store.folders(ADDRESS)
        for command in (b"SELECT", b"EXAMINE", b"CREATE", b"DELETE", b"STATUS",
                        b"SUBSCRIBE", b"GETQUOTAROOT"):
            line = b"a " + command + b" " + name
            if command == b"STATUS":
                line += b" (MESSAGES)"
            self.assertEqual(
                session.command(line), [b"a NO [CANNOT] Invalid mailbox name"], line
            )
        self.assertEqual(
            session.command(b"b RENAME Archive " + name),
            [b"b NO [CANNOT] Invalid mailbox name"],
        )
        self.assertEqual(self.store.folders(ADDRESS), before)

    def test_traversalNames(self):
        session = self.login()
        for name in (b"..", b"../../etc", b"a/../../b", b'"../x y"', b".hidden"):
            self.assertBadName(session, name)

    def test_absoluteAndEmptyLevels(self):
        session = self.login()
        for name in (b"/etc", b"/", b"a//b", b'""'):
            self.assertBadName(session, name)

    def test_nulName(self):
        """
        NUL as modified UTF-7 is refused; as a literal it is not even a
        valid string.
        """
        session = self.login()
        self.assertBadName(session, b"&AAA-")
        self.assertBadName(session, b"x&AAA-y")
        self.assertEqual(
            session.send(b"b SELECT {3+}\r\na\x00b\r\n"), b"b BAD NUL in literal\r\n"
        )
        self.assertEqual(
            session.command(b'c SELECT "a\x00b"'), [b"c BAD NUL in quoted string"]
        )

    def test_badModifiedUTF7(self):
        session = self.login()
        for name in (b"&", b"&Jjo", b"&AGE-", b"&Jjo-&Jjo-", b"&ZeV-", b"&2D0-",
                     b'"\xc3\xa4"'):
            self.assertBadName(session, name)

    def test_otherBadCharacters(self):
        session = self.login()
        for name in (b'"a%b"', b'"a*"', b'"a\\\\b"', b'"tab\tx"'):
            self.assertBadName(session, name)
        self.assertEqual(session.command(b"c SELECT a\x01b"), [b"c BAD Expected a space"])

    def test_failedSelectDeselects(self):
        session = self.selected()
        session.command(b"a SELECT Nope")
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual(session.command(b"b FETCH 1 FLAGS"), [b"b BAD No mailbox selected"])
        self.assertEqual(self.folder._listeners, [])

    def test_selectBeforeLogin(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a SELECT INBOX"), [b"a BAD Command not allowed in this state"]
        )

    def test_status(self):
        self.deliver(MSG1, MSG2)
        session = self.login()
        self.assertEqual(
            session.command(b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)"),
            [
                b"* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UNSEEN 2)",
                b"a OK STATUS completed",
            ],
        )
        self.assertEqual(
            session.command(b"b STATUS Sent (UIDVALIDITY HIGHESTMODSEQ)"),
            [
                b"* STATUS Sent (UIDVALIDITY %d HIGHESTMODSEQ 1)"
                % self.store.folder(ADDRESS, "Sent").uidValidity,
                b"b OK STATUS completed",
            ],
        )
        self.assertEqual(session.command(b"c STATUS INBOX (SIZE)"),
                         [b"c BAD Invalid status item"])
        self.assertEqual(session.command(b"d STATUS INBOX ()"),
                         [b"d BAD Invalid status item"])
        self.assertEqual(session.command(b"e STATUS Nope (MESSAGES)"),
                         [b"e NO [NONEXISTENT] Mailbox does not exist"])

    def test_namespace(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a NAMESPACE"),
            [b'* NAMESPACE (("" "/")) NIL NIL', b"a OK NAMESPACE completed"],
        )

    def test_id(self):
        session = self.login()
        self.assertEqual(
            session.command(b'a ID ("name" "mbsync" "version" NIL)'),
            [b'* ID ("name" "mailplat" "vendor" "mailplat")', b"a OK ID completed"],
        )
        self.assertEqual(session.command(b"b ID NIL")[-1], b"b OK ID completed")
        self.assertEqual(
            session.command(b'c ID ("' + b"x" * 31 + b'" "y")'),
            [b"c BAD ID parameters too long"],
        )

    def test_enable(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a ENABLE CONDSTORE X-UNKNOWN"),
            [b"* ENABLED CONDSTORE", b"a OK ENABLE completed"],
        )
        self.assertEqual(
            session.command(b"b ENABLE QRESYNC"), [b"* ENABLED", b"b OK ENABLE completed"]
        )
        session.command(b"c SELECT INBOX")
        self.assertEqual(
            session.command(b"d ENABLE CONDSTORE"),
            [b"d BAD Command not allowed in this state"],
        )

    def test_uidsStableAcrossRestart(self):
        self.deliver(MSG1, MSG2, MSG3)
        first = self.selected()
        expected = [
            b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)",
            b"a OK FETCH completed",
        ]
        self.assertEqual(first.command(b"a FETCH 1:* UID"), expected)
        validity = self.folder.uidValidity
        self.ctx.store = self.store = type(self.store)(self.ctx.config.storage.path)
        self.ctx.portal.realm.store = self.ctx.store
        second = self.selected()
        self.assertEqual(second.command(b"a FETCH 1:* UID"), expected)
        self.assertEqual(self.store.folder(ADDRESS).uidValidity, validity)


class ListTests(IMAPTestMixin, unittest.TestCase):
    """
    LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE (RFC 3501 6.3.3-6.3.9),
    with CHILDREN and SPECIAL-USE attributes.
    """

    def test_list(self):
        session = self.login()
        self.assertEqual(
            session.command(b'a LIST "" "*"'),
            [
                b'* LIST (\\HasNoChildren) "/" INBOX',
                b'* LIST (\\HasNoChildren \\Archive) "/" Archive',
                b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
                b'* LIST (\\HasNoChildren \\Junk) "/" Junk',
                b'* LIST (\\HasNoChildren \\Sent) "/" Sent',
                b'* LIST (\\HasNoChildren \\Trash) "/" Trash',
                b"a OK LIST completed",
            ],
        )
        self.assertEqual(
            session.command(b'b LIST "" ""'),
            [b'* LIST (\\Noselect) "/" ""', b"b OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'c LIST "" inbox'),
            [b'* LIST (\\HasNoChildren) "/" INBOX', b"c OK LIST completed"],
        )
        self.assertEqual(session.command(b'd LIST "" Nope'), [b"d OK LIST completed"])
        self.assertEqual(
            session.command(b'e LIST "" "S%"'),
            [b'* LIST (\\HasNoChildren \\Sent) "/" Sent', b"e OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'f LIST (SUBSCRIBED) "" "*"'),
            [b"f BAD LIST-EXTENDED is not supported"],
        )

    def test_hierarchy(self):
        session = self.login()
        self.assertEqual(session.command(b"a CREATE Lists/twisted/"), [b"a OK CREATE completed"])
        self.assertEqual(
            session.command(b'b CREATE "Entw&APw-rfe"'), [b"b OK CREATE completed"]
        )
        self.assertEqual(
            session.command(b'c LIST "" "Lists*"'),
            [
                b'* LIST (\\HasChildren) "/" Lists',
                b'* LIST (\\HasNoChildren) "/" Lists/twisted',
                b"c OK LIST completed",
            ],
        )
        self.assertEqual(
            session.command(b'd LIST "Lists/" %'),
            [b'* LIST (\\HasNoChildren) "/" Lists/twisted', b"d OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'e LIST "" Entw*'),
            [b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe', b"e OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'f LIST "Lists/" ""'),
            [b'* LIST (\\Noselect) "/" Lists/', b"f OK LIST completed"],
        )
        self.assertIn("Entwürfe", dict(self.store.folders(ADDRESS)))

    def test_createErrors(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a CREATE INBOX"), [b"a NO [ALREADYEXISTS] Mailbox already exists"]
        )
        self.assertEqual(
            session.command(b"b CREATE Sent"), [b"b NO [ALREADYEXISTS] Mailbox already exists"]
        )
        self.assertEqual(session.command(b"c CREATE"), [b"c BAD Missing argument"])

    def test_delete(self):
        session = self.login()
        session.command(b"a CREATE Old/Stuff")
        self.assertEqual(
            session.command(b"b DELETE Old"),
            [b"b NO [CANNOT] Mailbox has children; delete them first"],
        )
        self.assertEqual(session.command(b"c DELETE Old/Stuff"), [b"c OK DELETE completed"])
        self.assertEqual(session.command(b"d DELETE Old"), [b"d OK DELETE completed"])
        self.assertEqual(
            session.command(b"e DELETE Old"), [b"e NO [NONEXISTENT] Mailbox does not exist"]
        )
        self.assertEqual(
            session.command(b"f DELETE inbox"), [b"f NO [CANNOT] INBOX cannot be deleted"]
        )
        self.assertEqual(
            session.command(b"g DELETE Trash"),
            [b"g NO [CANNOT] Special-use mailboxes cannot be deleted"],
        )

    def test_deleteSelected(self):
        """
        A failed DELETE leaves the selection alone; deleting the selected
        mailbox leaves the selected state.
        """
        self.store.createFolder(ADDRESS, "Work/Sub")
        session = self.selected(mailbox=b"Work/Sub")
        self.assertEqual(
            session.command(b"a DELETE Work"),
            [b"a NO [CANNOT] Mailbox has children; delete them first"],
        )
        self.assertEqual(session.proto.state, "select")
        self.assertEqual(session.command(b"b DELETE Work/Sub"), [b"b OK DELETE completed"])
        self.assertEqual(session.proto.state, "auth")

    def test_deleteSelectedElsewhere(self):
        """
        A session that has a deleted mailbox selected is told and
        disconnected at its next command.
        """
        self.store.createFolder(ADDRESS, "Work")
        watcher = self.selected(mailbox=b"Work")
        other = self.login()
        self.assertEqual(other.command(b"a DELETE Work"), [b"a OK DELETE completed"])
        self.assertEqual(watcher.command(b"b NOOP"), [b"* BYE Selected mailbox was deleted"])
        self.assertTrue(watcher.transport.disconnecting)

    def test_rename(self):
        session = self.login()
        session.command(b"a CREATE A/B")
        self.assertEqual(session.command(b"b RENAME A Z"), [b"b OK RENAME completed"])
        self.assertEqual(
            session.command(b'c LIST "" Z*'),
            [b'* LIST (\\HasChildren) "/" Z', b'* LIST (\\HasNoChildren) "/" Z/B',
             b"c OK LIST completed"],
        )
        self.assertEqual(session.command(b"d RENAME Nope X"),
                         [b"d NO [NONEXISTENT] Mailbox does not exist"])
        self.assertEqual(session.command(b"e RENAME Z Sent"),
                         [b"e NO [ALREADYEXISTS] Mailbox already exists"])
        self.assertEqual(session.command(b"f RENAME Sent X"),
                         [b"f NO [CANNOT] Special-use mailboxes cannot be renamed"])
        self.assertEqual(session.command(b"g RENAME Z ../x"),
                         [b"g NO [CANNOT] Invalid mailbox name"])

    def test_renameInbox(self):
        self.deliver(MSG1, MSG2)
        session = self.login()
        self.assertEqual(session.command(b"a RENAME INBOX Old"), [b"a OK RENAME completed"])
        self.assertEqual(
            session.command(b"b STATUS INBOX (MESSAGES)"),
            [b"* STATUS INBOX (MESSAGES 0)", b"b OK STATUS completed"],
        )
        self.assertEqual(
            session.command(b"c STATUS Old (MESSAGES)"),
            [b"* STATUS Old (MESSAGES 2)", b"c OK STATUS completed"],
        )

    def test_subscriptions(self):
        session = self.login()
        self.assertEqual(
            session.command(b'a LSUB "" "*"'),
            [
                b'* LSUB () "/" INBOX',
                b'* LSUB (\\Archive) "/" Archive',
                b'* LSUB (\\Drafts) "/" Drafts',
                b'* LSUB (\\Junk) "/" Junk',
                b'* LSUB (\\Sent) "/" Sent',
                b'* LSUB (\\Trash) "/" Trash',
                b"a OK LSUB completed",
            ],
        )
        session.command(b"b CREATE Lists/x")
        self.assertEqual(session.command(b"c SUBSCRIBE Lists/x"), [b"c OK SUBSCRIBE completed"])
        self.assertEqual(session.command(b"d UNSUBSCRIBE Junk"), [b"d OK UNSUBSCRIBE completed"])
        self.assertEqual(
            session.command(b'e LSUB "" "L%"'),
            [b'* LSUB (\\Noselect) "/" Lists', b"e OK LSUB completed"],
        )
        self.assertEqual(
            session.command(b'f LSUB "" "J*"'), [b"f OK LSUB completed"]
        )
        # A subscription outlives its mailbox (RFC 3501 6.3.4).
        session.command(b"g DELETE Lists/x")
        self.assertEqual(
            session.command(b'h LSUB "" "Lists/*"'),
            [b'* LSUB (\\Noselect) "/" Lists/x', b"h OK LSUB completed"],
        )


class QuotaTests(IMAPTestMixin, unittest.TestCase):
    """
    QUOTA (RFC 9208): one root for all of a user's mail.
    """

    overrides = {"storage": {"quota": "10K"}}

    def test_getQuotaRoot(self):
        self.deliver(b"x" * 1500)
        session = self.login()
        self.assertEqual(
            session.command(b"a GETQUOTAROOT INBOX"),
            [b'* QUOTAROOT INBOX ""', b'* QUOTA "" (STORAGE 2 10)',
             b"a OK GETQUOTAROOT completed"],
        )
        self.assertEqual(
            session.command(b'b GETQUOTA ""'),
            [b'* QUOTA "" (STORAGE 2 10)', b"b OK GETQUOTA completed"],
        )
        self.assertEqual(
            session.command(b"c GETQUOTA other"), [b"c NO [NONEXISTENT] No such quota root"]
        )
        self.assertEqual(
            session.command(b'd SETQUOTA "" (STORAGE 99)'),
            [b"d NO [CANNOT] Quotas are set by the administrator"],
        )

    def test_appendOverQuota(self):
        self.deliver(b"x" * 10000)
        session = self.login()
        self.assertEqual(session.command(b"a APPEND INBOX {500}"), [b"+ Ready for literal data"])
        self.assertEqual(session.command(b"y" * 500), [b"a NO [OVERQUOTA] Quota exceeded"])
        self.assertEqual(len(self.folder.snapshot()), 1)

    def test_copyOverQuota(self):
        self.deliver(b"x" * 6000)
        session = self.selected()
        self.assertEqual(
            session.command(b"a COPY 1 Archive"), [b"a NO [OVERQUOTA] Quota exceeded"]
        )
        self.assertEqual(session.command(b"b MOVE 1 Archive")[-1], b"b OK MOVE completed")

    def test_noQuota(self):
        self.ctx = makeContext(self.mktemp(), tlsOptions=object())
        session = self.login()
        self.assertEqual(
            session.command(b"a GETQUOTAROOT INBOX"),
            [b"* QUOTAROOT INBOX", b"a OK GETQUOTAROOT completed"],
        )


class FactoryTests(IMAPTestMixin, unittest.TestCase):
    def test_sharedAcrossListeners(self):
        """
        The connection counts and the poller are shared by every IMAP
        listener of one store (ports 143 and 993).
        """
        a = self.connect().proto
        b = self.connect(tls="implicit", transport=SSLStringTransport()).proto
        self.assertIsInstance(a, IMAPServer)
        self.assertIs(a.connections, b.connections)
        self.assertIs(a.poller, b.poller)
