"""
Choosing the mailbox store C{[storage] backend} names: the built-in
C{maildir} (the default) and C{memory}, or an L{IMailStoreFactory} Twisted
plugin.

Plugins are looked up only when the config names one; the config loader
reports a backend nobody provides (and plugin modules that fail to import,
and two plugins with one name) with the other config errors, and
L{buildStore} reports what only making the store can show: bad options and a
store that does not provide L{IMailStore}.
"""

from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from mailplat.interfaces import IMailStore, IMailStoreFactory
from mailplat.plugins import describe, findPlugins, unknownName

BUILTIN_STORES = ("maildir", "memory")



def storeFactories(plugins=None):
    """
    @param plugins: the factories to use (default: every
        L{IMailStoreFactory} plugin on C{sys.path}).
    @return: C{(factories, problems, failures)}: the factories by name; a
        line for each plugin that has no name, a built-in name or another
        plugin's, and for each mailplat plugin module (C{mailplat*.py})
        that failed to import; and C{(file, problem)} for every plugin module
        that failed to import.
    """
    plugins, problems, failures = findPlugins(IMailStoreFactory, plugins)
    factories = {}
    for plugin in plugins:
        name = getattr(plugin, "name", None)
        if not isinstance(name, str) or not name:
            problems.append(f"store plugin {describe(plugin)}: it has no name")
        elif name in BUILTIN_STORES:
            problems.append(
                f"store plugin {describe(plugin)}: the name {name!r} is taken by a "
                "built-in store"
            )
        elif name in factories:
            problems.append(
                f"store plugin {describe(plugin)}: the name {name!r} is taken by "
                f"{describe(factories[name])}"
            )
        else:
            factories[name] = plugin
    return factories, problems, failures


def storeBackendProblems(backend, plugins=None):
    """
    What is wrong with C{backend} as a C{[storage] backend}, for the config
    loader.

    @return: a list of messages; empty when it can be used.
    """
    if backend in BUILTIN_STORES:
        return []
    return _problems(backend, *storeFactories(plugins))


def _problems(backend, factories, problems, failures):
    problems = list(problems)
    if backend not in factories:
        known = list(BUILTIN_STORES) + sorted(factories)
        problems.append(unknownName("mailbox store", backend, known, failures))
    return problems


def buildStore(config, plugins=None):
    """
    Make the store C{config.storage} describes.  Nothing is opened yet.

    @param plugins: the L{IMailStoreFactory} plugins to use (default: every
        one on C{sys.path}, looked up only for a plugin backend).
    @return: an L{IMailStore}.
    @raise mailplat.policy.registry.PolicyError: listing every problem.
    """
    storage = config.storage
    if storage.backend == "maildir":
        from mailplat.storage.maildir import MaildirStore

        return MaildirStore(storage.path, quota=storage.quota)
    if storage.backend == "memory":
        from mailplat.storage.memory import MemoryStore

        return MemoryStore(quota=storage.quota)
    from mailplat.policy.registry import PolicyError

    found = storeFactories(plugins)
    problems = _problems(storage.backend, *found)
    if problems:
        raise PolicyError([f"storage.backend: {p}" for p in problems])
    factories = found[0]
    factory = factories[storage.backend]
    where = f"storage ({storage.backend}, {describe(factory)})"
    try:
        store = factory.makeStore(dict(storage.options), config)
    except ValueError as e:
        raise PolicyError([f"{where}: {e}"]) from None
    try:
        verifyObject(IMailStore, store)
    except Invalid as e:
        # zope's message: a summary line, then one line per problem.
        lines = [line.strip() for line in str(e).strip().splitlines()]
        details = "; ".join(lines[1:4] or lines[:1])
        raise PolicyError([f"{where}: it does not provide IMailStore ({details})"]) from None
    return store
