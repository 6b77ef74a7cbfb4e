"""Model-agnostic training and inference loops, and weight (de)serialisation.

Pure torch + numpy: no Flower and no MLflow here, so the same code serves clients, the server's
evaluation, centralised baselines in ``bench/`` and ``predict``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a session is reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # Integer buffers (batch-norm's num_batches_tracked) are counters, not weights: averaging or
    # adding noise to them is meaningless, so they stay local.
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's floating-point state (parameters and buffers such as batch-norm statistics) as
    numpy arrays in ``state_dict`` order; buffers travel too so the global model is complete."""
    return [t.detach().cpu().numpy().copy() for t in _float_state(model).values()]


def trainable_mask(model: nn.Module) -> np.ndarray:
    """Flat boolean mask over :func:`get_weights` (packed or not): True for the elements of
    trainable parameters, False for buffers such as batch-norm running statistics. Those
    statistics measure the site's feature scale, not what it learnt, so an update-norm screen
    (``fl.validation``) must not count them."""
    params = {name for name, p in model.named_parameters() if p.requires_grad}
    return np.concatenate(
        [np.full(t.numel(), name in params, dtype=bool) for name, t in _float_state(model).items()]
        or [np.zeros(0, dtype=bool)]
    )


def pack_weights(weights: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`get_weights` as ONE flat vector (a one-element list): what travels in a Flower
    message. Flower makes every array a separate object, and each object costs an HTTP round trip
    on every hop (ServerApp -> SuperLink -> SuperNode -> ClientApp and back): the 2021 CNN's 18
    tensors are 27 objects per message, one vector is 5. The aggregation maths (weighted means,
    medians, trimmed means, Krum distances, norm clipping, SecAgg+ masking) is per coordinate or
    over the whole update, so it gives the same result on the vector."""
    if not weights:
        return []
    dtype = np.result_type(*weights)
    return [np.concatenate([np.asarray(w, dtype=dtype).ravel() for w in weights])]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    """Load arrays produced by :func:`get_weights` (same architecture), or their
    :func:`pack_weights` vector, into ``model``."""
    state = _float_state(model)
    if len(weights) == 1 and len(state) > 1:  # the packed vector: split it along the state
        flat = np.asarray(weights[0])
        sizes = [int(t.numel()) for t in state.values()]
        if flat.ndim != 1 or flat.size != sum(sizes):
            raise ValueError(
                f"packed weights have shape {flat.shape}, expected ({sum(sizes)},) for this model"
            )
        cuts = np.cumsum(sizes)[:-1]
        weights = [
            part.reshape(tuple(t.shape)) for part, t in zip(np.split(flat, cuts), state.values(), strict=True)
        ]
    if len(weights) != len(state):
        raise ValueError(f"expected {len(state)} arrays, got {len(weights)}")
    new_state = {}
    for (name, ref), arr in zip(state.items(), weights, strict=True):
        if tuple(ref.shape) != tuple(np.shape(arr)):
            raise ValueError(f"array for '{name}' has shape {np.shape(arr)}, expected {tuple(ref.shape)}")
        new_state[name] = torch.as_tensor(np.asarray(arr), dtype=ref.dtype)
    model.load_state_dict(new_state, strict=False)


def train_epochs(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    loss_fn: LossFn | None = None,
    proximal_mu: float = 0.0,
    weight_decay: float = 0.0,
) -> float:
    """Train in place with Adam on shuffled mini-batches; returns the mean loss of the last epoch.

    ``proximal_mu > 0`` adds FedProx's proximal term mu/2 * ||w - w_global||^2, where w_global are
    the weights the model had on entry (the global model of this round). Without ``loss_fn`` a
    model's own ``training_loss(x, y)`` is used when it has one (models with several heads),
    else the mean squared error.
    """
    own_loss = getattr(model, "training_loss", None) if loss_fn is None else None
    loss_fn = loss_fn or nn.functional.mse_loss
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.array(x, dtype=np.float32))  # copies: inputs may be read-only maps
    yt = torch.from_numpy(np.array(y, dtype=np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    global_params = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    model.train()
    n = len(xt)
    last = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                continue  # batch-norm cannot train on a single sample
            opt.zero_grad()
            loss = own_loss(xt[idx], yt[idx]) if own_loss is not None else loss_fn(model(xt[idx]), yt[idx])
            if proximal_mu > 0:
                prox = sum(
                    ((p - g) ** 2).sum() for p, g in zip(model.parameters(), global_params, strict=True)
                )
                loss = loss + 0.5 * proximal_mu * prox
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        last = total / max(count, 1)
    return last


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Inference in eval mode, batched to bound memory; returns float64 ``(n,)``."""
    model.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        # a copy per batch: cached inputs are read-only memory maps, which torch must not wrap
        xb = torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float32))
        outs.append(model(xb).reshape(-1).double().numpy())
    return np.concatenate(outs) if outs else np.zeros(0)


@torch.no_grad()
def predict_heads(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """All output heads ``(n, k)`` of a model with ``predict_heads`` (point estimate first, then
    its quantiles), in eval mode; a single-output model gives ``(n, 1)``."""
    model.eval()
    heads = getattr(model, "predict_heads", None)
    outs = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float32))
        out = heads(xb) if heads is not None else model(xb)
        outs.append(out.reshape(len(xb), -1).double().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1))
