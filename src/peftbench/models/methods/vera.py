"""VeRA (Kopiczko et al. 2024) through `peft`: one pair of frozen random low-rank matrices shared by all layers,
and per layer two trained scaling vectors (d: rank-sized, b: output-sized); the head trains.

The random matrices come from a fixed PRNG key (`projection_prng_key`), so they are rebuilt, not saved, when a
delta is loaded. Merging folds the update into the weights (peft's merge_and_unload).
"""

from __future__ import annotations

import warnings

from omegaconf import DictConfig
from peft import VeraConfig, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names, targets

    with warnings.catch_warnings():  # peft's advice to save the projections: the key rebuilds them exactly
        warnings.filterwarnings("ignore", message="Specified to not save vera_A and vera_B")
        config = VeraConfig(
            r=cfg.r,
            target_modules=targets(model, cfg, "VeRA"),
            vera_dropout=cfg.dropout,
            d_initial=cfg.d_initial,
            projection_prng_key=cfg.projection_prng_key,
            save_projection=False,  # rebuilt from the key: the delta holds only the trained vectors
            modules_to_save=head_names(model),
        )
    return get_peft_model(model, config)
