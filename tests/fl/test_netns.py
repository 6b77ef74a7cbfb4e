"""The SuperLink's private network namespace and its bridge (issue 16 row 9), with a stand-in
HTTP server in place of the SuperLink."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kosmos_fl.fl.flower_runtime import netns, runtime


def get(sock: Path, path: str = "/") -> int:
    conn = runtime._UnixHTTPConnection(sock, 5.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_bridge_relays_into_its_namespace_only_and_removes_its_socket_on_sigterm(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir(mode=0o700)
    sock = folder / "control.sock"
    port = runtime.free_port()
    bridge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kosmos_fl.fl.flower_runtime.netns",
            "--socket",
            str(sock),
            "--port",
            str(port),
        ]
    )
    server = None
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and bridge.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sock.exists(), "the bridge did not start"
        assert netns.namespace_id(bridge.pid) != netns.namespace_id("self")
        assert sock.stat().st_mode & 0o777 == 0o600

        enter = netns.Joiner(bridge.pid)
        try:
            server = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                preexec_fn=enter, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            enter.close()
        assert netns.namespace_id(server.pid) == netns.namespace_id(bridge.pid)
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                status = get(sock)
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        assert status == 200  # through the socket: the server in the namespace answers
        # ...while the same port on this host's loopback is not the namespace's
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0

        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(10) == 0
        assert not sock.exists() and not folder.exists()  # its socket and private folder are gone
    finally:
        for proc in (server, bridge):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
