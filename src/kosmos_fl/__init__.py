"""kosmos-fl: federated learning of remaining useful life for predictive maintenance."""

__version__ = "0.1.0"
