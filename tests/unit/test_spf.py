"""
SPF (L{mailplat.trust.spf}): every case of the RFC 7208 test suite
(tests/data/rfc7208-tests.yml, from the pyspf distribution, with its
licence beside it), fed through an in-process zone to our resolver; plus
the limits and parsing rules the suite touches only lightly.
"""

import os

import yaml
from twisted.trial import unittest

from mailplat.trust.spf import (
    PermError,
    SPFChecker,
    parseMacroString,
    parseRecord,
)
from tests.trustsupport import txt, zoneResolver

SUITE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "rfc7208-tests.yml")


def _zone(zonedata):
    """
    The suite's zone data as L{tests.trustsupport.ZoneQuery} entries: type
    SPF records become TXT records unless the name lists TXT records of its
    own (C{TXT: NONE} for none), as the suite's drivers do.
    """
    zone = {}
    for name, entries in zonedata.items():
        out, generated, ownTXT = [], [], False
        for entry in entries:
            if entry == "TIMEOUT":
                out.append(("TIMEOUT", None))
                continue
            ((rdtype, value),) = entry.items()
            if rdtype in ("SPF", "TXT"):
                strings = value if isinstance(value, list) else [value]
                if rdtype == "TXT":
                    ownTXT = True
                    if strings == ["NONE"]:
                        continue
                    out.append(("TXT", txt(*strings)))
                else:
                    generated.append(("TXT", txt(*strings)) if strings else ("TXT", '""'))
            elif rdtype == "MX":
                out.append(("MX", f"{value[0]} {value[1].rstrip('.')}."))
            elif rdtype in ("PTR", "CNAME"):
                out.append((rdtype, value.rstrip(".") + "."))
            else:
                out.append((rdtype, str(value)))
        if not ownTXT:
            out += generated
        zone[name] = out
    return zone


def _cases():
    with open(SUITE, encoding="utf-8") as f:
        for scenario in yaml.safe_load_all(f):
            zone = _zone(scenario["zonedata"])
            for name, case in scenario["tests"].items():
                yield scenario["description"], name, case, zone


class RFC7208SuiteTests(unittest.TestCase):
    def test_everyCase(self):
        """
        Every case gives one of the results the suite accepts, and the
        explanation it expects (C{DEFAULT}: ours, which is none).
        """
        failures, count = [], 0
        for description, name, case, zone in _cases():
            count += 1
            checker = SPFChecker(zoneResolver(zone), receiver="receiver.example")
            mailfrom = case["mailfrom"]
            if mailfrom:
                domain, sender = mailfrom.rpartition("@")[2], mailfrom
            else:
                domain, sender = case["helo"], f"postmaster@{case['helo']}"
            result = self.successResultOf(
                checker.checkHost(case["host"], domain, sender, helo=case["helo"])
            )
            expected = case["result"]
            expected = expected if isinstance(expected, list) else [expected]
            if result.result not in expected:
                failures.append(f"{description} / {name}: {result} (expected {expected})")
                continue
            explanation = case.get("explanation")
            if result.result == "fail" and explanation is not None:
                want = None if explanation == "DEFAULT" else explanation
                if result.explanation != want:
                    failures.append(
                        f"{description} / {name}: explanation {result.explanation!r}, "
                        f"expected {want!r}"
                    )
        self.assertEqual(failures, [])
        self.assertEqual(count, 203)


class ParsingTests(unittest.TestCase):
    def test_macroTokens(self):
        tokens = parseMacroString("%{ir}.%{v}._spf.%{d2}")
        self.assertEqual(len(tokens), 5)
        self.assertEqual(tokens[0].letter, "i")
        self.assertTrue(tokens[0].reverse)
        self.assertEqual(tokens[-1].digits, 2)

    def test_expOnlyMacros(self):
        self.assertRaises(PermError, parseMacroString, "%{c}.example.com")
        parseMacroString("%{c} is not allowed by %{r} at %{t}", explain=True)

    def test_syntaxErrors(self):
        for record in [
            "v=spf1 ip4:192.0.2.0/33",
            "v=spf1 ip4:192.0.02.1",
            "v=spf1 ip6:2001:db8::/129",
            "v=spf1 a:example.com/24//129",
            "v=spf1 include",
            "v=spf1 foo:bar",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 exp=a.example exp=b.example",
            "v=spf1 a:foo",
            "v=spf1 -all/8",
            "v=spf1 a:%{x}.example.com",
        ]:
            self.assertRaises(PermError, parseRecord, record)

    def test_unknownModifiersIgnored(self):
        record = parseRecord("v=spf1 moo.cow-far_out=man:dog/cat ip4:192.0.2.1 -all")
        self.assertEqual([m.name for m in record.mechanisms], ["ip4", "all"])


class LimitTests(unittest.TestCase):
    def check(self, zone, ip="192.0.2.1", domain="example.com"):
        checker = SPFChecker(zoneResolver(zone))
        return self.successResultOf(checker.checkHost(ip, domain, f"u@{domain}"))

    def test_tenLookupsAllowedEleventhIsPermerror(self):
        zone = {"example.com": [("TXT", txt("v=spf1 " + " ".join(
            f"a:h{i}.example.com" for i in range(10)) + " -all"))]}
        for i in range(10):
            zone[f"h{i}.example.com"] = [("A", "198.51.100.1")]
        self.assertEqual(self.check(zone).result, "fail")
        zone["example.com"] = [("TXT", txt("v=spf1 " + " ".join(
            f"a:h{i}.example.com" for i in range(10)) + " a:h0.example.com -all"))]
        result = self.check(zone)
        self.assertEqual(result.result, "permerror")
        self.assertIn("more than 10 DNS lookups", result.problem)

    def test_twoVoidLookupsAllowedThirdIsPermerror(self):
        zone = {
            "example.com": [("TXT", txt("v=spf1 a:n1.example.com a:n2.example.com -all"))],
        }
        self.assertEqual(self.check(zone).result, "fail")
        zone["example.com"] = [
            ("TXT", txt("v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all"))
        ]
        result = self.check(zone)
        self.assertEqual(result.result, "permerror")
        self.assertIn("void", result.problem)

    def test_ipv4MappedIPv6IsCheckedAsIPv4(self):
        zone = {"example.com": [("TXT", txt("v=spf1 ip4:192.0.2.0/24 -all"))]}
        self.assertEqual(self.check(zone, ip="::ffff:192.0.2.7").result, "pass")

    def test_longRecordInSeveralStrings(self):
        record = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(60)) + " ip4:192.0.2.1 -all"
        self.assertGreater(len(record), 255)
        zone = {"example.com": [("TXT", txt(record))]}
        self.assertEqual(self.check(zone).result, "pass")
