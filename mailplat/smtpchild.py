"""
The SMTP process of C{[smtp] separate_process = true}: C{python -m
mailplat.smtpchild}, started by L{mailplat.smtpprocess.SMTPProcessService}
(its docstring describes what the two processes say to each other).

It builds the same context as the main process (user database, recipient
resolver, policy checks, SASL, the queue's group commit), serves the
listening sockets it inherits, and replaces the queue runner with
L{ParentRunner}: a committed message is announced to the main process, which
delivers it.
"""

import dataclasses
import json
import os
import pickle
import select
import signal
import struct
import time

from twisted.internet import protocol
from twisted.logger import Logger, eventAsText
from twisted.python import threadable

from mailplat.events import ACCEPTED
from mailplat.listeners import ListenerService
from mailplat.logobserver import messageText, systemOf
from mailplat.service import MailplatService
from mailplat.smtpprocess import escape
from mailplat.tls import serverContextFactoryFromPEM


def readBootstrap(fd=0):
    """
    I{blocking}.  Read the record L{mailplat.smtpprocess.bootstrapRecord}
    wrote, and nothing more.
    """

    def readExactly(n):
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise SystemExit("mailplat.smtpchild: the parent closed stdin early")
            data += chunk
        return data

    (length,) = struct.unpack("!Q", readExactly(8))
    return pickle.loads(readExactly(length))


class ParentChannel(protocol.Protocol):
    """
    The pipes to and from the main process: lines are written to standard
    output with C{os.write}, all those of one reactor turn at once, and the
    last ones at shutdown (L{close}); standard input is only read for its
    end: the process stops when the main process closes it.

    Not Twisted's standard output transport: it is closed as soon as
    standard input ends, and again when the reactor disconnects everything
    at shutdown, and the lines of the sessions closed then would be lost.
    """

    def __init__(self, reactor, fd=1):
        self.reactor = reactor
        self.fd = fd
        self._lines = []
        self._scheduled = False
        self._closed = False

    def send(self, line):
        """
        Send one line (L{mailplat.smtpprocess}'s docstring lists them).
        """
        line = line.encode("utf-8", "backslashreplace") + b"\n"
        if not threadable.isInIOThread():
            self.reactor.callFromThread(self._add, line)
        else:
            self._add(line)

    def _add(self, line):
        if self._closed:
            return
        self._lines.append(line)
        if not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self.flush)

    def flush(self):
        """
        Write every waiting line (blocking: the main process always reads).
        """
        self._scheduled = False
        data, self._lines = b"".join(self._lines), []
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [])
                continue
            except OSError:
                # The main process is gone: nobody is left to tell.
                self._closed = True
                return
            view = view[n:]

    def close(self):
        """
        Write what is left; later lines are dropped.
        """
        self.flush()
        self._closed = True

    def connectionLost(self, reason):
        if self.reactor.running:
            self.reactor.stop()


class LogForwarder:
    """
    A log observer sending each event's text to the main process, which
    writes it to its own log.
    """

    def __init__(self, channel):
        self.channel = channel

    def __call__(self, event):
        text = messageText(event)
        if text is None:
            text = eventAsText(
                event,
                includeTraceback=True,
                includeTimestamp=False,
                includeSystem=False,
            )
        if not text:
            return
        level = event.get("log_level")
        self.channel.send(
            "L%r\t%s\t%s\t%s"
            % (
                event.get("log_time") or time.time(),
                "info" if level is None else level.name,
                escape(systemOf(event)),
                escape(text),
            )
        )


class ParentRunner:
    """
    Stands in for the queue runner: announces committed messages.
    """

    def __init__(self, channel):
        self.channel = channel

    def enqueue(self, item):
        # The main process emits the accepted event.
        self.channel.send(f"Q{item.id}\t{escape(item.envelope.sender)}")


class AdoptedListener(ListenerService):
    """
    Serves a listening socket inherited from the main process.
    """

    def __init__(self, listener, makeFactory, reactor, tlsOptions, fd, family):
        ListenerService.__init__(self, listener, makeFactory, reactor, tlsOptions)
        self.fd = fd
        self.family = family

    def bind(self):
        if self.port is not None:
            return
        self.port = self.reactor.adoptStreamPort(self.fd, self.family, self.buildFactory())
        os.close(self.fd)


class SMTPChildService(MailplatService):
    """
    L{MailplatService} with only the SMTP listeners, on inherited sockets,
    and no queue runner.
    """

    log = Logger()

    def __init__(self, bootstrap, channel, reactor):
        self.channel = channel
        self._sockets = {name: (fd, family) for name, fd, family in bootstrap["listeners"]}
        self._pem = bootstrap["tlsPEM"]
        config = bootstrap["config"]
        config = dataclasses.replace(
            config, smtp=dataclasses.replace(config.smtp, separateProcess=False)
        )
        MailplatService.__init__(self, config, reactor)

    def _makeRunner(self, queue, local, runDelivery):
        return ParentRunner(self.channel)

    def _startQueue(self, queue):
        channel = self.channel

        def forward(event):
            if event.kind != ACCEPTED:
                channel.send("E" + json.dumps(dataclasses.asdict(event)))

        self.events.subscribe(forward)

    def _makeListener(self, listener):
        socket = self._sockets.get(listener.name)
        if socket is None:
            return None
        return AdoptedListener(
            listener,
            self._makeFactory(listener),
            self.reactor,
            lambda: self.context.tlsOptions,
            *socket,
        )

    def _loadTLS(self):
        if self._pem is not None and self.context.tlsOptions is None:
            self.context.tlsOptions = serverContextFactoryFromPEM(*self._pem)

    def _prepareDirectories(self):
        # The main process created them and owns C{tmp/}'s clean-up.
        pass

    def startService(self):
        MailplatService.startService(self)
        self.channel.send(f"R{os.getpid()}")


def main():
    bootstrap = readBootstrap()
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO
    from twisted.logger import globalLogBeginner

    channel = ParentChannel(reactor)
    globalLogBeginner.beginLoggingTo(
        [LogForwarder(channel)], redirectStandardIO=False
    )
    mail = SMTPChildService(bootstrap, channel, reactor)
    # Standard input only: output goes through the channel (see its
    # docstring).
    StandardIO(channel, stdout=os.open(os.devnull, os.O_WRONLY), reactor=reactor)
    mail.privilegedStartService()
    mail.startService()
    reactor.addSystemEventTrigger("before", "shutdown", mail.stopService)
    reactor.addSystemEventTrigger("after", "shutdown", channel.close)
    # The main process stops it by closing its standard input.  Ctrl-C at a
    # terminal reaches the whole process group: the main process handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(
        signal.SIGTERM, lambda *args: reactor.callFromThread(reactor.stop)
    )
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
