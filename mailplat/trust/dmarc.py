"""
DMARC (RFC 7489): policy discovery, identifier alignment with the SPF and
DKIM results, and the policy to apply (p, sp, pct).

The organizational domain comes from the Public Suffix List of the
publicsuffixlist package (RFC 7489 section 3.2).  Record parsing is ours:
it is a short tag list (section 6.3), and the validation rules of section
6.6.3 (an invalid p= with a valid rua= acts as p=none) are easier to follow
here than around a library.
"""

import random
import re
from dataclasses import dataclass

from twisted.internet import defer

from mailplat.dns import NoSuchDomain, TemporaryDNSError

PASS = "pass"
FAIL = "fail"
NONE = "none"
TEMPERROR = "temperror"
PERMERROR = "permerror"

POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", re.S)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s!]+(!\d+[kmgt]?)?$", re.I)


class DMARCRecordError(ValueError):
    """
    A DMARC record that cannot be used; the message says why.
    """


@dataclass(frozen=True)
class DMARCRecord:
    """
    A parsed policy record (RFC 7489 section 6.3).
    """

    p: str
    sp: str = None
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple = ()
    ruf: tuple = ()
    fo: str = "0"
    text: str = ""

    @property
    def subdomainPolicy(self):
        return self.sp or self.p


def isDMARCRecord(text):
    """
    Whether a TXT record is a DMARC record: it starts with C{v=DMARC1}
    (RFC 7489 section 6.6.3).
    """
    m = _TAG.match(text.split(";", 1)[0])
    return m is not None and m.group(1) == "v" and m.group(2) == "DMARC1"


def _uris(value):
    uris = tuple(u.strip() for u in value.split(",") if u.strip())
    return tuple(u for u in uris if _URI.match(u))


def parseRecord(text):
    """
    Parse a DMARC record.

    @raise DMARCRecordError: it is not a usable record.
    """
    tags = {}
    for i, part in enumerate(text.split(";")):
        if not part.strip():
            continue
        m = _TAG.match(part)
        if m is None:
            raise DMARCRecordError(f"bad tag {part.strip()!r}")
        name, value = m.group(1).lower(), m.group(2)
        if i == 0 and (name != "v" or value != "DMARC1"):
            raise DMARCRecordError("the record must start with v=DMARC1")
        tags.setdefault(name, value)
    p = tags.get("p", "").lower()
    sp = tags.get("sp")
    rua = _uris(tags.get("rua", ""))
    if p not in POLICIES or (sp is not None and sp.lower() not in POLICIES):
        # RFC 7489 section 6.6.3: a record with an invalid or missing p (or
        # an invalid sp) but a valid rua acts as p=none.
        if not rua:
            raise DMARCRecordError(
                "p= is missing or invalid" if p not in POLICIES else "sp= is invalid"
            )
        p, sp = "none", None
    pct = tags.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        raise DMARCRecordError(f"pct={pct} is not 0 to 100")
    for tag in ("adkim", "aspf"):
        if tags.get(tag, "r").lower() not in ("r", "s"):
            raise DMARCRecordError(f"{tag}={tags[tag]} is not r or s")
    return DMARCRecord(
        p=p,
        sp=sp.lower() if sp else None,
        pct=int(pct),
        adkim=tags.get("adkim", "r").lower(),
        aspf=tags.get("aspf", "r").lower(),
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
        fo=tags.get("fo", "0"),
        text=text,
    )


class OrganizationalDomains:
    """
    The organizational domain of a name (RFC 7489 section 3.2): the
    registrable domain under its public suffix.
    """

    _shared = None

    def __init__(self, psl=None):
        if psl is None:
            psl = self._sharedList()
        self.psl = psl
        self._cache = {}

    @classmethod
    def _sharedList(cls):
        """
        The list bundled with publicsuffixlist, parsed once (on first use,
        not at import) and shared: it is read-only.
        """
        if cls._shared is None:
            from publicsuffixlist import PublicSuffixList

            cls._shared = PublicSuffixList()
        return cls._shared

    def __call__(self, domain):
        domain = domain.lower().rstrip(".")
        org = self._cache.get(domain)
        if org is None:
            org = self.psl.privatesuffix(domain) or domain
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[domain] = org
        return org


