"""
What a check knows about the session.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SessionFacts:
    """
    The session as the policy checks see it.  Checks read it; the SMTP server
    keeps it up to date.

    @ivar context: the L{mailplat.context.ServerContext}.
    @ivar peer: the client's IP address.
    @ivar listener: the listener's name; C{profile} its SMTP profile.
    @ivar secure: whether the session is under TLS.
    @ivar helo: the HELO/EHLO argument, or L{None}.
    @ivar authenticated: the authenticated user's address, or L{None}.
    @ivar sender: the reverse path (C{""} for C{<>}), or L{None} before MAIL.
    @ivar params: MAIL parameters kept for the queue.
    @ivar recipient: at the C{rcpt} stage, the recipient being checked.
    @ivar recipients: the recipients accepted so far (as given by the client).
    @ivar headers: at the C{data} stage, the message's header section parsed
        (an L{email.message.Message}, headers only), or L{None}.
    @ivar receivedCount: at the C{data} stage, the number of Received fields.
    @ivar size: at the C{data} stage, the message size in bytes.
    @ivar onClose: callables run when the connection ends (a check that
        counts something releases it there).
    @ivar spool: at the C{data} stage, the L{mailplat.queue.store.SpoolFile}
        holding the message: its content is the file C{spool.tmpPath} from
        C{spool.offset} (the Received field mailplat added comes first);
        read it with C{context.runBlocking}.
    @ivar extraHeaders: header fields (L{bytes}, each ending with CRLF) that
        C{data} checks add, such as C{Authentication-Results} (RFC 8601) or
        C{DKIM-Signature}; they are stored with the message and prepended to
        it at delivery, in this order, above everything else but Return-Path.
    @ivar trust: the sender-authentication state of the session, kept by
        the checks of L{mailplat.trust.checks} (SPF results from MAIL for
        DMARC at DATA, iprev and DNSBL lookups started at connect, the
        message's Authentication-Results): a
        L{mailplat.trust.state.TrustState}, or L{None} before one is needed.
    """

    context: Any
    peer: str
    listener: str
    profile: str
    secure: bool = False
    helo: str = None
    authenticated: str = None
    sender: str = None
    params: dict = field(default_factory=dict)
    recipient: str = None
    recipients: list = field(default_factory=list)
    headers: Any = None
    receivedCount: int = 0
    size: int = 0
    onClose: list = field(default_factory=list)
    spool: Any = None
    extraHeaders: list = field(default_factory=list)
    trust: Any = None
