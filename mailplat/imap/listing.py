"""
LIST and LSUB results (RFC 3501 6.3.8, 6.3.9) with the CHILDREN (RFC 3348)
and SPECIAL-USE (RFC 6154) attributes.
"""

from mailplat.imap.names import patternToRegex
from mailplat.interfaces import INBOX
from mailplat.storage.names import parentNames


def _sortKey(name):
    # INBOX first, then by name.
    return (name != INBOX, name)


def listMailboxes(folders, pattern):
    """
    @param folders: C{[(name, specialUse)]} of every folder.
    @param pattern: the reference and the pattern joined, decoded.
    @return: C{[(name, attributes)]} of the matching mailboxes; names that
        only exist as the parents of others (possible for folders made by
        other programs) are given as C{\\Noselect} where C{%} stops at them.
    """
    regex = patternToRegex(pattern)
    uses = dict(folders)
    parents = {p for name in uses for p in parentNames(name)}
    result = []
    for name in sorted(set(uses) | parents, key=_sortKey):
        if not regex.fullmatch(name):
            continue
        attributes = []
        if name not in uses:
            attributes.append("\\Noselect")
        attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if uses.get(name):
            attributes.append(uses[name])
        result.append((name, attributes))
    return result


def listSubscribed(folders, subscriptions, pattern):
    """
    LSUB (RFC 3501 6.3.9): the subscribed names matching C{pattern}; a name
    that is not subscribed but has subscribed names below it is given as
    C{\\Noselect} when C{%} stops at it.

    @return: C{[(name, attributes)]}.
    """
    regex = patternToRegex(pattern)
    uses = dict(folders)
    subscribed = set(subscriptions)
    result = []
    implied = {p for name in subscribed for p in parentNames(name)} - subscribed
    for name in sorted(subscribed | implied, key=_sortKey):
        if not regex.fullmatch(name):
            continue
        if name in implied:
            if "%" not in pattern:
                continue
            attributes = ["\\Noselect"]
        else:
            attributes = [] if name in uses else ["\\Noselect"]
        if uses.get(name):
            attributes.append(uses[name])
        result.append((name, attributes))
    return result


def referenceAndPattern(reference, pattern):
    """
    Join a LIST reference and pattern (RFC 3501 6.3.8): the pattern is read
    in the context of the reference, which here is a plain prefix.
    """
    return reference + pattern
