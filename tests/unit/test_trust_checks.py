"""
The sender-authentication checks (L{mailplat.trust.checks}) in real SMTP
sessions (no sockets): the replies they give, what they put into
C{facts.extraHeaders} (one Authentication-Results field, DKIM-Signature
fields) and the queue envelope, quarantine, timeouts and option errors.
DNS answers come from in-process zone data through our resolver.
"""

import random

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from mailplat.dns import Resolver
from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.policy.registry import PolicyError
from mailplat.testing import makeContext, runSynchronously
from mailplat.trust import keys as K
from mailplat.trust.authresults import parseHeader
from mailplat.trust.checks import TRUST_CHECKS
from mailplat.trust.dkim import DKIMVerifier, signHeaders
from tests.trustsupport import txt, zoneResolver
from tests.unit.test_smtp_server import SessionMixin, plain
from tests.tlsfakes import ImplicitTLSTransport

PEER_IP = "192.0.2.7"
_KEYS = {}


def key(algorithm):
    if algorithm not in _KEYS:
        _KEYS[algorithm] = K.generateKey(algorithm)
    return _KEYS[algorithm]


def signed(message, domain="example.com", selector="ed", algorithm="ed25519"):
    k = K.SigningKey(domain, selector, algorithm, "-", key(algorithm))
    return b"".join(signHeaders(message, [k])) + message


def zone():
    return {
        "example.com": [("TXT", txt(f"v=spf1 ip4:{PEER_IP} -all"))],
        "client.example.com": [("TXT", txt(f"v=spf1 ip4:{PEER_IP} -all"))],
        "_dmarc.example.com": [("TXT", txt("v=DMARC1; p=reject; rua=mailto:d@example.com"))],
        "ed._domainkey.example.com": [("TXT", txt(K.publicRecord(key("ed25519"))))],
        "rsa._domainkey.example.com": [("TXT", txt(K.publicRecord(key("rsa"))))],
        "fail.example": [("TXT", txt("v=spf1 -all"))],
        "soft.example": [("TXT", txt("v=spf1 ~all"))],
        "error.example": [("TIMEOUT", None)],
        "noauth.example": [("A", "198.51.100.1")],
        "_dmarc.quarantine.example": [("TXT", txt("v=DMARC1; p=quarantine"))],
        "quarantine.example": [("TXT", txt("v=spf1 -all"))],
        "_dmarc.none.example": [("TXT", txt("v=DMARC1; p=none"))],
        "7.2.0.192.in-addr.arpa": [("PTR", "mail.client.example.")],
        "mail.client.example": [("A", PEER_IP)],
        "7.2.0.192.zen.dnsbl.example": [("A", "127.0.0.2")],
        "7.2.0.192.wl.example": [("A", "127.0.10.1")],
    }


MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: demo@example.test\r\n"
    b"Subject: hi\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n"
)


class TrustSessionMixin(SessionMixin):
    checks = ()

    def setUp(self):
        self.overrides = {"check": [dict(c) for c in self.checks]}
        SessionMixin.setUp(self)
        self.ctx.resolver = zoneResolver(zone())

    def check(self, name):
        return [c for c in self.ctx.policy.checks if c.name == name][0]

    def transaction(self, sender, message=MESSAGE, helo=b"client.example.com"):
        """
        Run EHLO, MAIL, RCPT, DATA; return the replies to MAIL and to the
        end of data (L{None} when MAIL was refused).
        """
        proto, t = self.connect()
        self.send(proto, t, b"EHLO " + helo + b"\r\n")
        mail = self.send(proto, t, f"MAIL FROM:<{sender}>\r\n".encode())
        if not mail.startswith(b"250"):
            return mail, None
        assert self.send(proto, t, b"RCPT TO:<demo@example.test>\r\n") == b"250 2.1.5 Ok\r\n"
        assert self.send(proto, t, b"DATA\r\n").startswith(b"354")
        return mail, self.send(proto, t, message + b".\r\n")

    def queuedHeaders(self):
        # Set by the server only when a check added fields.
        return getattr(self.ctx.runner.enqueued[-1].envelope, "headers", [])

    def authResults(self):
        fields = [h for h in self.queuedHeaders() if h.startswith("Authentication-Results:")]
        self.assertEqual(len(fields), 1)
        header = parseHeader(fields[0])
        self.assertEqual(header.authserv_id, "mail.example.test")
        return [
            (r.method, r.result, {f"{p.type}.{p.name}": p.value for p in r.properties})
            for r in header.results
        ]


class SPFCheckTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "spf", "softfail": "quarantine"}]

    def test_passIsWrittenForBothIdentities(self):
        mail, end = self.transaction("alice@example.com")
        self.assertEqual(mail, b"250 2.1.0 Ok\r\n")
        self.assertTrue(end.startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(
            self.queuedHeaders(),
            ["Authentication-Results: mail.example.test;\r\n"
             "\tspf=pass smtp.helo=client.example.com;\r\n"
             "\tspf=pass smtp.mailfrom=alice@example.com\r\n"],
        )
        self.assertNotIn("quarantine", self.ctx.runner.enqueued[-1].envelope.params)

    def test_failRejectsMail(self):
        mail, _ = self.transaction("bob@fail.example")
        self.assertEqual(
            mail,
            b"550 5.7.23 <bob@fail.example>: SPF fail: fail.example does not "
            b"authorize [192.0.2.7] to send\r\n",
        )
        self.assertEqual(self.ctx.runner.enqueued, [])

    def test_softfailQuarantines(self):
        mail, end = self.transaction("bob@soft.example")
        self.assertTrue(end.startswith(b"250 2.0.0 Ok: queued as "))
        env = self.ctx.runner.enqueued[-1].envelope
        self.assertEqual(env.params["quarantine"], "SPF softfail for soft.example")
        self.assertEqual(self.authResults()[1], ("spf", "softfail", {"smtp.mailfrom": "bob@soft.example"}))

    def test_temperrorIsTaggedByDefault(self):
        mail, end = self.transaction("bob@error.example")
        self.assertTrue(end.startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(self.authResults()[1][:2], ("spf", "temperror"))

    def test_noneForDomainWithoutRecord(self):
        self.transaction("bob@noauth.example")
        self.assertEqual(self.authResults()[1][:2], ("spf", "none"))

    def test_nullSenderUsesHelo(self):
        mail, end = self.transaction("")
        self.assertTrue(end.startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(
            self.authResults(),
            [("spf", "pass", {"smtp.mailfrom": "postmaster@client.example.com"})],
        )

    def test_authenticatedSessionsAreNotChecked(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.send(proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode())
        self.assertEqual(self.send(proto, t, b"MAIL FROM:<bob@fail.example>\r\n"), b"250 2.1.0 Ok\r\n")


class SPFTempfailTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "spf", "temperror": "tempfail", "fail": "tag", "helo": False}]

    def test_temperrorTempfailsWhereConfigured(self):
        mail, _ = self.transaction("bob@error.example")
        self.assertEqual(
            mail,
            b"451 4.7.24 <bob@error.example>: SPF temperror: error.example TXT: "
            b"DNS timeout\r\n",
        )

    def test_failOnlyTagged(self):
        mail, end = self.transaction("bob@fail.example")
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertEqual(self.authResults(), [("spf", "fail", {"smtp.mailfrom": "bob@fail.example"})])


class DKIMCheckTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "dkim"}]

    def test_severalSignaturesPass(self):
        message = signed(signed(MESSAGE), selector="rsa", algorithm="rsa")
        mail, end = self.transaction("alice@example.com", message)
        self.assertTrue(end.startswith(b"250 2.0.0"))
        results = self.authResults()
        self.assertEqual([(m, r) for m, r, _ in results], [("dkim", "pass"), ("dkim", "pass")])
        self.assertEqual(results[0][2]["header.a"], "rsa-sha256")
        self.assertEqual(results[0][2]["header.s"], "rsa")
        self.assertEqual(results[1][2]["header.a"], "ed25519-sha256")
        self.assertEqual(results[1][2]["header.d"], "example.com")
        self.assertEqual(len(results[1][2]["header.b"]), 8)

    def test_tamperedBodyFails(self):
        message = signed(MESSAGE).replace(b"Hello.", b"Hello!")
        self.transaction("alice@example.com", message)
        self.assertEqual(self.authResults()[0][:2], ("dkim", "fail"))

    def test_unsignedIsNone(self):
        self.transaction("alice@example.com")
        self.assertEqual(self.authResults(), [("dkim", "none", {})])

    def test_missingKeyIsPermerror(self):
        self.transaction("alice@example.com", signed(MESSAGE, selector="gone"))
        self.assertEqual(self.authResults()[0][:2], ("dkim", "permerror"))


class DKIMRejectTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "dkim", "fail": "reject", "none": "reject"}]

    def test_failRejects(self):
        _, end = self.transaction("alice@example.com", signed(MESSAGE).replace(b"Hello.", b"Bye."))
        self.assertEqual(end, b"550 5.7.20 No passing DKIM signature found\r\n")


class DMARCCheckTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "spf", "fail": "tag"}, {"type": "dkim"}, {"type": "dmarc"}]

    def test_alignedSPFPasses(self):
        _, end = self.transaction("alice@example.com")
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertEqual(
            self.authResults()[-1], ("dmarc", "pass", {"header.from": "example.com"})
        )

    def test_alignedDKIMPassesWithForeignEnvelope(self):
        _, end = self.transaction("list@soft.example", signed(MESSAGE))
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertEqual(self.authResults()[-1][:2], ("dmarc", "pass"))

    def test_unalignedRejected(self):
        mail, end = self.transaction("bob@fail.example")
        self.assertEqual(mail, b"250 2.1.0 Ok\r\n")
        self.assertEqual(end, b"550 5.7.1 Rejected by the DMARC policy of example.com\r\n")
        self.assertEqual(self.ctx.runner.enqueued, [])

    def test_quarantinePolicyGoesToJunk(self):
        message = MESSAGE.replace(b"alice@example.com", b"alice@quarantine.example")
        _, end = self.transaction("bob@fail.example", message)
        self.assertTrue(end.startswith(b"250 2.0.0"))
        env = self.ctx.runner.enqueued[-1].envelope
        self.assertEqual(env.params["quarantine"], "DMARC fail for quarantine.example (p=quarantine)")
        self.assertEqual(self.authResults()[-1][:2], ("dmarc", "fail"))

    def test_nonePolicyOnlyTagged(self):
        message = MESSAGE.replace(b"alice@example.com", b"alice@none.example")
        _, end = self.transaction("bob@fail.example", message)
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertNotIn("quarantine", self.ctx.runner.enqueued[-1].envelope.params)
        self.assertEqual(self.authResults()[-1][:2], ("dmarc", "fail"))

    def test_twoFromAddressesPermerror(self):
        message = MESSAGE.replace(b"From: Alice <alice@example.com>", b"From: a@example.com, b@fail.example")
        _, end = self.transaction("alice@example.com", message)
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertEqual(self.authResults()[-1][:2], ("dmarc", "permerror"))

    def test_oneHeaderHoldsEveryResult(self):
        self.transaction("alice@example.com", signed(MESSAGE))
        self.assertEqual(
            [(m, r) for m, r, _ in self.authResults()],
            [("spf", "pass"), ("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")],
        )


class DMARCOrderTests(unittest.TestCase):
    def test_dmarcNeedsSPFAndDKIMBefore(self):
        e = self.assertRaises(
            PolicyError, makeContext, self.mktemp(),
            overrides={"check": [{"type": "dmarc"}, {"type": "spf"}]},
        )
        self.assertEqual(
            e.problems,
            ["check[0] (dmarc): dmarc needs spf and dkim listed before it in [[check]]"],
        )

    def test_badOptions(self):
        e = self.assertRaises(
            PolicyError, makeContext, self.mktemp(),
            overrides={"check": [
                {"type": "spf", "fail": "explode", "colour": "red", "timeout": "soon"},
                {"type": "dnsbl", "zones": ["not a zone"]},
            ]},
        )
        self.assertEqual(
            e.problems,
            [
                "check[0] (spf): fail: expected one of reject, tempfail, quarantine, tag, "
                "ignore, not 'explode'; timeout: expected a duration such as 30s, 5m, 4h "
                "or 5d, not 'soon'; unknown option(s): colour",
                "check[1] (dnsbl): zones: 'not a zone' is not a zone such as "
                "zen.dnsbl.example=127.0.0.[2..11]*2",
            ],
        )

    def test_authenticationResultsAddedLast(self):
        ctx = makeContext(self.mktemp(), overrides={"check": [{"type": "spf"}]})
        self.assertEqual(
            [c.name for c in ctx.policy.checks][-2:], ["mail_loop", "authentication_results"]
        )
        ctx = makeContext(self.mktemp())
        self.assertNotIn("authentication_results", [c.name for c in ctx.policy.checks])

    def test_interfaces(self):
        ctx = makeContext(self.mktemp())
        for factory in TRUST_CHECKS:
            verifyObject(ICheckFactory, factory)
            options = {"zones": ["zen.dnsbl.example"]} if factory.name == "dnsbl" else {}
            verifyObject(ICheck, factory.makeCheck(options, ctx))


class PctSamplingTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "spf", "fail": "tag"}, {"type": "dkim"}, {"type": "dmarc"}]

    def test_pctWithFixedSeed(self):
        """
        p=reject; pct=50: with a fixed seed the sampled messages are
        rejected, the others quarantined (RFC 7489 section 6.6.4).
        """
        z = zone()
        z["_dmarc.half.example"] = [("TXT", txt("v=DMARC1; p=reject; pct=50"))]
        self.ctx.resolver = zoneResolver(z)
        self.check("dmarc").rng = random.Random(7)
        rng = random.Random(7)
        expected = ["reject" if rng.random() * 100 < 50 else "quarantine" for _ in range(10)]
        got = []
        message = MESSAGE.replace(b"alice@example.com", b"alice@half.example")
        for _ in range(10):
            _, end = self.transaction("bob@fail.example", message)
            if end.startswith(b"550 5.7.1 "):
                got.append("reject")
            else:
                self.assertTrue(end.startswith(b"250 2.0.0"))
                self.assertIn("quarantine", self.ctx.runner.enqueued[-1].envelope.params)
                got.append("quarantine")
        self.assertEqual(got, expected)
        self.assertEqual(set(got), {"reject", "quarantine"})


class IPRevAndDNSBLTests(TrustSessionMixin, unittest.TestCase):
    checks = [
        {"type": "iprev", "fail": "reject"},
        {"type": "dnsbl", "zones": ["zen.dnsbl.example=127.0.0.[2..11]*2", "wl.example*-1"],
         "threshold": 2},
    ]

    def test_passingIPRevAndAllowlistOffsetsBlocklist(self):
        """
        Allowlist hits use RFC 8904's dnswl method (its C{dns} ptype is newer
        than the authres parser, so the field is compared as text).
        """
        mail, end = self.transaction("alice@example.com")
        self.assertEqual(mail, b"250 2.1.0 Ok\r\n")
        self.assertEqual(
            self.queuedHeaders(),
            ["Authentication-Results: mail.example.test;\r\n"
             "\tiprev=pass (mail.client.example) policy.iprev=192.0.2.7;\r\n"
             "\tdnsbl=fail (weight 2, score 1) dns.zone=zen.dnsbl.example policy.ip=127.0.0.2;\r\n"
             "\tdnswl=pass (weight -1, score 1) dns.zone=wl.example policy.ip=127.0.10.1\r\n"],
        )

    def test_blocklistedRejectedAtMail(self):
        z = zone()
        del z["7.2.0.192.wl.example"]
        self.ctx.resolver = zoneResolver(z)
        mail, _ = self.transaction("alice@example.com")
        self.assertEqual(
            mail,
            b"554 5.7.1 Service unavailable; client [192.0.2.7] blocked using "
            b"zen.dnsbl.example\r\n",
        )

    def test_noPTRRejectedAtMail(self):
        z = zone()
        del z["7.2.0.192.in-addr.arpa"]
        self.ctx.resolver = zoneResolver(z)
        mail, _ = self.transaction("alice@example.com")
        self.assertEqual(
            mail,
            b"550 5.7.25 Client address [192.0.2.7] has no forward-confirmed reverse "
            b"DNS name\r\n",
        )

    def test_notConfirmedForward(self):
        z = zone()
        z["mail.client.example"] = [("A", "198.51.100.9")]
        self.ctx.resolver = zoneResolver(z)
        mail, _ = self.transaction("alice@example.com")
        self.assertTrue(mail.startswith(b"550 5.7.25 "))


class TimeoutTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "spf", "timeout": "3s", "temperror": "tempfail"}]

    def test_slowDNSIsTemperror(self):
        clock = self.ctx.clock
        self.ctx.resolver = Resolver(clock, lambda f, *a: defer.Deferred(), None)
        proto, t = self.connect()
        self.send(proto, t, b"EHLO client.example.com\r\n")
        self.assertEqual(self.send(proto, t, b"MAIL FROM:<bob@slow.example>\r\n"), b"")
        t.clear()
        clock.advance(3)
        self.assertEqual(
            t.value(),
            b"451 4.7.24 <bob@slow.example>: SPF temperror: SPF check timed out\r\n",
        )


