"""Weights & Biases mirror of result.json: offline by default (no account, no network), disabled in tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class Tracker:
    def __init__(self, cfg: DictConfig, out: Path) -> None:
        self.run = None
        if cfg.tracking.mode == "disabled":
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        size = f"-n{cfg.train_size}" if cfg.train_size else ""
        self.run = wandb.init(project=cfg.tracking.project, group=cfg.tracking.get("group"), mode=cfg.tracking.mode,
                              dir=str(out), name=f"{cfg.task.name}-{cfg.method.name}{size}-s{cfg.seed}",
                              config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        flat = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
        flat.update({f"metrics/{k}": v for k, v in record.get("metrics", {}).items()})
        self.run.summary.update(flat)
        self.run.finish(exit_code=0 if record["status"] == "completed" else 1)
