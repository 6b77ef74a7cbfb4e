"""The SuperLink's Control API, called in-process: submit a run, ask its status, stop it.

The ``flwr run`` / ``flwr ls`` / ``flwr stop`` commands each start a Python interpreter and import
Flower (about 1 s of CPU); the coordinator submitted every session that way and asked for the
run's status every 10 s while it ran. These functions send the same Control API requests with
Flower's own HTTP client and the connection :func:`~kosmos_fl.fl.flower_runtime.runtime.
write_connection` wrote into ``flwr_home/config.toml``. The FAB is built once per process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tomllib
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


def _client(flwr_home: Path) -> Any:
    """A Control API client for the SuperLink named in ``flwr_home/config.toml``."""
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

    try:
        doc = tomllib.loads((flwr_home / "config.toml").read_text(encoding="utf-8"))
        conn = doc["superlink"][CONNECTION]
        address, insecure = str(conn["address"]), bool(conn.get("insecure", False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FederationError(f"no SuperLink connection in {flwr_home}/config.toml ({exc})") from exc
    verify: str | bool = str(conn["root-certificates"]) if conn.get("root-certificates") else not insecure
    return ControlHttpClient(
        f"{'http' if insecure else 'https'}://{address}",
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
        verify=verify,
        timeout=TIMEOUT,
    )


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
