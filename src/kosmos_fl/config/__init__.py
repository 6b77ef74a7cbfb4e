"""Server and client configuration as validated value objects.

One module per domain: ``network``, ``session``, ``limits``, ``security`` and ``privacy`` are the
sections of :class:`ServerConfig` (keys stay flat in the file), ``client`` and ``edge`` the client's
settings, ``compat2021`` the 2021 keys, ``loader`` reading file and environment, ``validation`` the
one-line errors. What the rest of kosmos_fl uses is exported here.
"""

from kosmos_fl.config.client import SITE_KEYS, ClientConfig, SiteData
from kosmos_fl.config.limits import LimitsConfig
from kosmos_fl.config.loader import env_overrides, load_client_config, load_server_config, read_settings
from kosmos_fl.config.network import DEFAULT_PORTS, address_scheme, connect_url, split_address
from kosmos_fl.config.security import TLSConfig
from kosmos_fl.config.server import ServerConfig
from kosmos_fl.config.session import STRATEGIES, StrategyConfig, TrainingConfig, UseCaseConfig
from kosmos_fl.config.validation import ENV_PREFIX

__all__ = [
    "DEFAULT_PORTS",
    "ENV_PREFIX",
    "SITE_KEYS",
    "STRATEGIES",
    "ClientConfig",
    "LimitsConfig",
    "ServerConfig",
    "SiteData",
    "StrategyConfig",
    "TLSConfig",
    "TrainingConfig",
    "UseCaseConfig",
    "address_scheme",
    "connect_url",
    "env_overrides",
    "load_client_config",
    "load_server_config",
    "read_settings",
    "split_address",
]
