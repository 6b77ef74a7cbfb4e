"""The MQTT ingest against real Mosquitto brokers: restart and reconnect durability, duplicates,
bad payloads, credentials kept out of the logs."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.edge.ingest import EdgeIngest
from kosmos_fl.edge.payload import maintenance_payload, snapshot_payload
from kosmos_fl.localfed import CLI, child_env
from tests.edge.conftest import Broker, make_signals

T0 = 1_700_000_000.0
SIGNALS = make_signals(8, seed=5)


def publisher(url: str) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.connect(host, int(port))
    c.loop_start()
    return c


def publish(c: mqtt.Client, topic: str, payloads: list[bytes]) -> None:
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()


def snapshots(bearing: str, seqs: range, machine: str = "m1") -> list[bytes]:
    return [
        snapshot_payload(machine, bearing, i, T0 + 10 * i, SIGNALS[i % len(SIGNALS)], 25600.0) for i in seqs
    ]


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def stored_keys(db: Path) -> set[tuple[str, str, int]]:
    if not db.exists():
        return set()
    with sqlite3.connect(db, timeout=10) as con:
        try:
            return {(m, b, s) for m, b, s in con.execute("SELECT machine_id, bearing_id, seq FROM snapshots")}
        except sqlite3.OperationalError:
            return set()


def edge_cfg(broker: Broker | str, topic: str, **over: object) -> EdgeConfig:
    url = broker.url if isinstance(broker, Broker) else broker
    return EdgeConfig.model_validate({"broker": url, "topics": [topic], "batch_size": 64, **over})


def test_nothing_lost_when_the_ingest_is_killed_and_restarted(broker: Broker, tmp_path: Path) -> None:
    """SIGKILL the collecting process while messages stream in, publish more while it is down,
    restart it: every snapshot is stored exactly once."""
    cfg_path = tmp_path / "client.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "client_name": "kill-test",
                "edge": {"broker": broker.url, "topics": ["plant/m1"], "store_dir": str(tmp_path / "store")},
            }
        )
    )
    db = tmp_path / "store" / "edge.db"
    log = tmp_path / "ingest.log"
    env = child_env()

    def start() -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen(
            [*CLI, "machine", "ingest", "-c", str(cfg_path)], env=env, stdout=out, stderr=out
        )

    proc = start()
    try:
        wait_for(lambda: "connected" in log.read_text(errors="replace"), 60, "the ingest to connect")
        pub = publisher(broker.url)
        time.sleep(0.5)  # subscription in place (the persistent session keeps it from here on)
        first = snapshots("Bearing1_1", range(0, 400))
        infos = [pub.publish("plant/m1", p, qos=1) for p in first]
        wait_for(lambda: len(stored_keys(db)) >= 50, 60, "the first snapshots to be stored")
        proc.send_signal(signal.SIGKILL)  # mid-stream: some are stored, some in flight
        proc.wait(10)
        at_kill = len(stored_keys(db))
        assert at_kill < 400, "the ingest stored everything before it was killed; the test proves nothing"
        for info in infos:
            info.wait_for_publish(30)
        publish(pub, "plant/m1", snapshots("Bearing1_1", range(400, 600)))  # while nobody listens
        publish(pub, "plant/m1", [maintenance_payload("m1", "Bearing1_1", T0 + 5990, 599)])
        pub.disconnect()
        pub.loop_stop()

        proc = start()
        wait_for(lambda: len(stored_keys(db)) >= 600, 60, "all 600 snapshots after the restart")
        keys = stored_keys(db)
        assert keys == {("m1", "Bearing1_1", i) for i in range(600)}
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
            wait_for(
                lambda: con.execute("SELECT COUNT(*) FROM processed").fetchone()[0] == 1, 60, "labelling"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert (tmp_path / "store" / "processed" / "Bearing1_1" / "features.npy").is_file()


def test_nothing_lost_across_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    ingest = EdgeIngest(edge_cfg(broker, "plant/+"), tmp_path / "store", "kosmos-reconnect-test")
    assert ingest.start(wait=15)
    try:
        pub = publisher(broker.url)
        publish(pub, "plant/m1", snapshots("B1", range(0, 50)))
        pub.disconnect()
        pub.loop_stop()
        wait_for(lambda: ingest.store.count() == 50, 30, "50 snapshots")
        broker.stop()  # the client loses its connection
        wait_for(lambda: not ingest.connected.is_set(), 10, "the disconnect")
        broker.start()
        pub = publisher(broker.url)
        publish(pub, "plant/m2", snapshots("B2", range(0, 50), machine="m2"))  # may land before it reconnects
        publish(pub, "plant/m1", snapshots("B1", range(40, 60)))  # 10 repeats
        pub.disconnect()
        pub.loop_stop()
        wait_for(lambda: ingest.store.count() == 110, 60, "110 snapshots after the broker restart")
        assert ingest.stats["connects"] >= 2
        assert ingest.store.counters()["duplicates"] >= 10
        assert ingest.store.keys() == {("m1", "B1", i) for i in range(60)} | {
            ("m2", "B2", i) for i in range(50)
        }
    finally:
        ingest.stop()


def test_bad_payloads_are_counted_logged_and_survived(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ingest = EdgeIngest(edge_cfg(broker, "plant/m1"), tmp_path / "store", "kosmos-bad-test")
    assert ingest.start(wait=15)
    try:
        good = snapshots("B1", range(0, 6))
        short = snapshot_payload("m1", "B1", 99, T0, SIGNALS[0][:1000], 25600.0)
        wrong_rate = snapshot_payload("m1", "B1", 98, T0, SIGNALS[0], 20000.0)
        bad = [b"SECRET-GARBAGE \x00\xff", b'{"kind": "snapshot"}', short, wrong_rate, b"[]"]
        pub = publisher(broker.url)
        publish(pub, "plant/m1", [good[0], *bad[:2], *good[1:3], *bad[2:], *good[3:]])
        pub.disconnect()
        pub.loop_stop()
        wait_for(lambda: ingest.store.counters()["received"] == 11, 30, "all 11 messages")
        c = ingest.store.counters()
        assert (c["stored"], c["bad"], c["duplicates"]) == (6, 5, 0)
        assert ingest.stats["bad"] == 5
        assert ingest.store.keys() == {("m1", "B1", i) for i in range(6)}
        assert ingest._writer.is_alive()
        warnings = [r.getMessage() for r in caplog.records if "bad payload" in r.getMessage()]
        assert len(warnings) == 5
        assert any("not valid JSON" in w for w in warnings)
        assert any("1000 samples" in w and "expect_samples" in w for w in warnings)
        assert not any("SECRET-GARBAGE" in r.getMessage() for r in caplog.records)
    finally:
        ingest.stop()


def test_credentials_never_reach_the_logs(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pw-Do-Not-Log-7f3a"
    cfg = edge_cfg(broker, "plant/m1", username="site-user-x", password=password)
    assert password not in repr(cfg) and password not in str(cfg.model_dump())
    ingest = EdgeIngest(cfg, tmp_path / "store", "kosmos-cred-test")
    assert ingest.start(wait=15)  # the private broker accepts any user
    ingest.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "connected" in text
    assert password not in text and "site-user-x" not in text


def test_restart_resumes_the_persistent_session_on_the_shared_broker(
    shared_broker: str, tmp_path: Path
) -> None:
    """Against the machine's Mosquitto: a stopped client gets what was published meanwhile."""
    topic = f"kosmos-test/{os.getpid()}-{time.time_ns()}"
    cfg = edge_cfg(shared_broker, topic, session_expiry=120)
    client_id = f"kosmos-test-{time.time_ns()}"
    ingest = EdgeIngest(cfg, tmp_path / "store", client_id)
    assert ingest.start(wait=15)
    ingest.stop()
    pub = publisher(shared_broker)
    publish(pub, topic, snapshots("B1", range(0, 30)))
    pub.disconnect()
    pub.loop_stop()
    ingest = EdgeIngest(cfg, tmp_path / "store", client_id)
    ingest.start(wait=15)
    try:
        wait_for(lambda: ingest.store.count() == 30, 30, "the 30 snapshots published while stopped")
    finally:
        ingest.stop()
