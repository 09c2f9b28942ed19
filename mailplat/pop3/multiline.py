"""
Multi-line POP3 responses (RFC 1939 section 3) built chunk by chunk, so a
message of any size is sent without holding it in memory.

twisted.mail.pop3 stuffs each 16 KiB chunk on its own, so a "." that begins a
line right at a chunk boundary goes out unstuffed and ends the response early
(DESIGN section 7).  L{DotStuffer} carries the "at the start of a line" state
from one chunk to the next instead
(it lives in L{mailplat._dotstuff}, shared with the SMTP client).
"""

from mailplat._dotstuff import DotStuffer

__all__ = ["DotStuffer", "TopFilter"]


class TopFilter:
    """
    Cuts a message given in chunks down to its header, the blank line and the
    first C{bodyLines} lines of its body (the TOP command, RFC 1939 section 7).

    @ivar done: whether everything TOP sends has been returned, so the rest of
        the message need not be read.
    """

    def __init__(self, bodyLines):
        self.done = False
        self._inHeader = True
        self._remaining = bodyLines
        # Up to the first two bytes of the line being read: enough to tell
        # whether it is the blank line ("" or "\r" before the "\n").
        self._head = b""

    def feed(self, chunk):
        """
        @param chunk: the next bytes of the message.
        @return: the part of C{chunk} to send.
        """
        pos = 0
        while not self.done:
            nl = chunk.find(b"\n", pos)
            if nl == -1:
                self._head = (self._head + chunk[pos : pos + 2])[:2]
                return chunk
            head = (self._head + chunk[pos : min(nl, pos + 2)])[:2]
            self._head = b""
            pos = nl + 1
            if self._inHeader:
                self._inHeader = head not in (b"", b"\r")
            else:
                self._remaining -= 1
            self.done = not self._inHeader and self._remaining <= 0
        return chunk[:pos]
