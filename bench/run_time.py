"""How long one reference-study run of bert-base-uncased takes on this machine, per task and method (cluster planning).

For each (task, method) the config is composed as the study composes it (`model=bert_base`; SQuAD with
`schedule=steps` as configs/study/scaling.yaml, on the offline devsplit pool), the method is applied with peftbench's
`apply_method`, and K optimizer steps of train.py's loop (forward, backward, grad clip, fused AdamW over
`engine.run.param_groups`, zero_grad; fp32, torch's default threads) are timed on length-grouped batches from
`data.train_batches` over the real training set, after W untimed warm-up steps. Eval: `predict.predict` over the first
M eval rows, scaled to the whole eval set. bert-base weights are not offline, so the model is built from the shipped
config with random weights (step time does not depend on the values) and text is tokenized with MiniLM's tokenizer
(all-MiniLM-L6-v2 ships bert-base-uncased's WordPiece vocabulary, so token counts are the same).

    python bench/run_time.py                                  # GLUE x 5 methods (W=1, K=5), SQuAD full/bitfit (W=1, K=2)
    python bench/run_time.py --tasks rte --methods lora --steps 10
    python bench/run_time.py --tasks squad --eval-rows 128 --out /tmp/rt

Writes OUT/results.json (setup and every job) and OUT/results.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from peftbench.config.compose import load_config
from peftbench.data.batches import total_steps, train_batches
from peftbench.models.methods import apply_method
from peftbench.models.load import load_model, load_tokenizer
from peftbench.data.tasks import TASKS, squad
from peftbench.engine.predict import predict
from peftbench.engine.run import param_groups

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PEFTBENCH_SHARED", REPO.parent / "shared")) / "data"
TASK_NAMES = ["sst2", "mrpc", "rte", "squad"]
METHODS = ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
SQUAD_METHODS = ["full", "bitfit"]  # configs/study/scaling.yaml
DEFAULT_STEPS = {"glue": (1, 5), "squad": (1, 2)}  # (warm-up, timed): SQuAD steps (~384 tokens x 16) are slow on CPU
FULL_SQUAD_QUESTIONS = 87_599  # SQuAD v1.1 train; not offline, so only its schedule length is computed


def compose(task: str, method: str):
    """The run's config as the study would build it (GLUE study: no extra keys; scaling study: schedule=steps)."""
    over = [f"task={task}", f"method={method}", "model=bert_base", "tracking.mode=disabled"]
    over += ([f"task.data_dir={SHARED_DATA / 'squad-devsplit'}", "schedule=steps"] if task == "squad"
             else [f"data_dir={SHARED_DATA}"])
    return load_config(over)


