"""CargoBay's global configuration, ``config.yaml`` (seed 004, section 2.1.3).

See :mod:`cargobay.config.settings` for the format and the rules.
"""

from cargobay.config.settings import (
    CacheStrategy,
    Config,
    Defaults,
    Networking,
    PlatformSettings,
    dump_config,
    get_key,
    load_config,
    parse_config,
    save_config,
    set_key,
    settings_items,
)

__all__ = [
    "CacheStrategy",
    "Config",
    "Defaults",
    "Networking",
    "PlatformSettings",
    "dump_config",
    "get_key",
    "load_config",
    "parse_config",
    "save_config",
    "set_key",
    "settings_items",
]
