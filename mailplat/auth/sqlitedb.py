"""
A user table in SQLite, with the same hash formats as the password file:

    CREATE TABLE users (address TEXT PRIMARY KEY, password TEXT NOT NULL)

The same methods as L{mailplat.auth.userdb.UserDatabase}, so C{mailplat user}
and the checker use either.  A connection is opened per call (the calls come
from different threads), and writes are transactions.
"""

import os
import sqlite3

from mailplat.auth.passwords import isKnownHash
from mailplat.auth.userdb import UserEntry, UserFileError, normalizeAddress

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users "
    "(address TEXT PRIMARY KEY, password TEXT NOT NULL)"
)


class SQLiteUserDatabase:
    """
    @ivar path: the database file (created with mode 0600 on first write).
    """

    def __init__(self, path):
        self.path = path

    def _connect(self, create=False):
        if not create and not os.path.exists(self.path):
            return None
        if create and not os.path.exists(self.path):
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(_SCHEMA)
        return conn

    def users(self):
        """
        @return: a L{dict} of address to L{UserEntry}.
        @raise UserFileError: a row holds a hash in an unknown scheme.
        """
        conn = self._connect()
        if conn is None:
            return {}
        with conn:
            rows = conn.execute("SELECT address, password FROM users").fetchall()
        conn.close()
        result, problems = {}, []
        for n, (address, stored) in enumerate(rows, 1):
            if not isKnownHash(stored):
                problems.append((n, f"{address}: unsupported password scheme"))
                continue
            result[normalizeAddress(address)] = UserEntry(normalizeAddress(address), stored, n)
        if problems:
            raise UserFileError(self.path, problems)
        return result

    def get(self, address):
        conn = self._connect()
        if conn is None:
            return None
        with conn:
            row = conn.execute(
                "SELECT address, password FROM users WHERE address = ?",
                (normalizeAddress(address),),
            ).fetchone()
        conn.close()
        if row is None or not isKnownHash(row[1]):
            return None
        return UserEntry(row[0], row[1])

    def exists(self, address):
        return self.get(address) is not None

    def setPassword(self, address, passwordHash, create=True, replace=True):
        address = normalizeAddress(address)
        conn = self._connect(create=True)
        try:
            with conn:
                exists = conn.execute(
                    "SELECT 1 FROM users WHERE address = ?", (address,)
                ).fetchone()
                if exists and not replace:
                    raise ValueError(f"{address} already exists")
                if not exists and not create:
                    raise KeyError(address)
                conn.execute(
                    "INSERT OR REPLACE INTO users (address, password) VALUES (?, ?)",
                    (address, passwordHash),
                )
        finally:
            conn.close()

    def delete(self, address):
        conn = self._connect()
        if conn is None:
            raise KeyError(address)
        try:
            with conn:
                cur = conn.execute(
                    "DELETE FROM users WHERE address = ?", (normalizeAddress(address),)
                )
                if cur.rowcount == 0:
                    raise KeyError(address)
        finally:
            conn.close()
