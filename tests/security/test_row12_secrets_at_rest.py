"""Issue 16 row 12: secrets at rest are 0600, work folders 0700.

``session.json`` (0644) held ``data_path``, which can be a PostgreSQL DSN with a password, and the
MLflow URI; the client's ``node.json`` too.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from kosmos_fl.coordinator.sessions import Session
from tests.coordinator.pieces import Pieces, server_config

DSN = "postgresql://kosmos:pg-secret@db:5432/machines"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_row12_session_folder_and_spec_are_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kosmos_fl.coordinator import sessions

    old = os.umask(0o022)  # the usual default: files 0644, folders 0755 unless made private
    try:
        pieces = Pieces(tmp_path, server_config(tmp_path, num_clients=1, data_path=DSN))
        monkeypatch.setattr(sessions, "create_session_run", lambda *a, **k: "run-1")
        monkeypatch.setattr(sessions.runtime, "submit_run", lambda *a, **k: 7)
        out = pieces.sessions.work_dir / "sessions" / "s1"
        asyncio.run(pieces.sessions._start_session(Session("s1", ["sid-1"], out, "", time.time())))
    finally:
        os.umask(old)
    spec = out / "session.json"
    assert "pg-secret" in spec.read_text()  # the ServerApp needs it, so it must be private
    assert _mode(spec) == 0o600
    assert _mode(out) == 0o700 and _mode(out.parent) == 0o700


def test_row12_node_spec_is_private(tmp_path: Path) -> None:
    """What the client writes for its SuperNode (coordinator/client.py: ``spec.write(session_dir /
    "node.json")``), with the site's DSN in it."""
    from kosmos_fl.config import load_client_config
    from kosmos_fl.coordinator.client import node_spec
    from tests.coordinator.test_client_sites import _start

    cfg = load_client_config(None, data_path=DSN, work_dir=str(tmp_path / "work"))
    spec = node_spec(cfg, tmp_path, _start(0, "BearingUseCase"))
    old = os.umask(0o022)
    try:
        path = spec.write(tmp_path / "work" / "sessions" / "s1" / "node.json")
    finally:
        os.umask(old)
    assert "pg-secret" in path.read_text()
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
