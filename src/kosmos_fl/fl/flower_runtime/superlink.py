"""Start the SuperLink where no other local user can reach it, with its bridge and warm SuperExec.

Flower 1.42 serves the Fleet, Control and Runtime APIs on one TCP port, and the Control API has no
login (issue 16 row 9). With ``superlink_isolation: netns`` (or ``auto`` where the kernel allows it)
the SuperLink, its SuperExec and every ServerApp run in the private network namespace of a bridge
companion (:mod:`.netns`), and the host reaches them only through the bridge's unix socket (mode
0600 in a 0700 folder, peers of another user id refused): the Fleet proxy and the in-process
Control API client (:mod:`.control`) use it. ``loopback`` is the host's 127.0.0.1, reachable by
every local user; ``auto`` falls back to it with one warning when the kernel refuses the namespace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime import netns
from kosmos_fl.fl.flower_runtime.runtime import (
    ManagedProcess,
    _die_with_parent,
    _tool,
    flower_env,
    wait_http,
    write_connection,
)
from kosmos_fl.fl.flower_runtime.warm_exec import NO_TRAIN_FLAG, SERVER_TASK_POLL_INTERVAL

log = logging.getLogger("kosmos_fl.flower")
#: Values of ``superlink_isolation`` (see the module docstring).
ISOLATIONS = ("auto", "netns", "loopback")


def _superlink_args(
    host: str,
    port: int,
    database: Path | None,
    tls: tuple[Path, Path, Path] | None,
    node_auth: bool,
    secret: Path | None,
) -> list[str]:
    """The SuperLink's command line; ``secret``: run with ``--isolation process`` (our warm
    SuperExec), whose Runtime API calls must be signed with that file's secret."""
    security = ["--insecure"]
    if tls is not None:
        security = [
            "--ssl-certfile",
            str(tls[0]),
            "--ssl-keyfile",
            str(tls[1]),
            "--ssl-ca-certfile",
            str(tls[2]),
        ]
        if node_auth:
            security.append("--enable-supernode-auth")
    args = [_tool("flower-superlink"), *security, "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]  # fmt: skip
    if secret is not None:
        args += ["--isolation", "process", "--superexec-auth-secret-file", str(secret)]
    if database is not None:
        args += ["--database", str(database)]
    return args


def _start_bridge(
    port: int, tls: tuple[Path, Path, Path] | None, env: dict[str, str], log_path: Path, isolation: str
) -> tuple[ManagedProcess, Path] | None:
    """Start the :mod:`.netns` bridge and wait until its namespace and socket exist: (bridge, socket);
    None when the kernel refused the namespace and ``isolation`` is ``auto`` (warned once)."""
    sock_dir = Path(tempfile.mkdtemp(prefix="kosmos-superlink-"))  # 0700; short: unix paths <= 107 B
    sock = sock_dir / "control.sock"
    args = [
        sys.executable,
        "-m",
        "kosmos_fl.fl.flower_runtime.netns",
        "--socket",
        str(sock),
        "--port",
        str(port),
    ]
    if tls is not None:
        args += ["--ca-certfile", str(tls[2])]
    bridge = ManagedProcess.start("SuperLink bridge", args, env, log_path)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and bridge.alive():
        with contextlib.suppress(OSError):  # the socket, before the namespace, is not enough
            if sock.exists() and netns.namespace_id(bridge.proc.pid) != netns.namespace_id("self"):
                return bridge, sock
        time.sleep(0.02)
    bridge.stop(1.0)
    with contextlib.suppress(OSError):
        sock.unlink(missing_ok=True)
        sock_dir.rmdir()
    reason = bridge.tail(1).strip() or "it did not start within 30 s"
    if isolation == "netns" or bridge.proc.returncode != netns.REFUSED:
        raise FederationError(
            f"superlink_isolation: {isolation}: {reason}; allow unprivileged user namespaces, or set "
            "superlink_isolation: loopback (docs/SECURITY.md, row 9)"
        )
    log.warning(
        "SuperLink on the host's loopback: any local user can call its Control API (submit runs, i.e. "
        "run code as this user; register node keys); %s. Allow unprivileged user namespaces, or set "
        "superlink_isolation: loopback to accept this (docs/SECURITY.md, row 9)",
        reason.removeprefix("SuperLink bridge: "),
    )
    return None


def start_superlink(
    host: str,
    port: int,
    flwr_home: Path,
    log_path: Path,
    database: Path | None = None,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    node_auth: bool = False,
    warm: bool = True,
    isolation: str = "auto",
) -> ManagedProcess:
    """Start the SuperLink (Fleet, Control and Runtime APIs on ``host:port``).

    ``tls`` = (certfile, keyfile, CA certfile) serves all three APIs over TLS; ``node_auth``
    (needs TLS) only admits SuperNodes whose public key was registered (:func:`register_node`).

    ``isolation`` (:data:`ISOLATIONS`): with ``netns`` the SuperLink and its SuperExec join the
    private network namespace of a bridge companion (:mod:`.netns`), and ``host`` is that
    namespace's own address; the host reaches it through the socket written to ``config.toml``.

    ``warm`` (default) runs the SuperLink with ``--isolation process`` and pairs it with
    :mod:`kosmos_fl.fl.flower_runtime.warm_exec` (a companion: it stops with the SuperLink and logs
    to the same file), whose ServerApp processes start with torch and kosmos_fl already imported;
    otherwise the SuperLink starts Flower's own SuperExec, which cold-starts one per session.
    """
    if isolation not in ISOLATIONS:
        raise FederationError(f"superlink_isolation {isolation!r}: use one of {', '.join(ISOLATIONS)}")
    env = flower_env(flwr_home)
    bridged = None if isolation == "loopback" else _start_bridge(port, tls, env, log_path, isolation)
    if isolation == "loopback":
        log.warning("SuperLink on the host's loopback (superlink_isolation: loopback): any local user "
                    "can call its Control API, i.e. submit runs and register node keys")  # fmt: skip
    enter = netns.Joiner(bridged[0].proc.pid, _die_with_parent) if bridged else None
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    ctx = None if tls is None or bridged else ssl.create_default_context(cafile=str(tls[2]))
    link = bridged[0] if bridged else None  # what to stop if the start fails
    secret = _superexec_secret(flwr_home) if warm else None
    try:
        proc = link = ManagedProcess.start(
            "SuperLink", _superlink_args(host, port, database, tls, node_auth, secret), env, log_path,
            preexec=enter,
        )  # fmt: skip
        proc.companions += [bridged[0]] if bridged else []
        url = f"{'https' if ctx else 'http'}://{local}:{port}/health"
        wait_http(url, 60.0, proc, ctx, bridged[1] if bridged else None)
        if warm:  # once the Runtime API answers: Flower's client backs off for seconds otherwise
            server_exec = _start_server_exec(proc, f"{local}:{port}", tls, secret, env, log_path, enter)
            proc.companions.append(server_exec)
    except BaseException:
        if link is not None:
            link.stop(2.0)
        raise
    finally:
        if enter is not None:
            enter.close()
    ca = tls[2] if tls is not None else None
    write_connection(flwr_home, f"{local}:{port}", ca, bridged[1] if bridged else None)
    return proc


def _superexec_secret(flwr_home: Path) -> Path:
    """A new random secret (file 0600) that the SuperLink demands of the SuperExec's Runtime API
    calls (Flower's SuperExec authentication): without it no other process that reaches the Runtime
    API can list or take a ServerApp's task and its token."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "superexec-auth.secret"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path


def _start_server_exec(
    link: ManagedProcess,
    address: str,
    tls: tuple[Path, Path, Path] | None,
    secret: Path | None,
    env: dict[str, str],
    log_path: Path,
    enter: Callable[[], None] | None,
) -> ManagedProcess:
    """The SuperLink's warm SuperExec, with what the SuperLink would pass its own
    (flower_superlink._get_superexec_command): the Runtime API at ``address`` (same port), the CA
    when TLS is on, the SuperLink's pid to die with, the auth secret; in its namespace (``enter``)."""
    exec_args = [sys.executable, "-m", "kosmos_fl.fl.flower_runtime.warm_exec",
                 "--runtime-api-address", address, "--parent-pid", str(link.proc.pid),
                 "--task-poll-interval", SERVER_TASK_POLL_INTERVAL, NO_TRAIN_FLAG]  # fmt: skip
    if tls is not None:
        exec_args += ["--root-certificates", str(tls[2])]
    if secret is not None:
        exec_args += ["--superexec-auth-secret-file", str(secret)]
    return ManagedProcess.start("SuperExec", exec_args, env, log_path, preexec=enter)
