"""
What the benchmarks need before they start: Debian packages and matplotlib,
the scratch directory, a certificate, users with password hashes shared by
every server, and mailboxes with the same messages on both sides.
"""

import grp
import os
import pwd
import random
import shutil
import subprocess
import sys

import procs

PACKAGES = {
    # Debian package: a file that shows it is installed
    "postfix": "/usr/sbin/smtp-source",
    "dovecot-imapd": "/usr/lib/dovecot/imap",
    "dovecot-pop3d": "/usr/lib/dovecot/pop3",
    "isync": "/usr/bin/mbsync",
}
SYSTEM_PIDFILES = {
    "dovecot": "/run/dovecot/master.pid",
    "postfix": "/var/spool/postfix/pid/master.pid",
}
POLICY_RC = "/usr/sbin/policy-rc.d"


def ensurePackages(say):
    """
    Install the missing Debian packages with apt-get, without configuring or
    starting the system's Postfix or Dovecot: debconf is told "No
    configuration" for Postfix, and a policy-rc.d that refuses every service
    start is in place for the install (removed again if we created it).  If a
    system daemon was started all the same, it is stopped by its PID file;
    with systemd it is also disabled, so that it does not start at boot
    listening on every interface with the default configuration.
    """
    missing = [p for p, marker in PACKAGES.items() if not os.path.exists(marker)]
    if not missing:
        return []
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["debconf-set-selections"],
        input="postfix postfix/main_mailer_type select No configuration\n",
        text=True, check=True,
    )
    createdPolicy = False
    if not os.path.exists(POLICY_RC):
        with open(POLICY_RC, "w") as f:
            f.write("#!/bin/sh\n# bench/run: no service starts during its install\nexit 101\n")
        os.chmod(POLICY_RC, 0o755)
        createdPolicy = True
    try:
        lock = ["-o", "DPkg::Lock::Timeout=600"]
        r = subprocess.run(["apt-get", *lock, "update", "-qq"], env=env)
        if r.returncode:
            raise SystemExit("apt-get update failed")
        r = subprocess.run(
            ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env, stdout=subprocess.DEVNULL,
        )
        if r.returncode:
            raise SystemExit(f"apt-get install {' '.join(missing)} failed")
    finally:
        if createdPolicy:
            os.unlink(POLICY_RC)
    stopSystemDaemons(say)
    return missing


def stopSystemDaemons(say):
    """
    Stop the system-wide Postfix or Dovecot that a package install started.
    """
    systemd = os.path.exists("/run/systemd/system")
    for name, pidFile in SYSTEM_PIDFILES.items():
        if systemd:
            subprocess.run(["systemctl", "disable", "--now", f"{name}.service"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with open(pidFile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if procs.alive(pid):
            say(f"stopping the system {name} that its package started (PID {pid})")
            procs.stopTree(pid, name, say=say)


def ensureMatplotlib(say):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        say("installing matplotlib into the virtualenv")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)


def checkTraversable(path):
    """
    The peers' mail processes run as nobody: every directory above the
    scratch directory must let others through.
    """
    path = os.path.abspath(path)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
        if not os.stat(path).st_mode & 0o001:
            return path


# -- users and mail

PASSWORD = "bench-password"
DOMAIN = "example.test"


def benchHash(password):
    """
    An argon2id hash in mailplat's stored form, which Dovecot verifies as
    well: the same scheme and parameters for every server.  The parameters
    are light (t=1, 8 MiB, p=1: a few ms) so that the session benchmarks
    measure the protocols rather than the key derivation; with mailplat's
    default (t=3, 64 MiB, p=4) each login costs ~0.1 s of CPU on either server.
    """
    from argon2 import PasswordHasher

    from mailplat.auth.passwords import isKnownHash, verifyPassword

    stored = "{ARGON2ID}" + PasswordHasher(
        time_cost=1, memory_cost=8192, parallelism=1).hash(password)
    if not (isKnownHash(stored) and verifyPassword(stored, password)):
        raise SystemExit("mailplat no longer accepts {ARGON2ID} argon2id hashes")
    return stored


def writePasswd(path, users):
    with open(path, "w") as f:
        f.write("# bench users (shared by mailplat and Dovecot)\n")
        for u in users:
            f.write(f"{u}:{benchHash(PASSWORD)}\n")
    # mailplat reads it as root, Dovecot's auth process as user dovecot.
    try:
        os.chown(path, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(path, 0o640)
    except KeyError:
        os.chmod(path, 0o644)


_WORDS = (
    "the quick brown fox jumps over lazy dog mail server queue deliver "
    "message header body maildir twisted postfix dovecot imap pop3 smtp"
).split()


def makeMessage(n, size, to):
    """
    A plain-text message of about C{size} bytes, CRLF line endings, the same
    bytes for every server.
    """
    rnd = random.Random(n)
    head = (
        f"Return-Path: <sender{n}@client.test>\r\n"
        f"From: Sender {n} <sender{n}@client.test>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: benchmark message {n}\r\n"
        f"Date: Sat, 21 Nov 2026 12:{n // 60 % 60:02d}:{n % 60:02d} +0000\r\n"
        f"Message-ID: <bench.{n}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    lines, total = [], len(head)
    while total < size:
        line = " ".join(rnd.choice(_WORDS) for _ in range(12))[:74] + "\r\n"
        lines.append(line)
        total += len(line)
    return (head + "".join(lines)).encode("ascii")


def populate(mailplatRoot, peerRoot, mailboxes, uid, gid):
    """
    Deliver the same messages to mailplat's store (through its own
    MaildirStore, so that its UID index is written as in service) and copy
    the resulting files into the peer's Maildirs (Dovecot indexes them on
    first access, which the warm-up does).

    @param mailboxes: C{{address: [(n, size), ...]}}.
    """
    from mailplat.storage.maildir import MaildirStore

    store = MaildirStore(mailplatRoot)
    for address, messages in mailboxes.items():
        for n, size in messages:
            store.deliver(address, [makeMessage(n, size, address)])
        local = address.partition("@")[0]
        src = os.path.join(mailplatRoot, DOMAIN, local, "Maildir")
        dst = os.path.join(peerRoot, DOMAIN, local, "Maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(dst, sub), exist_ok=True)
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(src, sub)):
                shutil.copy2(os.path.join(src, sub, name), os.path.join(dst, "new", name))
    chownTree(peerRoot, uid, gid)


def chownTree(root, uid, gid):
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)


def mailIds():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def maildirCount(root, address):
    local, _, domain = address.partition("@")
    base = os.path.join(root, domain, local, "Maildir")
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for name in os.listdir(os.path.join(base, sub)) if not name.startswith("."))
        except FileNotFoundError:
            pass
    return n
