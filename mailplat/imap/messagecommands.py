"""
The IMAP commands of the selected state (RFC 3501 6.4): CHECK, CLOSE,
EXPUNGE, SEARCH, FETCH, STORE, COPY and UID; UNSELECT (RFC 3691), MOVE (RFC
6851), UID EXPUNGE (RFC 4315) and CONDSTORE's modifiers (RFC 7162).  A
mixin of L{mailplat.imap.server.IMAPServer}.
"""

import os

from twisted.internet import defer

from mailplat._net import WriteGate
from mailplat.imap import fetch, search
from mailplat.imap.message import (
    MAX_MIME_DEPTH,
    SYSTEM_FLAGS_ORDER,
    MimeTooDeep,
    orderedFlags,
)
from mailplat.imap.responses import GONE, TRYCREATE, no
from mailplat.imap.selected import InvalidSequence
from mailplat.imap.wire import ParseError, flagList, formatSequenceSet
from mailplat.interfaces import MessageGone, NoSuchFolder, QuotaExceeded

_FETCH_BATCH = 256
# _fetchNow's answer when a FETCH has to wait for a thread.
_LATER = object()
_STREAM_CHUNK = 64 * 1024
# Messages whose contents one thread hop reads (see _renderGroups).
_GROUP_MESSAGES = 64
_GROUP_BYTES = 256 * 1024
MAX_KEYWORDS = 100


