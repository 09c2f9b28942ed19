"""
The sender-authentication checks: L{ICheckFactory} built-ins that run only
when a C{[[check]]} table names them (docs/trust.md).

    spf          MAIL: RFC 7208 for the MAIL FROM and HELO identities
    dkim         DATA: every DKIM-Signature (RFC 6376, RFC 8463)
    dmarc        DATA: RFC 7489, after spf and dkim
    iprev        connect (lookup), MAIL (verdict): forward-confirmed PTR
    dnsbl        connect (lookups), MAIL (verdict): DNSBL/DNSWL scores
    dkim_sign    DATA: signs mail from submission and trusted networks
    authentication_results
                 DATA, last: applies a quarantine decided by the checks
                 above (added by the registry when one of them is used)

Each inbound check writes its results into the message's one
Authentication-Results field (RFC 8601) and maps each result to an action:
C{reject}, C{tempfail}, C{quarantine}, C{tag} (only written down) or
C{ignore} (not even that).  Sessions that authenticated or come from
C{smtp.trusted_networks} are not checked.  Every check has a C{timeout}:
past it, the result is C{temperror}.
"""

import ipaddress
import random
from email.utils import getaddresses

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer, provider

from mailplat.config.units import parseDuration
from mailplat.dns import Resolver
from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.policy import verdict as V
from mailplat.trust import dkim as dkimlib
from mailplat.trust import dmarc as dmarclib
from mailplat.trust import dnsbl as dnsbllib
from mailplat.trust import ptr as ptrlib
from mailplat.trust import spf as spflib
from mailplat.trust.authresults import AuthResult, addResults
from mailplat.trust.state import messageState, trustState

ACTIONS = ("reject", "tempfail", "quarantine", "tag", "ignore")


def readMessage(spool):
    """
    I{blocking}: the message being received, from its spool file (the
    Received field mailplat added first).  The SMTP server flushed the file
    before the data-stage checks run.
    """
    with open(spool.tmpPath, "rb") as f:
        f.seek(spool.offset)
        return f.read(spool.size) if spool.size else f.read()


class _Options:
    """
    Reads a C{[[check]]} table, collecting every problem.
    """

    def __init__(self, options):
        self.options = dict(options)
        self.seen = set()
        self.problems = []

    def get(self, key, convert, default):
        self.seen.add(key)
        if key not in self.options:
            return default
        try:
            return convert(self.options[key])
        except (TypeError, ValueError) as e:
            self.problems.append(f"{key}: {e}")
            return default

    def finish(self):
        unknown = sorted(set(self.options) - self.seen)
        if unknown:
            self.problems.append(f"unknown option(s): {', '.join(unknown)}")
        if self.problems:
            raise ValueError("; ".join(self.problems))


def _action(value):
    if value not in ACTIONS:
        raise ValueError(f"expected one of {', '.join(ACTIONS)}, not {value!r}")
    return value


def _bool(value):
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _positiveDuration(value):
    value = parseDuration(value)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


