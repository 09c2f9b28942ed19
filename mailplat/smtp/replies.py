"""
The SMTP replies mailplat sends, in one place: RFC 5321 reply codes with
RFC 3463 enhanced status codes (RFC 2034 ENHANCEDSTATUSCODES).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str
    text: str

    def format(self, **kw):
        return Reply(self.code, self.status, self.text.format(**kw))

    @property
    def isError(self):
        return self.code >= 400

    def toBytes(self):
        lines = self.text.split("\n")
        prefix = f"{self.status} " if self.status else ""
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{self.code}{sep}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8")


OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {queueId}")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
CANNOT_VRFY = Reply(
    252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery"
)
VRFY_OK = Reply(250, "2.1.5", "<{address}>")
CHUNK_OK = Reply(250, "2.0.0", "{size} octets received")
HELP = Reply(
    214,
    "2.0.0",
    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET VRFY EXPN NOOP QUIT STARTTLS "
    "AUTH HELP\nSee RFC 5321",
)

LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
UNKNOWN_COMMAND = Reply(500, "5.5.2", "Error: command not recognized")
OBSOLETE_COMMAND = Reply(502, "5.5.1", "Error: command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Error: {detail}")
SYNTAX = Reply(501, "5.5.4", "Syntax: {usage}")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_PARAMETER = Reply(555, "5.5.4", "Unsupported or malformed parameter: {detail}")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients")
MESSAGE_TOO_BIG = Reply(
    552, "5.3.4", "Message size exceeds fixed maximum message size"
)
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
USER_UNKNOWN = Reply(
    550, "5.1.1", "<{address}>: Recipient address rejected: User unknown"
)
RELAY_DENIED = Reply(554, "5.7.1", "<{address}>: Relay access denied")
SENDER_NOT_OWNED = Reply(
    553, "5.7.1", "<{address}>: Sender address rejected: not owned by user {user}"
)
NEED_SMTPUTF8 = Reply(
    553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter on MAIL"
)
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]; closing the session")
TALKED_FIRST = Reply(554, "5.5.1", "Error: talked before the greeting")
FROM_NOT_OWNED = Reply(
    553, "5.7.1", "<{address}>: From: header address not owned by user {user}"
)
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{hostname} Error: too many connections")
TOO_MANY_CONNECTIONS_FROM = Reply(
    421, "4.7.0", "{hostname} Error: too many connections from {peer}"
)
MAIL_LOOP = Reply(554, "5.4.6", "Too many Received headers: mail loop detected")

TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed")
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
AUTH_BAD_RESPONSE = Reply(501, "5.5.2", "Cannot decode response")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available")

STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing")
TEMPORARY_LOOKUP_FAILURE = Reply(451, "4.3.0", "Temporary lookup failure")
TIMEOUT = Reply(421, "4.4.2", "{hostname} Error: timeout exceeded")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "{hostname} Error: too many errors")
SHUTTING_DOWN = Reply(421, "4.3.2", "{hostname} Service shutting down")
