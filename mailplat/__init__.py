"""
mailplat: a mail platform built on Twisted.

One process, one TOML config: ESMTP (MX and submission), a durable queue, Maildir
delivery, POP3 and IMAP over one store.  See C{docs/} and C{README.md}.
"""

__version__ = "0.1.0"
