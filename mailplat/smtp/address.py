"""
RFC 5321 4.1.2 path parsing for MAIL FROM and RCPT TO, written against the
grammar rather than as a regular expression over the line: relay decisions
depend on it, so a percent hack, a quoted local part or a source route must be
parsed the way the next hop would parse it.
"""

import re
from dataclasses import dataclass

# RFC 5322 3.2.3 atext
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "!#$%&'*+-/=?^_`{|}~"
)
_LETDIG = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

# The same grammar as regular expressions, for the common case (ASCII, no
# quoted string): one C-level match instead of a Python loop per character.
# Anything else takes the character-by-character path below; tests check
# that both agree.
_FAST = True
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2
MAX_PATH = 256  # RFC 5321 4.5.3.1.3


class AddressSyntaxError(ValueError):
    """
    The path does not follow RFC 5321's grammar.
    """


@dataclass(frozen=True)
class Address:
    """
    A parsed mailbox.

    @ivar localPart: as sent, including quotes if it was quoted.
    @ivar domain: lower-cased; an address literal keeps its brackets.
    """

    localPart: str
    domain: str

    def __str__(self):
        return f"{self.localPart}@{self.domain}"

    @property
    def isQuoted(self):
        return self.localPart.startswith('"')

    @property
    def isAddressLiteral(self):
        return self.domain.startswith("[")


def _parseDomain(text, utf8=False):
    if not text:
        raise AddressSyntaxError("empty domain")
    if len(text) > MAX_DOMAIN:
        raise AddressSyntaxError("domain too long")
    if text.startswith("["):
        if not text.endswith("]") or len(text) < 3:
            raise AddressSyntaxError("bad address literal")
        inner = text[1:-1]
        if any(c in inner for c in "[]\\") or any(ord(c) < 33 or ord(c) > 126 for c in inner):
            raise AddressSyntaxError("bad address literal")
        return text
    if _FAST and text.isascii():
        if _DOMAIN_RE.fullmatch(text) is None:
            raise AddressSyntaxError(f"bad domain {text!r}")
        return text.lower()

    def letdig(c):
        return c in _LETDIG or (utf8 and ord(c) > 127)

    for label in text.split("."):
        if (
            not label
            or not letdig(label[0])
            or not letdig(label[-1])
            or any(not letdig(c) and c != "-" for c in label)
            or len(label) > 63
        ):
            raise AddressSyntaxError(f"bad domain {text!r}")
    return text.lower()


