"""
The threads password hashes are verified in.

Verification is CPU work that releases the GIL (argon2, bcrypt and
SHA-crypt all run in C), so it belongs in a thread; but not in the shared
thread pool.  argon2 allocates its whole memory cost (C{m}: 8 MiB for light
parameters) with C{malloc}, and glibc keeps a freed block of that size in
the thread's own arena (its dynamic mmap threshold rises to the block's
size after the first free), so in a pool of ten threads every thread ends
up holding C{m} for good: 80 MiB that the first logins after a start seem
to cost.  Releasing the memory after each hash instead would make every
verification page-fault its C{m} back in (about +45% for C{m} = 8 MiB).
A dedicated small pool keeps the retained memory at C{threads x m}, whatever
the number of sessions; with one thread, logins also stop competing with
each other and with store calls for the GIL.

Hashes of C{m} above glibc's largest dynamic threshold (32 MiB, e.g.
mailplat's default 64 MiB) are mmapped and unmapped each time anyway.
"""

import threading
import weakref

from twisted.internet import threads
from twisted.internet.interfaces import IReactorThreads
from twisted.python.threadpool import ThreadPool

# Threads verifying password hashes at once (each may keep its hash's
# memory cost allocated).  Every scheme mailplat knows parallelises one
# verification itself where its parameters ask for it (argon2's lanes).
HASH_THREADS = 1


def _daemonThread(*args, **kwargs):
    thread = threading.Thread(*args, **kwargs)
    # Pure CPU work with nothing to flush: never holds up the exit of a
    # process whose reactor did not shut down (an embedding test, say).
    thread.daemon = True
    return thread


class _HashPool(ThreadPool):
    threadFactory = staticmethod(_daemonThread)


class HashRunner:
    """
    C{runHash(f, *args) -> Deferred}: runs C{f} in the dedicated pool when
    C{reactor} is a real reactor with threads, else (unit tests with a
    L{twisted.internet.task.Clock}) through C{runBlocking}.

    @ivar name: the name of the pool's threads (another job's runner, such
        as PAM's in L{mailplat.auth.pamchecker}, has a pool of its own).
    """

    def __init__(self, reactor, runBlocking, threads=HASH_THREADS,
                 name="mailplat-hash"):
        self.reactor = reactor
        self.runBlocking = runBlocking
        self.threads = threads
        self.name = name
        self.pool = None

    def __call__(self, f, *args, **kwargs):
        if not IReactorThreads.providedBy(self.reactor) or not self.threads:
            return self.runBlocking(f, *args, **kwargs)
        if self.pool is None:
            self.pool = _HashPool(minthreads=0, maxthreads=self.threads,
                                  name=self.name)
            self.pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return threads.deferToThreadPool(self.reactor, self.pool, f, *args, **kwargs)

    def stop(self):
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()


_runners = weakref.WeakKeyDictionary()


def hashRunnerFor(reactor, runBlocking):
    """
    @return: the L{HashRunner} of C{reactor}, shared by every checker (one
        pool per process however many listeners have their own portal).
    """
    if not IReactorThreads.providedBy(reactor):
        return HashRunner(reactor, runBlocking)
    runner = _runners.get(reactor)
    if runner is None:
        runner = _runners[reactor] = HashRunner(reactor, runBlocking)
    return runner
