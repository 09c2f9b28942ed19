"""
C{[smtp] separate_process = true}: every SMTP listener is served by one child
process (L{mailplat.smtpchild}), so that receiving mail and delivering it use
two cores, as Postfix's smtpd and its delivery agents do.

The main process binds the SMTP ports as usual (before twistd drops
privileges, so port errors are reported as without the child) but, once the
child is ready, does not
accept on them: it hands the listening sockets to the child, which runs the
SMTP sessions, the policy checks and the group commit into the queue.  The
child tells the main process, one line each on its standard output (tab
separated, fields escaped by L{escape}; not JSON, which cost a fifth of the
child's time with several log lines per message):

    - C{Q<id>	<sender>}: message C{id} is durable in C{active/} (it got its
      250): the main process's queue runner tries it now, and the main
      process emits the C{accepted} L{mailplat.events.MailEvent}.
    - C{L<time>	<level>	<system>	<text>}: a log event, written to the
      main process's log as if it had been logged there.
    - C{E<json>}: any other L{mailplat.events.MailEvent}.
    - C{R<pid>}: the child serves the listening sockets.

The main process starts the child with its own C{sys.path} as C{PYTHONPATH}
(plugins are found as in the main process), writes one pickled bootstrap
record on the child's standard input (the config, the TLS certificate and
key, the listening sockets' file descriptors) and keeps it open: the child stops when it closes.

Nothing is lost when the child dies: every message it acknowledged is in
C{active/}, and the main process schedules every queue file it does not know
yet (L{mailplat.queue.runner.QueueRunner.scheduleNew}).  Until a child is
ready (at start-up, and after a child died: a new one is started after a
growing delay) the main process accepts on the SMTP ports itself.

All SMTP limits stay exact (connections per IP, AUTH throttling): there is
one SMTP process.
"""

import json
import pickle
import re
import struct
import sys

from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher

from mailplat.events import ACCEPTED, MailEvent
from mailplat.listeners import ListenerService
from mailplat.supervisor import SupervisedProcess, childEnvironment

_LEVELS = {level.name: level for level in LogLevel.iterconstants()}
_ESCAPED = re.compile(r"\\(.)")
_UNESCAPE = {"n": "\n", "t": "\t"}


def escape(text):
    """
    C{text} without newlines or tabs (see L{unescape}).
    """
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape(text):
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(1)), text)


class HandedOffListener(ListenerService):
    """
    A listener bound in the main process and served by the SMTP process: the
    main process accepts on it only while no SMTP process is ready (at
    start-up, so that the server answers as soon as without a child, and
    after a child died).
    """

    def serveHere(self, serve):
        """
        Accept on this socket in this process (C{serve}), or leave it to the
        SMTP process.
        """
        if self.port is None:
            return
        if serve:
            self.port.startReading()
        else:
            self.port.stopReading()


def bootstrapRecord(mail, listeners):
    """
    @return: the bytes the child reads first: a length and a pickle.
    """
    record = pickle.dumps(
        {
            "config": mail.config,
            "tlsPEM": mail.tlsPEM,
            "listeners": listeners,
        }
    )
    return struct.pack("!Q", len(record)) + record


class SMTPProcessService(SupervisedProcess):
    """
    Starts the SMTP process, relays what it reports and restarts it when it
    dies (L{mailplat.supervisor.SupervisedProcess}).

    @ivar mail: the L{mailplat.service.MailplatService}.
    """

    name = "smtp-process"
    label = "smtp process"
    whileDown = "this process accepts SMTP until a new one is ready"

    def __init__(self, mail):
        SupervisedProcess.__init__(self, mail.reactor)
        self.mail = mail
        self._ready = []

    def _listeners(self):
        return [
            child
            for child in self.mail.listeners.values()
            if isinstance(child, HandedOffListener)
        ]

    def whenReady(self):
        """
        @return: a Deferred firing when a child serves the SMTP ports (for
            tests and embedding).
        """
        d = defer.Deferred()
        self._ready.append(d)
        return d

    def spawn(self, child):
        childFDs = {0: "w", 1: "r", 2: "r"}
        specs = []
        for n, listener in enumerate(self._listeners()):
            fd = 3 + n
            childFDs[fd] = listener.port.fileno()
            specs.append((listener.listener.name, fd, listener.port.socket.family))
        self.reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-m", "mailplat.smtpchild"],
            env=childEnvironment(),
            childFDs=childFDs,
        )
        child.transport.write(bootstrapRecord(self.mail, specs))

    def received(self, line):
        """
        One line from the child (see the module docstring).
        """
        kind = line[:1]
        if kind == "L":
            when, level, system, text = line[1:].split("\t", 3)
            globalLogPublisher(
                {
                    "log_time": float(when),
                    "log_level": _LEVELS[level],
                    "log_system": unescape(system),
                    "log_format": "{log_text}",
                    "log_text": unescape(text),
                }
            )
        elif kind == "Q":
            queueId, sender = line[1:].split("\t", 1)
            self.mail.runner.schedule(queueId, 0)
            self.mail.events.emit(MailEvent(ACCEPTED, queueId, unescape(sender)))
        elif kind == "E":
            self.mail.events.emit(MailEvent(**json.loads(line[1:])))
        elif kind == "R":
            self._serving(int(line[1:]))
        else:
            raise ValueError("unknown message")

    def _serving(self, pid):
        for listener in self._listeners():
            listener.serveHere(False)
        self.log.info(
            "smtp process [{pid}]: serving {names}",
            pid=pid,
            names=", ".join(l.listener.name for l in self._listeners()),
        )
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(pid)

    def died(self, child, reason):
        for listener in self._listeners():
            listener.serveHere(True)
        # The messages it acknowledged but did not announce are in active/;
        # those it was receiving are half-written in tmp/.
        self.mail.runner.scheduleNew()
        d = self.mail.context.runBlocking(self.mail.context.queue.removeOrphans)
        d.addCallback(self._removed)
        d.addErrback(lambda f: self.log.failure("cannot clean the queue's tmp/", f))

    def _removed(self, ids):
        for queueId in ids:
            self.log.info(
                "{queueId}: removed a partly received message left by the "
                "smtp process (it never got a 250)",
                queueId=queueId,
            )
