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

    #: Whether whole runs of CRLF-terminated body lines are decoded with a
    #: few bytes operations instead of line by line (the result is the
    #: same; tests compare the two).
    fastPath = True

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
        if self.fastPath and not self._inHeaders:
            decoded = self._feedBody(buf)
            if decoded is not None:
                return decoded
        out = []
        pos = 0
        find = buf.find
        while True:
            nl = find(b"\n", pos)
            if nl < 0:
                break
            line = buf[pos : nl + 1]
            pos = nl + 1
            headerEnds = False
            if self._lineStart:
                if line == b".\r\n" and self._prevCRLF:
                    self.done = True
                    return b"".join(out), buf[pos:]
                if line[:1] == b".":
                    line = line[1:]
                if self._inHeaders:
                    if line == b"\r\n" or line == b"\n":
                        self._inHeaders = False
                        headerEnds = True
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
            if headerEnds and self.fastPath:
                # The rest of this chunk is body: the fast path, if it can.
                decoded = self._feedBody(buf[pos:])
                if decoded is not None:
                    out.append(decoded[0])
                    return b"".join(out), decoded[1]
        self._partialLine(buf[pos:], out)
        return b"".join(out), None

    def _feedBody(self, buf):
        """
        The fast path for the body: when every line in C{buf} ends with CRLF
        (no bare LF to rewrite, no header to count), the end of data is
        C{CRLF . CRLF} found with one search and dot-unstuffing is one
        replace, with the same result as the line-by-line loop.

        Each scan of the chunk costs about as much as a copy of it, so their
        number is this method's speed.  Most chunks have no line starting
        with a dot: for them one search for C{CRLF .} rules out both the end
        of data and dot-stuffing, and a chunk that ends with a whole line is
        passed on without a copy.

        @return: what L{feed} returns, or L{None} to take the general path.
        """
        end = buf.rfind(b"\n") + 1
        if end == 0:
            return None
        if buf.count(b"\n", 0, end) != buf.count(b"\r\n", 0, end):
            return None  # a bare LF: the general path rewrites it
        leadingDot = self._lineStart and buf[:1] == b"."
        if leadingDot and self._prevCRLF and buf.startswith(b".\r\n"):
            self.done = True
            return b"", buf[3:]
        dot = buf.find(b"\r\n.", 0, end)
        if dot < 0 and not leadingDot:
            body = buf if end == len(buf) else buf[:end]
        else:
            if dot >= 0:
                stop = buf.find(b"\r\n.\r\n", dot, end)
                if stop >= 0:
                    self.done = True
                    end = stop + 2
            body = buf[int(leadingDot) : end].replace(b"\r\n.", b"\r\n")
            if self.done:
                return body, buf[end + 3 :]
        self._lineStart = True
        self._prevCRLF = True
        if end == len(buf):
            return body, None
        out = [body]
        self._partialLine(buf[end:], out)
        return b"".join(out), None

    def _partialLine(self, rest, out):
        """
        Handle the bytes after the last LF of the input: a line not ended
        yet.
        """
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
