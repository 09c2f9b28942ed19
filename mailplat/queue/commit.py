"""
Group commit of received messages, and the batching it is built on.

Every SMTP session that reaches the end of DATA hands its spool file to one
L{GroupCommitter} (unless the commit process takes it:
L{mailplat.queue.commitprocess}, where groups form the same way).  The committer works on one group at a time, in one
thread: it fsyncs and renames every file of the group into C{active/}, then
fsyncs the directory once for all of them
(L{mailplat.queue.store.QueueStore.commitMany}), and only then fires each
session's Deferred, so each session answers C{250} after its own file and
its directory entry are on disk (the durability contract of
docs/architecture.md).  The messages that arrive while a group is being
committed form the next group: under load one directory fsync and one thread
hand-off serve many messages, and a lone message waits for nothing.

L{Batcher} is the general form, also used by the queue runner (opening and
removing queue files) and local delivery (Maildir writes with one directory
fsync and one index transaction per group).
"""

from twisted.internet import defer
from twisted.python.failure import Failure


class Batcher:
    """
    Runs a blocking function on groups of requests, one group at a time.

    Requests submitted while a group is in the thread wait and form the next
    group, so a thread hand-off (and whatever C{work} does once per group:
    an fsync, a transaction) is shared by everything that arrived
    meanwhile.  Nothing waits for a timer: a request that finds the batcher
    idle starts a group of one at once.

    @ivar runInThread: C{f(callable, *args) -> Deferred} running blocking
        work off the reactor thread (a synchronous stand-in in unit tests).
    @ivar work: C{f(requests) -> results}, I{blocking}: a list with one
        result for each request, in order; a result that is an
        L{Exception} instance fails that request's Deferred.
    @ivar maxGroup: at most this many requests go in one group.
    @ivar groups: how many groups were started (for tests and metrics).
    """

    def __init__(self, runInThread, work, maxGroup=256):
        self.runInThread = runInThread
        self.work = work
        self.maxGroup = maxGroup
        self._waiting = []
        self._busy = False
        self.groups = 0

    def submit(self, request):
        """
        @return: a Deferred firing with C{request}'s result.
        """
        d = defer.Deferred()
        self._waiting.append((request, d))
        if not self._busy:
            self._next()
        return d

    def _next(self):
        group = self._waiting[: self.maxGroup]
        del self._waiting[: self.maxGroup]
        self._busy = True
        self.groups += 1
        d = defer.maybeDeferred(self.runInThread, self.work, [r for r, _ in group])
        d.addBoth(self._done, group)

    def _done(self, results, group):
        self._busy = False
        # Start the next group before answering this one: the thread works
        # on it while the reactor handles these results.
        if self._waiting:
            self._next()
        if isinstance(results, Failure):
            self.failedGroup(group, results)
            return
        for (request, d), result in zip(group, results):
            if isinstance(result, BaseException):
                d.errback(Failure(result))
            else:
                d.callback(result)

    def failedGroup(self, group, failure):
        """
        C{work} itself raised: every request of the group fails with it.
        """
        for request, d in group:
            d.errback(failure)


class GroupCommitter(Batcher):
    """
    Commits received messages in groups (see the module docstring).

    @ivar store: the L{mailplat.queue.store.QueueStore}.
    """

    def __init__(self, store, runInThread, maxGroup=256):
        Batcher.__init__(self, runInThread, store.commitMany, maxGroup)
        self.store = store

    def commit(self, spool):
        """
        Commit C{spool} with the next group.

        @return: a Deferred firing with the
            L{mailplat.queue.store.QueuedMessage} once the message is
            durable, or failing with the L{OSError} that kept it out of the
            queue (nothing of it is left then).
        """
        return self.submit(spool)

    def failedGroup(self, group, failure):
        for spool, d in group:
            spool.abort()
        Batcher.failedGroup(self, group, failure)
