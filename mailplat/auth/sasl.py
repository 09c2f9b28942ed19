"""
SASL mechanisms (RFC 4422) shared by SMTP AUTH (RFC 4954), IMAP AUTHENTICATE
(RFC 3501 6.2.2, RFC 4959) and POP3 AUTH (RFC 5034): the built-in PLAIN
(RFC 4616) and LOGIN, the L{ISASLMechanismFactory} Twisted plugins, and the
base64 framing the three protocols have in common.

A mechanism turns client responses into C{twisted.cred} credentials; the
protocol hands those to its portal exactly as it does for LOGIN or
USER/PASS, so checkers do not know which mechanism was used.
"""

import base64
import binascii
import re

from twisted.cred.credentials import UsernamePassword
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from mailplat.interfaces import (
    ISASLMechanism,
    ISASLMechanismFactory,
    SASLAuthorizationRefused,
    SASLBadEncoding,
    SASLCancelled,
    SASLMalformedResponse,
)
from mailplat.plugins import describe, findPlugins, unknownName

# The mechanisms offered when the config names none.
DEFAULT = ("PLAIN", "LOGIN")

# RFC 4422 3.1: sasl-mech = 1*20mech-char; mech-char = UPPER-ALPHA / DIGIT
# / HYPHEN / UNDERSCORE.
_NAME = re.compile(r"[A-Z0-9_-]{1,20}\Z")


def decodeResponse(line):
    """
    Decode one client response as the three protocols send it: C{*}
    cancels the exchange (RFC 4422 3.5), C{=} is a response of zero length
    (the form RFC 4954 4 and RFC 4959 give an empty initial response), and
    anything else is base64.

    @param line: the response as received, without its line ending.
    @return: the decoded response, L{bytes}.
    @raise SASLCancelled: the client sent C{*}.
    @raise SASLBadEncoding: not base64.
    """
    if line == b"*":
        raise SASLCancelled()
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SASLBadEncoding(str(e)) from None


def encodeChallenge(challenge):
    """
    @return: a server challenge in base64, as the three protocols send it
        (an empty challenge is an empty string: C{334 }, C{+ }).
    """
    return base64.b64encode(challenge)


@implementer(ISASLMechanism)
class PlainMechanism:
    """
    PLAIN (RFC 4616): one response, C{[authzid] NUL authcid NUL passwd}.
    An authorization identity is accepted only when it names the
    authentication identity itself (compared without regard to case, as
    mailbox addresses are).
    """

    def respond(self, response):
        if response is None:
            # RFC 4616 2: the client sends its message after an empty
            # challenge.
            return b""
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SASLMalformedResponse("PLAIN: expected authzid NUL authcid NUL passwd")
        authzid, authcid, password = parts
        if not authcid:
            raise SASLMalformedResponse("PLAIN: empty authentication identity")
        if authzid and authzid.lower() != authcid.lower():
            raise SASLAuthorizationRefused(authcid, authzid)
        return UsernamePassword(authcid, password)


@implementer(ISASLMechanism)
class LoginMechanism:
    """
    LOGIN (draft-murchison-sasl-login): the server asks for C{Username:},
    then C{Password:}.  A client that sends the user name as an initial
    response skips the first challenge, as common clients do.
    """

    def __init__(self):
        self._user = None

    def respond(self, response):
        if self._user is None:
            if response is None:
                return b"Username:"
            self._user = response
            return b"Password:"
        if response is None:
            raise SASLMalformedResponse("LOGIN: no password")
        return UsernamePassword(self._user, response)


@implementer(ISASLMechanismFactory)
class BuiltinMechanism:
    """
    The factory of a built-in mechanism.
    """

    cleartext = True

    def __init__(self, name, mechanismClass):
        self.name = name
        self._mechanismClass = mechanismClass

    def makeMechanism(self, protocol, hostname):
        return self._mechanismClass()

    def __repr__(self):
        return f"<built-in SASL mechanism {self.name}>"


PLAIN = BuiltinMechanism("PLAIN", PlainMechanism)
LOGIN = BuiltinMechanism("LOGIN", LoginMechanism)
BUILTINS = (PLAIN, LOGIN)



