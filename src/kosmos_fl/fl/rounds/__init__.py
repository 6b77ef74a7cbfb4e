"""What one round does, without the Flower app around it: liveness, update validation and
screening, SecAgg+, differential privacy, checkpoints, round statistics, federated evaluation,
local training and the partition of a virtual client."""
