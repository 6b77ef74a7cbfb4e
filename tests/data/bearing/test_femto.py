"""Raw FEMTO reader: real-file quirks, labels, errors and the skip policy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kosmos_fl.data.bearing.femto import (
    CONDITIONS,
    SNAPSHOT_LEN,
    bearing_condition,
    find_bearings,
    read_bearing,
    read_timestamps,
    rul_labels,
    unwrap_time_of_day,
)
from kosmos_fl.errors import DataError, DataFormatError
from tests.data.conftest import SnapshotWriter

# ----------------------------------------------------------------------------- real files


@pytest.mark.realdata
def test_real_bearing3_1_reads_all_snapshots_and_ignores_temp(femto_bearing3_1: Path) -> None:
    assert len(list(femto_bearing3_1.glob("temp_*.csv"))) > 0  # the quirk is present
    raw = read_bearing(femto_bearing3_1)
    assert raw.name == "Bearing3_1" and raw.condition == 3
    assert raw.signals.shape == (515, SNAPSHOT_LEN, 2) and raw.signals.dtype == np.float32
    assert all(p.name.startswith("acc_") for p in raw.files)
    assert raw.skipped == () and raw.repaired == ()
    # every snapshot 10 s apart, 85 min 40 s in total
    np.testing.assert_allclose(np.diff(raw.timestamps), 10.0, atol=1e-3)
    assert raw.timestamps[-1] - raw.timestamps[0] == pytest.approx(5140.0, abs=1e-3)


@pytest.mark.realdata
def test_real_values_match_pandas_and_exponent_microseconds(femto_bearing3_1: Path) -> None:
    raw = read_bearing(femto_bearing3_1)
    for index in (0, 257, 514):
        path = femto_bearing3_1 / f"acc_{index + 1:05d}.csv"
        ref = pd.read_csv(path, header=None)
        np.testing.assert_array_equal(raw.signals[index], ref[[4, 5]].to_numpy(np.float32))
    # first row of acc_00001.csv is "9,10,39,1.1879e+05,0.338,-0.263"
    assert (femto_bearing3_1 / "acc_00001.csv").read_text().startswith("9,10,39,1.1879e+05,")
    assert raw.timestamps[0] == pytest.approx(9 * 3600 + 10 * 60 + 39 + 0.11879)


@pytest.mark.realdata
def test_real_rul_labels(femto_bearing3_1: Path) -> None:
    raw = read_bearing(femto_bearing3_1)
    rul, fraction = rul_labels(raw.timestamps)
    assert rul[0] == pytest.approx(5140.0, abs=1e-3) and rul[-1] == 0.0
    assert fraction[0] == 1.0 and fraction[-1] == 0.0
    assert np.all(np.diff(rul) < 0)
    np.testing.assert_allclose(fraction, rul / 5140.0, rtol=1e-6)


@pytest.mark.realdata
def test_semicolon_separated_bearing1_4(femto_bearing1_4_head: Path) -> None:
    first = (femto_bearing1_4_head / "acc_00001.csv").read_text().splitlines()[0]
    assert ";" in first and "," not in first
    raw = read_bearing(femto_bearing1_4_head)
    assert raw.condition == 1 and raw.signals.shape == (5, SNAPSHOT_LEN, 2)
    ref = pd.read_csv(femto_bearing1_4_head / "acc_00003.csv", sep=";", header=None)
    np.testing.assert_array_equal(raw.signals[2], ref[[4, 5]].to_numpy(np.float32))
    h, m, s, us = (float(v) for v in first.split(";")[:4])
    assert raw.timestamps[0] == pytest.approx(h * 3600 + m * 60 + s + us * 1e-6)


@pytest.mark.realdata
def test_challenge_layout_is_found(femto_bearing3_1: Path, tmp_path: Path) -> None:
    # the archive extracts to <tmp>/Learning_set/Bearing3_1: pointing at <tmp> must find it
    found = find_bearings(femto_bearing3_1.parent.parent)
    assert found == {"Bearing3_1": femto_bearing3_1}
    assert find_bearings(femto_bearing3_1) == {"Bearing3_1": femto_bearing3_1}


# ----------------------------------------------------------------------------- layouts


def test_find_bearings_prefers_full_recordings(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    for subset in ("Test_set", "Full_Test_Set"):
        write_snapshot(tmp_path / "femto" / subset / "Bearing1_3", 1, (8, 0, 0, 0))
    write_snapshot(tmp_path / "femto" / "Learning_set" / "Bearing1_1", 1, (8, 0, 0, 0))
    write_snapshot(tmp_path / "femto" / "Learning_set" / "Bearing1_10", 1, (8, 0, 0, 0))
    (tmp_path / "femto" / "Learning_set" / "Bearing2_1").mkdir()  # no acc files: ignored
    found = find_bearings(tmp_path)
    assert list(found) == ["Bearing1_1", "Bearing1_3", "Bearing1_10"]  # natural order
    assert found["Bearing1_3"].parent.name == "Full_Test_Set"


def test_find_bearings_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        find_bearings(tmp_path / "nope")


def test_bearing_condition() -> None:
    assert bearing_condition("Bearing2_3") == 2
    assert set(CONDITIONS) == {1, 2, 3}
    assert CONDITIONS[1] == (1800, 4000) and CONDITIONS[3] == (1500, 5000)
    with pytest.raises(DataError, match="BearingC_I"):
        bearing_condition("Bearing7_1")
    with pytest.raises(DataError):
        bearing_condition("pump_3")


# ----------------------------------------------------------------------------- timestamps


def test_midnight_wrap_is_monotonic(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = tmp_path / "Bearing2_1"
    times = [(23, 59, 40, 5e5), (23, 59, 50, 5e5), (0, 0, 0, 5e5), (0, 0, 10, 5e5)]
    for i, t in enumerate(times, start=1):
        write_snapshot(folder, i, t)
    raw = read_bearing(folder)
    np.testing.assert_allclose(np.diff(raw.timestamps), 10.0)
    assert raw.repaired == ()
    rul, _ = rul_labels(raw.timestamps)
    np.testing.assert_allclose(rul, [30, 20, 10, 0])
    np.testing.assert_allclose(read_timestamps(folder), raw.timestamps)


def test_glitched_timestamp_is_repaired_and_reported(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    # like real Bearing1_1 acc_02121/02122: two snapshots claim a time 6 h earlier
    folder = tmp_path / "Bearing1_1"
    times = [(15, 32, 39, 0), (15, 32, 49, 0), (9, 38, 46, 0), (9, 38, 46, 0), (15, 33, 19, 0)]
    for i, t in enumerate(times, start=1):
        write_snapshot(folder, i, t)
    raw = read_bearing(folder)
    np.testing.assert_allclose(np.diff(raw.timestamps), 10.0)
    assert [p.name for p, _ in raw.repaired] == ["acc_00003.csv", "acc_00004.csv"]


def test_unwrap_extrapolates_glitches_at_the_ends() -> None:
    t, repaired = unwrap_time_of_day(np.array([100.0, 50.0, 60.0, 70.0, 10.0]))
    np.testing.assert_allclose(t, [40.0, 50.0, 60.0, 70.0, 80.0])
    assert repaired.tolist() == [True, False, False, False, True]


def test_rul_labels_edge_cases() -> None:
    rul, fraction = rul_labels(np.array([5.0]))
    assert rul.tolist() == [0.0] and fraction.tolist() == [0.0]
    with pytest.raises(ValueError):
        rul_labels(np.array([]))


# ----------------------------------------------------------------------------- bad files


def _bearing(tmp_path: Path, write_snapshot: SnapshotWriter, n: int = 4) -> Path:
    folder = tmp_path / "Bearing3_2"
    for i in range(1, n + 1):
        write_snapshot(folder, i, (10, 10 * i // 60, 10 * i % 60, 0))
    return folder


def _truncate(path: Path, keep_rows: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:keep_rows]) + lines[keep_rows][:7])  # cut mid-row


def test_truncated_file_raises_naming_it(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot)
    _truncate(folder / "acc_00003.csv", 1000)
    with pytest.raises(DataFormatError, match=r"acc_00003\.csv.*rows, expected 2560"):
        read_bearing(folder)


def test_skip_policy_counts_and_keeps_labels_right(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot, n=5)
    _truncate(folder / "acc_00002.csv", 2000)
    (folder / "acc_00004.csv").write_text("")
    raw = read_bearing(folder, on_error="skip")
    assert [p.name for p, _ in raw.skipped] == ["acc_00002.csv", "acc_00004.csv"]
    assert "rows" in raw.skipped[0][1] and "empty" in raw.skipped[1][1]
    assert [p.name for p in raw.files] == ["acc_00001.csv", "acc_00003.csv", "acc_00005.csv"]
    rul, _ = rul_labels(raw.timestamps)
    np.testing.assert_allclose(rul, [40.0, 20.0, 0.0])  # from timestamps, not file positions
    ref = np.loadtxt(folder / "acc_00003.csv", delimiter=",", usecols=(4, 5), dtype=np.float32)
    np.testing.assert_array_equal(raw.signals[1], ref)


def _set_line(text: str, index: int, line: str) -> str:
    lines = text.splitlines()
    lines[index] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: _set_line(t, 99, "10,0,20,100,0.1,0.2,0.3"), r"columns"),
        (lambda t: _set_line(t, 49, "10,0,20,100,abc,0.1"), r"abc"),
        (lambda t: "hello\n" + t, r"first row"),
        (lambda t: _set_line(t, 5, "10,0,20,100,,0.5"), r"empty|NaN"),
        (lambda t: _set_line(t, 0, "25,0,0,0,0.1,0.2"), r"out of range"),
    ],
    ids=["extra-column", "not-a-number", "header-line", "empty-value", "bad-hour"],
)
def test_corrupt_content_raises_naming_file(
    tmp_path: Path, write_snapshot: SnapshotWriter, damage: Callable[[str], str], message: str
) -> None:
    folder = _bearing(tmp_path, write_snapshot)
    path = folder / "acc_00002.csv"
    path.write_text(damage(path.read_text()))
    with pytest.raises(DataFormatError, match=r"acc_00002\.csv") as info:
        read_bearing(folder)
    assert len(str(info.value).splitlines()) == 1
    assert re.search(message, str(info.value)), str(info.value)
    skipped = read_bearing(folder, on_error="skip")
    assert [p.name for p, _ in skipped.skipped] == ["acc_00002.csv"]
    assert skipped.signals.shape[0] == 3
    np.testing.assert_allclose(rul_labels(skipped.timestamps)[0], [30.0, 10.0, 0.0])


def test_non_finite_values_are_rejected(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot)
    path = folder / "acc_00004.csv"
    lines = path.read_text().splitlines()
    lines[100] = "10,0,40,100,inf,0.5"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"acc_00004\.csv.*infinite"):
        read_bearing(folder)


def test_missing_final_newline_and_crlf_are_fine(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot)
    p1, p2 = folder / "acc_00001.csv", folder / "acc_00002.csv"
    p1.write_text(p1.read_text().rstrip("\n"))
    p2.write_bytes(p2.read_bytes().replace(b"\n", b"\r\n"))
    raw = read_bearing(folder)
    assert raw.signals.shape[0] == 4 and raw.skipped == ()


def test_mixed_separators_and_decimal_commas(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot)
    path = folder / "acc_00002.csv"
    expected = np.loadtxt(path, delimiter=",", usecols=(4, 5), dtype=np.float32)
    path.write_text(path.read_text().replace(",", ";").replace(".", ","))  # European style
    raw = read_bearing(folder)
    np.testing.assert_array_equal(raw.signals[1], expected)
    assert raw.timestamps[1] == pytest.approx(36020.0)


def test_only_bad_files_is_a_data_error(tmp_path: Path, write_snapshot: SnapshotWriter) -> None:
    folder = _bearing(tmp_path, write_snapshot, n=2)
    for path in folder.glob("acc_*.csv"):
        path.write_text("x\n")
    with pytest.raises(DataError, match="none of its 2 snapshot files"):
        read_bearing(folder, on_error="skip")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_bearing(tmp_path / "Bearing1_1")
    (tmp_path / "Bearing1_1").mkdir()
    (tmp_path / "Bearing1_1" / "temp_00001.csv").write_text("9;0;0;1;40.0\n")
    with pytest.raises(DataError, match="no acc_"):
        read_bearing(tmp_path / "Bearing1_1")
    with pytest.raises(ValueError):
        read_bearing(tmp_path / "Bearing1_1", on_error="ignore")  # type: ignore[arg-type]


def test_many_files_span_several_parse_chunks(
    tmp_path: Path, write_snapshot: SnapshotWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kosmos_fl.data.bearing._rawcsv as rawcsv

    folder = _bearing(tmp_path, write_snapshot, n=7)
    monkeypatch.setattr(rawcsv, "CHUNK_BYTES", 150_000)  # ~2 files per chunk
    _truncate(folder / "acc_00005.csv", 10)
    raw = read_bearing(folder, on_error="skip")
    assert raw.signals.shape[0] == 6
    for i, path in enumerate(raw.files):
        ref = np.loadtxt(path, delimiter=",", usecols=(4, 5), dtype=np.float32)
        np.testing.assert_array_equal(raw.signals[i], ref)
    shutil.rmtree(folder)
