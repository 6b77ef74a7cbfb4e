"""Test-only fault injection for the ClientApp (used by the fault-injection tests), through the
client hooks of :mod:`kosmos_fl.fl.client_hooks` (``KOSMOS_FL_CLIENT_HOOKS=kosmos_fl.testing.faults``).

Nothing here is active unless the client process also runs with ``KOSMOS_FL_FAULT`` set, e.g.
``KOSMOS_FL_FAULT=nan`` (reply with NaN weights), ``huge`` (weights times 1e8), ``shape`` (a
transposed first matrix) or ``delay:<seconds>`` (sleep before training, to hold a round open).
Several faults combine with commas. The variable reaches the ClientApp through the SuperNode's
environment, which inherits the KOSMoS client's. ``KOSMOS_TEST_SECAGG_DROPOUT`` makes a client drop
out in a SecAgg+ stage (:data:`DROPOUT_ENV`).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from kosmos_fl.fl.rounds.secure import is_secagg_message

log = logging.getLogger("kosmos_fl.testing")

ENV = "KOSMOS_FL_FAULT"
#: ``ROUND:STAGE`` (e.g. ``2:collect_masked_vectors``) makes this client's ClientApp fail in that
#: SecAgg+ stage of that round, i.e. drop out mid-round.
DROPOUT_ENV = "KOSMOS_TEST_SECAGG_DROPOUT"


def _faults() -> list[str]:
    return [f.strip() for f in os.environ.get(ENV, "").split(",") if f.strip()]


def before_training() -> None:
    """Apply a ``delay:<seconds>`` fault."""
    for fault in _faults():
        if fault.startswith("delay:"):
            time.sleep(float(fault.split(":", 1)[1]))


def on_reply(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Apply ``nan`` / ``huge`` / ``shape`` faults to the weights a client sends back."""
    faults = _faults()
    if not faults:
        return weights
    out = [w.copy() for w in weights]
    for fault in faults:
        if fault == "nan":
            out[0].flat[0] = np.nan
        elif fault == "huge":
            out = [w * np.asarray(1e8, dtype=w.dtype) for w in out]
        elif fault == "shape":
            out[0] = np.ascontiguousarray(out[0].reshape(-1)[:-1])  # one value short
    return out


def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Fail in the SecAgg+ stage named by :data:`DROPOUT_ENV` (a client lost mid-round)."""
    wanted = os.environ.get(DROPOUT_ENV)
    if wanted and is_secagg_message(msg):
        rnd, _, stage = wanted.partition(":")
        current = msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
        if msg.metadata.group_id == rnd and current == stage:
            log.warning("test hook %s: dropping out in round %s, stage %s", DROPOUT_ENV, rnd, stage)
            raise RuntimeError(f"{DROPOUT_ENV}: this client drops out in round {rnd}, stage {stage}")
    return call_next(msg, context)
