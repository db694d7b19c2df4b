"""explorer.html: the trade-offs of every completed run, one interactive page that opens offline (plotly, inlined).

One block of panels per task, three to a row, so every title and axis title is whole in a 1366-px laptop window: the
task's primary metric against trainable parameters, peak memory, train time, delta size and how far training moved
the encoder (1 − CKA to the base on forgetting.py's fixed sample); a task's panels share one score axis. One marker
per run and panel, one colour per method (the same in every row); clicking a method in the legend hides or shows it
everywhere. Hovering a marker shows its run folder, seed, learning rate, metrics and forgetting figures. In each
panel a dashed step line joins the Pareto front: the runs that no other run beats on both axes (at most the
cost, at least the score, better on one). Written by `peftbench report` beside report.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .cells import TASK_ORDER, order
from .figures import ORDER, color

# (record field, axis title, scale, divisor): the x axes, cost first
AXES = [("trainable_params", "trainable parameters", "log", 1),
        ("peak_memory_bytes", "peak memory (MiB)", "linear", 2**20),
        ("train_time_s", "train time (s)", "linear", 1),
        ("delta_bytes", "delta size (MiB)", "log", 2**20),
        ("forgetting.cka", "encoder change, 1 − CKA to the base", "linear", 1)]  # value(): drawn as 1 − CKA
FRONT = "Pareto front"


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (x: lower is better, y: higher is better), by x then y."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def value(r: dict[str, Any], field: str) -> float | None:
    """A record's number for an axis: a top-level field, or its forgetting CKA as the change 1 − CKA (lower: the
    encoder moved less, so the Pareto rule's "lower is better" holds on every axis)."""
    if field == "forgetting.cka":
        cka = (r.get("forgetting") or {}).get("cka")
        return None if cka is None else 1 - cka
    return r.get(field)


def _forgetting(r: dict[str, Any]) -> list[str]:
    f = r.get("forgetting") or {}
    if f.get("cka") is None:
        return []
    delta = f.get("mlm_loss_delta")
    return [f"forgetting: CKA {f['cka']:.6f}" + (f", MLM loss Δ {delta:+.4f}" if delta is not None else "")]


