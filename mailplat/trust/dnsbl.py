"""
DNS blocklists and allowlists (RFC 5782): the client's address is looked up
under each zone; every zone that lists it adds its weight to a score
(allowlists have negative weights), as Postfix's postscreen does.

A zone is written C{NAME[=FILTER][*WEIGHT]}:

    zen.dnsbl.example               weight 1, any 127.0.0.0/8 answer
    zen.dnsbl.example=127.0.0.[2..11]*3
    list.dnswl.example=127.0.[0..255].[1..3]*-2

A filter is four octets, each a number or C{[a..b]} (a range) or
C{[a;b;c]} (a list); answers outside 127.0.0.0/8 never count (RFC 5782
section 2.1: such answers are errors).
"""

import ipaddress
import re
from dataclasses import dataclass

from twisted.internet import defer

from mailplat.dns import NoSuchDomain

_ZONE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9])(?:=([0-9.\[\];]+))?(?:\*(-?[0-9]+))?$")
_OCTET = re.compile(r"^(?:([0-9]{1,3})|\[([0-9]{1,3})\.\.([0-9]{1,3})\]|\[([0-9;]+)\])$")


@dataclass(frozen=True)
class Zone:
    """
    @ivar filter: four sets of allowed octet values, or L{None} for any
        127.0.0.0/8 answer.
    """

    name: str
    weight: int = 1
    filter: tuple = None
    text: str = ""

    @property
    def allowlist(self):
        return self.weight < 0

    def accepts(self, answer):
        try:
            address = ipaddress.IPv4Address(answer)
        except ValueError:
            return False
        if address not in ipaddress.IPv4Network("127.0.0.0/8"):
            return False
        if self.filter is None:
            return True
        return all(int(o) in allowed for o, allowed in zip(str(address).split("."), self.filter))


def _octets(text):
    octet = r"(\[[0-9.;]+\]|[0-9]{1,3})"
    m = re.fullmatch(r"\.".join([octet] * 4), text)
    if m is None:
        raise ValueError(f"{text!r}: a filter has four octets")
    parts = m.groups()
    out = []
    for part in parts:
        m = _OCTET.match(part)
        if m is None:
            raise ValueError(f"{text!r}: bad octet {part!r}")
        if m.group(1) is not None:
            values = {int(m.group(1))}
        elif m.group(2) is not None:
            values = set(range(int(m.group(2)), int(m.group(3)) + 1))
        else:
            values = {int(v) for v in m.group(4).split(";") if v}
        if not values or any(v > 255 for v in values):
            raise ValueError(f"{text!r}: bad octet {part!r}")
        out.append(frozenset(values))
    return tuple(out)


def parseZone(text):
    """
    @raise ValueError: C{text} is not C{NAME[=FILTER][*WEIGHT]}.
    """
    m = _ZONE.match(text.strip())
    if m is None or "." not in m.group(1):
        raise ValueError(f"{text!r} is not a zone such as zen.dnsbl.example=127.0.0.[2..11]*2")
    weight = int(m.group(3)) if m.group(3) is not None else 1
    return Zone(m.group(1).lower(), weight, _octets(m.group(2)) if m.group(2) else None, text)


def queryName(ip, zone):
    """
    The name to look up for C{ip} in C{zone}: the address's octets (IPv4)
    or nibbles (IPv6) reversed, then the zone (RFC 5782 sections 2.1, 2.4).
    """
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.reverse_pointer.rsplit(".", 2)[0] + "." + zone


@dataclass(frozen=True)
class Listing:
    zone: Zone
    answers: tuple


@dataclass(frozen=True)
class DNSBLResult:
    """
    @ivar score: the sum of the weights of the zones that list the client.
    @ivar listings: the L{Listing}s.
    @ivar errors: zones whose lookup failed temporarily.
    """

    ip: str
    score: int
    listings: tuple = ()
    errors: tuple = ()


@defer.inlineCallbacks
def checkZones(resolver, ip, zones):
    """
    Look C{ip} up in every zone at once.

    @return: a Deferred firing with a L{DNSBLResult}; it never fails.
    """
    zones = list(zones)
    lookups = yield defer.DeferredList(
        [resolver.lookup(queryName(ip, z.name), "A") for z in zones], consumeErrors=True
    )
    listings, errors, score = [], [], 0
    for zone, (ok, value) in zip(zones, lookups):
        if ok:
            answers = tuple(a for a in value.records if zone.accepts(a))
            if answers:
                listings.append(Listing(zone, answers))
                score += zone.weight
        elif not value.check(NoSuchDomain):
            errors.append(zone.name)
    return DNSBLResult(ip, score, tuple(listings), tuple(errors))
