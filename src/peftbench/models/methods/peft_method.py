"""Any tuner the installed `peft` ships, named by its config class: `peft_config: OFTConfig` and `peft_args` (that
class's own keyword arguments, as peft documents them); the modules come from the family's roles (`target_roles`,
families.py) or `target_modules`, and the head trains (peft's `modules_to_save`).

Configs of this module: oft, boft, hra, fourierft, loha, lokr, c3a, shira, road, miss and beft (peft's BEFT: a
trained bias vector added to the value projection's output, the BitFit line's newest member). A method that needs
more than a config (a step in the loop, its own optimizer groups) has its own module instead (adalora.py, lora.py).
Merging is peft's merge_and_unload; peft's own checks (a block size that does not divide a layer, a bias to merge
into that is not there) come back as the method's one-line refusal.
"""

from __future__ import annotations

import peft
from omegaconf import DictConfig, OmegaConf
from peft import get_peft_model
from torch import nn

# the config classes a method config may name: the additive and multiplicative tuners of peft that take
# target_modules and modules_to_save (prompt-style tuners are their own modules: prompt.py, prefix.py)
CONFIGS = ("OFTConfig", "BOFTConfig", "HRAConfig", "FourierFTConfig", "LoHaConfig", "LoKrConfig", "C3AConfig",
           "ShiraConfig", "RoadConfig", "MissConfig", "BeftConfig", "LoraConfig", "IA3Config", "VeraConfig")


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names, targets

    name = cfg.peft_config
    if name not in CONFIGS or not hasattr(peft, name):
        raise ValueError(f"method.peft_config='{name}' is not a peft tuner peftbench can place; pick one of "
                         f"{[c for c in CONFIGS if hasattr(peft, c)]}")
    args = OmegaConf.to_container(cfg.get("peft_args") or {}, resolve=True)
    try:
        config = getattr(peft, name)(target_modules=targets(model, cfg, name.removesuffix("Config")),
                                     modules_to_save=head_names(model), **args)
    except TypeError as e:  # an argument the class does not take
        raise ValueError(f"method.peft_args: {e}") from None
    return get_peft_model(model, config)
