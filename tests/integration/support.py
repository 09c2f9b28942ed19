"""
Helpers for integration tests: real sockets on 127.0.0.1, real TLS, real
clients (smtplib, swaks, imaplib, poplib), and twistd as a subprocess.
"""

import imaplib
import os
import poplib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

from mailplat.demo import DEMO_PASSWORD, DEMO_USER, ensureDemo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

LISTENERS = [
    # name, protocol, profile, tls
    ("smtp", "smtp", "mx", "starttls"),
    ("submission", "smtp", "submission", "starttls"),
    ("smtps", "smtp", "submissions", "implicit"),
    ("pop3", "pop3", None, "starttls"),
    ("pop3s", "pop3", None, "implicit"),
    ("imap", "imap", None, "starttls"),
    ("imaps", "imap", None, "implicit"),
]


def freePorts(n):
    """
    C{n} TCP ports that were free on 127.0.0.1 a moment ago.
    """
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def writeConfig(directory, ports=None, extra=""):
    """
    Create a demo set-up in C{directory} (certificate, user demo@example.test
    / demo) and a config listening on C{ports} (a dict name -> port; port 0
    when missing).

    @return: the config path.
    """
    ensureDemo(directory)
    ports = ports or {}
    lines = [
        'hostname = "mail.example.test"',
        "[domains]",
        'local = ["example.test"]',
        'postmaster = "demo@example.test"',
        "[tls]",
        'certificate = "tls/cert.pem"',
        'key = "tls/key.pem"',
        "[auth]",
        'users_file = "passwd"',
        'failure_delay = "0.2s"',
        extra,
    ]
    for name, protocol, profile, tls in LISTENERS:
        lines += [
            f"[listen.{name}]",
            f'protocol = "{protocol}"',
            f'endpoint = "tcp:{ports.get(name, 0)}:interface=127.0.0.1"',
            f'tls = "{tls}"',
        ]
        if profile:
            lines.append(f'profile = "{profile}"')
    path = os.path.join(directory, "test.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def insecureContext():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def swaks(port, *args, timeout=30):
    """
    Run swaks against 127.0.0.1:C{port}; return the CompletedProcess.
    """
    exe = shutil.which("swaks")
    if exe is None:
        raise RuntimeError("swaks is not installed: run `make test`, which installs it")
    return subprocess.run(
        [exe, "--server", f"127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def imapFetchAll(port, implicit, user=DEMO_USER, password=DEMO_PASSWORD):
    """
    Log in over IMAP (implicit TLS, or STARTTLS) and return every message of
    INBOX as bytes, with \\Seen set by the fetch.
    """
    if implicit:
        conn = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=insecureContext())
    else:
        conn = imaplib.IMAP4("127.0.0.1", port)
        conn.starttls(ssl_context=insecureContext())
    try:
        conn.login(user, password)
        typ, data = conn.select("INBOX")
        assert typ == "OK", (typ, data)
        count = int(data[0])
        messages = []
        for n in range(1, count + 1):
            typ, data = conn.fetch(str(n), "(BODY[])")
            assert typ == "OK", (typ, data)
            messages.append(data[0][1])
        conn.logout()
        return messages
    finally:
        try:
            conn.shutdown()
        except Exception:
            pass


def popFetchAll(port, implicit, user=DEMO_USER, password=DEMO_PASSWORD):
    """
    Log in over POP3 (implicit TLS, or STLS) and return every message as
    bytes with CRLF line endings (poplib strips them; they are put back).
    """
    if implicit:
        conn = poplib.POP3_SSL("127.0.0.1", port, context=insecureContext())
    else:
        conn = poplib.POP3("127.0.0.1", port)
        conn.stls(context=insecureContext())
    try:
        conn.user(user)
        conn.pass_(password)
        count, _ = conn.stat()
        messages = []
        for n in range(1, count + 1):
            resp, lines, octets = conn.retr(n)
            data = b"".join(line + b"\r\n" for line in lines)
            assert len(data) == octets, (len(data), octets)
            messages.append(data)
        conn.quit()
        return messages
    finally:
        try:
            conn.close()
        except Exception:
            pass


def stripTrace(message):
    """
    The message without the Return-Path and Received header fields that
    delivery adds at the top.
    """
    lines = message.split(b"\r\n")
    i = 0
    while i < len(lines) and (
        lines[i].startswith(b"Return-Path:")
        or lines[i].startswith(b"Received:")
        or (i > 0 and lines[i][:1] in (b"\t", b" "))
    ):
        i += 1
    return b"\r\n".join(lines[i:])


class Twistd:
    """
    C{twistd -n mailplat --config FILE} as a subprocess, with its log.
    """

    def __init__(self, config, logPath):
        self.config = config
        self.logPath = logPath
        self.proc = None
        self.env = {"PYTHONPATH": REPO}

    def start(self, waitFor="listening: imaps", timeout=30):
        env = dict(os.environ, **self.env)
        self.log = open(self.logPath, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "mailplat",
             "--config", self.config],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.path.dirname(self.config),
        )
        if waitFor:
            self.waitForLog(waitFor, timeout)
        return self

    def output(self):
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def waitForLog(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited early:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged in {timeout}s:\n{self.output()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        return self.proc.returncode if self.proc else None


def _tool(name, package):
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(
            f"{name} is not installed: run `make test`, which installs {package}"
        )
    return exe


def mbsync(configPath, *args, timeout=120):
    """
    Run isync's C{mbsync} with the config file C{configPath}; return the
    CompletedProcess.
    """
    return subprocess.run(
        [_tool("mbsync", "isync"), "-c", configPath, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def writeMbsyncConfig(directory, port, certificate, local):
    """
    An mbsync config syncing every folder of demo@example.test over
    STARTTLS on C{port} both ways into the Maildir tree C{local}, trusting
    the server's self-signed C{certificate} (isync trusts a certificate
    listed in CertificateFile as it is).

    @return: its path.
    """
    os.makedirs(local, exist_ok=True)
    path = os.path.join(directory, "mbsyncrc")
    with open(path, "w") as f:
        f.write(
            f"IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser {DEMO_USER}\n"
            f"Pass {DEMO_PASSWORD}\nSSLType STARTTLS\nCertificateFile {certificate}\n"
            "SystemCertificates no\n\n"
            "IMAPStore remote\nAccount test\n\n"
            f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n"
            "SubFolders Verbatim\n\n"
            "Channel test\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
            "Expunge Both\nRemove None\nSyncState *\n"
        )
    return path


def fetchmail(directory, port, certificate, keep=False, timeout=120):
    """
    Run C{fetchmail} once against the POP3 listener on C{port} with STLS
    required and the certificate checked against C{certificate}; each
    message goes to a new file in C{directory}/out through an MDA.

    @return: the CompletedProcess.
    """
    out = os.path.join(directory, "out")
    os.makedirs(out, exist_ok=True)
    mda = os.path.join(directory, "mda.py")
    with open(mda, "w") as f:
        f.write(
            "import os, sys, time\n"
            "data = sys.stdin.buffer.read()\n"
            "name = '%020d.%d' % (time.time_ns(), os.getpid())\n"
            f"open(os.path.join({out!r}, name), 'wb').write(data)\n"
        )
    rc = os.path.join(directory, "fetchmailrc")
    with open(rc, "w") as f:
        f.write(
            "set no syslog\n"
            f"poll 127.0.0.1 service {port} protocol POP3 auth password uidl\n"
            f'  user "{DEMO_USER}" there with password "{DEMO_PASSWORD}" is "root" here\n'
            f'  sslproto "auto" sslcertck sslcertfile "{certificate}"\n'
            '  sslcommonname "mail.example.test"\n'
            f'  mda "{sys.executable} {mda}"\n'
            + ("  keep\n" if keep else "  nokeep\n")
        )
    os.chmod(rc, 0o600)
    home = os.path.join(directory, "home")
    os.makedirs(home, exist_ok=True)
    return subprocess.run(
        [_tool("fetchmail", "fetchmail"), "-f", rc, "--nodetach", "-v",
         "-i", os.path.join(home, "fetchids")],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, FETCHMAILHOME=home, HOME=home),
    )


def fetchedMessages(directory):
    """
    The messages the fetchmail MDA saved, oldest first.
    """
    out = os.path.join(directory, "out")
    if not os.path.isdir(out):
        return []
    messages = []
    for name in sorted(os.listdir(out)):
        with open(os.path.join(out, name), "rb") as f:
            messages.append(f.read())
    return messages
