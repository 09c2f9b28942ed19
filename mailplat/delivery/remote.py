"""
Remote delivery over SMTP: to the recipient domain's MX hosts
(L{MXRoute}), or through a configured smarthost (L{SmarthostRoute}).

Recipients are grouped by destination (the domain, or the smarthost).  Each
destination has at most C{max_per_destination} connections; a connection
that has sent one message takes the next one queued for the same destination
(and waits C{connection_idle} seconds for one) before it says QUIT, up to
C{max_messages_per_connection} messages.

Opening a connection tries the destination's hosts in order (MX preference,
then each address): a connection failure, a 4xx/5xx greeting or a failed TLS
handshake moves on to the next one (RFC 5321 5.1).  A session that breaks in
the middle of a transaction gives the recipients of that message a "deferred"
result; the runner retries them later.
"""

import collections
import ipaddress

from twisted.internet import defer, ssl
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.logger import Logger
from zope.interface import implementer

from mailplat.delivery.session import SessionError, SMTPSession, Timeouts
from mailplat.delivery.smtpclient import SMTPClientProtocol
from mailplat.dns import (
    NoMailHosts,
    NoSuchDomain,
    NullMX,
    TemporaryDNSError,
)
from mailplat.interfaces import IDeliveryTarget
from mailplat.queue.envelope import DEFERRED, FAILED, DeliveryResult

#: At most this many addresses are tried for one destination per attempt.
MAX_ADDRESSES = 10


class RouteError(Exception):
    """
    No host to try: every recipient of the destination gets this result.
    """

    def __init__(self, state, status, detail, relay="none"):
        Exception.__init__(self, detail)
        self.state = state
        self.status = status
        self.detail = detail
        self.relay = relay


class Candidate:
    """
    One address to try: host name, IP address, port, TLS policy.
    """

    def __init__(self, host, address, port, tlsMode):
        self.host = host
        self.address = address
        self.port = port
        self.tlsMode = tlsMode

    def __repr__(self):
        return f"{self.host}[{self.address}]:{self.port}"


class MXRoute:
    """
    Delivery to the recipient domain's MX hosts (RFC 5321 5.1).

    @ivar resolver: a L{mailplat.dns.Resolver}.
    @ivar hostname: ours: an MX host with this name is us.
    @ivar port: the SMTP port of MX hosts.
    @ivar policyFor: C{f(domain) -> tls mode}.
    """

    name = "smtp"
    auth = None

    def __init__(self, resolver, hostname, port=25, policyFor=lambda d: "may"):
        self.resolver = resolver
        self.hostname = hostname.lower()
        self.port = port
        self.policyFor = policyFor

    def destination(self, domain):
        return domain.lower().rstrip(".")

    @property
    def loopNames(self):
        return (self.hostname,)

    @defer.inlineCallbacks
    def candidates(self, domain):
        """
        @return: a Deferred firing with a list of L{Candidate}s.
        @raise RouteError: nowhere to go.
        """
        try:
            hosts = yield self.resolver.resolveMX(domain)
        except NullMX:
            raise RouteError(
                FAILED, "5.1.10",
                f"recipient domain {domain} does not accept mail (null MX, "
                "RFC 7505)",
            )
        except NoSuchDomain:
            raise RouteError(
                FAILED, "5.1.2",
                f"Host or domain name not found. Name service error for "
                f"name={domain} type=MX: Host not found",
            )
        except NoMailHosts as e:
            raise RouteError(FAILED, "5.4.4", f"no mail host for {domain}: {e}")
        except TemporaryDNSError as e:
            raise RouteError(
                DEFERRED, "4.4.3",
                f"Host or domain name lookup failed: {e} (will retry)",
            )
        # RFC 5321 5.1: when we are one of the MX hosts, only hosts with a
        # better (lower) preference may be used.
        mine = [h.preference for h in hosts if h.name == self.hostname]
        if mine:
            hosts = [h for h in hosts if h.preference < min(mine)]
            if not hosts:
                raise RouteError(
                    FAILED, "5.4.6",
                    f"mail for {domain} loops back to myself ({self.hostname} "
                    "is its best MX host)",
                )
        mode = self.policyFor(domain)
        out = []
        for h in hosts:
            for a in h.addresses:
                out.append(Candidate(h.name, a, self.port, mode))
        return out[:MAX_ADDRESSES]