class _TrustCheck:
    """
    Base of the inbound checks: options (actions per result, C{timeout}),
    the resolver, exemptions, and verdicts.

    @cvar results: the results an action can be set for.
    @cvar defaults: result to default action.
    """

    stages = frozenset()
    results = ()
    defaults = {}
    defaultTimeout = 20.0
    log = Logger()

    def __init__(self, context, options):
        self.context = context
        self.config = context.config
        opts = _Options(options)
        self.actions = {r: opts.get(r, _action, self.defaults.get(r, "tag")) for r in self.results}
        self.timeout = opts.get("timeout", _positiveDuration, self.defaultTimeout)
        self.configure(opts)
        opts.finish()
        self.networks = [ipaddress.ip_network(n) for n in self.config.smtp.trustedNetworks]
        self._resolver = None

    @classmethod
    def makeCheck(cls, options, context):
        return cls(context, options)

    def configure(self, opts):
        """
        Read the check's own options.
        """

    @property
    def resolver(self):
        """
        The service's resolver (C{context.resolver}), or one built from
        C{[dns]} when the context has none (an embedding application's).
        """
        resolver = getattr(self.context, "resolver", None)
        if resolver is not None:
            return resolver
        if self._resolver is None:
            self._resolver = Resolver.fromConfig(
                self.config.dns, self.context.clock, self.context.runBlocking
            )
        return self._resolver

    def exempt(self, facts):
        """
        Whether the session is not checked: it authenticated, or comes from
        C{smtp.trusted_networks}.
        """
        if facts.authenticated is not None:
            return True
        try:
            ip = ipaddress.ip_address(facts.peer)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def withTimeout(self, d, onTimeout):
        """
        C{d}'s result, or C{onTimeout()} if it takes longer than
        C{self.timeout}.  C{d} itself is left to finish (its lookups still
        fill the cache).
        """
        result = defer.Deferred()

        def expired():
            if not result.called:
                result.callback(onTimeout())

        call = self.context.clock.callLater(self.timeout, expired)

        def done(value):
            if call.active():
                call.cancel()
            if not result.called:
                if isinstance(value, defer.Failure):
                    result.errback(value)
                else:
                    result.callback(value)

        d.addBoth(done)
        return result

    def verdict(self, action, reject, tempfail, reason):
        """
        The verdict for C{action}: C{reject} and C{tempfail} are
        C{(code, status, text)} replies; C{quarantine} is returned as is
        (the caller defers it when it must not end the stage).
        """
        if action == "reject":
            return V.reject(*reject, reason=reason)
        if action == "tempfail":
            return V.tempfail(*tempfail, reason=reason)
        if action == "quarantine":
            return V.quarantine(reason=reason)
        return V.CONTINUE_VERDICT

    def finish(self, facts, verdict):
        """
        At the data stage: a quarantine does not end the stage (later checks
        still add their results); it is applied by the
        C{authentication_results} check at the end.
        """
        if verdict.action == V.QUARANTINE:
            state = messageState(facts)
            state.quarantine = state.quarantine or verdict.reason
            return V.CONTINUE_VERDICT
        return verdict

    def logResult(self, facts, text):
        self.log.info(
            "{check}: {text} client=[{peer}]", check=self.name, text=text, peer=facts.peer
        )


# -- SPF


@provider(ICheckFactory)
@implementer(ICheck)
class SPFCheck(_TrustCheck):
    """
    RFC 7208 at MAIL: the HELO identity (when C{helo} is true and the HELO
    name is a domain) and the MAIL FROM identity (C{postmaster@HELO} for
    the null sender, section 2.4).  A reject or tempfail answers MAIL; the
    results go into Authentication-Results at DATA and are kept for DMARC.

    Replies: fail/softfail/neutral/none C{550 5.7.23}, permerror
    C{550 5.7.24}, temperror C{451 4.7.24} (RFC 7372).
    """

    name = "spf"
    stages = frozenset({"mail", "data"})
    results = spflib.RESULTS
    defaults = {"fail": "reject"}

    def configure(self, opts):
        self.checkHelo = opts.get("helo", _bool, True)

    @defer.inlineCallbacks
    def evaluate(self, facts):
        """
        @return: a Deferred firing with C{{identity: SPFResult}}.
        """
        checker = spflib.SPFChecker(self.resolver, receiver=self.config.hostname)
        helo = facts.helo or ""
        lookups = {}
        if facts.sender:
            domain = facts.sender.rpartition("@")[2]
            lookups["mailfrom"] = checker.checkHost(facts.peer, domain, facts.sender, helo)
        else:
            lookups["mailfrom"] = checker.checkHost(facts.peer, helo, f"postmaster@{helo}", helo)
        if self.checkHelo and facts.sender and spflib.validDomain(helo):
            lookups["helo"] = checker.checkHost(facts.peer, helo, f"postmaster@{helo}", helo)
        names = list(lookups)
        done = yield defer.gatherResults([lookups[n] for n in names])
        return dict(zip(names, done))

    def check(self, stage, facts):
        if self.exempt(facts):
            return V.CONTINUE_VERDICT
        if stage == "data":
            return self._data(facts)
        state = trustState(facts)
        state.spf, state.spfSender, state.spfQuarantine = {}, facts.sender, None

        def timedOut():
            domain = (facts.sender or "").rpartition("@")[2] or (facts.helo or "")
            return {
                "mailfrom": spflib.SPFResult(
                    spflib.TEMPERROR, domain, facts.sender or "", problem="SPF check timed out"
                )
            }

        d = self.withTimeout(self.evaluate(facts), timedOut)
        d.addCallback(self._decide, facts)
        return d

    def _decide(self, results, facts):
        state = trustState(facts)
        state.spf = results
        for identity in ("helo", "mailfrom"):
            result = results.get(identity)
            if result is None:
                continue
            self.logResult(
                facts, f"{identity}={result.sender} result={result.result}"
                + (f" ({result.problem})" if result.problem else "")
            )
            verdict = self._verdictFor(result, facts)
            if verdict.action == V.QUARANTINE:
                state.spfQuarantine = state.spfQuarantine or verdict.reason
            elif verdict.final:
                return verdict
        return V.CONTINUE_VERDICT

    def _verdictFor(self, result, facts):
        action = self.actions[result.result]
        who = f"<{facts.sender}>" if facts.sender else f"HELO {facts.helo}"
        if result.result == spflib.PERMERROR:
            text = f"{who}: SPF permerror for {result.domain}: {result.problem}"
            reject = (550, "5.7.24", text)
        else:
            detail = result.explanation or (
                f"{result.domain} does not authorize [{facts.peer}] to send"
            )
            text = f"{who}: SPF {result.result}: {detail}"
            reject = (550, "5.7.23", text)
        tempfail = (451, "4.7.24", f"{who}: SPF {result.result}: {result.problem or 'try again later'}")
        return self.verdict(action, reject, tempfail, f"SPF {result.result} for {result.domain}")

    def _data(self, facts):
        state = trustState(facts)
        if state.spfSender != facts.sender:
            return V.CONTINUE_VERDICT
        clauses = []
        mailfrom = state.spf.get("mailfrom")
        helo = state.spf.get("helo")
        if helo is not None and self.actions[helo.result] != "ignore":
            clauses.append(self.clause(helo, "helo", facts.helo))
        if mailfrom is not None and self.actions[mailfrom.result] != "ignore":
            clauses.append(self.clause(mailfrom, "mailfrom", mailfrom.sender))
        addResults(facts, clauses)
        if state.spfQuarantine:
            return self.finish(facts, V.quarantine(state.spfQuarantine))
        return V.CONTINUE_VERDICT

    @staticmethod
    def clause(result, identity, value):
        reason = result.problem if result.result in (spflib.TEMPERROR, spflib.PERMERROR) else None
        return AuthResult("spf", result.result, (("smtp", identity, value),), reason=reason)


