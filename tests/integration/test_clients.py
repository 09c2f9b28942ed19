"""
Real mail clients against C{twistd -n mailplat}: isync's mbsync syncing a
mailbox both ways over IMAP with STARTTLS, and fetchmail pulling over POP3
with STLS.  Both are Debian packages that C{make test} installs.
"""

import imaplib
import os
import poplib
import re
import shutil
import smtplib
import threading
import time

import pytest

from tests.integration.support import (
    Twistd,
    fetchedMessages,
    fetchmail,
    freePorts,
    insecureContext,
    mbsync,
    writeConfig,
    writeMbsyncConfig,
)

USER = "demo@example.test"


@pytest.fixture
def server(tmp_path):
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    ports = dict(zip(names, freePorts(len(names))))
    config = writeConfig(str(tmp_path / "server"), ports)
    t = Twistd(config, str(tmp_path / "twistd.log")).start()
    t.ports = ports
    t.certificate = str(tmp_path / "server" / "tls" / "cert.pem")
    t.delivered = 0
    yield t
    t.stop()


def deliver(server, subject, body):
    """
    Send a message through the MX listener and wait until it is in the
    INBOX.
    """
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.example", [USER],
                   b"Subject: " + subject + b"\r\n\r\n" + body)
    server.delivered += 1
    end = time.monotonic() + 30
    while server.output().count("status=delivered") < server.delivered:
        assert time.monotonic() < end, server.output()
        time.sleep(0.05)


def imap(server):
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=insecureContext())
    conn.login(USER, "demo")
    return conn


_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def serverFolders(conn):
    """
    @return: C{{folder: [(flags, bytes)]}} of every folder, read without
        changing anything (EXAMINE, BODY.PEEK).
    """
    typ, listing = conn.list('""', "*")
    assert typ == "OK"
    folders = {}
    for line in listing:
        name = line.rsplit(b' "/" ', 1)[1].decode()
        typ, _ = conn.select(name, readonly=True)
        assert typ == "OK", name
        typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[])")
        messages = []
        for item in data:
            if isinstance(item, tuple):
                flags = set(_FLAGS.search(item[0]).group(1).decode().split())
                flags.discard("\\Recent")
                messages.append((flags, item[1]))
        folders[name] = messages
        conn.close()
    return folders


def serverStatus(conn):
    """
    @return: C{MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ} of every folder:
        any APPEND, STORE or EXPUNGE would change it.
    """
    typ, listing = conn.list('""', "*")
    result = {}
    for line in listing:
        name = line.rsplit(b' "/" ', 1)[1].decode()
        typ, data = conn.status(name, "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
        assert typ == "OK"
        result[name] = data[0]
    return result


_LOCAL_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                "T": "\\Deleted"}


def localFolders(root):
    """
    @return: C{{folder: sorted [(flags, CRLF bytes)]}} of the near-side
        Maildirs (mbsync stores LF line endings, and marks the messages it
        pulled with an X-TUID header field of its own).
    """
    folders = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        name = os.path.relpath(os.path.dirname(dirpath), root)
        for fileName in filenames:
            info = fileName.partition(":2,")[2]
            flags = {_LOCAL_FLAGS[c] for c in info if c in _LOCAL_FLAGS}
            with open(os.path.join(dirpath, fileName), "rb") as f:
                data = withoutTUID(f.read().replace(b"\n", b"\r\n"))
            folders.setdefault(name, []).append((flags, data))
    return {name: sorted(messages, key=lambda m: m[1]) for name, messages in folders.items()}


def withoutTUID(data):
    return re.sub(rb"(?m)^X-TUID: .*\r\n", b"", data, count=1)


def localFileNames(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root) for f in files
    )


def localFile(root, folder, needle):
    for sub in ("new", "cur"):
        directory = os.path.join(root, folder, sub)
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    return path
    raise AssertionError(f"{needle!r} not in {folder}")


def sortedMessages(messages):
    """
    Server messages as L{localFolders} gives the near side's.
    """
    return sorted(((flags, withoutTUID(data)) for flags, data in messages),
                  key=lambda m: m[1])


