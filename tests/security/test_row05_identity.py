"""Issue 16 rows 5, 7, 8 and 10: one identity, one seat; generic refusals; no forged log lines;
revocation closes open sockets.

Driven in-process through the coordinator's Socket.IO handlers (as test_server_auth.py does);
row 10 runs the coordinator's own registry watcher against a real registry file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import socketio

from kosmos_fl.logs import setup_logging
from kosmos_fl.security.clients import ClientRegistry, load_bundle
from tests.security.test_server_auth import ENV, Recorder


def _cancel(c: Recorder) -> None:
    for t in c._remind_tasks.values():
        t.cancel()


def test_row05_one_credential_fills_one_seat(tmp_path: Path) -> None:
    """Three sockets with one site's credential: the second and third are refused with the reason,
    so one site cannot be three of a session's three clients."""
    reg = ClientRegistry(tmp_path / "clients.json")
    a = load_bundle(reg.add("site-a", tmp_path / "b"))
    auth = {"client": "site-a", "token": a.token}

    async def scenario() -> Recorder:
        c = Recorder(tmp_path, reg)
        await c.on_connect("s1", ENV, auth)
        for sid in ("s2", "s3"):
            with pytest.raises(socketio.exceptions.ConnectionRefusedError) as exc:
                await c.on_connect(sid, ENV, auth)
            message = exc.value.error_args["message"]
            assert "already connected" in message and "one connection per credential" in message
            assert exc.value.error_args["data"] == {"kosmos": "busy"}  # the client retries, not exits
        assert list(c.clients) == ["s1"]
        # the self-reported name does not change who the record is
        await c.on_client_criteria("s1", {"criteria_are_met": True, "client_name": "site-b"})
        assert c.clients["s1"].name == "site-a"
        # once the first socket is gone, the site may connect again
        await c.on_disconnect("s1", "client disconnect")
        await c.on_connect("s4", ENV, auth)
        assert list(c.clients) == ["s4"]
        _cancel(c)
        return c

    asyncio.run(scenario())


def test_row05_racing_handshakes_get_one_seat(tmp_path: Path) -> None:
    reg = ClientRegistry(tmp_path / "clients.json")
    a = load_bundle(reg.add("site-a", tmp_path / "b"))
    auth = {"client": "site-a", "token": a.token}

    async def scenario() -> list[Any]:
        c = Recorder(tmp_path, reg)
        got = await asyncio.gather(
            *(c.on_connect(f"s{i}", ENV, auth) for i in range(5)), return_exceptions=True
        )
        assert len(c.clients) == 1
        _cancel(c)
        return got

    got = asyncio.run(scenario())
    assert sum(isinstance(g, socketio.exceptions.ConnectionRefusedError) for g in got) == 4


def test_row07_peer_cannot_enumerate_client_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reg = ClientRegistry(tmp_path / "clients.json")
    a = load_bundle(reg.add("site-a", tmp_path / "b"))
    load_bundle(reg.add("site-r", tmp_path / "b"))
    reg.revoke("site-r")
    told = set()

    async def scenario() -> None:
        c = Recorder(tmp_path, reg)
        for auth in (
            {"client": "nobody", "token": a.token},  # unknown name
            {"client": "site-a", "token": "x" + a.token},  # known name, wrong token
            {"client": "site-r", "token": "whatever"},  # revoked name
        ):
            with pytest.raises(socketio.exceptions.ConnectionRefusedError) as exc:
                await c.on_connect("x", ENV, auth)
            told.add(exc.value.error_args["message"])
        _cancel(c)

    asyncio.run(scenario())
    assert len(told) == 1, told  # the same answer whatever was wrong
    (message,) = told
    assert message.startswith("invalid credentials") and "site-" not in message and "nobody" not in message
    # the operator still sees why
    assert "unknown client 'nobody'" in caplog.text and "wrong token for client 'site-a'" in caplog.text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_row08_peer_strings_cannot_forge_log_lines(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``reason`` and a ``client_name`` with newlines and terminal codes: each record stays one line."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)

    class Pipe:
        is_terminal = False

    setup_logging(fmt=fmt, console=Pipe())  # type: ignore[arg-type]
    forged = "2026-12-03 12:00:00,000 INFO kosmos_fl.server: client x (site-z): eligible"
    reg = ClientRegistry(tmp_path / "clients.json")
    a = load_bundle(reg.add("site-a", tmp_path / "b"))

    async def scenario() -> None:
        c = Recorder(tmp_path, reg)
        await c.on_connect("s1", ENV, {"client": "site-a", "token": a.token})
        await c.on_client_criteria(
            "s1", {"criteria_are_met": False, "reason": f"disk\n{forged}\r\x1b[2J", "client_name": "a\nb"}
        )
        with pytest.raises(socketio.exceptions.ConnectionRefusedError):
            await c.on_connect("s2", ENV, {"client": f"x\n{forged}", "token": "t"})
        _cancel(c)

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    for line in lines:
        assert not line.startswith("2026-12-03 12:00:00"), line
        assert "\x1b" not in line
        if fmt == "json":
            json.loads(line)
    assert any("disk\\n2026-12-03" in line or "disk\\\\n2026-12-03" in line for line in lines), lines


def test_row10_revocation_disconnects_open_sockets_within_a_second(tmp_path: Path) -> None:
    from kosmos_fl.coordinator.server import Coordinator
    from kosmos_fl.security.policy import ServerSecurity
    from tests.coordinator.pieces import server_config

    reg = ClientRegistry(tmp_path / "clients.json")
    creds = {n: load_bundle(reg.add(n, tmp_path / "b")) for n in ("site-a", "site-b")}

    async def scenario() -> float:
        coord = Coordinator(server_config(tmp_path, num_clients=3, client_auth="required"), tmp_path)
        coord.security = coord.admission.security = ServerSecurity(None, None, None, True, reg)
        gone: dict[str, float] = {}

        async def disconnect(sid: str, **_: Any) -> None:
            gone[sid] = time.monotonic()
            await coord.admission.on_disconnect(sid, "server disconnect")

        async def emit(*_: Any, **__: Any) -> None:
            return None

        coord.sio.disconnect = disconnect  # type: ignore[method-assign]
        coord.sio.emit = emit  # type: ignore[method-assign]
        for n in creds:
            await coord.admission.on_connect(n, ENV, {"client": n, "token": creds[n].token})
        watcher = asyncio.create_task(coord._watch_registry())
        await asyncio.sleep(0.3)
        revoked_at = time.monotonic()
        await asyncio.to_thread(reg.revoke, "site-b")
        while "site-b" not in gone and time.monotonic() - revoked_at < 5:
            await asyncio.sleep(0.02)
        watcher.cancel()
        for t in coord.admission._remind_tasks.values():
            t.cancel()
        assert "site-a" not in gone and "site-a" in coord.clients
        assert "site-b" in gone and "site-b" not in coord.clients
        return gone["site-b"] - revoked_at

    assert asyncio.run(scenario()) < 1.0
