"""
The IMAP4rev1 server (RFC 3501): L{twisted.mail.imap4.IMAP4Server} for the
wire syntax, with the session logic owned here.

What this subclass changes, each for a trap listed in DESIGN.md section 7:

 - Commands run one at a time: a line that arrives while a command waits on
   the disk or the password checker is queued, not dispatched into the wrong
   state (RFC 3501 5.5).
 - STARTTLS discards whatever the client sent after it in the clear and
   resets the session (RFC 3501 6.2.1; the plaintext command injection of
   CVE-2011-0411).
 - Plaintext authentication (LOGIN, AUTHENTICATE PLAIN) is only possible under
   TLS: before, CAPABILITY says LOGINDISABLED (RFC 3501 6.2.3, 7.2.1) and both
   answer C{NO [PRIVACYREQUIRED]} (RFC 5530).
 - SELECT/EXAMINE give every response RFC 3501 6.3.1 asks for; FETCH serves
   the stored bytes and sets C{\\Seen} implicitly (6.4.5); other sessions'
   changes are reported at NOOP, CHECK, EXPUNGE and during IDLE, never during
   FETCH or STORE (7.4.1).
 - Lines and literals are bounded; IDLE (RFC 2177) ends only on DONE and
   reports new mail as it arrives.
 - Blocking store calls run through C{context.runBlocking}.

Commands outside the foundation milestone (APPEND, COPY, SEARCH, ...) answer
C{BAD Unsupported command}.
"""

import base64
import binascii
import re

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.logger import Logger
from twisted.mail import imap4
from zope.interface import implementer

from mailplat.imap import fetch
from mailplat.imap.account import DELIMITER, MaildirAccount
from mailplat.imap.mailbox import SEEN, InvalidMessageNumber
from mailplat.imap.message import SYSTEM_FLAGS_ORDER
from mailplat.interfaces import IMailUser
from mailplat.interfaces import MessageGone

# RFC 3501 9: tag = 1*<any ASTRING-CHAR except "+">.
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\.)*)"')
_QUOTED_ESCAPE = re.compile(rb"\\(.)")
_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")
_FLAG_LIST = b"(" + " ".join(SYSTEM_FLAGS_ORDER).encode("ascii") + b")"

NO_PLAINTEXT = b"[PRIVACYREQUIRED] Plaintext authentication is disabled without TLS"
AUTH_FAILED = b"[AUTHENTICATIONFAILED] Authentication failed."
GONE = b"Some of the requested messages no longer exist"


