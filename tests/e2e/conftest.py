"""Shared fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kosmos_fl.localfed import LocalFederation


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    """A LocalFederation in the test's folder; the test fails if any process outlives it."""
    fed = LocalFederation(tmp_path, clean_env)
    yield fed
    assert fed.stop() == [], "processes outlived the federation"
