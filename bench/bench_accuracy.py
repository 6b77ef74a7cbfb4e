"""RUL accuracy of the bearing use case on all eight real FEMTO run-to-failure bearings, against
trivial baselines scored on the same folds (issue #15).

    nice -n 19 .venv/bin/python bench/bench_accuracy.py                  # everything, 5 seeds
    nice -n 19 .venv/bin/python bench/bench_accuracy.py --seeds 0        # quick look, one seed
    nice -n 19 .venv/bin/python bench/bench_accuracy.py --reference-seeds 0 1 2 3 4   # 2021 CNN too

Protocol (fixed before any result of this script was seen; see SELECTION_RULE):

* Folds: leave one bearing out over the eight bearings of ``../shared/datasets/femto``: the six
  learning bearings and the full recordings of Bearing1_3 and Bearing1_4. Bearing1_4's life ends
  where the PHM 2012 organisers put its failure (339 s after snapshot 1139, the actual RUL they
  published); its recording goes on for 0.7 h at the accelerometer's limit (48 g), which is a
  failed bearing, not remaining life. Bearing1_3's published RUL ends at its recording's end.
* Training: a federation grouped as real sessions group clients, by operating condition (client
  k holds the remaining bearings of condition k), simulated in-process with the maths and seeds of
  a real session (every client starts a round from the global weights with a fresh Adam, seed +
  1000 * client + round; FedAvg by sample count). Only the held-out bearing is scored.
* Metrics per fold: whole-life RMSE and MAE in hours, RMSE / life, Pearson; the IEEE PHM 2012
  score A at 10 cut-offs spread evenly over 60-95 % of the bearing's life (where the challenge's
  cut-offs lay) and at 10 over 10-60 % (reported without a target); the share of over-estimates
  at the 60-95 % cut-offs; the 80 % interval's coverage and width, and how often the conservative
  estimate (the interval's low end) is at or below the true RUL.
* Baselines, from the training folds only: the constant with the lowest whole-life RMSE, the
  constant with the best PHM 2012 score at the 60-95 % cut-offs, mean and median training life
  minus elapsed time, and the Kaplan-Meier mean residual life E[L - t | L > t].
* The 2021 design: the 2021 CNN on spectra, 5 rounds x 3 local epochs, batch 32 (``--reference-seeds``;
  it costs minutes per fold).
* Seeds: every learnt row is the mean over seeds of the mean over the eight folds, +- the sample
  standard deviation over seeds. Trained models' raw outputs are kept in ``bench/out/accuracy_heads``
  so a rerun retrains nothing.

Writes ``docs/RESULTS.md`` (bearing part) and ``docs/img/rul_lobo.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import shutil
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from kosmos_fl.data.bearing.processed import ProcessedBearing, load_bearings
from kosmos_fl.ml.metrics import (
    cutoff_indices,
    interval_coverage,
    mae,
    overestimate_share,
    pearson,
    phm2012_at_cutoffs,
    rmse,
)
from kosmos_fl.ml.survival import fit_constant, kaplan_meier, mean_residual_life
from kosmos_fl.ml.train import get_weights, predict_heads, seed_everything, set_weights, train_epochs
from kosmos_fl.usecases.bearing import BearingUseCase

REPO = Path(__file__).resolve().parents[1]
#: ``../shared/datasets/femto`` beside the repository (a git worktree may sit one level deeper).
SHARED = next(
    (
        p / "shared" / "datasets" / "femto"
        for p in REPO.parents
        if (p / "shared" / "datasets" / "femto").is_dir()
    ),
    REPO.parent / "shared" / "datasets" / "femto",
)
OUT = REPO / "bench" / "out"
RAW = OUT / "femto_phm"
CACHE = OUT / "accuracy_cache"
HEADS = OUT / "accuracy_heads"
RESULTS_MD = REPO / "docs" / "RESULTS.md"
IMG = REPO / "docs" / "img"
H = 3600.0
#: Bearings by operating condition: a real session's clients.
CONDITIONS = [
    ["Bearing1_1", "Bearing1_2", "Bearing1_3", "Bearing1_4"],
    ["Bearing2_1", "Bearing2_2"],
    ["Bearing3_1", "Bearing3_2"],
]
FOLDS = [b for c in CONDITIONS for b in c]
#: Bearing1_4's failure in the PHM 2012 challenge: snapshot 1139 (1-based) plus 339 s.
FAILURE_1_4 = (1139, 339.0)
LATE, EARLY = (0.60, 0.95), (0.10, 0.60)
N_CUTOFFS = 10
console = Console(width=170)

SELECTION_RULE = (
    "Eligible: candidates whose mean whole-life RMSE is below every baseline's. Among them the "
    "highest mean PHM 2012 score at the 60-95 % cut-offs wins; candidates within one seed standard "
    "deviation of that score count as tied, and among them the lowest over-estimate share wins. "
    "If no candidate is eligible, the lowest RMSE wins. Only these eight validation folds are used; "
    "no other data is looked at."
)


@dataclass(frozen=True)
class Recipe:
    """Federated training settings (what config.yaml's ``training`` and rounds set)."""

    rounds: int = 13
    local_epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 128


@dataclass(frozen=True)
class Candidate:
    name: str
    params: dict[str, Any]
    recipe: Recipe = field(default_factory=Recipe)
    #: Seeds for a costly row (default: ``--seeds``); the table shows how many it got.
    seeds: tuple[int, ...] | None = None


#: Parameters that only post-process a trained model's outputs: no retraining when they change.
POST_KEYS = ("smooth_span", "smooth_down_span", "interval_scale")
RATIO = {"model": "ratio", "smooth_span": 0.0, "interval_scale": 1.0}
RATIO_RECIPE = Recipe(rounds=13, local_epochs=3, lr=1e-2, batch_size=256)
#: The previous default (issue #9's winner), scored under this protocol.
MLP_2025 = Candidate(
    "mlp (previous default)",
    {"model": "mlp", "batch_norm": False, "baseline": 0, "elapsed": False, "balance_bearings": True,
     "smooth_span": 1000.0, "smooth_down_span": 30.0, "interval_scale": 5.06},
    seeds=(0, 1),  # about 20x the ratio model's training time
)  # fmt: skip
CANDIDATES: list[Candidate] = [
    MLP_2025,
    *(
        Candidate(f"ratio, point q{q:g}", {**RATIO, "point_quantile": q}, RATIO_RECIPE)
        for q in (0.15, 0.2, 0.25, 0.3)
    ),
    Candidate("ratio q0.2, smoothed (300, down 10)",
              {**RATIO, "point_quantile": 0.2, "smooth_span": 300.0, "smooth_down_span": 10.0}, RATIO_RECIPE),
    Candidate("ratio q0.2, hidden 8", {**RATIO, "point_quantile": 0.2, "ratio_hidden": (8,)}, RATIO_RECIPE),
    # client drift: each client holds one operating condition, so long local training pulls apart
    *(
        Candidate(f"ratio q{q:g}, 40 rounds x 1 epoch", {**RATIO, "point_quantile": q},
                  Recipe(rounds=40, local_epochs=1, lr=1e-2, batch_size=256))
        for q in (0.15, 0.2)
    ),
    # every bearing the same weight in FedAvg too (rows_per_bearing)
    *(
        Candidate(f"ratio q{q:g}, 3000 rows per bearing",
                  {**RATIO, "point_quantile": q, "rows_per_bearing": 3000},
                  RATIO_RECIPE)
        for q in (0.15, 0.2, 0.25)
    ),
    *(
        Candidate(f"ratio q{q:g}, 3000 rows, smoothed ({sp}, down {dn})",
                  {**RATIO, "point_quantile": q, "rows_per_bearing": 3000, "smooth_span": float(sp),
                   "smooth_down_span": float(dn)}, RATIO_RECIPE)
        for q in (0.15, 0.2)
        for sp, dn in ((100, 10), (300, 10), (300, 30), (1000, 30))
    ),
    Candidate("ratio q0.1, 3000 rows per bearing", {**RATIO, "point_quantile": 0.1, "rows_per_bearing": 3000},
              RATIO_RECIPE),
    Candidate("ratio q0.15, lr 0.003", {**RATIO, "point_quantile": 0.15},
              Recipe(rounds=13, local_epochs=3, lr=3e-3, batch_size=256)),
]  # fmt: skip
DESIGN_2021 = Candidate(
    "2021 design (CNN on spectra)", {"model": "cnn"}, Recipe(rounds=5, local_epochs=3, batch_size=32)
)


# --------------------------------------------------------------------------- data


def unpack() -> Path:
    """Extract the eight shared archives once (a stamp of their sizes and mtimes decides)."""
    found = sorted(SHARED.glob("*_Bearing*.tar.xz"))
    if not found:
        sys.exit(f"error: no FEMTO archives in {SHARED}; this benchmark needs ../shared/datasets/femto")
    want = {a.name: [a.stat().st_size, a.stat().st_mtime_ns] for a in found}
    stamp = RAW / ".unpacked.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return RAW
    shutil.rmtree(RAW, ignore_errors=True)
    RAW.mkdir(parents=True)
    for archive in found:
        console.print(f"unpacking {archive.name} ...")
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(RAW, filter="data")
    stamp.write_text(json.dumps(want))
    return RAW


def truncate(b: ProcessedBearing, failure_s: float) -> ProcessedBearing:
    """``b`` up to ``failure_s`` seconds after its first snapshot, with RULs to that failure."""
    t = b.timestamps - b.timestamps[0]
    keep = t <= failure_s
    rul = failure_s - t[keep]
    return dataclasses.replace(
        b,
        timestamps=b.timestamps[keep],
        rul_seconds=rul,
        rul_fraction=rul / failure_s,
        features=b.features[keep],
        spectra=b.spectra[: int(keep.sum())],
    )


def load() -> dict[str, ProcessedBearing]:
    bearings = load_bearings(unpack(), FOLDS, cache_dir=CACHE, progress=True)
    b = bearings["Bearing1_4"]
    snap, rul = FAILURE_1_4
    bearings["Bearing1_4"] = truncate(b, float(b.timestamps[snap - 1] - b.timestamps[0]) + rul)
    return bearings


def life_h(b: ProcessedBearing) -> float:
    return float(b.rul_seconds[0] / H)


def elapsed_h(b: ProcessedBearing) -> np.ndarray:
    return (b.timestamps - b.timestamps[0]) / H


# --------------------------------------------------------------------------- training


def clients_without(held: str, bearings: dict[str, ProcessedBearing]) -> list[list[ProcessedBearing]]:
    """The fold's federation: one client per operating condition, without the held-out bearing."""
    groups = [[bearings[n] for n in c if n != held] for c in CONDITIONS]
    return [g for g in groups if g]


def federated(cand: Candidate, clients: list[list[ProcessedBearing]], seed: int) -> torch.nn.Module:
    """In-process federation with the maths of a real session (FedAvg by sample count)."""
    r = cand.recipe
    uc = BearingUseCase(cand.params)
    data = []
    for c in clients:
        ds = uc._dataset({b.name: b for b in c})
        data.append((np.asarray(ds.x, dtype=np.float32), np.asarray(ds.y, dtype=np.float32)))
    seed_everything(seed)
    model = uc.build_model()
    global_w = get_weights(model)
    for rnd in range(1, r.rounds + 1):
        updates, sizes = [], []
        for cid, (x, y) in enumerate(data):
            set_weights(model, global_w)
            s = seed + 1000 * cid + rnd
            seed_everything(s)
            train_epochs(model, x, y, epochs=r.local_epochs, lr=r.lr, batch_size=r.batch_size, seed=s)
            updates.append(get_weights(model))
            sizes.append(len(y))
        total = float(sum(sizes))
        global_w = [
            sum(u[i] * (n / total) for u, n in zip(updates, sizes, strict=True)).astype(w.dtype)
            for i, w in enumerate(global_w)
        ]
    set_weights(model, global_w)
    return model


def raw_heads(cand: Candidate, held: str, bearings: dict[str, ProcessedBearing], seed: int) -> np.ndarray:
    """The trained model's raw heads on the held-out bearing, kept in bench/out by what they
    depend on (parameters except post-processing, recipe, seed, fold)."""
    key = {
        "params": {k: v for k, v in sorted(cand.params.items()) if k not in POST_KEYS},
        "recipe": asdict(cand.recipe),
        "seed": seed,
        "held": held,
        "version": BearingUseCase.version,
        "life": life_h(bearings[held]),
    }
    blob = json.dumps(key, sort_keys=True, default=list).encode()
    path = HEADS / f"{hashlib.sha1(blob).hexdigest()[:20]}.npy"
    if path.is_file():
        return np.load(path)
    model = federated(cand, clients_without(held, bearings), seed)
    uc = BearingUseCase(cand.params)
    heads = predict_heads(model, uc._inputs(bearings[held]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, heads)
    return heads


# --------------------------------------------------------------------------- scoring


def score(b: ProcessedBearing, pred: np.ndarray) -> dict[str, float]:
    """Metrics of one held-out bearing; ``pred`` is (n,) or (n, 3) = point, low, high (hours)."""
    pred = pred.reshape(len(pred), -1)
    true, t, life = b.rul_seconds / H, elapsed_h(b), life_h(b)
    p = pred[:, 0]
    late = cutoff_indices(t, life, *LATE, N_CUTOFFS)
    early = cutoff_indices(t, life, *EARLY, N_CUTOFFS)
    out = {
        "rmse_h": rmse(true, p),
        "mae_h": mae(true, p),
        "rmse_norm": rmse(true / life, p / life),
        "pearson": pearson(true, p),
        "phm_late": float(np.mean(phm2012_at_cutoffs(true[late], p[late]))),
        "phm_early": float(np.mean(phm2012_at_cutoffs(true[early], p[early]))),
        "over_late": overestimate_share(true[late], p[late]),
    }
    if pred.shape[1] >= 3:
        out["coverage"], out["width_h"] = interval_coverage(true, pred[:, 1], pred[:, 2])
        out["low_ok"] = float(np.mean(pred[:, 1] <= true))
    return out


def baselines(held: str, bearings: dict[str, ProcessedBearing]) -> dict[str, np.ndarray]:
    """Each baseline's prediction for the held-out bearing, fitted on the other seven."""
    train = [b for n, b in bearings.items() if n != held]
    lives = np.array([life_h(b) for b in train])
    t = elapsed_h(bearings[held])
    grid = np.round(np.arange(0.01, 8.0, 0.01), 2)

    def train_rmse(c: float) -> float:
        return float(np.mean([rmse(b.rul_seconds / H, np.full(len(b.rul_seconds), c)) for b in train]))

    def train_phm(c: float) -> float:
        scores = []
        for b in train:
            idx = cutoff_indices(elapsed_h(b), life_h(b), *LATE, N_CUTOFFS)
            scores.append(np.mean(phm2012_at_cutoffs(b.rul_seconds[idx] / H, np.full(len(idx), c))))
        return float(np.mean(scores))

    times, surv = kaplan_meier(lives)
    return {
        "constant (best RMSE on training folds)": np.full_like(
            t, fit_constant(train_rmse, grid, maximise=False)
        ),
        "constant (best PHM 2012 on training folds)": np.full_like(
            t, fit_constant(train_phm, grid, maximise=True)
        ),
        "mean training life - elapsed": np.maximum(lives.mean() - t, 0.0),
        "median training life - elapsed": np.maximum(np.median(lives) - t, 0.0),
        "Kaplan-Meier E[L - t | L > t]": mean_residual_life(times, surv, t),
    }


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Fold means per seed, then mean and sample sd over seeds; per-fold means over seeds."""
    keys = sorted(set.intersection(*(set(v) for per in per_seed for v in per.values())))
    seed_means = [{k: float(np.mean([v[k] for v in per.values()])) for k in keys} for per in per_seed]
    mean = {k: float(np.mean([m[k] for m in seed_means])) for k in keys}
    sd = {k: float(np.std([m[k] for m in seed_means], ddof=1)) if len(seed_means) > 1 else 0.0 for k in keys}
    folds = {f: {k: float(np.mean([per[f][k] for per in per_seed])) for k in keys} for f in per_seed[0]}
    return {"mean": mean, "sd": sd, "folds": folds, "n_seeds": len(per_seed)}


def evaluate(cand: Candidate, bearings: dict[str, ProcessedBearing], seeds: list[int]) -> dict[str, Any]:
    uc = BearingUseCase(cand.params)
    per_seed, preds = [], {}
    t0 = time.monotonic()
    for seed in seeds:
        per = {}
        for held in track(
            FOLDS, description=f"{cand.name[:34]:34s} seed {seed}", console=console, transient=True
        ):
            pred = uc.finish(raw_heads(cand, held, bearings, seed), bearings[held])
            per[held] = score(bearings[held], pred)
            if seed == seeds[0]:
                preds[held] = pred
        per_seed.append(per)
    return {**summarise(per_seed), "preds": preds, "seconds": time.monotonic() - t0}


def select(results: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> str:
    """:data:`SELECTION_RULE`, applied to the candidates' validation results."""
    best_base_rmse = min(r["mean"]["rmse_h"] for r in base.values())
    eligible = [n for n, r in results.items() if r["mean"]["rmse_h"] < best_base_rmse]
    if not eligible:
        return min(results, key=lambda n: results[n]["mean"]["rmse_h"])
    top = max(eligible, key=lambda n: results[n]["mean"]["phm_late"])
    bar = results[top]["mean"]["phm_late"] - results[top]["sd"]["phm_late"]
    tied = [n for n in eligible if results[n]["mean"]["phm_late"] >= bar]
    return min(tied, key=lambda n: results[n]["mean"]["over_late"])


# --------------------------------------------------------------------------- report

COLS = [
    ("RMSE h", "rmse_h", "{:.3f}"),
    ("MAE h", "mae_h", "{:.3f}"),
    ("RMSE/life", "rmse_norm", "{:.3f}"),
    ("Pearson", "pearson", "{:.2f}"),
    ("PHM 60-95 %", "phm_late", "{:.3f}"),
    ("PHM 10-60 %", "phm_early", "{:.3f}"),
    ("over-est. 60-95 %", "over_late", "{:.0%}"),
    ("80 % cov.", "coverage", "{:.2f}"),
    ("width h", "width_h", "{:.2f}"),
    ("low <= true", "low_ok", "{:.2f}"),
]
SPREAD = {"rmse_h", "phm_late", "over_late"}


def cells(res: dict[str, Any]) -> list[str]:
    out = []
    for _, key, fmt in COLS:
        if key not in res["mean"]:
            out.append("-")
            continue
        cell = fmt.format(res["mean"][key])
        if key in SPREAD and res["n_seeds"] > 1:
            cell += " ± " + fmt.format(res["sd"][key]).rstrip("%") + ("%" if "%" in fmt else "")
        out.append(cell)
    return out


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    table = Table(title="Leave one bearing out, 8 folds (mean over folds; ± sd over seeds)")
    table.add_column("row")
    table.add_column("seeds", justify="right")
    for head, _, _ in COLS:
        table.add_column(head, justify="right")
    for name, res in rows.items():
        table.add_row(name, str(res["n_seeds"]) if res["n_seeds"] > 1 else "-", *cells(res))
    console.print(table)


def plot(chosen: str, res: dict[str, Any], bearings: dict[str, ProcessedBearing]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), constrained_layout=True)
    for ax, held in zip(axes.flat, FOLDS, strict=True):
        b = bearings[held]
        t, pred = elapsed_h(b), res["preds"][held]
        ax.plot(t, b.rul_seconds / H, "k-", lw=1.5, label="true RUL")
        if pred.shape[1] >= 3:
            ax.fill_between(t, pred[:, 1], pred[:, 2], color="tab:blue", alpha=0.2, label="80 % interval")
        ax.plot(t, pred[:, 0], "tab:blue", lw=1, label=chosen)
        lo, hi = (f * life_h(b) for f in LATE)
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.08, label="PHM cut-offs 60-95 %")
        ax.set_title(f"{held} (life {life_h(b):.2f} h)")
        ax.set_xlabel("elapsed (h)")
        ax.set_ylabel("RUL (h)")
        ax.set_ylim(0, max(life_h(b) * 1.3, 0.5))
    axes.flat[0].legend(loc="upper right", fontsize=8)
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / "rul_lobo.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def verdict(chosen: str, rows: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> list[str]:
    """Plain statements of where the chosen model wins and loses against each baseline."""
    m = rows[chosen]["mean"]
    lines = []
    for name, r in base.items():
        b = r["mean"]
        wins = []
        wins.append(
            ("whole-life RMSE", m["rmse_h"] < b["rmse_h"], f"{m['rmse_h']:.3f} vs {b['rmse_h']:.3f} h")
        )
        wins.append(
            (
                "PHM 2012 at 60-95 %",
                m["phm_late"] > b["phm_late"],
                f"{m['phm_late']:.3f} vs {b['phm_late']:.3f}",
            )
        )
        lost = [f"{w} ({v})" for w, ok, v in wins if not ok]
        won = [f"{w} ({v})" for w, ok, v in wins if ok]
        lines.append(f"- against *{name}*: " + ("better on " + ", ".join(won) if won else "better on nothing")
                     + ("; **worse on " + ", ".join(lost) + "**" if lost else ""))  # fmt: skip
    return lines


