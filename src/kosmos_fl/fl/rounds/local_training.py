"""The local part of a round, shared by plain rounds (:mod:`kosmos_fl.fl.apps.client_app`) and
SecAgg+ rounds (:mod:`kosmos_fl.fl.rounds.secure`): load this site's data, set the global weights, train.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kosmos_fl.fl import client_hooks
from kosmos_fl.fl.rounds.partition import virtual_client_data
from kosmos_fl.fl.session import NodeSpec
from kosmos_fl.ml.train import seed_everything, set_weights, train_epochs
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.base import ArrayDataset


def train_locally(
    spec: NodeSpec, config: Any, weights: Callable[[], list[np.ndarray]]
) -> tuple[Any, ArrayDataset, float]:
    """The local part of a round, shared by plain and SecAgg+ rounds: this site's data (or its
    simulation partition), the global ``weights`` (read once the model is built; packed or per
    tensor, see :func:`~kosmos_fl.ml.train.pack_weights`), ``local-epochs`` of seeded training."""
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    server_round = int(config["server-round"])
    seed = int(config["seed"]) + 1000 * spec.client_id + server_round
    seed_everything(seed)
    if spec.partition is not None:  # a virtual client of `kosmos-fl simulate`: pooled data, once per process
        usecase, data = virtual_client_data(spec)
    else:
        usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
        data = usecase.client_dataset(Path(spec.data_path), spec.selection)
    model = usecase.build_model()
    set_weights(model, weights())
    client_hooks.before_training()  # no-op unless KOSMOS_FL_CLIENT_HOOKS names a hook module
    loss = train_epochs(
        model,
        data.x,
        data.y,
        epochs=spec.local_epochs or int(config["local-epochs"]),  # a site's own override wins
        lr=spec.learning_rate or float(config["learning-rate"]),
        batch_size=int(config["batch-size"]),
        seed=seed,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )
    return model, data, float(loss)
