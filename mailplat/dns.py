"""
The one resolver of mailplat (DESIGN.md section 3): dnspython, whose resolver
blocks, run off the reactor thread through C{runBlocking}; a cache that keeps
each answer for its TTL (negative answers for the SOA minimum, RFC 2308); and
MX resolution for outbound mail (RFC 5321 section 5.1, RFC 7505).

Every lookup returns a Deferred.  Failures are one of three kinds that
delivery treats differently:

    - L{NoSuchDomain}: NXDOMAIN, a permanent failure;
    - L{TemporaryDNSError}: SERVFAIL, REFUSED, a timeout: try again later;
    - L{NullMX}: the domain says it accepts no mail (RFC 7505).
"""

import ipaddress
import random
import threading
import time
from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

_NEGATIVE_TTL = 60.0
_MAX_TTL = 86400.0
_MAX_ENTRIES = 10000


class DNSError(Exception):
    """
    A lookup failed.  C{str(error)} says what, for logs and bounces.
    """


class TemporaryDNSError(DNSError):
    """
    The answer could not be had now (SERVFAIL, REFUSED, timeout): retry later.
    """


class NoSuchDomain(DNSError):
    """
    The name does not exist (NXDOMAIN): a permanent failure.
    """


class NullMX(DNSError):
    """
    The domain publishes a null MX (RFC 7505): it accepts no mail.
    """


class NoMailHosts(DNSError):
    """
    The domain exists but no host to deliver to could be found: no MX and no
    address records, or MX hosts that do not exist.  Permanent.
    """


@dataclass(frozen=True)
class RecordSet:
    """
    An answer: the records (as presentation text, e.g. C{"10 mx.example."}
    for MX or C{"192.0.2.1"} for A) of type C{rdtype} at the end of the CNAME
    chain starting at C{name}; empty when the name exists without such
    records (NODATA).
    """

    name: str
    rdtype: str
    canonical: str
    records: tuple
    ttl: float


@dataclass(frozen=True)
class MailHost:
    """
    One host to try for a domain: its name, MX preference and addresses (IPv4
    first).  C{implicit} is true when the domain had no MX records and its own
    address records are used (RFC 5321 section 5.1), and for address
    literals.
    """

    name: str
    preference: int
    addresses: tuple
    implicit: bool = False


def _normalize(name):
    return name.lower().rstrip(".")


