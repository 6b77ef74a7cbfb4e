"""A real server process under bad input over real sockets: a flooder, oversized messages, raw
malformed packets, reserved and unknown events. Each sender is told why (``error`` event or a
transport close for frames over the frame cap), the server log says the same, and meanwhile a
well-behaved client registers and receives ``start_train``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import socketio

from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.05)


class Probe:
    """A raw python-socketio client that records every error and whether it was disconnected."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.errors: list[dict[str, Any]] = []
        self.events: dict[str, list[Any]] = {}
        self.gone = asyncio.Event()
        self.sio.on("error", self._error)
        self.sio.on("disconnect", self._gone)
        for name in ("registered", "start_train", "end_train"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events.setdefault(name, []).append(data)

        return record

    async def _error(self, data: Any) -> None:
        self.errors.append(data)

    async def _gone(self, reason: Any = None) -> None:
        self.gone.set()

    async def __aenter__(self) -> Probe:
        await self.sio.connect(self.url, transports=["websocket"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    async def wait_for(self, name: str, timeout: float = 30) -> Any:
        async def poll() -> Any:
            while not self.events.get(name):
                await asyncio.sleep(0.05)
            return self.events[name][0]

        return await asyncio.wait_for(poll(), timeout)

    async def wait_errors(self, n: int, timeout: float = 15) -> list[str]:
        async def poll() -> None:
            while len(self.errors) < n:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), timeout)
        return [e["message"] for e in self.errors]


def test_bad_clients_are_refused_while_a_good_one_trains(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        num_clients=1, n_federated_train_epoch=1, data_path=str(generated_bearings),
        test_bearings=["Bearing1_3"], join_timeout=5, criteria_timeout=600, mlflow_experiment_name="bad",
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        limits={"messages_per_second": 5, "burst": 20, "max_message_bytes": 65536,
                "max_frame_bytes": 262144},
    )  # fmt: skip
    url = federation.url

    async def flood(p: Probe) -> int:
        sent = 0
        while p.sio.connected and sent < 5000:
            await p.sio.emit("client_criteria", {"criteria_are_met": False, "reason": f"spam {sent}"})
            sent += 1
            if sent % 50 == 0:
                await asyncio.sleep(0)  # let the socket read the server's answers
        await asyncio.wait_for(p.gone.wait(), 15)
        # python-socketio runs event handlers as tasks: the disconnect handler can run before the
        # error events that arrived ahead of it were recorded, so give them a moment
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until(lambda: any("flooding" in e["message"] for e in p.errors)), 5)
        return sent

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with Probe(url) as flooder, Probe(url) as odd, Probe(url) as big, Probe(url) as huge:
            flood_task = asyncio.create_task(flood(flooder))
            # while the flood runs: a well-behaved client registers and is started
            async with Probe(url) as good:
                await good.sio.emit("client_criteria", {"criteria_are_met": True, "client_name": "good"})
                out["registered"] = await good.wait_for("registered")
                out["start_train"] = await good.wait_for("start_train", timeout=180)  # MLflow + Flower first
                out["good_errors"] = list(good.errors)
                out["sent"] = await flood_task
                out["flood"] = [e["message"] for e in flooder.errors]
                out["flood_answers"] = flooder.events.get("registered", [])
                # odd but small messages: each gets its own error, the connection stays
                await odd.sio.emit("no_such_event", {"x": 1})
                await odd.sio.emit("disconnect")
                await odd.sio.emit("client_criteria", ({"criteria_are_met": True}, "extra"))
                await odd.sio.eio.send('2["client_criteria", {"criteria_are_met": ')  # cut off
                await odd.sio.eio.send('2{"event": "client_criteria"}')
                await odd.sio.emit("client_criteria", {"criteria_are_met": "yes"})
                out["odd"] = await odd.wait_errors(6)
                out["odd_connected"] = odd.sio.connected and not odd.gone.is_set()
                # over the message cap (error, connection kept) and over the frame cap (cut)
                await big.sio.emit("client_criteria", {"criteria_are_met": True, "blob": "x" * 100_000})
                out["big"] = await big.wait_errors(1)
                out["big_connected"] = big.sio.connected
                await huge.sio.emit("client_criteria", {"criteria_are_met": True, "blob": "x" * 400_000})
                await asyncio.wait_for(huge.gone.wait(), 15)
                # and the server still answers a newcomer
                async with Probe(url) as late:
                    await late.sio.emit("client_criteria", {"criteria_are_met": False, "reason": "late"})
                    out["late"] = await late.wait_for("registered")
        return out

    out = asyncio.run(scenario())
    assert out["registered"]["state"] == "eligible"
    assert out["start_train"]["client_id"] == 0 and out["good_errors"] == []
    assert any("rate limit" in m for m in out["flood"]), out["flood"]
    assert "disconnected for flooding" in out["flood"][-1]
    assert len(out["flood_answers"]) <= 40  # the server handled about a burst of it, not thousands
    odd = out["odd"]
    assert "unknown event 'no_such_event'" in odd[0]
    assert "reserved" in odd[1]
    assert "takes one JSON payload, got 2" in odd[2]
    assert "malformed Socket.IO packet" in odd[3]
    assert "malformed event" in odd[4]
    assert "criteria_are_met" in odd[5]
    assert out["odd_connected"]
    assert "limit is 65536 bytes" in out["big"][0] and out["big_connected"]
    assert out["late"]["state"] == "ineligible"

    log = " ".join((federation.root / "logs" / "server.log").read_text(encoding="utf-8").split())
    assert "disconnected for flooding" in log
    assert "sent a frame over 262144 bytes" in log
    assert "reserved" in log and "limit is 65536 bytes" in log
    assert "Traceback" not in log
    assert log.count("disconnected for flooding") == 1  # the flooder's leftovers are dropped quietly
    # the good client left without starting Flower: its session ends (failed, join timeout)
    done = federation.wait_sessions(1, timeout=600)  # a ceiling for loaded CI machines
    assert done[0]["status"] == "failed"
