"""Per-bearing normalised health indicators and onset (kosmos_fl.data.bearing.onset)."""

from __future__ import annotations

import numpy as np
import pytest

from kosmos_fl.data.bearing.features import FEATURE_COLUMNS
from kosmos_fl.data.bearing.onset import RATIO_INPUTS, onset_hours, peak_and_rms, ratio_inputs


def _features(rms: np.ndarray) -> np.ndarray:
    f = np.zeros((len(rms), len(FEATURE_COLUMNS)), dtype=np.float32)
    for axis in ("horizontal", "vertical"):
        f[:, FEATURE_COLUMNS.index(f"{axis}_root_mean_square")] = rms
        f[:, FEATURE_COLUMNS.index(f"{axis}_maximum")] = 3 * rms
        f[:, FEATURE_COLUMNS.index(f"{axis}_minimum")] = -3 * rms
    return f


def test_onset_needs_the_level_held_for_hold_snapshots() -> None:
    t = np.arange(10, dtype=float)
    level = np.array([0, 1, 0, 1, 1, 1, 1, 0, 0, 0], dtype=float)
    out = onset_hours(level, t, 0.5, hold=3)
    assert np.all(np.isnan(out[:5]))
    assert np.all(out[5:] == 3.0)  # first of the three, known once the third is seen


def test_inputs_are_causal_and_relative_to_the_bearing_itself() -> None:
    n = 200
    rms = np.r_[np.full(150, 0.5), np.linspace(0.5, 5.0, 50)]
    ts = np.arange(n) * 10.0
    full = ratio_inputs(_features(rms), ts)
    assert full.shape == (n, len(RATIO_INPUTS))
    # the same row whether the recording stops there or goes on
    np.testing.assert_allclose(ratio_inputs(_features(rms[:160]), ts[:160]), full[:160], rtol=1e-6)
    # a bearing that is twice as loud throughout has the same relative inputs
    np.testing.assert_allclose(ratio_inputs(_features(2 * rms), ts), full, atol=1e-5)
    onset = RATIO_INPUTS.index("onset_0")
    assert full[100, onset] == 0 and full[-1, onset] == 1
    assert full[0, RATIO_INPUTS.index("log_elapsed_hours")] == pytest.approx(np.log(0.05))


def test_peak_and_rms_read_both_axes() -> None:
    peak, rms = peak_and_rms(_features(np.array([1.0, 2.0])))
    np.testing.assert_allclose(peak, [3.0, 6.0])
    np.testing.assert_allclose(rms, np.sqrt(2) * np.array([1.0, 2.0]), rtol=1e-6)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="rows"):
        ratio_inputs(_features(np.ones(3)), np.arange(4.0))
