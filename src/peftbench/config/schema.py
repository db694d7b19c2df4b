"""Every config knob's type and range, declared once: `config.validate()` walks this table before anything loads.

SCHEMA maps a key path (as written on the command line) to a spec, a plain dict:
  type      "int" (a whole number, never a bool), "float" (any number), "bool", "str", "list" (of strings,
            non-empty unless "empty": True), "str|list" (one string or such a list), "dict", "auto|int"
  min, max  inclusive bounds; gt, lt: exclusive ones (numbers)
  choices   the closed set a "str" (or each item of a "list") must come from; str_choices: a "str|list"'s string
  nullable  True: null is allowed (null means "off" or "the default", as each key's comment in its yaml says)
  open      (a "dict") keys below it that are not declared are allowed
A `method.*` or `task.*` key applies only when the chosen method or task config has it (a LoRA rank means nothing to
BitFit); the others are always there. A new knob is one line here: tests/test_schema.py fails on any key of a
shipped yaml (train.yaml, configs/model, configs/method, configs/task) that is not declared.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserError

INT, NUM, BOOL, STR, LIST = "int", "float", "bool", "str", "list"


def spec(type: str, **kw: Any) -> dict[str, Any]:
    return {"type": type, **kw}


def pos_int(**kw: Any) -> dict[str, Any]:
    return spec(INT, gt=0, **kw)


# torch.compile's modes (torch._inductor.list_mode_options); transformers' ACT2FN names for the adapters' activation
COMPILE_MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
ACTIVATIONS = ["gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu", "relu", "relu6", "leaky_relu",
               "silu", "swish", "tanh", "sigmoid", "mish", "linear", "elu", "selu", "relu2"]
# methods/bitfit.py's roles, and the names runs before families.py used (intermediate, output, layernorm)
BIAS_ROLES = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out", "norm", "pooler", "intermediate",
              "output", "layernorm"]
BLOCK_ROLES = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]  # families.py's module roles
FAMILY_TYPES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert"]

SCHEMA: dict[str, dict[str, Any]] = {
    # train.yaml
    "seed": spec(INT, min=0, max=2**32 - 1),  # numpy's seed range
    "data_dir": spec(STR, nullable=True),
    "train_size": pos_int(nullable=True),
    "data_seed": spec(INT, min=0, max=2**32 - 1, nullable=True),
    "holdout": spec(NUM, gt=0, nullable=True),  # holdout.check_spec: a fraction in (0,1) or a whole count
    "eval_split": spec(STR, choices=["dev", "holdout"]),
    "protocol": spec("dict", nullable=True, open=True),  # studies/grid.py writes it; record.py documents its keys
    "epochs": pos_int(),
    "lr": spec(NUM, gt=0, nullable=True),
    "max_steps": pos_int(nullable=True),
    "schedule": spec(STR, choices=["epochs", "steps"]),
    "steps": spec("dict"),
    "steps.min_steps": pos_int(),
    "steps.epochs_equiv": spec(NUM, gt=0),
    "steps.cap": pos_int(),
    "batch_size": pos_int(),
    "grad_accum": pos_int(),
    "eval_batch_size": pos_int(),
    "weight_decay": spec(NUM, min=0),
    "warmup_ratio": spec(NUM, min=0, max=1),
    "max_grad_norm": spec(NUM, gt=0, nullable=True),
    "precision": spec(STR, choices=["auto", "fp16", "bf16", "fp32"]),
    "device": spec(STR, choices=["auto", "cpu", "cuda"]),
    "eval_every": spec(INT, min=0, nullable=True),  # 0 or null: off
    "log_every": pos_int(),
    "threads": pos_int(nullable=True),
    "compile": spec(BOOL),
    "compile_mode": spec(STR, choices=COMPILE_MODES),
    "pad_multiple": spec("auto|int", min=1),
    "group_by_length": spec(BOOL),
    "checkpoint_every": spec(INT, min=0, nullable=True),  # 0 or null: only on signals
    "resume": spec(BOOL),
    "overwrite": spec(BOOL),
    "out": spec(STR),
    "forgetting": spec(BOOL),
    "tracking": spec("dict"),
    "tracking.mode": spec(STR, choices=["online", "offline", "disabled"]),
    "tracking.project": spec(STR),
    "tracking.group": spec(STR, nullable=True),
    # configs/model
    "model": spec("dict"),
    "model.name": spec(STR),
    "model.name_or_path": spec(STR, nullable=True),
    "model.package": spec(STR, nullable=True),
    "model.config_file": spec(STR, nullable=True),
    "model.tokenizer": spec(STR, nullable=True),  # a folder or hub id; null: the model's own folder
    "model.tiny": spec("dict", nullable=True, open=True),  # more keys: passed to the tiny config
    # module roles (families.py, roles.py): paths under one block; blocks a regex of a block's path
    "model.roles": spec("dict", nullable=True),
    **{f"model.roles.{r}": spec(STR, nullable=True) for r in (
        "blocks", "pooler", "query", "key", "value", "attention_output", "ffn_in", "ffn_out", "attention_point",
        "ffn_point", "attention_post_norm", "ffn_post_norm", "attention")},
    "model.tiny.model_type": spec(STR, choices=FAMILY_TYPES),  # tests/test_schema.py: the same as families.py
    "model.tiny.hidden_size": pos_int(),
    "model.tiny.num_hidden_layers": pos_int(),
    "model.tiny.num_attention_heads": pos_int(),
    "model.tiny.intermediate_size": pos_int(),
    "model.tiny.max_position_embeddings": pos_int(),
    # configs/method: shared keys
    "method": spec("dict"),
    "method.name": spec(STR),
    "method.trains": spec(STR),
    "method.apply": spec(STR),  # the registry (methods.METHODS) names the choices when the method is applied
    "method.lr": spec(NUM, gt=0),
    # LoRA, DoRA, VeRA, IA3
    "method.r": pos_int(),
    "method.alpha": spec(NUM, gt=0),
    "method.dropout": spec(NUM, min=0, lt=1),
    "method.target_roles": spec(LIST, choices=BLOCK_ROLES),
    "method.feedforward_roles": spec(LIST, choices=BLOCK_ROLES),
    "method.target_modules": spec("str|list", nullable=True),  # module names or one regex; null: the roles
    "method.feedforward_modules": spec("str|list", nullable=True),
    "method.use_dora": spec(BOOL),
    "method.d_initial": spec(NUM, gt=0),
    "method.projection_prng_key": spec(INT, min=0),
    # prompt tuning, prefix tuning
    "method.num_virtual_tokens": pos_int(),
    "method.init": spec(STR, choices=["normal", "vocab"]),
    "method.position": spec(STR, choices=["before_cls", "after_cls"]),
    "method.text_positions": spec(STR, choices=["shift", "keep"]),
    "method.reparam": spec(STR, choices=["none", "residual"]),
    "method.bottleneck": pos_int(),
    "method.projection": spec(INT, min=0),  # 0: free prefixes
    # adapters
    "method.positions": spec(LIST, choices=["attention", "ffn"]),
    "method.reduction_factor": pos_int(),
    "method.activation": spec(STR, choices=ACTIVATIONS),
    "method.original_ln_before": spec(BOOL),
    # LoRA's variants (rsLoRA, PiSSA, OLoRA, LoRA+), AdaLoRA
    "method.use_rslora": spec(BOOL),
    "method.init_lora_weights": spec(STR, choices=["gaussian", "pissa", "olora"]),
    "method.loraplus_lr_ratio": spec(NUM, min=1),
    "method.init_r": pos_int(),
    "method.target_r": pos_int(),
    "method.tinit_ratio": spec(NUM, min=0, lt=1),
    "method.tfinal_ratio": spec(NUM, min=0, lt=1),
    "method.delta_t": pos_int(),
    "method.orth_reg_weight": spec(NUM, min=0),
    # any peft tuner by its config class (methods/peft_method.py): peft checks the arguments not declared here
    "method.peft_config": spec(STR),
    "method.peft_args": spec("dict", open=True),
    # method=peft: a whole peft config (peftconfig.py); peft's own class checks its fields
    "method.config": spec("dict", open=True),
    "method.config.peft_type": spec(STR),  # peftconfig.config_class names the choices (the installed peft's tuners)
    "method.peft_args.r": pos_int(),
    "method.peft_args.alpha": spec(NUM, gt=0),
    "method.peft_args.oft_block_size": pos_int(),
    "method.peft_args.boft_block_size": pos_int(),
    "method.peft_args.boft_n_butterfly_factor": pos_int(),
    "method.peft_args.n_frequency": pos_int(),
    "method.peft_args.scaling": spec(NUM, gt=0),
    "method.peft_args.random_loc_seed": spec(INT, min=0),
    "method.peft_args.block_size": pos_int(),
    "method.peft_args.mask_type": spec(STR, choices=["random"]),
    "method.peft_args.random_seed": spec(INT, min=0),
    "method.peft_args.variant": spec(STR, choices=["road_1", "road_2", "road_4"]),
    "method.peft_args.group_size": pos_int(),
    "method.peft_args.init_weights": spec(BOOL),
    # BitFit
    "method.biases": spec("str|list", str_choices=["all"], choices=BIAS_ROLES, empty=True),  # []: the head only
    # configs/task: shared keys
    "task": spec("dict"),
    "task.name": spec(STR),
    "task.kind": spec(STR, choices=["glue", "squad", "classification", "tokens", "multilabel"]),
    "task.metric": spec(STR, nullable=True),  # null (own data): accuracy or pearson; the task module checks it
    "task.max_length": spec(INT, min=8),  # and at most the model's max_position_embeddings (config.validate)
    "task.hub": spec("str|list", nullable=True),
    "task.metrics": spec(LIST, choices=["accuracy", "f1", "mcc", "pearson", "spearman", "precision", "recall",
                                        "micro_f1", "macro_f1", "exact_match"], nullable=True),
    "task.problem": spec(STR, choices=["auto", "classification", "regression"]),
    "task.head_bias": spec(STR, choices=["zero", "mean"], nullable=True),  # regression: the output's starting bias
    "task.labels": spec(LIST, empty=True, nullable=True),  # [] for a regression; null: the training data's
    "task.label_names": spec(LIST, empty=True, nullable=True),
    "task.data_dir": spec(STR, nullable=True),
    # GLUE
    "task.dir": spec(STR),
    "task.text_fields": spec(LIST),
    "task.label_field": spec(STR),
    "task.hub_text_fields": spec(LIST),
    "task.columns": spec(LIST),  # a headerless file's columns (CoLA)
    "task.dev_files": spec(LIST),  # a dev set of several files (MNLI matched, mismatched)
    "task.dev_suffixes": spec(LIST),  # the metric suffix of each dev file ("" for the first)
    "task.hub_dev": spec("str|list"),  # the hub split(s) scored
    # own data (task=classification, task=qa)
    "task.train": spec(STR, nullable=True),
    "task.dev": spec(STR, nullable=True),
    "task.hub_config": spec(STR, nullable=True),
    "task.text": spec(STR),
    "task.text_pair": spec(STR, nullable=True),
    "task.label": spec(STR),
    # token classification (task=ner, task=tagging)
    "task.tokens": spec(STR),  # the column of a sentence's words (JSONL, hub)
    "task.tags": spec(STR),  # the column of its tags, one per word
    "task.tag_column": spec(INT),  # CoNLL files: the tag's column, 0-based (-1: the last)
    "task.outside": spec(STR),  # the tag of a word in no entity
    # multi-label (task=multilabel)
    "task.label_columns": spec(LIST, nullable=True),  # one 0/1 column per label, in place of a list in task.label
    "task.separator": spec(STR),  # CSV/TSV: the labels of a row joined in one cell
    "task.threshold": spec(NUM, gt=0, lt=1),  # a label is predicted where its sigmoid reaches it
    # SQuAD
    "task.doc_stride": pos_int(),
    "task.max_answer_length": pos_int(),
    "task.n_best": pos_int(),
    "task.eval_size": pos_int(nullable=True),
}

# study keys of the holdout protocol's verdicts (studies/protocol.py checks them with check_value; docs/protocol.md)
STUDY_SCHEMA: dict[str, dict[str, Any]] = {
    "margin": spec(NUM, gt=0),          # points of the primary metric a method may lose and still be non-inferior
    "alpha": spec(NUM, gt=0, max=0.5),  # the family-wise error of the verdicts on one task
    "final_rows": spec(STR, choices=["selection", "all"]),  # final runs train on the selection's rows, or all of train
}

# keys present only in some configs: their absence is fine (every other key is always composed)
OPTIONAL_PREFIXES = ("method.", "task.", "model.")


def allowed(s: dict[str, Any]) -> str:
    """What a spec allows, in words, for the error line."""
    t = s["type"]
    words = {INT: "a whole number", NUM: "a number", BOOL: "true or false", STR: "a string", "dict": "a mapping",
             LIST: "a non-empty list", "str|list": "a string or a non-empty list", "auto|int": "auto or a whole number"}
    text = words[t]
    if s.get("choices"):
        text = ("one of " if t == STR else "a list from ") + ", ".join(map(str, s["choices"]))
    lo = f">= {s['min']}" if "min" in s else f"> {s['gt']}" if "gt" in s else None
    hi = f"<= {s['max']}" if "max" in s else f"< {s['lt']}" if "lt" in s else None
    if lo or hi:
        text += " " + " and ".join(b for b in (lo, hi) if b)
    return text + (" (or null)" if s.get("nullable") else "")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def check_value(key: str, value: Any, s: dict[str, Any]) -> None:
    """One key against its spec: a UserError naming the key, the value and what is allowed."""
    t = s["type"]
    if value is None:
        if s.get("nullable"):
            return
        raise UserError(f"{key}=null is not allowed: give {allowed(s)}")
    if t == "auto|int":
        if value == "auto":
            return
        t = INT
    if t == "str|list":
        if isinstance(value, str):
            if s.get("str_choices") and value not in s["str_choices"]:
                raise UserError(f"{key}={value!r} is unknown: use {', '.join(s['str_choices'])}, or a list from "
                                f"{', '.join(s.get('choices', []))}")
            return
        t = LIST
    if t == INT and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{key}={value!r} is not a whole number: give an integer, e.g. {key}=3")
    if t == NUM and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"{key}={value!r} is not a number: give {allowed(s)}")
    if t == BOOL and not isinstance(value, bool):
        raise UserError(f"{key}={value!r} is not true or false")
    if t == STR and not isinstance(value, str):
        raise UserError(f"{key}={value!r} is not a string: give {allowed(s)} (quote it: {key}=\"'{value}'\")")
    if t == "dict" and not isinstance(value, DictConfig):
        raise UserError(f"{key}={value!r} is not a mapping: set its keys, e.g. {key}.KEY=VALUE")
    if t == LIST:
        if not isinstance(value, ListConfig) or not all(_scalar(v) for v in value):
            raise UserError(f"{key}={value!r} is not a list: give {allowed(s)}, e.g. {key}=[a,b]")
        if not value and not s.get("empty"):
            raise UserError(f"{key}=[] is empty: give {allowed(s)}")
        bad = [v for v in value if s.get("choices") and v not in s["choices"]]
        if bad:
            raise UserError(f"{key} has unknown item(s) {bad}: use {', '.join(s['choices'])}")
        return
    if t == STR and s.get("choices") and value not in s["choices"]:
        raise UserError(f"{key}={value!r} is unknown: use {', '.join(s['choices'])}")
    if t in (INT, NUM):
        both = ("min" in s or "gt" in s) and ("max" in s or "lt" in s)
        for bound, ok, word in (("min", lambda b: value >= b, ">="), ("gt", lambda b: value > b, ">"),
                                ("max", lambda b: value <= b, "<="), ("lt", lambda b: value < b, "<")):
            if bound in s and not ok(s[bound]):
                raise UserError(f"{key}={value} is out of range: give {allowed(s)}" if both
                                else f"{key}={value} must be {word} {s[bound]}")


def _leaves(node: DictConfig, prefix: str = ""):
    for k, value in node.items():
        path = f"{prefix}{k}"
        yield path
        if isinstance(value, DictConfig) and not SCHEMA.get(path, {}).get("open"):
            yield from _leaves(value, path + ".")


def check(cfg: DictConfig, part: str | None = None) -> None:
    """Every key of a composed run config against SCHEMA; unknown keys (a `+key=value` typo) are refused too.
    `part` ("method"): only that section, for a config that holds just it."""
    for key, s in SCHEMA.items():
        if part and not key.startswith(part + "."):
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            if key.startswith(OPTIONAL_PREFIXES) or key in ("model", "method", "task"):
                continue
            raise UserError(f"config: {key} is missing (removed with ~{key}?): it is needed; give {key}=VALUE")
        check_value(key, value, s)
    unknown = [k for k in _leaves(cfg) if k not in SCHEMA]
    if unknown:
        raise UserError(f"config: unknown key(s) {unknown}: `peftbench train --help` lists every key (a new knob is "
                        "declared in peftbench/schema.py)")


_ABSENT = object()
