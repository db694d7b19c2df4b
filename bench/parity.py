"""Accuracy parity: peftbench (length-grouped and plain batch order) against HF Trainer (+ peft for LoRA), over seeds.

The same job for every runner: MiniLM-L6 on the first N training rows of a GLUE task (default SST-2, 2,000 rows),
one epoch, batch 16, AdamW (weight decay 0.01, none on biases/LayerNorm), linear schedule with ceil(0.1 x steps)
warmup steps, grad-norm clip 1, fp32 on CPU; learning rates full 1e-4, bitfit 5e-3, lora 2e-3 (the rates at
which MiniLM learns SST-2; bench/README.md). Runners:

- `pb_grouped`: peftbench's defaults (`group_by_length=true`: length-sorted buckets of 50 batches, shuffled).
- `pb_plain`: peftbench with `group_by_length=false` (a plain shuffle).
- `trainer_grouped`: Trainer with dynamic padding (DataCollatorWithPadding) and
  `train_sampling_strategy="group_by_length"` (transformers 5.x's name for the old `group_by_length=True`).
- `trainer`: Trainer with dynamic padding and its default random sampler (optional).

Every (seed, method, runner) job runs in its own process and writes OUT/jobs/NAME.json; a job whose file exists is
not run again, so a killed bench resumes and `--seeds` can grow later. A seed is one pairing unit: the same seed
for both implementations (head init and data order, each in its own way), so the difference is paired by seed and
its mean gets a 95% t-interval (df = n - 1). Target: the interval of (peftbench - Trainer) narrower than +-1 point
and containing 0 or lying above it. A wide interval can come from a few runs that collapse to the majority class, so
each cell also counts the runs that learned nothing (the study reports' rule: under the majority baseline + 1), and
each comparison tests those counts with Fisher's exact test.

    python bench/parity.py                                   # SST-2 2,000 rows, seeds 1-25, 3 runners, 3 methods
    python bench/parity.py --seeds 3 --rows 200 --out /tmp/p # a smoke run
    python bench/parity.py --task rte --rows 0 --epochs 3    # all of RTE's training rows, the reference study's 3 epochs

Writes OUT/results.json (setup, every job, every comparison) and OUT/results.md (the tables).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHARED_DATA = Path(os.environ.get("PEFTBENCH_SHARED", REPO.parent / "shared")) / "data"

from bench_common import spawn  # noqa: E402  (beside this script)
from parity_jobs import BATCH, task_cfg  # noqa: E402  (each job runs parity_jobs.py in its own process)

METHODS = ["full", "bitfit", "lora"]
RUNNERS = ["pb_grouped", "pb_plain", "trainer_grouped", "trainer"]
DEFAULT_RUNNERS = ["pb_grouped", "pb_plain", "trainer_grouped"]
LRS = {"full": 1e-4, "bitfit": 5e-3, "lora": 2e-3}
JOB_SCRIPT = str(Path(__file__).with_name("parity_jobs.py"))


# ---- the driver ----

def make_data_dir(task: str, rows: int, root: Path, draw: int | None = None) -> Path:
    """A data_dir whose task train.tsv holds the first `rows` rows (0: all), or with `draw` the rows peftbench's
    `train_size=rows data_seed=draw` trains on (tasks.subset_indices), in file order; dev.tsv is the real one."""
    from peftbench.data.tasks import subset_indices

    src = SHARED_DATA / task_cfg(task, SHARED_DATA).task.dir
    lines = (src / "train.tsv").read_text(encoding="utf-8-sig").splitlines(keepends=True)
    head = 0 if task == "cola" else 1  # CoLA's files have no header line
    if rows > len(lines) - head:
        sys.exit(f"--rows {rows} is above the {len(lines) - head} {task} training rows")
    body = lines[head:]
    body = [body[i] for i in subset_indices(len(body), rows, draw)] if draw is not None else body[: rows or None]
    dst = root / src.relative_to(SHARED_DATA)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "train.tsv").write_text("".join(lines[:head] + body), encoding="utf-8")
    if not (dst / "dev.tsv").exists():
        (dst / "dev.tsv").symlink_to(src / "dev.tsv")
    return root


def metric_of(task: str) -> str:
    """The score a task's parity is judged on: accuracy for SST-2/MRPC/RTE (as before), else its primary metric
    (CoLA: MCC, STS-B: Pearson), x100 like every record."""
    primary = task_cfg(task, SHARED_DATA).task.metric
    return primary if primary in ("mcc", "pearson") else "accuracy"


def majority(task: str) -> float:
    """The trivial predictor's dev score (%), by the rule the study reports use (baselines.py): majority-class
    accuracy, or 0 for MCC and Pearson (a constant has no correlation)."""
    from omegaconf import OmegaConf

    from peftbench.reports.baselines import KNOWN_DEV, baseline

    cfg = OmegaConf.to_container(task_cfg(task, SHARED_DATA), resolve=True)  # its dev.tsv, else the official counts
    return baseline({"config": cfg, "primary_metric": metric_of(task),
                     "eval_examples": sum(KNOWN_DEV.get(task, ()))})


def comparisons(jobs: list[dict], runners: list[str], methods: list[str], floor: float) -> list[dict]:
    """Every peftbench runner minus every Trainer runner, and grouped minus plain within each, paired by seed.

    Each also counts, over the same seeds, the runs of A and of B that learned nothing (accuracy < floor) and gives
    Fisher's exact two-sided p for those counts: whether one runner collapses more often, apart from the mean.
    """
    from scipy.stats import fisher_exact

    from peftbench.stats import paired

    acc = {(j["runner"], j["method"]): {} for j in jobs}
    for j in jobs:
        acc[j["runner"], j["method"]][j["seed"]] = score(j)
    pb, tr = [r for r in runners if r.startswith("pb_")], [r for r in runners if r.startswith("trainer")]
    pairs = [(a, b) for a in pb for b in tr] + [(a, b) for a, b in [("pb_grouped", "pb_plain"),
                                                                     ("trainer_grouped", "trainer")]
                                                if a in runners and b in runners]
    out = []
    for m in methods:
        for a, b in pairs:
            p = paired(acc.get((b, m), {}), acc.get((a, m), {}))
            if p is None:
                continue
            ok = p["half"] is not None and p["half"] < 1 and p["high"] >= 0
            seeds = set(acc[a, m]) & set(acc[b, m])
            na, nb = (sum(acc[r, m][s] < floor for s in seeds) for r in (a, b))
            fisher = float(fisher_exact([[na, len(seeds) - na], [nb, len(seeds) - nb]]).pvalue)
            out.append({"method": m, "a": a, "b": b, **p, "meets_target": ok, "learned_nothing": [na, nb],
                        "fisher_p": fisher})
    return out


def score(job: dict) -> float:
    """A job's judged score; jobs written before CoLA/STS-B joined hold accuracy alone."""
    return job.get("score", job.get("accuracy"))


