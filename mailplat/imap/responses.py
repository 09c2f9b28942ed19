"""
What the IMAP command modules share: the session states, the texts of
common refusals and how a mailbox name is written.
"""

from mailplat.imap.names import encodeName
from mailplat.imap.wire import astring

# The session states (RFC 3501 3).
UNAUTH, AUTH, SELECTED = "unauth", "auth", "select"

NO_PLAINTEXT = b"[PRIVACYREQUIRED] Plaintext authentication is disabled without TLS"
AUTH_FAILED = b"[AUTHENTICATIONFAILED] Authentication failed."
GONE = b"[EXPUNGEISSUED] Some of the requested messages no longer exist"
BAD_NAME = b"[CANNOT] Invalid mailbox name"
NONEXISTENT = b"[NONEXISTENT] Mailbox does not exist"
TRYCREATE = b"[TRYCREATE] Mailbox does not exist"


class Refused(Exception):
    """
    A command ends with this tagged response (raised inside a handler).
    """

    def __init__(self, status, text):
        Exception.__init__(self, status, text)
        self.status = status
        self.text = text


def no(text):
    """
    @return: a L{Refused} with a tagged C{NO text}.
    """
    return Refused(b"NO", text)


def mailboxName(name):
    """
    A mailbox name for a response: modified UTF-7, an atom when it can be,
    else quoted.
    """
    return astring(encodeName(name))
