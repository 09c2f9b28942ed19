"""
ENVELOPE and BODYSTRUCTURE (RFC 3501 7.4.2), built from a
L{mailplat.imap.message.MessagePart}.

Header values are given as they are in the message (unfolded, not decoded
from RFC 2047), as RFC 3501 asks; strings that cannot be quoted (8-bit
bytes) are sent as literals.
"""

import urllib.parse

from mailplat.imap.message import (
    MAX_MIME_DEPTH,
    MimeTooDeep,
    countLines,
    headerLines,
    headerValue,
)
from mailplat.imap.wire import quoted

_SPECIALS = b"<>@,;:."
_ENVELOPE_FIELDS = (b"date", b"subject")
_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")


def _tokenize(value):
    """
    Split an RFC 5322 address header into tokens: C{("a", text)} atoms,
    C{("q", text, raw)} quoted strings, C{("d", raw)} domain literals and
    C{("s", char)} specials; comments and white space are dropped.
    """
    tokens = []
    i, n = 0, len(value)
    while i < n:
        c = value[i : i + 1]
        if c in b" \t\r\n":
            i += 1
        elif c == b"(":
            depth = 0
            while i < n:
                ch = value[i : i + 1]
                if ch == b"\\":
                    i += 2
                    continue
                if ch == b"(":
                    depth += 1
                elif ch == b")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif c == b'"':
            j = i + 1
            text = bytearray()
            while j < n and value[j : j + 1] != b'"':
                if value[j : j + 1] == b"\\" and j + 1 < n:
                    j += 1
                text += value[j : j + 1]
                j += 1
            tokens.append(("q", bytes(text), value[i : j + 1]))
            i = j + 1
        elif c == b"[":
            j = value.find(b"]", i)
            j = n if j == -1 else j + 1
            tokens.append(("d", value[i:j]))
            i = j
        elif c in _SPECIALS:
            tokens.append(("s", c))
            i += 1
        else:
            j = i
            while j < n and value[j : j + 1] not in b' \t\r\n()"[' + _SPECIALS:
                j += 1
            tokens.append(("a", value[i:j]))
            i = j
    return tokens


def _text(token):
    return token[1]


def _raw(token):
    return token[2] if token[0] == "q" else token[1]


def _phrase(tokens):
    words = [_text(t) for t in tokens if t[0] in ("a", "q")]
    return b" ".join(words) if words else None


def _addrSpec(tokens):
    """
    @return: C{(mailbox, host)} of an addr-spec's tokens.
    """
    at = max((i for i, t in enumerate(tokens) if t == ("s", b"@")), default=None)
    if at is None:
        return b"".join(_raw(t) for t in tokens) or None, b""
    local = b"".join(_raw(t) for t in tokens[:at])
    host = b"".join(_raw(t) for t in tokens[at + 1 :])
    return local, host


def _mailbox(tokens):
    """
    @return: C{(name, adl, mailbox, host)} for one mailbox, or L{None}.
    """
    if not tokens:
        return None
    if ("s", b"<") in tokens:
        start = tokens.index(("s", b"<"))
        end = tokens.index(("s", b">")) if ("s", b">") in tokens else len(tokens)
        name = _phrase(tokens[:start])
        inner = tokens[start + 1 : end]
        adl = None
        if ("s", b":") in inner:
            colon = inner.index(("s", b":"))
            adl = b"".join(_raw(t) for t in inner[:colon]) or None
            inner = inner[colon + 1 :]
        mailbox, host = _addrSpec(inner)
        return name, adl, mailbox, host
    mailbox, host = _addrSpec(tokens)
    return None, None, mailbox, host


def parseAddresses(value):
    """
    Parse an address list (RFC 5322 3.4) for the envelope.

    @return: a list of C{(name, adl, mailbox, host)} tuples; a group is
        C{(None, None, groupName, None)} ... C{(None, None, None, None)}
        (RFC 3501 7.4.2).
    """
    result = []
    current = []
    inGroup = False
    angle = 0
    for token in _tokenize(value):
        if token == ("s", b"<"):
            angle += 1
        elif token == ("s", b">"):
            angle = max(0, angle - 1)
        if angle == 0 and token == ("s", b":") and not inGroup and (
            ("s", b"@") not in current
        ):
            result.append((None, None, _phrase(current) or b"", None))
            inGroup = True
            current = []
            continue
        if angle == 0 and token in (("s", b","), ("s", b";")):
            entry = _mailbox(current)
            if entry is not None:
                result.append(entry)
            current = []
            if token == ("s", b";") and inGroup:
                result.append((None, None, None, None))
                inGroup = False
            continue
        current.append(token)
    entry = _mailbox(current)
    if entry is not None:
        result.append(entry)
    if inGroup:
        result.append((None, None, None, None))
    return result


