"""Orchestration overhead and memory of a real 3-client session on this machine.

    .venv/bin/python bench/bench_federation.py [--rounds 5] [--model mlp|cnn|ffnn] [--test-bearings 3]

Runs the same session three times in one go, on generated bearings, with real processes on
loopback: (a) baseline, Flower's own behaviour: a fresh ClientApp process per message and the
SuperNode's 3 s idle polling; (b) kosmos-fl's warm SuperExec, still with 3 s polling
(``fleet_long_poll: 0``); (c) the product's defaults: warm SuperExec and the server's long poll,
which answers the pull a SuperNode makes right after its reply with the next round's message as
soon as the server sends it. Per round it prints the train phase (global model sent until the last
reply), the slowest client's compute time (from the client's own clock) and their difference, the
orchestration overhead; and the peak total memory (PSS, so shared pages count once) of every
process of the federation (server, SuperLink, ServerApp, clients, SuperNodes, ClientApp processes).
Target (issue #3): overhead <= 3 s per round, < 4 GB in total.

The defaults are the product's: the ``mlp`` model and the 11 test bearings of ``config.yaml``.
Without the long poll the server evaluates between rounds while every SuperNode sleeps out its idle
3 s, so a longer evaluation hides part of that sleep from the train phase: the summary therefore
also prints the overhead of the whole round including the server's evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from kosmos_fl.config import ServerConfig
from kosmos_fl.data.bearing.generate import generate_dataset
from kosmos_fl.fl.session import read_progress
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.usecases.bearing import DEFAULT_TEST_BEARINGS

console = Console()
#: (label, warm ClientApp template, fleet_long_poll seconds): Flower's own behaviour first, the
#: product's defaults last.
VARIANTS = (
    ("baseline: Flower cold start, 3 s polling", False, 0.0),
    ("warm SuperExec, 3 s polling", True, 0.0),
    ("warm SuperExec + long poll (defaults)", True, ServerConfig.model_fields["fleet_long_poll"].default),
)
CLIENT_BEARINGS = [["Bearing1_1", "Bearing1_2"], ["Bearing2_1", "Bearing2_2"], ["Bearing3_1", "Bearing3_2"]]


class MemorySampler(threading.Thread):
    """Peak summed PSS (proportional set size) of the federation's process trees, every 0.2 s."""

    def __init__(self, fed: LocalFederation) -> None:
        super().__init__(daemon=True)
        self.fed = fed
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0
            seen: set[int] = set()
            for pid in self.fed.pids():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for p in procs:
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    with contextlib.suppress(psutil.Error):
                        # PSS: shared pages (torch libraries, forked children) counted once overall
                        total += p.memory_full_info().pss
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()


def run_session(
    root: Path, data: Path, rounds: int, model: str, warm: bool, long_poll: float, test_bearings: list[str]
) -> dict[str, Any]:
    fed = LocalFederation(root)
    sampler = MemorySampler(fed)
    try:
        fed.start_server(
            num_clients=3,
            n_federated_train_epoch=rounds,
            data_path=str(data),
            test_bearings=test_bearings,
            usecase={"name": "BearingUseCase", "broadcast_params": {"model": model}},
            fleet_long_poll=long_poll,
        )
        sampler.start()
        t0 = time.monotonic()
        for i, bearings in enumerate(CLIENT_BEARINGS):
            fed.start_client(
                f"client-{i}", data_path=str(data), bearings=bearings, warm_clientapp=warm, torch_threads=1
            )
        done = fed.wait_sessions(1, timeout=900)[0]
        wall = time.monotonic() - t0
    finally:
        sampler.stop()
        fed.stop()
    if done["status"] != "completed":
        raise SystemExit(f"session failed: {done.get('reason')}")
    rows = [r for r in read_progress(Path(done["progress"])) if r["round"] > 0]
    return {"rows": rows, "peak_rss": sampler.peak, "wall": wall}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", choices=["mlp", "cnn", "ffnn"], default="mlp")
    parser.add_argument(
        "--test-bearings", type=int, default=len(DEFAULT_TEST_BEARINGS), help="first N default test bearings"
    )
    args = parser.parse_args()
    test_bearings = list(DEFAULT_TEST_BEARINGS[: args.test_bearings])
    with tempfile.TemporaryDirectory(prefix="kosmos-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        generate_dataset(data, bearings=[b for bs in CLIENT_BEARINGS for b in bs] + test_bearings, seed=0)
        results = {}
        for i, (label, warm, long_poll) in enumerate(VARIANTS):
            console.print(f"running {args.rounds} rounds: {label} ...")
            results[label] = run_session(
                root / f"v{i}", data, args.rounds, args.model, warm, long_poll, test_bearings
            )

    table = Table(
        title=f"Round overhead, 3 clients, {args.model}, {len(test_bearings)} test bearings, "
        f"{args.rounds} rounds (seconds)"
    )
    cols = ("variant", "round", "train phase", "slowest client compute", "overhead", "of it: pickup",
            "process start", "reply return", "server eval", "round incl. eval")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    summary = {}
    for label, res in results.items():
        overheads, with_eval = [], []
        for r in res["rows"]:
            over = r["train_phase_seconds"] - r["client_compute_seconds_max"]
            overheads.append(over)
            with_eval.append(r["round_seconds"] - r["client_compute_seconds_max"])
            table.add_row(
                label,
                str(r["round"]),
                f"{r['train_phase_seconds']:.2f}",
                f"{r['client_compute_seconds_max']:.2f}",
                f"{over:.2f}",
                _fmt(r.get("pickup_seconds_max")),
                _fmt(r.get("process_start_seconds_max")),
                _fmt(r.get("return_seconds")),
                f"{r['eval_seconds']:.2f}",
                f"{r['round_seconds']:.2f}",
            )
        summary[label] = (
            statistics.mean(overheads),
            max(overheads),
            statistics.mean(with_eval),
            res["peak_rss"],
            res["wall"],
        )
    console.print(table)
    out = Table(title="Summary")
    cols = ("variant", "mean overhead s", "max overhead s", "mean round incl. eval - compute s",
            "peak total PSS GB", "session wall s")  # fmt: skip
    for col in cols:
        out.add_column(col, justify="right")
    for label, (mean, worst, incl, rss, wall) in summary.items():
        out.add_row(label, f"{mean:.2f}", f"{worst:.2f}", f"{incl:.2f}", f"{rss / 1e9:.2f}", f"{wall:.1f}")
    console.print(out)
    base_mean, warm_mean, product_mean = (v[0] for v in summary.values())
    console.print(f"overhead ratio to baseline: warm SuperExec {warm_mean / base_mean:.2f}, "
                  f"+ long poll (product) {product_mean / base_mean:.2f} "
                  f"(target: <= 3 s per round; measured {product_mean:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
