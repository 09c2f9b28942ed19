"""
One outbound SMTP session (RFC 5321) over an L{SMTPClientProtocol}: the
greeting, EHLO (HELO when EHLO is refused), STARTTLS (RFC 3207), AUTH PLAIN
(RFC 4954), then any number of mail transactions with per-recipient results,
and QUIT.

Timeouts are those of RFC 5321 section 4.5.3.2: 5 minutes for the greeting,
MAIL, RCPT and other commands, 2 minutes for the reply to DATA, 3 minutes for
each block of data, 10 minutes for the reply to the final ".".
"""

import base64
from dataclasses import dataclass

from twisted.internet import defer, interfaces
from twisted.logger import Logger

from mailplat._dotstuff import DataEncoder
from mailplat.delivery.smtpclient import SMTPClientError
from mailplat.queue.bounce import splitHeader
from mailplat.queue.envelope import DEFERRED, DELIVERED, FAILED, DeliveryResult

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Timeouts:
    """
    RFC 5321 section 4.5.3.2, in seconds.
    """

    greeting: float = 300.0
    command: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    dataInit: float = 120.0
    dataBlock: float = 180.0
    dataEnd: float = 600.0
    quit: float = 30.0


class SessionError(Exception):
    """
    The session could not be opened (or broke) before any transaction: the
    caller tries the next host, or gives every recipient this result.

    @ivar state: C{deferred} or C{failed}.
    @ivar status: the RFC 3463 status.
    @ivar detail: for logs and bounces.
    """

    def __init__(self, state, status, detail):
        Exception.__init__(self, detail)
        self.state = state
        self.status = status
        self.detail = detail


