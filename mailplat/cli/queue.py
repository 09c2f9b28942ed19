"""
C{mailplat queue}: look at and act on the mail queue, like Postfix's
C{mailq}, C{postqueue -f} and C{postsuper -h/-H/-d}.

    mailplat queue list            every message: id, size, arrival, sender,
                                   recipients with their last error
    mailplat queue show ID         the envelope, the state of each recipient
                                   and the message header
    mailplat queue flush [ID]      try every message (or one) now
    mailplat queue hold ID         keep a message from being delivered
    mailplat queue release ID      let a held message go again
    mailplat queue delete ID       delete a message (no bounce is sent)

Safe while the server runs: a message is locked while it is being
delivered, so hold and delete wait for the attempt to finish; the server is
told through its control socket (L{mailplat.queue.control}) and acts at
once.  Without a running server, hold, release and delete work on the files
and the server picks the changes up when it starts.
"""

import os
import time

from mailplat.queue.bounce import splitHeader
from mailplat.queue.control import sendRequest
from mailplat.queue.store import QueueBusy, QueueFileError, QueueStore


class QueueCommandError(Exception):
    pass


def _when(t):
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(t))


def _entries(store):
    for held, ids in ((False, store.ids() if os.path.isdir(store.activeDir) else []),
                      (True, store.heldIds())):
        for queueId in ids:
            try:
                yield queueId, held, store.load(queueId, held=held), None
            except FileNotFoundError:
                continue
            except QueueFileError as e:
                yield queueId, held, None, str(e)


def listQueue(store, out):
    count, total = 0, 0
    out.write(f"{'-Queue ID-':<18} {'--Size--':>9} {'----Arrival Time----':<20} -Sender/Recipient-------\n")
    for queueId, held, item, error in _entries(store):
        count += 1
        if item is None:
            out.write(f"{queueId:<18} {'?':>9} {'':<20} (unreadable: {error})\n\n")
            continue
        total += item.size
        env = item.envelope
        mark = "!" if held else " "
        out.write(
            f"{queueId + mark:<18} {item.size:>9} {_when(env.arrival):<20} "
            f"{env.sender or 'MAILER-DAEMON'}\n"
        )
        if held:
            out.write(f"{'':<18} (on hold: `mailplat queue release {queueId}`)\n")
        for r in env.recipients:
            if r.final:
                continue
            if r.lastError:
                out.write(f"{'':<18} ({r.lastStatus} {r.lastError})\n")
            out.write(f"{'':<49} {r.address}\n")
        out.write("\n")
    if count:
        out.write(f"-- {total // 1024 or (1 if total else 0)} Kbytes in {count} Request{'s' if count != 1 else ''}.\n")
    else:
        out.write("Mail queue is empty\n")


def showMessage(store, queueId, out):
    for held in (False, True):
        try:
            item = store.load(queueId, held=held)
            break
        except FileNotFoundError:
            continue
        except QueueFileError as e:
            raise QueueCommandError(f"{queueId}: cannot parse the queue file: {e}")
    else:
        raise QueueCommandError(f"no such message in the queue: {queueId}")
    env = item.envelope
    client = env.client or {}
    out.write(f"id:        {env.id}{' (on hold)' if held else ''}\n")
    out.write(f"arrival:   {_when(env.arrival)}\n")
    out.write(f"size:      {item.size}\n")
    out.write(f"sender:    <{env.sender}>\n")
    out.write(
        f"client:    [{client.get('address', '?')}] helo={client.get('helo') or '-'} "
        f"auth={client.get('authenticated') or '-'} tls={client.get('tls') or 'no'}\n"
    )
    if env.params:
        out.write("params:    " + " ".join(f"{k}={v}" for k, v in sorted(env.params.items())) + "\n")
    out.write("recipients:\n")
    for r in env.recipients:
        line = f"  <{r.address}> {r.state}, {r.attempts} attempt(s)"
        if r.lastStatus:
            line += f", last: {r.lastStatus} {r.lastError}"
            if r.lastRelay:
                line += f" (relay={r.lastRelay})"
        if not r.final and r.nextAttempt:
            line += f", next attempt {_when(r.nextAttempt)}"
        out.write(line + "\n")
    out.write("header:\n")
    header = splitHeader(item.contentChunks())
    for line in header.decode("utf-8", "replace").splitlines():
        out.write("  " + line + "\n")


def _tell(store, request):
    """
    Tell a running server; @return: whether one listened.
    """
    reply = sendRequest(store.controlPath, request)
    if reply is None:
        return False
    if reply != "ok":
        raise QueueCommandError(f"the server answered: {reply}")
    return True


def runQueueCommand(config, action, queueId, out):
    store = QueueStore(config.queue.path)
    if not os.path.isdir(store.path):
        raise QueueCommandError(f"no queue at {store.path}")
    if action == "list":
        return listQueue(store, out)
    if action != "flush" and not queueId:
        raise QueueCommandError(f"queue {action} needs a queue ID")
    if action == "show":
        return showMessage(store, queueId, out)
    try:
        if action == "flush":
            if queueId and queueId not in store.ids():
                raise FileNotFoundError(queueId)
            if _tell(store, f"flush {queueId}" if queueId else "flush"):
                out.write(f"flushed {queueId or 'the queue'}: delivery is being tried now\n")
            else:
                out.write("the server is not running: messages are tried when it starts\n")
        elif action == "hold":
            store.hold(queueId)
            _tell(store, f"forget {queueId}")
            out.write(f"{queueId}: on hold\n")
        elif action == "release":
            store.release(queueId)
            _tell(store, f"release {queueId}")
            out.write(f"{queueId}: released\n")
        elif action == "delete":
            store.delete(queueId)
            _tell(store, f"forget {queueId}")
            out.write(f"{queueId}: deleted\n")
    except FileNotFoundError:
        where = "held " if action == "release" else ("active " if action == "hold" else "")
        raise QueueCommandError(f"no such {where}message in the queue: {queueId}") from None
    except QueueBusy:
        raise QueueCommandError(
            f"{queueId} is being delivered right now; try again in a moment"
        ) from None
