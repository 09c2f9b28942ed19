"""
Tests for L{mailplat.imap}: the IMAP4rev1 server over a real Maildir store,
driven through a L{StringTransport} with a fake clock and synchronous disk
calls.  Every response is asserted in full.
"""

import base64
import os

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.testing import StringTransport
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer
from zope.interface.verify import verifyObject

from mailplat.config import ListenerConfig
from mailplat.imap import IMAPFactory
from mailplat.imap.account import MailboxInfo, MaildirAccount
from mailplat.imap.mailbox import FolderMailbox
from mailplat.imap.message import MaildirMessage, MessagePart
from mailplat.interfaces import IMailUser
from mailplat.storage.maildir import MaildirStore
from mailplat.testing import makeContext

USER = b"demo@example.test"
ADDRESS = "demo@example.test"

MSG1 = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: demo@example.test\r\n"
    b"Subject: first\r\n"
    b"Received: from a\r\n"
    b"  by b\r\n"
    b"Received: from c\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"World\r\n"
)
MSG2 = b"From: bob@example.test\r\nSubject: second\r\n\r\nBye\r\n"
MSG3 = b"Subject: third\r\n\r\nThree\r\n"
MULTIPART = (
    b"From: carol@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"part one\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)

FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
GREETING_PLAIN = (
    b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED NAMESPACE IDLE] "
    b"mail.example.test IMAP4rev1 server ready"
)
NO_PLAINTEXT = b"NO [PRIVACYREQUIRED] Plaintext authentication is disabled without TLS"


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that can start TLS: afterwards it provides
    L{ISSLTransport}, as Twisted's TCP transports do.
    """

    tlsOptions = None

    def startTLS(self, contextFactory, normal=True):
        self.tlsOptions = contextFactory
        alsoProvides(self, ISSLTransport)

    def getPeerCertificate(self):
        return None


@implementer(ISSLTransport)
class SSLStringTransport(StringTransport):
    """
    A transport that is TLS from the first byte (implicit TLS, RFC 8314).
    """

    def getPeerCertificate(self):
        return None


class Session:
    """
    One client connection to the server under test.
    """

    def __init__(self, proto, transport):
        self.proto = proto
        self.transport = transport

    def send(self, data):
        """
        Deliver C{data} and return what the server wrote in response.
        """
        self.transport.clear()
        self.proto.dataReceived(data)
        return self.output()

    def command(self, line):
        """
        Send one command line and return the response lines.
        """
        return self.send(line + b"\r\n").split(b"\r\n")[:-1]

    def output(self):
        value = self.transport.value()
        self.transport.clear()
        return value

    def lines(self):
        return self.output().split(b"\r\n")[:-1]


class IMAPTestMixin:
    """
    Builds a context with a real store and connects sessions to it.
    """

    overrides = None

    def setUp(self):
        self.tlsOptions = object()
        self.ctx = makeContext(
            self.mktemp(), tlsOptions=self.tlsOptions, overrides=self.overrides
        )
        self.folder = self.ctx.store.folder(ADDRESS)

    def deliver(self, *messages):
        return [self.ctx.store.deliver(ADDRESS, [m]) for m in messages]

    def connect(self, tls="starttls", transport=None, ctx=None):
        listener = ListenerConfig(
            name="imap", protocol="imap", endpoint="tcp:0", tls=tls
        )
        proto = IMAPFactory(ctx or self.ctx, listener).buildProtocol(None)
        if transport is None:
            transport = TLSStringTransport()
        proto.makeConnection(transport)
        session = Session(proto, transport)
        self.addCleanup(self.disconnect, session)
        return session

    def disconnect(self, session):
        if session.proto._connected:
            session.proto.connectionLost(None)

    def login(self, ctx=None):
        """
        A session that did STARTTLS and LOGIN.
        """
        session = self.connect(ctx=ctx)
        session.output()
        self.assertEqual(
            session.command(b"s STARTTLS"), [b"s OK Begin TLS negotiation now"]
        )
        self.assertEqual(
            session.command(b"l LOGIN demo@example.test demo"),
            [b"l OK LOGIN completed"],
        )
        return session

    def selected(self, command=b"SELECT", ctx=None):
        session = self.login(ctx)
        response = session.command(b"x " + command + b" INBOX")
        self.assertTrue(response[-1].startswith(b"x OK"), response)
        return session

    def flags(self):
        return {info.uid: info.flags for info in self.folder.snapshot()}


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
            [
                b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED NAMESPACE IDLE",
                b"a OK CAPABILITY completed",
            ],
        )

    def test_capabilityAfterSTARTTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a STARTTLS"), [b"a OK Begin TLS negotiation now"]
        )
        self.assertIs(session.transport.tlsOptions, self.tlsOptions)
        self.assertEqual(
            session.command(b"b CAPABILITY"),
            [
                b"* CAPABILITY IMAP4rev1 AUTH=PLAIN NAMESPACE IDLE",
                b"b OK CAPABILITY completed",
            ],
        )

    def test_listenerWithoutTLS(self):
        """
        A C{tls = "none"} listener offers no STARTTLS and no way to log in.
        """
        session = self.connect(tls="none")
        self.assertEqual(
            session.lines(),
            [
                b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED NAMESPACE IDLE] "
                b"mail.example.test IMAP4rev1 server ready"
            ],
        )
        self.assertEqual(
            session.command(b"a STARTTLS"), [b"a BAD STARTTLS is not available"]
        )
        self.assertIsNone(session.transport.tlsOptions)
        self.assertEqual(
            session.command(b"b LOGIN demo@example.test demo"), [b"b " + NO_PLAINTEXT]
        )

    def test_noCertificate(self):
        """
        A STARTTLS listener without TLS options does not offer STARTTLS.
        """
        self.ctx.tlsOptions = None
        session = self.connect()
        self.assertEqual(
            session.command(b"a CAPABILITY")[0],
            b"* CAPABILITY IMAP4rev1 LOGINDISABLED NAMESPACE IDLE",
        )

    def test_implicitTLS(self):
        """
        Under implicit TLS, authentication is allowed at once and STARTTLS is
        neither offered nor accepted.
        """
        session = self.connect(tls="implicit", transport=SSLStringTransport())
        self.assertEqual(
            session.lines(),
            [
                b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN NAMESPACE IDLE] "
                b"mail.example.test IMAP4rev1 server ready"
            ],
        )
        self.assertEqual(
            session.command(b"a STARTTLS"), [b"a BAD STARTTLS is not available"]
        )
        self.assertEqual(
            session.command(b"b LOGIN demo@example.test demo"),
            [b"b OK LOGIN completed"],
        )

    def test_startTLSTwice(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a STARTTLS"), [b"a BAD Unsupported command"]
        )

    def test_startTLSAgainBeforeLogin(self):
        session = self.connect()
        session.command(b"a STARTTLS")
        self.assertEqual(
            session.command(b"b STARTTLS"), [b"b BAD STARTTLS is not available"]
        )


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
        self.assertIsNone(session.proto.account)
        # The session goes on under TLS from a clean state.
        self.assertEqual(
            session.command(b"d CAPABILITY"),
            [
                b"* CAPABILITY IMAP4rev1 AUTH=PLAIN NAMESPACE IDLE",
                b"d OK CAPABILITY completed",
            ],
        )

    def test_partialLineDiscarded(self):
        """
        Half a command after STARTTLS is not glued to the first line sent
        under TLS.
        """
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a STARTTLS\r\nb LOGIN demo@exa"),
            b"a OK Begin TLS negotiation now\r\n",
        )
        self.assertEqual(session.command(b"c NOOP"), [b"c OK NOOP completed"])


class LoginTests(IMAPTestMixin, unittest.TestCase):
    """
    LOGIN and AUTHENTICATE PLAIN (RFC 3501 6.2.2, 6.2.3; RFC 4616).
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

    def test_authenticateRefusedBeforeTLS(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a AUTHENTICATE PLAIN"), [b"a " + NO_PLAINTEXT]
        )

    def test_loginSuccess(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b"a LOGIN demo@example.test demo"),
            [b"a OK LOGIN completed"],
        )
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual(session.proto.account.address, ADDRESS)

    def test_loginQuoted(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b'a LOGIN "demo@example.test" "demo"'),
            [b"a OK LOGIN completed"],
        )

    def test_loginLiteral(self):
        session = self.startTLS()
        self.assertEqual(
            session.command(b"a LOGIN {17}"), [b"+ Ready for 17 octets of text"]
        )
        self.assertEqual(
            session.command(b"demo@example.test demo"), [b"a OK LOGIN completed"]
        )

    def test_loginQuotedEscapes(self):
        """
        Backslash escapes in quoted strings are undone (RFC 3501 9), so a
        password with C{"} or C{\\} works as Python's imaplib sends it.
        """
        self.ctx = makeContext(
            self.mktemp(), users=[(ADDRESS, 'pa"ss\\word')], tlsOptions=object()
        )
        session = self.startTLS()
        self.assertEqual(
            session.command(b'a LOGIN "demo@example.test" "pa\\"ss\\\\word"'),
            [b"a OK LOGIN completed"],
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
        """
        An unknown user gets the same answer, after the same delay.
        """
        session = self.startTLS()
        self.assertFailsAfterDelay(session, b"a LOGIN nobody@example.test demo")

    def test_commandsWaitForLogin(self):
        """
        A command pipelined after a LOGIN that is still being checked runs
        after it, in the state LOGIN leaves.
        """
        session = self.startTLS()
        self.assertEqual(
            session.send(b"a LOGIN demo@example.test wrong\r\nb SELECT INBOX\r\n"),
            b"",
        )
        self.ctx.clock.advance(self.ctx.config.auth.failureDelay)
        self.assertEqual(
            session.lines(),
            [
                b"a NO [AUTHENTICATIONFAILED] Authentication failed.",
                b"b BAD Unsupported command",
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

    def test_authenticateBadBase64(self):
        session = self.startTLS()
        session.command(b"a AUTHENTICATE PLAIN")
        self.assertEqual(session.command(b"!!!"), [b"a BAD Invalid base64 data"])

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
        self.assertEqual(session.command(b"a NOOP"), [b"a OK NOOP completed"])


class SelectTests(IMAPTestMixin, unittest.TestCase):
    """
    SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2).
    """

    def test_select(self):
        self.deliver(MSG1, MSG2, MSG3)
        info = self.folder.snapshot()[0]
        self.folder.setFlags(info, {"\\Seen"})
        session = self.login()
        self.assertEqual(
            session.command(b"a SELECT INBOX"),
            [
                b"* FLAGS (" + FLAGS + b")",
                b"* 3 EXISTS",
                b"* 2 RECENT",
                b"* OK [UNSEEN 2] First unseen message",
                b"* OK [UIDVALIDITY %d] UIDs valid" % (self.folder.uidValidity,),
                b"* OK [UIDNEXT 4] Predicted next UID",
                b"* OK [PERMANENTFLAGS (" + FLAGS + b")] Flags permitted",
                b"a OK [READ-WRITE] SELECT completed",
            ],
        )
        self.assertEqual(session.proto.state, "select")

    def test_examineEmpty(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a EXAMINE inbox"),
            [
                b"* FLAGS (" + FLAGS + b")",
                b"* 0 EXISTS",
                b"* 0 RECENT",
                b"* OK [UIDVALIDITY %d] UIDs valid" % (self.folder.uidValidity,),
                b"* OK [UIDNEXT 1] Predicted next UID",
                b"* OK [PERMANENTFLAGS ()] Read-only mailbox",
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

    def test_noSuchMailbox(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a SELECT Archive"),
            [b"a NO [NONEXISTENT] Mailbox does not exist"],
        )
        self.assertEqual(
            session.command(b"b SELECT ../../etc"),
            [b"b NO [NONEXISTENT] Mailbox does not exist"],
        )

    def test_failedSelectDeselects(self):
        session = self.selected()
        session.command(b"a SELECT Archive")
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual(
            session.command(b"b FETCH 1 FLAGS"), [b"b BAD Unsupported command"]
        )

    def test_selectBeforeLogin(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.command(b"a SELECT INBOX"), [b"a BAD Unsupported command"]
        )

    def test_list(self):
        session = self.login()
        self.assertEqual(
            session.command(b'a LIST "" "*"'),
            [b'* LIST () "/" INBOX', b"a OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'b LIST "" %'),
            [b'* LIST () "/" INBOX', b"b OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'c LIST "" ""'),
            [b'* LIST (\\Noselect) "/" ""', b"c OK LIST completed"],
        )
        self.assertEqual(
            session.command(b'd LIST "" Archive'), [b"d OK LIST completed"]
        )
        self.assertEqual(
            session.command(b'e LSUB "" "*"'),
            [b'* LSUB () "/" INBOX', b"e OK LSUB completed"],
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

    def test_namespace(self):
        session = self.login()
        self.assertEqual(
            session.command(b"a NAMESPACE"),
            [b'* NAMESPACE (("" "/")) NIL NIL', b"a OK NAMESPACE command completed"],
        )

    def test_uidsStableAcrossSessions(self):
        """
        UIDs do not depend on the session, nor on the store object (a
        restart).
        """
        self.deliver(MSG1, MSG2, MSG3)
        first = self.selected()
        expected = [
            b"* 1 FETCH (UID 1)",
            b"* 2 FETCH (UID 2)",
            b"* 3 FETCH (UID 3)",
            b"a OK FETCH completed",
        ]
        self.assertEqual(first.command(b"a FETCH 1:* UID"), expected)
        validity = self.folder.uidValidity
        second = self.selected()
        self.assertEqual(second.command(b"a FETCH 1:* UID"), expected)

        self.ctx.store = MaildirStore(self.ctx.config.storage.path)
        self.ctx.portal.realm.store = self.ctx.store
        third = self.selected()
        self.assertEqual(third.command(b"a FETCH 1:* UID"), expected)
        self.assertEqual(
            self.ctx.store.folder(ADDRESS).uidValidity, validity
        )
        self.assertEqual(
            third.command(b"b UID FETCH 2:3 FLAGS"),
            [
                b"* 2 FETCH (FLAGS () UID 2)",
                b"* 3 FETCH (FLAGS () UID 3)",
                b"b OK UID FETCH completed",
            ],
        )


class FetchTests(IMAPTestMixin, unittest.TestCase):
    """
    FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2)
        self.folder.markSeenByClient(self.folder.snapshot())

    def test_bodyByteExactAndSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 BODY[]\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % (len(MSG1),)
            + MSG1
            + b" FLAGS (\\Seen))\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: {"\\Seen"}, 2: set()})
        # Already seen: no FLAGS this time.
        self.assertEqual(
            session.send(b"b FETCH 1 BODY[]\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % (len(MSG1),)
            + MSG1
            + b")\r\nb OK FETCH completed\r\n",
        )

    def test_rfc822SetsSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 2 (FLAGS RFC822)\r\n"),
            b"* 2 FETCH (FLAGS (\\Seen) RFC822 {%d}\r\n" % (len(MSG2),)
            + MSG2
            + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags()[2], {"\\Seen"})

    def test_rfc822TextSetsSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 2 RFC822.TEXT\r\n"),
            b"* 2 FETCH (RFC822.TEXT {5}\r\nBye\r\n FLAGS (\\Seen))\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_peekDoesNotSetSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY.PEEK[] RFC822.HEADER)\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % (len(MSG1),)
            + MSG1
            + b" RFC822.HEADER {%d}\r\n" % (len(MSG1) - 14,)
            + MSG1[:-14]
            + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: set(), 2: set()})

    def test_examineDoesNotSetSeen(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 2 BODY[]\r\n"),
            b"* 2 FETCH (BODY[] {%d}\r\n" % (len(MSG2),)
            + MSG2
            + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: set(), 2: set()})

    def test_sizeMatchesBody(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a FETCH 1:2 RFC822.SIZE"),
            [
                b"* 1 FETCH (RFC822.SIZE %d)" % (len(MSG1),),
                b"* 2 FETCH (RFC822.SIZE %d)" % (len(MSG2),),
                b"a OK FETCH completed",
            ],
        )

    def test_headerAndText(self):
        """
        BODY[HEADER] ends with the empty line and BODY[TEXT] is the rest:
        together they are BODY[], repeated and folded fields as stored.
        """
        header, text = MSG1.split(b"\r\n\r\n", 1)
        header += b"\r\n\r\n"
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])\r\n"),
            b"* 1 FETCH (BODY[HEADER] {%d}\r\n" % (len(header),)
            + header
            + b" BODY[TEXT] {%d}\r\n" % (len(text),)
            + text
            + b")\r\na OK FETCH completed\r\n",
        )

    def test_headerFields(self):
        session = self.selected()
        fields = (
            b"Subject: first\r\nReceived: from a\r\n  by b\r\n"
            b"Received: from c\r\n\r\n"
        )
        self.assertEqual(
            session.send(b"a FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT received)]\r\n"),
            b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT RECEIVED)] {%d}\r\n"
            % (len(fields),)
            + fields
            + b")\r\na OK FETCH completed\r\n",
        )
        rest = b"From: bob@example.test\r\n\r\n"
        self.assertEqual(
            session.send(b"b FETCH 2 BODY.PEEK[HEADER.FIELDS.NOT (Subject)]\r\n"),
            b"* 2 FETCH (BODY[HEADER.FIELDS.NOT (SUBJECT)] {%d}\r\n" % (len(rest),)
            + rest
            + b")\r\nb OK FETCH completed\r\n",
        )

    def test_partial(self):
        """
        A partial fetch names only the origin octet; a range past the end
        gives what there is (RFC 3501 6.4.5).
        """
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY.PEEK[]<6.5> BODY.PEEK[TEXT]<7.100>)\r\n"),
            b"* 1 FETCH (BODY[]<6> {5}\r\n"
            + MSG1[6:11]
            + b" BODY[TEXT]<7> {7}\r\nWorld\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(
            session.send(b"b FETCH 2 BODY.PEEK[]<1000.10>\r\n"),
            b"* 2 FETCH (BODY[]<1000> {0}\r\n)\r\nb OK FETCH completed\r\n",
        )

    def test_internalDate(self):
        info = self.folder.snapshot()[0]
        os.utime(info.path, (0, 1700000000.5))
        session = self.selected()
        self.assertEqual(
            session.command(b"a FETCH 1 (INTERNALDATE)"),
            [
                b'* 1 FETCH (INTERNALDATE "14-Nov-2023 22:13:20 +0000")',
                b"a OK FETCH completed",
            ],
        )

    def test_fast(self):
        session = self.selected()
        response = session.command(b"a FETCH 2 FAST")
        self.assertRegex(
            response[0],
            rb'^\* 2 FETCH \(FLAGS \(\) INTERNALDATE "[ 0-9][0-9]-[A-Z][a-z]{2}-'
            rb'[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} \+0000" RFC822.SIZE %d\)$'
            % (len(MSG2),),
        )

    def test_uidFetch(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID FETCH 2:* FLAGS"),
            [b"* 2 FETCH (FLAGS () UID 2)", b"a OK UID FETCH completed"],
        )
        self.assertEqual(
            session.command(b"b UID FETCH 5:* FLAGS"),
            [b"* 2 FETCH (FLAGS () UID 2)", b"b OK UID FETCH completed"],
        )
        self.assertEqual(
            session.command(b"c UID FETCH 7 FLAGS"), [b"c OK UID FETCH completed"]
        )

    def test_invalidSequenceNumber(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a FETCH 3 FLAGS"),
            [b"a BAD Invalid message sequence number"],
        )

    def test_unsupportedItem(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a FETCH 1 BODYSTRUCTURE"),
            [b"a BAD Unsupported fetch attribute: BODYSTRUCTURE"],
        )
        self.assertEqual(
            session.command(b"b FETCH 1 (FLAGS BOGUS)"),
            [b"b BAD Illegal syntax: Invalid fetch attributes"],
        )
        self.assertEqual(self.flags(), {1: set(), 2: set()})

    def test_mimeParts(self):
        self.deliver(MULTIPART)
        session = self.selected()
        self.assertEqual(
            session.send(
                b"a FETCH 3 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.HEADER] "
                b"BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[3])\r\n"
            ),
            b"* 3 FETCH (BODY[1] {8}\r\npart one"
            b" BODY[1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n"
            b" BODY[2.HEADER] {18}\r\nSubject: inner\r\n\r\n"
            b" BODY[2.TEXT] {10}\r\ninner body"
            b" BODY[2.1] {10}\r\ninner body"
            b" BODY[3] NIL)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_singlePartNumberOne(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 2 BODY.PEEK[1]\r\n"),
            b"* 2 FETCH (BODY[1] {5}\r\nBye\r\n)\r\na OK FETCH completed\r\n",
        )

    def test_messageGone(self):
        """
        A message another session expunged is skipped with NO (RFC 2180
        4.1.2), and no EXPUNGE is sent during FETCH (RFC 3501 7.4.1).
        """
        session = self.selected()
        self.folder.remove([self.folder.snapshot()[0]])
        self.assertEqual(
            session.send(b"a FETCH 1:2 (UID BODY.PEEK[TEXT])\r\n"),
            b"* 2 FETCH (UID 2 BODY[TEXT] {5}\r\nBye\r\n)\r\n"
            b"a NO Some of the requested messages no longer exist\r\n",
        )
        self.assertEqual(
            session.command(b"b FETCH 1:2 UID"),
            [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"b OK FETCH completed"],
        )
        self.assertEqual(
            session.command(b"c NOOP"), [b"* 1 EXPUNGE", b"c OK NOOP completed"]
        )


class StoreTests(IMAPTestMixin, unittest.TestCase):
    """
    STORE and UID STORE (RFC 3501 6.4.6, 6.4.8).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.folder.markSeenByClient(self.folder.snapshot())

    def test_addRemoveReplace(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1:2 +FLAGS (\\Seen \\flagged)"),
            [
                b"* 1 FETCH (FLAGS (\\Flagged \\Seen))",
                b"* 2 FETCH (FLAGS (\\Flagged \\Seen))",
                b"a OK STORE completed",
            ],
        )
        self.assertEqual(
            session.command(b"b STORE 2 -FLAGS \\Flagged"),
            [b"* 2 FETCH (FLAGS (\\Seen))", b"b OK STORE completed"],
        )
        self.assertEqual(
            session.command(b"c STORE 1 FLAGS (\\Answered)"),
            [b"* 1 FETCH (FLAGS (\\Answered))", b"c OK STORE completed"],
        )
        self.assertEqual(
            self.flags(), {1: {"\\Answered"}, 2: {"\\Seen"}, 3: set()}
        )

    def test_silent(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 3 +FLAGS.SILENT (\\Deleted)"),
            [b"a OK STORE completed"],
        )
        self.assertEqual(self.flags()[3], {"\\Deleted"})

    def test_uidStore(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID STORE 2,3 +FLAGS (\\Draft)"),
            [
                b"* 2 FETCH (FLAGS (\\Draft) UID 2)",
                b"* 3 FETCH (FLAGS (\\Draft) UID 3)",
                b"a OK UID STORE completed",
            ],
        )
        self.assertEqual(
            session.command(b"b UID STORE 2 -FLAGS.SILENT (\\Draft)"),
            [b"b OK UID STORE completed"],
        )
        self.assertEqual(self.flags(), {1: set(), 2: set(), 3: {"\\Draft"}})

    def test_keywordsIgnored(self):
        """
        PERMANENTFLAGS has no C{\\*}: keywords and C{\\Recent} are ignored.
        """
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (Junk \\Recent \\Seen)"),
            [b"* 1 FETCH (FLAGS (\\Seen))", b"a OK STORE completed"],
        )

    def test_readOnly(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (\\Seen)"),
            [b"a NO [READ-ONLY] Mailbox is read-only"],
        )
        self.assertEqual(self.flags()[1], set())

    def test_invalidItem(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a STORE 1 LABELS (\\Seen)"),
            [b"a BAD Invalid STORE data item"],
        )
        self.assertEqual(
            session.command(b"b STORE 1 +FLAGS"),
            [b"b BAD Illegal syntax: Missing argument"],
        )


class ExpungeTests(IMAPTestMixin, unittest.TestCase):
    """
    EXPUNGE and CLOSE (RFC 3501 6.4.2, 6.4.3).
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2, MSG3)
        self.folder.markSeenByClient(self.folder.snapshot())

    def files(self):
        return sorted(os.listdir(os.path.join(self.folder.path, "cur")))

    def test_expunge(self):
        session = self.selected()
        session.command(b"a STORE 1,3 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(
            session.command(b"b EXPUNGE"),
            [b"* 3 EXPUNGE", b"* 1 EXPUNGE", b"b OK EXPUNGE completed"],
        )
        self.assertEqual(len(self.files()), 1)
        self.assertEqual([i.uid for i in self.folder.snapshot()], [2])
        self.assertEqual(
            session.command(b"c FETCH 1:* UID"),
            [b"* 1 FETCH (UID 2)", b"c OK FETCH completed"],
        )

    def test_expungeReadOnly(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a EXPUNGE"), [b"a NO [READ-ONLY] Mailbox is read-only"]
        )

    def test_close(self):
        session = self.selected()
        session.command(b"a STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(session.command(b"b CLOSE"), [b"b OK CLOSE completed"])
        self.assertEqual(session.proto.state, "auth")
        self.assertEqual([i.uid for i in self.folder.snapshot()], [1, 3])
        self.assertEqual(self.folder._listeners, [])

    def test_closeReadOnly(self):
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Deleted"})
        session = self.selected(b"EXAMINE")
        self.assertEqual(session.command(b"b CLOSE"), [b"b OK CLOSE completed"])
        self.assertEqual(len(self.folder.snapshot()), 3)


class OtherSessionTests(IMAPTestMixin, unittest.TestCase):
    """
    Changes made elsewhere are reported at NOOP and CHECK (RFC 3501 6.1.2,
    7.3.1, 7.4.1), and during IDLE (RFC 2177).
    """

    def test_newMessageAtNoop(self):
        self.deliver(MSG1)
        session = self.selected()
        self.deliver(MSG2, MSG3)
        self.assertEqual(
            session.command(b"a NOOP"),
            [b"* 3 EXISTS", b"* 3 RECENT", b"a OK NOOP completed"],
        )
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])
        self.assertEqual(
            session.command(b"c FETCH 3 (UID FLAGS)"),
            [b"* 3 FETCH (UID 3 FLAGS (\\Recent))", b"c OK FETCH completed"],
        )

    def test_otherSessionChanges(self):
        self.deliver(MSG1, MSG2, MSG3)
        watcher = self.selected()
        other = self.selected()
        other.command(b"a STORE 1:3 +FLAGS.SILENT (\\Seen)")
        other.command(b"b STORE 2 +FLAGS.SILENT (\\Deleted)")
        other.command(b"c EXPUNGE")
        self.deliver(MSG1)
        self.assertEqual(
            watcher.command(b"d CHECK"),
            [
                b"* 2 EXPUNGE",
                b"* 1 FETCH (FLAGS (\\Seen \\Recent))",
                b"* 2 FETCH (FLAGS (\\Seen \\Recent))",
                b"* 3 EXISTS",
                b"* 3 RECENT",
                b"d OK CHECK completed",
            ],
        )

    def test_noExpungeDuringStore(self):
        self.deliver(MSG1, MSG2)
        session = self.selected()
        self.folder.remove([self.folder.snapshot()[0]])
        self.assertEqual(
            session.command(b"a STORE 1:2 +FLAGS (\\Flagged)"),
            [
                b"* 2 FETCH (FLAGS (\\Flagged \\Recent))",
                b"a NO Some of the requested messages no longer exist",
            ],
        )

    def test_storeKeepsOtherSessionsFlags(self):
        """
        STORE changes the flags on disk, not this session's older view of
        them: a flag another session set meanwhile survives.
        """
        self.deliver(MSG1)
        session = self.selected()
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Flagged"})
        self.assertEqual(
            session.command(b"a STORE 1 +FLAGS (\\Answered)"),
            [
                b"* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent))",
                b"a OK STORE completed",
            ],
        )
        self.assertEqual(self.flags(), {1: {"\\Answered", "\\Flagged"}})

    def test_implicitSeenKeepsOtherSessionsFlags(self):
        self.deliver(MSG2)
        session = self.selected()
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Draft"})
        self.assertEqual(
            session.send(b"a FETCH 1 (FLAGS BODY[TEXT])\r\n"),
            b"* 1 FETCH (FLAGS (\\Seen \\Draft \\Recent) BODY[TEXT] {5}\r\nBye\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: {"\\Seen", "\\Draft"}})

    def test_idle(self):
        self.deliver(MSG1)
        session = self.selected()
        self.assertEqual(session.command(b"a IDLE"), [b"+ idling"])
        self.deliver(MSG2)
        self.assertEqual(session.lines(), [b"* 2 EXISTS", b"* 2 RECENT"])
        # IDLE ends only on DONE.
        self.assertEqual(session.command(b"b NOOP"), [b"* BAD Expected DONE"])
        self.folder.setFlags(self.folder.snapshot()[0], {"\\Flagged"})
        self.assertEqual(
            session.lines(), [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))"]
        )
        self.assertEqual(session.command(b"DONE"), [b"a OK IDLE terminated"])
        self.deliver(MSG3)
        self.assertEqual(session.lines(), [])
        self.assertEqual(
            session.command(b"c NOOP"),
            [b"* 3 EXISTS", b"* 3 RECENT", b"c OK NOOP completed"],
        )

    def test_idleReportsPendingChanges(self):
        session = self.selected()
        self.deliver(MSG1)
        self.assertEqual(
            session.command(b"a IDLE"), [b"+ idling", b"* 1 EXISTS", b"* 1 RECENT"]
        )

    def test_idleUnselected(self):
        session = self.login()
        self.assertEqual(session.command(b"a IDLE"), [b"+ idling"])
        self.assertEqual(session.command(b"done"), [b"a OK IDLE terminated"])

    def test_listenerRemovedOnDisconnect(self):
        session = self.selected()
        self.assertEqual(len(self.folder._listeners), 1)
        session.proto.connectionLost(None)
        self.assertEqual(self.folder._listeners, [])


class DeferredRunner:
    """
    A C{runBlocking} whose calls complete only when the test says so, like
    a thread pool that has not got round to them yet.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, f, *args, **kwargs):
        d = defer.Deferred()
        self.pending.append((d, f, args, kwargs))
        return d

    def runAll(self):
        while self.pending:
            d, f, args, kwargs = self.pending.pop(0)
            d.callback(f(*args, **kwargs))


class PipeliningTests(IMAPTestMixin, unittest.TestCase):
    """
    Commands pipelined behind one that waits on the disk run after it, in
    order (RFC 3501 5.5).
    """

    def test_pipelinedAfterSelect(self):
        self.deliver(MSG1)
        session = self.login()
        runner = DeferredRunner()
        session.proto.context.runBlocking = runner
        session.proto.account.runBlocking = runner
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


class LimitTests(IMAPTestMixin, unittest.TestCase):
    """
    Bounded lines and literals, autologout.
    """

    overrides = {"access": {"max_line_length": 200, "max_literal_size": 100}}

    def test_longLine(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a NOOP " + b"x" * 300), b"* BYE Command line too long\r\n"
        )
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(session.send(b"\r\nb NOOP\r\n"), b"")

    def test_longTerminatedLine(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a NOOP " + b"x" * 300 + b"\r\nb LOGOUT\r\n"),
            b"* BYE Command line too long\r\n",
        )

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
            [b"a BAD Illegal syntax: Literal too long! I accept at most 100 octets"],
        )
        self.assertEqual(session.command(b"b NOOP"), [b"b OK NOOP completed"])

    def test_preauthTimeout(self):
        session = self.connect()
        session.output()
        self.ctx.clock.advance(59)
        self.assertFalse(session.transport.disconnecting)
        self.ctx.clock.advance(1)
        self.assertEqual(session.lines(), [b"* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)

    def test_postauthTimeout(self):
        session = self.selected()
        self.ctx.clock.advance(1799)
        session.command(b"a NOOP")
        self.ctx.clock.advance(1799)
        self.assertFalse(session.transport.disconnecting)
        self.ctx.clock.advance(1)
        self.assertEqual(session.lines(), [b"* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(self.folder._listeners, [])

    def test_logout(self):
        session = self.connect()
        session.output()
        self.assertEqual(
            session.send(b"a LOGOUT\r\nb NOOP\r\n"),
            b"* BYE Logging out\r\na OK LOGOUT completed\r\n",
        )
        self.assertTrue(session.transport.disconnecting)

    def test_unsupportedCommands(self):
        session = self.selected()
        for line in (b"a SEARCH ALL", b"a COPY 1 INBOX", b"a APPEND INBOX {3}"):
            self.assertEqual(session.command(line), [b"a BAD Unsupported command"])
        self.assertEqual(
            session.command(b"b UID SEARCH ALL"), [b"b BAD Unsupported UID command"]
        )
        self.assertEqual(
            session.command(b"c CREATE Archive"),
            [b"c NO Creating mailboxes is not supported yet"],
        )


class InterfaceTests(IMAPTestMixin, unittest.TestCase):
    """
    The adapters provide the L{twisted.mail.imap4} interfaces.
    """

    def test_account(self):
        avatar = self.ctx.portal.realm.requestAvatar(ADDRESS, None, IMailUser)[1]
        account = MaildirAccount(avatar, self.ctx.runBlocking)
        self.assertTrue(verifyObject(imap4.IAccount, account))
        self.assertTrue(verifyObject(imap4.INamespacePresenter, account))
        self.assertTrue(verifyObject(imap4.IMailboxInfo, MailboxInfo()))
        mbox = self.successResultOf(account.select("INBOX"))
        self.assertTrue(verifyObject(imap4.IMailbox, mbox))
        self.assertTrue(verifyObject(imap4.ICloseableMailbox, mbox))
        self.assertIsNone(self.successResultOf(account.select("Nope")))

    def test_message(self):
        self.deliver(MULTIPART)
        info = self.folder.snapshot()[0]
        msg = MaildirMessage(info).load(self.folder)
        self.assertTrue(verifyObject(imap4.IMessage, msg))
        self.assertTrue(verifyObject(imap4.IMessageFile, msg))
        self.assertEqual(msg.open().read(), MULTIPART)
        self.assertEqual(msg.getSize(), len(MULTIPART))
        self.assertTrue(msg.isMultipart())
        part = msg.getSubPart(0)
        self.assertTrue(verifyObject(imap4.IMessagePart, part))
        self.assertIsInstance(part, MessagePart)
        self.assertEqual(part.getBodyFile().read(), b"part one")
        self.assertEqual(part.getHeaders(False, "content-type"), {
            "content-type": "text/plain"
        })
        self.assertFalse(part.isMultipart())
        self.assertRaises(IndexError, msg.getSubPart, 2)
        self.assertEqual(
            msg.getHeaders(True, "content-type", "mime-version"),
            {"from": "carol@example.test"},
        )

    def test_folderMailbox(self):
        self.deliver(MSG1, MSG2)
        mbox = self.successResultOf(
            FolderMailbox.open(self.folder, self.ctx.runBlocking, True)
        )
        self.assertEqual(mbox.getUID(2), 2)
        self.assertEqual(mbox.getUnseenCount(), 2)
        self.assertEqual(
            mbox.requestStatus(["MESSAGES", "UIDNEXT"]), {"MESSAGES": 2, "UIDNEXT": 3}
        )
        result = self.successResultOf(
            mbox.store(imap4.MessageSet(1, None), ["\\Deleted"], 1, False)
        )
        flags = ["\\Deleted", "\\Recent"]
        self.assertEqual(result, {1: flags, 2: flags})
        self.assertEqual(self.successResultOf(mbox.expunge()), [2, 1])
        self.assertEqual(mbox.getMessageCount(), 0)
        self.failureResultOf(mbox.addMessage(None), imap4.MailboxException)
