"""
C{[smtp] separate_process = true} under twistd: the SMTP listeners are served
by a child process (C{python -m mailplat.smtpchild}) and the main process
delivers.  Real sockets, real clients, real signals.
"""

import os
import re
import signal
import smtplib
import threading
import time

import pytest

from mailplat.queue.envelope import Envelope, Recipient
from mailplat.queue.store import QueueStore, newQueueId
from tests.integration.support import (
    Twistd,
    freePorts,
    imapFetchAll,
    insecureContext,
    popFetchAll,
    stripTrace,
    swaks,
    writeConfig,
)

SEPARATE = "[smtp]\nseparate_process = true\n"
QUEUED = re.compile(rb"2\.0\.0 Ok: queued as ([0-9A-F]+)")
SERVING = re.compile(
    r"^\S+ \[mailplat\.smtpprocess\.SMTPProcessService#info\] "
    r"smtp process \[(\d+)\]: serving smtp, submission, smtps$",
    re.M,
)


def _ports():
    names = ["smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"]
    return dict(zip(names, freePorts(len(names))))


def _start(tmp_path, extra="", logName="twistd.log", ports=None):
    """
    twistd with the separate SMTP process, once the child serves.

    @return: the L{Twistd}, with C{ports}, C{dir} and C{childPid} (the pid
        the first "serving" line names).
    """
    ports = ports or _ports()
    config = writeConfig(str(tmp_path), ports, extra=SEPARATE + extra)
    t = Twistd(config, str(tmp_path / logName)).start()
    t.ports = ports
    t.dir = tmp_path
    t.childPid = _waitServing(t, 1)[0]
    return t


