"""Many clients registering at once with a real coordinator process.

    .venv/bin/python bench/bench_coordinator.py [--clients 1000] [--workers 4] [--baseline 10]

Starts ``kosmos-fl server`` (via LocalFederation, loopback ports, ``num_clients`` above the swarm so
no session starts), then, in the same run: (a) a baseline swarm of ``--baseline`` clients, (b) the
swarm of ``--clients`` clients spread over ``--workers`` processes, all starting at the same instant.
Each client is a python-socketio AsyncClient over a WebSocket (as ``kosmos-fl client``) that connects,
sends ``client_criteria`` and waits for ``registered``. Prints registrations per second, latency
p50/p99 (connect + criteria until the acknowledgement), errors, and the coordinator process's memory
(RSS and PSS) idle, with the baseline and with the swarm connected; ratios against the baseline.
Exit status 1 if any client failed to register or the coordinator lost count.
Target (issue #6): 1,000 concurrent connections registering at once without errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from kosmos_fl.coordinator.guard import raise_fd_limit
from kosmos_fl.localfed import LocalFederation

console = Console(width=170)


def memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of one process, in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, getattr(info, "pss", info.rss) / 2**20


def wait_status(fed: LocalFederation, clients: int, timeout: float = 300.0) -> dict[str, Any]:
    """Poll ``/status`` until the coordinator counts ``clients`` connections."""
    deadline = time.monotonic() + timeout
    while True:
        st = fed.status() or {}
        if len(st.get("clients", [])) == clients or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def run_swarm(fed: LocalFederation, count: int, workers: int, prefix: str, timeout: float) -> dict[str, Any]:
    """``count`` clients in ``workers`` processes, all starting together; returns merged results
    and the coordinator's view and memory while they are connected."""
    assert fed.server is not None
    server = psutil.Process(fed.server.proc.pid)
    cpu0 = sum(server.cpu_times()[:2])
    start_at = time.time() + 3.0  # time for the workers to import everything
    procs = []
    for w in range(workers):
        n = count // workers + (1 if w < count % workers else 0)
        module = "kosmos_fl.testing.swarm"
        args = [sys.executable, "-m", module, fed.url, str(n), f"{prefix}{w}", str(start_at), str(timeout)]
        procs.append(
            subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=fed.env)
        )
    results = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"a swarm worker died (exit {p.wait()})")
        results.append(json.loads(line))
    st = wait_status(fed, count)
    cpu = sum(server.cpu_times()[:2]) - cpu0
    rss, pss = memory(fed.server.proc.pid)
    for p in procs:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("bye\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=120)
    after = wait_status(fed, 0)
    lat = sorted(x for r in results for x in r["latencies"])
    errors = [e for r in results for e in r["errors"]]
    first = min(r["first_start"] for r in results)
    last = max(r["last_registered"] for r in results)
    return {
        "count": count,
        "registered": len(lat),
        "errors": errors,
        "wall": last - first,
        "rate": len(lat) / (last - first) if last > first else 0.0,
        "p50": statistics.quantiles(lat, n=100)[49] if len(lat) > 1 else (lat or [0])[0],
        "p99": statistics.quantiles(lat, n=100)[98] if len(lat) > 1 else (lat or [0])[0],
        "max": lat[-1] if lat else 0.0,
        "seen": len(st.get("clients", [])),
        "waiting": st.get("waiting"),
        "left_after": len(after.get("clients", [])),
        "cpu_ms": cpu * 1000 / max(len(lat), 1),
        "rss": rss,
        "pss": pss,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--baseline", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a client may wait for its answer")
    args = ap.parse_args()
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="bench-coord-") as tmp:
        fed = LocalFederation(Path(tmp))
        try:
            fed.start_server(
                timeout=300,
                num_clients=10_000,
                criteria_timeout=3600,
                mlflow_experiment_name="bench-coordinator",
                # the whole swarm comes from 127.0.0.1: lift the per-address connection cap
                limits={"max_connections_per_ip": 2 * (args.clients + args.baseline)},
            )
            assert fed.server is not None
            time.sleep(1.0)
            idle_rss, idle_pss = memory(fed.server.proc.pid)
            base = run_swarm(fed, args.baseline, 1, "base", args.timeout)
            big = run_swarm(fed, args.clients, args.workers, "swarm", args.timeout)
        finally:
            leftovers = fed.stop()
    table = Table(title=f"Coordinator: clients registering at once ({psutil.cpu_count()} CPUs)")
    for col in ("run", "clients", "registered", "errors", "reg/s", "p50 ms", "p99 ms", "max ms",
                "server CPU ms/reg", "server RSS MiB", "server PSS MiB", "KiB/client (PSS)"):  # fmt: skip
        table.add_column(col, justify="right")
    table.add_row("idle", "0", "-", "-", "-", "-", "-", "-", "-", f"{idle_rss:.0f}", f"{idle_pss:.0f}", "-")
    for name, r in (("baseline", base), ("swarm", big)):
        per_client = (r["pss"] - idle_pss) * 1024 / max(r["count"], 1)
        table.add_row(
            name, str(r["count"]), str(r["registered"]), str(len(r["errors"])), f"{r['rate']:.0f}",
            f"{r['p50'] * 1000:.0f}", f"{r['p99'] * 1000:.0f}", f"{r['max'] * 1000:.0f}",
            f"{r['cpu_ms']:.1f}", f"{r['rss']:.0f}", f"{r['pss']:.0f}", f"{per_client:.0f}",
        )  # fmt: skip
    console.print(table)
    load = psutil.getloadavg()[0]
    console.print(f"load average during the run: {load:.1f} on {psutil.cpu_count()} CPUs")
    console.print(
        f"swarm vs baseline: p50 x{big['p50'] / max(base['p50'], 1e-9):.1f}, "
        f"p99 x{big['p99'] / max(base['p99'], 1e-9):.1f}, "
        f"reg/s x{big['rate'] / max(base['rate'], 1e-9):.1f}, "
        f"server PSS +{big['pss'] - idle_pss:.0f} MiB over idle for {big['count']} connections"
    )
    ok = True
    for name, r in (("baseline", base), ("swarm", big)):
        if r["errors"] or r["registered"] != r["count"] or r["seen"] != r["count"] or r["left_after"]:
            ok = False
            console.print(
                f"[red]{name}: {r['registered']}/{r['count']} registered, coordinator saw {r['seen']}, "
                f"{r['left_after']} left after disconnect, errors: {r['errors'][:5]}[/red]"
            )
    if leftovers:
        console.print(f"[red]processes outlived the benchmark: {leftovers}[/red]")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
