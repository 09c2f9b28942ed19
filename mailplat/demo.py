"""
The demo set-up used by C{make run}: a certificate, a config and a user under
one directory, created on first use and left alone afterwards.
"""

import os

from mailplat.auth.passwords import hashPassword
from mailplat.auth.userdb import UserDatabase
from mailplat.certs import makeSelfSigned

DEMO_USER = "demo@example.test"
DEMO_PASSWORD = "demo"

DEMO_CONFIG = """\
# mailplat demo configuration, written by `mailplat demo`.  Paths are relative
# to this file.  Loopback only, unprivileged ports; see etc/mailplat.toml for
# production.
hostname = "mail.example.test"

[domains]
local = ["example.test"]
# Mail to postmaster@ every local domain goes here (RFC 5321 4.5.1).
postmaster = "demo@example.test"

[tls]
certificate = "tls/cert.pem"
key = "tls/key.pem"

[auth]
users_file = "passwd"
failure_delay = "1s"

[storage]
path = "mail"

[queue]
path = "queue"

[listen.smtp]
protocol = "smtp"
profile = "mx"
endpoint = "tcp:2525:interface=127.0.0.1"
tls = "starttls"

[listen.submission]
protocol = "smtp"
profile = "submission"
endpoint = "tcp:2587:interface=127.0.0.1"
tls = "starttls"

[listen.smtps]
protocol = "smtp"
profile = "submissions"
endpoint = "tcp:2465:interface=127.0.0.1"
tls = "implicit"

[listen.pop3]
protocol = "pop3"
endpoint = "tcp:2110:interface=127.0.0.1"
tls = "starttls"

[listen.pop3s]
protocol = "pop3"
endpoint = "tcp:2995:interface=127.0.0.1"
tls = "implicit"

[listen.imap]
protocol = "imap"
endpoint = "tcp:2143:interface=127.0.0.1"
tls = "starttls"

[listen.imaps]
protocol = "imap"
endpoint = "tcp:2993:interface=127.0.0.1"
tls = "implicit"
"""


def ensureDemo(directory, out=None):
    """
    Create what is missing of the demo under C{directory}.

    @return: the path of the demo config.
    """
    say = out or (lambda line: None)
    os.makedirs(directory, exist_ok=True)
    tlsDir = os.path.join(directory, "tls")
    if not os.path.exists(os.path.join(tlsDir, "cert.pem")):
        makeSelfSigned("mail.example.test", tlsDir)
        say(f"created a self-signed certificate in {tlsDir}")
    configPath = os.path.join(directory, "mailplat.toml")
    if not os.path.exists(configPath):
        with open(configPath, "w", encoding="utf-8") as f:
            f.write(DEMO_CONFIG)
        say(f"created {configPath}")
    users = UserDatabase(os.path.join(directory, "passwd"))
    if not users.exists(DEMO_USER):
        users.setPassword(DEMO_USER, hashPassword(DEMO_PASSWORD))
        say(f"created user {DEMO_USER} with password {DEMO_PASSWORD!r}")
    return configPath
