"""peftbench from Python: `train`, `study`, `results`, `report` over the engine the command line drives.

    import peftbench
    from peft import LoraConfig
    run = peftbench.train(model="tiny", method=LoraConfig(r=4, target_modules=["query", "value"]), task=train_df,
                          dev=dev_df, text="sentence", label="label", max_steps=2, tracking={"mode": "disabled"})
    run.metrics, run.predict(["a great film"]), run.export("peft", "export/")
    peftbench.results("runs/")          # a DataFrame, one row per run

Every keyword becomes the `key=value` override the command line takes (nested dicts become dotted keys), so a call
is composed and checked by config/compose.py and schema.py exactly as `peftbench train` is, writes the same
result.json and raises the same `peftbench.errors.UserError` (one line). In-memory data (a pandas DataFrame, a
`datasets.Dataset` or `DatasetDict`) is written as Parquet under the run's (or study's) folder, named by its
content's sha256, and read by the own-data task (`task=classification`) through a task file beside it (data.py).
A `peft.PeftConfig` is `method=peft` with `method.config` (config/peftconfig.py).

The layers these functions call are the packages `peftbench.studies` and `peftbench.reports` (plural, so that
`peftbench.study` and `peftbench.report` are these functions and nothing else).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Union

from .errors import UserError

Folders = Union[str, Path, Iterable[Union[str, Path]]]
GROUPS = ("model", "method", "task")


class Run:
    """One run folder: its record (result.json), metrics, and the trained delta for `predict` and `export`."""

    def __init__(self, folder: str | Path, record: dict[str, Any] | None = None) -> None:
        from .record import read_record

        self.folder = Path(folder)
        self.record = record if record is not None else read_record(self.folder / "result.json")
        if self.record is None:
            raise UserError(f"{self.folder} holds no result.json: give the folder of a run (its out=)")
        self._loaded = None

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.record.get("metrics") or {})

    @property
    def score(self) -> float | None:
        """The primary metric (accuracy, F1, Pearson, ...), in percent."""
        return self.metrics.get(self.record.get("primary_metric"))

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    def summary(self) -> str:
        """The line `peftbench train` prints: status, task, method, the score against the trivial baseline."""
        from .studies.runner import verdict

        rec = self.record
        others = [f"{k} {v:.2f}" for k, v in rec["metrics"].items() if k != rec["primary_metric"]]
        return (f"{rec['status']}: {rec['run']['task']} {rec['run']['method']}: {'; '.join([verdict(rec), *others])} "
                f"-> {os.path.join(rec['config']['out'], 'result.json')}")

    def __repr__(self) -> str:
        r = self.record.get("run", {})
        return (f"Run({str(self.folder)!r}: {r.get('task')} {r.get('method')} {r.get('model')} seed {r.get('seed')}, "
                f"{self.status}, {self.record.get('primary_metric')} {self.score})")

    def predict(self, texts: Iterable[Any], text_pair: Iterable[str] | None = None,
                batch_size: int = 64) -> list[dict[str, Any]]:
        """One answer per input: {label, probability} (a regression: {answer, score}; QA: {answer, score, start}).
        Inputs are texts, (text, text_pair) tuples, or texts with `text_pair` beside them."""
        from .artifacts.serve import load_for, predict

        inputs = list(texts) if text_pair is None else list(zip(texts, text_pair))
        if self._loaded is None:
            self._loaded = load_for(self.folder, {})
        return predict(self._loaded, [x if isinstance(x, str) else tuple(x) for x in inputs], batch_size)

    def export(self, format: str, out: str | Path) -> Path:
        """`peftbench export`: a peft adapter folder, a merged transformers folder, or ONNX, with a model card."""
        from .artifacts.export import export_run

        return export_run(self.folder, format, out)


def overrides(keys: dict[str, Any], prefix: str = "") -> list[str]:
    """Keywords as command-line overrides: nested dicts become dotted keys; the model/method/task groups stay names."""
    from .config.compose import override_value

    out = []
    for key, value in keys.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += overrides(value, path + ".")
        elif path in GROUPS and isinstance(value, str):
            out.append(f"{path}={value}")
        else:
            out.append(f"{path}={override_value(str(value) if isinstance(value, Path) else value)}")
    return out


def _model(model: Any) -> list[str]:
    """A preset name, or a model id / folder (then the run is named by it)."""
    from .config.compose import group_options

    if model is None:
        return []
    if str(model) in group_options("model"):
        return [f"model={model}"]
    return overrides({"model": {"name_or_path": str(model), "name": str(model)}})


def _method(method: Any) -> list[str]:
    """A method name, or a peft config (object or dict): method=peft with its canonical method.config."""
    from .config.compose import override_value
    from .config.peftconfig import canonical

    if method is None:
        return []
    if isinstance(method, str):
        return [f"method={method}"]
    if hasattr(method, "to_dict") or isinstance(method, dict):
        return ["method=peft", f"method.config={override_value(canonical(method))}"]
    raise UserError(f"method={method!r}: give a method name (lora, bitfit, ...) or a peft config (peft.LoraConfig(...))")


def _task(task: Any, folder: Path, data: dict[str, Any]) -> list[str]:
    """A task name or task file as it is; in-memory data written under `folder` as a task file (data/frames.py)."""
    from .data.frames import write_task

    if task is None:
        if any(v is not None for v in data.values()):
            raise UserError("dev=, text=, text_pair= and label= describe in-memory data: give it as task=")
        return []
    if isinstance(task, (str, Path)):
        return [f"task={task}"]
    return [f"task={write_task(task, folder / 'data', **data)}"]


def run_overrides(over: list[str]) -> Run:
    """One run from `key=value` overrides, as `peftbench train` takes them."""
    from .config.compose import load_config
    from .engine.train import train as train_config

    cfg = load_config(over)
    return Run(cfg.out, train_config(cfg))


def train(model: Any = None, method: Any = None, task: Any = None, *, dev: Any = None, text: str | None = None,
          text_pair: str | None = None, label: str | None = None, name: str | None = None, **keys: Any) -> Run:
    """Fine-tune one run and return it. `model`: a preset or a model id/folder; `method`: a name or a peft config;
    `task`: a preset, a task .yaml file, or a DataFrame / Dataset / DatasetDict with dev=, text=, [text_pair=,]
    label= (and name=, the task's name). Any other run key is a keyword: max_steps=2, out="runs/x", lr=1e-3,
    tracking={"mode": "disabled"}, **{"method.r": 4}."""
    from .config.compose import load_config

    data = {"dev": dev, "text": text, "text_pair": text_pair, "label": label, "name": name}
    head = _model(model) + _method(method)
    rest = overrides(keys)
    if task is None or isinstance(task, (str, Path)):
        return run_overrides(head + _task(task, Path("."), data) + rest)
    # in-memory data: every key is checked first (nothing is written for a bad call), then the data goes to OUT/data
    probe = load_config(head + ["task=classification"] + overrides({"task": {"name": name}} if name else {}) + rest)
    return run_overrides(head + _task(task, Path(probe.out), data) + rest)


BARE_STUDY = {"methods": [], "tasks": [], "seeds": [42], "sizes": None, "out": "studies/study", "run": []}


def study(name: str | None = None, *, task: Any = None, dev: Any = None, text: str | None = None,
          text_pair: str | None = None, label: str | None = None, task_name: str | None = None,
          dry_run: bool = False, **keys: Any) -> list[Run]:
    """Run (or resume) a study and return its runs (completed and failed; none with dry_run). `name`: a preset
    (glue, quickstart, ...) or a study .yaml; without one the keywords are the study: methods=[...], tasks=[...],
    seeds=[...] (default [42]), out=... (default studies/study), and any run key for every run (max_steps=2, ...).
    In-memory data (task=DataFrame, dev=, text=, label=, task_name=) is added to its tasks."""
    from .studies.grid import load_study, plan, pool_sizes, run_study

    base = None if name else dict(BARE_STUDY)
    called = name or Path(str(keys.get("out") or BARE_STUDY["out"])).name  # its lines say "study <out's name>: ..."
    keys = dict(keys)
    if task is not None:  # written under the study's folder as a task file; its tasks, unless tasks= names more
        from .config.compose import load_yaml
        from .studies.grid import study_file

        data = {"dev": dev, "text": text, "text_pair": text_pair, "label": label, "name": task_name}
        preset = base if base is not None else (load_yaml(study_file(name), "study file")
                                                if study_file(name).is_file() else {})
        out = Path(str(keys.get("out") or preset.get("out") or BARE_STUDY["out"]))
        keys["tasks"] = [*(keys.get("tasks") or []), _task(task, out, data)[0].split("=", 1)[1]]
    over = overrides(keys)
    run_study(called, over, dry_run=dry_run, base=base)
    if dry_run:
        return []
    spec = load_study(called, over, base)
    return [Run(folder) for folder, _ in plan(spec, pool_sizes(spec)) if (folder / "result.json").is_file()]


def results(folders: Folders) -> Any:
    """Every run under `folders` as a pandas DataFrame, one row per run (the records the report reads)."""
    from .reports.table import results_frame

    return results_frame(_folders(folders))


def report(folders: Folders, out: str | Path = "report", overwrite: bool = False) -> Path:
    """`peftbench report`: OUT/report.md, its figures and explorer.html from the runs under `folders` (an existing
    folder that is not an earlier report needs overwrite=True, as `--overwrite` on the command line)."""
    from .reports import write_report

    return write_report(_folders(folders), out, overwrite=overwrite)


def _folders(folders: Folders) -> list[Path]:
    return [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
