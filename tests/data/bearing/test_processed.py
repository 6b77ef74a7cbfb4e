"""Processing, the cache and its invalidation, prepared folders and the 2021 layout."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kosmos_fl.data.bearing.cache as disk_cache
import kosmos_fl.data.bearing.femto as femto
import kosmos_fl.data.bearing.processed as processed
from kosmos_fl.data.bearing.cache import PIPELINE_VERSION, default_cache_dir
from kosmos_fl.data.bearing.features import FEATURE_COLUMNS, FEATURE_NAMES
from kosmos_fl.data.bearing.layout import read_2021_bearing
from kosmos_fl.data.bearing.processed import (
    ProcessedBearing,
    list_bearings,
    load_bearings,
    prepare_bearing,
    prepare_dataset,
)
from kosmos_fl.data.bearing.spectra import SPECTRA_SHAPE
from kosmos_fl.errors import DataError, DataFormatError


@pytest.fixture
def small_raw(generated_root: Path, tmp_path: Path) -> Path:
    """A private copy of three generated bearings (tests below modify files)."""
    root = tmp_path / "raw"
    for name in ("Bearing1_1", "Bearing2_1", "Bearing3_1"):
        shutil.copytree(generated_root / name, root / name)
    return root


class ReadCounter:
    """Counts real parses of raw files (cache misses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        original = femto.read_acc_files

        def counting(name: str, *args, **kwargs):
            self.names.append(name)
            return original(name, *args, **kwargs)

        monkeypatch.setattr(processed, "read_acc_files", counting)


def check_bearing(b: ProcessedBearing) -> None:
    n = b.n_snapshots
    assert b.features.shape == (n, 54) and b.features.dtype == np.float32
    assert b.spectra.shape == (n, *SPECTRA_SHAPE) and b.spectra.dtype == np.float32
    assert b.rul_seconds.shape == b.rul_fraction.shape == b.timestamps.shape == (n,)
    assert np.all(np.diff(b.timestamps) > 0)
    assert b.rul_fraction[0] == pytest.approx(1.0) and b.rul_fraction[-1] == 0.0
    assert b.rul_seconds[-1] == 0.0


def test_prepare_bearing_without_cache(small_raw: Path) -> None:
    b = prepare_bearing(small_raw / "Bearing2_1")
    check_bearing(b)
    assert b.name == "Bearing2_1" and b.condition == 2
    assert b.life_seconds == pytest.approx(10.0 * (b.n_snapshots - 1))
    assert Path(b.source) == (small_raw / "Bearing2_1").resolve()


def test_cache_hit_and_invalidation(small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    reads = ReadCounter(monkeypatch)
    folder = small_raw / "Bearing1_1"
    first = prepare_bearing(folder, cache)
    second = prepare_bearing(folder, cache)
    assert reads.names == ["Bearing1_1"]  # second call served from the cache
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.spectra, second.spectra)
    assert isinstance(second.spectra, np.memmap) and not second.features.flags.writeable

    # touching a file (new mtime) -> recomputed
    path = folder / "acc_00003.csv"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    prepare_bearing(folder, cache)
    assert reads.names == ["Bearing1_1"] * 2

    # rewriting a file's content -> recomputed with the new values
    lines = path.read_text().splitlines()
    lines[0] = ",".join([*lines[0].split(",")[:4], "9.5", "-9.5"])
    path.write_text("\n".join(lines) + "\n")
    changed = prepare_bearing(folder, cache)
    assert reads.names == ["Bearing1_1"] * 3
    assert changed.features[2, FEATURE_COLUMNS.index("horizontal_maximum")] == 9.5

    # a removed snapshot -> recomputed, one row fewer
    (folder / "acc_00001.csv").unlink()
    fewer = prepare_bearing(folder, cache)
    assert reads.names == ["Bearing1_1"] * 4 and fewer.n_snapshots == first.n_snapshots - 1

    # a new pipeline version -> recomputed; back to the old one -> recomputed again
    monkeypatch.setattr(disk_cache, "PIPELINE_VERSION", PIPELINE_VERSION + "-next")
    prepare_bearing(folder, cache)
    assert len(reads.names) == 5
    assert len(list(cache.iterdir())) == 1  # one entry per bearing folder, replaced in place


def test_temp_files_do_not_touch_the_key(
    small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = ReadCounter(monkeypatch)
    folder = small_raw / "Bearing3_1"
    prepare_bearing(folder, tmp_path / "c")
    (folder / "temp_00999.csv").write_text("1;2;3;4;40.0\n")
    prepare_bearing(folder, tmp_path / "c")
    assert reads.names == ["Bearing3_1"]


def test_damaged_cache_entry_is_recomputed(
    small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = ReadCounter(monkeypatch)
    cache = tmp_path / "c"
    b = prepare_bearing(small_raw / "Bearing3_1", cache)
    (next(cache.iterdir()) / "spectra.npy").write_bytes(b"garbage")
    again = prepare_bearing(small_raw / "Bearing3_1", cache)
    assert len(reads.names) == 2
    np.testing.assert_array_equal(np.asarray(again.spectra), np.asarray(b.spectra))


def test_load_bearings_raw_uses_default_cache(small_raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = ReadCounter(monkeypatch)
    loaded = load_bearings(small_raw)
    assert list(loaded) == ["Bearing1_1", "Bearing2_1", "Bearing3_1"]
    assert (small_raw / ".kosmos-cache").is_dir()
    again = load_bearings(small_raw, ["Bearing3_1", "Bearing1_1"])
    assert list(again) == ["Bearing3_1", "Bearing1_1"]
    assert sorted(reads.names) == ["Bearing1_1", "Bearing2_1", "Bearing3_1"]
    for b in loaded.values():
        check_bearing(b)


def test_missing_name_lists_what_is_there(small_raw: Path) -> None:
    with pytest.raises(DataError, match=r"Bearing1_7.*available: Bearing1_1, Bearing2_1, Bearing3_1"):
        load_bearings(small_raw, ["Bearing1_7"], cache_dir=small_raw / "c")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_bearings(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no bearing data"):
        load_bearings(tmp_path / "empty")


def test_default_cache_dir_for_read_only_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir(tmp_path) == tmp_path / ".kosmos-cache"
    monkeypatch.setattr(disk_cache.os, "access", lambda *a, **k: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir(tmp_path) == tmp_path / "xdg" / "kosmos-fl"


def test_prepare_dataset_and_reload(small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "prepared"
    made = prepare_dataset(small_raw, out, progress=False)
    manifest = json.loads((out / "kosmos-data.json").read_text())
    assert manifest["bearings"] == ["Bearing1_1", "Bearing2_1", "Bearing3_1"]
    assert list_bearings(out) == list_bearings(small_raw) == manifest["bearings"]
    assert manifest["pipeline_version"] == PIPELINE_VERSION
    reads = ReadCounter(monkeypatch)
    loaded = load_bearings(out)
    assert reads.names == []  # prepared data is not re-read
    for name, b in loaded.items():
        check_bearing(b)
        np.testing.assert_array_equal(b.features, made[name].features)
    # prepare again: nothing to do
    prepare_dataset(small_raw, out, progress=False)
    assert reads.names == []
    # the source changed: loading the prepared folder refreshes that bearing only
    path = small_raw / "Bearing2_1" / "acc_00002.csv"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    load_bearings(out)
    assert reads.names == ["Bearing2_1"]


def test_prepared_folder_without_source_and_old_version(
    small_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prepared"
    prepare_dataset(small_raw, out, progress=False, workers=1)
    shutil.rmtree(small_raw)
    assert len(load_bearings(out)) == 3  # still usable on its own
    monkeypatch.setattr(disk_cache, "PIPELINE_VERSION", "999")
    with pytest.raises(DataError, match=r"pipeline version.*re-run"):
        load_bearings(out)


def test_prepare_refuses_to_overwrite_its_source(small_raw: Path) -> None:
    with pytest.raises(DataError, match="overwrite the source"):
        prepare_dataset(small_raw, small_raw, progress=False)


def test_skip_policy_through_prepare(small_raw: Path, tmp_path: Path) -> None:
    (small_raw / "Bearing1_1" / "acc_00004.csv").write_text("broken\n")
    with pytest.raises(DataFormatError, match=r"acc_00004\.csv"):
        prepare_dataset(small_raw, tmp_path / "p1", progress=False)
    made = prepare_dataset(small_raw, tmp_path / "p2", progress=False, on_error="skip")
    assert made["Bearing1_1"].skipped == ("acc_00004.csv",)
    assert load_bearings(tmp_path / "p2")["Bearing1_1"].skipped == ("acc_00004.csv",)


# ----------------------------------------------------------------------------- 2021 layout


def write_2021_bearing(folder: Path, n: int = 4, short_names: bool = False) -> dict:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(n, 54)).astype(np.float32)
    spectra = rng.random((n, *SPECTRA_SHAPE)).astype(np.float32)
    rul = np.arange(n)[::-1] * 10.0
    columns = [f"{c[0]}_{c.split('_', 1)[1]}" if short_names else c for c in FEATURE_COLUMNS]
    folder.mkdir(parents=True)
    frame = pd.DataFrame(features, columns=columns)
    frame["RUL"] = rul
    frame.to_csv(folder / "features.csv.gz", index=True)  # with a pandas index column
    spec = pd.DataFrame(spectra.reshape(n, -1))
    spec["RUL"] = rul
    spec.to_csv(folder / "spectra.csv.gz", index=False)
    return {"features": features, "spectra": spectra, "rul": rul}


@pytest.mark.parametrize("short_names", [False, True])
def test_2021_layout_roundtrip(tmp_path: Path, short_names: bool) -> None:
    expected = write_2021_bearing(tmp_path / "zip" / "Bearing1_3", short_names=short_names)
    with gzip.open(tmp_path / "zip" / "Bearing1_3" / "features.csv.gz", "rt") as fh:
        assert fh.readline().startswith(",h_mean" if short_names else ",horizontal_mean")
    b = read_2021_bearing(tmp_path / "zip" / "Bearing1_3")
    np.testing.assert_allclose(b.features, expected["features"], rtol=1e-6)
    np.testing.assert_allclose(b.spectra, expected["spectra"], rtol=1e-6)
    np.testing.assert_array_equal(b.rul_seconds, expected["rul"])
    np.testing.assert_allclose(b.rul_fraction, [1, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(b.timestamps, [0, 10, 20, 30])
    assert b.condition == 1
    loaded = load_bearings(tmp_path / "zip", cache_dir=tmp_path / "cache")
    assert list(loaded) == list_bearings(tmp_path / "zip") == ["Bearing1_3"]
    np.testing.assert_allclose(loaded["Bearing1_3"].spectra, expected["spectra"], rtol=1e-6)
    prepared = prepare_dataset(tmp_path / "zip", tmp_path / "prep", progress=False)
    np.testing.assert_allclose(prepared["Bearing1_3"].features, expected["features"], rtol=1e-6)


def test_2021_layout_errors(tmp_path: Path) -> None:
    write_2021_bearing(tmp_path / "Bearing2_2")
    (tmp_path / "Bearing2_2" / "spectra.csv.gz").unlink()
    with pytest.raises(DataFormatError, match=r"spectra\.csv\.gz"):
        read_2021_bearing(tmp_path / "Bearing2_2")
    write_2021_bearing(tmp_path / "Bearing2_3")
    frame = pd.read_csv(tmp_path / "Bearing2_3" / "features.csv.gz")
    frame.drop(columns=["vertical_kurtosis"]).to_csv(tmp_path / "Bearing2_3" / "features.csv.gz")
    with pytest.raises(DataFormatError, match="vertical_kurtosis"):
        read_2021_bearing(tmp_path / "Bearing2_3")
    assert "kurtosis" in FEATURE_NAMES
