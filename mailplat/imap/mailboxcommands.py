"""
The IMAP commands of the authenticated state that work on mailboxes as a
whole (RFC 3501 6.3): SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST, LSUB, STATUS, APPEND; NAMESPACE (RFC 2342) and QUOTA
(RFC 9208).  A mixin of L{mailplat.imap.server.IMAPServer}.
"""

from twisted.internet import defer

from mailplat.imap import listing
from mailplat.imap.message import SYSTEM_FLAGS_ORDER
from mailplat.imap.names import BadMailboxName, decodeName
from mailplat.imap.responses import (
    BAD_NAME,
    NONEXISTENT,
    SELECTED,
    TRYCREATE,
    mailboxName,
    no,
)
from mailplat.imap.selected import SelectedFolder
from mailplat.imap.wire import ParseError, flagList, quoted
from mailplat.interfaces import (
    INBOX,
    BadFolderName,
    FolderExists,
    FolderNotRemovable,
    NoSuchFolder,
    QuotaExceeded,
)
from mailplat.storage.names import DELIMITER

_CANONICAL_FLAGS = {f.lower(): f for f in SYSTEM_FLAGS_ORDER}
_STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN",
                 b"HIGHESTMODSEQ")
MAX_KEYWORD_LENGTH = 64


class MailboxCommands:
    """
    Mailbox commands; C{self} is the L{mailplat.imap.server.IMAPServer}.
    """

    def _store(self, f, *args):
        """
        Run a blocking store method for the logged-in user.
        """
        return self.context.runBlocking(f, self.user.address, *args)

    def _mailbox(self, args):
        """
        Read a mailbox name: modified UTF-7, INBOX in any case.

        @raise Refused: it does not decode.
        """
        raw = args.astring()
        try:
            name = decodeName(raw)
        except BadMailboxName:
            raise no(BAD_NAME) from None
        if name.upper() == INBOX:
            return INBOX
        return name

    @defer.inlineCallbacks
    def _folder(self, name, missing=NONEXISTENT):
        store = self.user.store
        # A folder this process has open is found in memory, without a
        # thread hop (memory only: see MaildirStore.cachedFolder).
        cached = getattr(store, "cachedFolder", None)
        folder = cached and cached(self.user.address, name)
        if folder is not None:
            return folder
        try:
            folder = yield self._store(store.folder, name)
        except BadFolderName:
            raise no(BAD_NAME) from None
        except NoSuchFolder:
            raise no(missing) from None
        return folder

    def imap_SELECT(self, tag, args):
        return self._select(tag, args, True)

    def imap_EXAMINE(self, tag, args):
        return self._select(tag, args, False)

    @defer.inlineCallbacks
    def _select(self, tag, args, writeable):
        """
        RFC 3501 6.3.1, 6.3.2; RFC 7162 3.1.8 (the CONDSTORE parameter).
        """
        args.sp()
        name = self._mailbox(args)
        if not args.atEnd():
            args.sp()
            params = args.parenthesized(lambda: args.atom("parameter").upper())
            if any(p != b"CONDSTORE" for p in params):
                raise ParseError("Unknown SELECT parameter")
            self._enableCondstore()
        args.end()
        command = b"SELECT" if writeable else b"EXAMINE"
        # A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
        self._unselect()
        folder = yield self._folder(name)
        cached = getattr(folder, "cachedSelect", None)
        selection = cached and cached(writeable, self.rescanInterval)
        if selection is None:
            selection = yield self.context.runBlocking(folder.select, writeable)
        row, uids, recent, firstUnseen, keywords = selection
        if self._closing:
            return
        selected = SelectedFolder(folder, writeable, row, uids, recent, keywords)
        self.selected = selected
        self.state = SELECTED
        folder.addListener(self._folderChangedInThread)
        flags = list(SYSTEM_FLAGS_ORDER) + keywords
        # The whole response in one write.
        lines = [
            b"* FLAGS " + flagList(flags),
            b"* %d EXISTS" % len(selected),
            b"* %d RECENT" % len(selected.recent),
        ]
        if firstUnseen is not None:
            lines.append(b"* OK [UNSEEN %d] First unseen message"
                         % selected.seqOf(firstUnseen))
        lines.append(b"* OK [UIDVALIDITY %d] UIDs valid" % row.uidValidity)
        lines.append(b"* OK [UIDNEXT %d] Predicted next UID" % row.uidNext)
        if writeable:
            lines.append(b"* OK [PERMANENTFLAGS " + flagList(flags + ["\\*"])
                         + b"] Flags permitted")
            mode = b"READ-WRITE"
        else:
            lines.append(b"* OK [PERMANENTFLAGS ()] Read-only mailbox")
            mode = b"READ-ONLY"
        lines.append(b"* OK [HIGHESTMODSEQ %d] Highest" % row.highestModseq)
        lines.append(tag + b" OK [" + mode + b"] " + command + b" completed")
        self.sendLine(b"\r\n".join(lines))

    @defer.inlineCallbacks
    def _folderCommand(self, tag, f, *names, done, then=None):
        """
        Run CREATE, DELETE, RENAME or (UN)SUBSCRIBE, mapping store errors to
        responses; C{then()} runs after a success.
        """
        try:
            yield self._store(f, *names)
        except BadFolderName:
            raise no(BAD_NAME) from None
        except NoSuchFolder:
            raise no(NONEXISTENT) from None
        except FolderExists:
            raise no(b"[ALREADYEXISTS] Mailbox already exists") from None
        except FolderNotRemovable as e:
            raise no(b"[CANNOT] " + e.args[1].encode("ascii")) from None
        if then is not None:
            then()
        yield self._finish(tag, done)

    def imap_CREATE(self, tag, args):
        """
        RFC 3501 6.3.3: a trailing delimiter only declares the intent to
        create mailboxes below; missing parents are created.
        """
        args.sp()
        raw = args.astring()
        args.end()
        if raw.endswith(DELIMITER.encode()) and len(raw) > 1:
            raw = raw[:-1]
        try:
            name = decodeName(raw)
        except BadMailboxName:
            raise no(BAD_NAME) from None
        if name.upper() == INBOX:
            raise no(b"[ALREADYEXISTS] Mailbox already exists")
        return self._folderCommand(tag, self.user.store.createFolder, name,
                                   done=b"CREATE completed")

    def imap_DELETE(self, tag, args):
        """
        RFC 3501 6.3.4.
        """
        args.sp()
        name = self._mailbox(args)
        args.end()
        selected = self.selected

        def deleted():
            # Deleting the selected mailbox leaves the selected state.
            if selected is not None and selected is self.selected and (
                not selected.folder.exists()
            ):
                self._unselect()

        return self._folderCommand(tag, self.user.store.deleteFolder, name,
                                   done=b"DELETE completed", then=deleted)

    def imap_RENAME(self, tag, args):
        """
        RFC 3501 6.3.5: renaming INBOX moves its messages.
        """
        args.sp()
        old = self._mailbox(args)
        args.sp()
        new = self._mailbox(args)
        args.end()
        return self._folderCommand(tag, self.user.store.renameFolder, old, new,
                                   done=b"RENAME completed")

    def imap_SUBSCRIBE(self, tag, args):
        args.sp()
        name = self._mailbox(args)
        args.end()
        return self._folderCommand(tag, self.user.store.subscribe, name, True,
                                   done=b"SUBSCRIBE completed")

    def imap_UNSUBSCRIBE(self, tag, args):
        args.sp()
        name = self._mailbox(args)
        args.end()
        return self._folderCommand(tag, self.user.store.subscribe, name, False,
                                   done=b"UNSUBSCRIBE completed")

    def _listArguments(self, args):
        args.sp()
        if args.peek() == b"(":
            raise ParseError("LIST-EXTENDED is not supported")
        reference = args.astring()
        args.sp()
        pattern = args.listMailbox()
        args.end()
        try:
            return decodeName(reference), decodeName(pattern)
        except BadMailboxName:
            raise no(BAD_NAME) from None

    @defer.inlineCallbacks
    def imap_LIST(self, tag, args):
        """
        RFC 3501 6.3.8, with CHILDREN and SPECIAL-USE attributes.
        """
        reference, pattern = self._listArguments(args)
        delimiter = quoted(DELIMITER.encode())
        if not pattern:
            # The hierarchy delimiter and the root of the reference.
            root = reference.split(DELIMITER, 1)[0] + DELIMITER if (
                DELIMITER in reference) else ""
            self.untagged(b"LIST (\\Noselect) " + delimiter + b" " + mailboxName(root))
        else:
            folders = yield self._store(self.user.store.folders)
            full = listing.referenceAndPattern(reference, pattern)
            for name, attributes in listing.listMailboxes(folders, full):
                self.untagged(b"LIST " + flagList(attributes) + b" " + delimiter
                              + b" " + mailboxName(name))
        yield self._finish(tag, b"LIST completed")

    @defer.inlineCallbacks
    def imap_LSUB(self, tag, args):
        """
        RFC 3501 6.3.9.
        """
        reference, pattern = self._listArguments(args)
        store = self.user.store
        folders = yield self._store(store.folders)
        subscriptions = yield self._store(store.subscriptions)
        full = listing.referenceAndPattern(reference, pattern)
        delimiter = quoted(DELIMITER.encode())
        for name, attributes in listing.listSubscribed(folders, subscriptions, full):
            self.untagged(b"LSUB " + flagList(attributes) + b" " + delimiter + b" "
                          + mailboxName(name))
        yield self._finish(tag, b"LSUB completed")

    @defer.inlineCallbacks
    def imap_STATUS(self, tag, args):
        """
        RFC 3501 6.3.10; HIGHESTMODSEQ from RFC 7162 3.1.6.
        """
        args.sp()
        name = self._mailbox(args)
        args.sp()
        items = args.parenthesized(lambda: args.atom("status item").upper())
        args.end()
        if any(item not in _STATUS_ITEMS for item in items):
            raise ParseError("Invalid status item")
        if b"HIGHESTMODSEQ" in items:
            self._enableCondstore()
        folder = yield self._folder(name)
        cached = getattr(folder, "cachedStatus", None)
        status = cached and cached(self.rescanInterval)
        if status is None:
            status = yield self.context.runBlocking(folder.status)
        pairs = b" ".join(b"%s %d" % (item, status[item.decode()]) for item in items)
        self.untagged(b"STATUS " + mailboxName(name) + b" (" + pairs + b")")
        yield self._finish(tag, b"STATUS completed")

    def _flags(self, rawFlags, allowRecent=False):
        """
        Map client flags to stored ones: system flags are case-insensitive
        (RFC 3501 2.3.2) and keywords are atoms.

        @raise ParseError: an unknown system flag, or a bad keyword.
        """
        flags = set()
        for raw in rawFlags:
            text = raw.decode("utf-8", "replace")
            if text.startswith("\\"):
                canonical = _CANONICAL_FLAGS.get(text.lower())
                if canonical is None:
                    if text.lower() == "\\recent":
                        continue
                    raise ParseError("Invalid system flag " + text)
                flags.add(canonical)
            else:
                if len(raw) > MAX_KEYWORD_LENGTH:
                    raise ParseError("Keyword too long")
                flags.add(text)
        return frozenset(flags)

    @defer.inlineCallbacks
    def imap_APPEND(self, tag, args):
        """
        RFC 3501 6.3.11 with UIDPLUS's APPENDUID (RFC 4315); the size was
        checked against APPENDLIMIT before the continuation.
        """
        args.sp()
        name = self._mailbox(args)
        args.sp()
        flags = frozenset()
        if args.peek() == b"(":
            flags = self._flags(args.flagList())
            args.sp()
        date = None
        if args.peek() == b'"':
            date = args.dateTime()
            args.sp()
        message = args.literal()
        args.end()
        if isinstance(message.data, bytes):
            raise ParseError("Missing message literal")
        folder = yield self._folder(name, TRYCREATE)
        try:
            uid = yield self.context.runBlocking(folder.deliver, message.data, flags, date)
        except QuotaExceeded:
            raise no(b"[OVERQUOTA] Quota exceeded") from None
        finally:
            message.data.close()
        uidValidity = yield self.context.runBlocking(lambda: folder.uidValidity)
        yield self._finish(
            tag, b"APPEND completed", code=b"[APPENDUID %d %d] " % (uidValidity, uid)
        )

    def imap_NAMESPACE(self, tag, args):
        """
        RFC 2342: one personal namespace.
        """
        args.end()
        self.untagged(b'NAMESPACE (("" ' + quoted(DELIMITER.encode()) + b")) NIL NIL")
        return self._finish(tag, b"NAMESPACE completed")

    def _quotaResponse(self, used, limit):
        """
        RFC 9208: one quota root, C{""}, for all of a user's mail; STORAGE
        counts KiB, rounded up.
        """
        return b'QUOTA "" (STORAGE %d %d)' % (-(-used // 1024), limit // 1024)

    @defer.inlineCallbacks
    def imap_GETQUOTAROOT(self, tag, args):
        args.sp()
        name = self._mailbox(args)
        args.end()
        yield self._folder(name)
        used, limit = yield self._store(self.user.store.quota)
        if limit:
            self.untagged(b"QUOTAROOT " + mailboxName(name) + b' ""')
            self.untagged(self._quotaResponse(used, limit))
        else:
            self.untagged(b"QUOTAROOT " + mailboxName(name))
        yield self._finish(tag, b"GETQUOTAROOT completed")

    @defer.inlineCallbacks
    def imap_GETQUOTA(self, tag, args):
        args.sp()
        root = args.astring()
        args.end()
        used, limit = yield self._store(self.user.store.quota)
        if root != b"" or not limit:
            raise no(b"[NONEXISTENT] No such quota root")
        self.untagged(self._quotaResponse(used, limit))
        yield self._finish(tag, b"GETQUOTA completed")

    def imap_SETQUOTA(self, tag, args):
        raise no(b"[CANNOT] Quotas are set by the administrator")
