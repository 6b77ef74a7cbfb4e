"""PyTorch models: the 2021 KOSMoS models rebuilt layer for layer, and this project's own.

Models take float32 tensors and return one RUL value per sample, shape ``(n,)``.
"""

from __future__ import annotations

import torch
from torch import nn


class Cnn2021(nn.Module):
    """The 2021 CNN on STFT spectra, layer for layer (Keras ``build_cnn`` of 2021): two 6x6
    convolutions of 10 filters without padding and without activation, each followed by 2x2
    max-pool and batch-norm, then dense 512-512 (ReLU) with dropout 0.5 and one output.

    411,421 trainable parameters for ``(129, 21, 2)`` spectra, as the 2021 Keras model (whose
    summary adds the 40 non-trainable batch-norm statistics). Batch-norm uses Keras' momentum
    (0.99) and epsilon (1e-3). Input ``(n, 129, 21, 2)`` (the spectra layout on disk, channels
    last) is permuted to NCHW here, so callers never reorder data.
    """

    def __init__(self, height: int = 129, width: int = 21, channels: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 10, kernel_size=6),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(10, eps=1e-3, momentum=0.01),
            nn.Conv2d(10, 10, kernel_size=6),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(10, eps=1e-3, momentum=0.01),
        )
        flat = 10 * ((((height - 5) // 2) - 5) // 2) * ((((width - 5) // 2) - 5) // 2)
        self.head = _dense_head(flat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        return self.head(self.features(x)).squeeze(-1)


class CnnPadded(nn.Module):
    """``model: cnn_padded``: the variant of :class:`Cnn2021` that this project used as ``cnn``
    before it was made exact: 'same' padding and a ReLU after each convolution (1,087,261
    parameters). Kept so earlier results can be reproduced."""

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
        self.head = _dense_head(10 * (height // 2 // 2) * (width // 2 // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        return self.head(self.features(x)).squeeze(-1)


def _dense_head(flat: int) -> nn.Sequential:
    """The 2021 CNN's head: flatten, dense 512-512 with ReLU and dropout 0.5, one output."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(512, 1),
    )


class Ffnn2021(nn.Module):
    """The 2021 feed-forward network on hand-crafted features (``build_ffnn_model`` of 2021):
    ``layers`` dense layers of ``hidden`` units with ReLU, each followed by dropout (2021: 0.5 when
    on), and one output; 2021's defaults are the 54 features, 2 x 512, dropout on.

    ``input_norm`` (not in 2021, off by default) adds an input batch-norm that standardises the
    features federatedly (its running statistics are averaged with the weights).
    """

    def __init__(
        self,
        n_features: int = 54,
        hidden: int = 512,
        dropout: float = 0.5,
        layers: int = 2,
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        parts: list[nn.Module] = [nn.BatchNorm1d(n_features)] if input_norm else []
        width = n_features
        for _ in range(layers):
            parts += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                parts.append(nn.Dropout(dropout))
            width = hidden
        parts.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (logged as part of the model summary)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- sequence models
# Turbofan (C-MAPSS) models take windows ``(n, seq_len, features + 1)`` whose last channel is a
# mask: 1 for a real cycle, 0 for left padding before an engine's first cycle (padded steps hold 0).
# Both scale their output by ``target_scale`` (the RUL cap) so the layers work on values near 1
# whatever the unit of the target, which makes training converge at the usual learning rates.


def _right_align(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features with each window's real steps moved to the front (in order), and the window
    lengths, so a recurrent layer starts at the first real step."""
    mask = x[..., -1]
    feats = x[..., :-1]
    steps = x.shape[1]
    lengths = mask.sum(dim=1).round().long().clamp(min=1)
    shift = steps - lengths
    idx = (torch.arange(steps, device=x.device)[None, :] + shift[:, None]) % steps
    return torch.gather(feats, 1, idx[..., None].expand_as(feats)), lengths


class Lstm2021(nn.Module):
    """The 2021-style C-MAPSS LSTM (Keras ``Masking -> LSTM(100, return_sequences) -> Dropout(0.2)
    -> LSTM(50) -> Dropout(0.2) -> Dense(1)``).

    Padded steps are skipped exactly as Keras' masking does (the state starts at an engine's first
    real cycle and the output is taken at its last one): each window's real steps are moved to the
    front, the LSTMs run over the whole window, and the output is read at step ``length - 1``,
    which no later (padded) step can influence. This is as exact as ``pack_padded_sequence`` and
    about twice as fast on CPU.
    """

    def __init__(
        self,
        n_features: int = 14,
        hidden: tuple[int, int] = (100, 50),
        dropout: float = 0.2,
        target_scale: float = 125.0,
    ) -> None:
        super().__init__()
        self.lstm1 = nn.LSTM(n_features, hidden[0], batch_first=True)
        self.lstm2 = nn.LSTM(hidden[0], hidden[1], batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden[1], 1)
        self.target_scale = float(target_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, lengths = _right_align(x)
        h1, _ = self.lstm1(feats)
        h2, _ = self.lstm2(self.dropout(h1))
        last = h2[torch.arange(len(x), device=x.device), lengths - 1]
        return self.out(self.dropout(last)).squeeze(-1) * self.target_scale


class CnnRul(nn.Module):
    """1-D CNN over the cycles of a C-MAPSS window, after Li, Ding & Sun (2018, "Remaining useful
    life estimation in prognostics using deep convolution neural networks"): four convolutions of
    10 filters x 10 cycles and one of 1 filter x 3 cycles (tanh, length kept), flattened, dropout,
    a dense layer of 100 and the output. Padded steps are zeroed and the mask is an input channel.

    About 9k parameters (the LSTM has 77k) and about 6x cheaper per epoch on CPU, for about 0.7
    cycles more RMSE than :class:`Lstm2021` on held-out FD001 engines (bench/bench_cmapss.py).
    """

    def __init__(
        self,
        n_features: int = 14,
        seq_len: int = 30,
        filters: int = 10,
        kernel: int = 10,
        dropout: float = 0.5,
        target_scale: float = 125.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = n_features + 1
        for _ in range(4):
            # explicit "same" padding: (kernel - 1) zeros split left/right like padding="same"
            layers += [nn.ZeroPad1d(((kernel - 1) // 2, kernel // 2)), nn.Conv1d(channels, filters, kernel)]
            layers.append(nn.Tanh())
            channels = filters
        layers += [nn.Conv1d(filters, 1, 3, padding=1), nn.Tanh()]
        self.conv = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(seq_len, 100), nn.Tanh(), nn.Linear(100, 1)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
        self.target_scale = float(target_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[..., -1:]
        x = torch.cat([x[..., :-1] * mask, mask], dim=-1)  # padded steps are zero, whatever they held
        return self.head(self.conv(x.transpose(1, 2))).squeeze(-1) * self.target_scale


# --------------------------------------------------------------------------- bearing health model


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantile: float) -> torch.Tensor:
    """Quantile (pinball) loss: its minimiser is the ``quantile``-th conditional quantile."""
    d = target - pred
    return torch.mean(torch.maximum(quantile * d, (quantile - 1.0) * d))


class RulMlp(nn.Module):
    """Small MLP on health-indicator inputs (:mod:`kosmos_fl.data.bearing.health`) with a point head and
    quantile heads for a prediction interval.

    An input batch-norm standardises inputs federatedly (its statistics are averaged with the
    weights). ``forward`` returns the point estimate ``(n,)`` like every model here, so training,
    evaluation and serving code need not know about the heads; :meth:`predict_heads` returns
    ``(n, 1 + len(quantiles))`` and :meth:`training_loss` (picked up by
    :func:`kosmos_fl.ml.train.train_epochs`) is MSE on the point head plus the pinball loss of each
    quantile head. Outputs are scaled by ``target_scale`` so the layers work on values near 1.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.1,
        quantiles: tuple[float, ...] = (0.1, 0.9),
        target_scale: float = 5.0,
        n_passthrough: int = 0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        # The last ``n_passthrough`` inputs (already on a fixed scale) bypass the batch-norm: a
        # column that is constant on a client (its operating condition) has zero variance in every
        # client's batches, so federated running statistics would blow it up at inference.
        self.n_passthrough = int(n_passthrough)
        self.norm: nn.Module = nn.BatchNorm1d(n_inputs - self.n_passthrough) if batch_norm else nn.Identity()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1 + len(quantiles))
        self.quantiles = tuple(float(q) for q in quantiles)
        self.target_scale = float(target_scale)

    def predict_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1 + Q)``: the point estimate, then one column per quantile (in ``quantiles``)."""
        k = x.shape[1] - self.n_passthrough
        x = torch.cat([self.norm(x[:, :k]), x[:, k:]], dim=1)
        return self.out(self.body(x)) * self.target_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_heads(x)[:, 0]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """MSE of the point head plus the pinball loss of every quantile head, on the scale of
        ``target_scale`` so the two kinds of terms are of similar size."""
        heads = self.predict_heads(x) / self.target_scale
        y = y / self.target_scale
        loss = nn.functional.mse_loss(heads[:, 0], y)
        for i, q in enumerate(self.quantiles, start=1):
            loss = loss + pinball_loss(heads[:, i], y, q)
        return loss


# --------------------------------------------------------------------------- the 2021 turbofan LSTM


class KerasLstm(nn.Module):
    """One Keras ``LSTM(units, activation=...)`` layer with Keras masking, in PyTorch.

    Same parameters as Keras (``kernel (F, 4H)``, ``recurrent_kernel (H, 4H)``, one ``bias (4H)``;
    gate order i, f, c, o; Glorot-uniform / orthogonal / zeros with forget bias 1, Keras' defaults),
    the configurable cell activation (2021 used ``sigmoid`` where PyTorch's ``nn.LSTM`` has a fixed
    tanh) and Keras' mask semantics: a masked step leaves the state unchanged, so the output is the
    state after the last unmasked step. Returns the last output ``(n, H)``.
    """

    def __init__(self, n_features: int, units: int, activation: str = "sigmoid") -> None:
        super().__init__()
        self.units = units
        self.kernel = nn.Parameter(torch.empty(n_features, 4 * units))
        self.recurrent_kernel = nn.Parameter(torch.empty(units, 4 * units))
        self.bias = nn.Parameter(torch.zeros(4 * units))
        nn.init.xavier_uniform_(self.kernel)
        nn.init.orthogonal_(self.recurrent_kernel)
        with torch.no_grad():
            self.bias[units : 2 * units] = 1.0  # unit_forget_bias
        acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
        if activation not in acts:
            raise ValueError(f"activation must be one of {', '.join(acts)}, not {activation!r}")
        self.activation = acts[activation]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, steps, _ = x.shape
        h = x.new_zeros(n, self.units)
        c = x.new_zeros(n, self.units)
        projected = x @ self.kernel + self.bias  # (n, steps, 4H), all steps at once
        for t in range(steps):
            z = projected[:, t] + h @ self.recurrent_kernel
            i, f, g, o = z.chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * self.activation(g)
            h_new = torch.sigmoid(o) * self.activation(c_new)
            keep = mask[:, t, None]
            c = torch.where(keep, c_new, c)
            h = torch.where(keep, h_new, h)
        return h


class Lstm2021Kosmos(nn.Module):
    """The 2021 KOSMoS turbofan network exactly (``model: lstm2021``): Keras
    ``Masking(mask_value=-99) -> LSTM(256, activation="sigmoid") -> Dropout(0.1) -> Dense(1)``.

    Input ``(n, steps, F + 1)``: the use case's windows, whose last channel marks real cycles; the
    padded steps are given ``padding_value`` (2021: -99) and a step is masked when all its features
    equal it, as Keras' ``Masking`` does. The output is multiplied by the constant ``target_scale``
    (no parameter; 1 keeps the raw 2021 output) so the Dense layer works on values near 1.
    Parameters: ``4 * 256 * (F + 256 + 1) + 257`` as in Keras (PyTorch's own LSTM would add a
    second bias).
    """

    def __init__(
        self,
        n_features: int,
        units: int = 256,
        dropout: float = 0.1,
        padding_value: float = -99.0,
        activation: str = "sigmoid",
        target_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.padding_value = float(padding_value)
        self.lstm = KerasLstm(n_features, units, activation)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(units, 1)
        nn.init.xavier_uniform_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)
        self.target_scale = float(target_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = x[..., -1:] > 0.5
        feats = torch.where(real, x[..., :-1], torch.full_like(x[..., :-1], self.padding_value))
        mask = (feats != self.padding_value).any(dim=-1)  # keras.layers.Masking
        last = self.lstm(feats, mask)
        return self.dense(self.dropout(last)).squeeze(-1) * self.target_scale
