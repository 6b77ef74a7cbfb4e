"""Re-reading the server's config between sessions (``kill -HUP <server pid>``).

An operator who wants the next session to train with other use-case parameters, rounds or
learning rate edits ``config.yaml`` and signals the server; the waiting clients, their kept
SuperNodes and the SuperLink stay up. Only what a session *is* may change this way; listeners,
TLS, client authentication, limits and privacy are set up once at start and need a restart, so a
reload that touches them is refused as a whole (the running config stays, the log says why).
"""

from __future__ import annotations

from kosmos_fl.config import ServerConfig
from kosmos_fl.config.session import SessionSection

#: Keys a reload may change: the session section, except the work folder (where this server's
#: sessions and resume points live) and ``resume`` (a start-up decision).
RELOADABLE = frozenset(SessionSection.model_fields) - {"work_dir", "resume"}


def config_changes(old: ServerConfig, new: ServerConfig) -> tuple[list[str], list[str]]:
    """(changed keys a reload may apply, changed keys that need a restart); a different use case
    (``usecase.name``) needs a restart: the clients were admitted for this one."""
    a, b = old.model_dump(), new.model_dump()
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    refused = [k for k in changed if k not in RELOADABLE]
    if old.usecase.name != new.usecase.name:
        refused.append("usecase.name")
    return [k for k in changed if k in RELOADABLE], refused
