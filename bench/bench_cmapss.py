"""Quality of the turbofan use case on the real NASA C-MAPSS FD001 data: centralised vs federated.

    .venv/bin/python bench/bench_cmapss.py [--models cnn,lstm] [--clients 4] [--seeds 0,1] [--quick]

Setting (the use case's own ``federation_split`` with its default seed): 20 of the 100 engines of
``../shared/datasets/cmapss/train_FD001.txt`` are held out for validation; the other 80 train
(a) one centralised model and (b) a federation of 4 clients with 20 engines each. Federated rounds
are simulated in-process with the maths of a real session: every client starts a round from the
global weights, trains ``local_epochs`` with a fresh Adam (as ``kosmos_fl.fl.client_app`` does),
and the server averages the weights weighted by sample count (FedAvg) through
``kosmos_fl.ml.train.get_weights`` / ``set_weights``. Both get the same budget: after ``b``
centralised epochs and after ``b`` federated rounds of one local epoch every training window has
been seen ``b`` times; both are scored at the same budgets (checkpoints of one run).

Validation mimics NASA's test set: each held-out engine is cut at 10 seeded random points
(remaining life 5..150 cycles, at least 31 cycles observed) and the window ending at the cut is
scored against the capped true RUL: RMSE and the PHM08 score (summed over the 20 engines, mean
over the 10 cuts). The use case's own server metrics are shown too: RMSE over all windows (mean
over engines) and RMSE at the failure cycle. For the first model, a third setting shows a
federation without agreed normalisation constants: each client z-scores with its own engines'
statistics (and the server with its held-out engines').

Published FD001 test-set RMSE for orientation: CNN 18.45, deep LSTM 16.14, good recent models
11.4-12.5. The official test split is not available here, so the numbers are indicative only.
Runtime on 2 cores: about 12 minutes (``--models cnn``: 4, ``--quick``: 1); results are also
written to ``bench/out/cmapss_seq<window>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from kosmos_fl.data.cmapss import read_cmapss
from kosmos_fl.ml.metrics import phm08_score, rmse
from kosmos_fl.ml.models import count_parameters
from kosmos_fl.ml.train import get_weights, predict, seed_everything, set_weights, train_epochs
from kosmos_fl.usecases import ArrayDataset
from kosmos_fl.usecases.turbofan import TurbofanUseCase

REPO = Path(__file__).resolve().parents[1]
FD001 = REPO.parent / "shared" / "datasets" / "cmapss" / "train_FD001.txt"
OUT_DIR = REPO / "bench" / "out"
console = Console(width=150)


@dataclass(frozen=True)
class Recipe:
    """Training settings of one model (both settings use the same). ``checkpoints``: budgets (in
    epochs = federated rounds x local epochs) at which both settings are scored in the same run."""

    epochs: int
    checkpoints: tuple[int, ...]
    local_epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 256


#: Budgets at which both centralised models have converged (validation error flat or rising) and
#: the federated ones have caught up: the CNN needs ~40 rounds, the LSTM ~20 (but costs ~6x more
#: CPU per epoch).
RECIPES = {
    "cnn": Recipe(epochs=40, checkpoints=(10, 20, 40)),
    "lstm": Recipe(epochs=20, checkpoints=(5, 10, 20)),
}

Scores = dict[int, dict[str, float]]


def cut_points(groups: dict[str, ArrayDataset], cuts: int, seed: int) -> dict[str, np.ndarray]:
    """Per engine, ``cuts`` seeded window indices whose true remaining life is 5..150 cycles with
    at least 31 cycles observed (NASA's test set is cut like this)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, g in groups.items():
        n = len(g)
        hi = max(5, min(150, n - 31))
        out[name] = n - 1 - rng.integers(5, hi + 1, size=cuts)
    return out


@dataclass(frozen=True)
class Validation:
    """The held-out engines, their cut points and the use case that prepared them."""

    uc: TurbofanUseCase
    groups: dict[str, ArrayDataset]
    cuts: dict[str, np.ndarray]

    def score(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation RMSE and PHM08 at the cut points, plus the use case's server metrics."""
        names = list(self.groups)
        true = np.stack([self.groups[k].y[self.cuts[k]] for k in names])  # (engines, cuts)
        pred = np.stack([predict(model, self.groups[k].x[self.cuts[k]]) for k in names])
        phm = np.mean([phm08_score(true[:, j], pred[:, j]) for j in range(true.shape[1])])
        server = self.uc.evaluate(model, self.groups)
        return {
            "rmse": rmse(true, pred),
            "phm08": float(phm),
            "rmse_all_windows": server["RMSE"],
            "rmse_at_failure": server["RMSE_last"],
        }


def centralised(
    uc: TurbofanUseCase, data: ArrayDataset, recipe: Recipe, seed: int, val: Validation
) -> Scores:
    """One model on the pooled windows, scored at every checkpoint (training seconds included)."""
    seed_everything(seed)
    model = uc.build_model()
    out: Scores = {}
    secs = 0.0
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.monotonic()
        train_epochs(
            model, data.x, data.y, epochs=1, lr=recipe.lr, batch_size=recipe.batch_size, seed=seed + epoch
        )
        secs += time.monotonic() - t0
        if epoch in recipe.checkpoints:
            out[epoch] = {**val.score(model), "seconds": secs}
    return out


def federated(
    uc: TurbofanUseCase, clients: list[ArrayDataset], recipe: Recipe, seed: int, val: Validation
) -> Scores:
    """FedAvg over in-process clients with the maths and seeds of a real session (each client
    trains from the global weights with a fresh optimiser, seed + 1000 * client + round; the
    server averages weights by sample count), scored at every checkpoint."""
    seed_everything(seed)
    model = uc.build_model()
    global_w = get_weights(model)
    out: Scores = {}
    secs = 0.0
    for rnd in range(1, recipe.epochs // recipe.local_epochs + 1):
        t0 = time.monotonic()
        updates, sizes = [], []
        for cid, data in enumerate(clients):
            set_weights(model, global_w)
            s = seed + 1000 * cid + rnd
            seed_everything(s)
            train_epochs(
                model,
                data.x,
                data.y,
                epochs=recipe.local_epochs,
                lr=recipe.lr,
                batch_size=recipe.batch_size,
                seed=s,
            )
            updates.append(get_weights(model))
            sizes.append(len(data))
        total = float(sum(sizes))
        global_w = [
            sum(u[i] * (n / total) for u, n in zip(updates, sizes, strict=True)).astype(updates[0][i].dtype)
            for i in range(len(global_w))
        ]
        secs += time.monotonic() - t0
        if rnd * recipe.local_epochs in recipe.checkpoints:
            set_weights(model, global_w)
            out[rnd * recipe.local_epochs] = {**val.score(model), "seconds": secs}
    return out


def own_statistics(path: Path, units: list[str], sensors: tuple[str, ...]) -> dict[str, list[float]]:
    """z-score constants fitted on ``units`` only (what a client could do without sharing data)."""
    df = read_cmapss(path)
    df = df[df["unit"].isin([int(u) for u in units])]
    return {c: [float(df[c].mean()), float(df[c].std(ddof=0)) or 1.0] for c in sensors}


def own_normalisation_setup(
    uc: TurbofanUseCase, client_units: list[list[str]], held_out: list[str], cuts: dict[str, np.ndarray]
) -> tuple[list[ArrayDataset], Validation]:
    """Clients that z-score with their own engines' statistics, and a server that does the same
    with its held-out engines: what a federation without agreed constants would do."""

    def own(units: list[str]) -> TurbofanUseCase:
        norm = own_statistics(FD001, units, uc.params.sensors)
        return TurbofanUseCase({**uc.params.model_dump(), "normalisation": norm})

    clients = [own(u).client_dataset(FD001, u) for u in client_units]
    server = own(held_out)
    return clients, Validation(server, server.eval_datasets(FD001, held_out), cuts)


def bench_model(
    name: str, recipe: Recipe, seeds: list[int], num_clients: int, ablation: bool, params: dict[str, Any]
) -> dict[str, Any]:
    """Centralised and federated runs of one model for every seed, scored at the checkpoints."""
    uc = TurbofanUseCase({"model": name, **params})
    client_units, held_out = uc.federation_split(FD001, num_clients)
    clients = [uc.client_dataset(FD001, units) for units in client_units]
    pooled = ArrayDataset(np.concatenate([c.x for c in clients]), np.concatenate([c.y for c in clients]))
    groups = uc.eval_datasets(FD001, held_out)
    val = Validation(uc, groups, cut_points(groups, 10, 0))
    console.print(
        f"[bold]{name}[/]: {count_parameters(uc.build_model())} parameters, {len(pooled)} training windows "
        f"on {sum(map(len, client_units))} engines, {len(held_out)} held out; {recipe}, seeds {seeds}"
    )
    own = own_normalisation_setup(uc, client_units, held_out, val.cuts) if ablation else None
    runs: dict[str, list[Scores]] = {"centralised": [], "federated": []}
    if own is not None:
        runs["federated, own z-score"] = []
    for seed in seeds:
        runs["centralised"].append(centralised(uc, pooled, recipe, seed, val))
        runs["federated"].append(federated(uc, clients, recipe, seed, val))
        if own is not None:
            runs["federated, own z-score"].append(federated(uc, own[0], recipe, seed, own[1]))
        for setting, rows in runs.items():
            last = rows[-1][recipe.epochs]
            console.print(f"  seed {seed} {setting}: " + ", ".join(f"{k} {v:.2f}" for k, v in last.items()))
    return {
        "recipe": recipe.__dict__,
        "parameters": count_parameters(uc.build_model()),
        "settings": {
            setting: {
                str(b): {
                    "mean": {k: float(np.mean([r[b][k] for r in rows])) for k in rows[0][b]},
                    "runs": [r[b] for r in rows],
                }
                for b in recipe.checkpoints
            }
            for setting, rows in runs.items()
        },
    }


def run(
    models: list[str], num_clients: int, seeds: list[int], quick: bool, params: dict[str, Any]
) -> dict[str, Any]:
    if not FD001.is_file():
        sys.exit(f"error: {FD001} is missing; the benchmark needs ../shared/datasets/cmapss/train_FD001.txt")
    torch.set_num_threads(2)
    results: dict[str, Any] = {"clients": num_clients, "seeds": seeds, "params": params, "models": {}}
    for name in models:
        recipe = RECIPES[name]
        if quick:
            recipe = Recipe(2, (1, 2), recipe.local_epochs, recipe.lr, recipe.batch_size)
        model_seeds = seeds if name == "cnn" else seeds[:1]  # the LSTM costs ~6x more per epoch
        results["models"][name] = bench_model(
            name, recipe, model_seeds, num_clients, name == models[0], params
        )
    return results


def report(results: dict[str, Any]) -> None:
    clients = results["clients"]
    seq = results["params"].get("sequence_length", TurbofanUseCase().params.sequence_length)
    table = Table(
        title=f"C-MAPSS FD001: 80 training engines (federated: {clients} clients), 20 held out; "
        f"windows of {seq} cycles"
    )
    for col in ("model", "setting", "epochs / rounds", "seeds", "val RMSE", "PHM08 (20 eng.)",
                "RMSE all windows", "RMSE at failure", "fed./cent. RMSE", "train s"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "setting") else "right")
    for name, row in results["models"].items():
        for setting, budgets in row["settings"].items():
            for budget, res in budgets.items():
                r = res["mean"]
                cent = row["settings"]["centralised"][budget]["mean"]["rmse"]
                table.add_row(
                    name,
                    setting,
                    budget,
                    str(len(res["runs"])),
                    f"{r['rmse']:.2f}",
                    f"{r['phm08']:.0f}",
                    f"{r['rmse_all_windows']:.2f}",
                    f"{r['rmse_at_failure']:.2f}",
                    "" if setting == "centralised" else f"{r['rmse'] / cent:.3f}",
                    f"{r['seconds']:.0f}",
                )
            table.add_section()
    console.print(table)
    console.print(
        "val RMSE / PHM08: last window of each held-out engine cut at 10 random points (mean over seeds); "
        "RMSE all windows / at failure: the use case's server metrics RMSE and RMSE_last; "
        "train s: training time up to that budget (2 threads)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn,lstm", help="comma-separated: cnn, lstm")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seeds", default="0", help="CNN training seeds, e.g. 0,1 (the LSTM uses the first)")
    parser.add_argument(
        "--sequence-length", type=int, default=None, help="window length (default: the use case's)"
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs / rounds (smoke run)")
    args = parser.parse_args()
    params = {"sequence_length": args.sequence_length} if args.sequence_length else {}
    seeds = [int(v) for v in args.seeds.split(",")]
    results = run(args.models.split(","), args.clients, seeds, args.quick, params)
    report(results)
    seq = params.get("sequence_length", TurbofanUseCase().params.sequence_length)
    out = OUT_DIR / f"cmapss_seq{seq}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
