"""Retry policy for pulling a Flower message's objects (model arrays), in KOSMoS's own processes.

Flower 1.42 announces a message before its objects have arrived: the SuperNode registers the
task and the message first and only then pulls the arrays from the SuperLink, and a reply reaches
the SuperLink's message table before all its arrays are pushed. A ClientApp (or the ServerApp's
grid) that asks a moment too early gets "object unavailable" and Flower's retry then sleeps
``initial_backoff = 1`` s, doubling to 10 s. Measured here: about 1 s of every round's pickup was
that first sleep, while the arrays arrived a few milliseconds later.

:func:`use_fast_object_pulls` shortens the retry schedule of Flower's own pull functions in the
calling process (the warm ClientApp template, the ServerApp); it changes no protocol, and the
overall limit stays Flower's ``max_time`` (2 h). Flower offers no setting for this, so the
defaults of its functions are adjusted, and checked: if a Flower upgrade renames them, nothing
is changed and a warning says so (``tests/fl/test_object_pulls.py`` fails too).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kosmos_fl.object_pulls")

#: First retry after this many seconds, then doubling up to :data:`BACKOFF_CAP`.
INITIAL_BACKOFF = 0.02
BACKOFF_CAP = 1.0
#: With the shorter sleeps the try count, not the time, would end a slow pull early: no count
#: limit (Flower's ``max_time`` still bounds the wait).
POLICY: dict[str, Any] = {
    "initial_backoff": INITIAL_BACKOFF,
    "backoff_cap": BACKOFF_CAP,
    "max_tries_per_object": None,
}


def _targets() -> list[Any]:
    from flwr.supercore.inflatable import inflatable_utils

    return [inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree]


#: Flower's own values of the tuned parameters, saved before the first patch (tests restore them).
ORIGINAL_DEFAULTS: dict[Any, dict[str, Any]] = {}


def use_fast_object_pulls() -> bool:
    """Apply :data:`POLICY` to Flower's object-pull functions in this process; False (and a
    warning) when this Flower version does not have the expected parameters."""
    targets = _targets()
    for fn in targets:
        defaults = fn.__kwdefaults__ or {}
        missing = [k for k in POLICY if k not in defaults]
        if missing:
            log.warning(
                "Flower's %s has no parameter(s) %s; object pulls keep Flower's 1 s first retry",
                fn.__qualname__,
                ", ".join(missing),
            )
            return False
    for fn in targets:
        ORIGINAL_DEFAULTS.setdefault(fn, {k: fn.__kwdefaults__[k] for k in POLICY})
        fn.__kwdefaults__.update(POLICY)
    return True
