"""Any tuner the installed `peft` ships, named by its config class: `peft_config: OFTConfig` and `peft_args` (that
class's own keyword arguments, as peft documents them); the modules come from the family's roles (`target_roles`,
families.py) or `target_modules`, and the head trains (peft's `modules_to_save`).

`method=peft` (configs/method/peft.yaml) takes a whole peft config instead, `method.config` (peft_type and the class's
arguments, in config/peftconfig.py's canonical form; a `peft.PeftConfig` in Python): any tuner the installed peft
ships, with its target_modules or, left out, the family's `target_roles`. What peft says when the tuner cannot apply
to the model (a module it cannot find, a layer type it does not support) is the method's one-line refusal.

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

    if cfg.get("config") is not None:
        return apply_config(model, cfg)
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


def apply_config(model: nn.Module, cfg: DictConfig) -> nn.Module:
    """method.config as peft's config object on `model`; the head trains (modules_to_save)."""
    from ...config.peftconfig import build
    from ...errors import UserError
    from . import head_names, targets

    config = build(OmegaConf.to_container(cfg.config, resolve=True))
    kind = type(config).__name__
    if getattr(config, "is_prompt_learning", False):
        raise UserError(f"method.config: {kind} is a prompt-learning tuner, which the loop places itself: use "
                        "method=prompt or method=prefix")
    if hasattr(config, "target_modules") and config.target_modules is None:
        config.target_modules = targets(model, cfg, kind.removesuffix("Config"))
    if hasattr(config, "modules_to_save"):
        config.modules_to_save = sorted(set(config.modules_to_save or []) | set(head_names(model)))
    try:
        return get_peft_model(model, config)
    except (ValueError, TypeError, KeyError, NotImplementedError, RuntimeError, AttributeError) as e:
        why = " ".join(str(e).strip().strip("'\"").split()) or type(e).__name__
        raise LookupError(f"peft's {kind} says: {why[:300]}") from None