class MessageCommands:
    """
    Selected-state commands; C{self} is the L{mailplat.imap.server.IMAPServer}.
    """

    def imap_CHECK(self, tag, args):
        """
        RFC 3501 6.4.1: nothing to flush (the store writes through), but a
        good point to report changes.
        """
        args.end()
        return self._finish(tag, b"CHECK completed")

    @defer.inlineCallbacks
    def imap_CLOSE(self, tag, args):
        """
        RFC 3501 6.4.2: remove C{\\Deleted} messages silently (not in a
        read-only session) and go back to the authenticated state.
        """
        args.end()
        selected = self.selected
        self._unselect()
        if selected.writeable:
            try:
                yield self.context.runBlocking(selected.folder.expunge)
            except NoSuchFolder:
                pass
        self.tagged(tag, b"OK", b"CLOSE completed")

    def imap_UNSELECT(self, tag, args):
        """
        RFC 3691: like CLOSE without the expunge.
        """
        args.end()
        self._unselect()
        self.tagged(tag, b"OK", b"UNSELECT completed")

    @defer.inlineCallbacks
    def imap_EXPUNGE(self, tag, args, uid=False):
        """
        RFC 3501 6.4.3 and UID EXPUNGE (RFC 4315 2.1): one untagged EXPUNGE
        per removed message, highest sequence number first.
        """
        uids = None
        if uid:
            args.sp()
            uids = [u for _, u in self.selected.resolve(args.sequenceSet(), True)]
        args.end()
        if not self.selected.writeable:
            raise no(b"[READ-ONLY] Mailbox is read-only")
        yield self.context.runBlocking(self.selected.folder.expunge, uids)
        yield self._finish(tag, b"UID EXPUNGE completed" if uid else b"EXPUNGE completed")

    def _resolve(self, sequenceSet, uid):
        try:
            return self.selected.resolve(sequenceSet, uid)
        except InvalidSequence:
            raise ParseError("Invalid message sequence number") from None

    @defer.inlineCallbacks
    def imap_SEARCH(self, tag, args, uid=False):
        """
        RFC 3501 6.4.4 and 6.4.8 (UID SEARCH); MODSEQ from RFC 7162 3.1.5.
        """
        args.sp()
        try:
            program, usesModseq = search.parseSearch(args)
        except search.BadCharset:
            raise no(b"[BADCHARSET (" + b" ".join(c.encode() for c in search.CHARSETS)
                      + b")] Unsupported charset") from None
        if usesModseq:
            self._enableCondstore()
        selected = self.selected
        uids = list(selected.uids)
        recent = set(selected.recent)
        program = search.optimize(program)
        found = yield self.context.runBlocking(
            _runSearch, selected.folder, uids, recent, program
        )
        if self._closing:
            return
        numbers = [u for _, u, _ in found] if uid else [s for s, _, _ in found]
        line = b"SEARCH" + b"".join(b" %d" % n for n in numbers)
        if usesModseq and found:
            line += b" (MODSEQ %d)" % max(m for _, _, m in found)
        self.untagged(line)
        yield self._finish(tag, b"UID SEARCH completed" if uid else b"SEARCH completed",
                           allowExpunge=uid)

    def imap_FETCH(self, tag, args, uid=False):
        """
        RFC 3501 6.4.5 and 6.4.8 (UID FETCH); CHANGEDSINCE and MODSEQ from
        RFC 7162 3.1.4.
        """
        args.sp()
        sequenceSet = args.sequenceSet()
        args.sp()
        items = fetch.parseAttributes(args)
        changedSince = None
        if not args.atEnd():
            args.sp()
            args.expect(b"(")
            args.expect(b"CHANGEDSINCE")
            args.sp()
            changedSince = args.number(limit=2**63 - 1)
            args.expect(b")")
        args.end()
        pairs = self._resolve(sequenceSet, uid)
        names = {item.name for item in items}
        if changedSince is not None or b"MODSEQ" in names:
            self._enableCondstore()
        if uid and b"UID" not in names:
            items.append(fetch.FetchItem(b"UID"))
        if self.condstore and b"MODSEQ" not in names and (
            changedSince is not None or b"FLAGS" in names
        ):
            items.append(fetch.FetchItem(b"MODSEQ"))
        problem = self._fetchNow(pairs, items, changedSince)
        if problem is _LATER:
            return self._fetch(pairs, items, changedSince).addCallback(
                lambda problem: self._fetched(tag, problem, uid))
        return self._fetched(tag, problem, uid)

    def _fetched(self, tag, problem, uid):
        if problem == GONE and uid:
            # RFC 3501 6.4.8: UIDs that no longer exist are ignored; the
            # EXPUNGE follows.
            problem = None
        if problem is not None:
            self.tagged(tag, b"NO", problem)
            return None
        return self._finish(tag, b"UID FETCH completed" if uid else b"FETCH completed",
                            allowExpunge=uid)

    def _fetchNow(self, pairs, items, changedSince):
        """
        L{_fetch} done at once, when everything it needs is in memory: the
        folder's picture is current, no C{\\Seen} has to be stored, and the
        contents asked for (at most L{_GROUP_BYTES} in all) are read without
        any disk I/O and need no MIME structure.  Nothing is written unless
        all of it can be.

        @return: the text of a tagged NO, L{None}, or L{_LATER} (use
            L{_fetch}).
        """
        if self._closing:
            return None
        selected = self.selected
        folder = selected.folder
        cachedMessages = getattr(folder, "cachedMessages", None)
        if cachedMessages is None or len(pairs) > _FETCH_BATCH:
            return _LATER
        needsContent = fetch.needsContent(items)
        if needsContent and fetch.needsStructure(items):
            return _LATER
        seqOf = {u: s for s, u in pairs}
        infos = cachedMessages(list(seqOf), self.rescanInterval)
        if infos is None:
            return _LATER
        gone = len(infos) != len(seqOf)
        if changedSince is not None:
            infos = [info for info in infos if info.modseq > changedSince]
        if selected.writeable and fetch.setsSeen(items) and any(
            "\\Seen" not in info.flags for info in infos
        ):
            return _LATER
        isRecent = selected.isRecent
        if needsContent:
            if sum(info.size for info in infos) > _GROUP_BYTES:
                return _LATER
            wanted = [(info, items, isRecent(info.uid)) for info in infos]
            results = self._renderNowait(folder, wanted, fetch.needsParsing(items), False)
            if None in results:
                return _LATER
            pieces = [result[0] for result in results]
        else:
            pieces = [fetch.messageAttributes(info, items, recent=isRecent(info.uid))
                      for info in infos]
        if any(item.name == b"FLAGS" for item in items):
            selected.reported(infos)
        if infos:
            self.transport.write(b"".join([
                b"* %d FETCH (%s)\r\n" % (seqOf[info.uid], b"".join(p))
                for info, p in zip(infos, pieces)
            ]))
            self.resetTimeout()
        return GONE if gone else None


    @defer.inlineCallbacks
    def _fetch(self, pairs, items, changedSince):
        """
        Send the FETCH responses in batches, streaming whole messages.

        Costs are kept per batch, not per message: the messages' metadata
        come from the folder's in-memory state when it is current (else one
        thread hop per batch), the contents of several small messages are
        read in one thread hop, and each response is written with one
        C{write}.  Only messages larger than L{_STREAM_CHUNK} are streamed
        from the file, a chunk per hop, pausing while the transport's buffer
        is full.

        @return: a L{defer.Deferred} firing with the text of a tagged NO, or
            L{None}.
        """
        selected = self.selected
        folder = selected.folder
        markSeen = selected.writeable and fetch.setsSeen(items)
        needsContent = fetch.needsContent(items)
        parse = fetch.needsParsing(items)
        structure = fetch.needsStructure(items)
        withFlags = items
        if not any(item.name == b"FLAGS" for item in items):
            withFlags = items + [fetch.FetchItem(b"FLAGS")]
            if self.condstore and not any(item.name == b"MODSEQ" for item in items):
                withFlags.append(fetch.FetchItem(b"MODSEQ"))
        sendsFlags = any(item.name == b"FLAGS" for item in items)
        gone = tooDeep = False
        flow = WriteGate()
        registered = False
        cachedMessages = getattr(folder, "cachedMessages", None)
        try:
            for start in range(0, len(pairs), _FETCH_BATCH):
                batch = pairs[start : start + _FETCH_BATCH]
                seqOf = {u: s for s, u in batch}
                # Later batches of a long FETCH go through a thread, so that
                # other connections get their turn in between.
                infos = None
                if cachedMessages is not None and start == 0:
                    infos = cachedMessages(list(seqOf), self.rescanInterval)
                if infos is None:
                    infos = yield self.context.runBlocking(folder.messages, list(seqOf))
                if len(infos) != len(batch):
                    gone = True
                newlySeen = set()
                if markSeen:
                    unseen = [i.uid for i in infos if "\\Seen" not in i.flags]
                    if unseen:
                        updated, lost, _ = yield self.context.runBlocking(
                            folder.storeFlags, unseen, {"\\Seen"}
                        )
                        selected.reported(updated)
                        byUID = {i.uid: i for i in updated}
                        infos = [byUID.get(i.uid, i) for i in infos]
                        newlySeen = set(byUID)
                if not self._connected or self._closing:
                    return None
                wanted = []
                for info in infos:
                    if changedSince is not None and info.modseq <= changedSince:
                        continue
                    query = withFlags if info.uid in newlySeen else items
                    if query is withFlags or sendsFlags:
                        selected.reported([info])
                    wanted.append((info, query, selected.isRecent(info.uid)))
                if not needsContent:
                    if not wanted:
                        continue
                    # Metadata only: the whole batch in one write.
                    self.transport.write(b"".join([
                        b"* %d FETCH (%s)\r\n" % (
                            seqOf[info.uid],
                            b"".join(fetch.messageAttributes(info, query, recent=recent)),
                        )
                        for info, query, recent in wanted
                    ]))
                    self.resetTimeout()
                    continue
                for group in _renderGroups(wanted):
                    results = self._renderNowait(folder, group, parse, structure)
                    missing = [e for e, r in zip(group, results) if r is None]
                    if missing:
                        read = iter((yield self.context.runBlocking(
                            _renderMany, folder, missing, parse
                        )))
                        results = [next(read) if r is None else r for r in results]
                    try:
                        for (info, _, _), result in zip(group, results):
                            if result is MessageGone:
                                gone = True
                                continue
                            if result is MimeTooDeep:
                                tooDeep = True
                                continue
                            if not self._connected or self._closing:
                                return None
                            pieces, f = result
                            head = b"* %d FETCH (" % seqOf[info.uid]
                            if f is None:
                                self.transport.write(b"".join([head, *pieces, b")\r\n"]))
                            else:
                                if not registered:
                                    self.transport.registerProducer(flow, True)
                                    registered = True
                                self.transport.write(head)
                                yield self._writePieces(pieces, f, flow)
                                self.transport.write(b")\r\n")
                                f.close()
                            self.resetTimeout()
                            if registered:
                                yield flow.wait()
                    finally:
                        for result in results:
                            if isinstance(result, tuple) and result[1] is not None:
                                result[1].close()
        except Exception:
            # Part of a response may be out already: nothing sound can follow.
            self.log.failure("imap: FETCH failed for {peer}", peer=self.peer)
            self._close()
            return None
        finally:
            if registered and self._connected:
                self.transport.unregisterProducer()
        if tooDeep:
            return b"[LIMIT] MIME structure nested more than %d levels deep" % (
                MAX_MIME_DEPTH,)
        if gone:
            return GONE
        return None

    def _renderNowait(self, folder, group, parse, structure):
        """
        Render the messages of C{group} that can be read without any disk
        I/O (see L{mailplat.storage.nowait}: the kernel has their path and
        data in memory), on the reactor thread: a read of at most
        L{_STREAM_CHUNK} bytes, and no MIME parsing beyond splitting the
        header from the body.  Anything that needs the MIME structure is
        parsed off the reactor thread (L{_renderMany}).

        @return: a result as L{_renderMany}'s for each message, L{None} for
            those to read in a thread.
        """
        readNowait = getattr(folder, "readNowait", None)
        if structure or readNowait is None:
            return [None] * len(group)
        results = []
        for info, items, recent in group:
            data = None
            if info.size <= _STREAM_CHUNK:
                data = readNowait(info, self._closeLater)
            results.append(
                None if data is None else _renderBytes(info, items, parse, recent, data)
            )
        return results

    def _closeLater(self, fd):
        self.context.runBlocking(os.close, fd).addErrback(lambda f: None)

    @defer.inlineCallbacks
    def _writePieces(self, pieces, f, flow):
        for piece in pieces:
            if isinstance(piece, bytes):
                self.transport.write(piece)
                continue
            f.seek(piece.offset)
            remaining = piece.length
            while remaining:
                chunk = yield self.context.runBlocking(f.read, min(_STREAM_CHUNK, remaining))
                if not chunk:
                    raise OSError("message file shrank while being sent")
                self.transport.write(chunk)
                remaining -= len(chunk)
                if remaining:
                    self.resetTimeout()
                    yield flow.wait()

    @defer.inlineCallbacks
    def imap_STORE(self, tag, args, uid=False):
        """
        RFC 3501 6.4.6 and 6.4.8 (UID STORE); UNCHANGEDSINCE from RFC 7162
        3.1.3.
        """
        args.sp()
        sequenceSet = args.sequenceSet()
        args.sp()
        unchangedSince = None
        if args.maybe(b"("):
            args.expect(b"UNCHANGEDSINCE")
            args.sp()
            unchangedSince = args.number(limit=2**63 - 1)
            args.expect(b")")
            args.sp()
            self._enableCondstore()
        item = args.run(frozenset(b"+-.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
                        "store item").upper()
        silent = item.endswith(b".SILENT")
        if silent:
            item = item[: -len(b".SILENT")]
        if item not in (b"FLAGS", b"+FLAGS", b"-FLAGS"):
            raise ParseError("Invalid STORE data item")
        args.sp()
        if args.peek() == b"(":
            raw = args.flagList()
        else:
            raw = [args.flag()]
            while not args.atEnd():
                args.sp()
                raw.append(args.flag())
        args.end()
        flags = self._flags(raw)
        selected = self.selected
        pairs = self._resolve(sequenceSet, uid)
        if not selected.writeable:
            raise no(b"[READ-ONLY] Mailbox is read-only")
        keywords = {f for f in flags if not f.startswith("\\")}
        if item != b"-FLAGS" and len(set(selected.keywords) | keywords) > MAX_KEYWORDS:
            raise no(b"[LIMIT] Too many keywords in this mailbox")
        change = {b"FLAGS": {"replace": flags}, b"+FLAGS": {"add": flags},
                  b"-FLAGS": {"remove": flags}}[item]
        seqOf = {u: s for s, u in pairs}
        infos, gone, modified = yield self.context.runBlocking(
            selected.folder.storeFlags, list(seqOf), unchangedSince=unchangedSince,
            **change
        )
        if self._closing or self.selected is not selected:
            return
        newKeywords = set()
        for info in infos:
            newKeywords.update(f for f in info.flags if not f.startswith("\\"))
        if not newKeywords <= set(selected.keywords):
            selected.keywords = sorted(set(selected.keywords) | newKeywords)
            self._sendFlags(selected.keywords)
        for info in infos:
            parts = []
            if not silent:
                parts.append(b"FLAGS " + flagList(
                    orderedFlags(info.flags, selected.isRecent(info.uid))))
            if uid:
                parts.append(b"UID %d" % info.uid)
            if self.condstore and (not silent or info.modseq > selected.modseq):
                parts.append(b"MODSEQ (%d)" % info.modseq)
            if not silent or self.condstore and info.modseq > selected.modseq:
                self.untagged(b"%d FETCH (" % seqOf[info.uid] + b" ".join(parts) + b")")
        selected.reported(infos)
        command = b"UID STORE" if uid else b"STORE"
        if gone and not uid:
            self.tagged(tag, b"NO", GONE)
            return
        code = b""
        if modified:
            numbers = sorted(modified) if uid else sorted(seqOf[u] for u in modified)
            code = b"[MODIFIED " + formatSequenceSet(numbers) + b"] "
            command = b"Conditional " + command + b" failed for some messages;"
        yield self._finish(tag, command + b" completed", allowExpunge=uid, code=code)

    def _sendFlags(self, keywords):
        flags = list(SYSTEM_FLAGS_ORDER) + list(keywords)
        self.untagged(b"FLAGS " + flagList(flags))
        if self.selected is not None and self.selected.writeable:
            self.untagged(b"OK [PERMANENTFLAGS " + flagList(flags + ["\\*"])
                          + b"] Flags permitted")

    def imap_COPY(self, tag, args, uid=False):
        return self._copy(tag, args, uid, move=False)

    def imap_MOVE(self, tag, args, uid=False):
        return self._copy(tag, args, uid, move=True)

    @defer.inlineCallbacks
    def _copy(self, tag, args, uid, move):
        """
        COPY (RFC 3501 6.4.7) and MOVE (RFC 6851), with COPYUID (RFC 4315).
        """
        args.sp()
        sequenceSet = args.sequenceSet()
        args.sp()
        name = self._mailbox(args)
        args.end()
        selected = self.selected
        pairs = self._resolve(sequenceSet, uid)
        if move and not selected.writeable:
            raise no(b"[READ-ONLY] Mailbox is read-only")
        target = yield self._folder(name, TRYCREATE)
        method = selected.folder.moveTo if move else selected.folder.copyTo
        try:
            done = yield self.context.runBlocking(method, [u for _, u in pairs], target)
        except QuotaExceeded:
            raise no(b"[OVERQUOTA] Quota exceeded") from None
        verb = (b"UID " if uid else b"") + (b"MOVE" if move else b"COPY")
        code = b""
        if done:
            validity = yield self.context.runBlocking(lambda: target.uidValidity)
            code = b"[COPYUID %d %s %s] " % (
                validity,
                formatSequenceSet([s for s, _ in done]),
                formatSequenceSet([t for _, t in done]),
            )
        if move:
            if code:
                self.untagged(b"OK " + code + b"Moved")
            yield self._finish(tag, verb + b" completed")
        else:
            yield self._finish(tag, verb + b" completed", code=code)


def _renderGroups(wanted):
    """
    Split the messages a FETCH needs the contents of into groups read in
    one thread hop each: up to L{_GROUP_MESSAGES} messages and about
    L{_GROUP_BYTES} (so memory stays bounded), a message too large to be
    read whole (streamed) alone.
    """
    group, size = [], 0
    for entry in wanted:
        large = entry[0].size > _STREAM_CHUNK
        if group and (large or size + entry[0].size > _GROUP_BYTES
                      or len(group) >= _GROUP_MESSAGES):
            yield group
            group, size = [], 0
        group.append(entry)
        size += entry[0].size
        if large:
            yield group
            group, size = [], 0
    if group:
        yield group


def _renderMany(folder, group, parse):
    """
    I{blocking}: L{_render} for each C{(info, items, recent)} of C{group}.

    @return: for each, C{(pieces, file)}, or L{MessageGone} or
        L{MimeTooDeep} (the class) for a message that cannot be sent.
    """
    results = []
    try:
        for info, items, recent in group:
            try:
                results.append(_render(folder, info, items, parse, recent))
            except MessageGone:
                results.append(MessageGone)
            except MimeTooDeep:
                results.append(MimeTooDeep)
    except BaseException:
        for result in results:
            if isinstance(result, tuple) and result[1] is not None:
                result[1].close()
        raise
    return results


def _render(folder, info, items, parse, recent):
    """
    I{blocking}: open a message and build its FETCH data: parsed when an
    item needs the structure; else read whole when it is small, or with the
    whole message left in the file to be streamed.

    @return: C{(pieces, file)}; the caller closes the file (L{None} when
        everything was read).
    """
    f = folder.openMessage(info)
    try:
        if parse:
            data = f.read()
            f.close()
            return _renderBytes(info, items, parse, recent, data)
        size = _fileSize(f)
        if size > _STREAM_CHUNK:
            return fetch.messageAttributes(info, items, None, size, recent), f
        data = f.read()
        f.close()
        if len(data) != size:
            raise OSError("message file changed while being read")
        return _renderBytes(info, items, parse, recent, data)
    except BaseException:
        f.close()
        raise


def _fileSize(f):
    """
    The size of an open message: C{fstat} for a file on disk (Maildir),
    else by seeking (a store's file object without a descriptor, such as a
    L{io.BytesIO}: L{mailplat.interfaces.IMailFolder.openMessage} promises a
    seekable binary file, not a descriptor).
    """
    try:
        fd = f.fileno()
    except (AttributeError, OSError):
        position = f.tell()
        size = f.seek(0, os.SEEK_END)
        f.seek(position)
        return size
    return os.fstat(fd).st_size


def _renderBytes(info, items, parse, recent, data):
    """
    The FETCH data of a message read whole.

    @return: C{(pieces, None)}: every piece is L{bytes}.
    """
    if parse:
        content = fetch.parse(data)
        return fetch.messageAttributes(info, items, content, recent=recent), None
    pieces = fetch.messageAttributes(info, items, None, len(data), recent)
    return [
        p if isinstance(p, bytes) else data[p.offset : p.offset + p.length]
        for p in pieces
    ], None


def _runSearch(folder, uids, recent, program):
    """
    I{blocking}: evaluate a search program over a session's view.

    @return: C{[(seq, uid, modseq)]} of the matching messages.
    """
    infos = {info.uid: info for info in folder.messages(uids)}
    context = (len(uids), uids[-1] if uids else 0)
    found = []
    for seq, uid in enumerate(uids, 1):
        info = infos.get(uid)
        if info is None:
            continue
        candidate = search.Candidate(seq, info, uid in recent, folder.read)
        try:
            if search.matches(program, candidate, context):
                found.append((seq, uid, info.modseq))
        except MessageGone:
            continue
    return found
