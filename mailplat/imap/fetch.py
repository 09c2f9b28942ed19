"""
FETCH (RFC 3501 6.4.5, 7.4.2): the attributes a client asks for, and the
response built from the stored bytes.

twisted.mail's FETCH rebuilds headers from a dict (losing repeated fields
and their spelling), ignores partial ranges, has no ENVELOPE for groups and
no limit on MIME depth.  Here every section is a slice of the message as
stored, so C{RFC822.SIZE} is the length of C{BODY[]} and C{BODY[HEADER]} +
C{BODY[TEXT]} is C{BODY[]}.  A whole-message item (C{BODY[]},
C{BODY.PEEK[]<o.n>}, C{RFC822}) is streamed from the file rather than read
into memory.
"""

from dataclasses import dataclass

from mailplat.imap import structure
from mailplat.imap.message import (
    MessagePart,
    formatInternalDate,
    orderedFlags,
    resolvePart,
    selectHeaderFields,
)
from mailplat.imap.wire import ParseError, astring, literal

_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_TEXT_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")
_SIMPLE = {
    b"ENVELOPE", b"FLAGS", b"INTERNALDATE", b"RFC822", b"RFC822.HEADER",
    b"RFC822.SIZE", b"RFC822.TEXT", b"BODYSTRUCTURE", b"UID", b"MODSEQ",
}
_MACROS = {
    b"ALL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"),
    b"FAST": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"),
    b"FULL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"),
}
# Items that need the message parsed.
_PARSED = {b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", b"RFC822.HEADER", b"RFC822.TEXT"}


@dataclass(frozen=True)
class FetchItem:
    """
    One fetch attribute.

    @ivar name: C{FLAGS}, C{UID}, ..., C{BODY} (the structure) or
        C{SECTION} (C{BODY[...]} and C{BODY.PEEK[...]}).
    @ivar part: the section's part numbers (one-based).
    @ivar text: L{None}, C{HEADER}, C{HEADER.FIELDS}, C{HEADER.FIELDS.NOT},
        C{TEXT} or C{MIME}.
    @ivar fields: the header field names, as the client gave them.
    @ivar partial: C{(offset, length)} or L{None}.
    """

    name: bytes
    peek: bool = False
    part: tuple = ()
    text: bytes = None
    fields: tuple = ()
    partial: tuple = None

    def isWholeMessage(self):
        return self.name == b"RFC822" or (
            self.name == b"SECTION" and not self.part and self.text is None
        )

    def setsSeen(self):
        """
        RFC 3501 6.4.5: C{BODY[...]}, C{RFC822} and C{RFC822.TEXT} set
        C{\\Seen}; C{BODY.PEEK[...]} and C{RFC822.HEADER} do not.
        """
        return self.name in (b"RFC822", b"RFC822.TEXT") or (
            self.name == b"SECTION" and not self.peek
        )

    def responseName(self):
        if self.name != b"SECTION":
            return self.name
        spec = [b"%d" % p for p in self.part]
        if self.text is not None:
            text = self.text
            if self.fields:
                text += b" (" + b" ".join(astring(f) for f in self.fields) + b")"
            spec.append(text)
        name = b"BODY[" + b".".join(spec) + b"]"
        if self.partial is not None:
            name += b"<%d>" % self.partial[0]
        return name


def _section(args, peek):
    """
    The rest of C{BODY[section]<partial>} after the C{[} (RFC 3501 9,
    C{section}).
    """
    part = []
    text = None
    fields = ()
    if args.peek().isdigit():
        while True:
            part.append(args.number(nonZero=True))
            if not args.maybe(b"."):
                break
            if not args.peek().isdigit():
                text = args.run(_TEXT_CHARS, "section").upper()
                break
    elif args.peek() != b"]":
        text = args.run(_TEXT_CHARS, "section").upper()
    if text in (b"HEADER.FIELDS", b"HEADER.FIELDS.NOT"):
        args.sp()
        fields = tuple(args.parenthesized(args.astring))
    elif text is not None and (
        text not in (b"HEADER", b"TEXT", b"MIME") or (text == b"MIME" and not part)
    ):
        raise ParseError("Invalid section")
    args.expect(b"]")
    partial = None
    if args.maybe(b"<"):
        offset = args.number()
        args.expect(b".")
        length = args.number(nonZero=True)
        args.expect(b">")
        partial = (offset, length)
    return FetchItem(b"SECTION", peek, tuple(part), text, fields, partial)


def _item(args):
    name = args.run(_NAME_CHARS, "fetch attribute").upper()
    if name in (b"BODY", b"BODY.PEEK"):
        if args.maybe(b"["):
            return _section(args, name == b"BODY.PEEK")
        if name == b"BODY.PEEK":
            raise ParseError("BODY.PEEK needs a section")
        return FetchItem(b"BODY")
    if name not in _SIMPLE:
        raise ParseError("Invalid fetch attribute " + name.decode("ascii"))
    return FetchItem(name)


def parseAttributes(args):
    """
    Read the fetch attributes of a FETCH command (RFC 3501 9, C{fetch-att}),
    a macro (C{ALL}, C{FAST}, C{FULL}) or a parenthesized list.

    @param args: the L{mailplat.imap.wire.Arguments}.
    @return: a L{list} of L{FetchItem}.
    @raise ParseError: they are not valid.
    """
    if args.peek() == b"(":
        return args.parenthesized(lambda: _item(args))
    word = args.peekWord()
    if word in _MACROS:
        args.run(_NAME_CHARS, "fetch attribute")
        return [FetchItem(n) for n in _MACROS[word]]
    return [_item(args)]


def setsSeen(items):
    return any(item.setsSeen() for item in items)


def needsParsing(items):
    return any(
        item.name in _PARSED or (item.name == b"SECTION" and not item.isWholeMessage())
        for item in items
    )


# Items that need the MIME structure (not just the split of the top-level
# header from the body).
_STRUCTURE = {b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"}


def needsStructure(items):
    """
    @return: whether an item needs the message's MIME structure, which is
        parsed off the reactor thread; the others (flags and sizes, the
        whole message, its top-level header, header fields or text) cost a
        split of the header from the body at most.
    """
    return any(
        item.name in _STRUCTURE or (item.name == b"SECTION" and item.part)
        for item in items
    )


def needsContent(items):
    return needsParsing(items) or any(item.isWholeMessage() for item in items)


class FileSlice:
    """
    A part of a FETCH response to be copied from the message file.
    """

    def __init__(self, offset, length):
        self.offset = offset
        self.length = length


def _sectionData(content, item):
    """
    The octets of the section C{item} asks for, before any partial range.

    @return: L{bytes}, or L{None} for a section the message does not have.
    """
    if item.part:
        entity = resolvePart(content, item.part)
        if entity is None:
            return None
        if item.text == b"MIME":
            return entity.header
        if item.text is None:
            return entity.body
        if not entity.isMessage():
            return None
        message = entity.encapsulated()
    else:
        message = content
        if item.text is None:
            return content.data
    if item.text == b"TEXT":
        return message.body
    if item.fields:
        return selectHeaderFields(message.header, item.fields, item.text.endswith(b".NOT"))
    return message.header


def _partial(data, item):
    if item.partial is None or data is None:
        return data
    offset, length = item.partial
    return data[offset : offset + length]


_flagsCache = {}


def flagsAttribute(flags, recent):
    """
    @return: C{FLAGS (...)} for a flag set: the few distinct sets a mailbox
        uses are formatted once (a bounded cache).
    """
    key = (flags, recent)
    text = _flagsCache.get(key)
    if text is None:
        if len(_flagsCache) >= 1024:
            _flagsCache.clear()
        text = _flagsCache[key] = (
            b"FLAGS (" + " ".join(orderedFlags(flags, recent)).encode("utf-8") + b")"
        )
    return text


def messageAttributes(info, items, content=None, size=None, recent=False):
    """
    The C{msg-att} of one message (RFC 3501 7.4.2).

    @param info: the L{mailplat.storage.maildir.MessageInfo}.
    @param content: the L{MessagePart} of the message, when an item needs
        it parsed; otherwise whole-message items become L{FileSlice}s.
    @param size: the size of the message file, for L{FileSlice}s.
    @param recent: whether the message is C{\\Recent} in this session.
    @return: a L{list} of L{bytes} and L{FileSlice}.
    @raise mailplat.imap.message.MimeTooDeep: the structure is too deep.
    """
    pieces = []
    for n, item in enumerate(items):
        if n:
            pieces.append(b" ")
        name = item.name
        if name == b"FLAGS":
            pieces.append(flagsAttribute(info.flags, recent))
        elif name == b"UID":
            pieces.append(b"UID %d" % info.uid)
        elif name == b"MODSEQ":
            pieces.append(b"MODSEQ (%d)" % info.modseq)
        elif name == b"INTERNALDATE":
            pieces.append(b'INTERNALDATE "' + formatInternalDate(info.internalDate) + b'"')
        elif name == b"RFC822.SIZE":
            pieces.append(b"RFC822.SIZE %d" % info.size)
        elif name == b"ENVELOPE":
            pieces.append(b"ENVELOPE " + structure.envelope(content))
        elif name == b"BODYSTRUCTURE":
            pieces.append(b"BODYSTRUCTURE " + structure.bodyStructure(content, True))
        elif name == b"BODY":
            pieces.append(b"BODY " + structure.bodyStructure(content, False))
        elif name == b"RFC822.HEADER":
            pieces.append(b"RFC822.HEADER " + literal(content.header))
        elif name == b"RFC822.TEXT":
            pieces.append(b"RFC822.TEXT " + literal(content.body))
        elif item.isWholeMessage() and content is None:
            offset, length = 0, size
            if item.partial is not None:
                offset = min(item.partial[0], size)
                length = min(item.partial[1], size - offset)
            pieces.append(item.responseName() + b" {%d}\r\n" % length)
            pieces.append(FileSlice(offset, length))
        else:
            data = _partial(_sectionData(content, item), item)
            pieces.append(item.responseName() + b" " + literal(data))
    return pieces


def parse(data):
    return MessagePart(data)
