"""Health-indicator inputs for the bearing RUL model, computed causally from a bearing's history.

One vibration snapshot says little about how much life is left: a healthy bearing looks the same
after one hour as after six. What does carry information is the trend of the features over the
bearing's recorded history and how long it has already run. :func:`health_inputs` turns the 54
per-snapshot features of one bearing (rows in time order) into model inputs built only from the
snapshot and the ones before it, so a prediction at snapshot ``i`` never looks into the future
and is the same whether the recording stops at ``i`` or goes on:

* each feature compressed with a signed ``log1p`` (amplitudes and energies span decades),
* exponentially weighted running means of those with the given spans (in snapshots): short spans
  follow the degradation, long ones give the bearing's baseline, and their difference the trend,
* the running maximum of the short-span mean (damage does not heal, so the worst level reached
  so far is a monotone health indicator),
* the elapsed running time in hours (the prior of a bearing that still looks healthy),
* the operating condition as shaft speed and radial load (fixed scale), known for every bearing.

Which of these help is decided by ``bench/bench_accuracy.py`` on the real FEMTO bearings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kosmos_fl.data.bearing.femto import CONDITIONS

SECONDS_PER_HOUR = 3600.0


def signed_log(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses heavy tails, keeps sign and zero."""
    return np.sign(x) * np.log1p(np.abs(x))


def ewma(x: np.ndarray, span: float) -> np.ndarray:
    """Causal exponentially weighted mean along axis 0 (pandas ``ewm(span, adjust=True)``):
    row ``i`` depends on rows ``0..i`` only, and the first row is the first value."""
    x = np.asarray(x, dtype=np.float64)
    if span <= 1:
        return x.copy()
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(x)
    num = np.zeros(x.shape[1:])
    den = 0.0
    for i in range(len(x)):
        num = (1 - alpha) * num + x[i]
        den = (1 - alpha) * den + 1.0
        out[i] = num / den
    return out


def condition_inputs(condition: int, n: int) -> np.ndarray:
    """(n, 2): shaft speed and radial load of the bearing's operating condition on a fixed scale,
    (rpm - 1650) / 150 and (N - 4400) / 500, so the three FEMTO conditions lie in [-1, 1.2]."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown operating condition {condition}; known: {sorted(CONDITIONS)}")
    rpm, load = CONDITIONS[condition]
    return np.tile(np.array([(rpm - 1650.0) / 150.0, (load - 4400.0) / 500.0]), (n, 1))


def health_inputs(
    features: np.ndarray,
    timestamps: np.ndarray,
    condition: int,
    *,
    spans: Sequence[float] = (10.0, 100.0),
    running_max: bool = True,
    elapsed: bool = True,
    operating_condition: bool = True,
    baseline: int = 0,
) -> np.ndarray:
    """Model inputs of one bearing, one row per snapshot (rows in time order), float32.

    Columns: for each span the smoothed log-features (54 each), then the running maximum of the
    first span's (54, if ``running_max``), the speed and load (2, if ``operating_condition``) and
    the elapsed hours (1, last column, if ``elapsed``).
    """
    feats = signed_log(np.asarray(features, dtype=np.float64))
    n = len(feats)
    if baseline > 0 and n:
        # change since the bearing was new: minus the mean of its first ``baseline`` snapshots
        # (an expanding mean until that many exist, so the row stays causal)
        k = np.minimum(np.arange(1, n + 1), baseline)
        csum = np.cumsum(feats, axis=0)
        feats = feats - csum[k - 1] / k[:, None]
    t = np.asarray(timestamps, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"timestamps has shape {t.shape}, expected ({n},)")
    cols = [ewma(feats, s) for s in spans] or [feats]
    if running_max:
        cols.append(np.maximum.accumulate(cols[0], axis=0) if n else cols[0])
    if operating_condition:
        cols.append(condition_inputs(condition, n))
    if elapsed:
        cols.append(((t - t[0]) / SECONDS_PER_HOUR)[:, None] if n else np.zeros((0, 1)))
    return np.concatenate(cols, axis=1).astype(np.float32)


def n_passthrough_inputs(*, elapsed: bool = True, operating_condition: bool = True) -> int:
    """Trailing columns of :func:`health_inputs` that are on a fixed scale already (condition,
    elapsed hours) and must not be standardised by federated batch statistics."""
    return 2 * int(operating_condition) + int(elapsed)


def n_health_inputs(
    n_features: int = 54,
    *,
    spans: Sequence[float] = (10.0, 100.0),
    running_max: bool = True,
    elapsed: bool = True,
    operating_condition: bool = True,
) -> int:
    """Number of columns :func:`health_inputs` returns for these settings."""
    return n_features * (max(len(spans), 1) + int(running_max)) + 2 * int(operating_condition) + int(elapsed)


def smooth_failure_time(
    rul_hours: np.ndarray, elapsed_hours: np.ndarray, span: float, down_span: float | None = None
) -> np.ndarray:
    """Causal smoothing of one bearing's RUL predictions (rows in time order).

    Each prediction implies a failure time ``elapsed + rul``; a bearing has one failure time, so
    the running EWMA of the implied failure times (span in snapshots) is a better estimate than
    any single one, and ``smoothed - elapsed`` (floored at 0) is the RUL that decreases by one hour
    per hour unless the evidence changes. ``span <= 1`` returns the predictions unchanged.

    ``down_span`` (snapshots) makes the smoothing asymmetric: an implied failure time earlier than
    the current estimate pulls it with this span, a later one with ``span``. Damage does not heal,
    so evidence of an earlier failure should act within minutes, while a healthy-looking snapshot
    only slowly postpones the estimate; a late RUL is the costly error in maintenance (and in the
    PHM 2012 score). ``None`` = symmetric.
    """
    rul = np.asarray(rul_hours, dtype=np.float64)
    if span <= 1 or rul.size == 0:
        return rul.copy()
    t = np.asarray(elapsed_hours, dtype=np.float64)
    implied = t + rul
    if down_span is None:
        failure = ewma(implied[:, None], span)[:, 0]
    else:
        up, down = 2.0 / (span + 1.0), 2.0 / (max(down_span, 1.0) + 1.0)
        failure = np.empty_like(implied)
        est = implied[0]
        for i, x in enumerate(implied):
            est += (down if x < est else up) * (x - est)
            failure[i] = est
    return np.maximum(failure - t, 0.0)
