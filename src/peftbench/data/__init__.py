"""Rows -> batches: packed arrays and batch order (batches), the holdout carved from train (holdout), the hub
fetch (fetch), and one module per kind of task (tasks/, mirroring configs/task/)."""