class SmarthostRoute:
    """
    Delivery of all (or some domains') mail through one relay host, found
    by its address records (never its MX), with AUTH and required TLS if
    configured.
    """

    name = "smarthost"

    def __init__(self, resolver, host, port, tlsMode="encrypt", domains=(), auth=None):
        self.resolver = resolver
        self.host = host
        self.port = port
        self.tlsMode = tlsMode
        self.domains = tuple(domains)
        self.auth = auth

    def handles(self, domain):
        domain = domain.lower().rstrip(".")
        return not self.domains or domain in self.domains

    def destination(self, domain):
        return "smarthost"

    loopNames = ()

    @defer.inlineCallbacks
    def candidates(self, domain):
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            pass
        else:
            return [Candidate(self.host, self.host, self.port, self.tlsMode)]
        try:
            addresses = yield self.resolver.addresses(self.host)
        except TemporaryDNSError as e:
            raise RouteError(DEFERRED, "4.4.3", f"smarthost lookup failed: {e}")
        except NoSuchDomain:
            addresses = []
        if not addresses:
            raise RouteError(
                DEFERRED, "4.4.3", f"smarthost {self.host} has no address records"
            )
        return [Candidate(self.host, a, self.port, self.tlsMode) for a in addresses][
            :MAX_ADDRESSES
        ]


class _Request:
    def __init__(self, item, recipients):
        self.item = item
        self.recipients = recipients
        self.deferred = defer.Deferred()


class _Destination:
    """
    The messages waiting for one destination and the connections serving it.
    """

    def __init__(self, target, key, domain):
        self.target = target
        self.key = key
        self.domain = domain
        self.queue = collections.deque()
        self.workers = 0
        self.idle = []

    def submit(self, item, recipients):
        request = _Request(item, recipients)
        self.queue.append(request)
        self._dispatch()
        return request.deferred

    def _dispatch(self):
        while self.queue and self.idle:
            waiter, timer = self.idle.pop()
            if timer.active():
                timer.cancel()
            waiter.callback(self.queue.popleft())
        while self.queue and self.workers < self.target.maxPerDestination:
            self.workers += 1
            request = self.queue.popleft()
            d = self._work(request)
            d.addErrback(
                lambda f: self.target.log.failure("smtp: delivery worker failed", f)
            )

    def _waitForWork(self):
        if self.queue:
            return defer.succeed(self.queue.popleft())
        d = defer.Deferred()
        entry = None

        def expire():
            self.idle.remove(entry)
            d.callback(None)

        timer = self.target.clock.callLater(self.target.connectionIdle, expire)
        entry = (d, timer)
        self.idle.append(entry)
        return d

    @defer.inlineCallbacks
    def _work(self, request):
        try:
            try:
                session = yield self.target.openSession(self.domain)
            except (RouteError, SessionError) as e:
                relay = getattr(e, "relay", None) or "none"
                self._failAll(request, e.state, e.status, e.detail, relay)
                return
            while request is not None:
                try:
                    results = yield session.send(request.item, request.recipients)
                except Exception as e:
                    self.target.log.failure("smtp: send failed")
                    results = {
                        r.address: DeliveryResult(
                            DEFERRED, "4.3.0", f"internal error: {e}", session.relay
                        )
                        for r in request.recipients
                    }
                    session.broken = True
                request.deferred.callback(results)
                request = None
                if (
                    not session.usable
                    or session.messages >= self.target.maxMessagesPerConnection
                ):
                    break
                request = yield self._waitForWork()
            yield session.quit()
        finally:
            self.workers -= 1
            if request is not None and not request.deferred.called:
                self.queue.appendleft(request)
            self.target._maybeForget(self)
            self._dispatch()

    def _failAll(self, request, state, status, detail, relay):
        """
        The destination cannot be reached now: the request and the requests
        waiting behind it (which would fail the same way) get this result,
        unless another connection is still serving them.
        """
        requests = [request]
        if self.workers <= 1:
            requests += list(self.queue)
            self.queue.clear()
        for r in requests:
            r.deferred.callback(
                {
                    rcpt.address: DeliveryResult(state, status, detail, relay)
                    for rcpt in r.recipients
                }
            )


