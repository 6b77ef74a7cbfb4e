"""Each feature against a value worked out by hand on a tiny array, plus batch behaviour."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal

from kosmos_fl.data.bearing import features as F
from kosmos_fl.data.bearing.features import (
    FEATURE_COLUMNS,
    FEATURE_DEFINITIONS,
    FEATURE_NAMES,
    axis_features,
    extract_features,
)

RAMP = np.array([1.0, 2.0, 3.0, 4.0])
# one 16-sample cosine at bin 2: amplitude spectrum |rfft|/16 is 0.5 at bin 2, 0 elsewhere
COSINE = np.cos(2 * np.pi * 2 * np.arange(16) / 16)


def feature(x: np.ndarray, name: str) -> float:
    return float(axis_features(np.asarray(x, dtype=np.float64))[FEATURE_NAMES.index(name)])


def test_names_and_columns() -> None:
    assert len(FEATURE_NAMES) == 27 and len(set(FEATURE_NAMES)) == 27
    assert len(FEATURE_COLUMNS) == 54
    assert FEATURE_COLUMNS[0] == "horizontal_mean"
    assert FEATURE_COLUMNS[-1] == "vertical_frequency_abs_energy"
    assert set(FEATURE_DEFINITIONS) == set(FEATURE_NAMES)
    assert all("\n" not in text for text in FEATURE_DEFINITIONS.values())


# x = [1, 2, 3, 4]: mean 2.5, deviations ±0.5, ±1.5, m2 = 1.25, m3 = 0, m4 = 2.5625, sum x² = 30
RAMP_EXPECTED = {
    "mean": 2.5,
    "maximum": 4.0,
    "minimum": 1.0,
    "root_mean_square": math.sqrt(7.5),
    "peak_to_peak_value": 3.0,
    "skewness": 0.0,
    # G2 = (n-1)/((n-2)(n-3)) * ((n+1) g2 + 6), g2 = 2.5625/1.25² - 3 = -1.36
    "kurtosis": 3 / 2 * (5 * -1.36 + 6),
    "variance": 1.25,
    "peak_factor": 4 / math.sqrt(7.5),
    "change_coefficient": 2.5 / math.sqrt(1.25),
    "clearance_factor": 4 / 7.5,
    "abs_energy": 30.0,
    # z = ±0.447, ±1.342: one sample in each of the four SAX quartile bins -> ln 4
    "shannon_entropy": math.log(4),
}


@pytest.mark.parametrize("name", list(RAMP_EXPECTED))
def test_time_domain_feature_by_hand(name: str) -> None:
    assert feature(RAMP, name) == pytest.approx(RAMP_EXPECTED[name], abs=1e-12)


# spectrum s = [0, 0, 0.5, 0, 0, 0, 0, 0] (8 bins): a Bernoulli(1/8) pattern scaled by 0.5
COSINE_EXPECTED = {
    "mean": 0.0625,
    "maximum": 0.5,
    "minimum": 0.0,
    "root_mean_square": math.sqrt(0.25 / 8),
    "peak_to_peak_value": 0.5,
    # g1 = (1-2p)/sqrt(p(1-p)) with p = 1/8, G1 = g1 sqrt(n(n-1))/(n-2) = 2 sqrt 2
    "skewness": 2 * math.sqrt(2),
    # g2 = (1 - 6p(1-p))/(p(1-p)) = 22/7, G2 = 7/30 * (9 g2 + 6) = 8
    "kurtosis": 8.0,
    "variance": 0.25 / 8 - 0.0625**2,
    "peak_factor": 0.5 / math.sqrt(0.25 / 8),
    "change_coefficient": 0.0625 / math.sqrt(0.25 / 8 - 0.0625**2),
    "clearance_factor": 0.5 / (0.25 / 8),
    "abs_energy": 0.25,
}


@pytest.mark.parametrize("name", list(COSINE_EXPECTED))
def test_frequency_feature_by_hand(name: str) -> None:
    got = feature(COSINE, f"frequency_{name}")
    assert got == pytest.approx(COSINE_EXPECTED[name], rel=1e-9, abs=1e-12)


def test_permutation_entropy_by_hand() -> None:
    # 15 samples: patterns start at 0 and 10 (5 samples each): rising, then falling -> ln 2
    x = np.array([1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 5, 4, 3, 2, 1], dtype=float)
    assert feature(x, "permutation_entropy") == pytest.approx(math.log(2))
    # same pattern twice -> 0
    y = np.array([1, 2, 3, 4, 5, 9, 9, 9, 9, 9, 1, 2, 3, 4, 5], dtype=float)
    assert feature(y, "permutation_entropy") == 0.0


def test_spectral_entropy_by_hand() -> None:
    # 8-sample cosine at bin 1, one Welch segment: Hann turns its spectrum into
    # X = [-N/4, N/4, -N/8, 0, 0] -> PSD ∝ [1/16, 2/16, 2/64, 0, 0] -> / max = [.5, 1, .25, 0, 0]
    # histogram counts over 1280 bins: {0: 2, .25: 1, .5: 1, 1: 1} -> p = [.4, .2, .2, .2]
    x = np.cos(2 * np.pi * np.arange(8) / 8)
    expected = -(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2))
    assert feature(x, "spectral_entropy") == pytest.approx(expected, rel=1e-9)


def test_constant_signal_has_zero_for_undefined_statistics() -> None:
    values = axis_features(np.full(64, 0.25))
    got = dict(zip(FEATURE_NAMES, values, strict=True))
    for name in ("skewness", "kurtosis", "variance", "change_coefficient", "shannon_entropy"):
        assert got[name] == 0.0, name
    assert got["permutation_entropy"] == 0.0 and got["spectral_entropy"] == 0.0
    assert got["peak_factor"] == pytest.approx(1.0)
    assert np.all(np.isfinite(values))
    assert np.all(axis_features(np.zeros(64)) == 0.0)


def test_skew_and_kurtosis_match_pandas() -> None:
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, size=(5, 500))
    got = axis_features(x)
    for row, values in zip(x, got, strict=True):
        assert values[FEATURE_NAMES.index("skewness")] == pytest.approx(pd.Series(row).skew())
        assert values[FEATURE_NAMES.index("kurtosis")] == pytest.approx(pd.Series(row).kurt())


def _permutation_entropy_reference(x: np.ndarray, tau: int = 10, dim: int = 5) -> float:
    """tsfresh's definition, written plainly (stable ranks for ties)."""
    windows = np.array([x[s : s + dim] for s in range(0, len(x) - dim + 1, tau)])
    ranks = np.argsort(np.argsort(windows, axis=1, kind="stable"), axis=1, kind="stable")
    _, counts = np.unique(ranks, axis=0, return_counts=True)
    p = counts / len(windows)
    return float(-(p * np.log(p)).sum())


