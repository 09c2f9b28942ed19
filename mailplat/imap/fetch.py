"""
FETCH responses (RFC 3501 6.4.5, 7.4.2), written from the stored bytes.

L{twisted.mail.imap4.IMAP4Server} parses the fetch attributes well enough
(L{imap4._FetchParser}) but rebuilds headers from a dict (losing repeated
fields and their spelling), ignores partial ranges and streams through the
global reactor.  Here every section is a slice of the message as stored, so
C{RFC822.SIZE} is the length of C{BODY[]} and C{BODY[HEADER]} +
C{BODY[TEXT]} is C{BODY[]}.
"""

from mailplat.imap.message import formatInternalDate, selectHeaderFields

# Fetch attributes whose data comes from the message bytes.
_CONTENT_ITEMS = frozenset({"rfc822", "rfc822header", "rfc822text", "body"})
# Attributes that are served now; the others (ENVELOPE, BODYSTRUCTURE and
# BODY without a section) answer BAD until the full server.
_SUPPORTED_ITEMS = _CONTENT_ITEMS | {"flags", "uid", "internaldate", "rfc822size"}


class UnsupportedFetchItem(ValueError):
    """
    A fetch attribute this server does not serve yet, or an invalid section.
    """


def hasSection(item):
    """
    @return: whether a parsed C{BODY} attribute names a section (C{BODY[...]}),
        as opposed to C{BODY}, the body structure.
    """
    return bool(item.empty or item.header or item.text or item.mime)


def checkQuery(query):
    """
    @param query: the attributes from L{imap4._FetchParser}.
    @raise UnsupportedFetchItem: one cannot be served.
    """
    for item in query:
        if item.type not in _SUPPORTED_ITEMS:
            raise UnsupportedFetchItem(str(item).upper())
        if item.type == "body":
            if not hasSection(item):
                raise UnsupportedFetchItem("BODY")
            if any(p < 0 for p in item.part):
                raise UnsupportedFetchItem("section part 0")
            if item.mime and not item.part:
                raise UnsupportedFetchItem("MIME without a part number")


def needsContent(query):
    """
    @return: whether the message bytes must be read for C{query}.
    """
    return any(item.type in _CONTENT_ITEMS for item in query)


def setsSeen(query):
    """
    @return: whether C{query} sets C{\\Seen} implicitly: C{BODY[...]},
        C{RFC822} and C{RFC822.TEXT} do, C{BODY.PEEK[...]} and
        C{RFC822.HEADER} do not (RFC 3501 6.4.5).
    """
    for item in query:
        if item.type in ("rfc822", "rfc822text"):
            return True
        if item.type == "body" and not item.peek and hasSection(item):
            return True
    return False


def wantsFlags(query):
    return any(item.type == "flags" for item in query)


def wantsUID(query):
    return any(item.type == "uid" for item in query)


def literal(data):
    """
    @return: C{data} as an IMAP literal (RFC 3501 4.3), or C{NIL}.
    """
    if data is None:
        return b"NIL"
    return b"{%d}\r\n" % (len(data),) + data


def _resolvePart(root, path):
    """
    Follow section part numbers (RFC 3501 6.4.5): the parts of a multipart
    entity are numbered from 1; a non-multipart message has just part 1, its
    body; the numbers after a C{message/rfc822} part apply to the
    encapsulated message.

    @param path: zero-based part indexes.
    @return: the L{MessagePart} or L{None} when there is no such part.
    """
    entity, isMessage = root, True
    for n in path:
        if not isMessage and entity.isMessage():
            entity, isMessage = entity.encapsulated(), True
        if entity.isMultipart():
            parts = entity.subparts()
            if n >= len(parts):
                return None
            entity, isMessage = parts[n], False
        elif isMessage and n == 0:
            isMessage = False
        else:
            return None
    return entity


def sectionData(content, item):
    """
    The octets of the section C{item} asks for, before any partial range.

    @param content: the L{MessagePart} of the whole message.
    @return: L{bytes}, or L{None} for a section the message does not have.
    """
    if item.part:
        entity = _resolvePart(content, item.part)
        if entity is None:
            return None
        if item.mime:
            return entity.header
        if item.header or item.text:
            if not entity.isMessage():
                return None
            message = entity.encapsulated()
        else:
            return entity.body
    else:
        message = content
        if not (item.header or item.text):
            return content.data
    if item.text:
        return message.body
    if item.header.fields:
        header = item.header
        return selectHeaderFields(message.header, header.fields, header.negate)
    return message.header


def sectionName(item):
    """
    The name a C{BODY[...]} or C{BODY.PEEK[...]} item is answered under:
    C{BODY[<section>]} without C{.PEEK} (RFC 3501 7.4.2).
    """
    spec = [str(p + 1).encode("ascii") for p in item.part]
    if item.header:
        sub = b"HEADER"
        if item.header.fields:
            sub += b".FIELDS.NOT" if item.header.negate else b".FIELDS"
            sub += b" (" + b" ".join(item.header.fields) + b")"
        spec.append(sub)
    elif item.text:
        spec.append(b"TEXT")
    elif item.mime:
        spec.append(b"MIME")
    return b"BODY[" + b".".join(spec) + b"]"


def formatItem(item, msg):
    """
    One C{msg-att} of a FETCH response.

    @param msg: a L{mailplat.imap.message.MaildirMessage}, loaded when the
        item needs its bytes.
    """
    kind = item.type
    if kind == "flags":
        return b"FLAGS (" + " ".join(msg.getFlags()).encode("ascii") + b")"
    if kind == "uid":
        return b"UID %d" % (msg.getUID(),)
    if kind == "internaldate":
        return b'INTERNALDATE "' + formatInternalDate(msg.info.mtime) + b'"'
    if kind == "rfc822size":
        return b"RFC822.SIZE %d" % (msg.getSize(),)
    if kind == "rfc822":
        return b"RFC822 " + literal(msg.content.data)
    if kind == "rfc822header":
        return b"RFC822.HEADER " + literal(msg.content.header)
    if kind == "rfc822text":
        return b"RFC822.TEXT " + literal(msg.content.body)
    data = sectionData(msg.content, item)
    name = sectionName(item)
    if item.partialBegin is not None and data is not None:
        # RFC 3501 6.4.5: the response names only the origin octet; a range
        # past the end gives what there is, or an empty string.
        begin = item.partialBegin
        data = data[begin : begin + item.partialLength]
        name += b"<%d>" % (begin,)
    return name + b" " + literal(data)


def fetchResponse(seq, msg, query):
    """
    @return: the untagged FETCH response for one message, CRLF included.
    """
    items = b" ".join(formatItem(item, msg) for item in query)
    return b"* %d FETCH (" % (seq,) + items + b")\r\n"
