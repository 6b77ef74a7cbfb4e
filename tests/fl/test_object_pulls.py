"""The object-pull retry policy: applied to Flower's real functions, and it really shortens the wait
for an object that becomes available a moment after the first try."""

from __future__ import annotations

import threading
import time

import pytest
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

from kosmos_fl.fl.flower_runtime import object_pulls


@pytest.fixture
def restore_defaults():
    """Flower's own schedule for the test (another test in this worker process may have applied
    ours), and whatever was there before afterwards."""
    saved = {fn: dict(fn.__kwdefaults__) for fn in object_pulls._targets()}
    for fn, flower in object_pulls.ORIGINAL_DEFAULTS.items():
        fn.__kwdefaults__.update(flower)
    yield
    for fn, defaults in saved.items():
        fn.__kwdefaults__.clear()
        fn.__kwdefaults__.update(defaults)


def _late_object(delay: float) -> tuple[object, list[float]]:
    """A pull function whose object appears ``delay`` s after the first call; records call times."""
    calls: list[float] = []
    first: list[float] = []
    lock = threading.Lock()

    def pull(object_id: str) -> bytes:
        now = time.monotonic()
        with lock:
            calls.append(now)
            if not first:
                first.append(now)
        if now - first[0] < delay:
            raise ObjectUnavailableError(object_id)
        return b"content"

    return pull, calls


def test_flower_has_the_parameters_we_tune(restore_defaults) -> None:
    # a Flower upgrade that renames them must fail here, not silently slow every round down
    assert object_pulls.use_fast_object_pulls() is True
    for fn in object_pulls._targets():
        for key, value in object_pulls.POLICY.items():
            assert fn.__kwdefaults__[key] == value


def test_late_object_is_retried_sooner(restore_defaults) -> None:
    # an object that appears 0.1 s after the first try: Flower's schedule (first retry after
    # 1 s +-20 %) tries twice; ours retries at 0.02 s, 0.04 s, ... and so tries more often
    pull, calls = _late_object(0.1)
    assert inflatable_utils.pull_objects(["a"], pull) == {"a": b"content"}
    assert len(calls) == 2

    object_pulls.use_fast_object_pulls()
    pull, calls = _late_object(0.1)
    assert inflatable_utils.pull_objects(["a"], pull) == {"a": b"content"}
    assert len(calls) >= 3


def test_missing_parameters_change_nothing(restore_defaults, monkeypatch, caplog) -> None:
    def pull_objects(object_ids, pull_object_fn, *, initial_backoff=1):  # an "older Flower"
        return {}

    monkeypatch.setattr(object_pulls, "_targets", lambda: [pull_objects])
    assert object_pulls.use_fast_object_pulls() is False
    assert pull_objects.__kwdefaults__ == {"initial_backoff": 1}
    assert "keep Flower's 1 s first retry" in caplog.text