#: What a reader must know to weigh the table (kept with the script that writes it).
HISTORY = [
    "What was looked at before this table, all on these same eight folds (so none of it is a test):",
    "",
    "- The `ratio` model's inputs and target were designed after the previous default (`mlp`) and "
    "linear and MLP variants on absolute features were scored here: models fed absolute levels or a "
    "flexible body memorised the training bearings (in-sample PHM 0.57, out of fold 0.05-0.11); a "
    "linear model on per-bearing normalised inputs reached 0.20-0.22 even in-sample, so 0.30 is out "
    "of reach for this family on these bearings.",
    "- `rows_per_bearing` was added after the first federated runs lost to the constants (RMSE 1.73 "
    "federated against 1.45 trained centrally): the condition-1 site with three long-lived bearings "
    "carried 62 % of FedAvg's weight. Every bearing now carries the same weight.",
    "- Training on the PHM score itself, and asymmetric smoothing of the implied failure time, were "
    "tried and lost (rows above and the candidate list in the script).",
    "- The 2021 CNN and the previous default are costly (minutes per fold), so they have 1 and 2 seeds.",
    "- Bearing1_4's life ends at the PHM 2012 organisers' failure time (snapshot 1139 + 339 s, 3.26 h), "
    "not at the end of its recording (3.96 h): the last 0.7 h are at the accelerometer's 48 g limit.",
    "- Where the points go: Bearing3_1 shows nothing until 96 % of its life and Bearing3_2 until 88 %; "
    "before onset only the elapsed time is known, and lives span 1.4-7.8 h.",
    "- What is possible at the 60-95 % cut-offs (`bench/bench_accuracy_ceiling.py`, same folds): only 17 "
    "of the 80 cut-offs come after a causal x2.5 RMS onset (31 after x1.5, counting the false onsets "
    "of Bearing2_1/2_2). The PHM-best constant before onset with the *true* RUL after it scores 0.349 "
    "(0.486 with the x1.5 onset; 0.362 knowing the true RUL in the last 0.3 h of every life). The "
    "issue's heuristic family (that constant before onset, the health indicator extrapolated to the "
    "20 g threshold after it) scores 0.182 at best over a 72-setting grid tuned on these very folds. "
    "So a score of 0.30 here needs a near-perfect RUL after onset, and no predictor tried comes close.",
]


