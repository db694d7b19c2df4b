"""Before a study's first run: everything knowable about its runs is checked at once, one line per problem.

A study must never fail at run 37 for a reason knowable before run 1. `check(configs, out)` looks at:
  - each model once: its config and tokenizer resolve (package, folder, or hub id / local HF cache), it is an encoder
    with the head the task needs; offline, a hub id's weights must be in the cache;
  - each task's data once: local files present, decodable and with the columns the task reads (GLUE: the header;
    SQuAD: the whole layout and its answers, by the run's own reader), or the hub dataset resolvable; a train_size
    above the rows there;
  - each run: batch_size divisible into grad_accum micro-batches; task.max_length within the model's positions; the
    device there when the runs train here; the study folder writable.
It raises one UserError holding every problem, one per line (the CLI prints each as its own `peftbench: error:` line).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from ..errors import UserError


def check_model(model: DictConfig):
    """Config, architecture and tokenizer of `model` resolve; returns its AutoConfig; a UserError (one line) when not."""
    from huggingface_hub import constants, try_to_load_from_cache

    from transformers import AutoConfig

    from ..models.load import check_encoder, hub_errors, load_tokenizer, resolve_path, tiny_config

    if model.get("tiny"):
        return tiny_config(model)
    path = resolve_path(model)
    with hub_errors(model, "config"):
        config = AutoConfig.from_pretrained(path)
    check_encoder(model, config)
    load_tokenizer(model)
    if not Path(path).is_dir() and constants.HF_HUB_OFFLINE:  # a hub id offline: the weights must be cached too
        if not any(isinstance(try_to_load_from_cache(path, f), str)
                   for f in ("model.safetensors", "model.safetensors.index.json")):
            raise UserError(f"model '{model.name}': '{path}' has no *.safetensors weights in the local Hugging Face "
                            "cache and HF_HUB_OFFLINE=1: fetch it once with network, or set model.name_or_path=DIR")
    return config


def check_length(cfg: DictConfig, config) -> None:
    """task.max_length fits the model's absolute positions (a longer input would fail mid-run, or silently differ)."""
    from ..models.load import max_positions

    limit = max_positions(config)
    if limit is not None and cfg.task.max_length > limit:
        raise UserError(f"task.max_length={cfg.task.max_length} is above the {limit} positions of model "
                        f"'{cfg.model.name}' ({config.model_type}, max_position_embeddings="
                        f"{config.max_position_embeddings}): give task.max_length={limit} or less")


def check_device(cfg: DictConfig) -> None:
    """A device that is not here is an error, never a silent run on the CPU (fp16 and bf16 autocast run on both)."""
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda, but torch sees no CUDA GPU here (torch.cuda.is_available() is False): run on a "
                        "GPU machine, or device=auto / device=cpu to train on the CPU")


def check_run(cfg: DictConfig) -> None:
    """What `train` checks before its folder is touched: the device, the model and the task's length against it."""
    check_device(cfg)
    check_length(cfg, check_model(cfg.model))


def from_hub(cfg: DictConfig) -> bool:
    return cfg.data_dir is None and not cfg.task.get("data_dir")


