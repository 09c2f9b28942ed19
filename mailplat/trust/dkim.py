"""
DKIM (RFC 6376) with dkimpy: verifying every signature of a message
(rsa-sha256, RFC 6376; ed25519-sha256, RFC 8463) and signing outbound mail.

dkimpy blocks (it parses, hashes and asks DNS itself), so verification runs
in three steps: a thread reads the message and parses its DKIM-Signature
fields; the key records are fetched through the one resolver (concurrently,
cached, on the configured name servers); a thread runs dkimpy with a
C{dnsfunc} that answers from what was fetched.  dkimpy never queries DNS.
"""

import logging
from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value
from twisted.internet import defer

from mailplat.dns import NoSuchDomain, TemporaryDNSError

NONE = "none"
PASS = "pass"
FAIL = "fail"
POLICY = "policy"
NEUTRAL = "neutral"
TEMPERROR = "temperror"
PERMERROR = "permerror"

# The header fields RFC 6376 section 5.4.1 recommends signing, with the
# MIME fields and Message-ID; From is signed once more than it occurs
# ("over-signed", section 8.15) so that no From can be added.
SIGN_HEADERS = (
    "from", "reply-to", "subject", "date", "to", "cc",
    "resent-date", "resent-from", "resent-to", "resent-cc",
    "in-reply-to", "references",
    "list-id", "list-help", "list-unsubscribe", "list-subscribe",
    "list-post", "list-owner", "list-archive",
    "sender", "message-id", "mime-version", "content-type",
    "content-transfer-encoding",
)
OVERSIGN = ("from",)
ACCEPTED_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")


@dataclass(frozen=True)
class DKIMResult:
    """
    The verification of one signature (RFC 8601 section 2.7.1 results).

    @ivar b: the first 8 characters of the signature's C{b=}, to tell
        signatures of one domain apart (RFC 6008).
    """

    result: str
    domain: str = None
    selector: str = None
    algorithm: str = None
    identity: str = None
    b: str = None
    reason: str = None


def _silentLogger():
    """
    dkimpy's logger: quiet (its errors become our results, logged by the
    check).
    """
    logger = logging.getLogger("mailplat.trust.dkim.dkimpy")
    if not logger.handlers:
        logger.propagate = False
        logger.addHandler(logging.NullHandler())
    return logger


def _text(value):
    if value is None:
        return None
    return value.decode("ascii", "replace")


def parseSignatures(message, limit):
    """
    I{blocking} (CPU): the DKIM-Signature fields of C{message}, top first.

    @return: a list of C{dict} of tag to L{bytes}, or L{None} for a field
        whose tag list does not parse.
    """
    try:
        headers, _ = dkim.rfc822_parse(message)
    except dkim.MessageFormatError:
        return []
    out = []
    for name, value in headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            out.append(parse_tag_value(value))
        except InvalidTagValueList:
            out.append(None)
        if len(out) >= limit:
            break
    return out


def _keyName(tags):
    if tags is None or b"s" not in tags or b"d" not in tags:
        return None
    return (tags[b"s"] + b"._domainkey." + tags[b"d"]).decode("ascii", "replace").lower().rstrip(".")


