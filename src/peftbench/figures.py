"""The report's figures (matplotlib, Agg, PNG): parameter efficiency, GLUE bars, costs, SQuAD scaling curves.

Inputs are the report's groupings: `by[method][task or size] -> [record, ...]`. A method keeps one colour in
every figure, and its label is its registry name.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

ORDER = ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def color(method: str) -> str:
    return f"C{ORDER.index(method)}" if method in ORDER else f"C{5 + sum(map(ord, method)) % 5}"


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def parameter_efficiency(by, methods, tasks, metric, means, path: Path) -> None:
    """Score vs trainable % (log x): a small marker per task, a star for the average over tasks."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in methods:
        recs = [r for t in tasks for r in by[m].get(t, [])]
        x = float(np.mean([r["trainable_percent"] for r in recs]))
        for i, t in enumerate(tasks):
            if t in means[m]:
                ax.scatter(x, means[m][t], color=color(m), marker=MARKERS[i % len(MARKERS)], s=40, alpha=0.7)
        if "avg" in means[m]:
            ax.scatter(x, means[m]["avg"], color=color(m), marker="*", s=260, edgecolor="black", linewidth=0.6, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (% of the model, log scale)")
    ax.set_ylabel("dev score (%)")
    ax.set_title("Score vs trainable parameters")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=color(m), marker="*", markersize=13, linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], linestyle="", label=f"{t} ({metric[t]})")
                for i, t in enumerate(tasks)]
    handles.append(Line2D([], [], color="grey", marker="*", markersize=13, linestyle="", label="average over tasks"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    _save(fig, path)


def part1_results(by, methods, tasks, metric, path: Path) -> None:
    """Grouped bars: a group per GLUE task, a bar per method, error bars = std over seeds."""
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(tasks) + 3), 4.8))
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        for i, t in enumerate(tasks):
            vals = [r["metrics"][metric[t]] for r in by[m].get(t, [])]
            if vals:
                mean, std = _stats(vals)
                ax.bar(i + (j - (len(methods) - 1) / 2) * width, mean, width, color=color(m),
                       yerr=std if len(vals) > 1 else None, capsize=3)
    ax.set_xticks(range(len(tasks)), [f"{t} ({metric[t]})" for t in tasks])
    ax.set_ylabel("dev score (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("GLUE dev results per task (error bars: std over seeds)")
    ax.legend([plt.Rectangle((0, 0), 1, 1, color=color(m)) for m in methods], methods, loc="upper center",
              bbox_to_anchor=(0.5, -0.1), ncol=len(methods), frameon=False)
    _save(fig, path)


def _unit(values: list[float]) -> tuple[float, str]:
    top = max(values, default=0)
    for scale, name in ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if top >= scale:
            return scale, name
    return 1.0, "FLOP"


def flops_comparison(by, methods, tasks, path: Path) -> None:
    """Three panels, a group per method and a bar per task: peak memory, training FLOPs, training time."""
    field = lambda k, scale=1.0: (lambda t, m: [r[k] / scale for r in by[m].get(t, []) if r.get(k) is not None])
    flops = [r["train_flops"] for m in methods for t in tasks for r in by[m].get(t, []) if r.get("train_flops")]
    scale, unit = _unit(flops)
    panels = [("peak memory (MiB)", field("peak_memory_bytes", 2**20)), (f"training compute ({unit})",
              field("train_flops", scale)), ("training time (s)", field("train_time_s"))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (ylabel, get) in zip(axes, panels):
        width = 0.8 / max(1, len(tasks))
        for j, t in enumerate(tasks):
            for i, m in enumerate(methods):
                vals = get(t, m)
                if vals:
                    mean, std = _stats(vals)
                    ax.bar(i + (j - (len(tasks) - 1) / 2) * width, mean, width, color=f"C{j}", alpha=0.85,
                           yerr=std if len(vals) > 1 else None, capsize=2)
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_title("Peak memory while training")
    axes[1].set_title("Training FLOPs (forward + backward)")
    axes[2].set_title("Training wall time")
    fig.legend([plt.Rectangle((0, 0), 1, 1, color=f"C{j}", alpha=0.85) for j in range(len(tasks))], tasks,
               loc="lower center", ncol=len(tasks), frameon=False, title="task")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def part2_results(by, methods, sizes, cross: list[float], path: Path) -> None:
    """F1 and EM vs training size (log x): a line per method, a ±1 std band with several seeds; crossover marked."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (key, name) in zip(axes, [("f1", "F1"), ("exact_match", "exact match")]):
        for m in methods:
            xs = [s for s in sizes if by[m].get(s)]
            st = [_stats([r["metrics"][key] for r in by[m][s]]) for s in xs]
            mean, std = np.array([a for a, _ in st]), np.array([b for _, b in st])
            ax.plot(xs, mean, marker="o", color=color(m), label=m)
            if any(len(by[m][s]) > 1 for s in xs):
                ax.fill_between(xs, mean - std, mean + std, color=color(m), alpha=0.2)
        if key == "f1":
            for i, c in enumerate(cross):
                ax.axvline(c, color="grey", linestyle="--", label=f"crossover ≈ {c:,.0f}" if i == 0 else None)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes], rotation=30)  # the measured sizes, not 3x10^3-style labels
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training examples (questions, log scale)")
        ax.set_ylabel(f"dev {name} (%)")
        ax.set_title(f"SQuAD {name} vs training size")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, frameon=False)
    _save(fig, path)