def test_mbsyncBothWays(server, tmp_path):
    """
    mbsync pulls every folder, pushes local flag changes, deletions, moves
    and new messages, pulls the server's own changes, and a run with nothing
    changed changes nothing on either side.
    """
    deliver(server, b"alpha", b"first message\r\n.\r\n..two dots\r\n")
    deliver(server, b"beta", b"second message\r\n")
    deliver(server, b"gamma", b"third message\r\n")
    conn = imap(server)
    assert conn.create("Lists/dev")[0] == "OK"
    typ, data = conn.append("Lists/dev", None, None, b"Subject: dev\r\n\r\nlist mail\r\n")
    assert typ == "OK"
    assert re.match(rb"\[APPENDUID \d+ 1\]", data[0])
    conn.logout()

    local = str(tmp_path / "local")
    config = writeMbsyncConfig(str(tmp_path), server.ports["imap"], server.certificate, local)
    run = mbsync(config, "-a")
    assert run.returncode == 0, run.stdout + run.stderr

    conn = imap(server)
    remote = serverFolders(conn)
    assert sorted(remote) == ["Archive", "Drafts", "INBOX", "Junk", "Lists", "Lists/dev",
                              "Sent", "Trash"]
    assert len(remote["INBOX"]) == 3
    near = localFolders(local)
    for name in ("INBOX", "Lists/dev"):
        assert near[name] == sortedMessages(remote[name]), name
    for name in ("Archive", "Drafts", "Junk", "Sent", "Trash"):
        assert os.path.isdir(os.path.join(local, name, "cur")), name

    # Changes on the near side: a flag change, a deletion, a move between
    # folders, a new draft.
    alpha = localFile(local, "INBOX", b"Subject: alpha")
    flagged = os.path.join(local, "INBOX", "cur",
                           os.path.basename(alpha).split(":2,")[0] + ":2,FS")
    os.rename(alpha, flagged)
    os.unlink(localFile(local, "INBOX", b"Subject: beta"))
    gamma = localFile(local, "INBOX", b"Subject: gamma")
    shutil.move(gamma, os.path.join(local, "Archive", "cur",
                                    re.sub(r",U=\d+", "", os.path.basename(gamma))))
    with open(os.path.join(local, "Drafts", "new", "1.local.draft"), "wb") as f:
        f.write(b"Subject: draft\n\nwritten offline\n")
    # Changes on the server: new mail, a flag change, a move.
    deliver(server, b"delta", b"fourth message\r\n")
    assert conn.select("Lists/dev")[0] == "OK"
    assert conn.store("1", "+FLAGS", "(\\Answered)")[0] == "OK"
    typ, data = conn.uid("MOVE", "1", "Trash")
    assert typ == "OK", data
    conn.logout()

    run = mbsync(config, "-a")
    assert run.returncode == 0, run.stdout + run.stderr

    conn = imap(server)
    remote = serverFolders(conn)
    bodies = {name: [(flags, re.search(rb"Subject: (\w+)", data).group(1))
                     for flags, data in messages]
              for name, messages in remote.items()}
    assert bodies["INBOX"] == [({"\\Seen", "\\Flagged"}, b"alpha"), (set(), b"delta")]
    assert bodies["Archive"] == [(set(), b"gamma")]
    assert bodies["Drafts"] == [(set(), b"draft")]
    assert bodies["Trash"] == [({"\\Answered"}, b"dev")]
    assert bodies["Lists/dev"] == []
    # mbsync marks what it uploads with an X-TUID field too.
    assert re.fullmatch(
        rb"Subject: draft\r\nX-TUID: \S+\r\n\r\nwritten offline\r\n", remote["Drafts"][0][1]
    )
    near = localFolders(local)
    for name, messages in remote.items():
        assert near.get(name, []) == sortedMessages(messages), name

    # Nothing changed: a third run changes nothing on either side.
    before = serverStatus(conn)
    files = localFileNames(local)
    run = mbsync(config, "-a")
    assert run.returncode == 0, run.stdout + run.stderr
    assert serverStatus(conn) == before
    assert localFileNames(local) == files
    conn.logout()


