"""Bearing and turbofan data: readers, features, spectra, caches and generators.

One sub-package per kind of machine: :mod:`~kosmos_fl.data.bearing` (FEMTO / PRONOSTIA) and
:mod:`~kosmos_fl.data.turbofan` (C-MAPSS, PostgreSQL, the 2021 layouts).

Modules:

* :mod:`~kosmos_fl.data.bearing.femto`: raw FEMTO-ST / PRONOSTIA reader and RUL labels;
* :mod:`~kosmos_fl.data.bearing.features`: the 54 vibration features (27 per axis);
* :mod:`~kosmos_fl.data.bearing.spectra`: batched STFT magnitudes, the (129, 21, 2) CNN input;
* :mod:`~kosmos_fl.data.bearing.processed`: processed bearings, the cache, prepared and 2021 layouts;
* :mod:`~kosmos_fl.data.bearing.generate`: seeded synthetic bearings in the raw format;
* :mod:`~kosmos_fl.data.turbofan.cmapss`: NASA C-MAPSS reader, labels, normaliser, windows, generator;
* :mod:`~kosmos_fl.cli.data`: the ``kosmos-fl data`` commands.

The most used names are re-exported lazily (importing this package stays cheap, which keeps
``kosmos-fl --help`` fast): ``from kosmos_fl.data import load_bearings``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_bearings": "bearing.processed",
    "prepare_bearing": "bearing.processed",
    "prepare_dataset": "bearing.processed",
    "ProcessedBearing": "bearing.processed",
    "PIPELINE_VERSION": "bearing.processed",
    "read_bearing": "bearing.femto",
    "find_bearings": "bearing.femto",
    "rul_labels": "bearing.femto",
    "RawBearing": "bearing.femto",
    "CONDITIONS": "bearing.femto",
    "extract_features": "bearing.features",
    "FEATURE_COLUMNS": "bearing.features",
    "FEATURE_NAMES": "bearing.features",
    "compute_spectra": "bearing.spectra",
    "generate_dataset": "bearing.generate",
    "BEARING_ORDER": "bearing.generate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
