"""``progress.jsonl``: the typed events the ServerApp appends, and their one reader (used by the
coordinator's metrics and dashboard, the demo and the simulation)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger("kosmos_fl.session")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line in one write, so a reader never takes half a line for a whole one."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()


class ProgressEvent(BaseModel):
    """One line of ``progress.jsonl``. Kinds the reader does not know are kept as this base."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: ClassVar[str] = ""

    event: str
    round: int

    def row(self) -> dict[str, Any]:
        """The event as its JSON line has it (what the dashboard and the result documents show)."""
        return {"event": self.event, **self.model_dump(exclude_unset=True)}


class RoundEvent(ProgressEvent):
    """A completed round (round 0: the initial evaluation); extra fields: round statistics."""

    kind: ClassVar[str] = "round"
    event: Literal["round"] = "round"
    metrics: dict[str, float]
    seconds: float = 0.0
    client: dict[str, float] | None = None
    #: training examples of each accepted update, by client id (``"0"``: 1520); the dashboard's
    #: per-client table
    examples: dict[str, int] | None = None
    #: wall clock (``time.time()``) when the round was recorded (bench_session_start.py)
    at: float | None = None


class RoundStartedEvent(ProgressEvent):
    kind: ClassVar[str] = "round_started"
    event: Literal["round_started"] = "round_started"
    nodes: list[int]
    #: wall clock (``time.time()``) when the round's messages were sent
    at: float | None = None


class RejectedEvent(ProgressEvent):
    """The ServerApp's update screening refused a reply."""

    kind: ClassVar[str] = "rejected"
    event: Literal["rejected"] = "rejected"
    client: int | None
    reason: str


class RejectedUpdateEvent(ProgressEvent):
    """A rejected update reported from another process (:func:`report_rejected_update`)."""

    kind: ClassVar[str] = "rejected_update"
    event: Literal["rejected_update"] = "rejected_update"
    client: str
    reason: str


class ResumedEvent(ProgressEvent):
    kind: ClassVar[str] = "resumed"
    event: Literal["resumed"] = "resumed"


class StoppedEvent(ProgressEvent):
    kind: ClassVar[str] = "stopped"
    event: Literal["stopped"] = "stopped"
    reason: str


_KINDS: dict[str, type[ProgressEvent]] = {
    c.kind: c
    for c in (RoundEvent, RoundStartedEvent, RejectedEvent, RejectedUpdateEvent, ResumedEvent, StoppedEvent)
}


class ProgressReader:
    """Reads a session's ``progress.jsonl`` from where it stopped last time: complete lines only
    (the ServerApp may be writing one right now), each once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[ProgressEvent]:
        """The events appended since the last call."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # no complete line yet
        self.offset += end + 1
        events = []
        for line in chunk[: end + 1].splitlines():
            try:
                raw = json.loads(line)
                events.append(_KINDS.get(raw.get("event"), ProgressEvent).model_validate(raw))
            except (ValueError, AttributeError, ValidationError):
                log.warning("%s: unreadable progress line skipped", self.path)
        return events


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The per-round records a session's ServerApp wrote so far (``progress.jsonl``)."""
    return [e.row() for e in ProgressReader(path).read() if isinstance(e, RoundEvent)]
