"""Use-case discovery through entry points: unknown names and version mismatches are refused with
a message that says what is installed and what to do."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from kosmos_fl import usecases
from kosmos_fl.errors import UseCaseError
from kosmos_fl.usecases import ENTRY_POINT_GROUP, available_usecases, load_usecase, usecase_class
from kosmos_fl.usecases.turbofan import TurbofanUseCase


def test_builtin_use_cases_are_registered() -> None:
    names = available_usecases()
    assert {"BearingUseCase", "TurbofanUseCase"} <= set(names)
    assert usecase_class("TurbofanUseCase") is TurbofanUseCase
    assert usecase_class("TurbofanUseCase", TurbofanUseCase.version) is TurbofanUseCase


def test_unknown_use_case_names_the_installed_ones() -> None:
    with pytest.raises(UseCaseError) as info:
        load_usecase("TurbineUseCase")
    message = str(info.value)
    assert "use case 'TurbineUseCase' is not installed here" in message
    assert "BearingUseCase" in message and "TurbofanUseCase" in message
    assert "install the package that provides it" in message


def test_version_mismatch_is_refused() -> None:
    with pytest.raises(UseCaseError) as info:
        usecase_class("TurbofanUseCase", version="0.9")
    assert str(info.value) == (
        f"use case 'TurbofanUseCase' version mismatch: the server runs 0.9, this side has "
        f"{TurbofanUseCase.version}; install the same version on server and clients"
    )


def test_broken_or_wrong_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {
        "NotAUseCase": EntryPoint("NotAUseCase", "kosmos_fl.errors:DataError", ENTRY_POINT_GROUP),
        "Broken": EntryPoint("Broken", "kosmos_fl_no_such_module:Thing", ENTRY_POINT_GROUP),
    }
    monkeypatch.setattr(usecases, "available_usecases", lambda: fake)
    with pytest.raises(UseCaseError, match="entry point 'NotAUseCase' does not name a kosmos_fl UseCase"):
        usecase_class("NotAUseCase")
    with pytest.raises(UseCaseError, match="use case 'Broken' could not be imported: No module named"):
        usecase_class("Broken")
