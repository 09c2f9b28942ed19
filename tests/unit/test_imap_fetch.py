"""
Tests for FETCH (RFC 3501 6.4.5, 7.4.2): byte-exact sections and partials,
HEADER.FIELDS, ENVELOPE, BODYSTRUCTURE, implicit C{\\Seen}, streaming and
the MIME depth limit.
"""

from twisted.trial import unittest

from mailplat.imap import fetch, structure
from mailplat.imap.message import MAX_MIME_DEPTH, MessagePart, MimeTooDeep, resolvePart
from mailplat.imap.wire import Arguments, ParseError
from tests.imapsupport import MSG1, MSG2, MULTIPART, IMAPTestMixin, SSLStringTransport


class PausingTransport(SSLStringTransport):
    """
    A transport whose buffer is "full" after every write while a producer
    is registered.
    """

    def write(self, data):
        SSLStringTransport.write(self, data)
        if self.producer is not None:
            self.producer.pauseProducing()


class FetchTests(IMAPTestMixin, unittest.TestCase):
    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MSG1, MSG2)
        self.seen()

    def test_bodyByteExactAndSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 BODY[]\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b" FLAGS (\\Seen))\r\n"
            b"a OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: {"\\Seen"}, 2: set()})
        # Already seen: no FLAGS this time.
        self.assertEqual(
            session.send(b"b FETCH 1 BODY[]\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % len(MSG1) + MSG1 + b")\r\nb OK FETCH completed\r\n",
        )

    def test_rfc822SetsSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 2 (FLAGS RFC822)\r\n"),
            b"* 2 FETCH (FLAGS (\\Seen) RFC822 {%d}\r\n" % len(MSG2) + MSG2
            + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags()[2], {"\\Seen"})

    def test_rfc822TextSetsSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 2 RFC822.TEXT\r\n"),
            b"* 2 FETCH (RFC822.TEXT {5}\r\nBye\r\n FLAGS (\\Seen))\r\na OK FETCH completed\r\n",
        )

    def test_peekDoesNotSetSeen(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY.PEEK[] RFC822.HEADER)\r\n"),
            b"* 1 FETCH (BODY[] {%d}\r\n" % len(MSG1) + MSG1
            + b" RFC822.HEADER {%d}\r\n" % (len(MSG1) - 14) + MSG1[:-14]
            + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags(), {1: set(), 2: set()})

    def test_examineDoesNotSetSeen(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 2 BODY[]\r\n"),
            b"* 2 FETCH (BODY[] {%d}\r\n" % len(MSG2) + MSG2 + b")\r\na OK FETCH completed\r\n",
        )
        self.assertEqual(self.flags()[2], set())

    def test_sizeEqualsBytesServed(self):
        session = self.selected()
        self.assertEqual(
            session.send(b"a FETCH 1:2 (RFC822.SIZE)\r\n"),
            b"* 1 FETCH (RFC822.SIZE %d)\r\n* 2 FETCH (RFC822.SIZE %d)\r\n"
            b"a OK FETCH completed\r\n" % (len(MSG1), len(MSG2)),
        )

    def test_headerAndText(self):
        session = self.selected(b"EXAMINE")
        header, text = MSG1[:-14], MSG1[-14:]
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY[HEADER] BODY[TEXT])\r\n"),
            b"* 1 FETCH (BODY[HEADER] {%d}\r\n" % len(header) + header
            + b" BODY[TEXT] {14}\r\n" + text + b")\r\na OK FETCH completed\r\n",
        )

    def test_headerFieldsKeepDuplicatesAndCase(self):
        session = self.selected(b"EXAMINE")
        fields = b"Received: from a\r\n  by b\r\nReceived: from c\r\n\r\n"
        self.assertEqual(
            session.send(b"a FETCH 1 BODY.PEEK[HEADER.FIELDS (received SUBJECT)]\r\n"),
            b"* 1 FETCH (BODY[HEADER.FIELDS (received SUBJECT)] {%d}\r\n"
            % (len(fields) + 16) + b"Subject: first\r\n" + fields
            + b")\r\na OK FETCH completed\r\n",
        )

    def test_headerFieldsNot(self):
        session = self.selected(b"EXAMINE")
        rest = b"From: Alice <alice@example.test>\r\nTo: demo@example.test\r\n\r\n"
        self.assertEqual(
            session.send(b'a FETCH 1 BODY[HEADER.FIELDS.NOT ("Received" Subject)]\r\n'),
            b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (Received Subject)] {%d}\r\n" % len(rest)
            + rest + b")\r\na OK FETCH completed\r\n",
        )

    def test_headerFieldsLiteral(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 2 BODY[HEADER.FIELDS ({7+}\r\nSubject)]\r\n"),
            b"* 2 FETCH (BODY[HEADER.FIELDS (Subject)] {19}\r\nSubject: second\r\n\r\n)\r\n"
            b"a OK FETCH completed\r\n",
        )

    def test_partial(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY[]<6.5> BODY[TEXT]<7.100> BODY[HEADER]<500.10>)\r\n"),
            b"* 1 FETCH (BODY[]<6> {5}\r\nAlice BODY[TEXT]<7> {7}\r\nWorld\r\n"
            b" BODY[HEADER]<500> {0}\r\n)\r\na OK FETCH completed\r\n",
        )

    def test_partialPastEnd(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 2 (BODY.PEEK[]<40.100> BODY.PEEK[]<1000.1>)\r\n"),
            b"* 2 FETCH (BODY[]<40> {8}\r\n" + MSG2[40:]
            + b" BODY[]<1000> {0}\r\n)\r\na OK FETCH completed\r\n",
        )

    def test_internalDateAndFast(self):
        info = self.folder.snapshot()[0]
        date = fetch.formatInternalDate(info.internalDate)
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a FETCH 1 FAST"),
            [b'* 1 FETCH (FLAGS () INTERNALDATE "%s" RFC822.SIZE %d)' % (date, len(MSG1)),
             b"a OK FETCH completed"],
        )

    def test_envelope(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a FETCH 1 ENVELOPE"),
            [
                b'* 1 FETCH (ENVELOPE (NIL "first" (("Alice" NIL "alice" "example.test")) '
                b'(("Alice" NIL "alice" "example.test")) (("Alice" NIL "alice" '
                b'"example.test")) ((NIL NIL "demo" "example.test")) NIL NIL NIL NIL))',
                b"a OK FETCH completed",
            ],
        )

    def test_uidFetchAddsUID(self):
        session = self.selected()
        self.assertEqual(
            session.command(b"a UID FETCH 2:* FLAGS"),
            [b"* 2 FETCH (FLAGS () UID 2)", b"a OK UID FETCH completed"],
        )
        self.assertEqual(
            session.command(b"b UID FETCH 5:* FLAGS"),
            [b"* 2 FETCH (FLAGS () UID 2)", b"b OK UID FETCH completed"],
        )
        self.assertEqual(session.command(b"c UID FETCH 7 FLAGS"), [b"c OK UID FETCH completed"])

    def test_invalidSequence(self):
        session = self.selected()
        for line in (b"a FETCH 3 FLAGS", b"a FETCH 1:5 FLAGS", b"a FETCH 2,4 FLAGS"):
            self.assertEqual(session.command(line), [b"a BAD Invalid message sequence number"])
        for line in (b"a FETCH x FLAGS", b"a FETCH 0 FLAGS", b"a FETCH 1: FLAGS",
                     b"a FETCH 4294967296 FLAGS"):
            self.assertEqual(session.command(line), [b"a BAD Invalid message set"])
        self.assertEqual(session.command(b"a FETCH 1 FOO"),
                         [b"a BAD Invalid fetch attribute FOO"])
        self.assertEqual(session.command(b"a FETCH 1 BODY[4.MIME"), [b"a BAD Missing argument"])
        self.assertEqual(session.command(b"a FETCH 1 BODY[4.MIME x"), [b"a BAD Expected ]"])
        self.assertEqual(session.command(b"a FETCH 1"), [b"a BAD Missing argument"])

    def test_emptyMailboxStar(self):
        session = self.selected(mailbox=b"Sent")
        self.assertEqual(session.command(b"a FETCH 1:* FLAGS"), [b"a OK FETCH completed"])

    def test_expungedByOtherSession(self):
        session = self.selected()
        self.folder.remove(self.folder.snapshot()[:1])
        self.assertEqual(
            session.command(b"a FETCH 1:2 UID"),
            [b"* 2 FETCH (UID 2)",
             b"a NO [EXPUNGEISSUED] Some of the requested messages no longer exist"],
        )
        self.assertEqual(
            session.command(b"b UID FETCH 1:2 UID"),
            [b"* 2 FETCH (UID 2)", b"* 1 EXPUNGE", b"b OK UID FETCH completed"],
        )

    def test_streamedWithBackPressure(self):
        """
        A whole message is streamed in chunks, and no more is read while the
        transport's buffer is full.
        """
        big = b"Subject: big\r\n\r\n" + b"x" * 200000 + b"\r\n"
        self.deliver(big)
        session = self.connect(tls="implicit", transport=PausingTransport())
        session.command(b"a LOGIN demo@example.test demo")
        session.command(b"b EXAMINE INBOX")
        out = session.send(b"c FETCH 3 BODY.PEEK[]\r\nd NOOP\r\n")
        steps = 0
        while session.transport.producer is not None:
            steps += 1
            session.transport.producer.resumeProducing()
            chunk = session.output()
            self.assertLessEqual(len(chunk), 64 * 1024 + 100)
            out += chunk
        self.assertEqual(
            out,
            b"* 3 FETCH (BODY[] {%d}\r\n" % len(big) + big
            + b")\r\nc OK FETCH completed\r\nd OK NOOP completed\r\n",
        )
        self.assertGreater(steps, 2)


