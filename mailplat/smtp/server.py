"""
The ESMTP server (RFC 5321) for the C{mx}, C{submission} and C{submissions}
profiles, with PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
SMTPUTF8 (RFC 6531), DSN (RFC 3461), CHUNKING (RFC 3030), STARTTLS
(RFC 3207), AUTH (RFC 4954) and ENHANCEDSTATUSCODES (RFC 2034).

This is our own protocol class rather than a subclass of
C{twisted.mail.smtp.ESMTP}: the fixes DESIGN.md 7 lists touch nearly every
method of that class (docs/architecture.md says more).

Commands are processed strictly one at a time, in order: a command whose
check is asynchronous (the policy pipeline, a password check, the fsync
before 250) holds back the commands pipelined behind it, so replies always
come in order.  Policy decisions (relay, recipients, loops, the submission
rules, connection limits) are made by the checks of
L{mailplat.policy}, at the stages C{connect}, C{helo}, C{mail}, C{rcpt} and
C{data}.
"""

import email.utils
import errno
import secrets
import time

from twisted.cred import error as crederror
from twisted.internet import defer, interfaces, protocol, task
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from mailplat._net import setNoDelay, writeNow
from mailplat.auth.sasl import builtinMechanisms, decodeResponse, encodeChallenge
from mailplat.events import ACCEPTED, MailEvent
from mailplat.interfaces import (
    IMailUser,
    SASLAuthorizationRefused,
    SASLBadEncoding,
    SASLCancelled,
    SASLMalformedResponse,
)
from mailplat.policy import verdict as V
from mailplat.policy.facts import SessionFacts
from mailplat.queue.envelope import Envelope, Recipient
from mailplat.queue.store import newQueueId
from mailplat.recipients import UnknownRecipient
from mailplat.smtp import replies as R
from mailplat.smtp.address import (
    AddressSyntaxError,
    NonASCIIAddress,
    decodeXtext,
    parseParameters,
    parsePath,
)
from mailplat.smtp.datastream import DataDecoder
from mailplat.smtp.message import LineEndingNormalizer, MessageWriter

_MAX_PIPELINE = 256 * 1024  # unprocessed input before we stop reading
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# Built-in data-stage checks that do not read the parsed header section in
# the MX profile.
_HEADERS_UNREAD = frozenset({"mail_loop", "submission"})
# The built-in data-stage checks that do not read the spool file.
_SPOOL_UNREAD = frozenset({"mail_loop", "submission"})


_dateCache = (None, "")


def _localDate(now=time.time):
    """
    C{email.utils.formatdate(localtime=True)} for the current second,
    computed once a second (every Received field needs it).
    """
    global _dateCache
    second = int(now())
    if _dateCache[0] != second:
        _dateCache = (second, email.utils.formatdate(second, localtime=True))
    return _dateCache[1]


def tlsDescription(transport):
    """
    @return: C{"TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"}
        for a TLS transport, or L{None}.
    """
    if interfaces.ISSLTransport(transport, None) is None:
        return None
    try:
        conn = transport.getHandle()
        return (
            f"{conn.get_protocol_version_name()} with cipher "
            f"{conn.get_cipher_name()} ({conn.get_cipher_bits()}/"
            f"{conn.get_cipher_bits()} bits)"
        )
    except Exception:
        return "TLS"


class Transaction:
    """
    The state of one mail transaction (MAIL to the end of DATA or BDAT LAST).

    @ivar recipients: L{Recipient}s for the envelope, by address.
    @ivar accepted: how many RCPT commands were accepted.
    """

    def __init__(self, sender, params):
        self.sender = sender
        self.params = params
        self.recipients = {}
        self.accepted = 0
        self.spool = None
        self.writer = None
        self.decoder = None
        self.normalizer = None
        self.usedBDAT = False
        self.tooBig = False
        self.writeError = None


