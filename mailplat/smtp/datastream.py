"""
The DATA decoder: turns the bytes a client sends after C{354} into message
content, and finds the end of data.

Framing rules (the SMTP smuggling family, CVE-2023-51764/5/6; Postfix 3.9's
C{smtpd_forbid_bare_newline = normalize}):

  - Only C{<CR><LF>.<CR><LF>} ends the data: the line C{.} must end with CRLF
    and so must the line before it (or the DATA command itself).  C{<LF>.<LF>},
    C{<LF>.<CR><LF>}, C{<CR><LF>.<LF>}, C{<CR>.<CR>} and the like are content.
  - A line ending in a bare LF is stored with CRLF; a bare CR inside a line is
    kept as it is.  So every message is stored with CRLF line endings.
  - A leading dot is removed from every other line starting with a dot
    (RFC 5321 4.5.2).
  - Lines of any length are accepted and passed on in pieces: nothing is
    buffered beyond a few bytes of the current line, and a long line never
    ends data mode.

The decoder also counts C{Received:} header fields, for loop detection
(RFC 5321 6.3).
"""

_HOLD = 16  # bytes kept at the start of a line until we know what it is


class DataDecoder:
    """
    Feed it raw bytes with L{feed}; it returns decoded content, and sets
    L{done} once the end of data was seen.

    @ivar done: whether the terminating line was seen.
    @ivar receivedCount: the number of C{Received:} fields in the header.
    @ivar bareLineFeeds: how many lines ended with a bare LF.
    """

    def __init__(self, previousLineEndedWithCRLF=True):
        self.done = False
        self.receivedCount = 0
        self.bareLineFeeds = 0
        self._lineStart = True
        self._prevCRLF = previousLineEndedWithCRLF
        self._pending = b""
        self._inHeaders = True

    def feed(self, data):
        """
        Decode C{data}.

        @return: C{(content, leftover)}: the decoded content (bytes), and the
            bytes that came after the end of data (L{None} while not done).
        """
        if self.done:
            raise RuntimeError("feed after end of data")
        buf = self._pending + data if self._pending else data
        self._pending = b""
        out = []
        pos = 0
        find = buf.find
        while True:
            nl = find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos : nl + 1]
            pos = nl + 1
            if self._lineStart:
                if line == b".\r\n" and self._prevCRLF:
                    self.done = True
                    return b"".join(out), buf[pos:]
                if line[:1] == b".":
                    line = line[1:]
                if self._inHeaders:
                    if line == b"\r\n" or line == b"\n":
                        self._inHeaders = False
                    elif line[:9].lower() == b"received:":
                        self.receivedCount += 1
            if line[-2:] == b"\r\n":
                self._prevCRLF = True
            else:
                self._prevCRLF = False
                self.bareLineFeeds += 1
                line = line[:-1] + b"\r\n"
            out.append(line)
            self._lineStart = True
        rest = buf[pos:]
        if rest:
            if self._lineStart and len(rest) < _HOLD:
                # Could still be ".\r\n" or "Received:": wait for more.
                self._pending = rest
            else:
                if self._lineStart:
                    if rest[:1] == b".":
                        rest = rest[1:]
                    if self._inHeaders and rest[:9].lower() == b"received:":
                        self.receivedCount += 1
                if rest[-1:] == b"\r":
                    # Might be the CR of a CRLF: keep it with the next chunk.
                    self._pending = b"\r"
                    rest = rest[:-1]
                out.append(rest)
                self._lineStart = False
                self._prevCRLF = False
        return b"".join(out), None
