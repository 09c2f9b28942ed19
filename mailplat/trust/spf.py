"""
SPF (RFC 7208): C{check_host()} over the one resolver.

Written against the RFC rather than on pyspf (docs/trust.md says why): every
lookup is a Deferred from L{mailplat.dns.Resolver}, so an evaluation holds no
thread while it waits, shares the resolver's TTL cache with every other
session and with delivery, and uses the configured name servers.  It passes
every case of the RFC 7208 test suite (tests/data/rfc7208-tests.yml).

    checker = SPFChecker(resolver, receiver="mx.example.org")
    d = checker.checkHost("192.0.2.1", "example.com", "user@example.com",
                          helo="mail.example.com")
    # fires with an SPFResult: result, explanation, problem, mechanism
"""

import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, replace

from twisted.internet import defer

from mailplat.dns import NoSuchDomain, TemporaryDNSError

NONE = "none"
NEUTRAL = "neutral"
PASS = "pass"
FAIL = "fail"
SOFTFAIL = "softfail"
TEMPERROR = "temperror"
PERMERROR = "permerror"
RESULTS = (NONE, NEUTRAL, PASS, FAIL, SOFTFAIL, TEMPERROR, PERMERROR)

QUALIFIERS = {"+": PASS, "-": FAIL, "~": SOFTFAIL, "?": NEUTRAL}
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")

# RFC 7208 section 4.6.4.
MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX = 10
MAX_PTR = 10


@dataclass(frozen=True)
class SPFResult:
    """
    The outcome of C{check_host()}.

    @ivar result: one of L{RESULTS} (RFC 7208 section 2.6).
    @ivar domain: the domain checked.
    @ivar sender: the sender checked (C{postmaster@HELO} for the HELO
        identity and the null reverse path, RFC 7208 section 2.4).
    @ivar mechanism: the mechanism that matched (or C{redirect=...},
        C{default}), for logs.
    @ivar explanation: for C{fail}, the domain's explanation (the C{exp}
        modifier, RFC 7208 section 6.2), or L{None}.
    @ivar problem: for C{permerror} and C{temperror}, what went wrong.
    """

    result: str
    domain: str
    sender: str
    mechanism: str = None
    explanation: str = None
    problem: str = None
    lookups: int = 0


class PermError(Exception):
    """
    A permanent error: the result is C{permerror}.
    """


class TempError(Exception):
    """
    A transient DNS error: the result is C{temperror}.
    """


# -- syntax (RFC 7208 section 12)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.S)
_MECHANISM = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9_.\-]*)(.*)", re.S)
_DUAL_CIDR = re.compile(r"(?:/(0|[1-9][0-9]{0,2}))?(?://(0|[1-9][0-9]{0,2}))?$")
_TOPLABEL = re.compile(
    r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])\.?$"
)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"{_QNUM}\.{_QNUM}\.{_QNUM}\.{_QNUM}$")
_MACRO_LETTERS = "slodiphcrtv"
_EXP_ONLY = "crt"
_DELIMITERS = ".-+,/_="


@dataclass(frozen=True)
class MacroExpand:
    """
    One C{%{...}} of a macro-string (RFC 7208 section 7.1).
    """

    letter: str
    digits: int
    reverse: bool
    delimiters: str
    escape: bool


