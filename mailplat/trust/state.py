"""
What the sender-authentication checks remember about a session and a
message, kept on L{mailplat.policy.facts.SessionFacts.trust}.

Checks run at different stages and in config order: SPF at MAIL (its
results are needed by DMARC at DATA), iprev and DNSBL lookups start at
connect and are decided at MAIL.  Per-message state (the results written
into the one Authentication-Results header, a quarantine decided by a check
that did not end the stage) belongs to the message being checked: it is
started afresh for each new spool file.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MessageState:
    """
    @ivar spool: the spool file this state is for.
    @ivar results: the L{mailplat.trust.authresults.AuthResult} objects of
        the message's Authentication-Results header, in check order.
    @ivar header: the header field (L{bytes}) now in C{facts.extraHeaders}.
    @ivar dkim: the L{mailplat.trust.dkim.DKIMResult} list of the message,
        or L{None} when the DKIM check has not run.
    @ivar quarantine: why the message goes to the Junk folder, or L{None}.
    """

    spool: Any
    results: list = field(default_factory=list)
    header: bytes = None
    dkim: list = None
    quarantine: str = None


@dataclass
class TrustState:
    """
    @ivar spf: identity (C{"mailfrom"}, C{"helo"}) to
        L{mailplat.trust.spf.SPFResult} for the transaction of C{spfSender}.
    @ivar spfSender: the MAIL FROM address the SPF results are for.
    @ivar spfQuarantine: a quarantine reason decided at MAIL, carried to
        the message.
    @ivar pending: check name to a Deferred started at connect (iprev,
        DNSBL), or its result once it fired.
    @ivar results: check name to the result of a session-wide lookup.
    @ivar message: the L{MessageState} of the message being checked.
    """

    spf: dict = field(default_factory=dict)
    spfSender: str = None
    spfQuarantine: str = None
    pending: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    message: MessageState = None


def trustState(facts):
    """
    @return: the session's L{TrustState}, created on first use.
    """
    if facts.trust is None:
        facts.trust = TrustState()
    return facts.trust


def messageState(facts):
    """
    @return: the L{MessageState} of the message now at the data stage
        (C{facts.spool}), started afresh for a new message.
    """
    state = trustState(facts)
    if state.message is None or state.message.spool is not facts.spool:
        state.message = MessageState(facts.spool)
    return state.message
