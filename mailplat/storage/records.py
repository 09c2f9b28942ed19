"""
The small value types every mailbox store hands to the protocols: a
message's L{MessageInfo} and a folder's L{FolderStatus}.  Third-party stores
(L{mailplat.interfaces.IMailStoreFactory}) build these too.
"""

from typing import NamedTuple


class MessageInfo(NamedTuple):
    """
    One message of a folder.  Immutable; a named tuple rather than a frozen
    dataclass because FETCH and POP3 make many of them on the reactor thread
    and a tuple is several times cheaper to build.

    @ivar uid: its UID, stable across sessions and restarts.
    @ivar key: a name for the message unique in its folder that a store can
        use to tell it from a later message with the same UID (the Maildir
        unique name; any string for other stores).
    @ivar path: the file's absolute path when the info was made (Maildir:
        used by the optional C{readNowait} fast path), or C{""}.
    @ivar flags: the IMAP flags (system flags and keywords), a L{frozenset}
        of L{str}; never C{\\Recent}.
    @ivar size: the size in bytes, exactly as served.
    @ivar recent: whether the message is still C{\\Recent}.
    @ivar internalDate: the INTERNALDATE (RFC 3501 2.3.3), a POSIX time.
    @ivar modseq: its modification sequence (RFC 7162).
    """

    uid: int
    key: str
    path: str
    flags: frozenset
    size: int
    recent: bool
    internalDate: float
    modseq: int = 0

    @property
    def mtime(self):
        return self.internalDate


class FolderStatus(NamedTuple):
    """
    What a session needs to know of a folder as a whole, as
    L{mailplat.interfaces.IMailFolder.select} and C{changes} return it (the
    Maildir store returns its index row, which has these attributes too).

    @ivar uidValidity: UIDVALIDITY (RFC 3501 2.3.1.1).
    @ivar uidNext: the UID the next message will get.
    @ivar highestModseq: the highest modification sequence (RFC 7162): it
        goes up with every delivery, flag change and expunge.
    """

    uidValidity: int
    uidNext: int
    highestModseq: int


SYSTEM_FLAGS = ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")


def storableFlags(flags):
    """
    The flags a store keeps: the system flags and keywords, not
    C{\\Recent} (which belongs to a session) nor unknown C{\\} names.
    """
    return frozenset(f for f in flags if f in SYSTEM_FLAGS or not f.startswith("\\"))


# The folders every user has, with their RFC 6154 attribute.
SPECIAL_FOLDERS = (
    ("Archive", "\\Archive"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
)
