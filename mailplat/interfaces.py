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
    keywords) and modification sequences (RFC 7162).  There is one folder
    object per folder in the process, shared by delivery and every session,
    so that its listeners hear of every change.

    Messages are described by L{mailplat.storage.records.MessageInfo}
    values (UID, key, flags, size, C{\\Recent}, INTERNALDATE, modseq);
    folder-wide numbers by an object with C{uidValidity}, C{uidNext} and
    C{highestModseq} attributes (L{mailplat.storage.records.FolderStatus}).

    Call order: L{select} (IMAP SELECT/EXAMINE) or L{snapshot} (POP3); then
    L{changes} after every IMAP command and whenever a listener fires;
    L{read}/L{openMessage} take L{MessageInfo} values from any of these.
    Every method is I{blocking} (callers run it through
    C{context.runBlocking}) and thread-safe.  Methods other than L{exists}
    raise L{NoSuchFolder} once the folder was deleted.

    B{Rules every store keeps} (L{mailplat.testing.MailStoreConformanceMixin}
    checks them): UIDs go up and are never reused while UIDVALIDITY stays;
    every delivery, flag change and expunge raises C{highestModseq} and
    gives the changed messages that modification sequence; a new message is
    C{\\Recent} until one session claims it; flags are stored without
    C{\\Recent} and unknown C{\\} names.

    B{Optional fast paths}: the Maildir store also has methods that answer
    from memory on the reactor thread: C{cachedState(maxAge)},
    C{cachedChanges(...)}, C{cachedSelect(...)}, C{cachedStatus(maxAge)},
    C{cachedMessages(uids, maxAge)}, C{cachedView(maxAge)}, C{view()},
    C{readNowait(info, closeLater)} and C{deliverMany(messages)}.  Callers
    look them up with C{getattr} and, when a store lacks one (or it returns
    L{None}), call the blocking method it stands for in a thread:
    L{changes}, L{select}, L{status}, L{messages}, L{snapshot}, L{read},
    L{deliver}.  A store need not have any of them.
    """

    name = Attribute("The folder's name, a str (C{INBOX}, C{Sent}, C{a/b}).")
    uidValidity = Attribute("The folder's UIDVALIDITY (RFC 3501 2.3.1.1), an int.")
    uidNext = Attribute("The UID the next message will get, an int.")
    highestModseq = Attribute("The highest modification sequence (RFC 7162).")

    def exists():
        """
        @return: whether the folder still exists (IMAP DELETE of the
            selected folder).
        """

    def poll():
        """
        Look for changes made behind the store's back (another program
        writing the Maildir) and tell the listeners if there are any.  The
        IMAP IDLE poller calls it every half second for watched folders; a
        store that only changes through itself returns L{False}.

        @return: whether there were changes.
        """

    def snapshot():
        """
        @return: the folder's messages now, a sequence of L{MessageInfo}
            ordered by UID that does not change afterwards (the POP3
            maildrop).
        """

    def messages(uids):
        """
        @return: the L{MessageInfo}s of those of C{uids} still in the
            folder, ordered by UID.
        """

    def status():
        """
        @return: a L{dict} with C{MESSAGES}, C{RECENT}, C{UIDNEXT},
            C{UIDVALIDITY}, C{UNSEEN}, C{HIGHESTMODSEQ} and C{SIZE} (RFC 3501
            6.3.10, RFC 7162 3.1.6, RFC 8438).
        """

    def select(claimRecent):
        """
        Everything IMAP SELECT and EXAMINE report (RFC 3501 6.3.1), in one
        step.

        @param claimRecent: take the C{\\Recent} messages for the caller
            (a read-write SELECT): no other session sees them as recent.
        @return: C{(status, uids, recent, firstUnseen, keywords)}: a
            L{FolderStatus}, every UID ascending, the UIDs recent for the
            caller (those claimed, or with C{claimRecent} false every recent
            one), the UID of the first message without C{\\Seen} (or
            L{None}) and the keywords in use, sorted.
        """

    def changes(sinceModseq, lastUID=0, count=0, claimRecent=False):
        """
        What changed since a session last looked (RFC 3501 7.4.1, RFC 7162
        3.2).

        @param sinceModseq: the highest modification sequence the session
            knows.
        @param lastUID: the highest UID in the session's view.
        @param count: the number of messages in the session's view.
        @param claimRecent: take new C{\\Recent} messages for the caller.
        @return: C{(status, uids, arrived, changed, claimed)}: a
            L{FolderStatus}; every UID in the folder when some of the
            session's messages are gone (fewer than C{count} UIDs up to
            C{lastUID}), else L{None}; the UIDs above C{lastUID}; the
            L{MessageInfo}s whose modification sequence is above
            C{sinceModseq}; and the UIDs claimed as recent.  When
            C{highestModseq} is still C{sinceModseq}: C{(status, None, [],
            [], frozenset())}.
        """

    def read(info):
        """
        @return: the message's bytes, exactly as stored (CRLF line endings).
        @raise MessageGone: it was removed meanwhile.
        """

    def openMessage(info):
        """
        @return: a seekable binary file object on the message, at its start
            (it need not have a descriptor); the caller closes it.
        @raise MessageGone: it was removed meanwhile.
        """

    def deliver(chunks, flags=frozenset(), internalDate=None):
        """
        Store a message durably before returning; it is C{\\Recent}.

        @param chunks: an iterable of L{bytes}, or a binary file.
        @param internalDate: a POSIX time, or L{None} for now.
        @return: its UID.
        @raise QuotaExceeded: the user's quota would be exceeded.
        """

    def storeFlags(uids, add=frozenset(), remove=frozenset(), replace=None,
                   unchangedSince=None):
        """
        Change the flags of messages as they are now, in one step with one
        new modification sequence (RFC 7162 3.1.3).  Messages whose flags do
        not change keep their modification sequence.

        @param replace: the new flags, or L{None} to add C{add} and remove
            C{remove}.
        @param unchangedSince: leave alone the messages whose modification
            sequence is above this (RFC 7162 C{UNCHANGEDSINCE}).
        @return: C{(infos, gone, modified)}: the L{MessageInfo} of every
            message still there and not skipped (changed or not), the UIDs
            no longer in the folder (sorted), and the UIDs skipped for
            C{unchangedSince}.
        """

    def changeFlags(info, add=frozenset(), remove=frozenset(), replace=None):
        """
        L{storeFlags} for one message.

        @return: the updated L{MessageInfo}.
        @raise MessageGone: it was removed meanwhile.
        """

    def setFlags(info, flags):
        """
        Replace the message's flags (L{changeFlags} with C{replace}).

        @return: the updated L{MessageInfo}.
        """

    def remove(infos):
        """
        Delete messages permanently (POP3 DELE at QUIT).  Messages already
        gone are ignored.
        """

    def expunge(uids=None):
        """
        Delete the messages flagged C{\\Deleted} (only those among C{uids}
        when given: RFC 4315 UID EXPUNGE), in one step, so that a flag
        cleared by another session meanwhile is respected.

        @return: the UIDs removed.
        """

    def copyTo(uids, target):
        """
        Copy messages into another folder of the same user, with their flags
        and INTERNALDATE (RFC 3501 6.4.7); the copies are C{\\Recent}.

        @param target: an L{IMailFolder} of the same store and user.
        @return: C{[(sourceUID, targetUID)]} (RFC 4315 COPYUID).
        @raise QuotaExceeded: the copies would exceed the user's quota.
        """

    def moveTo(uids, target):
        """
        Move messages into another folder of the same user atomically (RFC
        6851): a message is never in both or in neither.

        @return: C{[(sourceUID, targetUID)]}.
        """

    def addListener(listener):
        """
        Call C{listener()} after any change (a delivery, a flag change, an
        expunge, the folder's deletion), from the thread that made it.
        """

    def removeListener(listener):
        """
        Stop calling C{listener}.
        """


class IMailStore(Interface):
    """
    The mailboxes of every user.  Every method is I{blocking}.

    Each user has INBOX and the special-use folders C{Sent}, C{Drafts},
    C{Trash}, C{Junk} and C{Archive} (RFC 6154) from the first call that
    names them; folder names use C{/} as the hierarchy delimiter and are
    checked and made canonical with L{mailplat.storage.names.normalizeName}.
    Addresses are compared in lower case.

    B{Optional fast paths} (see L{IMailFolder}): C{cachedFolder(address,
    name)}, not blocking, returns the folder when it is already in memory,
    else L{None} (callers then call L{folder} in a thread);
    C{deliverMany(address, messages, folder)} delivers several messages at
    once (local delivery falls back to L{deliver} for each).
    """

    def folder(address, name="INBOX"):
        """
        @return: the L{IMailFolder} C{name} of user C{address}; the same
            object every time while the folder exists.
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
        Delete a folder and its messages; its listeners are told.

        @raise NoSuchFolder: it does not exist.
        @raise FolderNotRemovable: it is INBOX or special-use, or has
            subfolders.
        """

    def renameFolder(address, old, new):
        """
        Rename a folder and its subfolders (and their subscriptions).
        Renaming INBOX moves its messages into a new folder and leaves INBOX
        empty (RFC 3501 6.3.5).

        @raise NoSuchFolder: C{old} does not exist.
        @raise FolderExists: C{new} exists.
        @raise FolderNotRemovable: C{old} is special-use.
        @raise BadFolderName: C{new} is inside C{old}.
        """

    def subscriptions(address):
        """
        @return: the subscribed folder names (which need not exist), sorted.
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


class IMailStoreFactory(Interface):
    """
    Makes the mailbox store named by C{[storage] backend}: a Twisted plugin
    (a module-level object in a C{twisted/plugins/} directory on
    C{sys.path} providing this and L{twisted.plugin.IPlugin}).  The
    built-in backends C{maildir} and C{memory} are not plugins.

    Call order: L{makeStore} once, when the service is built (before it
    starts): it must not block for long nor start threads; open files
    lazily in the store's (blocking) methods.
    """

    name = Attribute("The backend name used in the config, unique.")

    def makeStore(options, config):
        """
        @param options: the C{[storage]} table without the keys mailplat
            reads itself (C{backend}, C{path}, C{quota}, C{rescan_interval}).
        @param config: the L{mailplat.config.Config}: C{config.storage.path}
            is the store's directory (absolute), C{config.storage.quota} the
            per-user quota in bytes (0 for none).
        @return: an L{IMailStore}.
        @raise ValueError: the options are wrong (the message says how).
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
