"""Fixtures for the data tests: real FEMTO / C-MAPSS files from ../shared and generated data.

Real data lives in ``<repo>/../shared/datasets`` (never in the repo). When it is missing the
tests that need it fail with a message saying so, instead of skipping silently.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_datasets() -> Path:
    """``../shared/datasets`` beside the repository (override: KOSMOS_SHARED_DATASETS)."""
    override = os.environ.get("KOSMOS_SHARED_DATASETS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "datasets"


def require_shared(relative: str) -> Path:
    path = shared_datasets() / relative
    if not path.exists():
        pytest.fail(
            f"real data {path} is missing: these tests need the shared data sets beside the "
            f"repository (../shared/datasets, see its README) or KOSMOS_SHARED_DATASETS",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def femto_bearing3_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Learning_set/Bearing3_1 (515 snapshots, with temp_*.csv) extracted into a temp dir."""
    archive = require_shared("femto/Learning_set_Bearing3_1.tar.xz")
    root = tmp_path_factory.mktemp("femto31")
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(root, filter="data")
    folder = root / "Learning_set" / "Bearing3_1"
    assert folder.is_dir(), f"unexpected archive layout in {archive}"
    return folder


@pytest.fixture(scope="session")
def femto_bearing1_4_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first five acc files of Full_Test_Set/Bearing1_4 (the ';'-separated bearing).

    Streams the archive and stops after those members, so only its start is decompressed.
    """
    archive = require_shared("femto/Full_Test_Set_Bearing1_4.tar.xz")
    root = tmp_path_factory.mktemp("femto14")
    wanted = {f"acc_{i:05d}.csv" for i in range(1, 6)}
    with tarfile.open(archive, "r|xz") as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                tar.extract(member, root, filter="data")
                wanted.discard(name)
                if not wanted:
                    break
    assert not wanted, f"{archive} lacks {sorted(wanted)}"
    return root / "Full_Test_Set" / "Bearing1_4"


@pytest.fixture(scope="session")
def cmapss_train_fd001() -> Path:
    return require_shared("cmapss/train_FD001.txt")


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 17 synthetic bearings, 30-60 snapshots each (read-only: copy before changing)."""
    from kosmos_fl.data.bearing.generate import generate_dataset

    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root, bearings=17, seed=0, snapshots=(30, 60))
    return root


@pytest.fixture(scope="session")
def generated_processed(generated_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from kosmos_fl.data.bearing.processed import load_bearings

    return load_bearings(generated_root, cache_dir=tmp_path_factory.mktemp("gencache"))


SnapshotWriter = Callable[..., Path]


@pytest.fixture
def write_snapshot() -> SnapshotWriter:
    """Write one acc file: ``write_snapshot(folder, index, (h, m, s, us), values=None, sep=",")``."""

    def write(
        folder: Path,
        index: int,
        time_of_day: tuple[int, int, int, float],
        values: np.ndarray | None = None,
        sep: str = ",",
        rows: int = 2560,
    ) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if values is None:
            values = np.random.default_rng(index).normal(0, 0.4, (rows, 2)).round(3)
        h, m, s, us = time_of_day
        lines = [
            sep.join([str(h), str(m), str(s), f"{us + 39 * i:.5g}", f"{a:g}", f"{b:g}"])
            for i, (a, b) in enumerate(values[:rows])
        ]
        path = folder / f"acc_{index:05d}.csv"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write
