"""Replay recorded FEMTO bearings to an MQTT broker as a machine's sensor gateway would.

Each bearing is published snapshot by snapshot (QoS 1, in order, on one topic), then a maintenance
event says it failed and was replaced by the next bearing of the folder. Payload timestamps keep
the recording's spacing (10 s) from ``start`` on, whatever the replay speed, so labels computed
by a client equal the data set's; ``speed`` only scales the wall-clock pause between snapshots.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.data.bearing.femto import SAMPLE_RATE, SNAPSHOT_PERIOD, find_bearings, read_bearing
from kosmos_fl.edge.ingest import make_client
from kosmos_fl.edge.payload import Encoding, maintenance_payload, snapshot_payload
from kosmos_fl.errors import DataError, KosmosError

log = logging.getLogger("kosmos_fl.edge.replay")


@dataclass
class ReplayResult:
    bearings: list[str]
    snapshots: int
    events: int
    seconds: float


def _connect(cfg: EdgeConfig, client_id: str, timeout: float) -> mqtt.Client:
    client = make_client(cfg, client_id)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    host, port, _ = cfg.endpoint
    try:
        client.connect(host, port, keepalive=cfg.keepalive)
    except OSError as exc:
        raise KosmosError(
            f"cannot reach the MQTT broker {cfg.redacted()}: {exc.strerror or exc}; check --broker"
        ) from None
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise KosmosError(
                f"the MQTT broker {cfg.redacted()} did not accept the connection; check credentials"
            )
        time.sleep(0.02)
    return client


def replayed_snapshots(n: int, stride: int, limit: int | None) -> np.ndarray:
    """Indices of the snapshots replayed out of ``n``: every ``stride``-th counted back from the
    last (so the failure end is always in), then the last ``limit`` of those."""
    idx = np.arange(n)[::-1][::stride][::-1]
    return idx[-limit:] if limit is not None else idx


def _wait_for_acks(pending: list[mqtt.MQTTMessageInfo], name: str) -> None:
    """Block until the broker has acknowledged every message of bearing ``name`` (QoS 1)."""
    for info in pending:
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            raise KosmosError(f"the broker did not acknowledge a {name} message within 60 s")


def replay(
    source: Path,
    cfg: EdgeConfig,
    topic: str,
    *,
    machine_id: str = "machine-1",
    speed: float = 1.0,
    stride: int = 1,
    limit: int | None = None,
    start: float | None = None,
    failure_event: bool = True,
    encoding: Encoding = "f32le-base64",
    progress: Callable[[str, int, int], None] | None = None,
) -> ReplayResult:
    """Publish every bearing under ``source`` (a bearing folder or a folder of them), in order.

    ``speed``: multiple of real time (one snapshot per 10 s at 1); 0 publishes as fast as the
    broker takes it. ``stride`` keeps every n-th snapshot and ``limit`` the last ``limit`` of
    those (the failure end), for short demos and tests.
    """
    if speed < 0 or stride < 1 or (limit is not None and limit < 1):
        raise KosmosError("--speed must be >= 0, --stride >= 1 and --limit >= 1")
    if not topic or "+" in topic or "#" in topic:
        raise KosmosError(f"--topic {topic!r} must be a plain MQTT topic (no wildcards)")
    bearings = find_bearings(Path(source))
    if not bearings:
        raise DataError(f"no bearing folders (BearingC_I with acc_*.csv) under {source}")
    client = _connect(cfg, f"kosmos-replay-{machine_id}-{time.time_ns() % 10**9}", timeout=15)
    t_start = time.time() if start is None else start
    clock = t_start
    total = events = 0
    began = time.monotonic()
    names = list(bearings)
    try:
        for i, (name, folder) in enumerate(bearings.items()):
            raw = read_bearing(folder)
            idx = replayed_snapshots(raw.timestamps.size, stride, limit)
            rel = raw.timestamps[idx] - raw.timestamps[idx[0]]
            pending = []
            pace = SNAPSHOT_PERIOD * stride / speed if speed > 0 else 0.0
            next_at = time.monotonic()
            for seq, (k, dt) in enumerate(zip(idx, rel, strict=True)):
                payload = snapshot_payload(
                    machine_id,
                    name,
                    seq,
                    clock + float(dt),
                    raw.signals[k],
                    SAMPLE_RATE,
                    condition=raw.condition,
                    encoding=encoding,
                )
                pending.append(client.publish(topic, payload, qos=1))
                total += 1
                if progress is not None:
                    progress(name, seq + 1, len(idx))
                if pace:
                    next_at += pace
                    time.sleep(max(0.0, next_at - time.monotonic()))
            failure_time = clock + float(rel[-1])
            if failure_event:
                nxt = names[i + 1] if i + 1 < len(names) else None
                pending.append(
                    client.publish(
                        topic, maintenance_payload(machine_id, name, failure_time, len(idx) - 1, nxt), qos=1
                    )
                )
                events += 1
            _wait_for_acks(pending, name)
            log.info(
                "replayed %s: %d snapshots%s", name, len(idx), ", failure event" if failure_event else ""
            )
            clock = failure_time + SNAPSHOT_PERIOD * stride  # the replacement starts after the failure
    finally:
        client.disconnect()
        client.loop_stop()
    return ReplayResult(names, total, events, time.monotonic() - began)