class StructureTests(IMAPTestMixin, unittest.TestCase):
    """
    BODYSTRUCTURE, BODY and sections of a MIME message.
    """

    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(MULTIPART)
        self.seen()

    def test_bodystructure(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a FETCH 1 BODYSTRUCTURE"),
            [
                b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL '
                b'"7bit" 8 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 28 '
                b'(NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" '
                b'("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) 3 NIL NIL '
                b'NIL NIL) "mixed" ("boundary" "XX") NIL NIL NIL))',
                b"a OK FETCH completed",
            ],
        )

    def test_body(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a FETCH 1 BODY"),
            [
                b'* 1 FETCH (BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 1)'
                b'("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "inner" NIL NIL NIL NIL '
                b'NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" '
                b'10 1) 3) "mixed"))',
                b"a OK FETCH completed",
            ],
        )

    def test_sections(self):
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 1 (BODY[1] BODY[1.MIME] BODY[2.HEADER] BODY[2.TEXT] "
                         b"BODY[2.1] BODY[3] BODY[1.TEXT])\r\n"),
            b"* 1 FETCH (BODY[1] {8}\r\npart one BODY[1.MIME] {28}\r\n"
            b"Content-Type: text/plain\r\n\r\n BODY[2.HEADER] {18}\r\nSubject: inner\r\n\r\n"
            b" BODY[2.TEXT] {10}\r\ninner body BODY[2.1] {10}\r\ninner body BODY[3] NIL"
            b" BODY[1.TEXT] NIL)\r\na OK FETCH completed\r\n",
        )

    def test_singlePartSectionOne(self):
        self.deliver(MSG2)
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.send(b"a FETCH 2 BODY[1]\r\n"),
            b"* 2 FETCH (BODY[1] {5}\r\nBye\r\n)\r\na OK FETCH completed\r\n",
        )

    def test_mimeTooDeep(self):
        """
        A message nesting MIME parts deeper than the limit gets a clean NO
        for BODYSTRUCTURE, without recursion errors; other messages of the
        same FETCH are answered.
        """
        self.deliver(_nested(MAX_MIME_DEPTH + 5), _nested(3))
        session = self.selected(b"EXAMINE")
        response = session.command(b"a FETCH 2:3 BODYSTRUCTURE")
        self.assertEqual(len(response), 2)
        self.assertTrue(response[0].startswith(b"* 3 FETCH (BODYSTRUCTURE (((("))
        self.assertEqual(
            response[1], b"a NO [LIMIT] MIME structure nested more than 32 levels deep"
        )
        # The raw bytes stay available.
        self.assertTrue(session.send(b"b FETCH 2 BODY[]\r\n").endswith(
            b"b OK FETCH completed\r\n"))

    def test_hugeNesting(self):
        self.deliver(_nested(3000))
        session = self.selected(b"EXAMINE")
        self.assertEqual(
            session.command(b"a FETCH 2 (BODYSTRUCTURE)"),
            [b"a NO [LIMIT] MIME structure nested more than 32 levels deep"],
        )
        self.assertEqual(
            session.command(b"b FETCH 2 BODY[" + b"1." * 40 + b"TEXT]"),
            [b"b NO [LIMIT] MIME structure nested more than 32 levels deep"],
        )


