"""
What an admin checks by hand with dig before a domain can send and receive
mail, automated (C{mailplat dns check}), and the records to publish
(C{mailplat dns records}).

Each check gives a L{Finding}: C{pass}, C{warn} or C{fail}, with the record
to publish when something is missing or wrong.  Every lookup goes through a
L{mailplat.dns.Resolver} (the configured name servers).
"""

import ipaddress
import re
from dataclasses import dataclass

from twisted.internet import defer

from mailplat.dns import NoSuchDomain, TemporaryDNSError, reverseName
from mailplat.trust import dmarc as dmarclib
from mailplat.trust import keys as keylib
from mailplat.trust import spf as spflib

PASS = "pass"
WARN = "warn"
FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    """
    @ivar publish: zone-file lines to publish (or change) to fix it.
    """

    status: str
    topic: str
    text: str
    publish: tuple = ()


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def spfRecord(domain, hostname, ips):
    """
    The SPF record to publish: the domain's MX hosts, and the server's
    addresses when they are known.
    """
    mechanisms = ["mx"]
    for ip in ips:
        address = ipaddress.ip_address(ip)
        mechanisms.append(f"ip{address.version}:{address}")
    return "v=spf1 " + " ".join(mechanisms) + " -all"


def dmarcRecord(domain):
    return f"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"


def _txtLine(name, text):
    return f"{name}.\tIN\tTXT\t{keylib.quoteTXT(text)}"


