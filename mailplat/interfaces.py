"""
Every public interface of mailplat.  Protocol packages reach storage, the queue
and delivery only through these (and through L{twisted.cred}).

Threading rule: methods documented as I{blocking} do disk I/O; callers on the
reactor thread run them with L{twisted.internet.threads.deferToThread}.
"""

import errno

from zope.interface import Attribute, Interface

INBOX = "INBOX"


class NoSuchFolder(LookupError):
    """
    Raised by L{IMailStore.folder}: the folder does not exist.
    """


class BadFolderName(ValueError):
    """
    Raised by L{IMailStore.folder}: the name is not allowed (traversal, NUL,
    bad characters...).
    """


class FolderExists(ValueError):
    """
    Raised by L{IMailStore.createFolder} and L{IMailStore.renameFolder}: the
    target name is taken.
    """


class FolderNotRemovable(ValueError):
    """
    Raised by L{IMailStore.deleteFolder} and L{IMailStore.renameFolder}: INBOX
    and the special-use folders cannot be deleted or renamed, and a folder
    with subfolders cannot be deleted.  C{args[1]} says which, for users.
    """


class MessageGone(LookupError):
    """
    Raised by L{IMailFolder} methods: the message was removed (by another
    session) before the call could reach it.
    """


class QuotaExceeded(OSError):
    """
    Raised by every L{IMailFolder} and L{IMailStore} method that adds
    messages: the user's storage quota would be exceeded.  It is an
    L{OSError} (C{EDQUOT}) so that a caller that only knows about I/O
    errors treats it as a temporary failure.
    """

    def __init__(self, message="mailbox quota exceeded"):
        OSError.__init__(self, errno.EDQUOT, message)


class IMailFolder(Interface):
    """
    One folder of one user: messages with UIDs, flags (system flags and
    keywords) and modification sequences (RFC 7162).

    Call order: any number of L{snapshot} calls; L{read}/L{openMessage},
    L{changeFlags} and L{remove} take L{MessageInfo} objects from a snapshot.
    Every method is I{blocking} and thread-safe.
    """

    name = Attribute("The folder's name, a str (C{INBOX}, C{Sent}, C{a/b}).")
    uidValidity = Attribute("The folder's UIDVALIDITY (RFC 3501 2.3.1.1), an int.")
    uidNext = Attribute("The UID the next message will get, an int.")
    highestModseq = Attribute("The highest modification sequence (RFC 7162).")

    def snapshot():
        """
        @return: the folder's messages, a list of
            L{mailplat.storage.maildir.MessageInfo} ordered by UID.
        """

    def read(info):
        """
        @return: the message's bytes, exactly as stored (CRLF line endings).
        @raise mailplat.storage.maildir.MessageGone: it was removed meanwhile.
        """

    def openMessage(info):
        """
        @return: a binary file object on the message; the caller closes it.
        @raise mailplat.storage.maildir.MessageGone: it was removed meanwhile.
        """

    def deliver(chunks, flags=frozenset(), internalDate=None):
        """
        Store a message given as an iterable of byte chunks, durably (fsync)
        before returning.

        @return: its UID.
        @raise QuotaExceeded: the user's quota would be exceeded.
        """

    def changeFlags(info, add=frozenset(), remove=frozenset(), replace=None):
        """
        Atomically change the message's flags as they are now: add C{add} and
        remove C{remove}, or set C{replace}.

        @return: the updated L{MessageInfo}.
        @raise MessageGone: it was removed meanwhile.
        """

    def setFlags(info, flags):
        """
        Replace the message's flags.

        @return: the updated L{MessageInfo}.
        """

    def remove(infos):
        """
        Delete messages permanently.
        """

    def addListener(listener):
        """
        Call C{listener()} after any change, from the thread that made it.
        """

    def removeListener(listener):
        """
        Stop calling C{listener}.
        """


