"""The plug-in's own tests: run them with `pytest examples/kosmos-usecase-pump/tests`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from kosmos_usecase_pump import generate_pumps

from kosmos_fl.ml.train import seed_everything, train_epochs
from kosmos_fl.usecases import load_usecase


def test_registered_trains_and_predicts(tmp_path: Path) -> None:
    data = generate_pumps(tmp_path, pumps=6, seed=1)
    uc = load_usecase("PumpUseCase", {"hidden": 8})  # found through the entry point
    clients, test = uc.federation_split(data, 2)
    assert sorted([p for c in clients for p in c] + test) == [f"pump{i:02d}" for i in range(1, 7)]
    train = uc.client_dataset(data, clients[0] + clients[1])
    seed_everything(0)
    model = uc.build_model()
    before = uc.evaluate(model, uc.eval_datasets(data, test))["RMSE"]
    train_epochs(model, train.x, train.y, epochs=30, lr=0.01, batch_size=32, seed=0)
    after = uc.evaluate(model, uc.eval_datasets(data, test))["RMSE"]
    assert after < before
    table = uc.predict_table(model, data, all_rows=False)
    assert list(table.columns[:2]) == ["pump", "rul_hours"] and len(table) == 6
    assert np.all(table["rul_hours"] >= 0)
