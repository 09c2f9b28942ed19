"""
The IMAP4rev1 grammar (RFC 3501 section 9): reading command arguments and
writing response data.

A command arrives as lines and literals (L{mailplat.imap.server} frames
them); L{Arguments} walks over them token by token, so that a string may be
an atom, a quoted string or a literal wherever the grammar allows, and every
syntax error is a L{ParseError} (a tagged BAD) rather than an exception from
deep inside a parser.
"""

import calendar
import re

# RFC 3501 9: ATOM-CHAR is any CHAR except atom-specials:
# "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
# resp-specials.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ATOM_CHARS | {ord("%"), ord("*"), ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
_SEQUENCE_CHARS = frozenset(b"0123456789:,*")

MAX_NUMBER = 2**32 - 1
MAX_NUMBER64 = 2**63 - 1


class ParseError(ValueError):
    """
    The command does not follow the grammar: the text is sent with a tagged
    BAD.
    """


class Literal:
    """
    The data of one literal (RFC 3501 4.3).

    @ivar data: its bytes, or for the message of an APPEND a binary file
        (spooled to disk when large) positioned at the start.
    @ivar size: its length in octets.
    """

    def __init__(self, data, size):
        self.data = data
        self.size = size

    def __repr__(self):
        return f"<Literal {self.size} octets>"


class SequenceSet:
    """
    A C{sequence-set} (RFC 3501 9): ranges whose ends are numbers or L{None}
    for C{*}.
    """

    def __init__(self, ranges):
        self.ranges = ranges

    @classmethod
    def parse(cls, text):
        """
        @param text: L{bytes} such as C{1:3,5,7:*}.
        @raise ParseError: it is not a sequence set.
        """
        ranges = []
        for item in text.split(b","):
            ends = item.split(b":")
            if len(ends) > 2 or not all(ends):
                raise ParseError("Invalid message set")
            values = []
            for end in ends:
                if end == b"*":
                    values.append(None)
                elif end.isdigit() and end[:1] != b"0" and int(end) <= MAX_NUMBER:
                    values.append(int(end))
                else:
                    raise ParseError("Invalid message set")
            ranges.append((values[0], values[-1]))
        return cls(ranges)

    def resolve(self, star):
        """
        @param star: what C{*} stands for (the highest number in use).
        @return: the L{list} of C{(low, high)} pairs with C{low <= high}.
        """
        result = []
        for low, high in self.ranges:
            low = star if low is None else low
            high = star if high is None else high
            result.append((min(low, high), max(low, high)))
        return result

    def contains(self, n, star):
        return any(low <= n <= high for low, high in self.resolve(star))

    def __repr__(self):
        return f"<SequenceSet {self.ranges}>"


def formatSequenceSet(numbers):
    """
    @param numbers: sorted numbers.
    @return: a compact C{sequence-set}, C{1:3,7} (RFC 4315 C{uid-set}).
    """
    parts = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(_range(start, prev))
            start = prev = n
    if start is not None:
        parts.append(_range(start, prev))
    return b",".join(parts)


def _range(low, high):
    return b"%d" % low if low == high else b"%d:%d" % (low, high)


