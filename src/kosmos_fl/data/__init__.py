"""Bearing and turbofan data: readers, features, spectra, caches and generators.

Modules:

* :mod:`~kosmos_fl.data.femto`: raw FEMTO-ST / PRONOSTIA reader and RUL labels;
* :mod:`~kosmos_fl.data.features`: the 54 vibration features (27 per axis);
* :mod:`~kosmos_fl.data.spectra`: batched STFT magnitudes, the (129, 21, 2) CNN input;
* :mod:`~kosmos_fl.data.processed`: processed bearings, the cache, prepared and 2021 layouts;
* :mod:`~kosmos_fl.data.generate`: seeded synthetic bearings in the raw format;
* :mod:`~kosmos_fl.data.cmapss`: NASA C-MAPSS reader, labels, normaliser, windows, generator;
* :mod:`~kosmos_fl.cli.data`: the ``kosmos-fl data`` commands.

The most used names are re-exported lazily (importing this package stays cheap, which keeps
``kosmos-fl --help`` fast): ``from kosmos_fl.data import load_bearings``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_bearings": "processed",
    "prepare_bearing": "processed",
    "prepare_dataset": "processed",
    "ProcessedBearing": "processed",
    "PIPELINE_VERSION": "processed",
    "read_bearing": "femto",
    "find_bearings": "femto",
    "rul_labels": "femto",
    "RawBearing": "femto",
    "CONDITIONS": "femto",
    "extract_features": "features",
    "FEATURE_COLUMNS": "features",
    "FEATURE_NAMES": "features",
    "compute_spectra": "spectra",
    "generate_dataset": "generate",
    "BEARING_ORDER": "generate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
