"""
The MIME structure of a stored message, found on its raw bytes (RFC 2045,
RFC 2046 5.1.1), never by re-serialising a parsed message, so that every
section a client fetches (RFC 3501 6.4.5) is exactly the octets stored on
disk.

Nesting is bounded: a part deeper than L{MAX_MIME_DEPTH} levels raises
L{MimeTooDeep} where its structure is needed, instead of recursing without
end on a hostile message.
"""

import email.parser
import email.policy
import email.utils
import re
import time

# RFC 3501 7.2.6's order, which clients display.
SYSTEM_FLAGS_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

MAX_MIME_DEPTH = 32

_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip

_LINE = re.compile(rb"[^\n]*\n|[^\n]+")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_headerParser = email.parser.BytesHeaderParser(policy=email.policy.compat32)


class MimeTooDeep(ValueError):
    """
    The message nests multiparts or messages deeper than L{MAX_MIME_DEPTH}.
    """


def formatInternalDate(timestamp):
    """
    Format a POSIX time as an RFC 3501 C{date-time} (section 9), in UTC and
    without locale-dependent month names, e.g. C{" 7-Feb-2026 09:05:01 +0000"}.

    @rtype: L{bytes}
    """
    t = time.gmtime(timestamp)
    return b"%2d-%s-%04d %02d:%02d:%02d +0000" % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode("ascii"),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def orderedFlags(flags, recent=False):
    """
    @return: the flags as a response lists them: system flags in a fixed
        order, then keywords sorted, then C{\\Recent}.
    """
    result = [f for f in SYSTEM_FLAGS_ORDER if f in flags]
    result += sorted(f for f in flags if not f.startswith("\\"))
    if recent:
        result.append("\\Recent")
    return result


def splitHeader(data):
    """
    Split an RFC 5322 message (or a MIME entity) into its header and its body.

    @return: C{(header, body)}: the header includes the empty line that ends
        it, so that C{header + body == data} (RFC 3501 6.4.5 C{HEADER} and
        C{TEXT}).  Without an empty line the whole entity is header.
    """
    if data.startswith(b"\r\n"):
        return data[:2], data[2:]
    if data.startswith(b"\n"):
        return data[:1], data[1:]
    m = _BLANK_LINE.search(data)
    if m is None:
        return data, b""
    return data[: m.end()], data[m.end() :]


def headerLines(header):
    """
    @return: the header's fields as C{(lowerCaseName, rawBytes)} pairs in
        order, each raw field with its continuation lines and line endings.
    """
    fields = []
    for line in _LINE.findall(header):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        else:
            name = line.split(b":", 1)[0].strip().lower()
            fields.append((name, [line]))
    return [(name, b"".join(raw)) for name, raw in fields]


def headerValue(raw):
    """
    @return: the unfolded value of a raw header field (RFC 5322 2.2.3), with
        the surrounding white space removed.
    """
    value = raw.split(b":", 1)[1] if b":" in raw else b""
    return re.sub(rb"\r?\n(?=[ \t])", b"", value).strip(b" \t\r\n")


def selectHeaderFields(header, names, negate):
    """
    The C{HEADER.FIELDS} / C{HEADER.FIELDS.NOT} subset of a header (RFC 3501
    6.4.5): the matching fields as stored, repeated fields included, in their
    original spelling and order, then the empty line.

    @param names: field names (L{bytes}, any case).
    """
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in headerLines(header) if (name in wanted) != negate]
    return b"".join(kept) + b"\r\n"


