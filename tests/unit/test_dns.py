"""
Tests for L{mailplat.dns}: MX resolution rules and the TTL cache, with a fake
blocking query function and a fake clock (no sockets).
"""

import random

from twisted.internet.task import Clock
from twisted.trial import unittest

from mailplat.dns import (
    MailHost,
    NoMailHosts,
    NoSuchDomain,
    NullMX,
    RecordSet,
    Resolver,
    TemporaryDNSError,
    addressLiteral,
)
from mailplat.testing import runSynchronously


class FakeQuery:
    """
    Answers from zone data: C{{name: [(type, value), ...]}}; CNAMEs followed;
    names not listed are NXDOMAIN, names in C{servfail} fail temporarily.
    """

    def __init__(self, zone, servfail=(), ttl=300):
        self.zone = zone
        self.servfail = set(servfail)
        self.ttl = ttl
        self.calls = []

    def __call__(self, name, rdtype):
        self.calls.append((name, rdtype))
        current = name
        for _ in range(8):
            if current in self.servfail:
                raise TemporaryDNSError(f"{current} {rdtype}: DNS server failure (SERVFAIL)")
            if current not in self.zone:
                raise NoSuchDomain(f"{name}: domain not found (NXDOMAIN)")
            entries = self.zone[current]
            cname = [v for t, v in entries if t == "CNAME"]
            if cname:
                current = cname[0].rstrip(".")
                continue
            records = tuple(v for t, v in entries if t == rdtype)
            return RecordSet(name, rdtype, current, records, self.ttl)
        raise TemporaryDNSError("CNAME loop")


ZONE = {
    "remote.example": [("MX", "20 mx3.remote.example."), ("MX", "10 mx1.remote.example."),
                       ("MX", "10 mx2.remote.example.")],
    "mx1.remote.example": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")],
    "mx2.remote.example": [("A", "192.0.2.2")],
    "mx3.remote.example": [("A", "192.0.2.3")],
    "implicit.example": [("A", "192.0.2.9")],
    "empty.example": [("TXT", "v=spf1 -all")],
    "nullmx.example": [("MX", "0 .")],
    "alias.example": [("CNAME", "remote.example.")],
    "dangling.example": [("MX", "10 nowhere.example.")],
    "halfbroken.example": [("MX", "10 broken-mx.example."), ("MX", "20 mx3.remote.example.")],
}


class ResolverTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.query = FakeQuery(ZONE, servfail={"broken.example", "broken-mx.example"})
        self.resolver = Resolver(self.clock, runSynchronously, self.query, random.Random(1))

    def mx(self, domain):
        return self.successResultOf(self.resolver.resolveMX(domain))

    def test_byPreferenceWithAddresses(self):
        hosts = self.mx("remote.example")
        self.assertEqual([h.preference for h in hosts], [10, 10, 20])
        self.assertEqual(
            {h.name for h in hosts[:2]}, {"mx1.remote.example", "mx2.remote.example"}
        )
        self.assertEqual(hosts[2], MailHost("mx3.remote.example", 20, ("192.0.2.3",)))
        mx1 = [h for h in hosts if h.name == "mx1.remote.example"][0]
        self.assertEqual(mx1.addresses, ("192.0.2.1", "2001:db8::1"))

    def test_randomOrderAmongEqualPreferences(self):
        firsts = set()
        for seed in range(20):
            resolver = Resolver(Clock(), runSynchronously, self.query, random.Random(seed))
            hosts = self.successResultOf(resolver.resolveMX("remote.example"))
            firsts.add(hosts[0].name)
            self.assertEqual(hosts[2].name, "mx3.remote.example")
        self.assertEqual(firsts, {"mx1.remote.example", "mx2.remote.example"})

    def test_implicitMX(self):
        self.assertEqual(
            self.mx("implicit.example"),
            [MailHost("implicit.example", 0, ("192.0.2.9",), implicit=True)],
        )

    def test_noMXNoAddress(self):
        self.failureResultOf(self.resolver.resolveMX("empty.example"), NoMailHosts)

    def test_nullMX(self):
        self.failureResultOf(self.resolver.resolveMX("nullmx.example"), NullMX)

    def test_nxdomain(self):
        self.failureResultOf(self.resolver.resolveMX("nosuch.example"), NoSuchDomain)

    def test_servfail(self):
        self.failureResultOf(self.resolver.resolveMX("broken.example"), TemporaryDNSError)

    def test_cnameChain(self):
        hosts = self.mx("alias.example")
        self.assertEqual(hosts[2].name, "mx3.remote.example")

    def test_mxHostWithoutAddress(self):
        self.failureResultOf(self.resolver.resolveMX("dangling.example"), NoMailHosts)

    def test_mxHostLookupFailureSkipped(self):
        """
        An MX host whose address lookup fails temporarily is left out when
        another one works.
        """
        self.assertEqual(
            self.mx("halfbroken.example"),
            [MailHost("mx3.remote.example", 20, ("192.0.2.3",))],
        )

    def test_addressLiterals(self):
        self.assertEqual(addressLiteral("[192.0.2.7]"), "192.0.2.7")
        self.assertEqual(addressLiteral("[IPv6:2001:db8::7]"), "2001:db8::7")
        self.assertIsNone(addressLiteral("[2001:db8::7]"))
        self.assertIsNone(addressLiteral("[999.1.1.1]"))
        self.assertIsNone(addressLiteral("example.org"))
        self.assertEqual(
            self.mx("[192.0.2.7]"), [MailHost("[192.0.2.7]", 0, ("192.0.2.7",), True)]
        )
        self.assertEqual(self.query.calls, [])

    def test_cacheRespectsTTL(self):
        self.mx("mx3.remote.example" and "implicit.example")
        calls = len(self.query.calls)
        self.clock.advance(299)
        self.mx("implicit.example")
        self.assertEqual(len(self.query.calls), calls)
        self.clock.advance(1)
        self.mx("implicit.example")
        self.assertEqual(len(self.query.calls), 2 * calls)

    def test_negativeAnswersCachedTemporaryFailuresNot(self):
        self.resolver.resolveMX("nosuch.example").addErrback(lambda f: None)
        self.resolver.resolveMX("nosuch.example").addErrback(lambda f: None)
        self.assertEqual(self.query.calls, [("nosuch.example", "MX")])
        self.resolver.resolveMX("broken.example").addErrback(lambda f: None)
        self.resolver.resolveMX("broken.example").addErrback(lambda f: None)
        self.assertEqual(self.query.calls.count(("broken.example", "MX")), 2)

    def test_lookupsRunThroughRunBlocking(self):
        """
        The blocking query never runs on the caller's stack: it goes through
        C{runBlocking} (the reactor's thread pool in the service).
        """
        ran = []

        def runBlocking(f, *args):
            ran.append(args)
            return runSynchronously(f, *args)

        resolver = Resolver(self.clock, runBlocking, self.query)
        self.successResultOf(resolver.resolveMX("implicit.example"))
        self.assertEqual(ran, [("implicit.example", "MX"), ("implicit.example", "A"),
                               ("implicit.example", "AAAA")])
