"""An extension point of the ClientApp: code of your own at fixed points of a client's round.

``KOSMOS_FL_CLIENT_HOOKS`` names a module (``package.module``, importable in the client's
environment, which the SuperNode and its ClientApps inherit). Unset, as in production, nothing is
called. The module may define any of:

- ``before_training() -> None``: called before local training starts;
- ``on_reply(weights: list[np.ndarray]) -> list[np.ndarray]``: the packed weights a client is
  about to send back, returned as they should be sent;
- ``mod(msg, context, call_next) -> Message``: a Flower ClientApp mod run before the SecAgg+ mod.

The test suite uses it for fault injection (:mod:`kosmos_fl.testing.faults`).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

HOOKS_ENV = "KOSMOS_FL_CLIENT_HOOKS"


def _hooks() -> ModuleType | None:
    name = os.environ.get(HOOKS_ENV)
    return importlib.import_module(name) if name else None


def before_training() -> None:
    hooks = _hooks()
    if hooks is not None and hasattr(hooks, "before_training"):
        hooks.before_training()


def on_reply(weights: list[np.ndarray]) -> list[np.ndarray]:
    hooks = _hooks()
    if hooks is not None and hasattr(hooks, "on_reply"):
        return list(hooks.on_reply(weights))
    return weights


def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod that hands over to the hook module's ``mod`` if there is one."""
    hooks = _hooks()
    if hooks is not None and hasattr(hooks, "mod"):
        reply: Message = hooks.mod(msg, context, call_next)
        return reply
    return call_next(msg, context)
