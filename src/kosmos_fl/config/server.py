"""``ServerConfig``: the sections of the server's settings in one flat model.

The sections (network, session, limits, security, privacy) group the code; the keys a user writes
stay flat as in 2021 (``num_clients``, ``socketio_address``, ...) because each section is a base of
``ServerConfig`` rather than a nested mapping. Their order is the order fields are validated in:
the privacy rules read the session's strategy and ``num_clients``, so privacy comes last.
"""

from __future__ import annotations

from typing import Literal

from kosmos_fl.config.limits import LimitsSection
from kosmos_fl.config.network import NetworkSection
from kosmos_fl.config.privacy import PrivacySection
from kosmos_fl.config.security import SecuritySection
from kosmos_fl.config.session import SessionSection


class ServerConfig(PrivacySection, SecuritySection, LimitsSection, SessionSection, NetworkSection):
    """Everything the KOSMoS server needs; each base class is one section."""

    #: Debug logging, also of the Socket.IO traffic (the 2021 ``DEBUG`` key; ``--verbose`` too).
    debug: bool = False
    #: ``json``: one JSON object per log line with session and client ids (``--log-json``).
    log_format: Literal["text", "json"] = "text"
