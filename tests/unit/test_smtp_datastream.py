"""
The DATA decoder's fast path for the body (L{DataDecoder._feedBody}) gives
exactly what the line-by-line loop gives, however the input is cut.
"""

import random

from twisted.trial import unittest

from mailplat.smtp.datastream import DataDecoder

_TOKENS = [
    b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b".", b"..", b"...", b"a", b"text",
    b"Received: x", b"\r\n.\r\n", b"\n.\n", b"\r\n.\n", b"\r\n..\r\n", b" ",
    b"\r\n\r\n", b"Subject: y", b"x" * 40,
]


def _decode(data, cuts, fast):
    """
    Feed C{data} cut at C{cuts}; return everything observable.
    """
    decoder = DataDecoder()
    decoder.fastPath = fast
    content, leftover = [], None
    start = 0
    for end in list(cuts) + [len(data)]:
        if decoder.done:
            break
        piece, leftover = decoder.feed(data[start:end])
        content.append(piece)
        if leftover is not None:
            # What came after the end of data, and the unfed rest.
            leftover += data[end:]
        start = end
    return (b"".join(content), leftover, decoder.done, decoder.receivedCount,
            decoder.bareLineFeeds)


class FastPathTests(unittest.TestCase):
    def assertSame(self, data, cuts):
        self.assertEqual(
            _decode(data, cuts, True), _decode(data, cuts, False),
            f"data={data!r} cuts={cuts!r}",
        )

    def test_randomInputs(self):
        rng = random.Random(5321)
        for _ in range(3000):
            header = b"Received: a\r\nSubject: b\r\n\r\n" if rng.random() < 0.7 else b""
            data = header + b"".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 40)))
            if rng.random() < 0.8:
                data += b"\r\n.\r\n" + b"QUIT\r\n" * rng.randint(0, 1)
            ncuts = rng.randint(0, 6)
            cuts = sorted(rng.randint(0, len(data)) for _ in range(ncuts))
            self.assertSame(data, cuts)

    def test_largeBody(self):
        body = b"".join(b"line %d\r\n" % i if i % 7 else b".dot %d\r\n" % i for i in range(5000))
        data = b"Subject: x\r\n\r\n" + body + b"\r\n.\r\nQUIT\r\n"
        for size in (1, 7, 100, 4096, 65536):
            self.assertSame(data, list(range(size, len(data), size)))
        content, leftover, done, _, _ = _decode(data, [20, 30000], True)
        self.assertTrue(done)
        self.assertEqual(leftover, b"QUIT\r\n")
        self.assertNotIn(b"\r\n.dot", content)
        self.assertIn(b"\r\ndot 7\r\n", content)

    def test_terminatorAtChunkStart(self):
        data = b"Subject: x\r\n\r\nbody\r\n.\r\n"
        self.assertSame(data, [len(data) - 3])
        self.assertSame(data, [len(data) - 4])
        self.assertSame(data, [len(data) - 5, len(data) - 2])


class AddressFastPathTests(unittest.TestCase):
    """
    The regular-expression fast path of L{mailplat.smtp.address} accepts and
    refuses exactly what the character-by-character grammar does.
    """

    def parse(self, text, fast, allowNull, utf8):
        from mailplat.smtp import address

        self.patch(address, "_FAST", fast)
        try:
            return address.parsePath(text, allowNull=allowNull, utf8=utf8)
        except address.AddressSyntaxError as e:
            return (type(e), str(e))

    def test_randomPaths(self):
        rng = random.Random(2821)
        pieces = ["a", "b", "Z", "0", "9", "-", ".", "..", "@", "@", '"', "\\", "<", ">",
                  " ", "+", "_", "!", "{", "}", "é", "\x01", "\x7f", ":", ",", "[", "]",
                  "x" * 63, "y" * 64, "example", "test", "%", "/", "="]
        for _ in range(20000):
            inner = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
            if rng.random() < 0.5:
                inner = "".join(rng.choice(pieces[:5])
                                for _ in range(rng.randint(1, 4))) + "@" + inner
            text = "<" + inner + ">" + rng.choice(["", " SIZE=10", "x"])
            for allowNull in (True, False):
                for utf8 in (False, True):
                    self.assertEqual(
                        self.parse(text, True, allowNull, utf8),
                        self.parse(text, False, allowNull, utf8),
                        repr(text),
                    )

    def test_common(self):
        from mailplat.smtp.address import parsePath

        address, rest = parsePath("<Demo.User+tag@Example.TEST> SIZE=5", allowNull=False)
        self.assertEqual((address.localPart, address.domain, rest),
                         ("Demo.User+tag", "example.test", "SIZE=5"))
