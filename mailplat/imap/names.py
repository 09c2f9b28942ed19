"""
Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) and LIST
patterns (RFC 3501 6.3.8).

twisted.mail registers an C{imap4-utf-7} codec, but it accepts malformed
input (unterminated shifts, encoded ASCII, non-zero padding bits); a name
that does not decode exactly here is refused with NO.
"""

import base64
import binascii
import re

from mailplat.interfaces import INBOX
from mailplat.storage.names import DELIMITER


class BadMailboxName(ValueError):
    """
    A mailbox name that is not valid modified UTF-7.
    """


def _isDirect(ch):
    return "\x20" <= ch <= "\x7e"


def encodeName(name):
    """
    @param name: a L{str}.
    @return: the name in modified UTF-7, L{bytes}.
    """
    out = []
    run = []

    def flush():
        if run:
            data = "".join(run).encode("utf-16-be")
            b64 = base64.b64encode(data).rstrip(b"=").replace(b"/", b",")
            out.append(b"&" + b64 + b"-")
            del run[:]

    for ch in name:
        if _isDirect(ch):
            flush()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            run.append(ch)
    flush()
    return b"".join(out)


_SHIFTED = re.compile(rb"&([A-Za-z0-9+,]*)-")


def decodeName(data):
    """
    Decode a modified UTF-7 mailbox name strictly: only printable US-ASCII,
    every shift closed with C{-}, no character encoded that could be sent as
    itself, and the shortest encoding (decoding then encoding again must give
    the same bytes).

    @param data: L{bytes}.
    @return: the name, a L{str}.
    @raise BadMailboxName: it is not valid.
    """
    if any(b < 0x20 or b > 0x7E for b in data):
        raise BadMailboxName("not 7-bit printable")
    out = []
    pos = 0
    while pos < len(data):
        amp = data.find(b"&", pos)
        if amp == -1:
            out.append(data[pos:].decode("ascii"))
            break
        out.append(data[pos:amp].decode("ascii"))
        m = _SHIFTED.match(data, amp)
        if m is None:
            raise BadMailboxName("unterminated shift")
        encoded = m.group(1)
        if not encoded:
            out.append("&")
        else:
            padded = encoded.replace(b",", b"/") + b"=" * (-len(encoded) % 4)
            try:
                raw = base64.b64decode(padded, validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise BadMailboxName("bad base64 or UTF-16") from None
            out.append(text)
        pos = m.end()
    name = "".join(out)
    if encodeName(name) != data:
        raise BadMailboxName("not the canonical encoding")
    return name


def patternToRegex(pattern):
    """
    A LIST pattern as a compiled regular expression: C{*} matches anything,
    C{%} anything but the hierarchy delimiter (RFC 3501 6.3.8).  INBOX at the
    start of a pattern is case-insensitive, like the name.
    """
    if pattern[:5].upper() == INBOX and (len(pattern) == 5 or pattern[5] in "/%*"):
        pattern = INBOX + pattern[5:]
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append("[^" + re.escape(DELIMITER) + "]*")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)