# -- DKIM


@provider(ICheckFactory)
@implementer(ICheck)
class DKIMCheck(_TrustCheck):
    """
    Verifies every DKIM-Signature of the message (up to
    C{max_signatures}); the action follows the message's best result
    (pass if one signature passed).  Replies: C{550 5.7.20},
    temperror C{451 4.7.0}.
    """

    name = "dkim"
    stages = frozenset({"data"})
    results = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")

    def configure(self, opts):
        self.maxSignatures = opts.get("max_signatures", _positiveInt, 5)

    def check(self, stage, facts):
        if self.exempt(facts) or facts.spool is None:
            return V.CONTINUE_VERDICT
        verifier = dkimlib.DKIMVerifier(self.resolver, self.context.runBlocking, self.maxSignatures)
        d = verifier.verify(lambda: readMessage(facts.spool))
        d = self.withTimeout(
            d, lambda: [dkimlib.DKIMResult(dkimlib.TEMPERROR, reason="DKIM check timed out")]
        )
        d.addCallback(self._decide, facts)
        return d

    def _decide(self, results, facts):
        messageState(facts).dkim = results
        summary = dkimlib.summary(results)
        for r in results:
            self.logResult(
                facts, f"d={r.domain} s={r.selector} a={r.algorithm} result={r.result}"
                + (f" ({r.reason})" if r.reason else "")
            )
        if self.actions[summary] != "ignore":
            addResults(facts, [self.clause(r) for r in results] or [AuthResult("dkim", "none")])
        verdict = self.verdict(
            self.actions[summary],
            (550, "5.7.20", "No passing DKIM signature found"),
            (451, "4.7.0", "DKIM verification failed temporarily, try again later"),
            f"DKIM {summary}",
        )
        return self.finish(facts, verdict)

    @staticmethod
    def clause(r):
        return AuthResult(
            "dkim", r.result,
            (("header", "d", r.domain), ("header", "i", r.identity), ("header", "s", r.selector),
             ("header", "a", r.algorithm), ("header", "b", r.b)),
            reason=r.reason,
        )


