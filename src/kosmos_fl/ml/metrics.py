"""Evaluation metrics as pure functions of (true, predicted) arrays.

Kept free of torch and of I/O so they can be tested by hand and reused by the server's evaluation,
the benchmarks and ``predict``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else math.nan


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.mean(np.abs(d))) if d.size else math.nan


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (a flat prediction correlates with
    nothing), NaN when there are fewer than two points."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def regression_report(
    groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """RMSE, MAE and Pearson correlation per group (``RMSE_<group>``) and their unweighted mean
    over groups (``RMSE``, ``MAE``, ``PCC``), the naming the 2021 bearing use case logged."""
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {"RMSE": [], "MAE": [], "PCC": []}
    for name, (y_true, y_pred) in groups.items():
        for metric, fn in (("RMSE", rmse), ("MAE", mae), ("PCC", pearson)):
            value = fn(y_true, y_pred)
            out[f"{metric}_{name}"] = value
            per[metric].append(value)
    for metric, values in per.items():
        finite = [v for v in values if math.isfinite(v)]
        out[metric] = float(np.mean(finite)) if finite else math.nan
    return out


def phm08_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """PHM08 asymmetric score: sum of exp(-d/13)-1 (early, d<0) and exp(d/10)-1 (late), d=pred-true.
    Lower is better; late predictions cost more because they mean a missed maintenance."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


def phm2012_accuracy(actual_rul: float, predicted_rul: float) -> float:
    """IEEE PHM 2012 challenge score of one bearing: Er = 100 (Act - Pred) / Act, then
    A = exp(-ln(0.5) Er/5) if Er <= 0 else exp(ln(0.5) Er/20). 1 is perfect; overestimating
    (Er < 0) is punished harder than underestimating."""
    er = 100.0 * (actual_rul - predicted_rul) / actual_rul
    if er <= 0:
        return math.exp(-math.log(0.5) * er / 5.0)
    return math.exp(math.log(0.5) * er / 20.0)


def cutoff_indices(elapsed: np.ndarray, life: float, lo: float, hi: float, k: int = 10) -> np.ndarray:
    """Indices of the snapshots at ``k`` cut-offs spread evenly over ``[lo, hi]`` of the life
    (the first snapshot at or after each fraction; ``elapsed`` ascending, same unit as ``life``)."""
    if not 0 <= lo <= hi <= 1 or k < 1:
        raise ValueError(f"cut-offs need 0 <= lo <= hi <= 1 and k >= 1, got {lo}, {hi}, {k}")
    fractions = np.linspace(lo, hi, k)
    idx = np.searchsorted(np.asarray(elapsed, dtype=np.float64), fractions * life)
    return np.minimum(idx, len(elapsed) - 1)


def phm2012_at_cutoffs(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """:func:`phm2012_accuracy` of each (actual, predicted) pair; actual RULs must be > 0."""
    return np.array([phm2012_accuracy(float(a), float(p)) for a, p in zip(actual, predicted, strict=True)])


def overestimate_share(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of predictions above the true RUL: the error that lets a machine run to failure."""
    a = np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.asarray(predicted, dtype=np.float64) > a)) if a.size else math.nan


def interval_coverage(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """Share of true values inside ``[low, high]`` and the interval's mean width."""
    a = np.asarray(actual, dtype=np.float64)
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return float(np.mean((a >= lo) & (a <= hi))), float(np.mean(hi - lo))
