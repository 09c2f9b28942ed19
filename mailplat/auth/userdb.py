"""
The password file: one user a line, C{address:{SCHEME}hash}, Dovecot
passwd-file compatible in its first two fields.

Lines starting with C{#} and blank lines are ignored.  The file is written
atomically (temporary file, fsync, rename) with mode 0600, and re-read by a
running server when its modification time changes, so C{mailplat user add}
takes effect without a restart.
"""

import os
import threading
from dataclasses import dataclass

from mailplat.auth.passwords import isKnownHash


class UserFileError(Exception):
    """
    The password file cannot be read or parsed.  C{problems} is a list of
    C{(lineNumber, message)}.
    """

    def __init__(self, path, problems):
        self.path = path
        self.problems = problems
        Exception.__init__(
            self, "; ".join(f"{path}:{n}: {msg}" for n, msg in problems)
        )


@dataclass(frozen=True)
class UserEntry:
    address: str
    passwordHash: str
    line: int = 0

    @property
    def domain(self):
        return self.address.rpartition("@")[2]


def normalizeAddress(address):
    """
    The canonical form of a user address: the domain is lower-cased, and so is
    the local part (mailplat treats local parts case-insensitively, as Postfix
    and Dovecot do by default).
    """
    return address.strip().lower()


def parseUserFile(path):
    """
    Parse the password file at C{path}.

    @return: a L{dict} of normalized address to L{UserEntry}.
    @raise UserFileError: listing every bad line.
    @raise OSError: when the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    users = {}
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        address, sep, rest = line.partition(":")
        passwordHash = rest.split(":", 1)[0]
        address = normalizeAddress(address)
        local, at, domain = address.rpartition("@")
        if not sep or not at or not local or not domain:
            problems.append((n, "expected address:{SCHEME}hash"))
            continue
        if not isKnownHash(passwordHash):
            problems.append((n, f"{address}: unsupported password scheme"))
            continue
        if address in users:
            problems.append((n, f"{address}: duplicate entry"))
            continue
        users[address] = UserEntry(address, passwordHash, n)
    if problems:
        raise UserFileError(path, problems)
    return users


def writeUserFile(path, users):
    """
    Atomically replace the password file with C{users} (an iterable of
    L{UserEntry}), mode 0600.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# mailplat password file: address:{SCHEME}hash\n")
            for entry in sorted(users, key=lambda e: e.address):
                f.write(f"{entry.address}:{entry.passwordHash}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class UserDatabase:
    """
    The users of one password file, reloaded when the file changes.

    Thread-safe: lookups happen in the threads that verify passwords.
    """

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._users = {}

    def _reload(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._users = parseUserFile(self.path)
            self._stamp = stamp

    def users(self):
        """
        @return: a L{dict} of address to L{UserEntry}.
        """
        with self._lock:
            self._reload()
            return dict(self._users)

    def get(self, address):
        """
        @return: the L{UserEntry} for C{address}, or L{None}.
        """
        with self._lock:
            self._reload()
            return self._users.get(normalizeAddress(address))

    def exists(self, address):
        return self.get(address) is not None

    def setPassword(self, address, passwordHash, create=True, replace=True):
        """
        Add or change a user.

        @raise KeyError: the user does not exist and C{create} is false.
        @raise ValueError: the user exists and C{replace} is false.
        """
        address = normalizeAddress(address)
        with self._lock:
            self._reload()
            users = dict(self._users)
            if address in users and not replace:
                raise ValueError(f"{address} already exists")
            if address not in users and not create:
                raise KeyError(address)
            users[address] = UserEntry(address, passwordHash)
            writeUserFile(self.path, users.values())
            self._stamp = None

    def delete(self, address):
        """
        @raise KeyError: no such user.
        """
        address = normalizeAddress(address)
        with self._lock:
            self._reload()
            users = dict(self._users)
            del users[address]
            writeUserFile(self.path, users.values())
            self._stamp = None
