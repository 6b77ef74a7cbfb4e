"""The tracking outbox: what a session tells MLflow, written first to its own folder (issue 21).

The ServerApp never waits on MLflow: params, metrics, tags, artifacts, the model to register and
the run's final status are appended to ``outbox.jsonl`` in the session folder (one JSON object a
line, one ``write`` each, fsynced), and a sender (:mod:`kosmos_fl.fl.tracking.sender`) delivers
them in file order. ``outbox-state.json`` holds the byte offset up to which entries are delivered
(written atomically after each one), so delivery continues where it stopped after an outage, a
crash or a server restart.

Exactly once: params, tags, artifacts and statuses are idempotent in MLflow; a metric is keyed by
(run, key, step). The one entry whose delivery is uncertain is the first undelivered one (sent,
perhaps stored, but the ack not written: a timeout or a crash in between); before sending a
metrics entry in that position the sender reads the keys' histories and sends only the
(key, step) pairs MLflow does not hold (:func:`undelivered_metrics`). Everything here is pure or
plain file I/O, so it is tested without MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kosmos_fl.fl.session import SessionFolder, write_json_atomic

log = logging.getLogger("kosmos_fl.tracking")

#: The kinds the sender itself knows; others (``model``) need a handler given to it.
KINDS = ("params", "metrics", "tag", "delete_tag", "artifact", "status")

Entry = dict[str, Any]
MetricKey = tuple[str, str, int]


def metric_keys(entry: Entry) -> list[MetricKey]:
    """The (run, key, step) of every metric in a ``metrics`` entry: what makes a metric unique."""
    if entry.get("kind") != "metrics":
        return []
    return [(str(entry["run"]), key, int(entry["step"])) for key in entry["metrics"]]


def undelivered_metrics(entry: Entry, held: Iterable[tuple[str, int]]) -> dict[str, float]:
    """The metrics of ``entry`` whose (key, step) is not among ``held`` (what MLflow already has)."""
    have = set(held)
    step = int(entry["step"])
    return {k: v for k, v in entry["metrics"].items() if (k, step) not in have}


def parse(data: bytes, start: int) -> list[tuple[int, Entry | None]]:
    """Complete lines of ``data`` (the file from byte ``start`` on) as (end offset, entry); an
    unreadable line gives None; a last line without its newline is still being written: left out."""
    out: list[tuple[int, Entry | None]] = []
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return out
        line = data[pos:nl]
        pos = nl + 1
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        out.append((start + pos, entry if isinstance(entry, dict) else None))


@dataclass
class State:
    """What the sender has delivered: the file offset, what handlers returned, what MLflow refused."""

    offset: int = 0
    results: dict[str, Any] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


class Outbox:
    """The outbox files of one session folder. Appending is safe from several processes at once
    (the ServerApp and the coordinator): each entry is one ``O_APPEND`` write of a whole line."""

    def __init__(self, folder: SessionFolder | Path) -> None:
        self.folder = folder if isinstance(folder, SessionFolder) else SessionFolder(folder)

    @property
    def path(self) -> Path:
        return self.folder.outbox_file

    def append(self, entry: Entry) -> None:
        """Write ``entry`` durably (fsync) before returning: once here, it will reach MLflow."""
        line = (json.dumps(entry, default=str) + "\n").encode("utf-8")  # NaN round-trips in Python
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_state(self) -> State:
        try:
            raw = json.loads(self.folder.outbox_state_file.read_text(encoding="utf-8"))
            return State(int(raw["offset"]), dict(raw.get("results", {})), list(raw.get("refused", [])))
        except (OSError, ValueError, KeyError, TypeError):
            return State()

    def write_state(self, state: State) -> None:
        write_json_atomic(
            self.folder.outbox_state_file,
            {"offset": state.offset, "results": state.results, "refused": state.refused},
        )

    def entries(self, start: int = 0) -> list[tuple[int, Entry | None]]:
        """Complete entries from byte ``start`` on, with the offset after each."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(start)
                data = fh.read()
        except FileNotFoundError:
            return []
        return parse(data, start)

    def pending(self) -> list[tuple[int, Entry | None]]:
        """Entries not delivered yet, in the order they must be delivered."""
        return self.entries(self.read_state().offset)

    def backlog(self) -> int:
        """How many entries wait for MLflow (0 without an outbox)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        offset = self.read_state().offset
        if offset >= size:
            return 0
        with self.path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().count(b"\n")

    def holds_step(self, run: str, metrics: dict[str, float], step: int) -> bool:
        """Whether a ``metrics`` entry for ``step`` of ``run`` holding these keys is in the outbox
        (delivered or not): a resumed session must not write it twice."""
        keys = {(run, k, step) for k, v in metrics.items() if math.isfinite(v)}
        found: set[MetricKey] = set()
        for _, entry in self.entries():
            if entry is not None:
                found.update(metric_keys(entry))
        return keys <= found


def metrics_entry(run: str, metrics: dict[str, float], step: int, timestamp_ms: int) -> Entry:
    """A ``metrics`` entry; NaN and infinities stay out (MLflow stores them, JSON cannot)."""
    clean = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    return {"kind": "metrics", "run": run, "step": step, "ts": timestamp_ms, "metrics": clean}


#: ``kosmos.status`` of a session's end -> the MLflow run status it ends with.
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED"}


def final_entries(run: str, status: str, reason: str | None = None) -> list[Entry]:
    """The entries that end a run: ``kosmos.status`` (``completed`` / ``failed``), the failure
    reason, then the MLflow status (FINISHED / FAILED), delivered after everything before them."""
    out: list[Entry] = [{"kind": "tag", "run": run, "key": "kosmos.status", "value": status}]
    if status == "failed":
        out.append(
            {"kind": "tag", "run": run, "key": "kosmos.failure_reason", "value": (reason or "")[:4900]}
        )
    out.append({"kind": "status", "run": run, "status": RUN_STATUS[status]})
    return out
