"""Round time and peak memory of `kosmos-fl simulate` with 100 and 1,000 virtual clients.

    .venv/bin/python bench/bench_simulation.py [--clients 10 100 1000] [--rounds 1]

Each size runs in a fresh child process (the production ServerApp and ClientApp on Flower's Ray
simulation engine, generated bearings, the 2021 feature network). Printed per size: the federated
round time (from sending the global model to the end of central evaluation, as the ServerApp logs
it), the whole simulation's wall time (Ray start, joins, rounds, model logging), and the peak
summed PSS (proportional set size: shared pages count once) of the child's whole process tree
(driver, Ray's GCS, raylet, workers), sampled every 0.2 s. The first size is the baseline the
others are compared with (ratios per virtual client).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

console = Console()
OUT = Path(__file__).resolve().parent / "out"


def _tree_pss(root: psutil.Process) -> int:
    total = 0
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
    return total


def child(clients: int, rounds: int, snapshots: int, client_cpus: float, out: Path) -> None:
    from kosmos_fl.config import ServerConfig, TrainingConfig
    from kosmos_fl.fl.simulation.engine import generate_data, run_simulation
    from kosmos_fl.fl.tracking import tracking_uri

    work = Path(tempfile.mkdtemp(prefix=f"sim{clients}-", dir=OUT))
    data = generate_data(OUT / f"sim-data-{snapshots}", snapshots)
    res = run_simulation(
        config=ServerConfig(training=TrainingConfig(batch_size=16)),
        num_clients=clients,
        rounds=rounds,
        data_path=data,
        work_dir=work,
        mlflow_uri=tracking_uri(str(work / "mlruns")),
        usecase_params={"model": "ffnn"},
        client_cpus=client_cpus,
    )
    rows = [r for r in res["rounds"] if r["round"] > 0]
    out.write_text(
        json.dumps(
            {
                "seconds": res["seconds"],
                "round_seconds": [r["round_seconds"] for r in rows],
                "rmse": res["final_metrics"]["RMSE"],
                "samples": res["samples"],
            }
        )
    )


def measure(clients: int, rounds: int, snapshots: int, client_cpus: float) -> dict:
    out = OUT / f"sim-{clients}.json"
    out.unlink(missing_ok=True)
    args = [
        sys.executable,
        __file__,
        "--child",
        str(clients),
        "--rounds",
        str(rounds),
        "--snapshots",
        str(snapshots),
        "--client-cpus",
        str(client_cpus),
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(args)
    root = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_pss(root))
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    code = proc.wait()
    stop.set()
    t.join()
    if code != 0 or not out.exists():
        raise SystemExit(f"simulation with {clients} clients failed (exit {code})")
    res = json.loads(out.read_text())
    res.update({"clients": clients, "process_seconds": time.monotonic() - t0, "peak_pss": peak})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--snapshots", type=int, default=300, help="per generated bearing (>= clients / 4)")
    ap.add_argument(
        "--client-cpus", type=float, default=1.0, help="Ray CPUs per virtual client (CPUs / it = workers)"
    )
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    if a.child:
        child(a.child, a.rounds, a.snapshots, a.client_cpus, OUT / f"sim-{a.child}.json")
        return
    results = []
    for n in a.clients:  # each size is printed as soon as it is measured
        results.append(measure(n, a.rounds, a.snapshots, a.client_cpus))
        r = results[-1]
        console.print(
            f"{n} virtual clients: round {sum(r['round_seconds']) / len(r['round_seconds']):.1f} s, "
            f"simulation {r['seconds']:.1f} s, peak PSS {r['peak_pss'] / 2**30:.2f} GB"
        )
    base = results[0]
    table = Table(title=f"kosmos-fl simulate, {a.rounds} round(s), {base['samples']} training samples")
    for col in ("virtual clients", "round s", "round s / client", "vs baseline", "simulation s", "peak PSS",
                "vs baseline"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in results:
        rs = sum(r["round_seconds"]) / len(r["round_seconds"])
        brs = sum(base["round_seconds"]) / len(base["round_seconds"])
        table.add_row(
            str(r["clients"]),
            f"{rs:.1f}",
            f"{rs / r['clients']:.3f}",
            f"{rs / brs:.1f}x",
            f"{r['seconds']:.1f}",
            f"{r['peak_pss'] / 2**30:.2f} GB",
            f"{r['peak_pss'] / base['peak_pss']:.2f}x",
        )
    console.print(table)


if __name__ == "__main__":
    main()
