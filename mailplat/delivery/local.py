"""
Local delivery into the mailbox store.
"""

from zope.interface import implementer

from mailplat.interfaces import INBOX, IDeliveryTarget, QuotaExceeded
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, DeliveryResult

# The special-use folder (RFC 6154 \\Junk) that quarantined mail goes to.
JUNK = "Junk"


@implementer(IDeliveryTarget)
class LocalDelivery:
    """
    Delivers to users of the local domains: prepends C{Return-Path}
    (RFC 5321 4.4) and stores the message in the user's INBOX, fsynced.

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

    def accepts(self, recipient):
        return self.isLocalDomain(recipient.rpartition("@")[2])

    def deliver(self, item, recipients):
        return self.runBlocking(self._deliverAll, item, recipients)

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


def _prepend(first, chunks):
    yield first
    yield from chunks
