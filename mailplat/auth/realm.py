"""
The realm: an authenticated user is a L{MailUser}, whatever the protocol.
"""

from twisted.cred.portal import IRealm
from zope.interface import implementer

from mailplat.interfaces import IMailUser


@implementer(IMailUser)
class MailUser:
    """
    An authenticated user and the store their mail is in.
    """

    def __init__(self, address, store):
        self.address = address
        self.store = store


@implementer(IRealm)
class MailRealm:
    """
    Gives a L{MailUser} avatar for L{IMailUser}.
    """

    def __init__(self, store):
        self.store = store

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IMailUser not in interfaces:
            raise NotImplementedError("mailplat only hands out IMailUser avatars")
        if isinstance(avatarId, bytes):
            avatarId = avatarId.decode("utf-8")
        return IMailUser, MailUser(avatarId, self.store), lambda: None
