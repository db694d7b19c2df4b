"""Load a tokenizer and an encoder with the task's head: from the hub, a local folder, an installed package, or random."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import logging
import string
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig
from transformers import (AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer, BertTokenizerFast, PreTrainedModel,
                          PreTrainedTokenizerBase)

from ..errors import UserError
from .families import FAMILIES, SUPPORTED

log = logging.getLogger("peftbench")  # train.log while a run trains
# "multilabel": the sequence classifier with one sigmoid per label (problem_type multi_label_classification: BCE)
HEADS = {"seq_cls": AutoModelForSequenceClassification, "multilabel": AutoModelForSequenceClassification,
         "token_cls": AutoModelForTokenClassification,
         "qa": AutoModelForQuestionAnswering}
# what AutoTokenizer reads from a folder; a model folder with none of them has no tokenizer of its own
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model")


def tiny_tokenizer(token_types: bool = True) -> BertTokenizerFast:
    """A character-level WordPiece vocabulary: any lower-cased text tokenizes, offsets work, nothing to download.
    `token_types=False` leaves token_type_ids out of its output, as the tokenizers of RoBERTa, DistilBERT, ... do."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + ["##" + c for c in chars]
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, model_input_names=names)


def tiny_family(model_cfg: DictConfig) -> str:
    kind = str(model_cfg.tiny.get("model_type") or "bert")
    if kind not in FAMILIES:
        raise UserError(f"model.tiny.model_type='{kind}' is unknown: pick one of {', '.join(sorted(FAMILIES))}")
    return kind


def tiny_config(model_cfg: DictConfig) -> AutoConfig:
    """A tiny random config of the family `model.tiny.model_type`, from the generic keys of model.tiny (hidden_size,
    num_hidden_layers, ...) renamed and completed by the family's `tiny` rules (families.py), with the tiny
    tokenizer's vocabulary and ids ([PAD] 0, [CLS] 2, [SEP] 3)."""
    kind = tiny_family(model_cfg)
    spec = {k: v for k, v in model_cfg.tiny.items() if k != "model_type"}
    rules = FAMILIES[kind].tiny
    kwargs = {"vocab_size": len(tiny_tokenizer()), "pad_token_id": 0}
    for key, value in spec.items():
        rule = rules.get(key)
        if isinstance(rule, str) and rule.startswith("to:"):  # the family's own name for a generic key
            kwargs[rule[3:]] = value
        elif isinstance(rule, str) and rule.startswith("add:"):  # e.g. RoBERTa's positions start after padding_idx
            kwargs[key] = value + int(rule[4:])
        else:
            kwargs[key] = value
    for key, rule in rules.items():
        if isinstance(rule, str) and rule.startswith("same:"):
            kwargs.setdefault(key, spec[rule[5:]])
        elif not (isinstance(rule, str) and rule.startswith(("to:", "add:"))):
            kwargs.setdefault(key, rule)
    config = AutoConfig.for_model(kind, **kwargs)
    config.name_or_path = f"tiny random {kind}"
    return config


def resolve_path(model_cfg: DictConfig) -> str:
    """Where the weights live: an installed package's folder wins over the hub id, so presets work offline."""
    if model_cfg.get("package"):
        try:
            pkg = importlib.import_module(model_cfg.package)
            return str(pkg.get_model_path())
        except ImportError:
            pass  # fall back to the hub id
    path = model_cfg.name_or_path
    if path is None:
        raise UserError(f"model '{model_cfg.name}' has no name_or_path: set model.name_or_path=DIR_OR_HUB_ID")
    text = str(path)
    # a hub id is "name" or "org/name"; anything else, or anything that exists here, is a local folder
    local = Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if local:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise UserError(f"model folder {p} does not exist: set model.name_or_path to a folder holding config.json")
        if not (p / "config.json").is_file():
            raise UserError(f"model folder {p} has no config.json: it is not a Hugging Face model folder")
        if not any(p.glob("*.safetensors")):
            raise UserError(f"model folder {p} has no *.safetensors weights: save the model with safetensors")
        return str(p)
    return text