class IMailStore(Interface):
    """
    The mailboxes of every user.  Every method is I{blocking}.

    Each user has INBOX and the special-use folders C{Sent}, C{Drafts},
    C{Trash}, C{Junk} and C{Archive} (RFC 6154); folder names use C{/} as
    the hierarchy delimiter.
    """

    def folder(address, name="INBOX"):
        """
        @return: the L{IMailFolder} C{name} of user C{address}.
        @raise mailplat.interfaces.BadFolderName: the name is not allowed.
        @raise mailplat.interfaces.NoSuchFolder: no such folder.
        """

    def deliver(address, chunks, folder="INBOX"):
        """
        Deliver a message to a user's folder durably.

        @return: the new UID.
        @raise QuotaExceeded: the user's quota would be exceeded.
        """

    def folders(address):
        """
        @return: C{[(name, specialUse)]} for every folder of the user, sorted
            by name; C{specialUse} is an attribute such as C{"\\Sent"} or
            L{None}.
        """

    def createFolder(address, name):
        """
        Create a folder and any missing folders above it.

        @raise BadFolderName: the name is not allowed.
        @raise FolderExists: it exists.
        """

    def deleteFolder(address, name):
        """
        Delete a folder and its messages.

        @raise NoSuchFolder: it does not exist.
        @raise FolderNotRemovable: it is INBOX or special-use, or has
            subfolders.
        """

    def renameFolder(address, old, new):
        """
        Rename a folder and its subfolders.  Renaming INBOX moves its
        messages into a new folder and leaves INBOX empty (RFC 3501 6.3.5).

        @raise NoSuchFolder: C{old} does not exist.
        @raise FolderExists: C{new} exists.
        @raise FolderNotRemovable: C{old} is special-use.
        """

    def subscriptions(address):
        """
        @return: the subscribed folder names (which need not exist).
        """

    def subscribe(address, name, subscribed=True):
        """
        Add or remove a subscription (RFC 3501 6.3.6, 6.3.7).
        """

    def quota(address):
        """
        @return: C{(usedBytes, limitBytes)}; C{limitBytes} is L{None} when the
            user has no quota.
        """


class IDeliveryTarget(Interface):
    """
    Something the queue runner hands messages to: local mailboxes, remote MX
    hosts, a smarthost, an application.

    Call order: L{accepts} for each recipient when the message is queued and
    again at each attempt; then L{deliver} with the recipients it accepted.
    """

    name = Attribute("A short name for logs, such as C{local} or C{smtp}.")

    def accepts(recipient):
        """
        @return: whether this target delivers to C{recipient} (a L{str}).
        """

    def deliver(item, recipients):
        """
        Deliver the queued message C{item} (a
        L{mailplat.queue.store.QueuedMessage}) to C{recipients}.

        @return: a Deferred firing with a L{dict} of recipient to
            L{mailplat.queue.envelope.DeliveryResult}.  A result must only say
            "delivered" once the message is durable at the destination.
        """


class IUserDirectory(Interface):
    """
    Who exists: consulted by SMTP at RCPT time and by local delivery.
    """

    def exists(address):
        """
        I{blocking}: may read a file.

        @return: whether C{address} is a local mailbox.
        """


class IMailUser(Interface):
    """
    The avatar of an authenticated user (from L{mailplat.auth.realm}); SMTP,
    POP3 and IMAP all log in for this interface.
    """

    address = Attribute("The user's address, normalized (lower case), a str.")
    store = Attribute("The L{IMailStore} holding the user's folders.")


class ICheck(Interface):
    """
    A policy check of the SMTP server (DESIGN.md 4).

    Call order: the session calls L{check} at each stage named in L{stages}:
    C{connect} (before the greeting), C{helo}, C{mail}, C{rcpt} (once per
    recipient) and C{data} (after the end of the message, before it is
    committed), on every check in config order.  The first verdict that is not
    C{continue} ends the stage.
    """

    name = Attribute("The check's type name, as used in [[check]] tables.")
    stages = Attribute("The stages it runs at: a frozenset of stage names.")

    def check(stage, facts):
        """
        @param stage: the stage name.
        @param facts: a L{mailplat.policy.facts.SessionFacts}.
        @return: a L{mailplat.policy.verdict.Verdict}, or a Deferred firing
            with one.  Blocking work (DNS, files) must run off the reactor
            thread (C{facts.context.runBlocking}).
        """


class ICheckFactory(Interface):
    """
    Makes a check named in a C{[[check]]} table.  Third-party checks are
    Twisted plugins: a module in a C{twisted/plugins/} directory on
    C{sys.path} with a module-level object providing this interface and
    L{twisted.plugin.IPlugin}.
    """

    name = Attribute("The type name used in the config, unique.")

    def makeCheck(options, context):
        """
        @param options: the C{[[check]]} table without its C{type} key.
        @param context: the L{mailplat.context.ServerContext}.
        @return: an L{ICheck}.
        @raise ValueError: the options are wrong (the message says how).
        """


