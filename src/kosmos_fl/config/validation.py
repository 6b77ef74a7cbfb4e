"""Validation errors as one line that names the key and the fix (``ENV_PREFIX`` spelling too)."""

from __future__ import annotations

import difflib
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kosmos_fl.errors import ConfigError

ENV_PREFIX = "DYNACONF"

M = TypeVar("M", bound=BaseModel)


def _known_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Keys allowed at ``path`` inside ``model`` (nested models, also optional ones)."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        candidates = (field.annotation, *typing.get_args(field.annotation))
        nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _format_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line naming the key and the fix (control characters in user keys or values escaped)."""
    return _describe(exc, model).replace("\r", "\\r").replace("\n", "\\n")


def _describe(exc: ValidationError, model: type[BaseModel]) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        known = _known_keys(model, first["loc"][:-1])
        hint = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(known)}"
        return f"config key '{key}' is not known{extra}"
    if first["type"] == "value_error" and not first["loc"]:  # a rule across keys (model validator)
        return f"config: {str(first['msg']).removeprefix('Value error, ')}"
    env = f"{ENV_PREFIX}_{key.replace('.', '__')}"
    got = first.get("input")
    got_s = repr(got) if not isinstance(got, dict) else "a mapping"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"config key '{key}': {first['msg']} (got {got_s}); fix it in the config file or {env}{more}"


def build(model: type[M], data: dict[str, Any]) -> M:
    """``model`` from ``data``, or a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, model)) from None
