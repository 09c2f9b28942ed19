"""
The POP3 server: RFC 1939, CAPA (RFC 2449), STLS (RFC 2595) and AUTH
(RFC 5034, with the SASL mechanisms of L{mailplat.auth.sasl}) over the
mailplat store.

This is our own protocol rather than a subclass of L{twisted.mail.pop3.POP3},
which has no STLS, stuffs dots per 16 KiB chunk (a "." at a chunk boundary ends
a message early) and loses mail on DELE without QUIT (DESIGN section 7).

Sessions follow RFC 1939 section 3: AUTHORIZATION until a login succeeds, then
TRANSACTION on a snapshot of the INBOX taken at login (message numbers refer to
it for the whole session), then UPDATE on QUIT, the only time DELE marks take
effect.  A connection that drops without QUIT deletes nothing.
"""

import collections
import os

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mailplat._net import setNoDelay
from mailplat.auth.sasl import builtinMechanisms, decodeResponse, encodeChallenge
from mailplat.interfaces import (
    IMailUser,
    SASLAuthorizationRefused,
    SASLBadEncoding,
    SASLCancelled,
    SASLMalformedResponse,
)
from mailplat.pop3.locks import locksFor
from mailplat.pop3.multiline import DotStuffer, TopFilter
from mailplat.interfaces import MessageGone

AUTHORIZATION = "AUTHORIZATION"
TRANSACTION = "TRANSACTION"
UPDATE = "UPDATE"

# Stands in the line queue for a line longer than the limit.
_TOO_LONG = object()

# Commands valid in one state only (RFC 1939 sections 4-6, RFC 2595 section 4,
# RFC 5034 section 4).  CAPA and QUIT are valid in both.
_AUTHORIZATION_ONLY = frozenset({"USER", "PASS", "AUTH", "STLS"})
_TRANSACTION_ONLY = frozenset(
    {"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"}
)

_PLAINTEXT_REFUSED = (
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
    b"(SSL/TLS) connections."
)


def _openMaildrop(avatar):
    """
    I{blocking}: open the user's INBOX and snapshot it.

    @return: C{(folder, messages, uidValidity)}; C{messages} is a sequence
        of L{mailplat.storage.maildir.MessageInfo} that never changes.
    """
    folder = avatar.store.folder(avatar.address)
    view = getattr(folder, "view", None)
    if view is not None:
        messages = view()
        return folder, messages, messages.row.uidValidity
    return folder, folder.snapshot(), folder.uidValidity


def _cachedMaildrop(avatar, rescanInterval):
    """
    I{not blocking}: L{_openMaildrop} from the store's memory when it has
    the INBOX open and its picture of it is current (see
    L{mailplat.storage.maildir.MaildirFolder.cachedView}), else L{None}.
    """
    cachedFolder = getattr(avatar.store, "cachedFolder", None)
    folder = cachedFolder and cachedFolder(avatar.address)
    cachedView = getattr(folder, "cachedView", None)
    messages = cachedView and cachedView(rescanInterval)
    if messages is None:
        return None
    return folder, messages, messages.row.uidValidity


def _number(token, limit=999999999):
    """
    @return: the decimal number C{token}, C{limit} when it has more digits
        than that, or L{None} when it is not a number.
    """
    if not token.isdigit():
        return None
    return int(token) if len(token) <= 9 else limit


@implementer(IPushProducer)
class _Throttle:
    """
    Lets a message stream wait while the transport's buffer is full.

    @ivar paused: a L{Deferred} firing on resume, or L{None} when not paused.
    @ivar stopped: whether the connection went away.
    """

    paused = None
    stopped = False

    def pauseProducing(self):
        if self.paused is None:
            self.paused = Deferred()

    def resumeProducing(self):
        paused, self.paused = self.paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()


