"""Issue 16 row 4: the Fleet proxy bounds what one unauthenticated peer can make it hold.

One 300 MB POST raised the server's peak memory from 436 MB to 1.31 GB: bodies up to 1 GiB were
buffered before any check, with no limit on concurrent requests. Here the proxy runs in its own
process (its RSS is what is measured) and this test is the attacker, on loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

MB = 1 << 20
PROXY = r"""
import asyncio, sys
from kosmos_fl.security.fleet_proxy import FleetLimits, start_fleet_proxy

async def main():
    limits = FleetLimits(max_push=8 << 20, max_request=16 << 10, max_inflight=512, max_inflight_per_ip=32)
    await start_fleet_proxy("127.0.0.1", int(sys.argv[1]), "http://127.0.0.1:9", None, None, limits=limits)
    print("READY", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy() -> tuple[int, psutil.Process]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"READY", proc.stderr.read().decode()[-2000:] if proc.stderr else line
    try:
        yield port, psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)


def _send_huge(port: int, path: str, total: int, chunked: bool) -> tuple[int, bytes]:
    """POST ``total`` bytes to ``path`` as fast as the server reads; returns (bytes the server
    took before it stopped reading, the start of its answer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/protobuf\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    sock.sendall(head.encode())
    block = b"\0" * MB
    sent = 0
    with contextlib.suppress(OSError):
        sock.settimeout(15)
        while sent < total:
            data = block[: total - sent]
            sock.sendall(data if not chunked else f"{len(data):x}\r\n".encode() + data + b"\r\n")
            sent += len(data)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    answer = b""
    with contextlib.suppress(OSError):
        sock.settimeout(10)
        answer = sock.recv(200)
    sock.close()
    return sent, answer


def _peak_rss_while(proc: psutil.Process, action) -> tuple[int, object]:
    peak = proc.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        result = action()
    finally:
        done.set()
        t.join()
    return peak, result


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/fleet/push-object", "/v1/fleet/send-node-heartbeat"])
def test_row04_huge_body_refused_without_buffering(
    proxy: tuple[int, psutil.Process], path: str, chunked: bool
) -> None:
    port, proc = proxy
    _send_huge(port, "/v1/fleet/pull-messages", 1024, False)  # warm up the handler
    base = proc.memory_info().rss
    peak, (sent, answer) = _peak_rss_while(proc, lambda: _send_huge(port, path, 300 * MB, chunked))
    assert (peak - base) < 20 * MB, f"proxy RSS grew {(peak - base) / MB:.1f} MB"
    assert sent < 100 * MB, f"the proxy read {sent / MB:.0f} MB before refusing"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer


def test_row04_in_flight_requests_are_capped_per_ip(proxy: tuple[int, psutil.Process]) -> None:
    port, _ = proxy
    held = []
    try:
        for _ in range(32):  # requests that never finish sending their body
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(
                b"POST /v1/fleet/send-node-heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab"
            )
            held.append(s)
        time.sleep(0.5)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /v1/fleet/send-node-heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        answer = s.recv(200)
        s.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After: 1" in answer
    finally:
        for s in held:
            s.close()
    # once they are gone, requests are served again (here: forwarded to a dead upstream, 502)
    time.sleep(0.5)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/fleet/send-node-heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
    assert s.recv(200).startswith(b"HTTP/1.1 502")
    s.close()


def test_row04_limits_are_config_keys() -> None:
    from kosmos_fl.config import load_server_config

    cfg = load_server_config(None, limits={"fleet_max_push_bytes": 8 * MB, "fleet_max_inflight_per_ip": 4})
    assert cfg.limits.fleet_max_push_bytes == 8 * MB and cfg.limits.fleet_max_request_bytes == 16 * 1024
