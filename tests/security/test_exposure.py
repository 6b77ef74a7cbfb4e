"""Nothing that can run code is reachable from the network.

A real second host: a network namespace joined to this one by a veth pair (needs root, as in CI).
The server listens on all addresses with TLS; from inside the namespace we try, with the real
``flwr`` CLI and raw HTTPS, to reach run submission (Control API), the Runtime API, the SuperLink's
own port and the coordinator's /status. Positive controls show the same calls work inside the
SuperLink's own network namespace and that the Fleet API (what SuperNodes need) does get through.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.security import certs
from kosmos_fl.security.clients import ClientRegistry

HOST_IP, NS_IP = "10.231.77.1", "10.231.77.2"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace ``ns`` reaching this host at HOST_IP (and nothing at 127.0.0.1 of ours)."""
    if os.geteuid() != 0:
        pytest.fail("this test builds a network namespace and needs root (CI runs as root)")
    tag = uuid.uuid4().hex[:6]
    ns, veth_h, veth_n = f"kfl{tag}", f"kh{tag}", f"kn{tag}"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth_h, "type", "veth", "peer", "name", veth_n)
        sh("ip", "link", "set", veth_n, "netns", ns)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", veth_h)
        sh("ip", "link", "set", veth_h, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NS_IP}/24", "dev", veth_n)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", veth_n, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", veth_h], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


PROBE = r"""
import json, socket, ssl, sys, urllib.request, urllib.error
ca, host, sio, flwr, internal = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
out = {}
def call(name, url, method="POST"):
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method,
                                 headers={"Content-Type": "application/protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            out[name] = r.status
    except urllib.error.HTTPError as e:
        out[name] = e.code
    except OSError as e:
        out[name] = "unreachable: " + type(e).__name__
call("status", f"https://{host}:{sio}/status", "GET")
call("health", f"https://{host}:{sio}/health", "GET")
for path in ("/v1/control/start-run", "/v1/control/list-runs", "/v1/control/register-node",
             "/v1/runtime/acquire-task", "/health", "/docs", "/v1/fleet/../control/list-runs"):
    call("flwr" + path, f"https://{host}:{flwr}{path}")
call("fleet", f"https://{host}:{flwr}/v1/fleet/pull-messages")
try:
    socket.create_connection((host, internal), timeout=3).close()
    out["internal"] = "open"
except OSError as e:
    out["internal"] = "unreachable: " + type(e).__name__
print(json.dumps(out))
"""


def flwr_ls(flwr_home: Path, address: str, ca: Path, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    runtime.write_connection(flwr_home, address, root_certificates=ca)
    return subprocess.run(
        [*prefix, runtime._tool("flwr"), "ls", runtime.CONNECTION, "--format", "json"],
        env=runtime.flower_env(flwr_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=flwr_home,
    )


def test_run_submission_and_admin_endpoints_are_not_reachable_from_the_network(
    netns: str, tmp_path: Path, clean_env: dict[str, str]
) -> None:
    paths = certs.init(tmp_path / "certs", hosts=[HOST_IP])
    registry = ClientRegistry(tmp_path / "clients.json")
    registry.add("site-a", tmp_path / "bundles", paths.ca_cert)
    fed = LocalFederation(tmp_path / "fed", clean_env)
    fed.ca_file = paths.ca_cert
    try:
        fed.start_server(
            socketio_address=f"0.0.0.0:{fed.sio_port}",
            flwr_server_address=f"0.0.0.0:{fed.flwr_port}",
            tls={
                "certfile": str(paths.server_cert),
                "keyfile": str(paths.server_key),
                "ca_certfile": str(paths.ca_cert),
            },
            clients_file=str(registry.path),
        )
        superlink_log = (tmp_path / "fed" / "server" / "logs" / "superlink.log").read_text()
        internal = int(re.search(r"flower-superlink .*--port (\d+)", superlink_log).group(1))  # type: ignore[union-attr]
        assert re.search(r"flower-superlink .*--host 127\.0\.0\.1 ", superlink_log)
        args = [str(paths.ca_cert), HOST_IP, str(fed.sio_port), str(fed.flwr_port), str(internal)]
        res = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        remote = json.loads(res.stdout)
        print("from the network:", remote)
        # the coordinator's admin view is loopback-only, its health check is public
        assert remote["status"] == 403 and remote["health"] == 200, remote
        # run submission, node registration, Runtime API, SuperLink health/docs: not served
        for key in [k for k in remote if k.startswith("flwr/")]:
            assert remote[key] == 404, (key, remote)
        # the SuperLink's own port is not reachable at all from the network
        assert str(remote["internal"]).startswith("unreachable"), remote
        # ...but the Fleet API is forwarded to the SuperLink (which refuses an unsigned call itself)
        assert remote["fleet"] not in (404, 502) and isinstance(remote["fleet"], int), remote

        # the real flwr CLI: listing/submitting runs fails from the namespace...
        remote_ls = flwr_ls(
            tmp_path / "remote-flwr",
            f"{HOST_IP}:{fed.flwr_port}",
            paths.ca_cert,
            ["ip", "netns", "exec", netns],
        )
        assert '"success": true' not in remote_ls.stdout, remote_ls.stdout
        print("flwr ls via the public port:", remote_ls.stdout.strip()[-300:])
        remote_ls2 = flwr_ls(
            tmp_path / "remote-flwr2", f"{HOST_IP}:{internal}", paths.ca_cert, ["ip", "netns", "exec", netns]
        )
        assert '"success": true' not in remote_ls2.stdout, remote_ls2.stdout
        print("flwr ls via the SuperLink port:", remote_ls2.stdout.strip()[-300:])
        # ...and works inside the SuperLink's own network namespace (positive control: the API is
        # alive; on the host's loopback it is not reachable either, tests/security/test_row09_*)
        assert fed.server is not None
        bridge = next(p for p in psutil.Process(fed.server.proc.pid).children(recursive=True)
                      if "flower_runtime.netns" in " ".join(p.cmdline()))  # fmt: skip
        inside = ["nsenter", "-t", str(bridge.pid), "-U", "-n", "--preserve-credentials"]
        local_ls = flwr_ls(tmp_path / "local-flwr", f"127.0.0.1:{internal}", paths.ca_cert, inside)
        assert '"success": true' in local_ls.stdout, local_ls.stdout + local_ls.stderr
    finally:
        assert fed.stop() == []
