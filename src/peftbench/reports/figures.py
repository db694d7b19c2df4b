"""The report's figures (matplotlib, Agg, PNG): parameter efficiency, GLUE bars, costs, SQuAD scaling curves.

Inputs are the report's groupings: `by[method][task or size] -> [record, ...]`. A method keeps one colour in
every figure and in explorer.html (PALETTE, the one table both read), and its label is its registry name. Methods
are ordered by family (FAMILIES), so a dozen of them stay readable: the results figure has one panel per task with a
horizontal bar per method.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

# Families order the rows of every table and figure; a method not listed here goes last, under "other".
FAMILIES = {"full": ["full"], "bias/norm": ["bitfit", "bitfit_subset", "ln_tuning"],
            "low-rank": ["lora", "lora_all", "dora", "vera"], "scaling": ["ia3"],
            "adapters": ["adapter_houlsby", "adapter_pfeiffer"], "prompts": ["prompt", "prompt_residual", "prefix"]}
ORDER = [m for ms in FAMILIES.values() for m in ms]
MARKERS = ["o", "s", "^", "D", "v", "P"]
# THE palette: one colour per method, the same in every PNG and in explorer.html (which reads color()). 14
# well-separated colours (tab10, then dark shades from tab20b), given to the known methods in ORDER.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#7b4173"]
TASK_HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "++", "--", "**"]  # tasks in the cost figure: a hatch each


def family(method: str) -> str:
    return next((f for f, ms in FAMILIES.items() if method in ms), "other")


def color(method: str) -> str:
    """The method's colour as '#rrggbb' (matplotlib and plotly both read it); an unknown method gets a stable one."""
    if method in ORDER:
        return PALETTE[ORDER.index(method) % len(PALETTE)]
    return matplotlib.colors.to_hex(plt.get_cmap("tab20b")(sum(map(ord, method)) % 20))


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def outside(fig) -> list[str]:
    """The texts (titles, labels, legends) drawn past the figure's edges: cut off in the PNG. Empty when all fit."""
    fig.canvas.draw()
    box = fig.bbox
    artists = [*fig.texts, *fig.legends]
    for ax in fig.axes:
        if ax.get_visible():
            artists += [ax.title, ax.xaxis.label, ax.yaxis.label, *([ax.get_legend()] if ax.get_legend() else [])]
    out = []
    for a in artists:
        if a.get_visible() and (getattr(a, "get_text", lambda: "x")() != ""):
            e = a.get_window_extent()
            if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
                out.append(getattr(a, "get_text", lambda: type(a).__name__)())
    return out


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def parameter_efficiency(by, methods, tasks, metric, means, path: Path) -> None:
    """Score vs trainable % (log x): a small marker per task, a star for the average over tasks; with one task, only
    the star (the task's score). The legend lists only what is drawn."""
    fig, ax = plt.subplots(figsize=(8, 5))
    one = len(tasks) == 1
    drawn: set = set()  # the task markers actually plotted
    for m in methods:
        recs = [r for t in tasks for r in by[m].get(t, [])]
        x = float(np.mean([r["trainable_percent"] for r in recs]))
        for i, t in enumerate(tasks):
            if t in means[m] and not one:
                ax.scatter(x, means[m][t], color=color(m), marker=MARKERS[i % len(MARKERS)], s=40, alpha=0.7)
                drawn.add(t)
        star = means[m].get(tasks[0] if one else "avg")
        if star is not None:
            ax.scatter(x, star, color=color(m), marker="*", s=260, edgecolor="black", linewidth=0.6, zorder=3)
            drawn.add("*")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (% of the model, log scale)")
    ax.set_ylabel(f"{tasks[0]} dev {metric[tasks[0]]} (%)" if one else "dev score (%)")
    ax.set_title("Score vs trainable parameters")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=color(m), marker="*", markersize=13, linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], linestyle="", label=f"{t} ({metric[t]})")
                for i, t in enumerate(tasks) if t in drawn]
    if not one and "*" in drawn:
        handles.append(Line2D([], [], color="grey", marker="*", markersize=13, linestyle="", label="average over tasks"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False,
              ncol=1 if len(handles) <= 16 else 2)
    _save(fig, path)


def part1_results(by, methods, tasks, metric, path: Path, baselines: dict | None = None) -> None:
    """A panel per GLUE task (rows of up to 5), a horizontal bar per method (error bar: std over seeds), the trivial
    baseline dashed (majority class; 0 for MCC and correlations, whose bars may go below 0)."""
    baselines = baselines or {}
    cols = min(len(tasks), 5)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.6, rows * (0.34 * len(methods) + 1.8)),
                             sharey=True, squeeze=False)
    ys = np.arange(len(methods))[::-1]  # the first method on top
    for ax, t in zip(axes.ravel(), tasks):
        low = 0.0
        for y, m in zip(ys, methods):
            vals = [r["metrics"][metric[t]] for r in by[m].get(t, [])]
            if vals:
                mean, std = _stats(vals)
                low = min(low, mean - std)
                ax.barh(y, mean, 0.7, color=color(m), xerr=std if len(vals) > 1 else None, capsize=2)
        if baselines.get(t) is not None:
            ax.axvline(baselines[t], color="black", linestyle="--", linewidth=1, label="majority baseline")
            ax.legend(loc="lower right", fontsize=8, frameon=True)
        ax.set_xlim(0 if low >= 0 else low - 5, 100)
        ax.set_xlabel(f"{t} dev {metric[t]} (%)")
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes.ravel()[len(tasks):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_yticks(ys, methods)
    # wrapped to the figure's width: one task's figure is 5 inches wide, narrower than the title on one line
    fig.suptitle(textwrap.fill("Dev results (error bars: std over seeds; dashed: the best constant prediction)",
                               max(30, int(fig.get_figwidth() * 10))), fontsize=11)
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
    many = len(methods) > 6  # a dozen methods: the three panels stacked, each as wide as its bars need
    fig, axes = plt.subplots(3 if many else 1, 1 if many else 3, squeeze=False,
                             figsize=(max(10, 0.3 * len(methods) * len(tasks) + 2), 13) if many else (15, 4.8))
    axes = axes.ravel()
    for ax, (ylabel, get) in zip(axes, panels):
        width = 0.8 / max(1, len(tasks))
        for j, t in enumerate(tasks):
            for i, m in enumerate(methods):
                vals = get(t, m)
                if vals:
                    mean, std = _stats(vals)
                    ax.bar(i + (j - (len(tasks) - 1) / 2) * width, mean, width, color=color(m), alpha=0.85,
                           hatch=TASK_HATCHES[j % len(TASK_HATCHES)], edgecolor="white",
                           yerr=std if len(vals) > 1 else None, capsize=2)
        ax.set_xticks(range(len(methods)), methods, rotation=20 if len(methods) <= 6 else 60, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_title("Peak memory while training")
    axes[1].set_title("Training FLOPs (forward + backward)")
    axes[2].set_title("Training wall time")
    if len(tasks) > 1:  # bars take their method's colour; the tasks differ by hatch
        fig.legend([plt.Rectangle((0, 0), 1, 1, facecolor="lightgrey", hatch=TASK_HATCHES[j % len(TASK_HATCHES)],
                                  edgecolor="white") for j in range(len(tasks))], tasks,
                   loc="lower center", ncol=len(tasks), frameon=False, title="task")
    fig.tight_layout(**({"rect": (0, 0.04 if many else 0.1, 1, 1)} if len(tasks) > 1 else {}))
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
