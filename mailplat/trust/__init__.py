"""
Sender authentication and DNS tooling: SPF (RFC 7208), DKIM (RFC 6376, with
dkimpy), DMARC (RFC 7489), iprev/FCrDNS (RFC 8601 section 3), DNSBL/DNSWL
(RFC 5782), the Authentication-Results header (RFC 8601), outbound DKIM
signing, and the checks behind C{mailplat dns check}.

Every DNS lookup goes through the one resolver, L{mailplat.dns.Resolver}:
off the reactor thread, cached for each answer's TTL, pointed at the
configured name servers.  See docs/trust.md.
"""
