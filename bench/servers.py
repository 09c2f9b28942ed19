"""
The servers under test, each started from its own config in the scratch
directory and stopped by PID: mailplat (twistd), and the peers Postfix and
Dovecot, plus smtp-sink (the relay benchmark's destination).
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib

import procs

HOST = "127.0.0.1"
BENCH = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(BENCH, "config")
BIN = os.path.dirname(sys.executable)


class ServerError(Exception):
    """
    A server did not start, or a benchmark could not run against it; the
    message is the reason printed in the results as "n/a: ...".
    """


def fill(templateName, values, extra=""):
    """
    The template C{bench/config/<templateName>} with every C{@NAME@} replaced.
    """
    with open(os.path.join(CONFIG, templateName)) as f:
        text = f.read() + extra
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise ValueError(f"{templateName}: no value for {', '.join(left)}")
    return text


def _merge(into, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _tomlValue(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_tomlValue(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def tomlDump(d, prefix=""):
    """
    TOML text for C{d}: scalars and lists, and tables nested in tables (all
    that the bench configs use).
    """
    lines = [f"{k} = {_tomlValue(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            if any(not isinstance(x, dict) for x in v.values()) or not v:
                lines += ["", f"[{name}]"]
            lines.append(tomlDump(v, name + ".").strip("\n"))
    return "\n".join(l for l in lines if l is not None) + "\n"


def freePorts(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # twistd prefixes each line with a time stamp and a log source.
    text = re.sub(r"(?m)^\d{4}-\d\d-\d\dT\S+ \[[^\]]*\] ?", "", text)
    return "\n".join(l.rstrip() for l in text.splitlines()[-lines:])


def greeting(port, tls, timeout=2.0):
    """
    Connect once and read the greeting (after the TLS handshake for an
    implicit-TLS port).  @return: the greeting line.  @raise OSError.
    """
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        f = sock.makefile("rb")
        while True:
            line = f.readline(4096)
            if not line:
                raise OSError("closed before the greeting")
            if not line[3:4] == b"-":  # SMTP multi-line greeting
                return line
    finally:
        sock.close()


class GreetingWatch(threading.Thread):
    """
    Polls a port every 5 ms from the moment it is created until a greeting
    arrives: C{elapsed} is the time from C{t0} to that greeting.
    """

    def __init__(self, port, tls, expect, t0, timeout=60.0):
        threading.Thread.__init__(self, daemon=True)
        self.port, self.tls, self.expect, self.t0 = port, tls, expect, t0
        self.timeout = timeout
        self.elapsed = None
        self.error = None
        self._cancel = threading.Event()
        self.start()

    def run(self):
        deadline = self.t0 + self.timeout
        while time.monotonic() < deadline and not self._cancel.is_set():
            try:
                line = greeting(self.port, self.tls)
            except (OSError, ssl.SSLError):
                time.sleep(0.005)
                continue
            if line.startswith(self.expect):
                self.elapsed = time.monotonic() - self.t0
            else:
                self.error = f"unexpected greeting {line[:80]!r}"
            return
        self.error = f"no greeting on port {self.port} within {self.timeout:.0f}s"

    def result(self, alive=lambda: True):
        while self.is_alive():
            self.join(0.05)
            if not alive():
                self._cancel.set()
        return self.elapsed


class Server:
    name = "?"

    def __init__(self, env):
        self.env = env  # the harness's Environment: paths, ports, registry
        self.pid = None

    def roots(self):
        return [self.pid] if self.pid else []

    def pids(self):
        return procs.tree(*self.roots())

    def memory(self):
        return procs.memory(self.pids())

    def running(self):
        return self.pid is not None and procs.alive(self.pid)

    def stop(self):
        if self.pid is not None:
            procs.stopTree(self.pid, self.name, say=self.env.say)
            self.env.registry.forget(self.pid)
            self.pid = None

    def restart(self):
        self.stop()
        return self.start()


class Mailplat(Server):
    """
    C{twistd -n mailplat --config FILE}, as C{make run} does.
    """

    name = "mailplat"

    def __init__(self, env):
        Server.__init__(self, env)
        self.dir = env.path("mailplat")
        self.config = os.path.join(self.dir, "mailplat.toml")
        self.log = os.path.join(self.dir, "twistd.log")
        self.proc = None

    def writeConfig(self, relayFragment=""):
        os.makedirs(self.dir, exist_ok=True)
        values = dict(
            CERT=self.env.cert,
            KEY=self.env.key,
            PASSWD=self.env.passwd,
            MAIL=self.mailRoot,
            QUEUE=os.path.join(self.dir, "queue"),
            MAX_SIZE=self.env.maxSize,
            SMTP_PORT=self.env.ports["mailplat_smtp"],
            IMAPS_PORT=self.env.ports["mailplat_imaps"],
            POP3S_PORT=self.env.ports["mailplat_pop3s"],
        )
        text = fill("mailplat.toml.in", values)
        if relayFragment:
            merged = tomllib.loads(text)
            _merge(merged, tomllib.loads(relayFragment))
            text = "# bench/config/mailplat.toml.in + mailplat-relay.toml.in\n" + tomlDump(merged)
        with open(self.config, "w") as f:
            f.write(text)

    @property
    def mailRoot(self):
        return os.path.join(self.dir, "mail")

    def checkConfig(self, path):
        """
        @return: L{None} when C{mailplat config check} accepts C{path}, else
            its complaint.
        """
        r = procs.run([os.path.join(BIN, "mailplat"), "--config", path, "config", "check"],
                      timeout=60)
        if r.returncode == 0:
            return None
        lines = [l.strip(" -") for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        return "; ".join(lines[1:4] or lines[:3]) or f"exit status {r.returncode}"

    def start(self):
        t0 = time.monotonic()
        smtp = GreetingWatch(self.env.ports["mailplat_smtp"], False, b"220 ", t0)
        imap = GreetingWatch(self.env.ports["mailplat_imaps"], True, b"* OK", t0)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "mailplat",
             "--config", self.config],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir, start_new_session=True,
        )
        log.close()
        self.pid = self.proc.pid
        self.env.registry.add("mailplat (twistd)", self.pid)
        alive = lambda: self.proc.poll() is None
        times = {"smtp": smtp.result(alive), "imap": imap.result(alive)}
        pop = GreetingWatch(self.env.ports["mailplat_pop3s"], True, b"+OK", t0)
        pop.result(alive)
        for w in (smtp, imap, pop):
            if w.elapsed is None:
                why = "exited" if not alive() else (w.error or "no greeting")
                self.stop()
                raise ServerError(f"mailplat did not start ({why}):\n{_tail(self.log)}")
        return times

    def stop(self):
        Server.stop(self)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None

    def queueEmpty(self):
        active = os.path.join(self.dir, "queue", "active")
        try:
            return not any(n for n in os.listdir(active) if not n.startswith("."))
        except FileNotFoundError:
            return True

    def logTail(self):
        return _tail(self.log)


class Postfix(Server):
    """
    A private Postfix instance: C{postfix -c DIR start}.
    """

    name = "Postfix"

    def __init__(self, env):
        Server.__init__(self, env)
        self.dir = env.path("postfix")
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "maillog")

    def writeConfig(self, users):
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        values = dict(
            CONF=self.conf, QUEUE=self.queue, DATA=self.data, LOG=self.log,
            SCRATCH=self.env.scratch, SINK_PORT=self.env.ports["sink"],
            MAX_SIZE=self.env.maxSize, MAIL=self.env.peerMail,
            UID=self.env.mailUid, GID=self.env.mailGid,
        )
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(fill("postfix-main.cf.in", values))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(fill("postfix-master.cf.in", dict(SMTP_PORT=self.env.ports["postfix_smtp"])))
        with open(os.path.join(self.conf, "vmailbox"), "w") as f:
            for u in users:
                local, _, domain = u.partition("@")
                f.write(f"{u} {domain}/{local}/Maildir/\n")

    def _postfix(self, action, timeout=60):
        # Postfix reports errors on stderr only when it is a terminal
        # (otherwise to syslog, which this machine may not have): script(1)
        # gives it one.
        return procs.run(
            ["script", "-qec", f"postfix -c {self.conf} {action}", "/dev/null"],
            timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def start(self):
        t0 = time.monotonic()
        smtp = GreetingWatch(self.env.ports["postfix_smtp"], False, b"220 ", t0)
        r = self._postfix("start")
        pidFile = os.path.join(self.queue, "pid", "master.pid")
        try:
            with open(pidFile) as f:
                self.pid = int(f.read().strip())
            self.env.registry.add("Postfix master", self.pid)
        except (OSError, ValueError):
            self.pid = None
        if r.returncode != 0 or self.pid is None:
            smtp._cancel.set()
            self.stop()
            raise ServerError(
                f"postfix -c {self.conf} start failed: {r.stdout.strip()}\n{_tail(self.log)}")
        elapsed = smtp.result(self.running)
        if elapsed is None:
            self.stop()
            raise ServerError(f"Postfix did not greet: {smtp.error}\n{_tail(self.log)}")
        return {"smtp": elapsed}

    def queueEmpty(self):
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(self.queue, sub)):
                if files:
                    return False
        return True

    def version(self):
        r = procs.run(["postconf", "-c", self.conf, "-h", "mail_version"])
        return r.stdout.strip() or "?"

    def logTail(self):
        return _tail(self.log)


class Dovecot(Server):
    """
    A private Dovecot instance: C{dovecot -F -c FILE} (foreground, so its
    master is our child).
    """

    name = "Dovecot"

    def __init__(self, env):
        Server.__init__(self, env)
        self.dir = env.path("dovecot")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.proc = None

    def writeConfig(self):
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        values = dict(
            SCRATCH=self.dir, CERT=self.env.cert, KEY=self.env.key,
            PASSWD=self.env.passwd, UID=self.env.mailUid, GID=self.env.mailGid,
            MAIL=self.env.peerMail,
            IMAPS_PORT=self.env.ports["dovecot_imaps"],
            POP3S_PORT=self.env.ports["dovecot_pop3s"],
        )
        with open(self.conf, "w") as f:
            f.write(fill("dovecot.conf.in", values))

    def start(self):
        t0 = time.monotonic()
        imap = GreetingWatch(self.env.ports["dovecot_imaps"], True, b"* OK", t0)
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", self.conf], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        out.close()
        self.pid = self.proc.pid
        self.env.registry.add("Dovecot master", self.pid)
        alive = lambda: self.proc.poll() is None
        elapsed = imap.result(alive)
        pop = GreetingWatch(self.env.ports["dovecot_pop3s"], True, b"+OK", t0)
        pop.result(alive)
        if elapsed is None or pop.elapsed is None:
            why = imap.error or pop.error or "exited"
            self.stop()
            raise ServerError(
                f"Dovecot did not start ({why}):\n{_tail(self.log)}\n"
                f"{_tail(os.path.join(self.dir, 'stdout.log'))}")
        return {"imap": elapsed}

    def stop(self):
        Server.stop(self)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None

    def version(self):
        return procs.run(["dovecot", "--version"]).stdout.split(" ")[0].strip() or "?"

    def logTail(self):
        return _tail(self.log)


class Peer:
    """
    Postfix and Dovecot together: the pair a mailplat user would otherwise
    run (Postfix delivers into the Maildirs that Dovecot serves).
    """

    name = "Postfix+Dovecot"

    def __init__(self, postfix, dovecot):
        self.postfix = postfix
        self.dovecot = dovecot

    def roots(self):
        return self.postfix.roots() + self.dovecot.roots()

    def pids(self):
        return procs.tree(*self.roots())

    def memory(self):
        return procs.memory(self.pids())

    def start(self):
        times = self.postfix.start()
        times.update(self.dovecot.start())
        return times

    def stop(self):
        self.postfix.stop()
        self.dovecot.stop()

    def restart(self):
        self.stop()
        return self.start()


class Sink:
    """
    smtp-sink on a loopback port, counting the messages it was sent.
    """

    name = "smtp-sink"

    def __init__(self, env):
        self.env = env
        self.port = env.ports["sink"]
        self.proc = None
        self.count = 0
        self._lock = threading.Lock()

    def start(self):
        self.proc = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", f"{HOST}:{self.port}", "256"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.env.registry.add("smtp-sink", self.proc.pid)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                greeting(self.port, False)
                return
            except OSError:
                time.sleep(0.02)
        raise ServerError("smtp-sink did not start")

    def _read(self):
        buf = b""
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                return
            buf += data
            *done, buf = re.split(rb"[\r\n]", buf)
            for item in reversed(done):
                m = re.search(rb"mesg=(\d+)", item)
                if m:
                    with self._lock:
                        self.count = int(m.group(1))
                    break

    def messages(self):
        with self._lock:
            return self.count

    def stop(self):
        if self.proc is not None:
            procs.stopTree(self.proc.pid, self.name, say=self.env.say)
            self.env.registry.forget(self.proc.pid)
            self.proc.wait()
            self.proc = None
