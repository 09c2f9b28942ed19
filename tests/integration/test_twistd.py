"""
The server as users run it: C{twistd -n mailplat --config FILE} in a
subprocess, real sockets and TLS, real clients.
"""

import os
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from tests.integration.support import (
    BIN,
    REPO,
    Twistd,
    freePorts,
    imapFetchAll,
    insecureContext,
    popFetchAll,
    stripTrace,
    swaks,
    writeConfig,
)


def _ports():
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    return dict(zip(names, freePorts(len(names))))


EXAMPLE_PLUGINS = os.path.join(REPO, "docs", "examples", "plugins")


def _startWithExamplePlugins(config, tmp_path):
    """
    Start twistd with docs/examples/plugins on PYTHONPATH, as a plugin author
    would install them.
    """
    t = Twistd(config, str(tmp_path / "twistd.log"))
    t.env = {"PYTHONPATH": f"{REPO}:{EXAMPLE_PLUGINS}"}
    return t.start()


def _tokenConfig(tmp_path, ports, extra="", auth=""):
    """
    A config whose [auth] checkers are the user database and the example
    tokens checker, which knows app@example.test with the token
    C{app-token}; C{auth} is added to [auth].
    """
    import hashlib
    import json

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(
        {"app@example.test": hashlib.sha256(b"app-token").hexdigest()}))
    config = writeConfig(str(tmp_path), ports, extra=extra)
    text = open(config).read().replace(
        "[auth]\n",
        f'[auth]\ncheckers = ["userdb", "example-tokens:{tokens}"]\n' + auth,
    )
    with open(config, "w") as f:
        f.write(text)
    return config


@pytest.fixture
def server(tmp_path):
    ports = _ports()
    config = writeConfig(str(tmp_path), ports)
    t = Twistd(config, str(tmp_path / "twistd.log")).start()
    t.ports = ports
    t.dir = tmp_path
    yield t
    t.stop()