def tables(jobs: list[dict], comps: list[dict], runners: list[str], methods: list[str], floor: float,
           metric: str = "accuracy") -> str:
    from peftbench.reports.cells import CLEAR, FLAG
    from peftbench.stats import mean_std

    lines = ["| method | " + " | ".join(f"{r} {metric}" for r in runners) + " |", "|---|" + "---:|" * len(runners)]
    for m in methods:
        cells = []
        for r in runners:
            vals = [score(j) for j in jobs if j["runner"] == r and j["method"] == m]
            if not vals:
                cells.append("—")  # this runner did not run this method
                continue
            mean, sd, n = mean_std(vals)
            flat = sum(v < floor for v in vals)
            count = f"n={n}" + (f", {flat} {FLAG}" if flat else "")
            cells.append(f"{mean:.2f} ± {sd:.2f} ({count})" if sd is not None else f"{mean:.2f} ({count})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    base = "the majority class's" if metric == "accuracy" else "a constant prediction's"
    lines += ["", f"{FLAG}: runs that learned nothing (dev {metric} under {base} {floor - CLEAR:.2f} + {CLEAR:g}).",
              "", "| method | difference (A − B) | mean | 95% interval | half-width | n | verdict | "
              f"target met | {FLAG} A / B (Fisher p) |", "|---|---|---:|---:|---:|---:|---|---|---:|"]
    for c in comps:
        ci = f"[{c['low']:+.2f}, {c['high']:+.2f}]" if c["half"] is not None else "—"
        half = f"±{c['half']:.2f}" if c["half"] is not None else "—"
        na, nb = c["learned_nothing"]
        lines.append(f"| {c['method']} | {c['a']} − {c['b']} | {c['delta']:+.2f} | {ci} | {half} | {c['n']} | "
                     f"{c['verdict']} | {'yes' if c['meets_target'] else 'no'} | {na} / {nb} (p {c['fisher_p']:.2g}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="sst2", choices=["sst2", "mrpc", "rte", "cola", "stsb"],
                   help="judged on accuracy; CoLA on MCC, STS-B on Pearson")
    p.add_argument("--rows", type=int, default=2000, help="first N training rows; 0 = all (default 2000)")
    p.add_argument("--draw", type=int, metavar="DATA_SEED",
                   help="train on the --rows rows peftbench's train_size draws with this data_seed, not the first ones")
    p.add_argument("--head-bias", choices=["zero", "mean"], default="zero",
                   help="STS-B: both tools' regression output starts at 0 (transformers') or at the targets' mean "
                        "(peftbench's default, task.head_bias); job files do not say which: give each its own --out")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=25, help="seeds 1..N (default 25); raise it later to add seeds")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=DEFAULT_RUNNERS)
    p.add_argument("--lr", nargs="+", default=[], metavar="METHOD=RATE", help="e.g. bitfit=1e-3 (default: LRS)")
    p.add_argument("--threads", type=int, help="torch threads per job (default: torch's own)")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/parity")  # committed: jobs/*.json + tables
    p.add_argument("--report", action="store_true",
                   help="run nothing: write the tables from every job already in OUT/jobs (any seeds) for the "
                        "given methods and runners, so runs of different sizes (e.g. BitFit over more seeds) "
                        "share one table")
    args = p.parse_args(argv)
    lrs = {**LRS, **{k: float(v) for k, v in (x.split("=", 1) for x in args.lr)}}
    jobs_dir = args.out / "jobs"
    jobs, t_all = [], time.perf_counter()
    if args.report:
        jobs = collected(jobs_dir, args.task, args.methods, args.runners)
        if not jobs:
            sys.exit(f"--report: no {args.task} job for {args.methods} x {args.runners} in {jobs_dir}; "
                     f"run the bench without --report first")
        want = args.epochs * math.ceil(args.rows / BATCH) if args.rows else None
        bad = next((j for j in jobs if want and j["steps"] != want), None)  # a job's name does not say its size
        if bad:
            sys.exit(f"--report: {jobs_dir} holds {bad['method']}/{bad['runner']} seed {bad['seed']} with "
                     f"{bad['steps']} steps, not the {want} of --rows {args.rows} --epochs {args.epochs}; "
                     f"pass the --rows/--epochs its jobs ran with, or another --out")
        return write_tables(args, jobs, lrs, t_all)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    data_dir = make_data_dir(args.task, args.rows, args.out / "data", args.draw)
    for seed in range(1, args.seeds + 1):  # seed outermost, runners alternating: machine noise hits all alike
        for m in args.methods:
            for r in args.runners:
                name = f"{args.task}-{m}-{r}-s{seed}"
                spec = {"runner": r, "method": m, "task": args.task, "seed": seed, "lr": lrs[m], "epochs": args.epochs,
                        "data_dir": str(data_dir), "out": str(args.out / "runs" / name),
                        "result": str(jobs_dir / f"{name}.json"), "threads": args.threads,
                        "head_bias": args.head_bias}
                if Path(spec["result"]).is_file():
                    res = json.loads(Path(spec["result"]).read_text())
                else:
                    t0 = time.perf_counter()
                    res = spawn(JOB_SCRIPT, spec, jobs_dir / f"{name}.log", str(REPO / "src"))
                    print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {res.get('metric', 'accuracy')} "
                          f"{score(res):.2f}", flush=True)
                jobs.append({"runner": r, "method": m, "seed": seed, **res})
    return write_tables(args, jobs, lrs, t_all)


