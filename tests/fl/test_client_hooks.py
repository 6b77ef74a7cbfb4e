"""The ClientApp's hook: nothing runs without it; the test suite's fault injection runs through it."""

from __future__ import annotations

import numpy as np
import pytest

from kosmos_fl.fl import client_hooks


def test_without_hooks_the_reply_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(client_hooks.HOOKS_ENV, raising=False)
    monkeypatch.setenv("KOSMOS_FL_FAULT", "nan")
    weights = [np.ones(3, dtype=np.float32)]
    assert client_hooks.on_reply(weights) is weights
    client_hooks.before_training()


def test_fault_injection_runs_through_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(client_hooks.HOOKS_ENV, "kosmos_fl.testing.faults")
    monkeypatch.setenv("KOSMOS_FL_FAULT", "nan")
    (out,) = client_hooks.on_reply([np.ones(3, dtype=np.float32)])
    assert np.isnan(out[0]) and not np.isnan(out[1:]).any()
