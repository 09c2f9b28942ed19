"""
Socket options and writes for TCP connections.
"""

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


def setNoDelay(transport):
    """
    Turn Nagle's algorithm off on C{transport} (or the TCP transport under a
    TLS layer).  Replies are written in several pieces (a FETCH literal, then
    its closing parenthesis and the tagged OK); with Nagle on, the later
    pieces wait for the peer's delayed ACK, about 40 ms per reply.
    """
    seen = 0
    while transport is not None and seen < 4:
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:
                pass
            return
        transport = getattr(transport, "transport", None)
        seen += 1


def writeNow(transport, data):
    """
    C{transport.write(data)}, sent at once when C{transport} is a plain TCP
    connection with nothing waiting to be written.

    Twisted's C{write} queues the bytes and asks the reactor to watch the
    socket for writability (an C{epoll_ctl}), sends them on the next
    iteration and stops watching (another C{epoll_ctl}).  A short reply that
    fits the socket's send buffer -- nearly every SMTP reply and command --
    goes out here with one C{send()} and no reactor round trip; whatever is
    not sent (or any other transport: TLS, tests' C{StringTransport}) takes
    the ordinary path, after what was sent, so order is kept.
    """
    if (
        type(transport) in _PLAIN_TCP
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # EAGAIN, or an error the ordinary path will report
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def _plainTCP():
    from twisted.internet import tcp

    return (tcp.Server, tcp.Client)


_PLAIN_TCP = _plainTCP()


@implementer(IPushProducer)
class WriteGate:
    """
    A streaming producer registered with a transport while a long response
    or message is written: the transport pauses it when its buffer is full,
    and the writer waits on L{wait} instead of growing the buffer.
    """

    def __init__(self):
        self.paused = False
        self._waiting = []

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self):
        self.resumeProducing()

    def wait(self):
        """
        @return: a Deferred firing once the transport can take more.
        """
        if not self.paused:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d