def collected(jobs_dir: Path, task: str, methods: list[str], runners: list[str]) -> list[dict]:
    """Every finished job in jobs_dir for task x methods x runners, any seed (file names: TASK-METHOD-RUNNER-sSEED)."""
    jobs = []
    for m in methods:
        for r in runners:
            for f in jobs_dir.glob(f"{task}-{m}-{r}-s*.json"):
                seed = f.stem.rsplit("-s", 1)[1]
                if seed.isdigit():
                    jobs.append({"runner": r, "method": m, "seed": int(seed), **json.loads(f.read_text())})
    return sorted(jobs, key=lambda j: (j["seed"], methods.index(j["method"]), runners.index(j["runner"])))


def write_tables(args: argparse.Namespace, jobs: list[dict], lrs: dict, t_all: float) -> None:
    from peftbench.reports.cells import CLEAR

    floor = majority(args.task) + CLEAR
    comps = comparisons(jobs, args.runners, args.methods, floor)
    metric = metric_of(args.task)
    md = tables(jobs, comps, args.runners, args.methods, floor, metric)
    setup = {"task": args.task, "metric": metric, "rows": args.rows, "draw": args.draw, "head_bias": args.head_bias,
             "epochs": args.epochs, "seeds": args.seeds, "lrs": lrs,
             "trivial_score": round(floor - CLEAR, 4), "learned_nothing_below": round(floor, 4),
             "batch_size": BATCH, "runners": args.runners, "threads": args.threads, "report_only": args.report,
             "seeds_per_cell": {f"{m}/{r}": sum(j["method"] == m and j["runner"] == r for j in jobs)
                                for m in args.methods for r in args.runners},
             "command": " ".join([Path(sys.executable).name, *sys.argv]), "wall_s": round(time.perf_counter() - t_all)}
    (args.out / "results.json").write_text(json.dumps({"setup": setup, "jobs": jobs, "comparisons": comps}, indent=2))
    which = ("seeds: n per cell below (every job in OUT/jobs)" if args.report else f"seeds 1-{args.seeds}")
    which_rows = (f"the {args.rows} training rows of train_size={args.rows} data_seed={args.draw}"
                  if args.draw is not None else f"first {args.rows or 'all'} training rows")
    head = (f"`{setup['command']}`: MiniLM, {args.task} {which_rows}, {args.epochs} "
            f"epoch(s), dev {metric} (x100), {which}; differences paired by seed, 95% t-interval.")
    (args.out / "results.md").write_text(f"{head}\n\n{md}\n")
    print(md)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return None


if __name__ == "__main__":
    main()
