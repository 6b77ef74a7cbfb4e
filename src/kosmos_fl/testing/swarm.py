"""A swarm of control-plane clients for load tests and ``bench/bench_coordinator.py``.

Each member is a real python-socketio ``AsyncClient`` over a WebSocket, as ``kosmos-fl client`` uses,
that connects, sends ``client_criteria`` and waits for ``registered``. Many members share one event
loop; for more than a few hundred, start several worker processes with
``python -m kosmos_fl.testing.swarm URL COUNT PREFIX START_AT [TIMEOUT]``: the worker prints one JSON line
with its results once every member registered (or failed), keeps the connections open until a line
arrives on stdin, then disconnects and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import socketio

from kosmos_fl.coordinator.guard import raise_fd_limit


@dataclass
class SwarmResult:
    """What a swarm saw: per-member latency (connect + criteria until ``registered``), errors."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    first_start: float = 0.0
    last_registered: float = 0.0


class Swarm:
    """``count`` clients registering at once; :meth:`close` disconnects them."""

    def __init__(self, url: str, count: int, prefix: str = "swarm", timeout: float = 120.0) -> None:
        self.url = url
        self.count = count
        self.prefix = prefix
        self.timeout = timeout
        self.clients: list[socketio.AsyncClient] = []
        self.result = SwarmResult()

    async def _member(self, i: int) -> None:
        sio = socketio.AsyncClient(reconnection=False)
        self.clients.append(sio)
        registered = asyncio.Event()
        answer: dict[str, Any] = {}

        async def on_registered(data: Any) -> None:
            answer.update(data if isinstance(data, dict) else {"state": repr(data)})
            registered.set()

        async def on_error(data: Any) -> None:
            self.result.errors.append(f"{self.prefix}-{i}: server error {data}")

        sio.on("registered", on_registered)
        sio.on("error", on_error)
        start = time.time()
        try:
            await asyncio.wait_for(
                sio.connect(self.url, transports=["websocket"], wait_timeout=self.timeout),
                self.timeout,
            )
            await sio.emit("client_criteria", {"criteria_are_met": True, "client_name": f"{self.prefix}-{i}"})
            await asyncio.wait_for(registered.wait(), self.timeout)
        except Exception as exc:
            self.result.errors.append(f"{self.prefix}-{i}: {type(exc).__name__}: {exc}")
            return
        done = time.time()
        self.result.latencies.append(done - start)
        self.result.last_registered = max(self.result.last_registered, done)
        state = str(answer.get("state"))
        self.result.states[state] = self.result.states.get(state, 0) + 1

    async def register(self) -> SwarmResult:
        """Start every member at once; return when all registered or failed."""
        raise_fd_limit()
        self.result.first_start = time.time()
        await asyncio.gather(*(self._member(i) for i in range(self.count)))
        return self.result

    async def close(self) -> None:
        await asyncio.gather(*(c.disconnect() for c in self.clients if c.connected), return_exceptions=True)


async def _worker(url: str, count: int, prefix: str, start_at: float, timeout: float) -> None:
    swarm = Swarm(url, count, prefix, timeout)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    result = await swarm.register()
    print(json.dumps(asdict(result)), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await swarm.close()
    print(json.dumps({"closed": True}), flush=True)


if __name__ == "__main__":  # pragma: no cover - run by the benchmark as worker processes
    url_arg, count_arg, prefix_arg, start_arg = sys.argv[1:5]
    timeout_arg = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
    asyncio.run(_worker(url_arg, int(count_arg), prefix_arg, float(start_arg), timeout_arg))
