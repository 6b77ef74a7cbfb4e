"""Use-case discovery through the ``kosmos_fl.usecases`` entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from kosmos_fl.errors import UseCaseError
from kosmos_fl.usecases.base import ArrayDataset, UseCase, UseCaseParams

ENTRY_POINT_GROUP = "kosmos_fl.usecases"

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArrayDataset",
    "UseCase",
    "UseCaseParams",
    "available_usecases",
    "load_usecase",
    "usecase_class",
]


def available_usecases() -> dict[str, Any]:
    """Registered use-case entry points by name (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def usecase_class(name: str, version: str | None = None) -> type[UseCase]:
    """The class registered as ``name``; with ``version``, refuse a different installed version."""
    eps = available_usecases()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UseCaseError(
            f"use case '{name}' is not installed here (installed: {known}); install the package "
            f"that provides it or fix the use case name in the config"
        )
    try:
        cls = eps[name].load()
    except Exception as exc:
        raise UseCaseError(f"use case '{name}' could not be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, UseCase)):
        raise UseCaseError(f"entry point '{name}' does not name a kosmos_fl UseCase subclass")
    if version is not None and cls.version != version:
        raise UseCaseError(
            f"use case '{name}' version mismatch: the server runs {version}, this side has "
            f"{cls.version}; install the same version on server and clients"
        )
    return cls


def load_usecase(name: str, params: Mapping[str, Any] | None = None, version: str | None = None) -> UseCase:
    """Instantiate the use case ``name`` with validated ``params``."""
    return usecase_class(name, version)(params)
