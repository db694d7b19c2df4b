"""The methods: one module each with `apply(model, cfg) -> model`; a method config names its module in `apply`."""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ...errors import UserError
from ..families import describe, role_regex
from . import adalora, adapter, bitfit, full, ia3, ln_tuning, lora, peft_method, prefix, prompt, vera

# a method config's `apply` names its module; a module may also define the loop's two hooks (below)
MODULES = {"full": full, "bitfit": bitfit, "lora": lora, "prompt": prompt, "ia3": ia3, "vera": vera,
           "ln_tuning": ln_tuning, "adapter": adapter, "prefix": prefix, "adalora": adalora, "peft": peft_method}
METHODS = {name: module.apply for name, module in MODULES.items()}

# peft asks transformers 5.x for a renamed attribute on every get_peft_model / from_pretrained: a note between the two
# libraries, not about the user's run, printed on stderr of every LoRA/IA3/VeRA/DoRA run and reload
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# BOFT tries to build its CUDA kernel on every build and says so when it cannot (CPU); boft.yaml's butterfly factor
# is 1, the value peft falls back to, so the run is the same with or without the kernel
warnings.filterwarnings("ignore", message="Failed to load the CUDA extension")
warnings.filterwarnings("ignore", message="Setting boft_n_butterfly_factor to 1")


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


def param_groups(model: nn.Module, method_cfg: DictConfig, lr: float, weight_decay: float) -> list[dict[str, Any]] | None:
    """The optimizer's parameter groups if the method sets its own (LoRA+: B at a higher rate); None: the loop's."""
    hook = getattr(MODULES.get(method_cfg.apply), "param_groups", None)
    return hook(model, method_cfg, lr, weight_decay) if hook else None


def no_step_hook(step: int) -> None:
    """The step hook of every method that acts through its parameters alone."""


def step_hook(model: nn.Module, method_cfg: DictConfig, total_steps: int) -> Callable[[int], None]:
    """What the loop calls after every optimizer update it applies, with the count of those updates (AdaLoRA's
    rank allocation): a step fp16's loss scaler skipped (its gradients overflowed) is no update, so a hook never
    reads inf/nan gradients and its schedule counts only real updates. Most methods need nothing (no_step_hook).
    `model` is the applied method's model, before any wrapping (DDP, compile)."""
    hook = getattr(MODULES.get(method_cfg.apply), "step_hook", None)
    return hook(model, method_cfg, total_steps) if hook else no_step_hook
