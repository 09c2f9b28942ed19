"""
Recipient resolution: which mailboxes and external addresses an envelope
recipient stands for.

Lookup order for C{local+ext@domain} (Postfix's, with
C{recipient_delimiter = "+"}):

 1. an alias for the full address;
 2. a user with the full address;
 3. an alias for C{local@domain} (the extension removed);
 4. a user C{local@domain};
 5. C{postmaster@} any local domain, and bare C{postmaster} (RFC 5321
    4.5.1): the configured postmaster;
 6. a catch-all or domain mapping C{@domain}.

Local parts are case-insensitive.  Alias targets are resolved again, up to
L{mailplat.aliases.MAX_DEPTH} levels; external targets are returned as they
are.
"""

import os
import threading
import time
from dataclasses import dataclass

from mailplat.aliases import MAX_DEPTH, AliasTable


#: How long (seconds) remembered resolutions are used after the files were
#: last found unchanged, and how many are kept.
MEMO_MAX_AGE = 3.0
MEMO_SIZE = 10000


def _fileStamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class UnknownRecipient(LookupError):
    """
    No mailbox, alias or catch-all matches.
    """


@dataclass(frozen=True)
class Resolution:
    """
    @ivar mailboxes: local user addresses to deliver to.
    @ivar external: addresses in other domains to relay to.
    """

    mailboxes: tuple
    external: tuple

    @property
    def all(self):
        return self.mailboxes + self.external


class RecipientResolver:
    """
    @ivar users: an L{mailplat.interfaces.IUserDirectory}.
    @ivar aliases: an L{mailplat.aliases.AliasTable}.
    @ivar isLocalDomain: C{f(domain) -> bool} for domains we accept mail for
        (mailbox domains and alias-only domains).
    """

    def __init__(self, users, aliases, isLocalDomain, postmaster, delimiter="+"):
        self.users = users
        self.aliases = aliases
        self.isLocalDomain = isLocalDomain
        self.postmaster = postmaster
        self.delimiter = delimiter
        # Recent resolutions, for RCPT without a thread hand-off (cached()):
        # valid while the files they came from are unchanged, which
        # checkFiles() (a watcher, every second) confirms.
        self._memo = {}
        self._stamps = None
        self._checked = None
        self._generation = 0
        self._lock = threading.Lock()

    def watchedFiles(self):
        """
        @return: the files resolutions depend on (the password file or user
            database, the aliases file), or L{None} when the user directory
            is not a file we can watch (then L{cached} never answers).
        """
        userFile = getattr(self.users, "path", None)
        if not isinstance(userFile, str):
            return None
        return tuple(p for p in (userFile, self.aliases.path) if p)

    def checkFiles(self, now=time.monotonic):
        """
        I{blocking} (C{stat}s the watched files).  Forget the remembered
        resolutions when a file changed, and note that they were checked:
        L{cached} answers only within L{MEMO_MAX_AGE} seconds of a check.
        """
        paths = self.watchedFiles()
        if paths is None:
            return
        stamps = tuple(_fileStamp(p) for p in paths)
        with self._lock:
            if stamps != self._stamps:
                self._memo = {}
                self._stamps = stamps
                self._generation += 1
            self._checked = now()

    def cached(self, address, now=time.monotonic):
        """
        Non-blocking: the L{Resolution} L{resolve} gave for C{address} a
        moment ago, if the files have not changed since (as of the last
        L{checkFiles}, at most L{MEMO_MAX_AGE} seconds ago); else L{None}.
        Unknown recipients are never remembered, so a user just added is
        found at once; a user just deleted may still be accepted for up to
        a second or two (local delivery then bounces with 5.1.1).
        """
        checked = self._checked
        if checked is None or now() - checked > MEMO_MAX_AGE:
            return None
        return self._memo.get(address.lower())

    def resolve(self, address):
        """
        I{blocking} (reads the user and alias files when they changed).

        @param address: an envelope recipient, C{local@domain} or
            C{postmaster}.
        @return: a L{Resolution}.
        @raise UnknownRecipient: nothing matches.
        """
        generation = self._generation
        mailboxes, external = [], []
        self._resolve(address.lower(), mailboxes, external, 0, set())
        if not mailboxes and not external:
            raise UnknownRecipient(address)
        resolution = Resolution(
            tuple(dict.fromkeys(mailboxes)), tuple(dict.fromkeys(external))
        )
        if self._checked is not None:
            with self._lock:
                if generation != self._generation:
                    # The files changed while we read them: do not remember
                    # what may be the old answer.
                    return resolution
                if len(self._memo) >= MEMO_SIZE:
                    self._memo = {}
                self._memo[address.lower()] = resolution
        return resolution

    def _resolve(self, address, mailboxes, external, depth, seen):
        if depth > MAX_DEPTH or address in seen:
            return
        seen = seen | {address}
        if "@" not in address:
            if address == "postmaster" and self.postmaster:
                return self._resolve(self.postmaster, mailboxes, external, depth + 1, seen)
            raise UnknownRecipient(address)
        local, _, domain = address.rpartition("@")
        if not self.isLocalDomain(domain):
            external.append(address)
            return
        targets = self._lookup(local, domain)
        if targets is None:
            raise UnknownRecipient(address)
        for target in targets:
            if target == address:
                if self.users.exists(address):
                    mailboxes.append(address)
            else:
                self._resolve(target, mailboxes, external, depth + 1, seen)

    def _lookup(self, local, domain):
        """
        @return: the targets for C{local@domain}: C{(address,)} itself for a
            user, the alias targets, or L{None}.
        """
        aliases = self.aliases.entries()
        candidates = [local]
        if self.delimiter and self.delimiter in local:
            base = local.split(self.delimiter, 1)[0]
            if base:
                candidates.append(base)
        for candidate in candidates:
            full = f"{candidate}@{domain}"
            if full in aliases:
                return aliases[full]
            if self.users.exists(full):
                return (full,)
        if local == "postmaster" and self.postmaster:
            return (self.postmaster,)
        mapping = aliases.get("@" + domain)
        if mapping is not None:
            if len(mapping) == 1 and mapping[0].startswith("@"):
                return (f"{local}{mapping[0]}",)
            return mapping
        return None


def resolverFor(config, users):
    """
    The L{RecipientResolver} a L{mailplat.config.Config} describes.
    """
    return RecipientResolver(
        users,
        AliasTable(config.aliasesFile),
        config.isLocalDomain,
        config.postmaster,
        config.recipientDelimiter,
    )
