"""
Finding check factories (built-ins and Twisted plugins) and building the
pipeline from the config.

Order: C{connection_limits} and C{greet_pause} first, then the C{[[check]]}
tables in config order (a table may name a built-in to place it), then the
built-ins not named: C{submission}, C{recipients}, C{relay}, C{mail_loop}.
The sender-authentication checks of L{mailplat.trust.checks} are built-ins
that run only when a table names them (then C{authentication_results} is
added last, unless named).
Recipients are refused unless a check accepts them: deny by default.
"""

from mailplat.interfaces import ICheck, ICheckFactory
from mailplat.plugins import describe, findPlugins, unknownName
from mailplat.policy.builtin import BUILTINS
from mailplat.policy.pipeline import Pipeline
from mailplat.trust.checks import INBOUND, TRUST_CHECKS, AuthenticationResultsCheck

_FIRST = ("connection_limits", "greet_pause")


class PolicyError(Exception):
    """
    The checks cannot be built; C{problems} lists why, one line each.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        Exception.__init__(self, "; ".join(self.problems))


def checkFactories(plugins=None, failures=None):
    """
    @param plugins: the plugin factories to use (default: every
        L{ICheckFactory} Twisted plugin found on C{sys.path}).
    @param failures: a list to which C{(file, problem)} pairs are added for
        plugin modules that failed to import.
    @return: a L{dict} of type name to factory.
    @raise PolicyError: two factories share a name, one has no name, or a
        mailplat plugin module (C{mailplat*.py}) failed to import.
    """
    plugins, problems, broken = findPlugins(ICheckFactory, plugins)
    if failures is not None:
        failures.extend(broken)
    factories = {f.name: f for f in BUILTINS + TRUST_CHECKS}
    for plugin in plugins:
        name = getattr(plugin, "name", None)
        where = describe(plugin)
        if not isinstance(name, str) or not name:
            problems.append(f"check plugin {where}: it has no name")
            continue
        if name in factories:
            problems.append(
                f"check plugin {where}: the name {name!r} is taken by "
                f"{describe(factories[name])}"
            )
            continue
        factories[name] = plugin
    if problems:
        raise PolicyError(problems)
    return factories


def buildPipeline(context, plugins=None):
    """
    @return: the L{Pipeline} for C{context.config}.
    @raise PolicyError: listing every problem (unknown type, bad options, a
        check that does not provide L{ICheck}, duplicate names).
    """
    failures = []
    factories = checkFactories(plugins, failures)
    problems = []
    configured = []
    named = set()
    for i, spec in enumerate(context.config.checks):
        factory = factories.get(spec.type)
        if factory is None:
            problems.append(
                f"check[{i}]: "
                + unknownName("check type", spec.type, sorted(factories), failures)
            )
            continue
        if spec.type in named:
            problems.append(f"check[{i}]: {spec.type!r} is listed twice")
            continue
        named.add(spec.type)
        try:
            check = factory.makeCheck(dict(spec.options), context)
        except ValueError as e:
            problems.append(f"check[{i}] ({spec.type}): {e}")
            continue
        if not ICheck.providedBy(check):
            problems.append(f"check[{i}] ({spec.type}): the check does not provide ICheck")
            continue
        configured.append(check)
    if problems:
        raise PolicyError(problems)
    builtins = {f.name: f for f in BUILTINS}
    first = [builtins[n].makeCheck({}, context) for n in _FIRST if n not in named]
    last = [
        f.makeCheck({}, context)
        for f in BUILTINS
        if f.name not in named and f.name not in _FIRST
    ]
    # The sender-authentication checks (mailplat.trust) run only when named;
    # a quarantine one of them decides is applied at the end of DATA.
    inbound = {f.name for f in INBOUND}
    if named & inbound and AuthenticationResultsCheck.name not in named:
        last.append(AuthenticationResultsCheck.makeCheck({}, context))
    return Pipeline(first + configured + last)