def addressLiteral(domain):
    """
    @return: the IP address of an address literal such as C{"[192.0.2.1]"} or
        C{"[IPv6:2001:db8::1]"} (RFC 5321 section 4.1.3), or L{None} when
        C{domain} is a domain name.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
        version = 6
    else:
        version = 4
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        return None
    return str(address) if address.version == version else None


class DNSPythonQuery:
    """
    The blocking query function a L{Resolver} runs in a thread: dnspython's
    stub resolver, without its own cache and search list.

    @ivar nameservers: addresses to query; empty for the system's
        C{/etc/resolv.conf}.
    """

    def __init__(self, nameservers=(), port=53, timeout=5.0):
        self.nameservers = list(nameservers)
        self.port = port
        self.timeout = timeout
        self._resolver = None
        self._lock = threading.Lock()

    def _getResolver(self):
        import dns.resolver

        with self._lock:
            if self._resolver is None:
                if self.nameservers:
                    r = dns.resolver.Resolver(configure=False)
                    r.nameservers = list(self.nameservers)
                else:
                    r = dns.resolver.Resolver()
                r.port = self.port
                r.timeout = self.timeout
                r.lifetime = self.timeout
                r.cache = None
                self._resolver = r
            return self._resolver

    def __call__(self, name, rdtype):
        """
        I{blocking}.

        @return: a L{RecordSet}.
        @raise NoSuchDomain: NXDOMAIN.
        @raise TemporaryDNSError: anything else that is not an answer.
        """
        import dns.exception
        import dns.name
        import dns.resolver

        resolver = self._getResolver()
        try:
            answer = resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False,
                lifetime=self.timeout,
            )
        except dns.resolver.NXDOMAIN as e:
            raise NoSuchDomain(f"{name}: domain not found (NXDOMAIN)") from None
        except dns.exception.Timeout:
            raise TemporaryDNSError(f"{name} {rdtype}: DNS timeout") from None
        except dns.resolver.NoNameservers:
            raise TemporaryDNSError(
                f"{name} {rdtype}: DNS server failure (SERVFAIL)"
            ) from None
        except (dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong):
            raise NoSuchDomain(f"{name}: not a valid domain name") from None
        except dns.exception.DNSException as e:
            raise TemporaryDNSError(f"{name} {rdtype}: {e}") from None
        records = tuple(r.to_text() for r in answer.rrset) if answer.rrset else ()
        ttl = max(0.0, answer.expiration - time.time())
        return RecordSet(
            name=name,
            rdtype=rdtype,
            canonical=_normalize(answer.canonical_name.to_text()),
            records=records,
            ttl=ttl,
        )


class Resolver:
    """
    Non-blocking DNS lookups with a TTL-respecting cache.

    @ivar clock: an L{IReactorTime}, for cache expiry.
    @ivar runBlocking: C{f(callable, *args) -> Deferred}, running the blocking
        C{query} off the reactor thread.
    @ivar query: C{f(name, rdtype) -> RecordSet}, I{blocking}: raises
        L{NoSuchDomain} or L{TemporaryDNSError}.  A L{DNSPythonQuery} by
        default.
    """

    log = Logger()

    def __init__(self, clock, runBlocking, query=None, rng=None):
        self.clock = clock
        self.runBlocking = runBlocking
        self.query = query if query is not None else DNSPythonQuery()
        self.rng = rng if rng is not None else random.Random()
        self._cache = {}
        self._pending = {}

    @classmethod
    def fromConfig(cls, config, clock, runBlocking):
        """
        Build the resolver a L{mailplat.config.schema.DNSConfig} describes.
        """
        return cls(
            clock,
            runBlocking,
            DNSPythonQuery(config.nameservers, config.port, config.timeout),
        )

    # -- lookups

    def lookup(self, name, rdtype):
        """
        @return: a Deferred firing with a L{RecordSet}, or failing with
            L{NoSuchDomain} or L{TemporaryDNSError}.
        """
        key = (_normalize(name), rdtype.upper())
        now = self.clock.seconds()
        cached = self._cache.get(key)
        if cached is not None:
            expires, value = cached
            if now < expires:
                if isinstance(value, Exception):
                    return defer.fail(value)
                return defer.succeed(value)
            del self._cache[key]
        waiting = self._pending.get(key)
        if waiting is not None:
            d = defer.Deferred()
            waiting.append(d)
            return d
        self._pending[key] = waiting = []
        d = self.runBlocking(self.query, key[0], key[1])

        def store(value):
            if isinstance(value, RecordSet):
                ttl = min(value.ttl, _MAX_TTL)
            elif isinstance(value, NoSuchDomain):
                ttl = _NEGATIVE_TTL
            else:
                ttl = 0  # temporary failures are not cached
            if ttl > 0:
                self._remember(key, self.clock.seconds() + ttl, value)
            return value

        def finish(result):
            self._pending.pop(key, None)
            value = result.value if isinstance(result, defer.Failure) else result
            value = store(value)
            for other in waiting:
                if isinstance(value, Exception):
                    other.errback(value)
                else:
                    other.callback(value)
            return result

        d.addBoth(finish)
        return d

    def _remember(self, key, expires, value):
        if len(self._cache) >= _MAX_ENTRIES:
            now = self.clock.seconds()
            for k in [k for k, (e, _) in self._cache.items() if e <= now]:
                del self._cache[k]
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
        self._cache[key] = (expires, value)

    def lookupTXT(self, name):
        """
        The TXT records of C{name}, each one's strings joined (L{parseTXT}).

        @return: a Deferred firing with a L{list} of L{bytes} (empty for
            NODATA), or failing like L{Resolver.lookup}.
        """
        d = self.lookup(name, "TXT")
        d.addCallback(lambda answer: [parseTXT(r) for r in answer.records])
        return d

    def lookupPTR(self, address):
        """
        The host names the PTR records of C{address} name, lower case, without
        the final dot.

        @return: a Deferred firing with a L{list} of L{str} (empty for NODATA),
            or failing like L{Resolver.lookup}.
        """
        d = self.lookup(reverseName(address), "PTR")
        d.addCallback(lambda answer: [_normalize(r) for r in answer.records])
        return d

    @defer.inlineCallbacks
    def addresses(self, name):
        """
        The A and AAAA records of C{name} (CNAMEs followed), IPv4 first.

        @return: a Deferred firing with a L{list} of address strings (empty
            when the name has none), or failing with L{NoSuchDomain} or
            L{TemporaryDNSError} (when neither lookup succeeded).
        """
        results = yield defer.DeferredList(
            [self.lookup(name, "A"), self.lookup(name, "AAAA")],
            consumeErrors=True,
        )
        addresses, errors = [], []
        for ok, value in results:
            if ok:
                addresses.extend(value.records)
            else:
                errors.append(value.value)
        if not addresses and errors:
            temporary = [e for e in errors if isinstance(e, TemporaryDNSError)]
            raise (temporary or errors)[0]
        return addresses

    @defer.inlineCallbacks
    def resolveMX(self, domain):
        """
        Where to deliver mail for C{domain} (RFC 5321 section 5.1): its MX
        hosts by preference, in random order among equal preferences, each
        with its A and AAAA addresses; the domain's own addresses when it has
        no MX records; the address of an address literal.  MX hosts that have
        no address are left out.

        @return: a Deferred firing with a non-empty L{list} of L{MailHost}.
        @raise NullMX: the domain has a null MX (RFC 7505).
        @raise NoSuchDomain: the domain does not exist.
        @raise NoMailHosts: the domain exists but no host has an address.
        @raise TemporaryDNSError: try again later.
        """
        literal = addressLiteral(domain)
        if literal is not None:
            return [MailHost(domain, 0, (literal,), implicit=True)]
        mx = yield self.lookup(domain, "MX")
        if not mx.records:
            try:
                addresses = yield self.addresses(mx.canonical or domain)
            except NoSuchDomain:
                addresses = []
            if not addresses:
                raise NoMailHosts(f"{domain}: no MX and no address records")
            return [MailHost(_normalize(domain), 0, tuple(addresses), implicit=True)]
        entries = []
        for text in mx.records:
            preference, _, exchange = text.partition(" ")
            entries.append((int(preference), _normalize(exchange)))
        if any(exchange == "" for _, exchange in entries):
            real = [e for e in entries if e[1] != ""]
            if not real:
                raise NullMX(f"{domain}: the domain accepts no mail (null MX)")
            entries = real  # RFC 7505 3: a null MX must stand alone
        byPreference = {}
        for preference, exchange in entries:
            byPreference.setdefault(preference, []).append(exchange)
        ordered = []
        for preference in sorted(byPreference):
            names = sorted(set(byPreference[preference]))
            self.rng.shuffle(names)
            ordered += [(preference, name) for name in names]
        lookups = yield defer.DeferredList(
            [self.addresses(name) for _, name in ordered], consumeErrors=True
        )
        hosts, temporary, permanent = [], [], []
        for (preference, name), (ok, value) in zip(ordered, lookups):
            if ok and value:
                hosts.append(MailHost(name, preference, tuple(value)))
            elif ok or value.check(NoSuchDomain):
                permanent.append(name)
            else:
                temporary.append(str(value.value))
        if not hosts:
            if temporary:
                raise TemporaryDNSError(temporary[0])
            raise NoMailHosts(
                f"{domain}: MX host(s) {', '.join(permanent)} have no address"
            )
        return hosts


# -- TXT and PTR (sender authentication: SPF, DKIM, DMARC, iprev)


def parseTXT(text):
    """
    The data of one TXT record given in presentation format (as
    L{RecordSet.records} holds it, e.g. C{'"v=spf1 " "-all"'}): its
    character-strings decoded (C{\\"}, C{\\\\}, C{\\DDD}) and joined without
    separators, as SPF (RFC 7208 section 3.3), DKIM (RFC 6376 section 3.6.2.2)
    and DMARC read them.

    @return: L{bytes}.
    """
    out = bytearray()
    data = text.encode("utf-8", "surrogateescape")
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c in b" \t":
            i += 1
            continue
        quoted = c == 0x22
        if quoted:
            i += 1
        while i < n:
            c = data[i]
            if quoted and c == 0x22:
                i += 1
                break
            if not quoted and c in b" \t":
                break
            if c == 0x5C and i + 1 < n:
                digits = data[i + 1:i + 4]
                if len(digits) == 3 and digits.isdigit():
                    out.append(int(digits) & 0xFF)
                    i += 4
                    continue
                out.append(data[i + 1])
                i += 2
                continue
            out.append(c)
            i += 1
    return bytes(out)


def reverseName(address):
    """
    The name whose PTR records map C{address} back to host names: under
    C{in-addr.arpa} (RFC 1035 section 3.5) or C{ip6.arpa} (RFC 3596
    section 2.5).

    @raise ValueError: C{address} is not an IP address.
    """
    ip = ipaddress.ip_address(address)
    return ip.reverse_pointer
