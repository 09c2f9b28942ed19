"""
Outbound delivery with real components: mailplat under twistd, a DNS server
on 127.0.0.1 started by the test (L{tests.integration.dnsserver}), and real
SMTP peers on loopback addresses: smtp-sink (Debian's postfix package) and
mailplat itself as the receiving MX.
"""

import os
import signal
import time

import pytest

from tests.integration.dnsserver import DNSServer
from tests.integration.outbound import (
    SmtpSink,
    outboundExtra,
    readMaildir,
    startServer,
    submit,
    writeServerConfig,
)
from tests.integration.support import freePorts

ZONE = {
    "remote.example": [("MX", "10 mx1.remote.example."), ("MX", "20 mx2.remote.example.")],
    "mx1.remote.example": [("A", "127.0.0.2")],
    "mx2.remote.example": [("A", "127.0.0.3")],
    "one.example": [("MX", "10 mx.one.example.")],
    "mx.one.example": [("A", "127.0.0.3")],
    "nullmx.example": [("MX", "0 .")],
    "self.example": [("MX", "10 mail.example.test.")],
    "mail.example.test": [("A", "127.0.0.1")],
    "alias.example": [("CNAME", "one.example.")],
    "implicit.example": [("A", "127.0.0.3")],
    "mailplat.example": [("MX", "10 mx.mailplat.example.")],
    "mx.mailplat.example": [("A", "127.0.0.4")],
}


class Setup:
    def __init__(self, tmp_path, dns):
        self.dir = str(tmp_path)
        self.sinkPort, self.smtps = freePorts(2)
        self.dns = dns
        self.sinks = []
        self.server = None

    def sink(self, address, *options, port=None):
        s = SmtpSink(address, port or self.sinkPort, *options)
        self.sinks.append(s.start())
        return s

    def start(self, more="", retry="1s"):
        config = writeServerConfig(
            os.path.join(self.dir, "srv"), "mail.example.test", {"smtps": self.smtps},
            outboundExtra(self.dns.port, self.sinkPort, retry=retry, more=more),
        )
        self.server = startServer(os.path.join(self.dir, "srv"), config)
        return self.server

    def submit(self, recipients, **kw):
        return submit(self.smtps, recipients, **kw)

    def waitFor(self, text, timeout=30):
        self.server.waitForLog(text, timeout)

    def close(self):
        if self.server is not None:
            self.server.stop()
        for s in self.sinks:
            s.cleanUp()


@pytest.fixture(scope="module")
def dnsServer():
    server = DNSServer(ZONE, servfail={"broken.example"}).start()
    yield server
    server.stop()


@pytest.fixture
def setup(tmp_path, dnsServer):
    s = Setup(tmp_path, dnsServer)
    yield s
    s.close()


def test_twoMXFirstDown(setup):
    """
    Nothing listens on mx1 (127.0.0.2): the client moves on to mx2
    (127.0.0.3), which takes the message.
    """
    sink = setup.sink("127.0.0.3")
    setup.start()
    queueId = setup.submit(["user@remote.example"], body=b"Subject: two\r\n\r\n.dot\r\nend\r\n")
    setup.waitFor(f"{queueId}: to=<user@remote.example>, relay=mx2.remote.example[127.0.0.3]:{setup.sinkPort}")
    log = setup.server.output()
    assert f"connect to mx1.remote.example[127.0.0.2]:{setup.sinkPort}: Connection refused" in log
    assert "dsn=2.0.0, status=delivered (250 2.0.0 Ok)" in log
    setup.waitFor(f"{queueId}: removed")
    [dump] = sink.messages()
    assert b"X-Rcpt-Args: <user@remote.example>" in dump
    assert b"\n.dot\n" in dump.replace(b"\r\n", b"\n")


