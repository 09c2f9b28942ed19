"""
Local delivery into the mailbox store.
"""

from zope.interface import implementer

from mailplat.interfaces import INBOX, IDeliveryTarget, QuotaExceeded
from mailplat.queue.commit import Batcher
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, DeliveryResult

# The special-use folder (RFC 6154 \\Junk) that quarantined mail goes to.
JUNK = "Junk"


@implementer(IDeliveryTarget)
class LocalDelivery:
    """
    Delivers to users of the local domains: prepends C{Return-Path}
    (RFC 5321 4.4) and stores the message in the user's INBOX, fsynced.

    The messages the runner hands over while a delivery is in the thread are
    delivered together in the next thread call (L{Batcher}); a store with
    C{deliverMany} (L{mailplat.storage.maildir.MaildirStore}) then writes all
    the messages for one folder with one directory fsync and one index
    transaction.  Each recipient's result is still its own, and counts as
    delivered only once its message is durable.

    @ivar store: an L{mailplat.interfaces.IMailStore}.
    @ivar users: an L{mailplat.interfaces.IUserDirectory}.
    @ivar isLocalDomain: C{f(domain) -> bool}.
    @ivar runBlocking: C{f(callable, *args) -> Deferred}.
    """

    name = "local"

    def __init__(self, store, users, isLocalDomain, runBlocking):
        self.store = store
        self.users = users
        self.isLocalDomain = isLocalDomain
        self.runBlocking = runBlocking
        self._batcher = Batcher(runBlocking, self._deliverGroup)

    def accepts(self, recipient):
        return self.isLocalDomain(recipient.rpartition("@")[2])

    def deliver(self, item, recipients):
        return self._batcher.submit((item, recipients))

    def _deliverGroup(self, requests):
        """
        I{blocking}.  Deliver C{(item, recipients)} requests.

        @return: for each request, the results by recipient, or the
            exception that made its delivery fail as a whole.
        """
        deliverMany = getattr(self.store, "deliverMany", None)
        if deliverMany is None or len(requests) == 1:
            return [self._deliverOne(item, rcpts) for item, rcpts in requests]
        out = [{} for _ in requests]
        # (recipient, folder) -> [(request index, message chunks)]
        jobs = {}
        for n, (item, recipients) in enumerate(requests):
            folder = self._folder(item)
            for rcpt in recipients:
                if not self.users.exists(rcpt):
                    out[n][rcpt] = _NO_SUCH_USER
                    continue
                jobs.setdefault((rcpt, folder), []).append((n, _content(item)))
        for (rcpt, folder), entries in jobs.items():
            try:
                outcomes = deliverMany(rcpt, [chunks for _, chunks in entries], folder)
            except Exception as e:
                outcomes = [e] * len(entries)
            for (n, _), outcome in zip(entries, outcomes):
                if isinstance(out[n], dict):
                    if isinstance(outcome, Exception) and not isinstance(outcome, OSError):
                        out[n] = outcome
                    else:
                        out[n][rcpt] = _result(outcome, folder)
        return out

    def _deliverOne(self, item, recipients):
        try:
            return self._deliverAll(item, recipients)
        except Exception as e:
            return e

    def _folder(self, item):
        # A policy check's quarantine verdict (DMARC p=quarantine, ...).
        return JUNK if item.envelope.params.get("quarantine") else INBOX

    def _deliverAll(self, item, recipients):
        results = {}
        returnPath = b"Return-Path: <" + item.envelope.sender.encode("utf-8") + b">\r\n"
        # A policy check's quarantine verdict (DMARC p=quarantine, ...).
        folder = JUNK if item.envelope.params.get("quarantine") else INBOX
        for rcpt in recipients:
            if not self.users.exists(rcpt):
                results[rcpt] = DeliveryResult(
                    FAILED, "5.1.1", "no such user here", "local"
                )
                continue
            try:
                uid = self.store.deliver(
                    rcpt, _prepend(returnPath, item.contentChunks()), folder
                )
            except QuotaExceeded:
                # RFC 3463 4.2.2: mailbox full, temporary until it expires.
                results[rcpt] = DeliveryResult(
                    DEFERRED, "4.2.2", "mailbox full (quota exceeded)", "local"
                )
            except OSError as e:
                results[rcpt] = DeliveryResult(
                    DEFERRED, "4.3.0", f"mailbox write failed: {e}", "local"
                )
            else:
                where = "" if folder == INBOX else f" in {folder}"
                results[rcpt] = DeliveryResult(
                    DELIVERED, "2.0.0", f"delivered to maildir as uid {uid}{where}", "local"
                )
        return results


_NO_SUCH_USER = DeliveryResult(FAILED, "5.1.1", "no such user here", "local")


def _content(item):
    """
    The message as delivered: Return-Path (RFC 5321 4.4) and the queued
    content, read when the store writes it.
    """
    returnPath = b"Return-Path: <" + item.envelope.sender.encode("utf-8") + b">\r\n"
    return _prepend(returnPath, item.contentChunks())


def _result(outcome, folder):
    """
    The L{DeliveryResult} for what the store answered: a UID, or an
    L{OSError}.
    """
    if isinstance(outcome, QuotaExceeded):
        # RFC 3463 4.2.2: mailbox full, temporary until it expires.
        return DeliveryResult(DEFERRED, "4.2.2", "mailbox full (quota exceeded)", "local")
    if isinstance(outcome, OSError):
        return DeliveryResult(DEFERRED, "4.3.0", f"mailbox write failed: {outcome}", "local")
    where = "" if folder == INBOX else f" in {folder}"
    return DeliveryResult(
        DELIVERED, "2.0.0", f"delivered to maildir as uid {outcome}{where}", "local"
    )


def _prepend(first, chunks):
    yield first
    yield from chunks