@implementer(IDeliveryTarget)
class RemoteDelivery:
    """
    The delivery target for recipients outside our domains, over SMTP.

    @ivar route: an L{MXRoute} or L{SmarthostRoute}.
    @ivar accepts: see L{IDeliveryTarget}.
    @ivar connect: C{f(address, port) -> Deferred} firing with a connected
        L{SMTPClientProtocol} (real TCP by default; a fake in unit tests).
    """

    log = Logger()

    def __init__(
        self,
        route,
        isLocalDomain,
        clock,
        runBlocking,
        heloName,
        connect=None,
        connectTimeout=30.0,
        maxPerDestination=5,
        maxMessagesPerConnection=100,
        connectionIdle=2.0,
        caFile=None,
        timeouts=Timeouts(),
    ):
        self.route = route
        self.name = route.name
        self.isLocalDomain = isLocalDomain
        self.clock = clock
        self.runBlocking = runBlocking
        self.heloName = heloName
        self.connectTimeout = connectTimeout
        self.maxPerDestination = maxPerDestination
        self.maxMessagesPerConnection = maxMessagesPerConnection
        self.connectionIdle = connectionIdle
        self.caFile = caFile
        self.timeouts = timeouts
        self.connect = connect if connect is not None else self._connectTCP
        self._destinations = {}
        self._trustRoot = None

    # -- IDeliveryTarget

    def accepts(self, recipient):
        domain = recipient.rpartition("@")[2]
        if not domain or self.isLocalDomain(domain):
            return False
        handles = getattr(self.route, "handles", None)
        return handles is None or handles(domain)

    def deliver(self, item, recipients):
        byAddress = {r.address: r for r in item.envelope.recipients}
        groups, domains = {}, {}
        for address in recipients:
            domain = address.rpartition("@")[2].lower()
            key = self.route.destination(domain)
            domains.setdefault(key, domain)
            groups.setdefault(key, []).append(byAddress[address])
        attempts = []
        for key, rcpts in groups.items():
            domain = domains[key]
            destination = self._destinations.get(key)
            if destination is None:
                destination = self._destinations[key] = _Destination(
                    self, key, domain
                )
            attempts.append(destination.submit(item, rcpts))
        d = defer.gatherResults(attempts, consumeErrors=True)

        def merge(outcomes):
            merged = {}
            for outcome in outcomes:
                merged.update(outcome)
            return merged

        return d.addCallback(merge)

    def _maybeForget(self, destination):
        if (
            not destination.queue
            and not destination.workers
            and self._destinations.get(destination.key) is destination
        ):
            del self._destinations[destination.key]

    # -- connections

    def _connectTCP(self, address, port):
        from twisted.internet import reactor

        cls = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = cls(reactor, address, port, timeout=self.connectTimeout)
        return connectProtocol(endpoint, SMTPClientProtocol(self.clock))

    def _tlsOptions(self, mode):
        """
        @return: C{f(host) -> Deferred} of a TLS client connection creator:
            unverified for C{may} and C{encrypt} (opportunistic TLS, RFC
            7435), checking the certificate against C{host} for C{verify}.
        """

        @defer.inlineCallbacks
        def make(host):
            if mode != "verify":
                return ssl.CertificateOptions(
                    verify=False, raiseMinimumTo=ssl.TLSVersion.TLSv1_2
                )
            if self.caFile and self._trustRoot is None:
                data = yield self.runBlocking(_readFile, self.caFile)
                self._trustRoot = ssl.trustRootFromCertificates(
                    [ssl.Certificate.loadPEM(pem) for pem in _splitPEM(data)]
                )
            trust = self._trustRoot if self.caFile else ssl.platformTrust()
            return ssl.optionsForClientTLS(host, trustRoot=trust)

        return make

    @defer.inlineCallbacks
    def openSession(self, domain):
        """
        Find the destination's hosts and open a session with the first that
        works.

        @return: a Deferred firing with an opened L{SMTPSession}.
        @raise RouteError: no host to try (DNS).
        @raise SessionError: every host failed; the last failure.
        """
        candidates = yield self.route.candidates(domain)
        last = None
        auth = None
        if self.route.auth is not None:
            auth = yield self.route.auth()
        for c in candidates:
            try:
                protocol = yield self.connect(c.address, c.port)
            except Exception as e:
                last = SessionError(
                    DEFERRED, "4.4.1", f"connect to {c.host}[{c.address}]:{c.port}: "
                    + _connectError(e)
                )
                last.relay = f"{c.host}[{c.address}]:{c.port}"
                self.log.info("smtp: {detail}", detail=last.detail)
                continue
            session = SMTPSession(
                protocol,
                c.host,
                c.address,
                c.port,
                self.heloName,
                self.runBlocking,
                tlsMode=c.tlsMode,
                tlsOptions=self._tlsOptions(c.tlsMode),
                auth=auth,
                loopNames=self.route.loopNames,
                timeouts=self.timeouts,
            )
            try:
                yield session.open()
            except SessionError as e:
                e.relay = session.relay
                last = e
                self.log.info("smtp: {detail}", detail=e.detail)
                if e.status == "5.4.6":
                    raise
                continue
            self.log.info(
                "smtp: connected to {relay}{tls}",
                relay=session.relay,
                tls=f", TLS {session.tls}" + (
                    " (verified)" if c.tlsMode == "verify" else " (unverified)"
                ) if session.tls else ", no TLS",
            )
            return session
        if last is None:
            raise RouteError(DEFERRED, "4.4.4", f"no address to try for {domain}")
        raise last


def _connectError(e):
    text = str(e).strip()
    if "Connection refused" in text:
        return "Connection refused"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "Connection timed out"
    return text or e.__class__.__name__


def _readFile(path):
    with open(path, "rb") as f:
        return f.read()


def _splitPEM(data):
    marker = b"-----END CERTIFICATE-----"
    out = []
    for part in data.split(marker):
        if b"-----BEGIN CERTIFICATE-----" in part:
            out.append(part[part.index(b"-----BEGIN") :] + marker + b"\n")
    return out
