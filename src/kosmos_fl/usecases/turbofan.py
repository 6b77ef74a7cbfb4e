"""Turbofan use case: remaining useful life of NASA C-MAPSS engines from windows of sensor data.

Each sample is the window of the last ``sequence_length`` cycles of one engine up to one cycle
(left-padded at the start of an engine's life; the padding is marked in an extra mask channel so
the models ignore it), and its target the engine's remaining cycles, capped at ``rul_cap`` (the
usual piecewise-linear target: early-life degradation is not observable).

Federated normalisation: clients cannot pool their data to fit a scaler, and a scaler fitted by
each client on its own engines would feed the shared model differently scaled inputs on every
site. The sensors are therefore z-scored with *fixed* per-column constants that are part of the
use case's parameters (default: the FD001 fleet's reference values, :data:`FD001_REFERENCE`), so
every client, the server and ``predict`` apply exactly the same transform; the constants are
stored with the model's parameters in MLflow. ``bench/bench_cmapss.py`` measures the choice.

``data_path`` is a NASA text file (``train_FD00x.txt``; ``test_FD00x.txt`` with ``RUL_FD00x.txt``
next to it for true labels), a folder holding exactly one ``train_*.txt``, or a PostgreSQL DSN
with the table in the ``table`` parameter (see :mod:`kosmos_fl.data.turbofan.postgres`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import AliasChoices, Field, field_validator, model_validator

from kosmos_fl.data.turbofan.cmapss import DEFAULT_CAP, DEFAULT_SENSORS, SENSOR_COLUMNS, SETTING_COLUMNS
from kosmos_fl.data.turbofan.source import read_engines, shown
from kosmos_fl.errors import DataError
from kosmos_fl.ml.metrics import mae, phm08_score, regression_report, rmse
from kosmos_fl.usecases.base import ArrayDataset, UseCase, UseCaseParams

if TYPE_CHECKING:  # torch loads where a model runs (see usecases/base.py)
    from torch import nn

#: Columns a model may use as inputs.
INPUT_COLUMNS: tuple[str, ...] = (*SETTING_COLUMNS, *SENSOR_COLUMNS)

#: Reference (offset, scale) of every input column: mean and standard deviation over the 100
#: engines of NASA's train_FD001.txt (constant columns get scale 1). Like a data sheet, these are
#: properties of the engine type, fixed before training, not statistics of any client's data.
FD001_REFERENCE: dict[str, tuple[float, float]] = {
    "setting_1": (0.0, 0.002187),
    "setting_2": (0.0, 0.0002931),
    "setting_3": (100.0, 1.0),
    "s_1": (518.67, 1.0),
    "s_2": (642.6809, 0.5),
    "s_3": (1590.5231, 6.131),
    "s_4": (1408.9338, 9.0),
    "s_5": (14.62, 1.0),
    "s_6": (21.6098, 0.001389),
    "s_7": (553.3677, 0.8851),
    "s_8": (2388.0967, 0.07098),
    "s_9": (9065.2429, 22.08),
    "s_10": (1.3, 1.0),
    "s_11": (47.5412, 0.2671),
    "s_12": (521.4135, 0.7375),
    "s_13": (2388.0962, 0.07192),
    "s_14": (8143.7527, 19.08),
    "s_15": (8.4421, 0.0375),
    "s_16": (0.03, 1.0),
    "s_17": (393.2107, 1.549),
    "s_18": (2388.0, 1.0),
    "s_19": (100.0, 1.0),
    "s_20": (38.8163, 0.1807),
    "s_21": (23.2897, 0.1082),
}

_UNIT_NAME = re.compile(r"^(?:unit|engine)?[ _-]?(\d+)$", re.IGNORECASE)


class TurbofanParams(UseCaseParams):
    #: Cycles per window (the model's input length). 40 rather than the literature's usual 30:
    #: about 1 RMSE better on held-out engines, centralised and federated (bench/bench_cmapss.py).
    sequence_length: int = Field(40, ge=2, le=1000)
    #: Targets are min(true RUL, rul_cap) cycles.
    rul_cap: float = Field(DEFAULT_CAP, gt=0, le=100_000)
    #: Input columns (sensors ``s_1..s_21``, settings ``setting_1..3``); default: the 14
    #: informative FD001 sensors.
    sensors: tuple[str, ...] = Field(
        DEFAULT_SENSORS, validation_alias=AliasChoices("sensors", "remaining_sensors")
    )
    #: ``lstm``: a masked LSTM (100, 50), the most accurate here (default; federated it needs
    #: about 20 rounds); ``cnn``: a 1-D CNN with ~0.7 cycles more RMSE at a quarter of the compute
    #: (about 40 rounds). Numbers in bench/bench_cmapss.py and docs/HOWTO-usecase.md.
    #: ``lstm2021``: the 2021 KOSMoS network exactly (Masking(-99) -> LSTM(256) -> Dropout(0.1) -> Dense).
    model: Literal["lstm", "cnn", "lstm2021"] = "lstm"
    #: Training loss (2021 names): None: mean squared error; ``RMSE``, ``MSE``,
    #: ``WeightedRootMeanSquaredError`` (2021's default), ``Huber``, ``MSLE``, ``ScoringFunction``.
    loss: str | None = None
    #: Value of padded steps for ``lstm2021`` (its Masking layer skips them; 2021: -99).
    padding_value: float = -99.0
    #: Rows of this ``file_id`` only, in the 2021 CSV / table layout (1 for FD001 ...).
    file_id: int | None = None
    #: Columns min-max scaled on each site's own rows instead of the fixed reference z-score (2021's
    #: ``min_max_norm_columns``; note the scale then differs between sites).
    min_max_norm_columns: tuple[str, ...] = ()

    @field_validator("sensors", "min_max_norm_columns", mode="before")
    @classmethod
    def _2021_names(cls, value: Any) -> Any:
        """2021 column names (``sensor_02``) as today's (``s_2``)."""
        from kosmos_fl.data.turbofan.turbofan2021 import current_name

        if isinstance(value, str):
            value = [value]
        return tuple(current_name(v) for v in value) if isinstance(value, list | tuple) else value

    @field_validator("loss")
    @classmethod
    def _loss_known(cls, value: str | None) -> str | None:
        from kosmos_fl.ml.losses import loss_by_name

        if value is not None:
            loss_by_name(value)
        return value

    #: Table holding the engines when ``data_path`` is a PostgreSQL DSN.
    table: str | None = None
    #: Fixed (offset, scale) per input column, overriding :data:`FD001_REFERENCE` (other fleets).
    normalisation: dict[str, tuple[float, float]] = Field(default_factory=dict)
    #: Share of engines ``federation_split`` keeps for the server's evaluation, and its seed.
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0

    @field_validator("sensors")
    @classmethod
    def _known_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in INPUT_COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; use s_1..s_21 or setting_1..setting_3")
        if not value or len(set(value)) != len(value):
            raise ValueError("give at least one column, each once")
        return value

    @model_validator(mode="after")
    def _min_max_in_sensors(self) -> TurbofanParams:
        extra = [c for c in self.min_max_norm_columns if c not in self.sensors]
        if extra:
            raise ValueError(f"min_max_norm_columns {extra} are not among the input sensors")
        return self

    @model_validator(mode="after")
    def _scales(self) -> TurbofanParams:
        for col, (_, scale) in self.normalisation.items():
            if col not in INPUT_COLUMNS or not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"normalisation of {col!r} needs a known column and a scale > 0")
        return self


