"""
The embedding API of L{mailplat.service.MailplatService}: submitting mail
from Python, events, and users and aliases at run time.  Kept apart from
the service's construction so that each reads on its own.
"""

import email.utils
import time

from twisted.internet import defer

from mailplat import events as E
from mailplat.auth.passwords import hashPassword
from mailplat.queue.envelope import (
    DEFERRED,
    DELIVERED,
    FAILED,
    DeliveryResult,
    Envelope,
    Recipient,
)
from mailplat.queue.store import newQueueId
from mailplat.recipients import UnknownRecipient
from mailplat.smtp.message import LineEndingNormalizer

_EVENT_KINDS = {DELIVERED: E.DELIVERED, DEFERRED: E.DEFERRED, FAILED: E.BOUNCED}


def deliveryEvents(hub):
    """
    @return: a queue runner observer that turns delivery results into
        events on C{hub} (and C{newMail} for local deliveries).
    """

    def observe(item, recipient, result):
        kind = _EVENT_KINDS[result.state]
        event = E.MailEvent(
            kind, item.id, item.envelope.sender, recipient.address,
            result.status, result.detail, result.relay,
        )
        hub.emit(event)
        if result.state == DELIVERED and result.relay == "local":
            hub.emit(E.MailEvent(
                E.NEW_MAIL, item.id, item.envelope.sender, recipient.address,
                result.status, result.detail, "local",
            ))

    return observe


class Submitter:
    """
    Puts messages in the queue from Python and reports each recipient's
    first outcome.
    """

    def __init__(self, context, runner):
        self.context = context
        self.runner = runner
        self._waiting = {}
        runner.observers.append(self._observe)

    def _observe(self, item, recipient, result):
        waiter = self._waiting.get(item.id)
        if waiter is None:
            return
        results, expected, d = waiter
        results.setdefault(recipient.address, result)
        if expected <= set(results):
            del self._waiting[item.id]
            d.callback(results)

    def _resolve(self, recipients):
        """
        I{blocking}: each recipient's final addresses (aliases expanded for
        local domains), or a failure result.
        """
        final, failed = {}, {}
        config = self.context.config
        for address in recipients:
            domain = address.rpartition("@")[2]
            if config.isLocalDomain(domain):
                try:
                    resolution = self.context.recipients.resolve(address)
                except UnknownRecipient:
                    failed[address] = DeliveryResult(FAILED, "5.1.1", "no such user here")
                    continue
                for target in resolution.all:
                    final.setdefault(target, address)
            else:
                final.setdefault(address.lower(), address)
        return final, failed

    def _spool(self, envelope, message):
        config = self.context.config
        trace = (
            f"Received: by {config.hostname} (mailplat) with local id {envelope.id};\r\n"
            f"\t{email.utils.formatdate(localtime=True)}\r\n"
        ).encode()
        content = LineEndingNormalizer().feed(message)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        spool = self.context.queue.spool(envelope)
        try:
            spool.write(trace + content)
        except BaseException:
            spool.abort()
            raise
        return spool.commit()

    @defer.inlineCallbacks
    def submit(self, sender, recipients, message):
        """
        Queue C{message} (bytes; LF or CRLF line endings) from C{sender}
        (C{""} for the null sender) to C{recipients}, durably, as SMTP would.

        @return: a Deferred firing with a L{dict} of recipient address (local
            aliases expanded) to the L{DeliveryResult} of its first attempt:
            delivered, deferred (to be retried by the queue) or failed
            (bounced).
        """
        final, failed = yield self.context.runBlocking(self._resolve, list(recipients))
        if not final:
            return failed
        envelope = Envelope(
            id=newQueueId(),
            sender=sender,
            recipients=[Recipient(a, orcpt=f"rfc822;{orig}") for a, orig in final.items()],
            arrival=time.time(),
            client={"address": "local", "helo": None, "tls": None,
                    "authenticated": None, "listener": "submit"},
        )
        done = defer.Deferred()
        self._waiting[envelope.id] = (dict(failed), set(final), done)
        try:
            item = yield self.context.runBlocking(self._spool, envelope, message)
        except BaseException:
            del self._waiting[envelope.id]
            raise
        self.runner.enqueue(item)
        if self.context.events is not None:
            self.context.events.emit(E.MailEvent(E.ACCEPTED, item.id, sender))
        results = yield done
        return results


def addUser(context, address, password):
    """
    I{blocking}.  Add a user (or change their password) in the user database.
    """
    context.users.setPassword(address, hashPassword(password))
