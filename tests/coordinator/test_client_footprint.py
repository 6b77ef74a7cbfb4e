"""The client's control-plane process stays light: it answers the server's criteria without torch
(the ClientApp, forked from the kept SuperNode's warm template, is where models run). Each
``kosmos-fl client`` used to import torch and pandas through the use case (about 3 CPU-seconds
per client start, paid again by every end-to-end test and the demo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "pandas", "mlflow")

CHECK = """
import json, sys
from pathlib import Path
import kosmos_fl.coordinator.client
from kosmos_fl.usecases import usecase_class
summary = usecase_class("BearingUseCase")({}).data_summary(Path(sys.argv[1]), ["Bearing1_1", "Bearing1_2"])
print(json.dumps({"samples": summary["samples"], "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


def test_client_criteria_check_loads_no_model_libraries(generated_bearings: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(generated_bearings), *HEAVY],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["samples"] > 0
    assert result["loaded"] == []
