"""Issue 21: the update screen measures what a site learnt, not the scale of its data.

Three sites train the 2021 ``ffnn`` with its input batch-norm, one of them on a machine whose
vibration is 25x louder (another operating condition). Its batch-norm running statistics then
dwarf every weight change, and a norm over all arrays rejected it round after round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kosmos_fl.fl.rounds.validation import validate_updates
from kosmos_fl.ml.train import (
    get_weights,
    pack_weights,
    seed_everything,
    set_weights,
    train_epochs,
    trainable_mask,
)
from kosmos_fl.usecases.bearing import BearingUseCase

ROUNDS = 3


def _sites(data: Path, uc: BearingUseCase) -> list[tuple[np.ndarray, np.ndarray]]:
    a = uc.client_dataset(data, ["Bearing1_1", "Bearing1_2"])
    b = uc.client_dataset(data, ["Bearing2_1", "Bearing2_2"])
    c = uc.client_dataset(data, ["Bearing1_3", "Bearing2_3"])
    sites = [(np.asarray(d.x, np.float32), np.asarray(d.y, np.float32)) for d in (a, b, c)]
    x, y = sites[2]
    sites[2] = (x * 25.0, y)  # a louder machine: every feature 25x
    return sites


def _rounds(
    data: Path,
) -> tuple[list[dict[int, tuple[list[np.ndarray], object]]], list[list[np.ndarray]], np.ndarray]:
    """Honest FedAvg rounds: each round's packed updates and the global weights they started from."""
    uc = BearingUseCase({"model": "ffnn", "ffnn_input_norm": True, "ffnn_units": 32})
    seed_everything(0)
    model = uc.build_model()
    mask = trainable_mask(model)
    sites = _sites(data, uc)
    glob = pack_weights(get_weights(model))
    rounds, refs = [], []
    for rnd in range(ROUNDS):
        updates: dict[int, tuple[list[np.ndarray], object]] = {}
        for cid, (x, y) in enumerate(sites):
            set_weights(model, glob)
            train_epochs(model, x, y, epochs=1, lr=1e-3, batch_size=32, seed=rnd * 10 + cid)
            updates[cid] = (pack_weights(get_weights(model)), len(y))
        rounds.append(updates)
        refs.append(glob)
        sizes = np.array([n for _, n in updates.values()], dtype=np.float64)
        glob = [
            sum(u[0][0] * (n / sizes.sum()) for u, n in zip(updates.values(), sizes, strict=True)).astype(
                np.float32
            )
        ]
    return rounds, refs, mask


def test_mask_marks_parameters_not_running_statistics() -> None:
    model = BearingUseCase({"model": "ffnn", "ffnn_input_norm": True, "ffnn_units": 8}).build_model()
    mask = trainable_mask(model)
    n_params = sum(p.numel() for p in model.parameters())
    assert mask.shape == (pack_weights(get_weights(model))[0].size,)
    assert int(mask.sum()) == n_params
    assert int((~mask).sum()) == 2 * 54  # running mean and variance of the 54 input features


def test_honest_site_with_louder_machine_is_kept_and_poison_still_rejected(generated_bearings: Path) -> None:
    rounds, refs, mask = _rounds(generated_bearings)
    unmasked_rejections = 0
    for updates, ref in zip(rounds, refs, strict=True):
        norms, rejected = validate_updates(updates, ref, trainable=mask)
        assert rejected == [], [r.reason for r in rejected]
        assert set(norms) == {0, 1, 2}
        unmasked_rejections += len(validate_updates(updates, ref)[1])
    # the situation the fix is for: counting the statistics rejects the loud site
    assert unmasked_rejections > 0

    updates, ref = rounds[-1], refs[-1]
    honest = updates[0][0][0]
    poisoned = ref[0] + 100.0 * (honest - ref[0])  # the same update, scaled up
    attacked = {**updates, 0: ([poisoned.astype(np.float32)], updates[0][1])}
    _, rejected = validate_updates(attacked, ref, trainable=mask)
    assert [r.key for r in rejected] == [0]
    assert "median of the others" in rejected[0].reason


def test_running_statistics_are_still_checked_for_finiteness(generated_bearings: Path) -> None:
    rounds, refs, mask = _rounds(generated_bearings)
    updates, ref = rounds[0], refs[0]
    broken = updates[1][0][0].copy()
    broken[np.flatnonzero(~mask)[0]] = np.nan
    _, rejected = validate_updates({**updates, 1: ([broken], updates[1][1])}, ref, trainable=mask)
    assert [r.key for r in rejected] == [1]
