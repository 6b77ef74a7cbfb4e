"""Synthetic bearings: real-format files, determinism, degradation realism, learnability."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kosmos_fl.data.bearing.features import FEATURE_COLUMNS
from kosmos_fl.data.bearing.femto import CONDITIONS, SNAPSHOT_LEN, find_bearings, read_bearing
from kosmos_fl.data.bearing.generate import (
    BEARING_ORDER,
    bearing_spec,
    defect_frequencies,
    generate_dataset,
    health_index,
    select_bearings,
    synthesize,
)
from kosmos_fl.errors import DataError


def test_bearing_order_is_the_phm2012_set() -> None:
    assert len(BEARING_ORDER) == len(set(BEARING_ORDER)) == 17
    counts = {c: sum(n.startswith(f"Bearing{c}_") for n in BEARING_ORDER) for c in CONDITIONS}
    assert counts == {1: 7, 2: 7, 3: 3}
    assert {n[7] for n in BEARING_ORDER[:3]} == {"1", "2", "3"}  # first 3 cover all conditions
    assert sorted(BEARING_ORDER[:6]) == sorted(
        ["Bearing1_1", "Bearing1_2", "Bearing2_1", "Bearing2_2", "Bearing3_1", "Bearing3_2"]
    )
    assert select_bearings(2) == ["Bearing1_1", "Bearing2_1"]
    with pytest.raises(DataError, match="between 1 and 17"):
        select_bearings(18)
    with pytest.raises(DataError):
        select_bearings(["Bearing9_9"])


def test_files_look_like_pronostia(generated_root: Path) -> None:
    folder = generated_root / "Bearing1_1"
    acc = sorted(folder.glob("acc_*.csv"))
    spec = bearing_spec("Bearing1_1", seed=0, snapshots=(30, 60))
    assert len(acc) == spec.n_snapshots and 30 <= len(acc) <= 60
    assert acc[0].name == "acc_00001.csv"
    assert list(folder.glob("temp_*.csv"))  # like the real folders
    frame = pd.read_csv(acc[0], header=None)
    assert frame.shape == (SNAPSHOT_LEN, 6)
    first = acc[0].read_text().splitlines()[0]
    assert re.fullmatch(r"\d+,\d+,\d+,(\d+|\d(\.\d+)?e\+05),-?\d+(\.\d{1,3})?,-?\d+(\.\d{1,3})?", first)
    assert any("e+05" in line for line in acc[0].read_text().splitlines()[:2600])
    # hour/minute/second/us advance at 25.6 kHz within the snapshot
    t = frame[0] * 3600 + frame[1] * 60 + frame[2] + frame[3] * 1e-6
    assert np.median(np.diff(t)) == pytest.approx(1 / 25600, abs=2e-5)


def test_generated_folder_reads_with_the_real_reader(generated_root: Path) -> None:
    assert list(find_bearings(generated_root)) == sorted(BEARING_ORDER, key=lambda n: (n[7], n[9:]))
    raw = read_bearing(generated_root / "Bearing3_1")
    assert raw.skipped == () and raw.repaired == ()
    np.testing.assert_allclose(np.diff(raw.timestamps), 10.0, atol=2e-5)


def test_seeded_and_independent_of_how_many_bearings(generated_root: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", bearings=2, seed=0, snapshots=(30, 60))
    for name in ("Bearing1_1", "Bearing2_1"):
        for file in ("acc_00001.csv", "acc_00017.csv"):
            assert (tmp_path / "a" / name / file).read_bytes() == (generated_root / name / file).read_bytes()
    generate_dataset(tmp_path / "b", bearings=["Bearing1_1"], seed=1, snapshots=(30, 60))
    assert (tmp_path / "b" / "Bearing1_1" / "acc_00001.csv").read_bytes() != (
        generated_root / "Bearing1_1" / "acc_00001.csv"
    ).read_bytes()


def test_lives_onsets_and_faults_vary() -> None:
    specs = [bearing_spec(n, seed=0) for n in BEARING_ORDER]
    assert len({s.n_snapshots for s in specs}) > 8
    assert all(60 <= s.n_snapshots <= 150 for s in specs)
    assert {s.fault for s in specs} == {"outer", "inner", "ball"}
    assert all(0.3 <= s.onset <= 0.7 for s in specs)


def test_defect_frequencies_of_the_pronostia_bearing() -> None:
    f = defect_frequencies(1800)
    assert f["fr"] == 30.0
    assert f["bpfo"] == pytest.approx(6.5 * 30 * (1 - 3.5 / 25.6))
    assert f["bpfi"] == pytest.approx(6.5 * 30 * (1 + 3.5 / 25.6))
    assert f["bpfo"] + f["bpfi"] == pytest.approx(13 * 30)


def test_defect_tone_appears_in_the_envelope_spectrum() -> None:
    """Late in life the envelope of the signal repeats at the defect frequency."""
    spec = bearing_spec("Bearing1_2", seed=0)
    spec = type(spec)(**{**spec.__dict__, "fault": "outer", "n_snapshots": 20})
    _, signals = synthesize(spec)
    x = signals[-1, :, 1]
    envelope = np.abs(x - x.mean())
    power = np.abs(np.fft.rfft(envelope - envelope.mean())) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 25600)
    band = (freqs > 20) & (freqs < 400)
    peak = freqs[band][np.argmax(power[band])]
    assert abs(peak - defect_frequencies(1800)["bpfo"]) < 15


def test_health_index_shape() -> None:
    spec = bearing_spec("Bearing2_4", seed=3)
    h = health_index(spec)
    assert h[0] == 0 and h[-1] == pytest.approx(1.0)
    onset = int(np.ceil(spec.onset * (spec.n_snapshots - 1)))
    assert np.all(h[: onset - 1] == 0) and np.all(np.diff(h[onset:]) > 0)


def test_rms_rises_toward_failure(generated_processed: dict) -> None:
    col = FEATURE_COLUMNS.index("vertical_root_mean_square")
    for name, b in generated_processed.items():
        rms = b.features[:, col]
        n = len(rms)
        early, late = rms[: n // 4].mean(), rms[-max(3, n // 10) :].mean()
        assert late > 2.0 * early, (name, early, late)
        # and the healthy start is flat (no trend in the first quarter)
        assert abs(rms[: n // 4].mean() - rms[n // 8 : n // 4].mean()) < 0.15 * early


def _design(bearings: list) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([b.features for b in bearings]).astype(np.float64)
    y = np.concatenate([b.rul_fraction for b in bearings])
    return np.sign(x) * np.log1p(np.abs(x)), y


def test_ridge_on_features_beats_the_mean(generated_processed: dict) -> None:
    names = list(generated_processed)
    test_names = names[::3]
    train = [generated_processed[n] for n in names if n not in test_names]
    test = [generated_processed[n] for n in test_names]
    x, y = _design(train)
    xt, yt = _design(test)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    a = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ y)
    pred = np.clip(np.c_[(xt - mu) / sd, np.ones(len(xt))] @ w, 0, 1)
    rmse = float(np.sqrt(np.mean((pred - yt) ** 2)))
    baseline = float(np.sqrt(np.mean((y.mean() - yt) ** 2)))
    assert rmse < 0.8 * baseline, (rmse, baseline)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="snapshots"):
        generate_dataset(tmp_path, bearings=1, snapshots=(10, 5))
