"""The SuperLink's Control API, called in-process: runs (submit, status, stop) and node keys.

The ``flwr run`` / ``flwr ls`` / ``flwr stop`` commands each start a Python interpreter and import
Flower (about 1 s of CPU); the coordinator submitted every session that way and asked for the
run's status every 10 s while it ran. These functions send the same Control API requests with
Flower's own HTTP client and the connection :func:`~kosmos_fl.fl.flower_runtime.runtime.
write_connection` wrote into ``flwr_home/config.toml``: through the bridge's unix socket when the
SuperLink runs in its own network namespace (:mod:`.netns`), which the ``flwr`` CLI cannot use. The
FAB is built once per process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kosmos_fl.errors import FederationError

#: The Flower app (FAB) submitted for every session.
APP_DIR = Path(__file__).parents[1] / "apps" / "fab"
#: The connection name in ``flwr_home/config.toml``.
CONNECTION = "kosmos"
#: Seconds a Control API call may take on a busy machine.
TIMEOUT = 60.0


@functools.cache
def _fab() -> Any:
    from flwr.cli.build import build_fab_from_disk
    from flwr.common.serde import fab_to_proto
    from flwr.supercore.fab import Fab

    data = build_fab_from_disk(APP_DIR)
    return fab_to_proto(Fab(hashlib.sha256(data).hexdigest(), data, {}))


@dataclass(frozen=True)
class Endpoint:
    """How this host reaches the local SuperLink: ``url`` (``http(s)://127.0.0.1:port``), through
    ``unix_socket`` when set; ``verify``: the CA file for TLS, else False."""

    url: str
    unix_socket: Path | None
    verify: str | bool


def endpoint(flwr_home: Path) -> Endpoint:
    """The SuperLink connection written into ``flwr_home/config.toml``."""
    try:
        doc = tomllib.loads((flwr_home / "config.toml").read_text(encoding="utf-8"))
        conn = doc["superlink"][CONNECTION]
        address, insecure = str(conn["address"]), bool(conn.get("insecure", False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FederationError(f"no SuperLink connection in {flwr_home}/config.toml ({exc})") from exc
    verify: str | bool = str(conn["root-certificates"]) if conn.get("root-certificates") else not insecure
    sock = Path(conn["unix-socket"]) if conn.get("unix-socket") else None
    return Endpoint(f"{'http' if insecure else 'https'}://{address}", sock, verify)


def _client(flwr_home: Path) -> Any:
    """A Control API client for the SuperLink named in ``flwr_home/config.toml``."""
    import httpx
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

    ep = endpoint(flwr_home)
    client = ControlHttpClient(
        ep.url,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
        verify=ep.verify,
        timeout=TIMEOUT,
    )
    if ep.unix_socket is not None:  # Flower's client takes no transport: swap its httpx client
        client._client.close()
        client._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(ep.unix_socket)), timeout=TIMEOUT, follow_redirects=True
        )
    return client


def _call(flwr_home: Path, method: str, request: Any, failure: str) -> Any:
    """``client.<method>(request)``; FederationError naming ``failure`` when it fails."""
    client = _client(flwr_home)
    try:
        return getattr(client, method)(request)
    except (Exception, SystemExit) as exc:  # Flower's version check exits; never take the server down
        raise FederationError(f"{failure}: {exc}") from exc
    finally:
        client.close()


def submit_run(flwr_home: Path, run_config: dict[str, Any]) -> int:
    """Submit our Flower app as a new run with ``run_config``; returns Flower's run id."""
    from flwr.common.serde import user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest

    client = _client(flwr_home)
    try:
        req = StartRunRequest(fab=_fab(), override_config=user_config_to_proto(run_config), federation="")
        res = client.StartRun(req)
    except (Exception, SystemExit) as exc:  # Flower's version check exits; never take the server down
        raise FederationError(f"Flower refused the training run: {exc}") from exc
    finally:
        client.close()
    if not res.HasField("run_id"):
        raise FederationError(f"Flower refused the training run: {res.note or 'no run id'}")
    return int(res.run_id)


def run_status(flwr_home: Path, run_id: int) -> str:
    """Flower's status of a run (``pending``, ``running``, ``finished:completed|failed|stopped``),
    or ``unknown`` when the SuperLink did not answer (a busy machine): callers poll again later."""
    from flwr.proto.control_pb2 import ListRunsRequest

    try:
        client = _client(flwr_home)
    except FederationError:
        return "unknown"
    try:
        res = client.ListRuns(ListRunsRequest(run_id=run_id))
        status = res.run_dict[run_id].status
    except (Exception, SystemExit):
        return "unknown"
    finally:
        client.close()
    return f"{status.status}:{status.sub_status}" if status.sub_status else str(status.status)


def stop_run(flwr_home: Path, run_id: int) -> None:
    """Ask the SuperLink to stop a run (best effort)."""
    from flwr.proto.control_pb2 import StopRunRequest

    with contextlib.suppress(Exception, SystemExit):
        client = _client(flwr_home)
        try:
            client.StopRun(StopRunRequest(run_id=run_id))
        finally:
            client.close()


def register_node(flwr_home: Path, public_key: Path, name: str, cwd: Path | None = None) -> int:
    """Register a SuperNode's OpenSSH EC public key with the SuperLink; returns its node id
    (``flwr supernode register``, whose key check this reuses). ``cwd`` is ignored."""
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.proto.control_pb2 import RegisterNodeRequest

    failure = f"SuperNode key {public_key} of {name} not registered"
    try:
        key = try_load_public_key(public_key)
    except (Exception, SystemExit) as exc:
        raise FederationError(f"{failure}: not an OpenSSH EC public key on a NIST curve") from exc
    res = _call(flwr_home, "RegisterNode", RegisterNodeRequest(public_key=key, name=name), failure)
    if not res.node_id:
        raise FederationError(f"{failure}: the SuperLink gave no node id")
    return int(res.node_id)


def unregister_node(flwr_home: Path, node_id: int, cwd: Path | None = None) -> None:
    """Remove a registered SuperNode: its key no longer authenticates. ``cwd`` is ignored."""
    from flwr.proto.control_pb2 import UnregisterNodeRequest

    _call(
        flwr_home,
        "UnregisterNode",
        UnregisterNodeRequest(node_id=node_id),
        f"node {node_id} not unregistered",
    )


def list_nodes(flwr_home: Path, cwd: Path | None = None) -> list[dict[str, Any]]:
    """The SuperLink's SuperNodes that are not deleted: ``node-id``, ``owner-name``, ``status``."""
    from flwr.proto.control_pb2 import ListNodesRequest

    res = _call(flwr_home, "ListNodes", ListNodesRequest(), "SuperNodes not listed")
    return [
        {"node-id": str(n.node_id), "owner-name": n.owner_name, "status": n.status}
        for n in res.nodes_info
        if n.status != "deleted"
    ]
