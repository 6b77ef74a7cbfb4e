"""Privacy on C-MAPSS FD001: model error against epsilon, and the round-time cost of TLS and SecAgg+.

    .venv/bin/python bench/bench_privacy.py [--data .../train_FD001.txt] [--rounds 5] [--quick]

Part 1, error against epsilon (in-process, like ``bench_cmapss.py``): the turbofan use case with
the CNN, 80 engines dealt to 4 clients, 20 held out; FedAvg rounds of one local epoch simulated
with the maths of a real session, without DP and with central DP at three budgets. The DP rounds
use Flower's own functions as ``DifferentialPrivacyServerSideFixedClipping`` does in a session:
each client's update is clipped to L2 norm C (``compute_clip_model_update``), the clipped models
are averaged with equal weights, Gaussian noise with sd = z * C / clients is added
(``compute_stdv``, ``add_gaussian_noise_inplace``). For each budget epsilon the noise multiplier z is
the smallest that Flower's ``RdpAccountant`` (q = 1, client-level, delta = 1e-5) keeps within epsilon
after all rounds. C is fixed (``--clip``); it sits at about the median update norm of the non-private
run (printed), which is a data-dependent choice a real deployment would have to make on public data.
Error: RMSE over all windows of the held-out engines (the use case's server metric ``RMSE``) and
at the failure cycle (``RMSE_last``), in cycles (RUL capped at 125).

Part 2, cost of TLS and of secure aggregation (real processes through ``LocalFederation``: server,
SuperLink, SuperNodes with warm ClientApps, MLflow): the same use case with 3 clients for a few
rounds, once plain, once with TLS on every channel (``kosmos-fl certs init`` certificates:
Socket.IO, Fleet proxy, SuperLink, SuperNodes) and once with ``secure_aggregation: true`` (SecAgg+,
4 messages per client and round). The sessions run one after the other; the ratio to plain, not the
absolute seconds, is the figure to keep. Round
time is the ServerApp's ``round_seconds`` (sending the global model to the evaluated new one), the
mean over all rounds but the first.

Runtime measured on this project's 2-core machine while it was shared with other jobs (load
average 25-45): part 1 (5 rounds, 4 settings) 11 minutes; part 2 stalled there (the SuperLink kept
refusing the overloaded ServerApp processes' task tokens) and has not been measured yet. An idle
machine should need a fraction of that (not measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from kosmos_fl.fl.session import read_progress
from kosmos_fl.localfed import LocalFederation, child_env
from kosmos_fl.ml.train import get_weights, seed_everything, set_weights, train_epochs
from kosmos_fl.security import certs
from kosmos_fl.usecases import ArrayDataset
from kosmos_fl.usecases.turbofan import TurbofanUseCase

REPO = Path(__file__).resolve().parents[1]
FD001 = REPO.parent / "shared" / "datasets" / "cmapss" / "train_FD001.txt"
OUT_DIR = REPO / "bench" / "out"
DELTA = 1e-5
console = Console(width=150)


# -- part 1: error against epsilon -------------------------------------------------------------
def accountant(clients: int) -> Any:
    from flwr.serverapp import PrivacyConfig, RdpAccountant
    from flwr.supercore.privacy_accounting import NeighboringRelation, SamplingMethod

    return RdpAccountant(
        PrivacyConfig(
            target_delta=DELTA,
            population_size=clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )


def epsilon_after(noise: float, rounds: int, clients: int) -> float:
    """Epsilon after ``rounds`` rounds at ``noise``, from Flower's accountant as a session uses it."""
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

    acc = accountant(clients)
    acc.compose(GaussianPrivacyEvent(noise, clients, clients), rounds)
    return float(acc.get_privacy_spent().epsilon)


def noise_for(budget: float, rounds: int, clients: int) -> float:
    """Smallest noise multiplier (to 0.1 %) whose epsilon after ``rounds`` stays within ``budget``."""
    lo, hi = 0.05, 1000.0
    while hi / lo > 1.001:
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if epsilon_after(mid, rounds, clients) > budget else (lo, mid)
    return hi


