"""
The SMTP server on a real socket, attacked with raw bytes and driven by
swaks and smtplib.
"""

import smtplib
import socket
import time

import pytest

from tests.integration.support import (
    Twistd,
    freePorts,
    imapFetchAll,
    stripTrace,
    swaks,
    writeConfig,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smtp-live")
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    ports = dict(zip(names, freePorts(len(names))))
    config = writeConfig(str(tmp), ports)
    t = Twistd(config, str(tmp / "twistd.log")).start()
    t.ports = ports
    yield t
    t.stop()


def talk(port, data, until=b"221 ", timeout=20):
    """
    Send C{data} in one packet after the greeting and read the replies until
    C{until} or the peer closes.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            greeting += s.recv(4096)
        assert greeting == b"220 mail.example.test ESMTP mailplat\r\n"
        got = b""
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while until not in got and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


def codes(reply):
    return [line[:9].decode() for line in reply.split(b"\r\n") if line[:3].isdigit() and line[3:4] == b" "]


def test_smugglingInOnePacket(server):
    """
    A message with every known bogus end-of-data sequence, each followed by
    a second transaction, pipelined in one packet: exactly one message is
    accepted, and it contains the would-be second message as text.
    """
    bogus = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n"]
    body = b"Subject: smuggle\r\n\r\nstart"
    for end in bogus:
        body += (end + b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<demo@example.test>"
                 b"\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n")
    reply = talk(
        server.ports["smtp"],
        b"EHLO attacker.example\r\nMAIL FROM:<a@remote.example>\r\n"
        b"RCPT TO:<demo@example.test>\r\nDATA\r\n" + body + b"\r\n.\r\nQUIT\r\n",
    )
    assert codes(reply) == ["250 START", "250 2.1.0", "250 2.1.5", "354 End d", "250 2.0.0", "221 2.0.0"]
    queueId = reply.split(b"queued as ")[1].split(b"\r\n")[0].decode()
    server.waitForLog(f"{queueId}: removed")
    messages = [m for m in imapFetchAll(server.ports["imaps"], True) if b"smuggle\r\n" in m]
    assert len(messages) == 1
    assert stripTrace(messages[0]).count(b"MAIL FROM:<evil@attacker.example>") == 6
    assert b"Subject: smuggled" in messages[0]


def test_startTLSInjection(server):
    import ssl

    s = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=20)
    try:
        assert s.recv(4096).startswith(b"220 ")
        s.sendall(b"EHLO c\r\n")
        time.sleep(0.2)
        s.recv(4096)
        s.sendall(b"STARTTLS\r\nMAIL FROM:<injected@attacker.example>\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            got += s.recv(1)
        assert got == b"220 2.0.0 Ready to start TLS\r\n"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(s, server_hostname="localhost")
        # The injected MAIL was discarded: without a new EHLO, MAIL is out of
        # sequence, and nothing else is waiting to be read.
        tls.sendall(b"MAIL FROM:<a@remote.example>\r\n")
        assert tls.recv(4096) == b"503 5.5.1 Error: send HELO/EHLO first\r\n"
        tls.close()
    finally:
        s.close()


def test_overlongCommandLine(server):
    reply = talk(server.ports["smtp"], b"EHLO " + b"x" * 100000 + b"\r\nNOOP\r\nQUIT\r\n")
    assert codes(reply) == ["500 5.5.2", "250 2.0.0", "221 2.0.0"]


def test_binaryGarbageGetsReplies(server):
    reply = talk(server.ports["smtp"], b"\x16\x03\x01\x00\xa5\x01\x00\r\nNOOP\r\nQUIT\r\n")
    assert codes(reply) == ["500 5.5.2", "250 2.0.0", "221 2.0.0"]


@pytest.mark.parametrize(
    "rcpt, expected",
    [
        ("<user%other.example@example.test>", "550 5.1.1"),
        ("<@example.test:user@other.example>", "554 5.7.1"),
        ('<"user@other.example"@example.test>', "550 5.1.1"),
        ("<other.example!user@example.test>", "550 5.1.1"),
        ("<user@example.test.>", "501 5.1.3"),
        ("<user@[192.0.2.1]>", "554 5.7.1"),
        ("<>", "501 5.1.3"),
        ("<someone@other.example>", "554 5.7.1"),
    ],
)
def test_noOpenRelay(server, rcpt, expected):
    reply = talk(
        server.ports["smtp"],
        f"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:{rcpt}\r\nQUIT\r\n".encode(),
    )
    assert codes(reply)[1:] == ["250 2.1.0", expected, "221 2.0.0"]
    assert reply.startswith(b"250-mail.example.test\r\n")


def test_swaksPipelining(server):
    out = swaks(
        server.ports["smtp"], "--pipeline", "--to", "demo@example.test,postmaster@example.test",
        "--from", "a@remote.example", "--body", "pipelined",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<** " not in out.stdout
    assert "250 2.0.0 Ok: queued as" in out.stdout


def test_dsnAndSizeWithSmtplib(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.ehlo("c")
        for ext in ("dsn", "chunking", "smtputf8", "8bitmime", "size", "pipelining"):
            assert s.has_extn(ext), ext
        code, msg = s.mail("a@remote.example", ["SIZE=999999999"])
        assert (code, msg) == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        assert s.mail("a@remote.example", ["RET=HDRS", "ENVID=abc"]) == (250, b"2.1.0 Ok")
        assert s.rcpt("demo@example.test", ["NOTIFY=FAILURE,DELAY"]) == (250, b"2.1.5 Ok")
        code, msg = s.data(b"Subject: dsn\r\n\r\nbody\r\n")
        assert code == 250 and msg.startswith(b"2.0.0 Ok: queued as ")