class POP3Server(Protocol, TimeoutMixin):
    """
    One POP3 session.

    Lines are read into a bounded queue and run one at a time: a command
    that waits (a login, a RETR, the UPDATE state) holds back the lines
    pipelined after it (RFC 2449 section 6.6), and the transport stops
    reading meanwhile.

    @ivar state: L{AUTHORIZATION}, L{TRANSACTION} or L{UPDATE}.
    @ivar chunkSize: how many bytes of a message RETR and TOP read at a time.
    """

    log = Logger()
    chunkSize = 64 * 1024

    def __init__(self, context, listener, locks):
        self.context = context
        self.listener = listener
        self.locks = locks
        self.callLater = context.clock.callLater
        self.maxLineLength = context.config.access.maxLineLength
        self.peer = "?"
        self._tls = False
        self._busy = False
        self._processing = False
        self._closing = False
        self._inputPaused = False
        self._pending = collections.deque()
        self._partial = bytearray()
        self._discarding = False
        self._avatar = None
        self._logout = None
        self._resetAuthorization()

    def _resetAuthorization(self):
        """
        Forget everything said in the AUTHORIZATION state so far: after STLS
        the client must start again (RFC 2595 section 4), and nothing sent in
        plaintext after the STLS line may be acted upon (DESIGN section 7).
        """
        self.state = AUTHORIZATION
        self._user = None
        self._continuation = None
        self._pending.clear()
        self._partial = bytearray()
        self._discarding = False

    # -- connection

    def connectionMade(self):
        setNoDelay(self.transport)
        self._tls = ISSLTransport(self.transport, None) is not None
        self._tlsOffered = (
            self.listener.tls == "starttls" and self.context.tlsOptions is not None
        )
        self.peer = getattr(self.transport.getPeer(), "host", "?")
        self.setTimeout(self.context.config.access.pop3Timeout)
        self.sendLine(b"+OK mailplat POP3 server ready")

    def connectionLost(self, reason):
        self.setTimeout(None)
        self._closing = True
        self._pending.clear()
        if self.state != UPDATE:
            self._endSession()

    def timeoutConnection(self):
        """
        Close an idle session (RFC 1939 section 3: an autologout timer of at
        least 10 minutes).  Nothing is deleted.  When a response is being
        streamed the close is silent, not to corrupt it.
        """
        self.log.info("pop3: idle timeout for {peer}", peer=self.peer)
        if not self._busy:
            self.sendLine(b"-ERR Disconnected for inactivity.")
        self._close()

    def _close(self):
        self._closing = True
        self._pending.clear()
        self.transport.loseConnection()

    def _endSession(self):
        """
        Release the maildrop lock and the avatar.  Idempotent.
        """
        if self._avatar is not None:
            self.locks.release(self._avatar.address, self)
            self._avatar = None
            logout, self._logout = self._logout, None
            logout()

    # -- input

    def sendLine(self, line):
        self.transport.write(line + b"\r\n")

    def _sendMultiline(self, status, lines):
        """
        Send a multi-line response (RFC 1939 section 3) whose lines never begin
        with ".".
        """
        self.transport.write(b"\r\n".join([status, *lines, b".\r\n"]))

    def dataReceived(self, data):
        """
        Split the input into lines ending in LF (CRLF, RFC 1939 section 3; a
        bare LF is tolerated).  A line over C{maxLineLength} is answered with
        an error and the rest of it is dropped as it arrives, never buffered.
        """
        if self._closing:
            return
        self.resetTimeout()
        if self._discarding:
            end = data.find(b"\n")
            if end == -1:
                return
            data = data[end + 1 :]
            self._discarding = False
        parts = data.split(b"\n")
        self._partial += parts[0]
        if len(parts) > 1:
            parts[0] = bytes(self._partial)
            self._partial = bytearray(parts.pop())
            for line in parts:
                if line.endswith(b"\r"):
                    line = line[:-1]
                tooLong = len(line) > self.maxLineLength
                self._pending.append(_TOO_LONG if tooLong else line)
        if len(self._partial) > self.maxLineLength:
            self._partial = bytearray()
            self._discarding = True
            self._pending.append(_TOO_LONG)
        self._processPending()

    def _processPending(self):
        """
        Run queued lines until one starts a command that has to wait.  The
        transport is paused while lines wait behind such a command, so the
        queue stays as small as one read.
        """
        if self._processing:
            return
        self._processing = True
        try:
            while self._pending and not self._busy and not self._closing:
                d = self._lineReceived(self._pending.popleft())
                if d is not None:
                    self._busy = True
                    d.addErrback(self._commandFailed).addBoth(self._commandDone)
        finally:
            self._processing = False
        if self._closing:
            return
        wait = self._busy and bool(self._pending)
        if wait != self._inputPaused:
            self._inputPaused = wait
            if wait:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _commandDone(self, ignored):
        self._busy = False
        self._processPending()

    def _commandFailed(self, failure):
        self.log.failure("pop3: command failed for {peer}", failure, peer=self.peer)
        if not self._closing:
            self.sendLine(b"-ERR [SYS/TEMP] Internal server error.")

    def _lineReceived(self, line):
        """
        Run one command line (RFC 1939 section 3: a case-insensitive keyword,
        then arguments separated by spaces).

        @return: a L{Deferred} when the command finishes later, else L{None}.
        """
        if line is _TOO_LONG:
            self._continuation = None
            self.sendLine(b"-ERR Line too long")
            return None
        if self._continuation is not None:
            continuation, self._continuation = self._continuation, None
            return continuation(line)
        keyword, _, arg = line.partition(b" ")
        name = keyword.decode("ascii", "replace").upper()
        handler = getattr(self, "do_" + name, None) if name.isalpha() else None
        if handler is None:
            self.sendLine(b"-ERR Unknown command")
        elif name in _TRANSACTION_ONLY and self.state != TRANSACTION:
            self.sendLine(b"-ERR Not logged in.")
        elif name in _AUTHORIZATION_ONLY and self.state != AUTHORIZATION:
            self.sendLine(b"-ERR Already logged in.")
        else:
            return handler(arg)
        return None

    # -- AUTHORIZATION state

    def do_CAPA(self, arg):
        """
        RFC 2449 section 5.  USER and the SASL mechanisms that send secrets
        in the clear are listed only under TLS, the only place they are
        accepted (RFC 2595 section 4 lets a server refuse plaintext logins
        before STLS).
        """
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self._tlsOffered and not self._tls:
            caps.append(b"STLS")
        if self._tls:
            caps.append(b"USER")
        offered = self._mechanisms().offered(self._tls)
        if offered:
            caps.append(b"SASL " + " ".join(offered).encode("ascii"))
        caps.append(b"IMPLEMENTATION mailplat")
        self._sendMultiline(b"+OK Capability list follows", caps)

    def do_STLS(self, arg):
        """
        RFC 2595 section 4.  Whatever the client pipelined after STLS was sent
        in plaintext and is thrown away, with the rest of the session state.
        """
        if self._tls:
            self.sendLine(b"-ERR Command not permitted when TLS active")
            return
        if not self._tlsOffered:
            self.sendLine(b"-ERR TLS not available.")
            return
        self.sendLine(b"+OK Begin TLS negotiation now")
        self._resetAuthorization()
        self.transport.startTLS(self.context.tlsOptions)
        self._tls = True
        self.log.info("pop3: STLS from {peer}", peer=self.peer)

    def do_USER(self, arg):
        """
        RFC 1939 section 7, refused before TLS.
        """
        if not self._tls:
            self.sendLine(_PLAINTEXT_REFUSED)
            return
        if not arg:
            self.sendLine(b"-ERR Syntax error")
            return
        self._user = arg
        self.sendLine(b"+OK")

    def do_PASS(self, arg):
        """
        RFC 1939 section 7.  The password is the rest of the line: it may
        contain spaces.
        """
        if not self._tls:
            self.sendLine(_PLAINTEXT_REFUSED)
            return None
        if self._user is None:
            self.sendLine(b"-ERR No username given.")
            return None
        user, self._user = self._user, None
        return self._login(UsernamePassword(user, arg))

    def _mechanisms(self):
        """
        The SASL mechanisms configured for this listener.
        """
        sasl = self.context.sasl
        return sasl if sasl is not None else builtinMechanisms()

    def do_AUTH(self, arg):
        """
        RFC 5034 section 4, with the mechanisms of L{mailplat.auth.sasl}
        (without an argument: the list of those offered here).  The initial
        response may come with the command or after a "+ ".  Before TLS
        only mechanisms that send no secret in the clear are accepted (none
        of the built-in ones).
        """
        mechanisms = self._mechanisms()
        offered = mechanisms.offered(self._tls)
        if not self._tls and not offered:
            self.sendLine(_PLAINTEXT_REFUSED)
            return None
        args = arg.split()
        if not args:
            self._sendMultiline(b"+OK", [name.encode("ascii") for name in offered])
            return None
        factory = mechanisms.get(args[0])
        if factory is None:
            self.sendLine(b"-ERR [AUTH] Unsupported authentication mechanism.")
            return None
        if not mechanisms.allows(factory, self._tls):
            self.sendLine(_PLAINTEXT_REFUSED)
            return None
        if len(args) > 2:
            self.sendLine(b"-ERR Syntax error")
            return None
        mechanism = factory.makeMechanism("pop3", self.context.config.hostname)
        exchange = (factory.name.encode("ascii"), mechanism)
        return self._saslStep(exchange, args[1] if len(args) == 2 else None)

    def _saslStep(self, exchange, line):
        """
        Pass one client response (C{line} as received; L{None}: no initial
        response) to the mechanism: send its challenge and wait for the
        next line, or log in with its credentials.
        """
        name, mechanism = exchange
        try:
            response = None if line is None else decodeResponse(line)
            result = mechanism.respond(response)
        except SASLCancelled:
            self.sendLine(b"-ERR Authentication cancelled.")
            return None
        except SASLBadEncoding:
            self.sendLine(b"-ERR Invalid base64 data.")
            return None
        except SASLMalformedResponse:
            self.sendLine(b"-ERR Invalid " + name + b" response.")
            return None
        except SASLAuthorizationRefused:
            # No proxy authorization: one may only act as oneself.
            self.sendLine(b"-ERR [AUTH] Authentication failed.")
            return None
        if isinstance(result, bytes):
            self.sendLine(b"+ " + encodeChallenge(result))
            self._continuation = lambda line: self._saslStep(exchange, line)
            return None
        return self._login(result)

    def _login(self, creds):
        """
        Check the credentials (the checker delays every failure), lock the
        maildrop, snapshot it and enter the TRANSACTION state.
        """
        userText = getattr(creds, "username", b"")
        if isinstance(userText, bytes):
            userText = userText.decode("utf-8", "replace")
        d = self.context.portal.login(creds, None, IMailUser)
        d.addCallbacks(self._loggedIn, self._loginFailed, errbackArgs=(userText,))
        return d

    def _loginFailed(self, failure, user):
        if failure.check(UnauthorizedLogin, UnhandledCredentials):
            self.log.info(
                "pop3: failed login for {user!r} from {peer}", user=user, peer=self.peer
            )
            reply = b"-ERR [AUTH] Authentication failed."
        else:
            self.log.failure("pop3: login error from {peer}", failure, peer=self.peer)
            reply = b"-ERR [SYS/TEMP] Authentication temporarily unavailable."
        if not self._closing:
            self.sendLine(reply)

    def _loggedIn(self, result):
        _, avatar, logout = result
        if self._closing:
            logout()
            return None
        if not self.locks.acquire(avatar.address, self):
            logout()
            self.log.info(
                "pop3: {user} from {peer} refused: maildrop in use",
                user=avatar.address,
                peer=self.peer,
            )
            self.sendLine(b"-ERR [IN-USE] Mailbox is locked by another POP3 session")
            return None
        self._avatar, self._logout = avatar, logout
        cached = _cachedMaildrop(avatar, self.context.config.storage.rescanInterval)
        if cached is not None:
            self._opened(cached)
            return None
        d = self.context.runBlocking(_openMaildrop, avatar)
        d.addCallbacks(self._opened, self._openFailed)
        return d

    def _opened(self, result):
        if self._closing:
            return
        self._folder, self._messages, self._uidValidity = result
        self._deleted = set()
        self.state = TRANSACTION
        self.log.info(
            "pop3: {user} logged in from {peer} ({count} messages)",
            user=self._avatar.address,
            peer=self.peer,
            count=len(self._messages),
        )
        self.sendLine(b"+OK Logged in.")

    def _openFailed(self, failure):
        self.log.failure("pop3: cannot open maildrop", failure)
        self._endSession()
        if not self._closing:
            self.sendLine(b"-ERR [SYS/TEMP] Unable to open the mailbox.")

    # -- TRANSACTION state

    def _message(self, token):
        """
        Look up message number C{token}, answering the client if there is none.

        @return: C{(number, info)} or L{None}.
        """
        n = _number(token)
        if n is None:
            self.sendLine(b"-ERR Syntax error")
        elif not 1 <= n <= len(self._messages):
            self.sendLine(b"-ERR No such message")
        elif n - 1 in self._deleted:
            self.sendLine(b"-ERR Message already deleted")
        else:
            return n, self._messages[n - 1]
        return None

    def _live(self):
        return [
            (n, info)
            for n, info in enumerate(self._messages, 1)
            if n - 1 not in self._deleted
        ]

    def _uidl(self, info):
        """
        The unique-id of a message (RFC 1939 section 7): UID and UIDVALIDITY
        in hex, as Dovecot's default C{%08Xu%08Xv}, so it stays the same across
        sessions, restarts and IMAP flag changes.
        """
        return b"%08X%08X" % (info.uid, self._uidValidity)

    def _listing(self, arg, render, status):
        """
        LIST and UIDL: one message, or all that are not marked deleted.
        """
        args = arg.split()
        if len(args) > 1:
            self.sendLine(b"-ERR Syntax error")
        elif args:
            found = self._message(args[0])
            if found is not None:
                self.sendLine(b"+OK %d %s" % (found[0], render(found[1])))
        else:
            live = self._live()
            lines = [b"%d %s" % (n, render(info)) for n, info in live]
            self._sendMultiline(status(live), lines)

    def do_STAT(self, arg):
        """
        RFC 1939 section 5: count and size of the messages not marked deleted.
        """
        live = self._live()
        self.sendLine(b"+OK %d %d" % (len(live), sum(i.size for _, i in live)))

    def do_LIST(self, arg):
        """
        RFC 1939 section 5.  Sizes are the stored sizes, which are the octets
        sent before byte-stuffing since messages are stored with CRLF.
        """
        self._listing(
            arg,
            lambda info: b"%d" % info.size,
            lambda live: b"+OK %d messages (%d octets)"
            % (len(live), sum(i.size for _, i in live)),
        )

    def do_UIDL(self, arg):
        """
        RFC 1939 section 7.
        """
        self._listing(arg, self._uidl, lambda live: b"+OK Unique-ID listing follows")

    def do_RETR(self, arg):
        """
        RFC 1939 section 5.
        """
        args = arg.split()
        if len(args) != 1:
            self.sendLine(b"-ERR Syntax error")
            return None
        found = self._message(args[0])
        if found is None:
            return None
        info = found[1]
        return self._sendMessage(info, b"+OK %d octets" % info.size, None)

    def do_TOP(self, arg):
        """
        RFC 1939 section 7: the header, the blank line and the first C{k}
        lines of the body (the whole message if it has fewer).
        """
        args = arg.split()
        lines = _number(args[1]) if len(args) == 2 else None
        if lines is None:
            self.sendLine(b"-ERR Syntax error")
            return None
        found = self._message(args[0])
        if found is None:
            return None
        return self._sendMessage(found[1], b"+OK Top of message follows", lines)

    def _sendMessage(self, info, status, bodyLines):
        """
        Send a message as a multi-line response, dot-stuffed.  A message of
        at most C{chunkSize} bytes goes out in one write: read on the
        reactor thread when the kernel has it in memory (see
        L{mailplat.storage.nowait}), else in one thread hop.  A larger one
        is streamed (L{_streamMessage}).

        @return: L{None} when done, else a L{Deferred}.
        """
        if info.size > self.chunkSize:
            return self._streamMessage(info, status, bodyLines)
        readNowait = getattr(self._folder, "readNowait", None)
        data = readNowait and readNowait(info, self._closeLater)
        if data is not None:
            self._sendWhole(data, status, bodyLines)
            return None
        d = self.context.runBlocking(self._folder.read, info)

        def gone(failure):
            failure.trap(MessageGone)
            self.sendLine(b"-ERR [SYS/TEMP] Message was removed by another session.")

        def read(data):
            if len(data) > self.chunkSize:
                # It is not the size the index says: stream it after all.
                return self._streamMessage(info, status, bodyLines)
            if not self._closing:
                self._sendWhole(data, status, bodyLines)

        return d.addCallbacks(read, gone)

    def _sendWhole(self, data, status, bodyLines):
        if bodyLines is not None:
            data = TopFilter(bodyLines).feed(data)
        stuffer = DotStuffer()
        self.transport.write(b"".join([status, b"\r\n", stuffer.stuff(data), stuffer.end()]))
        self.resetTimeout()

    def _closeLater(self, fd):
        self.context.runBlocking(os.close, fd).addErrback(lambda f: None)

    @inlineCallbacks
    def _streamMessage(self, info, status, bodyLines):
        """
        Stream a message as a multi-line response: read in C{chunkSize} pieces
        off the reactor thread, stuffed across chunk boundaries, pausing while
        the transport's buffer is full.
        """
        try:
            f = yield self.context.runBlocking(self._folder.openMessage, info)
        except MessageGone:
            self.sendLine(b"-ERR [SYS/TEMP] Message was removed by another session.")
            return
        throttle = _Throttle()
        stuffer = DotStuffer()
        top = TopFilter(bodyLines) if bodyLines is not None else None
        self.sendLine(status)
        self.transport.registerProducer(throttle, True)
        try:
            while not (throttle.stopped or self._closing):
                if throttle.paused is not None:
                    yield throttle.paused
                    continue
                chunk = yield self.context.runBlocking(f.read, self.chunkSize)
                if not chunk:
                    break
                if top is not None:
                    chunk = top.feed(chunk)
                self.transport.write(stuffer.stuff(chunk))
                self.resetTimeout()
                if top is not None and top.done:
                    break
        except Exception:
            self.log.failure("pop3: error reading message {uid}", uid=info.uid)
            # The "+OK" is out: only closing without the final "." tells the
            # client the message is incomplete.
            self._close()
            return
        finally:
            self.transport.unregisterProducer()
            f.close()
        if not (throttle.stopped or self._closing):
            self.transport.write(stuffer.end())

    def do_DELE(self, arg):
        """
        RFC 1939 section 5: only marks the message; it is removed on QUIT.
        """
        args = arg.split()
        if len(args) != 1:
            self.sendLine(b"-ERR Syntax error")
            return
        found = self._message(args[0])
        if found is not None:
            self._deleted.add(found[0] - 1)
            self.sendLine(b"+OK Marked to be deleted.")

    def do_RSET(self, arg):
        """
        RFC 1939 section 5: unmark every message.
        """
        self._deleted.clear()
        self.sendLine(
            b"+OK maildrop has %d messages (%d octets)"
            % (len(self._messages), sum(i.size for i in self._messages))
        )

    def do_NOOP(self, arg):
        self.sendLine(b"+OK")

    # -- UPDATE state

    def do_QUIT(self, arg):
        """
        RFC 1939 sections 4 and 6: in the TRANSACTION state, enter UPDATE and
        remove the messages marked deleted, then close.
        """
        if self.state != TRANSACTION:
            self.sendLine(b"+OK Bye")
            self._close()
            return None
        self.state = UPDATE
        infos = [self._messages[i] for i in sorted(self._deleted)]
        if not infos:
            return self._finishUpdate(None, [], b"+OK Logging out.")
        d = self.context.runBlocking(self._folder.remove, infos)
        d.addCallback(
            self._finishUpdate,
            infos,
            b"+OK Logging out, %d messages deleted." % len(infos),
        )
        d.addErrback(self._updateFailed)
        return d

    def _finishUpdate(self, ignored, infos, reply):
        self.log.info(
            "pop3: {user} quit from {peer}, {count} messages deleted",
            user=self._avatar.address,
            peer=self.peer,
            count=len(infos),
        )
        self._endSession()
        if not self._closing:
            self.sendLine(reply)
        self._close()

    def _updateFailed(self, failure):
        self.log.failure("pop3: removing messages failed", failure)
        self._endSession()
        if not self._closing:
            self.sendLine(b"-ERR [SYS/TEMP] Some deleted messages not removed.")
        self._close()


class POP3Factory(Factory):
    """
    Builds L{POP3Server}s for one listener.

    @ivar context: the L{mailplat.context.ServerContext}.
    @ivar listener: the L{mailplat.config.schema.ListenerConfig}; its C{tls}
        decides whether STLS is offered (C{starttls}).  With C{implicit} the
        service wraps this factory in TLS.
    @ivar locks: the L{mailplat.pop3.locks.MaildropLocks}, shared by every
        POP3 factory of the same store.
    """

    noisy = False

    protocol = POP3Server

    def __init__(self, context, listener):
        self.context = context
        self.listener = listener
        self.locks = locksFor(context.store)

    def buildProtocol(self, addr):
        p = self.protocol(self.context, self.listener, self.locks)
        p.factory = self
        return p
