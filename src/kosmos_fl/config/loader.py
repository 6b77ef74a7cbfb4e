"""Reading a config: YAML file, ``DYNACONF_*`` environment overrides, 2021 keys, validation.

``config.yaml`` keeps the 2021 KOSMoS keys; every key can be overridden from the environment as the
2021 compose file did (``DYNACONF_num_clients=1``, nested keys with ``__``:
``DYNACONF_usecase__params__model=ffnn``). Loading goes through dynaconf (the 2021 loader, so env
values are parsed the same way), validation through pydantic; every problem becomes one
:class:`~kosmos_fl.errors.ConfigError` line that names the key and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from kosmos_fl.config import compat2021
from kosmos_fl.config.client import ClientConfig
from kosmos_fl.config.server import ServerConfig
from kosmos_fl.config.validation import ENV_PREFIX, build
from kosmos_fl.errors import ConfigError


def _dynaconf_internal_keys() -> set[str]:
    from dynaconf import default_settings

    return {k for k in dir(default_settings) if k.isupper()}


def _lower_top(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def read_settings(path: Path | None) -> dict[str, Any]:
    """Read ``path`` (may be None: defaults only) and apply ``DYNACONF_*`` overrides."""
    from dynaconf import Dynaconf

    files: list[str] = []
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: fix the syntax") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(raw).__name__}")
        # absolute: dynaconf looks a relative name up beside the running script and in its parent
        # folders before the current one, so `-c config.yaml` could read the checkout's file
        files.append(str(path.resolve()))
    try:
        settings = Dynaconf(
            settings_files=files,
            envvar_prefix=ENV_PREFIX,
            environments=False,
            merge_enabled=False,
        )
        data = settings.as_dict()
    except Exception as exc:  # dynaconf raises assorted parse errors for bad env values
        raise ConfigError(
            f"could not read the configuration ({exc}); check {ENV_PREFIX}_* "
            "environment variables for malformed values"
        ) from None
    internal = _dynaconf_internal_keys()
    return _lower_top({k: v for k, v in data.items() if k not in internal})


def load_server_config(path: Path | None = None, **overrides: Any) -> ServerConfig:
    """Load and validate the server config; keyword overrides win over file and environment.
    2021 keys are translated first (:mod:`kosmos_fl.config.compat2021`; one warning per obsolete key)."""
    data = compat2021.server_settings(read_settings(path), warn=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return build(ServerConfig, data)


def load_client_config(path: Path | None = None, **overrides: Any) -> ClientConfig:
    """Load and validate the client config; keyword overrides win over file and environment.
    2021 keys are translated first (:mod:`kosmos_fl.config.compat2021`; one warning per obsolete key)."""
    data = compat2021.client_settings(read_settings(path), warn=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return build(ClientConfig, data)


def env_overrides() -> dict[str, str]:
    """The ``DYNACONF_*`` variables currently set (for logging what overrode the file)."""
    return {k: v for k, v in os.environ.items() if k.startswith(f"{ENV_PREFIX}_")}
