"""
Authentication: password hashes, the password file, the twisted.cred checker and
realm shared by SMTP AUTH, POP3 and IMAP.
"""
