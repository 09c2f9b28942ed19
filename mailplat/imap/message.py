"""
Messages of a folder as L{twisted.mail.imap4} sees them, served byte for byte
from the stored file.

A L{MaildirMessage} starts out knowing only what the folder snapshot says
(UID, flags, size, delivery time).  The server reads its bytes with
L{MaildirMessage.load} off the reactor thread when a FETCH needs them; from
then on every L{IMessage} method answers from memory.

The MIME structure is found on the raw bytes (RFC 2045, RFC 2046 5.1.1), never
by re-serialising a parsed message, so that every section a client fetches
(RFC 3501 6.4.5) is exactly the octets stored on disk.
"""

import email.parser
import email.policy
import email.utils
import io
import re
import time

from twisted.mail import imap4
from zope.interface import implementer


# The order flags are listed in, the one of RFC 3501 7.2.6's example.
SYSTEM_FLAGS_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip

_LINE = re.compile(rb"[^\n]*\n|[^\n]+")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_headerParser = email.parser.BytesHeaderParser(policy=email.policy.compat32)


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


def selectHeaderFields(header, names, negate):
    """
    The C{HEADER.FIELDS} / C{HEADER.FIELDS.NOT} subset of a header (RFC 3501
    6.4.5): the matching fields as stored, then the empty line.

    @param names: field names (L{bytes}, any case).
    """
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in headerLines(header) if (name in wanted) != negate]
    return b"".join(kept) + b"\r\n"


@implementer(imap4.IMessagePart)
class MessagePart:
    """
    One MIME entity (RFC 2045 2.4): a whole message or a body part, over its
    raw bytes.
    """

    def __init__(self, data):
        self.data = data
        self.header, self.body = splitHeader(data)
        self._parsed = None
        self._parts = None

    def _headers(self):
        if self._parsed is None:
            self._parsed = _headerParser.parsebytes(self.header)
        return self._parsed

    @property
    def contentType(self):
        """
        The lower-case C{type/subtype}, C{text/plain} by default (RFC 2045 5.2).
        """
        return self._headers().get_content_type()

    def isMessage(self):
        """
        @return: whether this entity encapsulates a message (RFC 2046 5.2.1).
        """
        return self.contentType == "message/rfc822"

    def encapsulated(self):
        """
        @return: the message inside a C{message/rfc822} entity.
        """
        return MessagePart(self.body)

    def subparts(self):
        """
        The body parts of a multipart entity (RFC 2046 5.1.1): the text
        between boundary delimiters, the CRLF before each delimiter belonging
        to the delimiter.  Preamble and epilogue are not parts.

        @rtype: L{list} of L{MessagePart}
        """
        if self._parts is None:
            self._parts = []
            boundary = self._headers().get_param("boundary")
            if boundary is not None:
                boundary = email.utils.collapse_rfc2231_value(boundary)
            if self._headers().get_content_maintype() == "multipart" and boundary:
                self._parts = [
                    MessagePart(chunk) for chunk in _splitMultipart(self.body, boundary)
                ]
        return self._parts

    # -- IMessagePart

    def getHeaders(self, negate, *names):
        """
        @return: a L{dict} of lower-case field name to unfolded value, the
            first field of each name; with C{negate}, the fields not named.
        """
        wanted = {(n if isinstance(n, str) else n.decode()).lower() for n in names}
        result = {}
        for name, raw in headerLines(self.header):
            key = name.decode("ascii", "replace")
            if key in result or (key in wanted) == negate:
                continue
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            # RFC 5322 2.2.3: unfolding removes the line breaks only.
            value = value.replace(b"\r", b"").replace(b"\n", b"").strip()
            result[key] = value.decode("utf-8", "replace")
        return result

    def getBodyFile(self):
        return io.BytesIO(self.body)

    def getSize(self):
        return len(self.data)

    def isMultipart(self):
        return bool(self.subparts())

    def getSubPart(self, part):
        if not self.isMultipart():
            raise TypeError("not a multipart entity")
        return self.subparts()[part]


def _splitMultipart(body, boundary):
    """
    @return: the body parts of a multipart body, as L{bytes}; a missing
        close delimiter ends the last part at the end of the body.
    """
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?"
        rb"[ \t]*(?:\r?\n|\Z)"
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


@implementer(imap4.IMessage, imap4.IMessageFile)
class MaildirMessage:
    """
    One message of a selected folder.

    @ivar info: its L{mailplat.storage.maildir.MessageInfo}.
    @ivar recent: whether it carries C{\\Recent} in this session.
    @ivar content: the L{MessagePart} of the whole message once loaded.
    """

    def __init__(self, info, recent=False):
        self.info = info
        self.recent = recent
        self.content = None

    def load(self, folder):
        """
        I{blocking}: read the message's bytes from C{folder}.

        @raise mailplat.storage.maildir.MessageGone: it was expunged.
        """
        self.content = MessagePart(folder.read(self.info))
        return self

    def _loaded(self):
        if self.content is None:
            raise RuntimeError("message content was not loaded")
        return self.content

    @property
    def data(self):
        return self._loaded().data

    # -- IMessage

    def getUID(self):
        return self.info.uid

    def getFlags(self):
        """
        @return: the system flags in a fixed order, then C{\\Recent}.
        """
        flags = [f for f in SYSTEM_FLAGS_ORDER if f in self.info.flags]
        if self.recent:
            flags.append("\\Recent")
        return flags

    def getInternalDate(self):
        return time.strftime(
            "%a, %d %b %Y %H:%M:%S +0000", time.gmtime(self.info.mtime)
        )

    def getSize(self):
        """
        The size in octets, exactly as served (RFC 3501 2.3.4).
        """
        if self.content is not None:
            return len(self.content.data)
        return self.info.size

    def getHeaders(self, negate, *names):
        return self._loaded().getHeaders(negate, *names)

    def getBodyFile(self):
        return self._loaded().getBodyFile()

    def isMultipart(self):
        return self._loaded().isMultipart()

    def getSubPart(self, part):
        return self._loaded().getSubPart(part)

    # -- IMessageFile

    def open(self):
        return io.BytesIO(self.data)
