# There is no __init__.py in twisted/ or twisted/plugins/ on purpose: this file
# is installed into Twisted's own plugin package, twisted.plugins.
from twisted.application.service import ServiceMaker

mailplat = ServiceMaker(
    "mailplat",
    "mailplat.tap",
    "A mail server: ESMTP, a durable queue, Maildir, POP3 and IMAP.",
    "mailplat",
)
