"""
What every mail folder implementation (L{mailplat.interfaces.IMailFolder})
writes the same way, for the Maildir and memory stores and for store
plugins: listeners, L{FolderBase.changeFlags} and L{FolderBase.setFlags} on
top of C{storeFlags}, and L{planFlagChanges}, the rule of a flag change.
"""

from mailplat.interfaces import MessageGone
from mailplat.storage.records import storableFlags


def normalizeFlagChange(add, remove, replace):
    """
    @return: C{(add, remove, replace)} as a store keeps them: only storable
        flags are added or set (L{storableFlags}); C{replace} stays L{None}
        when not given.
    """
    return (
        storableFlags(add),
        frozenset(remove),
        None if replace is None else storableFlags(replace),
    )


def planFlagChanges(infos, add, remove, replace, unchangedSince):
    """
    Which messages a flag change (C{storeFlags}) touches, and how.

    @param infos: the L{mailplat.storage.records.MessageInfo} of the messages
        asked for that are in the folder, in UID order.
    @param add: flags to add, L{normalizeFlagChange}d (so are C{remove}
        and C{replace}).
    @param replace: the new flags, or L{None} to add C{add} and remove
        C{remove}.
    @param unchangedSince: leave alone the messages whose modification
        sequence is above this (RFC 7162 C{UNCHANGEDSINCE}), or L{None}.
    @return: C{(kept, modified, changing)}: the UIDs of the messages not
        skipped (changed or not), the UIDs skipped for C{unchangedSince},
        and C{(uid, flags)} for each message whose flags change.
    """
    kept, modified, changing = [], [], []
    for info in infos:
        if unchangedSince is not None and info.modseq > unchangedSince:
            modified.append(info.uid)
            continue
        flags = replace if replace is not None else (info.flags | add) - remove
        if flags != info.flags:
            changing.append((info.uid, flags))
        kept.append(info.uid)
    return kept, modified, changing


class FolderBase:
    """
    The methods of L{mailplat.interfaces.IMailFolder} that follow from the
    others.  A subclass sets C{self._listeners = []} and calls
    L{_changed} after every change (outside its locks).
    """

    def addListener(self, listener):
        """
        Call C{listener()} (in the thread that made the change) after a
        delivery, a flag change or an expunge, by anyone.
        """
        self._listeners.append(listener)

    def removeListener(self, listener):
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self):
        for listener in list(self._listeners):
            listener()

    def changeFlags(self, info, add=frozenset(), remove=frozenset(), replace=None):
        """
        Change the flags of one message (see C{storeFlags}).

        @return: the new L{mailplat.storage.records.MessageInfo}.
        @raise MessageGone: it was expunged.
        """
        infos, _, _ = self.storeFlags([info.uid], add, remove, replace)
        if not infos or infos[0].key != info.key:
            raise MessageGone(info.key)
        return infos[0]

    def setFlags(self, info, flags):
        """
        Replace the flags of a message (see L{changeFlags}).
        """
        return self.changeFlags(info, replace=flags)
