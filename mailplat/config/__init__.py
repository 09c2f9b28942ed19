"""
Configuration: TOML in, a validated L{Config} out.
"""

from mailplat.config.loader import (
    ConfigError,
    configFromDict,
    loadConfig,
    loadConfigString,
)
from mailplat.config.schema import (
    AccessConfig,
    AuthConfig,
    Config,
    ListenerConfig,
    QueueConfig,
    SMTPConfig,
    StorageConfig,
    TLSConfig,
)

__all__ = [
    "AccessConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ListenerConfig",
    "QueueConfig",
    "SMTPConfig",
    "StorageConfig",
    "TLSConfig",
    "configFromDict",
    "loadConfig",
    "loadConfigString",
]
