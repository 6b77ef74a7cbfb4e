"""Checks on client updates before aggregation (pure functions, no Flower, no I/O).

One broken or malicious client must not ruin the global model: an update with NaN/Inf values, the
wrong number, shapes or dtypes of arrays, an impossible example count, or an update norm far above
what the other clients sent is rejected, and the round goes on with the rest. The norm check is
relative (a client's ``||w_client - w_global||`` against the median of the *other* clients' norms,
so it also works with two clients) plus an optional absolute cap; it catches a minority of absurd
updates, not a coordinated majority (use a robust strategy such as Krum or FedMedian for that).

With a ``trainable`` mask (``kosmos_fl.ml.train.trainable_mask``) the norm covers trainable
parameters only. Batch-norm running statistics travel with the weights but are averages of the
site's own inputs: a site whose operating condition has 10x the vibration level has 10x the
statistics, and counting them rejected honest sites (issue 21). They are still checked for shape
and finiteness.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Default: reject an update whose norm exceeds this multiple of the other clients' median norm.
DEFAULT_MAX_NORM_RATIO = 10.0


@dataclass(frozen=True)
class Rejection:
    """Why one client's update was refused."""

    key: Hashable
    reason: str


def structural_problem(arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> str | None:
    """What is wrong with ``arrays`` compared with the global model ``reference`` (None: fine).

    Checks count, shape and dtype of every array and that all values are finite.
    """
    if len(arrays) != len(reference):
        return f"has {len(arrays)} arrays, the global model has {len(reference)}"
    for i, (got, want) in enumerate(zip(arrays, reference, strict=True)):
        if got.shape != want.shape:
            return f"array {i} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if got.dtype != want.dtype:
            return f"array {i} has dtype {got.dtype}, expected {want.dtype}"
        if np.issubdtype(got.dtype, np.inexact) and not np.isfinite(got).all():
            bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
            return f"array {i} holds {bad} NaN/Inf value(s)"
    return None


def example_count_problem(num_examples: object) -> str | None:
    """FedAvg weights updates by the reported example count: it must be a positive finite number."""
    try:
        value = float(num_examples)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"reports num-examples {num_examples!r}, not a number"
    if not math.isfinite(value) or value <= 0:
        return f"reports num-examples {value}, expected a positive finite count"
    return None


def update_norm(
    arrays: Sequence[np.ndarray], reference: Sequence[np.ndarray], trainable: np.ndarray | None = None
) -> float:
    """L2 norm of ``arrays - reference``, computed in float64 (no overflow); over the elements where
    ``trainable`` (a flat mask over all arrays in order) is True, or over everything without one."""
    if trainable is None:
        total = 0.0
        for got, want in zip(arrays, reference, strict=True):
            diff = np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64)
            total += float(np.dot(diff.ravel(), diff.ravel()))
        return math.sqrt(total)
    diff = _flat(arrays) - _flat(reference)
    return float(np.linalg.norm(diff[trainable]))


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays] or [np.zeros(0)])


def norm_outliers(
    norms: Mapping[Hashable, float],
    max_ratio: float | None = DEFAULT_MAX_NORM_RATIO,
    max_norm: float | None = None,
    history: Sequence[float] = (),
) -> list[Rejection]:
    """Updates whose norm is absurd: above ``max_norm``, not finite, or above ``max_ratio`` times
    the median of the other updates' norms (this round's others plus ``history``, e.g. the accepted
    norms of the previous round, so that a lone update is still compared with something)."""
    out: list[Rejection] = []
    for key, norm in norms.items():
        if not math.isfinite(norm):
            out.append(Rejection(key, "update norm is not finite"))
            continue
        if max_norm is not None and norm > max_norm:
            out.append(Rejection(key, f"update norm {norm:.4g} exceeds max_update_norm {max_norm:.4g}"))
            continue
        if max_ratio is None:
            continue
        others = [n for k, n in norms.items() if k != key and math.isfinite(n)] + list(history)
        if not others:
            continue
        ref = float(np.median(others))
        if ref > 0 and norm > max_ratio * ref:
            out.append(
                Rejection(
                    key,
                    f"update norm {norm:.4g} is {norm / ref:.3g}x the median of the others "
                    f"({ref:.4g}); the limit is max_update_norm_ratio={max_ratio:g}",
                )
            )
    return out


def validate_updates(
    updates: Mapping[Hashable, tuple[Sequence[np.ndarray], object]],
    reference: Sequence[np.ndarray],
    max_ratio: float | None = DEFAULT_MAX_NORM_RATIO,
    max_norm: float | None = None,
    history: Sequence[float] = (),
    trainable: np.ndarray | None = None,
) -> tuple[dict[Hashable, float], list[Rejection]]:
    """Check every update ``key -> (arrays, num_examples)`` against the global model ``reference``.

    Returns the norms of the accepted updates and the rejections (each key at most once).
    Structural checks run first, so the norm comparison only sees well-formed updates. With
    ``trainable``, the norms cover the trainable elements only (module docstring).
    """
    size = sum(int(np.asarray(a).size) for a in reference)
    if trainable is not None and (trainable.dtype != bool or trainable.shape != (size,)):
        raise ValueError(
            f"trainable mask must be bool of shape ({size},), got {trainable.dtype} {trainable.shape}"
        )
    rejected: list[Rejection] = []
    norms: dict[Hashable, float] = {}
    for key, (arrays, num_examples) in updates.items():
        problem = structural_problem(arrays, reference) or example_count_problem(num_examples)
        if problem is not None:
            rejected.append(Rejection(key, problem))
            continue
        norms[key] = update_norm(arrays, reference, trainable)
    outliers = norm_outliers(norms, max_ratio, max_norm, history)
    for r in outliers:
        norms.pop(r.key, None)
    return norms, rejected + outliers
