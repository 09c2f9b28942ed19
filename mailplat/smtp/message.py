"""
Writing a received message into its spool file: the trace header first, the
header section (kept, bounded, so that checks can read it and the submission
profile can add what is missing), then the body streamed as it comes.
"""

from email import policy
from email.parser import BytesHeaderParser

# Like Postfix's header_size_limit: a header section larger than this is not
# parsed; the rest of the message passes as body.
HEADER_LIMIT = 256 * 1024


class MessageWriter:
    """
    @ivar spool: the L{mailplat.queue.store.SpoolFile}.
    @ivar headers: the parsed header section (an L{email.message.Message}),
        once known; parsed when first asked for (most MX sessions never
        need it).
    @ivar size: the bytes of content received (without what we add).
    """

    def __init__(self, spool, traceHeader, additions, authservId=None):
        """
        @param traceHeader: the Received field (bytes, CRLF-terminated).
        @param additions: C{f(headers) -> bytes}: fields to append to the
            header section (the submission profile's Date and Message-ID),
            or L{None}.
        """
        self.spool = spool
        self.traceHeader = traceHeader
        self.additions = additions
        self.authservId = authservId
        self.removedResults = 0
        self._rawHeaders = None
        self._headers = None
        self.size = 0
        self._head = b""
        self._inHeader = True

    def write(self, content):
        """
        @raise OSError: on a disk error.
        """
        self.size += len(content)
        if not self._inHeader:
            self.spool.write(content)
            return
        self._head += content
        if self._head.startswith(b"\r\n"):
            end = 0
        else:
            end = self._head.find(b"\r\n\r\n")
            if end >= 0:
                end += 2
        if end >= 0:
            self._finishHeader(self._head[:end], self._head[end:])
        elif len(self._head) > HEADER_LIMIT:
            self._finishHeader(b"", self._head)

    def finish(self):
        """
        The end of the content: flush a header section that never ended.
        """
        if self._inHeader:
            head = self._head
            if head and not head.endswith(b"\r\n"):
                head += b"\r\n"
            self._finishHeader(head, b"")

    def _finishHeader(self, head, rest):
        self._inHeader = False
        self._head = b""
        if self.authservId and b"authentication-results" in head.lower():
            head, self.removedResults = removeResults(head, self.authservId)
        self._rawHeaders = head
        extra = self.additions(self.headers) if self.additions is not None else b""
        self.spool.write(self.traceHeader + head + extra + rest)

    @property
    def headers(self):
        if self._headers is None and self._rawHeaders is not None:
            self._headers = BytesHeaderParser(policy=policy.compat32).parsebytes(
                self._rawHeaders
            )
        return self._headers


class LineEndingNormalizer:
    """
    Turns bare LF into CRLF across chunk boundaries, for BDAT content (which
    is not dot-stuffed, RFC 3030), so every stored message has CRLF line
    endings.
    """

    def __init__(self):
        self._lastWasCR = False

    def feed(self, data):
        if not data:
            return data
        out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if data[:1] == b"\n" and self._lastWasCR:
            # The CR was at the end of the previous chunk.
            out = out[1:]
        self._lastWasCR = data[-1:] == b"\r"
        return out


def removeResults(head, authservId):
    """
    Remove the C{Authentication-Results} fields that claim to come from us
    (their authserv-id is ours): RFC 8601 5 — a message must not arrive
    carrying results we did not write.

    @return: C{(head, removed)}.
    """
    fields, current = [], []
    for line in head.split(b"\r\n")[:-1] if head.endswith(b"\r\n") else head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
        else:
            if current:
                fields.append(current)
            current = [line]
    if current:
        fields.append(current)
    ours = authservId.lower().encode("utf-8", "replace")
    kept, removed = [], 0
    for field in fields:
        name, _, value = field[0].partition(b":")
        if name.strip().lower() == b"authentication-results":
            text = b" ".join([value] + [l.strip() for l in field[1:]]).strip()
            serv = text.split(b";", 1)[0].split()
            if serv and serv[0].lower() == ours:
                removed += 1
                continue
        kept.append(b"\r\n".join(field) + b"\r\n")
    return b"".join(kept), removed
