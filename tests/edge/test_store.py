"""The durable store: duplicates, labelling into the prepared layout, eligibility from the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.config.edge import EdgeCriteria
from kosmos_fl.data.bearing.femto import read_bearing
from kosmos_fl.data.bearing.processed import list_bearings, load_bearings, prepare_bearing
from kosmos_fl.edge.eligibility import evaluate
from kosmos_fl.edge.payload import Maintenance, Snapshot, maintenance_payload, parse_message, snapshot_payload
from kosmos_fl.edge.store import EdgeStore
from kosmos_fl.usecases.bearing import BearingUseCase
from tests.edge.conftest import make_signals

T0 = 1_700_000_000.0


def snaps(
    machine: str, bearing: str, signals: np.ndarray, t0: float = T0, period: float = 10.0
) -> list[Snapshot]:
    out = []
    for i, sig in enumerate(signals):
        msg = parse_message(snapshot_payload(machine, bearing, i, t0 + i * period, sig, 25600.0))
        assert isinstance(msg, Snapshot)
        out.append(msg)
    return out


def failure(machine: str, bearing: str, t: float, last: int | None = None) -> Maintenance:
    msg = parse_message(maintenance_payload(machine, bearing, t, last))
    assert isinstance(msg, Maintenance)
    return msg


def test_duplicates_are_ignored_and_counted(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    batch = snaps("m1", "Bearing1_1", make_signals(5))
    assert store.add(batch)[:2] == (5, 0)
    stored, dup, _ = store.add([batch[1], batch[3], *snaps("m1", "Bearing1_1", make_signals(6))[5:]])
    assert (stored, dup) == (1, 2)
    ev = failure("m1", "Bearing1_1", T0 + 50)
    assert store.add([ev])[2] == [("m1", "Bearing1_1")]
    assert store.add([ev])[:3] == (0, 1, [])  # a repeated event is a duplicate too
    assert store.count() == 6
    c = store.counters()
    assert (c["stored"], c["duplicates"], c["events"], c["received"]) == (6, 3, 1, 10)
    store.close()
    reopened = EdgeStore(tmp_path)  # everything is on disk
    assert reopened.count() == 6 and reopened.counters() == c


def test_labelled_bearing_equals_the_data_pipeline_on_real_femto(
    tmp_path: Path, femto_bearing3_1: Path
) -> None:
    """Snapshots that came over MQTT become the same features, spectra and RUL labels that
    `kosmos-fl data prepare` computes from the original files, in the layout BearingUseCase reads."""
    raw = read_bearing(femto_bearing3_1)
    t = raw.timestamps - raw.timestamps[0] + T0
    store = EdgeStore(tmp_path / "edge")
    msgs = [
        parse_message(
            snapshot_payload("m1", "Bearing3_1", i, float(t[i]), raw.signals[i], 25600.0, condition=3)
        )
        for i in range(len(t))
    ]
    store.add(msgs[::-1])  # arrival order does not matter: labels follow the timestamps
    assert store.refresh_processed() == []  # no failure event yet: nothing labelled
    store.add([failure("m1", "Bearing3_1", float(t[-1]), len(t) - 1)])
    assert store.refresh_processed() == ["Bearing3_1"]
    assert store.refresh_processed() == []  # up to date

    assert list_bearings(store.processed_dir) == ["Bearing3_1"]
    got = load_bearings(store.processed_dir)["Bearing3_1"]
    want = prepare_bearing(femto_bearing3_1, cache_dir=tmp_path / "cache")
    assert got.n_snapshots == want.n_snapshots == 515
    assert got.condition == 3
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(np.asarray(got.spectra), np.asarray(want.spectra))
    np.testing.assert_allclose(got.rul_seconds, want.rul_seconds, atol=1e-6)
    np.testing.assert_allclose(got.rul_fraction, want.rul_fraction, atol=1e-9)

    uc = BearingUseCase({"model": "ffnn"})
    ds = uc.client_dataset(store.processed_dir, ["Bearing3_1"])
    assert len(ds) == 515 and ds.x.shape == (515, 54)
    assert ds.y[0] == pytest.approx(want.rul_seconds[0] / 3600) and ds.y[-1] == 0


def test_late_snapshot_relabels_and_later_snapshots_are_not_labelled(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    s = snaps("m1", "Bearing1_1", make_signals(12))
    store.add([*s[:5], *s[6:10], failure("m1", "Bearing1_1", T0 + 90)])
    assert store.refresh_processed() == ["Bearing1_1"]
    assert load_bearings(store.processed_dir)["Bearing1_1"].n_snapshots == 9
    store.add([s[5], s[10], s[11]])  # seq 5 arrives late; 10 and 11 are after the failure time
    assert store.refresh_processed() == ["Bearing1_1"]
    b = load_bearings(store.processed_dir)["Bearing1_1"]
    assert b.n_snapshots == 10
    np.testing.assert_allclose(b.rul_seconds, 90 - np.arange(10) * 10.0)


def test_same_bearing_id_on_two_machines_gets_two_folders(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    store.add([*snaps("m1", "B1", make_signals(3, 1)), failure("m1", "B1", T0 + 20)])
    store.add([*snaps("m2", "B1", make_signals(4, 2)), failure("m2", "B1", T0 + 30)])
    assert sorted(store.refresh_processed()) == ["m1-B1", "m2-B1"]
    assert list_bearings(store.processed_dir) == ["m1-B1", "m2-B1"]


def _history(store: EdgeStore, machine: str, bearing: str, signals: np.ndarray) -> None:
    store.add([*snaps(machine, bearing, signals), failure(machine, bearing, T0 + 10 * (len(signals) - 1))])


def test_eligibility_counts_complete_clean_histories(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path)
    crit = EdgeCriteria(min_histories=2, min_labelled_snapshots=30)
    v = evaluate(store, crit)
    assert not v.eligible and "nothing collected yet" in v.reason

    store.add(snaps("m1", "Bearing1_1", make_signals(20, 1)))  # running, no failure yet
    v = evaluate(store, crit)
    assert not v.eligible
    assert "0 of 2 complete run-to-failure histories" in v.reason
    assert "0 of 30 labelled snapshots" in v.reason
    assert "m1/Bearing1_1 still running (20 snapshots" in v.reason

    store.add([failure("m1", "Bearing1_1", T0 + 190)])
    store.refresh_processed()
    v = evaluate(store, crit)
    assert not v.eligible and "1 of 2 complete" in v.reason and "20 of 30 labelled" in v.reason

    flat = make_signals(15, 2)
    flat[3:5, :, 1] = 0.02  # vertical sensor stuck for two snapshots
    _history(store, "m1", "Bearing1_2", flat)
    clipped = make_signals(15, 3)
    clipped[-4:, :, 0] = np.clip(clipped[-4:, :, 0], -0.5, 0.5)  # horizontal hits the rails
    _history(store, "m2", "Bearing2_1", clipped)
    store.refresh_processed()
    v = evaluate(store, crit)
    assert not v.eligible
    assert "m1/Bearing1_2 excluded: a flat-lined channel in 2 of 15 snapshots" in v.reason
    assert "m2/Bearing2_1 excluded: a clipped signal in 4 of 15 snapshots" in v.reason
    assert v.summary["histories"] == 1 and v.summary["bearings"] == ["Bearing1_1"]

    lenient = crit.model_copy(update={"max_bad_share": 0.3})  # tolerate a few bad snapshots
    v = evaluate(store, lenient)
    assert v.eligible and v.reason is None
    assert v.bearings == ["Bearing1_1", "Bearing1_2", "Bearing2_1"]
    assert v.summary["labelled_snapshots"] == v.summary["samples"] == 50

    _history(store, "m2", "Bearing2_2", make_signals(12, 4))
    store.refresh_processed()
    v = evaluate(store, crit)
    assert v.eligible and v.bearings == ["Bearing1_1", "Bearing2_2"]
    assert v.summary["labelled_snapshots"] == 32
    strict = crit.model_copy(update={"min_labelled_snapshots": 33})
    assert "32 of 33 labelled snapshots" in evaluate(store, strict).reason
    # a sensor range: peaks at or beyond it count as clipped
    ranged = crit.model_copy(update={"full_scale": 1.0})
    assert "Bearing2_2 excluded: a clipped signal" in evaluate(store, ranged).reason


def test_real_femto_signals_pass_the_default_quality_checks(femto_bearing3_1: Path, tmp_path: Path) -> None:
    """The defaults must not reject real data: the real bearing incl. its violent end is clean."""
    raw = read_bearing(femto_bearing3_1)
    store = EdgeStore(tmp_path)
    t = raw.timestamps - raw.timestamps[0] + T0
    store.add([
        parse_message(snapshot_payload("m", "Bearing3_1", i, float(t[i]), raw.signals[i], 25600.0))
        for i in range(len(t))
    ])  # fmt: skip
    rec = store.bearings()[0]
    assert (rec.flat, rec.clipped, rec.snapshots) == (0, 0, 515)
