"""Flower components of a KOSMoS session; the code lives in the installed kosmos_fl package."""

from kosmos_fl.fl.apps.client_app import app as clientapp
from kosmos_fl.fl.apps.server_app import app as serverapp

__all__ = ["clientapp", "serverapp"]
