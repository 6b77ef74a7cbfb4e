"""Issue 16 row 9: the SuperLink's Control API (submit runs, register node keys: code execution on
the server, without login in Flower) is not reachable by other local users.

A real server runs with its defaults; an attacker is a real process on this host, as another user
(uid 65534, dropped to in the child: CI runs as root). It tries every TCP port the server's
processes listen on, including the SuperLink's own ``--port``, on the host's loopback, with the
Control API's list-runs and start-run calls; then the bridge's unix socket; then joining the
SuperLink's network namespace. Positive controls: the server's own Control API client lists runs
through the socket, and the same calls do reach the Control API when made inside the namespace.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kosmos_fl.fl.flower_runtime import control, netns
from kosmos_fl.localfed import LocalFederation

NOBODY = 65534
CONTROL = ["/v1/control/list-runs", "/v1/control/start-run", "/v1/control/register-node"]
#: The Runtime API call with which a SuperExec takes a ServerApp's task (and its token).
ACQUIRE_TASK = "/v1/runtime/acquire-task"
#: Debian's interpreter: the venv's may live under a home folder another user cannot read.
PYTHON = "/usr/bin/python3"

ATTACK_PORTS = r"""
import json, socket, sys, urllib.request, urllib.error
out = {}
for port in json.loads(sys.argv[1]):
    for path in json.loads(sys.argv[2]):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST",
                                     headers={"Content-Type": "application/protobuf"})
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                out[f"{port}{path}"] = res.status
        except urllib.error.HTTPError as e:
            out[f"{port}{path}"] = e.code
        except OSError as e:
            out[f"{port}{path}"] = "unreachable: " + type(e).__name__
print(json.dumps(out))
"""

ATTACK_SOCKET = r"""
import ctypes, json, os, socket, sys
path, pid = sys.argv[1], int(sys.argv[2])
out = {}
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b"POST /v1/control/list-runs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    data = s.recv(64)
    out["socket"] = "answered: " + data.decode(errors="replace") if data else "closed without an answer"
except OSError as e:
    out["socket"] = "refused: " + type(e).__name__
try:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    out["setns"] = "joined" if libc.setns(fd, 0x40000000) == 0 else "refused: errno %d" % ctypes.get_errno()
except OSError as e:
    out["setns"] = "refused: " + type(e).__name__
print(json.dumps(out))
"""


def as_nobody() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def attack(script: str, *args: str, inside: int | None = None) -> dict[str, object]:
    """Run ``script`` as uid 65534 (``inside``: in the namespace of that bridge pid, as root)."""
    joiner = netns.Joiner(inside) if inside is not None else None
    try:
        res = subprocess.run(
            [PYTHON, "-I", "-c", script, *args], preexec_fn=joiner or as_nobody,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        if joiner is not None:
            joiner.close()
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def listening_ports(root: psutil.Process) -> set[int]:
    """TCP ports in LISTEN state, on this host's network, of ``root`` and its descendants."""
    ports = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


@pytest.fixture
def server(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    if os.geteuid() != 0:
        pytest.fail("the attacker drops to another user id (65534): run as root (CI does)")
    fed = LocalFederation(tmp_path / "fed", clean_env)
    try:
        fed.start_server()
        yield fed
    finally:
        assert fed.stop() == []


def test_no_port_on_the_host_answers_the_control_api(server: LocalFederation) -> None:
    flwr_home = server.root / "server" / "flower"
    log = (server.root / "server" / "logs" / "superlink.log").read_text()
    internal = int(re.search(r"flower-superlink .*--port (\d+)", log).group(1))  # type: ignore[union-attr]
    assert server.server is not None
    ports = listening_ports(psutil.Process(server.server.proc.pid)) | {internal}
    assert server.flwr_port in ports and server.sio_port in ports  # the scan sees the server's ports

    remote = attack(ATTACK_PORTS, json.dumps(sorted(ports)), json.dumps([*CONTROL, ACQUIRE_TASK]))
    print("the attacker on the host's loopback:", remote)
    reached = {k: v for k, v in remote.items() if v not in (404,) and not str(v).startswith("unreachable")}
    assert reached == {}, f"the Control API answered another local user: {reached}"
    # the SuperLink's own port is not open on the host at all
    assert all(str(remote[f"{internal}{p}"]).startswith("unreachable") for p in ("/v1/control/list-runs",))

    # positive controls: the server's own client lists runs (through the bridge's socket)...
    ep = control.endpoint(flwr_home)
    assert ep.unix_socket is not None
    assert _list_runs(flwr_home) == 0  # no run was submitted; an error would raise
    # ...and inside the SuperLink's namespace the same call reaches the Control API
    bridge = next(p for p in psutil.Process(server.server.proc.pid).children(recursive=True)
                  if "kosmos_fl.fl.flower_runtime.netns" in " ".join(p.cmdline()))  # fmt: skip
    inside = attack(
        ATTACK_PORTS, json.dumps([internal]), json.dumps([*CONTROL, ACQUIRE_TASK]), inside=bridge.pid
    )
    print("inside the namespace:", inside)
    assert inside[f"{internal}/v1/control/list-runs"] == 200, inside
    # there too, only our SuperExec (Flower's SuperExec authentication) may take ServerApp tasks
    assert inside[f"{internal}{ACQUIRE_TASK}"] == 401, inside


def _list_runs(flwr_home: Path) -> int:
    """How many runs the SuperLink knows, asked with the server's own Control API client."""
    from flwr.proto.control_pb2 import ListRunsRequest

    client = control._client(flwr_home)
    try:
        return len(client.ListRuns(ListRunsRequest()).run_dict)
    finally:
        client.close()


def test_the_bridge_socket_and_namespace_refuse_another_user(server: LocalFederation) -> None:
    flwr_home = server.root / "server" / "flower"
    sock = control.endpoint(flwr_home).unix_socket
    assert sock is not None and sock.exists()
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert server.server is not None
    link = next(p for p in psutil.Process(server.server.proc.pid).children(recursive=True)
                if "flower-superlink" in " ".join(p.cmdline()))  # fmt: skip
    assert netns.namespace_id(link.pid) != netns.namespace_id("self")

    remote = attack(ATTACK_SOCKET, str(sock), str(link.pid))
    print("the attacker at the socket:", remote)
    assert str(remote["socket"]).startswith("refused"), remote  # the 0700 folder
    assert str(remote["setns"]).startswith("refused"), remote  # not its namespace either

    # second layer: with the folder and socket opened up by mistake, the bridge still refuses
    # another user id (SO_PEERCRED) and closes the connection without an answer
    os.chmod(sock.parent, 0o711)
    os.chmod(sock, 0o666)
    try:
        opened = attack(ATTACK_SOCKET, str(sock), str(link.pid))
    finally:
        os.chmod(sock, 0o600)
        os.chmod(sock.parent, 0o700)
    print("the attacker at an opened socket:", opened)
    assert "answered" not in str(opened["socket"]), opened
