"""Edge ingest benchmark: snapshots stored per second by one client and publish->stored latency.

A publisher process sends FEMTO-sized snapshots (2 x 2560 float32) with QoS 1 to the broker; the
client under test is the real :class:`~kosmos_fl.edge.ingest.EdgeIngest` (validate, store in
SQLite, acknowledge after commit). The baseline, measured in the same run against the same broker,
is a bare paho subscriber that only counts what arrives (QoS 1, auto-ack, no parsing, no storing).

Two phases per subject: a flood (publish as fast as possible: throughput) and a paced stream
(``--rate`` per second: latency without queueing). Latency is publish call -> stored (ingest) or
-> received (baseline), both clocks on this machine.

    .venv/bin/python bench/bench_edge.py [--broker mqtt://127.0.0.1:1883] [--n 2000] [--rate 100]

Without --broker it starts a private Mosquitto (no other traffic, no queue limit).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kosmos_fl.config.edge import EdgeConfig, parse_broker
from kosmos_fl.edge.ingest import EdgeIngest
from kosmos_fl.edge.payload import snapshot_payload


def _publish(url: str, topic: str, n: int, rate: float, encoding: str, out: mp.Queue) -> None:
    """Child process: publish n snapshots (seq 0..n-1); report {seq: publish time}."""
    host, port, _ = parse_broker(url)
    rng = np.random.default_rng(0)
    signals = (rng.normal(0, 0.5, (16, 2560, 2))).round(3).astype(np.float32)
    bearing = f"B{uuid.uuid4().hex[:6]}"
    payloads = [
        snapshot_payload("bench", bearing, i, 1.7e9 + 10 * i, signals[i % 16], 25600.0, encoding=encoding)  # type: ignore[arg-type]
        for i in range(n)
    ]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.connect(host, port)
    c.loop_start()
    sent: dict[int, float] = {}
    infos = []
    next_at = time.monotonic()
    for i, p in enumerate(payloads):
        if rate > 0:
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        sent[i] = time.time()
        infos.append(c.publish(topic, p, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    out.put((sent, len(payloads[0])))


class Baseline:
    """Receive-only paho subscriber: the floor the ingest is compared with."""

    def __init__(self, url: str, topic: str) -> None:
        host, port, _ = parse_broker(url)
        self.times: dict[int, float] = {}
        self.n = 0
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-base-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)  # fmt: skip
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._msg
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
        self.c.connect(host, port, clean_start=False, properties=props)
        self.c.loop_start()
        self.ready.wait(10)

    def _msg(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        now = time.time()
        self.times[self.n] = now  # seq order == arrival order for one publisher, QoS 1, one topic
        self.n += 1

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Ingest:
    def __init__(self, url: str, topic: str, folder: Path) -> None:
        self.times: dict[int, float] = {}
        self.n = 0
        cfg = EdgeConfig(broker=url, topics=[topic], session_expiry=60)
        self.ing = EdgeIngest(cfg, folder, f"bench-ingest-{uuid.uuid4().hex[:8]}", on_stored=self._stored)
        self.ing.start(wait=10)

    def _stored(self, items: list, at: float) -> None:
        for msg, _ in items:
            self.times[msg.seq] = at
        self.n += len(items)

    def stop(self) -> None:
        self.ing.stop()


def run(subject: str, url: str, n: int, rate: float, encoding: str, folder: Path) -> dict[str, float]:
    topic = f"kosmos-bench/{uuid.uuid4().hex[:8]}"
    sub = Baseline(url, topic) if subject == "baseline" else Ingest(url, topic, folder)
    cpu0 = time.process_time()  # this process only: the subscriber's threads (the publisher is a child)
    q: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_publish, args=(url, topic, n, rate, encoding, q))
    proc.start()
    sent, size = q.get(timeout=600)
    proc.join(60)
    deadline = time.monotonic() + 120
    while len(sub.times) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu = time.process_time() - cpu0
    sub.stop()
    got = len(sub.times)
    lat = sorted((sub.times[i] - sent[i]) * 1000 for i in range(n) if i in sub.times)
    span = max(sub.times.values()) - min(sent.values())
    return {
        "n": got,
        "per_s": got / span if span > 0 else float("nan"),
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "bytes": size,
        "cpu_ms": cpu / max(got, 1) * 1000,
    }


def private_broker(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Mosquitto of our own: no other tests' traffic, and a queue limit that cannot drop
    messages (Debian's default max_queued_messages 1000 drops the excess of a slow subscriber)."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        f"user {getpass.getuser()}\nlog_dest none\n"
    )
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return proc, f"mqtt://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("could not start a private mosquitto; install it (scripts/services.sh) or pass --broker")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", default=None, help="broker URL (default: a private Mosquitto)")
    ap.add_argument("--n", type=int, default=2000, help="snapshots per flood phase")
    ap.add_argument("--rate", type=float, default=100.0, help="snapshots/s of the paced phase")
    ap.add_argument("--encodings", default="f32le-base64,json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        broker, url = (None, args.broker) if args.broker else private_broker(Path(tmp))
        try:
            for encoding in args.encodings.split(","):
                for subject in ("baseline", "ingest"):
                    folder = Path(tmp) / f"{subject}-{encoding}"
                    flood = run(subject, url, args.n, 0, encoding, folder / "flood")
                    n_paced = max(200, args.n // 4)
                    paced = run(subject, url, n_paced, args.rate, encoding, folder / "paced")
                    rows.append((encoding, subject, flood, paced))
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(10)
    print(
        f"\nedge ingest, one client, broker {args.broker or 'private mosquitto'}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end; one machine sends 0.1 snapshot/s"
    )
    print(
        f"{'encoding':13} {'subject':9} {'bytes':>6} {'flood /s':>9} {'flood p50':>9} {'flood p99':>9} "
        f"{'paced p50':>9} {'paced p99':>9} {'cpu ms':>7}"
    )
    base: dict[str, float] = {}
    for encoding, subject, flood, paced in rows:
        print(
            f"{encoding:13} {subject:9} {flood['bytes']:6d} {flood['per_s']:9.0f} {flood['p50_ms']:9.1f} "
            f"{flood['p99_ms']:9.1f} {paced['p50_ms']:9.1f} {paced['p99_ms']:9.1f} {flood['cpu_ms']:7.2f}"
        )
        if subject == "baseline":
            base[encoding] = flood["per_s"]
        else:
            print(
                f"{'':13} ingest: {flood['per_s'] / base[encoding]:.2f}x the baseline's receive rate, "
                f"{flood['per_s'] / 0.1:.0f}x one machine's rate, {flood['n']} of {args.n} stored, "
                f"CPU-bound capacity {1000 / flood['cpu_ms']:.0f}/s per core"
            )
    print(
        f"(flood: publish as fast as possible; paced: {args.rate:g}/s; latency publish -> stored (ingest) "
        "or -> received (baseline) in ms; cpu ms: subscriber process CPU per snapshot)"
    )


if __name__ == "__main__":
    main()
