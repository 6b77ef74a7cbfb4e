"""STFT magnitude spectra of vibration snapshots: the (129, 21, 2) input of the 2021 CNN.

The result equals ``abs(scipy.signal.stft(x, nperseg=256, noverlap=128, window='hann')[2])``
for each axis (zero boundary padding, padded, spectrum scaling), but frames every snapshot of a
batch at once with a strided view and runs one batched real FFT, instead of one scipy call per
snapshot and axis.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kosmos_fl.data.bearing.features import hann

NPERSEG = 256
NOVERLAP = 128
SPECTRA_SHAPE = (129, 21, 2)
"""Shape of one snapshot's spectra for the 2560-sample PRONOSTIA snapshots."""

_STEP = NPERSEG - NOVERLAP
_CHUNK = 256
# scipy.signal.stft's window and 'spectrum' scaling (divide by the window sum), folded together
_WINDOW = hann(NPERSEG)
_SCALED_WINDOW = (_WINDOW / _WINDOW.sum()).astype(np.float32)


def n_frames(length: int) -> int:
    """STFT frames of a ``length``-sample signal with zero boundaries and end padding."""
    padded = length + 2 * (NPERSEG // 2)
    padded += (-(padded - NPERSEG) % _STEP) % NPERSEG
    return (padded - NPERSEG) // _STEP + 1


def stft_magnitude(x: np.ndarray) -> np.ndarray:
    """|STFT| of signals along the last axis: (..., L) -> (..., 129, frames) float32."""
    import scipy.fft  # lazy: a cached reload never needs it

    x = np.asarray(x, dtype=np.float32)
    length = x.shape[-1]
    frames = n_frames(length)
    padded = np.zeros((*x.shape[:-1], (frames - 1) * _STEP + NPERSEG), dtype=np.float32)
    padded[..., NPERSEG // 2 : NPERSEG // 2 + length] = x
    windows = sliding_window_view(padded, NPERSEG, axis=-1)[..., ::_STEP, :]
    spectrum = scipy.fft.rfft(windows * _SCALED_WINDOW, axis=-1)  # (..., frames, 129)
    return np.abs(spectrum).swapaxes(-1, -2)


def compute_spectra(signals: np.ndarray) -> np.ndarray:
    """Spectra of two-axis snapshots: (n, L, 2) -> (n, 129, frames, 2) float32 (21 for 2560)."""
    signals = np.asarray(signals)
    if signals.ndim != 3 or signals.shape[2] != 2:
        raise ValueError(f"signals must have shape (n, L, 2), got {signals.shape}")
    n, length, _ = signals.shape
    out = np.empty((n, NPERSEG // 2 + 1, n_frames(length), 2), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        block = signals[start : start + _CHUNK].transpose(0, 2, 1)  # (c, 2, L)
        mag = stft_magnitude(block)  # (c, 2, 129, frames)
        out[start : start + len(block)] = mag.transpose(0, 2, 3, 1)
    return out