def _positiveInt(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


# -- DMARC


@provider(ICheckFactory)
@implementer(ICheck)
class DMARCCheck(_TrustCheck):
    """
    RFC 7489 at DATA, with the results of C{spf} and C{dkim} (which must be
    listed before it).  The action for a C{fail} follows the domain's
    policy after C{pct} sampling: the C{reject}, C{quarantine} and C{none}
    options say what each means here (C{550 5.7.1}, the Junk folder,
    tagged).  A message without exactly one From address is a permerror.
    """

    name = "dmarc"
    stages = frozenset({"data"})
    results = ("reject", "quarantine", "none", "temperror", "permerror")
    defaults = {"reject": "reject", "quarantine": "quarantine"}

    def configure(self, opts):
        order = [c.type for c in self.config.checks]
        if "dmarc" in order:
            before = order[:order.index("dmarc")]
            missing = [t for t in ("spf", "dkim") if t not in before]
            if missing:
                opts.problems.append(
                    f"dmarc needs {' and '.join(missing)} listed before it in [[check]]"
                )
        self.organizational = dmarclib.OrganizationalDomains()
        # pct sampling (RFC 7489 section 6.6.4); tests give it a seed.
        self.rng = random.Random()

    def check(self, stage, facts):
        if self.exempt(facts):
            return V.CONTINUE_VERDICT
        fromDomain = self.fromDomain(facts.headers)
        if fromDomain is None:
            result = dmarclib.DMARCResult(
                dmarclib.PERMERROR, problem="the message needs exactly one From address"
            )
            return self._decide(result, facts)
        state = trustState(facts)
        spf = state.spf.get("mailfrom") if state.spfSender == facts.sender else None
        dkim = messageState(facts).dkim or []
        evaluator = dmarclib.DMARCEvaluator(self.resolver, self.organizational, self.rng)
        d = evaluator.evaluate(
            fromDomain,
            spf.domain if spf else None,
            spf.result if spf else "none",
            dkim,
        )
        d = self.withTimeout(
            d, lambda: dmarclib.DMARCResult(dmarclib.TEMPERROR, fromDomain, problem="timed out")
        )
        d.addCallback(self._decide, facts)
        return d

    @staticmethod
    def fromDomain(headers):
        if headers is None:
            return None
        values = headers.get_all("From", [])
        addresses = [a for _, a in getaddresses(values) if a]
        if len(values) != 1 or len(addresses) != 1 or "@" not in addresses[0]:
            return None
        domain = addresses[0].rpartition("@")[2].strip().rstrip(".").lower()
        return domain or None

    def _decide(self, result, facts):
        self.logResult(
            facts, f"from={result.fromDomain} result={result.result} policy={result.policy} "
            f"disposition={result.disposition}" + (f" ({result.problem})" if result.problem else "")
        )
        if result.result == dmarclib.FAIL:
            action = self.actions[result.disposition]
        elif result.result in (dmarclib.TEMPERROR, dmarclib.PERMERROR):
            action = self.actions[result.result]
        else:
            action = "tag"
        if action != "ignore":
            addResults(facts, [self.clause(result)])
        verdict = self.verdict(
            action,
            (550, "5.7.1", f"Rejected by the DMARC policy of {result.fromDomain}"),
            (451, "4.7.1", f"DMARC check failed temporarily for {result.fromDomain}, try again later"),
            f"DMARC {result.result} for {result.fromDomain} (p={result.policy})",
        )
        return self.finish(facts, verdict)

    @staticmethod
    def clause(result):
        comment = None
        if result.policy is not None:
            comment = f"p={result.policy} dis={result.disposition}"
            if result.record is not None and result.record.sp:
                comment = f"p={result.record.p} sp={result.record.sp} dis={result.disposition}"
        reason = result.problem if result.result in (dmarclib.TEMPERROR, dmarclib.PERMERROR) else None
        return AuthResult(
            "dmarc", result.result, (("header", "from", result.fromDomain),),
            reason=reason, comment=comment,
        )


# -- session-wide lookups started at connect: iprev and DNSBL


class _ConnectLookup(_TrustCheck):
    """
    A lookup about the client's address, started at connect (without
    holding up the greeting), decided at MAIL, written down at DATA.
    """

    stages = frozenset({"connect", "mail", "data"})

    def start(self, facts):
        state = trustState(facts)
        if self.name not in state.pending and self.name not in state.results:
            d = self.withTimeout(self.lookup(facts.peer), lambda: self.timedOut(facts.peer))

            def store(result):
                state.pending.pop(self.name, None)
                state.results[self.name] = result
                return result

            state.pending[self.name] = d
            d.addCallback(store)

    def result(self, facts):
        state = trustState(facts)
        if self.name in state.results:
            return defer.succeed(state.results[self.name])
        self.start(facts)
        if self.name in state.results:
            return defer.succeed(state.results[self.name])
        waiting = defer.Deferred()
        state.pending[self.name].addBoth(lambda r: (waiting.callback(r), r)[1])
        return waiting

    def check(self, stage, facts):
        if stage == "connect":
            if not self.exempt(facts):
                self.start(facts)
            return V.CONTINUE_VERDICT
        if self.exempt(facts):
            return V.CONTINUE_VERDICT
        d = self.result(facts)
        if stage == "mail":
            d.addCallback(self.decide, facts)
        else:
            d.addCallback(self.record, facts)
        return d

    def decide(self, result, facts):
        verdict = self.verdictFor(result, facts)
        if verdict.action == V.QUARANTINE:
            # Applied at DATA, to the message.
            return V.CONTINUE_VERDICT
        return verdict

    def record(self, result, facts):
        addResults(facts, self.clauses(result))
        verdict = self.verdictFor(result, facts)
        if verdict.action == V.QUARANTINE:
            return self.finish(facts, verdict)
        return V.CONTINUE_VERDICT


@provider(ICheckFactory)
@implementer(ICheck)
class IPRevCheck(_ConnectLookup):
    """
    iprev (RFC 8601 section 3): the client's PTR names, forward-confirmed.
    Replies: fail C{550 5.7.25}, temperror C{451 4.7.25} (RFC 7372).
    """

    name = "iprev"
    results = ("pass", "fail", "temperror", "permerror")
    defaultTimeout = 10.0

    def lookup(self, ip):
        return ptrlib.checkIPRev(self.resolver, ip)

    def timedOut(self, ip):
        return ptrlib.IPRevResult(ptrlib.TEMPERROR, ip, problem="timed out")

    def verdictFor(self, result, facts):
        return self.verdict(
            self.actions[result.result],
            (550, "5.7.25", f"Client address [{result.ip}] has no forward-confirmed reverse DNS name"),
            (451, "4.7.25", f"Reverse DNS of [{result.ip}] failed temporarily, try again later"),
            f"iprev {result.result}",
        )

    def clauses(self, result):
        if self.actions[result.result] == "ignore":
            return []
        comment = (result.confirmed or result.names or (None,))[0]
        reason = result.problem if result.result != ptrlib.PASS else None
        return [AuthResult("iprev", result.result, (("policy", "iprev", result.ip),),
                           reason=reason, comment=comment)]


@provider(ICheckFactory)
@implementer(ICheck)
class DNSBLCheck(_ConnectLookup):
    """
    DNSBL/DNSWL zones with weights (L{mailplat.trust.dnsbl}): a score at or
    above C{threshold} gets the C{listed} action, C{554 5.7.1}.  Zones with
    negative weights are allowlists (RFC 8904's C{dnswl} in
    Authentication-Results); blocklist hits are written as C{dnsbl=fail}.
    """

    name = "dnsbl"
    results = ("listed",)
    defaults = {"listed": "reject"}
    defaultTimeout = 10.0

    def configure(self, opts):
        zones = []
        for text in opts.get("zones", _stringList, []):
            try:
                zones.append(dnsbllib.parseZone(text))
            except ValueError as e:
                opts.problems.append(f"zones: {e}")
        if not zones and not opts.problems:
            opts.problems.append("zones: list at least one zone")
        self.zones = zones
        self.threshold = opts.get("threshold", _positiveInt, 1)

    def lookup(self, ip):
        return dnsbllib.checkZones(self.resolver, ip, self.zones)

    def timedOut(self, ip):
        return dnsbllib.DNSBLResult(ip, 0, errors=tuple(z.name for z in self.zones))

    def verdictFor(self, result, facts):
        if result.score < self.threshold:
            return V.CONTINUE_VERDICT
        zones = ", ".join(l.zone.name for l in result.listings if not l.zone.allowlist)
        return self.verdict(
            self.actions["listed"],
            (554, "5.7.1", f"Service unavailable; client [{result.ip}] blocked using {zones}"),
            (451, "4.7.1", f"Service unavailable; client [{result.ip}] listed in {zones}"),
            f"DNSBL score {result.score}",
        )

    def clauses(self, result):
        if self.actions["listed"] == "ignore":
            return []
        out = []
        for listing in result.listings:
            method, value = ("dnswl", "pass") if listing.zone.allowlist else ("dnsbl", "fail")
            out.append(AuthResult(
                method, value,
                (("dns", "zone", listing.zone.name), ("policy", "ip", listing.answers[0])),
                comment=f"weight {listing.zone.weight}, score {result.score}",
            ))
        return out


def _stringList(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return value


# -- the end of the data stage


@provider(ICheckFactory)
@implementer(ICheck)
class AuthenticationResultsCheck:
    """
    Runs after the checks above at DATA: a message one of them quarantined
    goes to the Junk folder.  The registry adds it at the end when a
    sender-authentication check is configured; a C{[[check]]} table may
    place it elsewhere.  It takes no options.
    """

    name = "authentication_results"
    stages = frozenset({"data"})

    def __init__(self, context):
        self.context = context

    @classmethod
    def makeCheck(cls, options, context):
        if options:
            raise ValueError(f"{cls.name!r} takes no options (got {', '.join(sorted(options))})")
        return cls(context)

    def check(self, stage, facts):
        if facts.trust is None or facts.trust.message is None:
            return V.CONTINUE_VERDICT
        state = facts.trust.message
        if state.spool is facts.spool and state.quarantine:
            return V.quarantine(reason=state.quarantine)
        return V.CONTINUE_VERDICT


# -- outbound: DKIM signing


@provider(ICheckFactory)
@implementer(ICheck)
class DKIMSignCheck:
    """
    Signs mail from authenticated clients (submission) and from
    C{smtp.trusted_networks} with every key of the From domain (or of its
    closest parent domain with keys) in C{dkim.key_dir}: rsa-sha256 and
    ed25519-sha256, relaxed/relaxed, the RFC 6376 section 5.4.1 header
    list with From over-signed.  Mail without a key is passed unsigned.
    """

    name = "dkim_sign"
    stages = frozenset({"data"})
    log = Logger()

    def __init__(self, context, options):
        from mailplat.trust.keys import KeyStore

        self.context = context
        opts = _Options(options)
        opts.finish()
        self.keyDir = context.config.dkim.keyDir
        self.keys = KeyStore(self.keyDir)
        self.networks = [ipaddress.ip_network(n) for n in context.config.smtp.trustedNetworks]

    @classmethod
    def makeCheck(cls, options, context):
        return cls(context, options)

    def applies(self, facts):
        if facts.authenticated is not None:
            return True
        try:
            ip = ipaddress.ip_address(facts.peer)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def check(self, stage, facts):
        if facts.spool is None or not self.applies(facts):
            return V.CONTINUE_VERDICT
        domain = DMARCCheck.fromDomain(facts.headers)
        if domain is None:
            return V.CONTINUE_VERDICT
        spool = facts.spool

        def sign():
            keys = self.keys.signingKeys(domain)
            if not keys:
                return []
            return dkimlib.signHeaders(readMessage(spool), keys)

        d = self.context.runBlocking(sign)
        d.addCallbacks(self._signed, self._failed, callbackArgs=(facts, domain),
                       errbackArgs=(facts, domain))
        return d

    def _signed(self, fields, facts, domain):
        facts.extraHeaders.extend(fields)
        if fields:
            self.log.info(
                "dkim_sign: signed mail from {domain} ({n} signature(s)) client=[{peer}]",
                domain=domain, n=len(fields), peer=facts.peer,
            )
        return V.CONTINUE_VERDICT

    def _failed(self, failure, facts, domain):
        # An unsigned message is better than a refused one; the log says why.
        self.log.failure("dkim_sign: cannot sign mail from {domain}", failure, domain=domain)
        return V.CONTINUE_VERDICT


INBOUND = (SPFCheck, DKIMCheck, DMARCCheck, IPRevCheck, DNSBLCheck)
TRUST_CHECKS = INBOUND + (DKIMSignCheck, AuthenticationResultsCheck)
