"""Take a run home: `peftbench export RUN --format peft|merged|onnx --out DIR` writes a folder the ecosystem loads.

  peft    the adapter as peft saves it (adapter_config.json + adapter_model.safetensors, the head in
          modules_to_save) for any run whose method wraps the model in a PeftModel, or whose method module offers
          `to_peft(model, cfg)` building the equivalent PeftModel; `PeftModel.from_pretrained(base, DIR)` loads it.
  merged  a plain transformers folder (config with id2label/label2id, safetensors weights, tokenizer): peft methods
          merged by merge_and_unload, methods that train the model's own tensors as they are. A method that adds
          modules the architecture lacks (prompts, prefixes, bottleneck adapters) cannot fold in.
  onnx    the merged model through torch.onnx's exporter (dynamo, onnxscript), checked against PyTorch with
          onnxruntime before it is kept; config and tokenizer beside it.
Which format a run takes is decided from the loaded model, never from the method's name. Every folder gets a model
card (README.md, huggingface_hub's ModelCard) naming the base, method, task, dev metric (with its 95% interval when
sibling seed runs sit in the same study folder), trainable share and the command that trained it.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from ..engine.delta import Run, load_run, merge_peft
from ..engine.folders import check_out, check_run, staged
from ..errors import UserError
from ..record import identity_fields, read_record, recorded_runtime

FORMATS = ("peft", "merged", "onnx")
ONNX_FILE = "model.onnx"
ONNX_TOL = 1e-4  # the largest |logit difference| onnxruntime may show against PyTorch
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# what the ONNX check feeds both runtimes: short and long, so padding and masking are exercised
CHECK_TEXTS = ["a gorgeous, witty film", "dull and lifeless, a mess from start to finish that nobody should see",
               "it is fine"]
CHECK_CONTEXT = "The Eiffel Tower in Paris was built in 1889 for the World's Fair and stood as the tallest structure."


def first_line(e: BaseException, limit: int = 200) -> str:
    return str(e).strip().splitlines()[0][:limit] if str(e).strip() else type(e).__name__


def as_peft(run: Run) -> tuple[Any | None, str]:
    """(the run as a PeftModel, "") -- its own when the method is peft-backed, else the method module's `to_peft` --
    or (None, why not)."""
    if hasattr(run.model, "peft_config"):
        return run.model, ""
    from ..models.methods import METHODS

    module = sys.modules[METHODS[run.meta["method"]["apply"]].__module__]
    convert = getattr(module, "to_peft", None)
    if convert is None:
        return None, ""
    try:
        return convert(run.model, OmegaConf.create(run.meta["method"])), ""
    except LookupError as e:  # the method has a peft counterpart, but not for this run
        return None, f"has no peft form here: {str(e).strip(chr(39))}"


def as_plain(run: Run) -> tuple[torch.nn.Module, str | None]:
    """(the run folded into a plain transformers model, None), or (the model, why it does not fold)."""
    from transformers import PreTrainedModel

    model = run.model
    if hasattr(model, "peft_config"):
        try:
            model = merge_peft(model, run.meta)
        except Exception as e:  # a peft type without merge support (prompt learning, ...) says so in its own words
            return model, f"cannot be merged by peft ({first_line(e)})"
    if not isinstance(model, PreTrainedModel):
        inner = next(n for n, m in model.named_modules() if isinstance(m, PreTrainedModel))
        own = next((n for n, _ in model.named_parameters() if not n.startswith(inner + ".")), "none")
        return model, f"wraps the encoder in {type(model).__name__} (with parameters of its own, e.g. {own})"
    with torch.device("meta"):  # the architecture's own tensors, no memory
        own = set(type(model)(model.config).state_dict())
    extra = sorted(set(model.state_dict()) - own)
    hooked = [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if extra or hooked:
        return model, f"adds modules the architecture lacks (e.g. {(extra or hooked)[0]})"
    return model, None


def refuse(run: Run, fmt: str, why: str, other: str | None) -> UserError:
    go = (f"export it with --format {other}" if other else
          "no plain-library format holds it: serve it with `peftbench predict RUN` or peftbench.artifacts.multitask.MultiTask")
    return UserError(f"export --format {fmt}: method '{run.meta['method']['name']}' {why}; {go}")


def write_peft(run: Run, peft_model: Any, out: Path) -> dict[str, Any]:
    model_cfg = run.meta["model"]
    base = model_cfg.get("name_or_path")
    if base is None:  # a random base (model=tiny): ship it, or nothing could rebuild it
        base_model = _fresh_base(run)
        base_model.save_pretrained(out / "base")
        run.tokenizer.save_pretrained(out / "base")
        base = "base"
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = str(base)
    with warnings.catch_warnings():  # peft looks for the base's config to see if the vocabulary grew: it did not
        warnings.filterwarnings("ignore", message="(Could not find a config file|Unable to fetch remote file)")
        peft_model.save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    return {"library_name": "peft", "base": str(base)}


def _fresh_base(run: Run) -> torch.nn.Module:
    from ..models.load import load_model

    with torch.random.fork_rng():  # the same seeded random base load_run built
        torch.manual_seed(run.meta.get("seed", 42))
        return load_model(OmegaConf.create(run.meta["model"]), run.head, run.meta.get("num_labels", 2))


PIPELINES = {"qa": "question-answering", "token_cls": "token-classification"}  # the card's pipeline per head
AUTO_CLASSES = {"qa": "AutoModelForQuestionAnswering", "token_cls": "AutoModelForTokenClassification"}


def labelled(model: torch.nn.Module, run: Run) -> torch.nn.Module:
    """The config a pipeline reads: the task's class names, or a regression head's problem type."""
    config = model.config
    if run.head == "multilabel":
        config.problem_type = "multi_label_classification"  # a pipeline then scores each label with a sigmoid
    if run.head in ("seq_cls", "multilabel", "token_cls") and run.meta.get("num_labels", 2) > 1:
        names = run.meta.get("label_names") or [str(x) for x in run.meta["task"].get("labels", [])]
        if len(names) == config.num_labels:
            config.id2label = dict(enumerate(str(n) for n in names))
            config.label2id = {str(n): i for i, n in enumerate(names)}
    elif run.head == "seq_cls":
        config.problem_type = "regression"
    return model


def write_merged(model: torch.nn.Module, run: Run, out: Path) -> dict[str, Any]:
    labelled(model, run).save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    return {"library_name": "transformers"}


def write_onnx(model: torch.nn.Module, run: Run, out: Path) -> dict[str, Any]:
    """torch.onnx (dynamo) with batch and sequence dynamic; kept only if onnxruntime matches PyTorch on CHECK_TEXTS."""
    import onnxruntime as ort

    enc = check_inputs(run)
    names = [k for k in MODEL_INPUTS if k in enc]
    model = labelled(model, run).eval()
    outputs = ["start_logits", "end_logits"] if run.head == "qa" else ["logits"]
    axes = {k: {0: "batch", 1: "sequence"} for k in names} | {k: {0: "batch"} for k in outputs}
    if run.head in ("qa", "token_cls"):  # an output per token
        axes.update({k: {0: "batch", 1: "sequence"} for k in outputs})
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # its registry's "torchvision is not installed" notes
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on axis naming and deprecated pytree types
            torch.onnx.export(model, (), str(out / ONNX_FILE), kwargs={k: enc[k] for k in names}, input_names=names,
                              output_names=outputs, dynamic_axes=axes, dynamo=True, external_data=False,
                              verbose=False)
            want = model(**{k: enc[k] for k in names})
    except Exception as e:  # an operator or control flow the exporter cannot trace
        raise UserError(f"export --format onnx: torch.onnx cannot export this {type(model).__name__} ({first_line(e)}); "
                        "use --format merged") from None
    finally:
        onnx_log.setLevel(level)
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {k: enc[k].numpy() for k in names})
    diff = max(float(np.abs(g - want[k].numpy()).max()) for g, k in zip(got, outputs))
    if not diff <= ONNX_TOL:
        (out / ONNX_FILE).unlink()
        raise UserError(f"export --format onnx: onnxruntime's outputs differ from PyTorch's by {diff:.2g} "
                        f"(> {ONNX_TOL}): this architecture does not export faithfully; use --format merged")
    model.config.save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    return {"library_name": "onnx", "onnx_max_abs_diff": diff}


def check_inputs(run: Run) -> dict[str, torch.Tensor]:
    """A few inputs of the run's shape (one text, a pair, a question and its context), padded to one batch."""
    from .serve import n_texts

    columns = ([["when was the tower built?", "where is it?"], [CHECK_CONTEXT] * 2] if run.head == "qa" else
               [CHECK_TEXTS, CHECK_TEXTS[::-1]][: n_texts(run)])
    return dict(run.tokenizer(*columns, padding=True, truncation=True, max_length=128, return_tensors="pt"))


