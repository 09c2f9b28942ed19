"""
SEARCH (RFC 3501 6.4.4): the search program and its evaluation.

Every key of RFC 3501 is supported, and C{MODSEQ} (RFC 7162 3.1.5).
Strings are matched as case-insensitive substrings of the decoded text:
header fields are unfolded and their RFC 2047 encoded words decoded; BODY
and TEXT look at the text parts with their transfer encoding and charset
undone.

The program is a tree built with explicit depth accounting: parentheses,
C{NOT} and C{OR} each add a level, and a program deeper than
L{MAX_SEARCH_DEPTH} is refused with L{SearchTooDeep} (a tagged BAD) before
anything recurses.  Evaluation recurses over that bounded tree only.
"""

import base64
import binascii
import calendar
import email.header
import email.utils
import quopri
import time

from mailplat.imap.message import (
    MessagePart,
    MimeTooDeep,
    headerLines,
    headerValue,
)
from mailplat.imap.wire import ParseError

MAX_SEARCH_DEPTH = 32
CHARSETS = ("UTF-8", "US-ASCII")

_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True),
    b"DELETED": ("\\Deleted", True),
    b"DRAFT": ("\\Draft", True),
    b"FLAGGED": ("\\Flagged", True),
    b"SEEN": ("\\Seen", True),
    b"UNANSWERED": ("\\Answered", False),
    b"UNDELETED": ("\\Deleted", False),
    b"UNDRAFT": ("\\Draft", False),
    b"UNFLAGGED": ("\\Flagged", False),
    b"UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {b"BCC": b"bcc", b"CC": b"cc", b"FROM": b"from", b"SUBJECT": b"subject",
                b"TO": b"to"}
_DATE_KEYS = {b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}


class SearchTooDeep(ParseError):
    """
    The search program nests deeper than L{MAX_SEARCH_DEPTH}.
    """


class BadCharset(ValueError):
    """
    A CHARSET this server does not search in (RFC 3501 6.4.4: NO with the
    BADCHARSET response code).
    """


class _Parser:
    def __init__(self, args):
        self.args = args
        self.usesModseq = False

    def string(self):
        self.args.sp()
        return self.args.astring().decode("utf-8", "replace")

    def keys(self, depth, closing):
        """
        C{search-key *(SP search-key)} up to the end or a C{)}.
        """
        keys = [self.key(depth)]
        while True:
            if closing and self.args.peek() == b")":
                return keys
            if self.args.atEnd():
                if closing:
                    raise ParseError("Missing )")
                return keys
            self.args.sp()
            keys.append(self.key(depth))

    def key(self, depth):
        args = self.args
        if depth > MAX_SEARCH_DEPTH:
            raise SearchTooDeep(
                "Search program nested more than %d levels deep" % MAX_SEARCH_DEPTH
            )
        if args.maybe(b"("):
            keys = self.keys(depth + 1, True)
            args.expect(b")")
            return ("and", keys)
        nxt = args.peek()
        if nxt.isdigit() or nxt == b"*":
            return ("seq", args.sequenceSet())
        word = args.atom("search key").upper()
        if word == b"ALL":
            return ("all",)
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return ("flag", flag, present)
        if word in (b"NEW", b"OLD", b"RECENT"):
            return (word.decode().lower(),)
        if word in (b"KEYWORD", b"UNKEYWORD"):
            args.sp()
            keyword = args.flag().decode("utf-8", "replace")
            return ("keyword", keyword, word == b"KEYWORD")
        if word in _HEADER_KEYS:
            return ("header", _HEADER_KEYS[word], self.string().casefold())
        if word == b"HEADER":
            args.sp()
            field = args.astring().lower()
            return ("header", field, self.string().casefold())
        if word in (b"BODY", b"TEXT"):
            return (word.decode().lower(), self.string().casefold())
        if word in (b"LARGER", b"SMALLER"):
            args.sp()
            return (word.decode().lower(), args.number(limit=2**63 - 1))
        if word in _DATE_KEYS:
            args.sp()
            return ("date", word.decode().lower(), args.date())
        if word == b"UID":
            args.sp()
            return ("uid", args.sequenceSet())
        if word == b"NOT":
            args.sp()
            return ("not", self.key(depth + 1))
        if word == b"OR":
            args.sp()
            first = self.key(depth + 1)
            args.sp()
            return ("or", first, self.key(depth + 1))
        if word == b"MODSEQ":
            # RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence
            args.sp()
            if args.peek() == b'"':
                args.quoted()
                args.sp()
                args.atom("entry type")
                args.sp()
            self.usesModseq = True
            return ("modseq", args.number(limit=2**63 - 1))
        raise ParseError("Unknown search key " + word.decode("ascii", "replace"))


