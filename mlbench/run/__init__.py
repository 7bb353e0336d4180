"""The running stage: a config expanded into cells (matrix, selection), their order, the runner, the
executors (local, Ray), the one launcher and the wire protocol, what runs before the cells (gate,
ceilings), contention and progress while they run."""
