"""Bearing use case: RUL of FEMTO-ST / PRONOSTIA rolling bearings from vibration snapshots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from kosmos_fl.data.bearing.health import (
    health_inputs,
    n_health_inputs,
    n_passthrough_inputs,
    smooth_failure_time,
)
from kosmos_fl.data.bearing.onset import RATIO_INPUTS, ratio_inputs
from kosmos_fl.data.bearing.processed import ProcessedBearing, list_bearings, load_bearings
from kosmos_fl.errors import DataError
from kosmos_fl.ml.metrics import regression_report
from kosmos_fl.usecases.base import ArrayDataset, UseCase, UseCaseParams

if TYPE_CHECKING:  # imported where a model runs (see usecases/base.py)
    import pandas as pd
    from torch import nn

#: The 11 test bearings of the IEEE PHM 2012 challenge, the 2021 server's default.
DEFAULT_TEST_BEARINGS: tuple[str, ...] = (
    "Bearing1_3",
    "Bearing1_4",
    "Bearing1_5",
    "Bearing1_6",
    "Bearing1_7",
    "Bearing2_3",
    "Bearing2_4",
    "Bearing2_5",
    "Bearing2_6",
    "Bearing2_7",
    "Bearing3_3",
)

#: The 2021 assignment of FEMTO learning bearings to client ids.
DEFAULT_BEARINGS_PER_CLIENT: dict[int, list[str]] = {
    0: ["Bearing1_1", "Bearing1_2"],
    1: ["Bearing2_1", "Bearing2_2"],
    2: ["Bearing3_1", "Bearing3_2"],
}

SECONDS_PER_HOUR = 3600.0
#: Models whose inputs are built from a bearing's history: their predictions can be smoothed and
#: their training bearings balanced.
HISTORY_MODELS = ("mlp", "ratio")


class BearingParams(UseCaseParams):
    #: ``cnn``: the 2021 CNN on STFT spectra; ``ffnn``: the 2021 network on 54 features;
    #: ``mlp``: a small MLP with interval heads on health-indicator inputs built from each
    #: bearing's history (:mod:`kosmos_fl.data.bearing.health`), the options below; ``ratio``: RUL as a
    #: learnt multiple of the elapsed time from per-bearing normalised health indicators
    #: (:mod:`kosmos_fl.ml.ratio`, :mod:`kosmos_fl.data.bearing.onset`); ``cnn_padded``: the CNN with
    #: 'same' padding and ReLU that ``cnn`` was before.
    model: Literal["cnn", "ffnn", "mlp", "ratio", "cnn_padded"] = "cnn"
    #: ``ffnn``: the 2021 options: feature names (2021 names such as ``mean``,
    #: ``frequency_kurtosis``; each taken from both axes; None: all 27), hidden layers, units per
    #: layer, dropout 0.5 after each (true) or none; ``ffnn_input_norm`` adds an input batch-norm
    #: (not in 2021).
    ffnn_features: tuple[str, ...] | None = None
    ffnn_layers: int = Field(2, ge=1, le=64)
    ffnn_units: int = Field(512, ge=1, le=65536)
    ffnn_dropout: bool = True
    ffnn_input_norm: bool = False

    @field_validator("ffnn_features")
    @classmethod
    def _ffnn_features_known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from kosmos_fl.data.bearing.features import FEATURE_NAMES

        unknown = [f for f in value or () if f not in FEATURE_NAMES]
        if unknown or (value is not None and not value):
            raise ValueError(f"unknown feature(s) {unknown}; use some of {', '.join(FEATURE_NAMES)}")
        return value

    #: ``mlp``: spans (snapshots) of the running means of the log-features.
    spans: tuple[float, ...] = (10.0, 100.0)
    #: ``mlp``: add the running maximum of the first span's means.
    running_max: bool = True
    #: ``mlp``: add the elapsed running time in hours. Off: in leave-one-bearing-out validation it
    #: made the model lean on the training bearings' lives (docs/RESULTS.md).
    elapsed: bool = False
    #: ``mlp``: add the shaft speed and load of the bearing's operating condition.
    operating_condition: bool = True
    #: ``mlp``: features relative to the mean of the bearing's first ``baseline`` snapshots; 0 = off
    #: (absolute features validated better on unseen bearings, docs/RESULTS.md).
    baseline: int = 0
    #: ``mlp``: standardise the feature inputs with batch-norm. Off: federated batch-norm
    #: statistics are averages of per-client ones, which fit no client (docs/RESULTS.md).
    batch_norm: bool = False
    #: ``mlp``: hidden layer widths and dropout.
    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.1
    #: ``mlp``, ``ratio``: quantiles of the interval heads (``rul_hours_low`` / ``rul_hours_high``);
    #: for ``ratio`` the low one is also the conservative estimate ``predict`` reports.
    quantiles: tuple[float, float] = (0.1, 0.9)
    #: ``ratio``: the quantile of the log(RUL / elapsed) that is the point estimate (below 0.5 on
    #: purpose: a late RUL is the costly error), and the hidden widths (none: linear).
    point_quantile: float = Field(0.2, gt=0, lt=1)
    ratio_hidden: tuple[int, ...] = ()
    #: ``mlp``: factor on the distances of the quantile heads from the point estimate. The heads
    #: learn the spread on the training bearings, which a model fits far better than a bearing it
    #: has never seen; the factor that makes the interval cover 80 % in leave-one-bearing-out
    #: validation on the training bearings (bench/bench_accuracy.py) corrects that.
    interval_scale: float = Field(5.06, gt=0)
    #: ``mlp``: span (snapshots) of the running mean of implied failure times applied to each
    #: bearing's predictions (:func:`~kosmos_fl.data.bearing.health.smooth_failure_time`); 0 = off.
    #: 1000 snapshots (about 3 h at one per 10 s) with ``smooth_down_span`` 30 (5 min) and
    #: ``balance_bearings``: the selection's winner.
    smooth_span: float = 1000.0
    #: ``mlp``: with ``smooth_span``, the span (snapshots) with which an earlier implied failure
    #: time pulls the estimate (asymmetric smoothing, see ``smooth_failure_time``); None = symmetric.
    smooth_down_span: float | None = Field(30.0, ge=1)
    #: ``mlp``: repeat the snapshots of a client's shorter-lived bearings so each of its bearings
    #: weighs about the same in training (the metrics weigh every bearing equally; unbalanced, a
    #: long-lived bearing's many large RULs set the prediction for every healthy-looking snapshot).
    balance_bearings: bool = True
    #: ``mlp``, ``ratio``: give every bearing exactly this many training rows, its snapshots
    #: resampled evenly over its life (None: off). Unlike ``balance_bearings``, which evens out
    #: bearings within one client, this also makes a client's weight in FedAvg (its row count)
    #: proportional to its number of bearings, so a site with one long-lived bearing does not
    #: outweigh the others.
    rows_per_bearing: int | None = Field(None, ge=10)
    #: Where prepared arrays are cached (default: next to the data, else the user cache).
    cache_dir: str | None = None


@dataclass(frozen=True)
class BearingEvalSet(ArrayDataset):
    """One bearing's evaluation rows in time order, with the elapsed hours of each snapshot that
    the failure-time smoothing needs, so round metrics match what ``predict`` reports."""

    elapsed_hours: np.ndarray | None = None


def hours_since_start(b: ProcessedBearing) -> np.ndarray:
    """Hours since the bearing's first snapshot, per snapshot (what the smoothing runs on)."""
    return (b.timestamps - b.timestamps[0]) / SECONDS_PER_HOUR


