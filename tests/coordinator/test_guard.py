"""The control plane's admission control, driven in-process through python-socketio's own packet
entry point (``_handle_eio_message``, where engine.io hands over every message a client sends): each
kind of bad input gets an ``error`` event and a log line, and never disturbs a well-behaved client."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kosmos_fl.config import LimitsConfig, load_server_config
from kosmos_fl.coordinator.guard import raise_fd_limit
from kosmos_fl.errors import ConfigError
from tests.coordinator.pieces import Pieces, server_config


class Wire(Pieces):
    """Admission and session runner with recorded emits; clients are fed raw Socket.IO packets."""

    def __init__(self, tmp_path: Path, **cfg: Any) -> None:
        super().__init__(tmp_path, server_config(tmp_path, **cfg))

    async def join(self, eio_sid: str) -> str:
        """Open a connection the way engine.io does and send the Socket.IO CONNECT packet."""
        await self.sio._handle_eio_connect(eio_sid, {"REMOTE_ADDR": f"10.0.0.{len(self.clients) + 2}"})
        await self.sio._handle_eio_message(eio_sid, "0")
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, "/")
        assert sid in self.clients
        return sid

    async def send(self, eio_sid: str, raw: str | bytes) -> None:
        await self.sio._handle_eio_message(eio_sid, raw)
        for _ in range(5):  # handlers run as background tasks
            await asyncio.sleep(0)

    async def event(self, eio_sid: str, *args: Any) -> None:
        await self.send(eio_sid, "2" + json.dumps(list(args)))

    def errors(self, sid: str) -> list[str]:
        return [d["message"] for e, to, d in self.emitted if e == "error" and to == sid]

    def registered(self, sid: str) -> list[Any]:
        return [d for e, to, d in self.emitted if e == "registered" and to == sid]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ('2["no_such_event", {}]', "unknown event 'no_such_event'"),
        ('2["disconnect"]', "reserved"),
        ('2["connect", {}]', "reserved"),
        ('2["client_criteria", {"criteria_are_met": true}, 2, 3]', "takes one JSON payload, got 3"),
        ('2{"criteria_are_met": true}', "malformed event"),
        ("2[]", "malformed event"),
        ("2[42, {}]", "malformed event"),
        ("2[[[", "malformed Socket.IO packet"),
        ("9xyz", "malformed Socket.IO packet"),
        ('2["client_criteria", "yes"]', "JSON object"),
        ('2["client_criteria", {"criteria_are_met": "yes"}]', "criteria_are_met"),
    ],
)
def test_bad_packets_get_an_error_and_the_client_stays(
    tmp_path: Path, raw: str, needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[Wire, str]:
        c = Wire(tmp_path, num_clients=2)
        sid = await c.join("e1")
        await c.send("e1", raw)
        await c.event("e1", "client_criteria", {"criteria_are_met": True})  # still served
        return c, sid

    with caplog.at_level(logging.WARNING, logger="kosmos_fl.server"):
        c, sid = run(scenario())
    errors = c.errors(sid)
    assert len(errors) == 1 and needle in errors[0], errors
    assert "\n" not in errors[0]
    assert any(needle in r.getMessage() and sid in r.getMessage() for r in caplog.records)
    assert c.waiting == [sid]  # the bad packet did not disturb its registration
    assert c.registered(sid)[-1]["state"] == "eligible"


def test_oversized_message_is_refused_and_the_connection_kept(tmp_path: Path) -> None:
    async def scenario() -> tuple[Wire, str]:
        c = Wire(tmp_path, num_clients=2, limits={"max_message_bytes": 4096})
        sid = await c.join("e1")
        await c.event("e1", "client_criteria", {"criteria_are_met": True, "blob": "x" * 5000})
        await c.event("e1", "client_criteria", {"criteria_are_met": True})
        return c, sid

    c, sid = run(scenario())
    assert c.errors(sid) and "limit is 4096 bytes" in c.errors(sid)[0]
    assert c.waiting == [sid]


def test_flood_is_throttled_then_cut_while_others_register(tmp_path: Path) -> None:
    async def scenario() -> tuple[Wire, str, str]:
        c = Wire(tmp_path, num_clients=2, limits={"messages_per_second": 1, "burst": 5})
        flooder = await c.join("flood")
        good = await c.join("good")
        for i in range(40):
            await c.event("flood", "client_criteria", {"criteria_are_met": True, "n": i})
        await asyncio.sleep(0.5)  # the hang-up leaves the error event a moment to go out
        await c.event("good", "client_criteria", {"criteria_are_met": True})
        return c, flooder, good

    c, flooder, good = run(scenario())
    errors = c.errors(flooder)
    assert "rate limit" in errors[0]
    assert "disconnected for flooding" in errors[-1]
    assert flooder not in c.clients and flooder not in c.waiting  # cut and out of the pool
    assert c.waiting == [good] and c.errors(good) == []


def test_a_throttled_client_recovers_after_slowing_down(tmp_path: Path) -> None:
    async def scenario() -> tuple[Wire, str]:
        c = Wire(tmp_path, num_clients=3, limits={"messages_per_second": 50, "burst": 3})
        sid = await c.join("e1")
        for _ in range(4):  # the CONNECT took a token: 2 pass, 2 are dropped
            await c.event("e1", "ping_me")
        await asyncio.sleep(0.1)  # refills 5 tokens (capped at 3)
        await c.event("e1", "client_criteria", {"criteria_are_met": True})
        return c, sid

    c, sid = run(scenario())
    assert sum("rate limit" in m for m in c.errors(sid)) == 1  # one warning per streak, not per drop
    assert sid in c.clients and c.waiting == [sid]


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10,
)
event_names = st.sampled_from(["client_criteria", "connect", "disconnect", "message", "x"]) | st.text(
    max_size=60
)
packets = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(lambda n, a: "2" + json.dumps([n, *a]), event_names, st.lists(json_values, max_size=3)),
    st.builds(lambda v: "2" + json.dumps(v), json_values),
    st.builds(lambda p, v: p + json.dumps(v), st.sampled_from(list("0123456")), json_values),
)


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One coordinator and event loop for all examples (building a coordinator takes a while);
    each example is a new connection, next to a well-behaved client registered once."""
    loop = asyncio.new_event_loop()
    c = Wire(tmp_path_factory.mktemp("fuzz"), num_clients=10_000)

    async def setup() -> str:
        good = await c.join("good")
        await c.event("good", "client_criteria", {"criteria_are_met": True})
        return good

    good = loop.run_until_complete(setup())
    yield loop, c, good
    loop.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.lists(packets, min_size=1, max_size=8))
