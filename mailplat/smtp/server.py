"""
The ESMTP server (RFC 5321) for the C{mx}, C{submission} and C{submissions}
profiles.

This is our own protocol class rather than a subclass of
C{twisted.mail.smtp.ESMTP}: the fixes DESIGN.md 7 lists (STARTTLS injection,
DATA smuggling, unbounded line buffers, pipelining with asynchronous checks,
MAIL/RCPT parameters, timeouts, 451 on storage errors) touch nearly every
method of that class, so docs/smtp.md explains the choice.

Commands are processed strictly one at a time, in order: a command whose
check is asynchronous (a user lookup, a password check, the fsync before 250)
holds back the commands pipelined behind it, so replies always come in order
(RFC 2920).
"""

import base64
import binascii
import email.utils
import errno
import time

from twisted.cred import credentials, error as crederror
from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from mailplat.interfaces import IMailUser
from mailplat.queue.envelope import Envelope, Recipient
from mailplat.queue.store import newQueueId
from mailplat.smtp import replies as R
from mailplat.smtp.address import AddressSyntaxError, parseParameters, parsePath
from mailplat.smtp.datastream import DataDecoder

_MAX_PIPELINE = 256 * 1024  # unprocessed input before we stop reading


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
    The state of one mail transaction (MAIL to end of DATA).
    """

    def __init__(self, sender, params):
        self.sender = sender
        self.params = params
        self.recipients = []
        self.spool = None
        self.decoder = None
        self.tooBig = False
        self.writeError = None


class SMTPServer(protocol.Protocol, TimeoutMixin):
    """
    One SMTP session.

    @ivar factory: the L{SMTPFactory}, with C{context} and C{listener}.
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
        self._mode = "command"
        self._errors = 0
        self._saslState = None
        self.helo = None
        self.esmtp = False
        self.authenticated = None
        self.transaction = None
        self.peer = "unknown"

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
        peer = self.transport.getPeer()
        self.peer = getattr(peer, "host", None) or str(peer)
        self.setTimeout(self.config.smtp.commandTimeout)
        self.log.info(
            "smtp[{listener}]: connect from [{peer}]",
            listener=self.listener.name,
            peer=self.peer,
        )
        self.transport.write(
            f"220 {self.config.hostname} ESMTP mailplat\r\n".encode("ascii")
        )

    def connectionLost(self, reason):
        self.setTimeout(None)
        self._mode = "closed"
        self._abortTransaction()
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

    def _closeWith(self, reply):
        self._mode = "closed"
        self._abortTransaction()
        self.transport.write(reply.toBytes())
        self.transport.loseConnection()

    def reply(self, reply):
        if self._mode == "closed":
            return
        self.transport.write(reply.toBytes())
        if reply.isError and reply.code != 421:
            self._errors += 1
            if self._errors >= self.config.smtp.maxErrors:
                self.log.info(
                    "smtp[{listener}]: too many errors from [{peer}]",
                    listener=self.listener.name,
                    peer=self.peer,
                )
                self._closeWith(R.TOO_MANY_ERRORS.format(hostname=self.config.hostname))

    # -- input

    def dataReceived(self, data):
        if self._mode == "closed":
            return
        self.resetTimeout()
        if self._mode == "data" and not self._busy:
            self._dataReceived(data)
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
        if self._mode == "data" and not self._busy and self._buffer:
            data, self._buffer = self._buffer, b""
            self._dataReceived(data)
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

    def smtp_HELO(self, arg):
        if not self._needsArgument(arg, "HELO hostname"):
            return
        self._abortTransaction()
        self.helo, self.esmtp = arg, False
        self.transport.write(f"250 {self.config.hostname}\r\n".encode("ascii"))

    def smtp_EHLO(self, arg):
        if not self._needsArgument(arg, "EHLO hostname"):
            return
        self._abortTransaction()
        self.helo, self.esmtp = arg, True
        lines = [
            self.config.hostname,
            "PIPELINING",
            f"SIZE {self.config.smtp.maxMessageSize}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
        ]
        if self.canStartTLS:
            lines.append("STARTTLS")
        if self.secure and self.authenticated is None:
            lines.append("AUTH PLAIN LOGIN")
        out = "".join(f"250-{line}\r\n" for line in lines[:-1])
        out += f"250 {lines[-1]}\r\n"
        self.transport.write(out.encode("ascii"))

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
        self.reply(R.CANNOT_VRFY)

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
        self.helo = None
        self.esmtp = False
        self.authenticated = None
        self.transport.startTLS(self.context.tlsOptions)

    # -- AUTH (RFC 4954)

    def smtp_AUTH(self, arg):
        if not self.esmtp:
            return self.reply(R.BAD_SEQUENCE.format(detail="send EHLO first"))
        if not self.secure:
            return self.reply(R.TLS_REQUIRED)
        if self.authenticated is not None:
            return self.reply(R.BAD_SEQUENCE.format(detail="already authenticated"))
        if self.transaction is not None:
            return self.reply(
                R.BAD_SEQUENCE.format(detail="AUTH not allowed during a mail transaction")
            )
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "LOGIN"):
            return self.reply(R.AUTH_UNKNOWN_MECHANISM)
        self._saslState = {"mechanism": mechanism}
        self._mode = "sasl"
        if mechanism == "PLAIN":
            if initial:
                return self._saslResponse(initial.encode("ascii", "replace"))
            self.transport.write(b"334 \r\n")
        else:
            if initial:
                return self._saslResponse(initial.encode("ascii", "replace"))
            self.transport.write(b"334 VXNlcm5hbWU6\r\n")

    def _saslResponse(self, line):
        state = self._saslState
        if line.strip() == b"*":
            self._saslState, self._mode = None, "command"
            return self.reply(R.AUTH_ABORTED)
        try:
            decoded = base64.b64decode(line.strip(), validate=True)
        except (binascii.Error, ValueError):
            self._saslState, self._mode = None, "command"
            return self.reply(R.AUTH_BAD_RESPONSE)
        if state["mechanism"] == "PLAIN":
            parts = decoded.split(b"\0")
            if len(parts) != 3 or not parts[1]:
                self._saslState, self._mode = None, "command"
                return self.reply(R.AUTH_BAD_RESPONSE)
            authzid, user, password = parts
            if authzid and authzid != user:
                return self._authFinished(None, user)
            return self._login(user, password)
        if "user" not in state:
            state["user"] = decoded
            self.transport.write(b"334 UGFzc3dvcmQ6\r\n")
            return None
        return self._login(state["user"], decoded)

    def _login(self, user, password):
        d = self.context.portal.login(
            credentials.UsernamePassword(user, password), None, IMailUser
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
        self._saslState, self._mode = None, "command"
        name = user.decode("utf-8", "replace")
        if avatar is None:
            self.log.info(
                "smtp[{listener}]: AUTH failed for {user!r} from [{peer}]",
                listener=self.listener.name,
                user=name,
                peer=self.peer,
            )
            return self.reply(R.AUTH_FAILED)
        self.authenticated = avatar.address
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
        if t is not None and t.spool is not None and not t.spool.closed:
            t.spool.abort()
            self.log.info(
                "{queueId}: aborted, message not accepted", queueId=t.spool.envelope.id
            )

    def smtp_MAIL(self, arg):
        if self.helo is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="send HELO/EHLO first"))
        if self.profile in ("submission", "submissions") and self.authenticated is None:
            if not self.secure:
                return self.reply(R.TLS_REQUIRED)
            return self.reply(R.AUTH_REQUIRED)
        if self.transaction is not None:
            return self.reply(R.BAD_SEQUENCE.format(detail="nested MAIL command"))
        if arg[:5].upper() != "FROM:":
            return self.reply(R.SYNTAX.format(usage="MAIL FROM:<address>"))
        try:
            sender, rest = parsePath(arg[5:], allowNull=True)
        except AddressSyntaxError:
            return self.reply(R.BAD_SENDER_SYNTAX)
        try:
            params = parseParameters(rest)
        except AddressSyntaxError as e:
            return self.reply(R.BAD_PARAMETER.format(detail=str(e)))
        if params and not self.esmtp:
            return self.reply(R.BAD_PARAMETER.format(detail="parameters need EHLO"))
        kept = {}
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    return self.reply(R.BAD_PARAMETER.format(detail="SIZE"))
                if int(value) > self.config.smtp.maxMessageSize:
                    return self.reply(R.MESSAGE_TOO_BIG)
                kept["size"] = int(value)
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    return self.reply(R.BAD_PARAMETER.format(detail="BODY"))
                kept["body"] = value.upper()
            else:
                return self.reply(R.BAD_PARAMETER.format(detail=key))
        senderText = "" if sender is None else str(sender)
        if self.profile in ("submission", "submissions"):
            if senderText.lower() != self.authenticated:
                return self.reply(
                    R.SENDER_NOT_OWNED.format(
                        address=senderText, user=self.authenticated
                    )
                )
        self.transaction = Transaction(senderText, kept)
        self.reply(R.SENDER_OK)

    def smtp_RCPT(self, arg):
        t = self.transaction
        if t is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="need MAIL command"))
        if arg[:3].upper() != "TO:":
            return self.reply(R.SYNTAX.format(usage="RCPT TO:<address>"))
        try:
            rcpt, rest = parsePath(arg[3:], allowNull=False)
            params = parseParameters(rest)
        except AddressSyntaxError:
            return self.reply(R.BAD_RECIPIENT_SYNTAX)
        if params:
            return self.reply(
                R.BAD_PARAMETER.format(detail=" ".join(sorted(params)))
            )
        if len(t.recipients) >= self.config.smtp.maxRecipients:
            return self.reply(R.TOO_MANY_RECIPIENTS)
        address = str(rcpt)
        if not rcpt.isAddressLiteral and self.config.isLocalDomain(rcpt.domain):
            lookup = address.lower()
            d = self.context.runBlocking(self.context.users.exists, lookup)
            d.addCallbacks(
                lambda exists: self._localRecipient(t, lookup, exists),
                lambda failure: self._lookupFailed(failure, lookup),
            )
            return d
        if self.authenticated is not None:
            t.recipients.append(address)
            return self.reply(R.RECIPIENT_OK)
        self.log.info(
            "smtp[{listener}]: relay denied for <{rcpt}> from [{peer}]",
            listener=self.listener.name,
            rcpt=address,
            peer=self.peer,
        )
        return self.reply(R.RELAY_DENIED.format(address=address))

    def _localRecipient(self, transaction, address, exists):
        if transaction is not self.transaction:
            return  # RSET or STARTTLS meanwhile; nothing to answer for
        if not exists:
            return self.reply(R.USER_UNKNOWN.format(address=address))
        if address not in transaction.recipients:
            transaction.recipients.append(address)
        self.reply(R.RECIPIENT_OK)

    def _lookupFailed(self, failure, address):
        self.log.failure("smtp: user lookup failed for {address}", failure, address=address)
        self.reply(R.TEMPORARY_LOOKUP_FAILURE)

    def smtp_DATA(self, arg):
        t = self.transaction
        if arg:
            return self.reply(R.SYNTAX.format(usage="DATA"))
        if t is None:
            return self.reply(R.BAD_SEQUENCE.format(detail="need MAIL command"))
        if not t.recipients:
            return self.reply(R.NO_VALID_RECIPIENTS)
        envelope = Envelope(
            id=newQueueId(),
            sender=t.sender,
            recipients=[Recipient(r) for r in t.recipients],
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
            t.spool.write(self._receivedHeader(envelope))
        except OSError as e:
            if t.spool is not None:
                t.spool.abort()
            self.transaction = None
            return self._storageError(e, envelope.id)
        t.decoder = DataDecoder()
        self._mode = "data"
        self.setTimeout(self.config.smtp.dataTimeout)
        self.reply(R.START_DATA)

    def _receivedHeader(self, envelope):
        """
        The trace header of RFC 5321 4.4, with the protocol keywords of
        RFC 3848 and the TLS details Postfix gives.
        """
        with_ = "ESMTP" if self.esmtp else "SMTP"
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
        lines.append(f"\t{email.utils.formatdate(localtime=True)}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")

    def _dataReceived(self, data):
        t = self.transaction
        content, leftover = t.decoder.feed(data)
        if content and not t.tooBig and t.writeError is None:
            if t.spool.size + len(content) > self.config.smtp.maxMessageSize:
                t.tooBig = True
                t.spool.abort()
            else:
                try:
                    t.spool.write(content)
                except OSError as e:
                    t.writeError = e
                    t.spool.abort()
        if leftover is None:
            return
        self._mode = "command"
        self.setTimeout(self.config.smtp.commandTimeout)
        self._buffer = leftover + self._buffer
        d = self._endOfData(t)
        if isinstance(d, defer.Deferred):
            self._busy = True
            d.addErrback(self._internalError)
            d.addBoth(self._resume)
        else:
            self._process()

    def _endOfData(self, t):
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
            return self._storageError(t.writeError, queueId)
        if t.decoder.receivedCount > self.config.smtp.maxReceivedHeaders:
            self._abortTransaction()
            self.log.info(
                "{queueId}: rejected: {n} Received headers (mail loop) from [{peer}]",
                queueId=queueId,
                n=t.decoder.receivedCount,
                peer=self.peer,
            )
            return self.reply(R.MAIL_LOOP)
        d = self.context.runBlocking(t.spool.commit)
        d.addCallbacks(self._committed, self._commitFailed, errbackArgs=(queueId,))
        return d

    def _committed(self, item):
        self.transaction = None
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

    def _commitFailed(self, failure, queueId):
        self.transaction = None
        if failure.check(OSError):
            return self._storageError(failure.value, queueId)
        return failure

    def _storageError(self, e, queueId):
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        self.log.error(
            "{queueId}: not accepted, cannot write the queue file: {error}",
            queueId=queueId,
            error=e,
        )
        self.reply(R.STORAGE_FULL if full else R.LOCAL_ERROR)


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