def aligned(identifier, fromDomain, mode, organizational):
    """
    Identifier alignment (RFC 7489 section 3.1): strict needs the same
    name, relaxed the same organizational domain.
    """
    if not identifier:
        return False
    a, b = identifier.lower().rstrip("."), fromDomain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational(a) == organizational(b)


@dataclass(frozen=True)
class DMARCResult:
    """
    @ivar result: C{pass}, C{fail}, C{none} (no policy), C{temperror},
        C{permerror}.
    @ivar fromDomain: the RFC5322.From domain.
    @ivar policy: the policy published for it (after C{sp}), or L{None}.
    @ivar disposition: what to do after C{pct} sampling: C{none},
        C{quarantine}, C{reject} (only for C{fail}).
    @ivar sampled: whether C{pct} kept the policy (C{False} means it was
        lowered one step, RFC 7489 section 6.6.4).
    """

    result: str
    fromDomain: str = None
    policy: str = None
    disposition: str = "none"
    spfAligned: bool = False
    dkimAligned: bool = False
    record: DMARCRecord = None
    problem: str = None
    sampled: bool = True


class DMARCEvaluator:
    """
    @ivar resolver: the L{mailplat.dns.Resolver}.
    @ivar organizational: an L{OrganizationalDomains}.
    @ivar rng: the L{random.Random} used for C{pct} sampling.
    """

    def __init__(self, resolver, organizational=None, rng=None):
        self.resolver = resolver
        self.organizational = organizational or OrganizationalDomains()
        self.rng = rng if rng is not None else random.Random()

    @defer.inlineCallbacks
    def discover(self, fromDomain):
        """
        Policy discovery (RFC 7489 section 6.6.3): C{_dmarc.FROM}, then
        C{_dmarc.ORG}.

        @return: a Deferred firing with C{(record, atOrganizational)} or
            C{(None, False)}.
        @raise TemporaryDNSError: a lookup failed.
        @raise DMARCRecordError: the record is not usable.
        """
        org = self.organizational(fromDomain)
        names = [fromDomain] if org == fromDomain else [fromDomain, org]
        for i, name in enumerate(names):
            try:
                texts = yield self.resolver.lookupTXT(f"_dmarc.{name}")
            except NoSuchDomain:
                continue
            records = [t.decode("utf-8", "replace") for t in texts]
            records = [t for t in records if isDMARCRecord(t)]
            if len(records) > 1:
                # Section 6.6.3: more than one record, no DMARC processing.
                raise DMARCRecordError(f"_dmarc.{name} has {len(records)} DMARC records")
            if records:
                return parseRecord(records[0]), i == 1
        return None, False

    @defer.inlineCallbacks
    def evaluate(self, fromDomain, spfDomain, spfResult, dkimResults):
        """
        @param fromDomain: the RFC5322.From domain.
        @param spfDomain: the domain SPF checked (MAIL FROM, or HELO for the
            null sender); C{spfResult} its result.
        @param dkimResults: L{mailplat.trust.dkim.DKIMResult} objects.
        @return: a Deferred firing with a L{DMARCResult}.
        """
        fromDomain = fromDomain.lower().rstrip(".")
        try:
            record, atOrg = yield self.discover(fromDomain)
        except TemporaryDNSError as e:
            return DMARCResult(TEMPERROR, fromDomain, problem=str(e))
        except DMARCRecordError as e:
            return DMARCResult(PERMERROR, fromDomain, problem=str(e))
        if record is None:
            return DMARCResult(NONE, fromDomain, problem="no DMARC record")
        org = self.organizational
        spfOK = spfResult == "pass" and aligned(spfDomain, fromDomain, record.aspf, org)
        dkimOK = any(
            r.result == "pass" and aligned(r.domain, fromDomain, record.adkim, org)
            for r in dkimResults
        )
        policy = record.subdomainPolicy if atOrg else record.p
        if spfOK or dkimOK:
            return DMARCResult(PASS, fromDomain, policy, "none", spfOK, dkimOK, record)
        disposition, sampled = policy, True
        if policy != "none" and record.pct < 100:
            if self.rng.random() * 100 >= record.pct:
                sampled = False
                disposition = "quarantine" if policy == "reject" else "none"
        return DMARCResult(
            FAIL, fromDomain, policy, disposition, False, False, record, sampled=sampled
        )