def test_fetchmailOverSTLS(server, tmp_path):
    """
    fetchmail (STLS required, the certificate verified) retrieves every
    message byte for byte; with C{keep}, UIDL keeps it from fetching a
    message twice, even after IMAP flag changes; without, the messages are
    deleted at QUIT and IMAP no longer sees them.
    """
    deliver(server, b"one", b".\r\n..\r\n.leading dot\r\nend\r\n")
    # Over POP3's 64 KiB read size, with dot lines throughout.
    deliver(server, b"two", b"".join(b"%s%05d %s\r\n" % (b"." * (n % 3), n, b"x" * 70)
                                     for n in range(1200)) + b".\r\n")
    conn = imap(server)
    stored = [data for _, data in serverFolders(conn)["INBOX"]]
    assert len(stored) == 2

    first = str(tmp_path / "keep")
    run = fetchmail(first, server.ports["pop3"], server.certificate, keep=True)
    assert run.returncode == 0, run.stdout + run.stderr
    log = run.stdout + run.stderr
    assert "POP3> STLS" in log
    assert "POP3< +OK Begin TLS negotiation now" in log
    assert log.index("POP3> STLS") < log.index("POP3> USER")
    fetched = fetchedMessages(first)
    assert len(fetched) == 2
    for got, expected in zip(fetched, stored):
        # fetchmail adds its own Received field after Return-Path and
        # hands the MDA LF line endings.
        got = re.sub(rb"Received: from 127\.0\.0\.1 \[127\.0\.0\.1\]\n\tby \S+ with POP3 "
                     rb"\(fetchmail-[^)]+\)\n\tfor .*\n", b"", got, count=1)
        assert got == expected.replace(b"\r\n", b"\n")

    # Flag changes over IMAP do not change the UIDL strings.
    assert conn.select("INBOX")[0] == "OK"
    assert conn.store("1:*", "+FLAGS", "(\\Seen \\Flagged)")[0] == "OK"
    conn.close()
    run = fetchmail(first, server.ports["pop3"], server.certificate, keep=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 messages (2 seen) for demo@example.test at 127.0.0.1" in run.stdout
    assert len(fetchedMessages(first)) == 2

    second = str(tmp_path / "delete")
    run = fetchmail(second, server.ports["pop3"], server.certificate)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "POP3< +OK Logging out, 2 messages deleted." in run.stdout + run.stderr
    assert len(fetchedMessages(second)) == 2
    assert serverFolders(conn)["INBOX"] == []
    conn.logout()


def test_idleAppendLimitAndPop3AgainstTwistd(server):
    """
    Over real TLS sockets: an idling IMAP session hears of a delivery at
    once; an APPEND over APPENDLIMIT is refused before any continuation;
    a message deleted over POP3 is expunged in IMAP.
    """
    conn = imap(server)
    assert conn.select("INBOX")[0] == "OK"
    conn.send(b"a IDLE\r\n")
    assert conn.readline() == b"+ idling\r\n"
    # The delivery reaches the idling session through the folder's
    # listener, without polling and without the client saying anything
    # (tests assert no timings, DESIGN.md 8; the generous timeout is for a
    # loaded machine).
    conn.sock.settimeout(30)
    deliver(server, b"idle", b"wake up\r\n")
    assert conn.readline() == b"* 1 EXISTS\r\n"
    assert conn.readline() == b"* 1 RECENT\r\n"
    conn.send(b"DONE\r\n")
    assert conn.readline() == b"a OK IDLE terminated\r\n"

    conn.send(b"b APPEND INBOX {67108865}\r\n")
    assert conn.readline() == b"b NO [TOOBIG] Message too large (APPENDLIMIT 67108864)\r\n"

    pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=insecureContext())
    pop.user(USER)
    pop.pass_("demo")
    assert pop.dele(1) == b"+OK Marked to be deleted."
    assert pop.quit() == b"+OK Logging out, 1 messages deleted."
    conn.send(b"c NOOP\r\n")
    assert conn.readline() == b"* 1 EXPUNGE\r\n"
    assert conn.readline() == b"c OK NOOP completed\r\n"
    conn.logout()


def test_concurrentSessionsStayConsistent(server):
    """
    Deliveries, two IMAP sessions storing flags, copying and expunging, and
    POP3 sessions, all at once: every message gets a distinct UID, none is
    lost, the Maildir and the index agree, and the sessions' views converge.
    """
    errors = []
    stop = threading.Event()
    copies = []

    def imapWorker(n):
        try:
            conn = imap(server)
            assert conn.select("INBOX")[0] == "OK"
            i = 0
            while not stop.is_set():
                i += 1
                typ, data = conn.fetch("1:*", "(UID FLAGS)")
                assert typ == "OK", data
                typ, data = conn.store("1:*", "+FLAGS" if i % 2 else "-FLAGS",
                                       "(\\Flagged)")
                assert typ == "OK", data
                # imaplib's uid() drops the tagged text, where COPYUID is.
                typ, data = conn._simple_command("UID", "COPY", "1", "Archive")
                assert typ == "OK", data
                if data[0].startswith(b"[COPYUID "):
                    copies.append(data[0])
                assert conn.noop()[0] == "OK"
            conn.logout()
        except Exception as e:
            errors.append((n, e))

    def popWorker():
        try:
            while not stop.is_set():
                pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"],
                                      context=insecureContext())
                pop.user(USER)
                try:
                    pop.pass_("demo")
                except poplib.error_proto as e:
                    # Another POP3 session holds the maildrop.
                    assert b"[IN-USE]" in e.args[0] or b"[AUTH]" in e.args[0], e
                    pop.quit()
                    continue
                pop.uidl()
                pop.quit()
        except Exception as e:
            errors.append(("pop", e))

    threads = [threading.Thread(target=imapWorker, args=(n,)) for n in range(2)]
    threads.append(threading.Thread(target=popWorker))
    for t in threads:
        t.start()
    try:
        for n in range(15):
            deliver(server, b"concurrent %d" % n, b"body %d\r\n" % n)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert errors == []

    conn = imap(server)
    typ, data = conn.select("INBOX")
    assert data == [b"15"]
    typ, data = conn.uid("SEARCH", "ALL")
    assert data == [b" ".join(b"%d" % n for n in range(1, 16))]
    typ, data = conn.status("Archive", "(MESSAGES)")
    assert data == [b"Archive (MESSAGES %d)" % len(copies)]
    conn.logout()
    maildir = os.path.join(os.path.dirname(server.certificate), "..", "mail",
                           "example.test", "demo", "Maildir")
    files = os.listdir(os.path.join(maildir, "cur")) + os.listdir(
        os.path.join(maildir, "new"))
    assert len(files) == 15
