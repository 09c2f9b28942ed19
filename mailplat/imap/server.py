"""
The IMAP4rev1 server (RFC 3501) with IDLE (RFC 2177), NAMESPACE (RFC 2342),
UIDPLUS (RFC 4315), MOVE (RFC 6851), UNSELECT (RFC 3691), ENABLE (RFC 5161),
ID (RFC 2971), LITERAL+ (RFC 7888), SPECIAL-USE (RFC 6154), CHILDREN (RFC
3348), APPENDLIMIT (RFC 7889), QUOTA (RFC 9208), CONDSTORE (RFC 7162) and
SASL-IR (RFC 4959).

This is our own protocol, not a subclass of
L{twisted.mail.imap4.IMAP4Server}: that class frames literals without a
size decision before the continuation, so APPENDLIMIT's C{NO [TOOBIG]}
cannot come before the C{+}; its argument parsers raise bare exceptions,
keep quoted-string escapes, crash on header SEARCH and APPEND without
flags; it rebuilds FETCH data from parsed headers; and its session logic
(SELECT responses, implicit C{\\Seen}, IDLE, STARTTLS) needed replacing
anyway (DESIGN.md section 7).  See docs/architecture.md.

How a connection works:

 - Input is framed into commands: lines, and literals whose size is
   checked before the C{+} continuation is sent (or, for LITERAL+, before
   the data is kept).  Lines and literals are bounded; the message of an
   APPEND is spooled (to disk when large), never held whole in memory.
 - Commands run one at a time: bytes pipelined behind a command that waits
   on the disk or the password checker stay buffered (and the transport is
   paused if they pile up) until it is done (RFC 3501 5.5).
 - STARTTLS discards whatever the client sent after it in the clear and
   resets the session (RFC 3501 6.2.1; the plaintext command injection of
   CVE-2011-0411).  LOGIN and AUTHENTICATE are refused before TLS, before
   any continuation, so the password is never sent in the clear.
 - Blocking store calls run through C{context.runBlocking}.
 - After each command in the selected state, changes made by others are
   reported (EXISTS, FETCH, EXPUNGE), except that EXPUNGE waits during
   FETCH, STORE and SEARCH (RFC 3501 7.4.1); during IDLE they are reported
   as they happen.
"""

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer, protocol
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from mailplat._net import setNoDelay
from mailplat.auth.sasl import builtinMechanisms, decodeResponse, encodeChallenge
from mailplat.imap.framing import (
    LITERAL,
    BytesSink,
    MessageSpool,
    commandHead,
    isMessageLiteral,
)
from mailplat.imap.mailboxcommands import MailboxCommands
from mailplat.imap.message import orderedFlags
from mailplat.imap.messagecommands import MessageCommands
from mailplat.imap.responses import (
    AUTH,
    AUTH_FAILED,
    NO_PLAINTEXT,
    SELECTED,
    UNAUTH,
    Refused,
)
from mailplat.imap.shared import sharedFor
from mailplat.imap.wire import (
    ATOM_CHARS,
    TAG_CHARS,
    Arguments,
    Literal,
    ParseError,
    flagList,
    quoted,
)
from mailplat.interfaces import (
    IMailUser,
    NoSuchFolder,
    SASLAuthorizationRefused,
    SASLBadEncoding,
    SASLCancelled,
    SASLMalformedResponse,
)

ANY = (UNAUTH, AUTH, SELECTED)
LOGGED_IN = (AUTH, SELECTED)

_UID_COMMANDS = (b"FETCH", b"STORE", b"SEARCH", b"COPY", b"MOVE", b"EXPUNGE")
# RFC 2971 3.3: at most 30 field-value pairs, fields of at most 30 octets,
# values of at most 1024.
_ID_LIMITS = (30, 30, 1024)
SERVER_ID = (b"name", b"mailplat", b"vendor", b"mailplat")
# Returned by IMAPServer._saslStep: a challenge was sent.
_CHALLENGED = object()


