"""
The building blocks of L{mailplat.trust}: TXT/PTR lookups added to the
resolver, DMARC records and evaluation, the organizational domain, iprev,
DNSBL zones, DKIM keys and results, the Authentication-Results field.
"""

import os
import random
import stat

from twisted.trial import unittest

from mailplat.dns import NoSuchDomain, parseTXT, reverseName
from mailplat.trust import dmarc as D
from mailplat.trust import keys as K
from mailplat.trust.authresults import AuthResult, formatHeader, parseHeader
from mailplat.trust.dkim import DKIMResult, DKIMVerifier, signHeaders, summary
from mailplat.trust.dnsbl import checkZones, parseZone, queryName
from mailplat.trust.ptr import checkIPRev
from mailplat.testing import runSynchronously
from tests.trustsupport import txt, zoneResolver


class TXTAndPTRTests(unittest.TestCase):
    def test_parseTXT(self):
        self.assertEqual(parseTXT('"v=spf1 " "-all"'), b"v=spf1 -all")
        self.assertEqual(parseTXT(r'"a\"b" "c\\d" "\239\187x"'), b'a"bc\\d\xef\xbbx')
        self.assertEqual(parseTXT('""'), b"")
        self.assertEqual(parseTXT("unquoted"), b"unquoted")

    def test_reverseName(self):
        self.assertEqual(reverseName("192.0.2.1"), "1.2.0.192.in-addr.arpa")
        self.assertEqual(
            reverseName("2001:db8::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        )
        self.assertRaises(ValueError, reverseName, "nonsense")

    def test_lookupTXTJoinsStrings(self):
        long = "x" * 300
        resolver = zoneResolver({"t.example": [("TXT", txt("v=spf1 ", "-all")), ("TXT", txt(long))]})
        self.assertEqual(
            self.successResultOf(resolver.lookupTXT("t.example")),
            [b"v=spf1 -all", long.encode()],
        )
        self.failureResultOf(resolver.lookupTXT("nosuch.example"), NoSuchDomain)

    def test_lookupPTR(self):
        resolver = zoneResolver({"1.2.0.192.in-addr.arpa": [("PTR", "Mail.Example.COM.")]})
        self.assertEqual(
            self.successResultOf(resolver.lookupPTR("192.0.2.1")), ["mail.example.com"]
        )
        self.failureResultOf(resolver.lookupPTR("192.0.2.2"), NoSuchDomain)


class DMARCRecordTests(unittest.TestCase):
    def test_parse(self):
        r = D.parseRecord("v=DMARC1; p=reject; sp=quarantine; pct=20; adkim=s; aspf=r; "
                          "rua=mailto:a@example.com,mailto:b@example.com")
        self.assertEqual((r.p, r.sp, r.pct, r.adkim, r.aspf), ("reject", "quarantine", 20, "s", "r"))
        self.assertEqual(r.rua, ("mailto:a@example.com", "mailto:b@example.com"))
        self.assertEqual(D.parseRecord("v=DMARC1;p=none").subdomainPolicy, "none")

    def test_invalidPolicyWithRuaActsAsNone(self):
        """
        RFC 7489 section 6.6.3.
        """
        self.assertEqual(D.parseRecord("v=DMARC1; p=bogus; rua=mailto:a@example.com").p, "none")
        self.assertRaises(D.DMARCRecordError, D.parseRecord, "v=DMARC1; p=bogus")
        self.assertRaises(D.DMARCRecordError, D.parseRecord, "p=reject; v=DMARC1")
        self.assertRaises(D.DMARCRecordError, D.parseRecord, "v=DMARC1; p=reject; pct=101")
        self.assertRaises(D.DMARCRecordError, D.parseRecord, "v=DMARC1; p=reject; adkim=x")

    def test_organizationalDomain(self):
        org = D.OrganizationalDomains()
        self.assertEqual(org("a.b.example.co.uk"), "example.co.uk")
        self.assertEqual(org("mail.example.com"), "example.com")
        self.assertEqual(org("co.uk"), "co.uk")

    def test_alignment(self):
        org = D.OrganizationalDomains()
        self.assertTrue(D.aligned("mail.example.com", "example.com", "r", org))
        self.assertFalse(D.aligned("mail.example.com", "example.com", "s", org))
        self.assertTrue(D.aligned("Example.COM.", "example.com", "s", org))
        self.assertFalse(D.aligned("example.net", "example.com", "r", org))
        self.assertFalse(D.aligned(None, "example.com", "r", org))


class DMARCEvaluationTests(unittest.TestCase):
    ZONE = {
        "_dmarc.example.com": [("TXT", txt("v=DMARC1; p=reject; sp=quarantine; adkim=s"))],
        "_dmarc.strict.example": [("TXT", txt("v=DMARC1; p=reject; aspf=s"))],
        "_dmarc.two.example": [("TXT", txt("v=DMARC1; p=none")), ("TXT", txt("v=DMARC1; p=reject"))],
        "_dmarc.broken.example": [("TIMEOUT", None)],
        "_dmarc.pct.example": [("TXT", txt("v=DMARC1; p=reject; pct=30"))],
    }

    def evaluate(self, fromDomain, spfDomain=None, spf="none", dkim=(), rng=None):
        evaluator = D.DMARCEvaluator(zoneResolver(self.ZONE), rng=rng)
        return self.successResultOf(evaluator.evaluate(fromDomain, spfDomain, spf, list(dkim)))

    def test_alignedSPF(self):
        r = self.evaluate("example.com", "bounces.example.com", "pass")
        self.assertEqual((r.result, r.spfAligned, r.dkimAligned), ("pass", True, False))

    def test_strictSPFAlignment(self):
        self.assertEqual(self.evaluate("strict.example", "mail.strict.example", "pass").result, "fail")
        self.assertEqual(self.evaluate("strict.example", "strict.example", "pass").result, "pass")

    def test_strictDKIMAlignment(self):
        sub = DKIMResult("pass", domain="mail.example.com")
        exact = DKIMResult("pass", domain="example.com")
        failed = DKIMResult("fail", domain="example.com")
        self.assertEqual(self.evaluate("example.com", dkim=[sub]).result, "fail")
        self.assertEqual(self.evaluate("example.com", dkim=[failed, exact]).result, "pass")

    def test_unalignedFailsWithPolicy(self):
        r = self.evaluate("example.com", "other.example", "pass")
        self.assertEqual((r.result, r.policy, r.disposition), ("fail", "reject", "reject"))

    def test_subdomainPolicy(self):
        """
        A subdomain without its own record gets the organizational domain's
        sp= (RFC 7489 section 6.6.3).
        """
        r = self.evaluate("news.example.com", "other.example", "pass")
        self.assertEqual((r.result, r.policy, r.disposition), ("fail", "quarantine", "quarantine"))

    def test_noRecord(self):
        self.assertEqual(self.evaluate("nodmarc.example").result, "none")

    def test_twoRecordsPermerror(self):
        self.assertEqual(self.evaluate("two.example").result, "permerror")

    def test_temperror(self):
        self.assertEqual(self.evaluate("broken.example").result, "temperror")

    def test_pctSampling(self):
        rng = random.Random(1234)
        seq = random.Random(1234)
        dispositions = [
            self.evaluate("pct.example", "x.example", "pass", rng=rng).disposition
            for _ in range(200)
        ]
        expected = ["reject" if seq.random() * 100 < 30 else "quarantine" for _ in range(200)]
        self.assertEqual(dispositions, expected)
        self.assertTrue(40 < dispositions.count("reject") < 80)


class IPRevTests(unittest.TestCase):
    ZONE = {
        "1.2.0.192.in-addr.arpa": [("PTR", "a.example."), ("PTR", "b.example.")],
        "a.example": [("A", "198.51.100.1")],
        "b.example": [("A", "192.0.2.1")],
        "2.2.0.192.in-addr.arpa": [("PTR", "c.example.")],
        "c.example": [("TIMEOUT", None)],
    }

    def iprev(self, ip):
        return self.successResultOf(checkIPRev(zoneResolver(self.ZONE), ip))

    def test_forwardConfirmed(self):
        r = self.iprev("192.0.2.1")
        self.assertEqual((r.result, r.confirmed), ("pass", ("b.example",)))

    def test_noPTR(self):
        self.assertEqual(self.iprev("192.0.2.9").result, "fail")

    def test_temperror(self):
        self.assertEqual(self.iprev("192.0.2.2").result, "temperror")


class DNSBLTests(unittest.TestCase):
    def test_zones(self):
        z = parseZone("zen.dnsbl.example=127.0.0.[2..11]*3")
        self.assertEqual((z.name, z.weight), ("zen.dnsbl.example", 3))
        self.assertTrue(z.accepts("127.0.0.4"))
        self.assertFalse(z.accepts("127.0.0.12"))
        self.assertFalse(parseZone("x.example").accepts("192.0.2.1"))
        self.assertTrue(parseZone("x.example=127.0.[0;1].1*-2").accepts("127.0.1.1"))
        self.assertTrue(parseZone("x.example*-2").allowlist)
        for bad in ["nodot", "x.example=127.0.0", "x.example=127.0.0.[2..300]", "x.example*two"]:
            self.assertRaises(ValueError, parseZone, bad)

    def test_queryNames(self):
        self.assertEqual(queryName("192.0.2.7", "zen.example"), "7.2.0.192.zen.example")
        self.assertTrue(queryName("2001:db8::1", "bl.example").startswith("1.0.0.0."))
        self.assertTrue(queryName("2001:db8::1", "bl.example").endswith(".8.b.d.0.1.0.0.2.bl.example"))

    def test_score(self):
        resolver = zoneResolver({
            "7.2.0.192.a.example": [("A", "127.0.0.2")],
            "7.2.0.192.b.example": [("A", "127.0.0.2")],
        })
        zones = [parseZone("a.example*2"), parseZone("b.example=127.0.0.3"), parseZone("c.example")]
        result = self.successResultOf(checkZones(resolver, "192.0.2.7", zones))
        self.assertEqual(result.score, 2)
        self.assertEqual([l.zone.name for l in result.listings], ["a.example"])


class KeyTests(unittest.TestCase):
    def test_writeMode0600AndRecord(self):
        directory = self.mktemp()
        key = K.generateKey("ed25519")
        path = K.writeKey(directory, "Example.ORG", "mail", key)
        self.assertEqual(path, os.path.join(directory, "example.org", "mail.key"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertRaises(FileExistsError, K.writeKey, directory, "example.org", "mail", key)
        (loaded,) = K.KeyStore(directory).keysFor("example.org")
        self.assertEqual((loaded.selector, loaded.algorithm), ("mail", "ed25519"))
        self.assertEqual(loaded.record, K.publicRecord(key))
        self.assertTrue(loaded.record.startswith("v=DKIM1; k=ed25519; p="))

    def test_rsaIs2048Bits(self):
        key = K.generateKey("rsa")
        self.assertEqual(key.key_size, 2048)
        record = K.publicRecord(key)
        line = K.zoneRecord("example.org", "s1", record)
        self.assertTrue(line.startswith('s1._domainkey.example.org.\tIN\tTXT\t( "v=DKIM1; k=rsa; p='))
        self.assertEqual(parseTXT(line.split("\t", 3)[3].strip("( )").replace("\n\t", " ")), record.encode())

    def test_parentDomainKeys(self):
        directory = self.mktemp()
        K.writeKey(directory, "example.org", "s", K.generateKey("ed25519"))
        store = K.KeyStore(directory)
        self.assertEqual([k.domain for k in store.signingKeys("lists.example.org")], ["example.org"])
        self.assertEqual(store.signingKeys("example.net"), [])

    def test_signRoundTrip(self):
        key = K.generateKey("ed25519")
        signing = K.SigningKey("example.org", "s", "ed25519", "-", key)
        message = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"
        fields = signHeaders(message, [signing])
        resolver = zoneResolver({"s._domainkey.example.org": [("TXT", txt(K.publicRecord(key)))]})
        results = self.successResultOf(
            DKIMVerifier(resolver, runSynchronously).verify(lambda: fields[0] + message)
        )
        self.assertEqual([r.result for r in results], ["pass"])

    def test_keyLookupTemperror(self):
        key = K.generateKey("ed25519")
        message = b"From: a@example.org\r\n\r\nbody\r\n"
        fields = signHeaders(message, [K.SigningKey("example.org", "s", "ed25519", "-", key)])
        resolver = zoneResolver({"s._domainkey.example.org": [("TIMEOUT", None)]})
        (result,) = self.successResultOf(
            DKIMVerifier(resolver, runSynchronously).verify(lambda: fields[0] + message)
        )
        self.assertEqual(result.result, "temperror")

    def test_summary(self):
        self.assertEqual(summary([]), "none")
        self.assertEqual(summary([DKIMResult("fail"), DKIMResult("pass")]), "pass")
        self.assertEqual(summary([DKIMResult("permerror"), DKIMResult("fail")]), "fail")


class AuthResultsTests(unittest.TestCase):
    def test_formatAndParse(self):
        header = formatHeader("mx.example.org", [
            AuthResult("spf", "pass", (("smtp", "mailfrom", "a@example.com"),)),
            AuthResult("dkim", "fail", (("header", "d", "example.com"),), reason="bad (sig)"),
            AuthResult("iprev", "pass", (("policy", "iprev", "192.0.2.1"),), comment="h (x)"),
        ])
        self.assertEqual(
            header,
            b"Authentication-Results: mx.example.org;\r\n"
            b"\tspf=pass smtp.mailfrom=a@example.com;\r\n"
            b'\tdkim=fail reason="bad (sig)" header.d=example.com;\r\n'
            b"\tiprev=pass (h x) policy.iprev=192.0.2.1\r\n",
        )
        parsed = parseHeader(header.decode())
        self.assertEqual([r.method for r in parsed.results], ["spf", "dkim", "iprev"])
        self.assertEqual(parsed.results[1].reason, "bad (sig)")

    def test_none(self):
        self.assertEqual(formatHeader("mx", []), b"Authentication-Results: mx;\r\n\tnone\r\n")

