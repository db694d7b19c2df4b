"""Any peft tuner as a method (`method=peft method.config={peft_type: LOHA, r: 4}` or a `peft.PeftConfig` object in
Python): the config in one canonical form, so the same tuner is the same run whichever way it was given.

The canonical form is `peft_type` plus every field whose value differs from that config class's own default, with
sets as sorted lists and enums as their values: `LoraConfig(r=4, target_modules=["value", "query"])` and
`method.config={peft_type: lora, r: 4, target_modules: [query, value]}` are both
`{peft_type: LORA, r: 4, target_modules: [query, value]}`, so they share a run identity (record.identity). peft's own
class checks the arguments here, before anything loads: an unknown tuner, an argument the class does not take or a
value it refuses is one UserError line saying what peft said.
"""

from __future__ import annotations

import enum
import warnings
from typing import Any

from ..errors import UserError

DEFAULT_NAME = "peft"  # configs/method/peft.yaml's name: replaced by peft_<tuner> unless the user named the method
DEFAULT_TRAINS = "the peft tuner of method.config + head"
# where and by which peft a config was saved, not what it trains (the versions are in the record's `versions`)
NOT_TUNER = ("base_model_name_or_path", "revision", "inference_mode", "peft_version", "auto_mapping")


def _plain(value: Any) -> Any:
    """A config value as JSON: sets sorted into lists, enums as their values, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_class(peft_type: Any) -> type:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    name = str(_plain(peft_type) or "").upper()
    known = {str(_plain(k)): cls for k, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if name not in known:
        raise UserError(f"method.config.peft_type={peft_type!r} is not a tuner of the installed peft: pick one of "
                        f"{', '.join(sorted(known))}")
    return known[name]


def build(config: dict[str, Any]) -> Any:
    """The peft config object for a (canonical or user-written) dict; peft's refusal as one UserError line."""
    if not isinstance(config, dict) or "peft_type" not in config:
        raise UserError("method.config needs peft_type (LORA, LOHA, OFT, ...) and that tuner's arguments, e.g. "
                        "method.config={peft_type:LORA,r:4}")
    cls = config_class(config["peft_type"])
    args = {k: v for k, v in config.items() if k != "peft_type"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**args)
    except TypeError as e:  # an argument the class does not take
        raise UserError(f"method.config: peft's {cls.__name__} says: {str(e).splitlines()[0]}") from None
    except (ValueError, AttributeError, NotImplementedError) as e:
        raise UserError(f"method.config: peft's {cls.__name__} refuses it: {str(e).splitlines()[0]}") from None


def canonical(config: Any) -> dict[str, Any]:
    """A peft config (object, or a dict as `build` takes) as peft_type + the fields that differ from the class's
    defaults, as plain JSON values."""
    obj = config if hasattr(config, "to_dict") else build(dict(config))
    cls = type(obj)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            defaults = _plain(cls().to_dict())
    except Exception:  # a class with a required argument (AdaLoRA's total_step): keep every field
        defaults = {}
    given = _plain(obj.to_dict())
    out = {"peft_type": given["peft_type"]}
    out.update({k: v for k, v in given.items() if k not in (*NOT_TUNER, "peft_type") and
                (k not in defaults or defaults[k] != v)})
    return out


def describe(config: dict[str, Any]) -> str:
    """What trains, for the method's `trains` line: 'peft LORA r=4, target_modules=[query, value] + head'."""
    args = ", ".join(f"{k}={'[' + ', '.join(map(str, v)) + ']' if isinstance(v, list) else v}"
                     for k, v in config.items() if k != "peft_type")
    return f"peft {config['peft_type']}" + (f" {args}" if args else "") + " + head"


def canonical_method(method: Any) -> None:
    """A composed `method` node with a `config` (apply: peft), in place: the canonical config, and the name
    peft_<tuner> and its `trains` line where the user kept peft.yaml's."""
    from omegaconf import OmegaConf, open_dict

    given = OmegaConf.to_container(method.config, resolve=True)
    config = canonical(given if isinstance(given, dict) else {})
    with open_dict(method):
        method.config = config
        if method.get("name") == DEFAULT_NAME:
            method.name = f"peft_{str(config['peft_type']).lower()}"
        if method.get("trains") == DEFAULT_TRAINS:
            method.trains = describe(config)
