"""Test-only fault injection for the ClientApp (used by the fault-injection tests).

Nothing here is active unless the client process runs with ``KOSMOS_FL_FAULT`` set, e.g.
``KOSMOS_FL_FAULT=nan`` (reply with NaN weights), ``huge`` (weights times 1e8), ``shape`` (a
transposed first matrix) or ``delay:<seconds>`` (sleep before training, to hold a round open).
Several faults combine with commas. The variable reaches the ClientApp through the SuperNode's
environment, which inherits the KOSMoS client's.
"""

from __future__ import annotations

import os
import time

import numpy as np

ENV = "KOSMOS_FL_FAULT"


def _faults() -> list[str]:
    return [f.strip() for f in os.environ.get(ENV, "").split(",") if f.strip()]


def before_training() -> None:
    """Apply a ``delay:<seconds>`` fault."""
    for fault in _faults():
        if fault.startswith("delay:"):
            time.sleep(float(fault.split(":", 1)[1]))


def corrupt(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Apply ``nan`` / ``huge`` / ``shape`` faults to the weights a client sends back."""
    faults = _faults()
    if not faults:
        return weights
    out = [w.copy() for w in weights]
    for fault in faults:
        if fault == "nan":
            out[0].flat[0] = np.nan
        elif fault == "huge":
            out = [w * np.asarray(1e8, dtype=w.dtype) for w in out]
        elif fault == "shape":
            out[0] = np.ascontiguousarray(out[0].reshape(-1)[:-1])  # one value short
    return out
