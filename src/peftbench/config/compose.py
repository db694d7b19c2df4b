"""Compose a run's config from the packaged Hydra tree (`configs/`) and `key=value` overrides, then check it."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl  # its value-override step; hydra-core is held to 1.3
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import schema
from ..errors import UserError

CONFIG_DIR = Path(str(importlib.resources.files("peftbench") / "configs"))


def group_options(group: str) -> list[str]:
    """The choices of a config group, e.g. group_options('method') -> ['bitfit', 'bitfit_subset', ...]."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose_config(name: str, overrides: list[str], hint: str, hydra_node: bool = False) -> DictConfig:
    """configs/NAME.yaml composed with `overrides`; Hydra's errors become one UserError line (+ `hint` for a bad key)."""
    try:
        split = None if hydra_node else _split(overrides)
        if split is None:
            cfg = _hydra_compose(name, overrides, hydra_node)
        else:  # what Hydra does: compose the defaults the group choices pick, then set the values in order
            groups, values = split
            cfg = copy.deepcopy(_groups_composed(name, tuple(groups)))
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        if not hydra_node:  # the hydra node holds ${hydra:...} values only a running app can resolve
            OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0]
        if "not in struct" in str(e) or "Could not override" in str(e):
            first += f" ({hint})"
        raise UserError(f"config: {first}") from None
    return cfg


def _hydra_compose(name: str, overrides: list[str], hydra_node: bool) -> DictConfig:
    outer = get_gh_backup()  # inside a Hydra app (a launcher's job) its own Hydra state must survive this
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose(config_name=name, overrides=overrides, return_hydra_config=hydra_node)
    finally:
        restore_gh_from_backup(outer)


@functools.lru_cache(maxsize=256)
def _groups_composed(name: str, groups: tuple[str, ...]) -> DictConfig:
    """The config the group choices alone compose to. Hydra reads and merges about fifteen YAML files per compose
    (about 70 ms); a study composes every run it plans, hundreds, of a few group choices."""
    return _hydra_compose(name, list(groups), hydra_node=False)


def _split(overrides: list[str]) -> tuple[list[str], list] | None:
    """`overrides` as (group choices, parsed value overrides) the way Hydra tells them apart (a key naming a config
    folder is a group), or None where only a whole compose is sure to match Hydra: the hydra node, sweeps, a group
    given a dict, a group added with ++."""
    parsed = OverridesParser.create().parse_overrides(overrides=overrides)
    groups, values = [], []
    for o in parsed:
        key = o.key_or_group
        if key.split("/")[0].split(".")[0] == "hydra" or o.is_sweep_override():
            return None
        if not (CONFIG_DIR / key).is_dir():
            values.append(o)
        elif isinstance(o.value(), dict) or o.is_force_add():
            return None
        else:
            groups.append(o.input_line)
    return groups, values


def override_value(value) -> str:
    """A YAML value as Hydra override text: strings quoted, so spaces, commas and '=' stay text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    # Hydra's quoted strings: only backslashes before a quote or the closing quote are escaped (doubled)
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), str(value))
    return f"'{text}'"


def load_yaml(path: Path, what: str):
    """A YAML file as plain containers; a syntax error is one UserError line: the file, line and column, and why."""
    import yaml

    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        why = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or \
            str(e).strip().splitlines()[0]
        raise UserError(f"{what} {where}: YAML syntax error ({why}): fix that line (indent keys evenly, close "
                        "brackets and quotes, no tabs)") from None
    except (OmegaConfBaseException, OSError, ValueError) as e:  # duplicate keys, unreadable, not UTF-8
        raise UserError(f"{what} {path}: not readable YAML ({str(e).strip().splitlines()[0]})") from None


def task_file_overrides(path: Path) -> list[str]:
    """`task=my_task.yaml`: the packaged `classification` task (`qa` for kind: squad) with the file's keys over it,
    as overrides in the file's place (so later task.* overrides still win); `name` defaults to the file's stem."""
    if not path.is_file():
        raise UserError(f"task file {path} not found: give task=NAME ({', '.join(group_options('task'))}) or the "
                        "path of a task .yaml file")
    own = load_yaml(path, "task file")
    if not isinstance(own, dict):
        raise UserError(f"task file {path}: expected a mapping of task keys (name, train, dev, text, label, ...)")
    base = {"squad": "qa", "qa": "qa", "tokens": "ner", "ner": "ner", "tagging": "tagging",
            "multilabel": "multilabel"}.get(own.get("kind"), "classification")
    own.pop("kind", None)
    known = OmegaConf.load(CONFIG_DIR / "task" / f"{base}.yaml")
    unknown = [k for k in own if k not in known]
    if unknown:
        raise UserError(f"task file {path}: unknown key(s) {unknown}; a {base} task has {', '.join(known)}")
    for k in ("train", "dev"):  # a relative data path is relative to the task file, not to where one runs from
        if isinstance(own.get(k), str) and not Path(own[k]).expanduser().is_absolute():
            own[k] = str((path.parent / own[k]).resolve())
    own.setdefault("name", path.stem)
    return [f"task={base}", *(f"task.{k}={override_value(v)}" for k, v in own.items())]


def load_config(overrides: list[str] | None = None, name: str = "train") -> DictConfig:
    """The resolved config for `overrides`; every error becomes one UserError line naming the key."""
    given, overrides = list(overrides or []), []
    for o in given:
        if "=" not in o:
            raise UserError(f"argument '{o}' is not key=value: write e.g. task=rte method=bitfit")
        key, value = o.split("=", 1)
        group = key.lstrip("+~")
        if group == "task" and value.endswith((".yaml", ".yml")):  # a task file of the user's own
            overrides += task_file_overrides(Path(value).expanduser())
            continue
        if group in ("model", "method", "task") and value not in group_options(group) and "/" not in value:
            raise UserError(f"unknown {group} '{value}': pick one of {', '.join(group_options(group))}")
        if key == "method.config" or key.startswith("method.config."):  # a peft config's fields are peft's, not
            o = "++" + o                                                 # declared here: any may be set or added
        overrides.append(o)
    cfg = compose_config(name, overrides,
                         "unknown key: `peftbench train --help` lists them; add a new key with +key=value")
    canonical(cfg)
    validate(cfg)
    return cfg


def canonical(cfg: DictConfig) -> None:
    """A method=peft config (`method.config`) in its canonical form (peftconfig.py), before it is checked."""
    method = cfg.get("method")
    if method is not None and method.get("apply") == "peft" and method.get("config") is not None:
        from .peftconfig import canonical_method

        canonical_method(method)


def validate(cfg: DictConfig) -> None:
    """Every knob's type and range (schema.SCHEMA), before anything loads; one UserError line naming the key."""
    schema.check(cfg)
    if "task" in cfg:  # task keys against each other (the data is checked when read: tasks/crosscheck.py)
        from .crosscheck import config_errors

        config_errors(cfg.task)
