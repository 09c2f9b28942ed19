"""
A selected folder as one IMAP session sees it.

Message sequence numbers are per session (RFC 3501 2.3.1.2): they only change
when this session is told about an expunge, so each session keeps its own
view of the folder, a list of L{MaildirMessage} in UID order, and moves it
forward only in L{FolderMailbox.refresh}, at points where the protocol allows
untagged EXISTS/EXPUNGE responses (RFC 3501 7.4.1, 5.2).

Every folder call is blocking and runs through C{runBlocking}; the view itself
is only touched on the reactor thread.
"""

import bisect
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.mail import imap4
from twisted.python import failure
from zope.interface import implementer

from mailplat.imap.message import SYSTEM_FLAGS_ORDER, MaildirMessage
from mailplat.interfaces import MessageGone

DELETED = "\\Deleted"
SEEN = "\\Seen"
_CANONICAL_FLAGS = {f.lower(): f for f in SYSTEM_FLAGS_ORDER}


class InvalidMessageNumber(ValueError):
    """
    A message sequence number that is not in the session's view (RFC 3501 9,
    C{seq-number}).
    """


@dataclass
class Changes:
    """
    What a refresh found, for untagged responses.

    @ivar expunged: sequence numbers of removed messages, highest first, so
        each is right when the client applies them in order (RFC 3501 7.4.1).
    @ivar flags: C{{seq: [flag, ...]}} of messages whose flags changed,
        numbered after the expunges.
    @ivar exists: the new message count when it grew, else L{None}.
    @ivar recent: the new C{\\Recent} count when C{exists} is set.
    """

    expunged: list = field(default_factory=list)
    flags: dict = field(default_factory=dict)
    exists: int = None
    recent: int = None


def canonicalFlags(flags):
    """
    Map client flag names to the system flags the store keeps (flags are
    case-insensitive, RFC 3501 2.3.2); keywords and C{\\Recent} are dropped,
    since PERMANENTFLAGS does not offer them.

    @param flags: L{str} or L{bytes} flag names.
    @rtype: L{frozenset} of L{str}
    """
    result = set()
    for flag in flags:
        if isinstance(flag, bytes):
            flag = flag.decode("ascii", "replace")
        canonical = _CANONICAL_FLAGS.get(flag.lower())
        if canonical is not None:
            result.add(canonical)
    return frozenset(result)


def _snapshotAndClaim(folder, claim):
    """
    I{blocking}: snapshot C{folder}; with C{claim}, take the recent messages
    for this session (L{MaildirFolder.markSeenByClient}) so that no other
    read-write session reports them as C{\\Recent} again.

    @return: C{(infos, claimedUIDs)}
    """
    infos = folder.snapshot()
    claimed = frozenset()
    if claim:
        fresh = [info for info in infos if info.recent]
        if fresh:
            folder.markSeenByClient(fresh)
            claimed = frozenset(info.uid for info in fresh)
            infos = folder.snapshot()
    return infos, claimed


