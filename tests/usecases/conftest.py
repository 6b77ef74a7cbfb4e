"""Fixtures of the use-case tests: a generated C-MAPSS set and the real FD001 training file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_datasets


@pytest.fixture(scope="session")
def cmapss_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated FD001-like folder: train_FD001.txt (20 engines), test_FD001.txt, RUL_FD001.txt."""
    from kosmos_fl.data.turbofan.generate import generate_cmapss

    folder = tmp_path_factory.mktemp("cmapss")
    generate_cmapss(folder, units=20, seed=3)
    return folder


@pytest.fixture(scope="session")
def cmapss_train(cmapss_dir: Path) -> Path:
    return cmapss_dir / "train_FD001.txt"


@pytest.fixture(scope="session")
def fd001_train() -> Path:
    """The real NASA train_FD001.txt from ../shared/datasets (a clear failure when missing)."""
    path = shared_datasets() / "cmapss" / "train_FD001.txt"
    if not path.is_file():
        pytest.fail(f"real C-MAPSS file {path} is missing: the turbofan real-data tests need it")
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small models train faster on one thread (no thread hand-off per tiny op), and tests stay
    quick on a busy machine; the previous setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
