"""
Recipient resolution: which mailboxes and external addresses an envelope
recipient stands for.

Lookup order for C{local+ext@domain} (Postfix's, with
C{recipient_delimiter = "+"}):

 1. an alias for the full address;
 2. a user with the full address;
 3. an alias for C{local@domain} (the extension removed);
 4. a user C{local@domain};
 5. C{postmaster@} any local domain, and bare C{postmaster} (RFC 5321
    4.5.1): the configured postmaster;
 6. a catch-all or domain mapping C{@domain}.

Local parts are case-insensitive.  Alias targets are resolved again, up to
L{mailplat.aliases.MAX_DEPTH} levels; external targets are returned as they
are.
"""

from dataclasses import dataclass

from mailplat.aliases import MAX_DEPTH, AliasTable


class UnknownRecipient(LookupError):
    """
    No mailbox, alias or catch-all matches.
    """


@dataclass(frozen=True)
class Resolution:
    """
    @ivar mailboxes: local user addresses to deliver to.
    @ivar external: addresses in other domains to relay to.
    """

    mailboxes: tuple
    external: tuple

    @property
    def all(self):
        return self.mailboxes + self.external


class RecipientResolver:
    """
    @ivar users: an L{mailplat.interfaces.IUserDirectory}.
    @ivar aliases: an L{mailplat.aliases.AliasTable}.
    @ivar isLocalDomain: C{f(domain) -> bool} for domains we accept mail for
        (mailbox domains and alias-only domains).
    """

    def __init__(self, users, aliases, isLocalDomain, postmaster, delimiter="+"):
        self.users = users
        self.aliases = aliases
        self.isLocalDomain = isLocalDomain
        self.postmaster = postmaster
        self.delimiter = delimiter

    def resolve(self, address):
        """
        I{blocking} (reads the user and alias files when they changed).

        @param address: an envelope recipient, C{local@domain} or
            C{postmaster}.
        @return: a L{Resolution}.
        @raise UnknownRecipient: nothing matches.
        """
        mailboxes, external = [], []
        self._resolve(address.lower(), mailboxes, external, 0, set())
        if not mailboxes and not external:
            raise UnknownRecipient(address)
        return Resolution(tuple(dict.fromkeys(mailboxes)), tuple(dict.fromkeys(external)))

    def _resolve(self, address, mailboxes, external, depth, seen):
        if depth > MAX_DEPTH or address in seen:
            return
        seen = seen | {address}
        if "@" not in address:
            if address == "postmaster" and self.postmaster:
                return self._resolve(self.postmaster, mailboxes, external, depth + 1, seen)
            raise UnknownRecipient(address)
        local, _, domain = address.rpartition("@")
        if not self.isLocalDomain(domain):
            external.append(address)
            return
        targets = self._lookup(local, domain)
        if targets is None:
            raise UnknownRecipient(address)
        for target in targets:
            if target == address:
                if self.users.exists(address):
                    mailboxes.append(address)
            else:
                self._resolve(target, mailboxes, external, depth + 1, seen)

    def _lookup(self, local, domain):
        """
        @return: the targets for C{local@domain}: C{(address,)} itself for a
            user, the alias targets, or L{None}.
        """
        aliases = self.aliases.entries()
        candidates = [local]
        if self.delimiter and self.delimiter in local:
            base = local.split(self.delimiter, 1)[0]
            if base:
                candidates.append(base)
        for candidate in candidates:
            full = f"{candidate}@{domain}"
            if full in aliases:
                return aliases[full]
            if self.users.exists(full):
                return (full,)
        if local == "postmaster" and self.postmaster:
            return (self.postmaster,)
        mapping = aliases.get("@" + domain)
        if mapping is not None:
            if len(mapping) == 1 and mapping[0].startswith("@"):
                return (f"{local}{mapping[0]}",)
            return mapping
        return None


def resolverFor(config, users):
    """
    The L{RecipientResolver} a L{mailplat.config.Config} describes.
    """
    return RecipientResolver(
        users,
        AliasTable(config.aliasesFile),
        config.isLocalDomain,
        config.postmaster,
        config.recipientDelimiter,
    )
