"""
C{mailplat dns}: the DNS a mail domain needs, checked through the resolver
the config describes (C{[dns]}).

    mailplat dns check DOMAIN [--ip IP] [--hostname H]
        one line per check, PASS / WARN / FAIL, with the record to publish
        when something is missing or wrong; exit status 1 on a FAIL
    mailplat dns records DOMAIN [--ip IP] [--hostname H]
        a zone-file snippet with every record the domain needs
"""

import ipaddress

from twisted.internet import defer
from twisted.internet.task import Clock

from mailplat.dns import NoSuchDomain, Resolver, TemporaryDNSError
from mailplat.trust.dnscheck import FAIL, DomainChecker, recordsFor
from mailplat.trust.keys import KeyStore


class DNSCommandError(Exception):
    pass


def _inThisThread(f, *args, **kwargs):
    return defer.maybeDeferred(f, *args, **kwargs)


def makeResolver(config):
    """
    A resolver with the config's name servers whose lookups run in the
    calling thread: the command has nothing else to do meanwhile.
    """
    return Resolver.fromConfig(config.dns, Clock(), _inThisThread)


def _wait(d):
    """
    The result of a Deferred that has fired (everything here is
    synchronous).
    """
    results = []
    d.addBoth(results.append)
    if not results:
        raise DNSCommandError("internal error: a lookup did not finish")
    if isinstance(results[0], defer.Failure):
        results[0].raiseException()
    return results[0]


def _options(config, ip, hostname):
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise DNSCommandError(f"{ip!r} is not an IP address") from None
    return ip, (hostname or config.hostname).lower().rstrip(".")


def check(config, domain, ip, hostname, out):
    """
    @return: the number of failed checks.
    """
    ip, hostname = _options(config, ip, hostname)
    domain = domain.lower().rstrip(".")
    keys = KeyStore(config.dkim.keyDir).keysFor(domain)
    checker = DomainChecker(makeResolver(config), hostname, ip, keys)
    findings = _wait(checker.check(domain))
    failed = 0
    for finding in findings:
        failed += finding.status == FAIL
        out.write(f"{finding.status.upper():<5} {finding.topic:<8} {finding.text}\n")
        for line in finding.publish:
            out.write(f"      publish: {line}\n")
    out.write(f"{domain}: {len(findings)} checks, {failed} failed\n")
    return failed


def records(config, domain, ip, hostname, out):
    ip, hostname = _options(config, ip, hostname)
    domain = domain.lower().rstrip(".")
    ips = [ip] if ip else []
    if not ips:
        try:
            ips = _wait(makeResolver(config).addresses(hostname))
        except (NoSuchDomain, TemporaryDNSError):
            ips = []
    keys = KeyStore(config.dkim.keyDir).keysFor(domain)
    for line in recordsFor(domain, hostname, ips, keys):
        out.write(line + "\n")
