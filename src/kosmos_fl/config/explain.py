"""``kosmos-fl config show`` / ``config check``: the effective value of every key and where it came
from (the built-in default, the file, or a ``DYNACONF_*`` environment variable), without starting
anything. Secrets are masked and credentials in URIs removed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from kosmos_fl.config import compat2021
from kosmos_fl.config.client import ClientConfig
from kosmos_fl.config.loader import _lower_top, read_settings
from kosmos_fl.config.server import ServerConfig
from kosmos_fl.config.validation import ENV_PREFIX, build
from kosmos_fl.redact import redact

Kind = Literal["server", "client"]
Source = Literal["default", "file", "env"]


def env_keys() -> set[str]:
    """Top-level keys set by ``DYNACONF_*`` variables (``DYNACONF_usecase__params__model``: ``usecase``)."""
    prefix = f"{ENV_PREFIX}_"
    return {k[len(prefix) :].split("__")[0].lower() for k in os.environ if k.startswith(prefix)}


def _file_keys(path: Path | None, kind: Kind) -> set[str]:
    if path is None:
        return set()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    translate = compat2021.server_settings if kind == "server" else compat2021.client_settings
    return set(translate(_lower_top(raw), warn=False)) if isinstance(raw, dict) else set()


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return redact(text)


def explain(path: Path | None, kind: Kind) -> list[tuple[str, str, Source]]:
    """Per key of the validated config of ``path`` plus the environment: (key, value, source);
    raises :class:`~kosmos_fl.errors.ConfigError` with one line when it is not valid."""
    translate = compat2021.server_settings if kind == "server" else compat2021.client_settings
    data = translate(read_settings(path), warn=True)
    model: type[ServerConfig | ClientConfig] = ServerConfig if kind == "server" else ClientConfig
    cfg = build(model, data)
    from_file, from_env = _file_keys(path, kind), env_keys()
    values = cfg.model_dump(mode="json")
    rows: list[tuple[str, str, Source]] = []
    for key in type(cfg).model_fields:
        source: Source = "env" if key in from_env else "file" if key in from_file else "default"
        rows.append((key, _shown(values.get(key)), source))
    return rows
