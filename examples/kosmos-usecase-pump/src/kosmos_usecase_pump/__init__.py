"""kosmos-fl plug-in: remaining useful life of centrifugal pumps from condition-monitoring logs."""

from kosmos_usecase_pump.data import generate_pumps, read_pumps
from kosmos_usecase_pump.usecase import PumpModel, PumpUseCase

__all__ = ["PumpModel", "PumpUseCase", "generate_pumps", "read_pumps"]
