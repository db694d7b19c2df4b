"""One run: train(cfg) -> result.json (train), its checkpoint, costs, forgetting, tracking, run folder, run-time
model, preflight checks, the device and precision it resolves to (device), evaluation (predict) and the saved delta."""
