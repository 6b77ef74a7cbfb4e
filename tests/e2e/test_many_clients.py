"""A few hundred control-plane clients connect and register at the same moment with a real server
process: every one is answered, none gets an error, the server counts them all, and it forgets them
all when they leave. (Speed and memory are measured by bench/bench_coordinator.py, not here.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from kosmos_fl.localfed import LocalFederation as Federation
from kosmos_fl.testing.swarm import Swarm

pytestmark = pytest.mark.e2e

CLIENTS = 300


def test_hundreds_of_clients_register_at_once(federation: Federation) -> None:
    # every client comes from 127.0.0.1: lift the per-address cap (issue 16 row 6) above the swarm
    federation.start_server(
        timeout=240, num_clients=10_000, criteria_timeout=3600, limits={"max_connections_per_ip": 2 * CLIENTS}
    )

    async def scenario() -> tuple[dict, dict, dict]:
        swarm = Swarm(federation.url, CLIENTS, "many", timeout=300)
        result = await swarm.register()
        during = await asyncio.to_thread(federation.status) or {}
        await swarm.close()
        deadline = time.monotonic() + 120
        after: dict = {}
        while time.monotonic() < deadline:
            after = await asyncio.to_thread(federation.status) or {}
            if after and not after.get("clients"):
                break
            await asyncio.sleep(0.5)
        return {"errors": result.errors, "n": len(result.latencies), "states": result.states}, during, after

    result, during, after = asyncio.run(scenario())
    assert result["errors"] == []
    assert result["n"] == CLIENTS and result["states"] == {"eligible": CLIENTS}
    assert len(during["clients"]) == CLIENTS and during["waiting"] == CLIENTS
    assert len({c["name"] for c in during["clients"]}) == CLIENTS
    assert after["clients"] == [] and after["waiting"] == 0
    assert federation.server is not None and federation.server.alive()
