"""
The queue runner's control socket: a UNIX socket in the queue directory
through which C{mailplat queue flush|hold|release|delete} tell a running
server what they did (or ask it to flush), so that it acts at once.

One request per line, one reply line each::

    flush            ->  ok        try every message now
    flush ID         ->  ok        try one message now
    release ID       ->  ok        a held message is back in active/: try it
    forget ID        ->  ok        a message was held or deleted: drop its timer

The socket is created with mode 0600 inside the 0700 queue directory: only
the server's user (and root) can talk to it.
"""

import os

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

_VERBS = ("flush", "release", "forget")


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 512

    def lineReceived(self, line):
        try:
            words = line.decode("ascii").split()
        except UnicodeDecodeError:
            words = []
        if not words or words[0] not in _VERBS or len(words) > 2:
            self.sendLine(b"error unknown request")
            return
        verb, queueId = words[0], (words[1] if len(words) > 1 else None)
        if verb != "flush" and queueId is None:
            self.sendLine(b"error " + verb.encode() + b" needs a queue id")
            return
        if queueId is not None and not (queueId.isalnum() and queueId.isascii()):
            self.sendLine(b"error bad queue id")
            return
        runner = self.factory.runner
        ControlService.log.info(
            "queue: control request: {request}", request=" ".join(words)
        )
        if verb == "flush":
            d = runner.flush(queueId)
        elif verb == "release":
            runner.schedule(queueId, 0, force=True)
            d = defer.succeed(None)
        else:
            runner.forget(queueId)
            d = defer.succeed(None)
        d.addCallbacks(
            lambda _: self.sendLine(b"ok"),
            lambda f: self.sendLine(b"error " + str(f.value).encode("utf-8", "replace")),
        )


class ControlService(service.Service):
    """
    Listens on the control socket while the server runs.
    """

    log = Logger()

    def __init__(self, path, runner, reactor):
        self.path = path
        self.runner = runner
        self.reactor = reactor
        self.port = None

    def startService(self):
        service.Service.startService(self)
        from twisted.internet.protocol import Factory

        factory = Factory.forProtocol(ControlProtocol)
        factory.runner = self.runner
        factory.noisy = False
        try:
            self.port = self.reactor.listenUNIX(
                self.path, factory, mode=0o600, wantPID=True
            )
        except Exception as e:
            self.log.error(
                "queue: cannot listen on the control socket {path}: {error}; "
                "`mailplat queue` changes take effect at the next attempt",
                path=self.path, error=e,
            )

    def stopService(self):
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


def sendRequest(path, request, timeout=10.0):
    """
    I{blocking}.  Send one request to a running server (for the admin
    command).

    @return: the reply line, or L{None} when no server listens.
    """
    import socket

    if not os.path.exists(path):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None
    try:
        s.sendall(request.encode("ascii") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        return data.decode("utf-8", "replace").strip()
    finally:
        s.close()
