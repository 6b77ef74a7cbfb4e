"""A whole federation on one machine: a KOSMoS server and clients as real child processes.

Used by ``kosmos-fl demo``, the end-to-end tests and the benchmarks, so all three exercise exactly
what an operator runs (``kosmos-fl server`` / ``kosmos-fl client`` with their own config files) over
real loopback sockets. Every process it starts is stopped by :meth:`LocalFederation.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import yaml

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime.runtime import ManagedProcess, free_port

CLI = [sys.executable, "-m", "kosmos_fl.cli"]


def child_env() -> dict[str, str]:
    """Environment for the children: no stray ``DYNACONF_*`` overrides (their config files decide),
    no telemetry, this interpreter's tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNACONF_")}
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


class LocalFederation:
    """Server plus clients as child processes on free loopback ports, rooted in one folder."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = env if env is not None else child_env()
        self.procs: list[ManagedProcess] = []
        self.sio_port = free_port()
        self.flwr_port = free_port()
        self.server: ManagedProcess | None = None
        #: CA certificate when the server runs TLS (set it before start_server): /status over https.
        self.ca_file: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.sio_port}"

    def _write(self, name: str, cfg: dict[str, Any]) -> Path:
        path = self.root / "config" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return path

    def start_server(self, timeout: float = 90.0, **values: Any) -> ManagedProcess:
        """Start ``kosmos-fl server`` with ``values`` over loopback defaults; wait until it serves."""
        cfg = {
            "flwr_server_address": f"127.0.0.1:{self.flwr_port}",
            "socketio_address": f"127.0.0.1:{self.sio_port}",
            "mlflow_server_address": str(self.root / "mlruns"),
            "work_dir": str(self.root / "server"),
            **values,
        }
        path = self._write("server", cfg)
        self.server = ManagedProcess.start(
            "server", [*CLI, "server", "-c", str(path)], self.env, self.root / "logs" / "server.log"
        )
        self.procs.append(self.server)
        deadline = time.monotonic() + timeout
        while self.status() is None:
            if not self.server.alive():
                raise FederationError(f"the server exited during start-up:\n{self.server.tail(30)}")
            if time.monotonic() > deadline:
                raise FederationError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.3)
        return self.server

    def start_client(
        self,
        name: str,
        *,
        once: bool = True,
        extra_env: dict[str, str] | None = None,
        launcher: list[str] | None = None,
        **values: Any,
    ) -> ManagedProcess:
        """Start ``kosmos-fl client`` named ``name`` with ``values`` as its config (``extra_env``:
        more environment, e.g. the test-only ``KOSMOS_FL_FAULT`` of :mod:`kosmos_fl.testing.faults`;
        ``launcher`` prefixes the command: ``["ip", "netns", "exec", "host1"]`` runs it on a
        simulated host)."""
        cfg = {
            "socketio_address": f"127.0.0.1:{self.sio_port}",
            "client_name": name,
            "work_dir": str(self.root / "clients"),
            **values,
        }
        path = self._write(name, cfg)
        args = [*(launcher or []), *CLI, "client", "-c", str(path), *(["--once"] if once else [])]
        env = {**self.env, **(extra_env or {})}
        proc = ManagedProcess.start(name, args, env, self.root / "logs" / f"{name}.log")
        self.procs.append(proc)
        return proc

    def status(self) -> dict[str, Any] | None:
        """The server's ``/status`` document, or None while it does not answer."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        try:
            with urllib.request.urlopen(f"{self.url}/status", timeout=2, context=ctx) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def wait_sessions(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until ``n`` sessions are over; returns their summaries."""
        deadline = time.monotonic() + timeout
        while True:
            done = (self.status() or {}).get("sessions_done", [])
            if len(done) >= n:
                return done
            if self.server is not None and not self.server.alive():
                raise FederationError(f"the server exited:\n{self.server.tail(30)}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.tail(30)}" for p in self.procs)
                raise FederationError(f"{n} session(s) did not finish within {timeout:.0f} s:\n{logs}")
            time.sleep(0.5)

    def predict(self, model_uri: str, data: Path, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run ``kosmos-fl predict`` against this federation's MLflow store, as a user would."""
        args = [
            *CLI,
            "predict",
            "--model",
            model_uri,
            "--data",
            str(data),
            "--mlflow",
            str(self.root / "mlruns"),
        ]
        return subprocess.run(
            args, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def pids(self) -> list[int]:
        """Process ids of the started processes that still run (roots of their process trees)."""
        return [p.proc.pid for p in self.procs if p.alive()]

    def descendants(self) -> list[psutil.Process]:
        """Every live process of the federation: the started ones and all they started."""
        found: dict[int, psutil.Process] = {}
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    found[proc.pid] = proc
        return list(found.values())

    def kill(self, proc: ManagedProcess, *, tree: bool = True) -> None:
        """SIGKILL a started process, as a crash or power loss would (``tree``: and everything it
        started, which otherwise gets a SIGTERM from the kernel when its parent dies)."""
        victims: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(proc.proc.pid)
            victims = [root, *(root.children(recursive=True) if tree else [])]
        for victim in victims:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        proc.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> list[str]:
        """Stop every started process and everything it started. Returns the command lines of
        processes that outlived a graceful stop (they are killed); empty when all shut down."""
        tree = self.descendants()
        # everything but the server at once (each client stops its kept SuperNode, which says
        # goodbye to the SuperLink), then the server: one stop after another took 2 s a client
        others = [p for p in self.procs if p is not self.server]
        with ThreadPoolExecutor(max(1, len(others))) as pool:
            list(pool.map(lambda p: p.stop(), others))
        if self.server is not None:
            self.server.stop()
        _, alive = psutil.wait_procs(tree, timeout=timeout)
        leftovers = []
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                leftovers.append(" ".join(proc.cmdline())[:200])
                proc.kill()
        return leftovers
