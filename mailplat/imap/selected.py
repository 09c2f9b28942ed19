"""
A selected folder as one IMAP session sees it.

Message sequence numbers are per session (RFC 3501 2.3.1.2): they change only
when the session is told about an expunge.  So each session keeps its own
view -- just the UIDs in order (an C{array} of 4-byte numbers), the UIDs that
are C{\\Recent} for it and the highest modification sequence it has been told
about -- and moves it forward only in L{SelectedFolder.update}, at the points
where untagged EXISTS/EXPUNGE/FETCH responses are allowed (RFC 3501 7.4.1).
Flags are not kept per session: they are read from the index when needed, so
an idle session holds no message data at all.
"""

import bisect
from array import array
from dataclasses import dataclass, field


class InvalidSequence(ValueError):
    """
    A message sequence number that is not in the session's view (RFC 3501 9,
    C{seq-number}).
    """


@dataclass
class Changes:
    """
    What an update found, for untagged responses.

    @ivar expunged: sequence numbers of removed messages, highest first, so
        each is right when the client applies them in order (RFC 3501 7.4.1).
    @ivar flags: C{[(seq, info)]} of messages whose flags changed, numbered
        after the expunges.
    @ivar exists: the new message count when messages arrived, else L{None}.
    @ivar recent: the new C{\\Recent} count when C{exists} is set.
    @ivar keywords: the keywords in use, when new ones appeared.
    """

    expunged: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    exists: int = None
    recent: int = None
    keywords: list = None


class SelectedFolder:
    """
    One session's view of a selected folder.

    @ivar folder: the L{mailplat.interfaces.IMailFolder}.
    @ivar uids: the view: sequence number C{n} is C{uids[n - 1]}.
    @ivar recent: the UIDs that are C{\\Recent} in this session.
    @ivar modseq: the highest modification sequence reported so far.
    @ivar keywords: the keywords announced in FLAGS.
    """

    def __init__(self, folder, writeable, row, uids, recent, keywords):
        self.folder = folder
        self.writeable = writeable
        self.uids = array("I", uids)
        self.recent = set(recent)
        self.modseq = row.highestModseq
        self.uidValidity = row.uidValidity
        self.uidNext = row.uidNext
        self.keywords = list(keywords)
        self._reported = {}

    def __len__(self):
        return len(self.uids)

    @property
    def lastUID(self):
        return self.uids[-1] if self.uids else 0

    def uidOf(self, seq):
        return self.uids[seq - 1]

    def seqOf(self, uid):
        """
        @return: the sequence number of C{uid}, or L{None}.
        """
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def resolve(self, sequenceSet, uid):
        """
        Resolve a C{sequence-set} (RFC 3501 9) against the view.

        With C{uid}, C{*} is the highest UID and UIDs not in the view are
        skipped (RFC 3501 6.4.8).  Otherwise C{*} is the highest sequence
        number and a number past it is an error.

        @return: sorted C{(seq, uid)} pairs.
        @raise InvalidSequence: a sequence number is not in the view.
        """
        uids = self.uids
        count = len(uids)
        seqs = set()
        if uid:
            for low, high in sequenceSet.resolve(self.lastUID):
                start = bisect.bisect_left(uids, low)
                end = bisect.bisect_right(uids, high)
                seqs.update(range(start + 1, end + 1))
        else:
            for (low, high), raw in zip(sequenceSet.resolve(count), sequenceSet.ranges):
                if count == 0 and None in raw:
                    continue
                if low < 1 or high > count:
                    raise InvalidSequence(f"{low}:{high}")
                seqs.update(range(low, high + 1))
        return [(seq, uids[seq - 1]) for seq in sorted(seqs)]

    def reported(self, infos):
        """
        Note flags this session has just been sent (in a STORE or FETCH
        response), so that L{update} does not send them again.
        """
        for info in infos:
            self._reported[info.uid] = info.modseq

    def isRecent(self, uid):
        return uid in self.recent

    def unchanged(self, row):
        """
        L{update} for a folder whose highest modification sequence is still
        L{modseq}: nothing to report.
        """
        self.uidNext = max(self.uidNext, row.uidNext)
        self._reported = {}

    def update(self, row, uids, arrived, changed, claimed, allowExpunge=True):
        """
        Catch the view up with the folder (the result of
        L{mailplat.storage.maildir.MaildirFolder.changes}).

        @param row: the folder's L{mailplat.storage.index.FolderRow} now.
        @param uids: every UID in the folder now, sorted, when some of the
            view's messages are gone; else L{None}.
        @param arrived: the UIDs above the view's last one.
        @param changed: the L{mailplat.storage.maildir.MessageInfo}s whose
            modification sequence is above L{modseq}.
        @param claimed: UIDs this session took as C{\\Recent}.
        @param allowExpunge: whether EXPUNGE responses may be sent now (not
            during FETCH, STORE or SEARCH: RFC 3501 7.4.1).  If expunges are
            pending and may not be sent, nothing is applied.
        @return: the L{Changes}, or L{None} when nothing can be applied yet.
        """
        # Claimed messages are this session's whatever happens next.
        self.recent.update(claimed)
        view = self.uids
        last = self.lastUID
        expunged = []
        if uids is not None:
            present = set(uids)
            expunged = [seq for seq, uid in enumerate(view, 1) if uid not in present]
            if expunged and not allowExpunge:
                return None
            if expunged:
                view = array("I", (uid for uid in view if uid in present))
                self.recent.intersection_update(present)
        changes = Changes(expunged=expunged[::-1])
        if arrived:
            view.extend(arrived)
            if not self.writeable:
                self.recent.update(i.uid for i in changed if i.recent and i.uid > last)
            changes.exists = len(view)
            changes.recent = len(self.recent)
        self.uids = view
        keywords = set(self.keywords)
        for info in changed:
            keywords.update(f for f in info.flags if not f.startswith("\\"))
            if info.uid > last or self._reported.get(info.uid, 0) >= info.modseq:
                continue
            seq = self.seqOf(info.uid)
            if seq is not None:
                changes.flags.append((seq, info))
        if len(keywords) != len(self.keywords):
            self.keywords = sorted(keywords)
            changes.keywords = self.keywords
        self.modseq = max(self.modseq, row.highestModseq)
        self.uidNext = max(self.uidNext, row.uidNext)
        self._reported = {}
        return changes