def write_markdown(chosen: str, rows: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]],
                   img: Path, argv: list[str]) -> None:  # fmt: skip
    m, s = rows[chosen]["mean"], rows[chosen]["sd"]
    beats_all = all(
        m["rmse_h"] < r["mean"]["rmse_h"] and m["phm_late"] > r["mean"]["phm_late"] for r in base.values()
    )
    target = m["phm_late"] >= 0.30 and m["over_late"] < 0.40 and beats_all
    head = [
        "# RUL accuracy on real FEMTO bearings",
        "",
        "<!-- generated by bench/bench_accuracy.py; edit the script, not this section -->",
        "",
        f"**Verdict.** The chosen model, *{chosen}*, has a whole-life RMSE of {m['rmse_h']:.3f} ± "
        f"{s['rmse_h']:.3f} h and a PHM 2012 score of {m['phm_late']:.3f} ± {s['phm_late']:.3f} at the "
        f"60-95 % cut-offs, over-estimating at {m['over_late']:.0%} of them (mean ± sd over "
        f"{rows[chosen]['n_seeds']} seeds, eight leave-one-bearing-out folds). "
        + (
            "It beats every baseline on both."
            if beats_all
            else "**It does not beat every baseline on both metrics** (below)."
        )
        + (
            " It meets the issue #15 targets (PHM >= 0.30, over-estimates < 40 %)."
            if target
            else " **It does not meet the issue #15 target of a PHM 2012 score >= 0.30 with fewer than 40 % "
            "over-estimates.**"
        ),
        "",
        *verdict(chosen, rows, base),
        "",
        "These are validation folds: the model family and its inputs were designed by looking at "
        'these eight bearings (see "How it was chosen"), so they are not a test. The real test is on '
        "bearings none of this has seen.",
        "",
        f"Command: `nice -n 19 .venv/bin/python bench/bench_accuracy.py {shlex.join(argv)}`",
        "",
        "## Leave one bearing out, eight folds",
        "",
        "Mean over the eight folds; ± is the sample standard deviation over seeds. Baselines first; "
        "they are fitted on the training folds of each fold and are deterministic.",
        "",
        "| row | seeds | " + " | ".join(h for h, _, _ in COLS) + " |",
        "|---|---|" + "---|" * len(COLS),
    ]
    for name, res in rows.items():
        label = f"**{name}** (chosen)" if name == chosen else name
        head.append(
            f"| {label} | {res['n_seeds'] if name not in base else '-'} | " + " | ".join(cells(res)) + " |"
        )
    head += [
        "",
        f"Per fold, {chosen} (mean over seeds) against the best baseline on each metric:",
        "",
        "| held-out bearing | life h | RMSE h | best baseline RMSE h | PHM 60-95 % | best baseline PHM "
        "| over-est. |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in FOLDS:
        mine = rows[chosen]["folds"][f]
        b_rmse = min(r["folds"][f]["rmse_h"] for r in base.values())
        b_phm = max(r["folds"][f]["phm_late"] for r in base.values())
        life = rows[chosen]["life"][f]
        head.append(f"| {f} | {life:.2f} | {mine['rmse_h']:.3f} | {b_rmse:.3f} | {mine['phm_late']:.3f} | "
                    f"{b_phm:.3f} | {mine['over_late']:.0%} |")  # fmt: skip
    head += [
        "",
        f"![predictions per fold](img/{img.name})",
        "",
        "## How it was chosen",
        "",
        SELECTION_RULE,
        "",
        *HISTORY,
        "",
    ]
    RESULTS_MD.write_text("\n".join(head) + "\n" + _kept_tail())


def _kept_tail() -> str:
    """Sections of RESULTS.md this script does not write (bench_cmapss.py's, from its heading on)."""
    if not RESULTS_MD.is_file():
        return ""
    text = RESULTS_MD.read_text()
    i = text.find("\n## C-MAPSS FD001 (turbofan)")
    return text[i + 1 :] if i >= 0 else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--reference-seeds", type=int, nargs="*", default=[], help="seeds for the 2021 CNN row")
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bearings = load()
    base: dict[str, dict[str, Any]] = {}
    per_fold = {f: baselines(f, bearings) for f in FOLDS}
    for name in per_fold[FOLDS[0]]:
        base[name] = summarise([{f: score(bearings[f], per_fold[f][name]) for f in FOLDS}])
    rows: dict[str, dict[str, Any]] = dict(base)
    if args.reference_seeds:
        rows[DESIGN_2021.name] = evaluate(DESIGN_2021, bearings, args.reference_seeds)
    results = {}
    for cand in CANDIDATES:
        if args.only and cand.name not in args.only:
            continue
        results[cand.name] = evaluate(cand, bearings, list(cand.seeds or args.seeds))
        console.print(f"  {cand.name}: {results[cand.name]['seconds']:.0f} s")
    rows.update(results)
    lives = {f: life_h(bearings[f]) for f in FOLDS}
    for r in rows.values():
        r["life"] = lives
    print_table(rows)
    if not results:
        return
    chosen = select(results, base)
    console.print(f"selected by the rule: [bold]{chosen}[/bold]")
    if not args.no_write:
        img = plot(chosen, rows[chosen], bearings)
        write_markdown(chosen, rows, base, img, sys.argv[1:])
        console.print(f"wrote {RESULTS_MD.relative_to(REPO)} and {img.relative_to(REPO)}")


if __name__ == "__main__":
    main()
