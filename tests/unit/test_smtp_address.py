"""
Tests for the RFC 5321 path parser.
"""

from twisted.trial import unittest

from mailplat.smtp.address import (
    Address,
    AddressSyntaxError,
    parseParameters,
    parsePath,
)


class ParsePathTests(unittest.TestCase):
    def test_valid(self):
        cases = {
            "<a@b.example>": (Address("a", "b.example"), ""),
            "<A.B+tag@Example.ORG> SIZE=10": (Address("A.B+tag", "example.org"), "SIZE=10"),
            " <x@y.z>": (Address("x", "y.z"), ""),
            '<"a>b"@x.y> BODY=8BITMIME': (Address('"a>b"', "x.y"), "BODY=8BITMIME"),
            '<"u@o.e"@l.t>': (Address('"u@o.e"', "l.t"), ""),
            '<"a\\"b"@x.y>': (Address('"a\\"b"', "x.y"), ""),
            "<@a.example,@b.example:u@c.example>": (Address("u", "c.example"), ""),
            "<u@[192.0.2.1]>": (Address("u", "[192.0.2.1]"), ""),
            "<u%o@l.t>": (Address("u%o", "l.t"), ""),
            "<o!u@l.t>": (Address("o!u", "l.t"), ""),
        }
        for text, expected in cases.items():
            self.assertEqual(parsePath(text, allowNull=False), expected, text)

    def test_null(self):
        self.assertEqual(parsePath("<>", allowNull=True), (None, ""))
        self.assertRaises(AddressSyntaxError, parsePath, "<>", allowNull=False)

    def test_invalid(self):
        for text in [
            "a@b.example",
            "<a@b.example",
            "<a@b.example>x",
            "<a@b.example.>",
            "<a@-b.example>",
            "<a..b@c.example>",
            "<.a@c.example>",
            "<a@>",
            "<@c.example>",
            "<a>",
            "<a\x00@b.example>",
            "<\u00e9@b.example>",
            '<"unterminated@b.example>',
            "<@bad route:u@c.example>",
            "<a@[1.2.3.4>",
            "<" + "a" * 65 + "@b.example>",
            "<a@" + ("b" * 60 + ".") * 5 + "example>",
        ]:
            self.assertRaises(AddressSyntaxError, parsePath, text, allowNull=True)

    def test_parameters(self):
        self.assertEqual(
            parseParameters("size=10 BODY=8BITMIME SMTPUTF8"),
            {"SIZE": "10", "BODY": "8BITMIME", "SMTPUTF8": None},
        )
        for bad in ("SIZE=", "=3", "A=1 a=2", "SI_ZE=1"):
            self.assertRaises(AddressSyntaxError, parseParameters, bad)
