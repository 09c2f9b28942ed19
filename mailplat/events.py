"""
Events for applications that embed mailplat: a message accepted, a
recipient delivered, deferred or bounced, new mail in a mailbox.
"""

from dataclasses import dataclass

from twisted.logger import Logger

ACCEPTED = "accepted"
DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCED = "bounced"
NEW_MAIL = "newMail"


@dataclass(frozen=True)
class MailEvent:
    """
    @ivar kind: C{accepted}, C{delivered}, C{deferred}, C{bounced} or
        C{newMail}.
    @ivar queueId: the message's queue id.
    @ivar sender: the envelope sender (C{""} for C{<>}).
    @ivar recipient: for delivery events and C{newMail}, the recipient (for
        C{newMail}: the mailbox's address); for C{accepted}, L{None}.
    @ivar status: the RFC 3463 status (C{2.0.0}, C{4.4.1}...), or C{""}.
    @ivar detail: what happened, as logged.
    @ivar relay: C{local} or the remote host, for delivery events.
    """

    kind: str
    queueId: str
    sender: str
    recipient: str = None
    status: str = ""
    detail: str = ""
    relay: str = ""


class EventHub:
    """
    Subscribers are called on the reactor thread, in subscription order; one
    that raises is logged and the others still run.
    """

    log = Logger()

    def __init__(self):
        self._subscribers = []

    def subscribe(self, callback):
        """
        Call C{callback(event)} with every L{MailEvent}.

        @return: a callable that unsubscribes.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event):
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                self.log.failure("events: a subscriber failed on {kind}", kind=event.kind)