def federated(
    uc: TurbofanUseCase,
    clients: list[ArrayDataset],
    val: dict[str, ArrayDataset],
    rounds: int,
    noise: float | None,
    clip: float,
    seed: int = 0,
) -> dict[str, Any]:
    """FedAvg rounds (one local epoch, fresh Adam, seeds as a session) with optional central DP."""
    from flwr.supercore.differential_privacy import (
        add_gaussian_noise_inplace,
        compute_clip_model_update,
        compute_stdv,
    )

    seed_everything(seed)
    model = uc.build_model()
    global_w = get_weights(model)
    norms: list[float] = []
    t0 = time.monotonic()
    for rnd in range(1, rounds + 1):
        updates, sizes = [], []
        for cid, data in enumerate(clients):
            set_weights(model, global_w)
            s = seed + 1000 * cid + rnd
            seed_everything(s)
            train_epochs(model, data.x, data.y, epochs=1, lr=1e-3, batch_size=256, seed=s)
            new = get_weights(model)
            norms.append(
                float(np.sqrt(sum(float(np.sum((n - g) ** 2)) for n, g in zip(new, global_w, strict=True))))
            )
            updates.append(new)
            sizes.append(len(data))
        if noise is None:  # plain FedAvg: weights by sample count
            total = float(sum(sizes))
            weights = [n / total for n in sizes]
        else:  # as DifferentialPrivacyServerSideFixedClipping: clip, equal weights, noise
            for u in updates:
                compute_clip_model_update(u, global_w, clip)
            weights = [1.0 / len(updates)] * len(updates)
        agg = [
            sum(u[i] * w for u, w in zip(updates, weights, strict=True)).astype(global_w[i].dtype)
            for i in range(len(global_w))
        ]
        if noise is not None:
            add_gaussian_noise_inplace(agg, compute_stdv(noise, clip, len(clients)))
        global_w = agg
    set_weights(model, global_w)
    metrics = uc.evaluate(model, val)
    return {
        "rmse": metrics["RMSE"],
        "rmse_last": metrics["RMSE_last"],
        "median_update_norm": float(np.median(norms)),
        "seconds": time.monotonic() - t0,
    }


def error_vs_epsilon(
    data: Path, rounds: int, budgets: list[float], clip: float, clients: int
) -> list[dict[str, Any]]:
    uc = TurbofanUseCase({"model": "cnn"})
    client_units, held_out = uc.federation_split(data, clients)
    datasets = [uc.client_dataset(data, u) for u in client_units]
    val = uc.eval_datasets(data, held_out)
    console.print(
        f"part 1: CNN, {clients} clients ({sum(len(d) for d in datasets)} windows), {len(held_out)} held-out "
        f"engines, {rounds} rounds, clipping norm {clip}"
    )
    rows = []
    for budget in [None, *budgets]:
        noise = None if budget is None else noise_for(budget, rounds, clients)
        res = federated(uc, datasets, val, rounds, noise, clip)
        eps = None if noise is None else epsilon_after(noise, rounds, clients)
        row = {"budget": budget, "noise_multiplier": noise, "epsilon": eps, **res}
        console.print(f"  {row}")
        rows.append(row)
    return rows


# -- part 2: round time of secure aggregation ---------------------------------------------------
def session_rounds(data: Path, rounds: int, clients: int, secure: bool, tls: bool = False) -> dict[str, Any]:
    """One real session; its per-round timings from progress.jsonl."""
    uc = TurbofanUseCase({"model": "cnn"})
    client_units, held_out = uc.federation_split(data, clients)
    with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
        fed = LocalFederation(Path(tmp), child_env())
        server_tls: dict[str, Any] = {}
        client_tls: dict[str, Any] = {}
        if tls:
            paths = certs.init(Path(tmp) / "certs")
            fed.ca_file = paths.ca_cert
            server_tls = {
                "tls": {
                    "certfile": str(paths.server_cert),
                    "keyfile": str(paths.server_key),
                    "ca_certfile": str(paths.ca_cert),
                },
                "client_auth": "off",
            }
            client_tls = {"tls_ca_certfile": str(paths.ca_cert)}
        try:
            fed.start_server(
                timeout=600.0,  # generous: the machine may be shared
                num_clients=clients,
                n_federated_train_epoch=rounds,
                data_path=str(data),
                test_units=held_out[:5],
                mlflow_experiment_name="bench-privacy",
                usecase={"name": "TurbofanUseCase", "broadcast_params": {"model": "cnn"}},
                training={"local_epochs": 1, "learning_rate": 0.001, "batch_size": 256},
                **({"secure_aggregation": True} if secure else {}),
                **server_tls,
            )
            for i, units in enumerate(client_units):
                fed.start_client(
                    f"plant-{i}",
                    data_path=str(data),
                    units=units,
                    usecase={"name": "TurbofanUseCase"},
                    torch_threads=1,
                    **client_tls,
                )
            done = fed.wait_sessions(1, timeout=1800)[0]
            if done["status"] != "completed":
                raise SystemExit(
                    f"error: the {'secure' if secure else 'plain'} session failed: {done['reason']}"
                )
            progress = [r for r in read_progress(Path(done["progress"])) if r["round"] > 0]
        finally:
            fed.stop()
    later = progress[1:] or progress
    return {
        "round_seconds": float(np.mean([r["round_seconds"] for r in later])),
        "train_phase_seconds": float(np.mean([r["train_phase_seconds"] for r in later])),
        "client_compute_seconds": float(np.mean([r["client_compute_seconds_max"] for r in later])),
        "rmse": progress[-1]["metrics"]["RMSE"],
        "rounds": len(progress),
    }