def parseSearch(args):
    """
    Read the arguments of SEARCH: C{[CHARSET astring SP] search-key *(SP
    search-key)}.

    @return: C{(program, usesModseq)}.
    @raise ParseError: the program is not valid.
    @raise SearchTooDeep: it nests too deeply.
    @raise BadCharset: the charset is not one we search in.
    """
    if args.peekWord() == b"CHARSET":
        args.atom()
        args.sp()
        charset = args.astring().decode("ascii", "replace").upper()
        if charset not in CHARSETS:
            raise BadCharset(charset)
        args.sp()
    parser = _Parser(args)
    program = ("and", parser.keys(1, False))
    args.end()
    return program, parser.usesModseq


def _cost(node):
    """
    How much testing C{node} costs: 0 for what the index knows, 1 for the
    header, 2 for the body.
    """
    kind = node[0]
    if kind == "and":
        return max((_cost(n) for n in node[1]), default=0)
    if kind == "or":
        return max(_cost(node[1]), _cost(node[2]))
    if kind == "not":
        return _cost(node[1])
    if kind == "header" or (kind == "date" and node[1].startswith("sent")):
        return 1
    if kind in ("body", "text"):
        return 2
    return 0


def optimize(node):
    """
    Put the cheap keys (flags, sizes, UIDs) of each AND before the ones
    that read the message, so that most messages are ruled out without
    reading them.
    """
    kind = node[0]
    if kind == "and":
        return ("and", sorted((optimize(n) for n in node[1]), key=_cost))
    if kind == "not":
        return ("not", optimize(node[1]))
    if kind == "or":
        return ("or", optimize(node[1]), optimize(node[2]))
    return node


def _decodeHeader(raw):
    """
    @return: the unfolded, RFC 2047-decoded value of a raw header field.
    """
    value = headerValue(raw).decode("utf-8", "replace")
    try:
        parts = email.header.decode_header(value)
    except (ValueError, LookupError):
        return value
    out = []
    for text, charset in parts:
        if isinstance(text, bytes):
            try:
                text = text.decode(charset or "ascii", "replace")
            except LookupError:
                text = text.decode("utf-8", "replace")
        out.append(text)
    return "".join(out)


def _decodeBody(part):
    """
    @return: the text of a leaf part, its transfer encoding and charset
        undone, or L{None} for a non-text part.
    """
    headers = part.headers()
    if headers.get_content_maintype() != "text":
        return None
    encoding = (part.field(b"content-transfer-encoding") or b"").strip().lower()
    data = part.body
    try:
        if encoding == b"base64":
            data = base64.b64decode(data, validate=False)
        elif encoding == b"quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        pass
    charset = headers.get_content_charset() or "us-ascii"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def bodyTexts(content):
    """
    The decoded texts of a message's text parts, walked without recursion
    and no deeper than L{MAX_MIME_DEPTH}; deeper parts are searched as raw
    bytes.

    @return: a L{list} of L{str}.
    """
    texts = []
    stack = [(content, True)]
    while stack:
        entity, isMessage = stack.pop()
        try:
            if entity.isMultipart():
                stack.extend((p, False) for p in reversed(entity.subparts()))
                continue
            if entity.isMessage() and not isMessage:
                inner = entity.encapsulated()
                texts.append(_headerText(inner))
                stack.append((inner, True))
                continue
        except MimeTooDeep:
            texts.append(entity.body.decode("utf-8", "replace"))
            continue
        text = _decodeBody(entity)
        if text is not None:
            texts.append(text)
    return texts