def test_any_packet_sequence_never_breaks_the_server(fuzz_target: Any, burst: list[str | bytes]) -> None:
    """Whatever one client sends, the server does not raise, every refusal is one line, and the
    registered client stays registered."""
    loop, c, good = fuzz_target
    eio_sid = f"fuzz{len(c.emitted)}-{id(burst)}"
    before = len(c.emitted)

    async def scenario() -> None:
        await c.join(eio_sid)
        for raw in burst:
            await c.send(eio_sid, raw)
        await c.sio._handle_eio_disconnect(eio_sid, "test")

    loop.run_until_complete(scenario())
    assert good in c.clients and good in c.waiting
    for event, _, data in c.emitted[before:]:
        if event == "error":
            assert isinstance(data["message"], str) and data["message"] and "\n" not in data["message"]


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"limits\.burst"):
        load_server_config(None, limits={"burst": 0})
    with pytest.raises(ConfigError, match=r"max_frame_bytes must be >= limits\.max_message_bytes"):
        load_server_config(None, limits={"max_message_bytes": 4096, "max_frame_bytes": 2048})
    with pytest.raises(ConfigError, match="did you mean"):
        load_server_config(None, limits={"burts": 3})
    assert load_server_config(None).limits == LimitsConfig()


def test_fd_limit_is_raised_up_to_the_hard_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        assert raise_fd_limit(4096) == min(4096, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(4096, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