def _xtext(text):
    """
    RFC 3461 4.2 xtext.
    """
    out = []
    for b in text.encode("utf-8"):
        if 33 <= b <= 126 and b not in (0x2B, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


def tlsDescription(transport):
    """
    @return: e.g. C{"TLSv1.3 TLS_AES_256_GCM_SHA384"}, or L{None} without TLS.
    """
    if interfaces.ISSLTransport(transport, None) is None:
        return None
    try:
        conn = transport.getHandle()
        return f"{conn.get_protocol_version_name()} {conn.get_cipher_name()}"
    except Exception:
        return "TLS"


class SMTPSession:
    """
    @ivar protocol: the connected L{SMTPClientProtocol}.
    @ivar host: the peer's name (the MX host name, or its address).
    @ivar address: the peer's IP address.
    @ivar port: the peer's port.
    @ivar heloName: the name we give in EHLO/HELO.
    @ivar tlsMode: C{none}, C{may}, C{encrypt} or C{verify}.
    @ivar tlsOptions: C{f(host) -> Deferred} firing with a TLS client
        connection creator (verifying or not, as the mode says).
    @ivar auth: C{(username, password)} for AUTH PLAIN, or L{None}.
    @ivar loopNames: host names that are us: a peer greeting with one of
        them means the mail would loop (RFC 5321 5.1).
    @ivar runBlocking: for reading the queue file.
    @ivar extensions: the EHLO keywords (upper case) and their parameters.
    """

    log = Logger()
    chunkSize = _CHUNK

    def __init__(
        self,
        protocol,
        host,
        address,
        port,
        heloName,
        runBlocking,
        tlsMode="may",
        tlsOptions=None,
        auth=None,
        loopNames=(),
        timeouts=Timeouts(),
    ):
        self.protocol = protocol
        self.host = host
        self.address = address
        self.port = port
        self.heloName = heloName
        self.runBlocking = runBlocking
        self.tlsMode = tlsMode
        self.tlsOptions = tlsOptions
        self.auth = auth
        self.loopNames = {n.lower() for n in loopNames}
        self.timeouts = timeouts
        self.extensions = {}
        self.esmtp = False
        self.tls = None
        self.broken = False
        self.messages = 0

    @property
    def relay(self):
        host = self.address if self.address.count(":") < 2 else f"[{self.address}]"
        return f"{self.host}[{self.address}]:{self.port}" if host else ""

    @property
    def usable(self):
        return not self.broken and not self.protocol.closed

    def _fail(self, state, status, detail):
        return SessionError(state, status, detail)

    def _replyError(self, reply, what, tempStatus="4.4.0"):
        state = FAILED if reply.permanent else DEFERRED
        return SessionError(
            state,
            reply.enhancedStatus(),
            f"host {self.host}[{self.address}] said: {reply.text()} (in reply "
            f"to {what})",
        )

    def _lost(self, error, what):
        self.broken = True
        return SessionError(
            DEFERRED,
            "4.4.2",
            f"{error} with {self.host}[{self.address}] while {what}",
        )

    # -- opening

    @defer.inlineCallbacks
    def open(self):
        """
        Read the greeting, say EHLO, start TLS and authenticate as the
        policy asks.

        @raise SessionError: the session cannot be used; try the next host.
        """
        p = self.protocol
        try:
            greeting = yield p.nextReply(self.timeouts.greeting)
        except SMTPClientError as e:
            raise self._lost(e, "receiving the initial server greeting")
        if greeting.code != 220:
            self.broken = True
            p.abort()
            raise SessionError(
                DEFERRED,
                greeting.enhancedStatus("4.4.0" if greeting.code < 500 else "5.4.0"),
                f"host {self.host}[{self.address}] refused to talk to me: "
                f"{greeting.text()}",
            )
        self._checkLoop(greeting, "greeting")
        yield self._hello()
        if "STARTTLS" in self.extensions and self.tlsMode != "none":
            yield self._startTLS()
        elif self.tlsMode in ("encrypt", "verify"):
            self.broken = True
            p.abort()
            raise SessionError(
                DEFERRED,
                "4.7.4",
                f"TLS is required, but was not offered by host "
                f"{self.host}[{self.address}]",
            )
        if self.auth is not None:
            yield self._authenticate()

    def _checkLoop(self, reply, where):
        words = reply.lines[0].split() if reply.lines else []
        if words and words[0].lower().rstrip(".") in self.loopNames:
            self.broken = True
            self.protocol.abort()
            raise SessionError(
                FAILED,
                "5.4.6",
                f"mail for this destination loops back to myself "
                f"({self.host}[{self.address}] named itself {words[0]} in "
                f"its {where})",
            )

    @defer.inlineCallbacks
    def _hello(self):
        p = self.protocol
        try:
            p.sendCommand(f"EHLO {self.heloName}")
            reply = yield p.nextReply(self.timeouts.command)
            if reply.code == 250:
                self.esmtp = True
                self.extensions = {}
                for line in reply.lines[1:]:
                    keyword, _, params = line.strip().partition(" ")
                    if keyword:
                        self.extensions[keyword.upper()] = params.strip()
                self._checkLoop(reply, "EHLO reply")
                return
            if reply.code == 421:
                raise self._replyError(reply, "EHLO")
            p.sendCommand(f"HELO {self.heloName}")
            reply = yield p.nextReply(self.timeouts.command)
        except SMTPClientError as e:
            raise self._lost(e, "performing the EHLO handshake")
        if reply.code != 250:
            self.broken = True
            p.abort()
            raise self._replyError(reply, "HELO")
        self.esmtp = False
        self.extensions = {}
        self._checkLoop(reply, "HELO reply")

    @defer.inlineCallbacks
    def _startTLS(self):
        p = self.protocol
        try:
            p.sendCommand("STARTTLS")
            reply = yield p.nextReply(self.timeouts.command)
        except SMTPClientError as e:
            raise self._lost(e, "sending STARTTLS")
        if reply.code != 220:
            if self.tlsMode in ("encrypt", "verify"):
                self.broken = True
                p.abort()
                raise SessionError(
                    DEFERRED,
                    "4.7.5",
                    f"TLS is required, but host {self.host}[{self.address}] "
                    f"refused to start TLS: {reply.text()}",
                )
            self.log.info(
                "smtp: {host}[{address}] refused STARTTLS ({reply}); going on "
                "without TLS",
                host=self.host, address=self.address, reply=reply.text(),
            )
            return
        options = yield self.tlsOptions(self.host)
        p.startTLS(options)
        try:
            yield self._hello()
        except SessionError as e:
            raise SessionError(
                DEFERRED, "4.7.5",
                f"TLS handshake with {self.host}[{self.address}] failed: {e.detail}",
            )
        self.tls = tlsDescription(p.transport) or "TLS"

    @defer.inlineCallbacks
    def _authenticate(self):
        p = self.protocol
        user, password = self.auth
        if not p.secure:
            self.broken = True
            p.abort()
            raise SessionError(
                DEFERRED, "4.7.0",
                f"not sending credentials to {self.host}[{self.address}] "
                "without TLS",
            )
        if "PLAIN" not in self.extensions.get("AUTH", "").upper().split():
            self.broken = True
            p.abort()
            raise SessionError(
                DEFERRED, "4.7.0",
                f"host {self.host}[{self.address}] does not offer AUTH PLAIN",
            )
        token = base64.b64encode(
            b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
        ).decode("ascii")
        try:
            p.sendCommand(f"AUTH PLAIN {token}")
            reply = yield p.nextReply(self.timeouts.command)
        except SMTPClientError as e:
            raise self._lost(e, "authenticating")
        if reply.code != 235:
            self.broken = True
            p.abort()
            raise SessionError(
                DEFERRED,
                reply.enhancedStatus("4.7.8"),
                f"SASL authentication failed; server {self.host}"
                f"[{self.address}] said: {reply.text()}",
            )

    # -- a transaction

    def _result(self, state, status, detail, dsnAction="relayed"):
        return DeliveryResult(
            state, status, detail, self.relay, self.host, dsnAction
        )

    def _all(self, recipients, state, status, detail):
        return {r.address: self._result(state, status, detail) for r in recipients}

    def _fromReply(self, reply, dsnAction="relayed"):
        if reply.positive:
            state = DELIVERED
        elif reply.transient:
            state = DEFERRED
        else:
            state = FAILED
        return self._result(state, reply.enhancedStatus(), reply.text(), dsnAction)

    @defer.inlineCallbacks
    def send(self, item, recipients):
        """
        Send one message to C{recipients}.

        @param item: the L{mailplat.queue.store.QueuedMessage}.
        @param recipients: its L{mailplat.queue.envelope.Recipient}s to send
            to.
        @return: a Deferred firing with a L{dict} of address to
            L{DeliveryResult}.  It does not fail: a broken connection gives
            every recipient not yet answered a "deferred" result and makes
            the session unusable.
        """
        envelope = item.envelope
        params = envelope.params
        ext = self.extensions
        self.messages += 1

        # Checks before MAIL: what the peer announced rules out.
        limit = ext.get("SIZE", "")
        if limit.isdigit() and int(limit) > 0 and item.size > int(limit):
            return self._all(
                recipients, FAILED, "5.3.4",
                f"message size {item.size} exceeds size limit {limit} of "
                f"server {self.host}[{self.address}]",
            )
        body = (params.get("body") or "").upper()
        if body == "BINARYMIME" and not (
            "BINARYMIME" in ext and "CHUNKING" in ext
        ):
            return self._all(
                recipients, FAILED, "5.6.3",
                f"the message has binary content (BODY=BINARYMIME) and "
                f"server {self.host}[{self.address}] does not accept it",
            )
        utf8 = False
        if params.get("smtputf8"):
            if "SMTPUTF8" in ext:
                utf8 = True
            else:
                needed = not envelope.sender.isascii() or not all(
                    r.address.isascii() for r in recipients
                )
                if not needed:
                    header = yield self.runBlocking(
                        splitHeader, item.contentChunks()
                    )
                    needed = not header.isascii()
                if needed:
                    return self._all(
                        recipients, FAILED, "5.6.7",
                        "SMTPUTF8 is required, but was not offered by host "
                        f"{self.host}[{self.address}]",
                    )
        else:
            nonAscii = [r for r in recipients if not r.address.isascii()]
            if nonAscii or not envelope.sender.isascii():
                if "SMTPUTF8" in ext:
                    utf8 = True
                else:
                    return self._all(
                        recipients, FAILED, "5.6.7",
                        "SMTPUTF8 is required, but was not offered by host "
                        f"{self.host}[{self.address}]",
                    )

        dsn = "DSN" in ext
        mail = f"MAIL FROM:<{envelope.sender}>"
        if "SIZE" in ext:
            mail += f" SIZE={item.size}"
        if body in ("8BITMIME", "BINARYMIME") and (
            "8BITMIME" in ext or body == "BINARYMIME"
        ):
            mail += f" BODY={body}"
        elif body == "7BIT" and "8BITMIME" in ext:
            mail += " BODY=7BIT"
        if utf8:
            mail += " SMTPUTF8"
        if dsn:
            if params.get("ret"):
                mail += f" RET={params['ret'].upper()}"
            if params.get("envid"):
                mail += f" ENVID={_xtext(params['envid'])}"
        rcpts = []
        for r in recipients:
            line = f"RCPT TO:<{r.address}>"
            if dsn:
                if r.notify:
                    line += f" NOTIFY={r.notify.upper()}"
                if r.orcpt:
                    addrType, _, orig = r.orcpt.partition(";")
                    line += f" ORCPT={addrType.strip()};{_xtext(orig.strip())}"
            rcpts.append(line)
        # With DSN the next server reports success (if NOTIFY asked for it);
        # without, we report "relayed" (RFC 3461 4.1, 6.2).
        dsnAction = "" if dsn else "relayed"
        bdat = body == "BINARYMIME"
        p = self.protocol
        results = {}
        accepted = []
        stage = "sending MAIL FROM"
        try:
            if "PIPELINING" in ext:
                group = [mail] + rcpts + ([] if bdat else ["DATA"])
                p.sendCommands(group)
                mailReply = yield p.nextReply(self.timeouts.mail)
                stage = "sending RCPT TO"
                rcptReplies = []
                for _ in rcpts:
                    rcptReplies.append((yield p.nextReply(self.timeouts.rcpt)))
                dataReply = None
                if not bdat:
                    stage = "sending DATA"
                    dataReply = yield p.nextReply(self.timeouts.dataInit)
            else:
                p.sendCommand(mail)
                mailReply = yield p.nextReply(self.timeouts.mail)
                rcptReplies, dataReply = [], None
                if mailReply.positive:
                    stage = "sending RCPT TO"
                    for line in rcpts:
                        p.sendCommand(line)
                        rcptReplies.append((yield p.nextReply(self.timeouts.rcpt)))
                    if any(r.positive for r in rcptReplies) and not bdat:
                        stage = "sending DATA"
                        p.sendCommand("DATA")
                        dataReply = yield p.nextReply(self.timeouts.dataInit)

            if not mailReply.positive:
                for r in recipients:
                    results[r.address] = self._fromReply(mailReply)
                if dataReply is not None and dataReply.code == 354:
                    p.sendCommand(".")
                    yield p.nextReply(self.timeouts.dataEnd)
                yield self._reset()
                return results
            for r, reply in zip(recipients, rcptReplies):
                if reply.positive:
                    accepted.append(r)
                else:
                    results[r.address] = self._fromReply(reply)
            if not accepted:
                if dataReply is not None and dataReply.code == 354:
                    # RFC 2920 3.1: the server took DATA although no
                    # recipient was accepted; end it with an empty message.
                    p.sendCommand(".")
                    yield p.nextReply(self.timeouts.dataEnd)
                yield self._reset()
                return results
            if not bdat and dataReply.code != 354:
                for r in accepted:
                    results[r.address] = self._fromReply(dataReply)
                yield self._reset()
                return results

            stage = "sending message body"
            reader = self._reader(item, None if bdat else DataEncoder())
            if bdat:
                p.sendCommand(f"BDAT {item.size} LAST")
            try:
                yield p.sendStream(reader, self.timeouts.dataBlock)
            finally:
                reader.close()
            stage = "waiting for the reply to the end of data"
            final = yield p.nextReply(self.timeouts.dataEnd)
        except SMTPClientError as e:
            self.broken = True
            p.abort()
            early = p.earlyReply() if stage == "sending message body" else None
            if early is not None and not early.positive:
                # The server gave up on the message before our final dot.
                for r in accepted:
                    results[r.address] = self._fromReply(early)
            for r in recipients:
                if r.address not in results:
                    results[r.address] = self._result(
                        DEFERRED,
                        "4.4.2",
                        f"{e} with {self.host}[{self.address}] while {stage}",
                    )
            return results
        for r in accepted:
            results[r.address] = self._fromReply(final, dsnAction)
        if final.code == 421:
            self.broken = True
        elif not final.positive:
            yield self._reset()
        return results

    def _reader(self, item, encoder):
        """
        @return: a C{chunks()} callable for L{SMTPClientProtocol.sendStream}:
            the message read off the reactor thread, encoded for DATA (dot
            stuffing and CRLF across chunk boundaries) or raw for BDAT.  A
            read shorter than C{chunkSize} is the end of the file (a regular
            file), so a message that fits one chunk takes one thread call,
            and its last chunk goes out with the end of DATA.
        """
        state = {"file": None, "done": False, "eof": False}

        def read():
            if state["file"] is None:
                state["file"] = item.openContent()
            data = state["file"].read(self.chunkSize)
            if len(data) < self.chunkSize:
                state["eof"] = True
                state["file"].close()
            return data

        def closeQuietly(result):
            if state["file"] is not None and not state["file"].closed:
                state["file"].close()
            return result

        def end():
            state["done"] = True
            return encoder.end() if encoder is not None else None

        def chunks():
            if state["done"]:
                return defer.succeed(None)
            if state["eof"]:
                return defer.succeed(end())
            d = self.runBlocking(read)

            def encode(data):
                if encoder is None:
                    if not data:
                        return end()
                    return data
                out = encoder.encode(data) if data else b""
                if state["eof"]:
                    out += end()
                return out

            d.addErrback(closeQuietly)
            d.addCallback(encode)
            return d

        chunks.close = lambda: closeQuietly(None)
        return chunks

    @defer.inlineCallbacks
    def _reset(self):
        """
        RSET after a failed transaction, so the connection can carry the next
        message; a connection whose RSET fails is not reused.
        """
        if self.protocol.closed:
            self.broken = True
            return
        try:
            self.protocol.sendCommand("RSET")
            reply = yield self.protocol.nextReply(self.timeouts.command)
        except SMTPClientError:
            self.broken = True
            return
        if reply.code != 250:
            self.broken = True

    @defer.inlineCallbacks
    def quit(self):
        """
        Say QUIT and close, politely but without waiting long.
        """
        p = self.protocol
        if p.closed:
            return
        try:
            p.sendCommand("QUIT")
            yield p.nextReply(self.timeouts.quit)
        except SMTPClientError:
            pass
        if not p.closed:
            p.transport.loseConnection()
