"""Virtual clients' data: one pooled load per worker process, a disjoint slice per client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
import pytest

from kosmos_fl.fl.rounds import partition
from kosmos_fl.fl.rounds.local_training import train_locally
from kosmos_fl.fl.rounds.partition import PoolKey, pooled_dataset, take_partition, virtual_client_data
from kosmos_fl.fl.session import NodeSpec
from kosmos_fl.ml.train import get_weights
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.base import ArrayDataset
from kosmos_fl.usecases.bearing import BearingUseCase

TRAIN = ["Bearing1_1", "Bearing1_2", "Bearing2_1", "Bearing2_2"]


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    pooled_dataset.cache_clear()
    yield
    pooled_dataset.cache_clear()


def _spec(data: Path, index: int, count: int, session: str = "s1", **params: Any) -> NodeSpec:
    return NodeSpec(
        session_id=session,
        client_id=index,
        usecase_name="BearingUseCase",
        usecase_version=BearingUseCase.version,
        usecase_params={"model": "ffnn", **params},
        data_path=str(data),
        selection=TRAIN,
        torch_threads=1,
        partition=(index, count),
    )


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every real data load of the pooled data set, by the bearings it read."""
    seen: list[tuple[str, ...]] = []
    original = BearingUseCase.client_dataset

    def counting(self: BearingUseCase, data_path: Path, selection: Any) -> ArrayDataset:
        seen.append(tuple(selection))
        return original(self, data_path, selection)

    monkeypatch.setattr(BearingUseCase, "client_dataset", counting)
    return seen


def test_partitions_are_disjoint_and_cover_the_data() -> None:
    data = ArrayDataset(np.arange(103, dtype=np.float32)[:, None], np.arange(103, dtype=np.float32))
    for count in (1, 2, 7, 103):
        parts = [take_partition(data, i, count) for i in range(count)]
        rows = np.concatenate([p.y for p in parts])
        assert sorted(rows.tolist()) == data.y.tolist()  # every sample exactly once
        assert all(np.array_equal(p.x[:, 0], p.y) for p in parts)  # inputs stay with their targets
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


@pytest.mark.parametrize(("index", "count"), [(-1, 3), (3, 3), (0, 0)])
def test_a_partition_that_does_not_exist_is_an_error(index: int, count: int) -> None:
    data = ArrayDataset(np.zeros((5, 1), np.float32), np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=f"partition {index} of {count} does not exist"):
        take_partition(data, index, count)


def test_each_virtual_client_gets_its_slice_of_the_same_data_as_an_uncached_load(
    generated_bearings: Path, loads: list[tuple[str, ...]]
) -> None:
    full = load_usecase("BearingUseCase", {"model": "ffnn"}).client_dataset(generated_bearings, TRAIN)
    loads.clear()
    for i in range(4):
        usecase, got = virtual_client_data(_spec(generated_bearings, i, 4))
        assert isinstance(usecase, BearingUseCase)
        np.testing.assert_array_equal(got.x, full.x[i::4])
        np.testing.assert_array_equal(got.y, full.y[i::4])
    assert loads == [tuple(TRAIN)]  # four clients, one load


def test_same_key_is_served_from_the_cache_and_read_only(
    generated_bearings: Path, loads: list[tuple[str, ...]]
) -> None:
    key = PoolKey.of(_spec(generated_bearings, 0, 2))
    first = pooled_dataset(key)
    assert pooled_dataset(PoolKey.of(_spec(generated_bearings, 1, 2))) is first  # partition not in key
    assert len(loads) == 1
    with pytest.raises(ValueError, match="read-only"):
        first.x[0, 0] = 1.0


