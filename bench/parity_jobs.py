"""One bench/parity.py job, in its own process: `python bench/parity_jobs.py --job SPEC` trains one (runner, method,
seed) and writes its dev accuracy, F1, train time and steps to SPEC["result"].

The two implementations of the same job (parity.py's docstring gives the settings): peftbench's own `train(cfg)`, and
HF Trainer (+ peft for LoRA) set up as its best users run it. Kept apart from the driver so each file reads alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]}  # = configs/method/lora.yaml
BATCH, EVAL_BATCH, WARMUP, WEIGHT_DECAY = 16, 64, 0.1, 0.01


def task_cfg(task: str, data_dir: Path):
    from peftbench.config.compose import load_config

    return load_config(["model=minilm_l6", f"task={task}", f"data_dir={data_dir}", "tracking.mode=disabled"])


def run_peftbench(spec: dict) -> dict:
    from peftbench.config.compose import load_config
    from peftbench.engine.train import train

    m = spec["method"]
    cfg = load_config(["model=minilm_l6", f"task={spec['task']}", f"method={m}", f"data_dir={spec['data_dir']}",
                       f"lr={spec['lr']}", f"epochs={spec['epochs']}", f"batch_size={BATCH}",
                       f"eval_batch_size={EVAL_BATCH}", f"seed={spec['seed']}", f"weight_decay={WEIGHT_DECAY}",
                       f"warmup_ratio={WARMUP}", f"group_by_length={spec['runner'] == 'pb_grouped'}",
                       f"out={spec['out']}", "tracking.mode=disabled", "checkpoint_every=null",
                       *([f"task.head_bias={spec.get('head_bias', 'zero')}"] if spec["task"] == "stsb" else [])])
    rec = train(cfg)
    for f in Path(spec["out"]).glob("delta.*"):  # full FT's delta is the whole model (~90 MB) x seeds x orders
        f.unlink()
    return {**rec["metrics"], "score": rec["metrics"][rec["primary_metric"]], "metric": rec["primary_metric"],
            "train_time_s": rec["train_time_s"], "steps": rec["train_steps"]}


def run_trainer(spec: dict) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from peftbench.models.load import resolve_path
    from peftbench.data.tasks.glue import read_split

    cfg = task_cfg(spec["task"], Path(spec["data_dir"]))
    path = resolve_path(cfg.model)  # the installed MiniLM package's folder, as peftbench loads it
    tok = AutoTokenizer.from_pretrained(path)

    def encode(split: str) -> Dataset:  # as peftbench's tasks/glue.py: truncate to max_length, no padding
        texts, labels = read_split(cfg, split)
        labels = [float(y) for y in labels] if cfg.task.get("problem") == "regression" else labels
        return Dataset.from_dict({**tok(*texts, truncation=True, max_length=cfg.task.max_length), "labels": labels})

    train_ds, dev_ds = encode("train"), encode("dev")
    set_seed(spec["seed"])  # the head's init
    reg = cfg.task.get("problem") == "regression"  # STS-B: one output, MSE loss (transformers picks it for 1 label)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1 if reg else len(cfg.task.labels))
    if reg and spec.get("head_bias", "zero") == "mean":  # peftbench's STS-B default, given to Trainer's model too
        from peftbench.models.load import start_at

        start_at(model, float(np.mean(train_ds["labels"])))
    if spec["method"] == "bitfit":  # every bias + the classifier head, as methods/bitfit.py with biases: all
        for name, p in model.named_parameters():
            p.requires_grad = name.endswith(".bias") or name.startswith("classifier.")
    elif spec["method"] == "lora":
        model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                 target_modules=LORA["target_modules"], bias="none",
                                                 modules_to_save=["classifier"]))
    steps = spec["epochs"] * math.ceil(len(train_ds) / BATCH)
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=spec["lr"], num_train_epochs=spec["epochs"], weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="linear", warmup_steps=math.ceil(WARMUP * steps), max_grad_norm=1.0, seed=spec["seed"],
        train_sampling_strategy="group_by_length" if spec["runner"] == "trainer_grouped" else "random",
        report_to="none", disable_tqdm=True, eval_strategy="no", save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok),
                      processing_class=tok)
    metrics = trainer.train().metrics
    # with group_by_length, transformers 5.24 also length-groups (and shuffles) the eval rows: score predictions
    # against the label_ids returned beside them, never against the dataset's order
    out = trainer.predict(dev_ds)
    res = trainer_metrics(np.asarray(out.predictions), np.asarray(out.label_ids), reg)
    return {**res, "score": res[cfg.task.metric], "metric": cfg.task.metric, "train_time_s": metrics["train_runtime"],
            "steps": steps}


def trainer_metrics(predictions, labels, regression: bool) -> dict:
    """Trainer's side scored by the field's own libraries (scipy, sklearn), in percent like peftbench's records:
    accuracy, binary F1 and MCC of the argmax; Pearson and Spearman of a regression's one output."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if regression:
        preds = predictions.reshape(len(labels), -1)[:, 0]
        return {"pearson": round(100 * float(pearsonr(preds, labels)[0]), 4),
                "spearman": round(100 * float(spearmanr(preds, labels)[0]), 4)}
    preds = predictions.argmax(-1)
    return {"accuracy": round(100 * accuracy_score(labels, preds), 4), "f1": round(100 * f1_score(labels, preds), 4),
            "mcc": round(100 * matthews_corrcoef(labels, preds), 4)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", required=True, help="the job's spec, JSON (written by parity.py)")
    spec = json.loads(p.parse_args(argv).job)
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    res = run_peftbench(spec) if spec["runner"].startswith("pb_") else run_trainer(spec)
    Path(spec["result"]).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
