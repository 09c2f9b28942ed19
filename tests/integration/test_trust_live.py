"""
The inbound sender-authentication checks in the real server (twistd, real
sockets) with a real DNS server on 127.0.0.1 serving the senders' SPF,
DKIM and DMARC records and the client's PTR, and a real SMTP client.
"""

import imaplib
import smtplib

import pytest

from mailplat.trust import keys as K
from mailplat.trust.dkim import signHeaders
from tests.integration.dnsserver import DNSServer
from mailplat.demo import DEMO_PASSWORD, DEMO_USER
from mailplat.trust.authresults import parseHeader
from tests.integration.support import Twistd, freePorts, insecureContext, writeConfig
from tests.trustsupport import txt



@pytest.fixture(scope="module")
def edKey():
    return K.generateKey("ed25519")


def zone(edKey):
    return {
        "good.example": [("TXT", txt("v=spf1 ip4:127.0.0.1 -all"))],
        "_dmarc.good.example": [("TXT", txt("v=DMARC1; p=reject"))],
        "ed._domainkey.good.example": [("TXT", txt(K.publicRecord(edKey)))],
        "bad.example": [("TXT", txt("v=spf1 -all"))],
        "_dmarc.strict.example": [("TXT", txt("v=DMARC1; p=reject"))],
        "_dmarc.q.example": [("TXT", txt("v=DMARC1; p=quarantine"))],
        "1.0.0.127.in-addr.arpa": [("PTR", "client.good.example.")],
        "client.good.example": [("A", "127.0.0.1")],
        "1.0.0.127.zen.dnsbl.example": [("A", "127.0.0.2")],
    }


@pytest.fixture
def server(tmp_path, edKey):
    dns = DNSServer(zone(edKey)).start()
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    ports = dict(zip(names, freePorts(len(names))))
    extra = "\n".join([
        "[dns]",
        'nameservers = ["127.0.0.1"]',
        f"port = {dns.port}",
        "[[check]]", 'type = "iprev"', 'fail = "reject"',
        "[[check]]", 'type = "dnsbl"', 'zones = ["zen.dnsbl.example*1"]', 'listed = "tag"',
        "[[check]]", 'type = "spf"',
        "[[check]]", 'type = "dkim"',
        "[[check]]", 'type = "dmarc"',
    ])
    config = writeConfig(str(tmp_path), ports, extra=extra)
    t = Twistd(config, str(tmp_path / "twistd.log")).start()
    t.ports = ports
    yield t
    t.stop()
    dns.stop()


def session(server):
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.good.example", timeout=30)
    client.ehlo()
    return client


def test_spfFailRefusedAtMail(server):
    client = session(server)
    assert client.mail("someone@bad.example") == (
        550, b"5.7.23 <someone@bad.example>: SPF fail: bad.example does not authorize "
             b"[127.0.0.1] to send",
    )
    client.quit()


def test_dmarcRejectAtEndOfData(server):
    client = session(server)
    assert client.mail("someone@good.example")[0] == 250
    assert client.rcpt("demo@example.test")[0] == 250
    code, text = client.data(b"From: someone@strict.example\r\nSubject: x\r\n\r\nhi\r\n")
    assert (code, text) == (550, b"5.7.1 Rejected by the DMARC policy of strict.example")
    client.quit()


def test_authenticatedMessageAccepted(server, edKey):
    message = (
        b"From: Someone <someone@good.example>\r\nTo: demo@example.test\r\n"
        b"Subject: signed\r\n\r\nHello.\r\n"
    )
    signing = K.SigningKey("good.example", "ed", "ed25519", "-", edKey)
    signed = b"".join(signHeaders(message, [signing])) + message
    client = session(server)
    assert client.mail("someone@good.example")[0] == 250
    assert client.rcpt("demo@example.test")[0] == 250
    code, text = client.data(signed)
    assert code == 250, text
    client.quit()
    queueId = text.decode().rsplit(" ", 1)[1]
    server.waitForLog(f"{queueId}: to=<demo@example.test>")
    log = server.output()
    assert "spf: mailfrom=someone@good.example result=pass client=[127.0.0.1]" in log
    assert "spf: helo=postmaster@client.good.example result=none" in log
    assert "dkim: d=good.example s=ed a=ed25519-sha256 result=pass client=[127.0.0.1]" in log
    assert "dmarc: from=good.example result=pass policy=reject disposition=none" in log
    (delivered,) = fetch(server, "INBOX")
    head = delivered.split(b"\r\n\r\n", 1)[0].decode()
    fields = [f for f in head.replace("\r\n\t", " ").split("\r\n")]
    assert fields[0] == "Return-Path: <someone@good.example>"
    assert fields[1].startswith("Authentication-Results: mail.example.test; iprev=pass")
    results = parseHeader(fields[1]).results
    assert [(r.method, r.result) for r in results] == [
        ("iprev", "pass"), ("dnsbl", "fail"), ("spf", "none"), ("spf", "pass"),
        ("dkim", "pass"), ("dmarc", "pass"),
    ]
    assert signed in delivered


def fetch(server, folder):
    conn = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    conn.starttls(ssl_context=insecureContext())
    conn.login(DEMO_USER, DEMO_PASSWORD)
    typ, data = conn.select(folder)
    assert typ == "OK", data
    messages = []
    for n in range(1, int(data[0]) + 1):
        typ, data = conn.fetch(str(n), "(BODY.PEEK[])")
        messages.append(data[0][1])
    conn.logout()
    return messages


def test_dmarcQuarantineDeliveredToJunk(server):
    client = session(server)
    assert client.mail("someone@good.example")[0] == 250
    assert client.rcpt("demo@example.test")[0] == 250
    code, text = client.data(b"From: someone@q.example\r\nSubject: q\r\n\r\nhi\r\n")
    assert code == 250, text
    client.quit()
    queueId = text.decode().rsplit(" ", 1)[1]
    server.waitForLog(f"{queueId}: to=<demo@example.test>")
    assert fetch(server, "INBOX") == []
    (junk,) = fetch(server, "Junk")
    assert b"dmarc=fail (p=quarantine dis=quarantine) header.from=q.example" in junk
