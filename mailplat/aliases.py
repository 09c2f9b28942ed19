"""
The aliases file, in the spirit of aliases(5) and Postfix's virtual(5):

    # comment
    sales@example.org:     alice@example.org, bob@partner.example
    staff@example.org:     sales@example.org, carol@example.org
    @alias.example:        @example.org         # a whole domain onto another
    @example.org:          catchall@example.org # catch-all for the domain

The key is an address, or C{@domain} for a catch-all (or, with a C{@domain}
target, a domain mapping that keeps the local part).  Targets may be local or
external addresses and other aliases; loops are reported when the file is
loaded.  Lines that start with white space continue the previous line.
"""

import os
import threading

from mailplat._fsutil import writeFileAtomically

MAX_DEPTH = 20


class AliasFileError(Exception):
    """
    The file cannot be parsed.  C{problems} is a list of C{(line, message)}.
    """

    def __init__(self, path, problems):
        self.path = path
        self.problems = problems
        Exception.__init__(self, "; ".join(f"{path}:{n}: {m}" for n, m in problems))


def _isAddressOrDomain(text):
    local, at, domain = text.rpartition("@")
    return bool(at) and bool(domain) and "." in domain and not any(
        c.isspace() or c in ",:<>" for c in text
    )


def parseAliases(text, path="<aliases>"):
    """
    @return: a L{dict} mapping a lower-cased key to a tuple of lower-cased
        targets.
    @raise AliasFileError: on any bad line or loop.
    """
    entries = {}
    lines = {}
    problems = []
    logical = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if line[0] in " \t" and logical:
            logical[-1][1] += " " + line.strip()
        else:
            logical.append([n, line.strip()])
    for n, line in logical:
        key, sep, rest = line.partition(":")
        key = key.strip().lower()
        targets = tuple(t.strip().lower() for t in rest.split(",") if t.strip())
        if not sep or not _isAddressOrDomain(key):
            problems.append((n, f"expected address: target, target..., got {line!r}"))
            continue
        if not targets:
            problems.append((n, f"{key}: no targets"))
            continue
        bad = [t for t in targets if not _isAddressOrDomain(t)]
        if bad:
            problems.append((n, f"{key}: bad target {bad[0]!r}"))
            continue
        if key in entries:
            problems.append((n, f"{key}: duplicate entry"))
            continue
        if key.startswith("@") and any(t.startswith("@") for t in targets) and len(targets) > 1:
            problems.append((n, f"{key}: a domain mapping has exactly one @domain target"))
            continue
        entries[key] = targets
        lines[key] = n
    # Loops: follow address -> address edges (domain mappings are followed
    # at resolution time with a depth limit).
    for start in entries:
        if start.startswith("@"):
            continue
        stack = [(start, (start,))]
        while stack:
            node, path_ = stack.pop()
            for target in entries.get(node, ()):
                if target == node:
                    continue  # "user: user, copy": deliver to the mailbox too
                if target in path_:
                    problems.append(
                        (lines[start], "alias loop: " + " -> ".join(path_ + (target,)))
                    )
                    stack = []
                    break
                if target in entries and len(path_) < MAX_DEPTH:
                    stack.append((target, path_ + (target,)))
    if problems:
        raise AliasFileError(path, sorted(set(problems)))
    return entries


class AliasTable:
    """
    The aliases file, re-read when it changes.  Thread-safe.
    """

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._entries = {}

    def entries(self):
        """
        @return: the current mapping (see L{parseAliases}); empty when there is
            no file.
        @raise AliasFileError: the file became invalid.
        """
        if self.path is None:
            return {}
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._stamp, self._entries = None, {}
                return {}
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as f:
                    self._entries = parseAliases(f.read(), self.path)
                self._stamp = stamp
            return self._entries

    def _rewrite(self, change):
        """
        Apply C{change(entries)} to a copy of the entries and write the file
        back atomically, after checking the result as a load would.
        """
        if self.path is None:
            raise AliasFileError("<none>", [(0, "set domains.aliases_file to manage aliases")])
        with self._lock:
            self._stamp = None
        entries = dict(self.entries())
        change(entries)
        text = "".join(
            f"{key}: {', '.join(targets)}\n" for key, targets in sorted(entries.items())
        )
        parseAliases(text, self.path)
        with self._lock:
            writeFileAtomically(self.path, text.encode("utf-8"), mode=0o644)
            self._stamp = None

    def set(self, key, targets):
        """
        I{blocking}.  Add or replace the alias C{key} (an address or
        C{@domain}).  Comments in the file are not kept.

        @raise AliasFileError: the result would be invalid (a loop, a bad
            address); the file is left as it was.
        """
        key = key.strip().lower()
        targets = tuple(t.strip().lower() for t in targets)

        def change(entries):
            entries[key] = targets

        self._rewrite(change)

    def delete(self, key):
        """
        I{blocking}.  Remove the alias C{key}.

        @raise KeyError: no such alias.
        """
        key = key.strip().lower()

        def change(entries):
            del entries[key]

        self._rewrite(change)
