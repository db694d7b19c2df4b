"""The select=holdout protocol's study keys, checked before anything runs (docs/protocol.md): select, holdout,
data_seed(s), trials, space, sampler, seeds=auto and its looks, margin, alpha and final_rows; one line per bad value."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.compose import group_options
from ..config.schema import STUDY_SCHEMA, check_value
from ..errors import UserError
from . import search

SELECT_SEED = 0  # the one training seed of every selection run; final seeds are distinct from it


def as_list(value: Any) -> list:
    """A study key that may be one value or a list, as a list."""
    return list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]


def _count(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def check(study: DictConfig) -> None:
    """select, holdout, data_seed(s), trials, space, sampler, seeds=auto and its bounds: one line per bad value."""

    if study.select not in ("dev", "holdout"):
        raise UserError(f"select={study.select!r} is unknown: use select=holdout (tune on a slice of train, report on "
                        "dev) or select=dev (tune and report on dev, as papers do)")
    h = study.holdout
    if isinstance(h, bool) or not isinstance(h, (int, float)) or h <= 0 or (isinstance(h, float) and not h.is_integer()
                                                                           and h >= 1):
        raise UserError(f"holdout={h!r}: give a fraction of train in (0,1), e.g. holdout=0.1, or a row count, e.g. "
                        "holdout=500")
    if study.data_seed is not None and not _count(study.data_seed, 0):
        raise UserError(f"data_seed={study.data_seed!r} is not a whole number >= 0: write e.g. data_seed=0")
    if study.data_seeds is not None:
        values = as_list(study.data_seeds)
        if not values or not all(_count(v, 0) for v in values) or len(set(values)) != len(values):
            raise UserError(f"data_seeds={values!r}: give distinct whole numbers >= 0, e.g. data_seeds=[0,1,2]")
        if study.sizes is None and study.select == "dev":
            raise UserError("data_seeds repeats the subsample of each size: add sizes=[...] (or select=holdout, where "
                            "it also repeats the holdout)")
        if study.data_seed is not None:
            raise UserError("data_seed and data_seeds both given: data_seeds=[...] lists every data seed; drop one")
    if study.trials is not None:
        if not _count(study.trials, 1):
            raise UserError(f"trials={study.trials!r} is not a whole number >= 1: write e.g. trials=8")
        if study.lrs is not None:
            raise UserError("trials and lrs both given: trials draws each method's configurations from its space, lrs "
                            "is a grid; drop one")
        drawn = set()
        for method in as_list(study.methods):
            drawn |= set(search.space(str(method), study.space))  # parses every spec: a bad one is one line
        clash = [o.split("=", 1)[0] for o in study.run if o.split("=", 1)[0].lstrip("+~") in drawn]
        if clash:
            raise UserError(f"{clash[0]} is given to every run and drawn by trials: drop it, or drop it from the space "
                            f"(space.METHOD.{clash[0]}=null)")
    if not OmegaConf.is_dict(study.space) and study.space is not None:
        raise UserError(f"space={study.space!r} is not a mapping: write space.lora.lr=\"loguniform(1e-5,1e-2)\"")
    unknown = [str(m) for m in (study.space or {}) if str(m) not in group_options("method")]
    if unknown:
        raise UserError(f"space: unknown method {unknown}; give spaces for {', '.join(group_options('method'))}")
    if study.space and not study.trials:
        raise UserError("space is given but trials is not: add trials=N to draw N configurations from it")
    if study.sampler not in search.SAMPLERS:
        raise UserError(f"sampler={study.sampler!r} is unknown: use sampler=random (i.i.d. trials) or sampler=tpe")
    if study.sampler == "tpe" and (study.select != "holdout" or not study.trials):
        raise UserError("sampler=tpe learns from the holdout scores of earlier trials: add select=holdout and trials=N "
                        "(or use sampler=random)")
    auto = str(study.seeds) == "auto"
    if not _count(study.min_seeds, 2):
        raise UserError(f"min_seeds={study.min_seeds!r} is not a whole number >= 2 (a paired interval needs 2 seeds)")
    if not _count(study.max_seeds, int(study.min_seeds)):
        raise UserError(f"max_seeds={study.max_seeds!r} is not a whole number >= min_seeds ({study.min_seeds})")
    if "ci_target" in study:
        raise UserError("ci_target is gone: seeds=auto now stops a comparison when its verdict is settled (margin=, "
                        "alpha=; docs/protocol.md); drop ci_target")
    for key, spec in STUDY_SCHEMA.items():
        check_value(key, study[key], spec)
    if auto and study.select != "holdout":
        raise UserError("seeds=auto adds final seeds after a selection phase: add select=holdout")
    if auto and "full" not in [str(m) for m in as_list(study.methods)]:
        raise UserError("seeds=auto compares every method with full: add full to methods")
    if study.select == "holdout":
        if not auto and SELECT_SEED in as_list(study.seeds):
            raise UserError(f"seeds: {SELECT_SEED} is the selection runs' seed under select=holdout; final seeds "
                            "must differ from it: write e.g. seeds=[1,2,3]")
        if any(o.split("=", 1)[0].lstrip("+~") in ("holdout", "eval_split", "data_seed") for o in study.run):
            raise UserError("holdout, eval_split and data_seed are set per run by a select=holdout study: give them as "
                            "study keys (holdout=0.1 data_seed=0), not in run")
