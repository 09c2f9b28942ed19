"""
Tests for L{mailplat.pop3.multiline}: byte-stuffing and TOP across chunk
boundaries.
"""

from twisted.trial import unittest

from mailplat.pop3.multiline import DotStuffer, TopFilter


def referenceStuff(message):
    """
    Stuff a whole message at once, the obvious way.
    """
    lines = message.splitlines(keepends=True)
    body = b"".join(b"." + line if line.startswith(b".") else line for line in lines)
    if body and not body.endswith(b"\n"):
        body += b"\r\n"
    return body + b".\r\n"


def chunked(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)]


MESSAGES = [
    b"",
    b".",
    b"..\r\n",
    b"Subject: x\r\n\r\n.\r\n..\r\n.x\r\nend",
    b".a\r\n.b\r\n.c\r\n.\r\n",
    b"a\r\n.\r\nb\n.\nc\r\n",
]


class DotStufferTests(unittest.TestCase):
    def stuff(self, message, size):
        stuffer = DotStuffer()
        out = b"".join(stuffer.stuff(c) for c in chunked(message, size))
        return out + stuffer.end()

    def test_everyChunkSize(self):
        """
        Whatever the chunk size, the result is the one of stuffing the whole
        message, including when a "." begins a chunk.
        """
        for message in MESSAGES:
            for size in range(1, len(message) + 2):
                self.assertEqual(
                    self.stuff(message, size), referenceStuff(message), (message, size)
                )

    def test_dotAtEveryChunkBoundary(self):
        """
        A "." at the start of every chunk, each at the start of a line, is
        stuffed every time.
        """
        message = b".abcde\r\n" * 10
        self.assertEqual(self.stuff(message, 8), b"..abcde\r\n" * 10 + b".\r\n")

    def test_emptyChunk(self):
        stuffer = DotStuffer()
        self.assertEqual(stuffer.stuff(b"a\r\n"), b"a\r\n")
        self.assertEqual(stuffer.stuff(b""), b"")
        self.assertEqual(stuffer.stuff(b".b"), b"..b")
        self.assertEqual(stuffer.end(), b"\r\n.\r\n")


class TopFilterTests(unittest.TestCase):
    message = b"A: 1\r\nB: 2\r\n\r\nl1\r\n\r\nl3\r\nl4\r\n"

    def top(self, lines, size, message=None):
        message = self.message if message is None else message
        f = TopFilter(lines)
        out = []
        for chunk in chunked(message, size):
            out.append(f.feed(chunk))
            if f.done:
                break
        return b"".join(out), f.done

    def test_everyChunkSize(self):
        expected = {
            0: b"A: 1\r\nB: 2\r\n\r\n",
            1: b"A: 1\r\nB: 2\r\n\r\nl1\r\n",
            2: b"A: 1\r\nB: 2\r\n\r\nl1\r\n\r\n",
            3: b"A: 1\r\nB: 2\r\n\r\nl1\r\n\r\nl3\r\n",
        }
        for lines, want in expected.items():
            for size in range(1, len(self.message) + 1):
                self.assertEqual(self.top(lines, size), (want, True), (lines, size))

    def test_moreLinesThanBody(self):
        self.assertEqual(self.top(10, 5), (self.message, False))

    def test_noBody(self):
        message = b"A: 1\r\nB: 2\r\n"
        self.assertEqual(self.top(0, 3, message), (message, False))

    def test_bareLF(self):
        message = b"A: 1\n\nl1\nl2\n"
        self.assertEqual(self.top(1, 1, message), (b"A: 1\n\nl1\n", True))
