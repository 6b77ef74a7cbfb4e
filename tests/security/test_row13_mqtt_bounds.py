"""Issue 16 row 13: what an MQTT publisher can make the client's ingest hold or compute.

A 4 MiB snapshot with a million samples per channel was parsed (6 s CPU) before the sample-count
check; no ``MaximumPacketSize`` was set and the ingest queue was unbounded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.edge import payload as payload_mod
from kosmos_fl.edge.ingest import EdgeIngest, _Raw
from kosmos_fl.edge.payload import snapshot_payload


def _ingest(tmp_path: Path) -> EdgeIngest:
    cfg = EdgeConfig.model_validate({"broker": "mqtt://127.0.0.1:1", "topics": ["plant/#"], "batch_size": 64})
    return EdgeIngest(cfg, tmp_path / "store", "row13")


def _huge_snapshot(samples: int) -> bytes:
    """What the review sent: short JSON numbers, so a million samples fit in about 4 MiB."""
    zeros = ",".join(["0"] * samples)
    return (
        '{"kind":"snapshot","machine_id":"m1","bearing_id":"b1","timestamp":1,"seq":0,'
        f'"sampling_rate":25600,"channels":{{"horizontal":[{zeros}],"vertical":[{zeros}]}}}}'
    ).encode()


def test_row13_oversized_snapshot_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = _ingest(tmp_path)
    parsed: list[Any] = []
    real = payload_mod._ADAPTER.validate_json

    def spy(data: Any, **kw: Any) -> Any:
        parsed.append(len(data))
        return real(data, **kw)

    monkeypatch.setattr(payload_mod._ADAPTER, "validate_json", spy)
    big = _huge_snapshot(1 << 20)
    assert len(big) > 4_000_000
    t0 = time.process_time()
    ingest._write([_Raw(1, 0, "plant/m1", big, time.time())])
    assert time.process_time() - t0 < 0.5
    assert parsed == [] and ingest.stats["bad"] == 1
    # a right-sized one with too many samples is refused before its channels become arrays
    sized = _huge_snapshot(ingest.cfg.expect_samples + 1)
    converted: list[int] = []
    real_asarray = np.asarray
    monkeypatch.setattr(
        payload_mod.np, "asarray", lambda x, *a, **k: converted.append(1) or real_asarray(x, *a, **k)
    )
    ingest._write([_Raw(2, 0, "plant/m1", sized, time.time())])
    assert ingest.stats["bad"] == 2 and converted == []
    # and a valid snapshot still goes in
    monkeypatch.undo()
    signal = np.zeros((ingest.cfg.expect_samples, 2), np.float32)
    good = snapshot_payload("m1", "b1", 0, 1.0, signal, ingest.cfg.expect_sampling_rate, encoding="json")
    ingest._write([_Raw(3, 0, "plant/m1", good, time.time())])
    assert ingest.stats["stored"] == 1
    ingest.store.close()


def test_row13_broker_told_maximum_packet_size_and_queue_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = _ingest(tmp_path)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(ingest.client, "connect_async", lambda *a, **k: seen.update(k))
    monkeypatch.setattr(ingest.client, "loop_start", lambda: None)
    ingest.start(wait=None)
    try:
        props = seen["properties"]
        assert 0 < props.MaximumPacketSize <= 1 << 20  # a 2560-sample snapshot is ~30-170 kB
        assert ingest._queue.maxsize > 0
    finally:
        ingest.stop(timeout=5)
