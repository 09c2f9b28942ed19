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
