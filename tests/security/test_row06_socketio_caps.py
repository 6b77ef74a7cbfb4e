"""Issue 16 row 6: Socket.IO connections are bounded per address and idle or refused ones closed.

The review opened 1,500 connections from one address (all accepted) and left 300 refused
handshakes open (all still open 60 s later). Here the attacker is a separate process on loopback
speaking raw Engine.IO over WebSocket to the coordinator's real aiohttp app; the server side is
counted by its own established TCP connections.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from aiohttp.test_utils import TestServer

from kosmos_fl.coordinator.server import Coordinator
from kosmos_fl.security.clients import ClientRegistry
from kosmos_fl.security.policy import ServerSecurity
from tests.coordinator.pieces import server_config

ATTACKER = r"""
import asyncio, json, sys
import aiohttp

url, n, send_connect, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])

settled = 0

def done_connecting():
    global settled
    settled += 1
    if settled == n:
        print("SETTLED", flush=True)

async def one(http, out):
    try:
        ws = await http.ws_connect(url)
    except aiohttp.WSServerHandshakeError as exc:
        out["refused"] += 1
        out["status"].add(exc.status)
        done_connecting()
        return
    except aiohttp.ServerDisconnectedError:  # closed before an answer: refused as well
        out["refused"] += 1
        out["status"].add(0)
        done_connecting()
        return
    first = await ws.receive()
    if first.type == aiohttp.WSMsgType.TEXT and first.data.startswith("0"):
        out["accepted"] += 1
    done_connecting()
    if send_connect:
        await ws.send_str('40{"client":"nobody","token":"forged"}')
    loop = asyncio.get_running_loop()
    end = loop.time() + hold
    while loop.time() < end:
        try:
            msg = await asyncio.wait_for(ws.receive(), end - loop.time())
        except asyncio.TimeoutError:
            break
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            out["closed"] += 1
            out["closed_after"].append(round(loop.time() - end + hold, 2))
            return
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("44"):
            out["connect_errors"].append(msg.data[2:])
    out["still_open"] += 1
    out["sockets"].append(ws)

async def main():
    out = {"accepted": 0, "refused": 0, "closed": 0, "still_open": 0, "status": set(),
           "closed_after": [], "connect_errors": [], "sockets": []}
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn) as http:
        await asyncio.gather(*(one(http, out) for _ in range(n)))
        out.pop("sockets")
        out["status"] = sorted(out["status"])
        print(json.dumps(out), flush=True)

asyncio.run(main())
"""


def _coordinator(tmp_path: Path, **limits: Any) -> Coordinator:
    cfg = server_config(tmp_path, num_clients=3, client_auth="required", limits=limits)
    coord = Coordinator(cfg, tmp_path)
    registry = ClientRegistry(tmp_path / "clients.json")
    coord.security = coord.admission.security = ServerSecurity(None, None, None, True, registry)
    return coord


def _established(port: int) -> int:
    me = psutil.Process()
    return sum(
        1 for c in me.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == "ESTABLISHED"
    )


async def _attack(server: TestServer, n: int, send_connect: bool, hold: float) -> tuple[dict[str, Any], int]:
    """Run the attacker process; returns its report and the server's established connections
    once every attacker connection was answered (while it still holds them open)."""
    url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ATTACKER, url, str(n), "1" if send_connect else "0", str(hold),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line.strip() == b"SETTLED", line
    await asyncio.sleep(0.5)  # refused connections had time to close
    held = _established(server.port)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1]), held


def test_row06_connections_per_ip_are_capped(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path, max_connections_per_ip=20)

    async def run() -> tuple[dict[str, Any], int, int]:
        server = TestServer(coord.app, host="127.0.0.1")
        await server.start_server()
        try:
            report, held = await _attack(server, 150, False, 3.0)
            await asyncio.sleep(0.5)
            return report, held, len(coord.sio._peer_of)
        finally:
            await server.close()

    report, held, left = asyncio.run(run())
    assert report["accepted"] == 20, report
    assert report["refused"] == 130 and set(report["status"]) <= {0, 401}, report
    assert held == 20, held  # the refused connections are closed, not kept alive
    assert left == 0  # the attacker hung up: nothing counted any more


def test_row06_refused_handshake_and_idle_sockets_are_closed(tmp_path: Path) -> None:
    coord = _coordinator(tmp_path, handshake_timeout=1.5)

    async def run() -> tuple[dict[str, Any], dict[str, Any], int]:
        server = TestServer(coord.app, host="127.0.0.1")
        await server.start_server()
        try:
            refused, _ = await _attack(server, 20, True, 5.0)
            idle, _ = await _attack(server, 10, False, 6.0)
            t0 = time.monotonic()
            while coord.sio._peer_of and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.1)
            return refused, idle, len(coord.sio._peer_of)
        finally:
            await server.close()

    refused, idle, left = asyncio.run(run())
    # every refused handshake got its reason and then lost its socket, well before the idle timeout
    assert refused["accepted"] == 20 and len(refused["connect_errors"]) == 20, refused
    assert all("invalid credentials" in e for e in refused["connect_errors"]), refused
    assert refused["closed"] == 20 and refused["still_open"] == 0, refused
    assert max(refused["closed_after"]) < 1.5, refused
    # sockets that never send a handshake are closed after handshake_timeout
    assert idle["accepted"] == 10 and idle["closed"] == 10 and idle["still_open"] == 0, idle
    assert all(1.0 <= t <= 4.0 for t in idle["closed_after"]), idle
    assert left == 0
