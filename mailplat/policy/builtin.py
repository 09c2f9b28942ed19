"""
The built-in checks.  Each is an L{ICheckFactory} like a third-party plugin;
L{mailplat.policy.registry} puts them in the pipeline.

Settings come from the C{[smtp]} and C{[domains]} tables; a C{[[check]]} table
naming a built-in only places it in the order, and takes no options.
"""

import ipaddress
from email.utils import getaddresses

from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer, provider

from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.policy.verdict import (
    CONTINUE_VERDICT,
    DISCONNECT,
    REJECT,
    TEMPFAIL,
    Verdict,
    accept,
)
from mailplat.recipients import UnknownRecipient
from mailplat.smtp import replies as R


class _Builtin:
    """
    Base of the built-in checks: C{makeCheck} refuses options.
    """

    stages = frozenset()

    def __init__(self, context):
        self.context = context
        self.config = context.config

    @classmethod
    def makeCheck(cls, options, context):
        if options:
            raise ValueError(
                f"the built-in check {cls.name!r} takes no options "
                f"(got {', '.join(sorted(options))}); its settings are in [smtp]"
            )
        return cls(context)


@provider(ICheckFactory)
@implementer(ICheck)
class ConnectionLimits(_Builtin):
    """
    At most C{smtp.max_connections} sessions in total and
    C{smtp.max_connections_per_ip} from one address: C{421 4.7.0}.
    """

    name = "connection_limits"
    stages = frozenset({"connect"})

    def __init__(self, context):
        _Builtin.__init__(self, context)
        self.total = 0
        self.perIP = {}

    def check(self, stage, facts):
        smtp = self.config.smtp
        count = self.perIP.get(facts.peer, 0)
        if self.total >= smtp.maxConnections:
            return Verdict(
                DISCONNECT,
                R.TOO_MANY_CONNECTIONS.format(hostname=self.config.hostname),
                reason="connection limit",
            )
        if count >= smtp.maxConnectionsPerIP:
            return Verdict(
                DISCONNECT,
                R.TOO_MANY_CONNECTIONS_FROM.format(
                    hostname=self.config.hostname, peer=facts.peer
                ),
                reason="per-IP connection limit",
            )
        self.total += 1
        self.perIP[facts.peer] = count + 1

        def release():
            self.total -= 1
            left = self.perIP[facts.peer] - 1
            if left:
                self.perIP[facts.peer] = left
            else:
                del self.perIP[facts.peer]

        facts.onClose.append(release)
        return CONTINUE_VERDICT


@provider(ICheckFactory)
@implementer(ICheck)
class GreetPause(_Builtin):
    """
    Wait C{smtp.greet_pause} before the greeting.  The SMTP server answers a
    client that talks during the pause with C{554 5.5.1} and closes.
    """

    name = "greet_pause"
    stages = frozenset({"connect"})

    def check(self, stage, facts):
        delay = self.config.smtp.greetPause
        if not delay:
            return CONTINUE_VERDICT
        return task.deferLater(self.context.clock, delay, lambda: CONTINUE_VERDICT)


def _senderAllowed(context, user, address):
    """
    Whether the authenticated C{user} may send as C{address}: their own
    address, with or without a recipient extension, or an alias that
    delivers to them.
    """
    address = address.lower()
    if address == user:
        return True
    local, _, domain = address.rpartition("@")
    delimiter = context.config.recipientDelimiter
    if delimiter and delimiter in local:
        if f"{local.split(delimiter, 1)[0]}@{domain}" == user:
            return True
    try:
        resolution = context.recipients.resolve(address)
    except UnknownRecipient:
        return False
    return user in resolution.mailboxes