def check_data(cfg: DictConfig) -> int | None:
    """The training pool of `cfg`'s task (None from the hub: not downloaded here); a UserError when unreadable."""
    from ..data.tasks import TASKS

    task = cfg.task
    # task=classification / task=qa read the user's task.train / task.dev, else the hub; never data_dir
    hub_only = not (task.get("train") or task.get("dev")) if "train" in task else from_hub(cfg)
    if hub_only:
        from datasets import load_dataset_builder

        if not task.get("hub"):
            raise UserError(f"task={task.name} needs its data: set task.train=FILE and task.dev=FILE, or task.hub=ID")
        hub = list(task.hub) if not isinstance(task.hub, str) else [task.hub]
        hub += [task.hub_config] if task.get("hub_config") else []
        try:
            load_dataset_builder(*hub)
        except Exception as e:  # datasets raises many kinds (connection, not found, offline): all mean "not here"
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"the hub dataset {'/'.join(hub)} cannot be resolved ({why}): set "
                            "data_dir=DIR (`peftbench data DIR` writes it once, with network)") from None
        return None
    module = TASKS[task.kind]
    if task.kind in ("classification", "tokens", "multilabel"):  # the run's own reader: columns, labels, rows
        from omegaconf import OmegaConf

        return len(module.resolve(OmegaConf.create(OmegaConf.to_container(cfg)))[1])  # a copy: resolve fills it in
    if task.kind == "squad":
        train, bad, src = module.read_split(cfg, "train")
        if cfg.get("eval_split") != "holdout":  # a holdout-scored run never reads dev
            module.read_split(cfg, "dev")
        pool = sum(1 for e in train if e["spans"])
        if not pool:
            raise UserError(f"{src}: none of its {len(train)} questions has an answer at its answer_start "
                            f"(first: {bad[0] if bad else 'no answers'})")
        return pool
    names = list(task.columns) if task.get("columns") else None  # CoLA: no header line
    dev = [] if cfg.get("eval_split") == "holdout" else module.parts(task, "dev")  # a holdout run never reads dev
    for stem, _, _ in dev:  # header only: a bad row is found by the run that reads it, as before
        tsv_rows(Path(cfg.data_dir) / task.dir / f"{stem}.tsv", [*task.text_fields, task.label_field], names)
    return tsv_rows(Path(cfg.data_dir) / task.dir / "train.tsv", [*task.text_fields, task.label_field], names)


def tsv_rows(path: Path, columns: list[str], names: list[str] | None = None) -> int:
    """Rows under the header of a GLUE TSV after checking that it exists, decodes, and has `columns`; `names`: the
    file has no header line and these are its columns (CoLA), so every line is a row."""
    if not path.is_file():
        raise UserError(f"data file {path} not found: set data_dir to the folder holding "
                        f"{path.parent.parent.name}/{path.parent.name}/ (`peftbench data DIR` writes it)")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = names or f.readline().rstrip("\r\n").split("\t")
            rows = sum(1 for line in f if line.strip())
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"{path}:1: missing column(s) {missing}; the header has {header}")
    if not rows:
        raise UserError(f"{path} has no rows: an empty split cannot train or score")
    return rows


def writable(out: Path) -> bool:
    p = Path(out).absolute()
    while not p.exists():
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def problems(configs: list[DictConfig], out: Path | None = None, local: bool = True) -> list[str]:
    """Every problem of these run configs, one line each (models, then data, then runs), each source checked once.
    `local`: the runs train on this machine, so its device is theirs (not so on a cluster launcher)."""
    model_lines: list[str] = []
    data_lines: list[str] = []
    run_lines: list[str] = []
    models: dict[str, object] = {}
    pools: dict[tuple, int | None] = {}
    for cfg in configs:
        key = repr((cfg.model.get("name_or_path"), cfg.model.get("package"), bool(cfg.model.get("tiny"))))
        if key not in models:
            models[key] = None
            try:
                models[key] = check_model(cfg.model)
            except UserError as e:
                model_lines.append(str(e))
        try:
            if models[key] is not None:
                check_length(cfg, models[key])
            if local:
                check_device(cfg)
        except UserError as e:
            run_lines.append(str(e))
        source = (cfg.task.name, cfg.data_dir, cfg.task.get("data_dir"), str(cfg.task.get("hub")))
        if source not in pools:
            try:
                pools[source] = check_data(cfg)
            except UserError as e:
                pools[source] = None
                data_lines.append(f"task {cfg.task.name}: {e}")
        pool = pools[source]
        if pool is not None and cfg.train_size is not None and cfg.train_size > pool:
            data_lines.append(f"task {cfg.task.name}: train_size={cfg.train_size} is above its {pool} training examples")
        if cfg.batch_size % cfg.grad_accum:
            run_lines.append(f"batch_size={cfg.batch_size} does not divide into grad_accum={cfg.grad_accum} "
                             "micro-batches")
    if out is not None and not writable(out):
        run_lines.append(f"cannot write the study folder {out}: pick another out=")
    return list(dict.fromkeys(model_lines + data_lines + run_lines))  # each line once, in order


def check(configs: list[DictConfig], out: Path | None = None, local: bool = True) -> None:
    """Raise one UserError listing every problem (one per line), or return when there is none."""
    lines = problems(configs, out, local)
    if len(lines) > 1:
        lines.append(f"{len(lines)} problems found before the first run; nothing ran")
    if lines:
        raise UserError("\n".join(lines))