class Arguments:
    """
    A cursor over the arguments of one command: the line segments and
    literals that make it up, after the tag and command name.

    @param parts: alternating L{bytes} (line text, without CRLF and without
        the literal's C{{n}}) and L{Literal}s, starting and ending with
        L{bytes}.
    """

    def __init__(self, parts, pos=0):
        self._parts = parts
        self._index = 0
        self._pos = pos

    @property
    def _line(self):
        return self._parts[self._index]

    def _atLiteral(self):
        return self._pos >= len(self._line) and self._index + 1 < len(self._parts)

    def atEnd(self):
        """
        @return: whether every argument has been read.
        """
        return self._pos >= len(self._line) and self._index + 1 >= len(self._parts)

    def end(self):
        """
        @raise ParseError: there is more.
        """
        if not self.atEnd():
            raise ParseError("Extra arguments")

    def peek(self):
        """
        @return: the next byte as a one-byte L{bytes}, C{b"{"} at a literal,
            or C{b""} at the end.
        """
        if self._atLiteral():
            return b"{"
        return self._line[self._pos : self._pos + 1]

    def peekWord(self):
        """
        @return: the upper-cased run of atom characters ahead, without
            consuming it.
        """
        line, pos = self._line, self._pos
        end = pos
        while end < len(line) and line[end] in ATOM_CHARS:
            end += 1
        return line[pos:end].upper()

    def sp(self):
        """
        Consume the single space between two arguments.
        """
        if self._line[self._pos : self._pos + 1] != b" ":
            raise ParseError("Missing argument" if self.atEnd() else "Expected a space")
        self._pos += 1

    def maybe(self, token):
        """
        Consume C{token} (case-insensitive) if it comes next.

        @return: whether it did.
        """
        line = self._line
        if line[self._pos : self._pos + len(token)].upper() == token.upper():
            self._pos += len(token)
            return True
        return False

    def expect(self, token):
        if not self.maybe(token):
            raise ParseError(
                "Missing argument" if self.atEnd() else f"Expected {token.decode()}"
            )

    def run(self, allowed, what):
        """
        @return: the non-empty run of bytes in C{allowed} ahead.
        """
        line = self._line
        start = pos = self._pos
        while pos < len(line) and line[pos] in allowed:
            pos += 1
        if pos == start:
            raise ParseError(f"Missing {what}" if self.atEnd() else f"Invalid {what}")
        self._pos = pos
        return line[start:pos]

    def atom(self, what="argument"):
        return self.run(ATOM_CHARS, what)

    def number(self, nonZero=False, limit=MAX_NUMBER):
        text = self.run(b"0123456789", "number")
        value = int(text) if len(text) < 21 else limit + 1
        if value > limit or (nonZero and value == 0):
            raise ParseError("Number out of range")
        return value

    def literal(self):
        """
        @return: the L{Literal} at this point.
        """
        if not self._atLiteral():
            raise ParseError("Expected a literal")
        self._index += 1
        literal = self._parts[self._index]
        self._index += 1
        self._pos = 0
        return literal

    def quoted(self):
        """
        A quoted string (RFC 3501 4.3): only C{\\"} and C{\\\\} are escapes.
        8-bit characters are accepted (clients send UTF-8 in SEARCH after
        C{CHARSET UTF-8}); NUL is not.
        """
        line = self._line
        if line[self._pos : self._pos + 1] != b'"':
            raise ParseError("Expected a quoted string")
        out = bytearray()
        pos = self._pos + 1
        while True:
            if pos >= len(line):
                raise ParseError("Unterminated quoted string")
            c = line[pos]
            if c == 0x22:
                break
            if c == 0x5C:
                pos += 1
                if pos >= len(line) or line[pos] not in (0x22, 0x5C):
                    raise ParseError("Invalid escape in quoted string")
                c = line[pos]
            elif c == 0:
                raise ParseError("NUL in quoted string")
            out.append(c)
            pos += 1
        self._pos = pos + 1
        return bytes(out)

    def string(self):
        """
        @return: a quoted string or a literal, as L{bytes}.
        """
        nxt = self.peek()
        if nxt == b'"':
            return self.quoted()
        if nxt == b"{":
            data = self.literal().data
            if not isinstance(data, bytes):
                raise ParseError("Unexpected message literal")
            if b"\0" in data:
                raise ParseError("NUL in literal")
            return data
        raise ParseError("Missing argument" if self.atEnd() else "Expected a string")

    def astring(self):
        nxt = self.peek()
        if nxt in (b'"', b"{"):
            return self.string()
        return self.run(ASTRING_CHARS, "argument")

    def nstring(self):
        if self.peekWord() == b"NIL":
            self._pos += 3
            return None
        return self.string()

    def listMailbox(self):
        """
        A LIST pattern (RFC 3501 9, C{list-mailbox}).
        """
        nxt = self.peek()
        if nxt in (b'"', b"{"):
            return self.string()
        return self.run(LIST_CHARS, "mailbox pattern")

    def sequenceSet(self):
        return SequenceSet.parse(self.run(_SEQUENCE_CHARS, "message set"))

    def flag(self):
        """
        A flag (RFC 3501 9): C{\\} and an atom, or a keyword atom.
        """
        if self.maybe(b"\\"):
            if self.maybe(b"*"):
                return b"\\*"
            return b"\\" + self.atom("flag")
        return self.atom("flag")

    def flagList(self):
        """
        C{"(" [flag *(SP flag)] ")"}.
        """
        self.expect(b"(")
        flags = []
        while not self.maybe(b")"):
            if flags:
                self.sp()
            flags.append(self.flag())
        return flags

    def parenthesized(self, item):
        """
        C{"(" item *(SP item) ")"} with at least one item.

        @param item: a method of this object reading one item.
        """
        self.expect(b"(")
        items = [item()]
        while not self.maybe(b")"):
            self.sp()
            items.append(item())
        return items

    def dateTime(self):
        """
        A quoted C{date-time} (RFC 3501 9): C{"dd-Mon-yyyy hh:mm:ss +zzzz"}.

        @return: a POSIX time.
        """
        text = self.quoted()
        m = _DATE_TIME.fullmatch(text)
        if m is None:
            raise ParseError("Invalid date-time")
        day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
        try:
            month = _MONTHS.index(month.capitalize()) + 1
            if not (1 <= int(day) <= 31 and int(hh) < 24 and int(mm) < 60
                    and int(ss) < 61 and int(zm) < 60):
                raise ValueError(text)
            t = calendar.timegm((int(year), month, int(day), int(hh), int(mm),
                                 int(ss), 0, 0, 0))
        except ValueError:
            raise ParseError("Invalid date-time") from None
        offset = (int(zh) * 60 + int(zm)) * 60
        return float(t - offset if sign == b"+" else t + offset)

    def date(self):
        """
        A C{date} (RFC 3501 9): C{d-Mon-yyyy}, optionally quoted.

        @return: C{(year, month, day)}.
        """
        if self.peek() == b'"':
            text = self.quoted()
        else:
            text = self.atom("date")
        m = _DATE.fullmatch(text)
        if m is None or m.group(2).capitalize() not in _MONTHS:
            raise ParseError("Invalid date")
        day, month, year = int(m.group(1)), m.group(2).capitalize(), int(m.group(3))
        if not 1 <= day <= 31:
            raise ParseError("Invalid date")
        return year, _MONTHS.index(month) + 1, day


_MONTHS = [m.encode() for m in
           ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")]
_DATE_TIME = re.compile(
    rb"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")


# -- writing

_QUOTABLE = re.compile(rb'[\x01-\x09\x0b\x0c\x0e-\x7f]*')


def quoted(data):
    """
    @return: C{data} as a quoted string, or a literal when it holds
        characters a quoted string cannot (CR, LF, NUL, 8-bit).
    """
    if data is None:
        return b"NIL"
    if _QUOTABLE.fullmatch(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data):
    """
    @return: C{data} as a literal (RFC 3501 4.3), or C{NIL}.
    """
    if data is None:
        return b"NIL"
    return b"{%d}\r\n" % (len(data),) + data


def astring(data):
    """
    @return: C{data} as an atom when it can be one, else quoted.
    """
    if data and data.upper() != b"NIL" and all(c in ASTRING_CHARS for c in data):
        return data
    return quoted(data)


def flagList(flags):
    return b"(" + " ".join(flags).encode("utf-8") + b")"