class IMAPServer(MailboxCommands, MessageCommands, protocol.Protocol, TimeoutMixin):
    """
    One IMAP connection.

    @ivar context: the L{mailplat.context.ServerContext}.
    @ivar listener: the L{mailplat.config.schema.ListenerConfig} it came in on.
    @ivar state: C{unauth}, C{auth} or C{select}.
    @ivar user: the L{IMailUser} once logged in.
    @ivar selected: the L{SelectedFolder}, in the selected state.
    """

    log = Logger()

    # RFC 3501 5.4 asks for at least 30 minutes once logged in (the
    # configured imapTimeout); before that a minute is plenty.
    preauthTimeout = 60

    def __init__(self, context, listener, connections, poller):
        self.context = context
        self.listener = listener
        self.connections = connections
        self.poller = poller
        self.callLater = context.clock.callLater
        access = context.config.access
        self.maxLine = access.maxLineLength
        self.appendLimit = access.maxLiteralSize
        self.literalLimit = min(access.maxLineLength, access.maxLiteralSize)
        self.commandLimit = 8 * access.maxLineLength
        self.rescanInterval = context.config.storage.rescanInterval
        self.state = UNAUTH
        self.user = None
        self.selected = None
        self.condstore = False
        self.peer = "-"
        self._tls = False
        self._connected = False
        self._closing = False
        self._logout = None
        self._counted = False
        self._buffer = bytearray()
        self._parts = None
        self._size = 0
        self._literal = None
        self._discard = 0
        self._discardCommand = False
        self._processing = False
        self._busy = False
        self._inputPaused = False
        self._continuation = None
        self._idleTag = None
        self._idleDone = None
        self._watching = None
        self._refreshing = None
        self._refreshAgain = False
        self._refreshWaiters = []

    # -- connection

    def connectionMade(self):
        setNoDelay(self.transport)
        self._connected = True
        self._tls = ISSLTransport(self.transport, None) is not None
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", str(peer))
        self.setTimeout(self.preauthTimeout)
        self.sendLine(
            b"* OK [CAPABILITY " + self.capabilities() + b"] "
            + self.context.config.hostname.encode("ascii", "replace")
            + b" IMAP4rev1 server ready"
        )

    def connectionLost(self, reason=None):
        self._connected = False
        self._closing = True
        self.setTimeout(None)
        self._buffer = bytearray()
        self._unselect()
        if self._counted:
            self.connections.release(self.user.address)
            self._counted = False
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()

    def timeoutConnection(self):
        """
        Autologout (RFC 3501 5.4); an idling client renews it by ending IDLE
        and starting it again, as RFC 2177 asks every 29 minutes.
        """
        self.log.info("imap: autologout of {peer}", peer=self.peer)
        self.sendLine(b"* BYE Autologout; idle for too long")
        self._close()

    def _close(self):
        self._closing = True
        self._buffer = bytearray()
        self._unselect()
        self.transport.loseConnection()

    def _unselect(self):
        """
        Leave the selected state without expunging.
        """
        self._idleTag = None
        self._continuation = None
        selected, self.selected = self.selected, None
        if selected is not None:
            selected.folder.removeListener(self._folderChangedInThread)
            if self._watching is not None:
                self.poller.unwatch(self._watching)
                self._watching = None
        if self.state == SELECTED:
            self.state = AUTH

    def capabilities(self):
        """
        RFC 3501 7.2.1: plaintext authentication is advertised only under TLS;
        before it, LOGINDISABLED (and STARTTLS where this listener offers it),
        and only the SASL mechanisms that send no secret in the clear.
        """
        caps = [b"IMAP4rev1"]
        offered = self._mechanisms().offered(self._tls)
        if not self._tls:
            if self._canStartTLS():
                caps.append(b"STARTTLS")
            caps.append(b"LOGINDISABLED")
        if offered:
            caps += [b"AUTH=" + name.encode("ascii") for name in offered]
            caps.append(b"SASL-IR")
        caps += [
            b"LITERAL+", b"ID", b"ENABLE", b"IDLE", b"NAMESPACE", b"UNSELECT",
            b"UIDPLUS", b"MOVE", b"CHILDREN", b"SPECIAL-USE", b"QUOTA",
            b"QUOTA=RES-STORAGE", b"CONDSTORE", b"APPENDLIMIT=%d" % self.appendLimit,
        ]
        return b" ".join(caps)

    def _canStartTLS(self):
        return (
            not self._tls
            and self.context.tlsOptions is not None
            and self.listener.tls == "starttls"
        )

    # -- output

    def sendLine(self, line):
        if not self._closing:
            self.transport.write(line + b"\r\n")

    def untagged(self, text):
        self.sendLine(b"* " + text)

    def tagged(self, tag, status, text):
        self.sendLine(tag + b" " + status + b" " + text)

    # -- input framing

    def dataReceived(self, data):
        if self._closing:
            return
        self.resetTimeout()
        self._buffer += data
        self._process()

    def _process(self):
        """
        Frame the buffered input into lines and literals and run the
        commands they make, one at a time.
        """
        if self._processing:
            return
        self._processing = True
        try:
            while not self._closing:
                buffer = self._buffer
                if self._discard:
                    n = min(self._discard, len(buffer))
                    del buffer[:n]
                    self._discard -= n
                    if self._discard:
                        break
                    continue
                if self._literal is not None:
                    if not buffer:
                        break
                    remaining, sink = self._literal
                    chunk = bytes(buffer[:remaining])
                    del buffer[: len(chunk)]
                    sink.write(chunk)
                    remaining -= len(chunk)
                    if remaining:
                        self._literal = (remaining, sink)
                        break
                    self._literal = None
                    self._parts.append(Literal(sink.finish(), sink.size))
                    continue
                if self._busy and self._continuation is None:
                    break
                end = buffer.find(b"\n")
                if end == -1 or end > self.maxLine + 1:
                    if end != -1 or len(buffer) > self.maxLine + 1:
                        self._lineTooLong(len(buffer))
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if self._continuation is not None:
                    continuation, self._continuation = self._continuation, None
                    continuation(line)
                    continue
                self._commandLine(line)
        finally:
            self._processing = False
        if not self._closing and self._connected:
            wait = self._busy and len(self._buffer) > self.maxLine
            if wait != self._inputPaused:
                self._inputPaused = wait
                if wait:
                    self.transport.pauseProducing()
                else:
                    self.transport.resumeProducing()

    def _lineTooLong(self, size):
        """
        A line longer than C{maxLineLength}: the rest of it cannot be told
        from a new command, so the connection ends.
        """
        self.log.warn(
            "imap: line of {size} bytes or more from {peer}, disconnecting",
            size=size,
            peer=self.peer,
        )
        self.sendLine(b"* BYE Command line too long")
        self._close()

    def _commandLine(self, line):
        """
        One line of a command: the whole command, or a part that ends with a
        literal's octet count.
        """
        if self._parts is None:
            self._parts = []
            self._size = 0
            self._discardCommand = False
        self._size += len(line)
        m = LITERAL.search(line)
        self._parts.append(line[: m.start()] if m else line)
        if self._size > self.commandLimit and not self._discardCommand:
            self.sendLine(b"* BYE Command too long")
            self._close()
            return
        if m is None:
            parts, self._parts = self._parts, None
            if not self._discardCommand:
                self._dispatch(parts)
            return
        binary, size, sync = bool(m.group(1)), int(m.group(2)), not m.group(3)
        if self._discardCommand:
            if sync:
                self._parts = None
            else:
                self._discard = size
            return
        refusal, sink = self._acceptLiteral(binary, size, sync)
        if refusal is not None:
            self.sendLine(refusal)
            if sync:
                # The client will not send the literal (RFC 3501 7.5).
                self._parts = None
            else:
                self._discard = size
                self._discardCommand = True
            return
        if sink is None:
            sink = BytesSink()
            self._size += size
        sink.size = size
        self._literal = (size, sink)
        if size == 0:
            self._literal = None
            self._parts.append(Literal(sink.finish(), 0))
        if sync:
            self.sendLine(b"+ Ready for literal data")

    def _acceptLiteral(self, binary, size, sync):
        """
        Decide on a literal before its data: RFC 7889 asks for C{NO
        [TOOBIG]} before the continuation for an APPEND over the limit, and a
        password must not be sent before TLS.

        @return: C{(refusal, sink)}: a response line refusing the literal,
            or L{None} and where to put it (L{None} for the command's own
            small buffer).
        """
        tag, command = commandHead(self._parts)
        if tag is None:
            return b"* BAD Invalid tag", None
        if binary:
            return tag + b" BAD Binary literals are not supported", None
        if command in (b"LOGIN", b"AUTHENTICATE") and self.state == UNAUTH:
            if not self._tls:
                return tag + b" NO " + NO_PLAINTEXT, None
        if command == b"APPEND" and self.state in LOGGED_IN and isMessageLiteral(self._parts):
            if size > self.appendLimit:
                self.log.info(
                    "imap: APPEND of {size} octets from {peer} refused (limit {limit})",
                    size=size, peer=self.peer, limit=self.appendLimit,
                )
                return (
                    tag + b" NO [TOOBIG] Message too large (APPENDLIMIT %d)"
                    % self.appendLimit
                ), None
            return None, MessageSpool()
        if size > self.literalLimit:
            return tag + b" BAD [TOOBIG] Literal too long (at most %d octets)" % (
                self.literalLimit,
            ), None
        if self._size + size > self.commandLimit:
            return tag + b" BAD [TOOBIG] Command too long", None
        return None, None

    # -- dispatch

    _commands = {
        b"CAPABILITY": ("CAPABILITY", ANY),
        b"NOOP": ("NOOP", ANY),
        b"LOGOUT": ("LOGOUT", ANY),
        b"ID": ("ID", ANY),
        b"STARTTLS": ("STARTTLS", (UNAUTH,)),
        b"LOGIN": ("LOGIN", (UNAUTH,)),
        b"AUTHENTICATE": ("AUTHENTICATE", (UNAUTH,)),
        b"ENABLE": ("ENABLE", (AUTH,)),
        b"SELECT": ("SELECT", LOGGED_IN),
        b"EXAMINE": ("EXAMINE", LOGGED_IN),
        b"CREATE": ("CREATE", LOGGED_IN),
        b"DELETE": ("DELETE", LOGGED_IN),
        b"RENAME": ("RENAME", LOGGED_IN),
        b"SUBSCRIBE": ("SUBSCRIBE", LOGGED_IN),
        b"UNSUBSCRIBE": ("UNSUBSCRIBE", LOGGED_IN),
        b"LIST": ("LIST", LOGGED_IN),
        b"LSUB": ("LSUB", LOGGED_IN),
        b"STATUS": ("STATUS", LOGGED_IN),
        b"APPEND": ("APPEND", LOGGED_IN),
        b"IDLE": ("IDLE", LOGGED_IN),
        b"NAMESPACE": ("NAMESPACE", LOGGED_IN),
        b"GETQUOTA": ("GETQUOTA", LOGGED_IN),
        b"GETQUOTAROOT": ("GETQUOTAROOT", LOGGED_IN),
        b"SETQUOTA": ("SETQUOTA", LOGGED_IN),
        b"CHECK": ("CHECK", (SELECTED,)),
        b"CLOSE": ("CLOSE", (SELECTED,)),
        b"UNSELECT": ("UNSELECT", (SELECTED,)),
        b"EXPUNGE": ("EXPUNGE", (SELECTED,)),
        b"SEARCH": ("SEARCH", (SELECTED,)),
        b"FETCH": ("FETCH", (SELECTED,)),
        b"STORE": ("STORE", (SELECTED,)),
        b"COPY": ("COPY", (SELECTED,)),
        b"MOVE": ("MOVE", (SELECTED,)),
        b"UID": ("UID", (SELECTED,)),
    }

    def _dispatch(self, parts):
        args = Arguments(parts)
        try:
            tag = args.run(TAG_CHARS, "tag")
            if args.peek() not in (b" ", b""):
                raise ParseError("Invalid tag")
        except ParseError:
            self.untagged(b"BAD Invalid tag")
            return
        try:
            args.sp()
            name = args.atom("command").upper()
        except ParseError:
            self.tagged(tag, b"BAD", b"Missing command")
            return
        uid = False
        if name == b"UID":
            try:
                args.sp()
                name = args.atom("command").upper()
            except ParseError:
                self.tagged(tag, b"BAD", b"Missing command")
                return
            if name not in _UID_COMMANDS:
                self.tagged(tag, b"BAD", b"Invalid UID command")
                return
            uid = True
            if self.state != SELECTED:
                self.tagged(tag, b"BAD", b"Command not allowed in this state")
                return
        entry = self._commands.get(name)
        if entry is None or name == b"UID":
            self.tagged(tag, b"BAD", b"Unknown command")
            return
        method, states = entry
        if self.state not in states:
            text = b"No mailbox selected" if states == (SELECTED,) else (
                b"Command not allowed in this state")
            self.tagged(tag, b"BAD", text)
            return
        handler = getattr(self, "imap_" + method)
        self._busy = True
        try:
            d = handler(tag, args, uid) if name in _UID_COMMANDS else handler(tag, args)
        except Exception:
            d = defer.fail()
        if not isinstance(d, defer.Deferred):
            # Done already (the common case: answered from memory).
            self._commandDone(None)
            return
        d.addErrback(self._commandFailed, tag)
        d.addBoth(self._commandDone)

    def _commandFailed(self, failure, tag):
        if not self._connected:
            return
        if failure.check(Refused):
            self.tagged(tag, failure.value.status, failure.value.text)
        elif failure.check(ParseError):
            self.tagged(tag, b"BAD", str(failure.value).encode("utf-8", "replace"))
        else:
            self.log.failure("imap: command failed for {peer}", failure, peer=self.peer)
            self.tagged(tag, b"NO", b"[SERVERBUG] Internal server error")

    def _commandDone(self, ignored):
        self._busy = False
        if self._connected and not self._closing:
            self._process()

    def _finish(self, tag, text, allowExpunge=True, code=b""):
        """
        Report what changed in the selected folder, then answer C{tag OK}.

        @return: L{None} when done, else a L{defer.Deferred}.
        """
        d = self._updateNow(allowExpunge)
        if d is None:
            self.tagged(tag, b"OK", code + text)
            return None
        d.addCallback(lambda _: self.tagged(tag, b"OK", code + text))
        return d

    # -- any state

    def imap_CAPABILITY(self, tag, args):
        args.end()
        self.untagged(b"CAPABILITY " + self.capabilities())
        return self._finish(tag, b"CAPABILITY completed")

    def imap_NOOP(self, tag, args):
        """
        RFC 3501 6.1.2: in the selected state, report what changed.
        """
        args.end()
        return self._finish(tag, b"NOOP completed")

    def imap_LOGOUT(self, tag, args):
        args.end()
        self.untagged(b"BYE Logging out")
        self.tagged(tag, b"OK", b"LOGOUT completed")
        self._close()

    def imap_ID(self, tag, args):
        """
        RFC 2971: log what the client says it is, say what we are.
        """
        args.sp()
        fields = []
        if args.peekWord() == b"NIL":
            args.atom()
        else:
            args.expect(b"(")
            while not args.maybe(b")"):
                if fields:
                    args.sp()
                key = args.string()
                args.sp()
                value = args.nstring()
                fields.append((key, value))
                maxPairs, maxKey, maxValue = _ID_LIMITS
                if len(fields) > maxPairs or len(key) > maxKey or (
                    value is not None and len(value) > maxValue
                ):
                    raise ParseError("ID parameters too long")
        args.end()
        if fields:
            self.log.info(
                "imap: client {peer} is {id}",
                peer=self.peer,
                id=", ".join(
                    f"{k.decode('utf-8', 'replace')}="
                    f"{(v or b'NIL').decode('utf-8', 'replace')}"
                    for k, v in fields
                ),
            )
        self.untagged(b"ID (" + b" ".join(quoted(x) for x in SERVER_ID) + b")")
        return self._finish(tag, b"ID completed")

    # -- not authenticated

    def imap_STARTTLS(self, tag, args):
        """
        RFC 3501 6.2.1.  Anything the client sent after STARTTLS before the
        handshake is thrown away, not run as if it came over TLS, and the
        session starts afresh.
        """
        args.end()
        if not self._canStartTLS():
            self.tagged(tag, b"BAD", b"STARTTLS is not available")
            return
        discarded = len(self._buffer)
        self._buffer = bytearray()
        self._parts = None
        self._literal = None
        self._discard = 0
        if discarded:
            self.log.warn(
                "imap: discarded {size} bytes sent after STARTTLS by {peer}",
                size=discarded,
                peer=self.peer,
            )
        self.state = UNAUTH
        self.tagged(tag, b"OK", b"Begin TLS negotiation now")
        self.transport.startTLS(self.context.tlsOptions)
        self._tls = True
        self.log.info("imap: STARTTLS from {peer}", peer=self.peer)

    def imap_LOGIN(self, tag, args):
        """
        RFC 3501 6.2.3, only under TLS.
        """
        if not self._tls:
            self.log.info("imap: LOGIN without TLS from {peer} refused", peer=self.peer)
            self.tagged(tag, b"NO", NO_PLAINTEXT)
            return None
        args.sp()
        user = args.astring()
        args.sp()
        password = args.astring()
        args.end()
        return self._login(tag, UsernamePassword(user, password), b"LOGIN")

    def _mechanisms(self):
        """
        The SASL mechanisms configured for this listener.
        """
        sasl = self.context.sasl
        return sasl if sasl is not None else builtinMechanisms()

    def imap_AUTHENTICATE(self, tag, args):
        """
        RFC 3501 6.2.2 with the mechanisms of L{mailplat.auth.sasl},
        optionally with an initial response (RFC 4959).  Before TLS only
        mechanisms that send no secret in the clear are accepted (none of
        the built-in ones), and the refusal comes before any continuation.
        """
        mechanisms = self._mechanisms()
        if not self._tls and not mechanisms.offered(False):
            self.log.info(
                "imap: AUTHENTICATE without TLS from {peer} refused", peer=self.peer
            )
            self.tagged(tag, b"NO", NO_PLAINTEXT)
            return None
        args.sp()
        name = args.atom("mechanism").upper()
        initial = None
        if not args.atEnd():
            args.sp()
            initial = args.run(ATOM_CHARS, "initial response")
        args.end()
        factory = mechanisms.get(name)
        if factory is None:
            self.tagged(tag, b"NO", b"Unsupported authentication mechanism")
            return None
        if not mechanisms.allows(factory, self._tls):
            self.log.info(
                "imap: AUTHENTICATE {name} without TLS from {peer} refused",
                name=factory.name, peer=self.peer,
            )
            self.tagged(tag, b"NO", NO_PLAINTEXT)
            return None
        mechanism = factory.makeMechanism("imap", self.context.config.hostname)
        exchange = (tag, factory.name.encode("ascii"), mechanism)
        result = self._saslStep(exchange, initial)
        if result is not _CHALLENGED:
            return result
        d = defer.Deferred()

        def response(line):
            result = self._saslStep(exchange, line)
            if result is _CHALLENGED:
                self._continuation = response
            elif isinstance(result, defer.Deferred):
                result.chainDeferred(d)
            else:
                d.callback(None)

        self._continuation = response
        return d

    def _saslStep(self, exchange, line):
        """
        Pass one client response (C{line} as received; L{None}: no initial
        response) to the mechanism.

        @return: L{_CHALLENGED} when a challenge was sent and the client
            must answer it; else L{None} (a tagged response was sent) or the
            Deferred of a login.
        """
        tag, name, mechanism = exchange
        try:
            response = None if line is None else decodeResponse(line)
            result = mechanism.respond(response)
        except SASLCancelled:
            self.tagged(tag, b"BAD", b"AUTHENTICATE cancelled")
            return None
        except SASLBadEncoding:
            self.tagged(tag, b"BAD", b"Invalid base64 data")
            return None
        except SASLMalformedResponse:
            self.tagged(tag, b"BAD", b"Invalid " + name + b" response")
            return None
        except SASLAuthorizationRefused:
            self.tagged(tag, b"NO", b"[AUTHORIZATIONFAILED] Authorization identity refused")
            return None
        if isinstance(result, bytes):
            self.sendLine(b"+ " + encodeChallenge(result))
            return _CHALLENGED
        return self._login(tag, result, b"AUTHENTICATE")

    def _login(self, tag, creds, command):
        userText = getattr(creds, "username", b"")
        if isinstance(userText, bytes):
            userText = userText.decode("utf-8", "replace")
        d = self.context.portal.login(creds, None, IMailUser)

        def loggedIn(result):
            _, avatar, logout = result
            if self._closing:
                logout()
                return
            limit = self.context.config.access.maxConnectionsPerUser
            if not self.connections.acquire(avatar.address, limit):
                logout()
                self.log.info(
                    "imap: {user} from {peer} refused: {limit} connections already",
                    user=avatar.address, peer=self.peer, limit=limit,
                )
                self.tagged(tag, b"NO", b"[LIMIT] Too many connections for this user")
                return
            self._counted = True
            self.user, self._logout = avatar, logout
            self.state = AUTH
            self.setTimeout(self.context.config.access.imapTimeout)
            self.log.info("imap: {user} logged in from {peer}", user=avatar.address,
                          peer=self.peer)
            self.tagged(tag, b"OK", command + b" completed")

        def failed(failure):
            if self._closing:
                return
            if failure.check(UnauthorizedLogin, UnhandledCredentials):
                self.log.info("imap: failed login for {user!r} from {peer}",
                              user=userText, peer=self.peer)
                self.tagged(tag, b"NO", AUTH_FAILED)
            else:
                self.log.failure("imap: login error from {peer}", failure, peer=self.peer)
                self.tagged(tag, b"NO", b"[UNAVAILABLE] Authentication temporarily unavailable")

        return d.addCallbacks(loggedIn, failed)

    # -- extensions of any logged-in state

    def _enableCondstore(self):
        """
        RFC 7162 3.1: a CONDSTORE-enabling command; from now on FETCH
        responses with FLAGS carry MODSEQ.
        """
        self.condstore = True

    def imap_ENABLE(self, tag, args):
        """
        RFC 5161: CONDSTORE is the only extension that needs enabling.
        """
        args.sp()
        names = [args.atom("capability").upper()]
        while not args.atEnd():
            args.sp()
            names.append(args.atom("capability").upper())
        enabled = []
        if b"CONDSTORE" in names:
            self._enableCondstore()
            enabled.append(b"CONDSTORE")
        self.untagged(b"ENABLED" + b"".join(b" " + n for n in enabled))
        return self._finish(tag, b"ENABLE completed")

    def imap_IDLE(self, tag, args):
        """
        RFC 2177: report changes as they happen until the client says DONE.
        """
        args.end()
        d = defer.Deferred()
        self._idleTag = tag
        self._idleDone = d
        self._continuation = self._idleLine
        self.sendLine(b"+ idling")
        if self.selected is not None:
            self._watching = self.selected.folder
            self.poller.watch(self._watching)
            self._idleRefresh()
        return d

    def _idleLine(self, line):
        if line.upper() != b"DONE":
            self.untagged(b"BAD Expected DONE")
            self._continuation = self._idleLine
            return
        tag, self._idleTag = self._idleTag, None
        if self._watching is not None:
            self.poller.unwatch(self._watching)
            self._watching = None
        d = self._idleDone
        self._whenRefreshed().addCallback(
            lambda _: self.tagged(tag, b"OK", b"IDLE terminated")
        ).chainDeferred(d)

    # -- reporting other sessions' changes

    def _update(self, allowExpunge=True):
        """
        Bring the selected folder's view up to date and send the untagged
        responses for what changed.

        @return: a L{defer.Deferred}.
        """
        d = self._updateNow(allowExpunge)
        return defer.succeed(None) if d is None else d

    def _updateNow(self, allowExpunge=True):
        """
        L{_update}, done at once when it can be.

        @return: L{None} when done, else a L{defer.Deferred}.
        """
        selected = self.selected
        if selected is None:
            return None

        def apply(result):
            if selected is not self.selected or not self._connected:
                return
            changes = selected.update(*result, allowExpunge=allowExpunge)
            if changes is not None:
                self._sendChanges(changes)

        # Most of the time nothing changed, or another session already
        # brought the folder's in-memory state up to date: answered from
        # memory, without a thread hop.
        folder = selected.folder
        cachedState = getattr(folder, "cachedState", None)
        state = cachedState and cachedState(self.rescanInterval)
        if state is not None and state.row.highestModseq == selected.modseq:
            # Nothing happened since this session last looked.
            selected.unchanged(state.row)
            return None
        cached = getattr(folder, "cachedChanges", None)
        result = cached and cached(
            selected.modseq, selected.lastUID, len(selected), selected.writeable,
            self.rescanInterval,
        )
        if result is not None:
            try:
                apply(result)
            except Exception:
                return defer.fail()
            return None
        d = self.context.runBlocking(
            folder.changes, selected.modseq, selected.lastUID, len(selected),
            selected.writeable,
        )

        def gone(failure):
            failure.trap(NoSuchFolder)
            if selected is self.selected and self._connected:
                self.untagged(b"BYE Selected mailbox was deleted")
                self._close()

        return d.addCallbacks(apply, gone)

    def _sendChanges(self, changes):
        """
        Send the untagged responses for L{mailplat.imap.selected.Changes}.
        """
        selected = self.selected
        for seq in changes.expunged:
            self.untagged(b"%d EXPUNGE" % seq)
        if changes.keywords is not None:
            self._sendFlags(changes.keywords)
        for seq, info in changes.flags:
            line = b"%d FETCH (FLAGS " % seq + flagList(
                orderedFlags(info.flags, selected.isRecent(info.uid)))
            if self.condstore:
                line += b" MODSEQ (%d)" % info.modseq
            self.untagged(line + b")")
        if changes.exists is not None:
            self.untagged(b"%d EXISTS" % changes.exists)
            self.untagged(b"%d RECENT" % changes.recent)

    def _folderChangedInThread(self):
        self.context.callFromThread(self._folderChanged)

    def _folderChanged(self):
        if self._idleTag is not None and self.selected is not None:
            self._idleRefresh()

    def _idleRefresh(self):
        """
        Report changes while idling, one refresh at a time; a change that
        comes in meanwhile triggers one more.
        """
        if self._refreshing is not None:
            self._refreshAgain = True
            return
        self._refreshAgain = False
        self._refreshing = self._update()

        def done(result):
            self._refreshing = None
            if self._refreshAgain and self._idleTag is not None and self.selected:
                self._idleRefresh()
            else:
                waiters, self._refreshWaiters = self._refreshWaiters, []
                for d in waiters:
                    d.callback(None)

        def failed(failure):
            self.log.failure("imap: refresh failed for {peer}", failure, peer=self.peer)

        self._refreshing.addErrback(failed).addCallback(done)

    def _whenRefreshed(self):
        if self._refreshing is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._refreshWaiters.append(d)
        return d








class IMAPFactory(protocol.Factory):
    """
    Builds an L{IMAPServer} for each connection on one listener.

    For C{tls = "implicit"} the caller wraps this factory in a
    L{twisted.protocols.tls.TLSMemoryBIOFactory}; the protocol then sees TLS
    from the first byte.
    """

    noisy = False

    protocol = IMAPServer

    def __init__(self, context, listener):
        """
        @param context: the L{mailplat.context.ServerContext}.
        @param listener: the L{mailplat.config.schema.ListenerConfig}.
        """
        self.context = context
        self.listener = listener
        self.connections, self.poller = sharedFor(context)

    def buildProtocol(self, addr):
        p = self.protocol(self.context, self.listener, self.connections, self.poller)
        p.factory = self
        return p
