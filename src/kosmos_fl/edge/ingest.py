"""The client's MQTT subscriber: validate every message, store it durably, label on failure.

Delivery: MQTT v5 with ``clean_start=False`` and a session expiry, so the broker keeps this
client's subscriptions and queues QoS 1 messages while it is offline; messages are acknowledged
only after the batch holding them is committed to SQLite (``manual_ack``). A client killed or cut
off at any moment therefore gets every unacknowledged message again, and the store's unique key
(machine, bearing, seq) drops the repeats.

Threads: paho's network thread only queues raw messages; one writer thread parses, stores and
acknowledges them in batches; one processor thread labels bearings after failure events and
rewrites the processed cache. A bad payload is counted, logged (not its content) and
acknowledged so it is not redelivered forever; it never stops the ingest.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.edge.payload import Maintenance, Snapshot, max_payload_bytes, parse_message
from kosmos_fl.edge.store import EdgeStore
from kosmos_fl.errors import DataFormatError, KosmosError

log = logging.getLogger("kosmos_fl.edge.ingest")

_STOP = object()
_BAD_LOG_FIRST = 10
_BAD_LOG_EVERY = 100


@dataclass
class _Raw:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float


def make_client(cfg: EdgeConfig, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT v5 client with this config's credentials and TLS (nothing is logged)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
    _, _, tls = cfg.endpoint
    if tls:
        t = cfg.tls
        try:
            client.tls_set(
                ca_certs=t.ca_file if t else None,
                certfile=t.cert_file if t else None,
                keyfile=t.key_file if t else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as exc:
            raise KosmosError(
                f"edge.tls: cannot load the TLS files ({exc}); check the paths and formats"
            ) from None
        if t is not None and t.insecure:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


class EdgeIngest:
    """Subscribe to this site's machines and keep the local store and processed cache current."""

    def __init__(
        self,
        cfg: EdgeConfig,
        store_dir: Path,
        client_id: str,
        on_change: Callable[[], None] | None = None,
        on_stored: Callable[[list[tuple[Snapshot | Maintenance, float]], float], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.store = EdgeStore(store_dir)
        self.on_change = on_change
        self.on_stored = on_stored
        # bounded: when the writer falls behind, paho's network thread waits here and stops
        # reading from the broker (back-pressure) instead of memory growing without limit
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(64, 4 * self.receive_maximum))
        #: Largest payload accepted (the broker is told; larger ones are refused unparsed).
        self.max_payload = max_payload_bytes(cfg.expect_samples)
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.stats = {"received": 0, "stored": 0, "duplicates": 0, "bad": 0, "connects": 0}
        self.last_error: str | None = None
        self._writer = threading.Thread(target=self._write_loop, name="edge-writer", daemon=True)
        self._processor = threading.Thread(target=self._process_loop, name="edge-processor", daemon=True)
        self.client = make_client(cfg, client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self._connect_failures = 0

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged QoS 1 messages the broker may send at once."""
        return max(20, min(65535, 2 * self.cfg.batch_size))

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, wait: float | None = 15.0) -> bool:
        """Connect (retrying in the background) and start the threads. With ``wait``, block up to
        that many seconds for the subscription; returns whether it is in place."""
        self._writer.start()
        self._processor.start()
        self._dirty.set()  # label anything left pending by a previous run
        host, port, _ = self.cfg.endpoint
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry
        props.ReceiveMaximum = self.receive_maximum
        # the broker must not send (and so we never buffer) packets larger than a valid snapshot
        props.MaximumPacketSize = self.max_payload + 64 * 1024
        log.info(
            "edge: collecting from %s, topics %s, as %s", self.cfg.redacted(), self.cfg.topics, self.client_id
        )
        self.client.connect_async(
            host, port, keepalive=self.cfg.keepalive, clean_start=False, properties=props
        )
        self.client.loop_start()
        if wait is None:
            return False
        return self.subscribed.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, store and acknowledge what was received, stop the threads."""
        self._stopping.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        with contextlib.suppress(Exception):
            self.client.loop_stop()
        self._queue.put(_STOP)
        if self._writer.is_alive():
            self._writer.join(timeout)
        self._dirty.set()
        if self._processor.is_alive():
            self._processor.join(timeout)
        self.store.close()

    # -- paho callbacks (network thread) -----------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("edge: %s (check edge.username / edge.password / edge.tls)", self.last_error)
            return
        self.stats["connects"] += 1
        self.connected.set()
        log.info("edge: connected (session present: %s)", flags.session_present)
        client.subscribe([(topic, 1) for topic in self.cfg.topics])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._connect_failures += 1
        self.last_error = (
            f"cannot connect to {self.cfg.redacted()} (broker down, wrong host/port, or TLS handshake "
            "failed: check edge.broker and edge.tls.ca_file)"
        )
        if self._connect_failures == 1 or self._connect_failures % 20 == 0:
            log.warning("edge: %s; retrying (attempt %d)", self.last_error, self._connect_failures)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            self.last_error = f"subscription refused: {', '.join(failed)}"
            log.error("edge: %s (check the broker's ACL for %s)", self.last_error, self.cfg.topics)
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("edge: disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Raw(msg.mid, msg.qos, msg.topic, msg.payload, time.time()))

    # -- writer ----------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < self.cfg.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is _STOP for b in batch)
            raws = [b for b in batch if b is not _STOP]
            if raws:
                try:
                    self._write(raws)
                except Exception as exc:  # the store failed (disk full, ...): do not ack, retry later
                    self.last_error = f"cannot store collected data: {exc}"
                    log.error(
                        "edge: %s; the broker keeps the messages until they are stored", self.last_error
                    )
                    # retried here, not re-queued: the queue is bounded and this is its only reader
                    while not stop and not self._stopping.is_set():
                        time.sleep(1.0)
                        try:
                            self._write(raws)
                            break
                        except Exception as again:
                            self.last_error = f"cannot store collected data: {again}"
            if stop:
                return

    def _write(self, raws: list[_Raw]) -> None:
        good: list[Snapshot | Maintenance] = []
        received: list[float] = []
        bad = 0
        for raw in raws:
            try:
                msg = parse_message(raw.payload, self.cfg.expect_samples, self.max_payload)
                if isinstance(msg, Snapshot):
                    self._check_shape(msg)
            except DataFormatError as exc:
                bad += 1
                self._log_bad(raw.topic, str(exc))
                continue
            good.append(msg)
            received.append(raw.received)
        stored, dup, new_events = self.store.add(good, bad=bad, received=len(raws))
        now = time.time()
        for raw in raws:  # only now are they safe on disk
            if raw.qos > 0:
                with contextlib.suppress(Exception):
                    self.client.ack(raw.mid, raw.qos)
        self.stats["received"] += len(raws)
        self.stats["stored"] += stored
        self.stats["duplicates"] += dup
        if self.on_stored is not None:
            self.on_stored(list(zip(good, received, strict=True)), now)
        labelled = set(self.store.processed_folders())
        if new_events or any(
            isinstance(m, Snapshot) and (m.machine_id, m.bearing_id) in labelled for m in good
        ):
            self._dirty.set()

    def _check_shape(self, snap: Snapshot) -> None:
        n = snap.signal.shape[0]
        if n != self.cfg.expect_samples or abs(snap.sampling_rate - self.cfg.expect_sampling_rate) > 1e-6:
            raise DataFormatError(
                f"snapshot {snap.machine_id}/{snap.bearing_id}#{snap.seq} has {n} samples at "
                f"{snap.sampling_rate:g} Hz; this client expects {self.cfg.expect_samples} at "
                f"{self.cfg.expect_sampling_rate:g} Hz (edge.expect_samples / expect_sampling_rate)"
            )

    def _log_bad(self, topic: str, reason: str) -> None:
        self.stats["bad"] += 1
        n = self.stats["bad"]
        if n <= _BAD_LOG_FIRST or n % _BAD_LOG_EVERY == 0:
            log.warning("edge: bad payload #%d on %s dropped: %s", n, topic, reason)

    # -- processor -------------------------------------------------------------------------------
    def _process_loop(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            self._dirty.clear()
            if self._stopping.is_set():
                return
            try:
                written = self.store.refresh_processed()
            except Exception as exc:  # never take the client down; report and retry on next change
                self.last_error = f"cannot update the processed cache: {exc}"
                log.exception("edge: %s", self.last_error)
                continue
            if written and self.on_change is not None:
                try:
                    self.on_change()
                except Exception:
                    log.exception("edge: change callback failed")
