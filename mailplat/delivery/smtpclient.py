"""
The SMTP client protocol used for outbound delivery (RFC 5321): reading
replies, sending commands, streaming DATA.

This is our own protocol class rather than a subclass of
C{twisted.mail.smtp.ESMTPClient}: that class dot-stuffs each chunk of the
message on its own (a "." at a chunk boundary ends the message early:
DESIGN.md section 7), sends one message per connection, has no per-recipient
results, no DSN, SIZE or SMTPUTF8 parameters and a single timeout for every
command.  Here L{SMTPClientProtocol} only moves replies and bytes; the
conversation (L{mailplat.delivery.session}) is written as plain sequential
code on top of it, one Deferred per reply.
"""

import re

from twisted.internet import defer, interfaces, protocol
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger

from mailplat._net import WriteGate, setNoDelay, writeNow

_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|$)(.*)$", re.S)
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")

#: RFC 5321 4.5.3.1.5 sets 512 octets for a reply line; be generous.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100


class SMTPClientError(Exception):
    """
    Base class of the conversation's failures.
    """


class ConnectionClosed(SMTPClientError):
    """
    The connection was lost (or closed by the peer) while a reply was
    awaited.
    """


class ReplyTimeout(SMTPClientError):
    """
    No complete reply came in time; the connection was aborted.
    """


class ProtocolError(SMTPClientError):
    """
    The peer sent something that is not an SMTP reply.
    """


class Reply:
    """
    One (possibly multi-line) SMTP reply.

    @ivar code: the three-digit reply code, an L{int}.
    @ivar lines: the text of each line, without code and separator.
    """

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    def __repr__(self):
        return f"<Reply {self.code} {self.lines!r}>"

    @property
    def positive(self):
        return 200 <= self.code < 400

    @property
    def transient(self):
        return 400 <= self.code < 500

    @property
    def permanent(self):
        return self.code >= 500

    def enhancedStatus(self, default=None):
        """
        The RFC 3463 status code the reply gives (RFC 2034), or one derived
        from the reply code: C{"2.0.0"}, C{"4.0.0"}, C{"5.0.0"}.
        """
        first = self.lines[0] if self.lines else ""
        m = _ENHANCED.match(first)
        if m and m.group(1) == str(self.code)[0]:
            return ".".join(m.groups())
        if default is not None:
            return default
        return f"{self.code // 100}.0.0"

    def text(self):
        """
        The reply as one line for logs and bounces: C{"550 5.1.1 <x>: no such
        user"}.
        """
        return f"{self.code} " + " ".join(line.strip() for line in self.lines).strip()


