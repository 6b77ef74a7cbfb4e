"""What the dashboard page shows, read from the session folders: the document behind
``GET /dashboard/api/state``, minus the live parts the coordinator holds (clients, running session).

Every session the server ever ran has a folder ``<work_dir>/sessions/<id>`` with its spec, the
ServerApp's ``progress.jsonl`` and ``result.json``. :class:`SessionArchive` reads them (the progress
file incrementally, results once per change), so a past session can be shown as the running one is,
also after a server restart. The pure functions below turn those files into the page's rows: rounds,
one row per client (samples, last loss, rejected updates), the champion decision.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from kosmos_fl.config import ServerConfig
from kosmos_fl.coordinator.admission import ClientRecord
from kosmos_fl.coordinator.progress import SessionView
from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.fl.session import (
    ProgressEvent,
    ProgressReader,
    RejectedEvent,
    RejectedUpdateEvent,
    RoundEvent,
    SessionFolder,
)
from kosmos_fl.redact import redact
from kosmos_fl.usecases.base import UseCase

log = logging.getLogger("kosmos_fl.dashboard")


class Federation(SessionView, Protocol):
    """What the dashboard reads of the coordinator (``kosmos_fl.coordinator.server.Coordinator``)."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def clients(self) -> dict[str, ClientRecord]: ...

    @property
    def waiting(self) -> list[str]: ...

    @property
    def mlflow_uri(self) -> str: ...

    @property
    def usecase_cls(self) -> type[UseCase]: ...

    @property
    def superlink(self) -> runtime.ManagedProcess | None: ...

    @property
    def app(self) -> web.Application: ...

    @property
    def base_dir(self) -> Path: ...

    @property
    def work_dir(self) -> Path: ...


#: Past sessions listed on the page (newest first).
LIST_SESSIONS = 100
#: Sessions whose parsed progress is kept in memory (the shown one, and a few recently shown).
KEEP_PROGRESS = 8
#: What a session id in ``?session=`` may look like (the runner's are ``20260101-120000-ab12cd``).
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CLIENT_KEY = re.compile(r"(train_loss|RMSE)_client(-?\d+)")
#: ``links(mlflow_run_id, model_uri)``: the MLflow UI links of a session (``Dashboard._links``).
Links = Callable[[str | None, str | None], dict[str, str | None]]
_SCHEMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mssql": "SQL Server", "file": "local folder"}


def store_label(uri: str, base_dir: Path | None = None) -> str:
    """An MLflow tracking URI as an operator reads it, never with credentials.

    ``sqlite:////srv/kosmos/mlruns/mlflow.db`` -> ``local store mlruns (SQLite)`` (relative to the
    server's folder when inside it), ``postgresql+psycopg2://u:pw@db:5432/mlflow`` ->
    ``PostgreSQL db:5432/mlflow``; an http(s) URL stays a URL, without its ``user:password@``.
    """
    clean = redact(uri)
    if clean.startswith("sqlite:///"):
        path = Path(clean.removeprefix("sqlite:///"))
        shown = path.parent if path.name == "mlflow.db" else path
        if base_dir is not None and shown.is_relative_to(base_dir):
            shown = shown.relative_to(base_dir)
        return f"local store {shown} (SQLite)" if path.name == "mlflow.db" else f"SQLite file {shown}"
    parts = urlsplit(clean)
    kind = _SCHEMES.get(parts.scheme.split("+", 1)[0])
    if kind is None:
        return clean
    return f"{kind} {parts.netloc}{parts.path}".strip()


def units(target_unit: str) -> dict[str, str]:
    """The unit of every number the page shows (empty: none; ``loss`` is the model's objective)."""
    return {
        "target": target_unit,
        "RMSE": target_unit,
        "MAE": target_unit,
        "PCC": "",
        "train_loss": "loss",
        "seconds": "s",
        "samples": "samples",
    }


def round_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ``round`` progress event as the page's round table shows it."""
    m = row.get("metrics") or {}
    return {
        "round": int(row["round"]),
        "metrics": {k: v for k, v in m.items() if "_" not in k},
        "train_loss": (row.get("client") or {}).get("train_loss"),
        "round_seconds": row.get("round_seconds"),
        "bytes_sent": row.get("bytes_sent"),
        "bytes_received": row.get("bytes_received"),
        "clients_ok": row.get("clients_ok"),
        "clients_failed": row.get("clients_failed"),
    }


def per_unit_rmse(events: list[ProgressEvent]) -> dict[str, float]:
    """RMSE per held-out unit (bearing, engine) of the last evaluated round."""
    rounds = [e for e in events if isinstance(e, RoundEvent)]
    last = rounds[-1].metrics if rounds else {}
    return {k.removeprefix("RMSE_"): v for k, v in last.items() if k.startswith("RMSE_")}


