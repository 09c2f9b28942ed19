"""
C{[queue] commit_process = true} (the default): the process that runs SMTP
sessions hands the messages it holds in memory to a commit process of its
own (L{mailplat.queue.commitd}, whose docstring says why a process), and the
session answers 250 when that process says the message is on disk.

Messages written to their file while they arrived (larger than
L{mailplat.queue.store.MEMORY_LIMIT}, or for a data-stage check that reads
the file) are committed by the commit threads
(L{mailplat.queue.commit.GroupCommitter}) as before, and so is every message
while no commit process runs: before it started, and between its death and
its restart.

If the commit process dies, the messages it was committing are refused with
C{451 4.3.0}: their files are removed from C{tmp/} and C{active/} first (a
file it had renamed into C{active/} might already be on disk), so that the
client's retry cannot deliver the message twice.  The commit process gets
SIGKILL when the process that started it dies, so it never writes into the
queue behind the back of the main process's clean-up.
"""

import errno
import fcntl
import os
import sys

from twisted.internet import defer
from twisted.python.failure import Failure

from mailplat.queue.commitd import frameHead
from mailplat.supervisor import SupervisedProcess, childEnvironment

# The commit process's standard input holds this much (Linux's default
# pipe-max-size): several 100 KB messages at once.
PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class CommitProcess(SupervisedProcess):
    """
    The committer of the process that runs SMTP sessions (see the module
    docstring), and the service that keeps its commit process running.

    @ivar store: the L{mailplat.queue.store.QueueStore}.
    @ivar fallback: the committer for what the commit process does not take
        (a L{mailplat.queue.commit.GroupCommitter}).
    @ivar runBlocking: C{f(callable, *args) -> Deferred} running blocking
        work in a thread.
    """

    name = "commit-process"
    label = "commit process"
    whileDown = "messages are committed by threads until a new one starts"

    def __init__(self, store, reactor, fallback, runBlocking):
        SupervisedProcess.__init__(self, reactor)
        self.store = store
        self.fallback = fallback
        self.runBlocking = runBlocking
        # queue id -> (the child it was sent to, its SpoolFile, Deferred)
        self._pending = {}

    def spawn(self, child):
        self.reactor.spawnProcess(
            child,
            sys.executable,
            [
                sys.executable, "-m", "mailplat.queue.commitd",
                "--parent", str(os.getpid()), self.store.path,
            ],
            env=childEnvironment(),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        try:
            fcntl.fcntl(child.transport.pipes[0].fileno(), _F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError, KeyError):
            pass  # the default 64 KB pipe works, with more wake-ups

    def commit(self, spool):
        """
        Make C{spool} durable in C{active/}.

        @return: a Deferred firing with the
            L{mailplat.queue.store.QueuedMessage}, or failing with the
            L{OSError} that kept the message out of the queue.
        """
        child = self.child
        if child is None or not spool.inMemory:
            return self.fallback.commit(spool)
        queueId = spool.envelope.id
        d = defer.Deferred()
        self._pending[queueId] = (child, spool, d)
        chunks = spool.imageChunks()
        # Twisted joins them once, when it writes to the pipe.
        child.transport.writeSequence(
            [frameHead(queueId, sum(map(len, chunks)))] + chunks
        )
        return d

    def received(self, line):
        """
        C{<id> ok} or C{<id> error <errno>} (L{mailplat.queue.commitd}).
        """
        queueId, status = line.split(" ", 1)
        if status != "ok" and not status.startswith("error "):
            raise ValueError("unknown status")
        _, spool, d = self._pending.pop(queueId)
        if status == "ok":
            d.callback(spool.committed())
            return
        number = int(status[6:])
        spool.abort()
        d.errback(OSError(number, os.strerror(number)))

    def ended(self, child, reason):
        SupervisedProcess.ended(self, child, reason)
        lost = [
            (queueId, spool, d)
            for queueId, (owner, spool, d) in self._pending.items()
            if owner is child
        ]
        for queueId, _, _ in lost:
            del self._pending[queueId]
        if lost:
            self._refuse(lost, child)

    def _refuse(self, lost, child):
        """
        The commit process ended with C{lost} messages not answered: remove
        whatever it wrote of them, then fail them.
        """
        self.log.error(
            "commit process [{pid}]: {n} message(s) it was committing are "
            "refused (451 4.3.0)",
            pid=child.pid,
            n=len(lost),
        )
        ids = [queueId for queueId, _, _ in lost]
        d = self.runBlocking(self.store.discardCommits, ids)

        def answer(result):
            if isinstance(result, Failure):
                self.log.failure("cannot remove the files of {ids}", result, ids=ids)
            for _, spool, waiting in lost:
                spool.abort()
                waiting.errback(OSError(errno.EIO, f"commit process [{child.pid}] ended"))

        d.addBoth(answer)
