"""PyTorch models. The two 2021 KOSMoS bearing models, rebuilt layer for layer.

Models take float32 tensors and return one RUL value per sample, shape ``(n,)``.
"""

from __future__ import annotations

import torch
from torch import nn


class Cnn2021(nn.Module):
    """The 2021 CNN on STFT spectra: two 6x6 conv layers of 10 filters, each followed by 2x2
    max-pool and batch-norm, then dense 512-512 with dropout 0.5 and one output.

    Input ``(n, 129, 21, 2)`` (the spectra layout on disk, channels last) is permuted to NCHW here,
    so callers never reorder data.
    """

    def __init__(self, height: int = 129, width: int = 21, channels: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 10, kernel_size=6, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(10),
            nn.Conv2d(10, 10, kernel_size=6, padding="same"),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(10),
        )
        flat = 10 * (height // 2 // 2) * (width // 2 // 2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        return self.head(self.features(x)).squeeze(-1)


class Ffnn2021(nn.Module):
    """The 2021 feed-forward network on the 54 hand-crafted features: 2 x 512 with dropout.

    An input batch-norm standardises features federatedly (its running statistics are averaged
    with the weights), so no client has to share raw feature statistics.
    """

    def __init__(self, n_features: int = 54, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(n_features),
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (logged as part of the model summary)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