def test_permutation_entropy_matches_reference_with_ties() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(6, 2560)).astype(float)  # many ties
    got = F.permutation_entropy(x)
    np.testing.assert_allclose(got, [_permutation_entropy_reference(r) for r in x], rtol=1e-12)


def test_welch_psd_is_scipy_welch_up_to_a_constant() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2560)) + 0.3
    ours = F.welch_psd(x)
    ref = scipy.signal.welch(x, nperseg=256, axis=-1)[1]
    ratio = ref / ours
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-4)
    np.testing.assert_allclose(F.hann(256), scipy.signal.get_window("hann", 256), atol=1e-15)


def test_batch_equals_one_by_one_and_float32_is_close() -> None:
    rng = np.random.default_rng(3)
    signals = (rng.standard_t(5, size=(7, 2560, 2)) * 0.4).astype(np.float32)
    batch = extract_features(signals)
    assert batch.shape == (7, 54) and batch.dtype == np.float32
    one = extract_features(signals[4:5])
    np.testing.assert_array_equal(batch[4], one[0])
    exact = np.concatenate([axis_features(signals[..., a].astype(np.float64)) for a in (0, 1)], 1)
    np.testing.assert_allclose(batch, exact, rtol=2e-4, atol=2e-5)
    # horizontal block first, vertical second
    np.testing.assert_allclose(
        batch[:, 27 + FEATURE_NAMES.index("mean")], signals[..., 1].mean(axis=1), rtol=1e-5
    )


def test_extract_features_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(n, L, 2\)"):
        extract_features(np.zeros((3, 2560)))


@pytest.mark.realdata
def test_real_snapshot_features_are_finite(femto_bearing3_1: Path) -> None:
    from kosmos_fl.data.bearing.femto import read_bearing

    raw = read_bearing(femto_bearing3_1)
    values = extract_features(raw.signals[:64])
    assert np.isfinite(values).all()
    rms = values[:, FEATURE_COLUMNS.index("horizontal_root_mean_square")]
    ref = np.sqrt((raw.signals[:64, :, 0].astype(np.float64) ** 2).mean(axis=1))
    np.testing.assert_allclose(rms, ref, rtol=1e-5)