def bounces(setup, count=1, timeout=30):
    """
    Wait for C{count} notices in demo@example.test's INBOX and return them
    parsed.
    """
    import email
    import email.policy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = readMaildir(os.path.join(setup.dir, "srv"))
        if len(found) >= count:
            return [email.message_from_bytes(m, policy=email.policy.default) for m in found]
        time.sleep(0.1)
    raise AssertionError(f"no notice arrived:\n{setup.server.output()}")


def deliveryStatus(message):
    """
    The per-recipient fields of a DSN's message/delivery-status part.
    """
    raw = message.as_bytes().replace(b"\r\n", b"\n").decode("utf-8")
    boundary = message.get_boundary()
    [part] = [
        p for p in raw.split("--" + boundary)
        if "Content-Type: message/delivery-status\n" in p
        or "Content-Type: message/global-delivery-status\n" in p
    ]
    body = part.split("\n\n", 1)[1]
    blocks = [
        dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        for block in body.strip().split("\n\n")
    ]
    fields = {}
    for block in blocks[1:]:
        fields.update(block)
    return fields


def test_peerDownIsDeferred(setup):
    """
    No MX host listens: the recipient is deferred with 4.4.1 and the message
    stays queued.
    """
    setup.start(retry="1h")
    queueId = setup.submit(["user@remote.example"])
    setup.waitFor(f"{queueId}: to=<user@remote.example>, relay=mx2.remote.example[127.0.0.3]:{setup.sinkPort}, ")
    log = setup.server.output()
    assert (
        f"dsn=4.4.1, status=deferred (connect to mx2.remote.example[127.0.0.3]:"
        f"{setup.sinkPort}: Connection refused)" in log
    )
    assert f"{queueId}: removed" not in log
    assert os.path.exists(os.path.join(setup.dir, "srv", "queue", "active", queueId))


def test_transientThenAccepted(setup):
    """
    The peer answers 450 to RCPT; the next attempt, after the back-off, is
    taken with 250.
    """
    refusing = setup.sink("127.0.0.3", "-r", "RCPT")
    setup.start(retry="2s")
    queueId = setup.submit(["user@one.example"])
    setup.waitFor(f"{queueId}: to=<user@one.example>, relay=mx.one.example[127.0.0.3]")
    assert "dsn=4.3.0, status=deferred (450 4.3.0 Error: command failed)" in setup.server.output()
    refusing.stop()
    good = setup.sink("127.0.0.3")
    setup.waitFor(f"{queueId}: removed")
    log = setup.server.output()
    assert f"{queueId}: to=<user@one.example>, relay=mx.one.example[127.0.0.3]:{setup.sinkPort}, " in log
    assert "dsn=2.0.0, status=delivered (250 2.0.0 Ok)" in log
    assert len(good.messages()) == 1


