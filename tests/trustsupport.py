"""
Helpers for the sender-authentication tests (L{mailplat.trust}): zone data
served in-process to a L{mailplat.dns.Resolver} (for unit tests), the same
zone data for the loopback DNS server (tests/integration/dnsserver.py), and
a fixed key pair set.
"""

import dns.rdata

from twisted.internet.task import Clock

from mailplat.dns import NoSuchDomain, RecordSet, Resolver, TemporaryDNSError
from mailplat.testing import runSynchronously


def txt(*strings):
    """
    The presentation form of a TXT record made of C{strings} (L{str} or
    L{bytes}), as dnspython gives it; a long string is split into 255-octet
    character-strings.
    """
    parts = []
    for s in strings:
        if isinstance(s, str):
            s = s.encode("utf-8")
        if not s:
            parts.append(b"")
        while s:
            parts.append(s[:255])
            s = s[255:]
    return dns.rdata.from_text("IN", "TXT", " ".join(_quote(p) for p in parts)).to_text()


def _quote(data):
    out = []
    for b in data:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    return '"' + "".join(out) + '"'


class ZoneQuery:
    """
    A blocking query function for L{Resolver} answering from zone data:
    C{{name: [(type, value), ...]}} where TXT values are presentation text
    (see L{txt}).  CNAMEs are followed; an entry C{("TIMEOUT", None)}
    makes queries of the types that have no records listed before it fail
    temporarily (the RFC 7208 test suite's semantics); names not listed are
    NXDOMAIN, except C{error.*}, which time out.
    """

    def __init__(self, zone, ttl=300):
        self.zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.ttl = ttl
        self.calls = []

    def __call__(self, name, rdtype):
        self.calls.append((name, rdtype))
        current = name.lower().rstrip(".")
        for _ in range(8):
            if any(len(l) > 63 for l in current.split(".")) or ".." in current:
                raise NoSuchDomain(f"{name}: not a valid domain name")
            entries = self.zone.get(current)
            if entries is None:
                if current.startswith("error."):
                    raise TemporaryDNSError(f"{current} {rdtype}: DNS timeout")
                raise NoSuchDomain(f"{name}: domain not found (NXDOMAIN)")
            seen = False
            for t, v in entries:
                if t == "TIMEOUT" and not seen:
                    raise TemporaryDNSError(f"{current} {rdtype}: DNS timeout")
                if t == rdtype:
                    seen = True
            cname = [v for t, v in entries if t == "CNAME"]
            if cname and rdtype != "CNAME":
                current = cname[0].lower().rstrip(".")
                continue
            records = tuple(v for t, v in entries if t == rdtype)
            return RecordSet(name, rdtype, current, records, self.ttl)
        raise TemporaryDNSError("CNAME loop")


def zoneResolver(zone, clock=None):
    """
    A L{Resolver} answering synchronously from C{zone} (see L{ZoneQuery}).
    """
    return Resolver(clock or Clock(), runSynchronously, ZoneQuery(zone))
