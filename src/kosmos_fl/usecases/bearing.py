"""Bearing use case: RUL of FEMTO-ST / PRONOSTIA rolling bearings from vibration snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch import nn

from kosmos_fl.config import DEFAULT_BEARINGS_PER_CLIENT, DEFAULT_TEST_BEARINGS
from kosmos_fl.data.processed import ProcessedBearing, list_bearings, load_bearings
from kosmos_fl.errors import DataError
from kosmos_fl.ml.models import Cnn2021, Ffnn2021
from kosmos_fl.ml.train import predict
from kosmos_fl.usecases.base import ArrayDataset, UseCase, UseCaseParams

SECONDS_PER_HOUR = 3600.0


class BearingParams(UseCaseParams):
    #: ``cnn``: the 2021 CNN on STFT spectra; ``ffnn``: the 2021 network on 54 features.
    model: Literal["cnn", "ffnn"] = "cnn"
    #: Where prepared arrays are cached (default: next to the data, else the user cache).
    cache_dir: str | None = None


class BearingUseCase(UseCase):
    """Predict a bearing's remaining useful life in hours from one vibration snapshot."""

    name = "BearingUseCase"
    version = "1.0"
    target_unit = "hours"
    Params = BearingParams
    params: BearingParams

    def _bearings(self, data_path: Path, names: Sequence[str] | None) -> dict[str, ProcessedBearing]:
        cache = Path(self.params.cache_dir) if self.params.cache_dir else None
        return load_bearings(Path(data_path), list(names) if names else None, cache_dir=cache)

    def _inputs(self, b: ProcessedBearing) -> np.ndarray:
        return b.spectra if self.params.model == "cnn" else b.features

    def _dataset(self, bearings: Mapping[str, ProcessedBearing]) -> ArrayDataset:
        if not bearings:
            raise DataError("no bearings selected: check data_path and the bearing names")
        x = np.concatenate([self._inputs(b) for b in bearings.values()])
        y = np.concatenate([b.rul_seconds / SECONDS_PER_HOUR for b in bearings.values()])
        return ArrayDataset(x.astype(np.float32, copy=False), y.astype(np.float32))

    def client_dataset(self, data_path: Path, selection: Sequence[str] | None) -> ArrayDataset:
        return self._dataset(self._bearings(data_path, selection))

    def eval_datasets(self, data_path: Path, names: Sequence[str]) -> dict[str, ArrayDataset]:
        return {k: self._dataset({k: b}) for k, b in self._bearings(data_path, names).items()}

    def data_summary(self, data_path: Path, selection: Sequence[str] | None) -> dict[str, Any]:
        bearings = self._bearings(data_path, selection)
        return {
            "bearings": sorted(bearings),
            "samples": int(sum(len(b.rul_seconds) for b in bearings.values())),
        }

    def federation_split(self, data_path: Path, num_clients: int) -> tuple[list[list[str]], list[str]]:
        """The 2021 assignment (client i: Bearing{i+1}_1 and _2) and the PHM 2012 test bearings
        that exist in ``data_path``; a missing client bearing is an error that names it."""
        found = set(list_bearings(Path(data_path)))  # raw, prepared or 2021 layout
        if num_clients > len(DEFAULT_BEARINGS_PER_CLIENT):
            raise DataError(f"the 2021 bearing assignment covers {len(DEFAULT_BEARINGS_PER_CLIENT)} clients, "
                            f"not {num_clients}")  # fmt: skip
        clients = [list(DEFAULT_BEARINGS_PER_CLIENT[i]) for i in range(num_clients)]
        lacking = sorted({b for c in clients for b in c} - set(found))
        if lacking:
            raise DataError(f"{data_path} lacks the client bearings {', '.join(lacking)} (2021 assignment)")
        test = [b for b in DEFAULT_TEST_BEARINGS if b in found]
        if not test:
            raise DataError(f"none of the test bearings {', '.join(DEFAULT_TEST_BEARINGS)} is in {data_path}")
        return clients, test

    def build_model(self) -> nn.Module:
        return Cnn2021() if self.params.model == "cnn" else Ffnn2021()

    def predict_table(self, model: nn.Module, data_path: Path, *, all_rows: bool) -> pd.DataFrame:
        frames = []
        for name, b in self._bearings(data_path, None).items():
            pred = predict(model, self._inputs(b))
            idx = np.arange(len(pred)) if all_rows else np.array([len(pred) - 1])
            frames.append(
                pd.DataFrame(
                    {
                        "bearing": name,
                        "rul_hours": np.round(pred[idx], 4),
                        "snapshot": idx + 1,
                        "elapsed_hours": np.round(
                            (b.timestamps[idx] - b.timestamps[0]) / SECONDS_PER_HOUR, 4
                        ),
                    }
                )
            )
        if not frames:
            raise DataError(f"no bearing folders found in {data_path}")
        return pd.concat(frames, ignore_index=True)
