"""
An authenticated user's mailboxes as an L{imap4.IAccount}.

For the foundation milestone only INBOX is listed; other existing folders can
be selected, and creating, deleting, renaming and subscribing answer NO.
"""

from twisted.mail import imap4
from zope.interface import implementer

from mailplat.imap.mailbox import FolderMailbox
from mailplat.interfaces import INBOX, BadFolderName, NoSuchFolder

DELIMITER = "/"


def isInbox(name):
    """
    @return: whether C{name} names INBOX, which is case-insensitive
        (RFC 3501 5.1).
    """
    return name.upper() == INBOX


@implementer(imap4.IMailboxInfo)
class MailboxInfo:
    """
    What LIST says about a mailbox (RFC 3501 7.2.2).
    """

    def __init__(self, attributes=()):
        self.attributes = list(attributes)

    def getFlags(self):
        return self.attributes

    def getHierarchicalDelimiter(self):
        return DELIMITER


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class MaildirAccount:
    """
    The IMAP account of one L{mailplat.interfaces.IMailUser}.

    @ivar user: the avatar (C{address}, C{store}).
    """

    def __init__(self, user, runBlocking):
        self.user = user
        self.runBlocking = runBlocking

    @property
    def address(self):
        return self.user.address

    def select(self, name, rw=True):
        """
        Open the folder C{name} for one session.

        @param name: a mailbox name, L{str} (already decoded from modified
            UTF-7).
        @return: a L{Deferred} firing with a L{FolderMailbox}, or with
            L{None} when there is no such mailbox or the name is not allowed.
        """
        if isinstance(name, bytes):
            name = name.decode("imap4-utf-7")
        store, address = self.user.store, self.user.address

        def getFolder():
            try:
                return store.folder(address, INBOX if isInbox(name) else name)
            except (BadFolderName, NoSuchFolder):
                return None

        def gotFolder(folder):
            if folder is None:
                return None
            return FolderMailbox.open(folder, self.runBlocking, bool(rw))

        return self.runBlocking(getFolder).addCallback(gotFolder)

    def listMailboxes(self, ref, wildcard):
        """
        @return: C{[(name, L{MailboxInfo})]} of the mailboxes matching
            C{ref + wildcard} (RFC 3501 6.3.8): INBOX for now.
        """
        if isinstance(ref, bytes):
            ref = ref.decode("imap4-utf-7")
        if isinstance(wildcard, bytes):
            wildcard = wildcard.decode("imap4-utf-7")
        if imap4.wildcardToRegexp(ref + wildcard, DELIMITER).fullmatch(INBOX):
            return [(INBOX, MailboxInfo())]
        return []

    def isSubscribed(self, name):
        return isInbox(name)

    def subscribe(self, name):
        raise imap4.MailboxException("Subscriptions are not supported yet")

    def unsubscribe(self, name):
        raise imap4.MailboxException("Subscriptions are not supported yet")

    def addMailbox(self, name, mbox=None):
        raise imap4.MailboxException("Creating mailboxes is not supported yet")

    def create(self, pathspec):
        raise imap4.MailboxException("Creating mailboxes is not supported yet")

    def delete(self, name):
        raise imap4.MailboxException("Deleting mailboxes is not supported yet")

    def rename(self, oldname, newname):
        raise imap4.MailboxException("Renaming mailboxes is not supported yet")

    # -- INamespacePresenter (RFC 2342)

    def getPersonalNamespaces(self):
        return [["", DELIMITER]]

    def getSharedNamespaces(self):
        return None

    def getOtherNamespaces(self):
        return None

    def getUserNamespaces(self):
        return None