def recordsFor(domain, hostname, ips, keys):
    """
    Every record C{domain} needs to receive and send mail from C{hostname}
    at C{ips}, as zone-file lines (with comments).

    @param keys: the domain's L{mailplat.trust.keys.SigningKey} objects.
    """
    domain = domain.lower().rstrip(".")
    hostname = hostname.lower().rstrip(".")
    lines = [f"; mail for {domain}, served by {hostname}"]
    lines.append(f"{domain}.\tIN\tMX\t10 {hostname}.")
    if ips:
        for ip in ips:
            rdtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
            lines.append(f"{hostname}.\tIN\t{rdtype}\t{ip}")
    else:
        lines.append(f"; {hostname}.\tIN\tA\t<the server's address> (give --ip)")
    lines.append(_txtLine(domain, spfRecord(domain, hostname, ips)))
    if keys:
        for key in keys:
            lines.append(keylib.zoneRecord(domain, key.selector, key.record))
    else:
        lines.append(f"; DKIM: no key yet; run: mailplat dkim keygen {domain}")
    lines.append(_txtLine(f"_dmarc.{domain}", dmarcRecord(domain)))
    lines.append("; optional: TLS reporting (RFC 8460)")
    lines.append(";" + _txtLine(f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"))
    for ip in ips:
        lines.append(f"; reverse DNS, set by whoever holds {ip}:")
        lines.append(f";{reverseName(ip)}.\tIN\tPTR\t{hostname}.")
    return lines


class DomainChecker:
    """
    Runs the checks of C{mailplat dns check}.

    @ivar hostname: the mail host's name (the config's C{hostname}).
    @ivar ip: the server's address, or L{None} to use the host's.
    @ivar keys: the domain's local DKIM keys.
    """

    def __init__(self, resolver, hostname, ip=None, keys=()):
        self.resolver = resolver
        self.hostname = hostname.lower().rstrip(".")
        self.ip = ip
        self.keys = list(keys)

    @defer.inlineCallbacks
    def check(self, domain):
        """
        @return: a Deferred firing with a list of L{Finding}.
        """
        domain = domain.lower().rstrip(".")
        findings = []
        findings += yield self.checkMX(domain)
        hostFindings, ips = yield self.checkHost()
        findings += hostFindings
        findings += yield self.checkPTR(ips)
        findings += yield self.checkSPF(domain, ips)
        findings += yield self.checkDKIM(domain)
        findings += yield self.checkDMARC(domain)
        findings += yield self.checkOptional(domain)
        return findings

    @defer.inlineCallbacks
    def _txt(self, name):
        """
        @return: the TXT records of C{name} as text; empty when there are
            none.
        @raise TemporaryDNSError: the lookup failed.
        """
        try:
            records = yield self.resolver.lookupTXT(name)
        except NoSuchDomain:
            return []
        return [r.decode("utf-8", "replace") for r in records]

    @defer.inlineCallbacks
    def checkMX(self, domain):
        publish = (f"{domain}.\tIN\tMX\t10 {self.hostname}.",)
        try:
            answer = yield self.resolver.lookup(domain, "MX")
        except NoSuchDomain:
            return [Finding(FAIL, "MX", f"{domain} does not exist", publish)]
        except TemporaryDNSError as e:
            return [Finding(FAIL, "MX", f"lookup failed: {e}")]
        if not answer.records:
            return [Finding(FAIL, "MX", f"{domain} has no MX record", publish)]
        findings, targets = [], []
        for text in sorted(answer.records, key=lambda t: int(t.split()[0])):
            preference, _, target = text.partition(" ")
            target = target.rstrip(".").lower()
            if target == "":
                findings.append(Finding(FAIL, "MX", f"{domain} has a null MX: it accepts no mail", publish))
                continue
            targets.append(target)
            if _ip(target) is not None:
                findings.append(Finding(FAIL, "MX", f"{preference} {target} is an IP address, not a host name (RFC 5321 5.1)", publish))
                continue
            try:
                a = yield self.resolver.lookup(target, "A")
                aaaa = yield self.resolver.lookup(target, "AAAA")
            except NoSuchDomain:
                findings.append(Finding(FAIL, "MX", f"{preference} {target} does not exist", publish))
                continue
            except TemporaryDNSError as e:
                findings.append(Finding(FAIL, "MX", f"{preference} {target}: lookup failed: {e}"))
                continue
            if a.canonical != target or aaaa.canonical != target:
                findings.append(Finding(FAIL, "MX", f"{preference} {target} is a CNAME (RFC 2181 10.3)", publish))
            elif not (a.records or aaaa.records):
                findings.append(Finding(FAIL, "MX", f"{preference} {target} has no A/AAAA record"))
            else:
                findings.append(Finding(PASS, "MX", f"{preference} {target} ({', '.join(a.records + aaaa.records)})"))
        if targets and self.hostname not in targets:
            findings.append(Finding(WARN, "MX", f"{self.hostname} is not an MX host of {domain}", publish))
        return findings

    @defer.inlineCallbacks
    def checkHost(self):
        """
        @return: C{(findings, ips)}: the server's addresses to check PTR and
            SPF with (C{--ip}, else the host's).
        """
        host = self.hostname
        try:
            addresses = yield self.resolver.addresses(host)
        except NoSuchDomain:
            addresses = []
        except TemporaryDNSError as e:
            return [Finding(FAIL, "A/AAAA", f"{host}: lookup failed: {e}")], [self.ip] if self.ip else []
        publish = ()
        if self.ip:
            rdtype = "A" if ipaddress.ip_address(self.ip).version == 4 else "AAAA"
            publish = (f"{host}.\tIN\t{rdtype}\t{self.ip}",)
        if not addresses:
            return [Finding(FAIL, "A/AAAA", f"{host} has no A or AAAA record", publish)], [self.ip] if self.ip else []
        if self.ip and ipaddress.ip_address(self.ip) not in [ipaddress.ip_address(a) for a in addresses]:
            return [Finding(FAIL, "A/AAAA", f"{host} is {', '.join(addresses)}, not {self.ip}", publish)], [self.ip]
        return [Finding(PASS, "A/AAAA", f"{host} is {', '.join(addresses)}")], [self.ip] if self.ip else addresses

    @defer.inlineCallbacks
    def checkPTR(self, ips):
        findings = []
        for ip in ips:
            publish = (f"{reverseName(ip)}.\tIN\tPTR\t{self.hostname}.  ; set by whoever holds {ip}",)
            try:
                names = yield self.resolver.lookupPTR(ip)
            except NoSuchDomain:
                names = []
            except TemporaryDNSError as e:
                findings.append(Finding(FAIL, "PTR", f"{ip}: lookup failed: {e}"))
                continue
            if not names:
                findings.append(Finding(FAIL, "PTR", f"{ip} has no PTR record", publish))
                continue
            confirmed = []
            for name in names:
                try:
                    addresses = yield self.resolver.addresses(name)
                except (NoSuchDomain, TemporaryDNSError):
                    continue
                if ipaddress.ip_address(ip) in [ipaddress.ip_address(a) for a in addresses]:
                    confirmed.append(name)
            if not confirmed:
                findings.append(Finding(FAIL, "PTR", f"{ip} is {', '.join(names)}, which does not resolve back to {ip} (no FCrDNS)", publish))
            elif self.hostname not in confirmed:
                findings.append(Finding(WARN, "PTR", f"{ip} is {', '.join(confirmed)} (forward-confirmed), not {self.hostname}", publish))
            else:
                findings.append(Finding(PASS, "PTR", f"{ip} is {self.hostname}, forward-confirmed"))
        return findings

    @defer.inlineCallbacks
    def _oneRecord(self, name, kind, isRecord, publish, advice):
        """
        Look up the one TXT record of C{kind} (C{SPF}, C{DMARC}) at C{name}.

        @return: a Deferred firing with C{(record, None)}, or C{(None,
            findings)} when the lookup failed or there is not exactly one.
        """
        try:
            texts = yield self._txt(name)
        except TemporaryDNSError as e:
            return None, [Finding(FAIL, kind, f"lookup failed: {e}")]
        records = [t for t in texts if isRecord(t)]
        if not records:
            return None, [Finding(FAIL, kind, f"{name} has no {kind} record", publish)]
        if len(records) > 1:
            return None, [
                Finding(FAIL, kind, f"{name} has {len(records)} {kind} records; {advice}", publish)
            ]
        return records[0], None

    @defer.inlineCallbacks
    def checkSPF(self, domain, ips):
        publish = (_txtLine(domain, spfRecord(domain, self.hostname, ips)),)
        record, problems = yield self._oneRecord(
            domain, "SPF", spflib.isSPFRecord, publish, "publish exactly one"
        )
        if problems:
            return problems
        try:
            parsed = spflib.parseRecord(record)
        except spflib.PermError as e:
            return [Finding(FAIL, "SPF", f"syntax error: {e}: {record}", publish)]
        findings = [Finding(PASS, "SPF", record)]
        if any(m.name == "all" and m.qualifier == "+" for m in parsed.mechanisms):
            findings.append(Finding(FAIL, "SPF", "+all lets anyone send as this domain", publish))
        checker = spflib.SPFChecker(self.resolver)
        for ip in ips:
            result = yield checker.checkHost(ip, domain, f"postmaster@{domain}", self.hostname)
            if result.result == spflib.PERMERROR:
                findings.append(Finding(FAIL, "SPF", f"permerror: {result.problem}", publish))
            elif result.result == spflib.PASS:
                status = WARN if result.lookups >= 8 else PASS
                findings.append(Finding(status, "SPF", f"authorizes {ip} ({result.mechanism}); {result.lookups} of {spflib.MAX_LOOKUPS} DNS lookups"))
            else:
                findings.append(Finding(FAIL, "SPF", f"{ip} gets {result.result}, not pass", publish))
        return findings

    @defer.inlineCallbacks
    def checkDKIM(self, domain):
        if not self.keys:
            return [Finding(WARN, "DKIM", f"no local key for {domain}; run: mailplat dkim keygen {domain}")]
        findings = []
        for key in self.keys:
            name = keylib.recordName(domain, key.selector)
            publish = (keylib.zoneRecord(domain, key.selector, key.record),)
            try:
                texts = yield self._txt(name)
            except TemporaryDNSError as e:
                findings.append(Finding(FAIL, "DKIM", f"{name}: lookup failed: {e}"))
                continue
            records = [t for t in texts if "p=" in t]
            if not records:
                findings.append(Finding(FAIL, "DKIM", f"{name} has no key record", publish))
                continue
            published = _tags(records[0]).get("p", "")
            if re.sub(r"\s+", "", published) != keylib.publicKeyData(key.key):
                findings.append(Finding(FAIL, "DKIM", f"{name} does not match the local key {key.path}", publish))
            else:
                findings.append(Finding(PASS, "DKIM", f"{name} matches the local {key.algorithm} key"))
        return findings

    @defer.inlineCallbacks
    def checkDMARC(self, domain):
        name = f"_dmarc.{domain}"
        publish = (_txtLine(name, dmarcRecord(domain)),)
        text, problems = yield self._oneRecord(
            name, "DMARC", dmarclib.isDMARCRecord, publish, "publish one"
        )
        if problems:
            return problems
        try:
            record = dmarclib.parseRecord(text)
        except dmarclib.DMARCRecordError as e:
            return [Finding(FAIL, "DMARC", f"{e}: {text}", publish)]
        if record.p == "none":
            return [Finding(WARN, "DMARC", f"p=none: failures are only reported ({text})", publish)]
        if record.pct < 100:
            return [Finding(WARN, "DMARC", f"pct={record.pct}: the policy applies to part of the mail ({text})")]
        return [Finding(PASS, "DMARC", text)]

    @defer.inlineCallbacks
    def checkOptional(self, domain):
        """
        MTA-STS (RFC 8461 section 3.1) and TLS-RPT (RFC 8460 section 3),
        when published.
        """
        findings = []
        for topic, name, version, required in [
            ("MTA-STS", f"_mta-sts.{domain}", "STSv1", "id"),
            ("TLS-RPT", f"_smtp._tls.{domain}", "TLSRPTv1", "rua"),
        ]:
            try:
                texts = yield self._txt(name)
            except TemporaryDNSError as e:
                findings.append(Finding(FAIL, topic, f"lookup failed: {e}"))
                continue
            records = [t for t in texts if t.replace(" ", "").startswith(f"v={version}")]
            if not records:
                continue
            tags = _tags(records[0])
            if len(records) > 1:
                findings.append(Finding(FAIL, topic, f"{name} has {len(records)} records"))
            elif tags.get("v") != version or not tags.get(required):
                findings.append(Finding(FAIL, topic, f"{name}: needs v={version} and {required}=: {records[0]}"))
            else:
                findings.append(Finding(PASS, topic, records[0]))
        return findings


def _tags(text):
    out = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            out.setdefault(name.strip().lower(), value.strip())
    return out
