"""
Helpers for the outbound delivery tests: smtp-sink (Debian's postfix
package) as a peer on a loopback address, and a mailplat config whose
resolver and outbound port point at the test's DNS server and peers.
"""

import glob
import os
import shutil
import smtplib
import subprocess
import tempfile
import time

from mailplat.demo import ensureDemo
from tests.integration.support import Twistd, insecureContext

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class SmtpSink:
    """
    C{smtp-sink [options] ADDRESS:PORT}, dumping each message it accepts to
    a file in a temporary directory.

    Useful options: C{-r RCPT} (4xx to RCPT), C{-f RCPT} (5xx), C{-Q CONNECT}
    (421 greeting and close), C{-q .} (close after the final dot without a
    reply), C{-h NAME} (the name in the greeting), C{-N} (no DSN).
    """

    def __init__(self, address, port, *options):
        if not os.path.exists(SMTP_SINK):
            raise RuntimeError(
                "smtp-sink is not installed: run `make test`, which installs "
                "Debian's postfix package (without configuring it)"
            )
        self.address = address
        self.port = port
        self.directory = None
        self.options = options
        self.proc = None

    def start(self):
        # smtp-sink runs as nobody when started by root: its dump directory
        # must be reachable by that user, which a test's tmp_path is not.
        self.directory = tempfile.mkdtemp(prefix="mailplat-test-sink-")
        os.chmod(self.directory, 0o777)
        args = [SMTP_SINK]
        if os.getuid() == 0:
            args += ["-u", "nobody"]
        args += ["-d", os.path.join(self.directory, "%M."), *self.options]
        args += [f"{self.address}:{self.port}", "50"]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, self.port), 1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("smtp-sink did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cleanUp(self):
        self.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def messages(self):
        """
        @return: the dumped transactions (bytes each), oldest first.
        """
        out = []
        for path in sorted(glob.glob(os.path.join(self.directory, "*")), key=os.path.getmtime):
            with open(path, "rb") as f:
                out.append(f.read())
        return out


def writeServerConfig(
    directory, hostname, ports, extra="", domains=("example.test",), interface="127.0.0.1"
):
    """
    A mailplat config in C{directory} (demo certificate and user
    demo@example.test / demo) with SMTP listeners only: C{ports} maps
    "smtp" (MX profile, STARTTLS), "submission" (STARTTLS) and "smtps"
    (implicit TLS) to ports on 127.0.0.1.

    @return: the config path.
    """
    ensureDemo(directory)
    lines = [
        f'hostname = "{hostname}"',
        "[domains]",
        "local = [" + ", ".join(f'"{d}"' for d in domains) + "]",
        'postmaster = "demo@example.test"',
        "[tls]",
        'certificate = "tls/cert.pem"',
        'key = "tls/key.pem"',
        "[auth]",
        'users_file = "passwd"',
        'failure_delay = "0.1s"',
        extra,
    ]
    profiles = {
        "smtp": ("mx", "starttls"),
        "submission": ("submission", "starttls"),
        "smtps": ("submissions", "implicit"),
    }
    for name, port in ports.items():
        profile, tls = profiles[name]
        lines += [
            f"[listen.{name}]",
            'protocol = "smtp"',
            f'profile = "{profile}"',
            f'tls = "{tls}"',
            f'endpoint = "tcp:{port}:interface={interface}"',
        ]
    path = os.path.join(directory, "test.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def outboundExtra(dnsPort, deliveryPort, retry="1s", more=""):
    """
    Config tables pointing the resolver at the test DNS server and outbound
    SMTP at C{deliveryPort}, with a short retry schedule.
    """
    return f"""
[queue]
retry_initial = "{retry}"
retry_max = "{retry}"
[dns]
nameservers = ["127.0.0.1"]
port = {dnsPort}
timeout = "2s"
[delivery]
port = {deliveryPort}
connect_timeout = "2s"
connection_idle = "0.2s"
{more}
"""


def startServer(directory, config, waitFor="listening: smtps"):
    return Twistd(config, os.path.join(directory, "twistd.log")).start(waitFor=waitFor)


def submit(port, recipients, body=b"Subject: test\r\n\r\nHello.\r\n", sender="demo@example.test",
           mailOptions=(), rcptOptions=()):
    """
    Submit a message as demo@example.test over implicit TLS.

    @return: the queue id from the 250 reply.
    """
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=insecureContext(), timeout=30)
    try:
        s.login("demo@example.test", "demo")
        s.mail(sender, list(mailOptions))
        for r in recipients:
            code, msg = s.rcpt(r, list(rcptOptions))
            assert code == 250, (code, msg)
        code, msg = s.data(body)
        assert code == 250, (code, msg)
        return msg.decode().split("queued as ")[1].split()[0]
    finally:
        s.quit()


def readMaildir(directory, user="demo"):
    """
    The messages in a user's INBOX Maildir under the server's mail directory.
    """
    paths = glob.glob(os.path.join(directory, "mail", "*", user, "Maildir", "new", "*"))
    paths += glob.glob(os.path.join(directory, "mail", "*", user, "Maildir", "cur", "*"))
    out = []
    for p in sorted(paths, key=os.path.getmtime):
        with open(p, "rb") as f:
            out.append(f.read())
    return out
