"""
iprev (RFC 8601 section 3), also called forward-confirmed reverse DNS: the
client's address has a PTR name whose A/AAAA records include the address.
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet import defer

from mailplat.dns import NoSuchDomain, TemporaryDNSError

PASS = "pass"
FAIL = "fail"
TEMPERROR = "temperror"
PERMERROR = "permerror"

# As RFC 7208 section 4.6.4 does for the ptr mechanism: names past the tenth
# are not checked.
MAX_NAMES = 10


@dataclass(frozen=True)
class IPRevResult:
    """
    @ivar result: C{pass}, C{fail} (no PTR, or no name confirms the
        address), C{temperror}, C{permerror} (not an IP address).
    @ivar names: the PTR names.
    @ivar confirmed: the names whose addresses include the client's.
    """

    result: str
    ip: str
    names: tuple = ()
    confirmed: tuple = ()
    problem: str = None


def _normalizeIP(ip):
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address


@defer.inlineCallbacks
def checkIPRev(resolver, ip):
    """
    @return: a Deferred firing with an L{IPRevResult}; it never fails.
    """
    try:
        address = _normalizeIP(ip)
    except ValueError:
        return IPRevResult(PERMERROR, ip, problem="not an IP address")
    try:
        names = yield resolver.lookupPTR(str(address))
    except NoSuchDomain:
        return IPRevResult(FAIL, str(address), problem="no PTR record")
    except TemporaryDNSError as e:
        return IPRevResult(TEMPERROR, str(address), problem=str(e))
    if not names:
        return IPRevResult(FAIL, str(address), problem="no PTR record")
    names = tuple(names[:MAX_NAMES])
    lookups = yield defer.DeferredList(
        [resolver.addresses(n) for n in names], consumeErrors=True
    )
    confirmed, temporary = [], []
    for name, (ok, value) in zip(names, lookups):
        if ok:
            if any(_sameAddress(a, address) for a in value):
                confirmed.append(name)
        elif value.check(TemporaryDNSError):
            temporary.append(str(value.value))
    if confirmed:
        return IPRevResult(PASS, str(address), names, tuple(confirmed))
    if temporary:
        return IPRevResult(TEMPERROR, str(address), names, problem=temporary[0])
    return IPRevResult(
        FAIL, str(address), names, problem=f"{', '.join(names)} do not resolve to {address}"
    )


def _sameAddress(text, address):
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False