def _parseLocalPart(text, utf8=False):
    if not text:
        raise AddressSyntaxError("empty local part")
    if _FAST and text.isascii() and not text.startswith('"'):
        if _DOT_ATOM_RE.fullmatch(text) is None:
            raise AddressSyntaxError(f"bad local part {text!r}")
    elif text.startswith('"'):
        i = 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text) or not (32 <= ord(text[i + 1]) <= 126):
                    raise AddressSyntaxError("bad quoted pair")
                i += 2
                continue
            if c == '"':
                break
            if not (32 <= ord(c) <= 126) and not (utf8 and ord(c) > 127):
                raise AddressSyntaxError("bad character in quoted local part")
            i += 1
        else:
            raise AddressSyntaxError("unterminated quoted local part")
        if i != len(text) - 1:
            raise AddressSyntaxError("text after quoted local part")
    else:
        for atom in text.split("."):
            if not atom or any(
                c not in _ATEXT and not (utf8 and ord(c) > 127) for c in atom
            ):
                raise AddressSyntaxError(f"bad local part {text!r}")
    if len(text.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressSyntaxError("local part too long")
    return text


def _outsideQuotes(text, start=0):
    """
    Yield C{(index, character)} for the characters of C{text} from C{start}
    that are not inside a quoted string (nor a quoted pair in one).
    """
    inQuote = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if escaped:
            escaped = False
        elif c == "\\" and inQuote:
            escaped = True
        elif c == '"':
            inQuote = not inQuote
        elif not inQuote:
            yield i, c


def _splitMailbox(text):
    """
    Split at the C{@} that separates local part and domain: the last one
    outside a quoted string.
    """
    if _FAST and '"' not in text:
        at = text.rfind("@")
    else:
        at = max((i for i, c in _outsideQuotes(text) if c == "@"), default=-1)
    if at < 0:
        raise AddressSyntaxError("no @ in address")
    return text[:at], text[at + 1 :]


class NonASCIIAddress(AddressSyntaxError):
    """
    The path has UTF-8 characters but the transaction did not ask for
    SMTPUTF8 (RFC 6531 3.2).
    """


def parsePath(text, allowNull, utf8=False):
    """
    Parse the path at the start of C{text} (what follows C{FROM:} or C{TO:}),
    C{<mailbox>} or, when C{allowNull}, C{<>}.  A source route (C{@a,@b:}) is
    accepted and ignored (RFC 5321 4.1.2, C.); what counts is the mailbox.

    @return: C{(address, rest)}: an L{Address}, or L{None} for C{<>}, and the
        text after the path (the ESMTP parameters).
    @param utf8: whether UTF-8 local parts and domains are allowed
        (RFC 6531, with SMTPUTF8).
    @raise AddressSyntaxError: on any deviation from the grammar, or a NUL or
        other control character.
    @raise NonASCIIAddress: a non-ASCII character without C{utf8}.
    """
    text = text.lstrip(" ")
    if not text.startswith("<"):
        raise AddressSyntaxError("the path must be in angle brackets")
    # The closing bracket is the first ">" outside a quoted string.
    if _FAST and '"' not in text:
        end = text.find(">", 1)
    else:
        end = next((i for i, c in _outsideQuotes(text, 1) if c == ">"), -1)
    if end < 0:
        raise AddressSyntaxError("missing >")
    inner, rest = text[1:end], text[end + 1 :]
    if rest and not rest.startswith(" "):
        raise AddressSyntaxError("text after the path")
    if len(inner) > MAX_PATH:
        raise AddressSyntaxError("path too long")
    if _CONTROL_RE.search(inner):
        raise AddressSyntaxError("control character in the path")
    if not utf8 and not inner.isascii():
        raise NonASCIIAddress("non-ASCII character without SMTPUTF8")
    if inner == "":
        if not allowNull:
            raise AddressSyntaxError("empty path")
        return None, rest.strip(" ")
    if inner.startswith("@"):
        route, colon, inner = inner.partition(":")
        if not colon:
            raise AddressSyntaxError("bad source route")
        for hop in route.split(","):
            if not hop.startswith("@"):
                raise AddressSyntaxError("bad source route")
            _parseDomain(hop[1:], utf8)
    local, domain = _splitMailbox(inner)
    return (
        Address(_parseLocalPart(local, utf8), _parseDomain(domain, utf8)),
        rest.strip(" "),
    )


def parseParameters(text):
    """
    Parse ESMTP parameters C{KEY[=VALUE]} separated by spaces (RFC 5321 4.1.2).

    @return: a L{dict} of upper-cased keyword to value (L{None} when absent).
    @raise AddressSyntaxError: a malformed or repeated parameter.
    """
    params = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not key or not all(c.isalnum() or c == "-" for c in key) or (eq and not value):
            raise AddressSyntaxError(f"bad parameter {word!r}")
        key = key.upper()
        if key in params:
            raise AddressSyntaxError(f"repeated parameter {key}")
        params[key] = value if eq else None
    return params


def decodeXtext(text):
    """
    Decode RFC 3461 4 xtext (C{+XX} hex escapes).

    @raise AddressSyntaxError: malformed xtext.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "+":
            h = text[i + 1 : i + 3]
            if len(h) != 2 or any(x not in "0123456789ABCDEF" for x in h):
                raise AddressSyntaxError("bad xtext escape")
            out.append(int(h, 16))
            i += 3
            continue
        if not (33 <= ord(c) <= 126) or c == "=":
            raise AddressSyntaxError("bad xtext character")
        out.append(ord(c))
        i += 1
    return out.decode("utf-8", "replace")
