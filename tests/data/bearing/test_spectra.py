"""Batched STFT magnitudes against scipy.signal.stft."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from kosmos_fl.data.bearing.spectra import SPECTRA_SHAPE, compute_spectra, n_frames, stft_magnitude


def scipy_spectra(signal: np.ndarray) -> np.ndarray:
    _, _, z = scipy.signal.stft(signal, nperseg=256, noverlap=128, window="hann")
    return np.abs(z)


def test_shape_is_the_2021_cnn_input() -> None:
    out = compute_spectra(np.zeros((3, 2560, 2), dtype=np.float32))
    assert out.shape == (3, *SPECTRA_SHAPE) == (3, 129, 21, 2)
    assert out.dtype == np.float32
    assert n_frames(2560) == 21


def test_matches_scipy_stft_per_axis() -> None:
    rng = np.random.default_rng(0)
    signals = rng.normal(0, 0.5, (5, 2560, 2)).astype(np.float32)
    signals[2, :, 1] += np.sin(2 * np.pi * 3000 * np.arange(2560) / 25600).astype(np.float32)
    out = compute_spectra(signals)
    for i in range(5):
        for axis in range(2):
            ref = scipy_spectra(signals[i, :, axis].astype(np.float64))
            np.testing.assert_allclose(out[i, :, :, axis], ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("length", [300, 1000, 2561])
def test_other_lengths_match_scipy(length: int) -> None:
    x = np.random.default_rng(length).normal(size=length)
    ref = scipy_spectra(x)
    ours = stft_magnitude(x)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        compute_spectra(np.zeros((2, 2560, 3)))


@pytest.mark.realdata
def test_real_snapshots_match_scipy(femto_bearing3_1: Path) -> None:
    from kosmos_fl.data.bearing.femto import read_bearing

    raw = read_bearing(femto_bearing3_1)
    picks = [0, 300, 514]
    out = compute_spectra(raw.signals[picks])
    for k, i in enumerate(picks):
        for axis in range(2):
            ref = scipy_spectra(raw.signals[i, :, axis].astype(np.float64))
            np.testing.assert_allclose(out[k, :, :, axis], ref, rtol=1e-4, atol=1e-6)
