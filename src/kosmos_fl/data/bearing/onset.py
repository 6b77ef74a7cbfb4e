"""Per-bearing normalised health indicators and degradation onset, computed causally.

Bearings fail after 1.4 to 7.8 hours on the same test rig, and the vibration level of a healthy
bearing differs between bearings more than it changes before degradation starts. A model that
must work on a bearing it has never seen therefore gets no absolute levels, only how far this
bearing has moved from its own start (:func:`relative_level`), the worst such move so far, and
whether and since when that move has lasted (:func:`onset_hours`). :func:`ratio_inputs` puts
them beside the log of the elapsed time, so a model can predict remaining life as a multiple of
the time already run (``kosmos_fl.ml.ratio``), which is the same for a short and a long life at
the same health.

Every column of row ``i`` depends on snapshots ``0..i`` only.
"""

from __future__ import annotations

import numpy as np

from kosmos_fl.data.bearing.features import FEATURE_COLUMNS
from kosmos_fl.data.bearing.health import ewma

SECONDS_PER_HOUR = 3600.0
#: Hours added before taking logs of times: the first snapshot has elapsed time 0.
TIME_OFFSET_HOURS = 0.05
#: Snapshots that define a bearing's own starting level (5 min at one snapshot per 10 s).
BASELINE_SNAPSHOTS = 30
#: Levels of the smoothed log-RMS above the start (x1.5 and x2.5 the starting RMS) that count as
#: onset once held for :data:`ONSET_HOLD` snapshots in a row.
ONSET_LEVELS = (float(np.log(1.5)), float(np.log(2.5)))
ONSET_HOLD = 6
_COL = {c: i for i, c in enumerate(FEATURE_COLUMNS)}
#: Columns of :func:`ratio_inputs`, in order.
RATIO_INPUTS: tuple[str, ...] = (
    "log_elapsed_hours",
    "peak_rel",
    "peak_rel_max",
    "rms_rel",
    "rms_rel_max",
    "rms_rel_slow",
    "rms_rel_slow_max",
    *(f"{kind}_{i}" for i in range(len(ONSET_LEVELS)) for kind in ("onset", "log_hours_since_onset")),
)


def peak_and_rms(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot: the largest absolute acceleration on either axis, and the RMS of both axes
    together (g), from the 54 features (:data:`~kosmos_fl.data.bearing.features.FEATURE_COLUMNS`)."""
    f = np.asarray(features, dtype=np.float64)
    peak = np.maximum.reduce(
        [f[:, _COL[f"{a}_maximum"]] for a in ("horizontal", "vertical")]
        + [-f[:, _COL[f"{a}_minimum"]] for a in ("horizontal", "vertical")]
    )
    rms = np.sqrt(sum(f[:, _COL[f"{a}_root_mean_square"]] ** 2 for a in ("horizontal", "vertical")))
    return np.maximum(peak, 1e-6), np.maximum(rms, 1e-6)


def relative_level(log_values: np.ndarray, span: float, baseline: int = BASELINE_SNAPSHOTS) -> np.ndarray:
    """EWMA (``span`` snapshots) of a log-level minus the mean of the bearing's first
    ``baseline`` snapshots (an expanding mean until that many exist)."""
    x = np.asarray(log_values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    k = np.minimum(np.arange(1, len(x) + 1), baseline)
    base = np.cumsum(x)[k - 1] / k
    return ewma(x[:, None], span)[:, 0] - base


def onset_hours(
    level: np.ndarray, elapsed_hours: np.ndarray, threshold: float, hold: int = ONSET_HOLD
) -> np.ndarray:
    """Per snapshot, the elapsed hours at which ``level`` first stayed above ``threshold`` for
    ``hold`` snapshots in a row (the first of them), or NaN while that has not happened."""
    above = np.asarray(level) > threshold
    n = len(above)
    out = np.full(n, np.nan)
    if n < hold:
        return out
    runs = np.convolve(
        above.astype(np.int64), np.ones(hold, dtype=np.int64), mode="valid"
    )  # runs[j]: j..j+hold-1
    hits = np.flatnonzero(runs == hold)
    if hits.size:
        first = int(hits[0])
        out[first + hold - 1 :] = np.asarray(elapsed_hours, dtype=np.float64)[first]
    return out


def ratio_inputs(features: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Inputs of one bearing for the ``ratio`` model, one row per snapshot in time order, float32,
    columns :data:`RATIO_INPUTS`."""
    t = np.asarray(timestamps, dtype=np.float64)
    n = len(t)
    if np.asarray(features).shape[0] != n:
        raise ValueError(f"features have {np.asarray(features).shape[0]} rows, timestamps {n}")
    if n == 0:
        return np.zeros((0, len(RATIO_INPUTS)), dtype=np.float32)
    hours = (t - t[0]) / SECONDS_PER_HOUR
    peak, rms = peak_and_rms(features)
    peak_rel = relative_level(np.log(peak), 6)
    rms_rel = relative_level(np.log(rms), 6)
    rms_slow = relative_level(np.log(rms), 60)
    cols = [
        np.log(hours + TIME_OFFSET_HOURS),
        peak_rel,
        np.maximum.accumulate(peak_rel),
        rms_rel,
        np.maximum.accumulate(rms_rel),
        rms_slow,
        np.maximum.accumulate(rms_slow),
    ]
    for level in ONSET_LEVELS:
        start = onset_hours(rms_rel, hours, level)
        seen = ~np.isnan(start)
        cols.append(seen.astype(np.float64))
        cols.append(np.where(seen, np.log(hours - np.nan_to_num(start) + TIME_OFFSET_HOURS), 0.0))
    return np.stack(cols, axis=1).astype(np.float32)
