"""
The queue runner: hands each queued message to the delivery targets, records
per-recipient results durably, retries with exponential back-off and removes a
message once every recipient is final.
"""

import time

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, DeliveryResult
from mailplat.queue.store import QueueFileError

_STATE_WORDS = {DELIVERED: "delivered", DEFERRED: "deferred", FAILED: "bounced"}


class QueueRunner(service.Service):
    """
    @ivar store: the L{mailplat.queue.store.QueueStore}.
    @ivar targets: L{mailplat.interfaces.IDeliveryTarget} providers, asked in
        order; the first that accepts a recipient delivers to it.
    @ivar clock: an L{IReactorTime}.
    @ivar runBlocking: C{f(callable, *args) -> Deferred}, running blocking
        work off the reactor thread.
    """

    log = Logger()

    def __init__(self, store, targets, clock, runBlocking, config, now=time.time):
        self.store = store
        self.targets = list(targets)
        self.clock = clock
        self.runBlocking = runBlocking
        self.config = config
        self.now = now
        self._timers = {}
        self._running = {}
        self._cache = {}
        self._recovered = None

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

    def schedule(self, queueId, delay):
        old = self._timers.pop(queueId, None)
        if old is not None and old.active():
            old.cancel()
        if not self.running:
            return
        self._timers[queueId] = self.clock.callLater(delay, self._attempt, queueId)

    def flush(self):
        """
        Try every message now (like C{postqueue -f}).
        """
        for queueId in list(self._timers):
            self.schedule(queueId, 0)

    def retryDelay(self, attempts):
        n = max(attempts, 1) - 1
        return min(self.config.retryInitial * (2**n), self.config.retryMax)

    # -- attempts

    def _attempt(self, queueId):
        self._timers.pop(queueId, None)
        if queueId in self._running:
            return self._running[queueId]
        d = self._load(queueId)
        d.addCallback(self._deliver)
        d.addErrback(self._failedAttempt, queueId)
        self._running[queueId] = d

        def done(result):
            self._running.pop(queueId, None)
            return result

        d.addBoth(done)
        return d

    def _load(self, queueId):
        item = self._cache.pop(queueId, None)
        if item is not None:
            return defer.succeed(item)
        return self.runBlocking(self.store.load, queueId)

    def _failedAttempt(self, failure, queueId):
        if failure.check(QueueFileError):
            self.log.error(
                "{queueId}: cannot parse the queue file, moved to quarantine: "
                "{error}",
                queueId=queueId,
                error=failure.value,
            )
            return self.runBlocking(self.store.quarantine, queueId)
        if failure.check(FileNotFoundError):
            return None  # removed by an admin meanwhile
        self.log.failure(
            "{queueId}: delivery attempt failed, will retry", failure, queueId=queueId
        )
        self.schedule(queueId, self.config.retryMax)

    @defer.inlineCallbacks
    def _deliver(self, item):
        envelope = item.envelope
        pending = [r for r in envelope.recipients if not r.final]
        now = self.now()
        expired = now - envelope.arrival > self.config.maxLifetime
        results = {}
        if expired:
            for r in pending:
                results[r.address] = DeliveryResult(
                    FAILED,
                    "4.4.7",
                    "message expired in the queue; last error: "
                    + (r.lastError or "none"),
                )
        else:
            groups = {}
            for r in pending:
                target = next((t for t in self.targets if t.accepts(r.address)), None)
                if target is None:
                    results[r.address] = DeliveryResult(
                        DEFERRED,
                        "4.4.0",
                        "no delivery target for this recipient "
                        "(outbound delivery is not configured)",
                        "none",
                    )
                else:
                    groups.setdefault(target, []).append(r.address)
            attempts = []
            for target, addresses in groups.items():
                d = defer.maybeDeferred(target.deliver, item, addresses)
                d.addErrback(self._targetFailed, target, addresses, item.id)
                attempts.append(d)
            for outcome in (yield defer.gatherResults(attempts)):
                results.update(outcome)

        for r in pending:
            result = results.get(r.address)
            if result is None:
                continue
            r.attempts += 1
            r.lastStatus = result.status
            r.lastError = result.detail
            if result.state in (DELIVERED, FAILED):
                r.state = result.state
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

        if all(r.final for r in envelope.recipients):
            yield self.runBlocking(self.store.remove, item.id)
            self.log.info("{queueId}: removed", queueId=item.id)
            return
        yield self.runBlocking(self.store.saveState, item)
        attempts = max(r.attempts for r in envelope.recipients if not r.final)
        delay = self.retryDelay(attempts)
        remaining = envelope.arrival + self.config.maxLifetime - now
        self.schedule(item.id, max(0, min(delay, remaining + 1)))

    def _targetFailed(self, failure, target, addresses, queueId):
        self.log.failure(
            "{queueId}: delivery target {target} failed", failure,
            queueId=queueId, target=target.name,
        )
        return {
            a: DeliveryResult(DEFERRED, "4.3.0", "internal error in delivery", target.name)
            for a in addresses
        }