def time_train_steps(model: torch.nn.Module, data, tokenizer, cfg, warmup: int, steps: int) -> dict:
    """Seconds per optimizer step (train.py's step, fp32 on CPU) over `steps` batches after `warmup` untimed ones."""
    lengths = data.train.lengths
    epoch = train_batches(lengths, cfg.batch_size, cfg.seed, 0, cfg.group_by_length)
    batches = (epoch * (1 + (warmup + steps) // len(epoch)))[: warmup + steps]
    lr = cfg.lr if cfg.lr is not None else cfg.method.lr
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=lr, fused=True)
    model.train()
    times = []
    for i, idx in enumerate(batches):
        batch = data.train.batch(idx)  # collation is left out of the timing
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    # step time follows padded tokens: how the timed batches compare with an average batch of the epoch
    padded = [int(lengths[b].max()) * len(b) for b in batches[warmup:]]
    epoch_padded = float(np.mean([lengths[b].max() * len(b) for b in epoch]))
    return {"step_times_s": [round(t, 3) for t in times], "s_per_step": statistics.median(times),
            "timed_padded_tokens": padded, "epoch_mean_padded_tokens": round(epoch_padded, 1)}


def time_eval(model: torch.nn.Module, data, tokenizer, cfg, rows: int) -> tuple[float, int]:
    """Seconds of `predict` over the first `rows` eval rows, and how many rows that was."""
    m, t0 = min(rows, len(data.eval)), time.perf_counter()
    predict(model, data.eval.select(range(m)), cfg.eval_batch_size, torch.device("cpu"))
    return time.perf_counter() - t0, m


def official_dev_windows(cfg, tokenizer) -> int | None:
    """Eval windows of the official SQuAD v1.1 dev set (what a full-train study scores on), if it is offline."""
    path = SHARED_DATA / "squad" / squad.FILES["dev"]
    if not path.is_file():
        return None
    examples, _ = squad.read_squad(path)
    return len(squad.windows([e for e in examples if e["answers"]], tokenizer, cfg.task)[0]["input_ids"])


def rows_for(task: str, method: str, cfg, data, res: dict, eval_s_per_row: float, full_eval: int | None) -> list[dict]:
    """Table rows: the estimate for this data, and for SQuAD also for the full v1.1 train set (schedule only)."""
    def row(label: str, steps: int, eval_rows: int) -> dict:
        train_h, eval_min = steps * res["s_per_step"] / 3600, eval_s_per_row * eval_rows / 60
        return {"task": label, "method": method, "trainable_params": res["trainable_params"],
                "steps_per_run": steps, "s_per_step": res["s_per_step"], "eval_rows": eval_rows,
                "est_train_h": train_h, "est_eval_min": eval_min, "est_total_h": train_h + eval_min / 60}
    # train.py: total_steps(cfg, len(data.train)), i.e. SQuAD counts windows; the full set hits the cap anyway
    out = [row(task if task != "squad" else f"squad (devsplit {data.train_examples:,} q)",
               total_steps(cfg, len(data.train)), len(data.eval))]
    if task == "squad":
        out.append(row(f"squad (v1.1 {FULL_SQUAD_QUESTIONS:,} q)", total_steps(cfg, FULL_SQUAD_QUESTIONS),
                       full_eval or len(data.eval)))
    return out


def table(rows: list[dict]) -> str:
    head = ["task", "method", "trainable params", "steps/run", "s/step", "est. train h", "est. eval min", "est. total h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['trainable_params']:,} | {r['steps_per_run']:,} | "
                     f"{r['s_per_step']:.2f} | {r['est_train_h']:.1f} | {r['est_eval_min']:.1f} | "
                     f"{r['est_total_h']:.1f} |")
    return "\n".join(lines)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_name() -> str:
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    return next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), platform.machine())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=TASK_NAMES)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS,
                   help="SQuAD runs only the scaling study's methods (full, bitfit) among these")
    p.add_argument("--steps", type=int, help="timed steps per job (default: 5 GLUE, 2 SQuAD)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps per job (default 1)")
    p.add_argument("--eval-rows", type=int, default=64, help="eval rows timed, scaled to the whole eval set")
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/run_time")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MiniLM's tokenizer comes from its installed package
    args.out.mkdir(parents=True, exist_ok=True)
    setup = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
             "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "uptime_before": uptime()}
    tokenizer = load_tokenizer(load_config(["model=minilm_l6"]).model)  # bert-base-uncased's vocabulary
    t_start, rows, jobs = time.perf_counter(), [], []
    for task in args.tasks:
        methods = [m for m in args.methods if task != "squad" or m in SQUAD_METHODS]
        if not methods:  # e.g. --tasks squad --methods lora: the scaling study has no such run
            continue
        t0, cfg = time.perf_counter(), compose(task, methods[0])
        data = TASKS[cfg.task.kind].load(cfg, tokenizer)  # the data does not depend on the method: load it once
        print(f"[{time.perf_counter() - t_start:7.1f}s] {task}: {len(data.train):,} train rows, {len(data.eval):,} "
              f"eval rows, loaded in {time.perf_counter() - t0:.1f}s", flush=True)
        full_eval = official_dev_windows(cfg, tokenizer) if task == "squad" else None
        warmup, steps = DEFAULT_STEPS["squad" if task == "squad" else "glue"]
        warmup, steps = (warmup if args.warmup is None else args.warmup), (args.steps or steps)
        for method in methods:
            cfg = compose(task, method)
            torch.manual_seed(cfg.seed)
            # a fresh model per job: no optimizer state, grads or caches carried over from the last one
            model = load_model(cfg.model, TASKS[cfg.task.kind].HEAD, data.num_labels, random_init=True)
            model = apply_method(model, cfg.method, cfg.model.name)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            res = time_train_steps(model, data, tokenizer, cfg, warmup, steps)
            eval_s, m = time_eval(model, data, tokenizer, cfg, args.eval_rows)
            res.update(trainable_params=trainable, warmup=warmup, timed_steps=steps, eval_timed_rows=m,
                       eval_timed_s=round(eval_s, 3), batch_size=cfg.batch_size, train_rows=len(data.train),
                       train_examples=data.train_examples)
            new = rows_for(task, method, cfg, data, res, eval_s / m, full_eval)
            rows += new
            jobs.append({"task": task, "method": method, **res})
            print(f"[{time.perf_counter() - t_start:7.1f}s] {task}/{method}: {trainable:,} trainable, "
                  f"{res['s_per_step']:.2f} s/step (steps {res['step_times_s']}), eval {eval_s:.1f}s/{m} rows -> "
                  + ", ".join(f"{r['task']} {r['est_total_h']:.1f} h" for r in new), flush=True)
            del model  # and its optimizer (local to time_train_steps): free before the next job's model
            gc.collect()
    setup.update(uptime_after=uptime(), bench_wall_s=round(time.perf_counter() - t_start, 1))
    md = table(rows)
    ratios = ", ".join(f"{j['task']}/{j['method']} {np.mean(j['timed_padded_tokens']) / j['epoch_mean_padded_tokens']:.2f}"
                       for j in jobs)
    header = (f"`{setup['command']}` on {setup['date']}: {setup['cpu']} ({setup['cpu_count']} CPUs), torch "
              f"{setup['torch']}, {setup['threads']} threads, fp32; bench wall {setup['bench_wall_s'] / 60:.1f} min.\n"
              f"Load before: `{setup['uptime_before']}`; after: `{setup['uptime_after']}`.\n")
    foot = (f"\nbert-base (random weights), MiniLM tokenizer (same vocab); s/step = median of the timed steps; eval "
            f"extrapolated from the first {args.eval_rows} rows. Timed batches' padded tokens / the epoch's mean "
            f"batch: {ratios}.\n")
    (args.out / "results.json").write_text(json.dumps({"setup": setup, "rows": rows, "jobs": jobs}, indent=2))
    (args.out / "results.md").write_text(header + "\n" + md + "\n" + foot)
    print(md)
    print(f"bench wall {setup['bench_wall_s']:.0f}s; wrote {args.out / 'results.json'} and {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