class SMTPServer(protocol.Protocol, TimeoutMixin):
    """
    One SMTP session.
    """

    log = Logger()

    def __init__(self, context, listener):
        self.context = context
        self.config = context.config
        self.listener = listener
        self.profile = listener.profile
        self.callLater = context.clock.callLater
        self._buffer = b""
        self._discarding = False
        self._busy = False
        self._paused = False
        self._mode = "connect"
        self._errors = 0
        self._saslState = None
        self._bdat = None
        self._deadline = None
        self.helo = None
        self.esmtp = False
        self.authenticated = None
        self.transaction = None
        self.peer = "unknown"
        self.facts = None

    # -- connection

    @property
    def secure(self):
        return interfaces.ISSLTransport(self.transport, None) is not None

    @property
    def canStartTLS(self):
        return (
            self.listener.tls == "starttls"
            and self.context.tlsOptions is not None
            and not self.secure
            and interfaces.ITLSTransport(self.transport, None) is not None
        )

    def connectionMade(self):
        setNoDelay(self.transport)
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", None) or str(peer)
        self.facts = SessionFacts(
            context=self.context,
            peer=self.peer,
            listener=self.listener.name,
            profile=self.profile,
            secure=self.secure,
        )
        self.setTimeout(self.config.smtp.commandTimeout)
        self._deadline = self.callLater(
            self.config.smtp.sessionTimeout, self._sessionExpired
        )
        self.log.info(
            "smtp[{listener}]: connect from [{peer}]",
            listener=self.listener.name,
            peer=self.peer,
        )
        self._busy = True
        d = self._decide("connect", self._connectVerdict)
        if isinstance(d, defer.Deferred):
            d.addErrback(self._internalError)

    def _connectVerdict(self, verdict):
        self._busy = False
        if self._mode == "closed":
            return
        if self._mode == "early":
            return
        if verdict.action in (V.REJECT, V.TEMPFAIL, V.DISCONNECT):
            self._logVerdict("connect", verdict)
            return self._closeWith(verdict.reply)
        self._mode = "command"
        writeNow(
            self.transport,
            f"220 {self.config.hostname} ESMTP mailplat\r\n".encode("ascii"),
        )
        self._process()

    def connectionLost(self, reason):
        self.setTimeout(None)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._mode = "closed"
        self._abortTransaction()
        if self.facts is not None:
            for release in self.facts.onClose:
                release()
            self.facts.onClose = []
        self.log.info(
            "smtp[{listener}]: disconnect from [{peer}]",
            listener=self.listener.name,
            peer=self.peer,
        )

    def timeoutConnection(self):
        self.log.info(
            "smtp[{listener}]: timeout after {mode} from [{peer}]",
            listener=self.listener.name,
            mode=self._mode,
            peer=self.peer,
        )
        self._closeWith(R.TIMEOUT.format(hostname=self.config.hostname))

    def _sessionExpired(self):
        self._deadline = None
        self.log.info(
            "smtp[{listener}]: session deadline reached for [{peer}]",
            listener=self.listener.name,
            peer=self.peer,
        )
        self._closeWith(R.TIMEOUT.format(hostname=self.config.hostname))

    def _closeWith(self, reply):
        if self._mode == "closed":
            return
        self._mode = "closed"
        self._abortTransaction()
        writeNow(self.transport, reply.toBytes())
        self.transport.loseConnection()

    def reply(self, reply):
        if self._mode == "closed":
            return
        writeNow(self.transport, reply.toBytes())
        if reply.isError and reply.code != 421:
            self._errors += 1
            if self._errors >= self.config.smtp.maxErrors:
                self.log.info(
                    "smtp[{listener}]: too many errors from [{peer}]",
                    listener=self.listener.name,
                    peer=self.peer,
                )
                self._closeWith(R.TOO_MANY_ERRORS.format(hostname=self.config.hostname))

    def _dataChecksBeyond(self, known):
        """
        Whether a check of the data stage is configured other than the
        built-ins named in C{known}.
        """
        checks = getattr(self.context.policy, "checks", None)
        if checks is None:
            return True
        return any(
            "data" in c.stages and getattr(c, "name", None) not in known
            for c in checks
        )

    def _dataChecksReadSpool(self):
        """
        Whether a check of the data stage may read the spool file
        (C{facts.spool}): any check but the built-ins known not to.  If
        none does, a small message stays in memory until the commit thread
        writes it (L{mailplat.queue.store.SpoolFile}).
        """
        return self._dataChecksBeyond(_SPOOL_UNREAD)

    def _dataChecksReadHeaders(self):
        """
        Whether a check of the data stage may read C{facts.headers}: any
        check but the built-ins known not to (C{mail_loop}; C{submission},
        which reads them only in the submission profiles, where they are
        parsed anyway).
        """
        if self.profile in ("submission", "submissions"):
            return True
        return self._dataChecksBeyond(_HEADERS_UNREAD)

    def _decide(self, stage, then, *args):
        """
        Run the checks of C{stage}, then C{then(verdict, *args)}: at once when
        every check answered synchronously (no Deferred to make and run),
        else when the verdict comes.

        @return: what C{then} returns, or a Deferred of it; a failure (of a
            check or of C{then}) is a failed Deferred, answered 451 by
            L{_internalError} as before.
        """
        policy = self.context.policy
        runNow = getattr(policy, "runNow", None)
        result = runNow(stage, self.facts) if runNow is not None else policy.run(
            stage, self.facts
        )
        if isinstance(result, defer.Deferred):
            return result.addCallback(then, *args)
        try:
            return then(result, *args)
        except Exception:
            return defer.fail()

    def _logVerdict(self, stage, verdict, subject=""):
        self.log.info(
            "smtp[{listener}]: {stage} {action} for [{peer}]{subject}: {code} "
            "{reason}",
            listener=self.listener.name,
            stage=stage,
            action=verdict.action,
            peer=self.peer,
            subject=f" {subject}" if subject else "",
            code=verdict.reply.code if verdict.reply else "",
            reason=verdict.reason,
        )

    # -- input

    def dataReceived(self, data):
        if self._mode == "closed":
            return
        if self._mode in ("connect", "early"):
            # RFC 5321 4.3.1: the client waits for the greeting.  One that
            # talks first does not read replies (Postfix's postscreen).
            self._mode = "early"
            self.log.info(
                "smtp[{listener}]: [{peer}] talked before the greeting",
                listener=self.listener.name,
                peer=self.peer,
            )
            self._closeWith(R.TALKED_FIRST)
            return
        self.resetTimeout()
        if not self._busy and self._mode == "data":
            self._dataReceived(data)
            return
        if not self._busy and self._mode == "bdat":
            self._bdatReceived(data)
            return
        self._buffer += data
        if self._busy and len(self._buffer) > _MAX_PIPELINE and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._process()

    def _process(self):
        """
        Run buffered commands one by one until one is asynchronous.
        """
        while not self._busy and self._mode in ("command", "sasl"):
            line = self._nextLine()
            if line is None:
                break
            if self._mode == "sasl":
                result = self._saslResponse(line)
            else:
                result = self._command(line)
            if isinstance(result, defer.Deferred):
                self._busy = True
                result.addErrback(self._internalError)
                result.addBoth(self._resume)
                return
        if not self._busy and self._buffer and self._mode in ("data", "bdat"):
            data, self._buffer = self._buffer, b""
            if self._mode == "data":
                self._dataReceived(data)
            else:
                self._bdatReceived(data)
        if self._paused and not self._busy and len(self._buffer) < _MAX_PIPELINE:
            self._paused = False
            self.transport.resumeProducing()

    def _resume(self, _):
        self._busy = False
        if self._mode != "closed":
            self._process()

    def _internalError(self, failure):
        self.log.failure(
            "smtp[{listener}]: internal error with [{peer}]",
            failure,
            listener=self.listener.name,
            peer=self.peer,
        )
        self._abortTransaction()
        if self._mode in ("connect", "early"):
            self._closeWith(R.SHUTTING_DOWN.format(hostname=self.config.hostname))
        else:
            self.reply(R.LOCAL_ERROR)

    def _nextLine(self):
        """
        Take one command line off the buffer, enforcing the line limit with a
        bounded buffer: an over-long line is discarded as it arrives and
        answered with 500 5.5.2 when its end comes.
        """
        limit = self.config.smtp.maxCommandLine
        while True:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                if len(self._buffer) > limit:
                    self._discarding = True
                    self._buffer = b""
                return None
            line, self._buffer = self._buffer[:nl], self._buffer[nl + 1 :]
            if self._discarding or len(line) > limit:
                self._discarding = False
                self.log.info(
                    "smtp[{listener}]: command line too long from [{peer}]",
                    listener=self.listener.name,
                    peer=self.peer,
                )
                self.reply(R.LINE_TOO_LONG)
                if self._mode == "sasl":
                    self._mode = "command"
                    self._saslState = None
                if self._mode == "closed":
                    return None
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            return line

    # -- commands

    def _command(self, line):
        verb, _, arg = line.partition(b" ")
        try:
            verb = verb.decode("ascii").upper()
        except UnicodeDecodeError:
            return self.reply(R.UNKNOWN_COMMAND)
        if not verb.isalpha():
            return self.reply(R.UNKNOWN_COMMAND)
        if verb in ("SEND", "SOML", "SAML", "TURN"):
            return self.reply(R.OBSOLETE_COMMAND)
        handler = getattr(self, "smtp_" + verb, None)
        if handler is None:
            return self.reply(R.UNKNOWN_COMMAND)
        try:
            text = arg.decode("utf-8")
        except UnicodeDecodeError:
            return self.reply(R.SYNTAX.format(usage=f"{verb}: not valid UTF-8"))
        return handler(text.strip(" "))

    def _needsArgument(self, arg, usage):
        if not arg:
            self.reply(R.SYNTAX.format(usage=usage))
            return False
        return True

    def _hello(self, arg, esmtp):
        self._abortTransaction()
        self.helo, self.esmtp = arg, esmtp
        self.facts.helo = arg
        return self._decide("helo", self._helloVerdict, esmtp)

    def _helloVerdict(self, verdict, esmtp):
        if verdict.action in (V.REJECT, V.TEMPFAIL, V.DISCONNECT):
            self._logVerdict("helo", verdict, self.helo)
            self.helo = self.facts.helo = None
            if verdict.action == V.DISCONNECT:
                return self._closeWith(verdict.reply)
            return self.reply(verdict.reply)
        if not esmtp:
            writeNow(self.transport, f"250 {self.config.hostname}\r\n".encode("ascii"))
            return
        lines = [
            self.config.hostname,
            "PIPELINING",
            f"SIZE {self.config.smtp.maxMessageSize}",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "CHUNKING",
            "ENHANCEDSTATUSCODES",
        ]
        if self.canStartTLS:
            lines.append("STARTTLS")
        offered = self._mechanisms().offered(self.secure)
        if offered and self.authenticated is None:
            lines.append("AUTH " + " ".join(offered))
        out = "".join(f"250-{line}\r\n" for line in lines[:-1])
        out += f"250 {lines[-1]}\r\n"
        writeNow(self.transport, out.encode("ascii"))

    def smtp_HELO(self, arg):
        if not self._needsArgument(arg, "HELO hostname"):
            return
        return self._hello(arg, False)

    def smtp_EHLO(self, arg):
        if not self._needsArgument(arg, "EHLO hostname"):
            return
        return self._hello(arg, True)

    def smtp_NOOP(self, arg):
        self.reply(R.OK)

    def smtp_RSET(self, arg):
        if arg:
            return self.reply(R.SYNTAX.format(usage="RSET"))
        self._abortTransaction()
        self.reply(R.OK)

    def smtp_QUIT(self, arg):
        self._closeWith(R.BYE)

    def smtp_VRFY(self, arg):
        if not self._needsArgument(arg, "VRFY address"):
            return
        if self.config.smtp.vrfy != "verify":
            return self.reply(R.CANNOT_VRFY)
        address = arg.strip("<>").strip()
        d = self.context.runBlocking(self.context.recipients.resolve, address)
        d.addCallbacks(
            lambda resolution: self.reply(R.VRFY_OK.format(address=address)),
            self._vrfyFailed,
            errbackArgs=(address,),
        )
        return d

    def _vrfyFailed(self, failure, address):
        if failure.check(UnknownRecipient):
            return self.reply(R.USER_UNKNOWN.format(address=address))
        return failure

    smtp_EXPN = smtp_VRFY

    def smtp_HELP(self, arg):
        self.reply(R.HELP)

    def smtp_STARTTLS(self, arg):
        if arg:
            return self.reply(R.SYNTAX.format(usage="STARTTLS"))
        if self.secure:
            return self.reply(R.BAD_SEQUENCE.format(detail="TLS already active"))
        if not self.canStartTLS:
            return self.reply(R.TLS_NOT_AVAILABLE)
        self.reply(R.READY_TLS)
        # RFC 3207 4.2: forget everything learnt before TLS, and throw away
        # what the client pipelined after STARTTLS in plaintext (the
        # CVE-2011-0411 family).
        if self._buffer:
            self.log.info(
                "smtp[{listener}]: discarded {n} bytes pipelined after STARTTLS "
                "from [{peer}]",
                listener=self.listener.name,
                n=len(self._buffer),
                peer=self.peer,
            )
        self._buffer = b""
        self._abortTransaction()
        self.helo = self.facts.helo = None
        self.esmtp = False
        self.authenticated = self.facts.authenticated = None
        self.transport.startTLS(self.context.tlsOptions)
        self.facts.secure = True

    # -- AUTH (RFC 4954)

    def _mechanisms(self):
        """
        The SASL mechanisms configured for this listener.
        """
        sasl = self.context.sasl
        return sasl if sasl is not None else builtinMechanisms()

    def smtp_AUTH(self, arg):
        """
        RFC 4954 with the mechanisms of L{mailplat.auth.sasl}.  Those that
        send secrets in the clear (all the built-in ones) are refused before
        TLS, before any challenge.
        """
        if not self.esmtp:
            return self.reply(R.BAD_SEQUENCE.format(detail="send EHLO first"))
        mechanisms = self._mechanisms()
        name, _, initial = arg.partition(" ")
        factory = mechanisms.get(name)
        if not self.secure and (factory is None or factory.cleartext):
            return self.reply(R.TLS_REQUIRED)
        if self.authenticated is not None:
            return self.reply(R.BAD_SEQUENCE.format(detail="already authenticated"))
        if self.transaction is not None:
            return self.reply(
                R.BAD_SEQUENCE.format(detail="AUTH not allowed during a mail transaction")
            )
        if factory is None:
            return self.reply(R.AUTH_UNKNOWN_MECHANISM)
        self._saslState = factory.makeMechanism("smtp", self.config.hostname)
        self._mode = "sasl"
        if initial:
            return self._saslResponse(initial.encode("ascii", "replace"))
        return self._saslStep(None)

    def _saslEnd(self):
        self._saslState, self._mode = None, "command"

    def _saslResponse(self, line):
        """
        One client response line: C{*} aborts (501 5.7.0), bad base64 is
        501 5.5.2.
        """
        try:
            decoded = decodeResponse(line.strip())
        except SASLCancelled:
            self._saslEnd()
            return self.reply(R.AUTH_ABORTED)
        except SASLBadEncoding:
            self._saslEnd()
            return self.reply(R.AUTH_BAD_RESPONSE)
        return self._saslStep(decoded)

    def _saslStep(self, response):
        """
        Give the mechanism a decoded response: send its challenge (334), or
        refuse a malformed response (501 5.5.2), or log in with its
        credentials.  An authorization identity other than the user's own
        fails like a wrong password (535 5.7.8, after the throttle's wait).
        """
        try:
            result = self._saslState.respond(response)
        except SASLMalformedResponse:
            self._saslEnd()
            return self.reply(R.AUTH_BAD_RESPONSE)
        except SASLAuthorizationRefused as e:
            return self._login(None, e.authcid)
        if isinstance(result, bytes):
            writeNow(self.transport, b"334 " + encodeChallenge(result) + b"\r\n")
            return None
        return self._login(result, getattr(result, "username", b""))

    def _login(self, creds, user):
        """
        Check the credentials after the throttle's wait for this address
        (C{creds} L{None}: fail without checking).
        """
        throttle = self.context.authThrottle
        wait = throttle.delay(self.peer) if throttle is not None else 0
        if wait:
            d = task.deferLater(self.context.clock, wait, lambda: None)
        else:
            d = defer.succeed(None)
        if creds is None:
            d.addCallback(
                lambda _: defer.fail(crederror.UnauthorizedLogin("bad authzid"))
            )
        else:
            d.addCallback(
                lambda _: self.context.portal.login(creds, None, IMailUser)
            )
        d.addCallbacks(
            lambda result: self._authFinished(result[1], user),
            lambda failure: self._authFailed(failure, user),
        )
        return d

    def _authFailed(self, failure, user):
        if not failure.check(crederror.UnauthorizedLogin, crederror.UnhandledCredentials):
            self.log.failure("smtp: auth error", failure)
        return self._authFinished(None, user)

    def _authFinished(self, avatar, user):
        self._saslState = None
        if self._mode == "sasl":
            self._mode = "command"
        if isinstance(user, bytes):
            user = user.decode("utf-8", "replace")
        name = user
        throttle = self.context.authThrottle
        if avatar is None:
            if throttle is not None:
                throttle.failed(self.peer)
            self.log.info(
                "smtp[{listener}]: AUTH failed for {user!r} from [{peer}]",
                listener=self.listener.name,
                user=name,
                peer=self.peer,
            )
            return self.reply(R.AUTH_FAILED)
        if throttle is not None:
            throttle.succeeded(self.peer)
        self.authenticated = self.facts.authenticated = avatar.address
        self.log.info(
            "smtp[{listener}]: AUTH ok for {user} from [{peer}]",
            listener=self.listener.name,
            user=avatar.address,
            peer=self.peer,
        )
        self.reply(R.AUTH_OK)

    # -- the mail transaction

    def _abortTransaction(self):
        t = self.transaction
        self.transaction = None
        if self.facts is not None:
            self.facts.sender = None
            self.facts.params = {}
            self.facts.recipients = []
            self.facts.headers = None
        if t is not None and t.spool is not None and not t.spool.closed:
            t.spool.abort()
            self.log.info(
                "{queueId}: aborted, message not accepted", queueId=t.spool.envelope.id
            )

    def _mailParameters(self, params, utf8Path):
        """
        @return: the parameters to keep, or a L{Reply} for an error.
        """
        kept = {}
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    return R.BAD_PARAMETER.format(detail="SIZE")
                if int(value) > self.config.smtp.maxMessageSize:
                    return R.MESSAGE_TOO_BIG
                kept["size"] = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return R.BAD_PARAMETER.format(detail="BODY")
                kept["body"] = value.upper()
            elif key == "SMTPUTF8":
                if value is not None:
                    return R.BAD_PARAMETER.format(detail="SMTPUTF8")
                kept["smtputf8"] = True
            elif key == "RET":
                if value is None or value.upper() not in ("FULL", "HDRS"):
                    return R.BAD_PARAMETER.format(detail="RET")
                kept["ret"] = value.upper()
            elif key == "ENVID":
                try:
                    envid = decodeXtext(value or "")
                except AddressSyntaxError:
                    return R.BAD_PARAMETER.format(detail="ENVID")
                if not value or len(value) > 100:
                    return R.BAD_PARAMETER.format(detail="ENVID")
                kept["envid"] = envid
            elif key == "AUTH":
                # RFC 4954 5: accepted and not passed on (we do not trust it).
                continue
            else:
                return R.BAD_PARAMETER.format(detail=key)
        return kept

    def smtp_MAIL(self, arg):
        if self.helo is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="send HELO/EHLO first"))
        if self.transaction is not None:
            return self.reply(R.BAD_SEQUENCE.format(detail="nested MAIL command"))
        if arg[:5].upper() != "FROM:":
            return self.reply(R.SYNTAX.format(usage="MAIL FROM:<address>"))
        wantsUTF8 = self.esmtp and " SMTPUTF8" in arg.upper()
        try:
            sender, rest = parsePath(arg[5:], allowNull=True, utf8=wantsUTF8)
        except NonASCIIAddress:
            return self.reply(R.NEED_SMTPUTF8)
        except AddressSyntaxError:
            return self.reply(R.BAD_SENDER_SYNTAX)
        try:
            params = parseParameters(rest)
        except AddressSyntaxError as e:
            return self.reply(R.BAD_PARAMETER.format(detail=str(e)))
        if params and not self.esmtp:
            return self.reply(R.BAD_PARAMETER.format(detail="parameters need EHLO"))
        kept = self._mailParameters(params, wantsUTF8)
        if isinstance(kept, R.Reply):
            return self.reply(kept)
        senderText = "" if sender is None else str(sender)
        self.facts.sender = senderText
        self.facts.params = kept
        return self._decide("mail", self._mailVerdict, senderText, kept)

    def _mailVerdict(self, verdict, sender, params):
        if verdict.action in (V.REJECT, V.TEMPFAIL, V.DISCONNECT):
            self._logVerdict("mail", verdict, f"from=<{sender}>")
            self.facts.sender = None
            self.facts.params = {}
            if verdict.action == V.DISCONNECT:
                return self._closeWith(verdict.reply)
            return self.reply(verdict.reply)
        self.transaction = Transaction(sender, params)
        self.reply(R.SENDER_OK)

    def _recipientParameters(self, params):
        """
        @return: C{(notify, orcpt)}, or a L{Reply} for an error (RFC 3461 4).
        """
        notify = orcpt = ""
        for key, value in params.items():
            if key == "NOTIFY":
                words = (value or "").upper().split(",")
                if words != ["NEVER"] and (
                    not all(w in _NOTIFY for w in words) or len(set(words)) != len(words)
                ):
                    return R.BAD_PARAMETER.format(detail="NOTIFY")
                notify = ",".join(words)
            elif key == "ORCPT":
                addrType, semi, xtext = (value or "").partition(";")
                if not semi or not addrType or not xtext:
                    return R.BAD_PARAMETER.format(detail="ORCPT")
                try:
                    orcpt = f"{addrType.lower()};{decodeXtext(xtext)}"
                except AddressSyntaxError:
                    return R.BAD_PARAMETER.format(detail="ORCPT")
            else:
                return R.BAD_PARAMETER.format(detail=key)
        return notify, orcpt

    def smtp_RCPT(self, arg):
        t = self.transaction
        if t is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="need MAIL command"))
        if arg[:3].upper() != "TO:":
            return self.reply(R.SYNTAX.format(usage="RCPT TO:<address>"))
        rest = arg[3:]
        postmaster = rest.strip().lower().startswith("<postmaster>")
        try:
            if postmaster:
                rcpt, rest = None, rest.strip()[len("<postmaster>") :].strip()
            else:
                rcpt, rest = parsePath(rest, allowNull=False, utf8=t.params.get("smtputf8", False))
            params = parseParameters(rest)
        except NonASCIIAddress:
            return self.reply(R.NEED_SMTPUTF8)
        except AddressSyntaxError:
            return self.reply(R.BAD_RECIPIENT_SYNTAX)
        found = self._recipientParameters(params)
        if isinstance(found, R.Reply):
            return self.reply(found)
        if t.accepted >= self.config.smtp.maxRecipients:
            return self.reply(R.TOO_MANY_RECIPIENTS)
        address = "postmaster" if postmaster else str(rcpt)
        self.facts.recipient = address
        return self._decide("rcpt", self._rcptVerdict, t, address, found)

    def _rcptVerdict(self, verdict, t, address, found):
        self.facts.recipient = None
        if t is not self.transaction:
            return  # RSET or STARTTLS meanwhile
        if verdict.action == V.CONTINUE:
            # Deny by default: no check accepted the recipient.
            verdict = V.Verdict(
                V.REJECT, R.RELAY_DENIED.format(address=address), reason="relay denied"
            )
        if verdict.action in (V.REJECT, V.TEMPFAIL, V.DISCONNECT):
            self._logVerdict("rcpt", verdict, f"to=<{address}>")
            if verdict.action == V.DISCONNECT:
                return self._closeWith(verdict.reply)
            return self.reply(verdict.reply)
        notify, orcpt = found
        if not orcpt:
            orcpt = f"rfc822;{address}"
        for final in verdict.recipients or (address,):
            if final not in t.recipients:
                t.recipients[final] = Recipient(final, orcpt=orcpt, notify=notify)
        t.accepted += 1
        self.facts.recipients.append(address)
        if verdict.action == V.QUARANTINE:
            t.params["quarantine"] = verdict.reason or "policy"
        self.reply(R.RECIPIENT_OK)

    def _startMessage(self, t):
        """
        Open the spool file for the transaction.

        @return: L{None}, or the L{Reply} for a storage error.
        """
        envelope = Envelope(
            id=newQueueId(),
            sender=t.sender,
            recipients=list(t.recipients.values()),
            arrival=time.time(),
            client={
                "address": self.peer,
                "helo": self.helo,
                "tls": tlsDescription(self.transport),
                "authenticated": self.authenticated,
                "listener": self.listener.name,
            },
            params=t.params,
        )
        try:
            t.spool = self.context.queue.spool(envelope)
        except OSError as e:
            self.transaction = None
            return self._storageErrorReply(e, envelope.id)
        t.writer = MessageWriter(
            t.spool,
            self._receivedHeader(envelope),
            self._headerAdditions
            if self.profile in ("submission", "submissions")
            else None,
            authservId=self.config.hostname,
        )
        return None

    def smtp_DATA(self, arg):
        t = self.transaction
        if arg:
            return self.reply(R.SYNTAX.format(usage="DATA"))
        if t is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="need MAIL command"))
        if t.usedBDAT:
            return self.reply(R.BAD_SEQUENCE.format(detail="DATA after BDAT"))
        if not t.recipients:
            return self.reply(R.NO_VALID_RECIPIENTS)
        error = self._startMessage(t)
        if error is not None:
            return self.reply(error)
        t.decoder = DataDecoder()
        self._mode = "data"
        self.setTimeout(self.config.smtp.dataTimeout)
        self.reply(R.START_DATA)

    def smtp_BDAT(self, arg):
        words = arg.split()
        if not words or not words[0].isdigit() or len(words) > 2 or (
            len(words) == 2 and words[1].upper() != "LAST"
        ):
            # Without a valid size the chunk cannot be skipped: RFC 3030 4.
            return self._closeWith(R.BDAT_SYNTAX)
        size, last = int(words[0]), len(words) == 2
        t = self.transaction
        error = None
        if t is None:
            error = R.BAD_SEQUENCE.format(detail="need MAIL command")
        elif not t.recipients:
            error = R.NO_VALID_RECIPIENTS
        elif t.spool is None:
            error = self._startMessage(t)
            if error is None:
                t.usedBDAT = True
                t.normalizer = LineEndingNormalizer()
        self._bdat = {"remaining": size, "size": size, "last": last, "error": error}
        self._mode = "bdat"
        self.setTimeout(self.config.smtp.dataTimeout)
        if size == 0:
            return self._bdatChunkDone()

    def _bdatReceived(self, data):
        state = self._bdat
        chunk, rest = data[: state["remaining"]], data[state["remaining"] :]
        state["remaining"] -= len(chunk)
        t = self.transaction
        if state["error"] is None and t is not None:
            self._writeContent(t, t.normalizer.feed(chunk))
        if state["remaining"]:
            return
        self._buffer = rest + self._buffer
        d = self._bdatChunkDone()
        if isinstance(d, defer.Deferred):
            self._busy = True
            d.addErrback(self._internalError)
            d.addBoth(self._resume)
        else:
            self._process()

    def _bdatChunkDone(self):
        state, self._bdat = self._bdat, None
        self._mode = "command"
        self.setTimeout(self.config.smtp.commandTimeout)
        if state["error"] is not None:
            # A failed BDAT ends the transaction's chance of success.
            self._abortTransaction()
            return self.reply(state["error"])
        if not state["last"]:
            return self.reply(R.CHUNK_OK.format(size=state["size"]))
        return self._endOfMessage(self.transaction)

    def _receivedHeader(self, envelope):
        """
        The trace header of RFC 5321 4.4, with the protocol keywords of
        RFC 3848 and RFC 6531 and the TLS details Postfix gives.
        """
        with_ = "UTF8SMTP" if envelope.params.get("smtputf8") else "ESMTP"
        if not self.esmtp:
            with_ = "SMTP"
        if self.secure:
            with_ += "S"
        if self.authenticated is not None:
            with_ += "A"
        tls = envelope.client["tls"]
        lines = [
            f"Received: from {self.helo} ([{self.peer}])",
            f"\tby {self.config.hostname} (mailplat)"
            + (f" ({tls})" if tls else ""),
            f"\twith {with_} id {envelope.id}",
        ]
        if len(envelope.recipients) == 1:
            lines.append(f"\tfor <{envelope.recipients[0].address}>;")
        else:
            lines[-1] += ";"
        lines.append(f"\t{_localDate()}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")

    def _headerAdditions(self, headers):
        """
        RFC 6409 8.2, 8.3: the submission profiles add Date and Message-ID
        when the message lacks them.
        """
        if self.profile not in ("submission", "submissions"):
            return b""
        out = b""
        if headers.get("Date") is None:
            out += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode()
        if headers.get("Message-ID") is None:
            token = secrets.token_hex(8)
            envelope = self.transaction.spool.envelope
            out += f"Message-ID: <{envelope.id}.{token}@{self.config.hostname}>\r\n".encode()
        return out

    def _writeContent(self, t, content):
        if not content or t.tooBig or t.writeError is not None:
            return
        if t.writer.size + len(content) > self.config.smtp.maxMessageSize:
            t.tooBig = True
            t.spool.abort()
            return
        try:
            t.writer.write(content)
        except OSError as e:
            t.writeError = e
            t.spool.abort()

    def _dataReceived(self, data):
        t = self.transaction
        content, leftover = t.decoder.feed(data)
        self._writeContent(t, content)
        if leftover is None:
            return
        self._mode = "command"
        self.setTimeout(self.config.smtp.commandTimeout)
        self._buffer = leftover + self._buffer
        d = self._endOfMessage(t)
        if isinstance(d, defer.Deferred):
            self._busy = True
            d.addErrback(self._internalError)
            d.addBoth(self._resume)
        else:
            self._process()

    def _endOfMessage(self, t):
        queueId = t.spool.envelope.id
        if t.tooBig:
            self.transaction = None
            self.log.info(
                "{queueId}: rejected: message larger than {limit} bytes from [{peer}]",
                queueId=queueId,
                limit=self.config.smtp.maxMessageSize,
                peer=self.peer,
            )
            return self.reply(R.MESSAGE_TOO_BIG)
        if t.writeError is not None:
            self.transaction = None
            return self.reply(self._storageErrorReply(t.writeError, queueId))
        try:
            t.writer.finish()
            if self._dataChecksReadSpool():
                t.spool.flush()
        except OSError as e:
            t.spool.abort()
            self.transaction = None
            return self.reply(self._storageErrorReply(e, queueId))
        received = 0
        if t.decoder is None or self._dataChecksReadHeaders():
            headers = t.writer.headers
            if headers is not None:
                received = len(headers.get_all("Received", []))
        else:
            # Nothing at the data stage reads them: not parsed (the DATA
            # decoder counted the Received fields).
            headers = None
        self.facts.headers = headers
        self.facts.size = t.writer.size
        if t.decoder is not None:
            received = max(received, t.decoder.receivedCount)
        self.facts.receivedCount = received
        self.facts.spool = t.spool
        self.facts.extraHeaders = []
        return self._decide("data", self._dataVerdict, t)

    def _dataVerdict(self, verdict, t):
        queueId = t.spool.envelope.id
        if t is not self.transaction:
            return
        if verdict.action in (V.REJECT, V.TEMPFAIL, V.DISCONNECT):
            self._logVerdict("data", verdict, f"id={queueId}")
            self._abortTransaction()
            if verdict.action == V.DISCONNECT:
                return self._closeWith(verdict.reply)
            return self.reply(verdict.reply)
        self.facts.spool = None
        if verdict.action == V.QUARANTINE:
            t.spool.envelope.params["quarantine"] = verdict.reason or "policy"
        if self.facts.extraHeaders:
            t.spool.envelope.headers = [
                h.decode("utf-8", "replace") for h in self.facts.extraHeaders
            ]
        committer = self.context.committer
        if committer is not None:
            d = committer.commit(t.spool)
        else:
            d = self.context.runBlocking(t.spool.commit)
        d.addCallbacks(self._committed, self._commitFailed, errbackArgs=(queueId,))
        return d

    def _committed(self, item):
        self.transaction = None
        self.facts.sender = None
        self.facts.recipients = []
        self.facts.headers = None
        env = item.envelope
        self.log.info(
            "{queueId}: accepted from=<{sender}>, nrcpt={n}, size={size}, "
            "client=[{peer}], helo={helo}, auth={auth}, tls={tls}",
            queueId=item.id,
            sender=env.sender,
            n=len(env.recipients),
            size=item.size,
            peer=self.peer,
            helo=self.helo,
            auth=self.authenticated or "-",
            tls="yes" if self.secure else "no",
        )
        self.reply(R.QUEUED.format(queueId=item.id))
        self.context.runner.enqueue(item)
        if self.context.events is not None:
            self.context.events.emit(MailEvent(ACCEPTED, item.id, env.sender))

    def _commitFailed(self, failure, queueId):
        self.transaction = None
        if failure.check(OSError):
            return self.reply(self._storageErrorReply(failure.value, queueId))
        return failure

    def _storageErrorReply(self, e, queueId):
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        self.log.error(
            "{queueId}: not accepted, cannot write the queue file: {error}",
            queueId=queueId,
            error=e,
        )
        return R.STORAGE_FULL if full else R.LOCAL_ERROR


class SMTPFactory(protocol.Factory):
    """
    Builds L{SMTPServer} sessions for one listener.
    """

    noisy = False

    def __init__(self, context, listener):
        self.context = context
        self.listener = listener

    def buildProtocol(self, addr):
        p = SMTPServer(self.context, self.listener)
        p.factory = self
        return p