class IDeliveryTargetFactory(Interface):
    """
    Makes a delivery target named in a C{[[target]]} table: a Twisted plugin
    (a module-level object in a C{twisted/plugins/} directory providing this
    and L{twisted.plugin.IPlugin}).  Plugin targets are asked before the
    built-in ones (local mailboxes, remote MX), in config order, and SMTP
    accepts at RCPT any recipient one of them accepts.
    """

    name = Attribute("The type name used in the config, unique.")

    def makeTarget(options, context):
        """
        @param options: the C{[[target]]} table without its C{type} key.
        @param context: the L{mailplat.context.ServerContext} (blocking work
            goes through C{context.runBlocking}).
        @return: an L{IDeliveryTarget}.
        @raise ValueError: the options are wrong (the message says how).
        """


class SASLError(Exception):
    """
    Raised by L{ISASLMechanism.respond}: the exchange ends without a login.
    Protocols answer each subclass with their own reply (docs/auth.md).
    """


class SASLCancelled(SASLError):
    """
    The client cancelled the exchange (C{*}, RFC 4422 3.5).
    """


class SASLBadEncoding(SASLError):
    """
    A client response is not valid base64 (RFC 4648).
    """


class SASLMalformedResponse(SASLError):
    """
    A decoded client response does not follow the mechanism's syntax (for
    PLAIN, RFC 4616 2).  C{str(error)} says how, for logs.
    """


class SASLAuthorizationRefused(SASLError):
    """
    The client asked to act as someone else (an authorization identity
    other than its own, RFC 4422 3.4.1): mailplat does no proxy
    authorization.

    @ivar authcid: the authentication identity given, L{bytes}, for logs.
    """

    def __init__(self, authcid, authzid):
        SASLError.__init__(self, authcid, authzid)
        self.authcid = authcid
        self.authzid = authzid


class ISASLMechanism(Interface):
    """
    One SASL authentication exchange with one client (RFC 4422 3): a
    mechanism object is made for each AUTH/AUTHENTICATE command and
    forgotten when it ends.

    Call order: L{respond} first with the client's initial response, or
    with L{None} when it sent none; then, while L{respond} returns a
    challenge, with each further response.  The protocol does the framing
    (base64, C{*} to cancel, line limits), so a mechanism sees and returns
    raw bytes only.
    """

    def respond(response):
        """
        @param response: the client's decoded response (L{bytes}, possibly
            empty), or L{None} for "no initial response".
        @return: L{bytes}, a challenge to send (the client answers it with
            another response); or, when the exchange is complete, a
            C{twisted.cred} credentials object for the server's portal
            (L{twisted.cred.credentials.UsernamePassword}, or any object
            providing an L{twisted.cred.credentials.ICredentials}
            sub-interface that a configured checker handles).  Credentials
            have a C{username} attribute (L{bytes}) used in logs.
        @raise SASLMalformedResponse: the response breaks the mechanism's
            syntax.
        @raise SASLAuthorizationRefused: the client asked for an
            authorization identity other than its own.
        """


class ISASLMechanismFactory(Interface):
    """
    A SASL mechanism that SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH offer
    when it is named in C{[auth] mechanisms} (or a listener's
    C{mechanisms}).  PLAIN and LOGIN are built in
    (L{mailplat.auth.sasl}); others are Twisted plugins: module-level
    objects in a C{twisted/plugins/} directory on C{sys.path} providing this
    and L{twisted.plugin.IPlugin}.
    """

    name = Attribute(
        "The mechanism's registered name (RFC 4422 3.1), a str of at most 20 "
        "upper-case letters, digits, '-' and '_': C{PLAIN}.  Unique."
    )
    cleartext = Attribute(
        "A bool: whether the exchange reveals a reusable secret (a password, a "
        "bearer token) to anyone reading the connection.  Such mechanisms are "
        "offered and accepted only under TLS."
    )

    def makeMechanism(protocol, hostname):
        """
        @param protocol: C{"smtp"}, C{"imap"} or C{"pop3"}.
        @param hostname: the server's host name (C{hostname} in the config),
            for mechanisms that bind the exchange to it.
        @return: a new L{ISASLMechanism} for one exchange.
        """
