"""
Tests for SEARCH (RFC 3501 6.4.4): every key, header and text search with
decoding, CHARSET, literals with continuation, and the nesting limit.
"""

import calendar

from twisted.trial import unittest

from mailplat.imap import search
from mailplat.imap.wire import Arguments, ParseError
from tests.imapsupport import IMAPTestMixin

M1 = (
    b"From: Alice <alice@example.test>\r\nTo: demo@example.test\r\n"
    b"Cc: carol@example.test\r\nSubject: Quarterly report\r\n"
    b"Date: Mon, 5 Feb 2024 23:30:00 -0800\r\nX-Tag: first\r\n\r\n"
    b"Numbers are up.\r\n"
)
M2 = (
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\nTo: demo@example.test\r\n"
    b"Bcc: secret@example.test\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"
    b"Date: Tue, 6 Feb 2024 08:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"
)
M3 = (
    b"From: bob@example.test\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"c2VjcmV0IHBsYW5z\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n"
    b"binaryneedle\r\n--b--\r\n"
)


class SearchTests(IMAPTestMixin, unittest.TestCase):
    def setUp(self):
        IMAPTestMixin.setUp(self)
        self.deliver(M1, M2, M3)
        infos = self.folder.snapshot()
        self.folder.storeFlags([1], add={"\\Seen", "\\Flagged"})
        self.folder.storeFlags([2], add={"\\Answered", "$Important"})
        self.folder.storeFlags([3], add={"\\Deleted", "\\Draft"})
        # INTERNALDATEs: 1, 2 and 3 March 2024.
        for n, info in enumerate(infos):
            date = calendar.timegm((2024, 3, 1 + n, 12, 0, 0))
            self.folder._index._execute(
                "UPDATE messages SET internaldate = ? WHERE uid = ?", (date, info.uid)
            )
        # Behind the store's back: forget its in-memory picture of the index.
        self.folder._state = None
        self.session = self.selected()
        self.session.command(b"x UID STORE 3 -FLAGS.SILENT (\\Seen)")

    def search(self, criteria, uid=False):
        command = b"UID SEARCH " if uid else b"SEARCH "
        response = self.session.command(b"a " + command + criteria)
        self.assertEqual(response[-1], b"a OK " + command.strip() + b" completed", response)
        self.assertEqual(len(response), 2, response)
        return [int(n) for n in response[0].split()[2:]]

    def test_all(self):
        self.assertEqual(self.search(b"ALL"), [1, 2, 3])
        self.assertEqual(self.search(b"ALL", uid=True), [1, 2, 3])

    def test_flags(self):
        cases = {
            b"SEEN": [1], b"UNSEEN": [2, 3], b"FLAGGED": [1], b"UNFLAGGED": [2, 3],
            b"ANSWERED": [2], b"UNANSWERED": [1, 3], b"DELETED": [3],
            b"UNDELETED": [1, 2], b"DRAFT": [3], b"UNDRAFT": [1, 2],
            b"KEYWORD $important": [2], b"UNKEYWORD $Important": [1, 3],
            b"RECENT": [1, 2, 3], b"NEW": [2, 3], b"OLD": [],
        }
        for key, expected in cases.items():
            self.assertEqual(self.search(key), expected, key)

    def test_sizesAndSets(self):
        sizes = [len(M1), len(M2), len(M3)]
        self.assertEqual(sizes, [179, 322, 265])
        self.assertEqual(self.search(b"LARGER 179"), [2, 3])
        self.assertEqual(self.search(b"SMALLER 322"), [1, 3])
        self.assertEqual(self.search(b"SMALLER 265"), [1])
        self.assertEqual(self.search(b"2:*"), [2, 3])
        self.assertEqual(self.search(b"UID 1,3"), [1, 3])
        self.assertEqual(self.search(b"UID 2:*", uid=True), [2, 3])
        self.assertEqual(self.search(b"*"), [3])

    def test_headers(self):
        self.assertEqual(self.search(b"FROM alice"), [1])
        self.assertEqual(self.search(b'FROM "j\xc3\xb6rg"'), [2])
        self.assertEqual(self.search(b"TO DEMO@"), [1, 2])
        self.assertEqual(self.search(b"CC carol"), [1])
        self.assertEqual(self.search(b"BCC secret"), [2])
        self.assertEqual(self.search(b"SUBJECT report"), [1])
        # Case-insensitive as Unicode case folding has it: "SS" matches "ß".
        self.assertEqual(self.search(b'SUBJECT "GR\xc3\x9cSSE"'), [2])
        self.assertEqual(self.search(b'SUBJECT "gr\xc3\xbc\xc3\x9fe"'), [2])
        self.assertEqual(self.search(b"HEADER X-Tag first"), [1])
        self.assertEqual(self.search(b'HEADER x-tag ""'), [1])
        self.assertEqual(self.search(b'HEADER Content-Type ""'), [2, 3])

    def test_bodyAndText(self):
        self.assertEqual(self.search(b"BODY numbers"), [1])
        self.assertEqual(self.search(b'BODY "k\xc3\xb6ln"'), [2])
        self.assertEqual(self.search(b"BODY secret"), [3])
        self.assertEqual(self.search(b"BODY binaryneedle"), [])
        self.assertEqual(self.search(b"TEXT secret"), [2, 3])
        self.assertEqual(self.search(b"TEXT quarterly"), [1])

    def test_charsetAndLiteral(self):
        """
        A search string as a literal, with the continuation request for the
        synchronizing form (RFC 3501 7.5).
        """
        self.assertEqual(
            self.session.command(b"a SEARCH CHARSET UTF-8 BODY {5}"),
            [b"+ Ready for literal data"],
        )
        self.assertEqual(
            self.session.command(b"k\xc3\xb6ln"), [b"* SEARCH 2", b"a OK SEARCH completed"]
        )
        self.assertEqual(
            self.session.send(b"b SEARCH CHARSET us-ascii SUBJECT {6+}\r\nreport\r\n"),
            b"* SEARCH 1\r\nb OK SEARCH completed\r\n",
        )
        self.assertEqual(
            self.session.command(b"c SEARCH CHARSET ISO-2022-JP ALL"),
            [b"c NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"],
        )

    def test_dates(self):
        self.assertEqual(self.search(b"BEFORE 2-Mar-2024"), [1])
        self.assertEqual(self.search(b"ON 2-Mar-2024"), [2])
        self.assertEqual(self.search(b'SINCE "02-Mar-2024"'), [2, 3])
        # The Date field's date, in its own time zone (RFC 3501 6.4.4).
        self.assertEqual(self.search(b"SENTON 5-Feb-2024"), [1])
        self.assertEqual(self.search(b"SENTBEFORE 6-Feb-2024"), [1])
        self.assertEqual(self.search(b"SENTSINCE 6-Feb-2024"), [2])

    def test_boolean(self):
        self.assertEqual(self.search(b"NOT SEEN"), [2, 3])
        self.assertEqual(self.search(b"OR FLAGGED DRAFT"), [1, 3])
        self.assertEqual(self.search(b"(OR FROM alice FROM bob) UNDELETED"), [1])
        self.assertEqual(self.search(b"NOT (FROM alice OR SEEN DRAFT)"), [2, 3])

    def test_nestingLimit(self):
        """
        Deep nesting gets a clean BAD, for parentheses, NOT and OR alike;
        32 levels are fine.
        """
        ok = b"(" * 31 + b"ALL" + b")" * 31
        self.assertEqual(self.search(ok), [1, 2, 3])
        for deep in (b"(" * 33 + b"ALL" + b")" * 33, b"NOT " * 33 + b"ALL",
                     b"OR ALL " * 33 + b"ALL", b"(" * 5000 + b"ALL" + b")" * 5000):
            self.session.proto.maxLine = len(deep) + 100
            self.assertEqual(
                self.session.command(b"a SEARCH " + deep),
                [b"a BAD Search program nested more than 32 levels deep"],
            )

    def test_badSearches(self):
        for criteria, error in [
            (b"FROB", b"Unknown search key FROB"),
            (b"(ALL", b"Missing )"),
            (b"ALL)", b"Expected a space"),
            (b"ALL ALL)", b"Expected a space"),
            (b"LARGER x", b"Invalid number"),
            (b"BEFORE 31-Foo-2024", b"Invalid date"),
            (b"SUBJECT", b"Missing argument"),
            (b"", b"Missing argument"),
        ]:
            self.assertEqual(
                self.session.command(b"a SEARCH " + criteria if criteria else b"a SEARCH"),
                [b"a BAD " + error], criteria,
            )

    def test_noMatches(self):
        self.assertEqual(
            self.session.command(b"a SEARCH FROM nobody"),
            [b"* SEARCH", b"a OK SEARCH completed"],
        )


class ParserTests(unittest.TestCase):
    def parse(self, text):
        return search.parseSearch(Arguments([text]))

    def test_optimizeReadsLast(self):
        program, _ = self.parse(b"BODY x SEEN FROM y LARGER 5")
        optimized = search.optimize(program)
        self.assertEqual([n[0] for n in optimized[1]], ["flag", "larger", "header", "body"])

    def test_modseq(self):
        program, usesModseq = self.parse(b'MODSEQ "/flags/\\\\draft" all 620162338')
        self.assertTrue(usesModseq)
        self.assertEqual(program, ("and", [("modseq", 620162338)]))

    def test_tooDeepIsParseError(self):
        self.assertRaises(search.SearchTooDeep, self.parse, b"NOT " * 40 + b"ALL")
        self.assertTrue(issubclass(search.SearchTooDeep, ParseError))
