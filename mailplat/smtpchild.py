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
import signal
import struct
import sys
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
    Standard input and output, to and from the main process.  Lines sent
    before the pipe is connected wait; the process stops when the main
    process closes its end.
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self._pending = []

    def connectionMade(self):
        pending, self._pending = self._pending, None
        self.transport.write(b"".join(pending))

    def send(self, line):
        """
        Send one line (L{mailplat.smtpprocess}'s docstring lists them).
        """
        line = line.encode("utf-8", "backslashreplace") + b"\n"
        if not threadable.isInIOThread():
            self.reactor.callFromThread(self._write, line)
        else:
            self._write(line)

    def _write(self, line):
        if self._pending is not None:
            self._pending.append(line)
        elif self.transport is not None:
            self.transport.write(line)

    def connectionLost(self, reason):
        self.transport = None
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
    sys.path[:0] = [p for p in bootstrap["path"] if p not in sys.path]
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO
    from twisted.logger import globalLogBeginner

    channel = ParentChannel(reactor)
    globalLogBeginner.beginLoggingTo(
        [LogForwarder(channel)], redirectStandardIO=False
    )
    mail = SMTPChildService(bootstrap, channel, reactor)
    StandardIO(channel, reactor=reactor)
    mail.privilegedStartService()
    mail.startService()
    reactor.addSystemEventTrigger("before", "shutdown", mail.stopService)
    # The main process stops it by closing its standard input.  Ctrl-C at a
    # terminal reaches the whole process group: the main process handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(
        signal.SIGTERM, lambda *args: reactor.callFromThread(reactor.stop)
    )
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