class MessagePart:
    """
    One MIME entity (RFC 2045 2.4): a whole message or a body part, over its
    raw bytes.

    @ivar defaultType: its content type when it has no Content-Type field
        (C{message/rfc822} inside C{multipart/digest}, RFC 2046 5.1.5).
    """

    def __init__(self, data, defaultType="text/plain", depth=0):
        self.data = data
        self.header, self.body = splitHeader(data)
        self.defaultType = defaultType
        self.depth = depth
        self._parsed = None
        self._parts = None

    def headers(self):
        """
        @return: the header as an L{email.message.Message} (compat32; 8-bit
            bytes kept as surrogate escapes).
        """
        if self._parsed is None:
            self._parsed = _headerParser.parsebytes(self.header)
            self._parsed.set_default_type(self.defaultType)
        return self._parsed

    def field(self, name):
        """
        @return: the unfolded value of the first field C{name} (L{bytes},
            lower case), or L{None}.
        """
        for fieldName, raw in headerLines(self.header):
            if fieldName == name:
                return headerValue(raw)
        return None

    @property
    def contentType(self):
        """
        The lower-case C{type/subtype} (RFC 2045 5.2).
        """
        return self.headers().get_content_type()

    def isMessage(self):
        """
        @return: whether this entity encapsulates a message (RFC 2046 5.2.1).
        """
        return self.contentType == "message/rfc822"

    def encapsulated(self):
        """
        @return: the message inside a C{message/rfc822} entity.
        @raise MimeTooDeep: it is nested too deeply.
        """
        if self.depth + 1 > MAX_MIME_DEPTH:
            raise MimeTooDeep()
        return MessagePart(self.body, depth=self.depth + 1)

    def boundary(self):
        headers = self.headers()
        if headers.get_content_maintype() != "multipart":
            return None
        boundary = headers.get_param("boundary")
        if boundary is None:
            return None
        boundary = email.utils.collapse_rfc2231_value(boundary)
        return boundary or None

    def subparts(self):
        """
        The body parts of a multipart entity (RFC 2046 5.1.1): the text
        between boundary delimiters, the CRLF before each delimiter belonging
        to the delimiter.  Preamble and epilogue are not parts.

        @rtype: L{list} of L{MessagePart}
        @raise MimeTooDeep: they are nested too deeply.
        """
        if self._parts is None:
            boundary = self.boundary()
            parts = []
            if boundary is not None:
                if self.depth + 1 > MAX_MIME_DEPTH:
                    raise MimeTooDeep()
                default = (
                    "message/rfc822"
                    if self.contentType == "multipart/digest"
                    else "text/plain"
                )
                parts = [
                    MessagePart(chunk, default, self.depth + 1)
                    for chunk in _splitMultipart(self.body, boundary)
                ]
            self._parts = parts
        return self._parts

    def isMultipart(self):
        return self.boundary() is not None


def _splitMultipart(body, boundary):
    """
    @return: the body parts of a multipart body, as L{bytes}; a missing
        close delimiter ends the last part at the end of the body.
    """
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("utf-8", "surrogateescape"))
        + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    chunks = []
    start = None
    for m in delimiter.finditer(body):
        if start is not None:
            chunks.append(body[start : m.start()])
        if m.group(1):
            return chunks
        start = m.end()
    if start is not None:
        chunks.append(body[start:])
    return chunks


def resolvePart(root, path):
    """
    Follow section part numbers (RFC 3501 6.4.5): the parts of a multipart
    entity are numbered from 1; a non-multipart message has just part 1, its
    body; the numbers after a C{message/rfc822} part apply to the
    encapsulated message.

    @param path: one-based part numbers.
    @return: the L{MessagePart}, or L{None} when there is no such part.
    """
    entity, isMessage = root, True
    for n in path:
        if not isMessage and entity.isMessage():
            entity, isMessage = entity.encapsulated(), True
        if entity.isMultipart():
            parts = entity.subparts()
            if not 1 <= n <= len(parts):
                return None
            entity, isMessage = parts[n - 1], False
        elif isMessage and n == 1:
            isMessage = False
        else:
            return None
    return entity


def countLines(body):
    """
    @return: the size of C{body} in text lines (RFC 3501 7.4.2
        C{body-fld-lines}): its line breaks, plus one for a last line without
        one.
    """
    lines = body.count(b"\n")
    if body and not body.endswith(b"\n"):
        lines += 1
    return lines