@implementer(imap4.IMailbox, imap4.ICloseableMailbox)
class FolderMailbox:
    """
    One session's view of a selected folder (an L{imap4.IMailbox}).

    @ivar folder: the L{mailplat.interfaces.IMailFolder}.
    @ivar messages: the view, a L{list} of L{MaildirMessage}; sequence number
        C{n} is C{messages[n - 1]}.
    """

    def __init__(
        self, folder, runBlocking, writeable, infos, recentUIDs, uidValidity, uidNext
    ):
        self.folder = folder
        self.runBlocking = runBlocking
        self.writeable = writeable
        self.messages = [MaildirMessage(i, i.uid in recentUIDs) for i in infos]
        self.uidValidity = uidValidity
        self.uidNext = max(uidNext, self._lastUID() + 1)
        self._listeners = []
        self._folderListener = None

    @classmethod
    def open(cls, folder, runBlocking, writeable):
        """
        Build the view of C{folder}.  A read-write open claims the recent
        messages (RFC 3501 2.3.2, C{\\Recent}).

        @return: a L{Deferred} firing with a L{FolderMailbox}.
        """

        def load():
            infos, claimed = _snapshotAndClaim(folder, writeable)
            if writeable:
                recent = claimed | {i.uid for i in infos if i.recent}
            else:
                recent = {i.uid for i in infos if i.recent}
            return infos, recent, folder.uidValidity, folder.uidNext

        d = runBlocking(load)
        d.addCallback(lambda r: cls(folder, runBlocking, writeable, *r))
        return d

    def _lastUID(self):
        return self.messages[-1].info.uid if self.messages else 0

    # -- store notifications

    def watch(self, callback):
        """
        Call C{callback()}, in whatever thread changed the folder, after each
        change by anyone (delivery, another session, POP3).
        """
        self.unwatch()
        self._folderListener = lambda: callback()
        self.folder.addListener(self._folderListener)

    def unwatch(self):
        if self._folderListener is not None:
            self.folder.removeListener(self._folderListener)
            self._folderListener = None

    # -- the view

    def sequenceNumbers(self, messages, uid):
        """
        Resolve a C{sequence-set} (RFC 3501 9) against the view.

        With C{uid}, C{*} is the highest UID and UIDs not in the view are
        skipped (RFC 3501 6.4.8).  Otherwise C{*} is the highest sequence
        number and a number past it is an error.

        @param messages: a L{imap4.MessageSet}.
        @return: sorted sequence numbers.
        @raise InvalidMessageNumber: a sequence number is not in the view.
        """
        count = len(self.messages)
        result = set()
        if uid:
            uids = [m.info.uid for m in self.messages]
            last = uids[-1] if uids else 0
            for low, high in messages.ranges:
                low = last if low is None else low
                high = last if high is None else high
                low, high = min(low, high), max(low, high)
                start = bisect.bisect_left(uids, low)
                end = bisect.bisect_right(uids, high)
                result.update(range(start + 1, end + 1))
        else:
            for low, high in messages.ranges:
                if count == 0 and None in (low, high):
                    continue
                low = count if low is None else low
                high = count if high is None else high
                low, high = min(low, high), max(low, high)
                if low < 1 or high > count:
                    raise InvalidMessageNumber(f"{low}:{high}")
                result.update(range(low, high + 1))
        return sorted(result)

    def firstUnseen(self):
        """
        @return: the sequence number of the first message without C{\\Seen},
            or L{None} (RFC 3501 7.1, C{UNSEEN}).
        """
        for seq, msg in enumerate(self.messages, 1):
            if SEEN not in msg.info.flags:
                return seq
        return None

    def refresh(self, expungeDeleted=False):
        """
        Catch the view up with the folder.

        @param expungeDeleted: first remove every message flagged
            C{\\Deleted} (RFC 3501 6.4.3); their EXPUNGEs are in the result.
        @return: a L{Deferred} firing with L{Changes}.
        """
        folder, writeable = self.folder, self.writeable

        def load():
            if expungeDeleted:
                doomed = [i for i in folder.snapshot() if DELETED in i.flags]
                if doomed:
                    folder.remove(doomed)
            infos, claimed = _snapshotAndClaim(folder, writeable)
            return infos, claimed, folder.uidNext

        return self.runBlocking(load).addCallback(self._apply)

    def _apply(self, result):
        infos, claimed, uidNext = result
        current = {info.uid: info for info in infos}
        changes = Changes()
        kept = []
        for seq, msg in enumerate(self.messages, 1):
            if msg.info.uid in current:
                kept.append(msg)
            else:
                changes.expunged.append(seq)
        changes.expunged.reverse()
        self.messages = kept
        for seq, msg in enumerate(self.messages, 1):
            info = current[msg.info.uid]
            if info.flags != msg.info.flags:
                changes.flags[seq] = info.flags
            msg.info = info
        last = self._lastUID()
        for info in infos:
            if info.uid > last:
                recent = info.uid in claimed if self.writeable else info.recent
                self.messages.append(MaildirMessage(info, recent))
        if self._lastUID() != last:
            changes.exists = len(self.messages)
            changes.recent = self.getRecentCount()
        self.uidNext = max(self.uidNext, uidNext, self._lastUID() + 1)
        changes.flags = {
            seq: self.messages[seq - 1].getFlags() for seq in changes.flags
        }
        for listener in list(self._listeners):
            if changes.flags:
                listener.flagsChanged(changes.flags)
            if changes.exists is not None:
                listener.newMessages(changes.exists, changes.recent)
        return changes

    def storeFlags(self, seqs, flags, mode):
        """
        Change the flags of the messages C{seqs} (RFC 3501 6.4.6).

        The change applies to the flags on disk now, not to this session's
        possibly older view, so a flag another session set meanwhile is kept.

        @param flags: flag names; only system flags are kept.
        @param mode: C{1} to add, C{-1} to remove, C{0} to replace.
        @return: a L{Deferred} firing with C{(updated, gone)}: C{{seq: flags}}
            for the messages still there, and the sequence numbers of those
            another session expunged meanwhile.
        """
        if not self.writeable:
            return defer.fail(imap4.ReadOnlyMailbox())
        flags = canonicalFlags(flags)
        folder = self.folder

        infos = [(seq, self.messages[seq - 1].info) for seq in seqs]
        change = (
            {"add": flags} if mode > 0 else {"remove": flags} if mode < 0
            else {"replace": flags}
        )

        def store():
            results = []
            for seq, info in infos:
                try:
                    info = folder.changeFlags(info, **change)
                except MessageGone:
                    info = None
                results.append((seq, info))
            return results

        def stored(results):
            updated, gone = {}, []
            for seq, info in results:
                if info is None:
                    gone.append(seq)
                else:
                    msg = self.messages[seq - 1]
                    msg.info = info
                    updated[seq] = msg.getFlags()
            return updated, gone

        return self.runBlocking(store).addCallback(stored)

    def removeDeleted(self):
        """
        Remove the messages flagged C{\\Deleted} without reporting them, as
        CLOSE does (RFC 3501 6.4.2).

        @return: a L{Deferred}.
        """
        if not self.writeable:
            return defer.succeed(None)
        folder = self.folder

        def remove():
            doomed = [i for i in folder.snapshot() if DELETED in i.flags]
            if doomed:
                folder.remove(doomed)

        return self.runBlocking(remove)

    # -- IMailboxInfo

    def getFlags(self):
        return list(SYSTEM_FLAGS_ORDER)

    def getHierarchicalDelimiter(self):
        return "/"

    # -- IMailbox

    def getUIDValidity(self):
        return self.uidValidity

    def getUIDNext(self):
        return self.uidNext

    def getUID(self, message):
        return self.messages[message - 1].info.uid

    def getMessageCount(self):
        return len(self.messages)

    def getRecentCount(self):
        return sum(1 for msg in self.messages if msg.recent)

    def getUnseenCount(self):
        return sum(1 for msg in self.messages if SEEN not in msg.info.flags)

    def isWriteable(self):
        return self.writeable

    def destroy(self):
        raise imap4.MailboxException("Deleting mailboxes is not supported")

    def requestStatus(self, names):
        return imap4.statusRequestHelper(self, names)

    def addListener(self, listener):
        """
        Tell an L{imap4.IMailboxListener} about flag changes and new messages
        found by L{refresh}.
        """
        self._listeners.append(listener)

    def removeListener(self, listener):
        self._listeners.remove(listener)

    def addMessage(self, message, flags=(), date=None):
        return defer.fail(imap4.MailboxException("APPEND is not supported yet"))

    def expunge(self):
        """
        Remove the messages flagged C{\\Deleted}.

        @return: a L{Deferred} firing with the removed sequence numbers,
            highest first.
        """
        if not self.writeable:
            return defer.fail(imap4.ReadOnlyMailbox())
        return self.refresh(expungeDeleted=True).addCallback(lambda c: c.expunged)

    def fetch(self, messages, uid):
        """
        @return: C{(seq, message)} pairs; message bytes are not loaded yet
            (see L{MaildirMessage.load}).
        """
        try:
            seqs = self.sequenceNumbers(messages, uid)
        except InvalidMessageNumber:
            return defer.fail(failure.Failure())
        return [(seq, self.messages[seq - 1]) for seq in seqs]

    def store(self, messages, flags, mode, uid):
        try:
            seqs = self.sequenceNumbers(messages, uid)
        except InvalidMessageNumber:
            return defer.fail(failure.Failure())
        return self.storeFlags(seqs, flags, mode).addCallback(lambda r: r[0])

    # -- ICloseableMailbox

    def close(self):
        """
        Stop following the folder's changes.
        """
        self.unwatch()
        self._listeners = []