class DKIMSignTests(TrustSessionMixin, unittest.TestCase):
    checks = [{"type": "dkim_sign"}]
    profile = "submission"

    def setUp(self):
        TrustSessionMixin.setUp(self)
        keyDir = self.ctx.config.dkim.keyDir
        K.writeKey(keyDir, "example.test", "ed", key("ed25519"))
        K.writeKey(keyDir, "example.test", "rsa", key("rsa"))

    def test_submissionIsSignedWithEveryKey(self):
        proto, t = self.connect(ImplicitTLSTransport)
        self.send(proto, t, b"EHLO c\r\n")
        self.send(proto, t, f"AUTH PLAIN {plain(b'demo@example.test', b'demo')}\r\n".encode())
        self.send(proto, t, b"MAIL FROM:<demo@example.test>\r\nRCPT TO:<x@remote.example>\r\n")
        self.send(proto, t, b"DATA\r\n")
        message = (
            b"From: Demo <demo@example.test>\r\nTo: x@remote.example\r\nSubject: s\r\n"
            b"\r\nbody\r\n"
        )
        out = self.send(proto, t, message + b".\r\n")
        self.assertTrue(out.startswith(b"250 2.0.0"), out)
        fields = [h.encode() for h in self.queuedHeaders()]
        self.assertEqual(len(fields), 2)
        self.assertTrue(all(f.startswith(b"DKIM-Signature: v=1; a=") for f in fields))
        self.assertIn(b"a=ed25519-sha256", fields[0])
        self.assertIn(b"a=rsa-sha256", fields[1])
        self.assertIn(b"c=relaxed/relaxed", fields[1])
        self.assertIn(b"h=from : from : subject : date : to : message-id", b" ".join(fields[1].split()))
        # What the recipient gets: the fields above the queued message.
        delivered = self.queuedContent()
        self.assertTrue(delivered.startswith(b"".join(fields)))
        z = {
            "ed._domainkey.example.test": [("TXT", txt(K.publicRecord(key("ed25519"))))],
            "rsa._domainkey.example.test": [("TXT", txt(K.publicRecord(key("rsa"))))],
        }
        results = self.successResultOf(
            DKIMVerifier(zoneResolver(z), runSynchronously).verify(lambda: delivered)
        )
        self.assertEqual([r.result for r in results], ["pass", "pass"])

    def test_mxMailIsNotSigned(self):
        self.listener = self.listener.__class__("mx", "smtp", "tcp:0", tls="starttls", profile="mx")
        mail, end = self.transaction("alice@example.test",
                                     MESSAGE.replace(b"alice@example.com", b"alice@example.test"))
        self.assertTrue(end.startswith(b"250 2.0.0"))
        self.assertEqual(self.queuedHeaders(), [])


class _Spool:
    """
    What the data-stage checks read of a L{SpoolFile}.
    """

    def __init__(self, path, offset, size):
        self.tmpPath, self.offset, self.size = path, offset, size


class ExtraHeadersTests(unittest.TestCase):
    def test_dataStageFieldsOnFacts(self):
        """
        The checks append complete header fields, as bytes ending in CRLF,
        to C{facts.extraHeaders}: one Authentication-Results field, rewritten
        in place as each check adds its results.
        """
        from email.parser import BytesHeaderParser

        from mailplat.policy.facts import SessionFacts

        ctx = makeContext(self.mktemp(), overrides={"check": [
            {"type": "spf"}, {"type": "dkim"}, {"type": "dmarc"}]})
        ctx.resolver = zoneResolver(zone())
        facts = SessionFacts(context=ctx, peer=PEER_IP, listener="test", profile="mx",
                             helo="client.example.com", sender="alice@example.com")
        self.assertEqual(self.successResultOf(ctx.policy.run("mail", facts)).action, "continue")
        message = b"Received: by mail.example.test\r\n" + signed(MESSAGE)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"ENVELOPE" + message)
        facts.spool = _Spool(path, 8, len(message))
        facts.headers = BytesHeaderParser().parsebytes(message)
        facts.extraHeaders = [b"X-Other: kept\r\n"]
        self.assertEqual(self.successResultOf(ctx.policy.run("data", facts)).action, "continue")
        self.assertEqual(facts.extraHeaders[0], b"X-Other: kept\r\n")
        self.assertEqual(len(facts.extraHeaders), 2)
        field = facts.extraHeaders[1]
        self.assertTrue(field.startswith(b"Authentication-Results: mail.example.test;\r\n\tspf=pass "))
        self.assertTrue(field.endswith(b"\r\n"))
        self.assertEqual(
            [line.split(b" ")[0] for line in field.split(b"\r\n\t")[1:]],
            [b"spf=pass", b"spf=pass", b"dkim=pass", b"dmarc=pass"],
        )
