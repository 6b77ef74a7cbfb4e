"""Issue 20: data of the other kind gets an error that names the use case and what it reads,
not advice that would write bearings into a C-MAPSS path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kosmos_fl.data.turbofan.generate import generate_cmapss
from kosmos_fl.errors import DataError
from kosmos_fl.usecases.bearing import BearingUseCase
from kosmos_fl.usecases.turbofan import TurbofanUseCase


def test_bearing_use_case_given_a_cmapss_file(tmp_path: Path) -> None:
    nasa = generate_cmapss(tmp_path / "cmapss", units=3, seed=1)
    with pytest.raises(DataError) as err:
        BearingUseCase().client_dataset(nasa, None)
    msg = str(err.value)
    assert "BearingUseCase" in msg and "TurbofanUseCase" in msg
    assert "data generate" not in msg and "\n" not in msg


def test_turbofan_use_case_given_bearing_folders(generated_bearings: Path) -> None:
    with pytest.raises(DataError) as err:
        TurbofanUseCase().client_dataset(generated_bearings, None)
    msg = str(err.value)
    assert "TurbofanUseCase" in msg and "BearingUseCase" in msg
    assert "\n" not in msg
