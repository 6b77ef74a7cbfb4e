"""Training losses selectable by name, with the 2021 KOSMoS names (``loss`` of the turbofan use
case). Each takes predictions and targets ``(n,)`` and returns a scalar."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rmse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Root mean squared error (2021: ``RMSE`` / ``RootMeanSquaredError``)."""
    return torch.sqrt(torch.mean((y - pred) ** 2) + 1e-12)


def weighted_rmse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 2021 ``WeightedRootMeanSquaredError``: RMSE times alpha = 2 whenever it is above 0,
    times beta = 1 otherwise. As an RMSE is never negative, this is 2 x RMSE (as it was in 2021)."""
    value = rmse(pred, y)
    return torch.where(value > 0, 2.0 * value, value)


def msle(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithmic error, with negative values clipped at 0 as Keras does."""
    eps = 1e-7
    return torch.mean((torch.log1p(y.clamp(min=eps)) - torch.log1p(pred.clamp(min=eps))) ** 2)


def scoring_function(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 2021 ``ScoringFunction`` (the PHM08 score on ``y - pred``): sum of exp(d/13) - 1 for
    d < 0 and exp(d/10) - 1 otherwise."""
    d = y - pred
    return torch.sum(torch.where(d < 0, torch.exp(d / 13.0), torch.exp(d / 10.0)) - 1.0)


LOSSES: dict[str, LossFn] = {
    "mse": nn.functional.mse_loss,
    "rmse": rmse,
    "rootmeansquarederror": rmse,
    "weightedrootmeansquarederror": weighted_rmse,
    "wrmse": weighted_rmse,
    "huber": nn.functional.huber_loss,
    "msle": msle,
    "scoringfunction": scoring_function,
}


def loss_by_name(name: str) -> LossFn:
    """The loss called ``name`` (case-insensitive); unknown names raise ValueError listing them
    (2021 fell back to RMSE silently)."""
    try:
        return LOSSES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; use one of {', '.join(sorted(LOSSES))}") from None
