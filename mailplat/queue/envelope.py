"""
The envelope of a queued message and the per-recipient delivery state, stored
as JSON (never pickle).
"""

import json
from dataclasses import dataclass, field, fields

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DEFERRED = "deferred"


@dataclass
class Recipient:
    """
    One envelope recipient and its delivery state.

    @ivar state: C{pending} (not tried yet or to retry), C{delivered} or
        C{failed} (final).
    """

    address: str
    state: str = PENDING
    attempts: int = 0
    lastStatus: str = ""
    lastError: str = ""
    # ORCPT and NOTIFY (RFC 3461) are filled by the SMTP server when given.
    orcpt: str = ""
    notify: str = ""
    # When to try this recipient again (seconds since the epoch; 0: now).
    nextAttempt: float = 0.0
    # Where the last attempt went and what it answered, for bounces.
    lastRelay: str = ""
    remoteMTA: str = ""
    # A delivery status notification owed to the sender (RFC 3464): ""
    # (none), "failed", "delayed", "delivered" or "relayed"; cleared once the
    # notice is queued.
    notice: str = ""
    delayNotified: bool = False

    def wants(self, event):
        """
        Whether NOTIFY (RFC 3461 4.1) asks for a notice on C{event}
        (C{"SUCCESS"}, C{"FAILURE"} or C{"DELAY"}).  Without NOTIFY, failures
        and delays are reported and successes are not.
        """
        notify = self.notify.upper()
        if not notify:
            return event in ("FAILURE", "DELAY")
        return event in [n.strip() for n in notify.split(",")]

    @property
    def final(self):
        return self.state in (DELIVERED, FAILED)

    @property
    def done(self):
        """
        Final, and no notice about it is still to be sent.
        """
        return self.final and not self.notice


@dataclass
class Envelope:
    """
    What SMTP learnt about a message besides its content.

    @ivar sender: the reverse path, C{""} for the null sender C{<>}.
    @ivar client: facts about the submitting client (address, helo, TLS,
        authenticated user) for logs and bounces.
    @ivar params: MAIL parameters kept for later (BODY, SMTPUTF8, RET, ENVID).
    @ivar headers: header fields to prepend to the stored content.
    """

    id: str
    sender: str
    recipients: list
    arrival: float
    client: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    # Header fields (str, each ending with CRLF) added by policy checks at
    # receipt (Authentication-Results, DKIM-Signature): prepended to the
    # content whenever it is read from the queue.
    headers: list = field(default_factory=list)

    def toJSON(self):
        # The same document as json.dumps(asdict(self)), without asdict's
        # deep copies (a hot path: every received message).
        doc = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        doc["recipients"] = [_recipientDict(r) for r in self.recipients]
        return json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")

    @classmethod
    def fromJSON(cls, data):
        """
        @raise ValueError: C{data} is not a valid envelope.
        """
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("envelope is not a JSON object")
        try:
            recipients = [Recipient(**r) for r in raw.pop("recipients")]
            env = cls(recipients=recipients, **raw)
        except (TypeError, KeyError) as e:
            raise ValueError(f"bad envelope: {e}") from None
        if not isinstance(env.id, str) or not isinstance(env.sender, str):
            raise ValueError("bad envelope: id and sender must be strings")
        return env

    def stateJSON(self):
        """
        The mutable part (per-recipient state), stored beside the queue file.
        """
        return json.dumps(
            [_recipientDict(r) for r in self.recipients],
            sort_keys=True,
            ensure_ascii=False,
        ).encode("utf-8")

    def applyState(self, data):
        """
        Overlay per-recipient state read from the state file.

        @raise ValueError: C{data} does not match the envelope.
        """
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, list) or len(raw) != len(self.recipients):
            raise ValueError("state does not match the envelope")
        try:
            self.recipients = [Recipient(**r) for r in raw]
        except TypeError as e:
            raise ValueError(f"bad state: {e}") from None


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))
_RECIPIENT_FIELDS = tuple(f.name for f in fields(Recipient))


def _recipientDict(recipient):
    return {name: getattr(recipient, name) for name in _RECIPIENT_FIELDS}


@dataclass(frozen=True)
class DeliveryResult:
    """
    The outcome of one delivery attempt for one recipient.

    @ivar state: C{delivered}, C{deferred} (try again later) or C{failed}.
    @ivar status: the RFC 3463 enhanced status code, e.g. C{"2.0.0"}.
    @ivar detail: a human-readable explanation for logs and bounces.
    @ivar relay: where it went, e.g. C{"local"} or C{"mx.example[192.0.2.1]:25"}.
    @ivar remoteMTA: the host name of the SMTP server that answered (the
        C{Remote-MTA} of a DSN), C{""} for local delivery.
    @ivar dsnAction: for a delivered recipient, the RFC 3464 action a success
        notice reports: C{"delivered"} (final delivery here), C{"relayed"}
        (handed to a server that does not do DSN) or C{""} (handed on with
        the NOTIFY parameter: the next server reports).
    """

    state: str
    status: str
    detail: str
    relay: str = ""
    remoteMTA: str = ""
    dsnAction: str = "delivered"