def test_permanentFailureBounces(setup):
    """
    550 to RCPT bounces the recipient: the sender gets an RFC 3464 report
    naming the remote MTA and its reply.
    """
    setup.sink("127.0.0.3", "-f", "RCPT")
    setup.start()
    queueId = setup.submit(["user@one.example"], body=b"Subject: doomed\r\n\r\nbody\r\n")
    setup.waitFor(f"{queueId}: removed")
    assert (
        "dsn=5.3.0, status=bounced (500 5.3.0 Error: command failed)"
        in setup.server.output()
    )
    [notice] = bounces(setup)
    assert notice["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert notice["Subject"] == "Undelivered Mail Returned to Sender"
    assert notice.get_content_type() == "multipart/report"
    fields = deliveryStatus(notice)
    assert fields["Final-Recipient"] == "rfc822; user@one.example"
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.3.0"
    assert fields["Remote-MTA"] == "dns; mx.one.example"
    assert fields["Diagnostic-Code"] == "smtp; 500 5.3.0 Error: command failed"
    [headers] = [p for p in notice.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert b"Subject: doomed" in headers.get_payload(decode=True) or "Subject: doomed" in str(headers)
    assert notice.as_bytes().startswith(b"Return-Path: <>")


def test_disconnectAfterDataIsDeferred(setup):
    """
    The peer closes the connection after the final dot without a reply:
    the recipient is deferred (4.4.2), not bounced and not lost.
    """
    setup.sink("127.0.0.3", "-q", ".")
    setup.start(retry="1h")
    queueId = setup.submit(["user@one.example"])
    setup.waitFor(f"{queueId}: to=<user@one.example>")
    log = setup.server.output()
    assert "dsn=4.4.2, status=deferred (connection closed by the peer with mx.one.example[127.0.0.3] while waiting for the reply to the end of data)" in log


def test_abortInDataBounces(setup):
    """
    The peer answers 550 in the middle of DATA and stops reading: that is
    a permanent failure for the recipient.
    """
    setup.sink("127.0.0.3", "-A", "0")
    setup.start()
    queueId = setup.submit(["user@one.example"])
    setup.waitFor(f"{queueId}: removed")
    log = setup.server.output()
    assert f"{queueId}: to=<user@one.example>, relay=mx.one.example[127.0.0.3]:{setup.sinkPort}" in log
    assert "status=bounced (550 " in log


def test_greeting421TriesNextMX(setup):
    """
    mx1 greets with 421 and hangs up: mx2 takes the message.
    """
    setup.sink("127.0.0.2", "-Q", "CONNECT")
    setup.sink("127.0.0.3")
    setup.start()
    queueId = setup.submit(["user@remote.example"])
    setup.waitFor(f"{queueId}: removed")
    log = setup.server.output()
    assert f"host mx1.remote.example[127.0.0.2] refused to talk to me: 421 " in log
    assert f"{queueId}: to=<user@remote.example>, relay=mx2.remote.example[127.0.0.3]:{setup.sinkPort}, " in log
    assert "dsn=2.0.0, status=delivered" in log


def test_dnsOutcomes(setup):
    """
    SERVFAIL defers (4.4.3); NXDOMAIN (5.1.2), a null MX (5.1.10, at once)
    and an MX pointing back at us (5.4.6) bounce.
    """
    setup.start(retry="1h")
    servfail = setup.submit(["user@broken.example"])
    nxdomain = setup.submit(["user@nosuch.example"])
    nullmx = setup.submit(["user@nullmx.example"])
    loop = setup.submit(["user@self.example"])
    for queueId in (nxdomain, nullmx, loop):
        setup.waitFor(f"{queueId}: removed")
    setup.waitFor(f"{servfail}: to=<user@broken.example>, relay=none")
    log = setup.server.output()
    assert (
        f"{servfail}: to=<user@broken.example>, relay=none, delay=" in log
        and "dsn=4.4.3, status=deferred (Host or domain name lookup failed: "
        "broken.example MX: DNS server failure (SERVFAIL) (will retry))" in log
    )
    assert (
        "dsn=5.1.2, status=bounced (Host or domain name not found. Name service "
        "error for name=nosuch.example type=MX: Host not found)" in log
    )
    assert (
        "dsn=5.1.10, status=bounced (recipient domain nullmx.example does not "
        "accept mail (null MX, RFC 7505))" in log
    )
    assert (
        "dsn=5.4.6, status=bounced (mail for self.example loops back to myself "
        "(mail.example.test is its best MX host))" in log
    )
    notices = bounces(setup, 3)
    statuses = sorted(deliveryStatus(n)["Status"] for n in notices)
    assert statuses == ["5.1.10", "5.1.2", "5.4.6"]
    assert os.path.exists(os.path.join(setup.dir, "srv", "queue", "active", servfail))


def test_cnameAndImplicitMX(setup):
    """
    alias.example is a CNAME of one.example (whose MX is followed);
    implicit.example has no MX, only an A record (RFC 5321 5.1).
    """
    sink = setup.sink("127.0.0.3")
    setup.start()
    first = setup.submit(["a@alias.example"])
    second = setup.submit(["b@implicit.example"])
    setup.waitFor(f"{first}: removed")
    setup.waitFor(f"{second}: removed")
    log = setup.server.output()
    assert f"{first}: to=<a@alias.example>, relay=mx.one.example[127.0.0.3]:{setup.sinkPort}, " in log
    assert f"{second}: to=<b@implicit.example>, relay=implicit.example[127.0.0.3]:{setup.sinkPort}, " in log
    assert len(sink.messages()) == 2


def startReceiver(setup, submissionPort=None):
    """
    A second mailplat, mx.mailplat.example on 127.0.0.4, receiving mail for
    mailplat.example (user bob@mailplat.example) on the outbound port.
    """
    from mailplat.auth.userdb import UserDatabase
    from mailplat.testing import cachedHash

    directory = os.path.join(setup.dir, "receiver")
    ports = {"smtp": setup.sinkPort}
    if submissionPort:
        ports["submission"] = submissionPort
    config = writeServerConfig(
        directory, "mx.mailplat.example", ports,
        domains=("example.test", "mailplat.example"), interface="127.0.0.4",
    )
    UserDatabase(os.path.join(directory, "passwd")).setPassword(
        "bob@mailplat.example", cachedHash("bob")
    )
    receiver = startServer(directory, config, waitFor="listening: smtp")
    setup.receiver = receiver
    setup.sinks.append(_Stopper(receiver))
    return receiver


class _Stopper:
    def __init__(self, twistd):
        self.twistd = twistd

    def cleanUp(self):
        self.twistd.stop()


def test_mailplatReceiverOverSTARTTLS(setup):
    """
    mailplat delivers to another mailplat: STARTTLS (opportunistic,
    unverified: the receiver's certificate is self-signed), and the message
    arrives byte for byte after the receiver's trace header.
    """
    startReceiver(setup)
    setup.start()
    body = b"Subject: to mailplat\r\n\r\n.one\r\n..two\r\nend\r\n"
    queueId = setup.submit(["bob@mailplat.example"], body=body)
    setup.waitFor(f"{queueId}: removed")
    log = setup.server.output()
    assert f"smtp: connected to mx.mailplat.example[127.0.0.4]:{setup.sinkPort}, TLS TLSv1.3" in log
    assert "(unverified)" in log
    assert f"{queueId}: to=<bob@mailplat.example>, relay=mx.mailplat.example[127.0.0.4]:{setup.sinkPort}, " in log
    assert "dsn=2.0.0, status=delivered (250 2.0.0 Ok: queued as " in log
    setup.receiver.waitForLog("to=<bob@mailplat.example>, relay=local")
    [message] = readMaildir(os.path.join(setup.dir, "receiver"), "bob")
    assert message.startswith(b"Return-Path: <demo@example.test>\r\nReceived: from mail.example.test ([127.0.0.1])")
    assert b"\r\nSubject: to mailplat\r\n" in message
    assert message.endswith(b"\r\n\r\n.one\r\n..two\r\nend\r\n")


def test_verifiedTLSPolicyRefusesSelfSigned(setup):
    """
    With tls_policy "verify" for mailplat.example, the receiver's
    self-signed certificate fails the handshake: the message is deferred,
    never sent in clear.
    """
    startReceiver(setup)
    setup.start(more='[delivery.tls_policy]\n"mailplat.example" = "verify"', retry="1h")
    queueId = setup.submit(["bob@mailplat.example"])
    setup.waitFor(f"{queueId}: to=<bob@mailplat.example>")
    log = setup.server.output()
    assert "dsn=4.7.5, status=deferred (TLS handshake with mx.mailplat.example[127.0.0.4] failed:" in log
    assert readMaildir(os.path.join(setup.dir, "receiver"), "bob") == []


def test_smarthostWithAuthAndTLS(setup, tmp_path):
    """
    All outbound mail goes through the smarthost (mailplat's submission
    port on 127.0.0.4): STARTTLS required, AUTH PLAIN as demo@example.test.
    The recipient's own domain does not even resolve.
    """
    submissionPort, = freePorts(1)
    startReceiver(setup, submissionPort)
    password = tmp_path / "smarthost-password"
    password.write_text("demo\n")
    setup.start(more=f"""[smarthost]
host = "127.0.0.4"
port = {submissionPort}
tls = "encrypt"
username = "demo@example.test"
password_file = "{password}"
""")
    queueId = setup.submit(["bob@mailplat.example", "carol@nosuch.example"])
    setup.waitFor(f"{queueId}: removed")
    log = setup.server.output()
    assert f"{queueId}: to=<bob@mailplat.example>, relay=127.0.0.4[127.0.0.4]:{submissionPort}, " in log
    assert f"{queueId}: to=<carol@nosuch.example>, relay=127.0.0.4[127.0.0.4]:{submissionPort}, " in log
    setup.receiver.waitForLog("AUTH ok for demo@example.test")
    setup.receiver.waitForLog("to=<bob@mailplat.example>, relay=local")


def test_sigkillDuringDeliveries(setup):
    """
    SIGKILL while messages are on their way to a slow peer (each final
    reply delayed), then a restart: every accepted message reaches the
    peer; a duplicate is possible only for the messages in flight at the
    kill (at most max_per_destination of them), none is lost.
    """
    sink = setup.sink("127.0.0.3", "-W", ".:1")
    server = setup.start(more="max_per_destination = 2", retry="1s")
    subjects = [f"sigkill-{n}" for n in range(12)]
    for subject in subjects:
        setup.submit(["user@one.example"], body=f"Subject: {subject}\r\n\r\nx\r\n".encode())
    setup.waitFor("status=delivered")
    server.stop(signal.SIGKILL)
    setup.server = server = startServer(os.path.join(setup.dir, "srv"), server.config)
    deadline = time.monotonic() + 60
    active = os.path.join(setup.dir, "srv", "queue", "active")
    while os.listdir(active) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.listdir(active) == [], server.output()
    got = [m.split(b"Subject: ")[1].split(b"\n")[0].strip().decode() for m in sink.messages()]
    assert set(got) == set(subjects)
    assert len(got) - len(subjects) <= 2


def mailplatCommand(setup, *args):
    import subprocess
    import sys

    from tests.integration.support import REPO

    return subprocess.run(
        [sys.executable, "-m", "mailplat.cli.main", "--config", setup.server.config, *args],
        capture_output=True, text=True, timeout=60, cwd=setup.dir,
        env=dict(os.environ, PYTHONPATH=REPO),
    )


def test_queueCommandWhileRunning(setup):
    """
    mailplat queue list / show / hold / release / flush / delete against a
    running server.
    """
    setup.start(retry="1h")
    queueId = setup.submit(["user@one.example"])
    other = setup.submit(["other@one.example"])
    setup.waitFor(f"{other}: to=<other@one.example>")
    setup.waitFor(f"{queueId}: to=<user@one.example>")

    out = mailplatCommand(setup, "queue", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("-Queue ID-")
    [head] = [l for l in lines if l.startswith(queueId)]
    assert head.split()[2:] != [] and head.endswith(" demo@example.test")
    assert (
        f"(4.4.1 connect to mx.one.example[127.0.0.3]:{setup.sinkPort}: Connection refused)"
        in out.stdout
    )
    assert out.stdout.rstrip().endswith("in 2 Requests.")

    out = mailplatCommand(setup, "queue", "show", queueId)
    assert out.returncode == 0, out.stderr
    assert f"<user@one.example> pending, 1 attempt(s), last: 4.4.1 connect to" in out.stdout
    assert "  Subject: test" in out.stdout

    out = mailplatCommand(setup, "queue", "hold", queueId)
    assert (out.returncode, out.stdout) == (0, f"{queueId}: on hold\n")
    listing = mailplatCommand(setup, "queue", "list").stdout
    assert f"{queueId}!" in listing

    out = mailplatCommand(setup, "queue", "delete", other)
    assert (out.returncode, out.stdout) == (0, f"{other}: deleted\n")
    out = mailplatCommand(setup, "queue", "delete", other)
    assert out.returncode == 1
    assert out.stderr == f"mailplat: no such message in the queue: {other}\n"

    sink = setup.sink("127.0.0.3")
    out = mailplatCommand(setup, "queue", "release", queueId)
    assert (out.returncode, out.stdout) == (0, f"{queueId}: released\n")
    setup.waitFor(f"{queueId}: removed")
    assert len(sink.messages()) == 1
    out = mailplatCommand(setup, "queue", "list")
    assert out.stdout.endswith("Mail queue is empty\n")


def test_queueFlush(setup):
    setup.start(retry="1h")
    queueId = setup.submit(["user@one.example"])
    setup.waitFor(f"{queueId}: to=<user@one.example>")
    sink = setup.sink("127.0.0.3")
    out = mailplatCommand(setup, "queue", "flush")
    assert (out.returncode, out.stdout) == (0, "flushed the queue: delivery is being tried now\n")
    setup.waitFor(f"{queueId}: removed")
    assert len(sink.messages()) == 1


def test_smarthostToAnyHostAndPort(setup):
    """
    [smarthost] with an address and a port and tls = "none" (how bench/
    relays to smtp-sink): every message goes there, whatever its domain.
    """
    sink = setup.sink("127.0.0.5", port=setup.sinkPort)
    setup.start(more=f"""[smarthost]
host = "127.0.0.5"
port = {setup.sinkPort}
tls = "none"
""")
    first = setup.submit(["a@nosuch.example", "b@remote.example"])
    setup.waitFor(f"{first}: removed")
    log = setup.server.output()
    for rcpt in ("a@nosuch.example", "b@remote.example"):
        assert f"{first}: to=<{rcpt}>, relay=127.0.0.5[127.0.0.5]:{setup.sinkPort}, " in log
    [dump] = sink.messages()
    rcpts = [l for l in dump.splitlines() if l.startswith(b"X-Rcpt-Args: ")]
    assert [l.split()[1] for l in rcpts] == [b"<a@nosuch.example>", b"<b@remote.example>"]


def test_dsnParametersAndSMTPUTF8(setup):
    """
    RET/ENVID/NOTIFY/ORCPT given at submission reach a peer that offers DSN;
    a message needing SMTPUTF8 bounces (5.6.7) at a peer that does not offer
    it (smtp-sink does not), RFC 6531 3.2.
    """
    sink = setup.sink("127.0.0.3")
    setup.start()
    dsn = setup.submit(["user@one.example"], mailOptions=["RET=HDRS", "ENVID=env+2B1"],
                       rcptOptions=["NOTIFY=SUCCESS,FAILURE"])
    utf8 = setup.submit(["jörg@one.example"], mailOptions=["SMTPUTF8"])
    setup.waitFor(f"{dsn}: removed")
    setup.waitFor(f"{utf8}: removed")
    [dump] = sink.messages()
    lines = dump.splitlines()
    [mailArgs] = [l for l in lines if l.startswith(b"X-Mail-Args: ")]
    assert mailArgs == b"X-Mail-Args: <demo@example.test> RET=HDRS ENVID=env+2B1"
    [rcptArgs] = [l for l in lines if l.startswith(b"X-Rcpt-Args: ")]
    assert rcptArgs == b"X-Rcpt-Args: <user@one.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@one.example"
    log = setup.server.output()
    assert (
        f"{utf8}: to=<jörg@one.example>, relay=mx.one.example[127.0.0.3]:{setup.sinkPort}, "
        in log
    )
    assert (
        "dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was not offered by "
        "host mx.one.example[127.0.0.3])" in log
    )
    # The peer does DSN: it, not we, reports the success.
    [notice] = bounces(setup)
    assert notice.get_content_type() == "multipart/report"
    fields = deliveryStatus(notice)
    assert fields["Status"] == "5.6.7"
    assert fields["Final-Recipient"] == "utf-8; jörg@one.example"
