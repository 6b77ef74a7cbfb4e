"""Control-plane payload validation: every malformed message gets one clear reason, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kosmos_fl.coordinator.protocol import StartTrain, parse_criteria
from kosmos_fl.errors import ProtocolError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def test_2021_answer_is_accepted() -> None:
    assert parse_criteria({"criteria_are_met": True}).criteria_are_met is True
    extra = parse_criteria({"criteria_are_met": False, "reason": "disk", "site": "linz"})
    assert extra.criteria_are_met is False
    assert extra.model_extra == {"site": "linz"}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "criteria_are_met"),
        ({"criteria_are_met": "yes"}, "criteria_are_met"),
        ({"criteria_are_met": 1}, "criteria_are_met"),
        ([1, 2], "JSON object"),
        (None, "JSON object"),
        ({"criteria_are_met": True, "reason": "x" * 5000}, "reason"),
    ],
)
def test_malformed_answers_are_explained(payload: Any, needle: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_criteria(payload)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(payload=json_values)
def test_any_payload_is_accepted_or_refused_cleanly(payload: Any) -> None:
    try:
        parsed = parse_criteria(payload)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert isinstance(parsed.criteria_are_met, bool)


def test_start_train_carries_the_2021_keys() -> None:
    keys_2021 = {"client_id", "mlflow_experiment_name", "mlflow_server_address", "mlflow_run_id",
                 "flwr_server_address", "usecase_name", "usecase_params"}  # fmt: skip
    assert keys_2021 <= set(StartTrain.model_fields)
