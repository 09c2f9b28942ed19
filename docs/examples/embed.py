"""
Embed mailplat in a Twisted application: run an SMTP listener on a free
loopback port, send ourselves a message with Twisted's own SMTP client, and
print it once it is in the mailbox.

    python docs/examples/embed.py
"""

import sys
import tempfile

from twisted.internet import defer, task
from twisted.mail.smtp import sendmail

from mailplat.auth.passwords import hashPassword
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
    # Users can be added at run time; the password file is re-read on change.
    mail.context.users.setPassword("app@example.test", hashPassword("secret"))
    mail.startService()
    reactor.addSystemEventTrigger("before", "shutdown", mail.stopService)
    port = mail.listeningPorts()["smtp"].getHost().port
    print(f"listening on 127.0.0.1:{port}, storage under {base}")

    # Store calls touch the disk: run them off the reactor thread.
    run = mail.context.runBlocking
    inbox = yield run(mail.context.store.folder, "app@example.test")
    arrived = defer.Deferred()
    inbox.addListener(lambda: reactor.callFromThread(
        lambda: arrived.called or arrived.callback(None)))

    # Twisted's SMTP client turns each LF into CRLF itself.
    message = b"Subject: hello from the app\n\nProcessed in Python.\n"
    yield sendmail("127.0.0.1", "me@example.net", ["app@example.test"], message,
                   port=port, requireTransportSecurity=False)
    yield arrived
    [info] = yield run(inbox.snapshot)
    content = yield run(inbox.read, info)
    print(f"uid {info.uid}, {info.size} bytes:")
    sys.stdout.write(content.decode())


if __name__ == "__main__":
    task.react(main)