class SMTPClientProtocol(protocol.Protocol):
    """
    Reads SMTP replies and writes commands.  L{nextReply} returns the next
    reply in order, so pipelined commands (RFC 2920) are matched with their
    replies by the order of the calls.

    @ivar clock: an L{IReactorTime} for reply timeouts.
    @ivar closed: whether the connection is gone.
    """

    log = Logger()

    def __init__(self, clock):
        self.clock = clock
        self.closed = False
        self.closeReason = None
        self._buffer = b""
        self._lines = []
        self._replies = []
        self._waiters = []
        self._gate = None

    # -- connection

    def connectionMade(self):
        # Commands, message data and the final "." are separate writes: with
        # Nagle's algorithm on, each later one waits for the peer's delayed
        # ACK (about 40 ms a message).
        setNoDelay(self.transport)

    def connectionLost(self, reason=ConnectionDone()):
        self.closed = True
        self.closeReason = reason
        waiters, self._waiters = self._waiters, []
        for d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.errback(ConnectionClosed(_reasonText(reason)))
        if self._gate is not None:
            self._gate.stopProducing()

    def abort(self):
        """
        Drop the connection at once.
        """
        if not self.closed and self.transport is not None:
            self.transport.abortConnection()

    @property
    def secure(self):
        return interfaces.ISSLTransport(self.transport, None) is not None

    def startTLS(self, contextFactory):
        """
        Switch the connection to TLS (after "220" to STARTTLS, RFC 3207).
        Replies buffered before the switch are discarded: a peer may not send
        anything between its 220 and the handshake.
        """
        self._buffer = b""
        self._lines = []
        self._replies = []
        self.transport.startTLS(contextFactory)

    # -- replies

    def dataReceived(self, data):
        self._buffer += data
        while True:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    self._protocolError("reply line too long")
                return
            line, self._buffer = self._buffer[:nl], self._buffer[nl + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_REPLY_LINE:
                self._protocolError("reply line too long")
                return
            m = _REPLY_LINE.match(line)
            if m is None:
                self._protocolError(f"not an SMTP reply: {line[:80]!r}")
                return
            code = int(m.group(1))
            if self._lines and self._lines[0][0] != code:
                self._protocolError("reply code changed within a reply")
                return
            self._lines.append((code, m.group(3).decode("utf-8", "replace")))
            if len(self._lines) > MAX_REPLY_LINES:
                self._protocolError("reply has too many lines")
                return
            if m.group(2) != b"-":
                reply = Reply(code, [text for _, text in self._lines])
                self._lines = []
                self._deliverReply(reply)
                if self.closed:
                    return

    def _deliverReply(self, reply):
        if self._waiters:
            d, timer = self._waiters.pop(0)
            if timer.active():
                timer.cancel()
            d.callback(reply)
        else:
            self._replies.append(reply)

    def _protocolError(self, why):
        self.log.info("smtp client: protocol error from the peer: {why}", why=why)
        waiters, self._waiters = self._waiters, []
        for d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.errback(ProtocolError(why))
        self.abort()

    def earlyReply(self):
        """
        @return: a reply the peer sent before it was asked for one (a server
            giving up in the middle of DATA), or L{None}.
        """
        return self._replies.pop(0) if self._replies else None

    def nextReply(self, timeout):
        """
        @return: a Deferred firing with the next L{Reply}, or failing with
            L{ConnectionClosed} or L{ReplyTimeout} (the connection is then
            aborted).
        """
        if self._replies:
            return defer.succeed(self._replies.pop(0))
        if self.closed:
            return defer.fail(ConnectionClosed(_reasonText(self.closeReason)))
        d = defer.Deferred()
        entry = [d, None]

        def expired():
            if entry in self._waiters:
                self._waiters.remove(entry)
            d.errback(ReplyTimeout(f"timeout after {timeout:g}s"))
            self.abort()

        entry[1] = self.clock.callLater(timeout, expired)
        self._waiters.append(entry)
        return d

    # -- sending

    def sendCommand(self, command):
        """
        Send one command line (a L{str}, UTF-8 on the wire).
        """
        if not self.closed:
            writeNow(self.transport, command.encode("utf-8") + b"\r\n")

    def sendCommands(self, commands):
        """
        Send several command lines in one write (a pipelined group).
        """
        if not self.closed:
            writeNow(
                self.transport,
                b"".join(c.encode("utf-8") + b"\r\n" for c in commands)
            )

    @defer.inlineCallbacks
    def sendStream(self, chunks, timeout):
        """
        Stream message data: C{chunks} is a callable returning a Deferred
        firing with the next encoded bytes (L{None} at the end).  Writing
        pauses while the transport's buffer is full; a pause longer than
        C{timeout} (RFC 5321 4.5.3.2.5: 3 minutes per data block) aborts the
        connection.

        @raise ConnectionClosed: the connection was lost meanwhile.
        @raise ReplyTimeout: the peer stopped reading.
        """
        gate = self._gate = WriteGate()
        self.transport.registerProducer(gate, True)
        try:
            while True:
                data = yield chunks()
                if self.closed:
                    raise ConnectionClosed(_reasonText(self.closeReason))
                if data is None:
                    return
                if not data:
                    continue
                self.transport.write(data)
                if gate.paused:
                    waited = gate.wait()
                    timer = self.clock.callLater(timeout, self.abort)
                    yield waited
                    if timer.active():
                        timer.cancel()
                    if self.closed:
                        raise ReplyTimeout(
                            f"peer stopped reading data for {timeout:g}s"
                        )
        finally:
            self._gate = None
            if not self.closed:
                self.transport.unregisterProducer()


def _reasonText(reason):
    if reason is None:
        return "connection closed"
    value = getattr(reason, "value", reason)
    if isinstance(value, ConnectionDone):
        return "connection closed by the peer"
    text = str(value).strip() or value.__class__.__name__
    return f"lost connection: {text}"
