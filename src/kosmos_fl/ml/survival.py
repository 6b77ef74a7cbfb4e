"""Survival priors of remaining life from a population's lifetimes, as pure numpy functions.

A machine that still looks healthy tells little about its own life; what is known is how long
others of its kind lasted. These functions turn those lifetimes, including machines that have
not failed yet (right-censored: ``observed=False``), into the prior baselines every accuracy
table here is scored against:

* :func:`kaplan_meier`: the product-limit survival curve, which uses censored histories;
* :func:`mean_residual_life`: ``E[L - t | L > t]`` under that curve;
* :func:`fit_constant`: the single RUL that scores best on training data, for a given metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def kaplan_meier(
    durations: Sequence[float], observed: Sequence[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate: event times ``(k,)`` ascending and the survival ``S(t)`` just after
    each. ``observed[i] = False`` marks a machine still running at ``durations[i]`` (censored):
    it counts as at risk until then, but not as a failure."""
    d = np.asarray(durations, dtype=np.float64)
    obs = np.ones(d.shape, dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    if d.ndim != 1 or obs.shape != d.shape:
        raise ValueError(f"durations {d.shape} and observed {obs.shape} must be 1-D of one length")
    if d.size and (not np.all(np.isfinite(d)) or d.min() < 0):
        raise ValueError("durations must be finite and non-negative")
    times = np.unique(d[obs])
    surv = np.empty_like(times)
    s = 1.0
    for i, t in enumerate(times):
        at_risk = np.count_nonzero(d >= t)
        s *= 1.0 - np.count_nonzero((d == t) & obs) / at_risk
        surv[i] = s
    return times, surv


def mean_residual_life(
    times: np.ndarray, surv: np.ndarray, t: np.ndarray | float, horizon: float | None = None
) -> np.ndarray:
    """``E[L - t | L > t]`` under the step survival curve ``(times, surv)`` (from
    :func:`kaplan_meier`), integrated up to ``horizon`` (default: the last event time; a curve
    that never reaches 0 is cut there, the usual restricted mean). 0 where ``S(t) = 0`` or
    ``t`` is past the horizon."""
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if times.size == 0:
        return np.zeros_like(tt)
    end = float(times[-1] if horizon is None else horizon)
    # S is 1 before the first event, surv[i] on [times[i], times[i+1])
    knots = np.concatenate([[0.0], times, [end]])
    levels = np.concatenate([[1.0], surv])
    out = np.zeros_like(tt)
    for j, x in enumerate(tt):
        if x >= end:
            continue
        i = int(np.searchsorted(times, x, side="right"))  # S(x) = levels[i]
        s_x = levels[i]
        if s_x <= 0:
            continue
        lo = np.maximum(knots[:-1], x)
        hi = np.minimum(knots[1:], end)
        area = float(np.sum(levels * np.clip(hi - lo, 0.0, None)))
        out[j] = area / s_x
    return out


def fit_constant(score: Callable[[float], float], candidates: np.ndarray, *, maximise: bool) -> float:
    """The candidate constant with the best ``score`` (first one on ties): the "best constant"
    baseline, fitted on training data only."""
    values = np.array([score(float(c)) for c in candidates])
    return float(candidates[int(np.argmax(values) if maximise else np.argmin(values))])
