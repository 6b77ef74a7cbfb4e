"""Client side of secure aggregation: which messages go to SecAgg+, and a site that requires it
refuses to send an unmasked update."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.app import ConfigRecord, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from kosmos_fl.fl.apps import client_app
from kosmos_fl.fl.rounds import secure
from kosmos_fl.fl.session import NodeSpec


def _msg(content: RecordDict) -> SimpleNamespace:
    return SimpleNamespace(content=content)


def test_secagg_messages_are_recognised() -> None:
    plain = RecordDict({"config": ConfigRecord({"server-round": 1})})
    stage = RecordDict({RECORD_KEY_CONFIGS: ConfigRecord({"stage": "setup"})})
    assert not secure.is_secagg_message(_msg(plain))
    assert secure.is_secagg_message(_msg(stage))


@pytest.mark.parametrize("required", [True, False])
def test_site_requiring_secure_aggregation_refuses_plain_training(tmp_path: Path, required: bool) -> None:
    spec = NodeSpec(
        session_id="s",
        client_id=0,
        usecase_name="NoSuchUseCase",  # never reached when the site refuses
        usecase_version="1",
        usecase_params={},
        data_path=str(tmp_path),
        selection=None,
        require_secure_aggregation=required,
    )
    path = spec.write(tmp_path / "node.json")
    msg = _msg(RecordDict({"config": ConfigRecord({"server-round": 1, "seed": 1})}))
    context = SimpleNamespace(node_config={"session-file": str(path)}, run_config={})
    if required:
        with pytest.raises(RuntimeError, match="requires secure aggregation"):
            client_app.train(msg, context)  # type: ignore[arg-type]
    else:  # not refused: it goes on to load the (here unknown) use case
        with pytest.raises(Exception, match="NoSuchUseCase"):
            client_app.train(msg, context)  # type: ignore[arg-type]
