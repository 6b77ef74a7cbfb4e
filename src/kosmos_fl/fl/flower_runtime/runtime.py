"""Start and drive Flower's long-running processes (SuperLink, SuperNode) and submit runs.

Only this module knows Flower's command lines, so a Flower upgrade touches one file. Every process
is started in its own process group and stopped with the whole group, so nothing Flower spawns
(SuperExec, ServerApp, ClientApp processes) outlives it. The SuperLink and the SuperNodes run with
``--isolation process`` by default, each paired with our warm SuperExec (``warm_exec``, a companion
process stopped with them) instead of the SuperExec Flower would start. Where the SuperLink listens
(its own network namespace) is :mod:`.superlink`'s part.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime.control import APP_DIR as APP_DIR
from kosmos_fl.fl.flower_runtime.control import CONNECTION as CONNECTION
from kosmos_fl.fl.flower_runtime.control import endpoint as endpoint
from kosmos_fl.fl.flower_runtime.control import list_nodes as list_nodes
from kosmos_fl.fl.flower_runtime.control import register_node as register_node
from kosmos_fl.fl.flower_runtime.control import run_status as run_status  # in-process Control API
from kosmos_fl.fl.flower_runtime.control import stop_run as stop_run
from kosmos_fl.fl.flower_runtime.control import submit_run as submit_run
from kosmos_fl.fl.flower_runtime.control import unregister_node as unregister_node


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: our venv's tools first on PATH (the SuperLink and
    SuperNode spawn ``flower-superexec``/``flwr-*app`` by name), private FLWR_HOME, no telemetry."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (for per-process runtime APIs on one machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGTERM this child when the process that started it dies, so that a
    crashed or killed server or client never leaves an orphaned SuperLink/SuperNode behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    #: Processes that belong to this one and stop with it (e.g. a SuperNode's warm SuperExec).
    companions: list[ManagedProcess] = field(default_factory=list)
    #: Where this process's output starts in ``log_path`` (the file is appended to across runs).
    log_start: int = 0

    @classmethod
    def start(
        cls,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> ManagedProcess:
        """Start ``args``; ``preexec`` (Linux) runs in the child before exec instead of the default
        (die with this process)."""
        if preexec is None and sys.platform.startswith("linux"):
            preexec = _die_with_parent
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as fh:
            fh.write(f"$ {shlex.join(args)}\n".encode())
            fh.flush()
            log_start = fh.tell()
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec,
            )
        return cls(name, proc, log_path, log_start=log_start)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def not_running(self) -> list[str]:
        """Names of this process and of its companions that have exited (empty: all run)."""
        return [p.name for p in (self, *self.companions) if not p.alive()]

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``timeout``; companions too."""
        for companion in self.companions:
            companion.stop(timeout)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children that left the group early are still in the session; kill stragglers by group id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def write_connection(
    flwr_home: Path, address: str, root_certificates: Path | None = None, unix_socket: Path | None = None
) -> None:
    """Point the Control API client (:mod:`.control`) at the local SuperLink: over TLS verified
    against ``root_certificates`` when given; through the bridge's ``unix_socket`` when given (plain
    HTTP on the socket, the bridge speaks TLS to the SuperLink)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    security = (
        f"insecure = false\nroot-certificates = {json.dumps(str(root_certificates))}\n"
        if root_certificates is not None and unix_socket is None
        else "insecure = true\n"
    )
    if unix_socket is not None:
        security += f"unix-socket = {json.dumps(str(unix_socket))}\n"
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{address}"\n{security}',
        encoding="utf-8",
    )


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("127.0.0.1", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def _answers(url: str, context: ssl.SSLContext | None, unix_socket: Path | None) -> bool:
    """Whether ``url`` answers at all (any HTTP status); over ``unix_socket`` when given."""
    if unix_socket is None:
        try:
            with urllib.request.urlopen(url, timeout=1.0, context=context):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
    conn = _UnixHTTPConnection(unix_socket, 1.0)
    try:
        conn.request("GET", "/" + url.split("/", 3)[-1])
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_http(
    url: str,
    timeout: float,
    proc: ManagedProcess | None = None,
    context: ssl.SSLContext | None = None,
    unix_socket: Path | None = None,
) -> None:
    """Wait until ``url`` answers (any HTTP status), failing early if ``proc`` or one of its
    companions died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        down = [] if proc is None else proc.not_running()
        if proc is not None and down:
            raise FederationError(f"{down[0]} exited during start-up:\n{proc.tail()}")
        if _answers(url, context, unix_socket):
            return
        time.sleep(0.2)
    raise FederationError(f"{url} did not answer within {timeout:.0f} s")


def start_supernode(
    superlink: str,
    node_config: dict[str, Any],
    flwr_home: Path,
    log_path: Path,
    *,
    warm: bool = True,
    root_certificates: Path | None = None,
    auth_private_key: Path | None = None,
) -> ManagedProcess:
    """Start a SuperNode that connects to ``superlink`` and runs our ClientApp for each message.

    ``warm`` (default) pairs it with :mod:`kosmos_fl.fl.flower_runtime.warm_exec`, whose ClientApp
    processes start with torch and the use case already imported; otherwise Flower's own SuperExec
    cold-starts one.
    """
    cfg = " ".join(f"{k}={json.dumps(v)}" for k, v in node_config.items())
    port = free_port()
    security = (
        ["--insecure"] if root_certificates is None else ["--root-certificates", str(root_certificates)]
    )
    if auth_private_key is not None:
        security += ["--auth-supernode-private-key", str(auth_private_key)]
    args = [
        _tool("flower-supernode"),
        *security,
        "--superlink",
        superlink,
        "--node-config",
        cfg,
        "--port",
        str(port),
    ]
    if warm:
        args += ["--isolation", "process"]
    env = flower_env(flwr_home)
    node = ManagedProcess.start("SuperNode", args, env, log_path)
    if warm:
        exec_args = [sys.executable, "-m", "kosmos_fl.fl.flower_runtime.warm_exec", "--runtime-api-address",
                     f"127.0.0.1:{port}", "--parent-pid", str(node.proc.pid)]  # fmt: skip
        node.companions.append(ManagedProcess.start("SuperExec", exec_args, env, log_path))
    return node


_NODE_ID = re.compile(rb"SuperNode ID: (\d+)")


def wait_node_id(node: ManagedProcess, timeout: float) -> int | None:
    """The Flower node id a SuperNode got from the SuperLink, read from its log (Flower 1.42 logs
    ``SuperNode ID: <id>`` once it is registered and prints it nowhere else); None if the SuperNode
    died or did not register within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.alive():
        try:
            with node.log_path.open("rb") as fh:
                fh.seek(node.log_start)
                found = _NODE_ID.search(fh.read())
        except OSError:
            found = None
        if found is not None:
            return int(found.group(1))
        time.sleep(0.05)
    return None
