"""Pieces the bench scripts share: one job in its own subprocess, and trainer_vs_peftbench.py's summary table."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def spawn(script: str, spec: dict, log: Path, pythonpath: str | None = None) -> dict:
    """Run `script --job SPEC` in a fresh process (its own peak memory), offline and quiet; its result JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TQDM_DISABLE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, script, "--job", json.dumps(spec)], stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if proc.returncode != 0:
        sys.exit(f"job {log.stem} failed (exit {proc.returncode}): see {log}")
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
                      "peak_mb": round(median([j["peak_memory"] for j in js]) / 2**20, 1),
                      "train_memory_growth_mb": round(median([j["peak_memory"] - j["memory_before"] for j in js]) / 2**20, 1)}
            if "full" in methods:
                row[r]["peak_vs_full"] = round(median([j["peak_memory"] / by[r, "full", k]["peak_memory"]
                                                       for k, j in zip(rounds, js)]), 3)
                for key, field in [("step_time_vs_full", "samples_per_s"), ("cpu_step_time_vs_full", "cpu_samples_per_s")]:
                    row[r][key] = round(median([by[r, "full", k][field] / j[field] for k, j in zip(rounds, js)]), 3)
            if r != "peftbench" and "peftbench" in runners:
                for key, field in [("peftbench_speedup", "samples_per_s"), ("peftbench_cpu_speedup", "cpu_samples_per_s")]:
                    row[r][key] = round(median([by["peftbench", m, k][field] / j[field] for k, j in zip(rounds, js)]), 2)
        rows[m] = row
    return rows


def table(summary: dict, runners: list[str]) -> str:
    short = {"peftbench": "pb", "peftbench_base": "pb-base", "trainer_dynamic": "T-dyn", "trainer_grouped": "T-grp", "trainer_pad128": "T-128"}
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
        cells += [f"{row[r]['peak_mb']:.0f} ({row[r].get('peak_vs_full', float('nan')):.2f})" for r in runners]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