def balance_repeats(counts: Sequence[int]) -> list[int]:
    """How often to repeat each bearing's rows so every bearing has about as many rows as the
    longest: ``round(max / n)``, at least 1 (empty bearings: 1)."""
    top = max(counts, default=0)
    return [max(1, round(top / n)) if n > 0 else 1 for n in counts]


def resample_index(n: int, rows: int) -> np.ndarray:
    """``rows`` indices into ``n`` snapshots spread evenly over them (repeating when ``rows > n``,
    thinning when ``rows < n``), in time order; the last snapshot is always included."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.minimum(np.floor(np.arange(rows) * n / rows).astype(np.int64) + (n - 1) // rows, n - 1)


class BearingUseCase(UseCase):
    """Predict a bearing's remaining useful life in hours from one vibration snapshot."""

    name = "BearingUseCase"
    #: 1.1: mlp defaults changed (absolute features, balanced bearings, asymmetric smoothing);
    #: a 1.0 model registered with its defaults unresolved would get other inputs, so it is refused.
    #: 1.2: the ``ratio`` model.
    version = "1.2"
    target_unit = "hours"
    Params = BearingParams
    default_test_units = DEFAULT_TEST_BEARINGS
    default_units_per_client = DEFAULT_BEARINGS_PER_CLIENT
    params: BearingParams

    def _bearings(self, data_path: Path, names: Sequence[str] | None) -> dict[str, ProcessedBearing]:
        cache = Path(self.params.cache_dir) if self.params.cache_dir else None
        return load_bearings(Path(data_path), list(names) if names else None, cache_dir=cache)

    def _health_options(self) -> dict[str, Any]:
        p = self.params
        return {
            "spans": p.spans,
            "running_max": p.running_max,
            "elapsed": p.elapsed,
            "operating_condition": p.operating_condition,
        }

    def _input_options(self) -> dict[str, Any]:
        return {**self._health_options(), "baseline": self.params.baseline}

    def _inputs(self, b: ProcessedBearing) -> np.ndarray:
        if self.params.model == "ratio":
            return ratio_inputs(b.features, b.timestamps)
        if self.params.model == "mlp":
            return health_inputs(b.features, b.timestamps, b.condition, **self._input_options())
        if self.params.model in ("cnn", "cnn_padded"):
            return b.spectra
        return b.features[:, self._ffnn_columns()]

    def _ffnn_columns(self) -> list[int]:
        """Feature columns of the ``ffnn`` (both axes of each of ``ffnn_features``)."""
        from kosmos_fl.data.bearing.features import AXES, FEATURE_COLUMNS, FEATURE_NAMES

        names = self.params.ffnn_features or FEATURE_NAMES
        return [FEATURE_COLUMNS.index(f"{axis}_{n}") for axis in AXES for n in names]

    def postprocess(self, pred: np.ndarray, elapsed_hours: np.ndarray) -> np.ndarray:
        """One bearing's predictions (rows in time order, one column per head) after the
        configured smoothing; the CNN and FFNN predictions are returned as they are."""
        if self.params.model not in HISTORY_MODELS or self.params.smooth_span <= 1:
            return pred
        cols = [
            smooth_failure_time(
                pred[:, i], elapsed_hours, self.params.smooth_span, self.params.smooth_down_span
            )
            for i in range(pred.shape[1])
        ]
        return np.stack(cols, axis=1)

    def predict_bearing(self, model: nn.Module, b: ProcessedBearing) -> np.ndarray:
        """``(n, k)`` predictions in hours for every snapshot of one bearing: the point estimate
        first, then the interval bounds when the model has quantile heads."""
        from kosmos_fl.ml.train import predict_heads

        return self.finish(predict_heads(model, self._inputs(b)), b)

    def finish(self, heads: np.ndarray, b: ProcessedBearing) -> np.ndarray:
        """A model's raw heads on bearing ``b`` as :meth:`predict_bearing` reports them
        (smoothed, floored, interval widened), so a benchmark can score kept model outputs
        under other post-processing settings exactly as ``predict`` would."""
        return self.widen(self.postprocess(heads, hours_since_start(b)))

    def widen(self, pred: np.ndarray) -> np.ndarray:
        """Point estimate and interval bounds floored at 0 hours (no RUL is negative), the bounds
        ordered around the point and scaled by ``interval_scale``; a point-only prediction is
        returned as it is."""
        if pred.shape[1] < 3:
            return pred
        point = np.maximum(pred[:, :1], 0.0)
        low = np.minimum(pred[:, 1:2], point)
        high = np.maximum(pred[:, -1:], point)
        s = self.params.interval_scale
        return np.concatenate(
            [point, np.maximum(point - s * (point - low), 0.0), point + s * (high - point)], axis=1
        )

    def _dataset(self, bearings: Mapping[str, ProcessedBearing]) -> ArrayDataset:
        if not bearings:
            raise DataError("no bearings selected: check data_path and the bearing names")
        reps = [1] * len(bearings)
        if self.params.model in HISTORY_MODELS and self.params.balance_bearings:
            reps = balance_repeats([len(b.rul_seconds) for b in bearings.values()])
        xs, ys = [], []
        for b, r in zip(bearings.values(), reps, strict=True):
            x, y = self._inputs(b), b.rul_seconds / SECONDS_PER_HOUR
            if self.params.rows_per_bearing and self.params.model in HISTORY_MODELS:
                idx = resample_index(len(y), self.params.rows_per_bearing)
                x, y, r = x[idx], y[idx], 1
            xs.append(np.tile(x, (r, 1)))
            ys.append(np.tile(y, r))
        x, y = np.concatenate(xs), np.concatenate(ys)
        return ArrayDataset(x.astype(np.float32, copy=False), y.astype(np.float32))

    def client_dataset(self, data_path: Path, selection: Sequence[str] | None) -> ArrayDataset:
        return self._dataset(self._bearings(data_path, selection))

    def eval_datasets(self, data_path: Path, names: Sequence[str]) -> dict[str, ArrayDataset]:
        out: dict[str, ArrayDataset] = {}
        for k, b in self._bearings(data_path, names).items():
            ds = self._dataset({k: b})
            out[k] = BearingEvalSet(ds.x, ds.y, elapsed_hours=hours_since_start(b))
        return out

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
        from kosmos_fl.ml.models import Cnn2021, CnnPadded, Ffnn2021, RulMlp
        from kosmos_fl.ml.ratio import RulRatio

        p = self.params
        if p.model == "ratio":
            return RulRatio(
                len(RATIO_INPUTS), point_quantile=p.point_quantile, bounds=p.quantiles, hidden=p.ratio_hidden
            )
        if p.model == "mlp":
            return RulMlp(
                n_health_inputs(**self._health_options()),
                hidden=p.hidden,
                dropout=p.dropout,
                quantiles=p.quantiles,
                n_passthrough=n_passthrough_inputs(
                    elapsed=p.elapsed, operating_condition=p.operating_condition
                ),
                batch_norm=p.batch_norm,
            )
        if p.model == "cnn":
            return Cnn2021()
        if p.model == "cnn_padded":
            return CnnPadded()
        return Ffnn2021(
            len(self._ffnn_columns()),
            hidden=p.ffnn_units,
            layers=p.ffnn_layers,
            dropout=0.5 if p.ffnn_dropout else 0.0,
            input_norm=p.ffnn_input_norm,
        )

    def evaluate(self, model: nn.Module, groups: Mapping[str, ArrayDataset]) -> dict[str, float]:
        """RMSE, MAE, PCC per bearing and mean, on the point predictions as ``predict`` reports
        them (smoothed when configured, then floored at 0); the elapsed hours the smoothing needs
        come with :meth:`eval_datasets` (else the last input column when ``elapsed`` is on)."""
        from kosmos_fl.ml.train import predict

        out = {}
        for k, g in groups.items():
            pred = predict(model, g.x)
            if self.params.model in HISTORY_MODELS:
                elapsed = getattr(g, "elapsed_hours", None)
                if elapsed is None and self.params.elapsed:
                    elapsed = g.x[:, -1]
                if elapsed is not None:
                    pred = self.postprocess(pred[:, None], np.asarray(elapsed, dtype=np.float64))[:, 0]
                pred = np.maximum(pred, 0.0)  # as predict_bearing: no RUL is negative
            out[k] = (g.y, pred)
        return regression_report(out)

    def predict_table(self, model: nn.Module, data_path: Path, *, all_rows: bool) -> pd.DataFrame:
        import pandas as pd

        frames = []
        for name, b in self._bearings(data_path, None).items():
            heads = self.predict_bearing(model, b)
            idx = np.arange(len(heads)) if all_rows else np.array([len(heads) - 1])
            cols: dict[str, Any] = {
                "bearing": name,
                "rul_hours": np.round(heads[idx, 0], 4),
                "snapshot": idx + 1,
                "elapsed_hours": np.round(hours_since_start(b)[idx], 4),
            }
            if heads.shape[1] >= 3:  # quantile heads: the interval, appended so old columns keep their place
                cols["rul_hours_low"] = np.round(heads[idx, 1], 4)
                cols["rul_hours_high"] = np.round(heads[idx, 2], 4)
                # the figure to plan on: the interval's low end, a lower quantile of the RUL
                # (its coverage on unseen bearings is in docs/RESULTS.md, "low <= true")
                cols["rul_hours_conservative"] = cols["rul_hours_low"]
            frames.append(pd.DataFrame(cols))
        if not frames:
            raise DataError(f"no bearing folders found in {data_path}")
        return pd.concat(frames, ignore_index=True)
