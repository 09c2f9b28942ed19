"""
Embed mailplat in a Twisted application: receive mail for a domain over SMTP
and process each message in Python as it arrives.

    python docs/examples/embed.py

It listens on a free loopback port, sends itself a message with Twisted's
own SMTP client, handles the "newMail" event by reading the message, and
also queues one with submit(), mailplat's programmatic entry point.
"""

import sys
import tempfile

from twisted.internet import defer, task
from twisted.mail.smtp import sendmail

from mailplat.service import MailplatService

CONFIG = """
hostname = "mail.example.test"
[domains]
local = ["example.test"]
postmaster = "app@example.test"
[listen.smtp]
protocol = "smtp"
endpoint = "tcp:0:interface=127.0.0.1"
tls = "none"
"""


@defer.inlineCallbacks
def main(reactor):
    base = tempfile.mkdtemp(prefix="mailplat-embed-")
    mail = MailplatService.fromTOML(CONFIG, base)
    yield mail.addUser("app@example.test", "secret")  # hashed in a thread
    mail.startService()
    reactor.addSystemEventTrigger("before", "shutdown", mail.stopService)
    port = mail.listeningPorts()["smtp"].getHost().port
    print(f"listening on 127.0.0.1:{port}, storage under {base}")

    claimed, done = set(), []
    twoArrived = defer.Deferred()

    @defer.inlineCallbacks
    def process(event):
        # Store calls touch the disk: run them off the reactor thread.
        run = mail.context.runBlocking
        inbox = yield run(mail.context.store.folder, event.recipient)
        for info in (yield run(inbox.snapshot)):
            if info.uid not in claimed:  # events may overlap: claim first
                claimed.add(info.uid)
                content = yield run(inbox.read, info)
                subject = [l for l in content.split(b"\r\n") if l.startswith(b"Subject:")]
                print(f"{event.recipient}: uid {info.uid}, {info.size} bytes, {subject[0].decode()}")
                done.append(info.uid)
        if len(done) == 2 and not twoArrived.called:
            twoArrived.callback(None)

    mail.subscribe(lambda event: event.kind == "newMail" and process(event))

    # Over SMTP (Twisted's client turns each LF into CRLF itself)...
    yield sendmail("127.0.0.1", "me@example.net", ["app@example.test"],
                   b"Subject: over SMTP\n\nProcessed in Python.\n",
                   port=port, requireTransportSecurity=False)
    # ... and from Python, with each recipient's outcome.
    results = yield mail.submit("me@example.net", ["app@example.test"],
                                b"Subject: submitted\n\nAlso processed.\n")
    print("submit:", {a: r.state for a, r in results.items()})
    yield twoArrived


if __name__ == "__main__":
    task.react(main)
