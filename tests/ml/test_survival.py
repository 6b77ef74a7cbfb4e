"""Kaplan-Meier, mean residual life and fitted constants (kosmos_fl.ml.survival)."""

from __future__ import annotations

import numpy as np
import pytest

from kosmos_fl.ml.survival import fit_constant, kaplan_meier, mean_residual_life


def test_kaplan_meier_without_censoring_is_the_empirical_survival() -> None:
    times, surv = kaplan_meier([2.0, 1.0, 4.0, 2.0])
    np.testing.assert_array_equal(times, [1.0, 2.0, 4.0])
    np.testing.assert_allclose(surv, [0.75, 0.25, 0.0])


def test_censored_machines_count_as_at_risk_but_not_as_failures() -> None:
    # a machine still running at 3 h: after the failure at 1 h, 3 remain at risk; at 4 h only one
    times, surv = kaplan_meier([1.0, 3.0, 4.0, 5.0], [True, False, True, True])
    np.testing.assert_array_equal(times, [1.0, 4.0, 5.0])
    np.testing.assert_allclose(surv, [0.75, 0.75 * 0.5, 0.0])


def test_mean_residual_life_matches_the_mean_of_remaining_lives() -> None:
    lives = np.array([1.0, 2.0, 4.0])
    times, surv = kaplan_meier(lives)
    for t in (0.0, 0.5, 1.5, 3.0):
        expected = np.mean(lives[lives > t] - t)
        assert mean_residual_life(times, surv, t)[0] == pytest.approx(expected)
    assert mean_residual_life(times, surv, 4.0)[0] == 0.0
    assert mean_residual_life(times, surv, 9.0)[0] == 0.0


def test_bad_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        kaplan_meier([1.0, -2.0])
    with pytest.raises(ValueError, match="one length"):
        kaplan_meier([1.0, 2.0], [True])


def test_fit_constant_picks_the_best_candidate() -> None:
    grid = np.array([0.0, 1.0, 2.0, 3.0])
    assert fit_constant(lambda c: (c - 2.2) ** 2, grid, maximise=False) == 2.0
    assert fit_constant(lambda c: -abs(c - 0.9), grid, maximise=True) == 1.0