@contextmanager
def hub_errors(model_cfg: DictConfig, what: str, path: str | None = None):
    """A hub id that cannot be fetched (offline, a typo, a private repo) is one line, not a traceback."""
    try:
        yield
    except OSError as e:  # transformers raises OSError (or a subclass) for every "cannot find/download" case
        path = path or model_cfg.get("name_or_path")
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"model '{model_cfg.name}': cannot load the {what} of '{path}' ({why}): give a local folder "
                        "with model.name_or_path=DIR, or fetch it once with network (HF_HUB_OFFLINE unset)") from None


def shipped_config(model_cfg: DictConfig) -> AutoConfig:
    """The architecture alone (no weights): from a config shipped in the package, the tiny preset, or the folder."""
    if model_cfg.get("tiny"):
        return tiny_config(model_cfg)
    if model_cfg.get("config_file"):
        text = importlib.resources.files("peftbench.model_configs").joinpath(model_cfg.config_file).read_text()
        config = AutoConfig.for_model(**json.loads(text))
        config.name_or_path = str(model_cfg.get("name_or_path") or model_cfg.config_file)
        return config
    path = resolve_path(model_cfg)
    with hub_errors(model_cfg, "config"):
        return AutoConfig.from_pretrained(path)


def load_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    """The model's own tokenizer (its folder or hub id), or the one `model.tokenizer` names; never one from elsewhere."""
    if model_cfg.get("tiny"):
        return tiny_tokenizer(FAMILIES[tiny_family(model_cfg)].token_types)
    path = model_cfg.get("tokenizer")
    if path is None:
        path = resolve_path(model_cfg)
        if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
            raise UserError(f"model folder {path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): save "
                            "the tokenizer beside the weights (tokenizer.save_pretrained(DIR)), or name one with "
                            "model.tokenizer=DIR_OR_HUB_ID")
    elif Path(str(path)).expanduser().exists():
        path = str(Path(str(path)).expanduser())
    with hub_errors(model_cfg, "tokenizer", str(path)):
        return AutoTokenizer.from_pretrained(path)


def check_encoder(model_cfg: DictConfig, config: AutoConfig) -> None:
    """A decoder-only, encoder-decoder or head-less model is one line naming its architecture. An encoder family
    without an entry in families.py trains too: its roles are derived from its modules (roles.py)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    kind = config.model_type
    if kind in FAMILIES:
        return
    if getattr(config, "is_encoder_decoder", False):
        why = "an encoder-decoder model"
    elif kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        why = "a decoder-only language model"
    elif kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        why = "a model without a sequence-classification head in transformers"
    else:
        return
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    where = model_cfg.get("name_or_path") or model_cfg.name
    raise UserError(f"model '{model_cfg.name}' ({where}) is {arch} (model_type {kind}), {why}: peftbench fine-tunes "
                    f"encoders ({', '.join(SUPPORTED)}); give one with model=PRESET or model.name_or_path=DIR")


def max_positions(config: AutoConfig) -> int | None:
    """The longest input the model's absolute position embeddings take; None when positions are relative only."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None or getattr(config, "position_biased_input", True) is False:  # DeBERTa-v3: relative positions only
        return None
    if getattr(config, "position_embedding_type", "absolute") not in ("absolute", None):
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):  # positions start after padding_idx
        n -= (config.pad_token_id or 0) + 1
    return n


class _HeldReport(logging.Filter):
    """Holds back transformers' LOAD REPORT (modeling_utils' logger) until the loading info says what it is about."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.records.append(record)
            return False
        return True


def _keys(keys: list[str]) -> str:
    """'classifier.weight', 'classifier.bias' -> 'classifier.{weight,bias}'."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        module, _, leaf = k.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    return ", ".join(f"{m}.{{{','.join(ls)}}}" if len(ls) > 1 else f"{m}.{ls[0]}" if m else ls[0]
                     for m, ls in groups.items())


