"""What the holdout protocol adds to a study's wall time besides training: planning (protocol.plan, re-run after
every round: Optuna draws, composing configs, reading result.json for the holdout scores and seeds=auto), the
preflight, the study's own printing, and the report. The bar: <= 5% of the study's wall time.

A small real study (MiniLM by default) on RTE from the shared data, select=holdout trials=N seeds=auto, in this
process: every `runner.run_one` (one training run, load to result.json) is timed, and so is every `protocol.plan`;
the rest of the study's wall time is the protocol's own bookkeeping. Then `peftbench report` on the folder, timed.

    python bench/protocol_overhead.py                       # MiniLM, rte, full+bitfit, 3 trials, auto seeds 2..3
    python bench/protocol_overhead.py --model tiny --rows 200   # compute negligible: the bookkeeping shows alone
    python bench/protocol_overhead.py --out /tmp/po --keep      # keep the study folder

Writes bench/results/protocol_overhead/<model>.json. On a shared (loaded) machine the seconds are not speed facts;
the ratio still bounds the bookkeeping, which is CPU-bound like training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm_l6")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--task", default="rte")
    ap.add_argument("--methods", default="full,bitfit")
    ap.add_argument("--rows", type=int, default=400, help="train_size of every run")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from peftbench.studies import protocol, runner, grid as study

    out = Path(args.out or tempfile.mkdtemp(prefix="protocol_overhead_"))
    timings = {"train_s": 0.0, "plan_s": 0.0, "runs": 0, "plans": 0}
    real_run, real_plan = runner.run_one, protocol.plan

    def timed_run(folder, cfg, label):
        t0 = time.perf_counter()
        try:
            return real_run(folder, cfg, label)
        finally:
            timings["train_s"] += time.perf_counter() - t0
            timings["runs"] += 1

    def timed_plan(*a, **kw):
        t0 = time.perf_counter()
        try:
            return real_plan(*a, **kw)
        finally:
            timings["plan_s"] += time.perf_counter() - t0
            timings["plans"] += 1

    runner.run_one, protocol.plan = timed_run, timed_plan
    overrides = [f"tasks=[{args.task}]", f"methods=[{args.methods}]", "select=holdout", f"trials={args.trials}",
                 "seeds=auto", "min_seeds=2", "max_seeds=3", f"out={out}", f"data_dir={args.data}",
                 f"model={args.model}", f"train_size={args.rows}", "epochs=1", "tracking.mode=disabled"]
    t0 = time.perf_counter()
    code = study.run_study("glue", overrides)
    study_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = subprocess.run([sys.executable, "-c", "from peftbench.cli import main; main()", "report", str(out), "--out", str(out / "report")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    report_s = time.perf_counter() - t0
    bookkeeping = study_s - timings["train_s"]
    total = study_s + report_s
    result = {"model": args.model, "task": args.task, "methods": args.methods, "rows": args.rows,
              "trials": args.trials, "study_exit": code, "report_exit": rep.returncode,
              "runs": timings["runs"], "plans": timings["plans"], "study_wall_s": round(study_s, 2),
              "train_s": round(timings["train_s"], 2), "plan_s": round(timings["plan_s"], 2),
              "bookkeeping_s": round(bookkeeping, 2), "report_s": round(report_s, 2),
              "overhead_share": round((bookkeeping + report_s) / total, 4),
              "bookkeeping_share": round(bookkeeping / total, 4), "report_share": round(report_s / total, 4),
              "loadavg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(json.dumps(result, indent=1))
    if rep.returncode:
        print("report failed:", (rep.stderr or rep.stdout).strip().splitlines()[-1:])
    print(f"\nstudy {study_s:.1f} s = training {timings['train_s']:.1f} s ({timings['runs']} runs) + bookkeeping "
          f"{bookkeeping:.1f} s (of which planning {timings['plan_s']:.1f} s in {timings['plans']} plans); report "
          f"{report_s:.1f} s. Protocol + report overhead: {100 * result['overhead_share']:.1f}% of "
          f"{total:.1f} s (bar: 5%). Load average {result['loadavg_1m']:.1f} on {result['cpus']} cores.")
    dest = REPO / "bench" / "results" / "protocol_overhead"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{args.model}.json").write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep and not args.out:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