def _hover(r: dict[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items() if isinstance(v, (int, float)))
    size = r["run"].get("train_size")
    return "<br>".join([f"<b>{r['run']['method']}</b> on {r['run']['task']} ({r['run']['model']})",
                        f"run: {r.get('_path', '?')}", f"seed {r['run']['seed']}, lr {r.get('lr')}"
                        + (f", train_size {size:,}" if size else ""), metrics,
                        f"trainable {r['trainable_params']:,} ({r.get('trainable_percent', 0):.3g}%)",
                        *_forgetting(r)])


COLS = 3  # panels per row: at a 1366-px laptop window each title ("sst2: accuracy vs trainable parameters") is whole
PANEL_PX, GAP_PX, BOTTOM_PX = 300, 110, 50  # a panel row's height; room for x titles + the next row's titles
LAPTOP_PX, LEGEND_TOP_PX, LEGEND_ROW_PX, TITLES_PX = 1366, 60, 24, 50  # the legend's rows are counted at 1366 px
LEGEND_ENTRY_PX, LEGEND_CHAR_PX = 46, 7  # a legend entry: its symbol and gap, plus its name (plotly's 12-px font)


def cell(i: int) -> tuple[int, int]:
    """Row (within a task's block of rows) and column of the i-th panel, both from 1: row-major, COLS per row."""
    return i // COLS + 1, i % COLS + 1


def figure(records: list[dict[str, Any]], methods: list[str], tasks: list[str]) -> go.Figure:
    metric = {t: next(r["primary_metric"] for r in records if r["run"]["task"] == t) for t in tasks}
    per_task = -(-len(AXES) // COLS)  # panel rows per task; the last row's empty cells hold no axes
    rows = per_task * len(tasks)
    specs = [[{} if (r % per_task) * COLS + c < len(AXES) else None for c in range(COLS)] for r in range(rows)]
    # the legend's rows at a 1366-px window (an entry is its symbol and its name), so the panels start below it
    entries = [*methods, FRONT]
    legend_rows = -(-sum(LEGEND_ENTRY_PX + LEGEND_CHAR_PX * len(m) for m in entries) // (LAPTOP_PX - 160))
    top = LEGEND_TOP_PX + LEGEND_ROW_PX * legend_rows + TITLES_PX
    height = rows * PANEL_PX + (rows - 1) * GAP_PX + top + BOTTOM_PX
    titles = [f"{t}: {metric[t]} vs {title}" for t in tasks for _, title, _, _ in AXES]
    fig = make_subplots(rows=rows, cols=COLS, specs=specs, horizontal_spacing=0.06,
                        vertical_spacing=GAP_PX / (height - top - BOTTOM_PX), subplot_titles=titles)
    fig.update_annotations(font_size=14)  # the subplot titles
    colour = {m: color(m) for m in methods}  # the PNGs' palette (figures.PALETTE): a method looks the same in both
    for t, task in enumerate(tasks):
        runs = [r for r in records if r["run"]["task"] == task]
        first = None  # the task's first panel's y axis: every panel of the task shares its range
        for i, (field, title, scale, div) in enumerate(AXES):
            row, col = cell(i)
            row += t * per_task
            have = [r for r in runs
                    if isinstance(value(r, field), (int, float)) and (scale != "log" or value(r, field) > 0)]
            for m in methods:
                mine = [r for r in have if r["run"]["method"] == m]
                if mine:
                    fig.add_trace(go.Scatter(
                        x=[value(r, field) / div for r in mine], y=[r["metrics"][metric[task]] for r in mine],
                        mode="markers", name=m, legendgroup=m, showlegend=False,
                        marker=dict(color=colour[m], size=9, line=dict(width=0.5, color="white")),
                        text=[_hover(r) for r in mine], hovertemplate="%{text}<extra></extra>"), row=row, col=col)
            points = [(value(r, field) / div, r["metrics"][metric[task]]) for r in have]
            front = [points[i] for i in pareto(points)]
            if front:
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in front], y=[p[1] for p in front], mode="lines", line_shape="hv",
                    line=dict(color="grey", dash="dash", width=1), name=FRONT, legendgroup=FRONT,
                    showlegend=False, hoverinfo="skip"), row=row, col=col)
            fig.update_xaxes(type=scale, title_text=title, row=row, col=col)
            axis = fig.get_subplot(row, col).yaxis.plotly_name.replace("axis", "")  # "y", "y2", ...
            first = first or axis
            fig.update_yaxes(matches=None if axis == first else first,
                             title_text=f"{task} {metric[task]}" if col == 1 else None, row=row, col=col)
    shown = set()  # one legend entry per group, from its first trace, whichever task that is in
    for trace in fig.data:
        trace.showlegend = trace.name not in shown
        shown.add(trace.name)
    # no fixed width: the page takes the window's (a 1366-px laptop included); the legend sits above the panels,
    # so it is on screen without scrolling whatever the number of tasks
    fig.update_layout(height=height, autosize=True, template="plotly_white",
                      title=dict(text="peftbench explorer: score vs cost, one marker per run (click the legend to "
                                      "toggle)", y=1 - 20 / height, yanchor="top"),
                      # the legend's top edge LEGEND_TOP_PX from the page's, under the title; it grows downwards
                      legend=dict(title="method", orientation="h", x=0, xanchor="left", yanchor="top",
                                  y=1 + (top - LEGEND_TOP_PX) / (height - top - BOTTOM_PX)),
                      margin=dict(t=top, l=70, r=20, b=BOTTOM_PX))
    return fig


def write_explorer(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Write the page for the completed `records` (None: nothing to show); every script is inlined in the file."""
    records = [r for r in records if r.get("status") == "completed" and r.get("metrics")]
    if not records:
        return None
    methods = order({r["run"]["method"] for r in records}, ORDER)
    tasks = order({r["run"]["task"] for r in records}, TASK_ORDER)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    figure(records, methods, tasks).write_html(tmp, include_plotlyjs=True, full_html=True,
                                               config={"displaylogo": False, "responsive": True})
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return path
