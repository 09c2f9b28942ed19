"""
Tests for the IMAP grammar helpers: L{mailplat.imap.wire},
L{mailplat.imap.names} (modified UTF-7, LIST patterns),
L{mailplat.imap.listing} and L{mailplat.imap.selected}.
"""

from twisted.trial import unittest

from mailplat.imap import listing
from mailplat.imap.names import BadMailboxName, decodeName, encodeName, patternToRegex
from mailplat.imap.selected import InvalidSequence, SelectedFolder
from mailplat.imap.wire import (
    Arguments,
    Literal,
    ParseError,
    SequenceSet,
    astring,
    formatSequenceSet,
    quoted,
)
from mailplat.storage.index import FolderRow


class ModifiedUTF7Tests(unittest.TestCase):
    """
    RFC 3501 5.1.3, decoded strictly.
    """

    def test_roundTrip(self):
        for name, encoded in [
            ("INBOX", b"INBOX"),
            ("Entwürfe", b"Entw&APw-rfe"),
            ("a&b", b"a&-b"),
            ("日本語", b"&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", b"&2D3eAA-"),
        ]:
            self.assertEqual(encodeName(name), encoded)
            self.assertEqual(decodeName(encoded), name)

    def test_bad(self):
        for bad in [
            b"&",  # unterminated
            b"&Jjo",  # unterminated
            b"&AGE-",  # encodes ASCII "a"
            b"&AGEAYg-",  # encodes ASCII
            b"&Jjo-&Jjo-",  # two shifts where one would do
            b"&ZeV-",  # padding bits left over
            b"&2D0-",  # lone surrogate
            b"&3gA-",  # lone low surrogate
            b"&Jj!-",  # not base64
            b"\xc3\xa4",  # 8-bit
            b"a\x00b",  # NUL
            b"a\tb",  # control character
        ]:
            self.assertRaises(BadMailboxName, decodeName, bad)

    def test_controlCharactersEncode(self):
        """
        NUL encodes (so it reaches the store's own check, which refuses it).
        """
        self.assertEqual(decodeName(b"&AAA-"), "\x00")


class PatternTests(unittest.TestCase):
    def test_wildcards(self):
        self.assertTrue(patternToRegex("*").fullmatch("a/b/c"))
        self.assertTrue(patternToRegex("%").fullmatch("a"))
        self.assertFalse(patternToRegex("%").fullmatch("a/b"))
        self.assertTrue(patternToRegex("a/%").fullmatch("a/b"))
        self.assertFalse(patternToRegex("a.c").fullmatch("abc"))

    def test_inboxCaseInsensitive(self):
        self.assertTrue(patternToRegex("inbox").fullmatch("INBOX"))
        self.assertTrue(patternToRegex("Inbox/%").fullmatch("INBOX/x"))
        self.assertFalse(patternToRegex("inboxes").fullmatch("INBOXES"))

    def test_listMailboxes(self):
        folders = [("INBOX", None), ("Sent", "\\Sent"), ("a/b/c", None)]
        self.assertEqual(
            listing.listMailboxes(folders, "%"),
            [("INBOX", ["\\HasNoChildren"]), ("Sent", ["\\HasNoChildren", "\\Sent"]),
             ("a", ["\\Noselect", "\\HasChildren"])],
        )
        self.assertEqual(
            listing.listMailboxes(folders, "a/*"),
            [("a/b", ["\\Noselect", "\\HasChildren"]), ("a/b/c", ["\\HasNoChildren"])],
        )


class ArgumentTests(unittest.TestCase):
    def test_strings(self):
        args = Arguments([b'atom "quo\\"ted" ', Literal(b"lit\r\neral", 9), b" NIL"])
        self.assertEqual(args.astring(), b"atom")
        args.sp()
        self.assertEqual(args.astring(), b'quo"ted')
        args.sp()
        self.assertEqual(args.string(), b"lit\r\neral")
        args.sp()
        self.assertIsNone(args.nstring())
        self.assertTrue(args.atEnd())

    def test_errors(self):
        self.assertRaises(ParseError, Arguments([b'"open']).quoted)
        self.assertRaises(ParseError, Arguments([b'"a\\b"']).quoted)
        self.assertRaises(ParseError, Arguments([b'"a\x00b"']).quoted)
        args = Arguments([b"", Literal(b"a\x00", 2), b""])
        self.assertRaises(ParseError, args.string)
        self.assertRaises(ParseError, Arguments([b"a  b"]).end)

    def test_flagList(self):
        self.assertEqual(Arguments([b"(\\Seen $Work \\*)"]).flagList(),
                         [b"\\Seen", b"$Work", b"\\*"])
        self.assertEqual(Arguments([b"()"]).flagList(), [])
        self.assertRaises(ParseError, Arguments([b"(\\Seen"]).flagList)

    def test_dateTime(self):
        self.assertEqual(Arguments([b'"01-Jan-2024 00:00:00 -0130"']).dateTime(),
                         1704072600.0)
        for bad in (b'"32-Jan-2024 00:00:00 +0000"', b'"01-Jan-2024 25:00:00 +0000"',
                    b'"01-Jan-2024 00:00:00 +0075"', b'"1-Jan-2024 00:00:00 +0000"'):
            self.assertRaises(ParseError, Arguments([bad]).dateTime)

    def test_numbers(self):
        self.assertEqual(Arguments([b"4294967295"]).number(), 2**32 - 1)
        self.assertRaises(ParseError, Arguments([b"4294967296"]).number)
        self.assertRaises(ParseError, Arguments([b"9" * 50]).number)

    def test_output(self):
        self.assertEqual(quoted(b'a"b\\c'), b'"a\\"b\\\\c"')
        self.assertEqual(quoted(b"a\r\nb"), b"{4}\r\na\r\nb")
        self.assertEqual(quoted(None), b"NIL")
        self.assertEqual(astring(b"Sent"), b"Sent")
        self.assertEqual(astring(b"two words"), b'"two words"')
        self.assertEqual(astring(b"NIL"), b'"NIL"')
        self.assertEqual(astring(b""), b'""')


class SequenceSetTests(unittest.TestCase):
    def test_parse(self):
        s = SequenceSet.parse(b"1:3,5,7:*,*")
        self.assertEqual(s.ranges, [(1, 3), (5, 5), (7, None), (None, None)])
        self.assertEqual(s.resolve(9), [(1, 3), (5, 5), (7, 9), (9, 9)])
        for bad in (b"0", b"1:", b":1", b"1,,2", b"a", b"1:2:3", b"01"):
            self.assertRaises(ParseError, SequenceSet.parse, bad)

    def test_format(self):
        self.assertEqual(formatSequenceSet([1, 2, 3, 5, 7, 8]), b"1:3,5,7:8")
        self.assertEqual(formatSequenceSet([]), b"")

    def test_resolveAgainstView(self):
        row = FolderRow(1, "INBOX", 7, 20, 1, None)
        view = SelectedFolder(None, True, row, [3, 5, 9, 12], set(), [])
        self.assertEqual(view.resolve(SequenceSet.parse(b"2:3"), False), [(2, 5), (3, 9)])
        self.assertEqual(view.resolve(SequenceSet.parse(b"*:3"), False),
                         [(3, 9), (4, 12)])
        self.assertRaises(InvalidSequence, view.resolve, SequenceSet.parse(b"5"), False)
        self.assertEqual(view.resolve(SequenceSet.parse(b"4:9"), True), [(2, 5), (3, 9)])
        # RFC 3501 6.4.8: n:* includes the last UID even when n is larger.
        self.assertEqual(view.resolve(SequenceSet.parse(b"100:*"), True), [(4, 12)])
