"""
Tests for L{mailplat._dotstuff}: SMTP DATA encoding across chunk boundaries
(DESIGN.md 7: twisted.mail's client stuffs each chunk on its own).
"""

from twisted.trial import unittest

from mailplat._dotstuff import DataEncoder, DotStuffer


def chunked(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)]


def encode(message, chunks):
    encoder = DataEncoder()
    return b"".join(encoder.encode(c) for c in chunks) + encoder.end()


def reference(message):
    """
    Encode a whole message at once, the obvious way.
    """
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


MESSAGES = [
    b"",
    b".",
    b"..\r\n",
    b"Subject: x\r\n\r\n.\r\n..\r\n.x\r\nend",
    b"a\r\n.\r\nb\n.\nc\r\n",
    b"bare\rcr\r.\r\nand\n\r\n.\r",
    b"x" * 10 + b"\r\n." * 7,
]


class DataEncoderTests(unittest.TestCase):
    def test_everyChunkSize(self):
        """
        Whatever the chunk sizes, the result is the same as encoding the
        whole message at once.
        """
        for message in MESSAGES:
            for size in range(1, len(message) + 2):
                self.assertEqual(
                    encode(message, chunked(message, size)),
                    reference(message),
                    (message, size),
                )

    def test_dotAtEveryChunkBoundary(self):
        """
        Each chunk starts with "." at the start of a line: each is stuffed,
        so no line of the output is a lone "." before the end.
        """
        chunks = [b".\r\n", b".\r\n", b"..\r\n", b".", b"\r\n", b".end\r\n"]
        out = encode(b"".join(chunks), chunks)
        self.assertEqual(out, b"..\r\n..\r\n...\r\n..\r\n..end\r\n.\r\n")
        self.assertEqual(out.count(b"\r\n.\r\n"), 1)
        self.assertTrue(out.endswith(b"\r\n.\r\n"))

    def test_crlfSplitAcrossChunks(self):
        """
        A CRLF split between two chunks stays one line ending; the "." after
        it is stuffed.
        """
        self.assertEqual(encode(None, [b"a\r", b"\n.b\r", b"\n"]), b"a\r\n..b\r\n.\r\n")

    def test_smugglingSequencesAreNeutralized(self):
        """
        <LF>.<LF> and <CR>.<CR> inside a message cannot end DATA at the
        receiver: bare line endings become CRLF and the dot is stuffed.
        """
        out = encode(None, [b"a\n.\nMAIL FROM:<x>\r\n", b"b\r.\rc"])
        self.assertEqual(
            out, b"a\r\n..\r\nMAIL FROM:<x>\r\nb\r\n..\r\nc\r\n.\r\n"
        )


class DotStufferSharedTests(unittest.TestCase):
    def test_pop3UsesTheSharedClass(self):
        from mailplat.pop3 import multiline

        self.assertIs(multiline.DotStuffer, DotStuffer)