def _mailboxName(name):
    """
    A mailbox name for a response: modified UTF-7 (RFC 3501 5.1.3), quoted
    unless it is an atom.
    """
    encoded = name.encode("imap4-utf-7")
    if encoded and re.fullmatch(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+', encoded):
        return encoded
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _flagList(flags):
    return b"(" + " ".join(flags).encode("ascii") + b")"


@implementer(IPushProducer)
class _WriteFlow:
    """
    Pauses a long FETCH while the transport's write buffer is full.
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

    def whenWritable(self):
        if not self.paused:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d


class IMAPServer(imap4.IMAP4Server):
    """
    One IMAP connection.

    @ivar context: the L{mailplat.context.ServerContext}.
    @ivar listener: the L{mailplat.config.schema.ListenerConfig} it came in on.
    """

    log = Logger()

    # RFC 3501 5.4 asks for at least 30 minutes once logged in (the
    # configured imapTimeout); before that a minute is plenty.
    timeOut = 60

    def __init__(self, context, listener):
        tlsOptions = context.tlsOptions if listener.tls == "starttls" else None
        imap4.IMAP4Server.__init__(self, chal={}, contextFactory=tlsOptions)
        self.context = context
        self.listener = listener
        access = context.config.access
        self.callLater = context.clock.callLater
        self.MAX_LENGTH = access.maxLineLength
        self.POSTAUTH_TIMEOUT = access.imapTimeout
        self._literalStringLimit = min(access.maxLineLength, access.maxLiteralSize)
        self._maxLiteralSize = access.maxLiteralSize
        self.IDENT = context.config.hostname.encode("ascii", "replace") + (
            b" IMAP4rev1 server ready"
        )
        self.peer = "-"
        self._tls = False
        self._connected = False
        self._closing = False
        self._queue = []
        self._inFlight = False
        self._draining = False
        self._authTag = None
        self._idleTag = None
        self._refreshing = None
        self._refreshAgain = False
        self._refreshWaiters = []

    # -- connection

    def connectionMade(self):
        self._connected = True
        self._tls = ISSLTransport(self.transport, None) is not None
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", str(peer))
        imap4.IMAP4Server.connectionMade(self)

    def connectionLost(self, reason):
        self._connected = False
        self._closing = True
        self._queue = []
        self._closeMailbox()
        imap4.IMAP4Server.connectionLost(self, reason)

    def timeoutConnection(self):
        """
        Autologout (RFC 3501 5.4).
        """
        self.log.info("imap: autologout of {peer}", peer=self.peer)
        self.sendLine(b"* BYE Autologout; idle for too long")
        self._close()

    def _close(self):
        self._closing = True
        self._queue = []
        self.clearLineBuffer()
        self._closeMailbox()
        self.transport.loseConnection()

    def _closeMailbox(self):
        self._idleTag = None
        if self.mbox is not None:
            self.mbox.close()
            self.mbox = None
        if self.state == "select":
            self.state = "auth"

    def capabilities(self):
        """
        RFC 3501 7.2.1: plaintext authentication is advertised only under TLS;
        before it, LOGINDISABLED (and STARTTLS where this listener offers it).
        """
        caps = {}
        if self._tls:
            caps[b"AUTH"] = [b"PLAIN"]
        else:
            if self._canStartTLS():
                caps[b"STARTTLS"] = None
            caps[b"LOGINDISABLED"] = None
        caps[b"NAMESPACE"] = None
        caps[b"IDLE"] = None
        return caps

    def _canStartTLS(self):
        return (
            not self._tls
            and self.ctx is not None
            and self.canStartTLS
            and self.listener.tls == "starttls"
        )

    # -- lines and commands

    def dataReceived(self, data):
        if not self._closing:
            imap4.IMAP4Server.dataReceived(self, data)

    def lineLengthExceeded(self, line):
        """
        A line longer than C{maxLineLength}: the rest of it cannot be told
        from a new command, so the connection ends.
        """
        self.log.warn(
            "imap: line of {size} bytes or more from {peer}, disconnecting",
            size=len(line),
            peer=self.peer,
        )
        self.sendLine(b"* BYE Command line too long")
        self._close()

    def lineReceived(self, line):
        """
        Run commands one at a time: a command line that arrives while another
        command is still in progress waits its turn.  Continuation lines
        (literals, AUTHENTICATE, IDLE's DONE) go to the command waiting for
        them.
        """
        if self._closing:
            return
        self.resetTimeout()
        if self.parseState == "command" and (self._inFlight or self._queue):
            self._queue.append(line)
            return
        self._parseLine(line)

    def _parseLine(self, line):
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception:
            self.log.failure("imap: error handling a line from {peer}", peer=self.peer)
            self.sendBadResponse(None, b"Internal server error")

    def parse_command(self, line):
        args = line.split(None, 1)
        if not args:
            self.sendBadResponse(None, b"Null command")
            return
        tag = args[0]
        if not _TAG.fullmatch(tag):
            self.sendBadResponse(None, b"Invalid tag")
            return
        self._inFlight = True
        try:
            imap4.IMAP4Server.parse_command(self, line)
        except Exception:
            self.log.failure("imap: error in command from {peer}", peer=self.peer)
            if self._inFlight:
                self.sendBadResponse(tag, b"Internal server error")

    def dispatchCommand(self, tag, cmd, rest, uid=None):
        if cmd in (b"LOGIN", b"AUTHENTICATE") and self.state == "unauth":
            if not self._tls:
                self.log.info(
                    "imap: {command} without TLS from {peer} refused",
                    command=cmd.decode("ascii"),
                    peer=self.peer,
                )
                self.sendNegativeResponse(tag, NO_PLAINTEXT)
                return
        if rest is None:
            # Twisted's argument parsers expect bytes.
            rest = b""
        return imap4.IMAP4Server.dispatchCommand(self, tag, cmd, rest, uid)

    def _respond(self, state, tag, message):
        """
        Send a response; a tagged OK, NO or BAD ends the command in progress
        (RFC 3501 2.2.2), so the next queued command may run.  Every handler
        sends its tagged response last.
        """
        imap4.IMAP4Server._respond(self, state, tag, message)
        if tag and state in (b"OK", b"NO", b"BAD"):
            self._inFlight = False
            if not self._draining:
                self._drain()

    def _drain(self):
        self._draining = True
        try:
            while (
                self._queue
                and not self._inFlight
                and not self._closing
                and self.parseState == "command"
            ):
                self._parseLine(self._queue.pop(0))
        finally:
            self._draining = False

    def sendContinuationRequest(self, msg=b"Ready for additional command text"):
        # RFC 3501 9: continue-req = "+" SP (resp-text / base64)
        self.sendLine(b"+ " + (msg or b""))

    def _serverError(self, failure, tag):
        self.log.failure("imap: command failed for {peer}", failure, peer=self.peer)
        self.sendNegativeResponse(tag, b"[SERVERBUG] Internal server error")

    # -- argument parsers

    def arg_astring(self, line, final=False):
        """
        An astring (RFC 3501 9), with the quoted form's backslash escapes
        undone (Twisted keeps them, so a password with C{"} or C{\\} fails).
        """
        line = line.strip()
        if line[:1] != b'"':
            return imap4.IMAP4Server.arg_astring(self, line, final)
        m = _QUOTED.match(line)
        if m is None:
            raise imap4.IllegalClientResponse("Unmatched quotes")
        rest = line[m.end() :]
        if rest and rest[:1] != b" ":
            raise imap4.IllegalClientResponse("Malformed quoted string")
        return _QUOTED_ESCAPE.sub(rb"\1", m.group(1)), rest[1:]

    def arg_finalastring(self, line):
        return self.arg_astring(line, final=True)

    def arg_atom(self, line):
        """
        An atom; the rest of the line is C{b""} rather than L{None} when the
        atom ends it, so the next parser reports a missing argument (Twisted's
        L{None} crashes C{arg_flaglist}).
        """
        atom, rest = imap4.IMAP4Server.arg_atom(self, line)
        return atom, rest or b""

    def arg_flaglist(self, line):
        if not line:
            raise imap4.IllegalClientResponse("Missing argument")
        return imap4.IMAP4Server.arg_flaglist(self, line)

    def arg_fetchatt(self, line):
        """
        The fetch attributes, with Twisted's parser errors as BAD (it raises
        bare Exceptions).
        """
        try:
            return imap4.IMAP4Server.arg_fetchatt(self, line)
        except imap4.IllegalClientResponse:
            raise
        except Exception as e:
            raise imap4.IllegalClientResponse("Invalid fetch attributes") from e

    def _fileLiteral(self, size):
        if size > self._maxLiteralSize:
            raise imap4.IllegalClientResponse(
                "Literal too long! I accept at most %d octets" % (self._maxLiteralSize,)
            )
        return imap4.IMAP4Server._fileLiteral(self, size)

    # -- any state

    def do_NOOP(self, tag):
        """
        RFC 3501 6.1.2: in the selected state, report what changed.
        """
        self._withRefresh(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)

    def do_LOGOUT(self, tag):
        self._closing = True
        self.sendUntaggedResponse(b"BYE Logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self._close()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = (do_LOGOUT,)

    # -- not authenticated

    def do_STARTTLS(self, tag):
        """
        RFC 3501 6.2.1.  Anything the client sent after STARTTLS before the
        handshake is thrown away, not run as if it came over TLS, and the
        session starts afresh.
        """
        if not self._canStartTLS():
            self.sendBadResponse(tag, b"STARTTLS is not available")
            return
        discarded = len(self.clearLineBuffer()) + sum(len(x) for x in self._queue)
        self._queue = []
        if discarded:
            self.log.warn(
                "imap: discarded {size} bytes sent after STARTTLS by {peer}",
                size=discarded,
                peer=self.peer,
            )
        self.state = "unauth"
        self.account = None
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self._tls = self.startedTLS = True
        self.log.info("imap: STARTTLS from {peer}", peer=self.peer)

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag, user, password):
        """
        RFC 3501 6.2.3 (only under TLS, see L{dispatchCommand}).
        """
        self._login(tag, user, password, b"LOGIN")

    unauth_LOGIN = (do_LOGIN, arg_astring, arg_finalastring)

    def do_AUTHENTICATE(self, tag, args):
        """
        RFC 3501 6.2.2 with the PLAIN mechanism (RFC 4616), optionally with an
        initial response (RFC 4959).
        """
        words = (args or b"").split()
        if not words or len(words) > 2:
            self.sendBadResponse(tag, b"Invalid arguments")
            return
        if words[0].upper() != b"PLAIN":
            self.sendNegativeResponse(tag, b"Unsupported authentication mechanism")
            return
        if len(words) == 2:
            self._authenticatePlain(tag, b"" if words[1] == b"=" else words[1])
            return
        self._authTag = tag
        self.parseState = "authenticate"
        self.sendContinuationRequest(b"")

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_line)

    def parse_authenticate(self, line):
        tag, self._authTag = self._authTag, None
        self.parseState = "command"
        if line == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        self._authenticatePlain(tag, line)

    def _authenticatePlain(self, tag, encoded):
        try:
            response = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            self.sendBadResponse(tag, b"Invalid base64 data")
            return
        parts = response.split(b"\0")
        if len(parts) != 3:
            self.sendBadResponse(tag, b"Invalid PLAIN response")
            return
        authzid, user, password = parts
        if authzid and authzid.lower() != user.lower():
            self.sendNegativeResponse(
                tag, b"[AUTHORIZATIONFAILED] Authorization identity refused"
            )
            return
        self._login(tag, user, password, b"AUTHENTICATE")

    def _login(self, tag, user, password, command):
        d = self.context.portal.login(UsernamePassword(user, password), None, IMailUser)
        d.addCallbacks(
            self._loggedIn,
            self._loginFailed,
            (tag, user, command),
            None,
            (tag, user, command),
            None,
        )

    def _loggedIn(self, result, tag, user, command):
        iface, avatar, logout = result
        if self._closing:
            logout()
            return
        self.account = MaildirAccount(avatar, self.context.runBlocking)
        self._onLogout = logout
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        self.log.info(
            "imap: login {user} from {peer}", user=avatar.address, peer=self.peer
        )
        self.sendPositiveResponse(tag, command + b" completed")

    def _loginFailed(self, failure, tag, user, command):
        if failure.check(UnauthorizedLogin, UnhandledCredentials):
            self.log.info(
                "imap: failed login for {user!r} from {peer}",
                user=user.decode("utf-8", "replace"),
                peer=self.peer,
            )
            self.sendNegativeResponse(tag, AUTH_FAILED)
        else:
            self.log.failure("imap: login error for {peer}", failure, peer=self.peer)
            self.sendNegativeResponse(
                tag, b"[UNAVAILABLE] Authentication is temporarily unavailable"
            )

    # -- authenticated

    def do_SELECT(self, tag, name, rw, command):
        """
        RFC 3501 6.3.1 and 6.3.2.  Whatever was selected is deselected first,
        also when the new SELECT fails.
        """
        self._closeMailbox()
        name = imap4._parseMbox(name)
        d = defer.maybeDeferred(self.account.select, name, rw)
        d.addCallbacks(
            self._selected, self._serverError, (tag, command), None, (tag,), None
        )

    auth_SELECT = select_SELECT = (do_SELECT, arg_finalastring, True, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (do_SELECT, arg_finalastring, False, b"EXAMINE")

    def _selected(self, mbox, tag, command):
        if mbox is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox does not exist")
            return
        if self._closing:
            mbox.close()
            return
        self.mbox = mbox
        self.state = "select"
        mbox.watch(self._folderChangedInThread)
        untagged = self.sendUntaggedResponse
        untagged(b"FLAGS " + _FLAG_LIST)
        untagged(b"%d EXISTS" % (mbox.getMessageCount(),))
        untagged(b"%d RECENT" % (mbox.getRecentCount(),))
        unseen = mbox.firstUnseen()
        if unseen is not None:
            untagged(b"OK [UNSEEN %d] First unseen message" % (unseen,))
        untagged(b"OK [UIDVALIDITY %d] UIDs valid" % (mbox.getUIDValidity(),))
        untagged(b"OK [UIDNEXT %d] Predicted next UID" % (mbox.getUIDNext(),))
        if mbox.isWriteable():
            untagged(b"OK [PERMANENTFLAGS " + _FLAG_LIST + b"] Flags permitted")
            mode = b"READ-WRITE"
        else:
            untagged(b"OK [PERMANENTFLAGS ()] Read-only mailbox")
            mode = b"READ-ONLY"
        self.sendPositiveResponse(tag, b"[" + mode + b"] " + command + b" completed")

    def do_LIST(self, tag, ref, pattern, command):
        """
        RFC 3501 6.3.8 (LIST) and 6.3.9 (LSUB); only INBOX is listed for now.
        """
        ref, pattern = imap4._parseMbox(ref), imap4._parseMbox(pattern)
        delimiter = b'"' + DELIMITER.encode("ascii") + b'"'
        if command == b"LIST" and not pattern:
            # The hierarchy delimiter and root of the reference.
            root = ref.split(DELIMITER, 1)[0] + DELIMITER if DELIMITER in ref else ""
            self.sendUntaggedResponse(
                b"LIST (\\Noselect) " + delimiter + b" " + _mailboxName(root)
            )
        else:
            for name, info in self.account.listMailboxes(ref, pattern):
                if command == b"LSUB" and not self.account.isSubscribed(name):
                    continue
                attributes = " ".join(info.getFlags()).encode("ascii")
                self.sendUntaggedResponse(
                    command
                    + b" ("
                    + attributes
                    + b") "
                    + delimiter
                    + b" "
                    + _mailboxName(name)
                )
        self.sendPositiveResponse(tag, command + b" completed")

    auth_LIST = select_LIST = (do_LIST, arg_astring, arg_finalastring, b"LIST")
    auth_LSUB = select_LSUB = (do_LIST, arg_astring, arg_finalastring, b"LSUB")

    def do_STATUS(self, tag, name, items):
        """
        RFC 3501 6.3.10.
        """
        items = [item.upper() for item in items]
        if not items or any(item not in _STATUS_ITEMS for item in items):
            self.sendBadResponse(tag, b"Invalid status items")
            return
        name = imap4._parseMbox(name)

        def opened(mbox):
            if mbox is None:
                self.sendNegativeResponse(tag, b"[NONEXISTENT] Mailbox does not exist")
                return
            values = {
                b"MESSAGES": mbox.getMessageCount(),
                b"RECENT": mbox.getRecentCount(),
                b"UIDNEXT": mbox.getUIDNext(),
                b"UIDVALIDITY": mbox.getUIDValidity(),
                b"UNSEEN": mbox.getUnseenCount(),
            }
            mbox.close()
            pairs = b" ".join(b"%s %d" % (item, values[item]) for item in items)
            self.sendUntaggedResponse(
                b"STATUS " + _mailboxName(name) + b" (" + pairs + b")"
            )
            self.sendPositiveResponse(tag, b"STATUS completed")

        d = defer.maybeDeferred(self.account.select, name, False)
        d.addCallbacks(opened, self._serverError, errbackArgs=(tag,))

    auth_STATUS = select_STATUS = (
        do_STATUS,
        arg_astring,
        imap4.IMAP4Server.arg_plist,
    )

    def do_IDLE(self, tag):
        """
        RFC 2177: report changes as they happen until the client says DONE.
        """
        self._idleTag = tag
        self.parseState = "idle"
        self.sendContinuationRequest(b"idling")
        if self.mbox is not None:
            self._idleRefresh()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line):
        if line.upper() != b"DONE":
            self.sendBadResponse(None, b"Expected DONE")
            return
        tag, self._idleTag = self._idleTag, None
        self.parseState = "command"
        self._whenRefreshed().addCallback(
            lambda _: self.sendPositiveResponse(tag, b"IDLE terminated")
        )

    # Unsupported for now: BAD rather than Twisted's half-working versions
    # (APPEND without a size cap, COPY and SEARCH through IMessage).
    auth_APPEND = select_APPEND = None
    select_COPY = None
    select_SEARCH = None

    # -- selected

    def do_CHECK(self, tag):
        """
        RFC 3501 6.4.1: nothing to flush (the store writes through), but a
        good point to report changes.
        """
        self._withRefresh(tag, b"CHECK completed")

    select_CHECK = (do_CHECK,)

    def do_CLOSE(self, tag):
        """
        RFC 3501 6.4.2: remove C{\\Deleted} messages silently (not in a
        read-only session) and go back to the authenticated state.
        """
        mbox = self.mbox
        self._closeMailbox()

        def closed(_):
            self.sendPositiveResponse(tag, b"CLOSE completed")

        mbox.removeDeleted().addCallbacks(closed, self._serverError, errbackArgs=(tag,))

    select_CLOSE = (do_CLOSE,)

    def do_EXPUNGE(self, tag):
        """
        RFC 3501 6.4.3: one untagged EXPUNGE per removed message, highest
        sequence number first.
        """
        if not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
            return
        self._withRefresh(tag, b"EXPUNGE completed", expungeDeleted=True)

    select_EXPUNGE = (do_EXPUNGE,)

    def do_FETCH(self, tag, messages, query, uid=0):
        """
        RFC 3501 6.4.5 and 6.4.8 (UID FETCH).
        """
        if not query:
            self.sendBadResponse(tag, b"Missing fetch attributes")
            return
        try:
            fetch.checkQuery(query)
        except fetch.UnsupportedFetchItem as e:
            what = str(e).encode("ascii", "replace")
            self.sendBadResponse(tag, b"Unsupported fetch attribute: " + what)
            return
        try:
            seqs = self.mbox.sequenceNumbers(messages, uid)
        except InvalidMessageNumber:
            self.sendBadResponse(tag, b"Invalid message sequence number")
            return
        if uid and not fetch.wantsUID(query):
            query = query + [imap4._FetchParser.UID()]
        command = b"UID FETCH" if uid else b"FETCH"
        self._fetch(tag, self.mbox, seqs, query, command).addErrback(
            self._fetchFailed
        )

    select_FETCH = (do_FETCH, imap4.IMAP4Server.arg_seqset, arg_fetchatt)

    @defer.inlineCallbacks
    def _fetch(self, tag, mbox, seqs, query, command):
        gone = set()
        newlySeen = set()
        if mbox.isWriteable() and fetch.setsSeen(query):
            # RFC 3501 6.4.5: \Seen is set, and the changed flags are
            # reported in the same FETCH response.
            unseen = [s for s in seqs if SEEN not in mbox.messages[s - 1].info.flags]
            if unseen:
                updated, lost = yield mbox.storeFlags(unseen, [SEEN], 1)
                newlySeen.update(updated)
                gone.update(lost)
        load = fetch.needsContent(query)
        withFlags = query + [imap4._FetchParser.Flags()]
        if fetch.wantsFlags(query):
            withFlags = query
        flow = _WriteFlow()
        self.transport.registerProducer(flow, True)
        try:
            for seq in seqs:
                if not self._connected or self._closing:
                    return
                if seq in gone:
                    continue
                msg = mbox.messages[seq - 1]
                if load:
                    try:
                        yield self.context.runBlocking(msg.load, mbox.folder)
                    except MessageGone:
                        gone.add(seq)
                        continue
                msgQuery = withFlags if seq in newlySeen else query
                try:
                    self.transport.write(fetch.fetchResponse(seq, msg, msgQuery))
                finally:
                    msg.content = None
                self.resetTimeout()
                yield flow.whenWritable()
        finally:
            if self._connected:
                self.transport.unregisterProducer()
        if gone:
            self.sendNegativeResponse(tag, GONE)
        else:
            self.sendPositiveResponse(tag, command + b" completed")

    def _fetchFailed(self, failure):
        # Part of a response may be out already: nothing sound can follow.
        self.log.failure("imap: FETCH failed for {peer}", failure, peer=self.peer)
        self._close()

    def do_STORE(self, tag, messages, mode, flags, uid=0):
        """
        RFC 3501 6.4.6 and 6.4.8 (UID STORE).
        """
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        if silent:
            mode = mode[: -len(b".SILENT")]
        sign = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}.get(mode)
        if sign is None:
            self.sendBadResponse(tag, b"Invalid STORE data item")
            return
        mbox = self.mbox
        try:
            seqs = mbox.sequenceNumbers(messages, uid)
        except InvalidMessageNumber:
            self.sendBadResponse(tag, b"Invalid message sequence number")
            return
        if not mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
            return
        command = b"UID STORE" if uid else b"STORE"
        mbox.storeFlags(seqs, flags, sign).addCallbacks(
            self._stored,
            self._serverError,
            (tag, mbox, uid, silent, command),
            None,
            (tag,),
            None,
        )

    select_STORE = (do_STORE, imap4.IMAP4Server.arg_seqset, arg_atom, arg_flaglist)

    def _stored(self, result, tag, mbox, uid, silent, command):
        updated, gone = result
        if not silent:
            for seq in sorted(updated):
                uidPart = b" UID %d" % (mbox.getUID(seq),) if uid else b""
                self.sendUntaggedResponse(
                    b"%d FETCH (FLAGS %s%s)" % (seq, _flagList(updated[seq]), uidPart)
                )
        if gone:
            self.sendNegativeResponse(tag, GONE)
        else:
            self.sendPositiveResponse(tag, command + b" completed")

    def do_UID(self, tag, command, line):
        """
        RFC 3501 6.4.8, for the commands this server has.
        """
        command = command.upper()
        if command not in (b"FETCH", b"STORE"):
            self.sendBadResponse(tag, b"Unsupported UID command")
            return
        self.dispatchCommand(tag, command, line, uid=1)

    select_UID = (do_UID, arg_atom, imap4.IMAP4Server.arg_line)

    # -- reporting other sessions' changes

    def _withRefresh(self, tag, text, expungeDeleted=False):
        """
        Report the selected folder's changes (if one is selected), then
        answer C{tag OK text}.
        """
        if self.mbox is None:
            self.sendPositiveResponse(tag, text)
            return
        d = self._refresh(expungeDeleted)
        d.addCallbacks(
            lambda _: self.sendPositiveResponse(tag, text),
            self._serverError,
            errbackArgs=(tag,),
        )

    def _refresh(self, expungeDeleted=False):
        mbox = self.mbox
        return mbox.refresh(expungeDeleted).addCallback(self._report, mbox)

    def _report(self, changes, mbox):
        """
        Send the untagged responses for L{mailplat.imap.mailbox.Changes}.
        """
        if mbox is not self.mbox or not self._connected:
            return
        for seq in changes.expunged:
            self.sendUntaggedResponse(b"%d EXPUNGE" % (seq,))
        for seq in sorted(changes.flags):
            self.sendUntaggedResponse(
                b"%d FETCH (FLAGS %s)" % (seq, _flagList(changes.flags[seq]))
            )
        if changes.exists is not None:
            self.sendUntaggedResponse(b"%d EXISTS" % (changes.exists,))
            self.sendUntaggedResponse(b"%d RECENT" % (changes.recent,))

    def _folderChangedInThread(self):
        self.context.callFromThread(self._folderChanged)

    def _folderChanged(self):
        if self._idleTag is not None and self.mbox is not None:
            self._idleRefresh()

    def _idleRefresh(self):
        """
        Refresh while idling, one refresh at a time; a change that comes in
        meanwhile triggers one more.
        """
        if self._refreshing is not None:
            self._refreshAgain = True
            return
        self._refreshAgain = False
        self._refreshing = self._refresh()

        def done(result):
            self._refreshing = None
            if self._refreshAgain and self._idleTag is not None and self.mbox:
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

    def buildProtocol(self, addr):
        p = self.protocol(self.context, self.listener)
        p.factory = self
        return p