def parseMacroString(text, explain=False):
    """
    Parse a macro-string (or, with C{explain}, an explain-string that may
    contain spaces and the C{c}, C{r} and C{t} macros).

    @return: a list of L{str} literals and L{MacroExpand}.
    @raise PermError: it is not valid.
    """
    tokens = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            nxt = text[i + 1:i + 2]
            if nxt == "%":
                tokens.append("%")
                i += 2
            elif nxt == "_":
                tokens.append(" ")
                i += 2
            elif nxt == "-":
                tokens.append("%20")
                i += 2
            elif nxt == "{":
                end = text.find("}", i)
                if end < 0:
                    raise PermError(f"unterminated macro in {text!r}")
                m = re.match(r"([A-Za-z])([0-9]*)(r?)([.\-+,/_=]*)$", text[i + 2:end], re.I)
                if m is None or m.group(1).lower() not in _MACRO_LETTERS:
                    raise PermError(f"bad macro %{{{text[i + 2:end]}}}")
                letter = m.group(1)
                if letter.lower() in _EXP_ONLY and not explain:
                    raise PermError(f"macro %{{{letter}}} is only allowed in exp")
                digits = int(m.group(2)) if m.group(2) else 0
                if m.group(2) and digits == 0:
                    raise PermError("a macro's digit transformer must not be zero")
                tokens.append(
                    MacroExpand(
                        letter.lower(), digits, bool(m.group(3)),
                        m.group(4) or ".", letter.isupper(),
                    )
                )
                i = end + 1
            else:
                raise PermError(f"bad macro in {text!r}")
            continue
        if not ("\x21" <= c <= "\x7e" or (explain and c == " ")):
            raise PermError(f"invalid character {c!r}")
        j = i
        while j < n and text[j] != "%" and ("\x21" <= text[j] <= "\x7e" or (explain and text[j] == " ")):
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def parseDomainSpec(text):
    """
    Parse a domain-spec: a macro-string ending in a macro or in
    C{"." toplabel ["."]} (RFC 7208 section 7.1).

    @raise PermError: it is not valid.
    """
    tokens = parseMacroString(text)
    if not tokens:
        raise PermError("empty domain-spec")
    last = tokens[-1]
    if isinstance(last, MacroExpand) or (
        len(tokens) > 1 and last in ("%", " ", "%20") and text.endswith(("%%", "%_", "%-"))
    ):
        return tokens
    literal = last
    dot = literal.rstrip(".").rfind(".")
    if dot < 0 or not _TOPLABEL.match(literal[dot + 1:]):
        raise PermError(f"{text!r} does not end in a top-level domain")
    return tokens


@dataclass(frozen=True)
class Mechanism:
    qualifier: str
    name: str
    domainSpec: tuple = None
    cidr4: int = 32
    cidr6: int = 128
    network: object = None
    text: str = ""


@dataclass(frozen=True)
class Record:
    """
    A parsed SPF record: its mechanisms in order, C{redirect} and C{exp}
    (domain-specs or L{None}).
    """

    mechanisms: tuple
    redirect: tuple = None
    exp: tuple = None


def parseRecord(text):
    """
    Parse an SPF record (including its C{v=spf1} version section).  Any
    syntax error makes the whole record a permerror (RFC 7208 section 4.6).

    @raise PermError: it is not valid.
    """
    if not isSPFRecord(text):
        raise PermError("not an SPF record")
    mechanisms, redirect, exp = [], None, None
    for term in text[6:].split(" "):
        if term == "":
            continue
        m = _MODIFIER.match(term)
        if m is not None:
            name, value = m.group(1).lower(), m.group(2)
            if name == "redirect":
                if redirect is not None:
                    raise PermError("more than one redirect modifier")
                redirect = tuple(parseDomainSpec(value))
            elif name == "exp":
                if exp is not None:
                    raise PermError("more than one exp modifier")
                exp = tuple(parseDomainSpec(value))
            else:
                parseMacroString(value)  # unknown modifiers: syntax only
            continue
        m = _MECHANISM.match(term)
        if m is None:
            raise PermError(f"bad term {term!r}")
        mechanisms.append(_parseMechanism(m.group(1) or "+", m.group(2).lower(), m.group(3), term))
    return Record(tuple(mechanisms), redirect, exp)


def _parseMechanism(qualifier, name, rest, term):
    if name not in MECHANISMS:
        raise PermError(f"unknown mechanism {term!r}")
    if name == "all":
        if rest:
            raise PermError(f"bad term {term!r}")
        return Mechanism(qualifier, name, text=term)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise PermError(f"{name} needs a domain: {term!r}")
        return Mechanism(qualifier, name, tuple(parseDomainSpec(rest[1:])), text=term)
    if name == "ptr":
        spec = None
        if rest:
            if not rest.startswith(":"):
                raise PermError(f"bad term {term!r}")
            spec = tuple(parseDomainSpec(rest[1:]))
        return Mechanism(qualifier, name, spec, text=term)
    if name in ("a", "mx"):
        m = _DUAL_CIDR.search(rest)
        cidr4 = int(m.group(1)) if m.group(1) else 32
        cidr6 = int(m.group(2)) if m.group(2) else 128
        if cidr4 > 32 or cidr6 > 128:
            raise PermError(f"bad CIDR length in {term!r}")
        rest = rest[:m.start()]
        spec = None
        if rest:
            if not rest.startswith(":"):
                raise PermError(f"bad term {term!r}")
            spec = tuple(parseDomainSpec(rest[1:]))
        return Mechanism(qualifier, name, spec, cidr4, cidr6, text=term)
    # ip4 / ip6
    if not rest.startswith(":"):
        raise PermError(f"{name} needs a network: {term!r}")
    address, slash, length = rest[1:].partition("/")
    if slash and not re.fullmatch(r"0|[1-9][0-9]{0,2}", length):
        raise PermError(f"bad CIDR length in {term!r}")
    try:
        if name == "ip4":
            if not _IP4.match(address):
                raise ValueError(address)
            network = ipaddress.IPv4Network(f"{address}/{length or 32}", strict=False)
        else:
            if "." in address.rpartition(":")[2] and not _IP4.match(address.rpartition(":")[2]):
                raise ValueError(address)
            network = ipaddress.IPv6Network(f"{address}/{length or 128}", strict=False)
    except ValueError:
        raise PermError(f"bad network in {term!r}") from None
    return Mechanism(qualifier, name, network=network, text=term)


