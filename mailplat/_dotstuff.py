"""
Dot-stuffing for the protocols that end a multi-line block with a line
holding a single ".": POP3 responses (RFC 1939 section 3) and SMTP DATA
(RFC 5321 section 4.5.2).

twisted.mail stuffs each 16 KiB chunk on its own, so a "." that begins a line
right at a chunk boundary goes out unstuffed and ends the block early
(DESIGN.md section 7: POP3 response injection, outbound SMTP smuggling).  The
classes here carry the "at the start of a line" state from one chunk to the
next instead.
"""

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class DotStuffer:
    """
    Byte-stuffs a body given in chunks: every line that begins with "." gets
    one more "." (RFC 1939 section 3), wherever the chunks split it.  Line
    endings are left as they are (POP3 sends stored messages, which already
    have CRLF line endings).
    """

    def __init__(self):
        self._atLineStart = True

    def stuff(self, chunk):
        """
        @param chunk: the next bytes of the body.
        @return: those bytes, stuffed.
        """
        if not chunk:
            return chunk
        out = chunk.replace(b"\n.", b"\n..")
        if self._atLineStart and chunk[:1] == b".":
            out = b"." + out
        self._atLineStart = chunk[-1:] == b"\n"
        return out

    def end(self):
        """
        @return: the bytes that close the block: a CRLF if the body did not
            end with a line break, then the terminating ".\\r\\n".
        """
        return b".\r\n" if self._atLineStart else b"\r\n.\r\n"


class DataEncoder:
    """
    Encodes a message given in chunks for SMTP DATA (RFC 5321 section
    4.5.2): every line ending becomes CRLF and every line that begins with
    "." gets one more ".", wherever the chunks split a line or a CRLF.

    A bare CR or a bare LF is sent as CRLF: RFC 5321 section 2.3.8 forbids
    them on the wire, and a bare CR or LF next to a "." is what SMTP
    smuggling uses to end the data early at a less strict receiver.
    """

    def __init__(self):
        self._atLineStart = True
        self._skipLF = False

    def encode(self, chunk):
        """
        @param chunk: the next bytes of the message.
        @return: the bytes to send for them.
        """
        if self._skipLF and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if not chunk:
            return b""
        # A CR at the end of the chunk is sent as CRLF now; an LF starting
        # the next chunk then belongs to it and is dropped.
        self._skipLF = chunk[-1:] == b"\r"
        out = _LINE_END.sub(b"\r\n", chunk)
        out = out.replace(b"\n.", b"\n..")
        if self._atLineStart and out[:1] == b".":
            out = b"." + out
        self._atLineStart = out[-1:] == b"\n"
        return out

    def end(self):
        """
        @return: the bytes that end DATA: a CRLF if the message did not end
            with a line break, then ".\\r\\n".
        """
        return b".\r\n" if self._atLineStart else b"\r\n.\r\n"
