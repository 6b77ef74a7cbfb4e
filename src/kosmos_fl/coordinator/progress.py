"""Follows each session's ``progress.jsonl`` (written by the ServerApp) into the federation metrics
and keeps the last sessions' rounds for the dashboard; ticks come from the loop and from scrapes."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kosmos_fl.coordinator.metrics import FederationMetrics
from kosmos_fl.coordinator.sessions import Session
from kosmos_fl.fl.session import ProgressReader, RejectedUpdateEvent, RoundEvent, SessionFolder

log = logging.getLogger("kosmos_fl.dashboard")

#: Sessions whose rounds are kept for the dashboard.
KEEP_SESSIONS = 5


class SessionView(Protocol):
    """The running session and the finished ones (the progress follower reads only these)."""

    @property
    def session(self) -> Session | None: ...

    @property
    def sessions_done(self) -> list[dict[str, Any]]: ...


@dataclass
class _Followed:
    session_id: str
    reader: ProgressReader
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


class ProgressFollower:
    """Reads new lines of each session's progress.jsonl once and accounts them."""

    def __init__(self, coord: SessionView, metrics: FederationMetrics) -> None:
        self.coord = coord
        self.metrics = metrics
        self.sessions: collections.OrderedDict[str, _Followed] = collections.OrderedDict()
        self.done_seen = 0
        self._lock = threading.Lock()  # ticks come from the loop and from scrape threads

    def _follow(self, session_id: str, out_dir: Path) -> _Followed:
        f = self.sessions.get(session_id)
        if f is None:
            f = self.sessions[session_id] = _Followed(
                session_id, ProgressReader(SessionFolder(out_dir).progress_file)
            )
            self.metrics.session_started()
            while len(self.sessions) > KEEP_SESSIONS:
                self.sessions.popitem(last=False)
        return f

    def _read(self, f: _Followed) -> None:
        for event in f.reader.read():
            if isinstance(event, RoundEvent):
                f.rows.append(event.row())
                self.metrics.observe_round(event.row())
            elif isinstance(event, RejectedUpdateEvent):
                f.rejected.append(event.row())
                self.metrics.observe_rejected(event.row())

    def tick(self) -> None:
        with self._lock:
            self._tick()

    def _tick(self) -> None:
        s = self.coord.session
        if s is not None:
            self._read(self._follow(s.session_id, s.out_dir))
        done = self.coord.sessions_done
        for d in done[self.done_seen :]:
            f = self._follow(d["session_id"], Path(d["out_dir"]))
            self._read(f)  # the last rows may have landed after the previous tick
            self.metrics.session_ended(d, _result(Path(d["out_dir"])))
        self.done_seen = len(done)

    def rows(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            f = self.sessions.get(session_id)
            return list(f.rows) if f else []

    def rejected(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            f = self.sessions.get(session_id)
            return list(f.rejected) if f else []


def _result(out_dir: Path) -> dict[str, Any] | None:
    """The ServerApp's result document of a finished session (None: none, or unreadable)."""
    try:
        result = SessionFolder(out_dir).read_result()
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def past_results(work_dir: Path) -> Iterator[dict[str, Any]]:
    """The result documents of the sessions under ``work_dir/sessions``, newest first (folder
    names start with the start time), each with ``finished_at``: when its result was written."""
    try:
        folders = sorted((p for p in (work_dir / "sessions").iterdir() if p.is_dir()), reverse=True)
    except OSError:  # no sessions yet, or unreadable: nothing to restore (the server still starts)
        return
    for folder in folders:
        result = _result(folder)
        if result is not None:
            with contextlib.suppress(OSError):
                result.setdefault("finished_at", SessionFolder(folder).result_file.stat().st_mtime)
            yield result
