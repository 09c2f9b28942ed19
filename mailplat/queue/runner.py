"""
The queue runner: hands each queued message to the delivery targets, records
per-recipient results durably, retries each recipient with exponential
back-off until the message's maximum lifetime, and queues the delivery status
notifications (L{mailplat.queue.bounce}) that the results call for.

Per message, an attempt:

    1. takes the message's lock (L{mailplat.queue.store.QueuedMessage.lock}),
       so the admin command never moves it in the middle of a delivery;
    2. gives the recipients that are due to the first target accepting each;
       the targets work in parallel, and the results of each are recorded
       (state file, fsync) as soon as that target is done, so a local
       delivery does not wait for a slow remote one;
    3. queues the notices owed (bounce, delay, success), then records that
       they were queued;
    4. removes the message when every recipient is final, or schedules the
       next attempt for the earliest recipient due.

A crash between 2 and the state file, or between 3 and its record, repeats
that delivery or that notice after the restart (the duplicate window of
docs/architecture.md); nothing is lost.
"""

import time

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from mailplat.queue import bounce
from mailplat.queue.commit import Batcher
from mailplat.queue.envelope import (
    DEFERRED,
    DELIVERED,
    FAILED,
    DeliveryResult,
    Envelope,
    Recipient,
)
from mailplat.queue.store import QueueBusy, QueueFileError, newQueueId

_STATE_WORDS = {DELIVERED: "delivered", DEFERRED: "deferred", FAILED: "bounced"}

#: How long to wait before trying a message whose lock is held elsewhere
#: (the admin command).
BUSY_RETRY = 5.0


