"""Parameters registered with a model (kosmos_fl.fl.apps.model_registry.registered_params)."""

from __future__ import annotations

import json

from kosmos_fl.fl.apps.model_registry import registered_params
from kosmos_fl.usecases import load_usecase


def test_registered_params_resolve_the_defaults() -> None:
    uc = load_usecase("BearingUseCase", {"model": "mlp", "cache_dir": "/srv/cache"})
    params = registered_params(uc, {"model": "mlp", "cache_dir": "/srv/cache"})
    # every default is written down, so a later change of defaults cannot alter the model's inputs
    assert params["baseline"] == uc.params.baseline and params["smooth_span"] == uc.params.smooth_span
    assert "cache_dir" not in params  # host-local
    # the JSON round trip gives the same use case back
    again = load_usecase("BearingUseCase", json.loads(json.dumps(params)))
    assert again.params.model_dump(exclude={"cache_dir"}) == uc.params.model_dump(exclude={"cache_dir"})


def test_registered_params_of_a_use_case_without_a_params_model() -> None:
    class Plain:
        params = None

    assert registered_params(Plain(), {"a": 1}) == {"a": 1}