def _nested(depth):
    """
    A message of C{depth} nested multiparts.
    """
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for n in range(depth):
        boundary = b"b%d" % n
        body = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--'
                + boundary + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n")
    return b"Subject: nested\r\n" + body


class ParserTests(unittest.TestCase):
    """
    L{fetch.parseAttributes} and the pure structure helpers.
    """

    def parse(self, text):
        args = Arguments([text])
        items = fetch.parseAttributes(args)
        args.end()
        return [item.responseName() for item in items]

    def test_macros(self):
        self.assertEqual(self.parse(b"ALL"), [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE",
                                              b"ENVELOPE"])
        self.assertEqual(self.parse(b"full"), [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE",
                                               b"ENVELOPE", b"BODY"])

    def test_sections(self):
        self.assertEqual(
            self.parse(b"(body.peek[1.2.mime] BODY[header.fields (A B)]<0.9>)"),
            [b"BODY[1.2.MIME]", b"BODY[HEADER.FIELDS (A B)]<0>"],
        )

    def test_invalid(self):
        for bad in (b"BODY[MIME]", b"BODY[1.]", b"BODY.PEEK", b"(FLAGS", b"BODY[0]",
                    b"BODY[TEXT]<1.0>", b"BODY[HEADER.FIELDS ()]", b"BODY[FOO]", b"()"):
            self.assertRaises(ParseError, self.parse, bad)

    def test_addressGroups(self):
        self.assertEqual(
            structure.parseAddresses(b"A Group: a@b.c, Mr X <x@y.z>;, <@r1,@r2:u@h>"),
            [(None, None, b"A Group", None), (None, None, b"a", b"b.c"),
             (b"Mr X", None, b"x", b"y.z"), (None, None, None, None),
             (None, b"@r1,@r2", b"u", b"h")],
        )
        self.assertEqual(
            structure.parseAddresses(b'"Doe, John" <john@x.org>, bob@y.org (Bob)'),
            [(b"Doe, John", None, b"john", b"x.org"), (None, None, b"bob", b"y.org")],
        )

    def test_envelopeQuotingAnd8Bit(self):
        part = MessagePart(
            b'From: "Q \\"x\\"" <q@x>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\nCc: undisclosed:;\r\n'
            b"Message-ID: <1@x>\r\n\r\n"
        )
        self.assertEqual(
            structure.envelope(part),
            b'(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe (("Q \\"x\\"" NIL "q" "x")) (("Q \\"x\\"" NIL "q" '
            b'"x")) (("Q \\"x\\"" NIL "q" "x")) NIL ((NIL NIL "undisclosed" NIL)(NIL NIL NIL '
            b'NIL)) NIL NIL "<1@x>")',
        )

    def test_bodystructureParameters(self):
        part = MessagePart(
            b"Content-Type: Text/HTML; CharSet=UTF-8; name*=utf-8''%C3%A4.html\r\n"
            b"Content-Transfer-Encoding: BASE64\r\nContent-ID: <c@x>\r\n"
            b'Content-Disposition: attachment; filename="a.html"\r\n'
            b"Content-Language: de, en\r\n\r\nPGI+\r\n"
        )
        self.assertEqual(
            structure.bodyStructure(part),
            b'("text" "html" ("charset" "UTF-8" "name*" "utf-8\'\'%C3%A4.html") "<c@x>" NIL '
            b'"base64" 6 1 NIL ("attachment" ("filename" "a.html")) ("de" "en") NIL)',
        )

    def test_digestDefault(self):
        part = MessagePart(
            b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n'
            b"Subject: in digest\r\n\r\nx\r\n--d--\r\n"
        )
        self.assertTrue(part.subparts()[0].isMessage())

    def test_resolvePartTooDeep(self):
        part = MessagePart(_nested(40))
        self.assertRaises(MimeTooDeep, resolvePart, part, [1] * 40)
        self.assertRaises(MimeTooDeep, structure.bodyStructure, part)