def rejected_rows(events: list[ProgressEvent]) -> list[dict[str, Any]]:
    """Every rejected update of the session: the update screen's and those other processes report."""
    return [e.row() for e in events if isinstance(e, RejectedEvent | RejectedUpdateEvent)]


def _client_row(cid: int, name: str | None) -> dict[str, Any]:
    return {
        "client_id": cid,
        "name": name or f"client {cid}",
        "samples": None,
        "rounds": 0,
        "last_loss": None,
        "eval_rmse": None,
        "rejected": 0,
        "last_rejection": None,
        "connected": False,
    }


def client_rows(
    names: dict[int, str | None], events: list[ProgressEvent], connected: set[str]
) -> list[dict[str, Any]]:
    """One row per client of a session: training examples and loss of its last accepted update,
    how many rounds it contributed to, its federated-evaluation RMSE, its rejected updates.
    ``names``: client id -> name (``clients.json``); ``connected``: names connected right now."""
    rows = {cid: _client_row(cid, name) for cid, name in names.items()}
    by_name = {row["name"]: cid for cid, row in rows.items()}

    def row(cid: int) -> dict[str, Any]:
        return rows.setdefault(cid, _client_row(cid, None))

    for e in events:
        if isinstance(e, RoundEvent) and e.round > 0:
            for key, value in (e.client or {}).items():
                m = _CLIENT_KEY.fullmatch(key)
                if m is None:
                    continue
                r = row(int(m.group(2)))
                if m.group(1) == "train_loss":
                    r["last_loss"], r["rounds"] = value, r["rounds"] + 1
                else:
                    r["eval_rmse"] = value
            for cid, n in (e.examples or {}).items():
                row(int(cid))["samples"] = n
        elif isinstance(e, RejectedEvent | RejectedUpdateEvent):
            who = e.client
            if isinstance(who, str):  # reported by name or by id
                who = by_name.get(who, int(who) if who.lstrip("-").isdigit() else None)
            r = row(-1 if who is None else int(who))
            r["rejected"] += 1
            r["last_rejection"] = f"round {e.round}: {e.reason}"
    for r in rows.values():
        r["connected"] = r["name"] in connected
    return [rows[cid] for cid in sorted(rows)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.debug("%s unreadable: %s", path, exc)
        return None


class SessionArchive:
    """The session folders under ``<work_dir>/sessions``: their list, results and progress.

    Files are read on the event loop, but cheaply: a result once per change of its mtime, a
    progress file only from where the previous read stopped."""

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir / "sessions"
        self._results: dict[str, tuple[int, dict[str, Any]]] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._progress: collections.OrderedDict[str, tuple[ProgressReader, list[ProgressEvent]]] = (
            collections.OrderedDict()
        )

    def folder(self, session_id: str) -> SessionFolder | None:
        """The folder of ``session_id``, None when there is none (or the id is no session id)."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        path = self.root / session_id
        return SessionFolder(path) if path.is_dir() else None

    def ids(self) -> list[str]:
        """Session ids, newest first (ids start with their start time)."""
        try:
            names = [p.name for p in self.root.iterdir() if p.is_dir() and SESSION_ID.fullmatch(p.name)]
        except FileNotFoundError:
            return []
        return sorted(names, reverse=True)[:LIST_SESSIONS]

    def result(self, session_id: str) -> dict[str, Any] | None:
        """``result.json`` of the session (None: it has not ended, or ended without one)."""
        path = self.root / session_id / "result.json"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._results.get(session_id)
        if cached is None or cached[0] != mtime:
            doc = _read_json(path)
            cached = self._results[session_id] = (mtime, doc if isinstance(doc, dict) else {})
        return cached[1]

    def spec(self, session_id: str) -> dict[str, Any]:
        """The few spec keys the page shows (the spec also holds URIs: never passed on whole)."""
        if session_id not in self._specs:
            doc = _read_json(self.root / session_id / "session.json")
            if not isinstance(doc, dict):
                return {}  # not written yet: asked again next time
            keep = ("num_rounds", "mlflow_run_id", "registered_model_name", "num_clients")
            self._specs[session_id] = {k: doc.get(k) for k in keep}
        return self._specs[session_id]

    def started_at(self, session_id: str) -> float | None:
        try:
            return (self.root / session_id / "session.json").stat().st_mtime
        except OSError:
            return None

    def names(self, session_id: str) -> dict[int, str | None]:
        """Client id -> name of the session's clients (``clients.json``)."""
        doc = _read_json(self.root / session_id / "clients.json")
        out: dict[int, str | None] = {}
        for r in doc if isinstance(doc, list) else []:
            if isinstance(r, dict) and isinstance(r.get("client_id"), int):
                out[r["client_id"]] = str(r["name"]) if r.get("name") else None
        return out

    def events(self, session_id: str) -> list[ProgressEvent]:
        """All progress events of the session so far."""
        entry = self._progress.pop(session_id, None)
        if entry is None:
            entry = (ProgressReader(SessionFolder(self.root / session_id).progress_file), [])
        entry[1].extend(entry[0].read())
        self._progress[session_id] = entry
        while len(self._progress) > KEEP_PROGRESS:
            self._progress.popitem(last=False)
        return list(entry[1])


def client_row(c: ClientRecord) -> dict[str, Any]:
    """One connected client as the page shows it: its name first (the Socket.IO id is internal)."""
    crit = c.criteria or {}
    return {
        "sid": c.sid,
        "name": c.identity or c.name,
        "address": c.address,
        "state": c.state,
        "criteria_met": crit.get("criteria_are_met") if c.criteria is not None else None,
        "reason": c.reason,
        "data_summary": crit.get("data_summary"),
        "connected_at": c.connected_at,
        "last_seen": c.last_seen,
    }


def summary(archive: SessionArchive, session_id: str, running: Any) -> dict[str, Any]:
    """One session as the session list and the session card show it (``running``: the coordinator's
    running session or None)."""
    live = running is not None and running.session_id == session_id
    res = archive.result(session_id) or {}
    spec = archive.spec(session_id)
    # no result and not running: the server stopped mid-session
    status = running.status if live else str(res.get("status") or "interrupted")
    final = res.get("final_metrics") or {}
    return {
        "session_id": session_id,
        "status": status,
        "running": live,
        "started_at": running.started_at if live else archive.started_at(session_id),
        "mlflow_run_id": (running.mlflow_run_id if live else spec.get("mlflow_run_id")) or None,
        "model_uri": res.get("model_uri"),
        "registered_version": res.get("registered_version"),
        "champion": res.get("champion"),
        "champion_reason": res.get("champion_reason"),
        "reason": res.get("reason"),
        "rmse": final.get("RMSE") if isinstance(final, dict) else None,
        "num_rounds": spec.get("num_rounds"),
    }


def live_session_id(coord: Federation, archive: SessionArchive) -> str | None:
    """The session the page follows by default: the running one, else the last one that ended."""
    if coord.session is not None:
        return coord.session.session_id
    if coord.sessions_done:
        return str(coord.sessions_done[-1]["session_id"])
    ids = archive.ids()
    return ids[0] if ids else None


def _shown_session(
    coord: Federation, archive: SessionArchive, shown: str, live: str | None, links: Links, rounds: list[int]
) -> dict[str, Any]:
    running = coord.session
    session = summary(archive, shown, running)
    session["links"] = links(session["mlflow_run_id"], session["model_uri"])
    session["round"] = rounds[-1] if rounds else 0
    if session["num_rounds"] is None:  # no spec yet: the running session's config
        cfg = running.config if running is not None and session["running"] else None
        session["num_rounds"] = (cfg or coord.config).n_federated_train_epoch
    session["live"] = shown == live
    return session


def document(coord: Federation, archive: SessionArchive, shown: str | None, links: Links) -> dict[str, Any]:
    """The session part of the page's document: the session list, the shown session (``shown``;
    None: the live one) with its rounds and one row per client, and the connected clients."""
    running = coord.session
    ids = archive.ids()
    if running is not None and running.session_id not in ids:
        ids.insert(0, running.session_id)  # its folder may not be written yet
    live = live_session_id(coord, archive)
    shown = shown or live
    events = archive.events(shown) if shown is not None else []
    rounds = [round_row(e.row()) for e in events if isinstance(e, RoundEvent)]
    connected = {str(c.identity or c.name) for c in coord.clients.values() if c.identity or c.name}
    return {
        "now": time.time(),
        "clients": [client_row(c) for c in coord.clients.values()],
        "waiting": len(coord.waiting),
        "live_session_id": live,
        "session": None
        if shown is None
        else _shown_session(coord, archive, shown, live, links, [r["round"] for r in rounds]),
        "rounds": rounds,
        "per_unit_rmse": per_unit_rmse(events),
        "per_client": client_rows(archive.names(shown), events, connected) if shown else [],
        "rejected_updates": rejected_rows(events),
        "sessions": [summary(archive, sid, running) for sid in ids],
    }