def test_anything_that_changes_the_data_is_a_new_load(
    generated_bearings: Path, loads: list[tuple[str, ...]]
) -> None:
    ffnn = pooled_dataset(PoolKey.of(_spec(generated_bearings, 0, 2)))
    mlp = pooled_dataset(PoolKey.of(_spec(generated_bearings, 0, 2, model="mlp")))
    assert ffnn.x.shape[1] != mlp.x.shape[1]  # other parameters, other inputs
    other_session = pooled_dataset(PoolKey.of(_spec(generated_bearings, 0, 2, session="s2")))
    assert other_session is not ffnn
    np.testing.assert_array_equal(other_session.x, ffnn.x)
    fewer = _spec(generated_bearings, 0, 2).model_copy(update={"selection": TRAIN[:2]})
    assert len(pooled_dataset(PoolKey.of(fewer))) < len(ffnn)
    assert len(loads) == 4


def test_parameter_order_does_not_split_the_cache() -> None:
    a = PoolKey.of(_spec(Path("/d"), 0, 2, spans=[10.0, 100.0], baseline=30))
    b = PoolKey.of(_spec(Path("/d"), 0, 2, baseline=30, spans=[10.0, 100.0]))
    assert a == b


def test_a_client_without_partition_is_refused(generated_bearings: Path) -> None:
    spec = _spec(generated_bearings, 0, 2).model_copy(update={"partition": None})
    with pytest.raises(ValueError, match="not a virtual client"):
        virtual_client_data(spec)


def test_training_is_the_same_with_a_warm_or_cold_cache(generated_bearings: Path) -> None:
    """Serving many clients in one process changes nothing: a client trains to the same weights
    whether it is the first call of a process or follows other clients."""
    config = {"server-round": 1, "seed": 42, "local-epochs": 1, "learning-rate": 1e-3, "batch-size": 8}
    start = get_weights(load_usecase("BearingUseCase", {"model": "ffnn"}).build_model())

    def train(index: int) -> list[np.ndarray]:
        model, data, _ = train_locally(_spec(generated_bearings, index, 3), config, lambda: start)
        assert len(data) > 0
        return get_weights(model)

    cold = train(2)
    other = train(1)
    warm = train(2)
    assert partition.pooled_dataset.cache_info().hits >= 2
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(cold, other, strict=True))
    assert any(not np.array_equal(a, s) for a, s in zip(cold, start, strict=True))  # it did train


# --------------------------------------------------------------------------- engine dispatch


@dataclass
class _Meta:
    dst_node_id: int
    delivered_at: str = ""


@dataclass
class _Msg:
    metadata: _Meta


@dataclass
class _State:
    """The parts of Flower's in-memory link state the extractor reads, with a log of asks."""

    message_ins_store: dict[str, _Msg]
    lock: Any = field(default_factory=threading.RLock)
    asked: list[int] = field(default_factory=list)

    def get_message_ins(self, node_id: int, limit: int | None) -> list[_Msg]:
        self.asked.append(node_id)
        out = [m for m in self.message_ins_store.values() if m.metadata.dst_node_id == node_id]
        out = [m for m in out if not m.metadata.delivered_at][:limit]
        for m in out:
            m.metadata.delivered_at = "now"
        return out


def test_the_extractor_asks_only_for_nodes_with_waiting_messages() -> None:
    from kosmos_fl.fl.simulation.fast_dispatch import _dispatch_waiting

    store = {f"m{n}": _Msg(_Meta(n)) for n in (3, 7)}
    store["old"] = _Msg(_Meta(5, delivered_at="earlier"))
    state = _State(store)
    queue: Queue[_Msg] = Queue()
    stop = threading.Event()
    t = threading.Thread(target=_dispatch_waiting, args=(state, queue, {n: n for n in range(10)}, stop))
    t.start()
    got = [queue.get(timeout=10).metadata.dst_node_id for _ in range(2)]
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    assert got == [3, 7]  # in node order, as Flower's extractor
    assert set(state.asked) == {3, 7}  # node 5's message was delivered already; others have none
    assert queue.empty()


def test_fast_dispatch_is_undone_after_the_simulation() -> None:
    from flwr.server.superlink.fleet.vce import vce_api

    from kosmos_fl.fl.simulation.fast_dispatch import fast_dispatch

    original = vce_api.add_messages_to_queue
    with fast_dispatch() as used:
        assert used
        assert vce_api.add_messages_to_queue is not original
    assert vce_api.add_messages_to_queue is original
