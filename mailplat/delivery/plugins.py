"""
Delivery targets from Twisted plugins, named in C{[[target]]} tables.
"""

from mailplat.interfaces import IDeliveryTarget, IDeliveryTargetFactory
from mailplat.plugins import findPlugins, unknownName
from mailplat.policy.registry import PolicyError


def buildTargets(context, plugins=None):
    """
    @param plugins: the factories to use (default: every
        L{IDeliveryTargetFactory} plugin on C{sys.path}).
    @return: the plugin targets, in config order.
    @raise PolicyError: listing every problem: an unknown type, bad options,
        a target that does not provide L{IDeliveryTarget}, two plugins with
        one name, a mailplat plugin module that fails to import.
    """
    plugins, problems, failures = findPlugins(IDeliveryTargetFactory, plugins)
    factories = {}
    for plugin in plugins:
        name = getattr(plugin, "name", None)
        if name in factories:
            problems.append(f"target plugin {plugin!r}: the name {name!r} is taken")
            continue
        factories[name] = plugin
    targets = []
    for i, spec in enumerate(context.config.targets):
        factory = factories.get(spec.type)
        if factory is None:
            problems.append(
                f"target[{i}]: "
                + unknownName("target type", spec.type, sorted(factories), failures)
            )
            continue
        try:
            target = factory.makeTarget(dict(spec.options), context)
        except ValueError as e:
            problems.append(f"target[{i}] ({spec.type}): {e}")
            continue
        if not IDeliveryTarget.providedBy(target):
            problems.append(f"target[{i}] ({spec.type}): it does not provide IDeliveryTarget")
            continue
        targets.append(target)
    if problems:
        raise PolicyError(problems)
    return targets