def _from_pretrained(auto, path: str, **kwargs) -> PreTrainedModel:
    """`auto.from_pretrained`, with transformers' multi-line load report for the new task head made one line of the
    run's log (train.log). A report of anything more (encoder weights missing, unexpected or of another shape) is
    shown in full, as transformers writes it, and its gist goes to train.log too."""
    tlog = logging.getLogger("transformers.modeling_utils")  # where log_state_dict_report writes (transformers 5)
    held, info = _HeldReport(), None
    tlog.addFilter(held)
    try:
        model, info = auto.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        tlog.removeFilter(held)
        if info is None:  # it raised (shapes, conversion): the report tells why
            for record in held.records:
                tlog.handle(record)
    prefix = f"{model.base_model_prefix}."
    encoder = getattr(model, model.base_model_prefix, None)
    parts = {name for name, _ in encoder.named_children()} if encoder is not None else set()
    new_head = [k for k in model.state_dict() if k in info["missing_keys"] and not k.startswith(prefix)]
    missing = sorted(set(info["missing_keys"]) - set(new_head))
    # a checkpoint's weights for parts this architecture lacks (the pooler under a QA head, a pretraining head)
    dropped = sorted(k for k in info["unexpected_keys"] if k.removeprefix(prefix).split(".")[0] not in parts)
    unexpected = sorted(set(info["unexpected_keys"]) - set(dropped))
    if missing or unexpected or info["mismatched_keys"]:
        for record in held.records:
            tlog.handle(record)
        log.warning("loading %s: %s", path, "; ".join(
            [f"encoder weights missing from the checkpoint, newly initialised: {_keys(missing)}"] * bool(missing)
            + [f"checkpoint weights the model has no place for: {_keys(unexpected)}"] * bool(unexpected)
            + [f"weights of another shape: {_keys([k[0] for k in info['mismatched_keys']])}"] * bool(
                info["mismatched_keys"])))
    elif new_head or dropped:
        log.info("; ".join([f"new head initialised: {_keys(new_head)}"] * bool(new_head)
                           + [f"unused checkpoint weights: {_keys(dropped)}"] * bool(dropped)))
    return model


def load_model(model_cfg: DictConfig, head: str, num_labels: int = 2, random_init: bool = False) -> PreTrainedModel:
    """The encoder with a fresh task head; `random_init` builds it from the config alone (parameter counts, tests)."""
    auto = HEADS[head]
    kwargs = {"num_labels": num_labels} if head in ("seq_cls", "multilabel", "token_cls") else {}
    if head == "multilabel":
        kwargs["problem_type"] = "multi_label_classification"
    if head == "seq_cls" and num_labels == 1:  # one output: a regression head, MSE on float targets (STS-B)
        kwargs["problem_type"] = "regression"
    if random_init or model_cfg.get("tiny"):
        config = shipped_config(model_cfg)
        for k, v in kwargs.items():
            setattr(config, k, v)
        model = auto.from_config(config)
    else:
        # safetensors only: a pickled .bin checkpoint can run code on load
        path = resolve_path(model_cfg)
        with hub_errors(model_cfg, "weights"):
            model = _from_pretrained(auto, path, use_safetensors=True, **kwargs)
    roles = model_cfg.get("roles")
    if roles:  # families.family_of reads them: the user's module paths over the family's (or derived) table
        from omegaconf import OmegaConf

        model.peftbench_roles = {k: v for k, v in OmegaConf.to_container(roles).items() if v is not None}
    return model


def start_at(model: PreTrainedModel, value: float) -> None:
    """Start a one-output (regression) head at `value`, the training targets' mean, instead of HF's bias 0.

    The last `Linear` with one output is the regression output in every family's head (BERT's classifier, RoBERTa's
    out_proj, ...). Starting at 0 against STS-B's 0..5 targets, the first steps' largest gradient only moves the
    output's level, through the whole encoder under full fine-tuning; how much that costs the features depends on
    the seed (docs/results-parity.md#sts-b).
    """
    import torch

    out = next((m for m in reversed(list(model.modules())) if isinstance(m, torch.nn.Linear) and m.out_features == 1),
               None)
    if out is None or out.bias is None:
        raise UserError("task.head_bias=mean: the model's head has no one-output Linear with a bias to start at the "
                        "mean; use task.head_bias=zero")
    with torch.no_grad():
        out.bias.fill_(value)

