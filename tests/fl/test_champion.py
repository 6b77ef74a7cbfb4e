"""Issue 20: a new model version becomes ``@champion`` only when it beats the champion on the same
evaluation set; ``predict``'s default model is that champion."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.apps import champion
from kosmos_fl.fl.tracking import tracking_uri

TEST = ["Bearing1_3", "Bearing2_3"]


@dataclass
class Registry:
    client: MlflowClient
    name: str
    store: Path

    def register(self, rmse: float, test: list[str] = TEST, margin: float = 0.0) -> champion.Decision:
        """A new version (as a finished session registers one) and the champion decision on it."""
        version = self.client.create_model_version(self.name, source="file:///nowhere").version
        metrics = {"RMSE": rmse, "MAE": rmse / 2}
        return champion.tag_and_promote(self.client, self.name, version, metrics, test, margin=margin)

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias(self.name, champion.ALIAS).version)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module (creating one costs seconds); each test its own model."""
    return tmp_path_factory.mktemp("champion") / "mlruns"


@pytest.fixture
def registry(store: Path) -> Registry:
    client = MlflowClient(tracking_uri=tracking_uri(str(store)))
    name = f"kosmos-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return Registry(client, name, store)


def test_a_worse_session_keeps_the_champion_and_a_better_one_takes_it(registry: Registry) -> None:
    assert registry.register(1.00).promoted and registry.champion() == "1"
    worse = registry.register(1.20)
    assert not worse.promoted and registry.champion() == "1"
    assert "does not beat champion version 1" in worse.reason
    tags = registry.client.get_model_version(registry.name, "2").tags
    assert tags[champion.TAG_DECISION] == worse.reason and tags["kosmos.eval.RMSE"] == repr(1.2)
    assert registry.register(0.90).promoted and registry.champion() == "3"


def test_the_margin_asks_for_a_clear_win(registry: Registry) -> None:
    registry.register(1.00)
    assert not registry.register(0.97, margin=0.05).promoted  # 3 % better, 5 % asked
    assert registry.register(0.94, margin=0.05).promoted
    assert registry.champion() == "3"


def test_a_champion_scored_on_other_data_is_not_compared(registry: Registry) -> None:
    registry.register(1.00)
    other = registry.register(0.10, test=["Bearing3_3"])
    assert not other.promoted and "other data" in other.reason and registry.champion() == "1"


def test_decide_refuses_scores_that_are_not_numbers() -> None:
    assert not champion.decide(math.nan, None, 0.0, False, "RMSE", "").promoted
    assert champion.decide(1.0, None, 0.0, False, "RMSE", "").promoted  # no champion yet


def test_a_bare_model_name_means_its_champion(registry: Registry, tmp_path: Path) -> None:
    """``predict --model <name>`` asks for the champion (here a version that is not stored as
    kosmos-fl weights, so it is refused after the alias was resolved)."""
    from kosmos_fl.errors import ModelError
    from kosmos_fl.serving import fetch_model

    registry.register(1.0)
    with pytest.raises(ModelError, match=rf"model models:/{registry.name}@champion is not stored"):
        fetch_model(registry.name, str(registry.store), tmp_path / "dst")