def findMechanisms(plugins=None):
    """
    The mechanisms that could be configured: the built-ins and every
    L{ISASLMechanismFactory} plugin.

    @param plugins: the plugin factories to use (default: every plugin
        found on C{sys.path} with L{mailplat.plugins.loadPlugins}).
    @return: C{(factories, problems, failures)}: a L{dict} of name to
        factory; one line per broken plugin (two with one name, a bad name,
        one that does not provide the interface, a C{mailplat*.py} plugin
        module that failed to import), which stop start-up; and the
        C{(file, problem)} pairs of every plugin module that failed to
        import, as hints for unknown names.
    """
    plugins, problems, failures = findPlugins(ISASLMechanismFactory, plugins)
    factories = {f.name: f for f in BUILTINS}
    for plugin in plugins:
        where = describe(plugin)
        try:
            verifyObject(ISASLMechanismFactory, plugin)
        except Invalid as e:
            problems.append(
                f"SASL mechanism plugin {where}: it does not provide "
                f"ISASLMechanismFactory: {e}"
            )
            continue
        name = plugin.name
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(
                f"SASL mechanism plugin {where}: bad name {name!r} (RFC 4422 3.1: "
                "1 to 20 of A-Z 0-9 - _)"
            )
            continue
        if not isinstance(plugin.cleartext, bool):
            problems.append(
                f"SASL mechanism plugin {where}: cleartext must be True or False"
            )
            continue
        if name in factories:
            problems.append(
                f"SASL mechanism plugin {where}: the name {name!r} is taken by "
                f"{describe(factories[name])}"
            )
            continue
        factories[name] = plugin
    return factories, problems, failures


class SASLMechanisms:
    """
    The mechanisms one listener offers, in config order.

    @ivar factories: the L{ISASLMechanismFactory} providers.
    """

    def __init__(self, factories):
        self.factories = tuple(factories)
        self._byName = {f.name: f for f in self.factories}

    def get(self, name):
        """
        @param name: a mechanism name as a client sent it (L{str} or ASCII
            L{bytes}, any case: RFC 4422 3.1 names are compared as
            upper-case).
        @return: the configured factory of that name, or L{None}.
        """
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        return self._byName.get(name.upper())

    def offered(self, secure):
        """
        @param secure: whether the connection is under TLS.
        @return: the names a client may use on such a connection, in config
            order: mechanisms that send secrets in the clear only under TLS.
        """
        return [f.name for f in self.factories if secure or not f.cleartext]

    def allows(self, factory, secure):
        """
        @return: whether C{factory} may be used on a connection that is
            (C{secure}) or is not under TLS.
        """
        return secure or not factory.cleartext


def builtinMechanisms():
    """
    The default offer (PLAIN and LOGIN), for a context built without a
    config's choice.
    """
    return SASLMechanisms(BUILTINS)


class SASLRegistry:
    """
    Every mechanism the server knows, from which each listener's offer is
    chosen by name.
    """

    def __init__(self, factories):
        self.factories = dict(factories)

    def select(self, names):
        """
        @param names: mechanism names, already validated by the config.
        @return: a L{SASLMechanisms} offering them in that order.
        @raise KeyError: a name is unknown.
        """
        return SASLMechanisms([self.factories[n] for n in names])


def buildRegistry(config, plugins=None):
    """
    Find the mechanisms and check the ones C{config} names (in C{[auth]}
    and in each listener): each must be known, and its factory must make
    L{ISASLMechanism} providers.

    @param plugins: the plugin factories to use (default: every
        L{ISASLMechanismFactory} plugin on C{sys.path}).
    @return: a L{SASLRegistry}.
    @raise mailplat.policy.registry.PolicyError: listing every problem.
    """
    from mailplat.policy.registry import PolicyError

    factories, problems, failures = findMechanisms(plugins)
    named = {"auth.mechanisms": config.auth.mechanisms}
    for listener in config.listeners:
        if listener.mechanisms is not None:
            named[f"listen.{listener.name}.mechanisms"] = listener.mechanisms
    checked = set()
    for where, names in named.items():
        for name in names:
            factory = factories.get(name)
            if factory is None:
                problems.append(
                    f"{where}: "
                    + unknownName("SASL mechanism", name, sorted(factories), failures)
                )
                continue
            if name in checked:
                continue
            checked.add(name)
            try:
                mechanism = factory.makeMechanism("smtp", config.hostname)
            except Exception as e:
                problems.append(
                    f"SASL mechanism {name} ({describe(factory)}): makeMechanism "
                    f"failed: {type(e).__name__}: {e}"
                )
                continue
            if not ISASLMechanism.providedBy(mechanism):
                problems.append(
                    f"SASL mechanism {name} ({describe(factory)}): makeMechanism "
                    "returned an object that does not provide ISASLMechanism"
                )
    if problems:
        raise PolicyError(problems)
    return SASLRegistry(factories)


def knownMechanismNames(plugins=None):
    """
    For config validation: the names that may be configured.

    @return: C{(names, failures)}: a sorted list, and the C{(file, problem)}
        pairs of plugin modules that failed to import.
    """
    factories, _, failures = findMechanisms(plugins)
    return sorted(factories), failures
