"""One run: train(cfg) -> result.json (train), its checkpoint, costs, forgetting, tracking, run folder, run-time
model, preflight checks, evaluation (predict) and the saved delta."""
