"""Round checkpoints: atomic, complete, and what a resumed session needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kosmos_fl.fl.rounds import checkpoint
from kosmos_fl.fl.rounds.checkpoint import Checkpoint
from kosmos_fl.fl.strategies import build


def _ckpt(rnd: int) -> Checkpoint:
    return Checkpoint(session_id="s1", mlflow_run_id="r1", round=rnd, weights_file="", metrics={"RMSE": 1.5})


def test_save_and_load_weights_strategy_and_metrics(tmp_path: Path) -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, dtype=np.float32)]
    strategy = build("FedAdam", {"eta": 0.05}, num_clients=3, min_fit_clients=2)
    strategy.current_arrays = {"x": np.ones(2)}  # server optimiser state that must survive
    saved = checkpoint.save(tmp_path, _ckpt(2), weights, strategy)
    loaded = checkpoint.load(tmp_path)
    assert loaded == saved and loaded.round == 2 and not loaded.metrics_logged
    got = checkpoint.load_weights(tmp_path, loaded)
    assert [w.dtype for w in got] == [np.float32, np.float32]
    assert all(np.array_equal(a, b) for a, b in zip(got, weights, strict=True))
    restored = checkpoint.load_strategy(tmp_path, loaded)
    assert type(restored).__name__ == "FedAdam" and restored.eta == 0.05
    assert np.array_equal(restored.current_arrays["x"], np.ones(2))
    assert checkpoint.mark_logged(tmp_path, loaded).metrics_logged
    assert checkpoint.load(tmp_path).metrics_logged
    assert checkpoint.summary(tmp_path) == {"round": 2, "mlflow_run_id": "r1"}


def test_a_new_round_replaces_the_old_files(tmp_path: Path) -> None:
    w = [np.zeros(2, dtype=np.float32)]
    checkpoint.save(tmp_path, _ckpt(1), w, build("FedAvg", {}, 2, 2))
    checkpoint.save(tmp_path, _ckpt(2), w, build("FedAvg", {}, 2, 2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint-r2.npz", "checkpoint.json", "strategy-r2.pkl"]


def test_no_checkpoint_and_unpicklable_strategy(tmp_path: Path) -> None:
    import threading

    assert checkpoint.load(tmp_path) is None and checkpoint.summary(tmp_path) is None
    saved = checkpoint.save(tmp_path, _ckpt(0), [np.zeros(1, dtype=np.float32)], threading.Lock())
    assert saved.strategy_file is None and checkpoint.load_strategy(tmp_path, saved) is None


def test_interrupted_write_leaves_previous_checkpoint(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _ckpt(1), [np.zeros(2, dtype=np.float32)])
    (tmp_path / "checkpoint.json.tmp").write_text('{"round": 2, "trunc')  # a crash mid-write
    assert checkpoint.load(tmp_path).round == 1
