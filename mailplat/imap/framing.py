"""
Framing IMAP input into commands (RFC 3501 4.3, 7.5; RFC 7888): the pieces
L{mailplat.imap.server.IMAPServer} uses to split lines and literals and to
decide about a literal before its data arrives.
"""

import re
import tempfile

from mailplat.imap.wire import TAG_CHARS, Arguments, ParseError

# A line ending in a literal's octet count: "{n}", LITERAL+'s "{n+}", or a
# BINARY literal8 "~{n}" (refused).
LITERAL = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\Z")


class MessageSpool:
    """
    Receives the message literal of an APPEND: in memory while small, then
    in a temporary file; bare LF line endings become CRLF on the way in, so
    the store keeps its CRLF invariant.
    """

    def __init__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
        self._lastCR = False

    def write(self, data):
        if not data:
            return
        fixed = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if data[:1] == b"\n" and self._lastCR:
            fixed = fixed[1:]
        self._lastCR = data[-1:] == b"\r"
        self.file.write(fixed)

    def finish(self):
        self.file.seek(0)
        return self.file


class BytesSink:
    """
    Collects a small literal (a string argument) in memory.
    """

    size = 0

    def __init__(self):
        self._chunks = []

    def write(self, data):
        self._chunks.append(data)

    def finish(self):
        return b"".join(self._chunks)


def commandHead(parts):
    """
    @param parts: the lines (and literals) of a command read so far.
    @return: C{(tag, command)} from its first line (the command after
        C{UID} for UID commands), or C{(None, None)}.
    """
    words = parts[0].split(b" ", 3)
    if len(words) < 2 or not words[0] or any(c not in TAG_CHARS for c in words[0]):
        return None, None
    command = words[1].upper()
    if command == b"UID" and len(words) > 2:
        command = words[2].upper()
    return words[0], command


def isMessageLiteral(parts):
    """
    @param parts: the lines and literals of an APPEND read so far.
    @return: whether the literal about to come is the message: the
        mailbox, and the optional flags and date, are complete before it.
    """
    args = Arguments(list(parts))
    try:
        args.run(TAG_CHARS, "tag")
        args.sp()
        args.atom()
        args.sp()
        args.astring()
        args.sp()
        if args.peek() == b"(":
            args.flagList()
            args.sp()
        if args.peek() == b'"':
            args.dateTime()
            args.sp()
    except ParseError:
        return False
    return args.atEnd()
