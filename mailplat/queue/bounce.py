"""
Delivery status notifications: the RFC 3464 C{multipart/report} messages the
queue sends to a message's sender when recipients fail (a bounce), are still
being retried (a delay notice), or were delivered and NOTIFY=SUCCESS asked to
hear about it (RFC 3461 section 4.1).

A notice is::

    multipart/report; report-type=delivery-status   (RFC 6522)
      text/plain                 what happened, for people
      message/delivery-status    per-message and per-recipient fields (RFC 3464 2.2, 2.3)
      text/rfc822-headers        the original header (RET=HDRS, and by default), or
      message/rfc822             the whole original message (RET=FULL)

For a message sent with SMTPUTF8 the C{message/global-delivery-status} and
C{message/global-headers} / C{message/global} types of RFC 6533 are used.

It is sent from C{MAILER-DAEMON@hostname} with the null reverse path
(RFC 5321 section 4.5.5), so a notice that cannot be delivered is never
answered with another one.
"""

import email.utils
import re
import secrets

_SMTP_REPLY = re.compile(r"^[245]\d\d[ -]")

#: A RET=FULL notice carries the whole message only up to this size; a larger
#: one gets its header only (like Postfix's bounce_size_limit).
FULL_RETURN_LIMIT = 10 * 1024 * 1024

_HEADER_LIMIT = 256 * 1024

FAILED_NOTICE = "failed"
DELAYED_NOTICE = "delayed"
SUCCESS_NOTICES = ("delivered", "relayed")

_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "success": "Successful Mail Delivery Report",
    "postmaster": "Postmaster Copy: Undelivered Mail",
}

_INTROS = {
    "failed": (
        "I'm sorry to have to inform you that your message could not be "
        "delivered to one or more recipients. The mail system gave up on the "
        "recipients below."
    ),
    "delayed": (
        "Your message could not be delivered yet to the recipients below. "
        "The mail system will keep trying until {until}; you do not need to "
        "send it again."
    ),
    "success": (
        "Your message was successfully delivered to the destinations below "
        "(you asked for this notice with NOTIFY=SUCCESS)."
    ),
    "postmaster": (
        "A delivery status notification (or another message with a null "
        "sender) could not be delivered. Its recipients and the errors are "
        "below."
    ),
}


def _xtext(text):
    """
    Encode C{text} as RFC 3461 4.2 xtext (for address types other than utf-8).
    """
    out = []
    for ch in text:
        if "!" <= ch <= "~" and ch not in "+=":
            out.append(ch)
        else:
            out.extend(f"+{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _addressType(address):
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {address}"  # RFC 6533 3


def _oneLine(text):
    return " ".join(text.split())


def splitHeader(chunks, limit=_HEADER_LIMIT):
    """
    I{blocking} (reads C{chunks}).

    @return: the header of a message given as CRLF-terminated byte chunks, up
        to and including its last header line (not the blank line), at most
        C{limit} bytes.
    """
    data = b""
    for chunk in chunks:
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[: end + 2]
        if data.startswith(b"\r\n"):
            return b""
        if len(data) > limit:
            break
    return data[:limit]


def buildNotice(
    kind,
    hostname,
    envelope,
    recipients,
    original,
    fullMessage,
    now,
    retryUntil=None,
    to=None,
):
    """
    Compose a delivery status notification.

    @param kind: C{"failed"}, C{"delayed"}, C{"success"} or C{"postmaster"}
        (a failed notice sent to the postmaster: a double bounce).
    @param hostname: ours, for C{Reporting-MTA} and C{MAILER-DAEMON@}.
    @param envelope: the original L{mailplat.queue.envelope.Envelope}.
    @param recipients: L{mailplat.queue.envelope.Recipient}s to report, each
        with its C{notice} (the action), C{lastStatus}, C{lastError} and
        C{remoteMTA}.
    @param original: the original header (bytes, CRLF), or the whole message
        when C{fullMessage}.
    @param now: the time of the report (seconds since the epoch).
    @param retryUntil: when the queue gives up (for delay notices).
    @param to: the notice's recipient; the original sender by default.
    @return: the notice as bytes with CRLF line endings.
    """
    utf8 = bool(envelope.params.get("smtputf8"))
    to = to or envelope.sender
    boundary = f"{envelope.id}.{secrets.token_hex(8)}/{hostname}"
    date = email.utils.formatdate(now, localtime=True)
    intro = _INTROS[kind].format(
        until=email.utils.formatdate(retryUntil, localtime=True) if retryUntil else ""
    )

    text = [
        f"This is the mail system at host {hostname}.",
        "",
        *_wrap(intro),
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "                   The mail system",
        "",
    ]
    for r in recipients:
        text.append(f"<{r.address}>: {_oneLine(r.lastError) or r.lastStatus}")
    text.append("")

    status = [f"Reporting-MTA: dns; {hostname}", f"X-Mailplat-Queue-ID: {envelope.id}"]
    if envelope.params.get("envid"):
        status.append(f"Original-Envelope-Id: {_xtext(envelope.params['envid'])}")
    if envelope.sender:
        status.append(f"X-Mailplat-Sender: {_addressType(envelope.sender)}")
    status.append(
        f"Arrival-Date: {email.utils.formatdate(envelope.arrival, localtime=True)}"
    )
    for r in recipients:
        action = r.notice if r.notice in ("failed", "delayed", "delivered", "relayed") else "failed"
        status.append("")
        if r.orcpt:
            addrType, _, orig = r.orcpt.partition(";")
            status.append(f"Original-Recipient: {addrType.strip()}; {orig.strip()}")
        status.append(f"Final-Recipient: {_addressType(r.address)}")
        status.append(f"Action: {action}")
        status.append(f"Status: {r.lastStatus or ('2.0.0' if action in SUCCESS_NOTICES else '4.0.0')}")
        if r.remoteMTA:
            status.append(f"Remote-MTA: dns; {r.remoteMTA}")
        if r.remoteMTA and _SMTP_REPLY.match(r.lastError):
            # What the remote server said (RFC 3464 2.3.6).
            status.append(f"Diagnostic-Code: smtp; {_oneLine(r.lastError)}")
        elif r.lastError:
            status.append(f"Diagnostic-Code: X-mailplat; {_oneLine(r.lastError)}")
        status.append(f"Last-Attempt-Date: {date}")
        if action == "delayed" and retryUntil:
            status.append(
                "Will-Retry-Until: "
                + email.utils.formatdate(retryUntil, localtime=True)
            )

    if fullMessage:
        returned = "message/global" if utf8 else "message/rfc822"
        description = "Undelivered Message" if kind != "success" else "Message"
    else:
        returned = "message/global-headers" if utf8 else "text/rfc822-headers"
        description = (
            "Undelivered Message Headers" if kind != "success" else "Message Headers"
        )
    statusType = (
        "message/global-delivery-status" if utf8 else "message/delivery-status"
    )

    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{to}>",
        f"Subject: {_SUBJECTS[kind]}",
        f"Date: {date}",
        f"Message-ID: <{envelope.id}.{secrets.token_hex(6)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        *text,
        f"--{boundary}",
        "Content-Description: Delivery report",
        f"Content-Type: {statusType}",
        "",
        *status,
        "",
        f"--{boundary}",
        f"Content-Description: {description}",
        f"Content-Type: {returned}",
        "",
        "",
    ]
    out = "\r\n".join(head).encode("utf-8")
    body = original if original.endswith(b"\r\n") or not original else original + b"\r\n"
    out += body
    out += f"\r\n--{boundary}--\r\n".encode("ascii")
    return out


def _wrap(paragraph, width=72):
    lines, line = [], ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines
