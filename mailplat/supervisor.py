"""
Child processes that a service starts, talks to by lines, and restarts when
they die: the SMTP process (L{mailplat.smtpprocess}) and the commit process
(L{mailplat.queue.commitprocess}).
"""

import os
import sys

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.logger import Logger

# How long a child gets to finish at shutdown before it is killed.
STOP_TIMEOUT = 10.0
# Restart delays after a child dies: doubled each time, reset by a child
# that ran for a minute.
RESTART_INITIAL = 0.5
RESTART_MAX = 30.0


def childEnvironment():
    """
    The environment for a C{sys.executable -m mailplat...} child: ours, with
    our C{sys.path} as C{PYTHONPATH}, so that it imports the same code and
    finds the same plugins.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class LineChildProtocol(protocol.ProcessProtocol):
    """
    Hands each line the child writes on its standard output to
    C{owner.received}, logs each line of its standard error, and tells
    C{owner.ended} when it exits.

    @ivar ended: fires when the process has exited.
    """

    log = Logger()

    def __init__(self, owner):
        self.owner = owner
        self._buffer = b""
        self._errors = b""
        self.ended = defer.Deferred()
        self.pid = None

    def connectionMade(self):
        self.pid = self.transport.pid

    def outReceived(self, data):
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            try:
                self.owner.received(line.decode("utf-8"))
            except Exception:
                self.log.failure(
                    "{label} [{pid}]: unreadable message {line!r}",
                    label=self.owner.label,
                    pid=self.pid,
                    line=line[:200],
                )

    def errReceived(self, data):
        lines = (self._errors + data).split(b"\n")
        self._errors = lines.pop()
        for line in lines:
            self.log.error(
                "{label} [{pid}]: {line}",
                label=self.owner.label,
                pid=self.pid,
                line=line.decode("utf-8", "replace"),
            )

    def processEnded(self, reason):
        if self._errors:
            self.errReceived(b"\n")
        self.owner.ended(self, reason)
        self.ended.callback(None)


class SupervisedProcess(service.Service):
    """
    Runs one child process while the service runs: started with the
    service, restarted after a growing delay when it dies, asked to stop by
    closing its standard input (and killed after L{STOP_TIMEOUT}).

    Subclasses start the process in L{spawn}, read its lines in
    L{received} and clean up after it in L{died}.

    @ivar label: how log lines name the process.
    @ivar whileDown: what happens between a child's death and the next one,
        for the log line that reports the death.
    @ivar child: the running child's L{LineChildProtocol}, or L{None}.
    @ivar started: how many children were started (for tests).
    """

    label = "child process"
    whileDown = "a new one starts"
    log = Logger()

    def __init__(self, reactor):
        self.reactor = reactor
        self.child = None
        self.started = 0
        self._delay = RESTART_INITIAL
        self._restart = None
        self._startedAt = None

    def startService(self):
        service.Service.startService(self)
        self._spawn()

    def _spawn(self):
        self._restart = None
        child = LineChildProtocol(self)
        self.child = child
        self.started += 1
        self._startedAt = self.reactor.seconds()
        self.spawn(child)
        self.log.info("{label} [{pid}]: started", label=self.label, pid=child.pid)

    def spawn(self, child):
        """
        Start the process with C{child} as its protocol
        (C{reactor.spawnProcess}).
        """
        raise NotImplementedError()

    def received(self, line):
        """
        One line from the child's standard output.
        """
        raise NotImplementedError()

    def died(self, child, reason):
        """
        The child ended while the service runs (a new one is due).
        """

    def ended(self, child, reason):
        if child is not self.child:
            return
        self.child = None
        if not self.running:
            self.log.info(
                "{label} [{pid}]: stopped ({reason})",
                label=self.label,
                pid=child.pid,
                reason=reason.getErrorMessage(),
            )
            return
        if self.reactor.seconds() - self._startedAt > 60:
            self._delay = RESTART_INITIAL
        self.log.error(
            "{label} [{pid}]: ended unexpectedly ({reason}); {whileDown} in "
            "{delay:.1f}s",
            label=self.label,
            pid=child.pid,
            reason=reason.getErrorMessage(),
            whileDown=self.whileDown,
            delay=self._delay,
        )
        self.died(child, reason)
        self._restart = self.reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, RESTART_MAX)

    def stopService(self):
        service.Service.stopService(self)
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        child = self.child
        if child is None:
            return None
        try:
            child.transport.closeStdin()
        except Exception:
            pass

        def kill():
            self.log.warn(
                "{label} [{pid}]: still running {timeout:.0f}s after the "
                "request to stop; killing it",
                label=self.label,
                pid=child.pid,
                timeout=STOP_TIMEOUT,
            )
            try:
                child.transport.signalProcess("KILL")
            except Exception:
                pass

        killer = self.reactor.callLater(STOP_TIMEOUT, kill)

        def stopped(result):
            if killer.active():
                killer.cancel()
            return result

        return child.ended.addBoth(stopped)
