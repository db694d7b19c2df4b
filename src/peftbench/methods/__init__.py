"""The methods: one module each with `apply(model, cfg) -> model`; a method config names its module in `apply`."""

from __future__ import annotations

import re
import warnings

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import UserError
from ..families import describe, role_regex
from . import adapter, bitfit, full, ia3, ln_tuning, lora, prefix, prompt, vera

METHODS = {"full": full.apply, "bitfit": bitfit.apply, "lora": lora.apply, "prompt": prompt.apply, "ia3": ia3.apply,
           "vera": vera.apply, "ln_tuning": ln_tuning.apply, "adapter": adapter.apply, "prefix": prefix.apply}

# peft asks transformers 5.x for a renamed attribute on every get_peft_model / from_pretrained: a note between the two
# libraries, not about the user's run, printed on stderr of every LoRA/IA3/VeRA/DoRA run and reload
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def head_names(model: nn.Module) -> list[str]:
    """Top-level children outside the encoder: the task head (classifier, qa_outputs, ...) found by role, not name."""
    base = model.base_model
    return [name for name, child in model.named_children() if child is not base and any(True for _ in child.parameters())]


def freeze_all_but_head(model: nn.Module) -> None:
    heads = head_names(model)
    for name, param in model.named_parameters():
        param.requires_grad = name.split(".")[0] in heads


def check_targets(model: nn.Module, targets: str | list[str], method: str) -> str | list[str]:
    """peft's target_modules as peft reads them (a list: name suffixes; a string: a regex over the full module path),
    after checking that each names at least one module of this model."""
    names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, n) for n in names):
            raise LookupError(f"no module path matches {method} target_modules '{targets}' (set method.target_modules)")
        return targets
    targets = [str(t) for t in targets]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise LookupError(f"no module named {missing} to put {method} on (set method.target_modules)")
    return targets


def targets(model: nn.Module, cfg: DictConfig, method: str, key: str = "target") -> str | list[str]:
    """peft's target_modules: `method.{key}_modules` as given (names or a regex), else `method.{key}_roles`
    resolved through the model family's role table (families.py) to a regex over module paths."""
    given = cfg.get(f"{key}_modules")
    if given is not None:
        return check_targets(model, given if isinstance(given, str) else list(OmegaConf.to_object(given)), method)
    roles = cfg.get(f"{key}_roles")
    if roles is None:
        raise ValueError(f"method.{key}_roles (or method.{key}_modules) is not set")
    return role_regex(model, [str(r) for r in roles], f"method.{key}_roles")


def apply_method(model: nn.Module, method_cfg: DictConfig, model_name: str) -> nn.Module:
    """The method applied to `model`; a refusal names the method, the preset and the model it was pointed at."""
    fn = METHODS.get(method_cfg.apply)
    if fn is None:
        raise UserError(f"method.apply='{method_cfg.apply}' is unknown: pick one of {sorted(METHODS)}")
    where = describe(model)  # before the method wraps it
    try:
        return fn(model, method_cfg)
    except LookupError as e:  # a method that cannot find the modules it needs in this architecture
        why = str(e).strip("'\"")  # KeyError-style quoting off
        raise UserError(f"method '{method_cfg.name}' cannot handle model '{model_name}' ({where}): {why}") from None
    except ValueError as e:  # a method setting it (or peft) rejects: one line, not a traceback
        raise UserError(f"method '{method_cfg.name}': {str(e).splitlines()[0]}") from None