def _headerText(part):
    return "\n".join(
        raw.split(b":", 1)[0].decode("utf-8", "replace") + ": " + _decodeHeader(raw)
        for _, raw in headerLines(part.header)
    )


class Candidate:
    """
    One message being tested: what the index knows, and its content read
    and decoded only when a key needs it.
    """

    def __init__(self, seq, info, recent, read):
        self.seq = seq
        self.info = info
        self.recent = recent
        self._read = read
        self._content = None
        self._headers = None
        self._body = None

    @property
    def content(self):
        if self._content is None:
            self._content = MessagePart(self._read(self.info))
        return self._content

    def headers(self):
        if self._headers is None:
            fields = {}
            for name, raw in headerLines(self.content.header):
                fields.setdefault(name, []).append(_decodeHeader(raw).casefold())
            self._headers = fields
        return self._headers

    def body(self):
        if self._body is None:
            self._body = "\n".join(bodyTexts(self.content)).casefold()
        return self._body


def _day(year, month, day):
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))


def _sentDay(candidate):
    """
    @return: the date of the Date field, at midnight UTC, disregarding time
        and time zone (RFC 3501 6.4.4), or L{None}.
    """
    values = candidate.headers().get(b"date")
    if not values:
        return None
    try:
        parsed = email.utils.parsedate_tz(values[0])
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return _day(parsed[0], parsed[1], parsed[2])


def matches(node, c, context):
    """
    @param node: a (sub)program from L{parseSearch}.
    @param c: a L{Candidate}.
    @param context: C{(messageCount, highestUID)} for C{*} in sets.
    """
    kind = node[0]
    if kind == "and":
        return all(matches(n, c, context) for n in node[1])
    if kind == "all":
        return True
    if kind == "flag":
        return (node[1] in c.info.flags) == node[2]
    if kind == "keyword":
        wanted = node[1].lower()
        has = any(f.lower() == wanted for f in c.info.flags)
        return has == node[2]
    if kind == "new":
        return c.recent and "\\Seen" not in c.info.flags
    if kind == "old":
        return not c.recent
    if kind == "recent":
        return c.recent
    if kind == "seq":
        return node[1].contains(c.seq, context[0])
    if kind == "uid":
        return node[1].contains(c.info.uid, context[1])
    if kind == "larger":
        return c.info.size > node[1]
    if kind == "smaller":
        return c.info.size < node[1]
    if kind == "modseq":
        return c.info.modseq >= node[1]
    if kind == "not":
        return not matches(node[1], c, context)
    if kind == "or":
        return matches(node[1], c, context) or matches(node[2], c, context)
    if kind == "header":
        values = c.headers().get(node[1], ())
        return any(node[2] in v for v in values)
    if kind == "body":
        return node[1] in c.body()
    if kind == "text":
        if any(node[1] in v for vs in c.headers().values() for v in vs):
            return True
        return node[1] in c.body()
    if kind == "date":
        which, (year, month, day) = node[1], node[2]
        wanted = _day(year, month, day)
        if which.startswith("sent"):
            have = _sentDay(c)
            if have is None:
                return False
            which = which[4:]
        else:
            t = time.gmtime(c.info.internalDate)
            have = _day(t.tm_year, t.tm_mon, t.tm_mday)
        if which == "before":
            return have < wanted
        if which == "on":
            return have == wanted
        return have >= wanted
    raise AssertionError(kind)
