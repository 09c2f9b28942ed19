"""
Verdicts of policy checks.
"""

from dataclasses import dataclass

from mailplat.smtp.replies import Reply

CONTINUE = "continue"
ACCEPT = "accept"
REJECT = "reject"
TEMPFAIL = "tempfail"
DISCONNECT = "disconnect"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Verdict:
    """
    @ivar action: one of C{continue}, C{accept}, C{reject} (5xx),
        C{tempfail} (4xx), C{disconnect} (reply, then close), C{quarantine}
        (accept, but deliver to the Junk folder).
    @ivar reply: the L{Reply} for reject, tempfail and disconnect.
    @ivar recipients: for C{accept} at the C{rcpt} stage, what the recipient
        resolved to (the envelope gets these).
    @ivar reason: for logs.
    """

    action: str
    reply: Reply = None
    recipients: tuple = ()
    reason: str = ""

    @property
    def final(self):
        return self.action != CONTINUE


CONTINUE_VERDICT = Verdict(CONTINUE)


def accept(recipients=(), reason=""):
    """
    Accept (at the C{rcpt} stage: the recipient, resolved to C{recipients}).
    """
    return Verdict(ACCEPT, recipients=tuple(recipients), reason=reason)


def reject(code, status, text, reason=""):
    """
    A permanent refusal with a 5xx reply.
    """
    if not 500 <= code <= 599:
        raise ValueError("a rejection needs a 5xx code")
    return Verdict(REJECT, Reply(code, status, text), reason=reason)


def tempfail(code, status, text, reason=""):
    """
    A temporary refusal with a 4xx reply.
    """
    if not 400 <= code <= 499:
        raise ValueError("a temporary failure needs a 4xx code")
    return Verdict(TEMPFAIL, Reply(code, status, text), reason=reason)


def disconnect(code, status, text, reason=""):
    """
    Reply, then close the connection.
    """
    return Verdict(DISCONNECT, Reply(code, status, text), reason=reason)


def quarantine(reason=""):
    """
    Accept, but deliver to the Junk folder.
    """
    return Verdict(QUARANTINE, reason=reason)
