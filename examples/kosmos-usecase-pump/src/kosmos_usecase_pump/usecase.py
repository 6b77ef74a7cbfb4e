"""The PumpUseCase: everything kosmos-fl needs to train, evaluate and serve a pump RUL model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from kosmos_fl.errors import DataError
from kosmos_fl.ml.train import predict
from kosmos_fl.usecases import ArrayDataset, UseCase, UseCaseParams
from kosmos_usecase_pump.data import FEATURES, pump_files, read_pumps

#: Fixed (offset, scale) per feature: every site normalises identically without pooling data.
REFERENCE = {
    "vibration_rms": (2.0, 1.0),
    "temperature": (68.0, 6.0),
    "pressure": (4.5, 0.5),
    "flow": (95.0, 5.0),
}


class PumpParams(UseCaseParams):
    #: Hidden units of the model.
    hidden: int = Field(16, ge=1, le=1024)
    #: Targets are min(hours to failure, rul_cap).
    rul_cap: float = Field(150.0, gt=0)
    #: Seed of :meth:`PumpUseCase.federation_split`.
    split_seed: int = 0


class PumpModel(nn.Module):
    """A tiny MLP: 4 normalised readings -> RUL in hours (output scaled by the cap)."""

    def __init__(self, n_features: int = len(FEATURES), hidden: int = 16, scale: float = 150.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) * self.scale


class PumpUseCase(UseCase):
    """Remaining useful life of a pump, in hours, from its latest hourly readings."""

    name = "PumpUseCase"
    version = "0.1.0"
    target_unit = "hours"
    Params = PumpParams
    params: PumpParams

    def _arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        offset = np.array([REFERENCE[f][0] for f in FEATURES])
        scale = np.array([REFERENCE[f][1] for f in FEATURES])
        x = ((df[list(FEATURES)].to_numpy(np.float64) - offset) / scale).astype(np.float32)
        y = np.minimum(df["rul_hours"].to_numpy(np.float64), self.params.rul_cap).astype(np.float32)
        return x, y

    def client_dataset(self, data_path: Path, selection: Sequence[str] | None) -> ArrayDataset:
        pumps = read_pumps(Path(data_path), selection)
        if not pumps:
            raise DataError(f"no pump_*.csv files in {data_path}")
        return ArrayDataset(*self._arrays(pd.concat(pumps.values(), ignore_index=True)))

    def eval_datasets(self, data_path: Path, names: Sequence[str]) -> dict[str, ArrayDataset]:
        return {k: ArrayDataset(*self._arrays(df)) for k, df in read_pumps(Path(data_path), names).items()}

    def data_summary(self, data_path: Path, selection: Sequence[str] | None) -> dict[str, Any]:
        pumps = read_pumps(Path(data_path), selection)
        return {"pumps": sorted(pumps), "samples": int(sum(len(df) for df in pumps.values()))}

    def federation_split(self, data_path: Path, num_clients: int) -> tuple[list[list[str]], list[str]]:
        names = list(pump_files(Path(data_path)))
        if len(names) < num_clients + 1:
            raise DataError(
                f"{data_path} holds {len(names)} pumps, too few for {num_clients} clients and a test pump"
            )
        perm = [names[i] for i in np.random.default_rng(self.params.split_seed).permutation(len(names))]
        n_test = max(1, len(names) // 5)
        clients = [sorted(perm[n_test + i :: num_clients]) for i in range(num_clients)]
        return clients, sorted(perm[:n_test])

    def build_model(self) -> nn.Module:
        return PumpModel(hidden=self.params.hidden, scale=self.params.rul_cap)

    def predict_table(self, model: nn.Module, data_path: Path, *, all_rows: bool) -> pd.DataFrame:
        frames = []
        for name, df in read_pumps(Path(data_path)).items():
            rows = df if all_rows else df.iloc[[-1]]
            pred = np.maximum(predict(model, self._arrays(rows)[0]), 0.0)
            frames.append(pd.DataFrame({"pump": name, "rul_hours": np.round(pred, 2), "hour": rows["hour"]}))
        if not frames:
            raise DataError(f"no pump_*.csv files in {data_path}")
        return pd.concat(frames, ignore_index=True)