def report(dp_rows: list[dict[str, Any]], timing: dict[str, dict[str, Any]], rounds: int) -> None:
    if dp_rows:
        dp_table(dp_rows, rounds)
    if timing:
        timing_table(timing)


def dp_table(dp_rows: list[dict[str, Any]], rounds: int) -> None:
    table = Table(
        title=f"C-MAPSS FD001, CNN, 4 clients, {rounds} FedAvg rounds: error against epsilon "
        f"(delta = {DELTA:g})"
    )
    for col in ("setting", "noise multiplier", "epsilon", "RMSE all windows", "RMSE at failure", "vs no DP"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    base = dp_rows[0]["rmse"]
    for r in dp_rows:
        table.add_row(
            "no DP" if r["budget"] is None else f"DP, budget epsilon <= {r['budget']:g}",
            "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3f}",
            "inf" if r["epsilon"] is None else f"{r['epsilon']:.2f}",
            f"{r['rmse']:.2f}",
            f"{r['rmse_last']:.2f}",
            f"{r['rmse'] / base:.2f}x",
        )
    console.print(table)


def timing_table(timing: dict[str, dict[str, Any]]) -> None:
    t = Table(title="Round time, real processes (3 clients, CNN on FD001), mean of rounds 2..n")
    for col in ("setting", "round s", "train phase s", "client compute s", "vs plain"):
        t.add_column(col, justify="left" if col == "setting" else "right")
    plain = timing["plain"]["round_seconds"]
    for name, r in timing.items():
        t.add_row(
            name,
            f"{r['round_seconds']:.1f}",
            f"{r['train_phase_seconds']:.1f}",
            f"{r['client_compute_seconds']:.1f}",
            f"{r['round_seconds'] / plain:.2f}x",
        )
    console.print(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=FD001, help="C-MAPSS train_FD001.txt")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of part 1")
    parser.add_argument("--budgets", default="500,50,5", help="three epsilon budgets for part 1")
    parser.add_argument("--clip", type=float, default=1.0, help="DP clipping norm C")
    parser.add_argument("--session-rounds", type=int, default=3, help="rounds of each real session (part 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds in part 1, 2 in part 2")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of part 1")
    parser.add_argument("--only", choices=("dp", "secagg"), default=None, help="run one part only")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"error: {args.data} is missing; pass --data /path/to/cmapss/train_FD001.txt")
    if args.quick:
        args.rounds, args.session_rounds = 2, 2
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    budgets = [float(b) for b in args.budgets.split(",")]
    dp_rows = [] if args.only == "secagg" else error_vs_epsilon(args.data, args.rounds, budgets, args.clip, 4)
    timing: dict[str, dict[str, Any]] = {}
    if args.only != "dp":
        console.print(f"part 2: plain, TLS and SecAgg+ sessions, 3 clients, {args.session_rounds} rounds")
        for name, secure, tls in (("plain", False, False), ("TLS", False, True), ("SecAgg+", True, False)):
            timing[name] = session_rounds(args.data, args.session_rounds, 3, secure, tls)
            console.print(f"  {name}: {timing[name]}")
    report(dp_rows, timing, args.rounds)
    console.print(f"total {time.monotonic() - t0:.0f} s")
    out = OUT_DIR / f"privacy{'_quick' if args.quick else ''}{'_' + args.only if args.only else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dp": dp_rows, "timing": timing, "args": vars(args)}, indent=2, default=str))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