class QueueRunner(service.Service):
    """
    @ivar store: the L{mailplat.queue.store.QueueStore}.
    @ivar targets: L{mailplat.interfaces.IDeliveryTarget} providers, asked in
        order; the first that accepts a recipient delivers to it.
    @ivar clock: an L{IReactorTime}.
    @ivar runBlocking: C{f(callable, *args) -> Deferred}, running blocking
        work off the reactor thread.
    @ivar config: the L{mailplat.config.schema.QueueConfig}.
    @ivar hostname: ours, for notices.
    @ivar postmaster: where notices that cannot be delivered are reported
        (a double bounce); L{None} to only log them.
    @ivar maxActive: how many messages are worked on at once.
    """

    log = Logger()

    def __init__(
        self,
        store,
        targets,
        clock,
        runBlocking,
        config,
        now=time.time,
        hostname="localhost",
        postmaster=None,
        maxActive=100,
    ):
        self.store = store
        self.targets = list(targets)
        self.clock = clock
        self.runBlocking = runBlocking
        self.config = config
        self.now = now
        self.hostname = hostname
        self.postmaster = postmaster
        self._timers = {}
        self._running = {}
        self._again = {}
        self._cache = {}
        self._recovered = None
        self._slots = defer.DeferredSemaphore(maxActive)
        # Opening (loading, locking) and removing queue files is done for
        # every attempt under way in one thread call, with one directory
        # fsync for all removals (mailplat.queue.commit.Batcher).
        self._opener = Batcher(runBlocking, self._openMany)
        self._remover = Batcher(runBlocking, self._removeMany)
        # Called as observer(item, recipient, result) for every delivery
        # result, on the reactor thread (the embedding API's events).
        self.observers = []

    # -- service

    def startService(self):
        """
        Schedule every message already in the queue.  The queue directories
        must exist (L{mailplat.queue.store.QueueStore.create}).
        """
        service.Service.startService(self)
        self._recovered = self.runBlocking(self._recover)
        self._recovered.addCallback(self._scheduleAll)
        self._recovered.addErrback(
            lambda f: self.log.failure("queue recovery failed", f)
        )
        return self._recovered

    def _recover(self):
        return self.store.ids()

    def _scheduleAll(self, ids):
        if ids:
            self.log.info("queue: resuming {count} message(s)", count=len(ids))
        for queueId in ids:
            self.schedule(queueId, 0)

    def stopService(self):
        service.Service.stopService(self)
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        running = list(self._running.values())
        return defer.DeferredList(running) if running else None

    # -- scheduling

    def enqueue(self, item):
        """
        A new message was committed: try it now.
        """
        self._cache[item.id] = item
        self.schedule(item.id, 0)

    def schedule(self, queueId, delay, force=False):
        """
        Attempt C{queueId} in C{delay} seconds; with C{force}, every pending
        recipient is tried, due or not.
        """
        if queueId in self._running:
            if delay == 0:
                self._again[queueId] = self._again.get(queueId, False) or force
            return
        old = self._timers.pop(queueId, None)
        if old is not None and old.active():
            old.cancel()
        if not self.running:
            return
        self._timers[queueId] = self.clock.callLater(
            delay, self._attempt, queueId, force
        )

    def forget(self, queueId):
        """
        Stop scheduling C{queueId} (it was held or deleted).
        """
        timer = self._timers.pop(queueId, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._again.pop(queueId, None)
        self._cache.pop(queueId, None)

    def flush(self, queueId=None):
        """
        Try every message (or only C{queueId}) now, whatever its schedule
        (like C{postqueue -f} and C{postqueue -i}).

        @return: a Deferred firing when the messages have been scheduled.
        """
        if queueId is not None:
            self.schedule(queueId, 0, force=True)
            return defer.succeed(None)
        d = self.runBlocking(self.store.ids)

        def scheduleAll(ids):
            for i in ids:
                self.schedule(i, 0, force=True)

        d.addCallback(scheduleAll)
        return d

    def scheduleNew(self):
        """
        Try now every message in the queue that is not scheduled (committed
        by a separate SMTP process that died before it said so).

        @return: a Deferred firing with the ids scheduled.
        """
        d = self.runBlocking(self.store.ids)

        def scheduleUnknown(ids):
            new = [
                i
                for i in ids
                if i not in self._timers and i not in self._running
            ]
            for i in new:
                self.schedule(i, 0)
            return new

        d.addCallback(scheduleUnknown)
        return d

    def retryDelay(self, attempts):
        n = max(attempts, 1) - 1
        return min(self.config.retryInitial * (2**n), self.config.retryMax)

    # -- attempts

    def _attempt(self, queueId, force=False):
        self._timers.pop(queueId, None)
        if queueId in self._running:
            return self._running[queueId]
        d = self._slots.run(self._attemptLocked, queueId, force)
        d.addErrback(self._failedAttempt, queueId)
        self._running[queueId] = d

        def done(delay):
            self._running.pop(queueId, None)
            if queueId in self._again:
                self.schedule(queueId, 0, force=self._again.pop(queueId))
            elif delay is not None:
                self.schedule(queueId, delay)

        d.addBoth(done)
        return d

    @defer.inlineCallbacks
    def _attemptLocked(self, queueId, force):
        cached = self._cache.pop(queueId, None)
        item = yield self._opener.submit((queueId, cached))
        try:
            delay = yield self._deliver(item, force)
        finally:
            if item.lockFD is not None:
                yield self.runBlocking(item.unlock)
        return delay

    def _openMany(self, requests):
        """
        I{blocking}.  L{_open} for C{(queueId, item)} requests.

        @return: for each, the locked item or the exception.
        """
        out = []
        for queueId, item in requests:
            try:
                out.append(self._open(queueId, item))
            except Exception as e:
                out.append(e)
        return out

    def _removeMany(self, items):
        """
        I{blocking}.  Remove messages whose recipients are all final (one
        directory fsync for all of them), then unlock them.

        @return: for each, L{None} or the exception.
        """
        try:
            results = self.store.removeMany(items)
        finally:
            for item in items:
                item.unlock()
        return results

    def _open(self, queueId, item=None):
        """
        I{blocking}.  Load (unless C{item} is given) and lock a message.
        """
        if item is None:
            item = self.store.load(queueId)
        item.lock()
        return item

    def _failedAttempt(self, failure, queueId):
        if failure.check(QueueFileError):
            self.log.error(
                "{queueId}: cannot parse the queue file, moved to quarantine: "
                "{error}",
                queueId=queueId,
                error=failure.value,
            )
            d = self.runBlocking(self.store.quarantine, queueId)
            return d.addCallback(lambda _: None)
        if failure.check(FileNotFoundError):
            return None  # held or removed by an admin meanwhile
        if failure.check(QueueBusy):
            return BUSY_RETRY
        self.log.failure(
            "{queueId}: delivery attempt failed, will retry", failure, queueId=queueId
        )
        return self.config.retryMax

    @defer.inlineCallbacks
    def _deliver(self, item, force):
        envelope = item.envelope
        now = self.now()
        expires = envelope.arrival + self.config.maxLifetime
        pending = [r for r in envelope.recipients if not r.final]
        due = [r for r in pending if force or r.nextAttempt <= now]
        changed = False
        if pending and now >= expires:
            results = {}
            for r in pending:
                results[r.address] = DeliveryResult(
                    FAILED,
                    "4.4.7",
                    "message expired in the queue after "
                    f"{_days(self.config.maxLifetime)}; last error: "
                    + (r.lastError or "none"),
                    r.lastRelay or "none",
                    r.remoteMTA,
                )
            self._apply(item, pending, results, now)
            changed = True
        elif due:
            lock = defer.DeferredLock()
            attempts = []
            for target, recipients in self._route(due):
                if target is None:
                    results = {
                        r.address: DeliveryResult(
                            DEFERRED,
                            "4.4.0",
                            "no delivery target for this recipient "
                            "(outbound delivery is not configured)",
                            "none",
                        )
                        for r in recipients
                    }
                    d = defer.succeed(results)
                else:
                    d = defer.maybeDeferred(
                        target.deliver, item, [r.address for r in recipients]
                    )
                    d.addErrback(self._targetFailed, target, recipients, item.id)
                d.addCallback(self._record, item, recipients, now, lock)
                attempts.append(d)
            yield defer.gatherResults(attempts, consumeErrors=True)
            changed = True

        # Delay notices (RFC 3464 "delayed"), once per recipient.
        warn = self.config.delayWarning
        if warn and now - envelope.arrival >= warn:
            for r in envelope.recipients:
                if not r.final and not r.delayNotified and not r.notice:
                    r.delayNotified = True
                    if r.wants("DELAY"):
                        r.notice = bounce.DELAYED_NOTICE
                    changed = True

        if any(r.notice for r in envelope.recipients):
            yield self._notify(item, now)
            changed = True

        if all(r.done for r in envelope.recipients):
            yield self._remover.submit(item)
            self.log.info("{queueId}: removed", queueId=item.id)
            return None
        if changed:
            yield self.runBlocking(self.store.saveState, item)
        nextAttempt = min(r.nextAttempt for r in envelope.recipients if not r.final)
        if warn and not all(r.delayNotified for r in envelope.recipients if not r.final):
            nextAttempt = min(nextAttempt, max(envelope.arrival + warn, now))
        return max(0.0, min(nextAttempt, expires) - now)

    def _route(self, recipients):
        """
        @return: C{(target, recipients)} pairs; C{target} is L{None} for the
            recipients no target accepts.
        """
        groups = {}
        for r in recipients:
            target = next((t for t in self.targets if t.accepts(r.address)), None)
            groups.setdefault(target, []).append(r)
        return list(groups.items())

    @defer.inlineCallbacks
    def _record(self, results, item, recipients, now, lock):
        """
        Apply one target's results and make them durable at once.
        """
        self._apply(item, recipients, results, now)
        if all(r.done for r in item.envelope.recipients):
            # Every recipient is final and owes no notice: the message is
            # removed next, which records these results durably as well
            # (a crash before that is the duplicate window of
            # docs/architecture.md, as it is before a state file).
            return
        yield lock.run(self.runBlocking, self.store.saveState, item)

    def _apply(self, item, recipients, results, now):
        envelope = item.envelope
        for r in recipients:
            result = results.get(r.address)
            if result is None:
                continue
            r.attempts += 1
            r.lastStatus = result.status
            r.lastError = result.detail
            r.lastRelay = result.relay
            r.remoteMTA = result.remoteMTA
            if result.state == DELIVERED:
                r.state = DELIVERED
                if result.dsnAction and r.wants("SUCCESS"):
                    r.notice = result.dsnAction
            elif result.state == FAILED:
                r.state = FAILED
                if r.wants("FAILURE"):
                    r.notice = bounce.FAILED_NOTICE
            else:
                r.nextAttempt = now + self.retryDelay(r.attempts)
            self.log.info(
                "{queueId}: to=<{rcpt}>, relay={relay}, delay={delay:.2f}, "
                "dsn={status}, status={word} ({detail})",
                queueId=item.id,
                rcpt=r.address,
                relay=result.relay or "none",
                delay=now - envelope.arrival,
                status=result.status,
                word=_STATE_WORDS[result.state],
                detail=result.detail,
            )
            for observer in list(self.observers):
                try:
                    observer(item, r, result)
                except Exception:
                    self.log.failure("queue: an observer failed")

    def _targetFailed(self, failure, target, recipients, queueId):
        self.log.failure(
            "{queueId}: delivery target {target} failed", failure,
            queueId=queueId, target=target.name,
        )
        return {
            r.address: DeliveryResult(
                DEFERRED, "4.3.0", "internal error in delivery", target.name
            )
            for r in recipients
        }

    # -- notices

    @defer.inlineCallbacks
    def _notify(self, item, now):
        """
        Queue the notices the recipients are owed, then clear them.  A message
        with the null sender gets none: its failures are reported to the
        postmaster instead (once: a failed report to the postmaster is only
        logged).
        """
        envelope = item.envelope
        owed = [r for r in envelope.recipients if r.notice]
        kinds = {}
        for r in owed:
            kind = "success" if r.notice in bounce.SUCCESS_NOTICES else r.notice
            kinds.setdefault(kind, []).append(r)
        for kind, recipients in kinds.items():
            to = envelope.sender
            if not to:
                if kind != "failed":
                    continue
                if envelope.params.get("notice") == "postmaster" or not self.postmaster:
                    self.log.warn(
                        "{queueId}: undeliverable message with a null sender "
                        "discarded (no notice is sent for it)",
                        queueId=item.id,
                    )
                    continue
                kind, to = "postmaster", self.postmaster
            notice = yield self.runBlocking(
                self._writeNotice, item, kind, recipients, to, now
            )
            self.enqueue(notice)
            self.log.info(
                "{queueId}: sender {what} notification: {noticeId}",
                queueId=item.id,
                what={"failed": "non-delivery", "postmaster": "postmaster",
                      "delayed": "delay", "success": "success"}[kind],
                noticeId=notice.id,
            )
        for r in owed:
            r.notice = ""

    def _writeNotice(self, item, kind, recipients, to, now):
        """
        I{blocking}.  Compose a notice and commit it to the queue.

        @return: the committed L{mailplat.queue.store.QueuedMessage}.
        """
        envelope = item.envelope
        full = (
            envelope.params.get("ret", "").upper() == "FULL"
            and kind != "delayed"
            and item.size <= bounce.FULL_RETURN_LIMIT
        )
        if full:
            original = b"".join(item.contentChunks())
        else:
            original = bounce.splitHeader(item.contentChunks())
        content = bounce.buildNotice(
            kind,
            self.hostname,
            envelope,
            recipients,
            original,
            full,
            now,
            retryUntil=envelope.arrival + self.config.maxLifetime,
            to=to,
        )
        params = {"notice": kind}
        if any(b > 0x7F for b in content):
            params["body"] = "8BITMIME"
        if envelope.params.get("smtputf8") or not to.isascii():
            params["smtputf8"] = True
        notice = Envelope(
            id=newQueueId(),
            sender="",
            recipients=[Recipient(to)],
            arrival=now,
            client={"address": "local", "helo": None, "tls": None,
                    "authenticated": None, "listener": "queue"},
            params=params,
        )
        spool = self.store.spool(notice)
        try:
            spool.write(content)
        except BaseException:
            spool.abort()
            raise
        return spool.commit()


def _days(seconds):
    if seconds % 86400 == 0:
        n = int(seconds // 86400)
        return f"{n} day{'s' if n != 1 else ''}"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds)}s"