def _waitServing(t, count, timeout=20):
    """
    Wait until C{count} "serving" lines are logged; return their pids.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in SERVING.findall(t.output())]
        if len(pids) >= count:
            return pids
        if t.proc.poll() is not None:
            raise AssertionError(f"twistd exited early:\n{t.output()}")
        time.sleep(0.05)
    raise AssertionError(f"{count} 'serving' line(s) not logged:\n{t.output()}")


def _stat(pid):
    """
    @return: (state, ppid) of process C{pid} from /proc/PID/stat, or None.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _smtpChildren(directory):
    """
    Live C{python -m mailplat.smtpchild} processes whose working directory
    is C{directory} (the twistd of this test): a list of (pid, ppid).
    Zombies have no command line and are not listed.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if argv[1:3] != [b"-m", b"mailplat.smtpchild"]:
                continue
            if os.readlink(f"/proc/{name}/cwd") != str(directory):
                continue
        except OSError:
            continue
        stat = _stat(name)
        if stat is not None and stat[0] != "Z":
            found.append((int(name), stat[1]))
    return found


def _gone(pid):
    """
    Whether C{pid} has exited (no such process, or a zombie: PID 1 of this
    machine may not reap orphans).
    """
    stat = _stat(pid)
    return stat is None or stat[0] == "Z"


def _waitGone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still running after {timeout}s: {_stat(pid)}")


def _socketOwners(serverPort, clientPort, pids):
    """
    Which of C{pids} hold the server side of the TCP connection from
    127.0.0.1:C{clientPort} to 127.0.0.1:C{serverPort} (found through
    /proc/net/tcp and /proc/PID/fd).
    """
    local = "0100007F:%04X" % serverPort
    remote = "0100007F:%04X" % clientPort
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                inode = fields[9]
    assert inode not in (None, "0"), (serverPort, clientPort, inode)
    target = f"socket:[{inode}]"
    owners = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    owners.add(pid)
            except OSError:
                pass
    return owners


def _maildirMessages(tmp_path):
    """
    The raw messages in demo@example.test's INBOX Maildir (new/ and cur/).
    """
    base = tmp_path / "mail" / "example.test" / "demo" / "Maildir"
    messages = []
    for sub in ("new", "cur"):
        d = base / sub
        if d.is_dir():
            for name in sorted(os.listdir(d)):
                messages.append((d / name).read_bytes())
    return messages


def _subjects(tmp_path):
    subjects = []
    for m in _maildirMessages(tmp_path):
        found = re.search(rb"\r\nSubject: ([^\r\n]*)\r\n", m)
        subjects.append(found.group(1).decode() if found else None)
    return subjects


def _logLine(log, pattern):
    """
    The single log line matching C{pattern} (a regex for a whole line).
    """
    lines = re.findall("^" + pattern + "$", log, re.M)
    assert len(lines) == 1, (pattern, lines, log)
    return lines[0]


def _sendOne(port, subject, sender="a@remote.example"):
    """
    One message over a new plain SMTP session, every reply checked.

    @return: its queue id.
    """
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        assert s.ehlo("client.example")[0] == 250
        assert s.mail(sender) == (250, b"2.1.0 Ok")
        assert s.rcpt("demo@example.test") == (250, b"2.1.5 Ok")
        code, msg = s.data(f"Subject: {subject}\r\n\r\nbody of {subject}\r\n".encode())
        assert code == 250, (code, msg)
        m = QUEUED.fullmatch(msg)
        assert m, msg
        return m.group(1).decode()


def test_mxAndSubmissionServedByChildDeliveredByParent(tmp_path):
    """
    Mail to the mx and submission (STARTTLS + AUTH) listeners is accepted by
    the child process, delivered by the main process and read back over IMAP
    and POP3; the child's log lines are in the main process's log.
    """
    t = _start(tmp_path)
    try:
        twistdPid = t.proc.pid
        child = t.childPid
        assert _smtpChildren(tmp_path) == [(child, twistdPid)]
        log = t.output()
        started = _logLine(
            log,
            r"\S+ \[mailplat\.smtpprocess\.SMTPProcessService#info\] "
            rf"smtp process \[{child}\]: started",
        )
        assert log.index(started) < log.index(f"smtp process [{child}]: serving")

        # Port 25 profile, with swaks.
        out = swaks(
            t.ports["smtp"], "--to", "demo@example.test", "--from",
            "sender@remote.example", "--helo", "client.example",
            "--header", "Subject: via mx", "--body", "mx body",
        )
        assert out.returncode == 0, out.stdout + out.stderr
        found = re.search(r"^<-  250 2\.0\.0 Ok: queued as ([0-9A-F]+)$", out.stdout, re.M)
        assert found, out.stdout
        mxId = found.group(1)
        # What swaks sent between DATA and "." (no dot-stuffing needed here).
        shown = out.stdout.split("<-  354 ", 1)[1].split("\n", 1)[1]
        shown = shown.split("\n -> .\n", 1)[0].split("\n")
        assert all(line.startswith(" -> ") for line in shown), shown
        mxSent = "\r\n".join(line[4:] for line in shown).encode() + b"\r\n"
        t.waitForLog(f"{mxId}: removed")

        # Submission: STARTTLS, AUTH, served by the child.
        with smtplib.SMTP("127.0.0.1", t.ports["submission"], timeout=20) as s:
            owners = _socketOwners(
                t.ports["submission"], s.sock.getsockname()[1], [twistdPid, child]
            )
            assert owners == {child}
            s.ehlo("client.example")
            assert s.mail("demo@example.test") == (
                530, b"5.7.0 Must issue a STARTTLS command first",
            )
            assert s.rset()[0] == 250
            assert s.starttls(context=insecureContext())[0] == 220
            s.ehlo("client.example")
            assert s.login("demo@example.test", "demo") == (
                235, b"2.7.0 Authentication successful",
            )
            assert s.mail("demo@example.test") == (250, b"2.1.0 Ok")
            assert s.rcpt("demo@example.test") == (250, b"2.1.5 Ok")
            code, msg = s.data(b"Subject: via submission\r\n\r\nsubmitted\r\n")
            assert code == 250
            subId = QUEUED.fullmatch(msg).group(1).decode()
        t.waitForLog(f"{subId}: removed")
        log = t.output()

        accepted = {
            mxId: _logLine(
                log,
                r"\S+ \[mailplat\.smtp\.server\.SMTPServer#info\] "
                rf"{mxId}: accepted from=<sender@remote\.example>, nrcpt=1, "
                r"size=\d+, client=\[127\.0\.0\.1\], helo=client\.example, auth=-, "
                r"tls=no",
            ),
            subId: _logLine(
                log,
                r"\S+ \[mailplat\.smtp\.server\.SMTPServer#info\] "
                rf"{subId}: accepted from=<demo@example\.test>, nrcpt=1, "
                r"size=\d+, client=\[127\.0\.0\.1\], helo=client\.example, "
                r"auth=demo@example\.test, tls=yes",
            ),
        }
        for uid, queueId in enumerate((mxId, subId), 1):
            delivered = _logLine(
                log,
                r"\S+ \[mailplat\.queue\.runner\.QueueRunner#info\] "
                rf"{queueId}: to=<demo@example\.test>, relay=local, "
                r"delay=\d+\.\d\d, dsn=2\.0\.0, "
                rf"status=delivered \(delivered to maildir as uid {uid}\)",
            )
            assert log.index(accepted[queueId]) < log.index(delivered)

        # The child is still the one serving.
        assert _smtpChildren(tmp_path) == [(child, twistdPid)]
        assert "ended unexpectedly" not in log

        viaImap = imapFetchAll(t.ports["imaps"], True)
        assert len(viaImap) == 2
        for message, queueId, sender in (
            (viaImap[0], mxId, b"sender@remote.example"),
            (viaImap[1], subId, b"demo@example.test"),
        ):
            assert message.startswith(b"Return-Path: <" + sender + b">\r\nReceived: from ")
            assert f"id {queueId}".encode() in message
        assert stripTrace(viaImap[0]) == mxSent
        assert b"\r\nSubject: via mx\r\n" in mxSent
        head, text = stripTrace(viaImap[1]).split(b"\r\n\r\n", 1)
        # Submission added the Date and Message-ID it lacked.
        lines = head.split(b"\r\n")
        assert lines[0] == b"Subject: via submission"
        assert lines[1].startswith(b"Date: ")
        assert lines[2].startswith(b"Message-ID: <")
        assert len(lines) == 3
        assert text == b"submitted\r\n"
        assert b"with ESMTPSA id" in viaImap[1]
        assert popFetchAll(t.ports["pop3"], False) == viaImap
    finally:
        t.stop()


def test_childKilledLosesNothing(tmp_path):
    """
    SIGKILL to the child while clients are sending: the main process serves
    SMTP, a new child takes over, and every message that got its 250 is
    delivered exactly once.
    """
    t = _start(tmp_path)
    try:
        twistdPid = t.proc.pid
        first = t.childPid
        port = t.ports["smtp"]
        threads, perThread = 6, 5
        outcomes = {}  # subject -> (queue id or None, begun after the kill)
        errors = []
        lock = threading.Lock()
        okCount = [0]
        killed = threading.Event()

        def client(n):
            s = None
            for i in range(perThread):
                subject = f"kill {n}-{i}"
                queueId = None
                if i == perThread - 2:
                    # Some sessions are sure to begin after the kill.
                    killed.wait(20)
                startedAfterKill = killed.is_set()
                try:
                    if s is None:
                        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
                        code, msg = s.ehlo("client.example")
                        if code != 250:
                            errors.append(("ehlo", subject, code, msg))
                    replies = [s.mail("a@remote.example"), s.rcpt("demo@example.test")]
                    if replies != [(250, b"2.1.0 Ok"), (250, b"2.1.5 Ok")]:
                        errors.append((subject, replies))
                        raise smtplib.SMTPException("refused")
                    code, msg = s.data(
                        f"Subject: {subject}\r\n\r\nbody {subject}\r\n".encode()
                    )
                    m = QUEUED.fullmatch(msg)
                    if code != 250 or m is None:
                        errors.append((subject, code, msg))
                    else:
                        queueId = m.group(1).decode()
                except (smtplib.SMTPException, OSError):
                    # The child was killed under this session.
                    try:
                        s.close()
                    except Exception:
                        pass
                    s = None
                with lock:
                    outcomes[subject] = (queueId, startedAfterKill)
                    if queueId:
                        okCount[0] += 1
                time.sleep(0.03)
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass

        workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 20
        while okCount[0] < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert okCount[0] >= 10
        # The child's commit process (mailplat.queue.commitprocess).
        commitPid = int(
            _logLine(
                t.output(),
                r"\S+ \[mailplat\.queue\.commitprocess\.CommitProcess#info\] "
                r"commit process \[(\d+)\]: started",
            )
        )
        assert _stat(commitPid)[1] == first
        os.kill(first, signal.SIGKILL)
        killed.set()
        # Right after the kill, a new session is accepted (by the main
        # process or the next child).
        afterKill = _sendOne(port, "right after the kill")
        for w in workers:
            w.join(60)
            assert not w.is_alive()
        assert errors == []
        assert len(outcomes) == threads * perThread

        # A new child, with another pid, serves.
        pids = _waitServing(t, 2)
        assert pids[0] == first and pids[1] != first
        second = pids[1]
        _waitGone(first)
        # It dies with the child (SIGKILL on its parent's death), so it
        # writes nothing into the queue after the main process looked.
        _waitGone(commitPid)
        assert _smtpChildren(tmp_path) == [(second, twistdPid)]
        log = t.output()
        _logLine(
            log,
            r"\S+ \[mailplat\.smtpprocess\.SMTPProcessService#error\] "
            rf"smtp process \[{first}\]: ended unexpectedly \(A process has ended "
            r"with a probable error condition: process ended by signal 9\.\); "
            r"this process accepts SMTP until a new one is ready in 0\.5s",
        )
        _logLine(
            log,
            r"\S+ \[mailplat\.smtpprocess\.SMTPProcessService#info\] "
            rf"smtp process \[{second}\]: started",
        )
        # ... and the next session is the new child's.
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            owners = _socketOwners(port, s.sock.getsockname()[1], [twistdPid, second])
            assert owners == {second}
            assert s.ehlo("client.example")[0] == 250
            assert s.mail("a@remote.example") == (250, b"2.1.0 Ok")
            assert s.rcpt("demo@example.test") == (250, b"2.1.5 Ok")
            code, msg = s.data(b"Subject: new child\r\n\r\nbody\r\n")
            assert code == 250 and QUEUED.fullmatch(msg), msg
            newChild = QUEUED.fullmatch(msg).group(1).decode()

        accepted = {s for s, (queueId, _) in outcomes.items() if queueId}
        assert len(accepted) >= 10
        assert any(late for queueId, late in outcomes.values() if queueId)
        accepted |= {"right after the kill", "new child"}
        active = tmp_path / "queue" / "active"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if accepted <= set(_subjects(tmp_path)) and not os.listdir(active):
                break
            time.sleep(0.1)
        subjects = _subjects(tmp_path)
        for subject in accepted:
            assert subjects.count(subject) == 1, (subject, subjects, t.output())
        # A session cut after DATA may have its message delivered without
        # having seen the 250, but never twice.
        assert all(subjects.count(s) == 1 for s in subjects), subjects
        assert os.listdir(active) == []
        log = t.output()
        for queueId in [q for q, _ in outcomes.values() if q] + [afterKill, newChild]:
            _logLine(
                log,
                rf"\S+ \[mailplat\.queue\.runner\.QueueRunner#info\] {queueId}: "
                r"to=<demo@example\.test>, relay=local, delay=\d+\.\d\d, "
                r"dsn=2\.0\.0, status=delivered \(delivered to maildir as uid \d+\)",
            )
    finally:
        t.stop()


def test_unannouncedMessageDeliveredWhenChildDies(tmp_path):
    """
    A message in active/ that the main process was never told about (the
    child committed it and died before its Q line) is delivered once the
    child dies: the main process scans the queue (QueueRunner.scheduleNew).
    """
    t = _start(tmp_path)
    try:
        queue = QueueStore(str(tmp_path / "queue"))
        spool = queue.spool(
            Envelope(
                id=newQueueId(),
                sender="lost@remote.example",
                recipients=[Recipient("demo@example.test")],
                arrival=time.time(),
            )
        )
        spool.write(b"Subject: unannounced\r\n\r\nfound by the scan\r\n")
        queueId = spool.commit().id
        # Nobody tries it while the child lives...
        time.sleep(1.0)
        assert queueId not in t.output()
        assert os.listdir(tmp_path / "queue" / "active") == [queueId]
        # ... and the main process finds it when the child dies.
        os.kill(t.childPid, signal.SIGKILL)
        t.waitForLog(f"{queueId}: removed", timeout=10)
        assert f"smtp process [{t.childPid}]: ended unexpectedly" in t.output()
        _logLine(
            t.output(),
            rf"\S+ \[mailplat\.queue\.runner\.QueueRunner#info\] {queueId}: "
            r"to=<demo@example\.test>, relay=local, delay=\d+\.\d\d, dsn=2\.0\.0, "
            r"status=delivered \(delivered to maildir as uid 1\)",
        )
        assert [stripTrace(m) for m in _maildirMessages(tmp_path)] == [
            b"Subject: unannounced\r\n\r\nfound by the scan\r\n"
        ]
    finally:
        t.stop()


def test_sigtermStopsBothProcesses(tmp_path):
    """
    SIGTERM to twistd, with a client connected to the child: the child is
    stopped (not killed) and twistd exits promptly, leaving no SMTP process.
    """
    t = _start(tmp_path)
    child = t.childPid
    idle = smtplib.SMTP("127.0.0.1", t.ports["smtp"], timeout=20)
    try:
        assert idle.ehlo("client.example")[0] == 250
        assert _socketOwners(
            t.ports["smtp"], idle.sock.getsockname()[1], [t.proc.pid, child]
        ) == {child}
        began = time.monotonic()
        t.proc.send_signal(signal.SIGTERM)
        t.proc.wait(15)
        elapsed = time.monotonic() - began
    finally:
        idle.close()
        t.stop()
    assert elapsed < 5, elapsed
    assert _gone(child)
    assert _smtpChildren(tmp_path) == []
    log = t.output()
    stopped = _logLine(
        log,
        r"\S+ \[mailplat\.smtpprocess\.SMTPProcessService#info\] "
        rf"smtp process \[{child}\]: stopped \(A process has ended without "
        r"apparent errors: process finished with exit code 0\.\)",
    )
    assert "killing it" not in log
    assert "ended unexpectedly" not in log
    assert log.index(stopped) < log.index("Server Shut Down.")


def test_childShutdownIsLogged(tmp_path):
    """
    What the child logs while it stops (here: the session it closes) is in
    the main process's log, as it is without a separate SMTP process.
    """
    t = _start(tmp_path)
    idle = smtplib.SMTP("127.0.0.1", t.ports["smtp"], timeout=20)
    try:
        assert idle.ehlo("client.example")[0] == 250
        t.waitForLog("smtp[smtp]: connect from [127.0.0.1]")
    finally:
        t.stop()
        idle.close()
    log = t.output()
    assert "smtp process [%d]: stopped" % t.childPid in log
    _logLine(
        log,
        r"\S+ \[mailplat\.smtp\.server\.SMTPServer#info\] "
        r"smtp\[smtp\]: disconnect from \[127\.0\.0\.1\]",
    )


def test_parentKilledAfter250ChildExitsMessageDeliveredAfterRestart(tmp_path):
    """
    SIGKILL to twistd after a 250 (delivery blocked for now): the child sees
    its standard input close and exits, the ports are free again, and the
    restarted server delivers the message exactly once.
    """
    ports = _ports()
    userDir = tmp_path / "mail" / "example.test" / "demo"
    userDir.parent.mkdir(parents=True)
    userDir.write_text("in the way")
    t = _start(tmp_path, extra='[queue]\nretry_initial = "1s"\n', ports=ports)
    child = t.childPid
    try:
        queueId = _sendOne(ports["smtp"], "survive")
        t.waitForLog(f"{queueId}: to=<demo@example.test>")
        assert "status=deferred" in t.output()
    finally:
        t.stop(signal.SIGKILL)
    # Orphaned, the child notices the closed pipe and exits.
    _waitGone(child)
    assert _smtpChildren(tmp_path) == []
    assert QueueStore(str(tmp_path / "queue")).ids() == [queueId]
    userDir.unlink()
    t2 = _start(tmp_path, extra='[queue]\nretry_initial = "1s"\n', ports=ports,
                logName="twistd2.log")
    try:
        assert t2.childPid != child
        t2.waitForLog(f"{queueId}: removed", timeout=15)
        log = t2.output()
        assert "queue: resuming 1 message(s)" in log
        _logLine(
            log,
            rf"\S+ \[mailplat\.queue\.runner\.QueueRunner#info\] {queueId}: "
            r"to=<demo@example\.test>, relay=local, delay=\d+\.\d\d, dsn=2\.0\.0, "
            r"status=delivered \(delivered to maildir as uid 1\)",
        )
        messages = imapFetchAll(ports["imaps"], True)
        assert [stripTrace(m) for m in messages] == [
            b"Subject: survive\r\n\r\nbody of survive\r\n"
        ]
        assert os.listdir(tmp_path / "queue" / "active") == []
    finally:
        t2.stop()
    assert _smtpChildren(tmp_path) == []
