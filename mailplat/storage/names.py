"""
Folder names: which are allowed, and the Maildir++ directory each maps to.

A folder name is a Unicode string whose hierarchy levels are separated by
L{DELIMITER}.  INBOX is case-insensitive (RFC 3501 5.1), so C{inbox/Sub} is
C{INBOX/Sub}.  Every other folder lives in one directory below the user's
C{Maildir/} (Maildir++): C{.} and the levels joined by C{.}, each level
escaped so that the directory name holds only letters, digits and C{-_+,= }
plus C{%XX} escapes.  A name therefore can never form a path with C{/},
C{..} or a NUL in it, and two different names never share a directory (C{a.b}
is C{.a%2Eb}, C{a/b} is C{.a.b}).
"""

import re

from mailplat.interfaces import INBOX, BadFolderName, FolderNotRemovable

DELIMITER = "/"

# The longest directory name most file systems allow.
MAX_DIRECTORY_NAME = 255
MAX_DEPTH = 16

_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+,= "
)
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f%*\\]")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


def normalizeName(name):
    """
    Check a folder name and give it its canonical form (C{INBOX} in upper
    case, also as the first level of a longer name).

    @param name: a L{str}.
    @return: the canonical name.
    @raise BadFolderName: the name is empty, has an empty level (a leading,
        trailing or doubled delimiter), a level C{.} or C{..} or starting
        with C{.}, a control character, NUL, C{%}, C{*} or C{\\}, too many
        levels, or is too long to be a directory name.
    """
    if not isinstance(name, str):
        raise BadFolderName(repr(name))
    levels = name.split(DELIMITER)
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    for level in levels:
        if not level or level.startswith(".") or _FORBIDDEN.search(level):
            raise BadFolderName(name)
    if len(levels) > MAX_DEPTH:
        raise BadFolderName(name)
    canonical = DELIMITER.join(levels)
    if canonical != INBOX and len(directoryName(canonical)) > MAX_DIRECTORY_NAME:
        raise BadFolderName(name)
    return canonical


def _escapeLevel(level):
    out = []
    for ch in level:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend("%%%02X" % b for b in ch.encode("utf-8"))
    return "".join(out)


def directoryName(name):
    """
    @param name: a canonical folder name other than INBOX.
    @return: the Maildir++ directory name of the folder, such as C{.Sent} or
        C{.Lists.twisted%2Edev}.
    """
    return "." + ".".join(_escapeLevel(level) for level in name.split(DELIMITER))


def nameFromDirectory(directory):
    """
    The folder a Maildir++ directory holds: the inverse of L{directoryName}.

    @return: the canonical folder name, or L{None} when C{directory} is not
        one that L{directoryName} makes.
    """
    if not directory.startswith(".") or directory in (".", ".."):
        return None
    levels = []
    for part in directory[1:].split("."):
        if not part or any(ch not in _SAFE and ch != "%" for ch in part):
            return None
        pieces = _ESCAPE.split(part)
        if any("%" in piece for piece in pieces[0::2]):
            return None
        data = bytearray()
        for i, piece in enumerate(pieces):
            data += bytes([int(piece, 16)]) if i % 2 else piece.encode("ascii")
        try:
            levels.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    name = DELIMITER.join(levels)
    try:
        canonical = normalizeName(name)
    except BadFolderName:
        return None
    if canonical == INBOX or directoryName(canonical) != directory:
        return None
    return canonical


def parentNames(name):
    """
    @return: the names above C{name} in the hierarchy, outermost first
        (C{a/b/c} gives C{a} and C{a/b}).
    """
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


def isInside(name, ancestor):
    """
    @return: whether C{name} is below C{ancestor} in the hierarchy.
    """
    return name.startswith(ancestor + DELIMITER)


def checkDeletable(name, specialUse, names):
    """
    The rules every store applies before deleting folder C{name}.

    @param specialUse: the folder's special-use attribute, if any.
    @param names: the canonical names of all the user's folders.
    @raise FolderNotRemovable: C{name} is INBOX, a special-use folder, or has
        subfolders.
    """
    if name == INBOX:
        raise FolderNotRemovable(name, "INBOX cannot be deleted")
    if specialUse:
        raise FolderNotRemovable(name, "Special-use mailboxes cannot be deleted")
    if any(isInside(other, name) for other in names):
        raise FolderNotRemovable(name, "Mailbox has children; delete them first")


def checkRenamable(old, new, specialUse):
    """
    The rules every store applies before renaming folder C{old} to C{new}
    (which does not exist yet).

    @raise FolderNotRemovable: C{old} is a special-use folder.
    @raise BadFolderName: C{new} is inside C{old} (INBOX excepted: renaming it
        moves its messages).
    """
    if specialUse:
        raise FolderNotRemovable(old, "Special-use mailboxes cannot be renamed")
    if isInside(new, old) and old != INBOX:
        raise BadFolderName(new)