def _addressList(value):
    if value is None:
        return b"NIL"
    addresses = parseAddresses(value)
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(
        b"(" + b" ".join(quoted(part) for part in address) + b")"
        for address in addresses
    ) + b")"


def envelope(part):
    """
    @param part: the L{MessagePart} of a message.
    @return: its ENVELOPE (RFC 3501 7.4.2), L{bytes}.
    """
    fields = {}
    for name, raw in headerLines(part.header):
        if name not in fields:
            fields[name] = headerValue(raw)
    fromValue = fields.get(b"from")
    items = [quoted(fields.get(b"date")), quoted(fields.get(b"subject"))]
    for name in _ADDRESS_FIELDS:
        value = fields.get(name)
        if name in (b"sender", b"reply-to") and not value:
            # RFC 3501 7.4.2: the server defaults these to From.
            value = fromValue
        items.append(_addressList(value))
    items.append(quoted(fields.get(b"in-reply-to")))
    items.append(quoted(fields.get(b"message-id")))
    return b"(" + b" ".join(items) + b")"


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


def _params(headers, header):
    """
    @return: the parameters of a Content-Type or Content-Disposition field
        as a parenthesized list, or C{NIL}.
    """
    params = headers.get_params(header=header)
    if not params:
        return b"NIL"
    out = []
    for name, value in params[1:]:
        if isinstance(value, tuple):
            # RFC 2231 extended value: given back as it was sent (the
            # email package keeps the percent-decoded octets as Latin-1).
            charset, language, text = value
            octets = text.encode("latin-1", "surrogateescape")
            encoded = f"{charset or ''}'{language or ''}'" + urllib.parse.quote(octets, safe="")
            out.append(quoted(_encode(name + "*")))
            out.append(quoted(_encode(encoded)))
        else:
            out.append(quoted(_encode(name)))
            out.append(quoted(_encode(value)))
    return b"(" + b" ".join(out) + b")" if out else b"NIL"


def _disposition(part):
    headers = part.headers()
    if headers.get("content-disposition") is None:
        return b"NIL"
    params = headers.get_params(header="content-disposition")
    if not params:
        return b"NIL"
    kind = _encode(params[0][0])
    return b"(" + quoted(kind) + b" " + _params(headers, "content-disposition") + b")"


def _language(part):
    value = part.field(b"content-language")
    if value is None:
        return b"NIL"
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    if len(tags) == 1:
        return quoted(tags[0])
    return b"(" + b" ".join(quoted(t) for t in tags) + b")" if tags else b"NIL"


def _extensionData(part):
    return b" ".join([
        _disposition(part), _language(part), quoted(part.field(b"content-location")),
    ])


def bodyStructure(part, extended=True):
    """
    @param part: a L{MessagePart}.
    @param extended: BODYSTRUCTURE (with extension data) rather than BODY.
    @return: the body structure (RFC 3501 7.4.2), L{bytes}.
    @raise MimeTooDeep: the message nests too deeply.
    """
    # Each level of recursion is one level of MIME nesting, which
    # MessagePart bounds at MAX_MIME_DEPTH.
    if part.depth > MAX_MIME_DEPTH:
        raise MimeTooDeep()
    headers = part.headers()
    if part.isMultipart():
        subparts = part.subparts()
        if subparts:
            inner = b"".join(bodyStructure(p, extended) for p in subparts)
        else:
            inner = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
        out = inner + b" " + quoted(_encode(headers.get_content_subtype()))
        if extended:
            out += b" " + _params(headers, "content-type") + b" " + _extensionData(part)
        return b"(" + out + b")"
    maintype = headers.get_content_maintype()
    subtype = headers.get_content_subtype()
    params = _params(headers, "content-type")
    if params == b"NIL" and maintype == "text":
        # RFC 2045 5.2: plain US-ASCII text is the default.
        params = b'("charset" "us-ascii")'
    encoding = part.field(b"content-transfer-encoding") or b"7bit"
    fields = [
        quoted(_encode(maintype)),
        quoted(_encode(subtype)),
        params,
        quoted(part.field(b"content-id")),
        quoted(part.field(b"content-description")),
        quoted(encoding.lower()),
        b"%d" % len(part.body),
    ]
    if part.isMessage():
        inner = part.encapsulated()
        fields += [envelope(inner), bodyStructure(inner, extended),
                   b"%d" % countLines(part.body)]
    elif maintype == "text":
        fields.append(b"%d" % countLines(part.body))
    if extended:
        fields += [quoted(part.field(b"content-md5")), _extensionData(part)]
    return b"(" + b" ".join(fields) + b")"
