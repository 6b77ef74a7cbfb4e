"""Update validation: malformed, non-finite and absurd updates are rejected, honest ones kept."""

from __future__ import annotations

import numpy as np
import pytest

from kosmos_fl.fl.rounds.validation import (
    example_count_problem,
    norm_outliers,
    structural_problem,
    update_norm,
    validate_updates,
)


@pytest.fixture
def reference() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]


def _nudge(ref: list[np.ndarray], scale: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(a + scale * rng.normal(size=a.shape)).astype(a.dtype) for a in ref]


def test_well_formed_update_passes(reference: list[np.ndarray]) -> None:
    assert structural_problem(_nudge(reference, 0.1, 1), reference) is None


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_named(reference: list[np.ndarray], value: float) -> None:
    bad = [a.copy() for a in reference]
    bad[1][2] = value
    assert structural_problem(bad, reference) == "array 1 holds 1 NaN/Inf value(s)"


def test_wrong_shape_count_and_dtype(reference: list[np.ndarray]) -> None:
    assert "shape (3, 4), expected (4, 3)" in str(
        structural_problem([reference[0].T, reference[1]], reference)
    )
    assert "has 1 arrays, the global model has 2" in str(structural_problem(reference[:1], reference))
    wrong = [reference[0].astype(np.float64), reference[1]]
    assert "dtype float64, expected float32" in str(structural_problem(wrong, reference))


@pytest.mark.parametrize("count", [0, -3, float("nan"), float("inf"), "many", None])
def test_bad_example_counts(count: object) -> None:
    assert example_count_problem(count) is not None


def test_good_example_count() -> None:
    assert example_count_problem(120) is None


def test_update_norm_does_not_overflow_float32(reference: list[np.ndarray]) -> None:
    huge = [np.full_like(a, 3e38) for a in reference]
    norm = update_norm(huge, reference)
    assert np.isfinite(norm) and norm > 1e38


def test_norm_outlier_among_three_is_rejected() -> None:
    rejected = norm_outliers({0: 1.0, 1: 1.2, 2: 500.0}, max_ratio=10)
    assert [r.key for r in rejected] == [2]
    assert "max_update_norm_ratio=10" in rejected[0].reason


def test_norm_outlier_with_two_clients_rejects_only_the_absurd_one() -> None:
    # the median of the *other* updates: the honest client is compared with the absurd one and passes
    assert [r.key for r in norm_outliers({"a": 0.8, "b": 1e6}, max_ratio=10)] == ["b"]


def test_similar_norms_all_pass() -> None:
    assert norm_outliers({0: 1.0, 1: 3.0, 2: 2.0}, max_ratio=10) == []


def test_lone_update_uses_history_and_absolute_cap() -> None:
    assert norm_outliers({0: 50.0}, max_ratio=10) == []  # nothing to compare with
    assert [r.key for r in norm_outliers({0: 50.0}, max_ratio=10, history=[1.0, 2.0])] == [0]
    assert [r.key for r in norm_outliers({0: 50.0}, max_ratio=None, max_norm=10.0)] == [0]


def test_validate_updates_keeps_honest_and_names_each_rejection(reference: list[np.ndarray]) -> None:
    nan = [a.copy() for a in reference]
    nan[0][0, 0] = np.nan
    updates = {
        0: (_nudge(reference, 0.01, 1), 100),
        1: (_nudge(reference, 0.01, 2), 80),
        2: ([a * 1e6 for a in reference], 90),
        3: (nan, 100),
        4: (_nudge(reference, 0.01, 3), 0),
    }
    norms, rejected = validate_updates(updates, reference, max_ratio=10)
    assert sorted(norms) == [0, 1]
    reasons = {r.key: r.reason for r in rejected}
    assert sorted(reasons) == [2, 3, 4]
    assert "NaN/Inf" in reasons[3]
    assert "num-examples" in reasons[4]
    assert "median of the others" in reasons[2]