def sibling_metric(run_dir: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """The dev metric, and over this run and its sibling seeds in the study folder (same config but the seed) the
    mean and 95% t-interval."""
    from ..stats import ci95

    metric = rec["primary_metric"]
    unknown = {"device": None, "precision": None}  # a record without them: only its like matches
    mine = {k: v for k, v in identity_fields(rec["config"], recorded_runtime(rec) or unknown).items() if k != "seed"}
    values = []
    for path in sorted(run_dir.parent.glob("*/result.json")):
        other = read_record(path)
        if other and other.get("status") == "completed" and metric in other.get("metrics", {}):
            theirs = {k: v for k, v in identity_fields(other["config"], recorded_runtime(other) or unknown).items()
                      if k != "seed"}
            if theirs == mine:
                values.append(other["metrics"][metric])
    out = {"metric": metric, "value": rec["metrics"].get(metric)}
    if len(values) >= 2:
        mean, half, n = ci95(values)
        out.update(seeds=n, seed_mean=mean, interval95=[mean - half, mean + half])
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the dotted keys `peftbench train` takes."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def train_command(rec: dict[str, Any]) -> str:
    """`peftbench train` with the keys where the run's config differs from its presets' defaults."""
    from ..config.compose import load_config, override_value

    config, r = rec["config"], rec["run"]
    head = [f"task={r['task']}", f"method={r['method']}", f"model={r['model']}"]
    try:
        default = OmegaConf.to_container(load_config(head), resolve=True)
    except UserError:  # own data: the presets alone do not compose
        default = {}
    want, have = _flat(config), _flat(default)
    skip = ("task.name", "method.name", "model.name")
    keys = [k for k in want if k not in skip and (k not in have or have[k] != want[k])]
    return " ".join(["peftbench train", *head, *(f"{k}={override_value(want[k])}" for k in keys)])


def write_card(run: Run, run_dir: Path, out: Path, fmt: str, info: dict[str, Any]) -> None:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    meta, rec = run.meta, read_record(run_dir / "result.json")
    method, task, model = meta["method"]["name"], meta["task"]["name"], meta["model"]
    base = model.get("name_or_path") or f"random {model['name']} (peftbench model={model['name']}, seed {meta.get('seed')})"
    dev = sibling_metric(run_dir, rec) if rec else {}
    fields = {"method": method, "task": task, "format": fmt, "peftbench_model": model["name"], "seed": meta.get("seed"),
              "trainable_percent": rec.get("trainable_percent") if rec else None,
              "train_command": train_command(rec) if rec else None, "dev": dev or None,
              **{k: v for k, v in info.items() if k not in ("library_name", "base")}}
    pipeline = PIPELINES.get(run.head, "text-classification")
    results = ([EvalResult(task_type=pipeline,
                           dataset_type=task, dataset_name=task, dataset_split="dev", metric_type=dev["metric"],
                           metric_value=dev["value"])] if dev.get("value") is not None else None)
    data = ModelCardData(base_model=model.get("name_or_path"), library_name=info["library_name"],
                         pipeline_tag=pipeline,
                         tags=["peftbench", method, task], model_name=f"{task}-{method}", eval_results=results,
                         peftbench={k: v for k, v in fields.items() if v is not None})
    interval = (f" (mean of {dev['seeds']} seeds {dev['seed_mean']:.2f}, 95% interval "
                f"{dev['interval95'][0]:.2f} to {dev['interval95'][1]:.2f})" if dev.get("interval95") else "")
    score = f"{dev['metric']} {dev['value']:.2f} on the dev set{interval}" if dev.get("value") is not None else "no record"
    load = {"peft": f"`PeftModel.from_pretrained(base, DIR)` on the base `{info.get('base')}` loaded with the task head"
                    f" ({AUTO_CLASSES.get(run.head, 'AutoModelForSequenceClassification')},"
                    f" num_labels={meta.get('num_labels', 2)})",
            "merged": "`AutoModelFor...from_pretrained(DIR)` or `pipeline(..., model=DIR)`",
            "onnx": f"`onnxruntime.InferenceSession('DIR/{ONNX_FILE}')` with the tokenizer in DIR"}[fmt]
    body = (f"\n# {task} {method} ({fmt})\n\n{method} on {task}, exported by peftbench from `{run_dir.name}`. "
            f"Base: {base}. Dev: {score}. Trainable: {fields['trainable_percent']}% of the parameters.\n\n"
            f"Load it with {load}.\n\nTrained with:\n\n```bash\n{fields['train_command']}\n```\n")
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(out / "README.md")


def export_run(run_dir: str | Path, fmt: str, out: str | Path, push_to_hub: str | None = None,
               model_overrides: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write RUN's export in `fmt` to the new folder `out` (or replace it: `overwrite`), with its model card; upload
    if asked. The folder is written aside and renamed into place when complete."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar(), hf_logging.set_verbosity_error()  # stderr is for errors: no bars, no reports
    try:
        return _export(run_dir, fmt, out, push_to_hub, model_overrides, overwrite)
    finally:  # in-process callers keep transformers' own settings
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _export(run_dir: str | Path, fmt: str, out: str | Path, push_to_hub: str | None,
            model_overrides: dict[str, Any] | None, overwrite: bool) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"export --format {fmt} is unknown: pick one of {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    check_run(run_dir, "export")
    check_out(out, "export", overwrite)
    run = load_run(run_dir, model_overrides)
    if fmt == "peft":
        peft_model, why = as_peft(run)
        if peft_model is None:  # the plain check merges and alters the model, so it runs on a second copy
            plain_ok = as_plain(load_run(run_dir, model_overrides))[1] is None
            why = why or ("trains the model's own tensors in place, which no peft adapter type holds" if plain_ok
                          else "adds modules that no peft adapter type holds")
            raise refuse(run, "peft", why, "merged" if plain_ok else None)
    else:
        peft_ok = hasattr(run.model, "peft_config")
        model, why = as_plain(run)  # merges a peft model in place
        if why:
            other = "peft" if peft_ok or as_peft(run)[0] is not None else None
            raise refuse(run, fmt, why + ", which cannot fold into a plain transformers model", other)
    with staged(out) as tmp:
        info = (write_peft(run, peft_model, tmp) if fmt == "peft" else
                write_merged(model, run, tmp) if fmt == "merged" else write_onnx(model, run, tmp))
        write_card(run, run_dir, tmp, fmt, info)
    if push_to_hub:
        push(out, push_to_hub)
    return out


def push(folder: Path, repo_id: str) -> str:
    """Upload the folder to the hub as model repo `repo_id` (created if missing); returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                     commit_message="peftbench export"))
    except Exception as e:  # network, auth, a bad id: the export on disk stays
        raise UserError(f"--push-to-hub {repo_id}: upload failed ({first_line(e)}); the export is in {folder}: log in with "
                        "`hf auth login` and push again") from None