def isSPFRecord(text):
    """
    Whether a TXT record's text is an SPF record: it starts with the
    version section C{v=spf1}, ended by a space or the record's end
    (RFC 7208 section 4.5).
    """
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


def validDomain(domain):
    """
    Whether C{domain} can be checked: a multi-label name with labels of 1
    to 63 octets, at most 253 in all (RFC 7208 section 4.3).
    """
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or len(name) > 253 or "." not in name:
        return False
    if name.startswith("[") or any(not 0 < len(l) < 64 for l in name.split(".")):
        return False
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        return True


def _lookupName(name):
    """
    The name to query for an expanded domain-spec: truncated from the left
    to 253 characters (RFC 7208 section 7.3); L{None} when it is not a name
    DNS can hold (a lookup of it is void).
    """
    name = name.rstrip(".")
    labels = name.split(".")
    while len(".".join(labels)) > 253:
        labels.pop(0)
    if not labels or any(not 0 < len(l) < 64 for l in labels):
        return None
    return ".".join(labels)


class _Session:
    """
    The state of one C{check_host()} evaluation and the ones it starts
    (include, redirect): the connecting address, the sender, and the counts
    that RFC 7208 section 4.6.4 limits.
    """

    def __init__(self, ip, sender, helo, receiver):
        self.ip = ip
        self.sender = sender
        local, _, domain = sender.rpartition("@")
        self.local = local or "postmaster"
        self.senderDomain = domain
        if not local:
            self.sender = f"postmaster@{domain}"
        self.helo = helo or ""
        self.receiver = receiver
        self.lookups = 0
        self.voids = 0
        self.validatedName = None

    def count(self):
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise PermError(f"more than {MAX_LOOKUPS} DNS lookups")

    def void(self):
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise PermError(f"more than {MAX_VOID_LOOKUPS} void DNS lookups")


