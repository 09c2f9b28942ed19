"""
Processes: what the harness started (so that it can stop exactly those, by
PID), process trees, and memory read from /proc.
"""

import json
import os
import resource
import signal
import subprocess
import threading
import time

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def raiseFileLimit(want=65536):
    """
    Raise RLIMIT_NOFILE for this process, and so for every child it starts
    (mailplat's twistd, Postfix, Dovecot, the load generators): the idle tests
    hold 1,000 connections on each side.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(want, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            continue
    return soft


def _startTime(pid):
    """
    The start time of C{pid} in clock ticks since boot, or L{None}: with the
    PID it names one process for good (PIDs are reused, start times are not).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return int(data.rpartition(")")[2].split()[19])


def alive(pid, startTime=None):
    st = _startTime(pid)
    if st is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                return False
    except OSError:
        return False
    return startTime is None or st == startTime


def _parents():
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(name)] = int(fields[1])
    return parents


def tree(*roots):
    """
    C{roots} and all their descendants that are alive now.
    """
    parents = _parents()
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def memory(pids):
    """
    Memory of a set of processes, in KiB: C{(rss, pss)}.

    C{rss} is the sum of C{VmRSS} from /proc/PID/status: what C{ps} and
    C{top} show, and what the issue asks for.  For a multi-process server
    (Postfix, Dovecot) it counts pages shared between processes (libraries,
    copy-on-write heap) once per process, so it overstates their real use;
    C{pss} (the proportional set size from /proc/PID/smaps_rollup, a shared
    page split between its users) adds up to the memory they really occupy.
    For mailplat, one process, the two differ only by shared libraries.
    """
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        break
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return rss, pss


def rssOnly(pids):
    """
    The sum of VmRSS (KiB) of C{pids}, read cheaply from /proc/PID/statm.
    """
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
        except OSError:
            continue
    return total


class PeakSampler(threading.Thread):
    """
    Samples the summed RSS of the process trees under C{roots} every
    C{interval} seconds (new children included) and keeps the peak.
    """

    def __init__(self, roots, interval=0.01):
        threading.Thread.__init__(self, daemon=True)
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            # The tree is walked at every sample: Postfix and Dovecot start
            # short-lived processes (cleanup, virtual, imap) for the flow.
            self.peak = max(self.peak, rssOnly(tree(*self.roots())))
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        return self.peak


class Registry:
    """
    Every process the harness started, by PID and start time, also written to
    a file in the scratch directory: L{stopAll} stops exactly those (their
    whole trees), and a later run stops what an earlier one that was killed
    left behind.
    """

    def __init__(self, path, say=print):
        self.path = path
        self.say = say
        self.entries = {}  # pid -> (name, startTime)
        self._lock = threading.Lock()

    def add(self, name, pid):
        st = _startTime(pid)
        with self._lock:
            self.entries[pid] = (name, st)
            self._save()

    def forget(self, pid):
        with self._lock:
            self.entries.pop(pid, None)
            self._save()

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({str(p): list(v) for p, v in self.entries.items()}, f)
        os.replace(tmp, self.path)

    def reapStale(self):
        """
        Stop what a previous run recorded and left running.
        """
        try:
            with open(self.path) as f:
                stale = json.load(f)
        except (OSError, ValueError):
            return
        for pid, (name, st) in stale.items():
            pid = int(pid)
            if alive(pid, st):
                self.say(f"stopping {name} (PID {pid}) left by an earlier run")
                stopTree(pid, name, say=self.say)
        os.unlink(self.path)

    def stopAll(self):
        for pid, (name, st) in sorted(self.entries.items(), reverse=True):
            if alive(pid, st):
                stopTree(pid, name, say=self.say)
            self.forget(pid)


def stopTree(pid, name="process", sig=signal.SIGTERM, timeout=15.0, say=print):
    """
    Stop C{pid} and its descendants: C{sig} to the root (Postfix's and
    Dovecot's masters stop their children themselves), then SIGKILL to any
    process of the tree, by PID, still there after C{timeout} seconds.
    """
    members = tree(pid)
    starts = {p: _startTime(p) for p in members}
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        members |= tree(pid)
        for p in list(members):
            starts.setdefault(p, _startTime(p))
        left = [p for p in members if alive(p, starts.get(p))]
        if not left:
            return
        time.sleep(0.05)
    left = [p for p in members if alive(p, starts.get(p))]
    if left:
        say(f"{name}: {len(left)} process(es) still there after {timeout}s, SIGKILL")
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def run(cmd, timeout=None, **kw):
    """
    C{subprocess.run} with text output captured.
    """
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
