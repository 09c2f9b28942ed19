"""
The Authentication-Results header field (RFC 8601): each check adds its
results; the message gets one field, with our authserv-id (the configured
host name), listing every result in check order.

Result clauses are formatted with the authres library (quoting of property
values, RFC 8601 section 2.2); the field is folded one clause per line.
"""

from dataclasses import dataclass

import authres

from mailplat.trust.state import messageState

HEADER = "Authentication-Results"


@dataclass(frozen=True)
class AuthResult:
    """
    One C{resinfo} (RFC 8601 section 2.2): C{method=result
    (comment) reason="..." ptype.property=value ...}.

    @ivar properties: C{(ptype, property, value)} triples, such as
        C{("smtp", "mailfrom", "user@example.com")}.
    """

    method: str
    result: str
    properties: tuple = ()
    reason: str = None
    comment: str = None

    def format(self):
        """
        @return: the clause as text.
        """
        clause = authres.AuthenticationResult(
            self.method,
            result=self.result,
            result_comment=_comment(self.comment),
            reason=self.reason,
            properties=[
                authres.AuthenticationResultProperty(ptype, name, value)
                for ptype, name, value in self.properties
                if value is not None
            ],
        )
        return str(clause)


def _comment(text):
    if not text:
        return None
    # A comment may not hold unbalanced parentheses or CR/LF.
    return "".join(c for c in text if c not in "()\\\r\n" and (" " <= c <= "~"))


def formatHeader(authservId, results):
    """
    The whole header field, ending in CRLF, folded one result per line.

    @param results: L{AuthResult} objects; none gives C{; none}.
    @return: L{bytes}.
    """
    clauses = [r.format() for r in results] or ["none"]
    text = f"{HEADER}: {authservId};\r\n\t" + ";\r\n\t".join(clauses) + "\r\n"
    return text.encode("utf-8")


def addResults(facts, results):
    """
    Add C{results} to the message's Authentication-Results field in
    C{facts.extraHeaders}: the field is written the first time and
    replaced in place afterwards, so it holds every result so far even if
    a later check ends the stage.
    """
    if not results:
        return
    state = messageState(facts)
    state.results.extend(results)
    header = formatHeader(facts.context.config.hostname, state.results)
    for i, existing in enumerate(facts.extraHeaders):
        if existing is state.header:
            facts.extraHeaders[i] = header
            break
    else:
        facts.extraHeaders.append(header)
    state.header = header


def parseHeader(field):
    """
    Parse an Authentication-Results field (for tests and tools).

    @param field: the field as text, name included, unfolded or not.
    @return: an L{authres.AuthenticationResultsHeader}.
    """
    unfolded = field.replace("\r\n", "").replace("\n", "").strip()
    return authres.AuthenticationResultsHeader.parse(unfolded)
