"""
The mailbox store: Maildir folders plus a UID index per folder, shared by local
delivery, POP3 and IMAP.
"""
