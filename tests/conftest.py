"""Shared fixtures: paths to the real data sets, generated data, process helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


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
    from kosmos_fl.data.generate import generate_dataset

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
