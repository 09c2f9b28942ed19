"""
PAM logins through the server as users run it (C{twistd -n mailplat}), with
C{checkers = ["pam"]} and a throw-away PAM service (L{tests.pamsupport}):
mail delivered over SMTP is read over IMAP and POP3 with the PAM password,
SMTP AUTH takes it, and the user database password is refused.
"""

import imaplib
import poplib
import smtplib

import pytest

from mailplat.demo import DEMO_PASSWORD, DEMO_USER
from tests.integration.support import (
    Twistd,
    freePorts,
    imapFetchAll,
    insecureContext,
    popFetchAll,
    swaks,
    writeConfig,
)
from tests.pamsupport import PAMService

PAM_PASSWORD = "pam pass for demo"


@pytest.fixture
def server(tmp_path):
    service = PAMService(str(tmp_path / "pam"), {"demo": PAM_PASSWORD})
    try:
        names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
        ports = dict(zip(names, freePorts(len(names))))
        config = writeConfig(
            str(tmp_path), ports,
            extra=f'checkers = ["pam"]\n[auth.pam]\nservice = "{service.name}"\n',
        )
        t = Twistd(config, str(tmp_path / "twistd.log")).start()
        t.ports = ports
        t.pam = service
        try:
            yield t
        finally:
            t.stop()
    finally:
        service.remove()


def test_pamLogins(server):
    out = swaks(
        server.ports["smtp"], "--to", DEMO_USER, "--from", "sender@remote.example",
        "--header", "Subject: for a PAM user", "--body", "hello",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    queueId = out.stdout.split("Ok: queued as ")[1].split()[0]
    server.waitForLog(f"{queueId}: to=<{DEMO_USER}>, relay=local")

    [message] = imapFetchAll(server.ports["imaps"], True, password=PAM_PASSWORD)
    assert b"\r\nSubject: for a PAM user\r\n" in message
    [message] = popFetchAll(server.ports["pop3s"], True, password=PAM_PASSWORD)
    assert b"\r\nSubject: for a PAM user\r\n" in message
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as s:
        s.starttls(context=insecureContext())
        assert s.login(DEMO_USER, PAM_PASSWORD) == (235, b"2.7.0 Authentication successful")

    # The user database password is not checked by a ["pam"] chain.
    with pytest.raises(imaplib.IMAP4.error) as e:
        imapFetchAll(server.ports["imaps"], True, password=DEMO_PASSWORD)
    assert e.value.args == (b"[AUTHENTICATIONFAILED] Authentication failed.",)
    with pytest.raises(poplib.error_proto) as e:
        popFetchAll(server.ports["pop3s"], True, password=DEMO_PASSWORD)
    assert e.value.args == (b"-ERR [AUTH] Authentication failed.",)

    assert server.pam.calls() == ["demo"] * 5
    log = server.output()
    assert (
        f"auth: failed PAM login for '{DEMO_USER}' (PAM user 'demo', service "
        f"'{server.pam.name}'): PAM: "
    ) in log
    assert "no PAM service file" not in log
