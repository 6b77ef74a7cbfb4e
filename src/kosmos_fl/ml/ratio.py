"""A remaining-life model that predicts RUL as a learnt multiple of the time already run.

On bearings it has never seen, a model that maps health indicators straight to hours learns the
training bearings' lives, not the physics (docs/RESULTS.md). Here the target is the log of
``RUL / elapsed`` (both offset by ``time_offset`` hours so the start is defined), which is the
same for a short-lived and a long-lived bearing at the same share of their lives, and the inputs
are per-bearing normalised (:func:`kosmos_fl.data.bearing.onset.ratio_inputs`, whose first column is the
log of the offset elapsed hours). Every head is a quantile of that log-ratio, fitted with the
pinball loss: the point estimate is a low quantile on purpose (a late RUL breaks machines and the
PHM 2012 score punishes it four times harder), the others bound the interval. A linear body by
default: with a handful of run-to-failure histories, more capacity memorises bearings
(bench/bench_accuracy.py measures it).
"""

from __future__ import annotations

import torch
from torch import nn

from kosmos_fl.ml.models import pinball_loss


class RulRatio(nn.Module):
    """``forward`` returns the point RUL ``(n,)`` in hours; :meth:`predict_heads` the point and
    the quantile bounds ``(n, 1 + len(bounds))``."""

    def __init__(
        self,
        n_inputs: int,
        *,
        point_quantile: float = 0.2,
        bounds: tuple[float, ...] = (0.1, 0.9),
        hidden: tuple[int, ...] = (),
        time_offset: float = 0.05,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1 + len(bounds))
        self.quantiles = (float(point_quantile), *(float(q) for q in bounds))
        self.time_offset = float(time_offset)

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1 + Q)`` predicted quantiles of ``log((RUL + c) / (elapsed + c))``."""
        return self.out(self.body(x))

    def predict_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Hours: the point estimate, then one column per bound; never negative."""
        z = self.log_ratio(x) + x[:, :1]  # column 0 is log(elapsed + c)
        return (torch.exp(z.clamp(max=20.0)) - self.time_offset).clamp(min=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_heads(x)[:, 0]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum of the pinball losses of all heads on the log-ratio target (``y`` in hours)."""
        target = torch.log(y.clamp(min=0.0) + self.time_offset) - x[:, 0]
        z = self.log_ratio(x)
        return sum((pinball_loss(z[:, i], target, q) for i, q in enumerate(self.quantiles)), torch.zeros(()))
