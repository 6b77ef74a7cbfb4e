"""A faster message dispatch for Flower's simulation engine (a patch of Flower 1.42 internals).

Flower's message extractor asks the link state for every virtual node every 0.1 s, and each ask
scans every stored message; the replacement here asks only for nodes with something waiting. It is
used for the duration of a simulation run only, and only on the Flower version it was written
against.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("kosmos_fl.simulation")


def _dispatch_waiting(state: Any, queue: Any, nodes_mapping: dict[int, int], f_stop: Any) -> None:
    """Flower's message extractor (``vce_api.add_messages_to_queue``) with the same behaviour,
    except that it asks the link state only for nodes that have an undelivered message.

    Flower's own one asks for every virtual node every 0.1 s, and each ask scans every stored
    message: with 1,000 nodes that is a million message checks per sweep, all round long, holding
    the driver's GIL (seen with py-spy as the busiest thread of a 1,000-client round). Here one
    sweep is one scan of the stored messages plus Flower's own ``get_message_ins`` (with its
    expiry checks and delivery marking) for each node that has something waiting."""
    store, lock = state.message_ins_store, state.lock
    while not f_stop.is_set():
        with lock:
            waiting = {m.metadata.dst_node_id for m in store.values() if m.metadata.delivered_at == ""}
        for node_id in nodes_mapping:
            if node_id in waiting:
                for msg in state.get_message_ins(node_id=node_id, limit=1):
                    queue.put(msg)
        f_stop.wait(0.1)


@contextlib.contextmanager
def fast_dispatch() -> Iterator[bool]:
    """Use :func:`_dispatch_waiting` in Flower's simulation engine while the block runs; yields
    whether it is in use. Only for the Flower version it was written against (its in-memory link
    state's ``message_ins_store`` and ``lock``); any other version runs Flower's own extractor."""
    from importlib.metadata import version

    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    original = vce_api.add_messages_to_queue
    if not version("flwr").startswith("1.42.") or not hasattr(InMemoryLinkState, "get_message_ins"):
        log.info("Flower %s: simulation uses Flower's own message extractor", version("flwr"))
        yield False
        return

    def extractor(state: Any, queue: Any, nodes_mapping: dict[int, int], f_stop: Any) -> None:
        if isinstance(state, InMemoryLinkState) and hasattr(state, "message_ins_store"):
            _dispatch_waiting(state, queue, nodes_mapping, f_stop)
        else:
            original(state, queue, nodes_mapping, f_stop)

    vce_api.add_messages_to_queue = extractor
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue = original