class TurbofanUseCase(UseCase):
    """Predict a turbofan engine's remaining useful life in cycles (NASA C-MAPSS)."""

    name = "TurbofanUseCase"
    version = "1.0"
    target_unit = "cycles"
    Params = TurbofanParams
    params: TurbofanParams
    #: The session settings the defaults were selected with (bench/bench_cmapss.py, 3 clients);
    #: ``kosmos-fl demo --usecase TurbofanUseCase`` uses them.
    session_defaults: ClassVar[Mapping[str, Any]] = {
        "n_federated_train_epoch": 8,
        "training": {"local_epochs": 2, "learning_rate": 1e-3, "batch_size": 128},
    }

    # -- data -------------------------------------------------------------------------------
    def _load(self, data_path: Path | str, units: Sequence[int] | None = None) -> pd.DataFrame:
        """Rows of ``units`` (None: all) with the input columns and ``rul`` (capped; NaN when the
        source has no labels), sorted by unit and cycle."""
        p = self.params
        return read_engines(
            data_path, units, columns=p.sensors, rul_cap=p.rul_cap, table=p.table, file_id=p.file_id
        )

    def _arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Windows ending at every row of ``df`` and their targets."""
        x = cycle_windows(self._normalise(df), df["unit"].to_numpy(), self.params.sequence_length)
        return x, df["rul"].to_numpy(np.float32)

    def _normalise(self, df: pd.DataFrame) -> np.ndarray:
        ref = {**FD001_REFERENCE, **self.params.normalisation}
        cols = list(self.params.sensors)
        offset = np.array([ref[c][0] for c in cols])
        scale = np.array([ref[c][1] for c in cols])
        for i, c in enumerate(cols):
            if c in self.params.min_max_norm_columns:  # 2021: min-max over this site's own rows
                lo, hi = float(df[c].min()), float(df[c].max())
                offset[i], scale[i] = lo, (hi - lo) or 1.0
        return ((df[cols].to_numpy(np.float64) - offset) / scale).astype(np.float32)

    def _labelled(self, df: pd.DataFrame, data_path: Path | str) -> pd.DataFrame:
        if df["rul"].isna().any():
            raise DataError(
                f"{shown(data_path)} has no true RUL labels: use a train_FD00x.txt file, put "
                f"RUL_FD00x.txt next to the test file, or give the table a 'rul' column"
            )
        return df

    def client_dataset(self, data_path: Path, selection: Sequence[str] | None) -> ArrayDataset:
        df = self._labelled(self._load(data_path, parse_units(selection)), data_path)
        return ArrayDataset(*self._arrays(df))

    def eval_datasets(self, data_path: Path, names: Sequence[str]) -> dict[str, ArrayDataset]:
        """One group per unit, ``unit<id>``, holding all its windows in cycle order (the last row
        is the unit's last window, which :meth:`evaluate` scores separately)."""
        units = parse_units(names)
        if not units:
            raise DataError("no held-out engine units given for evaluation (test_units)")
        df = self._labelled(self._load(data_path, units), data_path)
        x, y = self._arrays(df)
        unit = df["unit"].to_numpy()
        return {f"unit{u}": ArrayDataset(x[unit == u], y[unit == u]) for u in units}

    def data_summary(self, data_path: Path, selection: Sequence[str] | None) -> dict[str, Any]:
        df = self._load(data_path, parse_units(selection))
        units = df["unit"].unique()
        labelled = int(df["rul"].notna().sum())
        return {"units": [str(u) for u in units], "cycles": len(df), "samples": labelled}

    def federation_split(self, data_path: Path, num_clients: int) -> tuple[list[list[str]], list[str]]:
        """Seeded split of the engines: ``holdout_fraction`` of them (at least one) for the
        server, the rest dealt disjointly and as evenly as possible to the clients."""
        units = np.unique(self._load(data_path)["unit"].to_numpy())
        if num_clients < 1 or len(units) < num_clients + 1:
            raise DataError(
                f"{shown(data_path)} holds {len(units)} engines: too few for {num_clients} clients "
                f"plus held-out engines"
            )
        n_test = min(max(1, round(self.params.holdout_fraction * len(units))), len(units) - num_clients)
        perm = np.random.default_rng(self.params.split_seed).permutation(units)
        test = sorted(perm[:n_test].tolist())
        clients = [sorted(c.tolist()) for c in np.array_split(perm[n_test:], num_clients)]
        return [[str(u) for u in c] for c in clients], [str(u) for u in test]

    # -- model ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from kosmos_fl.ml.models import CnnRul, Lstm2021, Lstm2021Kosmos

        n, p = len(self.params.sensors), self.params
        model: nn.Module
        if p.model == "lstm":
            model = Lstm2021(n, target_scale=p.rul_cap)
        elif p.model == "lstm2021":
            model = Lstm2021Kosmos(n, padding_value=p.padding_value, target_scale=p.rul_cap)
        else:
            model = CnnRul(n, p.sequence_length, target_scale=p.rul_cap)
        if p.loss is not None:  # picked up by kosmos_fl.ml.train.train_epochs
            from kosmos_fl.ml.losses import loss_by_name

            fn = loss_by_name(p.loss)
            model.training_loss = lambda x, y: fn(model(x), y)  # type: ignore[assignment]
        return model

    # -- evaluation and prediction -------------------------------------------------------------
    def evaluate(self, model: nn.Module, groups: Mapping[str, ArrayDataset]) -> dict[str, float]:
        """Per unit (``RMSE_unit12``, ``MAE_``, ``PCC_``, ``PHM08_``) over all its windows and
        their means over units (``RMSE``, ``MAE``, ``PCC``, ``PHM08``); plus ``RMSE_last``,
        ``MAE_last`` and ``PHM08_last`` on each unit's last window, the test-set convention.

        ``PHM08_<unit>`` and ``PHM08`` are the asymmetric score per window (so units of different
        length compare); ``PHM08_last`` is the challenge's sum over units.
        """
        from kosmos_fl.ml.train import predict

        names = list(groups)
        if not names:
            return {}
        sizes = [len(groups[k]) for k in names]
        pred_all = predict(model, np.concatenate([groups[k].x for k in names]))
        preds = dict(zip(names, np.split(pred_all, np.cumsum(sizes)[:-1]), strict=True))
        out = regression_report({k: (groups[k].y, preds[k]) for k in names})
        per_unit = []
        for k in names:
            out[f"PHM08_{k}"] = phm08_score(groups[k].y, preds[k]) / max(len(groups[k]), 1)
            per_unit.append(out[f"PHM08_{k}"])
        out["PHM08"] = float(np.mean(per_unit))
        last_true = np.array([groups[k].y[-1] for k in names if len(groups[k])])
        last_pred = np.array([preds[k][-1] for k in names if len(groups[k])])
        out["RMSE_last"] = rmse(last_true, last_pred)
        out["MAE_last"] = mae(last_true, last_pred)
        out["PHM08_last"] = phm08_score(last_true, last_pred)
        return out

    def predict_table(self, model: nn.Module, data_path: Path, *, all_rows: bool) -> pd.DataFrame:
        """``unit, rul_cycles, cycle``: predicted remaining cycles (never negative) at each unit's
        last cycle, or at every cycle with ``all_rows``; labels are not needed."""
        from kosmos_fl.ml.train import predict

        df = self._load(data_path)
        x, _ = self._arrays(df)
        units = df["unit"].to_numpy()
        keep = np.ones(len(df), bool) if all_rows else np.r_[units[1:] != units[:-1], True]
        pred = np.maximum(predict(model, x[keep]), 0.0)
        return pd.DataFrame(
            {"unit": units[keep], "rul_cycles": np.round(pred, 2), "cycle": df["cycle"].to_numpy()[keep]}
        )


# --------------------------------------------------------------------------- helpers


def cycle_windows(values: np.ndarray, units: np.ndarray, seq_len: int) -> np.ndarray:
    """Windows ending at *every* row (rows sorted by unit and cycle): ``(rows, seq_len, F + 1)``
    float32. Steps before a unit's first cycle are zero and the last channel is the mask (1 for a
    real cycle), so every cycle of a unit, even the first, gets a prediction.

    (``kosmos_fl.data.turbofan.cmapss.make_windows`` only yields windows from cycle ``seq_len`` on.)
    """
    n = len(values)
    starts_at = np.r_[0, np.flatnonzero(units[1:] != units[:-1]) + 1]
    first = np.repeat(starts_at, np.diff(np.r_[starts_at, n]))
    idx = np.arange(n)[:, None] + np.arange(1 - seq_len, 1)[None, :]
    mask = idx >= first[:, None]
    x = np.empty((n, seq_len, values.shape[1] + 1), dtype=np.float32)
    x[..., :-1] = values[np.where(mask, idx, 0)]
    x[..., :-1] *= mask[..., None]
    x[..., -1] = mask
    return x


def parse_units(names: Sequence[str] | None) -> list[int] | None:
    """Engine ids from names like ``"12"``, ``"unit12"``, ``"unit_12"`` (None stays None)."""
    if names is None:
        return None
    out = []
    for name in names:
        m = _UNIT_NAME.match(str(name).strip())
        if m is None:
            raise DataError(f"{name!r} is not an engine unit; name units by number, e.g. '12' or 'unit12'")
        out.append(int(m[1]))
    return list(dict.fromkeys(out))
