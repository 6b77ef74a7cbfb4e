"""One error hierarchy for everything a user can get wrong.

Every error carries a one-line message that names the thing at fault and the fix, so the CLI can
print ``error: <message>`` instead of a traceback. Programming errors stay ordinary exceptions.

    KosmosError
    ├── ConfigError          invalid config file, key or environment override
    ├── DataError            missing, unreadable, corrupt or inconsistent data files
    │   └── DataFormatError  a file that exists but does not have the expected format
    ├── UseCaseError         unknown use case, incompatible version or bad use-case params
    ├── ProtocolError        a control-plane message that breaks the protocol
    ├── FederationError      a training session that could not run or finish
    ├── ModelError           a model URI that cannot be loaded or used for prediction
    └── StorageError         a disk that cannot be written (full, read-only, failing)
"""

from __future__ import annotations


class KosmosError(Exception):
    """Base class of every user-facing error in kosmos-fl."""


class ConfigError(KosmosError):
    """A configuration value is missing or invalid."""


class DataError(KosmosError):
    """Data needed for training or evaluation is missing or unusable."""


class DataFormatError(DataError):
    """A data file exists but is not in the expected format."""


class UseCaseError(KosmosError):
    """A use case is unknown, incompatible or badly parameterised."""


class ProtocolError(KosmosError):
    """A control-plane message does not follow the protocol."""


class FederationError(KosmosError):
    """A federated training session could not run or did not finish properly."""


class ModelError(KosmosError):
    """A trained model cannot be loaded or used."""


class StorageError(KosmosError):
    """A file the product must write cannot be written: the disk is full, read-only or failing."""