def test_pluginListedByInstalledTwistd():
    """
    The installed package (not only the checkout) registers the twistd
    plugin.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [os.path.join(BIN, "twistd"), "--help"],
        capture_output=True, text=True, env=env, cwd="/", timeout=60,
    )
    assert out.returncode == 0
    assert "mailplat" in out.stdout
    assert "A mail server: ESMTP" in out.stdout


def test_swaksToImapAndPop3RoundTrip(server):
    """
    swaks delivers over port "25"; IMAP (implicit TLS and STARTTLS) and POP3
    (implicit TLS and STLS) read the message back byte for byte.
    """
    body = "Line one\nLine two\n.leading dot\n..two dots\nend"
    out = swaks(
        server.ports["smtp"], "--to", "demo@example.test",
        "--from", "sender@remote.example", "--header", "Subject: round trip",
        "--body", body,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  250 2.0.0 Ok: queued as " in out.stdout
    queueId = out.stdout.split("Ok: queued as ")[1].split()[0]
    server.waitForLog(f"{queueId}: to=<demo@example.test>, relay=local")
    log = server.output()
    assert f"{queueId}: accepted from=<sender@remote.example>, nrcpt=1" in log
    assert "status=delivered" in log
    assert f"{queueId}: removed" in log

    # What swaks sent, as it showed it (" -> " lines between DATA and ".").
    sent = []
    inData = False
    for line in out.stdout.splitlines():
        if line.startswith("<-  354"):
            inData = True
            continue
        if inData:
            if line == " -> .":
                break
            assert line.startswith(" -> ")
            sent.append(line[4:])
    expected = "\r\n".join(sent).encode() + b"\r\n"
    # swaks shows the dot-stuffed wire form; the store holds the message.
    expected = b"\r\n".join(
        l[1:] if l.startswith(b".") else l for l in expected.split(b"\r\n")
    )

    for port, implicit in ((server.ports["imaps"], True), (server.ports["imap"], False)):
        [message] = imapFetchAll(port, implicit)
        assert message.startswith(b"Return-Path: <sender@remote.example>\r\nReceived: from ")
        assert f"id {queueId}".encode() in message
        assert stripTrace(message) == expected
    for port, implicit in ((server.ports["pop3s"], True), (server.ports["pop3"], False)):
        [message] = popFetchAll(port, implicit)
        assert stripTrace(message) == expected


def test_submissionWithStartTLSAndAuth(server):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as s:
        s.ehlo("client.example")
        code, msg = s.mail("demo@example.test")
        assert (code, msg) == (530, b"5.7.0 Must issue a STARTTLS command first")
        s.rset()
        s.starttls(context=insecureContext())
        s.ehlo("client.example")
        assert s.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("demo@example.test", "wrong")
        assert e.value.smtp_code == 535
        assert e.value.smtp_error == b"5.7.8 Error: authentication failed"
        s.login("demo@example.test", "demo")
        refused = s.sendmail(
            "demo@example.test", ["demo@example.test"],
            b"Subject: via submission\r\n\r\nhello\r\n",
        )
        assert refused == {}
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["smtps"], context=insecureContext(), timeout=30
    ) as s:
        s.login("demo@example.test", "demo")
        code, msg = s.mail("other@example.test")
        assert code == 553
        assert msg == (
            b"5.7.1 <other@example.test>: Sender address rejected: not owned by "
            b"user demo@example.test"
        )
    server.waitForLog("status=delivered")
    [message] = imapFetchAll(server.ports["imaps"], True)
    # RFC 6409 8: submission added the Date and Message-ID it lacked.
    head, body = stripTrace(message).split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"Subject: via submission"
    assert lines[1].startswith(b"Date: ")
    assert lines[2].startswith(b"Message-ID: <") and lines[2].endswith(b"@mail.example.test>")
    assert len(lines) == 3
    assert body == b"hello\r\n"
    assert b"with ESMTPSA id" in message


def test_loginRefusedBeforeTLS(server):
    import imaplib
    import poplib

    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.ehlo("c")
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8=") == (
            530, b"5.7.0 Must issue a STARTTLS command first",
        )
    conn = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    assert "LOGINDISABLED" in conn.capabilities
    with pytest.raises(imaplib.IMAP4.error) as refused:
        conn.login("demo@example.test", "demo")
    assert refused.value.args[0] == (
        b"[PRIVACYREQUIRED] Plaintext authentication is disabled without TLS"
    )
    conn.shutdown()
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"])
    with pytest.raises(poplib.error_proto) as e:
        pop.user("demo@example.test")
    assert e.value.args[0] == (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
        b"(SSL/TLS) connections."
    )
    pop.close()


def _startupFails(config, cwd):
    """
    Run C{twistd -n mailplat --config CONFIG}, which must stop at start-up
    with exit status 1 and no traceback.

    @return: its standard error.
    """
    out = subprocess.run(
        [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "mailplat", "--config", str(config)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
        cwd=str(cwd), timeout=60,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    return out.stderr


def test_configErrorsExitWithAList(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        'hostname = "mail.example.test"\nfoo = 1\n[domains]\nlocal = []\n'
        '[listen.x]\nprotocol = "smtp"\nendpoint = "tcp:nope"\ntls = "none"\n'
    )
    stderr = _startupFails(config, tmp_path)
    assert stderr == (
        f"mailplat: {config}: 3 configuration error(s):\n"
        "  - domains.local: list at least one local domain\n"
        "  - listen.x.endpoint: bad endpoint string 'tcp:nope': invalid literal "
        "for int() with base 10: 'nope'\n"
        "  - foo: unknown key\n"
    )


def test_portInUseIsOneClearLine(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        ports = _ports()
        ports["imap"] = port
        config = writeConfig(str(tmp_path), ports)
        stderr = _startupFails(config, tmp_path)
    finally:
        blocker.close()
    assert stderr == (
        f"mailplat: cannot listen on tcp:{port}:interface=127.0.0.1 (listen.imap): "
        "Address already in use\n"
    )


def test_acceptedMailSurvivesSigkill(tmp_path):
    """
    A message that got 250 but could not be delivered yet survives SIGKILL
    and is delivered exactly once after a restart; a message cut off in
    DATA by the crash is never delivered.
    """
    ports = _ports()
    # A restart keeps each recipient's retry time: make the first retry come
    # soon.
    config = writeConfig(str(tmp_path), ports, extra='[queue]\nretry_initial = "1s"\n')
    # Make delivery fail for now: the user's mail directory is a file.
    userDir = tmp_path / "mail" / "example.test" / "demo"
    userDir.parent.mkdir(parents=True)
    userDir.write_text("in the way")
    t = Twistd(config, str(tmp_path / "twistd.log")).start()
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as s:
            s.sendmail("a@remote.example", ["demo@example.test"],
                       b"Subject: survive\r\n\r\nkept\r\n")
        t.waitForLog("status=deferred")
        # A second message, cut off in the middle of DATA.
        half = socket.create_connection(("127.0.0.1", ports["smtp"]))
        half.sendall(
            b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<demo@example.test>\r\n"
            b"DATA\r\n"
        )
        deadline = time.monotonic() + 10
        got = b""
        while b"354 " not in got and time.monotonic() < deadline:
            got += half.recv(4096)
        # Larger than what is held in memory (256 KB): it is in tmp/.
        half.sendall(b"Subject: lost\r\n\r\n" + (b"x" * 78 + b"\r\n") * 4000 + b"never finished")
        deadline = time.monotonic() + 10
        while not os.listdir(tmp_path / "queue" / "tmp") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(os.listdir(tmp_path / "queue" / "tmp")) == 1
    finally:
        t.stop(signal.SIGKILL)
        half.close()
    assert len(os.listdir(tmp_path / "queue" / "active")) >= 1
    userDir.unlink()
    t2 = Twistd(config, str(tmp_path / "twistd2.log")).start()
    try:
        t2.waitForLog("status=delivered")
        log = t2.output()
        assert "removed a partly received message left by an earlier run" in log
        assert "queue: resuming 1 message(s)" in log
        messages = imapFetchAll(ports["imaps"], True)
        assert [stripTrace(m) for m in messages] == [b"Subject: survive\r\n\r\nkept\r\n"]
        assert os.listdir(tmp_path / "queue" / "tmp") == []
        assert os.listdir(tmp_path / "queue" / "active") == []
    finally:
        t2.stop()


def test_thirdPartyCheckPluginFromConfig(tmp_path):
    """
    The example check in docs/examples/plugins, on PYTHONPATH as a plugin
    author would install it, is found by name from the config and used.
    """
    ports = _ports()
    config = writeConfig(
        str(tmp_path), ports,
        extra='[[check]]\ntype = "example_blocklist"\nsenders = ["spammer.example"]\n',
    )
    t = _startWithExamplePlugins(config, tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as s:
            s.ehlo("c")
            assert s.mail("x@spammer.example") == (
                550, b"5.7.1 <x@spammer.example>: Sender domain blocked",
            )
            s.rset()
            assert s.mail("x@fine.example") == (250, b"2.1.0 Ok")
    finally:
        t.stop()
    assert "mail reject for [127.0.0.1] from=<x@spammer.example>: 550 sender on the blocklist" in t.output()


def test_unknownCheckStopsStartup(tmp_path):
    config = writeConfig(str(tmp_path), _ports(), extra='[[check]]\ntype = "nonesuch"\n')
    stderr = _startupFails(config, tmp_path)
    head, known = stderr.split("(known: ")
    assert head == (
        f"mailplat: {config}: 1 configuration error(s):\n"
        "  - check[0]: unknown check type 'nonesuch' "
    )
    assert "connection_limits, " in known and known.endswith(")\n")


def test_thirdPartyCheckerFromConfig(tmp_path):
    """
    The example credential checker plugin (docs/examples/plugins) named in
    [auth] checkers logs a user in over SMTP submission, IMAP and POP3.
    """
    ports = _ports()
    config = _tokenConfig(tmp_path, ports)
    t = _startWithExamplePlugins(config, tmp_path)
    try:
        with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=insecureContext(),
                              timeout=30) as s:
            assert s.login("app@example.test", "app-token")[0] == 235
            assert s.sendmail("app@example.test", ["demo@example.test"],
                              b"Subject: from the app\r\n\r\nhi\r\n") == {}
        assert imapFetchAll(ports["imaps"], True, "app@example.test", "app-token") == []
        assert popFetchAll(ports["pop3s"], True, "app@example.test", "app-token") == []
        # The demo user still logs in through the user database.
        t.waitForLog("status=delivered")
        [m] = imapFetchAll(ports["imaps"], True)
        assert b"Subject: from the app" in m
    finally:
        t.stop()


def test_thirdPartySASLMechanismFromConfig(tmp_path):
    """
    The example XOAUTH2 mechanism plugin (docs/examples/plugins) named in
    [auth] mechanisms, with the example token checker: a token logs in over
    SMTP submission, IMAP and POP3 with real clients.
    """
    import base64
    import imaplib
    import poplib

    ports = _ports()
    config = _tokenConfig(tmp_path, ports, auth='mechanisms = ["PLAIN", "LOGIN", "XOAUTH2"]\n')
    t = _startWithExamplePlugins(config, tmp_path)

    def xoauth2(token):
        return f"user=app@example.test\x01auth=Bearer {token}\x01\x01"

    try:
        with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=insecureContext(),
                              timeout=30) as s:
            s.ehlo("client.example")
            assert s.esmtp_features["auth"] == " PLAIN LOGIN XOAUTH2"
            assert s.auth("XOAUTH2", lambda challenge=None: xoauth2("app-token")) == (
                235, b"2.7.0 Authentication successful")
            assert s.sendmail("app@example.test", ["demo@example.test"],
                              b"Subject: token\r\n\r\nhi\r\n") == {}

        conn = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=insecureContext())
        try:
            assert "AUTH=XOAUTH2" in conn.capabilities
            with pytest.raises(imaplib.IMAP4.error) as e:
                conn.authenticate("XOAUTH2", lambda challenge: xoauth2("wrong"))
            assert "[AUTHENTICATIONFAILED] Authentication failed." in str(e.value)
            assert conn.authenticate("XOAUTH2", lambda challenge: xoauth2("app-token")) == (
                "OK", [b"AUTHENTICATE completed"])
            assert conn.select("INBOX") == ("OK", [b"0"])
        finally:
            conn.logout()

        conn = poplib.POP3_SSL("127.0.0.1", ports["pop3s"], context=insecureContext())
        try:
            assert "XOAUTH2" in conn.capa()["SASL"]
            response = base64.b64encode(xoauth2("app-token").encode()).decode()
            assert conn._shortcmd("AUTH XOAUTH2 " + response) == b"+OK Logged in."
            assert conn.stat() == (0, 0)
            conn.quit()
        finally:
            conn.close()
        t.waitForLog("status=delivered")
        [m] = imapFetchAll(ports["imaps"], True)
        assert b"Subject: token" in m
    finally:
        t.stop()


def test_unknownMechanismStopsStartup(tmp_path):
    config = writeConfig(str(tmp_path), _ports())
    text = open(config).read().replace(
        '[auth]\n', '[auth]\nmechanisms = ["PLAIN", "X-NONESUCH"]\n')
    open(config, "w").write(text)
    stderr = _startupFails(config, tmp_path)
    head, known = stderr.split("(known: ")
    assert head == (
        f"mailplat: {config}: 1 configuration error(s):\n"
        "  - auth.mechanisms: unknown SASL mechanism 'X-NONESUCH' "
    )
    assert "LOGIN, PLAIN" in known and known.endswith(")\n")


def test_thirdPartyDeliveryTargetFromConfig(tmp_path):
    """
    The example delivery target (docs/examples/plugins) named in a
    [[target]] table: SMTP accepts its domain and the runner hands it the
    message, which lands durably in the application's directory.
    """
    incoming = tmp_path / "incoming"
    ports = _ports()
    config = writeConfig(
        str(tmp_path), ports,
        extra=f'[[target]]\ntype = "example_spool"\ndomains = ["app.example.test"]\n'
              f'directory = "{incoming}"\n',
    )
    t = _startWithExamplePlugins(config, tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as s:
            s.ehlo("c")
            assert s.mail("a@remote.example") == (250, b"2.1.0 Ok")
            assert s.rcpt("Orders@App.example.test") == (250, b"2.1.5 Ok")
            assert s.rcpt("nobody@example.test")[0] == 550
            code, msg = s.data(b"Subject: order 42\r\n\r\none widget\r\n")
            assert code == 250
        queueId = msg.split()[-1].decode()
        t.waitForLog(f"{queueId}: to=<orders@app.example.test>, relay=example_spool")
        [name] = os.listdir(incoming)
        assert name == f"{queueId}.orders@app.example.test.eml"
        content = (incoming / name).read_bytes()
        assert content.startswith(b"Received: from c ([127.0.0.1])")
        assert content.endswith(b"\r\nSubject: order 42\r\n\r\none widget\r\n")
    finally:
        t.stop()


def test_thirdPartyStoreAndCheckerFromConfig(tmp_path):
    """
    The example mailbox store (docs/examples/plugins, one SQLite file) named
    in [storage] backend, with the example credential checker in [auth]
    checkers, under twistd: mail sent over SMTP (logged in with an
    application token) lands in the SQLite file, IMAP and POP3 read it, a
    POP3 deletion is seen over IMAP, and an IMAP APPEND is read over POP3
    by the token user.
    """
    import imaplib
    import poplib
    import sqlite3

    ports = _ports()
    config = _tokenConfig(
        tmp_path, ports,
        extra='[storage]\nbackend = "example_sqlite"\nfile = "store.sqlite3"\n',
    )
    t = _startWithExamplePlugins(config, tmp_path)
    try:
        with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=insecureContext(),
                              timeout=30) as s:
            assert s.login("app@example.test", "app-token")[0] == 235
            assert s.sendmail("app@example.test", ["demo@example.test"],
                              b"Subject: into sqlite\r\n\r\nstored\r\n") == {}
        t.waitForLog("status=delivered")
        # The message is in the plugin's database, not in a Maildir.
        db = sqlite3.connect(str(tmp_path / "mail" / "store.sqlite3"))
        try:
            rows = db.execute(
                "SELECT folders.user, folders.name, messages.uid FROM messages "
                "JOIN folders ON messages.folder = folders.id").fetchall()
        finally:
            db.close()
        assert rows == [("demo@example.test", "INBOX", 1)]
        assert not os.path.exists(tmp_path / "mail" / "example.test")

        [viaImap] = imapFetchAll(ports["imaps"], True)
        assert viaImap.startswith(b"Return-Path: <app@example.test>\r\n")
        assert b"\r\nSubject: into sqlite\r\n" in viaImap
        assert viaImap.endswith(b"\r\n\r\nstored\r\n")
        assert popFetchAll(ports["pop3s"], True) == [viaImap]

        # DELE over POP3 (the user database's password) ...
        pop = poplib.POP3_SSL("127.0.0.1", ports["pop3s"], context=insecureContext())
        pop.user("demo@example.test")
        pop.pass_("demo")
        assert pop.dele(1) == b"+OK Marked to be deleted."
        assert pop.quit() == b"+OK Logging out, 1 messages deleted."
        # ... and the message is gone over IMAP.
        assert imapFetchAll(ports["imap"], False) == []

        # The token user: APPEND over IMAP, read over POP3.
        imap = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=insecureContext())
        assert imap.login("app@example.test", "app-token")[0] == "OK"
        typ, data = imap.append("INBOX", r"(\Seen)", None,
                                b"Subject: appended\r\n\r\nby the app\r\n")
        assert typ == "OK", data
        assert data[0].startswith(b"[APPENDUID ") and data[0].endswith(
            b" 1] APPEND completed")
        typ, data = imap.status("Sent", "(MESSAGES UIDNEXT)")
        assert data == [b"Sent (MESSAGES 0 UIDNEXT 1)"]
        imap.logout()
        assert popFetchAll(ports["pop3"], False, "app@example.test", "app-token") == [
            b"Subject: appended\r\n\r\nby the app\r\n"]
    finally:
        t.stop()
