"""
An in-memory picture of one folder's index, shared by every session of the
process, so that the questions asked on every IMAP command and every POP3
login -- "did anything change?", "what are the flags of 1:*?", "what is in
the maildrop?" -- are answered without a thread hop, a directory scan or a
SQLite query.

A L{FolderState} is immutable once built (apart from L{FolderState.checkedAt},
a time stamp), so any thread may read one without a lock: a writer builds a
new one and swaps the folder's reference.  Per message it keeps a UID (4
bytes), a modification sequence, a size and an INTERNALDATE (8 bytes each),
an index into a small table of distinct flag sets (2 bytes) and the file
name; L{mailplat.storage.maildir.MessageInfo} objects are made only for the
messages a caller asks about.

L{mailplat.storage.maildir.MaildirFolder} keeps its state current: it is
built from the index under the user's lock, brought up to date from the
index's modification sequences after a change, and marked stale by every
change made through the store (see C{MaildirFolder._invalidate}).
"""

import bisect
import itertools
import os
from array import array
from collections.abc import Sequence

# Generations: a folder's state is current while its generation is the
# folder's.  itertools.count's next() is atomic in CPython, so writers in
# different threads never hand out the same value.
_generations = itertools.count(1)


def nextGeneration():
    return next(_generations)


class FolderState(Sequence):
    """
    A folder's messages as the index had them at one moment, ordered by UID;
    also a read-only sequence of L{MessageInfo} (made on demand), which is
    what a POP3 session keeps as its maildrop snapshot.

    @ivar row: the folder's L{mailplat.storage.index.FolderRow}.
    @ivar path: the folder's directory when the state was made.
    @ivar uids: C{array('I')} of UIDs, ascending.
    @ivar recent: the L{frozenset} of UIDs still C{\\Recent}.
    @ivar generation: see L{nextGeneration}.
    @ivar checkedAt: when (C{time.monotonic}) the Maildir directories were
        last found to match the index; 0 when they must be looked at again.
    """

    __slots__ = (
        "row", "path", "uids", "modseqs", "sizes", "dates", "flagIds", "flagSets",
        "names", "recent", "generation", "checkedAt", "_prefix", "_makeInfo",
    )

    def __init__(self, row, path, makeInfo, generation, uids, modseqs, sizes, dates,
                 flagIds, flagSets, names, recent):
        self.row = row
        self.path = path
        self._makeInfo = makeInfo
        self.generation = generation
        self.uids = uids
        self.modseqs = modseqs
        self.sizes = sizes
        self.dates = dates
        self.flagIds = flagIds
        self.flagSets = flagSets
        self.names = names
        self.recent = recent
        self.checkedAt = 0.0
        self._prefix = os.path.join(path, "")

    @classmethod
    def fromRows(cls, row, path, rows, makeInfo, generation):
        """
        Build a state from the folder's L{mailplat.storage.index.MessageRow}s
        (ordered by UID).
        """
        flagSets, ids = [], {}
        flagIds = array("H")
        for r in rows:
            i = ids.get(r.flags)
            if i is None:
                i = ids[r.flags] = len(flagSets)
                flagSets.append(r.flags)
            flagIds.append(i)
        return cls(
            row, path, makeInfo, generation,
            array("I", [r.uid for r in rows]),
            array("Q", [r.modseq for r in rows]),
            array("Q", [r.size for r in rows]),
            array("d", [r.internalDate for r in rows]),
            flagIds,
            tuple(flagSets),
            [r.name for r in rows],
            frozenset(r.uid for r in rows if r.recent),
        )

    def updated(self, row, rows, generation):
        """
        A new state: this one with C{rows} (every message whose modification
        sequence is above this state's, from the index) applied, for a folder
        whose only changes since are new messages and flag changes.

        @return: the new L{FolderState}, or L{None} when C{rows} cannot be
            applied (some message is gone, or the count does not add up):
            build it afresh then.
        """
        if not rows:
            # Nothing to apply: share the (never modified) arrays.
            return FolderState(
                row, self.path, self._makeInfo, generation, self.uids, self.modseqs,
                self.sizes, self.dates, self.flagIds, self.flagSets, self.names,
                self.recent,
            )
        uids = array("I", self.uids)
        modseqs = array("Q", self.modseqs)
        sizes = array("Q", self.sizes)
        dates = array("d", self.dates)
        flagIds = array("H", self.flagIds)
        names = list(self.names)
        flagSets = list(self.flagSets)
        ids = {fs: i for i, fs in enumerate(flagSets)}
        recent = set(self.recent)
        last = uids[-1] if uids else 0
        for r in rows:
            f = ids.get(r.flags)
            if f is None:
                if len(flagSets) >= 0xFFFF:
                    return None
                f = ids[r.flags] = len(flagSets)
                flagSets.append(r.flags)
            if r.uid > last:
                uids.append(r.uid)
                modseqs.append(r.modseq)
                sizes.append(r.size)
                dates.append(r.internalDate)
                flagIds.append(f)
                names.append(r.name)
                last = r.uid
            else:
                i = bisect.bisect_left(uids, r.uid)
                if i == len(uids) or uids[i] != r.uid:
                    # A message below the last UID we never saw: not a
                    # change we know how to apply.
                    return None
                modseqs[i] = r.modseq
                flagIds[i] = f
                names[i] = r.name
            if r.recent:
                recent.add(r.uid)
            else:
                recent.discard(r.uid)
        return FolderState(
            row, self.path, self._makeInfo, generation, uids, modseqs, sizes, dates,
            flagIds, tuple(flagSets), names, frozenset(recent),
        )

    def withNames(self, renames, unrecent, generation):
        """
        A new state with some files renamed and some messages no longer
        C{\\Recent} (no modification sequence changes: RFC 3501 2.3.2's
        C{\\Recent} is not a flag change).

        @param renames: C{(uid, name)} pairs.
        @param unrecent: UIDs that are no longer recent.
        """
        names = list(self.names)
        for uid, name in renames:
            i = self.position(uid)
            if i is not None:
                names[i] = name
        state = FolderState(
            self.row, self.path, self._makeInfo, generation, self.uids, self.modseqs,
            self.sizes, self.dates, self.flagIds, self.flagSets, names,
            self.recent - frozenset(unrecent),
        )
        # Our own renames are in it: the directories were as checked then.
        state.checkedAt = self.checkedAt
        return state

    # -- Sequence of MessageInfo

    def __len__(self):
        return len(self.uids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.info(j) for j in range(*i.indices(len(self.uids)))]
        if i < 0:
            i += len(self.uids)
        if not 0 <= i < len(self.uids):
            raise IndexError(i)
        return self.info(i)

    def __iter__(self):
        for i in range(len(self.uids)):
            yield self.info(i)

    # -- queries

    def info(self, i):
        """
        @return: the L{MessageInfo} of the message at position C{i}.
        """
        uid = self.uids[i]
        name = self.names[i]
        # The key is the file name (after "new/" or "cur/") before ":2,".
        return self._makeInfo(
            uid, name[4:].partition(":2,")[0], self._prefix + name,
            self.flagSets[self.flagIds[i]], self.sizes[i], uid in self.recent,
            self.dates[i], self.modseqs[i],
        )

    def flagsAt(self, i):
        return self.flagSets[self.flagIds[i]]

    def position(self, uid):
        """
        @return: the position of C{uid}, or L{None}.
        """
        uids = self.uids
        i = bisect.bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            return i
        return None

    def infos(self, uids):
        """
        @return: the L{MessageInfo}s of those of C{uids} in the folder, by
            UID (as L{MaildirFolder.messages}).
        """
        every = self.uids
        count = len(every)
        found = []
        for uid in sorted(set(uids)):
            i = bisect.bisect_left(every, uid)
            if i < count and every[i] == uid:
                found.append(self.info(i))
        return found

    def totalSize(self):
        return sum(self.sizes)

    def firstUnseen(self):
        """
        @return: the UID of the first message without C{\\Seen}, or L{None}.
        """
        unseen = {i for i, fs in enumerate(self.flagSets) if "\\Seen" not in fs}
        for i, f in enumerate(self.flagIds):
            if f in unseen:
                return self.uids[i]
        return None

    def unseenCount(self):
        unseen = {i for i, fs in enumerate(self.flagSets) if "\\Seen" not in fs}
        if not unseen:
            return 0
        return sum(1 for f in self.flagIds if f in unseen)

    def keywords(self):
        """
        @return: the keywords set on some message, sorted.
        """
        used = set(self.flagIds)
        return sorted({
            f for i in used for f in self.flagSets[i] if not f.startswith("\\")
        })

    def changes(self, sinceModseq, lastUID, count):
        """
        L{MaildirFolder.changes} for a session, from this state.

        @return: C{(row, uids, arrived, changed, claimed)} with nothing
            claimed.
        """
        row = self.row
        if row.highestModseq == sinceModseq:
            return row, None, [], [], frozenset()
        uids = self.uids
        upTo = bisect.bisect_right(uids, lastUID)
        arrived = uids[upTo:].tolist()
        every = None if upTo == count else uids.tolist()
        changed = [
            self.info(i) for i, m in enumerate(self.modseqs) if m > sinceModseq
        ]
        return row, every, arrived, changed, frozenset()
