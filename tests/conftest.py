"""Shared fixtures: paths to the real data sets, generated data, process helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kosmos_fl.fl.client_hooks import HOOKS_ENV

# The clients this suite starts (they inherit its environment) load the test-only fault injection
# of kosmos_fl.testing through the ClientApp's hook; inactive unless a test sets KOSMOS_FL_FAULT.
os.environ.setdefault(HOOKS_ENV, "kosmos_fl.testing.faults")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker trains its in-process models on one torch thread: two workers
    on two cores with two threads each only wait for one another (child processes are unchanged)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``-n 2 --dist loadgroup``), queue the end-to-end tests
    (real processes, 30-200 s each) before the short ones: the workers take the next test when they
    are free, so the short tests fill the gaps at the end instead of one long test running alone."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: file order kept


def shared_datasets() -> Path:
    """../shared/datasets, or a failure that says what is missing (never a silent skip)."""
    if not (SHARED / "README.md").exists():
        pytest.fail(
            f"real data sets not found at {SHARED}: tests that use real FEMTO / C-MAPSS data need the "
            "project's ../shared/datasets folder next to the repository"
        )
    return SHARED


@pytest.fixture(scope="session")
def generated_bearings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated FEMTO-format data set (client and test bearings), shared by the session."""
    from kosmos_fl.data.bearing.generate import generate_dataset

    out = tmp_path_factory.mktemp("gen-bearings")
    generate_dataset(
        out,
        bearings=["Bearing1_1", "Bearing1_2", "Bearing2_1", "Bearing2_2", "Bearing1_3", "Bearing2_3"],
        seed=7,
        snapshots=(40, 60),
    )
    return out


@pytest.fixture
def clean_env() -> dict[str, str]:
    """Environment for child processes: no DYNACONF_ leftovers, no telemetry."""
    from kosmos_fl.localfed import child_env

    return child_env()


def write_2021_turbofan_csv(path: Path, units: int = 12, seed: int = 3) -> Path:
    """A C-MAPSS-like CSV in the 2021 KOSMoS layout: pandas' unnamed row-number column,
    ``unit_num``, ``setting_1..3``, ``sensor_01..sensor_21``, the label ``rul`` and ``file_id``
    (rows of file 1 and of a second file 2 whose unit numbers repeat); no cycle column, the row
    order is the cycle order as in 2021."""
    from kosmos_fl.data.turbofan.cmapss import add_rul, read_cmapss
    from kosmos_fl.data.turbofan.generate import generate_cmapss

    frames = []
    for file_id in (1, 2):
        nasa = read_cmapss(generate_cmapss(path.parent / f"nasa{file_id}", units=units, seed=seed + file_id))
        nasa = add_rul(nasa, cap=None)
        old = nasa.rename(columns={f"s_{i}": f"sensor_{i:02d}" for i in range(1, 22)})
        old = old.rename(columns={"unit": "unit_num"}).drop(columns=["cycle"])
        frames.append(old.assign(file_id=file_id))
    import pandas as pd

    pd.concat(frames, ignore_index=True).to_csv(path)  # index=True: the "Unnamed: 0" column
    return path


@pytest.fixture(scope="session")
def turbofan_2021_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2021-layout turbofan CSV (see :func:`write_2021_turbofan_csv`)."""
    return write_2021_turbofan_csv(tmp_path_factory.mktemp("tf2021") / "train.csv")
