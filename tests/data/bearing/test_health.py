"""Health-indicator inputs of the bearing MLP: causal, the documented columns, smoothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kosmos_fl.data.bearing.health import (
    ewma,
    health_inputs,
    n_health_inputs,
    signed_log,
    smooth_failure_time,
)


def _bearing(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = rng.lognormal(size=(n, 54)).astype(np.float32) * np.linspace(1, 5, n)[:, None]
    return feats, 1000.0 + 10.0 * np.arange(n)


def test_ewma_matches_pandas() -> None:
    x = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_allclose(ewma(x, 7.0), pd.DataFrame(x).ewm(span=7.0).mean().to_numpy(), rtol=1e-10)
    np.testing.assert_array_equal(ewma(x, 1.0), x)


def test_inputs_are_causal_and_have_the_documented_columns() -> None:
    feats, t = _bearing()
    full = health_inputs(feats, t, 2)
    assert full.shape == (80, n_health_inputs()) and full.dtype == np.float32
    # a prediction at snapshot i must not change when the recording stops at i
    np.testing.assert_allclose(health_inputs(feats[:30], t[:30], 2), full[:30], rtol=1e-6)
    np.testing.assert_allclose(full[:, -1], (t - t[0]) / 3600.0, rtol=1e-6)  # elapsed hours last
    np.testing.assert_allclose(full[0, -3:-1], [0.0, -0.4])  # condition 2: 1650 rpm, 4200 N
    running_max = full[:, 108:162]
    assert np.all(np.diff(running_max, axis=0) >= 0)
    np.testing.assert_allclose(full[0, :54], signed_log(feats[0]), rtol=1e-6)


def test_options_change_the_columns() -> None:
    feats, t = _bearing(20)
    opts = {"spans": (1.0,), "running_max": False, "elapsed": False, "operating_condition": False}
    x = health_inputs(feats, t, 1, **opts)
    assert x.shape == (20, 54) == (20, n_health_inputs(**opts))
    np.testing.assert_allclose(x, signed_log(feats), rtol=1e-6)
    with pytest.raises(ValueError, match="operating condition 9"):
        health_inputs(feats, t, 9)


def test_failure_time_smoothing() -> None:
    elapsed = np.arange(100) / 10.0
    exact = 12.0 - elapsed  # every prediction implies the same failure time: kept as it is
    np.testing.assert_allclose(smooth_failure_time(exact, elapsed, 20.0), exact)
    noisy = exact + np.random.default_rng(0).normal(scale=1.0, size=100)
    smoothed = smooth_failure_time(noisy, elapsed, 20.0)
    assert np.abs(smoothed[30:] - exact[30:]).mean() < 0.5 * np.abs(noisy[30:] - exact[30:]).mean()
    assert smoothed.min() >= 0.0
    np.testing.assert_array_equal(smooth_failure_time(noisy, elapsed, 0.0), noisy)
    # causal: the first k smoothed values depend on the first k predictions only
    np.testing.assert_allclose(smooth_failure_time(noisy[:40], elapsed[:40], 20.0), smoothed[:40])


def test_asymmetric_failure_time_smoothing_follows_earlier_failures_fast() -> None:
    elapsed = np.arange(200) / 10.0
    exact = 30.0 - elapsed
    np.testing.assert_allclose(smooth_failure_time(exact, elapsed, 100.0, down_span=5.0), exact)
    # from snapshot 100 on the evidence says the bearing fails 10 h earlier
    drop = np.where(np.arange(200) < 100, exact, exact - 10.0)
    sym = smooth_failure_time(drop, elapsed, 100.0)
    asym = smooth_failure_time(drop, elapsed, 100.0, down_span=5.0)
    assert abs(asym[120] - drop[120]) < 0.1 < abs(sym[120] - drop[120])
    # a single healthy-looking outlier (10 h later) barely moves the asymmetric estimate
    spike = exact.copy()
    spike[100] += 10.0
    asym_spike = smooth_failure_time(spike, elapsed, 100.0, down_span=5.0)
    assert abs(asym_spike[100] - exact[100]) < 0.25
    assert np.all(asym_spike >= 0.0)
    # causal: the first k values depend on the first k predictions only
    np.testing.assert_allclose(smooth_failure_time(drop[:110], elapsed[:110], 100.0, 5.0), asym[:110])