@provider(ICheckFactory)
@implementer(ICheck)
class Submission(_Builtin):
    """
    The submission profiles (RFC 6409): MAIL needs TLS and AUTH
    (C{530 5.7.0}); the envelope sender and every From: address must be
    addresses the user may send as (C{553 5.7.1}).
    """

    name = "submission"
    stages = frozenset({"mail", "data"})

    def check(self, stage, facts):
        if facts.profile not in ("submission", "submissions"):
            return CONTINUE_VERDICT
        if stage == "mail":
            if facts.authenticated is None:
                if not facts.secure:
                    return Verdict(REJECT, R.TLS_REQUIRED)
                return Verdict(REJECT, R.AUTH_REQUIRED)
            return self.context.runBlocking(self._checkSender, facts)
        return self.context.runBlocking(self._checkFrom, facts)

    def _checkSender(self, facts):
        if not _senderAllowed(self.context, facts.authenticated, facts.sender or ""):
            return Verdict(
                REJECT,
                R.SENDER_NOT_OWNED.format(
                    address=facts.sender, user=facts.authenticated
                ),
                reason="sender not owned",
            )
        return CONTINUE_VERDICT

    def _checkFrom(self, facts):
        headers = facts.headers
        if headers is None:
            return CONTINUE_VERDICT
        froms = [a for _, a in getaddresses(headers.get_all("From", [])) if a]
        for address in froms:
            if not _senderAllowed(self.context, facts.authenticated, address):
                return Verdict(
                    REJECT,
                    R.FROM_NOT_OWNED.format(address=address, user=facts.authenticated),
                    reason="From: not owned",
                )
        return CONTINUE_VERDICT


@provider(ICheckFactory)
@implementer(ICheck)
class Recipients(_Builtin):
    """
    Recipients in local and virtual domains: accepted when a mailbox, an
    alias or a catch-all takes them (the envelope gets what they resolve
    to), C{550 5.1.1} otherwise.  Recipients a plugin delivery target
    accepts (C{[[target]]}) are accepted as they are.
    """

    name = "recipients"
    stages = frozenset({"rcpt"})
    log = Logger()

    def check(self, stage, facts):
        for target in self.context.targets:
            if target.accepts(facts.recipient):
                return accept([facts.recipient.lower()], reason=f"target {target.name}")
        domain = facts.recipient.rpartition("@")[2]
        if "@" in facts.recipient and not self.config.isLocalDomain(domain):
            return CONTINUE_VERDICT
        cached = getattr(self.context.recipients, "cached", None)
        resolution = cached(facts.recipient) if cached is not None else None
        if resolution is not None:
            # Resolved a moment ago and the files are unchanged: no thread
            # hand-off (mailplat.recipients.RecipientResolver.cached).
            return self._resolved(resolution)
        d = self.context.runBlocking(self.context.recipients.resolve, facts.recipient)
        d.addCallbacks(self._resolved, self._failed, errbackArgs=(facts.recipient,))
        return d

    def _resolved(self, resolution):
        return accept(resolution.all, reason="local recipient")

    def _failed(self, failure, address):
        if failure.check(UnknownRecipient):
            return Verdict(
                REJECT, R.USER_UNKNOWN.format(address=address), reason="unknown user"
            )
        self.log.failure("recipient lookup failed for {address}", failure, address=address)
        return Verdict(TEMPFAIL, R.TEMPORARY_LOOKUP_FAILURE, reason=str(failure.value))


@provider(ICheckFactory)
@implementer(ICheck)
class Relay(_Builtin):
    """
    Recipients elsewhere: accepted from authenticated clients and from
    C{smtp.trusted_networks}; everything else falls through to the default
    verdict, C{554 5.7.1} relay denied (L{mailplat.smtp.replies.RELAY_DENIED}).
    """

    name = "relay"
    stages = frozenset({"rcpt"})

    def __init__(self, context):
        _Builtin.__init__(self, context)
        self.networks = [
            ipaddress.ip_network(n) for n in context.config.smtp.trustedNetworks
        ]

    def trusted(self, peer):
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def check(self, stage, facts):
        if facts.authenticated is not None:
            return accept([facts.recipient], reason="authenticated relay")
        if self.trusted(facts.peer):
            return accept([facts.recipient], reason="trusted network")
        return CONTINUE_VERDICT


@provider(ICheckFactory)
@implementer(ICheck)
class MailLoop(_Builtin):
    """
    More than C{smtp.max_received_headers} Received fields: C{554 5.4.6}
    (RFC 5321 6.3).
    """

    name = "mail_loop"
    stages = frozenset({"data"})

    def check(self, stage, facts):
        if facts.receivedCount > self.config.smtp.maxReceivedHeaders:
            return Verdict(
                REJECT, R.MAIL_LOOP, reason=f"{facts.receivedCount} Received headers"
            )
        return CONTINUE_VERDICT


BUILTINS = (ConnectionLimits, GreetPause, Submission, Recipients, Relay, MailLoop)
