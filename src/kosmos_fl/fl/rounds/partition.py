"""The data of a virtual client in ``kosmos-fl simulate``: its own slice of the pooled data set.

Flower's simulation engine runs many virtual clients one after another in a few long-lived Ray
worker processes. Loading and preparing the pooled training data on every call cost more than
the training itself (about 60 % of a call, measured with cProfile on the generated bearings), so
each worker process keeps the pooled arrays of the session it serves and every call only takes
its partition from them. Only immutable things are kept: the arrays (made read-only) and the use
case's class; the use case and the model are built afresh for every call. The data set is taken
as unchanged while a session runs (files edited mid-session reach new Ray workers only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from kosmos_fl.fl.session import NodeSpec
from kosmos_fl.usecases import usecase_class
from kosmos_fl.usecases.base import ArrayDataset, UseCase


@dataclass(frozen=True)
class PoolKey:
    """Everything the pooled data set depends on. The session id is part of it so that a worker
    process that outlives a session never serves a later session (whose data may have been
    regenerated at the same path) from the earlier load."""

    session_id: str
    usecase_name: str
    usecase_version: str
    #: the use case's parameters as canonical JSON (they may select or shape the inputs)
    usecase_params: str
    data_path: str
    selection: tuple[str, ...] | None

    @classmethod
    def of(cls, spec: NodeSpec) -> PoolKey:
        return cls(
            session_id=spec.session_id,
            usecase_name=spec.usecase_name,
            usecase_version=spec.usecase_version,
            usecase_params=json.dumps(spec.usecase_params, sort_keys=True, default=str),
            data_path=spec.data_path,  # as given: it may be a database DSN, not a path
            selection=None if spec.selection is None else tuple(spec.selection),
        )


@functools.lru_cache(maxsize=8)
def _usecase_class(name: str, version: str) -> type[UseCase]:
    # the entry-point lookup behind usecase_class costs about 7 ms a call
    return usecase_class(name, version)


@functools.lru_cache(maxsize=2)
def pooled_dataset(key: PoolKey) -> ArrayDataset:
    """The training data every virtual client of one session slices, loaded once per process.
    Read-only, so no client can change what the next one trains on."""
    usecase = _usecase_class(key.usecase_name, key.usecase_version)(json.loads(key.usecase_params))
    data = usecase.client_dataset(Path(key.data_path), key.selection)
    x, y = data.x.copy(), data.y.copy()  # own copies: the use case may hand out shared arrays
    x.flags.writeable = False
    y.flags.writeable = False
    return ArrayDataset(x, y)


def take_partition(data: ArrayDataset, index: int, count: int) -> ArrayDataset:
    """Partition ``index`` of ``count``: every ``count``-th sample from ``index`` on (disjoint
    partitions that together cover ``data``, each spread over all units and times)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"partition {index} of {count} does not exist; need 0 <= index < count")
    return ArrayDataset(data.x[index::count], data.y[index::count])


def virtual_client_data(spec: NodeSpec) -> tuple[UseCase, ArrayDataset]:
    """A fresh use case and the virtual client's partition of the pooled data (``spec`` must
    carry a partition)."""
    if spec.partition is None:
        raise ValueError(f"client {spec.client_id} is not a virtual client (its node spec has no partition)")
    usecase = _usecase_class(spec.usecase_name, spec.usecase_version)(spec.usecase_params)
    index, count = spec.partition
    return usecase, take_partition(pooled_dataset(PoolKey.of(spec)), index, count)