def verifyMessage(message, tags, keys):
    """
    I{blocking} (CPU): verify each signature of C{message} with dkimpy.

    @param tags: what L{parseSignatures} gave.
    @param keys: key record name to the record (L{bytes}), or to an
        exception (L{NoSuchDomain}, L{TemporaryDNSError}) its lookup raised.
    @return: a list of L{DKIMResult}, one per signature.
    """
    results = []
    verifier = None
    for index, sig in enumerate(tags):
        if sig is None:
            results.append(DKIMResult(PERMERROR, reason="bad signature tag list"))
            continue
        fields = dict(
            domain=_text(sig.get(b"d")),
            selector=_text(sig.get(b"s")),
            algorithm=_text(sig.get(b"a")),
            identity=_text(sig.get(b"i")),
            b=_text(b"".join(sig.get(b"b", b"").split()))[:8] or None,
        )
        name = _keyName(sig)
        if name is None:
            results.append(DKIMResult(PERMERROR, reason="signature without d= or s=", **fields))
            continue
        if fields["algorithm"] not in ACCEPTED_ALGORITHMS:
            reason = f"algorithm {fields['algorithm']} is not accepted"
            if fields["algorithm"] == "rsa-sha1":
                reason += " (RFC 8301)"
            results.append(DKIMResult(POLICY, reason=reason, **fields))
            continue
        key = keys.get(name)
        if isinstance(key, TemporaryDNSError):
            results.append(DKIMResult(TEMPERROR, reason=f"key lookup: {key}", **fields))
            continue
        if isinstance(key, NoSuchDomain) or not key:
            results.append(DKIMResult(PERMERROR, reason=f"no key at {name}", **fields))
            continue
        if verifier is None:
            verifier = dkim.DKIM(message, logger=_silentLogger(), minkey=1024)

        def dnsfunc(query, timeout=5, key=key):
            return key

        try:
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except dkim.ValidationError as e:
            results.append(DKIMResult(FAIL, reason=str(e).split(" (got ")[0], **fields))
            continue
        except dkim.DKIMException as e:
            results.append(DKIMResult(PERMERROR, reason=str(e), **fields))
            continue
        except Exception as e:  # dkimpy raises others on malformed input
            results.append(DKIMResult(PERMERROR, reason=f"{type(e).__name__}: {e}", **fields))
            continue
        if ok:
            results.append(DKIMResult(PASS, **fields))
        else:
            results.append(DKIMResult(FAIL, reason="signature did not verify", **fields))
    return results


def summary(results):
    """
    The message's DKIM result for the action: C{pass} if one signature
    passed; else the first of C{fail}, C{temperror}, C{permerror},
    C{policy} found; C{none} without signatures.
    """
    found = {r.result for r in results}
    if not results:
        return NONE
    for result in (PASS, FAIL, TEMPERROR, PERMERROR, POLICY):
        if result in found:
            return result
    return NEUTRAL


class DKIMVerifier:
    """
    Verifies the DKIM signatures of messages.

    @ivar resolver: the L{mailplat.dns.Resolver} key records come from.
    @ivar runBlocking: runs dkimpy off the reactor thread.
    @ivar maxSignatures: signatures verified per message (more are ignored:
        each costs a DNS lookup and a public-key operation).
    """

    def __init__(self, resolver, runBlocking, maxSignatures=5):
        self.resolver = resolver
        self.runBlocking = runBlocking
        self.maxSignatures = maxSignatures

    @defer.inlineCallbacks
    def verify(self, readMessage):
        """
        @param readMessage: a I{blocking} callable returning the message
            (L{bytes}, CRLF line endings).
        @return: a Deferred firing with a list of L{DKIMResult}.
        """

        def parse():
            message = readMessage()
            return message, parseSignatures(message, self.maxSignatures)

        message, tags = yield self.runBlocking(parse)
        if not tags:
            return []
        names = sorted({n for n in map(_keyName, tags) if n is not None})
        lookups = yield defer.DeferredList(
            [self.resolver.lookupTXT(n) for n in names], consumeErrors=True
        )
        keys = {}
        for name, (ok, value) in zip(names, lookups):
            if ok:
                records = [r for r in value if b"p=" in r]
                keys[name] = records[0] if records else None
            elif value.check(NoSuchDomain, TemporaryDNSError):
                keys[name] = value.value
            else:
                keys[name] = TemporaryDNSError(str(value.value))
        results = yield self.runBlocking(verifyMessage, message, tags, keys)
        return results


def signHeaders(message, keys, headers=SIGN_HEADERS, oversign=OVERSIGN):
    """
    I{blocking} (CPU): DKIM-Signature fields for C{message}, one per key,
    relaxed/relaxed (RFC 6376 section 3.4), signing the C{headers} present
    and C{oversign} once more.

    @param keys: L{mailplat.trust.keys.SigningKey} objects.
    @return: a list of L{bytes} header fields ending in CRLF.
    """
    from mailplat.trust.keys import dkimpyKey

    if not keys:
        return []
    signer = dkim.DKIM(message, logger=_silentLogger())
    present = [name.lower().decode("ascii", "replace") for name, _ in signer.headers]
    include = []
    for name in headers:
        count = present.count(name)
        if name in oversign:
            count += 1
        include += [name] * count
    fields = []
    for key in keys:
        field = signer.sign(
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            dkimpyKey(key.key),
            signature_algorithm=key.signatureAlgorithm.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.encode("ascii") for h in include],
        )
        if not field.endswith(b"\r\n"):
            field += b"\r\n"
        fields.append(field)
    return fields