class SPFChecker:
    """
    Evaluates SPF records (RFC 7208) with a L{mailplat.dns.Resolver}.

    @ivar receiver: the receiving host's name, for the C{%{r}} macro.
    @ivar now: C{f() -> float}, for the C{%{t}} macro.
    """

    def __init__(self, resolver, receiver="unknown", now=time.time):
        self.resolver = resolver
        self.receiver = receiver
        self.now = now

    def checkHost(self, ip, domain, sender, helo=None):
        """
        C{check_host()} of RFC 7208 section 4.

        @param ip: the client's IP address (an IPv4-mapped IPv6 address is
            checked as IPv4).
        @param domain: the domain to check (the MAIL FROM domain, or the
            HELO name).
        @param sender: the MAIL FROM address, or C{postmaster@HELO}.
        @return: a Deferred firing with an L{SPFResult}; it never fails.
        """
        address = ipaddress.ip_address(ip)
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        session = _Session(address, sender, helo, self.receiver)
        domain = domain.rstrip(".").lower()
        if not validDomain(domain):
            return defer.succeed(SPFResult(NONE, domain, session.sender, problem="not a valid domain name"))
        d = self._checkHost(session, domain)
        d.addErrback(self._error, domain, session)
        d.addCallback(lambda result: replace(result, lookups=session.lookups))
        return d

    def _error(self, failure, domain, session):
        if failure.check(PermError):
            return SPFResult(PERMERROR, domain, session.sender, problem=str(failure.value))
        if failure.check(TempError):
            return SPFResult(TEMPERROR, domain, session.sender, problem=str(failure.value))
        return failure

    @defer.inlineCallbacks
    def _fetchRecord(self, domain):
        """
        @return: the parsed L{Record} of C{domain}, or L{None} when it has
            none (the result is C{none}).
        @raise PermError: several records, or a record that does not parse.
        @raise TempError: the lookup failed.
        """
        try:
            texts = yield self.resolver.lookupTXT(domain)
        except NoSuchDomain:
            return None
        except TemporaryDNSError as e:
            raise TempError(str(e)) from None
        records = [t for t in texts if t[:6].lower() == b"v=spf1" and t[6:7] in (b"", b" ")]
        if not records:
            return None
        if len(records) > 1:
            raise PermError(f"{domain} has {len(records)} SPF records")
        try:
            text = records[0].decode("ascii")
        except UnicodeDecodeError:
            raise PermError(f"{domain}: the SPF record is not ASCII") from None
        return parseRecord(text)

    @defer.inlineCallbacks
    def _checkHost(self, session, domain):
        record = yield self._fetchRecord(domain)
        if record is None:
            return SPFResult(NONE, domain, session.sender, problem=f"{domain}: no SPF record")
        for mechanism in record.mechanisms:
            matched = yield self._matches(session, mechanism, domain)
            if matched:
                result = QUALIFIERS[mechanism.qualifier]
                explanation = None
                if result == FAIL and record.exp is not None:
                    explanation = yield self._explain(session, record.exp, domain)
                return SPFResult(result, domain, session.sender, mechanism.text, explanation)
        if record.redirect is not None:
            session.count()
            target = _lookupName((yield self._expand(session, record.redirect, domain)))
            if target is None or not validDomain(target):
                raise PermError("redirect to an invalid domain")
            result = yield self._checkHost(session, target.lower())
            if result.result == NONE:
                raise PermError(f"redirect to {target}, which has no SPF record")
            return SPFResult(
                result.result, domain, session.sender,
                f"redirect={target}: {result.mechanism}", result.explanation, result.problem,
            )
        return SPFResult(NEUTRAL, domain, session.sender, "default")

    # -- mechanisms (RFC 7208 section 5)

    @defer.inlineCallbacks
    def _target(self, session, mechanism, domain):
        if mechanism.domainSpec is None:
            return domain
        return _lookupName((yield self._expand(session, mechanism.domainSpec, domain)))

    @defer.inlineCallbacks
    def _addresses(self, session, name, counted=True):
        """
        The addresses of C{name} of the client's address family.

        @raise TempError: on DNS failure.
        """
        rdtype = "A" if session.ip.version == 4 else "AAAA"
        if name is None:
            session.void()
            return []
        try:
            answer = yield self.resolver.lookup(name, rdtype)
        except NoSuchDomain:
            if counted:
                session.void()
            return []
        except TemporaryDNSError as e:
            raise TempError(str(e)) from None
        if not answer.records and counted:
            session.void()
        out = []
        for r in answer.records:
            try:
                out.append(ipaddress.ip_address(r))
            except ValueError:
                continue
        return out

    def _inNetwork(self, session, addresses, mechanism):
        length = mechanism.cidr4 if session.ip.version == 4 else mechanism.cidr6
        for address in addresses:
            if address.version != session.ip.version:
                continue
            network = ipaddress.ip_network(f"{address}/{length}", strict=False)
            if session.ip in network:
                return True
        return False

    @defer.inlineCallbacks
    def _matches(self, session, mechanism, domain):
        name = mechanism.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            return session.ip.version == mechanism.network.version and session.ip in mechanism.network
        session.count()
        target = yield self._target(session, mechanism, domain)
        if name == "a":
            addresses = yield self._addresses(session, target)
            return self._inNetwork(session, addresses, mechanism)
        if name == "mx":
            return (yield self._matchMX(session, target, mechanism))
        if name == "exists":
            return bool((yield self._voidCounted(session, target, "A")))
        if name == "include":
            if target is None or not validDomain(target):
                raise PermError("include of an invalid domain")
            result = yield self._checkHost(session, target.lower())
            if result.result == PASS:
                return True
            if result.result in (FAIL, SOFTFAIL, NEUTRAL):
                return False
            if result.result == TEMPERROR:
                raise TempError(result.problem or f"include:{target}: temperror")
            raise PermError(result.problem or f"include:{target}: {result.result}")
        if name == "ptr":
            names = yield self._validatedNames(session, counted=True)
            if target is None:
                return False
            target = target.lower()
            return any(n == target or n.endswith("." + target) for n in names)
        raise PermError(f"unknown mechanism {name}")

    @defer.inlineCallbacks
    def _voidCounted(self, session, target, rdtype):
        """
        Look C{target} up; an empty answer or NXDOMAIN counts as a void
        lookup (RFC 7208 4.6.4).

        @return: a Deferred firing with the records (empty when void).
        """
        if target is None:
            session.void()
            return []
        try:
            answer = yield self.resolver.lookup(target, rdtype)
        except NoSuchDomain:
            session.void()
            return []
        except TemporaryDNSError as e:
            raise TempError(str(e)) from None
        if not answer.records:
            session.void()
        return answer.records

    @defer.inlineCallbacks
    def _matchMX(self, session, target, mechanism):
        records = yield self._voidCounted(session, target, "MX")
        if not records:
            return False
        if len(records) > MAX_MX:
            raise PermError(f"{target} has more than {MAX_MX} MX records")
        hosts = []
        for text in records:
            host = text.partition(" ")[2].rstrip(".").lower()
            if host and host not in hosts:
                hosts.append(host)
        for host in hosts:
            addresses = yield self._addresses(session, _lookupName(host))
            if self._inNetwork(session, addresses, mechanism):
                return True
        return False

    @defer.inlineCallbacks
    def _validatedNames(self, session, counted=False):
        """
        The client's validated host names (RFC 7208 section 5.5): PTR names
        whose addresses include the client's.  DNS errors give no names.
        """
        try:
            names = yield self.resolver.lookupPTR(str(session.ip))
        except (NoSuchDomain, TemporaryDNSError):
            if counted:
                session.void()
            return []
        if not names and counted:
            session.void()
        validated = []
        for name in names[:MAX_PTR]:
            try:
                addresses = yield self._addresses(session, _lookupName(name), counted=False)
            except TempError:
                continue
            if session.ip in addresses:
                validated.append(name)
        return validated

    # -- macros (RFC 7208 section 7)

    @defer.inlineCallbacks
    def _expand(self, session, tokens, domain, explain=False):
        out = []
        for token in tokens:
            if isinstance(token, str):
                out.append(token)
                continue
            value = yield self._macroValue(session, token.letter, domain)
            parts = re.split("[" + re.escape(token.delimiters) + "]", value)
            if token.reverse:
                parts.reverse()
            if token.digits:
                parts = parts[-token.digits:]
            value = ".".join(parts)
            if token.escape:
                value = urllib.parse.quote(value, safe="-._~")
            out.append(value)
        return "".join(out)

    @defer.inlineCallbacks
    def _macroValue(self, session, letter, domain):
        ip = session.ip
        if letter == "s":
            return session.sender
        if letter == "l":
            return session.local
        if letter == "o":
            return session.senderDomain
        if letter == "d":
            return domain
        if letter == "i":
            if ip.version == 4:
                return str(ip)
            return ".".join(ip.exploded.replace(":", "").upper())
        if letter == "v":
            return "in-addr" if ip.version == 4 else "ip6"
        if letter == "h":
            return session.helo
        if letter == "c":
            return str(ip)
        if letter == "r":
            return session.receiver or "unknown"
        if letter == "t":
            return str(int(self.now()))
        if letter == "p":
            if session.validatedName is None:
                names = yield self._validatedNames(session)
                chosen = "unknown"
                for name in names:
                    if name == domain or name.endswith("." + domain):
                        chosen = name
                        break
                else:
                    if names:
                        chosen = names[0]
                session.validatedName = chosen
            return session.validatedName
        raise PermError(f"unknown macro {letter}")

    @defer.inlineCallbacks
    def _explain(self, session, expSpec, domain):
        """
        The explanation of a C{fail} (RFC 7208 section 6.2), or L{None} when
        there is none or it cannot be had; its lookups do not count against
        the limits.
        """
        try:
            name = _lookupName((yield self._expand(session, expSpec, domain)))
            if name is None:
                return None
            texts = yield self.resolver.lookupTXT(name)
            if len(texts) != 1:
                return None
            text = texts[0].decode("ascii")
            tokens = parseMacroString(text, explain=True)
            return (yield self._expand(session, tokens, domain, explain=True))
        except (PermError, TempError, NoSuchDomain, TemporaryDNSError, UnicodeDecodeError):
            return None
