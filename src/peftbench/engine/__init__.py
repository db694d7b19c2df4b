"""One run: train(cfg) -> result.json (train: the loop; run: its setup; device: CPU or GPU and precision), its
checkpoint, costs, forgetting, tracking, run folder, run-time model, preflight checks, evaluation (predict) and the
saved delta."""
